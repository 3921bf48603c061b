#pragma once
/// @file
/// `MemoryFs`: an in-memory filesystem backend that fails like the real thing (pyfakefs is the
/// model, afero's MemMapFs what not to settle for). Files, directories, symlinks, special files,
/// hard links; uid/gid/mode; immutable and append-only flags; device ids (EXDEV), bind-mounted
/// files (EBUSY) and devices with an inode or space limit (ENOSPC). Every contract operation of
/// fs.hpp is permission-checked for the acting `actor` as the kernel does it and returns the
/// kernel's errno. On top of that it is a test instrument:
/// it logs every operation, injects errors at the Nth one, simulates a crash, models what a
/// reboot would find, and snapshots/diffs the tree.
///
///     hostcfg::MemoryFs fs;
///     fs.add_dir("/usr/local/bin", 0755, 0, 0);               // root:wheel 0755
///     hostcfg::actor user{501, 20, {20}};
///     auto made = fs.symlink(user, "/App/bin/docker", "/usr/local/bin/docker");
///     // made.error().is_errno(EACCES): uid 501 cannot create there
///
/// Semantics worth knowing when you write tests against it:
/// - Intermediate symlinks are followed (up to 40 hops, then ELOOP) by every operation, as the
///   kernel does; the last component is followed only by `stat`.
/// - By default it fails like the bare kernel. `set_posix_rules()` makes it fail like PosixFs,
///   whose walk adds two refusals: an intermediate symlink someone other than root or the actor
///   controls gives ELOOP, and root changing an entry in a directory a non-root user can change
///   gets `errc::unsafe_path`; `replace_file` of an immutable file is then `errc::locked`. The
///   conformance suite (hostcfg/testing/conformance.hpp) checks that mode against PosixFs.
/// - `replace_file` and `replace_symlink` log the steps of the real sequence
///   (`replace_file:create_temp`, `:write`, `:fsync`, `:cas`, `:rename`, `:fsync_dir`), so a
///   fault or crash sweep hits each one. Temps are named `.<name>.hostcfg-<n>`; the next
///   replace in that directory removes stale temps of the same name owned by the actor.
/// - Crash model: file data written (`replace_file`'s temp, an in-place rewrite) is durable only
///   after its `:fsync` step; until then a crash keeps it, loses it (the file holds its last
///   synced bytes) or tears it (a prefix of the new bytes). Inode metadata changes (chmod,
///   lchown) are durable at once; every change to a directory entry (create, rename, unlink,
///   mkdir, rmdir, symlink) is durable only after a later sync of a directory it touched
///   (`replace_file` syncs after its rename; `sync_dir` is available to callers). `after_crash`
///   rebuilds what a reboot finds: the durable entries and data plus none, all, or a seeded
///   random subset of the pending ones (a random subset also tears some unsynced data).
/// - Not thread-safe: a MemoryFs is driven from one thread at a time (locks model separate
///   hostcfg runs taking turns, not threads racing).

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hostcfg/error.hpp"
#include "hostcfg/fs.hpp"
#include "hostcfg/path.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace detail {

/// What a lower layer reports about one object (for `OverlayFs`, which pulls objects into a
/// `MemoryFs` the first time they are looked at).
struct pulled_object {
  file_status status;
  std::string link_target;  ///< symlinks only
  file_flags flags;         ///< immutable / append-only, so the overlay refuses what the lower would
};

/// The read-only view of a lower backend that `OverlayFs` gives its `MemoryFs`.
struct lower_source {
  virtual ~lower_source() = default;
  /// lstat + readlink of one path; nullopt when it does not exist.
  virtual result<std::optional<pulled_object>> lookup(const actor& who, const std::string& path) = 0;
  virtual result<std::vector<std::string>> list(const actor& who, const std::string& path) = 0;
  virtual result<std::string> read(const actor& who, const std::string& path, std::size_t max_bytes) = 0;
};

/// splitmix64: a tiny reproducible generator for the random crash subsets (no <random> needed).
inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline const char* file_type_name(file_type t) {
  switch (t) {
    case file_type::none: return "nothing";
    case file_type::regular: return "file";
    case file_type::directory: return "dir";
    case file_type::symlink: return "link";
    case file_type::fifo: return "fifo";
    case file_type::socket: return "socket";
    case file_type::block_device: return "block device";
    case file_type::char_device: return "char device";
    case file_type::unknown: return "object";
  }
  return "object";
}

inline std::string octal_mode(mode_type mode) {
  std::string out;
  for (int shift = 9; shift >= 0; shift -= 3) out += static_cast<char>('0' + ((mode >> shift) & 7));
  return out;
}

inline std::string flags_text(const file_flags& f) {
  if (f.immutable && f.append_only) return "immutable,append-only";
  if (f.immutable) return "immutable";
  if (f.append_only) return "append-only";
  return "none";
}

}  // namespace detail

/// An in-memory filesystem backend with kernel-like permission checks, an operation log, fault
/// injection, a crash model and snapshots. Copyable (a copy is an independent tree; held locks
/// are not copied). See the file comment for the semantics.
class MemoryFs {
 public:
  /// One logged operation. `error` is the errno it failed with (0 on success), or minus the
  /// `errc` value for hostcfg's own errors (`-int(errc::changed_since_probe)`).
  struct op_record {
    std::string op;
    std::string path;
    std::string path2;
    bool mutating = false;
    int error = 0;
  };

  /// What `after_crash` keeps of the directory changes that were not yet synced.
  enum class crash_keep { none, all, random_subset };

  /// One object in a snapshot (what `diff` compares: not inode numbers or times).
  struct snapshot_entry {
    file_type type = file_type::none;
    mode_type mode = 0;
    uid_type uid = 0;
    gid_type gid = 0;
    file_flags flags;
    std::string data;  ///< bytes of a regular file, target of a link
    bool loaded = true;  ///< false: an OverlayFs file whose bytes were never read (size only)
    std::uint64_t size = 0;
    friend bool operator==(const snapshot_entry& a, const snapshot_entry& b) {
      return a.type == b.type && a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.flags == b.flags &&
             a.data == b.data && a.loaded == b.loaded && a.size == b.size;
    }
    friend bool operator!=(const snapshot_entry& a, const snapshot_entry& b) { return !(a == b); }
  };

  /// The whole tree by path (no symlink followed). Copyable and comparable with `==`.
  struct snapshot {
    std::map<std::string, snapshot_entry> entries;
    friend bool operator==(const snapshot& a, const snapshot& b) { return a.entries == b.entries; }
    friend bool operator!=(const snapshot& a, const snapshot& b) { return !(a == b); }
  };

  /// A tree holding only "/" (root:root 0755, device 1).
  MemoryFs() {
    node root;
    root.type = file_type::directory;
    root.mode = 0755;
    root.dev = 1;
    root.nlink = 2;
    root.ino = root_id;
    root.mtime = root.ctime = now_;
    nodes_.emplace(root_id, std::move(root));
    durable_[root_id];
  }

  // ---------------------------------------------------------------- the Fs contract (fs.hpp)

  /// The object itself; a symlink is reported as a symlink.
  result<file_status> lstat(const actor& who, std::string_view path) {
    return stat_impl(who, path, false, "lstat");
  }

  /// Follows a final symlink (up to 40 hops, then ELOOP).
  result<file_status> stat(const actor& who, std::string_view path) { return stat_impl(who, path, true, "stat"); }

  /// The target string of a symlink as stored; EINVAL when `path` is not a symlink.
  result<std::string> readlink(const actor& who, std::string_view path) {
    const char* op = "readlink";
    if (int e = step(op, path, {}, false)) return fail_errno(e, op, std::string(path));
    auto w = walk(who, path, false, op);
    if (!w) return mark(w.error());
    if (!w->id) return mark(fail_errno(ENOENT, op, std::string(path)));
    const node& n = nodes_.at(w->id);
    if (n.type != file_type::symlink) return mark(fail_errno(EINVAL, op, std::string(path), {}, "not a symbolic link"));
    return n.data;
  }

  /// A whole regular file, never through a final symlink (ELOOP), refusing directories
  /// (EISDIR), special files (EINVAL), files with more than one link (EMLINK) and files larger
  /// than `max_bytes` (`errc::too_large`). `status.flags` is filled.
  result<file_contents> read_file(const actor& who, std::string_view path, std::size_t max_bytes) {
    const char* op = "read_file";
    std::string p(path);
    if (int e = step(op, path, {}, false)) return fail_errno(e, op, p);
    auto w = walk(who, path, false, op);
    if (!w) return mark(w.error());
    if (!w->id) return mark(fail_errno(ENOENT, op, p));
    node& n = nodes_.at(w->id);
    if (n.type == file_type::symlink) return mark(fail_errno(ELOOP, op, p, {}, "the last component is a symlink"));
    if (!may(who, n, 4)) return mark(fail_errno(EACCES, op, p));
    if (n.type == file_type::directory) return mark(fail_errno(EISDIR, op, p));
    if (n.type != file_type::regular) return mark(fail_errno(EINVAL, op, p, {}, "not a regular file"));
    if (n.nlink > 1)
      return mark(fail_errno(EMLINK, op, p, {}, "the file has other hard links; replacing it would split them"));
    if (current_size(n) > max_bytes)
      return mark(fail(errc::too_large, op, p,
                       "file is " + std::to_string(current_size(n)) + " bytes, the bound is " + std::to_string(max_bytes)));
    if (auto loaded = ensure_loaded(who, w->id, max_bytes); !loaded) return mark(loaded.error());
    file_contents out;
    out.bytes = n.data;
    out.status = status_of_node(n);
    out.status.flags = n.flags;
    return out;
  }

