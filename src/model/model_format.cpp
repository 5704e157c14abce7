// Model file format version 1 (documented in model.hpp): fixed little-endian binary with an
// FNV-1a checksum, so a round trip is bit for bit and any corruption is detected.
#include <bit>
#include <cstdint>
#include <cstring>

#include "attnflow/base/checksum.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/model/model.hpp"

namespace attnflow {

namespace {

static_assert(std::endian::native == std::endian::little, "model files assume a little-endian host");
constexpr char kMagic[8] = {'A', 'T', 'F', 'M', 'O', 'D', 'E', 'L'};

// FNV-1a 64 with the standard offset basis 14695981039346656037. Files written before
// this fix used 1469598103934665603 (a digit short); the reader accepts both, so they stay
// readable, and every file written now follows the documented standard.
constexpr std::uint64_t kLegacyFnvOffsetBasis = 1469598103934665603ULL;


class Writer {
 public:
  template <typename T>
  void put(T x) {
    buf_.append(reinterpret_cast<const char*>(&x), sizeof(T));
  }
  void put_array(const double* p, Index n) {
    buf_.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n) * sizeof(double));
  }
  std::string& bytes() { return buf_; }

 private:
  std::string buf_;
};

class Reader {
 public:
  Reader(const std::string& bytes, size_t end, const std::string& name)
      : bytes_(bytes), end_(end), name_(name) {}
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T x;
    std::memcpy(&x, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return x;
  }
  void get_array(double* p, Index n, const std::string& what) {
    need(static_cast<size_t>(n) * sizeof(double), what.c_str());
    std::memcpy(p, bytes_.data() + pos_, static_cast<size_t>(n) * sizeof(double));
    pos_ += static_cast<size_t>(n) * sizeof(double);
  }
  // Dimension fields are bounded so that a corrupt count cannot request huge allocations.
  Index dim(const char* what) {
    const auto x = get<std::uint32_t>(what);
    if (x == 0 || x > (1u << 20))
      throw_invalid(name_, what, x, "in [1, 1048576] (corrupt file?)");
    return static_cast<Index>(x);
  }
  size_t pos() const { return pos_; }
  // Refuses a layer whose dimensions (each within its own bound) need more parameter bytes
  // than the file has left, before anything is allocated: heads = dk = 65536 would otherwise
  // reserve 176 GB. `per_unit` doubles per unit of `units` (all < 2^44, products < 2^64).
  void require_parameters(std::uint64_t units, std::uint64_t per_unit, const std::string& what) const {
    const std::uint64_t left = (end_ - pos_) / sizeof(double);
    if (per_unit != 0 && units > left / per_unit)
      throw std::invalid_argument(fmt::format(
          "{}: {} declare {} x {} = {} parameters, but the file has {} bytes left ({} doubles) "
          "(corrupt file?)", name_, what, units, per_unit,
          static_cast<double>(units) * static_cast<double>(per_unit), end_ - pos_, left));
  }

 private:
  void need(size_t size, const char* what) const {
    if (pos_ + size > end_)
      throw std::invalid_argument(fmt::format(
          "{}: truncated while reading {} (needs {} bytes at offset {}, {} left)", name_, what,
          size, pos_, end_ - pos_));
  }
  const std::string& bytes_;
  size_t pos_ = 0, end_;
  const std::string& name_;
};

void write_layer(Writer& w, const Layer& layer) {
  Layer copy = layer;
  if (const auto* a = std::get_if<AttentionLayer>(&layer)) {
    w.put<std::uint32_t>(1);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(a->normalization));
    w.put<double>(a->beta);
    w.put<double>(a->step);
    w.put<std::int32_t>(a->sinkhorn.iterations);
    w.put<double>(a->sinkhorn.tol);
    w.put<std::int32_t>(a->sinkhorn.max_iterations);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(a->head_count()));
    w.put<std::uint32_t>(static_cast<std::uint32_t>(a->heads[0].q.rows()));
    w.put<std::uint32_t>(static_cast<std::uint32_t>(a->heads[0].v.rows()));
  } else {
    w.put<std::uint32_t>(2);
    w.put<std::uint32_t>(static_cast<std::uint32_t>(std::get<MlpLayer>(layer).w1.rows()));
  }
  for_each_parameter(copy, [&](double* p, Index n) { w.put_array(p, n); });
}

