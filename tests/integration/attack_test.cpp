// The attack suite of issue 10: root, real disk, deterministic. Each attack is staged through a
// hook at the exact system call (a syscall table that runs the attacker's step just before call
// k of an apply), swept over every k of the window, or planted before the run. Every case must end
// refused or safe, and a root-owned decoy tree standing in for /etc (never the real one) is hashed
// before and after: nothing may be written outside the intended file. Each sweep reports how many
// swaps landed inside the window.
//
// Needs root (the attacker is uid 65534, `nobody`); skips otherwise. Linux only (the attacker's
// identity is switched per thread with setfsuid); elsewhere one case reports the skip.
#include "support/real_fs.hpp"
#include "support/test_support.hpp"

#if !defined(__linux__)
TEST_CASE("attack suite") { HOSTCFG_SKIP("the attack suite runs on Linux (setfsuid)"); }
#else
#include <dirent.h>
#include <fcntl.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hostcfg/hostcfg.hpp"

namespace {

using namespace hostcfg;

constexpr uid_type kNobody = 65534;
constexpr gid_type kNogroup = 65534;

// ---------------------------------------------------------------- a hooking syscall table

/// Forwards every call to the real table and runs `hook` just before call number `at` (counted
/// from `arm`). `deterministic_random` makes temp names predictable: call n of getrandom fills
/// its buffer with the byte n, so an attacker can plant at exactly the names PosixFs will try.
class hooked_syscalls {
 public:
  hooked_syscalls() : real_(default_syscalls()) {
    table_ = real_;
    table_.context = this;
    table_.openat = forward<decltype(syscall_table::openat)>::call<&syscall_table::openat, 0>;
    table_.openat2 = forward<decltype(syscall_table::openat2)>::call<&syscall_table::openat2, 1>;
    table_.fstat = forward<decltype(syscall_table::fstat)>::call<&syscall_table::fstat, 2>;
    table_.fstatat = forward<decltype(syscall_table::fstatat)>::call<&syscall_table::fstatat, 3>;
    table_.read = forward<decltype(syscall_table::read)>::call<&syscall_table::read, 4>;
    table_.write = forward<decltype(syscall_table::write)>::call<&syscall_table::write, 5>;
    table_.pwrite = forward<decltype(syscall_table::pwrite)>::call<&syscall_table::pwrite, 6>;
    table_.ftruncate = forward<decltype(syscall_table::ftruncate)>::call<&syscall_table::ftruncate, 7>;
    // fsync is counted and hooked but not performed: durability is not under attack here (the
    // crash sweeps cover it), and hundreds of real fsyncs would blow the suite's time budget.
    table_.fsync = [](void* c, int) {
      static_cast<hooked_syscalls*>(c)->before(8);
      return 0;
    };
    table_.renameat = forward<decltype(syscall_table::renameat)>::call<&syscall_table::renameat, 9>;
    table_.unlinkat = forward<decltype(syscall_table::unlinkat)>::call<&syscall_table::unlinkat, 10>;
    table_.mkdirat = forward<decltype(syscall_table::mkdirat)>::call<&syscall_table::mkdirat, 11>;
    table_.symlinkat = forward<decltype(syscall_table::symlinkat)>::call<&syscall_table::symlinkat, 12>;
    table_.readlinkat = forward<decltype(syscall_table::readlinkat)>::call<&syscall_table::readlinkat, 13>;
    table_.fchmod = forward<decltype(syscall_table::fchmod)>::call<&syscall_table::fchmod, 14>;
    table_.fchmodat = forward<decltype(syscall_table::fchmodat)>::call<&syscall_table::fchmodat, 15>;
    table_.fchown = forward<decltype(syscall_table::fchown)>::call<&syscall_table::fchown, 16>;
    table_.fchownat = forward<decltype(syscall_table::fchownat)>::call<&syscall_table::fchownat, 17>;
    table_.flock = forward<decltype(syscall_table::flock)>::call<&syscall_table::flock, 18>;
    table_.list_dir = forward<decltype(syscall_table::list_dir)>::call<&syscall_table::list_dir, 19>;
    table_.get_flags = forward<decltype(syscall_table::get_flags)>::call<&syscall_table::get_flags, 20>;
    table_.flistxattr = forward<decltype(syscall_table::flistxattr)>::call<&syscall_table::flistxattr, 21>;
    table_.fgetxattr = forward<decltype(syscall_table::fgetxattr)>::call<&syscall_table::fgetxattr, 22>;
    table_.fsetxattr = forward<decltype(syscall_table::fsetxattr)>::call<&syscall_table::fsetxattr, 23>;
    table_.close = forward<decltype(syscall_table::close)>::call<&syscall_table::close, 24>;
    table_.getrandom = random_bytes;
    table_.exchangeat = forward<decltype(syscall_table::exchangeat)>::call<&syscall_table::exchangeat, 26>;
  }
  hooked_syscalls(const hooked_syscalls&) = delete;
  hooked_syscalls& operator=(const hooked_syscalls&) = delete;

  const syscall_table& table() const { return table_; }

