#pragma once
/// @file
/// SymlinkSet: a set of symbolic links, e.g. every command of an app bundle's `bin` directory
/// linked into `/usr/local/bin`, plus single links such as
/// `/var/run/docker.sock -> /Users/alice/.docker/run/docker.sock`.
///
///     SymlinkSet cli;
///     cli.link_dir = "/usr/local/bin";
///     cli.source_dir = "/Applications/Docker.app/Contents/Resources/bin";
///     auto report = converge(ctx, cli);
///
/// Conflicts follow Homebrew's model (keg.rb): a correct link is a no-op, a dangling one is
/// replaced (its old target kept for revert), anything else - a foreign link, a regular file, a
/// directory - is left alone and reported with its owner named when recognisable and the option
/// that would override it. The two overrides are separate (LESSONS 24): `take_over` replaces a
/// foreign link or a regular file (never a directory), keeping the old one for revert;
/// `allow_dangling` accepts a target that does not exist yet (docker.sock while the engine is
/// stopped). Targets are compared after making both ends absolute and normal, and after
/// resolving the symlinks of both ends' directories, so a link that would point at itself or
/// loop is refused (ansible#40740).
///
/// Privilege: a link whose directory (or nearest existing ancestor) the user can write is made as
/// the user, with no prompt - also when the process runs as root for that user, so no component
/// the user controls is ever followed with root rights. Other links need elevation; their change
/// lines name the directory and the link. Links made with elevation are system items (root-owned
/// record) listing the uids that rely on them, so one user's uninstall does not pull a link
/// another user still relies on.

#include <algorithm>
#include <cstddef>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hostcfg/context.hpp"
#include "hostcfg/converge.hpp"
#include "hostcfg/primitives/group.hpp"
#include "hostcfg/primitives/managed_file.hpp"
#include "hostcfg/protocol.hpp"
#include "hostcfg/record.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// One link: where it is and what it must point to (stored exactly as given; an absolute target
/// is recommended, LESSONS 17).
struct link_spec {
  std::string path;    ///< absolute, normal
  std::string target;  ///< non-empty; relative targets are relative to the link's directory
};

namespace detail {

/// Splits a link target or path into its components (empty ones dropped; "." and ".." kept).
inline std::vector<std::string> split_components(std::string_view text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t next = text.find('/', pos);
    if (next == std::string_view::npos) next = text.size();
    if (next > pos) out.emplace_back(text.substr(pos, next - pos));
    pos = next + 1;
  }
  return out;
}

/// The physical path of `path`: every symlink in it is resolved, component by component, as
/// `who` (lstat + readlink only, so it works on every backend). Components that do not exist (or
/// cannot be read) are appended lexically. `keep` names a path that is not followed even when it
/// is a link (the link being checked: "would the new link point through itself?"). ELOOP after
/// 40 links.
template <class Fs>
result<std::string> physical_path(Fs& fs, const actor& who, const std::string& path, const std::string& keep = {}) {
  std::vector<std::string> todo = split_components(path);
  std::reverse(todo.begin(), todo.end());
  std::string resolved;  // "" is "/"
  int links = 0;
  bool lexical = false;  // once something is missing, the rest is lexical
  while (!todo.empty()) {
    std::string part = std::move(todo.back());
    todo.pop_back();
    if (part == ".") continue;
    if (part == "..") {
      resolved = resolved.empty() ? std::string() : parent_path(resolved);
      if (resolved == "/") resolved.clear();
      continue;
    }
    std::string candidate = resolved + "/" + part;
    if (lexical || candidate == keep) {
      resolved = candidate;
      continue;
    }
    auto st = fs.lstat(who, candidate);
    if (!st || st->type != file_type::symlink) {
      lexical = !st;
      resolved = candidate;
      continue;
    }
    if (++links > 40) return fail_errno(ELOOP, "resolve", path, {}, "more than 40 symbolic links");
    auto target = fs.readlink(who, candidate);
    if (!target) return tl::unexpected(target.error());
    auto more = split_components(*target);
    if (!target->empty() && target->front() == '/') resolved.clear();
    for (auto it = more.rbegin(); it != more.rend(); ++it) todo.push_back(*it);
  }
  return resolved.empty() ? std::string("/") : resolved;
}

/// Why root must not work in directory `dir` for `user`, or nullopt when it may: a component on
/// the way (lexical, then physical) is a symlink the user owns, or sits in a directory the user
/// can write (they could swap it for a symlink between probe and apply: RELIABILITY P2). A
/// root-owned child of a sticky directory is safe (nobody else can rename it away). Missing
/// components end the walk: they will be created under a directory already checked.
template <class Fs>
std::optional<std::string> untrusted_for_root(Fs& fs, const actor& user, const std::string& dir) {
  if (user.is_root()) return std::nullopt;
  auto check_chain = [&](const std::string& path) -> std::optional<std::string> {
    auto parent = fs.lstat(user, "/");
    if (!parent) return std::nullopt;
    file_status parent_st = *parent;
    std::string parent_path_text = "/";
    std::string prefix;
    for (const auto& part : path_components(path)) {
      std::string p = prefix + "/" + part;
      auto st = fs.lstat(user, p);
      if (!st) return std::nullopt;
      bool sticky_safe = (parent_st.mode & 01000) != 0 && st->uid == 0;
      if (may_write_dir(user, parent_st) && !sticky_safe)
        return parent_path_text + " is writable by uid " + std::to_string(user.uid) + ", who could swap " + p +
               " for a symlink";
      if (st->type == file_type::symlink) {
        if (st->uid != 0) return p + " is a symlink owned by uid " + std::to_string(st->uid);
        auto followed = fs.stat(user, p);
        if (!followed) return std::nullopt;
        parent_st = *followed;
      } else {
        parent_st = *st;
      }
      parent_path_text = p;
      prefix = p;
    }
    return std::nullopt;
  };
  if (auto why = check_chain(dir)) return why;
  auto physical = physical_path(fs, user, dir);
  if (physical && *physical != dir) return check_chain(*physical);
  return std::nullopt;
}

