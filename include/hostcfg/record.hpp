#pragma once
/// @file
/// The record (ledger): what hostcfg changed, so a re-run knows what is ours and revert can undo
/// exactly that. One record per app id and scope: the user's (in their home, owned by them) and
/// the privileged one (root-owned). Privileged items' undo data lives only in the root-owned
/// record, so a user editing their own files can never make root write bytes of their choosing.
///
/// The format is versioned, line-based and human-readable:
///
///     # hostcfg record: written by hostcfg, do not edit
///     hostcfg-record 1
///     app com.docker.desktop
///     item link:/usr/local/bin/docker
///     primitive symlink_set
///     field target /Applications/Docker.app/Contents/Resources/bin/docker
///     end
///
/// Field values are percent-encoded (bytes below 0x21, above 0x7e, and '%'), so any bytes round
/// trip. A record that does not parse is `errc::corrupt_record`; one from a newer version is
/// `errc::newer_record`; neither is ever overwritten or dropped.
///
/// Versions: 1 (current) has exactly one `app` line, before the first item. 0 is the pre-release
/// draft, the same lines without `app` (the app id is then the one the record is loaded for). No
/// other older format ever existed: the header has been there since the first record. A format
/// 0 record is read as is and rewritten as format 1 by the next store that changes anything (a
/// run with nothing to do writes nothing, and format 0 stays readable).
///
/// Writers of one record take turns (`store_record_merged`): each re-reads the record under
/// `lock_for_edit` and applies only its own changes to what is there now, so two runs of one app
/// (say an install and a concurrent repair) never drop each other's items.

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hostcfg/error.hpp"
#include "hostcfg/file_lock.hpp"
#include "hostcfg/format/lines.hpp"
#include "hostcfg/fs.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// The record format this hostcfg writes.
inline constexpr int record_format_version = 1;
/// The oldest record format this hostcfg reads (and migrates: see the file comment).
inline constexpr int oldest_record_format_version = 0;

/// One recorded item: what a primitive did to one object, keyed by a stable id.
struct record_item {
  std::string id;
  std::string primitive;
  std::map<std::string, std::string> fields;

  /// The field's value, or `fallback`.
  std::string get(const std::string& key, const std::string& fallback = {}) const {
    auto it = fields.find(key);
    return it == fields.end() ? fallback : it->second;
  }
  /// The field as a decimal number no larger than `max`; nothing when it is missing, empty, not
  /// all digits or too large. Record fields (and desired state) are untrusted input: this never
  /// throws, unlike std::stoul on a hand-edited value.
  std::optional<unsigned long> number(const std::string& key, unsigned long max) const {
    auto it = fields.find(key);
    if (it == fields.end()) return std::nullopt;
    return parse_decimal(it->second, max);
  }
  /// `text` as a decimal number no larger than `max` (see `number`).
  static std::optional<unsigned long> parse_decimal(std::string_view text, unsigned long max) {
    if (text.empty() || text.size() > 20) return std::nullopt;  // longer cannot fit; the loop checks the rest
    unsigned long value = 0;
    for (char c : text) {
      if (c < '0' || c > '9') return std::nullopt;
      const auto digit = static_cast<unsigned long>(c - '0');
      if (digit > max || value > (max - digit) / 10) return std::nullopt;  // value * 10 + digit > max
      value = value * 10 + digit;
    }
    return value;
  }
  friend bool operator==(const record_item& a, const record_item& b) {
    return a.id == b.id && a.primitive == b.primitive && a.fields == b.fields;
  }
};

/// A whole record: the app id and its items by id.
struct record {
  std::string app_id;
  std::map<std::string, record_item> items;

  /// The item with this id, or nullptr.
  const record_item* find(const std::string& id) const {
    auto it = items.find(id);
    return it == items.end() ? nullptr : &it->second;
  }
  /// Inserts or replaces an item.
  void put(record_item item) {
    std::string id = item.id;
    items[id] = std::move(item);
  }
  /// Removes an item (no-op when absent).
  void erase(const std::string& id) { items.erase(id); }
  bool empty() const { return items.empty(); }
  friend bool operator==(const record& a, const record& b) { return a.app_id == b.app_id && a.items == b.items; }
};

