// The port-helper daemon program end to end (root, Linux): the built examples/port_helper.cpp
// runs as root on a short socket path in a root-owned directory, its launchd plist installed by
// the library in a --root sandbox (FileOnly service manager). A forked client dropped to `nobody`
// gets a listening socket below 1024 through SCM_RIGHTS (helper-only, so a machine that lets
// anyone bind low ports still takes the helper path), connects to it, refreshes the policy cache
// (root-owned 0644 at the fixed path), then asks the helper to uninstall itself: the daemon exits
// 0 and leaves no socket, no cache, no plist and no record behind. The daemon is killed on any
// failure, so no test leaves a process running.
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "hostcfg/backend/posix_fs.hpp"
#include "hostcfg/backend/rooted_fs.hpp"
#include "hostcfg/backend/service_manager.hpp"
#include "hostcfg/converge.hpp"
#include "hostcfg/helper/client.hpp"
#include "hostcfg/helper/port_bind.hpp"
#include "hostcfg/primitives/launchd_plist.hpp"
#include "support/real_fs.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;
using namespace hostcfg::helper;

namespace {

constexpr uid_type nobody = 65534;

std::string helper_binary() { return std::string(HOSTCFG_BINARY_DIR) + "/examples/port-helper"; }

/// A root-owned 0755 scratch directory under /var/lib/hostcfg-tests (never under world-writable /tmp or /var/tmp), so
/// the socket path stays short and the helper's trusted-directory walk accepts it.
struct root_dir : hostcfg_test::root_scratch_dir {
  root_dir() : root_scratch_dir("hph") {}
};

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

/// The daemon process: started with its stderr in `log_path`; killed (SIGKILL) and reaped by the
/// destructor unless the test already saw it exit.
struct daemon_process {
  pid_t pid = -1;
  std::string log_path;

  daemon_process(const std::vector<std::string>& args, std::string log) : log_path(std::move(log)) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid = ::fork();
    if (pid == 0) {
      const int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (out < 0 || ::dup2(out, 2) < 0) ::_exit(126);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~daemon_process() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  /// Waits up to `ms` for the daemon to exit; its exit code, or -1 (still running / killed).
  int wait_exit(int ms) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (pid > 0 && std::chrono::steady_clock::now() < until) {
      int status = 0;
      const pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  /// Waits until `socket` exists (the daemon is listening); false if the daemon died first.
  bool wait_listening(const std::string& socket, int ms) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < until) {
      if (exists(socket)) return true;
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  std::string log() const { return hostcfg_test::read_whole_file(log_path).value_or("<unreadable>"); }
};

/// A TCP port below 1024 that root can bind on 127.0.0.1 right now, scanning down from `from`.
std::uint16_t free_port(std::uint16_t from) {
  for (std::uint16_t port = from; port > 600; --port) {
    auto req = make_bind_request(transport::tcp, "127.0.0.1", port);
    if (req && helper::detail::bind_socket(*req, true, true)) return port;
  }
  return 0;
}

/// Connects to 127.0.0.1:`port` and accepts that connection on `listening`; "accepted" or why not.
std::string connect_and_accept(int listening, std::uint16_t port) {
  unique_fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(client.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0)
    return std::string("connect: ") + std::strerror(errno);
  unique_fd served(::accept4(listening, nullptr, nullptr, SOCK_CLOEXEC));
  return served ? "accepted" : std::string("accept: ") + std::strerror(errno);
}

}  // namespace

TEST_CASE("port-helper daemon: SCM_RIGHTS bind for nobody, a root-owned policy cache, then uninstall-self exits 0") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root"); return; }
  if (::access(helper_binary().c_str(), X_OK) != 0) { HOSTCFG_SKIP("port-helper not built"); return; }
  root_dir dir;
  REQUIRE(!dir.path.empty());
  REQUIRE(::mkdir((dir / "policy").c_str(), 0755) == 0);
  const std::string sandbox = dir / "root";
  REQUIRE(::mkdir(sandbox.c_str(), 0755) == 0);
  REQUIRE(::mkdir((sandbox + "/Library").c_str(), 0755) == 0);
  REQUIRE(::mkdir((sandbox + "/Library/LaunchDaemons").c_str(), 0755) == 0);
  const std::string plist = sandbox + "/Library/LaunchDaemons/com.docker.vmnetd.plist";
  const std::string record = sandbox + "/var/lib/hostcfg/com.docker.desktop.record";

  // The installer's part: the helper's launchd plist, written by the library into the sandbox.
  {
    PosixFs posix;
    RootedFs<PosixFs> fs(posix, sandbox);
    RootFor priv(user_identity{nobody, nobody, {nobody}, "nobody", "/nonexistent", "/bin/sh", {}, {}});
    context ctx(fs, priv, "com.docker.desktop");
    FileOnlyServiceManager file_only;
    any_service_manager sm(file_only);
    ctx.attach(sm);
    auto installed = converge(ctx, LaunchdPlist{docker_vmnetd_job()});
    REQUIRE(installed);
    CHECK(installed->ok());
  }
  REQUIRE(exists(plist));
  REQUIRE(exists(record));

