// Each seed-flow primitive alone in a converge on a macOS-like MemoryFs, crashed and failed at
// every operation index (see sweep_support.hpp for the invariants; RELIABILITY F1, F2, F12, S2;
// promises 1, 9, 13). Prints the number of points swept per primitive.
#include "integration/sweep_support.hpp"

TEST_CASE("sweep (MemoryFs): ManagedFile crash/fail at every operation is old-or-new and a re-run converges") {
  auto t = sweep::sweep_memory(sweep::flow_kind::managed_file);
  CHECK(t.reported > 0);
}

TEST_CASE("sweep (MemoryFs): HostsEntry crash/fail at every operation is old-or-new and a re-run converges") {
  auto t = sweep::sweep_memory(sweep::flow_kind::hosts_entry);
  CHECK(t.reported > 0);
}

TEST_CASE("sweep (MemoryFs): LaunchdPlist crash/fail at every operation is old-or-new and a re-run converges") {
  auto t = sweep::sweep_memory(sweep::flow_kind::launchd_plist);
  CHECK(t.reported > 0);
}

TEST_CASE("sweep (MemoryFs): SymlinkSet crash/fail at every operation is old-or-new and a re-run converges") {
  auto t = sweep::sweep_memory(sweep::flow_kind::symlink_set);
  CHECK(t.reported > 0);
}