namespace detail {
inline std::string percent_encode(std::string_view value) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (unsigned char c : value) {
    if (c <= 0x20 || c >= 0x7f || c == '%') {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}
inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}
inline std::optional<std::string> percent_decode(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '%') {
      out += value[i];
      continue;
    }
    if (i + 2 >= value.size()) return std::nullopt;
    int hi = hex_value(value[i + 1]);
    int lo = hex_value(value[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}
}  // namespace detail

/// Serializes a record (deterministic: items and fields sorted by key).
inline std::string serialize_record(const record& r) {
  std::string out = "# hostcfg record: written by hostcfg, do not edit\n";
  out += "hostcfg-record " + std::to_string(record_format_version) + "\n";
  out += "app " + detail::percent_encode(r.app_id) + "\n";
  for (const auto& [id, item] : r.items) {
    out += "item " + detail::percent_encode(id) + "\n";
    out += "primitive " + detail::percent_encode(item.primitive) + "\n";
    for (const auto& [key, value] : item.fields)
      out += "field " + detail::percent_encode(key) + " " + detail::percent_encode(value) + "\n";
    out += "end\n";
  }
  return out;
}

/// Parses a record of any format from `oldest_record_format_version` to `record_format_version`
/// (format 0, the pre-release draft without an `app` line, comes back with an empty `app_id` for
/// the caller to fill in; serializing it writes format 1). `where` names the file in errors.
inline result<record> parse_record(std::string_view bytes, const std::string& where = {}) {
  auto corrupt = [&](std::size_t line, const std::string& why) {
    return fail(errc::corrupt_record, "read record", where, "line " + std::to_string(line) + ": " + why,
                "the record was left as it is; move it aside to start over");
  };
  record r;
  std::optional<record_item> open;
  int version = -1;
  bool have_app = false;
  std::size_t number = 0;
  for (const auto& line : split_lines(bytes)) {
    ++number;
    std::string_view text = line.text;
    if (text.empty() || text.front() == '#') continue;
    auto space = text.find(' ');
    std::string_view word = text.substr(0, space);
    std::string_view rest = space == std::string_view::npos ? std::string_view{} : text.substr(space + 1);
    if (version < 0) {
      if (word != "hostcfg-record") return corrupt(number, "not a hostcfg record");
      if (rest.empty() || rest.find_first_not_of("0123456789") != std::string_view::npos || rest.size() > 6)
        return corrupt(number, "bad version");
      version = std::stoi(std::string(rest));
      if (version > record_format_version)
        return fail(errc::newer_record, "read record", where,
                    "written by a newer hostcfg (format " + std::to_string(version) + ")",
                    "upgrade the installer; the record was left as it is");
      continue;
    }
    auto decoded = detail::percent_decode(rest);
    if (word == "app" && !open) {
      if (version == 0) return corrupt(number, "an 'app' line in a format 0 record");
      if (have_app) return corrupt(number, "a second 'app' line");
      if (!r.items.empty()) return corrupt(number, "the 'app' line must come before the items");
      if (!decoded) return corrupt(number, "bad encoding");
      r.app_id = *decoded;
      have_app = true;
    } else if (word == "item" && !open) {
      if (version >= 1 && !have_app) return corrupt(number, "no 'app' line before the first item");
      if (!decoded || decoded->empty()) return corrupt(number, "bad item id");
      open = record_item{*decoded, {}, {}};
    } else if (word == "primitive" && open) {
      if (!decoded) return corrupt(number, "bad encoding");
      open->primitive = *decoded;
    } else if (word == "field" && open) {
      auto sep = rest.find(' ');
      if (sep == std::string_view::npos) return corrupt(number, "field without a value");
      auto key = detail::percent_decode(rest.substr(0, sep));
      auto value = detail::percent_decode(rest.substr(sep + 1));
      if (!key || !value || key->empty()) return corrupt(number, "bad field");
      open->fields[*key] = *value;
    } else if (word == "end" && open && rest.empty()) {
      if (r.items.count(open->id)) return corrupt(number, "duplicate item " + open->id);
      r.put(std::move(*open));
      open.reset();
    } else {
      return corrupt(number, "unexpected '" + std::string(word) + "'");
    }
  }
  if (version < 0) return corrupt(number, "empty record");
  if (open) return corrupt(number, "item " + open->id + " has no end");
  if (version >= 1 && !have_app) return corrupt(number, "no 'app' line");
  return r;
}

/// The record to store when `fresh` is what the file holds now, `loaded` what this run read at
/// its start and `mine` what this run made of it: `fresh` with this run's own changes applied
/// (items it added or changed put, items it removed erased). Another run's items, written since
/// `loaded` was read, are kept. Pure.
///
///     rebase_record(fresh /*{a, b}*/, loaded /*{a}*/, mine /*{a, c}*/)  // -> {a, b, c}
inline record rebase_record(const record& fresh, const record& loaded, const record& mine) {
  record out = fresh;
  if (out.app_id.empty()) out.app_id = mine.app_id;
  for (const auto& entry : mine.items) {
    const record_item* before = loaded.find(entry.first);
    if (!before || !(*before == entry.second)) out.put(entry.second);
  }
  for (const auto& entry : loaded.items)
    if (!mine.find(entry.first)) out.erase(entry.first);
  return out;
}

/// The two records a run works with: the user's and the privileged (root-owned) one.
struct ledgers {
  record user;
  record system;
  /// The record an item belongs in.
  record& scope(bool privileged) { return privileged ? system : user; }
  const record& scope(bool privileged) const { return privileged ? system : user; }
  /// Finds an item in either record (system first: it is the trusted one).
  const record_item* find(const std::string& id) const {
    if (auto item = system.find(id)) return item;
    return user.find(id);
  }
};

/// Where a record lives and who owns it.
struct record_location {
  std::string path;   ///< absolute
  actor owner;        ///< writes as this actor
  bool privileged = false;
};

/// Upper bound for a record's size: a record is small; anything larger is not ours.
inline constexpr std::size_t max_record_bytes = 4u << 20;

/// Reads a record through the Fs backend. A missing file is an empty record. A privileged record
/// must be owned by root and not group/world-writable, else it is refused (`errc::unsafe_path`).
template <class Fs>
result<record> load_record(Fs& fs, const record_location& where, const std::string& app_id) {
  auto contents = fs.read_file(where.owner, where.path, max_record_bytes);
  if (!contents) {
    if (contents.error().is_errno(ENOENT)) return record{app_id, {}};
    return tl::unexpected(contents.error());
  }
  if (where.privileged && (contents->status.uid != 0 || (contents->status.mode & 022) != 0))
    return fail(errc::unsafe_path, "read record", where.path,
                "a privileged record must be owned by root and writable only by root",
                "remove the file; it was not written by hostcfg as root");
  auto parsed = parse_record(contents->bytes, where.path);
  if (!parsed) return parsed;
  if (parsed->app_id.empty()) parsed->app_id = app_id;
  return parsed;
}

/// How much a record store must promise about surviving a crash.
enum class record_sync {
  best_effort,  ///< a failed directory fsync after the rename is not an error (the file is in place)
  required,     ///< ... is `errc::not_durable`: a write-ahead item must be on disk before its change
};

namespace detail {

/// Name of the temp directory a record's missing directories are built under, beside the
/// topmost missing one `top`: ".<top>.hostcfg-chain". Builders of one `top` take turns under the
/// lock of its parent, so one name serves them all and a temp found under that lock is stale.
inline std::string record_chain_temp(std::string_view top) {
  return join_path(parent_path(top), "." + base_name(top) + ".hostcfg-chain");
}

/// Removes the directory `dir` and what a record store puts in it (directories, the record and
/// its temps: regular files), owned by `who`; nothing else, never through a link, at most
/// `depth` levels down. False when something stays.
template <class Fs>
bool remove_record_tree(Fs& fs, const actor& who, const std::string& dir, int depth = 8) {
  auto names = fs.list_dir(who, dir);
  if (!names) return names.error().is_errno(ENOENT);
  for (const auto& name : *names) {
    const std::string path = join_path(dir, name);
    auto st = fs.lstat(who, path);
    if (!st || (!who.is_root() && st->uid != who.uid)) return false;
    if (st->type == file_type::directory) {
      if (depth == 0 || !remove_record_tree(fs, who, path, depth - 1)) return false;
    } else if (st->type != file_type::regular || !fs.unlink(who, path)) {
      return false;
    }
  }
  return fs.rmdir(who, dir).has_value();
}

/// Removes a temp chain a crashed store left beside any directory on the way to the record at
/// `where` (the topmost missing one then, or one another program has made since), each under
/// the lock its builders take. One `lstat` per directory of the path; best effort.
template <class Fs>
void remove_stale_record_chains(Fs& fs, const record_location& where) {
  std::string current;
  for (const auto& part : path_components(parent_path(where.path))) {
    current += "/" + part;
    const std::string temp = record_chain_temp(current);
    auto st = fs.lstat(where.owner, temp);
    if (!st) {
      if (st.error().is_errno(ENOENT)) continue;
      return;  // the way is not ours to look at (ENOTDIR, EACCES...): nothing of ours below
    }
    if (st->type != file_type::directory || (!where.owner.is_root() && st->uid != where.owner.uid)) continue;
    auto held = lock_for_edit(fs, where.owner, current);  // its builders' lock: a live one finishes first
    if (held) remove_record_tree(fs, where.owner, temp);
  }
}

/// `e`, saying that it happened while storing the record at `where` (the temp paths of a new
/// directory chain mean little on their own).
inline tl::unexpected<error> while_storing(error e, const record_location& where) {
  if (e.hint.empty()) e.hint = "while storing the record " + where.path;
  return tl::unexpected<error>(std::move(e));
}

/// How `store_record_in_new_chain` ended.
enum class chain_outcome { stored, stored_not_durable, exists_now };

/// Writes the record `r` at `where.path` when directories above it are missing, so that they and
/// the record appear together: under the lock of the topmost missing directory's parent, the
/// missing directories are made under a temp name beside the topmost one, the record (listing
/// them in "record-dirs" after `dirs`) written and every directory synced, and the temp renamed
/// to the topmost name. A crash before that rename leaves only the temp (removed by the next
/// store or uninstall); after it, the record names every directory it needed. `exists_now`: the
/// directory exists now (another program made the topmost one): look again.
template <class Fs>
result<chain_outcome> store_record_in_new_chain(Fs& fs, const record_location& where, const record& r,
                                                const std::string& dirs) {
  const actor& who = where.owner;
  auto missing = missing_parents(fs, who, parent_path(where.path));
  if (!missing) return while_storing(missing.error(), where);
  if (missing->empty()) return chain_outcome::exists_now;
  const std::string top = missing->front();
  auto held = lock_for_edit(fs, who, top);  // builders of this `top` take turns
  if (!held) return while_storing(held.error(), where);
  missing = missing_parents(fs, who, parent_path(where.path));  // again, under the lock
  if (!missing) return while_storing(missing.error(), where);
  if (missing->empty() || missing->front() != top) return chain_outcome::exists_now;
  const std::string temp = record_chain_temp(top);
  if (!remove_record_tree(fs, who, temp))  // stale: its builder held this lock
    return while_storing(error{std::error_code(ENOTEMPTY, std::system_category()), "remove stale temp", temp, {},
                               "a temp a crashed store left holds something hostcfg did not put there (remove it)", {}},
                         where);
  const mode_type dir_mode = where.privileged ? 0755 : 0700;
  if (auto made = fs.mkdir(who, temp, dir_mode); !made) return while_storing(made.error(), where);
  auto in_temp = [&](const std::string& path) { return temp + path.substr(top.size()); };
  auto give_up = [&](const error& e) -> result<chain_outcome> {
    remove_record_tree(fs, who, temp);
    return while_storing(e, where);
  };
  for (std::size_t i = 1; i < missing->size(); ++i)
    if (auto made = fs.mkdir(who, in_temp((*missing)[i]), dir_mode); !made) return give_up(made.error());
  record with_dirs = r;
  std::string listed = dirs;
  list_dirs_made(listed, *missing);
  with_dirs.put(record_item{"record-dirs", "record", {{"dirs", listed}}});
  replace_options options;
  options.mode = where.privileged ? 0644 : 0600;
  options.uid = who.uid;
  options.gid = who.gid;
  auto written = fs.replace_file(who, in_temp(where.path), serialize_record(with_dirs), options);
  if (!written) return give_up(written.error());
  // Every directory of the chain synced (the record's own by replace_file), so the rename below
  // publishes a tree that is complete on disk; a failed sync makes the store not durable.
  bool durable = written->durable;
  for (std::size_t i = missing->size() - 1; i > 0; --i) durable = sync_directory(fs, who, in_temp((*missing)[i - 1])) && durable;
  // Another program may have made `top` meanwhile (hostcfg's builders wait for the lock): never
  // rename onto it, not even onto an empty directory.
  if (auto there = fs.lstat(who, top); there || !there.error().is_errno(ENOENT)) {
    remove_record_tree(fs, who, temp);
    return chain_outcome::exists_now;
  }
  if (auto moved = fs.rename(who, temp, top); !moved) return give_up(moved.error());
  durable = sync_directory(fs, who, parent_path(top)) && durable;
  return durable ? chain_outcome::stored : chain_outcome::stored_not_durable;
}

/// Stores `r` with its missing directories (store_record_in_new_chain), first removing a chain
/// a crashed store left on the way, and looking again when another program makes a directory
/// meanwhile. Nothing (nullopt) when the record's directory exists: store the ordinary way then.
template <class Fs>
result<std::optional<bool>> store_record_with_its_dirs(Fs& fs, const record_location& where, const record& r,
                                                       const std::string& dirs, record_sync sync) {
  remove_stale_record_chains(fs, where);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto chained = store_record_in_new_chain(fs, where, r, dirs);
    if (!chained) return tl::unexpected(chained.error());
    if (*chained == chain_outcome::exists_now) {
      auto dir = fs.lstat(where.owner, parent_path(where.path));
      if (dir) return std::optional<bool>();
      continue;  // a directory above it appeared: build the rest
    }
    if (*chained == chain_outcome::stored_not_durable && sync == record_sync::required)
      return fail(errc::not_durable, "store record", where.path,
                  "the record was written but its directory could not be synced: a crash could lose it");
    return std::optional<bool>(true);
  }
  return fail(errc::conflict, "store record", where.path,
              "the directories above the record keep changing while hostcfg makes them");
}

}  // namespace detail

