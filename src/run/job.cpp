// The job lifecycle (job.hpp): output-directory checks, staging and commit, resume, clean-up,
// the summary.json header and stop requests.
#include "attnflow/run/job.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <thread>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "attnflow/io/atomic_file.hpp"
#include "attnflow/base/error.hpp"
#include "attnflow/kernel/kernel_cuda.hpp"

namespace attnflow {

namespace fs = std::filesystem;

// ---- Stop requests ----------------------------------------------------------------------

namespace {

std::atomic<int> g_stop_signal{0};
std::atomic<bool> g_abandon{false};
int g_wake_fd = -1;  // the write end of the watcher's pipe (abandon mode)
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal.load() == sig) {  // a second Ctrl-C: give up at once, the default way
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_stop_signal.store(sig);
  if (g_abandon.load() && g_wake_fd >= 0) {
    const int saved = errno;
    const char byte = 1;
    [[maybe_unused]] const ssize_t w = ::write(g_wake_fd, &byte, 1);  // async-signal-safe
    errno = saved;
  }
}

// Abandon mode: waits for the handler's byte, removes the outputs in progress, exits.
void watch_for_stop(int fd, std::string label) {
  char byte = 0;
  while (::read(fd, &byte, 1) < 0 && errno == EINTR) {
  }
  const int sig = g_stop_signal.load();
  const std::vector<std::string> removed = remove_pending_outputs();
  const char* name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
  std::string what;
  for (const std::string& note : removed) what += (what.empty() ? "" : ", ") + note;
  std::fflush(stdout);
  std::fprintf(stderr, "%s: interrupted by %s%s\n", label.c_str(), name,
               what.empty() ? "" : fmt::format(" before finishing; nothing written to {} (the command is not "
                                               "resumable: run it again)", what).c_str());
  std::fflush(stderr);
  ::_exit(128 + sig);
}

}  // namespace

void install_stop_handlers(StopMode mode, const std::string& label) {
  if (mode == StopMode::abandon && g_wake_fd < 0) {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error(fmt::format("{}: cannot create a pipe: {}", label, std::strerror(errno)));
    g_wake_fd = fds[1];
    std::thread(watch_for_stop, fds[0], label).detach();
  }
  g_abandon.store(mode == StopMode::abandon);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

void request_stop(int signal) { g_stop_signal.store(signal); }
int stop_signal() { return g_stop_signal.load(); }
void clear_stop_request() { g_stop_signal.store(0); }

// ---- Summary header ---------------------------------------------------------------------

nlohmann::json summary_header(std::string_view kind, std::string_view version, std::string_view status) {
  // Where the kernel's reductions ran (kernel_cuda.hpp set_device: --device, compute.device).
  const DeviceSetting d = current_device();
  return {{"kind", kind}, {"attnflow_version", version}, {"status", status},
          {"device", device_name(d.device)}, {"precision", precision_name(d.precision)}};
}

namespace {

nlohmann::json read_summary(const std::string& dir) {
  const std::string path = dir + "/summary.json";
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return nlohmann::json();
  try {
    return nlohmann::json::parse(read_file(path), nullptr, false);
  } catch (const std::exception&) {
    return nlohmann::json();
  }
}

}  // namespace

bool summary_finished(const std::string& dir) {
  const nlohmann::json j = read_summary(dir);
  return j.is_object() && j.value("status", "") == "finished";
}

// ---- Job ---------------------------------------------------------------------------------

namespace {

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Entries of `dir` (names), ignoring stale temporaries of killed attnflow processes.
std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) names.push_back(e.path().filename().string());
  return names;
}

// "<parent>/<name>" with a non-empty name ("." and "dir/" resolved), so that the staging
// directory "<name>.tmp.<pid>" is a sibling on the same filesystem.
fs::path normalized(const std::string& out) {
  fs::path p = fs::absolute(fs::path(out)).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p;
}

}  // namespace

Job::Job(JobSpec spec) : spec_(std::move(spec)) {
  for (const char* name : {"summary.json", "checkpoint.bin"})
    if ((spec_.resumable || std::string(name) == "summary.json") && !contains(spec_.outputs, name))
      spec_.outputs.push_back(name);
  const std::string& out = spec_.out_dir;
  const std::string& kind = spec_.kind;
  require(!out.empty(), kind, "out_dir", "\"\"", "a directory path");
  require(spec_.resumable || !spec_.resume, kind, "resume", "true", "false (the job is not resumable)");
  const fs::path norm = normalized(out);
  require(!norm.filename().empty() && norm.has_parent_path(), kind, "--out", out, "a directory below /");
  std::error_code ec;
  const auto st = fs::symlink_status(out, ec);
  out_existed_ = fs::exists(st);
  if (out_existed_ && !fs::is_directory(fs::status(out, ec)))
    throw_message(kind, fmt::format("--out {} exists and is not a directory", out));
  // Staging directories of killed staged jobs on the same out_dir (pattern and dead pid only).
  const std::string prefix = norm.filename().string() + ".tmp.";
  for (const auto& e : fs::directory_iterator(norm.parent_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && is_stale_temporary(name)) fs::remove_all(e.path(), ec);
  }
  const std::vector<std::string> present = out_existed_ ? entries(out) : std::vector<std::string>{};
  const nlohmann::json earlier = read_summary(out);  // an earlier output's summary.json, if any
  // Another command's directory (its summary.json says so) is never ours.
  const bool other_kind = earlier.is_object() && earlier.value("kind", "") != kind;
  // A name the job writes, or the stale temporary of one ("config.toml.tmp.<pid>": the job was
  // killed while writing it atomically, e.g. right at its start).
  const bool ours = !other_kind && std::any_of(present.begin(), present.end(), [&](const std::string& n) {
    return contains(spec_.outputs, n) ||
           (is_stale_temporary(n) && contains(spec_.outputs, n.substr(0, n.rfind(".tmp."))));
  });
  if (spec_.resumable) {
    if (spec_.resume) {
      finished_before_ = !other_kind && summary_finished(out);
      if (!finished_before_ && !present.empty() && !ours)
        throw_message(kind, fmt::format("--resume: {} holds no {} to resume (and is not empty); choose the "
                                        "directory of the run to continue", out, spec_.noun));
      resuming_ = !finished_before_ && ours;
    } else if (ours) {
      throw_message(kind, fmt::format("output directory {} already holds a {} (use --resume to continue it, "
                                      "or choose another --out)", out, spec_.noun));
    } else if (!present.empty()) {
      throw_message(kind, fmt::format("--out {} is not empty and not a previous {}'s output; choose another "
                                      "directory (attnflow writes only into a new or empty one)", out, kind));
    }
    dir_ = out;
    return;
  }
  if (!present.empty()) {
    const bool previous = earlier.is_object() && (spec_.marker.empty() ? !other_kind
                                                                        : earlier.value(spec_.marker, false) == true);
    if (!previous)
      throw_message(kind, fmt::format("--out {} is not empty and not a previous {}'s output; choose another "
                                      "directory (attnflow writes only into a new or empty one)", out, kind));
  }
  dir_ = temporary_name(norm.string());
}

