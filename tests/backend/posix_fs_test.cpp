// PosixFs on the real disk: every operation's success and errno cases, the replace sequence's
// promises (owner/mode/xattrs kept, special targets refused, crash-and-error sweep, no-op makes no
// mutating syscall), the trusted walk and the root-safety rule, acting as another user.
#include "hostcfg/backend/posix_fs.hpp"
#include "hostcfg/backend/memory_fs.hpp"
#include "hostcfg/file_lock.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/real_fs.hpp"
#include <hostcfg/testing/posix_sweep.hpp>
#include <hostcfg/testing/syscall_faults.hpp>
#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

constexpr uid_type nobody = 65534;
const actor root_actor = actor::root();
const actor nobody_actor{nobody, nobody, {}};

/// A root-owned 0755 scratch directory on the disk (or on tmpfs), removed at the end.
struct scratch : hostcfg_test::root_scratch_dir {
  explicit scratch(hostcfg_test::scratch_disk where = hostcfg_test::scratch_disk::var_tmp)
      : root_scratch_dir("hostcfg-posixfs", where) {}
};

void write_raw(const std::string& path, const std::string& bytes, mode_t mode = 0644) {
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  REQUIRE(::fchmod(fd, mode) == 0);
  ::close(fd);
}

struct ::stat lstat_raw(const std::string& path) {
  struct ::stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

std::vector<std::string> temps_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.find(".hostcfg-") != std::string::npos) out.push_back(name);
  }
  return out;
}

bool is_root() { return ::geteuid() == 0; }

}  // namespace

TEST_CASE("PosixFs satisfies the Fs contract") { CHECK(check_fs<PosixFs>()); }

TEST_CASE("lstat, stat, readlink report the object itself or follow only when named so") {
  scratch d;
  PosixFs fs;
  write_raw(d / "file", "hello\n", 0640);
  REQUIRE(::symlink("file", (d / "link").c_str()) == 0);
  REQUIRE(::symlink("missing", (d / "dangling").c_str()) == 0);

  auto st = fs.lstat(root_actor, d / "file");
  REQUIRE(st);
  CHECK(st->type == file_type::regular);
  CHECK(st->mode == 0640);
  CHECK(st->size == 6);
  CHECK(st->nlink == 1);
  CHECK(st->ino == lstat_raw(d / "file").st_ino);

  auto link = fs.lstat(root_actor, d / "link");
  REQUIRE(link);
  CHECK(link->type == file_type::symlink);
  auto followed = fs.stat(root_actor, d / "link");
  REQUIRE(followed);
  CHECK(followed->type == file_type::regular);
  CHECK(followed->ino == st->ino);
  CHECK(*fs.readlink(root_actor, d / "link") == "file");

  auto dangling = fs.stat(root_actor, d / "dangling");
  REQUIRE(!dangling);
  CHECK(dangling.error().is_errno(ENOENT));
  CHECK(fs.lstat(root_actor, d / "dangling")->type == file_type::symlink);

  auto root_dir = fs.lstat(root_actor, "/");
  REQUIRE(root_dir);
  CHECK(root_dir->type == file_type::directory);

  auto missing = fs.lstat(root_actor, d / "nope");
  REQUIRE(!missing);
  CHECK(missing.error().is_errno(ENOENT));
  CHECK(missing.error().path == d / "nope");
  auto notdir = fs.lstat(root_actor, d / "file/x");
  REQUIRE(!notdir);
  CHECK(notdir.error().is_errno(ENOTDIR));
  auto not_link = fs.readlink(root_actor, d / "file");
  REQUIRE(!not_link);
  CHECK(not_link.error().is_errno(EINVAL));
  auto relative = fs.lstat(root_actor, "var/tmp");
  REQUIRE(!relative);
  CHECK(relative.error().is(errc::invalid_input));
  CHECK(!fs.lstat(root_actor, d.path + "/../x"));
}

TEST_CASE("read_file returns bytes and status, refuses non-regular files, hard links and oversize") {
  scratch d;
  PosixFs fs;
  std::string bytes("a\r\nb\0c", 6);
  write_raw(d / "f", bytes, 0600);
  auto got = fs.read_file(root_actor, d / "f", 100);
  REQUIRE(got);
  CHECK(got->bytes == bytes);
  CHECK(got->status.mode == 0600);
  CHECK(got->status.size == 6);
  CHECK(!got->status.flags.immutable);

  auto big = fs.read_file(root_actor, d / "f", 5);
  REQUIRE(!big);
  CHECK(big.error().is(errc::too_large));

  REQUIRE(::mkdir((d / "dir").c_str(), 0755) == 0);
  CHECK(fs.read_file(root_actor, d / "dir", 100).error().is_errno(EISDIR));
  REQUIRE(::symlink("f", (d / "link").c_str()) == 0);
  CHECK(fs.read_file(root_actor, d / "link", 100).error().is_errno(ELOOP));
  REQUIRE(::mkfifo((d / "fifo").c_str(), 0644) == 0);
  CHECK(fs.read_file(root_actor, d / "fifo", 100).error().is_errno(EINVAL));
  REQUIRE(::link((d / "f").c_str(), (d / "f2").c_str()) == 0);
  auto linked = fs.read_file(root_actor, d / "f", 100);
  REQUIRE(!linked);
  CHECK(linked.error().is_errno(EMLINK));
  CHECK(linked.error().message().find("2 hard links") != std::string::npos);
}

TEST_CASE("replace_file creates a new file with the exact mode whatever the umask") {
  scratch d;
  PosixFs fs;
  mode_t old_mask = ::umask(077);
  replace_options opts;
  opts.mode = 0644;
  auto done = fs.replace_file(root_actor, d / "new", "fresh\n", opts);
  ::umask(old_mask);
  REQUIRE(done);
  CHECK(done->changed);
  CHECK(done->durable);
  CHECK(!done->in_place);
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "new") == "fresh\n");
  auto st = lstat_raw(d / "new");
  CHECK((st.st_mode & 07777) == 0644);
  CHECK(st.st_uid == ::geteuid());
  CHECK(temps_in(d.path).empty());

  replace_options no_mode;
  auto refused = fs.replace_file(root_actor, d / "other", "x", no_mode);
  REQUIRE(!refused);
  CHECK(refused.error().is(errc::invalid_input));
  CHECK(::access((d / "other").c_str(), F_OK) != 0);

  replace_options absent;
  absent.mode = 0600;
  absent.expect_absent = true;
  auto exists = fs.replace_file(root_actor, d / "new", "y", absent);
  REQUIRE(!exists);
  CHECK(exists.error().is_errno(EEXIST));
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "new") == "fresh\n");
}

TEST_CASE("replace_file gives a new file the requested owner") {
  if (!is_root()) { HOSTCFG_SKIP("needs root to chown"); return; }
  scratch d;
  PosixFs fs;
  replace_options opts;
  opts.mode = 0640;
  opts.uid = nobody;
  opts.gid = nobody;
  REQUIRE(fs.replace_file(root_actor, d / "owned", "x", opts));
  auto st = lstat_raw(d / "owned");
  CHECK(st.st_uid == nobody);
  CHECK(st.st_gid == nobody);
  CHECK((st.st_mode & 07777) == 0640);
}

TEST_CASE("replace_file keeps the owner, mode and xattrs of the file it replaces") {
  if (!is_root()) { HOSTCFG_SKIP("needs root to chown"); return; }
  scratch d;
  PosixFs fs;
  write_raw(d / "f", "old\n", 0640);
  REQUIRE(::chown((d / "f").c_str(), nobody, nobody) == 0);
  bool have_xattr = ::setxattr((d / "f").c_str(), "user.test", "value", 5, 0) == 0;
  auto before = lstat_raw(d / "f");
  mode_t old_mask = ::umask(077);
  auto done = fs.replace_file(root_actor, d / "f", "new\n", replace_options{});
  ::umask(old_mask);
  REQUIRE(done);
  CHECK(done->changed);
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "f") == "new\n");
  auto after = lstat_raw(d / "f");
  CHECK(after.st_ino != before.st_ino);
  CHECK(after.st_uid == nobody);
  CHECK(after.st_gid == nobody);
  CHECK((after.st_mode & 07777) == 0640);
  if (have_xattr) {
    char value[16] = {};
    CHECK(::getxattr((d / "f").c_str(), "user.test", value, sizeof value) == 5);
    CHECK(std::string(value) == "value");
  } else {
    HOSTCFG_SKIP("user xattrs unsupported on the scratch disk: xattr part not checked");
  }
  CHECK(temps_in(d.path).empty());

  replace_options forced;
  forced.mode = 0600;
  forced.force_mode = true;
  REQUIRE(fs.replace_file(root_actor, d / "f", "new\n", forced)->changed);
  CHECK((lstat_raw(d / "f").st_mode & 07777) == 0600);
}

