// SymlinkSet and the CLI-links recipe on MemoryFs: every probe state, one prompt, the decision
// table, the fallback and the move back, both override policies and their revert, users relying
// on system links, the crash-and-error sweep and the component-swap attack.
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/primitives/managed_file.hpp>
#include <hostcfg/primitives/symlink_set.hpp>
#include <hostcfg/recipes/cli_links.hpp>

#include <cstdio>

#include "primitives/symlink_swap_fs.hpp"
#include "support/handoff_privilege.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

const char* app = "com.docker.desktop";
const char* src = "/Applications/Docker.app/Contents/Resources/bin";
const char* user_record_path = "/Users/alice/.local/state/hostcfg/com.docker.desktop.record";
const char* system_record_path = "/var/lib/hostcfg/com.docker.desktop.record";

user_identity alice() {
  return user_identity{501, 20, {20, 12, 61, 80}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
}
user_identity bob() {
  return user_identity{502, 20, {20}, "bob", "/Users/bob", "/bin/zsh", std::nullopt, std::nullopt};
}

// A macOS-like tree: /usr/local/bin root:wheel 0755, alice's home 501:20 0750, the app bundle's
// three commands.
MemoryFs mac_tree() {
  MemoryFs fs;
  fs.add_dir("/usr/local/bin", 0755, 0, 0);
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/var/run", 0755, 0, 0);
  fs.add_dir("/etc", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  fs.add_dir("/Users/bob", 0750, 502, 20);
  for (const char* name : {"docker", "docker-compose", "kubectl.docker"})
    fs.add_file(std::string(src) + "/" + name, std::string("#!bin ") + name + "\n", 0755, 0, 0);
  fs.add_file("/opt/homebrew/Cellar/docker/24.0.7/bin/docker", "brew docker\n", 0755, 501, 20);
  return fs;
}

ManagedFile path_edit() {
  return ManagedFile{"/Users/alice/.docker-path.zsh", "export PATH=\"$HOME/.docker/bin:$PATH\"\n", 0644};
}

auto recipe() { return cli_links(src, "/usr/local/bin", "/Users/alice/.docker/bin", path_edit()); }

std::string link_of(MemoryFs& fs, const std::string& path) {
  auto target = fs.readlink(actor::root(), path);
  return target ? *target : std::string("<none: ") + target.error().message() + ">";
}

std::string all_notes(const converge_report& r) {
  std::string text;
  for (const auto& n : r.notes) text += n + "\n";
  return text;
}

SymlinkSet single(const std::string& path, const std::string& target) {
  SymlinkSet set;
  set.links.push_back({path, target});
  set.label = path;
  return set;
}

/// A link in `link_dir` to every file of the app bundle's bin directory (`src`), the seed's set.
SymlinkSet bundle_links(const std::string& link_dir) {
  SymlinkSet set;
  set.link_dir = link_dir;
  set.source_dir = src;
  return set;
}

// The one link item of a single-link set (bookkeeping items - conflict notes - may follow it).
const item_probe& only_item(const probe_report& r) {
  REQUIRE_FALSE(r.items.empty());
  for (std::size_t i = 1; i < r.items.size(); ++i) REQUIRE(r.items[i].id.rfind("link:", 0) != 0);
  return r.items[0];
}

}  // namespace

TEST_CASE("a link directory the user can write gets the links as the user, with no prompt") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/usr/local/bin", 0755, 501, 80);  // Homebrew-style: owned by the user
  ScriptedPrivilege priv(alice(), answer::declined);
  context ctx(fs, priv, app);
  auto report = converge(ctx, recipe());
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 0);
  CHECK(link_of(fs, "/usr/local/bin/docker") == std::string(src) + "/docker");
  CHECK(link_of(fs, "/usr/local/bin/kubectl.docker") == std::string(src) + "/kubectl.docker");
  CHECK(fs.status_of("/usr/local/bin/docker")->uid == 501);
  CHECK_FALSE(fs.status_of("/Users/alice/.docker/bin"));
  auto rec = fs.file_bytes(user_record_path);
  REQUIRE(rec);
  CHECK(rec->find("item link:/usr/local/bin/docker") != std::string::npos);
  CHECK_FALSE(fs.status_of(system_record_path));
  CHECK(report->out_of_sync.empty());
}

TEST_CASE("a root-owned link directory needs exactly one prompt naming the directory and each link") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  auto report = converge(ctx, recipe());
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 1);
  const auto& changes = priv.requests().at(0).changes;
  REQUIRE(changes.size() == 3);
  CHECK(changes[0] == "create link /usr/local/bin/docker (-> " + std::string(src) +
                          "/docker; /usr/local/bin is 0:0 0755, not writable by uid 501)");
  CHECK(changes[2].find("/usr/local/bin/kubectl.docker") != std::string::npos);
  for (const char* name : {"docker", "docker-compose", "kubectl.docker"}) {
    std::string link = std::string("/usr/local/bin/") + name;
    CHECK(link_of(fs, link) == std::string(src) + "/" + name);
    CHECK(fs.status_of(link)->uid == 0);
  }
  auto sys = fs.file_bytes(system_record_path);
  REQUIRE(sys);
  CHECK(sys->find("item link:/usr/local/bin/docker") != std::string::npos);
  CHECK(sys->find("field users 501") != std::string::npos);
  CHECK(fs.status_of(system_record_path)->uid == 0);
  CHECK_FALSE(fs.status_of("/Users/alice/.docker"));
  CHECK_FALSE(fs.status_of("/Users/alice/.docker-path.zsh"));
}

TEST_CASE("declined: links under the home, PATH edited, decision recorded; the next run asks nothing and writes nothing") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice(), answer::declined);
  context ctx(fs, priv, app);
  auto first = converge(ctx, recipe());
  REQUIRE(first);
  CHECK(first->ok());
  CHECK(priv.prompts() == 1);
  CHECK_FALSE(fs.status_of("/usr/local/bin/docker"));
  CHECK(link_of(fs, "/Users/alice/.docker/bin/docker") == std::string(src) + "/docker");
  CHECK(fs.status_of("/Users/alice/.docker/bin/docker")->uid == 501);
  CHECK(fs.status_of("/Users/alice/.docker/bin")->mode == 0755);
  CHECK(fs.status_of("/Users/alice/.docker")->uid == 501);
  CHECK(fs.file_bytes("/Users/alice/.docker-path.zsh") ==
        std::optional<std::string>("export PATH=\"$HOME/.docker/bin:$PATH\"\n"));
  auto rec = fs.file_bytes(user_record_path);
  REQUIRE(rec);
  CHECK(rec->find("item decision:links:/usr/local/bin") != std::string::npos);
  CHECK(rec->find("field answer declined") != std::string::npos);
  REQUIRE(first->steps.size() == 2);
  CHECK(first->steps[1].is_fallback);
  CHECK(first->needs_user_action());
  CHECK(all_notes(*first).find("reload your shells (open a new terminal) so PATH includes /Users/alice/.docker/bin") !=
        std::string::npos);
  CHECK(all_notes(*first).find("admin rights: declined") != std::string::npos);

  auto before = fs.take_snapshot();
  fs.clear_log();
  auto second = converge(ctx, recipe());
  REQUIRE(second);
  CHECK(priv.prompts() == 1);
  CHECK(second->prompts_shown == 0);
  CHECK(fs.mutating_ops() == 0);
  CHECK(MemoryFs::diff(before, fs.take_snapshot()).empty());
  CHECK(all_notes(*second).find("a recorded decision: set re-prompt to ask again") != std::string::npos);
}

TEST_CASE("cancelled is recorded as cancelled, declined as declined, timed out not at all") {
  for (answer a : {answer::cancelled, answer::declined, answer::timed_out, answer::unavailable}) {
    CAPTURE(answer_name(a));
    MemoryFs fs = mac_tree();
    ScriptedPrivilege priv(alice(), a);
    context ctx(fs, priv, app);
    REQUIRE(converge(ctx, recipe()));
    CHECK(link_of(fs, "/Users/alice/.docker/bin/docker") == std::string(src) + "/docker");
    auto rec = fs.file_bytes(user_record_path);
    REQUIRE(rec);
    bool recorded = rec->find(std::string("field answer ") + answer_name(a)) != std::string::npos;
    CHECK(recorded == (a != answer::timed_out));
    REQUIRE(converge(ctx, recipe()));
    CHECK(priv.prompts() == (a == answer::timed_out ? 2u : 1u));
  }
}

