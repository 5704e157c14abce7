#include <cstdlib>
#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "attnflow/csv.hpp"
#include "attnflow/npy.hpp"
#include "attnflow/parallel.hpp"
#include "commands.hpp"

namespace attnflow::cli {

namespace {
struct Entry {
  std::string name;
  int order;
  std::function<void(CLI::App&)> add;
};
std::vector<Entry>& registry() {
  static std::vector<Entry> entries;  // function-local: safe from static-init order
  return entries;
}
}  // namespace

Registrar::Registrar(std::string name, int order, std::function<void(CLI::App&)> add) {
  registry().push_back({std::move(name), order, std::move(add)});
}

void add_registered_commands(CLI::App& app) {
  auto entries = registry();
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.order < b.order; });
  for (auto& e : entries) e.add(app);
}

Matrix load_matrix(const std::string& path, const std::string& option) {
  try {
    if (path.size() > 4 && path.substr(path.size() - 4) == ".csv") return read_csv(path).values;
    return read_npy_matrix(path);
  } catch (const std::exception& e) {
    throw std::invalid_argument(fmt::format("{} {}: {}", option, path, e.what()));
  }
}

Vector load_vector(const std::string& path, const std::string& option) {
  try {
    if (path.size() > 4 && path.substr(path.size() - 4) == ".csv") {
      const Matrix m = read_csv(path).values;
      if (m.cols() != 1 && m.rows() != 1)
        throw std::invalid_argument(fmt::format("csv has shape ({}, {}), must be one column", m.rows(), m.cols()));
      return m.cols() == 1 ? Vector(m.col(0)) : Vector(m.row(0).transpose());
    }
    return read_npy_vector(path);
  } catch (const std::exception& e) {
    throw std::invalid_argument(fmt::format("{} {}: {}", option, path, e.what()));
  }
}

void add_threads_option(CLI::App& sub) {
  sub.add_option_function<int>(
         "--threads", [](int t) { set_num_threads(t); },
         "Number of threads (default: all cores; results do not depend on it)")
      ->check(CLI::PositiveNumber);
}

long stop_after_from_env() {
  const char* v = std::getenv("ATTNFLOW_STOP_AFTER_CHECKPOINTS");
  return v && *v ? std::strtol(v, nullptr, 10) : 0;
}

}  // namespace attnflow::cli
