// The CLI's hook into the MPI layer: see distributed.hpp. Compiled with or without MPI.
#include "distributed.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>

#ifdef ATTNFLOW_HAVE_MPI
#include "attnflow/dist/dist.hpp"
#endif

namespace attnflow::cli {

namespace {
#ifdef ATTNFLOW_HAVE_MPI
std::unique_ptr<dist::World> g_world;
#endif
}  // namespace

void start_distributed(int* argc, char*** argv) {
#ifdef ATTNFLOW_HAVE_MPI
  if (!dist::launched_by_mpi()) return;
  g_world = std::make_unique<dist::World>(argc, argv);
  if (g_world->rank() != 0) {
    // One report per job: rank 0 prints results, progress and errors (its own or another's).
    std::fflush(stdout);
    std::fflush(stderr);
    const int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) {
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::close(null);
    }
  }
#else
  (void)argc;
  (void)argv;
#endif
}

const Collective* world() {
#ifdef ATTNFLOW_HAVE_MPI
  return g_world.get();
#else
  return nullptr;
#endif
}

bool is_writer() { return !world() || world()->writer(); }

void require_distributable(int argc, char** argv) {
  if (!world() || world()->size() < 2) return;
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') continue;
    for (const char* ok : {"sweep", "run", "attention", "ot"})
      if (word == ok) return;
    throw std::invalid_argument("mpirun: command = \"" + word + "\" with " + std::to_string(world()->size()) +
                                " ranks, must be one that distributes (sweep, run, attention, ot); run it "
                                "without mpirun (or with -np 1)");
  }
}

int report_error(const std::string& message, int status) {
  std::string text = message;
#ifdef ATTNFLOW_HAVE_MPI
  // A PeerFailed is the agreed message already; any other error joins the agreement.
  if (g_world) {
    bool agreed = false;
    if (const std::exception_ptr e = std::current_exception()) {
      try {
        std::rethrow_exception(e);
      } catch (const PeerFailed&) {
        agreed = true;
      } catch (...) {
      }
    }
    if (!agreed) text = g_world->fail(message);
  }
#endif
  if (is_writer()) std::fprintf(stderr, "attnflow: error: %s\n", text.c_str());
  return status;
}

int finish_distributed() {
#ifdef ATTNFLOW_HAVE_MPI
  if (g_world) {
    std::string msg;
    if (!g_world->finish(&msg)) {
      if (is_writer()) std::fprintf(stderr, "attnflow: error: %s\n", msg.c_str());
      return 1;
    }
  }
#endif
  return 0;
}

}  // namespace attnflow::cli
