// The conformance matrix (hostcfg/testing/conformance.hpp) over every backend: MemoryFs,
// OverlayFs over MemoryFs and over PosixFs, PosixFs in a root-owned dir under /var/lib/hostcfg-tests as root and
// from a process that dropped to nobody, RootedFs over PosixFs and over MemoryFs. Real ENOSPC
// (a 64 KiB tmpfs), EROFS (a tmpfs remounted read-only), EXDEV (/dev/shm/hostcfg-tests vs /var/lib/hostcfg-tests), EBUSY (a
// bind-mounted file) and an immutable file (chattr +i) where this machine allows them; each
// missing one is a printed skip. Every backend must report zero deviations.
#include "hostcfg/testing/conformance.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "hostcfg/backend/memory_fs.hpp"
#include "hostcfg/backend/overlay_fs.hpp"
#include "hostcfg/backend/posix_fs.hpp"
#include "hostcfg/backend/rooted_fs.hpp"
#include "support/real_fs.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;
using hostcfg::testing::conformance_report;
using hostcfg::testing::conformance_setup;
using hostcfg::testing::run_conformance;

namespace {

constexpr uid_type nobody = 65534;

bool is_root() { return ::geteuid() == 0; }

void write_raw(const std::string& path, const std::string& bytes, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

bool set_immutable(const std::string& path, bool on) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  int flags = 0;
  bool ok = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
  if (ok) {
    flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    ok = ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
  }
  ::close(fd);
  return ok;
}

/// A root-owned 0755 tree under /var/lib/hostcfg-tests with the real-kernel capabilities the matrix can use:
///   base/, nbase/ (for the nobody run), rbase/... are made by the tests; full/ is a 64 KiB tmpfs
///   (ENOSPC; also another device), ro/ a read-only tmpfs holding f (EROFS), mnt/hosts a
///   bind-mounted file (EBUSY), imm an immutable file, and shm/ a dir under /dev/shm (EXDEV).
/// Each capability the machine refuses is left empty with its reason in `why`.
struct real_tree {
  // Removed after the destructor's body has undone the mounts and the immutable flag.
  hostcfg_test::root_scratch_dir top_dir{"hostcfg-conformance"};
  std::string top = top_dir.path;
  std::string shm;
  std::string full, no_inodes, ro, mount_file, immutable, other_dev;
  std::vector<std::string> why;
  std::vector<std::string> mounts;

