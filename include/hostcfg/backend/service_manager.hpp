#pragma once
/// @file
/// Service-manager backends: how a launchd job is loaded, unloaded, enabled and queried.
///
/// - Pure argument builders for `launchctl` with explicit domains (`system`, `gui/<uid>`,
///   `user/<uid>`), never the legacy `load`/`unload`, whose domain depends on who calls it
///   (nix-darwin#1255): `launchctl_bootstrap_args(launchd_domain::system(), path)` ==
///   {"bootstrap", "system", path}. Tested on every OS.
/// - The backend contract (checked by `check_service_manager<S>()`):
///
/// | call | returns | meaning |
/// |---|---|---|
/// | `is_loaded(domain, label)` | `result<service_query>` | yes / no / unknown (no launchd here) |
/// | `is_enabled(domain, label)` | `result<service_query>` | not disabled in the domain's overrides |
/// | `bootstrap(domain, label, plist_path)` | `result<service_outcome>` | load the job; EIO while a previous instance is still unloading |
/// | `bootout(domain, label)` | `result<service_outcome>` | unload; may return before the label is gone (home-manager#8829) |
/// | `enable(domain, label)` | `result<service_outcome>` | clear a "disabled" override |
/// | `kickstart(domain, label)` | `result<service_outcome>` | start a loaded job now (not `-k`: a running instance is kept); ESRCH when not loaded |
///
/// - `FakeServiceManager`: an in-memory launchd for tests that records every call and fails like
///   the real one (EIO once, not found, a bootout that lingers for N polls, a missing gui domain,
///   a bootout of the caller's own job that ends the caller).
/// - `FileOnlyServiceManager`: for sandboxes and `--root` trees; loading is "skipped: no launchd
///   here", which is not a failure.
/// - `LaunchctlServiceManager`: runs /bin/launchctl (posix_spawn, no shell) on macOS; elsewhere
///   every call is `errc::unsupported`. The runner itself is portable (`detail::run_program`), so
///   it is exercised on Linux against a stand-in program.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "hostcfg/backend/unique_fd.hpp"
#include "hostcfg/error.hpp"
#include "hostcfg/fs.hpp"

extern char** environ;

HOSTCFG_BEGIN_NAMESPACE

/// A launchd domain, always named explicitly.
struct launchd_domain {
  /// Which kind: the system domain (daemons, root), a login session (`gui/<uid>`, agents with a
  /// GUI; absent on headless Macs) or the user's background domain (`user/<uid>`).
  enum class kind { system, gui, user };
  kind which = kind::system;
  uid_type uid = 0;  ///< for gui/user

  /// The system domain (LaunchDaemons).
  static launchd_domain system() { return {kind::system, 0}; }
  /// `gui/<uid>`: the user's login session.
  static launchd_domain gui(uid_type uid) { return {kind::gui, uid}; }
  /// `user/<uid>`: the user's background domain (exists without a login session).
  static launchd_domain user(uid_type uid) { return {kind::user, uid}; }

  /// "system", "gui/501", "user/501".
  std::string name() const {
    switch (which) {
      case kind::system: return "system";
      case kind::gui: return "gui/" + std::to_string(uid);
      case kind::user: return "user/" + std::to_string(uid);
    }
    return "system";
  }
  friend bool operator==(const launchd_domain& a, const launchd_domain& b) {
    return a.which == b.which && (a.which == kind::system || a.uid == b.uid);
  }
  friend bool operator!=(const launchd_domain& a, const launchd_domain& b) { return !(a == b); }
};

/// Checks a launchd label: 1..255 bytes of [A-Za-z0-9._-], not starting with '.' or '-', no "..".
/// Stricter than launchd on purpose: the label becomes a file name (`<label>.plist`) and part of
/// a service target (`system/<label>`), so '/', spaces, controls and option-like labels are out.
inline result<void> validate_label(std::string_view label) {
  auto bad = [&](const std::string& why) {
    return fail(errc::invalid_input, "validate launchd label", std::string(label), why,
                "use a reverse-DNS name such as com.example.helper");
  };
  if (label.empty()) return bad("empty label");
  if (label.size() > 255) return bad("longer than 255 bytes");
  if (label.front() == '.' || label.front() == '-') return bad("starts with '" + std::string(1, label.front()) + "'");
  if (label.find("..") != std::string_view::npos) return bad("contains \"..\"");
  for (char c : label) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-';
    if (!ok) return bad("contains a character other than letters, digits, '.', '_' or '-'");
  }
  return {};
}

