// RootedFs<PosixFs>: a sandbox on the real disk. Paths land under the root; neither `..` nor a
// symlink (absolute or relative target) leads above it; link targets are stored as given; errors
// name the caller's paths.
#include "hostcfg/backend/rooted_fs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "hostcfg/backend/posix_fs.hpp"
#include "support/real_fs.hpp"
#include <hostcfg/testing/syscall_faults.hpp>
#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

const actor root_actor = actor::root();

/// A root-owned 0755 sandbox under /var/lib/hostcfg-tests, with an "outside" sibling holding a decoy file.
struct sandbox {
  hostcfg_test::root_scratch_dir dir{"hostcfg-rooted"};
  std::string base = dir.path;  // holds root/ and outside/
  std::string root = base + "/root";
  sandbox() {
    REQUIRE(::mkdir(root.c_str(), 0755) == 0);
    REQUIRE(::mkdir((base + "/outside").c_str(), 0755) == 0);
    write(base + "/outside/secret", "outside\n");
  }
  static void write(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  static std::string read(const std::string& path) { return hostcfg_test::read_whole_file_or_empty(path); }
};

}  // namespace

TEST_CASE("RootedFs satisfies the Fs contract") { CHECK(check_fs<RootedFs<PosixFs>>()); }

TEST_CASE("RootedFs writes and reads under its root") {
  sandbox s;
  PosixFs posix;
  RootedFs<PosixFs> fs(posix, s.root);
  REQUIRE(make_parents(fs, root_actor, "/etc", 0755));
  replace_options opts;
  opts.mode = 0644;
  auto done = fs.replace_file(root_actor, "/etc/hosts", "127.0.0.1 localhost\n", opts);
  REQUIRE(done);
  CHECK(done->changed);
  CHECK(sandbox::read(s.root + "/etc/hosts") == "127.0.0.1 localhost\n");
  CHECK((std::filesystem::status(s.root + "/etc/hosts").permissions() & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write | std::filesystem::perms::group_read |
         std::filesystem::perms::others_read));
  auto read = fs.read_file(root_actor, "/etc/hosts", 1024);
  REQUIRE(read);
  CHECK(read->bytes == "127.0.0.1 localhost\n");
  auto names = fs.list_dir(root_actor, "/");
  REQUIRE(names);
  CHECK(*names == std::vector<std::string>{"etc"});
  auto root_st = fs.lstat(root_actor, "/");
  REQUIRE(root_st);
  CHECK(root_st->type == file_type::directory);
  struct ::stat real {};
  REQUIRE(::stat(s.root.c_str(), &real) == 0);
  CHECK(root_st->ino == real.st_ino);

  REQUIRE(fs.rename(root_actor, "/etc/hosts", "/hosts.moved"));
  CHECK(sandbox::read(s.root + "/hosts.moved") == "127.0.0.1 localhost\n");
  REQUIRE(fs.unlink(root_actor, "/hosts.moved"));
  REQUIRE(fs.rmdir(root_actor, "/etc"));
  CHECK(fs.list_dir(root_actor, "/")->empty());
  CHECK(sandbox::read(s.base + "/outside/secret") == "outside\n");
}

TEST_CASE("RootedFs: neither .. nor a symlink leads above the root") {
  sandbox s;
  PosixFs posix;
  RootedFs<PosixFs> fs(posix, s.root);
  REQUIRE(::mkdir((s.root + "/etc").c_str(), 0755) == 0);
  sandbox::write(s.root + "/etc/secret", "inside\n");
  // Relative targets climbing out, an absolute target, and a chain of links.
  REQUIRE(::symlink("../../../../../../outside", (s.root + "/up").c_str()) == 0);
  REQUIRE(::symlink("/etc", (s.root + "/abs").c_str()) == 0);
  REQUIRE(::symlink(s.base.c_str(), (s.root + "/real_abs").c_str()) == 0);
  REQUIRE(::symlink("up", (s.root + "/chain").c_str()) == 0);
  REQUIRE(::symlink("../etc", (s.root + "/etc/self").c_str()) == 0);

  // "/up" resolves to "/outside" inside the root, which does not exist there.
  auto up = fs.read_file(root_actor, "/up/secret", 100);
  REQUIRE(!up);
  CHECK(up.error().is_errno(ENOENT));
  CHECK(up.error().path.find(s.base) == std::string::npos);
  // Once "/outside" exists inside the root, that is what "/up" reaches.
  REQUIRE(::mkdir((s.root + "/outside").c_str(), 0755) == 0);
  sandbox::write(s.root + "/outside/secret", "sandboxed outside\n");
  CHECK(fs.read_file(root_actor, "/up/secret", 100)->bytes == "sandboxed outside\n");
  CHECK(fs.read_file(root_actor, "/chain/secret", 100)->bytes == "sandboxed outside\n");
  CHECK(fs.read_file(root_actor, "/abs/secret", 100)->bytes == "inside\n");
  CHECK(fs.read_file(root_actor, "/etc/self/self/secret", 100)->bytes == "inside\n");
  // An absolute target naming the real sandbox path is itself re-rooted (and absent).
  auto real_abs = fs.read_file(root_actor, "/real_abs/outside/secret", 100);
  REQUIRE(!real_abs);
  CHECK(real_abs.error().is_errno(ENOENT));

  // Writes through the links stay inside too.
  replace_options opts;
  opts.mode = 0600;
  REQUIRE(fs.replace_file(root_actor, "/up/new", "x", opts));
  CHECK(std::filesystem::exists(s.root + "/outside/new"));
  CHECK(!std::filesystem::exists(s.base + "/outside/new"));
  CHECK(sandbox::read(s.base + "/outside/secret") == "outside\n");

  // stat follows a final link inside the root; lstat does not.
  REQUIRE(::symlink("/etc/secret", (s.root + "/final").c_str()) == 0);
  CHECK(fs.stat(root_actor, "/final")->type == file_type::regular);
  CHECK(fs.stat(root_actor, "/final")->size == 7);
  CHECK(fs.lstat(root_actor, "/final")->type == file_type::symlink);
}