  real_tree() {
    if (!is_root()) {
      why.push_back("not root: no mounts, no chattr");
      return;
    }
    auto dir = [&](const std::string& name) {
      std::string p = top + "/" + name;
      REQUIRE(::mkdir(p.c_str(), 0755) == 0);
      REQUIRE(::chmod(p.c_str(), 0755) == 0);
      return p;
    };
    std::string f = dir("full");
    if (::mount("tmpfs", f.c_str(), "tmpfs", 0, "size=64k,mode=0755") == 0) {
      mounts.push_back(f);
      full = f;
    } else {
      why.push_back(std::string("mount -t tmpfs -o size=64k failed: ") + std::strerror(errno) + " (no ENOSPC case)");
    }
    // A tmpfs of 16 inodes holding `f`, filled with empty files until the next create fails.
    std::string n = dir("noinodes");
    if (::mount("tmpfs", n.c_str(), "tmpfs", 0, "size=64k,nr_inodes=16,mode=0755") == 0) {
      mounts.push_back(n);
      write_raw(n + "/f", "old\n");
      int made = 0;
      for (; made < 100; ++made) {
        const int fd = ::open((n + "/fill-" + std::to_string(made)).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) break;
        ::close(fd);
      }
      if (errno == ENOSPC && made < 100)
        no_inodes = n;
      else
        why.push_back(std::string("filling a tmpfs of 16 inodes ended with ") + std::strerror(errno) + " (no no-inode ENOSPC cases)");
    } else {
      why.push_back(std::string("mount -t tmpfs -o nr_inodes=16 failed: ") + std::strerror(errno) + " (no no-inode ENOSPC cases)");
    }
    std::string r = dir("ro");
    if (::mount("tmpfs", r.c_str(), "tmpfs", 0, "size=64k,mode=0755") == 0) {
      mounts.push_back(r);
      write_raw(r + "/f", "read-only\n");
      ::mkdir((r + "/e").c_str(), 0755);
      if (::mount(nullptr, r.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) == 0)
        ro = r;
      else
        why.push_back(std::string("remount read-only failed: ") + std::strerror(errno) + " (no EROFS case)");
    } else {
      why.push_back(std::string("mount -t tmpfs failed: ") + std::strerror(errno) + " (no EROFS case)");
    }
    std::string m = dir("mnt");
    write_raw(m + "/hosts", "bind target\n");
    write_raw(m + "/source", "bind source\n");
    if (::mount((m + "/source").c_str(), (m + "/hosts").c_str(), nullptr, MS_BIND, nullptr) == 0) {
      mounts.push_back(m + "/hosts");
      mount_file = m + "/hosts";
    } else {
      why.push_back(std::string("mount --bind of a file failed: ") + std::strerror(errno) + " (no EBUSY case)");
    }
    std::string i = dir("imm");
    write_raw(i + "/f", "locked\n");
    if (set_immutable(i + "/f", true))
      immutable = i + "/f";
    else
      why.push_back(std::string("chattr +i failed: ") + std::strerror(errno) + " (no immutable case)");
    struct ::stat a {}, b {};
    const std::string disk = hostcfg_test::scratch_base(hostcfg_test::scratch_disk::var_tmp);
    const std::string tmpfs = hostcfg_test::scratch_base(hostcfg_test::scratch_disk::tmpfs_first);
    if (::stat(tmpfs.c_str(), &a) == 0 && ::stat(disk.c_str(), &b) == 0 && a.st_dev != b.st_dev) {
      shm = hostcfg_test::make_scratch_dir("hostcfg-conformance", hostcfg_test::scratch_disk::tmpfs_first);
      other_dev = shm;
    }
    if (other_dev.empty()) why.push_back(tmpfs + " is on the same device as " + disk + " (no EXDEV case)");
  }
  ~real_tree() {
    for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) ::umount2(it->c_str(), MNT_DETACH);
    if (!immutable.empty()) set_immutable(immutable, false);
    std::error_code ec;
    if (!shm.empty()) std::filesystem::remove_all(shm, ec);
  }
  std::string make(const std::string& name) const {
    std::string p = top + "/" + name;
    REQUIRE(::mkdir(p.c_str(), 0755) == 0);
    REQUIRE(::chmod(p.c_str(), 0755) == 0);
    return p;
  }
  /// Like `make`, but a tmpfs mounted there when possible: creating inodes on a busy shared disk
  /// costs ~1 ms each, and the matrix arranges ~1500 of them per run. The root run keeps the real
  /// disk (`make`); the nobody and RootedFs runs use this.
  std::string make_fast(const std::string& name) {
    std::string p = make(name);
    if (is_root() && ::mount("tmpfs", p.c_str(), "tmpfs", 0, "size=16m,mode=0755") == 0) mounts.push_back(p);
    return p;
  }
  /// The setup for PosixFs (real paths) with every capability this machine gave.
  conformance_setup setup(const std::string& base, const std::string& name) const {
    conformance_setup s;
    s.base = base;
    s.user = actor{nobody, nobody, {}};
    s.backend_name = name;
    s.full_dir = full;
    s.no_inodes_dir = no_inodes;
    s.read_only_dir = ro;
    s.mount_point_file = mount_file;
    s.immutable_file = immutable;
    s.other_device_dir = other_dev;
    return s;
  }
  void print_missing() const {
    for (const auto& w : why) HOSTCFG_SKIP(w);
  }
};

/// A MemoryFs with the same capabilities MemoryFs can simulate: a second device, a mount point,
/// an immutable file, a full device and one without a free inode (EROFS it cannot: those cases
/// are declared skipped).
MemoryFs memory_tree(const std::string& top) {
  MemoryFs fs;
  fs.set_posix_rules();  // fail like PosixFs, the reference
  fs.add_dir(top + "/base", 0755, 0, 0);
  fs.add_dir(top + "/other", 0755, 0, 0);
  fs.set_device(top + "/other", 2);
  fs.add_file(top + "/mnt/hosts", "bind target\n");
  fs.set_mount_point(top + "/mnt/hosts");
  fs.add_file(top + "/imm/f", "locked\n");
  fs.set_flags(top + "/imm/f", file_flags{true, false});
  fs.add_file(top + "/noinodes/f", "old\n");
  fs.set_device(top + "/noinodes", 3);
  fs.set_inode_limit(3, 2);  // the directory and f: full
  fs.add_dir(top + "/full", 0755, 0, 0);
  fs.set_device(top + "/full", 4);
  fs.set_space_limit(4, 64 * 1024);  // as the 64 KiB tmpfs of the real tree
  return fs;
}