  /// Runs `step` just before call `k` (0-based) from now; counters reset.
  void arm(std::size_t k, std::function<void()> step) {
    log_.clear();
    calls_ = 0;
    at_ = k;
    fired_ = false;
    step_ = std::move(step);
  }
  /// Only counts.
  void disarm() { arm(0, nullptr); }
  /// Runs `step` before every call of kind `kind_index` (4 = read) until it returns true.
  void on_kind(int kind_index, std::function<bool()> step) {
    kind_ = kind_index;
    kind_step_ = std::move(step);
  }
  bool fired() const { return fired_; }
  /// The calls since `arm`, by name, from call `from` on ("openat fstat ...").
  std::string log_text(std::size_t from = 0) const {
    static const char* const names[] = {"openat",   "openat2",    "fstat",     "fstatat",   "read",     "write",
                                        "pwrite",   "ftruncate",  "fsync",     "renameat",  "unlinkat", "mkdirat",
                                        "symlinkat", "readlinkat", "fchmod",   "fchmodat",  "fchown",   "fchownat",
                                        "flock",    "list_dir",   "get_flags", "flistxattr", "fgetxattr", "fsetxattr",
                                        "close",    "getrandom",  "exchangeat"};
    std::string out;
    for (std::size_t i = from; i < log_.size(); ++i) out += std::string(names[log_[i]]) + " ";
    return out;
  }
  std::size_t calls() const { return calls_; }
  std::size_t random_calls() const { return random_calls_; }
  void deterministic_random(bool on) {
    deterministic_ = on;
    random_calls_ = 0;
  }
  /// The temp name PosixFs tries on its n-th getrandom call (deterministic mode) for `name`.
  static std::string temp_name(const std::string& name, unsigned n) {
    static const char hex[] = "0123456789abcdef";
    std::string out = "." + name + ".hostcfg-";
    for (int i = 0; i < 6; ++i) {
      out += hex[(n & 0xff) >> 4];
      out += hex[n & 15];
    }
    return out;
  }

 private:
  template <class F>
  struct forward;
  template <class R, class... A>
  struct forward<R (*)(void*, A...)> {
    template <R (*syscall_table::*M)(void*, A...), int Kind>
    static R call(void* c, A... a) {
      auto& self = *static_cast<hooked_syscalls*>(c);
      self.before(Kind);
      return (self.real_.*M)(self.real_.context, a...);
    }
  };

  void before(int kind) {
    log_.push_back(kind);
    std::size_t index = calls_++;
    if (step_ && !fired_ && index == at_) {
      fired_ = true;
      int saved = errno;
      step_();
      errno = saved;
    }
    if (kind_step_ && kind == kind_) {
      int saved = errno;
      if (kind_step_()) kind_step_ = nullptr;
      errno = saved;
    }
  }

  static ssize_t random_bytes(void* c, void* buf, std::size_t size, unsigned flags) {
    auto& self = *static_cast<hooked_syscalls*>(c);
    self.before(25);
    if (!self.deterministic_) return self.real_.getrandom(self.real_.context, buf, size, flags);
    std::memset(buf, static_cast<int>(self.random_calls_++ & 0xff), size);
    return static_cast<ssize_t>(size);
  }

  const syscall_table& real_;
  syscall_table table_{};
  std::vector<int> log_;
  std::size_t calls_ = 0;
  std::size_t at_ = 0;
  bool fired_ = false;
  std::function<void()> step_;
  int kind_ = -1;
  std::function<bool()> kind_step_;
  bool deterministic_ = false;
  unsigned random_calls_ = 0;
};

// ---------------------------------------------------------------- the scratch world

/// Runs `fn` with the filesystem identity of `uid`/`gid` (the attacker), whatever the thread's
/// current one is (PosixFs may be acting as the user at that moment), then restores it.
template <class F>
void as_fs_identity(uid_t uid, gid_t gid, F&& fn) {
  int old_gid = ::setfsgid(gid);
  int old_uid = ::setfsuid(uid);
  fn();
  ::setfsuid(static_cast<uid_t>(old_uid));
  ::setfsgid(static_cast<gid_t>(old_gid));
}

void put_file(const std::string& path, const std::string& bytes, mode_t mode, uid_t uid = 0, gid_t gid = 0) {
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  REQUIRE_MESSAGE(fd >= 0, "create " << path << ": " << std::strerror(errno));
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  REQUIRE(::fchown(fd, uid, gid) == 0);
  REQUIRE(::fchmod(fd, mode) == 0);
  ::close(fd);
}

void put_dir(const std::string& path, mode_t mode, uid_t uid = 0, gid_t gid = 0) {
  if (::mkdir(path.c_str(), mode) != 0) REQUIRE_MESSAGE(errno == EEXIST, "mkdir " << path);
  REQUIRE(::chown(path.c_str(), uid, gid) == 0);
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

std::string slurp(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return "<" + std::string(std::strerror(errno)) + ">";
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

/// rm -rf without a shell and without following symlinks (a link is removed, not its target).
void remove_tree(const std::string& path) {
  struct ::stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    std::vector<std::string> names;
    if (DIR* d = ::opendir(path.c_str())) {
      while (dirent* e = ::readdir(d))
        if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) names.emplace_back(e->d_name);
      ::closedir(d);
    }
    for (const auto& n : names) remove_tree(path + "/" + n);
    ::rmdir(path.c_str());
  } else {
    ::unlink(path.c_str());
  }
}

std::uint64_t fnv1a(const std::string& bytes) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

/// A digest of a tree: every entry's name, type, mode, owner, size, link count, and the bytes of
/// regular files or the target of links. Never follows a symlink, never opens a FIFO or device.
std::string tree_digest(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d))
      if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) names.emplace_back(e->d_name);
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& name : names) {
    std::string path = dir + "/" + name;
    struct ::stat st {};
    if (::lstat(path.c_str(), &st) != 0) continue;
    out += path + " " + std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + ":" +
           std::to_string(st.st_gid) + " " + std::to_string(st.st_size) + " n" + std::to_string(st.st_nlink);
    if (S_ISREG(st.st_mode)) out += " h" + std::to_string(fnv1a(slurp(path)));
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = ::readlink(path.c_str(), target, sizeof target);
      out += " -> " + std::string(target, n > 0 ? static_cast<std::size_t>(n) : 0);
    }
    out += "\n";
    if (S_ISDIR(st.st_mode)) out += tree_digest(path);
  }
  return out;
}

