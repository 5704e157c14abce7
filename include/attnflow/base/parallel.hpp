// Thread count used by every parallel loop in attnflow (OpenMP). Work is always split into
// fixed tiles whose reduction order does not depend on this number, so results are
// bit-identical on 1 thread or many (docs/ARCHITECTURE.md, "Determinism by construction").
#pragma once

#include <cstdint>
#include <exception>
#include <mutex>

namespace attnflow {

// Sets the number of threads; 0 restores the default (OpenMP's, e.g. OMP_NUM_THREADS).
void set_num_threads(int threads);
// The number of threads parallel loops will use (>= 1).
int num_threads();
// The other process-wide compute setting, the device (cpu or cuda) of every reduction, is
// set_device() / current_device() in attnflow/kernel/kernel_cuda.hpp (it needs the kernel).

// No exception may leave an OpenMP region (the program would abort): each
// iteration's body runs through run(k, f), which keeps the exception of the lowest k (the
// same one whatever the thread count), and rethrow() raises it after the region.
class ParallelErrors {
 public:
  template <typename F>
  void run(std::int64_t k, F&& f) noexcept {
    try {
      f();
    } catch (...) {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (!error_ || k < index_) {
        error_ = std::current_exception();
        index_ = k;
      }
    }
  }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr error_;
  std::int64_t index_ = 0;
};

}  // namespace attnflow
