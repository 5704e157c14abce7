// Collective: the few operations a job distributed over several processes needs (docs/usage/
// mpi.md). The library's distributed paths (sweeps, ensemble runs, entropic OT, attention) take
// a `const Collective*` (null = one process, exactly as without it); the MPI implementation is
// dist.hpp's, linked into the CLI only, so that nothing here depends on MPI.
//
// Failure agreement: every operation first agrees that no process failed. A process whose
// command threw joins the agreement pending on the others with its message (dist.hpp's
// fail()), and the others then throw PeerFailed carrying the message of the lowest failing
// rank: one failing process never leaves the others waiting, and the error is reported once.
//
// Determinism: gathers return the processes' parts in rank order; callers partition work with
// block_range (contiguous, ascending), so a gathered vector is in global order and any sum
// over it is the single-process sum.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "attnflow/base/types.hpp"

namespace attnflow {

// Thrown by a collective operation when another process failed; what() is that process's
// error message (without the "attnflow: error: " prefix).
struct PeerFailed : std::runtime_error {
  int rank;
  PeerFailed(int failed_rank, const std::string& message)
      : std::runtime_error(message), rank(failed_rank) {}
};

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  bool writer() const { return rank() == 0; }  // the process that writes shared outputs

  // Agrees that every process is still fine (throws PeerFailed otherwise).
  virtual void check() const = 0;
  // Every process's `counts[rank()]` doubles, concatenated in rank order, on every process.
  virtual std::vector<double> allgatherv(const double* mine, const std::vector<Index>& counts) const = 0;
  // Every process's bytes in rank order, on rank 0 (empty elsewhere).
  virtual std::vector<std::string> gather(const std::string& mine) const = 0;
  // Rank 0's bytes on every process.
  virtual std::string broadcast(const std::string& from_root) const = 0;
  // Process `root`'s `count` doubles into `data` on every process (every process passes the
  // same count; root's data is unchanged).
  virtual void broadcast(double* data, Index count, int root) const = 0;
  virtual long max(long value) const = 0;
  virtual long sum(long value) const = 0;
};

// A contiguous part [first, first + count) of `total` items for part `part` of `parts`, cut at
// multiples of `align` (so that kernel query blocks of a distributed pass are the blocks of
// the single-process pass); parts differ by at most one `align` unit. Ascending with part.
struct Range {
  Index first = 0, count = 0;
  friend bool operator==(const Range&, const Range&) = default;
};
inline Range block_range(Index total, int parts, int part, Index align = 1) {
  const Index units = (total + align - 1) / align;
  const auto unit_at = [&](int p) { return units * p / parts; };
  const Index lo = std::min(total, unit_at(part) * align);
  const Index hi = std::min(total, unit_at(part + 1) * align);
  return {lo, hi - lo};
}
// The counts of every part (the `counts` of allgatherv).
inline std::vector<Index> block_counts(Index total, int parts, Index align = 1) {
  std::vector<Index> c;
  for (int p = 0; p < parts; ++p) c.push_back(block_range(total, parts, p, align).count);
  return c;
}

// The parts of a kernel pass over `total` query rows (lse_reduce, kernel.hpp) split across
// `parts` processes, such that each part computed alone equals the same rows of the whole pass
// bit for bit: cuts at multiples of 256 rows (a multiple of the kernel's query blocks, 32),
// and no part of 1 to 4 rows when the whole has more (lse_reduce takes another path for at
// most 4 queries): such a last part joins the part before it.
inline std::vector<Range> kernel_row_parts(Index total, int parts) {
  constexpr Index kAlign = 256, kMinRows = 5;
  std::vector<Range> r;
  for (int p = 0; p < parts; ++p) r.push_back(block_range(total, parts, p, kAlign));
  for (int p = parts - 1; p > 0; --p) {
    if (r[p].count == 0) continue;
    if (r[p].count < kMinRows && total >= kMinRows) {
      int q = p - 1;
      while (q > 0 && r[q].count == 0) --q;
      r[q].count += r[p].count;
      for (int e = q + 1; e < parts; ++e) r[e] = {r[q].first + r[q].count, 0};  // empty, at the end
    }
    break;  // only the last non-empty part can be short
  }
  return r;
}
// Points split across processes (each holds only its rows of both sides): `comm`, and the
// rows of the queries and of the keys each process holds (kernel_row_parts of n and of m).
struct SplitRows {
  const Collective* comm = nullptr;
  std::vector<Range> query_parts, key_parts;
  Range queries() const { return query_parts[static_cast<std::size_t>(comm->rank())]; }
  Range keys() const { return key_parts[static_cast<std::size_t>(comm->rank())]; }
  Index n() const { return query_parts.back().first + query_parts.back().count; }  // all queries
  Index m() const { return key_parts.back().first + key_parts.back().count; }      // all keys
};

// Rows of `width` values per row, split in `parts` (one per rank): this rank's rows `mine`
// (row-major), the whole array (row-major) on every rank.
inline std::vector<double> allgather_rows(const Collective& comm, const std::vector<Range>& parts,
                                          const double* mine, Index width = 1) {
  std::vector<Index> counts;
  for (const Range& r : parts) counts.push_back(r.count * width);
  return comm.allgatherv(mine, counts);
}

}  // namespace attnflow