/// Who a foreign link belongs to, when its target says so ("Homebrew", "Nix", an app bundle).
inline std::string link_owner_hint(const std::string& target) {
  auto has = [&](const char* s) { return target.find(s) != std::string::npos; };
  auto starts = [&](const char* s) { return target.rfind(s, 0) == 0; };
  if (has("/Cellar/") || has("/Caskroom/") || starts("/opt/homebrew/") || starts("/usr/local/Homebrew/") ||
      starts("/home/linuxbrew/"))
    return "Homebrew";
  if (starts("/nix/")) return "Nix";
  if (starts("/opt/local/")) return "MacPorts";
  if (has("/.rd/") || has("Rancher Desktop.app")) return "Rancher Desktop";
  if (has("/.orbstack/") || has("OrbStack.app")) return "OrbStack";
  if (has("/.colima/")) return "Colima";
  if (has("podman")) return "Podman";
  auto app = target.find(".app/");
  if (app != std::string::npos) return "the app bundle " + target.substr(0, app + 4);
  return {};
}

inline std::string uid_list_text(const std::vector<uid_type>& uids) {
  std::string text;
  for (auto u : uids) text += (text.empty() ? "" : ",") + std::to_string(u);
  return text;
}

inline std::vector<uid_type> parse_uid_list(const std::string& text) {
  std::vector<uid_type> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t next = text.find(',', pos);
    if (next == std::string::npos) next = text.size();
    std::string part = text.substr(pos, next - pos);
    if (!part.empty() && part.size() < 11 && part.find_first_not_of("0123456789") == std::string::npos)
      out.push_back(static_cast<uid_type>(std::stoul(part)));
    pos = next + 1;
  }
  return out;
}

/// "root:wheel 0755"-style description of a directory, for "why does this need admin rights".
inline std::string owner_mode_text(const file_status& st) {
  return std::to_string(st.uid) + ":" + std::to_string(st.gid) + " " + mode_text(st.mode);
}

}  // namespace detail

/// A set of symbolic links (see the file comment).
struct SymlinkSet {
  std::string link_dir;            ///< where `source_dir`'s entries are linked (absolute, normal)
  std::string source_dir;          ///< every entry not starting with '.' is linked into `link_dir`; empty: none
  std::vector<link_spec> links;    ///< single links, in addition
  bool take_over = false;          ///< policy (a): replace a foreign link or a regular file, kept for revert
  bool allow_dangling = false;     ///< policy (b): accept a target that does not exist (yet)
  mode_type dir_mode = 0755;       ///< mode of missing parent directories we create
  std::optional<uid_type> dir_uid; ///< owner of directories we create (default: whoever creates them)
  std::optional<gid_type> dir_gid;
  std::string label;               ///< id of the set (default: `link_dir`, else the first link's path)

  /// "links:/usr/local/bin".
  std::string id() const {
    if (!label.empty()) return "links:" + label;
    if (!link_dir.empty()) return "links:" + link_dir;
    return "links:" + (links.empty() ? std::string() : links.front().path);
  }
  static constexpr const char* kind_name = "symlink_set";
  const char* kind() const { return kind_name; }

  /// The typed desired state handed to an elevated runner (elevation.hpp): directories, links and
  /// policies; the runner lists `source_dir` itself.
  record_item desired_state() const {
    record_item item{id(), kind(), {}};
    item.fields = {{"link_dir", link_dir},
                   {"source_dir", source_dir},
                   {"take_over", take_over ? "1" : "0"},
                   {"allow_dangling", allow_dangling ? "1" : "0"},
                   {"dir_mode", std::to_string(dir_mode)},
                   {"label", label},
                   {"links", std::to_string(links.size())}};
    if (dir_uid) item.fields["dir_uid"] = std::to_string(*dir_uid);
    if (dir_gid) item.fields["dir_gid"] = std::to_string(*dir_gid);
    for (std::size_t i = 0; i < links.size(); ++i) {
      item.fields["link." + std::to_string(i) + ".path"] = links[i].path;
      item.fields["link." + std::to_string(i) + ".target"] = links[i].target;
    }
    return item;
  }