TEST_CASE("replace_file refuses special targets without blocking") {
  scratch d;
  PosixFs fs;
  REQUIRE(::mkfifo((d / "fifo").c_str(), 0644) == 0);
  auto start = std::chrono::steady_clock::now();
  auto fifo = fs.replace_file(root_actor, d / "fifo", "x", replace_options{});
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  REQUIRE(!fifo);
  CHECK(fifo.error().is_errno(EINVAL));
  CHECK(S_ISFIFO(lstat_raw(d / "fifo").st_mode));

  REQUIRE(::mkdir((d / "dir").c_str(), 0755) == 0);
  CHECK(fs.replace_file(root_actor, d / "dir", "x", replace_options{}).error().is_errno(EISDIR));

  write_raw(d / "target", "secret\n");
  REQUIRE(::symlink("target", (d / "link").c_str()) == 0);
  auto link = fs.replace_file(root_actor, d / "link", "x", replace_options{});
  REQUIRE(!link);
  CHECK(link.error().is_errno(ELOOP));
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "target") == "secret\n");

  REQUIRE(::link((d / "target").c_str(), (d / "hard").c_str()) == 0);
  auto hard = fs.replace_file(root_actor, d / "hard", "x", replace_options{});
  REQUIRE(!hard);
  CHECK(hard.error().is_errno(EMLINK));
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "target") == "secret\n");
  CHECK(lstat_raw(d / "target").st_nlink == 2);
  CHECK(temps_in(d.path).empty());
}

TEST_CASE("replace_file refuses an immutable file and leaves the flag set") {
  scratch d;
  PosixFs fs;
  write_raw(d / "f", "locked\n");
  int fd = ::open((d / "f").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  int flags = 0;
  bool ok = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
  int set = flags | FS_IMMUTABLE_FL;
  ok = ok && ::ioctl(fd, FS_IOC_SETFLAGS, &set) == 0;
  if (!ok) {
    ::close(fd);
    HOSTCFG_SKIP("the filesystem under /var/lib/hostcfg-tests does not support chattr +i (or no CAP_LINUX_IMMUTABLE)");
    return;
  }
  auto got = fs.get_flags(root_actor, d / "f");
  auto done = fs.replace_file(root_actor, d / "f", "new\n", replace_options{});
  auto read = fs.read_file(root_actor, d / "f", 100);
  int after = 0;
  ::ioctl(fd, FS_IOC_GETFLAGS, &after);
  ::ioctl(fd, FS_IOC_SETFLAGS, &flags);  // so the scratch dir can be removed
  ::close(fd);
  REQUIRE(got);
  CHECK(got->immutable);
  CHECK(!got->append_only);
  REQUIRE(!done);
  CHECK(done.error().is(errc::locked));
  CHECK(done.error().message().find("immutable") != std::string::npos);
  REQUIRE(read);
  CHECK(read->status.flags.immutable);
  CHECK((after & FS_IMMUTABLE_FL) != 0);
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "f") == "locked\n");
  CHECK(temps_in(d.path).empty());
}

namespace {
// getrandom that returns zero bytes first, then 0x11 bytes: predictable temp names.
int random_calls = 0;
ssize_t predictable_random(void*, void* buf, std::size_t size, unsigned) {
  std::memset(buf, random_calls++ == 0 ? 0 : 0x11, size);
  return static_cast<ssize_t>(size);
}
}  // namespace

TEST_CASE("a symlink planted at the temp name is not followed; another name is used") {
  scratch d;
  syscall_table sys = default_syscalls();
  sys.getrandom = predictable_random;
  random_calls = 0;
  PosixFs fs(sys);
  write_raw(d / "victim", "victim\n");
  write_raw(d / "f", "old\n");
  REQUIRE(::symlink((d / "victim").c_str(), (d / ".f.hostcfg-000000000000").c_str()) == 0);
  auto done = fs.replace_file(root_actor, d / "f", "new\n", replace_options{});
  REQUIRE(done);
  CHECK(random_calls == 2);
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "f") == "new\n");
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "victim") == "victim\n");
  CHECK(S_ISLNK(lstat_raw(d / ".f.hostcfg-000000000000").st_mode));  // not ours: left alone
}

namespace {
// write() that writes at most 3 bytes and fails with EINTR every other call.
int write_calls = 0;
ssize_t short_write(void*, int fd, const void* buf, std::size_t size) {
  if (write_calls++ % 2 == 0) {
    errno = EINTR;
    return -1;
  }
  return ::write(fd, buf, size < 3 ? size : 3);
}
// fsync() that lets "another editor" rewrite the target first (between read and rename).
std::string editor_path;
int fsync_with_editor(void* ctx, int fd) {
  if (!editor_path.empty()) {
    std::ofstream(editor_path, std::ios::binary | std::ios::app) << "edited meanwhile\n";
    editor_path.clear();
  }
  return default_syscalls().fsync(ctx, fd);
}
}  // namespace

TEST_CASE("replace_file writes everything despite short writes and EINTR") {
  scratch d;
  syscall_table sys = default_syscalls();
  sys.write = short_write;
  write_calls = 0;
  PosixFs fs(sys);
  std::string bytes = "0123456789abcdefghij-twenty-six";
  replace_options opts;
  opts.mode = 0644;
  REQUIRE(fs.replace_file(root_actor, d / "f", bytes, opts));
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "f") == bytes);
  CHECK(write_calls == 2 * 11);  // 31 bytes, 3 at a time, an EINTR before each
}

TEST_CASE("an edit made by someone else during the replace is detected, not overwritten") {
  scratch d;
  syscall_table sys = default_syscalls();
  sys.fsync = fsync_with_editor;
  PosixFs fs(sys);
  write_raw(d / "f", "original\n");
  editor_path = d / "f";
  auto done = fs.replace_file(root_actor, d / "f", "ours\n", replace_options{});
  REQUIRE(!done);
  CHECK(done.error().is(errc::changed_since_probe));
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "f") == "original\nedited meanwhile\n");
  CHECK(temps_in(d.path).empty());
}

namespace {

/// A POSIX access ACL in the kernel's xattr form (system.posix_acl_access): owner rw, user
/// `uid` r, group r, mask r, other nothing.
std::string access_acl_for(std::uint32_t uid) {
  std::string blob;
  auto put32 = [&](std::uint32_t v) { for (int i = 0; i < 4; ++i) blob.push_back(static_cast<char>((v >> (8 * i)) & 0xff)); };
  auto put16 = [&](std::uint16_t v) { for (int i = 0; i < 2; ++i) blob.push_back(static_cast<char>((v >> (8 * i)) & 0xff)); };
  auto entry = [&](std::uint16_t tag, std::uint16_t perm, std::uint32_t id) { put16(tag); put16(perm); put32(id); };
  put32(2);                       // POSIX_ACL_XATTR_VERSION
  entry(0x01, 6, 0xffffffffu);    // ACL_USER_OBJ rw-
  entry(0x02, 4, uid);            // ACL_USER uid r--
  entry(0x04, 4, 0xffffffffu);    // ACL_GROUP_OBJ r--
  entry(0x10, 4, 0xffffffffu);    // ACL_MASK r--
  entry(0x20, 0, 0xffffffffu);    // ACL_OTHER ---
  return blob;
}

}  // namespace

TEST_CASE("replace_file keeps a POSIX ACL (system.posix_acl_access) of the file it replaces") {
  if (!is_root()) { HOSTCFG_SKIP("needs root"); return; }
  scratch d;
  PosixFs fs;
  write_raw(d / "f", "old\n", 0640);
  const std::string acl = access_acl_for(nobody);
  if (::setxattr((d / "f").c_str(), "system.posix_acl_access", acl.data(), acl.size(), 0) != 0) {
    HOSTCFG_SKIP("POSIX ACLs unsupported on the scratch disk");
    return;
  }
  auto done = fs.replace_file(root_actor, d / "f", "new\n", replace_options{});
  REQUIRE(done);
  CHECK(done->changed);
  std::string back(256, '\0');
  const ssize_t n = ::getxattr((d / "f").c_str(), "system.posix_acl_access", back.data(), back.size());
  REQUIRE(n > 0);
  back.resize(static_cast<std::size_t>(n));
  CHECK(back == acl);
  CHECK((lstat_raw(d / "f").st_mode & 07777) == 0640);  // the mask is the group class: r
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "f") == "new\n");
}

TEST_CASE("an xattr that cannot be copied refuses the replace, naming the attribute") {
  scratch d;
  write_raw(d / "f", "old\n");
  if (::setxattr((d / "f").c_str(), "user.test", "v", 1, 0) != 0) {
    HOSTCFG_SKIP("user xattrs unsupported under /var/lib/hostcfg-tests");
    return;
  }
  hostcfg::testing::syscall_faults faults;
  PosixFs fs(faults.table());
  faults.disarm();
  REQUIRE(fs.replace_file(root_actor, d / "f", "mid\n", replace_options{}));
  std::size_t setxattr_at = 0;
  for (std::size_t i = 0; i < faults.log().size(); ++i)
    if (faults.log()[i] == "fsetxattr") setxattr_at = i;
  REQUIRE(setxattr_at > 0);
  faults.arm(hostcfg::testing::fault_mode::fail_once, setxattr_at, ENOTSUP);
  auto done = fs.replace_file(root_actor, d / "f", "new\n", replace_options{});
  REQUIRE(!done);
  CHECK(done.error().is(errc::unsupported));
  CHECK(done.error().message().find("user.test") != std::string::npos);
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "f") == "mid\n");
  CHECK(temps_in(d.path).empty());
}

TEST_CASE("stale temps of a crashed run are removed by the next replace of that name") {
  scratch d;
  PosixFs fs;
  write_raw(d / "f", "old\n");
  write_raw(d / ".f.hostcfg-deadbeef0001", "partial");
  write_raw(d / ".g.hostcfg-deadbeef0002", "other name");
  REQUIRE(::mkdir((d / ".f.hostcfg-dir").c_str(), 0755) == 0);
  REQUIRE(fs.replace_file(root_actor, d / "f", "new\n", replace_options{}));
  CHECK(::access((d / ".f.hostcfg-deadbeef0001").c_str(), F_OK) != 0);
  CHECK(::access((d / ".g.hostcfg-deadbeef0002").c_str(), F_OK) == 0);
  CHECK(::access((d / ".f.hostcfg-dir").c_str(), F_OK) == 0);
}

