#pragma once
/// @file
/// The client side of the privileged helper: connect, handshake, one request, one reply (and at
/// most one fd, received close-on-exec and checked against what was asked).
///
///     helper::client_options opts{"/var/run/com.example.helper.sock"};
///     auto req = helper::make_bind_request(helper::transport::tcp, "127.0.0.1", 80);
///     auto fd = helper::request_bind(opts, *req);  // a listening socket, or a seed-shaped error
///
/// Errors keep the cases apart (`error::code`): `errc::helper_not_installed` (no socket at the
/// path), `errc::helper_not_running` (ECONNREFUSED), `errc::version_mismatch`,
/// `errc::refused_by_policy` (allowlist, or the helper closed on us: another user),
/// `errc::timed_out`, and the errnos EADDRINUSE / EADDRNOTAVAIL for the bind itself. Bind errors
/// read like Docker Desktop's, with a hint: "Ports are not available: exposing port TCP
/// 127.0.0.1:80 -> 0.0.0.0:0: failed to connect to /var/run/x.sock: is the privileged helper
/// running?: dial unix /var/run/x.sock: connect: connection refused [...]".

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>

#include "hostcfg/backend/unique_fd.hpp"
#include "hostcfg/error.hpp"
#include "hostcfg/helper/protocol.hpp"
#include "hostcfg/helper/server.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace helper {

/// Where the helper listens and how long to wait for it.
struct client_options {
  std::string socket_path;
  int timeout_ms = 5000;  ///< for the whole exchange
  std::uint16_t version = protocol_version;  ///< only tests of version skew change this
};

namespace detail {

using clock = std::chrono::steady_clock;

inline int remaining_ms(clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

inline tl::unexpected<error> client_error(errc code, const client_options& o, std::string reason,
                                          std::string hint = {}) {
  return fail(code, "talk to privileged helper", o.socket_path, std::move(reason), std::move(hint));
}

/// "dial unix PATH: connect: connection refused" (Go's text, as in the seed's message).
inline std::string dial_text(const std::string& path, int err) {
  return "dial unix " + path + ": connect: " + std::error_code(err, std::system_category()).message();
}

/// Connects (blocking connect on a CLOEXEC socket: a UNIX connect never waits on the network).
inline result<unique_fd> connect_helper(const client_options& o) {
  if (auto ok = check_socket_path(o.socket_path, "connect to privileged helper"); !ok) return tl::unexpected(ok.error());
  unique_fd fd(cloexec_socket(AF_UNIX, SOCK_STREAM));
  if (!fd) return fail_errno(errno, "socket", o.socket_path);
#if defined(SO_NOSIGPIPE)
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
  const sockaddr_un addr = unix_address(o.socket_path);
  int rc;
  do rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR)
      return client_error(errc::helper_not_installed, o, dial_text(o.socket_path, err),
                          "install the privileged helper (the app asks for permission to), then retry");
    if (err == ECONNREFUSED)
      return client_error(errc::helper_not_running, o, dial_text(o.socket_path, err),
                          "start the privileged helper (allow the app's prompt, or start it as an administrator), "
                          "then retry");
    if (err == EACCES || err == EPERM)
      return client_error(errc::refused_by_policy, o, dial_text(o.socket_path, err),
                          "the helper's socket belongs to another user; the helper serves only the user it was "
                          "installed for");
    return client_error(errc::helper_not_running, o, dial_text(o.socket_path, err));
  }
  return fd;
}

inline result<void> send_all(int fd, const std::string& bytes, clock::time_point deadline, const client_options& o) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    pollfd p{fd, POLLOUT, 0};
    const int ready = ::poll(&p, 1, remaining_ms(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0)
      return client_error(errc::timed_out, o,
                          "no progress within " + std::to_string(o.timeout_ms) + " ms while sending the request",
                          "restart the privileged helper, then retry");
    const ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, send_flags());
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n < 0)
      return client_error(errc::refused_by_policy, o,
                          std::string("the helper closed the connection: ") + std::strerror(errno),
                          "the helper serves only the user it was installed for");
    done += static_cast<std::size_t>(n);
  }
  return {};
}

/// Reads one reply frame of `type`. Keeps the first fd received in `*fd_out` (if given), closes
/// every other, and refuses truncated control data or more than one fd.
inline result<reply> read_reply(int fd, frame_type type, clock::time_point deadline, const client_options& o,
                                unique_fd* fd_out) {
  std::string in;
  int fd_count = 0;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, remaining_ms(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0)
      return client_error(errc::timed_out, o, "no answer within " + std::to_string(o.timeout_ms) + " ms",
                          "restart the privileged helper, then retry");
    char buffer[64];
    iovec iov{buffer, sizeof buffer};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)] = {};
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(fd, &msg, recv_flags());
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    for (cmsghdr* cm = n >= 0 ? CMSG_FIRSTHDR(&msg) : nullptr; cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int got = -1;
        std::memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof got);
#if !defined(MSG_CMSG_CLOEXEC)
        if (got >= 0) ::fcntl(got, F_SETFD, FD_CLOEXEC);
