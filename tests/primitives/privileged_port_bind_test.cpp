// PrivilegedPortBind through converge against a real privileged helper (root, Linux): no prompt
// when the helper runs, one prompt to start it, decline in the seed's words, port-in-use as a
// conflict, uninstall closes the socket.
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/backend/service_manager.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/runner.hpp>
#include <hostcfg/helper/server.hpp>
#include <hostcfg/primitives/privileged_port_bind.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "support/real_fs.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;
using strings = std::vector<std::string>;

namespace {

user_identity user() {
  return user_identity{501, 20, {20}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
}

MemoryFs tree() {
  MemoryFs fs;
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  return fs;
}

/// A root-owned 0755 directory under /var/lib/hostcfg-tests holding the helper socket; removed at the end.
struct helper_dir : hostcfg_test::root_scratch_dir {
  helper_dir() : root_scratch_dir("hcb") {}  // short: a socket path has ~100 bytes at most
  std::string socket() const { return path + "/h.sock"; }
};

/// A helper serving uid 0 (the test process) on its own thread.
struct helper_thread {
  std::optional<helper::Server> server;
  std::thread loop;
  explicit helper_thread(const std::string& socket) {
    helper::server_config c;
    c.socket_path = socket;
    c.allowed_uid = 0;
    auto s = helper::Server::listen(c);
    if (!s) return;
    server.emplace(std::move(*s));
    loop = std::thread([this] { (void)server->run(); });
  }
  ~helper_thread() {
    if (server) server->stop();
    if (loop.joinable()) loop.join();
  }
};

std::uint16_t free_port(std::uint16_t from) {
  for (std::uint16_t p = from; p > 600; --p)
    if (helper::detail::bind_socket(*helper::make_bind_request(helper::transport::tcp, "127.0.0.1", p), true, true)) return p;
  return 0;
}

const char* app = "com.example.app";

}  // namespace

TEST_CASE("with the helper running, the port is bound through it without a prompt, and recorded") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a real helper)"); return; }
  helper_dir dir;
  helper_thread running(dir.socket());
  REQUIRE(running.server);
  MemoryFs fs = tree();
  ScriptedPrivilege priv(user(), answer::declined);
  context ctx(fs, priv, app);
  const std::uint16_t port = free_port(720);
  PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", port, dir.socket()};
  web.helper_only = true;
  auto report = converge(ctx, web);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 0);
  REQUIRE(*web.socket);
  REQUIRE(report->steps[0].applied.events.size() == 1);
  CHECK(report->steps[0].applied.events[0].message == "bound through the privileged helper at " + dir.socket());
  CHECK(report->out_of_sync.empty());
  const auto rec = fs.file_bytes("/Users/alice/.local/state/hostcfg/com.example.app.record");
  REQUIRE(rec);
  CHECK(rec->find("port:tcp:127.0.0.1:" + std::to_string(port)) != std::string::npos);
  CHECK(rec->find("field via helper\n") != std::string::npos);
  // In sync now: a second converge plans nothing and keeps the same socket.
  const int fd = web.socket->get();
  auto again = converge(ctx, web);
  REQUIRE(again);
  CHECK(again->steps[0].planned.empty());
  CHECK(web.socket->get() == fd);
  // Uninstall closes it: the port is free again.
  auto removed = uninstall(ctx, web);
  REQUIRE(removed);
  CHECK(!*web.socket);
  // (The helper closes its own copy just after sending it; allow it a moment under load.)
  bool free_again = false;
  for (int i = 0; i < 100 && !free_again; ++i) {
    free_again = static_cast<bool>(
        helper::detail::bind_socket(*helper::make_bind_request(helper::transport::tcp, "127.0.0.1", port), false, true));
    if (!free_again) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(free_again);
}