TEST_CASE("stale temp links of a crashed replace_symlink are removed by the next replace of that link") {
  scratch d;
  PosixFs fs;
  REQUIRE(::symlink("/old", (d / "l").c_str()) == 0);
  REQUIRE(::symlink("/half-made", (d / ".l.hostcfg-deadbeef0001").c_str()) == 0);  // crash before the rename
  REQUIRE(::symlink("/other", (d / ".m.hostcfg-deadbeef0002").c_str()) == 0);      // another link's temp
  write_raw(d / ".l.hostcfg-deadbeef0003", "a file: a replace_file temp, not ours to judge here");
  REQUIRE(fs.replace_symlink(root_actor, "/new", d / "l", std::nullopt));
  struct ::stat st {};
  CHECK(::lstat((d / ".l.hostcfg-deadbeef0001").c_str(), &st) != 0);
  CHECK(::lstat((d / ".m.hostcfg-deadbeef0002").c_str(), &st) == 0);
  CHECK(::lstat((d / ".l.hostcfg-deadbeef0003").c_str(), &st) == 0);
  auto target = fs.readlink(root_actor, d / "l");
  REQUIRE(target);
  CHECK(*target == "/new");
  CHECK(temps_in(d.path).size() == 2);  // the other link's temp and the file
}

TEST_CASE("replace_file compare-and-swap refuses a file changed since it was probed") {
  scratch d;
  PosixFs fs;
  write_raw(d / "f", "v1\n");
  auto probed = fs.lstat(root_actor, d / "f");
  REQUIRE(probed);
  write_raw(d / "f", "edited by someone\n");
  replace_options opts;
  opts.expected = *probed;
  auto done = fs.replace_file(root_actor, d / "f", "v2\n", opts);
  REQUIRE(!done);
  CHECK(done.error().is(errc::changed_since_probe));
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "f") == "edited by someone\n");
}

TEST_CASE("an intermediate symlink is followed only when root controls it") {
  scratch d;
  PosixFs fs;
  REQUIRE(::mkdir((d / "real").c_str(), 0755) == 0);
  write_raw(d / "real/f", "through a trusted link\n");
  REQUIRE(::symlink("real", (d / "trusted").c_str()) == 0);
  auto through = fs.read_file(root_actor, d / "trusted/f", 100);
  REQUIRE(through);
  CHECK(through->bytes == "through a trusted link\n");

  if (!is_root()) { HOSTCFG_SKIP("needs root to make a nobody-owned symlink"); return; }
  REQUIRE(::symlink("/etc", (d / "etc").c_str()) == 0);
  REQUIRE(::lchown((d / "etc").c_str(), nobody, nobody) == 0);
  auto hosts = fs.read_file(root_actor, d / "etc/hostname", 4096);
  REQUIRE(!hosts);
  CHECK(hosts.error().is_errno(ELOOP));
  CHECK(hosts.error().path == d / "etc");
  CHECK(hosts.error().message().find("owned by uid 65534") != std::string::npos);
  replace_options opts;
  opts.mode = 0644;
  auto write = fs.replace_file(root_actor, d / "etc/hostcfg-should-not-exist", "x", opts);
  REQUIRE(!write);
  CHECK(write.error().is_errno(ELOOP));
  CHECK(::access("/etc/hostcfg-should-not-exist", F_OK) != 0);
}

namespace {
int openat2_calls = 0;
int openat2_enosys(void*, int, const char*, int, mode_t, std::uint64_t) {
  ++openat2_calls;
  errno = ENOSYS;
  return -1;
}
}  // namespace

TEST_CASE("on a kernel without openat2 (ENOSYS) the walk falls back to openat, once and for all") {
  scratch d;
  syscall_table sys = default_syscalls();
  sys.openat2 = openat2_enosys;
  openat2_calls = 0;
  PosixFs fs(sys);
  REQUIRE(::mkdir((d / "a").c_str(), 0755) == 0);
  write_raw(d / "a/f", "deep\n");
  CHECK(fs.read_file(root_actor, d / "a/f", 100)->bytes == "deep\n");
  CHECK(fs.lstat(root_actor, d / "a/f")->size == 5);
  CHECK(openat2_calls == 1);
  REQUIRE(::symlink("a", (d / "link").c_str()) == 0);
  if (is_root()) {
    REQUIRE(::lchown((d / "link").c_str(), nobody, nobody) == 0);
    CHECK(fs.read_file(root_actor, d / "link/f", 100).error().is_errno(ELOOP));
  }
}

TEST_CASE("root refuses to write in a directory a non-root user can change") {
  if (!is_root()) { HOSTCFG_SKIP("needs root"); return; }
  scratch d;
  PosixFs fs;
  replace_options opts;
  opts.mode = 0644;
  struct layout {
    const char* name;
    mode_t mode;
    uid_t uid;
    gid_t gid;
  };
  for (layout l : {layout{"user-owned", 0755, nobody, nobody}, layout{"world-writable", 0777, 0, 0},
                   layout{"sticky-world", 01777, 0, 0}, layout{"group-writable", 0775, 0, nobody}}) {
    CAPTURE(l.name);
    std::string dir = d / l.name;
    REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
    REQUIRE(::chown(dir.c_str(), l.uid, l.gid) == 0);
    REQUIRE(::chmod(dir.c_str(), l.mode) == 0);
    auto done = fs.replace_file(root_actor, dir + "/f", "x", opts);
    REQUIRE(!done);
    CHECK(done.error().is(errc::unsafe_path));
    CHECK(done.error().path == dir);
    CHECK(fs.mkdir(root_actor, dir + "/sub", 0755).error().is(errc::unsafe_path));
    CHECK(fs.symlink(root_actor, "/etc/shadow", dir + "/l").error().is(errc::unsafe_path));
    CHECK(fs.list_dir(root_actor, dir)->empty());
  }
  // A root-owned group-writable directory of group root is fine, as is the 0755 scratch dir.
  std::string wheel = d / "wheel";
  REQUIRE(::mkdir(wheel.c_str(), 0775) == 0);
  REQUIRE(::chmod(wheel.c_str(), 0775) == 0);
  CHECK(fs.replace_file(root_actor, wheel + "/f", "ok", opts));
  // An ancestor a user can change makes everything below it unsafe for root.
  std::string user_dir = d / "user";
  REQUIRE(::mkdir(user_dir.c_str(), 0755) == 0);
  REQUIRE(::mkdir((user_dir + "/inner").c_str(), 0755) == 0);
  REQUIRE(::chown(user_dir.c_str(), nobody, nobody) == 0);
  auto below = fs.replace_file(root_actor, user_dir + "/inner/f", "x", opts);
  REQUIRE(!below);
  CHECK(below.error().is(errc::unsafe_path));
  CHECK(below.error().path == user_dir);
  // Reading there is allowed.
  CHECK(fs.lstat(root_actor, user_dir + "/inner"));
}

TEST_CASE("acting as nobody: files made in a nobody-owned dir belong to nobody, and the kernel checks nobody") {
  if (!is_root()) { HOSTCFG_SKIP("needs root to act as another user"); return; }
  scratch d;
  PosixFs fs;
  std::string home = d / "home";
  REQUIRE(::mkdir(home.c_str(), 0755) == 0);
  REQUIRE(::chown(home.c_str(), nobody, nobody) == 0);
  replace_options opts;
  opts.mode = 0600;
  auto made = fs.replace_file(nobody_actor, home + "/.profile", "export X=1\n", opts);
  REQUIRE(made);
  auto st = lstat_raw(home + "/.profile");
  CHECK(st.st_uid == nobody);
  CHECK(st.st_gid == nobody);
  CHECK((st.st_mode & 07777) == 0600);
  REQUIRE(fs.mkdir(nobody_actor, home + "/.config", 0700));
  CHECK(lstat_raw(home + "/.config").st_uid == nobody);
  REQUIRE(fs.symlink(nobody_actor, "/opt/app/bin/tool", home + "/tool"));
  CHECK(lstat_raw(home + "/tool").st_uid == nobody);

  // A directory nobody may search but not list (0711) still lets nobody read what is inside.
  std::string search_only = d / "search-only";
  REQUIRE(::mkdir(search_only.c_str(), 0711) == 0);
  REQUIRE(::chmod(search_only.c_str(), 0711) == 0);
  write_raw(search_only + "/f", "readable\n", 0644);
  auto inside = fs.read_file(nobody_actor, search_only + "/f", 100);
  REQUIRE(inside);
  CHECK(inside->bytes == "readable\n");
  CHECK(fs.list_dir(nobody_actor, search_only).error().is_errno(EACCES));
  // The root-owned scratch dir is not nobody's to write.
  auto denied = fs.replace_file(nobody_actor, d / "f", "x", opts);
  REQUIRE(!denied);
  CHECK(denied.error().is_errno(EACCES));
  CHECK(fs.lchown(nobody_actor, home + "/.profile", 0, 0).error().is_errno(EPERM));
  // The process is root again afterwards.
  CHECK(::setfsuid(static_cast<uid_t>(-1)) == 0);
  REQUIRE(fs.replace_file(root_actor, d / "f", "x", opts));
  CHECK(lstat_raw(d / "f").st_uid == 0);
}

