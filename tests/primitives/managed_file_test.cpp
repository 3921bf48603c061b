// ManagedFile through the whole protocol on MemoryFs: probe states, one prompt, the decision
// table, records, revert, dry run, fallback, and the crash-and-error sweep.
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/backend/overlay_fs.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/primitives/managed_file.hpp>
#include <hostcfg/testing/crash_sweep.hpp>

#include <cstdio>

#include "support/handoff_privilege.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

user_identity mac_user() {
  return user_identity{501, 20, {20, 12, 61, 80}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
}

// A macOS-like tree: /usr/local/bin root:wheel 0755, the user's home 501:20 0750.
MemoryFs mac_tree() {
  MemoryFs fs;
  fs.add_dir("/usr/local/bin", 0755, 0, 0);
  fs.add_dir("/etc", 0755, 0, 0);
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  return fs;
}

const char* app = "com.example.app";

}  // namespace

TEST_CASE("a file in the user's own directory is created as the user without a prompt") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::declined);
  context ctx(fs, priv, app);
  ManagedFile conf{"/Users/alice/.app/app.conf", "key = value\n", 0600};
  auto report = converge(ctx, conf);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 0);
  CHECK(fs.file_bytes("/Users/alice/.app/app.conf") == std::optional<std::string>("key = value\n"));
  auto st = fs.status_of("/Users/alice/.app/app.conf");
  REQUIRE(st);
  CHECK(st->mode == 0600);
  CHECK(st->uid == 501);
  CHECK(fs.status_of("/Users/alice/.app")->uid == 501);
  auto rec = fs.status_of("/Users/alice/.local/state/hostcfg/com.example.app.record");
  REQUIRE(rec);
  CHECK(rec->uid == 501);
  CHECK(rec->mode == 0600);
  CHECK(report->out_of_sync.empty());
  CHECK_FALSE(report->needs_user_action());
}

TEST_CASE("applying twice makes zero mutating operations and no prompt the second time") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  ManagedFile user_conf{"/Users/alice/.app.conf", "a\n", 0644};
  ManagedFile system_conf{"/etc/app.conf", "b\n", 0644};
  REQUIRE(converge(ctx, user_conf, system_conf));
  CHECK(priv.prompts() == 1);
  auto before = fs.take_snapshot();
  fs.clear_log();
  auto second = converge(ctx, user_conf, system_conf);
  REQUIRE(second);
  CHECK(fs.mutating_ops() == 0);
  CHECK(priv.prompts() == 1);
  CHECK(MemoryFs::diff(before, fs.take_snapshot()).empty());
  for (const auto& s : second->steps) CHECK(s.planned.empty());
}

TEST_CASE("a root-owned directory needs one prompt listing every change; granted writes as root") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  ManagedFile a{"/etc/a.conf", "a\n", 0644};
  ManagedFile b{"/usr/local/bin/b.conf", "b\n", 0644};
  auto report = converge(ctx, a, b);
  REQUIRE(report);
  CHECK(priv.prompts() == 1);
  REQUIRE(priv.requests().size() == 1);
  const auto& changes = priv.requests()[0].changes;
  REQUIRE(changes.size() == 2);
  CHECK(changes[0].find("/etc/a.conf") != std::string::npos);
  CHECK(changes[1].find("/usr/local/bin/b.conf") != std::string::npos);
  CHECK(fs.status_of("/etc/a.conf")->uid == 0);
  // Undo data of privileged items lives in the root-owned record only.
  auto sys = fs.status_of("/var/lib/hostcfg/com.example.app.record");
  REQUIRE(sys);
  CHECK(sys->uid == 0);
  CHECK(sys->mode == 0644);
  auto sys_bytes = *fs.file_bytes("/var/lib/hostcfg/com.example.app.record");
  CHECK(sys_bytes.find("file:/etc/a.conf") != std::string::npos);
  CHECK_FALSE(fs.status_of("/Users/alice/.local/state/hostcfg/com.example.app.record"));
}

TEST_CASE("decision table: declined is recorded and not asked again; re-prompt asks") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), std::vector<answer>{answer::declined, answer::granted});
  context ctx(fs, priv, app);
  ManagedFile sys{"/etc/a.conf", "a\n", 0644};
  auto first = converge(ctx, sys);
  REQUIRE(first);
  CHECK(priv.prompts() == 1);
  CHECK_FALSE(fs.status_of("/etc/a.conf"));
  REQUIRE(first->steps.size() == 1);
  REQUIRE(first->steps[0].applied.events.size() == 1);
  CHECK(first->steps[0].applied.events[0].kind == event_kind::skipped);
  CHECK(first->steps[0].applied.events[0].message.find("declined") != std::string::npos);
  auto user_record = fs.file_bytes("/Users/alice/.local/state/hostcfg/com.example.app.record");
  REQUIRE(user_record);
  CHECK(user_record->find("declined") != std::string::npos);

  fs.clear_log();
  auto second = converge(ctx, sys);
  REQUIRE(second);
  CHECK(priv.prompts() == 1);
  CHECK(fs.mutating_ops() == 0);
  CHECK(second->steps[0].applied.events[0].message.find("recorded decision") != std::string::npos);

  ctx.policy.reprompt = true;
  auto third = converge(ctx, sys);
  REQUIRE(third);
  CHECK(priv.prompts() == 2);
  CHECK(fs.file_bytes("/etc/a.conf") == std::optional<std::string>("a\n"));
  // Granted erases the standing decision: the user's record then holds nothing and is removed.
  auto user_after = fs.file_bytes("/Users/alice/.local/state/hostcfg/com.example.app.record");
  CHECK((!user_after || user_after->find("declined") == std::string::npos));
  CHECK_FALSE(user_after);
}

TEST_CASE("decision table: cancelled is recorded as cancelled, timed out is not recorded") {
  MemoryFs fs = mac_tree();
  ManagedFile sys{"/etc/a.conf", "a\n", 0644};
  {
    ScriptedPrivilege priv(mac_user(), answer::cancelled);
    context ctx(fs, priv, app);
    REQUIRE(converge(ctx, sys));
    auto rec = fs.file_bytes("/Users/alice/.local/state/hostcfg/com.example.app.record");
    REQUIRE(rec);
    CHECK(rec->find("answer cancelled") != std::string::npos);
    REQUIRE(converge(ctx, sys));
    CHECK(priv.prompts() == 1);
  }
  MemoryFs fresh = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::timed_out);
  context ctx(fresh, priv, app);
  REQUIRE(converge(ctx, sys));
  REQUIRE(converge(ctx, sys));
  CHECK(priv.prompts() == 2);
  CHECK_FALSE(fresh.status_of("/Users/alice/.local/state/hostcfg/com.example.app.record"));
}

