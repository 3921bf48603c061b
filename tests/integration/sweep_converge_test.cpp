// The whole seed flow (ManagedFile + HostsEntry + LaunchdPlist + SymlinkSet) in one converge on
// a macOS-like MemoryFs, crashed and failed at every operation index (see sweep_support.hpp for
// the invariants; RELIABILITY F1, F2, F12; promises 1, 9, 13), and the durability of a converge
// that returned success.
#include "integration/sweep_support.hpp"

using namespace hostcfg;

TEST_CASE("sweep (MemoryFs): the whole seed flow in one converge, crash and fail at every operation") {
  auto t = sweep::sweep_memory(sweep::flow_kind::whole, true);
  CHECK(t.operations > 40);
  CHECK(t.reported > 0);
}

// BUG (reported to the lead): make_parents() creates directories without syncing their parent,
// and neither PosixFs::mkdir nor MemoryFs::mkdir syncs it either, so a directory a converge
// created - and every file and record in it - is not durable when converge returns success.
// Promise 1 ("durable once the call returns success") does not hold for files in new directories.
TEST_CASE("durability: after a successful converge a crash loses nothing, created directories included" *
          doctest::may_fail()) {
  MemoryFs fs = sweep::seed_tree();
  FakeServiceManager launchd;
  auto report = sweep::run_flow(fs, launchd, sweep::flow_kind::whole);
  REQUIRE(report);
  REQUIRE(report->ok());
  auto lost = MemoryFs::diff(fs.take_snapshot(), fs.after_crash(MemoryFs::crash_keep::none).take_snapshot());
  for (const auto& line : lost) MESSAGE("lost by a crash after success: " << line);
  CHECK(lost.empty());
}

TEST_CASE("durability: a file replaced in an existing directory survives a crash right after success") {
  MemoryFs fs = sweep::seed_tree();
  FakeServiceManager launchd;
  auto report = sweep::run_flow(fs, launchd, sweep::flow_kind::hosts_entry);
  REQUIRE(report);
  REQUIRE(report->ok());
  MemoryFs rebooted = fs.after_crash(MemoryFs::crash_keep::none);
  CHECK(rebooted.file_bytes("/etc/hosts") == fs.file_bytes("/etc/hosts"));
  CHECK(rebooted.file_bytes("/etc/hosts") != std::optional<std::string>(sweep::stock_hosts));
}

// FINDING (reported to the lead): when the privileged record cannot be written (EIO on the record
// store, or a crash between the hosts rename and the record), the run says so in a note, and the
// re-run converges - but it finds our section already there, plans nothing and records nothing,
// so hostcfg has forgotten the section is its own and uninstall leaves it in /etc/hosts. The
// sweeps count such points ("points lost a record item"). Promise 4 after promise 13.
TEST_CASE("a record write that failed is recovered by the re-run, so uninstall still restores the file" *
          doctest::may_fail()) {
  // Find the first operation of the privileged record's store in a clean run.
  std::size_t record_op = 0;
  {
    MemoryFs fs = sweep::seed_tree();
    FakeServiceManager launchd;
    fs.clear_log();
    REQUIRE(sweep::run_flow(fs, launchd, sweep::flow_kind::hosts_entry));
    for (std::size_t i = 0; i < fs.op_log().size() && !record_op; ++i)
      if (fs.op_log()[i].mutating && fs.op_log()[i].path.find("/var/lib/hostcfg") != std::string::npos) record_op = i + 1;
  }
  REQUIRE(record_op > 0);
  MemoryFs fs = sweep::seed_tree();
  FakeServiceManager launchd;
  fs.clear_log();
  fs.fail_at(record_op, EIO, true);
  auto first = sweep::run_flow(fs, launchd, sweep::flow_kind::hosts_entry);
  fs.disarm();
  REQUIRE(first);
  CHECK_FALSE(first->notes.empty());  // the failed record write is reported
  CHECK(*fs.file_bytes("/etc/hosts") != sweep::stock_hosts);
  REQUIRE(sweep::run_flow(fs, launchd, sweep::flow_kind::hosts_entry));
  ScriptedPrivilege priv(sweep::mac_user(), answer::granted);
  context ctx(fs, priv, sweep::app);
  auto undone = uninstall(ctx, sweep::hosts_entry());
  REQUIRE(undone);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(sweep::stock_hosts));
}
