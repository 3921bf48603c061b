#pragma once
/// @file
/// A crash-and-error sweep for your own primitives and flows, over MemoryFs: the run (any
/// `converge`) is repeated once per operation index k of a clean run and per fault
///
/// - crash after k, rebooting with none / all / seeded random subsets of the changes not yet
///   synced (MemoryFs::crash_after, after_crash: unsynced directory entries and file data lost,
///   kept or torn);
/// - the k-th operation failing once, and failing with every later one (MemoryFs::fail_at),
///
/// and after each point it checks what hostcfg promises (RELIABILITY F1, F2, F12; promises 1, 9,
/// 13): every object is wholly as before the run or as after the clean run (directories by type,
/// mode and owner); a fault the run did not report cost nothing (the tree is the new one); a re-run
/// converges to exactly the clean run's tree and leaves no temp file; a third run makes no
/// mutating operation; and, given your uninstall (`crash_sweep_options::uninstall`), an uninstall
/// straight after the crash or fault and one after the re-run each finish and give back the tree
/// from before. Problems are returned as text, one per failed check, naming the point, so it
/// needs no test framework (hostcfg's tests assert `report.ok()` and print `report.text()`).
///
///     MemoryFs before = my_tree();
///     auto report = hostcfg::testing::crash_sweep("my flow", before, [](MemoryFs& fs) {
///       ScriptedPrivilege priv(user, answer::granted);
///       context ctx(fs, priv, "com.example.app");
///       return converge(ctx, my_file, my_hosts_entry);
///     });
///     CHECK(report.ok());            // report.text(): points swept and every problem
///
/// Records are compared like any other file unless `crash_sweep_options::ignore` says otherwise:
/// after a recovery their bookkeeping may legitimately differ from a clean run's.

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "hostcfg/backend/memory_fs.hpp"
#include "hostcfg/converge.hpp"
#include "hostcfg/protocol.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace testing {

/// Which paths a sweep's tree checks skip: true for a path to skip ("/etc/hosts" form).
using path_filter = std::function<bool(const std::string&)>;

/// What `crash_sweep` runs at each operation index.
struct crash_sweep_options {
  /// Seeds of the random-subset crashes (each reboot keeps a different subset of unsynced changes).
  std::vector<std::uint64_t> subset_seeds{0, 1, 2};
  bool fail_once = true;        ///< the k-th operation fails once
  bool fail_persistent = true;  ///< the k-th and every later operation fail
  int fail_errno = EIO;
  /// After each point, a third run must make no mutating operation (idempotence after recovery).
  bool third_run = true;
  /// Paths the tree checks skip (e.g. your records); temps (".<name>.hostcfg-*") are always
  /// judged on their own: allowed after a crash, never after the re-run.
  path_filter ignore;
  /// Your uninstall of the same steps (`uninstall(ctx, ...)`). Set, each crash or fault point is
  /// also followed straight by an uninstall (no converge between), which must finish (no failed
  /// or skipped step) and give back the tree from before the run (temps aside: they are a later
  /// write's to clean), and a converged re-run by one that must give it back exactly: undo data
  /// written ahead survives every crash and every failure.
  std::function<result<converge_report>(MemoryFs&)> uninstall;
};

/// What `crash_sweep` found.
struct crash_sweep_report {
  std::string name;
  std::size_t operations = 0;  ///< operations of the clean run (the indices swept)
  std::size_t points = 0;      ///< runs with a fault
  std::size_t reported = 0;    ///< fault points whose run reported something (failure, out of sync, note)
  std::vector<std::string> problems;

  bool ok() const { return problems.empty(); }
  /// "my flow: 79 operations, 553 points (201 faults reported), 0 problems" and the problems.
  std::string text() const {
    std::string out = name + ": " + std::to_string(operations) + " operations, " + std::to_string(points) +
                      " points (" + std::to_string(reported) + " faults reported), " +
                      std::to_string(problems.size()) + " problems\n";
    for (const auto& p : problems) out += "  " + p + "\n";
    return out;
  }
};

