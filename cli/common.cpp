#include <cstdlib>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <vector>

#include "attnflow/io/csv.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/io/npy.hpp"
#include "attnflow/base/parallel.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"
#include "commands.hpp"

namespace attnflow::cli {

namespace {
struct Entry {
  std::string name;
  int order;
  std::function<void(CLI::App&)> add;
};
std::vector<Entry>& registry() {
  static std::vector<Entry> entries;  // function-local: safe from static-init order
  return entries;
}
}  // namespace

Registrar::Registrar(std::string name, int order, std::function<void(CLI::App&)> add) {
  registry().push_back({std::move(name), order, std::move(add)});
}

void add_registered_commands(CLI::App& app) {
  auto entries = registry();
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.order < b.order; });
  for (auto& e : entries) e.add(app);
}

bool is_csv(const std::string& path) { return path.size() > 4 && path.substr(path.size() - 4) == ".csv"; }

std::pair<Index, Index> npy_rows_cols(const std::string& path, const std::string& option) {
  try {
    const std::vector<Index> shape = read_npy_shape(path);
    if (shape.size() == 2) return {shape[0], shape[1]};
    if (shape.size() == 1) return {shape[0], 1};
    return {0, 0};
  } catch (const std::exception& e) {
    throw std::invalid_argument(fmt::format("{} {}: {}", option, path, e.what()));
  }
}

Matrix load_rows(const std::string& path, const std::string& option, Range rows) {
  try {
    return read_npy_rows(path, rows.first, rows.count);
  } catch (const std::exception& e) {
    throw std::invalid_argument(fmt::format("{} {}: {}", option, path, e.what()));
  }
}

Matrix load_matrix(const std::string& path, const std::string& option) {
  try {
    if (is_csv(path)) return read_csv(path).values;
    return read_npy_matrix(path);
  } catch (const std::exception& e) {
    throw std::invalid_argument(fmt::format("{} {}: {}", option, path, e.what()));
  }
}

Matrix load_nonempty_matrix(const std::string& path, const std::string& option) {
  Matrix m = load_matrix(path, option);
  if (m.rows() == 0 || m.cols() == 0)
    throw std::invalid_argument(fmt::format(
        "{} {}: shape = ({}, {}), must have >= 1 row and >= 1 column", option, path, m.rows(),
        m.cols()));
  return m;
}

Vector load_vector(const std::string& path, const std::string& option) {
  try {
    if (is_csv(path)) {
      const Matrix m = read_csv(path).values;
      if (m.cols() != 1 && m.rows() != 1)
        throw std::invalid_argument(fmt::format("csv has shape ({}, {}), must be one column", m.rows(), m.cols()));
      return m.cols() == 1 ? Vector(m.col(0)) : Vector(m.row(0).transpose());
    }
    return read_npy_vector(path);
  } catch (const std::exception& e) {
    throw std::invalid_argument(fmt::format("{} {}: {}", option, path, e.what()));
  }
}

CLI::Validator integer_in(const std::string& option, long long lo, long long hi) {
  return CLI::Validator(
      [option, lo, hi](std::string& text) -> std::string {
        long long v = 0;
        const char* end = text.data() + text.size();
        const auto [ptr, ec] = std::from_chars(text.data(), end, v);
        if (ec == std::errc() && ptr == end && v >= lo && v <= hi) return {};
        return fmt::format("{} = {}, must be an integer in [{}, {}]", option,
                           echoed_value(text, 40), lo, hi);
      },
      fmt::format("INT in [{}, {}]", lo, hi));
}

void add_threads_option(CLI::App& sub) {
  sub.add_option_function<int>(
         "--threads", [](int t) { set_num_threads(t); },
         "Number of threads (default: all cores; results do not depend on it)")
      ->check(integer_in("--threads", 1, kMaxThreads));
  add_device_option(sub);
}

CLI::Validator one_of(const std::string& option, const std::vector<std::string>& allowed) {
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  return CLI::Validator(
      [option, allowed, list](std::string& text) -> std::string {
        if (std::find(allowed.begin(), allowed.end(), text) != allowed.end()) return {};
        return fmt::format("{} = {}, must be one of {}", option, echoed_value(text, 40), list);
      },
      list);
}

void add_device_option(CLI::App& sub) {
  // Defined before --precision: CLI11 runs option callbacks in definition order, so the device
  // is set first and --precision float32 then applies to it.
  sub.add_option_function<std::string>(
         "--device", [](const std::string& d) { set_device(parse_device(d, "--device")); },
         "Device of every kernel reduction: cpu (default) or cuda (a build with the CUDA "
         "backend and an NVIDIA GPU; docs/usage/gpu.md)")
      ->check(one_of("--device", {"cpu", "cuda"}));
  sub.add_option_function<std::string>(
         "--precision",
         [](const std::string& p) {
           const Precision prec = parse_precision(p, "--precision");
           if (prec == Precision::float32 && current_device().device == Device::cpu)
             throw std::invalid_argument(
                 "--precision = float32, must be float64 unless --device cuda (the CPU kernel "
                 "computes in float64)");
           set_device(current_device().device, prec);
         },
         "Precision of the GPU reductions: float64 (default) or float32 (with --device cuda)")
      ->check(one_of("--precision", {"float64", "float32"}));
}

namespace {

// One shell word: kept as is when it needs no quoting, else in single quotes.
std::string shell_quote(const std::string& w) {
  const bool plain = !w.empty() && w.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                       "0123456789_-./=:,+@%") == std::string::npos;
  if (plain) return w;
  std::string q = "'";
  for (char c : w) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

std::string resume_command() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> words;
  for (std::size_t pos = 0; pos < raw.size();) {
    const std::size_t end = raw.find('\0', pos);
    words.push_back(raw.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    pos = end == std::string::npos ? raw.size() : end + 1;
  }
  if (words.empty()) return "attnflow ... --resume";
  std::string cmd;
  bool has_resume = false;
  for (const auto& w : words) {
    has_resume = has_resume || w == "--resume";
    cmd += (cmd.empty() ? "" : " ") + shell_quote(w);
  }
  return has_resume ? cmd : cmd + " --resume";
}

int report_stopped(const std::string& command, int signal, const std::string& hook_text, const std::string& out) {
  if (signal == 0) {
    fmt::print("{}; continue with --resume:\n  {}\n", hook_text, resume_command());
    std::fflush(stdout);
    return 3;  // a simulated kill: non-zero, like the real one
  }
  const char* name = signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "a signal";
  fmt::print("{}: interrupted by {}; the state is saved in {} (checkpoint.bin); continue with --resume:\n  {}\n",
             command, name, out, resume_command());
  std::fflush(stdout);
  return 128 + signal;  // the shell's convention: 130 for SIGINT, 143 for SIGTERM
}

bool ended_early(const std::string& command, bool already_finished, bool interrupted, int signal, long checkpoints,
                 const std::string& out) {
  if (already_finished) {
    fmt::print("{}: already finished (summary.json says so); nothing to do\n", out);
    return true;
  }
  if (interrupted)
    std::exit(report_stopped(command, signal,
                             fmt::format("stopped after {} checkpoint(s) (ATTNFLOW_STOP_AFTER_CHECKPOINTS)",
                                         checkpoints), out));
  return false;
}

long stop_after_from_env() {
  const char* v = std::getenv("ATTNFLOW_STOP_AFTER_CHECKPOINTS");
  return v && *v ? std::strtol(v, nullptr, 10) : 0;
}

}  // namespace attnflow::cli
