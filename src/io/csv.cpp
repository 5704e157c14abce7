#include "attnflow/io/csv.hpp"

#include <fmt/format.h>

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "attnflow/io/atomic_file.hpp"

namespace attnflow {

std::string format_double(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return fmt::format("{:.17g}", x);
}

namespace {
std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) {
    const auto b = cell.find_first_not_of(" \t\r");
    const auto e = cell.find_last_not_of(" \t\r");
    cells.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
  }
  return cells;
}
bool parse_number(const std::string& s, double& x) {
  if (s.empty()) return false;
  char* end = nullptr;
  x = std::strtod(s.c_str(), &end);
  return end && *end == '\0';
}
}  // namespace

CsvTable read_csv(const std::string& path) {
  std::stringstream in(read_file(path));
  CsvTable t;
  std::vector<std::vector<double>> rows;
  std::string line;
  size_t lineno = 0, width = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto cells = split(line);
    std::vector<double> row(cells.size());
    bool numeric = true;
    for (size_t c = 0; c < cells.size() && numeric; ++c) numeric = parse_number(cells[c], row[c]);
    if (!numeric) {
      if (rows.empty() && t.header.empty()) {
        t.header = cells;
        width = cells.size();
        continue;
      }
      throw std::invalid_argument(fmt::format("csv: {}: line {} is not numeric: {}", path, lineno, line));
    }
    if (width == 0) width = row.size();
    if (row.size() != width)
      throw std::invalid_argument(fmt::format("csv: {}: line {} has {} columns, must have {}",
                                              path, lineno, row.size(), width));
    rows.push_back(std::move(row));
  }
  t.values.resize(static_cast<Index>(rows.size()), static_cast<Index>(width));
  for (size_t i = 0; i < rows.size(); ++i)
    for (size_t j = 0; j < width; ++j) t.values(static_cast<Index>(i), static_cast<Index>(j)) = rows[i][j];
  return t;
}

void write_csv(const std::string& path, const Matrix& values, const std::vector<std::string>& header) {
  std::string out;
  for (size_t c = 0; c < header.size(); ++c) out += (c ? "," : "") + header[c];
  if (!header.empty()) out += '\n';
  for (Index i = 0; i < values.rows(); ++i) {
    for (Index j = 0; j < values.cols(); ++j) out += (j ? "," : "") + format_double(values(i, j));
    out += '\n';
  }
  write_file_atomic(path, out);
}

}  // namespace attnflow
