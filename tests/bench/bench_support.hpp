#pragma once
// Helpers shared by the benchmark programs of tests/bench: scratch trees on the real disk, the
// PASS/MISS verdict line, medians. Benchmarks are not pass/fail: each prints a ratio measured in
// the same run against its target and always exits 0 unless it could not measure at all.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace hostcfg_bench {

/// Stops the program with a message: a benchmark that cannot set itself up measures nothing.
[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "benchmark setup failed: %s (%s)\n", what.c_str(), std::strerror(errno));
  std::exit(2);
}

/// A fresh scratch directory, root-owned 0755 under /var/lib/hostcfg-tests when run as root (PosixFs refuses
/// root writes below a user-writable directory, and /tmp itself is world-writable), else under
/// $TMPDIR or /tmp. Removed by `remove_tree` at the end.
inline std::string make_scratch(const char* tag) {
  std::string base = ::geteuid() == 0 ? "/var/tmp" : (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
  std::string templ = base + "/hostcfg-bench-" + tag + "-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) die("mkdtemp " + templ);
  std::string dir(buf.data());
  if (::chmod(dir.c_str(), 0755) != 0) die("chmod " + dir);
  return dir;
}

/// mkdir -p with an exact mode for every level it creates.
inline void make_dirs(const std::string& path, mode_t mode = 0755) {
  for (std::size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    std::string part = path.substr(0, pos);
    if (::mkdir(part.c_str(), mode) == 0) {
      if (::chmod(part.c_str(), mode) != 0) die("chmod " + part);
    } else if (errno != EEXIST) {
      die("mkdir " + part);
    }
  }
}

/// Writes all of `bytes` to `fd`; false when a write fails or writes nothing.
inline bool write_all(int fd, const std::string& bytes) {
  for (std::size_t done = 0; done < bytes.size();) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

/// Writes `bytes` to `path` (created or truncated) with `mode`.
inline void write_file(const std::string& path, const std::string& bytes, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) die("open " + path);
  if (!write_all(fd, bytes)) die("write " + path);
  if (::fchmod(fd, mode) != 0) die("fchmod " + path);
  ::close(fd);
}

/// The whole file, or dies.
inline std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open " + path);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) die("read " + path);
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

/// The read floor: the whole file once, as a careful reader would (one buffer sized from fstat,
/// one read). An empty string when it cannot be opened.
inline std::string read_floor(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct ::stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) return {};
  std::string out(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

/// rm -rf of a scratch tree this program made (never follows symlinks).
inline void remove_tree(const std::string& dir) {
  if (dir.rfind("/var/tmp/hostcfg-bench-", 0) != 0 && dir.find("/hostcfg-bench-") == std::string::npos) return;
  std::string cmd = "rm -rf -- '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir.c_str());
}

/// Median of a sample (copies: the caller's order is kept).
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// One verdict line, the format run-benchmarks collects:
/// `RESULT <name>: <ratio> (target <= 2.00) PASS`. `at_most`: the ratio must not exceed the target
/// (a cost ratio); otherwise it must reach it (a speed-up).
inline bool verdict(const std::string& name, double ratio, double target, bool at_most, const std::string& note = {}) {
  bool pass = at_most ? ratio <= target : ratio >= target;
  std::printf("RESULT %-44s %8.2f (target %s %.2f) %s%s%s\n", (name + ":").c_str(), ratio, at_most ? "<=" : ">=",
              target, pass ? "PASS" : "MISS", note.empty() ? "" : "  ", note.c_str());
  std::fflush(stdout);
  return pass;
}

}  // namespace hostcfg_bench