/// Writes a record atomically (mode 0600 user / 0644 privileged), creating its directory
/// (0700 / 0755) when needed. An empty record removes the file, and the directories a previous
/// store created for it when they are empty (the item "record-dirs" lists them). Writes nothing
/// when `r` equals `loaded` (a no-op run makes no write at all). With `record_sync::required`, a
/// record renamed into place whose directory could not be synced is `errc::not_durable`.
template <class Fs>
result<bool> store_record(Fs& fs, const record_location& where, record r, const record& loaded,
                          record_sync sync = record_sync::best_effort) {
  if (r == loaded) {
    remove_stale_temps(fs, where.owner, where.path);  // a crash between temp and rename
    // No record: a crash before the first one may have left its directories' temp. Looked for
    // only when the record's directory is missing (one lstat otherwise).
    if (loaded.items.empty() && !fs.lstat(where.owner, parent_path(where.path)))
      detail::remove_stale_record_chains(fs, where);
    return false;
  }
  const std::string dirs_key = "record-dirs";
  std::string dirs_field;
  if (auto dirs = loaded.find(dirs_key)) dirs_field = dirs->get("dirs");
  bool only_bookkeeping = r.items.size() == 1 && r.find(dirs_key);
  if (r.empty() || only_bookkeeping) {
    auto removed = unlink_durably(fs, where.owner, where.path);
    if (!removed && !removed.error().is_errno(ENOENT)) return tl::unexpected(removed.error());
    remove_stale_temps(fs, where.owner, where.path);  // a crashed write's temp would keep its directory
    // Remove the directories we made for the record, innermost first, only while empty.
    std::vector<std::string> dirs;
    for (const auto& line : split_lines(dirs_field)) dirs.emplace_back(line.text);
    for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
      auto gone = rmdir_durably(fs, where.owner, *it);
      if (!gone) break;
    }
    return true;
  }
  // Missing directories are made together with the record (store_record_in_new_chain), so no
  // crash leaves a directory that no record names.
  if (!fs.lstat(where.owner, parent_path(where.path))) {
    auto stored = detail::store_record_with_its_dirs(fs, where, r, dirs_field, sync);
    if (!stored) return tl::unexpected(stored.error());
    if (*stored) return **stored;
  }
  auto made = make_parents(fs, where.owner, parent_path(where.path), where.privileged ? 0755 : 0700);
  if (!made) return tl::unexpected(made.error());
  list_dirs_made(dirs_field, *made);
  if (!dirs_field.empty()) r.put(record_item{dirs_key, "record", {{"dirs", dirs_field}}});
  replace_options options;
  options.mode = where.privileged ? 0644 : 0600;
  options.uid = where.owner.uid;
  options.gid = where.owner.gid;
  auto written = fs.replace_file(where.owner, where.path, serialize_record(r), options);
  if (!written) return tl::unexpected(written.error());
  if (!written->durable && sync == record_sync::required)
    return fail(errc::not_durable, "store record", where.path,
                "the record was written but its directory could not be synced: a crash could lose it");
  return written->changed;
}