  /// Rebuilds a SymlinkSet from `desired_state()`, validating every field (untrusted input).
  static result<SymlinkSet> from_desired_state(const record_item& item) {
    auto bad = [&](const std::string& why) { return fail(errc::invalid_input, "read desired state", item.id, why); };
    auto number = [&](const std::string& key, unsigned long max) -> std::optional<unsigned long> {
      std::string text = item.get(key);
      if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
      unsigned long value = std::stoul(text);
      if (value > max) return std::nullopt;
      return value;
    };
    SymlinkSet set;
    set.link_dir = item.get("link_dir");
    set.source_dir = item.get("source_dir");
    if (!set.link_dir.empty() && !is_normal_path(set.link_dir)) return bad("link_dir must be absolute and normal");
    if (!set.source_dir.empty() && !is_normal_path(set.source_dir)) return bad("source_dir must be absolute and normal");
    set.take_over = item.get("take_over") == "1";
    set.allow_dangling = item.get("allow_dangling") == "1";
    set.label = item.get("label");
    auto mode = number("dir_mode", 07777);
    auto count = number("links", 4096);
    if (!mode || !count) return bad("bad dir_mode or link count");
    set.dir_mode = static_cast<mode_type>(*mode);
    if (item.fields.count("dir_uid")) {
      auto u = number("dir_uid", 0xFFFFFFFEul);
      if (!u) return bad("bad dir_uid");
      set.dir_uid = static_cast<uid_type>(*u);
    }
    if (item.fields.count("dir_gid")) {
      auto g = number("dir_gid", 0xFFFFFFFEul);
      if (!g) return bad("bad dir_gid");
      set.dir_gid = static_cast<gid_type>(*g);
    }
    for (std::size_t i = 0; i < *count; ++i) {
      std::string path = item.get("link." + std::to_string(i) + ".path");
      std::string target = item.get("link." + std::to_string(i) + ".target");
      if (!is_normal_path(path) || target.empty()) return bad("link " + std::to_string(i) + " is malformed");
      set.links.push_back({path, target});
    }
    if (set.id() != item.id) return bad("the step id does not match its parameters");
    return set;
  }

  /// The record id of the link at `path`.
  static std::string item_id(const std::string& path) { return "link:" + path; }
  /// The record id of the directories this set created (one item per scope, shared by its links,
  /// so they are removed once the last link in them is gone, whichever link made them).
  std::string dirs_id() const { return "linkdirs:" + id(); }

  /// Every link this set wants, in order: `source_dir`'s entries (sorted), then `links`. An empty
  /// or missing source directory is an error, never "zero links, done".
  template <class Fs, class Priv>
  result<std::vector<link_spec>> desired_links(context<Fs, Priv>& ctx) const {
    std::vector<link_spec> out;
    if (!source_dir.empty()) {
      if (!is_normal_path(source_dir) || !is_normal_path(link_dir))
        return fail(errc::invalid_input, "list links", source_dir + " -> " + link_dir,
                    "source and link directories must be absolute, normal paths");
      auto names = ctx.fs.list_dir(ctx.user_actor(), source_dir);
      if (!names && names.error().is_errno(EACCES) && ctx.priv.elevates_in_process())
        names = ctx.fs.list_dir(ctx.elevated_actor(), source_dir);
      if (!names) {
        error e = names.error();
        e.op = "list commands to link";
        e.hint = "the app's command directory is missing or unreadable: reinstall the app";
        return tl::unexpected(e);
      }
      for (const auto& name : *names)
        if (!name.empty() && name.front() != '.') out.push_back({join_path(link_dir, name), join_path(source_dir, name)});
      if (out.empty())
        return fail(errc::invalid_input, "list commands to link", source_dir, "the directory has no commands to link",
                    "reinstall the app; nothing was linked");
    }
    for (const auto& l : links) out.push_back(l);
    if (out.empty()) return fail(errc::invalid_input, "list links", id(), "the set names no links");
    for (const auto& l : out) {
      if (!is_normal_path(l.path) || l.path == "/")
        return fail(errc::invalid_input, "link", l.path, "not an absolute, normal path");
      if (l.target.empty() || l.target.find('\0') != std::string::npos || l.target.find('\n') != std::string::npos)
        return fail(errc::invalid_input, "link", l.path, "empty link target or one with a NUL or newline");
    }
    return out;
  }

  /// Reads every link once and reports, per link: absent (missing; "parent missing" when its
  /// directory must be created) / matches (correct) / differs (ours but stale, dangling, or a
  /// take-over) / conflict (foreign link with its owner, regular file, directory, self-pointing or
  /// looping link, missing target) / unreadable. Never writes.
  template <class Fs, class Priv>
  result<probe_report> probe(context<Fs, Priv>& ctx, const ledgers& books) const {
    auto wanted = desired_links(ctx);
    if (!wanted) return tl::unexpected(wanted.error());
    probe_report report{kind(), id(), {}};
    for (const auto& l : *wanted) report.items.push_back(probe_one(ctx, books, l));
    return report;
  }

  /// Pure: absent -> create, differs -> modify; matches, conflicts and unreadable links get none.
  plan make_plan(const probe_report& probed) const {
    plan p{kind(), id(), {}};
    for (const auto& item : probed.items) {
      if (item.state != item_state::absent && item.state != item_state::differs) continue;
      change c;
      c.item_id = item.id;
      c.kind = item.state == item_state::absent ? change_kind::create : change_kind::modify;
      c.object = item.detail.rfind("register", 0) == 0 ? "link record" : "link";
      c.path = item.path;
      c.before = item.current;
      c.after = item.desired;
      c.reason = c.object == "link record" ? item.detail : "-> " + item.desired;
      if (item.needs_elevation) c.reason += "; " + item.elevation_reason;
      c.needs_elevation = item.needs_elevation;
      c.elevation_reason = item.elevation_reason;
      c.expected = item.observed ? item.observed : std::optional<file_status>(file_status{});
      p.changes.push_back(c);
    }
    return p;
  }

