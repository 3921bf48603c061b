#pragma once
// Shared helpers for tests that touch the real disk or real processes: a root-owned scratch
// directory, reading a whole file, counting this process's open descriptors, a shell command's
// output, and running code in a forked child that dropped to another uid (for "as an ordinary
// user" cases: tests run as root, so the ordinary user is made by fork + setgroups/setgid/setuid,
// usually to nobody).
//
// They live here, once, because each test file had grown its own copy with small differences
// (one REQUIREd its mkdtemp, one silently left an empty path; one read through ifstream, one
// returned "<unreadable>"); one version keeps every caller on the same, checked behaviour.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

namespace hostcfg_test {

/// The uid and gid of `nobody` on Linux and macOS: the ordinary user the tests act as.
inline constexpr unsigned nobody_id = 65534;

/// Where a `root_scratch_dir` is made.
enum class scratch_disk {
  var_tmp,      ///< the disk: /var/lib/hostcfg-tests (root-owned 0755 down from "/"; never under /tmp or /var/tmp)
  tmpfs_first,  ///< /dev/shm/hostcfg-tests when /dev/shm is tmpfs (fsync costs nothing there), else the disk
};

/// Makes (once) and checks a base directory for scratch trees: a directory, not a link, owned by
/// this process's euid, mode 0755. A trusted path needs every component to be unwritable by other
/// users; /var/tmp and /dev/shm are world-writable (sticky), so the tests' trees live one level
/// below in a directory of our own, and one that someone else made first is refused.
inline std::string ensure_scratch_base(const std::string& base) {
  if (::mkdir(base.c_str(), 0755) != 0 && errno != EEXIST) FAIL("mkdir " << base << ": " << std::strerror(errno));
  struct ::stat st {};
  REQUIRE_MESSAGE(::lstat(base.c_str(), &st) == 0, "lstat " << base);
  REQUIRE_MESSAGE(S_ISDIR(st.st_mode), base << " is not a directory");
  REQUIRE_MESSAGE(st.st_uid == ::geteuid(), base << " is owned by uid " << st.st_uid << ", not by this process");
  if ((st.st_mode & 07777) != 0755) REQUIRE(::chmod(base.c_str(), 0755) == 0);
  return base;
}

/// The directory `scratch_disk` names on this machine (made and checked on first use).
inline std::string scratch_base(scratch_disk where) {
  if (where == scratch_disk::tmpfs_first) {
    struct ::stat st {};
    // Only a root-owned sticky /dev/shm: our base inside it cannot be renamed or removed by
    // another user, and it is checked to be ours.
    if (::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & S_ISVTX))
      return ensure_scratch_base("/dev/shm/hostcfg-tests");
  }
  return ensure_scratch_base("/var/lib/hostcfg-tests");
}

/// A fresh 0755 directory `<scratch_base(where)>/<tag>-XXXXXX` (mkdtemp), left for the caller to
/// remove; `root_scratch_dir` removes its own.
inline std::string make_scratch_dir(const std::string& tag, scratch_disk where = scratch_disk::var_tmp) {
  std::string templ = scratch_base(where) + "/" + tag + "-XXXXXX";
  std::vector<char> name(templ.begin(), templ.end());
  name.push_back('\0');
  REQUIRE_MESSAGE(::mkdtemp(name.data()) != nullptr, "mkdtemp " << templ);
  REQUIRE(::chmod(name.data(), 0755) == 0);
  return name.data();
}

/// A fresh empty file `<scratch_base>/<tag>-XXXXXX` (mkstemp); its open descriptor in `fd`.
inline std::string make_scratch_file(const std::string& tag, int& fd) {
  std::string templ = scratch_base(scratch_disk::var_tmp) + "/" + tag + "-XXXXXX";
  std::vector<char> name(templ.begin(), templ.end());
  name.push_back('\0');
  fd = ::mkstemp(name.data());
  REQUIRE_MESSAGE(fd >= 0, "mkstemp " << templ);
  return name.data();
}

/// A fresh 0755 directory owned by the caller's euid (root in CI), made with mkdtemp as
/// `<base>/<tag>-XXXXXX` and removed with everything below it when the object goes away.
/// Creation is REQUIREd: a test never runs against an empty path.
///
///     hostcfg_test::root_scratch_dir d("hostcfg-posixfs");
///     write_file(d / "hosts", ...);
struct root_scratch_dir {
  std::string path;  ///< absolute path of the directory

  /// Makes `<scratch_base(where)>/<tag>-XXXXXX`.
  explicit root_scratch_dir(const std::string& tag, scratch_disk where = scratch_disk::var_tmp)
      : root_scratch_dir(scratch_base(where), tag) {}

  /// Makes `<base>/<tag>-XXXXXX` under an explicit base directory (an override such as an
  /// environment variable, or a file system a test needs, e.g. a second one for EXDEV).
  root_scratch_dir(const std::string& base, const std::string& tag) {
    std::string templ = base + "/" + tag + "-XXXXXX";
    std::vector<char> name(templ.begin(), templ.end());
    name.push_back('\0');
    REQUIRE_MESSAGE(::mkdtemp(name.data()) != nullptr, "mkdtemp " << templ);
    path = name.data();
    // mkdtemp makes it 0700; the tests' other users (nobody) must be able to traverse it.
    REQUIRE(::chmod(path.c_str(), 0755) == 0);
  }