TEST_CASE("decision table: unavailable stands until the user's groups change") {
  MemoryFs fs = mac_tree();
  ManagedFile sys{"/etc/a.conf", "a\n", 0644};
  Unprivileged plain(mac_user());
  context ctx(fs, plain, app);
  auto first = converge(ctx, sys);
  REQUIRE(first);
  CHECK(first->prompt_answer == answer::unavailable);
  auto second = converge(ctx, sys);
  REQUIRE(second);
  CHECK(second->prompts_shown == 0);
  user_identity promoted = mac_user();
  promoted.groups.push_back(0);
  ScriptedPrivilege admin(promoted, answer::granted);
  context ctx2(fs, admin, app);
  REQUIRE(converge(ctx2, sys));
  CHECK(admin.prompts() == 1);
  CHECK(fs.file_bytes("/etc/a.conf") == std::optional<std::string>("a\n"));
}

TEST_CASE("a foreign file is a conflict left alone; take_over replaces it and revert restores it") {
  MemoryFs fs = mac_tree();
  fs.add_file("/Users/alice/app.conf", "mine\r\nkeep me", 0640, 501, 20);
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  ManagedFile conf{"/Users/alice/app.conf", "ours\n", 0644};
  auto report = converge(ctx, conf);
  REQUIRE(report);
  CHECK(report->steps[0].before.items[0].state == item_state::conflict);
  CHECK(fs.file_bytes("/Users/alice/app.conf") == std::optional<std::string>("mine\r\nkeep me"));
  CHECK(report->out_of_sync.size() == 1);
  REQUIRE(report->notes.size() == 1);
  CHECK(report->notes[0].find("/Users/alice/app.conf: conflict, left alone: a file hostcfg did not create") == 0);
  CHECK(report->needs_user_action());

  auto before = fs.take_snapshot();
  conf.take_over = true;
  REQUIRE(converge(ctx, conf));
  CHECK(fs.file_bytes("/Users/alice/app.conf") == std::optional<std::string>("ours\n"));
  CHECK(fs.status_of("/Users/alice/app.conf")->mode == 0644);
  auto undone = uninstall(ctx, conf);
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(MemoryFs::diff(before, fs.take_snapshot()).empty());
}

TEST_CASE("a record whose original_mode is not a mode: uninstall reports it and leaves the file, never throws") {
  for (std::string bad : {"x", "", "-1", "99999999999999999999", "4096"}) {
    CAPTURE(bad);
    MemoryFs fs = mac_tree();
    fs.add_file("/Users/alice/app.conf", "mine\n", 0600, 501, 20);
    ScriptedPrivilege priv(mac_user(), answer::granted);
    context ctx(fs, priv, app);
    ManagedFile conf{"/Users/alice/app.conf", "ours\n", 0644};
    conf.take_over = true;
    REQUIRE(converge(ctx, conf));
    hostcfg_test::rewrite_record_line(fs, "/Users/alice/.local/state/hostcfg/com.example.app.record",
                                      "field original_mode 384", "field original_mode " + bad, 501, 20);
    auto undone = uninstall(ctx, conf);
    REQUIRE(undone);
    CHECK_FALSE(undone->ok());
    REQUIRE(undone->steps[0].applied.events.size() == 1);
    const auto& e = undone->steps[0].applied.events[0];
    REQUIRE(e.failure);
    CHECK(e.failure->is(errc::corrupt_record));
    CHECK(e.failure->message().find("original_mode is not a file mode") != std::string::npos);
    CHECK(fs.file_bytes("/Users/alice/app.conf") == std::optional<std::string>("ours\n"));
  }
}

TEST_CASE("record_item::number reads decimal fields no larger than the limit, never throwing") {
  record_item item{"id", "p", {{"mode", "420"}, {"big", "18446744073709551615"}, {"huge", "18446744073709551616"},
                               {"sign", "+1"}, {"empty", ""}, {"space", " 1"}}};
  CHECK(item.number("mode", 07777) == std::optional<unsigned long>(420));
  CHECK_FALSE(item.number("mode", 419));
  CHECK(item.number("big", ~0UL) == std::optional<unsigned long>(~0UL));
  CHECK_FALSE(item.number("huge", ~0UL));
  CHECK_FALSE(item.number("sign", 10));
  CHECK_FALSE(item.number("empty", 10));
  CHECK_FALSE(item.number("space", 10));
  CHECK_FALSE(item.number("missing", 10));
  CHECK(record_item::parse_decimal("0", 0) == std::optional<unsigned long>(0));
  CHECK_FALSE(record_item::parse_decimal("5", 0));  // a digit above the limit (no unsigned wrap)
  CHECK(record_item::parse_decimal("4294967294", 4294967294UL) == std::optional<unsigned long>(4294967294UL));
  CHECK_FALSE(record_item::parse_decimal("4294967295", 4294967294UL));
}

TEST_CASE("a change whose directory sync fails is kept and named in the report as maybe lost on a power failure") {
  auto tree = [] {
    MemoryFs fs = mac_tree();
    fs.add_file("/Users/alice/app.conf", "old\n", 0644, 501, 20);
    return fs;
  };
  ManagedFile conf{"/Users/alice/app.conf", "new\n", 0644};
  conf.take_over = true;
  std::size_t fsync_dir = 0;  // the index (1-based) of the file's directory sync in a clean run
  {
    MemoryFs fs = tree();
    ScriptedPrivilege priv(mac_user(), answer::granted);
    context ctx(fs, priv, app);
    fs.clear_log();
    auto clean = converge(ctx, conf);
    REQUIRE(clean);
    CHECK(clean->notes.empty());
    for (std::size_t i = 0; i < fs.op_log().size() && fsync_dir == 0; ++i)
      if (fs.op_log()[i].op.find("fsync_dir") != std::string::npos && fs.op_log()[i].path == "/Users/alice")
        fsync_dir = i + 1;
    REQUIRE(fsync_dir > 0);
  }
  MemoryFs fs = tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  fs.clear_log();
  fs.fail_at(fsync_dir, EIO);
  auto report = converge(ctx, conf);
  REQUIRE(report);
  CHECK(fs.file_bytes("/Users/alice/app.conf") == std::optional<std::string>("new\n"));
  REQUIRE(report->notes.size() == 1);
  CHECK(report->notes[0] ==
        "/Users/alice/app.conf: changed, but its directory could not be synced: the change may be lost on a power "
        "failure; run again to make sure");
  CHECK(ctx.not_durable.empty());  // moved into the report
  fs.disarm();
  auto again = converge(ctx, conf);  // the next run reports only its own
  REQUIRE(again);
  CHECK(again->notes.empty());
}

TEST_CASE("uninstall after install gives back the original tree, records included") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  ManagedFile user_conf{"/Users/alice/.config/app/app.conf", "a\n", 0644};
  ManagedFile sys_conf{"/etc/app/app.conf", "b\n", 0644};
  auto before = fs.take_snapshot();
  REQUIRE(converge(ctx, user_conf, sys_conf));
  CHECK_FALSE(MemoryFs::diff(before, fs.take_snapshot()).empty());
  auto undone = uninstall(ctx, user_conf, sys_conf);
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(priv.prompts() == 2);  // install + uninstall of the privileged file
  HOSTCFG_CHECK_NO_DIFF(MemoryFs::diff(before, fs.take_snapshot()), "");
}

