// A transformer as a map between measures (docs/math.md section 4): a stack of layers composed by
// the in-context rule (G2 o G1)(mu, x) = G2(G1(mu, .)#mu, G1(mu, x)), evaluated at arbitrary
// query points, and the measure-to-measure map mu -> G(mu, .)#mu (atoms move, keep their
// weights, and coincident atoms merge: the support never grows, a Dirac stays a Dirac).
#pragma once

#include <string>
#include <vector>

#include "attnflow/model/layers.hpp"
#include "attnflow/measure/measure.hpp"
#include "attnflow/base/rng.hpp"

namespace attnflow {

struct Model {
  Index dim = 0;  // d: points of every layer live in R^d
  std::vector<Layer> layers;

  // Throws std::invalid_argument naming the first bad layer and field.
  void validate() const;
  Index parameter_count() const;
};

// How random_model builds a stack: `depth` blocks, each an attention layer followed by an MLP
// layer when mlp_hidden > 0.
struct ModelSpec {
  Index dim = 2;
  Index depth = 2;
  Index heads = 2;
  Index head_dim = 0;    // dk = dv; 0 means dim
  Index mlp_hidden = 0;  // 0: no MLP layers
  Normalization normalization = Normalization::softmax;
  double beta = 1.0;
  double step = 1.0;     // residual step of attention layers (<= 0 means 1/depth)
  SinkhornNormalizationOptions sinkhorn{.iterations = 3};  // tol, max_iterations: sinkhorn.hpp
  double init_scale = 0.5;  // std of weights is init_scale / sqrt(fan_in)

  void validate() const;
};

// Gaussian initialization from `rng` (fixed draw order: layer by layer, parameter blocks in
// for_each_parameter order, row-major), so a seed gives the same model everywhere.
Model random_model(const ModelSpec& spec, Rng& rng);

// In-context evaluation G(mu, z) at queries (nq, d): the queries follow the stack while the
// context measure is pushed forward layer by layer. `stats`, when given, receives the status
// of every Sinkhorn normalization run (a layer that misses its tolerance is counted there).
Matrix evaluate(const Model& model, const Measure& mu, const Matrix& queries,
                SinkhornStats* stats = nullptr);

// G(mu, x_i) for every atom of mu (n, d), without merging: row i is where atom i lands.
Matrix transport(const Model& model, const Measure& mu, SinkhornStats* stats = nullptr);

// Merges atoms whose coordinates differ by at most `tol` in every coordinate (tol = 0: exactly
// equal), summing their weights; a merged atom sits at its first member (in row order of x).
// Groups are formed greedily in lexicographic order, so the result never has more atoms.
Measure merge_atoms(const Matrix& x, const Vector& w, double tol = 0.0);

// The push-forward G(mu, .)#mu with coincident atoms merged. The input is merged first
// (exactly: coincident atoms are one atom of mu), so the support never grows.
Measure push_forward(const Model& model, const Measure& mu, double merge_tol = 0.0,
                     SinkhornStats* stats = nullptr);

// Batches of measures of different sizes (each evaluated independently, in parallel over the
// batch; results do not depend on the thread count).
std::vector<Measure> push_forward_batch(const Model& model, const std::vector<Measure>& mus,
                                        double merge_tol = 0.0);
std::vector<Matrix> evaluate_batch(const Model& model, const std::vector<Measure>& mus,
                                   const std::vector<Matrix>& queries);

// Model file format, version 1 (all integers and floats little-endian; doubles are IEEE-754
// binary64 copied bit for bit, so a save/load round trip is exact):
//   magic    8 bytes  "ATFMODEL"
//   version  u32      1
//   dim      u32      d
//   layers   u32      L
//   per layer: u32 kind (1 = attention, 2 = mlp), then
//     attention: u32 normalization (0 softmax, 1 sinkhorn, 2 none), f64 beta, f64 step,
//                i32 sinkhorn.iterations, f64 sinkhorn.tol, i32 sinkhorn.max_iterations,
//                u32 heads H, u32 dk, u32 dv, then f64 arrays q[0..H) (dk x d), k[0..H)
//                (dk x d), v[0..H) (dv x d), w[0..H) (d x dv), each row-major
//     mlp:       u32 hidden h, then f64 arrays w1 (h x d), b1 (h), w2 (d x h), b2 (d)
//   checksum u64      FNV-1a 64 of every preceding byte (offset basis 14695981039346656037,
//                     prime 1099511628211); files written by attnflow <= 0.1.0 before the
//                     fix used the basis 1469598103934665603 and are still read
// A layer's dimensions are bounded by the bytes left in the file before anything is
// allocated (a corrupt or hostile header cannot request a huge allocation).
// Anything else (bad magic, other version, truncation, trailing bytes, checksum mismatch,
// invalid layers) is rejected with a std::invalid_argument naming `name` and the problem.
constexpr unsigned kModelFormatVersion = 1;
std::string model_to_bytes(const Model& model);
Model model_from_bytes(const std::string& bytes, const std::string& name = "model file");

}  // namespace attnflow
