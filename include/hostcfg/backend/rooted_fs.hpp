#pragma once
/// @file
/// `RootedFs<Fs>`: any `Fs` seen through a root directory, as if that directory were "/". A sandbox
/// on the real disk for tests, examples and dry runs:
///
///     hostcfg::PosixFs posix;
///     hostcfg::RootedFs<hostcfg::PosixFs> fs(posix, "/var/tmp/sandbox");
///     fs.replace_file(who, "/etc/hosts", bytes, opts);  // writes /var/tmp/sandbox/etc/hosts
///
/// Containment: RootedFs resolves every intermediate component itself, one `lstat` at a time
/// through the inner backend, and expands each symlink it meets relative to the root: an
/// absolute target restarts at the root, `..` stops at the root. So neither `..` nor a symlink
/// (absolute or relative) leads above the root. The final component is handed to the inner
/// backend unresolved (nothing follows it unless the operation says so: `stat` resolves it the
/// same way). An intermediate symlink is followed only when trusted, by PosixFs's rule (owned by
/// root or the actor, in a directory no one else can change), else ELOOP. The inner backend then
/// acts on a path without symlinks; if one is swapped in meanwhile, the inner backend's own rules
/// apply (PosixFs refuses untrusted links).
///
/// Symlink target strings are stored exactly as given and `readlink` returns them unchanged
/// (an absolute target means "inside the root" only to RootedFs itself). Paths in errors are the
/// caller's paths (inside the root); an error about a directory above the root (e.g. PosixFs
/// refusing an unsafe ancestor) keeps its real path. The inner backend must outlive the RootedFs.

#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hostcfg/error.hpp"
#include "hostcfg/fs.hpp"
#include "hostcfg/path.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// A backend rooted at a directory of another backend (see the file comment).
template <class Fs>
class RootedFs {
 public:
  /// `root` must be absolute; it is normalized. It is not checked here: operations fail with the
  /// inner backend's error if it does not exist.
  RootedFs(Fs& inner, std::string_view root) : inner_(&inner) {
    auto normal = normalize_path(root);
    root_ = normal ? *normal : std::string(root);
    if (root_ == "/") root_.clear();
  }

  /// The root directory on the inner backend ("" when it is "/").
  const std::string& root() const { return root_; }
  /// The inner backend.
  Fs& inner() { return *inner_; }

  /// The inner backend's walk cache (see `open_walk_cache`); only when the inner backend has one.
  template <class F = Fs>
  auto walk_cache() -> decltype(std::declval<F&>().walk_cache()) {
    return inner_->walk_cache();
  }

  /// Syncs a directory inside the root, when the inner backend can (see `sync_directory`).
  result<void> sync_dir(const actor& who, std::string_view path) {
    return with(who, "sync_dir", path, false, [&](const std::string& p) -> result<void> {
      sync_directory(*inner_, who, p);
      return {};
    });
  }