TEST_CASE("record_ahead: the original bytes are in the record before the file is replaced") {
  MemoryFs fs = mac_tree();
  fs.add_file("/etc/app.conf", "theirs\n", 0640, 0, 0);
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  ManagedFile conf{"/etc/app.conf", "ours\n", 0644};
  conf.take_over = true;
  // The run dies right after the rename into /etc/app.conf: only the item written ahead can still
  // hold the original bytes (the run's own store at its end never happens).
  std::size_t replace_at = 0;
  {
    MemoryFs probe_fs = fs;
    ScriptedPrivilege p2(mac_user(), answer::granted);
    context c2(probe_fs, p2, app);
    probe_fs.clear_log();
    REQUIRE(converge(c2, conf));
    const auto& log = probe_fs.op_log();
    for (std::size_t i = 0; i < log.size() && !replace_at; ++i)
      if (log[i].op == "replace_file:rename" && log[i].path2 == "/etc/app.conf") replace_at = i + 1;
  }
  REQUIRE(replace_at > 0);
  fs.clear_log();
  fs.crash_after(replace_at);  // the rename into /etc/app.conf is the last operation that happens
  (void)converge(ctx, conf);
  MemoryFs rebooted = fs.after_crash(MemoryFs::crash_keep::all, 0);
  REQUIRE(rebooted.file_bytes("/etc/app.conf") == std::optional<std::string>("ours\n"));
  // A later uninstall (no converge between) restores the original bytes and mode from the
  // item written ahead.
  ScriptedPrivilege priv2(mac_user(), answer::granted);
  context ctx2(rebooted, priv2, app);
  auto undone = uninstall(ctx2, conf);
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(rebooted.file_bytes("/etc/app.conf") == std::optional<std::string>("theirs\n"));
  CHECK(rebooted.status_of("/etc/app.conf")->mode == 0640);
}

TEST_CASE("record_ahead: a change that fails after the rename keeps the item written ahead, so uninstall still restores") {
  // An update of a file already ours (A -> B): the replace lands, then the lstat after it fails.
  // The record must say B (written ahead), not go back to A, or uninstall would call it drifted.
  auto tree = [] {
    MemoryFs fs = mac_tree();
    fs.add_file("/etc/app.conf", "theirs\n", 0644, 0, 0);
    return fs;
  };
  ManagedFile v1{"/etc/app.conf", "A\n", 0644};
  v1.take_over = true;
  ManagedFile v2 = v1;
  v2.content = "B\n";
  std::size_t lstat_after = 0;
  {
    MemoryFs fs = tree();
    ScriptedPrivilege priv(mac_user(), answer::granted);
    context ctx(fs, priv, app);
    REQUIRE(converge(ctx, v1));
    fs.clear_log();
    REQUIRE(converge(ctx, v2));
    bool renamed = false;
    for (std::size_t i = 0; i < fs.op_log().size() && !lstat_after; ++i) {
      const auto& op = fs.op_log()[i];
      if (op.op == "replace_file:rename" && op.path2 == "/etc/app.conf") renamed = true;
      if (renamed && op.op == "lstat" && op.path == "/etc/app.conf") lstat_after = i + 1;
    }
  }
  REQUIRE(lstat_after > 0);
  MemoryFs fs = tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  REQUIRE(converge(ctx, v1));
  fs.clear_log();
  fs.fail_at(lstat_after, EIO);
  auto failed = converge(ctx, v2);
  fs.disarm();
  REQUIRE(failed);
  CHECK_FALSE(failed->ok());
  CHECK(fs.file_bytes("/etc/app.conf") == std::optional<std::string>("B\n"));
  auto rec = parse_record(*fs.file_bytes(ctx.system_record.path), "r");
  REQUIRE(rec);
  REQUIRE(rec->find("file:/etc/app.conf"));
  CHECK(rec->find("file:/etc/app.conf")->get("written") == "B\n");
  CHECK(rec->find("file:/etc/app.conf")->get("was_written") == "A\n");
  auto undone = uninstall(ctx, v2);
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(fs.file_bytes("/etc/app.conf") == std::optional<std::string>("theirs\n"));
}

TEST_CASE("record_ahead: a record whose directory sync fails stops the change; the item is withdrawn; a re-run converges") {
  auto tree = [] {
    MemoryFs fs = mac_tree();
    fs.add_file("/etc/app.conf", "theirs\n", 0640, 0, 0);
    return fs;
  };
  ManagedFile conf{"/etc/app.conf", "ours\n", 0644};
  conf.take_over = true;
  // Find the directory fsync of the first record store (the write-ahead, before the file changes).
  std::size_t record_sync_at = 0;
  std::string record_dir;
  {
    MemoryFs fs = tree();
    ScriptedPrivilege priv(mac_user(), answer::granted);
    context ctx(fs, priv, app);
    record_dir = parent_path(ctx.system_record.path);
    fs.clear_log();
    REQUIRE(converge(ctx, conf));
    bool published = false;  // a new record directory appears by a rename, then its parent's sync
    for (std::size_t i = 0; i < fs.op_log().size() && !record_sync_at; ++i) {
      const auto& op = fs.op_log()[i];
      if (op.op == "replace_file:fsync_dir" && op.path == record_dir) record_sync_at = i + 1;
      if (op.op == "rename" && op.path2 == record_dir) published = true;
      if (published && op.op == "sync_dir" && op.path == parent_path(record_dir)) record_sync_at = i + 1;
      if (op.op == "replace_file:rename" && op.path2 == "/etc/app.conf") break;  // too late: not ahead
    }
  }
  REQUIRE(record_sync_at > 0);
  MemoryFs fs = tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  fs.clear_log();
  fs.fail_at(record_sync_at, EIO);
  auto stopped = converge(ctx, conf);
  fs.disarm();
  REQUIRE(stopped);
  CHECK_FALSE(stopped->ok());
  // The change was not made, and the report says why.
  CHECK(fs.file_bytes("/etc/app.conf") == std::optional<std::string>("theirs\n"));
  bool named = false;
  for (const auto& step : stopped->steps)
    for (const auto& e : step.applied.events)
      named = named || (e.failure && e.failure->is(errc::not_durable) &&
                        e.message.find("its directory could not be synced") != std::string::npos);
  CHECK(named);
  // The item written ahead was withdrawn by the run's final store: nothing claims the file.
  if (auto bytes = fs.file_bytes(ctx.system_record.path)) {
    auto rec = parse_record(*bytes, "r");
    REQUIRE(rec);
    CHECK_FALSE(rec->find("file:/etc/app.conf"));
  }
  // A re-run converges; uninstall gives the user's file back.
  auto again = converge(ctx, conf);
  REQUIRE(again);
  CHECK(again->ok());
  CHECK(fs.file_bytes("/etc/app.conf") == std::optional<std::string>("ours\n"));
  auto undone = uninstall(ctx, conf);
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(fs.file_bytes("/etc/app.conf") == std::optional<std::string>("theirs\n"));
  CHECK(fs.status_of("/etc/app.conf")->mode == 0640);
}

