// The one attention head (head.hpp): validate_head's shapes, sizes and messages (context and
// field named), and attention's options rejecting a bad head through it. The model layer's and
// the flow's use of the same check are tested in model_layers_test.cpp and flow_fields_test.cpp.
#include "attnflow/attention/head.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "attnflow/attention/attention.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::throws_with;

TEST(Head, ValidHeadsResolveTheirSizes) {
  const HeadShape any{.d_query = 4, .d_key = 4, .d_value = 3};
  // Identity head: d_k = d_query, d_v = p, d_out = d_v.
  HeadDims dims = validate_head(Head{}, any, "ctx", "heads[0]");
  EXPECT_EQ(dims.dk, 4);
  EXPECT_EQ(dims.dv, 3);
  EXPECT_EQ(dims.d_out, 3);
  dims = validate_head(Head{Matrix::Ones(2, 4), Matrix::Ones(2, 4), Matrix::Ones(5, 3),
                            Matrix::Ones(6, 5)},
                       any, "ctx", "heads[0]");
  EXPECT_EQ(dims.dk, 2);
  EXPECT_EQ(dims.dv, 5);
  EXPECT_EQ(dims.d_out, 6);
  // w empty with d_out fixed: v carries the output dimension.
  dims = validate_head(Head{{}, {}, Matrix::Ones(3, 3), {}},
                       {.d_query = 3, .d_key = 3, .d_value = 3, .d_out = 3}, "ctx", "heads[0]");
  EXPECT_EQ(dims.d_out, 3);
  EXPECT_TRUE(is_identity(Head{}));
  EXPECT_FALSE(is_identity(Head{{}, {}, {}, Matrix::Ones(1, 1)}));
}

TEST(Head, EveryBadShapeIsNamedWithContextFieldAndRule) {
  const HeadShape any{.d_query = 4, .d_key = 4, .d_value = 3};
  const auto check = [](const Head& h, const HeadShape& s) {
    return [h, s] { validate_head(h, s, "layers[2]", "heads[1]"); };
  };
  // Columns: the dimension of what the matrix maps.
  EXPECT_TRUE(throws_with(check(Head{Matrix::Ones(2, 5), {}, {}, {}}, any),
                          "layers[2]: heads[1].q has shape (2, 5), must be (d_k, 4) "
                          "(heads[1].q has 5 columns, must be 4, the queries' dimension)"));
  EXPECT_TRUE(throws_with(check(Head{{}, {}, Matrix::Ones(2, 4), {}}, any),
                          "layers[2]: heads[1].v has shape (2, 4), must be (d_v, 3) "
                          "(heads[1].v has 4 columns, must be 3, the values' dimension)"));
  EXPECT_TRUE(throws_with(check(Head{{}, {}, Matrix::Ones(2, 3), Matrix::Ones(3, 3)}, any),
                          "layers[2]: heads[1].w has shape (3, 3), must be (d_out, 2) "
                          "(heads[1].w has 3 columns, must be 2, d_v: the rows of heads[1].v)"));
  // Rows: k shares q's d_k (or the queries' dimension when q is the identity).
  EXPECT_TRUE(throws_with(check(Head{Matrix::Ones(2, 4), Matrix::Ones(3, 4), {}, {}}, any),
                          "layers[2]: heads[1].k has shape (3, 4), must be (2, 4) "
                          "(heads[1].k has 3 rows, must be d_k = 2, the rows of heads[1].q)"));
  EXPECT_TRUE(throws_with(check(Head{{}, Matrix::Ones(3, 4), {}, {}}, any),
                          "heads[1].k has 3 rows, must be d_k = 4, the queries' dimension "
                          "(heads[1].q is the identity)"));
  EXPECT_TRUE(throws_with(check(Head{Matrix::Ones(2, 4), {}, {}, {}}, any),
                          "layers[2]: heads[1].k is empty (the identity, (4, 4)), must be (2, 4)"));
  // Fixed sizes shared with another head.
  HeadShape shared{.d_query = 4, .d_key = 4, .d_value = 4, .dk = 2, .dv = 2, .d_out = 4,
                   .dims_from = "heads[0]", .identity = false};
  EXPECT_TRUE(throws_with(
      check(Head{Matrix::Ones(3, 4), Matrix::Ones(3, 4), Matrix::Ones(2, 4), Matrix::Ones(4, 2)},
            shared),
      "layers[2]: heads[1].q has shape (3, 4), must be (2, 4) (heads[1].q has 3 rows, must be "
      "d_k = 2, as in heads[0])"));
  // The output dimension: rows of w, or of v when w is empty.
  const HeadShape out4{.d_query = 4, .d_key = 4, .d_value = 4, .d_out = 4};
  EXPECT_TRUE(throws_with(check(Head{{}, {}, Matrix::Ones(2, 4), Matrix::Ones(3, 2)}, out4),
                          "heads[1].w has 3 rows, must be d_out = 4"));
  EXPECT_TRUE(throws_with(check(Head{{}, {}, Matrix::Ones(2, 4), {}}, out4),
                          "layers[2]: heads[1].v has shape (2, 4), must be (4, 4) (heads[1].v has "
                          "2 rows, must be d_out = 4 while heads[1].w is empty (the identity))"));
  // Empty: (0, 3) is never the identity; (0, 0) is not allowed where identity is false.
  EXPECT_TRUE(throws_with(check(Head{Matrix(0, 4), {}, {}, {}}, any),
                          "layers[2]: heads[1].q has shape (0, 4), must have >= 1 row and column "
                          "(or be empty (0, 0) for the identity)"));
  EXPECT_TRUE(throws_with(check(Head{{}, Matrix::Ones(2, 4), Matrix::Ones(2, 4), Matrix::Ones(4, 2)},
                                shared),
                          "layers[2]: heads[1].q has shape (0, 0), must be (2, 4) (heads[1].q is "
                          "empty, and here an empty matrix is not the identity"));
  // Finite entries.
  Matrix bad = Matrix::Ones(2, 4);
  bad(1, 2) = std::nan("");
  EXPECT_TRUE(throws_with(check(Head{bad, Matrix::Ones(2, 4), {}, {}}, any),
                          "layers[2]: heads[1].q[1, 2] = nan, must be finite"));
}

TEST(Head, AttentionOptionsRejectABadHeadThroughTheOneCheck) {
  const Measure mu(Matrix::Ones(5, 3));
  AttentionOptions opt;
  opt.heads.push_back(AttentionHead{Matrix::Ones(2, 3), Matrix::Ones(2, 3), {}, {},
                                    Normalization::softmax});
  opt.heads.push_back(AttentionHead{Matrix::Ones(2, 3), Matrix::Ones(4, 3), {}, {},
                                    Normalization::none});
  EXPECT_TRUE(throws_with([&] { self_attention(mu, opt); },
                          "attention: heads[1].k has shape (4, 3), must be (2, 3) (heads[1].k has "
                          "4 rows, must be d_k = 2, the rows of heads[1].q)"));
  // Heads must agree on the output dimension (a multi-head rule, not a one-head one).
  opt.heads[1] = AttentionHead{{}, {}, {}, Matrix::Ones(2, 3), Normalization::none};
  EXPECT_TRUE(throws_with([&] { self_attention(mu, opt); },
                          "attention: heads[1] output dimension = 2, must equal heads[0]'s (3)"));
  opt.heads[1].w = Matrix::Ones(3, 3);
  EXPECT_EQ(self_attention(mu, opt).out.cols(), 3);
}

}  // namespace
}  // namespace attnflow
