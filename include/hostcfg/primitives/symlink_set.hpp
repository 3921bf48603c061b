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
/// another user still relies on; a user who finds them already correct is added to that list (no
/// prompt when the process is root; through the elevated runner, with its one prompt, otherwise).
///
/// Each conflict left alone is noted in the user's record (what stood there, whose, since when),
/// so a later run and uninstall can say "left /usr/local/bin/docker alone (a Homebrew link) since
/// ..."; revert never touches it. With `executables` and `companions`, probe also resolves the
/// links (LESSONS 20): each must end at an executable file, and each companion's first match on
/// the caller's PATH must be ours. A correct link costs one lstat and one readlink.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
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
    if (auto uid = record_item::parse_decimal(part, 0xffffffffUL)) out.push_back(static_cast<uid_type>(*uid));
    pos = next + 1;
  }
  return out;
}

/// A name a program looks up through PATH: non-empty, no '/', not "." or "..", no NUL or newline.
inline bool valid_command_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\n') == std::string::npos && name.find('\0') == std::string::npos;
}

/// "root:wheel 0755"-style description of a directory, for "why does this need admin rights".
inline std::string owner_mode_text(const file_status& st) {
  return std::to_string(st.uid) + ":" + std::to_string(st.gid) + " " + mode_text(st.mode);
}


/// "2023-11-14 22:13:20 UTC" for seconds since the epoch. Pure (no locale, no time zone), so a
/// record written on one machine reads the same everywhere (Hinnant's civil_from_days).
inline std::string utc_text(std::int64_t seconds) {
  std::int64_t days = seconds / 86400;
  std::int64_t rem = seconds % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  days += 719468;
  const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const std::int64_t doe = days - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  char text[64];
  std::snprintf(text, sizeof text, "%04lld-%02lld-%02lld %02lld:%02lld:%02lld UTC", static_cast<long long>(year),
                static_cast<long long>(month), static_cast<long long>(day), static_cast<long long>(rem / 3600),
                static_cast<long long>(rem / 60 % 60), static_cast<long long>(rem % 60));
  return text;
}

/// What stood at a link's path when hostcfg left it alone: the facts a conflict note records
/// (issue 3, "each conflict left alone"), so a later run and uninstall can name it and its age.
struct link_standing {
  std::string what;    ///< "link", "file", "directory", "special file"
  std::string owner;   ///< for a link: who its target says it belongs to ("Homebrew"), else ""
  std::string target;  ///< for a link: its target as stored
  uid_type uid = 0;    ///< the object's owner

  /// "a Homebrew link (-> /opt/homebrew/...)", "a regular file owned by uid 501".
  std::string text() const {
    if (what == "link") {
      bool one_word = !owner.empty() && owner.find(' ') == std::string::npos;
      if (one_word) return "a " + owner + " link (-> " + target + ")";
      return "a link (-> " + target + (owner.empty() ? std::string() : "; belongs to " + owner) + ")";
    }
    return std::string(what == "file" ? "a regular file" : "a " + what) + " owned by uid " + std::to_string(uid);
  }
  friend bool operator==(const link_standing& a, const link_standing& b) {
    return a.what == b.what && a.owner == b.owner && a.target == b.target && a.uid == b.uid;
  }
};

