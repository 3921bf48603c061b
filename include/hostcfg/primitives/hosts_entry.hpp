#pragma once
/// @file
/// HostsEntry: make names resolve to addresses through the hosts file, touching nothing else
/// (issue 4). A thin layer over the pure codec of format/hosts.hpp: probe reads the file once and
/// describes the edit (the plan's before/after are the lines it disables and our section, not
/// the whole file); apply takes the file's edit lock (file_lock.hpp: another app editing its own
/// section takes turns with us), re-reads, recomputes the edit from what it read under the lock
/// and replaces the file atomically (mode, owner and xattrs kept by the backend). The
/// precondition is the edit: a line another writer added elsewhere since the probe is kept, an
/// edit different from the one planned and prompted for is `changed_since_probe`. Record keeps
/// what revert needs to give back the original bytes; revert takes the same lock when it has
/// something to write.
///
/// With a resolver attached (`ctx.attach(any_resolver&)`, backend/resolver.hpp), probe also asks
/// it about each name and adds its answer to that name's item as a note ("resolver: resolves to
/// 127.0.0.1 as expected", "resolver: the system resolver answers 10.0.0.5 first (DNS or another
/// source answers before /etc/hosts)"). The file alone decides the state: the note never makes a
/// failure or a write. No resolver attached: no question, no note.
///
///     HostsEntry hosts{"127.0.0.1", {"kubernetes.docker.internal"}};
///     auto report = converge(ctx, hosts);        // one prompt naming /etc/hosts and the lines
///
/// One HostsEntry per app and hosts file: it owns the app's section (ctx.markers). More
/// addresses go into the same entry with `add`. A name already mapped elsewhere to another
/// address is a conflict, left alone unless `override_conflicts` (then the line is disabled with
/// a tag naming the app and restored by revert). A bind-mounted hosts file (EBUSY on rename, as
/// in containers) is rewritten in place only with `allow_in_place`.

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "hostcfg/backend/resolver.hpp"
#include "hostcfg/context.hpp"
#include "hostcfg/file_lock.hpp"
#include "hostcfg/format/hosts.hpp"
#include "hostcfg/protocol.hpp"
#include "hostcfg/record.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace detail {

/// The "disabled" field after an edit: the lines listed before that are still disabled (a
/// tagged copy, `prefix` + line, is in `before`, the bytes the edit was made from), plus those
/// this edit disabled. A run that crashed after writing its item ahead but before its write
/// listed lines it never disabled: when this edit disables them, they are those, not new ones
/// (listed twice, revert would look for a second copy); when it does not (the user fixed the
/// conflict meanwhile), they are dropped, since revert could not restore them anyway.
inline std::string merged_disabled(const std::string& listed, const std::vector<hosts_disabled_line>& now_disabled,
                                   std::string_view before, const std::string& prefix) {
  std::string out;
  if (listed.empty() || prefix.empty()) {  // the common case: no line disabled before
    for (const auto& d : now_disabled) out += d.original + "\n";
    return out;
  }
  // Tagged lines only (found by their prefix: no pass over every line of a 100k-line file).
  std::map<std::string, long> tagged;  // original line -> tagged copies in the file
  for (std::size_t at = before.find(prefix); at != std::string_view::npos; at = before.find(prefix, at + 1)) {
    if (at != 0 && before[at - 1] != '\n' && before[at - 1] != '\r') continue;  // not at a line start
    const std::size_t start = at + prefix.size();
    std::size_t end = before.find_first_of("\r\n", start);
    if (end == std::string_view::npos) end = before.size();
    ++tagged[std::string(before.substr(start, end - start))];
  }
  for (const auto& l : split_lines(listed)) {
    long& copies = tagged[std::string(l.text)];
    if (copies <= 0) continue;  // never landed (or the user removed it): nothing to restore
    --copies;
    out += std::string(l.text) + "\n";
  }
  for (const auto& d : now_disabled) out += d.original + "\n";
  return out;
}

}  // namespace detail

/// Names that must resolve to addresses through a hosts file. See the file comment.
struct HostsEntry {
  /// `HostsEntry{"127.0.0.1", {"kubernetes.docker.internal"}}`. Validated at probe, before any I/O.
  HostsEntry(const std::string& address, std::vector<std::string> names) { add(address, std::move(names)); }