TEST_CASE("a later grant makes the system links first, then removes the fallback links and the PATH edit") {
  MemoryFs fs = mac_tree();
  auto pristine = fs.take_snapshot();
  ScriptedPrivilege priv(alice(), std::vector<answer>{answer::declined, answer::granted});
  context ctx(fs, priv, app);
  REQUIRE(converge(ctx, recipe()));
  ctx.policy.reprompt = true;
  fs.clear_log();
  auto moved = converge(ctx, recipe());
  REQUIRE(moved);
  CHECK(moved->ok());
  CHECK(priv.prompts() == 2);
  CHECK(link_of(fs, "/usr/local/bin/docker") == std::string(src) + "/docker");
  CHECK_FALSE(fs.status_of("/Users/alice/.docker/bin/docker"));
  CHECK_FALSE(fs.status_of("/Users/alice/.docker"));
  CHECK_FALSE(fs.status_of("/Users/alice/.docker-path.zsh"));
  // Order: every system link exists before the first fallback link goes.
  std::size_t last_create = 0, first_remove = 0;
  const auto& log = fs.op_log();
  for (std::size_t i = 0; i < log.size(); ++i) {
    if (log[i].mutating && log[i].path.rfind("/usr/local/bin/", 0) == 0) last_create = i;
    if (log[i].mutating && first_remove == 0 && log[i].path.rfind("/Users/alice/.docker/bin/", 0) == 0)
      first_remove = i;
  }
  CHECK(last_create > 0);
  CHECK(first_remove > last_create);
  CHECK(all_notes(*moved).find("the commands moved from /Users/alice/.docker/bin to /usr/local/bin") !=
        std::string::npos);
  // The record forgets the retired fallback (links and PATH edit); the next run does nothing.
  CHECK_FALSE(fs.status_of(user_record_path));  // granted erased the decision: nothing left in it
  fs.clear_log();
  auto settled = converge(ctx, recipe());
  REQUIRE(settled);
  CHECK(fs.mutating_ops() == 0);
  CHECK(settled->steps.size() == 1);
  // Only the system links and the records differ from the tree before the first run.
  auto left = MemoryFs::diff(pristine, fs.take_snapshot());
  for (const auto& line : left)
    CHECK((line.find("/usr/local/bin/") != std::string::npos || line.find("hostcfg") != std::string::npos ||
           line.find("/.local") != std::string::npos || line.find("/var/lib") != std::string::npos));
}

TEST_CASE("a command left in conflict in /usr/local/bin keeps its fallback link and the PATH edit stays") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice(), std::vector<answer>{answer::declined, answer::granted});
  context ctx(fs, priv, app);
  REQUIRE(converge(ctx, recipe()));
  fs.add_symlink("/usr/local/bin/docker", "/opt/homebrew/Cellar/docker/24.0.7/bin/docker", 501, 20);
  ctx.policy.reprompt = true;
  auto moved = converge(ctx, recipe());
  REQUIRE(moved);
  CHECK(link_of(fs, "/usr/local/bin/docker") == "/opt/homebrew/Cellar/docker/24.0.7/bin/docker");
  CHECK(link_of(fs, "/usr/local/bin/docker-compose") == std::string(src) + "/docker-compose");
  CHECK(link_of(fs, "/Users/alice/.docker/bin/docker") == std::string(src) + "/docker");
  CHECK_FALSE(fs.status_of("/Users/alice/.docker/bin/docker-compose"));
  CHECK_FALSE(fs.status_of("/Users/alice/.docker/bin/kubectl.docker"));
  CHECK(fs.file_bytes("/Users/alice/.docker-path.zsh"));
  std::string notes = all_notes(*moved);
  CHECK(notes.find("1 command(s) keep their link in /Users/alice/.docker/bin because /usr/local/bin does not "
                   "provide them (docker); the PATH entry for /Users/alice/.docker/bin stays") != std::string::npos);
  CHECK(notes.find("(belongs to Homebrew); left alone (set take_over to re-point it") != std::string::npos);
}

TEST_CASE("probe names every state of a link") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/Users/alice/bin", 0755, 501, 20);
  fs.add_dir("/Users/alice/real", 0755, 501, 20);
  fs.add_symlink("/Users/alice/via", "/Users/alice/real", 501, 20);
  fs.add_symlink("/Users/alice/loop1", "/Users/alice/loop2", 501, 20);
  fs.add_symlink("/Users/alice/loop2", "/Users/alice/loop1", 501, 20);
  fs.add_symlink("/Users/alice/bin/correct", std::string(src) + "/docker", 501, 20);
  fs.add_symlink("/Users/alice/bin/relative", "../../../Applications/Docker.app/Contents/Resources/bin/docker", 501, 20);
  fs.add_symlink("/Users/alice/bin/stale", std::string(src) + "/docker-compose", 501, 20);
  fs.add_symlink("/Users/alice/bin/brew", "/opt/homebrew/Cellar/docker/24.0.7/bin/docker", 501, 20);
  fs.add_symlink("/Users/alice/bin/dangling", "/Users/alice/gone", 501, 20);
  fs.add_file("/Users/alice/bin/file", "user's own script\n", 0755, 501, 20);
  fs.add_dir("/Users/alice/bin/dir", 0755, 501, 20);
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  ledgers books;
  SymlinkSet stale_set = single("/Users/alice/bin/stale", std::string(src) + "/docker");
  books.user.put(record_item{"link:/Users/alice/bin/stale", "symlink_set",
                             {{"set", stale_set.id()}, {"target", std::string(src) + "/docker-compose"}}});
  auto probe = [&](const SymlinkSet& set) {
    auto r = set.probe(ctx, books);
    REQUIRE(r);
    return only_item(*r);
  };
  const std::string docker = std::string(src) + "/docker";

  auto missing = probe(single("/Users/alice/bin/new", docker));
  CHECK(missing.state == item_state::absent);
  CHECK(missing.detail == "missing");
  CHECK_FALSE(missing.needs_elevation);

  CHECK(probe(single("/Users/alice/bin/correct", docker)).state == item_state::matches);
  auto relative = probe(single("/Users/alice/bin/relative", docker));
  CHECK(relative.state == item_state::matches);  // both ends made absolute and normal

  auto stale = probe(stale_set);
  CHECK(stale.state == item_state::differs);
  CHECK(stale.detail.find("ours, stale: points at " + std::string(src) + "/docker-compose") == 0);

  auto brew = probe(single("/Users/alice/bin/brew", docker));
  CHECK(brew.state == item_state::conflict);
  CHECK(brew.detail.find("foreign: /Users/alice/bin/brew -> /opt/homebrew/Cellar/docker/24.0.7/bin/docker "
                         "(belongs to Homebrew); left alone (set take_over") == 0);

  auto dangling = probe(single("/Users/alice/bin/dangling", docker));
  CHECK(dangling.state == item_state::differs);
  CHECK(dangling.detail.find("dangling: points at missing /Users/alice/gone") == 0);

  auto file = probe(single("/Users/alice/bin/file", docker));
  CHECK(file.state == item_state::conflict);
  CHECK(file.detail.find("a regular file stands at /Users/alice/bin/file (set take_over") == 0);

  auto dir = probe(single("/Users/alice/bin/dir", docker));
  CHECK(dir.state == item_state::conflict);
  CHECK(dir.detail.find("a directory stands at /Users/alice/bin/dir; it is never replaced") == 0);

  auto parent = probe(single("/Users/alice/.docker/bin/docker", docker));
  CHECK(parent.state == item_state::absent);
  CHECK(parent.detail.find("parent missing: directories below /Users/alice will be created (mode 0755)") !=
        std::string::npos);

  auto system = probe(single("/usr/local/bin/docker", docker));
  CHECK(system.state == item_state::absent);
  CHECK(system.needs_elevation);
  CHECK(system.elevation_reason == "/usr/local/bin is 0:0 0755, not writable by uid 501");

  auto self = probe(single("/Users/alice/bin/self", "/Users/alice/bin/self"));
  CHECK(self.state == item_state::conflict);
  CHECK(self.detail.find("would point at itself") != std::string::npos);
  auto self_relative = probe(single("/Users/alice/bin/self", "./self"));
  CHECK(self_relative.state == item_state::conflict);
  // Through a symlinked parent: /Users/alice/via -> real, so via/tool -> real/tool is itself.
  auto through = probe(single("/Users/alice/via/tool", "/Users/alice/real/tool"));
  CHECK(through.state == item_state::conflict);
  CHECK(through.detail.find("would point at itself") != std::string::npos);
  auto below = probe(single("/Users/alice/bin/sub", "/Users/alice/bin/sub/x"));
  CHECK(below.state == item_state::conflict);

  auto loop = probe(single("/Users/alice/bin/loop", "/Users/alice/loop1"));
  CHECK(loop.state == item_state::conflict);
  CHECK(loop.detail.find("loops") != std::string::npos);

  auto no_target = probe(single("/Users/alice/bin/new", "/Applications/Gone.app/bin/x"));
  CHECK(no_target.state == item_state::conflict);
  CHECK(no_target.detail == "the target /Applications/Gone.app/bin/x does not exist (set allow_dangling to link it "
                            "anyway)");

  // A directory the user cannot search, probed by a process that cannot elevate in process.
  fs.add_dir("/Users/alice/locked", 0700, 0, 0);
  ScriptedPrivilege outside(alice(), answer::granted, false);
  context plain(fs, outside, app);
  auto unreadable = single("/Users/alice/locked/x", docker).probe(plain, books);
  REQUIRE(unreadable);
  CHECK(only_item(*unreadable).state == item_state::unreadable);
  CHECK(only_item(*unreadable).detail.find("Permission denied") != std::string::npos);
}