/// `<domain>/<label>`, the service target launchctl's subcommands take.
inline result<std::string> launchd_service_target(const launchd_domain& domain, std::string_view label) {
  if (auto ok = validate_label(label); !ok) return tl::unexpected(ok.error());
  return domain.name() + "/" + std::string(label);
}

/// {"bootstrap", "<domain>", "<plist path>"}. The path must be absolute and normal.
inline result<std::vector<std::string>> launchctl_bootstrap_args(const launchd_domain& domain,
                                                                 std::string_view plist_path) {
  if (!is_normal_path(plist_path))
    return fail(errc::invalid_input, "launchctl bootstrap", std::string(plist_path),
                "the plist path must be absolute and normal");
  return std::vector<std::string>{"bootstrap", domain.name(), std::string(plist_path)};
}

/// {"bootout", "<domain>/<label>"}.
inline result<std::vector<std::string>> launchctl_bootout_args(const launchd_domain& domain, std::string_view label) {
  auto target = launchd_service_target(domain, label);
  if (!target) return tl::unexpected(target.error());
  return std::vector<std::string>{"bootout", *target};
}

/// {"enable", "<domain>/<label>"}.
inline result<std::vector<std::string>> launchctl_enable_args(const launchd_domain& domain, std::string_view label) {
  auto target = launchd_service_target(domain, label);
  if (!target) return tl::unexpected(target.error());
  return std::vector<std::string>{"enable", *target};
}

/// {"kickstart", "<domain>/<label>"}: starts a loaded job that is not running (an on-demand
/// helper); never `-k`, which would kill a running instance and the clients it serves.
inline result<std::vector<std::string>> launchctl_kickstart_args(const launchd_domain& domain, std::string_view label) {
  auto target = launchd_service_target(domain, label);
  if (!target) return tl::unexpected(target.error());
  return std::vector<std::string>{"kickstart", *target};
}

/// {"print", "<domain>/<label>"}: exit 0 when loaded, 113 when not.
inline result<std::vector<std::string>> launchctl_print_args(const launchd_domain& domain, std::string_view label) {
  auto target = launchd_service_target(domain, label);
  if (!target) return tl::unexpected(target.error());
  return std::vector<std::string>{"print", *target};
}

/// {"print-disabled", "<domain>"}: the domain's enable/disable overrides.
inline std::vector<std::string> launchctl_print_disabled_args(const launchd_domain& domain) {
  return {"print-disabled", domain.name()};
}

/// A yes/no answer that may be unknown (a backend without launchd cannot tell).
enum class service_query { yes, no, unknown };

/// What a load/unload/enable call did: done, or skipped with a note (file-only backends).
struct service_outcome {
  bool skipped = false;
  std::string note;  ///< e.g. "skipped: no launchd here"
};

/// Reads `launchctl print-disabled <domain>` output: whether `label` is disabled there. Lines look
/// like `"com.docker.vmnetd" => disabled` (macOS 13+: `enabled`/`disabled`; older: `true` means
/// disabled, `false` enabled). A label without a line has no override: enabled.
inline service_query parse_print_disabled(std::string_view output, std::string_view label) {
  std::string quoted = "\"" + std::string(label) + "\"";
  std::size_t pos = 0;
  while (pos < output.size()) {
    std::size_t end = output.find('\n', pos);
    if (end == std::string_view::npos) end = output.size();
    std::string_view line = output.substr(pos, end - pos);
    pos = end + 1;
    std::size_t at = line.find(quoted);
    if (at == std::string_view::npos) continue;
    std::size_t arrow = line.find("=>", at + quoted.size());
    if (arrow == std::string_view::npos) continue;
    std::string_view rest = line.substr(arrow + 2);
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
    if (rest.substr(0, 8) == "disabled" || rest.substr(0, 4) == "true") return service_query::no;
    if (rest.substr(0, 7) == "enabled" || rest.substr(0, 5) == "false") return service_query::yes;
    return service_query::unknown;
  }
  return service_query::yes;
}

