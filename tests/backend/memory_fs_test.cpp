// MemoryFs: the in-memory backend must fail like the kernel (errnos, permissions, flags,
// devices), log every operation, inject faults, model crashes and diff snapshots.
#include "hostcfg/backend/memory_fs.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "support/real_fs.hpp"
#include "support/test_support.hpp"

using hostcfg::actor;
using hostcfg::file_flags;
using hostcfg::file_type;
using hostcfg::MemoryFs;
using hostcfg::replace_options;

namespace {

static_assert(hostcfg::check_fs<MemoryFs>(), "MemoryFs implements the whole Fs contract");

const actor root = actor::root();
const actor alice{501, 20, {20, 12, 61, 79, 80, 81}};  // a macOS admin user: staff + admin
const actor bob{502, 20, {20}};                        // a standard user

const char* const hosts_v1 = "127.0.0.1\tlocalhost\n255.255.255.255\tbroadcasthost\n::1 localhost\n";
const char* const hosts_v2 = "127.0.0.1\tlocalhost\n255.255.255.255\tbroadcasthost\n::1 localhost\n"
                             "# Added by Docker Desktop\n127.0.0.1 kubernetes.docker.internal\n# End of section\n";

using hostcfg_test::errno_of;

// A macOS-like tree: /etc -> private/etc, /tmp -> private/tmp (sticky), root:wheel
// /usr/local/bin, the users' homes, the app bundle.
MemoryFs mac_tree() {
  MemoryFs fs;
  fs.add_dir("/usr/local/bin", 0755, 0, 0);
  fs.add_dir("/private/etc", 0755, 0, 0);
  fs.add_symlink("/etc", "private/etc");
  fs.add_file("/private/etc/hosts", hosts_v1, 0644, 0, 0);
  fs.add_dir("/private/tmp", 01777, 0, 0);
  fs.add_symlink("/tmp", "private/tmp");
  fs.add_dir("/Users", 0755, 0, 80);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  fs.add_file("/Users/alice/.zprofile", "export A=1\n", 0644, 501, 20);
  fs.add_dir("/Users/bob", 0700, 502, 20);
  fs.add_file("/Applications/Docker.app/Contents/Resources/bin/docker", "#!bin\n", 0755, 0, 80);
  return fs;
}

replace_options new_file(hostcfg::mode_type mode) {
  replace_options o;
  o.mode = mode;
  return o;
}

bool has_temp(const MemoryFs& fs) {
  for (const auto& entry : fs.take_snapshot().entries)
    if (entry.first.find(".hostcfg-") != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("a new MemoryFs holds only / as root:root 0755 on device 1") {
  MemoryFs fs;
  auto st = fs.lstat(root, "/");
  REQUIRE(st);
  CHECK(st->type == file_type::directory);
  CHECK(st->mode == 0755);
  CHECK(st->uid == 0);
  CHECK(st->gid == 0);
  CHECK(st->dev == 1);
  CHECK(fs.take_snapshot().entries.size() == 1);
  CHECK(*fs.list_dir(root, "/") == std::vector<std::string>{});
}

TEST_CASE("a relative or unnormalized path is invalid input, not a lookup from the cwd") {
  MemoryFs fs;
  auto rel = fs.lstat(root, "etc/hosts");
  REQUIRE(!rel);
  CHECK(rel.error().is(hostcfg::errc::invalid_input));
  CHECK(fs.lstat(root, "/etc/../etc").error().is(hostcfg::errc::invalid_input));
}

TEST_CASE("lstat reports a symlink itself, stat follows it, readlink returns the stored string") {
  MemoryFs fs = mac_tree();
  auto l = fs.lstat(root, "/etc");
  REQUIRE(l);
  CHECK(l->type == file_type::symlink);
  CHECK(l->size == std::string("private/etc").size());
  auto s = fs.stat(root, "/etc");
  REQUIRE(s);
  CHECK(s->type == file_type::directory);
  CHECK(s->ino == fs.lstat(root, "/private/etc")->ino);
  CHECK(*fs.readlink(root, "/etc") == "private/etc");
  CHECK(errno_of(fs.readlink(root, "/private/etc/hosts")) == EINVAL);
  CHECK(errno_of(fs.readlink(root, "/nope")) == ENOENT);
}

TEST_CASE("an intermediate symlink (/etc -> private/etc) is followed by every operation") {
  MemoryFs fs = mac_tree();
  auto read = fs.read_file(root, "/etc/hosts", 1 << 20);
  REQUIRE(read);
  CHECK(read->bytes == hosts_v1);
  auto replaced = fs.replace_file(root, "/etc/hosts", hosts_v2, replace_options{});
  REQUIRE(replaced);
  CHECK(replaced->changed);
  CHECK(fs.file_bytes("/private/etc/hosts") == std::string(hosts_v2));
  CHECK(fs.status_of("/etc")->type == file_type::symlink);  // the link itself is untouched
}

TEST_CASE("symlink chains resolve up to 40 hops and give ELOOP beyond") {
  MemoryFs fs;
  fs.add_dir("/d");
  fs.add_file("/d/target", "x");
  // /l0 -> /d, /l1 -> /l0, ... : walking /lN/target takes N+1 hops.
  fs.add_symlink("/l0", "/d");
  for (int i = 1; i <= 40; ++i) fs.add_symlink("/l" + std::to_string(i), "/l" + std::to_string(i - 1));
  CHECK(fs.lstat(root, "/l39/target"));
  auto too_far = fs.lstat(root, "/l40/target");
  CHECK(errno_of(too_far) == ELOOP);
  fs.add_symlink("/loop", "/loop");
  CHECK(errno_of(fs.stat(root, "/loop")) == ELOOP);
  CHECK(fs.lstat(root, "/loop")->type == file_type::symlink);  // lstat does not follow the last one
  fs.add_symlink("/dangling", "/nowhere");
  CHECK(errno_of(fs.stat(root, "/dangling")) == ENOENT);
}

TEST_CASE("a relative symlink with .. resolves against the link's directory") {
  MemoryFs fs;
  fs.add_file("/usr/lib/x", "lib");
  fs.add_dir("/usr/bin");
  fs.add_symlink("/usr/bin/up", "../lib");
  CHECK(fs.read_file(root, "/usr/bin/up/x", 100)->bytes == "lib");
}

TEST_CASE("read_file refuses what is not a lone regular file, each with the kernel's errno") {
  MemoryFs fs = mac_tree();
  fs.add_special("/private/etc/fifo", file_type::fifo);
  fs.add_file("/data/one", "abc");
  fs.add_hard_link("/data/one", "/data/two");
  fs.add_file("/data/big", std::string(2000, 'x'));
  CHECK(errno_of(fs.read_file(root, "/nope", 100)) == ENOENT);
  CHECK(errno_of(fs.read_file(root, "/private/etc", 100)) == EISDIR);
  CHECK(errno_of(fs.read_file(root, "/private/etc/fifo", 100)) == EINVAL);
  CHECK(errno_of(fs.read_file(root, "/tmp", 100)) == ELOOP);  // a final symlink is never followed
  CHECK(errno_of(fs.read_file(root, "/private/etc/hosts/x", 100)) == ENOTDIR);
  CHECK(fs.status_of("/data/one")->nlink == 2);
  CHECK(errno_of(fs.read_file(root, "/data/one", 100)) == EMLINK);
  auto big = fs.read_file(root, "/data/big", 1999);
  REQUIRE(!big);
  CHECK(big.error().is(hostcfg::errc::too_large));
  CHECK(fs.read_file(root, "/data/big", 2000)->bytes.size() == 2000);
}

TEST_CASE("read_file fills the status with flags; others leave flags clear") {
  MemoryFs fs = mac_tree();
  fs.set_flags("/private/etc/hosts", file_flags{true, false});
  auto read = fs.read_file(root, "/etc/hosts", 4096);
  REQUIRE(read);
  CHECK(read->status.flags.immutable);
  CHECK(read->status.mode == 0644);
  CHECK(read->status.size == std::string(hosts_v1).size());
  CHECK(fs.get_flags(root, "/etc/hosts")->immutable);
  CHECK_FALSE(fs.lstat(root, "/etc/hosts")->flags.immutable);
}

TEST_CASE("/usr/local/bin is root:wheel 0755 and uid 501 cannot create there -> EACCES") {
  MemoryFs fs = mac_tree();
  const char* link = "/usr/local/bin/docker";
  const char* target = "/Applications/Docker.app/Contents/Resources/bin/docker";
  auto as_user = fs.symlink(alice, target, link);
  REQUIRE(!as_user);
  CHECK(as_user.error().is_errno(EACCES));
  CHECK(as_user.error().message().find("symlink /usr/local/bin/docker: ") == 0);
  CHECK(as_user.error().message().find("0755 0:0 and uid 501 cannot write there") != std::string::npos);
  CHECK(errno_of(fs.replace_file(alice, "/usr/local/bin/x", "x", new_file(0755))) == EACCES);
  CHECK(errno_of(fs.mkdir(alice, "/usr/local/bin/d", 0755)) == EACCES);
  CHECK(errno_of(fs.replace_symlink(alice, target, link, std::nullopt)) == EACCES);
  CHECK_FALSE(fs.status_of(link));
  REQUIRE(fs.symlink(root, target, link));
  auto made = fs.status_of(link);
  REQUIRE(made);
  CHECK(made->uid == 0);
  CHECK(*fs.readlink(alice, link) == target);
  // Removing it is as forbidden as creating it.
  CHECK(errno_of(fs.unlink(alice, link)) == EACCES);
}

TEST_CASE("a user-owned /usr/local/bin lets the user create links owned by the user") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/usr/local/bin", 0755, 501, 80);
  REQUIRE(fs.symlink(alice, "/x", "/usr/local/bin/docker"));
  CHECK(fs.status_of("/usr/local/bin/docker")->uid == 501);
  CHECK(fs.status_of("/usr/local/bin/docker")->gid == 20);
}

TEST_CASE("without search permission on a directory nothing below it can be looked up") {
  MemoryFs fs = mac_tree();
  fs.add_file("/Users/bob/secret", "s", 0644, 502, 20);
  CHECK(errno_of(fs.lstat(alice, "/Users/bob/secret")) == EACCES);
  CHECK(errno_of(fs.lstat(bob, "/Users/bob/secret")) == 0);
  CHECK(errno_of(fs.lstat(root, "/Users/bob/secret")) == 0);
  // Group members may search alice's 0750 home; others may not.
  actor other{503, 30, {30}};
  CHECK(errno_of(fs.lstat(bob, "/Users/alice/.zprofile")) == 0);
  CHECK(errno_of(fs.lstat(other, "/Users/alice/.zprofile")) == EACCES);
}

TEST_CASE("a file readable only by its owner gives EACCES to others and is read by root") {
  MemoryFs fs = mac_tree();
  fs.add_file("/private/etc/sudoers", "root ALL\n", 0440, 0, 0);
  CHECK(errno_of(fs.read_file(alice, "/etc/sudoers", 100)) == EACCES);
  CHECK(fs.read_file(root, "/etc/sudoers", 100)->bytes == "root ALL\n");
}

TEST_CASE("sticky /tmp: users remove their own entries, not each other's (EPERM)") {
  MemoryFs fs = mac_tree();
  fs.add_file("/private/tmp/alice.txt", "a", 0644, 501, 20);
  fs.add_file("/private/tmp/bob.txt", "b", 0666, 502, 20);
  CHECK(errno_of(fs.unlink(bob, "/tmp/alice.txt")) == EPERM);
  CHECK(errno_of(fs.rename(bob, "/tmp/alice.txt", "/tmp/mine.txt")) == EPERM);
  CHECK(errno_of(fs.rename(alice, "/tmp/alice.txt", "/tmp/bob.txt")) == EPERM);  // replacing bob's
  CHECK(errno_of(fs.replace_file(alice, "/tmp/bob.txt", "mine", replace_options{})) == EPERM);
  CHECK(fs.file_bytes("/private/tmp/bob.txt") == std::string("b"));
  CHECK(fs.unlink(bob, "/tmp/bob.txt"));
  CHECK(fs.unlink(root, "/tmp/alice.txt"));
  CHECK(fs.list_dir(root, "/private/tmp")->empty());
}

TEST_CASE("chown by a non-root user is refused with EPERM; chgrp to a member group is allowed") {
  MemoryFs fs = mac_tree();
  const char* p = "/Users/alice/.zprofile";
  CHECK(errno_of(fs.lchown(alice, p, 0, 20)) == EPERM);
  CHECK(errno_of(fs.lchown(bob, p, 502, 20)) == EPERM);
  CHECK(errno_of(fs.lchown(alice, p, 501, 0)) == EPERM);  // not in wheel
  REQUIRE(fs.lchown(alice, p, static_cast<hostcfg::uid_type>(-1), 80));
  CHECK(fs.status_of(p)->gid == 80);
  CHECK(fs.status_of(p)->uid == 501);
  REQUIRE(fs.lchown(root, p, 0, 0));
  CHECK(fs.status_of(p)->uid == 0);
  CHECK(fs.status_of(p)->gid == 0);
}

TEST_CASE("lchown never follows a symlink") {
  MemoryFs fs = mac_tree();
  REQUIRE(fs.lchown(root, "/etc", 501, 20));
  CHECK(fs.status_of("/etc")->uid == 501);
  CHECK(fs.status_of("/private/etc")->uid == 0);
}

TEST_CASE("chmod sets the exact bits, only for the owner or root, never through a symlink") {
  MemoryFs fs = mac_tree();
  const char* p = "/Users/alice/.zprofile";
  REQUIRE(fs.chmod(alice, p, 0600));
  CHECK(fs.status_of(p)->mode == 0600);
  CHECK(errno_of(fs.chmod(bob, "/private/tmp", 0777)) == EPERM);
  CHECK(errno_of(fs.chmod(root, "/etc", 0700)) == EOPNOTSUPP);
  CHECK(fs.status_of("/private/etc")->mode == 0755);
  REQUIRE(fs.chmod(root, "/private/etc/hosts", 0600));
  CHECK(fs.status_of("/private/etc/hosts")->mode == 0600);
}

TEST_CASE("an immutable file gives EPERM to every change, even for root") {
  MemoryFs fs = mac_tree();
  fs.set_flags("/private/etc/hosts", file_flags{true, false});
  auto before = fs.take_snapshot();
  auto replaced = fs.replace_file(root, "/etc/hosts", hosts_v2, replace_options{});
  REQUIRE(!replaced);
  CHECK(replaced.error().is_errno(EPERM));
  CHECK(errno_of(fs.unlink(root, "/etc/hosts")) == EPERM);
  CHECK(errno_of(fs.rename(root, "/etc/hosts", "/etc/hosts.old")) == EPERM);
  CHECK(errno_of(fs.rename(root, "/Users/alice/.zprofile", "/etc/hosts")) == EPERM);
  CHECK(errno_of(fs.chmod(root, "/etc/hosts", 0600)) == EPERM);
  CHECK(errno_of(fs.lchown(root, "/etc/hosts", 501, 20)) == EPERM);
  CHECK(MemoryFs::diff(before, fs.take_snapshot()).empty());
  CHECK_FALSE(has_temp(fs));
}

TEST_CASE("an append-only file cannot be replaced or removed; an immutable dir takes no new names") {
  MemoryFs fs = mac_tree();
  fs.add_file("/var/log/install.log", "line\n");
  fs.set_flags("/var/log/install.log", file_flags{false, true});
  CHECK(errno_of(fs.replace_file(root, "/var/log/install.log", "x", replace_options{})) == EPERM);
  CHECK(errno_of(fs.unlink(root, "/var/log/install.log")) == EPERM);
  fs.set_flags("/usr/local/bin", file_flags{true, false});
  CHECK(errno_of(fs.symlink(root, "/x", "/usr/local/bin/docker")) == EPERM);
  CHECK(errno_of(fs.mkdir(root, "/usr/local/bin/d", 0755)) == EPERM);
}

TEST_CASE("rename across set_device mounts gives EXDEV; objects made below report the device") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/Volumes/External");
  fs.set_device("/Volumes/External", 7);
  REQUIRE(fs.replace_file(root, "/Volumes/External/f", "x", new_file(0644)));
  CHECK(fs.status_of("/Volumes/External/f")->dev == 7);
  CHECK(fs.status_of("/Volumes/External")->dev == 7);
  CHECK(fs.status_of("/Volumes")->dev == 1);
  auto moved = fs.rename(root, "/Volumes/External/f", "/private/tmp/f");
  REQUIRE(!moved);
  CHECK(moved.error().is_errno(EXDEV));
  CHECK(moved.error().message().find("rename /Volumes/External/f -> /private/tmp/f: ") == 0);
  CHECK(fs.status_of("/Volumes/External/f"));
  CHECK(errno_of(fs.rename(root, "/Volumes/External", "/Volumes/Other")) == EBUSY);  // a mount root
}

TEST_CASE("a full device: no free inode or no free space gives ENOSPC, leaves no temp, and frees up as files go") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/Volumes/Small", 0755, 0, 0);
  fs.set_device("/Volumes/Small", 7);
  fs.add_file("/Volumes/Small/a", "12345678", 0644, 0, 0);
  fs.set_inode_limit(7, 3);      // the directory, a, and one more
  fs.set_space_limit(7, 12);     // 8 bytes used, 4 free
  replace_options new_file;
  new_file.mode = 0644;
  auto big = fs.replace_file(root, "/Volumes/Small/b", "too many bytes", new_file);
  REQUIRE(!big);
  CHECK(big.error().is_errno(ENOSPC));
  CHECK_FALSE(has_temp(fs));
  REQUIRE(fs.replace_file(root, "/Volumes/Small/b", "1234", new_file));  // exactly the space left
  CHECK(errno_of(fs.mkdir(root, "/Volumes/Small/d", 0755)) == ENOSPC);   // 3 objects: no inode left
  CHECK(errno_of(fs.symlink(root, "a", "/Volumes/Small/l")) == ENOSPC);
  CHECK(errno_of(fs.replace_file(root, "/Volumes/Small/a", "x", replace_options{})) == ENOSPC);  // its temp
  CHECK(fs.file_bytes("/Volumes/Small/a") == std::string("12345678"));
  CHECK(fs.mkdir(root, "/Users/alice/elsewhere", 0755));  // other devices are not limited
  REQUIRE(fs.unlink(root, "/Volumes/Small/b"));
  CHECK(fs.symlink(root, "a", "/Volumes/Small/l"));  // an inode came free
  CHECK_FALSE(has_temp(fs));
}