conformance_setup memory_setup(const std::string& top, const std::string& name) {
  conformance_setup s;
  s.base = top + "/base";
  s.user = actor{nobody, nobody, {}};
  s.backend_name = name;
  s.other_device_dir = top + "/other";
  s.mount_point_file = top + "/mnt/hosts";
  s.immutable_file = top + "/imm/f";
  s.no_inodes_dir = top + "/noinodes";
  s.full_dir = top + "/full";
  s.lock_waits = false;  // one thread: a second lock gives EWOULDBLOCK
  return s;
}

void expect_conformant(const conformance_report& report, std::size_t min_run) {
  MESSAGE(report.text());
  CHECK(report.run >= min_run);
  CHECK(report.passed == report.run);
  CHECK(report.deviations.empty());
}

std::size_t case_count() { return hostcfg::testing::conformance_cases<MemoryFs>().size(); }

/// PosixFs's real syscalls, except fsync: durability is not what the matrix checks (the sweeps
/// in posix_fs_test do), and the ~1500 fsyncs of arranging every case on ext4 take half a minute.
const syscall_table& no_fsync_syscalls() {
  static const syscall_table table = [] {
    syscall_table t = default_syscalls();
    t.fsync = [](void*, int) { return 0; };
    return t;
  }();
  return table;
}

/// RootedFs used to follow an intermediate link the user planted (PosixFs refuses with ELOOP); it
/// now applies PosixFs's trust rule, so it must conform exactly like the others.
const char* const rooted_known_deviation = "";

void expect_conformant_but(const conformance_report& report, std::size_t min_run, const std::string& known) {
  MESSAGE(report.text());
  CHECK(report.run >= min_run);
  CHECK(report.passed + report.deviations.size() == report.run);
  for (const auto& d : report.deviations) CHECK_MESSAGE(d == known, d);
  CHECK(report.deviations.empty());
}

}  // namespace

TEST_CASE("the matrix covers every operation and every listed failure mode") {
  auto cases = hostcfg::testing::conformance_cases<MemoryFs>();
  std::string names;
  for (const auto& c : cases) names += c.name + "\n";
  for (const char* op : {"lstat:", "stat:", "readlink:", "read_file:", "replace_file:", "symlink:", "replace_symlink:",
                         "rename:", "unlink:", "mkdir:", "rmdir:", "chmod:", "lchown:", "get_flags:", "list_dir:", "lock:"})
    CHECK_MESSAGE(("\n" + names).find(std::string("\n") + op) != std::string::npos, op);
  for (const char* e : {"ENOENT", "EACCES", "EPERM", "EEXIST", "ENOTDIR", "EISDIR", "ELOOP", "EXDEV", "EBUSY", "ENOSPC",
                        "EROFS"})
    CHECK_MESSAGE(names.find(e) != std::string::npos, e);
  CHECK(cases.size() > 100);
}