TEST_CASE("a correct link is followed by a stat of its target when its text is that absolute path, else from the link") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/Users/alice/bin", 0755, 501, 20);
  const std::string docker = std::string(src) + "/docker";
  fs.add_symlink("/Users/alice/bin/absolute", docker, 501, 20);
  fs.add_symlink("/Users/alice/bin/dotted", "/Applications/./Docker.app/Contents/Resources/bin/docker", 501, 20);
  fs.add_symlink("/Users/alice/bin/relative", "../../../Applications/Docker.app/Contents/Resources/bin/docker", 501, 20);
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  ledgers books;
  // The Fs operations one probe made on `path`, by name.
  auto ops_on = [&](const std::string& op, const std::string& path) {
    std::size_t n = 0;
    for (const auto& r : fs.op_log()) n += (r.op == op && r.path == path) ? 1 : 0;
    return n;
  };
  for (const char* name : {"absolute", "dotted", "relative"}) {
    CAPTURE(name);
    const std::string link = std::string("/Users/alice/bin/") + name;
    SymlinkSet set = single(link, docker);
    set.executables = true;  // the target must be an executable file: the probe follows the link
    fs.clear_log();
    auto r = set.probe(ctx, books);
    REQUIRE(r);
    CHECK(only_item(*r).state == item_state::matches);
    CHECK(ops_on("readlink", link) == 1);
    const bool direct = std::string(name) == "absolute";
    CHECK(ops_on("stat", docker) == (direct ? 1u : 0u));
    CHECK(ops_on("stat", link) == (direct ? 0u : 1u));
  }
  // A link the user cannot reach (its directory is root's, mode 0700), read as root by a process
  // that elevates in process: followed from the link, as the user, so the user's view decides.
  fs.add_dir("/Users/alice/locked", 0700, 0, 0);
  fs.add_symlink("/Users/alice/locked/docker", docker, 0, 0);
  SymlinkSet locked = single("/Users/alice/locked/docker", docker);
  locked.executables = true;
  fs.clear_log();
  auto unreachable = locked.probe(ctx, books);
  REQUIRE(unreachable);
  CHECK(only_item(*unreachable).state == item_state::conflict);
  CHECK(only_item(*unreachable).detail.find("as it should, but uid 501 cannot follow it") != std::string::npos);
  CHECK(ops_on("stat", "/Users/alice/locked/docker") == 1);
  CHECK(ops_on("stat", docker) == 0);
  // Followed either way, a target that is not executable is refused the same.
  fs.add_file("/Applications/Docker.app/Contents/Resources/bin/notes", "text\n", 0644, 0, 0);
  fs.add_symlink("/Users/alice/bin/notes", std::string(src) + "/notes", 501, 20);
  SymlinkSet notes = single("/Users/alice/bin/notes", std::string(src) + "/notes");
  notes.executables = true;
  auto refused = notes.probe(ctx, books);
  REQUIRE(refused);
  CHECK(only_item(*refused).state == item_state::conflict);
  CHECK(only_item(*refused).detail.find("not an executable regular file (mode 0644)") != std::string::npos);
}

TEST_CASE("conflicts are left alone and reported: the user's file, a Homebrew link, a directory") {
  MemoryFs fs = mac_tree();
  fs.add_file("/usr/local/bin/docker", "user's wrapper\n", 0755, 501, 20);
  fs.add_symlink("/usr/local/bin/docker-compose", "/opt/homebrew/Cellar/docker/24.0.7/bin/docker", 0, 0);
  fs.add_dir("/usr/local/bin/kubectl.docker", 0755, 0, 0);
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  auto before = fs.take_snapshot();
  auto report = converge(ctx, recipe());
  REQUIRE(report);
  CHECK(priv.prompts() == 0);  // nothing to change: no prompt
  auto after = MemoryFs::diff(before, fs.take_snapshot());
  for (const auto& line : after) CHECK(line.find("/usr/local/bin") == std::string::npos);
  CHECK(fs.file_bytes("/usr/local/bin/docker") == std::optional<std::string>("user's wrapper\n"));
  REQUIRE(report->out_of_sync.size() == 1);
  CHECK(report->out_of_sync[0] == "links:/usr/local/bin");
  std::string notes = all_notes(*report);
  CHECK(notes.find("left alone: a regular file stands at /usr/local/bin/docker") != std::string::npos);
  CHECK(notes.find("(belongs to Homebrew)") != std::string::npos);
  CHECK(notes.find("left alone: a directory stands at /usr/local/bin/kubectl.docker") != std::string::npos);
}

TEST_CASE("take_over replaces a foreign link and a file, keeping both; revert restores them exactly") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/Users/alice/bin", 0755, 501, 20);
  fs.add_file("/Users/alice/bin/docker", "user's wrapper\n", 0750, 501, 20);
  fs.add_symlink("/Users/alice/bin/docker-compose", "/opt/homebrew/Cellar/docker/24.0.7/bin/docker", 501, 20);
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  SymlinkSet set = bundle_links("/Users/alice/bin");
  auto before = fs.take_snapshot();
  auto refused = converge(ctx, set);
  REQUIRE(refused);
  CHECK(fs.file_bytes("/Users/alice/bin/docker") == std::optional<std::string>("user's wrapper\n"));
  CHECK(link_of(fs, "/Users/alice/bin/docker-compose") == "/opt/homebrew/Cellar/docker/24.0.7/bin/docker");

  set.take_over = true;
  auto report = converge(ctx, set);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(report->out_of_sync.empty());
  CHECK(link_of(fs, "/Users/alice/bin/docker") == std::string(src) + "/docker");
  CHECK(fs.file_bytes("/Users/alice/bin/.docker.hostcfg_backup") == std::optional<std::string>("user's wrapper\n"));
  CHECK(link_of(fs, "/Users/alice/bin/docker-compose") == std::string(src) + "/docker-compose");
  auto rec = fs.file_bytes(user_record_path);
  REQUIRE(rec);
  CHECK(rec->find("field backup_target /opt/homebrew/Cellar/docker/24.0.7/bin/docker") != std::string::npos);

  auto undone = uninstall(ctx, set);
  REQUIRE(undone);
  CHECK(undone->ok());
  HOSTCFG_CHECK_NO_DIFF(MemoryFs::diff(before, fs.take_snapshot()), "");
  CHECK(fs.status_of("/Users/alice/bin/docker")->mode == 0750);
}

// The take-over of a regular file makes the new link at the backup's name and swaps the two
// names (Fs::exchange): a crash at any point leaves the user's file or our link at the path, never
// nothing, and the file is never under a temp's name (which cleanup would remove). Without the
// swap (a filesystem that cannot) the fallback's two renames leave a moment with nothing there;
// the sweep counts those points to show the difference. Either way nothing is lost: uninstall
// straight after the crash gives the file back, and a re-run converges.
TEST_CASE("take_over of a file: at every crash point the path holds the file or the link; uninstall gives it back") {
  auto tree = [] {
    MemoryFs fs = mac_tree();
    fs.add_dir("/Users/alice/bin", 0755, 501, 20);
    fs.add_file("/Users/alice/bin/docker", "user's wrapper\n", 0750, 501, 20);
    return fs;
  };
  const std::string at = "/Users/alice/bin/docker";
  const std::string backup = "/Users/alice/bin/.docker.hostcfg_backup";
  SymlinkSet set = bundle_links("/Users/alice/bin");
  set.take_over = true;
  for (bool swap : {true, false}) {
    std::size_t ops = 0;
    {
      MemoryFs fs = tree();
      fs.set_exchange_unsupported(!swap);
      ScriptedPrivilege priv(alice(), answer::granted);
      context ctx(fs, priv, app);
      fs.clear_log();
      auto clean = converge(ctx, set);
      REQUIRE(clean);
      REQUIRE(clean->ok());
      ops = fs.op_count();
    }
    std::size_t nothing_there = 0, points = 0;
    for (std::size_t k = 1; k <= ops; ++k) {
      for (auto keep : {MemoryFs::crash_keep::none, MemoryFs::crash_keep::all}) {
        CAPTURE(swap);
        CAPTURE(k);
        MemoryFs fs = tree();
        fs.set_exchange_unsupported(!swap);
        {
          ScriptedPrivilege priv(alice(), answer::granted);
          context ctx(fs, priv, app);
          fs.crash_after(k);
          (void)converge(ctx, set);
        }
        MemoryFs rebooted = fs.after_crash(keep);
        ++points;
        auto standing = rebooted.status_of(at);
        if (!standing) {
          ++nothing_there;
          CHECK(rebooted.file_bytes(backup) == std::optional<std::string>("user's wrapper\n"));
        } else if (standing->type == file_type::regular) {
          CHECK(rebooted.file_bytes(at) == std::optional<std::string>("user's wrapper\n"));
        } else {
          CHECK(link_of(rebooted, at) == std::string(src) + "/docker");
          CHECK(rebooted.file_bytes(backup) == std::optional<std::string>("user's wrapper\n"));
        }
        MemoryFs undone_fs = rebooted;
        {
          ScriptedPrivilege priv(alice(), answer::granted);
          context ctx(undone_fs, priv, app);
          auto undone = uninstall(ctx, set);
          REQUIRE(undone);
          CHECK(undone->ok());
          CHECK(undone_fs.file_bytes(at) == std::optional<std::string>("user's wrapper\n"));
          CHECK(undone_fs.status_of(at)->mode == 0750);
          CHECK_FALSE(undone_fs.status_of(backup));
        }
        ScriptedPrivilege priv(alice(), answer::granted);
        context ctx(rebooted, priv, app);
        auto again = converge(ctx, set);
        REQUIRE(again);
        CHECK(again->ok());
        CHECK(again->out_of_sync.empty());
        CHECK(link_of(rebooted, at) == std::string(src) + "/docker");
        CHECK(rebooted.file_bytes(backup) == std::optional<std::string>("user's wrapper\n"));
      }
    }
    MESSAGE(std::string(swap ? "swap" : "fallback (two renames)") << ": " << points << " crash points, " << nothing_there
                                                       << " with nothing at the path");
    if (swap) CHECK(nothing_there == 0);
    else CHECK(nothing_there > 0);
  }
}

