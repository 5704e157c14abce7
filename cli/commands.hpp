// The attnflow command line: one file per subcommand. Each file registers its subcommand
// with a static Registrar, so adding a command touches no shared file:
//
//   namespace { const Registrar reg{"ot", 30, [](CLI::App& app) { ... }}; }
//
// Subcommands parse arguments and call the library; they hold no numerics.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "attnflow/base/collective.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow::cli {

// Registers a subcommand builder; `order` fixes the order in --help.
struct Registrar {
  Registrar(std::string name, int order, std::function<void(CLI::App&)> add);
};
// Adds every registered subcommand to the app (in order).
void add_registered_commands(CLI::App& app);

// Shared helpers for subcommands (cli/common.cpp). Paths ending in .csv are read as CSV
// (optional header line), anything else as .npy; errors are prefixed with the option name.
Matrix load_matrix(const std::string& path, const std::string& option);
Vector load_vector(const std::string& path, const std::string& option);
// Whether load_matrix reads `path` as CSV (it ends in .csv).
bool is_csv(const std::string& path);
// For points split across MPI processes (each reads its rows alone): the (rows, columns) of a
// .npy file's array from its header ((n, 1) for 1-D, (0, 0) for other shapes, which
// load_matrix refuses), and rows [first, first + count) of it. Errors name the option.
std::pair<Index, Index> npy_rows_cols(const std::string& path, const std::string& option);
Matrix load_rows(const std::string& path, const std::string& option, Range rows);
// A matrix with >= 1 row and column: for options whose empty value would mean something else
// (an empty --q was silently the identity).
Matrix load_nonempty_matrix(const std::string& path, const std::string& option);
// An integer option in [lo, hi]; anything else (0, -1, abc, 1e99) is the message
// "--threads = 0, must be an integer in [1, 1024]".
CLI::Validator integer_in(const std::string& option, long long lo, long long hi);
inline constexpr long long kMaxThreads = 1024;
// Adds --threads N to a subcommand; the value is applied before the command runs. Also adds
// --device and --precision (add_device_option): every numeric command has both.
void add_threads_option(CLI::App& sub);
// --device cpu|cuda and --precision float64|float32: set the process-wide device
// (kernel_cuda.hpp set_device) before the command runs; a config's compute.device, where the
// command reads one, then overrides it for that run.
void add_device_option(CLI::App& sub);
// A string option with a fixed set of values: "--device = gpu, must be one of cpu, cuda".
CLI::Validator one_of(const std::string& option, const std::vector<std::string>& allowed);
// Test hook for resumable commands (run, icl): ATTNFLOW_STOP_AFTER_CHECKPOINTS=K stops after
// K checkpoints, as if killed; 0 (unset) = never.
long stop_after_from_env();
// This process's exact command line (shell-quoted) with --resume appended if missing.
std::string resume_command();
// Reports a resumable job that stopped (a stop request with `signal`, or the test hook when
// `signal` is 0: `hook_text` says how) with the command that resumes it; returns the exit
// status: 128 + signal (130 SIGINT, 143 SIGTERM), or 3 for the hook.
int report_stopped(const std::string& command, int signal, const std::string& hook_text, const std::string& out);
// The endings a resumable job (icl, ot) has before its results: found finished by --resume
// (prints so and returns true: nothing more to do) or stopped at a checkpoint (report_stopped,
// then exits with its status). False: the job finished now.
bool ended_early(const std::string& command, bool already_finished, bool interrupted, int signal, long checkpoints,
                 const std::string& out);

}  // namespace attnflow::cli
