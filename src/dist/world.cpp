// MPI implementation of the collective operations (dist.hpp). Every operation is preceded by
// the failure agreement: MPI_Allreduce(MIN) of "my rank if I failed, else INT_MAX", then, on a
// failure, the failing rank's message by MPI_Bcast. A failing process makes the same two calls
// from fail(), so the processes' calls always match and nobody waits for a dead partner.
#include "attnflow/dist/dist.hpp"

#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace attnflow::dist {

namespace {

void finalize_at_exit() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) return;
  // Every rank gets here together (errors and stops are agreed first). The barrier keeps a rank
  // that exits non-zero from making mpirun kill rank 0 before rank 0's report is out.
  std::fflush(nullptr);
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Finalize();
}

int as_int(Index n, const char* what) {
  if (n < 0 || n > std::numeric_limits<int>::max())
    throw std::invalid_argument(std::string("mpi: ") + what + " exceeds an MPI count (2^31 - 1)");
  return static_cast<int>(n);
}

}  // namespace

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (const char* s = std::getenv(v); s && *s) return true;
  return false;
}

World::World(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  std::atexit(finalize_at_exit);  // std::exit (a stopped job) still finalizes
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

World::~World() { finalize_at_exit(); }

int World::agree(bool ok, const std::string& mine, std::string* message) const {
  int me = ok ? INT_MAX : rank_, first = INT_MAX;
  MPI_Allreduce(&me, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first == INT_MAX) return -1;
  std::string text = rank_ == first ? mine : std::string();
  long len = static_cast<long>(text.size());
  MPI_Bcast(&len, 1, MPI_LONG, first, MPI_COMM_WORLD);
  text.resize(static_cast<std::size_t>(len));
  MPI_Bcast(text.data(), static_cast<int>(len), MPI_CHAR, first, MPI_COMM_WORLD);
  if (message) *message = text;
  return first;
}

void World::check() const {
  std::string msg;
  if (const int r = agree(true, "", &msg); r >= 0) throw PeerFailed(r, msg);
}

std::string World::fail(const std::string& message) const {
  std::string msg;
  agree(false, message, &msg);
  return msg;
}

bool World::finish(std::string* message) const { return agree(true, "", message) < 0; }

std::vector<double> World::allgatherv(const double* mine, const std::vector<Index>& counts) const {
  check();
  std::vector<int> cnt(counts.size()), displ(counts.size());
  Index total = 0;
  for (std::size_t p = 0; p < counts.size(); ++p) {
    cnt[p] = as_int(counts[p], "allgatherv part");
    displ[p] = as_int(total, "allgatherv offset");
    total += counts[p];
  }
  std::vector<double> all(static_cast<std::size_t>(total));
  MPI_Allgatherv(mine, cnt[static_cast<std::size_t>(rank_)], MPI_DOUBLE, all.data(), cnt.data(), displ.data(),
                 MPI_DOUBLE, MPI_COMM_WORLD);
  return all;
}

std::vector<std::string> World::gather(const std::string& mine) const {
  check();
  long len = static_cast<long>(mine.size());
  std::vector<long> lens(rank_ == 0 ? static_cast<std::size_t>(size_) : 0);
  MPI_Gather(&len, 1, MPI_LONG, lens.data(), 1, MPI_LONG, 0, MPI_COMM_WORLD);
  std::vector<int> cnt, displ;
  std::string all;
  if (rank_ == 0) {
    Index total = 0;
    for (long l : lens) {
      cnt.push_back(as_int(l, "gather part"));
      displ.push_back(as_int(total, "gather offset"));
      total += l;
    }
    all.resize(static_cast<std::size_t>(total));
  }
  MPI_Gatherv(mine.data(), as_int(static_cast<Index>(mine.size()), "gather part"), MPI_CHAR, all.data(),
              cnt.data(), displ.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
  std::vector<std::string> parts;
  if (rank_ == 0)
    for (int p = 0; p < size_; ++p) parts.push_back(all.substr(static_cast<std::size_t>(displ[p]), cnt[p]));
  return parts;
}

std::string World::broadcast(const std::string& from_root) const {
  check();
  std::string text = rank_ == 0 ? from_root : std::string();
  long len = static_cast<long>(text.size());
  MPI_Bcast(&len, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  text.resize(static_cast<std::size_t>(len));
  MPI_Bcast(text.data(), as_int(len, "broadcast"), MPI_CHAR, 0, MPI_COMM_WORLD);
  return text;
}

void World::broadcast(double* data, Index count, int root) const {
  check();
  MPI_Bcast(data, as_int(count, "broadcast"), MPI_DOUBLE, root, MPI_COMM_WORLD);
}

long World::max(long value) const {
  check();
  long out = 0;
  MPI_Allreduce(&value, &out, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

long World::sum(long value) const {
  check();
  long out = 0;
  MPI_Allreduce(&value, &out, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  return out;
}

}  // namespace attnflow::dist
