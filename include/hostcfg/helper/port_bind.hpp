#pragma once
/// @file
/// Binding a privileged port for an unprivileged app, as Docker Desktop does: try the exact
/// address unprivileged first; if the OS says EACCES, go through the privileged helper; if the
/// helper is absent or not running, ask (through the caller's privilege backend) to start it.
/// The address is never widened (127.0.0.1 stays 127.0.0.1; `::` is bound IPv6-only).
///
///     port_bind::options opts;
///     opts.socket_path = "/var/run/com.example.helper.sock";
///     opts.start_helper = [&](const elevation_request& r) { return priv.ask(r); };
///     auto req = helper::make_bind_request(helper::transport::tcp, "127.0.0.1", 80);
///     auto bound = port_bind::bind(*req, opts);  // bound->fd is a listening socket
///     if (!bound) report(bound.error().message());  // "Ports are not available: exposing port ..."

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "hostcfg/backend/unique_fd.hpp"
#include "hostcfg/error.hpp"
#include "hostcfg/helper/client.hpp"
#include "hostcfg/helper/protocol.hpp"
#include "hostcfg/helper/server.hpp"
#include "hostcfg/privilege.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace port_bind {

/// How to reach the helper and what to do when it is not there.
struct options {
  std::string socket_path;      ///< the helper's socket
  int helper_timeout_ms = 5000; ///< per exchange with the helper
  int start_wait_ms = 5000;     ///< after a granted prompt: how long to wait for the helper to answer
  bool helper_only = false;     ///< skip the direct bind (tests; machines where anyone may bind low ports)
  std::string app_id;           ///< shown in the prompt
  /// Asks the user to start (or install) the helper; wire it to the privilege backend's `ask`.
  /// Empty: never prompt, report the helper's state instead.
  std::function<answer(const elevation_request&)> start_helper;
};

/// The helper as a probe sees it.
enum class helper_state { ready, not_installed, not_running, version_mismatch, refused, timed_out, broken };

/// Readable name of a helper state.
inline const char* helper_state_name(helper_state s) {
  switch (s) {
    case helper_state::ready: return "ready";
    case helper_state::not_installed: return "not installed";
    case helper_state::not_running: return "not running";
    case helper_state::version_mismatch: return "version mismatch";
    case helper_state::refused: return "refuses this user";
    case helper_state::timed_out: return "not answering";
    case helper_state::broken: return "broken";
  }
  return "unknown";
}

/// What `probe` found. Probing binds and closes a socket; it changes nothing else.
struct probe_result {
  bool can_bind_unprivileged = false;  ///< the test bind of this exact address:port worked
  int bind_errno = 0;                  ///< its errno when it did not
  std::string explanation;             ///< why, in a sentence (Linux: ip_unprivileged_port_start)
  helper_state helper = helper_state::not_installed;
  std::uint16_t helper_version = 0;  ///< when the helper answered
  std::string helper_detail;         ///< the helper error's message, when not ready
};

/// A bound socket and how it was obtained.
struct bound_port {
  unique_fd fd;             ///< listening (TCP) or bound (UDP), close-on-exec
  bool via_helper = false;  ///< true when it arrived from the helper through SCM_RIGHTS
};

namespace detail {

/// Linux's lowest unprivileged port (net.ipv4.ip_unprivileged_port_start), or -1 elsewhere.
inline int unprivileged_port_start() {
#if defined(__linux__)
  unique_fd fd(::open("/proc/sys/net/ipv4/ip_unprivileged_port_start", O_RDONLY | O_CLOEXEC));
  if (!fd) return -1;
  char buf[16] = {};
  const ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return -1;
  int value = 0;
  for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) value = value * 10 + (buf[i] - '0');
  return value;
#else
  return -1;
#endif
}

inline bool is_permission_error(const error& e) { return e.is_errno(EACCES) || e.is_errno(EPERM); }

/// A direct-bind error in the seed's shape ("... -> 0.0.0.0:0: listen tcp 127.0.0.1:80: bind: ...").
inline error direct_error(const helper::bind_request& req, const error& cause) {
  error e = cause;
  e.op = helper::port_error_prefix(req) + ": listen " + (req.proto == helper::transport::udp ? "udp " : "tcp ") +
         helper::endpoint_text(req) + ": bind";
  e.path.clear();
  e.path2.clear();
  if (cause.is_errno(EADDRINUSE))
    e.hint = std::string("another program uses ") + helper::transport_name(req.proto) + " port " +
             std::to_string(req.port) + " on " + helper::address_text(req) + "; stop it or choose another port";
  else if (cause.is_errno(EADDRNOTAVAIL))
    e.hint = helper::address_text(req) + " is not an address of this machine; use 127.0.0.1 or an address it has";
  return e;
}

inline helper_state state_of(const error& e) {
  if (e.is(errc::helper_not_installed)) return helper_state::not_installed;
  if (e.is(errc::helper_not_running)) return helper_state::not_running;
  if (e.is(errc::version_mismatch)) return helper_state::version_mismatch;
  if (e.is(errc::refused_by_policy)) return helper_state::refused;
  if (e.is(errc::timed_out)) return helper_state::timed_out;
  return helper_state::broken;
}

}  // namespace detail

