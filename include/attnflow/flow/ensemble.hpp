// Ensembles: many independent flows (different seeds or parameters, docs/math.md section 5)
// advanced together, in parallel across systems when each is small, with the mean and
// quantiles of every observable. Each system runs single-threaded or with the kernel's
// fixed tiles, so results are bit-identical whatever the thread count.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "attnflow/flow/flow.hpp"
#include "attnflow/flow/integrate.hpp"
#include "attnflow/flow/observe.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"  // Precision
#include "attnflow/base/types.hpp"

namespace attnflow {

class BatchCuda;

// A flow on the sphere without a normalization scheme: its state is its points (the batched
// path's plain sphere, and what a span start needs).
inline bool plain_sphere(const FlowOptions& o) { return o.scheme.scheme == Scheme::none && o.sphere; }

class Ensemble {
 public:
  // One flow per system with its initial points (n_s, d_s); systems may differ in every
  // option (beta, kind, size). Throws naming "ensemble: systems" when the lists differ in
  // length or are empty.
  Ensemble(std::vector<FlowOptions> flows, std::vector<Matrix> initial_points, IntegratorOptions integrator);

  // The reduced path's start (reduces_span()): per system the coordinates C (n, n) and an
  // orthonormal basis B (n, d) of the span of its initial points on the sphere, X = C B.
  // Formed once by span_start(), it is shared read-only by the ensembles that start from the
  // same points (the points of a sweep over beta share the measure and the seed): those skip
  // the sampling and the QR of every system, and hold one basis for all.
  struct SpanStart {
    std::vector<Matrix> coords;                        // C (n, n) per system
    std::vector<std::shared_ptr<const Matrix>> bases;  // B (n, d) per system, rows orthonormal
  };
  // Systems starting from the points C B of `start` (one flow per system, on the sphere
  // without a scheme, of n = C's size and d = B's columns): the same state, bit for bit, as
  // the ensemble that formed `start` had after span_start(). Throws naming the argument when
  // the lists differ in length, a shape does not fit or a flow is not on the plain sphere.
  static Ensemble from_span_start(std::vector<FlowOptions> flows, std::shared_ptr<const SpanStart> start,
                                  IntegratorOptions integrator);
  // Every system's span form, formed now (in parallel over systems) if not yet: the state is
  // then held as C B (what gather would form at the first advance or observation: the
  // results do not change), and the returned start shares this ensemble's bases. Needs
  // reduces_span() and an ensemble not yet advanced or observed; throws naming the rule.
  std::shared_ptr<const SpanStart> span_start();
  ~Ensemble();
  Ensemble(Ensemble&&) noexcept;
  Ensemble& operator=(Ensemble&&) noexcept;

  // Advances every system to t_end. Systems run in parallel (one thread each) when there are
  // at least as many systems as threads and each has at most parallel_n tokens; otherwise
  // one after the other with the kernel's threads.
  void advance(double t_end);

