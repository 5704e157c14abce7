// Attention flows: tokens x_i (n, d) as interacting particles, dx_i/dt = X[mu_t](x_i)
// (docs/math.md sections 4 and 5). SA: P_x(sum_j P_ij V x_j) with softmax weights of
// beta <Q x_i, K x_j>; USA: unnormalized weights; plus Sinkhorn, Kuramoto, mean-shift, hardmax,
// noisy (kappa) and general Vlasov fields. A Flow turns options into an attnflow::Ode.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "attnflow/flow/integrate.hpp"
#include "attnflow/attention/head.hpp"
#include "attnflow/attention/normalization.hpp"
#include "attnflow/base/rng.hpp"
#include "attnflow/flow/scheme.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

class Collective;  // collective.hpp
struct SplitRows;  // collective.hpp

// Which velocity field (docs/math.md section 5; "vlasov" is section 4's sum_j w_j F(x, x_j)).
//   sa        P_x sum_h sum_j softmax_j(beta <Q_h x, K_h x_j> + log w_j) W_h V_h x_j
//   usa       P_x sum_h sum_j w_j exp(beta <Q_h x, K_h x_j>) W_h V_h x_j
//   sinkhorn  P_x sum_h sum_j (pi^h_ij / w_i) W_h V_h x_j, pi^h the Sinkhorn coupling in Pi(w, w)
//   kuramoto  state = angles t (n, 1): dt_i/dt = -sum_j w_j e^{beta cos(t_i - t_j)} sin(t_i - t_j)
//             (USA form), divided by sum_k w_k e^{beta cos(t_i - t_k)} for the SA form
//   meanshift beta (m_i - x_i), m_i the average of x_j under w_j exp(-beta |x_i - x_j|^2 / 2)
//             (= grad log of the Gaussian kernel density), projected on the sphere, where it
//             equals beta times the SA field (Q = K = V = I)
//   hardmax   P_x sum_h V_h x_{j*}, j* = argmax_{j != i} <Q_h x_i, K_h x_j> (lowest j on ties)
//   vlasov    P_x sum_j w_j F(x_i, x_j), F from VlasovOptions
// P_x y = y - <x, y> x is applied only when FlowOptions::sphere is true.
enum class FieldKind { sa, usa, sinkhorn, kuramoto, meanshift, hardmax, vlasov };
// Errors name `field` ("context: kind = \"x\", must be one of ..."); run configs pass "model.kind".
FieldKind parse_field_kind(std::string_view name, std::string_view context = "flow",
                           std::string_view field = "kind");
std::string to_string(FieldKind kind);

// count heads for dimension d, from a seed (independent Rng stream per head and matrix):
//   "identity": Q = K = V = I (every head)
//   "gaussian": Q, K, V with i.i.d. N(0, 1/d) entries (d x d)
//   "goe":      Q = I, K and V GOE-type symmetric, (G + G^T) / sqrt(2 d), G i.i.d. N(0, 1),
//               so the affinity <Q x, K y> = x^T K y is a symmetric bilinear form
// Throws naming "flow: qkv" for another name and "flow: heads" for count < 1.
std::vector<Head> make_heads(int count, Index d, std::string_view qkv, std::uint64_t seed);
// The check of make_heads' qkv name, for configs that read it ("run: model.qkv = ...").
void check_qkv(std::string_view qkv, std::string_view context = "flow", std::string_view field = "qkv");

// The interaction F of the vlasov field, F = -grad W(x - y) for the two built-in kernels:
//   gaussian: W(z) = -sigma^2 exp(-|z|^2 / (2 sigma^2)), F = -(x - y) exp(-|x - y|^2/(2 sigma^2));
//             the sum over j is one kernel pass (u = x / sigma^2, col_j = log w_j - |x_j|^2/(2 sigma^2))
//   power:    W(z) = |z|^a / a - |z|^b / b (attractive-repulsive, a > b >= 1),
//             F = -(|z|^{a-2} - |z|^{b-2}) z with F(x, x) = 0; one O(n^2 d) pass, no exponentials
//   custom:   F given as a function (one O(n^2) pass; keep n small)
enum class Interaction { gaussian, power, custom };
Interaction parse_interaction(std::string_view name, std::string_view context = "flow",
                              std::string_view field = "vlasov.interaction");
