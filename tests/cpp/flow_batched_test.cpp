// The batched small-system ensemble path: equal to the per-system path to 1e-12
// relative for SA / USA, schemes and euler / residual / rk4; bit-identical on 1, 2 and 3
// threads; fused observables against observe(); Sinkhorn takes the per-system path.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "attnflow/kernel/batch_kernel.hpp"
#include "attnflow/flow/ensemble.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/measure/sample.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::bit_equal;

// 11 systems (not a multiple of the lane count: the last block is padded), betas differ.
struct Systems {
  std::vector<FlowOptions> flows;
  std::vector<Matrix> x0;
};
Systems systems(FieldKind kind, Scheme scheme, Index count = 11, Index n = 12, Index d = 5) {
  Systems s;
  for (Index k = 0; k < count; ++k) {
    Rng rng(7, static_cast<std::uint64_t>(k));
    FlowOptions o;
    o.kind = kind;
    o.beta = 0.5 + 0.7 * static_cast<double>(k);
    o.scheme.scheme = scheme;
    if (kind == FieldKind::usa) o.usa_log_shift = o.beta;  // a field of order 1: dt = 0.1 is stable
    if (k == 3) {  // non-uniform weights, one zero
      o.weights = Vector::Ones(n);
      o.weights[0] = 0.0;
      o.weights[1] = 3.0;
    }
    s.flows.push_back(o);
    Matrix x = sample_sphere(n, d, rng);
    if (scheme != Scheme::none)
      for (Index i = 0; i < n; ++i) x.row(i) *= 0.5 + 0.1 * static_cast<double>(i);
    s.x0.push_back(x);
  }
  return s;
}

Ensemble make(const Systems& s, Method m, bool batched) {
  IntegratorOptions io;
  io.method = m;
  io.dt = 0.1;
  Ensemble e(s.flows, s.x0, io);
  e.batched = batched;
  return e;
}

TEST(FlowBatched, EqualsPerSystemPath) {
  struct Case {
    FieldKind kind;
    Scheme scheme;
  };
  for (const Case c : {Case{FieldKind::sa, Scheme::none}, Case{FieldKind::usa, Scheme::none},
                       Case{FieldKind::sa, Scheme::pre_ln}, Case{FieldKind::sa, Scheme::post_ln},
                       Case{FieldKind::usa, Scheme::peri_ln}}) {
    const Systems s = systems(c.kind, c.scheme);
    for (const Method m : {Method::euler, Method::residual, Method::rk4}) {
      Ensemble a = make(s, m, true), b = make(s, m, false);
      ASSERT_TRUE(a.batchable());
      for (const double t : {0.35, 1.5}) {  // 0.35: off the grid (a shortened step)
        a.advance(t);
        b.advance(t);
      }
      for (Index k = 0; k < a.size(); ++k) {
        const double rel = (a.state(k) - b.state(k)).norm() / b.state(k).norm();
        EXPECT_LT(rel, 1e-12) << to_string(c.kind) << " " << to_string(c.scheme) << " " << to_string(m)
                              << " system " << k;
        EXPECT_EQ(a.flow_state(k).integrator.steps, b.flow_state(k).integrator.steps);
        EXPECT_EQ(a.flow_state(k).integrator.t, 1.5);
      }
      EXPECT_GT((a.state(0) - s.x0[0]).norm(), 1e-3);  // it moved
    }
  }
}

TEST(FlowBatched, BitIdenticalOnOneTwoThreeThreads) {
  struct Case {
    Scheme scheme;
    Index d;  // 14 > n = 10: the reduced path (coordinates), with the kept pair kernel
    FieldKind kind;
  };
  for (const Case c : {Case{Scheme::none, 4, FieldKind::sa}, Case{Scheme::pre_ln, 4, FieldKind::sa},
                       Case{Scheme::none, 14, FieldKind::sa}, Case{Scheme::none, 6, FieldKind::sinkhorn}}) {
    const Scheme scheme = c.scheme;
    const Systems s = systems(c.kind, scheme, 21, 10, c.d);  // Sinkhorn: to tol, lanes stop apart
    std::vector<Ensemble> runs;
    std::vector<std::vector<Observables>> obs;
    for (const int threads : {1, 2, 3}) {
      set_num_threads(threads);
      Ensemble e = make(s, scheme == Scheme::none ? Method::residual : Method::rk4, true);
      e.advance(2.0);
      ObserveOptions oo;
      oo.delta = 0.05;
      obs.push_back(e.observe(oo));
      runs.push_back(std::move(e));
    }
    set_num_threads(0);
    for (std::size_t r = 1; r < runs.size(); ++r)
      for (Index k = 0; k < runs[0].size(); ++k) {
        EXPECT_TRUE(bit_equal(runs[r].state(k), runs[0].state(k))) << "threads " << r + 1 << " system " << k;
        EXPECT_EQ(observable_values(obs[r][k]), observable_values(obs[0][k]));
      }
  }
}

