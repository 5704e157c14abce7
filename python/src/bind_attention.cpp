// Bindings of attention on measures (docs/math.md section 1): softmax | sinkhorn | none,
// multi-head, with the CLI's argument conventions (keys default to the queries, values to the
// keys).
#include <fmt/format.h>

#include <tuple>

#include "attnflow/attention/attention.hpp"
#include "attnflow/attention/attention_grad.hpp"
#include "attnflow/attention/normalization.hpp"
#include "bind.hpp"

namespace attnflow::py_bind {

namespace {

struct AttentionCall {
  std::optional<Measure> queries, keys;
  std::optional<Matrix> values;
  AttentionOptions options;
};

// Same defaults as `attnflow attention`: y = None -> keys are the queries (with their
// weights), v = None -> values are the keys' points, q/k = None -> identity.
AttentionCall make_call(const py::object& x, const py::object& y, const py::object& v,
                        const py::object& wx, const py::object& wy, double beta,
                        const py::object& q, const py::object& k, const std::string& normalization,
                        const py::object& heads, int sinkhorn_iterations, double tol,
                        int max_iterations) {
  AttentionCall c;
  c.queries.emplace(points_arg(x, "attention", "x"), vector_or_empty(wx, "wx"),
                    "queries (x, wx)");
  Vector wkeys = vector_or_empty(wy, "wy");
  if (y.is_none() && wy.is_none()) wkeys = c.queries->weights();
  const Matrix ykeys = y.is_none() ? c.queries->points() : points_arg(y, "attention", "y");
  c.keys.emplace(ykeys, wkeys, "keys (y, wy)");
  if (!v.is_none()) c.values = matrix_or_empty(v, "v");
  c.options.beta = beta;
  c.options.normalization = parse_normalization(normalization, "attention: normalization");
  if (!heads.is_none()) {
    c.options.heads = heads.cast<std::vector<AttentionHead>>();
    if (c.options.heads.empty())
      throw std::invalid_argument(
          "attention: heads = [], must be a non-empty list of AttentionHead (None = one "
          "identity head)");
    if (!q.is_none() || !k.is_none())
      throw std::invalid_argument("attention: q/k and heads both given, must give one of them");
  } else if (!q.is_none() || !k.is_none()) {
    AttentionHead h;
    h.q = matrix_or_empty(q, "q");
    h.k = matrix_or_empty(k, "k");
    // An empty array is not the identity (that is None): (0, 3), (20, 0), (0, 0) are errors.
    for (const auto& [name, given, mat] : {std::tuple{"q", &q, &h.q}, std::tuple{"k", &k, &h.k}})
      if (!given->is_none() && mat->size() == 0)
        throw std::invalid_argument(fmt::format(
            "attention: {} has shape ({}, {}), must be (d_k, d) with d_k, d >= 1 (None = identity)",
            name, mat->rows(), mat->cols()));
    h.normalization = c.options.normalization;
    c.options.heads.push_back(std::move(h));
  }
  c.options.sinkhorn.iterations = sinkhorn_iterations;
  c.options.sinkhorn.tol = tol;
  c.options.sinkhorn.max_iterations = max_iterations;
  return c;
}

AttentionResult run_call(const AttentionCall& c) {
  py::gil_scoped_release release;
  return attention(*c.queries, *c.keys, c.values, c.options);
}

constexpr const char* kAttentionDoc =
    "Attention between weighted point clouds (docs/math.md section 1).\n"
    "x (n, d) queries, y (m, d) keys (default x), v (m, p) values (default y), wx (n) / wy (m) "
    "weights (default uniform; with y=None the keys take wx), q, k (d_k, d) (default "
    "identity), heads: list of AttentionHead (instead of q, k). Affinity s_ij = beta <Q x_i, K "
    "y_j>; normalization 'softmax' (P_ij = b_j k_ij / sum_l b_l k_il), 'sinkhorn' (pi_ij / a_i, "
    "pi in Pi(a, b); sinkhorn_iterations > 0 fixes the number of f-updates, else iterate to "
    "tol) or 'none' (b_j k_ij).";

// Static so that the docstrings outlive the module definition.
const std::string kAttentionOutDoc = std::string(kAttentionDoc) + "\nReturns out (n, p).";
const std::string kAttentionResultDoc =
    std::string(kAttentionDoc) + "\nReturns AttentionResult (out, lse per head, status per head).";

void bind_attention_types(py::module_& m) {
  py::enum_<Normalization> ne(m, "Normalization", "softmax | sinkhorn | none");
  ne.value("softmax", Normalization::softmax)
      .value("sinkhorn", Normalization::sinkhorn)
      .value("none", Normalization::none);
  accept_names(ne, [](const std::string& s) { return parse_normalization(s); });
  m.def("parse_normalization", &parse_normalization, py::arg("name"),
        py::arg("context") = "normalization");
  py::class_<SinkhornNormalizationOptions>(m, "SinkhornNormalizationOptions")
      .def(py::init<>())
      .def_readwrite("iterations", &SinkhornNormalizationOptions::iterations)
      .def_readwrite("tol", &SinkhornNormalizationOptions::tol)
      .def_readwrite("max_iterations", &SinkhornNormalizationOptions::max_iterations);
  py::class_<NormalizationStatus>(m, "NormalizationStatus")
      .def(py::init<>())
      .def_readwrite("iterations", &NormalizationStatus::iterations)
      .def_readwrite("marginal_error", &NormalizationStatus::marginal_error)
      .def_readwrite("converged", &NormalizationStatus::converged)
      .def_readwrite("message", &NormalizationStatus::message);
  py::class_<SinkhornStats>(m, "SinkhornStats",
                            "statuses of many Sinkhorn solves (every head of every layer run)")
      .def(py::init<>())
      .def_readonly("solves", &SinkhornStats::solves)
      .def_readonly("not_converged", &SinkhornStats::not_converged)
      .def_readonly("max_iterations", &SinkhornStats::max_iterations)
      .def_readonly("max_marginal_error", &SinkhornStats::max_marginal_error)
      .def_readonly("message", &SinkhornStats::message, "the first miss")
      .def_property_readonly("converged", &SinkhornStats::converged, "no solve missed its tol");
  // The one head type of attention, model layers and flows (head.hpp); FlowHead is its alias.
  py::class_<Head>(m, "Head",
                   "One attention head: q (d_k, d_query), k (d_k, d_key), v (d_v, p), w (d_out, "
                   "d_v); None / empty = identity (attention, flows; model layers need all four)")
      .def(py::init([](const py::object& q, const py::object& k, const py::object& v,
                       const py::object& w) {
             return Head{matrix_or_empty(q, "q"), matrix_or_empty(k, "k"),
                         matrix_or_empty(v, "v"), matrix_or_empty(w, "w")};
           }),
           py::arg("q") = py::none(), py::arg("k") = py::none(), py::arg("v") = py::none(),
           py::arg("w") = py::none())
      .def_readwrite("q", &Head::q)
      .def_readwrite("k", &Head::k)
      .def_readwrite("v", &Head::v)
      .def_readwrite("w", &Head::w)
      .def("is_identity", [](const Head& h) { return is_identity(h); },
           "all four matrices empty");
  py::class_<AttentionHead, Head>(
      m, "AttentionHead",
      "One head (a Head: q, k (d_k, d), v (p_h, p), w (d_out, p_h); empty = identity) with its "
      "normalization")
      .def(py::init([](const py::object& q, const py::object& k, const py::object& v,
                       const py::object& w, const std::string& normalization) {
             return AttentionHead{
                 matrix_or_empty(q, "q"), matrix_or_empty(k, "k"), matrix_or_empty(v, "v"),
                 matrix_or_empty(w, "w"),
                 parse_normalization(normalization, "AttentionHead: normalization")};
           }),
           py::arg("q") = py::none(), py::arg("k") = py::none(), py::arg("v") = py::none(),
           py::arg("w") = py::none(), py::arg("normalization") = "softmax")
      .def_readwrite("normalization", &AttentionHead::normalization);
  py::class_<AttentionOptions>(m, "AttentionOptions")
      .def(py::init<>())
      .def_readwrite("beta", &AttentionOptions::beta)
      .def_readwrite("heads", &AttentionOptions::heads)
      .def_readwrite("normalization", &AttentionOptions::normalization)
      .def_readwrite("sinkhorn", &AttentionOptions::sinkhorn)
      .def("validate", &AttentionOptions::validate, py::arg("d_query"), py::arg("d_key"),
           py::arg("p"));
  py::class_<AttentionResult>(m, "AttentionResult")
      .def_readonly("out", &AttentionResult::out, "(n, d_out) attention output")
      .def_readonly("lse", &AttentionResult::lse, "per head (n) log-normalizers")
      .def_readonly("device", &AttentionResult::device, "where the reductions ran: cpu | cuda")
      .def_readonly("status", &AttentionResult::status, "per head NormalizationStatus");
}

#define ATTENTION_ARGS                                                                            \
  py::arg("x"), py::arg("y") = py::none(), py::arg("v") = py::none(), py::arg("wx") = py::none(), \
                py::arg("wy") = py::none(), py::arg("beta") = 1.0, py::arg("q") = py::none(),     \
                py::arg("k") = py::none(), py::arg("normalization") = "softmax", py::kw_only(),   \
                py::arg("heads") = py::none(),                                                  \
                py::arg("sinkhorn_iterations") = SinkhornNormalizationOptions{}.iterations,     \
                py::arg("tol") = SinkhornNormalizationOptions{}.tol,                            \
                py::arg("max_iterations") = SinkhornNormalizationOptions{}.max_iterations

const Registrar bind_attention_registrar(1, [](py::module_& m) {
  bind_attention_types(m);
  m.def(
      "attention",
      [](const py::object& x, const py::object& y, const py::object& v, const py::object& wx,
         const py::object& wy, double beta, const py::object& q, const py::object& k,
         const std::string& normalization, const py::object& heads, int iters, double tol,
         int max_iter) {
        const AttentionCall c =
            make_call(x, y, v, wx, wy, beta, q, k, normalization, heads, iters, tol, max_iter);
        return run_call(c).out;
      },
      ATTENTION_ARGS, kAttentionOutDoc.c_str());
  m.def(
      "attention_result",
      [](const py::object& x, const py::object& y, const py::object& v, const py::object& wx,
         const py::object& wy, double beta, const py::object& q, const py::object& k,
         const std::string& normalization, const py::object& heads, int iters, double tol,
         int max_iter) {
        const AttentionCall c =
            make_call(x, y, v, wx, wy, beta, q, k, normalization, heads, iters, tol, max_iter);
        return run_call(c);
      },
      ATTENTION_ARGS, kAttentionResultDoc.c_str());
  m.def(
      "attention_gradient",
      [](const py::object& x, const py::object& y, const py::object& v, const py::object& wx,
         const py::object& wy, double beta, const py::object& q, const py::object& k,
         const std::string& normalization, const py::object& heads, int iters, double tol,
         int max_iter, const MatrixRef& grad_out) {
        const AttentionCall c =
            make_call(x, y, v, wx, wy, beta, q, k, normalization, heads, iters, tol, max_iter);
        const Matrix gout(grad_out);
        AttentionGradient g;
        {
          py::gil_scoped_release release;
          g = attention_gradient(*c.queries, *c.keys, c.values, c.options, gout);
        }
        auto opt_matrix = [](const Matrix& a) -> py::object {
          return a.size() ? py::cast(a) : py::none();
        };
        // Gradients with respect to the weights as given (before normalization to sum 1).
        auto raw_weights = [](const py::object& w, const Vector& grad) -> py::object {
          if (w.is_none()) return py::none();
          return py::cast(normalized_weights_gradient(vector_or_empty(w, "weights"), grad));
        };
        py::dict d;
        d["out"] = g.result.out;
        d["dx"] = g.dx;
        d["dy"] = y.is_none() ? py::none() : py::cast(g.dy);
        if (y.is_none()) d["dx"] = py::cast(Matrix(g.dx + g.dy));  // keys are the queries
        d["dv"] = opt_matrix(g.dvalues);
        d["dwx"] = raw_weights(wx, y.is_none() && wy.is_none() ? Vector(g.dwx + g.dwy) : g.dwx);
        d["dwy"] = raw_weights(wy, g.dwy);
        d["dbeta"] = g.dbeta;
        py::list dq, dk, dvh, dw;
        for (size_t h = 0; h < g.dq.size(); ++h) {
          dq.append(opt_matrix(g.dq[h]));
          dk.append(opt_matrix(g.dk[h]));
          dvh.append(opt_matrix(g.dv[h]));
          dw.append(opt_matrix(g.dw[h]));
        }
        d["dq"] = dq;
        d["dk"] = dk;
        d["head_dv"] = dvh;
        d["head_dw"] = dw;
        d["status"] = g.result.status;
        return d;
      },
      py::arg("x"), py::arg("y") = py::none(), py::arg("v") = py::none(),
      py::arg("wx") = py::none(), py::arg("wy") = py::none(), py::arg("beta") = 1.0,
      py::arg("q") = py::none(), py::arg("k") = py::none(), py::arg("normalization") = "softmax",
      py::kw_only(), py::arg("heads") = py::none(), py::arg("sinkhorn_iterations") = SinkhornControl{}.iterations,
      py::arg("tol") = SinkhornControl{}.tol,
      py::arg("max_iterations") = SinkhornControl{}.max_iterations, py::arg("grad_out"),
      "Forward and backward pass of attention (same arguments as attention) for grad_out = "
      "dL/d out (n, d_out). Returns a dict: out, dx (n, d), dy (m, d) (None when y is None: "
      "then dx holds both), dv (m, p) (None when v is None), dwx, dwy (gradients with respect "
      "to the weights as given, None when not given), dbeta, and per head dq, dk, head_dv, "
      "head_dw (None where the head matrix is the identity), status. Sinkhorn heads are "
      "differentiated through the iterations (attention_grad.hpp).");
  m.def(
      "self_attention",
      [](const Measure& mu, const AttentionOptions& options) {
        return self_attention(mu, options);
      },
      py::arg("mu"), py::arg("options"), release_gil(),
      "Self-attention of a Measure with AttentionOptions -> AttentionResult");
});

}  // namespace

}  // namespace attnflow::py_bind