TEST_CASE("allow_dangling links docker.sock to a socket that does not exist yet; revert removes it") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  SymlinkSet sock = single("/var/run/docker.sock", "/Users/alice/.docker/run/docker.sock");
  auto refused = converge(ctx, sock);
  REQUIRE(refused);
  CHECK(priv.prompts() == 0);
  CHECK_FALSE(fs.status_of("/var/run/docker.sock"));
  CHECK(refused->steps[0].before.items[0].detail.find("does not exist (set allow_dangling") != std::string::npos);

  sock.allow_dangling = true;
  auto made = converge(ctx, sock);
  REQUIRE(made);
  CHECK(made->ok());
  CHECK(priv.prompts() == 1);
  CHECK(link_of(fs, "/var/run/docker.sock") == "/Users/alice/.docker/run/docker.sock");
  CHECK(fs.status_of("/var/run/docker.sock")->uid == 0);
  fs.clear_log();
  auto again = converge(ctx, sock);
  REQUIRE(again);
  CHECK(fs.mutating_ops() == 0);
  CHECK(again->steps[0].before.items[0].detail == "correct (the target does not exist yet; allowed)");

  // Another engine's stale socket link is dangling too: it is replaced, and put back on revert.
  fs.add_symlink("/var/run/docker.sock", "/Users/alice/.local/share/containers/podman.sock", 0, 0);
  auto before_podman = fs.take_snapshot();
  auto retook = converge(ctx, sock);
  REQUIRE(retook);
  CHECK(link_of(fs, "/var/run/docker.sock") == "/Users/alice/.docker/run/docker.sock");
  auto undone = uninstall(ctx, sock);
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(link_of(fs, "/var/run/docker.sock") == "/Users/alice/.local/share/containers/podman.sock");
  for (const auto& line : MemoryFs::diff(before_podman, fs.take_snapshot()))
    CHECK(line.find("/var/run") == std::string::npos);  // only the record differs (it is gone now)
}

TEST_CASE("uninstall removes only links that still point at what hostcfg set, and says why it left the rest") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  SymlinkSet set = bundle_links("/Users/alice/.docker/bin");
  REQUIRE(converge(ctx, set));
  fs.add_symlink("/Users/alice/.docker/bin/docker", "/opt/homebrew/Cellar/docker/24.0.7/bin/docker", 501, 20);
  auto undone = uninstall(ctx, set);
  REQUIRE(undone);
  CHECK(link_of(fs, "/Users/alice/.docker/bin/docker") == "/opt/homebrew/Cellar/docker/24.0.7/bin/docker");
  CHECK_FALSE(fs.status_of("/Users/alice/.docker/bin/docker-compose"));
  bool reported = false;
  for (const auto& e : undone->steps.at(0).applied.events)
    if (e.path == "/Users/alice/.docker/bin/docker") {
      CHECK(e.kind == event_kind::skipped);
      REQUIRE(e.failure);
      CHECK(e.failure->is(errc::drifted));
      CHECK(e.message.find("now points at /opt/homebrew/Cellar/docker/24.0.7/bin/docker, not what hostcfg set") !=
            std::string::npos);
      reported = true;
    }
  CHECK(reported);
  CHECK(fs.status_of("/Users/alice/.docker/bin"));  // not empty: kept
  CHECK_FALSE(fs.status_of(user_record_path));
}

TEST_CASE("install then uninstall of the whole recipe gives back the tree, records and decision included") {
  for (answer a : {answer::declined, answer::granted}) {
    CAPTURE(answer_name(a));
    MemoryFs fs = mac_tree();
    ScriptedPrivilege priv(alice(), a);
    context ctx(fs, priv, app);
    auto before = fs.take_snapshot();
    REQUIRE(converge(ctx, recipe()));
    CHECK_FALSE(MemoryFs::diff(before, fs.take_snapshot()).empty());
    auto undone = uninstall(ctx, recipe());
    REQUIRE(undone);
    CHECK(undone->ok());
    HOSTCFG_CHECK_NO_DIFF(MemoryFs::diff(before, fs.take_snapshot()), "");
  }
}

TEST_CASE("one user's uninstall does not pull a system link another user relies on") {
  MemoryFs fs = mac_tree();
  SymlinkSet set = bundle_links("/usr/local/bin");
  ScriptedPrivilege a_priv(alice(), answer::granted);
  context a_ctx(fs, a_priv, app);
  REQUIRE(converge(a_ctx, set));
  ScriptedPrivilege b_priv(bob(), answer::granted);
  context b_ctx(fs, b_priv, app);
  auto b_run = converge(b_ctx, set);
  REQUIRE(b_run);
  CHECK(b_priv.prompts() == 0);  // the links are there: bob is only recorded as relying on them
  CHECK(fs.file_bytes(system_record_path)->find("field users 501,502") != std::string::npos);

  auto a_gone = uninstall(a_ctx, set);
  REQUIRE(a_gone);
  CHECK(link_of(fs, "/usr/local/bin/docker") == std::string(src) + "/docker");
  bool kept = false;
  for (const auto& e : a_gone->steps.at(0).applied.events)
    kept = kept || (e.kind == event_kind::kept && e.message == "left in place: uid(s) 502 still rely on it");
  CHECK(kept);
  CHECK(fs.file_bytes(system_record_path)->find("field users 502\n") != std::string::npos);

  auto b_gone = uninstall(b_ctx, set);
  REQUIRE(b_gone);
  CHECK(b_gone->ok());
  CHECK_FALSE(fs.status_of("/usr/local/bin/docker"));
  CHECK_FALSE(fs.status_of(system_record_path));
}

TEST_CASE("an empty or missing source directory is an error, never 'zero links, done'") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/Applications/Empty.app/bin", 0755, 0, 0);
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  for (const char* dir : {"/Applications/Empty.app/bin", "/Applications/Missing.app/bin"}) {
    CAPTURE(dir);
    auto report = converge(ctx, cli_links(dir, "/usr/local/bin", "/Users/alice/.docker/bin", path_edit()));
    REQUIRE(report);
    CHECK_FALSE(report->ok());
    REQUIRE(report->steps.at(0).failure);
    CHECK(report->steps[0].failure->message().find(dir) != std::string::npos);
    CHECK(report->steps[0].failure->hint.find("reinstall the app") != std::string::npos);
    CHECK(all_notes(*report).find("no command was linked") != std::string::npos);
    CHECK(priv.prompts() == 0);
  }
  CHECK_FALSE(fs.status_of("/Users/alice/.docker"));
}

TEST_CASE("running as root for a user: the user's links belong to the user, system links to root") {
  MemoryFs fs = mac_tree();
  RootFor installer(alice());
  context ctx(fs, installer, app);
  SymlinkSet user_links;
  user_links.link_dir = "/Users/alice/.docker/bin";
  user_links.source_dir = src;
  SymlinkSet system_links;
  system_links.link_dir = "/usr/local/bin";
  system_links.source_dir = src;
  auto report = converge(ctx, system_links, user_links);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(fs.status_of("/usr/local/bin/docker")->uid == 0);
  CHECK(fs.status_of("/Users/alice/.docker/bin/docker")->uid == 501);
  CHECK(fs.status_of("/Users/alice/.docker/bin")->uid == 501);
  CHECK(fs.status_of("/Users/alice/.docker")->uid == 501);
  for (const auto& s : report->steps)
    for (const auto& e : s.applied.events) CHECK(e.elevated == (e.path.rfind("/usr/local/bin", 0) == 0));
}