TEST_CASE("a drifting fake is caught: every deviation is reported at once, readably") {
  // A MemoryFs that got two errnos wrong and one success subtly wrong.
  struct drifting : MemoryFs {
    result<void> unlink(const actor& who, std::string_view path) {
      auto r = MemoryFs::unlink(who, path);
      if (!r && r.error().is_errno(EISDIR)) return fail_errno(EPERM, "unlink", std::string(path));  // macOS's answer
      return r;
    }
    result<void> mkdir(const actor& who, std::string_view path, mode_type mode) {
      auto r = MemoryFs::mkdir(who, path, mode);
      if (r && path_components(path).size() > 3) MemoryFs::chmod(actor::root(), path, mode & 0755);  // umask leaks
      return r;
    }
    result<std::vector<std::string>> list_dir(const actor& who, std::string_view path) {
      auto r = MemoryFs::list_dir(who, path);
      if (!r && r.error().is_errno(ENOTDIR)) return fail_errno(ENOENT, "list", std::string(path));
      return r;
    }
  };
  drifting fs;
  fs.set_posix_rules();
  fs.add_dir("/c/base", 0755, 0, 0);
  conformance_setup setup;
  setup.base = "/c/base";
  setup.backend_name = "drifting fake";
  setup.lock_waits = false;
  auto report = run_conformance(fs, setup);
  MESSAGE(report.text());
  CHECK(report.deviations.size() == 4);
  CHECK(report.passed + 4 == report.run);
  std::string all;
  for (const auto& d : report.deviations) all += d + "\n";
  CHECK(all.find("unlink: a directory gives EISDIR [root]: expected EISDIR, got EPERM (unlink ") != std::string::npos);
  CHECK(all.find("mkdir: the mode is exact, whatever the umask [root]: afterwards /c/base/c") != std::string::npos);
  CHECK(all.find("has mode 0755, expected 0775") != std::string::npos);
  CHECK(all.find("list_dir: a regular file gives ENOTDIR [root]: expected ENOTDIR, got ENOENT") != std::string::npos);
  CHECK(all.find("list_dir: a final link to a directory is not followed (ENOTDIR) [root]") != std::string::npos);
  // No capability given: EXDEV (2: rename, exchange), EBUSY (2), ENOSPC (1 full, 5 no inode),
  // EROFS (9) and immutable (4) cases skip.
  CHECK(report.skipped.size() == 23);
  CHECK(report.text().find("skipped rename: across devices gives EXDEV [root]: no other_device_dir (EXDEV)") !=
        std::string::npos);
  CHECK(report.text().find("drifting fake: ") == 0);
}

TEST_CASE("MemoryFs conforms") {
  MemoryFs fs = memory_tree("/t");
  auto report = run_conformance(fs, memory_setup("/t", "MemoryFs"));
  expect_conformant(report, case_count() - 9);
  CHECK(report.skipped.size() == 9);  // EROFS x9: a MemoryFs has no read-only fs (ENOSPC: set_*_limit)
}

TEST_CASE("the lock row names a backend said to wait that fails a second lock at once") {
  MemoryFs fs = memory_tree("/t");
  conformance_setup setup = memory_setup("/t", "MemoryFs said to wait");
  setup.lock_waits = true;  // not true of MemoryFs: its second lock gives EWOULDBLOCK
  auto report = run_conformance(fs, setup);
  REQUIRE(report.deviations.size() == 1);
  CHECK(report.deviations[0].find("lock: a second lock waits until the first is released") == 0);
  CHECK(report.deviations[0].find("(expected it to wait)") != std::string::npos);
}

TEST_CASE("MemoryFs without set_posix_rules differs from PosixFs exactly in PosixFs's own refusals") {
  MemoryFs fs = memory_tree("/t");
  fs.set_posix_rules(false);  // the bare kernel's answers
  auto report = run_conformance(fs, memory_setup("/t", "MemoryFs (kernel rules)"));
  MESSAGE(report.text());
  REQUIRE(report.deviations.size() == 4);
  CHECK(report.deviations[0].find("lstat: root does not follow an intermediate link owned by the user (ELOOP) [root]: "
                                  "expected ELOOP, got success") == 0);
  CHECK(report.deviations[1].find("replace_file: root refuses to write in a user-owned directory") == 0);
  CHECK(report.deviations[2].find("rename: root refuses to rename in a user-owned directory") == 0);
  CHECK(report.deviations[3].find("replace_file: an immutable file is errc::locked, even for root [root]: expected "
                                  "hostcfg:locked by its owner, got EPERM") == 0);
}

TEST_CASE("OverlayFs over MemoryFs conforms, and the lower layer is untouched") {
  MemoryFs lower = memory_tree("/t");
  auto before = lower.take_snapshot();
  OverlayFs<MemoryFs> fs(lower);
  fs.set_posix_rules();
  conformance_setup setup = memory_setup("/t", "OverlayFs<MemoryFs>");
  setup.mount_point_file.clear();  // the overlay does not know the lower's mount points (documented)
  setup.no_inodes_dir.clear();     // nor its inode and space limits: it writes to memory
  setup.full_dir.clear();
  auto report = run_conformance(fs, setup);
  expect_conformant(report, case_count() - 17);
  CHECK(MemoryFs::diff(before, lower.take_snapshot()).empty());
  CHECK(fs.changes().size() > 500);  // every case's tree, in the overlay only
}

