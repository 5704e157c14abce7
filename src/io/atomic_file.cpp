#include "attnflow/io/atomic_file.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "attnflow/base/checksum.hpp"

namespace attnflow {

namespace fs = std::filesystem;

namespace {

// Refuses an existing target that is not a regular file: rename(2) would silently turn a
// device node, a FIFO or a socket into a regular file (and fail on a directory).
void require_regular_or_absent(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;  // absent: fine
  if (S_ISREG(st.st_mode)) return;
  const char* what = S_ISDIR(st.st_mode)    ? "a directory"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISFIFO(st.st_mode) ? "a FIFO"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                     : S_ISLNK(st.st_mode)  ? "a symbolic link"
                                            : "not a regular file";
  throw std::invalid_argument(fmt::format("cannot write {}: it exists and is {}, must be a regular file or absent "
                                          "(attnflow never replaces it)", path, what));
}

// Test hook simulating a full disk: ATTNFLOW_FAIL_AFTER_WRITES=K lets the first K atomic
// writes of the process succeed and fails every later one with ENOSPC's message.
void inject_failure(const std::string& path) {
  static const long limit = [] {
    const char* v = std::getenv("ATTNFLOW_FAIL_AFTER_WRITES");
    return v && *v ? std::strtol(v, nullptr, 10) : -1L;
  }();
  static std::atomic<long> writes{0};
  if (limit >= 0 && writes.fetch_add(1) >= limit)
    throw std::runtime_error(fmt::format("cannot write {}: {} (simulated by ATTNFLOW_FAIL_AFTER_WRITES)", path,
                                         std::strerror(ENOSPC)));
}

// ATTNFLOW_PAUSE_IN_WRITES=1: each atomic write waits 60 s before its rename (test hook).
void pause_if_asked() {
  static const bool pause = [] {
    const char* v = std::getenv("ATTNFLOW_PAUSE_IN_WRITES");
    return v && std::string_view(v) == "1";
  }();
  if (pause) std::this_thread::sleep_for(std::chrono::seconds(60));
}

// The registry of outputs in progress (PendingOutput).
struct Pending {
  std::recursive_mutex mutex;
  std::map<std::uint64_t, std::pair<std::string, std::string>> paths;  // id -> (path, note)
  std::uint64_t next = 1;
};
Pending& pending() {
  static Pending* p = new Pending;  // never destroyed: a stop handler may use it at exit
  return *p;
}

// A process that exists and is not a zombie. A killed process stays a zombie until its parent
// reaps it, and in a container whose init reaps nothing (a CI runner, a killed mpirun's orphaned
// ranks) that is forever: kill(pid, 0) succeeds on it, yet it holds no file open and never writes
// again, so its temporaries are stale.
bool process_alive(long pid) {
  if (pid <= 0 || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM)) return false;
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(stat, line)) return true;  // no /proc: trust kill()
  const auto close = line.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos || close + 2 >= line.size()) return true;
  const char state = line[close + 2];
  return state != 'Z' && state != 'X';
}

}  // namespace

std::string temporary_name(const std::string& path) { return fmt::format("{}.tmp.{}", path, static_cast<long>(::getpid())); }

long temp_name_pid(std::string_view name) {
  const auto pos = name.rfind(".tmp.");
  if (pos == std::string_view::npos || pos == 0) return 0;
  const std::string_view digits = name.substr(pos + 5);
  if (digits.empty() || digits.size() > 9) return 0;
  long pid = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return 0;
    pid = pid * 10 + (c - '0');
  }
  return pid;
}

bool is_stale_temporary(std::string_view name) {
  const long pid = temp_name_pid(name);
  return pid > 0 && pid != static_cast<long>(::getpid()) && !process_alive(pid);
}

int remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (is_stale_temporary(it->path().filename().string())) {
      stale.push_back(it->path());
      if (it->is_directory(ec)) it.disable_recursion_pending();
    }
  }
  int removed = 0;
  for (const fs::path& p : stale) removed += fs::remove_all(p, ec) > 0 ? 1 : 0;
  return removed;
}

PendingOutput::PendingOutput(std::string path, std::string note) {
  Pending& p = pending();
  std::lock_guard lock(p.mutex);
  id_ = p.next++;
  p.paths.emplace(id_, std::make_pair(std::move(path), std::move(note)));
}

PendingOutput::~PendingOutput() {
  if (id_ == 0) return;
  Pending& p = pending();
  std::lock_guard lock(p.mutex);
  p.paths.erase(id_);
}

std::unique_lock<std::recursive_mutex> defer_interruption() { return std::unique_lock(pending().mutex); }

std::vector<std::string> remove_pending_outputs() {
  Pending& p = pending();
  p.mutex.lock();  // never unlocked: see the header
  std::vector<std::string> notes;
  std::error_code ec;
  for (const auto& [id, entry] : p.paths) {
    fs::remove_all(entry.first, ec);
    if (!entry.second.empty()) notes.push_back(entry.second);
  }
  p.paths.clear();
  return notes;
}

void write_file_atomic(const std::string& path, std::string_view content) {
  require_regular_or_absent(path);
  inject_failure(path);
  const std::string tmp = temporary_name(path);
  // Registered and created under the registry's lock: an interruption removes it, or comes
  // before it exists and stops this thread here.
  std::unique_lock creating = defer_interruption();
  const PendingOutput registered(tmp);
  {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    const int open_err = errno;
    creating.unlock();
    if (!f)
      throw std::runtime_error(fmt::format("cannot write {}: {}", path, std::strerror(open_err)));
    const size_t written = std::fwrite(content.data(), 1, content.size(), f);
    const bool ok = written == content.size() && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
    const int err = errno;
    const bool closed = std::fclose(f) == 0;
    if (!ok || !closed) {
      std::remove(tmp.c_str());
      throw std::runtime_error(fmt::format("cannot write {}: {}", path, std::strerror(ok ? errno : err)));
    }
  }
  pause_if_asked();
  // Checked again just before the rename: the target may have appeared meanwhile.
  try {
    require_regular_or_absent(path);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw std::runtime_error(fmt::format("cannot rename {} to {}: {}", tmp, path, std::strerror(err)));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void ensure_directory(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw std::runtime_error(fmt::format("cannot create directory {}: {}", path, ec.message()));
}

std::string file_fingerprint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  std::string block(1 << 20, '\0');
  std::uint64_t h = kFnvOffsetBasis, size = 0;
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    h = fnv1a64(block.data(), got, h);
    size += got;
  }
  if (in.bad()) throw std::invalid_argument(fmt::format("cannot read {}", path));
  return fmt::format("{} bytes, fnv1a64 {:016x}", size, h);
}

}  // namespace attnflow
