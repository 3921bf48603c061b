// Idempotence seen from the kernel: a run with nothing to do makes no mutating system call, as
// `strace -f` sees it (the op-log counts of managed_file_test and the syscall-table counts of
// posix_fs_test are the library's own view; this one cannot be fooled by a call that bypasses the
// table). The test binary re-runs itself under strace in a helper mode (HOSTCFG_STRACE_NOOP), which
// does the no-op work between two marker syscalls; the parent reads the trace between them:
//   - "replace": PosixFs::replace_file of bytes already there;
//   - "converge": the second converge of a user ManagedFile and a system ManagedFile through
//     RootedFs<PosixFs>, records included (no record rewrite, no lock file, no temp file);
//   - "converge-cached": the same, holding a PosixFs::walk_cache() scope around the converge: no
//     mutating call either, and "/" is opened once per identity instead of once per operation.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "hostcfg/backend/posix_fs.hpp"
#include "hostcfg/backend/rooted_fs.hpp"
#include "hostcfg/converge.hpp"
#include "hostcfg/primitives/managed_file.hpp"
#include "support/real_fs.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

constexpr uid_type nobody = 65534;
const char* const app = "com.example.strace";

bool is_root() { return ::geteuid() == 0; }

/// A root-owned 0755 scratch directory under /var/lib/hostcfg-tests, removed at the end.
struct scratch : hostcfg_test::root_scratch_dir {
  scratch() : root_scratch_dir("hostcfg-strace") {}
};

using hostcfg_test::read_whole_file_or_empty;

user_identity sandbox_user() {
  return user_identity{nobody, nobody, {}, "nobody", "/home/nobody", "/bin/sh", std::nullopt, std::nullopt};
}

ManagedFile user_conf() { return ManagedFile{"/home/nobody/.app.conf", "user = yes\n", 0644}; }
ManagedFile system_conf() { return ManagedFile{"/etc/app/app.conf", "system = yes\n", 0644}; }

/// Converges both files in the sandbox `root` (a RootedFs over the real disk) as a root process
/// acting for nobody; `cached`: with a walk cache scope held around the converge.
result<converge_report> converge_sandbox(const std::string& root, bool cached = false) {
  PosixFs posix;
  RootedFs<PosixFs> fs(posix, root);
  RootFor priv(sandbox_user());
  context ctx(fs, priv, app);
  std::optional<PosixFs::walk_cache_scope> scope;
  if (cached) scope.emplace(posix.walk_cache());
  return converge(ctx, user_conf(), system_conf());
}

/// Lays out the sandbox both converge tests run in, `d/root`: root-owned 0755 /etc, /var,
/// /var/lib and /home, and nobody's home /home/nobody. Returns the sandbox's path.
std::string make_sandbox(const scratch& d) {
  const std::string root = d / "root";
  for (const char* dir : {"", "/etc", "/var", "/var/lib", "/home"}) {
    const std::string p = root + dir;
    REQUIRE(::mkdir(p.c_str(), 0755) == 0);
    REQUIRE(::chmod(p.c_str(), 0755) == 0);  // whatever the umask took away
  }
  const std::string home = root + "/home/nobody";
  REQUIRE(::mkdir(home.c_str(), 0755) == 0);
  REQUIRE(::chown(home.c_str(), nobody, nobody) == 0);
  return root;
}

/// The first converge in the sandbox `root` (made by make_sandbox): it succeeds and writes both
/// files' bytes, so the traced second run has something to keep.
void converge_first_time(const std::string& root, bool cached) {
  auto first = converge_sandbox(root, cached);
  REQUIRE(first);
  REQUIRE(first->ok());
  CHECK(read_whole_file_or_empty(root + "/etc/app/app.conf") == "system = yes\n");
  CHECK(read_whole_file_or_empty(root + "/home/nobody/.app.conf") == "user = yes\n");
}

/// How many times the traced window opens "/" by path (each uncached walk starts so). strace -y
/// prints the cwd after AT_FDCWD: `openat(AT_FDCWD</cwd>, "/", O_RDONLY|...) = 3</>`.
std::size_t root_opens(const std::string& window) {
  std::size_t n = 0;
  for (const std::string& line : hostcfg_test::lines_of(window))
    if (line.find("openat(AT_FDCWD") != std::string::npos && line.find(">, \"/\", ") != std::string::npos) ++n;
  return n;
}

