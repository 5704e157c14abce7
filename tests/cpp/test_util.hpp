// Shared test helpers: the dense double-precision reference (the only place an n x m matrix
// of scores is materialized), tolerance checks and seeded random data.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

#include "attnflow/base/rng.hpp"
#include "attnflow/base/types.hpp"

namespace attnflow::test {

// |a - b| <= atol + rtol |ref| for every entry; reports the worst entry.
inline ::testing::AssertionResult all_close(const Matrix& a, const Matrix& ref, double rtol,
                                            double atol) {
  if (a.rows() != ref.rows() || a.cols() != ref.cols())
    return ::testing::AssertionFailure() << "shape " << a.rows() << "x" << a.cols() << " vs "
                                         << ref.rows() << "x" << ref.cols();
  for (Index i = 0; i < a.rows(); ++i)
    for (Index j = 0; j < a.cols(); ++j) {
      const double d = std::abs(a(i, j) - ref(i, j));
      if (!(d <= atol + rtol * std::abs(ref(i, j))))
        return ::testing::AssertionFailure() << "entry (" << i << ", " << j << "): " << a(i, j)
                                             << " vs reference " << ref(i, j) << " (diff " << d << ")";
    }
  return ::testing::AssertionSuccess();
}
inline ::testing::AssertionResult all_close(const Vector& a, const Vector& ref, double rtol,
                                            double atol) {
  return all_close(Matrix(a.transpose()), Matrix(ref.transpose()), rtol, atol);
}

// Dense reference of the kernel: S = U V^T + col (materialized), max-shifted row softmax in
// long double-free plain double, then lse and P vals. Written independently of the kernel.
struct DenseResult {
  Vector lse;
  Matrix out;
};
inline DenseResult dense_lse_reduce(const Matrix& u, const Matrix& v, const Vector& col,
                                    const Matrix& vals) {
  Matrix s = u * v.transpose();
  if (col.size()) s.rowwise() += col.transpose();
  DenseResult r;
  r.lse.resize(s.rows());
  r.out = Matrix::Zero(s.rows(), vals.cols());
  for (Index i = 0; i < s.rows(); ++i) {
    const double m = s.row(i).maxCoeff();
    double sum = 0.0;
    for (Index j = 0; j < s.cols(); ++j) {
      const double e = std::exp(s(i, j) - m);
      sum += e;
      if (vals.cols()) r.out.row(i) += e * vals.row(j);
    }
    r.lse[i] = m + std::log(sum);
    if (vals.cols()) r.out.row(i) /= sum;
  }
  return r;
}

inline Matrix random_matrix(Index rows, Index cols, Rng& rng, double scale = 1.0) {
  Matrix a(rows, cols);
  rng.fill_normal(a);
  return a * scale;
}

inline Vector random_weights(Index n, Rng& rng) {
  Vector w(n);
  for (Index i = 0; i < n; ++i) w[i] = 0.1 + rng.uniform();
  return w / w.sum();
}

// Expects that f() throws std::invalid_argument whose message contains `text`.
template <typename F>
::testing::AssertionResult throws_with(F&& f, const std::string& text) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    if (std::string(e.what()).find(text) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "message \"" << e.what() << "\" lacks \"" << text << "\"";
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw another exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw (expected \"" << text << "\")";
}

// Bit-for-bit equality: same shape and the same bytes (memcmp of an empty array's null data
// would be undefined behaviour, hence the size test).
inline bool bit_equal(const Matrix& a, const Matrix& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), sizeof(double) * static_cast<std::size_t>(a.size())) == 0);
}
inline bool bit_equal(const Vector& a, const Vector& b) {
  return a.size() == b.size() &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), sizeof(double) * static_cast<std::size_t>(a.size())) == 0);
}
inline bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

// The pid of a process that has exited and been reaped: the temporaries it names are stale.
inline long dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return static_cast<long>(pid);
}

// A hand-made version-1 .npy file (independent of the library's writer) with the given header
// dict and payload.
inline std::string make_npy(const std::string& dict, const std::string& payload) {
  std::string header = dict;
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY\x01";
  out.push_back(0);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header + payload;
}

// <tmp>/attnflow_tests_<pid>/<name>, removed if present; its parent exists.
inline std::string fresh_dir(const std::string& name) {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / ("attnflow_tests_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir.parent_path());
  return dir.string();
}

}  // namespace attnflow::test