// States handed over with set_state (a resumed run) continue exactly like the original.
TEST(FlowBatched, SetStateContinuesBitForBit) {
  const Systems s = systems(FieldKind::sa, Scheme::none, 11);
  Ensemble a = make(s, Method::residual, true), b = make(s, Method::residual, true);
  a.advance(1.0);
  b.advance(0.3);  // b holds other states, in lanes, before they are replaced
  for (Index k = 0; k < a.size(); ++k) b.set_state(k, a.state(k), a.flow_state(k));
  a.advance(2.0);
  b.advance(2.0);
  for (Index k = 0; k < a.size(); ++k) EXPECT_TRUE(bit_equal(a.state(k), b.state(k))) << k;
}

// d > n: the reduced path (coordinates in a basis of the points' span) equals the points path
// (reduce_span = false) and the per-system path to 1e-12, observables included. One system
// starts with two equal tokens (a span of dimension n - 1).
TEST(FlowBatched, ReducedSpanEqualsThePointsPath) {
  ObserveOptions oo;
  oo.delta = 1e-2;
  for (const FieldKind kind : {FieldKind::sa, FieldKind::usa}) {
    Systems s = systems(kind, Scheme::none, 11, 6, 20);
    s.x0[2].row(1) = s.x0[2].row(0);
    for (const Method m : {Method::euler, Method::residual, Method::rk4}) {
      Ensemble a = make(s, m, true), b = make(s, m, true), c = make(s, m, false);
      b.reduce_span = false;
      EXPECT_TRUE(a.reduces_span());
      EXPECT_FALSE(b.reduces_span());
      EXPECT_FALSE(c.reduces_span());
      for (const double t : {0.35, 1.5}) {
        a.advance(t);
        b.advance(t);
        c.advance(t);
      }
      const std::vector<Observables> oa = a.observe(oo), ob = b.observe(oo);
      for (Index k = 0; k < a.size(); ++k) {
        const std::string what = to_string(kind) + " " + to_string(m) + " system " + std::to_string(k);
        EXPECT_LT((a.state(k) - b.state(k)).norm() / b.state(k).norm(), 1e-12) << what;
        EXPECT_LT((a.state(k) - c.state(k)).norm() / c.state(k).norm(), 1e-12) << what;
        EXPECT_EQ(a.saved_state(k).cols(), 6 + 20) << what;  // coordinates and basis
        EXPECT_EQ(b.saved_state(k).cols(), 20) << what;      // the points
        const std::vector<double> va = observable_values(oa[static_cast<std::size_t>(k)]),
                                  vb = observable_values(ob[static_cast<std::size_t>(k)]);
        ASSERT_EQ(va.size(), vb.size());
        for (std::size_t j = 0; j < va.size(); ++j)
          EXPECT_NEAR(va[j], vb[j], 1e-12 * std::max(1.0, std::abs(vb[j]))) << what << " observable " << j;
      }
      EXPECT_GT((a.state(0) - s.x0[0]).norm(), 1e-3);  // it moved
    }
  }
}

// saved_state() on the reduced path (coordinates C and basis B, points C B) and
// restore_state() continue bit for bit, as a checkpoint's resume does.
TEST(FlowBatched, ReducedSpanSavedStateContinuesBitForBit) {
  const Systems s = systems(FieldKind::sa, Scheme::none, 11, 6, 20);
  Ensemble a = make(s, Method::residual, true), b = make(s, Method::residual, true);
  a.advance(1.0);
  b.advance(0.3);  // b holds other coordinates, in lanes, before they are replaced
  for (Index k = 0; k < a.size(); ++k) {
    const Matrix saved = a.saved_state(k);
    ASSERT_EQ(saved.rows(), 6);
    ASSERT_EQ(saved.cols(), 26);
    const Matrix points = Matrix(saved.leftCols(6)) * Matrix(saved.rightCols(20));
    EXPECT_LT((points - a.state(k)).norm(), 1e-14) << k;
    const Matrix basis = saved.rightCols(20);
    EXPECT_LT((basis * basis.transpose() - Matrix::Identity(6, 6)).norm(), 1e-14) << k;  // orthonormal rows
    b.restore_state(k, saved, a.flow_state(k));
  }
  a.advance(2.0);
  b.advance(2.0);
  for (Index k = 0; k < a.size(); ++k) {
    EXPECT_TRUE(bit_equal(a.state(k), b.state(k))) << k;
    EXPECT_TRUE(bit_equal(a.saved_state(k), b.saved_state(k))) << k;
  }
  EXPECT_THROW(b.restore_state(0, Matrix::Zero(6, 7), a.flow_state(0)), std::invalid_argument);
  // Replacing one system (its points: a new basis) leaves the others' coordinates as they are.
  Ensemble c = make(s, Method::residual, true);
  c.advance(2.0);
  c.set_state(3, c.state(3), c.flow_state(3));
  a.advance(2.5);
  c.advance(2.5);
  for (Index k = 0; k < a.size(); ++k) {
    if (k == 3) {
      EXPECT_LT((a.state(k) - c.state(k)).norm(), 1e-12);
    } else {
      EXPECT_TRUE(bit_equal(a.state(k), c.state(k))) << k;
    }
  }
}

