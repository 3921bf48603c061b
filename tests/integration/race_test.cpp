// RELIABILITY F6 (two-hostcfg): two hostcfg writers of one file take turns (`lock_for_edit`), and
// each computes its edit from the bytes read under the lock, so both changes land and revert
// gives back the original bytes. Scripted interleavings on MemoryFs show what the lock and the
// re-read each do; then two real processes race on one profile under a root-owned directory.
//
// The PosixFs race: parent (app "a") and a forked child (app "b") each converge their own
// ShellProfilePathEdit block into one ~/.profile, released at the same moment through a pipe,
// then both uninstall, HOSTCFG_RACE_ROUNDS times (default 1000). After every converge the file
// must hold both blocks (in either order: exactly one of the two serial results), after every
// uninstall exactly the original bytes; every report must be free of failures.
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/backend/posix_fs.hpp>
#include <hostcfg/backend/rooted_fs.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/file_lock.hpp>
#include <hostcfg/primitives/managed_file.hpp>
#include <hostcfg/primitives/shell_profile_path_edit.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

#include "support/real_fs.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

const char* home = "/home/u";
const char* profile = "/home/u/.profile";
const char* original = "# the user's own lines\nexport EDITOR=vi\n";

user_identity the_user(uid_type uid) {
  return user_identity{uid, uid, {uid}, "u", home, "/bin/sh", std::nullopt, std::nullopt};
}

ShellProfilePathEdit edit_for(const char* dir) {
  ShellProfilePathEdit e{dir};
  e.files = {profile};
  return e;
}
const char* dir_a = "/home/u/a/bin";
const char* dir_b = "/home/u/b/bin";

// The file after `first` then `second` added their blocks one at a time (a serial history).
std::string serial(const std::string& first_app, const char* first_dir, const std::string& second_app,
                   const char* second_dir) {
  path_block_spec one{first_app, first_dir, home, shell_dialect::posix, std::nullopt};
  path_block_spec two{second_app, second_dir, home, shell_dialect::posix, std::nullopt};
  auto after_one = apply_profile_block(original, one);
  REQUIRE(after_one);
  auto after_two = apply_profile_block(after_one->bytes, two);
  REQUIRE(after_two);
  return after_two->bytes;
}

// A MemoryFs seen through a hook that runs before chosen operations: the other "process" of a
// scripted interleaving acts there, on the same tree.
class HookFs {
 public:
  explicit HookFs(MemoryFs& inner) : fs_(inner) {}
  /// Called with the operation's name and path before the operation runs.
  std::function<void(const std::string& op, std::string_view path)> before;

  result<file_status> lstat(const actor& a, std::string_view p) { return at("lstat", p), fs_.lstat(a, p); }
  result<file_status> stat(const actor& a, std::string_view p) { return at("stat", p), fs_.stat(a, p); }
  result<std::string> readlink(const actor& a, std::string_view p) { return at("readlink", p), fs_.readlink(a, p); }
  result<file_contents> read_file(const actor& a, std::string_view p, std::size_t max) {
    return at("read_file", p), fs_.read_file(a, p, max);
  }
  result<replace_outcome> replace_file(const actor& a, std::string_view p, std::string_view bytes,
                                       const replace_options& o) {
    return at("replace_file", p), fs_.replace_file(a, p, bytes, o);
  }
  result<void> symlink(const actor& a, std::string_view t, std::string_view p) {
    return at("symlink", p), fs_.symlink(a, t, p);
  }
  result<void> replace_symlink(const actor& a, std::string_view t, std::string_view p,
                               std::optional<file_status> e) {
    return at("replace_symlink", p), fs_.replace_symlink(a, t, p, e);
  }
  result<void> rename(const actor& a, std::string_view f, std::string_view t) {
    return at("rename", f), fs_.rename(a, f, t);
  }
  result<void> unlink(const actor& a, std::string_view p) { return at("unlink", p), fs_.unlink(a, p); }
  result<void> mkdir(const actor& a, std::string_view p, mode_type m) { return at("mkdir", p), fs_.mkdir(a, p, m); }
  result<void> rmdir(const actor& a, std::string_view p) { return at("rmdir", p), fs_.rmdir(a, p); }
  result<void> chmod(const actor& a, std::string_view p, mode_type m) { return at("chmod", p), fs_.chmod(a, p, m); }
  result<void> lchown(const actor& a, std::string_view p, uid_type u, gid_type g) {
    return at("lchown", p), fs_.lchown(a, p, u, g);
  }
  result<file_flags> get_flags(const actor& a, std::string_view p) { return at("get_flags", p), fs_.get_flags(a, p); }
  result<std::vector<std::string>> list_dir(const actor& a, std::string_view p) {
    return at("list_dir", p), fs_.list_dir(a, p);
  }
  result<fs_lock> lock(const actor& a, std::string_view p) { return at("lock", p), fs_.lock(a, p); }
  result<void> sync_dir(const actor& a, std::string_view p) { return at("sync_dir", p), fs_.sync_dir(a, p); }

