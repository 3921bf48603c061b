#pragma once
/// @file
/// LaunchdPlist: a launchd job written, compared, loaded and removed correctly (issue 6).
///
///     LaunchdPlist helper{docker_vmnetd_job()};                  // a system daemon
///     FakeServiceManager fake;  any_service_manager sm(fake);  ctx.attach(sm);
///     auto report = converge(ctx, helper);
///
/// - Place, owner and domain follow the scope: a daemon lives in /Library/LaunchDaemons,
///   root:wheel 0644, loaded in `system`; an agent lives in ~/Library/LaunchAgents, owned by the
///   user, loaded in `gui/<uid>` (or `user/<uid>` on a headless Mac). launchd ignores a daemon plist
///   with another owner or a group/world-writable mode, so probe reports that state as `differs`.
/// - A daemon runs as root: its program and every directory above it must be root-owned, not
///   writable by group or others, and not symlinks (podman's verifyRootDeep, Lima's validatePath);
///   otherwise probe reports a conflict naming the unsafe path and nothing is planned.
/// - Probe compares the installed job with the desired one as value trees (`plist_equal`: key
///   order, whitespace, comments and XML vs binary do not matter; types do) and asks the
///   service-manager backend (an `any_service_manager` attached to the context; none attached
///   means "no launchd here") whether the job is loaded and enabled.
/// - Apply writes atomically with the right owner and mode, and reloads only when the content
///   changed (bootout, wait until the label is gone, bootstrap; EIO retried once after waiting
///   again), then verifies the job is loaded.
/// - Revert (the seed's uninstall): bootout, wait, remove the plist we created (or restore the one
///   we took over). A plist changed since we wrote it is left alone (`errc::drifted`).
/// - Self-revert (`launchd_revert_options::self`, for a helper uninstalling its own job): launchd
///   ends a job's process when the job is booted out, so the order is reversed: remove (or
///   restore) the plist, store the record with the item marked "bootout pending", and boot out
///   last, without waiting. A process that dies between the two leaves "plist gone, job still
///   loaded" and that mark; probe reports it and the next revert or converge finishes the bootout.
///
/// Items: `launchd:<label>` (the plist file), `launchd:<label>:job` (loaded + enabled) and, for
/// daemons, `launchd:<label>:program` (the program path's safety).

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "hostcfg/backend/service_manager.hpp"
#include "hostcfg/context.hpp"
#include "hostcfg/file_lock.hpp"
#include "hostcfg/format/plist.hpp"
#include "hostcfg/format/plist_binary.hpp"
#include "hostcfg/format/plist_xml.hpp"
#include "hostcfg/primitives/managed_file.hpp"
#include "hostcfg/protocol.hpp"
#include "hostcfg/record.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace detail {
// The plist text of a probe's "owner U:G mode M\n<xml>" description.
inline std::string launchd_body(const std::string& described) {
  auto nl = described.find('\n');
  return nl == std::string::npos ? std::string() : described.substr(nl + 1);
}
}  // namespace detail

/// A typed launchd job. `to_plist()` validates it the way launchd does (Label required and valid,
/// a program to run, absolute paths) and renders the dict with keys in launchd's usual order,
/// then `extra` keys in the order given.
struct launchd_job {
  std::string label;
  std::optional<std::string> program;                   ///< Program (absolute)
  std::vector<std::string> program_arguments;           ///< ProgramArguments ([0] absolute when no Program)
  std::optional<bool> run_at_load;                      ///< RunAtLoad
  std::optional<plist_value> keep_alive;                ///< KeepAlive: bool or dict
  std::optional<plist_dict> sockets;                    ///< Sockets
  std::optional<std::string> user_name;                 ///< UserName
  std::optional<std::string> group_name;               ///< GroupName
  std::optional<std::string> standard_out_path;         ///< StandardOutPath (absolute)
  std::optional<std::string> standard_error_path;       ///< StandardErrorPath (absolute)
  std::optional<plist_dict> environment_variables;      ///< EnvironmentVariables: string values
  std::optional<std::string> working_directory;         ///< WorkingDirectory (absolute)
  std::optional<std::int64_t> start_interval;           ///< StartInterval (seconds, > 0)
  std::optional<plist_value> start_calendar_interval;   ///< StartCalendarInterval: dict or array of dicts
  std::vector<std::string> associated_bundle_identifiers;  ///< AssociatedBundleIdentifiers
  plist_dict extra;                                     ///< any other keys (may not repeat a typed one)

  /// The program launchd runs: Program, else ProgramArguments[0] (empty when neither).
  std::string executable() const {
    if (program) return *program;
    return program_arguments.empty() ? std::string() : program_arguments.front();
  }