TEST_CASE("a bind-mounted /etc/hosts: replace gives EBUSY unless the in-place fallback is allowed") {
  MemoryFs fs = mac_tree();
  fs.set_mount_point("/private/etc/hosts");
  const auto ino = fs.status_of("/private/etc/hosts")->ino;
  auto refused = fs.replace_file(root, "/etc/hosts", hosts_v2, replace_options{});
  REQUIRE(!refused);
  CHECK(refused.error().is_errno(EBUSY));
  CHECK(fs.file_bytes("/private/etc/hosts") == std::string(hosts_v1));
  CHECK_FALSE(has_temp(fs));
  replace_options allow;
  allow.allow_in_place_fallback = true;
  auto in_place = fs.replace_file(root, "/etc/hosts", hosts_v2, allow);
  REQUIRE(in_place);
  CHECK(in_place->changed);
  CHECK(in_place->in_place);
  CHECK(fs.file_bytes("/private/etc/hosts") == std::string(hosts_v2));
  CHECK(fs.status_of("/private/etc/hosts")->ino == ino);  // the same inode, rewritten
  CHECK_FALSE(has_temp(fs));
  CHECK(errno_of(fs.unlink(root, "/etc/hosts")) == EBUSY);
}

TEST_CASE("rename replaces files, refuses mismatched types, non-empty dirs and moves into itself") {
  MemoryFs fs;
  fs.add_file("/a/f", "f");
  fs.add_file("/a/g", "g");
  fs.add_file("/b/inside", "i");
  fs.add_dir("/c");
  REQUIRE(fs.rename(root, "/a/f", "/a/g"));
  CHECK(fs.file_bytes("/a/g") == std::string("f"));
  CHECK_FALSE(fs.status_of("/a/f"));
  CHECK(errno_of(fs.rename(root, "/a/nope", "/a/x")) == ENOENT);
  CHECK(errno_of(fs.rename(root, "/a/g", "/c")) == EISDIR);
  CHECK(errno_of(fs.rename(root, "/c", "/a/g")) == ENOTDIR);
  CHECK(errno_of(fs.rename(root, "/c", "/b")) == ENOTEMPTY);
  CHECK(errno_of(fs.rename(root, "/b", "/b/sub")) == EINVAL);
  CHECK(errno_of(fs.rename(root, "/a/g", "/nodir/x")) == ENOENT);
  REQUIRE(fs.rename(root, "/b", "/c"));  // onto an empty directory
  CHECK(fs.file_bytes("/c/inside") == std::string("i"));
  REQUIRE(fs.rename(root, "/c/inside", "/c/inside"));  // same file: nothing happens
  CHECK(fs.file_bytes("/c/inside") == std::string("i"));
  CHECK(fs.status_of("/")->nlink == 4);  // /, /a, /c
}