// span_start(): an ensemble started from another's span form (a sweep's points sharing their
// start) follows the ensemble that formed it bit for bit, with other betas too, in float64
// and float32, and both follow an ensemble that never formed one (the lazy QR at the first
// advance); the bases are shared, not copied. What does not fit is refused by name.
TEST(FlowBatched, SpanStartSharedBitForBit) {
  ObserveOptions oo;
  oo.delta = 1e-2;
  const Systems s = systems(FieldKind::sa, Scheme::none, 11, 6, 20);
  Systems other = s;  // the same points, other betas (the next point of a sweep over beta)
  for (auto& o : other.flows) o.beta *= 1.5;
  for (const Precision p : {Precision::float64, Precision::float32}) {
    Ensemble a = make(s, Method::residual, true), lazy = make(s, Method::residual, true);
    Ensemble next_lazy = make(other, Method::residual, true);
    a.precision = lazy.precision = next_lazy.precision = p;
    const auto start = a.span_start();
    ASSERT_EQ(start->coords.size(), 11u);
    EXPECT_LT((start->coords[4] * *start->bases[4] - s.x0[4]).norm(), 1e-14);
    EXPECT_TRUE(bit_equal(a.span_start()->coords[4], start->coords[4]));  // again before advancing: the same
    Ensemble b = Ensemble::from_span_start(s.flows, start, IntegratorOptions{.method = Method::residual, .dt = 0.1});
    Ensemble next = Ensemble::from_span_start(other.flows, start, IntegratorOptions{.method = Method::residual, .dt = 0.1});
    b.batched = next.batched = true;
    b.precision = next.precision = p;
    EXPECT_TRUE(b.reduces_span());
    EXPECT_EQ(b.saved_state(4).cols(), 26);
    EXPECT_TRUE(bit_equal(b.saved_state(4), a.saved_state(4)));
    for (const double t : {0.0, 0.35, 1.5}) {
      for (Ensemble* e : {&a, &lazy, &b, &next, &next_lazy}) e->advance(t);
      const auto oa = a.observe(oo), ol = lazy.observe(oo), ob = b.observe(oo);
      const auto on = next.observe(oo), onl = next_lazy.observe(oo);
      for (Index k = 0; k < a.size(); ++k) {
        const std::string what = std::string(p == Precision::float32 ? "float32" : "float64") + " t " +
                                 std::to_string(t) + " system " + std::to_string(k);
        EXPECT_TRUE(bit_equal(a.state(k), b.state(k))) << what;
        EXPECT_TRUE(bit_equal(a.state(k), lazy.state(k))) << what;
        EXPECT_TRUE(bit_equal(next.state(k), next_lazy.state(k))) << what;
        EXPECT_TRUE(bit_equal(a.saved_state(k), b.saved_state(k))) << what;
        EXPECT_EQ(observable_values(oa[k]), observable_values(ob[k])) << what;
        EXPECT_EQ(observable_values(oa[k]), observable_values(ol[k])) << what;
        EXPECT_EQ(observable_values(on[k]), observable_values(onl[k])) << what;
      }
    }
    EXPECT_GT((next.state(0) - a.state(0)).norm(), 1e-6);  // another beta: another flow
  }
  // The GPU path (its blocks emulated on the host) takes a span start as it takes restored
  // coordinates: the same bits as an ensemble that forms its span there itself.
  {
    const IntegratorOptions io{.method = Method::rk4, .dt = 0.1};
    Ensemble src = make(s, Method::rk4, true);
    Ensemble own = make(s, Method::rk4, true);
    Ensemble shared = Ensemble::from_span_start(s.flows, src.span_start(), io);
    shared.batched = true;
    own.gpu_emulation = shared.gpu_emulation = true;
    ASSERT_TRUE(shared.runs_on_gpu()) << shared.gpu_refusal();
    for (const double t : {0.0, 0.3, 1.2}) {
      const auto oo_own = own.advance_observe(t, oo, false), oo_shared = shared.advance_observe(t, oo, false);
      for (Index k = 0; k < own.size(); ++k) {
        EXPECT_TRUE(bit_equal(own.state(k), shared.state(k))) << "gpu emulation t " << t << " system " << k;
        EXPECT_TRUE(bit_equal(own.saved_state(k), shared.saved_state(k))) << "gpu emulation system " << k;
        EXPECT_EQ(observable_values(oo_own[k]), observable_values(oo_shared[k])) << "gpu emulation " << k;
      }
    }
  }
  // The bases are shared: one copy for every ensemble started from the start.
  Ensemble a = make(s, Method::residual, true);
  const auto start = a.span_start();
  Ensemble b = Ensemble::from_span_start(s.flows, start, IntegratorOptions{.method = Method::residual, .dt = 0.1});
  EXPECT_EQ(start.use_count(), 1);
  EXPECT_GE(start->bases[0].use_count(), 3);  // a, b and the start
  // Refusals, named.
  Ensemble points = make(s, Method::residual, true);
  points.reduce_span = false;
  EXPECT_THROW(points.span_start(), std::invalid_argument);
  Ensemble advanced = make(s, Method::residual, true);
  advanced.advance(0.2);
  try {
    advanced.span_start();
    ADD_FAILURE() << "span_start after an advance";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("not yet advanced"), std::string::npos) << e.what();
  }
  std::vector<FlowOptions> fewer(s.flows.begin(), s.flows.begin() + 5);
  try {
    Ensemble::from_span_start(fewer, start, IntegratorOptions{.method = Method::residual, .dt = 0.1});
    ADD_FAILURE() << "5 flows for 11 systems";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("systems = 5"), std::string::npos) << e.what();
  }
  Systems schemed = systems(FieldKind::sa, Scheme::pre_ln, 11, 6, 20);
  EXPECT_THROW(Ensemble::from_span_start(schemed.flows, start, IntegratorOptions{.method = Method::residual, .dt = 0.1}),
               std::invalid_argument);
  EXPECT_THROW(Ensemble::from_span_start(s.flows, nullptr, IntegratorOptions{.method = Method::residual, .dt = 0.1}),
               std::invalid_argument);
}

