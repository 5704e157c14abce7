// Ensembles (ensemble.hpp): independent systems advanced together, one thread per system when
// the systems are small, and mean / quantiles of every observable across systems.
#include "attnflow/flow/ensemble.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include <numeric>

#include <Eigen/QR>

#include "attnflow/kernel/batch_cuda.hpp"
#include "attnflow/kernel/batch_kernel.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/base/finite.hpp"
#include "attnflow/measure/measure.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/flow/scheme.hpp"

namespace attnflow {

namespace {

constexpr const char* kEnsembleCtx = "ensemble";

// Runs body(s) for every system, in parallel across systems when `parallel`; the first
// exception (lowest system index) is rethrown after all systems finish. Each system's
// arithmetic is the same either way, so results do not depend on the thread count.
template <typename Body>
void for_systems(Index count, bool parallel, Body body) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(count));
  if (parallel) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads())
    for (Index s = 0; s < count; ++s) {
      try {
        body(s);
      } catch (...) {
        errors[static_cast<size_t>(s)] = std::current_exception();
      }
    }
  } else {
    for (Index s = 0; s < count; ++s) body(s);
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}


bool identity_head(const FlowOptions& o) {
  if (o.heads.size() > 1) return false;
  return o.heads.empty() || is_identity(o.heads[0]);
}

// Lanes layout of batch_kernel.hpp from / to row blocks of a (W n, cols) matrix.
void to_lanes(const Matrix& x, Index n, Index d, Index w, std::vector<double>& lanes) {
  lanes.resize(static_cast<std::size_t>(n * d * w));
  for (Index l = 0; l < w; ++l)
    for (Index i = 0; i < n; ++i)
      for (Index k = 0; k < d; ++k) lanes[static_cast<std::size_t>(batch_entry(i, k, n, d) * w + l)] = x(l * n + i, k);
}

// The Sinkhorn field's average for a block whose systems are all of kind sinkhorn with one
// control (lanes_compatible): batch_sinkhorn_average, then each real lane's (l < m)
// normalization counted in its flow's diagnostics, as the per-system field counts it.
void sinkhorn_lanes(const BatchAttentionInput& in, const std::vector<const Flow*>& lanes, Index m, double* a) {
  const SinkhornControl& c = lanes[0]->options().sinkhorn;
  const std::size_t w = static_cast<std::size_t>(batch_width());
  thread_local std::vector<double> err;
  thread_local std::vector<int> its;
  thread_local std::vector<unsigned char> conv;
  err.resize(w);
  its.resize(w);
  conv.resize(w);
  batch_sinkhorn_average(in, {c.iterations, c.tol, c.max_iterations}, a, {err.data(), its.data(), conv.data()});
  for (Index l = 0; l < m; ++l) {
    const std::size_t k = static_cast<std::size_t>(l);
    SinkhornStatus st;
    st.iterations = its[k];
    st.marginal_error = err[k];
    st.converged = conv[k] != 0;
    if (!st.converged)
      st.message = sinkhorn_not_converged_message("sinkhorn normalization", st.iterations, st.marginal_error, c.tol);
    lanes[k]->record_sinkhorn(st);
  }
}

// A block of up to W systems s0 .. s0 + m - 1 as one integrator state (W n, cols): lane l
// holds rows [l n, (l + 1) n); lanes m .. W - 1 repeat system s0 (their results are dropped).
// Fields, layers and retractions are the per-system ones (Flow, scheme.hpp) except the
// attention average, which comes from batch_attention_average for all lanes at once.
class Block {
 public:
  Block(const std::vector<Flow>& flows, const std::vector<Vector>& log_w, Index s0, Index m)
      : w_(batch_width()), m_(m), n_(flows[s0].n()), d_(flows[s0].d()), cols_(flows[s0].state_cols()),
        sinkhorn_(flows[s0].options().kind == FieldKind::sinkhorn) {
    for (Index l = 0; l < w_; ++l) lane_.push_back(&flows[s0 + (l < m ? l : 0)]);
    beta_.resize(static_cast<std::size_t>(w_));
    log_w_.resize(static_cast<std::size_t>(n_ * w_));
    for (Index l = 0; l < w_; ++l) {
      const FlowOptions& o = lane_[l]->options();
      beta_[static_cast<std::size_t>(l)] = o.beta;
      usa_ = usa_ || o.kind == FieldKind::usa;
      const Vector& lw = log_w[static_cast<std::size_t>(s0 + (l < m ? l : 0))];
      for (Index i = 0; i < n_; ++i) log_w_[static_cast<std::size_t>(i * w_ + l)] = lw[i];
    }
  }

  // a_ (lanes) = the unprojected attention average of the theta columns of x, USA scaled.
  void average(const Matrix& x) {
    to_lanes(x, n_, d_, w_, xl_);
    al_.resize(xl_.size());
    lse_.resize(static_cast<std::size_t>(n_ * w_));
    if (sinkhorn_) return sinkhorn_lanes({xl_.data(), log_w_.data(), beta_.data(), nullptr, n_, d_}, lane_, m_, al_.data());
    batch_attention_average({xl_.data(), log_w_.data(), beta_.data(), nullptr, n_, d_}, al_.data(),
                            usa_ ? lse_.data() : nullptr);
    if (!usa_) return;
    for (Index l = 0; l < w_; ++l) {
      const FlowOptions& o = lane_[l]->options();
      if (o.kind != FieldKind::usa) continue;
      for (Index i = 0; i < n_; ++i) {
        const double f = usa_scale(o, i, lse_[static_cast<std::size_t>(i * w_ + l)]);
        for (Index k = 0; k < d_; ++k) al_[static_cast<std::size_t>(batch_entry(i, k, n_, d_) * w_ + l)] *= f;
      }
    }
  }
  Matrix lane_average(Index l) const {
    Matrix a(n_, d_);
    for (Index i = 0; i < n_; ++i)
      for (Index k = 0; k < d_; ++k) a(i, k) = al_[static_cast<std::size_t>(batch_entry(i, k, n_, d_) * w_ + l)];
    return a;
  }

  void field(double t, const Matrix& x, Matrix& dx) {
    average(x);
    dx.resize(x.rows(), x.cols());
    for (Index l = 0; l < w_; ++l) {
      const FlowOptions& o = lane_[l]->options();
      Matrix a = lane_average(l);
      if (o.scheme.scheme == Scheme::none) {
        if (o.sphere) project_tangent(Matrix(x.middleRows(l * n_, n_)), a);
        dx.middleRows(l * n_, n_) = a;
      } else {
        const Matrix theta = x.block(l * n_, 0, n_, d_);
        const Vector r = x.block(l * n_, d_, n_, 1);
        Matrix dtheta;
        Vector dr;
        scheme_rates(o.scheme, t, theta, r, a, dtheta, dr);
        dx.block(l * n_, 0, n_, d_) = dtheta;
        dx.block(l * n_, d_, n_, 1) = dr;
      }
    }
  }
  void layer(double t, double h, Matrix& x) {
    average(x);
    for (Index l = 0; l < w_; ++l) {
      const FlowOptions& o = lane_[l]->options();
      const Matrix a = lane_average(l);
      Matrix xl = x.middleRows(l * n_, n_);
      if (o.scheme.scheme == Scheme::none) {
        xl += h * a;
        lane_[l]->retract(xl);
      } else {
        scheme_layer(o.scheme, [&a](double, const Matrix&, Matrix& out) { out = a; }, t, h, xl);
      }
      x.middleRows(l * n_, n_) = xl;
    }
  }
  void retract(Matrix& x) const {
    for (Index l = 0; l < w_; ++l) {
      Matrix xl = x.middleRows(l * n_, n_);
      lane_[l]->retract(xl);
      x.middleRows(l * n_, n_) = xl;
    }
  }
  Ode ode() {
    return Ode{[this](double t, const Matrix& x, Matrix& dx) { field(t, x, dx); },
               [this](Matrix& x) { retract(x); },
               [this](double t, double h, Matrix& x) { layer(t, h, x); }};
  }

 private:
  Index w_, m_, n_, d_, cols_;
  bool sinkhorn_;
  bool usa_ = false;
  std::vector<const Flow*> lane_;
  std::vector<double> beta_, log_w_, xl_, al_, lse_;
};

