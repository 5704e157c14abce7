// The streaming log-sum-exp reduction, attnflow's one hot kernel (docs/math.md section 2).
//
// For queries u (n, k) and keys v (m, k), with column offsets c (m) and values vals (m, p):
//   s_ij   = <u_i, v_j> + c_j
//   lse_i  = log sum_j exp(s_ij)
//   out_i  = sum_j exp(s_ij - lse_i) vals_j
// computed tile by tile with a running maximum and rescaled partial sums ("online softmax"),
// so memory is O((n + m)(k + p)) and never O(n m). Every sum of exponentials in attnflow
// (attention, Sinkhorn half-steps, flows, energies, Monte Carlo estimates) calls this.
// Row offsets r_i of the form s_ij = <u_i, v_j> + r_i + c_j (docs/math.md section 1.1) only shift
// lse_i, so callers add them to lse themselves.
//
// Determinism: each query's reduction runs over key tiles in a fixed order on one thread;
// threads split queries only, so the result is bit-identical for any thread count.
#pragma once

#include <functional>
#include <limits>
#include <vector>

#include "attnflow/base/collective.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

struct ReduceInput {
  const double* u = nullptr;     // (n, k) row-major, queries (already scaled, e.g. by beta)
  const double* v = nullptr;     // (m, k) row-major, keys
  const double* col = nullptr;   // (m) column offsets (log-weights, potentials); null = 0
  const double* vals = nullptr;  // (m, p) row-major values; null when p = 0
  Index n = 0, m = 0, k = 0, p = 0;
};

struct ReduceOutput {
  double* lse = nullptr;  // (n), may be null when only out is wanted
  double* out = nullptr;  // (n, p) row-major, may be null when p = 0
};

// Runs the reduction with num_threads() threads. Validates shapes, not values: callers
// validate user input (a NaN here propagates; the public entry points check outputs).
void lse_reduce(const ReduceInput& in, const ReduceOutput& out);

// Convenience wrapper on Eigen types: returns lse (n) and fills out (n, p) when vals has
// columns. col may be empty (zero offsets); vals may have zero columns.
void lse_reduce(const MatrixRef& u, const MatrixRef& v, const VectorRef& col,
                const MatrixRef& vals, Vector& lse, Matrix& out);
// The same with `comm` (several processes, collective.hpp; null or one: as above): every
// process passes the same input; each reduces its part of the query rows (kernel_row_parts,
// cut at multiples of 256 so that each part equals those rows of one pass), then the rows are
// gathered: lse and out complete on every process, bit-identical to one process.
void lse_reduce(const MatrixRef& u, const MatrixRef& v, const VectorRef& col,
                const MatrixRef& vals, Vector& lse, Matrix& out, const Collective* comm);

// The reduction with the keys in consecutive blocks, for a distributed solve in which each
// process holds only its part of the keys (TransportCost::sqeuclidean_split, ot.hpp): add()
// each block in key order, then finish(). Every block but the last has a multiple of
// kKeyBlock keys, so that the blocks' key tiles are those of one pass over all keys: lse and
// out equal lse_reduce's bit for bit. This is the fused path of lse_reduce (which runs through
// a single add()), taken when supports(): n >= 5 queries, k and p <= 16. Memory O(n (k + p))
// for the queries' running state plus one packed block. CPU only (the process-wide device is
// not consulted).
class LseStream {
 public:
  static constexpr Index kKeyBlock = 256;
  struct Row {  // a query's running maximum (log2 units) and sum of exponentials
    double max = -std::numeric_limits<double>::infinity();
    double sum = 0.0;
  };
  static bool supports(Index n, Index k, Index p);
  // Queries u (n, k) row-major, kept by pointer until finish(); p values per key.
  LseStream(const double* u, Index n, Index k, Index p);
  // The next m >= 1 keys: v (m, k), col (m, null = 0), vals (m, p; null when p = 0).
  void add(const double* v, const double* col, const double* vals, Index m);
  void finish(const ReduceOutput& out) const;
  Index keys() const { return keys_; }

 private:
  const double* u_;
  Index n_, k_, p_, keys_ = 0;
  std::vector<Row> rows_;
  std::vector<double> acc_;
};

