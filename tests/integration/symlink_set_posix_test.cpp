// SymlinkSet and the CLI-links recipe on the real disk (PosixFs), in a root-owned 0755 sandbox
// under /var/lib/hostcfg-tests: the prompt and decision flow, conflicts, both policies and their revert, an
// unprivileged run (forked, dropped to nobody), and the component-swap attack at each operation.
// Every case needs root (to own the sandbox and act for `nobody`); without it they skip.
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/backend/posix_fs.hpp>
#include <hostcfg/backend/rooted_fs.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/primitives/managed_file.hpp>
#include <hostcfg/primitives/symlink_set.hpp>
#include <hostcfg/recipes/cli_links.hpp>

#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <vector>
#include <string>

#include "primitives/symlink_swap_fs.hpp"
#include "support/real_fs.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;
namespace stdfs = std::filesystem;

namespace {

constexpr uid_type nobody_uid = 65534;
constexpr gid_type nobody_gid = 65534;
const char* app = "com.docker.desktop";

void write_file(const std::string& path, const std::string& bytes, mode_t mode, uid_t uid, gid_t gid) {
  std::ofstream(path, std::ios::binary) << bytes;
  REQUIRE(::chmod(path.c_str(), mode) == 0);
  REQUIRE(::lchown(path.c_str(), uid, gid) == 0);
}

void make_dir(const std::string& path, mode_t mode, uid_t uid, gid_t gid) {
  stdfs::create_directories(path);
  REQUIRE(::chmod(path.c_str(), mode) == 0);
  REQUIRE(::lchown(path.c_str(), uid, gid) == 0);
}

std::string read_link(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  return n < 0 ? std::string("<none>") : std::string(buf, static_cast<std::size_t>(n));
}

struct lstat_result {
  bool exists = false;
  struct ::stat st {};
};
lstat_result lstat_of(const std::string& path) {
  lstat_result r;
  r.exists = ::lstat(path.c_str(), &r.st) == 0;
  return r;
}

// A root-owned 0755 sandbox under /var/lib/hostcfg-tests laid out like a Mac: /usr/local/bin root 0755, the
// app's commands, nobody's home, a Homebrew keg, an /etc to attack.
struct sandbox {
  hostcfg_test::root_scratch_dir dir{"hostcfg-symlink"};
  std::string root = dir.path;
  sandbox() {
    make_dir(root + "/usr/local/bin", 0755, 0, 0);
    make_dir(root + "/var/lib", 0755, 0, 0);
    make_dir(root + "/var/run", 0755, 0, 0);
    make_dir(root + "/etc", 0755, 0, 0);
    make_dir(root + "/App/bin", 0755, 0, 0);
    write_file(root + "/App/bin/docker", "#!docker\n", 0755, 0, 0);
    write_file(root + "/App/bin/docker-compose", "#!compose\n", 0755, 0, 0);
    make_dir(root + "/opt/homebrew/Cellar/docker/24/bin", 0755, 0, 0);
    write_file(root + "/opt/homebrew/Cellar/docker/24/bin/docker", "brew\n", 0755, 0, 0);
    make_dir(home(), 0755, nobody_uid, nobody_gid);
  }

