// LaunchdPlist through the whole protocol on MemoryFs with the fake launchd: place/owner/mode,
// semantic compare, reload only on change, bootout waits, EIO retried once, unsafe program paths,
// revert, file-only sandboxes, agents and headless Macs, and a fault sweep.
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/backend/service_manager.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/format/plist_xml.hpp>
#include <hostcfg/primitives/launchd_plist.hpp>
#include <hostcfg/testing/crash_sweep.hpp>

#include <string>
#include <vector>

#include "support/test_support.hpp"

using namespace hostcfg;
using strings = std::vector<std::string>;

namespace {

user_identity mac_user() {
  return user_identity{501, 20, {20, 12, 61, 80}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
}

const char* app = "com.docker.desktop";
const char* daemon_plist = "/Library/LaunchDaemons/com.docker.vmnetd.plist";
const char* helper = "/Library/PrivilegedHelperTools/com.docker.vmnetd";

MemoryFs mac_tree() {
  MemoryFs fs;
  fs.add_dir("/Library/LaunchDaemons", 0755, 0, 0);
  fs.add_dir("/Library/PrivilegedHelperTools", 01755, 0, 0);
  fs.add_file(helper, "\x7f" "ELF-ish helper", 0755, 0, 0);
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  return fs;
}

std::string vmnetd_xml() { return *write_plist_xml(*docker_vmnetd_job().to_plist()); }

LaunchdPlist fast(LaunchdPlist p) {
  p.poll_interval = std::chrono::milliseconds(0);
  return p;
}

/// A vmnetd job hostcfg did not write (fewer keys than docker_vmnetd_job()): what take_over replaces.
const std::string foreign_vmnetd_plist =
    "<plist><dict><key>Label</key><string>com.docker.vmnetd</string><key>Program</key>"
    "<string>/Library/PrivilegedHelperTools/com.docker.vmnetd</string></dict></plist>";

/// What nearly every case here starts from: a Mac's tree in MemoryFs, alice answering the
/// prompts with `reply`, and a context for `app` with the fake launchd attached. One fixture so
/// the cases differ only in what they do, and a change to the setup is made once. The members
/// are in construction order: the context holds references to the backends before it.
struct launchd_env {
  MemoryFs fs = mac_tree();                  ///< the Mac's disk (cases may add files before converging)
  ScriptedPrivilege priv;                    ///< alice's answers; counts the prompts
  context<MemoryFs, ScriptedPrivilege> ctx;  ///< the run's context, launchd attached
  FakeServiceManager fake;                   ///< the fake launchd, recording its calls
  any_service_manager sm;                    ///< `fake` as the context's service manager

  explicit launchd_env(answer reply = answer::granted) : priv(mac_user(), reply), ctx(fs, priv, app), sm(fake) {
    ctx.attach(sm);
  }

  /// Puts a vmnetd plist hostcfg did not write (`foreign_vmnetd_plist`, root-owned, `mode`) in
  /// place and converges a take_over of it; returns the primitive, for the uninstall.
  LaunchdPlist take_over_foreign(mode_type mode) {
    fs.add_file(daemon_plist, foreign_vmnetd_plist, mode, 0, 0);
    auto job = fast(LaunchdPlist{docker_vmnetd_job()});
    job.take_over = true;
    REQUIRE(converge(ctx, job));
    return job;
  }
};

/// `launchd_env` where alice declines every prompt (for changes that must not need one).
struct launchd_env_declining : launchd_env {
  launchd_env_declining() : launchd_env(answer::declined) {}
};

}  // namespace

TEST_CASE_FIXTURE(launchd_env, "a daemon is written root:wheel 0644 with one prompt and bootstrapped in the system domain") {
  auto report = converge(ctx, fast(LaunchdPlist{docker_vmnetd_job()}));
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(report->out_of_sync.empty());
  CHECK(priv.prompts() == 1);
  REQUIRE(priv.requests().size() == 1);
  CHECK(priv.requests()[0].changes ==
        strings{"create launchd plist /Library/LaunchDaemons/com.docker.vmnetd.plist (root:wheel 0644)",
                "create launchd job system/com.docker.vmnetd (bootstrap)"});
  CHECK(fs.file_bytes(daemon_plist) == std::optional<std::string>(vmnetd_xml()));
  auto st = fs.status_of(daemon_plist);
  REQUIRE(st);
  CHECK(st->uid == 0);
  CHECK(st->gid == 0);
  CHECK(st->mode == 0644);
  CHECK(fake.loaded(launchd_domain::system(), "com.docker.vmnetd"));
  CHECK(fake.call_lines() == strings{
                                 "is_loaded system/com.docker.vmnetd",
                                 "is_enabled system/com.docker.vmnetd",
                                 "bootstrap system /Library/LaunchDaemons/com.docker.vmnetd.plist",
                                 "is_loaded system/com.docker.vmnetd",
                                 "is_loaded system/com.docker.vmnetd",
                                 "is_enabled system/com.docker.vmnetd",
                             });
  // Its undo data lives in the root-owned record.
  auto record = fs.file_bytes("/var/lib/hostcfg/com.docker.desktop.record");
  REQUIRE(record);
  CHECK(record->find("item launchd:com.docker.vmnetd") != std::string::npos);
}

TEST_CASE_FIXTURE(launchd_env, "L4: the same job again makes no write, no bootout, no bootstrap and no prompt") {
  auto job = fast(LaunchdPlist{docker_vmnetd_job()});
  REQUIRE(converge(ctx, job));
  fs.clear_log();
  fake.clear_calls();
  auto again = converge(ctx, job);
  REQUIRE(again);
  CHECK(fs.mutating_ops() == 0);
  CHECK(priv.prompts() == 1);
  CHECK(fake.count("bootout") == 0);
  CHECK(fake.count("bootstrap") == 0);
  for (const auto& s : again->steps) CHECK(s.planned.empty());
}

TEST_CASE_FIXTURE(launchd_env, "key order, comments, whitespace and binary form do not make a job differ") {
  auto job = fast(LaunchdPlist{docker_vmnetd_job()});
  REQUIRE(converge(ctx, job));
  // Someone rewrote it by hand: other key order, a comment, 2-space indentation, Apple Computer DTD.
  fs.add_file(daemon_plist,
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple Computer//DTD PLIST 1.0//EN\" "
              "\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n"
              "  <!-- the privileged helper -->\n"
              "  <key>Sockets</key><dict><key>Listener</key><dict><key>SockPathName</key>"
              "<string>/var/run/com.docker.vmnetd.sock</string><key>SockPathMode</key><integer>438</integer></dict></dict>\n"
              "  <key>RunAtLoad</key> <true />\n"
              "  <key>ProgramArguments</key><array><string>/Library/PrivilegedHelperTools/com.docker.vmnetd</string></array>\n"
              "  <key>Program</key><string>/Library/PrivilegedHelperTools/com.docker.vmnetd</string>\n"
              "  <key>Label</key><string>com.docker.vmnetd</string>\n"
              "</dict>\n</plist>",
              0644, 0, 0);
  fake.clear_calls();
  fs.clear_log();
  auto again = converge(ctx, job);
  REQUIRE(again);
  CHECK(fs.mutating_ops() == 0);
  CHECK(fake.count("bootout") == 0);
  REQUIRE(again->steps.size() == 1);
  CHECK(again->steps[0].planned.empty());
  // SockPathMode as a string is a different job: types matter.
  std::string typed = vmnetd_xml();
  typed.replace(typed.find("<integer>438</integer>"), 22, "<string>438</string>");
  fs.add_file(daemon_plist, typed, 0644, 0, 0);
  auto probed = job.probe(ctx, ledgers{});
  REQUIRE(probed);
  const item_probe* file = probed->find("launchd:com.docker.vmnetd");
  REQUIRE(file);
  CHECK(file->state == item_state::conflict);  // not in these (empty) ledgers: not ours
  CHECK(file->detail.find("~ Sockets.Listener.SockPathMode: \"438\" -> 438") != std::string::npos);
}

TEST_CASE_FIXTURE(launchd_env, "changed content is replaced atomically, then booted out, waited for, and bootstrapped") {
  REQUIRE(converge(ctx, fast(LaunchdPlist{docker_vmnetd_job()})));
  auto changed_job = docker_vmnetd_job();
  changed_job.program_arguments.push_back("--debug");
  fake.set_bootout_lag(2);
  fake.clear_calls();
  auto report = converge(ctx, fast(LaunchdPlist{changed_job}));
  REQUIRE(report);
  CHECK(report->ok());
  REQUIRE(report->steps.size() == 1);
  const auto& planned = report->steps[0].planned.changes;
  REQUIRE(planned.size() == 2);
  CHECK(planned[0].reason == "+ ProgramArguments[1]");
  CHECK(planned[1].reason == "reload: the job changed (bootout, wait until gone, bootstrap)");
  CHECK(fs.file_bytes(daemon_plist) == std::optional<std::string>(*write_plist_xml(*changed_job.to_plist())));
  CHECK(fake.call_lines() == strings{
                                 "is_loaded system/com.docker.vmnetd",
                                 "is_enabled system/com.docker.vmnetd",
                                 "bootout system/com.docker.vmnetd",
                                 "is_loaded system/com.docker.vmnetd",  // still there (lag 1)
                                 "is_loaded system/com.docker.vmnetd",  // still there (lag 2)
                                 "is_loaded system/com.docker.vmnetd",  // gone
                                 "bootstrap system /Library/LaunchDaemons/com.docker.vmnetd.plist",
                                 "is_loaded system/com.docker.vmnetd",
                                 "is_loaded system/com.docker.vmnetd",
                                 "is_enabled system/com.docker.vmnetd",
                             });
}

TEST_CASE_FIXTURE(launchd_env, "bootstrap failing with EIO is retried once after waiting; a bootout that never ends fails") {
  fake.fail_next("bootstrap", EIO);
  auto report = converge(ctx, fast(LaunchdPlist{docker_vmnetd_job()}));
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(fake.count("bootstrap") == 2);
  CHECK(fake.loaded(launchd_domain::system(), "com.docker.vmnetd"));

  auto changed_job = docker_vmnetd_job();
  changed_job.run_at_load = false;
  auto slow = fast(LaunchdPlist{changed_job});
  slow.bootout_polls = 3;
  fake.set_bootout_lag(10);
  auto stuck = converge(ctx, slow);
  REQUIRE(stuck);
  CHECK_FALSE(stuck->ok());
  const auto& events = stuck->steps[0].applied.events;
  REQUIRE(events.size() == 2);
  CHECK(events[0].kind == event_kind::changed);
  CHECK(events[1].kind == event_kind::failed);
  REQUIRE(events[1].failure);
  CHECK(events[1].failure->is(errc::timed_out));
  CHECK(events[1].message == "bootout system/com.docker.vmnetd: still loaded after 3 polls [the job may be slow to exit; run again]");
  CHECK(fake.count("bootstrap") == 2);  // never bootstrapped over a lingering job
}

TEST_CASE_FIXTURE(launchd_env, "L2: a plist with the right job but wrong owner/mode is repaired without a reload") {
  auto job = fast(LaunchdPlist{docker_vmnetd_job()});
  REQUIRE(converge(ctx, job));
  REQUIRE(fs.lchown(actor::root(), daemon_plist, 501, 20));
  REQUIRE(fs.chmod(actor::root(), daemon_plist, 0664));
  fake.clear_calls();
  auto report = converge(ctx, job);
  REQUIRE(report);
  CHECK(report->ok());
  const auto& before = report->steps[0].before.items;
  const item_probe* file = report->steps[0].before.find("launchd:com.docker.vmnetd");
  REQUIRE(file);
  CHECK(before.size() == 3);
  CHECK(file->state == item_state::differs);
  CHECK(file->detail ==
        "owner 501:20 mode 0664, want root:wheel 0644 (launchd ignores a daemon plist with another owner or a "
        "group/world-writable mode)");
  auto st = fs.status_of(daemon_plist);
  CHECK(st->uid == 0);
  CHECK(st->gid == 0);
  CHECK(st->mode == 0644);
  CHECK(fake.count("bootout") == 0);
  CHECK(fake.count("bootstrap") == 0);
}

TEST_CASE("L3: a daemon whose program others could replace is refused, naming the unsafe path") {
  struct row {
    std::string program;
    std::string unsafe;
  };
  const row table[] = {
      {"/opt/homebrew/bin/socket_vmnet", "/opt/homebrew/bin is owned by uid 501, not root"},
      {"/usr/local/shared/helper", "/usr/local/shared is writable by group or others (mode 0775)"},
      {"/usr/local/link/helper", "/usr/local/link is a symlink (name the real path)"},
      {"/usr/local/bin/user-helper", "/usr/local/bin/user-helper is owned by uid 501, not root"},
  };
  for (const auto& r : table) {
    launchd_env env;
    env.fs.add_dir("/opt", 0755, 0, 0);
    env.fs.add_dir("/opt/homebrew/bin", 0755, 501, 80);
    env.fs.add_file("/opt/homebrew/bin/socket_vmnet", "x", 0755, 501, 80);
    env.fs.add_dir("/usr/local/shared", 0775, 0, 80);
    env.fs.add_dir("/usr/local/bin", 0755, 0, 0);
    env.fs.add_file("/usr/local/bin/user-helper", "x", 0755, 501, 20);
    env.fs.add_symlink("/usr/local/link", "/Library/PrivilegedHelperTools");
    launchd_job job = docker_vmnetd_job(r.program);
    auto report = converge(env.ctx, fast(LaunchdPlist{job}));
    REQUIRE(report);
    INFO(r.program);
    const item_probe* program = report->steps[0].before.find("launchd:com.docker.vmnetd:program");
    REQUIRE(program);
    CHECK(program->state == item_state::conflict);
    CHECK(program->current == r.unsafe);
    CHECK(program->detail.find("unsafe program path for a root daemon: " + r.unsafe) == 0);
    CHECK(report->steps[0].planned.empty());
    CHECK_FALSE(env.fs.status_of(daemon_plist));
    CHECK(env.fake.count("bootstrap") == 0);
    CHECK(env.priv.prompts() == 0);
    CHECK(report->out_of_sync == strings{"launchd:com.docker.vmnetd"});
  }
}

TEST_CASE_FIXTURE(launchd_env, "revert boots the job out, waits, removes the plist and forgets the record") {
  auto job = fast(LaunchdPlist{docker_vmnetd_job()});
  REQUIRE(converge(ctx, job));
  fake.set_bootout_lag(1);
  fake.clear_calls();
  auto removed = uninstall(ctx, job);
  REQUIRE(removed);
  CHECK(removed->ok());
  CHECK(priv.prompts() == 2);
  CHECK(priv.requests()[1].changes == strings{"remove launchd job system/com.docker.vmnetd (bootout)",
                                              "remove launchd plist /Library/LaunchDaemons/com.docker.vmnetd.plist "
                                              "(hostcfg created it)"});
  CHECK_FALSE(fs.status_of(daemon_plist));
  CHECK(fs.status_of(helper));  // the binary belongs to whoever installed it (a ManagedFile step)
  CHECK(fake.call_lines() == strings{"bootout system/com.docker.vmnetd", "is_loaded system/com.docker.vmnetd",
                                     "is_loaded system/com.docker.vmnetd"});
  CHECK_FALSE(fake.loaded(launchd_domain::system(), "com.docker.vmnetd"));
  CHECK_FALSE(fs.file_bytes("/var/lib/hostcfg/com.docker.desktop.record"));
}

TEST_CASE_FIXTURE(launchd_env, "revert leaves a job that changed since we wrote it loaded and in place") {
  auto job = fast(LaunchdPlist{docker_vmnetd_job()});
  REQUIRE(converge(ctx, job));
  std::string edited = vmnetd_xml();
  edited.replace(edited.find("<true/>"), 7, "<false/>");
  fs.add_file(daemon_plist, edited, 0644, 0, 0);
  fake.clear_calls();
  auto removed = uninstall(ctx, job);
  REQUIRE(removed);
  const auto& events = removed->steps[0].applied.events;
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == event_kind::skipped);
  REQUIRE(events[0].failure);
  CHECK(events[0].failure->is(errc::drifted));
  CHECK(fs.file_bytes(daemon_plist) == std::optional<std::string>(edited));
  CHECK(fake.count("bootout") == 0);
}

