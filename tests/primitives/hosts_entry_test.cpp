// HostsEntry through the whole protocol on MemoryFs: one prompt naming the file and lines,
// golden bytes, owner/mode kept, idempotence, conflicts and override, revert to the exact
// original bytes, broken markers, bind mounts, bad input before I/O, and an error sweep.
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/backend/resolver.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/primitives/hosts_entry.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

user_identity mac_user() {
  return user_identity{501, 20, {20, 12, 61, 80}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
}

const char* app = "com.example.app";

const std::string stock =
    "##\n# Host Database\n#\n# localhost is used to configure the loopback interface\n"
    "# when the system is booting.  Do not change this entry.\n##\n"
    "127.0.0.1\tlocalhost\n255.255.255.255\tbroadcasthost\n::1             localhost\n";

const std::string section_begin = "# >>> hostcfg com.example.app v1 >>>";
const std::string section_end = "# <<< hostcfg com.example.app <<<";

// /etc root:wheel 0755 with a root:wheel 0644 hosts file (gid 0 is wheel on macOS).
MemoryFs mac_tree(const std::string& hosts = stock) {
  MemoryFs fs;
  fs.add_dir("/etc", 0755, 0, 0);
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  fs.add_file("/etc/hosts", hosts, 0644, 0, 0);
  return fs;
}

HostsEntry docker_entry() { return HostsEntry{"127.0.0.1", {"kubernetes.docker.internal"}}; }

/// Edits /etc/hosts as a user would: `line` right after our kubernetes.docker.internal line, inside
/// our section.
void add_line_after_ours(MemoryFs& fs, const std::string& line) {
  std::string edited = *fs.file_bytes("/etc/hosts");
  const std::string ours = "127.0.0.1\tkubernetes.docker.internal\n";
  edited.replace(edited.find(ours), ours.size(), ours + line);
  fs.add_file("/etc/hosts", edited, 0644, 0, 0);
}

}  // namespace

TEST_CASE("hosts entry: one prompt naming /etc/hosts and the line; golden bytes; owner and mode kept") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  auto report = converge(ctx, docker_entry());
  REQUIRE(report);
  CHECK(report->ok());
  REQUIRE(priv.prompts() == 1);
  std::string prompt = priv.requests()[0].text();
  CAPTURE(prompt);
  CHECK(prompt.find("/etc/hosts") != std::string::npos);
  CHECK(prompt.find("add 127.0.0.1 kubernetes.docker.internal") != std::string::npos);
  CHECK(fs.file_bytes("/etc/hosts") ==
        std::optional<std::string>(stock + section_begin + "\n127.0.0.1\tkubernetes.docker.internal\n" + section_end +
                                   "\n"));
  auto st = fs.status_of("/etc/hosts");
  REQUIRE(st);
  CHECK(st->mode == 0644);
  CHECK(st->uid == 0);
  CHECK(st->gid == 0);
  CHECK(report->out_of_sync.empty());
  // Per-name items: localhost was already there, ours is now in sync.
  REQUIRE(report->steps.size() == 1);
  REQUIRE(report->steps[0].after);
  CHECK(report->steps[0].after->in_sync());
  CHECK(report->system_record_written);
}

TEST_CASE("hosts entry: the second run makes zero mutating operations and no prompt") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  REQUIRE(converge(ctx, docker_entry()));
  auto before = fs.take_snapshot();
  fs.clear_log();
  auto again = converge(ctx, docker_entry());
  REQUIRE(again);
  CHECK(fs.mutating_ops() == 0);
  CHECK(priv.prompts() == 1);
  CHECK(MemoryFs::diff(before, fs.take_snapshot()).empty());
  CHECK(again->steps[0].planned.empty());
}

TEST_CASE("hosts entry: uninstall after install gives back the original tree, records included") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  auto before = fs.take_snapshot();
  REQUIRE(converge(ctx, docker_entry()));
  auto undone = uninstall(ctx, docker_entry());
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(priv.prompts() == 2);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(stock));
  HOSTCFG_CHECK_NO_DIFF(MemoryFs::diff(before, fs.take_snapshot()), "");
}

TEST_CASE("hosts entry: declined elevation leaves the file untouched and says why") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::declined);
  context ctx(fs, priv, app);
  fs.clear_log();
  auto report = converge(ctx, docker_entry());
  REQUIRE(report);
  CHECK(priv.prompts() == 1);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(stock));
  REQUIRE(report->steps[0].applied.events.size() == 1);
  const auto& e = report->steps[0].applied.events[0];
  CHECK(e.kind == event_kind::skipped);
  CHECK(e.message.find("declined") != std::string::npos);
  // Still not in sync, and the report says the prompt was declined (not "out of sync").
  REQUIRE(report->steps[0].after);
  CHECK_FALSE(report->steps[0].after->in_sync());
  REQUIRE(report->prompt_answer);
  CHECK(*report->prompt_answer == answer::declined);
}

