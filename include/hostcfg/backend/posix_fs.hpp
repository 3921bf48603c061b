#pragma once
/// @file
/// `PosixFs`: the real filesystem backend (the `Fs` contract of hostcfg/fs.hpp) on Linux and macOS.
///
/// How it walks. Every path is absolute and normal; the walk opens "/" and then each directory
/// component with `O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC` (openat2 `RESOLVE_NO_SYMLINKS` where the
/// kernel has it, openat otherwise), and every later call is an `*at()` call on that verified
/// directory fd or an `f*()` call on an opened fd. The process cwd is never used. A symlink in an
/// intermediate component is followed only when it is *trusted*: the link is owned by root (or by
/// the non-root identity the kernel checks: the actor, or this non-root process), and so is the
/// directory holding it, and no one else can replace the link in that directory (not group- or
/// world-writable, unless sticky). That accepts macOS
/// `/etc -> private/etc`, `/var`, `/tmp`; any other symlink gives ELOOP naming the component.
///
/// Acting identity. Every operation runs as its `actor`:
/// - process root, actor not root: the operation runs with the actor's uid/gid/groups (Linux:
///   per-thread `setfsuid`/`setfsgid` and a raw, thread-local `SYS_setgroups`; macOS:
///   `pthread_setugid_np`), restored afterwards. Files it creates belong to the actor, and the
///   kernel checks the actor's permissions;
/// - process not root, actor is another non-root uid: EPERM ("cannot act as uid N");
/// - process not root, actor root: attempted as the process; the kernel's EACCES/EPERM is the
///   honest answer.
///
/// Safe as root. When the actor is root (in a root process), mutating operations (replace_file, symlink,
/// replace_symlink, rename, unlink, mkdir, rmdir, chmod, lchown) refuse with `errc::unsafe_path`,
/// naming the directory, when a non-root user could change the directory they work in:
/// - the directory holding the entry is *writable by non-root*: owned by a non-root uid (its owner
///   can always chmod it writable), or group-writable with a group other than root/wheel (gid 0;
///   on macOS also admin, gid 80), or world-writable (even sticky: anyone could pre-create the
///   name we are about to create);
/// - an ancestor directory is writable by non-root, unless it is root-owned and sticky and the
///   child we pass through is root-owned (so nobody else can rename the child away: /var/tmp/x).
/// Root never writes into a user-writable directory; the caller acts as that user there instead.
///
/// `replace_file` follows RELIABILITY.md's sequence: open+fstat the target (O_NOFOLLOW|O_NONBLOCK:
/// FIFO/device/directory refused without blocking, nlink > 1 refused with EMLINK, immutable or
/// append-only refused with `errc::locked`); only-if-different; a temp `.<name>.hostcfg-<random>`
/// beside it (O_CREAT|O_EXCL|O_NOFOLLOW, another name on EEXIST); write all; fchown/fchmod to the
/// replaced file's owner and mode (a new file: `options.mode`/`uid`/`gid`, mode exact whatever the
/// umask); xattrs copied (security.* included) or the replace refused (`errc::unsupported` naming
/// the attribute); fsync (F_FULLFSYNC on macOS; failure: temp unlinked, error, never retried);
/// compare-and-swap re-check; renameat; fsync of the directory (failure: success with
/// `durable == false`). Stale temps of that name (regular files owned by the actor; for root, any
/// owner) are removed by the next replace of that name. A replace whose bytes are already there
/// makes no mutating system call (no temp, no mtime/ctime change), unless it removes such a
/// stale temp. The CAS is not retried here: a concurrent edit comes back as
/// `errc::changed_since_probe` and the caller re-probes.
///
/// Locks: `lock(path)` takes flock on an fd of `path` itself (file or directory), leaving no file.
/// A lock on a file is on that inode and does not survive `replace_file` (which puts a new inode
/// at the name): to serialize writers of a file, lock its directory.
///
/// Walk cache (opt-in): by default every operation walks from "/" with fresh directory fds. While
/// a scope from `walk_cache()` lives, the walk reuses the fds of directories it already opened and
/// verified for the same identity and the same root-safety rule, drops those at or below anything
/// this PosixFs renames, removes or creates, and closes them all when the scope ends (the rules
/// and why they are safe: `walk_cache()`). A cached walk costs no system call at all.
///
/// Every system call goes through a `syscall_table` (hostcfg/backend/syscalls.hpp) that must
/// outlive the PosixFs and any `fs_lock` it returned.
///
///     hostcfg::PosixFs fs;
///     auto done = fs.replace_file(hostcfg::actor::root(), "/etc/hosts", bytes, {});

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <linux/fs.h>
#elif defined(__APPLE__)
#include <pthread.h>
#include <sys/kauth.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hostcfg/backend/syscalls.hpp"
#include "hostcfg/error.hpp"
#include "hostcfg/fs.hpp"
#include "hostcfg/path.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace detail {

/// An fd closed through the syscall table (so tests see and count every close).
class table_fd {
 public:
  table_fd() = default;
  table_fd(const syscall_table* sys, int fd) noexcept : sys_(sys), fd_(fd) {}
  table_fd(table_fd&& other) noexcept : sys_(other.sys_), fd_(std::exchange(other.fd_, -1)) {}
  table_fd& operator=(table_fd&& other) noexcept {
    if (this != &other) {
      reset();
      sys_ = other.sys_;
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  table_fd(const table_fd&) = delete;
  table_fd& operator=(const table_fd&) = delete;
  ~table_fd() { reset(); }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset() noexcept {
    if (fd_ >= 0) sys_->close(sys_->context, fd_);
    fd_ = -1;
  }

 private:
  const syscall_table* sys_ = nullptr;
  int fd_ = -1;
};

inline file_type file_type_of(mode_t mode) {
  if (S_ISREG(mode)) return file_type::regular;
  if (S_ISDIR(mode)) return file_type::directory;
  if (S_ISLNK(mode)) return file_type::symlink;
  if (S_ISFIFO(mode)) return file_type::fifo;
  if (S_ISSOCK(mode)) return file_type::socket;
  if (S_ISBLK(mode)) return file_type::block_device;
  if (S_ISCHR(mode)) return file_type::char_device;
  return file_type::unknown;
}

inline file_status status_of(const struct ::stat& st) {
  file_status out;
  out.type = file_type_of(st.st_mode);
  out.mode = static_cast<mode_type>(st.st_mode & 07777);
  out.uid = st.st_uid;
  out.gid = st.st_gid;
  out.size = static_cast<std::uint64_t>(st.st_size);
  out.dev = static_cast<std::uint64_t>(st.st_dev);
  out.ino = static_cast<std::uint64_t>(st.st_ino);
  out.nlink = static_cast<std::uint64_t>(st.st_nlink);
#if defined(__APPLE__)
  out.mtime_ns = static_cast<std::int64_t>(st.st_mtimespec.tv_sec) * 1000000000 + st.st_mtimespec.tv_nsec;
  out.ctime_ns = static_cast<std::int64_t>(st.st_ctimespec.tv_sec) * 1000000000 + st.st_ctimespec.tv_nsec;
#else
  out.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  out.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
#endif
  return out;
}

inline file_flags flags_of(unsigned long raw) {
  file_flags out;
#if defined(__linux__)
  out.immutable = (raw & FS_IMMUTABLE_FL) != 0;
  out.append_only = (raw & FS_APPEND_FL) != 0;
#elif defined(__APPLE__)
  out.immutable = (raw & (UF_IMMUTABLE | SF_IMMUTABLE)) != 0;
  out.append_only = (raw & (UF_APPEND | SF_APPEND)) != 0;
#else
  (void)raw;
#endif
  return out;
}

/// Groups whose write bit on a root-owned directory does not make it user-writable: root/wheel
/// (gid 0), and on macOS admin (gid 80, the group of /Applications and /Library) and daemon
/// (gid 1: /var/run is root:daemon 0775 there, and no user account is in that group).
inline bool is_admin_gid(gid_t gid) {
#if defined(__APPLE__)
  return gid == 0 || gid == 1 || gid == 80;
#else
  return gid == 0;
#endif
}

/// True when someone other than root could add, remove or rename entries of directory `d`.
inline bool writable_by_non_root(const struct ::stat& d) {
  return d.st_uid != 0 || ((d.st_mode & S_IWGRP) && !is_admin_gid(d.st_gid)) || (d.st_mode & S_IWOTH);
}

/// The caller-facing error with a custom reason.
inline tl::unexpected<error> fail_code(std::error_code code, std::string op, std::string path, std::string reason,
                                       std::string hint = {}) {
  return tl::unexpected<error>(error{code, std::move(op), std::move(path), {}, std::move(reason), std::move(hint)});
}

inline tl::unexpected<error> fail_errno_reason(int err, std::string op, std::string path, const std::string& reason,
                                               std::string hint = {}) {
  return fail_code(std::error_code(err, std::system_category()), std::move(op), std::move(path),
                   std::error_code(err, std::system_category()).message() + ": " + reason, std::move(hint));
}

/// Runs the current thread with an actor's filesystem identity for one operation.
class identity_scope {
 public:
  identity_scope() = default;
  identity_scope(const identity_scope&) = delete;
  identity_scope& operator=(const identity_scope&) = delete;
  ~identity_scope() { restore(); }

  /// Switches to `who` when needed (see the file comment); an error when impossible.
  result<void> enter(const actor& who, const char* op, std::string_view path) {
    uid_t euid = ::geteuid();
    if (who.uid == euid) return {};
    if (euid != 0) {
      if (who.is_root()) return {};  // the kernel answers honestly (EACCES/EPERM)
      return fail_errno_reason(EPERM, op, std::string(path),
                               "this process runs as uid " + std::to_string(euid) + " and cannot act as uid " +
                                   std::to_string(who.uid),
                               "run as root or as that user");
    }
#if defined(__linux__)
    saved_groups_.assign(static_cast<std::size_t>(std::max(0, ::getgroups(0, nullptr))), 0);
    int n = ::getgroups(static_cast<int>(saved_groups_.size()), saved_groups_.data());
    if (n < 0) return fail_errno(errno, op, std::string(path));
    saved_groups_.resize(static_cast<std::size_t>(n));
    std::vector<gid_t> groups(who.groups.begin(), who.groups.end());
    // Raw syscall: glibc's setgroups() changes every thread of the process, this one only ours.
    if (::syscall(SYS_setgroups, groups.size(), groups.data()) != 0)
      return fail_errno(errno, op, std::string(path), {}, "cannot take the actor's groups");
    saved_fsgid_ = static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1)));
    active_ = true;
    ::setfsgid(who.gid);
    ::setfsuid(who.uid);
    // setfsuid reports the previous value only; read back to confirm the switch took.
    if (static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))) != who.uid ||
        static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1))) != who.gid) {
      restore();
      return fail_errno_reason(EPERM, op, std::string(path), "cannot take uid " + std::to_string(who.uid));
    }
    return {};