  /// Atomic replace: temp file beside the target, write, fsync, compare-and-swap, rename,
  /// directory sync. Each step is a logged operation (a fault point). See `replace_options`.
  result<replace_outcome> replace_file(const actor& who, std::string_view path, std::string_view bytes,
                                       const replace_options& options) {
    const char* op = "replace_file";
    std::string p(path);
    if (int e = step(op, path, {}, false)) return fail_errno(e, op, p);
    auto w = walk(who, path, false, op, walk_mode::mutating);
    if (!w) return mark(w.error());
    if (w->name.empty()) return mark(fail_errno(EISDIR, op, p));
    const id_type dir_id = w->parent;
    const id_type old_id = w->id;
    if (auto ok = check_dir_write(who, dir_id, op, p); !ok) return mark(ok.error());
    uid_type uid = options.uid.value_or(who.uid);
    gid_type gid = options.gid.value_or(who.gid);
    mode_type mode = 0;
    if (old_id) {
      node& old = nodes_.at(old_id);
      if (old.type == file_type::directory) return mark(fail_errno(EISDIR, op, p));
      if (old.type == file_type::symlink)
        return mark(fail_errno(ELOOP, op, p, {}, "the target is a symlink; replace_file never follows it"));
      if (old.type != file_type::regular) return mark(fail_errno(EINVAL, op, p, {}, "not a regular file"));
      if (options.expect_absent) return mark(fail_errno(EEXIST, op, p));
      // PosixFs checks the flags before writing anything and says so with errc::locked; the
      // kernel's own answer is EPERM (from the rename).
      if ((old.flags.immutable || old.flags.append_only) && !posix_rules_)
        return mark(fail_errno(EPERM, op, p, {}, "the file is immutable or append-only; hostcfg never clears that flag"));
      if (old.flags.immutable || old.flags.append_only)
        return mark(fail(errc::locked, op, p,
                         std::string("the file is ") + (old.flags.immutable ? "immutable" : "append-only") +
                             "; hostcfg never clears such a flag",
                         "its owner set the flag on purpose; clear it (chattr -i / chflags nouchg) to allow the change"));
      if (old.nlink > 1)
        return mark(fail_errno(EMLINK, op, p, {}, "the file has other hard links; replacing it would split them"));
      if (auto ok = check_sticky(who, dir_id, old_id, op, p); !ok) return mark(ok.error());
      if (!who.is_root() && (old.uid != who.uid || !in_group(who, old.gid)))
        return mark(fail_errno(EPERM, op, p, {}, "cannot keep the file's owner without root"));
      if (options.expected && (options.expected->type == file_type::none ||
                               !same_version(*options.expected, status_of_node(old))))
        return mark(fail(errc::changed_since_probe, op, p, "the file changed since it was probed",
                         "probe again and re-plan"));
      uid = old.uid;
      gid = old.gid;
      mode = (options.force_mode && options.mode) ? *options.mode & 07777 : old.mode;
      if (options.only_if_different && old.mode == mode && current_size(old) == bytes.size()) {
        if (!may(who, old, 4)) return mark(fail_errno(EACCES, op, p, {}, "cannot read the file to compare it"));
        if (auto loaded = ensure_loaded(who, old_id, bytes.size()); !loaded) return mark(loaded.error());
        if (nodes_.at(old_id).data == bytes) {
          replace_outcome same;
          same.changed = false;
          return same;
        }
      }
    } else {
      if (options.expected && options.expected->type != file_type::none)
        return mark(fail(errc::changed_since_probe, op, p, "the file was removed since it was probed",
                         "probe again and re-plan"));
      if (!options.mode)
        return mark(fail(errc::invalid_input, op, p, "a new file needs replace_options::mode",
                         "pass the mode the file must have"));
      mode = *options.mode & 07777;
      if (!who.is_root() && uid != who.uid)
        return mark(fail_errno(EPERM, op, p, {}, "only root can create a file for another user"));
      if (!who.is_root() && !in_group(who, gid))
        return mark(fail_errno(EPERM, op, p, {}, "only root can give a file a group it is not in"));
    }

    if (auto cleaned = remove_stale_temps(who, dir_id, w->name, w->parent_path, op); !cleaned)
      return tl::unexpected(cleaned.error());

    const std::string temp_name = pick_temp_name(dir_id, w->name);
    const std::string temp_path = join_path(w->parent_path, temp_name);
    std::string step_name = std::string(op) + ":create_temp";
    if (int e = step(step_name, path, temp_path, true)) return fail_errno(e, step_name, p, temp_path);
    if (no_free_inode(nodes_.at(dir_id).dev))
      return mark(fail_errno(ENOSPC, step_name, p, temp_path, "no free inode on the filesystem"));
    node temp;
    temp.type = file_type::regular;
    temp.mode = mode;
    temp.uid = uid;
    temp.gid = gid;
    temp.dev = nodes_.at(dir_id).dev;
    const id_type temp_id = add_node(std::move(temp));
    apply_changes({{dir_id, temp_name, temp_id}}, false);

    auto abandon = [&](const std::string& failed_step, int e) -> tl::unexpected<error> {
      std::string cleanup = std::string(op) + ":unlink_temp";
      if (!step(cleanup, path, temp_path, true, false)) apply_changes({{dir_id, temp_name, 0}}, false);
      return fail_errno(e, failed_step, p, temp_path);
    };

    step_name = std::string(op) + ":write";
    if (int e = step(step_name, path, temp_path, true)) return abandon(step_name, e);
    if (no_free_space(nodes_.at(dir_id).dev, bytes.size())) {
      if (!log_.empty()) log_.back().error = ENOSPC;  // the write step's own record, as an injected error would be
      return abandon(step_name, ENOSPC);
    }
    {
      node& t = nodes_.at(temp_id);
      write_unsynced(t, bytes);
      t.mtime = t.ctime = now_;
    }
    step_name = std::string(op) + ":fsync";
    if (int e = step(step_name, path, temp_path, false)) return abandon(step_name, e);
    nodes_.at(temp_id).data_unsynced = false;
    step_name = std::string(op) + ":cas";
    if (int e = step(step_name, path, {}, false)) return abandon(step_name, e);
    {
      // Nothing else runs inside this object between the first check and here, but the step
      // stays so a sweep covers the re-check of the real sequence.
      auto again = nodes_.at(dir_id).children.find(w->name);
      id_type now_there = again == nodes_.at(dir_id).children.end() ? 0 : again->second;
      if (now_there != old_id) {
        std::string cleanup = std::string(op) + ":unlink_temp";
        if (!step(cleanup, path, temp_path, true, false)) apply_changes({{dir_id, temp_name, 0}}, false);
        return fail(errc::changed_since_probe, op, p, "the file changed while it was being replaced");
      }
    }
    step_name = std::string(op) + ":rename";
    int rename_error = step(step_name, temp_path, path, true);
    if (!rename_error && old_id && nodes_.at(old_id).mount_point) {
      rename_error = EBUSY;
      log_.back().error = EBUSY;
    }
    if (rename_error) {
      if ((rename_error == EBUSY || rename_error == EXDEV) && options.allow_in_place_fallback && old_id) {
        std::string cleanup = std::string(op) + ":unlink_temp";
        if (!step(cleanup, path, temp_path, true, false)) apply_changes({{dir_id, temp_name, 0}}, false);
        step_name = std::string(op) + ":write_in_place";
        if (int e = step(step_name, path, {}, true)) return fail_errno(e, step_name, p);
        node& t = nodes_.at(old_id);
        write_unsynced(t, bytes);
        t.data_loaded = true;
        t.mode = mode;
        t.mtime = t.ctime = now_;
        step_name = std::string(op) + ":fsync";
        replace_outcome out;
        out.changed = true;
        out.in_place = true;
        if (step(step_name, path, {}, false)) out.durable = false;
        else nodes_.at(old_id).data_unsynced = false;
        return out;
      }
      return abandon(step_name, rename_error);
    }
    apply_changes({{dir_id, w->name, temp_id}, {dir_id, temp_name, 0}}, false);
    touch_dir(dir_id);
    replace_outcome out;
    out.changed = true;
    step_name = std::string(op) + ":fsync_dir";
    if (step(step_name, w->parent_path, {}, false)) {
      out.durable = false;
      return out;
    }
    commit_dir(dir_id);
    return out;
  }

  /// Creates a symlink; EEXIST if anything is at `path`.
  result<void> symlink(const actor& who, std::string_view target, std::string_view path) {
    const char* op = "symlink";
    std::string p(path);
    if (int e = step(op, path, target, true)) return fail_errno(e, op, p, std::string(target));
    auto w = walk(who, path, false, op, walk_mode::mutating);
    if (!w) return mark(w.error());
    if (w->name.empty() || w->id) return mark(fail_errno(EEXIST, op, p, std::string(target)));
    if (auto ok = check_dir_write(who, w->parent, op, p); !ok) return mark(ok.error());
    if (no_free_inode(nodes_.at(w->parent).dev))
      return mark(fail_errno(ENOSPC, op, p, std::string(target), "no free inode on the filesystem"));
    node link;
    link.type = file_type::symlink;
    link.mode = 0777;
    link.uid = who.uid;
    link.gid = who.gid;
    link.dev = nodes_.at(w->parent).dev;
    link.data.assign(target.data(), target.size());
    id_type id = add_node(std::move(link));
    apply_changes({{w->parent, w->name, id}}, false);
    touch_dir(w->parent);
    return {};
  }

