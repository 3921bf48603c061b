#pragma once
/// @file
/// The privileged helper's server: a root process that binds privileged ports for one user and
/// hands the sockets back over a UNIX socket, refreshes one fixed policy file, and uninstalls
/// itself. Nothing else: requests carry no paths and no commands.
///
///     helper::server_config config;
///     config.socket_path = "/var/run/com.example.helper.sock";
///     config.allowed_uid = 501;
///     config.policy_path = "/Library/Application Support/com.example/policy.json";
///     config.state_path = "/var/lib/hostcfg/com.example.helper.helper.record";
///     config.uninstall = helper::revert_launchd_job(ctx, LaunchdPlist{job});  // self_uninstall.hpp
///     config.log = [](const helper::log_event& e) { std::fprintf(stderr, "%s\n", e.text().c_str()); };
///     auto server = helper::Server::listen(std::move(config));
///     if (!server) return fail(server.error());
///     return server->run();  // until stop(), or until an allowed uninstall_self is done
///
/// Uninstall (`uninstall_self`, only from the served uid like every request): the helper replies
/// ok first (the client must not wait on a helper that is going away), then, before `run`
/// returns: closes every other connection and its listening socket, removes its socket file (only
/// if it is still the one it created), removes the policy cache only if its own record
/// (`state_path`) says the helper created it and it still holds the bytes the helper last wrote,
/// removes that record, and last runs `config.uninstall` (LaunchdPlist's self-revert: remove the
/// plist and record it, then bootout), last because on a real launchd the bootout ends this very process.
///
/// Concurrency: one thread runs a poll(2) loop over non-blocking sockets; every connection is a
/// small state machine (hello, request, reply) with its own deadline, so a slow client costs one
/// slot and never blocks the others. At most `max_connections` are open at once; while full, the
/// listening socket is simply not polled (the kernel backlog holds new clients) until a slot frees
/// by reply, disconnect or deadline, so a flood of silent clients delays others by at most one
/// deadline and cannot exhaust the helper's fds.
///
/// Order of checks on every connection: peer credentials (before reading a single byte; a foreign
/// uid is closed), then the optional code-signature hook, then the versioned hello, then exactly
/// one request under the allowlist, then one reply (status + at most one fd via SCM_RIGHTS).

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "hostcfg/backend/unique_fd.hpp"
#include "hostcfg/error.hpp"
#include "hostcfg/fs.hpp"
#include "hostcfg/helper/protocol.hpp"
#include "hostcfg/path.hpp"
#include "hostcfg/record.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace helper {

/// Which bind addresses the helper accepts.
enum class address_scope {
  loopback,         ///< 127.0.0.0/8 and ::1 only
  loopback_or_any,  ///< also the wildcards 0.0.0.0 and :: (never any other address)
};

/// An inclusive port range, both ends < 1024.
struct port_range {
  std::uint16_t first = 1;
  std::uint16_t last = 1023;
};

/// What the helper decided, for its log.
enum class log_kind {
  listening,         ///< the socket is ready
  replaced_stale,    ///< a stale socket (nobody answering) was removed
  peer_refused,      ///< foreign uid (or failed code-signature hook): closed before reading
  accept_failed,     ///< accept failed (e.g. EMFILE); the helper keeps running
  timed_out,         ///< the client did not finish its request before the deadline
  client_gone,       ///< the client closed (or reset) the connection early
  bad_request,       ///< malformed frame, extra fds, a second request, ...
  version_mismatch,  ///< the client speaks another protocol version
  refused,           ///< well-formed but outside the allowlist
  bound,             ///< a port was bound and handed back
  bind_failed,       ///< the bind itself failed (port in use, cannot assign address, ...)
  policy_written,    ///< the policy cache was replaced
  policy_failed,     ///< writing the policy cache failed
  uninstalled,       ///< one step of uninstall_self was done (or found nothing of ours to undo)
  uninstall_failed,  ///< one step of uninstall_self failed or was refused; the others still ran
  reply_failed,      ///< the reply could not be sent (client gone or not reading)
};

/// Readable name of a log kind ("peer_refused", ...).
inline const char* log_kind_name(log_kind k) {
  switch (k) {
    case log_kind::listening: return "listening";
    case log_kind::replaced_stale: return "replaced_stale";
    case log_kind::peer_refused: return "peer_refused";
    case log_kind::accept_failed: return "accept_failed";
    case log_kind::timed_out: return "timed_out";
    case log_kind::client_gone: return "client_gone";
    case log_kind::bad_request: return "bad_request";
    case log_kind::version_mismatch: return "version_mismatch";
    case log_kind::refused: return "refused";
    case log_kind::bound: return "bound";
    case log_kind::bind_failed: return "bind_failed";
    case log_kind::policy_written: return "policy_written";
    case log_kind::policy_failed: return "policy_failed";
    case log_kind::uninstalled: return "uninstalled";
    case log_kind::uninstall_failed: return "uninstall_failed";
    case log_kind::reply_failed: return "reply_failed";
  }
  return "unknown";
}

/// One logged decision.
struct log_event {
  log_kind kind = log_kind::listening;
  long peer_uid = -1;  ///< -1 when not known
  long peer_pid = -1;  ///< -1 when not known
  std::string detail;  ///< what and why, e.g. "bind TCP 127.0.0.1:80"

  /// "kind uid=N pid=N: detail".
  std::string text() const {
    return std::string(log_kind_name(kind)) + " uid=" + std::to_string(peer_uid) + " pid=" + std::to_string(peer_pid) +
           ": " + detail;
  }
};