#elif defined(__APPLE__)
    if (::pthread_setugid_np(who.uid, who.gid) != 0)
      return fail_errno(errno, op, std::string(path), {}, "cannot take the actor's uid");
    active_ = true;
    return {};
#else
    return fail(errc::unsupported, op, std::string(path), "acting as another user is not supported here");
#endif
  }

 private:
  void restore() noexcept {
    if (!active_) return;
    active_ = false;
#if defined(__linux__)
    ::setfsuid(0);
    ::setfsgid(saved_fsgid_);
    ::syscall(SYS_setgroups, saved_groups_.size(), saved_groups_.data());
#elif defined(__APPLE__)
    ::pthread_setugid_np(KAUTH_UID_NONE, KAUTH_GID_NONE);
#endif
  }

  bool active_ = false;
#if defined(__linux__)
  // Only Linux switches groups and fsgid by hand (macOS's pthread_setugid_np does both): an
  // unused private field is an error for clang users building with -Werror.
  std::vector<gid_t> saved_groups_;
  gid_t saved_fsgid_ = 0;
#endif
};

/// A directory fd a walk hands to one operation: its own (no walk cache), or shared with the
/// walk cache, which keeps it open after the operation. Shared, not borrowed: an operation that
/// invalidates the cache entry it walked through (rmdir of a subdirectory, say) must not have
/// its fd closed, and its number reused, under its feet.
class dir_ref {
 public:
  dir_ref() = default;
  /// Owns `fd` alone: closed when this dies.
  explicit dir_ref(table_fd fd) noexcept : own_(std::move(fd)) {}
  /// Shares `fd` with the walk cache: closed when the last holder lets go.
  explicit dir_ref(std::shared_ptr<const table_fd> fd) noexcept : shared_(std::move(fd)) {}
  /// The fd, or -1.
  int get() const noexcept { return shared_ ? shared_->get() : own_.get(); }

 private:
  table_fd own_;
  std::shared_ptr<const table_fd> shared_;
};

/// One directory the walk opened and verified while a walk cache was open: its fd and the fstat
/// taken right after opening it (what the root-safety rule is evaluated on).
struct cached_dir {
  std::shared_ptr<const table_fd> fd;
  struct ::stat st {};
};

/// The state behind `PosixFs::walk_cache()`: verified directory fds by real path, kept apart per
/// (process euid, actor uid/gid/groups, root-safety rule on or off). Only live while at least one
/// scope holds it; its own mutex makes a walk from another thread safe (not faster).
class walk_cache_state {
 public:
  /// True while some scope is open.
  bool active() const noexcept { return holders_.load(std::memory_order_acquire) != 0; }

  /// A scope opens.
  void hold() noexcept { holders_.fetch_add(1, std::memory_order_acq_rel); }

