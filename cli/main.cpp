// attnflow command-line entry point: builds the subcommands and reports errors as
// "attnflow: error: ..." on stderr with a non-zero exit status.
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <stdexcept>

#include "attnflow/run/job.hpp"
#include "commands.hpp"
#include "distributed.hpp"
#include "plot_hook.hpp"

int main(int argc, char** argv) {
  // OpenMP threads wait passively unless the user chose: spinning waits make a
  // machine busy with other work many times slower (2.6 s vs 0.1 s measured on a loaded
  // 2-core machine). libgomp reads the policy when it loads, before main, so the process
  // restarts itself once with it set; OMP_WAIT_POLICY=active restores spinning.
  if (!std::getenv("OMP_WAIT_POLICY") && ::setenv("OMP_WAIT_POLICY", "passive", 1) == 0)
    ::execv("/proc/self/exe", argv);  // returns only on failure: then go on as we are
#ifdef __GLIBC__
  // Freed memory stays with the process for its next use (a sweep's next point allocates what
  // the last one freed: 16 MB of lanes and 8 MB of pair kernels for 2048 systems) instead of
  // going back to the OS and faulting in again, page by page: blocks below 32 MB come from
  // the heap and the heap is not trimmed. Peak memory is unchanged (measured: 187 MB for a
  // float64 d = 128 phase-diagram sweep either way, the sweep 6-10% faster on the development
  // VM, where each fresh page also costs the host a fault).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  // Under mpirun: MPI starts here, errors are reported once (cli/distributed.hpp).
  attnflow::cli::start_distributed(&argc, &argv);
  CLI::App app{"attnflow: attention as an operator on probability measures, and the dynamics "
               "of deep attention"};
  app.set_version_flag("--version", std::string("attnflow ") + ATTNFLOW_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);
  attnflow::cli::add_registered_commands(app);
  attnflow::cli::add_no_plots_everywhere(app);
  // SIGINT / SIGTERM: a command removes what it was writing and exits 128 + signal; run, icl,
  // sweep and demo switch to checkpointing at their next safe point (job.hpp).
  attnflow::install_stop_handlers(attnflow::StopMode::abandon);
  try {
    attnflow::cli::require_distributable(argc, argv);  // under mpirun -np P > 1
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return attnflow::cli::report_error(std::string(e.what()) + "\nRun with --help for usage.",
                                       e.get_exit_code() ? e.get_exit_code() : 2);
  } catch (const std::bad_alloc&) {
    // Sizes are estimated before a command starts (limits.hpp); this is the last resort, and
    // never shows the raw C++ text ("std::bad_alloc", "vector::_M_default_append").
    return attnflow::cli::report_error(
        "out of memory: the sizes given (config keys or arguments) need more memory than this "
        "machine has; reduce them");
  } catch (const std::length_error&) {
    return attnflow::cli::report_error(
        "a requested size exceeds what can be allocated; reduce the sizes given (config keys or "
        "arguments)");
  } catch (const std::exception& e) {
    return attnflow::cli::report_error(e.what());
  }
  return attnflow::cli::finish_distributed();
}
