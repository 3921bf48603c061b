// port-helper: the privileged helper daemon, a small main over hostcfg/helper/server.hpp.
//
//   port-helper --socket /var/run/com.example.helper.sock --uid 501
//               [--gid N] [--policy-path PATH] [--policy-mode 0644] [--state PATH]
//               [--allow-address loopback|any]
//               [--allow-ports 1-1023[,R...]] [--timeout-ms 5000] [--once]
//               [--label com.docker.vmnetd] [--plist-dir /Library/LaunchDaemons]
//               [--app-id com.docker.desktop] [--system-record PATH] [--root DIR]
//               [--service-manager launchctl|file-only] [--code-requirement REQ]
//
//   port-helper --one-shot [--root DIR] [--system-record PATH] [--uid N]
//
// Run as root (launchd / systemd). It serves exactly one uid; every decision is logged to stderr.
// The same program is the elevated one-shot runner (helper/one_shot.hpp) that CommandPrivilege
// starts through sudo / pkexec / the macOS admin dialog: it reads the privileged part of a plan on
// stdin, applies it as root and answers on stdout. One program, two modes.
//
// uninstall_self (from the served uid only) replies ok, then removes the helper's socket, the
// policy cache if the helper's own record (--state) says the helper created it, that record, and
// reverts the helper's launchd job through the library (helper/self_uninstall.hpp): the plist
// <plist-dir>/<label>.plist is removed first if the app's root-owned record (--app-id,
// --system-record) says hostcfg created it, the record marked "bootout pending", then the job is
// booted out through the service manager as the very last act. Then it exits: 0 when
// every step worked, 1 naming the step that did not.
//
// --code-requirement REQ (macOS): a client is served only when its code signature satisfies the
// code requirement REQ, checked by audit token after the uid check (helper/macos_code_signature.hpp;
// link with -framework Security -framework CoreFoundation). Refused elsewhere: there is no code
// signature to check, and a helper must not pretend it checked one.
//
// Sandboxing: --root DIR puts the launchd plist and the app's record under DIR (RootedFs);
// --service-manager file-only never talks to launchd ("skipped: no launchd here", the default off
// macOS). --socket, --policy-path and --state are always real paths, in root-owned directories.
#include <signal.h>
#include <cerrno>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "hostcfg/backend/posix_fs.hpp"
#include "hostcfg/backend/rooted_fs.hpp"
#include "hostcfg/backend/service_manager.hpp"
#include "hostcfg/context.hpp"
#include "hostcfg/helper/one_shot.hpp"
#include "hostcfg/helper/self_uninstall.hpp"
#include "hostcfg/helper/macos_code_signature.hpp"
#include "hostcfg/helper/server.hpp"
#include "hostcfg/primitives/hosts_entry.hpp"
#include "hostcfg/primitives/launchd_plist.hpp"
#include "hostcfg/primitives/managed_file.hpp"
#include "hostcfg/primitives/protected_file.hpp"