  /// Points `path` at `target` atomically (temp link + rename). When `expected` is set, what is
  /// at `path` must still be that version (type none: nothing there), else
  /// `errc::changed_since_probe`. A failed directory sync after the rename gives
  /// `errc::not_durable` (the link is in place).
  result<void> replace_symlink(const actor& who, std::string_view target, std::string_view path,
                               std::optional<file_status> expected) {
    const char* op = "replace_symlink";
    std::string p(path);
    std::string t(target);
    if (int e = step(op, path, target, false)) return fail_errno(e, op, p, t);
    auto w = walk(who, path, false, op, walk_mode::mutating);
    if (!w) return mark(w.error());
    if (w->name.empty()) return mark(fail_errno(EBUSY, op, p, t));
    const id_type dir_id = w->parent;
    if (auto ok = check_dir_write(who, dir_id, op, p); !ok) return mark(ok.error());
    if (w->id) {
      node& old = nodes_.at(w->id);
      if (old.type == file_type::directory) return mark(fail_errno(EISDIR, op, p, t));
      if (old.flags.immutable || old.flags.append_only)
        return mark(fail_errno(EPERM, op, p, t, "the object is immutable or append-only"));
      if (auto ok = check_sticky(who, dir_id, w->id, op, p); !ok) return mark(ok.error());
      if (old.mount_point) return mark(fail_errno(EBUSY, op, p, t, "a mount point"));
      if (expected && (expected->type == file_type::none || !same_version(*expected, status_of_node(old))))
        return mark(fail(errc::changed_since_probe, op, p, "the link changed since it was probed"));
    } else if (expected && expected->type != file_type::none) {
      return mark(fail(errc::changed_since_probe, op, p, "the link was removed since it was probed"));
    }
    if (auto cleaned = remove_stale_temps(who, dir_id, w->name, w->parent_path, op); !cleaned)
      return tl::unexpected(cleaned.error());
    const std::string temp_name = pick_temp_name(dir_id, w->name);
    const std::string temp_path = join_path(w->parent_path, temp_name);
    std::string step_name = std::string(op) + ":create_temp";
    if (int e = step(step_name, temp_path, target, true)) return fail_errno(e, step_name, temp_path, t);
    if (no_free_inode(nodes_.at(dir_id).dev))
      return mark(fail_errno(ENOSPC, step_name, temp_path, t, "no free inode on the filesystem"));
    node link;
    link.type = file_type::symlink;
    link.mode = 0777;
    link.uid = who.uid;
    link.gid = who.gid;
    link.dev = nodes_.at(dir_id).dev;
    link.data = t;
    const id_type temp_id = add_node(std::move(link));
    apply_changes({{dir_id, temp_name, temp_id}}, false);
    step_name = std::string(op) + ":rename";
    if (int e = step(step_name, temp_path, path, true)) {
      std::string cleanup = std::string(op) + ":unlink_temp";
      if (!step(cleanup, temp_path, {}, true, false)) apply_changes({{dir_id, temp_name, 0}}, false);
      return fail_errno(e, step_name, temp_path, p);
    }
    apply_changes({{dir_id, w->name, temp_id}, {dir_id, temp_name, 0}}, false);
    touch_dir(dir_id);
    step_name = std::string(op) + ":fsync_dir";
    if (step(step_name, w->parent_path, {}, false))
      return fail(errc::not_durable, op, p, "the link was replaced but the directory sync failed",
                  "the change may be lost on power failure; run again to make sure");
    commit_dir(dir_id);
    return {};
  }

  /// rename(2): replaces a non-directory or an empty directory at `to`; EXDEV across devices;
  /// EINVAL when moving a directory into itself; EBUSY for mount points.
  result<void> rename(const actor& who, std::string_view from, std::string_view to) {
    const char* op = "rename";
    std::string f(from), t(to);
    if (int e = step(op, from, to, true)) return fail_errno(e, op, f, t);
    auto wf = walk(who, from, false, op, walk_mode::mutating);
    if (!wf) return mark(wf.error());
    if (wf->name.empty()) return mark(fail_errno(EBUSY, op, f, t));
    // Both parents are resolved before the source is looked up, as the kernel does.
    auto wt = walk(who, to, false, op, walk_mode::mutating);
    if (!wt) return mark(wt.error());
    if (wt->name.empty()) return mark(fail_errno(EBUSY, op, f, t));
    if (nodes_.at(wf->parent).dev != nodes_.at(wt->parent).dev)
      return mark(fail_errno(EXDEV, op, f, t, "source and destination are on different devices"));
    if (!wf->id) return mark(fail_errno(ENOENT, op, f, t));
    node& src = nodes_.at(wf->id);
    {
      const std::string from_canon = join_path(wf->parent_path, wf->name);
      const std::string to_canon = join_path(wt->parent_path, wt->name);
      if (from_canon != to_canon && path_is_within(to_canon, from_canon))
        return mark(fail_errno(EINVAL, op, f, t, "cannot move a directory into itself"));
      if (from_canon != to_canon && path_is_within(from_canon, to_canon))
        return mark(fail_errno(ENOTEMPTY, op, f, t, "the destination contains the source"));
    }
    if (wf->id == wt->id) return {};  // the same file: rename(2) does nothing
    // may_delete / may_create order: permissions, sticky and flags, then the types.
    if (auto ok = check_delete(who, wf->parent, wf->id, op, f); !ok) return mark(ok.error());
    if (wt->id) {
      if (auto ok = check_delete(who, wt->parent, wt->id, op, t); !ok) return mark(ok.error());
      const node& dst = nodes_.at(wt->id);
      if (src.type == file_type::directory && dst.type != file_type::directory) return mark(fail_errno(ENOTDIR, op, f, t));
      if (src.type != file_type::directory && dst.type == file_type::directory) return mark(fail_errno(EISDIR, op, f, t));
    } else if (auto ok = check_dir_write(who, wt->parent, op, t); !ok) {
      return mark(ok.error());
    }
    if (src.type == file_type::directory && wf->parent != wt->parent && !may(who, src, 2))
      return mark(fail_errno(EACCES, op, f, t, "moving a directory needs write permission on it"));
    if (src.mount_point || src.dev != nodes_.at(wf->parent).dev)
      return mark(fail_errno(EBUSY, op, f, t, "the source is a mount point"));
    if (wt->id && nodes_.at(wt->id).mount_point)
      return mark(fail_errno(EBUSY, op, f, t, "the destination is a mount point"));
    if (wt->id && nodes_.at(wt->id).type == file_type::directory) {
      if (auto full = ensure_complete(who, wt->id); !full) return mark(full.error());
      if (!nodes_.at(wt->id).children.empty()) return mark(fail_errno(ENOTEMPTY, op, f, t));
    }
    const bool replaced_dir = wt->id && nodes_.at(wt->id).type == file_type::directory;
    apply_changes({{wf->parent, wf->name, 0}, {wt->parent, wt->name, wf->id}}, false);
    if (replaced_dir) nodes_.at(wt->parent).nlink--;
    if (src.type == file_type::directory && wf->parent != wt->parent) {
      nodes_.at(wf->parent).nlink--;
      nodes_.at(wt->parent).nlink++;
    }
    nodes_.at(wf->id).ctime = now_;
    touch_dir(wf->parent);
    touch_dir(wt->parent);
    return {};
  }

  /// Swaps two existing non-directories atomically (PosixFs: renameat2 RENAME_EXCHANGE), as one
  /// directory change of each parent (lost, kept or torn by a crash like a rename's). ENOENT when
  /// either is missing, EISDIR for a directory (not needed by hostcfg), EXDEV across devices;
  /// EINVAL when `unsupported_exchange` is set (a filesystem that cannot, as PosixFs may see).
  result<void> exchange(const actor& who, std::string_view a, std::string_view b) {
    const char* op = "exchange";
    std::string pa(a), pb(b);
    if (int e = step(op, a, b, true)) return fail_errno(e, op, pa, pb);
    if (exchange_unsupported_) return mark(fail_errno(EINVAL, op, pa, pb, "this filesystem cannot swap names"));
    auto wa = walk(who, a, false, op, walk_mode::mutating);
    if (!wa) return mark(wa.error());
    auto wb = walk(who, b, false, op, walk_mode::mutating);
    if (!wb) return mark(wb.error());
    if (wa->name.empty() || wb->name.empty()) return mark(fail_errno(EBUSY, op, pa, pb));
    // The kernel compares the parents' mounts before it looks the names up.
    if (nodes_.at(wa->parent).dev != nodes_.at(wb->parent).dev)
      return mark(fail_errno(EXDEV, op, pa, pb, "the two names are on different devices"));
    if (!wa->id || !wb->id) return mark(fail_errno(ENOENT, op, pa, pb));
    if (wa->id == wb->id) return {};
    for (auto id : {wa->id, wb->id}) {
      const node& n = nodes_.at(id);
      if (n.type == file_type::directory) return mark(fail_errno(EISDIR, op, pa, pb));
      if (n.mount_point) return mark(fail_errno(EBUSY, op, pa, pb, "a mount point"));
    }
    if (auto ok = check_delete(who, wa->parent, wa->id, op, pa); !ok) return mark(ok.error());
    if (auto ok = check_delete(who, wb->parent, wb->id, op, pb); !ok) return mark(ok.error());
    apply_changes({{wa->parent, wa->name, wb->id}, {wb->parent, wb->name, wa->id}}, false);
    nodes_.at(wa->id).ctime = now_;
    nodes_.at(wb->id).ctime = now_;
    touch_dir(wa->parent);
    touch_dir(wb->parent);
    return {};
  }

  /// Makes `exchange` fail with EINVAL, as on a filesystem without RENAME_EXCHANGE.
  void set_exchange_unsupported(bool on = true) { exchange_unsupported_ = on; }