std::string to_string(Interaction interaction);

// f += F(x, y) for points x, y of dimension d (f has d entries, accumulate into it).
using InteractionKernel = std::function<void(const double* x, const double* y, Index d, double* f)>;

struct VlasovOptions {
  Interaction interaction = Interaction::gaussian;
  double sigma = 1.0;  // gaussian width, > 0
  double a = 2.0;      // power: attraction exponent, > b
  double b = 1.0;      // power: repulsion exponent, >= 1 (F stays bounded at z = 0)
  InteractionKernel kernel;  // custom
};

struct FlowOptions {
  FieldKind kind = FieldKind::sa;
  double beta = 1.0;            // inverse temperature, finite (>= 0; hardmax ignores it)
  // Heads (head.hpp; empty matrices = identity): q, k (d_k, d); v (d_v, d); w (d, d_v), the
  // output map back to the tokens' dimension (w empty: v is (d, d)). Head h contributes
  // w_h sum_j P^h_ij v_h x_j. Empty = one identity head.
  std::vector<Head> heads;
  Vector weights;               // token weights w (n); empty = uniform 1/n
  bool sphere = true;           // project on T_x S^{d-1} and retract rows to the sphere
  // Noise: dX = drift dt + sqrt(2 / kappa) dW, Euler-Maruyama then retraction. 0 or +inf
  // means no noise. Needs integrator method euler.
  double kappa = 0.0;
  std::uint64_t noise_seed = 0;    // noise comes from Rng(noise_seed, noise_stream)
  std::uint64_t noise_stream = 0;  // ensembles give each system its own stream
  SchemeOptions scheme;            // scheme != none: state (n, d + 1) = [theta | r]
  SinkhornNormalizationOptions sinkhorn;  // kind sinkhorn: iterations or tolerance
  Normalization kuramoto_normalization = Normalization::softmax;  // softmax = SA, none = USA
  // USA fields are multiplied by exp(-usa_log_shift) (a rescaling of time by
  // e^{usa_log_shift}) so that e^{beta} > 1e308 can still be simulated, e.g. shift = beta.
  double usa_log_shift = 0.0;
  VlasovOptions vlasov;
  // Several processes advancing the same system together (collective.hpp; null = this one
  // alone): the attention fields (SA, USA, Sinkhorn, any heads) split their kernel passes
  // across them (lse_reduce_symmetric by row tiles where Q = K, lse_reduce by query rows
  // otherwise, the Sinkhorn half-steps by rows); every other part runs in full on each. Every
  // process holds the whole state and gets the whole field, bit-identical to one process.
  const Collective* comm = nullptr;
  // The tokens split across processes (`attnflow run --split-points`; null = every process, or
  // this one alone, holds them all): this process holds only rows split->queries() of the
  // state, and its field evaluations stream the others' rows through the kernel
  // (lse_reduce_symmetric_split where Q = K, lse_reduce_split_keys otherwise), the field of its
  // rows equal bit for bit to those rows of one process's field. query_parts = key_parts =
  // symmetric_row_parts(n, processes). Only where flow_split_refusal() is empty; not with `comm`.
  const SplitRows* split = nullptr;

  // Throws std::invalid_argument naming the field, "flow: beta = nan, must be finite".
  void validate(Index n, Index d) const;
};

// Whether a flow of n tokens in dimension d can split its tokens across `processes`
// (FlowOptions::split); otherwise the reason, naming the option, for an error message
// ("" when it can): kinds sa and usa, no noise, every head's key and value dimensions <= 16,
// and n >= 32768 with at least two tiles of the kernel per process (the single pass's order is
// the split one's from 64 tiles of 512 on: symmetric_splittable).
std::string flow_split_refusal(const FlowOptions& options, Index n, Index d, int processes);

// The USA field's factor for token `token` whose softmax log-normalizer is `lse`:
// exp(lse - o.usa_log_shift), or std::runtime_error naming the token when it overflows a
// double. One definition for the per-system and the batched paths.
double usa_scale(const FlowOptions& o, Index token, double lse);