/// Turns a failed launchctl exit status into an error. launchctl exits with an errno for most
/// failures (5 = EIO: "bootstrap failed", typically because a bootout has not finished), 113 for
/// "could not find service" and 125 for a domain that does not exist (a headless Mac has no
/// gui/<uid>: use user/<uid>).
inline error launchctl_exit_error(int status, const std::vector<std::string>& args, std::string_view output) {
  std::string op = "launchctl";
  for (const auto& a : args) op += " " + a;
  std::string detail(output.substr(0, 200));
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
  if (status == 113)
    return error{std::error_code(ESRCH, std::system_category()), op, {}, {}, "service not found (exit 113)", {}};
  if (status == 125)
    return error{make_error_code(errc::unavailable), op, {}, {}, "domain does not exist (exit 125)",
                 "no login session for gui/<uid> (a headless Mac?): use user/<uid>"};
  if (status > 0 && status < 107) {
    std::error_code code(status, std::system_category());
    return error{code, op, {}, {}, code.message() + " (exit " + std::to_string(status) + ")" + (detail.empty() ? "" : ": " + detail), {}};
  }
  return error{make_error_code(errc::unavailable), op, {}, {},
               "exit status " + std::to_string(status) + (detail.empty() ? "" : ": " + detail), {}};
}

namespace detail {
template <class S, class = void>
struct sm_has_is_loaded : std::false_type {};
template <class S>
struct sm_has_is_loaded<S, std::void_t<decltype(std::declval<S&>().is_loaded(std::declval<const launchd_domain&>(), std::string_view{}))>>
    : std::true_type {};
template <class S, class = void>
struct sm_has_is_enabled : std::false_type {};
template <class S>
struct sm_has_is_enabled<S, std::void_t<decltype(std::declval<S&>().is_enabled(std::declval<const launchd_domain&>(), std::string_view{}))>>
    : std::true_type {};
template <class S, class = void>
struct sm_has_bootstrap : std::false_type {};
template <class S>
struct sm_has_bootstrap<S, std::void_t<decltype(std::declval<S&>().bootstrap(std::declval<const launchd_domain&>(), std::string_view{}, std::string_view{}))>>
    : std::true_type {};
template <class S, class = void>
struct sm_has_bootout : std::false_type {};
template <class S>
struct sm_has_bootout<S, std::void_t<decltype(std::declval<S&>().bootout(std::declval<const launchd_domain&>(), std::string_view{}))>>
    : std::true_type {};
template <class S, class = void>
struct sm_has_enable : std::false_type {};
template <class S>
struct sm_has_enable<S, std::void_t<decltype(std::declval<S&>().enable(std::declval<const launchd_domain&>(), std::string_view{}))>>
    : std::true_type {};
template <class S, class = void>
struct sm_has_kickstart : std::false_type {};
template <class S>
struct sm_has_kickstart<S, std::void_t<decltype(std::declval<S&>().kickstart(std::declval<const launchd_domain&>(), std::string_view{}))>>
    : std::true_type {};
}  // namespace detail

/// Compile-time contract check for a service-manager backend; one message per missing operation.
template <class S>
constexpr bool check_service_manager() {
  static_assert(detail::sm_has_is_loaded<S>::value, "ServiceManager needs: result<service_query> is_loaded(const launchd_domain&, std::string_view label)");
  static_assert(detail::sm_has_is_enabled<S>::value, "ServiceManager needs: result<service_query> is_enabled(const launchd_domain&, std::string_view label)");
  static_assert(detail::sm_has_bootstrap<S>::value, "ServiceManager needs: result<service_outcome> bootstrap(const launchd_domain&, std::string_view label, std::string_view plist_path)");
  static_assert(detail::sm_has_bootout<S>::value, "ServiceManager needs: result<service_outcome> bootout(const launchd_domain&, std::string_view label)");
  static_assert(detail::sm_has_enable<S>::value, "ServiceManager needs: result<service_outcome> enable(const launchd_domain&, std::string_view label)");
  static_assert(detail::sm_has_kickstart<S>::value, "ServiceManager needs: result<service_outcome> kickstart(const launchd_domain&, std::string_view label)");
  return true;
}