TEST_CASE("apply re-checks what probe saw: a link changed in between is 'changed since probe'") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/Users/alice/bin", 0755, 501, 20);
  fs.add_symlink("/Users/alice/bin/docker", "/Users/alice/gone", 501, 20);
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  SymlinkSet set = single("/Users/alice/bin/docker", std::string(src) + "/docker");
  ledgers books;
  auto probed = set.probe(ctx, books);
  REQUIRE(probed);
  auto p = set.make_plan(*probed);
  REQUIRE(p.changes.size() == 1);
  fs.add_symlink("/Users/alice/bin/docker", "/opt/homebrew/Cellar/docker/24.0.7/bin/docker", 501, 20);
  auto applied = set.apply(ctx, p, grant{}, books);
  REQUIRE(applied.events.size() == 1);
  CHECK(applied.events[0].kind == event_kind::failed);
  REQUIRE(applied.events[0].failure);
  CHECK(applied.events[0].failure->is(errc::changed_since_probe));
  CHECK(link_of(fs, "/Users/alice/bin/docker") == "/opt/homebrew/Cellar/docker/24.0.7/bin/docker");
  CHECK(books.user.empty());
}

TEST_CASE("crash-and-error sweep over the move from the fallback to /usr/local/bin") {
  // Start: the fallback is in use (declined). The swept run: re-prompt, granted, links moved.
  const MemoryFs start = [] {
    MemoryFs fs = mac_tree();
    ScriptedPrivilege priv(alice(), answer::declined);
    context ctx(fs, priv, app);
    auto first = converge(ctx, recipe());
    REQUIRE(first);
    return fs.after_crash(MemoryFs::crash_keep::all);  // the starting point is durable
  }();
  auto make_tree = [&start] { return start; };
  auto step = recipe();
  auto run = [&](MemoryFs& fs) {
    ScriptedPrivilege priv(alice(), answer::granted);
    context ctx(fs, priv, app);
    ctx.policy.reprompt = true;
    return converge(ctx, step);
  };
  std::size_t total_ops = 0;
  std::vector<bool> mutating;  // a crash after a read leaves the same disk as after the write before it
  {
    MemoryFs fs = make_tree();
    fs.clear_log();
    REQUIRE(run(fs));
    total_ops = fs.op_count();
    for (const auto& op : fs.op_log()) mutating.push_back(op.mutating);
  }
  REQUIRE(total_ops > 10);
  const std::vector<std::string> names{"docker", "docker-compose", "kubectl.docker"};
  // Every command stays reachable, and the PATH edit stays while any fallback link is left.
  auto check_reachable = [&](MemoryFs& fs) {
    bool any_fallback = false;
    for (const auto& name : names) {
      bool system = link_of(fs, "/usr/local/bin/" + name) == std::string(src) + "/" + name;
      bool user = link_of(fs, "/Users/alice/.docker/bin/" + name) == std::string(src) + "/" + name;
      CHECK((system || user));
      any_fallback = any_fallback || user;
    }
    if (any_fallback) CHECK(fs.file_bytes("/Users/alice/.docker-path.zsh"));
  };
  auto rerun_converges = [&](MemoryFs& fs) {
    auto again = run(fs);
    REQUIRE(again);
    CHECK(again->ok());
    CHECK(again->out_of_sync.empty());
    for (const auto& name : names) CHECK(link_of(fs, "/usr/local/bin/" + name) == std::string(src) + "/" + name);
    CHECK_FALSE(fs.status_of("/Users/alice/.docker/bin"));
    CHECK_FALSE(fs.status_of("/Users/alice/.docker-path.zsh"));
    if (auto left = fs.list_dir(actor::root(), "/usr/local/bin"))
      for (const auto& name : *left) CHECK(name.find(".hostcfg-") == std::string::npos);
  };
  std::size_t points = 0;
  std::size_t crash_points = 0;
  for (std::size_t k = 1; k <= total_ops; ++k) {
    // Crashes: after every operation that wrote (each distinct disk state), losing all unsynced
    // changes, keeping all, and two seeded random subsets. Errors: at every operation.
    for (auto keep : {MemoryFs::crash_keep::none, MemoryFs::crash_keep::all, MemoryFs::crash_keep::random_subset}) {
      if (k - 1 < mutating.size() && !mutating[k - 1]) break;
      for (std::uint64_t seed = 0; seed < (keep == MemoryFs::crash_keep::random_subset ? 2u : 1u); ++seed) {
        ++crash_points;
        CAPTURE(k);
        CAPTURE(static_cast<int>(keep));
        CAPTURE(seed);
        MemoryFs fs = make_tree();
        fs.clear_log();
        fs.crash_after(k);
        (void)run(fs);
        MemoryFs rebooted = fs.after_crash(keep, seed);
        check_reachable(rebooted);
        rerun_converges(rebooted);
        ++points;
      }
    }
    for (bool persistent : {false, true}) {
      CAPTURE(k);
      CAPTURE(persistent);
      MemoryFs fs = make_tree();
      fs.clear_log();
      fs.fail_at(k, EIO, persistent);
      (void)run(fs);
      fs.disarm();  // before looking: a persistent fault would fail the checks' reads too
      check_reachable(fs);
      rerun_converges(fs);
      ++points;
    }
  }
  MESSAGE("symlink_set sweep: " << total_ops << " operations, " << points << " points swept (" << crash_points
                                   << " crashes)");
  std::printf("symlink_set sweep: %zu operations, %zu points swept (%zu crashes)\n", total_ops, points, crash_points);
}

TEST_CASE("attack: the user-writable link directory swapped for a symlink at each operation writes nothing outside") {
  // Root acting for alice; her link directory exists. Before every single operation in turn, it
  // is replaced by a symlink to /etc (root-owned). Nothing may appear in /etc.
  auto make_tree = [] {
    MemoryFs fs = mac_tree();
    fs.add_dir("/Users/alice/.docker", 0755, 501, 20);
    fs.add_dir("/Users/alice/.docker/bin", 0755, 501, 20);
    return fs;
  };
  SymlinkSet set = bundle_links("/Users/alice/.docker/bin");
  std::size_t total = 0;
  {
    MemoryFs fs = make_tree();
    hostcfg_test::SwapBeforeCall<MemoryFs> counting(fs, 0, nullptr);
    RootFor installer(alice());
    context ctx(counting, installer, app);
    REQUIRE(converge(ctx, set));
    total = counting.calls();
  }
  REQUIRE(total > 5);
  std::size_t fired = 0;
  for (std::size_t n = 1; n <= total; ++n) {
    MemoryFs fs = make_tree();
    auto etc_before = fs.list_dir(actor::root(), "/etc");
    REQUIRE(etc_before);
    hostcfg_test::SwapBeforeCall<MemoryFs> swapping(fs, n, [&fs] {
      // The attacker is alice herself: her own directory, swapped with her own rights.
      const actor attacker = alice().as_actor();
      auto moved = fs.rename(attacker, "/Users/alice/.docker/bin", "/Users/alice/.docker/moved");
      INFO((moved ? std::string("ok") : moved.error().message()));
      REQUIRE(moved);
      REQUIRE(fs.symlink(attacker, "/etc", "/Users/alice/.docker/bin"));
    });
    RootFor installer(alice());
    context ctx(swapping, installer, app);
    (void)converge(ctx, set);
    fired += swapping.fired() ? 1 : 0;
    CAPTURE(n);
    auto etc_after = fs.list_dir(actor::root(), "/etc");
    REQUIRE(etc_after);
    CHECK(*etc_after == *etc_before);
    if (*etc_after != *etc_before)
      for (const auto& name : *etc_after) MESSAGE("in /etc: " << name << " " << fs.status_of("/etc/" + name)->uid);
  }
  CHECK(fired == total);
  MESSAGE("attack: swapped before each of " << total << " operations");
}

// ---- conflicts noted in the record (issue 3 "record/revert") ----