// An observation keeps its pair kernel for the block's next step (d = 3: the one-pass average,
// d = 12: the two-pass form): the steps give the bits of steps without observations (SA, USA
// and Sinkhorn, residual and rk4, times on and off the grid), and a step that follows a step
// (no observation between) computes its own.
TEST(FlowBatched, ObservedPairKernelServesTheNextStepBitForBit) {
  ObserveOptions oo;
  oo.delta = 1e-2;
  for (const Index d : {3, 12})
    for (const FieldKind kind : {FieldKind::sa, FieldKind::usa, FieldKind::sinkhorn})
      for (const Method m : {Method::residual, Method::rk4}) {
        const Systems s = systems(kind, Scheme::none, 11, 16, d);  // d < n: the points path
        Ensemble a = make(s, m, true), b = make(s, m, true);
        int call = 0;
        for (const double t : {0.0, 0.1, 0.35, 0.6, 1.0, 1.4, 2.0}) {
          if (++call % 3 == 0) {  // a step after a step: no kernel kept for it
            a.advance(t);
          } else {
            (void)a.advance_observe(t, oo);
            (void)a.observe(oo, false);
          }
          b.advance(t);
        }
        for (Index k = 0; k < a.size(); ++k)
          EXPECT_TRUE(bit_equal(a.state(k), b.state(k)))
              << "d " << d << " " << to_string(kind) << " " << to_string(m) << " system " << k;
      }
}

// A system's result does not depend on its block (lane position, neighbours).
TEST(FlowBatched, SystemIndependentOfItsBlock) {
  const Systems all = systems(FieldKind::sa, Scheme::none, 11);
  Systems one;
  one.flows = {all.flows[9]};
  one.x0 = {all.x0[9]};
  Ensemble a = make(all, Method::rk4, true), b = make(one, Method::rk4, true);
  a.advance(1.0);
  b.advance(1.0);
  EXPECT_TRUE(bit_equal(a.state(9), b.state(0)));
}

// Sinkhorn systems on the batched path (the normalization in its scaling form on the pair
// kernel, lanes stopping on their own) against the per-system log-domain normalization: states
// to 1e-12, the diagnostics (last marginal error, misses) as the per-system flows count them.
// A fixed count (the Sinkformer convention), to tol, and max_iterations too small for tol;
// plain flow and a scheme; d < n and d > n (the reduced path).
TEST(FlowBatched, SinkhornEqualsPerSystemPath) {
  struct Case {
    int iterations, max_iterations;
    double tol;
    Scheme scheme;
    Index d;
  };
  for (const Case c : {Case{3, 10000, 1e-9, Scheme::none, 5}, Case{0, 10000, 1e-11, Scheme::none, 5},
                       Case{0, 2, 1e-14, Scheme::none, 5}, Case{0, 10000, 1e-10, Scheme::pre_ln, 4},
                       Case{5, 10000, 1e-9, Scheme::none, 20}}) {
    Systems s = systems(FieldKind::sinkhorn, c.scheme, 11, 12, c.d);
    for (auto& f : s.flows) {
      f.sinkhorn.iterations = c.iterations;
      f.sinkhorn.max_iterations = c.max_iterations;
      f.sinkhorn.tol = c.tol;
    }
    for (const Method m : {Method::euler, Method::rk4}) {
      Ensemble a = make(s, m, true), b = make(s, m, false);
      ASSERT_TRUE(a.batchable());
      EXPECT_EQ(a.reduces_span(), c.d > 12);
      for (const double t : {0.35, 1.0}) {  // 0.35: off the grid (a shortened step)
        a.advance(t);
        b.advance(t);
      }
      for (Index k = 0; k < a.size(); ++k) {
        const std::string what = "iterations " + std::to_string(c.iterations) + " tol " + std::to_string(c.tol) +
                                 " d " + std::to_string(c.d) + " " + to_string(m) + " system " + std::to_string(k);
        EXPECT_LT((a.state(k) - b.state(k)).norm() / b.state(k).norm(), 1e-12) << what;
        const FlowDiagnostics &da = a.flow(k).diagnostics(), &db = b.flow(k).diagnostics();
        EXPECT_EQ(da.sinkhorn_not_converged, db.sinkhorn_not_converged) << what;
        EXPECT_NEAR(da.sinkhorn_marginal_error, db.sinkhorn_marginal_error, 1e-13) << what;
        EXPECT_EQ(da.message, db.message) << what;
        if (c.max_iterations == 2) {
          EXPECT_GT(da.sinkhorn_not_converged, 0) << what;
          EXPECT_NE(da.message.find("not converged after 2 iterations"), std::string::npos) << da.message;
        } else {
          EXPECT_EQ(da.sinkhorn_not_converged, 0) << what;
        }
      }
      EXPECT_GT((a.state(0) - b.state(0)).norm() + (a.positions(0) - s.x0[0]).norm(), 1e-3);  // it moved
    }
  }
}