/// Stores this run's changes to a record that other runs of the same app may be writing too:
/// `loaded` is what this run read at its start, `mine` what it made of it. When they are equal
/// this is `store_record` (nothing to write, not even a lock). Otherwise it takes
/// `lock_for_edit` on the record's directory, reads the record again and stores
/// `rebase_record(fresh, loaded, mine)`, so items another run stored meanwhile stay. The
/// directory is made first when missing (a lock never creates anything; another run may be
/// making it at the same moment, which is not an error), and listed in "record-dirs" as
/// `store_record` would. A record that became corrupt or newer meanwhile is an error and is left
/// as it is.
template <class Fs>
result<bool> store_record_merged(Fs& fs, const record_location& where, const record& mine, const record& loaded,
                                 record_sync sync = record_sync::best_effort) {
  if (mine == loaded) return store_record(fs, where, mine, loaded, sync);
  auto held = lock_for_edit(fs, where.owner, where.path);
  if (!held && !held.error().is_errno(ENOENT)) return tl::unexpected(held.error());
  if (!held) {
    // No directory, so no record another run could have stored: this one is made with its
    // directories, all at once; unless another run makes the directory meanwhile.
    record next = rebase_record(record{mine.app_id, {}}, loaded, mine);
    if (next.empty()) return store_record(fs, where, next, loaded, sync);  // nothing to keep: no directory
    auto stored = detail::store_record_with_its_dirs(fs, where, next, std::string(), sync);
    if (!stored) return tl::unexpected(stored.error());
    if (*stored) return **stored;
    held = lock_for_edit(fs, where.owner, where.path);
    if (!held) return tl::unexpected(held.error());
  }
  auto fresh = load_record(fs, where, mine.app_id);
  if (!fresh) return tl::unexpected(fresh.error());
  return store_record(fs, where, rebase_record(*fresh, loaded, mine), *fresh, sync);
}

HOSTCFG_END_NAMESPACE
