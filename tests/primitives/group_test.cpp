// all_of(): several primitives as one step, tested with SymlinkSet and ManagedFile on MemoryFs.
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/primitives/group.hpp>
#include <hostcfg/primitives/managed_file.hpp>
#include <hostcfg/primitives/symlink_set.hpp>

#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

const char* app = "com.example.app";
const char* src = "/Applications/Example.app/Contents/Resources/bin";

user_identity alice() {
  return user_identity{501, 20, {20, 80}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
}

MemoryFs mac_tree() {
  MemoryFs fs;
  fs.add_dir("/usr/local/bin", 0755, 0, 0);
  fs.add_dir("/etc", 0755, 0, 0);
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  fs.add_file(std::string(src) + "/tool", "#!tool\n", 0755, 0, 0);
  fs.add_file(std::string(src) + "/helper", "#!helper\n", 0755, 0, 0);
  return fs;
}

SymlinkSet user_links() {
  SymlinkSet set;
  set.link_dir = "/Users/alice/.example/bin";
  set.source_dir = src;
  return set;
}

ManagedFile path_file() { return ManagedFile{"/Users/alice/.example-path.sh", "PATH=\"$HOME/.example/bin:$PATH\"\n", 0644}; }

}  // namespace

TEST_CASE("all_of probes every member in order, each item tagged with its member") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  auto group = all_of(user_links(), path_file());
  CHECK(group.id() == "all_of(links:/Users/alice/.example/bin,file:/Users/alice/.example-path.sh)");
  CHECK(std::string(group.kind()) == "all_of");
  ledgers books;
  auto probed = group.probe(ctx, books);
  REQUIRE(probed);
  REQUIRE(probed->items.size() == 3);
  CHECK(probed->items[0].id == "0|link:/Users/alice/.example/bin/helper");
  CHECK(probed->items[1].id == "0|link:/Users/alice/.example/bin/tool");
  CHECK(probed->items[2].id == "1|file:/Users/alice/.example-path.sh");
  auto p = group.make_plan(*probed);
  REQUIRE(p.changes.size() == 3);
  CHECK(p.changes[0].item_id == "0|link:/Users/alice/.example/bin/helper");
  CHECK(p.changes[0].summary() == "create link /Users/alice/.example/bin/helper (-> " + std::string(src) + "/helper)");
  CHECK(p.changes[2].item_id == "1|file:/Users/alice/.example-path.sh");
  CHECK_FALSE(p.needs_elevation());
}

TEST_CASE("all_of applies every member as one step and records each in its own way") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  auto report = converge(ctx, all_of(user_links(), path_file()));
  REQUIRE(report);
  CHECK(report->ok());
  REQUIRE(report->steps.size() == 1);
  CHECK(report->steps[0].id == "all_of(links:/Users/alice/.example/bin,file:/Users/alice/.example-path.sh)");
  const auto& events = report->steps[0].applied.events;
  REQUIRE(events.size() == 3);
  CHECK(events[0].item_id == "0|link:/Users/alice/.example/bin/helper");
  CHECK(events[2].item_id == "1|file:/Users/alice/.example-path.sh");
  for (const auto& e : events) CHECK(e.kind == event_kind::changed);
  CHECK(*fs.readlink(actor::root(), "/Users/alice/.example/bin/tool") == std::string(src) + "/tool");
  CHECK(fs.file_bytes("/Users/alice/.example-path.sh") == std::optional<std::string>("PATH=\"$HOME/.example/bin:$PATH\"\n"));
  auto rec = fs.file_bytes("/Users/alice/.local/state/hostcfg/com.example.app.record");
  REQUIRE(rec);
  CHECK(rec->find("item link:/Users/alice/.example/bin/tool") != std::string::npos);  // members' own ids
  CHECK(rec->find("item file:/Users/alice/.example-path.sh") != std::string::npos);
  CHECK(report->steps[0].after);
  CHECK(report->steps[0].in_sync());

  fs.clear_log();
  auto again = converge(ctx, all_of(user_links(), path_file()));
  REQUIRE(again);
  CHECK(fs.mutating_ops() == 0);
  CHECK(again->steps[0].planned.empty());
}