TEST_CASE("each conflict left alone is noted in the user's record: what stood there, whose, since when") {
  MemoryFs fs = mac_tree();
  fs.add_symlink("/usr/local/bin/docker", "/opt/homebrew/Cellar/docker/24.0.7/bin/docker", 501, 20);
  fs.add_file("/usr/local/bin/docker-compose", "user's wrapper\n", 0755, 501, 20);
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  ctx.clock = [] { return std::int64_t{1700000000}; };
  SymlinkSet set = bundle_links("/usr/local/bin");
  auto first = converge(ctx, set);
  REQUIRE(first);
  CHECK(first->ok());
  CHECK(priv.prompts() == 1);  // for kubectl.docker only; the notes need no admin rights
  REQUIRE(priv.requests()[0].changes.size() == 1);
  CHECK(link_of(fs, "/usr/local/bin/kubectl.docker") == std::string(src) + "/kubectl.docker");
  CHECK(link_of(fs, "/usr/local/bin/docker") == "/opt/homebrew/Cellar/docker/24.0.7/bin/docker");
  CHECK(fs.file_bytes("/usr/local/bin/docker-compose") == std::optional<std::string>("user's wrapper\n"));
  auto rec = fs.file_bytes(user_record_path);
  REQUIRE(rec);
  auto parsed = parse_record(*rec);
  REQUIRE(parsed);
  const record_item* brew = parsed->find("conflict:/usr/local/bin/docker");
  REQUIRE(brew);
  CHECK(brew->primitive == "symlink_set");
  CHECK(brew->fields == std::map<std::string, std::string>{{"set", "links:/usr/local/bin"},
                                                           {"what", "link"},
                                                           {"owner", "Homebrew"},
                                                           {"target", "/opt/homebrew/Cellar/docker/24.0.7/bin/docker"},
                                                           {"uid", "501"},
                                                           {"since", "1700000000"}});
  const record_item* file = parsed->find("conflict:/usr/local/bin/docker-compose");
  REQUIRE(file);
  CHECK(file->get("what") == "file");
  CHECK(file->get("uid") == "501");
  CHECK(file->get("target").empty());
  // The root-owned record has only the link hostcfg made.
  auto sys = parse_record(*fs.file_bytes(system_record_path));
  REQUIRE(sys);
  CHECK(sys->find("link:/usr/local/bin/kubectl.docker"));
  CHECK_FALSE(sys->find("link:/usr/local/bin/docker"));
  CHECK_FALSE(sys->find("conflict:/usr/local/bin/docker"));

  // A later run names the conflict and its age, and writes nothing.
  ctx.clock = [] { return std::int64_t{1700090000}; };
  fs.clear_log();
  auto later = converge(ctx, set);
  REQUIRE(later);
  CHECK(fs.mutating_ops() == 0);
  CHECK(priv.prompts() == 1);
  std::string notes = all_notes(*later);
  CHECK(notes.find("/usr/local/bin/docker: conflict, left alone: foreign: /usr/local/bin/docker -> "
                   "/opt/homebrew/Cellar/docker/24.0.7/bin/docker (belongs to Homebrew); left alone (set take_over to "
                   "re-point it to " + std::string(src) + "/docker); left alone since 2023-11-14 22:13:20 UTC") !=
        std::string::npos);

  // Uninstall never touches them: it says so, and forgets the notes with the rest of the record.
  auto undone = uninstall(ctx, set);
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(link_of(fs, "/usr/local/bin/docker") == "/opt/homebrew/Cellar/docker/24.0.7/bin/docker");
  CHECK(fs.file_bytes("/usr/local/bin/docker-compose") == std::optional<std::string>("user's wrapper\n"));
  CHECK_FALSE(fs.status_of("/usr/local/bin/kubectl.docker"));
  std::string undone_notes = all_notes(*undone);
  for (const auto& step : undone->steps)
    for (const auto& n : step.applied.notes) undone_notes += n + "\n";
  CHECK(undone_notes.find("left /usr/local/bin/docker alone (a Homebrew link (-> "
                          "/opt/homebrew/Cellar/docker/24.0.7/bin/docker)) since 2023-11-14 22:13:20 UTC: it is not "
                          "hostcfg's, so it was not touched") != std::string::npos);
  CHECK(undone_notes.find("left /usr/local/bin/docker-compose alone (a regular file owned by uid 501) since "
                          "2023-11-14 22:13:20 UTC") != std::string::npos);
  CHECK_FALSE(fs.status_of(user_record_path));
  CHECK_FALSE(fs.status_of(system_record_path));
}

TEST_CASE("a conflict note follows the conflict: updated when something else stands there, forgotten once it is gone") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/Users/alice/bin", 0755, 501, 20);
  fs.add_symlink("/Users/alice/bin/docker", "/opt/homebrew/Cellar/docker/24.0.7/bin/docker", 501, 20);
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  std::int64_t now = 1700000000;
  ctx.clock = [&now] { return now; };
  SymlinkSet set = single("/Users/alice/bin/docker", std::string(src) + "/docker");
  REQUIRE(converge(ctx, set));
  CHECK(fs.file_bytes(user_record_path)->find("field what link") != std::string::npos);

  // The user replaces the Homebrew link by a directory: the note says so, with a new date.
  REQUIRE(fs.unlink(alice().as_actor(), "/Users/alice/bin/docker"));
  fs.add_dir("/Users/alice/bin/docker", 0700, 501, 20);
  now = 1700086400;
  auto changed = converge(ctx, set);
  REQUIRE(changed);
  auto rec = parse_record(*fs.file_bytes(user_record_path));
  REQUIRE(rec);
  const record_item* note = rec->find("conflict:/Users/alice/bin/docker");
  REQUIRE(note);
  CHECK(note->get("what") == "directory");
  CHECK(note->get("since") == "1700086400");
  bool modified = false;
  for (const auto& c : changed->steps[0].planned.changes)
    modified = modified || (c.object == "conflict note" && c.kind == change_kind::modify &&
                            c.before == "a Homebrew link (-> /opt/homebrew/Cellar/docker/24.0.7/bin/docker)" &&
                            c.after == "a directory owned by uid 501");
  CHECK(modified);

  // Gone: the link is made, and the note goes with the conflict.
  REQUIRE(fs.rmdir(alice().as_actor(), "/Users/alice/bin/docker"));
  auto made = converge(ctx, set);
  REQUIRE(made);
  CHECK(made->ok());
  CHECK(link_of(fs, "/Users/alice/bin/docker") == std::string(src) + "/docker");
  rec = parse_record(*fs.file_bytes(user_record_path));
  REQUIRE(rec);
  CHECK(rec->find("conflict:/Users/alice/bin/docker") == nullptr);
  CHECK(rec->find("link:/Users/alice/bin/docker"));
}

// ---- resolving, not just readlink: executables and companions (LESSONS 20) ----

TEST_CASE("executables: a correct link that does not end at an executable regular file is reported, never rewritten") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/usr/local/bin", 0755, 501, 80);
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  SymlinkSet set = bundle_links("/usr/local/bin");
  set.executables = true;
  REQUIRE(converge(ctx, set));
  CHECK(link_of(fs, "/usr/local/bin/docker") == std::string(src) + "/docker");
  // The app update leaves docker without its x bit, and docker-compose a symlink to a directory.
  fs.add_file(std::string(src) + "/docker", "#!bin docker\n", 0644, 0, 0);
  fs.add_dir("/Applications/Docker.app/Contents/Resources/compose", 0755, 0, 0);
  REQUIRE(fs.unlink(actor::root(), std::string(src) + "/docker-compose"));
  fs.add_symlink(std::string(src) + "/docker-compose", "../compose", 0, 0);
  fs.clear_log();
  auto report = converge(ctx, set);
  REQUIRE(report);
  CHECK(fs.mutating_ops() == 0);
  const auto& items = report->steps.at(0).before.items;
  REQUIRE(items.size() == 3);
  CHECK(items[0].state == item_state::conflict);
  CHECK(items[0].detail == "/usr/local/bin/docker points at " + std::string(src) +
                               "/docker as it should, but that is not an executable regular file (mode 0644): the "
                               "command would not run");
  CHECK(items[1].state == item_state::conflict);
  CHECK(items[1].detail.find("but that is not an executable regular file (not a regular file)") != std::string::npos);
  CHECK(items[2].state == item_state::matches);
  REQUIRE(report->out_of_sync.size() == 1);

  // Without the flag the same tree is in sync: readlink alone cannot tell.
  set.executables = false;
  auto plain = converge(ctx, set);
  REQUIRE(plain);
  CHECK(plain->out_of_sync.empty());

  // A link still to be made to a non-executable target is refused before anything is written.
  SymlinkSet fresh = single("/Users/alice/docker", std::string(src) + "/docker");
  fresh.executables = true;
  fs.clear_log();
  auto refused = converge(ctx, fresh);
  REQUIRE(refused);
  CHECK(fs.mutating_ops() == 0);
  CHECK(refused->steps.at(0).before.items.at(0).detail ==
        "the target " + std::string(src) + "/docker is not an executable regular file (mode 0644); a link to it would "
        "not run");
}