/// Can this process bind exactly `req` unprivileged (a real test bind, SO_REUSEADDR, closed at
/// once), why not, and is the helper installed / running / speaking our version.
inline result<probe_result> probe(const helper::bind_request& req, const options& opts) {
  probe_result out;
  auto test = helper::detail::bind_socket(req, true, false);
  const std::string what = std::string(helper::transport_name(req.proto)) + " " + helper::endpoint_text(req);
  if (test) {
    out.can_bind_unprivileged = true;
    out.explanation = "this process may bind " + what + " directly";
  } else {
    out.bind_errno = test.error().code.value();
    if (detail::is_permission_error(test.error())) {
      const int start = detail::unprivileged_port_start();
      out.explanation = "binding " + what + " needs privilege here";
      if (start >= 0)
        out.explanation += " (net.ipv4.ip_unprivileged_port_start = " + std::to_string(start) + ": ports below " +
                           std::to_string(start) + " need root or the privileged helper)";
    } else if (test.error().is_errno(EADDRINUSE)) {
      out.explanation = what + " is already in use by another program";
    } else if (test.error().is_errno(EADDRNOTAVAIL)) {
      out.explanation = helper::address_text(req) + " is not an address of this machine";
    } else {
      out.explanation = test.error().message();
    }
  }
  helper::client_options co{opts.socket_path, opts.helper_timeout_ms};
  auto version = helper::handshake(co);
  if (version) {
    out.helper = helper_state::ready;
    out.helper_version = *version;
  } else {
    out.helper = detail::state_of(version.error());
    out.helper_detail = version.error().message();
  }
  return out;
}

/// Binds `req` directly, or through the helper when the OS refuses (EACCES/EPERM) or
/// `helper_only` is set; starts the helper through `start_helper` when it is absent or not
/// running. Errors are seed-shaped and keep apart: not installed, not running, declined,
/// cancelled, prompt timed out, port in use (EADDRINUSE), cannot assign address (EADDRNOTAVAIL),
/// refused by the helper's allowlist, version mismatch, helper timed out.
inline result<bound_port> bind(const helper::bind_request& req, const options& opts) {
  if (!opts.helper_only) {
    auto direct = helper::detail::bind_socket(req, true, true);
    if (direct) return bound_port{std::move(*direct), false};
    if (!detail::is_permission_error(direct.error())) return tl::unexpected(detail::direct_error(req, direct.error()));
  }
  const helper::client_options co{opts.socket_path, opts.helper_timeout_ms};
  auto via = helper::request_bind(co, req);
  if (via) return bound_port{std::move(*via), true};
  const bool startable = via.error().is(errc::helper_not_installed) || via.error().is(errc::helper_not_running);
  if (!startable || !opts.start_helper) return tl::unexpected(via.error());

  const std::string what = std::string(helper::transport_name(req.proto)) + " " + helper::endpoint_text(req);
  elevation_request prompt;
  prompt.app_id = opts.app_id;
  prompt.reason = (opts.app_id.empty() ? std::string("This app") : opts.app_id) + " needs its privileged helper to expose " +
                  what + ": ports below 1024 need administrator rights.";
  prompt.changes.push_back(std::string(via.error().is(errc::helper_not_installed) ? "install and start"
                                                                                   : "start") +
                           " the privileged helper listening on " + opts.socket_path);
  const answer a = opts.start_helper(prompt);
  if (a != answer::granted) {
    error e = via.error();
    e.code = make_error_code(answer_error(a));
    const char* why = a == answer::declined    ? "the prompt to start it was declined"
                      : a == answer::cancelled ? "the prompt to start it was cancelled"
                      : a == answer::timed_out ? "the prompt to start it was not answered in time"
                                               : "it cannot be started here (no administrator rights)";
    e.op = helper::port_error_prefix(req) + ": failed to connect to";
    e.path = opts.socket_path;
    e.reason = std::string("is the privileged helper running?: ") + why + ": " +
               helper::detail::dial_text(opts.socket_path, via.error().is(errc::helper_not_installed) ? ENOENT
                                                                                                      : ECONNREFUSED);
    e.hint = a == answer::timed_out
                 ? "retry and answer the prompt sooner, or use a port >= 1024 such as 8080"
                 : "retry and allow the prompt, or use a port >= 1024 such as 8080";
    return tl::unexpected(e);
  }
  // Granted: the helper is being started; wait for it to answer, bounded.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(opts.start_wait_ms);
  for (;;) {
    auto again = helper::request_bind(co, req);
    if (again) return bound_port{std::move(*again), true};
    const bool still_down =
        again.error().is(errc::helper_not_installed) || again.error().is(errc::helper_not_running);
    if (!still_down || std::chrono::steady_clock::now() >= deadline) return tl::unexpected(again.error());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace port_bind

HOSTCFG_END_NAMESPACE