  /// The job as a plist dict, or `errc::invalid_input` naming the key that is wrong.
  result<plist_value> to_plist() const {
    auto bad = [&](const std::string& key, const std::string& why) {
      return fail(errc::invalid_input, "validate launchd job", label.empty() ? key : label + " " + key, why);
    };
    if (auto ok = validate_label(label); !ok) return tl::unexpected(ok.error());
    if (executable().empty()) return bad("ProgramArguments", "the job has neither Program nor ProgramArguments");
    auto absolute = [&](const std::string& key, const std::optional<std::string>& value) -> result<void> {
      if (value && !is_normal_path(*value)) return bad(key, "not an absolute normal path: \"" + *value + "\"");
      return {};
    };
    if (auto ok = absolute(program ? "Program" : "ProgramArguments[0]", executable()); !ok) return tl::unexpected(ok.error());
    for (auto [key, value] : {std::pair<const char*, const std::optional<std::string>*>{"StandardOutPath", &standard_out_path},
                              {"StandardErrorPath", &standard_error_path},
                              {"WorkingDirectory", &working_directory}})
      if (auto ok = absolute(key, *value); !ok) return tl::unexpected(ok.error());
    if (keep_alive && keep_alive->type() != plist_type::boolean && keep_alive->type() != plist_type::dict)
      return bad("KeepAlive", "must be a bool or a dict");
    if (start_calendar_interval && start_calendar_interval->type() != plist_type::dict &&
        start_calendar_interval->type() != plist_type::array)
      return bad("StartCalendarInterval", "must be a dict or an array of dicts");
    if (start_interval && *start_interval <= 0) return bad("StartInterval", "must be a positive number of seconds");
    if (environment_variables)
      for (const auto& e : environment_variables->entries)
        if (!e.value.as_string()) return bad("EnvironmentVariables." + e.key, "must be a string");

    plist_dict d;
    d.set("Label", label);
    if (program) d.set("Program", *program);
    if (!program_arguments.empty()) {
      plist_array args;
      for (const auto& a : program_arguments) args.items.emplace_back(a);
      d.set("ProgramArguments", std::move(args));
    }
    if (user_name) d.set("UserName", *user_name);
    if (group_name) d.set("GroupName", *group_name);
    if (working_directory) d.set("WorkingDirectory", *working_directory);
    if (environment_variables) d.set("EnvironmentVariables", *environment_variables);
    if (run_at_load) d.set("RunAtLoad", *run_at_load);
    if (keep_alive) d.set("KeepAlive", *keep_alive);
    if (start_interval) d.set("StartInterval", *start_interval);
    if (start_calendar_interval) d.set("StartCalendarInterval", *start_calendar_interval);
    if (sockets) d.set("Sockets", *sockets);
    if (standard_out_path) d.set("StandardOutPath", *standard_out_path);
    if (standard_error_path) d.set("StandardErrorPath", *standard_error_path);
    if (!associated_bundle_identifiers.empty()) {
      plist_array ids;
      for (const auto& a : associated_bundle_identifiers) ids.items.emplace_back(a);
      d.set("AssociatedBundleIdentifiers", std::move(ids));
    }
    for (const auto& e : extra.entries) {
      if (d.find(e.key)) return bad(e.key, "set both as a typed field and in extra");
      d.entries.push_back(e);
    }
    plist_value out(std::move(d));
    // Refuse here, naming the key, what the writer could not carry.
    if (auto written = write_plist_xml(out); !written) return tl::unexpected(written.error());
    return out;
  }
};

/// Docker Desktop's privileged helper daemon, as the seed installs it.
inline launchd_job docker_vmnetd_job(const std::string& helper = "/Library/PrivilegedHelperTools/com.docker.vmnetd") {
  launchd_job job;
  job.label = "com.docker.vmnetd";
  job.program = helper;
  job.program_arguments = {helper};
  job.run_at_load = true;
  job.sockets = plist_dict{
      {"Listener", plist_dict{{"SockPathMode", 438}, {"SockPathName", "/var/run/com.docker.vmnetd.sock"}}}};
  return job;
}

/// The boot task that re-creates /var/run/docker.sock (a tmpfs) at every boot, so the user is not
/// prompted after each restart: `/bin/ln -s -f <home>/.docker/run/docker.sock /var/run/docker.sock`.
inline launchd_job docker_socket_link_job(const std::string& home) {
  launchd_job job;
  job.label = "com.docker.socket";
  job.program_arguments = {"/bin/ln", "-s", "-f", join_path(home, ".docker/run/docker.sock"), "/var/run/docker.sock"};
  job.run_at_load = true;
  return job;
}

/// How `LaunchdPlist::revert` undoes a job.
///
///     launchd_revert_options own;  own.self = true;   // the caller runs inside the job
///     job.revert(ctx, g, books, own);                  // remove + record, then bootout
struct launchd_revert_options {
  /// The calling process is the job's own process (a privileged helper uninstalling itself).
  ///
  /// `launchctl bootout` of that job makes launchd send the caller SIGTERM, so the ordinary order
  /// (bootout, wait until gone, remove the plist) never reaches the removal and its wait cannot
  /// end while the caller is alive. With `self`: the plist is removed (or the replaced one
  /// restored) first, so launchd never starts the job again, not even after a reboot; the
  /// record of the item's scope is stored at once, the item marked "bootout pending", because
  /// nothing after the bootout is sure to run; then the bootout is the last act and is not waited
  /// for. When it returns anyway (no launchd here, or the caller is not in the job), the item is
  /// erased from `books` and the caller stores that as usual.
  bool self = false;
};

/// A launchd job installed as a file and loaded through the service manager. See the file comment.
struct LaunchdPlist {
  /// Where the job lives and who runs it.
  enum class scope { daemon, agent };

  explicit LaunchdPlist(launchd_job j, scope s = scope::daemon) : job(std::move(j)), where(s) {}

  launchd_job job;
  scope where = scope::daemon;
  /// Agents only: `gui/<uid>` by default; `user/<uid>` for headless Macs (no login session).
  bool agent_in_user_domain = false;
  /// Directory of the plist; empty: /Library/LaunchDaemons or <home>/Library/LaunchAgents.
  std::string directory;
  bool take_over = false;         ///< replace a job hostcfg did not write (its bytes kept for revert)
  bool check_program = true;      ///< daemons: refuse a program path others could replace
  std::size_t bootout_polls = 50; ///< how often to ask whether a booted-out label is gone
  std::chrono::milliseconds poll_interval{100};
  std::size_t max_bytes = 1u << 20;

  static constexpr const char* kind_name = "launchd_plist";
  std::string id() const { return "launchd:" + job.label; }
  const char* kind() const { return kind_name; }

