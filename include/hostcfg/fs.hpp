#pragma once
/// @file
/// The filesystem backend contract. Every primitive is a template over a type `Fs` that provides
/// the operations below (checked at compile time by `check_fs<Fs>()`, one readable
/// `static_assert` per missing operation). Implementations: `PosixFs` (the real disk, through an
/// injectable syscall table), `RootedFs<Fs>` (a sandbox under a root directory), `MemoryFs` (an
/// in-memory fake that fails like the real thing) and `OverlayFs<Fs>` (copy-on-write, for dry runs).
///
/// Rules shared by every implementation:
/// - paths are absolute and normal (`normalize_path`); a relative path is `errc::invalid_input`;
/// - every operation runs as an `actor` (the user, or root) and is permission-checked as that
///   actor; what the OS would refuse comes back as the same errno;
/// - nothing follows a symlink unless the operation's name says so (`stat` does; everything
///   else works on the link itself, and intermediate components are walked without following
///   symlinks an untrusted user could have planted);
/// - errors are `hostcfg::error` with the errno in the system category.
///
/// Operations (`a` is `const actor&`, paths are `std::string_view`):
/// | call | returns | notes |
/// |---|---|---|
/// | `lstat(a, path)` | `result<file_status>` | the object itself (a link is a link) |
/// | `stat(a, path)` | `result<file_status>` | follows a final symlink |
/// | `readlink(a, path)` | `result<std::string>` | the target string as stored |
/// | `read_file(a, path, max_bytes)` | `result<file_contents>` | regular files only (else EINVAL/EISDIR), `errc::too_large` past the bound, refuses nlink > 1 (EMLINK); `status.flags` filled |
/// | `replace_file(a, path, bytes, replace_options)` | `result<replace_outcome>` | atomic: temp in the same dir, fsync, CAS, rename, fsync dir |
/// | `symlink(a, target, path)` | `result<void>` | EEXIST if anything is at `path` |
/// | `replace_symlink(a, target, path, expected)` | `result<void>` | temp link + rename, fsync dir; `expected` (if set) must still match what is at `path`; a failed dir fsync after the rename: `errc::not_durable` (the link is in place) |
/// | `rename(a, from, to)` | `result<void>` | EXDEV across devices |
/// | `unlink(a, path)` | `result<void>` | never a directory (EISDIR) |
/// | `mkdir(a, path, mode)` | `result<void>` | one level, mode exact (not umask-dependent) |
/// | `rmdir(a, path)` | `result<void>` | ENOTEMPTY unless empty |
/// | `chmod(a, path, mode)` | `result<void>` | never follows a final symlink |
/// | `lchown(a, path, uid, gid)` | `result<void>` | never follows; EPERM for non-root giving away |
/// | `get_flags(a, path)` | `result<file_flags>` | immutable / append-only; never cleared by hostcfg |
/// | `list_dir(a, path)` | `result<std::vector<std::string>>` | names, sorted, without `.`/`..` |
/// | `lock(a, path)` | `result<fs_lock>` | advisory, exclusive, leaves no file behind; a second lock of a held object waits for its release (a backend that cannot wait, like single-threaded MemoryFs: EWOULDBLOCK) |
/// | `exchange(a, path_a, path_b)` *(optional)* | `result<void>` | swaps two existing non-directories atomically; EINVAL/ENOSYS where unsupported (callers fall back to two renames) |

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "hostcfg/error.hpp"
#include "hostcfg/path.hpp"

HOSTCFG_BEGIN_NAMESPACE

using uid_type = std::uint32_t;   ///< a numeric user id
using gid_type = std::uint32_t;   ///< a numeric group id
using mode_type = std::uint32_t;  ///< permission bits (07777)

/// What kind of object a path names.
enum class file_type { none, regular, directory, symlink, fifo, socket, block_device, char_device, unknown };

/// Per-file flags hostcfg reads and respects but never clears (`chflags uchg`, `chattr +i/+a`).
struct file_flags {
  bool immutable = false;
  bool append_only = false;
  friend bool operator==(const file_flags& a, const file_flags& b) {
    return a.immutable == b.immutable && a.append_only == b.append_only;
  }
};

/// What `lstat`/`stat`/`read_file` report about an object.
struct file_status {
  file_type type = file_type::none;
  mode_type mode = 0;  ///< permission bits only
  uid_type uid = 0;
  gid_type gid = 0;
  std::uint64_t size = 0;
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
  std::uint64_t nlink = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;
  file_flags flags;  ///< only filled by `read_file` and `get_flags`
};

