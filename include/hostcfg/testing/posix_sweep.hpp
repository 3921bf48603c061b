#pragma once
/// @file
/// The crash-and-error sweep of crash_sweep.hpp over the real PosixFs: the real system-call
/// sequence on a real directory tree, not a model of it. A clean run of your flow is made
/// through a counting syscall table (syscall_faults.hpp); then, for each call index k of that run
/// and each fault,
///
/// - call k fails once (`fail_errno`, EIO by default);
/// - call k fails, and so does every later call of the same system call (`persistent_errno`,
///   ENOSPC: a full disk stays full);
/// - a crash at call k: call k and every call after it fail, so no cleanup can run and the disk
///   keeps exactly what was done before k (the kernel's view of a killed process; losing unsynced
///   data on power loss is MemoryFs's crash model, crash_sweep.hpp),
///
/// the tree is rebuilt by your `reset`, the flow runs with the fault armed, and the sweep checks
/// what hostcfg promises (RELIABILITY F1, F2, F3, F12; promises 1, 9, 13): every object below
/// the root is wholly as before the run or as after the clean run (bytes, type, mode, owner; a
/// directory by type, mode and owner); a fault the run did not report cost nothing; a re-run
/// through the real calls converges to exactly the clean run's tree with no temp left; a third run
/// makes no mutating system call; and, given your uninstall, an uninstall after the re-run (and,
/// with `uninstall_at_once`, one straight after the fault) gives the tree back.
///
///     const std::string root = "/var/lib/my-tests/box";   // root-owned: not under /tmp
///     auto reset = [&] { rebuild_my_tree(root); };       // files, modes, owners
///     auto run = [&](const hostcfg::syscall_table& calls) {
///       hostcfg::PosixFs posix(calls);
///       hostcfg::RootedFs<hostcfg::PosixFs> fs(posix, root);
///       hostcfg::RootFor priv(user);
///       hostcfg::context ctx(fs, priv, "com.example.app");
///       return hostcfg::converge(ctx, my_file, my_hosts_entry);
///     };
///     auto report = hostcfg::testing::posix_sweep("my flow", root, reset, run);
///     CHECK(report.ok());   // report.text(): calls, points swept and every problem
///
/// `run` must make every filesystem call through a PosixFs built on the table it is given, and
/// must not touch the disk outside `root` (the sweep compares only what is below it). Paths in
/// `ignore` and in the report are as seen from the root ("/etc/hosts"). Not compared: xattrs,
/// file flags, timestamps. A point rebuilds the tree and runs the flow two to four times, so a
/// flow of N calls costs about 3 x N x 3 runs: a thousand-call flow can use `every_call = false`.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "hostcfg/backend/memory_fs.hpp"
#include "hostcfg/backend/posix_fs.hpp"
#include "hostcfg/backend/syscalls.hpp"
#include "hostcfg/testing/crash_sweep.hpp"
#include "hostcfg/testing/syscall_faults.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace testing {

/// When `posix_sweep_options::invariant` is called.
enum class sweep_phase {
  clean_run,        ///< after the clean run
  after_fault,      ///< after a run with a fault (failed or crashed part way)
  after_rerun,      ///< after the re-run that followed a fault
  after_uninstall,  ///< after an uninstall (straight after a fault, or after the re-run)
};

/// What `posix_sweep` runs at each call index.
struct posix_sweep_options {
  /// Sweep every call index of the clean run (the default). False: only the calls that change
  /// the disk (writes, fsyncs, renames, creating opens...) plus `sampled_reads` evenly spaced
  /// others, for long flows.
  bool every_call = true;
  std::size_t sampled_reads = 20;
  bool fail_once = true;  ///< call k fails once with `fail_errno`
  int fail_errno = EIO;
  bool fail_persistent = true;  ///< call k and every later call of that syscall fail
  int persistent_errno = ENOSPC;
  bool crash = true;      ///< every call from k on fails (a killed process)
  bool third_run = true;  ///< after each re-run, one more run must make no mutating call
  /// Paths (as seen from the root) the tree checks skip, e.g. your records, whose bookkeeping may
  /// differ after a recovery. Temps (".<name>.hostcfg-*") are always judged on their own:
  /// allowed after a fault, never after the re-run.
  path_filter ignore;
  /// Your own checks (records parse, a fake service manager's state, records gone after an
  /// uninstall...), called after every run the sweep makes; each string returned is a problem.
  std::function<std::vector<std::string>(sweep_phase)> invariant;
  /// Your uninstall of the same steps, through the table it is given. Set, every converged
  /// re-run is followed by an uninstall that must finish and give back the tree from before.
  std::function<result<converge_report>(const syscall_table&)> uninstall;
  /// With `uninstall`: also rebuild, fault and uninstall straight after the fault, with no
  /// re-run between (one more pass per point).
  bool uninstall_at_once = true;
};