/// An in-memory launchd for tests. Records every call; behaves like launchd where it matters:
/// bootstrap of a loaded label fails with EIO, bootout of an unknown label fails with ESRCH
/// (exit 113), a removed domain fails with `errc::unavailable` (exit 125). Scriptable:
///
///     FakeServiceManager sm;
///     sm.fail_next("bootstrap", EIO);     // the next bootstrap fails once with EIO
///     sm.set_bootout_lag(3);              // after bootout the label stays loaded for 3 polls
///     sm.remove_domain(launchd_domain::gui(501));   // headless Mac
///     sm.set_caller_job(launchd_domain::system(), "com.docker.vmnetd");  // the caller runs in it
///     sm.on_call([&](const FakeServiceManager::call& c) { /* look at the caller's state now */ });
class FakeServiceManager {
 public:
  /// One recorded call: "bootstrap system /Library/LaunchDaemons/x.plist", "bootout system/x",
  /// "is_loaded system/x", ...
  struct call {
    std::string op;
    std::string domain;
    std::string label;
    std::string path;
    /// The call as one line, for assertions.
    std::string text() const {
      if (op == "bootstrap") return op + " " + domain + " " + path;
      return op + " " + domain + "/" + label;
    }
  };

  /// Every call so far, in order.
  const std::vector<call>& calls() const { return calls_; }
  /// The calls as lines (`call::text`).
  std::vector<std::string> call_lines() const {
    std::vector<std::string> out;
    for (const auto& c : calls_) out.push_back(c.text());
    return out;
  }
  /// How many calls of `op` were made.
  std::size_t count(std::string_view op) const {
    std::size_t n = 0;
    for (const auto& c : calls_) n += c.op == op;
    return n;
  }
  /// Forgets the recorded calls (the jobs' states stay).
  void clear_calls() { calls_.clear(); }

  /// The next call of `op` ("bootstrap", "bootout", "enable", "kickstart", "is_loaded", "is_enabled") fails
  /// with errno `err`; several calls queue up.
  void fail_next(std::string op, int err) { failures_.push_back({std::move(op), err}); }
  /// After each bootout, the label still reads as loaded for `polls` more `is_loaded` calls (and a
  /// bootstrap meanwhile gets EIO), as launchd does while the job is exiting.
  void set_bootout_lag(std::size_t polls) { lag_ = polls; }
  /// Makes `domain` absent (headless Mac: no gui/<uid>).
  void remove_domain(const launchd_domain& domain) { missing_domains_.push_back(domain.name()); }
  /// Puts a job in a state directly (an already-installed job).
  void set_loaded(const launchd_domain& domain, std::string_view label, std::string plist_path = {}) {
    auto& job = jobs_[key(domain, label)];
    job.loaded = true;
    job.plist_path = std::move(plist_path);
  }
  /// Says the calling process runs inside the job `label` of `domain` (a privileged helper that
  /// uninstalls itself). A real `launchctl bootout` of that job makes launchd send the caller
  /// SIGTERM, so the call never returns success to it. The fake cannot end the test process, so it
  /// models that as: the job is unloaded as any bootout unloads it, `caller_killed()` becomes true,
  /// and the call answers `caller_killed_error` instead of success. Code under test must treat
  /// everything after such a bootout as never run; tests check what it had done before the call
  /// (`on_call`) and that nothing follows the bootout in `calls()`.
  void set_caller_job(const launchd_domain& domain, std::string_view label) { caller_job_ = key(domain, label); }
  /// True once a bootout of the caller's own job (`set_caller_job`) "ended" the caller.
  bool caller_killed() const { return caller_killed_; }
  /// What a bootout of the caller's own job answers in place of success (`set_caller_job`):
  /// EINTR, "the calling process runs in this job and was ended by its bootout (SIGTERM)".
  static error caller_killed_error(const launchd_domain& domain, std::string_view label) {
    return error{std::error_code(EINTR, std::system_category()), "launchctl bootout " + key(domain, label), {}, {},
                 "the calling process runs in this job and was ended by its bootout (SIGTERM)", {}};
  }
  /// Calls `observer` with every call as soon as it is recorded, before the fake acts on it or
  /// answers: a test looks there at what the caller had done by then (the files and record a
  /// self-uninstall must have settled before its bootout). The observer must not throw; an empty
  /// function removes it.
  void on_call(std::function<void(const call&)> observer) { observer_ = std::move(observer); }
  /// Marks a label disabled in a domain's overrides (`launchctl disable`).
  void set_disabled(const launchd_domain& domain, std::string_view label) { jobs_[key(domain, label)].enabled = false; }
  /// True when the label is loaded now (lingering bootouts count as loaded), without recording.
  bool loaded(const launchd_domain& domain, std::string_view label) const {
    auto it = jobs_.find(key(domain, label));
    return it != jobs_.end() && (it->second.loaded || it->second.lingering > 0);
  }
  /// The plist path the label was bootstrapped from (empty if none).
  std::string plist_path(const launchd_domain& domain, std::string_view label) const {
    auto it = jobs_.find(key(domain, label));
    return it == jobs_.end() ? std::string() : it->second.plist_path;
  }