  std::string home() const { return root + "/home/nobody"; }
  std::string bin() const { return root + "/usr/local/bin"; }
  std::string src() const { return root + "/App/bin"; }
  std::string fallback_dir() const { return home() + "/.docker/bin"; }
  user_identity user() const {
    return user_identity{nobody_uid, nobody_gid, {nobody_gid}, "nobody", home(), "/bin/sh", std::nullopt, std::nullopt};
  }
  ManagedFile path_edit() const { return ManagedFile{home() + "/.docker-path.sh", "PATH=\"$HOME/.docker/bin:$PATH\"\n", 0644}; }
  auto recipe() const { return cli_links(src(), bin(), fallback_dir(), path_edit()); }
  template <class Ctx>
  void place_records(Ctx& ctx) const {
    ctx.user_record.path = home() + "/.local/state/hostcfg/" + app + ".record";
    ctx.system_record.path = root + "/var/lib/hostcfg/" + app + ".record";
  }
  // Every object under the root with type, mode, owner, link target, inode and times: equal dumps
  // mean nothing was written.
  std::map<std::string, std::string> dump(bool with_times) const {
    std::map<std::string, std::string> out;
    for (auto it = stdfs::recursive_directory_iterator(root); it != stdfs::recursive_directory_iterator(); ++it) {
      std::string p = it->path().string();
      auto l = lstat_of(p);
      std::string text = std::to_string(l.st.st_mode) + " " + std::to_string(l.st.st_uid) + ":" +
                         std::to_string(l.st.st_gid);
      if (S_ISLNK(l.st.st_mode)) text += " -> " + read_link(p);
      if (with_times)
        text += " ino " + std::to_string(l.st.st_ino) + " m " + std::to_string(l.st.st_mtim.tv_nsec) + "." +
                std::to_string(l.st.st_mtime) + " c " + std::to_string(l.st.st_ctim.tv_nsec);
      out[p] = text;
    }
    return out;
  }
};

bool running_as_root() { return ::geteuid() == 0; }

}  // namespace

TEST_CASE("posix: granted links are made as root in the root-owned directory, with one prompt; a rerun writes nothing") {
  if (!running_as_root()) {
    HOSTCFG_SKIP("needs root to own the sandbox and act for nobody");
    return;
  }
  sandbox box;
  auto pristine = box.dump(false);
  PosixFs fs;
  ScriptedPrivilege priv(box.user(), answer::granted);
  context ctx(fs, priv, app);
  box.place_records(ctx);
  auto report = converge(ctx, box.recipe());
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 1);
  REQUIRE(priv.requests().at(0).changes.size() == 2);
  CHECK(priv.requests()[0].changes[0].find(box.bin() + " is 0:0 0755, not writable by uid 65534") != std::string::npos);
  CHECK(read_link(box.bin() + "/docker") == box.src() + "/docker");
  CHECK(lstat_of(box.bin() + "/docker").st.st_uid == 0);
  CHECK_FALSE(lstat_of(box.fallback_dir()).exists);
  auto sys_record = lstat_of(box.root + "/var/lib/hostcfg/com.docker.desktop.record");
  REQUIRE(sys_record.exists);
  CHECK(sys_record.st.st_uid == 0);

  auto settled = box.dump(true);
  auto again = converge(ctx, box.recipe());
  REQUIRE(again);
  CHECK(priv.prompts() == 1);
  CHECK(box.dump(true) == settled);

  auto undone = uninstall(ctx, box.recipe());
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(box.dump(false) == pristine);
}

TEST_CASE("posix: declined links fall back to the home as the user, recorded; the next run asks and writes nothing") {
  if (!running_as_root()) {
    HOSTCFG_SKIP("needs root to own the sandbox and act for nobody");
    return;
  }
  sandbox box;
  auto pristine = box.dump(false);
  PosixFs fs;
  ScriptedPrivilege priv(box.user(), std::vector<answer>{answer::declined, answer::granted});
  context ctx(fs, priv, app);
  box.place_records(ctx);
  auto first = converge(ctx, box.recipe());
  REQUIRE(first);
  CHECK(first->ok());
  CHECK(read_link(box.fallback_dir() + "/docker") == box.src() + "/docker");
  CHECK(lstat_of(box.fallback_dir() + "/docker").st.st_uid == nobody_uid);
  CHECK(lstat_of(box.fallback_dir()).st.st_uid == nobody_uid);
  CHECK((lstat_of(box.fallback_dir()).st.st_mode & 07777) == 0755);
  CHECK(lstat_of(box.home() + "/.docker-path.sh").st.st_uid == nobody_uid);
  CHECK_FALSE(lstat_of(box.bin() + "/docker").exists);
  std::ifstream rec(box.home() + "/.local/state/hostcfg/com.docker.desktop.record");
  std::string text((std::istreambuf_iterator<char>(rec)), std::istreambuf_iterator<char>());
  CHECK(text.find("field answer declined") != std::string::npos);

  auto settled = box.dump(true);
  auto second = converge(ctx, box.recipe());
  REQUIRE(second);
  CHECK(priv.prompts() == 1);
  CHECK(box.dump(true) == settled);

  // Re-prompt, granted: the links move to /usr/local/bin, the fallback goes.
  ctx.policy.reprompt = true;
  auto moved = converge(ctx, box.recipe());
  REQUIRE(moved);
  CHECK(moved->ok());
  CHECK(read_link(box.bin() + "/docker-compose") == box.src() + "/docker-compose");
  CHECK_FALSE(lstat_of(box.home() + "/.docker").exists);
  CHECK_FALSE(lstat_of(box.home() + "/.docker-path.sh").exists);

  auto undone = uninstall(ctx, box.recipe());
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(box.dump(false) == pristine);
}

