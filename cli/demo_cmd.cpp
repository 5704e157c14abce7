// attnflow demo: the main job on its built-in default. For now a small attention example:
// softmax vs unnormalized attention of 8 points on the circle, printed.
#include <fmt/format.h>

#include "attnflow/attention.hpp"
#include "attnflow/rng.hpp"
#include "attnflow/sample.hpp"
#include <memory>

#include "commands.hpp"

namespace attnflow::cli {

namespace {
void run_demo(const std::string& out_dir) {
  Rng rng(2026);
  const Measure mu(sample_sphere(8, 2, rng), "demo tokens");
  fmt::print("attnflow demo: 8 tokens uniform on the circle (seed 2026), self-attention\n");
  for (double beta : {1.0, 10.0, 100.0}) {
    AttentionOptions opt;
    opt.beta = beta;
    const AttentionResult r = self_attention(mu, opt);
    fmt::print("beta = {:5g}: |out_0| = {:.6f}, lse_0 = {:.6f}\n", beta, r.out.row(0).norm(),
               r.lse[0][0]);
  }
  (void)out_dir;  // the dynamics issue makes demo write its output directory
}
}  // namespace

namespace {
void add_demo(CLI::App& app) {
  CLI::App* sub = app.add_subcommand("demo", "Run the main job on its built-in default");
  auto out = std::make_shared<std::string>("attnflow-demo");
  sub->add_option("--out", *out, "Output directory")->capture_default_str();
  add_threads_option(*sub);
  sub->callback([out] { run_demo(*out); });
}

const Registrar registrar{"demo", 1, add_demo};
}  // namespace

}  // namespace attnflow::cli