TEST_CASE("unlink, mkdir, rmdir and symlink return the kernel's errnos") {
  MemoryFs fs;
  fs.add_file("/d/f", "x");
  fs.add_dir("/empty");
  CHECK(errno_of(fs.unlink(root, "/d")) == EISDIR);
  CHECK(errno_of(fs.unlink(root, "/d/nope")) == ENOENT);
  CHECK(errno_of(fs.rmdir(root, "/d")) == ENOTEMPTY);
  CHECK(errno_of(fs.rmdir(root, "/d/f")) == ENOTDIR);
  CHECK(errno_of(fs.mkdir(root, "/d", 0755)) == EEXIST);
  CHECK(errno_of(fs.mkdir(root, "/x/y", 0755)) == ENOENT);
  CHECK(errno_of(fs.mkdir(root, "/d/f/y", 0755)) == ENOTDIR);
  CHECK(errno_of(fs.symlink(root, "/t", "/d/f")) == EEXIST);
  CHECK(errno_of(fs.rmdir(root, "/")) == EBUSY);
  REQUIRE(fs.rmdir(root, "/empty"));
  CHECK_FALSE(fs.status_of("/empty"));
  REQUIRE(fs.unlink(root, "/d/f"));
  CHECK(fs.list_dir(root, "/d")->empty());
}

TEST_CASE("mkdir gives the exact mode (no umask) and the actor as owner") {
  MemoryFs fs = mac_tree();
  REQUIRE(fs.mkdir(alice, "/Users/alice/.docker", 0700));
  auto st = fs.status_of("/Users/alice/.docker");
  REQUIRE(st);
  CHECK(st->mode == 0700);
  CHECK(st->uid == 501);
  CHECK(st->gid == 20);
  REQUIRE(fs.mkdir(alice, "/Users/alice/.docker/bin", 0777));
  CHECK(fs.status_of("/Users/alice/.docker/bin")->mode == 0777);
}

TEST_CASE("make_parents over MemoryFs creates each missing level and returns them outermost first") {
  MemoryFs fs = mac_tree();
  auto made = hostcfg::make_parents(fs, alice, "/Users/alice/.docker/cli-plugins", 0755);
  REQUIRE(made);
  CHECK(*made == std::vector<std::string>{"/Users/alice/.docker", "/Users/alice/.docker/cli-plugins"});
  auto refused = hostcfg::make_parents(fs, alice, "/usr/local/lib/docker", 0755);
  CHECK(errno_of(refused) == EACCES);
}

TEST_CASE("replace_file creates a new file with the given mode and owner, as a new inode each time") {
  MemoryFs fs = mac_tree();
  CHECK(fs.replace_file(root, "/private/etc/new", "x", replace_options{}).error().is(hostcfg::errc::invalid_input));
  replace_options o = new_file(0640);
  o.uid = 501;
  o.gid = 20;
  auto made = fs.replace_file(root, "/private/etc/new", "one", o);
  REQUIRE(made);
  CHECK(made->changed);
  CHECK_FALSE(made->in_place);
  CHECK(made->durable);
  auto st1 = *fs.status_of("/private/etc/new");
  CHECK(st1.mode == 0640);
  CHECK(st1.uid == 501);
  CHECK(st1.gid == 20);
  CHECK(st1.size == 3);
  REQUIRE(fs.replace_file(root, "/private/etc/new", "two!", new_file(0600)));
  auto st2 = *fs.status_of("/private/etc/new");
  CHECK(fs.file_bytes("/private/etc/new") == std::string("two!"));
  CHECK(st2.mode == 0640);  // an existing file keeps its mode...
  CHECK(st2.uid == 501);    // ...and its owner
  CHECK(st2.ino != st1.ino);
  CHECK(st2.mtime_ns > st1.mtime_ns);
  replace_options force = new_file(0600);
  force.force_mode = true;
  REQUIRE(fs.replace_file(root, "/private/etc/new", "three", force));
  CHECK(fs.status_of("/private/etc/new")->mode == 0600);
}