TEST_CASE("RootedFs stores symlink targets exactly as given") {
  sandbox s;
  PosixFs posix;
  RootedFs<PosixFs> fs(posix, s.root);
  REQUIRE(fs.symlink(root_actor, "/Applications/Docker.app/Contents/Resources/bin/docker", "/docker"));
  REQUIRE(fs.symlink(root_actor, "../lib/x", "/rel"));
  std::vector<char> buf(256);
  auto n = ::readlink((s.root + "/docker").c_str(), buf.data(), buf.size());
  REQUIRE(n > 0);
  CHECK(std::string(buf.data(), static_cast<std::size_t>(n)) == "/Applications/Docker.app/Contents/Resources/bin/docker");
  CHECK(*fs.readlink(root_actor, "/docker") == "/Applications/Docker.app/Contents/Resources/bin/docker");
  CHECK(*fs.readlink(root_actor, "/rel") == "../lib/x");
  auto before = fs.lstat(root_actor, "/docker");
  REQUIRE(before);
  REQUIRE(fs.replace_symlink(root_actor, "/opt/new", "/docker", *before));
  CHECK(*fs.readlink(root_actor, "/docker") == "/opt/new");
}

TEST_CASE("RootedFs errors name the caller's paths") {
  sandbox s;
  PosixFs posix;
  RootedFs<PosixFs> fs(posix, s.root);
  auto missing = fs.read_file(root_actor, "/no/such/file", 10);
  REQUIRE(!missing);
  CHECK(missing.error().is_errno(ENOENT));
  CHECK(missing.error().path.rfind("/no", 0) == 0);
  CHECK(missing.error().message().find(s.root) == std::string::npos);
  sandbox::write(s.root + "/a", "a");
  REQUIRE(::mkdir((s.root + "/d").c_str(), 0755) == 0);
  auto moved = fs.rename(root_actor, "/a", "/d/missing/b");
  REQUIRE(!moved);
  CHECK(moved.error().is_errno(ENOENT));
  CHECK(moved.error().message().find(s.root) == std::string::npos);
  auto relative = fs.lstat(root_actor, "etc");
  REQUIRE(!relative);
  CHECK(relative.error().is(errc::invalid_input));
  REQUIRE(::symlink("loop2", (s.root + "/loop1").c_str()) == 0);
  REQUIRE(::symlink("loop1", (s.root + "/loop2").c_str()) == 0);
  auto loop = fs.read_file(root_actor, "/loop1/x", 10);
  REQUIRE(!loop);
  CHECK(loop.error().is_errno(ELOOP));
  CHECK(loop.error().path == "/loop1/x");
}

TEST_CASE("RootedFs over a faulty PosixFs passes errors through with caller paths") {
  sandbox s;
  hostcfg::testing::syscall_faults faults;
  PosixFs posix(faults.table());
  RootedFs<PosixFs> fs(posix, s.root);
  replace_options opts;
  opts.mode = 0644;
  REQUIRE(fs.replace_file(root_actor, "/f", "zer0", opts));
  faults.disarm();
  REQUIRE(fs.replace_file(root_actor, "/f", "one1", opts));
  std::size_t rename_at = 0;
  for (std::size_t i = 0; i < faults.log().size(); ++i)
    if (faults.log()[i] == "renameat") rename_at = i;
  REQUIRE(rename_at > 0);
  faults.arm(hostcfg::testing::fault_mode::fail_once, rename_at, ENOSPC);
  auto failed = fs.replace_file(root_actor, "/f", "two2", opts);
  REQUIRE(!failed);
  CHECK(failed.error().is_errno(ENOSPC));
  INFO(failed.error().message());
  CHECK(failed.error().path2 == "/f");
  CHECK(failed.error().message().find(s.root) == std::string::npos);
  CHECK(sandbox::read(s.root + "/f") == "one1");
}
