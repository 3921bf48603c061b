#pragma once
/// @file
/// ShellProfilePathEdit (issue 5): puts a directory on the user's PATH by adding a block to the
/// startup files the user's login shell reads (format/shell_profile.hpp chooses them and writes
/// the block in each file's dialect). The seed's fallback when the admin prompt is declined.
///
///     ShellProfilePathEdit path{"/Users/ann/.docker/bin"};
///     auto report = converge(ctx, fallback(system_links, user_links), path);
///
/// Per file (one item each, id "profile:<file>": the app's block in that file), probe reports:
/// | found | state | plan |
/// |---|---|---|
/// | our block, exactly as we write it, recorded | matches | - |
/// | our block, different (older format, old directory), or not yet recorded | differs | rewrite / record it in place |
/// | no block, file missing | absent | create the file 0644 owned by the user (parents 0700) |
/// | no block; the user's own lines add the directory | matches (detail names the line) | - unless `insist` |
/// | no block; the user's lines cannot be modelled, or do not add it | absent | add the block |
/// | the record says we wrote a block and it is gone | locked: the user opted out | - unless `re_add` |
/// | immutable / append-only / read-only file | locked ("locked by the user") | - |
/// | a file (or symlink target) not owned by the user, a dangling link, broken markers | conflict | - |
///
/// Everything runs as the user (also when the installer is root acting `--user NAME`), so a file
/// hostcfg creates in a home is the user's. A dotfile that is a symlink (stow, chezmoi, yadm) is
/// edited at its target, which must be the user's; the link stays. Every edit holds
/// `lock_for_edit` from its read to its rename and computes the new bytes from that read, so two
/// apps adding their blocks to one profile at once both land (RELIABILITY F6): a file another
/// writer changed since the probe is judged again, under the lock, as probe would judge it, and
/// edited when it still needs our block. Writes are atomic replaces with a compare-and-swap
/// against the version read under the lock (an editor that does not take the lock and saves in
/// between is never overwritten: `changed since probe`). The record keeps the exact bytes written;
/// revert removes exactly that block (and a file we created, when nothing else is left in it) and
/// reports a block the user changed instead of removing it. Apply's report notes the command that
/// reloads open shells.

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "hostcfg/context.hpp"
#include "hostcfg/file_lock.hpp"
#include "hostcfg/format/shell_profile.hpp"
#include "hostcfg/protocol.hpp"
#include "hostcfg/record.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// Puts one directory on PATH through the user's shell startup files. See the file comment.
struct ShellProfilePathEdit {
  /// `ShellProfilePathEdit{"/Users/ann/.docker/bin"}`; other fields are set by name.
  explicit ShellProfilePathEdit(std::string directory) : dir(std::move(directory)) {}

  std::string dir;                    ///< absolute directory to put on PATH
  std::string shell_override;         ///< a shell name/path to use instead of the login shell
  std::vector<std::string> files;     ///< explicit files to edit instead (dialect from the name)
  bool insist = false;                ///< add the block even when the user's own line adds `dir`
  bool re_add = false;                ///< add the block again although the user removed it
  mode_type file_mode = 0644;         ///< mode of a file we create
  mode_type dir_mode = 0700;          ///< mode of missing parent directories (fish conf.d)
  std::size_t max_bytes = 4u << 20;   ///< a startup file larger than this is not edited

  static constexpr const char* kind_name = "shell_profile_path_edit";
  std::string id() const { return "shell_path:" + dir; }
  const char* kind() const { return kind_name; }

  /// Chooses the files and reads each once.
  template <class Fs, class Priv>
  result<probe_report> probe(context<Fs, Priv>& ctx, const ledgers& books) const {
    auto normal = validate_path_dir(dir);
    if (!normal) return tl::unexpected(normal.error());
    const user_identity& user = ctx.priv.user();
    actor who = ctx.user_actor();
    auto targets = chosen_files(ctx);
    if (!targets) return tl::unexpected(targets.error());
    probe_report report{kind(), id(), {}};
    for (const auto& f : targets->files) report.items.push_back(probe_file(ctx, books, user, who, f));
    return report;
  }