  /// The typed desired state handed to an elevated runner (elevation.hpp): the job as plist XML
  /// and the placement options; never a command to run.
  record_item desired_state() const {
    record_item item{id(), kind(), {}};
    auto value = job.to_plist();
    item.fields["job"] = value ? write_plist_xml(*value).value_or(std::string()) : std::string();
    item.fields["scope"] = where == scope::daemon ? "daemon" : "agent";
    item.fields["user_domain"] = agent_in_user_domain ? "1" : "0";
    item.fields["directory"] = directory;
    item.fields["take_over"] = take_over ? "1" : "0";
    return item;
  }

  /// Rebuilds a LaunchdPlist from `desired_state()`, re-validating the job (the runner treats the
  /// payload as untrusted). The program-path check is always on for a rebuilt daemon.
  static result<LaunchdPlist> from_desired_state(const record_item& item) {
    auto bad = [&](const std::string& why) { return fail(errc::invalid_input, "read desired state", item.id, why); };
    auto value = read_plist_xml(item.get("job"));
    if (!value) return tl::unexpected(value.error());
    const plist_dict* dict = value->as_dict();
    if (!dict) return bad("the job is not a dict");
    launchd_job rebuilt;
    for (const auto& e : dict->entries) {
      if (e.key == "Label" && e.value.as_string()) {
        rebuilt.label = *e.value.as_string();
      } else if (e.key == "Program" && e.value.as_string()) {
        rebuilt.program = *e.value.as_string();
      } else if (e.key == "ProgramArguments" && e.value.as_array()) {
        for (const auto& a : e.value.as_array()->items) {
          if (!a.as_string()) return bad("ProgramArguments must be strings");
          rebuilt.program_arguments.push_back(*a.as_string());
        }
      } else {
        rebuilt.extra.entries.push_back(e);
      }
    }
    std::string where_text = item.get("scope");
    if (where_text != "daemon" && where_text != "agent") return bad("scope must be daemon or agent");
    LaunchdPlist p(std::move(rebuilt), where_text == "daemon" ? scope::daemon : scope::agent);
    p.agent_in_user_domain = item.get("user_domain") == "1";
    p.directory = item.get("directory");
    if (!p.directory.empty() && !is_normal_path(p.directory)) return bad("directory must be absolute and normal");
    p.take_over = item.get("take_over") == "1";
    if (auto ok = p.job.to_plist(); !ok) return tl::unexpected(ok.error());
    if (p.id() != item.id) return bad("the step id does not match the job's label");
    return p;
  }

  /// The plist's path for `user` (agents live in the user's home).
  std::string plist_path(const user_identity& user) const {
    std::string dir = !directory.empty() ? directory
                      : where == scope::daemon ? std::string("/Library/LaunchDaemons")
                                               : join_path(user.home, "Library/LaunchAgents");
    return join_path(dir, job.label + ".plist");
  }
  /// The domain the job is loaded in.
  launchd_domain domain(const user_identity& user) const {
    if (where == scope::daemon) return launchd_domain::system();
    return agent_in_user_domain ? launchd_domain::user(user.uid) : launchd_domain::gui(user.uid);
  }

  /// Reads the plist once, checks the program path, asks the service manager.
  template <class Fs, class Priv>
  result<probe_report> probe(context<Fs, Priv>& ctx, const ledgers& books) const {
    auto desired = job.to_plist();
    if (!desired) return tl::unexpected(desired.error());
    std::string xml = *write_plist_xml(*desired);
    const user_identity& user = ctx.priv.user();
    std::string path = plist_path(user);
    if (!is_normal_path(path)) return fail(errc::invalid_input, "probe", path, "not an absolute normal path");
    probe_report report{kind(), id(), {}};
    if (where == scope::daemon && check_program) report.items.push_back(probe_program(ctx));
    report.items.push_back(probe_file(ctx, books, *desired, xml, path));
    report.items.push_back(probe_job(ctx, user));
    const item_probe& file = report.items[report.items.size() - 2];
    item_probe& service = report.items.back();
    if (file.state == item_state::absent && service.current.rfind("loaded", 0) == 0) {
      // launchd keeps running a job whose plist is gone until it is booted out or the Mac
      // restarts: not the job asked for, whatever its state says.
      const record_item* mine = books.scope(where == scope::daemon).find(id());
      service.state = item_state::differs;
      service.detail = "loaded, but its plist " + path + " is gone" +
                       (mine && bootout_pending(*mine)
                            ? ": an uninstall of the job by itself removed it and did not finish the bootout"
                            : std::string()) +
                       (service.detail.empty() ? std::string() : "; " + service.detail);
    }
    return report;
  }

  /// True when `item` (this primitive's record item) says the plist was removed by a self-revert
  /// whose bootout has not been seen to finish (`launchd_revert_options::self`).
  static bool bootout_pending(const record_item& item) { return item.get("pending") == "bootout"; }

  /// Pure. Nothing is planned while the program path is unsafe. The plist is written when absent
  /// or different; the job is loaded when not loaded, reloaded only when the content changes.
  plan make_plan(const probe_report& probed) const {
    plan p{kind(), id(), {}};
    const item_probe* program = probed.find(id() + ":program");
    // A root daemon is installed only when its program path was checked and found safe.
    if (program && program->state != item_state::matches) return p;
    const item_probe* file = probed.find(id());
    const item_probe* service = probed.find(id() + ":job");
    bool content_changes = false;
    if (file && (file->state == item_state::absent || file->state == item_state::differs)) {
      change c;
      c.item_id = file->id;
      c.kind = file->state == item_state::absent ? change_kind::create : change_kind::modify;
      c.object = "launchd plist";
      c.path = file->path;
      c.before = file->current;
      c.after = file->desired;
      c.reason = file->state == item_state::absent ? owner_text() : file->detail;
      c.needs_elevation = file->needs_elevation;
      c.elevation_reason = file->elevation_reason;
      c.expected = file->observed;
      content_changes = detail::launchd_body(c.before) != detail::launchd_body(c.after);
      p.changes.push_back(c);
    }
    if (!service || (file && file->state != item_state::absent && file->state != item_state::differs &&
                     file->state != item_state::matches))
      return p;
    bool loaded = service->current.rfind("loaded", 0) == 0;
    bool unknown = service->current == "unknown";
    bool disabled = service->current.find("disabled") != std::string::npos;
    if (unknown && !content_changes) return p;
    if (loaded && !disabled && !content_changes) return p;
    change c;
    c.item_id = service->id;
    c.kind = loaded ? change_kind::modify : change_kind::create;
    c.object = "launchd job";
    c.path = service->path;
    c.before = service->current;
    c.after = service->desired;
    c.reason = loaded && content_changes ? "reload: the job changed (bootout, wait until gone, bootstrap)"
               : loaded                 ? "enable"
                                        : "bootstrap";
    c.needs_elevation = service->needs_elevation;
    c.elevation_reason = service->elevation_reason;
    p.changes.push_back(c);
    return p;
  }

