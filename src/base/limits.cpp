#include "attnflow/base/limits.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace attnflow {

namespace {
constexpr const char* kOverride = "set ATTNFLOW_NO_SIZE_LIMITS=1 to try anyway";
}

double physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return 0.0;
  return static_cast<double>(pages) * static_cast<double>(page);
}

bool size_limits_disabled() {
  const char* v = std::getenv("ATTNFLOW_NO_SIZE_LIMITS");
  return v && *v && std::string(v) != "0";
}

void require_memory(std::string_view context, std::string_view key, std::string_view value,
                    double bytes) {
  const double have = physical_memory_bytes();
  if (have <= 0.0 || !(bytes > have) || size_limits_disabled()) return;
  throw std::invalid_argument(fmt::format(
      "{}: {} = {} needs about {:.3g} bytes of memory, more than this machine's {:.3g} ({})",
      context, key, value, bytes, have, kOverride));
}

void require_count(std::string_view context, std::string_view key, std::string_view value,
                   double count, double limit, std::string_view what) {
  if (!(count > limit) || size_limits_disabled()) return;
  throw std::invalid_argument(fmt::format("{}: {} = {} gives {:.3g} {}, must be <= {:g} ({})",
                                          context, key, value, count, what, limit, kOverride));
}

}  // namespace attnflow