TEST_CASE("a non-root process cannot act as another user, and an elevated actor gets the kernel's EACCES") {
  if (!is_root()) { HOSTCFG_SKIP("needs root to fork a nobody process"); return; }
  scratch d;
  int status = hostcfg_test::run_as_user_status(nobody, [&] {
    PosixFs fs;
    auto other = fs.lstat(actor{1000, 1000, {}}, d.path);
    if (other || !other.error().is_errno(EPERM)) return 1;
    if (other.error().message().find("cannot act as uid 1000") == std::string::npos) return 2;
    replace_options opts;
    opts.mode = 0644;
    auto elevated = fs.replace_file(actor::root(), d / "f", "x", opts);
    if (elevated || !elevated.error().is_errno(EACCES)) return 3;
    auto self = fs.lstat(nobody_actor, d.path);
    if (!self || self->uid != 0) return 4;
    return 0;
  });
  CHECK(status == 0);
  CHECK(::access((d / "f").c_str(), F_OK) != 0);
}

TEST_CASE("symlink, replace_symlink, rename, unlink, mkdir, rmdir, chmod, lchown, list_dir") {
  scratch d;
  PosixFs fs;
  REQUIRE(fs.symlink(root_actor, "../target/x", d / "l"));
  CHECK(*fs.readlink(root_actor, d / "l") == "../target/x");
  CHECK(fs.symlink(root_actor, "y", d / "l").error().is_errno(EEXIST));

  auto old_link = fs.lstat(root_actor, d / "l");
  REQUIRE(old_link);
  REQUIRE(fs.replace_symlink(root_actor, "/new/target", d / "l", *old_link));
  CHECK(*fs.readlink(root_actor, d / "l") == "/new/target");
  auto stale = fs.replace_symlink(root_actor, "/again", d / "l", *old_link);
  REQUIRE(!stale);
  CHECK(stale.error().is(errc::changed_since_probe));
  CHECK(*fs.readlink(root_actor, d / "l") == "/new/target");
  file_status absent;
  REQUIRE(fs.replace_symlink(root_actor, "t", d / "fresh", absent));
  CHECK(fs.replace_symlink(root_actor, "t2", d / "fresh", absent).error().is(errc::changed_since_probe));
  CHECK(temps_in(d.path).empty());

  REQUIRE(fs.mkdir(root_actor, d / "sub", 02750));
  CHECK((lstat_raw(d / "sub").st_mode & 07777) == 02750);
  CHECK(fs.mkdir(root_actor, d / "sub", 0755).error().is_errno(EEXIST));
  CHECK(fs.mkdir(root_actor, d / "no/such", 0755).error().is_errno(ENOENT));

  write_raw(d / "a", "A");
  REQUIRE(fs.rename(root_actor, d / "a", d / "sub/b"));
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "sub/b") == "A");
  CHECK(fs.rename(root_actor, d / "a", d / "c").error().is_errno(ENOENT));

  CHECK(fs.rmdir(root_actor, d / "sub").error().is_errno(ENOTEMPTY));
  CHECK(fs.unlink(root_actor, d / "sub").error().is_errno(EISDIR));
  REQUIRE(fs.unlink(root_actor, d / "sub/b"));
  REQUIRE(fs.rmdir(root_actor, d / "sub"));
  CHECK(fs.rmdir(root_actor, d / "sub").error().is_errno(ENOENT));
  REQUIRE(fs.unlink(root_actor, d / "fresh"));  // a link is unlinked, never its target

  write_raw(d / "m", "m", 0600);
  REQUIRE(fs.chmod(root_actor, d / "m", 0444));
  CHECK((lstat_raw(d / "m").st_mode & 07777) == 0444);
  CHECK(fs.chmod(root_actor, d / "l", 0777).error().is_errno(EOPNOTSUPP));
  if (is_root()) {
    REQUIRE(fs.lchown(root_actor, d / "l", nobody, nobody));
    CHECK(lstat_raw(d / "l").st_uid == nobody);
    CHECK(lstat_raw(d / "m").st_uid == 0);
  }
  auto names = fs.list_dir(root_actor, d.path);
  REQUIRE(names);
  CHECK(*names == std::vector<std::string>{"l", "m"});
  CHECK(fs.list_dir(root_actor, d / "m").error().is_errno(ENOTDIR));
  CHECK(fs.list_dir(root_actor, d / "l").error().is_errno(ENOTDIR));
  CHECK(fs.get_flags(root_actor, d / "l")->immutable == false);
}

TEST_CASE("lock is an exclusive flock that leaves no file behind") {
  scratch d;
  PosixFs fs;
  auto before = std::filesystem::directory_iterator(d.path) == std::filesystem::directory_iterator();
  CHECK(before);
  auto held = fs.lock(root_actor, d.path);
  REQUIRE(held);
  int fd = ::open(d.path.c_str(), O_RDONLY | O_DIRECTORY);
  REQUIRE(fd >= 0);
  int rc = ::flock(fd, LOCK_EX | LOCK_NB);
  int err = errno;
  CHECK(rc != 0);
  CHECK(err == EWOULDBLOCK);
  held->reset();
  CHECK(::flock(fd, LOCK_EX | LOCK_NB) == 0);
  ::close(fd);
  CHECK(std::filesystem::directory_iterator(d.path) == std::filesystem::directory_iterator());
  CHECK(fs.lock(root_actor, d / "missing").error().is_errno(ENOENT));
}

TEST_CASE("lock_for_edit: a nested request of the same thread shares the lock (by name or through an alias)") {
  // A profile edit that writes its record item ahead into a record in the same directory: a
  // second flock of the directory would wait for itself forever.
  scratch d;
  PosixFs fs;
  REQUIRE(::mkdir((d / "home").c_str(), 0755) == 0);
  REQUIRE(::symlink(d.path.c_str(), (d / "alias").c_str()) == 0);
  auto outer = lock_for_edit(fs, root_actor, d / "home/.profile");
  REQUIRE(outer);
  auto inner = lock_for_edit(fs, root_actor, d / "home/app.record");  // same name: shared
  REQUIRE(inner);
  auto aliased = lock_for_edit(fs, root_actor, d / "alias/home/app.record");  // same inode: shared
  REQUIRE(aliased);
  int fd = ::open((d / "home").c_str(), O_RDONLY | O_DIRECTORY);
  REQUIRE(fd >= 0);
  CHECK(::flock(fd, LOCK_EX | LOCK_NB) != 0);  // another process (open) still waits
  inner->reset();
  aliased->reset();
  CHECK(::flock(fd, LOCK_EX | LOCK_NB) != 0);  // held until the outermost holder lets go
  outer->reset();
  CHECK(::flock(fd, LOCK_EX | LOCK_NB) == 0);
  ::flock(fd, LOCK_UN);
  // Another directory is locked for real, and released on its own.
  auto other = lock_for_edit(fs, root_actor, d / "x");
  REQUIRE(other);
  int fd2 = ::open(d.path.c_str(), O_RDONLY | O_DIRECTORY);
  REQUIRE(fd2 >= 0);
  CHECK(::flock(fd2, LOCK_EX | LOCK_NB) != 0);
  other->reset();
  CHECK(::flock(fd2, LOCK_EX | LOCK_NB) == 0);
  ::close(fd2);
  ::close(fd);
}

TEST_CASE("rename across filesystems reports EXDEV") {
  scratch a(hostcfg_test::scratch_disk::tmpfs_first);
  scratch b;
  struct ::stat shm {}, var {};
  if (::stat(a.path.c_str(), &shm) != 0 || ::stat(b.path.c_str(), &var) != 0 || shm.st_dev == var.st_dev) {
    HOSTCFG_SKIP("no tmpfs on another filesystem than the disk's scratch base (/dev/shm missing?)");
    return;
  }
  PosixFs fs;
  write_raw(a / "f", "x");
  auto moved = fs.rename(root_actor, a / "f", b / "f");
  REQUIRE(!moved);
  CHECK(moved.error().is_errno(EXDEV));
  CHECK(moved.error().path == a / "f");
  CHECK(moved.error().path2 == b / "f");
  CHECK(hostcfg_test::read_whole_file_or_empty(a / "f") == "x");
}

TEST_CASE("a bind-mounted target: EBUSY names the option; with it, the file is rewritten in place") {
  scratch d;
  PosixFs fs;
  write_raw(d / "hosts", "127.0.0.1 localhost\n# a long original line\n");
  write_raw(d / "source", "127.0.0.1 localhost\n# a long original line\n");
  if (::mount((d / "source").c_str(), (d / "hosts").c_str(), nullptr, MS_BIND, nullptr) != 0) {
    HOSTCFG_SKIP(std::string("mount --bind failed: ") + std::strerror(errno));
    return;
  }
  auto ino = lstat_raw(d / "hosts").st_ino;
  auto refused = fs.replace_file(root_actor, d / "hosts", "127.0.0.1 localhost\n", replace_options{});
  replace_options allow;
  allow.allow_in_place_fallback = true;
  auto in_place = fs.replace_file(root_actor, d / "hosts", "127.0.0.1 localhost\n", allow);
  std::string seen = hostcfg_test::read_whole_file_or_empty(d / "hosts");
  auto ino_after = lstat_raw(d / "hosts").st_ino;
  auto temps = temps_in(d.path);
  ::umount2((d / "hosts").c_str(), MNT_DETACH);
  REQUIRE(!refused);
  CHECK((refused.error().is_errno(EBUSY) || refused.error().is_errno(EXDEV)));
  CHECK(refused.error().message().find("allow_in_place_fallback") != std::string::npos);
  CHECK(refused.error().path == d / "hosts");
  REQUIRE(in_place);
  CHECK(in_place->changed);
  CHECK(in_place->in_place);
  CHECK(seen == "127.0.0.1 localhost\n");
  CHECK(ino_after == ino);
  CHECK(temps.empty());
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "source") == "127.0.0.1 localhost\n");
}