TEST_CASE("posix: conflicts in /usr/local/bin are left alone and reported; take_over and its revert") {
  if (!running_as_root()) {
    HOSTCFG_SKIP("needs root to own the sandbox and act for nobody");
    return;
  }
  sandbox box;
  write_file(box.bin() + "/docker", "user's wrapper\n", 0755, 0, 0);
  REQUIRE(::symlink((box.root + "/opt/homebrew/Cellar/docker/24/bin/docker").c_str(),
                    (box.bin() + "/docker-compose").c_str()) == 0);
  auto pristine = box.dump(false);
  PosixFs fs;
  ScriptedPrivilege priv(box.user(), answer::granted);
  context ctx(fs, priv, app);
  box.place_records(ctx);
  SymlinkSet set;
  set.link_dir = box.bin();
  set.source_dir = box.src();
  auto refused = converge(ctx, set);
  REQUIRE(refused);
  CHECK(priv.prompts() == 0);
  // Nothing in the way was touched; only the user's record appeared, noting both conflicts.
  auto after_refusal = box.dump(false);
  const std::string user_record = box.home() + "/.local/state/hostcfg/" + app + ".record";
  for (const auto& entry : after_refusal) {
    if (entry.first.rfind(box.home() + "/.local", 0) == 0) continue;
    auto was = pristine.find(entry.first);
    REQUIRE(was != pristine.end());
    CHECK(was->second == entry.second);
  }
  CHECK(after_refusal.size() > pristine.size());
  std::ifstream notes_file(user_record);
  std::string notes((std::istreambuf_iterator<char>(notes_file)), std::istreambuf_iterator<char>());
  CHECK(notes.find("item conflict:" + box.bin() + "/docker\n") != std::string::npos);
  CHECK(notes.find("field what file\n") != std::string::npos);
  CHECK(notes.find("field owner Homebrew\n") != std::string::npos);
  REQUIRE(refused->steps.at(0).before.items.size() == 4);  // two links, two conflict notes to write
  CHECK(refused->steps[0].before.items[0].detail.find("a regular file stands at " + box.bin() + "/docker") == 0);
  CHECK(refused->steps[0].before.items[1].detail.find("(belongs to Homebrew)") != std::string::npos);
  CHECK(refused->steps[0].before.items[2].id == "conflict:" + box.bin() + "/docker");

  set.take_over = true;
  auto taken = converge(ctx, set);
  REQUIRE(taken);
  CHECK(taken->ok());
  CHECK(priv.prompts() == 1);
  CHECK(read_link(box.bin() + "/docker") == box.src() + "/docker");
  CHECK(read_link(box.bin() + "/docker-compose") == box.src() + "/docker-compose");
  CHECK(lstat_of(box.bin() + "/.docker.hostcfg_backup").exists);
  auto undone = uninstall(ctx, set);
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(box.dump(false) == pristine);
}