  /// Pure: absent -> create (the file or the block), differs -> modify.
  plan make_plan(const probe_report& probed) const {
    plan p{kind(), id(), {}};
    for (const auto& item : probed.items) {
      if (item.state != item_state::absent && item.state != item_state::differs) continue;
      change c;
      c.item_id = item.id;
      c.kind = item.state == item_state::absent ? change_kind::create : change_kind::modify;
      c.object = item.observed ? "profile block in" : "profile file";
      c.path = item.path;
      c.before = item.current;
      c.after = item.desired;
      c.reason = "put " + dir + " on PATH" + (item.detail.empty() ? "" : "; " + item.detail);
      c.expected = item.observed;
      p.changes.push_back(c);
    }
    return p;
  }

  /// Writes each planned file (under `lock_for_edit`, from a read taken under it, compare-and-swap
  /// against that read) and records the exact bytes. One failed file does not stop the others.
  template <class Fs, class Priv>
  apply_report apply(context<Fs, Priv>& ctx, const plan& p, const grant&, ledgers& books) const {
    apply_report report{kind(), id(), {}, {}};
    bool wrote = false;
    for (const auto& c : p.changes) {
      auto done = apply_one(ctx, c, books);
      if (done) {
        wrote = wrote || *done;
        report.events.push_back(event{c.item_id, event_kind::changed, c.path,
                                      *done ? (c.expected ? "added the PATH block" : "created with the PATH block")
                                            : "recorded the PATH block already there",
                                      std::nullopt, false});
      } else {
        event e{c.item_id, event_kind::failed, c.path, done.error().message(), done.error(), false};
        if (done.error().is(errc::locked)) e.kind = event_kind::skipped;
        report.events.push_back(e);
      }
    }
    if (wrote) {
      auto targets = chosen_files(ctx);
      std::string reload = targets ? targets->reload_command : std::string("open a new terminal");
      report.notes.push_back("open shells do not see the new PATH until reloaded: run `" + reload +
                             "` in each, or open a new terminal");
    }
    return report;
  }

  /// What revert would do, from the records alone.
  plan revert_plan(const ledgers& books) const {
    plan p{kind(), id(), {}};
    for (const auto& entry : books.user.items) {
      const record_item& item = entry.second;
      if (!owns(item)) continue;
      change c;
      c.item_id = item.id;
      c.kind = item.get("created") == "1" ? change_kind::remove : change_kind::modify;
      c.object = "profile block in";
      c.path = item.get("file");
      c.before = item.get("block");
      c.reason = "remove the PATH block hostcfg added";
      p.changes.push_back(c);
    }
    return p;
  }