  /// Adds more names for another (or the same) address to this entry.
  HostsEntry& add(const std::string& address, std::vector<std::string> names) {
    for (auto& n : names) mappings.push_back({address, std::move(n)});
    return *this;
  }

  std::vector<hosts_mapping> mappings;  ///< (address, name) pairs, in order
  std::string path = "/etc/hosts";      ///< absolute, normal
  bool override_conflicts = false;      ///< disable conflicting lines (restored by revert)
  bool allow_in_place = false;          ///< on EBUSY/EXDEV (bind mount), rewrite in place
  std::size_t max_bytes = 64u << 20;    ///< larger files are refused (errc::too_large)

  static constexpr const char* kind_name = "hosts_entry";
  std::string id() const { return "hosts:" + path; }
  const char* kind() const { return kind_name; }

  /// The typed desired state handed to an elevated runner: parameters only.
  record_item desired_state() const {
    record_item item{id(), kind(), {}};
    std::string list;
    for (const auto& m : mappings) list += m.address + " " + m.name + "\n";
    item.fields = {{"path", path},
                   {"mappings", list},
                   {"override", override_conflicts ? "1" : "0"},
                   {"in_place", allow_in_place ? "1" : "0"}};
    return item;
  }

  /// Rebuilds a HostsEntry from `desired_state()` output, validating every field (untrusted input).
  static result<HostsEntry> from_desired_state(const record_item& item) {
    std::string file = item.get("path");
    if (!is_normal_path(file) || file == "/")
      return fail(errc::invalid_input, "read desired state", file, "path must be absolute and normal");
    HostsEntry entry{{}, {}};
    entry.mappings.clear();
    entry.path = file;
    entry.override_conflicts = item.get("override") == "1";
    entry.allow_in_place = item.get("in_place") == "1";
    const std::string list = item.get("mappings");  // split_lines returns views: keep the string alive
    for (const auto& line : split_lines(list)) {
      std::string_view text = line.text;
      std::size_t space = text.find(' ');
      if (space == std::string_view::npos)
        return fail(errc::invalid_input, "read desired state", file, "a mapping without a name");
      auto m = make_hosts_mapping(text.substr(0, space), text.substr(space + 1));
      if (!m) return tl::unexpected(m.error());
      entry.mappings.push_back(*m);
    }
    auto ok = detail::validate_mappings(entry.mappings);
    if (!ok) return tl::unexpected(ok.error());
    return entry;
  }

