#include <cmath>

#include "attnflow/base/error.hpp"
#include "attnflow/measure/measure.hpp"
#include "attnflow/attention/normalization.hpp"

namespace attnflow {

Normalization parse_normalization(std::string_view name, std::string_view context) {
  if (name == "softmax") return Normalization::softmax;
  if (name == "sinkhorn") return Normalization::sinkhorn;
  if (name == "none") return Normalization::none;
  throw_invalid(context, "normalization", fmt::format("\"{}\"", name),
                "one of softmax, sinkhorn, none");
}

std::string to_string(Normalization n) {
  switch (n) {
    case Normalization::softmax: return "softmax";
    case Normalization::sinkhorn: return "sinkhorn";
    case Normalization::none: return "none";
  }
  return "?";
}

Vector normalization_offsets(Normalization normalization, const MatrixRef& u, const MatrixRef& v,
                             const Vector& a, const Vector& b,
                             const SinkhornNormalizationOptions& options,
                             NormalizationStatus& status, const Collective* comm, const SplitRows* split) {
  status = NormalizationStatus{};
  const Vector logb = log_weights(b);
  if (normalization != Normalization::sinkhorn) return logb;
  // Sinkhorn on the affinity s_ij = <u_i, v_j> (docs/math.md section 1), columns measured:
  // iteration 1 from g = 0 is softmax (docs/math.md section 1.5, fact 1), each later one a g- then
  // an f-update.
  const Vector loga = log_weights(a);
  SinkhornLoop loop;
  loop.measure = SinkhornLoop::Measure::columns;
  loop.context = "sinkhorn normalization";
  const SinkhornRun run =
      sinkhorn_loop(split ? affinity_half_steps(u, v, loga, logb, *split) : affinity_half_steps(u, v, loga, logb, comm),
                    a, b, options, loop);
  status = run.status;
  return logb + run.g;
}

}  // namespace attnflow