TEST_CASE("a no-op replace issues zero mutating syscalls and leaves inode, mtime and ctime alone") {
  scratch d;
  hostcfg::testing::syscall_faults faults;
  PosixFs fs(faults.table());
  write_raw(d / "f", "same\n");
  auto before = lstat_raw(d / "f");
  faults.disarm();
  auto done = fs.replace_file(root_actor, d / "f", "same\n", replace_options{});
  REQUIRE(done);
  CHECK(!done->changed);
  CHECK(faults.calls() > 0);
  CHECK(faults.mutating_calls() == 0);
  auto after = lstat_raw(d / "f");
  CHECK(after.st_ino == before.st_ino);
  CHECK(after.st_mtim.tv_sec == before.st_mtim.tv_sec);
  CHECK(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
  CHECK(after.st_ctim.tv_sec == before.st_ctim.tv_sec);
  CHECK(after.st_ctim.tv_nsec == before.st_ctim.tv_nsec);

  faults.disarm();
  REQUIRE(fs.replace_file(root_actor, d / "f", "different\n", replace_options{})->changed);
  CHECK(faults.mutating_calls() >= 4);  // create, write, fchmod, fsync, rename, fsync dir
}

TEST_CASE("fsync failure abandons the temp; a directory fsync failure is reported as not durable") {
  scratch d;
  hostcfg::testing::syscall_faults faults;
  PosixFs fs(faults.table());
  write_raw(d / "f", "old\n");
  // Find the fsync calls of a clean run.
  faults.disarm();
  REQUIRE(fs.replace_file(root_actor, d / "f", "new\n", replace_options{}));
  std::vector<std::size_t> fsyncs;
  for (std::size_t i = 0; i < faults.log().size(); ++i)
    if (faults.log()[i] == "fsync") fsyncs.push_back(i);
  REQUIRE(fsyncs.size() == 2);
  write_raw(d / "f", "old\n");
  faults.arm(hostcfg::testing::fault_mode::fail_once, fsyncs[0]);
  auto failed = fs.replace_file(root_actor, d / "f", "new\n", replace_options{});
  REQUIRE(!failed);
  CHECK(failed.error().is_errno(EIO));
  CHECK(failed.error().message().find("fsync failed") != std::string::npos);
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "f") == "old\n");
  CHECK(temps_in(d.path).empty());
  std::size_t fsync_count = 0;
  for (const auto& name : faults.log()) fsync_count += name == "fsync";
  CHECK(fsync_count == 1);  // never retried

  faults.arm(hostcfg::testing::fault_mode::fail_once, fsyncs[1]);
  auto not_durable = fs.replace_file(root_actor, d / "f", "new\n", replace_options{});
  REQUIRE(not_durable);
  CHECK(not_durable->changed);
  CHECK(!not_durable->durable);
  CHECK(hostcfg_test::read_whole_file_or_empty(d / "f") == "new\n");
}

TEST_CASE("a link replaced whose directory fsync fails is in place and reported as not durable, as MemoryFs does") {
  scratch d;
  hostcfg::testing::syscall_faults faults;
  PosixFs fs(faults.table());
  REQUIRE(fs.replace_symlink(root_actor, "/old", d / "l", std::nullopt));
  std::size_t fsync_at = 0;
  for (std::size_t i = 0; i < faults.log().size(); ++i)
    if (faults.log()[i] == "fsync") fsync_at = i;
  REQUIRE(faults.log()[fsync_at] == "fsync");
  faults.arm(hostcfg::testing::fault_mode::fail_once, fsync_at);
  auto linked = fs.replace_symlink(root_actor, "/new", d / "l", std::nullopt);
  REQUIRE_FALSE(linked);
  CHECK(linked.error().is(errc::not_durable));
  CHECK(linked.error().message().find("directory sync failed") != std::string::npos);
  auto target = fs.readlink(root_actor, d / "l");
  REQUIRE(target);
  CHECK(*target == "/new");

  MemoryFs mem;
  mem.add_dir("/d", 0755, 0, 0);
  REQUIRE(mem.replace_symlink(root_actor, "/old", "/d/l", std::nullopt));
  mem.clear_log();
  REQUIRE(mem.replace_symlink(root_actor, "/new", "/d/l", std::nullopt));
  std::size_t mem_fsync = 0;
  for (std::size_t i = 0; i < mem.op_log().size(); ++i)
    if (mem.op_log()[i].op.find("fsync_dir") != std::string::npos) mem_fsync = i + 1;
  REQUIRE(mem_fsync > 0);
  mem.fail_at(mem_fsync, EIO);
  auto mem_linked = mem.replace_symlink(root_actor, "/again", "/d/l", std::nullopt);
  REQUIRE_FALSE(mem_linked);
  CHECK(mem_linked.error().is(errc::not_durable));
}

namespace {

struct sweep_scenario {
  const char* name;
  bool exists;            // replace an existing file (owned by nobody, 0640, xattr) or create one
  std::string old_bytes;  // unused when !exists
  std::string new_bytes;
};

/// Fails or crashes the replace at every syscall index k in each of the three modes; returns the
/// number of points swept.
std::size_t sweep(const sweep_scenario& sc) {
  scratch d;
  const std::string path = d / "f";
  bool have_xattr = false;
  auto make_old = [&] {
    ::unlink(path.c_str());
    if (!sc.exists) return;
    write_raw(path, sc.old_bytes, 0640);
    if (is_root()) REQUIRE(::chown(path.c_str(), nobody, nobody) == 0);
    have_xattr = ::setxattr(path.c_str(), "user.test", "v", 1, 0) == 0;
  };
  replace_options opts;
  opts.mode = 0640;
  if (is_root()) opts.uid = opts.gid = nobody;
  hostcfg::testing::syscall_faults faults;
  PosixFs faulty(faults.table());
  PosixFs real;

  make_old();
  faults.disarm();
  REQUIRE(faulty.replace_file(root_actor, path, sc.new_bytes, opts));
  const std::size_t steps = faults.calls();
  REQUIRE(steps > 10);
  std::string sequence;
  for (const auto& name : faults.log()) sequence += name + " ";
  MESSAGE(std::string(sc.name) << ": replace sequence (" << steps << " calls): " << sequence);

  std::size_t points = 0;
  for (auto mode : {hostcfg::testing::fault_mode::fail_once, hostcfg::testing::fault_mode::fail_persistent,
                    hostcfg::testing::fault_mode::crash}) {
    for (std::size_t k = 0; k < steps; ++k) {
      std::string scenario = sc.name;
      std::string mode_name = hostcfg::testing::fault_mode_name(mode);
      CAPTURE(scenario);
      CAPTURE(mode_name);
      CAPTURE(k);
      make_old();
      faults.arm(mode, k, mode == hostcfg::testing::fault_mode::fail_persistent ? ENOSPC : EIO);
      auto r = faulty.replace_file(root_actor, path, sc.new_bytes, opts);
      std::string call = k < faults.log().size() ? faults.log()[k] : "?";
      CAPTURE(call);
      CHECK(faults.fired());
      if (r) {
        CHECK(hostcfg_test::read_whole_file_or_empty(path) == sc.new_bytes);
      } else {
        CHECK(!r.error().message().empty());
        if (sc.exists) CHECK(hostcfg_test::read_whole_file_or_empty(path) == sc.old_bytes);
        else CHECK(::access(path.c_str(), F_OK) != 0);
      }
      if (sc.exists || r) {
        auto st = lstat_raw(path);
        CHECK((st.st_mode & 07777) == 0640);
        if (is_root()) CHECK(st.st_uid == nobody);
        CHECK(st.st_nlink == 1);
      }
      // The next run with the real table converges and leaves no temp behind.
      auto again = real.replace_file(root_actor, path, sc.new_bytes, opts);
      REQUIRE(again);
      CHECK(hostcfg_test::read_whole_file_or_empty(path) == sc.new_bytes);
      CHECK(temps_in(d.path).empty());
      if (have_xattr) CHECK(::getxattr(path.c_str(), "user.test", nullptr, 0) == 1);
      ++points;
    }
  }
  CHECK(points == 3 * steps);
  return points;
}

}  // namespace

TEST_CASE("sweep: a replace failing or crashing at every syscall leaves old or new bytes, and a re-run converges") {
  std::size_t points = 0;
  points += sweep({"longer bytes", true, "old contents\nline two\n", "new contents, longer than the old ones\n"});
  points += sweep({"same length", true, "old contents\n", "new contents\n"});
  points += sweep({"new file", false, "", "created\n"});
  MESSAGE("swept " << points << " fault points in total (3 scenarios x every syscall x 3 modes)");
  CHECK(points > 200);
}