/// Every object under `dir`: path -> "ino size mtime ctime mode uid" (what a mutation changes).
std::map<std::string, std::string> tree_state(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    struct ::stat st {};
    if (::lstat(e.path().c_str(), &st) != 0) continue;
    out[e.path().string()] = std::to_string(st.st_ino) + " " + std::to_string(st.st_size) + " " +
                             std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + " " +
                             std::to_string(st.st_ctim.tv_sec) + "." + std::to_string(st.st_ctim.tv_nsec) + " " +
                             std::to_string(st.st_mode) + " " + std::to_string(st.st_uid);
  }
  return out;
}

struct window_summary {
  std::size_t lines = 0;
  std::vector<std::string> mutating;
  std::string text;
};

/// Runs this binary's helper `mode` on `target` under `strace -f` and returns the traced lines
/// between the two markers; "" in `skip` when tracing is impossible here.
window_summary traced_window(const scratch& d, const std::string& mode, const std::string& target, std::string& skip) {
  window_summary out;
  std::string trace = d / "trace.txt";
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  // LeakSanitizer cannot run under ptrace: the sanitizer build's child runs without it.
  std::string cmd = "ASAN_OPTIONS=detect_leaks=0 HOSTCFG_STRACE_NOOP='" + mode + ":" + target +
                    "' strace -f -qq -y -o '" + trace +
                    "' -e trace=%file,%desc,fchmod,fchown,fsync,fdatasync,ftruncate,fsetxattr,flock '" + self +
                    "' --test-case='strace helper*' >'" + d / "stdout.txt" + "' 2>'" + d / "stderr.txt" + "'";
  int rc = std::system(cmd.c_str());
  std::string errors = read_whole_file_or_empty(d / "stderr.txt");
  if (rc != 0 && errors.find("ptrace") != std::string::npos) {
    skip = "strace cannot trace here: " + errors;
    return out;
  }
  std::string log = read_whole_file_or_empty(trace);
  if (rc != 0) {
    FAIL("traced helper failed (status " << rc << "): " << errors << read_whole_file_or_empty(d / "stdout.txt") << "\ntrace tail:\n"
                                         << log.substr(log.size() > 3000 ? log.size() - 3000 : 0));
    return out;
  }
  auto begin = log.find("hostcfg-strace-begin");
  auto end = log.find("hostcfg-strace-end");
  REQUIRE(begin != std::string::npos);
  REQUIRE(end != std::string::npos);
  REQUIRE(begin < end);
  out.text = log.substr(begin, end - begin);
  for (const std::string& line : hostcfg_test::lines_of(out.text)) {
    ++out.lines;
    // The sanitizer runtime checks whether memory is readable by write()ing it into a pipe of its
    // own; -y names every fd, and a pipe is nothing hostcfg writes to.
    if (line.find("<pipe:[") != std::string::npos) continue;
    for (const char* bad : {"write(", "writev(", "pwrite", "rename", "unlink", "mkdir", "symlink", "link(", "linkat(",
                            "chmod", "chown", "fsync", "fdatasync", "truncate", "setxattr", "removexattr", "O_CREAT",
                            "O_WRONLY", "O_RDWR", "O_TRUNC", "utime", "mknod"}) {
      if (line.find(bad) != std::string::npos) {
        out.mutating.push_back(line);
        break;
      }
    }
  }
  return out;
}

bool have_strace() { return std::system("command -v strace >/dev/null 2>&1") == 0; }

}  // namespace

// Runs only as the traced child: the no-op work between two marker syscalls.
TEST_CASE("strace helper: no-op work between markers" * doctest::skip(std::getenv("HOSTCFG_STRACE_NOOP") == nullptr)) {
  std::string arg = std::getenv("HOSTCFG_STRACE_NOOP");
  std::string mode = arg.substr(0, arg.find(':'));
  std::string target = arg.substr(arg.find(':') + 1);
  if (mode == "replace" || mode == "change") {
    PosixFs fs;
    ::access("/hostcfg-strace-begin", F_OK);
    auto done = fs.replace_file(actor::root(), target, mode == "replace" ? "same bytes\n" : "other bytes\n",
                                replace_options{});
    ::access("/hostcfg-strace-end", F_OK);
    REQUIRE(done);
    CHECK(done->changed == (mode == "change"));
  } else {
    ::access("/hostcfg-strace-begin", F_OK);
    auto report = converge_sandbox(target, mode == "converge-cached");
    ::access("/hostcfg-strace-end", F_OK);
    REQUIRE(report);
    CHECK(report->ok());
    for (const auto& s : report->steps) CHECK(s.planned.empty());
  }
}