TEST_CASE("hosts entry: bad input is refused before any I/O, naming the field") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  ledgers books;
  for (const auto& entry : {HostsEntry{"127.1", {"a.test"}}, HostsEntry{"127.0.0.1", {"a.test\n10.0.0.1 bank"}},
                            HostsEntry{"fe80::1%en0", {"a.test"}}, HostsEntry{"127.0.0.1", {"Upper.Test"}}}) {
    fs.clear_log();
    auto probed = entry.probe(ctx, books);
    REQUIRE_FALSE(probed);
    CHECK(probed.error().is(errc::invalid_input));
    CHECK(probed.error().message().find("mappings[0]") != std::string::npos);
    CHECK(fs.op_count() == 0);
  }
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(stock));
  CHECK(priv.prompts() == 0);
}

TEST_CASE("hosts entry: broken markers are a conflict naming the line; the file is untouched") {
  std::string broken = stock + section_begin + "\n127.0.0.1\tx.test\n";
  MemoryFs fs = mac_tree(broken);
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  auto report = converge(ctx, docker_entry());
  REQUIRE(report);
  const auto& item = report->steps[0].before.items.at(0);
  CHECK(item.state == item_state::conflict);
  CHECK(item.detail.find("line 10: begin marker without an end marker") != std::string::npos);
  CHECK(priv.prompts() == 0);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(broken));
}

TEST_CASE("hosts entry: a conflict is reported and left alone; override disables it and uninstall restores it") {
  std::string hosts = "127.0.0.1 localhost\n10.0.0.9 kubernetes.docker.internal lab\n";
  MemoryFs fs = mac_tree(hosts);
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  auto report = converge(ctx, docker_entry());
  REQUIRE(report);
  CHECK(priv.prompts() == 0);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(hosts));
  const item_probe* name_item = report->steps[0].before.find("hosts:/etc/hosts:127.0.0.1 kubernetes.docker.internal");
  REQUIRE(name_item);
  CHECK(name_item->state == item_state::conflict);
  CHECK(name_item->detail.find("mapped to 10.0.0.9 (line 2)") != std::string::npos);
  CHECK_FALSE(report->out_of_sync.empty());

  auto before = fs.take_snapshot();
  HostsEntry forced = docker_entry();
  forced.override_conflicts = true;
  auto forced_report = converge(ctx, forced);
  REQUIRE(forced_report);
  CHECK(forced_report->ok());
  // Why privilege was asked for names the line that will be disabled, not only the added ones.
  const item_probe* file_item = forced_report->steps[0].before.find("hosts:/etc/hosts");
  REQUIRE(file_item);
  CHECK(file_item->needs_elevation);
  CHECK(file_item->elevation_reason.find("disabling line 2 '10.0.0.9 kubernetes.docker.internal lab'") !=
        std::string::npos);
  CHECK(fs.file_bytes("/etc/hosts") ==
        std::optional<std::string>("127.0.0.1 localhost\n# [disabled by com.example.app] 10.0.0.9 "
                                   "kubernetes.docker.internal lab\n" +
                                   section_begin + "\n10.0.0.9\tlab\n127.0.0.1\tkubernetes.docker.internal\n" +
                                   section_end + "\n"));
  CHECK(forced_report->out_of_sync.empty());
  auto undone = uninstall(ctx, forced);
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(hosts));
  CHECK(MemoryFs::diff(before, fs.take_snapshot()).empty());
}

TEST_CASE("hosts entry: override of a conflict below our section says our line comes first; that line stays") {
  const std::string hosts = "127.0.0.1 localhost\n" + section_begin + "\n127.0.0.1\tother.test\n" + section_end +
                            "\n10.0.0.9 kubernetes.docker.internal lab\n";
  MemoryFs fs = mac_tree(hosts);
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  HostsEntry forced = docker_entry();
  forced.override_conflicts = true;
  auto report = converge(ctx, forced);
  REQUIRE(report);
  CHECK(report->ok());
  const item_probe* name_item = report->steps[0].before.find("hosts:/etc/hosts:127.0.0.1 kubernetes.docker.internal");
  REQUIRE(name_item);
  CAPTURE(name_item->detail);
  CHECK(name_item->detail.find("(line 5); our section's line will come first, that line stays") != std::string::npos);
  CHECK(fs.file_bytes("/etc/hosts") ==
        std::optional<std::string>("127.0.0.1 localhost\n" + section_begin +
                                   "\n127.0.0.1\tother.test\n127.0.0.1\tkubernetes.docker.internal\n" + section_end +
                                   "\n10.0.0.9 kubernetes.docker.internal lab\n"));
}

