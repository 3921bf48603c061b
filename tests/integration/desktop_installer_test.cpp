// End-to-end: the built `desktop-installer` program as a real process over real, root-owned
// temp trees under /var/lib/hostcfg-tests (never the machine's /etc/hosts or /usr/local/bin). Each case builds
// a macOS-like tree, runs the program once or a few times, and asserts on the bytes, modes,
// owners, link targets, inodes and times of every file, the exit code and the messages.
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "support/real_fs.hpp"
#include "support/test_support.hpp"

namespace {

const std::string program = HOSTCFG_BINARY_DIR "/examples/desktop-installer";
const std::string bin_dir = "/Applications/Docker.app/Contents/Resources/bin";

bool have_program() { return ::access(program.c_str(), X_OK) == 0; }

std::string read_all(int fd) {
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

struct run_result {
  int code = -1;
  std::string out;
  std::string err;
};

struct run_as {
  uid_t uid = 0;
  gid_t gid = 0;
  bool drop = false;
};

// Runs argv (argv[0] is the program path) with a minimal environment, in its own session (no
// controlling terminal, so nothing can prompt), optionally as another uid/gid.
run_result run(const std::vector<std::string>& argv, run_as who = {}, const std::vector<std::string>& extra_env = {}) {
  run_result r;
  int out_pipe[2], err_pipe[2];
  REQUIRE(::pipe(out_pipe) == 0);
  REQUIRE(::pipe(err_pipe) == 0);
  // Files are read after the child ends; a big output could fill a pipe: use temp files.
  int out_fd = -1, err_fd = -1;
  const std::string out_name = hostcfg_test::make_scratch_file("hostcfg-di-out", out_fd);
  const std::string err_name = hostcfg_test::make_scratch_file("hostcfg-di-err", err_fd);
  ::close(out_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[0]);
  ::close(err_pipe[1]);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::setsid();
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    if (who.drop) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(who.gid) != 0 || ::setuid(who.uid) != 0) ::_exit(126);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    char path_env[] = "PATH=/usr/bin:/bin";
    char asan_env[] = "ASAN_OPTIONS=detect_leaks=0";  // LeakSanitizer cannot run under strace
    std::vector<char*> env{path_env, asan_env};
    for (const auto& e : extra_env) env.push_back(const_cast<char*>(e.c_str()));
    env.push_back(nullptr);
    ::execve(args[0], args.data(), env.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  ::lseek(out_fd, 0, SEEK_SET);
  ::lseek(err_fd, 0, SEEK_SET);
  r.out = read_all(out_fd);
  r.err = read_all(err_fd);
  ::close(out_fd);
  ::close(err_fd);
  ::unlink(out_name.c_str());
  ::unlink(err_name.c_str());
  return r;
}

void write_file(const std::string& path, const std::string& bytes, mode_t mode, uid_t uid = 0, gid_t gid = 0) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  ::close(fd);
  REQUIRE(::chown(path.c_str(), uid, gid) == 0);
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

void make_dir(const std::string& path, mode_t mode, uid_t uid = 0, gid_t gid = 0) {
  REQUIRE((::mkdir(path.c_str(), mode) == 0 || errno == EEXIST));
  REQUIRE(::chown(path.c_str(), uid, gid) == 0);
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

std::optional<std::string> file_bytes(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return std::nullopt;
  std::string bytes = read_all(fd);
  ::close(fd);
  return bytes;
}

std::optional<std::string> link_target(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<std::size_t>(n));
}

const char* const stock_hosts =
    "##\n# Host Database\n#\n# localhost is used to configure the loopback interface\n"
    "# when the system is booting.  Do not change this entry.\n##\n127.0.0.1\tlocalhost\n"
    "255.255.255.255\tbroadcasthost\n::1             localhost\n";

// A root-owned 0755 temp dir under /var/lib/hostcfg-tests holding a macOS-like tree; removed at the end.
struct tree {
  std::string root;
  std::string home_rel;
  uid_t uid;
  gid_t gid;

  explicit tree(const std::string& user = "alice", uid_t u = 501, gid_t g = 20) : uid(u), gid(g) {
    root = hostcfg_test::make_scratch_dir("hostcfg-di");
    home_rel = "/Users/" + user;
    for (const char* d : {"/Applications", "/Applications/Docker.app", "/Applications/Docker.app/Contents",
                          "/Applications/Docker.app/Contents/Resources", bin_dir.c_str(), "/usr", "/usr/local",
                          "/usr/local/bin", "/etc", "/var", "/var/run", "/var/lib", "/bin", "/Library",
                          "/Library/LaunchDaemons", "/Library/PrivilegedHelperTools", "/Library/Application Support",
                          "/Users"})
      make_dir(at(d), 0755);
    for (const char* c : {"docker", "docker-compose", "kubectl"})
      write_file(at(bin_dir + "/" + c), std::string("#!/bin/sh\n# ") + c + "\n", 0755);
    write_file(at("/etc/hosts"), stock_hosts, 0644);
    write_file(at("/bin/ln"), "ln\n", 0755);
    write_file(at("/Library/PrivilegedHelperTools/com.docker.vmnetd"), "vmnetd\n", 0544);
    make_dir(at(home_rel), 0750, uid, gid);
    write_file(at(home_rel + "/.zshrc"), "export EDITOR=vim\n", 0644, uid, gid);
  }
  ~tree() { remove_all(root); }
  tree(const tree&) = delete;
  tree& operator=(const tree&) = delete;

  std::string at(const std::string& rel) const { return root + rel; }
  std::string home() const { return at(home_rel); }

  // The program's arguments for this tree and user, then `extra`.
  std::vector<std::string> args(std::vector<std::string> extra) const {
    std::vector<std::string> a{program, "--root", root, "--user", home_rel.substr(7), "--uid", std::to_string(uid),
                               "--gid", std::to_string(gid), "--home", home_rel, "--shell", "/bin/zsh"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  static void remove_all(const std::string& path) {
    ::nftw(
        path.c_str(),
        [](const char* p, const struct stat*, int type, struct FTW*) {
          if (type == FTW_DP) ::rmdir(p);
          else ::unlink(p);
          return 0;
        },
        16, FTW_DEPTH | FTW_PHYS);
  }
};

// One object of a tree, as compared by the tests.
struct entry {
  mode_t mode = 0;  // type and permission bits
  uid_t uid = 0;
  gid_t gid = 0;
  std::string data;  // bytes of a file, target of a link
  ino_t ino = 0;
  long long mtime_ns = 0;
  long long ctime_ns = 0;
};

std::map<std::string, entry>* scan_into = nullptr;
std::size_t scan_prefix = 0;

// Every object under `root` (no symlink followed), keyed by its path inside the root.
std::map<std::string, entry> scan(const std::string& root) {
  std::map<std::string, entry> out;
  scan_into = &out;
  scan_prefix = root.size();
  ::nftw(
      root.c_str(),
      [](const char* p, const struct stat* st, int, struct FTW*) {
        entry e;
        e.mode = st->st_mode;
        e.uid = st->st_uid;
        e.gid = st->st_gid;
        e.ino = st->st_ino;
        e.mtime_ns = static_cast<long long>(st->st_mtim.tv_sec) * 1000000000LL + st->st_mtim.tv_nsec;
        e.ctime_ns = static_cast<long long>(st->st_ctim.tv_sec) * 1000000000LL + st->st_ctim.tv_nsec;
        if (S_ISREG(st->st_mode)) e.data = file_bytes(p).value_or("<unreadable>");
        if (S_ISLNK(st->st_mode)) e.data = link_target(p).value_or("<unreadable>");
        std::string rel = std::string(p).substr(scan_prefix);
        (*scan_into)[rel.empty() ? "/" : rel] = e;
        return 0;
      },
      16, FTW_PHYS);
  return out;
}

// Readable differences in content, mode, owner and link target (times and inodes ignored).
std::vector<std::string> content_diff(const std::map<std::string, entry>& a, const std::map<std::string, entry>& b) {
  std::vector<std::string> out;
  for (const auto& [path, e] : a) {
    auto it = b.find(path);
    if (it == b.end()) {
      out.push_back("removed " + path);
      continue;
    }
    const entry& f = it->second;
    if (e.mode != f.mode) out.push_back("mode " + path);
    if (e.uid != f.uid || e.gid != f.gid) out.push_back("owner " + path);
    if (e.data != f.data) out.push_back("content " + path);
  }
  for (const auto& [path, e] : b)
    if (!a.count(path)) out.push_back("added " + path);
  return out;
}

// Also inode, mtime and ctime: nothing was touched at all.
std::vector<std::string> full_diff(const std::map<std::string, entry>& a, const std::map<std::string, entry>& b) {
  std::vector<std::string> out = content_diff(a, b);
  for (const auto& [path, e] : a) {
    auto it = b.find(path);
    if (it == b.end()) continue;
    if (e.ino != it->second.ino) out.push_back("inode " + path);
    if (e.mtime_ns != it->second.mtime_ns) out.push_back("mtime " + path);
    if (e.ctime_ns != it->second.ctime_ns) out.push_back("ctime " + path);
  }
  return out;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

bool has(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

std::vector<std::string> temp_files(const std::map<std::string, entry>& t) {
  std::vector<std::string> out;
  for (const auto& [path, e] : t)
    if (has(path, ".hostcfg-")) out.push_back(path);
  return out;
}

bool prerequisites() {
  if (!have_program()) {
    HOSTCFG_SKIP("desktop-installer not built: " + program);
    return false;
  }
  if (::geteuid() != 0) {
    HOSTCFG_SKIP("needs root: the trees are root-owned like a Mac's");
    return false;
  }
  return true;
}

const char* const kube_line = "127.0.0.1\tkubernetes.docker.internal\n";

using hostcfg_test::shell_output;

// A throwaway user with a password, askpass programs, a copy of the program in a root-owned
// directory and a sudoers rule allowing exactly its one-shot runner for one tree: what a desktop
// app's user has on a real machine. Removed in the destructor, also when a check fails.
struct sudo_user {
  std::string name = "hcfgdi" + std::to_string(::getpid() % 100000);
  std::string dir, program_copy, sudoers, why_not;
  uid_t uid = 0;
  gid_t gid = 0;
  bool ready = false;

  sudo_user() {
    if (::access("/usr/bin/sudo", X_OK) != 0) { why_not = "sudo is not installed (apt-get install sudo)"; return; }
    if (::access("/usr/sbin/useradd", X_OK) != 0) { why_not = "useradd is not available"; return; }
    dir = hostcfg_test::make_scratch_dir("hostcfg-di-sudo");
    make_dir(dir + "/bin", 0755);
    program_copy = dir + "/bin/desktop-installer";
    shell_output("cp '" + program + "' '" + program_copy + "' && chmod 0755 '" + program_copy + "'");
    write_file(dir + "/bin/askpass-ok", "#!/bin/sh\necho 'S3cret-pass'\n", 0755);
    write_file(dir + "/bin/askpass-cancel", "#!/bin/sh\nexit 1\n", 0755);
    shell_output("useradd -M -d /Users/" + name + " -s /bin/sh " + name + " 2>&1");
    shell_output("echo '" + name + ":S3cret-pass' | chpasswd 2>&1");
    std::string id = shell_output("id -u " + name);
    uid = static_cast<uid_t>(std::atoi(id.c_str()));
    gid = static_cast<gid_t>(std::atoi(shell_output("id -g " + name).c_str()));
    if (uid == 0) { why_not = "could not create a test user"; return; }
    ready = true;
  }
  ~sudo_user() {
    if (!sudoers.empty()) ::unlink(sudoers.c_str());
    if (uid != 0) shell_output("userdel " + name + " 2>/dev/null");
    if (!dir.empty()) tree::remove_all(dir);
  }
  sudo_user(const sudo_user&) = delete;
  sudo_user& operator=(const sudo_user&) = delete;

  // Lets the user run exactly the program's runner for `root` through sudo, with a password.
  bool allow_runner(const std::string& root) {
    sudoers = "/etc/sudoers.d/hostcfg-di-" + name;
    std::string rule = "Defaults:" + name + " timestamp_timeout=0, !lecture, passwd_tries=1\n" + name +
                       " ALL=(root) " + program_copy + " --one-shot --uid " + std::to_string(uid) + " --root " + root +
                       "\n";
    write_file(sudoers + ".tmp", rule, 0440);
    if (shell_output("visudo -cf '" + sudoers + ".tmp' >/dev/null 2>&1 && echo ok") != "ok\n") {
      ::unlink((sudoers + ".tmp").c_str());
      sudoers.clear();
      return false;
    }
    return ::rename((sudoers + ".tmp").c_str(), sudoers.c_str()) == 0;
  }
  // The program's arguments (the copy, so the runner sudo starts is the one the rule names).
  std::vector<std::string> args(const tree& t, std::vector<std::string> extra) const {
    auto a = t.args(std::move(extra));
    a[0] = program_copy;
    return a;
  }
  std::vector<std::string> askpass(const std::string& which) const {
    return {"SUDO_ASKPASS=" + dir + "/bin/askpass-" + which};
  }
  run_as as() const { return run_as{uid, gid, true}; }
};

// An older helper of the same label as the one the program installs (no Sockets key): what a Mac
// that ran an earlier Docker has. The install replaces it; the uninstall must give these bytes back.
void write_older_vmnetd_plist(const tree& t) {
  write_file(t.at("/Library/LaunchDaemons/com.docker.vmnetd.plist"),
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\">\n<dict>\n"
             "\t<key>Label</key>\n\t<string>com.docker.vmnetd</string>\n\t<key>Program</key>\n"
             "\t<string>/Library/PrivilegedHelperTools/com.docker.vmnetd</string>\n</dict>\n</plist>\n",
             0644);
}

// The command a cancelled uninstall's stderr tells an administrator to run (the rest of its
// "next: ..." line). The line is REQUIREd: without it there is no command to check or run.
std::string admin_command_in(const std::string& err) {
  const std::string marker = "next: to remove what stays, run as an administrator: ";
  const auto at = err.find(marker);
  REQUIRE(at != std::string::npos);
  const std::string rest = err.substr(at + marker.size());
  return rest.substr(0, rest.find('\n'));
}

}  // namespace

TEST_CASE("first run makes every change; the second changes nothing, asks nothing, makes no mutating syscall") {
  if (!prerequisites()) return;
  tree t;
  auto first = run(t.args({"--privilege", "grant"}));
  INFO(first.err);
  CHECK(first.code == 0);
  for (const char* c : {"docker", "docker-compose", "kubectl"})
    CHECK(link_target(t.at(std::string("/usr/local/bin/") + c)) == bin_dir + "/" + c);
  CHECK(link_target(t.at("/var/run/docker.sock")) == std::optional<std::string>("/Users/alice/.docker/run/docker.sock"));
  auto hosts = file_bytes(t.at("/etc/hosts"));
  REQUIRE(hosts);
  CHECK(hosts->compare(0, std::strlen(stock_hosts), stock_hosts) == 0);
  CHECK(has(*hosts, kube_line));
  CHECK(hosts->size() > std::strlen(stock_hosts));
  for (const char* plist : {"/Library/LaunchDaemons/com.docker.vmnetd.plist", "/Library/LaunchDaemons/com.docker.socket.plist"}) {
    struct stat st;
    REQUIRE(::lstat(t.at(plist).c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0644);
    CHECK(st.st_uid == 0);
  }
  CHECK(has(file_bytes(t.at("/Library/LaunchDaemons/com.docker.socket.plist")).value_or(""),
            "<string>/Users/alice/.docker/run/docker.sock</string>"));
  auto policy = file_bytes(t.at("/Library/Application Support/com.docker.docker/registry-access-management.json"));
  REQUIRE(policy);
  CHECK(has(*policy, "\"allowedRegistries\""));
  // The user's part: nothing in the home but the user's own record (no fallback, no PATH edit).
  CHECK(file_bytes(t.at("/Users/alice/.zshrc")) == std::optional<std::string>("export EDITOR=vim\n"));
  CHECK_FALSE(link_target(t.at("/Users/alice/.docker/bin/docker")));

  auto before = scan(t.root);
  auto second = run(t.args({"--privilege", "grant", "--json"}));
  CHECK(second.code == 0);
  CHECK(has(second.out, "\"prompts_shown\": 0"));
  CHECK(has(second.out, "\"records_written\": {\n    \"system\": false,\n    \"user\": false"));
  auto after = scan(t.root);
  CHECK(joined(full_diff(before, after)) == "");

  if (::access("/usr/bin/strace", X_OK) != 0) {
    HOSTCFG_SKIP("strace not installed: the no-mutating-syscall run is not checked");
    return;
  }
  std::string trace = t.root + ".strace";
  std::vector<std::string> traced{"/usr/bin/strace", "-f", "-qq", "-o", trace, "-e",
                                  "trace=unlink,unlinkat,rename,renameat,renameat2,mkdir,mkdirat,rmdir,symlink,"
                                  "symlinkat,link,linkat,chmod,fchmod,fchmodat,chown,fchown,fchownat,lchown,truncate,"
                                  "ftruncate,utimensat,setxattr,fsetxattr,lsetxattr,removexattr,fremovexattr,openat"};
  auto a = t.args({"--privilege", "grant"});
  traced.insert(traced.end(), a.begin(), a.end());
  auto third = run(traced);
  CHECK(third.code == 0);
  auto log = file_bytes(trace).value_or("");
  ::unlink(trace.c_str());
  REQUIRE_FALSE(log.empty());
  std::vector<std::string> mutating;
  std::size_t pos = 0;
  while (pos < log.size()) {
    std::size_t nl = log.find('\n', pos);
    std::string line = log.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? log.size() : nl + 1;
    bool open_call = has(line, "openat(");
    bool writes = has(line, "O_WRONLY") || has(line, "O_RDWR") || has(line, "O_CREAT") || has(line, "O_TRUNC");
    if (open_call && !writes) continue;
    if (has(line, "+++ exited") || has(line, "--- SIG")) continue;
    mutating.push_back(line);
  }
  CHECK(joined(mutating) == "");
  CHECK(joined(full_diff(before, scan(t.root))) == "");
}

TEST_CASE("declined: fallback links in ~/.docker/bin and the PATH block, recorded; the next run asks nothing even with grant") {
  if (!prerequisites()) return;
  tree t;
  auto original = scan(t.root);
  auto declined = run(t.args({"--privilege", "decline"}));
  CHECK(declined.code == 3);
  CHECK(has(declined.err, "fallback in use for links:/usr/local/bin"));
  CHECK(has(declined.err, "declined"));
  for (const char* c : {"docker", "docker-compose", "kubectl"}) {
    std::string link = t.home() + "/.docker/bin/" + c;
    CHECK(link_target(link) == bin_dir + "/" + c);
    struct stat st;
    REQUIRE(::lstat(link.c_str(), &st) == 0);
    CHECK(st.st_uid == 501);  // made as the user, not as root
    CHECK_FALSE(link_target(t.at(std::string("/usr/local/bin/") + c)));
  }
  auto zshrc = file_bytes(t.home() + "/.zshrc");
  REQUIRE(zshrc);
  CHECK(zshrc->compare(0, 18, "export EDITOR=vim\n") == 0);
  CHECK(has(*zshrc, "/.docker/bin"));
  CHECK(file_bytes(t.at("/etc/hosts")) == std::optional<std::string>(stock_hosts));
  CHECK_FALSE(link_target(t.at("/var/run/docker.sock")));
  auto record = file_bytes(t.home() + "/.local/state/hostcfg/com.docker.desktop.record");
  REQUIRE(record);
  CHECK(has(*record, "primitive decision"));
  CHECK(has(*record, "field answer declined"));
  // Nothing privileged was made, not even the root-owned record.
  CHECK_FALSE(file_bytes(t.at("/var/lib/hostcfg/com.docker.desktop.record")));

  auto before = scan(t.root);
  auto again = run(t.args({"--privilege", "grant", "--json"}));
  CHECK(again.code == 3);  // the same code while the fallback is in use
  CHECK(has(again.out, "\"prompts_shown\": 0"));
  CHECK(joined(full_diff(before, scan(t.root))) == "");
  (void)original;
}

TEST_CASE("--reprompt --privilege grant moves the links to /usr/local/bin, adds the hosts entry, leaves the user's own file") {
  if (!prerequisites()) return;
  tree t;
  REQUIRE(run(t.args({"--privilege", "decline"})).code == 3);
  write_file(t.at("/usr/local/bin/kubectl"), "#!/bin/sh\n# my own kubectl\n", 0755);
  auto moved = run(t.args({"--privilege", "grant", "--reprompt"}));
  INFO(moved.err);
  // kubectl stays a conflict: its fallback link and the PATH block stay, so the user must act.
  CHECK(moved.code == 3);
  CHECK(link_target(t.at("/usr/local/bin/docker")) == bin_dir + "/docker");
  CHECK(link_target(t.at("/usr/local/bin/docker-compose")) == bin_dir + "/docker-compose");
  CHECK(file_bytes(t.at("/usr/local/bin/kubectl")) == std::optional<std::string>("#!/bin/sh\n# my own kubectl\n"));
  CHECK_FALSE(link_target(t.home() + "/.docker/bin/docker"));
  CHECK(link_target(t.home() + "/.docker/bin/kubectl") == bin_dir + "/kubectl");
  CHECK(has(file_bytes(t.at("/etc/hosts")).value_or(""), kube_line));
  CHECK(link_target(t.at("/var/run/docker.sock")) == std::optional<std::string>("/Users/alice/.docker/run/docker.sock"));
  CHECK(has(moved.err, "/usr/local/bin/kubectl"));
}

TEST_CASE("--uninstall gives back the tree as before install: every file's bytes, mode, owner and link target") {
  if (!prerequisites()) return;
  tree t;
  // An older helper of the same label: replaced by the install, given back by the uninstall.
  write_older_vmnetd_plist(t);
  auto original = scan(t.root);
  REQUIRE(run(t.args({"--privilege", "decline"})).code == 3);
  REQUIRE(run(t.args({"--privilege", "grant", "--reprompt"})).code == 0);
  CHECK(has(file_bytes(t.at("/Library/LaunchDaemons/com.docker.vmnetd.plist")).value_or(""), "Sockets"));
  auto removed = run(t.args({"--uninstall", "--privilege", "grant"}));
  INFO(removed.err);
  CHECK(removed.code == 0);
  CHECK(joined(content_diff(original, scan(t.root))) == "");
}

TEST_CASE("--uninstall as the user goes through sudo: one prompt; cancelled, it names what stays and the admin command") {
  if (!prerequisites()) return;
  sudo_user u;
  if (!u.ready) {
    HOSTCFG_SKIP(u.why_not);
    return;
  }
  tree t(u.name, u.uid, u.gid);
  if (!u.allow_runner(t.root)) {
    HOSTCFG_SKIP("visudo rejected the test rule");
    return;
  }
  write_older_vmnetd_plist(t);
  auto original = scan(t.root);
  auto install = [&] {
    auto installed = run(u.args(t, {"--privilege", "ask"}), u.as(), u.askpass("ok"));
    INFO(installed.err);
    REQUIRE(installed.code == 0);
    REQUIRE(link_target(t.at("/usr/local/bin/docker")) == bin_dir + "/docker");
    REQUIRE(has(file_bytes(t.at("/etc/hosts")).value_or(""), kube_line));
  };
  install();
  auto installed = scan(t.root);

  // Cancelled: nothing outside the home changes; exit 3 names every item left and the command.
  auto cancelled = run(u.args(t, {"--uninstall", "--json"}), u.as(), u.askpass("cancel"));
  INFO(cancelled.err);
  CHECK(cancelled.code == 3);
  CHECK(has(cancelled.out, "\"prompts_shown\": 1"));
  CHECK(has(cancelled.out, "\"answer\": \"cancelled\""));
  for (const auto& line : content_diff(installed, scan(t.root))) CHECK_MESSAGE(has(line, t.home_rel), line);
  CHECK(link_target(t.at("/usr/local/bin/docker")) == bin_dir + "/docker");
  CHECK(has(file_bytes(t.at("/etc/hosts")).value_or(""), kube_line));
  CHECK(has(cancelled.err, "item(s) that need admin rights to remove are still in place (prompt cancelled): "
                           "/usr/local/bin/docker, /usr/local/bin/docker-compose, /usr/local/bin/kubectl, "));
  for (const char* p : {"/usr/local/bin/kubectl", "/var/run/docker.sock", "/etc/hosts",
                        "/Library/LaunchDaemons/com.docker.vmnetd.plist", "/Library/LaunchDaemons/com.docker.socket.plist",
                        "/Library/Application Support/com.docker.docker/registry-access-management.json"})
    CHECK_MESSAGE(has(cancelled.err, p), p);
  const std::string admin_command = admin_command_in(cancelled.err);
  CHECK(admin_command == "sudo " + u.program_copy + " --root " + t.root + " --user " + u.name + " --uid " +
                             std::to_string(u.uid) + " --gid " + std::to_string(u.gid) + " --home " + t.home_rel +
                             " --shell /bin/zsh --uninstall --json");

  // Granted through sudo: one runner start; the tree is as before the install.
  auto granted = run(u.args(t, {"--uninstall", "--json"}), u.as(), u.askpass("ok"));
  INFO(granted.err);
  CHECK(granted.code == 0);
  CHECK(has(granted.out, "\"prompts_shown\": 1"));
  CHECK(has(granted.out, "\"answer\": \"granted\""));
  CHECK(joined(content_diff(original, scan(t.root))) == "");

  // Installed again and cancelled again: the command it prints, run by an administrator, finishes it.
  install();
  auto again = run(u.args(t, {"--uninstall"}), u.as(), u.askpass("cancel"));
  CHECK(again.code == 3);
  auto finished = run({"/bin/sh", "-c", admin_command_in(again.err) + " >/dev/null 2>&1; echo exit=$?"});
  CHECK(finished.out == "exit=0\n");
  CHECK(joined(content_diff(original, scan(t.root))) == "");
}

TEST_CASE("--dry-run changes nothing on disk, not even the record, and exits as the real run would") {
  if (!prerequisites()) return;
  tree t;
  auto before = scan(t.root);
  auto dry = run(t.args({"--privilege", "grant", "--dry-run", "--json"}));
  CHECK(dry.code == 0);
  CHECK(has(dry.out, "\"dry_run\": true"));
  CHECK(has(dry.out, "/usr/local/bin/docker"));
  CHECK(joined(full_diff(before, scan(t.root))) == "");
  auto dry_declined = run(t.args({"--privilege", "decline", "--dry-run"}));
  CHECK(dry_declined.code == 3);
  CHECK(joined(full_diff(before, scan(t.root))) == "");
  CHECK(run(t.args({"--privilege", "decline"})).code == 3);
}

TEST_CASE("--json parses with python3, follows the schema and matches what was done") {
  if (!prerequisites()) return;
  if (::access("/usr/bin/python3", X_OK) != 0) {
    HOSTCFG_SKIP("python3 not installed");
    return;
  }
  tree t;
  auto r = run(t.args({"--privilege", "grant", "--json"}));
  CHECK(r.code == 0);
  std::string json_path = t.root + ".json";
  std::string script_path = t.root + ".py";
  write_file(json_path, r.out, 0644);
  write_file(script_path,
             "import json, sys\n"
             "r = json.load(open(sys.argv[1]))\n"
             "assert r['schema'] == 'hostcfg.report' and r['version'] == 1, r.get('schema')\n"
             "for k in ('app_id','dry_run','uninstall','prompts_shown','prompt','records_written','steps',\n"
             "          'out_of_sync','notes','ok','needs_user_action'):\n"
             "    assert k in r, k\n"
             "assert r['app_id'] == 'com.docker.desktop' and r['ok'] is True and r['prompts_shown'] == 1\n"
             "assert r['prompt']['answer'] == 'granted' and len(r['prompt']['changes']) > 0\n"
             "for s in r['steps']:\n"
             "    for k in ('primitive','id','is_fallback','fallback_for','reverted','ok','in_sync','error',\n"
             "              'before','changes','events','notes','after'):\n"
             "        assert k in s, k\n"
             "    for e in s['events']:\n"
             "        assert set(e) == {'item_id','kind','path','message','elevated','error'}, e\n"
             "        if e['kind'] == 'changed': print(e['path'])\n",
             0644);
  auto py = run({"/usr/bin/python3", script_path, json_path});
  ::unlink(json_path.c_str());
  ::unlink(script_path.c_str());
  INFO(py.err);
  REQUIRE(py.code == 0);
  // Every path the report says changed exists now, and the expected ones are all there.
  std::set<std::string> changed;
  std::size_t pos = 0;
  while (pos < py.out.size()) {
    std::size_t nl = py.out.find('\n', pos);
    changed.insert(py.out.substr(pos, nl - pos));
    pos = nl + 1;
  }
  for (const auto& p : changed) {
    struct stat st;
    CHECK_MESSAGE(::lstat(t.at(p).c_str(), &st) == 0, p);
  }
  for (const char* p : {"/usr/local/bin/docker", "/usr/local/bin/kubectl", "/var/run/docker.sock", "/etc/hosts",
                        "/Library/LaunchDaemons/com.docker.vmnetd.plist"})
    CHECK_MESSAGE(changed.count(p) == 1, p);
}

TEST_CASE("an unprivileged user gets the user's part; the system part fails clearly and leaves no temp files") {
  if (!prerequisites()) return;
  tree t("nobody", 65534, 65534);
  run_as nobody{65534, 65534, true};
  // ask: the real backend cannot elevate here (no terminal, no askpass): the fallback is used.
  auto asked = run(t.args({"--privilege", "ask"}), nobody);
  INFO(asked.err);
  CHECK(asked.code == 3);
  CHECK(link_target(t.home() + "/.docker/bin/docker") == bin_dir + "/docker");
  CHECK(has(file_bytes(t.home() + "/.zshrc").value_or(""), "/.docker/bin"));
  CHECK_FALSE(link_target(t.at("/usr/local/bin/docker")));
  CHECK(file_bytes(t.at("/etc/hosts")) == std::optional<std::string>(stock_hosts));
  CHECK(has(asked.err, "fallback in use"));
  CHECK(has(asked.err, "not done: hosts:/etc/hosts: needs elevation: prompt "));
  CHECK(has(asked.err, "not done: links:/var/run/docker.sock: needs elevation: prompt "));

  // grant in a process that cannot elevate: EACCES, exit 1, nothing half-written, fallback kept.
  auto before = scan(t.root);
  auto granted = run(t.args({"--privilege", "grant", "--reprompt"}), nobody);
  CHECK(granted.code == 1);
  CHECK(has(granted.err, "Permission denied"));
  CHECK(has(granted.err, "/etc/hosts"));
  CHECK(has(granted.err, "/usr/local/bin/"));
  auto after = scan(t.root);
  CHECK(joined(temp_files(after)) == "");
  CHECK(link_target(t.home() + "/.docker/bin/docker") == bin_dir + "/docker");
  CHECK(file_bytes(t.at("/etc/hosts")) == std::optional<std::string>(stock_hosts));
  CHECK_FALSE(link_target(t.at("/usr/local/bin/docker")));
  (void)before;
}

TEST_CASE("a broken tree (/etc/hosts is a directory) ends non-zero naming the file, with no temp files left") {
  if (!prerequisites()) return;
  tree t;
  REQUIRE(::unlink(t.at("/etc/hosts").c_str()) == 0);
  make_dir(t.at("/etc/hosts"), 0755);
  auto r = run(t.args({"--privilege", "grant"}));
  // The hosts step is a conflict left alone (3); the other steps are done.
  CHECK(r.code == 3);
  CHECK(has(r.err, "step hosts:/etc/hosts left alone: /etc/hosts: conflict: "));
  CHECK(link_target(t.at("/usr/local/bin/docker")) == bin_dir + "/docker");
  CHECK(joined(temp_files(scan(t.root))) == "");
}

TEST_CASE("usage errors exit 2 naming the option; a missing bin dir exits 1 naming it; --help documents every option") {
  if (!have_program()) {
    HOSTCFG_SKIP("desktop-installer not built: " + program);
    return;
  }
  auto bad = run({program, "--privilege", "maybe"});
  CHECK(bad.code == 2);
  CHECK(has(bad.err, "--privilege"));
  auto unknown = run({program, "--frobnicate"});
  CHECK(unknown.code == 2);
  CHECK(has(unknown.err, "--frobnicate"));
  auto relative = run({program, "--root", "relative/dir"});
  CHECK(relative.code == 2);
  CHECK(has(relative.err, "--root"));
  auto missing = run({program, "--sandbox", "--bin-dir", "/Applications/Nope.app/bin"});
  CHECK(missing.code == 1);
  CHECK(has(missing.err, "--bin-dir /Applications/Nope.app/bin"));
  auto help = run({program, "--help"});
  CHECK(help.code == 0);
  for (const char* opt : {"--sandbox", "--root", "--user", "--uid", "--gid", "--home", "--shell", "--bin-dir",
                          "--privilege", "--reprompt", "--dry-run", "--json", "--uninstall", "--state", "--help"})
    CHECK_MESSAGE(has(help.out, opt), opt);
}

TEST_CASE("the default sandbox run prints the plan, the prompt, the outcome and the tree's diff, and exits 0") {
  if (!have_program()) {
    HOSTCFG_SKIP("desktop-installer not built: " + program);
    return;
  }
  auto r = run({program});
  CHECK(r.code == 0);
  CHECK(has(r.out, "== plan ==\n[links:/usr/local/bin]\n+ create link /usr/local/bin/com.docker.cli"));
  CHECK(has(r.out, "== prompt ==\ncom.docker.desktop needs administrator rights to make 14 change(s)"));
  CHECK(has(r.out, "  answer: granted\n"));
  CHECK(has(r.out, "skipped: system/com.docker.socket: skipped: no launchd here"));
  CHECK(has(r.out, "added link /usr/local/bin/docker -> /Applications/Docker.app/Contents/Resources/bin/docker\n"));
  CHECK(has(r.out, "changed /etc/hosts: 213 -> 327 bytes\n"));
  auto declined = run({program, "--sandbox", "--privilege", "decline"});
  CHECK(declined.code == 3);
  CHECK(has(declined.out, "added link /Users/alice/.docker/bin/docker -> "));
}

TEST_CASE("decision table through the program: timed out is asked again, cancelled is recorded as cancelled") {
  if (!prerequisites()) return;
  tree t;
  auto timed_out = run(t.args({"--privilege", "timeout"}));
  CHECK(timed_out.code == 3);
  CHECK(has(timed_out.err, "timed_out"));
  auto record_path = t.home() + "/.local/state/hostcfg/com.docker.desktop.record";
  CHECK_FALSE(has(file_bytes(record_path).value_or(""), "primitive decision"));
  auto cancelled = run(t.args({"--privilege", "cancel", "--json"}));
  CHECK(cancelled.code == 3);
  CHECK(has(cancelled.out, "\"prompts_shown\": 1"));  // a timeout is no decision: asked again
  CHECK(has(file_bytes(record_path).value_or(""), "field answer cancelled"));
  auto after_cancel = run(t.args({"--privilege", "grant", "--json"}));
  CHECK(after_cancel.code == 3);
  CHECK(has(after_cancel.out, "\"prompts_shown\": 0"));
}

TEST_CASE("--state FILE keeps the user's record there, and only there") {
  if (!prerequisites()) return;
  tree t;
  auto r = run(t.args({"--privilege", "decline", "--state", "/Users/alice/installer-state.record"}));
  CHECK(r.code == 3);
  auto custom = t.home() + "/installer-state.record";
  CHECK(has(file_bytes(custom).value_or(""), "field answer declined"));
  struct stat st;
  REQUIRE(::lstat(custom.c_str(), &st) == 0);
  CHECK(st.st_uid == 501);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK_FALSE(file_bytes(t.home() + "/.local/state/hostcfg/com.docker.desktop.record"));
  auto again = run(t.args({"--privilege", "grant", "--json", "--state", "/Users/alice/installer-state.record"}));
  CHECK(again.code == 3);
  CHECK(has(again.out, "\"prompts_shown\": 0"));
}