  /// Loaded now? A lingering bootout answers yes and uses up one poll.
  result<service_query> is_loaded(const launchd_domain& domain, std::string_view label) {
    record({"is_loaded", domain.name(), std::string(label), {}});
    if (auto e = scripted("is_loaded", domain, label)) return tl::unexpected(*e);
    auto it = jobs_.find(key(domain, label));
    if (it == jobs_.end()) return service_query::no;
    if (it->second.lingering > 0) {
      --it->second.lingering;
      return service_query::yes;
    }
    return it->second.loaded ? service_query::yes : service_query::no;
  }

  /// Enabled unless `set_disabled` said otherwise.
  result<service_query> is_enabled(const launchd_domain& domain, std::string_view label) {
    record({"is_enabled", domain.name(), std::string(label), {}});
    if (auto e = scripted("is_enabled", domain, label)) return tl::unexpected(*e);
    auto it = jobs_.find(key(domain, label));
    return it == jobs_.end() || it->second.enabled ? service_query::yes : service_query::no;
  }

  /// Loads the label; EIO while it is loaded or still lingering after a bootout.
  result<service_outcome> bootstrap(const launchd_domain& domain, std::string_view label, std::string_view plist_path) {
    record({"bootstrap", domain.name(), std::string(label), std::string(plist_path)});
    if (auto e = scripted("bootstrap", domain, label)) return tl::unexpected(*e);
    auto& job = jobs_[key(domain, label)];
    if (job.loaded || job.lingering > 0) return tl::unexpected(errno_error(EIO, "bootstrap", domain, label));
    job.loaded = true;
    job.plist_path = std::string(plist_path);
    return service_outcome{};
  }

  /// Unloads the label (it lingers for `set_bootout_lag` polls); ESRCH (exit 113) when not loaded.
  /// The caller's own job (`set_caller_job`) is unloaded too, but the caller gets
  /// `caller_killed_error`, never success.
  result<service_outcome> bootout(const launchd_domain& domain, std::string_view label) {
    record({"bootout", domain.name(), std::string(label), {}});
    if (auto e = scripted("bootout", domain, label)) return tl::unexpected(*e);
    auto it = jobs_.find(key(domain, label));
    if (it == jobs_.end() || (!it->second.loaded && it->second.lingering == 0))
      return tl::unexpected(launchctl_exit_error(113, {"bootout", domain.name() + "/" + std::string(label)}, {}));
    it->second.loaded = false;
    it->second.lingering = lag_;
    if (!caller_job_.empty() && caller_job_ == key(domain, label)) {
      caller_killed_ = true;
      return tl::unexpected(caller_killed_error(domain, label));
    }
    return service_outcome{};
  }

