// PrivilegedPortBind through converge against a real privileged helper (root, Linux): no prompt
// when the helper runs, one prompt to start it, decline in the seed's words, port-in-use as a
// conflict, uninstall closes the socket.
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/converge.hpp>
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

#include "support/real_fs.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;

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
  auto report = converge(ctx, web);
  REQUIRE(report);
  CHECK(priv.prompts() == 1);
  REQUIRE(priv.requests()[0].changes.size() == 1);
  CHECK(priv.requests()[0].changes[0] == "create listening socket TCP 127.0.0.1:80 (start the privileged helper at " +
                                             dir.socket() + ", then bind through it)");
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