/// Everything the helper is allowed to do, fixed when it starts.
struct server_config {
  std::string socket_path;  ///< absolute, at most 103 bytes, in a root-owned dir no one else can write
  uid_type allowed_uid = 0;  ///< the one user served; the socket is owned by it, mode 0600
  gid_type socket_gid = 0;   ///< group of the socket file (mode 0600 gives the group nothing)
  address_scope allow_address = address_scope::loopback;
  std::vector<port_range> allow_ports{{1, 1023}};  ///< ranges >= 1024 are refused by `listen`
  std::string policy_path;  ///< the one file refresh_policy writes; empty: refresh is refused
  /// The policy cache's mode (root:0): the installer's ProtectedFile mode, so a refresh keeps what
  /// its probe wants. Others must read it (the user reads a root:0 file through those bits) and no
  /// one but root may write it: listen refuses any other.
  mode_type policy_mode = 0644;
  /// The helper's own record (root-owned, 0600): whether it created the policy cache and the bytes
  /// it last wrote there, so uninstall_self removes only a cache the helper made and nobody changed
  /// since. Its directory is created (root, 0755) when missing, under a trusted parent, and removed
  /// again on uninstall when empty. Empty: nothing is recorded, and uninstall leaves the cache.
  std::string state_path;
  int request_timeout_ms = 5000;     ///< per connection, from accept to reply
  std::size_t max_connections = 64;  ///< open at once; more wait in the kernel backlog
  bool once = false;                 ///< stop after the first connection of the allowed user ends
  /// Receives every decision. Called on the server's thread.
  std::function<void(const log_event&)> log;
  /// Reverts the helper's own installation on uninstall_self: its launchd job through the library
  /// (`revert_launchd_job` in helper/self_uninstall.hpp builds it from the helper's LaunchdPlist).
  /// Runs on the server's thread after the ok reply, the socket and the policy cache are gone;
  /// returns what it did, for the log. Empty: uninstall_self is refused by the allowlist.
  std::function<result<std::string>()> uninstall;
  /// Verifies the peer's code signature. Called after the uid check, before any byte is read;
  /// false closes the connection. On macOS, `code_signature_check(requirement)` in
  /// helper/macos_code_signature.hpp builds it (SecCodeCopyGuestWithAttributes on the audit
  /// token + SecCodeCheckValidity; needs Security.framework, so it is opt-in); on Linux it is
  /// optional and, when set, is called the same way (tests use it).
  std::function<bool(int fd, long pid, uid_type uid)> verify_peer;
};

/// Counters for tests and health checks (a snapshot).
struct server_stats {
  std::uint64_t accepted = 0;       ///< connections accepted
  std::uint64_t peer_refused = 0;   ///< closed by the peer check
  std::uint64_t served = 0;         ///< replies with status ok
  std::uint64_t refused = 0;        ///< allowlist refusals
  std::uint64_t bad_requests = 0;   ///< malformed (incl. version mismatch)
  std::uint64_t timed_out = 0;      ///< deadline expired
  std::uint64_t closed = 0;         ///< connections closed, for any reason (== accepted when idle)
  std::uint64_t open = 0;           ///< connections open now
};

namespace detail {

inline constexpr std::size_t max_socket_path = 103;

/// Opens `dir` walking from "/" one component at a time, never following a symlink unless the
/// link is root-owned (macOS `/var` -> `private/var`). Every directory must be root-owned; an
/// ancestor may be writable by others only if sticky (as /tmp, /var/tmp), `dir` itself not at all.
inline result<unique_fd> open_trusted_dir(const std::string& dir, const std::string& op) {
  unique_fd dfd(::open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  if (!dfd) return fail_errno(errno, op, "/");
  const auto parts = path_components(dir);
  std::string walked;
  auto check = [&](int fd, const std::string& where, bool last) -> result<void> {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return fail_errno(errno, op, where);
    if (st.st_uid != 0)
      return fail(errc::unsafe_path, op, where, "directory is owned by uid " + std::to_string(st.st_uid) + ", not root",
                  "use a directory owned by root that only root can write, e.g. /var/run");
    if ((st.st_mode & 022) != 0 && (last || (st.st_mode & S_ISVTX) == 0))
      return fail(errc::unsafe_path, op, where, "directory is writable by group or others",
                  "use a directory owned by root that only root can write (chmod 0755)");
    return {};
  };
  if (auto ok = check(dfd.get(), "/", parts.empty()); !ok) return tl::unexpected(ok.error());
  for (std::size_t i = 0; i < parts.size(); ++i) {
    walked += "/" + parts[i];
    int fd = ::openat(dfd.get(), parts[i].c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && (errno == ELOOP || errno == ENOTDIR)) {
      const int saved = errno;
      struct stat ls {};
      if (::fstatat(dfd.get(), parts[i].c_str(), &ls, AT_SYMLINK_NOFOLLOW) != 0) return fail_errno(saved, op, walked);
      if (!S_ISLNK(ls.st_mode)) return fail_errno(saved, op, walked);
      if (ls.st_uid != 0)
        return fail(errc::unsafe_path, op, walked, "is a symlink not owned by root", "use a real root-owned directory");
      fd = ::openat(dfd.get(), parts[i].c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) return fail_errno(errno, op, walked);
    dfd.reset(fd);
    if (auto ok = check(dfd.get(), walked, i + 1 == parts.size()); !ok) return tl::unexpected(ok.error());
  }
  return dfd;
}

/// Fills a sockaddr_un; the caller has checked the length.
inline sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), std::min(path.size(), sizeof addr.sun_path - 1));
  return addr;
}

/// Validates a helper socket path: absolute, normal, at most 103 bytes.
inline result<void> check_socket_path(const std::string& path, const std::string& op) {
  if (path.size() > max_socket_path)
    return fail(errc::invalid_input, op, path,
                "socket path is " + std::to_string(path.size()) +
                    " bytes; at most 103 fit in a UNIX socket address on every OS",
                "choose a shorter path, e.g. /var/run/<name>.sock");
  if (path.empty() || !is_normal_path(path) || path == "/")
    return fail(errc::invalid_input, op, path, "socket path must be absolute and normal");
  return {};
}