 private:
  void at(const char* op, std::string_view p) {
    if (before) before(op, p);
  }
  MemoryFs& fs_;
};
static_assert(check_fs<HookFs>(), "HookFs forwards the whole Fs contract");

MemoryFs home_tree() {
  MemoryFs fs;
  fs.add_dir("/home", 0755, 0, 0);
  fs.add_dir(home, 0750, 501, 501);
  fs.add_file(profile, original, 0644, 501, 501);
  return fs;
}

const event* only_event(const converge_report& r) {
  REQUIRE(r.steps.size() == 1);
  REQUIRE(r.steps[0].applied.events.size() == 1);
  return &r.steps[0].applied.events[0];
}

/// Two hostcfg runs of a scripted interleaving on one home tree: A sees the tree through `hooked`
/// (so the test can make B act at a chosen point of A's run), B sees it directly. Both act for
/// the same user, who declines elevation.
struct two_runs {
  MemoryFs fs = home_tree();
  HookFs hooked{fs};
  ScriptedPrivilege priv_a{the_user(501), answer::declined};
  ScriptedPrivilege priv_b{the_user(501), answer::declined};
  context<HookFs, ScriptedPrivilege> ctx_a;
  context<MemoryFs, ScriptedPrivilege> ctx_b;

  explicit two_runs(const char* app_a = "a", const char* app_b = "b")
      : ctx_a(hooked, priv_a, app_a), ctx_b(fs, priv_b, app_b) {}
};

/// The same, both runs of one app id (two copies of the same app racing).
struct two_runs_of_one_app : two_runs {
  two_runs_of_one_app() : two_runs("app", "app") {}
};

}  // namespace

TEST_CASE_FIXTURE(two_runs, "F6: another hostcfg run writing between our probe and our lock: both blocks land") {
  std::optional<file_status> probed;
  std::optional<file_status> written_over;
  int b_runs = 0;
  hooked.before = [&](const std::string& op, std::string_view p) {
    if (op == "lock" && p == home && b_runs == 0) {
      // A has probed and planned; B now runs a whole converge before A can take the lock.
      probed = fs.status_of(profile);
      ++b_runs;
      auto b = converge(ctx_b, edit_for(dir_b));
      REQUIRE(b);
      CHECK(b->ok());
    }
    if (op == "replace_file" && p == profile) written_over = fs.status_of(profile);
  };
  auto a = converge(ctx_a, edit_for(dir_a));
  REQUIRE(a);
  CHECK(a->ok());
  CHECK(a->out_of_sync.empty());
  CHECK(only_event(*a)->kind == event_kind::changed);
  CHECK(b_runs == 1);
  // B changed the file after A's probe, so a compare-and-swap against A's probe would have fired;
  // A's bytes came from the read under its lock instead.
  REQUIRE(probed);
  REQUIRE(written_over);
  CHECK_FALSE(same_version(*probed, *written_over));
  CHECK(fs.file_bytes(profile) == std::optional<std::string>(serial("b", dir_b, "a", dir_a)));

  hooked.before = nullptr;
  REQUIRE(uninstall(ctx_a, edit_for(dir_a)));
  REQUIRE(uninstall(ctx_b, edit_for(dir_b)));
  CHECK(fs.file_bytes(profile) == std::optional<std::string>(original));
}

