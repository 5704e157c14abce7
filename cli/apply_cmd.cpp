// attnflow apply --model M --x X.npy [--w W.npy] --out DIR: the push-forward G(mu, .)#mu of a
// measure by a saved model, coincident atoms merged. Writes DIR/x.npy, DIR/w.npy and
// DIR/summary.json ("kind": "apply"); optional in-context evaluation at --queries Z.npy.
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/run/fit_run.hpp"
#include "attnflow/run/job.hpp"
#include "attnflow/io/npy.hpp"
#include "commands.hpp"

namespace attnflow::cli {

namespace {

struct ApplyArgs {
  std::string model, x, w, queries, out;
  double merge_tol = 0.0;
};

void run_apply(const ApplyArgs& a) {
  Job job({.kind = "apply", .out_dir = a.out, .version = ATTNFLOW_VERSION, .resumable = false, .resume = false,
           .outputs = {"x.npy", "w.npy", "queries_out.npy"}, .noun = "run", .marker = ""});
  const Model model = load_model(a.model);
  const Matrix x = load_matrix(a.x, "--x");
  const Vector w = a.w.empty() ? Vector() : load_vector(a.w, "--w");
  const Measure mu(x, w, "input measure (--x, --w)");
  const Measure out = push_forward(model, mu, a.merge_tol);
  Matrix zq;
  if (!a.queries.empty()) zq = evaluate(model, mu, load_matrix(a.queries, "--queries"));
  job.start();
  write_npy(job.path("x.npy"), out.points());
  write_npy(job.path("w.npy"), out.weights());
  if (!a.queries.empty()) write_npy(job.path("queries_out.npy"), zq);
  nlohmann::json j = job.summary("finished");
  j.update({{"model", a.model}, {"atoms_in", mu.size()}, {"atoms_out", out.size()}, {"merge_tol", a.merge_tol},
            {"dim", mu.dim()}});
  job.write_summary(j);
  job.commit();
  fmt::print("wrote {} (x.npy {} x {}, w.npy; {} atoms in, {} after merging)\n", a.out, out.size(),
             out.dim(), mu.size(), out.size());
}

void add_apply(CLI::App& app) {
  auto a = std::make_shared<ApplyArgs>();
  CLI::App* sub = app.add_subcommand(
      "apply", "Push a weighted point cloud through a saved model: mu -> G(mu, .)#mu, coincident atoms merged");
  sub->add_option("--model", a->model, "Model file (model.afm written by attnflow fit)")
      ->required()->check(CLI::ExistingFile);
  sub->add_option("--x", a->x, "Points X (n, d) .npy")->required()->check(CLI::ExistingFile);
  sub->add_option("--w", a->w, "Weights (n) .npy (default uniform)")->check(CLI::ExistingFile);
  sub->add_option("--queries", a->queries, "Also evaluate G(mu, z) at these points (m, d) .npy -> queries_out.npy")
      ->check(CLI::ExistingFile);
  sub->add_option("--merge-tol", a->merge_tol, "Merge output atoms closer than this in every coordinate (0 = exact)")
      ->capture_default_str();
  sub->add_option("--out", a->out, "Output directory (x.npy, w.npy, summary.json)")->required();
  add_threads_option(*sub);
  sub->callback([a] { run_apply(*a); });
}

const Registrar apply_cmd_registrar{"apply", 81, add_apply};

}  // namespace

}  // namespace attnflow::cli