  /// Executes the plan: creates missing parents (recorded), then creates or re-points each link
  /// atomically (temp link + rename, compare-and-swap against what probe saw), keeping a taken
  /// over link's target or file for revert, and records each link.
  template <class Fs, class Priv>
  apply_report apply(context<Fs, Priv>& ctx, const plan& p, const grant& g, ledgers& books) const {
    apply_report report{kind(), id(), {}, {}};
    std::size_t made = 0;
    for (const auto& c : p.changes) {
      if (c.needs_elevation && !g.elevated) {
        report.events.push_back(event{c.item_id, event_kind::skipped, c.path, g.refusal(), std::nullopt, false});
        continue;
      }
      auto done = apply_one(ctx, c, books);
      if (done) {
        ++made;
        report.events.push_back(event{c.item_id, event_kind::changed, c.path, *done, std::nullopt, c.needs_elevation});
      } else {
        report.events.push_back(
            event{c.item_id, event_kind::failed, c.path, done.error().message(), done.error(), c.needs_elevation});
      }
    }
    if (made > 0 && report.ok())
      report.notes.push_back(std::to_string(made) + " link(s) in place; commands found through them work in new "
                             "shells (run `hash -r` in open ones)");
    if (!report.ok())
      report.notes.push_back(
          "some links could not be made (see the failures); run again, or use the commands by their full path" +
          (source_dir.empty() ? std::string() : " in " + source_dir));
    return report;
  }

  /// What revert would change, from the records alone (the source directory may be gone).
  plan revert_plan(const ledgers& books) const {
    plan p{kind(), id(), {}};
    for (const record* scope : {&books.system, &books.user}) {
      for (const auto& [key, item] : scope->items) {
        if (!is_mine(key, item)) continue;
        std::string path = key.substr(5);
        change c;
        c.item_id = key;
        c.object = "link";
        c.path = path;
        c.before = item.get("written");
        c.needs_elevation = scope == &books.system;
        c.elevation_reason = c.needs_elevation ? "it was made with admin rights" : "";
        std::string backup = item.get("backup");
        c.kind = backup.empty() ? change_kind::remove : change_kind::modify;
        c.reason = backup == "file"   ? "restore the file hostcfg moved aside"
                   : backup == "link" ? "restore the link's old target " + item.get("backup_target")
                                      : "hostcfg created it";
        p.changes.push_back(c);
      }
    }
    return p;
  }

  /// Undoes what the records say: removes each link that still points at what we set, restores a
  /// taken-over link or file, removes directories we created when empty; a system link other
  /// users still rely on only loses this user's uid. Reports what it left and why.
  template <class Fs, class Priv>
  apply_report revert(context<Fs, Priv>& ctx, const grant& g, ledgers& books) const {
    return revert_if(ctx, g, books, [](const std::string&) { return true; });
  }

  /// `revert`, for the recorded links whose path satisfies `pick` only (moving from a fallback
  /// directory link by link).
  template <class Fs, class Priv, class Pick>
  apply_report revert_if(context<Fs, Priv>& ctx, const grant& g, ledgers& books, Pick pick) const {
    apply_report report{kind(), id(), {}, {}};
    for (bool privileged : {true, false}) {
      record& scope = books.scope(privileged);
      std::vector<record_item> mine;
      for (const auto& [key, item] : scope.items)
        if (is_mine(key, item) && pick(key.substr(5))) mine.push_back(item);
      for (const auto& item : mine) revert_one(ctx, g, books, privileged, item, report);
      remove_made_dirs(ctx, g, scope, privileged, report);
    }
    return report;
  }

  /// True when the records hold anything of this set (links, or directories it made).
  bool has_records(const ledgers& books) const {
    return !recorded_paths(books).empty() || books.system.find(dirs_id()) || books.user.find(dirs_id());
  }

  /// Paths of the links the records say this set made.
  std::vector<std::string> recorded_paths(const ledgers& books) const {
    std::vector<std::string> out;
    for (const record* scope : {&books.system, &books.user})
      for (const auto& [key, item] : scope->items)
        if (is_mine(key, item)) out.push_back(key.substr(5));
    return out;
  }

 private:
  bool is_mine(const std::string& key, const record_item& item) const {
    return key.rfind("link:", 0) == 0 && item.primitive == kind() && item.get("set") == id();
  }

  /// Removes the directories this set made in `scope`, innermost first, once none of its links is
  /// left there. One that still holds something (the user's files) is kept and said so; one that
  /// cannot be removed for another reason stays recorded for the next revert.
  template <class Ctx>
  void remove_made_dirs(Ctx& ctx, const grant& g, record& scope, bool privileged, apply_report& report) const {
    const record_item* made = scope.find(dirs_id());
    if (!made) return;
    for (const auto& [key, item] : scope.items)
      if (is_mine(key, item)) return;
    if (privileged && !g.elevated) return;
    auto dirs = detail::lines_of(made->get("dirs"));
    std::sort(dirs.begin(), dirs.end(), [](const std::string& a, const std::string& b) {
      return a.size() != b.size() ? a.size() > b.size() : a < b;
    });
    dirs.erase(std::unique(dirs.begin(), dirs.end()), dirs.end());
    std::string retry;
    for (const auto& d : dirs) {
      auto gone = rmdir_durably(ctx.fs, ctx.actor_for(privileged), d);
      if (gone || gone.error().is_errno(ENOENT)) continue;
      if (gone.error().is_errno(ENOTEMPTY) || gone.error().is_errno(EEXIST)) {
        report.notes.push_back("kept " + d + ", which hostcfg created: it holds files that are not hostcfg's");
        continue;
      }
      retry += d + "\n";
      report.notes.push_back("could not remove " + d + " (" + gone.error().message() + "); the next uninstall retries");
    }
    if (retry.empty()) {
      scope.erase(dirs_id());
    } else {
      record_item left = *made;
      left.fields["dirs"] = retry;
      scope.put(left);
    }
  }

