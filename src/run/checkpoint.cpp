// Checkpoint files: magic, JSON metadata (bit patterns for doubles), then one .npy block.
#include "attnflow/run/checkpoint.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <nlohmann/json.hpp>

#include "attnflow/base/checksum.hpp"
#include "attnflow/io/atomic_file.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/io/npy.hpp"

namespace attnflow {

namespace {

constexpr char kMagic[] = "ATTNFLOW-CHECKPOINT\n";
constexpr std::size_t kMagicLen = sizeof(kMagic) - 1;

std::uint64_t bits(double x) { return std::bit_cast<std::uint64_t>(x); }

// An integer field of the metadata. nlohmann's get<integer>() of a floating-point value
// converts with a cast that is undefined out of range (found by fuzz_checkpoint): a field
// that is not an integer is a type error, reported as bad metadata by the callers.
template <typename T>
T integer(const nlohmann::json& j) {
  if (!j.is_number_integer())
    throw nlohmann::json::type_error::create(302, "an integer field holds " + std::string(j.type_name()),
                                             &j);
  return j.get<T>();
}
double from_bits(const nlohmann::json& j) { return std::bit_cast<double>(integer<std::uint64_t>(j)); }

nlohmann::json state_json(const IntegratorState& s) {
  return {{"t", bits(s.t)},           {"dt_next", bits(s.dt_next)},   {"steps", s.steps},
          {"rejected", s.rejected},   {"evaluations", s.evaluations}, {"grid_origin", bits(s.grid_origin)},
          {"grid_steps", s.grid_steps}};
}

IntegratorState state_from(const nlohmann::json& j) {
  IntegratorState s;
  s.t = from_bits(j.at("t"));
  s.dt_next = from_bits(j.at("dt_next"));
  s.steps = integer<long>(j.at("steps"));
  s.rejected = integer<long>(j.at("rejected"));
  s.evaluations = integer<long>(j.at("evaluations"));
  s.grid_origin = from_bits(j.at("grid_origin"));
  s.grid_steps = integer<long>(j.at("grid_steps"));
  return s;
}

nlohmann::json rng_json(const Rng::State& r) {
  return {{"s", r.s}, {"cached_normal", bits(r.cached_normal)}, {"has_cached", r.has_cached}};
}

Rng::State rng_from(const nlohmann::json& j) {
  Rng::State r;
  const nlohmann::json& s = j.at("s");
  if (!s.is_array() || s.size() != r.s.size())
    throw nlohmann::json::type_error::create(302, "rng state s must be 4 integers", &s);
  for (std::size_t k = 0; k < r.s.size(); ++k) r.s[k] = integer<std::uint64_t>(s[k]);
  r.cached_normal = from_bits(j.at("cached_normal"));
  r.has_cached = j.at("has_cached").get<bool>();
  return r;
}

// Parses the metadata and checks the kind (absent = "run", the first kind); the version was
// checked by read_checkpoint_file.
nlohmann::json parse_metadata(const CheckpointFile& file, const std::string& path, const std::string& kind) {
  nlohmann::json meta = nlohmann::json::parse(file.metadata);
  const std::string found = meta.value("kind", "run");
  if (found != kind)
    throw_message("checkpoint", fmt::format("{} is a checkpoint of `attnflow {}`, not of `attnflow {}`", path,
                                            found, kind));
  return meta;
}

constexpr Index kIclRecordValues = 7;

// The metadata's version, or -1 when it cannot be read (corrupt metadata).
int metadata_version(const std::string& metadata) {
  const auto j = nlohmann::json::parse(metadata, nullptr, false);
  if (!j.is_object() || !j.contains("version") || !j["version"].is_number_integer()) return -1;
  return j["version"].get<int>();
}  // step, time, risk, risk_infinite, b, a_norm, balance

}  // namespace

void write_checkpoint_file(const std::string& path, const std::string& metadata, const double* data,
                           const std::vector<Index>& shape) {
  const std::uint64_t len = metadata.size();
  std::string bytes(kMagic, kMagicLen);
  bytes.append(reinterpret_cast<const char*>(&len), sizeof(len));
  bytes += metadata;
  bytes += npy_bytes(data, shape);
  const std::uint64_t sum = fnv1a64(bytes.data(), bytes.size());
  bytes.append(reinterpret_cast<const char*>(&sum), sizeof(sum));
  write_file_atomic(path, bytes);
}

CheckpointFile read_checkpoint_file(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < kMagicLen + 8 || bytes.compare(0, kMagicLen, kMagic) != 0)
    throw_message("checkpoint", fmt::format("{} is not an attnflow checkpoint (bad magic)", path));
  std::uint64_t len = 0;
  std::memcpy(&len, bytes.data() + kMagicLen, sizeof(len));
  if (bytes.size() - (kMagicLen + 8) < len) throw_message("checkpoint", fmt::format("{} is truncated", path));
  CheckpointFile f;
  f.metadata = bytes.substr(kMagicLen + 8, len);
  // The version first, so that a file of another version is named as such, not as corrupt.
  const int version = metadata_version(f.metadata);
  if (version >= 0)
    require(version == kCheckpointVersion, "checkpoint", "version", version,
            fmt::format("{} (written by another attnflow version: {})", kCheckpointVersion, path));
  const std::size_t body = bytes.size() - 8;
  if (bytes.size() - (kMagicLen + 8) - len < 8) throw_message("checkpoint", fmt::format("{} is truncated", path));
  std::uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + body, sizeof(stored));
  const std::uint64_t computed = fnv1a64(bytes.data(), body);
  if (stored != computed)
    throw_message("checkpoint", fmt::format("{} is corrupt: its checksum (FNV-1a 64 of the whole file) is {:016x}, "
                                            "the content gives {:016x}; it cannot be resumed (start the run "
                                            "afresh in a new --out directory)", path, stored, computed));
  if (version < 0) throw_message("checkpoint", fmt::format("{}: bad metadata", path));
  f.data = parse_npy(bytes.substr(kMagicLen + 8 + len, body - (kMagicLen + 8 + len)), path);
  return f;
}

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
  write_checkpoint_file(path, meta.dump(), data.data(), {static_cast<Index>(c.states.size()), n, d});
}