TEST_CASE_FIXTURE(two_runs, "F6: the lock keeps another hostcfg run out between our locked read and our write") {
  std::optional<converge_report> b_report;
  hooked.before = [&](const std::string& op, std::string_view p) {
    if (op == "replace_file" && p == profile && !b_report) {
      // A holds the lock on /home/u and has read the file: B must not get in. MemoryFs answers a
      // second lock with EWOULDBLOCK where flock would wait.
      auto b = converge(ctx_b, edit_for(dir_b));
      REQUIRE(b);
      b_report = *b;
    }
  };
  auto a = converge(ctx_a, edit_for(dir_a));
  REQUIRE(a);
  CHECK(a->ok());
  REQUIRE(b_report);
  const event* b_event = only_event(*b_report);
  CHECK(b_event->kind == event_kind::failed);
  REQUIRE(b_event->failure);
  CHECK(b_event->failure->is_errno(EWOULDBLOCK));
  CHECK(b_event->failure->op == "lock");
  CHECK(b_event->failure->path == home);
  // B wrote nothing: the file is A's edit of the original, and B recorded nothing.
  path_block_spec spec_a{"a", dir_a, home, shell_dialect::posix, std::nullopt};
  CHECK(fs.file_bytes(profile) == std::optional<std::string>(apply_profile_block(original, spec_a)->bytes));
  CHECK_FALSE(fs.status_of("/home/u/.local/state/hostcfg/b.record"));
  // Once A is done, B's next run lands its block after A's.
  hooked.before = nullptr;
  auto again = converge(ctx_b, edit_for(dir_b));
  REQUIRE(again);
  CHECK(again->ok());
  CHECK(fs.file_bytes(profile) == std::optional<std::string>(serial("a", dir_a, "b", dir_b)));
}

TEST_CASE("F5: an editor saving between the locked read and the write is never overwritten") {
  MemoryFs fs = home_tree();
  HookFs hooked(fs);
  ScriptedPrivilege priv(the_user(501), answer::declined);
  context ctx(hooked, priv, "a");
  bool saved = false;
  hooked.before = [&](const std::string& op, std::string_view p) {
    if (op == "replace_file" && p == profile && !saved) {
      saved = true;
      fs.add_file(profile, "editor saved this\n", 0644, 501, 501);  // an editor takes no lock
    }
  };
  auto a = converge(ctx, edit_for(dir_a));
  REQUIRE(a);
  const event* e = only_event(*a);
  CHECK(e->kind == event_kind::failed);
  REQUIRE(e->failure);
  CHECK(e->failure->is(errc::changed_since_probe));
  CHECK(fs.file_bytes(profile) == std::optional<std::string>("editor saved this\n"));
  CHECK_FALSE(fs.status_of("/home/u/.local/state/hostcfg/a.record"));
}

