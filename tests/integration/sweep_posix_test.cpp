// PosixFs crash and I/O-error sweeps through the injectable syscall table (the real syscall
// sequence, not a model of it), with the library's harness (hostcfg/testing/posix_sweep.hpp):
// RootedFs<PosixFs> over a root-owned 0755 dir under /dev/shm or /var/lib/hostcfg-tests, a
// converge of ManagedFile (a root-owned file taken over + a file created as the user "nobody"),
// of HostsEntry, of the whole seed flow (those, the vmnetd LaunchdPlist with a fake launchd, the
// CLI links into /usr/local/bin), and of ShellProfilePathEdit + ProtectedFile with their
// uninstall; syscall k failing once (EIO), persistently (ENOSPC: that syscall and every later
// call of it) and a crash (every call from k fails, so no cleanup runs; the disk keeps what was
// done). After each point every object below the sandbox is wholly old or new (bytes, owner,
// mode, link count), the records parse, and a re-run with the real calls converges to the clean
// run's tree with no temp left. RELIABILITY F1, F2, F3, F12; promises 1, 9, 13.
//
// Cost: every operation walks the trusted path from "/", so a converge is 200 to 1000 syscalls,
// and each point rebuilds the tree and runs three converges. ManagedFile, the small primitive, is
// swept at every call index; the longer flows at every index whose syscall changes the disk plus
// 20 evenly spaced read-only ones, so one executable stays near 20 s in a Debug build;
// HOSTCFG_SWEEP_FULL=1 sweeps every index of every flow.
#include "integration/sweep_support.hpp"

#include <hostcfg/backend/posix_fs.hpp>
#include <hostcfg/backend/rooted_fs.hpp>
#include <hostcfg/primitives/protected_file.hpp>
#include <hostcfg/primitives/shell_profile_path_edit.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <algorithm>
#include <fstream>
#include <set>

#include "support/real_fs.hpp"
#include <hostcfg/testing/posix_sweep.hpp>

using namespace hostcfg;
using sweep::stock_hosts;
using sweep::user_conf;
using sweep::system_conf;
using sweep::hosts_entry;
using sweep::bundle_bin;
using sweep::helper_path;
using sweep::is_temp_path;
using sweep::user_record_path;
using sweep::system_record_path;
using sweep::app;

namespace {

namespace stdfs = std::filesystem;

// Under ASan+UBSan (3x slower here) every sweep samples, to keep CI's time: the every-call sweep
// of ManagedFile runs in the plain builds (CMake and Meson), the same code.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif
#else
constexpr bool sanitized = false;
#endif
constexpr uid_type nobody = 65534;

user_identity posix_user() {
  return user_identity{nobody, nobody, {nobody}, "nobody", "/Users/alice", "/bin/sh", std::nullopt, std::nullopt};
}

using hostcfg_test::read_whole_file;

void write_real(const std::string& path, const std::string& bytes, mode_t mode, uid_t uid, gid_t gid) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  REQUIRE(::chmod(path.c_str(), mode) == 0);
  REQUIRE(::chown(path.c_str(), uid, gid) == 0);
}

void make_real_dir(const std::string& path, mode_t mode, uid_t uid, gid_t gid) {
  std::error_code ec;
  stdfs::create_directories(path, ec);
  REQUIRE(::chmod(path.c_str(), mode) == 0);
  REQUIRE(::chown(path.c_str(), uid, gid) == 0);
}

// A root-owned 0755 sandbox under /var/lib/hostcfg-tests: /etc (hosts + a config), /var/lib, nobody's home.
struct posix_box {
  // On tmpfs (/dev/shm, root-owned and sticky like /var/tmp) when there is one: fsync is then
  // free, so the sweep measures the syscall sequence, not the disk's flush latency (~13 ms per
  // fsync on a shared CI disk would make the sweep minutes long). HOSTCFG_SWEEP_DIR overrides.
  hostcfg_test::root_scratch_dir dir{sweep_base(), "hostcfg-sweep"};
  std::string root = dir.path;