TEST_CASE_FIXTURE(launchd_env, "a foreign job is a conflict; take_over replaces it and revert restores its bytes") {
  const std::string foreign = foreign_vmnetd_plist;
  fs.add_file(daemon_plist, foreign, 0644, 0, 0);
  fake.set_loaded(launchd_domain::system(), "com.docker.vmnetd", daemon_plist);
  auto refused = converge(ctx, fast(LaunchdPlist{docker_vmnetd_job()}));
  REQUIRE(refused);
  const item_probe* file = refused->steps[0].before.find("launchd:com.docker.vmnetd");
  REQUIRE(file);
  CHECK(file->state == item_state::conflict);
  CHECK(file->detail ==
        "a launchd job hostcfg did not write is there (set take_over to replace it): + ProgramArguments; + RunAtLoad; "
        "+ Sockets");
  CHECK(fs.file_bytes(daemon_plist) == std::optional<std::string>(foreign));
  CHECK(fake.count("bootout") == 0);

  auto taking = fast(LaunchdPlist{docker_vmnetd_job()});
  taking.take_over = true;
  auto taken = converge(ctx, taking);
  REQUIRE(taken);
  CHECK(taken->ok());
  CHECK(fs.file_bytes(daemon_plist) == std::optional<std::string>(vmnetd_xml()));
  CHECK(fake.count("bootout") == 1);  // it was loaded: reloaded with the new content
  auto restored = uninstall(ctx, taking);
  REQUIRE(restored);
  CHECK(restored->ok());
  CHECK(fs.file_bytes(daemon_plist) == std::optional<std::string>(foreign));
}

