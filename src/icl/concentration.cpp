// Concentration experiment of the large-prompt operator (docs/math.md section 7): empirical
// prompts of growing length L against the infinite-prompt operator of the same token law.
// Streams: the operator from Rng(seed, 1); prompt r's queries and cotangents from
// Rng(seed, 0).split(r) (shared by every L, so the curves compare like with like); the L
// tokens of (length l, prompt r) from Rng(seed, 2).split(l * prompts + r).
#include "attnflow/icl/concentration.hpp"

#include <array>
#include <cmath>

#include "attnflow/base/error.hpp"
#include "attnflow/icl/large_prompt.hpp"
#include "attnflow/base/rng.hpp"
#include "attnflow/base/ziggurat.hpp"

namespace attnflow {

namespace {
constexpr const char* kConcentrationCtx = "concentration";

Matrix sample_law(TokenLaw law, Index n, Index dim, double scale, Rng& rng) {
  Matrix x(n, dim);
  if (law == TokenLaw::gaussian) {
    ziggurat_fill(rng, x.data(), x.size());
    x *= scale;
  } else {
    for (Index k = 0; k < x.size(); ++k)
      x.data()[k] = (rng.next_u64() >> 63) ? scale : -scale;
  }
  return x;
}

// The infinite-prompt operator of the law. Rademacher tokens +-s: with U' = s U, V' = s V
// the unit-law formulas give T = V s tanh(s U z) exactly; the tilted mean and C V^T g of the
// scaled law are s times those returned for (U', V').
PromptOutput infinite_operator(const ConcentrationOptions& o, const PromptOperator& op,
                               const Matrix& z, const Matrix& g) {
  if (o.law == TokenLaw::gaussian)
    return gaussian_prompt(op, Vector::Zero(o.dim),
                           o.scale * o.scale * Matrix::Identity(o.dim, o.dim), z, g);
  PromptOutput r = rademacher_prompt({o.scale * op.u, o.scale * op.v}, z, g);
  r.means *= o.scale;
  r.cov_h *= o.scale;
  return r;
}

// Per-prompt query averages of the three squared errors.
std::array<double, 3> prompt_errors(const PromptOutput& emp, const PromptOutput& ref,
                                    const Matrix& z, const Matrix& g) {
  std::array<double, 3> e{0.0, 0.0, 0.0};
  for (Index i = 0; i < z.rows(); ++i) {
    e[0] += (emp.out.row(i) - ref.out.row(i)).squaredNorm();
    // |(C_i h_i - C'_i h_i) z_i^T|_F^2 = |C_i h_i - C'_i h_i|^2 |z_i|^2, same for g_i m_i^T.
    e[1] += (emp.cov_h.row(i) - ref.cov_h.row(i)).squaredNorm() * z.row(i).squaredNorm();
    e[2] += (emp.means.row(i) - ref.means.row(i)).squaredNorm() * g.row(i).squaredNorm();
  }
  for (double& v : e) v /= static_cast<double>(z.rows());
  return e;
}

// Two-sided 95% Student t quantiles for 1..30 degrees of freedom.
constexpr std::array<double, 30> kT975{12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306,
                                       2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
                                       2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
                                       2.060,  2.056, 2.052, 2.048, 2.045, 2.042};
double t975(Index df) {
  if (df <= 30) return kT975[static_cast<size_t>(df - 1)];
  return 1.96 + 2.5 / static_cast<double>(df);  // within 0.002 of the exact quantile
}
}  // namespace

TokenLaw parse_token_law(std::string_view name, std::string_view context) {
  if (name == "gaussian") return TokenLaw::gaussian;
  if (name == "rademacher") return TokenLaw::rademacher;
  throw_invalid(context, "law", fmt::format("\"{}\"", name), "one of gaussian, rademacher");
}

std::string to_string(TokenLaw law) { return law == TokenLaw::gaussian ? "gaussian" : "rademacher"; }

void ConcentrationOptions::validate() const {
  require(dim >= 1, kConcentrationCtx, "dim", dim, ">= 1");
  require(std::isfinite(scale) && scale > 0.0, kConcentrationCtx, "scale", scale, "> 0");
  require(std::isfinite(u_scale) && u_scale >= 0.0, kConcentrationCtx, "u_scale", u_scale, ">= 0");
  require(!lengths.empty(), kConcentrationCtx, "lengths", "[]", "a non-empty list");
  for (const Index l : lengths) require(l >= 1, kConcentrationCtx, "lengths entry", l, ">= 1");
  require(prompts >= 2, kConcentrationCtx, "prompts", prompts, ">= 2");
  require(queries >= 1, kConcentrationCtx, "queries", queries, ">= 1");
}

SlopeFit fit_loglog(const std::vector<double>& x, const std::vector<double>& y) {
  require(x.size() == y.size(), "fit_loglog", "sizes", fmt::format("{} and {}", x.size(), y.size()),
          "equal");
  SlopeFit f;
  f.points = static_cast<Index>(x.size());
  require(f.points >= 3, "fit_loglog", "points", f.points, ">= 3 (a slope and its band)");
  double mx = 0, my = 0;
  for (size_t k = 0; k < x.size(); ++k) {
    require(x[k] > 0 && y[k] > 0, "fit_loglog", "value", fmt::format("({}, {})", x[k], y[k]), "> 0");
    mx += std::log(x[k]);
    my += std::log(y[k]);
  }
  mx /= f.points;
  my /= f.points;
  double sxx = 0, sxy = 0;
  for (size_t k = 0; k < x.size(); ++k) {
    sxx += (std::log(x[k]) - mx) * (std::log(x[k]) - mx);
    sxy += (std::log(x[k]) - mx) * (std::log(y[k]) - my);
  }
  f.slope = sxy / sxx;
  f.intercept = my - f.slope * mx;
  double rss = 0;
  for (size_t k = 0; k < x.size(); ++k) {
    const double r = std::log(y[k]) - f.intercept - f.slope * std::log(x[k]);
    rss += r * r;
  }
  f.standard_error = std::sqrt(rss / static_cast<double>(f.points - 2) / sxx);
  const double t = t975(f.points - 2);
  f.lower = f.slope - t * f.standard_error;
  f.upper = f.slope + t * f.standard_error;
  return f;
}

ConcentrationResult concentration(const ConcentrationOptions& o,
                                  const ConcentrationProgress& progress) {
  o.validate();
  const Index dim = o.dim, nprompts = o.prompts, nlen = static_cast<Index>(o.lengths.size());
  Rng op_rng(o.seed, 1);
  PromptOperator op{Matrix(dim, dim), Matrix(dim, dim)};
  op_rng.fill_normal(op.u);
  op_rng.fill_normal(op.v);
  op.u *= o.u_scale / std::sqrt(static_cast<double>(dim));
  op.v /= std::sqrt(static_cast<double>(dim));
  // Queries, cotangents and infinite-prompt references per prompt (small: prompts x queries).
  std::vector<Matrix> zs(nprompts), gs(nprompts);
  std::vector<PromptOutput> refs(nprompts);
  const Rng qbase(o.seed, 0), tbase(o.seed, 2);
  for (Index r = 0; r < nprompts; ++r) {
    Rng rng = qbase.split(static_cast<std::uint64_t>(r));
    zs[r] = sample_law(o.law, o.queries, dim, o.scale, rng);
    gs[r] = Matrix(o.queries, dim);
    ziggurat_fill(rng, gs[r].data(), gs[r].size());
    refs[r] = infinite_operator(o, op, zs[r], gs[r]);
  }
  ConcentrationResult res;
  for (Index l = 0; l < nlen; ++l) {
    std::array<double, 3> sum{0, 0, 0}, sum_sq{0, 0, 0};
    for (Index r = 0; r < nprompts; ++r) {
      Rng rng = tbase.split(static_cast<std::uint64_t>(l * nprompts + r));
      const Measure tokens(sample_law(o.law, o.lengths[l], dim, o.scale, rng), "prompt");
      const PromptOutput emp = empirical_prompt(op, tokens, zs[r], gs[r]);
      const std::array<double, 3> e = prompt_errors(emp, refs[r], zs[r], gs[r]);
      for (int k = 0; k < 3; ++k) {
        sum[k] += e[k];
        sum_sq[k] += e[k] * e[k];
      }
    }
    std::array<double, 3> mean{}, se{};
    for (int k = 0; k < 3; ++k) {
      mean[k] = sum[k] / nprompts;
      const double var = (sum_sq[k] / nprompts - mean[k] * mean[k]) * nprompts / (nprompts - 1.0);
      se[k] = std::sqrt(std::max(var, 0.0) / nprompts);
    }
    res.rows.push_back({o.lengths[l], mean[0], mean[1], mean[2], se[0], se[1], se[2]});
    if (progress) progress(res.rows.back(), l + 1, nlen);
  }
  if (nlen >= 3) {
    std::vector<double> x, y0, y1, y2;
    for (const auto& row : res.rows) {
      x.push_back(static_cast<double>(row.length));
      y0.push_back(row.output_error);
      y1.push_back(row.grad_u_error);
      y2.push_back(row.grad_v_error);
    }
    res.output = fit_loglog(x, y0);
    res.grad_u = fit_loglog(x, y1);
    res.grad_v = fit_loglog(x, y2);
  }
  return res;
}

}  // namespace attnflow
