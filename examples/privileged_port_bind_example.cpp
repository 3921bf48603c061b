// privileged_port_bind_example: PrivilegedPortBind gets a listening socket on 127.0.0.1 and a
// port below 1024 the least-privileged way: directly when the OS allows it (root, or a Linux
// whose ip_unprivileged_port_start is low enough), else through the privileged helper's socket.
// It never widens the address. Usage: privileged-port-bind-example [PORT]   (default 947)
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>

#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/primitives/privileged_port_bind.hpp>

using namespace hostcfg;

int main(int argc, char** argv) {
  const int port = argc > 1 ? std::atoi(argv[1]) : 947;
  if (port <= 0 || port >= 1024) return std::fprintf(stderr, "usage: privileged-port-bind-example [PORT < 1024]\n"), 2;
  MemoryFs fs;  // the record lives here; the socket is real
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  user_identity alice{501, 20, {20}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
  Unprivileged priv(alice);  // no prompt: without a helper, a refused bind is reported
  context ctx(fs, priv, "com.example.app");

  PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", static_cast<std::uint16_t>(port),
                         "/var/run/com.example.helper.sock"};
  auto report = converge(ctx, web);
  if (!report) return std::fprintf(stderr, "%s\n", report.error().message().c_str()), 1;
  std::printf("%s", report->render_text().c_str());
  if (*web.socket) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    ::getsockname(web.socket->get(), reinterpret_cast<sockaddr*>(&addr), &len);
    std::printf("holding a socket listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  } else {
    std::printf("no socket: the report above says why (no helper running, port in use, ...)\n");
  }
  return 0;
}