  static std::string sweep_base() {
    if (const char* env = std::getenv("HOSTCFG_SWEEP_DIR")) return env;
    return hostcfg_test::scratch_base(hostcfg_test::scratch_disk::tmpfs_first);
  }

  std::string real(const std::string& p) const { return root + p; }
  void reset() const {
    std::error_code ec;
    for (auto& entry : stdfs::directory_iterator(root)) stdfs::remove_all(entry.path(), ec);
    make_real_dir(real("/etc"), 0755, 0, 0);
    make_real_dir(real("/var/lib"), 0755, 0, 0);
    make_real_dir(real("/Users/alice"), 0750, nobody, nobody);
    write_real(real("/etc/hosts"), stock_hosts, 0644, 0, 0);
    write_real(real("/etc/docker-app.conf"), "old bytes\n", 0644, 0, 0);
    // For the whole seed flow: the link directory, the app's bin, launchd's directory, the helper.
    make_real_dir(real("/usr/local/bin"), 0755, 0, 0);
    make_real_dir(real(bundle_bin), 0755, 0, 0);
    for (const char* name : link_names) write_real(real(std::string(bundle_bin) + "/" + name), "#!bin\n", 0755, 0, 0);
    make_real_dir(real("/Library/LaunchDaemons"), 0755, 0, 0);
    make_real_dir(real("/Library/PrivilegedHelperTools"), 01755, 0, 0);
    write_real(real(helper_path), "\x7f" "ELF-ish helper", 0755, 0, 0);
  }
  static constexpr const char* link_names[] = {"docker", "docker-compose"};
  // Names of every object below the root that looks like one of our temps.
  std::vector<std::string> temps() const {
    std::vector<std::string> out;
    for (auto it = stdfs::recursive_directory_iterator(root); it != stdfs::recursive_directory_iterator(); ++it)
      if (is_temp_path(it->path().filename().string())) out.push_back(it->path().string());
    return out;
  }
};

/// One converge: `seed` is the whole seed flow (files, hosts, the vmnetd plist with a fake
/// launchd that outlives the installer, the CLI links), else the files and/or the hosts entry.
template <class Fs>
result<converge_report> run_posix(Fs& fs, bool hosts, bool files, FakeServiceManager* launchd = nullptr) {
  RootFor priv(posix_user());
  context ctx(fs, priv, app);
  if (launchd) {
    any_service_manager sm(*launchd);
    ctx.attach(sm);
    return converge(ctx, system_conf(), user_conf(), hosts_entry(), sweep::vmnetd(), sweep::cli_links());
  }
  if (hosts && files) return converge(ctx, system_conf(), user_conf(), hosts_entry());
  if (hosts) return converge(ctx, hosts_entry());
  return converge(ctx, system_conf(), user_conf());
}

/// Both records parse (each may be absent); what the sweep's `invariant` checks at every point.
std::vector<std::string> records_parse(const posix_box& box) {
  std::vector<std::string> problems;
  for (const char* rec : {user_record_path, system_record_path})
    if (auto bytes = read_whole_file(box.real(rec))) {
      auto parsed = parse_record(*bytes, rec);
      if (!parsed) problems.push_back(std::string(rec) + " does not parse: " + parsed.error().message());
    }
  return problems;
}

/// Prints the report's first line and asserts it found no problem and reported faults.
void expect_clean(const testing::posix_sweep_report& report, const posix_box& box) {
  std::printf("posix sweep  (in %s) %s", box.root.c_str(), report.text().c_str());
  MESSAGE(report.text());
  CHECK(report.ok());
  CHECK(report.points > 0);
  CHECK(report.reported > 0);
}