TEST_CASE("record_ahead: an item written ahead of a create that never happened does not make a later file ours") {
  ManagedFile conf{"/Users/alice/app.conf", "ours\n", 0644};
  MemoryFs before = mac_tree();
  std::size_t create_at = 0;
  {
    MemoryFs fs = before;
    ScriptedPrivilege priv(mac_user(), answer::granted);
    context ctx(fs, priv, app);
    fs.clear_log();
    REQUIRE(converge(ctx, conf));
    for (std::size_t i = 0; i < fs.op_log().size() && !create_at; ++i)
      if (fs.op_log()[i].op == "replace_file" && fs.op_log()[i].path == "/Users/alice/app.conf") create_at = i;
  }
  REQUIRE(create_at > 0);
  MemoryFs fs = before;
  {
    ScriptedPrivilege priv(mac_user(), answer::granted);
    context ctx(fs, priv, app);
    fs.clear_log();
    fs.crash_after(create_at);  // the item is written ahead; the file is never written
    (void)converge(ctx, conf);
  }
  MemoryFs rebooted = fs.after_crash(MemoryFs::crash_keep::all);
  REQUIRE_FALSE(rebooted.file_bytes("/Users/alice/app.conf"));
  rebooted.add_file("/Users/alice/app.conf", "the user's own\n", 0644, 501, 20);  // made meanwhile
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(rebooted, priv, app);
  auto again = converge(ctx, conf);  // no take_over: the user's file is a conflict, left alone
  REQUIRE(again);
  REQUIRE(again->steps.at(0).before.items.size() == 1);
  CHECK(again->steps[0].before.items[0].state == item_state::conflict);
  CHECK(rebooted.file_bytes("/Users/alice/app.conf") == std::optional<std::string>("the user's own\n"));
  auto undone = uninstall(ctx, conf);  // and uninstall does not remove it
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(rebooted.file_bytes("/Users/alice/app.conf") == std::optional<std::string>("the user's own\n"));
}

TEST_CASE("record_ahead writes nothing in a dry run, nothing twice, and never the user's record in a runner") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  ledgers books{record{app, {}}, record{app, {}}};
  record_item item{"file:/x", "file", {{"written", "a"}}};
  ctx.policy.dry_run = true;
  REQUIRE(ctx.record_ahead(books, true, {item}));
  CHECK_FALSE(fs.file_bytes(ctx.system_record.path));
  ctx.policy.dry_run = false;
  REQUIRE(ctx.record_ahead(books, true, {item}));
  REQUIRE(fs.file_bytes(ctx.system_record.path));
  CHECK(parse_record(*fs.file_bytes(ctx.system_record.path), "r")->find("file:/x")->get("written") == "a");
  REQUIRE(ctx.recorded_ahead.size() == 1);
  fs.clear_log();
  REQUIRE(ctx.record_ahead(books, true, {item}));  // the same item again: already in the file
  CHECK(fs.mutating_ops() == 0);
  ctx.read_user_record = false;  // as in the elevated runner: the user's record is not its to write
  REQUIRE(ctx.record_ahead(books, false, {item}));
  CHECK_FALSE(fs.file_bytes(ctx.user_record.path));
  // books already holding the item: nothing to write ahead.
  ctx.read_user_record = true;
  ctx.recorded_ahead.clear();
  books.user.put(item);
  REQUIRE(ctx.record_ahead(books, false, {item}));
  CHECK_FALSE(fs.file_bytes(ctx.user_record.path));
}

TEST_CASE("revert refuses a file that drifted and says so") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  ManagedFile conf{"/Users/alice/app.conf", "ours\n", 0644};
  REQUIRE(converge(ctx, conf));
  fs.add_file("/Users/alice/app.conf", "user edited\n", 0644, 501, 20);
  auto undone = uninstall(ctx, conf);
  REQUIRE(undone);
  REQUIRE(undone->steps[0].applied.events.size() == 1);
  const auto& e = undone->steps[0].applied.events[0];
  CHECK(e.kind == event_kind::skipped);
  REQUIRE(e.failure);
  CHECK(e.failure->is(errc::drifted));
  CHECK(fs.file_bytes("/Users/alice/app.conf") == std::optional<std::string>("user edited\n"));
}

TEST_CASE("apply re-checks the probed version: a change in between is 'changed since probe'") {
  MemoryFs fs = mac_tree();
  fs.add_file("/Users/alice/app.conf", "old\n", 0644, 501, 20);
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  ManagedFile conf{"/Users/alice/app.conf", "new\n", 0644};
  conf.take_over = true;
  ledgers books;
  auto probed = conf.probe(ctx, books);
  REQUIRE(probed);
  auto p = conf.make_plan(*probed);
  REQUIRE(p.changes.size() == 1);
  fs.add_file("/Users/alice/app.conf", "editor saved this\n", 0644, 501, 20);
  auto applied = conf.apply(ctx, p, grant{}, books);
  REQUIRE(applied.events.size() == 1);
  CHECK(applied.events[0].kind == event_kind::failed);
  CHECK(applied.events[0].failure->is(errc::changed_since_probe));
  CHECK(fs.file_bytes("/Users/alice/app.conf") == std::optional<std::string>("editor saved this\n"));
}

TEST_CASE("fallback: a declined primary applies the alternative; a later grant retires it") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), std::vector<answer>{answer::declined, answer::granted});
  context ctx(fs, priv, app);
  ManagedFile primary{"/etc/app.conf", "x\n", 0644};
  ManagedFile alternative{"/Users/alice/.app.conf", "x\n", 0644};
  auto first = converge(ctx, fallback(primary, alternative));
  REQUIRE(first);
  CHECK(fs.file_bytes("/Users/alice/.app.conf") == std::optional<std::string>("x\n"));
  CHECK_FALSE(fs.status_of("/etc/app.conf"));
  REQUIRE(first->steps.size() == 2);
  CHECK(first->steps[1].is_fallback);
  CHECK(first->needs_user_action());

  fs.clear_log();
  auto again = converge(ctx, fallback(primary, alternative));
  REQUIRE(again);
  CHECK(priv.prompts() == 1);
  CHECK(fs.mutating_ops() == 0);

  ctx.policy.reprompt = true;
  auto moved = converge(ctx, fallback(primary, alternative));
  REQUIRE(moved);
  CHECK(priv.prompts() == 2);
  CHECK(fs.file_bytes("/etc/app.conf") == std::optional<std::string>("x\n"));
  CHECK_FALSE(fs.status_of("/Users/alice/.app.conf"));
}