TEST_CASE("a port the user may bind is bound directly, with no helper and no prompt, and recorded as direct") {
  MemoryFs fs = tree();
  ScriptedPrivilege priv(user(), answer::declined);
  context ctx(fs, priv, app);
  std::uint16_t port = 0;  // a free port >= 1024: anyone may bind it
  for (std::uint16_t p = 40123; p < 40300 && port == 0; ++p)
    if (helper::detail::bind_socket(*helper::make_bind_request(helper::transport::tcp, "127.0.0.1", p), false, true))
      port = p;
  REQUIRE(port != 0);
  PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", port, "/nonexistent/helper.sock"};
  auto report = converge(ctx, web);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 0);
  REQUIRE(*web.socket);
  const auto rec = fs.file_bytes("/Users/alice/.local/state/hostcfg/com.example.app.record");
  REQUIRE(rec);
  CHECK(rec->find("field via direct\n") != std::string::npos);
  REQUIRE(uninstall(ctx, web));
  CHECK(!*web.socket);
}

TEST_CASE("helper not running: one prompt; declined gives the seed's message and no socket") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a real helper)"); return; }
  helper_dir dir;
  MemoryFs fs = tree();
  ScriptedPrivilege priv(user(), answer::declined);
  context ctx(fs, priv, app);
  PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", 80, dir.socket()};
  web.helper_only = true;
  web.helper_label = "com.example.porthelper";
  auto report = converge(ctx, web);
  REQUIRE(report);
  CHECK(priv.prompts() == 1);
  REQUIRE(priv.requests()[0].changes.size() == 1);
  // The prompt names the one change that needs it; the bind itself is the user's part.
  CHECK(priv.requests()[0].changes[0] == "modify privileged helper " + dir.socket() +
                                             " (start it as launchd job system/com.example.porthelper, then bind "
                                             "TCP 127.0.0.1:80 through it)");
  REQUIRE(report->steps[0].applied.events.size() == 1);
  const auto& e = report->steps[0].applied.events[0];
  CHECK(e.kind == event_kind::skipped);
  REQUIRE(e.failure);
  CHECK(e.failure->is(errc::declined));
  CHECK(e.message == "Ports are not available: exposing port TCP 127.0.0.1:80 -> 0.0.0.0:0: failed to connect to " +
                         dir.socket() + ": is the privileged helper running?: the prompt to start it was declined: dial "
                         "unix " + dir.socket() + ": connect: No such file or directory [retry and allow the prompt, "
                         "or use a port >= 1024 such as 8080]");
  CHECK(!*web.socket);
  // Declined is a recorded decision (converge does not list it as out of sync); still unbound.
  REQUIRE(report->steps[0].after);
  CHECK(report->steps[0].after->items[0].state == item_state::absent);
}

TEST_CASE("helper not running: a granted prompt starts it and the bind goes through it") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a real helper)"); return; }
  helper_dir dir;
  MemoryFs fs = tree();
  ScriptedPrivilege priv(user(), answer::granted);
  context ctx(fs, priv, app);
  const std::uint16_t port = free_port(719);
  PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", port, dir.socket()};
  web.helper_only = true;
  std::unique_ptr<helper_thread> started;
  int starts = 0;
  web.start_helper = [&] {
    ++starts;
    started = std::make_unique<helper_thread>(dir.socket());
    return static_cast<bool>(started->server);
  };
  auto report = converge(ctx, web);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 1);
  CHECK(starts == 1);
  CHECK(*web.socket);
  CHECK(report->out_of_sync.empty());
}

TEST_CASE("a port in use is a conflict: nothing planned, no prompt, reported out of sync") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root"); return; }
  MemoryFs fs = tree();
  ScriptedPrivilege priv(user(), answer::granted);
  context ctx(fs, priv, app);
  const std::uint16_t port = free_port(718);
  auto holder = helper::detail::bind_socket(*helper::make_bind_request(helper::transport::tcp, "127.0.0.1", port), false, true);
  REQUIRE(holder);
  PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", port, "/var/tmp/absent-helper.sock"};
  auto probed = web.probe(ctx, ledgers{});
  REQUIRE(probed);
  CHECK(probed->items[0].state == item_state::conflict);
  CHECK(probed->items[0].detail == "TCP 127.0.0.1:" + std::to_string(port) + " is already in use by another program");
  auto report = converge(ctx, web);
  REQUIRE(report);
  CHECK(report->steps[0].planned.empty());
  CHECK(priv.prompts() == 0);
  CHECK(report->out_of_sync.size() == 1);
}

