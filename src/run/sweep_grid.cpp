// Sweep grids: splitting the [sweep] table off a config and enumerating its points.
#include <fmt/format.h>

#include <algorithm>
#include <sstream>
#include <toml++/toml.h>

#include "attnflow/io/config.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/run/sweep.hpp"

namespace attnflow {

namespace {

// TOML text of a scalar (strings quoted and escaped, so Config::set reads them back as strings)
// and its CSV label (strings bare).
std::pair<std::string, std::string> scalar_text(const toml::node& v, const std::string& ctx, const std::string& key) {
  if (auto s = v.as_string()) {
    std::string q = "\"";
    for (char ch : s->get()) {
      if (ch == '"' || ch == '\\') q += '\\';
      q += ch;
    }
    return {q + "\"", s->get()};
  }
  if (!(v.is_integer() || v.is_floating_point() || v.is_boolean()))
    throw_invalid(ctx, "sweep." + key, "a table or array", "a list of numbers, strings or booleans");
  std::ostringstream ss;
  v.visit([&](auto&& x) { ss << x; });
  return {ss.str(), ss.str()};
}

// The [sweep] leaves of a parsed document with their positions in its text (line, column).
void collect_positions(const toml::table& t, const std::string& prefix,
                       std::vector<std::pair<toml::source_position, std::string>>& out) {
  for (auto&& [k, v] : t) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (v.is_table()) collect_positions(*v.as_table(), key, out);
    else out.emplace_back(v.source().begin, key);
  }
}

toml::table parse_toml(const std::string& text, const std::string& name) {
  try {
    return toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw std::invalid_argument(fmt::format("{}: line {}: {}", name, e.source().begin.line, e.description()));
  }
}

// The user's axis order: the [sweep] keys in the order of the file, then keys that only the
// --set overrides add ("sweep.model.beta=[1,2]"), in the order of the overrides.
std::vector<std::string> axis_order(const toml::table& doc, const std::vector<std::string>& sets) {
  std::vector<std::pair<toml::source_position, std::string>> pos;
  if (auto* sweep = doc.get("sweep"); sweep && sweep->is_table()) collect_positions(*sweep->as_table(), "", pos);
  std::stable_sort(pos.begin(), pos.end(), [](const auto& a, const auto& b) {
    return a.first.line != b.first.line ? a.first.line < b.first.line : a.first.column < b.first.column;
  });
  std::vector<std::string> order;
  for (auto& p : pos) order.push_back(p.second);
  for (const auto& s : sets) {
    const std::string key = s.substr(0, s.find('='));
    if (key.rfind("sweep.", 0) != 0) continue;
    const std::string axis = key.substr(6);
    if (std::find(order.begin(), order.end(), axis) == order.end()) order.push_back(axis);
  }
  return order;
}

std::string toml_text(const toml::node& v) {
  std::ostringstream ss;
  v.visit([&](auto&& x) { ss << x; });
  return ss.str();
}

void collect_axes(const toml::table& t, const std::string& prefix, const std::string& ctx,
                  std::vector<SweepAxis>& axes) {
  for (auto&& [k, v] : t) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (v.is_table()) {
      collect_axes(*v.as_table(), key, ctx, axes);
      continue;
    }
    // Every swept key is section.key: `[sweep] model = [1, 2]` would replace the [model]
    // section by a number at each point.
    if (key.find('.') == std::string::npos)
      throw_invalid(ctx, "sweep." + key, echoed_value(toml_text(v)),
                    fmt::format("a table of lists of section.key values, e.g. [sweep] {}.beta = [1, 4]", key));
    // The device is one process-wide setting (kernel_cuda.hpp): points running at once cannot
    // each have their own. Set it once in [compute] or with --device.
    if (key.rfind("compute.", 0) == 0)
      throw_invalid(ctx, "sweep." + key, echoed_value(toml_text(v)),
                    "a key outside [compute] (the device is process-wide: set [compute] or --device "
                    "once for the whole sweep)");
    SweepAxis axis{key, {}, {}};
    if (auto arr = v.as_array()) {
      require(!arr->empty(), ctx, "sweep." + key, "[]", "a non-empty list");
      for (auto& el : *arr) {
        auto [text, label] = scalar_text(el, ctx, key);
        axis.values.push_back(text);
        axis.labels.push_back(label);
      }
    } else {
      auto [text, label] = scalar_text(v, ctx, key);  // a single value: an axis of length 1
      axis.values.push_back(text);
      axis.labels.push_back(label);
    }
    axes.push_back(std::move(axis));
  }
}

}  // namespace

Index SweepGrid::size() const {
  Index n = 1;
  for (const auto& a : axes) n *= static_cast<Index>(a.values.size());
  return n;
}

std::vector<Index> SweepGrid::coordinates(Index point) const {
  std::vector<Index> c(axes.size());
  for (std::size_t i = axes.size(); i-- > 0;) {
    const auto len = static_cast<Index>(axes[i].values.size());
    c[i] = point % len;
    point /= len;
  }
  return c;
}

SweepGrid parse_sweep(const std::string& text, const std::string& name, const std::vector<std::string>& sets) {
  const toml::table original = parse_toml(text, name);
  toml::table doc = original;
  if (!sets.empty()) {  // the overrides, applied as `attnflow run --set` applies them
    Config c = Config::parse(text, name);
    for (const auto& s : sets) c.set(s);
    doc = parse_toml(c.resolved(), name);
  }
  SweepGrid g;
  g.name = name;
  auto* sweep = doc.get("sweep");
  if (!sweep || !sweep->is_table())
    throw_message(name, "a sweep needs a [sweep] table of lists, e.g. [sweep] model.beta = [1, 4, 9]");
  collect_axes(*sweep->as_table(), "", name, g.axes);  // toml++ iterates keys alphabetically
  if (g.axes.empty()) throw_message(name, "the [sweep] table is empty: give at least one key = [values]");
  const std::vector<std::string> order = axis_order(original, sets);
  const auto rank = [&](const SweepAxis& a) {
    return static_cast<std::size_t>(std::find(order.begin(), order.end(), a.key) - order.begin());
  };
  std::stable_sort(g.axes.begin(), g.axes.end(),
                   [&](const SweepAxis& a, const SweepAxis& b) { return rank(a) < rank(b); });
  doc.erase("sweep");
  std::ostringstream ss;
  ss << doc << '\n';
  g.base = ss.str();
  return g;
}

}  // namespace attnflow