  /// Clears a disabled override.
  result<service_outcome> enable(const launchd_domain& domain, std::string_view label) {
    record({"enable", domain.name(), std::string(label), {}});
    if (auto e = scripted("enable", domain, label)) return tl::unexpected(*e);
    jobs_[key(domain, label)].enabled = true;
    return service_outcome{};
  }

  /// Starts a loaded job (counted by `kickstarts`); ESRCH (exit 113) when the label is not
  /// loaded. What "started" does is the test's: an `on_call` observer may start a real helper.
  result<service_outcome> kickstart(const launchd_domain& domain, std::string_view label) {
    record({"kickstart", domain.name(), std::string(label), {}});
    if (auto e = scripted("kickstart", domain, label)) return tl::unexpected(*e);
    auto it = jobs_.find(key(domain, label));
    if (it == jobs_.end() || !it->second.loaded)
      return tl::unexpected(launchctl_exit_error(113, {"kickstart", key(domain, label)}, {}));
    ++it->second.kickstarts;
    return service_outcome{};
  }
  /// How many kickstarts of the label succeeded.
  std::size_t kickstarts(const launchd_domain& domain, std::string_view label) const {
    auto it = jobs_.find(key(domain, label));
    return it == jobs_.end() ? 0 : it->second.kickstarts;
  }

 private:
  struct job_state {
    bool loaded = false;
    bool enabled = true;
    std::size_t lingering = 0;
    std::size_t kickstarts = 0;
    std::string plist_path;
  };
  void record(call c) {
    calls_.push_back(std::move(c));
    if (observer_) observer_(calls_.back());
  }
  static std::string key(const launchd_domain& domain, std::string_view label) {
    return domain.name() + "/" + std::string(label);
  }
  static error errno_error(int err, const char* op, const launchd_domain& domain, std::string_view label) {
    std::vector<std::string> args{op, domain.name() + "/" + std::string(label)};
    return launchctl_exit_error(err, args, {});
  }
  std::optional<error> scripted(const char* op, const launchd_domain& domain, std::string_view label) {
    for (const auto& missing : missing_domains_)
      if (missing == domain.name()) return launchctl_exit_error(125, {op, key(domain, label)}, {});
    for (auto it = failures_.begin(); it != failures_.end(); ++it) {
      if (it->first == op) {
        int err = it->second;
        failures_.erase(it);
        return errno_error(err, op, domain, label);
      }
    }
    return std::nullopt;
  }

  std::vector<call> calls_;
  std::map<std::string, job_state> jobs_;
  std::vector<std::pair<std::string, int>> failures_;
  std::vector<std::string> missing_domains_;
  std::size_t lag_ = 0;
  std::string caller_job_;  ///< "<domain>/<label>" the caller runs in; empty: none
  bool caller_killed_ = false;
  std::function<void(const call&)> observer_;
};

/// For sandboxes and `--root` trees: there is no launchd to talk to. Queries answer `unknown`;
/// load, unload and enable succeed as skipped, so a run over a sandbox reports them instead of
/// failing.
class FileOnlyServiceManager {
 public:
  /// The note every skipped call carries.
  static constexpr const char* skip_note = "skipped: no launchd here";

  result<service_query> is_loaded(const launchd_domain&, std::string_view) { return service_query::unknown; }
  result<service_query> is_enabled(const launchd_domain&, std::string_view) { return service_query::unknown; }
  result<service_outcome> bootstrap(const launchd_domain&, std::string_view, std::string_view) { return skipped(); }
  result<service_outcome> bootout(const launchd_domain&, std::string_view) { return skipped(); }
  result<service_outcome> enable(const launchd_domain&, std::string_view) { return skipped(); }
  result<service_outcome> kickstart(const launchd_domain&, std::string_view) { return skipped(); }