// The plain flow on the sphere (scheme none) with the state kept in the lanes layout of
// batch_kernel.hpp as a (n d, W) row-major matrix: the integrators' linear combinations are
// elementwise, so only the field, the layer and the retraction need to know the layout, and
// no transposition happens between steps.
class LaneBlock {
 public:
  // d: the lanes' dimension (the points' d, or n for coordinates in a basis of their span).
  // params: the block's lanes' [beta (W) | log w (n W) | ...] (Ensemble::lane_params).
  LaneBlock(const std::vector<Flow>& flows, const double* params, Index s0, Index m, Index d)
      : w_(batch_width()), m_(m), n_(flows[s0].n()), d_(d), sinkhorn_(flows[s0].options().kind == FieldKind::sinkhorn),
        beta_(params), log_w_(params + w_) {
    lane_.reserve(static_cast<std::size_t>(w_));
    for (Index l = 0; l < w_; ++l) {
      const Index s = s0 + (l < m ? l : 0);
      lane_.push_back(&flows[s]);
      usa_ = usa_ || flows[s].options().kind == FieldKind::usa;
    }
  }
  // The pair kernel at the block's current points (batch_attention_average's input), for
  // the first average only: the integrators evaluate the field first at the current state.
  void use_pair_kernel(const double* kernel) { kernel_ = kernel; }
  // The unprojected average of x (lanes) into a (lanes), USA scaled.
  void average(const Matrix& x, Matrix& a) {
    a.resize(x.rows(), x.cols());
    thread_local std::vector<double> lse;  // per thread, kept between blocks and steps
    lse.resize(static_cast<std::size_t>(n_ * w_));
    const BatchAttentionInput in{x.data(), log_w_, beta_, nullptr, n_, d_, kernel_};
    kernel_ = nullptr;
    if (sinkhorn_) return sinkhorn_lanes(in, lane_, m_, a.data());
    batch_attention_average(in, a.data(), usa_ ? lse.data() : nullptr);
    if (!usa_) return;
    for (Index l = 0; l < w_; ++l) {
      const FlowOptions& o = lane_[l]->options();
      if (o.kind != FieldKind::usa) continue;
      for (Index i = 0; i < n_; ++i) {
        const double f = usa_scale(o, i, lse[static_cast<std::size_t>(i * w_ + l)]);
        for (Index k = 0; k < d_; ++k) a(batch_entry(i, k, n_, d_), l) *= f;
      }
    }
  }
  Ode ode() {
    Ode o{[this](double, const Matrix& x, Matrix& dx) {
            average(x, dx);
            batch_project_tangent(x.data(), dx.data(), n_, d_);
          },
          [this](Matrix& x) { batch_normalize_rows(x.data(), n_, d_); },
          [this](double, double h, Matrix& x) {
            // Per thread, kept between blocks and calls: a block's average is as large as
            // its state (64 KB at n = d = 32), too large to allocate at every observation.
            thread_local Matrix a;
            average(x, a);
            layer_finite_ = batch_residual_layer(x.data(), a.data(), h, n_, d_);
          }};
    o.layer_finite = [this] { return layer_finite_; };  // no pass over the state per step
    return o;
  }
 private:
  Index w_, m_, n_, d_;
  bool sinkhorn_;
  bool usa_ = false;
  bool layer_finite_ = true;  // the last layer's new state is finite (its squared norms are)
  const double* kernel_ = nullptr;
  const double* beta_;   // W
  const double* log_w_;  // n W
  std::vector<const Flow*> lane_;
};

// The points C B of coordinates c (n, r; row i at c + i * stride) in the basis B (r, d):
// x_ik = sum_j c_ij B_jk, j ascending. The one place that forms them (scatter, restored
// coordinates, positions), so the points have the same bits on every path.
Matrix combine(const double* c, Index stride, const Matrix& basis, Index n) {
  const Index r = basis.rows(), d = basis.cols();
  Matrix x = Matrix::Zero(n, d);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < r; ++j) {
      const double cij = c[i * stride + j];
      for (Index k = 0; k < d; ++k) x(i, k) += cij * basis(j, k);
    }
  return x;
}

// Coordinates C (n, n) and an orthonormal basis B (n, d) of the span of the points x (n, d),
// x = C B (Householder QR of x^T = Q R: x = R^T Q^T, coordinates R^T, basis Q^T). Column-major
// for the QR: its reflections run down columns (1.6x faster than on row-major storage).
// `drop`: free x once the QR holds it (before the basis is formed: its memory serves again).
void span_coordinates(Matrix& x, Matrix& c, std::shared_ptr<const Matrix>& basis, bool drop = false) {
  const Index n = x.rows(), d = x.cols();
  const Eigen::HouseholderQR<Eigen::MatrixXd> qr(x.transpose());
  if (drop) x = Matrix();
  basis = std::make_shared<const Matrix>((qr.householderQ() * Eigen::MatrixXd::Identity(d, n)).transpose());
  c = qr.matrixQR().topRows(n).triangularView<Eigen::Upper>().transpose();
}

bool same_grid(const IntegratorState& a, const IntegratorState& b) {
  return a.t == b.t && a.grid_origin == b.grid_origin && a.grid_steps == b.grid_steps;
}

// Union-find per lane, fed by batch_pair_observables' linked pairs.
struct LaneClusters {
  std::vector<std::vector<Index>> parent, size;
  LaneClusters(Index lanes, Index n)
      : parent(static_cast<std::size_t>(lanes)), size(static_cast<std::size_t>(lanes)) {
    for (Index l = 0; l < lanes; ++l) {
      parent[static_cast<std::size_t>(l)].resize(static_cast<std::size_t>(n));
      std::iota(parent[static_cast<std::size_t>(l)].begin(), parent[static_cast<std::size_t>(l)].end(), Index{0});
      size[static_cast<std::size_t>(l)].assign(static_cast<std::size_t>(n), 1);
    }
  }
  static Index find(std::vector<Index>& p, Index a) {
    while (p[a] != a) a = p[a] = p[p[a]];
    return a;
  }
  static void link(void* ctx, Index i, Index j, unsigned lanes) {
    auto& c = *static_cast<LaneClusters*>(ctx);
    for (std::size_t l = 0; l < c.parent.size(); ++l) {
      if (!(lanes & (1u << l))) continue;
      auto& p = c.parent[l];
      auto& sz = c.size[l];
      Index a = find(p, i), b = find(p, j);
      if (a == b) continue;
      if (sz[a] < sz[b]) std::swap(a, b);
      p[b] = a;
      sz[a] += sz[b];
    }
  }
  std::vector<Index> sizes(Index l) {
    auto& p = parent[static_cast<std::size_t>(l)];
    std::vector<Index> out;
    for (Index i = 0; i < static_cast<Index>(p.size()); ++i)
      if (find(p, i) == i) out.push_back(size[static_cast<std::size_t>(l)][i]);
    std::sort(out.begin(), out.end(), std::greater<Index>());
    return out;
  }
};

constexpr double kBatchMaxBeta = 1e300;

// Every system SA or USA with one identity head, no noise, the same n and d, and a beta the
// batch kernel's symmetric form takes (batchable() adds the method and batch_n).
bool lanes_compatible(const std::vector<Flow>& flows) {
  const Index n = flows[0].n(), d = flows[0].d();
  for (const Flow& f : flows) {
    const FlowOptions& o = f.options();
    if (f.n() != n || f.d() != d || f.noisy() || !identity_head(o)) return false;
    // SA and USA mix freely; Sinkhorn systems go together, with one normalization control.
    const bool softmax = o.kind == FieldKind::sa || o.kind == FieldKind::usa;
    const bool sinkhorn = o.kind == FieldKind::sinkhorn;
    const FlowOptions& o0 = flows[0].options();
    if (!(softmax || sinkhorn) || sinkhorn != (o0.kind == FieldKind::sinkhorn)) return false;
    if (sinkhorn && (o.sinkhorn.iterations != o0.sinkhorn.iterations || o.sinkhorn.tol != o0.sinkhorn.tol ||
                     o.sinkhorn.max_iterations != o0.sinkhorn.max_iterations))
      return false;
    // The batch kernel's symmetric form needs K_ij = e^{-beta |x_i - x_j|^2 / 2} <= 1 (beta >= 0)
    // and beta |x|^2 far from overflow; other betas take the per-system path, whose kernel falls
    // back to its general max-shifted reduction.
    if (!(o.beta >= 0.0 && o.beta <= kBatchMaxBeta)) return false;
  }
  return true;
}

}  // namespace

Ensemble::Ensemble(std::vector<FlowOptions> flows, std::vector<Matrix> initial_points,
                   IntegratorOptions integrator)
    : integrator_(integrator) {
  require(!flows.empty(), kEnsembleCtx, "systems", flows.size(), ">= 1");
  require(flows.size() == initial_points.size(), kEnsembleCtx, "systems", flows.size(),
          fmt::format("equal to the number of initial point sets ({})", initial_points.size()));
  integrator_.validate();
  flows_.reserve(flows.size());  // Flow::ode() refers to the Flow: never reallocate after this
  for (size_t s = 0; s < flows.size(); ++s) {
    Matrix& p = initial_points[s];
    flows_.emplace_back(std::move(flows[s]), p.rows(), p.cols());
    states_.push_back(flows_.back().initial_state(p));
    p = Matrix();  // one copy of the points at a time (2048 systems of 32 x 128 hold 67 MB)
    flow_states_.push_back(flows_.back().initial_flow_state(0.0));
    log_w_.push_back(log_weights(flows_.back().options().weights));
  }
  init_properties();
}

Ensemble::Ensemble(IntegratorOptions integrator) : integrator_(integrator) {}

