#pragma once
/// @file
/// The context a run works in: the backends (filesystem, privilege, and any extra ones a
/// primitive needs: resolver, service manager, helper client), the app id and its markers, where
/// the two records live, the decision policy, an injectable clock and random source (so temp
/// names and sweeps are reproducible), and an event sink for progress.
///
///     MemoryFs fs;  ScriptedPrivilege priv(user, answer::granted);
///     context ctx(fs, priv, "com.example.app");
///     ctx.attach(service_manager);          // found by primitives with ctx.find<FakeServiceManager>()
///     auto report = converge(ctx, ManagedFile{...}, ...);

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "hostcfg/format/markers.hpp"
#include "hostcfg/fs.hpp"
#include "hostcfg/privilege.hpp"
#include "hostcfg/protocol.hpp"
#include "hostcfg/record.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// How recorded decisions are used (the decision table of privilege.hpp).
struct decision_policy {
  bool reprompt = false;           ///< ask again although a decision is recorded
  bool record_declined = true;     ///< a "declined" answer is remembered
  bool record_cancelled = true;    ///< a "cancelled" answer is remembered (separately from declined)
  bool record_unavailable = true;  ///< "no admin rights" is remembered until the user's groups change
  bool dry_run = false;            ///< no prompt is shown; `dry_run_answer` is assumed and reported
  answer dry_run_answer = answer::granted;
};

/// Default path of the user's record: `<home>/.local/state/hostcfg/<app_id>.record`.
inline std::string default_user_record_path(const user_identity& user, const std::string& app_id) {
  return join_path(user.home, ".local/state/hostcfg/" + app_id + ".record");
}

/// Default path of the privileged record: `/Library/Application Support/hostcfg/<app_id>.record` on
/// macOS, `/var/lib/hostcfg/<app_id>.record` elsewhere.
inline std::string default_system_record_path(const std::string& app_id) {
#ifdef __APPLE__
  return "/Library/Application Support/hostcfg/" + app_id + ".record";
#else
  return "/var/lib/hostcfg/" + app_id + ".record";
#endif
}

namespace detail {
template <class T>
const void* backend_tag() {
  static const char tag = 0;
  return &tag;
}
}  // namespace detail

/// Everything one run of `converge` or `uninstall` needs. Holds references: the backends must
/// outlive it.
template <class Fs, class Priv>
class context {
  static_assert(check_fs<Fs>(), "");
  static_assert(check_priv<Priv>(), "");

 public:
  context(Fs& fs_backend, Priv& priv_backend, std::string app)
      : fs(fs_backend), priv(priv_backend), app_id(std::move(app)), markers(default_markers(app_id)) {
    user_record = record_location{default_user_record_path(priv.user(), app_id), priv.user().as_actor(), false};
    system_record = record_location{default_system_record_path(app_id), priv.elevated_actor(), true};
    clock = [] {
      return static_cast<std::int64_t>(
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
              .count());
    };
  }

  Fs& fs;
  Priv& priv;
  std::string app_id;
  section_markers markers;          ///< marker lines for text sections (an app may adopt its own)
  record_location user_record;      ///< the user's record (owned by the user)
  record_location system_record;    ///< the privileged record (root-owned)
  decision_policy policy;
  /// Read the user's record. An elevated runner turns this off: it trusts only the root-owned
  /// record and never acts on what a file the user can modify says.
  bool read_user_record = true;
  /// Seconds since the epoch (recorded "since" times; inject a fixed clock for reproducible runs).
  /// Randomness is injected where it is drawn: PosixFs's temp names come from the syscall table's
  /// `getrandom` (tests make it deterministic), MemoryFs's crash subsets from a seed.
  std::function<std::int64_t()> clock;
  /// Receives every event as it happens: (primitive id, event).
  std::function<void(const std::string&, const event&)> on_event;

  /// The user's actor (the user's part of a run runs as this).
  actor user_actor() const { return priv.user().as_actor(); }
  /// The elevated actor.
  actor elevated_actor() const { return priv.elevated_actor(); }
  /// The actor for a change: elevated when it needs elevation.
  actor actor_for(bool elevated) const { return elevated ? elevated_actor() : user_actor(); }

  /// Attaches an extra backend (service manager, resolver, helper client) by its type.
  template <class T>
  context& attach(T& backend) {
    for (auto& entry : backends_)
      if (entry.first == detail::backend_tag<T>()) {
        entry.second = &backend;
        return *this;
      }
    backends_.emplace_back(detail::backend_tag<T>(), &backend);
    return *this;
  }
  /// The attached backend of type T, or nullptr.
  template <class T>
  T* find() const {
    for (const auto& entry : backends_)
      if (entry.first == detail::backend_tag<T>()) return static_cast<T*>(entry.second);
    return nullptr;
  }

