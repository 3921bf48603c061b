// PosixFs crash and I/O-error sweeps through the injectable syscall table (the real syscall
// sequence, not a model of it): RootedFs<PosixFs> over a root-owned 0755 dir under /var/lib/hostcfg-tests, a
// converge of ManagedFile (a root-owned file taken over + a file created as the user "nobody"),
// of HostsEntry, and of the whole seed flow (those, the vmnetd LaunchdPlist with a fake launchd,
// the CLI links into /usr/local/bin), with syscall k failing once (EIO), persistently (ENOSPC: that syscall and
// every later call of it) and a crash (every call from k fails, so no cleanup runs; the disk
// keeps what was done). After each point: /etc/hosts and the config are wholly old or new with
// their owner, mode and link count, the records parse, and a re-run with the real table converges
// with no temp left. RELIABILITY F1, F2, F3, F12; promises 1, 9, 13.
//
// Cost: a converge here is ~1000+ syscalls (every operation walks the trusted path from "/"),
// and each point rebuilds the tree and runs two converges. The default sweep takes every index
// whose syscall changes the disk (write, fsync, renameat, unlinkat, mkdirat, fchown, fchmod,
// fsetxattr, openat/openat2 with O_CREAT...) plus evenly spaced read-only indices, so one
// executable stays near 10 s in a Debug build; HOSTCFG_SWEEP_FULL=1 sweeps every index.
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
#include "support/syscall_faults.hpp"

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

const char* plist_path = "/Library/LaunchDaemons/com.docker.vmnetd.plist";

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

