// The CLI's one hook into the MPI layer (dist.hpp, docs/usage/mpi.md). Without MPI compiled in,
// or when no MPI launcher started the process, world() is null and every command runs exactly
// as one process; under `mpirun -np P` the commands that distribute (sweep, run, attention, ot)
// pass world() to the library, rank 0 writes the outputs and prints, the other ranks' stdout
// and stderr go to /dev/null, and an error anywhere is printed once, by rank 0.
#pragma once

#include <string>

#include "attnflow/base/collective.hpp"

namespace attnflow::cli {

// Starts MPI when an MPI launcher started this process (call first thing in main).
void start_distributed(int* argc, char*** argv);
// The processes of this job; null when running as one process.
const Collective* world();
// Whether this process writes outputs and prints results (rank 0, or the only process).
bool is_writer();
// Refuses, under mpirun with several ranks, a subcommand that does not distribute (every rank
// would run it and write the same outputs): argv's first word that is not an option names it.
// Throws std::invalid_argument naming the command and the ones that distribute.
void require_distributable(int argc, char** argv);
// Reports an error (call it from a catch block) and returns the exit status: prints "attnflow: error: <message>" (the
// message of the lowest failing rank when distributed, on rank 0 only) and returns `status`.
int report_error(const std::string& message, int status = 1);
// The command returned normally here: returns 0, or 1 after reporting another rank's error.
int finish_distributed();

}  // namespace attnflow::cli