Ensemble Ensemble::from_span_start(std::vector<FlowOptions> flows, std::shared_ptr<const SpanStart> start,
                                   IntegratorOptions integrator) {
  Ensemble e(integrator);
  e.start_from(std::move(flows), std::move(start));
  return e;
}

void Ensemble::start_from(std::vector<FlowOptions> flows, std::shared_ptr<const SpanStart> start) {
  require(start != nullptr, kEnsembleCtx, "span start", "null", "a SpanStart (Ensemble::span_start)");
  require(!flows.empty(), kEnsembleCtx, "systems", flows.size(), ">= 1");
  require(flows.size() == start->coords.size() && flows.size() == start->bases.size(), kEnsembleCtx, "systems",
          flows.size(), fmt::format("equal to the span start's systems ({} coordinates, {} bases)",
                                    start->coords.size(), start->bases.size()));
  integrator_.validate();
  flows_.reserve(flows.size());  // Flow::ode() refers to the Flow: never reallocate after this
  for (size_t s = 0; s < flows.size(); ++s) {
    const Matrix& c = start->coords[s];
    const Matrix* b = start->bases[s].get();
    if (b == nullptr || c.rows() != c.cols() || b->rows() != c.rows() || b->cols() <= c.rows())
      throw std::invalid_argument(fmt::format(
          "{}: span start of system {} has coordinates ({}, {}) and basis ({}, {}), must be (n, n) and (n, d) "
          "with d > n", kEnsembleCtx, s, c.rows(), c.cols(), b ? b->rows() : 0, b ? b->cols() : 0));
    require_finite(kEnsembleCtx, "span start coordinates", c);
    flows_.emplace_back(std::move(flows[s]), c.rows(), b->cols());
    const FlowOptions& o = flows_.back().options();
    if (!plain_sphere(o))
      throw std::invalid_argument(fmt::format("{}: a span start needs flows on the sphere without a scheme "
                                              "(system {}: the state is the points C B)", kEnsembleCtx, s));
    states_.emplace_back();  // C B, formed when asked for (sync), as after restore_state
    flow_states_.push_back(flows_.back().initial_flow_state(0.0));
    log_w_.push_back(log_weights(o.weights));
  }
  init_properties();
  coords_ = start->coords;
  bases_ = start->bases;
  states_stale_ = true;
}

void Ensemble::init_properties() {
  lanes_compatible_ = lanes_compatible(flows_);
  for (const Flow& f : flows_) max_beta_ = std::max(max_beta_, f.options().beta);
  plain_sphere_ = true;
  for (const Flow& f : flows_)
    plain_sphere_ = plain_sphere_ && plain_sphere(f.options());
}

std::shared_ptr<const Ensemble::SpanStart> Ensemble::span_start() {
  if (!reduces_span())
    throw std::invalid_argument(fmt::format("{}: span_start needs the reduced batched path (reduces_span(): "
                                            "batched, reduce_span, batchable systems on the sphere, d > n)",
                                            kEnsembleCtx));
  if (!lanes_.empty() || gpu_)
    throw std::invalid_argument(fmt::format("{}: span_start needs an ensemble not yet advanced or observed on "
                                            "the batched path", kEnsembleCtx));
  coords_.resize(static_cast<std::size_t>(size()));
  bases_.resize(static_cast<std::size_t>(size()));
  for_systems(size(), num_threads() > 1 && size() > 1, [&](Index s) {
    if (coords_[s].size() != 0) return;  // restored coordinates (restore_state)
    span_coordinates(states_[s], coords_[s], bases_[s], true);  // the points are C B from now on, as gather_block leaves them
  });
  states_stale_ = true;
  auto start = std::make_shared<SpanStart>();
  start->coords = coords_;
  start->bases = bases_;
  return start;
}

Ensemble::~Ensemble() = default;
Ensemble::Ensemble(Ensemble&&) noexcept = default;
Ensemble& Ensemble::operator=(Ensemble&&) noexcept = default;

// float32's largest beta: beta |x|^2 and the exponents of the symmetric form stay far from
// float's overflow (3.4e38).
constexpr double kSingleMaxBeta = 1e30;

std::string Ensemble::precision_refusal() const {
  if (!single()) return "";
  if (!batched) return "the batched path (batched = false)";
  if (!batchable())
    return "systems the batched path takes (SA / USA with one identity head, no noise, one n and d, "
           "2 <= n <= batch_n; euler, residual or rk4)";
  if (!plain_sphere_) return "the flow on the sphere without a scheme (scheme none, sphere)";
  if (flows_[0].options().kind == FieldKind::sinkhorn) return "SA or USA (the Sinkhorn field runs in float64 only)";
  if (max_beta_ > kSingleMaxBeta) return fmt::format("beta <= {} (beta = {})", kSingleMaxBeta, max_beta_);
  return "";
}

namespace {
// Throws naming the rule when the ensemble's precision does not apply to its systems.
void require_precision(const Ensemble& e) {
  const std::string refusal = e.precision_refusal();
  if (!refusal.empty())
    throw std::invalid_argument(fmt::format("{}: precision = float32 needs {}", kEnsembleCtx, refusal));
}
}  // namespace

Index Ensemble::block_width() const { return single() ? batch_lanes<float>() : batch_width(); }

namespace {
BatchStepMethod step_method(Method m) {
  return m == Method::euler ? BatchStepMethod::euler
                            : m == Method::residual ? BatchStepMethod::residual : BatchStepMethod::rk4;
}
}  // namespace

std::string Ensemble::gpu_refusal() const {
  if (current_device().device != Device::cuda && !gpu_emulation) return "";
  if (!(batched && batchable())) return "the systems do not take the batched path (Ensemble::batchable)";
  if (single()) return "precision float32 (the GPU path runs in float64; float32 runs on the CPU)";
  if (!plain_sphere_) return "a scheme other than none, or a flow off the sphere";
  if (flows_[0].options().kind == FieldKind::sinkhorn) return "Sinkhorn fields";
  if (gpu_emulation) return "";
  const Index dg = reduces_span() ? flows_[0].n() : flows_[0].d();  // the GPU's dimension
  if (!gpu_refusal_ || gpu_refusal_->first != dg)
    gpu_refusal_ = std::make_pair(dg, batch_cuda_refusal(flows_[0].n(), dg, step_method(integrator_.method)));
  return gpu_refusal_->second;
}

bool Ensemble::runs_on_gpu() const {
  return (current_device().device == Device::cuda || gpu_emulation) && batched && batchable() &&
         gpu_refusal().empty();
}

// Every system's state to the GPU (from the CPU lanes, restored coordinates or states_), unless
// it is there.
void Ensemble::upload_gpu() {
  const bool reduce = reduces_span();
  if (gpu_ && gpu_reduced_ != reduce) drop_gpu();  // reduce_span changed: upload again
  if (gpu_) return;
  release_lanes();  // every system's state in states_ (points) or coords_ (coordinates)
  const Index n = flows_[0].n(), d = flows_[0].d(), dg = reduce ? n : d;
  if (reduce) {  // coordinates in an orthonormal basis of each system's span, as the CPU lanes
    coords_.resize(static_cast<std::size_t>(size()));
    bases_.resize(static_cast<std::size_t>(size()));
    for_systems(size(), num_threads() > 1, [&](Index s) {
      if (coords_[s].size() == 0) span_coordinates(states_[s], coords_[s], bases_[s]);
    });
  } else {
    sync();  // restored coordinates become points
    coords_.clear();
  }
  gpu_reduced_ = reduce;
  BatchCudaSystems sys;
  sys.n = n;
  sys.d = dg;
  std::vector<double> states;
  states.reserve(static_cast<std::size_t>(size() * n * dg));
  for (Index s = 0; s < size(); ++s) {
    const FlowOptions& o = flows_[s].options();
    sys.beta.push_back(o.beta);
    sys.usa.push_back(o.kind == FieldKind::usa ? 1 : 0);
    sys.usa_shift.push_back(o.usa_log_shift);
    for (Index i = 0; i < n; ++i) {
      sys.log_w.push_back(log_w_[static_cast<std::size_t>(s)][i]);
      sys.w.push_back(o.weights[i]);
    }
    const Matrix& x = reduce ? coords_[static_cast<std::size_t>(s)] : states_[static_cast<std::size_t>(s)];
    states.insert(states.end(), x.data(), x.data() + x.size());  // row-major (n, dg)
  }
  gpu_ = std::make_unique<BatchCuda>(sys, states, gpu_emulation);
  gpu_w2_.resize(static_cast<std::size_t>(size()));
  for (Index s = 0; s < size(); ++s)
    gpu_w2_[static_cast<std::size_t>(s)] = flows_[s].options().weights.squaredNorm();
  states_stale_ = reduce;  // reduced: the points are formed from the coordinates when asked for
}

