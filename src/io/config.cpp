#include "attnflow/io/config.hpp"

#include <fmt/format.h>

#include <functional>
#include <sstream>
#include <stdexcept>
#include <toml++/toml.h>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/base/error.hpp"

namespace attnflow {

namespace {

std::pair<std::string, std::string> split_key(const std::string& key) {
  const auto dot = key.rfind('.');
  if (dot == std::string::npos) return {"", key};
  return {key.substr(0, dot), key.substr(dot + 1)};
}

// A value as echoed in error messages: capped and escaped (echoed_value), so a 10 MB string
// or binary bytes never flood the terminal.
std::string node_text(const toml::node& n) {
  std::ostringstream ss;
  if (auto s = n.as_string()) return echoed_value(s->get());
  n.visit([&](auto&& v) { ss << v; });
  return echoed_value(ss.str());
}

[[noreturn]] void not_a_section(const std::string& name, const std::string& section,
                                const toml::node& value, const std::string& rest) {
  throw std::invalid_argument(fmt::format("{}: {} = {}, must be a table (the section [{}], which holds '{}')",
                                          name, section, node_text(value), section, rest));
}

// The node at "a.b.c", or null when absent. Every section on the way must be a table: a
// config with `model = 3` (or `model = []`) where [model] is expected is rejected naming the
// key, so no getter, default store or --set ever walks into a scalar. Every access to the
// document goes through here (the one accessor), which makes that crash class impossible.
toml::node* lookup(toml::table& root, const std::string& key, const std::string& name) {
  toml::table* t = &root;
  std::string prefix;
  std::size_t start = 0;
  while (true) {
    const auto dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    toml::node* node = t->get(part);
    if (dot == std::string::npos) return node;
    prefix += (prefix.empty() ? "" : ".") + part;
    if (!node) return nullptr;
    if (!node->is_table()) not_a_section(name, prefix, *node, key.substr(dot + 1));
    t = node->as_table();
    start = dot + 1;
  }
}

// The table for the section of `key` ("a.b" for "a.b.c"), created when absent; throws like
// lookup when a part of the way is not a table.
toml::table& section_of(toml::table& root, const std::string& key, const std::string& name) {
  toml::table* t = &root;
  std::string prefix;
  std::size_t start = 0;
  for (auto dot = key.find('.'); dot != std::string::npos; dot = key.find('.', start)) {
    const std::string part = key.substr(start, dot - start);
    prefix += (prefix.empty() ? "" : ".") + part;
    toml::node* node = t->get(part);
    if (!node) node = t->insert(part, toml::table{}).first->second.as_table();
    if (!node->is_table()) not_a_section(name, prefix, *node, key.substr(dot + 1));
    t = node->as_table();
    start = dot + 1;
  }
  return *t;
}

}  // namespace

Config::Config() : table_(std::make_unique<toml::table>()) {}
Config::~Config() = default;
Config::Config(const Config& o)
    : table_(std::make_unique<toml::table>(*o.table_)), known_(o.known_), name_(o.name_) {}
Config& Config::operator=(const Config& o) {
  table_ = std::make_unique<toml::table>(*o.table_);
  known_ = o.known_;
  name_ = o.name_;
  return *this;
}

Config Config::parse(const std::string& text, const std::string& name) {
  Config c;
  c.name_ = name;
  try {
    *c.table_ = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw std::invalid_argument(fmt::format("{}: line {}: {}", name, e.source().begin.line,
                                            e.description()));
  }
  return c;
}

Config Config::from_file(const std::string& path) { return parse(read_file(path), path); }

void Config::set(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw std::invalid_argument(fmt::format(
        "--set: '{}' must have the form section.key=value", assignment));
  const std::string key = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    parsed = toml::table{{"v", value}};  // a bare word: a string
  }
  const toml::node& v = *parsed.get("v");
  const std::string leaf = split_key(key).second;
  toml::table& t = section_of(*table_, key, "--set " + echoed_value(assignment));
  // A section ([model]) is never replaced by a value: `--set model=3` is a mistake.
  if (const toml::node* old = t.get(leaf); old && old->is_table() && !v.is_table())
    throw std::invalid_argument(fmt::format(
        "--set: {} = {}, must be section.key=value ({} is a section)", echoed_value(key),
        node_text(v), echoed_value(key)));
  t.insert_or_assign(leaf, v);
}

bool Config::has(const std::string& key) const {
  return lookup(*table_, key, name_) != nullptr;
}

namespace {
template <typename T>
void store_default(toml::table& root, const std::string& key, const T& value,
                   const std::string& name) {
  section_of(root, key, name).insert_or_assign(split_key(key).second, value);
}
}  // namespace