TEST_CASE("companions: the first match on the given PATH must be ours, else what shadows it is named") {
  MemoryFs fs = mac_tree();
  fs.add_file(std::string(src) + "/com.docker.cli", "#!bin cli\n", 0755, 0, 0);
  fs.add_file("/opt/homebrew/bin/com.docker.cli", "brew cli\n", 0755, 501, 20);
  fs.add_dir("/usr/bin", 0755, 0, 0);
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  SymlinkSet set = bundle_links("/usr/local/bin");
  set.executables = true;
  set.companions = {"com.docker.cli"};
  set.search_path = {"/usr/bin", "/opt/homebrew/bin", "/usr/local/bin"};
  auto first = converge(ctx, set);
  REQUIRE(first);
  CHECK(first->ok());
  CHECK(link_of(fs, "/usr/local/bin/com.docker.cli") == std::string(src) + "/com.docker.cli");
  const probe_report& after = *first->steps.at(0).after;
  const item_probe* companion = after.find("companion:com.docker.cli");
  REQUIRE(companion);
  CHECK(companion->state == item_state::conflict);
  CHECK(companion->path == "/opt/homebrew/bin/com.docker.cli");
  CHECK(companion->detail == "com.docker.cli on PATH resolves to /opt/homebrew/bin/com.docker.cli first (shadowing "
                             "ours); it belongs to Homebrew: put /usr/local/bin before /opt/homebrew/bin on PATH, or "
                             "remove it");
  CHECK(all_notes(*first).find("shadowing ours") != std::string::npos);
  CHECK(first->out_of_sync == std::vector<std::string>{"links:/usr/local/bin"});

  // No write because of it: the next run changes nothing.
  fs.clear_log();
  REQUIRE(converge(ctx, set));
  CHECK(fs.mutating_ops() == 0);

  // Ours first: in sync. The app's own bin directory on PATH counts as ours too.
  set.search_path = {"/usr/bin", "/usr/local/bin", "/opt/homebrew/bin"};
  auto ours = converge(ctx, set);
  REQUIRE(ours);
  CHECK(ours->out_of_sync.empty());
  CHECK(ours->steps.at(0).before.find("companion:com.docker.cli")->detail ==
        "com.docker.cli on PATH resolves to /usr/local/bin/com.docker.cli (ours)");
  set.search_path = {src, "/opt/homebrew/bin"};
  auto bundle = converge(ctx, set);
  REQUIRE(bundle);
  CHECK(bundle->out_of_sync.empty());

  // Not on PATH at all, or only as a file the user cannot run: reported as not found.
  fs.add_file("/usr/bin/com.docker.cli", "not runnable\n", 0644, 0, 0);
  set.search_path = {"/usr/bin"};
  auto missing = converge(ctx, set);
  REQUIRE(missing);
  CHECK(missing->steps.at(0).before.find("companion:com.docker.cli")->detail ==
        "com.docker.cli is not found on PATH (/usr/bin): the linked programs cannot start it");

  // Bad requests are refused before any I/O.
  set.companions = {"docker-nope"};
  auto unknown = set.probe(ctx, ledgers{});
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().message().find("a companion must be the name of one of the set's links") != std::string::npos);
  set.companions = {"com.docker.cli"};
  set.search_path = {"relative/bin"};
  CHECK_FALSE(set.probe(ctx, ledgers{}));
  set.search_path = {};
  CHECK_FALSE(set.probe(ctx, ledgers{}));
}

TEST_CASE("executables, companions and the search path cross to the elevated runner and are re-validated") {
  SymlinkSet set = bundle_links("/usr/local/bin");
  set.executables = true;
  set.companions = {"com.docker.cli", "docker"};
  set.search_path = {"/usr/local/bin", "/opt/homebrew/bin"};
  auto wire = parse_record(serialize_record(record{app, {{set.id(), set.desired_state()}}}));
  REQUIRE(wire);
  auto back = SymlinkSet::from_desired_state(wire->items.at(set.id()));
  REQUIRE(back);
  CHECK(back->executables);
  CHECK(back->companions == set.companions);
  CHECK(back->search_path == set.search_path);
  record_item bad = set.desired_state();
  bad.fields["companion.0"] = "../../etc/passwd";
  CHECK_FALSE(SymlinkSet::from_desired_state(bad));
  bad = set.desired_state();
  bad.fields["path.1"] = "opt/homebrew/bin";
  CHECK_FALSE(SymlinkSet::from_desired_state(bad));
}

// ---- a second user relying on system links made through the elevated runner ----

namespace {
// The in-process hand-off runner (support/handoff_privilege.hpp), accepting SymlinkSet steps.
using HandoffPrivilege = hostcfg_test::handoff_privilege<SymlinkSet>;

std::string users_of(MemoryFs& fs, const std::string& link) {
  auto bytes = fs.file_bytes(system_record_path);
  if (!bytes) return "<no record>";
  auto rec = parse_record(*bytes);
  if (!rec) return "<corrupt>";
  const record_item* item = rec->find("link:" + link);
  return item ? item->get("users") : std::string("<no item>");
}
}  // namespace

TEST_CASE("hand-off: a second user relying on the system links is recorded by the runner; uninstalls honour it") {
  MemoryFs fs = mac_tree();
  SymlinkSet set = bundle_links("/usr/local/bin");

  // Alice installs through the runner: one prompt, links as root, uid 501 recorded.
  HandoffPrivilege a_priv{alice(), &fs, answer::granted, 0, {}};
  context a_ctx(fs, a_priv, app);
  auto a_run = converge(a_ctx, set);
  REQUIRE(a_run);
  CHECK(a_run->ok());
  CHECK(a_priv.requests.size() == 1);
  CHECK(fs.status_of("/usr/local/bin/docker")->uid == 0);
  CHECK(users_of(fs, "/usr/local/bin/docker") == "501");

  // Bob's run finds the links correct. His process cannot write the root-owned record, so being
  // recorded is an elevated change: one prompt, whose lines say exactly that and change no link.
  HandoffPrivilege b_priv{bob(), &fs, answer::granted, 0, {}};
  context b_ctx(fs, b_priv, app);
  auto links_before = fs.take_snapshot();
  auto b_run = converge(b_ctx, set);
  REQUIRE(b_run);
  CHECK(b_run->ok());
  REQUIRE(b_priv.requests.size() == 1);
  REQUIRE(b_priv.requests[0].changes.size() == 3);
  CHECK(b_priv.requests[0].changes[0] ==
        "modify link record /usr/local/bin/docker (register: the link is correct; record that uid 502 relies on it; "
        "the users relying on a system link are listed in the root-owned record)");
  for (const char* name : {"docker", "docker-compose", "kubectl.docker"})
    CHECK(users_of(fs, std::string("/usr/local/bin/") + name) == "501,502");
  for (const auto& line : MemoryFs::diff(links_before, fs.take_snapshot()))
    CHECK(line == "changed " + std::string(system_record_path) + ": " + line.substr(line.find(": ") + 2));
  CHECK(b_run->out_of_sync.empty());
  CHECK(b_run->steps.at(0).after->in_sync());
  // Recorded: the next run asks nothing and writes nothing.
  fs.clear_log();
  REQUIRE(converge(b_ctx, set));
  CHECK(b_priv.requests.size() == 1);
  CHECK(fs.mutating_ops() == 0);

  // Uninstall runs as root for the user (`sudo installer --uninstall`: converge's uninstall asks
  // in process). Alice's leaves the links: bob relies on them.
  RootFor a_root(alice());
  context a_undo(fs, a_root, app);
  auto a_gone = uninstall(a_undo, set);
  REQUIRE(a_gone);
  CHECK(a_gone->ok());
  CHECK(link_of(fs, "/usr/local/bin/docker") == std::string(src) + "/docker");
  CHECK(users_of(fs, "/usr/local/bin/docker") == "502");
  // Bob's removes them, and the record with them.
  RootFor b_root(bob());
  context b_undo(fs, b_root, app);
  auto b_gone = uninstall(b_undo, set);
  REQUIRE(b_gone);
  CHECK(b_gone->ok());
  for (const char* name : {"docker", "docker-compose", "kubectl.docker"})
    CHECK_FALSE(fs.status_of(std::string("/usr/local/bin/") + name));
  CHECK_FALSE(fs.status_of(system_record_path));
}

TEST_CASE("hand-off through the CLI-links recipe: a declined registration keeps the working links, no fallback") {
  MemoryFs fs = mac_tree();
  HandoffPrivilege a_priv{alice(), &fs, answer::granted, 0, {}};
  context a_ctx(fs, a_priv, app);
  REQUIRE(converge(a_ctx, recipe()));
  CHECK(users_of(fs, "/usr/local/bin/docker") == "501");

  HandoffPrivilege b_priv{bob(), &fs, answer::declined, 0, {}};
  context b_ctx(fs, b_priv, app);
  auto b_edit = ManagedFile{"/Users/bob/.docker-path.zsh", "export PATH=\"$HOME/.docker/bin:$PATH\"\n", 0644};
  auto b_recipe = cli_links(src, "/usr/local/bin", "/Users/bob/.docker/bin", b_edit);
  auto declined = converge(b_ctx, b_recipe);
  REQUIRE(declined);
  CHECK(b_priv.requests.size() == 1);
  CHECK_FALSE(fs.status_of("/Users/bob/.docker"));  // the commands work: no fallback links
  CHECK_FALSE(fs.status_of("/Users/bob/.docker-path.zsh"));
  CHECK(users_of(fs, "/usr/local/bin/docker") == "501");
  CHECK(all_notes(*declined).find("uid 502 is not recorded as relying on the links in /usr/local/bin (admin rights: "
                                  "declined); they work now, but another user's uninstall may remove them") !=
        std::string::npos);
  CHECK(declined->out_of_sync.empty());
  // The decline stands: the next run asks nothing and writes nothing, and says the same.
  fs.clear_log();
  auto again = converge(b_ctx, b_recipe);
  REQUIRE(again);
  CHECK(b_priv.requests.size() == 1);
  CHECK(fs.mutating_ops() == 0);
  CHECK(all_notes(*again).find("a recorded decision: set re-prompt to ask again") != std::string::npos);
  // Granted on re-prompt: recorded by the runner.
  b_priv.script = answer::granted;
  b_ctx.policy.reprompt = true;
  auto granted = converge(b_ctx, b_recipe);
  REQUIRE(granted);
  CHECK(granted->ok());
  CHECK(users_of(fs, "/usr/local/bin/docker") == "501,502");
  CHECK_FALSE(fs.status_of("/Users/bob/.docker"));
}