namespace {

// One GPU launch of advance_gpu: the times [k0, k1), their steps on the grid from `from`, the
// step counts after which each is observed and the integrator state at each and at the end.
struct GpuLaunch {
  std::size_t k0 = 0, k1 = 0;
  long steps_before = 0;
  std::vector<double> h, t0;
  std::vector<int> after;
  std::vector<double> t_obs;
  IntegratorState end;
};

GpuLaunch plan_launch(const std::vector<double>& times, std::size_t k0, std::size_t k1, const IntegratorState& from,
                      const IntegratorOptions& integrator) {
  GpuLaunch l;
  l.k0 = k0;
  l.k1 = k1;
  l.end = from;
  l.steps_before = from.steps;
  for (std::size_t k = k0; k < k1; ++k) {
    fixed_steps(l.end, times[k], integrator, [&](double t, double step) {
      l.t0.push_back(t);
      l.h.push_back(step);
    });
    l.after.push_back(static_cast<int>(l.h.size()));
    l.t_obs.push_back(l.end.t);
  }
  return l;
}

}  // namespace

// The launches run one after the other on the GPU; with obs, the next one is started before
// this one's observations are formed and handed over, so the host's work overlaps the GPU's.
void Ensemble::advance_gpu(const std::vector<double>& times, const ObserveOptions* obs, const ObservationSink* each) {
  upload_gpu();
  std::vector<double> beta;
  if (obs) beta = observation_betas(*obs);
  const std::size_t per_launch =
      !obs ? std::max<std::size_t>(times.size(), 1)
      : gpu_launch_observations > 0 ? static_cast<std::size_t>(gpu_launch_observations)
                                     : std::max<std::size_t>(1, 65536 / static_cast<std::size_t>(size()));
  const BatchStepMethod method = step_method(integrator_.method);
  const auto launch = [&](std::size_t k0, const IntegratorState& from) {
    GpuLaunch l = plan_launch(times, k0, std::min(times.size(), k0 + per_launch), from, integrator_);
    if (!l.h.empty() || obs) gpu_->start(l.h, method, obs ? &beta : nullptr, obs ? obs->delta : 0.0, &l.after);
    return l;
  };
  // Waits for launch l; on success the ensemble is at its end.
  const auto finish = [&](const GpuLaunch& l) {
    const BatchCuda::Failure f = gpu_->finish();
    if (f.system >= 0) {
      const std::size_t k = static_cast<std::size_t>(f.step);
      states_stale_ = true;  // the states as the failed step left them (as on the CPU path)
      drop_gpu();
      if (f.usa_overflow)
        throw std::runtime_error(fmt::format(
            "flow: usa field overflows in system {} at step {} (t = {}): log sum_j w_j exp(beta <Qx, Kx_j>) - "
            "usa_log_shift > 709.78 (beta = {}); set usa_log_shift = beta (rescales time by e^beta) or use sa",
            f.system, l.steps_before + f.step + 1, l.t0[k] + l.h[k], flows_[f.system].options().beta));
      throw std::runtime_error(fmt::format(
          "integrate: state is not finite after step {} (t = {}, system {}): the field overflowed or the step "
          "dt is too large for this beta",
          l.steps_before + f.step + 1, l.t0[k] + l.h[k], f.system));
    }
    for (FlowState& fs : flow_states_) fs.integrator = l.end;
    if (!l.h.empty()) states_stale_ = true;  // the GPU holds the state; sync() downloads it
  };
  if (times.empty()) return;
  std::vector<Observables> out;  // one observation, reused
  GpuLaunch cur = launch(0, flow_states_[0].integrator);
  for (;;) {
    finish(cur);
    const double* v = gpu_->observations();  // valid until the finish() after the next start()
    const bool more = cur.k1 < times.size();
    std::optional<GpuLaunch> next;
    if (more) next = launch(cur.k1, cur.end);
    if (obs) {
      try {
        const std::size_t values = 5 * static_cast<std::size_t>(size()), count = cur.k1 - cur.k0;
        for (std::size_t j = 0; j < count; ++j) {
          gpu_observables(v + j * values, cur.t_obs[j], out);
          // Ahead of times[k] unless this is the last observation and no launch runs on.
          ahead_ = next.has_value() || j + 1 < count;
          (*each)(cur.k0 + j, out);
          ahead_ = false;
        }
      } catch (...) {
        ahead_ = false;
        // The next launch runs on: wait for it, so that the ensemble is where the GPU is.
        if (next) {
          try {
            finish(*next);
          } catch (...) {  // its own failure: the first error is the one reported
          }
        }
        throw;
      }
    }
    if (!more) break;
    cur = std::move(*next);
  }
}

void Ensemble::require_not_ahead(const char* what) const {
  if (ahead_)
    throw std::logic_error(fmt::format("{}: {} inside advance_observe_each's each(k, ...), where the ensemble is "
                                       "already past times[k] (the GPU path runs many times per launch): use it "
                                       "after advance_observe_each returns", kEnsembleCtx, what));
}

// Each system's energy beta: its own, or the observation's where it has none (beta = 0).
std::vector<double> Ensemble::observation_betas(const ObserveOptions& options) const {
  std::vector<double> beta(static_cast<std::size_t>(size()));
  for (Index s = 0; s < size(); ++s) {
    const FlowOptions& fo = flows_[s].options();
    beta[static_cast<std::size_t>(s)] = fo.beta > 0.0 ? fo.beta : options.beta;
  }
  return beta;
}

std::vector<Observables> Ensemble::observe_gpu(const ObserveOptions& options) const {
  const double* v = gpu_->observe(observation_betas(options), options.delta);
  std::vector<Observables> out;
  // The GPU holds systems on one grid (advance_gpu needs one_grid(); set_state drops it).
  gpu_observables(v, flow_states_[0].integrator.t, out);
  return out;
}

// BatchCuda's 5 values per system as Observables (as observe_block fills them): the checks
// first, then the fill, across threads for large ensembles.
void Ensemble::gpu_observables(const double* v, double t, std::vector<Observables>& out) const {
  const Index n = flows_[0].n();
  const double pairs = 0.5 * static_cast<double>(n) * static_cast<double>(n - 1);
  for (Index s = 0; s < size(); ++s)
    if (!std::isfinite(v[5 * s]))
      throw std::runtime_error(fmt::format("observe: log_energy = {} is not finite (system {}: non-finite points)",
                                           v[5 * s], s));
  out.resize(static_cast<std::size_t>(size()));
  const bool parallel = num_threads() > 1 && size() >= 16384;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (parallel)
  for (Index s = 0; s < size(); ++s) {
    const double* r = v + 5 * s;
    Observables& ob = out[static_cast<std::size_t>(s)];
    ob.t = t;
    ob.log_energy = r[0];
    ob.energy = std::exp(r[0]);
    const double w2 = gpu_w2_[static_cast<std::size_t>(s)];
    ob.mean_cosine = 1.0 - w2 > 0.0 ? (r[4] - w2) / (1.0 - w2) : 1.0;
    ob.order = r[3];
    ob.pairs_computed = true;
    ob.min_cosine = r[1];
    ob.clustered_pairs = r[2] / pairs;
    ob.clusters = -1;
  }
}

// Whether every system is on the same time grid (the GPU runs one schedule for all).
bool Ensemble::one_grid() const {
  for (const FlowState& fs : flow_states_)
    if (!same_grid(fs.integrator, flow_states_[0].integrator)) return false;
  return true;
}

void Ensemble::drop_gpu() const {
  if (!gpu_) return;
  sync();
  gpu_.reset();
}


bool Ensemble::batchable() const {
  if (integrator_.method == Method::dopri5) return false;
  const Index n = flows_[0].n();
  return lanes_compatible_ && n >= 2 && n <= batch_n;
}

void Ensemble::advance_batched(double t_end) {
  const Index blocks = prepare_blocks();
  for_systems(blocks, num_threads() > 1 && blocks > 1, [&](Index b) { advance_block(b, t_end); });
}

// The batched path's storage before the blocks advance: the lanes on the sphere (from then on
// they hold the state), per-system states otherwise. Returns the block count.
Index Ensemble::prepare_blocks() {
  require_precision(*this);
  const Index w = block_width();
  const Index blocks = (size() + w - 1) / w;
  if (plain_sphere_) {
    const Index lanes_d = reduces_span() ? flows_[0].n() : flows_[0].d();
    if (lanes_d != lanes_d_ || w != lanes_w_) {  // reduce_span or precision changed: start from the points
      // Restored coordinates (or a span start) stay for the reduced path, whose gather takes
      // them: their points are formed (sync) only for the points path, or to leave the lanes.
      if (!lanes_.empty() || gpu_ || lanes_d == flows_[0].d()) sync();
      lanes_.clear();
      single_params_.clear();
      pair_kernel_valid_.assign(pair_kernel_valid_.size(), 0);
      lanes_d_ = lanes_d;
      lanes_w_ = w;
    }
    if (lanes_d_ == flows_[0].d()) {
      coords_.clear();  // the points (states_) are the state
    } else {
      coords_.resize(static_cast<std::size_t>(size()));
      bases_.resize(static_cast<std::size_t>(size()));
    }
    lanes_.resize(static_cast<std::size_t>(blocks));
    single_params_.resize(static_cast<std::size_t>(blocks));
    lane_params_.resize(static_cast<std::size_t>(blocks));
    pair_kernel_.resize(static_cast<std::size_t>(blocks));
    pair_kernel_f_.resize(static_cast<std::size_t>(blocks));
    pair_kernel_valid_.resize(static_cast<std::size_t>(blocks), 0);
    states_stale_ = true;
  } else {
    sync();
    coords_.clear();
  }
  return blocks;
}