  /// Removes exactly the blocks the record lists; a changed block is reported and left.
  template <class Fs, class Priv>
  apply_report revert(context<Fs, Priv>& ctx, const grant&, ledgers& books) const {
    apply_report report{kind(), id(), {}, {}};
    std::vector<record_item> mine;
    for (const auto& entry : books.user.items)
      if (owns(entry.second)) mine.push_back(entry.second);
    actor who = ctx.user_actor();
    for (const auto& item : mine) {
      std::string file = item.get("file");
      // The block is removed from the bytes read under the lock: another app's block added
      // meanwhile stays, and no other hostcfg run can write between this read and the rename.
      auto held = lock_for_edit(ctx.fs, who, file);
      if (!held && !held.error().is_errno(ENOENT)) {
        report.events.push_back(event{item.id, event_kind::failed, file, held.error().message(), held.error(), false});
        continue;
      }
      auto current = ctx.fs.read_file(who, file, max_bytes);
      if (!current) {
        if (current.error().is_errno(ENOENT)) {
          // Directories made for a file we were creating (written ahead; a crash may have come
          // before the file): removed while empty.
          if (item.get("created") == "1") {
            remove_stale_temps(ctx.fs, who, file);  // a crash between the temp and its rename
            remove_made_dirs(ctx, who, item.get("dirs"));
          }
          books.user.erase(item.id);
          report.events.push_back(event{item.id, event_kind::kept, file, "the file is gone; nothing to remove",
                                        std::nullopt, false});
        } else {
          report.events.push_back(
              event{item.id, event_kind::failed, file, current.error().message(), current.error(), false});
        }
        continue;
      }
      profile_edit_record rec = to_edit_record(item);
      auto undone = revert_profile_block(current->bytes, rec, ctx.markers);
      if (!undone && undone.error().is(errc::drifted) && item.fields.count("was_block") != 0) {
        rec.block = item.get("was_block");  // written ahead; the rewrite of our block never landed
        undone = revert_profile_block(current->bytes, rec, ctx.markers);
      }
      if (!undone) {
        bool drift = undone.error().is(errc::drifted);
        error e = undone.error();
        e.path = file;
        report.events.push_back(
            event{item.id, drift ? event_kind::skipped : event_kind::failed, file, e.message(), e, false});
        continue;
      }
      if (!undone->removed) {
        books.user.erase(item.id);
        report.events.push_back(event{item.id, event_kind::kept, file, "the user had already removed the block",
                                      std::nullopt, false});
        continue;
      }
      result<void> written;
      bool removed_file = false;
      if (item.get("created") == "1" && undone->bytes.empty()) {
        written = unlink_durably(ctx.fs, who, file);
        removed_file = true;
        if (written) remove_made_dirs(ctx, who, item.get("dirs"));
      } else {
        replace_options options;
        options.expected = current->status;
        auto r = ctx.replace_file(who, file, undone->bytes, options);
        if (!r) written = tl::unexpected(r.error());
      }
      if (!written) {
        report.events.push_back(
            event{item.id, event_kind::failed, file, written.error().message(), written.error(), false});
        continue;
      }
      books.user.erase(item.id);
      report.events.push_back(event{item.id, event_kind::changed, file,
                                    removed_file ? "removed the file hostcfg created" : "removed the PATH block",
                                    std::nullopt, false});
    }
    return report;
  }

 private:
  // One app owns one block per file (the markers name the app, not the directory), so the item
  // is keyed by the file: a new version with another directory rewrites the same item.
  bool owns(const record_item& item) const {
    return item.primitive == kind_name && item.id.compare(0, 8, "profile:") == 0;
  }
  static std::string item_id(const std::string& file) { return "profile:" + file; }

  template <class Ctx>
  result<profile_choice> chosen_files(Ctx& ctx) const {
    const user_identity& user = ctx.priv.user();
    if (!files.empty()) {
      profile_choice choice;
      choice.shell = base_name(shell_override.empty() ? user.shell : shell_override);
      for (const auto& f : files) {
        auto normal = normalize_path(f);
        if (!normal) return tl::unexpected(normal.error());
        choice.files.push_back({*normal, dialect_for_file(*normal), false});
      }
      choice.reload_command = "exec " + (choice.shell.empty() ? std::string("$SHELL") : choice.shell);
      return choice;
    }
    actor who = ctx.user_actor();
    return choose_profile_files(
        user, ctx.app_id, [&](const std::string& p) { return ctx.fs.lstat(who, p).has_value(); }, shell_override);
  }

  path_block_spec spec_for(const std::string& app_id, const section_markers& markers, const user_identity& user,
                           shell_dialect d) const {
    return {app_id, dir, user.home, d, markers};
  }

  static profile_edit_record to_edit_record(const record_item& item) {
    profile_edit_record rec;
    std::string k = item.get("kind");
    rec.kind = k == "replaced"   ? profile_edit_record::kind_t::replaced
               : k == "inserted" ? profile_edit_record::kind_t::inserted
                                 : profile_edit_record::kind_t::unchanged;
    rec.lead = item.get("lead");
    rec.block = item.get("block");
    rec.previous = item.get("previous");
    return rec;
  }

  /// Follows a dotfile symlink chain to the file to edit (the link stays).
  template <class Fs>
  static result<std::string> resolve_dotfile(Fs& fs, const actor& who, std::string path) {
    for (int hop = 0; hop < 16; ++hop) {
      auto st = fs.lstat(who, path);
      if (!st || st->type != file_type::symlink) return path;
      auto target = fs.readlink(who, path);
      if (!target) return tl::unexpected(target.error());
      auto next = resolve_link_target(path, *target);
      if (!next) return tl::unexpected(next.error());
      path = *next;
    }
    return fail_errno(ELOOP, "resolve dotfile", path);
  }

