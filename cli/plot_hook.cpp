#include "plot_hook.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace attnflow::cli {

namespace {

namespace fs = std::filesystem;
constexpr const char* kPython = "/usr/bin/python3";

// PYTHONPATH with build/python (next to this executable) first.
std::string python_path() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  std::string path = ec ? std::string() : (exe.parent_path() / "python").string();
  if (const char* old = std::getenv("PYTHONPATH"); old && *old) path += (path.empty() ? "" : ":") + std::string(old);
  return path;
}

// Runs python3 with `args` (no shell, so no quoting issues); quiet = discard its output.
int run_python(const std::vector<std::string>& args, bool quiet) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (quiet) {
      const int null = ::open("/dev/null", O_WRONLY);
      if (null >= 0) {
        ::dup2(null, 1);
        ::dup2(null, 2);
      }
    }
    std::vector<char*> argv{const_cast<char*>(kPython)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(kPython, argv.data());
    ::_exit(127);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::vector<std::string> pngs_since(const std::string& dir, fs::file_time_type since) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file() && it->path().extension() == ".png" && it->last_write_time() >= since)
      out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<std::string> run_plot_hook(const std::string& out_dir) {
  ::setenv("PYTHONPATH", python_path().c_str(), 1);
  std::fflush(stdout);
  if (::access(kPython, X_OK) != 0 || run_python({"-c", "import attnflow.plot"}, true) != 0) {
    fmt::print("plots skipped: the attnflow Python package is not importable\n");
    return {};
  }
  // File times have coarse resolution on some filesystems: allow one second of slack.
  const auto since = fs::file_time_type::clock::now() - std::chrono::seconds(1);
  const int rc = run_python({"-m", "attnflow.plot", out_dir}, false);
  if (rc != 0) {
    fmt::print("plots failed: python3 -m attnflow.plot {} exited with status {}\n", out_dir, rc);
    return {};
  }
  auto pngs = pngs_since(out_dir, since);
  fmt::print("plots: {} PNG file{} written\n", pngs.size(), pngs.size() == 1 ? "" : "s");
  for (const auto& f : pngs) fmt::print("  {}\n", f);
  return pngs;
}

}  // namespace attnflow::cli