  /// Reads the file once; reports one item for the file (its bytes now and after apply) and one
  /// per mapping (matches / absent / differs / conflict, with the deciding line).
  template <class Fs, class Priv>
  result<probe_report> probe(context<Fs, Priv>& ctx, const ledgers& books) const {
    (void)books;
    if (!is_normal_path(path) || path == "/")
      return fail(errc::invalid_input, "probe", path, "not an absolute normal path");
    if (mappings.empty()) return fail(errc::invalid_input, "probe", path, "no name given");
    auto valid = detail::validate_mappings(mappings);
    if (!valid) return tl::unexpected(valid.error());
    auto checked_prefix = validate_app_id(ctx.app_id);
    if (!checked_prefix) return tl::unexpected(checked_prefix.error());

    probe_report report{kind(), id(), {}};
    item_probe file;
    file.id = id();
    file.path = path;
    actor user = ctx.user_actor();
    auto current = ctx.read_for_probe(user, path, max_bytes);
    std::string bytes;
    bool exists = true;
    if (!current) {
      const error& e = current.error();
      if (e.is_errno(ENOENT)) {
        exists = false;
      } else {
        file.state = e.is_errno(EACCES) ? item_state::unreadable : item_state::conflict;
        file.detail = e.message();
        report.items.push_back(file);
        return report;
      }
    } else {
      bytes = std::move(current->bytes);  // the one copy of the file a probe keeps
      file.observed = current->status;
    }
    // Per-name states and the edit's description from one shared scan (one section search and
    // one search per name, not two); the new file itself is not built here (apply builds it
    // from what it reads under the lock).
    // It reports no line number for an in-sync name, so none is counted for one.
    const hosts_scan scan = scan_hosts(bytes, ctx.markers, mappings, hosts_numbering::problems_only);
    auto probed = probe_hosts(bytes, ctx.markers, mappings, scan);
    hosts_edit_options describe = edit_options(ctx);
    describe.compute_bytes = false;
    auto applied = apply_hosts(bytes, ctx.markers, mappings, describe, scan);
    if (!probed || !applied) {
      // Broken markers: refuse, touch nothing, say which line.
      file.state = item_state::conflict;
      file.detail = (!probed ? probed.error() : applied.error()).message();
      file.detail = "in " + path + ": " + file.detail;
      report.items.push_back(file);
      return report;
    }
    file.current = edited_view(bytes, *probed, *applied, false);
    file.desired = edited_view(bytes, *probed, *applied, true);
    file.detail = describe_edit(*applied);
    if (applied->changed) {
      file.state = exists ? item_state::differs : item_state::absent;
      if (current && (current->status.flags.immutable || current->status.flags.append_only)) {
        file.state = item_state::locked;
        file.detail = path + " is immutable or append-only (chflags/chattr); hostcfg never clears that";
      }
    } else {
      file.state = applied->conflicts_left.empty() ? item_state::matches : item_state::conflict;
      // Our section is in the file but no record says so (a crash or an I/O error lost the
      // record write): register it, so that uninstall still knows it is ours. No byte changes.
      if (file.state == item_state::matches && probed->section && !books.find(id())) {
        file.state = item_state::differs;
        file.detail = register_reason();
      }
    }
    if (file.state == item_state::absent || file.state == item_state::differs) {
      // Atomic replace creates a temp beside the file: the directory decides.
      auto dir = ctx.fs.stat(user, parent_path(path));
      if (!dir || !may_write_dir(user, *dir)) {
        file.needs_elevation = true;
        file.elevation_reason = path + " is in " + parent_path(path) + ", which uid " + std::to_string(user.uid) +
                                " cannot write; adding: " + added_lines(*applied);
      }
    }
    report.items.push_back(file);
    const any_resolver* resolver = ctx.template find<any_resolver>();
    std::vector<std::pair<std::string, resolver_answer>> asked;  // one question per distinct name
    for (const auto& st : probed->mappings) {
      item_probe item = mapping_item(st, *applied);
      if (resolver) add_resolver_note(item, st.mapping, answer_for(*resolver, st.mapping.name, asked));
      report.items.push_back(std::move(item));
    }
    return report;
  }

  /// Pure: one change for the file when its bytes must change, else none.
  plan make_plan(const probe_report& probed) const {
    plan p{kind(), id(), {}};
    const item_probe* file = probed.find(id());
    if (!file || (file->state != item_state::absent && file->state != item_state::differs)) return p;
    change c;
    c.item_id = file->id;
    c.kind = file->state == item_state::absent ? change_kind::create : change_kind::modify;
    c.object = "hosts section";
    c.path = path;
    c.before = file->current;
    c.after = file->desired;
    c.reason = file->detail;
    c.needs_elevation = file->needs_elevation;
    c.elevation_reason = file->elevation_reason;
    c.expected = file->observed;
    p.changes.push_back(c);
    return p;
  }

  /// Re-reads the file, recomputes the edit (it must equal the plan, else changed_since_probe),
  /// replaces the file atomically and records what revert needs.
  template <class Fs, class Priv>
  apply_report apply(context<Fs, Priv>& ctx, const plan& p, const grant& g, ledgers& books) const {
    apply_report report{kind(), id(), {}, {}};
    for (const auto& c : p.changes) {
      if (c.needs_elevation && !g.elevated) {
        report.events.push_back(event{c.item_id, event_kind::skipped, path, g.refusal(), std::nullopt, false});
        continue;
      }
      auto done = apply_one(ctx, c, books);
      if (done)
        report.events.push_back(event{c.item_id, event_kind::changed, path, *done, std::nullopt, c.needs_elevation});
      else
        report.events.push_back(
            event{c.item_id, event_kind::failed, path, done.error().message(), done.error(), c.needs_elevation});
    }
    return report;
  }

