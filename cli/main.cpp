// attnflow command-line entry point: builds the subcommands and reports errors as
// "attnflow: error: ..." on stderr with a non-zero exit status.
#include <cstdio>
#include <exception>
#include <new>
#include <stdexcept>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"attnflow: attention as an operator on probability measures, and the dynamics "
               "of deep attention"};
  app.set_version_flag("--version", std::string("attnflow ") + ATTNFLOW_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);
  attnflow::cli::add_registered_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "attnflow: error: %s\nRun with --help for usage.\n", e.what());
    return e.get_exit_code() ? e.get_exit_code() : 2;
  } catch (const std::bad_alloc&) {
    // Sizes are estimated before a command starts (limits.hpp); this is the last resort, and
    // never shows the raw C++ text ("std::bad_alloc", "vector::_M_default_append").
    std::fprintf(stderr,
                 "attnflow: error: out of memory: the sizes given (config keys or arguments) need "
                 "more memory than this machine has; reduce them\n");
    return 1;
  } catch (const std::length_error&) {
    std::fprintf(stderr,
                 "attnflow: error: a requested size exceeds what can be allocated; reduce the "
                 "sizes given (config keys or arguments)\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attnflow: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