TEST_CASE("replace_file by a user cannot give the file away or keep a foreign owner (EPERM)") {
  MemoryFs fs = mac_tree();
  replace_options o = new_file(0644);
  o.uid = 0;
  CHECK(errno_of(fs.replace_file(alice, "/Users/alice/f", "x", o)) == EPERM);
  fs.add_file("/Users/alice/rootfile", "r", 0644, 0, 0);
  CHECK(errno_of(fs.replace_file(alice, "/Users/alice/rootfile", "x", replace_options{})) == EPERM);
  CHECK(fs.file_bytes("/Users/alice/rootfile") == std::string("r"));
  REQUIRE(fs.replace_file(alice, "/Users/alice/.zprofile", "export A=2\n", replace_options{}));
  CHECK(fs.status_of("/Users/alice/.zprofile")->uid == 501);
}

TEST_CASE("replace_file refuses directories, symlinks and expect_absent over an existing file") {
  MemoryFs fs = mac_tree();
  CHECK(errno_of(fs.replace_file(root, "/private/etc", "x", replace_options{})) == EISDIR);
  CHECK(errno_of(fs.replace_file(root, "/etc", "x", replace_options{})) == ELOOP);
  replace_options o = new_file(0644);
  o.expect_absent = true;
  CHECK(errno_of(fs.replace_file(root, "/etc/hosts", "x", o)) == EEXIST);
  CHECK(fs.replace_file(root, "/etc/fresh", "x", o));
  CHECK(fs.status_of("/etc")->type == file_type::symlink);
}

TEST_CASE("replace_file compare-and-swap: a change since the probe is refused, nothing written") {
  MemoryFs fs = mac_tree();
  auto probed = fs.lstat(root, "/etc/hosts");
  REQUIRE(probed);
  // Someone else edits the file between probe and apply.
  REQUIRE(fs.replace_file(root, "/etc/hosts", "edited\n", replace_options{}));
  replace_options cas;
  cas.expected = *probed;
  auto refused = fs.replace_file(root, "/etc/hosts", hosts_v2, cas);
  REQUIRE(!refused);
  CHECK(refused.error().is(hostcfg::errc::changed_since_probe));
  CHECK(fs.file_bytes("/private/etc/hosts") == std::string("edited\n"));
  CHECK_FALSE(has_temp(fs));
  cas.expected = *fs.lstat(root, "/etc/hosts");
  CHECK(fs.replace_file(root, "/etc/hosts", hosts_v2, cas));
  // expected of type none means "must still be absent".
  replace_options absent = new_file(0644);
  absent.expected = hostcfg::file_status{};
  CHECK(fs.replace_file(root, "/etc/other", "x", absent));
  CHECK(fs.replace_file(root, "/etc/other", "y", absent).error().is(hostcfg::errc::changed_since_probe));
}

TEST_CASE("only_if_different with equal bytes writes nothing: no mutating op, inode and mtime kept") {
  MemoryFs fs = mac_tree();
  auto before = *fs.status_of("/private/etc/hosts");
  fs.clear_log();
  auto same = fs.replace_file(root, "/etc/hosts", hosts_v1, replace_options{});
  REQUIRE(same);
  CHECK_FALSE(same->changed);
  CHECK(fs.mutating_ops() == 0);
  CHECK(fs.op_count() == 1);
  auto after = *fs.status_of("/private/etc/hosts");
  CHECK(after.ino == before.ino);
  CHECK(after.mtime_ns == before.mtime_ns);
  CHECK(hostcfg::same_version(before, after));
  replace_options always;
  always.only_if_different = false;
  auto forced = fs.replace_file(root, "/etc/hosts", hosts_v1, always);
  REQUIRE(forced);
  CHECK(forced->changed);
  CHECK(fs.mutating_ops() == 3);  // create_temp, write, rename
  CHECK(fs.status_of("/private/etc/hosts")->ino != before.ino);
}

TEST_CASE("list_dir is sorted, needs read permission and does not follow a final symlink") {
  MemoryFs fs = mac_tree();
  fs.add_file("/d/b", "");
  fs.add_file("/d/a", "");
  fs.add_dir("/d/C");
  CHECK(*fs.list_dir(root, "/d") == std::vector<std::string>{"C", "a", "b"});
  CHECK(errno_of(fs.list_dir(root, "/d/a")) == ENOTDIR);
  CHECK(errno_of(fs.list_dir(root, "/etc")) == ENOTDIR);
  CHECK(errno_of(fs.list_dir(alice, "/Users/bob")) == EACCES);
  CHECK(errno_of(fs.list_dir(root, "/nope")) == ENOENT);
}

TEST_CASE("lock is exclusive while held, released on destruction, and leaves no file") {
  MemoryFs fs = mac_tree();
  auto before = fs.take_snapshot();
  {
    auto held = fs.lock(root, "/private/etc");
    REQUIRE(held);
    auto second = fs.lock(alice, "/private/etc");
    REQUIRE(!second);
    CHECK(second.error().is_errno(EWOULDBLOCK));
    CHECK(fs.lock(root, "/private/etc/hosts"));  // another object: independent
    MemoryFs copy = fs;                           // a copy holds no locks
    CHECK(copy.lock(root, "/private/etc"));
  }
  CHECK(fs.lock(root, "/private/etc"));
  CHECK(errno_of(fs.lock(root, "/etc")) == ELOOP);
  CHECK(errno_of(fs.lock(alice, "/Users/bob")) == EACCES);
  CHECK(fs.take_snapshot() == before);
  CHECK(fs.mutating_ops() == 0);
}

TEST_CASE("the op log records every call, read-only ones included, with errors") {
  MemoryFs fs = mac_tree();
  fs.clear_log();
  (void)fs.lstat(root, "/etc/hosts");
  (void)fs.unlink(alice, "/etc/hosts");
  (void)fs.mkdir(root, "/opt", 0755);
  const auto& log = fs.op_log();
  REQUIRE(log.size() == 3);
  CHECK(log[0].op == "lstat");
  CHECK(log[0].path == "/etc/hosts");
  CHECK_FALSE(log[0].mutating);
  CHECK(log[0].error == 0);
  CHECK(log[1].op == "unlink");
  CHECK(log[1].mutating);
  CHECK(log[1].error == EACCES);
  CHECK(log[2].op == "mkdir");
  CHECK(fs.mutating_ops() == 2);
  fs.clear_log();
  CHECK(fs.op_count() == 0);
  CHECK(fs.mutating_ops() == 0);
}

TEST_CASE("replace_file logs the steps of the real sequence") {
  MemoryFs fs = mac_tree();
  fs.clear_log();
  REQUIRE(fs.replace_file(root, "/etc/hosts", hosts_v2, replace_options{}));
  std::vector<std::string> ops;
  for (const auto& r : fs.op_log()) ops.push_back(r.op);
  CHECK(ops == std::vector<std::string>{"replace_file", "replace_file:create_temp", "replace_file:write",
                                        "replace_file:fsync", "replace_file:cas", "replace_file:rename",
                                        "replace_file:fsync_dir"});
  CHECK(fs.op_log()[1].path2 == "/private/etc/.hosts.hostcfg-1");
}

TEST_CASE("fail_at fails exactly the Nth operation once, or every one from N when persistent") {
  MemoryFs fs = mac_tree();
  fs.fail_at(2, ENOSPC);
  CHECK(fs.lstat(root, "/etc"));
  auto second = fs.mkdir(root, "/opt", 0755);
  REQUIRE(!second);
  CHECK(second.error().is_errno(ENOSPC));
  CHECK_FALSE(fs.status_of("/opt"));
  CHECK(fs.mkdir(root, "/opt", 0755));
  CHECK(fs.status_of("/opt"));

  fs.fail_at(1, EIO, true);
  CHECK(errno_of(fs.mkdir(root, "/opt2", 0755)) == EIO);
  CHECK(errno_of(fs.lstat(root, "/")) == EIO);
  CHECK(errno_of(fs.list_dir(root, "/")) == EIO);
  fs.disarm();
  CHECK(fs.mkdir(root, "/opt2", 0755));
}

TEST_CASE("a fault at a failing fsync_dir is reported as applied but not durable") {
  MemoryFs fs = mac_tree();
  fs.fail_at(7, EIO);  // replace_file's 7th step is the directory sync
  auto r = fs.replace_file(root, "/etc/hosts", hosts_v2, replace_options{});
  REQUIRE(r);
  CHECK(r->changed);
  CHECK_FALSE(r->durable);
  CHECK(fs.file_bytes("/private/etc/hosts") == std::string(hosts_v2));
  // ...and indeed a crash now may lose it.
  CHECK(fs.after_crash(MemoryFs::crash_keep::none).file_bytes("/private/etc/hosts") == std::string(hosts_v1));
}