TEST_CASE_FIXTURE(launchd_env, "a privileged record whose original_mode is not a mode: revert fails cleanly, plist left") {
  auto taking = take_over_foreign(0644);
  hostcfg_test::rewrite_record_line(fs, "/var/lib/hostcfg/com.docker.desktop.record", "field original_mode 420",
                                    "field original_mode 0x1a4", 0, 0);
  auto undone = uninstall(ctx, taking);
  REQUIRE(undone);
  CHECK_FALSE(undone->ok());
  bool named = false;
  for (const auto& step : undone->steps)
    for (const auto& e : step.applied.events)
      named = named || (e.failure && e.failure->is(errc::corrupt_record) &&
                        e.failure->message().find("original_mode is not a file mode") != std::string::npos);
  CHECK(named);
  CHECK(fs.file_bytes(daemon_plist) == std::optional<std::string>(vmnetd_xml()));
}

TEST_CASE("without launchd (no backend, or the file-only one) loading is skipped, not failed") {
  for (bool attach_file_only : {false, true}) {
    MemoryFs fs = mac_tree();
    ScriptedPrivilege priv(mac_user(), answer::granted);
    context ctx(fs, priv, app);
    FileOnlyServiceManager file_only;
    any_service_manager sm(file_only);
    if (attach_file_only) ctx.attach(sm);
    auto report = converge(ctx, fast(LaunchdPlist{docker_vmnetd_job()}));
    REQUIRE(report);
    CHECK(report->ok());
    CHECK(fs.file_bytes(daemon_plist) == std::optional<std::string>(vmnetd_xml()));
    const auto& events = report->steps[0].applied.events;
    REQUIRE(events.size() == 2);
    CHECK(events[1].kind == event_kind::skipped);
    CHECK(events[1].message == "skipped: no launchd here");
    auto again = converge(ctx, fast(LaunchdPlist{docker_vmnetd_job()}));
    REQUIRE(again);
    CHECK(again->steps[0].planned.empty());
    auto removed = uninstall(ctx, fast(LaunchdPlist{docker_vmnetd_job()}));
    REQUIRE(removed);
    CHECK(removed->ok());
    CHECK_FALSE(fs.status_of(daemon_plist));
  }
}

