// The batched ensemble's GPU path (batch_cuda.hpp): small systems on the sphere (SA / USA with
// one identity head), one system per thread block, its tokens in shared memory, advanced by
// euler, residual or rk4 steps and observed (energy, min cosine, clustered pairs, order, mean
// direction) without leaving the GPU.
//
// Written once for two executions of a block (Block below):
//   - on the GPU (src/cuda/batch_cuda.cu): the block's threads run each phase concurrently,
//     with __syncthreads() between phases;
//   - on the host (tests/cpp/batch_step_emulation_test.cpp): the threads of a phase run one
//     after the other, which is the same computation because within a phase every thread
//     writes its own entries and reads only what earlier phases wrote.
// So the CPU build tests the arithmetic that the GPU runs, against the CPU ensemble.
//
// Every sum runs in a fixed order (one thread owns each sum), so results do not depend on the
// launch: bit-identical run to run. The arithmetic is the per-system definition (row-max
// softmax), not the CPU batch kernel's symmetric form: the two agree to rounding.
#pragma once

#include <math.h>

#include <cstddef>
#include <cstdint>

#ifdef __CUDACC__
#define ATTNFLOW_HD __host__ __device__
#else
#define ATTNFLOW_HD
#endif

namespace attnflow::batch_step {

enum class Method : int { euler = 0, residual = 1, rk4 = 2 };

// Status codes of one system's advance (or'ed).
constexpr int kNonFinite = 1;     // a state entry became inf or NaN
constexpr int kUsaOverflow = 2;   // a USA scale e^{lse - shift} overflowed

// One system's parameters.
struct System {
  int n = 0, d = 0;
  double beta = 0.0;
  bool usa = false;
  double usa_shift = 0.0;          // USA: the average times e^{lse_i - usa_shift}
  const double* log_w = nullptr;   // (n) log weights, -inf allowed
  const double* w = nullptr;       // (n) weights (observables)
};

// Rows of d doubles stored d + 1 apart: an odd stride puts the rows' k-th entries in different
// shared-memory banks.
ATTNFLOW_HD inline int stride(int d) { return d + 1; }
// The n x n score matrix likewise, rows n + 1 apart: in the row phases (one thread a row, j
// ascending) thread i reads entry (i, j), and with rows n apart (n = 32) every thread of a warp
// would hit the same bank.
ATTNFLOW_HD inline int score_stride(int n) { return n + 1; }

// Doubles of shared memory one block uses: the point matrices (x, a; rk4 also the stage point
// and the sum of the stages), the n x n score matrix and 5 n per-row scalars.
ATTNFLOW_HD inline std::size_t shared_doubles(int n, int d, Method m) {
  const std::size_t nd = static_cast<std::size_t>(n) * static_cast<std::size_t>(stride(d));
  const std::size_t mats = m == Method::rk4 ? 4 : 2;
  return mats * nd + static_cast<std::size_t>(n) * static_cast<std::size_t>(score_stride(n)) +
         5 * static_cast<std::size_t>(n);
}

ATTNFLOW_HD inline bool finite(double v) { return v - v == 0.0; }  // false for inf and NaN

// A block on the host: a phase runs every thread's share one after the other, in ascending
// thread order or, with reverse, descending (BatchCuda's emulation and the tests).
struct HostBlock {
  int threads = 128;
  bool reverse = false;
  template <class F>
  void run(F f) {
    for (int t = 0; t < threads; ++t) f(reverse ? threads - 1 - t : t, threads);
  }
  void flag_or(int* p, int v) { *p |= v; }
  int read(const int* p) { return *p; }
};

// Views of a block's shared memory.
struct Shared {
  double* x;    // (n, stride) the state
  double* a;    // (n, stride) the field / average
  double* xs;   // rk4: the stage point
  double* acc;  // rk4: k1 + 2 k2 + 2 k3 + k4
  double* s;    // (n, score_stride) scores / weights
  double* rz;   // (n) 1 / row sums
  double* lse;  // (n) log row sums
  double* r0;   // (n) per-row scratch
  double* r1;   // (n) per-row scratch
  double* r2;   // (n) per-row scratch
  int* flag;    // status (or'ed), read by every thread after a phase
};

ATTNFLOW_HD inline Shared carve(double* base, int* flag, int n, int d, Method m) {
  const std::size_t nd = static_cast<std::size_t>(n) * static_cast<std::size_t>(stride(d));
  Shared sh{};
  sh.x = base;
  sh.a = base + nd;
  sh.xs = m == Method::rk4 ? base + 2 * nd : nullptr;
  sh.acc = m == Method::rk4 ? base + 3 * nd : nullptr;
  double* rest = base + (m == Method::rk4 ? 4 : 2) * nd;
  sh.s = rest;
  rest += static_cast<std::size_t>(n) * static_cast<std::size_t>(score_stride(n));
  sh.rz = rest;
  sh.lse = rest + n;
  sh.r0 = rest + 2 * n;
  sh.r1 = rest + 3 * n;
  sh.r2 = rest + 4 * n;
  sh.flag = flag;
  return sh;
}

// S_ij = <p_i, p_j> (k ascending) for i <= j, written to both (i, j) and (j, i).
template <class Block>
ATTNFLOW_HD void gram(Block& b, const System& sys, const double* p, double* s) {
  const int n = sys.n, d = sys.d, ds = stride(d), ss = score_stride(n);
  b.run([&](int tid, int nt) {
    for (int idx = tid; idx < n * n; idx += nt) {
      const int i = idx / n, j = idx - i * n;
      if (j < i) continue;
      const double* pi = p + i * ds;
      const double* pj = p + j * ds;
      double g = 0.0;
      for (int k = 0; k < d; ++k) g = fma(pi[k], pj[k], g);
      s[i * ss + j] = g;
      s[j * ss + i] = g;
    }
  });
}

// Rows of the n x n matrix s: m_i = max_j s_ij into m, s_ij <- e^{s_ij - m_i} (0 in a row whose
// maximum is -inf) and z_i = sum_j s_ij (j ascending) into z. The entries' phase uses every
// thread, the rows' one thread a row.
template <class Block>
ATTNFLOW_HD void exp_rows(Block& b, int n, double* s, double* m, double* z) {
  const int ss = score_stride(n);
  b.run([&](int tid, int nt) {
    for (int i = tid; i < n; i += nt) {
      const double* si = s + i * ss;
      double mi = -INFINITY;
      for (int j = 0; j < n; ++j) mi = si[j] > mi ? si[j] : mi;
      m[i] = mi;
    }
  });
  b.run([&](int tid, int nt) {
    for (int idx = tid; idx < n * n; idx += nt) {
      const int i = idx / n, e = i * ss + (idx - i * n);
      const double mi = m[i];
      s[e] = mi > -INFINITY ? exp(s[e] - mi) : 0.0;
    }
  });
  b.run([&](int tid, int nt) {
    for (int i = tid; i < n; i += nt) {
      const double* si = s + i * ss;
      double zi = 0.0;
      for (int j = 0; j < n; ++j) zi += si[j];
      z[i] = zi;
    }
  });
}

// Row i's softmax weights of the field at p, from the Gram matrix <p_i, p_j> in sh.s:
// e^{s_ij - m_i} in sh.s (s_ij = beta <p_i, p_j> + log w_j, m_i its maximum), 1 / z_i in sh.rz
// and lse_i = m_i + log z_i in sh.lse.
template <class Block>
ATTNFLOW_HD void softmax_of_gram(Block& b, const System& sys, const Shared& sh) {
  const int n = sys.n, ss = score_stride(n);
  b.run([&](int tid, int nt) {
    for (int idx = tid; idx < n * n; idx += nt) {
      const int i = idx / n, j = idx - i * n;
      sh.s[i * ss + j] = sys.beta * sh.s[i * ss + j] + sys.log_w[j];
    }
  });
  exp_rows(b, n, sh.s, sh.lse, sh.r2);
  b.run([&](int tid, int nt) {
    for (int i = tid; i < n; i += nt) {
      sh.rz[i] = 1.0 / sh.r2[i];
      sh.lse[i] += log(sh.r2[i]);
    }
  });
}

// The same from the points p (their Gram pass first).
template <class Block>
ATTNFLOW_HD void softmax_rows(Block& b, const System& sys, const Shared& sh, const double* p) {
  gram(b, sys, p, sh.s);
  softmax_of_gram(b, sys, sh);
}

// a_i = sum_j softmax_j(beta <p_i, p_j> + log w_j) p_j (USA: times e^{lse_i - shift}); with
// project, minus <p_i, a_i> p_i (the tangent projection at p_i). ready: softmax_rows(p) is in
// sh already (observe() left it there).
template <class Block>
ATTNFLOW_HD void field(Block& b, const System& sys, const Shared& sh, const double* p, double* a, bool project,
                       bool ready = false) {
  const int n = sys.n, d = sys.d, ds = stride(d), ss = score_stride(n);
  if (!ready) softmax_rows(b, sys, sh, p);
  b.run([&](int tid, int nt) {  // a_ik = (sum_j e_ij p_jk) / z_i
    for (int idx = tid; idx < n * d; idx += nt) {
      const int i = idx / d, k = idx - i * d;
      const double* si = sh.s + i * ss;
      double acc = 0.0;
      for (int j = 0; j < n; ++j) acc = fma(si[j], p[j * ds + k], acc);
      double v = acc * sh.rz[i];
      if (sys.usa) {
        const double arg = sh.lse[i] - sys.usa_shift;
        if (arg > 709.78) b.flag_or(sh.flag, kUsaOverflow);
        v *= exp(arg);
      }
      a[i * ds + k] = v;
    }
  });
  if (!project) return;
  b.run([&](int tid, int nt) {
    for (int i = tid; i < n; i += nt) {
      const double* pi = p + i * ds;
      double* ai = a + i * ds;
      double c = 0.0;
      for (int k = 0; k < d; ++k) c = fma(pi[k], ai[k], c);
      for (int k = 0; k < d; ++k) ai[k] -= c * pi[k];
    }
  });
}

// Rows of x scaled to unit norm (zero rows stay); any non-finite entry sets kNonFinite.
template <class Block>
ATTNFLOW_HD void normalize_rows(Block& b, const System& sys, const Shared& sh) {
  const int n = sys.n, d = sys.d, ds = stride(d);
  b.run([&](int tid, int nt) {
    for (int i = tid; i < n; i += nt) {
      double* xi = sh.x + i * ds;
      double ss = 0.0;
      for (int k = 0; k < d; ++k) ss = fma(xi[k], xi[k], ss);
      const double r = sqrt(ss);
      const double inv = 1.0 / (r > 0.0 ? r : 1.0);
      bool ok = true;
      for (int k = 0; k < d; ++k) {
        xi[k] *= inv;
        ok = ok && finite(xi[k]);
      }
      if (!ok) b.flag_or(sh.flag, kNonFinite);
    }
  });
}

// y = x + c v, entrywise (d columns of n rows, stride ds).
template <class Block>
ATTNFLOW_HD void axpy(Block& b, const System& sys, const double* x, double c, const double* v, double* y) {
  const int n = sys.n, d = sys.d, ds = stride(d);
  b.run([&](int tid, int nt) {
    for (int idx = tid; idx < n * d; idx += nt) {
      const int i = idx / d, k = idx - i * d;
      y[i * ds + k] = x[i * ds + k] + c * v[i * ds + k];
    }
  });
}

// One step of size h (the integrators of integrate.hpp on this field, retraction included).
// ready: the softmax of the field at sh.x is in sh (observe() left it there).
template <class Block>
ATTNFLOW_HD void step(Block& b, const System& sys, const Shared& sh, double h, Method m, bool ready = false) {
  const int n = sys.n, d = sys.d, ds = stride(d);
  if (m == Method::residual) {  // x_i <- (x_i + h a_i) / |x_i + h a_i|, a unprojected
    field(b, sys, sh, sh.x, sh.a, false, ready);
    b.run([&](int tid, int nt) {
      for (int idx = tid; idx < n * d; idx += nt) {
        const int i = idx / d, k = idx - i * d;
        sh.x[i * ds + k] = fma(h, sh.a[i * ds + k], sh.x[i * ds + k]);
      }
    });
  } else if (m == Method::euler) {
    field(b, sys, sh, sh.x, sh.a, true, ready);
    axpy(b, sys, sh.x, h, sh.a, sh.x);
  } else {  // rk4: x + (h / 6) (k1 + 2 k2 + 2 k3 + k4), stages at x + h/2 k1, x + h/2 k2, x + h k3
    field(b, sys, sh, sh.x, sh.a, true, ready);
    b.run([&](int tid, int nt) {
      for (int idx = tid; idx < n * d; idx += nt) {
        const int i = idx / d, k = idx - i * d;
        sh.acc[i * ds + k] = sh.a[i * ds + k];
        sh.xs[i * ds + k] = sh.x[i * ds + k] + 0.5 * h * sh.a[i * ds + k];
      }
    });
    for (int stage = 2; stage <= 4; ++stage) {
      field(b, sys, sh, sh.xs, sh.a, true);
      const double w = stage == 4 ? 1.0 : 2.0;
      const double c = stage == 3 ? h : 0.5 * h;  // the next stage point's step
      b.run([&](int tid, int nt) {
        for (int idx = tid; idx < n * d; idx += nt) {
          const int i = idx / d, k = idx - i * d;
          const double ak = sh.a[i * ds + k];
          sh.acc[i * ds + k] = sh.acc[i * ds + k] + w * ak;
          if (stage < 4) sh.xs[i * ds + k] = sh.x[i * ds + k] + c * ak;
        }
      });
    }
    axpy(b, sys, sh.x, h / 6.0, sh.acc, sh.x);
  }
  normalize_rows(b, sys, sh);
}

// Advances sh.x by the steps h[0 .. steps); returns 0, or the status (or'ed codes) and in
// *failed the index of the step after which it was raised.
// ready: the first step's softmax at sh.x is in sh (observe() left it there).
template <class Block>
ATTNFLOW_HD int advance(Block& b, const System& sys, const Shared& sh, const double* h, int steps, Method m,
                        int* failed, bool ready = false) {
  *failed = -1;
  for (int t = 0; t < steps; ++t) {
    step(b, sys, sh, h[t], m, ready && t == 0);
    const int f = b.read(sh.flag);  // after the phase barrier: the same value in every thread
    if (f != 0) {
      *failed = t;
      return f;
    }
  }
  return 0;
}

// The pass of observe() over the Gram matrix of sh.x in sh.s: per row |x_i| (sh.rz), the min
// cosine (sh.r0) and links (sh.r1) over j > i; per coordinate k sum_i w_i x_ik (sh.a[k]) and
// sum_i w_i x_ik / |x_i| (sh.a[stride + k]).
template <class Block>
ATTNFLOW_HD void pair_pass(Block& b, const System& sys, const Shared& sh, double delta) {
  const int n = sys.n, d = sys.d, ds = stride(d), ss = score_stride(n);
  b.run([&](int tid, int nt) {  // row i: |x_i|, min cosine and links over j > i
    for (int i = tid; i < n; i += nt) {
      const double* si = sh.s + i * ss;
      double minc = INFINITY, links = 0.0;
      const double ri = sqrt(si[i]);
      for (int j = i + 1; j < n; ++j) {
        const double c = si[j] / (ri * sqrt(sh.s[j * ss + j]));
        minc = c < minc ? c : minc;
        if (si[j] > 1.0 - delta) links += 1.0;
      }
      sh.rz[i] = ri;
      sh.r0[i] = minc;
      sh.r1[i] = links;
    }
  });
  b.run([&](int tid, int nt) {  // coordinate k: sum_i w_i x_ik and sum_i w_i x_ik / |x_i|
    for (int k = tid; k < d; k += nt) {
      double o = 0.0, md = 0.0;
      for (int i = 0; i < n; ++i) {
        const double wx = sys.w[i] * sh.x[i * ds + k];
        o += wx;
        md += wx / sh.rz[i];
      }
      sh.a[k] = o;  // the field buffer is free in this pass
      sh.a[ds + k] = md;
    }
  });
}

// Thread 0's totals: out[0] = m + log(sum_i share_i) - log_two_beta (the shares in row order),
// and the min cosine, links and order of pair_pass.
template <class Block>
ATTNFLOW_HD void observe_totals(Block& b, const System& sys, const Shared& sh, const double* share, double m,
                                double log_two_beta, double* out) {
  const int n = sys.n, d = sys.d, ds = stride(d);
  b.run([&](int tid, int) {
    if (tid != 0) return;
    double z = 0.0, minc = INFINITY, links = 0.0;
    for (int i = 0; i < n; ++i) {  // the shares summed in row order (adding 0 changes nothing)
      z += share[i];
      minc = sh.r0[i] < minc ? sh.r0[i] : minc;
      links += sh.r1[i];
    }
    double o2 = 0.0, m2 = 0.0;
    for (int k = 0; k < d; ++k) {
      o2 += sh.a[k] * sh.a[k];
      m2 += sh.a[ds + k] * sh.a[ds + k];
    }
    out[0] = m + log(z) - log_two_beta;
    out[1] = minc;
    out[2] = links;
    out[3] = sqrt(o2);
    out[4] = m2;
  });
}

// The pair observables of the state sh.x (batch_kernel.hpp's BatchPairObservables): out[0]
// log energy log((1 / (2 beta)) sum_ij w_i w_j e^{beta <x_i, x_j>}), out[1] min over i < j of
// the cosine, out[2] pairs i < j with <x_i, x_j> > 1 - delta, out[3] |sum_i w_i x_i|, out[4]
// |sum_i w_i x_i / |x_i||^2. log_two_beta: log(2 beta) of the energy's beta.
// When beta is the system's own (a run observes at its betas), the energy comes from the
// field's softmax at sh.x, log E = logsumexp_i(log w_i + lse_i) - log(2 beta), and that softmax
// is left in sh for the next step (returns true: its field evaluation at sh.x skips its Gram
// pass and exponentials). Otherwise from the terms beta <x_i, x_j> + log w_i + log w_j (false).
template <class Block>
ATTNFLOW_HD bool observe(Block& b, const System& sys, const Shared& sh, double beta, double log_two_beta,
                         double delta, double* out) {
  const int n = sys.n, ss = score_stride(n);
  gram(b, sys, sh.x, sh.s);
  pair_pass(b, sys, sh, delta);
  if (beta == sys.beta) {
    softmax_of_gram(b, sys, sh);  // the Gram matrix is in sh.s; |x_i| (rz) is no longer needed
    // Row i's share e^{log w_i + lse_i - m} (m the largest log w_j + lse_j, found by every
    // thread in the same order; 0 for a row of weight 0) into r2 (z_i is no longer needed).
    double m = -INFINITY;
    for (int j = 0; j < n; ++j) m = sys.log_w[j] + sh.lse[j] > m ? sys.log_w[j] + sh.lse[j] : m;
    b.run([&](int tid, int nt) {
      for (int i = tid; i < n; i += nt) {
        const double term = sys.log_w[i] + sh.lse[i];
        sh.r2[i] = term > -INFINITY ? exp(term - m) : 0.0;
      }
    });
    observe_totals(b, sys, sh, sh.r2, m, log_two_beta, out);
    return true;
  }
  // The energy terms beta <x_i, x_j> + log w_i + log w_j, row i's maximum m_i, e^{term - m_i}
  // (0 in a row of weight 0, m_i = -inf) and their row sums z_i.
  b.run([&](int tid, int nt) {
    for (int idx = tid; idx < n * n; idx += nt) {
      const int i = idx / n, j = idx - i * n;
      sh.s[i * ss + j] = beta * sh.s[i * ss + j] + sys.log_w[i] + sys.log_w[j];
    }
  });
  exp_rows(b, n, sh.s, sh.lse, sh.r2);
  // Row i's share z_i e^{m_i - m} of the total (m the largest m_i, found by every thread in the
  // same order; 0 for a row of weight 0), one thread a row; |x_i| (rz) is no longer needed.
  double m = -INFINITY;
  for (int j = 0; j < n; ++j) m = sh.lse[j] > m ? sh.lse[j] : m;
  b.run([&](int tid, int nt) {
    for (int i = tid; i < n; i += nt) sh.rz[i] = sh.r2[i] > 0.0 ? sh.r2[i] * exp(sh.lse[i] - m) : 0.0;
  });
  observe_totals(b, sys, sh, sh.rz, m, log_two_beta, out);
  return false;
}

// advance() with observations on the way: after obs_after[0] <= obs_after[1] <= ... <=
// obs_after[obs_count - 1] of the steps h[0 .. steps) (counts of steps taken, in [0, steps]),
// observe() into out + k out_stride, then the remaining steps. A run observed at many times
// takes them in one pass (one launch on the GPU). Returns as advance(), *failed the index into
// h; the observations after a failure are not made.
template <class Block>
ATTNFLOW_HD int advance_observing(Block& b, const System& sys, const Shared& sh, const double* h, int steps, Method m,
                                  const int* obs_after, int obs_count, double beta, double log_two_beta, double delta,
                                  double* out, std::ptrdiff_t out_stride, int* failed) {
  int done = 0;
  bool ready = false;  // the softmax at sh.x is in sh (left by an observation)
  for (int k = 0; k <= obs_count; ++k) {
    const int until = k < obs_count ? obs_after[k] : steps;
    const int code = advance(b, sys, sh, h + done, until - done, m, failed, ready);
    if (code != 0) {
      *failed += done;
      return code;
    }
    ready = ready && until == done;
    done = until;
    if (k < obs_count) ready = observe(b, sys, sh, beta, log_two_beta, delta, out + k * out_stride);
  }
  return 0;
}

}  // namespace attnflow::batch_step