TEST_CASE("posix: allow_dangling links a socket path that does not exist yet; revert removes it") {
  if (!running_as_root()) {
    HOSTCFG_SKIP("needs root to own the sandbox and act for nobody");
    return;
  }
  sandbox box;
  auto pristine = box.dump(false);
  PosixFs fs;
  ScriptedPrivilege priv(box.user(), answer::granted);
  context ctx(fs, priv, app);
  box.place_records(ctx);
  SymlinkSet sock;
  sock.links.push_back({box.root + "/var/run/docker.sock", box.home() + "/.docker/run/docker.sock"});
  auto refused = converge(ctx, sock);
  REQUIRE(refused);
  CHECK_FALSE(lstat_of(box.root + "/var/run/docker.sock").exists);
  sock.allow_dangling = true;
  auto made = converge(ctx, sock);
  REQUIRE(made);
  CHECK(made->ok());
  CHECK(read_link(box.root + "/var/run/docker.sock") == box.home() + "/.docker/run/docker.sock");
  auto undone = uninstall(ctx, sock);
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(box.dump(false) == pristine);
}

TEST_CASE("posix: an unprivileged run (dropped to nobody) falls back to the home and leaves /usr/local/bin alone") {
  if (!running_as_root()) {
    HOSTCFG_SKIP("needs root to fork a child that drops to nobody");
    return;
  }
  sandbox box;
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child: an ordinary user, no admin rights. Exit codes say which check failed.
    if (::setgroups(0, nullptr) != 0 || ::setgid(nobody_gid) != 0 || ::setuid(nobody_uid) != 0) ::_exit(10);
    PosixFs fs;
    Unprivileged plain(box.user());
    context ctx(fs, plain, app);
    box.place_records(ctx);
    auto report = converge(ctx, box.recipe());
    if (!report) ::_exit(11);
    if (!report->ok()) ::_exit(12);
    if (report->prompt_answer != answer::unavailable) ::_exit(13);
    auto again = converge(ctx, box.recipe());
    if (!again || again->prompts_shown != 0 || !again->ok()) ::_exit(14);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(read_link(box.fallback_dir() + "/docker") == box.src() + "/docker");
  CHECK(lstat_of(box.fallback_dir() + "/docker").st.st_uid == nobody_uid);
  CHECK(lstat_of(box.home() + "/.docker-path.sh").exists);
  CHECK(stdfs::is_empty(box.bin()));
  CHECK_FALSE(lstat_of(box.root + "/var/lib/hostcfg").exists);
}

