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

// Regression: make_parents() used to create directories without syncing their parent, so a
// directory a converge created - and every file and record in it - was not durable when converge
// returned success. make_parents now syncs (fs.hpp sync_directory).
TEST_CASE("durability: after a successful converge a crash loses nothing, created directories included") {
  MemoryFs fs = sweep::seed_tree();
  FakeServiceManager launchd;
  auto report = sweep::run_flow(fs, launchd, sweep::flow_kind::whole);
  REQUIRE(report);
  REQUIRE(report->ok());
  HOSTCFG_CHECK_NO_DIFF(MemoryFs::diff(fs.take_snapshot(), fs.after_crash(MemoryFs::crash_keep::none).take_snapshot()),
                        "lost by a crash after success: ");
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

// Regression: when the privileged record could not be written (EIO on the record store, or a
// crash between the hosts rename and the record), the re-run found our section already there and
// recorded nothing, so uninstall left it in /etc/hosts. Now the item is written ahead of the
// change (context::record_ahead): a record that cannot be written stops the change itself, and a
// section of ours that no record names is still registered by the next run (no byte change).
TEST_CASE("a record write that fails stops the change; the re-run converges and uninstall restores the file") {
  // Find the first operation of the privileged record's store in a clean run.
  std::size_t record_op = 0;
  {
    MemoryFs fs = sweep::seed_tree();
    FakeServiceManager launchd;
    fs.clear_log();
    REQUIRE(sweep::run_flow(fs, launchd, sweep::flow_kind::hosts_entry));
    for (std::size_t i = 0; i < fs.op_log().size() && !record_op; ++i)
      if (fs.op_log()[i].mutating && (fs.op_log()[i].path.find("/var/lib/hostcfg") != std::string::npos ||
                                       fs.op_log()[i].path.find("/var/lib/.hostcfg.hostcfg-chain") != std::string::npos))
        record_op = i + 1;  // the record itself, or the temp its new directory is built under
  }
  REQUIRE(record_op > 0);
  MemoryFs fs = sweep::seed_tree();
  FakeServiceManager launchd;
  fs.clear_log();
  fs.fail_at(record_op, EIO, true);
  auto first = sweep::run_flow(fs, launchd, sweep::flow_kind::hosts_entry);
  fs.disarm();
  REQUIRE(first);
  CHECK_FALSE(first->ok());  // the failed record write is reported as the step's failure
  REQUIRE(first->steps.size() == 1);
  REQUIRE_FALSE(first->steps[0].applied.events.empty());
  CHECK(first->steps[0].applied.events[0].kind == event_kind::failed);
  CHECK(first->steps[0].applied.events[0].message.find("/var/lib/hostcfg") != std::string::npos);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(sweep::stock_hosts));  // not changed
  auto second = sweep::run_flow(fs, launchd, sweep::flow_kind::hosts_entry);
  REQUIRE(second);
  CHECK(second->ok());
  CHECK(*fs.file_bytes("/etc/hosts") != sweep::stock_hosts);
  ScriptedPrivilege priv(sweep::mac_user(), answer::granted);
  context ctx(fs, priv, sweep::app);
  auto undone = uninstall(ctx, sweep::hosts_entry());
  REQUIRE(undone);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(sweep::stock_hosts));
}
