// ShellProfilePathEdit through the whole protocol on MemoryFs: file choice per shell, created
// files owned by the user, round trip, idempotence, symlinked and locked dotfiles, the user's
// opt-out, the user's own PATH line, compare-and-swap, drift on revert, and the crash-and-error
// sweep.
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/primitives/shell_profile_path_edit.hpp>
#include <hostcfg/testing/crash_sweep.hpp>

#include <cstdio>

#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

const char* app = "com.docker.desktop";
const char* docker_bin = "/Users/alice/.docker/bin";
const char* user_record_path = "/Users/alice/.local/state/hostcfg/com.docker.desktop.record";

user_identity alice(std::string shell = "/bin/zsh") {
  return user_identity{501, 20, {20, 12, 61, 80}, "alice", "/Users/alice", std::move(shell), std::nullopt,
                       std::nullopt};
}

MemoryFs mac_tree() {
  MemoryFs fs;
  fs.add_dir("/etc", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  fs.add_dir("/Users/alice/.docker", 0755, 501, 20);
  fs.add_dir("/Users/alice/.docker/bin", 0755, 501, 20);
  return fs;
}

std::string block_for(shell_dialect d, const std::string& ending = "\n") {
  return *render_path_block({app, docker_bin, "/Users/alice", d, std::nullopt}, ending);
}

const step_report& only_step(const converge_report& r) {
  REQUIRE(r.steps.size() == 1);
  return r.steps[0];
}

}  // namespace

TEST_CASE("zsh: a missing .zshrc is created 0644 by the user with the block, and reload is noted") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice(), answer::declined);
  context ctx(fs, priv, app);
  ShellProfilePathEdit edit{docker_bin};
  auto report = converge(ctx, edit);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 0);
  CHECK(fs.file_bytes("/Users/alice/.zshrc") == std::optional<std::string>(block_for(shell_dialect::zsh)));
  auto st = fs.status_of("/Users/alice/.zshrc");
  REQUIRE(st);
  CHECK(st->mode == 0644);
  CHECK(st->uid == 501);
  CHECK(st->gid == 20);
  const auto& step = only_step(*report);
  REQUIRE(step.planned.changes.size() == 1);
  CHECK(step.planned.changes[0].summary().rfind("create profile file /Users/alice/.zshrc", 0) == 0);
  REQUIRE(step.applied.notes.size() == 1);
  CHECK(step.applied.notes[0].find("`exec zsh`") != std::string::npos);
  CHECK(report->out_of_sync.empty());
}

TEST_CASE("an existing .zshrc gets the block appended; the second run writes nothing; uninstall restores it") {
  MemoryFs fs = mac_tree();
  const std::string original = "export ZSH=\"$HOME/.oh-my-zsh\"\r\nsource $ZSH/oh-my-zsh.sh";  // CRLF, no final newline
  fs.add_file("/Users/alice/.zshrc", original, 0600, 501, 20);
  ScriptedPrivilege priv(alice(), answer::declined);
  context ctx(fs, priv, app);
  ShellProfilePathEdit edit{docker_bin};
  auto first = converge(ctx, edit);
  REQUIRE(first);
  CHECK(first->ok());
  CHECK(only_step(*first).before.items[0].detail.find("cannot be modelled") != std::string::npos);
  CHECK(fs.file_bytes("/Users/alice/.zshrc") ==
        std::optional<std::string>(original + "\r\n" + block_for(shell_dialect::zsh, "\r\n")));
  CHECK(fs.status_of("/Users/alice/.zshrc")->mode == 0600);  // an existing file keeps its mode

  auto before = fs.take_snapshot();
  fs.clear_log();
  auto second = converge(ctx, edit);
  REQUIRE(second);
  CHECK(only_step(*second).planned.empty());
  CHECK(fs.mutating_ops() == 0);
  CHECK(MemoryFs::diff(before, fs.take_snapshot()).empty());

  auto removed = uninstall(ctx, edit);
  REQUIRE(removed);
  CHECK(removed->ok());
  CHECK(fs.file_bytes("/Users/alice/.zshrc") == std::optional<std::string>(original));
  CHECK_FALSE(fs.status_of(user_record_path));
}