TEST_CASE("hosts entry: a crash after the write-ahead, before the write: the retry lists the disabled line once") {
  const std::string hosts = "127.0.0.1 localhost\n10.0.0.9 kubernetes.docker.internal lab\n";
  HostsEntry forced = docker_entry();
  forced.override_conflicts = true;
  // The operation that replaces /etc/hosts in a clean run (the write-ahead record comes before it).
  std::size_t replace_at = 0;
  {
    MemoryFs fs = mac_tree(hosts);
    ScriptedPrivilege priv(mac_user(), answer::granted);
    context ctx(fs, priv, app);
    fs.clear_log();
    REQUIRE(converge(ctx, forced));
    for (std::size_t i = 0; i < fs.op_log().size() && !replace_at; ++i)
      if (fs.op_log()[i].op.rfind("replace_file", 0) == 0 && fs.op_log()[i].path == "/etc/hosts") replace_at = i + 1;
  }
  REQUIRE(replace_at > 1);
  MemoryFs fs = mac_tree(hosts);
  {
    ScriptedPrivilege priv(mac_user(), answer::granted);
    context ctx(fs, priv, app);
    fs.clear_log();
    fs.crash_after(replace_at - 1);  // dies just before its first step on /etc/hosts
    (void)converge(ctx, forced);
  }
  MemoryFs rebooted = fs.after_crash(MemoryFs::crash_keep::all, 0);
  REQUIRE(rebooted.file_bytes("/etc/hosts") == std::optional<std::string>(hosts));
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(rebooted, priv, app);
  {
    // The item written ahead is there, naming the line the write never disabled.
    auto rec = parse_record(*rebooted.file_bytes(ctx.system_record.path), "r");
    REQUIRE(rec);
    REQUIRE(rec->find("hosts:/etc/hosts"));
    CHECK(rec->find("hosts:/etc/hosts")->get("disabled") == "10.0.0.9 kubernetes.docker.internal lab\n");
  }
  auto again = converge(ctx, forced);
  REQUIRE(again);
  CHECK(again->ok());
  auto rec = parse_record(*rebooted.file_bytes(ctx.system_record.path), "r");
  REQUIRE(rec);
  REQUIRE(rec->find("hosts:/etc/hosts"));
  CHECK(rec->find("hosts:/etc/hosts")->get("disabled") == "10.0.0.9 kubernetes.docker.internal lab\n");
  auto undone = uninstall(ctx, forced);
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK(undone->notes == std::vector<std::string>{});
  CHECK(rebooted.file_bytes("/etc/hosts") == std::optional<std::string>(hosts));
}

TEST_CASE("hosts entry: a crash at any step of a run that changes our section, then uninstall or a retry: our old line is ours") {
  // Run 1 maps the name to 127.0.0.1; run 2 moves it to 127.0.0.2 and dies at one of its steps.
  // Between its write-ahead record and the file's replace, the file keeps run 1's line while the
  // record already describes run 2's section; after the replace, the record's final store may be
  // missing. Whatever the step, the uninstall gives back the stock file and keeps nothing as a
  // user's line; a retry first converges to run 2's section.
  const HostsEntry moved{"127.0.0.2", {"kubernetes.docker.internal"}};
  std::size_t steps = 0;       // operations of a clean run 2
  std::size_t replace_at = 0;  // the first step of its replace of /etc/hosts (1-based)
  {
    MemoryFs fs = mac_tree();
    ScriptedPrivilege priv(mac_user(), answer::granted);
    context ctx(fs, priv, app);
    REQUIRE(converge(ctx, docker_entry()));
    fs.clear_log();
    REQUIRE(converge(ctx, moved));
    steps = fs.op_log().size();
    for (std::size_t i = 0; i < steps && !replace_at; ++i)
      if (fs.op_log()[i].op.rfind("replace_file", 0) == 0 && fs.op_log()[i].path == "/etc/hosts") replace_at = i + 1;
  }
  REQUIRE(replace_at > 1);
  const std::string run2 = stock + section_begin + "\n127.0.0.2\tkubernetes.docker.internal\n" + section_end + "\n";
  std::size_t old_line_kept = 0;  // crash points after which the file still held run 1's line
  for (std::size_t crash_at = 0; crash_at <= steps; ++crash_at) {
    for (auto keep : {MemoryFs::crash_keep::none, MemoryFs::crash_keep::all}) {
      for (bool retry_first : {false, true}) {
        CAPTURE(crash_at);
        CAPTURE(static_cast<int>(keep));
        CAPTURE(retry_first);
        MemoryFs fs = mac_tree();
        {
          ScriptedPrivilege priv(mac_user(), answer::granted);
          context ctx(fs, priv, app);
          REQUIRE(converge(ctx, docker_entry()));
          fs.clear_log();
          fs.crash_after(crash_at);
          (void)converge(ctx, moved);
        }
        MemoryFs rebooted = fs.after_crash(keep, 0);
        const std::string now = *rebooted.file_bytes("/etc/hosts");
        if (now != run2) {
          REQUIRE(now.find("127.0.0.1\tkubernetes.docker.internal\n") != std::string::npos);
          if (crash_at >= replace_at - 1 && !retry_first) ++old_line_kept;
        }
        ScriptedPrivilege priv(mac_user(), answer::granted);
        context ctx(rebooted, priv, app);
        if (retry_first) {
          auto again = converge(ctx, moved);
          REQUIRE(again);
          CHECK(again->ok());
          CHECK(rebooted.file_bytes("/etc/hosts") == std::optional<std::string>(run2));
          // A retry that wrote the file leaves a record without the section before its write.
          auto rec = parse_record(*rebooted.file_bytes(ctx.system_record.path), "r");
          REQUIRE(rec);
          REQUIRE(rec->find("hosts:/etc/hosts"));
          if (now != run2) CHECK(rec->find("hosts:/etc/hosts")->get("section_before_write") == "");
        }
        auto undone = uninstall(ctx, moved);
        REQUIRE(undone);
        CHECK(undone->ok());
        CHECK(undone->notes == std::vector<std::string>{});
        CHECK(rebooted.file_bytes("/etc/hosts") == std::optional<std::string>(stock));
      }
    }
  }
  CHECK(old_line_kept > 0);  // the window between the record and the replace was swept
  MESSAGE(steps << " crash points x 2 reboots x (uninstall | retry + uninstall); " << old_line_kept
                << " left run 1's line under run 2's record");
}