TEST_CASE("a dry run against an overlay changes nothing below it, records included") {
  MemoryFs fs = mac_tree();
  auto before = fs.take_snapshot();
  OverlayFs<MemoryFs> overlay(fs);
  ScriptedPrivilege priv(mac_user(), answer::declined);
  context ctx(overlay, priv, app);
  ctx.policy.dry_run = true;
  ManagedFile sys{"/etc/app.conf", "x\n", 0644};
  ManagedFile user{"/Users/alice/app.conf", "y\n", 0644};
  auto report = converge(ctx, sys, user);
  REQUIRE(report);
  CHECK(priv.prompts() == 0);
  REQUIRE(report->prompt);
  CHECK(report->prompt->changes.size() == 1);
  CHECK(overlay.file_bytes("/etc/app.conf") == std::optional<std::string>("x\n"));
  CHECK(MemoryFs::diff(before, fs.take_snapshot()).empty());
}

TEST_CASE("events: a dry run says would_change, an item already as wanted says kept, the sink sees each") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  ManagedFile conf{"/Users/alice/app.conf", "x\n", 0644};
  {
    OverlayFs<MemoryFs> overlay(fs);
    context ctx(overlay, priv, app);
    ctx.policy.dry_run = true;
    std::vector<std::string> seen;
    ctx.on_event = [&](const std::string& step, const event& e) { seen.push_back(step + " " + event_kind_name(e.kind)); };
    auto dry = converge(ctx, conf);
    REQUIRE(dry);
    REQUIRE(dry->steps[0].applied.events.size() == 1);
    CHECK(dry->steps[0].applied.events[0].kind == event_kind::would_change);
    CHECK_FALSE(dry->steps[0].applied.changed());
    CHECK(seen == std::vector<std::string>{conf.id() + " would_change"});
    CHECK_FALSE(fs.status_of("/Users/alice/app.conf"));
  }
  context ctx(fs, priv, app);
  auto real = converge(ctx, conf);
  REQUIRE(real);
  REQUIRE(real->steps[0].applied.events.size() == 1);
  CHECK(real->steps[0].applied.events[0].kind == event_kind::changed);
  std::vector<std::string> seen;
  ctx.on_event = [&](const std::string& step, const event& e) { seen.push_back(step + " " + event_kind_name(e.kind)); };
  auto again = converge(ctx, conf);
  REQUIRE(again);
  REQUIRE(again->steps[0].applied.events.size() == 1);
  const event& kept = again->steps[0].applied.events[0];
  CHECK(kept.kind == event_kind::kept);
  CHECK(kept.path == "/Users/alice/app.conf");
  CHECK(kept.message == "already as wanted");
  CHECK(seen == std::vector<std::string>{conf.id() + " kept"});
}

TEST_CASE("records: round trip, corruption and newer versions are refused, never overwritten") {
  record r{app, {}};
  r.put(record_item{"file:/a b", "managed_file", {{"written", std::string("x\r\n\0%y\xff", 7)}}});
  auto text = serialize_record(r);
  auto back = parse_record(text);
  REQUIRE(back);
  CHECK(*back == r);
  CHECK(parse_record("garbage\n").error().is(errc::corrupt_record));
  CHECK(parse_record("hostcfg-record 1\nitem x\n").error().is(errc::corrupt_record));
  CHECK(parse_record("hostcfg-record 9\n").error().is(errc::newer_record));
  CHECK(parse_record("hostcfg-record 1\nitem x\nfield k %G1\nend\n").error().is(errc::corrupt_record));

  MemoryFs fs = mac_tree();
  fs.add_file("/Users/alice/.local/state/hostcfg/com.example.app.record", "not a record\n", 0600, 501, 20);
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  ManagedFile conf{"/Users/alice/app.conf", "x\n", 0644};
  auto report = converge(ctx, conf);
  REQUIRE_FALSE(report);
  CHECK(report.error().is(errc::corrupt_record));
  CHECK(report.error().message().find("com.example.app.record") != std::string::npos);
  CHECK(fs.file_bytes("/Users/alice/.local/state/hostcfg/com.example.app.record") ==
        std::optional<std::string>("not a record\n"));
  CHECK_FALSE(fs.status_of("/Users/alice/app.conf"));
}

TEST_CASE("records: format versions - 1 needs its app line, 0 is migrated to 1 on the next store, newer is left alone") {
  // Format 1 always has exactly one app line, before the items.
  CHECK(parse_record("hostcfg-record 1\nitem x\nend\n").error().is(errc::corrupt_record));
  CHECK(parse_record("hostcfg-record 1\napp a\napp b\n").error().is(errc::corrupt_record));
  CHECK(parse_record("hostcfg-record 1\napp a\nitem x\nend\napp b\n").error().is(errc::corrupt_record));
  // Format 0 (the pre-release draft) has none; an app line there is not format 0.
  CHECK(parse_record("hostcfg-record 0\napp a\n").error().is(errc::corrupt_record));
  auto v0 = parse_record("hostcfg-record 0\nitem a%20b\nprimitive p\nfield k v\nend\n");
  REQUIRE(v0);
  CHECK(v0->app_id.empty());
  REQUIRE(v0->find("a b"));
  CHECK(v0->find("a b")->get("k") == "v");
  auto newer = parse_record("hostcfg-record 2\napp a\n", "/r");
  REQUIRE_FALSE(newer);
  CHECK(newer.error().is(errc::newer_record));
  CHECK(newer.error().message().find("format 2") != std::string::npos);

  const std::string record_file = "/Users/alice/.local/state/hostcfg/com.example.app.record";
  // The old item's lines are the same in format 0 and 1: migration keeps them byte for byte.
  const std::string old_item =
      "item file:/Users/alice/old.conf\n"
      "primitive managed_file\n"
      "field created 1\n"
      "field dirs \n"
      "field mode 384\n"
      "field written old%0A\n"
      "end\n";
  const std::string v0_bytes = "hostcfg-record 0\n" + old_item;
  auto tree = [&] {
    MemoryFs fs = mac_tree();
    fs.add_dir("/Users/alice/.local", 0700, 501, 20);
    fs.add_dir("/Users/alice/.local/state", 0700, 501, 20);
    fs.add_dir("/Users/alice/.local/state/hostcfg", 0700, 501, 20);
    fs.add_file(record_file, v0_bytes, 0600, 501, 20);
    fs.add_file("/Users/alice/old.conf", "old\n", 0600, 501, 20);
    return fs;
  };
  ManagedFile old_conf{"/Users/alice/old.conf", "old\n", 0600};

  SUBCASE("a run with nothing to do reads format 0 and writes nothing") {
    MemoryFs fs = tree();
    ScriptedPrivilege priv(mac_user(), answer::declined);
    context ctx(fs, priv, app);
    fs.clear_log();
    auto report = converge(ctx, old_conf);
    REQUIRE(report);
    CHECK(report->ok());
    CHECK_FALSE(report->user_record_written);
    CHECK(fs.mutating_ops() == 0);
    CHECK(fs.file_bytes(record_file) == std::optional<std::string>(v0_bytes));
  }
  SUBCASE("the next store rewrites it as format 1, keeping the old item as ours") {
    MemoryFs fs = tree();
    ScriptedPrivilege priv(mac_user(), answer::declined);
    context ctx(fs, priv, app);
    auto report = converge(ctx, old_conf, ManagedFile{"/Users/alice/new.conf", "new\n", 0600});
    REQUIRE(report);
    CHECK(report->ok());
    CHECK(report->user_record_written);
    CHECK(fs.file_bytes(record_file) ==
          std::optional<std::string>("# hostcfg record: written by hostcfg, do not edit\n"
                                     "hostcfg-record 1\n"
                                     "app com.example.app\n"
                                     "item file:/Users/alice/new.conf\n"
                                     "primitive managed_file\n"
                                     "field created 1\n"
                                     "field dirs \n"
                                     "field mode 384\n"
                                     "field written new%0A\n"
                                     "end\n" +
                                     old_item));
    CHECK(fs.status_of(record_file)->mode == 0600);
    // The migrated item is still ours: uninstall removes the file the format 0 record names.
    auto undone = uninstall(ctx, old_conf, ManagedFile{"/Users/alice/new.conf", "new\n", 0600});
    REQUIRE(undone);
    CHECK(undone->ok());
    CHECK_FALSE(fs.status_of("/Users/alice/old.conf"));
    CHECK_FALSE(fs.status_of("/Users/alice/new.conf"));
    CHECK_FALSE(fs.status_of(record_file));
  }
  SUBCASE("a newer record stops the run and is neither overwritten nor dropped") {
    MemoryFs fs = tree();
    const std::string newer_bytes = "hostcfg-record 7\napp com.example.app\nwhatever the future holds\n";
    fs.add_file(record_file, newer_bytes, 0600, 501, 20);
    ScriptedPrivilege priv(mac_user(), answer::declined);
    context ctx(fs, priv, app);
    auto report = converge(ctx, ManagedFile{"/Users/alice/new.conf", "new\n", 0600});
    REQUIRE_FALSE(report);
    CHECK(report.error().is(errc::newer_record));
    CHECK(report.error().message().find(record_file) != std::string::npos);
    CHECK(fs.file_bytes(record_file) == std::optional<std::string>(newer_bytes));
    CHECK_FALSE(fs.status_of("/Users/alice/new.conf"));
    auto undone = uninstall(ctx, old_conf);
    REQUIRE_FALSE(undone);
    CHECK(undone.error().is(errc::newer_record));
    CHECK(fs.file_bytes(record_file) == std::optional<std::string>(newer_bytes));
    CHECK(fs.file_bytes("/Users/alice/old.conf") == std::optional<std::string>("old\n"));
  }
}