TEST_CASE("uninstall removes a file hostcfg created and the directories it made (fish conf.d)") {
  MemoryFs fs = mac_tree();
  auto user = alice("/opt/homebrew/bin/fish");
  user.xdg_config_home = "/Users/alice/xdg";
  ScriptedPrivilege priv(user, answer::declined);
  context ctx(fs, priv, app);
  ShellProfilePathEdit edit{docker_bin};
  auto before = fs.take_snapshot();
  REQUIRE(converge(ctx, edit));
  const char* file = "/Users/alice/xdg/fish/conf.d/com.docker.desktop.fish";
  CHECK(fs.file_bytes(file) == std::optional<std::string>(block_for(shell_dialect::fish)));
  for (const char* d : {"/Users/alice/xdg", "/Users/alice/xdg/fish", "/Users/alice/xdg/fish/conf.d"}) {
    auto st = fs.status_of(d);
    REQUIRE(st);
    CHECK(st->mode == 0700);
    CHECK(st->uid == 501);
  }
  REQUIRE(uninstall(ctx, edit));
  CHECK(MemoryFs::diff(before, fs.take_snapshot()).empty());
}

TEST_CASE("bash: the first existing login file and .bashrc are edited; .profile is never shadowed") {
  MemoryFs fs = mac_tree();
  fs.add_file("/Users/alice/.bash_login", "export A=1\n", 0644, 501, 20);
  fs.add_file("/Users/alice/.profile", "export B=1\n", 0644, 501, 20);
  fs.add_file("/Users/alice/.bashrc", "alias ll='ls -l'\n", 0644, 501, 20);
  ScriptedPrivilege priv(alice("/bin/bash"), answer::declined);
  context ctx(fs, priv, app);
  ShellProfilePathEdit edit{docker_bin};
  auto report = converge(ctx, edit);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(fs.file_bytes("/Users/alice/.bash_login") ==
        std::optional<std::string>("export A=1\n" + block_for(shell_dialect::posix)));
  CHECK(fs.file_bytes("/Users/alice/.bashrc") ==
        std::optional<std::string>("alias ll='ls -l'\n" + block_for(shell_dialect::posix)));
  CHECK(fs.file_bytes("/Users/alice/.profile") == std::optional<std::string>("export B=1\n"));
  CHECK_FALSE(fs.status_of("/Users/alice/.bash_profile"));
  CHECK(only_step(*report).planned.changes.size() == 2);
  REQUIRE(uninstall(ctx, edit));
  CHECK(fs.file_bytes("/Users/alice/.bash_login") == std::optional<std::string>("export A=1\n"));
  CHECK(fs.file_bytes("/Users/alice/.bashrc") == std::optional<std::string>("alias ll='ls -l'\n"));
}

TEST_CASE("zsh with ZDOTDIR edits $ZDOTDIR/.zshrc, not ~/.zshrc") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/Users/alice/.config/zsh", 0755, 501, 20);
  fs.add_file("/Users/alice/.zshrc", "# unused\n", 0644, 501, 20);
  auto user = alice();
  user.zdotdir = "/Users/alice/.config/zsh";
  ScriptedPrivilege priv(user, answer::declined);
  context ctx(fs, priv, app);
  REQUIRE(converge(ctx, ShellProfilePathEdit{docker_bin}));
  CHECK(fs.file_bytes("/Users/alice/.config/zsh/.zshrc") == std::optional<std::string>(block_for(shell_dialect::zsh)));
  CHECK(fs.file_bytes("/Users/alice/.zshrc") == std::optional<std::string>("# unused\n"));
}