TEST_CASE_FIXTURE(launchd_env_declining, "an agent lives in the user's LaunchAgents, owned by the user, loaded in gui/<uid> without a prompt") {
  launchd_job job;
  job.label = "com.docker.helper-agent";
  job.program_arguments = {"/Applications/Docker.app/Contents/MacOS/agent", "--serve"};
  job.keep_alive = plist_value(plist_dict{{"SuccessfulExit", false}});
  auto agent = fast(LaunchdPlist{job, LaunchdPlist::scope::agent});
  auto report = converge(ctx, agent);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 0);
  std::string path = "/Users/alice/Library/LaunchAgents/com.docker.helper-agent.plist";
  auto st = fs.status_of(path);
  REQUIRE(st);
  CHECK(st->uid == 501);
  CHECK(st->gid == 20);
  CHECK(st->mode == 0644);
  CHECK(fs.status_of("/Users/alice/Library/LaunchAgents")->uid == 501);
  CHECK(fake.plist_path(launchd_domain::gui(501), "com.docker.helper-agent") == path);

  // Headless Mac: no gui/<uid>; probe says why, and the user domain works.
  MemoryFs fs2 = mac_tree();
  context ctx2(fs2, priv, app);
  FakeServiceManager headless;
  headless.remove_domain(launchd_domain::gui(501));
  any_service_manager sm2(headless);
  ctx2.attach(sm2);
  auto failed = converge(ctx2, agent);
  REQUIRE(failed);
  const item_probe* service = failed->steps[0].before.find("launchd:com.docker.helper-agent:job");
  REQUIRE(service);
  CHECK(service->state == item_state::unreadable);
  CHECK(service->detail.find("domain does not exist (exit 125)") != std::string::npos);
  CHECK(service->detail.find("use user/<uid>") != std::string::npos);
  auto user_domain = agent;
  user_domain.agent_in_user_domain = true;
  auto ok = converge(ctx2, user_domain);
  REQUIRE(ok);
  CHECK(ok->ok());
  CHECK(headless.loaded(launchd_domain::user(501), "com.docker.helper-agent"));
}

