#pragma once
/// @file
/// A fault-injecting syscall table for PosixFs (SQLite's aSyscall approach): it counts and logs
/// every call PosixFs makes, and fails call k once, fails call k and every later call of the same
/// kind, or "crashes" at call k (every call from k on returns EIO, so no cleanup can happen). The
/// seam under `hostcfg::testing::posix_sweep` (posix_sweep.hpp); use it on its own to test one
/// failure of the real sequence:
///
///     hostcfg::testing::syscall_faults faults;
///     hostcfg::PosixFs fs(faults.table());
///     faults.arm(hostcfg::testing::fault_mode::fail_once, 7, ENOSPC);
///     auto r = fs.replace_file(...);   // call 7 of the sequence fails with ENOSPC
///
/// close() always really closes the fd (a crashed process's fds are closed by the kernel too),
/// so a sweep does not leak descriptors; it still reports the injected failure.
#include <fcntl.h>

#include <cerrno>
#include <cstddef>
#include <string>
#include <vector>

#include "hostcfg/backend/syscalls.hpp"
#include "hostcfg/version.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace testing {

/// What `syscall_faults::arm` injects.
enum class fault_mode {
  none,             ///< count only
  fail_once,        ///< call k fails with the chosen errno, every other call succeeds
  fail_persistent,  ///< call k fails, and so does every later call of the same syscall
  crash,            ///< call k and every call after it fail with EIO
};

/// Readable name of a fault mode, for test output.
inline const char* fault_mode_name(fault_mode m) {
  switch (m) {
    case fault_mode::none: return "none";
    case fault_mode::fail_once: return "fail once";
    case fault_mode::fail_persistent: return "fail persistently";
    case fault_mode::crash: return "crash";
  }
  return "?";
}

/// A syscall table that forwards to `real` unless a fault is armed. Not copyable: the table's
/// context points at this object.
class syscall_faults {
 public:
  explicit syscall_faults(const syscall_table& real = default_syscalls()) : real_(real) {
    table_ = syscall_table{this,      w_openat,   w_openat2,  w_fstat,     w_fstatat,   w_read,
                                    w_write,   w_pwrite,   w_ftruncate, w_fsync,    w_renameat,  w_unlinkat,
                                    w_mkdirat, w_symlinkat, w_readlinkat, w_fchmod, w_fchmodat,  w_fchown,
                                    w_fchownat, w_flock,   w_list_dir, w_get_flags, w_flistxattr, w_fgetxattr,
                                    w_fsetxattr, w_close,  w_getrandom, w_exchangeat};
  }
  syscall_faults(const syscall_faults&) = delete;
  syscall_faults& operator=(const syscall_faults&) = delete;

  /// The table to hand to PosixFs.
  const syscall_table& table() const { return table_; }

  /// Arms a fault at call index `k` (0-based, counted from now) and resets the counters.
  void arm(fault_mode mode, std::size_t k, int err = EIO) {
    reset();
    mode_ = mode;
    at_ = k;
    errno_ = err;
  }
  /// No fault; counters reset.
  void disarm() { arm(fault_mode::none, 0); }
  /// Resets counters and the log, keeps the armed fault.
  void reset() {
    calls_ = 0;
    mutating_ = 0;
    fired_ = false;
    failing_kind_.clear();
    log_.clear();
    changes_disk_.clear();
  }

  /// Calls made since the last arm/reset.
  std::size_t calls() const { return calls_; }
  /// Calls that would change the filesystem (writes, creates, renames, unlinks, chmod/chown,
  /// setxattr, fsync), attempted since the last arm/reset.
  std::size_t mutating_calls() const { return mutating_; }
  /// True once the armed fault has fired.
  bool fired() const { return fired_; }
  /// Names of the calls, in order ("openat", "fstat", ...).
  const std::vector<std::string>& log() const { return log_; }
  /// Whether call `k` of the log would change the filesystem (counted in `mutating_calls`).
  bool changes_disk(std::size_t k) const { return k < changes_disk_.size() && changes_disk_[k]; }

