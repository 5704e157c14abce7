#include "run_model.hpp"

namespace attnflow::detail {

FlowOptions flow_options(const RunConfig& cfg, Index system) {
  FlowOptions o;
  o.kind = parse_field_kind(cfg.kind, "run: model.kind");
  o.beta = cfg.beta;
  o.heads = make_heads(static_cast<int>(cfg.heads), cfg.d, cfg.qkv, cfg.qkv_seed);
  o.sphere = cfg.sphere;
  o.kappa = cfg.kappa;
  o.noise_seed = cfg.seed;
  o.noise_stream = kNoiseStreamOffset + static_cast<std::uint64_t>(system);
  o.scheme.scheme = parse_scheme(cfg.scheme, "run: model.scheme");
  o.scheme.tau = cfg.tau;
  o.scheme.alpha = cfg.alpha;
  o.sinkhorn.iterations = cfg.sinkhorn_iterations;
  o.sinkhorn.tol = cfg.sinkhorn_tol;
  o.sinkhorn.max_iterations = cfg.sinkhorn_max_iterations;
  o.kuramoto_normalization = cfg.kuramoto_form == "usa" ? Normalization::none : Normalization::softmax;
  o.usa_log_shift = cfg.usa_log_shift;
  o.vlasov.interaction = parse_interaction(cfg.interaction, "run: model.interaction");
  o.vlasov.sigma = cfg.sigma;
  o.vlasov.a = cfg.a;
  o.vlasov.b = cfg.b;
  return o;
}

ObserveOptions observe_options(const RunConfig& cfg) {
  ObserveOptions o;
  o.beta = cfg.beta;
  o.delta = cfg.delta;
  o.pair_limit = cfg.pair_limit;
  o.sphere = cfg.sphere;
  return o;
}

}  // namespace attnflow::detail