TEST_CASE("replace_file error sweep: a fault at any step leaves the target wholly old and no temp") {
  MemoryFs clean = mac_tree();
  clean.clear_log();
  REQUIRE(clean.replace_file(root, "/etc/hosts", hosts_v2, replace_options{}));
  const std::size_t steps = clean.op_count();
  REQUIRE(steps == 7);
  std::size_t points = 0;
  for (bool persistent : {false, true}) {
    for (std::size_t k = 1; k <= steps; ++k) {
      for (int err : {EIO, ENOSPC}) {
        MemoryFs fs = mac_tree();
        fs.fail_at(k, err, persistent);
        auto r = fs.replace_file(root, "/etc/hosts", hosts_v2, replace_options{});
        auto bytes = fs.file_bytes("/private/etc/hosts");
        CAPTURE(k);
        CAPTURE(persistent);
        if (k == steps) {  // the directory sync: applied, reported not durable
          REQUIRE(r);
          CHECK_FALSE(r->durable);
          CHECK(bytes == std::string(hosts_v2));
        } else {
          REQUIRE(!r);
          CHECK(r.error().is_errno(err));
          CHECK(bytes == std::string(hosts_v1));
        }
        CHECK_FALSE(has_temp(fs));
        CHECK(fs.status_of("/private/etc/hosts")->mode == 0644);
        fs.disarm();
        REQUIRE(fs.replace_file(root, "/etc/hosts", hosts_v2, replace_options{}));  // a re-run converges
        CHECK(fs.file_bytes("/private/etc/hosts") == std::string(hosts_v2));
        ++points;
      }
    }
  }
  MESSAGE("replace_file error sweep: " << points << " points over " << steps << " steps");
  CHECK(points == 28);
}

TEST_CASE("crash sweep: after a crash at any step a reboot finds the target wholly old or wholly new") {
  MemoryFs clean = mac_tree();
  clean.clear_log();
  REQUIRE(clean.replace_file(root, "/etc/hosts", hosts_v2, replace_options{}));
  const std::size_t steps = clean.op_count();
  std::size_t points = 0;
  std::size_t saw_old = 0, saw_new = 0;
  for (std::size_t k = 0; k <= steps; ++k) {
    MemoryFs fs = mac_tree();
    fs.crash_after(k);
    auto r = fs.replace_file(root, "/etc/hosts", hosts_v2, replace_options{});
    if (k + 1 < steps) CHECK_FALSE(r);  // a crash at the final directory sync still reports "not durable"
    struct variant {
      MemoryFs::crash_keep keep;
      std::uint64_t seed;
    };
    std::vector<variant> variants{{MemoryFs::crash_keep::none, 0}, {MemoryFs::crash_keep::all, 0}};
    for (std::uint64_t seed = 1; seed <= 6; ++seed) variants.push_back({MemoryFs::crash_keep::random_subset, seed});
    for (const auto& v : variants) {
      MemoryFs rebooted = fs.after_crash(v.keep, v.seed);
      auto bytes = rebooted.file_bytes("/private/etc/hosts");
      CAPTURE(k);
      CAPTURE(static_cast<int>(v.keep));
      CAPTURE(v.seed);
      REQUIRE(bytes);
      CHECK((*bytes == hosts_v1 || *bytes == hosts_v2));
      saw_old += *bytes == hosts_v1;
      saw_new += *bytes == hosts_v2;
      auto st = rebooted.status_of("/private/etc/hosts");
      CHECK(st->mode == 0644);
      CHECK(st->uid == 0);
      CHECK(st->nlink == 1);
      if (k >= steps) CHECK(*bytes == hosts_v2);  // returned success: durable
      // The next run converges and removes any temp the crash left.
      REQUIRE(rebooted.replace_file(root, "/etc/hosts", hosts_v2, replace_options{}));
      CHECK(rebooted.file_bytes("/private/etc/hosts") == std::string(hosts_v2));
      CHECK_FALSE(has_temp(rebooted));
      ++points;
    }
  }
  MESSAGE("replace_file crash sweep: " << points << " points (" << steps + 1 << " crash points x 8 reboots), "
                                       << saw_old << " old, " << saw_new << " new");
  CHECK(saw_old > 0);
  CHECK(saw_new > 0);
}

TEST_CASE("crash model: an unsynced rename or mkdir may be lost; a directory sync makes it durable") {
  MemoryFs fs;
  fs.add_file("/d/a", "a");
  REQUIRE(fs.rename(root, "/d/a", "/d/b"));
  REQUIRE(fs.mkdir(root, "/d/sub", 0700));
  MemoryFs lost = fs.after_crash(MemoryFs::crash_keep::none);
  CHECK(lost.file_bytes("/d/a") == std::string("a"));
  CHECK_FALSE(lost.status_of("/d/b"));
  CHECK_FALSE(lost.status_of("/d/sub"));
  MemoryFs kept = fs.after_crash(MemoryFs::crash_keep::all);
  CHECK_FALSE(kept.status_of("/d/a"));
  CHECK(kept.file_bytes("/d/b") == std::string("a"));
  CHECK(kept.status_of("/d/sub")->mode == 0700);
  REQUIRE(fs.sync_dir(root, "/d"));
  MemoryFs synced = fs.after_crash(MemoryFs::crash_keep::none);
  CHECK(synced.file_bytes("/d/b") == std::string("a"));
  CHECK(synced.status_of("/d/sub"));
  CHECK(synced.op_count() == 0);
}

TEST_CASE("a rename is all or nothing in a random crash subset: never both names, never neither") {
  MemoryFs fs;
  fs.add_file("/d/a", "a");
  REQUIRE(fs.rename(root, "/d/a", "/d/b"));
  for (std::uint64_t seed = 0; seed < 16; ++seed) {
    MemoryFs r = fs.after_crash(MemoryFs::crash_keep::random_subset, seed);
    CHECK(r.status_of("/d/a").has_value() != r.status_of("/d/b").has_value());
  }
}

TEST_CASE("crash model: file data is durable only after its fsync; an in-place rewrite can be lost or torn") {
  // A replace that crashes after writing its temp, before the temp's fsync: whatever happens to
  // the temp's data, the target is the old file (the temp was never renamed).
  MemoryFs clean = mac_tree();
  clean.clear_log();
  REQUIRE(clean.replace_file(root, "/etc/hosts", hosts_v2, replace_options{}));
  std::size_t write_step = 0;
  for (std::size_t i = 0; i < clean.op_log().size() && write_step == 0; ++i)
    if (clean.op_log()[i].op == "replace_file:write") write_step = i + 1;
  REQUIRE(write_step > 0);
  {
    MemoryFs fs = mac_tree();
    fs.crash_after(write_step);
    CHECK_FALSE(fs.replace_file(root, "/etc/hosts", hosts_v2, replace_options{}));
    for (auto keep : {MemoryFs::crash_keep::none, MemoryFs::crash_keep::all, MemoryFs::crash_keep::random_subset})
      CHECK(fs.after_crash(keep, 3).file_bytes("/private/etc/hosts") == std::optional<std::string>(hosts_v1));
  }
  // The in-place fallback (a bind-mounted file) rewrites the one inode: a crash between its write
  // and its fsync keeps the new bytes, loses them, or tears them. That is why hostcfg uses it only
  // when the caller allows it.
  MemoryFs fs = mac_tree();
  fs.set_mount_point("/private/etc/hosts");
  replace_options allow;
  allow.allow_in_place_fallback = true;
  fs.clear_log();
  MemoryFs probe_run = fs;
  REQUIRE(probe_run.replace_file(root, "/etc/hosts", hosts_v2, allow));
  std::size_t in_place_write = 0;
  for (std::size_t i = 0; i < probe_run.op_log().size(); ++i)
    if (probe_run.op_log()[i].op == "replace_file:write_in_place") in_place_write = i + 1;
  REQUIRE(in_place_write > 0);
  fs.crash_after(in_place_write);
  (void)fs.replace_file(root, "/etc/hosts", hosts_v2, allow);
  CHECK(fs.after_crash(MemoryFs::crash_keep::none).file_bytes("/private/etc/hosts") ==
        std::optional<std::string>(hosts_v1));
  CHECK(fs.after_crash(MemoryFs::crash_keep::all).file_bytes("/private/etc/hosts") ==
        std::optional<std::string>(hosts_v2));
  std::size_t torn = 0;
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    auto bytes = fs.after_crash(MemoryFs::crash_keep::random_subset, seed).file_bytes("/private/etc/hosts");
    REQUIRE(bytes);
    if (*bytes != hosts_v1 && *bytes != hosts_v2) {
      ++torn;
      CHECK(std::string(hosts_v2).compare(0, bytes->size(), *bytes) == 0);  // a prefix of the new bytes
    }
  }
  CHECK(torn > 0);
}