TEST_CASE("hosts entry: clean runs store no section_before_write: a moved name, and our line deleted by the user") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  auto stored_before_write = [&] {
    auto rec = parse_record(*fs.file_bytes(ctx.system_record.path), "r");
    REQUIRE(rec);
    REQUIRE(rec->find("hosts:/etc/hosts"));
    return rec->find("hosts:/etc/hosts")->get("section_before_write", "(none)");
  };
  REQUIRE(converge(ctx, docker_entry()));
  CHECK(stored_before_write() == "(none)");
  // The user deletes our line and keeps the markers: the same section is written again.
  std::string edited = *fs.file_bytes("/etc/hosts");
  const std::string ours = "127.0.0.1\tkubernetes.docker.internal\n";
  edited.erase(edited.find(ours), ours.size());
  fs.add_file("/etc/hosts", edited, 0644, 0, 0);
  auto rewritten = converge(ctx, docker_entry());
  REQUIRE(rewritten);
  CHECK(rewritten->ok());
  CHECK(stored_before_write() == "(none)");
  // A moved name: written ahead with the old section, stored without it.
  auto moved = converge(ctx, HostsEntry{"127.0.0.2", {"kubernetes.docker.internal"}});
  REQUIRE(moved);
  CHECK(moved->ok());
  CHECK(stored_before_write() == "(none)");
  auto undone = uninstall(ctx, HostsEntry{"127.0.0.2", {"kubernetes.docker.internal"}});
  REQUIRE(undone);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(stock));
}

TEST_CASE("hosts entry: a hosts file hostcfg created, to which an editor added a BOM, is still removed by uninstall") {
  MemoryFs fs;
  fs.add_dir("/etc", 0755, 0, 0);
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  REQUIRE(converge(ctx, docker_entry()));
  REQUIRE(fs.file_bytes("/etc/hosts"));
  fs.add_file("/etc/hosts", "\xEF\xBB\xBF" + *fs.file_bytes("/etc/hosts"), 0644, 0, 0);
  // Still ours and in sync: no write.
  fs.clear_log();
  auto again = converge(ctx, docker_entry());
  REQUIRE(again);
  CHECK(again->ok());
  CHECK(fs.mutating_ops() == 0);
  auto undone = uninstall(ctx, docker_entry());
  REQUIRE(undone);
  CHECK(undone->ok());
  CHECK_FALSE(fs.file_bytes("/etc/hosts").has_value());
}

TEST_CASE("hosts entry: disabled lines merge: a line listed ahead counts once, a tagged copy means it landed") {
  const std::string line = "10.0.0.9 k8s.local";
  const std::string tagged = "# [disabled by com.example.app] " + line;
  const std::vector<hosts_disabled_line> now{{2, line, tagged}};
  const std::string prefix = "# [disabled by com.example.app] ";
  // Listed ahead by a crashed run, not in the file tagged: this edit is that one.
  CHECK(detail::merged_disabled(line + "\n", now, "127.0.0.1 localhost\n" + line + "\n", prefix) == line + "\n");
  // Listed and tagged in the file (it landed), and the user added the line again: a second copy.
  CHECK(detail::merged_disabled(line + "\n", now, tagged + "\n" + line + "\n", prefix) == line + "\n" + line + "\n");
  // Nothing listed before.
  CHECK(detail::merged_disabled("", now, line + "\n", prefix) == line + "\n");
  // Listed and still tagged, nothing new: kept.
  CHECK(detail::merged_disabled(line + "\n", {}, tagged + "\n", prefix) == line + "\n");
  // Listed ahead but never landed, and not disabled now (the user fixed the conflict): dropped.
  CHECK(detail::merged_disabled(line + "\n", {}, "127.0.0.1 localhost\n", prefix) == "");
}