TEST_CASE_FIXTURE(launchd_env, "a loaded but disabled job is enabled, not reloaded") {
  auto job = fast(LaunchdPlist{docker_socket_link_job("/Users/alice")});
  REQUIRE(converge(ctx, job));
  fake.set_disabled(launchd_domain::system(), "com.docker.socket");
  fake.clear_calls();
  auto report = converge(ctx, job);
  REQUIRE(report);
  CHECK(report->ok());
  const item_probe* service = report->steps[0].before.find("launchd:com.docker.socket:job");
  REQUIRE(service);
  CHECK(service->current == "loaded, disabled");
  CHECK(service->detail.find("it will not start at boot") != std::string::npos);
  CHECK(fake.count("enable") == 1);
  CHECK(fake.count("bootout") == 0);
  CHECK(*fake.is_enabled(launchd_domain::system(), "com.docker.socket") == service_query::yes);
}

TEST_CASE("jobs are validated like launchd does, naming the key") {
  struct row {
    launchd_job job;
    std::string message;
  };
  auto base = [] {
    launchd_job j;
    j.label = "com.example.job";
    j.program_arguments = {"/usr/bin/true"};
    return j;
  };
  std::vector<row> table;
  {
    auto j = base();
    j.label = "";
    table.push_back({j, "validate launchd label: empty label [use a reverse-DNS name such as com.example.helper]"});
  }
  {
    auto j = base();
    j.program_arguments.clear();
    table.push_back({j, "validate launchd job com.example.job ProgramArguments: the job has neither Program nor ProgramArguments"});
  }
  {
    auto j = base();
    j.program_arguments = {"bin/true"};
    table.push_back({j, "validate launchd job com.example.job ProgramArguments[0]: not an absolute normal path: \"bin/true\""});
  }
  {
    auto j = base();
    j.standard_out_path = "/var/log/../x.log";
    table.push_back({j, "validate launchd job com.example.job StandardOutPath: not an absolute normal path: \"/var/log/../x.log\""});
  }
  {
    auto j = base();
    j.keep_alive = plist_value("yes");
    table.push_back({j, "validate launchd job com.example.job KeepAlive: must be a bool or a dict"});
  }
  {
    auto j = base();
    j.start_interval = 0;
    table.push_back({j, "validate launchd job com.example.job StartInterval: must be a positive number of seconds"});
  }
  {
    auto j = base();
    j.environment_variables = plist_dict{{"PATH", 1}};
    table.push_back({j, "validate launchd job com.example.job EnvironmentVariables.PATH: must be a string"});
  }
  {
    auto j = base();
    j.run_at_load = true;
    j.extra = plist_dict{{"RunAtLoad", false}};
    table.push_back({j, "validate launchd job com.example.job RunAtLoad: set both as a typed field and in extra"});
  }
  {
    auto j = base();
    j.program_arguments.push_back("a\x01" "b");
    table.push_back({j, "write plist ProgramArguments[1]: character U+0001 at byte 1 cannot be represented in XML 1.0 "
                        "[remove control characters from the value]"});
  }
  for (const auto& r : table) {
    auto v = r.job.to_plist();
    REQUIRE_FALSE(v);
    CHECK(v.error().is(errc::invalid_input));
    CHECK(v.error().message() == r.message);
  }
}

TEST_CASE("builders: the vmnetd job equals the seed's plist; the boot task re-creates the socket link") {
  auto vmnetd = docker_vmnetd_job();
  vmnetd.extra = plist_dict{{"Version", "59"}};
  auto value = vmnetd.to_plist();
  REQUIRE(value);
  std::string corpus = hostcfg_test::corpus_dir() + "/plists/com.docker.vmnetd-heredoc-extract-trailing-blank-line.plist";
  FILE* f = std::fopen(corpus.c_str(), "rb");
  if (f) {
    std::string bytes;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, n);
    std::fclose(f);
    auto seed = read_plist(bytes);
    REQUIRE(seed);
    CHECK(plist_equal(*seed, *value));
    CHECK(plist_diff(*seed, *value).empty());
  } else {
    HOSTCFG_SKIP("no plist corpus");
  }
  auto link = docker_socket_link_job("/Users/alice").to_plist();
  REQUIRE(link);
  CHECK(*write_plist_xml(*link) ==
        std::string(plist_xml_header) +
            "<dict>\n\t<key>Label</key>\n\t<string>com.docker.socket</string>\n\t<key>ProgramArguments</key>\n\t<array>\n"
            "\t\t<string>/bin/ln</string>\n\t\t<string>-s</string>\n\t\t<string>-f</string>\n"
            "\t\t<string>/Users/alice/.docker/run/docker.sock</string>\n\t\t<string>/var/run/docker.sock</string>\n"
            "\t</array>\n\t<key>RunAtLoad</key>\n\t<true/>\n</dict>\n</plist>\n");
}

