#pragma once
/// @file
/// The helper program's one-shot mode: the elevated runner that `CommandPrivilege` starts through
/// sudo / pkexec / the macOS admin dialog. It reads the privileged part of a plan (typed desired
/// state, record format) from standard input, re-validates and re-probes everything itself,
/// applies it as root with the real backends, and writes the outcome to standard output. A revert
/// batch (from `uninstall`; its header says so) is reverted instead, from the root-owned record.
///
/// Hardening: it works only as root; it takes the requesting user from the elevation tool
/// (`SUDO_UID`, `PKEXEC_UID`; `--uid` only when neither exists, i.e. the macOS dialog, which only
/// an administrator can pass) and their home and shell from the user database, never from `HOME`,
/// `TMPDIR`, `PATH` or `XDG_*`; it refuses to run from a binary that a non-root user could replace
/// (the binary and every directory above it must be root-owned and not group/world-writable);
/// it runs only the primitive kinds it was built with, refuses steps the user could do alone
/// (runner.hpp), and trusts only the root-owned record.
///
///     int main(int argc, char** argv) {   // in the helper program
///       if (is_one_shot(argc, argv))
///         return run_one_shot<ManagedFile, HostsEntry, SymlinkSet>(0, 1, 2, parse_one_shot_options(argc, argv));
///       ...
///     }

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hostcfg/backend/posix_fs.hpp"
#include "hostcfg/backend/rooted_fs.hpp"
#include "hostcfg/backend/service_manager.hpp"
#include "hostcfg/runner.hpp"

#ifdef __APPLE__
#include <mach-o/dyld.h>
#endif

HOSTCFG_BEGIN_NAMESPACE

namespace helper {

/// The largest uid the runner accepts: (uid_t)-1 means "no change" to chown and is never a user.
inline constexpr unsigned long max_uid = 4294967294UL;

/// Options of the one-shot mode (from its command line; the elevation tool fixes them).
struct one_shot_options {
  std::optional<std::string> root;    ///< --root DIR: work under DIR (RootedFs), e.g. a test tree
  std::optional<uid_type> uid;        ///< --uid N: only honoured when no SUDO_UID / PKEXEC_UID
  std::optional<std::string> record;  ///< --system-record PATH: the privileged record (inside the root)
  std::size_t max_payload = 1u << 20;
  bool check_own_binary = true;
  std::optional<std::string> self_path;  ///< for tests: the binary to check instead of our own
};

/// True when argv asks for the one-shot mode (`--one-shot`).
inline bool is_one_shot(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--one-shot") return true;
  return false;
}

/// Parses `--root DIR`, `--uid N`, `--system-record PATH`; unknown options are an error.
inline result<one_shot_options> parse_one_shot_options(int argc, char** argv) {
  one_shot_options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    if (arg == "--one-shot") continue;
    if (arg == "--root" || arg == "--system-record") {
      auto v = value();
      if (!v || !is_normal_path(*v))
        return fail(errc::invalid_input, "one-shot", std::string(arg), "needs an absolute normal path");
      (arg == "--root" ? options.root : options.record) = *v;
    } else if (arg == "--uid") {
      auto v = value();
      auto uid = v ? record_item::parse_decimal(*v, max_uid) : std::nullopt;
      if (!uid) return fail(errc::invalid_input, "one-shot", "--uid", "needs a uid (a number below 4294967295)");
      options.uid = static_cast<uid_type>(*uid);
    } else {
      return fail(errc::invalid_input, "one-shot", std::string(arg), "unknown option");
    }
  }
  return options;
}

/// The uid that asked for elevation, as the elevation tool says (never the caller's own claim
/// when a tool says otherwise).
inline result<uid_type> requesting_uid(const one_shot_options& options) {
  for (const char* name : {"SUDO_UID", "PKEXEC_UID"}) {
    const char* value = std::getenv(name);
    if (!value) continue;
    std::string text(value);
    auto uid = record_item::parse_decimal(text, max_uid);
    if (!uid) return fail(errc::invalid_input, "one-shot", name, "not a uid (a number below 4294967295)");
    return static_cast<uid_type>(*uid);
  }
  if (options.uid) return *options.uid;
  return fail(errc::invalid_input, "one-shot", {}, "no requesting user (SUDO_UID, PKEXEC_UID or --uid)");
}

/// The user's identity from the user database (name, gid, groups, home, shell).
inline result<user_identity> lookup_user(uid_type uid) {
  struct passwd pw;
  struct passwd* found = nullptr;
  std::vector<char> buffer(16384);
  int rc = ::getpwuid_r(uid, &pw, buffer.data(), buffer.size(), &found);
  if (rc != 0 || !found)
    return fail(errc::invalid_input, "look up user", std::to_string(uid), "no such user in the user database");
  user_identity user;
  user.uid = pw.pw_uid;
  user.gid = pw.pw_gid;
  user.name = pw.pw_name;
  user.home = pw.pw_dir;
  user.shell = pw.pw_shell;
  int count = 64;
  std::vector<gid_type> groups(static_cast<std::size_t>(count));
#ifdef __APPLE__
  std::vector<int> raw(static_cast<std::size_t>(count));
  if (::getgrouplist(pw.pw_name, static_cast<int>(pw.pw_gid), raw.data(), &count) >= 0)
    for (int i = 0; i < count; ++i) user.groups.push_back(static_cast<gid_type>(raw[static_cast<std::size_t>(i)]));
#else
  std::vector<gid_t> raw(static_cast<std::size_t>(count));
  if (::getgrouplist(pw.pw_name, pw.pw_gid, raw.data(), &count) >= 0)
    for (int i = 0; i < count; ++i) user.groups.push_back(raw[static_cast<std::size_t>(i)]);
#endif
  return user;
}

