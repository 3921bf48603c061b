#pragma once
/// @file
/// The Probe / Plan / Apply / Record protocol every primitive speaks, as data (Puppet's resource
/// layer: retrieve once, decide per item, change only what differs, report each event).
///
/// A primitive `P` provides (`Ctx` is `context<Fs, Priv>`, see context.hpp):
///
/// | member | meaning |
/// |---|---|
/// | `std::string id() const` | stable id of this configuration, e.g. "hosts:/etc/hosts" |
/// | `const char* kind() const` | primitive name, e.g. "managed_file" |
/// | `result<probe_report> probe(Ctx&, const ledgers&) const` | read-only: the state of every item |
/// | `plan make_plan(const probe_report&) const` | pure and deterministic: the changes; empty = in sync |
/// | `apply_report apply(Ctx&, const plan&, const grant&, ledgers&) const` | executes the plan, re-checking each precondition; records what it changed into `ledgers` |
/// | `apply_report revert(Ctx&, const grant&, ledgers&) const` | undoes what the ledgers say we did |
/// | `std::vector<std::string> revert_changes(const ledgers&) const` | what revert would change, one line each (its prompt text) |
///
/// `converge` (converge.hpp) drives them: probe all, plan all, ask for elevation once for every
/// change that needs it, apply, write the records (only when something changed), probe again.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "hostcfg/error.hpp"
#include "hostcfg/format/diff.hpp"
#include "hostcfg/fs.hpp"
#include "hostcfg/privilege.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// What probe found for one item.
enum class item_state {
  absent,      ///< nothing there yet
  matches,     ///< exactly as desired: in sync
  differs,     ///< there, ours or at least replaceable, but not as desired
  conflict,    ///< something that is not ours is in the way (`item_probe::detail` names whose)
  unreadable,  ///< cannot be read (permissions, I/O error): unknown, never assumed absent
  locked,      ///< immutable / read-only / opted out by its owner: left alone
};

/// "absent", "matches", ...
inline const char* item_state_name(item_state s) {
  switch (s) {
    case item_state::absent: return "absent";
    case item_state::matches: return "matches";
    case item_state::differs: return "differs";
    case item_state::conflict: return "conflict";
    case item_state::unreadable: return "unreadable";
    case item_state::locked: return "locked";
  }
  return "unknown";
}

/// One object a primitive manages (a file, a link, a section), as probe found it.
struct item_probe {
  std::string id;       ///< stable item id, e.g. "file:/etc/app.conf"
  std::string path;     ///< the object's path
  item_state state = item_state::absent;
  std::string current;  ///< readable current value (bytes of a small file, link target, "mode 0600"...)
  std::string desired;  ///< readable desired value
  std::string detail;   ///< why this state: "points into /opt/homebrew/Cellar (Homebrew)"
  bool needs_elevation = false;
  std::string elevation_reason;         ///< "/usr/local/bin is root:wheel 0755; uid 501 cannot write there"
  std::optional<file_status> observed;  ///< the version seen, for the compare-and-swap in apply
};

/// Everything probe found for one primitive.
struct probe_report {
  std::string primitive;  ///< `kind()`
  std::string id;         ///< `id()`
  std::vector<item_probe> items;

  /// True when every item matches (nothing to do).
  bool in_sync() const {
    for (const auto& i : items)
      if (i.state != item_state::matches) return false;
    return true;
  }
  /// The item with this id, or nullptr.
  const item_probe* find(const std::string& item_id) const {
    for (const auto& i : items)
      if (i.id == item_id) return &i;
    return nullptr;
  }
};

/// What a change does to its object.
enum class change_kind { create, modify, remove };

/// "create", "modify", "remove".
inline const char* change_kind_name(change_kind k) {
  switch (k) {
    case change_kind::create: return "create";
    case change_kind::modify: return "modify";
    case change_kind::remove: return "remove";
  }
  return "unknown";
}

/// "created", "modified", "removed": for event messages.
inline const char* change_kind_done(change_kind k) {
  switch (k) {
    case change_kind::create: return "created";
    case change_kind::modify: return "modified";
    case change_kind::remove: return "removed";
  }
  return "changed";
}