  const std::uint16_t port = free_port(987);
  REQUIRE(port != 0);
  const std::string socket = dir / "h.sock";
  const std::string policy_path = dir / "policy/policy.json";
  const std::string state_path = dir / "state/helper.record";
  daemon_process daemon({helper_binary(), "--socket", socket, "--uid", std::to_string(nobody), "--policy-path",
                         policy_path, "--state", state_path, "--root", sandbox, "--service-manager", "file-only",
                         "--label", "com.docker.vmnetd", "--app-id", "com.docker.desktop", "--timeout-ms", "5000"},
                        dir / "helper.log");
  REQUIRE(daemon.pid > 0);
  INFO("helper log:\n" << daemon.log());
  REQUIRE(daemon.wait_listening(socket, 10000));

  // 1. A listening socket below 1024 through the helper only, received as an fd via SCM_RIGHTS.
  const std::string policy = "{\"registries\":[\"docker.io\"]}\n";
  const std::string got = hostcfg_test::run_as_user_capturing(nobody, [&] {
    auto req = make_bind_request(transport::tcp, "127.0.0.1", port);
    if (!req) return std::string("bad request");
    port_bind::options opts;
    opts.socket_path = socket;
    opts.helper_only = true;
    auto bound = port_bind::bind(*req, opts);
    if (!bound) return "bind: " + bound.error().message();
    int listening = 0;
    socklen_t len = sizeof listening;
    ::getsockopt(bound->fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
    sockaddr_in local{};
    socklen_t local_len = sizeof local;
    ::getsockname(bound->fd.get(), reinterpret_cast<sockaddr*>(&local), &local_len);
    std::string out = std::string("via_helper=") + (bound->via_helper ? "1" : "0") +
                      " listening=" + (listening ? "1" : "0") + " port=" + std::to_string(ntohs(local.sin_port)) +
                      " " + connect_and_accept(bound->fd.get(), port);
    // 2. The policy cache, refreshed without naming a path.
    auto refreshed = refresh_policy(client_options{socket, 5000}, policy);
    return out + (refreshed ? " refreshed" : " refresh: " + refreshed.error().message());
  });
  CHECK(got == "via_helper=1 listening=1 port=" + std::to_string(port) + " accepted refreshed");
  struct stat st {};
  REQUIRE(::lstat(policy_path.c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  CHECK(st.st_uid == 0);
  CHECK(st.st_gid == 0);
  CHECK((st.st_mode & 07777) == 0644);
  CHECK(hostcfg_test::read_whole_file(policy_path) == policy);
  REQUIRE(::lstat(socket.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK(st.st_uid == nobody);
  CHECK((st.st_mode & 07777) == 0600);

  // 3. Uninstall: the reply is ok, the daemon exits 0 and takes its traces with it.
  const std::string gone = hostcfg_test::run_as_user_capturing(nobody, [&] {
    auto r = uninstall_helper(client_options{socket, 5000});
    return r ? std::string("ok") : r.error().message();
  });
  CHECK(gone == "ok");
  CHECK(daemon.wait_exit(10000) == 0);
  CHECK_FALSE(exists(socket));
  CHECK_FALSE(exists(policy_path));
  CHECK_FALSE(exists(state_path));
  CHECK_FALSE(exists(dir / "state"));
  CHECK_FALSE(exists(plist));
  CHECK_FALSE(exists(record));
  const std::string log = daemon.log();
  CHECK(log.find("port-helper: bound uid=65534") != std::string::npos);
  CHECK(log.find("port-helper: uninstalled uid=-1 pid=-1: removed policy cache " + policy_path) != std::string::npos);
  // The plist goes first (launchd never starts the helper again), the bootout is the last act.
  CHECK(log.find("port-helper: uninstalled uid=-1 pid=-1: /Library/LaunchDaemons/com.docker.vmnetd.plist: removed; " +
                 std::string("system/com.docker.vmnetd: skipped: no launchd here")) != std::string::npos);
  CHECK(log.find("uninstall_failed") == std::string::npos);
}

TEST_CASE("port-helper daemon: usage errors name the option and exit 2") {
  if (::access(helper_binary().c_str(), X_OK) != 0) { HOSTCFG_SKIP("port-helper not built"); return; }
  root_dir dir;
  for (const auto& bad : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--socket", "/var/run/x.sock"}, "port-helper: --socket and --uid are required"},
           {{"--socket", "/var/run/x.sock", "--uid", "1", "--service-manager", "systemd"},
            "port-helper: --service-manager is launchctl or file-only"},
           {{"--socket", "/var/run/x.sock", "--uid", "1", "--label", "../evil"},
            "port-helper: --label needs a launchd label such as com.example.helper"},
           {{"--socket", "/var/run/x.sock", "--uid", "1", "--root", "relative/dir"},
            "port-helper: --root needs an absolute normal path"},
#ifndef __APPLE__
           {{"--socket", "/var/run/x.sock", "--uid", "1", "--code-requirement", "anchor apple"},
            "port-helper: --code-requirement needs macOS (code signatures); it is refused here"},
#endif
       }) {
    std::vector<std::string> args{helper_binary()};
    args.insert(args.end(), bad.first.begin(), bad.first.end());
    daemon_process p(args, dir / "usage.log");
    REQUIRE(p.pid > 0);
    CHECK(p.wait_exit(10000) == 2);
    const std::string log = p.log();
    CHECK(log.rfind(bad.second + "\n", 0) == 0);
  }
}
