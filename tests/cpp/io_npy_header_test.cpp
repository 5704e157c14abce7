// .npy headers from untrusted files (S4/M2/M5): negative, nested and oversized
// shapes are rejected naming the shape, sizes are checked against the bytes present before
// any allocation, and garbage headers are echoed capped and escaped.
#include <gtest/gtest.h>

#include <string>

#include "attnflow/io/npy.hpp"
#include "test_util.hpp"

namespace attnflow {
namespace {

using test::make_npy;

using test::throws_with;

std::string with_shape(const std::string& shape) {
  return make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': " + shape + ", }",
                  std::string(20 * 3 * 8, '\0'));
}

TEST(NpyHeader, NegativeAndNestedShapesAreRejected) {
  // Before the fix each of these was read as (20, 3).
  EXPECT_TRUE(throws_with([] { parse_npy(with_shape("(-20, 3)"), "a.npy"); },
                          "npy: a.npy: shape = (-20, 3), must be a tuple of non-negative integers"));
  EXPECT_TRUE(throws_with([] { parse_npy(with_shape("(20, -3)"), "a.npy"); },
                          "shape = (20, -3), must be a tuple of non-negative integers"));
  EXPECT_TRUE(throws_with([] { parse_npy(with_shape("((20, 3), 3)"), "a.npy"); },
                          "must be a flat tuple of non-negative integers"));
  EXPECT_TRUE(throws_with([] { parse_npy(with_shape("(20.0, 3)"), "a.npy"); },
                          "must be a flat tuple"));
  EXPECT_TRUE(throws_with([] { parse_npy(with_shape("[20, 3]"), "a.npy"); },
                          "shape = [20, 3], must be a tuple"));
  // Valid spellings still parse: trailing comma, 1-D, spaces.
  EXPECT_EQ(parse_npy(with_shape("(20, 3,)"), "a.npy").shape, (std::vector<Index>{20, 3}));
  EXPECT_EQ(parse_npy(with_shape("(60,)"), "a.npy").shape, (std::vector<Index>{60}));
  EXPECT_EQ(parse_npy(with_shape("( 4 ,5 )"), "a.npy").shape, (std::vector<Index>{4, 5}));
  EXPECT_EQ(parse_npy(with_shape("(0, 3)"), "a.npy").data.size(), 0u);
}

TEST(NpyHeader, HugeShapesAreSizeErrorsNotAllocationFailures) {
  // (1, 2^61) used to reach vector::_M_default_append; a 29-digit dimension reached stoll.
  EXPECT_TRUE(throws_with([] { parse_npy(with_shape("(1, 2305843009213693952)"), "a.npy"); },
                          "shape = (1, 2305843009213693952), must be a tuple of integers <= "
                          "9007199254740992"));
  EXPECT_TRUE(throws_with([] { parse_npy(with_shape("(1, 4503599627370496)"), "a.npy"); },
                          "truncated: data has 480 bytes, header shape (1, 4503599627370496) "
                          "needs more"));
  EXPECT_TRUE(throws_with([] { parse_npy(with_shape("(4294967296, 4294967296)"), "a.npy"); },
                          "needs more"));
  EXPECT_TRUE(throws_with(
      [] { parse_npy(with_shape("(12345678901234567890123456789, 3)"), "a.npy"); },
      "must be a tuple of integers <= 9007199254740992"));
  // A zero dimension makes the array empty whatever the others say.
  EXPECT_EQ(parse_npy(with_shape("(0, 9007199254740992)"), "a.npy").data.size(), 0u);
}

TEST(NpyHeader, GarbageHeadersAreEchoedCappedAndEscaped) {
  std::string garbage = "{'descr': '<f8', 'shape': (2,), \x01\x02\xff";
  garbage += std::string(5000, 'z');
  try {
    parse_npy(make_npy(garbage, ""), "g.npy");
    FAIL() << "did not throw";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("malformed header"), std::string::npos) << msg;
    EXPECT_NE(msg.find("\\x01\\x02\\xff"), std::string::npos) << msg;
    EXPECT_NE(msg.find("bytes in all)"), std::string::npos) << msg;
    EXPECT_LT(msg.size(), 300u);
    for (const char c : msg) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << msg;
  }
}

}  // namespace
}  // namespace attnflow