  template <class Ctx>
  item_probe probe_file(Ctx& ctx, const ledgers& books, const user_identity& user, const actor& who,
                        const profile_file& f) const {
    item_probe item;
    item.id = item_id(f.path);
    item.path = f.path;
    path_block_spec spec = spec_for(ctx.app_id, ctx.markers, user, f.dialect);
    auto block = render_path_block(spec);
    if (!block) {
      item.state = item_state::conflict;
      item.detail = block.error().message();
      return item;
    }
    item.desired = *block;
    const record_item* mine = books.user.find(item.id);
    // Written ahead by a run that ended before its write (`pending`): no block of ours may be
    // there yet, and its absence is no opt-out.
    const bool pending = mine && mine->get("pending") == "1";
    const bool opted_out_if_absent = mine && !pending && !re_add;
    auto real = resolve_dotfile(ctx.fs, who, f.path);
    if (!real) {
      item.state = item_state::conflict;
      item.detail = real.error().message();
      return item;
    }
    if (*real != f.path) {
      item.path = *real;
      item.detail = "edited at its symlink target " + *real;
    }
    auto current = ctx.fs.read_file(who, *real, max_bytes);
    if (!current) {
      const error& e = current.error();
      if (e.is_errno(ENOENT)) {
        if (*real != f.path) {
          item.state = item_state::conflict;
          item.detail = f.path + " is a dangling symlink to " + *real + "; hostcfg does not create its target";
        } else if (opted_out_if_absent) {
          item.state = item_state::locked;
          item.detail = "the user removed the file hostcfg had added a PATH block to: opt-out respected";
        } else {
          item.state = item_state::absent;
        }
      } else if (e.is_errno(EACCES)) {
        item.state = item_state::unreadable;
        item.detail = e.message();
      } else {
        item.state = item_state::conflict;
        item.detail = e.message();
      }
      return item;
    }
    const file_status& st = current->status;
    item.observed = st;
    if (st.uid != user.uid) {
      item.state = item_state::conflict;
      item.detail = *real + " is owned by uid " + std::to_string(st.uid) + ", not by " + user.name +
                    "; hostcfg edits only the user's own files";
      return item;
    }
    auto probed = probe_profile(current->bytes, spec);
    if (!probed) {
      item.state = item_state::conflict;
      item.detail = probed.error().message();
      return item;
    }
    if (probed->block) item.current = current->bytes.substr(probed->block->begin, probed->block->end - probed->block->begin);
    bool locked = st.flags.immutable || st.flags.append_only || !(st.mode & 0200);
    switch (probed->state) {
      case profile_state::current:
        item.state = mine && !pending ? item_state::matches : item_state::differs;
        if (!mine || pending) item.detail = "our block is there but not recorded (an interrupted run): record it";
        break;
      case profile_state::outdated: item.state = item_state::differs; break;
      case profile_state::on_path_already:
        if (opted_out_if_absent) {
          item.state = item_state::locked;
          item.detail = "the user removed the PATH block hostcfg added: opt-out respected";
        } else if (insist) {
          item.state = item_state::absent;
          item.detail = "already on PATH (" + probed->user_lines.detail + "), added anyway";
        } else {
          item.state = item_state::matches;
          item.detail = "already on PATH: " + probed->user_lines.detail;
        }
        break;
      case profile_state::absent:
      case profile_state::unknown:
        if (opted_out_if_absent) {
          item.state = item_state::locked;
          item.detail = "the user removed the PATH block hostcfg added: opt-out respected";
        } else {
          item.state = item_state::absent;
          if (probed->state == profile_state::unknown)
            item.detail = "whether the file already puts it on PATH cannot be modelled (" +
                          probed->user_lines.detail + ")";
        }
        break;
    }
    if (locked && (item.state == item_state::absent || item.state == item_state::differs)) {
      item.state = item_state::locked;
      item.detail = std::string("locked by the user (") +
                    (st.flags.immutable ? "immutable" : st.flags.append_only ? "append-only" : "read-only") +
                    "); hostcfg does not change it and does not retry";
    }
    return item;
  }