  /// Writes the plist (atomic, owner and mode), then loads or reloads the job.
  template <class Fs, class Priv>
  apply_report apply(context<Fs, Priv>& ctx, const plan& p, const grant& g, ledgers& books) const {
    apply_report report{kind(), id(), {}, {}};
    bool file_failed = false;
    for (const auto& c : p.changes) {
      if (c.needs_elevation && !g.elevated) {
        report.events.push_back(event{c.item_id, event_kind::skipped, c.path, g.refusal(), std::nullopt, false});
        file_failed = file_failed || c.item_id == id();
        continue;
      }
      if (c.item_id == id()) {
        auto done = write_file(ctx, c, books);
        if (done) {
          report.events.push_back(event{c.item_id, event_kind::changed, c.path,
                                        std::string(change_kind_done(c.kind)) + " (" + owner_text() + ")",
                                        std::nullopt, c.needs_elevation});
          if (!done->durable)
            report.notes.push_back(c.path + " was written but the directory sync failed: it may not survive a crash");
        } else {
          file_failed = true;
          report.events.push_back(
              event{c.item_id, event_kind::failed, c.path, done.error().message(), done.error(), c.needs_elevation});
        }
        continue;
      }
      if (file_failed) {
        report.events.push_back(event{c.item_id, event_kind::skipped, c.path,
                                      "not loaded: the plist was not written", std::nullopt, false});
        continue;
      }
      bool reload = c.kind == change_kind::modify && c.reason.rfind("reload", 0) == 0;
      bool enable = c.before.find("disabled") != std::string::npos;
      report.events.push_back(load(ctx, c, reload, enable));
    }
    return report;
  }

  /// What revert would do, from the records alone.
  plan revert_plan(const ledgers& books) const {
    plan p{kind(), id(), {}};
    const record_item* mine = books.find(id());
    if (!mine) return p;
    bool privileged = books.system.find(id()) != nullptr;
    change job_change;
    job_change.item_id = id() + ":job";
    job_change.kind = change_kind::remove;
    job_change.object = "launchd job";
    job_change.path = mine->get("domain") + "/" + job.label;
    job_change.reason = "bootout";
    job_change.needs_elevation = privileged;
    job_change.elevation_reason = privileged ? "it was loaded with admin rights" : "";
    if (bootout_pending(*mine)) {
      // The plist is already gone (or the replaced one back): only the bootout is left to do.
      job_change.reason = "bootout; its plist was already removed by an unfinished uninstall";
      p.changes.push_back(job_change);
      return p;
    }
    p.changes.push_back(job_change);
    change file_change;
    file_change.item_id = id();
    file_change.object = "launchd plist";
    file_change.path = mine->get("path");
    file_change.needs_elevation = privileged;
    file_change.elevation_reason = privileged ? "it was written with admin rights" : "";
    bool created = mine->get("created") == "1";
    file_change.kind = created ? change_kind::remove : change_kind::modify;
    file_change.reason = created ? "hostcfg created it" : "restore the job it replaced";
    p.changes.push_back(file_change);
    return p;
  }

  /// Unloads the job, waits until it is gone, removes (or restores) the plist. Refuses a plist
  /// that changed since we wrote it. An item marked "bootout pending" (a self-revert that ended
  /// before its bootout) only needs the bootout: its plist is already gone.
  template <class Fs, class Priv>
  apply_report revert(context<Fs, Priv>& ctx, const grant& g, ledgers& books) const {
    return revert(ctx, g, books, launchd_revert_options{});
  }