/// True when `a` and `b` describe the same version of the same object: the compare-and-swap test
/// between probe and apply (same inode, size, mtime and ctime).
inline bool same_version(const file_status& a, const file_status& b) {
  return a.type == b.type && a.dev == b.dev && a.ino == b.ino && a.size == b.size && a.mtime_ns == b.mtime_ns &&
         a.ctime_ns == b.ctime_ns;
}

/// The identity an operation runs as: the user, or root ("elevated"). One run can do the user's
/// part as the user and the system part as root.
struct actor {
  uid_type uid = 0;
  gid_type gid = 0;
  std::vector<gid_type> groups;  ///< supplementary groups, numeric

  bool is_root() const { return uid == 0; }
  /// Root, acting for nobody in particular.
  static actor root() { return actor{0, 0, {0}}; }
  friend bool operator==(const actor& a, const actor& b) {
    return a.uid == b.uid && a.gid == b.gid && a.groups == b.groups;
  }
};

/// A whole file and the status of the descriptor it was read from.
struct file_contents {
  std::string bytes;
  file_status status;
};

/// How `replace_file` writes.
struct replace_options {
  /// Compare-and-swap: the target must still be this version (see `same_version`), else
  /// `errc::changed_since_probe` and nothing is written.
  std::optional<file_status> expected;
  /// Create only: the target must not exist (EEXIST otherwise).
  bool expect_absent = false;
  /// Mode of a new file (required when the file may not exist). An existing file keeps its own
  /// mode unless this is set and `force_mode` is true.
  std::optional<mode_type> mode;
  bool force_mode = false;
  /// Owner of a new file (an existing file keeps its owner). Needs root unless it is the actor.
  std::optional<uid_type> uid;
  std::optional<gid_type> gid;
  /// Skip the write when the current bytes are already `bytes` (no temp file, no mtime change).
  bool only_if_different = true;
  /// When rename fails with EBUSY or EXDEV (a bind-mounted file, as /etc/hosts in containers),
  /// rewrite the file in place instead. Off by default: the caller must allow it.
  bool allow_in_place_fallback = false;
};

/// What `replace_file` did.
struct replace_outcome {
  bool changed = false;   ///< false: the bytes were already there, nothing was written
  bool in_place = false;  ///< the in-place fallback was used (not crash-atomic)
  bool durable = true;    ///< false: renamed, but the directory fsync failed
};

/// A held advisory lock; released on destruction. Move-only.
class fs_lock {
 public:
  fs_lock() = default;
  explicit fs_lock(std::function<void()> release) : release_(std::move(release)) {}
  fs_lock(fs_lock&& other) noexcept : release_(std::exchange(other.release_, nullptr)) {}
  fs_lock& operator=(fs_lock&& other) noexcept {
    if (this != &other) {
      reset();
      release_ = std::exchange(other.release_, nullptr);
    }
    return *this;
  }
  fs_lock(const fs_lock&) = delete;
  fs_lock& operator=(const fs_lock&) = delete;
  ~fs_lock() { reset(); }
  /// Releases the lock now.
  void reset() {
    if (release_) std::exchange(release_, nullptr)();
  }

 private:
  std::function<void()> release_;
};

/// True when `who` may create or remove entries in a directory with status `dir`, by the
/// ordinary owner/group/other write+search bits (root always may). The "does this need
/// elevation?" test: decided for the user we act for, never for the process.
inline bool may_write_dir(const actor& who, const file_status& dir) {
  if (who.is_root()) return true;
  if (dir.uid == who.uid) return (dir.mode & 0300) == 0300;
  bool in_group = dir.gid == who.gid;
  for (gid_type g : who.groups) in_group = in_group || g == dir.gid;
  if (in_group) return (dir.mode & 0030) == 0030;
  return (dir.mode & 0003) == 0003;
}

namespace detail {
/// A mode as four octal digits, "0644" style ("4755" when a special bit is set).
inline std::string mode_text(mode_type mode) {
  char text[8];
  text[0] = '0';
  for (int i = 0; i < 4; ++i) text[1 + i] = static_cast<char>('0' + ((mode >> (9 - 3 * i)) & 7));
  text[5] = 0;
  // Four octal digits, "0644" style, without the leading special-bits digit when it is zero.
  return (mode & 07000) ? std::string(text + 1) : std::string(text + 2).insert(0, "0");
}
}  // namespace detail