  /// A scope ends; the last one closes every cached fd (outside the lock: close goes through the
  /// syscall table, which a test may hook).
  void release() noexcept {
    if (holders_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    std::vector<identity_set> dying;
    {
      std::lock_guard<std::mutex> lock(mu_);
      dying.swap(sets_);
    }
  }

  /// The directory at real path `dir`, verified for exactly this identity and rule, if cached.
  std::optional<cached_dir> find(const actor& who, uid_t euid, bool root_rule, const std::string& dir) {
    std::lock_guard<std::mutex> lock(mu_);
    identity_set* set = set_for(who, euid, root_rule, false);
    if (!set) return std::nullopt;
    auto it = set->dirs.find(dir);
    if (it == set->dirs.end()) return std::nullopt;
    return it->second;
  }

  /// Remembers a directory just opened and verified by a walk for this identity and rule.
  void insert(const actor& who, uid_t euid, bool root_rule, const std::string& dir, cached_dir entry) {
    std::lock_guard<std::mutex> lock(mu_);
    // A walk on another thread that outlived the last scope: nothing may stay open after it.
    if (!active()) return;
    set_for(who, euid, root_rule, true)->dirs.insert_or_assign(dir, std::move(entry));
  }

  /// Drops every entry at or below real path `path`, for every identity: the fs itself just
  /// renamed, removed or created something there, so a cached fd may no longer be what that
  /// path names. The fds close once no running operation holds them.
  void forget(const std::string& path) {
    std::vector<cached_dir> dying;
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& set : sets_) {
      for (auto it = set.dirs.begin(); it != set.dirs.end();) {
        const std::string& dir = it->first;
        bool below = path == "/" || dir == path ||
                     (dir.size() > path.size() && dir.compare(0, path.size(), path) == 0 && dir[path.size()] == '/');
        if (below) {
          dying.push_back(std::move(it->second));
          it = set.dirs.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  /// Directories cached now, over every identity (for tests and diagnostics).
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    std::size_t n = 0;
    for (const auto& set : sets_) n += set.dirs.size();
    return n;
  }

 private:
  struct identity_set {
    uid_t euid = 0;
    actor who;
    bool root_rule = false;
    std::map<std::string, cached_dir> dirs;
  };

  identity_set* set_for(const actor& who, uid_t euid, bool root_rule, bool create) {
    for (auto& set : sets_)
      if (set.euid == euid && set.root_rule == root_rule && set.who == who) return &set;
    if (!create) return nullptr;
    sets_.push_back(identity_set{euid, who, root_rule, {}});
    return &sets_.back();
  }

  std::atomic<std::size_t> holders_{0};
  std::mutex mu_;
  std::vector<identity_set> sets_;
};

/// A directory reached by the trusted walk, and the final name to act on inside it.
struct walked {
  dir_ref dir;
  struct ::stat dir_st {};
  std::string dir_path;  ///< the real path of `dir` (trusted symlinks resolved)
  std::string name;      ///< the last component; "" for "/"
  /// The name to pass to *at() calls: "." for "/" itself.
  const char* at_name() const { return name.empty() ? "." : name.c_str(); }
};

}  // namespace detail

/// The real filesystem (see the file comment for the walk, identity and root-safety rules).
class PosixFs {
 public:
  /// Uses the real system calls, or `sys` (which must outlive this object and its locks).
  explicit PosixFs(const syscall_table& sys = default_syscalls()) : sys_(&sys) {}
  /// Copies share the syscall table, not the walk cache: a copy starts with none open.
  PosixFs(const PosixFs& other) : sys_(other.sys_), use_openat2_(other.use_openat2_.load(std::memory_order_relaxed)) {}
  /// Takes the syscall table; this object's walk cache (and any scope open on it) stays its own.
  PosixFs& operator=(const PosixFs& other) {
    sys_ = other.sys_;
    use_openat2_.store(other.use_openat2_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return *this;
  }

  /// While alive, the trusted walk of this PosixFs reuses directory fds it already opened and
  /// verified (see `walk_cache()`); when the last such scope dies, every cached fd is closed.
  /// Move-only; moved-from scopes hold nothing.
  class walk_cache_scope {
   public:
    walk_cache_scope(walk_cache_scope&& other) noexcept : state_(std::move(other.state_)) {}
    walk_cache_scope& operator=(walk_cache_scope&& other) noexcept {
      if (this != &other) {
        end();
        state_ = std::move(other.state_);
      }
      return *this;
    }
    walk_cache_scope(const walk_cache_scope&) = delete;
    walk_cache_scope& operator=(const walk_cache_scope&) = delete;
    ~walk_cache_scope() { end(); }

    /// Ends this scope now (as its destructor would); the cache closes when no scope is left.
    void end() noexcept {
      if (state_) state_->release();
      state_.reset();
    }

    /// Directories cached now, over every identity and rule (0 once ended).
    std::size_t cached_directories() const { return state_ ? state_->size() : 0; }

   private:
    friend class PosixFs;
    explicit walk_cache_scope(std::shared_ptr<detail::walk_cache_state> state) noexcept : state_(std::move(state)) {
      state_->hold();
    }
    // Shared with the PosixFs: a scope that outlives its PosixFs still closes the fds (through
    // the syscall table, which must outlive both).
    std::shared_ptr<detail::walk_cache_state> state_;
  };

  /// Opens a scope in which the trusted walk reuses directory fds: a no-op converge otherwise
  /// re-walks from "/" for every operation (about 18 system calls each).
  ///
  ///     hostcfg::PosixFs fs;
  ///     {
  ///       auto scope = fs.walk_cache();      // e.g. around one converge
  ///       fs.lstat(who, "/usr/local/bin/a");  // opens /, /usr, /usr/local, /usr/local/bin
  ///       fs.lstat(who, "/usr/local/bin/b");  // one fstatat: the walk is cached
  ///     }                                     // every cached fd closed here
  ///
  /// The rules:
  /// - a cached fd is reused only by a walk for the same process euid, the same actor
  ///   (uid, gid and groups) and the same root-safety rule (root mutating, or not) as the walk
  ///   that opened and verified it. An fd skips the permission checks of the path above it, so
  ///   an fd root opened must never serve a walk as nobody;
  /// - a rename, unlink, rmdir or mkdir made through this PosixFs drops every cached entry at or
  ///   below the path it changed (both paths of a rename), for every identity;
  /// - a cached fd keeps naming the directory that was verified, even if someone renames it or
  ///   puts a symlink in its place afterwards. That is the safe direction: the walk never goes
  ///   through the new object; operations land in the directory that passed the checks (for
  ///   root's writes, one only root can change, so only root could have moved it) or fail
  ///   (ENOENT once it was removed). Changes by others become visible when the scope ends, so
  ///   keep a scope to one converge, not the life of a daemon.
  /// Scopes nest (the cache lives until the last one ends). Without a scope nothing is cached.
  [[nodiscard]] walk_cache_scope walk_cache() { return walk_cache_scope(cache_); }

  /// The object at `path` itself (a link is a link).
  result<file_status> lstat(const actor& who, std::string_view path) {
    return run(who, "lstat", path, [&]() -> result<file_status> {
      auto w = walk(who, "lstat", path, false);
      if (!w) return tl::unexpected(w.error());
      struct ::stat st {};
      if (call_fstatat(w->dir.get(), w->at_name(), &st) != 0) return fail_errno(errno, "lstat", std::string(path));
      return detail::status_of(st);
    });
  }

  /// Follows a final symlink (up to 40 links), with the same trusted walk for each target.
  result<file_status> stat(const actor& who, std::string_view path) {
    return run(who, "stat", path, [&]() -> result<file_status> {
      std::string current(path);
      for (int links = 0; links <= max_links; ++links) {
        auto w = walk(who, "stat", current, false);
        if (!w) return tl::unexpected(relabel(w.error(), path));
        struct ::stat st {};
        if (call_fstatat(w->dir.get(), w->at_name(), &st) != 0) return fail_errno(errno, "stat", std::string(path));
        if (!S_ISLNK(st.st_mode)) return detail::status_of(st);
        auto target = read_link_at(w->dir.get(), w->at_name(), "stat", path);
        if (!target) return tl::unexpected(target.error());
        auto next = resolve_link_target(join_path(w->dir_path, w->name), *target);
        if (!next) return fail_errno(ENOENT, "stat", std::string(path));
        current = *next;
      }
      return fail_errno(ELOOP, "stat", std::string(path));
    });
  }

  /// The target string of the symlink at `path`, exactly as stored.
  result<std::string> readlink(const actor& who, std::string_view path) {
    return run(who, "readlink", path, [&]() -> result<std::string> {
      auto w = walk(who, "readlink", path, false);
      if (!w) return tl::unexpected(w.error());
      if (w->name.empty()) return fail_errno(EINVAL, "readlink", std::string(path));
      return read_link_at(w->dir.get(), w->at_name(), "readlink", path);
    });
  }

  /// A whole regular file (never through a final symlink: ELOOP), at most `max_bytes`
  /// (`errc::too_large`); directories EISDIR, other non-regular files EINVAL without opening them,
  /// nlink > 1 EMLINK. `status.flags` is filled.
  result<file_contents> read_file(const actor& who, std::string_view path, std::size_t max_bytes) {
    return run(who, "read", path, [&]() -> result<file_contents> {
      auto w = walk(who, "read", path, false);
      if (!w) return tl::unexpected(w.error());
      auto opened = open_existing_regular(*w, "read", path);
      if (!opened) return tl::unexpected(opened.error());
      if (opened->status.size > max_bytes)
        return fail(errc::too_large, "read", std::string(path),
                    "file is " + std::to_string(opened->status.size) + " bytes, the bound is " +
                        std::to_string(max_bytes));
      auto bytes = read_all(opened->fd.get(), max_bytes, "read", path,
                            static_cast<std::size_t>(opened->status.size));
      if (!bytes) return tl::unexpected(bytes.error());
      return file_contents{std::move(*bytes), opened->status};
    });
  }

  /// Atomic replace (see the file comment for the exact sequence).
  result<replace_outcome> replace_file(const actor& who, std::string_view path, std::string_view bytes,
                                       const replace_options& options) {
    return run(who, "replace", path, [&]() { return do_replace(who, path, bytes, options); });
  }

  /// Creates a symlink at `path` holding `target` as given; EEXIST if anything is there.
  result<void> symlink(const actor& who, std::string_view target, std::string_view path) {
    return run(who, "symlink", path, [&]() -> result<void> {
      auto w = walk_mutating(who, "symlink", path);
      if (!w) return tl::unexpected(w.error());
      std::string tgt(target);
      if (tgt.empty() || tgt.find('\0') != std::string::npos)
        return fail(errc::invalid_input, "symlink", std::string(path), "empty link target or one with a NUL byte");
      if (sys_->symlinkat(sys_->context, tgt.c_str(), w->dir.get(), w->at_name()) != 0)
        return fail_errno(errno, "symlink", std::string(path), tgt);
      return {};
    });
  }

  /// Points the link at `path` to `target` atomically (temp link + rename). When `expected` is
  /// set, what is at `path` must still be that version (`type == none`: still absent). The link
  /// is in place but its directory could not be synced: `errc::not_durable`.
  result<void> replace_symlink(const actor& who, std::string_view target, std::string_view path,
                               std::optional<file_status> expected) {
    return run(who, "replace symlink", path, [&]() -> result<void> {
      const char* op = "replace symlink";
      auto w = walk_mutating(who, op, path);
      if (!w) return tl::unexpected(w.error());
      auto check = [&]() -> result<void> {
        if (!expected) return {};
        struct ::stat st {};
        if (call_fstatat(w->dir.get(), w->at_name(), &st) != 0) {
          if (errno == ENOENT && expected->type == file_type::none) return {};
          if (errno != ENOENT) return fail_errno(errno, op, std::string(path));
          return fail(errc::changed_since_probe, op, std::string(path), "it was removed since it was probed");
        }
        if (expected->type == file_type::none || !same_version(*expected, detail::status_of(st)))
          return fail(errc::changed_since_probe, op, std::string(path), "it changed since it was probed",
                      "probe again");
        return {};
      };
      auto ok = check();
      if (!ok) return ok;
      std::string tgt(target);
      if (tgt.empty() || tgt.find('\0') != std::string::npos)
        return fail(errc::invalid_input, op, std::string(path), "empty link target or one with a NUL byte");
      remove_stale_temps(*w, who, true);  // a temp link a crash left before its rename
      std::string temp;
      for (int attempt = 0;; ++attempt) {
        auto name = temp_name(w->name, op, path);
        if (!name) return tl::unexpected(name.error());
        if (sys_->symlinkat(sys_->context, tgt.c_str(), w->dir.get(), name->c_str()) == 0) {
          temp = *name;
          break;
        }
        if (errno != EEXIST || attempt >= 16) return fail_errno(errno, op, join_path(w->dir_path, *name), tgt);
      }
      ok = check();
      if (ok && sys_->renameat(sys_->context, w->dir.get(), temp.c_str(), w->dir.get(), w->at_name()) != 0)
        ok = fail_errno(errno, op, std::string(path), tgt);
      if (!ok) {
        sys_->unlinkat(sys_->context, w->dir.get(), temp.c_str(), 0);
        return ok;
      }
      if (sys_->fsync(sys_->context, w->dir.get()) != 0)  // the link is in place: said apart, as for files
        return fail(errc::not_durable, op, std::string(path), "the link was replaced but the directory sync failed",
                    "the change may be lost on power failure; run again to make sure");
      return {};
    });
  }

  /// renameat(from, to); EXDEV across filesystems.
  result<void> rename(const actor& who, std::string_view from, std::string_view to) {
    if (!is_normal_path(to))
      return fail(errc::invalid_input, "rename", std::string(from) + " -> " + std::string(to),
                  "not an absolute, normal path", "pass the output of normalize_path");
    return run(who, "rename", from, [&]() -> result<void> {
      auto a = walk_mutating(who, "rename", from);
      if (!a) return tl::unexpected(a.error());
      auto b = walk_mutating(who, "rename", to);
      if (!b) return tl::unexpected(b.error());
      if (a->name.empty() || b->name.empty()) return fail_errno(EBUSY, "rename", std::string(from), std::string(to));
      int rc = sys_->renameat(sys_->context, a->dir.get(), a->at_name(), b->dir.get(), b->at_name());
      int err = errno;
      forget_walked(*a);  // a directory moved away, or one replaced at `to`
      forget_walked(*b);
      if (rc != 0) return fail_errno(err, "rename", std::string(from), std::string(to));
      return {};
    });
  }

  /// Swaps two existing names atomically (renameat2 RENAME_EXCHANGE; macOS RENAME_SWAP): at no
  /// moment is either name missing. EINVAL (or ENOSYS) where the kernel or the filesystem cannot;
  /// the caller falls back to two renames. Both are walked like `rename`'s (trusted, root-safe).
  result<void> exchange(const actor& who, std::string_view a, std::string_view b) {
    if (!is_normal_path(b))
      return fail(errc::invalid_input, "exchange", std::string(a) + " <-> " + std::string(b),
                  "not an absolute, normal path", "pass the output of normalize_path");
    return run(who, "exchange", a, [&]() -> result<void> {
      auto wa = walk_mutating(who, "exchange", a);
      if (!wa) return tl::unexpected(wa.error());
      auto wb = walk_mutating(who, "exchange", b);
      if (!wb) return tl::unexpected(wb.error());
      if (wa->name.empty() || wb->name.empty()) return fail_errno(EBUSY, "exchange", std::string(a), std::string(b));
      if (!sys_->exchangeat) return fail_errno(ENOSYS, "exchange", std::string(a), std::string(b));
      // Non-directories only (as MemoryFs): RENAME_EXCHANGE would also swap in a directory.
      for (const auto* w : {&*wa, &*wb}) {
        struct ::stat st {};
        if (call_fstatat(w->dir.get(), w->at_name(), &st) != 0) {
          if (errno == ENOENT) continue;  // the kernel's own order of errors decides (EXDEV first)
          return fail_errno(errno, "exchange", std::string(a), std::string(b));
        }
        if (S_ISDIR(st.st_mode)) return fail_errno(EISDIR, "exchange", std::string(a), std::string(b));
      }
      int rc = sys_->exchangeat(sys_->context, wa->dir.get(), wa->at_name(), wb->dir.get(), wb->at_name());
      int err = errno;
      forget_walked(*wa);
      forget_walked(*wb);
      if (rc != 0) return fail_errno(err, "exchange", std::string(a), std::string(b));
      return {};
    });
  }

  /// Removes a non-directory (EISDIR for a directory).
  result<void> unlink(const actor& who, std::string_view path) {
    return run(who, "unlink", path, [&]() -> result<void> {
      auto w = walk_mutating(who, "unlink", path);
      if (!w) return tl::unexpected(w.error());
      struct ::stat st {};
      if (call_fstatat(w->dir.get(), w->at_name(), &st) != 0) return fail_errno(errno, "unlink", std::string(path));
      if (S_ISDIR(st.st_mode)) return fail_errno(EISDIR, "unlink", std::string(path));
      int rc = sys_->unlinkat(sys_->context, w->dir.get(), w->at_name(), 0);
      int err = errno;
      forget_walked(*w);
      if (rc != 0) return fail_errno(err, "unlink", std::string(path));
      return {};
    });
  }

  /// Creates one directory with exactly `mode` (not umask-dependent).
  result<void> mkdir(const actor& who, std::string_view path, mode_type mode) {
    return run(who, "mkdir", path, [&]() -> result<void> {
      auto w = walk_mutating(who, "mkdir", path);
      if (!w) return tl::unexpected(w.error());
      if (w->name.empty()) return fail_errno(EEXIST, "mkdir", std::string(path));
      int rc = sys_->mkdirat(sys_->context, w->dir.get(), w->at_name(), static_cast<mode_t>(mode & 0777));
      int err = errno;
      forget_walked(*w);
      if (rc != 0) return fail_errno(err, "mkdir", std::string(path));
      detail::table_fd fd(sys_, sys_->openat(sys_->context, w->dir.get(), w->at_name(),
                                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0));
      struct ::stat st {};
      if (fd.get() < 0 || sys_->fstat(sys_->context, fd.get(), &st) != 0)
        return fail_errno(errno, "mkdir", std::string(path), {}, "created, but its mode could not be checked");
      if ((st.st_mode & 07777) != (mode & 07777) && sys_->fchmod(sys_->context, fd.get(), static_cast<mode_t>(mode)) != 0)
        return fail_errno(errno, "mkdir", std::string(path), {}, "created, but its mode could not be set");
      return {};
    });
  }

  /// Removes an empty directory (ENOTEMPTY otherwise).
  result<void> rmdir(const actor& who, std::string_view path) {
    return run(who, "rmdir", path, [&]() -> result<void> {
      auto w = walk_mutating(who, "rmdir", path);
      if (!w) return tl::unexpected(w.error());
      if (w->name.empty()) return fail_errno(EBUSY, "rmdir", std::string(path));
      int rc = sys_->unlinkat(sys_->context, w->dir.get(), w->at_name(), AT_REMOVEDIR);
      int err = errno;
      forget_walked(*w);
      if (rc != 0) return fail_errno(err, "rmdir", std::string(path));
      return {};
    });
  }

  /// Sets permission bits; never through a final symlink (EOPNOTSUPP for a link, as Linux).
  result<void> chmod(const actor& who, std::string_view path, mode_type mode) {
    return run(who, "chmod", path, [&]() -> result<void> {
      auto w = walk_mutating(who, "chmod", path);
      if (!w) return tl::unexpected(w.error());
      struct ::stat st {};
      if (call_fstatat(w->dir.get(), w->at_name(), &st) != 0) return fail_errno(errno, "chmod", std::string(path));
      if (S_ISLNK(st.st_mode)) return fail_errno_reason(EOPNOTSUPP, "chmod", std::string(path), "is a symlink");
      // The name was just seen as a non-link in a directory only the actor (or root) can change.
      if (sys_->fchmodat(sys_->context, w->dir.get(), w->at_name(), static_cast<mode_t>(mode), 0) != 0)
        return fail_errno(errno, "chmod", std::string(path));
      return {};
    });
  }

  /// Changes owner/group of the object itself (never follows); EPERM for non-root giving away.
  result<void> lchown(const actor& who, std::string_view path, uid_type uid, gid_type gid) {
    return run(who, "lchown", path, [&]() -> result<void> {
      auto w = walk_mutating(who, "lchown", path);
      if (!w) return tl::unexpected(w.error());
      if (sys_->fchownat(sys_->context, w->dir.get(), w->at_name(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
        return fail_errno(errno, "lchown", std::string(path));
      return {};
    });
  }

  /// Immutable / append-only flags of a regular file or directory (others have none).
  result<file_flags> get_flags(const actor& who, std::string_view path) {
    return run(who, "get flags", path, [&]() -> result<file_flags> {
      auto w = walk(who, "get flags", path, false);
      if (!w) return tl::unexpected(w.error());
      struct ::stat st {};
      if (call_fstatat(w->dir.get(), w->at_name(), &st) != 0) return fail_errno(errno, "get flags", std::string(path));
      if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) return file_flags{};
      detail::table_fd fd(sys_, sys_->openat(sys_->context, w->dir.get(), w->at_name(),
                                             O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0));
      if (fd.get() < 0) return fail_errno(errno, "get flags", std::string(path));
      return flags_of_fd(fd.get(), "get flags", path);
    });
  }

  /// Names in a directory, sorted, without "." and "..".
  result<std::vector<std::string>> list_dir(const actor& who, std::string_view path) {
    return run(who, "list", path, [&]() -> result<std::vector<std::string>> {
      auto w = walk(who, "list", path, false);
      if (!w) return tl::unexpected(w.error());
      detail::table_fd fd(sys_, sys_->openat(sys_->context, w->dir.get(), w->at_name(),
                                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0));
      if (fd.get() < 0) return fail_errno(errno == ELOOP ? ENOTDIR : errno, "list", std::string(path));
      std::vector<std::string> names;
      if (sys_->list_dir(sys_->context, fd.get(), &names) != 0) return fail_errno(errno, "list", std::string(path));
      std::sort(names.begin(), names.end());
      return names;
    });
  }

  /// fsyncs directory `path` (F_FULLFSYNC on macOS through the table's fsync), so entries created
  /// or removed in it survive a crash. Optional in the Fs contract (`sync_directory` in fs.hpp).
  result<void> sync_dir(const actor& who, std::string_view path) {
    return run(who, "sync_dir", path, [&]() -> result<void> {
      auto w = walk(who, "sync_dir", path, false);
      if (!w) return tl::unexpected(w.error());
      detail::table_fd fd(sys_, sys_->openat(sys_->context, w->dir.get(), w->at_name(),
                                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0));
      if (fd.get() < 0) return fail_errno(errno, "sync_dir", std::string(path));
      if (sys_->fsync(sys_->context, fd.get()) != 0) return fail_errno(errno, "sync_dir", std::string(path));
      return {};
    });
  }

  /// An exclusive flock on `path` itself (a file or a directory; never through a symlink).
  /// Blocks until granted; released when the returned `fs_lock` is reset or destroyed.
  result<fs_lock> lock(const actor& who, std::string_view path) {
    return run(who, "lock", path, [&]() -> result<fs_lock> {
      auto w = walk(who, "lock", path, false);
      if (!w) return tl::unexpected(w.error());
      struct ::stat st {};
      if (call_fstatat(w->dir.get(), w->at_name(), &st) != 0) return fail_errno(errno, "lock", std::string(path));
      if (S_ISLNK(st.st_mode)) return fail_errno_reason(ELOOP, "lock", std::string(path), "is a symlink");
      if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return fail_errno_reason(EINVAL, "lock", std::string(path), "only a regular file or a directory is locked");
      detail::table_fd fd(sys_, sys_->openat(sys_->context, w->dir.get(), w->at_name(),
                                             O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0));
      if (fd.get() < 0) return fail_errno(errno, "lock", std::string(path));
      while (sys_->flock(sys_->context, fd.get(), LOCK_EX) != 0)
        if (errno != EINTR) return fail_errno(errno, "lock", std::string(path));
      const syscall_table* sys = sys_;
      int raw = fd.release();
      return fs_lock([sys, raw] { sys->close(sys->context, raw); });  // closing releases the flock
    });
  }

 private:
  static constexpr int max_links = 40;
  using fail_errno_reason_t = tl::unexpected<error>;
  static fail_errno_reason_t fail_errno_reason(int err, std::string op, std::string path, const std::string& reason,
                                               std::string hint = {}) {
    return detail::fail_errno_reason(err, std::move(op), std::move(path), reason, std::move(hint));
  }

  struct opened_file {
    detail::table_fd fd;
    file_status status;
  };

  template <class F>
  auto run(const actor& who, const char* op, std::string_view path, F&& body) -> decltype(body()) {
    if (!is_normal_path(path))
      return fail(errc::invalid_input, op, std::string(path), "not an absolute, normal path",
                  "pass the output of normalize_path");
    detail::identity_scope scope;
    auto entered = scope.enter(who, op, path);
    if (!entered) return tl::unexpected(entered.error());
    return body();
  }

  static error relabel(error e, std::string_view path) {
    if (e.path.empty()) e.path = std::string(path);
    return e;
  }

  int call_fstatat(int dirfd, const char* name, struct ::stat* st) {
    return sys_->fstatat(sys_->context, dirfd, name, st, AT_SYMLINK_NOFOLLOW);
  }

  /// Opens one directory component without following symlinks. Intermediate directories need
  /// only search permission (Linux O_PATH); the parent is opened for reading (to list stale temps
  /// and fsync it), falling back to O_PATH when the actor may only search it (a 0711 home): then
  /// stale temps stay and the directory fsync reports `durable == false`.
  int open_component(int dirfd, const char* name, bool need_read) {
#if defined(__linux__) && defined(O_PATH)
    if (need_read) {
      int fd = open_component_with(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0 || errno != EACCES) return fd;
    }
    return open_component_with(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
#else
    (void)need_read;
    return open_component_with(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
#endif
  }

  /// openat2 RESOLVE_NO_SYMLINKS while the kernel has it, openat O_NOFOLLOW otherwise.
  int open_component_with(int dirfd, const char* name, int flags) {
    if (use_openat2_.load(std::memory_order_relaxed)) {
      constexpr std::uint64_t resolve_no_magiclinks = 0x02, resolve_no_symlinks = 0x04, resolve_beneath = 0x08;
      int fd = sys_->openat2(sys_->context, dirfd, name, flags, 0,
                             resolve_no_magiclinks | resolve_no_symlinks | resolve_beneath);
      if (fd >= 0 || (errno != ENOSYS && errno != E2BIG && errno != EPERM)) return fd;
      // ENOSYS/E2BIG: an older kernel. EPERM: maybe a seccomp filter refusing the unknown
      // syscall (older container runtimes), maybe a real EPERM: openat tells them apart.
      bool maybe_filtered = errno == EPERM;
      if (!maybe_filtered) use_openat2_ = false;
      int plain = sys_->openat(sys_->context, dirfd, name, flags, 0);
      if (maybe_filtered && plain >= 0) use_openat2_ = false;
      return plain;
    }
    return sys_->openat(sys_->context, dirfd, name, flags, 0);
  }

  /// A symlink at `link_st` in directory `dir_st` may be followed for `who`.
  static bool trusted_link(const actor& who, const struct ::stat& link_st, const struct ::stat& dir_st) {
    uid_t self = effective_uid(who);  // whom the kernel will check: the actor, or this process
    auto owner_ok = [&](uid_t uid) { return uid == 0 || uid == self; };
    if (!owner_ok(link_st.st_uid) || !owner_ok(dir_st.st_uid)) return false;
    bool others_write = ((dir_st.st_mode & S_IWGRP) && !detail::is_admin_gid(dir_st.st_gid)) ||
                        (dir_st.st_mode & S_IWOTH);
    return !others_write || (dir_st.st_mode & S_ISVTX);
  }

  /// Walks to the parent of `path` (see the file comment). `mutating`: the actor is about to
  /// change an entry there; for root, every directory on the way must be one no user can change.
  /// With a walk cache open, the walk starts at the deepest directory of `path` already verified
  /// for this identity and rule, and remembers every directory it verifies beyond it.
  result<detail::walked> walk(const actor& who, const char* op, std::string_view path, bool mutating) {
    const uid_t euid = ::geteuid();
    const bool root_rule = mutating && really_root(who);
    detail::walk_cache_state* cache = cache_->active() ? cache_.get() : nullptr;
    std::string want(path);
    for (int links = 0;; ++links) {
      if (links > max_links) return fail_errno(ELOOP, op, std::string(path));
      std::vector<std::string> parts = path_components(want);
      detail::walked w;
      if (!parts.empty()) {
        w.name = parts.back();
        parts.pop_back();
      }
      std::size_t start = 0;
      std::optional<detail::cached_dir> hit;
      if (cache) {
        std::vector<std::string> prefixes{"/"};
        for (const auto& part : parts) prefixes.push_back(join_path(prefixes.back(), part));
        for (std::size_t k = prefixes.size(); k-- > 0 && !hit;) {
          hit = cache->find(who, euid, root_rule, prefixes[k]);
          if (hit) {
            start = k;
            w.dir_path = prefixes[k];
          }
        }
      }
      if (hit) {
        // Every directory above it passed this rule when it was cached; its own stat is the one
        // taken then, and only its owner (root, for root_rule) could have changed it since.
        w.dir = detail::dir_ref(std::move(hit->fd));
        w.dir_st = hit->st;
      } else {
        detail::table_fd root(sys_, sys_->openat(sys_->context, AT_FDCWD, "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0));
        if (root.get() < 0 || sys_->fstat(sys_->context, root.get(), &w.dir_st) != 0) return fail_errno(errno, op, "/");
        w.dir_path = "/";
        w.dir = keep(cache, who, euid, root_rule, w.dir_path, std::move(root), w.dir_st);
      }
      bool restarted = false;
      for (std::size_t i = start; i < parts.size(); ++i) {
        const std::string& part = parts[i];
        std::string here = join_path(w.dir_path, part);
        bool last = i + 1 == parts.size();
        // A cached directory may later be the parent an operation lists or fsyncs: open it
        // readable when the actor may, as the last component always is.
        detail::table_fd next(sys_, open_component(w.dir.get(), part.c_str(), last || cache != nullptr));
        if (next.get() < 0) {
          int err = errno;
          if (err != ELOOP && err != ENOTDIR && err != EXDEV) return fail_errno(err, op, here);
          struct ::stat lst {};
          if (call_fstatat(w.dir.get(), part.c_str(), &lst) != 0) return fail_errno(errno, op, here);
          if (!S_ISLNK(lst.st_mode)) {
            if (S_ISDIR(lst.st_mode)) return fail_errno(err, op, here);  // e.g. EXDEV from RESOLVE_BENEATH
            return fail_errno(ENOTDIR, op, here);
          }
          if (!trusted_link(who, lst, w.dir_st))
            return fail_errno_reason(ELOOP, op, here,
                                     "a symlink owned by uid " + std::to_string(lst.st_uid) +
                                         " in a directory owned by uid " + std::to_string(w.dir_st.st_uid) +
                                         "; hostcfg follows only symlinks that only root (or the acting user) "
                                         "controls",
                                     "use the real path");
          auto target = read_link_at(w.dir.get(), part.c_str(), op, here);
          if (!target) return tl::unexpected(target.error());
          auto resolved = resolve_link_target(here, *target);
          if (!resolved) return fail_errno(ENOENT, op, here);
          std::string rest;
          for (std::size_t j = i + 1; j < parts.size(); ++j) rest += "/" + parts[j];
          if (!w.name.empty()) rest += "/" + w.name;
          auto again = normalize_path(*resolved + rest);
          if (!again) return fail_errno(ENOENT, op, here);
          want = *again;
          restarted = true;
          break;
        }
        struct ::stat st {};
        if (sys_->fstat(sys_->context, next.get(), &st) != 0) return fail_errno(errno, op, here);
        if (root_rule && detail::writable_by_non_root(w.dir_st) &&
            !(w.dir_st.st_uid == 0 && (w.dir_st.st_mode & S_ISVTX) && st.st_uid == 0))
          return unsafe_dir(op, w.dir_path);
        // Cached only now, after the checks: an entry is a directory this walk may pass through.
        w.dir = keep(cache, who, euid, root_rule, here, std::move(next), st);
        w.dir_st = st;
        w.dir_path = here;
      }
      if (restarted) continue;
      if (root_rule && !w.name.empty() && detail::writable_by_non_root(w.dir_st)) return unsafe_dir(op, w.dir_path);
      return w;
    }
  }

  /// The walk's hold on a directory it just verified: its own fd without a cache; with one, the
  /// fd goes into the cache (for this identity and rule) and the walk shares it.
  detail::dir_ref keep(detail::walk_cache_state* cache, const actor& who, uid_t euid, bool root_rule,
                       const std::string& dir, detail::table_fd fd, const struct ::stat& st) {
    if (!cache) return detail::dir_ref(std::move(fd));
    auto shared = std::make_shared<const detail::table_fd>(std::move(fd));
    cache->insert(who, euid, root_rule, dir, detail::cached_dir{shared, st});
    return detail::dir_ref(std::move(shared));
  }

  /// After the fs itself renamed, removed or created `w`'s entry: cached fds at or below it may
  /// no longer be what their path names, so they are dropped (for every identity).
  void forget_walked(const detail::walked& w) {
    if (cache_->active()) cache_->forget(join_path(w.dir_path, w.name));
  }

  /// The operation will run with root's privileges (the root-safety rule applies): an elevated
  /// actor in a non-root process has none to abuse and gets the kernel's own answers.
  static bool really_root(const actor& who) { return who.is_root() && ::geteuid() == 0; }

  result<detail::walked> walk_mutating(const actor& who, const char* op, std::string_view path) {
    return walk(who, op, path, true);
  }

  static tl::unexpected<error> unsafe_dir(const char* op, const std::string& dir) {
    return fail(errc::unsafe_path, op, dir,
                "a user other than root can change this directory, so root will not write in it",
                "act as the user who owns it");
  }

  result<std::string> read_link_at(int dirfd, const char* name, const char* op, std::string_view path) {
    std::string buf(256, '\0');
    for (;;) {
      ssize_t n = sys_->readlinkat(sys_->context, dirfd, name, buf.data(), buf.size());
      if (n < 0) return fail_errno(errno, op, std::string(path));
      if (static_cast<std::size_t>(n) < buf.size()) {
        buf.resize(static_cast<std::size_t>(n));
        return buf;
      }
      if (buf.size() >= 65536) return fail_errno(ENAMETOOLONG, op, std::string(path));
      buf.resize(buf.size() * 2);
    }
  }

  result<file_flags> flags_of_fd(int fd, const char* op, std::string_view path) {
    unsigned long raw = 0;
    if (sys_->get_flags(sys_->context, fd, &raw) != 0) {
      // No flags on this filesystem (tmpfs before 6.0, network filesystems): none set.
      if (errno == ENOTTY || errno == ENOTSUP || errno == EOPNOTSUPP || errno == EINVAL || errno == ENOSYS)
        return file_flags{};
      return fail_errno(errno, op, std::string(path));
    }
    return detail::flags_of(raw);
  }

  /// Opens an existing regular file for reading without following, blocking or opening devices.
  result<opened_file> open_existing_regular(const detail::walked& w, const char* op, std::string_view path) {
    if (w.name.empty()) return fail_errno(EISDIR, op, std::string(path));
    struct ::stat st {};
    if (call_fstatat(w.dir.get(), w.at_name(), &st) != 0) return fail_errno(errno, op, std::string(path));
    if (S_ISDIR(st.st_mode)) return fail_errno(EISDIR, op, std::string(path));
    if (S_ISLNK(st.st_mode))
      return fail_errno_reason(ELOOP, op, std::string(path), "is a symlink, which hostcfg does not follow here");
    if (!S_ISREG(st.st_mode))
      return fail_errno_reason(EINVAL, op, std::string(path), "not a regular file (FIFO, socket or device)");
    opened_file out;
    out.fd = detail::table_fd(sys_, sys_->openat(sys_->context, w.dir.get(), w.at_name(),
                                                 O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0));
    if (out.fd.get() < 0) return fail_errno(errno, op, std::string(path));
    if (sys_->fstat(sys_->context, out.fd.get(), &st) != 0) return fail_errno(errno, op, std::string(path));
    if (!S_ISREG(st.st_mode))  // swapped between fstatat and openat
      return fail(errc::changed_since_probe, op, std::string(path), "it changed while being opened");
    if (st.st_nlink > 1)
      return fail_errno_reason(EMLINK, op, std::string(path),
                               "has " + std::to_string(st.st_nlink) + " hard links; hostcfg does not edit a file "
                               "that is also reachable under another name",
                               "remove the other links");
    out.status = detail::status_of(st);
    auto flags = flags_of_fd(out.fd.get(), op, path);
    if (!flags) return tl::unexpected(flags.error());
    out.status.flags = *flags;
    return out;
  }

  /// Reads to EOF into one buffer. `size_hint` (the size fstat saw) sizes it up front, plus one
  /// byte so EOF is seen without growing it: a 4 MB hosts file was copied ~70 times in 64 KiB steps.
  /// It grows (doubling, capped at max_bytes + 1) only when the file grows while being read.
  result<std::string> read_all(int fd, std::size_t max_bytes, const char* op, std::string_view path,
                               std::size_t size_hint = 65535) {
    // One byte past the bound shows "too large" without reading further (no overflow at SIZE_MAX).
    const std::size_t cap = max_bytes == SIZE_MAX ? max_bytes : max_bytes + 1;
    std::string out(std::min(std::min(size_hint, max_bytes) + 1, cap), '\0');
    std::size_t done = 0;
    for (;;) {
      if (done == out.size()) {
        if (out.size() > max_bytes)
          return fail(errc::too_large, op, std::string(path), "file grew past the bound of " + std::to_string(max_bytes));
        out.resize(std::min(out.size() * 2, cap));
      }
      ssize_t n = sys_->read(sys_->context, fd, out.data() + done, out.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail_errno(errno, op, std::string(path));
      }
      if (n == 0) {
        out.resize(done);
        return out;
      }
      done += static_cast<std::size_t>(n);
    }
  }

  result<void> write_all(int fd, std::string_view bytes, const char* op, std::string_view path) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = sys_->write(sys_->context, fd, bytes.data() + done, bytes.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail_errno(errno, op, std::string(path));
      }
      if (n == 0) return fail_errno(EIO, op, std::string(path));
      done += static_cast<std::size_t>(n);
    }
    return {};
  }

  result<std::string> temp_name(const std::string& name, const char* op, std::string_view path) {
    unsigned char random[6];
    std::size_t got = 0;
    while (got < sizeof random) {
      ssize_t n = sys_->getrandom(sys_->context, random + got, sizeof random - got, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail_errno(errno, op, std::string(path), {}, "no random bytes for a temp name");
      }
      got += static_cast<std::size_t>(n);
    }
    static const char hex[] = "0123456789abcdef";
    std::string out = "." + name + ".hostcfg-";
    for (unsigned char c : random) {
      out += hex[c >> 4];
      out += hex[c & 15];
    }
    return out;
  }

  /// Removes `.<name>.hostcfg-*` regular files (with `links`: symlinks, replace_symlink's temps)
  /// a crashed run left: those owned by the acting uid or, when the actor is root, any owner (the
  /// root-safety rule guarantees only root can create entries in this directory, and a temp may
  /// already carry the replaced file's owner). unlinkat never follows a link.
  void remove_stale_temps(const detail::walked& w, const actor& who, bool links = false) {
    std::vector<std::string> names;
    if (sys_->list_dir(sys_->context, w.dir.get(), &names) != 0) return;
    std::string prefix = "." + w.name + ".hostcfg-";
    for (const auto& entry : names) {
      if (entry.compare(0, prefix.size(), prefix) != 0) continue;
      struct ::stat st {};
      if (call_fstatat(w.dir.get(), entry.c_str(), &st) != 0) continue;
      const bool kind = links ? S_ISLNK(st.st_mode) : S_ISREG(st.st_mode);
      if (kind && (who.is_root() || st.st_uid == effective_uid(who)))
        sys_->unlinkat(sys_->context, w.dir.get(), entry.c_str(), 0);
    }
  }

  static uid_t effective_uid(const actor& who) {
    uid_t euid = ::geteuid();
    return euid == 0 ? who.uid : euid;
  }

  /// Copies every xattr of `from` onto `to`; refuses (errc::unsupported) naming the first that fails.
  result<void> copy_xattrs(int from, int to, const char* op, std::string_view path) {
    std::string names(1024, '\0');
    ssize_t n;
    for (;;) {
      n = sys_->flistxattr(sys_->context, from, names.data(), names.size());
      if (n >= 0) break;
      if (errno == ENOTSUP || errno == EOPNOTSUPP) return {};  // the filesystem has no xattrs
      if (errno != ERANGE || names.size() >= (1u << 20)) return fail_errno(errno, op, std::string(path));
      names.resize(names.size() * 4);
    }
    names.resize(static_cast<std::size_t>(n));
    std::size_t pos = 0;
    while (pos < names.size()) {
      std::string name(names.c_str() + pos);
      pos += name.size() + 1;
      if (name.empty()) continue;
      std::string value(256, '\0');
      ssize_t len;
      for (;;) {
        len = sys_->fgetxattr(sys_->context, from, name.c_str(), value.data(), value.size());
        if (len >= 0 || errno != ERANGE || value.size() >= (1u << 20)) break;
        value.resize(value.size() * 4);
      }
      if (len < 0 ||
          sys_->fsetxattr(sys_->context, to, name.c_str(), value.data(), static_cast<std::size_t>(len), 0) != 0) {
        int err = errno;
        return fail(errc::unsupported, op, std::string(path),
                    "cannot copy extended attribute " + name + " to the new file (" +
                        std::error_code(err, std::system_category()).message() + ")",
                    "the file is left unchanged; remove the attribute or edit the file by hand");
      }
    }
    return {};
  }

  result<replace_outcome> do_replace(const actor& who, std::string_view path, std::string_view bytes,
                                     const replace_options& options) {
    const char* op = "replace";
    std::string spath(path);
    auto w = walk_mutating(who, op, path);
    if (!w) return tl::unexpected(w.error());
    if (w->name.empty()) return fail_errno(EISDIR, op, spath);
    int dfd = w->dir.get();

    // Step 2: what is there now.
    std::optional<opened_file> old;
    struct ::stat probe {};
    if (call_fstatat(dfd, w->at_name(), &probe) == 0) {
      if (options.expect_absent) return fail_errno(EEXIST, op, spath);
      auto opened = open_existing_regular(*w, op, path);
      if (!opened) return tl::unexpected(opened.error());
      old = std::move(*opened);
      if (old->status.flags.immutable || old->status.flags.append_only)
        return fail(errc::locked, op, spath,
                    std::string("the file is ") + (old->status.flags.immutable ? "immutable" : "append-only") +
                        "; hostcfg never clears such a flag",
                    "its owner set the flag on purpose; clear it (chattr -i / chflags nouchg) to allow the change");
      if (options.expected && !same_version(*options.expected, old->status))
        return fail(errc::changed_since_probe, op, spath, "it changed since it was probed", "probe again");
    } else {
      if (errno != ENOENT) return fail_errno(errno, op, spath);
      if (options.expected && options.expected->type != file_type::none)
        return fail(errc::changed_since_probe, op, spath, "it was removed since it was probed", "probe again");
      if (!options.mode)
        return fail(errc::invalid_input, op, spath, "the file does not exist and no mode was given for it",
                    "set replace_options::mode");
    }

    mode_t mode = old ? static_cast<mode_t>(old->status.mode) : static_cast<mode_t>(*options.mode);
    if (old && options.force_mode && options.mode) mode = static_cast<mode_t>(*options.mode);

    // Step 3: in sync already?
    if (old && options.only_if_different && mode == old->status.mode && old->status.size == bytes.size()) {
      auto current = read_all(old->fd.get(), bytes.size(), op, path);
      if (current && *current == bytes) {
        remove_stale_temps(*w, who);
        return replace_outcome{false, false, true};
      }
      if (!current && !current.error().is(errc::too_large)) return tl::unexpected(current.error());
    }
    remove_stale_temps(*w, who);

    // Step 4: the temp file beside the target.
    std::string temp;
    detail::table_fd tfd;
    for (int attempt = 0;; ++attempt) {
      auto name = temp_name(w->name, op, path);
      if (!name) return tl::unexpected(name.error());
      int fd = sys_->openat(sys_->context, dfd, name->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                            0600);
      if (fd >= 0) {
        temp = *name;
        tfd = detail::table_fd(sys_, fd);
        break;
      }
      if (errno != EEXIST || attempt >= 16) return fail_errno(errno, op, join_path(w->dir_path, *name));
    }
    auto discard_temp = [&] {
      tfd.reset();
      sys_->unlinkat(sys_->context, dfd, temp.c_str(), 0);
    };
    auto abandon = [&](tl::unexpected<error> e) -> tl::unexpected<error> {
      discard_temp();
      return e;
    };

    // Step 5: bytes, owner, mode, xattrs.
    auto wrote = write_all(tfd.get(), bytes, op, path);
    if (!wrote) return abandon(tl::unexpected(wrote.error()));
    struct ::stat tst {};
    if (sys_->fstat(sys_->context, tfd.get(), &tst) != 0) return abandon(fail_errno(errno, op, spath));
    uid_t uid = old ? static_cast<uid_t>(old->status.uid) : (options.uid ? *options.uid : tst.st_uid);
    gid_t gid = old ? static_cast<gid_t>(old->status.gid) : (options.gid ? *options.gid : tst.st_gid);
    if ((uid != tst.st_uid || gid != tst.st_gid) && sys_->fchown(sys_->context, tfd.get(), uid, gid) != 0)
      return abandon(fail_errno(errno, op, spath, {},
                                "cannot give the new file owner " + std::to_string(uid) + ":" + std::to_string(gid) +
                                    "; the file is left unchanged"));
    if (sys_->fchmod(sys_->context, tfd.get(), mode) != 0) return abandon(fail_errno(errno, op, spath));
    if (old) {
      auto copied = copy_xattrs(old->fd.get(), tfd.get(), op, path);
      if (!copied) return abandon(tl::unexpected(copied.error()));
    }

    // Step 6: durable before it becomes visible; a failed fsync is never retried.
    if (sys_->fsync(sys_->context, tfd.get()) != 0)
      return abandon(fail_errno(errno, op, spath, {}, "fsync failed; the file is left unchanged"));

    // Step 7: compare-and-swap against what step 2 saw.
    struct ::stat now {};
    if (call_fstatat(dfd, w->at_name(), &now) == 0) {
      if (!old || !same_version(old->status, detail::status_of(now)))
        return abandon(fail(errc::changed_since_probe, op, spath, "someone else changed it while it was being replaced",
                            "probe again"));
    } else if (errno != ENOENT || old) {
      if (errno == ENOENT)
        return abandon(fail(errc::changed_since_probe, op, spath, "it was removed while being replaced", "probe again"));
      return abandon(fail_errno(errno, op, spath));
    }

    // Step 8: the switch.
    replace_outcome outcome{true, false, true};
    if (sys_->renameat(sys_->context, dfd, temp.c_str(), dfd, w->at_name()) != 0) {
      int err = errno;
      if ((err != EBUSY && err != EXDEV) || !old)
        return abandon(fail_errno(err, op, join_path(w->dir_path, temp), spath));
      if (!options.allow_in_place_fallback)
        return abandon(fail_errno(err, op, spath, {},
                                  "it is a mount point (bind-mounted file); set "
                                  "replace_options::allow_in_place_fallback to rewrite it in place"));
      auto rewritten = rewrite_in_place(*w, old->status, bytes, op, path);
      if (!rewritten) return abandon(tl::unexpected(rewritten.error()));
      discard_temp();
      outcome.in_place = true;
      return outcome;
    }
    tfd.reset();

    // Step 9: the directory entry itself.
    if (sys_->fsync(sys_->context, dfd) != 0) outcome.durable = false;
    return outcome;
  }

  /// The caller-allowed fallback for a target rename cannot replace (a bind mount): write over
  /// the same inode, then truncate and fsync. Not crash-atomic, so never chosen silently.
  result<void> rewrite_in_place(const detail::walked& w, const file_status& old, std::string_view bytes,
                                const char* op, std::string_view path) {
    detail::table_fd fd(sys_, sys_->openat(sys_->context, w.dir.get(), w.at_name(),
                                           O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0));
    if (fd.get() < 0) return fail_errno(errno, op, std::string(path));
    struct ::stat st {};
    if (sys_->fstat(sys_->context, fd.get(), &st) != 0) return fail_errno(errno, op, std::string(path));
    if (!same_version(old, detail::status_of(st)))
      return fail(errc::changed_since_probe, op, std::string(path), "it changed while being replaced", "probe again");
    std::size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = sys_->pwrite(sys_->context, fd.get(), bytes.data() + done, bytes.size() - done,
                               static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail_errno(n < 0 ? errno : EIO, op, std::string(path), {}, "in-place rewrite failed midway");
      done += static_cast<std::size_t>(n);
    }
    if (sys_->ftruncate(sys_->context, fd.get(), static_cast<off_t>(bytes.size())) != 0)
      return fail_errno(errno, op, std::string(path), {}, "in-place rewrite failed midway");
    if (sys_->fsync(sys_->context, fd.get()) != 0) return fail_errno(errno, op, std::string(path));
    return {};
  }

  const syscall_table* sys_;
  std::atomic<bool> use_openat2_{true};  // cleared once the kernel says it has no openat2
  // Always allocated, so a walk only reads an atomic to know whether a scope is open.
  std::shared_ptr<detail::walk_cache_state> cache_ = std::make_shared<detail::walk_cache_state>();
};

HOSTCFG_END_NAMESPACE