// ---- probe cost (issue 10, benchmark 1) ----

TEST_CASE("probe cost: a correct link is one lstat and one readlink, and converge probes the set once") {
  MemoryFs fs = mac_tree();
  const std::string big = "/Applications/Big.app/Contents/Resources/bin";
  for (int i = 0; i < 20; ++i) fs.add_file(big + "/cmd" + std::to_string(i), "#!bin\n", 0755, 0, 0);
  ScriptedPrivilege priv(alice(), std::vector<answer>{answer::granted});
  context ctx(fs, priv, app);
  auto step = cli_links(big, "/usr/local/bin", "/Users/alice/.docker/bin", path_edit());
  REQUIRE(converge(ctx, step));
  REQUIRE(link_of(fs, "/usr/local/bin/cmd19") == big + "/cmd19");

  auto count = [&fs](const std::string& op) {
    std::size_t n = 0;
    for (const auto& r : fs.op_log()) n += r.op == op ? 1 : 0;
    return n;
  };
  auto books = detail::load_ledgers(ctx);
  REQUIRE(books);
  const SymlinkSet& set = step.primary;
  fs.clear_log();
  auto probed = set.probe(ctx, *books);
  REQUIRE(probed);
  CHECK(probed->in_sync());
  CHECK(count("list_dir") == 1);
  CHECK(count("lstat") == 20);
  CHECK(count("readlink") == 20);
  CHECK(fs.op_count() == 41);  // was about 20 per link: 3 + 6 physical-path lstats, stats, the root-path walk

  // executables adds one stat per link (the whole chain followed, as the user), nothing else.
  SymlinkSet checked = set;
  checked.executables = true;
  fs.clear_log();
  REQUIRE(checked.probe(ctx, *books));
  CHECK(count("stat") == 20);
  CHECK(fs.op_count() == 61);

  // A no-op converge of the recipe: every link looked at once (one probe), nothing written.
  fs.clear_log();
  auto noop = converge(ctx, step);
  REQUIRE(noop);
  CHECK(noop->out_of_sync.empty());
  CHECK(fs.mutating_ops() == 0);
  for (int i = 0; i < 20; ++i) {
    std::string link = "/usr/local/bin/cmd" + std::to_string(i);
    std::size_t lstats = 0, readlinks = 0;
    for (const auto& r : fs.op_log()) {
      lstats += r.op == "lstat" && r.path == link ? 1 : 0;
      readlinks += r.op == "readlink" && r.path == link ? 1 : 0;
    }
    CAPTURE(link);
    CHECK(lstats == 1);
    CHECK(readlinks == 1);
  }
  std::size_t listings = 0;
  for (const auto& r : fs.op_log()) listings += r.op == "list_dir" && r.path == big ? 1 : 0;
  CHECK(listings == 1);
  // Everything else the no-op does is the records' business (reading them), not the links'.
  std::size_t on_links = 0;
  for (const auto& r : fs.op_log()) on_links += r.path.rfind("/usr/local/bin", 0) == 0 ? 1 : 0;
  CHECK(on_links == 40);
  MESSAGE("no-op converge of 20 correct links: " << fs.op_count() << " Fs operations");
}

TEST_CASE("a root-owned link directory below one the user can write is an unsafe path: refused, nothing written") {
  // /Users/alice/tools/bin is root's, but alice can rename /Users/alice/tools away and plant a
  // symlink between probe and apply: root never works there (RELIABILITY P2).
  MemoryFs fs = mac_tree();
  fs.add_dir("/Users/alice/tools", 0755, 501, 20);
  fs.add_dir("/Users/alice/tools/bin", 0755, 0, 0);
  RootFor installer(alice());
  context ctx(fs, installer, app);
  SymlinkSet set;
  set.link_dir = "/Users/alice/tools/bin";
  set.source_dir = src;
  auto before = fs.take_snapshot();
  auto report = converge(ctx, set);
  REQUIRE(report);
  REQUIRE_FALSE(report->steps[0].before.items.empty());
  for (const auto& item : report->steps[0].before.items) {
    CAPTURE(item.path);
    CHECK(item.state == item_state::conflict);
    CHECK(item.detail ==
          "unsafe path: /Users/alice is writable by uid 501, who could swap /Users/alice/tools for a symlink; hostcfg "
          "never works there with admin rights");
  }
  CHECK(report->steps[0].planned.empty());
  CHECK_FALSE(report->out_of_sync.empty());
  // Nothing changed but the user's record (where conflicts left alone are noted).
  for (const auto& line : MemoryFs::diff(before, fs.take_snapshot())) {
    CAPTURE(line);
    CHECK(line.find("/Users/alice/.local/state/hostcfg") != std::string::npos);
  }
  auto listed = fs.list_dir(actor::root(), "/Users/alice/tools/bin");
  REQUIRE(listed);
  CHECK(listed->empty());
}

TEST_CASE("missing parents of the link directory get the caller's mode and owner, are recorded, and go on uninstall") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/opt", 0755, 0, 0);
  ScriptedPrivilege priv(alice(), answer::granted);
  context ctx(fs, priv, app);
  SymlinkSet set;
  set.link_dir = "/opt/docker/bin";
  set.source_dir = src;
  set.dir_mode = 0750;
  set.dir_uid = 0;
  set.dir_gid = 80;
  auto before = fs.take_snapshot();
  auto report = converge(ctx, set);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 1);
  for (const char* d : {"/opt/docker", "/opt/docker/bin"}) {
    CAPTURE(d);
    auto st = fs.status_of(d);
    REQUIRE(st);
    CHECK(st->mode == 0750);
    CHECK(st->uid == 0);
    CHECK(st->gid == 80);
  }
  CHECK(link_of(fs, "/opt/docker/bin/docker") == std::string(src) + "/docker");
  auto rec = fs.file_bytes(system_record_path);
  REQUIRE(rec);
  CHECK(rec->find("/opt/docker/bin") != std::string::npos);
  auto undone = uninstall(ctx, set);
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK_FALSE(fs.status_of("/opt/docker"));
  HOSTCFG_CHECK_NO_DIFF(MemoryFs::diff(before, fs.take_snapshot()), "");
}

TEST_CASE("declined, then the directory becomes writable: the next run links there with no prompt and retires the fallback") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice(), answer::declined);
  context ctx(fs, priv, app);
  REQUIRE(converge(ctx, recipe()));
  CHECK(priv.prompts() == 1);
  CHECK(link_of(fs, "/Users/alice/.docker/bin/docker") == std::string(src) + "/docker");
  // An administrator hands /usr/local/bin to alice (as Homebrew's installer does).
  fs.add_dir("/usr/local/bin", 0755, 501, 80);
  auto later = converge(ctx, recipe());
  REQUIRE(later);
  CHECK(later->ok());
  CHECK(priv.prompts() == 1);  // no second prompt: alice can write there now
  CHECK(link_of(fs, "/usr/local/bin/docker") == std::string(src) + "/docker");
  CHECK(fs.status_of("/usr/local/bin/docker")->uid == 501);
  CHECK_FALSE(fs.status_of("/Users/alice/.docker/bin/docker"));
  CHECK_FALSE(fs.status_of("/Users/alice/.docker-path.zsh"));
  fs.clear_log();
  REQUIRE(converge(ctx, recipe()));
  CHECK(fs.mutating_ops() == 0);
}

TEST_CASE("what to do next: each answer is named; a fallback that cannot be made says to add the source to PATH") {
  for (answer a : {answer::declined, answer::cancelled, answer::timed_out, answer::unavailable}) {
    CAPTURE(answer_name(a));
    MemoryFs fs = mac_tree();
    ScriptedPrivilege priv(alice(), a);
    context ctx(fs, priv, app);
    auto report = converge(ctx, recipe());
    REQUIRE(report);
    CHECK(all_notes(*report).find("the commands are linked in /Users/alice/.docker/bin instead of /usr/local/bin "
                                  "(admin rights: " + std::string(answer_name(a)) +
                                  "); reload your shells (open a new terminal) so PATH includes "
                                  "/Users/alice/.docker/bin") != std::string::npos);
  }
  // A file where the fallback directory would go: nothing can be linked anywhere.
  MemoryFs fs = mac_tree();
  fs.add_file("/Users/alice/.docker", "not a directory\n", 0644, 501, 20);
  ScriptedPrivilege priv(alice(), answer::declined);
  context ctx(fs, priv, app);
  auto report = converge(ctx, recipe());
  REQUIRE(report);
  CHECK(all_notes(*report).find("the commands could not be put on PATH (admin rights: declined); add " +
                                std::string(src) + " to your PATH, or run them by their full path") !=
        std::string::npos);
  CHECK(fs.file_bytes("/Users/alice/.docker") == std::optional<std::string>("not a directory\n"));
  CHECK_FALSE(report->out_of_sync.empty());
}