TEST_CASE("a privileged record the user could have written is refused") {
  MemoryFs fs = mac_tree();
  fs.add_file("/var/lib/hostcfg/com.example.app.record", "hostcfg-record 1\n", 0666, 0, 0);
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  auto report = converge(ctx, ManagedFile{"/etc/x", "x\n", 0644});
  REQUIRE_FALSE(report);
  CHECK(report.error().is(errc::unsafe_path));
}

TEST_CASE("crash-and-error sweep: every operation index, crash and fail, once and persistent") {
  // Modify an existing privileged file and create a new user file in one converge, through the
  // library's own harness (hostcfg/testing/crash_sweep.hpp), as an installer author would.
  MemoryFs before = mac_tree();
  before.add_file("/etc/app.conf", "old bytes\n", 0644, 0, 0);
  ManagedFile sys{"/etc/app.conf", "new bytes\n", 0644};
  sys.take_over = true;
  ManagedFile user{"/Users/alice/.app/app.conf", "user\n", 0600};
  testing::crash_sweep_options options;
  // The records' bookkeeping may differ after a recovery (the sweeps of tests/integration check
  // that no item is lost).
  options.ignore = [](const std::string& path) { return path.find("/hostcfg") != std::string::npos; };
  auto report = testing::crash_sweep(
      "managed_file sweep", before,
      [&](MemoryFs& fs) {
        ScriptedPrivilege priv(mac_user(), answer::granted);
        context ctx(fs, priv, app);
        return converge(ctx, sys, user);
      },
      options);
  MESSAGE(report.text());
  std::printf("%s", report.text().c_str());
  CHECK(report.ok());
  CHECK(report.operations > 5);
  CHECK(report.points == report.operations * 7);  // 3 crash modes + 2 seeds more, 2 faults
  CHECK(report.reported > 0);
}

TEST_CASE("crash_sweep reports a flow that is not atomic, naming the point") {
  // A "primitive" that rewrites a file in place (two writes, no rename): the harness must see the
  // torn state. Built from MemoryFs operations directly.
  MemoryFs before = mac_tree();
  before.add_file("/etc/a", "old\n", 0644, 0, 0);
  before.add_file("/etc/b", "old\n", 0644, 0, 0);
  auto report = testing::crash_sweep("two replaces in a row", before, [](MemoryFs& fs) -> result<converge_report> {
    // Two atomic replaces are each old-or-new, so the harness finds nothing to report ...
    replace_options o;
    auto a = fs.replace_file(actor::root(), "/etc/a", "new\n", o);
    if (!a) return tl::unexpected(a.error());
    auto b = fs.replace_file(actor::root(), "/etc/b", "new\n", o);
    if (!b) return tl::unexpected(b.error());
    return converge_report{};
  });
  CHECK(report.ok());
  CHECK(report.operations > 4);
  auto torn = testing::crash_sweep("a truncating rewrite", before, [](MemoryFs& fs) -> result<converge_report> {
    // ... but a delete-then-create loses the file if the run dies in between.
    auto gone = fs.unlink(actor::root(), "/etc/a");
    if (!gone) return tl::unexpected(gone.error());
    replace_options o;
    o.mode = 0644;
    auto made = fs.replace_file(actor::root(), "/etc/a", "new\n", o);
    if (!made) return tl::unexpected(made.error());
    return converge_report{};
  });
  CHECK_FALSE(torn.ok());
  CHECK(torn.text().find("/etc/a is neither as before nor as after") != std::string::npos);
}

TEST_CASE("crash_sweep with an uninstall: one that gives the tree back passes, one that forgets a file is named") {
  MemoryFs before = mac_tree();
  const ManagedFile conf{"/etc/app.conf", "ours\n", 0644};
  auto flow = [&conf](bool undo) {
    return [&conf, undo](MemoryFs& fs) -> result<converge_report> {
      ScriptedPrivilege priv(mac_user(), answer::granted);
      context ctx(fs, priv, app);
      return undo ? uninstall(ctx, conf) : converge(ctx, conf);
    };
  };
  testing::crash_sweep_options options;
  options.ignore = [](const std::string& path) { return path.rfind("/var/lib/hostcfg", 0) == 0; };  // the record
  options.uninstall = flow(true);
  auto report = testing::crash_sweep("ManagedFile, then uninstall", before, flow(false), options);
  CHECK(report.ok());
  INFO(report.text());
  // An "uninstall" that does nothing leaves the file: named, with the point.
  options.uninstall = [](MemoryFs&) -> result<converge_report> { return converge_report{}; };
  auto forgetful = testing::crash_sweep("ManagedFile, then a forgetful uninstall", before, flow(false), options);
  CHECK_FALSE(forgetful.ok());
  CHECK(forgetful.text().find("re-run, uninstalled: after the uninstall, unlike before: ") != std::string::npos);
  CHECK(forgetful.text().find("/etc/app.conf") != std::string::npos);
}

