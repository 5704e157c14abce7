// attnflow demo: the main job on its built-in default. 256 tokens uniform on S^2 follow the
// self-attention flow (SA, Q = K = V = I) at a beta where several metastable clusters form
// quickly and then merge one by one; prints the cluster count and energy along the way and
// writes the run's output directory (config.toml, observables.csv, snapshots, final.npy,
// summary.json), then the plots when the Python package is importable.
#include <fmt/format.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/io/config.hpp"
#include "attnflow/run/job.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/run/runner.hpp"
#include "commands.hpp"
#include "plot_hook.hpp"
#include "python_module.hpp"

namespace attnflow::cli {

namespace {

// The built-in experiment (a runner config; any key can be changed with --set).
constexpr const char* kDemoConfig = R"(# attnflow demo: metastable clusters on S^2 that form, then merge
[measure]
n = 256
d = 3
init = "uniform_sphere"
seed = 2026

[model]
kind = "sa"
beta = 9.0

[integrate]
method = "euler"
dt = 0.1
t_end = 120.0

[observe]
every = 4.0
delta = 0.01

[output]
snapshots = true
checkpoint_every = 10
)";

struct DemoArgs {
  std::string out = "attnflow-demo";
  std::vector<std::string> sets;
  bool no_plots = false;
};

// Returns the exit status: 0, or 128 + signal when a stop request ended it (nothing written).
int run_demo(const DemoArgs& a) {
  Config cfg = Config::parse(kDemoConfig, "demo");
  for (const auto& s : a.sets) cfg.set(s);
  const RunConfig rc = parse_run_config(cfg);
  // A staged job: the run goes to a staging directory, then replaces only a previous demo's
  // files in --out; any other non-empty directory is refused before anything runs.
  Job job({.kind = "demo", .out_dir = a.out, .version = ATTNFLOW_VERSION, .resumable = false, .resume = false,
           .outputs = {"config.toml", "observables.csv", "snapshots", "final.npy", "checkpoint.bin",
                       "observables.png", "trajectories.png"},
           .noun = "run", .marker = "demo"});
  job.start();
  fmt::print("attnflow demo: {} tokens uniform on S^{} (seed {}), self-attention flow, beta = {:g}, "
             "{} dt = {:g} to t = {:g}\n", rc.n, rc.d - 1, rc.seed, rc.beta,
             to_string(rc.integrator.method), rc.integrator.dt, rc.t_end);
  fmt::print("clusters = connected components of <x_i, x_j> > 1 - {:g}\n", rc.delta);
  fmt::print("{:>8} {:>9} {:>8} {:>14}\n", "t", "clusters", "largest", "energy");
  RunOptions opt;
  opt.out_dir = job.dir();
  opt.version = ATTNFLOW_VERSION;
  opt.progress = nullptr;  // the table below is the progress
  opt.on_observation = [](const std::vector<ObservationRow>& rows) {
    // Columns of observable_names(): 1 energy, 4 clusters, 5 largest_cluster.
    const auto& v = rows[0].values;
    fmt::print("{:8.1f} {:9g} {:8g} {:14.8f}\n", rows[0].t, v[4], v[5], v[1]);
    std::fflush(stdout);
  };
  const RunResult r = run_experiment(rc, cfg.resolved(), opt);
  if (r.interrupted) {  // a stop request: the staged files go with the job
    fmt::print("demo: interrupted; nothing written to {}\n", a.out);
    return 128 + r.signal;
  }
  // Mark the directory as the demo's, so that the next demo may replace it.
  auto j = nlohmann::json::parse(read_file(job.path("summary.json")));
  j["demo"] = true;
  job.write_summary(j);
  job.commit();
  fmt::print("wrote {} in {:.2f} s: config.toml, observables.csv, snapshots/, final.npy, summary.json\n",
             a.out, r.seconds);
  if (!a.no_plots) {
    run_plot_hook(a.out);
    run_view_hook(a.out);  // view.html and movie.mp4 (docs/usage/view.md)
  }
  return 0;
}

void add_demo(CLI::App& app) {
  CLI::App* sub = app.add_subcommand(
      "demo", "Run the main job on its built-in default: 256 tokens on S^2, metastable clusters that "
              "form and merge; prints cluster count and energy, writes the output directory");
  auto a = std::make_shared<DemoArgs>();
  sub->add_option("--out", a->out, "Output directory: new, empty, or a previous demo's (whose files are replaced)")
      ->capture_default_str();
  sub->add_option("--set", a->sets, "Override a key of the built-in config: --set model.beta=4")
      ->allow_extra_args(false);
  sub->add_flag("--no-plots", a->no_plots, "Do not write the plots, view.html and movie.mp4 at the end");
  add_threads_option(*sub);
  sub->callback([a, sub] {
    // 256 tokens are too few for threads to pay: OpenMP's barriers cost more than the work
    // (measured: 9 s of CPU on 2 threads vs 0.1 s on 1 on a loaded machine). --threads wins.
    if (sub->count("--threads") == 0) set_num_threads(1);
    install_stop_handlers();
    if (const int rc = run_demo(*a); rc != 0) {
      std::fflush(stdout);
      std::exit(rc);
    }
  });
}

const Registrar demo_cmd_registrar{"demo", 1, add_demo};

}  // namespace

}  // namespace attnflow::cli