TEST_CASE("a non-canonical address is refused by probe") {
  MemoryFs fs = tree();
  ScriptedPrivilege priv(user(), answer::granted);
  context ctx(fs, priv, app);
  PrivilegedPortBind web{helper::transport::tcp, "127.000.0.1", 80, "/var/tmp/x.sock"};
  auto probed = web.probe(ctx, ledgers{});
  REQUIRE(!probed);
  CHECK(probed.error().is(errc::invalid_input));
}

TEST_CASE("a helper of another protocol version: probe says so (conflict, no prompt) and names the fix") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a root-owned socket directory)"); return; }
  helper_dir dir;
  // An "older helper": answers the hello with a frame of protocol version 2.
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = dir.socket();
  REQUIRE(path.size() < sizeof addr.sun_path);
  std::copy(path.begin(), path.end(), addr.sun_path);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  std::thread older([listener] {
    int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    char buf[256];
    (void)::read(c, buf, sizeof buf);
    const std::string reply = helper::detail::header(helper::frame_type::hello_reply, 0, helper::protocol_version + 1);
    (void)::write(c, reply.data(), reply.size());
    ::close(c);
  });
  MemoryFs fs = tree();
  ScriptedPrivilege priv(user(), answer::granted);
  context ctx(fs, priv, app);
  PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", 80, path};
  web.helper_only = true;
  web.helper_timeout_ms = 2000;
  auto report = converge(ctx, web);
  older.join();
  ::close(listener);
  REQUIRE(report);
  CHECK(priv.prompts() == 0);  // a prompt cannot fix another version
  CHECK_FALSE(*web.socket);
  REQUIRE(report->steps.at(0).before.items.size() == 1);
  const auto& item = report->steps[0].before.items[0];
  CHECK(item.state == item_state::conflict);
  CHECK(item.current.find("version mismatch") != std::string::npos);
  CHECK(item.detail.find("protocol version 2") != std::string::npos);
  CHECK(item.detail.find("reinstall the app") != std::string::npos);
  CHECK(report->out_of_sync.size() == 1);
}


namespace {

/// A fake launchd whose kickstart of `label` really starts a helper on a thread (serving uid 0).
struct launchd_with_helper {
  FakeServiceManager fake;
  any_service_manager sm{fake};
  std::unique_ptr<helper_thread> started;
  launchd_with_helper(const std::string& label, const std::string& socket) {
    fake.on_call([this, label, socket](const FakeServiceManager::call& c) {
      if (c.op == "kickstart" && c.label == label && fake.loaded(launchd_domain::system(), label) && !started)
        started = std::make_unique<helper_thread>(socket);
    });
  }
};

const char* label = "com.example.porthelper";

/// TCP 127.0.0.1:`port` through the helper at `socket` only (this machine may let anyone bind
/// low ports), started as launchd job `label`.
PrivilegedPortBind through_helper(const std::string& socket, std::uint16_t port) {
  PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", port, socket};
  web.helper_only = true;
  web.helper_label = label;
  return web;
}

// A user process that cannot elevate in process: the elevated part goes to the runner, which
// here runs in process as RootFor(user) with the fake launchd attached, through the
// record-format payload and reply, as the one-shot runner does over a pipe.
struct HandoffPrivilege {
  user_identity who;
  any_service_manager* services;
  answer script = answer::granted;
  std::vector<elevation_request> requests;
  std::vector<record> payloads;
  launchd_job_allowlist startable{{label}};  ///< compiled into a real runner
  MemoryFs root_fs = tree();                 ///< the runner's disk
  const user_identity& user() const { return who; }
  actor elevated_actor() const { return actor::root(); }
  bool elevates_in_process() const { return false; }
  answer ask(const elevation_request&) { return answer::unavailable; }
  result<elevated_outcome> run_elevated(const elevation_request& request, const record& payload) {
    requests.push_back(request);
    auto wire = parse_record(serialize_record(payload));
    if (!wire) return tl::unexpected(wire.error());
    payloads.push_back(*wire);
    if (script != answer::granted) return elevated_outcome{script, {}, std::nullopt};
    RootFor root(who);
    context ctx(root_fs, root, wire->app_id);
    ctx.attach(*services);
    ctx.attach(startable);
    auto outcome = execute_handoff<PrivilegedPortBind>(ctx, *wire);
    auto reply = parse_record(serialize_record(encode_outcome(outcome, wire->app_id)));
    if (!reply) return tl::unexpected(reply.error());
    return decode_outcome(*reply);
  }
};

}  // namespace