TEST_CASE("a symlinked dotfile is edited at the user's target and the link stays; a foreign target is refused") {
  MemoryFs fs = mac_tree();
  fs.add_dir("/Users/alice/dotfiles", 0755, 501, 20);
  fs.add_file("/Users/alice/dotfiles/zshrc", "setopt AUTO_CD\n", 0644, 501, 20);
  fs.add_symlink("/Users/alice/.zshrc", "dotfiles/zshrc", 501, 20);
  ScriptedPrivilege priv(alice(), answer::declined);
  context ctx(fs, priv, app);
  ShellProfilePathEdit edit{docker_bin};
  auto report = converge(ctx, edit);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(fs.status_of("/Users/alice/.zshrc")->type == file_type::symlink);
  CHECK(fs.readlink(actor::root(), "/Users/alice/.zshrc").value_or("") == "dotfiles/zshrc");
  CHECK(fs.file_bytes("/Users/alice/dotfiles/zshrc") ==
        std::optional<std::string>("setopt AUTO_CD\n" + block_for(shell_dialect::zsh)));
  REQUIRE(uninstall(ctx, edit));
  CHECK(fs.file_bytes("/Users/alice/dotfiles/zshrc") == std::optional<std::string>("setopt AUTO_CD\n"));
  CHECK(fs.status_of("/Users/alice/.zshrc")->type == file_type::symlink);

  MemoryFs foreign = mac_tree();
  foreign.add_file("/etc/zshrc.shared", "x=1\n", 0644, 0, 0);
  foreign.add_symlink("/Users/alice/.zshrc", "/etc/zshrc.shared", 501, 20);
  context ctx2(foreign, priv, app);
  auto refused = converge(ctx2, edit);
  REQUIRE(refused);
  const auto& item = only_step(*refused).before.items[0];
  CHECK(item.state == item_state::conflict);
  CHECK(item.detail.find("owned by uid 0") != std::string::npos);
  CHECK(foreign.file_bytes("/etc/zshrc.shared") == std::optional<std::string>("x=1\n"));
}

TEST_CASE("an immutable or read-only file is 'locked by the user': nothing written, not retried") {
  for (int variant = 0; variant < 2; ++variant) {
    MemoryFs fs = mac_tree();
    fs.add_file("/Users/alice/.zshrc", "export A=1\n", variant == 0 ? 0644 : 0444, 501, 20);
    if (variant == 0) fs.set_flags("/Users/alice/.zshrc", file_flags{true, false});
    ScriptedPrivilege priv(alice(), answer::declined);
    context ctx(fs, priv, app);
    fs.clear_log();
    auto report = converge(ctx, ShellProfilePathEdit{docker_bin});
    REQUIRE(report);
    CAPTURE(variant);
    const auto& item = only_step(*report).before.items[0];
    CHECK(item.state == item_state::locked);
    CHECK(item.detail.find(variant == 0 ? "locked by the user (immutable)" : "locked by the user (read-only)") !=
          std::string::npos);
    CHECK(only_step(*report).planned.empty());
    CHECK(fs.mutating_ops() == 0);
    CHECK(fs.file_bytes("/Users/alice/.zshrc") == std::optional<std::string>("export A=1\n"));
  }
}

TEST_CASE("a block the user deleted is an opt-out: not re-added unless the caller asks") {
  MemoryFs fs = mac_tree();
  fs.add_file("/Users/alice/.zshrc", "export A=1\n", 0644, 501, 20);
  ScriptedPrivilege priv(alice(), answer::declined);
  context ctx(fs, priv, app);
  ShellProfilePathEdit edit{docker_bin};
  REQUIRE(converge(ctx, edit));
  fs.add_file("/Users/alice/.zshrc", "export A=1\n", 0644, 501, 20);  // the user removes the block
  fs.clear_log();
  auto again = converge(ctx, edit);
  REQUIRE(again);
  const auto& item = only_step(*again).before.items[0];
  CHECK(item.state == item_state::locked);
  CHECK(item.detail.find("opt-out respected") != std::string::npos);
  CHECK(fs.file_bytes("/Users/alice/.zshrc") == std::optional<std::string>("export A=1\n"));
  CHECK(fs.mutating_ops() == 0);

  ShellProfilePathEdit insist{docker_bin};
  insist.re_add = true;
  REQUIRE(converge(ctx, insist));
  CHECK(fs.file_bytes("/Users/alice/.zshrc") ==
        std::optional<std::string>("export A=1\n" + block_for(shell_dialect::zsh)));
}

