// The single-precision batch kernels (the ensemble's float32 path) against independent double
// references: the float exponential against std::exp, the attention average and lse against
// the dense formula in double, the pair observables against the double kernel on the same
// (float) points. Float rounding is about 6e-8 relative per operation; the tolerances below
// are that times the condition of each quantity (stated at each check).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "attnflow/kernel/batch_kernel.hpp"
#include "attnflow/kernel/kernel.hpp"
#include "attnflow/measure/sample.hpp"

namespace attnflow {
namespace {
namespace float_kernel_test {

constexpr double kFloatEps = std::numeric_limits<float>::epsilon();  // 1.19e-7

TEST(KernelExpFloat, MatchesStdExpToTwoUlp) {
  std::vector<float> x;
  for (double v = -87.0; v <= 88.7; v += 0.00731) x.push_back(static_cast<float>(v));
  for (double v = -1.0; v <= 1.0; v += 1e-4) x.push_back(static_cast<float>(v));
  x.push_back(-0.34657359f);  // -ln2/2, the reduction boundary
  std::vector<float> y = x;
  exp_inplace(y.data(), static_cast<Index>(y.size()));
  double worst = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(static_cast<double>(x[i]));
    worst = std::max(worst, std::abs(static_cast<double>(y[i]) - ref) / ref);
  }
  EXPECT_LE(worst, 2 * kFloatEps);  // 2 ulp of float (measured about 1)
  EXPECT_GT(worst, 0.0);            // float, not double, arithmetic
}

TEST(KernelExpFloat, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  // 19 entries: a whole vector and a tail (the tail takes the same vector code).
  std::vector<float> x = {-inf, -1e30f, -100.0f, -87.5f, 0.0f, nan, 89.0f, inf, -1.0f, 1.0f,
                          -inf, nan, -87.5f, 0.0f, -1.0f, 2.0f, -inf, nan, 0.0f};
  std::vector<float> y = x;
  exp_inplace(y.data(), static_cast<Index>(y.size()));
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(y[i])) << i;
    } else if (x[i] < -87.0f) {
      EXPECT_EQ(y[i], 0.0f) << i;  // exactly 0 below the normal range
    } else if (x[i] > 88.8f) {
      EXPECT_EQ(y[i], inf) << i;
    } else {
      EXPECT_NEAR(y[i], std::exp(static_cast<double>(x[i])), 2 * kFloatEps * std::exp(static_cast<double>(x[i]))) << i;
    }
  }
}

// W = batch_lanes<float>() systems of n points on the unit sphere in R^d, as floats (lanes
// layout) and as the same values in double; betas 0.3 .. 9.3 (the phase diagram's range).
struct FloatLanes {
  Index n, d, w;
  std::vector<Matrix> xs;  // per lane, the float values in double
  std::vector<float> x, log_w, beta, wt;
  std::vector<double> xd, log_wd, betad, wtd;
};
FloatLanes float_lanes(Index n, Index d) {
  FloatLanes f{n, d, batch_lanes<float>(), {}, {}, {}, {}, {}, {}, {}, {}, {}};
  const Index w = f.w;
  f.x.resize(static_cast<std::size_t>(n * d * w));
  f.log_w.resize(static_cast<std::size_t>(n * w));
  f.wt.resize(static_cast<std::size_t>(n * w));
  f.beta.resize(static_cast<std::size_t>(w));
  for (Index l = 0; l < w; ++l) {
    Rng rng(11, static_cast<std::uint64_t>(l));
    Matrix x = sample_sphere(n, d, rng);
    x = x.cast<float>().cast<double>();
    f.xs.push_back(x);
    f.beta[static_cast<std::size_t>(l)] = static_cast<float>(0.3 + 9.0 * static_cast<double>(l) / static_cast<double>(w - 1));
    for (Index i = 0; i < n; ++i) {
      for (Index k = 0; k < d; ++k) f.x[static_cast<std::size_t>(batch_entry(i, k, n, d) * w + l)] = static_cast<float>(x(i, k));
      const double wi = i == 2 ? 0.0 : (1.0 + static_cast<double>(i % 3)) / (2.0 * static_cast<double>(n));
      f.wt[static_cast<std::size_t>(i * w + l)] = static_cast<float>(wi);
      f.log_w[static_cast<std::size_t>(i * w + l)] = static_cast<float>(std::log(wi));
    }
  }
  f.xd.assign(f.x.begin(), f.x.end());
  f.log_wd.assign(f.log_w.begin(), f.log_w.end());
  f.betad.assign(f.beta.begin(), f.beta.end());
  f.wtd.assign(f.wt.begin(), f.wt.end());
  return f;
}

