// P in-process "ranks" (threads) behind a Collective that gathers through shared memory: the
// library's distributed paths tested without MPI, bit for bit against one process (the same
// over MPI is tests/mpi/run_mpi_tests.py). Only allgatherv, the broadcast of doubles and check are real; the other
// operations answer as a single rank would (the tests here do not use them).
#pragma once

#include <algorithm>
#include <barrier>
#include <string>
#include <vector>

#include "attnflow/base/collective.hpp"

namespace attnflow::test {

// P threads acting as ranks: gathers go through a shared slot per rank and a barrier.
struct Shared {
  explicit Shared(int p) : size(p), sync(p), slots(static_cast<std::size_t>(p)) {}
  int size;
  std::barrier<> sync;
  std::vector<std::vector<double>> slots;
};

class ThreadCollective final : public Collective {
 public:
  ThreadCollective(Shared& s, int rank) : s_(s), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return s_.size; }
  void check() const override { s_.sync.arrive_and_wait(); }
  std::vector<double> allgatherv(const double* mine, const std::vector<Index>& counts) const override {
    s_.slots[static_cast<std::size_t>(rank_)].assign(mine, mine + counts[static_cast<std::size_t>(rank_)]);
    s_.sync.arrive_and_wait();
    std::vector<double> all;
    for (const auto& part : s_.slots) all.insert(all.end(), part.begin(), part.end());
    s_.sync.arrive_and_wait();  // nobody overwrites a slot before every rank has read it
    return all;
  }
  void broadcast(double* data, Index count, int root) const override {
    if (rank_ == root) s_.slots[static_cast<std::size_t>(root)].assign(data, data + count);
    s_.sync.arrive_and_wait();
    if (rank_ != root) std::copy_n(s_.slots[static_cast<std::size_t>(root)].data(), count, data);
    s_.sync.arrive_and_wait();
  }
  std::vector<std::string> gather(const std::string&) const override { return {}; }
  std::string broadcast(const std::string& s) const override { return s; }
  long max(long v) const override { return v; }
  long sum(long v) const override { return v; }

 private:
  Shared& s_;
  int rank_;
};

}  // namespace attnflow::test