  /// `revert` with options: `options.self` for the job's own process (see `launchd_revert_options`:
  /// remove and record first, bootout last).
  template <class Fs, class Priv>
  apply_report revert(context<Fs, Priv>& ctx, const grant& g, ledgers& books,
                      const launchd_revert_options& options) const {
    apply_report report{kind(), id(), {}, {}};
    const record_item* found = books.find(id());
    if (!found) return report;
    record_item mine = *found;
    bool privileged = books.system.find(id()) != nullptr;
    std::string path = mine.get("path");
    const bool created = mine.get("created") == "1";
    const bool pending = bootout_pending(mine);
    if (privileged && !g.elevated) {
      report.events.push_back(event{id(), event_kind::skipped, path, g.refusal(), std::nullopt, false});
      return report;
    }
    actor who = ctx.actor_for(privileged);
    launchd_domain dom = domain(ctx.priv.user());
    {
      // Held from the drift check to the removal (across the bootout in the ordinary order): the
      // plist judged is the one removed or replaced, whatever another hostcfg run wants to write
      // there meanwhile. A self-revert lets go before it stores the record and boots out.
      auto held = lock_for_edit(ctx.fs, who, path);
      if (!held && !held.error().is_errno(ENOENT)) {  // no directory: no plist either, still unload
        report.events.push_back(event{id(), event_kind::failed, path, held.error().message(), held.error(), privileged});
        return report;
      }
      auto current = ctx.fs.read_file(who, path, max_bytes);
      auto is_ours = [&](const std::string& bytes) {
        return same_job(bytes, mine.get("written")) ||
               (mine.fields.count("was_written") != 0 && same_job(bytes, mine.get("was_written")));
      };
      if (!pending && !created && current && !is_ours(current->bytes) &&
          same_job(current->bytes, mine.get("original"))) {
        // Written ahead (context::record_ahead) by a run that ended before its write: the job it
        // would have replaced is still there, and is not ours to unload.
        books.scope(privileged).erase(id());
        report.events.push_back(event{id(), event_kind::kept, path, "already the job it was before hostcfg",
                                      std::nullopt, privileged});
        return report;
      }
      // What must be there now: what we wrote; once a self-revert took it away, nothing (we
      // created it) or the job we had replaced (restored).
      if (current && (pending ? created || !same_job(current->bytes, mine.get("original"))
                              : !is_ours(current->bytes))) {
        auto drift = fail(errc::drifted, "revert", path,
                          pending ? "a job was written there since hostcfg removed its own"
                                  : "the job changed since hostcfg wrote it",
                          "it was left loaded and in place; remove it by hand if it is no longer needed")
                         .value();
        report.events.push_back(event{id(), event_kind::skipped, path, drift.message(), drift, privileged});
        return report;
      }
      const bool unreadable = !current && !current.error().is_errno(ENOENT);
      if (unreadable && (options.self || pending)) {
        // Nothing is undone on a plist that could not be judged.
        report.events.push_back(
            event{id(), event_kind::failed, path, current.error().message(), current.error(), privileged});
        return report;
      }
      if (!options.self) {
        // The ordinary order: the job goes first, so launchd never runs it without its plist.
        event unloaded = unload(ctx, dom, privileged);
        bool unload_failed = unloaded.kind == event_kind::failed;
        report.events.push_back(std::move(unloaded));
        if (unload_failed) return report;
      }
      if (pending) {
        // Removed and recorded by a self-revert that ended before its bootout: only the bootout
        // was left (done above, or last below for the job's own process).
        report.events.push_back(
            event{id(), event_kind::kept, path, "already removed before the bootout", std::nullopt, privileged});
        if (!options.self) {
          books.scope(privileged).erase(id());
          return report;
        }
      } else {
        auto undone = unreadable ? result<void>(tl::unexpected(current.error()))
                                 : undo_file(ctx, who, path, mine, current ? &current->status : nullptr);
        if (!undone) {
          report.events.push_back(
              event{id(), event_kind::failed, path, undone.error().message(), undone.error(), privileged});
          return report;
        }
        report.events.push_back(event{id(), event_kind::changed, path,
                                      created ? "removed" : "restored the job it replaced", std::nullopt, privileged});
        if (!options.self) {
          books.scope(privileged).erase(id());
          return report;
        }
      }
    }
    if (!pending) {
      // Recorded before the bootout: if this process dies in between (or during it), the record
      // says what is left to do, and the next revert or converge finishes it.
      record before = books.scope(privileged);
      mine.fields["pending"] = "bootout";
      books.scope(privileged).put(mine);
      const record_location& where = privileged ? ctx.system_record : ctx.user_record;
      auto stored = store_record_merged(ctx.fs, where, books.scope(privileged), before);
      if (!stored) {
        // The record still names the plist as ours; a later revert finds it gone and boots the
        // job out all the same, so the bootout below may go ahead.
        report.events.push_back(event{id(), event_kind::failed, where.path,
                                      "bootout pending not recorded: " + stored.error().message(), stored.error(),
                                      privileged});
      }
    }
    // The very last act: on a real launchd it ends this process. Not waited for: the job cannot be
    // gone while its own process is still here asking.
    std::string target = dom.name() + "/" + job.label;
    any_service_manager* sm = ctx.template find<any_service_manager>();
    auto out = sm ? sm->bootout(dom, job.label) : result<service_outcome>(service_outcome{true, FileOnlyServiceManager::skip_note});
    if (!out && !out.error().is_errno(ESRCH)) {
      report.events.push_back(event{id() + ":job", event_kind::failed, target, out.error().message(), out.error(), privileged});
      return report;
    }
    books.scope(privileged).erase(id());
    if (!out)
      report.events.push_back(event{id() + ":job", event_kind::kept, target, "not loaded", std::nullopt, privileged});
    else if (out->skipped)
      report.events.push_back(event{id() + ":job", event_kind::skipped, target, out->note, std::nullopt, false});
    else
      report.events.push_back(event{id() + ":job", event_kind::changed, target, "booted out", std::nullopt, privileged});
    return report;
  }

 private:
  uid_type owner_uid(const user_identity& user) const { return where == scope::daemon ? 0 : user.uid; }
  gid_type owner_gid(const user_identity& user) const { return where == scope::daemon ? 0 : user.gid; }
  std::string owner_text() const {
    return where == scope::daemon ? "root:wheel 0644" : "owned by the user, 0644";
  }
  static std::string describe(uid_type uid, gid_type gid, mode_type mode, const std::string& body) {
    return "owner " + std::to_string(uid) + ":" + std::to_string(gid) + " mode " + detail::mode_text(mode) + "\n" + body;
  }