TEST_CASE("helper down: the plan is 'start the helper' (elevated) then 'bind through it' (the user's part)") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a root-owned socket directory)"); return; }
  helper_dir dir;
  MemoryFs fs = tree();
  ScriptedPrivilege priv(user(), answer::declined);
  context ctx(fs, priv, app);
  PrivilegedPortBind web = through_helper(dir.socket(), 80);
  auto probed = web.probe(ctx, ledgers{});
  REQUIRE(probed);
  const plan p = web.make_plan(*probed);
  REQUIRE(p.changes.size() == 2);
  CHECK(p.changes[0].needs_elevation);
  CHECK(p.changes[0].summary() == "modify privileged helper " + dir.socket() +
                                      " (start it as launchd job system/com.example.porthelper, then bind TCP "
                                      "127.0.0.1:80 through it)");
  CHECK(p.changes[0].elevation_reason == "the privileged helper is not installed; starting it needs administrator rights");
  CHECK_FALSE(p.changes[1].needs_elevation);
  CHECK(p.changes[1].summary() == "create listening socket TCP 127.0.0.1:80 (through the privileged helper at " +
                                      dir.socket() + ", once it has started)");
}

TEST_CASE("granted in process: the context's service manager kickstarts the helper's job, then the bind goes through it") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a real helper)"); return; }
  helper_dir dir;
  launchd_with_helper launchd(label, dir.socket());
  launchd.fake.set_loaded(launchd_domain::system(), label, "/Library/LaunchDaemons/com.example.porthelper.plist");
  MemoryFs fs = tree();
  ScriptedPrivilege priv(user(), answer::granted);
  context ctx(fs, priv, app);
  ctx.attach(launchd.sm);
  PrivilegedPortBind web = through_helper(dir.socket(), free_port(717));
  auto report = converge(ctx, web);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(priv.prompts() == 1);
  CHECK(launchd.fake.kickstarts(launchd_domain::system(), label) == 1);
  REQUIRE(*web.socket);
  const auto& events = report->steps[0].applied.events;
  REQUIRE(events.size() == 2);
  CHECK(events[0].message == "started the privileged helper at " + dir.socket() +
                                 " (launchctl kickstart system/com.example.porthelper)");
  CHECK(events[1].message == "bound through the privileged helper at " + dir.socket());
  CHECK(report->out_of_sync.empty());
  // Idempotent: held, nothing planned, no second kickstart.
  auto again = converge(ctx, web);
  REQUIRE(again);
  CHECK(again->steps[0].planned.empty());
  CHECK(launchd.fake.count("kickstart") == 1);
}

TEST_CASE("a helper job that is not loaded is bootstrapped from helper_plist first; without one, the error says so") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a real helper)"); return; }
  helper_dir dir;
  {
    launchd_with_helper launchd(label, dir.socket());
    MemoryFs fs = tree();
    ScriptedPrivilege priv(user(), answer::granted);
    context ctx(fs, priv, app);
    ctx.attach(launchd.sm);
    PrivilegedPortBind web = through_helper(dir.socket(), free_port(716));
    auto report = converge(ctx, web);
    REQUIRE(report);
    CHECK_FALSE(report->ok());
    CHECK_FALSE(*web.socket);
    REQUIRE(report->steps[0].applied.events.size() == 1);
    const auto& e = report->steps[0].applied.events[0];
    CHECK(e.kind == event_kind::failed);
    CHECK(e.message == "start privileged helper " + dir.socket() +
                         ": launchd job system/com.example.porthelper is not loaded, and helper_plist is empty "
                         "[install the helper's job (a LaunchdPlist step), or set helper_plist to load it]");
    CHECK(launchd.fake.call_lines() == strings{"kickstart system/com.example.porthelper"});
  }
  launchd_with_helper launchd(label, dir.socket());
  MemoryFs fs = tree();
  ScriptedPrivilege priv(user(), answer::granted);
  context ctx(fs, priv, app);
  ctx.attach(launchd.sm);
  PrivilegedPortBind web = through_helper(dir.socket(), free_port(716));
  web.helper_plist = "/Library/LaunchDaemons/com.example.porthelper.plist";
  auto report = converge(ctx, web);
  REQUIRE(report);
  CHECK(report->ok());
  CHECK(*web.socket);
  CHECK(launchd.fake.call_lines() == strings{"kickstart system/com.example.porthelper",
                                             "bootstrap system /Library/LaunchDaemons/com.example.porthelper.plist",
                                             "kickstart system/com.example.porthelper"});
}

