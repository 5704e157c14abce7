// Running a module of the attnflow Python package from a subcommand (view, animate, demo):
// `/usr/bin/python3 -m MODULE ARGS...` with PYTHONPATH = <directory of this executable>/python
// (build/python) followed by the existing PYTHONPATH, no shell (no quoting issues). The module
// does the work and prints its own messages; the CLI stays thin.
#pragma once

#include <string>
#include <vector>

namespace attnflow::cli {

// The interpreter the Python package is built for (Debian's, with its python3-numpy).
inline constexpr const char* kPython = "/usr/bin/python3";

// Runs kPython with `args` and that PYTHONPATH; quiet = discard its output. Returns its exit
// status (-1: could not run it).
int run_python(const std::vector<std::string>& args, bool quiet);
// True when `import attnflow` works with that PYTHONPATH.
bool python_package_importable();
// Runs python3 -m module args...; returns its exit status (-1: could not run it).
int run_python_module(const std::string& module, const std::vector<std::string>& args);
// Runs the module as a subcommand's whole job: throws std::runtime_error naming the command
// when the package is not importable; exits with the module's status when it fails (the module
// has printed "attnflow: error: ..." on stderr).
void run_python_command(const std::string& command, const std::string& module,
                        const std::vector<std::string>& args);
// The demo's end: DIR/view.html and DIR/movie.mp4 (small: few frames, 480 px), when the Python
// package is importable; like the plot hook, never fails the command.
void run_view_hook(const std::string& out_dir);

}  // namespace attnflow::cli