TEST_CASE("hosts entry: a CRLF file without a final newline gets CRLF lines and comes back exactly") {
  std::string hosts = "# windows\r\n127.0.0.1 localhost";
  MemoryFs fs = mac_tree(hosts);
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  REQUIRE(converge(ctx, docker_entry()));
  CHECK(fs.file_bytes("/etc/hosts") ==
        std::optional<std::string>(hosts + "\r\n" + section_begin + "\r\n127.0.0.1\tkubernetes.docker.internal\r\n" +
                                   section_end + "\r\n"));
  REQUIRE(uninstall(ctx, docker_entry()));
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(hosts));
}

TEST_CASE("hosts entry: lines the user added to our section survive uninstall, which says so") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  REQUIRE(converge(ctx, docker_entry()));
  add_line_after_ours(fs, "192.168.1.5 nas\n");
  auto undone = uninstall(ctx, docker_entry());
  REQUIRE(undone);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(stock + "192.168.1.5 nas\n"));
  REQUIRE(undone->steps[0].applied.events.size() == 1);
  CHECK(undone->steps[0].applied.events[0].message.find("kept 1 line(s)") != std::string::npos);
  CHECK(undone->steps[0].applied.events[0].message.find("'192.168.1.5 nas'") != std::string::npos);
  CHECK_FALSE(undone->steps[0].applied.notes.empty());
}

TEST_CASE("hosts entry: a user's line in our section stays theirs when a later run rewrites the section") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  REQUIRE(converge(ctx, docker_entry()));
  add_line_after_ours(fs, "192.168.1.5 nas\n");
  // A later version wants one more name: the section is rewritten, the user's line kept in it.
  HostsEntry wider{"127.0.0.1", {"kubernetes.docker.internal", "gateway.docker.internal"}};
  auto second = converge(ctx, wider);
  REQUIRE(second);
  const std::string now = *fs.file_bytes("/etc/hosts");
  CHECK(now.find("192.168.1.5 nas\n") != std::string::npos);
  CHECK(now.find("127.0.0.1\tgateway.docker.internal\n") != std::string::npos);
  // Uninstall removes what we wrote, both runs' lines, and keeps theirs.
  auto undone = uninstall(ctx, wider);
  REQUIRE(undone);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(stock + "192.168.1.5 nas\n"));
  REQUIRE(undone->steps[0].applied.events.size() == 1);
  CHECK(undone->steps[0].applied.events[0].message.find("'192.168.1.5 nas'") != std::string::npos);
}

TEST_CASE("hosts entry: with no record, an uninstall as root removes a section between our markers; a user's says why not") {
  // Our section is in the file but no record lists it (a record lost, or written by a run whose
  // state directory was wiped): the markers alone say it is ours.
  const std::string with_section =
      stock + section_begin + "\n127.0.0.1\tkubernetes.docker.internal\n" + section_end + "\n";
  {
    MemoryFs fs = mac_tree(with_section);
    ScriptedPrivilege priv(mac_user(), answer::declined);
    context ctx(fs, priv, app);
    auto before = fs.take_snapshot();
    auto undone = uninstall(ctx, docker_entry());
    REQUIRE(undone);
    CHECK(MemoryFs::diff(before, fs.take_snapshot()).empty());
    bool said = false;
    for (const auto& e : undone->steps[0].applied.events)
      said = said || (e.kind == event_kind::skipped && e.message.find("without a record") != std::string::npos &&
                      e.message.find("run the uninstall as root") != std::string::npos);
    CHECK(said);
  }
  {
    // Run as root (an installer's own uninstall as root, or the elevated runner): removed.
    MemoryFs fs = mac_tree(with_section);
    ScriptedPrivilege priv(user_identity{0, 0, {0}, "root", "/var/root", "/bin/sh", std::nullopt, std::nullopt},
                           answer::granted);
    context ctx(fs, priv, app);
    auto undone = uninstall(ctx, docker_entry());
    REQUIRE(undone);
    CHECK(priv.prompts() == 0);
    CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(stock));
    auto st = fs.status_of("/etc/hosts");
    REQUIRE(st);
    CHECK(st->mode == 0644);
    CHECK(st->uid == 0);
  }
}

TEST_CASE("hosts entry: a bind-mounted hosts file needs allow_in_place; then it is rewritten in place") {
  MemoryFs fs = mac_tree();
  fs.set_mount_point("/etc/hosts");
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  auto refused = converge(ctx, docker_entry());
  REQUIRE(refused);
  REQUIRE(refused->steps[0].applied.events.size() == 1);
  const auto& e = refused->steps[0].applied.events[0];
  CHECK(e.kind == event_kind::failed);
  REQUIRE(e.failure);
  CHECK(e.failure->is_errno(EBUSY));
  CHECK(e.message.find("set allow_in_place") != std::string::npos);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(stock));
  HostsEntry in_place = docker_entry();
  in_place.allow_in_place = true;
  auto done = converge(ctx, in_place);
  REQUIRE(done);
  CHECK(done->ok());
  CHECK(done->steps[0].applied.events[0].message.find("rewritten in place") != std::string::npos);
  CHECK(fs.file_bytes("/etc/hosts")->find("127.0.0.1\tkubernetes.docker.internal\n") != std::string::npos);
}