/// Path of this process's own binary.
inline result<std::string> own_binary_path() {
#ifdef __APPLE__
  char buffer[PATH_MAX];
  uint32_t size = sizeof buffer;
  if (::_NSGetExecutablePath(buffer, &size) != 0) return fail(errc::unsupported, "own binary", {}, "path too long");
  char resolved[PATH_MAX];
  if (!::realpath(buffer, resolved)) return fail_errno(errno, "realpath", buffer);
  return std::string(resolved);
#else
  char buffer[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  if (n < 0) return fail_errno(errno, "readlink", "/proc/self/exe");
  return std::string(buffer, static_cast<std::size_t>(n));
#endif
}

/// Refuses a binary that a non-root user could replace: the file and every directory above it
/// must be root-owned and not group- or world-writable (podman's verifyRootDeep, Lima's
/// validatePath), and no component may be a symlink.
inline result<void> check_trusted_binary(const std::string& path) {
  if (!is_normal_path(path)) return fail(errc::unsafe_path, "check binary", path, "not an absolute normal path");
  std::string current;
  std::vector<std::string> chain{"/"};
  for (const auto& part : path_components(path)) chain.push_back(current += "/" + part);
  for (const auto& p : chain) {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) return fail_errno(errno, "check binary", p);
    if (S_ISLNK(st.st_mode))
      return fail(errc::unsafe_path, "check binary", p, "a symlink in the runner's path", "install it at a real path");
    // A root-owned sticky directory (/tmp, /var/tmp) is a safe ancestor: nobody but root can
    // rename or remove the root-owned entry below it.
    bool sticky_root_dir = S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & S_ISVTX) != 0 && p != path;
    if (!sticky_root_dir && (st.st_uid != 0 || (st.st_mode & 022) != 0))
      return fail(errc::unsafe_path, "check binary", p,
                  "not root-owned or writable by others: a user could replace the elevated runner",
                  "install the helper in a root-owned directory such as /Library/PrivilegedHelperTools");
  }
  return {};
}

namespace detail {
inline bool write_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}
inline result<std::string> read_bounded(int fd, std::size_t max) {
  std::string bytes;
  char buffer[8192];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno(errno, "read payload", "stdin");
    if (n == 0) return bytes;
    if (bytes.size() + static_cast<std::size_t>(n) > max)
      return fail(errc::too_large, "read payload", "stdin", "the plan exceeds its size bound");
    bytes.append(buffer, static_cast<std::size_t>(n));
  }
}
inline int refuse(int err_fd, const error& e) {
  write_all(err_fd, "hostcfg runner: " + e.message() + "\n");
  return 1;
}
}  // namespace detail

/// What the runner program itself decides, compiled in - never taken from the command line or
/// the payload.
struct one_shot_environment {
  /// Replaces the service manager the runner picks (launchctl on the real root, file-only under
  /// `--root`); a test runner passes one whose kickstart starts a helper.
  any_service_manager* services = nullptr;
  /// The launchd jobs a payload may ask this runner to start (PrivilegedPortBind's helper).
  launchd_job_allowlist startable_jobs;
};

/// Runs the one-shot mode: payload on `in_fd`, reply on `out_fd`, diagnostics on `err_fd`.
/// Returns the process exit status (0: a reply was written, whatever its events say).
template <class... Primitives>
int run_one_shot(int in_fd, int out_fd, int err_fd, const result<one_shot_options>& parsed,
                 const one_shot_environment& environment = {}) {
  if (!parsed) return detail::refuse(err_fd, parsed.error());
  const one_shot_options& options = *parsed;
  if (::geteuid() != 0)
    return detail::refuse(err_fd, fail(errc::unavailable, "one-shot", {}, "must run as root").value());
  if (options.check_own_binary) {
    auto self = options.self_path ? result<std::string>(*options.self_path) : own_binary_path();
    if (!self) return detail::refuse(err_fd, self.error());
    if (auto trusted = check_trusted_binary(*self); !trusted) return detail::refuse(err_fd, trusted.error());
  }
  auto uid = requesting_uid(options);
  if (!uid) return detail::refuse(err_fd, uid.error());
  auto user = lookup_user(*uid);
  if (!user) return detail::refuse(err_fd, user.error());
  auto bytes = detail::read_bounded(in_fd, options.max_payload);
  if (!bytes) return detail::refuse(err_fd, bytes.error());
  auto payload = parse_record(*bytes, "payload");
  if (!payload) return detail::refuse(err_fd, payload.error());
  if (auto ok = validate_app_id(payload->app_id); !ok) return detail::refuse(err_fd, ok.error());

  // launchd jobs are loaded only on the real system; under --root they are written, not loaded.
  LaunchctlServiceManager launchctl;
  FileOnlyServiceManager file_only;
  any_service_manager services = options.root ? any_service_manager(file_only) : any_service_manager(launchctl);
  auto execute = [&](auto& fs) {
    RootFor root(*user);
    context ctx(fs, root, payload->app_id);
    ctx.attach(environment.services ? *environment.services : services);
    launchd_job_allowlist startable = environment.startable_jobs;
    ctx.attach(startable);
    if (options.record) ctx.system_record.path = *options.record;
    auto outcome = execute_handoff<Primitives...>(ctx, *payload);
    return serialize_record(encode_outcome(outcome, payload->app_id));
  };
  PosixFs posix;
  std::string reply;
  if (options.root) {
    RootedFs<PosixFs> rooted(posix, *options.root);
    reply = execute(rooted);
  } else {
    reply = execute(posix);
  }
  return detail::write_all(out_fd, reply) ? 0 : 1;
}

}  // namespace helper

HOSTCFG_END_NAMESPACE
