#pragma once
/// @file
/// ManagedFile: a file with exact content and mode (and optionally owner). The smallest complete
/// primitive, and the model the others follow: probe reads once and decides per item, plan is
/// pure, apply re-checks each precondition (compare-and-swap against the version probe saw),
/// record keeps what revert needs, revert refuses to touch a file that drifted. Each write holds
/// `lock_for_edit` from its read to its rename, so another hostcfg run cannot slip in between
/// (RELIABILITY F6); the compare-and-swap stays against the probed version, because the whole
/// file is replaced: a file that changed since the decision was made needs a new decision.
///
///     ManagedFile conf{"/etc/app/app.conf", "key = value\n", 0644};
///     auto report = converge(ctx, conf);
///
/// An existing file that hostcfg did not create is a conflict unless `take_over` is set; then
/// its bytes and mode are kept in the record (the root-owned one when elevation was needed) and
/// restored by revert. Missing parent directories are created with `dir_mode`, each recorded, and
/// removed by revert when empty.

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "hostcfg/context.hpp"
#include "hostcfg/file_lock.hpp"
#include "hostcfg/protocol.hpp"
#include "hostcfg/record.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace detail {

/// The mode a file had before hostcfg replaced it, from its record item (0644 when the item
/// predates the field); a value that is not a mode is a corrupt record, never an exception.
inline result<mode_type> original_mode_of(const record_item& mine, const std::string& path, const char* what) {
  auto mode = mine.fields.count("original_mode") ? mine.number("original_mode", 07777) : 0644ul;
  if (!mode)
    return fail(errc::corrupt_record, "revert", path, "the record's original_mode is not a file mode",
                std::string("the ") + what + " was left as it is; restore it by hand");
  return static_cast<mode_type>(*mode);
}

/// The nearest existing ancestor directory of `path` (for "who may create this?").
template <class Fs>
result<std::pair<std::string, file_status>> nearest_existing_dir(Fs& fs, const actor& who, const std::string& path) {
  std::string dir = parent_path(path);
  while (true) {
    auto st = fs.stat(who, dir);
    if (st) {
      if (st->type != file_type::directory)
        return fail_errno(ENOTDIR, "probe", dir, {}, "a non-directory stands where a directory is needed");
      return std::make_pair(dir, *st);
    }
    if (!st.error().is_errno(ENOENT) || dir == "/") return tl::unexpected(st.error());
    dir = parent_path(dir);
  }
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  for (const auto& l : split_lines(text)) out.emplace_back(l.text);
  return out;
}
}  // namespace detail

/// A file with exact content and mode. See the file comment.
struct ManagedFile {
  /// `ManagedFile{"/etc/app.conf", "key = value\n", 0644}`; other fields are set by name.
  ManagedFile(std::string file_path, std::string file_content, mode_type file_mode = 0644)
      : path(std::move(file_path)), content(std::move(file_content)), mode(file_mode) {}

  std::string path;                ///< absolute, normal
  std::string content;             ///< exact bytes
  mode_type mode = 0644;           ///< exact mode
  std::optional<uid_type> uid;     ///< owner to enforce (default: whoever creates it)
  std::optional<gid_type> gid;
  bool take_over = false;          ///< replace a file we did not create (its bytes are kept for revert)
  /// Revert also accepts the file, as ours, when it holds exactly `content` with this mode (and
  /// owner, when set) although the record says other bytes: something of ours refreshed it
  /// outside this process (ProtectedFile: the privileged helper's policy refresh).
  bool refreshable = false;
  mode_type dir_mode = 0755;       ///< mode of missing parent directories we create
  std::size_t max_bytes = 16u << 20;

  static constexpr const char* kind_name = "managed_file";
  std::string id() const { return "file:" + path; }
  const char* kind() const { return kind_name; }

  /// The typed desired state handed to an elevated runner (elevation.hpp): parameters only.
  record_item desired_state() const {
    record_item item{id(), kind(), {}};
    item.fields = {{"path", path},         {"content", content},
                   {"mode", std::to_string(mode)}, {"take_over", take_over ? "1" : "0"},
                   {"dir_mode", std::to_string(dir_mode)}, {"refreshable", refreshable ? "1" : "0"}};
    if (uid) item.fields["uid"] = std::to_string(*uid);
    if (gid) item.fields["gid"] = std::to_string(*gid);
    return item;
  }