namespace {

/// The docker entry probed and planned on the stock tree (one change: add our section), for
/// tests that change /etc/hosts between the plan and its apply.
struct docker_entry_planned {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv{mac_user(), answer::granted};
  context<MemoryFs, ScriptedPrivilege> ctx{fs, priv, app};
  ledgers books;
  HostsEntry entry = docker_entry();
  plan p;

  docker_entry_planned() {
    auto probed = entry.probe(ctx, books);
    REQUIRE(probed);
    p = entry.make_plan(*probed);
    REQUIRE(p.changes.size() == 1);
  }
};

}  // namespace

TEST_CASE_FIXTURE(docker_entry_planned,
                  "hosts entry: a change between probe and apply that alters the edit is 'changed since probe'") {
  CHECK(p.changes[0].needs_elevation);
  CHECK(p.changes[0].elevation_reason.find("/etc/hosts is in /etc") != std::string::npos);
  // The plan shows only what changes: our new section, not two copies of the file.
  CHECK(p.changes[0].before.empty());
  CHECK(p.changes[0].after == section_begin + "\n127.0.0.1\tkubernetes.docker.internal\n" + section_end + "\n");
  // Meanwhile someone maps the name elsewhere: the planned (and prompted) edit is no longer the one to make.
  const std::string theirs = stock + "10.9.9.9 kubernetes.docker.internal\n";
  fs.add_file("/etc/hosts", theirs, 0644, 0, 0);
  grant g;
  g.elevated = true;
  fs.clear_log();
  auto applied = entry.apply(ctx, p, g, books);
  REQUIRE(applied.events.size() == 1);
  CHECK(applied.events[0].kind == event_kind::failed);
  REQUIRE(applied.events[0].failure);
  CHECK(applied.events[0].failure->is(errc::changed_since_probe));
  CHECK(applied.events[0].message.find("is mapped to 10.9.9.9 at line 10") != std::string::npos);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(theirs));
  CHECK(fs.mutating_ops() == 0);
  CHECK(books.system.empty());
}

TEST_CASE_FIXTURE(docker_entry_planned,
                  "hosts entry: a line another writer added between probe and apply is kept; the section goes after it") {
  fs.add_file("/etc/hosts", stock + "10.0.0.1 new.test\n", 0644, 0, 0);
  grant g;
  g.elevated = true;
  auto applied = entry.apply(ctx, p, g, books);
  REQUIRE(applied.events.size() == 1);
  CHECK(applied.events[0].kind == event_kind::changed);
  CHECK(applied.events[0].message == "add 127.0.0.1 kubernetes.docker.internal");
  CHECK(fs.file_bytes("/etc/hosts") ==
        std::optional<std::string>(stock + "10.0.0.1 new.test\n" + section_begin +
                                   "\n127.0.0.1\tkubernetes.docker.internal\n" + section_end + "\n"));
  CHECK(books.system.find("hosts:/etc/hosts") != nullptr);
}

TEST_CASE("hosts entry: error sweep - a failure at any step leaves the original or the new file, never a mix") {
  const std::string after =
      stock + section_begin + "\n127.0.0.1\tkubernetes.docker.internal\n" + section_end + "\n";
  std::size_t failures_seen = 0;
  for (std::size_t n = 1; n < 200; ++n) {
    MemoryFs fs = mac_tree();
    ScriptedPrivilege priv(mac_user(), answer::granted);
    context ctx(fs, priv, app);
    fs.clear_log();
    fs.fail_at(n, EIO);
    auto report = converge(ctx, docker_entry());
    std::size_t ops = fs.op_count();
    auto bytes = fs.file_bytes("/etc/hosts");
    CAPTURE(n);
    REQUIRE(bytes);
    CHECK((*bytes == stock || *bytes == after));
    bool failed = !report || !report->ok();
    if (failed) ++failures_seen;
    if (ops < n) break;  // the run finished before the n-th operation: every step was swept
  }
  CHECK(failures_seen > 3);
}

TEST_CASE("hosts entry: desired state round-trips and hostile parameters are refused") {
  HostsEntry entry{"127.0.0.1", {"a.test", "b.test"}};
  entry.add("::1", {"a.test"});
  entry.override_conflicts = true;
  auto back = HostsEntry::from_desired_state(entry.desired_state());
  if (!back) MESSAGE(back.error().message());
  REQUIRE(back);
  CHECK(back->mappings == entry.mappings);
  CHECK(back->override_conflicts);
  CHECK(back->id() == "hosts:/etc/hosts");
  record_item bad = entry.desired_state();
  bad.fields["mappings"] = "127.0.0.1 a.test #evil";
  auto refused = HostsEntry::from_desired_state(bad);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message().find("contains a space") != std::string::npos);
  bad.fields["mappings"] = "127.1 a.test";
  CHECK(HostsEntry::from_desired_state(bad).error().message().find("has 2 parts") != std::string::npos);
  bad = entry.desired_state();
  bad.fields["path"] = "etc/hosts";
  CHECK(HostsEntry::from_desired_state(bad).error().is(errc::invalid_input));
}