TEST(FlowBatched, OtherFieldsTakeThePerSystemPath) {
  Systems q = systems(FieldKind::sa, Scheme::none, 4);
  q.flows[2].heads = make_heads(1, 5, "gaussian", 1);
  EXPECT_FALSE(make(q, Method::euler, true).batchable());
  EXPECT_FALSE(make(systems(FieldKind::sa, Scheme::none, 4), Method::dopri5, true).batchable());
  Systems mixed = systems(FieldKind::sinkhorn, Scheme::none, 4);
  mixed.flows[1].kind = FieldKind::sa;  // Sinkhorn and softmax systems do not share blocks
  EXPECT_FALSE(make(mixed, Method::euler, true).batchable());
  Systems controls = systems(FieldKind::sinkhorn, Scheme::none, 4);
  controls.flows[3].sinkhorn.iterations = 2;  // one normalization control per ensemble
  EXPECT_FALSE(make(controls, Method::euler, true).batchable());
  Ensemble a = make(mixed, Method::residual, true), b = make(mixed, Method::residual, false);
  a.advance(0.5);
  b.advance(0.5);
  for (Index k = 0; k < a.size(); ++k) EXPECT_TRUE(bit_equal(a.state(k), b.state(k)));
}

TEST(FlowBatched, FusedObservablesMatchObserve) {
  const Systems s = systems(FieldKind::sa, Scheme::none, 11, 16, 3);
  Ensemble e = make(s, Method::residual, true);
  e.advance(6.0);  // partly clustered
  ObserveOptions oo;
  oo.delta = 1e-3;
  oo.beta = 2.0;
  const std::vector<Observables> fused = e.observe(oo), no_clusters = e.observe(oo, false);
  double linked = 0;
  for (Index k = 0; k < e.size(); ++k) {
    ObserveOptions o = oo;
    o.beta = s.flows[k].beta;
    const Observables ref = observe(e.positions(k), e.flow(k).options().weights, o, 6.0);
    const Observables& f = fused[static_cast<std::size_t>(k)];
    EXPECT_EQ(f.t, 6.0);
    EXPECT_NEAR(f.log_energy, ref.log_energy, 1e-12 * std::abs(ref.log_energy)) << k;
    EXPECT_NEAR(f.energy, ref.energy, 1e-12 * ref.energy) << k;
    EXPECT_NEAR(f.mean_cosine, ref.mean_cosine, 1e-12) << k;
    EXPECT_NEAR(f.min_cosine, ref.min_cosine, 1e-12) << k;
    EXPECT_NEAR(f.order, ref.order, 1e-12) << k;
    EXPECT_EQ(f.clustered_pairs, ref.clustered_pairs) << k;
    EXPECT_EQ(f.clusters, ref.clusters) << k;
    EXPECT_EQ(f.cluster_sizes, ref.cluster_sizes) << k;
    EXPECT_EQ(no_clusters[static_cast<std::size_t>(k)].clusters, -1);
    EXPECT_EQ(no_clusters[static_cast<std::size_t>(k)].clustered_pairs, ref.clustered_pairs);
    linked += ref.clustered_pairs;
  }
  EXPECT_GT(linked, 0.0);  // the test sees clustered pairs
  EXPECT_LT(linked, static_cast<double>(e.size()));
  // Summaries leave out cluster counts not asked for; standard error by hand.
  const EnsembleStats st = summarize(no_clusters, {0.5});
  const auto names = observable_names();
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == "clusters" || names[i] == "largest_cluster") {
      EXPECT_EQ(st.stats[i].count, 0);
    }
    if (names[i] != "clustered_pairs") continue;
    double m = 0, ss = 0;
    for (const auto& o : no_clusters) m += o.clustered_pairs;
    m /= static_cast<double>(no_clusters.size());
    for (const auto& o : no_clusters) ss += (o.clustered_pairs - m) * (o.clustered_pairs - m);
    const double se = std::sqrt(ss / static_cast<double>(no_clusters.size() - 1) / static_cast<double>(no_clusters.size()));
    EXPECT_NEAR(st.stats[i].mean, m, 1e-15);
    EXPECT_NEAR(st.stats[i].standard_error, se, 1e-15);
    EXPECT_GT(se, 0.0);
  }
}