  /// Reads a file for a probe as `who`; when that is refused (EACCES) and this process can act as
  /// root, reads it as root (a root-only file is still probed, never written, this way).
  result<file_contents> read_for_probe(const actor& who, std::string_view path, std::size_t max_bytes) const {
    auto contents = fs.read_file(who, path, max_bytes);
    if (!contents && contents.error().is_errno(EACCES) && priv.elevates_in_process())
      contents = fs.read_file(elevated_actor(), path, max_bytes);
    return contents;
  }

  /// `fs.replace_file`, remembering a replace whose rename happened but whose directory sync
  /// failed (`replace_outcome::durable == false`): converge and uninstall report each such path
  /// as a note, since the change may be lost on a power failure. Primitives replace through this.
  result<replace_outcome> replace_file(const actor& who, std::string_view path, std::string_view bytes,
                                       const replace_options& options) {
    auto written = fs.replace_file(who, path, bytes, options);
    if (written && !written->durable) note_not_durable(path);
    return written;
  }

  /// Remembers that a change at `path` is in place but its directory could not be synced.
  void note_not_durable(std::string_view path) {
    for (const auto& p : not_durable)
      if (p == path) return;
    not_durable.emplace_back(path);
  }

  /// Paths changed in this run whose directory sync failed (see `replace_file`); converge and
  /// uninstall move them into their report's notes.
  std::vector<std::string> not_durable;

  /// Write-ahead of undo data: stores `items` in the record of their scope (the root-owned one
  /// when `privileged`) *before* the change they describe is made. The run's records are
  /// otherwise stored once, at its end; without this a crash between a change and that store
  /// would lose what only the record knows (a file's original bytes, the target of a link taken
  /// over, that a file or link is ours to remove). Each item describes the state after the change
  /// and, in `was_*` fields where the item existed before, the state it replaces, so a revert
  /// recognises either state (the change made or not yet) as ours. `books` is not touched: the
  /// caller puts its final item after the change; when it does not (the change failed), the
  /// written-ahead item stays in the file (see `recorded_ahead`). Writes nothing in a dry run,
  /// for the user's record in an elevated runner (which never writes it), or when `books` already
  /// holds exactly these items. On an error the caller must not make the change; that includes
  /// a record renamed into place whose directory could not be synced (`errc::not_durable`: a
  /// crash could still lose it), whose items are then marked withdrawn.
  result<void> record_ahead(const ledgers& books, bool privileged, const std::vector<record_item>& items) {
    if (policy.dry_run || items.empty()) return {};
    if (!privileged && !read_user_record) return {};
    const record& known = books.scope(privileged);
    record base{app_id, {}};
    record mine{app_id, {}};
    for (const auto& item : items) {
      const ahead_entry* ahead = find_ahead(privileged, item.id);
      const record_item* on_file = ahead ? &ahead->item : known.find(item.id);
      if (on_file && *on_file == item) continue;
      if (on_file) base.put(*on_file);
      mine.put(item);
    }
    if (mine.empty()) return {};
    auto stored = store_record_merged(fs, privileged ? system_record : user_record, mine, base, record_sync::required);
    // Renamed into place but not synced: the items are in the file, so the run's final store
    // must know them - as withdrawn, since the change they announce will not be made.
    const bool in_file_only = !stored && stored.error().is(errc::not_durable);
    if (!stored && !in_file_only) return tl::unexpected(stored.error());
    for (const auto& entry : mine.items) {
      if (ahead_entry* ahead = find_ahead(privileged, entry.first)) *ahead = ahead_entry{privileged, entry.second, in_file_only};
      else recorded_ahead.push_back(ahead_entry{privileged, entry.second, in_file_only});
    }
    if (in_file_only) return tl::unexpected(stored.error());
    return {};
  }

  /// Says that the change an item was written ahead for did not happen (it failed atomically):
  /// unless the run puts the item after all, its final store removes it again, so the record is
  /// as if the change had never been tried.
  void withdraw_ahead(bool privileged, const std::string& id) {
    for (auto& entry : recorded_ahead)
      if (entry.privileged == privileged && entry.item.id == id) entry.withdrawn = true;
  }

  /// One item `record_ahead` wrote in this run.
  struct ahead_entry {
    bool privileged = false;  ///< in the root-owned record
    record_item item;         ///< as written
    bool withdrawn = false;   ///< see `withdraw_ahead`
  };
  /// Items `record_ahead` wrote in this run. The run's final store counts them as already in the
  /// file: an item the run then put differently is written again, a withdrawn one the run did not
  /// put is removed, and any other it did not put (its change failed half-way, or the run ended
  /// first) stays as written ahead. Cleared when a run starts.
  std::vector<ahead_entry> recorded_ahead;

  /// Reports one event to the sink.
  void emit(const std::string& primitive_id, const event& e) const {
    if (on_event) on_event(primitive_id, e);
  }

 private:
  ahead_entry* find_ahead(bool privileged, const std::string& id) {
    for (auto& entry : recorded_ahead)
      if (entry.privileged == privileged && entry.item.id == id) return &entry;
    return nullptr;
  }

  std::vector<std::pair<const void*, void*>> backends_;
};

HOSTCFG_END_NAMESPACE