/// True when `who` may write to a file with status `file` by its mode bits (root always may).
inline bool may_write_file(const actor& who, const file_status& file) {
  if (who.is_root()) return true;
  if (file.uid == who.uid) return (file.mode & 0200) != 0;
  bool in_group = file.gid == who.gid;
  for (gid_type g : who.groups) in_group = in_group || g == file.gid;
  if (in_group) return (file.mode & 0020) != 0;
  return (file.mode & 0002) != 0;
}

namespace detail {
// One trait per operation, so a missing one is named by its own static_assert.
#define HOSTCFG_FS_TRAIT(name, ...)                                                                \
  template <class Fs, class = void>                                                                \
  struct fs_has_##name : std::false_type {};                                                       \
  template <class Fs>                                                                              \
  struct fs_has_##name<Fs, std::void_t<decltype(std::declval<Fs&>().name(__VA_ARGS__))>> : std::true_type {};
HOSTCFG_FS_TRAIT(lstat, std::declval<const actor&>(), std::string_view{})
HOSTCFG_FS_TRAIT(stat, std::declval<const actor&>(), std::string_view{})
HOSTCFG_FS_TRAIT(readlink, std::declval<const actor&>(), std::string_view{})
HOSTCFG_FS_TRAIT(read_file, std::declval<const actor&>(), std::string_view{}, std::size_t{})
HOSTCFG_FS_TRAIT(replace_file, std::declval<const actor&>(), std::string_view{}, std::string_view{},
                 std::declval<const replace_options&>())
HOSTCFG_FS_TRAIT(symlink, std::declval<const actor&>(), std::string_view{}, std::string_view{})
HOSTCFG_FS_TRAIT(replace_symlink, std::declval<const actor&>(), std::string_view{}, std::string_view{},
                 std::optional<file_status>{})
HOSTCFG_FS_TRAIT(rename, std::declval<const actor&>(), std::string_view{}, std::string_view{})
HOSTCFG_FS_TRAIT(unlink, std::declval<const actor&>(), std::string_view{})
HOSTCFG_FS_TRAIT(mkdir, std::declval<const actor&>(), std::string_view{}, mode_type{})
HOSTCFG_FS_TRAIT(rmdir, std::declval<const actor&>(), std::string_view{})
HOSTCFG_FS_TRAIT(chmod, std::declval<const actor&>(), std::string_view{}, mode_type{})
HOSTCFG_FS_TRAIT(lchown, std::declval<const actor&>(), std::string_view{}, uid_type{}, gid_type{})
HOSTCFG_FS_TRAIT(get_flags, std::declval<const actor&>(), std::string_view{})
HOSTCFG_FS_TRAIT(list_dir, std::declval<const actor&>(), std::string_view{})
HOSTCFG_FS_TRAIT(lock, std::declval<const actor&>(), std::string_view{})
HOSTCFG_FS_TRAIT(exchange, std::declval<const actor&>(), std::string_view{}, std::string_view{})
#undef HOSTCFG_FS_TRAIT
}  // namespace detail