TEST_CASE("F5: an editor saving between probe and apply: both edits kept, decided again under the lock") {
  MemoryFs fs = home_tree();
  HookFs hooked(fs);
  ScriptedPrivilege priv(the_user(501), answer::declined);
  context ctx(hooked, priv, "a");
  int saves = 0;
  hooked.before = [&](const std::string& op, std::string_view p) {
    if (op == "lock" && p == home && saves == 0) {
      ++saves;
      fs.add_file(profile, "export EDITOR=nano\n", 0644, 501, 501);
    }
  };
  auto a = converge(ctx, edit_for(dir_a));
  REQUIRE(a);
  CHECK(a->ok());
  path_block_spec spec_a{"a", dir_a, home, shell_dialect::posix, std::nullopt};
  CHECK(fs.file_bytes(profile) ==
        std::optional<std::string>(apply_profile_block("export EDITOR=nano\n", spec_a)->bytes));

  SUBCASE("a file that is no longer the user's is refused, not edited") {
    MemoryFs fs2 = home_tree();
    HookFs hooked2(fs2);
    context ctx2(hooked2, priv, "a");
    bool swapped = false;
    hooked2.before = [&](const std::string& op, std::string_view p) {
      if (op == "lock" && p == home && !swapped) {
        swapped = true;
        fs2.add_file(profile, "root's now\n", 0644, 0, 0);
      }
    };
    auto r = converge(ctx2, edit_for(dir_a));
    REQUIRE(r);
    const event* e = only_event(*r);
    CHECK(e->kind == event_kind::failed);
    REQUIRE(e->failure);
    CHECK(e->failure->is(errc::changed_since_probe));
    CHECK(e->failure->message().find("conflict") != std::string::npos);
    CHECK(fs2.file_bytes(profile) == std::optional<std::string>("root's now\n"));
  }
}

TEST_CASE_FIXTURE(two_runs_of_one_app,
                  "F6: two runs of one app storing their records at once keep each other's items") {
  const std::string record_dir = "/home/u/.local/state/hostcfg";
  const std::string record_path = record_dir + "/app.record";
  // The record's directory exists (an earlier run made it), so stores lock it.
  fs.add_dir("/home/u/.local", 0700, 501, 501);
  fs.add_dir("/home/u/.local/state", 0700, 501, 501);
  fs.add_dir(record_dir, 0700, 501, 501);
  // B's file is in another directory than A's: A holds /home/u's lock from its item's write-ahead
  // to its rename, so a B editing there would wait for A (a MemoryFs lock says EWOULDBLOCK).
  fs.add_dir("/home/u/sub", 0700, 501, 501);
  bool b_ran = false;
  hooked.before = [&](const std::string& op, std::string_view p) {
    if (op == "lock" && p == record_dir && !b_ran) {
      // A loaded the (empty) record and is about to store its item (written ahead of its file):
      // B runs meanwhile.
      b_ran = true;
      auto b = converge(ctx_b, ManagedFile{"/home/u/sub/b.conf", "b\n", 0600});
      REQUIRE(b);
      CHECK(b->ok());
      CHECK(b->user_record_written);
    }
  };
  auto a = converge(ctx_a, ManagedFile{"/home/u/a.conf", "a\n", 0600});
  REQUIRE(a);
  CHECK(a->ok());
  CHECK(a->user_record_written);
  CHECK(b_ran);
  auto bytes = fs.file_bytes(record_path);
  REQUIRE(bytes);
  auto rec = parse_record(*bytes, record_path);
  REQUIRE(rec);
  CHECK(rec->app_id == "app");
  REQUIRE(rec->find("file:/home/u/a.conf"));
  REQUIRE(rec->find("file:/home/u/sub/b.conf"));
  CHECK(rec->find("file:/home/u/a.conf")->get("written") == "a\n");
  CHECK(rec->find("file:/home/u/sub/b.conf")->get("written") == "b\n");
  CHECK(rec->items.size() == 2);
  // Either run's uninstall finds its own item and leaves the other's.
  hooked.before = nullptr;
  REQUIRE(uninstall(ctx_a, ManagedFile{"/home/u/a.conf", "a\n", 0600}));
  CHECK_FALSE(fs.status_of("/home/u/a.conf"));
  CHECK(fs.file_bytes("/home/u/sub/b.conf") == std::optional<std::string>("b\n"));
  auto left = parse_record(*fs.file_bytes(record_path), record_path);
  REQUIRE(left);
  CHECK(left->items.size() == 1);
  CHECK(left->find("file:/home/u/sub/b.conf"));
}