TEST_CASE("a directory the user's own line already puts on PATH is reported, not duplicated") {
  MemoryFs fs = mac_tree();
  const std::string mine = "export PATH=\"$HOME/.docker/bin:$PATH\"\n";
  fs.add_file("/Users/alice/.zshrc", mine, 0644, 501, 20);
  ScriptedPrivilege priv(alice(), answer::declined);
  context ctx(fs, priv, app);
  auto report = converge(ctx, ShellProfilePathEdit{docker_bin});
  REQUIRE(report);
  const auto& item = only_step(*report).before.items[0];
  CHECK(item.state == item_state::matches);
  CHECK(item.detail == "already on PATH: line 1 puts /Users/alice/.docker/bin on PATH");
  CHECK(fs.file_bytes("/Users/alice/.zshrc") == std::optional<std::string>(mine));
  ShellProfilePathEdit insist{docker_bin};
  insist.insist = true;
  REQUIRE(converge(ctx, insist));
  CHECK(fs.file_bytes("/Users/alice/.zshrc") == std::optional<std::string>(mine + block_for(shell_dialect::zsh)));
}

TEST_CASE("root installing for a user writes as the user: the created file is the user's") {
  MemoryFs fs = mac_tree();
  RootFor priv(alice("/bin/bash"));
  context ctx(fs, priv, app);
  auto report = converge(ctx, ShellProfilePathEdit{docker_bin});
  REQUIRE(report);
  CHECK(report->ok());
  auto st = fs.status_of("/Users/alice/.profile");
  REQUIRE(st);
  CHECK(st->uid == 501);
  CHECK(st->gid == 20);
  CHECK(fs.status_of(user_record_path)->uid == 501);
  // Every write succeeded as the user: no EPERM from a root-owned leftover, nothing root-owned made.
  for (const auto& op : fs.op_log())
    if (op.mutating) CHECK(op.error == 0);
  for (const auto& entry : fs.take_snapshot().entries)
    if (entry.first.rfind("/Users/alice/", 0) == 0) CHECK(entry.second.uid == 501);
}

TEST_CASE("an editor saving between probe and apply: both edits kept, never overwritten") {
  MemoryFs fs = mac_tree();
  fs.add_file("/Users/alice/.zshrc", "export A=1\n", 0644, 501, 20);
  ScriptedPrivilege priv(alice(), answer::declined);
  context ctx(fs, priv, app);
  ShellProfilePathEdit edit{docker_bin};
  ledgers books;
  auto probed = edit.probe(ctx, books);
  REQUIRE(probed);
  auto p = edit.make_plan(*probed);
  REQUIRE(p.changes.size() == 1);
  fs.add_file("/Users/alice/.zshrc", "export A=2\n", 0644, 501, 20);  // the editor saves
  auto applied = edit.apply(ctx, p, grant{}, books);
  // The edit is recomputed from the bytes read under the lock: the editor's line stays, ours is added.
  REQUIRE(applied.events.size() == 1);
  CHECK(applied.events[0].kind == event_kind::changed);
  CHECK(fs.file_bytes("/Users/alice/.zshrc") ==
        std::optional<std::string>("export A=2\n" + block_for(shell_dialect::zsh)));
  CHECK(books.user.find("profile:/Users/alice/.zshrc"));
}

TEST_CASE("uninstall reports a block the user changed and leaves it; an outdated block is rewritten in place") {
  MemoryFs fs = mac_tree();
  fs.add_file("/Users/alice/.zshrc", "export A=1\n", 0644, 501, 20);
  ScriptedPrivilege priv(alice(), answer::declined);
  context ctx(fs, priv, app);
  ShellProfilePathEdit old_dir{"/Users/alice/.old/bin"};
  REQUIRE(converge(ctx, old_dir));
  // A new version moves the directory: the block is rewritten where it is, not duplicated.
  ShellProfilePathEdit edit{docker_bin};
  auto moved = converge(ctx, edit);
  REQUIRE(moved);
  CHECK(only_step(*moved).planned.changes.size() == 1);
  CHECK(only_step(*moved).planned.changes[0].kind == change_kind::modify);
  CHECK(fs.file_bytes("/Users/alice/.zshrc") ==
        std::optional<std::string>("export A=1\n" + block_for(shell_dialect::zsh)));

  std::string changed = *fs.file_bytes("/Users/alice/.zshrc");
  changed.replace(changed.find("export PATH"), 6, "EXPORT");
  fs.add_file("/Users/alice/.zshrc", changed, 0644, 501, 20);
  auto removed = uninstall(ctx, edit);
  REQUIRE(removed);
  bool reported = false;
  for (const auto& s : removed->steps)
    for (const auto& e : s.applied.events)
      if (e.kind == event_kind::skipped && e.failure && e.failure->is(errc::drifted)) reported = true;
  CHECK(reported);
  CHECK(fs.file_bytes("/Users/alice/.zshrc") == std::optional<std::string>(changed));
}

