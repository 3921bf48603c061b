// Real elevation (issue 8): the pure command builders, the runner's hardening, and - as root with
// sudo installed - a converge and an uninstall run as a throwaway user through `sudo -A` with test
// askpass programs (answer / cancel / too slow), against a root-owned tree (never the machine's
// own /etc), with one prompt counted and owners checked.
//
// The test binary doubles as the elevated runner: started with --one-shot it runs the runner
// before doctest's main (see `runner_mode` below), exactly as the helper program does.
#include <hostcfg/backend/command_privilege.hpp>
#include <hostcfg/backend/posix_fs.hpp>
#include <hostcfg/backend/rooted_fs.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/helper/one_shot.hpp>
#include <hostcfg/primitives/hosts_entry.hpp>
#include <hostcfg/primitives/launchd_plist.hpp>
#include <hostcfg/primitives/managed_file.hpp>
#include <hostcfg/primitives/privileged_port_bind.hpp>
#include <hostcfg/primitives/protected_file.hpp>
#include <hostcfg/primitives/shell_profile_path_edit.hpp>
#include <hostcfg/primitives/symlink_set.hpp>
#include <hostcfg/recipes/cli_links.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "support/real_fs.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

/// The test helper's launchd label; its socket is <fixture dir>/h.sock.
const char* const test_helper_label = "com.example.porthelper";

// The runner's launchd in these tests (the fixture's tree is a --root tree: file-only), except
// that a kickstart of the test helper's label starts a real privileged helper: a detached daemon
// (double fork, new session, stdio on /dev/null so the runner's reply pipe still closes when the
// runner exits) serving the requesting user (SUDO_UID) on <fixture dir>/h.sock, its pid in
// <fixture dir>/helper.pid for the fixture to stop.
struct helper_starting_launchd : FileOnlyServiceManager {
  result<service_outcome> kickstart(const launchd_domain& domain, std::string_view label) {
    if (label != test_helper_label) return FileOnlyServiceManager::kickstart(domain, label);
    auto self = helper::own_binary_path();  // <dir>/bin/runner
    if (!self) return tl::unexpected(self.error());
    const std::string dir = self->substr(0, self->rfind("/bin/"));
    const char* sudo_uid = std::getenv("SUDO_UID");
    if (!sudo_uid) return fail(errc::unavailable, "kickstart", std::string(label), "no SUDO_UID");
    helper::server_config config;
    config.socket_path = dir + "/h.sock";
    config.allowed_uid = static_cast<uid_type>(std::atol(sudo_uid));
    const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd < 0) return fail_errno(errno, "open", "/dev/null");
    const pid_t first = ::fork();
    if (first < 0) return fail_errno(errno, "fork", dir);
    if (first == 0) {
      ::setsid();
      if (::fork() != 0) ::_exit(0);
      // Keep nothing of the runner's: stdio on /dev/null (its reply pipe must close when it exits),
      // every other descriptor closed.
      for (int fd = 0; fd < 3; ++fd) ::dup2(null_fd, fd);
      for (int fd = 3; fd < 1024; ++fd) ::close(fd);
      auto server = helper::Server::listen(config);
      if (!server) ::_exit(1);
      // The pid only once listening: the fixture kills exactly this process, never a reused pid.
      std::ofstream(dir + "/helper.pid") << ::getpid() << "\n";
      (void)server->run();
      ::_exit(0);
    }
    ::close(null_fd);
    int status = 0;
    ::waitpid(first, &status, 0);
    return service_outcome{};
  }
};