  /// See `Fs::lstat`.
  result<file_status> lstat(const actor& who, std::string_view path) {
    return with(who, "lstat", path, false, [&](const std::string& p) { return inner_->lstat(who, p); });
  }
  /// Follows a final symlink inside the root.
  result<file_status> stat(const actor& who, std::string_view path) {
    return with(who, "stat", path, true, [&](const std::string& p) { return inner_->lstat(who, p); });
  }
  /// The target string as stored (not translated).
  result<std::string> readlink(const actor& who, std::string_view path) {
    return with(who, "readlink", path, false, [&](const std::string& p) { return inner_->readlink(who, p); });
  }
  /// See `Fs::read_file`.
  result<file_contents> read_file(const actor& who, std::string_view path, std::size_t max_bytes) {
    return with(who, "read", path, false, [&](const std::string& p) { return inner_->read_file(who, p, max_bytes); });
  }
  /// See `Fs::replace_file`.
  result<replace_outcome> replace_file(const actor& who, std::string_view path, std::string_view bytes,
                                       const replace_options& options) {
    return with(who, "replace", path, false,
                [&](const std::string& p) { return inner_->replace_file(who, p, bytes, options); });
  }
  /// Creates a link holding `target` exactly as given.
  result<void> symlink(const actor& who, std::string_view target, std::string_view path) {
    return with(who, "symlink", path, false, [&](const std::string& p) { return inner_->symlink(who, target, p); });
  }
  /// See `Fs::replace_symlink`.
  result<void> replace_symlink(const actor& who, std::string_view target, std::string_view path,
                               std::optional<file_status> expected) {
    return with(who, "replace symlink", path, false,
                [&](const std::string& p) { return inner_->replace_symlink(who, target, p, expected); });
  }
  /// See `Fs::rename`; both paths are inside the root.
  result<void> rename(const actor& who, std::string_view from, std::string_view to) {
    auto to_inner = resolve(who, "rename", to, false);
    if (!to_inner) return tl::unexpected(to_inner.error());
    return with(who, "rename", from, false, [&](const std::string& p) { return inner_->rename(who, p, *to_inner); });
  }
  /// See `Fs::exchange` (present when the inner backend has it); both paths are inside the root.
  template <class F = Fs, class = std::enable_if_t<detail::fs_has_exchange<F>::value>>
  result<void> exchange(const actor& who, std::string_view a, std::string_view b) {
    auto b_inner = resolve(who, "exchange", b, false);
    if (!b_inner) return tl::unexpected(b_inner.error());
    return with(who, "exchange", a, false, [&](const std::string& p) { return inner_->exchange(who, p, *b_inner); });
  }
  /// See `Fs::unlink`.
  result<void> unlink(const actor& who, std::string_view path) {
    return with(who, "unlink", path, false, [&](const std::string& p) { return inner_->unlink(who, p); });
  }
  /// See `Fs::mkdir`.
  result<void> mkdir(const actor& who, std::string_view path, mode_type mode) {
    return with(who, "mkdir", path, false, [&](const std::string& p) { return inner_->mkdir(who, p, mode); });
  }
  /// See `Fs::rmdir`.
  result<void> rmdir(const actor& who, std::string_view path) {
    return with(who, "rmdir", path, false, [&](const std::string& p) { return inner_->rmdir(who, p); });
  }
  /// See `Fs::chmod`.
  result<void> chmod(const actor& who, std::string_view path, mode_type mode) {
    return with(who, "chmod", path, false, [&](const std::string& p) { return inner_->chmod(who, p, mode); });
  }
  /// See `Fs::lchown`.
  result<void> lchown(const actor& who, std::string_view path, uid_type uid, gid_type gid) {
    return with(who, "lchown", path, false, [&](const std::string& p) { return inner_->lchown(who, p, uid, gid); });
  }
  /// See `Fs::get_flags`.
  result<file_flags> get_flags(const actor& who, std::string_view path) {
    return with(who, "get flags", path, false, [&](const std::string& p) { return inner_->get_flags(who, p); });
  }
  /// See `Fs::list_dir`.
  result<std::vector<std::string>> list_dir(const actor& who, std::string_view path) {
    return with(who, "list", path, false, [&](const std::string& p) { return inner_->list_dir(who, p); });
  }
  /// See `Fs::lock`.
  result<fs_lock> lock(const actor& who, std::string_view path) {
    return with(who, "lock", path, false, [&](const std::string& p) { return inner_->lock(who, p); });
  }