#endif
        if (++fd_count == 1 && fd_out != nullptr && got >= 0)
          fd_out->reset(got);
        else if (got >= 0)
          ::close(got);
      }
    }
    if (n > 0 && (msg.msg_flags & MSG_CTRUNC) != 0) {
      if (fd_out) fd_out->reset();
      return client_error(errc::invalid_input, o, "the helper's reply carried truncated control data");
    }
    if (fd_count > 1) {
      if (fd_out) fd_out->reset();
      return client_error(errc::invalid_input, o, "the helper sent more than one file descriptor");
    }
    if (n <= 0) {
      if (fd_out) fd_out->reset();
      const std::string why = n < 0 ? std::strerror(errno) : "end of stream";
      return client_error(errc::refused_by_policy, o,
                          "the helper closed the connection without answering (" + why + ")",
                          "the helper serves only the user it was installed for; check its log");
    }
    in.append(buffer, static_cast<std::size_t>(n));
    auto frame = decode_frame(in);
    if (!frame) {
      if (fd_out) fd_out->reset();
      if (frame.error().is(errc::version_mismatch))
        return client_error(errc::version_mismatch, o, frame.error().reason,
                            "reinstall the app so that the app and its privileged helper are the same version");
      return client_error(errc::invalid_input, o, "malformed reply: " + frame.error().reason);
    }
    if (!*frame) continue;
    auto r = decode_reply(**frame);
    if (!r || r->type != type) {
      if (fd_out) fd_out->reset();
      return client_error(errc::invalid_input, o, r ? std::string("unexpected reply type") : "malformed reply: " + r.error().reason);
    }
    if (r->status == reply_status::version_mismatch) {
      if (fd_out) fd_out->reset();
      return client_error(errc::version_mismatch, o,
                          "the helper speaks protocol version " + std::to_string(r->helper_version) +
                              ", this client version " + std::to_string(o.version),
                          "reinstall the app so that the app and its privileged helper are the same version");
    }
    if (fd_out != nullptr && static_cast<bool>(*fd_out) != r->fd_attached) {
      fd_out->reset();
      return client_error(errc::invalid_input, o, "the helper's reply and the descriptors it carried disagree");
    }
    return *r;
  }
}

/// Connect, hello, and (if `request_bytes` is not empty) one request. Returns the final reply.
inline result<reply> exchange(const client_options& o, const std::string& request_bytes, unique_fd* fd_out) {
  const auto deadline = clock::now() + std::chrono::milliseconds(o.timeout_ms);
  auto fd = connect_helper(o);
  if (!fd) return tl::unexpected(fd.error());
  if (auto ok = send_all(fd->get(), encode_hello(o.version), deadline, o); !ok) return tl::unexpected(ok.error());
  auto hello = read_reply(fd->get(), frame_type::hello_reply, deadline, o, nullptr);
  if (!hello) return hello;
  if (hello->status != reply_status::ok)
    return client_error(errc::refused_by_policy, o, std::string("the helper refused the handshake: ") +
                                                        status_name(hello->status));
  if (request_bytes.empty()) return hello;
  if (auto ok = send_all(fd->get(), request_bytes, deadline, o); !ok) return tl::unexpected(ok.error());
  return read_reply(fd->get(), frame_type::reply, deadline, o, fd_out);
}

/// Checks a received socket against the request: type, family, address, port, listening (TCP).
inline result<void> check_received_socket(int fd, const bind_request& req, const client_options& o) {
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return fail_errno(errno, "getsockopt SO_TYPE", o.socket_path);
  const int want_type = req.proto == transport::udp ? SOCK_DGRAM : SOCK_STREAM;
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) != 0) return fail_errno(errno, "getsockname", o.socket_path);
  bool match = type == want_type;
  if (req.fam == family::ipv4) {
    const auto* sa = reinterpret_cast<const sockaddr_in*>(&ss);
    match = match && ss.ss_family == AF_INET && ntohs(sa->sin_port) == req.port &&
            std::memcmp(&sa->sin_addr, req.address.data(), 4) == 0;
  } else {
    const auto* sa = reinterpret_cast<const sockaddr_in6*>(&ss);
    match = match && ss.ss_family == AF_INET6 && ntohs(sa->sin6_port) == req.port &&
            std::memcmp(&sa->sin6_addr, req.address.data(), 16) == 0;
  }
#if defined(SO_ACCEPTCONN)
  if (match && want_type == SOCK_STREAM) {
    int listening = 0;
    len = sizeof listening;
    match = ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening == 1;
  }
#endif
  if (!match)
    return client_error(errc::invalid_input, o,
                        std::string("the helper returned a socket that is not ") + transport_name(req.proto) + " " +
                            endpoint_text(req) + (want_type == SOCK_STREAM ? " listening" : ""));
  return {};
}

}  // namespace detail

/// "Ports are not available: exposing port TCP 127.0.0.1:80 -> 0.0.0.0:0", the seed's prefix.
inline std::string port_error_prefix(const bind_request& req) {
  return std::string("Ports are not available: exposing port ") + transport_name(req.proto) + " " +
         endpoint_text(req) + " -> 0.0.0.0:0";
}