/// One planned change: kind, object, path, before and after, and why.
struct change {
  std::string item_id;
  change_kind kind = change_kind::create;
  std::string object;  ///< "file", "link", "directory", "hosts section", "profile block", "launchd job"...
  std::string path;
  std::string before;  ///< readable old value ("" when absent)
  std::string after;   ///< readable new value ("" when removed)
  std::string reason;  ///< why this change is needed
  bool needs_elevation = false;
  std::string elevation_reason;
  std::optional<file_status> expected;  ///< precondition re-checked by apply (compare-and-swap)

  /// One line: "create file /etc/app.conf (mode 0644)" - the form prompts list.
  std::string summary() const {
    std::string line = std::string(change_kind_name(kind)) + " " + object + " " + path;
    if (!reason.empty()) line += " (" + reason + ")";
    return line;
  }
};

/// The changes one primitive would make. Empty means in sync.
struct plan {
  std::string primitive;
  std::string id;
  std::vector<change> changes;

  bool empty() const { return changes.empty(); }
  /// True when at least one change needs elevation.
  bool needs_elevation() const {
    for (const auto& c : changes)
      if (c.needs_elevation) return true;
    return false;
  }
  /// A readable diff: one header line per change, then its before/after lines.
  std::string render() const {
    std::string out;
    for (const auto& c : changes) {
      out += (c.kind == change_kind::create ? "+ " : c.kind == change_kind::remove ? "- " : "~ ") + c.summary();
      if (c.needs_elevation) out += " [needs admin: " + c.elevation_reason + "]";
      out += "\n";
      std::string diff = render_line_diff(c.before, c.after);
      for (const auto& line : split_lines(diff)) out += "    " + std::string(line.text) + "\n";
    }
    return out;
  }
};

/// What happened to one item during apply or revert.
enum class event_kind { kept, changed, would_change, failed, skipped };

/// "kept", "changed", ...
inline const char* event_kind_name(event_kind k) {
  switch (k) {
    case event_kind::kept: return "kept";
    case event_kind::changed: return "changed";
    case event_kind::would_change: return "would_change";
    case event_kind::failed: return "failed";
    case event_kind::skipped: return "skipped";
  }
  return "unknown";
}

/// One event of apply or revert.
struct event {
  std::string item_id;
  event_kind kind = event_kind::kept;
  std::string path;
  std::string message;           ///< what was done, or why not
  std::optional<error> failure;  ///< set for `failed` (and for `skipped` when an error explains it)
  bool elevated = false;         ///< done with elevated rights
};

/// The events of one primitive's apply or revert. One failed item does not stop the others.
struct apply_report {
  std::string primitive;
  std::string id;
  std::vector<event> events;
  std::vector<std::string> notes;  ///< what the user should do next ("reload your shells: ...")

  bool ok() const {
    for (const auto& e : events)
      if (e.kind == event_kind::failed) return false;
    return true;
  }
  /// Whether some event changed something (a dry run's `would_change` does not count).
  bool changed() const {
    for (const auto& e : events)
      if (e.kind == event_kind::changed) return true;
    return false;
  }
  /// The first failure, if any.
  const error* first_failure() const {
    for (const auto& e : events)
      if (e.kind == event_kind::failed && e.failure) return &*e.failure;
    return nullptr;
  }
};

/// Whether elevated changes may run in this apply, and if not, why not.
struct grant {
  bool elevated = false;            ///< elevated changes may run
  std::optional<answer> answer_;    ///< the prompt's answer (or the standing decision), if any
  bool from_record = false;         ///< the answer is a recorded decision, no prompt was shown
  bool handed_off = false;          ///< the elevated runner applied this step (events come from it)
  std::vector<event> runner_events; ///< the runner's events for this step, when handed off

  /// The skip message for an elevated change that may not run.
  std::string refusal() const {
    if (!answer_) return "needs elevation, which was not requested";
    std::string text = std::string("needs elevation: prompt ") + answer_name(*answer_);
    if (from_record) text += " (recorded decision; re-prompt to ask again)";
    return text;
  }
};

HOSTCFG_END_NAMESPACE
