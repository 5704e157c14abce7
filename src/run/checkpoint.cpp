// Checkpoint files: magic, JSON metadata (bit patterns for doubles), then one .npy block.
#include "attnflow/checkpoint.hpp"

#include <bit>
#include <cstring>
#include <nlohmann/json.hpp>

#include "attnflow/atomic_file.hpp"
#include "attnflow/error.hpp"
#include "attnflow/npy.hpp"

namespace attnflow {

namespace {

constexpr char kMagic[] = "ATTNFLOW-CHECKPOINT\n";
constexpr std::size_t kMagicLen = sizeof(kMagic) - 1;

std::uint64_t bits(double x) { return std::bit_cast<std::uint64_t>(x); }
double from_bits(const nlohmann::json& j) { return std::bit_cast<double>(j.get<std::uint64_t>()); }

nlohmann::json state_json(const IntegratorState& s) {
  return {{"t", bits(s.t)},           {"dt_next", bits(s.dt_next)},   {"steps", s.steps},
          {"rejected", s.rejected},   {"evaluations", s.evaluations}, {"grid_origin", bits(s.grid_origin)},
          {"grid_steps", s.grid_steps}};
}

IntegratorState state_from(const nlohmann::json& j) {
  IntegratorState s;
  s.t = from_bits(j.at("t"));
  s.dt_next = from_bits(j.at("dt_next"));
  s.steps = j.at("steps").get<long>();
  s.rejected = j.at("rejected").get<long>();
  s.evaluations = j.at("evaluations").get<long>();
  s.grid_origin = from_bits(j.at("grid_origin"));
  s.grid_steps = j.at("grid_steps").get<long>();
  return s;
}

nlohmann::json rng_json(const Rng::State& r) {
  return {{"s", r.s}, {"cached_normal", bits(r.cached_normal)}, {"has_cached", r.has_cached}};
}

Rng::State rng_from(const nlohmann::json& j) {
  Rng::State r;
  r.s = j.at("s").get<std::array<std::uint64_t, 4>>();
  r.cached_normal = from_bits(j.at("cached_normal"));
  r.has_cached = j.at("has_cached").get<bool>();
  return r;
}

}  // namespace

void write_checkpoint(const std::string& path, const Checkpoint& c) {
  require(!c.states.empty(), "checkpoint", "systems", 0, ">= 1");
  require(c.flow.size() == c.states.size(), "checkpoint", "flow states", c.flow.size(),
          fmt::format("one per system ({})", c.states.size()));
  nlohmann::json meta = {{"version", c.version}, {"config", c.config}, {"observation", c.observation},
                         {"csv_bytes", c.csv_bytes}};
  for (const FlowState& f : c.flow) {
    meta["integrator"].push_back(state_json(f.integrator));
    meta["noise"].push_back(rng_json(f.noise));
  }
  const Index n = c.states[0].rows(), d = c.states[0].cols();
  std::vector<double> data;
  data.reserve(c.states.size() * static_cast<std::size_t>(n * d));
  for (const Matrix& x : c.states) {
    require(x.rows() == n && x.cols() == d, "checkpoint", "states", fmt::format("{}x{}", x.rows(), x.cols()),
            fmt::format("{}x{} like system 0", n, d));
    data.insert(data.end(), x.data(), x.data() + x.size());
  }
  const std::string text = meta.dump();
  const std::uint64_t len = text.size();
  std::string bytes(kMagic, kMagicLen);
  bytes.append(reinterpret_cast<const char*>(&len), sizeof(len));
  bytes += text;
  bytes += npy_bytes(data.data(), {static_cast<Index>(c.states.size()), n, d});
  write_file_atomic(path, bytes);
}

Checkpoint read_checkpoint(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < kMagicLen + 8 || bytes.compare(0, kMagicLen, kMagic) != 0)
    throw_message("checkpoint", fmt::format("{} is not an attnflow checkpoint (bad magic)", path));
  std::uint64_t len = 0;
  std::memcpy(&len, bytes.data() + kMagicLen, sizeof(len));
  if (bytes.size() < kMagicLen + 8 + len)
    throw_message("checkpoint", fmt::format("{} is truncated", path));
  Checkpoint c;
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(bytes.substr(kMagicLen + 8, len));
    c.version = meta.at("version").get<int>();
    require(c.version == kCheckpointVersion, "checkpoint", "version", c.version,
            fmt::format("{} (written by another attnflow version: {})", kCheckpointVersion, path));
    c.config = meta.at("config").get<std::string>();
    c.observation = meta.at("observation").get<std::int64_t>();
    c.csv_bytes = meta.at("csv_bytes").get<std::uint64_t>();
    const auto& integ = meta.at("integrator");
    const auto& noise = meta.at("noise");
    if (integ.size() != noise.size()) throw_message("checkpoint", fmt::format("{}: bad metadata", path));
    for (std::size_t k = 0; k < integ.size(); ++k) c.flow.push_back({state_from(integ[k]), rng_from(noise[k])});
  } catch (const nlohmann::json::exception& e) {
    throw_message("checkpoint", fmt::format("{}: bad metadata: {}", path, e.what()));
  }
  const NpyArray a = parse_npy(bytes.substr(kMagicLen + 8 + len), path);
  if (a.shape.size() != 3 || static_cast<std::size_t>(a.shape[0]) != c.flow.size())
    throw_message("checkpoint", fmt::format("{}: states must be (systems, n, c) with {} systems", path,
                                            c.flow.size()));
  const Index n = a.shape[1], d = a.shape[2];
  for (Index k = 0; k < a.shape[0]; ++k) {
    Matrix x(n, d);
    std::memcpy(x.data(), a.data.data() + k * n * d, sizeof(double) * static_cast<std::size_t>(n * d));
    c.states.push_back(std::move(x));
  }
  return c;
}

}  // namespace attnflow