TEST_CASE("rebase_record applies only this run's changes to what the record holds now") {
  record loaded{"app", {}};
  loaded.put(record_item{"x", "managed_file", {{"written", "1"}}});
  loaded.put(record_item{"gone", "managed_file", {{"written", "g"}}});
  record mine = loaded;
  mine.put(record_item{"x", "managed_file", {{"written", "2"}}});  // changed by this run
  mine.put(record_item{"new", "managed_file", {{"written", "n"}}});
  mine.erase("gone");
  record fresh = loaded;
  fresh.put(record_item{"other", "managed_file", {{"written", "o"}}});  // another run's
  record out = rebase_record(fresh, loaded, mine);
  CHECK(out.items.size() == 3);
  CHECK(out.find("x")->get("written") == "2");
  CHECK(out.find("new")->get("written") == "n");
  CHECK(out.find("other")->get("written") == "o");
  CHECK_FALSE(out.find("gone"));
  // Nothing of ours changed: what is there now is stored as it is.
  CHECK(rebase_record(fresh, loaded, loaded) == fresh);
}

namespace {

namespace stdfs = std::filesystem;
constexpr uid_type nobody = 65534;

using hostcfg_test::read_whole_file;

// A root-owned 0755 sandbox (on tmpfs when /dev/shm is root-owned and sticky, else /var/lib/hostcfg-tests),
// never a directory under world-writable /tmp: RootedFs walks it as a trusted path.
struct race_box {
  hostcfg_test::root_scratch_dir dir{"hostcfg-race", hostcfg_test::scratch_disk::tmpfs_first};
  std::string root = dir.path;
  race_box() {
    for (const char* d : {"/home", "/var", "/var/lib"}) REQUIRE(::mkdir((root + d).c_str(), 0755) == 0);
    REQUIRE(::mkdir((root + home).c_str(), 0750) == 0);
    REQUIRE(::chown((root + home).c_str(), nobody, nobody) == 0);
    {
      std::ofstream out(root + profile, std::ios::binary);
      out << original;
    }
    REQUIRE(::chmod((root + profile).c_str(), 0644) == 0);
    REQUIRE(::chown((root + profile).c_str(), nobody, nobody) == 0);
  }
};

// One racer's converge or uninstall on its own backends: 0 when every event is "changed" (its
// block added, or removed), else 1 with the events printed. A skipped revert (drift) counts too.
int run_once(const std::string& root, const char* app_id, const char* dir, bool install) {
  PosixFs posix;
  RootedFs<PosixFs> fs(posix, root);
  RootFor priv(the_user(nobody));
  context ctx(fs, priv, app_id);
  auto r = install ? converge(ctx, edit_for(dir)) : uninstall(ctx, edit_for(dir));
  if (!r) {
    std::fprintf(stderr, "%s: %s\n", app_id, r.error().message().c_str());
    return 1;
  }
  int bad = r->ok() && r->out_of_sync.empty() ? 0 : 1;
  for (const auto& n : r->notes)
    if (n.find("record could not be written") != std::string::npos) {
      bad = 1;  // the block would be written but forgotten: revert could not find it
      std::fprintf(stderr, "%s: %s\n", app_id, n.c_str());
    }
  for (const auto& s : r->steps) {
    if (s.failure) {
      bad = 1;
      std::fprintf(stderr, "%s: %s\n", app_id, s.failure->message().c_str());
    }
    for (const auto& e : s.applied.events)
      if (e.kind != event_kind::changed) {
        bad = 1;
        std::fprintf(stderr, "%s %s: %s %s\n", app_id, install ? "install" : "uninstall", e.path.c_str(),
                     e.message.c_str());
      }
  }
  return bad;
}

bool read_byte(int fd) {
  char c = 0;
  ssize_t n;
  do n = ::read(fd, &c, 1);
  while (n < 0 && errno == EINTR);
  return n == 1;
}
void write_byte(int fd) {
  char c = 'x';
  ssize_t n;
  do n = ::write(fd, &c, 1);
  while (n < 0 && errno == EINTR);
}

}  // namespace