/// What `posix_sweep` found.
struct posix_sweep_report {
  std::string name;
  std::size_t syscalls = 0;       ///< system calls of the clean run
  std::size_t disk_changing = 0;  ///< of those, calls that change the disk
  std::size_t indices = 0;        ///< call indices swept
  bool every_call = true;         ///< whether every index was swept
  std::size_t points = 0;         ///< runs with a fault
  std::size_t reported = 0;       ///< fault points whose run reported something
  std::vector<std::string> problems;

  bool ok() const { return problems.empty(); }
  /// "my flow: 475 syscalls (46 change the disk), 475 indices swept (every call), 1425 points
  /// (1236 faults reported), 0 problems" and the problems.
  std::string text() const {
    std::string out = name + ": " + std::to_string(syscalls) + " syscalls (" + std::to_string(disk_changing) +
                      " change the disk), " + std::to_string(indices) + " indices swept (" +
                      (every_call ? "every call" : "disk-changing calls and a sample") + "), " +
                      std::to_string(points) + " points (" + std::to_string(reported) + " faults reported), " +
                      std::to_string(problems.size()) + " problems\n";
    for (const auto& p : problems) out += "  " + p + "\n";
    return out;
  }
};

namespace detail {

// An entry whose contents could not be read: what its stat gave (if anything) and the errno, so
// it differs from any readable state.
inline MemoryFs::snapshot_entry unreadable_entry(int err, MemoryFs::snapshot_entry e = {}) {
  if (e.type == file_type::none) e.type = file_type::unknown;
  e.data = std::string("(unreadable: ") + std::strerror(err) + ")";
  e.size = e.data.size();
  return e;
}

// The bytes of regular file `name` in `dir`, never following a link; false with errno on failure.
inline bool read_disk_file(int dir, const char* name, std::string& out) {
  const int fd = ::openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      errno = err;
      return false;
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return true;
}

// Adds every object below the directory `dir` (shown as `shown`, "/" for the root) to `out`.
// Takes ownership of `dir`.
inline void snapshot_disk_dir(int dir, const std::string& shown, MemoryFs::snapshot& out) {
  DIR* stream = ::fdopendir(dir);
  if (!stream) {
    const int err = errno;
    ::close(dir);
    out.entries[shown] = unreadable_entry(err, out.entries[shown]);
    return;
  }
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(stream);
    if (!entry) {
      // A listing cut short is shown on the directory, so it cannot pass for an unchanged one.
      if (const int err = errno; err != 0) out.entries[shown] = unreadable_entry(err, out.entries[shown]);
      break;
    }
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  const int fd = ::dirfd(stream);
  const std::string prefix = shown == "/" ? "/" : shown + "/";
  for (const auto& name : names) {
    const std::string path = prefix + name;
    struct ::stat st {};
    if (::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      const int err = errno;
      out.entries[path] = unreadable_entry(err);
      continue;
    }
    MemoryFs::snapshot_entry e;
    e.type = hostcfg::detail::file_type_of(st.st_mode);
    e.mode = static_cast<mode_type>(st.st_mode & 07777);
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    if (e.type == file_type::regular) {
      if (!read_disk_file(fd, name.c_str(), e.data)) {
        const int err = errno;
        out.entries[path] = unreadable_entry(err, e);
        continue;
      }
      // A second link to a file we replace would be a hard-link attack gone through: show it.
      if (st.st_nlink > 1) e.data += "\n(" + std::to_string(st.st_nlink) + " links)";
    } else if (e.type == file_type::symlink) {
      std::string target(static_cast<std::size_t>(st.st_size) + 1, '\0');
      const ssize_t n = ::readlinkat(fd, name.c_str(), &target[0], target.size());
      if (n < 0) {
        const int err = errno;
        out.entries[path] = unreadable_entry(err, e);
        continue;
      }
      target.resize(static_cast<std::size_t>(n));
      e.data = target;
    }
    e.size = e.data.size();  // as MemoryFs: a file's bytes, a link's target length
    out.entries[path] = e;
    if (e.type == file_type::directory) {
      const int child = ::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0) {
        const int err = errno;
        out.entries[path] = unreadable_entry(err, e);
        continue;
      }
      snapshot_disk_dir(child, path, out);
    }
  }
  ::closedir(stream);
}

/// The tree below the real directory `root`, paths as seen from it ("/" is the root itself), in
/// MemoryFs's snapshot form so both sweeps share their checks and diffs.
inline MemoryFs::snapshot disk_snapshot(const std::string& root) {
  MemoryFs::snapshot out;
  const int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct ::stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    const int err = errno;
    out.entries["/"] = unreadable_entry(err);
    if (fd >= 0) ::close(fd);
    return out;
  }
  MemoryFs::snapshot_entry e;
  e.type = file_type::directory;
  e.mode = static_cast<mode_type>(st.st_mode & 07777);
  e.uid = st.st_uid;
  e.gid = st.st_gid;
  out.entries["/"] = e;
  snapshot_disk_dir(fd, "/", out);
  return out;
}

inline const char* fault_mode_text(fault_mode mode) {
  switch (mode) {
    case fault_mode::fail_once: return "failing once";
    case fault_mode::fail_persistent: return "failing from there on";
    case fault_mode::crash: return "crash";
    case fault_mode::none: break;
  }
  return "no fault";
}

}  // namespace detail