// Runs only as the child of the strace test: a no-op replace between two marker syscalls.
TEST_CASE("strace child: no-op replace between markers" * doctest::skip(std::getenv("HOSTCFG_STRACE_CHILD") == nullptr)) {
  std::string path = std::getenv("HOSTCFG_STRACE_CHILD");
  PosixFs fs;
  ::access("/hostcfg-strace-begin", F_OK);
  auto done = fs.replace_file(root_actor, path, "same bytes\n", replace_options{});
  ::access("/hostcfg-strace-end", F_OK);
  REQUIRE(done);
  CHECK(!done->changed);
}

TEST_CASE("strace -f shows a no-op replace makes no mutating syscall") {
  if (std::system("command -v strace >/dev/null 2>&1") != 0) { HOSTCFG_SKIP("strace not installed (apt install strace)"); return; }
  scratch d;
  write_raw(d / "f", "same bytes\n");
  std::string trace = d / "trace.txt";
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  // LeakSanitizer cannot run under ptrace: the sanitizer build's child runs without it.
  std::string cmd = "ASAN_OPTIONS=detect_leaks=0 HOSTCFG_STRACE_CHILD='" + d / "f" + "' strace -f -qq -o '" + trace +
                    "' -e trace=%file,write,fchmod,fchown,fsync,fdatasync,ftruncate,fsetxattr,flock '" + self +
                    "' --test-case='strace child*' >/dev/null 2>'" + d / "stderr.txt" + "'";
  int rc = std::system(cmd.c_str());
  std::string errors = hostcfg_test::read_whole_file_or_empty(d / "stderr.txt");
  if (rc != 0 && errors.find("ptrace") != std::string::npos && errors.find("not permitted") != std::string::npos) {
    HOSTCFG_SKIP("strace cannot trace here: " + errors);
    return;
  }
  std::string log = hostcfg_test::read_whole_file_or_empty(trace);
  if (rc != 0)
    FAIL("strace run failed (status " << rc << "): " << errors << "\ntrace tail:\n"
                                      << log.substr(log.size() > 2000 ? log.size() - 2000 : 0));
  auto begin = log.find("hostcfg-strace-begin");
  auto end = log.find("hostcfg-strace-end");
  REQUIRE(begin != std::string::npos);
  REQUIRE(end != std::string::npos);
  std::string window = log.substr(begin, end - begin);
  std::size_t lines = 0, mutating = 0;
  std::string offending;
  for (const std::string& line : hostcfg_test::lines_of(window)) {
    ++lines;
    for (const char* bad : {"write(", "rename", "unlink", "mkdir", "symlink", "chmod", "chown", "fsync", "truncate",
                            "setxattr", "O_CREAT", "O_WRONLY", "O_RDWR", "O_TRUNC", "link("}) {
      if (line.find(bad) != std::string::npos) {
        ++mutating;
        offending += line + "\n";
        break;
      }
    }
  }
  MESSAGE("strace window: " << lines << " traced lines, " << mutating << " mutating");
  CHECK(lines > 2);  // the walk's openat/newfstatat calls are there
  CHECK(window.find("openat") != std::string::npos);
  CHECK(mutating == 0);
  CHECK(offending == "");
}

// ---- walk_cache(): the opt-in scope in which the trusted walk reuses verified directory fds ----