// advance_observe (each block observed right after its steps) equals advance then observe, bit
// for bit: states, flow states and every observable, on the batched path and off it (a scheme:
// per-system observation), at observation times on and off the step grid, on 1 and 2 threads.
TEST(FlowBatched, AdvanceObserveEqualsAdvanceThenObserve) {
  ObserveOptions oo;
  oo.delta = 1e-2;
  for (const Scheme scheme : {Scheme::none, Scheme::pre_ln}) {
    for (const int threads : {1, 2}) {
      set_num_threads(threads);
      const Systems s = systems(FieldKind::sa, scheme, 11, 16, 3);
      Ensemble a = make(s, Method::residual, true), b = make(s, Method::residual, true);
      for (const double t : {0.0, 0.15, 0.3, 1.05, 2.0}) {
        a.advance(t);
        const std::vector<Observables> oa = a.observe(oo);
        const std::vector<Observables> ob = b.advance_observe(t, oo);
        ASSERT_EQ(oa.size(), ob.size());
        for (Index k = 0; k < a.size(); ++k) {
          EXPECT_TRUE(bit_equal(a.state(k), b.state(k))) << "system " << k << " t " << t;
          EXPECT_EQ(a.flow_state(k).integrator.t, b.flow_state(k).integrator.t);
          EXPECT_EQ(a.flow_state(k).integrator.steps, b.flow_state(k).integrator.steps);
          const std::array<double, kObservableCount> va = observable_array(oa[static_cast<std::size_t>(k)]),
                                                     vb = observable_array(ob[static_cast<std::size_t>(k)]);
          EXPECT_EQ(std::memcmp(va.data(), vb.data(), sizeof(double) * va.size()), 0) << "system " << k << " t " << t;
          EXPECT_EQ(oa[static_cast<std::size_t>(k)].t, ob[static_cast<std::size_t>(k)].t);
        }
      }
    }
  }
  set_num_threads(0);
}

// advance_observe_each on the CPU's batched path runs each block through a group of times
// (cpu_pass_observations) before the next block: every observation handed over has the bits
// of advance_observe at that time, in order, for groups of 1, 3 and the automatic size, on 1
// and 2 threads, with repeated and off-grid times, clusters, SA and USA, d < n, d = n and
// d > n (the span form), float64 and float32, residual and rk4; the states and time grids
// end where advance_observe's do.
TEST(FlowBatched, AdvanceObserveEachPassesOverBlocksBitForBit) {
  const std::vector<double> times{0.0, 0.1, 0.1, 0.25, 0.3, 0.7, 0.7, 1.0, 1.05};
  ObserveOptions oo;
  oo.delta = 0.05;
  const auto same = [](const std::vector<Observables>& a, const std::vector<Observables>& b, const char* what) {
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t k = 0; k < a.size(); ++k) {
      const std::array<double, kObservableCount> va = observable_array(a[k]), vb = observable_array(b[k]);
      EXPECT_EQ(std::memcmp(va.data(), vb.data(), sizeof(double) * va.size()), 0) << what << " system " << k;
      EXPECT_EQ(a[k].t, b[k].t);
      EXPECT_EQ(a[k].cluster_sizes, b[k].cluster_sizes);
    }
  };
  for (const Index d : {Index{3}, Index{8}, Index{20}}) {
    for (const Precision precision : {Precision::float64, Precision::float32}) {
      for (const Method method : {Method::residual, Method::rk4}) {
        const bool clusters = d == 8;
        SCOPED_TRACE(::testing::Message() << "d = " << d << ", float" << (precision == Precision::float32 ? 32 : 64)
                                          << ", method " << static_cast<int>(method));
        Systems s = systems(FieldKind::sa, Scheme::none, 19, 8, d);
        for (Index k = 1; k < 19; k += 4) {
          s.flows[static_cast<std::size_t>(k)].kind = FieldKind::usa;
          s.flows[static_cast<std::size_t>(k)].usa_log_shift = s.flows[static_cast<std::size_t>(k)].beta;
        }
        const auto fresh = [&] {
          Ensemble e = make(s, method, true);
          e.precision = precision;
          return e;
        };
        Ensemble one = fresh();
        std::vector<std::vector<Observables>> expected;
        for (const double t : times) expected.push_back(one.advance_observe(t, oo, clusters));
        for (const int threads : {1, 2}) {
          set_num_threads(threads);
          for (const Index group : {Index{0}, Index{1}, Index{3}}) {
            SCOPED_TRACE(::testing::Message() << threads << " threads, " << group << " per pass");
            Ensemble e = fresh();
            e.cpu_pass_observations = group;
            EXPECT_EQ(e.observations_per_pass(oo), group > 0 ? group : 65536 / 19);
            std::size_t next = 0;
            e.advance_observe_each(times, oo, clusters, [&](std::size_t k, const std::vector<Observables>& o) {
              ASSERT_EQ(k, next++);
              same(o, expected[k], "observation");
            });
            EXPECT_EQ(next, times.size());
            for (Index k = 0; k < e.size(); ++k) {
              EXPECT_TRUE(bit_equal(e.state(k), one.state(k))) << "system " << k;
              EXPECT_EQ(e.flow_state(k).integrator.t, one.flow_state(k).integrator.t);
              EXPECT_EQ(e.flow_state(k).integrator.steps, one.flow_state(k).integrator.steps);
            }
          }
        }
        set_num_threads(0);
      }
    }
  }
  // Not the batched path on the sphere: one time per pass (advance_observe at each in turn).
  const Systems s = systems(FieldKind::sa, Scheme::none, 5, 6, 3);
  Ensemble per_system = make(s, Method::residual, false);
  EXPECT_EQ(per_system.observations_per_pass(oo), 1);
  Ensemble dopri = make(s, Method::dopri5, true);
  EXPECT_EQ(dopri.observations_per_pass(oo), 1);
  Ensemble e = make(s, Method::residual, true);
  e.cpu_pass_observations = -1;
  EXPECT_TRUE(test::throws_with(
      [&] { e.advance_observe_each({0.1}, oo, false, [](std::size_t, const std::vector<Observables>&) {}); },
      "cpu_pass_observations"));
}

