// OverlayFs: a dry run is a real apply against a copy-on-write overlay; later steps see earlier
// steps' effects, nothing reaches the lower backend, and the overlay refuses what the lower would.
#include "hostcfg/backend/overlay_fs.hpp"

#include <doctest/doctest.h>

#include <cerrno>
#include <string>
#include <vector>

#include "hostcfg/backend/memory_fs.hpp"
#include "support/test_support.hpp"

using hostcfg::actor;
using hostcfg::file_flags;
using hostcfg::file_type;
using hostcfg::MemoryFs;
using hostcfg::OverlayFs;
using hostcfg::replace_options;

namespace {

static_assert(hostcfg::check_fs<OverlayFs<MemoryFs>>(), "OverlayFs implements the whole Fs contract");

const actor root = actor::root();
const actor alice{501, 20, {20, 12, 61, 79, 80, 81}};

const char* const hosts_v1 = "127.0.0.1\tlocalhost\n::1 localhost\n";
const char* const hosts_v2 = "127.0.0.1\tlocalhost\n::1 localhost\n# Added by Docker Desktop\n"
                             "127.0.0.1 kubernetes.docker.internal\n# End of section\n";

using hostcfg_test::errno_of;

MemoryFs mac_tree() {
  MemoryFs fs;
  fs.add_dir("/usr/local/bin", 0755, 0, 0);
  fs.add_dir("/private/etc", 0755, 0, 0);
  fs.add_symlink("/etc", "private/etc");
  fs.add_file("/private/etc/hosts", hosts_v1, 0644, 0, 0);
  fs.add_dir("/private/tmp", 01777, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  fs.add_file("/Users/alice/.zprofile", "export A=1\n", 0644, 501, 20);
  fs.add_file("/Users/alice/.zshrc", "alias ll='ls -l'\n", 0644, 501, 20);
  fs.add_file("/Applications/Docker.app/Contents/Resources/bin/docker", "#!bin\n", 0755, 0, 80);
  return fs;
}

replace_options new_file() {
  replace_options o;
  o.mode = 0644;
  return o;
}

}  // namespace

TEST_CASE("reads fall through to the lower layer with the lower's statuses") {
  MemoryFs lower = mac_tree();
  OverlayFs<MemoryFs> dry(lower);
  auto read = dry.read_file(root, "/etc/hosts", 4096);
  REQUIRE(read);
  CHECK(read->bytes == hosts_v1);
  auto over = dry.lstat(root, "/private/etc/hosts");
  auto under = lower.lstat(root, "/private/etc/hosts");
  REQUIRE(over);
  REQUIRE(under);
  CHECK(hostcfg::same_version(*over, *under));
  CHECK(over->mode == 0644);
  CHECK(over->nlink == 1);
  CHECK(*dry.readlink(root, "/etc") == "private/etc");
  CHECK(dry.stat(root, "/etc")->type == file_type::directory);
  CHECK(*dry.list_dir(root, "/Users/alice") == std::vector<std::string>{".zprofile", ".zshrc"});
  CHECK(errno_of(dry.lstat(root, "/nope")) == ENOENT);
  CHECK(dry.changes().empty());
  CHECK(dry.mutating_count() == 0);
}

TEST_CASE("dry-run apply leaves the lower MemoryFs byte-identical; later reads see earlier writes") {
  MemoryFs lower = mac_tree();
  const auto before = lower.take_snapshot();
  lower.clear_log();
  OverlayFs<MemoryFs> dry(lower);

  // A first run's steps, each depending on the one before.
  auto made = hostcfg::make_parents(dry, alice, "/Users/alice/.docker/bin", 0755);
  REQUIRE(made);
  CHECK(made->size() == 2);
  REQUIRE(dry.symlink(alice, "/Applications/Docker.app/Contents/Resources/bin/docker",
                      "/Users/alice/.docker/bin/docker"));
  REQUIRE(dry.replace_file(root, "/etc/hosts", hosts_v2, replace_options{}));
  REQUIRE(dry.replace_file(alice, "/Users/alice/.zprofile", "export A=1\nexport PATH=$HOME/.docker/bin:$PATH\n",
                           replace_options{}));
  REQUIRE(dry.symlink(root, "/Applications/Docker.app/Contents/Resources/bin/docker", "/usr/local/bin/docker"));
  REQUIRE(dry.unlink(alice, "/Users/alice/.zshrc"));
  REQUIRE(dry.chmod(root, "/private/etc/hosts", 0600));

  // Later steps see the earlier ones.
  CHECK(dry.read_file(root, "/etc/hosts", 4096)->bytes == hosts_v2);
  CHECK(dry.stat(alice, "/Users/alice/.docker/bin/docker")->type == file_type::regular);
  CHECK(*dry.list_dir(alice, "/Users/alice") == std::vector<std::string>{".docker", ".zprofile"});
  CHECK(errno_of(dry.lstat(alice, "/Users/alice/.zshrc")) == ENOENT);
  CHECK(dry.status_of("/Users/alice/.docker")->uid == 501);

  // Nothing reached the lower layer: same bytes, modes, owners, and no mutating call at all.
  CHECK(lower.take_snapshot() == before);
  CHECK(MemoryFs::diff(before, lower.take_snapshot()).empty());
  CHECK(lower.mutating_ops() == 0);
  CHECK(lower.op_count() > 0);  // it was read, through the contract

  CHECK(dry.changes() == std::vector<std::string>{
                             "added dir /Users/alice/.docker (0755 501:20)",
                             "added dir /Users/alice/.docker/bin (0755 501:20)",
                             "added link /Users/alice/.docker/bin/docker -> "
                             "/Applications/Docker.app/Contents/Resources/bin/docker",
                             "changed /Users/alice/.zprofile: 11 -> 47 bytes",
                             "removed file /Users/alice/.zshrc (17 bytes, 0644 501:20)",
                             "changed /private/etc/hosts: 34 -> 114 bytes",
                             "mode /private/etc/hosts: 0644 -> 0600",
                             "added link /usr/local/bin/docker -> /Applications/Docker.app/Contents/Resources/bin/docker",
                         });
  CHECK(dry.mutating_count() == dry.mutating_ops());
  CHECK(dry.mutating_ops() == 12);  // 2 mkdir, 2 symlink, 2 x 3 replace steps, unlink, chmod
}

TEST_CASE("the overlay refuses what the lower would: permissions, flags, devices") {
  MemoryFs lower = mac_tree();
  lower.add_file("/private/etc/locked", "x");
  lower.set_flags("/private/etc/locked", file_flags{true, false});
  lower.add_dir("/Volumes/External");
  lower.set_device("/Volumes/External", 9);
  lower.add_file("/Volumes/External/f", "f");
  OverlayFs<MemoryFs> dry(lower);
  auto user_link = dry.symlink(alice, "/x", "/usr/local/bin/docker");
  REQUIRE(!user_link);
  CHECK(user_link.error().is_errno(EACCES));
  CHECK(errno_of(dry.replace_file(alice, "/etc/hosts", "x", replace_options{})) == EACCES);
  CHECK(errno_of(dry.replace_file(root, "/etc/locked", "y", replace_options{})) == EPERM);
  CHECK(dry.get_flags(root, "/etc/locked")->immutable);
  CHECK(errno_of(dry.lchown(alice, "/Users/alice/.zprofile", 0, 0)) == EPERM);
  CHECK(errno_of(dry.rename(root, "/Volumes/External/f", "/private/tmp/f")) == EXDEV);
  CHECK(dry.lstat(root, "/Volumes/External/f")->dev == 9);
  CHECK(dry.changes().empty());
}

TEST_CASE("a compare-and-swap probe taken through the overlay holds until the overlay changes the file") {
  MemoryFs lower = mac_tree();
  OverlayFs<MemoryFs> dry(lower);
  auto probed = dry.lstat(root, "/etc/hosts");
  REQUIRE(probed);
  replace_options cas;
  cas.expected = *probed;
  REQUIRE(dry.replace_file(root, "/etc/hosts", hosts_v2, cas));
  auto again = dry.replace_file(root, "/etc/hosts", "third\n", cas);
  REQUIRE(!again);
  CHECK(again.error().is(hostcfg::errc::changed_since_probe));
  CHECK(lower.file_bytes("/private/etc/hosts") == std::string(hosts_v1));
}

TEST_CASE("only_if_different through the overlay compares with the lower bytes and writes nothing") {
  MemoryFs lower = mac_tree();
  OverlayFs<MemoryFs> dry(lower);
  auto same = dry.replace_file(root, "/etc/hosts", hosts_v1, replace_options{});
  REQUIRE(same);
  CHECK_FALSE(same->changed);
  CHECK(dry.mutating_ops() == 0);
  CHECK(dry.changes().empty());
}

TEST_CASE("a directory removed and re-created in the overlay hides the lower's entries") {
  MemoryFs lower;
  lower.add_file("/d/a", "a");
  lower.add_dir("/e");
  OverlayFs<MemoryFs> dry(lower);
  CHECK(errno_of(dry.rmdir(root, "/d")) == ENOTEMPTY);  // children never looked at still count
  REQUIRE(dry.rmdir(root, "/e"));
  REQUIRE(dry.mkdir(root, "/e", 0700));
  CHECK(dry.list_dir(root, "/e")->empty());
  REQUIRE(dry.unlink(root, "/d/a"));
  REQUIRE(dry.rmdir(root, "/d"));
  REQUIRE(dry.mkdir(root, "/d", 0755));
  CHECK(dry.list_dir(root, "/d")->empty());
  CHECK(errno_of(dry.lstat(root, "/d/a")) == ENOENT);
  CHECK(lower.file_bytes("/d/a") == std::string("a"));
  CHECK(dry.changes() == std::vector<std::string>{"removed file /d/a (1 bytes, 0644 0:0)",
                                                  "mode /e: 0755 -> 0700"});
}

TEST_CASE("list_dir merges lower names, overlay additions and whiteouts, sorted") {
  MemoryFs lower;
  lower.add_file("/d/b", "");
  lower.add_file("/d/d", "");
  OverlayFs<MemoryFs> dry(lower);
  REQUIRE(dry.replace_file(root, "/d/a", "", new_file()));
  REQUIRE(dry.replace_file(root, "/d/c", "", new_file()));
  REQUIRE(dry.unlink(root, "/d/d"));
  CHECK(*dry.list_dir(root, "/d") == std::vector<std::string>{"a", "b", "c"});
  CHECK(*lower.list_dir(root, "/d") == std::vector<std::string>{"b", "d"});
}

TEST_CASE("the overlay's fault injection fails the dry run at the chosen step without touching the lower") {
  MemoryFs lower = mac_tree();
  OverlayFs<MemoryFs> dry(lower);
  dry.fail_at(3, ENOSPC);  // replace_file's write step
  auto r = dry.replace_file(root, "/etc/hosts", hosts_v2, replace_options{});
  REQUIRE(!r);
  CHECK(r.error().is_errno(ENOSPC));
  CHECK(dry.read_file(root, "/etc/hosts", 4096)->bytes == hosts_v1);
  CHECK(dry.changes().empty());
  CHECK(lower.mutating_ops() == 0);
}

TEST_CASE("differential: random sequences give the same errnos and tree through an overlay as on MemoryFs") {
  const actor bob{502, 20, {20}};
  const std::vector<actor> actors{root, alice, bob};
  const std::vector<std::string> paths{"/etc/hosts", "/private/etc/hosts", "/private/etc/new", "/private/tmp/x",
                                       "/Users/alice/.zprofile", "/Users/alice/.docker", "/Users/alice/.docker/f",
                                       "/usr/local/bin/docker", "/usr/local/bin", "/etc", "/private/tmp/d",
                                       "/private/tmp/d/f"};
  const std::vector<std::string> targets{"/Applications/Docker.app/Contents/Resources/bin/docker", "d", "x", "../etc"};
  std::uint64_t state = 2024;
  std::size_t compared = 0;
  for (int run = 0; run < 100; ++run) {
    MemoryFs direct = mac_tree();
    MemoryFs lower = mac_tree();
    const auto untouched = lower.take_snapshot();
    OverlayFs<MemoryFs> dry(lower);
    for (int i = 0; i < 25; ++i) {
      auto pick = [&](std::size_t n) { return static_cast<std::size_t>(hostcfg::detail::splitmix64(state) % n); };
      const actor& who = actors[pick(actors.size())];
      const std::string& p = paths[pick(paths.size())];
      const std::string& q = paths[pick(paths.size())];
      const std::string& t = targets[pick(targets.size())];
      const std::string bytes = "v" + std::to_string(pick(3));
      int a = 0, b = 0;
      std::string what;
      switch (pick(12)) {
        case 0: what = "mkdir"; a = errno_of(direct.mkdir(who, p, 0755)); b = errno_of(dry.mkdir(who, p, 0755)); break;
        case 1: what = "rmdir"; a = errno_of(direct.rmdir(who, p)); b = errno_of(dry.rmdir(who, p)); break;
        case 2: what = "unlink"; a = errno_of(direct.unlink(who, p)); b = errno_of(dry.unlink(who, p)); break;
        case 3: what = "rename " + q; a = errno_of(direct.rename(who, p, q)); b = errno_of(dry.rename(who, p, q)); break;
        case 4: what = "symlink"; a = errno_of(direct.symlink(who, t, p)); b = errno_of(dry.symlink(who, t, p)); break;
        case 5: {
          what = "replace_file";
          auto ra = direct.replace_file(who, p, bytes, new_file());
          auto rb = dry.replace_file(who, p, bytes, new_file());
          a = errno_of(ra);
          b = errno_of(rb);
          if (ra && rb) CHECK(ra->changed == rb->changed);
          break;
        }
        case 6:
          what = "replace_symlink";
          a = errno_of(direct.replace_symlink(who, t, p, std::nullopt));
          b = errno_of(dry.replace_symlink(who, t, p, std::nullopt));
          break;
        case 7: what = "chmod"; a = errno_of(direct.chmod(who, p, 0700)); b = errno_of(dry.chmod(who, p, 0700)); break;
        case 8: what = "lchown"; a = errno_of(direct.lchown(who, p, 501, 20)); b = errno_of(dry.lchown(who, p, 501, 20)); break;
        case 9: {
          what = "read_file";
          auto ra = direct.read_file(who, p, 1 << 16);
          auto rb = dry.read_file(who, p, 1 << 16);
          a = errno_of(ra);
          b = errno_of(rb);
          if (ra && rb) CHECK(ra->bytes == rb->bytes);
          break;
        }
        case 10: {
          what = "list_dir";
          auto ra = direct.list_dir(who, p);
          auto rb = dry.list_dir(who, p);
          a = errno_of(ra);
          b = errno_of(rb);
          if (ra && rb) CHECK(*ra == *rb);
          break;
        }
        default: {
          what = "stat";
          auto ra = direct.stat(who, p);
          auto rb = dry.stat(who, p);
          a = errno_of(ra);
          b = errno_of(rb);
          if (ra && rb) {
            CHECK(ra->type == rb->type);
            CHECK(ra->mode == rb->mode);
            CHECK(ra->uid == rb->uid);
            CHECK(ra->size == rb->size);
            CHECK(ra->nlink == rb->nlink);
          }
          break;
        }
      }
      CAPTURE(run);
      CAPTURE(what);
      CAPTURE(p);
      CAPTURE(who.uid);
      CHECK(a == b);
      ++compared;
    }
    // The same tree as seen through each, and nothing reached the lower layer.
    for (const auto& p : paths) {
      auto sa = direct.lstat(root, p);
      auto sb = dry.lstat(root, p);
      CAPTURE(p);
      REQUIRE(errno_of(sa) == errno_of(sb));
      if (!sa) continue;
      CHECK(sa->type == sb->type);
      CHECK(sa->mode == sb->mode);
      CHECK(sa->uid == sb->uid);
      if (sa->type == file_type::regular && sa->nlink == 1)
        CHECK(direct.read_file(root, p, 1 << 16)->bytes == dry.read_file(root, p, 1 << 16)->bytes);
    }
    CHECK(lower.take_snapshot() == untouched);
    CHECK(lower.mutating_ops() == 0);
  }
  MESSAGE("overlay differential: " << compared << " operations compared");
}