/// Facts about one link directory, found once per probe however many links it holds.
struct link_dir_facts {
  std::optional<result<std::string>> physical;                              ///< physical_path of the dir
  std::optional<result<std::pair<std::string, file_status>>> ancestor;      ///< nearest existing dir
  std::optional<std::optional<std::string>> unsafe_for_root;                ///< untrusted_for_root
};

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
  /// The links are commands: probe also follows each correct link to its end (stat, as the user)
  /// and reports one that does not end at an executable regular file. readlink alone is not
  /// enough (docker/for-mac#5593: the links "looked right" while the CLI failed).
  bool executables = false;
  /// Names the linked programs find through PATH (Docker's `docker` runs `com.docker.cli`): each
  /// must be one of the set's links, and its first match on `search_path` must be that link or its
  /// target, else probe reports what shadows it. Read-only: it never causes a write.
  std::vector<std::string> companions;
  /// The PATH the companions are looked up on, in order: the caller gives it (the user's login
  /// PATH, as its shell would have it), never this process's environment (it may be root's).
  std::vector<std::string> search_path;

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
    item.fields["executables"] = executables ? "1" : "0";
    item.fields["companions"] = std::to_string(companions.size());
    for (std::size_t i = 0; i < companions.size(); ++i) item.fields["companion." + std::to_string(i)] = companions[i];
    item.fields["search_path"] = std::to_string(search_path.size());
    for (std::size_t i = 0; i < search_path.size(); ++i) item.fields["path." + std::to_string(i)] = search_path[i];
    for (std::size_t i = 0; i < links.size(); ++i) {
      item.fields["link." + std::to_string(i) + ".path"] = links[i].path;
      item.fields["link." + std::to_string(i) + ".target"] = links[i].target;
    }
    return item;
  }

  /// Rebuilds a SymlinkSet from `desired_state()`, validating every field (untrusted input).
  static result<SymlinkSet> from_desired_state(const record_item& item) {
    auto bad = [&](const std::string& why) { return fail(errc::invalid_input, "read desired state", item.id, why); };
    SymlinkSet set;
    set.link_dir = item.get("link_dir");
    set.source_dir = item.get("source_dir");
    if (!set.link_dir.empty() && !is_normal_path(set.link_dir)) return bad("link_dir must be absolute and normal");
    if (!set.source_dir.empty() && !is_normal_path(set.source_dir)) return bad("source_dir must be absolute and normal");
    set.take_over = item.get("take_over") == "1";
    set.allow_dangling = item.get("allow_dangling") == "1";
    set.label = item.get("label");
    auto mode = item.number("dir_mode", 07777);
    auto count = item.number("links", 4096);
    if (!mode || !count) return bad("bad dir_mode or link count");
    set.dir_mode = static_cast<mode_type>(*mode);
    if (item.fields.count("dir_uid")) {
      auto u = item.number("dir_uid", 0xFFFFFFFEul);
      if (!u) return bad("bad dir_uid");
      set.dir_uid = static_cast<uid_type>(*u);
    }
    if (item.fields.count("dir_gid")) {
      auto g = item.number("dir_gid", 0xFFFFFFFEul);
      if (!g) return bad("bad dir_gid");
      set.dir_gid = static_cast<gid_type>(*g);
    }
    set.executables = item.get("executables") == "1";
    // Absent counts are zero (a payload of a build without these fields); present ones must parse.
    auto optional_count = [&](const std::string& key) -> std::optional<unsigned long> {
      return item.fields.count(key) ? item.number(key, 4096) : std::optional<unsigned long>(0);
    };
    auto companion_count = optional_count("companions");
    auto path_count = optional_count("search_path");
    if (!companion_count || !path_count) return bad("bad companion or search path count");
    for (std::size_t i = 0; i < *companion_count; ++i) {
      std::string name = item.get("companion." + std::to_string(i));
      if (!detail::valid_command_name(name)) return bad("companion " + std::to_string(i) + " is not a command name");
      set.companions.push_back(name);
    }
    for (std::size_t i = 0; i < *path_count; ++i) {
      std::string dir = item.get("path." + std::to_string(i));
      if (!is_normal_path(dir)) return bad("search path entry " + std::to_string(i) + " must be absolute and normal");
      set.search_path.push_back(dir);
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
  /// Prefix of conflict-note ids.
  static constexpr const char* conflict_prefix = "conflict:";
  /// The user-record id of the note that hostcfg left what stands at `path` alone (a conflict).
  static std::string conflict_id(const std::string& path) { return conflict_prefix + path; }
  /// The probe item id of a companion check.
  static std::string companion_id(const std::string& name) { return "companion:" + name; }
  /// The record id of the directories this set created (one item per scope, shared by its links,
  /// so they are removed once the last link in them is gone, whichever link made them).
  std::string dirs_id() const { return "linkdirs:" + id(); }

  /// Every link this set wants, in order: `source_dir`'s entries (sorted), then `links`. An empty
  /// or missing source directory is an error, never "zero links, done".
  template <class Fs, class Priv>
  result<std::vector<link_spec>> desired_links(context<Fs, Priv>& ctx) const {
    std::size_t listed = 0;
    return collect_links(ctx, listed);
  }

  /// `desired_links`, also saying how many of them (the first `listed`) come from listing
  /// `source_dir`: their targets were just seen there, so probe need not stat them again.
  template <class Fs, class Priv>
  result<std::vector<link_spec>> collect_links(context<Fs, Priv>& ctx, std::size_t& listed) const {
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
    listed = out.size();
    for (const auto& l : links) out.push_back(l);
    if (out.empty()) return fail(errc::invalid_input, "list links", id(), "the set names no links");
    for (const auto& l : out) {
      if (!is_normal_path(l.path) || l.path == "/")
        return fail(errc::invalid_input, "link", l.path, "not an absolute, normal path");
      if (l.target.empty() || l.target.find('\0') != std::string::npos || l.target.find('\n') != std::string::npos)
        return fail(errc::invalid_input, "link", l.path, "empty link target or one with a NUL or newline");
    }
    if (!companions.empty() && search_path.empty())
      return fail(errc::invalid_input, "check companions", id(), "companions are looked up on search_path, which is empty",
                  "give the user's PATH directories in search_path");
    for (const auto& dir : search_path)
      if (!is_normal_path(dir))
        return fail(errc::invalid_input, "check companions", dir, "search_path entries must be absolute, normal paths");
    for (const auto& name : companions) {
      bool linked = false;
      for (const auto& l : out) linked = linked || base_name(l.path) == name;
      if (!detail::valid_command_name(name) || !linked)
        return fail(errc::invalid_input, "check companions", name, "a companion must be the name of one of the set's links");
    }
    return out;
  }

  /// Reads every link once and reports, per link: absent (missing; "parent missing" when its
  /// directory must be created) / matches (correct) / differs (ours but stale, dangling, or a
  /// take-over) / conflict (foreign link with its owner, regular file, directory, self-pointing or
  /// looping link, missing target) / unreadable. Never writes.
  ///
  /// Cost (issue 10): a correct link is one lstat and one readlink (plus one stat when
  /// `executables` is set, or when the link was named in `links`, whose target nobody listed);
  /// each link directory's facts are looked up once per probe, not once per link; only a link
  /// that needs a change gets the full self-pointing / loop / target checks.
  ///
  /// Besides one item per link (id "link:<path>"), the report holds bookkeeping items: a conflict
  /// note to write, update or forget in the user's record ("conflict:<path>", state differs), and
  /// one item per companion ("companion:<name>": matches, or conflict naming what shadows it).
  template <class Fs, class Priv>
  result<probe_report> probe(context<Fs, Priv>& ctx, const ledgers& books) const {
    std::size_t listed = 0;
    auto wanted = collect_links(ctx, listed);
    if (!wanted) return tl::unexpected(wanted.error());
    probe_report report{kind(), id(), {}};
    std::map<std::string, detail::link_dir_facts> dirs;
    std::vector<std::optional<detail::link_standing>> standing(wanted->size());
    for (std::size_t i = 0; i < wanted->size(); ++i)
      report.items.push_back(probe_one(ctx, books, (*wanted)[i], i < listed, dirs, standing[i]));
    // The elevated runner reads only the root-owned record; conflict notes live in the user's,
    // which the user's own run keeps.
    if (ctx.read_user_record) note_conflicts(books, *wanted, standing, report);
    probe_companions(ctx, *wanted, report);
    return report;
  }

  /// Pure: absent -> create, differs -> modify; matches, conflicts and unreadable links get none.
  plan make_plan(const probe_report& probed) const {
    plan p{kind(), id(), {}};
    for (const auto& item : probed.items) {
      if (item.state != item_state::absent && item.state != item_state::differs) continue;
      if (item.id.rfind(conflict_prefix, 0) == 0) {
        // A note in the user's record, never a change on disk: no elevation, nothing to revert.
        change c;
        c.item_id = item.id;
        c.kind = item.current.empty() ? change_kind::create
                 : item.desired.empty() ? change_kind::remove
                                        : change_kind::modify;
        c.object = "conflict note";
        c.path = item.path;
        c.before = item.current;
        c.after = item.desired;
        c.reason = item.detail;
        c.expected = item.observed ? item.observed : std::optional<file_status>(file_status{});
        p.changes.push_back(c);
        continue;
      }
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
      const bool note = c.object == "conflict note";
      auto done = note ? note_conflict(ctx, c, books) : apply_one(ctx, c, books);
      if (done) {
        if (!note && c.object == "link") ++made;
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
    // Conflicts were never ours: revert does not touch them, it says so and forgets the notes.
    std::vector<std::string> noted;
    for (const auto& [key, item] : books.user.items)
      if (is_my_note(key, item) && pick(key.substr(std::string(conflict_prefix).size()))) noted.push_back(key);
    for (const auto& key : noted) {
      const record_item& item = books.user.items.at(key);
      report.notes.push_back("left " + key.substr(std::string(conflict_prefix).size()) + " alone (" +
                             standing_of(item).text() + ") since " + detail::utc_text(since_of(item)) +
                             ": it is not hostcfg's, so it was not touched");
      books.user.erase(key);
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
  bool is_my_note(const std::string& key, const record_item& item) const {
    return key.rfind(conflict_prefix, 0) == 0 && item.primitive == kind() && item.get("set") == id();
  }
  static detail::link_standing standing_of(const record_item& item) {
    detail::link_standing s{item.get("what"), item.get("owner"), item.get("target"), 0};
    auto uids = detail::parse_uid_list(item.get("uid"));
    if (!uids.empty()) s.uid = uids.front();
    return s;
  }
  static std::int64_t since_of(const record_item& item) {
    std::string text = item.get("since");
    if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos) return 0;
    return std::stoll(text);
  }

  /// What stands at `path`, seen as probe sees it (the user, else root when in process).
  template <class Ctx>
  result<detail::link_standing> observe_standing(Ctx& ctx, const std::string& path, const file_status& st) const {
    detail::link_standing s;
    s.uid = st.uid;
    s.what = st.type == file_type::symlink     ? "link"
             : st.type == file_type::regular   ? "file"
             : st.type == file_type::directory ? "directory"
                                               : "special file";
    if (st.type == file_type::symlink) {
      auto target = ctx.fs.readlink(ctx.user_actor(), path);
      if (!target && target.error().is_errno(EACCES) && ctx.priv.elevates_in_process())
        target = ctx.fs.readlink(ctx.elevated_actor(), path);
      if (!target) return tl::unexpected(target.error());
      s.target = *target;
      auto absolute = resolve_link_target(path, *target);
      s.owner = detail::link_owner_hint(absolute ? *absolute : *target);
    }
    return s;
  }

  /// Plans the conflict notes: one for each link left alone whose note is missing or out of date,
  /// one "forget" for each note of this set whose conflict is gone. An up-to-date note only adds
  /// its age to the link's detail ("left alone since ...").
  void note_conflicts(const ledgers& books, const std::vector<link_spec>& wanted,
                      const std::vector<std::optional<detail::link_standing>>& standing, probe_report& report) const {
    std::set<std::string> paths;
    std::vector<item_probe> notes;
    for (std::size_t i = 0; i < wanted.size(); ++i) {
      const std::string& path = wanted[i].path;
      paths.insert(path);
      const record_item* noted = books.user.find(conflict_id(path));
      if (noted && !is_my_note(noted->id, *noted)) noted = nullptr;
      item_probe note;
      note.id = conflict_id(path);
      note.path = path;
      note.state = item_state::differs;
      note.observed = report.items[i].observed;
      if (standing[i]) {
        if (noted && standing_of(*noted) == *standing[i]) {
          report.items[i].detail += "; left alone since " + detail::utc_text(since_of(*noted));
          continue;
        }
        note.current = noted ? standing_of(*noted).text() : std::string();
        note.desired = standing[i]->text();
        note.detail = "note in the record that " + path + " (" + note.desired + ") is left alone";
        notes.push_back(note);
      } else if (noted) {
        note.current = standing_of(*noted).text();
        note.detail = "forget the note about " + path + ": nothing is left alone there any more";
        notes.push_back(note);
      }
    }
    for (const auto& [key, item] : books.user.items) {
      if (!is_my_note(key, item)) continue;
      std::string path = key.substr(std::string(conflict_prefix).size());
      if (paths.count(path)) continue;
      item_probe note;
      note.id = key;
      note.path = path;
      note.state = item_state::differs;
      note.current = standing_of(item).text();
      note.detail = "forget the note about " + path + ": the set no longer links it";
      notes.push_back(note);
    }
    for (auto& n : notes) report.items.push_back(std::move(n));
  }

  /// Writes (or forgets) one conflict note in the user's record. What stands there is looked at
  /// again and must be the version probe saw (compare-and-swap), so the note says what is there.
  template <class Ctx>
  result<std::string> note_conflict(Ctx& ctx, const change& c, ledgers& books) const {
    if (c.kind == change_kind::remove) {
      books.user.erase(c.item_id);
      return std::string("forgot the note: nothing is left alone there any more");
    }
    auto st = ctx.fs.lstat(ctx.user_actor(), c.path);
    if (!st && st.error().is_errno(EACCES) && ctx.priv.elevates_in_process())
      st = ctx.fs.lstat(ctx.elevated_actor(), c.path);
    if (!st) return tl::unexpected(st.error());
    if (c.expected && !same_version(*st, *c.expected))
      return fail(errc::changed_since_probe, "note conflict", c.path, "it changed since it was probed", "run again");
    auto seen = observe_standing(ctx, c.path, *st);
    if (!seen) return tl::unexpected(seen.error());
    record_item note{c.item_id, kind(), {}};
    note.fields = {{"set", id()},
                   {"what", seen->what},
                   {"owner", seen->owner},
                   {"target", seen->target},
                   {"uid", std::to_string(seen->uid)},
                   {"since", std::to_string(ctx.clock())}};
    books.user.put(note);
    return "noted: left alone (" + seen->text() + ")";
  }

  /// One item per companion: its first match on `search_path` (stat, as the user, as a shell's
  /// PATH search would find it) must be the set's link of that name or the link's target.
  template <class Ctx>
  void probe_companions(Ctx& ctx, const std::vector<link_spec>& wanted, probe_report& report) const {
    const actor user = ctx.user_actor();
    for (const auto& name : companions) {
      const link_spec* ours = nullptr;
      for (const auto& l : wanted)
        if (!ours && base_name(l.path) == name) ours = &l;
      if (!ours) continue;  // desired_links refuses such a set; kept for safety
      auto ours_target = resolve_link_target(ours->path, ours->target);
      item_probe item;
      item.id = companion_id(name);
      item.path = ours->path;
      item.desired = ours->path;
      std::optional<std::string> found;
      for (const auto& dir : search_path) {
        std::string candidate = join_path(dir, name);
        auto st = ctx.fs.stat(user, candidate);
        if (st && st->type == file_type::regular && (st->mode & 0111) != 0) {
          found = candidate;
          break;
        }
      }
      if (!found) {
        std::string dirs;
        for (const auto& d : search_path) dirs += (dirs.empty() ? "" : ":") + d;
        item.state = item_state::conflict;
        item.detail = name + " is not found on PATH (" + dirs + "): the linked programs cannot start it";
        report.items.push_back(item);
        continue;
      }
      item.path = *found;
      item.current = *found;
      bool is_ours = *found == ours->path || (ours_target && *found == *ours_target);
      if (!is_ours) {  // another link to the very same file is as good as ours
        auto st = ctx.fs.lstat(user, *found);
        if (st && st->type == file_type::symlink) {
          auto target = ctx.fs.readlink(user, *found);
          auto absolute = target ? resolve_link_target(*found, *target) : result<std::string>(std::string());
          is_ours = target && absolute && ours_target && *absolute == *ours_target;
        }
      }
      if (is_ours) {
        item.state = item_state::matches;
        item.detail = name + " on PATH resolves to " + *found + " (ours)";
      } else {
        std::string owner = detail::link_owner_hint(*found);
        item.state = item_state::conflict;
        item.detail = name + " on PATH resolves to " + *found + " first (shadowing ours)" +
                      (owner.empty() ? std::string() : "; it belongs to " + owner) + ": put " +
                      parent_path(ours->path) + " before " + parent_path(*found) + " on PATH, or remove it";
      }
      report.items.push_back(item);
    }
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
  item_probe probe_one(Ctx& ctx, const ledgers& books, const link_spec& l, bool listed,
                       std::map<std::string, detail::link_dir_facts>& dirs,
                       std::optional<detail::link_standing>& standing) const {
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
    if (*wanted_abs == l.path) return conflict("refused: " + l.path + " -> " + l.target + " would point at itself");

    // The link itself first: for a correct link this lstat and readlink are all it costs.
    auto st = ctx.fs.lstat(user, l.path);
    bool user_reached_link = static_cast<bool>(st);  // no step below was retried as root
    if (!st && st.error().is_errno(EACCES) && ctx.priv.elevates_in_process())
      st = ctx.fs.lstat(ctx.elevated_actor(), l.path);
    std::optional<result<std::string>> current;
    if (st && st->type == file_type::symlink) {
      current = ctx.fs.readlink(user, l.path);
      user_reached_link = user_reached_link && static_cast<bool>(*current);
      if (!*current && current->error().is_errno(EACCES) && ctx.priv.elevates_in_process())
        current = ctx.fs.readlink(ctx.elevated_actor(), l.path);
      if (*current) {
        auto current_abs = resolve_link_target(l.path, **current);
        if (current_abs && *current_abs == *wanted_abs) {
          item.observed = *st;
          item.current = **current;
          return probe_correct(ctx, books, l, *wanted_abs, listed, user_reached_link, item);
        }
      }
    }

    // Something will change, or is in the way: the full checks. Self-pointing and looping links
    // are judged on physical paths (the link's directory may be reached through a symlink,
    // ansible#40740); the directory's facts are shared by every link in it.
    detail::link_dir_facts& facts = dirs[parent_path(l.path)];
    if (!facts.physical) facts.physical = detail::physical_path(ctx.fs, user, parent_path(l.path));
    const result<std::string>& phys_dir = *facts.physical;
    if (!phys_dir) return conflict("refused: " + phys_dir.error().message());
    std::string phys_link = join_path(*phys_dir == "/" ? "" : *phys_dir, base_name(l.path));
    auto phys_target = detail::physical_path(ctx.fs, user, *wanted_abs, phys_link);
    if (phys_target && path_is_within(*phys_target, phys_link))
      return conflict("refused: " + l.path + " -> " + l.target + " would point at itself");
    if (!phys_target) return conflict("refused: " + l.path + " -> " + l.target + " loops (" +
                                      phys_target.error().message() + ")");
    auto target_st = ctx.fs.stat(user, *wanted_abs);
    if (!target_st && target_st.error().is_errno(ELOOP))
      return conflict("refused: the target " + *wanted_abs + " loops");
    bool target_missing = !target_st && target_st.error().is_errno(ENOENT);
    if (target_missing && !allow_dangling)
      return conflict("the target " + *wanted_abs + " does not exist (set allow_dangling to link it anyway)");
    if (executables && target_st && (target_st->type != file_type::regular || (target_st->mode & 0111) == 0))
      return conflict("the target " + *wanted_abs + " is not an executable regular file (" +
                      (target_st->type == file_type::regular ? "mode " + detail::mode_text(target_st->mode)
                                                             : std::string("not a regular file")) +
                      "); a link to it would not run");

    const record_item* mine = books.find(item.id);
    if (!facts.ancestor) facts.ancestor = detail::nearest_existing_dir(ctx.fs, user, l.path);
    const auto& ancestor = *facts.ancestor;
    if (!ancestor) {
      if (ancestor.error().is_errno(EACCES)) {
        item.state = item_state::unreadable;
        item.detail = ancestor.error().message();
        return item;
      }
      return conflict("a non-directory stands where a parent directory is needed: " + ancestor.error().message());
    }
    auto stands = [&](const file_status& seen, std::string target, std::string owner) {
      standing = detail::link_standing{seen.type == file_type::symlink     ? "link"
                                       : seen.type == file_type::regular   ? "file"
                                       : seen.type == file_type::directory ? "directory"
                                                                           : "special file",
                                       std::move(owner), std::move(target), seen.uid};
    };
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
      if (st->type == file_type::directory) {
        stands(*st, {}, {});
        return conflict("a directory stands at " + l.path + "; it is never replaced (move it away to link " +
                        l.target + ")");
      }
      if (st->type == file_type::regular) {
        item.current = "regular file";
        if (!take_over) {
          stands(*st, {}, {});
          return conflict("a regular file stands at " + l.path + " (set take_over to replace it with a link to " +
                          l.target + "; the file is kept and restored on revert)");
        }
        item.state = item_state::differs;
        item.detail = "a regular file stands there; taken over (moved aside, restored on revert)";
      } else if (st->type != file_type::symlink) {
        stands(*st, {}, {});
        return conflict("a special file stands at " + l.path + "; it is never replaced");
      } else {
        if (!*current) {
          item.state = item_state::unreadable;
          item.detail = current->error().message();
          return item;
        }
        item.current = **current;
        auto current_abs = resolve_link_target(l.path, **current);
        std::string current_text = current_abs ? *current_abs : **current;
        bool dangling = false;
        if (current_abs) {
          auto followed = ctx.fs.stat(user, l.path);
          dangling = !followed && (followed.error().is_errno(ENOENT) || followed.error().is_errno(ELOOP));
        }
        // `was_target`: written ahead by a run that ended before it re-pointed the link.
        if (mine && (mine->get("target") == current_text ||
                     (mine->fields.count("was_target") != 0 && mine->get("was_target") == current_text))) {
          item.state = item_state::differs;
          item.detail = "ours, stale: points at " + current_text + ", which hostcfg set before";
        } else if (dangling) {
          item.state = item_state::differs;
          item.detail = "dangling: points at missing " + current_text + "; replaced (the old target is kept for revert)";
        } else {
          std::string owner = detail::link_owner_hint(current_text);
          std::string whose = "foreign: " + l.path + " -> " + current_text +
                              (owner.empty() ? std::string() : " (belongs to " + owner + ")");
          if (!take_over) {
            stands(*st, **current, owner);
            return conflict(whose + "; left alone (set take_over to re-point it to " + l.target + ")");
          }
          item.state = item_state::differs;
          item.detail = whose + "; taken over (the old target is kept for revert)";
        }
      }
    }
    // Who may make the change: the user when they can write the directory, else elevation.
    if (!may_write_dir(user, ancestor->second)) {
      if (!facts.unsafe_for_root) facts.unsafe_for_root = detail::untrusted_for_root(ctx.fs, user, parent_path(l.path));
      if (*facts.unsafe_for_root)
        return conflict("unsafe path: " + **facts.unsafe_for_root + "; hostcfg never works there with admin rights");
      item.needs_elevation = true;
      item.elevation_reason = ancestor->first + " is " + detail::owner_mode_text(ancestor->second) +
                              ", not writable by uid " + std::to_string(user.uid);
    }
    return item;
  }

  /// A link that already points at its target. Followed (one stat) only when that tells
  /// something: a target named in `links` (nobody listed it: it may be missing), or
  /// `executables` (it must end at an executable regular file, as the user sees it).
  template <class Ctx>
  item_probe probe_correct(Ctx& ctx, const ledgers& books, const link_spec& l, const std::string& wanted_abs,
                           bool listed, bool user_reached_link, item_probe item) const {
    item.state = item_state::matches;
    item.detail = "correct";
    if (!listed || executables || allow_dangling) {
      // A link whose text is the absolute, normal target is followed by stat-ing that target: the
      // same walk the kernel would take from the link, without reading the link a second time
      // (two system calls per link of a no-op converge). Only when the user's own lstat and
      // readlink reached the link: one read as root for the user (a directory the user cannot
      // search) must be followed from the link, as the user, so that "as the user sees it" stays
      // true. Any other text (relative, or with '.' or '..' that a symlink on the way would
      // resolve differently) is followed from the link too. The one difference left: the hop
      // through the link itself no longer counts toward the backend's limit of links followed
      // (40 for PosixFs), so a target chain one link longer still resolves.
      const bool direct = user_reached_link && item.current == wanted_abs;
      const std::string& follow = direct ? wanted_abs : l.path;
      auto followed = ctx.fs.stat(ctx.user_actor(), follow);
      auto conflict = [&](std::string why) {
        item.state = item_state::conflict;
        item.detail = std::move(why);
        return item;
      };
      if (!followed) {
        const error& e = followed.error();
        if (e.is_errno(ELOOP)) return conflict("refused: the target " + wanted_abs + " loops");
        if (e.is_errno(ENOENT) && !allow_dangling)
          return conflict("the target " + wanted_abs + " does not exist (set allow_dangling to link it anyway)");
        if (e.is_errno(ENOENT)) item.detail = "correct (the target does not exist yet; allowed)";
        else if (executables)
          return conflict(l.path + " points at " + wanted_abs + " as it should, but uid " +
                          std::to_string(ctx.user_actor().uid) + " cannot follow it: " + e.message());
      } else if (executables && (followed->type != file_type::regular || (followed->mode & 0111) == 0)) {
        return conflict(l.path + " points at " + wanted_abs + " as it should, but that is not an executable " +
                        "regular file (" +
                        (followed->type == file_type::regular ? "mode " + detail::mode_text(followed->mode)
                                                              : std::string("not a regular file")) +
                        "): the command would not run");
      }
    }
    register_user(ctx, books, item);
    return item;
  }

  /// A correct system link that another user's run made: this user starts relying on it. The
  /// list is in the root-owned record. A process that is root (in process) writes it directly,
  /// with no prompt. One that hands elevated work to a runner (CommandPrivilege as a user) makes
  /// it an elevated change: it is handed off like any other and costs the one prompt of the run;
  /// the runner itself (which reads only the root-owned record) keeps it elevated, so it is not
  /// refused as "a change the user could make alone". A backend that can do neither leaves it.
  template <class Ctx>
  void register_user(Ctx& ctx, const ledgers& books, item_probe& item) const {
    const record_item* sys = books.system.find(item.id);
    if (!sys || sys->get("set") != id()) return;
    const bool runner = !ctx.read_user_record;
    const bool direct = !runner && ctx.priv.elevates_in_process();
    if (!runner && !direct && !detail::has_run_elevated<std::decay_t<decltype(ctx.priv)>>::value) return;
    uid_type uid = ctx.user_actor().uid;
    for (auto u : detail::parse_uid_list(sys->get("users")))
      if (u == uid) return;
    item.state = item_state::differs;
    item.detail = "register: the link is correct; record that uid " + std::to_string(uid) + " relies on it";
    if (!direct) {
      item.needs_elevation = true;
      item.elevation_reason = "the users relying on a system link are listed in the root-owned record";
    }
  }

  /// Takes over the regular file at `c.path` in one atomic step: the new link is made at
  /// `backup`'s name, then the two names swap (Fs::exchange), so at no moment is nothing at the
  /// path, and the user's file never has a temp's name. True when done; false when the backend or
  /// the filesystem cannot swap (nothing changed; the caller moves aside, then links).
  template <class Ctx>
  result<bool> swap_in_link(Ctx& ctx, const actor& who, const change& c, const std::string& backup) const {
    if constexpr (detail::fs_has_exchange<std::decay_t<decltype(ctx.fs)>>::value) {
      auto made = ctx.fs.symlink(who, c.after, backup);
      if (!made) return tl::unexpected(made.error());
      auto swapped = ctx.fs.exchange(who, backup, c.path);
      if (!swapped) {
        (void)unlink_durably(ctx.fs, who, backup);
        const error& e = swapped.error();
        // Cannot swap here (an old kernel, a filesystem without it, a seccomp filter's EPERM):
        // the caller moves aside, then links; a real refusal shows again there.
        if (e.is_errno(EINVAL) || e.is_errno(ENOSYS) || e.is_errno(ENOTSUP) || e.is_errno(EOPNOTSUPP) ||
            e.is_errno(EPERM))
          return false;
        return tl::unexpected(e);
      }
      if (!sync_directory(ctx.fs, who, parent_path(c.path))) ctx.note_not_durable(c.path);
      return true;
    } else {
      (void)ctx, (void)who, (void)c, (void)backup;
      return false;
    }
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
    // The item as it will be, recorded before anything moves (context::record_ahead): a crash
    // right after a mkdir or the link's change cannot lose that they are ours, nor what the link
    // replaced. `was_target`: our earlier target, which is what the link holds should the crash
    // come first (an item written ahead by a run that crashed keeps the one it had).
    const std::string old_target = item.get("target");
    const bool unfinished = old_target == *target_abs && item.fields.count("was_target") != 0;
    const std::string was_target = unfinished ? item.get("was_target") : old_target;
    item.fields.erase("was_target");
    item.fields["target"] = *target_abs;
    item.fields["written"] = c.after;
    if (elevated) add_user();
    std::optional<record_item> dirs_item;
    auto list_dirs = [&](const std::vector<std::string>& dirs) {
      dirs_item.reset();
      if (dirs.empty()) return;
      const record_item* known = books.scope(elevated).find(dirs_id());
      dirs_item = known ? *known : record_item{dirs_id(), kind(), {{"set", id()}}};
      std::string text = dirs_item->get("dirs");
      for (const auto& d : dirs) text += d + "\n";
      dirs_item->fields["dirs"] = text;
    };
    auto record_first = [&]() -> result<void> {
      std::vector<record_item> ahead{item};
      if (previous && !was_target.empty() && was_target != *target_abs) ahead[0].fields["was_target"] = was_target;
      if (dirs_item) ahead.push_back(*dirs_item);
      return ctx.record_ahead(books, elevated, ahead);
    };
    // Missing directories: nothing stands at the link's path yet, so the item is complete now.
    auto planned = missing_parents(ctx.fs, who, parent_path(c.path));
    if (!planned) return tl::unexpected(planned.error());
    list_dirs(*planned);
    if (!planned->empty())
      if (auto noted = record_first(); !noted) return tl::unexpected(noted.error());
    auto made = make_parents(ctx.fs, who, parent_path(c.path), dir_mode);
    if (!made) return tl::unexpected(made.error());
    list_dirs(*made);
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
      // Policy (a) for a file: it is kept aside in the same directory and the link takes its place;
      // revert moves it back. Not named like a temp (".<name>.hostcfg-*"): backends remove those
      // as crash leftovers.
      std::string backup = join_path(parent_path(c.path), "." + base_name(c.path) + ".hostcfg_backup");
      if (auto in_way = ctx.fs.lstat(who, backup)) {
        // Our new link, left at the backup's name by a run that ended before the swap below.
        auto leftover = in_way->type == file_type::symlink ? ctx.fs.readlink(who, backup) : result<std::string>("");
        const bool ours = leftover && (*leftover == c.after || (previous && *leftover == previous->get("written")));
        if (!ours)
          return fail(errc::conflict, "take over", c.path, "a backup from an earlier take-over is still at " + backup,
                      "move it away by hand, then run again");
        if (auto gone = unlink_durably(ctx.fs, who, backup); !gone) return tl::unexpected(gone.error());
      }
      auto now = ctx.fs.lstat(who, c.path);
      if (!now || !same_version(*now, expected))
        return fail(errc::changed_since_probe, "take over", c.path, "the file changed since it was probed",
                    "run again");
      item.fields["backup"] = "file";
      item.fields["backup_path"] = backup;
      if (auto noted = record_first(); !noted) {
        undo_dirs();
        return tl::unexpected(noted.error());
      }
      auto swapped = swap_in_link(ctx, who, c, backup);
      if (!swapped) {
        ctx.withdraw_ahead(elevated, c.item_id);
        return tl::unexpected(swapped.error());
      }
      if (!*swapped) {
        // No atomic swap here (the backend or the filesystem cannot): move aside, then link.
        auto moved = ctx.fs.rename(who, c.path, backup);
        if (!moved) {
          undo_dirs();
          ctx.withdraw_ahead(elevated, c.item_id);
          return tl::unexpected(moved.error());
        }
        linked = ctx.fs.replace_symlink(who, c.after, c.path, file_status{});
        if (!linked && !linked.error().is(errc::not_durable)) {
          // Put the file back: never lose it. Back in place, nothing happened; else the item
          // written ahead names where it is.
          if (ctx.fs.rename(who, backup, c.path)) ctx.withdraw_ahead(elevated, c.item_id);
          return tl::unexpected(linked.error());
        }
        if (!linked) ctx.note_not_durable(c.path);  // in place; the report says it may not last
      }
      what = "replaced a regular file (kept at " + backup + ") -> " + c.after;
    } else {
      if (expected.type == file_type::symlink) {
        auto before_abs = resolve_link_target(c.path, c.before);
        bool ours = previous && before_abs &&
                    (previous->get("target") == *before_abs ||
                     (previous->fields.count("was_target") != 0 && previous->get("was_target") == *before_abs));
        if (!ours && item.get("backup").empty()) {
          item.fields["backup"] = "link";
          item.fields["backup_target"] = c.before;
        }
        what = (ours ? "re-pointed from " : "replaced the link to ") + c.before + " -> " + c.after;
      }
      if (auto noted = record_first(); !noted) {
        undo_dirs();
        return tl::unexpected(noted.error());
      }
      linked = ctx.fs.replace_symlink(who, c.after, c.path, expected);
      if (!linked && !linked.error().is(errc::not_durable)) {
        undo_dirs();
        ctx.withdraw_ahead(elevated, c.item_id);
        return tl::unexpected(linked.error());
      }
      if (!linked) ctx.note_not_durable(c.path);
    }
    if (dirs_item) books.scope(elevated).put(*dirs_item);
    if (previous && previous_is_system != elevated) books.scope(previous_is_system).erase(c.item_id);
    books.scope(elevated).put(item);
    // Whatever was left alone there is gone now (taken over, or removed by its owner).
    const record_item* noted = books.user.find(conflict_id(c.path));
    if (noted && is_my_note(noted->id, *noted)) books.user.erase(conflict_id(c.path));
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
      auto aside = backup == "file" ? ctx.fs.lstat(who, backup_path) : result<file_status>(file_status{});
      if (backup == "file" && aside && aside->type == file_type::regular) {  // never our leftover link
        undone = ctx.fs.rename(who, backup_path, path);
        message = "already gone; restored the file hostcfg had moved aside";
      } else if (!aside && !aside.error().is_errno(ENOENT)) {
        undone = tl::unexpected(aside.error());  // cannot tell whether the file is there: keep the item
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
      const bool is_link = st->type == file_type::symlink && current_abs;
      // Written ahead (context::record_ahead) by a run that ended before its change: what was
      // there is there still, and the item goes.
      // (A take-over of a file makes its link at the backup's name first, then swaps the two.)
      const bool file_in_place = backup == "file" && st->type == file_type::regular;
      // What stands at the backup's name: nothing, the file moved aside, or our new link left by
      // a take-over that ended before its swap. Only ENOENT means nothing: any other error keeps
      // the item (the user's file may be there).
      bool backup_absent = false, leftover_at_backup = false;
      if (file_in_place) {
        auto b = ctx.fs.lstat(who, backup_path);
        if (!b && !b.error().is_errno(ENOENT)) {
          push(event_kind::failed, b.error().message(), b.error());
          return;
        }
        backup_absent = !b;
        if (b && b->type == file_type::symlink) {
          auto text = ctx.fs.readlink(who, backup_path);
          leftover_at_backup = text && *text == mine.get("written");
        }
      }
      const bool never_changed =
          (backup == "link" && is_link &&
           *current_abs == resolve_link_target(path, mine.get("backup_target")).value_or("")) ||
          (file_in_place && (backup_absent || leftover_at_backup));
      if (never_changed) {
        if (leftover_at_backup) {
          if (auto gone = unlink_durably(ctx.fs, who, backup_path); !gone) {
            push(event_kind::failed, gone.error().message(), gone.error());
            return;
          }
        }
        books.scope(privileged).erase(mine.id);
        push(event_kind::kept, "already as it was before hostcfg");
        return;
      }
      const bool ours = is_link && (*current_abs == mine.get("target") ||
                                    (mine.fields.count("was_target") != 0 && *current_abs == mine.get("was_target")));
      if (!ours) {
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
        if (!undone && undone.error().is(errc::not_durable)) {
          ctx.note_not_durable(path);
          undone = {};
        }
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

/// True when every change of `p` that needs elevation only records that this user relies on a
/// correct system link (nothing on disk would change).
inline bool only_registrations(const plan& p) {
  bool any = false;
  for (const auto& c : p.changes)
    if (c.needs_elevation) {
      if (c.object != "link record") return false;
      any = true;
    }
  return any;
}

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
  /// The links are in place but this user could not be recorded as relying on them: no fallback
  /// (the commands work), a note instead.
  bool registration_refused = false;

  template <class Ctx>
  void prepare(Ctx& ctx, const ledgers& books) { step = probe_and_plan(ctx, books, f.primary); }
  const step_report& elevation_step() const { return step; }
  void add_desired_state(record& payload) const { add_handoff(payload, f.primary); }

  template <class Ctx>
  void run(Ctx& ctx, ledgers& books, const grant& g) {
    const bool refused = !step.failure && step.planned.needs_elevation() && !g.elevated;
    registration_refused = refused && only_registrations(step.planned);
    use_alternative = refused && !registration_refused;
    if (!use_alternative) {
      // After a hand-off, apply_step also does, as the user, what the user does alone (conflict
      // notes in the user's record).
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
    if (registration_refused) {
      std::string why = step.elevation && step.elevation->answer_ ? answer_name(*step.elevation->answer_)
                                                                  : "not requested";
      if (step.elevation && step.elevation->from_record) why += ", a recorded decision: set re-prompt to ask again";
      step.applied.notes.push_back("uid " + std::to_string(ctx.user_actor().uid) +
                                   " is not recorded as relying on the links in " + primary_dir + " (admin rights: " +
                                   why + "); they work now, but another user's uninstall may remove them");
    }
    const probe_report& now = step.after ? *step.after : step.before;
    std::set<std::string> covered;
    for (const auto& item : now.items) {
      const bool link = item.id.rfind("link:", 0) == 0;  // not a conflict note or a companion check
      if (link && item.state == item_state::matches) covered.insert(base_name(item.path));
      else if (link && item.state == item_state::conflict) step.applied.notes.push_back("left alone: " + item.detail);
      else if (item.state == item_state::conflict) step.applied.notes.push_back(item.detail);
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