  /// Removes a non-directory (EISDIR for a directory).
  result<void> unlink(const actor& who, std::string_view path) {
    const char* op = "unlink";
    std::string p(path);
    if (int e = step(op, path, {}, true)) return fail_errno(e, op, p);
    auto w = walk(who, path, false, op, walk_mode::mutating);
    if (!w) return mark(w.error());
    if (w->name.empty()) return mark(fail_errno(EISDIR, op, p));
    if (!w->id) return mark(fail_errno(ENOENT, op, p));
    if (auto ok = check_delete(who, w->parent, w->id, op, p); !ok) return mark(ok.error());
    node& n = nodes_.at(w->id);
    if (n.type == file_type::directory) return mark(fail_errno(EISDIR, op, p));
    if (n.mount_point) return mark(fail_errno(EBUSY, op, p, {}, "a mount point"));
    apply_changes({{w->parent, w->name, 0}}, false);
    touch_dir(w->parent);
    return {};
  }

  /// Creates one directory with exactly `mode` (no umask), owned by the actor.
  result<void> mkdir(const actor& who, std::string_view path, mode_type mode) {
    const char* op = "mkdir";
    std::string p(path);
    if (int e = step(op, path, {}, true)) return fail_errno(e, op, p);
    auto w = walk(who, path, false, op, walk_mode::mutating);
    if (!w) return mark(w.error());
    if (w->name.empty() || w->id) return mark(fail_errno(EEXIST, op, p));
    if (auto ok = check_dir_write(who, w->parent, op, p); !ok) return mark(ok.error());
    if (no_free_inode(nodes_.at(w->parent).dev))
      return mark(fail_errno(ENOSPC, op, p, {}, "no free inode on the filesystem"));
    node& parent = nodes_.at(w->parent);
    node dir;
    dir.type = file_type::directory;
    dir.mode = mode & 07777;
    dir.uid = who.uid;
    dir.gid = who.gid;
    if (parent.mode & 02000) {  // a setgid directory passes its group (and the bit) down
      dir.gid = parent.gid;
      dir.mode |= 02000;
    }
    dir.dev = parent.dev;
    dir.nlink = 2;
    id_type id = add_node(std::move(dir));
    durable_[id];
    apply_changes({{w->parent, w->name, id}}, false);
    nodes_.at(w->parent).nlink++;
    touch_dir(w->parent);
    return {};
  }

  /// Removes an empty directory (ENOTEMPTY otherwise, ENOTDIR for a non-directory).
  result<void> rmdir(const actor& who, std::string_view path) {
    const char* op = "rmdir";
    std::string p(path);
    if (int e = step(op, path, {}, true)) return fail_errno(e, op, p);
    auto w = walk(who, path, false, op, walk_mode::mutating);
    if (!w) return mark(w.error());
    if (w->name.empty()) return mark(fail_errno(EBUSY, op, p));
    if (!w->id) return mark(fail_errno(ENOENT, op, p));
    if (auto ok = check_delete(who, w->parent, w->id, op, p); !ok) return mark(ok.error());
    if (nodes_.at(w->id).type != file_type::directory) return mark(fail_errno(ENOTDIR, op, p));
    if (nodes_.at(w->id).mount_point || nodes_.at(w->id).dev != nodes_.at(w->parent).dev)
      return mark(fail_errno(EBUSY, op, p, {}, "a mount point"));
    if (auto full = ensure_complete(who, w->id); !full) return mark(full.error());
    if (!nodes_.at(w->id).children.empty()) return mark(fail_errno(ENOTEMPTY, op, p));
    apply_changes({{w->parent, w->name, 0}}, false);
    nodes_.at(w->parent).nlink--;
    touch_dir(w->parent);
    return {};
  }

  /// Sets the permission bits of the object itself (EOPNOTSUPP on a symlink, as Linux's
  /// fchmodat(AT_SYMLINK_NOFOLLOW)); only the owner or root may (EPERM).
  result<void> chmod(const actor& who, std::string_view path, mode_type mode) {
    const char* op = "chmod";
    std::string p(path);
    if (int e = step(op, path, {}, true)) return fail_errno(e, op, p);
    auto w = walk(who, path, false, op, walk_mode::mutating);
    if (!w) return mark(w.error());
    if (!w->id) return mark(fail_errno(ENOENT, op, p));
    node& n = nodes_.at(w->id);
    if (n.type == file_type::symlink)
      return mark(fail_errno(EOPNOTSUPP, op, p, {}, "the mode of a symlink cannot be changed"));
    if (n.flags.immutable || n.flags.append_only)
      return mark(fail_errno(EPERM, op, p, {}, "the object is immutable or append-only"));
    if (!who.is_root() && n.uid != who.uid)
      return mark(fail_errno(EPERM, op, p, {}, "only the owner or root can change the mode"));
    mode &= 07777;
    // The kernel silently drops setgid when a non-member sets it on a file.
    if (!who.is_root() && n.type != file_type::directory && !in_group(who, n.gid)) mode &= ~mode_type(02000);
    n.mode = mode;
    n.ctime = now_;
    return {};
  }

  /// Sets owner and group of the object itself; `uid_type(-1)`/`gid_type(-1)` keep one. A
  /// non-root actor may only change the group of its own files to a group it is in (EPERM).
  result<void> lchown(const actor& who, std::string_view path, uid_type uid, gid_type gid) {
    const char* op = "lchown";
    std::string p(path);
    if (int e = step(op, path, {}, true)) return fail_errno(e, op, p);
    auto w = walk(who, path, false, op, walk_mode::mutating);
    if (!w) return mark(w.error());
    if (!w->id) return mark(fail_errno(ENOENT, op, p));
    node& n = nodes_.at(w->id);
    if (n.flags.immutable || n.flags.append_only)
      return mark(fail_errno(EPERM, op, p, {}, "the object is immutable or append-only"));
    const bool keep_uid = uid == static_cast<uid_type>(-1);
    const bool keep_gid = gid == static_cast<gid_type>(-1);
    if (!who.is_root()) {
      if ((!keep_uid && uid != n.uid) || n.uid != who.uid)
        return mark(fail_errno(EPERM, op, p, {}, "only root can give a file away"));
      if (!keep_gid && gid != n.gid && !in_group(who, gid))
        return mark(fail_errno(EPERM, op, p, {}, "not a member of that group"));
    }
    if (!keep_uid) n.uid = uid;
    if (!keep_gid) n.gid = gid;
    if (n.type == file_type::regular && (!keep_uid || !keep_gid)) {
      n.mode &= ~mode_type(04000);
      if (n.mode & 010) n.mode &= ~mode_type(02000);
    }
    n.ctime = now_;
    return {};
  }

  /// Immutable / append-only flags of the object itself.
  result<file_flags> get_flags(const actor& who, std::string_view path) {
    const char* op = "get_flags";
    std::string p(path);
    if (int e = step(op, path, {}, false)) return fail_errno(e, op, p);
    auto w = walk(who, path, false, op);
    if (!w) return mark(w.error());
    if (!w->id) return mark(fail_errno(ENOENT, op, p));
    return nodes_.at(w->id).flags;
  }

  /// Names in a directory, sorted, without "." and "..". A final symlink is not followed
  /// (ENOTDIR, as open(O_DIRECTORY|O_NOFOLLOW)); needs read permission (EACCES).
  result<std::vector<std::string>> list_dir(const actor& who, std::string_view path) {
    const char* op = "list_dir";
    std::string p(path);
    if (int e = step(op, path, {}, false)) return fail_errno(e, op, p);
    auto w = walk(who, path, false, op);
    if (!w) return mark(w.error());
    if (!w->id) return mark(fail_errno(ENOENT, op, p));
    if (nodes_.at(w->id).type != file_type::directory) return mark(fail_errno(ENOTDIR, op, p));
    if (!may(who, nodes_.at(w->id), 4)) return mark(fail_errno(EACCES, op, p));
    if (auto full = ensure_complete(who, w->id); !full) return mark(full.error());
    std::vector<std::string> names;
    for (const auto& child : nodes_.at(w->id).children) names.push_back(child.first);
    return names;
  }

  /// An advisory exclusive lock on the object (never through a final symlink: ELOOP); a second
  /// lock while one is held gives EWOULDBLOCK. Creates nothing.
  result<fs_lock> lock(const actor& who, std::string_view path) {
    const char* op = "lock";
    std::string p(path);
    if (int e = step(op, path, {}, false)) return fail_errno(e, op, p);
    auto w = walk(who, path, false, op);
    if (!w) return mark(w.error());
    if (!w->id) return mark(fail_errno(ENOENT, op, p));
    const node& n = nodes_.at(w->id);
    if (n.type == file_type::symlink) return mark(fail_errno(ELOOP, op, p));
    if (!may(who, n, 4)) return mark(fail_errno(EACCES, op, p));
    if (!locks_.held) locks_.held = std::make_shared<std::set<id_type>>();
    if (!locks_.held->insert(w->id).second)
      return mark(fail_errno(EWOULDBLOCK, op, p, {}, "another hostcfg run holds the lock"));
    std::shared_ptr<std::set<id_type>> held = locks_.held;
    id_type id = w->id;
    return fs_lock([held, id] { held->erase(id); });
  }

  /// fsync of a directory: makes every earlier entry change in it durable (see the crash
  /// model). Not part of the Fs contract; logged as "sync_dir".
  result<void> sync_dir(const actor& who, std::string_view path) {
    const char* op = "sync_dir";
    std::string p(path);
    if (int e = step(op, path, {}, false)) return fail_errno(e, op, p);
    auto w = walk(who, path, true, op);
    if (!w) return mark(w.error());
    if (!w->id) return mark(fail_errno(ENOENT, op, p));
    if (nodes_.at(w->id).type != file_type::directory) return mark(fail_errno(ENOTDIR, op, p));
    commit_dir(w->id);
    return {};
  }

  // ------------------------------------------------- setup: no checks, not logged, durable

  /// Creates a directory (and missing parents, root:root 0755), or sets mode/owner of an
  /// existing one.
  void add_dir(std::string_view path, mode_type mode = 0755, uid_type uid = 0, gid_type gid = 0) {
    id_type id = ensure_dir(path);
    if (!id) return;
    node& n = nodes_.at(id);
    n.mode = mode & 07777;
    n.uid = uid;
    n.gid = gid;
  }