// Runner mode: if this process was started with --one-shot, be the runner and exit.
const bool runner_mode = [] {
  std::ifstream cmdline("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  std::string current;
  for (char c : all) {
    if (c == '\0') {
      args.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  bool one_shot = false;
  for (const auto& a : args) one_shot = one_shot || a == "--one-shot";
  if (!one_shot) return false;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  helper_starting_launchd launchd;
  any_service_manager services(launchd);
  helper::one_shot_environment environment;
  environment.services = &services;
  environment.startable_jobs.labels = {test_helper_label};
  int status = helper::run_one_shot<ManagedFile, HostsEntry, SymlinkSet, PrivilegedPortBind>(
      0, 1, 2, helper::parse_one_shot_options(static_cast<int>(argv.size()), argv.data()), environment);
  std::fflush(nullptr);
  ::_exit(status);
}();

using hostcfg_test::shell_output;

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// The link itself (its target is a path inside the test root, dangling as seen from outside it).
bool link_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

void write_file(const std::string& path, const std::string& bytes, mode_t mode) {
  std::ofstream(path, std::ios::binary) << bytes;
  ::chmod(path.c_str(), mode);
}

}  // namespace

TEST_CASE("sudo command line: prompt on one line, % kept literal, runner words passed as they are") {
  elevation_command cmd;
  cmd.runner_path = "/opt/x/helper";
  cmd.runner_args = {"--one-shot", "--root", "/tmp/a b"};
  cmd.askpass = "/usr/lib/ask";
  elevation_request request{"com.example.app", "change 100% of\nthings", {"create file /etc/x"}};
  auto argv = elevation_argv(cmd, request);
  REQUIRE(argv);
  std::vector<std::string> expected{"/usr/bin/sudo", "-A", "-p",
                                    "[com.example.app] change 100%% of things. Password for %p: ", "--",
                                    "/opt/x/helper", "--one-shot", "--root", "/tmp/a b"};
  CHECK(*argv == expected);
}

TEST_CASE("pkexec command line is the tool, the runner and its words") {
  elevation_command cmd;
  cmd.tool = elevation_tool::pkexec;
  cmd.tool_path = "/usr/bin/pkexec";
  cmd.runner_path = "/usr/libexec/helper";
  auto argv = elevation_argv(cmd, elevation_request{"a", "r", {}});
  REQUIRE(argv);
  CHECK(*argv == std::vector<std::string>{"/usr/bin/pkexec", "/usr/libexec/helper", "--one-shot"});
}

TEST_CASE("AppleScript text quotes every layer: injection attempts stay data") {
  elevation_command cmd;
  cmd.tool = elevation_tool::osascript;
  cmd.tool_path = "/usr/bin/osascript";
  cmd.runner_path = "/Library/PrivilegedHelperTools/it's \"x\"\\y";
  cmd.runner_args = {"--one-shot", "$(touch /tmp/pwned)"};
  elevation_request request{"app", "reason with \"quotes\" and \\ and\nnewline", {"create link /usr/local/bin/docker"}};
  auto argv = elevation_argv(cmd, request);
  REQUIRE(argv);
  REQUIRE(argv->size() == 3);
  CHECK((*argv)[1] == "-e");
  std::string expected =
      "do shell script \"'/Library/PrivilegedHelperTools/it'\\\\''s \\\"x\\\"\\\\y' '--one-shot' '$(touch "
      "/tmp/pwned)'\" with prompt \"reason with \\\"quotes\\\" and \\\\ and\\nnewline\\n- create link "
      "/usr/local/bin/docker\" with administrator privileges";
  CHECK((*argv)[2] == expected);
  CHECK(applescript_string("a\"b\\c\td") == "\"a\\\"b\\\\c\\td\"");
  CHECK(posix_single_quote("it's") == "'it'\\''s'");
}

TEST_CASE("control characters in any word of the command line are refused") {
  elevation_command cmd;
  cmd.runner_path = std::string("/opt/helper\nrm -rf /");
  auto argv = elevation_argv(cmd, elevation_request{"a", "r", {}});
  REQUIRE_FALSE(argv);
  CHECK(argv.error().is(errc::invalid_input));
  CHECK(argv.error().message().find("control character") != std::string::npos);
  cmd.runner_path = "relative/helper";
  CHECK(elevation_argv(cmd, elevation_request{"a", "r", {}}).error().message().find("absolute") != std::string::npos);
  cmd.runner_path = "/opt/helper";
  cmd.runner_args = {std::string("a\0b", 3)};
  CHECK_FALSE(elevation_argv(cmd, elevation_request{"a", "r", {}}));
}

TEST_CASE("how a prompt ended is told apart: declined, cancelled, unavailable") {
  CHECK(classify_elevation_failure(elevation_tool::sudo, 1, "sudo: 3 incorrect password attempts") == answer::declined);
  CHECK(classify_elevation_failure(elevation_tool::sudo, 1, "sudo: no password was provided") == answer::cancelled);
  CHECK(classify_elevation_failure(elevation_tool::sudo, 1, "sudo: a password is required") == answer::cancelled);
  CHECK(classify_elevation_failure(elevation_tool::sudo, 1, "bob is not in the sudoers file.") == answer::unavailable);
  CHECK(classify_elevation_failure(elevation_tool::pkexec, 126, "") == answer::cancelled);
  CHECK(classify_elevation_failure(elevation_tool::pkexec, 127, "") == answer::declined);
  CHECK(classify_elevation_failure(elevation_tool::osascript, 1, "execution error: User canceled. (-128)") ==
        answer::cancelled);
}

TEST_CASE("a runner that exits without reading its request does not kill the caller with SIGPIPE") {
  // sudo exits at once when its askpass gives up: the request written to its stdin then meets a
  // closed pipe. The caller must get an answer, not die of SIGPIPE (found by CI: "child died:
  // wait status 13"). Here the "elevation tool" is /bin/true and the request is larger than a pipe.
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::signal(SIGPIPE, SIG_DFL);
    elevation_command cmd;
    cmd.tool_path = "/bin/true";
    cmd.runner_path = "/bin/true";
    cmd.timeout_ms = 10000;
    CommandPrivilege priv(user_identity{65534, 65534, {65534}, "nobody", "/nonexistent", "/bin/sh", std::nullopt,
                                        std::nullopt},
                          cmd);
    record payload{"com.example.pipe", {}};
    payload.put(record_item{"big", "managed_file", {{"content", std::string(1u << 20, 'x')}}});
    elevation_request request{"com.example.pipe", "a test", {"one change"}};
    auto outcome = priv.run_elevated(request, payload);
    ::_exit(outcome ? 0 : 3);  // either way: alive
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  INFO("wait status " << status);
  CHECK(WIFEXITED(status));
}

TEST_CASE("one-shot options: only known options, absolute paths, numeric uid") {
  std::vector<std::string> words{"runner", "--one-shot", "--root", "/srv/tree", "--uid", "501"};
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  auto parsed = helper::parse_one_shot_options(static_cast<int>(argv.size()), argv.data());
  REQUIRE(parsed);
  CHECK(parsed->root == std::optional<std::string>("/srv/tree"));
  CHECK(parsed->uid == std::optional<uid_type>(501));
  std::vector<std::string> bad{"runner", "--one-shot", "--exec", "/bin/sh"};
  std::vector<char*> bad_argv;
  for (auto& w : bad) bad_argv.push_back(w.data());
  CHECK(helper::parse_one_shot_options(static_cast<int>(bad_argv.size()), bad_argv.data()).error().message().find(
            "unknown option") != std::string::npos);
  std::vector<std::string> rel{"runner", "--root", "tree"};
  std::vector<char*> rel_argv;
  for (auto& w : rel) rel_argv.push_back(w.data());
  CHECK_FALSE(helper::parse_one_shot_options(static_cast<int>(rel_argv.size()), rel_argv.data()));
}

TEST_CASE("the runner refuses to run from a binary a user could replace") {
  if (::geteuid() != 0) {
    HOSTCFG_SKIP("needs root to make root-owned directories");
    return;
  }
  std::string dir = hostcfg_test::make_scratch_dir("hostcfg-trust");
  write_file(dir + "/runner", "#!/bin/sh\n", 0755);
  CHECK(helper::check_trusted_binary(dir + "/runner"));
  ::chmod(dir.c_str(), 0777);  // a user could swap the binary
  auto refused = helper::check_trusted_binary(dir + "/runner");
  REQUIRE_FALSE(refused);
  CHECK(refused.error().is(errc::unsafe_path));
  CHECK(refused.error().path == dir);
  ::chmod(dir.c_str(), 0755);
  ::chown((dir + "/runner").c_str(), 65534, 65534);
  CHECK(helper::check_trusted_binary(dir + "/runner").error().path == dir + "/runner");
  ::symlink((dir + "/runner").c_str(), (dir + "/link").c_str());
  CHECK(helper::check_trusted_binary(dir + "/link").error().message().find("symlink") != std::string::npos);
  shell_output("rm -rf '" + dir + "'");
}

TEST_CASE("the runner takes the user from the elevation tool, never from HOME") {
  ::setenv("SUDO_UID", "65534", 1);
  ::setenv("HOME", "/root", 1);
  helper::one_shot_options options;
  options.uid = 0;  // ignored: the tool's word wins
  auto uid = helper::requesting_uid(options);
  REQUIRE(uid);
  CHECK(*uid == 65534);
  auto user = helper::lookup_user(*uid);
  REQUIRE(user);
  CHECK(user->home != "/root");
  ::setenv("SUDO_UID", "65534; rm -rf /", 1);
  CHECK_FALSE(helper::requesting_uid(options));
  ::unsetenv("SUDO_UID");
}

namespace {

// A throwaway user, a sudoers rule limited to the runner, askpass programs, a root-owned tree.
// Everything is removed in the destructor, also when a check fails.
struct sudo_fixture {
  std::string dir, root, runner, user = "hcfgt" + std::to_string(::getpid() % 100000), sudoers;
  uid_type uid = 0;
  gid_type gid = 0;
  bool ready = false;
  std::string why_not;

  sudo_fixture() {
    if (::geteuid() != 0) { why_not = "needs root"; return; }
    if (!exists("/usr/bin/sudo")) { why_not = "sudo is not installed (apt-get install sudo)"; return; }
    if (!exists("/usr/sbin/useradd")) { why_not = "useradd is not available"; return; }
    dir = hostcfg_test::make_scratch_dir("hostcfg-elevate");
    root = dir + "/root";
    shell_output("mkdir -p '" + dir + "/bin' '" + root + "/etc' '" + root + "/var/lib' '" + root + "/home/" + user +
                 "' '" + root + "/usr/local/bin' '" + root + "/Applications/App/bin'");
    write_file(root + "/etc/hosts", "127.0.0.1\tlocalhost\n", 0644);
    write_file(root + "/Applications/App/bin/docker", "#!/bin/sh\n", 0755);
    write_file(root + "/Applications/App/bin/kubectl", "#!/bin/sh\n", 0755);
    runner = dir + "/bin/runner";
    shell_output("cp /proc/" + std::to_string(::getpid()) + "/exe '" + runner + "' && chmod 0755 '" + runner + "'");
    write_file(dir + "/bin/askpass-ok", "#!/bin/sh\necho 'S3cret-pass'\n", 0755);
    write_file(dir + "/bin/askpass-cancel", "#!/bin/sh\nexit 1\n", 0755);
    write_file(dir + "/bin/askpass-slow", "#!/bin/sh\nsleep 20\necho 'S3cret-pass'\n", 0755);
    shell_output("useradd -M -d /home/" + user + " -s /bin/sh " + user + " 2>&1");
    shell_output("echo '" + user + ":S3cret-pass' | chpasswd 2>&1");
    auto user_db = helper::lookup_user(static_cast<uid_type>(std::atoi(shell_output("id -u " + user).c_str())));
    if (!user_db || user_db->uid == 0) { why_not = "could not create a test user"; return; }
    uid = user_db->uid;
    gid = user_db->gid;
    ::chown((root + "/home/" + user).c_str(), uid, gid);
    ::chmod((root + "/home/" + user).c_str(), 0755);
    sudoers = "/etc/sudoers.d/hostcfg-test-" + user;
    std::string rule = "Defaults:" + user + " timestamp_timeout=0, !lecture, passwd_tries=1\n" + user +
                       " ALL=(root) " + runner + " --one-shot --root " + root + "\n";
    write_file(sudoers + ".tmp", rule, 0440);
    if (shell_output("visudo -cf '" + sudoers + ".tmp' >/dev/null 2>&1 && echo ok") != "ok\n") {
      why_not = "visudo rejected the test rule";
      ::unlink((sudoers + ".tmp").c_str());
      return;
    }
    ::rename((sudoers + ".tmp").c_str(), sudoers.c_str());
    ready = true;
  }
  ~sudo_fixture() {
    // A helper the runner started (helper_starting_launchd) is not our child: stop it by pid,
    // after checking that the pid is still a copy of our runner.
    if (!dir.empty()) {
      std::ifstream pid_file(dir + "/helper.pid");
      long pid = 0;
      if (pid_file >> pid && pid > 1) {
        char exe[4096] = {};
        const std::string link = "/proc/" + std::to_string(pid) + "/exe";
        const ssize_t n = ::readlink(link.c_str(), exe, sizeof exe - 1);
        if (n > 0 && std::string(exe, static_cast<std::size_t>(n)) == runner) ::kill(static_cast<pid_t>(pid), SIGKILL);
      }
    }
    if (!sudoers.empty()) ::unlink(sudoers.c_str());
    if (uid != 0) shell_output("userdel " + user + " 2>/dev/null");
    if (!dir.empty()) shell_output("rm -rf '" + dir + "'");
  }

  elevation_command command(const std::string& askpass, int timeout_ms = 30000) const {
    elevation_command cmd;
    cmd.runner_path = runner;
    cmd.runner_args = {"--one-shot", "--root", root};
    cmd.askpass = dir + "/bin/" + askpass;
    cmd.timeout_ms = timeout_ms;
    return cmd;
  }
  user_identity identity() const {
    return user_identity{uid, gid, {gid}, user, "/home/" + user, "/bin/sh", std::nullopt, std::nullopt};
  }

  // Runs `body` in a child that dropped to the test user (its uid and its own group, no others);
  // returns what `body` returned, or "<child died: ...>" when the child could not drop or died.
  std::string as_user(const std::function<std::string()>& body) const {
    return hostcfg_test::run_as_user_capturing(uid, gid, body);
  }
};

// One converge as the test user through sudo; a one-line summary of what happened.
std::string converge_as_user(const sudo_fixture& f, const std::string& askpass, int timeout_ms = 30000) {
  return f.as_user([&] {
    PosixFs posix;
    RootedFs<PosixFs> fs(posix, f.root);
    CommandPrivilege priv(f.identity(), f.command(askpass, timeout_ms));
    context ctx(fs, priv, "com.example.elevate");
    ManagedFile system_file{"/etc/app.conf", "system\n", 0644};
    ManagedFile user_file{"/home/" + f.user + "/app.conf", "user\n", 0644};
    auto report = converge(ctx, system_file, user_file);
    if (!report) return "error " + report.error().message();
    std::string summary = "prompts=" + std::to_string(priv.prompts()) + " answer=" +
                          (report->prompt_answer ? answer_name(*report->prompt_answer) : "none") +
                          " ok=" + (report->ok() ? "1" : "0") + " out_of_sync=" +
                          std::to_string(report->out_of_sync.size());
    for (const auto& n : report->notes) summary += " note=" + n;
    return summary;
  });
}

// What `seed_as_user` does with the seed's steps.
enum class seed_action { converge, uninstall };

// The seed's links (with the ~/.docker/bin + PATH fallback) and hosts entry, converged or
// uninstalled as the user through sudo: one helper so that both directions use the very same
// steps (an uninstall of different steps would prove nothing). A one-line summary, then the
// report's notes, one "\nnote=" line each.
std::string seed_as_user(const sudo_fixture& f, const std::string& askpass,
                         seed_action action = seed_action::converge) {
  return f.as_user([&] {
    PosixFs posix;
    RootedFs<PosixFs> fs(posix, f.root);
    CommandPrivilege priv(f.identity(), f.command(askpass));
    context ctx(fs, priv, "com.example.elevate");
    std::string home = "/home/" + f.user;
    auto links = cli_links("/Applications/App/bin", "/usr/local/bin", home + "/.docker/bin",
                           ShellProfilePathEdit{home + "/.docker/bin"});
    HostsEntry hosts{"127.0.0.1", {"kubernetes.docker.internal"}};
    auto report = action == seed_action::uninstall ? uninstall(ctx, links, hosts) : converge(ctx, links, hosts);
    if (!report) return "error " + report.error().message();
    std::string summary = "prompts=" + std::to_string(priv.prompts()) + " answer=" +
                          (report->prompt_answer ? answer_name(*report->prompt_answer) : "none") +
                          " ok=" + (report->ok() ? "1" : "0");
    if (report->prompt) summary += " changes=" + std::to_string(report->prompt->changes.size());
    for (const auto& n : report->notes) summary += "\nnote=" + n;
    return summary;
  });
}

}  // namespace

TEST_CASE("the seed through sudo: one prompt; links and hosts entry as root, or the fallback as the user") {
  sudo_fixture f;
  if (!f.ready) {
    HOSTCFG_SKIP(f.why_not);
    return;
  }
  std::string granted = seed_as_user(f, "askpass-ok");
  INFO(granted);
  CHECK(granted.find("prompts=1 answer=granted ok=1 changes=3") == 0);
  struct stat st;
  REQUIRE(::lstat((f.root + "/usr/local/bin/docker").c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  CHECK(st.st_uid == 0);
  std::ifstream hosts(f.root + "/etc/hosts");
  std::string hosts_text((std::istreambuf_iterator<char>(hosts)), std::istreambuf_iterator<char>());
  CHECK(hosts_text.find("127.0.0.1\tkubernetes.docker.internal") != std::string::npos);
  REQUIRE(::stat((f.root + "/etc/hosts").c_str(), &st) == 0);
  CHECK(st.st_uid == 0);
  CHECK((st.st_mode & 07777) == 0644);
  CHECK_FALSE(exists(f.root + "/home/" + f.user + "/.docker/bin"));
  CHECK(seed_as_user(f, "askpass-ok").find("prompts=0") == 0);
}

TEST_CASE("uninstall as the user through sudo -A: one prompt; the runner removes the links and the hosts section") {
  sudo_fixture f;
  if (!f.ready) {
    HOSTCFG_SKIP(f.why_not);
    return;
  }
  REQUIRE(seed_as_user(f, "askpass-ok").find("prompts=1 answer=granted ok=1 changes=3") == 0);
  const std::string record_path = f.root + "/var/lib/hostcfg/com.example.elevate.record";
  REQUIRE(link_exists(f.root + "/usr/local/bin/docker"));
  REQUIRE(exists(record_path));

  // Cancelled: nothing privileged changes, and the report says what stays and what to do.
  std::string cancelled = seed_as_user(f, "askpass-cancel", seed_action::uninstall);
  INFO(cancelled);
  CHECK(cancelled.find("prompts=1 answer=cancelled ok=1 changes=3\n") == 0);
  CHECK(cancelled.find("\nnote=3 item(s) that need admin rights to remove are still in place (prompt cancelled): "
                       "/usr/local/bin/docker, /usr/local/bin/kubectl, /etc/hosts; run the uninstall again as an "
                       "administrator (e.g. with sudo) to remove them") != std::string::npos);
  struct stat st;
  REQUIRE(::lstat((f.root + "/usr/local/bin/docker").c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  CHECK(st.st_uid == 0);
  CHECK(shell_output("cat '" + f.root + "/etc/hosts'").find("kubernetes.docker.internal") != std::string::npos);
  CHECK(exists(record_path));

  // Granted: one sudo start; links gone, hosts back to its bytes, root-owned record removed by root.
  std::string granted = seed_as_user(f, "askpass-ok", seed_action::uninstall);
  INFO(granted);
  CHECK(granted == "prompts=1 answer=granted ok=1 changes=3");
  CHECK_FALSE(link_exists(f.root + "/usr/local/bin/docker"));
  CHECK_FALSE(link_exists(f.root + "/usr/local/bin/kubectl"));
  CHECK(shell_output("cat '" + f.root + "/etc/hosts'") == "127.0.0.1\tlocalhost\n");
  REQUIRE(::stat((f.root + "/etc/hosts").c_str(), &st) == 0);
  CHECK(st.st_uid == 0);
  CHECK((st.st_mode & 07777) == 0644);
  CHECK_FALSE(exists(record_path));
  CHECK(exists(f.root + "/usr/local/bin"));
  // Nothing is left: the next uninstall starts no sudo.
  CHECK(seed_as_user(f, "askpass-ok", seed_action::uninstall) == "prompts=0 answer=none ok=1");
}

TEST_CASE("the seed through sudo, cancelled: the fallback links and PATH block are the user's") {
  sudo_fixture f;
  if (!f.ready) {
    HOSTCFG_SKIP(f.why_not);
    return;
  }
  std::string cancelled = seed_as_user(f, "askpass-cancel");
  INFO(cancelled);
  CHECK(cancelled.find("prompts=1 answer=cancelled") == 0);
  std::string home = f.root + "/home/" + f.user;
  struct stat st;
  REQUIRE(::lstat((home + "/.docker/bin/docker").c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  CHECK(st.st_uid == f.uid);
  REQUIRE(::stat((home + "/.profile").c_str(), &st) == 0);
  CHECK(st.st_uid == f.uid);
  CHECK(shell_output("cat '" + home + "/.profile'").find(".docker/bin") != std::string::npos);
  CHECK_FALSE(exists(f.root + "/usr/local/bin/docker"));
  CHECK(shell_output("cat '" + f.root + "/etc/hosts'") == "127.0.0.1\tlocalhost\n");
  CHECK(seed_as_user(f, "askpass-ok").find("prompts=0") == 0);
}

TEST_CASE("converge as a user through sudo -A: one prompt, system part as root, user part as the user") {
  sudo_fixture f;
  if (!f.ready) {
    HOSTCFG_SKIP(f.why_not);
    return;
  }
  std::string summary = converge_as_user(f, "askpass-ok");
  INFO(summary);
  CHECK(summary.find("prompts=1 answer=granted ok=1 out_of_sync=0") == 0);
  struct stat st;
  REQUIRE(::stat((f.root + "/etc/app.conf").c_str(), &st) == 0);
  CHECK(st.st_uid == 0);
  CHECK((st.st_mode & 07777) == 0644);
  REQUIRE(::stat((f.root + "/home/" + f.user + "/app.conf").c_str(), &st) == 0);
  CHECK(st.st_uid == f.uid);
  REQUIRE(::stat((f.root + "/var/lib/hostcfg/com.example.elevate.record").c_str(), &st) == 0);
  CHECK(st.st_uid == 0);
  REQUIRE(::stat((f.root + "/home/" + f.user + "/.local/state/hostcfg/com.example.elevate.record").c_str(), &st) == 0);
  CHECK(st.st_uid == f.uid);
  // The second run: in sync, nothing started, no prompt.
  std::string again = converge_as_user(f, "askpass-ok");
  CHECK(again.find("prompts=0") == 0);
}

TEST_CASE("sudo askpass that gives up is 'cancelled'; one too slow is 'timed out'; nothing is written") {
  sudo_fixture f;
  if (!f.ready) {
    HOSTCFG_SKIP(f.why_not);
    return;
  }
  std::string cancelled = converge_as_user(f, "askpass-cancel");
  INFO(cancelled);
  CHECK(cancelled.find("prompts=1 answer=cancelled") == 0);
  CHECK_FALSE(exists(f.root + "/etc/app.conf"));
  // Cancelled is recorded: the next run does not start sudo at all.
  std::string second = converge_as_user(f, "askpass-ok");
  INFO(second);
  CHECK(second.find("prompts=0 answer=none ok=1") == 0);
  CHECK(shell_output("cat '" + f.root + "/home/" + f.user + "/.local/state/hostcfg/com.example.elevate.record'")
            .find("field answer cancelled") != std::string::npos);
  shell_output("rm -f '" + f.root + "/home/" + f.user + "/.local/state/hostcfg/com.example.elevate.record'");
  std::string slow = converge_as_user(f, "askpass-slow", 1500);
  INFO(slow);
  CHECK(slow.find("prompts=1 answer=timed_out") == 0);
  CHECK_FALSE(exists(f.root + "/etc/app.conf"));
}

TEST_CASE("a forged request through sudo is refused by the runner: unknown kinds, user paths") {
  sudo_fixture f;
  if (!f.ready) {
    HOSTCFG_SKIP(f.why_not);
    return;
  }
  std::string out = f.as_user([&] {
    CommandPrivilege priv(f.identity(), f.command("askpass-ok"));
    record payload{"com.example.elevate", {}};
    payload.put(record_item{"cmd:x", "shell_command", {{"command", "touch /tmp/pwned"}}});
    payload.put(ManagedFile{"/home/" + f.user + "/x", "x", 0644}.desired_state());
    auto outcome = priv.run_elevated(elevation_request{"com.example.elevate", "test", {}}, payload);
    if (!outcome) return "error " + outcome.error().message();
    std::string text;
    for (const auto& [step, events] : outcome->events)
      for (const auto& e : events) text += step + ":" + event_kind_name(e.kind) + ":" + e.message + "\n";
    return text;
  });
  INFO(out);
  CHECK(out.find("cmd:x:failed:") != std::string::npos);
  CHECK(out.find("unknown primitive kind") != std::string::npos);
  CHECK(out.find("without admin rights; refused as root") != std::string::npos);
  CHECK_FALSE(exists(f.root + "/home/" + f.user + "/x"));
}

TEST_CASE("port-helper --one-shot: the real program applies hosts, a protected file and a daemon plist") {
  std::string program = std::string(HOSTCFG_BINARY_DIR) + "/examples/port-helper";
  if (::geteuid() != 0 || !exists(program)) {
    HOSTCFG_SKIP("needs root and the built port-helper example");
    return;
  }
  std::string dir = hostcfg_test::make_scratch_dir("hostcfg-oneshot");
  std::string root = dir + "/root";
  shell_output("mkdir -p '" + dir + "/bin' '" + root + "/etc' '" + root + "/Library/LaunchDaemons' '" + root +
               "/Library/PrivilegedHelperTools'");
  shell_output("cp '" + program + "' '" + dir + "/bin/port-helper'");
  write_file(root + "/etc/hosts", "127.0.0.1\tlocalhost\n", 0644);
  write_file(root + "/Library/PrivilegedHelperTools/com.example.helper", "#!/bin/sh\n", 0755);
  record payload{"com.example.oneshot", {}};
  auto add = [&](const auto& p) {
    record_item item = p.desired_state();
    item.id = p.id();
    item.primitive = p.kind();
    payload.put(item);
  };
  add(HostsEntry{"127.0.0.1", {"kubernetes.docker.internal"}});
  add(ProtectedFile{"/Library/Application Support/com.example/policy.json", "{\"allow\": []}\n"});
  launchd_job job;
  job.label = "com.example.helper";
  job.program_arguments = {"/Library/PrivilegedHelperTools/com.example.helper"};
  job.run_at_load = true;
  add(LaunchdPlist(job));
  write_file(dir + "/payload", serialize_record(payload), 0644);
  std::string reply = shell_output("cd / && SUDO_UID=65534 HOME=/root '" + dir +
                                   "/bin/port-helper' --one-shot --root '" + root + "' < '" + dir + "/payload'");
  auto parsed = parse_record(reply);
  REQUIRE(parsed);
  auto outcome = decode_outcome(*parsed);
  REQUIRE(outcome);
  CHECK(outcome->prompt_answer == answer::granted);
  for (const auto& entry : outcome->events)
    for (const auto& e : entry.second) {
      const std::string step = entry.first;  // named: clang 14 cannot capture a structured binding
      INFO(step << ": " << e.message);
      // Under --root a job is written, not loaded: "skipped: no launchd here" is not a failure.
      CHECK((e.kind == event_kind::changed ||
             (e.kind == event_kind::skipped && e.message.find("no launchd here") != std::string::npos)));
    }
  CHECK(outcome->events.size() == 3);
  std::ifstream hosts(root + "/etc/hosts");
  std::string hosts_text((std::istreambuf_iterator<char>(hosts)), std::istreambuf_iterator<char>());
  CHECK(hosts_text.find("127.0.0.1\tlocalhost\n") == 0);
  CHECK(hosts_text.find("kubernetes.docker.internal") != std::string::npos);
  struct stat st;
  REQUIRE(::stat((root + "/Library/Application Support/com.example/policy.json").c_str(), &st) == 0);
  CHECK(st.st_uid == 0);
  CHECK((st.st_mode & 07777) == 0644);
  REQUIRE(::stat((root + "/Library/LaunchDaemons/com.example.helper.plist").c_str(), &st) == 0);
  CHECK(st.st_uid == 0);
  CHECK((st.st_mode & 07777) == 0644);
  // The runner binary in a directory others may write is refused before it reads anything.
  ::chmod((dir + "/bin").c_str(), 0777);
  std::string refused = shell_output("SUDO_UID=65534 '" + dir + "/bin/port-helper' --one-shot --root '" + root +
                                     "' < '" + dir + "/payload' 2>&1");
  CHECK(refused.find("could replace the elevated runner") != std::string::npos);
  shell_output("rm -rf '" + dir + "'");
}

namespace {

// A port below 1024 free on 127.0.0.1 (checked by binding it as root), or 0.
std::uint16_t free_low_port(std::uint16_t from) {
  for (std::uint16_t p = from; p > 600; --p)
    if (helper::detail::bind_socket(*helper::make_bind_request(helper::transport::tcp, "127.0.0.1", p), true, true))
      return p;
  return 0;
}

// One converge of a PrivilegedPortBind as the test user through sudo; a summary, and whether the
// socket it got accepts a connection.
std::string port_as_user(const sudo_fixture& f, const std::string& askpass, std::uint16_t port) {
  return f.as_user([&] {
    PosixFs posix;
    RootedFs<PosixFs> fs(posix, f.root);
    CommandPrivilege priv(f.identity(), f.command(askpass));
    context ctx(fs, priv, "com.example.elevate");
    PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", port, f.dir + "/h.sock"};
    web.helper_only = true;  // a machine where anyone may bind low ports still takes the helper path
    web.helper_label = test_helper_label;
    auto report = converge(ctx, web);
    if (!report) return "error " + report.error().message();
    std::string out = "euid=" + std::to_string(::geteuid()) + " prompts=" + std::to_string(priv.prompts()) +
                      " answer=" + (report->prompt_answer ? answer_name(*report->prompt_answer) : "none") +
                      " ok=" + (report->ok() ? "1" : "0") + "\n";
    for (const auto& e : report->steps.at(0).applied.events)
      out += std::string(event_kind_name(e.kind)) + (e.elevated ? " (elevated): " : ": ") + e.message + "\n";
    if (!*web.socket) return out + "no socket\n";
    // The socket is listening on the port: connect to it and accept.
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unique_fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const bool connected = ::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    unique_fd accepted(connected ? ::accept4(web.socket->get(), nullptr, nullptr, SOCK_CLOEXEC) : -1);
    out += std::string("accepts a connection: ") + (accepted ? "yes" : "no") + "\n";
    // A second run in the same process holds the socket: nothing planned.
    auto again = converge(ctx, web);
    out += std::string("second run planned nothing: ") + (again && again->steps.at(0).planned.empty() ? "yes" : "no") +
           ", prompts=" + std::to_string(priv.prompts()) + "\n";
    // A fresh step (another port, as after an app restart) finds the helper running: it binds
    // through it with no prompt and no second start.
    PrivilegedPortBind other{helper::transport::tcp, "127.0.0.1", static_cast<std::uint16_t>(port - 1), f.dir + "/h.sock"};
    other.helper_only = true;
    other.helper_label = test_helper_label;
    auto fresh = converge(ctx, other);
    out += std::string("fresh step: ") + (fresh && fresh->ok() && *other.socket ? "bound" : "not bound") +
           ", prompts=" + std::to_string(priv.prompts()) + "\n";
    return out;
  });
}

}  // namespace

TEST_CASE("a privileged port through sudo: the runner starts the helper as root, the user binds through it") {
  sudo_fixture f;
  if (!f.ready) {
    HOSTCFG_SKIP(f.why_not);
    return;
  }
  const std::uint16_t port = free_low_port(714);
  REQUIRE(port != 0);
  REQUIRE(free_low_port(static_cast<std::uint16_t>(port - 1)) == port - 1);  // the fresh step's port
  const std::string socket = f.dir + "/h.sock";
  const std::string endpoint = "TCP 127.0.0.1:" + std::to_string(port);
  // Cancelled at the password prompt: nothing started, the seed's message with the reason.
  const std::string cancelled = port_as_user(f, "askpass-cancel", port);
  INFO(cancelled);
  CHECK(cancelled == "euid=" + std::to_string(f.uid) + " prompts=1 answer=cancelled ok=1\n" +
                         "skipped: Ports are not available: exposing port " + endpoint +
                         " -> 0.0.0.0:0: failed to connect to " + socket +
                         ": is the privileged helper running?: the prompt to start it was cancelled: dial unix " +
                         socket + ": connect: No such file or directory [retry and allow the prompt, or use a port "
                         ">= 1024 such as 8080]\nno socket\n");
  CHECK_FALSE(exists(socket));
  // Cancelled is a recorded decision: asked again only on request. Forget it, then allow.
  shell_output("rm -f '" + f.root + "/home/" + f.user + "/.local/state/hostcfg/com.example.elevate.record'");
  const std::string granted = port_as_user(f, "askpass-ok", port);
  INFO(granted);
  CHECK(granted == "euid=" + std::to_string(f.uid) + " prompts=1 answer=granted ok=1\n" +
                       "changed (elevated): started the privileged helper at " + socket +
                       " (launchctl kickstart system/com.example.porthelper)\n"
                       "changed: bound through the privileged helper at " + socket + "\n"
                       "accepts a connection: yes\n"
                       "second run planned nothing: yes, prompts=1\n"
                       "fresh step: bound, prompts=1\n");
  // The helper runs as root and serves only the test user: its socket is theirs, mode 0600.
  struct stat st;
  REQUIRE(::lstat(socket.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK(st.st_uid == f.uid);
  CHECK((st.st_mode & 07777) == 0600);
}
