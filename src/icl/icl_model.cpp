// In-context regression data model, prompt sampler and the two block-parametrized models
// (softmax and linear attention) with their gradients (docs/math.md section 7).
#include <Eigen/Cholesky>
#include <cmath>

#include "attnflow/base/error.hpp"
#include "attnflow/icl/icl.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attnflow/base/ziggurat.hpp"

namespace attnflow {

namespace {
constexpr const char* kIclModelCtx = "icl";
}

TaskPrior parse_task_prior(std::string_view name, std::string_view context) {
  if (name == "gaussian") return TaskPrior::gaussian;
  if (name == "sphere") return TaskPrior::sphere;
  throw_invalid(context, "task_prior", fmt::format("\"{}\"", name), "one of gaussian, sphere");
}

std::string to_string(TaskPrior p) { return p == TaskPrior::gaussian ? "gaussian" : "sphere"; }

IclModel parse_icl_model(std::string_view name, std::string_view context) {
  if (name == "softmax") return IclModel::softmax;
  if (name == "linear") return IclModel::linear;
  throw_invalid(context, "model", fmt::format("\"{}\"", name), "one of softmax, linear");
}

std::string to_string(IclModel m) { return m == IclModel::softmax ? "softmax" : "linear"; }

void IclData::validate() const {
  require(cov.rows() >= 1 && cov.rows() == cov.cols(), kIclModelCtx, "covariance shape",
          fmt::format("{} x {}", cov.rows(), cov.cols()), "d x d with d >= 1");
  require_finite(kIclModelCtx, "covariance", cov);
  require((cov - cov.transpose()).cwiseAbs().maxCoeff() <= 1e-12 * cov.cwiseAbs().maxCoeff(),
          kIclModelCtx, "covariance", "(not symmetric)", "symmetric");
  Eigen::LLT<Matrix> llt(cov);
  require(llt.info() == Eigen::Success, kIclModelCtx, "covariance", "(not positive definite)",
          "positive definite");
  require(std::isfinite(noise) && noise >= 0.0, kIclModelCtx, "noise", noise, ">= 0");
  require(std::isfinite(task_scale) && task_scale > 0.0, kIclModelCtx, "task_scale", task_scale,
          "> 0");
}

Matrix toeplitz_covariance(Index d, double rho) {
  require(d >= 1, kIclModelCtx, "d", d, ">= 1");
  require(std::abs(rho) < 1.0, kIclModelCtx, "rho", rho, "in (-1, 1)");
  Matrix s(d, d);
  for (Index i = 0; i < d; ++i)
    for (Index j = 0; j < d; ++j) s(i, j) = std::pow(rho, static_cast<double>(std::abs(i - j)));
  return s;
}

IclSampler::IclSampler(IclData data) : data_(std::move(data)) {
  data_.validate();
  chol_ = Eigen::LLT<Matrix>(data_.cov).matrixL();
}

IclPrompt IclSampler::sample(Index length, Rng& rng) const {
  IclPrompt p;
  sample_into(length, rng, p);
  return p;
}

void IclSampler::sample_into(Index length, Rng& rng, IclPrompt& p) const {
  const Index d = data_.dim();
  // Draw order (fixed, part of the stream's definition): w, x_q, the tokens' standard normals
  // (L, d) row by row, then the label noises; all by the ziggurat (the bulk of a step's cost).
  p.w.resize(d);
  ziggurat_fill(rng, p.w.data(), d);
  if (data_.prior == TaskPrior::sphere) p.w *= std::sqrt(static_cast<double>(d)) / p.w.norm();
  p.w *= data_.task_scale;
  p.xq.resize(d);
  ziggurat_fill(rng, p.xq.data(), d);
  p.xq = (chol_ * p.xq).eval();
  p.target = p.w.dot(p.xq);
  // Buffers are reused across calls (same L): no allocation, no page faults per prompt.
  thread_local Matrix g;
  g.resize(length, d);
  ziggurat_fill(rng, g.data(), g.size());
  // Rows x_i = chol xi_i ~ N(0, S): chol is lower triangular, d(d+1)/2 multiply-adds per
  // token in a plain loop (a GEMM's packing costs more than the work at d = 5).
  p.x.resize(length, d);
  for (Index i = 0; i < length; ++i) {
    const double* xi = g.data() + i * d;
    double* xo = p.x.data() + i * d;
    for (Index r = 0; r < d; ++r) {
      double acc = 0.0;
      for (Index c = 0; c <= r; ++c) acc += chol_(r, c) * xi[c];
      xo[r] = acc;
    }
  }
  p.y.resize(length);
  p.y.noalias() = p.x * p.w;
  if (data_.noise > 0.0) {
    const double sd = std::sqrt(data_.noise);
    thread_local Vector noise;
    noise.resize(length);
    ziggurat_fill(rng, noise.data(), length);  // the same draws as L ziggurat_normal calls
    p.y += sd * noise;
  }
}

namespace {

// Softmax: weights p_i = softmax_i(x_i^T A x_q). One kernel pass with values
// [y_i, x_i, y_i x_i] (L, 1 + 2d) gives ybar = E_p y, E_p x and E_p[y x]; then
//   prediction = b ybar, d/db = ybar, d/dA = b (E_p[y x] - ybar E_p x) x_q^T.
IclPrediction predict_softmax(const IclParams& params, const IclPrompt& pr, bool gradients) {
  const Index d = pr.x.cols(), length = pr.x.rows();
  const Index p = gradients ? 1 + 2 * d : 1;
  thread_local Matrix vals;  // reused across prompts of the same length
  vals.resize(length, p);
  for (Index i = 0; i < length; ++i) {  // row by row: vals is row-major, so is x
    double* row = vals.data() + i * p;
    const double* xi = pr.x.data() + i * d;
    const double yi = pr.y[i];
    row[0] = yi;
    if (!gradients) continue;
    for (Index t = 0; t < d; ++t) {
      row[1 + t] = xi[t];
      row[1 + d + t] = yi * xi[t];
    }
  }
  const Vector query = params.a * pr.xq;  // scores s_i = <x_i, A x_q>
  Vector out(p);
  ReduceInput in{query.data(), pr.x.data(), nullptr, vals.data(), 1, length, d, p};
  lse_reduce(in, ReduceOutput{nullptr, out.data()});
  IclPrediction r;
  const double ybar = out[0];
  r.value = params.b * ybar;
  if (!gradients) return r;
  r.grad_b = ybar;
  const Vector centered = out.tail(d) - ybar * out.segment(1, d);
  r.grad_a = params.b * centered * pr.xq.transpose();
  return r;
}

// Linear attention: h = (1/L) sum_i y_i x_i, prediction b h^T A x_q.
IclPrediction predict_linear(const IclParams& params, const IclPrompt& pr, bool gradients) {
  const Vector h = pr.x.transpose() * pr.y / static_cast<double>(pr.x.rows());
  IclPrediction r;
  const double hax = h.dot(params.a * pr.xq);
  r.value = params.b * hax;
  if (!gradients) return r;
  r.grad_b = hax;
  r.grad_a = params.b * h * pr.xq.transpose();
  return r;
}

}  // namespace

IclPrediction icl_predict(IclModel model, const IclParams& params, const IclPrompt& prompt,
                          bool gradients) {
  return model == IclModel::softmax ? predict_softmax(params, prompt, gradients)
                                    : predict_linear(params, prompt, gradients);
}

IclParams icl_balanced_init(Index d, double alpha, Rng& rng) {
  require(d >= 1, kIclModelCtx, "d", d, ">= 1");
  require(std::isfinite(alpha) && alpha > 0.0, kIclModelCtx, "init_scale", alpha, "> 0");
  Matrix theta(d, d);
  rng.fill_normal(theta);
  const Matrix tt = theta * theta.transpose();
  return {alpha * tt / tt.norm(), alpha};
}

}  // namespace attnflow