Checkpoint read_checkpoint(const std::string& path) {
  const CheckpointFile file = read_checkpoint_file(path);
  Checkpoint c;
  try {
    const nlohmann::json meta = parse_metadata(file, path, "run");
    c.version = integer<int>(meta.at("version"));
    c.config = meta.at("config").get<std::string>();
    c.observation = integer<std::int64_t>(meta.at("observation"));
    c.csv_bytes = integer<std::uint64_t>(meta.at("csv_bytes"));
    const auto& integ = meta.at("integrator");
    const auto& noise = meta.at("noise");
    if (integ.size() != noise.size()) throw_message("checkpoint", fmt::format("{}: bad metadata", path));
    for (std::size_t k = 0; k < integ.size(); ++k) c.flow.push_back({state_from(integ[k]), rng_from(noise[k])});
  } catch (const nlohmann::json::exception& e) {
    throw_message("checkpoint", fmt::format("{}: bad metadata: {}", path, e.what()));
  }
  const NpyArray& a = file.data;
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

namespace attnflow {

void write_icl_checkpoint(const std::string& path, const IclCheckpoint& c) {
  const IclTrainState& s = c.state;
  const Index d = s.params.a.rows();
  require(s.params.a.cols() == d, "checkpoint", "A shape", fmt::format("{}x{}", d, s.params.a.cols()),
          "square");
  const nlohmann::json meta = {{"version", c.version},   {"kind", "icl"},
                               {"config", c.config},     {"step", s.step},
                               {"d", d},                 {"history", s.history.size()},
                               {"integrator", state_json(s.integrator)}};
  std::vector<double> data;
  data.reserve(static_cast<std::size_t>(d * d + 1) + s.history.size() * kIclRecordValues);
  for (Index i = 0; i < d; ++i)
    for (Index j = 0; j < d; ++j) data.push_back(s.params.a(i, j));
  data.push_back(s.params.b);
  for (const IclStepRecord& r : s.history)
    data.insert(data.end(), {static_cast<double>(r.step), r.time, r.risk, r.risk_infinite, r.b, r.a_norm,
                             r.balance});
  write_checkpoint_file(path, meta.dump(), data.data(), {static_cast<Index>(data.size())});
}

IclCheckpoint read_icl_checkpoint(const std::string& path) {
  const CheckpointFile file = read_checkpoint_file(path);
  IclCheckpoint c;
  Index d = 0;
  std::size_t rows = 0;
  try {
    const nlohmann::json meta = parse_metadata(file, path, "icl");
    c.version = integer<int>(meta.at("version"));
    c.config = meta.at("config").get<std::string>();
    c.state.step = integer<long>(meta.at("step"));
    c.state.integrator = state_from(meta.at("integrator"));
    d = integer<Index>(meta.at("d"));
    rows = integer<std::size_t>(meta.at("history"));
  } catch (const nlohmann::json::exception& e) {
    throw_message("checkpoint", fmt::format("{}: bad metadata: {}", path, e.what()));
  }
  const std::vector<double>& v = file.data.data;
  // d and history come from the file: bounded by the data present before any product, so a
  // corrupt count can neither overflow nor drive an allocation (fuzzing).
  if (d < 1 || d > (Index{1} << 20) || rows > v.size() / kIclRecordValues)
    throw_message("checkpoint", fmt::format("{}: d = {}, history = {} do not fit the {} data values",
                                            path, d, rows, v.size()));
  const std::size_t expected = static_cast<std::size_t>(d * d + 1) + rows * kIclRecordValues;
  if (file.data.shape.size() != 1 || v.size() != expected)
    throw_message("checkpoint", fmt::format("{}: data must be 1-D with d * d + 1 + 7 * history = {} values",
                                            path, expected));
  c.state.params.a.resize(d, d);
  for (Index i = 0; i < d; ++i)
    for (Index j = 0; j < d; ++j) c.state.params.a(i, j) = v[static_cast<std::size_t>(i * d + j)];
  c.state.params.b = v[static_cast<std::size_t>(d * d)];
  const double* r = v.data() + d * d + 1;
  for (std::size_t k = 0; k < rows; ++k, r += kIclRecordValues)
    c.state.history.push_back({static_cast<long>(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]});
  return c;
}

void write_ot_checkpoint(const std::string& path, const OtCheckpoint& c) {
  const nlohmann::json meta = {{"version", c.version}, {"kind", "ot"},           {"config", c.config},
                               {"iteration", c.iteration}, {"n", c.f.size()}, {"m", c.g.size()},
                               {"seconds", bits(c.seconds)}, {"relaxed", c.relaxed}};
  std::vector<double> data(c.f.data(), c.f.data() + c.f.size());
  data.insert(data.end(), c.g.data(), c.g.data() + c.g.size());
  write_checkpoint_file(path, meta.dump(), data.data(), {static_cast<Index>(data.size())});
}

OtCheckpoint read_ot_checkpoint(const std::string& path) {
  const CheckpointFile file = read_checkpoint_file(path);
  OtCheckpoint c;
  Index n = 0, m = 0;
  try {
    const nlohmann::json meta = parse_metadata(file, path, "ot");
    c.version = integer<int>(meta.at("version"));
    c.config = meta.at("config").get<std::string>();
    c.iteration = integer<int>(meta.at("iteration"));
    c.seconds = from_bits(meta.at("seconds"));
    n = integer<Index>(meta.at("n"));
    m = integer<Index>(meta.at("m"));
    c.relaxed = meta.value("relaxed", false);  // written since over-relaxation (plain solves before)
  } catch (const nlohmann::json::exception& e) {
    throw_message("checkpoint", fmt::format("{}: bad metadata: {}", path, e.what()));
  }
  const std::vector<double>& v = file.data.data;
  // n and m come from the file: checked against the data present before they size anything.
  if (file.data.shape.size() != 1 || n < 1 || m < 1 || static_cast<std::size_t>(n) > v.size() ||
      v.size() - static_cast<std::size_t>(n) != static_cast<std::size_t>(m))
    throw_message("checkpoint", fmt::format("{}: n = {}, m = {}, must be >= 1 with n + m = the {} data values (1-D)",
                                            path, n, m, v.size()));
  c.f = Eigen::Map<const Vector>(v.data(), n);
  c.g = Eigen::Map<const Vector>(v.data() + n, m);
  return c;
}

}  // namespace attnflow