  /// The inner path for a caller's path, with intermediate symlinks (and the final one when
  /// `follow_final`) resolved inside the root.
  result<std::string> resolve(const actor& who, const char* op, std::string_view path, bool follow_final) {
    if (!is_normal_path(path))
      return fail(errc::invalid_input, op, std::string(path), "not an absolute, normal path",
                  "pass the output of normalize_path");
    std::vector<std::string> parts = path_components(path);
    std::deque<std::string> todo(parts.begin(), parts.end());
    std::string current = "/";
    int links = 0;
    while (!todo.empty()) {
      std::string part = std::move(todo.front());
      todo.pop_front();
      if (part.empty() || part == ".") continue;
      if (part == "..") {  // only from link targets; the caller's path is normal
        current = parent_path(current);
        continue;
      }
      std::string candidate = join_path(current, part);
      bool last = todo.empty();
      if (last && !follow_final) {
        current = std::move(candidate);
        break;
      }
      auto st = inner_->lstat(who, inner_path(candidate));
      if (!st) {
        if (last && st.error().is_errno(ENOENT)) {
          current = std::move(candidate);
          break;
        }
        return tl::unexpected(to_outer(st.error(), op, path));
      }
      if (st->type != file_type::symlink) {
        current = std::move(candidate);
        continue;
      }
      if (!last) {  // an intermediate link: followed only when trusted, as PosixFs does
        auto dir_st = inner_->lstat(who, inner_path(current));
        if (!dir_st) return tl::unexpected(to_outer(dir_st.error(), op, path));
        if (!trusted_link(who, *st, *dir_st))
          return fail_errno(ELOOP, op, candidate, {},
                            "a symlink owned by uid " + std::to_string(st->uid) + " in a directory owned by uid " +
                                std::to_string(dir_st->uid) +
                                "; hostcfg follows only symlinks that only root (or the acting user) controls");
      }
      if (++links > max_links) return fail_errno(ELOOP, op, std::string(path));
      auto target = inner_->readlink(who, inner_path(candidate));
      if (!target) return tl::unexpected(to_outer(target.error(), op, path));
      if (target->empty()) return fail_errno(ENOENT, op, std::string(path));
      if (target->front() == '/') current = "/";
      std::vector<std::string> expansion;
      std::size_t pos = 0;
      while (pos <= target->size()) {
        std::size_t next = target->find('/', pos);
        if (next == std::string::npos) next = target->size();
        if (next > pos) expansion.push_back(target->substr(pos, next - pos));
        pos = next + 1;
      }
      todo.insert(todo.begin(), expansion.begin(), expansion.end());
    }
    return inner_path(current);
  }

 private:
  static constexpr int max_links = 40;

  /// PosixFs's rule for an intermediate symlink: the link and its directory owned by root or the
  /// actor, and the directory not writable by others (group root/wheel excepted) unless sticky.
  static bool trusted_link(const actor& who, const file_status& link, const file_status& dir) {
    auto owner_ok = [&](uid_type uid) { return uid == 0 || uid == who.uid; };
    if (!owner_ok(link.uid) || !owner_ok(dir.uid)) return false;
#if defined(__APPLE__)
    bool admin_group = dir.gid == 0 || dir.gid == 1 || dir.gid == 80;
#else
    bool admin_group = dir.gid == 0;
#endif
    bool others_write = ((dir.mode & 020) && !admin_group) || (dir.mode & 002);
    return !others_write || (dir.mode & 01000);
  }

  std::string inner_path(const std::string& path) const {
    if (root_.empty()) return path;
    return path == "/" ? root_ : root_ + path;
  }

  /// An inner path back in the caller's terms (unchanged when it is not inside the root).
  std::string outer(const std::string& path) const {
    if (root_.empty() || path.empty() || !path_is_within(path, root_)) return path;
    return path.size() == root_.size() ? std::string("/") : path.substr(root_.size());
  }

  error to_outer(error e, const char* op, std::string_view path) const {
    if (e.path.empty()) e.path = std::string(path);
    e.path = outer(e.path);
    // path2 is a second path (rename, replace), except for symlinks, where it is the target
    // string, which stays exactly as given.
    if (e.op != "symlink" && e.op != "replace symlink") e.path2 = outer(e.path2);
    if (e.op.empty()) e.op = op;
    return e;
  }

  template <class F>
  auto with(const actor& who, const char* op, std::string_view path, bool follow_final, F&& body)
      -> decltype(body(std::string())) {
    auto p = resolve(who, op, path, follow_final);
    if (!p) return tl::unexpected(p.error());
    auto out = body(*p);
    if (!out) return tl::unexpected(to_outer(out.error(), op, path));
    return out;
  }

  Fs* inner_;
  std::string root_;
};

HOSTCFG_END_NAMESPACE