TEST_CASE("crash_after: later operations do nothing and fail with EIO") {
  MemoryFs fs;
  fs.crash_after(1);
  CHECK(fs.mkdir(root, "/one", 0755));
  auto dead = fs.mkdir(root, "/two", 0755);
  REQUIRE(!dead);
  CHECK(dead.error().is_errno(EIO));
  CHECK_FALSE(fs.status_of("/two"));
  CHECK(errno_of(fs.lstat(root, "/one")) == EIO);
  CHECK(fs.op_log().back().error == EIO);
}

TEST_CASE("the next replace removes our stale temps, not other users' and not other names") {
  MemoryFs fs = mac_tree();
  fs.add_file("/private/etc/.hosts.hostcfg-77", "partial", 0644, 0, 0);
  fs.add_file("/private/etc/.hosts.hostcfg-78", "alice's", 0644, 501, 20);
  fs.add_file("/private/etc/.other.hostcfg-1", "other", 0644, 0, 0);
  fs.clear_log();
  REQUIRE(fs.replace_file(root, "/etc/hosts", hosts_v2, replace_options{}));
  CHECK_FALSE(fs.status_of("/private/etc/.hosts.hostcfg-77"));
  CHECK(fs.status_of("/private/etc/.hosts.hostcfg-78"));
  CHECK(fs.status_of("/private/etc/.other.hostcfg-1"));
  CHECK(fs.op_log()[1].op == "replace_file:remove_stale");
  CHECK(fs.op_log()[1].path == "/private/etc/.hosts.hostcfg-77");
}

TEST_CASE("a name planted at the next temp name is skipped, never followed or overwritten") {
  MemoryFs fs = mac_tree();
  // Owned by someone else, so it is not one of our stale temps either.
  fs.add_symlink("/private/etc/.hosts.hostcfg-1", "/Users/alice/.zprofile", 501, 20);
  REQUIRE(fs.replace_file(root, "/etc/hosts", hosts_v2, replace_options{}));
  CHECK(*fs.readlink(root, "/private/etc/.hosts.hostcfg-1") == "/Users/alice/.zprofile");
  CHECK(fs.file_bytes("/Users/alice/.zprofile") == std::string("export A=1\n"));
  CHECK(fs.file_bytes("/private/etc/hosts") == std::string(hosts_v2));
}

TEST_CASE("replace_symlink retargets atomically and checks the expected version") {
  MemoryFs fs = mac_tree();
  fs.add_symlink("/usr/local/bin/docker", "/old/docker");
  auto probed = *fs.lstat(root, "/usr/local/bin/docker");
  fs.clear_log();
  REQUIRE(fs.replace_symlink(root, "/new/docker", "/usr/local/bin/docker", probed));
  CHECK(*fs.readlink(root, "/usr/local/bin/docker") == "/new/docker");
  std::vector<std::string> ops;
  for (const auto& r : fs.op_log()) ops.push_back(r.op);
  CHECK(ops == std::vector<std::string>{"replace_symlink", "replace_symlink:create_temp", "replace_symlink:rename",
                                        "replace_symlink:fsync_dir", "readlink"});
  auto stale = fs.replace_symlink(root, "/other", "/usr/local/bin/docker", probed);
  REQUIRE(!stale);
  CHECK(stale.error().is(hostcfg::errc::changed_since_probe));
  CHECK(*fs.readlink(root, "/usr/local/bin/docker") == "/new/docker");
  CHECK(errno_of(fs.replace_symlink(root, "/x", "/usr/local", std::nullopt)) == EISDIR);
  // Creating where nothing is, with "expected absent".
  REQUIRE(fs.replace_symlink(root, "/x", "/usr/local/bin/kubectl", hostcfg::file_status{}));
  CHECK(fs.status_of("/usr/local/bin/kubectl")->type == file_type::symlink);
  CHECK_FALSE(has_temp(fs));
}

TEST_CASE("replace_symlink: a fault at the rename leaves the old link and no temp") {
  MemoryFs fs = mac_tree();
  fs.add_symlink("/usr/local/bin/docker", "/old/docker");
  fs.fail_at(3, EIO);
  auto r = fs.replace_symlink(root, "/new/docker", "/usr/local/bin/docker", std::nullopt);
  REQUIRE(!r);
  CHECK(r.error().is_errno(EIO));
  CHECK(*fs.readlink(root, "/usr/local/bin/docker") == "/old/docker");
  CHECK_FALSE(has_temp(fs));
  fs.fail_at(4, EIO);
  auto undurable = fs.replace_symlink(root, "/new/docker", "/usr/local/bin/docker", std::nullopt);
  REQUIRE(!undurable);
  CHECK(undurable.error().is(hostcfg::errc::not_durable));
  CHECK(*fs.readlink(root, "/usr/local/bin/docker") == "/new/docker");
}

TEST_CASE("snapshot diff names each difference in one readable line") {
  MemoryFs fs = mac_tree();
  auto before = fs.take_snapshot();
  CHECK(MemoryFs::diff(before, fs.take_snapshot()).empty());
  CHECK(before == fs.take_snapshot());
  std::string grown(160, 'h');
  fs.add_file("/private/etc/hosts", std::string(120, 'h'));
  auto mid = fs.take_snapshot();
  REQUIRE(fs.replace_file(root, "/etc/hosts", grown, replace_options{}));
  REQUIRE(fs.symlink(root, "/App/bin/docker", "/usr/local/bin/docker"));
  REQUIRE(fs.chmod(alice, "/Users/alice/.zprofile", 0600));
  REQUIRE(fs.lchown(root, "/Users/alice/.zprofile", 0, 0));
  REQUIRE(fs.unlink(root, "/Applications/Docker.app/Contents/Resources/bin/docker"));
  REQUIRE(fs.mkdir(root, "/opt", 0700));
  fs.set_flags("/private/etc", file_flags{true, false});
  auto lines = MemoryFs::diff(mid, fs.take_snapshot());
  CHECK(lines == std::vector<std::string>{
                     "removed file /Applications/Docker.app/Contents/Resources/bin/docker (6 bytes, 0755 0:80)",
                     "mode /Users/alice/.zprofile: 0644 -> 0600",
                     "owner /Users/alice/.zprofile: 501:20 -> 0:0",
                     "added dir /opt (0700 0:0)",
                     "flags /private/etc: none -> immutable",
                     "changed /private/etc/hosts: 120 -> 160 bytes",
                     "added link /usr/local/bin/docker -> /App/bin/docker",
                 });
  CHECK(mid != fs.take_snapshot());
}

TEST_CASE("snapshot diff reports a retargeted link, a type change and same-size content changes") {
  MemoryFs fs;
  fs.add_symlink("/l", "/a");
  fs.add_file("/f", "abc");
  fs.add_file("/x", "x");
  auto before = fs.take_snapshot();
  fs.add_symlink("/l", "/b");
  fs.add_file("/f", "xyz");
  fs.add_symlink("/x", "/x2");
  CHECK(MemoryFs::diff(before, fs.take_snapshot()) ==
        std::vector<std::string>{"changed /f: 3 bytes, different content", "link /l: /a -> /b", "type /x: file -> link"});
}

TEST_CASE("a copy of a MemoryFs is an independent tree") {
  MemoryFs fs = mac_tree();
  MemoryFs copy = fs;
  REQUIRE(copy.replace_file(root, "/etc/hosts", hosts_v2, replace_options{}));
  CHECK(fs.file_bytes("/private/etc/hosts") == std::string(hosts_v1));
  CHECK(copy.file_bytes("/private/etc/hosts") == std::string(hosts_v2));
  CHECK(fs.op_count() == 0);
}

TEST_CASE("setup conveniences are not logged and need no permission") {
  MemoryFs fs;
  fs.add_file("/a/b/c", "x", 0600, 501, 20);
  fs.add_dir("/a/d", 0700, 501, 20);
  fs.set_flags("/a/b/c", file_flags{false, true});
  CHECK(fs.op_count() == 0);
  CHECK(fs.status_of("/a/b")->mode == 0755);
  CHECK(fs.status_of("/a/b")->uid == 0);
  CHECK(fs.status_of("/a/b/c")->uid == 501);
  CHECK(fs.status_of("/a/b/c")->flags.append_only);
  CHECK(fs.status_of("/a/d")->mode == 0700);
}

