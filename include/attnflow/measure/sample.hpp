// Seeded samplers for initial measures: uniform on the sphere S^{d-1}, Gaussian N(mean, I),
// and the exactly equiangular configuration of docs/math.md section 6,
// x_i = sqrt(1 - rho0) e_i + sqrt(rho0) e_{n+1} (needs d >= n + 1), whose pairwise inner
// products all equal rho0.
#pragma once

#include "attnflow/base/rng.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow {

// n points uniform on the unit sphere in R^d (normalized Gaussians), d >= 1.
Matrix sample_sphere(Index n, Index d, Rng& rng);
// n points from N(0, sigma^2 I_d).
Matrix sample_gaussian(Index n, Index d, Rng& rng, double sigma = 1.0);
// The exactly equiangular configuration with cosine rho0 in [0, 1), d >= n + 1.
Matrix equiangular(Index n, Index d, double rho0);

}  // namespace attnflow
