// Experiment configs: a TOML document (toml++) with "section.key=value" overrides (the CLI's
// --set), typed getters that record every key they read with its default, a check that
// rejects unknown keys by name, and the resolved document (defaults filled in) for the
// output directory. The run/ layer turns a Config into the library's typed options structs;
// numerics never see a Config.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace toml {
inline namespace v3 {
class table;
}
}  // namespace toml

namespace attnflow {

class Config {
 public:
  Config();
  ~Config();
  Config(const Config&);
  Config& operator=(const Config&);

  // Parses TOML text; `name` (a path) appears in error messages.
  static Config parse(const std::string& text, const std::string& name = "config");
  static Config from_file(const std::string& path);

  // Applies "section.key=value". The value is read as a TOML value (number, bool, quoted
  // string, array); a bare word that is not valid TOML is taken as a string.
  void set(const std::string& assignment);

  // Typed getters for "section.key". A missing key takes the default, which is recorded so
  // that resolved() shows it. A value of the wrong type throws naming the key and value.
  double get_double(const std::string& key, double def);
  std::int64_t get_int(const std::string& key, std::int64_t def);
  bool get_bool(const std::string& key, bool def);
  std::string get_string(const std::string& key, const std::string& def);
  std::vector<double> get_doubles(const std::string& key, const std::vector<double>& def);
  // A key that may be a number or a string (e.g. train.prompt = 1000 or "infinite"): returns
  // its TOML text form ("1000", "infinite").
  std::string get_text(const std::string& key, const std::string& def);
  bool has(const std::string& key) const;

  // Throws std::invalid_argument for the first key that no getter has read:
  // "config: unknown key 'model.betaa' (known keys in [model]: beta, kind, ...)".
  void reject_unknown() const;
  // The document with every default that was read filled in, as TOML text.
  std::string resolved() const;
  const std::string& name() const { return name_; }

 private:
  std::unique_ptr<toml::table> table_;
  std::set<std::string> known_;
  std::string name_ = "config";
};

}  // namespace attnflow