  template <class Ctx>
  item_probe probe_one(Ctx& ctx, const ledgers& books, const link_spec& l) const {
    item_probe item;
    item.id = item_id(l.path);
    item.path = l.path;
    item.desired = l.target;
    const actor user = ctx.user_actor();
    auto conflict = [&](std::string why) {
      item.state = item_state::conflict;
      item.detail = std::move(why);
      return item;
    };
    auto wanted_abs = resolve_link_target(l.path, l.target);
    if (!wanted_abs) return conflict("refused: the target " + l.target + " cannot be made absolute");
    // Self-pointing and looping links, judged on physical paths (the link's directory may itself
    // be reached through a symlink, ansible#40740).
    auto phys_dir = detail::physical_path(ctx.fs, user, parent_path(l.path));
    if (!phys_dir) return conflict("refused: " + phys_dir.error().message());
    std::string phys_link = join_path(*phys_dir == "/" ? "" : *phys_dir, base_name(l.path));
    auto phys_target = detail::physical_path(ctx.fs, user, *wanted_abs, phys_link);
    if (*wanted_abs == l.path || (phys_target && path_is_within(*phys_target, phys_link)))
      return conflict("refused: " + l.path + " -> " + l.target + " would point at itself");
    if (!phys_target) return conflict("refused: " + l.path + " -> " + l.target + " loops (" +
                                      phys_target.error().message() + ")");
    auto target_st = ctx.fs.stat(user, *wanted_abs);
    if (!target_st && target_st.error().is_errno(ELOOP))
      return conflict("refused: the target " + *wanted_abs + " loops");
    bool target_missing = !target_st && target_st.error().is_errno(ENOENT);
    if (target_missing && !allow_dangling)
      return conflict("the target " + *wanted_abs + " does not exist (set allow_dangling to link it anyway)");

    const record_item* mine = books.find(item.id);
    auto ancestor = detail::nearest_existing_dir(ctx.fs, user, l.path);
    if (!ancestor) {
      if (ancestor.error().is_errno(EACCES)) {
        item.state = item_state::unreadable;
        item.detail = ancestor.error().message();
        return item;
      }
      return conflict("a non-directory stands where a parent directory is needed: " + ancestor.error().message());
    }
    auto st = ctx.fs.lstat(user, l.path);
    if (!st && st.error().is_errno(EACCES) && ctx.priv.elevates_in_process())
      st = ctx.fs.lstat(ctx.elevated_actor(), l.path);
    if (!st) {
      const error& e = st.error();
      if (!e.is_errno(ENOENT)) {
        item.state = item_state::unreadable;
        item.detail = e.message();
        return item;
      }
      item.state = item_state::absent;
      item.detail = ancestor->first == parent_path(l.path)
                        ? "missing"
                        : "missing; parent missing: directories below " + ancestor->first + " will be created (mode " +
                              detail::mode_text(dir_mode) + ")";
    } else {
      item.observed = *st;
      if (st->type == file_type::directory)
        return conflict("a directory stands at " + l.path + "; it is never replaced (move it away to link " +
                        l.target + ")");
      if (st->type == file_type::regular) {
        item.current = "regular file";
        if (!take_over)
          return conflict("a regular file stands at " + l.path + " (set take_over to replace it with a link to " +
                          l.target + "; the file is kept and restored on revert)");
        item.state = item_state::differs;
        item.detail = "a regular file stands there; taken over (moved aside, restored on revert)";
      } else if (st->type != file_type::symlink) {
        return conflict("a special file stands at " + l.path + "; it is never replaced");
      } else {
        auto current = ctx.fs.readlink(user, l.path);
        if (!current && current.error().is_errno(EACCES) && ctx.priv.elevates_in_process())
          current = ctx.fs.readlink(ctx.elevated_actor(), l.path);
        if (!current) {
          item.state = item_state::unreadable;
          item.detail = current.error().message();
          return item;
        }
        item.current = *current;
        auto current_abs = resolve_link_target(l.path, *current);
        std::string current_text = current_abs ? *current_abs : *current;
        bool dangling = false;
        if (current_abs) {
          auto followed = ctx.fs.stat(user, l.path);
          dangling = !followed && (followed.error().is_errno(ENOENT) || followed.error().is_errno(ELOOP));
        }
        if (current_abs && *current_abs == *wanted_abs) {
          item.state = item_state::matches;
          item.detail = dangling ? "correct (the target does not exist yet; allowed)" : "correct";
          register_user(ctx, books, item);
          return item;
        }
        if (mine && mine->get("target") == current_text) {
          item.state = item_state::differs;
          item.detail = "ours, stale: points at " + current_text + ", which hostcfg set before";
        } else if (dangling) {
          item.state = item_state::differs;
          item.detail = "dangling: points at missing " + current_text + "; replaced (the old target is kept for revert)";
        } else {
          std::string owner = detail::link_owner_hint(current_text);
          std::string whose = "foreign: " + l.path + " -> " + current_text +
                              (owner.empty() ? std::string() : " (belongs to " + owner + ")");
          if (!take_over) return conflict(whose + "; left alone (set take_over to re-point it to " + l.target + ")");
          item.state = item_state::differs;
          item.detail = whose + "; taken over (the old target is kept for revert)";
        }
      }
    }
    // Who may make the change: the user when they can write the directory, else elevation.
    if (!may_write_dir(user, ancestor->second)) {
      if (auto unsafe = detail::untrusted_for_root(ctx.fs, user, parent_path(l.path)))
        return conflict("unsafe path: " + *unsafe + "; hostcfg never works there with admin rights");
      item.needs_elevation = true;
      item.elevation_reason = ancestor->first + " is " + detail::owner_mode_text(ancestor->second) +
                              ", not writable by uid " + std::to_string(user.uid);
    }
    return item;
  }