  /// Creates or overwrites a regular file (missing parents: root:root 0755).
  void add_file(std::string_view path, std::string_view bytes, mode_type mode = 0644, uid_type uid = 0,
                gid_type gid = 0) {
    node n;
    n.type = file_type::regular;
    n.mode = mode & 07777;
    n.uid = uid;
    n.gid = gid;
    n.data.assign(bytes.data(), bytes.size());
    setup_place(path, std::move(n));
  }

  /// Creates or overwrites a symlink holding `target` as given.
  void add_symlink(std::string_view path, std::string_view target, uid_type uid = 0, gid_type gid = 0) {
    node n;
    n.type = file_type::symlink;
    n.mode = 0777;
    n.uid = uid;
    n.gid = gid;
    n.data.assign(target.data(), target.size());
    setup_place(path, std::move(n));
  }

  /// Creates a fifo, socket or device node.
  void add_special(std::string_view path, file_type type, mode_type mode = 0644, uid_type uid = 0, gid_type gid = 0) {
    node n;
    n.type = type;
    n.mode = mode & 07777;
    n.uid = uid;
    n.gid = gid;
    setup_place(path, std::move(n));
  }

  /// Adds a second name for an existing non-directory (nlink + 1).
  void add_hard_link(std::string_view existing, std::string_view new_path) {
    auto w = walk(actor::root(), existing, false, "add_hard_link", walk_mode::setup);
    if (!w || !w->id || nodes_.at(w->id).type == file_type::directory) return;
    auto parent = normalize_path(new_path);
    if (!parent || *parent == "/") return;
    id_type dir = ensure_dir(parent_path(*parent));
    if (!dir) return;
    setup_link(dir, base_name(*parent), w->id);
  }

  /// Sets the immutable / append-only flags of the object itself.
  void set_flags(std::string_view path, file_flags flags) {
    if (node* n = setup_find(path)) n->flags = flags;
  }

  /// Makes `dir` the root of a mount with device id `dev`: it and everything below it (now and
  /// created later) report `dev`, and renames across it give EXDEV.
  void set_device(std::string_view dir, std::uint64_t dev) {
    auto w = walk(actor::root(), dir, true, "set_device", walk_mode::setup);
    if (!w || !w->id) return;
    std::vector<id_type> todo{w->id};
    while (!todo.empty()) {
      id_type id = todo.back();
      todo.pop_back();
      node& n = nodes_.at(id);
      n.dev = dev;
      for (const auto& child : n.children) todo.push_back(child.second);
    }
  }

  /// Limits the objects (files, directories, links) device `dev` holds, like tmpfs's
  /// `nr_inodes`: creating one more (mkdir, symlink, the temp of replace_file or replace_symlink)
  /// fails with ENOSPC, as on a full filesystem. The objects already there count (a hard-linked
  /// file once per name, as tmpfs charges each link), so a limit equal to their number makes the
  /// device full at once. An OverlayFs counts only what it has pulled from its lower layer.
  void set_inode_limit(std::uint64_t dev, std::size_t max_objects) { device_limits_[dev].max_objects = max_objects; }

  /// Limits the bytes of regular files on device `dev` (a small tmpfs's `size`; a hard-linked
  /// file counted once): writing a replace_file temp that would pass it fails with ENOSPC, and
  /// the temp is removed, as on a full disk. The in-place fallback is not limited.
  void set_space_limit(std::uint64_t dev, std::uint64_t max_bytes) { device_limits_[dev].max_bytes = max_bytes; }

  /// Marks a file as a mount point (a bind-mounted /etc/hosts): renaming onto or away from it
  /// and unlinking it give EBUSY, so `replace_file` needs `allow_in_place_fallback`.
  void set_mount_point(std::string_view file, bool on = true) {
    if (node* n = setup_find(file)) n->mount_point = on;
  }

  /// Bytes of the regular file at `path` (no symlink followed), or nullopt.
  std::optional<std::string> file_bytes(std::string_view path) const {
    const node* n = const_find(path);
    if (!n || n->type != file_type::regular || !n->data_loaded) return std::nullopt;
    return n->data;
  }

  /// lstat without permission checks or logging; nullopt when nothing is there.
  std::optional<file_status> status_of(std::string_view path) const {
    const node* n = const_find(path);
    if (!n) return std::nullopt;
    file_status st = status_of_node(*n);
    st.flags = n->flags;
    return st;
  }

  /// Fail like PosixFs rather than like the bare kernel (off by default): an intermediate
  /// symlink that someone other than root or the actor controls gives ELOOP, root changing an
  /// entry in a directory a non-root user can change gets `errc::unsafe_path`, and
  /// `replace_file` of an immutable or append-only file gives `errc::locked` instead of EPERM.
  /// Turn it on when the code under test will run over PosixFs (every hostcfg primitive does):
  /// the conformance suite (hostcfg/testing/conformance.hpp) checks this mode against PosixFs.
  void set_posix_rules(bool on = true) { posix_rules_ = on; }
  /// Whether `set_posix_rules` is on.
  bool posix_rules() const { return posix_rules_; }

  // ------------------------------------------------------------------------ operation log

  /// Every contract call (and every step of the replace sequences), in order.
  const std::vector<op_record>& op_log() const { return log_; }
  /// Empties the log and restarts the fault counter.
  void clear_log() {
    log_.clear();
    counter_ = 0;
  }
  /// Mutating records in the log, whether they succeeded or not.
  std::size_t mutating_ops() const {
    return static_cast<std::size_t>(
        std::count_if(log_.begin(), log_.end(), [](const op_record& r) { return r.mutating; }));
  }
  /// Logged operations since `clear_log`.
  std::size_t op_count() const { return log_.size(); }

  // ---------------------------------------------------------------------- fault injection

  /// The `n`-th logged operation from now (1-based) fails with `err` without doing anything;
  /// with `persistent`, so does every later one.
  void fail_at(std::size_t n, int err, bool persistent = false) {
    fault_ = fault{n, err, persistent};
    counter_ = 0;
  }
  /// Every logged operation after the `n`-th from now does nothing and fails with EIO: the
  /// process "died". Use `after_crash` to see what a reboot finds.
  void crash_after(std::size_t n) {
    crash_ = n;
    counter_ = 0;
  }
  /// No more faults.
  void disarm() {
    fault_.reset();
    crash_.reset();
  }

  // -------------------------------------------------------------------------- crash model

  /// What a reboot would find: the durable directory entries plus none, all, or a random
  /// subset (from `seed`) of the unsynced ones, with file data as written. The new tree has an
  /// empty log and no faults armed.
  MemoryFs after_crash(crash_keep keep, std::uint64_t seed = 0) const {
    MemoryFs out(*this);
    for (auto& entry : out.nodes_) {
      if (entry.second.type != file_type::directory) continue;
      auto durable = durable_.find(entry.first);
      entry.second.children = durable == durable_.end() ? std::map<std::string, id_type>{} : durable->second;
    }
    std::uint64_t state = seed;
    for (const auto& pending : pending_) {
      bool kept = keep == crash_keep::all || (keep == crash_keep::random_subset && (detail::splitmix64(state) & 1));
      if (!kept) continue;
      for (const auto& change : pending) {
        auto dir = out.nodes_.find(change.dir);
        if (dir == out.nodes_.end()) continue;
        if (change.id)
          dir->second.children[change.name] = change.id;
        else
          dir->second.children.erase(change.name);
      }
    }
    // Unsynced file data: kept, lost (the last synced bytes), or torn (a prefix of the new bytes).
    std::uint64_t data_state = seed ^ 0x5DEECE66Dull;
    for (auto& entry : out.nodes_) {
      node& n = entry.second;
      if (!n.data_unsynced) continue;
      n.data_unsynced = false;
      if (keep == crash_keep::all) continue;
      const std::uint64_t pick = keep == crash_keep::none ? 1 : detail::splitmix64(data_state) % 3;
      if (pick == 1) n.data = n.synced_data;
      else if (pick == 2) n.data.resize(static_cast<std::size_t>(detail::splitmix64(data_state) % (n.data.size() + 1)));
      n.synced_data.clear();
    }
    out.rebuild_after_crash();
    return out;
  }

  // ---------------------------------------------------------------------------- snapshots

  /// The whole tree as data (no symlink followed).
  snapshot take_snapshot() const {
    snapshot out;
    std::vector<std::pair<std::string, id_type>> todo{{"/", root_id}};
    while (!todo.empty()) {
      auto [path, id] = todo.back();
      todo.pop_back();
      const node& n = nodes_.at(id);
      out.entries[path] = entry_of(n);
      for (const auto& child : n.children) todo.emplace_back(join_path(path, child.first), child.second);
    }
    return out;
  }

