// The equiangular reduction of SA/USA token dynamics (docs/math.md section 6): if all pairwise
// cosines of n tokens equal rho they stay equal, and
//   drho/dt = 2 b (1 - rho) ((n - 1) rho + 1) / factor,  b = e^{beta rho}/Z (SA), e^{beta rho}/n (USA),
// with factor the direction speed divisor of the normalization scheme (docs/math.md section 5.4).
#pragma once

#include <string>
#include <string_view>

#include "attnflow/flow/scheme.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

// Which attention field drives the tokens: softmax-normalized (SA) or unnormalized (USA).
enum class TheoryModel { sa, usa };
TheoryModel parse_theory_model(std::string_view name, std::string_view context = "theory");
std::string to_string(TheoryModel m);

// The normalization scheme (Scheme, scheme.hpp: the flows' enum, parsed by parse_scheme) of
// docs/math.md section 5 (x_i = r_i theta_i, A_i the attention average of the thetas): the
// direction speed P_theta A is divided by
//   post-LN 1 | pre-LN r | mix-LN 1 then r after tau | peri-LN r |A| | nGPT |A| / alpha |
//   sqrt-scaling sqrt(t + 1),
// and the radius moves by <theta, A> (pre, mix after tau) or <theta, A> / |A| (peri).
// Scheme::none (the flow on points) has no equiangular reduction and is refused by validate().

struct EquiangularOptions {
  TheoryModel model = TheoryModel::sa;
  Scheme scheme = Scheme::post_ln;  // not none
  Index n = 32;         // number of tokens, >= 2
  double beta = 1.0;    // inverse temperature, > 0
  double rho0 = 0.0;    // initial cosine, in [-1/(n-1), 1]
  double r0 = 1.0;      // initial radius (pre-LN, mix-LN, peri-LN), > 0
  double tau = 1.0;     // mix-LN: post-LN on [0, tau), pre-LN after, >= 0
  double alpha = 1.0;   // nGPT step scale alpha_t (constant), > 0
  double rtol = 1e-12;  // dopri5 relative tolerance on (1 - rho, r)
  // Absolute tolerance: tiny because 1 - rho itself is integrated and decays to 1e-15 and
  // below, where only relative control keeps its digits.
  double atol = 1e-30;
  // Throws "theory equiangular: n = 1, must be >= 2" and the like.
  void validate() const;
};

// The equiangular state at times t: rho(t), u = 1 - rho (integrated directly so that its
// digits survive when rho rounds to 1) and the common radius r(t) (1 for radius-free schemes).
struct EquiangularSolution {
  Vector t, rho, one_minus_rho, r;
  long steps = 0, rejected = 0, evaluations = 0;  // dopri5 work
};

// Solves the ODE with adaptive Dormand-Prince (integrate.hpp) from t = 0 through the
// non-decreasing output times `times` (times[0] >= 0; t = 0 returns the initial state).
EquiangularSolution solve_equiangular(const EquiangularOptions& options, const Vector& times);

// The right-hand side: (du/dt, dr/dt) at (t, u = 1 - rho, r).
struct EquiangularRates {
  double du, dr;
};
EquiangularRates equiangular_rates(const EquiangularOptions& options, double t, double u,
                                   double r);

// How u = 1 - rho decays near rho = 1 (the linearization), as log u ~ c - rate * g:
//   exponential: g = t          (post-LN: rate 2 (SA), 2 e^beta (USA); nGPT: 2 alpha)
//   power      : g = log r      (pre-LN, mix-LN after tau, peri-LN: rate 2; r grows like t,
//                                so u ~ t^{-2})
//   stretched  : g = sqrt(t+1)  (sqrt-scaling: rate 2 lambda, lambda = 2 (SA), 2 e^beta (USA))
enum class DecayKind { exponential, power, stretched };
std::string to_string(DecayKind k);
struct DecayLaw {
  DecayKind kind = DecayKind::exponential;
  double rate = 0.0;
  std::string formula;  // human-readable, e.g. "1 - rho ~ C exp(-2 t)"
};
DecayLaw linearized_law(const EquiangularOptions& options);
// g(t, r) of the law, so that -d log u / d g -> rate.
double decay_variable(DecayKind kind, double t, double r);

}  // namespace attnflow
