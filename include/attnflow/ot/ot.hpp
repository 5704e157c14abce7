// Entropic optimal transport by log-domain Sinkhorn with eps-scaling (docs/math.md section 3):
//   f_i <- -eps log sum_j b_j exp((g_j - C_ij) / eps),  g_j <- -eps log sum_i a_i exp((f_i - C_ij) / eps)
// pi_ij = a_i b_j exp((f_i + g_j - C_ij) / eps); potentials in cost units. Every half-step is one
// streaming pass of the kernel (kernel.hpp): no n x m buffer is ever allocated here.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "attnflow/base/collective.hpp"
#include "attnflow/measure/measure.hpp"
#include "attnflow/ot/sinkhorn.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

enum class CostType { sqeuclidean, bilinear, dense };

// "sqeuclidean" | "bilinear" | "dense"; anything else throws naming `context` and the value.
CostType parse_cost_type(std::string_view name, std::string_view context = "ot");
std::string to_string(CostType type);

// A transport cost C (n, m). Point costs are kept in the kernel form of docs/math.md section 1,
//   C_ij = -(<u_i, v_j> + r_i + c_j),  u (n, k), v (m, k), r (n), c (m) row-major,
// so that (h_j - C_ij) / eps = <u_i / eps, v_j> + (c_j + h_j) / eps + r_i / eps is exactly what
// lse_reduce evaluates. A dense cost (small problems) is stored as given, (n, m) row-major, and
// each row enters the kernel through its column offsets.
class TransportCost {
 public:
  // |x_i - y_j|^2 (SciPy / POT convention). Both clouds are centered by their common mean
  // first (the cost is unchanged), which limits cancellation in |x|^2 + |y|^2 - 2<x, y>.
  static TransportCost sqeuclidean(const Matrix& x, const Matrix& y);
  // -beta <Q x_i, K y_j>: the attention affinity as a cost, so that eps = 1 gives the
  // Sinkhorn attention coupling. Empty q, k mean identity (d_k x d otherwise).
  static TransportCost bilinear(const Matrix& x, const Matrix& y, double beta,
                                const Matrix& q = Matrix(), const Matrix& k = Matrix());
  // A dense cost matrix (n, m), for small problems.
  static TransportCost dense(Matrix c);
  // sqeuclidean with the points split across the processes of `comm` (collective.hpp), for
  // problems whose points outgrow one machine: this process passes only its parts, the rows
  // kernel_row_parts(n, P)[rank] of x and kernel_row_parts(m, P)[rank] of y (n, m: the whole
  // sizes). gibbs_rows then takes this process's part of the rows only and streams the other
  // side's points from their owners, block by block in rank order (LseStream, kernel.hpp):
  // every row sees the key tiles of one process's pass, so the results equal sqeuclidean(x, y)'s
  // bit for bit (the common mean is summed in blocks of 256 points in both). Memory per process:
  // its parts of the points plus one block of the other side. Requires splittable(n, m, d);
  // entries, max_cost and to_dense are refused (no process has every point). One process:
  // sqeuclidean(x, y) itself.
  static TransportCost sqeuclidean_split(const Matrix& x_part, const Matrix& y_part, Index n, Index m,
                                           const Collective& comm);
  // Whether sqeuclidean_split takes these sizes: n, m >= 5 and 1 <= d <= 15 (the kernel's
  // fused path with the d + 1 values of the expected cost, LseStream::supports).
  static bool splittable(Index n, Index m, Index d);
  // The processes holding the points (sqeuclidean_split with several); null otherwise.
  const Collective* comm() const { return comm_; }

  CostType type() const { return type_; }
  Index rows() const { return n_; }
  Index cols() const { return m_; }
  // An upper bound of max C - min C (squared diameter for sqeuclidean): where eps-scaling starts.
  double scale() const { return scale_; }
  // The entry C_ij, O(k) (tests, plans).
  double operator()(Index i, Index j) const;
  // The exact max_ij C_ij, by one O(n m k) pass without storing C.
  double max_cost() const;
  // The dense matrix (n, m); throws above `max_entries` entries (size guard).
  Matrix to_dense(Index max_entries) const;

