// Service-manager backends: launchctl argument vectors, label validation, the fake launchd's
// behaviour, the file-only backend, and the launchctl runner against a stand-in program.
#include "hostcfg/backend/service_manager.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "support/test_support.hpp"

using namespace hostcfg;
using strings = std::vector<std::string>;

static_assert(check_service_manager<FakeServiceManager>());
static_assert(check_service_manager<FileOnlyServiceManager>());
static_assert(check_service_manager<LaunchctlServiceManager>());
static_assert(check_service_manager<detail::launchctl_runner>());

TEST_CASE("domains are always named explicitly") {
  CHECK(launchd_domain::system().name() == "system");
  CHECK(launchd_domain::gui(501).name() == "gui/501");
  CHECK(launchd_domain::user(501).name() == "user/501");
  CHECK(launchd_domain::gui(501) != launchd_domain::user(501));
  CHECK(launchd_domain::gui(501) != launchd_domain::gui(502));
}

TEST_CASE("launchctl argument vectors use bootstrap/bootout/enable/kickstart/print with explicit domains") {
  CHECK(*launchctl_bootstrap_args(launchd_domain::system(), "/Library/LaunchDaemons/com.docker.vmnetd.plist") ==
        strings{"bootstrap", "system", "/Library/LaunchDaemons/com.docker.vmnetd.plist"});
  CHECK(*launchctl_bootstrap_args(launchd_domain::gui(501), "/Users/me/Library/LaunchAgents/a.b.plist") ==
        strings{"bootstrap", "gui/501", "/Users/me/Library/LaunchAgents/a.b.plist"});
  CHECK(*launchctl_bootout_args(launchd_domain::system(), "com.docker.vmnetd") ==
        strings{"bootout", "system/com.docker.vmnetd"});
  CHECK(*launchctl_enable_args(launchd_domain::user(501), "com.docker.socket") ==
        strings{"enable", "user/501/com.docker.socket"});
  CHECK(*launchctl_print_args(launchd_domain::gui(0), "x") == strings{"print", "gui/0/x"});
  // kickstart without -k: a running helper and the clients it serves are left alone.
  CHECK(*launchctl_kickstart_args(launchd_domain::system(), "com.docker.vmnetd") ==
        strings{"kickstart", "system/com.docker.vmnetd"});
  CHECK_FALSE(launchctl_kickstart_args(launchd_domain::system(), "-k"));
  CHECK(launchctl_print_disabled_args(launchd_domain::system()) == strings{"print-disabled", "system"});
  // A relative or unnormalized path is refused: launchctl would resolve it against its cwd.
  for (const char* path : {"LaunchDaemons/x.plist", "/Library//x.plist", "/Library/../x.plist", ""}) {
    auto args = launchctl_bootstrap_args(launchd_domain::system(), path);
    REQUIRE_FALSE(args);
    CHECK(args.error().is(errc::invalid_input));
    CHECK(args.error().reason == "the plist path must be absolute and normal");
  }
}

TEST_CASE("labels are validated before they reach a command line or a file name") {
  for (const char* good : {"com.docker.vmnetd", "homebrew.mxcl.dnscrypt-proxy", "io.github.lima-vm.socket_vmnet", "a"})
    CHECK(validate_label(good));
  struct row {
    std::string label;
    std::string reason;
  };
  const row bad[] = {
      {"", "empty label"},
      {std::string(256, 'a'), "longer than 255 bytes"},
      {".hidden", "starts with '.'"},
      {"-w", "starts with '-'"},
      {"com..x", "contains \"..\""},
      {"com/x", "contains a character other than letters, digits, '.', '_' or '-'"},
      {"com x", "contains a character other than letters, digits, '.', '_' or '-'"},
      {"com.x\n", "contains a character other than letters, digits, '.', '_' or '-'"},
      {"caf\xc3\xa9", "contains a character other than letters, digits, '.', '_' or '-'"},
  };
  for (const auto& r : bad) {
    auto ok = validate_label(r.label);
    REQUIRE_FALSE(ok);
    CHECK(ok.error().is(errc::invalid_input));
    CHECK(ok.error().reason == r.reason);
    CHECK(ok.error().hint == "use a reverse-DNS name such as com.example.helper");
    auto args = launchctl_bootout_args(launchd_domain::system(), r.label);
    REQUIRE_FALSE(args);
    CHECK(args.error().reason == r.reason);
  }
}