 private:
  static service_outcome skipped() { return service_outcome{true, skip_note}; }
};

/// The launchd jobs an elevated runner may start on a user's request (PrivilegedPortBind's
/// helper). A payload only names a job; the runner program lists the jobs it may start, compiled
/// in, and attaches the list to its context (`ctx.attach(list)`, or `one_shot_environment`), so a
/// user cannot make root start some other system job. Empty: none.
///
///     launchd_job_allowlist jobs{{"com.docker.vmnetd"}};
struct launchd_job_allowlist {
  std::vector<std::string> labels;
  /// True when `label` is listed (exact match).
  bool allows(std::string_view label) const {
    for (const auto& l : labels)
      if (l == label) return true;
    return false;
  }
};

/// Any service-manager backend behind one type, so a primitive can find it in a `context`
/// (`ctx.attach(ref)`, `ctx.find<any_service_manager>()`) without being a template over it.
/// Holds a reference: the backend must outlive it.
///
///     FakeServiceManager fake;
///     any_service_manager sm(fake);
///     ctx.attach(sm);
class any_service_manager {
 public:
  template <class S, std::enable_if_t<!std::is_same<std::decay_t<S>, any_service_manager>::value, int> = 0>
  explicit any_service_manager(S& backend) {
    static_assert(check_service_manager<S>(), "");
    is_loaded_ = [&backend](const launchd_domain& d, std::string_view l) { return backend.is_loaded(d, l); };
    is_enabled_ = [&backend](const launchd_domain& d, std::string_view l) { return backend.is_enabled(d, l); };
    bootstrap_ = [&backend](const launchd_domain& d, std::string_view l, std::string_view p) {
      return backend.bootstrap(d, l, p);
    };
    bootout_ = [&backend](const launchd_domain& d, std::string_view l) { return backend.bootout(d, l); };
    enable_ = [&backend](const launchd_domain& d, std::string_view l) { return backend.enable(d, l); };
    kickstart_ = [&backend](const launchd_domain& d, std::string_view l) { return backend.kickstart(d, l); };
  }
  result<service_query> is_loaded(const launchd_domain& d, std::string_view label) { return is_loaded_(d, label); }
  result<service_query> is_enabled(const launchd_domain& d, std::string_view label) { return is_enabled_(d, label); }
  result<service_outcome> bootstrap(const launchd_domain& d, std::string_view label, std::string_view plist_path) {
    return bootstrap_(d, label, plist_path);
  }
  result<service_outcome> bootout(const launchd_domain& d, std::string_view label) { return bootout_(d, label); }
  result<service_outcome> enable(const launchd_domain& d, std::string_view label) { return enable_(d, label); }
  result<service_outcome> kickstart(const launchd_domain& d, std::string_view label) { return kickstart_(d, label); }

 private:
  std::function<result<service_query>(const launchd_domain&, std::string_view)> is_loaded_, is_enabled_;
  std::function<result<service_outcome>(const launchd_domain&, std::string_view, std::string_view)> bootstrap_;
  std::function<result<service_outcome>(const launchd_domain&, std::string_view)> bootout_, enable_, kickstart_;
};

/// What a program run by `detail::run_program` did.
struct program_result {
  int exit_status = -1;  ///< exit code, or 128 + signal number
  std::string output;    ///< stdout and stderr together, up to a bound
};