/// Compile-time contract check, instantiated once at each public entry point. Each missing
/// operation is named by its own message.
template <class Fs>
constexpr bool check_fs() {
  static_assert(detail::fs_has_lstat<Fs>::value, "Fs backend needs: result<file_status> lstat(const actor&, std::string_view path)");
  static_assert(detail::fs_has_stat<Fs>::value, "Fs backend needs: result<file_status> stat(const actor&, std::string_view path)");
  static_assert(detail::fs_has_readlink<Fs>::value, "Fs backend needs: result<std::string> readlink(const actor&, std::string_view path)");
  static_assert(detail::fs_has_read_file<Fs>::value, "Fs backend needs: result<file_contents> read_file(const actor&, std::string_view path, std::size_t max_bytes)");
  static_assert(detail::fs_has_replace_file<Fs>::value, "Fs backend needs: result<replace_outcome> replace_file(const actor&, std::string_view path, std::string_view bytes, const replace_options&)");
  static_assert(detail::fs_has_symlink<Fs>::value, "Fs backend needs: result<void> symlink(const actor&, std::string_view target, std::string_view path)");
  static_assert(detail::fs_has_replace_symlink<Fs>::value, "Fs backend needs: result<void> replace_symlink(const actor&, std::string_view target, std::string_view path, std::optional<file_status> expected)");
  static_assert(detail::fs_has_rename<Fs>::value, "Fs backend needs: result<void> rename(const actor&, std::string_view from, std::string_view to)");
  static_assert(detail::fs_has_unlink<Fs>::value, "Fs backend needs: result<void> unlink(const actor&, std::string_view path)");
  static_assert(detail::fs_has_mkdir<Fs>::value, "Fs backend needs: result<void> mkdir(const actor&, std::string_view path, mode_type mode)");
  static_assert(detail::fs_has_rmdir<Fs>::value, "Fs backend needs: result<void> rmdir(const actor&, std::string_view path)");
  static_assert(detail::fs_has_chmod<Fs>::value, "Fs backend needs: result<void> chmod(const actor&, std::string_view path, mode_type mode)");
  static_assert(detail::fs_has_lchown<Fs>::value, "Fs backend needs: result<void> lchown(const actor&, std::string_view path, uid_type, gid_type)");
  static_assert(detail::fs_has_get_flags<Fs>::value, "Fs backend needs: result<file_flags> get_flags(const actor&, std::string_view path)");
  static_assert(detail::fs_has_list_dir<Fs>::value, "Fs backend needs: result<std::vector<std::string>> list_dir(const actor&, std::string_view path)");
  static_assert(detail::fs_has_lock<Fs>::value, "Fs backend needs: result<fs_lock> lock(const actor&, std::string_view path)");
  return true;
}

namespace detail {
template <class Fs, class = void>
struct fs_has_sync_dir : std::false_type {};
template <class Fs>
struct fs_has_sync_dir<Fs, std::void_t<decltype(std::declval<Fs&>().sync_dir(std::declval<const actor&>(),
                                                                              std::string_view{}))>>
    : std::true_type {};
}  // namespace detail

/// Makes the entries of directory `dir` durable (fsync of the directory) through the backend's
/// optional `result<void> sync_dir(const actor&, std::string_view dir)`. False only when that sync
/// failed (true for a backend without it): most callers ignore it, since durability is best effort
/// there and never a reason to fail a change that already happened; those that must know (a
/// record written ahead, a swap to report as not durable) check it.
template <class Fs>
bool sync_directory(Fs& fs, const actor& who, std::string_view dir) {
  if constexpr (detail::fs_has_sync_dir<Fs>::value) return fs.sync_dir(who, dir).has_value();
  (void)fs;
  (void)who;
  (void)dir;
  return true;
}

namespace detail {
template <class Fs, class = void>
struct fs_has_walk_cache : std::false_type {};
template <class Fs>
struct fs_has_walk_cache<Fs, std::void_t<decltype(std::declval<Fs&>().walk_cache())>> : std::true_type {};
/// What `open_walk_cache` returns for a backend without a walk cache.
struct no_walk_cache {};
}  // namespace detail

/// Opens the backend's optional walk cache: while the returned scope lives, a backend with
/// `walk_cache()` (PosixFs: verified directory fds reused instead of walking from `/` for every
/// operation) may reuse what it verified; other backends get an empty scope. `converge` holds one
/// for each run and reopens it after work done in another process (the elevated runner), whose
/// renames and removals the cached directory fds would not see.
template <class Fs>
auto open_walk_cache(Fs& fs) {
  if constexpr (detail::fs_has_walk_cache<Fs>::value) {
    return fs.walk_cache();
  } else {
    (void)fs;
    return detail::no_walk_cache{};
  }
}

/// `unlink`, then the parent directory synced, so a record written afterwards can never outlive
/// the removal in a crash (the record would forget an object that a crash brought back).
template <class Fs>
result<void> unlink_durably(Fs& fs, const actor& who, std::string_view path) {
  auto done = fs.unlink(who, path);
  if (done) sync_directory(fs, who, parent_path(path));
  return done;
}

/// `rmdir`, then the parent directory synced (see `unlink_durably`).
template <class Fs>
result<void> rmdir_durably(Fs& fs, const actor& who, std::string_view path) {
  auto done = fs.rmdir(who, path);
  if (done) sync_directory(fs, who, parent_path(path));
  return done;
}