TEST_CASE("print-disabled output is read in both the old and the new spelling") {
  const std::string modern =
      "disabled services = {\n"
      "\t\"com.docker.vmnetd\" => disabled\n"
      "\t\"com.docker.socket\" => enabled\n"
      "}\n";
  const std::string legacy =
      "disabled services = {\n"
      "\t\"com.docker.vmnetd\" => true\n"
      "\t\"com.docker.socket\" => false\n"
      "}\n";
  for (const auto& out : {modern, legacy}) {
    CHECK(parse_print_disabled(out, "com.docker.vmnetd") == service_query::no);
    CHECK(parse_print_disabled(out, "com.docker.socket") == service_query::yes);
    CHECK(parse_print_disabled(out, "com.docker") == service_query::yes);  // no override: enabled
  }
  CHECK(parse_print_disabled("\t\"a\" => maybe\n", "a") == service_query::unknown);
}

TEST_CASE("launchctl exit statuses become errors that say what happened") {
  strings args{"bootstrap", "system", "/Library/LaunchDaemons/x.plist"};
  auto eio = launchctl_exit_error(5, args, "Bootstrap failed: 5: Input/output error\n");
  CHECK(eio.is_errno(EIO));
  CHECK(eio.message() ==
        "launchctl bootstrap system /Library/LaunchDaemons/x.plist: Input/output error (exit 5): Bootstrap failed: 5: "
        "Input/output error");
  auto missing = launchctl_exit_error(113, {"bootout", "system/x"}, "");
  CHECK(missing.is_errno(ESRCH));
  CHECK(missing.message() == "launchctl bootout system/x: service not found (exit 113)");
  auto headless = launchctl_exit_error(125, {"bootstrap", "gui/501", "/a.plist"}, "");
  CHECK(headless.is(errc::unavailable));
  CHECK(headless.message() ==
        "launchctl bootstrap gui/501 /a.plist: domain does not exist (exit 125) [no login session for gui/<uid> (a "
        "headless Mac?): use user/<uid>]");
  CHECK(launchctl_exit_error(200, {"print", "system/x"}, "weird").message() ==
        "launchctl print system/x: exit status 200: weird");
}

TEST_CASE("fake launchd: bootstrap, query, bootout and enable are recorded in order") {
  FakeServiceManager sm;
  auto sys = launchd_domain::system();
  CHECK(*sm.is_loaded(sys, "com.docker.vmnetd") == service_query::no);
  REQUIRE(sm.bootstrap(sys, "com.docker.vmnetd", "/Library/LaunchDaemons/com.docker.vmnetd.plist"));
  CHECK(*sm.is_loaded(sys, "com.docker.vmnetd") == service_query::yes);
  CHECK(*sm.is_loaded(launchd_domain::gui(501), "com.docker.vmnetd") == service_query::no);  // per domain
  CHECK(sm.plist_path(sys, "com.docker.vmnetd") == "/Library/LaunchDaemons/com.docker.vmnetd.plist");
  sm.set_disabled(sys, "com.docker.vmnetd");
  CHECK(*sm.is_enabled(sys, "com.docker.vmnetd") == service_query::no);
  auto enabled = sm.enable(sys, "com.docker.vmnetd");
  REQUIRE(enabled);
  CHECK_FALSE(enabled->skipped);
  CHECK(*sm.is_enabled(sys, "com.docker.vmnetd") == service_query::yes);
  REQUIRE(sm.bootout(sys, "com.docker.vmnetd"));
  CHECK(*sm.is_loaded(sys, "com.docker.vmnetd") == service_query::no);
  CHECK(sm.call_lines() == strings{
                               "is_loaded system/com.docker.vmnetd",
                               "bootstrap system /Library/LaunchDaemons/com.docker.vmnetd.plist",
                               "is_loaded system/com.docker.vmnetd",
                               "is_loaded gui/501/com.docker.vmnetd",
                               "is_enabled system/com.docker.vmnetd",
                               "enable system/com.docker.vmnetd",
                               "is_enabled system/com.docker.vmnetd",
                               "bootout system/com.docker.vmnetd",
                               "is_loaded system/com.docker.vmnetd",
                           });
  CHECK(sm.count("bootstrap") == 1);
  CHECK(sm.count("is_loaded") == 4);
}