TEST_CASE("F6: two hostcfg processes race on one profile, converge and uninstall, 1000 rounds") {
  if (::geteuid() != 0) {
    HOSTCFG_SKIP("needs root (a root-owned sandbox and files owned by nobody)");
    return;
  }
  int rounds = 1000;
  if (const char* env = std::getenv("HOSTCFG_RACE_ROUNDS")) rounds = std::atoi(env);
  REQUIRE(rounds > 0);
  race_box box;
  const std::string real_profile = box.root + profile;
  const std::string a_then_b = serial("a", dir_a, "b", dir_b);
  const std::string b_then_a = serial("b", dir_b, "a", dir_a);
  REQUIRE(a_then_b != b_then_a);

  int go[2];
  int done[2];
  REQUIRE(::pipe(go) == 0);
  REQUIRE(::pipe(done) == 0);
  std::fflush(nullptr);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Racer b: one converge or uninstall per "go", a result byte per step ('x' ok, else failed).
    ::close(go[1]);
    ::close(done[0]);
    int failures = 0;
    for (int step = 0; read_byte(go[0]); ++step) {
      int bad = run_once(box.root, "b", dir_b, step % 2 == 0);
      failures += bad;
      if (bad) {
        char c = 'f';
        (void)!::write(done[1], &c, 1);
      } else {
        write_byte(done[1]);
      }
    }
    ::_exit(failures > 100 ? 100 : failures);
  }
  ::close(go[0]);
  ::close(done[1]);

  int a_failures = 0;
  int b_failures = 0;
  int a_first = 0;
  int b_first = 0;
  int wrong_install = 0;
  int wrong_uninstall = 0;
  std::optional<std::string> first_wrong;
  auto started = std::chrono::steady_clock::now();
  for (int round = 0; round < rounds; ++round) {
    for (bool install : {true, false}) {
      write_byte(go[1]);  // both start now
      a_failures += run_once(box.root, "a", dir_a, install);
      char c = 0;
      REQUIRE(::read(done[0], &c, 1) == 1);
      if (c != 'x') ++b_failures;
      auto bytes = read_whole_file(real_profile);
      if (install) {
        if (bytes == a_then_b) ++a_first;
        else if (bytes == b_then_a) ++b_first;
        else ++wrong_install;
      } else if (bytes != std::optional<std::string>(original)) {
        ++wrong_uninstall;
      }
      if ((wrong_install || wrong_uninstall) && !first_wrong) first_wrong = bytes ? *bytes : "(no file)";
    }
    if (a_failures + b_failures + wrong_install + wrong_uninstall > 0) break;  // first bad round is enough
  }
  ::close(go[1]);  // the child's loop ends
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  MESSAGE("F6 race: " << rounds << " rounds in " << seconds << " s; installs landing a-then-b " << a_first
                      << ", b-then-a " << b_first << "; lost or mixed installs " << wrong_install
                      << ", uninstalls not back to the original " << wrong_uninstall << "; failed runs a " << a_failures
                      << ", b " << b_failures);
  if (first_wrong) MESSAGE("first wrong profile:\n" << *first_wrong);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(a_failures == 0);
  CHECK(b_failures == 0);
  CHECK(wrong_install == 0);
  CHECK(wrong_uninstall == 0);
  CHECK(a_first + b_first == rounds);
  CHECK(read_whole_file(real_profile) == std::optional<std::string>(original));
  // No temp file and no record is left once both uninstalled.
  for (const auto& entry : stdfs::recursive_directory_iterator(box.root)) {
    std::string name = entry.path().filename().string();
    CHECK_MESSAGE(name.find(".hostcfg-") == std::string::npos, entry.path().string());
    CHECK_MESSAGE(name.find(".record") == std::string::npos, entry.path().string());
  }
}