/// The library's PosixFs sweep (hostcfg/testing/posix_sweep.hpp) of one converge: `seed` is the
/// whole seed flow, else the files and/or the hosts entry. `every_call` sweeps every call index
/// (HOSTCFG_SWEEP_FULL=1 makes every sweep do so).
testing::posix_sweep_report sweep_posix(const char* name, bool hosts, bool files, bool seed, bool every_call) {
  posix_box box;
  FakeServiceManager launchd;  // launchd lives on when the installer crashes
  FakeServiceManager* sm = seed ? &launchd : nullptr;
  auto reset = [&] {
    box.reset();
    launchd = FakeServiceManager{};  // a fresh machine: nothing loaded
  };
  auto run = [&](const syscall_table& calls) {
    PosixFs posix(calls);
    RootedFs<PosixFs> fs(posix, box.root);
    return run_posix(fs, hosts, files, sm);
  };
  testing::posix_sweep_options options;
  options.every_call = every_call || sweep::full_sweep();
  options.ignore = sweep::is_record_path;  // bookkeeping may differ after a recovery: parsed instead
  options.invariant = [&](testing::sweep_phase phase) {
    auto problems = records_parse(box);
    // launchd is not on the disk: after a re-run the job must be loaded (after a fault, either).
    if (seed && phase == testing::sweep_phase::after_rerun &&
        !launchd.loaded(launchd_domain::system(), "com.docker.vmnetd"))
      problems.push_back("after the re-run com.docker.vmnetd is not loaded");
    return problems;
  };
  auto report = testing::posix_sweep(name, box.root, reset, run, options);
  expect_clean(report, box);
  return report;
}

/// The sweep of ShellProfilePathEdit and ProtectedFile in one converge (the seed's PATH edit on a
/// decline and its cached policy file): the user's profile (CRLF, a comment, no final newline) is
/// wholly old or new at every point, the policy file absent or wholly new (root:0 0644), the
/// records parse; a re-run converges with no temp left; and an uninstall, straight after the fault
/// and after the re-run, gives back the whole tree: the profile's exact bytes, no policy file, no
/// directory made for it, no record.
testing::posix_sweep_report sweep_posix_profile_and_policy() {
  posix_box box;
  const std::string profile = "/Users/alice/.profile";
  const std::string original_profile = "export A=1\r\n# keep: tabs\tand CRLF\r\nalias ll='ls -l'";
  const std::string policy_path = "/Library/Application Support/com.docker.docker/policy.json";
  const std::string policy_bytes = "{\"allowed\": [\"docker.io\"]}\n";
  auto reset = [&] {
    box.reset();
    write_real(box.real(profile), original_profile, 0644, nobody, nobody);
    make_real_dir(box.real("/Library"), 0755, 0, 0);
  };
  auto run = [&](const syscall_table& calls, bool undo) {
    PosixFs posix(calls);
    RootedFs<PosixFs> fs(posix, box.root);
    RootFor priv(posix_user());
    context ctx(fs, priv, app);
    ProtectedFile policy{policy_path, policy_bytes};
    ShellProfilePathEdit path_edit{"/Users/alice/.docker/bin"};
    return undo ? uninstall(ctx, policy, path_edit) : converge(ctx, policy, path_edit);
  };
  testing::posix_sweep_options options;
  options.every_call = sweep::full_sweep();
  // Records: their bytes may differ after a recovery, so they parse at every point and are gone
  // after every uninstall. The directories made for them are compared like any other: they
  // appear together with the record (built under a temp name, renamed into place).
  options.ignore = [](const std::string& path) {
    return path == user_record_path || path == system_record_path;
  };
  options.invariant = [&](testing::sweep_phase phase) {
    auto problems = records_parse(box);
    if (phase == testing::sweep_phase::after_uninstall)
      for (const char* rec : {user_record_path, system_record_path})
        if (stdfs::exists(box.real(rec))) problems.push_back(std::string(rec) + " is left after the uninstall");
    return problems;
  };
  options.uninstall = [&](const syscall_table& calls) { return run(calls, true); };
  auto report = testing::posix_sweep(
      "profile + policy", box.root, reset, [&](const syscall_table& calls) { return run(calls, false); }, options);
  expect_clean(report, box);
  return report;
}

bool running_as_root() { return ::geteuid() == 0; }