namespace {

/// How many calls of each kind the table saw since its last reset.
std::size_t count_of(const hostcfg::testing::syscall_faults& sys, const char* name) {
  std::size_t n = 0;
  for (const auto& call : sys.log()) n += call == name ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("walk_cache: within a scope a verified directory is opened once; without one every operation re-walks") {
  scratch d;
  REQUIRE(::mkdir((d / "a").c_str(), 0755) == 0);
  REQUIRE(::mkdir((d / "a/b").c_str(), 0755) == 0);
  write_raw(d / "a/b/f1", "one\n");
  write_raw(d / "a/b/f2", "two\n");
  hostcfg::testing::syscall_faults sys;
  PosixFs fs(sys.table());
  REQUIRE(fs.lstat(root_actor, d / "a/b/f1"));  // settles openat2 vs openat before counting
  // "/" and every directory component above the file.
  const std::size_t dirs = path_components(d / "a/b/f1").size();

  sys.reset();
  REQUIRE(fs.lstat(root_actor, d / "a/b/f1"));
  CHECK(sys.calls() == 3 * dirs + 1);  // open + fstat + close per directory, then the fstatat
  sys.reset();
  REQUIRE(fs.lstat(root_actor, d / "a/b/f2"));
  CHECK(sys.calls() == 3 * dirs + 1);  // no scope: the same walk again

  {
    auto scope = fs.walk_cache();
    CHECK(scope.cached_directories() == 0);
    sys.reset();
    auto first = fs.lstat(root_actor, d / "a/b/f1");
    REQUIRE(first);
    CHECK(first->size == 4);
    CHECK(count_of(sys, "openat") + count_of(sys, "openat2") == dirs);
    CHECK(count_of(sys, "fstat") == dirs);
    CHECK(count_of(sys, "close") == 0);  // kept open for the next walk
    CHECK(sys.calls() == 2 * dirs + 1);
    CHECK(scope.cached_directories() == dirs);

    sys.reset();
    auto second = fs.lstat(root_actor, d / "a/b/f2");
    REQUIRE(second);
    CHECK(second->ino == lstat_raw(d / "a/b/f2").st_ino);
    CHECK(sys.log() == std::vector<std::string>{"fstatat"});  // the walk cost nothing

    sys.reset();
    auto read = fs.read_file(root_actor, d / "a/b/f2", 100);
    REQUIRE(read);
    CHECK(read->bytes == "two\n");
    CHECK(count_of(sys, "openat2") == 0);
    CHECK(count_of(sys, "openat") == 1);  // the file itself
    CHECK(count_of(sys, "close") == 1);   // and only the file is closed

    sys.reset();
    CHECK(fs.lstat(root_actor, d / "a")->type == file_type::directory);  // a shallower path: cached too
    CHECK(sys.calls() == 1);

    sys.reset();
    scope.end();
    CHECK(scope.cached_directories() == 0);
    CHECK(count_of(sys, "close") == dirs);
    CHECK(sys.calls() == dirs);
  }
  sys.reset();
  REQUIRE(fs.lstat(root_actor, d / "a/b/f1"));
  CHECK(sys.calls() == 3 * dirs + 1);  // after the scope, the default walk again
}

TEST_CASE("walk_cache: rename, rmdir and unlink through the fs drop the cached entries at and below the path") {
  scratch d;
  hostcfg::testing::syscall_faults sys;
  PosixFs fs(sys.table());
  REQUIRE(::mkdir((d / "sub").c_str(), 0755) == 0);
  REQUIRE(::mkdir((d / "sub/inner").c_str(), 0755) == 0);
  write_raw(d / "sub/inner/f", "old tree\n");
  REQUIRE(::mkdir((d / "gone").c_str(), 0755) == 0);
  REQUIRE(::mkdir((d / "keep").c_str(), 0755) == 0);
  write_raw(d / "keep/f", "kept\n");
  auto scope = fs.walk_cache();
  // Root's writes walk under the root-safety rule, cached apart from its reads: this first write
  // caches "/" .. the scratch directory for them, so the counts below move only by what changes.
  REQUIRE(fs.mkdir(root_actor, d / "warm", 0755));

  // rename: the cached fds of sub and sub/inner now name "moved"; a later walk of sub/... must
  // not find the moved tree through them.
  REQUIRE(fs.read_file(root_actor, d / "sub/inner/f", 100)->bytes == "old tree\n");
  REQUIRE(fs.lstat(root_actor, d / "keep/f"));
  std::size_t before = scope.cached_directories();
  REQUIRE(fs.rename(root_actor, d / "sub", d / "moved"));
  CHECK(scope.cached_directories() == before - 2);  // sub and sub/inner; keep and the parents stay
  auto stale = fs.lstat(root_actor, d / "sub/inner/f");
  REQUIRE(!stale);
  CHECK(stale.error().is_errno(ENOENT));
  CHECK(fs.read_file(root_actor, d / "moved/inner/f", 100)->bytes == "old tree\n");
  REQUIRE(::mkdir((d / "sub").c_str(), 0755) == 0);
  REQUIRE(::mkdir((d / "sub/inner").c_str(), 0755) == 0);
  write_raw(d / "sub/inner/f", "new tree\n");
  sys.reset();
  CHECK(fs.read_file(root_actor, d / "sub/inner/f", 100)->bytes == "new tree\n");
  CHECK(count_of(sys, "openat2") + count_of(sys, "openat") == 3);  // sub, sub/inner (walked again), the file
  sys.reset();
  CHECK(fs.read_file(root_actor, d / "keep/f", 100)->bytes == "kept\n");  // untouched entries still cached
  CHECK(count_of(sys, "openat2") + count_of(sys, "openat") == 1);

  // rmdir: the cached fd names a removed directory; the one made in its place must be seen.
  auto nothing = fs.lstat(root_actor, d / "gone/x");  // caches "gone"
  REQUIRE(!nothing);
  CHECK(nothing.error().is_errno(ENOENT));
  REQUIRE(fs.rmdir(root_actor, d / "gone"));
  REQUIRE(::mkdir((d / "gone").c_str(), 0755) == 0);
  write_raw(d / "gone/x", "recreated\n");
  auto seen = fs.lstat(root_actor, d / "gone/x");
  REQUIRE(seen);
  CHECK(seen->ino == lstat_raw(d / "gone/x").st_ino);

  // A failed rename drops the entries too (conservative: nothing is known to have stayed).
  REQUIRE(fs.lstat(root_actor, d / "sub/inner/f"));
  before = scope.cached_directories();
  CHECK(fs.rename(root_actor, d / "sub", d / "missing-parent/x").error().is_errno(ENOENT));
  CHECK(scope.cached_directories() == before);  // the walk of `to` failed before any rename: kept
  auto onto_file = fs.rename(root_actor, d / "sub", d / "keep/f");
  REQUIRE(!onto_file);
  CHECK(onto_file.error().is_errno(ENOTDIR));
  CHECK(scope.cached_directories() == before + 1 - 2);  // keep joins root's write set; sub, sub/inner dropped

  // unlink of a file and mkdir drop nothing but their own path.
  REQUIRE(fs.lstat(root_actor, d / "sub/inner/f"));
  before = scope.cached_directories();
  REQUIRE(fs.unlink(root_actor, d / "sub/inner/f"));
  REQUIRE(fs.mkdir(root_actor, d / "sub/inner/new", 0750));
  CHECK(scope.cached_directories() == before + 2);  // sub and sub/inner joined root's write set
  CHECK(fs.list_dir(root_actor, d / "sub/inner").value() == std::vector<std::string>{"new"});
  CHECK(fs.lstat(root_actor, d / "sub/inner/new")->mode == 0750);
}

TEST_CASE("walk_cache: a cached directory swapped for a symlink afterwards is never followed") {
  if (!is_root()) { HOSTCFG_SKIP("needs root to make a nobody-owned symlink"); return; }
  scratch d;
  PosixFs fs;
  replace_options opts;
  opts.mode = 0644;
  REQUIRE(::mkdir((d / "conf").c_str(), 0755) == 0);
  REQUIRE(::mkdir((d / "elsewhere").c_str(), 0755) == 0);
  write_raw(d / "conf/first", "first\n");
  {
    auto scope = fs.walk_cache();
    // Cached for reads (lstat) and for root's writes (replace_file: the root-safety rule).
    REQUIRE(fs.lstat(root_actor, d / "conf/first"));
    REQUIRE(fs.replace_file(root_actor, d / "conf/second", "second\n", opts));

    // Someone moves the verified directory away and plants a link at its name.
    REQUIRE(::rename((d / "conf").c_str(), (d / "conf.old").c_str()) == 0);
    REQUIRE(::symlink((d / "elsewhere").c_str(), (d / "conf").c_str()) == 0);
    REQUIRE(::lchown((d / "conf").c_str(), nobody, nobody) == 0);

    auto write = fs.replace_file(root_actor, d / "conf/third", "third\n", opts);
    REQUIRE(write);  // landed in the directory that was verified, wherever it is now
    CHECK(hostcfg_test::read_whole_file_or_empty(d / "conf.old/third") == "third\n");
    auto read = fs.read_file(root_actor, d / "conf/first", 100);
    REQUIRE(read);
    CHECK(read->bytes == "first\n");
    CHECK(read->status.ino == lstat_raw(d / "conf.old/first").st_ino);
    CHECK(std::filesystem::is_empty(d / "elsewhere"));  // nothing went through the new link
  }
  // Without the scope the walk meets the planted link and refuses it.
  auto after = fs.replace_file(root_actor, d / "conf/fourth", "fourth\n", opts);
  REQUIRE(!after);
  CHECK(after.error().is_errno(ELOOP));
  CHECK(after.error().path == d / "conf");
  CHECK(std::filesystem::is_empty(d / "elsewhere"));
}

TEST_CASE("walk_cache: fds verified for one identity or rule never serve another") {
  if (!is_root()) { HOSTCFG_SKIP("needs root to act as nobody"); return; }
  scratch d;
  hostcfg::testing::syscall_faults sys;
  PosixFs fs(sys.table());
  // root can reach private/pub/file; nobody cannot pass private (0700), though pub is 0777.
  REQUIRE(::mkdir((d / "private").c_str(), 0700) == 0);
  REQUIRE(::mkdir((d / "private/pub").c_str(), 0777) == 0);
  REQUIRE(::chmod((d / "private/pub").c_str(), 0777) == 0);
  write_raw(d / "private/pub/file", "root only\n", 0644);
  const std::size_t dirs = path_components(d / "private/pub/file").size();
  auto scope = fs.walk_cache();

  REQUIRE(fs.read_file(root_actor, d / "private/pub/file", 100)->bytes == "root only\n");
  CHECK(scope.cached_directories() == dirs);
  sys.reset();
  auto denied = fs.read_file(nobody_actor, d / "private/pub/file", 100);
  REQUIRE(!denied);  // root's fd of pub would have let nobody in
  CHECK(denied.error().is_errno(EACCES));
  // private itself opens (O_PATH needs only search permission on its parent); the kernel stops
  // nobody at the lookup of pub inside it.
  CHECK(denied.error().path == d / "private/pub");
  // nobody walked from "/" itself (AT_FDCWD openat), and its directories are cached apart:
  // /, var, tmp, the scratch directory and private.
  CHECK(count_of(sys, "openat") >= 1);
  CHECK(scope.cached_directories() == dirs + (dirs - 1));
  const actor other_groups{nobody, nobody, {0}};  // same uid, other groups: another identity
  CHECK(fs.read_file(other_groups, d / "private/pub/file", 100).error().is_errno(EACCES));
  CHECK(scope.cached_directories() == dirs + 2 * (dirs - 1));

  // The root-safety rule: directories root read through (cached for reads) are not thereby ones
  // root may write below. inner is root-owned, but its parent belongs to nobody, who could swap it.
  std::string user_dir = d / "user";
  REQUIRE(::mkdir(user_dir.c_str(), 0755) == 0);
  REQUIRE(::mkdir((user_dir + "/inner").c_str(), 0755) == 0);
  REQUIRE(::chown(user_dir.c_str(), nobody, nobody) == 0);
  auto probe = fs.lstat(root_actor, user_dir + "/inner/f");  // caches user and user/inner for reads
  CHECK(probe.error().is_errno(ENOENT));
  replace_options opts;
  opts.mode = 0644;
  auto write = fs.replace_file(root_actor, user_dir + "/inner/f", "x", opts);
  REQUIRE(!write);
  CHECK(write.error().is(errc::unsafe_path));
  CHECK(write.error().path == user_dir);
  CHECK(::access((user_dir + "/inner/f").c_str(), F_OK) != 0);
  // ... and nobody, in its own directory, still writes as nobody.
  REQUIRE(fs.replace_file(nobody_actor, user_dir + "/f", "mine\n", opts));
  CHECK(lstat_raw(user_dir + "/f").st_uid == nobody);
  CHECK(hostcfg_test::read_whole_file_or_empty(user_dir + "/f") == "mine\n");
}

TEST_CASE("walk_cache: every cached fd is closed when the last scope ends, even after the PosixFs") {
  scratch d;
  REQUIRE(::mkdir((d / "a").c_str(), 0755) == 0);
  REQUIRE(::mkdir((d / "b").c_str(), 0755) == 0);
  write_raw(d / "a/f", "a\n");
  write_raw(d / "b/f", "b\n");
  const std::size_t baseline = hostcfg_test::open_fd_count();
  std::optional<PosixFs::walk_cache_scope> survivor;
  {
    PosixFs fs;
    auto outer = fs.walk_cache();
    REQUIRE(fs.read_file(root_actor, d / "a/f", 100));
    REQUIRE(fs.lstat(root_actor, d / "b/f"));
    const std::size_t cached = outer.cached_directories();
    CHECK(cached == path_components(d / "a/f").size() + 1);  // "/" .. scratch, then a and b
    CHECK(hostcfg_test::open_fd_count() == baseline + cached);
    {
      auto inner = fs.walk_cache();  // nested: shares the cache
      CHECK(inner.cached_directories() == cached);
      REQUIRE(fs.lstat(root_actor, d / "a/f"));
    }
    CHECK(hostcfg_test::open_fd_count() == baseline + cached);  // the inner end closes nothing
    CHECK(outer.cached_directories() == cached);
    survivor.emplace(std::move(outer));
    CHECK(outer.cached_directories() == 0);  // NOLINT(bugprone-use-after-move): moved-from holds nothing
  }
  CHECK(hostcfg_test::open_fd_count() > baseline);  // the PosixFs is gone; the scope still holds the fds
  survivor.reset();
  CHECK(hostcfg_test::open_fd_count() == baseline);
}

// ---------------------------------------------------------------- posix_sweep (hostcfg/testing)

namespace {

/// Two files in a root-owned scratch tree, "old\n" each, for the posix_sweep tests below.
struct two_files {
  scratch d{hostcfg_test::scratch_disk::tmpfs_first};
  std::string a = d / "etc/a";
  std::string b = d / "etc/b";
  void reset() const {
    std::error_code ec;
    std::filesystem::remove_all(d / "etc", ec);
    REQUIRE(::mkdir((d / "etc").c_str(), 0755) == 0);
    write_raw(a, "old\n");
    write_raw(b, "old\n");
  }
  /// `bytes` into a file the atomic way, as a converge would.
  static result<replace_outcome> put(PosixFs& fs, const std::string& path, const std::string& bytes) {
    replace_options o;
    o.mode = 0644;
    return fs.replace_file(root_actor, path, bytes, o);
  }
};

}  // namespace

TEST_CASE("posix_sweep: two atomic replaces pass at every call; an unlink-then-create is named with its call") {
  if (!is_root()) { HOSTCFG_SKIP("needs root for a root-owned sandbox"); return; }
  two_files t;
  std::vector<testing::sweep_phase> phases;
  testing::posix_sweep_options options;
  options.invariant = [&](testing::sweep_phase phase) {
    phases.push_back(phase);
    return std::vector<std::string>{};
  };
  auto atomic = testing::posix_sweep(
      "two replaces", t.d.path, [&] { t.reset(); },
      [&](const syscall_table& calls) -> result<converge_report> {
        PosixFs fs(calls);
        for (const auto* path : {&t.a, &t.b})
          if (auto r = two_files::put(fs, *path, "new\n"); !r) return tl::unexpected(r.error());
        return converge_report{};
      },
      options);
  INFO(atomic.text());
  CHECK(atomic.ok());
  CHECK(atomic.syscalls > 20);
  CHECK(atomic.indices == atomic.syscalls);  // every call by default
  CHECK(atomic.points == 3 * atomic.syscalls);
  // Most faults fail a replace and are returned; the others (a failed close, a failed directory
  // fsync after the rename...) must have cost nothing, which the harness checked.
  CHECK(atomic.reported > atomic.points / 2);
  CHECK(atomic.reported < atomic.points);
  // The invariant saw the clean run, then a faulty run and a re-run per point, and no uninstall.
  CHECK(phases.size() == 1 + 2 * atomic.points);
  CHECK(std::count(phases.begin(), phases.end(), testing::sweep_phase::after_uninstall) == 0);

  auto torn = testing::posix_sweep("unlink, then create", t.d.path, [&] { t.reset(); },
                                   [&](const syscall_table& calls) -> result<converge_report> {
                                     PosixFs fs(calls);
                                     if (auto gone = fs.unlink(root_actor, t.a); !gone)
                                       return tl::unexpected(gone.error());
                                     if (auto r = two_files::put(fs, t.a, "new\n"); !r)
                                       return tl::unexpected(r.error());
                                     return converge_report{};
                                   });
  CHECK_FALSE(torn.ok());
  CHECK(torn.text().find("crash: /etc/a is neither as before nor as after") != std::string::npos);
}

TEST_CASE("posix_sweep: a fault swallowed by the flow is named when it cost something") {
  if (!is_root()) { HOSTCFG_SKIP("needs root for a root-owned sandbox"); return; }
  two_files t;
  testing::posix_sweep_options options;
  options.crash = false;
  options.fail_persistent = false;
  options.third_run = false;
  auto report = testing::posix_sweep("second replace ignored", t.d.path, [&] { t.reset(); },
                                     [&](const syscall_table& calls) -> result<converge_report> {
                                       PosixFs fs(calls);
                                       if (auto r = two_files::put(fs, t.a, "new\n"); !r)
                                         return tl::unexpected(r.error());
                                       (void)two_files::put(fs, t.b, "new\n");  // the bug: result dropped
                                       return converge_report{};
                                     },
                                     options);
  CHECK_FALSE(report.ok());
  CHECK(report.points == report.syscalls);
  CHECK(report.text().find("failing once: an unreported fault left: changed /etc/b") != std::string::npos);
}

TEST_CASE("posix_sweep with an uninstall: one that gives the tree back passes, a forgetful one is named") {
  if (!is_root()) { HOSTCFG_SKIP("needs root for a root-owned sandbox"); return; }
  two_files t;
  auto flow = [&](const std::string& bytes) {
    return [&t, bytes](const syscall_table& calls) -> result<converge_report> {
      PosixFs fs(calls);
      if (auto r = two_files::put(fs, t.a, bytes); !r) return tl::unexpected(r.error());
      return converge_report{};
    };
  };
  std::size_t uninstalls = 0;
  testing::posix_sweep_options options;
  options.uninstall = flow("old\n");  // gives "old\n" back: the before tree
  options.invariant = [&](testing::sweep_phase phase) {
    if (phase == testing::sweep_phase::after_uninstall) ++uninstalls;
    return std::vector<std::string>{};
  };
  auto report = testing::posix_sweep("replace, then uninstall", t.d.path, [&] { t.reset(); }, flow("new\n"), options);
  INFO(report.text());
  CHECK(report.ok());
  CHECK(uninstalls == 2 * report.points);  // after each re-run, and straight after each fault
  options.uninstall = [](const syscall_table&) -> result<converge_report> { return converge_report{}; };
  auto forgetful = testing::posix_sweep("replace, then a forgetful uninstall", t.d.path, [&] { t.reset(); },
                                        flow("new\n"), options);
  CHECK_FALSE(forgetful.ok());
  CHECK(forgetful.text().find("re-run, uninstalled: after the uninstall, unlike before: ") != std::string::npos);
  CHECK(forgetful.text().find("/etc/a") != std::string::npos);
}

TEST_CASE("lock_for_edit: a directory renamed while held is not the one a nested request of its old name gets") {
  MemoryFs fs;
  fs.add_dir("/home/u", 0755, 0, 0);
  auto outer = lock_for_edit(fs, root_actor, "/home/u/.profile");  // locks /home/u
  REQUIRE(outer);
  REQUIRE(fs.rename(root_actor, "/home/u", "/home/old-u"));  // someone moves it away ...
  REQUIRE(fs.mkdir(root_actor, "/home/u", 0755));            // ... and makes a new one
  auto inner = lock_for_edit(fs, root_actor, "/home/u/app.record");
  REQUIRE(inner);  // a lock of its own, not a share of the moved directory's
  CHECK(fs.lock(root_actor, "/home/u").error().is_errno(EWOULDBLOCK));      // the new one is held
  CHECK(fs.lock(root_actor, "/home/old-u").error().is_errno(EWOULDBLOCK));  // and so is the old one
  inner->reset();
  CHECK(fs.lock(root_actor, "/home/u"));
  CHECK(fs.lock(root_actor, "/home/old-u").error().is_errno(EWOULDBLOCK));
  outer->reset();
  CHECK(fs.lock(root_actor, "/home/old-u"));
}

TEST_CASE("lock_for_edit: a lock moved to another thread and released there keeps the nested holder's lock") {
  scratch d;
  PosixFs fs;
  REQUIRE(::mkdir((d / "home").c_str(), 0755) == 0);
  auto outer = lock_for_edit(fs, root_actor, d / "home/.profile");
  REQUIRE(outer);
  auto inner = lock_for_edit(fs, root_actor, d / "home/app.record");  // shares the outer's
  REQUIRE(inner);
  std::thread([moved = std::move(*outer)]() mutable { moved.reset(); }).join();  // released elsewhere
  int fd = ::open((d / "home").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  CHECK(::flock(fd, LOCK_EX | LOCK_NB) != 0);  // the inner holder still has it
  auto again = lock_for_edit(fs, root_actor, d / "home/other");  // this thread joins the held lock
  REQUIRE(again);
  inner->reset();
  CHECK(::flock(fd, LOCK_EX | LOCK_NB) != 0);
  again->reset();
  CHECK(::flock(fd, LOCK_EX | LOCK_NB) == 0);  // the last holder let go
  ::close(fd);
  auto fresh = lock_for_edit(fs, root_actor, d / "home/.profile");  // a released lock is never joined
  REQUIRE(fresh);
}

TEST_CASE("posix_sweep: the disk snapshot compares mode and owner, shows links, and never follows a symlink") {
  if (!is_root()) { HOSTCFG_SKIP("needs root for a root-owned sandbox and chown"); return; }
  two_files t;
  // A mode and an owner changed apart from the bytes: a crash between leaves neither state.
  auto report = testing::posix_sweep("chmod, chown, then replace", t.d.path, [&] { t.reset(); },
                                     [&](const syscall_table& calls) -> result<converge_report> {
                                       PosixFs fs(calls);
                                       if (auto m = fs.chmod(root_actor, t.a, 0600); !m) return tl::unexpected(m.error());
                                       if (auto o = fs.lchown(root_actor, t.b, nobody, nobody); !o)
                                         return tl::unexpected(o.error());
                                       for (const auto* path : {&t.a, &t.b})
                                         if (auto r = two_files::put(fs, *path, "new\n"); !r)
                                           return tl::unexpected(r.error());
                                       return converge_report{};
                                     });
  CHECK_FALSE(report.ok());
  CHECK(report.text().find("crash: /etc/a is neither as before nor as after") != std::string::npos);
  CHECK(report.text().find("crash: /etc/b is neither as before nor as after") != std::string::npos);

  t.reset();
  REQUIRE(::symlink("/", (t.d / "etc/out").c_str()) == 0);
  REQUIRE(::link(t.a.c_str(), (t.d / "etc/a2").c_str()) == 0);
  const auto tree = testing::detail::disk_snapshot(t.d.path);
  REQUIRE(tree.entries.count("/etc/out") == 1);
  CHECK(tree.entries.at("/etc/out").type == file_type::symlink);
  CHECK(tree.entries.at("/etc/out").data == "/");
  for (const auto& entry : tree.entries) CHECK(entry.first.rfind("/etc/out/", 0) != 0);  // not followed
  CHECK(tree.entries.at("/etc/a").data == "old\n\n(2 links)");
  CHECK(tree.entries.at("/etc/b").data == "old\n");
  CHECK(tree.entries.at("/etc").type == file_type::directory);
  CHECK(tree.entries.at("/etc").mode == 0755);
}