  // Observables of every system at its current time (beta = the system's beta). With
  // clusters = false the union-find is skipped (clusters = largest_cluster = -1, sizes empty;
  // min_cosine and clustered_pairs are still computed). On the batched path with the plain
  // flow on the sphere (scheme none) every pair observable comes from one fused lane pass
  // (batch_pair_observables): energy, min cosine and clustered pairs for W systems at once.
  std::vector<Observables> observe(const ObserveOptions& options, bool clusters = true) const;
  // advance(t_end), then observe(options, clusters): the same results. On the batched path on
  // the sphere each block of systems is observed right after its steps, while its state is in
  // cache (an ensemble's states together exceed the core's caches).
  std::vector<Observables> advance_observe(double t_end, const ObserveOptions& options, bool clusters = true);
  // advance_observe at each of times (non-decreasing) in turn, handing each observation to
  // each(k, observables at times[k]): the same results as advance_observe(times[k], ...) for
  // k = 0, 1, .... On the GPU path (runs_on_gpu(), one time grid, clusters = false) the steps
  // and observations of up to gpu_launch_observations times go in one launch and come back in
  // one copy, instead of a round trip per time, and the next launch runs while the host forms
  // and hands over this one's: while each(k, ...) runs the ensemble may then be past times[k],
  // and reading, observing or advancing it there throws std::logic_error (where it is at
  // times[k], as on the CPU path and at a call's last time, it may be used). A failing system
  // throws as advance_observe does; the observations of the launch it failed in are then not
  // handed over. If each throws, the ensemble is left where the GPU got (flow_state(s).integrator
  // says where). On the CPU's batched path on the sphere, each block of systems runs the steps
  // and observations of up to cpu_pass_observations times in a row while its state stays in
  // the core's cache (one pass over the blocks instead of one per time), and the observations
  // are handed over after the pass: the same results, with the same rule inside each (the
  // ensemble may be past times[k]). A failing system throws the error advance_observe would,
  // after the observations of the earlier times are handed over; the other blocks may then be
  // past the failing time.
  using ObservationSink = std::function<void(std::size_t k, const std::vector<Observables>& observables)>;
  void advance_observe_each(const std::vector<double>& times, const ObserveOptions& options, bool clusters,
                            const ObservationSink& each);
  // Observation times per GPU launch in advance_observe_each; 0 (the default): as many as
  // keep 65536 systems' observations per launch (32 times for 2048 systems), at least one.
  Index gpu_launch_observations = 0;
  // Observation times per pass over the blocks in advance_observe_each on the CPU's batched
  // path; 0 (the default): as many as keep 65536 systems' observations (32 times for 2048
  // systems), at least one.
  Index cpu_pass_observations = 0;
  // The times advance_observe_each takes per pass over the blocks with these options on the
  // CPU: cpu_pass_observations (resolved) on the batched path on the sphere, else 1.
  Index observations_per_pass(const ObserveOptions& options) const;

  // The batched small-system path (batch_kernel.hpp), used by advance() and observe() when
  // `batched` is set and batchable() holds: W = batch_width() systems of the same (n, d)
  // advance together in SIMD lanes, blocks of W systems across threads. Results equal the
  // per-system path to about 1e-13 relative (another summation order and exponential) and
  // are bit-identical for any thread count and any block composition.
  bool batched = false;
  // Every system is SA or USA, or every system is Sinkhorn with one normalization control
  // (iterations, tol, max_iterations), with one identity head (Q = K = V = I), without noise,
  // of the same n (2 <= n <= batch_n) and d, and the method is euler, residual or rk4. The
  // other fields take the per-system path (in parallel across systems).
  bool batchable() const;
  Index batch_n = 512;  // largest n of the batched path (its pair buffer is n^2 W / 2 doubles)

  // The arithmetic of the batched path on the sphere. float64 (the default): as above.
  // float32: the state, the steps and the pair observables in single precision (PyTorch's
  // default dtype), batch_lanes<float>() = 16 systems per vector with AVX-512: about twice the
  // systems per second, with rounding errors of float (about 1e-7 relative per operation)
  // instead of double. Still bit-identical for any thread count and any block composition,
  // and a checkpoint (saved_state: floats are exact in double) continues bit for bit.
  // Needs precision_refusal() empty: advance() throws naming the rule otherwise.
  Precision precision = Precision::float64;
  // Why float32 does not apply to these systems ("" when it does): it needs the batched path
  // (batched, batchable()) on the sphere (scheme none) with SA / USA (Sinkhorn runs in double),
  // beta <= 1e30, and method euler, residual or rk4.
  std::string precision_refusal() const;

  // The batched path on the GPU (batch_cuda.hpp): with the device cuda (set_device), batched and
  // batchable() SA / USA systems on the sphere (scheme none) with euler, residual or rk4 steps
  // stay on the GPU between calls, advance there, and are observed there when no cluster
  // counts are asked for (those are counted on the CPU from the downloaded states). Results
  // agree with the CPU path to rounding and repeat bit for bit. Sinkhorn systems, schemes and
  // shapes the GPU refuses (gpu_refusal()) take the CPU's batched path.
  bool runs_on_gpu() const;
  // Why the GPU path does not take these systems ("" when it does or the device is the CPU).
  std::string gpu_refusal() const;
  // Tests: the GPU path with its block algorithm run on the host (BatchCuda's emulation),
  // whatever the device and the build, so the CPU build tests the GPU path's bookkeeping.
  bool gpu_emulation = false;

