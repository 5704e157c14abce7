// Private to src/run: RunConfig -> the flow library's typed options (FlowOptions per system,
// ObserveOptions). Only name mapping here; all numerics live in src/flow.
#pragma once

#include "attnflow/flow/flow.hpp"
#include "attnflow/flow/observe.hpp"
#include "attnflow/run/run_config.hpp"

namespace attnflow::detail {

// Noise of system k comes from Rng(seed, kNoiseStreamOffset + k): disjoint from the streams
// 0..systems-1 that sample the initial measures.
inline constexpr std::uint64_t kNoiseStreamOffset = std::uint64_t{1} << 32;

FlowOptions flow_options(const RunConfig& cfg, Index system);
ObserveOptions observe_options(const RunConfig& cfg);

}  // namespace attnflow::detail