  /// Readable differences, one line each, sorted by path: "added file /x (12 bytes, 0644
  /// 0:0)", "added link /usr/local/bin/docker -> /App/bin/docker", "removed dir /d",
  /// "changed /etc/hosts: 120 -> 160 bytes", "mode /x: 0644 -> 0600", "owner /x: 0:0 -> 501:20",
  /// "link /l: /a -> /b", "flags /x: none -> immutable", "type /x: file -> link". Empty when
  /// identical (inode numbers and times are not compared).
  static std::vector<std::string> diff(const snapshot& before, const snapshot& after) {
    std::vector<std::string> out;
    auto describe = [](const std::string& path, const snapshot_entry& e) {
      std::string text = std::string(detail::file_type_name(e.type)) + " " + path;
      if (e.type == file_type::symlink) return text + " -> " + e.data;
      text += " (";
      if (e.type == file_type::regular) text += std::to_string(e.size) + " bytes, ";
      return text + detail::octal_mode(e.mode) + " " + std::to_string(e.uid) + ":" + std::to_string(e.gid) + ")";
    };
    auto b = before.entries.begin();
    auto a = after.entries.begin();
    while (b != before.entries.end() || a != after.entries.end()) {
      if (a == after.entries.end() || (b != before.entries.end() && b->first < a->first)) {
        out.push_back("removed " + describe(b->first, b->second));
        ++b;
        continue;
      }
      if (b == before.entries.end() || a->first < b->first) {
        out.push_back("added " + describe(a->first, a->second));
        ++a;
        continue;
      }
      const std::string& path = a->first;
      const snapshot_entry& x = b->second;
      const snapshot_entry& y = a->second;
      if (x.type != y.type) {
        out.push_back("type " + path + ": " + detail::file_type_name(x.type) + " -> " + detail::file_type_name(y.type));
      } else {
        if (x.type == file_type::symlink && x.data != y.data) out.push_back("link " + path + ": " + x.data + " -> " + y.data);
        if (x.type == file_type::regular && (x.size != y.size || x.data != y.data || x.loaded != y.loaded)) {
          if (x.size != y.size)
            out.push_back("changed " + path + ": " + std::to_string(x.size) + " -> " + std::to_string(y.size) + " bytes");
          else
            out.push_back("changed " + path + ": " + std::to_string(y.size) + " bytes, different content");
        }
        if (x.mode != y.mode) out.push_back("mode " + path + ": " + detail::octal_mode(x.mode) + " -> " + detail::octal_mode(y.mode));
        if (x.uid != y.uid || x.gid != y.gid)
          out.push_back("owner " + path + ": " + std::to_string(x.uid) + ":" + std::to_string(x.gid) + " -> " +
                        std::to_string(y.uid) + ":" + std::to_string(y.gid));
        if (!(x.flags == y.flags))
          out.push_back("flags " + path + ": " + detail::flags_text(x.flags) + " -> " + detail::flags_text(y.flags));
      }
      ++a;
      ++b;
    }
    return out;
  }

 protected:
  using id_type = std::uint64_t;
  static constexpr id_type root_id = 1;

  /// An overlay over a lower backend (see overlay_fs.hpp): objects are pulled on first look.
  explicit MemoryFs(std::shared_ptr<detail::lower_source> source) : MemoryFs() {
    source_ = std::move(source);
    next_id_ = id_type(1) << 48;  // reported inode numbers of new objects must not collide with the lower's
    node& root = nodes_.at(root_id);
    root.lower_backed = true;
    root.lower_path = "/";
    auto pulled = source_->lookup(actor::root(), "/");
    if (pulled && *pulled) {
      adopt_status(root, (*pulled)->status);
      root.flags = (*pulled)->flags;
    }
    baseline_["/"] = entry_of(root);
  }

  /// The pulled state an OverlayFs started from (for `changes()`).
  snapshot baseline() const { return snapshot{baseline_}; }

 private:
  struct node {
    file_type type = file_type::regular;
    mode_type mode = 0;
    uid_type uid = 0;
    gid_type gid = 0;
    std::uint64_t dev = 1;
    std::uint64_t ino = 0;
    std::uint64_t nlink = 1;
    std::int64_t mtime = 0;
    std::int64_t ctime = 0;
    file_flags flags;
    bool mount_point = false;
    std::string data;  // file bytes or link target
    // Crash model: `data` written but not yet fsynced; `synced_data` is what a crash may fall
    // back to (the bytes of the last fsync; empty for a new file).
    bool data_unsynced = false;
    std::string synced_data;
    std::map<std::string, id_type> children;
    // Overlay bookkeeping: where the object lives in the lower layer and what was pulled.
    bool lower_backed = false;  // a directory whose unseen names must be looked up below
    bool complete = false;      // every lower name has been pulled
    std::set<std::string> known;
    bool data_loaded = true;
    std::uint64_t size_hint = 0;
    std::string lower_path;
  };

  /// Writes file data that a crash may lose until the next fsync of that file (crash model).
  static void write_unsynced(node& n, std::string_view bytes) {
    if (!n.data_unsynced) n.synced_data = n.data;
    n.data.assign(bytes.data(), bytes.size());
    n.data_unsynced = true;
  }

  struct entry_change {
    id_type dir;
    std::string name;
    id_type id;  // 0: the name is removed
  };
  using pending_op = std::vector<entry_change>;

  struct located {
    id_type parent = 0;
    std::string name;  // empty for "/"
    id_type id = 0;    // 0: nothing there
    std::string parent_path;  // canonical, symlinks resolved
  };

  struct fault {
    std::size_t n;
    int err;
    bool persistent;
  };

  // ----------------------------------------------------------------- logging and faults

  // Logs one operation (or step) and returns the errno it must fail with (0: go ahead).
  // `faultable` false: cleanup of our own temp, which only a crash stops.
  int step(std::string op, std::string_view path, std::string_view path2, bool mutating, bool faultable = true) {
    log_.push_back(op_record{std::move(op), std::string(path), std::string(path2), mutating, 0});
    ++counter_;
    int err = 0;
    if (crash_ && counter_ > *crash_) {
      err = EIO;
    } else if (faultable && fault_ && (counter_ == fault_->n || (fault_->persistent && counter_ > fault_->n))) {
      err = fault_->err;
    }
    if (err)
      log_.back().error = err;
    else if (mutating)
      ++now_;
    return err;
  }

  // Records an error on the latest log record and passes it on.
  tl::unexpected<error> mark(const error& e) {
    if (!log_.empty())
      log_.back().error = e.code.category() == std::system_category() ? e.code.value() : -e.code.value();
    return tl::unexpected<error>(e);
  }
  tl::unexpected<error> mark(tl::unexpected<error> e) { return mark(e.value()); }

  // --------------------------------------------------------------------------- nodes

  // What device `dev` holds: reachable objects and the bytes of its regular files.
  struct device_usage {
    std::size_t objects = 0;
    std::uint64_t bytes = 0;
  };
  device_usage usage_of(std::uint64_t dev) const {
    device_usage used;
    std::set<id_type> files_counted;  // a hard-linked file's bytes count once
    std::vector<id_type> todo{root_id};
    while (!todo.empty()) {
      const id_type id = todo.back();
      const node& n = nodes_.at(id);
      todo.pop_back();
      if (n.dev == dev) {
        ++used.objects;
        if (n.type == file_type::regular && files_counted.insert(id).second) used.bytes += current_size(n);
      }
      for (const auto& child : n.children) todo.push_back(child.second);
    }
    return used;
  }
  // True when device `dev` has an object limit (set_inode_limit) and is at it.
  bool no_free_inode(std::uint64_t dev) const {
    auto limit = device_limits_.find(dev);
    return limit != device_limits_.end() && usage_of(dev).objects >= limit->second.max_objects;
  }
  // True when `more` bytes would pass device `dev`'s space limit (set_space_limit).
  bool no_free_space(std::uint64_t dev, std::uint64_t more) const {
    auto limit = device_limits_.find(dev);
    return limit != device_limits_.end() && usage_of(dev).bytes + more > limit->second.max_bytes;
  }

  id_type add_node(node n) {
    id_type id = next_id_++;
    n.ino = id;
    n.nlink = n.type == file_type::directory ? 2 : 0;
    n.mtime = n.ctime = now_;
    nodes_.emplace(id, std::move(n));
    return id;
  }

  static std::uint64_t current_size(const node& n) {
    if (n.type == file_type::regular) return n.data_loaded ? n.data.size() : n.size_hint;
    if (n.type == file_type::symlink) return n.data.size();
    if (n.type == file_type::directory) return n.size_hint ? n.size_hint : 4096;
    return 0;
  }

  static file_status status_of_node(const node& n) {
    file_status st;
    st.type = n.type;
    st.mode = n.mode;
    st.uid = n.uid;
    st.gid = n.gid;
    st.size = current_size(n);
    st.dev = n.dev;
    st.ino = n.ino;
    st.nlink = n.nlink;
    st.mtime_ns = n.mtime;
    st.ctime_ns = n.ctime;
    return st;
  }

  static snapshot_entry entry_of(const node& n) {
    snapshot_entry e;
    e.type = n.type;
    e.mode = n.mode;
    e.uid = n.uid;
    e.gid = n.gid;
    e.flags = n.flags;
    e.loaded = n.data_loaded;
    e.size = n.type == file_type::regular || n.type == file_type::symlink ? current_size(n) : 0;
    if (n.type == file_type::regular || n.type == file_type::symlink) e.data = n.data;
    return e;
  }

  static void adopt_status(node& n, const file_status& st) {
    n.type = st.type;
    n.mode = st.mode & 07777;
    n.uid = st.uid;
    n.gid = st.gid;
    n.dev = st.dev;
    n.ino = st.ino;
    n.nlink = st.nlink;
    n.mtime = st.mtime_ns;
    n.ctime = st.ctime_ns;
    n.size_hint = st.size;
  }

  void touch_dir(id_type dir) {
    node& d = nodes_.at(dir);
    d.mtime = d.ctime = now_;
  }

  // Applies directory-entry changes as one transaction; `durable` (setup) also writes them to
  // the durable state, otherwise they wait for a directory sync.
  void apply_changes(const pending_op& changes, bool durable) {
    for (const auto& change : changes) {
      auto& children = nodes_.at(change.dir).children;
      auto it = children.find(change.name);
      if (it != children.end()) {
        node& old = nodes_.at(it->second);
        if (old.type != file_type::directory && old.nlink > 0) old.nlink--;
        children.erase(it);
      }
      if (change.id) {
        children[change.name] = change.id;
        node& now_linked = nodes_.at(change.id);
        if (now_linked.type != file_type::directory) now_linked.nlink++;
      }
      if (durable) {
        if (change.id)
          durable_[change.dir][change.name] = change.id;
        else
          durable_[change.dir].erase(change.name);
      }
    }
    if (!durable) pending_.push_back(changes);
  }