TEST_CASE("fake launchd fails like launchd: EIO on a loaded label, not found on bootout, missing gui domain") {
  FakeServiceManager sm;
  auto sys = launchd_domain::system();
  sm.set_loaded(sys, "a.b", "/Library/LaunchDaemons/a.b.plist");
  auto again = sm.bootstrap(sys, "a.b", "/Library/LaunchDaemons/a.b.plist");
  REQUIRE_FALSE(again);
  CHECK(again.error().is_errno(EIO));
  auto gone = sm.bootout(sys, "not.loaded");
  REQUIRE_FALSE(gone);
  CHECK(gone.error().is_errno(ESRCH));
  CHECK(gone.error().message() == "launchctl bootout system/not.loaded: service not found (exit 113)");
  sm.remove_domain(launchd_domain::gui(501));
  auto headless = sm.bootstrap(launchd_domain::gui(501), "a.b", "/Users/u/Library/LaunchAgents/a.b.plist");
  REQUIRE_FALSE(headless);
  CHECK(headless.error().is(errc::unavailable));
  CHECK(sm.bootstrap(launchd_domain::user(501), "a.b", "/Users/u/Library/LaunchAgents/a.b.plist"));
}

TEST_CASE("fake launchd: kickstart starts a loaded job, ESRCH for one not loaded, and is counted") {
  FakeServiceManager sm;
  auto sys = launchd_domain::system();
  auto absent = sm.kickstart(sys, "com.example.helper");
  REQUIRE_FALSE(absent);
  CHECK(absent.error().is_errno(ESRCH));
  CHECK(absent.error().message() == "launchctl kickstart system/com.example.helper: service not found (exit 113)");
  CHECK(sm.kickstarts(sys, "com.example.helper") == 0);
  sm.set_loaded(sys, "com.example.helper", "/Library/LaunchDaemons/com.example.helper.plist");
  int seen = 0;
  sm.on_call([&](const FakeServiceManager::call& c) { seen += c.op == "kickstart"; });
  REQUIRE(sm.kickstart(sys, "com.example.helper"));
  CHECK(sm.kickstarts(sys, "com.example.helper") == 1);
  CHECK(seen == 1);
  sm.fail_next("kickstart", EPERM);
  auto refused = sm.kickstart(sys, "com.example.helper");
  REQUIRE_FALSE(refused);
  CHECK(refused.error().is_errno(EPERM));
  CHECK(sm.kickstarts(sys, "com.example.helper") == 1);
  CHECK(sm.call_lines().back() == "kickstart system/com.example.helper");
}

TEST_CASE("fake launchd: scripted failures fire once each, in order") {
  FakeServiceManager sm;
  auto sys = launchd_domain::system();
  sm.fail_next("bootstrap", EIO);
  sm.fail_next("bootstrap", EPERM);
  auto first = sm.bootstrap(sys, "a.b", "/x.plist");
  REQUIRE_FALSE(first);
  CHECK(first.error().is_errno(EIO));
  CHECK(first.error().message() == "launchctl bootstrap system/a.b: Input/output error (exit 5)");
  auto second = sm.bootstrap(sys, "a.b", "/x.plist");
  REQUIRE_FALSE(second);
  CHECK(second.error().is_errno(EPERM));
  CHECK(sm.bootstrap(sys, "a.b", "/x.plist"));
  CHECK(sm.loaded(sys, "a.b"));
  sm.fail_next("is_loaded", EACCES);
  auto query = sm.is_loaded(sys, "a.b");
  REQUIRE_FALSE(query);
  CHECK(query.error().is_errno(EACCES));
  CHECK(sm.count("bootstrap") == 3);
}