TEST_CASE("RootedFs over MemoryFs conforms") {
  MemoryFs inner = memory_tree("/sandbox");
  RootedFs<MemoryFs> fs(inner, "/sandbox");
  auto report = run_conformance(fs, memory_setup("", "RootedFs<MemoryFs>"));
  expect_conformant_but(report, case_count() - 9, rooted_known_deviation);
  CHECK(inner.status_of("/sandbox/base/shared/file"));
  CHECK_FALSE(inner.status_of("/base"));
}

TEST_CASE("PosixFs as root conforms (real kernel: ENOSPC, EROFS, EXDEV, EBUSY, immutable)") {
  if (!is_root()) { HOSTCFG_SKIP("needs root: the matrix acts as root and as nobody"); return; }
  real_tree tree;
  tree.print_missing();
  PosixFs fs(no_fsync_syscalls());
  auto report = run_conformance(fs, tree.setup(tree.make("base"), "PosixFs as root"));
  expect_conformant(report, case_count() - tree.why.size() * 9);
  MESSAGE("PosixFs skipped " << report.skipped.size() << " cases");
  if (tree.why.empty()) CHECK(report.skipped.empty());
}

TEST_CASE("PosixFs in a process running as nobody conforms") {
  if (!is_root()) { HOSTCFG_SKIP("needs root to arrange the tree and fork a nobody process"); return; }
  real_tree tree;
  PosixFs fs(no_fsync_syscalls());
  conformance_setup setup = tree.setup(tree.make_fast("nbase"), "PosixFs in a nobody process");
  auto problems = hostcfg::testing::arrange_conformance(fs, setup);
  REQUIRE(problems.empty());
  setup.arrange = false;
  setup.act_as_root = false;
  const hostcfg_test::child_output child = hostcfg_test::run_as_user_with_output(nobody, [&](std::string& text) {
    PosixFs mine(no_fsync_syscalls());
    auto report = run_conformance(mine, setup);
    text = report.text() + "run=" + std::to_string(report.run) + "\n";
    return report.ok() ? 0 : 1;
  });
  const std::string& text = child.out;
  MESSAGE(text);
  REQUIRE(child.exited);
  CHECK(child.exit_code == 0);
  CHECK(text.rfind("PosixFs in a nobody process: ", 0) == 0);  // the child's own report, not an error
  CHECK(text.find(" 0 deviations") != std::string::npos);
  CHECK(text.find("run=0\n") == std::string::npos);
}

TEST_CASE("RootedFs over PosixFs conforms") {
  if (!is_root()) { HOSTCFG_SKIP("needs root: the matrix acts as root and as nobody"); return; }
  real_tree tree;
  tree.print_missing();
  PosixFs posix(no_fsync_syscalls());
  RootedFs<PosixFs> fs(posix, tree.top);
  tree.make_fast("rbase");
  conformance_setup setup;
  setup.base = "/rbase";
  setup.backend_name = "RootedFs<PosixFs>";
  auto inside = [&](const std::string& real) { return real.empty() ? real : real.substr(tree.top.size()); };
  setup.full_dir = inside(tree.full);
  setup.no_inodes_dir = inside(tree.no_inodes);
  setup.read_only_dir = inside(tree.ro);
  setup.mount_point_file = inside(tree.mount_file);
  setup.immutable_file = inside(tree.immutable);
  setup.other_device_dir = setup.full_dir;  // the tmpfs is another device inside the root
  auto report = run_conformance(fs, setup);
  expect_conformant_but(report, case_count() - tree.why.size() * 9, rooted_known_deviation);
}

TEST_CASE("OverlayFs over PosixFs conforms and writes nothing to the disk") {
  if (!is_root()) { HOSTCFG_SKIP("needs root: the matrix acts as root and as nobody"); return; }
  real_tree tree;
  std::string base = tree.make("obase");
  PosixFs posix(no_fsync_syscalls());
  OverlayFs<PosixFs> fs(posix);
  fs.set_posix_rules();  // a dry run must refuse what the real run would
  conformance_setup setup = tree.setup(base, "OverlayFs<PosixFs>");
  setup.full_dir.clear();          // the overlay writes to memory: no ENOSPC ...
  setup.no_inodes_dir.clear();
  setup.lock_waits = false;        // and its locks are its own, in memory
  setup.read_only_dir.clear();     // ... and no EROFS
  setup.mount_point_file.clear();  // and it does not know the lower's mount points (documented)
  auto report = run_conformance(fs, setup);
  expect_conformant(report, case_count() - 17);
  CHECK(std::filesystem::is_empty(base));
}