TEST_CASE("a started helper that never answers: one failed event after start_wait_ms, no socket, no bind event") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a root-owned socket directory)"); return; }
  helper_dir dir;
  FakeServiceManager fake;  // kickstart "succeeds" but nothing listens
  fake.set_loaded(launchd_domain::system(), label);
  any_service_manager sm(fake);
  MemoryFs fs = tree();
  ScriptedPrivilege priv(user(), answer::granted);
  context ctx(fs, priv, app);
  ctx.attach(sm);
  PrivilegedPortBind web = through_helper(dir.socket(), 80);
  web.start_wait_ms = 200;
  auto report = converge(ctx, web);
  REQUIRE(report);
  REQUIRE(report->steps[0].applied.events.size() == 1);
  const auto& e = report->steps[0].applied.events[0];
  CHECK(e.kind == event_kind::failed);
  REQUIRE(e.failure);
  CHECK(e.failure->is(errc::helper_not_running));
  CHECK(e.message == "start privileged helper " + dir.socket() +
                         ": started, but its socket did not accept a connection within 200 ms: dial unix " +
                         dir.socket() + ": connect: No such file or directory");
  CHECK_FALSE(*web.socket);
}

TEST_CASE("desired state round-trips into the runner's helper-only form; every bad field is refused by name") {
  PrivilegedPortBind web{helper::transport::udp, "::1", 53, "/var/run/com.example.porthelper.sock"};
  web.helper_label = label;
  web.helper_plist = "/Library/LaunchDaemons/com.example.porthelper.plist";
  web.start_wait_ms = 1500;
  const record_item good = web.desired_state();
  auto rebuilt = PrivilegedPortBind::from_desired_state(good);
  REQUIRE(rebuilt);
  CHECK(rebuilt->helper_part_only);
  CHECK(rebuilt->id() == "port:udp:[::1]:53");
  CHECK(rebuilt->helper_label == label);
  CHECK(rebuilt->helper_plist == web.helper_plist);
  CHECK(rebuilt->start_wait_ms == 1500);
  CHECK(rebuilt->desired_state() == good);
  struct row {
    const char* field;
    std::string value;
    std::string message;
  };
  const std::string id = "port:udp:[::1]:53";
  const std::string plist_message = "read desired state " + id +
                                    ": helper_plist must be empty or /Library/LaunchDaemons/com.example.porthelper.plist "
                                    "(a runner loads no other plist as root)";
  const row rows[] = {
      {"proto", "sctp", "read desired state " + id + ": proto must be tcp or udp"},
      {"port", "0", "read desired state " + id + ": port must be a number from 1 to 65535"},
      {"port", "65536", "read desired state " + id + ": port must be a number from 1 to 65535"},
      {"port", "53; rm", "read desired state " + id + ": port must be a number from 1 to 65535"},
      {"address", "0:0:0:0:0:0:0:1", "parse address 0:0:0:0:0:0:0:1: not in canonical form; write ::1"},
      {"address", "fe80::1%lo0", "parse address fe80::1%lo0: not an IPv6 address (zone ids are refused)"},
      {"socket_path", "run/helper.sock", "read desired state run/helper.sock: socket path must be absolute and normal"},
      {"socket_path", "/var/run/../tmp/h.sock", "read desired state /var/run/../tmp/h.sock: socket path must be absolute and normal"},
      {"helper_label", "", "read desired state " + id + ": helper_label is empty: the elevated runner starts the helper "
                           "only through its launchd job (a start_helper callback cannot be handed off)"},
      {"helper_label", "a/../b", ""},
      {"helper_label", "-k", ""},
      {"helper_plist", "LaunchDaemons/x.plist", plist_message},
      {"helper_plist", "/etc/sudoers", plist_message},
      {"helper_plist", "/tmp/evil.plist", plist_message},
      {"helper_plist", "/etc/sudoers.plist", plist_message},
      {"helper_plist", "/Library/LaunchDaemons/com.apple.other.plist", plist_message},
      {"helper_plist", "/Library/LaunchDaemons/../../tmp/com.example.porthelper.plist", plist_message},
      {"start_wait_ms", "60001", "read desired state " + id + ": start_wait_ms must be a number of milliseconds up to 60000"},
      {"start_wait_ms", "-1", "read desired state " + id + ": start_wait_ms must be a number of milliseconds up to 60000"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.field);
    CAPTURE(r.value);
    record_item bad = good;
    bad.fields[r.field] = r.value;
    auto refused = PrivilegedPortBind::from_desired_state(bad);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().is(errc::invalid_input));
    if (!r.message.empty()) CHECK(refused.error().message() == r.message);
  }
  // The id must match the parameters (the runner keys events and records by it).
  record_item moved = good;
  moved.id = "port:udp:[::1]:54";
  auto mismatch = PrivilegedPortBind::from_desired_state(moved);
  REQUIRE_FALSE(mismatch);
  CHECK(mismatch.error().message() == "read desired state port:udp:[::1]:54: the step id does not match its parameters");
  // A socket path too long for sockaddr_un.
  record_item longer = good;
  longer.fields["socket_path"] = "/var/run/" + std::string(100, 'x') + ".sock";
  auto too_long = PrivilegedPortBind::from_desired_state(longer);
  REQUIRE_FALSE(too_long);
  CHECK(too_long.error().reason.find("at most 103 fit") != std::string::npos);
}

