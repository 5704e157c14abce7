#include <Eigen/Eigenvalues>
#include <cmath>
#include <exception>

#include "attnflow/base/error.hpp"
#include "attnflow/flow/flow.hpp"
#include "attnflow/model/model_tasks.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "head.hpp"

namespace attnflow {

TaskKind parse_task_kind(const std::string& name, const std::string& context) {
  if (name == "gaussian") return TaskKind::gaussian;
  if (name == "vlasov") return TaskKind::vlasov;
  if (name == "sinkhorn") return TaskKind::sinkhorn;
  throw_invalid(context, "kind", fmt::format("\"{}\"", name), "one of gaussian, vlasov, sinkhorn");
}

std::string to_string(TaskKind kind) {
  switch (kind) {
    case TaskKind::gaussian: return "gaussian";
    case TaskKind::vlasov: return "vlasov";
    case TaskKind::sinkhorn: return "sinkhorn";
  }
  return "?";
}

void TaskOptions::validate() const {
  constexpr const char* ctx = "task";
  require(dim >= 1, ctx, "dim", dim, ">= 1");
  require(n_min >= 1, ctx, "n_min", n_min, ">= 1");
  require(n_max >= n_min, ctx, "n_max", n_max, fmt::format(">= n_min ({})", n_min));
  if (kind == TaskKind::gaussian)
    require(n_min > dim, ctx, "n_min", n_min, fmt::format("> dim ({}) for a full-rank covariance", dim));
  require(train_size >= 1, ctx, "train_size", train_size, ">= 1");
  require(test_size >= 1, ctx, "test_size", test_size, ">= 1");
  require(std::isfinite(spread) && spread >= 0.0, ctx, "spread", spread, "finite and >= 0");
  require(std::isfinite(beta), ctx, "beta", beta, "finite");
  require(std::isfinite(time) && time >= 0.0, ctx, "time", time, "finite and >= 0");
  require(heads >= 1, ctx, "heads", heads, ">= 1");
  require(std::isfinite(dt) && dt > 0.0, ctx, "dt", dt, "finite and > 0");
  require(std::isfinite(eps) && eps > 0.0, ctx, "eps", eps, "finite and > 0");
  target_sinkhorn.validate(ctx, "target_sinkhorn.");
  require(target_sinkhorn.iterations == 0, ctx, "target_sinkhorn.iterations",
          target_sinkhorn.iterations, "0 (the target plan is solved to tol)");
}

namespace {

Matrix gaussian_target(const Measure& mu) {
  const Matrix& x = mu.points();
  const Vector& w = mu.weights();
  const Vector m = x.transpose() * w;
  const Matrix c = x.rowwise() - m.transpose();
  const Matrix cov = c.transpose() * w.asDiagonal() * c;
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(cov);
  const Eigen::VectorXd ev = es.eigenvalues();
  if (!(ev.minCoeff() > 1e-12 * std::max(1.0, ev.maxCoeff())))
    throw_invalid("task gaussian", "covariance min eigenvalue", ev.minCoeff(), "> 0 (degenerate measure)");
  const Eigen::MatrixXd isqrt =
      es.eigenvectors() * ev.cwiseSqrt().cwiseInverse().asDiagonal() * es.eigenvectors().transpose();
  return c * isqrt.transpose();
}

Matrix vlasov_target(const TaskOptions& o, const Measure& mu) {
  FlowOptions fo;
  fo.kind = FieldKind::sa;
  fo.beta = o.beta;
  fo.sphere = false;
  fo.heads = make_heads(static_cast<int>(o.heads), o.dim, "gaussian", o.seed + 7919);
  fo.weights = mu.weights();
  const Flow flow(fo, mu.size(), mu.dim());
  Matrix state = flow.initial_state(mu.points());
  FlowState st = flow.initial_flow_state();
  IntegratorOptions io;
  io.method = Method::rk4;
  io.dt = o.dt;
  flow.advance(state, st, o.time, io);
  return flow.positions(state);
}

// pi_ij = w_i w_j exp(f_i + f_j + s_ij), s_ij = <2 x_i / eps, x_j>: the -|x|^2 / eps row and
// column terms of the cost |x_i - x_j|^2 / eps are absorbed by the potentials, so pi is the
// entropic OT plan of mu with itself (docs/math.md sections 1 and 3). The self-coupling has one
// symmetric potential f, solved by the Sinkhorn engine's symmetric (averaged) update, which
// converges fast where the alternating one stalls on spread-out clouds (eps << diameter^2),
// to the marginal violation sum_i |sum_j pi_ij - w_i| <= target_sinkhorn.tol.
Matrix sinkhorn_target(const TaskOptions& o, const Measure& mu) {
  const Matrix u = (2.0 / o.eps) * mu.points();
  const Matrix& x = mu.points();
  const Vector lw = log_weights(mu.weights());
  SinkhornLoop loop;
  loop.symmetric = true;
  loop.context = "task sinkhorn: the target plan";
  const SinkhornRun run =
      sinkhorn_loop(affinity_half_steps(u, x, lw, lw), mu.weights(), mu.weights(), o.target_sinkhorn, loop);
  if (!run.status.converged) throw std::runtime_error(run.status.message);
  Vector lse;
  Matrix t;
  lse_reduce(u, x, lw + run.f, x, lse, t);
  return t;
}

Measure sample_measure(const TaskOptions& o, Rng& rng) {
  const Index span = o.n_max - o.n_min + 1;
  const Index n = o.n_min + std::min<Index>(span - 1, static_cast<Index>(rng.uniform() * span));
  Matrix a = Matrix::Identity(o.dim, o.dim);
  Matrix g(o.dim, o.dim);
  rng.fill_normal(g);
  a += (o.spread / std::sqrt(static_cast<double>(o.dim))) * g;
  Vector mean(o.dim);
  for (Index t = 0; t < o.dim; ++t) mean[t] = 0.5 * rng.normal();
  Matrix z(n, o.dim);
  rng.fill_normal(z);
  Matrix x = z * a.transpose();
  x.rowwise() += mean.transpose();
  Vector w = Vector::Constant(n, 1.0);
  if (o.random_weights)
    for (Index i = 0; i < n; ++i) w[i] = 0.5 + rng.uniform();
  return Measure(std::move(x), std::move(w), "task measure");
}

}  // namespace

Matrix task_target(const TaskOptions& options, const Measure& mu) {
  options.validate();
  switch (options.kind) {
    case TaskKind::gaussian: return gaussian_target(mu);
    case TaskKind::vlasov: return vlasov_target(options, mu);
    case TaskKind::sinkhorn: return sinkhorn_target(options, mu);
  }
  return {};
}

TaskData make_task(const TaskOptions& o) {
  o.validate();
  TaskData data;
  data.train.resize(static_cast<size_t>(o.train_size));
  data.test.resize(static_cast<size_t>(o.test_size));
  const long total = static_cast<long>(o.train_size + o.test_size);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(total));
#pragma omp parallel for schedule(dynamic, 1) num_threads(detail::batch_threads(total))
  for (long k = 0; k < total; ++k) {
    try {
      const bool train = k < o.train_size;
      const Index idx = train ? k : k - o.train_size;
      Rng rng(o.seed, static_cast<std::uint64_t>(2 * idx + (train ? 0 : 1)));
      Example ex{sample_measure(o, rng), Matrix()};
      ex.target = task_target(o, ex.mu);
      (train ? data.train : data.test)[static_cast<size_t>(idx)] = std::move(ex);
    } catch (...) {
      errors[static_cast<size_t>(k)] = std::current_exception();
    }
  }
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  return data;
}

}  // namespace attnflow