/// Sets close-on-exec and non-blocking on a descriptor (for platforms without accept4 flags).
inline void set_cloexec_nonblock(int fd) {
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/// socket(2) with close-on-exec from the start where the OS has SOCK_CLOEXEC (Linux), else set
/// right after (macOS; the helper never forks, so nothing can inherit it in between).
inline int cloexec_socket(int domain, int type, bool nonblock = false) {
#if defined(SOCK_CLOEXEC)
  return ::socket(domain, type | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
#else
  const int fd = ::socket(domain, type, 0);
  if (fd >= 0) {
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (nonblock) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  return fd;
#endif
}

/// The peer's uid and pid; false when the OS cannot say (the connection is then refused).
inline bool peer_credentials(int fd, uid_type& uid, long& pid) {
#if defined(__linux__)
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  uid = cred.uid;
  pid = cred.pid;
  return true;
#else
  uid_t u = 0;
  gid_t g = 0;
  if (::getpeereid(fd, &u, &g) != 0) return false;
  uid = u;
  pid = -1;
#if defined(__APPLE__) && defined(LOCAL_PEERPID)
  pid_t p = 0;
  socklen_t len = sizeof p;
  if (::getsockopt(fd, SOL_LOCAL, LOCAL_PEERPID, &p, &len) == 0) pid = p;
#endif
  return true;
#endif
}

/// Flags for every send: never raise SIGPIPE (macOS uses SO_NOSIGPIPE, set at accept).
inline int send_flags() {
#if defined(MSG_NOSIGNAL)
  return MSG_NOSIGNAL | MSG_DONTWAIT;
#else
  return MSG_DONTWAIT;
#endif
}

/// Flags for every receive: received fds are close-on-exec from the start where the OS allows.
inline int recv_flags() {
#if defined(MSG_CMSG_CLOEXEC)
  return MSG_CMSG_CLOEXEC | MSG_DONTWAIT;
#else
  return MSG_DONTWAIT;
#endif
}

/// Sends `bytes` and, if `fd >= 0`, that fd via SCM_RIGHTS, in one sendmsg. Returns 0 or errno.
inline int send_with_fd(int sock, const std::string& bytes, int fd) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  }
  for (;;) {
    const ssize_t n = ::sendmsg(sock, &msg, send_flags());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    // A partial send of a reply this small means the client is not reading: give up on it.
    return static_cast<std::size_t>(n) == bytes.size() ? 0 : EAGAIN;
  }
}

/// Receives into `out` (appending) with room for several fds; closes every fd that arrives and
/// reports how many came and whether the control data was truncated. Returns bytes read, 0 at
/// EOF, or -errno.
inline long recv_closing_fds(int sock, std::string& out, std::size_t max_bytes, int& fds_received, bool& truncated) {
  char buffer[4096];
  iovec iov{buffer, std::min(sizeof buffer, max_bytes == 0 ? std::size_t{1} : max_bytes)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do n = ::recvmsg(sock, &msg, recv_flags());
  while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
      if (fd >= 0) ::close(fd);
      ++fds_received;
    }
  }
  out.append(buffer, static_cast<std::size_t>(n));
  return static_cast<long>(n);
}