TEST_CASE("hand-off: the runner starts the helper as root through launchd; the user's process binds through it") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a real helper)"); return; }
  helper_dir dir;
  launchd_with_helper launchd(label, dir.socket());
  launchd.fake.set_loaded(launchd_domain::system(), label);
  MemoryFs fs = tree();
  HandoffPrivilege priv{user(), &launchd.sm, answer::granted, {}, {}};
  context ctx(fs, priv, app);
  PrivilegedPortBind web = through_helper(dir.socket(), free_port(715));
  auto report = converge(ctx, web);
  REQUIRE(report);
  CHECK(report->ok());
  REQUIRE(priv.requests.size() == 1);
  CHECK(priv.requests[0].changes.size() == 1);  // the start only: the bind is not root's to do
  REQUIRE(priv.payloads.size() == 1);
  const record_item* handed = priv.payloads[0].find(web.id());
  REQUIRE(handed);
  CHECK(handed->get("helper_label") == label);
  CHECK(launchd.fake.kickstarts(launchd_domain::system(), label) == 1);
  REQUIRE(*web.socket);
  const auto& events = report->steps[0].applied.events;
  REQUIRE(events.size() == 2);
  CHECK(events[0].message == "started the privileged helper at " + dir.socket() +
                                 " (launchctl kickstart system/com.example.porthelper)");
  CHECK(events[0].elevated);
  CHECK(events[1].message == "bound through the privileged helper at " + dir.socket());
  CHECK_FALSE(events[1].elevated);
  // The decision is the user's record; the root-owned record got nothing.
  const auto rec = fs.file_bytes("/Users/alice/.local/state/hostcfg/com.example.app.record");
  REQUIRE(rec);
  CHECK(rec->find("field via helper\n") != std::string::npos);
  CHECK(MemoryFs::diff(tree().take_snapshot(), priv.root_fs.take_snapshot()).empty());
  CHECK(report->out_of_sync.empty());
  // A second run holds the socket: no prompt, no hand-off.
  auto again = converge(ctx, web);
  REQUIRE(again);
  CHECK(again->steps[0].planned.empty());
  CHECK(priv.requests.size() == 1);
}