 private:
  static syscall_faults& self(void* ctx) { return *static_cast<syscall_faults*>(ctx); }

  // True when this call must fail (errno is then set).
  bool inject(const char* name, bool mutating) {
    std::size_t index = calls_++;
    if (mutating) ++mutating_;
    log_.emplace_back(name);
    changes_disk_.push_back(mutating);
    bool fail = false;
    int err = errno_;
    switch (mode_) {
      case fault_mode::none: break;
      case fault_mode::fail_once: fail = index == at_; break;
      case fault_mode::fail_persistent:
        if (index == at_) failing_kind_ = name;
        fail = !failing_kind_.empty() && failing_kind_ == name;
        break;
      case fault_mode::crash:
        fail = index >= at_;
        err = EIO;
        break;
    }
    if (fail) {
      fired_ = true;
      errno = err;
    }
    return fail;
  }

  static bool creates(int flags) { return (flags & (O_CREAT | O_WRONLY | O_RDWR | O_TRUNC)) != 0; }

  static int w_openat(void* c, int d, const char* p, int f, mode_t m) {
    auto& s = self(c);
    return s.inject("openat", creates(f)) ? -1 : s.real_.openat(s.real_.context, d, p, f, m);
  }
  static int w_openat2(void* c, int d, const char* p, int f, mode_t m, std::uint64_t r) {
    auto& s = self(c);
    return s.inject("openat2", creates(f)) ? -1 : s.real_.openat2(s.real_.context, d, p, f, m, r);
  }
  static int w_fstat(void* c, int fd, struct ::stat* st) {
    auto& s = self(c);
    return s.inject("fstat", false) ? -1 : s.real_.fstat(s.real_.context, fd, st);
  }
  static int w_fstatat(void* c, int d, const char* p, struct ::stat* st, int f) {
    auto& s = self(c);
    return s.inject("fstatat", false) ? -1 : s.real_.fstatat(s.real_.context, d, p, st, f);
  }
  static ssize_t w_read(void* c, int fd, void* b, std::size_t n) {
    auto& s = self(c);
    return s.inject("read", false) ? -1 : s.real_.read(s.real_.context, fd, b, n);
  }
  static ssize_t w_write(void* c, int fd, const void* b, std::size_t n) {
    auto& s = self(c);
    return s.inject("write", true) ? -1 : s.real_.write(s.real_.context, fd, b, n);
  }
  static ssize_t w_pwrite(void* c, int fd, const void* b, std::size_t n, off_t o) {
    auto& s = self(c);
    return s.inject("pwrite", true) ? -1 : s.real_.pwrite(s.real_.context, fd, b, n, o);
  }
  static int w_ftruncate(void* c, int fd, off_t n) {
    auto& s = self(c);
    return s.inject("ftruncate", true) ? -1 : s.real_.ftruncate(s.real_.context, fd, n);
  }
  static int w_fsync(void* c, int fd) {
    auto& s = self(c);
    return s.inject("fsync", true) ? -1 : s.real_.fsync(s.real_.context, fd);
  }
  static int w_renameat(void* c, int fd1, const char* a, int fd2, const char* b) {
    auto& s = self(c);
    return s.inject("renameat", true) ? -1 : s.real_.renameat(s.real_.context, fd1, a, fd2, b);
  }
  static int w_exchangeat(void* c, int fd1, const char* a, int fd2, const char* b) {
    auto& s = self(c);
    return s.inject("exchangeat", true) ? -1 : s.real_.exchangeat(s.real_.context, fd1, a, fd2, b);
  }
  static int w_unlinkat(void* c, int d, const char* p, int f) {
    auto& s = self(c);
    return s.inject("unlinkat", true) ? -1 : s.real_.unlinkat(s.real_.context, d, p, f);
  }
  static int w_mkdirat(void* c, int d, const char* p, mode_t m) {
    auto& s = self(c);
    return s.inject("mkdirat", true) ? -1 : s.real_.mkdirat(s.real_.context, d, p, m);
  }
  static int w_symlinkat(void* c, const char* t, int d, const char* p) {
    auto& s = self(c);
    return s.inject("symlinkat", true) ? -1 : s.real_.symlinkat(s.real_.context, t, d, p);
  }
  static ssize_t w_readlinkat(void* c, int d, const char* p, char* b, std::size_t n) {
    auto& s = self(c);
    return s.inject("readlinkat", false) ? -1 : s.real_.readlinkat(s.real_.context, d, p, b, n);
  }
  static int w_fchmod(void* c, int fd, mode_t m) {
    auto& s = self(c);
    return s.inject("fchmod", true) ? -1 : s.real_.fchmod(s.real_.context, fd, m);
  }
  static int w_fchmodat(void* c, int d, const char* p, mode_t m, int f) {
    auto& s = self(c);
    return s.inject("fchmodat", true) ? -1 : s.real_.fchmodat(s.real_.context, d, p, m, f);
  }
  static int w_fchown(void* c, int fd, uid_t u, gid_t g) {
    auto& s = self(c);
    return s.inject("fchown", true) ? -1 : s.real_.fchown(s.real_.context, fd, u, g);
  }
  static int w_fchownat(void* c, int d, const char* p, uid_t u, gid_t g, int f) {
    auto& s = self(c);
    return s.inject("fchownat", true) ? -1 : s.real_.fchownat(s.real_.context, d, p, u, g, f);
  }
  static int w_flock(void* c, int fd, int op) {
    auto& s = self(c);
    return s.inject("flock", false) ? -1 : s.real_.flock(s.real_.context, fd, op);
  }
  static int w_list_dir(void* c, int fd, std::vector<std::string>* names) {
    auto& s = self(c);
    return s.inject("list_dir", false) ? -1 : s.real_.list_dir(s.real_.context, fd, names);
  }
  static int w_get_flags(void* c, int fd, unsigned long* flags) {
    auto& s = self(c);
    return s.inject("get_flags", false) ? -1 : s.real_.get_flags(s.real_.context, fd, flags);
  }
  static ssize_t w_flistxattr(void* c, int fd, char* b, std::size_t n) {
    auto& s = self(c);
    return s.inject("flistxattr", false) ? -1 : s.real_.flistxattr(s.real_.context, fd, b, n);
  }
  static ssize_t w_fgetxattr(void* c, int fd, const char* name, void* v, std::size_t n) {
    auto& s = self(c);
    return s.inject("fgetxattr", false) ? -1 : s.real_.fgetxattr(s.real_.context, fd, name, v, n);
  }
  static int w_fsetxattr(void* c, int fd, const char* name, const void* v, std::size_t n, int f) {
    auto& s = self(c);
    return s.inject("fsetxattr", true) ? -1 : s.real_.fsetxattr(s.real_.context, fd, name, v, n, f);
  }
  static int w_close(void* c, int fd) {
    auto& s = self(c);
    bool fail = s.inject("close", false);
    int saved = errno;
    int rc = s.real_.close(s.real_.context, fd);  // always closed, see the file comment
    if (fail) {
      errno = saved;
      return -1;
    }
    return rc;
  }
  static ssize_t w_getrandom(void* c, void* b, std::size_t n, unsigned f) {
    auto& s = self(c);
    return s.inject("getrandom", false) ? -1 : s.real_.getrandom(s.real_.context, b, n, f);
  }

  syscall_table real_;  // a copy: plain function pointers, so a temporary table is fine
  syscall_table table_{};
  fault_mode mode_ = fault_mode::none;
  std::size_t at_ = 0;
  int errno_ = EIO;
  std::size_t calls_ = 0;
  std::size_t mutating_ = 0;
  bool fired_ = false;
  std::string failing_kind_;
  std::vector<std::string> log_;
  std::vector<bool> changes_disk_;
};

}  // namespace testing

HOSTCFG_END_NAMESPACE