  /// Writes one file; true when bytes were written, false when only the record was updated.
  template <class Ctx>
  result<bool> apply_one(Ctx& ctx, const change& c, ledgers& books) const {
    const user_identity& user = ctx.priv.user();
    actor who = ctx.user_actor();
    shell_dialect d = shell_dialect::posix;
    auto targets = chosen_files(ctx);
    if (!targets) return tl::unexpected(targets.error());
    std::string listed;
    for (const auto& f : targets->files)
      if (item_id(f.path) == c.item_id) {
        d = f.dialect;
        listed = f.path;
      }
    if (listed.empty()) return fail(errc::changed_since_probe, "apply", c.path, "the file choice changed", "run again");
    path_block_spec spec = spec_for(ctx.app_id, ctx.markers, user, d);
    const record_item* previous = books.user.find(c.item_id);
    std::string dirs;
    if (!c.expected) {
      // A new file: its directory must exist before it can be locked. The directories are
      // recorded ahead of their mkdir, in the item the new file will have, so a crash right
      // after a mkdir cannot leave a directory no record names (revert removes them, empty).
      auto planned = missing_parents(ctx.fs, who, parent_path(c.path));
      if (!planned) return tl::unexpected(planned.error());
      if (!planned->empty()) {
        auto fresh = apply_profile_block(std::string(), spec);
        if (!fresh) return tl::unexpected(fresh.error());
        std::string planned_dirs;
        for (const auto& m : *planned) planned_dirs += m + "\n";
        record_item ahead = item_for(c, *fresh, previous, true, planned_dirs);
        ahead.fields["pending"] = "1";
        if (auto noted = ctx.record_ahead(books, false, {ahead}); !noted) return tl::unexpected(noted.error());
      }
      // A failure part-way keeps the item written ahead: it names what was made (ENOENT for the
      // rest is nothing to a revert).
      auto made = make_parents(ctx.fs, who, parent_path(c.path), dir_mode);
      if (!made) return tl::unexpected(made.error());
      for (const auto& m : *made) dirs += m + "\n";
    }
    // Every early return from here on undoes what this change made and withdraws its item.
    auto give_up = [&](error e) -> result<bool> {
      if (!dirs.empty()) remove_made_dirs(ctx, who, dirs);
      ctx.withdraw_ahead(false, c.item_id);
      return tl::unexpected(std::move(e));
    };
    auto held = lock_for_edit(ctx.fs, who, c.path);
    if (!held) return give_up(held.error());
    // The bytes the edit is computed from are read under the lock, never taken from the probe.
    auto current = ctx.fs.read_file(who, c.path, max_bytes);
    if (!current && !current.error().is_errno(ENOENT)) return give_up(current.error());
    if (!current && c.expected)
      return give_up(fail(errc::changed_since_probe, "apply", c.path, "the file was removed since it was probed",
                          "run again").value());
    std::optional<file_status> now = current ? std::optional<file_status>(current->status) : std::nullopt;
    if (now && (!c.expected || !same_version(*now, *c.expected))) {
      // Changed since the probe (another app's block added, an editor's save): decide again, as
      // probe would, on the version read under the lock. Another hostcfg writer cannot change
      // it while the lock is held, so a second look that sees another version is an editor.
      item_probe again = probe_file(ctx, books, user, who, profile_file{listed, d, false});
      if (again.path != c.path || !again.observed || !same_version(*again.observed, *now))
        return give_up(fail(errc::changed_since_probe, "apply", c.path, "the file changed since it was probed",
                            "run again; an editor may have saved it meanwhile").value());
      if (again.state != item_state::absent && again.state != item_state::differs &&
          again.state != item_state::matches)
        return give_up(fail(errc::changed_since_probe, "apply", c.path,
                            "the file changed since it was probed and is now " +
                                std::string(item_state_name(again.state)) +
                                (again.detail.empty() ? std::string() : " (" + again.detail + ")"),
                            "run again").value());
    }
    std::string bytes = current ? current->bytes : std::string();
    auto edit = apply_profile_block(bytes, spec);
    if (!edit) {
      error e = edit.error();
      e.path = c.path;
      return give_up(e);
    }
    record_item item = item_for(c, *edit, previous, !now, dirs);
    // Recorded before the write (context::record_ahead): a crash right after it cannot lose the
    // block's undo data (what a replaced block was). A revert that finds no block drops the item.
    // `was_block`: our earlier block, which is what the file holds should the crash come first.
    record_item ahead = item;
    ahead.fields["pending"] = "1";  // until the write is known to have happened (see probe_file)
    if (previous && previous->get("block") != item.get("block")) {
      const bool unfinished = previous->fields.count("was_block") != 0 && edit->record.previous != previous->get("block");
      ahead.fields["was_block"] = unfinished ? previous->get("was_block") : previous->get("block");
    }
    if (edit->changed())
      if (auto noted = ctx.record_ahead(books, false, {ahead}); !noted) return give_up(noted.error());
    bool wrote = false;
    if (edit->changed()) {
      replace_options options;
      options.expected = now;
      options.expect_absent = !now;
      options.mode = file_mode;
      options.uid = user.uid;
      options.gid = user.gid;
      auto written = ctx.replace_file(who, c.path, edit->bytes, options);
      if (!written) {
        if (!dirs.empty()) remove_made_dirs(ctx, who, dirs);
        ctx.withdraw_ahead(false, c.item_id);  // a failed replace changed nothing
        error e = written.error();
        if (e.is_errno(EPERM) || e.is_errno(EROFS)) {
          e.code = make_error_code(errc::locked);
          e.hint = "the file is locked by the user; hostcfg does not retry";
        }
        return tl::unexpected(e);
      }
      wrote = written->changed;
    }
    books.user.put(item);
    return wrote;
  }