TEST_CASE("an adopted older block (a legacy format) rewritten twice is still restored by uninstall") {
  MemoryFs fs = mac_tree();
  // A block an older version wrote, with an older marker version: adopted and rewritten in place.
  std::string legacy = *render_path_block({app, "/Users/alice/.legacy/bin", "/Users/alice", shell_dialect::zsh,
                                           std::nullopt});
  legacy.replace(legacy.find(" v1 >>>"), 7, " v0 >>>");
  const std::string original = "export A=1\n" + legacy + "export B=2\n";
  fs.add_file("/Users/alice/.zshrc", original, 0644, 501, 20);
  ScriptedPrivilege priv(alice(), answer::declined);
  context ctx(fs, priv, app);
  REQUIRE(converge(ctx, ShellProfilePathEdit{"/Users/alice/.old/bin"}));
  REQUIRE(converge(ctx, ShellProfilePathEdit{docker_bin}));
  CHECK(fs.file_bytes("/Users/alice/.zshrc") ==
        std::optional<std::string>("export A=1\n" + block_for(shell_dialect::zsh) + "export B=2\n"));
  REQUIRE(uninstall(ctx, ShellProfilePathEdit{docker_bin}));
  CHECK(fs.file_bytes("/Users/alice/.zshrc") == std::optional<std::string>(original));
}

TEST_CASE("an unknown login shell fails the probe with the shell's name; an override works") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(alice("/usr/bin/nu"), answer::declined);
  context ctx(fs, priv, app);
  auto report = converge(ctx, ShellProfilePathEdit{docker_bin});
  REQUIRE(report);
  REQUIRE(only_step(*report).failure);
  CHECK(only_step(*report).failure->is(errc::unsupported));
  CHECK(only_step(*report).failure->message().find("'nu'") != std::string::npos);
  ShellProfilePathEdit edit{docker_bin};
  edit.shell_override = "tcsh";
  REQUIRE(converge(ctx, edit));
  CHECK(fs.file_bytes("/Users/alice/.tcshrc") == std::optional<std::string>(block_for(shell_dialect::csh)));
}