  // A directory sync: every pending transaction touching `dir` becomes durable, and with it
  // every earlier one that changed a name those touch (a name's history stays in order, so
  // "keep all" after a crash is exactly the state before it).
  void commit_dir(id_type dir) {
    std::vector<bool> selected(pending_.size(), false);
    std::set<std::pair<id_type, std::string>> names;
    for (std::size_t i = pending_.size(); i-- > 0;) {
      const pending_op& op = pending_[i];
      bool take = false;
      for (const auto& change : op)
        take = take || change.dir == dir || names.count({change.dir, change.name});
      if (!take) continue;
      selected[i] = true;
      for (const auto& change : op) names.insert({change.dir, change.name});
    }
    std::vector<pending_op> still;
    for (std::size_t i = 0; i < pending_.size(); ++i) {
      if (!selected[i]) {
        still.push_back(std::move(pending_[i]));
        continue;
      }
      for (const auto& change : pending_[i]) {
        if (change.id)
          durable_[change.dir][change.name] = change.id;
        else
          durable_[change.dir].erase(change.name);
      }
    }
    pending_ = std::move(still);
  }

  // After a crash: drop unreachable objects, recount links, make everything durable.
  void rebuild_after_crash() {
    std::map<id_type, std::uint64_t> refs;
    std::vector<id_type> todo{root_id};
    std::set<id_type> seen{root_id};
    while (!todo.empty()) {
      id_type id = todo.back();
      todo.pop_back();
      for (const auto& child : nodes_.at(id).children) {
        refs[child.second]++;
        if (seen.insert(child.second).second) todo.push_back(child.second);
      }
    }
    for (auto it = nodes_.begin(); it != nodes_.end();) {
      if (!seen.count(it->first)) {
        it = nodes_.erase(it);
        continue;
      }
      node& n = it->second;
      if (n.type == file_type::directory) {
        n.nlink = 2;
        for (const auto& child : n.children)
          if (nodes_.count(child.second) && nodes_.at(child.second).type == file_type::directory) n.nlink++;
      } else {
        n.nlink = refs[it->first];
      }
      ++it;
    }
    durable_.clear();
    for (const auto& entry : nodes_)
      if (entry.second.type == file_type::directory) durable_[entry.first] = entry.second.children;
    pending_.clear();
    log_.clear();
    counter_ = 0;
    fault_.reset();
    crash_.reset();
    locks_.held = std::make_shared<std::set<id_type>>();
  }

  // ------------------------------------------------------------------ permission checks

  static bool in_group(const actor& who, gid_type gid) {
    if (who.gid == gid) return true;
    return std::find(who.groups.begin(), who.groups.end(), gid) != who.groups.end();
  }

  // `want`: 4 read, 2 write, 1 execute/search (combinable), checked like generic_permission.
  static bool may(const actor& who, const node& n, unsigned want) {
    if (who.is_root()) return !(want & 1) || n.type == file_type::directory || (n.mode & 0111) != 0;
    unsigned bits;
    if (n.uid == who.uid)
      bits = (n.mode >> 6) & 7;
    else if (in_group(who, n.gid))
      bits = (n.mode >> 3) & 7;
    else
      bits = n.mode & 7;
    return (bits & want) == want;
  }

  // May `who` add a name to directory `dir`?
  result<void> check_dir_write(const actor& who, id_type dir, const char* op, const std::string& path) {
    const node& d = nodes_.at(dir);
    if (d.flags.immutable) return fail_errno(EPERM, op, path, {}, "the directory is immutable");
    if (!may(who, d, 3))
      return fail_errno(EACCES, op, path, {},
                        "the directory is " + detail::octal_mode(d.mode) + " " + std::to_string(d.uid) + ":" +
                            std::to_string(d.gid) + " and uid " + std::to_string(who.uid) + " cannot write there");
    return {};
  }

  // Sticky directory: only the owner of the entry or of the directory (or root) may remove it.
  result<void> check_sticky(const actor& who, id_type dir, id_type victim, const char* op, const std::string& path) {
    const node& d = nodes_.at(dir);
    if ((d.mode & 01000) && !who.is_root() && nodes_.at(victim).uid != who.uid && d.uid != who.uid)
      return fail_errno(EPERM, op, path, {}, "sticky directory: only the owner may remove or replace it");
    return {};
  }

  // May `who` remove the name `victim` from `dir` (may_delete)?
  result<void> check_delete(const actor& who, id_type dir, id_type victim, const char* op, const std::string& path) {
    if (auto ok = check_dir_write(who, dir, op, path); !ok) return ok;
    if (nodes_.at(dir).flags.append_only) return fail_errno(EPERM, op, path, {}, "the directory is append-only");
    if (auto ok = check_sticky(who, dir, victim, op, path); !ok) return ok;
    const node& v = nodes_.at(victim);
    if (v.flags.immutable || v.flags.append_only)
      return fail_errno(EPERM, op, path, {}, "immutable or append-only; hostcfg never clears that flag");
    return {};
  }

  // ---------------------------------------------------------------------- path walking

  // Groups whose write bit on a root-owned directory does not let a user change it (PosixFs's
  // rule): root/wheel (gid 0), and on macOS admin (gid 80) and daemon (gid 1, /var/run).
  static bool admin_gid(gid_type gid) {
#if defined(__APPLE__)
    return gid == 0 || gid == 1 || gid == 80;
#else
    return gid == 0;
#endif
  }

  // Someone other than root could add, remove or rename entries of directory `d`.
  static bool writable_by_non_root(const node& d) {
    return d.uid != 0 || ((d.mode & 020) && !admin_gid(d.gid)) || (d.mode & 002);
  }

  // PosixFs follows an intermediate symlink only when no one but root or the actor controls it:
  // the link and its directory owned by root or the actor, and the directory not writable by
  // others (unless sticky).
  static bool trusted_link(const actor& who, const node& link, const node& dir) {
    auto owner_ok = [&](uid_type uid) { return uid == 0 || uid == who.uid; };
    if (!owner_ok(link.uid) || !owner_ok(dir.uid)) return false;
    bool others_write = ((dir.mode & 020) && !admin_gid(dir.gid)) || (dir.mode & 002);
    return !others_write || (dir.mode & 01000);
  }

  static tl::unexpected<error> unsafe_dir(const char* op, const std::string& dir) {
    return fail(errc::unsafe_path, op, dir,
                "a user other than root can change this directory, so root will not write in it",
                "act as the user who owns it");
  }

  // How a walk treats what it passes: `plain` (reads), `mutating` (root refuses directories a
  // user can change, as PosixFs does), `setup` (the unchecked setup helpers: no trust rule).
  enum class walk_mode { plain, mutating, setup };