  // One soft-min half-step over the rows of C (or of C^T when `transpose`):
  //   softmin_i = -eps log sum_j exp(logw_j + (h_j - C_ij) / eps)      (h, logw: length of j)
  // and, on request, expectations under the row-normalized Gibbs weights
  //   P_ij = exp(logw_j + (h_j - C_ij) / eps + softmin_i / eps):
  //   ecost_i = sum_j P_ij C_ij and evals (rows, p) = sum_j P_ij vals_j (vals (len_j, p)).
  struct Gibbs {
    Vector softmin;
    Vector ecost;  // empty unless want_cost
    Matrix evals;  // (rows, 0) unless vals given
  };
  Gibbs gibbs(bool transpose, const Vector& h, const Vector& logw, double eps, bool want_cost,
              const Matrix* vals = nullptr) const;
  // The same for the rows [first, first + count) of C (of C^T when `transpose`) only: equal to
  // those rows of gibbs() bit for bit when the range is a part of kernel_row_parts()
  // (collective.hpp), which is how a distributed solve splits its half-steps.
  Gibbs gibbs_rows(bool transpose, Index first, Index count, const Vector& h, const Vector& logw,
                   double eps, bool want_cost, const Matrix* vals = nullptr) const;

 private:
  Gibbs gibbs_factored(bool transpose, Index first, Index count, const Vector& h,
                       const Vector& logw, double eps, bool want_cost, const Matrix* vals) const;
  Gibbs gibbs_dense(bool transpose, Index first, Index count, const Vector& h, const Vector& logw,
                    double eps, bool want_cost, const Matrix* vals) const;
  // gibbs_factored with this process's rows of a split cost: the keys come from their owners.
  void reduce_split(bool transpose, const Matrix& ue, const Vector& h, const Vector& logw, double eps,
                      bool want_cost, const Matrix* vals, Vector& lse, Matrix& out) const;
  static Matrix key_values(const MatrixRef& v, const VectorRef& c, bool want_cost, const Matrix* vals, Index first);
  void require_whole(const char* what) const;

  CostType type_ = CostType::dense;
  Index n_ = 0, m_ = 0;
  Matrix u_, v_;    // (n, k), (m, k) factored form
  Vector r_, c_;    // (n), (m)
  Matrix dense_;    // (n, m) for CostType::dense
  double scale_ = 0.0;
  // Sharded (sqeuclidean_split): u_, r_ hold this process's rows x_parts_[rank] of x, v_, c_
  // its rows y_parts_[rank] of y.
  const Collective* comm_ = nullptr;
  std::vector<Range> x_parts_, y_parts_;
};

