// The shared end-of-command plot hook: every command that writes an output directory calls
// run_plot_hook(dir) last. Plots never dominate a command:
//  - Python is started only when DIR holds a file that attnflow.plot draws (kPlottedFiles
//    below, the same list as python/attnflow/plot.py's PLOTTED_FILES), so `attnflow ot`
//    without --plan, for instance, never starts it;
//  - it is started once: `/usr/bin/python3 -c ...` imports attnflow.plot (PYTHONPATH =
//    <directory of this executable>/python, i.e. build/python, plus the existing PYTHONPATH)
//    and draws DIR by its summary.json's "kind"; if the import fails it prints
//    "plots skipped: the attnflow Python package is not importable (reason)";
//  - `--no-plots` (every command has it) or ATTNFLOW_NO_PLOTS=1 skips it.
// attnflow.plot itself caps what it draws (a few hundred tokens of a trajectory). Plotting
// never fails a command.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace attnflow::cli {

// The files (relative to DIR) that attnflow.plot draws; "snapshots/" is the directory.
extern const std::vector<std::string> kPlottedFiles;

// True when DIR holds one of kPlottedFiles.
bool has_something_to_plot(const std::string& out_dir);

// Returns the PNG files written (paths), empty when skipped or failed. Messages go to stdout.
std::vector<std::string> run_plot_hook(const std::string& out_dir);

// Adds --no-plots to every subcommand (recursively) that does not define it itself; the flag
// makes run_plot_hook a no-op. Called once by main() after the commands are registered.
void add_no_plots_everywhere(CLI::App& app);

}  // namespace attnflow::cli