TEST_CASE("a record's own new directories appear with it: no crash or fault point leaves them behind an uninstall") {
  // Neither ~/.local nor /var/lib/hostcfg exists: each record's directories are made together
  // with the record (built under a temp name, renamed into place). Only the record files are
  // ignored (their bookkeeping may differ after a recovery); the directories made for them are
  // compared like everything else, straight after every crash or fault and after the re-run.
  MemoryFs before = mac_tree();
  const ManagedFile user_file{"/Users/alice/.app/app.conf", "user\n", 0600};
  const ManagedFile system_file{"/etc/app.conf", "ours\n", 0644};
  auto flow = [&](bool undo) {
    return [&, undo](MemoryFs& fs) -> result<converge_report> {
      ScriptedPrivilege priv(mac_user(), answer::granted);
      context ctx(fs, priv, app);
      return undo ? uninstall(ctx, user_file, system_file) : converge(ctx, user_file, system_file);
    };
  };
  testing::crash_sweep_options options;
  options.ignore = [](const std::string& path) { return path.size() > 7 && path.substr(path.size() - 7) == ".record"; };
  options.uninstall = flow(true);
  auto report = testing::crash_sweep("two records made with their directories", before, flow(false), options);
  MESSAGE(report.text());
  CHECK(report.ok());
  CHECK(report.points > 100);
  // And a clean install lists them, so the uninstall removes them.
  MemoryFs fs = before;
  REQUIRE(flow(false)(fs));
  CHECK(fs.status_of("/Users/alice/.local/state/hostcfg"));
  CHECK(fs.status_of("/var/lib/hostcfg"));
  REQUIRE(flow(true)(fs));
  CHECK(MemoryFs::diff(before.take_snapshot(), fs.take_snapshot()).empty());
}

TEST_CASE("a record's new directories: a stale temp is removed wherever a crash left it; a foreign one is an error") {
  const std::string record_path = "/Users/alice/.local/state/hostcfg/com.example.app.record";
  const actor alice{501, 20, {20}};
  const record_location where{record_path, alice, false};
  record r{app, {}};
  r.put(record_item{"file:/x", "managed_file", {{"mode", "384"}}});
  // A crash left a chain beside ~/.local, then another program made ~/.local: the next store
  // removes that temp too (it is beside a directory on the way, not the topmost missing one).
  MemoryFs fs = mac_tree();
  for (const char* d : {"/Users/alice/..local.hostcfg-chain", "/Users/alice/..local.hostcfg-chain/state",
                        "/Users/alice/..local.hostcfg-chain/state/hostcfg"})
    fs.add_dir(d, 0700, 501, 20);
  fs.add_file("/Users/alice/..local.hostcfg-chain/state/hostcfg/com.example.app.record", "half\n", 0600, 501, 20);
  fs.add_dir("/Users/alice/.local", 0700, 501, 20);
  REQUIRE(store_record(fs, where, r, record{app, {}}));
  CHECK_FALSE(fs.status_of("/Users/alice/..local.hostcfg-chain"));
  auto stored = load_record(fs, where, app);
  REQUIRE(stored);
  CHECK(stored->find("file:/x"));
  REQUIRE(stored->find("record-dirs"));
  CHECK(stored->find("record-dirs")->get("dirs") == "/Users/alice/.local/state\n/Users/alice/.local/state/hostcfg\n");
  // A temp holding something hostcfg never puts there (a link) is not removed: the store fails,
  // naming it, and makes nothing.
  MemoryFs odd = mac_tree();
  odd.add_dir("/Users/alice/..local.hostcfg-chain", 0700, 501, 20);
  REQUIRE(odd.symlink(alice, "/etc", "/Users/alice/..local.hostcfg-chain/state"));
  auto refused = store_record(odd, where, r, record{app, {}});
  REQUIRE(!refused);
  CHECK(refused.error().message().find("..local.hostcfg-chain") != std::string::npos);
  CHECK(refused.error().message().find(record_path) != std::string::npos);
  CHECK_FALSE(odd.status_of("/Users/alice/.local"));
  CHECK(odd.status_of("/Users/alice/..local.hostcfg-chain/state"));
  // With no record and nothing to store, an uninstall-like store removes a crashed chain.
  MemoryFs crashed = mac_tree();
  for (const char* d : {"/Users/alice/..local.hostcfg-chain", "/Users/alice/..local.hostcfg-chain/state",
                        "/Users/alice/..local.hostcfg-chain/state/hostcfg"})
    crashed.add_dir(d, 0700, 501, 20);
  crashed.add_file("/Users/alice/..local.hostcfg-chain/state/hostcfg/com.example.app.record", "half\n", 0600, 501, 20);
  REQUIRE(store_record(crashed, where, record{app, {}}, record{app, {}}));
  CHECK(MemoryFs::diff(mac_tree().take_snapshot(), crashed.take_snapshot()).empty());
}

namespace {
struct not_a_backend {};
}  // namespace

TEST_CASE("the backend contract names each missing operation") {
  CHECK_FALSE(detail::fs_has_lstat<not_a_backend>::value);
  CHECK_FALSE(detail::fs_has_replace_file<not_a_backend>::value);
  CHECK(detail::fs_has_replace_file<MemoryFs>::value);
  CHECK(check_fs<MemoryFs>());
  CHECK(check_priv<ScriptedPrivilege>());
  CHECK(check_priv<RootFor>());
  CHECK(check_priv<Unprivileged>());
}

namespace {
// The in-process hand-off runner (support/handoff_privilege.hpp), accepting ManagedFile steps.
using HandoffPrivilege = hostcfg_test::handoff_privilege<ManagedFile>;
}  // namespace