/// A root-owned 0755 scratch root under /var/lib/hostcfg-tests with a decoy "/etc" inside, removed at the end.
struct world {
  hostcfg_test::root_scratch_dir dir{"hostcfg-attack"};
  std::string root = dir.path;
  std::string decoy;  // root-owned stand-in for /etc: what an attacker wants root to write
  std::string decoy_digest;

  world() {
    decoy = root + "/decoy_etc";
    put_dir(decoy, 0755);
    put_file(decoy + "/app.conf", "decoy app.conf\n", 0644);
    put_file(decoy + "/hosts", "127.0.0.1 localhost\n", 0644);
    put_file(decoy + "/shadow", "root:*:19000:0:99999:7:::\n", 0600);
    put_dir(decoy + "/sudoers.d", 0750);
    decoy_digest = tree_digest(decoy);
  }

  bool decoy_untouched() const { return tree_digest(decoy) == decoy_digest; }

  user_identity nobody() const {
    user_identity u;
    u.uid = kNobody;
    u.gid = kNogroup;
    u.groups = {kNogroup};
    u.name = "nobody";
    u.home = root + "/home";
    u.shell = "/bin/zsh";
    return u;
  }
};

bool have_root() { return ::geteuid() == 0; }

std::string octal(unsigned mode) {
  char text[16];
  std::snprintf(text, sizeof text, "0%o", mode);
  return text;
}

#define HOSTCFG_NEED_ROOT()                                                      \
  if (!have_root()) {                                                            \
    HOSTCFG_SKIP("the attack suite needs root (it acts as root and as nobody)"); \
    return;                                                                      \
  }

/// Outcome tally of one sweep: `points` calls the hook fired before, `landed` of them with the
/// attacker's change really in place (its own system calls succeeded and were checked).
struct sweep_tally {
  std::size_t points = 0, landed = 0, refused = 0, completed = 0;
  std::map<std::string, std::size_t> reasons;
  std::string text() const {
    std::string out = std::to_string(landed) + " of " + std::to_string(points) +
                      " swaps landed inside the window; refused " + std::to_string(refused) + ", completed " +
                      std::to_string(completed) + " (";
    for (const auto& [why, n] : reasons) out += why + " x" + std::to_string(n) + "; ";
    return out + ")";
  }
};

std::string short_reason(const apply_report& r) {
  for (const auto& e : r.events)
    if (e.failure) return std::string(e.failure->code.message()).substr(0, 40);
  return "ok";
}

/// Sweeps "replace the target by a hard link to the decoy's shadow" over every call of one apply,
/// calling `check(k, report)` after each point.
template <class Ctx, class Check>
sweep_tally hard_link_sweep(world& w, hooked_syscalls& hooks, Ctx& ctx, const ManagedFile& target, Check check) {
  grant allowed;
  allowed.elevated = true;
  sweep_tally tally;
  const std::string& file = target.path;
  for (std::size_t k = 0; k < 4000; ++k) {
    ::unlink(file.c_str());
    put_file(file, "old\n", 0644);
    ledgers books;
    hooks.disarm();
    auto probed = target.probe(ctx, books);
    REQUIRE(probed);
    auto p = target.make_plan(*probed);
    REQUIRE(p.changes.size() == 1);
    bool landed = false;
    hooks.arm(k, [&] {
      as_fs_identity(0, 0, [&] {
        ::unlink(file.c_str());
        struct ::stat linked {}, shadow {};
        landed = ::link((w.decoy + "/shadow").c_str(), file.c_str()) == 0 && ::lstat(file.c_str(), &linked) == 0 &&
                 ::lstat((w.decoy + "/shadow").c_str(), &shadow) == 0 && linked.st_ino == shadow.st_ino &&
                 linked.st_nlink == 2;
      });
    });
    auto done = target.apply(ctx, p, allowed, books);
    if (!hooks.fired()) break;
    ++tally.points;
    if (landed) ++tally.landed;
    if (done.ok()) ++tally.completed;
    else ++tally.refused;
    ++tally.reasons[short_reason(done)];
    check(k, done);
  }
  ::unlink(file.c_str());
  return tally;
}

}  // namespace

// ---------------------------------------------------------------- 1. parent swapped for a symlink