TEST_CASE("strace -f: a no-op replace_file makes no mutating system call") {
  if (!have_strace()) { HOSTCFG_SKIP("strace not installed (apt install strace)"); return; }
  scratch d;
  {
    std::ofstream out(d / "f", std::ios::binary);
    out << "same bytes\n";
  }
  auto before = tree_state(d.path);
  std::string skip;
  auto window = traced_window(d, "replace", d / "f", skip);
  if (!skip.empty()) { HOSTCFG_SKIP(skip); return; }
  std::string offending;
  for (const auto& l : window.mutating) offending += l + "\n";
  MESSAGE("no-op replace: " << window.lines << " traced calls, " << window.mutating.size() << " mutating");
  CHECK(window.lines > 3);  // the walk's opens and the compare read are there
  CHECK(window.text.find("openat") != std::string::npos);
  CHECK(window.text.find("read(") != std::string::npos);  // it did compare the bytes
  CHECK(offending == "");
  auto after = tree_state(d.path);
  after.erase(d / "trace.txt");
  after.erase(d / "stdout.txt");
  after.erase(d / "stderr.txt");
  CHECK(after == before);

  // The detector itself: a replace that does change the file shows its mutating calls.
  auto changing = traced_window(d, "change", d / "f", skip);
  std::string seen;
  for (const auto& l : changing.mutating) seen += l + "\n";
  MESSAGE("changing replace: " << changing.mutating.size() << " mutating calls:\n" << seen);
  CHECK(changing.mutating.size() >= 5);  // create temp, write, fchmod, fsync, rename (+ fsync dir)
  CHECK(seen.find("O_CREAT") != std::string::npos);
  CHECK(seen.find("rename") != std::string::npos);
  CHECK(read_whole_file_or_empty(d / "f") == "other bytes\n");
}

TEST_CASE("strace -f: a second converge (user and system file, records) makes no mutating system call") {
  if (!is_root()) { HOSTCFG_SKIP("needs root: the system half runs elevated in this process"); return; }
  if (!have_strace()) { HOSTCFG_SKIP("strace not installed (apt install strace)"); return; }
  scratch d;
  const std::string root = make_sandbox(d);
  const std::string home = root + "/home/nobody";

  converge_first_time(root, false);
  CHECK(std::filesystem::exists(root + "/var/lib/hostcfg/" + app + ".record"));
  CHECK(std::filesystem::exists(home + "/.local/state/hostcfg/" + std::string(app) + ".record"));

  auto before = tree_state(root);
  std::string skip;
  auto window = traced_window(d, "converge", root, skip);
  if (!skip.empty()) { HOSTCFG_SKIP(skip); return; }
  std::string offending;
  for (const auto& l : window.mutating) offending += l + "\n";
  MESSAGE("second converge: " << window.lines << " traced calls, " << window.mutating.size() << " mutating");
  CHECK(window.lines > 20);  // probes of both files and both records
  CHECK(window.text.find(".record") != std::string::npos);  // the records were read, not skipped
  CHECK(offending == "");
  CHECK(tree_state(root) == before);  // same inodes, sizes, times, modes, owners; no new name
}

TEST_CASE("strace -f: a second converge (it holds walk_cache()) opens \"/\" once per identity, and mutates nothing") {
  if (!is_root()) { HOSTCFG_SKIP("needs root: the system half runs elevated in this process"); return; }
  if (!have_strace()) { HOSTCFG_SKIP("strace not installed (apt install strace)"); return; }
  scratch d;
  const std::string root = make_sandbox(d);
  converge_first_time(root, true);  // cached: it still changes what it must

  auto before = tree_state(root);
  std::string skip;
  // converge holds a walk cache itself; "converge-cached" adds the caller's own scope around it.
  auto plain = traced_window(d, "converge", root, skip);
  if (!skip.empty()) { HOSTCFG_SKIP(skip); return; }
  auto cached = traced_window(d, "converge-cached", root, skip);
  std::string offending;
  for (const auto& l : plain.mutating) offending += l + "\n";
  for (const auto& l : cached.mutating) offending += l + "\n";
  MESSAGE("second converge: " << plain.lines << " traced calls (" << root_opens(plain.text) << " opens of /); with "
          "the caller's scope too: " << cached.lines << " (" << root_opens(cached.text) << ")");
  CHECK(cached.text.find(".record") != std::string::npos);  // the records were still read
  CHECK(offending == "");
  CHECK(tree_state(root) == before);
  // Two identities read (root for the system file and record, nobody for the user's): "/" once
  // each (without a walk cache every operation walked from "/": more than 10 opens here).
  CHECK(root_opens(plain.text) == 2);
  CHECK(root_opens(cached.text) == 2);
  CHECK(cached.lines == plain.lines);
}