TEST_CASE("hand-off declined: the seed's message, nothing started; a runner asked while the helper runs does nothing") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a real helper)"); return; }
  helper_dir dir;
  launchd_with_helper launchd(label, dir.socket());
  launchd.fake.set_loaded(launchd_domain::system(), label);
  MemoryFs fs = tree();
  HandoffPrivilege priv{user(), &launchd.sm, answer::declined, {}, {}};
  context ctx(fs, priv, app);
  PrivilegedPortBind web = through_helper(dir.socket(), 80);
  auto report = converge(ctx, web);
  REQUIRE(report);
  CHECK(launchd.fake.count("kickstart") == 0);
  CHECK_FALSE(*web.socket);
  REQUIRE(report->steps[0].applied.events.size() == 1);
  const auto& e = report->steps[0].applied.events[0];
  CHECK(e.kind == event_kind::skipped);
  CHECK(e.message.find("Ports are not available: exposing port TCP 127.0.0.1:80 -> 0.0.0.0:0: failed to connect to " +
                       dir.socket() + ": is the privileged helper running?: the prompt to start it was declined") == 0);

  // The runner given the step while the helper already answers: in sync, no kickstart, no bind.
  helper_thread running(dir.socket());
  REQUIRE(running.server);
  MemoryFs root_fs = tree();
  RootFor root(user());
  context root_ctx(root_fs, root, app);
  root_ctx.attach(launchd.sm);
  launchd_job_allowlist startable{{label}};
  root_ctx.attach(startable);
  record payload{app, {}};
  set_handoff_mode(payload, handoff_mode::apply);
  payload.put(web.desired_state());
  auto outcome = execute_handoff<PrivilegedPortBind>(root_ctx, payload);
  REQUIRE(outcome.events[web.id()].size() == 1);
  CHECK(outcome.events[web.id()][0].kind == event_kind::kept);
  CHECK(launchd.fake.count("kickstart") == 0);
}

TEST_CASE("a dry run plans the start and the bind but starts and binds nothing") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a root-owned socket directory)"); return; }
  helper_dir dir;
  FakeServiceManager fake;
  fake.set_loaded(launchd_domain::system(), label);
  any_service_manager sm(fake);
  MemoryFs fs = tree();
  ScriptedPrivilege priv(user(), answer::granted);
  context ctx(fs, priv, app);
  ctx.attach(sm);
  ctx.policy.dry_run = true;
  ctx.policy.dry_run_answer = answer::granted;
  PrivilegedPortBind web = through_helper(dir.socket(), 80);
  auto report = converge(ctx, web);
  REQUIRE(report);
  CHECK(fake.count("kickstart") == 0);
  CHECK_FALSE(*web.socket);
  const auto& events = report->steps[0].applied.events;
  REQUIRE(events.size() == 2);
  CHECK(events[0].kind == event_kind::would_change);
  CHECK(events[1].kind == event_kind::would_change);
  // A dry run answered "declined" reports what a declined run would: the start skipped, no bind.
  ctx.policy.dry_run_answer = answer::declined;
  auto declined = converge(ctx, web);
  REQUIRE(declined);
  CHECK(fake.count("kickstart") == 0);
  REQUIRE(declined->steps[0].applied.events.size() == 1);
  CHECK(declined->steps[0].applied.events[0].kind == event_kind::skipped);
}

TEST_CASE("helper down and no way to start it: a conflict in the seed's words, and no prompt that could not help") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a root-owned socket directory)"); return; }
  helper_dir dir;
  FakeServiceManager fake;
  any_service_manager sm(fake);
  MemoryFs fs = tree();
  // Neither a label nor a callback.
  {
    ScriptedPrivilege priv(user(), answer::granted);
    context ctx(fs, priv, app);
    PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", 80, dir.socket()};
    web.helper_only = true;
    auto report = converge(ctx, web);
    REQUIRE(report);
    CHECK(priv.prompts() == 0);
    REQUIRE(report->steps[0].before.items.size() == 1);
    CHECK(report->steps[0].before.items[0].state == item_state::conflict);
    CHECK(report->steps[0].before.items[0].detail ==
          "Ports are not available: exposing port TCP 127.0.0.1:80 -> 0.0.0.0:0: failed to connect to " + dir.socket() +
              ": is the privileged helper installed?: it is not installed, and this app cannot start it here (neither "
              "helper_label nor start_helper is set)");
    CHECK(report->out_of_sync.size() == 1);
  }
  // A callback, but a privilege backend that elevates through a separate runner.
  HandoffPrivilege priv{user(), &sm, answer::granted, {}, {}};
  context ctx(fs, priv, app);
  PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", 80, dir.socket()};
  web.helper_only = true;
  web.start_helper = [] { return true; };
  auto report = converge(ctx, web);
  REQUIRE(report);
  CHECK(priv.requests.empty());
  CHECK(report->steps[0].before.items[0].state == item_state::conflict);
  CHECK(report->steps[0].before.items[0].detail.find(
            "its start_helper callback runs only in process, and this privilege backend elevates through a separate "
            "runner: set helper_label") != std::string::npos);
}