  // Removes the plist we created, or puts back the one we replaced; `current` is what is there
  // now (null: nothing).
  template <class Ctx>
  result<void> undo_file(Ctx& ctx, const actor& who, const std::string& path, const record_item& mine,
                         const file_status* current) const {
    if (mine.get("created") == "1") {
      if (current)
        if (auto gone = unlink_durably(ctx.fs, who, path); !gone) return gone;
      // The directories made for it, innermost first, while empty (a crash may have left a
      // temp of its write there first).
      remove_stale_temps(ctx.fs, who, path);
      remove_dirs_made(ctx.fs, who, mine.get("dirs"));
      return {};
    }
    replace_options options;
    options.expected = current ? std::optional<file_status>(*current) : std::nullopt;
    auto original_mode = detail::original_mode_of(mine, path, "plist");
    if (!original_mode) return tl::unexpected(original_mode.error());
    options.mode = *original_mode;
    options.force_mode = true;
    auto written = ctx.replace_file(who, path, mine.get("original"), options);
    if (!written) return tl::unexpected(written.error());
    return {};
  }

  // True when two plist files hold the same job (value trees, either form).
  static bool same_job(const std::string& a, const std::string& b) {
    if (a == b) return true;
    auto x = read_plist(a);
    auto y = read_plist(b);
    return x && y && plist_equal(*x, *y);
  }

  template <class Ctx>
  item_probe probe_program(Ctx& ctx) const {
    item_probe item;
    item.id = id() + ":program";
    std::string program = job.executable();
    item.path = program;
    item.desired = "root-owned, not writable by group or others, no symlinks";
    item.state = item_state::matches;
    actor who = ctx.priv.elevates_in_process() ? ctx.elevated_actor() : ctx.user_actor();
    std::string current;
    std::vector<std::string> chain{"/"};
    for (const auto& part : path_components(program)) chain.push_back(current += "/" + part);
    for (const auto& component : chain) {
      auto st = ctx.fs.lstat(who, component);
      if (!st) {
        if (st.error().is_errno(ENOENT)) {
          item.current = "not installed yet: " + component;
          return item;  // whoever installs it creates the rest; what exists is safe
        }
        item.state = item_state::unreadable;
        item.detail = st.error().message();
        return item;
      }
      std::string why;
      if (st->type == file_type::symlink) why = "is a symlink (name the real path)";
      else if (st->uid != 0) why = "is owned by uid " + std::to_string(st->uid) + ", not root";
      else if (st->mode & 022) why = "is writable by group or others (mode " + detail::mode_text(st->mode) + ")";
      if (!why.empty()) {
        item.state = item_state::conflict;
        item.current = component + " " + why;
        item.detail = "unsafe program path for a root daemon: " + component + " " + why +
                      "; install the program into a root-owned directory such as /Library/PrivilegedHelperTools";
        return item;
      }
    }
    item.current = item.desired;
    return item;
  }

  template <class Ctx>
  item_probe probe_file(Ctx& ctx, const ledgers& books, const plist_value& desired, const std::string& xml,
                        const std::string& path) const {
    item_probe item;
    item.id = id();
    item.path = path;
    const user_identity& user = ctx.priv.user();
    uid_type want_uid = owner_uid(user);
    gid_type want_gid = owner_gid(user);
    item.desired = describe(want_uid, want_gid, 0644, xml);
    actor reader = ctx.user_actor();
    auto ancestor = detail::nearest_existing_dir(ctx.fs, reader, path);
    if (!ancestor) {
      item.state = ancestor.error().is_errno(EACCES) ? item_state::unreadable : item_state::conflict;
      item.detail = ancestor.error().message();
      return item;
    }
    auto current = ctx.read_for_probe(reader, path, max_bytes);
    bool owner_wrong = false;
    if (!current) {
      const error& e = current.error();
      if (e.is_errno(ENOENT)) {
        item.state = item_state::absent;
      } else if (e.is_errno(EACCES)) {
        item.state = item_state::unreadable;
        item.detail = e.message();
      } else {
        item.state = item_state::conflict;
        item.detail = e.message();
      }
    } else {
      const file_status& st = current->status;
      item.observed = st;
      auto parsed = read_plist(current->bytes);
      bool same = parsed && plist_equal(*parsed, desired);
      owner_wrong = st.uid != want_uid || st.gid != want_gid || st.mode != 0644;
      // The body shown for an equal job is the desired text, so the plan can tell a content
      // change from an owner/mode repair by comparing bodies.
      std::string body = current->bytes;
      if (same) {
        body = xml;
      } else if (parsed) {
        if (auto rewritten = write_plist_xml(*parsed)) body = *rewritten;
      }
      item.current = describe(st.uid, st.gid, st.mode, body);
      // Ours only if the record of its scope says so (a daemon: the root-owned record).
      const record_item* mine = books.scope(where == scope::daemon).find(id());
      std::vector<std::string> why;
      if (!parsed) why.push_back("not a readable plist: " + parsed.error().reason);
      if (parsed && !same)
        for (const auto& line : plist_diff(*parsed, desired)) why.push_back(line);
      if (owner_wrong)
        why.push_back("owner " + std::to_string(st.uid) + ":" + std::to_string(st.gid) + " mode " +
                      detail::mode_text(st.mode) + ", want " + owner_text() +
                      (where == scope::daemon ? " (launchd ignores a daemon plist with another owner or a "
                                                "group/world-writable mode)"
                                              : ""));
      for (const auto& line : why) item.detail += (item.detail.empty() ? "" : "; ") + line;
      if (same && !owner_wrong) {
        item.state = item_state::matches;
      } else if (st.flags.immutable || st.flags.append_only) {
        item.state = item_state::locked;
        item.detail = "the plist is immutable or append-only (chflags/chattr); hostcfg never clears that";
      } else if (!mine && !take_over && !same) {
        item.state = item_state::conflict;
        item.detail = "a launchd job hostcfg did not write is there (set take_over to replace it): " + item.detail;
      } else {
        item.state = item_state::differs;
      }
    }
    if (item.state == item_state::absent || item.state == item_state::differs) {
      actor user_actor = ctx.user_actor();
      bool dir_ok = may_write_dir(user_actor, ancestor->second);
      bool owner_needs_root = want_uid != user_actor.uid || (owner_wrong && !user_actor.is_root());
      if (!dir_ok || owner_needs_root) {
        item.needs_elevation = true;
        item.elevation_reason = !dir_ok ? ancestor->first + " is not writable by uid " + std::to_string(user_actor.uid)
                                        : "the plist must be owned by root";
      }
    }
    return item;
  }

