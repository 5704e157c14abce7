// One attention head, the one type that attention (AttentionOptions::heads), model layers
// (AttentionLayer::heads) and flows (FlowOptions::heads) share, with its one shape check.
// It lives in attention/, the lowest module the three users depend on (flow/ and model/ link
// attnflow_attention; docs/ARCHITECTURE.md).
#pragma once

#include <string_view>

#include "attnflow/base/types.hpp"

namespace attnflow {

// A head maps queries x (d_query), keys y (d_key) and values v (p) to
//   s(x, y) = beta <q x, k y>,   out = w sum_j P_j v v_j
// Shapes:
//   q: (d_k, d_query)   k: (d_k, d_key)   v: (d_v, p)   w: (d_out, d_v)
// An empty (0 x 0) matrix stands for the identity (q empty: d_k = d_query; v empty:
// d_v = p; w empty: d_out = d_v). Who allows what (validate_head's HeadShape):
//   attention  every matrix may be empty; any d_k, d_v, d_out (the same d_out for all heads)
//   flows      every matrix may be empty; d = d_query = d_key = p = d_out (w maps back to d)
//   layers     no matrix may be empty; d_out = d; all heads of a layer share d_k and d_v
struct Head {
  Matrix q, k, v, w;
};

// True when all four matrices are empty (the identity head).
inline bool is_identity(const Head& h) {
  return h.q.size() == 0 && h.k.size() == 0 && h.v.size() == 0 && h.w.size() == 0;
}

// Rows of x mapped by m, x m^T: (n, cols of m) -> (n, rows of m); x itself when m is empty.
inline Matrix apply_map(const Matrix& x, const Matrix& m) {
  if (m.size() == 0) return x;
  return x * m.transpose();
}
// The same product in blocks of 256 rows, each block its own product: a row's result then
// depends only on its block, the same whether a process holds every row or the rows of its
// part of points split across processes (parts cut at multiples of 256). The paths that can
// split their points (attention, flows) map with this one in every case.
Matrix apply_map_rows(const Matrix& x, const Matrix& m);

// What a user of heads requires of their shapes. -1 = free (set by the head's own matrices).
struct HeadShape {
  Index d_query = 0;  // columns of q
  Index d_key = 0;    // columns of k
  Index d_value = 0;  // columns of v (p)
  Index dk = -1;      // rows of q and k
  Index dv = -1;      // rows of v
  Index d_out = -1;   // rows of w (of v when w is empty)
  // Where fixed dk / dv come from, for messages (e.g. "heads[0]": all heads share its sizes).
  std::string_view dims_from = {};
  bool identity = true;  // empty (0 x 0) matrices allowed (= the identity)
};

// The sizes a valid head resolves to.
struct HeadDims {
  Index dk = 0, dv = 0, d_out = 0;
};

// The one shape check of a head: every matrix empty (if shape.identity) or of the shape above,
// finite. Throws std::invalid_argument naming the context and the field, e.g.
//   "layers[2]: heads[1].k has shape (3, 4), must be (2, 4) (heads[1].k has 3 rows, must be
//    d_k = 2, the rows of heads[1].q)"
// `name` is the head's own name in the context ("heads[1]").
HeadDims validate_head(const Head& head, const HeadShape& shape, std::string_view context,
                       std::string_view name);

}  // namespace attnflow