TEST_CASE("hosts entry: a user without admin rights gets a clear skip and an untouched file") {
  MemoryFs fs = mac_tree();
  Unprivileged priv(mac_user());
  context ctx(fs, priv, app);
  auto report = converge(ctx, docker_entry());
  REQUIRE(report);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(stock));
  REQUIRE(report->steps[0].applied.events.size() == 1);
  const auto& e = report->steps[0].applied.events[0];
  CHECK(e.kind == event_kind::skipped);
  CHECK(e.message.find("unavailable") != std::string::npos);
  // The plan still shows exactly what would be added, for the report.
  REQUIRE(report->steps[0].planned.changes.size() == 1);
  CHECK(report->steps[0].planned.render().find("+ 127.0.0.1\tkubernetes.docker.internal") != std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// The resolver check: a note per name, never a failure and never a write.

namespace {

/// The detail of the item for (address, name) in a probe report.
std::string item_detail(const probe_report& r, const std::string& address, const std::string& name) {
  const item_probe* item = r.find("hosts:/etc/hosts:" + address + " " + name);
  return item ? item->detail : std::string("<no item>");
}

item_state item_state_of(const probe_report& r, const std::string& address, const std::string& name) {
  const item_probe* item = r.find("hosts:/etc/hosts:" + address + " " + name);
  REQUIRE(item != nullptr);
  return item->state;
}

}  // namespace

TEST_CASE("hosts entry: an attached resolver that agrees adds 'resolves ... as expected', asked once per name and probe") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  FakeResolver fake;
  fake.answer("localhost", {"127.0.0.1", "::1"}).answer("kubernetes.docker.internal", {"127.0.0.1"});
  any_resolver resolver(fake);
  ctx.attach(resolver);
  HostsEntry entry{"127.0.0.1", {"localhost", "kubernetes.docker.internal"}};
  entry.add("::1", {"localhost"});
  auto report = converge(ctx, entry);
  REQUIRE(report);
  CHECK(report->ok());
  // Probe and post-probe each ask once per distinct name, though localhost has two addresses.
  CHECK(fake.calls() == 4);
  CHECK(fake.calls_for("localhost") == 2);
  CHECK(fake.calls_for("kubernetes.docker.internal") == 2);
  REQUIRE(report->steps[0].after);
  const probe_report& after = *report->steps[0].after;
  CHECK(item_detail(after, "127.0.0.1", "localhost") == "resolver: resolves to 127.0.0.1 as expected");
  CHECK(item_detail(after, "::1", "localhost") == "resolver: resolves to ::1 as expected");
  CHECK(item_detail(after, "127.0.0.1", "kubernetes.docker.internal") == "resolver: resolves to 127.0.0.1 as expected");
  CHECK(after.in_sync());
  CHECK_FALSE(report->needs_user_action());
  // Before the write, the file did not yet have the name: the state says absent, the note what
  // the resolver said then; the two are reported side by side.
  CHECK(item_state_of(report->steps[0].before, "127.0.0.1", "kubernetes.docker.internal") == item_state::absent);
}

TEST_CASE("hosts entry: a resolver answering another address first is a note; in sync, no write, no prompt") {
  MemoryFs fs = mac_tree(stock + section_begin + "\n127.0.0.1\tkubernetes.docker.internal\n" + section_end + "\n");
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  REQUIRE(converge(ctx, docker_entry()));  // registers the section (no byte changes)
  FakeResolver fake;
  fake.answer("kubernetes.docker.internal", {"10.0.0.5", "127.0.0.1"});
  any_resolver resolver(fake);
  ctx.attach(resolver);
  auto before = fs.take_snapshot();
  fs.clear_log();
  std::size_t prompts = priv.prompts();
  auto report = converge(ctx, docker_entry());
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(fs.mutating_ops() == 0);
  CHECK(MemoryFs::diff(before, fs.take_snapshot()).empty());
  CHECK(priv.prompts() == prompts);
  CHECK(report->steps[0].planned.empty());
  CHECK(report->out_of_sync.empty());
  CHECK(report->notes.empty());
  CHECK(item_state_of(report->steps[0].before, "127.0.0.1", "kubernetes.docker.internal") == item_state::matches);
  CHECK(item_detail(report->steps[0].before, "127.0.0.1", "kubernetes.docker.internal") ==
        "resolver: the system resolver answers 10.0.0.5 first (DNS or another source answers before /etc/hosts)");
  // One question per probe, each probe one read of the file (converge may or may not probe again
  // after an apply that changed nothing; either way the resolver is not asked more often).
  const auto reads = std::count_if(fs.op_log().begin(), fs.op_log().end(), [](const auto& r) {
    return r.op == "read_file" && r.path == "/etc/hosts";
  });
  CHECK(reads >= 1);
  CHECK(fake.calls() == static_cast<std::size_t>(reads));
  CHECK(fake.calls_for("kubernetes.docker.internal") == fake.calls());
}

