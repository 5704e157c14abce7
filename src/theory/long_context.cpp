// Long-context one-layer map at beta = gamma log n (docs/math.md section 6): formula, limits, and
// the direct kernel computation it is tested against.
#include "attnflow/theory/long_context.hpp"

#include <cmath>

#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel.hpp"

namespace attnflow {

namespace {
constexpr const char* kLongContextCtx = "theory long-context";

void check_rho_gamma(double rho, double gamma) {
  require(std::isfinite(rho) && rho >= 0.0 && rho < 1.0, kLongContextCtx, "rho", rho, "in [0, 1)");
  require(std::isfinite(gamma) && gamma >= 0.0, kLongContextCtx, "gamma", gamma, ">= 0 and finite");
}
}  // namespace

double long_context_gamma_c(double rho) {
  require(std::isfinite(rho) && rho >= 0.0 && rho < 1.0, kLongContextCtx, "rho", rho, "in [0, 1)");
  return 1.0 / (1.0 - rho);
}

double long_context_cosine(double n, double rho, double gamma) {
  require(std::isfinite(n) && n >= 2.0, kLongContextCtx, "n", n, ">= 2");
  check_rho_gamma(rho, gamma);
  // a = 1 / (1 + (n-1) q), b = q a with q = e^{-beta (1 - rho)} = n^{-gamma (1 - rho)}.
  const double q = std::exp(-gamma * (1.0 - rho) * std::log(n));
  const double a = 1.0 / (1.0 + (n - 1.0) * q), b = q * a;
  const double num = (1.0 - rho) * (2.0 * a * b + (n - 2.0) * b * b) + rho;
  const double den = (1.0 - rho) * (a * a + (n - 1.0) * b * b) + rho;
  return num / den;
}

double long_context_limit(double rho, double gamma) {
  const double gc = long_context_gamma_c(rho);
  check_rho_gamma(rho, gamma);
  if (std::abs(gamma - gc) <= kLongContextCriticalRtol * gc) return 4.0 * rho / (1.0 + 3.0 * rho);
  return gamma < gc ? 1.0 : rho;
}

std::string long_context_regime(double rho, double gamma) {
  const double gc = long_context_gamma_c(rho);
  check_rho_gamma(rho, gamma);
  if (std::abs(gamma - gc) <= kLongContextCriticalRtol * gc) return "critical";
  return gamma < gc ? "collapse" : "preserved";
}

double long_context_direct(Index n, double rho, double gamma) {
  require(n >= 2, kLongContextCtx, "n", n, ">= 2");
  check_rho_gamma(rho, gamma);
  const double beta = gamma * std::log(static_cast<double>(n));
  const double p = std::sqrt(1.0 - rho), c = std::sqrt(rho);
  // Keys in the coordinates (e_0, e_1, e_n), (n, 3) row-major: exact for queries x_0, x_1.
  Matrix keys = Matrix::Zero(n, 3);
  keys.col(2).setConstant(c);
  keys(0, 0) = p;
  keys(1, 1) = p;
  // Queries (5, 3), scaled by beta: x_0, x_1, 2 x_0, 2 x_1, x_0 + x_1, with x_0 = (p, 0, c),
  // x_1 = (0, p, c) (written out: fixed-size Eigen rows trip GCC's AVX-512 bounds warning).
  Matrix u(5, 3);
  u << p, 0.0, c,  //
      0.0, p, c,   //
      2.0 * p, 0.0, 2.0 * c, 0.0, 2.0 * p, 2.0 * c, p, p, 2.0 * c;
  u *= beta;
  Vector lse(5);
  ReduceInput in;
  in.u = u.data();
  in.v = keys.data();
  in.n = 5;
  in.m = n;
  in.k = 3;
  lse_reduce(in, ReduceOutput{lse.data(), nullptr});
  const double p01 = std::exp(lse[4] - lse[0] - lse[1]);  // sum_j P_0j P_1j
  const double p00 = std::exp(lse[2] - 2.0 * lse[0]);     // sum_j P_0j^2
  const double p11 = std::exp(lse[3] - 2.0 * lse[1]);     // sum_j P_1j^2
  const double dot = (1.0 - rho) * p01 + rho;
  const double cosine = dot / std::sqrt(((1.0 - rho) * p00 + rho) * ((1.0 - rho) * p11 + rho));
  check_output_finite(kLongContextCtx, "cosine", &cosine, 1, 1, "the kernel returned a non-finite lse");
  return cosine;
}

LongContextResult long_context(double n, double rho, double gamma, bool direct) {
  LongContextResult r;
  r.n = n;
  r.rho = rho;
  r.gamma = gamma;
  r.cosine = long_context_cosine(n, rho, gamma);
  r.beta = gamma * std::log(n);
  r.gamma_c = long_context_gamma_c(rho);
  r.limit = long_context_limit(rho, gamma);
  r.regime = long_context_regime(rho, gamma);
  if (direct) {
    require(n == std::floor(n) && n <= kLongContextDirectMaxN, kLongContextCtx, "n", n,
            "an integer <= 1e8 with direct (O(n) memory)");
    r.has_direct = true;
    r.cosine_direct = long_context_direct(static_cast<Index>(n), rho, gamma);
  }
  return r;
}

}  // namespace attnflow
