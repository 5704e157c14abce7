// The shared end-of-command plot hook: every command that writes an output directory calls
// run_plot_hook(dir) last. If `/usr/bin/python3 -c "import attnflow.plot"` works with
// PYTHONPATH = <directory of this executable>/python (build/python) plus the existing
// PYTHONPATH, it runs `python3 -m attnflow.plot DIR` (which reads DIR/summary.json's "kind")
// and lists the PNGs written; otherwise it prints
// "plots skipped: the attnflow Python package is not importable". Plotting never fails a command.
#pragma once

#include <string>
#include <vector>

namespace attnflow::cli {

// Returns the PNG files written (paths), empty when skipped or failed. Messages go to stdout.
std::vector<std::string> run_plot_hook(const std::string& out_dir);

}  // namespace attnflow::cli
