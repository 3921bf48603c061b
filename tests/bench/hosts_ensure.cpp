// A tiny hostcfg CLI for the whole-process comparison of benchmark (3) (issue 10): the same
// "ensure 127.0.0.1 kubernetes.docker.internal" edit as the peers of shared/bench/README.md
// (py_ensure.py, npm hostile, Ansible lineinfile), as one process, the way an installer would do
// it: a full `converge` (records included) on PosixFs, as root for root.
//
//     bench_hosts_ensure FILE ADDRESS NAME [STATE_DIR]
//     bench_hosts_ensure --floor FILE ADDRESS NAME
//
// Prints "changed" or "ok" and exits 0; 1 on failure. Without arguments (as the `bench` target
// runs every program) it prints its usage and exits 0: tests/bench/run-benchmarks drives it.
//
// `--floor` is the least any correct tool must do for the same edit, in the same binary (so the
// same process start): read the file, look for the line, and only when it is missing append it
// through a temp file in the same directory, fsync, rename, fsync the directory. No parsing, no
// record, no lock, no checks. run-benchmarks prints each peer's time over this floor: the
// largest ratio any tool could reach against that peer on this machine.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "bench/bench_support.hpp"
#include "hostcfg/hostcfg.hpp"

namespace {

/// The floor described above. Returns the exit status.
int ensure_floor(const std::string& path, const std::string& line) {
  std::string bytes = hostcfg_bench::read_floor(path);
  if (bytes.find("\n" + line + "\n") != std::string::npos) {
    std::puts("ok");
    return 0;
  }
  if (!bytes.empty() && bytes.back() != '\n') bytes += '\n';
  bytes += line + "\n";
  const std::size_t slash = path.rfind('/');
  const std::string dir = slash == 0 ? "/" : path.substr(0, slash);
  const std::string temp = dir + "/.floor-temp";
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || !hostcfg_bench::write_all(fd, bytes)) return 1;
  if (::fsync(fd) != 0 || ::close(fd) != 0 || ::rename(temp.c_str(), path.c_str()) != 0) return 1;
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || ::fsync(dfd) != 0) return 1;
  ::close(dfd);
  std::puts("changed");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace hostcfg;
  if (argc < 4) {
    std::printf("usage: %s FILE ADDRESS NAME [STATE_DIR] | --floor FILE ADDRESS NAME  (run by tests/bench/run-benchmarks)\n",
                argv[0]);
    return 0;
  }
  if (std::string(argv[1]) == "--floor") {
    if (argc < 5) return 1;
    return ensure_floor(argv[2], std::string(argv[3]) + "\t" + argv[4]);
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
