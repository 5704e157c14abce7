// Starts shared by the runs of one sweep. A sweep over beta (or gamma) runs the same systems
// from the same points at every grid point (same measure, seed and systems): the first point
// to need them samples them and leaves them here, the other points start from them instead of
// sampling 2048 x n x d normals again. On the reduced batched path (Ensemble::reduces_span,
// d > n) what is left is the systems' span form, Ensemble::SpanStart: the QR of every system is
// shared too, and so is the memory of the bases. A run started from the cache is the same, bit
// for bit, as one that sampled its own points.
#pragma once

#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "attnflow/flow/ensemble.hpp"

namespace attnflow {

class StartCache {
 public:
  // Holds the `capacity` most recently inserted starts (a sweep's points run in grid order a
  // few at a time, so the points that share a start run close together; memory stays bounded
  // when they do not, as in a sweep over the seed).
  explicit StartCache(std::size_t capacity = 2) : capacity_(capacity) {}
  // The systems' initial points (d <= n: small), or their span form (d > n, the reduced
  // path), or neither (nothing to share: the systems were not of the kind the cache keeps).
  struct Start {
    std::shared_ptr<const std::vector<Matrix>> points;
    std::shared_ptr<const Ensemble::SpanStart> span;
  };
  // The start stored under key. When there is none, the first caller runs make() (its
  // result, possibly empty, is stored; an exception passes to that caller and stores nothing)
  // while callers with the same key wait for it: points that run at once sample and reduce
  // their points once, not once each. Thread-safe.
  Start find_or_make(const std::string& key, const std::function<Start()>& make);

 private:
  struct Entry {
    std::string key;
    std::shared_future<Start> start;
  };
  std::size_t capacity_;
  std::mutex mu_;
  std::vector<Entry> recent_;  // oldest first
};

}  // namespace attnflow
