// "--key value" arguments of the small benchmark programs (cuda_bench, cuda_library_bench,
// cuda_ensemble_bench), read from argv[first] on.
#pragma once

#include <map>
#include <stdexcept>
#include <string>

namespace attnflow::bench {

inline std::map<std::string, std::string> parse_args(int argc, char** argv, int first, const std::string& program) {
  std::map<std::string, std::string> a;
  for (int i = first; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    if (key.rfind("--", 0) != 0) throw std::invalid_argument(program + ": bad argument " + key);
    a[key.substr(2)] = argv[i + 1];
  }
  return a;
}

// The value of --key; fallback when absent; required (an error naming it) when fallback is empty.
inline std::string arg(const std::map<std::string, std::string>& a, const std::string& key,
                       const std::string& fallback, const std::string& program) {
  const auto it = a.find(key);
  if (it != a.end()) return it->second;
  if (fallback.empty()) throw std::invalid_argument(program + ": --" + key + " is required");
  return fallback;
}

}  // namespace attnflow::bench