TEST_CASE("fault sweep: every failing filesystem step leaves no half-written plist, and a re-run converges") {
  std::size_t ops = 0;
  {
    launchd_env env;
    env.fs.clear_log();
    REQUIRE(converge(env.ctx, fast(LaunchdPlist{docker_vmnetd_job()})));
    ops = env.fs.op_log().size();
  }
  REQUIRE(ops > 5);
  for (std::size_t n = 1; n <= ops; ++n) {
    launchd_env env;
    env.fs.clear_log();
    env.fs.fail_at(n, EIO);
    auto first = converge(env.ctx, fast(LaunchdPlist{docker_vmnetd_job()}));
    env.fs.disarm();
    std::string failed_op;
    for (const auto& op : env.fs.op_log())
      if (op.error == EIO) failed_op = op.op + " " + op.path;
    INFO("failing operation " << n << ": " << failed_op);
    // The injected EIO surfaces as a failed step, an item left out of sync or a note, never as
    // silent success. (The record store's own directory listing and sync are converge's business.)
    // A failed directory sync is best effort by design (env.fs.hpp sync_directory): never a failure.
    bool record_store = failed_op.find("/hostcfg") != std::string::npos ||
                        failed_op.find(".hostcfg-chain") != std::string::npos || failed_op.rfind("sync_dir", 0) == 0;
    bool noted = first && !first->steps.empty() && !first->steps[0].applied.notes.empty();
    if (!record_store) CHECK((!first || !first->ok() || first->needs_user_action() || noted));
    auto bytes = env.fs.file_bytes(daemon_plist);
    CHECK((!bytes || *bytes == vmnetd_xml()));
    // A job is never loaded from a plist that is not fully there.
    if (env.fake.loaded(launchd_domain::system(), "com.docker.vmnetd")) CHECK(bytes == std::optional<std::string>(vmnetd_xml()));
    auto second = converge(env.ctx, fast(LaunchdPlist{docker_vmnetd_job()}));
    REQUIRE(second);
    CHECK(second->ok());
    CHECK(env.fs.file_bytes(daemon_plist) == std::optional<std::string>(vmnetd_xml()));
    CHECK(env.fake.loaded(launchd_domain::system(), "com.docker.vmnetd"));
    CHECK(env.fs.status_of(daemon_plist)->uid == 0);
  }
}

namespace {

const char* record_path = "/var/lib/hostcfg/com.docker.desktop.record";
const char* pending_line = "field pending bootout\n";

bool has(const std::optional<std::string>& text, const std::string& part) {
  return text && text->find(part) != std::string::npos;
}

/// What a self-revert (the helper's own uninstall) returns and leaves, the way the helper calls it.
struct self_revert_run {
  apply_report applied;
  ledgers books;
};

template <class Ctx>
self_revert_run run_self_revert(Ctx& ctx, const LaunchdPlist& job) {
  auto loaded = detail::load_ledgers(ctx);
  REQUIRE(loaded);
  ledgers books = *loaded;
  grant g;
  g.elevated = true;
  launchd_revert_options own;
  own.self = true;
  auto applied = job.revert(ctx, g, books, own);
  REQUIRE(store_record_merged(ctx.fs, ctx.system_record, books.system, loaded->system));
  return {applied, books};
}

}  // namespace

TEST_CASE_FIXTURE(launchd_env, "a self-revert removes the plist and records that before its bootout, which is last and not waited for") {
  auto job = fast(LaunchdPlist{docker_vmnetd_job()});
  REQUIRE(converge(ctx, job));
  fake.set_bootout_lag(3);  // the job's own process is still exiting: waiting could not see it gone
  fake.clear_calls();
  // What a power loss at the moment of the bootout would leave (only synced directory entries).
  std::optional<MemoryFs> at_bootout;
  bool loaded_at_bootout = false;
  fake.on_call([&](const FakeServiceManager::call& c) {
    if (c.op != "bootout") return;
    at_bootout = fs.after_crash(MemoryFs::crash_keep::none);
    loaded_at_bootout = fake.loaded(launchd_domain::system(), "com.docker.vmnetd");
  });
  auto run = run_self_revert(ctx, job);
  fake.on_call(nullptr);
  CHECK(fake.call_lines() == strings{"bootout system/com.docker.vmnetd"});
  REQUIRE(at_bootout);
  CHECK(loaded_at_bootout);
  CHECK_FALSE(at_bootout->status_of(daemon_plist));
  CHECK(has(at_bootout->file_bytes(record_path), pending_line));
  CHECK(has(at_bootout->file_bytes(record_path), "field created 1\n"));
  const auto& events = run.applied.events;
  REQUIRE(events.size() == 2);
  CHECK(events[0].item_id == "launchd:com.docker.vmnetd");
  CHECK(events[0].kind == event_kind::changed);
  CHECK(events[0].message == "removed");
  CHECK(events[1].item_id == "launchd:com.docker.vmnetd:job");
  CHECK(events[1].kind == event_kind::changed);
  CHECK(events[1].path == "system/com.docker.vmnetd");
  CHECK(events[1].message == "booted out");
  // The bootout returned (this caller did not run inside the job): nothing is left to record.
  CHECK(run.books.system.find("launchd:com.docker.vmnetd") == nullptr);
  CHECK_FALSE(fs.file_bytes(record_path));
  CHECK_FALSE(fs.status_of(daemon_plist));
  CHECK(fs.status_of(helper));
}

