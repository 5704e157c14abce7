#include "python_module.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace attnflow::cli {

namespace {

namespace fs = std::filesystem;

std::string python_path() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  std::string path = ec ? std::string() : (exe.parent_path() / "python").string();
  if (const char* old = std::getenv("PYTHONPATH"); old && *old) path += (path.empty() ? "" : ":") + std::string(old);
  return path;
}

}  // namespace

int run_python(const std::vector<std::string>& args, bool quiet) {
  ::setenv("PYTHONPATH", python_path().c_str(), 1);
  std::fflush(stdout);
  std::fflush(stderr);
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
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool python_package_importable() {
  // Remembered: the demo asks twice.
  static const bool ok = ::access(kPython, X_OK) == 0 && run_python({"-c", "import attnflow"}, true) == 0;
  return ok;
}

int run_python_module(const std::string& module, const std::vector<std::string>& args) {
  std::vector<std::string> all{"-m", module};
  all.insert(all.end(), args.begin(), args.end());
  return run_python(all, false);
}

void run_python_command(const std::string& command, const std::string& module,
                        const std::vector<std::string>& args) {
  if (!python_package_importable())
    throw std::runtime_error(fmt::format("{}: the attnflow Python package is not importable by {} "
                                         "(PYTHONPATH={}); build it (make) or install it (make install)",
                                         command, kPython, python_path()));
  const int rc = run_python_module(module, args);
  if (rc != 0) {
    std::fflush(stdout);
    std::exit(rc > 0 ? rc : 1);  // the module printed the error
  }
}

void run_view_hook(const std::string& out_dir) {
  if (!python_package_importable()) {
    fmt::print("viewer skipped: the attnflow Python package is not importable\n");
    return;
  }
  const std::string html = out_dir + "/view.html";
  if (run_python_module("attnflow.view", {out_dir, "--out", html}) != 0)
    fmt::print("viewer failed: python3 -m attnflow.view {} did not finish\n", out_dir);
  const std::string movie = out_dir + "/movie.mp4";
  if (run_python_module("attnflow.animate", {out_dir, "--out", movie, "--fps", "8", "--size", "480"}) != 0)
    fmt::print("movie failed: python3 -m attnflow.animate {} did not finish\n", out_dir);
}

}  // namespace attnflow::cli