TEST_CASE("hosts entry: resolver unavailable, no answer, IPv6 only: each a note, the file decides") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  FakeResolver fake;
  fake.unavailable("kubernetes.docker.internal").answer("localhost", {"::1"});
  any_resolver resolver(fake);
  ctx.attach(resolver);
  HostsEntry entry{"127.0.0.1", {"localhost", "kubernetes.docker.internal", "free.test"}};
  ledgers books;
  auto probed = entry.probe(ctx, books);
  REQUIRE(probed);
  CHECK(fake.calls() == 3);
  CHECK(item_detail(*probed, "127.0.0.1", "kubernetes.docker.internal") ==
        "resolver: the system resolver could not be asked (unavailable: Temporary failure in name resolution)");
  CHECK(item_detail(*probed, "127.0.0.1", "free.test") ==
        "resolver: the system resolver has no IPv4 answer for free.test");
  CHECK(item_detail(*probed, "127.0.0.1", "localhost") ==
        "resolver: the system resolver has no IPv4 answer for localhost");
  // The file alone decides: localhost is in sync there, the two others are to be added.
  CHECK(item_state_of(*probed, "127.0.0.1", "localhost") == item_state::matches);
  CHECK(item_state_of(*probed, "127.0.0.1", "kubernetes.docker.internal") == item_state::absent);
  auto p = entry.make_plan(*probed);
  REQUIRE(p.changes.size() == 1);
  CHECK(p.changes[0].reason == "add 127.0.0.1 kubernetes.docker.internal, 127.0.0.1 free.test");
}

TEST_CASE("hosts entry: without an attached resolver there is no check and no note") {
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  HostsEntry entry{"127.0.0.1", {"localhost", "kubernetes.docker.internal"}};
  ledgers books;
  auto probed = entry.probe(ctx, books);
  REQUIRE(probed);
  REQUIRE(probed->items.size() == 3);
  for (const auto& item : probed->items) CHECK(item.detail.find("resolver") == std::string::npos);
  CHECK(item_detail(*probed, "127.0.0.1", "localhost").empty());
}

TEST_CASE("hosts entry: the real resolver's answer for localhost on this machine is reported as it is") {
  SystemResolver system;
  resolver_answer direct = system.resolve("localhost");
  CHECK(direct.system_wide);
  const resolved_address* first = direct.first_of(address_family::ipv4);
  if (direct.status != resolve_status::answered || !first) {
    HOSTCFG_SKIP("localhost does not resolve to an IPv4 address on this machine");
    return;
  }
  for (const auto& a : direct.addresses) {
    auto ip = read_ip_address(a.text);
    REQUIRE(ip);
    CHECK(to_string(*ip) == a.text);  // inet_ntop form
    CHECK(ip->family == a.family);
  }
  MemoryFs fs = mac_tree();
  ScriptedPrivilege priv(mac_user(), answer::granted);
  context ctx(fs, priv, app);
  any_resolver resolver(system);
  ctx.attach(resolver);
  HostsEntry entry{"127.0.0.1", {"localhost"}};
  ledgers books;
  auto probed = entry.probe(ctx, books);
  REQUIRE(probed);
  std::string expected =
      first->text == "127.0.0.1"
          ? std::string("resolver: resolves to 127.0.0.1 as expected")
          : "resolver: the system resolver answers " + first->text +
                " first (DNS or another source answers before /etc/hosts)";
  CHECK(item_detail(*probed, "127.0.0.1", "localhost") == expected);
  CHECK(item_state_of(*probed, "127.0.0.1", "localhost") == item_state::matches);
  CHECK(SystemResolver::status_of(EAI_AGAIN) == resolve_status::unavailable);
  CHECK(SystemResolver::status_of(EAI_NONAME) == resolve_status::no_answer);
  CHECK(SystemResolver::status_of(EAI_FAIL) == resolve_status::failed);
}

TEST_CASE("fake resolver: case-insensitive scripts, unscripted names have no answer, non-canonical addresses fail") {
  FakeResolver fake;
  fake.answer("Host.Test", {"10.0.0.1", "fe80::1"}).answer("bad.test", {"010.0.0.1"});
  resolver_answer a = fake.resolve("host.test");
  CHECK(a.status == resolve_status::answered);
  REQUIRE(a.addresses.size() == 2);
  CHECK(a.addresses[1] == resolved_address{address_family::ipv6, "fe80::1"});
  CHECK(a.first_of(address_family::ipv6)->text == "fe80::1");
  CHECK_FALSE(a.system_wide);
  resolver_answer none = fake.resolve("other.test");
  CHECK(none.status == resolve_status::no_answer);
  CHECK(none.addresses.empty());
  resolver_answer bad = fake.resolve("bad.test");
  CHECK(bad.status == resolve_status::failed);
  CHECK(bad.detail == "scripted address '010.0.0.1' is not canonical");
  CHECK(fake.calls() == 3);
  CHECK(fake.asked() == std::vector<std::string>{"host.test", "other.test", "bad.test"});
}