  Index size() const { return static_cast<Index>(flows_.size()); }
  const Flow& flow(Index s) const { return flows_[s]; }
  const Matrix& state(Index s) const {
    sync();
    return states_[s];
  }
  const FlowState& flow_state(Index s) const { return flow_states_[s]; }
  // The points of system s (on the reduced path formed from its coordinates without
  // refreshing every system's state: the same bits as state(s)).
  Matrix positions(Index s) const;
  // Replaces system s's state (n, state columns) and FlowState.
  void set_state(Index s, Matrix state, const FlowState& st);

  // What a checkpoint (or another process) keeps of system s to continue it bit for bit:
  // its state (n, state columns), or on the reduced batched path (reduces_span()) its
  // coordinates and basis [C | B] (n, n + d), the points being C B. restore_state() takes
  // either and continues exactly where saved_state() left off.
  Matrix saved_state(Index s) const;
  void restore_state(Index s, const Matrix& saved, const FlowState& st);

  // The batched path on the sphere with more dimensions than tokens (d > n) advances each
  // system in an n-dimensional coordinate system: the flow never leaves the span of the
  // initial points (every velocity is a combination of the points), so with an orthonormal
  // basis B (n, d) of that span (Householder QR, rows of B orthonormal) and X = C B, the
  // steps on C are the steps on X (inner products and norms are the same), at the cost of
  // d = n. Results equal the unreduced path to rounding (another summation order).
  // reduce_span = false keeps the points in d dimensions.
  bool reduce_span = true;
  bool reduces_span() const;

  Index parallel_n = 4096;  // systems this small run one per thread

 private:
  std::vector<Flow> flows_;
  // The batched path on the sphere keeps each block's state in the lanes layout between
  // advance() calls (lanes_, one (n d, W) matrix per block); states_ is refreshed from it on
  // access (sync), so per-system storage costs no transposition per observation.
  mutable std::vector<Matrix> states_;
  // One block's state in the lanes layout of batch_kernel.hpp, (n lanes_d_, lanes_w_):
  // doubles, or floats on the float32 path (one of the two is empty).
  struct BlockLanes {
    Matrix x;
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> xf;
    bool empty() const { return x.size() == 0 && xf.size() == 0; }
    double at(Index e, Index l) const { return xf.size() != 0 ? static_cast<double>(xf(e, l)) : x(e, l); }
    void clear() {
      x.resize(0, 0);
      xf.resize(0, 0);
    }
  };
  mutable std::vector<BlockLanes> lanes_;
  Index lanes_w_ = 0;  // systems per block of lanes_ (batch_width(), or batch_lanes<float>())
  Index block_width() const;
  bool single() const { return precision == Precision::float32; }
  // reduces_span(): per system the basis B (n, d) of its lanes' coordinates, and coordinates
  // C (n, n) not yet gathered into lanes (restored from a saved state, or a span start).
  // A basis is never modified: it is shared with a SpanStart and the ensembles started from it.
  mutable std::vector<std::shared_ptr<const Matrix>> bases_;
  mutable std::vector<Matrix> coords_;
  void init_properties();  // lanes_compatible_, max_beta_, plain_sphere_ from the flows
  explicit Ensemble(IntegratorOptions integrator);  // from_span_start: then start_from
  void start_from(std::vector<FlowOptions> flows, std::shared_ptr<const SpanStart> start);
  Index lanes_d_ = 0;  // the lanes' dimension: d, or n when reduces_span()
  void gather_block(Index b, BlockLanes& x);
  bool block_in_lanes(Index b) const;   // block b's state is in lanes_
  bool block_in_coords(Index b) const;  // every system of block b in coords_ (not gathered)
  void scatter_block(Index b, const BlockLanes& x) const;
  void release_lanes();
  Matrix coordinates(Index s) const;
  mutable bool states_stale_ = false;
  void sync() const;
  // The pair kernel of each block's last observation (BatchPairObservables::kernel), valid
  // until the block moves: the next step's first field evaluation is at the observed points,
  // with the same betas, and takes it instead of a second Gram pass and its exponentials.
  mutable std::vector<std::vector<double, Eigen::aligned_allocator<double>>> pair_kernel_;
  mutable std::vector<std::vector<float, Eigen::aligned_allocator<float>>> pair_kernel_f_;  // float32
  // float32: per block its lanes' betas and log weights as floats, [beta (W) | log w (n W)],
  // formed at the block's first step (the systems' options never change).
  std::vector<std::vector<float>> single_params_;
  // float64: per block [beta (W) | log w (n W) | w (n W)] of its lanes, formed at the block's
  // first step or observation (lane_params): rebuilt at every one they cost a few percent.
  mutable std::vector<std::vector<double>> lane_params_;
  const double* lane_params(Index b) const;
  mutable std::vector<char> pair_kernel_valid_;
  std::vector<FlowState> flow_states_;
  std::vector<Vector> log_w_;  // log of each system's (normalized) weights, -inf for 0
  IntegratorOptions integrator_;
  // Properties of the systems' options, which never change after construction (computed
  // once: each advance() and observe() asks, and the loop over thousands of systems showed).
  bool lanes_compatible_ = false;  // batchable() but for the method and batch_n
  bool plain_sphere_ = false;      // every system: scheme none on the sphere
  double max_beta_ = 0.0;          // the largest system beta (precision_refusal, at every step)