  /// Rebuilds a ManagedFile from `desired_state()` output, validating every parameter (the
  /// elevated runner treats it as untrusted input).
  static result<ManagedFile> from_desired_state(const record_item& item) {
    std::string file = item.get("path");
    if (!is_normal_path(file) || file == "/")
      return fail(errc::invalid_input, "read desired state", file, "path must be absolute and normal");
    auto m = item.number("mode", 07777);
    auto dm = item.number("dir_mode", 07777);
    if (!m || !dm) return fail(errc::invalid_input, "read desired state", file, "bad mode");
    ManagedFile f{file, item.get("content"), static_cast<mode_type>(*m)};
    f.dir_mode = static_cast<mode_type>(*dm);
    f.take_over = item.get("take_over") == "1";
    f.refreshable = item.get("refreshable") == "1";
    if (item.fields.count("uid")) {
      auto u = item.number("uid", 0xFFFFFFFEul);
      if (!u) return fail(errc::invalid_input, "read desired state", file, "bad uid");
      f.uid = static_cast<uid_type>(*u);
    }
    if (item.fields.count("gid")) {
      auto g = item.number("gid", 0xFFFFFFFEul);
      if (!g) return fail(errc::invalid_input, "read desired state", file, "bad gid");
      f.gid = static_cast<gid_type>(*g);
    }
    return f;
  }

  /// Whether record item `mine` makes the file with `bytes` ours. An item written ahead
  /// (`pending`, context::record_ahead) whose write never happened proves nothing: the file there
  /// may have been made by someone else since, so it is ours only if it holds what we wrote.
  static bool claims(const record_item* mine, const std::string& bytes) {
    if (!mine) return false;
    if (mine->get("pending") != "1") return true;
    return bytes == mine->get("written") ||
           (mine->fields.count("was_written") != 0 && bytes == mine->get("was_written"));
  }

  /// With `refreshable`: the file is exactly as this value wants it (content, mode, owner when
  /// set), so a refresh of ours wrote it, not someone else.
  bool refreshed(const file_contents& current) const {
    return refreshable && current.bytes == content && current.status.mode == mode &&
           (!uid || current.status.uid == *uid) && (!gid || current.status.gid == *gid);
  }

  /// Reads the file once and reports absent / matches / differs / conflict / locked / unreadable.
  template <class Fs, class Priv>
  result<probe_report> probe(context<Fs, Priv>& ctx, const ledgers& books) const {
    if (!is_normal_path(path)) return fail(errc::invalid_input, "probe", path, "not an absolute normal path");
    probe_report report{kind(), id(), {}};
    item_probe item;
    item.id = id();
    item.path = path;
    item.desired = describe(content, mode);
    actor user = ctx.user_actor();
    auto ancestor = detail::nearest_existing_dir(ctx.fs, user, path);
    if (!ancestor) {
      item.state = ancestor.error().is_errno(EACCES) ? item_state::unreadable : item_state::conflict;
      item.detail = ancestor.error().message();
      report.items.push_back(item);
      return report;
    }
    // Whether this file is ours is read from the record of its scope only: a file the user cannot
    // write is judged by the root-owned record, never by the user's (which they could forge).
    bool user_may_write = may_write_dir(user, ancestor->second);
    const record_item* mine = user_may_write ? books.user.find(id()) : books.system.find(id());
    auto current = ctx.read_for_probe(user, path, max_bytes);
    bool owner_change = false;
    if (!current) {
      const error& e = current.error();
      if (e.is_errno(ENOENT)) {
        item.state = item_state::absent;
      } else if (e.is_errno(EACCES)) {
        item.state = item_state::unreadable;
        item.detail = e.message();
      } else {
        auto st = ctx.fs.lstat(user, path);
        item.state = item_state::conflict;
        item.detail = st && st->type != file_type::regular ? "something that is not a regular file is there"
                                                           : e.message();
      }
    } else {
      const file_status& st = current->status;
      item.observed = st;
      item.current = describe(current->bytes, st.mode);
      owner_change = (uid && st.uid != *uid) || (gid && st.gid != *gid);
      if (current->bytes == content && st.mode == mode && !owner_change) {
        item.state = item_state::matches;
      } else if (st.flags.immutable || st.flags.append_only) {
        item.state = item_state::locked;
        item.detail = "the file is immutable or append-only (chflags/chattr); hostcfg never clears that";
      } else if (!claims(mine, current->bytes) && !take_over) {
        item.state = item_state::conflict;
        item.detail = "a file hostcfg did not create is there (set take_over to replace it, keeping its bytes)";
      } else {
        item.state = item_state::differs;
      }
    }
    if (item.state == item_state::absent || item.state == item_state::differs) {
      bool dir_ok = user_may_write;
      bool needs = !dir_ok || owner_change || (uid && *uid != user.uid) || (gid && *gid != user.gid);
      if (needs) {
        item.needs_elevation = true;
        item.elevation_reason = !dir_ok ? ancestor->first + " is not writable by uid " + std::to_string(user.uid)
                                        : "setting the owner needs admin rights";
      }
    }
    report.items.push_back(item);
    return report;
  }