const double* Ensemble::lane_params(Index b) const {
  std::vector<double>& p = lane_params_[static_cast<std::size_t>(b)];
  if (p.empty()) {
    const Index w = batch_width(), n = flows_[0].n(), s0 = b * w, m = std::min(w, size() - s0);
    p.resize(static_cast<std::size_t>(w + 2 * n * w));
    for (Index l = 0; l < w; ++l) {
      const Index s = s0 + (l < m ? l : 0);
      p[static_cast<std::size_t>(l)] = flows_[s].options().beta;
      for (Index i = 0; i < n; ++i) {
        p[static_cast<std::size_t>(w + i * w + l)] = log_w_[static_cast<std::size_t>(s)][i];
        p[static_cast<std::size_t>(w + n * w + i * w + l)] = flows_[s].options().weights[i];
      }
    }
  }
  return p.data();
}

// Block b (systems b W .. b W + W - 1) advanced to t_end on the batched path.
void Ensemble::advance_block(Index b, double t_end) {
  const Index w = plain_sphere_ ? lanes_w_ : batch_width(), n = flows_[0].n();
  const bool plain_sphere = plain_sphere_;
  const Index s0 = b * w, m = std::min(w, size() - s0);
  // The block's kept pair kernel serves the first field evaluation of the steps below at most.
  const double* kept = nullptr;
  const float* kept_f = nullptr;
  if (plain_sphere && pair_kernel_valid_[static_cast<std::size_t>(b)]) {
    if (single())
      kept_f = pair_kernel_f_[static_cast<std::size_t>(b)].data();
    else
      kept = pair_kernel_[static_cast<std::size_t>(b)].data();
    pair_kernel_valid_[static_cast<std::size_t>(b)] = 0;
  }
  bool same = true;  // one integrator state per block: the systems must share the time grid
  for (Index l = 1; l < m; ++l) same = same && same_grid(flow_states_[s0].integrator, flow_states_[s0 + l].integrator);
  if (!same) {
    // Back to per-system storage for this block: each system advances alone, in float64.
    if (plain_sphere && !lanes_[static_cast<std::size_t>(b)].empty()) {
      scatter_block(b, lanes_[static_cast<std::size_t>(b)]);
      lanes_[static_cast<std::size_t>(b)].clear();
    }
    for (Index s = s0; s < s0 + m && !coords_.empty(); ++s)  // restored coordinates: their points move
      if (coords_[s].size() != 0) {
        states_[s] = combine(coords_[s].data(), coords_[s].cols(), *bases_[s], coords_[s].rows());
        coords_[s].resize(0, 0);
      }
    for (Index s = s0; s < s0 + m; ++s) flows_[s].advance(states_[s], flow_states_[s], t_end, integrator_);
    if (plain_sphere) gather_block(b, lanes_[static_cast<std::size_t>(b)]);
    return;
  }
  IntegratorState st = flow_states_[s0].integrator;
  if (plain_sphere) {  // the state stays in lanes between steps and between calls
    BlockLanes& lanes = lanes_[static_cast<std::size_t>(b)];
    if (lanes.empty()) gather_block(b, lanes);
    if (single()) {
      advance_single(b, st, t_end, kept_f);
    } else {
      LaneBlock block(flows_, lane_params(b), s0, m, lanes_d_);
      if (kept) block.use_pair_kernel(kept);
      attnflow::advance(block.ode(), lanes.x, st, t_end, integrator_);
    }
    for (Index l = 0; l < m; ++l) flow_states_[s0 + l].integrator = st;
    return;
  }
  Block block(flows_, log_w_, s0, m);
  Matrix x(w * n, states_[s0].cols());
  for (Index l = 0; l < w; ++l) x.middleRows(l * n, n) = states_[s0 + (l < m ? l : 0)];
  attnflow::advance(block.ode(), x, st, t_end, integrator_);
  for (Index l = 0; l < m; ++l) {
    states_[s0 + l] = x.middleRows(l * n, n);
    flow_states_[s0 + l].integrator = st;
  }
}

// Block b's steps in float32 (precision): its lanes' floats advance with the float batch
// kernels, the integrators' combinations as fixed_step (integrate.cpp) forms them, in float.
void Ensemble::advance_single(Index b, IntegratorState& st, double t_end, const float* kept) {
  using FMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Index w = lanes_w_, n = flows_[0].n(), d = lanes_d_;
  const Index s0 = b * w, m = std::min(w, size() - s0);
  FMatrix& x = lanes_[static_cast<std::size_t>(b)].xf;
  // Per thread, kept between blocks and calls (a block's state is 64 KB at n = d = 32).
  thread_local std::vector<float> lse;
  thread_local FMatrix a, k2, k3, k4, y;
  lse.resize(static_cast<std::size_t>(n * w));
  // The block's betas (w) and log weights (n w) as floats, formed at its first step (the
  // systems' options never change): rebuilding them at every step cost 3% of the run.
  std::vector<float>& params = single_params_[static_cast<std::size_t>(b)];
  if (params.empty()) {
    params.resize(static_cast<std::size_t>(w + n * w));
    for (Index l = 0; l < w; ++l) {
      const Index s = s0 + (l < m ? l : 0);
      params[static_cast<std::size_t>(l)] = static_cast<float>(flows_[s].options().beta);
      for (Index i = 0; i < n; ++i)
        params[static_cast<std::size_t>(w + i * w + l)] = static_cast<float>(log_w_[static_cast<std::size_t>(s)][i]);
    }
  }
  const float* beta = params.data();
  const float* log_w = params.data() + w;
  bool usa = false;
  for (Index l = 0; l < m; ++l) usa = usa || flows_[s0 + l].options().kind == FieldKind::usa;
  // The unprojected average of xs into out (lanes), USA scaled; the kept kernel serves the first.
  const auto average = [&](const FMatrix& xs, FMatrix& out) {
    out.resize(xs.rows(), xs.cols());
    batch_attention_average({xs.data(), log_w, beta, nullptr, n, d, kept}, out.data(),
                            usa ? lse.data() : nullptr);
    kept = nullptr;
    if (!usa) return;
    for (Index l = 0; l < w; ++l) {
      const FlowOptions& o = flows_[s0 + (l < m ? l : 0)].options();
      if (o.kind != FieldKind::usa) continue;
      for (Index i = 0; i < n; ++i) {
        const float f = static_cast<float>(usa_scale(o, i, lse[static_cast<std::size_t>(i * w + l)]));
        for (Index k = 0; k < d; ++k) out(batch_entry(i, k, n, d), l) *= f;
      }
    }
  };
  const auto field = [&](const FMatrix& xs, FMatrix& out) {
    average(xs, out);
    batch_project_tangent(xs.data(), out.data(), n, d);
  };
  const Method method = integrator_.method;
  fixed_steps(st, t_end, integrator_, [&](double, double h) {
    bool finite = true;
    if (method == Method::residual) {
      average(x, a);
      finite = batch_residual_layer(x.data(), a.data(), h, n, d);  // known from its squared norms
    } else if (method == Method::euler) {
      field(x, a);
      x += static_cast<float>(h) * a;
      batch_normalize_rows(x.data(), n, d);
    } else {  // rk4
      const float half = static_cast<float>(0.5 * h);
      field(x, a);
      y = x + half * a;
      field(y, k2);
      y = x + half * k2;
      field(y, k3);
      y = x + static_cast<float>(h) * k3;
      field(y, k4);
      x += static_cast<float>(h / 6.0) * (a + 2.0f * k2 + 2.0f * k3 + k4);
      batch_normalize_rows(x.data(), n, d);
    }
    if (method != Method::residual) finite = all_finite(x.data(), x.size());
    if (!finite)
      throw std::runtime_error(fmt::format(
          "integrate: state is not finite after step {} (t = {}, precision float32): the field overflowed or the "
          "step dt is too large for this beta",
          st.steps, st.t));
  });
}

void Ensemble::advance(double t_end) {
  require_not_ahead("advance");
  require_precision(*this);  // float32 runs only on the batched path on the sphere
  if (runs_on_gpu() && one_grid()) return advance_gpu({t_end});
  drop_gpu();
  if (batched && batchable()) return advance_batched(t_end);
  sync();
  lanes_.clear();
  coords_.clear();
  pair_kernel_valid_.assign(pair_kernel_valid_.size(), 0);
  Index largest = 0;
  for (const Flow& f : flows_) largest = std::max(largest, f.n());
  const bool parallel = num_threads() > 1 && size() >= num_threads() && largest <= parallel_n;
  for_systems(size(), parallel, [&](Index s) {
    flows_[s].advance(states_[s], flow_states_[s], t_end, integrator_);
  });
}