TEST_CASE("attack: a user-writable parent swapped for a symlink to an /etc-like dir at every call of apply writes nothing there") {
  HOSTCFG_NEED_ROOT();
  world w;
  user_identity user = w.nobody();
  put_dir(user.home, 0755, kNobody, kNogroup);
  const std::string conf = user.home + "/conf", moved = user.home + "/conf.moved", file = conf + "/app.conf";
  auto reset = [&] {
    remove_tree(conf);
    remove_tree(moved);
    put_dir(conf, 0755, kNobody, kNogroup);
    put_file(file, "user's old bytes\n", 0644, kNobody, kNogroup);
  };
  // The attacker (nobody, who owns home) moves the directory away and plants a link to the decoy.
  bool landed = false;  // the last swap put a link to the decoy where the directory was
  auto swap = [&] {
    as_fs_identity(kNobody, kNogroup, [&] {
      struct ::stat st {};
      landed = ::rename(conf.c_str(), moved.c_str()) == 0 && ::symlink(w.decoy.c_str(), conf.c_str()) == 0 &&
               ::lstat(conf.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
      if (landed) (void)::lchown(conf.c_str(), kNobody, kNogroup);
    });
  };

  hooked_syscalls hooks;
  PosixFs fs(hooks.table());
  RootFor priv(user);  // a root process installing for nobody: the user's part runs as nobody
  context ctx(fs, priv, "com.example.attack");
  ManagedFile target{file, "hostcfg's new bytes\n", 0644};
  target.take_over = true;
  grant allowed;
  allowed.elevated = true;

  sweep_tally tally;
  for (std::size_t k = 0; k < 4000; ++k) {
    reset();
    ledgers books;
    hooks.disarm();
    auto probed = target.probe(ctx, books);
    REQUIRE(probed);
    auto p = target.make_plan(*probed);
    REQUIRE(p.changes.size() == 1);
    CHECK_FALSE(p.changes[0].needs_elevation);  // nobody may write conf: no root write at all
    landed = false;
    hooks.arm(k, swap);
    auto done = target.apply(ctx, p, allowed, books);
    if (!hooks.fired()) break;  // k is past the last call: the window is swept
    ++tally.points;
    if (landed) ++tally.landed;
    if (done.ok()) ++tally.completed;
    else ++tally.refused;
    ++tally.reasons[short_reason(done)];
    CHECK_MESSAGE(w.decoy_untouched(), "swap before call " << k << " wrote into the decoy");
    // Wherever the bytes went, it was the user's own directory (renamed), never the decoy.
    if (done.ok()) CHECK(slurp(moved + "/app.conf") == "hostcfg's new bytes\n");
  }
  MESSAGE("parent swap, acting as the user: " << tally.text());
  CHECK(tally.landed > 10);

  // Root itself never writes below the user-writable parent, swapped or not.
  sweep_tally root_tally;
  for (std::size_t k = 0; k < 4000; ++k) {
    reset();
    landed = false;
    hooks.arm(k, swap);
    auto written = fs.replace_file(actor::root(), file, "root's bytes\n", replace_options{});
    if (!hooks.fired()) {
      CHECK_FALSE(written);  // unswapped: refused as unsafe
      if (!written) CHECK(written.error().is(errc::unsafe_path));
      break;
    }
    ++root_tally.points;
    if (landed) ++root_tally.landed;
    CHECK_FALSE(written);
    if (!written) ++root_tally.refused, ++root_tally.reasons[written.error().code.message().substr(0, 40)];
    else ++root_tally.completed;
    CHECK(w.decoy_untouched());
  }
  MESSAGE("parent swap, root writing directly: " << root_tally.text());
  CHECK(root_tally.completed == 0);
  CHECK(root_tally.landed > 0);
}

// ---------------------------------------------------------------- 2. symlink at the temp name

TEST_CASE("attack: symlinks planted at the temp-file names are never followed; a fresh name is used") {
  HOSTCFG_NEED_ROOT();
  world w;
  const std::string etc = w.root + "/etc", file = etc + "/app.conf";
  put_dir(etc, 0755);
  hooked_syscalls hooks;
  hooks.deterministic_random(true);
  // The first four names PosixFs will try are taken: links to the decoy, one dangling into it.
  for (unsigned n = 0; n < 4; ++n) {
    std::string planted = etc + "/" + hooked_syscalls::temp_name("app.conf", n);
    std::string to = n == 3 ? w.decoy + "/new-file" : w.decoy + "/app.conf";
    REQUIRE(::symlink(to.c_str(), planted.c_str()) == 0);
  }
  PosixFs fs(hooks.table());
  user_identity root_user = w.nobody();
  root_user.uid = 0, root_user.gid = 0, root_user.groups = {0};
  RootFor priv(root_user);
  context ctx(fs, priv, "com.example.attack");
  ctx.user_record.path = w.root + "/records/user.record";
  ctx.system_record.path = w.root + "/records/system.record";
  ManagedFile target{file, "content\n", 0640};
  auto report = converge(ctx, target);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(report->out_of_sync.empty());
  CHECK(slurp(file) == "content\n");
  struct ::stat st {};
  REQUIRE(::lstat(file.c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  CHECK((st.st_mode & 07777) == 0640);
  CHECK(w.decoy_untouched());
  CHECK(::access((w.decoy + "/new-file").c_str(), F_OK) != 0);
  // The planted links are still there, still links (never opened, never removed as "stale").
  for (unsigned n = 0; n < 4; ++n) {
    struct ::stat lst {};
    CHECK(::lstat((etc + "/" + hooked_syscalls::temp_name("app.conf", n)).c_str(), &lst) == 0);
    CHECK(S_ISLNK(lst.st_mode));
  }
  MESSAGE("temp-name plant: " << hooks.random_calls() << " temp names drawn, 4 were planted links");
  CHECK(hooks.random_calls() >= 5);
}

TEST_CASE("attack: a symlink planted at the temp name just before it is created is not followed") {
  HOSTCFG_NEED_ROOT();
  world w;
  user_identity user = w.nobody();
  put_dir(user.home, 0755, kNobody, kNogroup);
  const std::string file = user.home + "/.zshrc";
  hooked_syscalls hooks;
  hooks.deterministic_random(true);
  PosixFs fs(hooks.table());
  sweep_tally tally;
  std::size_t collided = 0;
  for (std::size_t k = 0; k < 4000; ++k) {
    put_file(file, "export A=1\n", 0644, kNobody, kNogroup);
    for (unsigned n = 0; n < 4; ++n) remove_tree(user.home + "/" + hooked_syscalls::temp_name(".zshrc", n));
    hooks.deterministic_random(true);
    // The attacker plants the name of the first draw once the draw is made: just before call k.
    bool landed = false;
    hooks.arm(k, [&] {
      as_fs_identity(kNobody, kNogroup, [&] {
        std::string planted = user.home + "/" + hooked_syscalls::temp_name(".zshrc", 0);
        landed = ::symlink((w.decoy + "/app.conf").c_str(), planted.c_str()) == 0;
      });
    });
    auto written = fs.replace_file(user.as_actor(), file, "export A=2\n", replace_options{});
    if (!hooks.fired()) break;
    ++tally.points;
    if (landed) ++tally.landed;
    if (hooks.random_calls() > 1) ++collided;  // the plant beat O_EXCL: a second name was drawn
    if (written) ++tally.completed, ++tally.reasons["ok"];
    else ++tally.refused, ++tally.reasons[written.error().code.message().substr(0, 40)];
    CHECK(w.decoy_untouched());
    if (written) CHECK(slurp(file) == "export A=2\n");
  }
  MESSAGE("temp-name race as the user: " << tally.text() << "; " << collided
                                          << " plants took the name before O_EXCL and forced a new one");
  CHECK(tally.landed > 5);
  CHECK(collided > 0);
}

// ---------------------------------------------------------------- 3. hard link as the target

TEST_CASE("attack: a hard link to a root-owned file placed as the target is refused, before and during apply") {
  HOSTCFG_NEED_ROOT();
  world w;
  const std::string etc = w.root + "/etc", file = etc + "/app.conf";
  put_dir(etc, 0755);
  user_identity root_user = w.nobody();
  root_user.uid = 0, root_user.gid = 0, root_user.groups = {0};
  hooked_syscalls hooks;
  PosixFs fs(hooks.table());
  RootFor priv(root_user);
  context ctx(fs, priv, "com.example.attack");
  ManagedFile target{file, "ours\n", 0644};
  target.take_over = true;

  SUBCASE("planted before the run: probe reports a conflict, apply has nothing to do") {
    REQUIRE(::link((w.decoy + "/shadow").c_str(), file.c_str()) == 0);
    ledgers books;
    auto probed = target.probe(ctx, books);
    REQUIRE(probed);
    REQUIRE(probed->items.size() == 1);
    CHECK(probed->items[0].state == item_state::conflict);
    CHECK(probed->items[0].detail.find("hard link") != std::string::npos);
    CHECK(target.make_plan(*probed).empty());
    auto direct = fs.replace_file(actor::root(), file, "ours\n", replace_options{});
    REQUIRE_FALSE(direct);
    CHECK(direct.error().is_errno(EMLINK));
    HostsEntry hosts{"127.0.0.1", {"kubernetes.docker.internal"}};
    hosts.path = file;
    auto hp = hosts.probe(ctx, books);
    REQUIRE(hp);
    CHECK(hosts.make_plan(*hp).empty());
    CHECK(slurp(w.decoy + "/shadow") == "root:*:19000:0:99999:7:::\n");
    REQUIRE(::unlink(file.c_str()) == 0);  // the planted link itself, so the decoy's nlink is back
    CHECK(w.decoy_untouched());
  }
  SUBCASE("swapped in before every call of apply") {
    auto tally = hard_link_sweep(w, hooks, ctx, target, [&](std::size_t k, const apply_report& done) {
      // The decoy inode keeps its bytes and owner: at most the name was replaced by a new inode.
      CHECK_MESSAGE(slurp(w.decoy + "/shadow") == "root:*:19000:0:99999:7:::\n", "k=" << k << " " << short_reason(done));
      struct ::stat st {};
      REQUIRE(::stat((w.decoy + "/shadow").c_str(), &st) == 0);
      CHECK(st.st_uid == 0);
    });
    MESSAGE("hard-link swap: " << tally.text());
    CHECK(tally.landed > 10);
  }
}

// Regression (found by this suite): ManagedFile used to fix the mode by path after the rename, so a
// hard link swapped in between got its shared inode chmod'ed. The mode now goes on the temp file
// before the rename.
TEST_CASE("attack: a hard link swapped in after the rename keeps the decoy's mode (the mode is set on the temp before the rename)") {
  HOSTCFG_NEED_ROOT();
  world w;
  const std::string file = w.root + "/etc/app.conf";
  put_dir(w.root + "/etc", 0755);
  user_identity root_user = w.nobody();
  root_user.uid = 0, root_user.gid = 0, root_user.groups = {0};
  hooked_syscalls hooks;
  PosixFs fs(hooks.table());
  RootFor priv(root_user);
  context ctx(fs, priv, "com.example.attack");
  ManagedFile target{file, "ours\n", 0644};
  target.take_over = true;
  std::size_t changed_mode = 0;
  std::string first_point;
  auto tally = hard_link_sweep(w, hooks, ctx, target, [&](std::size_t k, const apply_report& done) {
    struct ::stat st {};
    REQUIRE(::stat((w.decoy + "/shadow").c_str(), &st) == 0);
    if ((st.st_mode & 07777) != 0600) {
      if (!changed_mode++)
        first_point = "first at the swap before call " + std::to_string(k) + " (" + short_reason(done) +
                      "): the decoy's mode became " + octal(st.st_mode & 07777) +
                      "; calls after the swap: " + hooks.log_text(k);
      REQUIRE(::chmod((w.decoy + "/shadow").c_str(), 0600) == 0);  // restore, to find every such point
    }
  });
  CHECK_MESSAGE(changed_mode == 0, first_point);
  MESSAGE("hard-link swap after the rename: " << changed_mode << " of " << tally.points << " points chmod'ed the decoy");
}

// ---------------------------------------------------------------- 4. FIFO or device

TEST_CASE("attack: a FIFO or a device where a file is expected is refused without blocking") {
  HOSTCFG_NEED_ROOT();
  world w;
  const std::string etc = w.root + "/etc";
  put_dir(etc, 0755);
  user_identity root_user = w.nobody();
  root_user.uid = 0, root_user.gid = 0, root_user.groups = {0};
  hooked_syscalls hooks;
  PosixFs fs(hooks.table());
  RootFor priv(root_user);
  context ctx(fs, priv, "com.example.attack");
  ::alarm(120);  // a blocked open would hang here: SIGALRM ends the run as a failure instead
  grant allowed;
  allowed.elevated = true;

  SUBCASE("planted before the run") {
    const std::string fifo = etc + "/app.conf", dev = etc + "/hosts";
    REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
    REQUIRE(::mknod(dev.c_str(), S_IFCHR | 0644, makedev(1, 3)) == 0);  // a /dev/null twin
    ManagedFile f{fifo, "x\n", 0644};
    f.take_over = true;
    HostsEntry h{"127.0.0.1", {"kubernetes.docker.internal"}};
    h.path = dev;
    ctx.user_record.path = w.root + "/records/user.record";
    ctx.system_record.path = w.root + "/records/system.record";
    auto report = converge(ctx, f, h);
    REQUIRE(report);
    REQUIRE(report->steps.size() == 2);
    CHECK(report->steps[0].before.items[0].state == item_state::conflict);
    CHECK(report->steps[1].before.items[0].state == item_state::conflict);
    CHECK(report->steps[0].planned.empty());
    CHECK(report->steps[1].planned.empty());
    struct ::stat st {};
    REQUIRE(::lstat(fifo.c_str(), &st) == 0);
    CHECK(S_ISFIFO(st.st_mode));
    REQUIRE(::lstat(dev.c_str(), &st) == 0);
    CHECK(S_ISCHR(st.st_mode));
    auto direct = fs.read_file(actor::root(), fifo, 1024);
    REQUIRE_FALSE(direct);
    CHECK(direct.error().is_errno(EINVAL));
  }
  SUBCASE("a FIFO swapped in before every call of apply") {
    const std::string file = etc + "/app.conf";
    ManagedFile target{file, "ours\n", 0644};
    target.take_over = true;
    sweep_tally tally;
    for (std::size_t k = 0; k < 4000; ++k) {
      ::unlink(file.c_str());
      put_file(file, "old\n", 0644);
      ledgers books;
      hooks.disarm();
      auto probed = target.probe(ctx, books);
      REQUIRE(probed);
      auto p = target.make_plan(*probed);
      bool landed = false;
      hooks.arm(k, [&] {
        as_fs_identity(0, 0, [&] {
          ::unlink(file.c_str());
          struct ::stat st {};
          landed = ::mkfifo(file.c_str(), 0644) == 0 && ::lstat(file.c_str(), &st) == 0 && S_ISFIFO(st.st_mode);
        });
      });
      auto done = target.apply(ctx, p, allowed, books);
      if (!hooks.fired()) break;
      ++tally.points;
      if (landed) ++tally.landed;
      if (done.ok()) ++tally.completed;
      else ++tally.refused;
      ++tally.reasons[short_reason(done)];
      CHECK(w.decoy_untouched());
    }
    MESSAGE("FIFO swap: " << tally.text());
    CHECK(tally.landed > 10);
  }
  ::alarm(0);
}

// ---------------------------------------------------------------- 5. a file growing while read

TEST_CASE("attack: a hosts file growing while hostcfg reads it never loses the appended bytes") {
  HOSTCFG_NEED_ROOT();
  world w;
  const std::string etc = w.root + "/etc", file = etc + "/hosts";
  put_dir(etc, 0755);
  std::string base;
  // 480 KB: PosixFs reads it with one read() sized from fstat, then one read() that sees EOF (or
  // more bytes, when it grew): the append lands after either of them.
  for (int i = 0; i < 20000; ++i) base += "0.0.0.0 ad" + std::to_string(i) + ".example\n";
  const std::string grown = "10.1.2.3 grown.example\n";
  user_identity root_user = w.nobody();
  root_user.uid = 0, root_user.gid = 0, root_user.groups = {0};
  hooked_syscalls hooks;
  PosixFs fs(hooks.table());
  RootFor priv(root_user);
  context ctx(fs, priv, "com.example.attack");
  HostsEntry entry{"127.0.0.1", {"kubernetes.docker.internal"}};
  entry.path = file;
  grant allowed;
  allowed.elevated = true;
  bool grew = false;
  auto grow_after_reads = [&](int reads_before) {
    auto count = std::make_shared<int>(0);
    grew = false;
    hooks.on_kind(4, [&, count, reads_before] {
      if ((*count)++ < reads_before) return false;
      if (grew) return false;
      grew = true;
      as_fs_identity(0, 0, [&] {
        int fd = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd >= 0) (void)!::write(fd, grown.data(), grown.size()), ::close(fd);
      });
      return true;
    });
  };

  std::size_t refused = 0, completed = 0;
  for (int phase = 0; phase < 2; ++phase) {      // 0: grows during probe's read, 1: during apply's read
    for (int reads = 0; reads < 2; ++reads) {    // after the n-th read call of that phase
      put_file(file, base, 0644);
      ledgers books;
      if (phase == 0) grow_after_reads(reads);
      auto probed = entry.probe(ctx, books);
      REQUIRE(probed);
      auto p = entry.make_plan(*probed);
      if (phase == 1) grow_after_reads(reads);
      auto done = entry.apply(ctx, p, allowed, books);
      hooks.on_kind(-1, nullptr);
      CHECK_MESSAGE(grew, "phase " << phase << " read " << reads << ": the file never grew (no such read call)");
      std::string after = slurp(file);
      CHECK_MESSAGE(after.find(grown) != std::string::npos, "phase " << phase << " read " << reads << ": lost");
      CHECK(after.compare(0, base.size(), base) == 0);
      if (done.ok() && done.changed()) {
        ++completed;
      } else {
        ++refused;
        REQUIRE(done.first_failure());
        CHECK(done.first_failure()->is(errc::changed_since_probe));
      }
      // A re-run converges and keeps the grown line.
      auto again = entry.probe(ctx, books);
      REQUIRE(again);
      auto done_again = entry.apply(ctx, entry.make_plan(*again), allowed, books);
      CHECK(done_again.ok());
      std::string final_bytes = slurp(file);
      CHECK(final_bytes.find(grown) != std::string::npos);
      CHECK(final_bytes.find("127.0.0.1\tkubernetes.docker.internal") != std::string::npos);
    }
  }
  MESSAGE("growing file: " << refused << " edits refused as changed since probe, " << completed
                           << " completed; the appended line survived in every case");
  CHECK(refused > 0);

  // Growing past the bound while being read: refused as too large, file untouched.
  put_file(file, base, 0644);
  entry.max_bytes = base.size() + 4;
  grow_after_reads(0);
  ledgers books;
  auto probed = entry.probe(ctx, books);
  hooks.on_kind(-1, nullptr);
  REQUIRE(probed);
  CHECK(probed->items[0].state == item_state::conflict);
  CHECK(probed->items[0].detail.find("bound") != std::string::npos);
  CHECK(slurp(file) == base + grown);
}

// ---------------------------------------------------------------- 6. hostile environment

TEST_CASE("attack: hostile HOME, TMPDIR, PATH, XDG_CONFIG_HOME and ZDOTDIR are not consulted while privileged") {
  HOSTCFG_NEED_ROOT();
  world w;
  user_identity user = w.nobody();
  put_dir(user.home, 0755, kNobody, kNogroup);
  put_file(user.home + "/.zshrc", "export EDITOR=vi\n", 0644, kNobody, kNogroup);
  const std::string evil = w.root + "/evil";
  put_dir(evil, 0777);
  for (const char* d : {"home", "tmp", "bin", "xdg", "zdot"}) put_dir(evil + "/" + d, 0777);
  // Every command an implementation might shell out to leaves a mark when run from the evil PATH.
  for (const char* cmd : {"sh", "cp", "mv", "ln", "launchctl", "sudo", "osascript", "pkexec", "id", "getent", "zsh"})
    put_file(evil + "/bin/" + cmd, "#!/bin/sh\ntouch " + evil + "/ran-" + cmd + "\n", 0755);
  put_dir(w.root + "/etc", 0755);
  put_file(w.root + "/etc/hosts", "127.0.0.1 localhost\n", 0644);
  put_dir(w.root + "/app", 0755);
  put_file(w.root + "/app/docker", "#!/bin/sh\n", 0755);
  put_dir(w.root + "/usr", 0755);
  put_dir(w.root + "/usr/local", 0755);
  put_dir(w.root + "/usr/local/bin", 0755);
  std::string evil_digest = tree_digest(evil);

  std::map<std::string, std::string> saved;
  for (const char* var : {"HOME", "TMPDIR", "PATH", "XDG_CONFIG_HOME", "ZDOTDIR"})
    if (const char* v = std::getenv(var)) saved[var] = v;
  ::setenv("HOME", (evil + "/home").c_str(), 1);
  ::setenv("TMPDIR", (evil + "/tmp").c_str(), 1);
  ::setenv("PATH", (evil + "/bin").c_str(), 1);
  ::setenv("XDG_CONFIG_HOME", (evil + "/xdg").c_str(), 1);
  ::setenv("ZDOTDIR", (evil + "/zdot").c_str(), 1);

  PosixFs fs;
  RootFor priv(user);
  context ctx(fs, priv, "com.example.attack");
  ctx.system_record.path = w.root + "/var/lib/hostcfg/attack.record";
  ManagedFile conf{w.root + "/etc/app.conf", "setting = 1\n", 0644};
  HostsEntry hosts{"127.0.0.1", {"kubernetes.docker.internal"}};
  hosts.path = w.root + "/etc/hosts";
  SymlinkSet links;
  links.links.push_back(link_spec{w.root + "/usr/local/bin/docker", w.root + "/app/docker"});
  ShellProfilePathEdit profile{user.home + "/.docker/bin"};
  auto report = converge(ctx, conf, hosts, links, profile);
  const std::string hosts_after = slurp(w.root + "/etc/hosts"), conf_after = slurp(w.root + "/etc/app.conf");
  const std::string zshrc_after = slurp(user.home + "/.zshrc");
  char link_target[4096] = {};
  (void)!::readlink((w.root + "/usr/local/bin/docker").c_str(), link_target, sizeof link_target - 1);
  auto undone = uninstall(ctx, conf, hosts, links, profile);

  for (const char* var : {"HOME", "TMPDIR", "PATH", "XDG_CONFIG_HOME", "ZDOTDIR"}) {
    if (saved.count(var)) ::setenv(var, saved[var].c_str(), 1);
    else ::unsetenv(var);
  }
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(report->out_of_sync.empty());
  CHECK(report->steps.size() == 4);
  CHECK(hosts_after.find("127.0.0.1\tkubernetes.docker.internal\n") != std::string::npos);
  CHECK(conf_after == "setting = 1\n");
  CHECK_MESSAGE(zshrc_after.find(".docker/bin") != std::string::npos, zshrc_after);  // edited in the given home
  CHECK(std::string(link_target) == w.root + "/app/docker");
  CHECK(ctx.user_record.path.rfind(user.home + "/", 0) == 0);  // the record sits in the given home
  CHECK(tree_digest(evil) == evil_digest);                        // nothing landed in the decoys, nothing ran
  CHECK(w.decoy_untouched());
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(slurp(w.root + "/etc/hosts") == "127.0.0.1 localhost\n");
  CHECK(slurp(user.home + "/.zshrc") == "export EDITOR=vi\n");
  CHECK(tree_digest(evil) == evil_digest);
}

// ---------------------------------------------------------------- 7. tampered user record

TEST_CASE("attack: a tampered user record cannot make root restore bytes into a root-owned file") {
  HOSTCFG_NEED_ROOT();
  world w;
  user_identity user = w.nobody();
  put_dir(user.home, 0755, kNobody, kNogroup);
  put_dir(w.root + "/etc", 0755);
  const std::string file = w.root + "/etc/app.conf";
  PosixFs fs;
  RootFor priv(user);
  context ctx(fs, priv, "com.example.attack");
  ctx.system_record.path = w.root + "/var/lib/hostcfg/attack.record";
  ManagedFile conf{file, "system\n", 0644};

  // What the user forges: "hostcfg took this file over; its original bytes were these".
  auto forge = [&](std::map<std::string, std::string> fields) {
    record forged{ctx.app_id, {}};
    forged.put(record_item{conf.id(), "managed_file", std::move(fields)});
    std::string dir = user.home + "/.local/state/hostcfg";
    for (std::string d : {user.home + "/.local", user.home + "/.local/state", dir}) put_dir(d, 0700, kNobody, kNogroup);
    put_file(ctx.user_record.path, serialize_record(forged), 0600, kNobody, kNogroup);
  };

  SUBCASE("no privileged record: the forged restore is not done as root") {
    put_file(file, "system\n", 0644);
    forge({{"created", "0"}, {"original", "pwned\n"}, {"original_mode", "438"}, {"written", "system\n"}, {"mode", "420"},
           {"dirs", ""}});
    auto undone = uninstall(ctx, conf);
    REQUIRE(undone);
    MESSAGE("forged restore: " << undone->render_text());
    CHECK_FALSE(undone->ok());  // attempted as the user, refused by the kernel
    CHECK(slurp(file) == "system\n");
    struct ::stat st {};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0644);
    CHECK(st.st_uid == 0);
  }
  SUBCASE("no privileged record: a forged 'created' does not make root delete the file") {
    put_file(file, "system\n", 0644);
    forge({{"created", "1"}, {"written", "system\n"}, {"mode", "420"}, {"dirs", w.root + "/etc\n"}});
    auto undone = uninstall(ctx, conf);
    REQUIRE(undone);
    CHECK(slurp(file) == "system\n");
    CHECK(::access((w.root + "/etc").c_str(), F_OK) == 0);
  }
  SUBCASE("a privileged record exists: it alone decides, the forged user item is ignored") {
    ::unlink(file.c_str());
    auto made = converge(ctx, conf);
    REQUIRE(made);
    REQUIRE(made->ok());
    REQUIRE(made->system_record_written);
    CHECK(slurp(file) == "system\n");
    forge({{"created", "0"}, {"original", "pwned\n"}, {"original_mode", "438"}, {"written", "system\n"}, {"mode", "420"},
           {"dirs", ""}});
    auto undone = uninstall(ctx, conf);
    REQUIRE(undone);
    CHECK(undone->ok());
    CHECK(::access(file.c_str(), F_OK) != 0);  // removed, as the root-owned record says: it created it
  }
  SUBCASE("a forged user record for the hosts file does not make root rewrite it") {
    const std::string hosts_path = w.root + "/etc/hosts";
    const std::string original = "127.0.0.1 localhost\n10.0.0.1 intranet.example\n";
    put_file(hosts_path, original, 0644);
    HostsEntry hosts{"127.0.0.1", {"kubernetes.docker.internal"}};
    hosts.path = hosts_path;
    record forged{ctx.app_id, {}};
    forged.put(record_item{hosts.id(), "hosts_entry",
                           {{"path", hosts_path}, {"created", "1"}, {"section", ""}, {"disabled", "evil 1.2.3.4\n"}}});
    for (std::string d : {user.home + "/.local", user.home + "/.local/state", user.home + "/.local/state/hostcfg"})
      put_dir(d, 0700, kNobody, kNogroup);
    put_file(ctx.user_record.path, serialize_record(forged), 0600, kNobody, kNogroup);
    auto undone = uninstall(ctx, hosts);
    REQUIRE(undone);
    CHECK(slurp(hosts_path) == original);
  }
  CHECK(w.decoy_untouched());
}

#endif  // __linux__
