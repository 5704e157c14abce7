// attnflow command-line entry point: builds the subcommands and reports errors as
// "attnflow: error: ..." on stderr with a non-zero exit status.
#include <cstdio>
#include <exception>

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
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attnflow: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