/// Re-shapes a helper error for a bind of `req`, in the seed's shape, keeping the code.
inline error port_error(const bind_request& req, const std::string& socket_path, const error& cause) {
  error e = cause;
  e.path = socket_path;
  const std::string prefix = port_error_prefix(req);
  const std::string listen_what = std::string("listen ") + (req.proto == transport::udp ? "udp " : "tcp ") + endpoint_text(req);
  if (cause.is(errc::helper_not_installed)) {
    e.op = prefix + ": failed to connect to";
    e.reason = "is the privileged helper installed?: " + cause.reason;
  } else if (cause.is(errc::helper_not_running) || cause.is(errc::timed_out)) {
    e.op = prefix + ": failed to connect to";
    e.reason = "is the privileged helper running?: " + cause.reason;
  } else if (cause.is_errno(EADDRINUSE)) {
    e.op = prefix + ": " + listen_what + " through the privileged helper at";
    e.reason = "bind: address already in use";
    e.hint = std::string("another program uses ") + transport_name(req.proto) + " port " + std::to_string(req.port) +
             " on " + address_text(req) + "; stop it or choose another port";
  } else if (cause.is_errno(EADDRNOTAVAIL)) {
    e.op = prefix + ": " + listen_what + " through the privileged helper at";
    e.reason = "bind: cannot assign requested address";
    e.hint = address_text(req) + " is not an address of this machine; use 127.0.0.1 or an address it has";
  } else {
    e.op = prefix + ": privileged helper at";
    if (cause.is(errc::refused_by_policy) && cause.hint.empty())
      e.hint = "the helper binds only loopback (or, if configured, wildcard) addresses and the ports of its "
               "allowlist; use 127.0.0.1, or a port >= 1024 such as 8080";
  }
  return e;
}

/// Handshake only: returns the helper's protocol version (used by probes).
inline result<std::uint16_t> handshake(const client_options& o) {
  auto r = detail::exchange(o, {}, nullptr);
  if (!r) return tl::unexpected(r.error());
  return r->helper_version;
}

/// Asks the helper to bind `req`; returns the listening (TCP) or bound (UDP) socket it sent via
/// SCM_RIGHTS, after checking its type, address and port. Errors are seed-shaped (`port_error`).
inline result<unique_fd> request_bind(const client_options& o, const bind_request& req) {
  unique_fd fd;
  auto r = detail::exchange(o, encode_bind(req), &fd);
  if (!r) return tl::unexpected(port_error(req, o.socket_path, r.error()));
  switch (r->status) {
    case reply_status::ok: break;
    case reply_status::port_in_use:
      return tl::unexpected(port_error(req, o.socket_path, fail_errno(EADDRINUSE, "", "").value()));
    case reply_status::cannot_assign_address:
      return tl::unexpected(port_error(req, o.socket_path, fail_errno(EADDRNOTAVAIL, "", "").value()));
    case reply_status::refused_by_allowlist:
      return tl::unexpected(port_error(
          req, o.socket_path,
          detail::client_error(errc::refused_by_policy, o, "refused by the helper's allowlist").value()));
    default:
      return tl::unexpected(port_error(
          req, o.socket_path,
          detail::client_error(errc::invalid_input, o, std::string("the helper answered: ") + status_name(r->status))
              .value()));
  }
  if (!fd)
    return tl::unexpected(port_error(
        req, o.socket_path, detail::client_error(errc::invalid_input, o, "the helper sent no socket").value()));
  if (auto ok = detail::check_received_socket(fd.get(), req, o); !ok)
    return tl::unexpected(port_error(req, o.socket_path, ok.error()));
  return fd;
}

/// Asks the helper to replace its policy cache (at the path of its own configuration) with
/// `policy`. No prompt: the helper is already trusted with this one file.
inline result<void> refresh_policy(const client_options& o, std::string_view policy) {
  auto frame = encode_refresh_policy(policy);
  if (!frame) return tl::unexpected(frame.error());
  auto r = detail::exchange(o, *frame, nullptr);
  if (!r) return tl::unexpected(r.error());
  if (r->status != reply_status::ok)
    return detail::client_error(r->status == reply_status::refused_by_allowlist ? errc::refused_by_policy
                                                                                : errc::invalid_input,
                                o, std::string("policy refresh: ") + status_name(r->status));
  return {};
}

/// Asks the helper to uninstall itself (its owner's callback decides how).
inline result<void> uninstall_helper(const client_options& o) {
  auto r = detail::exchange(o, encode_uninstall(), nullptr);
  if (!r) return tl::unexpected(r.error());
  if (r->status != reply_status::ok)
    return detail::client_error(r->status == reply_status::refused_by_allowlist ? errc::refused_by_policy
                                                                                : errc::invalid_input,
                                o, std::string("uninstall: ") + status_name(r->status));
  return {};
}

}  // namespace helper

HOSTCFG_END_NAMESPACE