// Inside each(k, ...) of a pass the ensemble is at the pass's last time: reading, observing or
// advancing it throws std::logic_error except at that time. A system failing at some time:
// the observations before it are handed over, then the error advance_observe gives there.
TEST(FlowBatched, AdvanceObserveEachPassRulesAndFailures) {
  const Systems s = systems(FieldKind::sa, Scheme::none, 12, 6, 3);
  Ensemble e = make(s, Method::residual, true), ref = make(s, Method::residual, true);
  e.cpu_pass_observations = 4;
  std::vector<double> times;
  for (int k = 1; k <= 6; ++k) times.push_back(0.1 * k);  // passes of times 0..3 and 4..5
  std::size_t refused = 0, allowed = 0;
  e.advance_observe_each(times, ObserveOptions{}, false, [&](std::size_t k, const std::vector<Observables>&) {
    if (k == 3 || k == 5) {
      ref.advance(times[k]);
      EXPECT_TRUE(bit_equal(e.state(2), ref.state(2)));
      ++allowed;
    } else {
      EXPECT_THROW(e.state(0), std::logic_error);
      EXPECT_THROW(e.observe(ObserveOptions{}, false), std::logic_error);
      EXPECT_THROW(e.advance(5.0), std::logic_error);
      ++refused;
    }
  });
  EXPECT_EQ(allowed, 2u);
  EXPECT_EQ(refused, 4u);
  // A sink that throws: the error comes out, and the ensemble is usable again.
  EXPECT_THROW(e.advance_observe_each({0.7, 0.8}, ObserveOptions{}, false,
                                      [](std::size_t, const std::vector<Observables>&) { throw std::runtime_error("sink"); }),
               std::runtime_error);
  EXPECT_NO_THROW(e.state(0));
  // USA at beta = 800 overflows at its first step (t = 0.05): the t = 0 observation is handed
  // over, then advance_observe's error, as advance_observe at each time in turn gives.
  FlowOptions usa;
  usa.kind = FieldKind::usa;
  usa.beta = 800.0;
  Rng rng(3, 0);
  std::vector<FlowOptions> f(10, FlowOptions{});
  f[9] = usa;  // the second block
  std::vector<Matrix> x;
  for (int k = 0; k < 10; ++k) x.push_back(sample_sphere(6, 3, rng));
  IntegratorOptions io;
  io.dt = 0.05;
  io.method = Method::residual;
  std::string sequential_error;
  std::size_t sequential_handed = 0;
  {
    Ensemble q(f, x, io);
    q.batched = true;
    try {
      for (const double t : {0.0, 0.05, 0.1}) {
        q.advance_observe(t, ObserveOptions{}, false);
        ++sequential_handed;
      }
    } catch (const std::runtime_error& err) {
      sequential_error = err.what();
    }
  }
  ASSERT_FALSE(sequential_error.empty());
  EXPECT_EQ(sequential_handed, 1u);
  Ensemble big(f, x, io);
  big.batched = true;
  std::size_t handed = 0;
  try {
    big.advance_observe_each({0.0, 0.05, 0.1}, ObserveOptions{}, false,
                             [&](std::size_t k, const std::vector<Observables>&) { EXPECT_EQ(k, handed++); });
    ADD_FAILURE() << "no overflow reported";
  } catch (const std::runtime_error& err) {
    EXPECT_EQ(std::string(err.what()), sequential_error);
  }
  EXPECT_EQ(handed, sequential_handed);
}