std::string Job::path(std::string_view name) const { return fmt::format("{}/{}", dir_, name); }

bool Job::has_checkpoint() const {
  std::error_code ec;
  return resuming_ && fs::exists(checkpoint(), ec);
}

void Job::require_same_config(const std::string& checkpoint_config, const std::string& resolved) const {
  if (checkpoint_config != resolved)
    throw_message(spec_.kind, fmt::format("--resume: the configuration differs from the one the checkpoint {} was "
                                          "written with (compare with {})", checkpoint(), path("config.toml")));
}

void Job::start() {
  if (started_) return;
  // Ancestors of out_dir that do not exist yet: a job that fails removes them again.
  std::error_code ec;
  for (fs::path p = normalized(spec_.out_dir).parent_path(); !p.empty() && !fs::exists(p, ec);
       p = p.parent_path()) {
    created_parents_.push_back(p.string());
    if (p == p.parent_path()) break;
  }
  if (!spec_.resumable) {
    fs::remove_all(dir_, ec);  // our own pid's name: a leftover of this process only
    // Registered and created under the registry's lock (see write_file_atomic).
    const auto creating = defer_interruption();
    pending_ = std::make_unique<PendingOutput>(dir_, spec_.out_dir);
    ensure_directory(dir_);
  } else {
    ensure_directory(dir_);
  }
  started_ = true;
  if (resuming_) remove_stale_temporaries(dir_);
}

nlohmann::json Job::summary(std::string_view status) const {
  return summary_header(spec_.kind, spec_.version, status);
}

void Job::write_summary(const nlohmann::json& summary) {
  start();
  write_file_atomic(path("summary.json"), summary.dump(2) + "\n");
}

void Job::commit() {
  start();
  std::error_code ec;
  if (spec_.resumable) {
    fs::remove(path("checkpoint.bin"), ec);  // complete: summary.json marks the job finished
    done_ = true;
    return;
  }
  const std::string& out = spec_.out_dir;
  // An interruption waits for the commit to finish (it would otherwise remove the staging
  // directory half moved).
  const auto committing = defer_interruption();
  if (!out_existed_ && !fs::exists(out, ec)) {
    fs::rename(dir_, out, ec);
    if (ec) throw std::runtime_error(fmt::format("{}: cannot rename {} to {}: {}", spec_.kind, dir_, out, ec.message()));
    pending_.reset();
    done_ = true;
    return;
  }
  // out_dir exists (empty, or an earlier output of this command): move file by file, each
  // rename atomic; earlier outputs of ours that this run did not produce are removed.
  for (const std::string& name : spec_.outputs) {
    const fs::path target = fs::path(out) / name;
    if (fs::is_directory(fs::symlink_status(target, ec)) || !fs::exists(fs::path(dir_) / name, ec))
      fs::remove_all(target, ec);
  }
  for (const std::string& name : entries(dir_)) {
    fs::rename(fs::path(dir_) / name, fs::path(out) / name, ec);
    if (ec)
      throw std::runtime_error(fmt::format("{}: cannot move {} into {}: {}", spec_.kind, name, out, ec.message()));
  }
  fs::remove(dir_, ec);
  pending_.reset();
  done_ = true;
}

void Job::keep() { done_ = true; }

Progress Job::progress(double total, std::FILE* out, int tty, double min_interval,
                       const std::string& label) const {
  return Progress(total, label.empty() ? spec_.kind : label, out, tty, min_interval);
}

void Job::abandon() noexcept {
  std::error_code ec;
  if (!spec_.resumable) {
    fs::remove_all(dir_, ec);  // the staging directory: everything in it is ours
    pending_.reset();
  } else {
    if (resuming_) return;  // the state stays resumable
    // A fresh in-place job (out_dir was absent or empty): remove exactly what it wrote, then
    // out_dir if it created it (only when empty: a file someone else put there meanwhile stays).
    for (const std::string& name : spec_.outputs) fs::remove_all(fs::path(dir_) / name, ec);
    remove_stale_temporaries(dir_);
    if (!out_existed_) fs::remove(dir_, ec);
  }
  for (const std::string& p : created_parents_) fs::remove(p, ec);  // only if still empty
}

Job::~Job() {
  if (started_ && !done_) abandon();
}

}  // namespace attnflow