TEST_CASE_FIXTURE(launchd_env, "a self-revert whose bootout ends the caller: nothing follows it, and a later uninstall clears the record") {
  auto job = fast(LaunchdPlist{docker_vmnetd_job()});
  REQUIRE(converge(ctx, job));
  fake.set_caller_job(launchd_domain::system(), "com.docker.vmnetd");
  fake.clear_calls();
  std::optional<std::string> record_at_bootout;
  bool plist_at_bootout = true;
  fake.on_call([&](const FakeServiceManager::call& c) {
    if (c.op != "bootout") return;
    record_at_bootout = fs.file_bytes(record_path);
    plist_at_bootout = fs.status_of(daemon_plist).has_value();
  });
  auto run = run_self_revert(ctx, job);
  fake.on_call(nullptr);
  CHECK(fake.caller_killed());
  CHECK(fake.call_lines() == strings{"bootout system/com.docker.vmnetd"});  // no wait, nothing after
  CHECK_FALSE(plist_at_bootout);
  CHECK(has(record_at_bootout, pending_line));
  CHECK_FALSE(fake.loaded(launchd_domain::system(), "com.docker.vmnetd"));
  const auto& events = run.applied.events;
  REQUIRE(events.size() == 2);
  CHECK(events[0].message == "removed");
  CHECK(events[1].kind == event_kind::failed);
  REQUIRE(events[1].failure);
  CHECK(events[1].failure->is_errno(EINTR));
  // What the dead helper left: no plist, a record saying only the bootout is left.
  CHECK(fs.file_bytes(record_path) == record_at_bootout);

  // The installer's uninstall later: one prompt for that bootout, which finds the job gone.
  fake.clear_calls();
  auto removed = uninstall(ctx, job);
  REQUIRE(removed);
  CHECK(removed->ok());
  REQUIRE(priv.requests().size() == 2);
  CHECK(priv.requests()[1].changes ==
        strings{"remove launchd job system/com.docker.vmnetd (bootout; its plist was already removed by an "
                "unfinished uninstall)"});
  CHECK(fake.call_lines() == strings{"bootout system/com.docker.vmnetd"});
  const auto& after = removed->steps[0].applied.events;
  REQUIRE(after.size() == 2);
  CHECK(after[0].kind == event_kind::kept);
  CHECK(after[0].message == "not loaded");
  CHECK(after[1].kind == event_kind::kept);
  CHECK(after[1].message == "already removed before the bootout");
  CHECK_FALSE(fs.file_bytes(record_path));
  CHECK_FALSE(fs.status_of(daemon_plist));
}

TEST_CASE_FIXTURE(launchd_env, "crash window: the helper died after removing its plist, before the bootout; probe, uninstall and converge finish it") {
  auto job = fast(LaunchdPlist{docker_vmnetd_job()});
  REQUIRE(converge(ctx, job));
  // The helper's disk as it was when it reached its bootout: the process dies right there.
  std::optional<MemoryFs> died;
  fake.on_call([&](const FakeServiceManager::call& c) {
    if (c.op == "bootout") died = fs.after_crash(MemoryFs::crash_keep::none);
  });
  run_self_revert(ctx, job);
  fake.on_call(nullptr);
  REQUIRE(died);

  for (const bool by_uninstall : {true, false}) {
    CAPTURE(by_uninstall);
    MemoryFs later = *died;
    ScriptedPrivilege installer(mac_user(), answer::granted);
    context again(later, installer, app);
    FakeServiceManager launchd;  // launchd still runs the job: nobody booted it out
    launchd.set_loaded(launchd_domain::system(), "com.docker.vmnetd", daemon_plist);
    any_service_manager sm2(launchd);
    again.attach(sm2);
    auto books = detail::load_ledgers(again);
    REQUIRE(books);
    auto probed = job.probe(again, *books);
    REQUIRE(probed);
    const item_probe* file = probed->find("launchd:com.docker.vmnetd");
    const item_probe* service = probed->find("launchd:com.docker.vmnetd:job");
    REQUIRE(file);
    REQUIRE(service);
    CHECK(file->state == item_state::absent);
    CHECK(service->state == item_state::differs);
    CHECK(service->current == "loaded, enabled");
    CHECK(service->detail ==
          "loaded, but its plist /Library/LaunchDaemons/com.docker.vmnetd.plist is gone: an uninstall of the job by "
          "itself removed it and did not finish the bootout");
    launchd.clear_calls();
    if (by_uninstall) {
      auto removed = uninstall(again, job);
      REQUIRE(removed);
      CHECK(removed->ok());
      CHECK(installer.prompts() == 1);
      CHECK(launchd.call_lines() == strings{"bootout system/com.docker.vmnetd", "is_loaded system/com.docker.vmnetd"});
      const auto& events = removed->steps[0].applied.events;
      REQUIRE(events.size() == 2);
      CHECK(events[0].kind == event_kind::changed);
      CHECK(events[0].message == "booted out");
      CHECK(events[1].message == "already removed before the bootout");
      CHECK_FALSE(launchd.loaded(launchd_domain::system(), "com.docker.vmnetd"));
      CHECK_FALSE(later.status_of(daemon_plist));
      CHECK_FALSE(later.file_bytes(record_path));
    } else {
      // Converge wants the job installed: the plist comes back, the stale job is booted out and
      // bootstrapped from it, and the record no longer says a bootout is pending.
      auto report = converge(again, job);
      REQUIRE(report);
      CHECK(report->ok());
      CHECK(report->out_of_sync.empty());
      REQUIRE(installer.requests().size() == 1);
      CHECK(installer.requests()[0].changes ==
            strings{"create launchd plist /Library/LaunchDaemons/com.docker.vmnetd.plist (root:wheel 0644)",
                    "modify launchd job system/com.docker.vmnetd (reload: the job changed (bootout, wait until gone, "
                    "bootstrap))"});
      CHECK(launchd.call_lines() == strings{"is_loaded system/com.docker.vmnetd", "is_enabled system/com.docker.vmnetd",
                                            "bootout system/com.docker.vmnetd", "is_loaded system/com.docker.vmnetd",
                                            "bootstrap system /Library/LaunchDaemons/com.docker.vmnetd.plist",
                                            "is_loaded system/com.docker.vmnetd", "is_loaded system/com.docker.vmnetd",
                                            "is_enabled system/com.docker.vmnetd"});
      CHECK(later.file_bytes(daemon_plist) == std::optional<std::string>(vmnetd_xml()));
      CHECK(launchd.loaded(launchd_domain::system(), "com.docker.vmnetd"));
      REQUIRE(later.file_bytes(record_path));
      CHECK_FALSE(has(later.file_bytes(record_path), pending_line));
      CHECK(has(later.file_bytes(record_path), "field created 1\n"));
    }
  }
}

