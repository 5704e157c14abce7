// attnflow theory: the mean-field predictions of docs/math.md section 6 as scriptable commands.
//   theory equiangular   the equiangular ODE (SA/USA, any scheme) -> CSV t, rho, one_minus_rho, r
//   theory long-context  one layer at beta = gamma log n on equiangular tokens -> JSON
//   theory clusters      d = 2 Fourier-mode prediction of the cluster count + energies -> JSON
// Holds no numerics: parses arguments and calls include/attnflow/{equiangular,long_context,
// cluster_theory}.hpp.
#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "attnflow/theory/cluster_theory.hpp"
#include "attnflow/io/csv.hpp"
#include "attnflow/theory/equiangular.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/run/job.hpp"
#include "attnflow/theory/long_context.hpp"
#include "attnflow/run/reports.hpp"
#include "attnflow/base/limits.hpp"
#include "commands.hpp"

namespace attnflow::cli {

namespace {

struct EquiangularArgs {
  // Every default from the library's EquiangularOptions (model, scheme, n, beta, rho0, r0,
  // tau, alpha, rtol); the strings are parsed into o at run time.
  EquiangularOptions o;
  std::string model = to_string(o.model), scheme = to_string(o.scheme), out;
  double t_end = 10.0;
  long samples = 201;
  bool log_time = false;
};

void run_equiangular(const EquiangularArgs& a) {
  constexpr const char* c = "theory equiangular";
  EquiangularOptions o = a.o;
  o.model = parse_theory_model(a.model, c);
  o.scheme = parse_scheme(a.scheme, c);
  o.validate();
  require(std::isfinite(a.t_end) && a.t_end > 0.0, c, "--t-end", a.t_end, "> 0");
  require(a.samples >= 2 && a.samples <= kMaxObservations, c, "--samples", a.samples,
          fmt::format("in [2, {:g}]", kMaxObservations));
  // Output times: uniform on [0, t_end], or 0 then log-spaced from t_end * 1e-4 (--log-time).
  Vector times(a.samples);
  for (long i = 0; i < a.samples; ++i) {
    const double f = static_cast<double>(i) / static_cast<double>(a.samples - 1);
    times[i] = a.log_time ? (i == 0 ? 0.0 : a.t_end * std::pow(1e-4, 1.0 - f)) : f * a.t_end;
  }
  times[a.samples - 1] = a.t_end;
  const EquiangularSolution s = solve_equiangular(o, times);
  Matrix table(a.samples, 4);
  table.col(0) = s.t;
  table.col(1) = s.rho;
  table.col(2) = s.one_minus_rho;
  table.col(3) = s.r;
  write_csv(a.out, table, {"t", "rho", "one_minus_rho", "r"});
  const DecayLaw law = linearized_law(o);
  fmt::print("wrote {} ({} rows); rho({}) = {:.12g}; near rho = 1: {} ({} steps)\n", a.out,
             a.samples, a.t_end, s.rho[a.samples - 1], law.formula, s.steps);
}

void add_equiangular(CLI::App& theory) {
  auto a = std::make_shared<EquiangularArgs>();
  CLI::App* sub = theory.add_subcommand(
      "equiangular",
      "Solve the equiangular ODE drho/dt = 2 b (1 - rho)((n-1) rho + 1) / factor "
      "(docs/math.md section 6) with dopri5 and write CSV columns t, rho, one_minus_rho, r");
  sub->add_option("--model", a->model, "sa | usa")->capture_default_str();
  sub->add_option("--scheme", a->scheme, "post_ln | pre_ln | mix_ln | peri_ln | ngpt | sqrt (or post-ln, ...)")
      ->capture_default_str();
  sub->add_option("--n", a->o.n, "Number of tokens (>= 2)")->capture_default_str();
  sub->add_option("--beta", a->o.beta, "Inverse temperature (> 0)")->capture_default_str();
  sub->add_option("--rho0", a->o.rho0, "Initial cosine in [-1/(n-1), 1]")->capture_default_str();
  sub->add_option("--t-end", a->t_end, "Final time (> 0)")->capture_default_str();
  sub->add_option("--samples", a->samples, "Number of output times (>= 2)")->capture_default_str();
  sub->add_flag("--log-time", a->log_time, "Log-spaced output times from 1e-4 t_end (plus t = 0)");
  sub->add_option("--r0", a->o.r0, "Initial radius (pre-ln, mix-ln, peri-ln)")->capture_default_str();
  sub->add_option("--tau", a->o.tau, "mix-ln switch time")->capture_default_str();
  sub->add_option("--alpha", a->o.alpha, "nGPT step scale alpha")->capture_default_str();
  sub->add_option("--rtol", a->o.rtol, "dopri5 relative tolerance")->capture_default_str();
  sub->add_option("--out", a->out, "Output CSV file")->required();
  add_threads_option(*sub);
  sub->callback([a] { run_equiangular(*a); });
}

struct LongContextArgs {
  double n = 1000, rho = 0.5, gamma = 1.0;
  bool direct = false;
};

void run_long_context(const LongContextArgs& a) {
  const LongContextResult r = long_context(a.n, a.rho, a.gamma, a.direct);
  fmt::print("{}\n", long_context_report_json(r, ATTNFLOW_VERSION).dump(2));
}

void add_long_context(CLI::App& theory) {
  auto a = std::make_shared<LongContextArgs>();
  CLI::App* sub = theory.add_subcommand(
      "long-context",
      "One softmax attention layer at beta = gamma log n on n equiangular tokens of cosine rho: "
      "output cosine (finite-n formula), gamma_c = 1/(1 - rho) and the n -> inf limit, as JSON");
  sub->add_option("--n", a->n, "Number of tokens (>= 2; may be huge for the formula)")->capture_default_str();
  sub->add_option("--rho", a->rho, "Input cosine in [0, 1)")->capture_default_str();
  sub->add_option("--gamma", a->gamma, "beta = gamma log n (>= 0)")->capture_default_str();
  sub->add_flag("--direct", a->direct,
                "Also compute the layer directly through the kernel (cosine_direct; n <= 1e8)");
  add_threads_option(*sub);
  sub->callback([a] { run_long_context(*a); });
}

struct ClustersArgs {
  long d = 2;
  double beta = 1.0;
  int k_max = 0;
};

void run_clusters(const ClustersArgs& a) {
  require(a.d == 2, "theory clusters", "--d", a.d, "2 (the Fourier-mode prediction is for the circle)");
  fmt::print("{}\n", clusters_report_json(clusters_report(a.beta, a.k_max), ATTNFLOW_VERSION).dump(2));
}

void add_clusters(CLI::App& theory) {
  auto a = std::make_shared<ClustersArgs>();
  CLI::App* sub = theory.add_subcommand(
      "clusters",
      "d = 2: growth rates k^2 I_k(beta)/beta (USA; / I_0 for SA) of Fourier mode k around the "
      "uniform measure, the predicted number of clusters argmax_k, and the log-energy of k "
      "equally spaced clusters, as JSON");
  sub->add_option("--d", a->d, "Dimension (only 2)")->capture_default_str();
  sub->add_option("--beta", a->beta, "Inverse temperature (> 0)")->capture_default_str();
  sub->add_option("--k-max", a->k_max, "Largest mode listed (0: automatic)")->capture_default_str();
  add_threads_option(*sub);
  sub->callback([a] { run_clusters(*a); });
}

void add_theory(CLI::App& app) {
  CLI::App* theory = app.add_subcommand(
      "theory", "Mean-field predictions (docs/math.md section 6): equiangular ODEs, "
                "long-context map, cluster count on the circle");
  theory->require_subcommand(1);
  add_equiangular(*theory);
  add_long_context(*theory);
  add_clusters(*theory);
}

const Registrar theory_cmd_registrar{"theory", 60, add_theory};

}  // namespace

}  // namespace attnflow::cli