// The average a_i = sum_j softmax_j(beta <x_i, x_j> + log w_j) x_j and lse_i in float against
// the dense double formula at the same points: d = 3 (one pass over the pairs), 13 and 32
// (two passes; coordinate blocks of 8). The exponent beta <x_i, x_j> carries float's rounding
// of the inner product (|<x_i, x_j>| <= 1) times beta <= 9.3: about 1e-6, so 1e-5 relative.
TEST(KernelBatchFloat, AttentionAverageMatchesDenseDouble) {
  for (const Index d : {3, 13, 32}) {
    const Index n = 9;
    FloatLanes f = float_lanes(n, d);
    std::vector<float> a(f.x.size()), lse(static_cast<std::size_t>(n * f.w));
    batch_attention_average({f.x.data(), f.log_w.data(), f.beta.data(), nullptr, n, d}, a.data(), lse.data());
    double worst = 0.0;
    for (Index l = 0; l < f.w; ++l) {
      const Matrix& x = f.xs[static_cast<std::size_t>(l)];
      const double b = f.betad[static_cast<std::size_t>(l)];
      for (Index i = 0; i < n; ++i) {
        double z = 0;
        Eigen::RowVectorXd s = Eigen::RowVectorXd::Zero(d);
        for (Index j = 0; j < n; ++j) {
          const double e = f.wtd[static_cast<std::size_t>(j * f.w + l)] * std::exp(b * x.row(i).dot(x.row(j)));
          z += e;
          s += e * x.row(j);
        }
        s /= z;
        EXPECT_NEAR(lse[static_cast<std::size_t>(i * f.w + l)], std::log(z), 1e-5 * std::max(1.0, std::abs(std::log(z))));
        for (Index k = 0; k < d; ++k) {
          const double got = a[static_cast<std::size_t>(batch_entry(i, k, n, d) * f.w + l)];
          worst = std::max(worst, std::abs(got - s[k]));
          EXPECT_NEAR(got, s[k], 1e-5) << "d " << d << " lane " << l << " " << i << " " << k;  // |a| <= 1
        }
      }
    }
    EXPECT_GT(worst, 1e-12) << "float arithmetic";
  }
}

// The fused observables in float against the double kernel at the same points: energy (a sum
// of n^2 positive terms: 1e-5 relative), cosines and order (1e-6), the same clustered pairs
// (d = 3 has some; none of these points lies within float rounding of 1 - delta), and the pair
// kernel kept for the next step equal to the double one to 1e-5.
TEST(KernelBatchFloat, PairObservablesMatchTheDoubleKernel) {
  for (const Index d : {3, 32}) {
    const Index n = 10;
    FloatLanes f = float_lanes(n, d);
    const Index w = f.w, wd = batch_width();
    const double delta = 0.05;
    std::vector<double> le(static_cast<std::size_t>(w)), mc(le.size()), cl(le.size()), order(le.size()), dir(le.size());
    std::vector<float> kernel(static_cast<std::size_t>(batch_pair_kernel_size<float>(n)));
    BatchPairObservablesF po{le.data(), mc.data(), cl.data(), order.data(), dir.data()};
    po.kernel = kernel.data();
    batch_pair_observables({f.x.data(), f.log_w.data(), f.beta.data(), f.wt.data(), n, d}, delta, po);
    double clustered = 0.0;
    for (const double c : cl) clustered += c;
    if (d == 3) EXPECT_GT(clustered, 0.0);  // the comparison of counts is not between zeros
    // The double kernel runs wd lanes at a time: regroup lanes [g, g + wd).
    for (Index g = 0; g < w; g += wd) {
      std::vector<double> x(static_cast<std::size_t>(n * d * wd)), lw(static_cast<std::size_t>(n * wd)),
          wt(lw.size()), beta(static_cast<std::size_t>(wd));
      for (Index l = 0; l < wd; ++l) {
        beta[static_cast<std::size_t>(l)] = f.betad[static_cast<std::size_t>(g + l)];
        for (Index e = 0; e < n * d; ++e) x[static_cast<std::size_t>(e * wd + l)] = f.xd[static_cast<std::size_t>(e * w + g + l)];
        for (Index i = 0; i < n; ++i) {
          lw[static_cast<std::size_t>(i * wd + l)] = f.log_wd[static_cast<std::size_t>(i * w + g + l)];
          wt[static_cast<std::size_t>(i * wd + l)] = f.wtd[static_cast<std::size_t>(i * w + g + l)];
        }
      }
      std::vector<double> le2(static_cast<std::size_t>(wd)), mc2(le2.size()), cl2(le2.size()), o2(le2.size()), dir2(le2.size());
      std::vector<double> kernel2(static_cast<std::size_t>(batch_pair_kernel_size<double>(n)));
      BatchPairObservables pd{le2.data(), mc2.data(), cl2.data(), o2.data(), dir2.data()};
      pd.kernel = kernel2.data();
      batch_pair_observables({x.data(), lw.data(), beta.data(), wt.data(), n, d}, delta, pd);
      for (Index l = 0; l < wd; ++l) {
        const std::size_t k = static_cast<std::size_t>(g + l), k2 = static_cast<std::size_t>(l);
        EXPECT_NEAR(le[k], le2[k2], 1e-5 * std::max(1.0, std::abs(le2[k2]))) << "d " << d << " lane " << k;
        EXPECT_NEAR(mc[k], mc2[k2], 1e-6) << "d " << d << " lane " << k;
        EXPECT_EQ(cl[k], cl2[k2]) << "d " << d << " lane " << k;
        EXPECT_NEAR(order[k], o2[k2], 1e-6) << "d " << d << " lane " << k;
        EXPECT_NEAR(dir[k], dir2[k2], 1e-6) << "d " << d << " lane " << k;
        for (Index p = 0; p < n * (n - 1) / 2 + n; ++p)
          EXPECT_NEAR(kernel[static_cast<std::size_t>(p * w) + k], kernel2[static_cast<std::size_t>(p * wd) + k2],
                      1e-5 * std::max(1.0, std::abs(kernel2[static_cast<std::size_t>(p * wd) + k2])));
      }
    }
  }
}

}  // namespace float_kernel_test
}  // namespace
}  // namespace attnflow