TEST_CASE("crash-and-error sweep: every operation index, crash and fail, once and persistent") {
  auto make_tree = [] {
    MemoryFs fs = mac_tree();
    fs.add_file("/Users/alice/.bash_profile", "export A=1\n", 0644, 501, 20);
    return fs;
  };
  const std::string with_block = "export A=1\n" + block_for(shell_dialect::posix);
  ShellProfilePathEdit edit{docker_bin};
  std::size_t total_ops = 0;
  {
    MemoryFs fs = make_tree();
    ScriptedPrivilege priv(alice("/bin/bash"), answer::declined);
    context ctx(fs, priv, app);
    fs.clear_log();
    REQUIRE(converge(ctx, edit));
    total_ops = fs.op_count();
  }
  REQUIRE(total_ops > 5);
  auto check_wholly_old_or_new = [&](const MemoryFs& fs) {
    auto bytes = fs.file_bytes("/Users/alice/.bash_profile");
    REQUIRE(bytes);
    CHECK((*bytes == "export A=1\n" || *bytes == with_block));
  };
  auto rerun_converges_and_reverts = [&](MemoryFs& fs) {
    ScriptedPrivilege priv(alice("/bin/bash"), answer::declined);
    context ctx(fs, priv, app);
    auto again = converge(ctx, edit);
    REQUIRE(again);
    CHECK(again->ok());
    CHECK(again->out_of_sync.empty());
    CHECK(fs.file_bytes("/Users/alice/.bash_profile") == std::optional<std::string>(with_block));
    auto removed = uninstall(ctx, edit);
    REQUIRE(removed);
    CHECK(removed->ok());
    CHECK(fs.file_bytes("/Users/alice/.bash_profile") == std::optional<std::string>("export A=1\n"));
    if (auto names = fs.list_dir(actor::root(), "/Users/alice"))
      for (const auto& name : *names) CHECK(name.find(".hostcfg-") == std::string::npos);
  };
  std::size_t points = 0;
  for (std::size_t k = 1; k <= total_ops; ++k) {
    for (auto keep : {MemoryFs::crash_keep::none, MemoryFs::crash_keep::all, MemoryFs::crash_keep::random_subset}) {
      for (std::uint64_t seed = 0; seed < (keep == MemoryFs::crash_keep::random_subset ? 3u : 1u); ++seed) {
        MemoryFs fs = make_tree();
        ScriptedPrivilege priv(alice("/bin/bash"), answer::declined);
        context ctx(fs, priv, app);
        fs.clear_log();
        fs.crash_after(k);
        (void)converge(ctx, edit);
        MemoryFs rebooted = fs.after_crash(keep, seed);
        check_wholly_old_or_new(rebooted);
        rerun_converges_and_reverts(rebooted);
        ++points;
      }
    }
    for (bool persistent : {false, true}) {
      MemoryFs fs = make_tree();
      ScriptedPrivilege priv(alice("/bin/bash"), answer::declined);
      context ctx(fs, priv, app);
      fs.clear_log();
      fs.fail_at(k, EIO, persistent);
      (void)converge(ctx, edit);
      check_wholly_old_or_new(fs);
      fs.disarm();
      rerun_converges_and_reverts(fs);
      ++points;
    }
  }
  MESSAGE("shell_profile_path_edit sweep: " << total_ops << " operations, " << points << " points swept");
  CHECK(points == total_ops * 7);
}

TEST_CASE("a new file in directories hostcfg must make: uninstall straight after a crash at any point gives the tree back") {
  // fish with its conf.d missing: the directories are recorded ahead of their mkdir, so no crash
  // point leaves a directory that no record names (an uninstall that follows removes it).
  auto user = alice("/opt/homebrew/bin/fish");
  user.xdg_config_home = "/Users/alice/xdg";
  ShellProfilePathEdit edit{docker_bin};
  {
    MemoryFs fs = mac_tree();
    ScriptedPrivilege priv(user, answer::declined);
    context ctx(fs, priv, app);
    fs.clear_log();
    REQUIRE(converge(ctx, edit));
    std::vector<std::string> made;
    for (const auto& op : fs.op_log())
      if (op.op == "mkdir" && op.path.rfind("/Users/alice/xdg", 0) == 0) made.push_back(op.path);
    REQUIRE(made == std::vector<std::string>{"/Users/alice/xdg", "/Users/alice/xdg/fish", "/Users/alice/xdg/fish/conf.d"});
  }
  auto run = [&](bool undo) {
    return [&user, &edit, undo](MemoryFs& fs) -> result<converge_report> {
      ScriptedPrivilege priv(user, answer::declined);
      context ctx(fs, priv, app);
      return undo ? uninstall(ctx, edit) : converge(ctx, edit);
    };
  };
  testing::crash_sweep_options options;
  // The record and its own directories (~/.local/state/hostcfg) are not judged: a crash before
  // the first record write is durable leaves those directories empty (README: Status).
  options.ignore = [](const std::string& path) { return path.rfind("/Users/alice/.local", 0) == 0; };
  options.uninstall = run(true);
  auto report = testing::crash_sweep("fish conf.d, then uninstall", mac_tree(), run(false), options);
  MESSAGE(report.text());
  CHECK(report.ok());
  CHECK(report.points > 100);
}