  /// A correct system link that another user's run made: this user starts relying on it. Only
  /// when this process can write the privileged record (it elevates in process); otherwise the
  /// uid is added the next time this user's run changes the link with elevation.
  template <class Ctx>
  void register_user(Ctx& ctx, const ledgers& books, item_probe& item) const {
    const record_item* sys = books.system.find(item.id);
    if (!sys || sys->get("set") != id() || !ctx.priv.elevates_in_process()) return;
    uid_type uid = ctx.user_actor().uid;
    for (auto u : detail::parse_uid_list(sys->get("users")))
      if (u == uid) return;
    item.state = item_state::differs;
    item.detail = "register: the link is correct; record that uid " + std::to_string(uid) + " relies on it";
  }

  template <class Ctx>
  result<std::string> apply_one(Ctx& ctx, const change& c, ledgers& books) const {
    const bool elevated = c.needs_elevation;
    const actor who = ctx.actor_for(elevated);
    // A change made with root rights takes undo data only from the root-owned record: a forged
    // user record never becomes what root restores.
    const record_item* previous = elevated ? books.system.find(c.item_id) : books.find(c.item_id);
    const bool previous_is_system = books.system.find(c.item_id) != nullptr;
    record_item item = previous ? *previous : record_item{c.item_id, kind(), {}};
    item.fields["set"] = id();
    auto add_user = [&] {
      auto users = detail::parse_uid_list(item.get("users"));
      uid_type uid = ctx.user_actor().uid;
      bool present = false;
      for (auto u : users) present = present || u == uid;
      if (!present) users.push_back(uid);
      item.fields["users"] = detail::uid_list_text(users);
    };
    if (c.object == "link record") {
      add_user();
      books.system.put(item);
      return std::string("recorded that uid " + std::to_string(ctx.user_actor().uid) + " relies on this link");
    }
    auto target_abs = resolve_link_target(c.path, c.after);
    if (!target_abs) return tl::unexpected(target_abs.error());
    // Re-checked right before acting: the path may have been swapped since probe.
    if (elevated)
      if (auto unsafe = detail::untrusted_for_root(ctx.fs, ctx.user_actor(), parent_path(c.path)))
        return fail(errc::unsafe_path, "link", c.path, *unsafe, "hostcfg never works there with admin rights");
    auto made = make_parents(ctx.fs, who, parent_path(c.path), dir_mode);
    if (!made) return tl::unexpected(made.error());
    auto undo_dirs = [&] {
      for (auto it = made->rbegin(); it != made->rend(); ++it)
        if (!rmdir_durably(ctx.fs, who, *it)) break;
    };
    for (const auto& d : *made) {
      if (!dir_uid && !dir_gid) continue;
      auto st = ctx.fs.lstat(who, d);
      if (!st) continue;
      auto chowned = ctx.fs.lchown(who, d, dir_uid ? *dir_uid : st->uid, dir_gid ? *dir_gid : st->gid);
      if (!chowned) {
        undo_dirs();
        return tl::unexpected(chowned.error());
      }
    }
    const file_status expected = c.expected ? *c.expected : file_status{};
    std::string what = "created -> " + c.after;
    result<void> linked;
    if (expected.type == file_type::regular) {
      // Policy (a) for a file: move it aside in the same directory, then link; revert moves it back.
      // Not named like a temp (".<name>.hostcfg-*"): backends remove those as crash leftovers.
      std::string backup = join_path(parent_path(c.path), "." + base_name(c.path) + ".hostcfg_backup");
      auto in_way = ctx.fs.lstat(who, backup);
      if (in_way)
        return fail(errc::conflict, "take over", c.path, "a backup from an earlier take-over is still at " + backup,
                    "move it away by hand, then run again");
      auto now = ctx.fs.lstat(who, c.path);
      if (!now || !same_version(*now, expected))
        return fail(errc::changed_since_probe, "take over", c.path, "the file changed since it was probed",
                    "run again");
      auto moved = ctx.fs.rename(who, c.path, backup);
      if (!moved) return tl::unexpected(moved.error());
      linked = ctx.fs.replace_symlink(who, c.after, c.path, file_status{});
      if (!linked && !linked.error().is(errc::not_durable)) {
        (void)ctx.fs.rename(who, backup, c.path);  // put the file back: never lose it
        return tl::unexpected(linked.error());
      }
      item.fields["backup"] = "file";
      item.fields["backup_path"] = backup;
      what = "replaced a regular file (kept at " + backup + ") -> " + c.after;
    } else {
      if (expected.type == file_type::symlink) {
        auto before_abs = resolve_link_target(c.path, c.before);
        bool ours = previous && before_abs && previous->get("target") == *before_abs;
        if (!ours && item.get("backup").empty()) {
          item.fields["backup"] = "link";
          item.fields["backup_target"] = c.before;
        }
        what = (ours ? "re-pointed from " : "replaced the link to ") + c.before + " -> " + c.after;
      }
      linked = ctx.fs.replace_symlink(who, c.after, c.path, expected);
      if (!linked && !linked.error().is(errc::not_durable)) {
        undo_dirs();
        return tl::unexpected(linked.error());
      }
    }
    if (!made->empty()) {
      const record_item* known = books.scope(elevated).find(dirs_id());
      record_item dirs_item = known ? *known : record_item{dirs_id(), kind(), {{"set", id()}}};
      std::string dirs = dirs_item.get("dirs");
      for (const auto& d : *made) dirs += d + "\n";
      dirs_item.fields["dirs"] = dirs;
      books.scope(elevated).put(dirs_item);
    }
    item.fields["target"] = *target_abs;
    item.fields["written"] = c.after;
    if (elevated) add_user();
    if (previous && previous_is_system != elevated) books.scope(previous_is_system).erase(c.item_id);
    books.scope(elevated).put(item);
    if (!linked) what += " (the directory sync failed: run again to make sure it lasts)";
    if (!made->empty()) what += "; created " + made->front();
    return what;
  }

