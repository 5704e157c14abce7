// The model file format against its documentation (M7 and H2): a file written here
// byte by byte to the documented layout (model.hpp) with the standard FNV-1a 64 is read, files
// of the earlier (non-standard offset basis) writer still are, and a header whose dimensions
// need more bytes than the file holds is refused before anything is allocated.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "attnflow/model/model.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::throws_with;

// FNV-1a 64 as published (offset basis 14695981039346656037, prime 1099511628211).
std::uint64_t fnv1a_64(const std::string& s, std::uint64_t basis = 14695981039346656037ULL) {
  std::uint64_t h = basis;
  for (const unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

template <typename T>
void put(std::string& out, T x) {
  out.append(reinterpret_cast<const char*>(&x), sizeof(T));
}

// Magic, version 1, d = 1, one MLP layer with hidden = 1: w1 = 2, b1 = -1, w2 = 3, b2 = 0.5.
std::string spec_mlp_body() {
  std::string b = "ATFMODEL";
  put<std::uint32_t>(b, 1);
  put<std::uint32_t>(b, 1);
  put<std::uint32_t>(b, 1);
  put<std::uint32_t>(b, 2);
  put<std::uint32_t>(b, 1);
  for (const double v : {2.0, -1.0, 3.0, 0.5}) put<double>(b, v);
  return b;
}

TEST(ModelFormatSpec, OwnFnvMatchesThePublishedVectors) {
  // Test vectors of the FNV reference (draft-eastlake-fnv): "" and "a".
  EXPECT_EQ(fnv1a_64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a_64("a"), 0xaf63dc4c8601ec8cULL);
}

TEST(ModelFormatSpec, ReadsAFileWrittenToTheDocumentedSpec) {
  std::string file = spec_mlp_body();
  put<std::uint64_t>(file, fnv1a_64(file));
  const Model m = model_from_bytes(file, "spec.afm");
  ASSERT_EQ(m.dim, 1);
  ASSERT_EQ(m.layers.size(), 1u);
  const auto& mlp = std::get<MlpLayer>(m.layers[0]);
  EXPECT_EQ(mlp.w1(0, 0), 2.0);
  EXPECT_EQ(mlp.b1[0], -1.0);
  EXPECT_EQ(mlp.w2(0, 0), 3.0);
  EXPECT_EQ(mlp.b2[0], 0.5);
  // And the writer produces exactly that file: same layout, standard checksum.
  EXPECT_EQ(model_to_bytes(m), file);
}

TEST(ModelFormatSpec, FilesOfTheEarlierWriterAreStillRead) {
  std::string file = spec_mlp_body();
  put<std::uint64_t>(file, fnv1a_64(file, 1469598103934665603ULL));
  const Model m = model_from_bytes(file, "old.afm");
  EXPECT_EQ(std::get<MlpLayer>(m.layers[0]).w2(0, 0), 3.0);
  std::string wrong = spec_mlp_body();
  put<std::uint64_t>(wrong, fnv1a_64(wrong, 12345));
  EXPECT_TRUE(throws_with([&] { model_from_bytes(wrong, "w.afm"); }, "w.afm: checksum mismatch"));
}

TEST(ModelFormatSpec, HugeHeadsTimesDkIsRefusedBeforeAllocating) {
  // heads = dk = 65536 (each within its bound of 2^20), checksum recomputed: this made
  // `apply` reserve 176 GB.
  std::string b = "ATFMODEL";
  put<std::uint32_t>(b, 1);
  put<std::uint32_t>(b, 2);  // d
  put<std::uint32_t>(b, 1);  // layers
  put<std::uint32_t>(b, 1);  // attention
  put<std::uint32_t>(b, 0);  // softmax
  put<double>(b, 1.0);
  put<double>(b, 1.0);
  put<std::int32_t>(b, 0);
  put<double>(b, 1e-9);
  put<std::int32_t>(b, 100);
  put<std::uint32_t>(b, 65536);
  put<std::uint32_t>(b, 65536);
  put<std::uint32_t>(b, 1);
  b.append(64, '\0');
  put<std::uint64_t>(b, fnv1a_64(b));
  EXPECT_TRUE(throws_with([&] { model_from_bytes(b, "big.afm"); },
                          "big.afm: layers[0] (heads, dk, dv) declare 65536 x 262148 = "
                          "17180131328 parameters, but the file has 64 bytes left (8 doubles)"));
  // The same for an MLP's hidden size.
  std::string m = "ATFMODEL";
  put<std::uint32_t>(m, 1);
  put<std::uint32_t>(m, 1000);
  put<std::uint32_t>(m, 1);
  put<std::uint32_t>(m, 2);
  put<std::uint32_t>(m, 1u << 20);
  put<std::uint64_t>(m, fnv1a_64(m));
  EXPECT_TRUE(throws_with([&] { model_from_bytes(m, "mlp.afm"); }, "layers[0] (hidden) declare"));
}

}  // namespace
}  // namespace attnflow
