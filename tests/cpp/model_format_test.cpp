// Model file format (model.hpp): round trip bit for bit, and clear rejection of corrupt,
// truncated and other-version files.
#include <gtest/gtest.h>

#include <cstring>

#include "attnflow/model/model.hpp"
#include "model_test_util.hpp"

namespace attnflow {
namespace {

using test::throws_with;

Model mixed_model() {
  Rng rng(31);
  Model m = test::small_model(Normalization::sinkhorn, 3, 2, 5, rng);
  Model s = test::small_model(Normalization::none, 3, 1, 0, rng);
  m.layers.push_back(s.layers[0]);
  auto& a = std::get<AttentionLayer>(m.layers[0]);
  a.sinkhorn = {0, 1e-7, 321};
  a.beta = 0.1 + 1e-17;  // a value %.17g-printing would not keep exactly
  return m;
}

TEST(ModelFormat, RoundTripsBitForBit) {
  const Model m = mixed_model();
  const std::string bytes = model_to_bytes(m);
  const Model back = model_from_bytes(bytes);
  EXPECT_EQ(model_to_bytes(back), bytes);
  ASSERT_EQ(back.layers.size(), m.layers.size());
  const auto& a = std::get<AttentionLayer>(back.layers[0]);
  const auto& a0 = std::get<AttentionLayer>(m.layers[0]);
  EXPECT_EQ(std::memcmp(&a.beta, &a0.beta, sizeof(double)), 0);
  EXPECT_EQ(a.sinkhorn.max_iterations, 321);
  EXPECT_EQ(a.sinkhorn.iterations, 0);
  EXPECT_EQ(a.normalization, Normalization::sinkhorn);
  EXPECT_EQ(std::get<AttentionLayer>(back.layers[4]).normalization, Normalization::none);
  EXPECT_EQ(std::get<MlpLayer>(back.layers[1]).b2, std::get<MlpLayer>(m.layers[1]).b2);
  // The loaded model computes the same map bit for bit.
  Rng rng(32);
  const Measure mu(test::random_matrix(6, 3, rng));
  EXPECT_EQ(transport(back, mu), transport(m, mu));
}

TEST(ModelFormat, RejectsCorruptTruncatedAndOtherVersions) {
  const std::string bytes = model_to_bytes(mixed_model());
  EXPECT_TRUE(throws_with([&] { model_from_bytes("hello world, not a model", "m.afm"); },
                          "m.afm: not an attnflow model file"));
  EXPECT_TRUE(throws_with([&] { model_from_bytes(bytes.substr(0, bytes.size() - 9), "m.afm"); },
                          "m.afm: checksum mismatch (the file is corrupt or was truncated)"));
  EXPECT_TRUE(throws_with([&] { model_from_bytes(bytes.substr(0, 14), "m.afm"); }, "m.afm: truncated"));
  std::string flipped = bytes;
  flipped[100] = static_cast<char>(flipped[100] ^ 0x10);
  EXPECT_TRUE(throws_with([&] { model_from_bytes(flipped, "m.afm"); }, "checksum mismatch"));
  std::string other = bytes;
  other[8] = 2;  // version field
  EXPECT_TRUE(throws_with([&] { model_from_bytes(other, "m.afm"); },
                          "m.afm: format version = 2, must be 1"));
  EXPECT_TRUE(throws_with([&] { model_from_bytes(bytes + "x", "m.afm"); }, "checksum mismatch"));
}

}  // namespace
}  // namespace attnflow