  template <class Ctx>
  void revert_one(Ctx& ctx, const grant& g, ledgers& books, bool privileged, const record_item& mine,
                  apply_report& report) const {
    const std::string path = mine.id.substr(5);
    auto push = [&](event_kind k, std::string message, std::optional<error> why = std::nullopt) {
      report.events.push_back(event{mine.id, k, path, std::move(message), std::move(why), privileged});
    };
    if (privileged) {
      uid_type uid = ctx.user_actor().uid;
      auto users = detail::parse_uid_list(mine.get("users"));
      std::vector<uid_type> others;
      bool listed = users.empty();
      for (auto u : users) {
        if (u == uid) listed = true;
        else others.push_back(u);
      }
      if (!listed) return;  // another user's link: not ours to undo
      if (!g.elevated) {
        push(event_kind::skipped, g.refusal());
        return;
      }
      if (!others.empty()) {
        record_item kept = mine;
        kept.fields["users"] = detail::uid_list_text(others);
        books.system.put(kept);
        push(event_kind::kept, "left in place: uid(s) " + detail::uid_list_text(others) + " still rely on it");
        return;
      }
    }
    const actor who = ctx.actor_for(privileged);
    if (privileged)
      if (auto unsafe = detail::untrusted_for_root(ctx.fs, ctx.user_actor(), parent_path(path))) {
        auto refused = fail(errc::unsafe_path, "revert", path, *unsafe, "hostcfg never works there with admin rights")
                           .value();
        push(event_kind::failed, refused.message(), refused);
        return;
      }
    const std::string backup = mine.get("backup");
    const std::string backup_path = mine.get("backup_path");
    auto st = ctx.fs.lstat(who, path);
    result<void> undone;
    std::string message;
    if (!st && st.error().is_errno(ENOENT)) {
      message = "already gone";
      if (backup == "file" && ctx.fs.lstat(who, backup_path)) {
        undone = ctx.fs.rename(who, backup_path, path);
        message = "already gone; restored the file hostcfg had moved aside";
      }
    } else if (!st) {
      undone = tl::unexpected(st.error());
    } else {
      auto current = st->type == file_type::symlink ? ctx.fs.readlink(who, path) : result<std::string>(std::string());
      if (!current) {  // cannot tell whether it is still ours: keep the record, retry next time
        push(event_kind::failed, current.error().message(), current.error());
        return;
      }
      auto current_abs = current && !current->empty() ? resolve_link_target(path, *current)
                                                      : result<std::string>(std::string());
      if (st->type != file_type::symlink || !current_abs || *current_abs != mine.get("target")) {
        std::string now = st->type == file_type::symlink ? "now points at " + (current ? *current : std::string("?"))
                                                         : "something else stands there now";
        auto drift = fail(errc::drifted, "revert", path, now + ", not what hostcfg set",
                          backup == "file" ? "left alone; the original file is still at " + backup_path
                                           : "left alone; remove it by hand if it is no longer needed")
                         .value();
        books.scope(privileged).erase(mine.id);
        push(event_kind::skipped, drift.message(), drift);
        return;
      }
      if (backup == "file") {
        undone = ctx.fs.rename(who, backup_path, path);
        message = "restored the file hostcfg had moved aside";
      } else if (backup == "link") {
        undone = ctx.fs.replace_symlink(who, mine.get("backup_target"), path, *st);
        if (!undone && undone.error().is(errc::not_durable)) undone = {};
        message = "restored the old link -> " + mine.get("backup_target");
      } else {
        undone = unlink_durably(ctx.fs, who, path);
        message = "removed";
      }
    }
    if (!undone) {
      push(event_kind::failed, undone.error().message(), undone.error());
      return;
    }
    books.scope(privileged).erase(mine.id);
    push(event_kind::changed, message);
  }
};

namespace detail {

/// converge's step for `fallback(SymlinkSet, all_of(SymlinkSet, PathEdit))` (the CLI-links
/// recipe, recipes/cli_links.hpp). It runs like every fallback - the primary first, the
/// alternative when elevation is not granted - except when the primary works again: the generic
/// fallback retires the alternative only once the primary is wholly in sync, and then all of it.
/// Here the move is link by link, after the primary's links were made: a fallback link goes once
/// the same command is correctly linked in the primary directory; a command left in conflict
/// there keeps its fallback link, and the PATH edit stays while any fallback link remains. Every
/// outcome gets a note saying what the user should do next. Defined here, beside SymlinkSet, so
/// every program that can name this step type sees the same definition.
template <class PathEdit>
struct runner<fallback_step<SymlinkSet, Group<SymlinkSet, PathEdit>>> {
  const fallback_step<SymlinkSet, Group<SymlinkSet, PathEdit>>& f;
  step_report step;
  std::optional<step_report> extra;
  bool use_alternative = false;