TEST_CASE("hand-off: one runner call applies every elevated step; the user's part stays local") {
  MemoryFs fs = mac_tree();
  HandoffPrivilege priv{mac_user(), &fs, answer::granted, 0, {}};
  context ctx(fs, priv, app);
  ManagedFile a{"/etc/a.conf", "a\n", 0644};
  ManagedFile b{"/etc/b.conf", "b\n", 0600};
  ManagedFile mine{"/Users/alice/app.conf", "u\n", 0644};
  auto report = converge(ctx, a, mine, b);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.calls == 1);
  REQUIRE(priv.requests.size() == 1);
  CHECK(priv.requests[0].changes.size() == 2);
  CHECK(fs.file_bytes("/etc/a.conf") == std::optional<std::string>("a\n"));
  CHECK(fs.status_of("/etc/b.conf")->mode == 0600);
  CHECK(fs.status_of("/Users/alice/app.conf")->uid == 501);
  CHECK(report->out_of_sync.empty());
  // The runner wrote the privileged record as root; the caller's user record has only its item.
  auto sys = fs.file_bytes("/var/lib/hostcfg/com.example.app.record");
  REQUIRE(sys);
  CHECK(sys->find("file:/etc/a.conf") != std::string::npos);
  CHECK(fs.file_bytes("/Users/alice/.local/state/hostcfg/com.example.app.record")->find("/etc/a.conf") ==
        std::string::npos);
  fs.clear_log();
  REQUIRE(converge(ctx, a, mine, b));
  CHECK(priv.calls == 1);
  CHECK(fs.mutating_ops() == 0);
}

TEST_CASE("hand-off: the runner refuses unknown kinds and bad parameters") {
  MemoryFs fs = mac_tree();
  RootFor root(mac_user());
  context ctx(fs, root, app);
  record payload{app, {}};
  payload.put(record_item{"cmd:rm", "shell_command", {{"command", "rm -rf /"}}});
  payload.put(record_item{"file:relative", "managed_file", {{"path", "relative"}, {"mode", "420"}, {"dir_mode", "493"}}});
  payload.put(record_item{"file:/etc/other", "managed_file",
                          {{"path", "/etc/x"}, {"mode", "420"}, {"dir_mode", "493"}, {"content", "x"}}});
  auto before = fs.take_snapshot();
  auto outcome = execute_handoff<ManagedFile>(ctx, payload);
  CHECK(outcome.events["cmd:rm"].at(0).message.find("unknown primitive kind") != std::string::npos);
  CHECK(outcome.events["file:relative"].at(0).kind == event_kind::failed);
  CHECK(outcome.events["file:/etc/other"].at(0).message.find("does not match") != std::string::npos);
  CHECK(MemoryFs::diff(before, fs.take_snapshot()).empty());
}

TEST_CASE("hand-off: a declined runner prompt is recorded and falls back like any decline") {
  MemoryFs fs = mac_tree();
  HandoffPrivilege priv{mac_user(), &fs, answer::declined, 0, {}};
  context ctx(fs, priv, app);
  ManagedFile primary{"/etc/app.conf", "x\n", 0644};
  ManagedFile alternative{"/Users/alice/.app.conf", "x\n", 0644};
  auto report = converge(ctx, fallback(primary, alternative));
  REQUIRE(report);
  CHECK(priv.calls == 1);
  CHECK_FALSE(fs.status_of("/etc/app.conf"));
  CHECK(fs.file_bytes("/Users/alice/.app.conf") == std::optional<std::string>("x\n"));
  REQUIRE(converge(ctx, fallback(primary, alternative)));
  CHECK(priv.calls == 1);
}

TEST_CASE("hand-off: a forged user record cannot make root overwrite a foreign file") {
  MemoryFs fs = mac_tree();
  fs.add_file("/etc/sudoers", "root ALL=(ALL) ALL\n", 0440, 0, 0);
  // The user plants an item claiming hostcfg created /etc/sudoers.
  record forged{app, {}};
  forged.put(record_item{"file:/etc/sudoers", "managed_file", {{"created", "1"}, {"written", "x"}}});
  fs.add_file("/Users/alice/.local/state/hostcfg/com.example.app.record", serialize_record(forged), 0600, 501, 20);
  RootFor root(mac_user());
  context ctx(fs, root, app);
  ManagedFile evil{"/etc/sudoers", "alice ALL=(ALL) NOPASSWD: ALL\n", 0440};
  auto report = converge(ctx, evil);
  REQUIRE(report);
  CHECK(report->steps[0].before.items[0].state == item_state::conflict);
  CHECK(fs.file_bytes("/etc/sudoers") == std::optional<std::string>("root ALL=(ALL) ALL\n"));
  // Uninstall as root does not remove it on the user's word either.
  auto undone = uninstall(ctx, evil);
  REQUIRE(undone);
  CHECK(fs.file_bytes("/etc/sudoers") == std::optional<std::string>("root ALL=(ALL) ALL\n"));
}

TEST_CASE("hand-off: the runner refuses a step the user could do alone") {
  MemoryFs fs = mac_tree();
  RootFor root(mac_user());
  context ctx(fs, root, app);
  record payload{app, {}};
  payload.put(ManagedFile{"/Users/alice/x.conf", "x\n", 0644}.desired_state());
  auto outcome = execute_handoff<ManagedFile>(ctx, payload);
  REQUIRE(outcome.events["file:/Users/alice/x.conf"].size() == 1);
  CHECK(outcome.events["file:/Users/alice/x.conf"][0].failure->is(errc::unsafe_path));
  CHECK_FALSE(fs.status_of("/Users/alice/x.conf"));
}

TEST_CASE("same bytes with another mode or owner: the metadata is repaired") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  ManagedFile conf{"/etc/app.conf", "x\n", 0644};
  conf.uid = 0;
  conf.gid = 0;
  REQUIRE(converge(ctx, conf));
  fs.add_file("/etc/app.conf", "x\n", 0666, 501, 20);
  auto report = converge(ctx, conf);
  REQUIRE(report);
  CHECK(report->ok());
  auto st = fs.status_of("/etc/app.conf");
  CHECK(st->mode == 0644);
  CHECK(st->uid == 0);
  CHECK(st->gid == 0);
  CHECK(report->out_of_sync.empty());
}

TEST_CASE("a forged user record cannot plant undo bytes that root would restore on uninstall") {
  MemoryFs fs = mac_tree();
  fs.add_file("/etc/app.conf", "vendor\n", 0644, 0, 0);
  record forged{app, {}};
  forged.put(record_item{"file:/etc/app.conf",
                         "managed_file",
                         {{"created", "0"}, {"original", "alice ALL=(ALL) NOPASSWD: ALL\n"}, {"original_mode", "420"}}});
  fs.add_file("/Users/alice/.local/state/hostcfg/com.example.app.record", serialize_record(forged), 0600, 501, 20);
  RootFor root(mac_user());
  context ctx(fs, root, app);
  ManagedFile conf{"/etc/app.conf", "ours\n", 0644};
  conf.take_over = true;
  REQUIRE(converge(ctx, conf));
  CHECK(fs.file_bytes("/etc/app.conf") == std::optional<std::string>("ours\n"));
  auto sys = fs.file_bytes("/var/lib/hostcfg/com.example.app.record");
  REQUIRE(sys);
  CHECK(sys->find("NOPASSWD") == std::string::npos);
  REQUIRE(uninstall(ctx, conf));
  CHECK(fs.file_bytes("/etc/app.conf") == std::optional<std::string>("vendor\n"));
}
