// CSV matrices: rows of comma-separated numbers, an optional header line of names.
// Numbers are written with 17 significant digits so they read back bit for bit.
#pragma once

#include <string>
#include <vector>

#include "attnflow/base/types.hpp"

namespace attnflow {

struct CsvTable {
  std::vector<std::string> header;  // empty when the file has no header
  Matrix values;
};

CsvTable read_csv(const std::string& path);
void write_csv(const std::string& path, const Matrix& values,
               const std::vector<std::string>& header = {});
// Formats a double so that it round-trips ("%.17g", "nan", "inf").
std::string format_double(double x);

}  // namespace attnflow
