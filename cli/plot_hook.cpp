#include "plot_hook.hpp"

#include "python_module.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace attnflow::cli {

namespace {

namespace fs = std::filesystem;

bool g_no_plots = false;  // --no-plots of a command without its own flag

// One Python start: import (exit 86 with the reason when the package is not importable),
// then draw; the hook lists the PNGs.
constexpr const char* kScript = R"py(import sys
try:
    import attnflow.plot as p
except ImportError as e:
    print(f"plots skipped: the attnflow Python package is not importable ({e})")
    sys.exit(86)
p.plot_directory(sys.argv[1])
)py";

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

const std::vector<std::string> kPlottedFiles = {
    "observables.csv", "snapshots/", "final.npy", "loss.csv", "risk.csv", "train.csv",
    "concentration.csv", "plan.npy", "coupling.npy", "pi.npy", "attention.npy", "softmax.npy",
    "sinkhorn.npy", "exact_plan.npy", "phase.csv", "phase_diagram.csv", "sweep.csv",
    "equiangular.csv"};

bool has_something_to_plot(const std::string& out_dir) {
  std::error_code ec;
  for (const auto& f : kPlottedFiles)
    if (fs::exists(fs::path(out_dir) / f, ec)) return true;
  return false;
}

void add_no_plots_everywhere(CLI::App& app) {
  for (CLI::App* sub : app.get_subcommands({})) {
    if (!sub->get_option_no_throw("--no-plots"))
      sub->add_flag_callback("--no-plots", [] { g_no_plots = true; },
                             "Do not draw plots (this command draws none unless it writes files attnflow.plot "
                             "knows)");
    add_no_plots_everywhere(*sub);
  }
}

std::vector<std::string> run_plot_hook(const std::string& out_dir) {
  if (g_no_plots) return {};
  if (const char* v = std::getenv("ATTNFLOW_NO_PLOTS"); v && *v && std::string(v) != "0") return {};
  if (!has_something_to_plot(out_dir)) return {};  // never start Python for nothing
  std::fflush(stdout);
  if (::access(kPython, X_OK) != 0) {
    fmt::print("plots skipped: {} not found\n", kPython);
    return {};
  }
  // File times have coarse resolution on some filesystems: allow one second of slack.
  const auto since = fs::file_time_type::clock::now() - std::chrono::seconds(1);
  const int rc = run_python({"-c", kScript, out_dir}, false);
  if (rc == 86) return {};  // not importable: the script said why
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