std::vector<Observables> Ensemble::observe_batched(const ObserveOptions& options, bool clusters) const {
  const Index w = block_width();
  const Index blocks = (size() + w - 1) / w;
  bool current = true;  // every block in lanes or in coordinates (else states_ must be current)
  for (Index b = 0; b < blocks; ++b) current = current && (block_in_lanes(b) || block_in_coords(b));
  if (!current) sync();  // before the threads: blocks outside the lanes read states_
  if (!single()) lane_params_.resize(static_cast<std::size_t>(blocks));  // before the threads too
  std::vector<Observables> out(static_cast<std::size_t>(size()));
  for_systems(blocks, num_threads() > 1 && blocks > 1, [&](Index b) { observe_block(b, options, clusters, out); });
  return out;
}

bool Ensemble::block_in_lanes(Index b) const {
  return lanes_w_ == block_width() && b < static_cast<Index>(lanes_.size()) &&
         !lanes_[static_cast<std::size_t>(b)].empty();
}

// Every system of block b held as coordinates not yet gathered (on the reduced path).
bool Ensemble::block_in_coords(Index b) const {
  if (!reduces_span() || block_in_lanes(b)) return false;
  const Index w = block_width(), s0 = b * w, m = std::min(w, size() - s0);
  for (Index s = s0; s < s0 + m; ++s)
    if (static_cast<Index>(coords_.size()) <= s || coords_[static_cast<std::size_t>(s)].size() == 0) return false;
  return true;
}

// The observables of block b's systems into out[s] (the batched path, plain flow on the sphere).
void Ensemble::observe_block(Index b, const ObserveOptions& options, bool clusters,
                             std::vector<Observables>& out) const {
  const Index w = block_width(), n = flows_[0].n();
  const double pairs = 0.5 * static_cast<double>(n) * static_cast<double>(n - 1);
  const Index s0 = b * w, m = std::min(w, size() - s0);
  // Per-thread buffers, kept between blocks and calls (an ensemble observes every few steps).
  thread_local std::vector<double> le, mc, cl, order, dir;
  const bool in_lanes = block_in_lanes(b);
  // Every observable is a function of inner products and norms: coordinates serve as points
  // (in lanes, or not yet gathered: a span start or restored coordinates, whose points C B
  // are not formed for this).
  const bool in_coords = !in_lanes && block_in_coords(b);
  const Index d = in_lanes ? lanes_d_ : in_coords ? n : flows_[0].d();  // else states_ is current
  for (auto* v : {&le, &mc, &cl, &order, &dir}) v->resize(static_cast<std::size_t>(w));
  LaneClusters lc(clusters ? w : 0, n);
  // The kernel for the block's next step when its betas are the field's (every beta > 0).
  bool keep_kernel = in_lanes;
  for (Index l = 0; l < m; ++l) keep_kernel = keep_kernel && flows_[s0 + l].options().beta > 0.0;
  // The pass in the block's precision (float32: the lanes' floats; states_ rounded to float).
  const auto pass = [&]<class S>(const S* lanes_x, auto* kernel) {
    thread_local std::vector<S> xl, beta, log_w, wt;
    if (!lanes_x) xl.resize(static_cast<std::size_t>(n * d * w));
    beta.resize(static_cast<std::size_t>(w));
    // float64: the block's log weights and weights as lane_params keeps them; float32: rounded here.
    constexpr bool cached = std::is_same_v<S, double>;
    if constexpr (!cached) {
      log_w.resize(static_cast<std::size_t>(n * w));
      wt.resize(static_cast<std::size_t>(n * w));
    }
    for (Index l = 0; l < w; ++l) {
      const Index s = s0 + (l < m ? l : 0);
      if (!lanes_x) {
        const Matrix& st = in_coords ? coords_[static_cast<std::size_t>(s)] : states_[s];
        for (Index i = 0; i < n; ++i)
          for (Index k = 0; k < d; ++k)
            xl[static_cast<std::size_t>(batch_entry(i, k, n, d) * w + l)] = static_cast<S>(st(i, k));
      }
      const FlowOptions& fo = flows_[s].options();
      beta[static_cast<std::size_t>(l)] = static_cast<S>(fo.beta > 0.0 ? fo.beta : options.beta);
      if constexpr (!cached)
        for (Index i = 0; i < n; ++i) {
          log_w[static_cast<std::size_t>(i * w + l)] = static_cast<S>(log_w_[static_cast<std::size_t>(s)][i]);
          wt[static_cast<std::size_t>(i * w + l)] = static_cast<S>(fo.weights[i]);
        }
    }
    const S* lw = log_w.data();
    const S* wts = wt.data();
    if constexpr (cached) {
      lw = lane_params(b) + w;
      wts = lw + n * w;
    }
    BasicBatchPairObservables<S> po{le.data(), mc.data(), cl.data(), order.data(), dir.data()};
    if (kernel) {
      kernel->resize(static_cast<std::size_t>(batch_pair_kernel_size<S>(n)));
      po.kernel = kernel->data();
    }
    if (clusters) {
      po.on_link = &LaneClusters::link;
      po.ctx = &lc;
    }
    // The lanes matrix (n d, W) of the block is the kernel's layout already.
    batch_pair_observables({lanes_x ? lanes_x : xl.data(), lw, beta.data(), wts, n, d}, options.delta, po);
  };
  const BlockLanes* lanes = in_lanes ? &lanes_[static_cast<std::size_t>(b)] : nullptr;
  const std::size_t bk = static_cast<std::size_t>(b);
  if (single())
    pass(lanes ? lanes->xf.data() : static_cast<const float*>(nullptr), keep_kernel ? &pair_kernel_f_[bk] : nullptr);
  else
    pass(lanes ? lanes->x.data() : static_cast<const double*>(nullptr), keep_kernel ? &pair_kernel_[bk] : nullptr);
  if (keep_kernel) pair_kernel_valid_[static_cast<std::size_t>(b)] = 1;
  for (Index l = 0; l < m; ++l) {
    const Index s = s0 + l;
    const std::size_t k = static_cast<std::size_t>(l);
    Observables& ob = out[static_cast<std::size_t>(s)];
    ob.t = flow_states_[s].integrator.t;
    if (!std::isfinite(le[k]))
      throw std::runtime_error(fmt::format("observe: log_energy = {} is not finite (system {}: non-finite points)",
                                           le[k], s));
    ob.log_energy = le[k];
    ob.energy = std::exp(le[k]);
    const double w2 = flows_[s].options().weights.squaredNorm();
    ob.mean_cosine = 1.0 - w2 > 0.0 ? (dir[k] - w2) / (1.0 - w2) : 1.0;
    ob.order = order[k];
    ob.pairs_computed = true;
    ob.min_cosine = mc[k];
    ob.clustered_pairs = cl[k] / pairs;
    if (clusters) {
      ob.cluster_sizes = lc.sizes(l);
      ob.clusters = static_cast<Index>(ob.cluster_sizes.size());
    } else {
      ob.clusters = -1;
    }
  }
}

bool Ensemble::observes_batched(const ObserveOptions& options) const {
  return batched && batchable() && (options.pair_limit == 0 || flows_[0].n() <= options.pair_limit) &&
         options.sphere && plain_sphere_;
}

std::vector<Observables> Ensemble::advance_observe(double t_end, const ObserveOptions& options, bool clusters) {
  require_not_ahead("advance_observe");
  options.validate();
  require_precision(*this);
  if (runs_on_gpu() && one_grid() && !clusters && observes_batched(options)) {
    std::vector<Observables> out;  // steps and observables in one pass on the GPU
    const ObservationSink keep = [&](std::size_t, const std::vector<Observables>& o) { out = o; };
    advance_gpu({t_end}, &options, &keep);
    return out;
  }
  if (runs_on_gpu() || !(observes_batched(options) && integrator_.method != Method::dopri5)) {
    advance(t_end);
    return observe(options, clusters);
  }
  // Each block observed right after its steps, while its state is still in cache (the same
  // operations as advance() then observe(), block by block).
  const Index blocks = prepare_blocks();
  std::vector<Observables> out(static_cast<std::size_t>(size()));
  for_systems(blocks, num_threads() > 1 && blocks > 1, [&](Index b) {
    advance_block(b, t_end);
    observe_block(b, options, clusters, out);
  });
  return out;
}