  /// The record item for `edit` of `c`'s file: its block and undo data, whether hostcfg created
  /// the file (`creates`, or an earlier item says so), and the directories made for it (the
  /// earlier item's plus `made_dirs`).
  record_item item_for(const change& c, const profile_edit& edit, const record_item* previous, bool creates,
                       const std::string& made_dirs) const {
    record_item item{c.item_id, kind(), {}};
    item.fields["file"] = c.path;
    item.fields["dir"] = dir;
    item.fields["block"] = edit.record.block;
    item.fields["lead"] = edit.record.lead;
    item.fields["previous"] = edit.record.previous;
    item.fields["kind"] = edit.record.kind == profile_edit_record::kind_t::inserted   ? "inserted"
                          : edit.record.kind == profile_edit_record::kind_t::replaced ? "replaced"
                                                                                      : "unchanged";
    item.fields["created"] = (creates || (previous && previous->get("created") == "1")) ? "1" : "0";
    std::string dirs_field = previous ? previous->get("dirs") : std::string();
    std::vector<std::string> made;
    for (const auto& l : split_lines(made_dirs)) made.emplace_back(l.text);
    list_dirs_made(dirs_field, made);
    item.fields["dirs"] = dirs_field;
    const bool rewrites_ours =
        edit.record.kind == profile_edit_record::kind_t::replaced && previous &&
        (previous->get("block") == edit.record.previous ||
         (previous->fields.count("was_block") != 0 && previous->get("was_block") == edit.record.previous));
    // Recording a block that is already there (written ahead by a run that ended before its
    // store): the undo data is the earlier item's.
    const bool records_ours = edit.record.kind == profile_edit_record::kind_t::unchanged && previous &&
                              previous->get("block") == edit.record.block;
    if (rewrites_ours || records_ours) {
      // Rewriting the block we recorded earlier: revert must still undo the first edit (remove
      // an inserted block, or put back what the first edit replaced), so its undo data carries on.
      item.fields["kind"] = previous->get("kind");
      item.fields["lead"] = previous->get("lead");
      item.fields["previous"] = previous->get("previous");
    }
    return item;
  }

  template <class Ctx>
  static void remove_made_dirs(Ctx& ctx, const actor& who, const std::string& dirs) {
    remove_dirs_made(ctx.fs, who, dirs);
  }
};

HOSTCFG_END_NAMESPACE
