// BatchCuda (batch_cuda.hpp): forwards to the CUDA backend (src/cuda/batch_cuda.cu) when it is
// compiled in (ATTNFLOW_HAVE_CUDA, cmake/cuda.cmake); refuses otherwise.
#include "attnflow/kernel/batch_cuda.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "attnflow/base/error.hpp"
#include "attnflow/kernel/batch_kernel.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"
#include "cuda/batch_step.cuh"
#ifdef ATTNFLOW_HAVE_CUDA
#include "host_api.hpp"
#endif

namespace attnflow {

namespace {

namespace bs = batch_step;

// What the GPU kernels of src/cuda/batch_cuda.cu do for block s, on the host: the system's
// state into a block's shared-memory layout, the block algorithm, and back.
struct HostSystem {
  bs::System sys;
  std::vector<double> smem;
  int flag = 0;
  bs::Shared sh;
  HostSystem(const BatchCudaSystems& b, Index s, bs::Method m) {
    sys.n = static_cast<int>(b.n);
    sys.d = static_cast<int>(b.d);
    sys.beta = b.beta[static_cast<std::size_t>(s)];
    sys.usa = b.usa[static_cast<std::size_t>(s)] != 0;
    sys.usa_shift = b.usa_shift[static_cast<std::size_t>(s)];
    sys.log_w = b.log_w.data() + s * b.n;
    sys.w = b.w.data() + s * b.n;
    smem.assign(bs::shared_doubles(sys.n, sys.d, m), 0.0);
    sh = bs::carve(smem.data(), &flag, sys.n, sys.d, m);
  }
  void load(const double* x) {
    for (int i = 0; i < sys.n; ++i)
      for (int k = 0; k < sys.d; ++k) sh.x[i * bs::stride(sys.d) + k] = x[i * sys.d + k];
  }
  void store(double* x) const {
    for (int i = 0; i < sys.n; ++i)
      for (int k = 0; k < sys.d; ++k) x[i * sys.d + k] = sh.x[i * bs::stride(sys.d) + k];
  }
};

}  // namespace

std::string batch_cuda_refusal(Index n, Index d, BatchStepMethod method) {
#ifdef ATTNFLOW_HAVE_CUDA
  return cuda_detail::batch_refusal(n, d, static_cast<int>(method));
#else
  (void)n;
  (void)d;
  (void)method;
  return no_cuda_backend_message();
#endif
}

BatchCuda::BatchCuda(const BatchCudaSystems& sys, const std::vector<double>& states, bool emulate)
    : systems_(static_cast<Index>(sys.beta.size())), n_(sys.n), d_(sys.d), emulate_(emulate) {
  const auto S = static_cast<std::size_t>(systems_), N = static_cast<std::size_t>(n_);
  if (sys.usa.size() != S || sys.usa_shift.size() != S || sys.log_w.size() != S * N || sys.w.size() != S * N ||
      states.size() != S * N * static_cast<std::size_t>(d_))
    throw std::invalid_argument("BatchCuda: the per-system arrays and the states must hold systems = " +
                                std::to_string(systems_) + " entries (times n = " + std::to_string(n_) +
                                ", d = " + std::to_string(d_) + ")");
  if (emulate_) {
    host_ = sys;
    states_ = states;
    return;
  }
#ifdef ATTNFLOW_HAVE_CUDA
  cuda_detail::BatchSpec spec;
  spec.systems = systems_;
  spec.n = n_;
  spec.d = d_;
  spec.beta = sys.beta.data();
  spec.usa = sys.usa.data();
  spec.usa_shift = sys.usa_shift.data();
  spec.log_w = sys.log_w.data();
  spec.w = sys.w.data();
  handle_ = cuda_detail::batch_create(spec, states.data());
#else
  throw std::invalid_argument(no_cuda_backend_message());
#endif
}

BatchCuda::~BatchCuda() {
#ifdef ATTNFLOW_HAVE_CUDA
  if (handle_ && !emulate_) cuda_detail::batch_destroy(handle_);
#endif
}

namespace {

BatchCuda::Failure failure_of(int status, Index system, int step) {
  BatchCuda::Failure f;
  if (status == 0) return f;
  f.system = system;
  f.step = step;
  f.non_finite = (status & bs::kNonFinite) != 0;
  f.usa_overflow = (status & bs::kUsaOverflow) != 0;
  return f;
}

}  // namespace

void BatchCuda::start(const std::vector<double>& h, BatchStepMethod method, const std::vector<double>* obs_beta,
                      double delta, const std::vector<int>* obs_after) {
  if (pending_) throw std::logic_error("BatchCuda::start: the previous launch is not finished (finish())");
  const bool observe = obs_beta != nullptr;
  if (observe && obs_beta->size() != static_cast<std::size_t>(systems_))
    throw std::invalid_argument("BatchCuda::advance: obs_beta must hold one value per system");
  const int steps = static_cast<int>(h.size());
  std::vector<int> at_end;  // observed once, after every step
  if (observe && !obs_after) at_end.push_back(steps);
  const std::vector<int>& after = obs_after ? *obs_after : at_end;
  if (observe)
    for (std::size_t k = 0; k < after.size(); ++k)
      if (after[k] < (k ? after[k - 1] : 0) || after[k] > steps)
        throw std::invalid_argument(fmt::format(
            "BatchCuda::advance: obs_after[{}] = {} must be in [{}, {}] (non-decreasing step counts, at most the "
            "{} steps)", k, after[k], k ? after[k - 1] : 0, steps, steps));
  const int obs_count = observe ? static_cast<int>(after.size()) : 0;
  if (emulate_) {
    const auto m = static_cast<bs::Method>(method);
    parity_ ^= 1;
    std::vector<double>& obs = emulated_obs_[parity_];
    obs.assign(static_cast<std::size_t>(5 * systems_) * static_cast<std::size_t>(obs_count), 0.0);
    emulated_failure_ = Failure{};
    for (Index s = 0; s < systems_; ++s) {
      HostSystem hs(host_, s, m);
      double* x = states_.data() + s * n_ * d_;
      hs.load(x);
      bs::HostBlock b;
      int at = -1;
      const double bt = obs_count ? (*obs_beta)[static_cast<std::size_t>(s)] : 0.0;
      const int status = bs::advance_observing(b, hs.sys, hs.sh, h.data(), steps, m, after.data(), obs_count, bt,
                                               obs_count ? log_two_beta(bt) : 0.0, delta,
                                               obs_count ? obs.data() + 5 * s : nullptr, 5 * systems_, &at);
      hs.store(x);
      if (status != 0 && emulated_failure_.system < 0) emulated_failure_ = failure_of(status, s, at);
    }
    pending_ = true;
    return;
  }
#ifdef ATTNFLOW_HAVE_CUDA
  // log(2 beta) formed and both sent to the GPU only when the betas change (a run observes at
  // the same betas each time); this is the one record of what the GPU holds.
  const bool new_betas = observe && *obs_beta != obs_beta_;
  if (new_betas) {
    obs_beta_ = *obs_beta;
    obs_ltb_.resize(obs_beta_.size());
    for (std::size_t s = 0; s < obs_beta_.size(); ++s) obs_ltb_[s] = log_two_beta(obs_beta_[s]);
  }
  try {
    cuda_detail::batch_start(handle_, h.data(), steps, static_cast<int>(method), new_betas ? obs_beta_.data() : nullptr,
                             obs_ltb_.data(), delta, after.data(), obs_count);
  } catch (...) {
    obs_beta_.clear();  // the upload may not have happened: send the betas with the next call
    throw;
  }
  pending_ = true;
#else
  (void)method;
  (void)delta;
#endif
}

BatchCuda::Failure BatchCuda::finish() {
  observations_ = nullptr;
  if (!pending_) return Failure{};
  pending_ = false;
  if (emulate_) {
    if (emulated_failure_.system < 0) observations_ = emulated_obs_[parity_].data();
    return emulated_failure_;
  }
#ifdef ATTNFLOW_HAVE_CUDA
  std::int64_t system = -1;
  int step = -1;
  const int status = cuda_detail::batch_finish(handle_, &observations_, &system, &step);
  return failure_of(status, static_cast<Index>(system), step);
#else
  return Failure{};
#endif
}

BatchCuda::Failure BatchCuda::advance(const std::vector<double>& h, BatchStepMethod method,
                                     const std::vector<double>* obs_beta, double delta, std::vector<double>* obs_out,
                                     const std::vector<int>* obs_after) {
  if (obs_out && !obs_beta)
    throw std::invalid_argument("BatchCuda::advance: obs_beta must hold one value per system");
  start(h, method, obs_out ? obs_beta : nullptr, delta, obs_after);
  const Failure f = finish();
  if (obs_out && f.system < 0) {
    const std::size_t count = static_cast<std::size_t>(5 * systems_) *
                              (obs_after ? obs_after->size() : std::size_t{1});
    obs_out->assign(observations_, observations_ + (observations_ ? count : 0));
  }
  return f;
}

void BatchCuda::download(std::vector<double>& states) const {
  states.resize(static_cast<std::size_t>(systems_ * n_ * d_));
  if (emulate_) {
    states = states_;
    return;
  }
#ifdef ATTNFLOW_HAVE_CUDA
  cuda_detail::batch_download(handle_, states.data());
#endif
}

const double* BatchCuda::observe(const std::vector<double>& beta, double delta) {
  start({}, BatchStepMethod::residual, &beta, delta);  // no steps (nothing can fail): the observables
  finish();
  return observations_;
}

}  // namespace attnflow