namespace detail {

inline bool is_temp_name(const std::string& path) { return path.find(".hostcfg-") != std::string::npos; }

// Every object not ignored is as in `old_tree` or as in `new_tree`; temps are allowed.
// `ignore` may be empty (nothing ignored). Shared with posix_sweep (a snapshot of the real disk).
inline void check_old_or_new(const MemoryFs::snapshot& old_tree, const MemoryFs::snapshot& new_tree,
                             const MemoryFs::snapshot& now, const path_filter& ignore, const std::string& where,
                             std::vector<std::string>& problems) {
  std::set<std::string> paths;
  for (const auto* s : {&old_tree, &new_tree, &now})
    for (const auto& entry : s->entries) paths.insert(entry.first);
  auto at = [](const MemoryFs::snapshot& s, const std::string& p) -> const MemoryFs::snapshot_entry* {
    auto it = s.entries.find(p);
    return it == s.entries.end() ? nullptr : &it->second;
  };
  for (const auto& path : paths) {
    if (is_temp_name(path) || (ignore && ignore(path))) continue;
    const auto* was = at(old_tree, path);
    const auto* will = at(new_tree, path);
    const auto* is = at(now, path);
    auto same = [&](const MemoryFs::snapshot_entry* a) {
      if (!a || !is) return a == is;
      if (is->type == file_type::directory)  // a directory's listing changes as files come and go
        return a->type == is->type && a->mode == is->mode && a->uid == is->uid && a->gid == is->gid;
      return *a == *is;
    };
    if (!same(was) && !same(will)) problems.push_back(where + ": " + path + " is neither as before nor as after");
  }
}

inline MemoryFs::snapshot filtered(MemoryFs::snapshot s, const path_filter& ignore) {
  for (auto it = s.entries.begin(); it != s.entries.end();)
    it = ignore && ignore(it->first) ? s.entries.erase(it) : std::next(it);
  return s;
}

// Calls `run()` (one whole run, no argument); false, with `thrown` set, when it threw.
template <class Run>
bool run_safely(Run&& run, result<converge_report>& out, std::string& thrown) {
  try {
    out = run();
    return true;
  } catch (const std::exception& e) {
    thrown = e.what();
  } catch (...) {
    thrown = "an unknown exception";
  }
  return false;
}

// What is wrong with a clean run that should have converged ("" when it did).
inline std::string clean_run_problem(bool finished, const result<converge_report>& first, const std::string& thrown) {
  if (finished && first && first->ok() && first->out_of_sync.empty()) return {};
  return "the clean run did not converge: " + (!finished ? "threw " + thrown
                                               : !first  ? first.error().message()
                                                         : first->render_text());
}

// What the re-run and uninstall checks act on: one sweep point's MemoryFs (crash_sweep) or the
// real disk below a root (posix_sweep).
struct sweep_world {
  std::function<result<converge_report>()> run;        // the flow under test, once
  std::function<result<converge_report>()> uninstall;  // its uninstall, once (may be empty)
  std::function<MemoryFs::snapshot()> snapshot;        // the tree now
  std::function<void()> start_counting;                // mutating operations count from here
  std::function<std::size_t()> mutating;               // mutating operations since start_counting
};

// A re-run converges to `new_tree` with no temp left; then, with `third_run`, a further run
// makes no mutating operation.
// Returns whether the re-run converged (the uninstall check after it is meaningful only then).
inline bool check_rerun(const sweep_world& world, const MemoryFs::snapshot& new_tree, const path_filter& ignore,
                        bool third_run, const std::string& where, std::vector<std::string>& problems) {
  result<converge_report> again = tl::unexpected(error{});
  std::string thrown;
  if (!run_safely(world.run, again, thrown)) {
    problems.push_back(where + ": the re-run threw " + thrown);
    return false;
  }
  if (!again) {
    problems.push_back(where + ": the re-run failed: " + again.error().message());
    return false;
  }
  const bool converged = again->ok() && again->out_of_sync.empty();
  if (!converged) problems.push_back(where + ": the re-run did not converge:\n" + again->render_text());
  auto now = world.snapshot();
  for (const auto& entry : now.entries)
    if (is_temp_name(entry.first)) problems.push_back(where + ": a temp is left after the re-run: " + entry.first);
  for (const auto& line : MemoryFs::diff(filtered(new_tree, ignore), filtered(now, ignore)))
    problems.push_back(where + ": after the re-run, unlike a clean run: " + line);
  if (!third_run) return converged;
  world.start_counting();
  result<converge_report> third = tl::unexpected(error{});
  if (!run_safely(world.run, third, thrown)) {
    problems.push_back(where + ": the third run threw " + thrown);
    return false;
  }
  if (!third || !third->ok() || !third->out_of_sync.empty())
    problems.push_back(where + ": the third run did not stay in sync" +
                       (third ? ":\n" + third->render_text() : ": " + third.error().message()));
  if (const std::size_t ops = world.mutating(); ops != 0)
    problems.push_back(where + ": a third run made " + std::to_string(ops) + " mutating operations");
  return converged;
}

// `world.uninstall` gives back `old_tree` (temps allowed only when `temps_ok`).
inline void check_uninstall(const sweep_world& world, const MemoryFs::snapshot& old_tree, const path_filter& ignore,
                            bool temps_ok, const std::string& where, std::vector<std::string>& problems) {
  result<converge_report> undone = tl::unexpected(error{});
  std::string thrown;
  if (!run_safely(world.uninstall, undone, thrown)) {
    problems.push_back(where + ": the uninstall threw " + thrown);
    return;
  }
  if (!undone) {
    problems.push_back(where + ": the uninstall failed: " + undone.error().message());
    return;
  }
  // Reported as a failure (a step failed or was skipped) even when the files look right: a user
  // running it would get the error, and the records are usually not compared.
  if (!undone->ok() || !undone->out_of_sync.empty())
    problems.push_back(where + ": the uninstall did not finish:\n" + undone->render_text());
  for (const auto& line : MemoryFs::diff(filtered(old_tree, ignore), filtered(world.snapshot(), ignore)))
    if (!temps_ok || !is_temp_name(line)) problems.push_back(where + ": after the uninstall, unlike before: " + line);
}

// The world of one crash_sweep point: `run` and `o.uninstall` over `fs`.
template <class Run>
sweep_world memory_world(Run& run, MemoryFs& fs, const crash_sweep_options& o) {
  sweep_world world;
  world.run = [&run, &fs] { return run(fs); };
  if (o.uninstall) world.uninstall = [&o, &fs] { return o.uninstall(fs); };
  world.snapshot = [&fs] { return fs.take_snapshot(); };
  world.start_counting = [&fs] { fs.clear_log(); };
  world.mutating = [&fs] { return fs.mutating_ops(); };
  return world;
}

}  // namespace detail