// Entropic OT options: the engine's stopping rule (tol, max_iterations; `iterations` must stay
// 0, OT always runs to tol) plus eps and its scaling.
// tol: stop when sum_i |sum_j pi_ij - a_i| <= tol (columns are exact); OT's default is 1e-6.
// max_iterations: full iterations (f- and g-update), eps-scaling stages included (a longer
// schedule keeps its last max_iterations stages).
struct SinkhornOptions : SinkhornControl {
  SinkhornOptions() { tol = 1e-6; }
  double eps = 0.0;  // target regularization, cost units, > 0 (no default: scale-dependent)
  // eps-scaling: eps_k = eps_start * scaling^k down to eps, one iteration per stage, warm
  // starting the potentials. 0.5 is known to be too aggressive (GeomLoss users report negative
  // divergences), hence a default in the safe range 0.7-0.9 of docs/math.md section 3.3.
  bool eps_scaling = true;
  double scaling = 0.8;
  double eps_start = 0.0;  // 0: the cost scale (TransportCost::scale())
  // Over-relaxation omega in (0, 2) at the target eps (SinkhornLoop::omega; docs/math.md
  // section 3.3): 1 is plain Sinkhorn; 1.5 with scaling 0.5 cuts the iterations about
  // threefold when eps is about 0.01 of the cost scale. sinkhorn() only (the symmetric update
  // is averaged already).
  double overrelax = 1.0;
  // Called after every full iteration with (iterations so far, current eps, marginal error;
  // the error is NaN during eps-scaling stages, where it is not measured). For progress output.
  std::function<void(int, double, double)> on_iteration;
  // Several processes (collective.hpp; null = this one alone): each computes its part of the
  // rows (kernel_row_parts) of every half-step and the parts are gathered in rank order, so
  // the potentials, the marginal errors and the result are those of one process bit for bit.
  // Every process holds the O(n + m) potentials, and the whole cost (the points) unless the
  // cost's points are split (TransportCost::sqeuclidean_split over this same `comm`).
  const Collective* comm = nullptr;
  // Checkpoints of long solves (sinkhorn() only; `attnflow ot --resume`): on_checkpoint is
  // offered the state after every full iteration (iteration, eps, f, g, error) and returns
  // true to stop there (SinkhornResult::interrupted, no cost pass); resume continues such a
  // point, giving the result of the uninterrupted solve bit for bit (same problem and options).
  std::function<bool(const SinkhornIterate&)> on_checkpoint;
  const SinkhornResumePoint* resume = nullptr;

  // Throws std::invalid_argument naming the field, e.g. "sinkhorn: eps = -0.1, must be > 0".
  void validate() const;
};

struct SinkhornResult {
  Vector f, g;                  // (n), (m) potentials in cost units (unique up to f + t, g - t)
  double eps = 0.0;             // the target eps
  double cost = 0.0;            // <C, pi>
  double objective = 0.0;       // <C, pi> + eps KL(pi | a (x) b) of the returned plan
  int iterations = 0;           // full iterations, scaling stages included
  int stages = 0;               // eps values visited (1 without scaling)
  double marginal_error = 0.0;  // sum_i |sum_j pi_ij - a_i| (columns sum exactly to b)
  bool converged = false;
  std::string message;          // why not converged (empty when converged)
  Vector a, b;                  // the normalized weights used
  // on_checkpoint stopped the solve: f, g and iterations are a resume point; cost, objective
  // and marginal_error are not computed.
  bool interrupted = false;
};

// Solves min <C, pi> + eps KL(pi | a (x) b) over Pi(a, b). a (n), b (m) are validated and
// normalized to mass 1 (empty = uniform). `g_init` (m), when given, warm-starts the
// potentials and skips eps-scaling. Non-convergence is a status in the result.
SinkhornResult sinkhorn(const Vector& a, const Vector& b, const TransportCost& cost,
                        const SinkhornOptions& options, const Vector* g_init = nullptr);
// Self-transport OT(a, a) for a symmetric cost C = C^T (n, n) (e.g. sqeuclidean(x, x)), by
// the symmetric (averaged) update f <- (f + F(f)) / 2 with eps-scaling: one potential, f = g,
// and no stall where alternating updates oscillate (eps << diameter^2). The plan
// pi_ij = a_i a_j exp((f_i + f_j - C_ij) / eps) is symmetric; marginal_error is its row (=
// column) violation, objective its primal entropic objective 2 <f, row mass>. Symmetry of the
// cost is the caller's promise (checked only for shape).
SinkhornResult sinkhorn_symmetric(const Vector& a, const TransportCost& cost,
                                  const SinkhornOptions& options, const Vector* f_init = nullptr);
// Squared Euclidean cost between two measures.
SinkhornResult sinkhorn(const Measure& mu, const Measure& nu, const SinkhornOptions& options);

}  // namespace attnflow
