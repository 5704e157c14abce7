// The MPI implementation of Collective (collective.hpp), for the CLI only (docs/usage/mpi.md).
// A process started by an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE, PMIX_RANK or
// PMI_RANK) initializes MPI; any other process never calls MPI_Init and runs as one process.
// Hybrid: MPI ranks across machines, OpenMP threads within (MPI_THREAD_FUNNELED: only the
// thread that initialized MPI calls it).
#pragma once

#include <memory>
#include <string>

#include "attnflow/base/collective.hpp"

namespace attnflow::dist {

// Whether an MPI launcher started this process (its environment says so).
bool launched_by_mpi();

class World final : public Collective {
 public:
  // MPI_Init_thread; MPI_Finalize at destruction or at exit (std::exit), whichever comes first.
  World(int* argc, char*** argv);
  ~World() override;
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void check() const override;
  std::vector<double> allgatherv(const double* mine, const std::vector<Index>& counts) const override;
  std::vector<std::string> gather(const std::string& mine) const override;
  std::string broadcast(const std::string& from_root) const override;
  void broadcast(double* data, Index count, int root) const override;
  long max(long value) const override;
  long sum(long value) const override;

  // This process failed with `message`: joins the agreement the others are in (their next
  // collective operation, or finish()) and returns the message of the lowest failing rank.
  std::string fail(const std::string& message) const;
  // The job ended here without error: the final agreement. Returns true when every process
  // succeeded, otherwise false with the message of the lowest failing rank in *message.
  bool finish(std::string* message) const;

 private:
  // -1 when every process is fine, else the lowest failing rank (its message in *message).
  int agree(bool ok, const std::string& mine, std::string* message) const;
  int rank_ = 0, size_ = 1;
};

}  // namespace attnflow::dist