// batch_residual_layer reports whether every new row's squared norm is finite (the batched
// path's finiteness check, instead of a pass over the state): true for a finite update, false
// for an inf or a NaN in any lane, and for finite rows whose squared norm overflows (which
// the scaling would turn into zeros); in double and float.
template <class S>
void check_residual_layer_finiteness() {
  const Index w = batch_lanes<S>(), n = 5, d = 11;
  std::vector<S> x0(static_cast<std::size_t>(n * d * w)), a(x0.size());
  Rng rng(9, 0);
  for (Index l = 0; l < w; ++l) {
    const Matrix xs = sample_sphere(n, d, rng), as = sample_sphere(n, d, rng);
    for (Index i = 0; i < n; ++i)
      for (Index k = 0; k < d; ++k) {
        x0[static_cast<std::size_t>(batch_entry(i, k, n, d) * w + l)] = static_cast<S>(xs(i, k));
        a[static_cast<std::size_t>(batch_entry(i, k, n, d) * w + l)] = static_cast<S>(as(i, k));
      }
  }
  std::vector<S> x = x0;
  EXPECT_TRUE(batch_residual_layer(x.data(), a.data(), 0.1, n, d));
  for (const S bad : {std::numeric_limits<S>::infinity(), std::numeric_limits<S>::quiet_NaN(),
                      std::numeric_limits<S>::max() / 4}) {
    for (const Index lane : {Index{0}, w - 1}) {
      std::vector<S> ab = a;
      ab[static_cast<std::size_t>(batch_entry(3, 7, n, d) * w + lane)] = bad;
      x = x0;
      EXPECT_FALSE(batch_residual_layer(x.data(), ab.data(), 0.5, n, d)) << bad << " in lane " << lane;
    }
  }
}

TEST(FlowBatched, ResidualLayerReportsFiniteness) {
  check_residual_layer_finiteness<double>();
  check_residual_layer_finiteness<float>();
}

// batch_attention_average of W random systems (n = 7) against the dense formula.
void check_kernel_against_dense(Index d) {
  const Index w = batch_width(), n = 7;
  std::vector<Matrix> xs;
  std::vector<double> lanes(static_cast<std::size_t>(n * d * w)), log_w(static_cast<std::size_t>(n * w)),
      beta(static_cast<std::size_t>(w));
  for (Index l = 0; l < w; ++l) {
    Rng rng(3, static_cast<std::uint64_t>(l));
    Matrix x = sample_gaussian(n, d, rng);
    xs.push_back(x);
    beta[static_cast<std::size_t>(l)] = 0.3 + static_cast<double>(l);
    for (Index i = 0; i < n; ++i) {
      for (Index k = 0; k < d; ++k) lanes[static_cast<std::size_t>(batch_entry(i, k, n, d) * w + l)] = x(i, k);
      log_w[static_cast<std::size_t>(i * w + l)] = i == 2 ? -INFINITY : std::log((1.0 + i) / 28.0);
    }
  }
  std::vector<double> a(lanes.size()), lse(static_cast<std::size_t>(n * w));
  batch_attention_average({lanes.data(), log_w.data(), beta.data(), nullptr, n, d}, a.data(), lse.data());
  for (Index l = 0; l < w; ++l) {
    const Matrix& x = xs[static_cast<std::size_t>(l)];
    const double b = beta[static_cast<std::size_t>(l)];
    for (Index i = 0; i < n; ++i) {
      double z = 0;
      Eigen::RowVectorXd s = Eigen::RowVectorXd::Zero(d);
      for (Index j = 0; j < n; ++j) {
        const double wj = j == 2 ? 0.0 : (1.0 + j) / 28.0;
        const double e = wj * std::exp(b * x.row(i).dot(x.row(j)));
        z += e;
        s += e * x.row(j);
      }
      s /= z;
      EXPECT_NEAR(lse[static_cast<std::size_t>(i * w + l)], std::log(z), 1e-12 * std::max(1.0, std::abs(std::log(z))));
      for (Index k = 0; k < d; ++k)
        EXPECT_NEAR(a[static_cast<std::size_t>(batch_entry(i, k, n, d) * w + l)], s[k], 1e-12 * std::max(1.0, std::abs(s[k])))
            << "d " << d << " lane " << l << " " << i << " " << k;
    }
  }
}

// The lane kernel against a dense formula: weights (one zero), radii that differ, and lse;
// d = 3 (one pass over the pairs), 13 and 20 (the two-pass form; coordinate blocks of 8 and a
// shorter last one in the lanes layout).
TEST(FlowBatched, KernelMatchesDenseFormula) {
  for (const Index d : {3, 13, 20}) check_kernel_against_dense(d);
}

}  // namespace
}  // namespace attnflow