TEST_CASE("the runner refuses a job its program does not list, and the user's part then does not wait for it") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a root-owned socket directory)"); return; }
  helper_dir dir;
  launchd_with_helper launchd(label, dir.socket());
  launchd.fake.set_loaded(launchd_domain::system(), label);
  launchd.fake.set_loaded(launchd_domain::system(), "com.apple.other");
  MemoryFs fs = tree();
  HandoffPrivilege priv{user(), &launchd.sm, answer::granted, {}, {}};
  context ctx(fs, priv, app);
  PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", 80, dir.socket()};
  web.helper_only = true;
  web.helper_label = "com.apple.other";  // loaded, but not this runner's helper
  web.start_wait_ms = 60000;             // a wait would be noticed: the user's part must not wait
  auto report = converge(ctx, web);
  REQUIRE(report);
  CHECK_FALSE(report->ok());
  CHECK(launchd.fake.count("kickstart") == 0);
  const auto& events = report->steps[0].applied.events;
  REQUIRE(events.size() == 2);
  CHECK(events[0].kind == event_kind::failed);
  CHECK(events[0].message ==
        "elevated runner port:tcp:127.0.0.1:80: launchd job system/com.apple.other is not one this runner may start "
        "[the runner program lists the helper jobs it may start (launchd_job_allowlist)]");
  CHECK(events[1].kind == event_kind::skipped);
  CHECK(events[1].message == "not bound: the privileged helper was not started (see the elevated runner's event)");
  CHECK_FALSE(*web.socket);
}

TEST_CASE("the runner checks the socket path as root without following links: a symlink or an open directory is refused") {
  if (::geteuid() != 0) { HOSTCFG_SKIP("needs root (a root-owned socket directory)"); return; }
  helper_dir dir;
  FakeServiceManager fake;
  fake.set_loaded(launchd_domain::system(), label);
  any_service_manager sm(fake);
  launchd_job_allowlist startable{{label}};
  MemoryFs root_fs = tree();
  RootFor root(user());
  context ctx(root_fs, root, app);
  ctx.attach(sm);
  ctx.attach(startable);
  auto run = [&](const std::string& socket_path) {
    PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", 80, socket_path};
    web.helper_label = label;
    record payload{app, {}};
    set_handoff_mode(payload, handoff_mode::apply);
    payload.put(web.desired_state());
    auto outcome = execute_handoff<PrivilegedPortBind>(ctx, payload);
    return outcome.events[web.id()];
  };
  // A symlink at the socket path (to a socket that answers) is a conflict: not followed, nothing started.
  helper_thread running(dir.path + "/real.sock");
  REQUIRE(running.server);
  REQUIRE(::symlink((dir.path + "/real.sock").c_str(), dir.socket().c_str()) == 0);
  auto linked = run(dir.socket());
  REQUIRE(linked.size() == 1);
  CHECK(linked[0].kind == event_kind::failed);
  CHECK(linked[0].message == "elevated runner " + dir.socket() +
                                 ": a symlink (not followed) is at the helper's socket path; nothing was started");
  CHECK(fake.count("kickstart") == 0);
  // A directory others may write (the user could plant anything there) is refused before any look inside.
  const std::string open_dir = dir.path + "/open";
  REQUIRE(::mkdir(open_dir.c_str(), 0777) == 0);
  REQUIRE(::chmod(open_dir.c_str(), 0777) == 0);
  auto planted = run(open_dir + "/h.sock");
  REQUIRE(planted.size() == 1);
  CHECK(planted[0].kind == event_kind::failed);
  CHECK(planted[0].message.find(open_dir) != std::string::npos);
  CHECK(fake.count("kickstart") == 0);
}