/// Binds exactly what was asked (IPV6_V6ONLY so `::` never also takes IPv4; no address widening),
/// listening for TCP when `do_listen`. Returns the socket or the errno.
inline result<unique_fd> bind_socket(const bind_request& req, bool reuse_address, bool do_listen = true) {
  const int domain = req.fam == family::ipv6 ? AF_INET6 : AF_INET;
  const int type = req.proto == transport::udp ? SOCK_DGRAM : SOCK_STREAM;
  const std::string where = std::string(transport_name(req.proto)) + " " + endpoint_text(req);
  unique_fd fd(cloexec_socket(domain, type));
  if (!fd) return fail_errno(errno, "socket", where);
  const int one = 1;
  if (reuse_address && type == SOCK_STREAM)
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
      return fail_errno(errno, "setsockopt SO_REUSEADDR", where);
  int rc;
  if (domain == AF_INET6) {
    if (::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
      return fail_errno(errno, "setsockopt IPV6_V6ONLY", where);
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(req.port);
    std::memcpy(&sa.sin6_addr, req.address.data(), 16);
    rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  } else {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(req.port);
    std::memcpy(&sa.sin_addr, req.address.data(), 4);
    rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  }
  if (rc != 0) return fail_errno(errno, "bind", where);
  if (do_listen && type == SOCK_STREAM && ::listen(fd.get(), SOMAXCONN) != 0) return fail_errno(errno, "listen", where);
  return fd;
}

/// Writes `bytes` to `path` atomically: a temp in the same (trusted) directory, written, owned by
/// root, mode `mode`, fsynced, renamed over the target, then the directory fsynced. Returns true
/// when the file did not exist before (the helper created it).
inline result<bool> write_root_file(const std::string& path, const std::string& bytes, const std::string& op,
                                    mode_t mode = 0644) {
  auto dir = open_trusted_dir(parent_path(path), op);
  if (!dir) return tl::unexpected(dir.error());
  const std::string name = base_name(path);
  struct stat before {};
  const bool existed = ::fstatat(dir->get(), name.c_str(), &before, AT_SYMLINK_NOFOLLOW) == 0;
  if (!existed && errno != ENOENT) return fail_errno(errno, op, path);
  // rename(2) would replace a symlink or a directory entry of another kind: only a file is ours.
  if (existed && !S_ISREG(before.st_mode))
    return fail(errc::conflict, op, path, "is not a regular file (not replaced)", "remove it, then refresh again");
  static std::atomic<unsigned> counter{0};
  std::string temp;
  unique_fd fd;
  for (int attempt = 0; attempt < 16 && !fd; ++attempt) {
    const auto ns = std::chrono::steady_clock::now().time_since_epoch().count();
    temp = "." + name + ".hostcfg-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
           std::to_string(ns % 1000000007);
    fd.reset(::openat(dir->get(), temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd && errno != EEXIST) return fail_errno(errno, op, join_path(parent_path(path), temp));
  }
  if (!fd) return fail_errno(EEXIST, op, path);
  auto discard = [&](int err, const char* what) {
    ::unlinkat(dir->get(), temp.c_str(), 0);
    return fail_errno(err, std::string(op) + " (" + what + ")", path);
  };
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return discard(errno, "write");
    done += static_cast<std::size_t>(n);
  }
  if (::fchown(fd.get(), 0, 0) != 0) return discard(errno, "fchown");
  if (::fchmod(fd.get(), mode) != 0) return discard(errno, "fchmod");
  if (::fsync(fd.get()) != 0) return discard(errno, "fsync");
  if (::renameat(dir->get(), temp.c_str(), dir->get(), name.c_str()) != 0) return discard(errno, "rename");
  if (::fsync(dir->get()) != 0)
    return fail(errc::not_durable, op, path, "replaced, but syncing the directory failed");
  return !existed;
}

/// Reads a root-owned regular file of at most `max_bytes` from a trusted directory, never
/// following a symlink. `std::nullopt` when it does not exist (nor its directory). A file another
/// user owns or can write is `errc::unsafe_path`: the helper never trusts what others could plant.
inline result<std::optional<std::string>> read_root_file(const std::string& path, const std::string& op,
                                                         std::size_t max_bytes) {
  auto dir = open_trusted_dir(parent_path(path), op);
  if (!dir) {
    if (dir.error().is_errno(ENOENT)) return std::optional<std::string>{};
    return tl::unexpected(dir.error());
  }
  unique_fd fd(::openat(dir->get(), base_name(path).c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::optional<std::string>{};
    return fail_errno(errno, op, path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail_errno(errno, op, path);
  if (!S_ISREG(st.st_mode)) return fail(errc::conflict, op, path, "is not a regular file");
  if (st.st_uid != 0 || (st.st_mode & 022) != 0)
    return fail(errc::unsafe_path, op, path, "is not owned by root or is writable by others; not trusted",
                "remove it; it was not written by the helper");
  std::string out;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno(errno, op, path);
    if (n == 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
    if (out.size() > max_bytes)
      return fail(errc::too_large, op, path, "larger than " + std::to_string(max_bytes) + " bytes");
  }
  return std::optional<std::string>{std::move(out)};
}

/// Removes `path` from its trusted directory and syncs the directory. ENOENT is not an error.
inline result<void> remove_root_entry(const std::string& path, const std::string& op, int flags = 0) {
  auto dir = open_trusted_dir(parent_path(path), op);
  if (!dir) return tl::unexpected(dir.error());
  if (::unlinkat(dir->get(), base_name(path).c_str(), flags) != 0 && errno != ENOENT) return fail_errno(errno, op, path);
  if (::fsync(dir->get()) != 0) return fail(errc::not_durable, op, path, "removed, but syncing the directory failed");
  return {};
}

/// The helper's own record: what it created, so uninstall removes exactly that (record.hpp's format).
/// Items: "policy:<path>" (fields `created` 1/0, `written` the bytes last written) and
/// "state-dir" (field `path`: the record's directory, when the helper made it).
struct helper_state {
  static constexpr const char* app = "hostcfg-helper";
  static std::string policy_item(const std::string& policy_path) { return "policy:" + policy_path; }

  /// Loads the record; an absent one is empty. A corrupt or untrusted one is an error (never
  /// overwritten: the helper then records nothing and removes nothing).
  static result<record> load(const std::string& path) {
    const std::string op = "read helper record";
    auto bytes = read_root_file(path, op, max_record_bytes);
    if (!bytes) return tl::unexpected(bytes.error());
    if (!*bytes) return record{app, {}};
    return parse_record(**bytes, path);
  }

  /// Writes the record (root, 0600), creating its directory (root, 0755) under a trusted parent
  /// when missing, and remembering that it did.
  static result<void> store(const std::string& path, record r) {
    const std::string op = "write helper record";
    const std::string dir = parent_path(path);
    auto exists = open_trusted_dir(dir, op);
    if (!exists && exists.error().is_errno(ENOENT)) {
      auto above = open_trusted_dir(parent_path(dir), op);
      if (!above) return tl::unexpected(above.error());
      if (::mkdirat(above->get(), base_name(dir).c_str(), 0755) != 0) return fail_errno(errno, op, dir);
      // Owned by root whatever the umask and group defaults were.
      if (::fchownat(above->get(), base_name(dir).c_str(), 0, 0, AT_SYMLINK_NOFOLLOW) != 0 ||
          ::fchmodat(above->get(), base_name(dir).c_str(), 0755, 0) != 0)
        return fail_errno(errno, op, dir);
      ::fsync(above->get());
      r.put(record_item{"state-dir", "helper_state", {{"path", dir}}});
    } else if (!exists) {
      return tl::unexpected(exists.error());
    }
    auto written = write_root_file(path, serialize_record(r), op, 0600);
    if (!written) return tl::unexpected(written.error());
    return {};
  }
};

/// One client connection's state.
struct connection {
  unique_fd fd;
  uid_type uid = 0;
  long pid = -1;
  std::chrono::steady_clock::time_point deadline;
  std::string in;
  bool greeted = false;
};

/// Shared state of a server (kept behind a pointer so `Server` stays movable).
struct server_state {
  server_config config;
  unique_fd dir;    ///< the verified socket directory
  unique_fd listen;
  unique_fd wake_read, wake_write;
  std::string socket_name;
  dev_t socket_dev = 0;
  ino_t socket_ino = 0;
  std::vector<connection> conns;
  std::atomic<std::uint64_t> accepted{0}, peer_refused{0}, served{0}, refused{0}, bad_requests{0}, timed_out{0},
      closed{0}, open{0};
  bool done_once = false;
  bool uninstall_requested = false;  ///< an allowed uninstall_self was answered: tear down, then return
  /// After accept fails for want of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) the listening
  /// socket stays readable: it is left out of poll until then, so the helper neither spins nor
  /// floods its log, and the waiting client is taken once a descriptor is free again.
  std::chrono::steady_clock::time_point accept_resume{};

  ~server_state() {
    // Remove our socket file, but only if it is still ours (not one a successor created).
    if (!dir || socket_name.empty()) return;
    struct stat st {};
    if (::fstatat(dir.get(), socket_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == socket_dev && st.st_ino == socket_ino)
      ::unlinkat(dir.get(), socket_name.c_str(), 0);
  }

  void log(log_kind kind, const connection* c, std::string detail) const {
    if (!config.log) return;
    log_event e;
    e.kind = kind;
    if (c != nullptr) {
      e.peer_uid = static_cast<long>(c->uid);
      e.peer_pid = c->pid;
    }
    e.detail = std::move(detail);
    config.log(e);
  }
};

}  // namespace detail

/// The helper's server. Create with `listen`, then `run` on one thread; `stop` from any thread.
class Server {
 public:
  /// Validates the configuration and the socket directory, replaces a stale socket (one nobody
  /// answers), refuses anything else at the path (never follows a symlink), and listens on a new
  /// socket owned by `allowed_uid`, mode 0600.
  static result<Server> listen(server_config config) {
    const std::string op = "listen on helper socket";
    const std::string path = config.socket_path;
    if (auto ok = detail::check_socket_path(path, op); !ok) return tl::unexpected(ok.error());
    for (const auto& r : config.allow_ports)
      if (r.first == 0 || r.last >= 1024 || r.first > r.last)
        return fail(errc::invalid_input, op, path,
                    "allowed port range " + std::to_string(r.first) + "-" + std::to_string(r.last) +
                        " is not within 1-1023",
                    "the helper only binds privileged ports; ports >= 1024 need no helper");
    for (const std::string* other : {&config.policy_path, &config.state_path})
      if (!other->empty() && (!is_normal_path(*other) || *other == path || parent_path(*other) == *other))
        return fail(errc::invalid_input, op, *other,
                    "the policy and record paths must be absolute, normal, and not the socket's");
    if ((config.policy_mode & 07022) != 0 || (config.policy_mode & 0004) == 0)
      return fail(errc::invalid_input, op, config.policy_path,
                  "policy mode " + hostcfg::detail::mode_text(config.policy_mode) +
                      " must let others read and no one but root write",
                  "use 0644");
    if (!config.state_path.empty() && config.state_path == config.policy_path)
      return fail(errc::invalid_input, op, config.state_path, "the helper's record cannot be the policy cache itself");
    if (config.request_timeout_ms <= 0) config.request_timeout_ms = 5000;
    if (config.max_connections == 0) config.max_connections = 1;

    auto st = std::make_unique<detail::server_state>();
    auto dir = detail::open_trusted_dir(parent_path(path), op);
    if (!dir) return tl::unexpected(dir.error());
    st->dir = std::move(*dir);
    const std::string name = base_name(path);

    struct stat existing {};
    if (::fstatat(st->dir.get(), name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0) {
      if (!S_ISSOCK(existing.st_mode))
        return fail(errc::conflict, op, path,
                    S_ISLNK(existing.st_mode) ? "a symlink is in the way (not followed)" : "a file that is not a socket is in the way",
                    "remove it if it is stale, then start the helper again");
      // Only root can change entries of the verified directory, so probing by path is safe.
      unique_fd probe(detail::cloexec_socket(AF_UNIX, SOCK_STREAM));
      if (!probe) return fail_errno(errno, op, path);
      const sockaddr_un addr = detail::unix_address(path);
      if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 || errno != ECONNREFUSED)
        return fail(errc::conflict, op, path, "another process is listening on this socket",
                    "stop the other helper first");
      if (::unlinkat(st->dir.get(), name.c_str(), 0) != 0) return fail_errno(errno, op, path);
      st->config = config;
      st->log(log_kind::replaced_stale, nullptr, "removed stale socket " + path);
    } else if (errno != ENOENT) {
      return fail_errno(errno, op, path);
    }

    st->listen.reset(detail::cloexec_socket(AF_UNIX, SOCK_STREAM, true));
    if (!st->listen) return fail_errno(errno, op, path);
    // On Linux the socket inode's mode (less umask) becomes the file's mode at bind, so the file
    // is never more open than 0600, even for an instant.
    ::fchmod(st->listen.get(), 0600);
    // The socket is bound under a temporary name, given its owner and mode, listening, and only
    // then renamed to its path: a client never finds it root-owned (EACCES) or not yet listening
    // (ECONNREFUSED) and mistakes a starting helper for a missing one. A path too long for the
    // temporary name ("<name>~") is bound directly, as before.
    const std::string bound_name = path.size() + 1 <= detail::max_socket_path ? name + "~" : name;
    const std::string bound_path = parent_path(path) + "/" + bound_name;
    if (bound_name != name) (void)::unlinkat(st->dir.get(), bound_name.c_str(), 0);  // a crashed start's
    const sockaddr_un addr = detail::unix_address(bound_path);
    if (::bind(st->listen.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
      return fail_errno(errno, op, bound_path);
    auto discard = [&](int err, const std::string& what, const std::string& where) -> result<Server> {
      if (bound_name != name) (void)::unlinkat(st->dir.get(), bound_name.c_str(), 0);
      return fail_errno(err, what, where);
    };
    struct stat created {};
    if (::fstatat(st->dir.get(), bound_name.c_str(), &created, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISSOCK(created.st_mode))
      return fail(errc::conflict, op, bound_path, "the socket file vanished after bind");
    if (::fchmodat(st->dir.get(), bound_name.c_str(), 0600, 0) != 0) return discard(errno, "chmod", bound_path);
    if (::fchownat(st->dir.get(), bound_name.c_str(), config.allowed_uid, config.socket_gid, AT_SYMLINK_NOFOLLOW) != 0)
      return discard(errno, "chown", bound_path);
    if (::listen(st->listen.get(), SOMAXCONN) != 0) return discard(errno, op, bound_path);
    if (bound_name != name && ::renameat(st->dir.get(), bound_name.c_str(), st->dir.get(), name.c_str()) != 0)
      return discard(errno, "rename", path);
    // Same inode after the rename: uninstall removes the socket only if it is still this one.
    st->socket_name = name;
    st->socket_dev = created.st_dev;
    st->socket_ino = created.st_ino;

    int pipe_fds[2];
#if defined(__linux__)
    if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) return fail_errno(errno, op, "wake pipe");
#else
    if (::pipe(pipe_fds) != 0) return fail_errno(errno, op, "wake pipe");
    detail::set_cloexec_nonblock(pipe_fds[0]);
    detail::set_cloexec_nonblock(pipe_fds[1]);
#endif
    st->wake_read.reset(pipe_fds[0]);
    st->wake_write.reset(pipe_fds[1]);
    st->config = std::move(config);
    st->log(log_kind::listening, nullptr, "listening on " + path);
    return Server(std::move(st));
  }

  /// Serves until `stop()` (or, with `once`, until the first allowed connection ends).
  /// Never returns an error for anything a client does; only for a broken poll.
  result<void> run() {
    auto& s = *state_;
    std::vector<pollfd> fds;
    for (;;) {
      auto now = std::chrono::steady_clock::now();
      fds.clear();
      fds.push_back({s.wake_read.get(), POLLIN, 0});
      const bool paused = now < s.accept_resume;
      const bool accepting = s.conns.size() < s.config.max_connections && !paused;
      fds.push_back({accepting ? s.listen.get() : -1, POLLIN, 0});
      for (const auto& c : s.conns) fds.push_back({c.fd.get(), POLLIN, 0});

      int timeout = -1;
      auto wake_by = [&](std::chrono::steady_clock::time_point when) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(when - now).count() + 1;
        const int ms = left < 0 ? 0 : static_cast<int>(std::min<long long>(left, 60000));
        timeout = timeout < 0 ? ms : std::min(timeout, ms);
      };
      for (const auto& c : s.conns) wake_by(c.deadline);
      if (paused) wake_by(s.accept_resume);
      const int ready = ::poll(fds.data(), static_cast<nfds_t>(fds.size()), timeout);
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) return fail_errno(errno, "poll", s.config.socket_path);
      if (fds[0].revents != 0) {
        char sink[64];
        while (::read(s.wake_read.get(), sink, sizeof sink) > 0) {
        }
        return {};
      }
      now = std::chrono::steady_clock::now();
      // Connections first (their indexes match fds[2...]); then deadlines; then new clients.
      for (std::size_t i = 0; i < s.conns.size(); ++i)
        if (fds[i + 2].revents != 0 && s.conns[i].fd) on_readable(s.conns[i]);
      if (s.uninstall_requested) return uninstall_self();
      for (auto& c : s.conns)
        if (c.fd && c.deadline <= now) {
          ++s.timed_out;
          s.log(log_kind::timed_out, &c,
                "no complete request within " + std::to_string(s.config.request_timeout_ms) + " ms");
          c.fd.reset();
          s.done_once = true;
        }
      const auto before = s.conns.size();
      s.conns.erase(std::remove_if(s.conns.begin(), s.conns.end(), [](const detail::connection& c) { return !c.fd; }),
                    s.conns.end());
      // `open` before `closed` (stats() loads them the other way round): a snapshot that counts
      // every accepted connection closed never shows one still open.
      s.open = s.conns.size();
      s.closed += before - s.conns.size();
      if (s.config.once && s.done_once && s.conns.empty()) return {};
      if (accepting && fds[1].revents != 0) accept_clients();
    }
  }

  /// Makes `run` return soon. Safe from any thread and from a signal handler.
  void stop() noexcept {
    if (state_ && state_->wake_write) {
      const char byte = 1;
      [[maybe_unused]] auto n = ::write(state_->wake_write.get(), &byte, 1);
    }
  }

  /// Counters so far (safe from any thread).
  server_stats stats() const {
    const auto& s = *state_;
    server_stats out;
    out.accepted = s.accepted;
    out.peer_refused = s.peer_refused;
    out.served = s.served;
    out.refused = s.refused;
    out.bad_requests = s.bad_requests;
    out.timed_out = s.timed_out;
    out.closed = s.closed;  // loaded before `open`, which is stored before it
    out.open = s.open;
    return out;
  }

  /// The socket path served.
  const std::string& socket_path() const { return state_->config.socket_path; }

 private:
  explicit Server(std::unique_ptr<detail::server_state> state) : state_(std::move(state)) {}

  /// How long new clients wait after accept failed for want of resources (see accept_resume).
  static constexpr int accept_pause_ms = 100;

  void accept_clients() {
    auto& s = *state_;
    while (s.conns.size() < s.config.max_connections) {
#if defined(__linux__)
      int fd = ::accept4(s.listen.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
#else
      int fd = ::accept(s.listen.get(), nullptr, nullptr);
      if (fd >= 0) detail::set_cloexec_nonblock(fd);
#endif
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          s.log(log_kind::accept_failed, nullptr,
                std::string("accept: ") + std::strerror(errno) + "; new clients wait " +
                    std::to_string(accept_pause_ms) + " ms");
          s.accept_resume = std::chrono::steady_clock::now() + std::chrono::milliseconds(accept_pause_ms);
        }
        return;
      }
      ++s.accepted;
      detail::connection c;
      c.fd.reset(fd);
#if defined(SO_NOSIGPIPE)
      const int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
      // The peer check comes before reading a single byte.
      if (!detail::peer_credentials(fd, c.uid, c.pid)) {
        ++s.peer_refused;
        ++s.closed;
        s.log(log_kind::peer_refused, nullptr, "peer credentials unavailable; closed unread");
        continue;
      }
      if (c.uid != s.config.allowed_uid) {
        ++s.peer_refused;
        ++s.closed;
        s.log(log_kind::peer_refused, &c,
              "uid " + std::to_string(c.uid) + " is not the served uid " + std::to_string(s.config.allowed_uid) +
                  "; closed unread");
        continue;
      }
      if (s.config.verify_peer && !s.config.verify_peer(fd, c.pid, c.uid)) {
        ++s.peer_refused;
        ++s.closed;
        s.log(log_kind::peer_refused, &c, "code-signature check failed; closed unread");
        continue;
      }
      c.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(s.config.request_timeout_ms);
      s.conns.push_back(std::move(c));
      s.open = s.conns.size();
    }
  }

  /// Sends one reply (and an fd, if any), then closes the connection.
  void finish(detail::connection& c, frame_type type, reply_status status, int fd = -1) {
    auto& s = *state_;
    reply r;
    r.type = type;
    r.status = status;
    r.fd_attached = fd >= 0;
    // Counted before sending, so a client that has its answer always sees it counted.
    if (status == reply_status::ok) ++s.served;
    const int err = detail::send_with_fd(c.fd.get(), encode_reply(r), fd);
    if (err != 0) s.log(log_kind::reply_failed, &c, std::string("reply not delivered: ") + std::strerror(err));
    c.fd.reset();
    s.done_once = true;
  }

  void bad(detail::connection& c, const std::string& why) {
    ++state_->bad_requests;
    state_->log(log_kind::bad_request, &c, why);
    finish(c, c.greeted ? frame_type::reply : frame_type::hello_reply, reply_status::bad_request);
  }

  void on_readable(detail::connection& c) {
    auto& s = *state_;
    int fds = 0;
    bool truncated = false;
    // Never more than one frame's worth (plus a header, to notice a second request) is buffered.
    const std::size_t bound = header_size + max_payload + header_size;
    const long n = detail::recv_closing_fds(c.fd.get(), c.in, c.in.size() < bound ? bound - c.in.size() : 1, fds,
                                            truncated);
    if (n == -EAGAIN || n == -EWOULDBLOCK) return;
    if (fds > 0 || truncated) return bad(c, std::to_string(fds) + " file descriptor(s) attached to a request");
    if (n <= 0) {
      s.log(log_kind::client_gone, &c,
            !c.in.empty() ? "closed in the middle of a frame (truncated)"
            : c.greeted   ? "closed after the handshake without a request"
                          : "closed before sending a request");
      c.fd.reset();
      s.done_once = true;
      return;
    }
    for (;;) {
      auto frame = decode_frame(c.in);
      if (!frame) {
        if (frame.error().is(errc::version_mismatch)) {
          ++s.bad_requests;
          s.log(log_kind::version_mismatch, &c, frame.error().reason);
          return finish(c, c.greeted ? frame_type::reply : frame_type::hello_reply, reply_status::version_mismatch);
        }
        return bad(c, frame.error().reason);
      }
      if (!*frame) return;  // incomplete: wait for more (bounded by the cap and the deadline)
      auto req = decode_request(**frame);
      if (!req) return bad(c, req.error().reason);
      const std::size_t used = (*frame)->size;
      if (!c.greeted) {
        if (req->type != frame_type::hello) return bad(c, "the first frame must be hello");
        reply hello;
        hello.type = frame_type::hello_reply;
        const int err = detail::send_with_fd(c.fd.get(), encode_reply(hello), -1);
        if (err != 0) {
          s.log(log_kind::reply_failed, &c, std::string("hello reply not delivered: ") + std::strerror(err));
          c.fd.reset();
          s.done_once = true;
          return;
        }
        c.greeted = true;
        c.in.erase(0, used);
        if (c.in.empty()) return;
        continue;
      }
      if (req->type == frame_type::hello) return bad(c, "a second hello");
      char extra;
      if (c.in.size() > used || ::recv(c.fd.get(), &extra, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
        return bad(c, "more than one request on a connection");
      return serve(c, *req);
    }
  }

  bool port_allowed(std::uint16_t port) const {
    for (const auto& r : state_->config.allow_ports)
      if (port >= r.first && port <= r.last) return true;
    return false;
  }

  void serve(detail::connection& c, const request& req) {
    auto& s = *state_;
    if (req.type == frame_type::bind) {
      const std::string what = std::string("bind ") + transport_name(req.bind.proto) + " " + endpoint_text(req.bind);
      const bool address_ok = is_loopback(req.bind) ||
                              (s.config.allow_address == address_scope::loopback_or_any && is_wildcard(req.bind));
      if (!address_ok || !port_allowed(req.bind.port)) {
        ++s.refused;
        s.log(log_kind::refused, &c, what + ": " + (address_ok ? "port" : "address") + " not in the allowlist");
        return finish(c, frame_type::reply, reply_status::refused_by_allowlist);
      }
      auto sock = detail::bind_socket(req.bind, true);
      if (!sock) {
        const auto& e = sock.error();
        const reply_status st = e.is_errno(EADDRINUSE)      ? reply_status::port_in_use
                                : e.is_errno(EADDRNOTAVAIL) ? reply_status::cannot_assign_address
                                                            : reply_status::internal_error;
        s.log(log_kind::bind_failed, &c, what + ": " + e.message());
        return finish(c, frame_type::reply, st);
      }
      s.log(log_kind::bound, &c, what);
      return finish(c, frame_type::reply, reply_status::ok, sock->get());
    }
    if (req.type == frame_type::refresh_policy) {
      if (s.config.policy_path.empty()) {
        ++s.refused;
        s.log(log_kind::refused, &c, "refresh_policy: no policy path configured");
        return finish(c, frame_type::reply, reply_status::refused_by_allowlist);
      }
      // A record we cannot read must not be overwritten, and without it we could not tell later
      // whether the cache is ours: refuse before writing anything.
      std::optional<record> state;
      if (!s.config.state_path.empty()) {
        auto loaded = detail::helper_state::load(s.config.state_path);
        if (!loaded) {
          s.log(log_kind::policy_failed, &c, "not written: " + loaded.error().message());
          return finish(c, frame_type::reply, reply_status::internal_error);
        }
        state = std::move(*loaded);
      }
      auto created =
          detail::write_root_file(s.config.policy_path, req.policy, "write policy cache", s.config.policy_mode);
      if (!created) {
        s.log(log_kind::policy_failed, &c, created.error().message());
        return finish(c, frame_type::reply, reply_status::internal_error);
      }
      std::string noted;
      if (state) {
        const std::string id = detail::helper_state::policy_item(s.config.policy_path);
        const record_item* seen = state->find(id);
        // "created" is decided once, by the first write: a later refresh of our own file keeps it.
        record_item item = seen ? *seen : record_item{id, "helper_policy", {{"created", *created ? "1" : "0"}}};
        item.fields["written"] = req.policy;
        state->put(std::move(item));
        auto stored = detail::helper_state::store(s.config.state_path, std::move(*state));
        if (!stored) {
          // The bytes are in place, but uninstall could not know the cache is ours: say so.
          s.log(log_kind::policy_failed, &c,
                "written, but not recorded (uninstall will leave " + s.config.policy_path +
                    "): " + stored.error().message());
          return finish(c, frame_type::reply, reply_status::internal_error);
        }
        noted = seen ? "" : *created ? " (created; recorded as the helper's)" : " (existed; not the helper's to remove)";
      }
      s.log(log_kind::policy_written, &c,
            std::to_string(req.policy.size()) + " bytes to " + s.config.policy_path + noted);
      return finish(c, frame_type::reply, reply_status::ok);
    }
    // uninstall_self
    if (!s.config.uninstall) {
      ++s.refused;
      s.log(log_kind::refused, &c, "uninstall_self: no uninstall configured");
      return finish(c, frame_type::reply, reply_status::refused_by_allowlist);
    }
    s.log(log_kind::uninstalled, &c, "uninstall_self accepted; replying, then uninstalling");
    s.uninstall_requested = true;
    return finish(c, frame_type::reply, reply_status::ok);
  }

  /// The teardown after an allowed uninstall_self (see the file comment for the order). Every step
  /// runs even when an earlier one failed; the first failure is returned from `run`.
  result<void> uninstall_self() {
    auto& s = *state_;
    std::optional<error> first;
    auto failed = [&](const error& e) {
      s.log(log_kind::uninstall_failed, nullptr, e.message());
      if (!first) first = e;
    };
    // 1. Nobody else is served by a helper that is going away.
    const auto others = s.conns.size();
    for (auto& c : s.conns)
      if (c.fd) {
        s.log(log_kind::client_gone, &c, "closed unanswered: the helper is uninstalling");
        c.fd.reset();
      }
    s.conns.clear();
    s.open = 0;  // before `closed`, as in the loop
    s.closed += others;
    s.listen.reset();
    // 2. The socket file, only if it is still the one we bound (not a successor's).
    const std::string& socket_path = s.config.socket_path;
    struct stat st {};
    if (::fstatat(s.dir.get(), s.socket_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == s.socket_dev && st.st_ino == s.socket_ino) {
      if (::unlinkat(s.dir.get(), s.socket_name.c_str(), 0) == 0) {
        ::fsync(s.dir.get());
        s.log(log_kind::uninstalled, nullptr, "removed socket " + socket_path);
      } else {
        failed(fail_errno(errno, "remove helper socket", socket_path).value());
      }
    } else {
      s.log(log_kind::uninstalled, nullptr, "socket " + socket_path + " is no longer ours; left alone");
    }
    s.socket_name.clear();  // the destructor must not look again
    // 3. The policy cache and the helper's own record.
    if (auto ok = remove_recorded_state(); !ok) failed(ok.error());
    // 4. The launchd job (remove the plist, then bootout): last, see the file comment.
    auto reverted = s.config.uninstall();
    if (reverted) s.log(log_kind::uninstalled, nullptr, *reverted);
    else failed(reverted.error());
    if (first) return tl::unexpected(*first);
    return {};
  }

  /// Removes the policy cache if the helper's record says it created it and it still holds the
  /// bytes the helper wrote, then the record (and its directory, if the helper made it).
  result<void> remove_recorded_state() {
    auto& s = *state_;
    const std::string op = "uninstall helper";
    if (s.config.state_path.empty()) {
      if (!s.config.policy_path.empty())
        s.log(log_kind::uninstalled, nullptr,
              "no helper record configured: policy cache " + s.config.policy_path + " left alone");
      return {};
    }
    auto state = detail::helper_state::load(s.config.state_path);
    if (!state) return tl::unexpected(state.error());
    std::optional<error> first;
    if (!s.config.policy_path.empty()) {
      const std::string& path = s.config.policy_path;
      const record_item* item = state->find(detail::helper_state::policy_item(path));
      if (!item || item->get("created") != "1") {
        s.log(log_kind::uninstalled, nullptr,
              "policy cache " + path + (item ? " existed before the helper wrote it" : " not recorded as the helper's") +
                  "; left alone");
      } else {
        auto current = detail::read_root_file(path, op, max_policy_bytes);
        if (!current) {
          first = current.error();
        } else if (!*current) {
          s.log(log_kind::uninstalled, nullptr, "policy cache " + path + " already gone");
        } else if (**current != item->get("written")) {
          first = fail(errc::drifted, op, path, "the policy cache changed since the helper wrote it",
                       "it was left in place; remove it by hand if it is no longer needed")
                      .value();
        } else if (auto removed = detail::remove_root_entry(path, op); !removed) {
          first = removed.error();
        } else {
          s.log(log_kind::uninstalled, nullptr, "removed policy cache " + path);
        }
      }
    }
    // The record goes even when the cache stayed: it described an installation that is gone.
    if (auto removed = detail::remove_root_entry(s.config.state_path, op); !removed) {
      if (!first) first = removed.error();
    } else {
      s.log(log_kind::uninstalled, nullptr, "removed helper record " + s.config.state_path);
      if (const record_item* dir = state->find("state-dir")) {
        // Only while empty: anything else in it is not ours.
        if (detail::remove_root_entry(dir->get("path"), op, AT_REMOVEDIR))
          s.log(log_kind::uninstalled, nullptr, "removed directory " + dir->get("path"));
      }
    }
    if (first) return tl::unexpected(*first);
    return {};
  }

  std::unique_ptr<detail::server_state> state_;
};

}  // namespace helper

HOSTCFG_END_NAMESPACE