  /// Pure: absent -> create, differs -> modify; everything else needs no change (or cannot have one).
  plan make_plan(const probe_report& probed) const {
    plan p{kind(), id(), {}};
    for (const auto& item : probed.items) {
      if (item.state != item_state::absent && item.state != item_state::differs) continue;
      change c;
      c.item_id = item.id;
      c.kind = item.state == item_state::absent ? change_kind::create : change_kind::modify;
      c.object = "file";
      c.path = path;
      c.before = item.current;
      c.after = item.desired;
      c.reason = "mode " + detail::mode_text(mode) + ", " + std::to_string(content.size()) + " bytes";
      c.needs_elevation = item.needs_elevation;
      c.elevation_reason = item.elevation_reason;
      c.expected = item.observed;
      p.changes.push_back(c);
    }
    return p;
  }

  /// Executes the plan: creates parents, writes the file atomically (compare-and-swap against the
  /// probed version, under `lock_for_edit`), records what revert needs.
  template <class Fs, class Priv>
  apply_report apply(context<Fs, Priv>& ctx, const plan& p, const grant& g, ledgers& books) const {
    apply_report report{kind(), id(), {}, {}};
    for (const auto& c : p.changes) {
      if (c.needs_elevation && !g.elevated) {
        report.events.push_back(event{c.item_id, event_kind::skipped, path, g.refusal(), std::nullopt, false});
        continue;
      }
      actor who = ctx.actor_for(c.needs_elevation);
      auto done = apply_one(ctx, c, who, books.scope(c.needs_elevation), books);
      if (done) {
        report.events.push_back(event{c.item_id, event_kind::changed, path,
                                      std::string(change_kind_done(c.kind)) + " (" + c.reason + ")", std::nullopt,
                                      c.needs_elevation});
      } else {
        report.events.push_back(event{c.item_id, event_kind::failed, path, done.error().message(), done.error(),
                                      c.needs_elevation});
      }
    }
    return report;
  }

  /// What revert would do, from the records alone.
  plan revert_plan(const ledgers& books) const {
    plan p{kind(), id(), {}};
    bool privileged = books.system.find(id()) != nullptr;
    const record_item* mine = books.find(id());
    if (!mine) return p;
    change c;
    c.item_id = id();
    c.object = "file";
    c.path = path;
    c.needs_elevation = privileged;
    c.elevation_reason = privileged ? "it was written with admin rights" : "";
    if (mine->get("created") == "1") {
      c.kind = change_kind::remove;
      c.reason = "hostcfg created it";
    } else {
      c.kind = change_kind::modify;
      c.reason = "restore the bytes it had before hostcfg took it over";
    }
    p.changes.push_back(c);
    return p;
  }