TEST_CASE("posix attack: the user's link directory swapped for a symlink to /etc before each operation writes nothing there") {
  if (!running_as_root()) {
    HOSTCFG_SKIP("needs root: the attack is on a root process acting for a user");
    return;
  }
  // The operations to swap before: the first one that looks at the directory (probe), and every
  // one that changes something in it (apply) - the exact moments a root process could be fooled -
  // and every tenth operation besides.
  // (The MemoryFs test swaps before every operation; here each run costs real fsyncs.)
  std::vector<std::size_t> points;
  std::size_t total = 0;
  {
    sandbox box;
    make_dir(box.fallback_dir(), 0755, nobody_uid, nobody_gid);
    PosixFs posix;
    hostcfg_test::SwapBeforeCall<PosixFs> counting(posix, 0, nullptr);
    RootFor installer(box.user());
    context ctx(counting, installer, app);
    box.place_records(ctx);
    SymlinkSet set;
    set.link_dir = box.fallback_dir();
    set.source_dir = box.src();
    auto report = converge(ctx, set);
    REQUIRE(report);
    CHECK(report->ok());
    CHECK(lstat_of(box.fallback_dir() + "/docker").st.st_uid == nobody_uid);
    total = counting.calls();
    const auto& log = counting.log();
    bool seen = false;
    for (std::size_t i = 0; i < log.size(); ++i) {
      bool in_dir = log[i].find(" " + box.fallback_dir()) != std::string::npos;
      bool mutating = log[i].rfind("lstat", 0) != 0 && log[i].rfind("stat", 0) != 0 &&
                      log[i].rfind("readlink", 0) != 0 && log[i].rfind("list_dir", 0) != 0 &&
                      log[i].rfind("read_file", 0) != 0;
      if ((in_dir && (!seen || mutating)) || i % 10 == 0) points.push_back(i + 1);
      seen = seen || in_dir;
    }
  }
  REQUIRE(total > 5);
  REQUIRE(points.size() >= 3);
  std::size_t fired = 0;
  for (std::size_t n : points) {
    CAPTURE(n);
    sandbox box;
    make_dir(box.fallback_dir(), 0755, nobody_uid, nobody_gid);
    std::string dir = box.fallback_dir();
    std::string etc = box.root + "/etc";
    PosixFs posix;
    hostcfg_test::SwapBeforeCall<PosixFs> swapping(posix, n, [&] {
      REQUIRE(::rename(dir.c_str(), (dir + ".moved").c_str()) == 0);
      REQUIRE(::symlink(etc.c_str(), dir.c_str()) == 0);
      REQUIRE(::lchown(dir.c_str(), nobody_uid, nobody_gid) == 0);
    });
    RootFor installer(box.user());
    context ctx(swapping, installer, app);
    box.place_records(ctx);
    SymlinkSet set;
    set.link_dir = dir;
    set.source_dir = box.src();
    (void)converge(ctx, set);
    fired += swapping.fired() ? 1 : 0;
    CHECK(stdfs::is_empty(etc));
  }
  CHECK(fired == points.size());
  MESSAGE("posix attack: swapped before " << points.size() << " of " << total << " operations");
}

namespace {

// One tree built twice: on the real disk under a sandbox root (seen through RootedFs, so paths are
// the same) and in a MemoryFs. Parity cases compare what SymlinkSet makes of each.
struct twin_tree {
  sandbox& box;
  MemoryFs mem;
  explicit twin_tree(sandbox& b) : box(b) {
    mem.set_posix_rules();
    // The sandbox's own layout (see `sandbox`), mirrored.
    for (const char* d : {"/usr", "/usr/local", "/usr/local/bin", "/var", "/var/lib", "/var/run", "/etc", "/App",
                          "/App/bin", "/opt", "/opt/homebrew", "/opt/homebrew/Cellar", "/opt/homebrew/Cellar/docker",
                          "/opt/homebrew/Cellar/docker/24", "/opt/homebrew/Cellar/docker/24/bin", "/home"})
      mem.add_dir(d, 0755, 0, 0);
    mem.add_file("/App/bin/docker", "#!docker\n", 0755, 0, 0);
    mem.add_file("/App/bin/docker-compose", "#!compose\n", 0755, 0, 0);
    mem.add_file("/opt/homebrew/Cellar/docker/24/bin/docker", "brew\n", 0755, 0, 0);
    mem.add_dir("/home/nobody", 0755, nobody_uid, nobody_gid);
  }
  void dir(const std::string& p, mode_t mode, uid_t uid, gid_t gid) {
    make_dir(box.root + p, mode, uid, gid);
    mem.add_dir(p, mode, uid, gid);
  }
  void file(const std::string& p, const std::string& bytes) {
    write_file(box.root + p, bytes, 0644, 0, 0);
    mem.add_file(p, bytes, 0644, 0, 0);
  }
  void link(const std::string& p, const std::string& target) {
    REQUIRE(::symlink(target.c_str(), (box.root + p).c_str()) == 0);
    mem.add_symlink(p, target, 0, 0);
  }
};

user_identity rooted_user() {
  return user_identity{nobody_uid, nobody_gid, {nobody_gid}, "nobody", "/home/nobody", "/bin/sh", std::nullopt,
                       std::nullopt};
}

// "state: detail" of every item, in order.
template <class Fs>
std::vector<std::string> probe_states(Fs& fs, const SymlinkSet& set) {
  ScriptedPrivilege priv(rooted_user(), answer::declined);
  context ctx(fs, priv, app);
  ledgers books{record{app, {}}, record{app, {}}};
  auto probed = set.probe(ctx, books);
  REQUIRE(probed);
  std::vector<std::string> out;
  for (const auto& item : probed->items)
    out.push_back(item.path + ": " + item_state_name(item.state) + (item.needs_elevation ? " (elevation)" : "") + ": " +
                  item.detail);
  return out;
}

}  // namespace

