// ProtectedFile on MemoryFs (owner and mode are part of "in sync", one prompt, decline, revert)
// and its refresh through a real privileged helper (root only).
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/helper/server.hpp>
#include <hostcfg/primitives/protected_file.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "support/real_fs.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

user_identity mac_user() {
  return user_identity{501, 20, {20, 12, 61, 80}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
}

MemoryFs tree() {
  MemoryFs fs;
  fs.add_dir("/etc/app", 0755, 0, 0);
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  return fs;
}

const char* app = "com.example.app";

}  // namespace

TEST_CASE("a protected file is created root:0 0644 with one prompt; a second converge changes nothing") {
  MemoryFs fs = tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  ProtectedFile policy{"/etc/app/policy.json", "{\"registries\":[\"docker.io\"]}\n"};
  auto report = converge(ctx, policy);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 1);
  REQUIRE(priv.requests().size() == 1);
  REQUIRE(priv.requests()[0].changes.size() == 1);
  CHECK(priv.requests()[0].changes[0] == "create protected file /etc/app/policy.json (mode 0644, 29 bytes)");
  CHECK(fs.file_bytes("/etc/app/policy.json") == std::optional<std::string>("{\"registries\":[\"docker.io\"]}\n"));
  auto st = fs.status_of("/etc/app/policy.json");
  REQUIRE(st);
  CHECK(st->uid == 0);
  CHECK(st->gid == 0);
  CHECK(st->mode == 0644);
  CHECK(report->steps[0].primitive == "protected_file");
  CHECK(report->out_of_sync.empty());
  fs.clear_log();
  auto again = converge(ctx, policy);
  REQUIRE(again);
  CHECK(fs.mutating_ops() == 0);
  CHECK(priv.prompts() == 1);
  CHECK(again->steps[0].planned.empty());
}

TEST_CASE("a user-owned file with the right bytes and mode is not protected: owner is compared") {
  MemoryFs fs = tree();
  fs.add_file("/etc/app/policy.json", "p\n", 0644, 501, 20);
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  ProtectedFile policy{"/etc/app/policy.json", "p\n"};
  auto probed = policy.probe(ctx, ledgers{});
  REQUIRE(probed);
  REQUIRE(probed->items.size() == 1);
  CHECK(probed->items[0].state == item_state::conflict);  // not ours: left alone
  policy.take_over = true;
  auto report = converge(ctx, policy);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(fs.status_of("/etc/app/policy.json")->uid == 0);
  CHECK(fs.status_of("/etc/app/policy.json")->mode == 0644);
  CHECK(fs.file_bytes("/etc/app/policy.json") == std::optional<std::string>("p\n"));
}

TEST_CASE("a mode that lets others write, or does not let the user read, is refused before any I/O") {
  MemoryFs fs = tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  fs.clear_log();
  ProtectedFile policy{"/etc/app/policy.json", "p\n", 0666};
  auto probed = policy.probe(ctx, ledgers{});
  REQUIRE(!probed);
  CHECK(probed.error().is(errc::invalid_input));
  CHECK(probed.error().message() ==
        "probe /etc/app/policy.json: mode 0666 would let others write a protected file [use 0644]");
  ProtectedFile unreadable{"/etc/app/policy.json", "p\n", 0640};
  auto locked_out = unreadable.probe(ctx, ledgers{});
  REQUIRE(!locked_out);
  CHECK(locked_out.error().is(errc::invalid_input));
  CHECK(locked_out.error().message() ==
        "probe /etc/app/policy.json: mode 0640 would not let the user read a file owned by root:0 [use 0644]");
  CHECK(fs.mutating_ops() == 0);
  // A root-owned file with the right bytes but a mode the user cannot read is not in sync.
  fs.add_dir("/etc/app", 0755, 0, 0);
  fs.add_file("/etc/app/policy.json", "p\n", 0600, 0, 0);
  ProtectedFile wanted{"/etc/app/policy.json", "p\n"};
  auto seen = wanted.probe(ctx, ledgers{});
  REQUIRE(seen);
  CHECK(seen->items[0].state != item_state::matches);
  CHECK(seen->items[0].current.find("0600") != std::string::npos);
}