/// Every open PosixFs makes through its table, and those without O_CLOEXEC (promise 12).
struct open_audit {
  std::size_t opens = 0;
  std::vector<std::string> without_cloexec;
};
open_audit audit;

int audited_openat(void*, int dirfd, const char* path, int flags, mode_t mode) {
  ++audit.opens;
  if ((flags & O_CLOEXEC) == 0) audit.without_cloexec.emplace_back(path);
  const auto& real = hostcfg::default_syscalls();
  return real.openat(real.context, dirfd, path, flags, mode);
}

int audited_openat2(void*, int dirfd, const char* path, int flags, mode_t mode, std::uint64_t resolve) {
  ++audit.opens;
  if ((flags & O_CLOEXEC) == 0) audit.without_cloexec.emplace_back(path);
  const auto& real = hostcfg::default_syscalls();
  return real.openat2(real.context, dirfd, path, flags, mode, resolve);
}

}  // namespace

TEST_CASE("sweep (PosixFs syscall table): ManagedFile fail once / persistently / crash at every syscall") {
  if (!running_as_root()) { HOSTCFG_SKIP("needs root for a root-owned sandbox and acting as nobody"); return; }
  // The small primitive, swept at every call index of its converge (issue 2).
  auto report = sweep_posix("managed_file", false, true, false, !sanitized);
  CHECK(report.every_call == (!sanitized || sweep::full_sweep()));
  if (report.every_call) CHECK(report.indices == report.syscalls);
}

TEST_CASE("sweep (PosixFs syscall table): HostsEntry fail once / persistently / crash at every syscall") {
  if (!running_as_root()) { HOSTCFG_SKIP("needs root for a root-owned sandbox and acting as nobody"); return; }
  sweep_posix("hosts_entry", true, false, false, false);
}

TEST_CASE("sweep (PosixFs syscall table): ManagedFile + HostsEntry in one converge at every syscall") {
  if (!running_as_root()) { HOSTCFG_SKIP("needs root for a root-owned sandbox and acting as nobody"); return; }
  sweep_posix("files + hosts", true, true, false, false);
}

TEST_CASE("sweep (PosixFs syscall table): the whole seed flow (files, hosts, launchd plist, CLI links) in one converge") {
  if (!running_as_root()) { HOSTCFG_SKIP("needs root for a root-owned sandbox and acting as nobody"); return; }
  sweep_posix("whole seed flow", true, true, true, false);
}

TEST_CASE("promise 12: every file and directory PosixFs opens in the seed flow's converge and uninstall is O_CLOEXEC") {
  if (!running_as_root()) { HOSTCFG_SKIP("needs root for a root-owned sandbox and acting as nobody"); return; }
  posix_box box;
  box.reset();
  hostcfg::syscall_table table = hostcfg::default_syscalls();
  table.openat = audited_openat;
  table.openat2 = audited_openat2;
  PosixFs posix(table);
  RootedFs<PosixFs> fs(posix, box.root);
  FakeServiceManager launchd;
  audit = open_audit{};
  auto installed = run_posix(fs, true, true, &launchd);
  REQUIRE(installed);
  CHECK(installed->ok());
  RootFor priv(posix_user());
  context ctx(fs, priv, app);
  any_service_manager sm(launchd);
  ctx.attach(sm);
  auto removed = uninstall(ctx, system_conf(), user_conf(), hosts_entry(), sweep::vmnetd(), sweep::cli_links());
  REQUIRE(removed);
  CHECK(removed->ok());
  MESSAGE(audit.opens << " opens through the table, " << audit.without_cloexec.size() << " without O_CLOEXEC");
  CHECK(audit.opens > 50);
  for (const auto& path : audit.without_cloexec) {
    INFO("opened without O_CLOEXEC: " << path);
    CHECK(false);
  }
}

TEST_CASE("sweep (PosixFs syscall table): ShellProfilePathEdit + ProtectedFile, then uninstall, at every syscall") {
  if (!running_as_root()) { HOSTCFG_SKIP("needs root for a root-owned sandbox and acting as nobody"); return; }
  sweep_posix_profile_and_policy();
}