TEST_CASE("posix parity: every probe state reads the same on the real disk as on MemoryFs") {
  if (!running_as_root()) {
    HOSTCFG_SKIP("needs root to own the sandbox and act for nobody");
    return;
  }
  sandbox box;
  twin_tree t(box);
  t.link("/usr/local/bin/correct", "/App/bin/docker");
  t.link("/usr/local/bin/brew", "/opt/homebrew/Cellar/docker/24/bin/docker");
  t.link("/usr/local/bin/dangling", "/App/bin/gone");
  t.file("/usr/local/bin/file", "a user's script\n");
  t.dir("/usr/local/bin/dir", 0755, 0, 0);
  t.dir("/home/nobody/bin", 0755, nobody_uid, nobody_gid);
  SymlinkSet set;
  for (const char* name : {"missing", "correct", "brew", "dangling", "file", "dir"})
    set.links.push_back({std::string("/usr/local/bin/") + name, "/App/bin/docker"});
  set.links.push_back({"/opt/new/bin/docker", "/App/bin/docker"});        // parent missing
  set.links.push_back({"/home/nobody/bin/docker", "/App/bin/docker"});    // the user's own directory
  set.links.push_back({"/home/nobody/bin/compose", "/App/bin/nothing"});  // target missing
  PosixFs posix;
  RootedFs<PosixFs> real(posix, box.root);
  auto on_disk = probe_states(real, set);
  auto in_memory = probe_states(t.mem, set);
  REQUIRE(on_disk.size() == 12);  // 9 links, then the 3 conflicts to note in the record
  CHECK(on_disk == in_memory);
  auto has = [&](std::size_t i, const std::string& text) {
    INFO(on_disk[i]);
    CHECK(on_disk[i].find(text) != std::string::npos);
  };
  has(0, "/usr/local/bin/missing: absent (elevation)");
  has(1, "/usr/local/bin/correct: matches");
  has(2, "/usr/local/bin/brew: conflict");
  has(2, "Homebrew");
  has(3, "/usr/local/bin/dangling: differs (elevation): dangling");
  has(4, "/usr/local/bin/file: conflict");
  has(4, "a regular file stands at");
  has(5, "/usr/local/bin/dir: conflict: a directory stands at");
  has(6, "/opt/new/bin/docker: absent (elevation): missing; parent missing");
  has(7, "/home/nobody/bin/docker: absent: ");
  has(8, "/home/nobody/bin/compose: conflict");
  has(8, "allow_dangling");
  has(9, "/usr/local/bin/brew: differs: note in the record");
  has(10, "/usr/local/bin/file: differs: note in the record");
  has(11, "/usr/local/bin/dir: differs: note in the record");
}