  /// What revert would do, from the records alone.
  plan revert_plan(const ledgers& books) const {
    plan p{kind(), id(), {}};
    const record_item* mine = books.find(id());
    if (!mine) return p;
    bool privileged = books.system.find(id()) != nullptr;
    change c;
    c.item_id = id();
    c.kind = change_kind::remove;
    c.object = "hosts section";
    c.path = path;
    const std::string disabled_lines = mine->get("disabled");
    std::size_t disabled = split_lines(disabled_lines).size();
    c.reason = "remove hostcfg's section" +
               (disabled ? ", re-enable " + std::to_string(disabled) + " disabled line(s)" : std::string());
    c.needs_elevation = privileged;
    c.elevation_reason = privileged ? path + " was written with admin rights" : "";
    p.changes.push_back(c);
    return p;
  }

  /// Removes our section and re-enables the lines we disabled, giving back the original bytes.
  /// Lines the user added inside our section are kept (and reported); without a record, a section
  /// found between our markers is still removed when the file can be written.
  template <class Fs, class Priv>
  apply_report revert(context<Fs, Priv>& ctx, const grant& g, ledgers& books) const {
    apply_report report{kind(), id(), {}, {}};
    const record_item* found = books.find(id());
    bool privileged = books.system.find(id()) != nullptr;
    if (found && privileged && !g.elevated) {
      report.events.push_back(event{id(), event_kind::skipped, path, g.refusal(), std::nullopt, false});
      return report;
    }
    std::optional<record_item> mine;
    if (found) mine = *found;
    actor who = ctx.actor_for(privileged || (!found && g.elevated));
    hosts_revert_record rec;
    if (mine) rec = revert_record_of(*mine);
    // Read and compute; when there is something to write, take turns with other hostcfg writers
    // of the file and do both again under the lock (what was read first may be stale by then).
    std::optional<fs_lock> held;
    result<file_contents> current = tl::unexpected(error{});
    result<hosts_revert_result> reverted = tl::unexpected(error{});
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 1) {
        if (!mine && !g.elevated) {
          auto dir = ctx.fs.stat(who, parent_path(path));
          if (!dir || !may_write_dir(who, *dir)) {
            report.events.push_back(event{id(), event_kind::skipped, path,
                                          "a section between our markers was found without a record; removing it "
                                          "needs admin rights, which an uninstall asks for only for recorded "
                                          "changes: run the uninstall as root to remove it",
                                          std::nullopt, false});
            return report;
          }
        }
        auto lock = lock_for_edit(ctx.fs, who, path);
        if (!lock) {
          report.events.push_back(event{id(), event_kind::failed, path, lock.error().message(), lock.error(), privileged});
          return report;
        }
        held = std::move(*lock);
      }
      current = ctx.fs.read_file(who, path, max_bytes);
      if (!current) {
        if (current.error().is_errno(ENOENT)) {
          if (mine) books.scope(privileged).erase(id());
          if (mine)
            report.events.push_back(event{id(), event_kind::kept, path, "the file is gone; nothing to revert",
                                          std::nullopt, privileged});
          return report;
        }
        report.events.push_back(
            event{id(), event_kind::failed, path, current.error().message(), current.error(), privileged});
        return report;
      }
      reverted = revert_hosts(current->bytes, ctx.markers, disabled_line_prefix(ctx.app_id), mine ? &rec : nullptr);
      if (!reverted) {
        auto e = reverted.error();
        e.path = path;
        report.events.push_back(event{id(), event_kind::failed, path, e.message(), e, privileged});
        return report;
      }
      if (!reverted->changed) {
        if (mine) books.scope(privileged).erase(id());
        if (mine)
          report.events.push_back(
              event{id(), event_kind::kept, path, "no section of ours was there", std::nullopt, privileged});
        return report;
      }
    }
    replace_options options;
    options.expected = current->status;
    options.allow_in_place_fallback = allow_in_place;
    result<void> written;
    if (mine && mine->get("created") == "1" && reverted->bytes.empty()) {
      written = unlink_durably(ctx.fs, who, path);
    } else {
      auto w = ctx.replace_file(who, path, reverted->bytes, options);
      if (!w) written = tl::unexpected(w.error());
    }
    if (!written) {
      report.events.push_back(
          event{id(), event_kind::failed, path, written.error().message(), written.error(), privileged});
      return report;
    }
    if (mine) books.scope(privileged).erase(id());
    std::string message = "removed hostcfg's section";
    if (!reverted->restored.empty())
      message += ", re-enabled " + std::to_string(reverted->restored.size()) + " disabled line(s)";
    if (!reverted->kept_user_lines.empty()) {
      message += "; kept " + std::to_string(reverted->kept_user_lines.size()) +
                 " line(s) added to the section since hostcfg wrote it:";
      for (const auto& l : reverted->kept_user_lines) message += " '" + detail::printable(l) + "'";
    }
    if (!reverted->not_found.empty())
      message += "; " + std::to_string(reverted->not_found.size()) +
                 " disabled line(s) were changed since and left as they are";
    report.events.push_back(event{id(), event_kind::changed, path, message, std::nullopt, privileged});
    if (!reverted->kept_user_lines.empty() || !reverted->not_found.empty())
      report.notes.push_back("check " + path + ": " + message);
    return report;
  }

 private:
  /// The change's reason when the section is already there and only its record was lost.
  std::string register_reason() const { return "register the section already in " + path + " (its record was lost)"; }

  /// What the change touches, readable and small whatever the file's size: the lines it
  /// disables (as they are, or as they will be) and our section (as it is, or will be). The
  /// plan's before/after and its diff are these, not two copies of a 100k-line file.
  static std::string edited_view(std::string_view bytes, const hosts_probe_result& probed,
                                 const hosts_apply_result& applied, bool after) {
    std::string out;
    for (const auto& d : applied.disabled) out.append(after ? d.written : d.original).append("\n");
    if (after) out.append(applied.section);
    else if (probed.section) out.append(bytes.substr(probed.section->begin, probed.section->end - probed.section->begin));
    return out;
  }

  /// The resolver's answer for `name`, asked once per probe whatever the number of addresses.
  static const resolver_answer& answer_for(const any_resolver& resolver, const std::string& name,
                                           std::vector<std::pair<std::string, resolver_answer>>& asked) {
    for (const auto& a : asked)
      if (a.first == name) return a.second;
    asked.emplace_back(name, resolver.resolve(name));
    return asked.back().second;
  }

  /// Adds the resolver's answer to a name's item as a note: the file alone decides the state.
  void add_resolver_note(item_probe& item, const hosts_mapping& m, const resolver_answer& answer) const {
    std::string note;
    auto ip = read_ip_address(m.address);
    const address_family family = ip ? ip->family : address_family::ipv4;
    const resolved_address* first = answer.first_of(family);
    if (answer.status == resolve_status::unavailable || answer.status == resolve_status::failed) {
      note = "the system resolver could not be asked (" + std::string(resolve_status_name(answer.status)) +
             (answer.detail.empty() ? std::string() : ": " + answer.detail) + ")";
    } else if (!first) {
      note = "the system resolver has no " + std::string(address_family_name(family)) + " answer for " + m.name;
    } else if (ip && first->text == to_string(*ip)) {
      note = "resolves to " + m.address + " as expected";
    } else {
      note = "the system resolver answers " + first->text + " first (DNS or another source answers before " +
             path + ")";
    }
    if (answer.system_wide && path != "/etc/hosts")
      note += " [this machine's resolver reads /etc/hosts, not " + path + "]";
    item.detail += (item.detail.empty() ? "" : "; ") + std::string("resolver: ") + note;
  }

  template <class Ctx>
  hosts_edit_options edit_options(const Ctx& ctx) const {
    hosts_edit_options o;
    o.override_conflicts = override_conflicts;
    o.disable_prefix = disabled_line_prefix(ctx.app_id);
    return o;
  }

  static std::string mapping_list(const std::vector<hosts_mapping>& list) {
    std::string out;
    for (const auto& m : list)
      out += (out.empty() ? "" : ", ") + detail::printable(m.address) + " " + detail::printable(m.name);
    return out;
  }

  /// The lines an edit adds, then those it disables (override), for the elevation reason.
  static std::string added_lines(const hosts_apply_result& r) {
    std::string out = mapping_list(r.added);
    std::string carried = mapping_list(r.carried);
    if (!carried.empty()) out += (out.empty() ? "" : ", ") + carried;
    if (out.empty()) out = "(no new lines)";
    for (const auto& d : r.disabled)
      out += "; disabling line " + std::to_string(d.line_number) + " '" + detail::printable(d.original) + "'";
    return out;
  }

  /// One readable sentence of what apply would do: the change's reason and the prompt's text.
  static std::string describe_edit(const hosts_apply_result& r) {
    std::string out;
    auto sep = [&out] { return out.empty() ? "" : "; "; };
    if (!r.added.empty()) out += sep() + std::string("add ") + mapping_list(r.added);
    for (const auto& d : r.disabled)
      out += sep() + std::string("disable line ") + std::to_string(d.line_number) + " '" +
             detail::printable(d.original) + "'";
    for (const auto& m : r.carried)
      out += sep() + std::string("keep ") + detail::printable(m.name) + " at " + detail::printable(m.address);
    for (const auto& s : r.dropped_section_lines) out += sep() + std::string("drop stale '") + detail::printable(s) + "'";
    for (const auto& c : r.conflicts_left)
      out += sep() + c.mapping.name + " is mapped to " + detail::printable(c.found_address) + " at line " +
             std::to_string(c.line_number) + " (left alone; set override_conflicts to replace it)";
    return out;
  }

  /// One name's item; `applied` is the edit's description, for what override does to a conflict.
  item_probe mapping_item(const hosts_mapping_status& st, const hosts_apply_result& applied) const {
    item_probe item;
    item.id = id() + ":" + st.mapping.address + " " + st.mapping.name;
    item.path = path;
    item.desired = st.mapping.address + " " + st.mapping.name;
    if (!st.found_address.empty()) item.current = detail::printable(st.found_address) + " " + st.mapping.name;
    std::string where = st.line_number ? " (line " + std::to_string(st.line_number) + ")" : std::string();
    switch (st.state) {
      case hosts_mapping_state::in_sync: item.state = item_state::matches; break;
      case hosts_mapping_state::missing: item.state = item_state::absent; break;
      case hosts_mapping_state::commented_out:
        item.state = item_state::absent;
        item.detail = "only commented out" + where;
        break;
      case hosts_mapping_state::stale_in_section:
        item.state = item_state::differs;
        item.detail = "our section maps it to " + detail::printable(st.found_address) + where;
        break;
      case hosts_mapping_state::conflict:
        item.state = override_conflicts ? item_state::differs : item_state::conflict;
        item.detail = "mapped to " + detail::printable(st.found_address) + where;
        if (!override_conflicts) {
          item.detail += "; set override_conflicts to replace it";
        } else {
          // Override disables a line above our section; one below it stays, our line comes first.
          bool disabled = false;
          for (const auto& d : applied.disabled) disabled = disabled || d.line_number == st.line_number;
          item.detail += disabled ? "; that line will be disabled" : "; our section's line will come first, that line stays";
        }
        break;
    }
    return item;
  }

  static hosts_revert_record revert_record_of(const record_item& item) {
    hosts_revert_record rec;
    rec.section = item.get("section");
    rec.section_before_write = item.get("section_before_write");
    rec.added_newline_before_section = item.get("added_newline") == "1";
    const std::string disabled = item.get("disabled");
    for (const auto& l : split_lines(disabled)) rec.disabled.push_back({0, std::string(l.text), {}});
    return rec;
  }

  template <class Ctx>
  result<std::string> apply_one(Ctx& ctx, const change& c, ledgers& books) const {
    actor who = ctx.actor_for(c.needs_elevation);
    // Another hostcfg writer of this file (a second app with its own section, or a second run)
    // takes turns with us: the read, the edit and the replace happen under one lock, and the
    // edit is recomputed from what is read under it, never from the probe's bytes.
    const bool writes = c.before != c.after;
    std::optional<fs_lock> held;
    if (writes) {
      auto lock = lock_for_edit(ctx.fs, who, path);
      if (!lock) return tl::unexpected(lock.error());
      held = std::move(*lock);
    }
    auto current = ctx.fs.read_file(who, path, max_bytes);
    std::string bytes;
    bool exists = true;
    if (!current) {
      if (!current.error().is_errno(ENOENT)) return tl::unexpected(current.error());
      exists = false;
    } else {
      bytes = std::move(current->bytes);
    }
    if (exists != c.expected.has_value())
      return fail(errc::changed_since_probe, "apply", path, "the file changed since it was probed", "run again");
    // Only the record of this change's scope: a forged user record never reaches root's undo data.
    bool privileged = c.needs_elevation;
    const record_item* previous = books.scope(privileged).find(id());
    hosts_edit_options options_now = edit_options(ctx);
    hosts_revert_record previous_record;  // what our section held that we wrote: a user's lines in it stay theirs
    if (previous) {
      previous_record = revert_record_of(*previous);
      options_now.previous = &previous_record;
    }
    auto applied = apply_hosts(bytes, ctx.markers, mappings, options_now);
    if (!applied) return tl::unexpected(applied.error());
    // The precondition is the edit, not the file's version: a line another writer added
    // elsewhere meanwhile is kept, but an edit different from the one planned (and prompted
    // for) is refused.
    if (describe_edit(*applied) != c.reason && c.reason != register_reason())
      return fail(errc::changed_since_probe, "apply", path,
                  "the file changed since it was probed: the edit would now be '" + describe_edit(*applied) +
                      "', not '" + c.reason + "'",
                  "run again");
    if (applied->changed != writes)
      return fail(errc::changed_since_probe, "apply", path, "the file changed since it was probed", "run again");
    // The record: merged with an earlier one, so revert still knows the first apply's changes.
    record_item item = previous ? *previous : record_item{id(), kind(), {}};
    if (!previous) item.fields["created"] = exists ? "0" : "1";
    item.fields["section"] = applied->record.section;
    if (applied->record.added_newline_before_section) item.fields["added_newline"] = "1";
    item.fields["disabled"] =
        detail::merged_disabled(item.get("disabled"), applied->record.disabled, bytes, disabled_line_prefix(ctx.app_id));
    item.fields["path"] = path;
    item.fields.erase("section_before_write");  // a crashed run's: this run's final record has none
    // Recorded before the write (context::record_ahead): a crash right after it cannot lose the
    // lines our section disabled. Until the write is done the file may still hold the section as
    // it was, so the item written ahead also names that section's lines as ours: a revert (or a
    // retry) after such a crash removes them instead of keeping them as a user's. A revert that
    // finds no section of ours has nothing to undo.
    if (writes) {
      record_item ahead = item;
      if (!applied->record.section_before_write.empty())
        ahead.fields["section_before_write"] = applied->record.section_before_write;
      if (auto noted = ctx.record_ahead(books, privileged, {ahead}); !noted) return tl::unexpected(noted.error());
    }
    bool in_place = false;
    if (writes) {
      replace_options options;
      if (current) options.expected = current->status;  // no writer without the lock slips in either
      options.expect_absent = !exists;
      options.mode = 0644;  // a new hosts file only; an existing one keeps its mode and owner
      options.allow_in_place_fallback = allow_in_place;
      options.only_if_different = false;  // the bytes differ: no second read to find that out
      auto written = ctx.replace_file(who, path, applied->bytes, options);
      if (!written) {
        // A failed atomic replace changed nothing; an in-place rewrite may have written part-way.
        if (!allow_in_place) ctx.withdraw_ahead(privileged, id());
        auto e = written.error();
        if ((e.is_errno(EBUSY) || e.is_errno(EXDEV)) && !allow_in_place)
          e.hint = path + " cannot be replaced atomically (a bind mount?); set allow_in_place to rewrite it in place";
        return tl::unexpected(e);
      }
      in_place = written->in_place;
    }
    held.reset();
    books.scope(privileged).put(item);
    std::string message = writes ? describe_edit(*applied) : register_reason();
    if (in_place) message += " (rewritten in place: the file is a mount point)";
    return message.empty() ? std::string("rewrote our section") : message;
  }
};

HOSTCFG_END_NAMESPACE