/// The directories of `dir` (absolute, normal) that do not exist yet, outermost first: what
/// `make_parents` would make now. Primitives record them ahead of making them
/// (context::record_ahead), so a crash right after a mkdir cannot leave a directory no record
/// names. What stands where a directory is needed is for `make_parents` to judge.
template <class Fs>
result<std::vector<std::string>> missing_parents(Fs& fs, const actor& who, std::string_view dir) {
  std::vector<std::string> missing;
  std::string current;
  for (const auto& part : path_components(dir)) {
    current += "/" + part;
    if (missing.empty()) {
      auto st = fs.lstat(who, current);
      if (st) continue;
      if (!st.error().is_errno(ENOENT)) return tl::unexpected(st.error());
    }
    missing.push_back(current);
  }
  return missing;
}

/// Creates every missing directory of `dir` (absolute, normal) one level at a time as `who`, each
/// with `mode`, and returns the ones it made, outermost first, so the caller can record them and
/// revert can remove exactly those.
template <class Fs>
result<std::vector<std::string>> make_parents(Fs& fs, const actor& who, std::string_view dir, mode_type mode) {
  std::vector<std::string> made;
  std::string current;
  for (const auto& part : path_components(dir)) {
    current += "/" + part;
    auto st = fs.lstat(who, current);
    if (st) {
      if (st->type == file_type::directory) continue;
      if (st->type == file_type::symlink) {
        auto followed = fs.stat(who, current);
        if (followed && followed->type == file_type::directory) continue;
      }
      return fail_errno(ENOTDIR, "mkdir", current, {}, "a non-directory stands where a directory is needed");
    }
    if (!st.error().is_errno(ENOENT)) return tl::unexpected(st.error());
    auto made_one = fs.mkdir(who, current, mode);
    if (!made_one) {
      // Another run made it between our lstat and mkdir: fine when a directory stands there now
      // (it is not ours: not recorded as made, so our revert never removes it).
      if (made_one.error().is_errno(EEXIST)) {
        auto now = fs.lstat(who, current);
        if (now && now->type == file_type::directory) continue;
      }
      return tl::unexpected(made_one.error());
    }
    sync_directory(fs, who, parent_path(current));  // the new directory survives a crash
    made.push_back(current);
  }
  return made;
}

/// Adds to `dirs` (one path per line, as a record lists the directories a primitive made) each
/// of `made` not listed yet: an item written ahead by a run that crashed may already name them.
inline void list_dirs_made(std::string& dirs, const std::vector<std::string>& made) {
  for (const auto& d : made)
    if (("\n" + dirs).find("\n" + d + "\n") == std::string::npos) dirs += d + "\n";
}

/// Removes directories a primitive made (`dirs`: one path per line, as its record lists them),
/// deepest first whatever the order listed (a list merged over several runs), each only while
/// empty. Absent is fine (recorded ahead, never made); anything else (not empty, say) stops: the
/// directories above it are not empty either.
template <class Fs>
void remove_dirs_made(Fs& fs, const actor& who, std::string_view dirs) {
  std::vector<std::string> list;
  std::size_t pos = 0;
  while (pos < dirs.size()) {
    std::size_t end = dirs.find('\n', pos);
    if (end == std::string_view::npos) end = dirs.size();
    if (end > pos) list.emplace_back(dirs.substr(pos, end - pos));
    pos = end + 1;
  }
  std::stable_sort(list.begin(), list.end(), [](const std::string& a, const std::string& b) {
    return std::count(a.begin(), a.end(), '/') > std::count(b.begin(), b.end(), '/');
  });
  for (const auto& dir : list)
    if (auto gone = rmdir_durably(fs, who, dir); !gone && !gone.error().is_errno(ENOENT)) break;
}

/// Removes temp files a crashed run left beside `path` (`.<name>.hostcfg-*`, regular files owned
/// by `who`), returning how many. Backends clean them on their next write of `path`; this is for
/// callers that will not write it again (a record already up to date). Read-only when none exist.
template <class Fs>
std::size_t remove_stale_temps(Fs& fs, const actor& who, std::string_view path) {
  auto names = fs.list_dir(who, parent_path(path));
  if (!names) return 0;
  std::string prefix = "." + base_name(path) + ".hostcfg-";
  std::size_t removed = 0;
  for (const auto& name : *names) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    std::string temp = join_path(parent_path(path), name);
    auto st = fs.lstat(who, temp);
    if (st && st->type == file_type::regular && st->uid == who.uid && fs.unlink(who, temp)) ++removed;
  }
  return removed;
}

HOSTCFG_END_NAMESPACE