namespace {

hostcfg::helper::Server* running = nullptr;

void on_signal(int) {
  if (running != nullptr) running->stop();  // async-signal-safe: one write(2)
}

int usage(const char* why) {
  std::fprintf(stderr,
               "port-helper: %s\nusage: port-helper --socket PATH --uid N [--gid N] [--policy-path PATH] [--policy-mode MODE]\n"
               "       [--state PATH]\n"
               "       [--allow-address loopback|any] [--allow-ports 1-1023[,FIRST-LAST...]] [--timeout-ms N] [--once]\n"
               "       [--label LABEL] [--plist-dir DIR] [--app-id ID] [--system-record PATH] [--root DIR]\n"
               "       [--service-manager launchctl|file-only] [--code-requirement REQ (macOS)]\n",
               why);
  return 2;
}

bool parse_number(const char* text, unsigned long max, unsigned long& out) {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtoul(text, &end, 10);
  return errno == 0 && *end == '\0' && out <= max && text[0] != '-';
}

// "80,443,900-1000" -> ranges; false on anything else.
bool parse_ports(const std::string& text, std::vector<hostcfg::helper::port_range>& out) {
  out.clear();
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const std::size_t dash = item.find('-');
    unsigned long first = 0, last = 0;
    if (!parse_number(item.substr(0, dash).c_str(), 65535, first)) return false;
    last = first;
    if (dash != std::string::npos && !parse_number(item.substr(dash + 1).c_str(), 65535, last)) return false;
    out.push_back({static_cast<std::uint16_t>(first), static_cast<std::uint16_t>(last)});
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return !out.empty();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace hostcfg::helper;
  if (is_one_shot(argc, argv))
    return run_one_shot<hostcfg::ManagedFile, hostcfg::HostsEntry, hostcfg::ProtectedFile, hostcfg::LaunchdPlist>(
        0, 1, 2, parse_one_shot_options(argc, argv));
  server_config config;
  bool have_uid = false, have_gid = false, have_state = false;
  std::string label = "com.docker.vmnetd", plist_dir = "/Library/LaunchDaemons", app_id = "com.docker.desktop";
  std::string root = "/", system_record;
#ifdef __APPLE__
  bool use_launchctl = true;
#else
  bool use_launchctl = false;
#endif
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    unsigned long n = 0;
    if (arg == "--once") {
      config.once = true;
      continue;
    }
    if (value == nullptr) return usage(("missing value for " + arg).c_str());
    ++i;
    if (arg == "--socket") {
      config.socket_path = value;
    } else if (arg == "--uid") {
      if (!parse_number(value, 0xfffffffeUL, n)) return usage("--uid needs a number");
      config.allowed_uid = static_cast<hostcfg::uid_type>(n);
      have_uid = true;
    } else if (arg == "--gid") {
      if (!parse_number(value, 0xfffffffeUL, n)) return usage("--gid needs a number");
      config.socket_gid = static_cast<hostcfg::gid_type>(n);
      have_gid = true;
    } else if (arg == "--policy-path") {
      config.policy_path = value;
    } else if (arg == "--policy-mode") {
      char* end = nullptr;
      const unsigned long mode = std::strtoul(value, &end, 8);
      if (end == value || *end != '\0' || mode > 07777) return usage("--policy-mode needs an octal mode such as 0644");
      config.policy_mode = static_cast<hostcfg::mode_type>(mode);
    } else if (arg == "--state") {
      config.state_path = value;
      have_state = true;
    } else if (arg == "--allow-address") {
      const std::string scope = value;
      if (scope == "loopback") config.allow_address = address_scope::loopback;
      else if (scope == "any") config.allow_address = address_scope::loopback_or_any;
      else return usage("--allow-address is loopback or any");
    } else if (arg == "--allow-ports") {
      if (!parse_ports(value, config.allow_ports)) return usage("--allow-ports takes N or FIRST-LAST, comma-separated");
    } else if (arg == "--timeout-ms") {
      if (!parse_number(value, 600000, n) || n == 0) return usage("--timeout-ms needs a positive number");
      config.request_timeout_ms = static_cast<int>(n);
    } else if (arg == "--label") {
      if (!hostcfg::validate_label(value)) return usage("--label needs a launchd label such as com.example.helper");
      label = value;
    } else if (arg == "--plist-dir" || arg == "--root" || arg == "--system-record") {
      if (!hostcfg::is_normal_path(value)) return usage((arg + " needs an absolute normal path").c_str());
      (arg == "--plist-dir" ? plist_dir : arg == "--root" ? root : system_record) = value;
    } else if (arg == "--app-id") {
      app_id = value;
      if (app_id.empty() || app_id.find('/') != std::string::npos) return usage("--app-id needs an app id without '/'");
    } else if (arg == "--code-requirement") {
#ifdef __APPLE__
      auto check = hostcfg::helper::code_signature_check(value);
      if (!check) return usage(("--code-requirement: " + check.error().message()).c_str());
      config.verify_peer = *check;
#else
      return usage("--code-requirement needs macOS (code signatures); it is refused here");
#endif
    } else if (arg == "--service-manager") {
      const std::string which = value;
      if (which == "launchctl") use_launchctl = true;
      else if (which == "file-only") use_launchctl = false;
      else return usage("--service-manager is launchctl or file-only");
    } else {
      return usage(("unknown option " + arg).c_str());
    }
  }
  if (config.socket_path.empty() || !have_uid) return usage("--socket and --uid are required");
  if (!have_gid) config.socket_gid = config.allowed_uid;
  // The helper's own record sits beside the app's privileged records unless told otherwise.
  if (!have_state && !config.policy_path.empty())
    config.state_path = hostcfg::default_system_record_path(label + ".helper");
  if (::geteuid() != 0) std::fprintf(stderr, "port-helper: warning: not running as root; binds below 1024 will fail\n");

  config.log = [](const log_event& e) { std::fprintf(stderr, "port-helper: %s\n", e.text().c_str()); };

  // The helper's own launchd job, reverted through the library on uninstall_self. Only the label
  // and the plist's place matter to a revert; the program is the helper's usual home.
  hostcfg::launchd_job job;
  job.label = label;
  job.program = "/Library/PrivilegedHelperTools/" + label;
  hostcfg::LaunchdPlist plist{job};
  plist.directory = plist_dir;
  hostcfg::PosixFs posix;
  hostcfg::RootedFs<hostcfg::PosixFs> fs(posix, root);
  // Root acting for the served user: the revert needs no prompt, and a daemon's plist is root's.
  hostcfg::user_identity served{config.allowed_uid, config.socket_gid, {config.socket_gid}, "", "/", "", {}, {}};
  hostcfg::RootFor priv(served);
  hostcfg::context<hostcfg::RootedFs<hostcfg::PosixFs>, hostcfg::RootFor> ctx(fs, priv, app_id);
  if (!system_record.empty()) ctx.system_record.path = system_record;
  hostcfg::FileOnlyServiceManager file_only;
  hostcfg::LaunchctlServiceManager launchctl;
  hostcfg::any_service_manager sm_file_only(file_only), sm_launchctl(launchctl);
  ctx.attach(use_launchctl ? sm_launchctl : sm_file_only);
  config.uninstall = revert_launchd_job(ctx, plist);

  // Replies use MSG_NOSIGNAL already; ignoring SIGPIPE also covers anything else that writes.
  ::signal(SIGPIPE, SIG_IGN);
  auto server = Server::listen(std::move(config));
  if (!server) {
    std::fprintf(stderr, "port-helper: %s\n", server.error().message().c_str());
    return 1;
  }
  running = &*server;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  auto done = server->run();
  running = nullptr;
  if (!done) {
    std::fprintf(stderr, "port-helper: %s\n", done.error().message().c_str());
    return 1;
  }
  return 0;
}
