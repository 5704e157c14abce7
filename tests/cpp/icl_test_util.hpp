// Shared helpers of the icl module's tests.
#pragma once

#include "attnflow/icl/icl.hpp"

namespace attnflow::test {

// The data model of the published in-context regression experiments: x ~ N(0, Sigma) with the
// Toeplitz covariance Sigma_ij = 0.5^|i - j|, noise 0.1.
inline IclData published_data(Index d) {
  IclData data;
  data.cov = toeplitz_covariance(d, 0.5);
  data.noise = 0.1;
  return data;
}

}  // namespace attnflow::test
