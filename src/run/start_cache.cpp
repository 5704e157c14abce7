// A sweep's shared ensemble starts (start_cache.hpp).
#include "attnflow/run/start_cache.hpp"

#include <algorithm>
#include <exception>

namespace attnflow {

StartCache::Start StartCache::find_or_make(const std::string& key, const std::function<Start()>& make) {
  std::promise<Start> promise;
  {
    std::unique_lock<std::mutex> lock(mu_);
    const auto it = std::find_if(recent_.begin(), recent_.end(), [&](const Entry& e) { return e.key == key; });
    if (it != recent_.end()) {
      const std::shared_future<Start> f = it->start;
      lock.unlock();
      return f.get();  // made by another caller, or being made: wait for it
    }
    recent_.push_back({key, promise.get_future().share()});
    while (recent_.size() > capacity_) recent_.erase(recent_.begin());
  }
  try {
    Start start = make();
    promise.set_value(start);
    return start;
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      recent_.erase(std::remove_if(recent_.begin(), recent_.end(), [&](const Entry& e) { return e.key == key; }),
                    recent_.end());
    }
    promise.set_value(Start{});  // the waiters make their own (and meet the error themselves)
    throw;
  }
}

}  // namespace attnflow