void Ensemble::advance_observe_each(const std::vector<double>& times, const ObserveOptions& options, bool clusters,
                                    const ObservationSink& each) {
  require_not_ahead("advance_observe_each");
  options.validate();
  require_precision(*this);
  for (std::size_t k = 1; k < times.size(); ++k)
    require(times[k] >= times[k - 1], kEnsembleCtx, fmt::format("times[{}]", k), times[k],
            fmt::format(">= times[{}] = {} (non-decreasing)", k - 1, times[k - 1]));
  require(gpu_launch_observations >= 0, kEnsembleCtx, "gpu_launch_observations", gpu_launch_observations,
          ">= 0 (0: automatic)");
  require(cpu_pass_observations >= 0, kEnsembleCtx, "cpu_pass_observations", cpu_pass_observations,
          ">= 0 (0: automatic)");
  if (runs_on_gpu() && one_grid() && !clusters && observes_batched(options))
    return advance_gpu(times, &options, &each);
  if (!runs_on_gpu() && times.size() > 1 && observations_per_pass(options) > 1)
    return advance_observe_blocks(times, options, clusters, each);
  for (std::size_t k = 0; k < times.size(); ++k) each(k, advance_observe(times[k], options, clusters));
}

// Each block takes the steps and observations of a group of times in a row, as
// advance_observe would take them one time after the other (the same calls per block, so the
// same bits): the block's state, its kept pair kernel and the step's buffers stay in the
// core's cache for the whole group (2048 systems of n = d = 32 hold 16 MB, which otherwise
// passes through memory at every time).
Index Ensemble::observations_per_pass(const ObserveOptions& options) const {
  if (!(observes_batched(options) && integrator_.method != Method::dopri5)) return 1;
  return cpu_pass_observations > 0 ? cpu_pass_observations : std::max<Index>(1, 65536 / std::max<Index>(1, size()));
}

void Ensemble::advance_observe_blocks(const std::vector<double>& times, const ObserveOptions& options,
                                      bool clusters, const ObservationSink& each) {
  const std::size_t group = static_cast<std::size_t>(observations_per_pass(options));
  std::vector<std::vector<Observables>> out;
  for (std::size_t k0 = 0; k0 < times.size(); k0 += group) {
    const std::size_t k1 = std::min(times.size(), k0 + group), count = k1 - k0;
    out.resize(count);
    for (auto& o : out) o.resize(static_cast<std::size_t>(size()));
    const Index blocks = prepare_blocks();
    // Per block the first time it failed at (count if none) and the error.
    std::vector<std::size_t> failed(static_cast<std::size_t>(blocks), count);
    std::vector<std::exception_ptr> error(static_cast<std::size_t>(blocks));
    for_systems(blocks, num_threads() > 1 && blocks > 1, [&](Index b) {
      const std::size_t bi = static_cast<std::size_t>(b);
      for (std::size_t j = 0; j < count; ++j) {
        try {
          advance_block(b, times[k0 + j]);
          observe_block(b, options, clusters, out[j]);
        } catch (...) {
          failed[bi] = j;
          error[bi] = std::current_exception();
          return;
        }
      }
    });
    // advance_observe at each time in turn would hand over the times before the first failure,
    // then throw the error of the first block failing there.
    std::size_t first = count;
    std::exception_ptr first_error;
    for (std::size_t b = 0; b < failed.size(); ++b)
      if (failed[b] < first) {
        first = failed[b];
        first_error = error[b];
      }
    try {
      for (std::size_t j = 0; j < first; ++j) {
        ahead_ = j + 1 < count;  // every block is at times[k1 - 1] (or failed later)
        each(k0 + j, out[j]);
        ahead_ = false;
      }
    } catch (...) {
      ahead_ = false;
      throw;
    }
    if (first_error) std::rethrow_exception(first_error);
  }
}

std::vector<Observables> Ensemble::observe(const ObserveOptions& options, bool clusters) const {
  require_not_ahead("observe");
  options.validate();
  require_precision(*this);  // float32 observes in float only where it also steps
  if (gpu_ && !clusters && observes_batched(options)) return observe_gpu(options);
  if (observes_batched(options)) return observe_batched(options, clusters);  // positions = state
  sync();  // before the threads: positions() must not refresh states_ concurrently
  std::vector<Observables> out(static_cast<size_t>(size()));
  Index largest = 0;
  for (const Flow& f : flows_) largest = std::max(largest, f.n());
  const bool parallel = num_threads() > 1 && size() >= num_threads() && largest <= parallel_n;
  for_systems(size(), parallel, [&](Index s) {
    ObserveOptions o = options;
    const FlowOptions& fo = flows_[s].options();
    if (fo.beta > 0.0) o.beta = fo.beta;  // each system's energy at its own beta
    Observables& ob = out[static_cast<size_t>(s)];
    ob = attnflow::observe(positions(s), fo.weights, o, flow_states_[s].integrator.t);
    if (!clusters && ob.pairs_computed) {
      ob.clusters = -1;
      ob.cluster_sizes.clear();
    }
  });
  return out;
}

void Ensemble::sync() const {
  require_not_ahead("its state");
  if (!states_stale_) return;
  if (gpu_) {  // the GPU holds every system's state: points, or coordinates (gpu_reduced_)
    const Index n = flows_[0].n(), dg = gpu_reduced_ ? n : flows_[0].d();
    std::vector<double> all;
    gpu_->download(all);
    for (Index s = 0; s < size(); ++s) {
      Matrix& x = gpu_reduced_ ? coords_[static_cast<std::size_t>(s)] : states_[static_cast<std::size_t>(s)];
      x.resize(n, dg);
      std::copy_n(all.data() + s * n * dg, n * dg, x.data());
      if (gpu_reduced_)  // C B, as scatter_block forms the points
        states_[static_cast<std::size_t>(s)] = combine(x.data(), n, *bases_[static_cast<std::size_t>(s)], n);
    }
    states_stale_ = false;
    return;
  }
  for (std::size_t b = 0; b < lanes_.size(); ++b)
    if (!lanes_[b].empty()) scatter_block(static_cast<Index>(b), lanes_[b]);
  for (std::size_t s = 0; s < coords_.size(); ++s)  // restored coordinates not yet in lanes
    if (coords_[s].size() != 0) states_[s] = combine(coords_[s].data(), coords_[s].cols(), *bases_[s], coords_[s].rows());
  states_stale_ = false;
}

bool Ensemble::reduces_span() const {
  return reduce_span && batched && batchable() && plain_sphere_ && flows_[0].d() > flows_[0].n();
}

// Block b's systems into the lanes layout x (n lanes_d_, W): their points, or with
// lanes_d_ = n < d their coordinates, from coords_ (restored) or from a new basis of the
// points' span (Householder QR of X^T = Q R: X = R^T Q^T, coordinates R^T, basis Q^T).
void Ensemble::gather_block(Index b, BlockLanes& lanes) {
  const Index w = lanes_w_, n = flows_[0].n(), d = flows_[0].d(), dl = lanes_d_;
  const Index s0 = b * w, m = std::min(w, size() - s0);
  const bool reduced = dl != d;  // coords_ and bases_ have one entry per system (prepare_blocks)
  lanes.clear();
  Matrix& x = lanes.x;
  x.resize(n * dl, w);
  std::vector<const double*> src(static_cast<std::size_t>(w));  // lane l's (n, dl) row-major entries
  for (Index l = 0; l < w; ++l) {
    const Index s = s0 + (l < m ? l : 0);
    if (reduced && coords_[s].size() == 0) span_coordinates(states_[s], coords_[s], bases_[s]);
    src[static_cast<std::size_t>(l)] = (reduced ? coords_[s] : states_[s]).data();
  }
  for (Index i = 0; i < n; ++i)  // each entry's W lanes written together (one cache line)
    for (Index k = 0; k < dl; ++k) {
      double* row = x.data() + batch_entry(i, k, n, dl) * w;
      for (Index l = 0; l < w; ++l) row[l] = src[static_cast<std::size_t>(l)][i * dl + k];
    }
  if (single()) {  // float32: the points (or coordinates) rounded to float once, here
    lanes.xf = x.cast<float>();
    x.resize(0, 0);
  }
  if (reduced)  // the lanes hold them from now on; the points are formed again when asked for
    for (Index l = 0; l < m; ++l) {
      coords_[s0 + l].resize(0, 0);
      states_[s0 + l].resize(0, 0);
    }
}

// The lanes x of block b back to the systems' points (states_): coordinates times basis.
void Ensemble::scatter_block(Index b, const BlockLanes& x) const {
  const Index w = lanes_w_, n = flows_[0].n(), d = flows_[0].d(), dl = lanes_d_;
  const Index s0 = b * w, m = std::min(w, size() - s0);
  Matrix c(n, dl);
  for (Index l = 0; l < m; ++l) {
    Matrix& st = states_[static_cast<std::size_t>(s0 + l)];
    if (dl == d) st.resize(n, d);
    Matrix& out = dl == d ? st : c;
    for (Index i = 0; i < n; ++i)
      for (Index k = 0; k < dl; ++k) out(i, k) = x.at(batch_entry(i, k, n, dl), l);
    if (dl != d) st = combine(c.data(), dl, *bases_[static_cast<std::size_t>(s0 + l)], n);
  }
}