TEST_CASE("fake launchd: a slow bootout leaves the label loaded for N polls and bootstrap gets EIO meanwhile") {
  FakeServiceManager sm;
  auto sys = launchd_domain::system();
  sm.set_bootout_lag(2);
  sm.set_loaded(sys, "com.docker.vmnetd");
  REQUIRE(sm.bootout(sys, "com.docker.vmnetd"));
  auto early = sm.bootstrap(sys, "com.docker.vmnetd", "/Library/LaunchDaemons/com.docker.vmnetd.plist");
  REQUIRE_FALSE(early);
  CHECK(early.error().is_errno(EIO));  // home-manager#8829
  CHECK(*sm.is_loaded(sys, "com.docker.vmnetd") == service_query::yes);
  CHECK(*sm.is_loaded(sys, "com.docker.vmnetd") == service_query::yes);
  CHECK(*sm.is_loaded(sys, "com.docker.vmnetd") == service_query::no);
  CHECK(sm.bootstrap(sys, "com.docker.vmnetd", "/Library/LaunchDaemons/com.docker.vmnetd.plist"));
  CHECK(sm.count("is_loaded") == 3);
}

TEST_CASE("file-only backend skips loading with a note instead of failing") {
  FileOnlyServiceManager sm;
  auto sys = launchd_domain::system();
  CHECK(*sm.is_loaded(sys, "a.b") == service_query::unknown);
  CHECK(*sm.is_enabled(sys, "a.b") == service_query::unknown);
  for (auto outcome : {sm.bootstrap(sys, "a.b", "/x.plist"), sm.bootout(sys, "a.b"), sm.enable(sys, "a.b"),
                       sm.kickstart(sys, "a.b")}) {
    REQUIRE(outcome);
    CHECK(outcome->skipped);
    CHECK(outcome->note == "skipped: no launchd here");
  }
}

#ifndef __APPLE__
TEST_CASE("launchctl backend is unsupported off macOS") {
  LaunchctlServiceManager sm;
  auto loaded = sm.is_loaded(launchd_domain::system(), "a.b");
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().is(errc::unsupported));
  CHECK(loaded.error().message() ==
        "launchctl a.b: launchd exists only on macOS [use FileOnlyServiceManager for sandboxes and --root trees]");
  auto boot = sm.bootstrap(launchd_domain::system(), "a.b", "/x.plist");
  REQUIRE_FALSE(boot);
  CHECK(boot.error().is(errc::unsupported));
}
#endif

namespace {
// A stand-in for /bin/launchctl: logs its argv to a file and answers like launchctl does.
std::string make_fake_launchctl(const std::string& dir) {
  std::string path = dir + "/launchctl";
  std::ofstream out(path);
  out << "#!/bin/sh\n"
         "{ printf '[%s]' \"$@\"; echo; } >> '" << dir << "/argv.log'\n"
         "case \"$1 $2\" in\n"
         "  'print system/loaded.job') echo 'system/loaded.job = {'; exit 0;;\n"
         "  'print '*) echo 'Could not find service' >&2; exit 113;;\n"
         "  'print-disabled system') printf '\\t\"off.job\" => disabled\\n\\t\"on.job\" => enabled\\n'; exit 0;;\n"
         "  'bootstrap system') echo 'Bootstrap failed: 5: Input/output error' >&2; exit 5;;\n"
         "  'bootstrap '*) exit 0;;\n"
         "  'bootout '*) exit 0;;\n"
         "  'enable '*) exit 0;;\n"
         "  'kickstart system/loaded.job') exit 0;;\n"
         "  'kickstart '*) echo 'Could not find service' >&2; exit 113;;\n"
         "esac\n"
         "exit 64\n";
  out.close();
  ::chmod(path.c_str(), 0755);
  return path;
}
}  // namespace