// The reduction for this process's queries u against keys split across the processes of `comm`
// (each holds only its part of the keys: points that outgrow one machine). Process b holds rows
// key_parts[b] (kernel_row_parts, collective.hpp) of a table with w >= k columns, `mine`
// here: the keys in its first k columns, then whatever the caller forms the offsets and values
// from. The parts go out one at a time in rank order (Collective::broadcast), and form(range,
// rows, col, vals) turns each into its keys' column offsets (count) and values (count, p).
// The parts are whole key tiles, so each query row receives its terms in the order of one
// pass over all keys: lse and out (this process's rows) equal lse_reduce's bit for bit.
// Requires LseStream::supports(u.rows(), k, p) where u has rows; every process calls it.
using KeyBlockForm = std::function<void(Range keys, const Matrix& rows, Vector& col, Matrix& vals)>;
void lse_reduce_split_keys(const MatrixRef& u, const Matrix& mine, Index k, Index p,
                           const std::vector<Range>& key_parts, const KeyBlockForm& form,
                           const Collective& comm, Vector& lse, Matrix& out);

// The same reduction when queries and keys are the same points up to a factor beta >= 0:
// s_ij = beta <y_i, y_j> + c_j (self-attention with Q = K; the SA and USA flows). Gives
// exactly lse_reduce's lse and out (to rounding) with half the exponentials, by symmetry
// (kernel_symmetric.cpp). Falls back to lse_reduce when symmetric_fast_path() is false:
// beta < 0, k or p > 16, or log-weights c_j + beta |y_j|^2 / 2 spread over more than 300 or
// not finite (zero weights). Deterministic on any thread count; O(n (k + p)) memory.
// With `comm` (several processes, collective.hpp), every process passes the same input and
// gets the whole lse and out, bit-identical to one process: the tiles of rows are split in
// contiguous parts, each process runs the blocks of pairs that touch its tiles (in the
// single-process order, so each of its rows receives the same terms in the same order), and
// the rows are gathered. A block between two processes' tiles runs on both: each process
// evaluates about 2/P - 1/P^2 of the exponentials. The fallback and a GPU device compute
// everything on every process (the same result on each).
struct SymmetricReduceInput {
  const double* y = nullptr;     // (n, k) row-major, the points (queries = beta y, keys = y)
  const double* col = nullptr;   // (n) column offsets; null = 0
  const double* vals = nullptr;  // (n, p) row-major; null when p = 0
  Index n = 0, k = 0, p = 0;
  double beta = 1.0;
  const Collective* comm = nullptr;  // null (or one process): everything here
};
void lse_reduce_symmetric(const SymmetricReduceInput& in, const ReduceOutput& out);
bool symmetric_fast_path(const SymmetricReduceInput& in);

// The symmetric reduction with the points split across the processes of `comm` (points that
// outgrow one machine; `attnflow run --split-points`): each process passes only its rows of y,
// col and vals (in.n = its count; in.comm unused) and gets lse and out for those rows, equal
// to lse_reduce_symmetric's bit for bit. The parts are symmetric_row_parts(n, processes):
// whole tiles of the single pass. The tiles go out one at a time in tile order
// (Collective::broadcast), and each process runs every block of the others' tiles with its
// own, which is the order in which each of its rows receives its terms in one process: from
// 64 tiles on (symmetric_splittable; n >= 32768) the single pass runs its blocks
// in waves that give every row its terms in tile order. Each process evaluates about n^2 / P
// exponentials (the symmetry saves a factor 2 only within a process): 2 processes take about
// the time of one. The fallback of lse_reduce_symmetric (weights spread too far, beta < 0) is
// taken here as lse_reduce_split_keys. Memory O(n (k + p) / P) plus one tile. CPU only.
std::vector<Range> symmetric_row_parts(Index n, int parts);
bool symmetric_splittable(Index n, Index k, Index p);
void lse_reduce_symmetric_split(const SymmetricReduceInput& in, const std::vector<Range>& parts,
                                const Collective& comm, const ReduceOutput& out);

// Vectorized exp of a contiguous array in place (the SIMD exponential the kernel uses);
// exposed for the exp-throughput benchmark that defines the kernel's speed limit.
void exp_inplace(double* x, Index size);
// The single-precision exponential of the batch kernels' float path (batch_kernel.hpp), with
// the same contract: exactly 0 below -87, NaN kept, about 1 ulp of float.
void exp_inplace(float* x, Index size);
// 2^x of a contiguous array in place (the base-2 exponential of the symmetric reduction):
// 0 below 2^-1022, NaN kept; with finite_only (the variant the symmetric reduction uses,
// for finite x <= 1023 only) results below 2^-1022 are subnormal instead.
void exp2_inplace(double* x, Index size, bool finite_only = false);

}  // namespace attnflow