/// Sweeps `run` over copies of `before` at every operation index (see the file comment).
/// `run(MemoryFs&)` returns the `result<converge_report>` of one whole run and must act only
/// through the MemoryFs it is given.
template <class Run>
crash_sweep_report crash_sweep(std::string name, const MemoryFs& before, Run run, crash_sweep_options o = {}) {
  crash_sweep_report report;
  report.name = std::move(name);
  const MemoryFs::snapshot old_tree = before.take_snapshot();
  MemoryFs clean = before;
  clean.clear_log();
  result<converge_report> first = tl::unexpected(error{});
  std::string thrown;
  const bool finished = detail::run_safely([&] { return run(clean); }, first, thrown);
  if (auto problem = detail::clean_run_problem(finished, first, thrown); !problem.empty()) {
    report.problems.push_back(problem);
    return report;
  }
  report.operations = clean.op_count();
  std::vector<std::string> op_names;
  for (const auto& op : clean.op_log()) op_names.push_back(op.op + " " + op.path);
  const MemoryFs::snapshot new_tree = clean.take_snapshot();

  for (std::size_t k = 1; k <= report.operations; ++k) {
    const std::string op = "op " + std::to_string(k) + " (" + op_names[k - 1] + ")";
    auto crash = [&](MemoryFs::crash_keep keep, std::uint64_t seed, const std::string& mode) {
      const std::string where = op + ", crash, " + mode;
      MemoryFs fs = before;
      fs.clear_log();
      fs.crash_after(k);
      result<converge_report> r = tl::unexpected(error{});
      if (!detail::run_safely([&] { return run(fs); }, r, thrown))
        report.problems.push_back(where + ": the run threw " + thrown);
      MemoryFs rebooted = fs.after_crash(keep, seed);
      detail::check_old_or_new(old_tree, new_tree, rebooted.take_snapshot(), o.ignore, where, report.problems);
      if (o.uninstall) {
        MemoryFs straight = rebooted;
        detail::check_uninstall(detail::memory_world(run, straight, o), old_tree, o.ignore, true,
                                where + ", uninstalled at once", report.problems);
      }
      const auto world = detail::memory_world(run, rebooted, o);
      const bool converged = detail::check_rerun(world, new_tree, o.ignore, o.third_run, where, report.problems);
      if (o.uninstall && converged)
        detail::check_uninstall(world, old_tree, o.ignore, false, where + ", re-run, uninstalled", report.problems);
      ++report.points;
    };
    crash(MemoryFs::crash_keep::none, 0, "keeping no unsynced change");
    crash(MemoryFs::crash_keep::all, 0, "keeping every unsynced change");
    for (auto seed : o.subset_seeds)
      crash(MemoryFs::crash_keep::random_subset, seed, "keeping subset " + std::to_string(seed));
    for (bool persistent : {false, true}) {
      if (persistent ? !o.fail_persistent : !o.fail_once) continue;
      const std::string where = op + (persistent ? ", failing from there on" : ", failing once");
      MemoryFs fs = before;
      fs.clear_log();
      fs.fail_at(k, o.fail_errno, persistent);
      result<converge_report> r = tl::unexpected(error{});
      if (!detail::run_safely([&] { return run(fs); }, r, thrown))
        report.problems.push_back(where + ": the run threw " + thrown);
      fs.disarm();
      if (o.uninstall) {
        // The only points where a change can be withdrawn (a failed write-ahead, a failed replace).
        MemoryFs straight = fs;
        detail::check_uninstall(detail::memory_world(run, straight, o), old_tree, o.ignore, true,
                                where + ", uninstalled at once", report.problems);
      }
      auto now = fs.take_snapshot();
      detail::check_old_or_new(old_tree, new_tree, now, o.ignore, where, report.problems);
      // Notes the clean run has too (a standing conflict, say) do not report this fault.
      const bool reported = !r || !r->ok() || !r->out_of_sync.empty() || r->notes != first->notes;
      if (reported) {
        ++report.reported;
      } else {
        for (const auto& line : MemoryFs::diff(detail::filtered(new_tree, o.ignore), detail::filtered(now, o.ignore)))
          if (!detail::is_temp_name(line)) report.problems.push_back(where + ": an unreported fault left: " + line);
      }
      const auto world = detail::memory_world(run, fs, o);
      const bool converged = detail::check_rerun(world, new_tree, o.ignore, o.third_run, where, report.problems);
      if (o.uninstall && converged)
        detail::check_uninstall(world, old_tree, o.ignore, false, where + ", re-run, uninstalled", report.problems);
      ++report.points;
    }
  }
  return report;
}

}  // namespace testing

HOSTCFG_END_NAMESPACE