// System s's coordinates C (n, n) when it is held as coordinates (in reduced lanes, or restored
// and not yet gathered); an empty matrix when its points are the state.
Matrix Ensemble::coordinates(Index s) const {
  if (gpu_) sync();  // the GPU's coordinates into coords_ (reduced), or its points
  if (static_cast<Index>(coords_.size()) > s && coords_[s].size() != 0) return coords_[s];
  if (lanes_d_ == flows_[0].d() || lanes_w_ == 0) return Matrix();
  const Index w = lanes_w_, n = flows_[0].n(), b = s / w;
  if (b >= static_cast<Index>(lanes_.size())) return Matrix();
  const BlockLanes& x = lanes_[static_cast<std::size_t>(b)];
  if (x.empty()) return Matrix();
  Matrix c(n, n);
  for (Index i = 0; i < n; ++i)
    for (Index k = 0; k < n; ++k) c(i, k) = x.at(batch_entry(i, k, n, n), s - b * w);
  return c;
}

Matrix Ensemble::positions(Index s) const {
  if (states_stale_) {  // C B, as scatter_block and sync form it
    const Matrix c = coordinates(s);
    if (c.size() != 0) return combine(c.data(), c.cols(), *bases_[static_cast<std::size_t>(s)], c.rows());
  }
  return flows_[s].positions(state(s));
}

Matrix Ensemble::saved_state(Index s) const {
  require(s >= 0 && s < size(), kEnsembleCtx, "system", s, fmt::format("in [0, {})", size()));
  const Matrix c = coordinates(s);
  if (c.size() == 0) return state(s);
  const Index n = c.rows(), d = flows_[0].d();
  Matrix out(n, n + d);
  out.leftCols(n) = c;
  out.rightCols(d) = *bases_[static_cast<std::size_t>(s)];
  return out;
}

// Back to per-system storage before one system is replaced: coordinates in lanes move to
// coords_ as they are (the other systems continue bit for bit), points in lanes to states_.
// Coordinates not in lanes (restored, a span start) stay: their points are formed when asked.
void Ensemble::release_lanes() {
  drop_gpu();
  if (lanes_d_ != flows_[0].d() && !lanes_.empty()) {
    for (Index s = 0; s < size(); ++s) {
      Matrix c = coordinates(s);  // from the lanes (or already in coords_)
      if (c.size() != 0) coords_[static_cast<std::size_t>(s)] = std::move(c);
    }
  } else if (!lanes_.empty()) {
    sync();
  }
  lanes_.clear();
  pair_kernel_valid_.assign(pair_kernel_valid_.size(), 0);
}

void Ensemble::restore_state(Index s, const Matrix& saved, const FlowState& st) {
  require_not_ahead("restore_state");
  require(s >= 0 && s < size(), kEnsembleCtx, "system", s, fmt::format("in [0, {})", size()));
  const Flow& f = flows_[s];
  const Index n = f.n(), d = f.d();
  if (saved.cols() == f.state_cols() || !(plain_sphere_ && d > n)) return set_state(s, saved, st);
  if (saved.rows() != n || saved.cols() != n + d)
    throw std::invalid_argument(fmt::format("{}: saved state of system {} has shape ({}, {}), must be ({}, {}) "
                                            "or coordinates and basis ({}, {})",
                                            kEnsembleCtx, s, saved.rows(), saved.cols(), n, f.state_cols(), n, n + d));
  require_finite(kEnsembleCtx, "saved state", saved);
  release_lanes();
  coords_.resize(static_cast<std::size_t>(size()));
  bases_.resize(static_cast<std::size_t>(size()));
  coords_[s] = saved.leftCols(n);
  bases_[s] = std::make_shared<const Matrix>(saved.rightCols(d));
  flow_states_[s] = st;
  states_stale_ = true;  // the points C B are formed when asked for (sync)
}

void Ensemble::set_state(Index s, Matrix state, const FlowState& st) {
  require_not_ahead("set_state");
  require(s >= 0 && s < size(), kEnsembleCtx, "system", s, fmt::format("in [0, {})", size()));
  const Flow& f = flows_[s];
  if (state.rows() != f.n() || state.cols() != f.state_cols())
    throw std::invalid_argument(fmt::format("{}: state of system {} has shape ({}, {}), must be ({}, {})",
                                            kEnsembleCtx, s, state.rows(), state.cols(), f.n(), f.state_cols()));
  require_finite(kEnsembleCtx, "state", state);
  release_lanes();  // the lanes are gathered again at the next advance
  if (static_cast<Index>(coords_.size()) > s) coords_[s].resize(0, 0);  // the points are the state
  states_[s] = std::move(state);
  flow_states_[s] = st;
}

namespace {
// quantile() of values already sorted ascending.
double quantile_sorted(const std::vector<double>& v, double p) {
  const double h = static_cast<double>(v.size() - 1) * p;
  const size_t lo = static_cast<size_t>(std::floor(h));
  if (lo + 1 >= v.size()) return v.back();
  return v[lo] + (h - static_cast<double>(lo)) * (v[lo + 1] - v[lo]);
}
}  // namespace

double quantile(std::vector<double> v, double p) {
  require(!v.empty(), kEnsembleCtx, "values", "[]", "non-empty for a quantile");
  require(p >= 0.0 && p <= 1.0, kEnsembleCtx, "quantile", p, "in [0, 1]");
  std::sort(v.begin(), v.end());
  const double h = static_cast<double>(v.size() - 1) * p;
  const size_t lo = static_cast<size_t>(std::floor(h));
  if (lo + 1 >= v.size()) return v.back();
  return v[lo] + (h - static_cast<double>(lo)) * (v[lo + 1] - v[lo]);
}

EnsembleStats summarize(const std::vector<Observables>& per_system, const std::vector<double>& probs) {
  for (double p : probs) require(p >= 0.0 && p <= 1.0, kEnsembleCtx, "probs", p, "in [0, 1]");
  EnsembleStats st;
  st.probs = probs;
  const std::vector<std::string> names = observable_names();
  constexpr std::size_t K = kObservableCount;
  std::array<char, K> pair_based{}, cluster_count{};
  for (std::size_t k = 0; k < K; ++k) {
    pair_based[k] = names[k] == "min_cosine" || names[k] == "clusters" || names[k] == "largest_cluster" ||
                    names[k] == "clustered_pairs";
    cluster_count[k] = names[k] == "clusters" || names[k] == "largest_cluster";
  }
  // Each system's values, once: NaN where a value does not enter its observable's statistics
  // (a counted value is finite).
  std::vector<std::array<double, K>> rows(per_system.size());
  for (std::size_t i = 0; i < per_system.size(); ++i) {
    const Observables& o = per_system[i];
    rows[i] = observable_array(o);
    for (std::size_t k = 0; k < K; ++k)
      if ((pair_based[k] && !o.pairs_computed) || !std::isfinite(rows[i][k]) || (cluster_count[k] && o.clusters < 0))
        rows[i][k] = std::numeric_limits<double>::quiet_NaN();
  }
  // Each observable's sums over the systems in their order (the same bits on any thread or rank
  // count), all observables in one pass: K independent chains of adds instead of one at a time.
  std::array<double, K> sum{}, mean{}, ss{};
  std::array<Index, K> count{};
  for (const auto& v : rows)
    for (std::size_t k = 0; k < K; ++k)
      if (!std::isnan(v[k])) {
        sum[k] += v[k];
        ++count[k];
      }
  for (std::size_t k = 0; k < K; ++k)
    if (count[k] > 0) mean[k] = sum[k] / static_cast<double>(count[k]);
  for (const auto& v : rows)
    for (std::size_t k = 0; k < K; ++k)
      if (!std::isnan(v[k])) {
        // The square rounded before the sum, never fused into it: the bits the statistics
        // always had (the compiler would fuse it in this loop).
        const double dv = v[k] - mean[k];
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        double sq = dv * dv;
        asm("" : "+x"(sq));
#else
        const volatile double sq = dv * dv;
#endif
        ss[k] += sq;
      }
  // The values themselves only for quantiles.
  std::vector<std::vector<double>> values(probs.empty() ? 0 : K);
  for (std::size_t k = 0; k < values.size(); ++k) {
    values[k].reserve(static_cast<std::size_t>(count[k]));
    for (const auto& v : rows)
      if (!std::isnan(v[k])) values[k].push_back(v[k]);
  }
  for (std::size_t k = 0; k < K; ++k) {
    ObservableStats s;
    s.name = names[k];
    s.count = count[k];
    if (s.count > 0) {
      s.mean = mean[k];
      if (s.count > 1)
        s.standard_error = std::sqrt(ss[k] / static_cast<double>(s.count - 1) / static_cast<double>(s.count));
      if (!probs.empty()) std::sort(values[k].begin(), values[k].end());
      for (double p : probs) s.quantiles.push_back(quantile_sorted(values[k], p));
    }
    st.stats.push_back(std::move(s));
  }
  return st;
}

}  // namespace attnflow