  // Resolves `path` like PosixFs on the kernel: search permission on every directory walked,
  // intermediate symlinks followed (40 hops, then ELOOP) only when trusted (`trusted_link`, else
  // ELOOP), the last one only if `follow_last`. `mutating` as root: every directory passed and
  // the one holding the entry must be one no user can change (`errc::unsafe_path`), except a
  // root-owned sticky directory passed into a root-owned child (/var/tmp/x).
  result<located> walk(const actor& who, std::string_view path, bool follow_last, const char* op,
                       walk_mode mode = walk_mode::plain) {
    std::string p(path);
    if (!is_normal_path(path))
      return fail(errc::invalid_input, op, p, "not an absolute normal path", "normalize_path() it first");
    std::vector<std::string> todo = path_components(path);
    std::reverse(todo.begin(), todo.end());  // a stack: back() is the next component
    std::vector<id_type> dirs{root_id};
    std::vector<std::string> names;
    int hops = 0;
    auto canonical = [&names] {
      std::string out;
      for (const auto& n : names) out += "/" + n;
      return out.empty() ? std::string("/") : out;
    };
    auto push_link = [&](const std::string& target) -> result<void> {
      if (++hops > 40) return fail_errno(ELOOP, op, p);
      if (target.empty()) return fail_errno(ENOENT, op, p);
      if (target.front() == '/') {
        dirs.resize(1);
        names.clear();
      }
      std::vector<std::string> parts;
      std::size_t pos = 0;
      while (pos <= target.size()) {
        std::size_t next = target.find('/', pos);
        if (next == std::string::npos) next = target.size();
        if (next > pos) parts.push_back(target.substr(pos, next - pos));
        pos = next + 1;
      }
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) todo.push_back(*it);
      return {};
    };
    if (todo.empty()) return located{root_id, "", root_id, "/"};
    while (!todo.empty()) {
      std::string comp = std::move(todo.back());
      todo.pop_back();
      id_type dir = dirs.back();
      if (!may(who, nodes_.at(dir), 1)) return fail_errno(EACCES, op, p, {}, "no search permission on " + canonical());
      if (comp == ".") continue;
      if (comp == "..") {
        if (dirs.size() > 1) {
          dirs.pop_back();
          names.pop_back();
        }
        continue;
      }
      auto child = lookup(who, dir, comp);
      if (!child) return tl::unexpected(child.error());
      const bool last = todo.empty();
      if (last && !(follow_last && *child && nodes_.at(*child).type == file_type::symlink)) {
        if (posix_rules_ && mode == walk_mode::mutating && who.is_root() && writable_by_non_root(nodes_.at(dir)))
          return unsafe_dir(op, canonical());
        return located{dir, comp, *child, canonical()};
      }
      if (!*child) return fail_errno(ENOENT, op, p);
      const node& c = nodes_.at(*child);
      if (c.type == file_type::symlink) {
        if (posix_rules_ && !last && mode != walk_mode::setup && !trusted_link(who, c, nodes_.at(dir)))
          return fail_errno(ELOOP, op, join_path(canonical(), comp), {},
                            "a symlink owned by uid " + std::to_string(c.uid) + " in a directory owned by uid " +
                                std::to_string(nodes_.at(dir).uid) +
                                "; hostcfg follows only symlinks that only root (or the acting user) controls");
        if (auto pushed = push_link(c.data); !pushed) return tl::unexpected(pushed.error());
        continue;
      }
      if (c.type != file_type::directory) return fail_errno(ENOTDIR, op, p);
      if (posix_rules_ && mode == walk_mode::mutating && who.is_root()) {
        const node& d = nodes_.at(dir);
        if (writable_by_non_root(d) && !(d.uid == 0 && (d.mode & 01000) && c.uid == 0)) return unsafe_dir(op, canonical());
      }
      dirs.push_back(*child);
      names.push_back(comp);
    }
    // The walk ended on "." or ".." from a link target: the result is the directory reached.
    id_type id = dirs.back();
    if (dirs.size() == 1) return located{root_id, "", root_id, "/"};
    std::string name = names.back();
    names.pop_back();
    return located{dirs[dirs.size() - 2], name, id, canonical()};
  }

  // The entry `name` in directory `dir` (0: none), pulled from the lower layer if needed.
  result<id_type> lookup(const actor& who, id_type dir, const std::string& name) {
    node& d = nodes_.at(dir);
    auto it = d.children.find(name);
    if (it != d.children.end()) return it->second;
    if (!source_ || !d.lower_backed || d.complete || d.known.count(name)) return id_type(0);
    const std::string lower = join_path(d.lower_path, name);
    auto pulled = source_->lookup(who, lower);
    if (!pulled) return tl::unexpected(pulled.error());
    nodes_.at(dir).known.insert(name);
    if (!*pulled) return id_type(0);
    node n;
    adopt_status(n, (*pulled)->status);
    n.lower_path = lower;
    if (n.type == file_type::directory) n.lower_backed = true;
    if (n.type == file_type::regular) n.data_loaded = false;
    if (n.type == file_type::symlink) n.data = (*pulled)->link_target;
    n.flags = (*pulled)->flags;
    id_type id = next_id_++;
    baseline_[lower] = entry_of(n);
    nodes_.emplace(id, std::move(n));
    nodes_.at(dir).children[name] = id;
    durable_[dir][name] = id;
    if (nodes_.at(id).type == file_type::directory) durable_[id];
    return id;
  }

  // Pulls every lower name of an overlay directory (for list_dir and the emptiness test).
  result<void> ensure_complete(const actor& who, id_type dir) {
    node& d = nodes_.at(dir);
    if (!source_ || !d.lower_backed || d.complete) return {};
    auto names = source_->list(who, d.lower_path);
    if (!names) return tl::unexpected(names.error());
    for (const auto& name : *names) {
      auto got = lookup(who, dir, name);
      if (!got) return tl::unexpected(got.error());
    }
    nodes_.at(dir).complete = true;
    return {};
  }

  // Reads the bytes of a pulled overlay file from the lower layer on first use.
  result<void> ensure_loaded(const actor& who, id_type id, std::size_t max_bytes) {
    node& n = nodes_.at(id);
    if (n.data_loaded || !source_) return {};
    auto bytes = source_->read(who, n.lower_path, max_bytes);
    if (!bytes) return tl::unexpected(bytes.error());
    node& again = nodes_.at(id);
    again.data = std::move(*bytes);
    again.data_loaded = true;
    auto base = baseline_.find(again.lower_path);
    if (base != baseline_.end() && base->second.type == file_type::regular && !base->second.loaded &&
        base->second.size == again.data.size()) {
      base->second.data = again.data;
      base->second.loaded = true;
    }
    return {};
  }

  // Removes leftovers of a crashed replace of `name` in `dir`: `.<name>.hostcfg-*` regular
  // files or links owned by the actor. Each removal is a logged step.
  result<void> remove_stale_temps(const actor& who, id_type dir, const std::string& name,
                                  const std::string& dir_path, const char* op) {
    const std::string prefix = "." + name + ".hostcfg-";
    // An overlay must see the lower layer's leftovers too, so a dry run counts what a real run
    // does; best effort, as an unreadable directory only hides leftovers.
    (void)ensure_complete(who, dir);
    std::vector<std::string> stale;
    for (const auto& child : nodes_.at(dir).children) {
      const node& n = nodes_.at(child.second);
      if (child.first.compare(0, prefix.size(), prefix) == 0 && n.uid == who.uid &&
          (n.type == file_type::regular || n.type == file_type::symlink))
        stale.push_back(child.first);
    }
    for (const auto& temp : stale) {
      std::string step_name = std::string(op) + ":remove_stale";
      std::string temp_path = join_path(dir_path, temp);
      if (int e = step(step_name, temp_path, {}, true)) return fail_errno(e, step_name, temp_path);
      apply_changes({{dir, temp, 0}}, false);
    }
    return {};
  }

  // `.<name>.hostcfg-<n>`, skipping names already taken (O_EXCL semantics).
  std::string pick_temp_name(id_type dir, const std::string& name) {
    const auto& children = nodes_.at(dir).children;
    for (;;) {
      std::string candidate = "." + name + ".hostcfg-" + std::to_string(++temp_counter_);
      if (!children.count(candidate)) return candidate;
    }
  }

  // ------------------------------------------------------------------------ setup helpers

  // Directory at `path` (created with missing parents, root:root 0755, durable), or 0.
  id_type ensure_dir(std::string_view path) {
    auto normal = normalize_path(path);
    if (!normal) return 0;
    id_type dir = root_id;
    std::string current;
    for (const auto& part : path_components(*normal)) {
      current += "/" + part;
      auto w = walk(actor::root(), current, true, "setup", walk_mode::setup);
      if (!w) return 0;
      if (w->id) {
        if (nodes_.at(w->id).type != file_type::directory) return 0;
        dir = w->id;
        continue;
      }
      node d;
      d.type = file_type::directory;
      d.mode = 0755;
      d.dev = nodes_.at(w->parent).dev;
      id_type id = add_node(std::move(d));
      durable_[id];
      apply_changes({{w->parent, w->name, id}}, true);
      nodes_.at(w->parent).nlink++;
      dir = id;
    }
    return dir;
  }

  void setup_link(id_type dir, const std::string& name, id_type id) { apply_changes({{dir, name, id}}, true); }

  void setup_place(std::string_view path, node n) {
    auto normal = normalize_path(path);
    if (!normal || *normal == "/") return;
    id_type dir = ensure_dir(parent_path(*normal));
    if (!dir) return;
    n.dev = nodes_.at(dir).dev;
    id_type id = add_node(std::move(n));
    setup_link(dir, base_name(*normal), id);
  }

  node* setup_find(std::string_view path) {
    auto w = walk(actor::root(), path, false, "setup", walk_mode::setup);
    if (!w || !w->id) return nullptr;
    return &nodes_.at(w->id);
  }

  // Lexical lookup without following the last component, for the const inspection helpers
  // (intermediate symlinks are followed).
  const node* const_find(std::string_view path) const {
    auto copy = const_cast<MemoryFs*>(this);
    // walk() only mutates through lookup() of an overlay; without a source it is read-only.
    if (source_) {
      auto normal = normalize_path(path);
      if (!normal) return nullptr;
      id_type id = root_id;
      for (const auto& part : path_components(*normal)) {
        const node& n = nodes_.at(id);
        auto it = n.children.find(part);
        if (it == n.children.end()) return nullptr;
        id = it->second;
      }
      return &nodes_.at(id);
    }
    auto w = copy->walk(actor::root(), path, false, "inspect", walk_mode::setup);
    if (!w || !w->id) return nullptr;
    return &nodes_.at(w->id);
  }

  result<file_status> stat_impl(const actor& who, std::string_view path, bool follow, const char* op) {
    std::string p(path);
    if (int e = step(op, path, {}, false)) return fail_errno(e, op, p);
    auto w = walk(who, path, follow, op);
    if (!w) return mark(w.error());
    if (!w->id) return mark(fail_errno(ENOENT, op, p));
    return status_of_node(nodes_.at(w->id));
  }

  bool posix_rules_ = false;
  bool exchange_unsupported_ = false;
  std::map<id_type, node> nodes_;
  id_type next_id_ = root_id + 1;
  struct device_limit {
    std::size_t max_objects = static_cast<std::size_t>(-1);
    std::uint64_t max_bytes = static_cast<std::uint64_t>(-1);
  };
  std::map<std::uint64_t, device_limit> device_limits_;  // set_inode_limit, set_space_limit
  std::int64_t now_ = 1700000000000000000;  // ns; advances 1 per mutating step
  std::uint64_t temp_counter_ = 0;
  // Crash model: durable entries per directory, and entry changes waiting for a sync.
  std::map<id_type, std::map<std::string, id_type>> durable_;
  std::vector<pending_op> pending_;
  // Log and faults.
  std::vector<op_record> log_;
  std::size_t counter_ = 0;
  std::optional<fault> fault_;
  std::optional<std::size_t> crash_;
  // Held locks, shared with the fs_lock objects that release them; a copy starts with none.
  struct lock_table {
    std::shared_ptr<std::set<id_type>> held = std::make_shared<std::set<id_type>>();
    lock_table() = default;
    lock_table(const lock_table&) {}
    lock_table& operator=(const lock_table&) {
      held = std::make_shared<std::set<id_type>>();
      return *this;
    }
    // A moved-from table is empty; `lock` makes a new set when it needs one.
    lock_table(lock_table&&) noexcept = default;
    lock_table& operator=(lock_table&&) noexcept = default;
  };
  lock_table locks_;
  // Overlay support.
  std::shared_ptr<detail::lower_source> source_;
  std::map<std::string, snapshot_entry> baseline_;
};

HOSTCFG_END_NAMESPACE