TEST_CASE("posix: a link directory the user can write gets its links as the user, with no prompt") {
  if (!running_as_root()) {
    HOSTCFG_SKIP("needs root to own the sandbox and act for nobody");
    return;
  }
  sandbox box;
  // Homebrew on Intel Macs hands /usr/local/bin to the admin user.
  REQUIRE(::lchown(box.bin().c_str(), nobody_uid, nobody_gid) == 0);
  auto pristine = box.dump(false);
  PosixFs fs;
  ScriptedPrivilege priv(box.user(), answer::declined);  // would decline: must not be asked
  context ctx(fs, priv, app);
  box.place_records(ctx);
  auto report = converge(ctx, box.recipe());
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 0);
  CHECK(read_link(box.bin() + "/docker") == box.src() + "/docker");
  CHECK(lstat_of(box.bin() + "/docker").st.st_uid == nobody_uid);
  CHECK_FALSE(lstat_of(box.fallback_dir()).exists);
  CHECK_FALSE(lstat_of(box.root + "/var/lib/hostcfg/com.docker.desktop.record").exists);  // user items only
  auto settled = box.dump(true);
  auto again = converge(ctx, box.recipe());
  REQUIRE(again);
  CHECK(box.dump(true) == settled);
  auto undone = uninstall(ctx, box.recipe());
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(priv.prompts() == 0);
  CHECK(box.dump(false) == pristine);
}

TEST_CASE("posix: cancelled and declined are recorded as which; timed out is not recorded and asks again") {
  if (!running_as_root()) {
    HOSTCFG_SKIP("needs root to own the sandbox and act for nobody");
    return;
  }
  for (answer a : {answer::declined, answer::cancelled, answer::timed_out}) {
    CAPTURE(answer_name(a));
    sandbox box;
    PosixFs fs;
    ScriptedPrivilege priv(box.user(), a);
    context ctx(fs, priv, app);
    box.place_records(ctx);
    auto first = converge(ctx, box.recipe());
    REQUIRE(first);
    CHECK(first->ok());
    CHECK(read_link(box.fallback_dir() + "/docker") == box.src() + "/docker");
    std::ifstream rec(box.home() + "/.local/state/hostcfg/com.docker.desktop.record");
    std::string text((std::istreambuf_iterator<char>(rec)), std::istreambuf_iterator<char>());
    const bool recorded = text.find(std::string("field answer ") + answer_name(a)) != std::string::npos;
    CHECK(recorded == (a != answer::timed_out));
    auto second = converge(ctx, box.recipe());
    REQUIRE(second);
    CHECK(priv.prompts() == (a == answer::timed_out ? 2u : 1u));
  }
}

TEST_CASE("posix parity: a link hostcfg set to an older target reads 'ours, stale' on both, and is re-pointed") {
  if (!running_as_root()) {
    HOSTCFG_SKIP("needs root to own the sandbox and act for nobody");
    return;
  }
  sandbox box;
  twin_tree t(box);
  t.dir("/home/nobody/bin", 0755, nobody_uid, nobody_gid);
  SymlinkSet older;
  older.links.push_back({"/home/nobody/bin/docker", "/App/bin/docker-compose"});
  SymlinkSet newer;
  newer.links.push_back({"/home/nobody/bin/docker", "/App/bin/docker"});
  PosixFs posix;
  RootedFs<PosixFs> real(posix, box.root);
  std::vector<std::string> seen;
  auto stale_then_repointed = [&](auto& fs) {
    ScriptedPrivilege priv(rooted_user(), answer::declined);
    context ctx(fs, priv, app);
    REQUIRE(converge(ctx, older));
    auto report = converge(ctx, newer);
    REQUIRE(report);
    CHECK(report->ok());
    REQUIRE_FALSE(report->steps.at(0).before.items.empty());
    const auto& item = report->steps[0].before.items[0];
    seen.push_back(std::string(item_state_name(item.state)) + ": " + item.detail);
    auto target = fs.readlink(priv.user().as_actor(), "/home/nobody/bin/docker");
    REQUIRE(target);
    CHECK(*target == "/App/bin/docker");
    auto undone = uninstall(ctx, newer);
    REQUIRE(undone);
    CHECK(undone->ok());
    CHECK_FALSE(fs.lstat(priv.user().as_actor(), "/home/nobody/bin/docker"));
  };
  stale_then_repointed(real);
  stale_then_repointed(t.mem);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == seen[1]);
  CHECK(seen[0].find("differs: ours, stale: points at /App/bin/docker-compose") == 0);
}