TEST_CASE("launchctl runner spawns the program without a shell and maps its answers") {
  if (::access("/bin/sh", X_OK) != 0) {
    HOSTCFG_SKIP("/bin/sh not available for the stand-in launchctl");
    return;
  }
  char tmpl[] = "/tmp/hostcfg-launchctl-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  std::string dir = tmpl;
  detail::launchctl_runner sm(make_fake_launchctl(dir));
  auto sys = launchd_domain::system();
  CHECK(*sm.is_loaded(sys, "loaded.job") == service_query::yes);
  CHECK(*sm.is_loaded(sys, "other.job") == service_query::no);
  CHECK(*sm.is_enabled(sys, "off.job") == service_query::no);
  CHECK(*sm.is_enabled(sys, "on.job") == service_query::yes);
  auto eio = sm.bootstrap(sys, "a.b", "/Library/LaunchDaemons/a b;rm -rf x.plist");
  REQUIRE_FALSE(eio);
  CHECK(eio.error().is_errno(EIO));
  CHECK(eio.error().message() ==
        "launchctl bootstrap system /Library/LaunchDaemons/a b;rm -rf x.plist: Input/output error (exit 5): Bootstrap "
        "failed: 5: Input/output error");
  auto agent = sm.bootstrap(launchd_domain::gui(501), "a.b", "/Users/u/Library/LaunchAgents/a.b.plist");
  REQUIRE(agent);
  CHECK_FALSE(agent->skipped);
  CHECK(sm.bootout(launchd_domain::gui(501), "a.b"));
  CHECK(sm.enable(sys, "a.b"));
  CHECK(sm.kickstart(sys, "loaded.job"));
  auto not_loaded = sm.kickstart(sys, "other.job");
  REQUIRE_FALSE(not_loaded);
  CHECK(not_loaded.error().is_errno(ESRCH));
  auto bad_label = sm.bootout(sys, "a/b");
  REQUIRE_FALSE(bad_label);
  CHECK(bad_label.error().is(errc::invalid_input));
  std::ifstream log(dir + "/argv.log");
  std::string all((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  // The odd path reached the program as one argument: no shell parsed it.
  CHECK(all ==
        "[print][system/loaded.job]\n"
        "[print][system/other.job]\n"
        "[print-disabled][system]\n"
        "[print-disabled][system]\n"
        "[bootstrap][system][/Library/LaunchDaemons/a b;rm -rf x.plist]\n"
        "[bootstrap][gui/501][/Users/u/Library/LaunchAgents/a.b.plist]\n"
        "[bootout][gui/501/a.b]\n"
        "[enable][system/a.b]\n"
        "[kickstart][system/loaded.job]\n"
        "[kickstart][system/other.job]\n");
  auto missing = detail::run_program(dir + "/does-not-exist", {});
  // posix_spawn reports a missing program either at spawn time or as exit 127, by libc.
  CHECK((!missing || missing->exit_status == 127));
  std::remove((dir + "/argv.log").c_str());
  std::remove((dir + "/launchctl").c_str());
  ::rmdir(dir.c_str());
}

TEST_CASE("fake launchd: a bootout of the caller's own job unloads it and never answers success") {
  FakeServiceManager sm;
  auto sys = launchd_domain::system();
  sm.set_loaded(sys, "com.docker.vmnetd", "/Library/LaunchDaemons/com.docker.vmnetd.plist");
  sm.set_loaded(sys, "com.docker.socket");
  sm.set_caller_job(sys, "com.docker.vmnetd");
  // The observer sees each call before the fake acts on it: the job is still loaded then.
  std::vector<std::string> seen;
  sm.on_call([&](const FakeServiceManager::call& c) {
    seen.push_back(c.text() + (sm.loaded(sys, c.label) ? " (loaded)" : " (not loaded)"));
  });
  REQUIRE(sm.bootout(sys, "com.docker.socket"));  // another job: an ordinary bootout
  CHECK_FALSE(sm.caller_killed());
  auto killed = sm.bootout(sys, "com.docker.vmnetd");
  REQUIRE_FALSE(killed);
  CHECK(killed.error().is_errno(EINTR));
  CHECK(killed.error().message() ==
        "launchctl bootout system/com.docker.vmnetd: the calling process runs in this job and was ended by its "
        "bootout (SIGTERM)");
  CHECK(sm.caller_killed());
  CHECK_FALSE(sm.loaded(sys, "com.docker.vmnetd"));  // launchd finished the bootout all the same
  CHECK(seen == strings{"bootout system/com.docker.socket (loaded)", "bootout system/com.docker.vmnetd (loaded)"});
  sm.on_call(nullptr);
  CHECK(*sm.is_loaded(sys, "com.docker.vmnetd") == service_query::no);
  CHECK(seen.size() == 2);
  CHECK(sm.call_lines() == strings{"bootout system/com.docker.socket", "bootout system/com.docker.vmnetd",
                                   "is_loaded system/com.docker.vmnetd"});
}