namespace detail {

/// Runs `program` with `args` (argv[1..]) through posix_spawn, no shell, stdin from /dev/null,
/// stdout+stderr captured (first 64 KiB kept). Errors only when it cannot be started.
inline result<program_result> run_program(const std::string& program, const std::vector<std::string>& args) {
  int fds[2];
  if (::pipe(fds) != 0) return fail_errno(errno, "pipe", program);
  unique_fd read_end(fds[0]), write_end(fds[1]);
  // Close-on-exec on both ends so programs spawned concurrently by other threads do not hold
  // the pipe open; dup2 onto 1 and 2 in the child clears the flag on the copies.
  ::fcntl(read_end.get(), F_SETFD, FD_CLOEXEC);
  ::fcntl(write_end.get(), F_SETFD, FD_CLOEXEC);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(program.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  write_end.reset();
  if (rc != 0) return fail_errno(rc, "posix_spawn", program);
  program_result out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(read_end.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (out.output.size() < 65536) out.output.append(buf, static_cast<std::size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return fail_errno(errno, "waitpid", program);
  }
  out.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return out;
}

/// The launchctl backend over any program path: the macOS class uses /bin/launchctl; tests on
/// other systems point it at a stand-in script.
class launchctl_runner {
 public:
  explicit launchctl_runner(std::string program) : program_(std::move(program)) {}

  result<service_query> is_loaded(const launchd_domain& domain, std::string_view label) {
    auto args = launchctl_print_args(domain, label);
    if (!args) return tl::unexpected(args.error());
    auto run = run_program(program_, *args);
    if (!run) return tl::unexpected(run.error());
    if (run->exit_status == 0) return service_query::yes;
    if (run->exit_status == 113) return service_query::no;
    return tl::unexpected(launchctl_exit_error(run->exit_status, *args, run->output));
  }
  result<service_query> is_enabled(const launchd_domain& domain, std::string_view label) {
    if (auto ok = validate_label(label); !ok) return tl::unexpected(ok.error());
    auto args = launchctl_print_disabled_args(domain);
    auto run = run_program(program_, args);
    if (!run) return tl::unexpected(run.error());
    if (run->exit_status != 0) return tl::unexpected(launchctl_exit_error(run->exit_status, args, run->output));
    return parse_print_disabled(run->output, label);
  }
  result<service_outcome> bootstrap(const launchd_domain& domain, std::string_view label, std::string_view plist_path) {
    if (auto ok = validate_label(label); !ok) return tl::unexpected(ok.error());
    return simple(launchctl_bootstrap_args(domain, plist_path));
  }
  result<service_outcome> bootout(const launchd_domain& domain, std::string_view label) {
    return simple(launchctl_bootout_args(domain, label));
  }
  result<service_outcome> enable(const launchd_domain& domain, std::string_view label) {
    return simple(launchctl_enable_args(domain, label));
  }
  result<service_outcome> kickstart(const launchd_domain& domain, std::string_view label) {
    return simple(launchctl_kickstart_args(domain, label));
  }

 private:
  result<service_outcome> simple(result<std::vector<std::string>> args) {
    if (!args) return tl::unexpected(args.error());
    auto run = run_program(program_, *args);
    if (!run) return tl::unexpected(run.error());
    if (run->exit_status != 0) return tl::unexpected(launchctl_exit_error(run->exit_status, *args, run->output));
    return service_outcome{};
  }
  std::string program_;
};

}  // namespace detail

#ifdef __APPLE__
/// The real backend: /bin/launchctl with explicit domains. Needs root for the system domain.
class LaunchctlServiceManager : public detail::launchctl_runner {
 public:
  LaunchctlServiceManager() : detail::launchctl_runner("/bin/launchctl") {}
};
#else
/// launchd exists only on macOS: every call is `errc::unsupported`.
class LaunchctlServiceManager {
 public:
  result<service_query> is_loaded(const launchd_domain&, std::string_view label) { return unsupported(label); }
  result<service_query> is_enabled(const launchd_domain&, std::string_view label) { return unsupported(label); }
  result<service_outcome> bootstrap(const launchd_domain&, std::string_view label, std::string_view) {
    return unsupported(label);
  }
  result<service_outcome> bootout(const launchd_domain&, std::string_view label) { return unsupported(label); }
  result<service_outcome> enable(const launchd_domain&, std::string_view label) { return unsupported(label); }
  result<service_outcome> kickstart(const launchd_domain&, std::string_view label) { return unsupported(label); }

 private:
  static tl::unexpected<error> unsupported(std::string_view label) {
    return fail(errc::unsupported, "launchctl", std::string(label), "launchd exists only on macOS",
                "use FileOnlyServiceManager for sandboxes and --root trees");
  }
};
#endif

HOSTCFG_END_NAMESPACE