  template <class Ctx>
  item_probe probe_job(Ctx& ctx, const user_identity& user) const {
    item_probe item;
    item.id = id() + ":job";
    launchd_domain dom = domain(user);
    item.path = dom.name() + "/" + job.label;
    item.desired = "loaded, enabled";
    item.needs_elevation = dom == launchd_domain::system() && !ctx.user_actor().is_root();
    if (item.needs_elevation) item.elevation_reason = "the system domain needs admin rights";
    any_service_manager* sm = ctx.template find<any_service_manager>();
    if (!sm) {
      item.state = item_state::matches;
      item.current = "unknown";
      item.detail = FileOnlyServiceManager::skip_note;
      return item;
    }
    auto loaded = sm->is_loaded(dom, job.label);
    auto enabled = loaded ? sm->is_enabled(dom, job.label) : result<service_query>(service_query::unknown);
    if (!loaded || !enabled) {
      item.state = item_state::unreadable;
      item.detail = (!loaded ? loaded.error() : enabled.error()).message();
      item.current = "unknown";
      return item;
    }
    if (*loaded == service_query::unknown) {
      item.state = item_state::matches;
      item.current = "unknown";
      item.detail = FileOnlyServiceManager::skip_note;
      return item;
    }
    bool is_loaded = *loaded == service_query::yes;
    bool is_disabled = *enabled == service_query::no;
    item.current = std::string(is_loaded ? "loaded" : "not loaded") + (is_disabled ? ", disabled" : ", enabled");
    item.state = item.current == item.desired ? item_state::matches : item_state::differs;
    if (is_disabled)
      item.detail = "disabled in the " + dom.name() +
                    " domain (\"Allow in the Background\" off, or launchctl disable): it will not start at boot";
    return item;
  }

  template <class Ctx>
  result<replace_outcome> write_file(Ctx& ctx, const change& c, ledgers& books) const {
    const user_identity& user = ctx.priv.user();
    actor who = ctx.actor_for(c.needs_elevation);
    std::string xml = detail::launchd_body(c.after);
    // Undo data is taken only from the record of this change's scope: never from the user's
    // record for a change made with root rights (the user could have forged it).
    const record_item* previous = books.scope(c.needs_elevation).find(id());
    record_item item = previous ? *previous : record_item{id(), kind(), {}};
    // Missing directories (an agent's ~/Library/LaunchAgents): recorded ahead of their mkdir in
    // the item of the plist we will create, so a crash right after a mkdir cannot leave a
    // directory no record names (revert removes them while empty).
    auto planned = missing_parents(ctx.fs, who, parent_path(c.path));
    if (!planned) return tl::unexpected(planned.error());
    std::string dirs_field = item.get("dirs");
    if (!planned->empty()) {
      list_dirs_made(dirs_field, *planned);
      record_item ahead = item;
      ahead.fields.erase("pending");  // a new plist: an old self-revert's bootout is not this item's
      if (!previous) ahead.fields["created"] = "1";  // no directory: the plist cannot exist yet
      ahead.fields["written"] = xml;
      ahead.fields["path"] = c.path;
      ahead.fields["domain"] = domain(user).name();
      ahead.fields["dirs"] = dirs_field;
      if (auto noted = ctx.record_ahead(books, c.needs_elevation, {ahead}); !noted) return tl::unexpected(noted.error());
    }
    // A failure part-way keeps the item written ahead: it names what was made.
    auto made = make_parents(ctx.fs, who, parent_path(c.path), 0755);
    if (!made) return tl::unexpected(made.error());
    list_dirs_made(dirs_field, *made);
    if (!dirs_field.empty()) item.fields["dirs"] = dirs_field;
    // Every early return from here on removes what this change made and withdraws its item.
    auto give_up = [&](error e) -> result<replace_outcome> {
      std::string made_now;
      for (const auto& d : *made) made_now += d + "\n";
      remove_dirs_made(ctx.fs, who, made_now);
      ctx.withdraw_ahead(c.needs_elevation, id());
      return tl::unexpected(std::move(e));
    };
    // Serializes hostcfg writers of this plist (RELIABILITY F6) from the read of the job it
    // replaces to the rename; taken after make_parents, so the directory locked exists.
    auto held = lock_for_edit(ctx.fs, who, c.path);
    if (!held) return give_up(held.error());
    if (!previous) {
      item.fields["created"] = c.kind == change_kind::create ? "1" : "0";
      if (c.kind == change_kind::modify && c.expected) {
        auto original = ctx.fs.read_file(who, c.path, max_bytes);
        if (!original) return give_up(original.error());
        if (!same_version(original->status, *c.expected))
          return give_up(
              fail(errc::changed_since_probe, "apply", c.path, "the plist changed since it was probed", "run again").value());
        item.fields["original"] = original->bytes;
        item.fields["original_mode"] = std::to_string(original->status.mode);
      }
    }
    // Recorded before the write (context::record_ahead): the job replaced and that the plist is
    // ours survive a crash right after the rename (see ManagedFile::apply_one for `was_written`).
    const bool unfinished = item.get("written") == xml && item.fields.count("was_written") != 0;
    const std::string was_written = unfinished ? item.get("was_written") : item.get("written");
    item.fields["written"] = xml;
    item.fields.erase("was_written");
    item.fields.erase("pending");  // written again: an unfinished self-uninstall is over
    item.fields["path"] = c.path;
    item.fields["domain"] = domain(user).name();
    record_item ahead = item;
    if (previous && !was_written.empty() && was_written != xml) ahead.fields["was_written"] = was_written;
    if (auto noted = ctx.record_ahead(books, c.needs_elevation, {ahead}); !noted) return give_up(noted.error());
    replace_options options;
    options.expected = c.expected;
    options.expect_absent = c.kind == change_kind::create;
    options.mode = 0644;
    options.force_mode = true;
    options.uid = owner_uid(user);
    options.gid = owner_gid(user);
    auto written = ctx.replace_file(who, c.path, xml, options);
    if (!written) return give_up(written.error());  // a failed replace changed nothing
    // An existing file keeps its owner and (when the bytes were already right) its mode: repair both.
    auto st = ctx.fs.lstat(who, c.path);
    if (!st) return tl::unexpected(st.error());
    if (st->uid != owner_uid(user) || st->gid != owner_gid(user)) {
      if (auto ok = ctx.fs.lchown(who, c.path, owner_uid(user), owner_gid(user)); !ok) return tl::unexpected(ok.error());
    }
    if (st->mode != 0644) {
      if (auto ok = ctx.fs.chmod(who, c.path, 0644); !ok) return tl::unexpected(ok.error());
    }
    books.scope(c.needs_elevation).put(item);
    return *written;
  }