Layer read_layer(Reader& r, Index d, size_t l, const std::string& name) {
  const std::string ctx = fmt::format("layers[{}]", l);
  const auto kind = r.get<std::uint32_t>("layer kind");
  if (kind == 1) {
    AttentionLayer a;
    const auto norm = r.get<std::uint32_t>("normalization");
    if (norm > 2) throw_invalid(name, ctx + ".normalization", norm, "0, 1 or 2 (corrupt file?)");
    a.normalization = static_cast<Normalization>(norm);
    a.beta = r.get<double>("beta");
    a.step = r.get<double>("step");
    a.sinkhorn.iterations = r.get<std::int32_t>("sinkhorn.iterations");
    a.sinkhorn.tol = r.get<double>("sinkhorn.tol");
    a.sinkhorn.max_iterations = r.get<std::int32_t>("sinkhorn.max_iterations");
    const Index heads = r.dim("heads"), dk = r.dim("dk"), dv = r.dim("dv");
    r.require_parameters(static_cast<std::uint64_t>(heads), static_cast<std::uint64_t>(2 * (dk + dv) * d),
                         ctx + " (heads, dk, dv)");
    a.heads.assign(static_cast<size_t>(heads), Head{Matrix(dk, d), Matrix(dk, d), Matrix(dv, d),
                                                    Matrix(d, dv)});
    Layer layer = std::move(a);
    for_each_parameter(layer, [&](double* p, Index n) { r.get_array(p, n, ctx + " parameters"); });
    return layer;
  }
  if (kind == 2) {
    MlpLayer m;
    const Index hid = r.dim("hidden");
    r.require_parameters(static_cast<std::uint64_t>(hid), static_cast<std::uint64_t>(2 * d + 1),
                         ctx + " (hidden)");
    m.w1 = Matrix(hid, d);
    m.b1 = Vector(hid);
    m.w2 = Matrix(d, hid);
    m.b2 = Vector(d);
    Layer layer = std::move(m);
    for_each_parameter(layer, [&](double* p, Index n) { r.get_array(p, n, ctx + " parameters"); });
    return layer;
  }
  throw_invalid(name, ctx + ".kind", kind, "1 (attention) or 2 (mlp) (corrupt file?)");
}

}  // namespace

std::string model_to_bytes(const Model& model) {
  model.validate();
  Writer w;
  w.bytes().append(kMagic, sizeof(kMagic));
  w.put<std::uint32_t>(kModelFormatVersion);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(model.dim));
  w.put<std::uint32_t>(static_cast<std::uint32_t>(model.layers.size()));
  for (const Layer& layer : model.layers) write_layer(w, layer);
  const std::uint64_t sum = fnv1a64(w.bytes().data(), w.bytes().size());
  w.put<std::uint64_t>(sum);
  return std::move(w.bytes());
}

Model model_from_bytes(const std::string& bytes, const std::string& name) {
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0)
    throw std::invalid_argument(fmt::format(
        "{}: not an attnflow model file (magic bytes 'ATFMODEL' missing)", name));
  constexpr size_t kHeader = sizeof(kMagic) + 4;
  if (bytes.size() < kHeader)
    throw std::invalid_argument(fmt::format("{}: truncated (no format version)", name));
  std::uint32_t version;
  std::memcpy(&version, bytes.data() + sizeof(kMagic), 4);
  if (version != kModelFormatVersion)
    throw_invalid(name, "format version", version,
                  fmt::format("{} (the version this attnflow reads)", kModelFormatVersion));
  if (bytes.size() < kHeader + 8 + 8)
    throw std::invalid_argument(fmt::format("{}: truncated ({} bytes)", name, bytes.size()));
  const size_t body = bytes.size() - 8;
  std::uint64_t stored;
  std::memcpy(&stored, bytes.data() + body, 8);
  // Checked before parsing, so corrupt sizes never drive allocations.
  if (fnv1a64(bytes.data(), body) != stored && fnv1a64(bytes.data(), body, kLegacyFnvOffsetBasis) != stored)
    throw std::invalid_argument(fmt::format(
        "{}: checksum mismatch (the file is corrupt or was truncated)", name));
  Reader r(bytes, body, name);
  r.get<std::uint64_t>("magic");
  r.get<std::uint32_t>("version");
  Model model;
  model.dim = r.dim("dim");
  const Index layers = r.dim("layers");
  for (Index l = 0; l < layers; ++l)
    model.layers.push_back(read_layer(r, model.dim, static_cast<size_t>(l), name));
  if (r.pos() != body)
    throw std::invalid_argument(fmt::format(
        "{}: {} unexpected bytes after the last layer (corrupt or truncated file)", name,
        body - r.pos()));
  try {
    model.validate();
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(fmt::format("{}: invalid model: {}", name, e.what()));
  }
  return model;
}

}  // namespace attnflow