  void advance_batched(double t_end);
  Index prepare_blocks();
  void advance_block(Index b, double t_end);
  void advance_single(Index b, IntegratorState& st, double t_end, const float* kept);
  bool observes_batched(const ObserveOptions& options) const;
  std::vector<Observables> observe_batched(const ObserveOptions& options, bool clusters) const;
  void observe_block(Index b, const ObserveOptions& options, bool clusters, std::vector<Observables>& out) const;
  // advance_observe_each on the CPU's batched path: block by block, many times per pass.
  void advance_observe_blocks(const std::vector<double>& times, const ObserveOptions& options, bool clusters,
                              const ObservationSink& each);
  // The GPU path: gpu_ holds every system's state while it is set (states_ is then refreshed
  // from it by sync()); released (after a sync) when the CPU path or a new state takes over.
  mutable std::unique_ptr<BatchCuda> gpu_;
  mutable std::optional<std::pair<Index, std::string>> gpu_refusal_;  // (the GPU's d, batch_cuda_refusal)
  bool gpu_reduced_ = false;  // the GPU holds coordinates in each system's span (reduces_span())
  std::vector<double> gpu_w2_;            // per system |w|^2 (mean_cosine), set with gpu_
  // To each of times in turn on the GPU; with obs, observed at each (in the same pass): each(k,
  // observables at times[k]), gpu_launch_observations times per launch.
  void advance_gpu(const std::vector<double>& times, const ObserveOptions* obs = nullptr,
                   const ObservationSink* each = nullptr);
  void upload_gpu();
  std::vector<Observables> observe_gpu(const ObserveOptions& options) const;
  std::vector<double> observation_betas(const ObserveOptions& options) const;
  // BatchCuda's 5 values per system (v) as Observables at time t, into out (size() entries).
  void gpu_observables(const double* v, double t, std::vector<Observables>& out) const;
  void drop_gpu() const;
  bool one_grid() const;
  // advance_gpu sets ahead_ while each(k, ...) runs with the ensemble past times[k]; the
  // methods that read or move the state then throw (require_not_ahead).
  bool ahead_ = false;
  void require_not_ahead(const char* what) const;
};

// Mean and quantiles of one observable across systems.
struct ObservableStats {
  std::string name;
  Index count = 0;  // systems with a finite value (energy = +inf, skipped pair passes and
                    // cluster counts not asked for are left out)
  double mean = 0.0;  // 0 when count = 0
  double standard_error = 0.0;  // standard error of the mean, sample sd / sqrt(count) (0 when count < 2)
  std::vector<double> quantiles;  // at EnsembleStats::probs; empty when count = 0
};
struct EnsembleStats {
  std::vector<double> probs;
  std::vector<ObservableStats> stats;  // in observable_names() order
};

// Quantile with linear interpolation between order statistics (NumPy's default "linear"):
// q(p) = v[floor(h)] + (h - floor(h)) (v[floor(h)+1] - v[floor(h)]), h = (count - 1) p.
double quantile(std::vector<double> values, double p);

// Statistics over systems of every scalar observable. probs in [0, 1].
EnsembleStats summarize(const std::vector<Observables>& per_system,
                        const std::vector<double>& probs = {0.1, 0.5, 0.9});

}  // namespace attnflow