/// Sweeps `run` over the real tree below `root` at every call index (see the file comment).
/// `reset()` rebuilds that tree from scratch (and any fake your run uses besides); `run(table)`
/// makes one whole run through a PosixFs built on `table` and returns its `result<converge_report>`.
template <class Reset, class Run>
posix_sweep_report posix_sweep(std::string name, const std::string& root, Reset reset, Run run,
                               const posix_sweep_options& o = {}) {
  posix_sweep_report report;
  report.name = std::move(name);
  report.every_call = o.every_call;
  syscall_faults faults;
  auto check_invariant = [&](sweep_phase phase, const std::string& where) {
    if (!o.invariant) return;
    for (const auto& problem : o.invariant(phase)) report.problems.push_back(where + ": " + problem);
  };

  reset();
  const MemoryFs::snapshot old_tree = detail::disk_snapshot(root);
  faults.disarm();
  result<converge_report> first = tl::unexpected(error{});
  std::string thrown;
  const bool finished = detail::run_safely([&] { return run(faults.table()); }, first, thrown);
  if (auto problem = detail::clean_run_problem(finished, first, thrown); !problem.empty()) {
    report.problems.push_back(problem);
    return report;
  }
  check_invariant(sweep_phase::clean_run, "the clean run");
  const MemoryFs::snapshot new_tree = detail::disk_snapshot(root);
  report.syscalls = faults.calls();
  report.disk_changing = faults.mutating_calls();
  const std::vector<std::string> call_names = faults.log();
  std::vector<std::size_t> indices;
  const std::size_t stride = std::max<std::size_t>(1, report.syscalls / std::max<std::size_t>(1, o.sampled_reads));
  for (std::size_t k = 0; k < report.syscalls; ++k)
    if (o.every_call || faults.changes_disk(k) || k % stride == 0) indices.push_back(k);
  report.indices = indices.size();

  // Re-runs, third runs and uninstalls go through the same table, disarmed: it only counts.
  detail::sweep_world world;
  world.run = [&] { return run(faults.table()); };
  if (o.uninstall) world.uninstall = [&] { return o.uninstall(faults.table()); };
  world.snapshot = [&] { return detail::disk_snapshot(root); };
  world.start_counting = [&] { faults.reset(); };
  world.mutating = [&] { return faults.mutating_calls(); };

  std::vector<fault_mode> modes;
  if (o.fail_once) modes.push_back(fault_mode::fail_once);
  if (o.fail_persistent) modes.push_back(fault_mode::fail_persistent);
  if (o.crash) modes.push_back(fault_mode::crash);
  for (const fault_mode mode : modes) {
    const int err = mode == fault_mode::fail_persistent ? o.persistent_errno : o.fail_errno;
    // Rebuilds the tree and runs with the fault at call k; true when the fault fired.
    auto faulty_run = [&](std::size_t k, result<converge_report>& out, const std::string& where) {
      reset();
      faults.arm(mode, k, err);
      if (!detail::run_safely([&] { return run(faults.table()); }, out, thrown))
        report.problems.push_back(where + ": the run threw " + thrown);
      const bool fired = faults.fired();
      faults.disarm();
      return fired;
    };
    for (const std::size_t k : indices) {
      const std::string where = "call " + std::to_string(k) + " (" + call_names[k] + "), " +
                                detail::fault_mode_text(mode);
      result<converge_report> r = tl::unexpected(error{});
      const bool fired = faulty_run(k, r, where);
      const MemoryFs::snapshot now = detail::disk_snapshot(root);
      detail::check_old_or_new(old_tree, new_tree, now, o.ignore, where, report.problems);
      check_invariant(sweep_phase::after_fault, where);
      // Notes the clean run has too (a standing conflict, say) do not report this fault.
      const bool reported = !r || !r->ok() || !r->out_of_sync.empty() || r->notes != first->notes;
      if (reported) {
        ++report.reported;
      } else if (fired) {
        for (const auto& line : MemoryFs::diff(detail::filtered(new_tree, o.ignore), detail::filtered(now, o.ignore)))
          if (!detail::is_temp_name(line)) report.problems.push_back(where + ": an unreported fault left: " + line);
      }
      const bool converged = detail::check_rerun(world, new_tree, o.ignore, o.third_run, where, report.problems);
      check_invariant(sweep_phase::after_rerun, where + ", re-run");
      if (o.uninstall && converged) {
        detail::check_uninstall(world, old_tree, o.ignore, false, where + ", re-run, uninstalled", report.problems);
        check_invariant(sweep_phase::after_uninstall, where + ", re-run, uninstalled");
      }
      if (o.uninstall && o.uninstall_at_once) {
        faulty_run(k, r, where + ", again for the uninstall at once");
        detail::check_uninstall(world, old_tree, o.ignore, true, where + ", uninstalled at once", report.problems);
        check_invariant(sweep_phase::after_uninstall, where + ", uninstalled at once");
      }
      ++report.points;
    }
  }
  return report;
}

}  // namespace testing

HOSTCFG_END_NAMESPACE
