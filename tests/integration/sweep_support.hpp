#pragma once
// Crash and I/O-error sweeps of whole converges on MemoryFs (issue 10; RELIABILITY F1, F2, F12;
// promises 1, 9, 13), shared by sweep_converge_test.cpp and sweep_primitives_test.cpp.
//
// The seed flow (ManagedFile + HostsEntry + LaunchdPlist + SymlinkSet on a macOS-like tree) runs
// once cleanly to learn its operation count and its "new" tree. Then for every operation index k:
//   - crash after k, reboot keeping none / all / a seeded random subset of the unsynced directory
//     changes (MemoryFs::after_crash);
//   - EIO at k once, and at k and every later operation (persistent).
// After each point: every object outside the records is wholly as before or as after a clean run
// (temps aside), both records parse, no exception or abort happened, a fault that was not
// reported left the new tree, and a re-run converges to exactly the clean run's tree (records
// aside), leaves no temp anywhere, and a third run makes no mutating operation.
//
// Cost: the default sweep takes one random-subset seed per k (rotating 0, 1, 2 over k, so every
// seed is used across the sweep) and the third run only after crash-none and fault points, to keep
// each executable near 10 s in a Debug build; the whole flow's sweep is lighter still (see
// `sweep_memory`). HOSTCFG_SWEEP_FULL=1 runs every mode and 3 seeds at every k and the third run
// after every point.
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/backend/service_manager.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/format/plist_xml.hpp>
#include <hostcfg/primitives/hosts_entry.hpp>
#include <hostcfg/primitives/launchd_plist.hpp>
#include <hostcfg/primitives/managed_file.hpp>
#include <hostcfg/primitives/symlink_set.hpp>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace sweep {

using namespace hostcfg;

inline const char* app = "com.docker.desktop";
inline const char* user_record_path = "/Users/alice/.local/state/hostcfg/com.docker.desktop.record";
inline const char* system_record_path = "/var/lib/hostcfg/com.docker.desktop.record";
inline const char* helper_path = "/Library/PrivilegedHelperTools/com.docker.vmnetd";
inline const char* bundle_bin = "/Applications/Docker.app/Contents/Resources/bin";

inline const std::string stock_hosts =
    "##\n# Host Database\n#\n# localhost is used to configure the loopback interface\n"
    "# when the system is booting.  Do not change this entry.\n##\n"
    "127.0.0.1\tlocalhost\n255.255.255.255\tbroadcasthost\n::1             localhost\n";

/// True when HOSTCFG_SWEEP_FULL=1: every seed and every check at every point.
inline bool full_sweep() {
  const char* env = std::getenv("HOSTCFG_SWEEP_FULL");
  return env && std::string(env) == "1";
}