TEST_CASE("one prompt covers every member's elevated change") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  SymlinkSet system;
  system.link_dir = "/usr/local/bin";
  system.source_dir = src;
  auto report = converge(ctx, all_of(system, ManagedFile{"/etc/example.conf", "x\n", 0644}));
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 1);
  const auto& changes = priv.requests().at(0).changes;
  REQUIRE(changes.size() == 3);
  CHECK(changes[0].find("/usr/local/bin/helper") != std::string::npos);
  CHECK(changes[2].find("/etc/example.conf") != std::string::npos);
  CHECK(fs.status_of("/usr/local/bin/tool")->uid == 0);
  CHECK(fs.file_bytes("/etc/example.conf") == std::optional<std::string>("x\n"));
}

TEST_CASE("revert undoes the members last first and gives back the tree") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  auto before = fs.take_snapshot();
  REQUIRE(converge(ctx, all_of(user_links(), path_file())));
  auto group = all_of(user_links(), path_file());
  auto undone = uninstall(ctx, group);
  REQUIRE(undone);
  CHECK(undone->ok());
  const auto& events = undone->steps.at(0).applied.events;
  REQUIRE(events.size() == 3);
  CHECK(events[0].item_id == "1|file:/Users/alice/.example-path.sh");
  CHECK(events[1].item_id.rfind("0|link:", 0) == 0);
  auto rp = undone->steps[0].planned;
  REQUIRE(rp.changes.size() == 3);
  CHECK(rp.changes[0].item_id == "1|file:/Users/alice/.example-path.sh");
  HOSTCFG_CHECK_NO_DIFF(MemoryFs::diff(before, fs.take_snapshot()), "");
}

TEST_CASE("a member that cannot be probed fails the whole group before anything is written") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  SymlinkSet missing = user_links();
  missing.source_dir = "/Applications/Gone.app/bin";
  auto report = converge(ctx, all_of(path_file(), missing));
  REQUIRE(report);
  CHECK_FALSE(report->ok());
  REQUIRE(report->steps.at(0).failure);
  CHECK(report->steps[0].failure->message().find("/Applications/Gone.app/bin") != std::string::npos);
  CHECK_FALSE(fs.status_of("/Users/alice/.example-path.sh"));
}

TEST_CASE("a failed member does not stop the next one") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/Users/alice/ro", 0755, 501, 20);
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  auto group = all_of(ManagedFile{"/Users/alice/ro/a.conf", "a\n", 0644}, path_file());
  ledgers books;
  auto probed = group.probe(ctx, books);
  REQUIRE(probed);
  auto p = group.make_plan(*probed);
  REQUIRE(p.changes.size() == 2);
  fs.add_dir("/Users/alice/ro", 0555, 501, 20);  // the first member's directory turns read-only
  auto applied = group.apply(ctx, p, grant{}, books);
  REQUIRE(applied.events.size() == 2);
  CHECK(applied.events[0].kind == event_kind::failed);
  REQUIRE(applied.events[0].failure);
  CHECK(applied.events[0].failure->is_errno(EACCES));
  CHECK(applied.events[1].kind == event_kind::changed);
  CHECK(fs.file_bytes("/Users/alice/.example-path.sh"));
}

TEST_CASE("as a fallback's alternative, a declined primary applies the whole group, then nothing the next run") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice(), answer::declined);
  context ctx(fs, priv, app);
  ManagedFile primary{"/etc/example.conf", "x\n", 0644};
  auto step = fallback(primary, all_of(user_links(), path_file()));
  auto first = converge(ctx, step);
  REQUIRE(first);
  CHECK(priv.prompts() == 1);
  REQUIRE(first->steps.size() == 2);
  CHECK(first->steps[1].is_fallback);
  CHECK(first->steps[1].applied.events.size() == 3);
  CHECK(fs.file_bytes("/Users/alice/.example-path.sh"));
  CHECK(*fs.readlink(actor::root(), "/Users/alice/.example/bin/helper") == std::string(src) + "/helper");
  fs.clear_log();
  auto again = converge(ctx, step);
  REQUIRE(again);
  CHECK(priv.prompts() == 1);
  CHECK(fs.mutating_ops() == 0);
}