TEST_CASE("replace_symlink crash sweep: a reboot finds the old link or the new one, never none") {
  std::size_t points = 0;
  for (std::size_t k = 0; k <= 4; ++k) {
    MemoryFs fs = mac_tree();
    fs.add_symlink("/usr/local/bin/docker", "/old/docker");
    fs.crash_after(k);
    (void)fs.replace_symlink(root, "/new/docker", "/usr/local/bin/docker", std::nullopt);
    for (auto keep : {MemoryFs::crash_keep::none, MemoryFs::crash_keep::all, MemoryFs::crash_keep::random_subset}) {
      for (std::uint64_t seed = 0; seed < (keep == MemoryFs::crash_keep::random_subset ? 6u : 1u); ++seed) {
        MemoryFs rebooted = fs.after_crash(keep, seed);
        auto target = rebooted.readlink(root, "/usr/local/bin/docker");
        CAPTURE(k);
        REQUIRE(target);
        CHECK((*target == "/old/docker" || *target == "/new/docker"));
        if (k >= 4) CHECK(*target == "/new/docker");
        REQUIRE(rebooted.replace_symlink(root, "/new/docker", "/usr/local/bin/docker", std::nullopt));
        CHECK_FALSE(has_temp(rebooted));
        ++points;
      }
    }
  }
  MESSAGE("replace_symlink crash sweep: " << points << " points");
  CHECK(points == 40);
}

TEST_CASE("an EXDEV injected at the rename uses the in-place fallback only when allowed") {
  MemoryFs fs = mac_tree();
  fs.fail_at(6, EXDEV);  // replace_file:rename
  auto refused = fs.replace_file(root, "/etc/hosts", hosts_v2, replace_options{});
  REQUIRE(!refused);
  CHECK(refused.error().is_errno(EXDEV));
  CHECK(fs.file_bytes("/private/etc/hosts") == std::string(hosts_v1));
  replace_options allow;
  allow.allow_in_place_fallback = true;
  fs.fail_at(6, EXDEV);
  auto in_place = fs.replace_file(root, "/etc/hosts", hosts_v2, allow);
  REQUIRE(in_place);
  CHECK(in_place->in_place);
  CHECK(fs.file_bytes("/private/etc/hosts") == std::string(hosts_v2));
  CHECK_FALSE(has_temp(fs));
  std::vector<std::string> ops;
  for (const auto& r : fs.op_log()) ops.push_back(r.op);
  CHECK(ops.back() == "replace_file:fsync");
  CHECK(ops[ops.size() - 2] == "replace_file:write_in_place");
}

namespace {
// Link counts must match the tree: a non-directory's nlink is the number of names it has, a
// directory's is 2 + its subdirectories.
void check_link_counts(const MemoryFs& fs) {
  std::map<std::uint64_t, std::uint64_t> names;
  const auto snap = fs.take_snapshot();
  for (const auto& entry : snap.entries) names[fs.status_of(entry.first)->ino]++;
  for (const auto& entry : snap.entries) {
    auto st = fs.status_of(entry.first);
    CAPTURE(entry.first);
    if (st->type == file_type::directory) {
      std::uint64_t subdirs = 0;
      for (const auto& other : snap.entries)
        if (other.first != "/" && hostcfg::parent_path(other.first) == entry.first &&
            other.second.type == file_type::directory)
          ++subdirs;
      CHECK(st->nlink == 2 + subdirs);
    } else {
      CHECK(st->nlink == names[st->ino]);
    }
  }
}
}  // namespace

TEST_CASE("random operation sequences keep link counts consistent, before and after crashes") {
  const std::vector<std::string> paths{"/a", "/a/x", "/a/y", "/b", "/b/x", "/b/c", "/b/c/z", "/l"};
  const std::vector<actor> actors{root, alice};
  std::uint64_t state = 42;
  std::size_t calls = 0;
  for (int run = 0; run < 150; ++run) {
    MemoryFs fs;
    fs.add_dir("/a", 0777);
    fs.add_file("/a/x", "x");
    fs.add_hard_link("/a/x", "/b/x");
    for (int i = 0; i < 30; ++i) {
      auto pick = [&](std::size_t n) { return static_cast<std::size_t>(hostcfg::detail::splitmix64(state) % n); };
      const actor& who = actors[pick(actors.size())];
      const std::string& p = paths[pick(paths.size())];
      const std::string& q = paths[pick(paths.size())];
      switch (pick(10)) {
        case 8: (void)fs.chmod(who, p, 0700); break;
        case 9: (void)fs.lchown(who, p, 501, 20); break;
        case 0: (void)fs.mkdir(who, p, 0755); break;
        case 1: (void)fs.rmdir(who, p); break;
        case 2: (void)fs.unlink(who, p); break;
        case 3: (void)fs.rename(who, p, q); break;
        case 4: (void)fs.symlink(who, q, p); break;
        case 5: (void)fs.replace_file(who, p, "v" + std::to_string(i), new_file(0644)); break;
        case 6: (void)fs.replace_symlink(who, q, p, std::nullopt); break;
        default: (void)fs.sync_dir(who, p); break;
      }
      ++calls;
    }
    check_link_counts(fs);
    check_link_counts(fs.after_crash(MemoryFs::crash_keep::none));
    check_link_counts(fs.after_crash(MemoryFs::crash_keep::all));
    check_link_counts(fs.after_crash(MemoryFs::crash_keep::random_subset, static_cast<std::uint64_t>(run)));
    // "keep all" is exactly the state before the crash.
    CHECK(MemoryFs::diff(fs.take_snapshot(), fs.after_crash(MemoryFs::crash_keep::all).take_snapshot()).empty());
    // Once every directory is synced, losing everything unsynced loses nothing.
    for (const auto& entry : fs.take_snapshot().entries)
      if (entry.second.type == file_type::directory) REQUIRE(fs.sync_dir(root, entry.first));
    CHECK(MemoryFs::diff(fs.take_snapshot(), fs.after_crash(MemoryFs::crash_keep::none).take_snapshot()).empty());
  }
  MESSAGE("random sequences: " << calls << " calls");
}

namespace {
// The same operation on the real kernel, in a scratch directory standing for MemoryFs's "/s".
struct real_dir {
  std::string base;
  std::string at(const std::string& p) const { return base + p.substr(2); }  // "/s/a" -> base + "/a"
  int result(int rc) const { return rc == 0 ? 0 : errno; }
};
}  // namespace