  ~root_scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  root_scratch_dir(const root_scratch_dir&) = delete;
  root_scratch_dir& operator=(const root_scratch_dir&) = delete;

  /// `path + "/" + name`.
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

/// The whole content of the file at `path`, or nullopt when it cannot be opened.
inline std::optional<std::string> read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// The whole content of the file at `path`, or "" when it cannot be opened (for comparisons
/// where a missing file and an empty one are both simply "not the expected bytes").
inline std::string read_whole_file_or_empty(const std::string& path) { return read_whole_file(path).value_or(""); }

/// Replaces the content of the file at `path` with `bytes` (creating it with the umask's mode);
/// REQUIREs that every byte was written, so a test never goes on against a half-made fixture.
inline void write_whole_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  out.close();
  REQUIRE_MESSAGE(out.good(), "could not write " << path);
}

/// How many descriptors this process has open (the listing's own one included, the same each
/// time), to show that an operation leaks none: compare before and after.
inline std::size_t open_fd_count() {
  std::size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++n;
  }
  return n;
}

/// The exit status of a forked child that could not drop its privileges.
inline constexpr int child_could_not_drop = 255;
/// `run_as_user_status`'s answer when the child did not exit normally (killed by a signal).
inline constexpr int child_did_not_exit = 254;

/// How a child of `run_as_user_with_output` ended, and what it sent back.
struct child_output {
  bool exited = false;  ///< it exited normally (not killed), and the pipe could be made
  int exit_code = -1;   ///< `body`'s return value (or `child_could_not_drop`); the raw wait status when not `exited`
  std::string out;      ///< what `body` put in its `out` argument ("<pipe failed>" when there was no pipe)
};

/// Runs `body` in a forked child that dropped to user `uid` and group `gid` with no supplementary
/// groups; the text `body` leaves in its argument comes back through a pipe, its return value is
/// the exit status. Needs root. (Two ids for a made-up user whose primary group is its own.)
inline child_output run_as_user_with_output(unsigned uid, unsigned gid,
                                            const std::function<int(std::string& out)>& body) {
  child_output result;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    result.out = "<pipe failed>";
    return result;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    // Checked after the calls too: a body that ran with root's ids would prove nothing.
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0 || ::getuid() != uid ||
        ::getgid() != gid)
      ::_exit(child_could_not_drop);
    std::string out;
    const int code = body(out);
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::write(p[1], out.data() + done, out.size() - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    ::_exit(code);
  }
  ::close(p[1]);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) result.out.append(buf, static_cast<std::size_t>(n));
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exited = WIFEXITED(status);
  result.exit_code = result.exited ? WEXITSTATUS(status) : status;  // else the raw wait status, for messages
  return result;
}

/// `run_as_user_with_output(id, id, body)`: uid and gid both `id` (nobody's are the same number).
inline child_output run_as_user_with_output(unsigned id, const std::function<int(std::string& out)>& body) {
  return run_as_user_with_output(id, id, body);
}

/// Runs `body` in a forked child that dropped to uid/gid `id` with no supplementary groups, and
/// returns its exit status: `body`'s return value (keep it within 0..253), or
/// `child_could_not_drop` / `child_did_not_exit`. Needs root.
inline int run_as_user_status(unsigned id, const std::function<int()>& body) {
  const child_output child = run_as_user_with_output(id, [&](std::string&) { return body(); });
  return child.exited ? child.exit_code : child_did_not_exit;
}

/// Runs `body` in a forked child that dropped to user `uid` and group `gid` with no supplementary
/// groups, and returns what `body` returned (sent back through a pipe), or "<child died: ...>"
/// followed by whatever arrived when the child could not drop or did not exit 0. Needs root.
inline std::string run_as_user_capturing(unsigned uid, unsigned gid, const std::function<std::string()>& body) {
  const child_output child = run_as_user_with_output(uid, gid, [&](std::string& out) {
    out = body();
    return 0;
  });
  if (!child.exited || child.exit_code != 0)
    return std::string("<child died: ") + (child.exited ? "exit code " : "wait status ") +
           std::to_string(child.exit_code) + ">" + child.out;
  return child.out;
}

/// `run_as_user_capturing(id, id, body)`: uid and gid both `id` (nobody's are the same number).
inline std::string run_as_user_capturing(unsigned id, const std::function<std::string()>& body) {
  return run_as_user_capturing(id, id, body);
}

/// What `/bin/sh -c command` printed on its standard output (read to the end; "" when popen
/// fails). For the tests' setup and clean-up commands (useradd, visudo, rm -rf, cat); their exit
/// status is not returned, so a test that needs it has the command echo it.
inline std::string shell_output(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return out;
  char buffer[512];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  ::pclose(pipe);
  return out;
}

}  // namespace hostcfg_test