// Where a (possibly noisy) flow run stands: the integrator state and the noise stream.
// Both are saved in checkpoints; restoring them continues the run bit for bit.
struct FlowState {
  IntegratorState integrator;
  Rng::State noise{};
};

// Counters a flow accumulates across field evaluations (Sinkhorn convergence status).
struct FlowDiagnostics {
  long evaluations = 0;             // field evaluations
  long sinkhorn_not_converged = 0;  // Sinkhorn normalizations that missed their tolerance
  double sinkhorn_marginal_error = 0.0;  // last one's marginal error
  std::string message;              // last warning, empty if none
};

// A flow for n tokens in dimension d. The state it integrates is (n, d) points for the plain
// fields, (n, 1) angles for kuramoto (d must be 2), and (n, d + 1) = [theta | r] under a
// normalization scheme; initial_state() and positions() convert from and to points (n, d).
class Flow {
 public:
  // With options.split the state holds only this process's rows (rows()), n the tokens in all.
  Flow(FlowOptions options, Index n, Index d);

  // dstate/dt at (t, state) into dxdt (sized like state). One kernel pass per head. Not for
  // concurrent calls on one Flow (it counts diagnostics); use one Flow per system.
  void field(double t, const Matrix& state, Matrix& dxdt) const;
  // One residual layer of step h at time t, in place (Method::residual): under a scheme its
  // layer map (scheme.hpp); otherwise x <- R(x + h F(x)) with F the field before the tangent
  // projection (on the sphere: normalize(x + h A(x)), the published code's step; off the
  // sphere and for kuramoto angles it equals the euler step).
  void layer(double t, double h, Matrix& state) const;
  // Rows onto the sphere (sphere flows, theta of schemes); no-op otherwise.
  void retract(Matrix& state) const;
  // The field and retraction as an Ode for attnflow::advance. The Ode refers to this Flow:
  // it must outlive the Ode and not move while the Ode is in use.
  Ode ode() const;

  // Points (n, d) -> state; on the sphere rows are normalized (zero rows rejected).
  Matrix initial_state(const Matrix& points) const;
  // State -> points (n, d): identity, (cos t, sin t), or r theta.
  Matrix positions(const Matrix& state) const;
  // Fresh FlowState at time t0 with the noise stream at its start.
  FlowState initial_flow_state(double t0 = 0.0) const;

  // Advances state to t_end: attnflow::advance without noise, Euler-Maruyama with noise
  // (fixed grid as in advance(), noise drawn row by row from one stream, so the result does
  // not depend on the thread count).
  void advance(Matrix& state, FlowState& st, double t_end, const IntegratorOptions& integrator) const;

  const FlowOptions& options() const { return options_; }
  Index n() const { return n_; }
  Index d() const { return d_; }
  Index rows() const { return rows_; }    // rows of the state held here (n unless split)
  Index first_row() const { return first_; }  // the first one's token index
  Index state_cols() const;
  bool noisy() const;
  const FlowDiagnostics& diagnostics() const { return diag_; }
  // Counts one Sinkhorn normalization of this flow's field in its diagnostics (the last error;
  // a miss counted with its message). The field does it itself; an ensemble's batched path,
  // which normalizes many systems together, reports each system's here.
  void record_sinkhorn(const SinkhornStatus& status) const;

 private:
  void attention_average(const Matrix& x, Matrix& a) const;  // sa/usa/sinkhorn, unprojected
  void plain_field(double t, const Matrix& x, Matrix& dx, bool project = true) const;
  void check_shape(const Matrix& state) const;

  FlowOptions options_;
  Index n_, d_;
  Index first_ = 0, rows_ = 0;  // the rows held here
  Vector log_w_;                // of the rows held here
  mutable FlowDiagnostics diag_;
};

// P_x y for every row: dx_i <- dx_i - <x_i, dx_i> x_i (x rows assumed unit).
void project_tangent(const Matrix& x, Matrix& dx);
// Normalizes every row to unit length (the sphere retraction); zero rows are left as they are.
void normalize_rows(Matrix& x);

}  // namespace attnflow