std::size_t sweep_posix(const char* name, bool hosts, bool files, bool seed = false) {
  posix_box box;
  box.reset();
  FakeServiceManager launchd;  // launchd lives on when the installer crashes
  FakeServiceManager* sm = seed ? &launchd : nullptr;
  hostcfg_test::syscall_faults faults;
  PosixFs faulty_posix(faults.table());
  RootedFs<PosixFs> faulty(faulty_posix, box.root);
  PosixFs real_posix;
  RootedFs<PosixFs> real(real_posix, box.root);

  faults.disarm();
  auto clean = run_posix(faulty, hosts, files, sm);
  REQUIRE(clean);
  REQUIRE(clean->ok());
  REQUIRE(clean->out_of_sync.empty());
  const auto new_plist = read_whole_file(box.real(plist_path));
  if (seed) REQUIRE(new_plist);
  const std::size_t calls = faults.calls();
  REQUIRE(calls > 10);
  const auto new_hosts = read_whole_file(box.real("/etc/hosts"));
  REQUIRE(new_hosts);
  if (hosts) CHECK(*new_hosts != stock_hosts);
  else CHECK(*new_hosts == stock_hosts);

  // The indices to sweep: see the file comment.
  const std::vector<std::string> sequence = faults.log();
  std::vector<std::size_t> indices;
  std::size_t mutating_indices = 0;
  {
    static const std::set<std::string> changes_disk = {"write",    "pwrite",   "ftruncate", "fsync",
                                                       "renameat", "exchangeat", "unlinkat", "mkdirat",   "symlinkat",
                                                       "fchmod",   "fchmodat", "fchown",    "fchownat",
                                                       "fsetxattr"};
    const std::size_t reads_wanted = 20;
    const std::size_t stride = std::max<std::size_t>(1, calls / reads_wanted);
    for (std::size_t k = 0; k < calls; ++k) {
      bool mutating = changes_disk.count(sequence[k]) != 0;
      // An openat that creates (the temp file) is the call right before its first write/fchown.
      if (!mutating && (sequence[k] == "openat" || sequence[k] == "openat2") && k + 1 < calls)
        mutating = sequence[k + 1] == "fchown" || sequence[k + 1] == "write" || sequence[k + 1] == "fchmod";
      if (mutating) ++mutating_indices;
      if (sweep::full_sweep() || mutating || k % stride == 0) indices.push_back(k);
    }
  }

  auto check_old_or_new = [&] {
    auto h = read_whole_file(box.real("/etc/hosts"));
    REQUIRE(h);
    CHECK((*h == stock_hosts || *h == *new_hosts));
    auto c = read_whole_file(box.real("/etc/docker-app.conf"));
    REQUIRE(c);
    CHECK((*c == "old bytes\n" || *c == "new bytes\n"));
    if (auto u = read_whole_file(box.real("/Users/alice/.docker/app.conf"))) CHECK(*u == "user\n");
    for (const char* rec : {user_record_path, system_record_path})
      if (auto bytes = read_whole_file(box.real(rec))) {
        auto parsed = parse_record(*bytes, rec);
        INFO(rec << ": " << (parsed ? std::string("ok") : parsed.error().message()));
        CHECK(parsed.has_value());
      }
    struct ::stat st {};
    REQUIRE(::lstat(box.real("/etc/hosts").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0644);
    CHECK(st.st_uid == 0);
    CHECK(st.st_nlink == 1);
    if (!seed) return;
    // Each link absent or pointing at its target; the plist absent or the whole new one.
    for (const char* link : posix_box::link_names) {
      const std::string at = box.real(std::string("/usr/local/bin/") + link);
      if (::lstat(at.c_str(), &st) != 0) continue;
      REQUIRE(S_ISLNK(st.st_mode));
      char target[512] = {};
      REQUIRE(::readlink(at.c_str(), target, sizeof target - 1) > 0);
      CHECK(std::string(target) == std::string(bundle_bin) + "/" + link);
    }
    if (auto plist = read_whole_file(box.real(plist_path))) CHECK(plist == new_plist);
  };

  std::size_t points = 0;
  std::size_t reported_points = 0;
  for (auto mode : {hostcfg_test::fault_mode::fail_once, hostcfg_test::fault_mode::fail_persistent,
                    hostcfg_test::fault_mode::crash}) {
    for (std::size_t k : indices) {
      std::string mode_name = hostcfg_test::fault_mode_name(mode);
      CAPTURE(name);
      CAPTURE(mode_name);
      CAPTURE(k);
      box.reset();
      if (seed) launchd = FakeServiceManager{};  // a fresh machine: nothing loaded
      faults.arm(mode, k, mode == hostcfg_test::fault_mode::fail_persistent ? ENOSPC : EIO);
      auto report = run_posix(faulty, hosts, files, sm);  // no exception, no abort
      std::string call = k < faults.log().size() ? faults.log()[k] : "(not reached)";
      CAPTURE(call);
      faults.disarm();
      check_old_or_new();
      // A fault the run did not report must have cost nothing: every file is the new one.
      bool reported = !report || !report->ok() || !report->out_of_sync.empty() || !report->notes.empty();
      if (reported) {
        ++reported_points;
      } else if (faults.fired()) {
        CHECK(read_whole_file(box.real("/etc/hosts")) == new_hosts);
        if (files) {
          CHECK(read_whole_file(box.real("/etc/docker-app.conf")) == std::optional<std::string>("new bytes\n"));
          CHECK(read_whole_file(box.real("/Users/alice/.docker/app.conf")) == std::optional<std::string>("user\n"));
        }
      }
      auto again = run_posix(real, hosts, files, sm);
      REQUIRE(again);
      CHECK(again->ok());
      CHECK(again->out_of_sync.empty());
      if (seed) {
        CHECK(read_whole_file(box.real(plist_path)) == new_plist);
        CHECK(launchd.loaded(launchd_domain::system(), "com.docker.vmnetd"));
        for (const char* link : posix_box::link_names) {
          char target[512] = {};
          CHECK(::readlink(box.real(std::string("/usr/local/bin/") + link).c_str(), target, sizeof target - 1) > 0);
          CHECK(std::string(target) == std::string(bundle_bin) + "/" + link);
        }
      }
      CHECK(read_whole_file(box.real("/etc/hosts")) == new_hosts);
      if (files) {
        CHECK(read_whole_file(box.real("/etc/docker-app.conf")) == std::optional<std::string>("new bytes\n"));
        CHECK(read_whole_file(box.real("/Users/alice/.docker/app.conf")) == std::optional<std::string>("user\n"));
        struct ::stat st {};
        REQUIRE(::lstat(box.real("/Users/alice/.docker/app.conf").c_str(), &st) == 0);
        CHECK(st.st_uid == nobody);
        CHECK((st.st_mode & 07777) == 0600);
      }
      for (const auto& t : box.temps()) {
        INFO("temp left after the re-run: " << t);
        CHECK(false);
      }
      ++points;
    }
  }
  std::printf("posix sweep  (in %s) ", box.root.c_str());
  std::printf("%-16s %4zu syscalls (%zu change the disk), %4zu indices swept (%s), %5zu points, %zu faults reported\n",
              name, calls, mutating_indices, indices.size(), sweep::full_sweep() ? "full" : "default", points,
              reported_points);
  MESSAGE("posix sweep " << std::string(name) << ": " << calls << " syscalls, " << points << " points");
  CHECK(points == 3 * indices.size());
  CHECK(indices.size() >= mutating_indices);
  CHECK(reported_points > 0);
  return points;
}

/// The sweep of ShellProfilePathEdit and ProtectedFile in one converge (the seed's PATH edit on a
/// decline and its cached policy file): the user's profile (CRLF, a comment, no final newline) is
/// wholly old or new at every point, the policy file absent or wholly new (root:0 0644), the
/// records parse; a re-run converges with no temp left; and an uninstall after that gives back the
/// profile's exact bytes and removes the policy file and the directory made for it.
std::size_t sweep_posix_profile_and_policy() {
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
  auto run = [&](auto& fs, bool undo) {
    RootFor priv(posix_user());
    context ctx(fs, priv, app);
    ProtectedFile policy{policy_path, policy_bytes};
    ShellProfilePathEdit path_edit{"/Users/alice/.docker/bin"};
    return undo ? uninstall(ctx, policy, path_edit) : converge(ctx, policy, path_edit);
  };
  hostcfg_test::syscall_faults faults;
  PosixFs faulty_posix(faults.table());
  RootedFs<PosixFs> faulty(faulty_posix, box.root);
  PosixFs real_posix;
  RootedFs<PosixFs> real(real_posix, box.root);

  reset();
  faults.disarm();
  auto clean = run(faulty, false);
  REQUIRE(clean);
  REQUIRE(clean->ok());
  REQUIRE(clean->out_of_sync.empty());
  const std::size_t calls = faults.calls();
  const auto new_profile = read_whole_file(box.real(profile));
  REQUIRE(new_profile);
  REQUIRE(*new_profile != original_profile);
  REQUIRE(read_whole_file(box.real(policy_path)) == std::optional<std::string>(policy_bytes));

  static const std::set<std::string> changes_disk = {"write",   "pwrite",    "ftruncate", "fsync",    "renameat", "exchangeat",
                                                     "unlinkat", "mkdirat",  "symlinkat", "fchmod",   "fchmodat",
                                                     "fchown",  "fchownat", "fsetxattr"};
  const std::vector<std::string> sequence = faults.log();
  std::vector<std::size_t> indices;
  const std::size_t stride = std::max<std::size_t>(1, calls / 20);
  for (std::size_t k = 0; k < calls; ++k) {
    bool mutating = changes_disk.count(sequence[k]) != 0 ||
                    ((sequence[k] == "openat" || sequence[k] == "openat2") && k + 1 < calls &&
                     (sequence[k + 1] == "fchown" || sequence[k + 1] == "write" || sequence[k + 1] == "fchmod"));
    if (sweep::full_sweep() || mutating || k % stride == 0) indices.push_back(k);
  }
  std::size_t points = 0;
  std::size_t reported = 0;
  for (auto mode : {hostcfg_test::fault_mode::fail_once, hostcfg_test::fault_mode::fail_persistent,
                    hostcfg_test::fault_mode::crash}) {
    for (std::size_t k : indices) {
      std::string mode_name = hostcfg_test::fault_mode_name(mode);
      CAPTURE(mode_name);
      CAPTURE(k);
      reset();
      faults.arm(mode, k, mode == hostcfg_test::fault_mode::fail_persistent ? ENOSPC : EIO);
      auto report = run(faulty, false);
      std::string call = k < faults.log().size() ? faults.log()[k] : "(not reached)";
      CAPTURE(call);
      faults.disarm();
      if (!report || !report->ok() || !report->out_of_sync.empty() || !report->notes.empty()) ++reported;
      auto p = read_whole_file(box.real(profile));
      REQUIRE(p);
      CHECK((*p == original_profile || *p == *new_profile));
      struct ::stat st {};
      REQUIRE(::lstat(box.real(profile).c_str(), &st) == 0);
      CHECK(st.st_uid == nobody);
      CHECK((st.st_mode & 07777) == 0644);
      if (auto pol = read_whole_file(box.real(policy_path))) {
        CHECK(*pol == policy_bytes);
        REQUIRE(::lstat(box.real(policy_path).c_str(), &st) == 0);
        CHECK(st.st_uid == 0);
        CHECK((st.st_mode & 07777) == 0644);
      }
      for (const char* rec : {user_record_path, system_record_path})
        if (auto bytes = read_whole_file(box.real(rec))) CHECK(parse_record(*bytes, rec).has_value());
      auto again = run(real, false);
      REQUIRE(again);
      CHECK(again->ok());
      CHECK(again->out_of_sync.empty());
      CHECK(read_whole_file(box.real(profile)) == new_profile);
      CHECK(read_whole_file(box.real(policy_path)) == std::optional<std::string>(policy_bytes));
      for (const auto& t : box.temps()) {
        INFO("temp left after the re-run: " << t);
        CHECK(false);
      }
      auto undone = run(real, true);
      REQUIRE(undone);
      CHECK(undone->ok());
      auto restored = read_whole_file(box.real(profile));
      CAPTURE(restored.value_or("(absent)"));
      CHECK(restored == std::optional<std::string>(original_profile));
      CHECK_FALSE(stdfs::exists(box.real("/Library/Application Support")));
      for (const char* rec : {user_record_path, system_record_path}) CHECK_FALSE(stdfs::exists(box.real(rec)));
      ++points;
    }
  }
  std::printf("posix sweep  (in %s) %-16s %4zu syscalls, %4zu indices swept (%s), %5zu points, %zu faults reported\n",
              box.root.c_str(), "profile + policy", calls, indices.size(), sweep::full_sweep() ? "full" : "default",
              points, reported);
  CHECK(points == 3 * indices.size());
  CHECK(reported > 0);
  return points;
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
  sweep_posix("managed_file", false, true);
}

TEST_CASE("sweep (PosixFs syscall table): HostsEntry fail once / persistently / crash at every syscall") {
  if (!running_as_root()) { HOSTCFG_SKIP("needs root for a root-owned sandbox and acting as nobody"); return; }
  sweep_posix("hosts_entry", true, false);
}

TEST_CASE("sweep (PosixFs syscall table): ManagedFile + HostsEntry in one converge at every syscall") {
  if (!running_as_root()) { HOSTCFG_SKIP("needs root for a root-owned sandbox and acting as nobody"); return; }
  sweep_posix("files + hosts", true, true);
}

TEST_CASE("sweep (PosixFs syscall table): the whole seed flow (files, hosts, launchd plist, CLI links) in one converge") {
  if (!running_as_root()) { HOSTCFG_SKIP("needs root for a root-owned sandbox and acting as nobody"); return; }
  sweep_posix("whole seed flow", true, true, true);
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