TEST_CASE("differential: MemoryFs returns the kernel's errno for random sequences on a real directory") {
  const hostcfg_test::root_scratch_dir scratch_dir("hostcfg-memfs");
  const std::string& scratch = scratch_dir.path;
  const actor me{static_cast<hostcfg::uid_type>(::geteuid()), static_cast<hostcfg::gid_type>(::getegid()),
                 {static_cast<hostcfg::gid_type>(::getegid())}};
  const std::vector<std::string> paths{"/s/a", "/s/b", "/s/a/x", "/s/b/x", "/s/l", "/s/a/l", "/s/l/x", "/s/a/x/y"};
  const std::vector<std::string> targets{"x", "a", "a/x", "b", "l", ".", "nowhere"};
  std::uint64_t state = 7;
  std::size_t compared = 0;
  for (int run = 0; run < 60; ++run) {
    real_dir real{scratch + "/run" + std::to_string(run)};
    REQUIRE(::mkdir(real.base.c_str(), 0755) == 0);
    MemoryFs fs;
    fs.add_dir("/s", 0755, me.uid, me.gid);
    for (int i = 0; i < 40; ++i) {
      auto pick = [&](std::size_t n) { return static_cast<std::size_t>(hostcfg::detail::splitmix64(state) % n); };
      const std::string& p = paths[pick(paths.size())];
      const std::string& q = paths[pick(paths.size())];
      const std::string& t = targets[pick(targets.size())];
      int mem = 0, kernel = 0;
      std::string what;
      switch (pick(8)) {
        case 0:
          what = "mkdir " + p;
          mem = errno_of(fs.mkdir(me, p, 0750));
          kernel = real.result(::mkdir(real.at(p).c_str(), 0750));
          break;
        case 1:
          what = "rmdir " + p;
          mem = errno_of(fs.rmdir(me, p));
          kernel = real.result(::rmdir(real.at(p).c_str()));
          break;
        case 2:
          what = "unlink " + p;
          mem = errno_of(fs.unlink(me, p));
          kernel = real.result(::unlink(real.at(p).c_str()));
          break;
        case 3:
          what = "rename " + p + " " + q;
          mem = errno_of(fs.rename(me, p, q));
          kernel = real.result(::rename(real.at(p).c_str(), real.at(q).c_str()));
          break;
        case 4:
          what = "symlink " + t + " " + p;
          mem = errno_of(fs.symlink(me, t, p));
          kernel = real.result(::symlink(t.c_str(), real.at(p).c_str()));
          break;
        case 5: {
          what = "replace_file " + p;
          replace_options o;
          o.mode = 0640;
          auto r = fs.replace_file(me, p, "bytes", o);
          mem = errno_of(r);
          // The real sequence's visible outcome for a plain target: create-or-truncate through
          // no symlink. A final symlink gives ELOOP (O_NOFOLLOW), a directory EISDIR.
          int fd = ::open(real.at(p).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
          kernel = fd >= 0 ? 0 : errno;
          if (fd >= 0) {
            (void)!::write(fd, "bytes", 5);
            ::close(fd);
          }
          break;
        }
        case 6: {
          what = "lstat " + p;
          auto st = fs.lstat(me, p);
          struct ::stat real_st {};
          mem = errno_of(st);
          kernel = real.result(::lstat(real.at(p).c_str(), &real_st));
          if (st && kernel == 0) {
            CAPTURE(what);
            CHECK((st->mode & 07777) == (real_st.st_mode & 07777));
            CHECK(st->type == (S_ISDIR(real_st.st_mode) ? file_type::directory
                               : S_ISLNK(real_st.st_mode) ? file_type::symlink
                                                          : file_type::regular));
            if (!S_ISDIR(real_st.st_mode)) CHECK(st->size == static_cast<std::uint64_t>(real_st.st_size));
            if (!S_ISDIR(real_st.st_mode)) CHECK(st->nlink == static_cast<std::uint64_t>(real_st.st_nlink));
          }
          break;
        }
        default: {
          what = "stat " + p;
          struct ::stat real_st {};
          mem = errno_of(fs.stat(me, p));
          kernel = real.result(::stat(real.at(p).c_str(), &real_st));
          break;
        }
      }
      CAPTURE(what);
      CAPTURE(run);
      CHECK(mem == kernel);
      ++compared;
    }
    // Both trees hold the same names, types and link targets.
    std::vector<std::string> mem_tree, real_tree;
    for (const auto& entry : fs.take_snapshot().entries)
      if (entry.first.size() > 2 && entry.first.compare(0, 3, "/s/") == 0)
        mem_tree.push_back(entry.first.substr(2) + " " + hostcfg::detail::file_type_name(entry.second.type) + " " +
                           (entry.second.type == file_type::symlink ? entry.second.data : ""));
    for (const auto& item : std::filesystem::recursive_directory_iterator(real.base)) {
      auto st = item.symlink_status();
      std::string rel = item.path().string().substr(real.base.size());
      bool link = std::filesystem::is_symlink(st);
      real_tree.push_back(rel + " " + (link ? "link" : std::filesystem::is_directory(st) ? "dir" : "file") + " " +
                          (link ? std::filesystem::read_symlink(item.path()).string() : ""));
    }
    std::sort(real_tree.begin(), real_tree.end());
    std::sort(mem_tree.begin(), mem_tree.end());
    CHECK(mem_tree == real_tree);
  }
  MESSAGE("differential against the kernel: " << compared << " operations compared");
}

namespace {
// Runs `op` in a child that dropped to nobody (65534) and returns its errno (0 on success), or
// hostcfg_test::child_could_not_drop / child_did_not_exit.
int as_nobody(const std::function<int()>& op) {
  return hostcfg_test::run_as_user_status(hostcfg_test::nobody_id, [&] { return op() == 0 ? 0 : (errno & 0xff); });
}
}  // namespace

TEST_CASE("differential as root and nobody: permission errnos (EACCES, EPERM, sticky) match the kernel") {
  if (::geteuid() != 0) {
    HOSTCFG_SKIP("needs root to act as nobody");
    return;
  }
  const hostcfg_test::root_scratch_dir scratch_dir("hostcfg-memfs-perm");
  const std::string& scratch = scratch_dir.path;
  const actor nobody{65534, 65534, {65534}};
  const std::vector<std::string> paths{"/s/a", "/s/b", "/s/a/x", "/s/b/x", "/s/l", "/s/a/l", "/s/a/x/y"};
  const std::vector<hostcfg::mode_type> modes{0755, 0777, 01777, 0700, 0711, 0555};
  std::uint64_t state = 99;
  std::size_t compared = 0, as_user = 0, refused = 0;
  for (int run = 0; run < 20; ++run) {
    real_dir real{scratch + "/run" + std::to_string(run)};
    REQUIRE(::mkdir(real.base.c_str(), 0777) == 0);
    ::chmod(real.base.c_str(), 0777);
    MemoryFs fs;
    fs.add_dir("/s", 0777, 0, 0);
    {
      // Start from a populated tree: a root-owned and a nobody-owned directory with random
      // modes, each holding a file of its owner.
      auto pick = [&](std::size_t n) { return static_cast<std::size_t>(hostcfg::detail::splitmix64(state) % n); };
      const hostcfg::mode_type mode_a = modes[pick(modes.size())], mode_b = modes[pick(modes.size())];
      REQUIRE(::mkdir(real.at("/s/a").c_str(), 0700) == 0);
      REQUIRE(::mkdir(real.at("/s/b").c_str(), 0700) == 0);
      REQUIRE(::close(::open(real.at("/s/a/x").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) == 0);
      REQUIRE(::close(::open(real.at("/s/b/x").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) == 0);
      REQUIRE(::chmod(real.at("/s/a/x").c_str(), 0644) == 0);
      REQUIRE(::chmod(real.at("/s/b/x").c_str(), 0644) == 0);
      REQUIRE(::chown(real.at("/s/b/x").c_str(), 65534, 65534) == 0);
      REQUIRE(::chown(real.at("/s/b").c_str(), 65534, 65534) == 0);
      REQUIRE(::chmod(real.at("/s/a").c_str(), mode_a) == 0);
      REQUIRE(::chmod(real.at("/s/b").c_str(), mode_b) == 0);
      fs.add_dir("/s/a", mode_a, 0, 0);
      fs.add_dir("/s/b", mode_b, 65534, 65534);
      fs.add_file("/s/a/x", "", 0644, 0, 0);
      fs.add_file("/s/b/x", "", 0644, 65534, 65534);
    }
    for (int i = 0; i < 30; ++i) {
      auto pick = [&](std::size_t n) { return static_cast<std::size_t>(hostcfg::detail::splitmix64(state) % n); };
      const bool user = pick(2) == 0;
      const actor& who = user ? nobody : root;
      const std::string p = paths[pick(paths.size())];
      const std::string q = paths[pick(paths.size())];
      const hostcfg::mode_type mode = modes[pick(modes.size())];
      const std::string rp = real.at(p), rq = real.at(q);
      std::function<int()> op;
      int mem = 0;
      std::string what = std::string(user ? "nobody " : "root ");
      switch (pick(7)) {
        case 0:
          what += "mkdir " + p;
          mem = errno_of(fs.mkdir(who, p, mode));
          // mkdir(2) applies the umask; chmod after a success makes the mode exact, as MemoryFs.
          op = [&] {
            if (::mkdir(rp.c_str(), mode) != 0) return -1;
            return ::chmod(rp.c_str(), mode);
          };
          break;
        case 1:
          what += "rmdir " + p;
          mem = errno_of(fs.rmdir(who, p));
          op = [&] { return ::rmdir(rp.c_str()); };
          break;
        case 2:
          what += "unlink " + p;
          mem = errno_of(fs.unlink(who, p));
          op = [&] { return ::unlink(rp.c_str()); };
          break;
        case 3:
          what += "rename " + p + " " + q;
          mem = errno_of(fs.rename(who, p, q));
          op = [&] { return ::rename(rp.c_str(), rq.c_str()); };
          break;
        case 4:
          what += "symlink x " + p;
          mem = errno_of(fs.symlink(who, "x", p));
          op = [&] { return ::symlink("x", rp.c_str()); };
          break;
        case 5:
          what += "chmod " + p;
          mem = errno_of(fs.chmod(who, p, mode));
          op = [&] { return ::fchmodat(AT_FDCWD, rp.c_str(), mode, AT_SYMLINK_NOFOLLOW); };
          break;
        default:
          what += "lstat " + p;
          mem = errno_of(fs.lstat(who, p));
          op = [&] {
            struct ::stat st {};
            return ::lstat(rp.c_str(), &st);
          };
          break;
      }
      const mode_t old_umask = ::umask(0);
      int kernel = user ? as_nobody(op) : (op() == 0 ? 0 : errno);
      ::umask(old_umask);
      CAPTURE(what);
      CAPTURE(run);
      CHECK(mem == kernel);
      ++compared;
      as_user += user;
      refused += kernel == EACCES || kernel == EPERM;
    }
  }
  MESSAGE("permission differential: " << compared << " operations (" << as_user << " as nobody, " << refused
                                      << " refused with EACCES/EPERM)");
  CHECK(refused > 0);
}