  // Polls until the label is no longer loaded; false when it still is after `bootout_polls`.
  result<bool> wait_gone(any_service_manager& sm, const launchd_domain& dom) const {
    for (std::size_t i = 0; i < bootout_polls; ++i) {
      auto loaded = sm.is_loaded(dom, job.label);
      if (!loaded) return tl::unexpected(loaded.error());
      if (*loaded != service_query::yes) return true;
      if (poll_interval.count() > 0) std::this_thread::sleep_for(poll_interval);
    }
    return false;
  }

  template <class Ctx>
  event load(Ctx& ctx, const change& c, bool reload, bool enable) const {
    const user_identity& user = ctx.priv.user();
    launchd_domain dom = domain(user);
    std::string path = plist_path(user);
    auto failed = [&](const error& e) { return event{c.item_id, event_kind::failed, c.path, e.message(), e, c.needs_elevation}; };
    any_service_manager* sm = ctx.template find<any_service_manager>();
    if (!sm) return event{c.item_id, event_kind::skipped, c.path, FileOnlyServiceManager::skip_note, std::nullopt, false};
    if (reload) {
      auto out = sm->bootout(dom, job.label);
      if (!out && !out.error().is_errno(ESRCH)) return failed(out.error());
      if (out && out->skipped) return event{c.item_id, event_kind::skipped, c.path, out->note, std::nullopt, false};
      auto gone = wait_gone(*sm, dom);
      if (!gone) return failed(gone.error());
      if (!*gone) return failed(not_gone(dom));
    }
    if (enable) {
      auto out = sm->enable(dom, job.label);
      if (!out) return failed(out.error());
      if (out->skipped) return event{c.item_id, event_kind::skipped, c.path, out->note, std::nullopt, false};
      // Loaded already and unchanged: enabling is all it needed (it starts at the next boot).
      if (c.kind == change_kind::modify && !reload)
        return event{c.item_id, event_kind::changed, c.path, "enabled in " + dom.name(), std::nullopt,
                     c.needs_elevation};
    }
    auto booted = sm->bootstrap(dom, job.label, path);
    if (!booted && booted.error().is_errno(EIO)) {
      // home-manager#8829: a bootout that had not finished. Wait until the label is gone, retry once.
      auto gone = wait_gone(*sm, dom);
      if (!gone) return failed(gone.error());
      if (!*gone) return failed(not_gone(dom));
      booted = sm->bootstrap(dom, job.label, path);
    }
    if (!booted) return failed(booted.error());
    if (booted->skipped) return event{c.item_id, event_kind::skipped, c.path, booted->note, std::nullopt, false};
    auto now = sm->is_loaded(dom, job.label);
    if (!now) return failed(now.error());
    if (*now == service_query::no)
      return failed(fail(errc::unavailable, "bootstrap", c.path, "launchctl reported success but the job is not loaded",
                         dom.which == launchd_domain::kind::gui ? "no login session? use the user/<uid> domain" : "")
                        .value());
    return event{c.item_id, event_kind::changed, c.path,
                 std::string(reload ? "reloaded" : "loaded") + " in " + dom.name(), std::nullopt, c.needs_elevation};
  }

  error not_gone(const launchd_domain& dom) const {
    return fail(errc::timed_out, "bootout", dom.name() + "/" + job.label,
                "still loaded after " + std::to_string(bootout_polls) + " polls", "the job may be slow to exit; run again")
        .value();
  }

  template <class Ctx>
  event unload(Ctx& ctx, const launchd_domain& dom, bool privileged) const {
    std::string target = dom.name() + "/" + job.label;
    any_service_manager* sm = ctx.template find<any_service_manager>();
    if (!sm) return event{id() + ":job", event_kind::skipped, target, FileOnlyServiceManager::skip_note, std::nullopt, false};
    auto failed = [&](const error& e) { return event{id() + ":job", event_kind::failed, target, e.message(), e, privileged}; };
    auto out = sm->bootout(dom, job.label);
    if (!out && out.error().is_errno(ESRCH))
      return event{id() + ":job", event_kind::kept, target, "not loaded", std::nullopt, privileged};
    if (!out) return failed(out.error());
    if (out->skipped) return event{id() + ":job", event_kind::skipped, target, out->note, std::nullopt, false};
    auto gone = wait_gone(*sm, dom);
    if (!gone) return failed(gone.error());
    if (!*gone) return failed(not_gone(dom));
    return event{id() + ":job", event_kind::changed, target, "booted out", std::nullopt, privileged};
  }
};

HOSTCFG_END_NAMESPACE