TEST_CASE_FIXTURE(launchd_env, "a self-revert of a job it took over restores the original first; a crash then leaves it in place") {
  const std::string foreign = foreign_vmnetd_plist;
  auto job = take_over_foreign(0600);
  REQUIRE(fs.file_bytes(daemon_plist) == std::optional<std::string>(vmnetd_xml()));
  fake.set_caller_job(launchd_domain::system(), "com.docker.vmnetd");
  std::optional<std::string> plist_at_bootout;
  fake.on_call([&](const FakeServiceManager::call& c) {
    if (c.op == "bootout") plist_at_bootout = fs.file_bytes(daemon_plist);
  });
  auto run = run_self_revert(ctx, job);
  fake.on_call(nullptr);
  CHECK(plist_at_bootout == std::optional<std::string>(foreign));
  REQUIRE(run.applied.events.size() == 2);
  CHECK(run.applied.events[0].message == "restored the job it replaced");
  REQUIRE(fs.status_of(daemon_plist));
  CHECK(fs.status_of(daemon_plist)->mode == 0600);
  CHECK(has(fs.file_bytes(record_path), pending_line));
  // The installer's uninstall later, had the helper died before its bootout (launchd still runs
  // the job): the restored job is not taken for drift; it stays, the job is booted out.
  FakeServiceManager launchd;
  launchd.set_loaded(launchd_domain::system(), "com.docker.vmnetd", daemon_plist);
  any_service_manager sm2(launchd);
  ctx.attach(sm2);
  auto removed = uninstall(ctx, job);
  REQUIRE(removed);
  CHECK(removed->ok());
  CHECK(launchd.call_lines() == strings{"bootout system/com.docker.vmnetd", "is_loaded system/com.docker.vmnetd"});
  CHECK_FALSE(launchd.loaded(launchd_domain::system(), "com.docker.vmnetd"));
  CHECK(fs.file_bytes(daemon_plist) == std::optional<std::string>(foreign));
  CHECK_FALSE(fs.file_bytes(record_path));
}

TEST_CASE("an agent whose LaunchAgents directory hostcfg made: uninstall removes it, also straight after a crash at any point") {
  launchd_job job;
  job.label = "com.docker.helper-agent";
  job.program_arguments = {"/Applications/Docker.app/Contents/MacOS/agent"};
  auto agent = fast(LaunchdPlist{job, LaunchdPlist::scope::agent});
  const auto original_tree = mac_tree().take_snapshot();  // no /Users/alice/Library at all
  {
    launchd_env_declining env;
    REQUIRE(converge(env.ctx, agent));
    CHECK(env.fs.status_of("/Users/alice/Library/LaunchAgents"));
    const auto bytes = env.fs.file_bytes(env.ctx.user_record.path);
    REQUIRE(bytes);
    auto rec = parse_record(*bytes, "r");
    REQUIRE(rec);
    REQUIRE(rec->find("launchd:com.docker.helper-agent"));
    CHECK(rec->find("launchd:com.docker.helper-agent")->get("dirs") ==
          "/Users/alice/Library\n/Users/alice/Library/LaunchAgents\n");
    REQUIRE(uninstall(env.ctx, agent));
    CHECK(MemoryFs::diff(original_tree, env.fs.take_snapshot()) == std::vector<std::string>{});
  }
  auto run = [&agent](bool undo) {
    return [&agent, undo](MemoryFs& fs) -> result<converge_report> {
      ScriptedPrivilege priv(mac_user(), answer::declined);
      context ctx(fs, priv, app);
      FakeServiceManager fake;  // a fresh launchd: a reboot unloads the agent anyway
      any_service_manager sm(fake);
      ctx.attach(sm);
      return undo ? uninstall(ctx, agent) : converge(ctx, agent);
    };
  };
  testing::crash_sweep_options options;
  // The record and its own directories (~/.local/state/hostcfg) are not judged (README: Status).
  options.ignore = [](const std::string& path) { return path.rfind("/Users/alice/.local", 0) == 0; };
  options.uninstall = run(true);
  auto report = testing::crash_sweep("LaunchAgents agent, then uninstall", mac_tree(), run(false), options);
  MESSAGE(report.text());
  CHECK(report.ok());
  CHECK(report.points > 100);
}
