// Plain C++ interface of the CUDA backend (attnflow_cuda), called by src/kernel/device.cpp.
// No Eigen and no CUDA types, so that both the CUDA and the C++ compiler read it.
#pragma once

#include <cstdint>
#include <string>

namespace attnflow::cuda_detail {

// Whether a CUDA device can be used; why not in *reason otherwise.
bool device_usable(std::string* reason);
std::string device_description();

// Host arrays in, host arrays out (lse (n) and out (n, p) may be null). Computes
// s_ij = uscale <u_i, v_j> + col_j and the reductions of kernel.hpp in float64, or in
// float32 when single is true. Shapes are validated by the caller; k, p <= kMaxDim.
constexpr std::int64_t kMaxDim = 64;
void reduce_host(const double* u, const double* v, const double* col, const double* vals,
                 std::int64_t n, std::int64_t m, std::int64_t k, std::int64_t p, double uscale,
                 double* lse, double* out, bool single);

// The batched ensemble's GPU path (src/cuda/batch_cuda.cu, batch_step.cuh): many systems of n
// tokens in d dimensions on the sphere, resident on the GPU. Per-system arrays are
// system-major; states are (systems, n, d) row-major. method: batch_step::Method's values.
struct BatchSpec {
  std::int64_t systems = 0, n = 0, d = 0;
  const double* beta = nullptr;           // (systems)
  const unsigned char* usa = nullptr;     // (systems) 1: USA, 0: SA
  const double* usa_shift = nullptr;      // (systems)
  const double* log_w = nullptr;          // (systems, n)
  const double* w = nullptr;              // (systems, n)
};
// "" when the GPU takes this shape and method (shared memory per block), else why not.
std::string batch_refusal(std::int64_t n, std::int64_t d, int method);
void* batch_create(const BatchSpec& spec, const double* states);
void batch_destroy(void* handle);
// Launches the steps h[0 .. steps) (none when steps = 0) on every system and, after the steps
// obs_after[0] < ... < obs_after[obs_count - 1] (counts of steps taken, in [0, steps]),
// batch_step::observe's 5 values per system (obs_count, systems, 5), with the energy's beta
// obs_beta (systems) and its log(2 beta) (all in one launch); obs_beta = null: the betas of the
// last call that sent them (the caller keeps track). Returns without waiting; batch_finish
// must follow before the next batch_start.
void batch_start(void* handle, const double* h, int steps, int method, const double* obs_beta,
                 const double* obs_log_two_beta, double delta, const int* obs_after, int obs_count);
// Waits for the launch. Returns 0 and in *obs its observations (page-locked, valid until the
// batch_finish after the next batch_start), or the status of the first failing system
// (batch_step::kNonFinite | kUsaOverflow) with that system and the step in *system, *step
// (*obs = null).
int batch_finish(void* handle, const double** obs, std::int64_t* system, int* step);
void batch_download(const void* handle, double* states);

}  // namespace attnflow::cuda_detail