  /// Undoes what the record says: removes a file we created (and the directories we made, when
  /// empty) or restores the bytes and mode of a file we took over. Refuses a file that drifted.
  template <class Fs, class Priv>
  apply_report revert(context<Fs, Priv>& ctx, const grant& g, ledgers& books) const {
    apply_report report{kind(), id(), {}, {}};
    bool privileged = books.system.find(id()) != nullptr;
    const record_item* found = books.find(id());
    if (!found) return report;
    record_item mine = *found;
    if (privileged && !g.elevated) {
      report.events.push_back(event{id(), event_kind::skipped, path, g.refusal(), std::nullopt, false});
      return report;
    }
    actor who = ctx.actor_for(privileged);
    // Held from the drift check to the write, so the bytes judged are the bytes replaced.
    auto held = lock_for_edit(ctx.fs, who, path);
    if (!held && !held.error().is_errno(ENOENT)) {  // no directory: the file is gone already
      report.events.push_back(event{id(), event_kind::failed, path, held.error().message(), held.error(), privileged});
      return report;
    }
    auto current = ctx.fs.read_file(who, path, max_bytes);
    // A crash between the write-ahead of this item (context::record_ahead) and its change leaves
    // the file as it was: nothing to undo, and the item goes.
    const bool created = mine.get("created") == "1";
    const bool never_changed = created ? !current && current.error().is_errno(ENOENT)
                                       : current && current->bytes == mine.get("original") &&
                                             std::to_string(current->status.mode) == mine.get("original_mode");
    if (never_changed) {
      if (created && !mine.get("dirs").empty()) {  // those made before the crash, and its temp
        remove_stale_temps(ctx.fs, who, path);
        remove_made_dirs(ctx, who, mine.get("dirs"));
      }
      books.scope(privileged).erase(id());
      report.events.push_back(event{id(), event_kind::kept, path,
                                    created ? "already gone" : "already has the bytes it had before hostcfg",
                                    std::nullopt, privileged});
      return report;
    }
    const bool ours = current && (current->bytes == mine.get("written") ||
                                  (mine.fields.count("was_written") != 0 && current->bytes == mine.get("was_written")));
    if (current && !ours && mine.get("pending") == "1" && !refreshed(*current)) {
      // Written ahead, never written: the file there now is someone else's.
      books.scope(privileged).erase(id());
      report.events.push_back(event{id(), event_kind::kept, path,
                                    "left alone: hostcfg's write never happened and the file there is not its",
                                    std::nullopt, privileged});
      return report;
    }
    if (current && !ours && !refreshed(*current)) {
      auto drift = fail(errc::drifted, "revert", path, "the file changed since hostcfg wrote it",
                        "it was left as it is; remove it by hand if it is no longer needed")
                       .value();
      report.events.push_back(event{id(), event_kind::skipped, path, drift.message(), drift, privileged});
      return report;
    }
    result<void> undone;
    if (!current && !current.error().is_errno(ENOENT)) {
      undone = tl::unexpected(current.error());
    } else if (created) {
      undone = unlink_durably(ctx.fs, who, path);
      if (undone && !mine.get("dirs").empty()) {
        remove_stale_temps(ctx.fs, who, path);  // a crashed write's temp would keep them
        remove_made_dirs(ctx, who, mine.get("dirs"));
      }
    } else {
      replace_options options;
      options.expected = current ? std::optional<file_status>(current->status) : std::nullopt;
      auto original_mode = detail::original_mode_of(mine, path, "file");
      if (!original_mode) {
        undone = tl::unexpected(original_mode.error());
      } else {
        options.mode = *original_mode;
        options.force_mode = true;
        auto written = ctx.replace_file(who, path, mine.get("original"), options);
        if (!written) undone = tl::unexpected(written.error());
      }
    }
    if (!undone) {
      report.events.push_back(event{id(), event_kind::failed, path, undone.error().message(), undone.error(),
                                    privileged});
      return report;
    }
    books.scope(privileged).erase(id());
    report.events.push_back(event{id(), event_kind::changed, path,
                                  mine.get("created") == "1" ? "removed" : "restored the original bytes", std::nullopt,
                                  privileged});
    return report;
  }

 private:
  static std::string describe(const std::string& bytes, mode_type m) {
    return "mode " + detail::mode_text(m) + "\n" + bytes;
  }