double Config::get_double(const std::string& key, double def) {
  known_.insert(key);
  auto node = toml::node_view<toml::node>{lookup(*table_, key, name_)};
  if (!node) {
    store_default(*table_, key, def, name_);
    return def;
  }
  if (auto v = node.value<double>()) return *v;  // integers convert too
  throw std::invalid_argument(
      fmt::format("{}: {} = {}, must be a number", name_, key, node_text(*node.node())));
}

std::int64_t Config::get_int(const std::string& key, std::int64_t def) {
  known_.insert(key);
  auto node = toml::node_view<toml::node>{lookup(*table_, key, name_)};
  if (!node) {
    store_default(*table_, key, def, name_);
    return def;
  }
  if (node.is_integer()) return *node.value<std::int64_t>();
  // 1e13 is accepted as an integer; the range check comes first (converting 1e300 to an
  // integer is undefined behaviour).
  if (auto d = node.value<double>(); d && *d >= -9.2e18 && *d <= 9.2e18 &&
                                     *d == static_cast<double>(static_cast<std::int64_t>(*d)))
    return static_cast<std::int64_t>(*d);
  throw std::invalid_argument(
      fmt::format("{}: {} = {}, must be an integer", name_, key, node_text(*node.node())));
}

bool Config::get_bool(const std::string& key, bool def) {
  known_.insert(key);
  auto node = toml::node_view<toml::node>{lookup(*table_, key, name_)};
  if (!node) {
    store_default(*table_, key, def, name_);
    return def;
  }
  if (node.is_boolean()) return *node.value<bool>();
  throw std::invalid_argument(
      fmt::format("{}: {} = {}, must be true or false", name_, key, node_text(*node.node())));
}

std::string Config::get_string(const std::string& key, const std::string& def) {
  known_.insert(key);
  auto node = toml::node_view<toml::node>{lookup(*table_, key, name_)};
  if (!node) {
    store_default(*table_, key, def, name_);
    return def;
  }
  if (node.is_string()) return *node.value<std::string>();
  throw std::invalid_argument(
      fmt::format("{}: {} = {}, must be a string", name_, key, node_text(*node.node())));
}

std::string Config::get_text(const std::string& key, const std::string& def) {
  known_.insert(key);
  auto node = toml::node_view<toml::node>{lookup(*table_, key, name_)};
  if (!node) {
    store_default(*table_, key, def, name_);
    return def;
  }
  return node_text(*node.node());
}

std::vector<double> Config::get_doubles(const std::string& key, const std::vector<double>& def) {
  known_.insert(key);
  auto node = toml::node_view<toml::node>{lookup(*table_, key, name_)};
  if (!node) {
    toml::array arr;
    for (double v : def) arr.push_back(v);
    store_default(*table_, key, arr, name_);
    return def;
  }
  std::vector<double> out;
  if (auto arr = node.as_array()) {
    for (auto& el : *arr) {
      auto v = el.value<double>();
      if (!v)
        throw std::invalid_argument(fmt::format("{}: {} = {}, must be an array of numbers",
                                                name_, key, node_text(*node.node())));
      out.push_back(*v);
    }
    return out;
  }
  if (auto v = node.value<double>()) return {*v};
  throw std::invalid_argument(fmt::format("{}: {} = {}, must be a number or an array of numbers",
                                          name_, key, node_text(*node.node())));
}

void Config::reject_unknown() const {
  // Walk every leaf key ("section.key"); a table is a section, not a key.
  std::vector<std::string> leaves;
  std::function<void(const toml::table&, const std::string&)> walk =
      [&](const toml::table& t, const std::string& prefix) {
        for (auto&& [k, v] : t) {
          const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
          if (v.is_table()) walk(*v.as_table(), key);
          else leaves.push_back(key);
        }
      };
  walk(*table_, "");
  for (const auto& key : leaves) {
    if (known_.count(key)) continue;
    const auto [section, leaf] = split_key(key);
    std::string known_here;
    for (const auto& k : known_) {
      const auto [s2, l2] = split_key(k);
      if (s2 == section) known_here += (known_here.empty() ? "" : ", ") + l2;
    }
    throw std::invalid_argument(fmt::format(
        "{}: unknown key '{}' (known keys in [{}]: {})", name_, key, section,
        known_here.empty() ? "none; unknown section" : known_here));
  }
}

std::string Config::resolved() const {
  std::ostringstream ss;
  ss << *table_ << '\n';
  return ss.str();
}

}  // namespace attnflow