inline user_identity mac_user() {
  return user_identity{501, 20, {20, 12, 61, 80}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
}

/// A macOS-like tree with everything the seed flow touches in its "before" state.
inline MemoryFs seed_tree() {
  MemoryFs fs;
  fs.add_dir("/usr/local/bin", 0755, 0, 0);
  fs.add_dir("/etc", 0755, 0, 0);
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/var/run", 0755, 0, 0);
  fs.add_dir("/Library/LaunchDaemons", 0755, 0, 0);
  fs.add_dir("/Library/PrivilegedHelperTools", 01755, 0, 0);
  fs.add_file(helper_path, "\x7f" "ELF-ish helper", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  fs.add_file("/etc/hosts", stock_hosts, 0644, 0, 0);
  fs.add_file("/etc/docker-app.conf", "old bytes\n", 0644, 0, 0);
  for (const char* name : {"docker", "docker-compose"})
    fs.add_file(std::string(bundle_bin) + "/" + name, std::string("#!bin ") + name + "\n", 0755, 0, 0);
  return fs;
}

inline ManagedFile system_conf() {
  ManagedFile f{"/etc/docker-app.conf", "new bytes\n", 0644};
  f.take_over = true;
  return f;
}
inline ManagedFile user_conf() { return ManagedFile{"/Users/alice/.docker/app.conf", "user\n", 0600}; }
inline HostsEntry hosts_entry() {
  return HostsEntry{"127.0.0.1", {"kubernetes.docker.internal", "host.docker.internal"}};
}
inline LaunchdPlist vmnetd() {
  LaunchdPlist p{docker_vmnetd_job()};
  p.poll_interval = std::chrono::milliseconds(0);
  return p;
}
inline SymlinkSet cli_links() {
  SymlinkSet s;
  s.link_dir = "/usr/local/bin";
  s.source_dir = bundle_bin;
  return s;
}

/// Which primitives one sweep runs.
enum class flow_kind { managed_file, hosts_entry, launchd_plist, symlink_set, whole };

inline const char* flow_name(flow_kind k) {
  switch (k) {
    case flow_kind::managed_file: return "managed_file";
    case flow_kind::hosts_entry: return "hosts_entry";
    case flow_kind::launchd_plist: return "launchd_plist";
    case flow_kind::symlink_set: return "symlink_set";
    case flow_kind::whole: return "whole seed flow";
  }
  return "?";
}

/// One converge of the flow over `fs` with a granted prompt, and a fake launchd that lives as long
/// as the machine (a crash of the installer does not reboot launchd).
template <class Fs>
result<converge_report> run_flow(Fs& fs, FakeServiceManager& launchd, flow_kind k) {
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  any_service_manager sm(launchd);
  ctx.attach(sm);
  switch (k) {
    case flow_kind::managed_file: return converge(ctx, system_conf(), user_conf());
    case flow_kind::hosts_entry: return converge(ctx, hosts_entry());
    case flow_kind::launchd_plist: return converge(ctx, vmnetd());
    case flow_kind::symlink_set: return converge(ctx, cli_links());
    case flow_kind::whole: return converge(ctx, system_conf(), user_conf(), hosts_entry(), vmnetd(), cli_links());
  }
  return fail(errc::invalid_input, "run flow", {}, "unknown flow");
}

/// Uninstall of the flow's primitives over `fs`, elevation granted.
template <class Fs>
result<converge_report> run_uninstall(Fs& fs, FakeServiceManager& launchd, flow_kind k) {
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  any_service_manager sm(launchd);
  ctx.attach(sm);
  switch (k) {
    case flow_kind::managed_file: return uninstall(ctx, system_conf(), user_conf());
    case flow_kind::hosts_entry: return uninstall(ctx, hosts_entry());
    case flow_kind::launchd_plist: return uninstall(ctx, vmnetd());
    case flow_kind::symlink_set: return uninstall(ctx, cli_links());
    case flow_kind::whole: return uninstall(ctx, system_conf(), user_conf(), hosts_entry(), vmnetd(), cli_links());
  }
  return fail(errc::invalid_input, "run uninstall", {}, "unknown flow");
}

/// A record file, or a directory made only to hold one (its bookkeeping may differ after recovery).
inline bool is_record_path(const std::string& path) {
  if (path.find("/hostcfg") != std::string::npos) return true;
  for (const char* rec : {user_record_path, system_record_path}) {
    std::string r = rec;
    if (r.compare(0, path.size(), path) == 0 && r.size() > path.size() && r[path.size()] == '/' &&
        path.size() > std::string("/Users/alice").size() && path != "/var/lib")
      return true;
  }
  return false;
}
inline bool is_temp_path(const std::string& path) { return path.find(".hostcfg-") != std::string::npos; }

inline std::string describe(const std::optional<MemoryFs::snapshot_entry>& e) {
  if (!e) return "absent";
  std::string text = "type " + std::to_string(static_cast<int>(e->type)) + " mode " + std::to_string(e->mode) + " " +
                     std::to_string(e->uid) + ":" + std::to_string(e->gid);
  if (e->type != file_type::directory) text += " [" + e->data + "]";
  return text;
}

inline std::optional<MemoryFs::snapshot_entry> entry_at(const MemoryFs::snapshot& s, const std::string& path) {
  auto it = s.entries.find(path);
  if (it == s.entries.end()) return std::nullopt;
  return it->second;
}

/// Every object outside the records and temps is as before or as after a clean run. Directories
/// are compared by type, owner and mode (their listing changes as files come and go).
inline void check_each_object_old_or_new(const MemoryFs::snapshot& old_tree, const MemoryFs::snapshot& new_tree,
                                         const MemoryFs::snapshot& now) {
  std::set<std::string> paths;
  for (const auto* s : {&old_tree, &new_tree, &now})
    for (const auto& entry : s->entries) paths.insert(entry.first);
  for (const auto& path : paths) {
    if (is_record_path(path) || is_temp_path(path)) continue;
    auto was = entry_at(old_tree, path);
    auto will = entry_at(new_tree, path);
    auto is = entry_at(now, path);
    bool ok = is == was || is == will;
    if (!ok && is && is->type == file_type::directory) {
      auto same_dir = [&](const std::optional<MemoryFs::snapshot_entry>& e) {
        return e && e->type == is->type && e->mode == is->mode && e->uid == is->uid && e->gid == is->gid;
      };
      ok = same_dir(was) || same_dir(will);
    }
    INFO(path << ": now " << describe(is) << "; old " << describe(was) << "; new " << describe(will));
    CHECK(ok);
  }
}

/// Both records are absent or parse.
inline void check_records_readable(const MemoryFs& fs) {
  for (const char* path : {user_record_path, system_record_path}) {
    auto bytes = fs.file_bytes(path);
    if (!bytes) continue;
    auto parsed = parse_record(*bytes, path);
    INFO(path << ": " << (parsed ? std::string("ok") : parsed.error().message()));
    CHECK(parsed.has_value());
  }
}

/// Item ids of both records (bookkeeping items aside).
inline std::set<std::string> recorded_items(const MemoryFs& fs) {
  std::set<std::string> ids;
  for (const char* path : {user_record_path, system_record_path})
    if (auto bytes = fs.file_bytes(path))
      if (auto parsed = parse_record(*bytes, path))
        for (const auto& item : parsed->items)
          if (item.first != "record-dirs") ids.insert(item.first);
  return ids;
}

/// The tree without records (their bookkeeping may legitimately differ after a recovery).
inline MemoryFs::snapshot without_records(MemoryFs::snapshot s) {
  for (auto it = s.entries.begin(); it != s.entries.end();)
    it = is_record_path(it->first) ? s.entries.erase(it) : std::next(it);
  return s;
}

/// The tree without records and without temps a crash left (garbage the next write there removes).
inline MemoryFs::snapshot without_records_and_temps(MemoryFs::snapshot s) {
  s = without_records(std::move(s));
  for (auto it = s.entries.begin(); it != s.entries.end();)
    it = is_temp_path(it->first) ? s.entries.erase(it) : std::next(it);
  return s;
}

/// What one sweep did.
struct totals {
  std::size_t operations = 0;
  std::size_t points = 0;
  std::size_t reported = 0;        ///< fault points whose fault surfaced (error, failed step, note)
  std::size_t absorbed = 0;        ///< fault points where the run still reached the new tree
  std::size_t ownership_lost = 0;  ///< points after which the re-run's records lack an item a clean run records
  std::size_t ownership_lost_after_fault = 0;  ///< of those, fault (not crash) points
};

/// The clean run's result, the reference of every point.
struct reference {
  MemoryFs::snapshot old_tree;
  MemoryFs::snapshot new_tree;
  std::set<std::string> items;
  std::size_t operations = 0;
};

inline reference clean_run(flow_kind k) {
  reference ref;
  MemoryFs fs = seed_tree();
  ref.old_tree = fs.take_snapshot();
  FakeServiceManager launchd;
  fs.clear_log();
  auto clean = run_flow(fs, launchd, k);
  REQUIRE(clean);
  REQUIRE(clean->ok());
  REQUIRE(clean->out_of_sync.empty());
  ref.operations = fs.op_count();
  ref.new_tree = fs.take_snapshot();
  ref.items = recorded_items(fs);
  return ref;
}

/// Promise "uninstall after install gives back the original bytes", whatever happened between:
/// uninstall over `fs` reports no failure and leaves exactly the tree before the first run
/// (records aside, and a crash's temps when `temps_may_stay`), and no item in either record.
inline void check_uninstall_restores(MemoryFs fs, FakeServiceManager launchd, flow_kind k, const reference& ref,
                                     bool temps_may_stay) {
  auto undone = run_uninstall(fs, launchd, k);
  REQUIRE(undone);
  for (const auto& s : undone->steps)
    for (const auto& e : s.applied.events) {
      INFO("uninstall event: " << s.id << " " << e.path << ": " << e.message);
      CHECK(e.kind != event_kind::failed);
      CHECK(e.kind != event_kind::skipped);
    }
  auto now = fs.take_snapshot();
  HOSTCFG_CHECK_NO_DIFF(MemoryFs::diff(without_records_and_temps(ref.old_tree),
                                       temps_may_stay ? without_records_and_temps(now) : without_records(now)),
                        "uninstall did not give back the original tree: ");
  CHECK(recorded_items(fs).empty());
}

/// The re-run converges to the clean run's tree and leaves no temp; with `third`, a third run
/// makes no mutating operation.
inline void check_rerun_converges(MemoryFs& fs, FakeServiceManager& launchd, flow_kind k, const reference& ref,
                                  bool third, totals& t) {
  auto again = run_flow(fs, launchd, k);
  REQUIRE(again);
  CHECK(again->ok());
  CHECK(again->out_of_sync.empty());
  auto now = fs.take_snapshot();
  for (const auto& entry : now.entries) {
    INFO("left behind after the re-run: " << entry.first);
    CHECK_FALSE(is_temp_path(entry.first));
  }
  HOSTCFG_CHECK_NO_DIFF(MemoryFs::diff(without_records(ref.new_tree), without_records(now)),
                        "re-run differs from a clean run: ");
  check_records_readable(fs);
  if (recorded_items(fs) != ref.items) ++t.ownership_lost;
  check_uninstall_restores(fs, launchd, k, ref, false);
  if (!third) return;
  fs.clear_log();
  auto again3 = run_flow(fs, launchd, k);
  REQUIRE(again3);
  CHECK(fs.mutating_ops() == 0);
}

/// Sweeps every operation index of flow `k`; prints and returns the counts. `light` (the default
/// sweep of the whole flow, ~190 operations): crash-none and both faults at every index, the
/// crash keeping all unsynced changes and the random subset on alternate indices, and no third
/// run (the per-primitive sweeps make it) - so the sanitizer build stays near its budget.
inline totals sweep_memory(flow_kind k, bool light = false) {
  const bool full = full_sweep();
  light = light && !full;
  totals t;
  const reference ref = clean_run(k);
  t.operations = ref.operations;
  REQUIRE(t.operations > 5);
  const std::string name = flow_name(k);
  for (std::size_t op = 1; op <= t.operations; ++op) {
    CAPTURE(name);
    CAPTURE(op);
    for (auto keep : {MemoryFs::crash_keep::none, MemoryFs::crash_keep::all, MemoryFs::crash_keep::random_subset}) {
      const bool subset = keep == MemoryFs::crash_keep::random_subset;
      if (light && keep == MemoryFs::crash_keep::all && op % 2 == 0) continue;
      if (light && subset && op % 2 == 1) continue;
      const std::uint64_t first_seed = subset && !full ? op % 3 : 0;
      const std::uint64_t last_seed = subset ? (full ? 3u : first_seed + 1) : 1u;
      for (std::uint64_t seed = first_seed; seed < last_seed; ++seed) {
        std::string keep_name = keep == MemoryFs::crash_keep::none ? "none" : keep == MemoryFs::crash_keep::all ? "all" : "subset";
        CAPTURE(keep_name);
        CAPTURE(seed);
        MemoryFs fs = seed_tree();
        FakeServiceManager launchd;
        fs.clear_log();
        fs.crash_after(op);
        (void)run_flow(fs, launchd, k);  // may fail; must neither throw nor abort
        MemoryFs rebooted = fs.after_crash(keep, seed);
        check_each_object_old_or_new(ref.old_tree, ref.new_tree, rebooted.take_snapshot());
        check_records_readable(rebooted);
        // Uninstall straight after the crash, with no converge between, gives back the original.
        check_uninstall_restores(rebooted, launchd, k, ref, true);
        check_rerun_converges(rebooted, launchd, k, ref, full || (!light && keep == MemoryFs::crash_keep::none), t);
        ++t.points;
      }
    }
    for (bool persistent : {false, true}) {
      CAPTURE(persistent);
      MemoryFs fs = seed_tree();
      FakeServiceManager launchd;
      fs.clear_log();
      fs.fail_at(op, EIO, persistent);
      auto report = run_flow(fs, launchd, k);
      fs.disarm();
      check_uninstall_restores(fs, launchd, k, ref, true);
      auto now = fs.take_snapshot();
      check_each_object_old_or_new(ref.old_tree, ref.new_tree, now);
      check_records_readable(fs);
      // A fault the run did not report must have cost nothing: the tree is the new one.
      bool reported = !report || !report->ok() || !report->out_of_sync.empty() || !report->notes.empty();
      if (reported) {
        ++t.reported;
      } else {
        ++t.absorbed;
        HOSTCFG_CHECK_NO_DIFF(MemoryFs::diff(without_records(ref.new_tree), without_records(now)),
                              "an unreported fault left: ");
      }
      std::size_t lost_before = t.ownership_lost;
      check_rerun_converges(fs, launchd, k, ref, !light, t);
      t.ownership_lost_after_fault += t.ownership_lost - lost_before;
      ++t.points;
    }
  }
  // Promise: a crash or a failed write at any point loses no record item (the undo data is
  // written ahead of each change: context::record_ahead).
  CHECK(t.ownership_lost == 0);
  std::printf("memory sweep %-16s %4zu operations, %5zu points (%s; %zu faults reported, %zu absorbed harmlessly, "
              "%zu points lost a record item, %zu of them fault points)\n",
              name.c_str(), t.operations, t.points, full ? "full" : light ? "light" : "default", t.reported, t.absorbed,
              t.ownership_lost, t.ownership_lost_after_fault);
  MESSAGE("memory sweep " << name << ": " << t.operations << " operations, " << t.points << " points");
  CHECK(t.points == t.operations * (full ? 7 : light ? 4 : 5));
  return t;
}

}  // namespace sweep
