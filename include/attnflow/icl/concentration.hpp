// Concentration of the large-prompt operator in the prompt length L (docs/math.md section 7):
//   output_error(L) = E |T[mu_L](z) - T[mu](z)|^2, and the same for the per-query gradients
// in U and V, over many prompts and queries, for Gaussian or Rademacher tokens; plus the
// least-squares log-log slope of each curve with its 95% confidence band.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "attnflow/base/types.hpp"

namespace attnflow {

enum class TokenLaw { gaussian, rademacher };
TokenLaw parse_token_law(std::string_view name, std::string_view context = "concentration");
std::string to_string(TokenLaw law);

struct ConcentrationOptions {
  TokenLaw law = TokenLaw::gaussian;
  Index dim = 3;              // token dimension D
  double scale = 1.0;         // tokens N(0, scale^2 I) or +-scale coordinates
  double u_scale = 1.0;       // U = u_scale G / sqrt(D), G standard normal (seeded)
  std::vector<Index> lengths{8, 32, 128, 512, 2048, 8192, 32768, 100000};
  Index prompts = 32;         // independent prompts per length
  Index queries = 32;         // queries z ~ token law, shared by every length of a prompt
  std::uint64_t seed = 0;
  void validate() const;      // "concentration: prompts = 1, must be >= 2"
};

// One row of the table: means over prompts x queries and their standard errors (over the
// prompts, each prompt's query-average being one independent sample).
struct ConcentrationRow {
  Index length = 0;
  double output_error = 0.0, grad_u_error = 0.0, grad_v_error = 0.0;
  double output_se = 0.0, grad_u_se = 0.0, grad_v_se = 0.0;
};

// Least squares log(y) = intercept + slope log(x); band = slope -+ t_{0.975, n-2} stderr.
struct SlopeFit {
  double slope = 0.0, intercept = 0.0, standard_error = 0.0, lower = 0.0, upper = 0.0;
  Index points = 0;
};
SlopeFit fit_loglog(const std::vector<double>& x, const std::vector<double>& y);

struct ConcentrationResult {
  std::vector<ConcentrationRow> rows;
  SlopeFit output, grad_u, grad_v;
};

using ConcentrationProgress = std::function<void(const ConcentrationRow&, Index done, Index total)>;
ConcentrationResult concentration(const ConcentrationOptions& options,
                                  const ConcentrationProgress& progress = {});

}  // namespace attnflow
