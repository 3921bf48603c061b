// A tiny hostcfg CLI for the whole-process comparison of benchmark (3) (issue 10): the same
// "ensure 127.0.0.1 kubernetes.docker.internal" edit as the peers of shared/bench/README.md
// (py_ensure.py, npm hostile, Ansible lineinfile), as one process, the way an installer would do
// it: a full `converge` (records included) on PosixFs, as root for root.
//
//     bench_hosts_ensure FILE ADDRESS NAME [STATE_DIR]
//
// Prints "changed" or "ok" and exits 0; 1 on failure. Without arguments (as the `bench` target
// runs every program) it prints its usage and exits 0: tests/bench/run-benchmarks drives it.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "hostcfg/hostcfg.hpp"

int main(int argc, char** argv) {
  using namespace hostcfg;
  if (argc < 4) {
    std::printf("usage: %s FILE ADDRESS NAME [STATE_DIR]  (run by tests/bench/run-benchmarks)\n", argv[0]);
    return 0;
  }
  auto file = normalize_path(argv[1]);
  if (!file) {
    std::fprintf(stderr, "%s: not an absolute path\n", argv[1]);
    return 1;
  }
  std::string state = argc > 4 ? argv[4] : parent_path(*file) + "/.hostcfg-state";
  user_identity user;  // explicit: never read from the environment
  user.uid = static_cast<uid_type>(::geteuid());
  user.gid = static_cast<gid_type>(::getegid());
  user.groups = {user.gid};
  user.name = "installer";
  user.home = state;
  user.shell = "/bin/sh";
  PosixFs fs;
  RootFor priv(user);
  context ctx(fs, priv, "com.docker.desktop");
  ctx.user_record.path = state + "/user.record";
  ctx.system_record.path = state + "/system.record";
  HostsEntry entry{argv[2], {argv[3]}};
  entry.path = *file;
  auto report = converge(ctx, entry);
  if (!report) {
    std::fprintf(stderr, "%s\n", report.error().message().c_str());
    return 1;
  }
  if (!report->ok() || !report->out_of_sync.empty()) {
    std::fputs(report->render_text().c_str(), stderr);
    return 1;
  }
  bool changed = false;
  for (const auto& s : report->steps) changed = changed || s.applied.changed();
  std::puts(changed ? "changed" : "ok");
  return 0;
}
