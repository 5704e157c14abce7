// The batched ensemble on the GPU: many small systems on the sphere (SA / USA with one identity
// head), resident on the GPU, advanced by euler, residual or rk4 steps and observed there, one
// thread block per system (src/cuda/batch_step.cuh, batch_cuda.cu). Ensemble (ensemble.hpp)
// uses it when the device is cuda; this is its engine, beside batch_kernel.hpp's CPU lanes.
//
// Arithmetic: the per-system field (row-max softmax) in float64 whatever the precision
// setting, every sum in a fixed order, so runs repeat bit for bit; it agrees with the CPU
// ensemble to rounding (tests/cpp/flow_batch_step_test.cpp runs the same block algorithm on the
// host against it; tests/cuda/device_wiring_test.cpp runs it on the GPU).
// A build without the CUDA backend has these declarations: batch_cuda_refusal() says why not
// and BatchCuda's constructor throws, except in emulation: the same block algorithm run on the
// host, one system after the other (for tests of the callers; slow).
#pragma once

#include <string>
#include <vector>

#include "attnflow/base/types.hpp"

namespace attnflow {

enum class BatchStepMethod { euler = 0, residual = 1, rk4 = 2 };

// "" when this build and machine run systems of n tokens in d dimensions with this method on
// the GPU; otherwise why not (no CUDA backend, no device, too little shared memory per block).
std::string batch_cuda_refusal(Index n, Index d, BatchStepMethod method);

struct BatchCudaSystems {
  Index n = 0, d = 0;
  std::vector<double> beta;          // per system
  std::vector<unsigned char> usa;    // per system: 1 USA (the average times e^{lse_i - shift}), 0 SA
  std::vector<double> usa_shift;     // per system
  std::vector<double> log_w, w;      // (systems, n): log weights (-inf for 0) and weights
};

class BatchCuda {
 public:
  // Uploads the systems and their states (systems, n, d), system-major and row-major. With
  // emulate, keeps them on the host and runs the block algorithm there (any build, no GPU).
  BatchCuda(const BatchCudaSystems& systems, const std::vector<double>& states, bool emulate = false);
  ~BatchCuda();
  BatchCuda(const BatchCuda&) = delete;
  BatchCuda& operator=(const BatchCuda&) = delete;

  Index size() const { return systems_; }
  bool emulated() const { return emulate_; }
  struct Failure {
    Index system = -1;  // the first failing system, -1 when none
    int step = -1;      // the step (index into h) after which it failed
    bool non_finite = false, usa_overflow = false;
  };
  // Every system takes the steps h[0 ..) of this method (retraction included). With obs_out,
  // observe(*obs_beta, delta) at the points reached after the steps obs_after lists (counts
  // of steps taken, non-decreasing, in [0, h.size()]; null: once, after all of them), in the
  // same pass over the systems (one launch), into *obs_out (observations, systems, 5).
  // obs_out is left alone when a system fails.
  Failure advance(const std::vector<double>& h, BatchStepMethod method, const std::vector<double>* obs_beta = nullptr,
                  double delta = 0.0, std::vector<double>* obs_out = nullptr,
                  const std::vector<int>* obs_after = nullptr);
  // advance() in two halves, so that the host works while the GPU runs: start() checks its
  // arguments (as advance(), observing when obs_beta is given) and launches, returning at once
  // (in emulation it runs everything); finish() waits for that launch and returns its failure.
  // The observations (observations, systems, 5) are then at observations(), valid until the
  // finish() after the next start() (two buffers in turn), null after a failure. Each start()
  // needs a finish() before the next start().
  void start(const std::vector<double>& h, BatchStepMethod method, const std::vector<double>* obs_beta = nullptr,
             double delta = 0.0, const std::vector<int>* obs_after = nullptr);
  Failure finish();
  const double* observations() const { return observations_; }
  // The states (systems, n, d).
  void download(std::vector<double>& states) const;
  // Per system 5 values (systems, 5): log energy log((1 / (2 beta)) sum_ij w_i w_j
  // e^{beta <x_i, x_j>}) at beta[s], min cosine over i < j, the pairs i < j with <x_i, x_j> >
  // 1 - delta, |sum_i w_i x_i| and |sum_i w_i x_i / |x_i||^2; at observations(), the pointer
  // returned (valid as observations() is).
  const double* observe(const std::vector<double>& beta, double delta);

 private:
  Index systems_ = 0, n_ = 0, d_ = 0;
  bool emulate_ = false;
  void* handle_ = nullptr;
  BatchCudaSystems host_;         // emulation: the systems
  std::vector<double> states_;    // emulation: the states
  std::vector<double> obs_beta_, obs_ltb_;  // the observation betas last used, and log(2 beta)
  const double* observations_ = nullptr;    // the last finished launch's observations
  bool pending_ = false;                    // started, not finished
  Failure emulated_failure_;                // emulation: the started launch's failure
  std::vector<double> emulated_obs_[2];     // emulation: observations of launches in turn
  int parity_ = 0;
};

}  // namespace attnflow