TEST_CASE("after a refresh through the helper, uninstall with the refreshed content removes the file; other bytes stay") {
  for (bool someone_else : {false, true}) {
    CAPTURE(someone_else);
    MemoryFs fs = tree();
    ScriptedPrivilege priv(mac_user(), answer::granted);
    context ctx(fs, priv, app);
    ProtectedFile policy{"/etc/app/policy.json", "v1\n"};
    REQUIRE(converge(ctx, policy));
    // What the helper's refresh_policy does: root rewrites the file, root:0 0644, new bytes. The
    // installer's record still holds "v1".
    fs.add_file("/etc/app/policy.json", someone_else ? "edited by the admin\n" : "v2\n", 0644, 0, 0);
    policy.content = "v2\n";
    auto again = converge(ctx, policy);  // in sync: nothing written
    REQUIRE(again);
    CHECK(again->steps[0].applied.events[0].kind == (someone_else ? event_kind::changed : event_kind::kept));
    if (someone_else) fs.add_file("/etc/app/policy.json", "edited by the admin\n", 0644, 0, 0);
    auto undone = uninstall(ctx, policy);
    REQUIRE(undone);
    if (someone_else) {
      CHECK(fs.file_bytes("/etc/app/policy.json") == std::optional<std::string>("edited by the admin\n"));
      CHECK(undone->steps[0].applied.events[0].failure->is(errc::drifted));
    } else {
      CHECK(undone->ok());
      CHECK_FALSE(fs.file_bytes("/etc/app/policy.json"));
    }
  }
  // The elevated runner rebuilds it with the same rule.
  auto rebuilt = ManagedFile::from_desired_state(ProtectedFile{"/etc/app/policy.json", "v\n"}.desired_state());
  REQUIRE(rebuilt);
  CHECK(rebuilt->refreshable);
  CHECK(rebuilt->uid == std::optional<uid_type>(0));
}

TEST_CASE("a declined prompt writes nothing; uninstall after install removes the file") {
  MemoryFs fs = tree();
  ScriptedPrivilege declining(mac_user(), answer::declined);
  context ctx(fs, declining, app);
  ProtectedFile policy{"/etc/app/policy.json", "p\n"};
  auto declined = converge(ctx, policy);
  REQUIRE(declined);
  CHECK(!fs.file_bytes("/etc/app/policy.json"));
  REQUIRE(declined->steps[0].applied.events.size() == 1);
  CHECK(declined->steps[0].applied.events[0].kind == event_kind::skipped);

  MemoryFs fs2 = tree();
  ScriptedPrivilege granting(mac_user(), answer::granted);
  context ctx2(fs2, granting, app);
  REQUIRE(converge(ctx2, policy));
  REQUIRE(fs2.file_bytes("/etc/app/policy.json"));
  auto removed = uninstall(ctx2, policy);
  REQUIRE(removed);
  CHECK(removed->ok());
  CHECK(!fs2.file_bytes("/etc/app/policy.json"));
}

TEST_CASE("refresh goes through the privileged helper without a prompt, to the helper's one path") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a real helper)"); return; }
  const std::string dir = hostcfg_test::make_scratch_dir("hcp");
  helper::server_config config;
  config.socket_path = dir + "/h.sock";
  config.allowed_uid = 0;
  config.policy_path = dir + "/policy.json";
  auto server = helper::Server::listen(config);
  REQUIRE(server);
  std::thread loop([&] { (void)server->run(); });
  ProtectedFile policy{dir + "/policy.json", "v2\n"};
  auto refreshed = policy.refresh(helper::client_options{dir + "/h.sock", 2000});
  server->stop();
  loop.join();
  REQUIRE(refreshed);
  struct stat st {};
  REQUIRE(::stat((dir + "/policy.json").c_str(), &st) == 0);
  CHECK(st.st_uid == 0);
  CHECK((st.st_mode & 07777) == 0644);
  char buf[16] = {};
  const int fd = ::open((dir + "/policy.json").c_str(), O_RDONLY | O_CLOEXEC);
  CHECK(::read(fd, buf, sizeof buf) == 3);
  ::close(fd);
  CHECK(std::string(buf) == "v2\n");
  ::unlink((dir + "/policy.json").c_str());
  ::unlink((dir + "/h.sock").c_str());
  CHECK(::rmdir(dir.c_str()) == 0);
}
