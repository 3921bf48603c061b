// uninstall through the elevated runner (converge.hpp, runner.hpp): a user process whose privilege
// backend cannot act as root in process hands every privileged revert to the runner in ONE call
// (the one prompt), as a revert batch; the runner reverts them as root from the root-owned record
// alone; the user process reverts its own items and writes only its own record. On MemoryFs, with
// the runner run in process as RootFor(user) through the real payload and reply bytes.
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/backend/service_manager.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/primitives/group.hpp>
#include <hostcfg/primitives/hosts_entry.hpp>
#include <hostcfg/primitives/launchd_plist.hpp>
#include <hostcfg/primitives/managed_file.hpp>
#include <hostcfg/primitives/shell_profile_path_edit.hpp>
#include <hostcfg/primitives/symlink_set.hpp>
#include <hostcfg/recipes/cli_links.hpp>
#include <hostcfg/runner.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "support/test_support.hpp"

using namespace hostcfg;
using strings = std::vector<std::string>;

namespace {

const char* const app = "com.docker.desktop";
const char* const src = "/Applications/Docker.app/Contents/Resources/bin";
const char* const system_record = "/var/lib/hostcfg/com.docker.desktop.record";
const char* const user_record = "/Users/alice/.local/state/hostcfg/com.docker.desktop.record";
const char* const plist_path = "/Library/LaunchDaemons/com.docker.vmnetd.plist";
const char* const stock_hosts = "127.0.0.1\tlocalhost\n255.255.255.255\tbroadcasthost\n";

user_identity alice() {
  return user_identity{501, 20, {20, 12, 61}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
}

MemoryFs mac_tree() {
  MemoryFs fs;
  for (const char* d : {"/etc", "/usr", "/usr/local", "/usr/local/bin", "/var", "/var/lib", "/Library",
                        "/Library/LaunchDaemons", "/Library/PrivilegedHelperTools", "/Applications",
                        "/Applications/Docker.app", "/Applications/Docker.app/Contents",
                        "/Applications/Docker.app/Contents/Resources", src, "/Users"})
    fs.add_dir(d, 0755, 0, 0);
  fs.add_file("/etc/hosts", stock_hosts, 0644, 0, 0);
  fs.add_file("/etc/app.conf", "original\n", 0644, 0, 0);
  fs.add_file("/etc/victim", "keep me\n", 0644, 0, 0);
  for (const char* cmd : {"docker", "kubectl"})
    fs.add_file(std::string(src) + "/" + cmd, std::string("#!/bin/sh\n# ") + cmd + "\n", 0755, 0, 0);
  fs.add_file("/Library/PrivilegedHelperTools/com.docker.vmnetd", "\x7f" "ELF vmnetd\n", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  fs.add_file("/Users/alice/.zshrc", "export EDITOR=vim\n", 0644, 501, 20);
  return fs;
}

// A user process that cannot elevate in process: elevated work goes to the runner, which here
// runs in process as RootFor(user) on the same MemoryFs with the fake launchd attached, through
// the record-format payload and reply, as the one-shot runner does over a pipe.
struct HandoffPrivilege {
  user_identity who;
  MemoryFs* fs;
  any_service_manager* services;
  answer script = answer::granted;
  std::vector<elevation_request> requests;
  std::vector<record> payloads;
  int asks = 0;
  const user_identity& user() const { return who; }
  actor elevated_actor() const { return actor::root(); }
  bool elevates_in_process() const { return false; }
  answer ask(const elevation_request&) {
    ++asks;
    return answer::unavailable;
  }
  result<elevated_outcome> run_elevated(const elevation_request& request, const record& payload) {
    requests.push_back(request);
    auto wire = parse_record(serialize_record(payload));  // what crosses the pipe
    if (!wire) return tl::unexpected(wire.error());
    payloads.push_back(*wire);
    if (script != answer::granted) return elevated_outcome{script, {}, std::nullopt};
    RootFor root(who);
    context ctx(*fs, root, wire->app_id);
    ctx.attach(*services);
    auto outcome = execute_handoff<ManagedFile, HostsEntry, SymlinkSet, LaunchdPlist>(ctx, *wire);
    auto reply = parse_record(serialize_record(encode_outcome(outcome, wire->app_id)));
    if (!reply) return tl::unexpected(reply.error());
    return decode_outcome(*reply);
  }
};

LaunchdPlist vmnetd() {
  LaunchdPlist p{docker_vmnetd_job()};
  p.poll_interval = std::chrono::milliseconds(0);
  return p;
}

auto links() {
  return cli_links(src, "/usr/local/bin", "/Users/alice/.docker/bin", ShellProfilePathEdit{"/Users/alice/.docker/bin"});
}

const HostsEntry hosts{"127.0.0.1", {"kubernetes.docker.internal"}};
const ManagedFile user_file{"/Users/alice/app.conf", "mine\n", 0600};

// Installs the whole set through the runner (granted): the state every uninstall below starts from.
void install(MemoryFs& fs, any_service_manager& sm) {
  HandoffPrivilege priv{alice(), &fs, &sm, answer::granted, {}, {}, 0};
  context ctx(fs, priv, app);
  ctx.attach(sm);
  auto report = converge(ctx, links(), hosts, vmnetd(), user_file);
  REQUIRE(report);
  REQUIRE(report->ok());
  REQUIRE(priv.requests.size() == 1);
  REQUIRE(fs.status_of("/usr/local/bin/docker"));
  REQUIRE(fs.status_of("/usr/local/bin/docker")->uid == 0);
  REQUIRE(fs.file_bytes("/etc/hosts")->find("kubernetes.docker.internal") != std::string::npos);
  REQUIRE(fs.status_of(plist_path));
  REQUIRE(fs.file_bytes("/Users/alice/app.conf") == std::optional<std::string>("mine\n"));
}

// Lines joined, for messages.
std::string joined(const strings& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// The user's record as it is now (an empty one when there is none yet).
record user_record_now(MemoryFs& fs) {
  auto bytes = fs.file_bytes(user_record);
  if (!bytes) return record{app, {}};
  auto parsed = parse_record(*bytes);
  REQUIRE(parsed);
  return *parsed;
}

// The diff lines of paths outside the user's home.
strings outside_home(const strings& diff) {
  strings out;
  for (const auto& line : diff)
    if (line.find("/Users/alice") == std::string::npos) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("uninstall as a user hands every privileged revert to the runner: one prompt, links, hosts, plist gone") {
  MemoryFs fs = mac_tree();
  FakeServiceManager fake;
  any_service_manager sm(fake);
  auto pristine = fs.take_snapshot();
  install(fs, sm);
  REQUIRE(fake.loaded(launchd_domain::system(), "com.docker.vmnetd"));

  HandoffPrivilege priv{alice(), &fs, &sm, answer::granted, {}, {}, 0};
  context ctx(fs, priv, app);
  ctx.attach(sm);
  auto report = uninstall(ctx, links(), hosts, vmnetd(), user_file);
  REQUIRE(report);
  CHECK(report->ok());
  // One runner start (the one prompt), listing every privileged revert; `ask` never used.
  REQUIRE(priv.requests.size() == 1);
  CHECK(priv.asks == 0);
  CHECK(report->prompts_shown == 1);
  CHECK(report->prompt_answer == std::optional<answer>(answer::granted));
  CHECK(priv.requests[0].reason == "com.docker.desktop needs administrator rights to remove 5 change(s) it made");
  INFO(joined(priv.requests[0].changes));
  CHECK(priv.requests[0].changes ==
        strings{"remove link /usr/local/bin/docker (hostcfg created it)",
                "remove link /usr/local/bin/kubectl (hostcfg created it)",
                "remove hosts section /etc/hosts (remove hostcfg's section)",
                "remove launchd job system/com.docker.vmnetd (bootout)",
                "remove launchd plist /Library/LaunchDaemons/com.docker.vmnetd.plist (hostcfg created it)"});
  // The batch says "revert", version 2, and carries parameters only: the three primitives.
  REQUIRE(priv.payloads.size() == 1);
  const record& payload = priv.payloads[0];
  REQUIRE(payload.find("handoff"));
  CHECK(payload.find("handoff")->get("mode") == "revert");
  CHECK(payload.find("handoff")->get("version") == "2");
  strings kinds;
  for (const auto& entry : payload.items) kinds.push_back(entry.first + "=" + entry.second.primitive);
  CHECK(kinds == strings{"handoff=handoff", "hosts:/etc/hosts=hosts_entry", "launchd:com.docker.vmnetd=launchd_plist",
                         "links:/usr/local/bin=symlink_set"});

  // Everything is as before the install: system part by the runner, the user's part here.
  CHECK(MemoryFs::diff(pristine, fs.take_snapshot()) == strings{});
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(stock_hosts));
  CHECK_FALSE(fs.status_of("/usr/local/bin/docker"));
  CHECK_FALSE(fs.status_of("/usr/local/bin/kubectl"));
  CHECK_FALSE(fs.status_of(plist_path));
  CHECK_FALSE(fake.loaded(launchd_domain::system(), "com.docker.vmnetd"));
  CHECK_FALSE(fs.status_of("/Users/alice/app.conf"));
  CHECK_FALSE(fs.status_of(system_record));
  CHECK_FALSE(fs.status_of(user_record));
  // The runner wrote the privileged record; this process wrote nothing there.
  CHECK_FALSE(report->system_record_written);
  CHECK(report->notes.empty());

  // The steps carry the runner's events, marked as admin, and the user's own event (sorted: the
  // order within a step is the primitive's business).
  std::vector<std::string> events;
  for (const auto& s : report->steps)
    for (const auto& e : s.applied.events)
      events.push_back(s.id + " " + event_kind_name(e.kind) + " " + e.path + (e.elevated ? " (as admin)" : ""));
  std::sort(events.begin(), events.end());
  CHECK(events == strings{"file:/Users/alice/app.conf changed /Users/alice/app.conf",
                          "hosts:/etc/hosts changed /etc/hosts (as admin)",
                          "launchd:com.docker.vmnetd changed /Library/LaunchDaemons/com.docker.vmnetd.plist (as admin)",
                          "launchd:com.docker.vmnetd changed system/com.docker.vmnetd (as admin)",
                          "links:/usr/local/bin changed /usr/local/bin/docker (as admin)",
                          "links:/usr/local/bin changed /usr/local/bin/kubectl (as admin)"});
  for (const auto& s : report->steps)
    if (!s.planned.needs_elevation()) CHECK_FALSE((s.elevation && s.elevation->handed_off));

  // Nothing is left: a second uninstall starts no runner and changes nothing.
  fs.clear_log();
  auto again = uninstall(ctx, links(), hosts, vmnetd(), user_file);
  REQUIRE(again);
  CHECK(priv.requests.size() == 1);
  CHECK(fs.mutating_ops() == 0);
}

TEST_CASE("uninstall declined through the runner: nothing privileged changes; the report names what stays") {
  for (answer a : {answer::declined, answer::cancelled, answer::unavailable}) {
    CAPTURE(answer_name(a));
    MemoryFs fs = mac_tree();
    FakeServiceManager fake;
    any_service_manager sm(fake);
    install(fs, sm);
    auto installed = fs.take_snapshot();
    auto system_bytes = fs.file_bytes(system_record);
    REQUIRE(system_bytes);

    HandoffPrivilege priv{alice(), &fs, &sm, a, {}, {}, 0};
    context ctx(fs, priv, app);
    ctx.attach(sm);
    fake.clear_calls();
    auto report = uninstall(ctx, links(), hosts, vmnetd(), user_file);
    REQUIRE(report);
    CHECK(priv.requests.size() == 1);
    CHECK(priv.asks == 0);
    CHECK(report->prompt_answer == std::optional<answer>(a));
    // Outside the user's home nothing changed, the root-owned record included; no launchd call.
    CHECK(outside_home(MemoryFs::diff(installed, fs.take_snapshot())) == strings{});
    CHECK(fs.file_bytes(system_record) == system_bytes);
    CHECK(fake.calls().empty());
    CHECK(fake.loaded(launchd_domain::system(), "com.docker.vmnetd"));
    // The user's own item is reverted all the same.
    CHECK_FALSE(fs.status_of("/Users/alice/app.conf"));
    // Each privileged item is skipped with the answer, and one note lists them and what to do.
    strings skipped;
    for (const auto& s : report->steps)
      for (const auto& e : s.applied.events)
        if (e.kind == event_kind::skipped) skipped.push_back(e.path + ": " + e.message);
    std::string refusal = std::string("needs elevation: prompt ") + answer_name(a);
    CHECK(skipped == strings{"/usr/local/bin/docker: " + refusal, "/usr/local/bin/kubectl: " + refusal,
                             "/etc/hosts: " + refusal, std::string(plist_path) + ": " + refusal});
    CHECK(report->notes ==
          strings{"4 item(s) that need admin rights to remove are still in place (prompt " + std::string(answer_name(a)) +
                  "): /usr/local/bin/docker, /usr/local/bin/kubectl, /etc/hosts, " + plist_path +
                  "; run the uninstall again as an administrator (e.g. with sudo) to remove them"});
    CHECK(report->needs_user_action());
    CHECK(report->render_text().find("next: 4 item(s) that need admin rights") != std::string::npos);
  }
}

TEST_CASE("uninstall: the runner in process (root) is unchanged: a declined prompt skips the same items") {
  MemoryFs fs = mac_tree();
  FakeServiceManager fake;
  any_service_manager sm(fake);
  install(fs, sm);
  auto installed = fs.take_snapshot();
  ScriptedPrivilege scripted(alice(), answer::declined);
  context ctx(fs, scripted, app);
  ctx.attach(sm);
  auto report = uninstall(ctx, links(), hosts, vmnetd(), user_file);
  REQUIRE(report);
  CHECK(scripted.prompts() == 1);
  CHECK(outside_home(MemoryFs::diff(installed, fs.take_snapshot())) == strings{});
  REQUIRE(report->notes.size() == 1);
  CHECK(report->notes[0].find("4 item(s) that need admin rights to remove are still in place (prompt declined)") == 0);
  // Granted in process: everything goes, no hand-off involved.
  ScriptedPrivilege granted(alice(), answer::granted);
  context root_ctx(fs, granted, app);
  root_ctx.attach(sm);
  auto gone = uninstall(root_ctx, links(), hosts, vmnetd(), user_file);
  REQUIRE(gone);
  CHECK(gone->ok());
  CHECK(granted.prompts() == 1);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(stock_hosts));
  CHECK_FALSE(fs.status_of("/usr/local/bin/docker"));
  CHECK_FALSE(fs.status_of(plist_path));
  CHECK_FALSE(fs.status_of(system_record));
  CHECK(gone->notes.empty());
  for (const auto& s : gone->steps) CHECK_FALSE((s.elevation && s.elevation->handed_off));
}

TEST_CASE("uninstall through the runner: a tampered user record cannot steer what root restores or removes") {
  MemoryFs fs = mac_tree();
  FakeServiceManager fake;
  any_service_manager sm(fake);
  ManagedFile conf{"/etc/app.conf", "ours\n", 0644};
  conf.take_over = true;
  ManagedFile victim{"/etc/victim", "keep me\n", 0644};
  {
    HandoffPrivilege priv{alice(), &fs, &sm, answer::granted, {}, {}, 0};
    context ctx(fs, priv, app);
    REQUIRE(converge(ctx, conf, hosts));
    REQUIRE(fs.file_bytes("/etc/app.conf") == std::optional<std::string>("ours\n"));
  }
  // The user forges their own record: other "original" bytes for the root-owned file, a claim
  // that root "created" /etc/victim, and a hosts item with lines to re-enable.
  record forged = user_record_now(fs);
  forged.put(record_item{"file:/etc/app.conf", "managed_file",
                          {{"created", "0"}, {"original", "pwned\n"}, {"original_mode", "511"}, {"written", "ours\n"}}});
  forged.put(record_item{"file:/etc/victim", "managed_file", {{"created", "1"}, {"written", "keep me\n"}}});
  forged.put(record_item{"hosts:/etc/hosts", "hosts_entry", {{"disabled", "6.6.6.6 evil\n"}}});
  fs.add_file(user_record, serialize_record(forged), 0600, 501, 20);

  HandoffPrivilege priv{alice(), &fs, &sm, answer::granted, {}, {}, 0};
  context ctx(fs, priv, app);
  auto report = uninstall(ctx, conf, victim, hosts);
  REQUIRE(report);
  REQUIRE(priv.payloads.size() == 1);
  // Only what the root-owned record holds went to the runner; /etc/victim did not.
  CHECK(priv.payloads[0].find("file:/etc/app.conf"));
  CHECK(priv.payloads[0].find("hosts:/etc/hosts"));
  CHECK_FALSE(priv.payloads[0].find("file:/etc/victim"));
  // Root restored the bytes and mode of its own record, not the forged ones.
  CHECK(fs.file_bytes("/etc/app.conf") == std::optional<std::string>("original\n"));
  CHECK(fs.status_of("/etc/app.conf")->mode == 0644);
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(stock_hosts));
  // The forged claim on /etc/victim was tried as the user only, and the kernel said no.
  CHECK(fs.file_bytes("/etc/victim") == std::optional<std::string>("keep me\n"));
  bool refused = false;
  for (const auto& s : report->steps)
    for (const auto& e : s.applied.events)
      if (e.path == "/etc/victim") refused = e.kind == event_kind::failed && !e.elevated &&
                                             e.failure && e.failure->is_errno(EACCES);
  CHECK(refused);
}

TEST_CASE("the runner refuses revert steps the root-owned record does not hold, and payloads it cannot read") {
  MemoryFs fs = mac_tree();
  FakeServiceManager fake;
  any_service_manager sm(fake);
  install(fs, sm);
  RootFor root(alice());
  context ctx(fs, root, app);
  ctx.attach(sm);
  // A user record claiming /etc/victim is of no weight: the runner does not even read it.
  record forged = user_record_now(fs);
  forged.put(record_item{"file:/etc/victim", "managed_file", {{"created", "1"}, {"written", "keep me\n"}}});
  fs.add_file(user_record, serialize_record(forged), 0600, 501, 20);
  record payload{app, {}};
  set_handoff_mode(payload, handoff_mode::revert);
  payload.put(ManagedFile{"/etc/victim", "keep me\n", 0644}.desired_state());
  payload.put(ManagedFile{"/etc/app.conf", "x\n", 0644}.desired_state());  // never installed: not recorded
  payload.put(record_item{"cmd:rm", "shell_command", {{"command", "rm -rf /"}}});
  auto before = fs.take_snapshot();
  auto outcome = execute_handoff<ManagedFile, HostsEntry>(ctx, payload);
  CHECK(outcome.mode == handoff_mode::revert);
  REQUIRE(outcome.events["file:/etc/victim"].size() == 1);
  CHECK(outcome.events["file:/etc/victim"][0].kind == event_kind::failed);
  CHECK(outcome.events["file:/etc/victim"][0].message ==
        "elevated runner file:/etc/victim: the root-owned record holds nothing of this step; refused as root (what "
        "only the user's record holds, the user reverts without admin rights)");
  CHECK(outcome.events["file:/etc/app.conf"].at(0).message.find("the root-owned record holds nothing") !=
        std::string::npos);
  CHECK(outcome.events.count("hosts:/etc/hosts") == 0);
  CHECK(outcome.events["cmd:rm"].at(0).message.find("unknown primitive kind") != std::string::npos);
  INFO(joined(MemoryFs::diff(before, fs.take_snapshot())));
  CHECK(MemoryFs::diff(before, fs.take_snapshot()) == strings{});

  // A newer payload version, or an unknown mode, is refused whole: nothing runs.
  for (std::string field : {"version", "mode"}) {
    CAPTURE(field);
    record odd{app, {}};
    set_handoff_mode(odd, handoff_mode::revert);
    odd.items.at("handoff").fields[field] = "9";
    odd.put(hosts.desired_state());
    auto refused = execute_handoff<ManagedFile, HostsEntry>(ctx, odd);
    REQUIRE(refused.failure);
    CHECK(refused.events.empty());
    CHECK(MemoryFs::diff(before, fs.take_snapshot()) == strings{});
  }
  // The reply says which mode was carried out; an apply reply is what version 1 runners wrote.
  elevated_outcome reverted;
  reverted.mode = handoff_mode::revert;
  auto decoded = decode_outcome(encode_outcome(reverted, app));
  REQUIRE(decoded);
  CHECK(decoded->mode == handoff_mode::revert);
  CHECK(encode_outcome(elevated_outcome{}, app).find("answer")->fields ==
        std::map<std::string, std::string>{{"answer", "granted"}});
}

TEST_CASE("uninstall through a runner that does not know revert batches reverts nothing privileged, and says so") {
  MemoryFs fs = mac_tree();
  FakeServiceManager fake;
  any_service_manager sm(fake);
  install(fs, sm);
  auto installed = fs.take_snapshot();
  // An older runner: reads the batch as an apply batch and answers without a mode.
  struct OldRunner : HandoffPrivilege {
    result<elevated_outcome> run_elevated(const elevation_request& request, const record& payload) {
      requests.push_back(request);
      record apply = payload;
      apply.erase("handoff");
      RootFor root(who);
      context ctx(*fs, root, payload.app_id);
      ctx.attach(*services);
      auto outcome = execute_handoff<ManagedFile, HostsEntry, SymlinkSet, LaunchdPlist>(ctx, apply);
      return decode_outcome(encode_outcome(outcome, payload.app_id));
    }
  };
  OldRunner priv{{alice(), &fs, &sm, answer::granted, {}, {}, 0}};
  context ctx(fs, priv, app);
  ctx.attach(sm);
  auto report = uninstall(ctx, links(), hosts, vmnetd(), user_file);
  REQUIRE(report);
  CHECK(priv.requests.size() == 1);
  CHECK(outside_home(MemoryFs::diff(installed, fs.take_snapshot())) == strings{});
  REQUIRE(report->notes.size() == 2);
  CHECK(report->notes[0] ==
        "the elevated runner does not know revert batches (is the helper older than the app?): nothing was reverted "
        "with admin rights");
  CHECK(report->notes[1].find("4 item(s) that need admin rights to remove are still in place (prompt unavailable)") ==
        0);
}

TEST_CASE("uninstall through the runner: a step the runner cannot rebuild is not in the prompt, and stays named") {
  MemoryFs fs = mac_tree();
  FakeServiceManager fake;
  any_service_manager sm(fake);
  // Installed by root in process: a group of two files (a group has no desired state to hand off).
  auto both = all_of(ManagedFile{"/etc/one.conf", "1\n", 0644}, ManagedFile{"/etc/two.conf", "2\n", 0644});
  {
    ScriptedPrivilege root(alice(), answer::granted);
    context ctx(fs, root, app);
    auto installed = converge(ctx, both, hosts);
    REQUIRE(installed);
    REQUIRE(installed->ok());
  }
  HandoffPrivilege priv{alice(), &fs, &sm, answer::granted, {}, {}, 0};
  context ctx(fs, priv, app);
  auto report = uninstall(ctx, both, hosts);
  REQUIRE(report);
  // One prompt, for the hosts section only; the group's files stay and are named.
  REQUIRE(priv.requests.size() == 1);
  CHECK(priv.requests[0].changes == strings{"remove hosts section /etc/hosts (remove hostcfg's section)"});
  CHECK(fs.file_bytes("/etc/hosts") == std::optional<std::string>(stock_hosts));
  CHECK(fs.file_bytes("/etc/one.conf") == std::optional<std::string>("1\n"));
  CHECK(fs.file_bytes("/etc/two.conf") == std::optional<std::string>("2\n"));
  CHECK(report->notes ==
        strings{"2 item(s) that need admin rights to remove are still in place (the elevated runner cannot revert "
                "them): /etc/two.conf, /etc/one.conf; run the uninstall again as an administrator (e.g. with sudo) "
                "to remove them"});
  // The root-owned record still holds them: an administrator's uninstall finishes the job.
  RootFor root(alice());
  context admin(fs, root, app);
  auto finished = uninstall(admin, both, hosts);
  REQUIRE(finished);
  CHECK(finished->ok());
  CHECK_FALSE(fs.status_of("/etc/one.conf"));
  CHECK_FALSE(fs.status_of("/etc/two.conf"));
  CHECK_FALSE(fs.status_of(system_record));
}

TEST_CASE("converge through the runner: a step it cannot be given says so in an event per change, never silently") {
  MemoryFs fs = mac_tree();
  FakeServiceManager fake;
  any_service_manager sm(fake);
  auto both = all_of(ManagedFile{"/etc/one.conf", "1\n", 0644}, ManagedFile{"/etc/two.conf", "2\n", 0644});
  HandoffPrivilege priv{alice(), &fs, &sm, answer::granted, {}, {}, 0};
  context ctx(fs, priv, app);
  auto report = converge(ctx, both, hosts);
  REQUIRE(report);
  REQUIRE(priv.requests.size() == 1);
  CHECK(fs.file_bytes("/etc/hosts")->find("kubernetes.docker.internal") != std::string::npos);
  CHECK_FALSE(fs.status_of("/etc/one.conf"));
  const step_report* group = nullptr;
  for (const auto& s : report->steps)
    if (s.id == both.id()) group = &s;
  REQUIRE(group);
  REQUIRE(group->applied.events.size() == 2);
  for (const auto& e : group->applied.events) {
    CHECK(e.kind == event_kind::skipped);
    CHECK(e.message.find("cannot be handed to the elevated runner (no desired state)") != std::string::npos);
  }
  CHECK(std::find(report->out_of_sync.begin(), report->out_of_sync.end(), both.id()) != report->out_of_sync.end());
}