  template <class Ctx>
  result<void> apply_one(Ctx& ctx, const change& c, const actor& who, record& scope, const ledgers& books) const {
    // Only the record of this change's scope: a forged user record never reaches root's undo data.
    const record_item* previous = books.scope(c.needs_elevation).find(id());
    if (previous && previous->get("pending") == "1") {
      // Written ahead by a run that ended before its write: its undo data holds only if the file
      // is still as that run left it (absent for a create, our bytes); else start afresh.
      auto now = ctx.fs.read_file(who, path, max_bytes);
      const bool created = previous->get("created") == "1";
      const bool as_left = now ? claims(previous, now->bytes) || (!created && now->bytes == previous->get("original"))
                               : created && now.error().is_errno(ENOENT);
      if (!as_left) previous = nullptr;
    }
    record_item item = previous ? *previous : record_item{id(), kind(), {}};
    if (!previous) item.fields["created"] = c.kind == change_kind::create ? "1" : "0";
    item.fields.erase("pending");
    // Recorded before anything changes (context::record_ahead): the original bytes, the
    // directories made and that the file is ours survive a crash at any point after.
    // `was_written` lets a revert recognise the bytes we wrote before, should the crash come
    // first. (An item written ahead by a run that crashed may name bytes never written: then the
    // bytes it replaced are the ones on disk.)
    const bool unfinished = item.get("written") == content && item.fields.count("was_written") != 0;
    const std::string was_written = unfinished ? item.get("was_written") : item.get("written");
    const std::string dirs_before = item.get("dirs");
    item.fields["written"] = content;
    item.fields["mode"] = std::to_string(mode);
    item.fields.erase("was_written");
    auto record_first = [&](const std::vector<std::string>& dirs) {
      record_item ahead = item;
      ahead.fields["dirs"] = dirs_before;
      for (const auto& d : dirs) ahead.fields["dirs"] += d + "\n";
      if (previous && was_written != content) ahead.fields["was_written"] = was_written;
      ahead.fields["pending"] = "1";  // until the final item replaces it (see `claims`)
      return ctx.record_ahead(books, c.needs_elevation, {ahead});
    };
    // Missing directories: the file cannot exist yet, so the item is complete before the mkdirs.
    auto planned = missing_parents(ctx.fs, who, parent_path(path));
    if (!planned) return tl::unexpected(planned.error());
    if (!planned->empty())
      if (auto noted = record_first(*planned); !noted) return tl::unexpected(noted.error());
    auto made = make_parents(ctx.fs, who, parent_path(path), dir_mode);
    if (!made) return tl::unexpected(made.error());
    item.fields["dirs"] = dirs_before;
    for (const auto& d : *made) item.fields["dirs"] += d + "\n";
    auto undo_made = [&] {
      std::string text;
      for (const auto& d : *made) text += d + "\n";
      if (!text.empty()) remove_made_dirs(ctx, who, text);
    };
    // After make_parents: the directory locked is the one that now exists. Held to the rename.
    auto held = lock_for_edit(ctx.fs, who, path);
    if (!held) {
      undo_made();
      ctx.withdraw_ahead(c.needs_elevation, id());
      return tl::unexpected(held.error());
    }
    if (!previous && c.kind == change_kind::modify && c.expected) {
      // Taking over a file we did not create: keep its bytes so revert can restore them.
      auto original = ctx.fs.read_file(who, path, max_bytes);
      if (!original) return tl::unexpected(original.error());
      if (!same_version(original->status, *c.expected))
        return fail(errc::changed_since_probe, "apply", path, "the file changed since it was probed", "run again");
      item.fields["original"] = original->bytes;
      item.fields["original_mode"] = std::to_string(original->status.mode);
    }
    if (auto noted = record_first(*made); !noted) {
      undo_made();
      return tl::unexpected(noted.error());
    }
    replace_options options;
    options.expected = c.expected;
    options.expect_absent = c.kind == change_kind::create;
    options.mode = mode;
    // The mode goes on the temp file before the rename: never a chmod by path afterwards, where a
    // link swapped in could take it.
    options.force_mode = true;
    options.uid = uid ? uid : std::optional<uid_type>(ctx.user_actor().uid);
    options.gid = gid ? gid : std::optional<gid_type>(ctx.user_actor().gid);
    if (!uid && !gid && who.is_root() && !c.needs_elevation) options.uid.reset(), options.gid.reset();
    if (!uid && !gid && c.needs_elevation) options.uid.reset(), options.gid.reset();
    auto written = ctx.replace_file(who, path, content, options);
    if (!written) {
      undo_made();
      ctx.withdraw_ahead(c.needs_elevation, id());  // a failed replace changed nothing
      return tl::unexpected(written.error());
    }
    if (c.kind == change_kind::modify) {
      // Same bytes and the backend skipped the write: fix the mode here. An existing file keeps
      // its owner through a replace, so a wanted owner is set here too (lchown: never a link's
      // target).
      auto st = ctx.fs.lstat(who, path);
      if (!st) return tl::unexpected(st.error());
      if (!written->changed && st->mode != mode) {
        auto chmodded = ctx.fs.chmod(who, path, mode);
        if (!chmodded) return chmodded;
      }
      bool owner_ok = (!uid || st->uid == *uid) && (!gid || st->gid == *gid);
      if (!owner_ok) {
        auto chowned = ctx.fs.lchown(who, path, uid ? *uid : st->uid, gid ? *gid : st->gid);
        if (!chowned) return chowned;
      }
    }
    scope.put(item);
    return {};
  }

  template <class Ctx>
  static void remove_made_dirs(Ctx& ctx, const actor& who, const std::string& dirs) {
    remove_dirs_made(ctx.fs, who, dirs);
  }
};

HOSTCFG_END_NAMESPACE