  template <class Ctx>
  void prepare(Ctx& ctx, const ledgers& books) { step = probe_and_plan(ctx, books, f.primary); }
  const step_report& elevation_step() const { return step; }
  void add_desired_state(record& payload) const { add_handoff(payload, f.primary); }

  template <class Ctx>
  void run(Ctx& ctx, ledgers& books, const grant& g) {
    use_alternative = !step.failure && step.planned.needs_elevation() && !g.elevated;
    if (!use_alternative) {
      apply_step(ctx, books, f.primary, step, g);
      return;
    }
    step.elevation = g;
    for (const auto& c : step.planned.changes)
      step.applied.events.push_back(event{c.item_id, event_kind::skipped, c.path, g.refusal(), std::nullopt, false});
    for (const auto& e : step.applied.events) ctx.emit(step.id, e);
    extra = probe_and_plan(ctx, books, f.alternative);
    extra->is_fallback = true;
    extra->fallback_for = step.id;
    apply_step(ctx, books, f.alternative, *extra, grant{});
  }

  template <class Ctx>
  void finish(Ctx& ctx, ledgers& books, converge_report& report) {
    const SymlinkSet& primary = f.primary;
    const SymlinkSet& links = f.alternative.template member<0>();
    const std::string primary_dir = primary.link_dir.empty() ? primary.id() : primary.link_dir;
    const std::string fallback_dir = links.link_dir.empty() ? links.id() : links.link_dir;
    const std::string source = primary.source_dir.empty() ? std::string("the app's command directory")
                                                          : primary.source_dir;
    probe_after(ctx, books, primary, step);
    if (use_alternative) {
      if (extra) probe_after(ctx, books, f.alternative, *extra);
      std::string why = step.elevation && step.elevation->answer_ ? answer_name(*step.elevation->answer_)
                                                                  : "not requested";
      if (step.elevation && step.elevation->from_record) why += ", a recorded decision: set re-prompt to ask again";
      if (extra && extra->ok() && extra->in_sync())
        extra->applied.notes.push_back("the commands are linked in " + fallback_dir + " instead of " + primary_dir +
                                       " (admin rights: " + why + "); reload your shells (open a new terminal) "
                                       "so PATH includes " + fallback_dir);
      else
        extra->applied.notes.push_back("the commands could not be put on PATH (admin rights: " + why +
                                       "); add " + source + " to your PATH, or run them by their full path");
      report.steps.push_back(std::move(step));
      report.steps.push_back(std::move(*extra));
      return;
    }
    if (step.failure) {
      step.applied.notes.push_back("no command was linked: " + step.failure->message());
      report.steps.push_back(std::move(step));
      return;
    }
    const probe_report& now = step.after ? *step.after : step.before;
    std::set<std::string> covered;
    for (const auto& item : now.items) {
      if (item.state == item_state::matches) covered.insert(base_name(item.path));
      else if (item.state == item_state::conflict) step.applied.notes.push_back("left alone: " + item.detail);
    }
    step_report retired;
    retired.primitive = f.alternative.kind();
    retired.id = f.alternative.id();
    retired.is_fallback = true;
    retired.fallback_for = step.id;
    retired.reverted = true;
    retired.applied.primitive = retired.primitive;
    retired.applied.id = retired.id;
    // converge stores the records after finish, so what the move changes in them is kept.
    if (links.has_records(books)) {
      // The primary's links exist now: only then do the fallback links go (a failed move keeps them).
      auto moved = links.revert_if(ctx, grant{}, books,
                                   [&](const std::string& path) { return covered.count(base_name(path)) > 0; });
      for (auto& e : moved.events) {
        e.item_id = member_prefix(0) + e.item_id;
        retired.applied.events.push_back(std::move(e));
      }
      for (auto& n : moved.notes) retired.applied.notes.push_back(std::move(n));
    }
    auto remaining = links.recorded_paths(books);
    const auto& path_edit = f.alternative.template member<1>();
    if (!remaining.empty()) {
      std::string names;
      for (const auto& p : remaining) names += (names.empty() ? "" : ", ") + base_name(p);
      retired.applied.notes.push_back(std::to_string(remaining.size()) + " command(s) keep their link in " +
                                      fallback_dir + " because " + primary_dir + " does not provide them (" + names +
                                      "); the PATH entry for " + fallback_dir + " stays until they move");
    } else if (!path_edit.revert_plan(books).empty()) {
      // No fallback link is left: the PATH edit goes too (retried by later runs if it fails).
      auto unpathed = path_edit.revert(ctx, grant{}, books);
      for (auto& e : unpathed.events) {
        e.item_id = member_prefix(1) + e.item_id;
        retired.applied.events.push_back(std::move(e));
      }
      for (auto& n : unpathed.notes) retired.applied.notes.push_back(std::move(n));
      if (unpathed.ok())
        retired.applied.notes.push_back("the commands moved from " + fallback_dir + " to " + primary_dir +
                                        "; reload your shells (open a new terminal)");
    }
    for (const auto& e : retired.applied.events) ctx.emit(retired.id, e);
    report.steps.push_back(std::move(step));
    if (!retired.applied.events.empty() || !retired.applied.notes.empty()) report.steps.push_back(std::move(retired));
  }
};

}  // namespace detail

HOSTCFG_END_NAMESPACE
