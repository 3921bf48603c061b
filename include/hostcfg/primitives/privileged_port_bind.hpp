#pragma once
/// @file
/// PrivilegedPortBind: a listening socket on an exact address and a port below 1024, obtained the
/// least-privileged way (port_bind.hpp): directly when the OS allows this user, else from the
/// privileged helper over its UNIX socket, starting the helper after one prompt when it is not
/// running. The address is never widened.
///
///     PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", 80, "/var/run/com.example.helper.sock"};
///     web.helper_label = "com.example.helper";   // started with `launchctl kickstart system/<label>`
///     auto report = converge(ctx, web);          // ctx has a service manager attached (ctx.attach)
///     unique_fd listening = std::move(*web.socket);   // the bound socket
///
/// State is not a file: probe reports `matches` while `socket` holds a socket bound as asked,
/// `absent` when one can be obtained, `conflict` when the port is in use, the address is not this
/// machine's, or the helper is unusable (version mismatch, refuses this user, not answering).
///
/// When the helper must be started the plan has two changes: "start the privileged helper"
/// (needs elevation: the prompt names it) and "bind through it" (the user's own part). With
/// real elevation (CommandPrivilege) the first is handed to the elevated runner as a typed
/// desired state (proto, address, port, socket path, the helper's launchd label, its plist path
/// and the start wait): the runner rebuilds the step with `helper_part_only`, refuses a job its
/// program does not list (`launchd_job_allowlist`, compiled into the runner) and a plist other
/// than `/Library/LaunchDaemons/<label>.plist`, checks as root that the helper's socket (in a
/// root-owned directory) does not answer, and starts the job through the service manager
/// attached to its context (`kickstart`, after a `bootstrap` of the plist when the job is not
/// loaded). The bind itself always happens in the user's process, since the socket must end up
/// there. A `start_helper` callback works only in process: with a backend that elevates through
/// a separate runner and no `helper_label`, a helper that is down is a conflict (no prompt).
///
/// The record keeps the decision (direct or helper); revert closes the socket and forgets it.

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "hostcfg/backend/service_manager.hpp"
#include "hostcfg/backend/unique_fd.hpp"
#include "hostcfg/context.hpp"
#include "hostcfg/helper/client.hpp"
#include "hostcfg/helper/port_bind.hpp"
#include "hostcfg/protocol.hpp"
#include "hostcfg/record.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// A privileged port bound for this user. See the file comment.
struct PrivilegedPortBind {
  /// `PrivilegedPortBind{helper::transport::tcp, "127.0.0.1", 80, "/var/run/x.sock"}`.
  PrivilegedPortBind(helper::transport transport_proto, std::string bind_address, std::uint16_t bind_port,
                     std::string helper_socket)
      : proto(transport_proto), address(std::move(bind_address)), port(bind_port), socket_path(std::move(helper_socket)) {}

  helper::transport proto = helper::transport::tcp;
  std::string address;  ///< canonical text: "127.0.0.1", "::1", "0.0.0.0"
  std::uint16_t port = 0;
  std::string socket_path;  ///< the helper's socket
  bool helper_only = false;  ///< always go through the helper (tests; hosts where anyone may bind)
  int helper_timeout_ms = 5000;
  int start_wait_ms = 5000;  ///< after starting the helper: how long to wait for it to answer
  /// The helper's launchd job in the system domain ("com.docker.vmnetd"). Set, a granted prompt
  /// starts the helper with the context's service manager (`kickstart`), in process or in the
  /// elevated runner (which must list the label in its `launchd_job_allowlist`); this is what
  /// lets the step be handed off.
  std::string helper_label;
  /// The helper job's plist, bootstrapped first when the job is not loaded. Empty: a job that is
  /// not loaded cannot be started here (install it with a LaunchdPlist step). A runner accepts
  /// only `/Library/LaunchDaemons/<helper_label>.plist`.
  std::string helper_plist;
  /// Starts the helper once elevation is granted, in process only (e.g. a test that runs the
  /// helper on a thread); true when it was started. In process it is used instead of
  /// `helper_label`; it never reaches an elevated runner.
  std::function<bool()> start_helper;
  /// Set by `from_desired_state`: this value is the elevated part of the step in the runner. Its
  /// probe asks only "does the helper answer?" and its apply only starts it; it binds nothing and
  /// records nothing (the user's process binds afterwards and keeps the decision).
  bool helper_part_only = false;
  /// Receives the bound socket; shared so that copies of this value (converge takes steps by
  /// value or reference) all see it.
  std::shared_ptr<unique_fd> socket = std::make_shared<unique_fd>();

  static constexpr const char* kind_name = "privileged_port_bind";
  /// The object name of the "start the helper" change.
  static constexpr const char* helper_object = "privileged helper";
  const char* kind() const { return kind_name; }
  /// "port:tcp:127.0.0.1:80", "port:udp:[::1]:53".
  std::string id() const {
    return std::string("port:") + (proto == helper::transport::udp ? "udp:" : "tcp:") +
           (address.find(':') != std::string::npos ? "[" + address + "]" : address) + ":" + std::to_string(port);
  }

  /// The typed desired state handed to the elevated runner: what to bind and which launchd job
  /// is the helper; never a path to write or a command to run.
  record_item desired_state() const {
    record_item item{id(), kind(), {}};
    item.fields = {{"proto", proto == helper::transport::udp ? "udp" : "tcp"},
                   {"address", address},
                   {"port", std::to_string(port)},
                   {"socket_path", socket_path},
                   {"helper_label", helper_label},
                   {"helper_plist", helper_plist},
                   {"start_wait_ms", std::to_string(start_wait_ms)}};
    return item;
  }

  /// Rebuilds the elevated part of a PrivilegedPortBind from `desired_state()`, validating every
  /// field (the runner treats the payload as untrusted): the result has `helper_part_only` set.
  static result<PrivilegedPortBind> from_desired_state(const record_item& item) {
    auto bad = [&](const std::string& why) { return fail(errc::invalid_input, "read desired state", item.id, why); };
    const std::string proto_text = item.get("proto");
    if (proto_text != "tcp" && proto_text != "udp") return bad("proto must be tcp or udp");
    const auto port_number = item.number("port", 65535);
    if (!port_number || *port_number == 0) return bad("port must be a number from 1 to 65535");
    const auto transport_proto = proto_text == "udp" ? helper::transport::udp : helper::transport::tcp;
    const auto bind_port = static_cast<std::uint16_t>(*port_number);
    if (auto req = helper::make_bind_request(transport_proto, item.get("address"), bind_port); !req)
      return tl::unexpected(req.error());
    PrivilegedPortBind p(transport_proto, item.get("address"), bind_port, item.get("socket_path"));
    if (auto ok = helper::detail::check_socket_path(p.socket_path, "read desired state"); !ok)
      return tl::unexpected(ok.error());
    p.helper_label = item.get("helper_label");
    if (p.helper_label.empty())
      return bad("helper_label is empty: the elevated runner starts the helper only through its launchd job "
                 "(a start_helper callback cannot be handed off)");
    if (auto ok = validate_label(p.helper_label); !ok) return tl::unexpected(ok.error());
    p.helper_plist = item.get("helper_plist");
    if (!p.helper_plist.empty() && p.helper_plist != daemon_plist_path(p.helper_label))
      return bad("helper_plist must be empty or " + daemon_plist_path(p.helper_label) +
                 " (a runner loads no other plist as root)");
    const auto wait = item.number("start_wait_ms", 60000);
    if (!wait) return bad("start_wait_ms must be a number of milliseconds up to 60000");
    p.start_wait_ms = static_cast<int>(*wait);
    p.helper_part_only = true;
    if (p.id() != item.id) return bad("the step id does not match its parameters");
    return p;
  }

  /// Read-only except for one test bind (closed at once) and one helper handshake (in the
  /// runner's `helper_part_only` form: one connect to the helper's socket).
  template <class Fs, class Priv>
  result<probe_report> probe(context<Fs, Priv>& ctx, const ledgers&) const {
    auto req = helper::make_bind_request(proto, address, port);
    if (!req) return tl::unexpected(req.error());
    if (helper_part_only) return probe_helper(ctx.template find<launchd_job_allowlist>());
    probe_report report{kind(), id(), {}};
    item_probe item;
    item.id = id();
    item.path = what(*req);
    item.desired = "listening on " + item.path;
    const helper::client_options co{socket_path, helper_timeout_ms};
    if (*socket && helper::detail::check_received_socket(socket->get(), *req, co)) {
      item.state = item_state::matches;
      item.current = "held: listening on " + item.path;
      report.items.push_back(item);
      return report;
    }
    auto found = port_bind::probe(*req, options());
    if (!found) return tl::unexpected(found.error());
    item.current = found->explanation + "; privileged helper " + port_bind::helper_state_name(found->helper);
    const bool direct = found->can_bind_unprivileged && !helper_only;
    const bool in_use_or_foreign = found->bind_errno == EADDRINUSE || found->bind_errno == EADDRNOTAVAIL;
    if (direct) {
      item.state = item_state::absent;
      item.detail = "bind directly";
    } else if (in_use_or_foreign) {
      item.state = item_state::conflict;
      item.detail = found->explanation;
    } else if (found->helper == port_bind::helper_state::ready) {
      item.state = item_state::absent;
      item.detail = "through the privileged helper at " + socket_path;
    } else if ((found->helper == port_bind::helper_state::not_installed ||
                found->helper == port_bind::helper_state::not_running) &&
               !can_start_helper(ctx.priv.elevates_in_process())) {
      // A prompt could not lead anywhere: say so without asking.
      const bool installed = found->helper != port_bind::helper_state::not_installed;
      item.state = item_state::conflict;
      item.detail = helper::port_error_prefix(*req) + ": failed to connect to " + socket_path +
                    ": is the privileged helper " + (installed ? "running" : "installed") + "?: it is " +
                    port_bind::helper_state_name(found->helper) + ", and this app cannot start it here (" +
                    (start_helper ? "its start_helper callback runs only in process, and this privilege backend "
                                    "elevates through a separate runner: set helper_label"
                                  : "neither helper_label nor start_helper is set") +
                    ")";
    } else if (found->helper == port_bind::helper_state::not_installed ||
               found->helper == port_bind::helper_state::not_running) {
      item.state = item_state::absent;
      item.detail = "start the privileged helper at " + socket_path + ", then bind through it";
      item.needs_elevation = true;
      item.elevation_reason = helper_elevation_reason(port_bind::helper_state_name(found->helper));
    } else {
      item.state = item_state::conflict;
      item.detail = found->helper_detail;
    }
    report.items.push_back(item);
    return report;
  }

  /// Pure: an absent item becomes "bind" - preceded by "start the privileged helper" (the only
  /// change that needs elevation) when the helper is down.
  plan make_plan(const probe_report& probed) const {
    plan p{kind(), id(), {}};
    for (const auto& item : probed.items) {
      if (item.state != item_state::absent) continue;
      if (item.needs_elevation) {
        change start;
        start.item_id = item.id;
        start.kind = change_kind::modify;
        start.object = helper_object;
        start.path = socket_path;
        start.before = item.current;
        start.after = "running";
        start.reason = start_reason();
        start.needs_elevation = true;
        start.elevation_reason = item.elevation_reason;
        p.changes.push_back(start);
        if (helper_part_only) continue;
      }
      change c;
      c.item_id = item.id;
      c.kind = change_kind::create;
      c.object = "listening socket";
      c.path = item.path;
      c.before = item.current;
      c.after = item.desired;
      c.reason = item.needs_elevation ? bind_after_start_reason() : item.detail;
      p.changes.push_back(c);
    }
    return p;
  }

  /// Starts the helper (granted) and binds (directly or through it), hands the socket to
  /// `socket`, records the decision. Without elevation the event carries the seed-shaped error
  /// of the answer (declined / cancelled / timed out / unavailable). In a dry run nothing is
  /// started or bound.
  template <class Fs, class Priv>
  apply_report apply(context<Fs, Priv>& ctx, const plan& p, const grant& g, ledgers& books) const {
    apply_report report{kind(), id(), {}, {}};
    auto req = helper::make_bind_request(proto, address, port);
    bool done = false;  // the item got its event (bound, refused, or the helper could not start)
    for (const auto& c : p.changes) {
      if (done) continue;
      if (!req) {
        report.events.push_back(event{c.item_id, event_kind::failed, c.path, req.error().message(), req.error(), false});
        done = true;
        continue;
      }
      const bool is_start = c.object == std::string(helper_object);
      if (ctx.policy.dry_run) {
        // Nothing is started or bound; a start not granted is reported as a real run would.
        if (is_start && !g.elevated) {
          report.events.push_back(event{c.item_id, event_kind::skipped, c.path, g.refusal(), std::nullopt, false});
          done = true;
        } else {
          report.events.push_back(event{c.item_id, event_kind::changed, c.path, c.summary(), std::nullopt,
                                        is_start});
        }
        continue;
      }
      if (is_start && !g.elevated) {
        // Not granted: one attempt through the helper gives the seed's message for this answer
        // (and a socket, if the helper came up meanwhile).
        port_bind::options opts = options();
        opts.start_helper = [&](const elevation_request&) { return g.answer_.value_or(answer::unavailable); };
        bind_and_record(*req, opts, c, g, books, report);
        done = true;
      } else if (is_start) {
        auto started = start_the_helper(ctx);
        if (!started) {
          report.events.push_back(event{c.item_id, event_kind::failed, c.path, started.error().message(), started.error(), true});
          done = true;
        } else {
          report.events.push_back(event{c.item_id, event_kind::changed, c.path, *started, std::nullopt, true});
        }
      } else if (!helper_part_only) {
        port_bind::options opts = options();
        const bool after_start = c.reason == bind_after_start_reason();
        if (after_start && g.handed_off && !runner_started_helper(g, c.item_id)) {
          // The runner did not start it (its event says why): do not wait for it.
          report.events.push_back(event{c.item_id, event_kind::skipped, c.path,
                                        "not bound: the privileged helper was not started (see the elevated "
                                        "runner's event)",
                                        std::nullopt, false});
          done = true;
          continue;
        }
        // After a start (here or in the runner) the helper may still be coming up: wait for it.
        if (after_start) opts.start_helper = [](const elevation_request&) { return answer::granted; };
        bind_and_record(*req, opts, c, g, books, report);
        done = true;
      }
    }
    return report;
  }

  /// What revert would do: close the socket and forget the decision.
  plan revert_plan(const ledgers& books) const {
    plan p{kind(), id(), {}};
    if (!books.find(id()) && !*socket) return p;
    change c;
    c.item_id = id();
    c.kind = change_kind::remove;
    c.object = "listening socket";
    c.path = id();
    c.reason = "close it and forget the decision";
    p.changes.push_back(c);
    return p;
  }

  /// Closes the socket and removes the record item. Never needs elevation.
  template <class Fs, class Priv>
  apply_report revert(context<Fs, Priv>&, const grant&, ledgers& books) const {
    apply_report report{kind(), id(), {}, {}};
    if (!books.find(id()) && !*socket) return report;
    socket->reset();
    books.scope(false).erase(id());
    report.events.push_back(event{id(), event_kind::changed, id(), "closed", std::nullopt, false});
    return report;
  }

 private:
  static std::string what(const helper::bind_request& req) {
    return std::string(helper::transport_name(req.proto)) + " " + helper::endpoint_text(req);
  }
  static std::string daemon_plist_path(const std::string& label) { return "/Library/LaunchDaemons/" + label + ".plist"; }
  port_bind::options options() const {
    port_bind::options o;
    o.socket_path = socket_path;
    o.helper_timeout_ms = helper_timeout_ms;
    o.start_wait_ms = start_wait_ms;
    o.helper_only = helper_only;
    return o;
  }
  std::string endpoint() const {
    auto req = helper::make_bind_request(proto, address, port);
    return req ? what(*req) : address + ":" + std::to_string(port);
  }
  std::string helper_elevation_reason(const std::string& state) const {
    return "the privileged helper is " + state + "; starting it needs administrator rights";
  }
  /// The reason of the "start the helper" change (the prompt shows it).
  std::string start_reason() const {
    std::string how;
    if (!helper_label.empty()) how = " as launchd job system/" + helper_label;
    if (!helper_label.empty() && !helper_plist.empty()) how += " (loading " + helper_plist + " if needed)";
    return "start it" + how + ", then bind " + endpoint() + " through it";
  }
  /// The reason of a bind planned after a start: apply waits for the helper to come up.
  std::string bind_after_start_reason() const {
    return "through the privileged helper at " + socket_path + ", once it has started";
  }

  /// Whether a granted prompt could start the helper: through the service manager (a label),
  /// or through the callback when this process itself becomes privileged.
  bool can_start_helper(bool elevates_in_process) const {
    return !helper_label.empty() || (start_helper && elevates_in_process);
  }

  /// After a hand-off: did the runner start the helper (or find it running)?
  static bool runner_started_helper(const grant& g, const std::string& item_id) {
    bool started = false;
    for (const auto& e : g.runner_events) {
      if (e.item_id != item_id) continue;
      if (e.kind == event_kind::failed || e.kind == event_kind::skipped) return false;
      started = started || e.kind == event_kind::changed || e.kind == event_kind::kept;
    }
    return started;
  }

  /// The runner's probe, as root, of a path the payload named: the job must be one the runner
  /// program lists; the socket's directory must be root-owned and writable by root alone (the
  /// walk follows no symlink); then a socket there that accepts a connection is a running helper
  /// (root may connect to the user's 0600 socket; the helper closes a uid it does not serve,
  /// which is fine here), nothing there or a refused connection a helper that is down, and
  /// anything else an error (the runner's failed event).
  result<probe_report> probe_helper(const launchd_job_allowlist* startable) const {
    const std::string op = "elevated runner";
    if (!startable || !startable->allows(helper_label))
      return fail(errc::refused_by_policy, op, id(),
                  "launchd job system/" + helper_label + " is not one this runner may start",
                  "the runner program lists the helper jobs it may start (launchd_job_allowlist)");
    probe_report report{kind(), id(), {}};
    item_probe item;
    item.id = id();
    item.path = socket_path;
    item.desired = "privileged helper answering at " + socket_path;
    auto dir = helper::detail::open_trusted_dir(parent_path(socket_path), op);
    if (!dir) return tl::unexpected(dir.error());
    const std::string name = base_name(socket_path);
    struct stat st {};
    int down_errno = 0;
    if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) return fail_errno(errno, op, socket_path);
      down_errno = ENOENT;
    } else if (!S_ISSOCK(st.st_mode)) {
      // An error, not a conflict: the runner reports it as the step's failure.
      return fail(errc::conflict, op, socket_path,
                  std::string(S_ISLNK(st.st_mode) ? "a symlink (not followed)" : "a file that is not a socket") +
                      " is at the helper's socket path; nothing was started");
    } else {
      // Only root can change entries of the verified directory: connecting by path is safe.
      unique_fd probe(helper::detail::cloexec_socket(AF_UNIX, SOCK_STREAM));
      if (!probe) return fail_errno(errno, op, socket_path);
      const sockaddr_un addr = helper::detail::unix_address(socket_path);
      int rc;
      do rc = ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
      while (rc != 0 && errno == EINTR);
      if (rc != 0 && errno != ECONNREFUSED) return fail_errno(errno, op, socket_path);
      if (rc != 0) down_errno = ECONNREFUSED;
    }
    if (down_errno == 0) {
      item.state = item_state::matches;
      item.current = item.desired;
    } else {
      item.state = item_state::absent;
      item.current = helper::detail::dial_text(socket_path, down_errno);
      item.needs_elevation = true;
      item.elevation_reason = helper_elevation_reason(down_errno == ENOENT ? "not installed" : "not running");
    }
    report.items.push_back(item);
    return report;
  }

  /// Starts the helper (the callback, else the service manager's kickstart of `helper_label`,
  /// bootstrapping `helper_plist` first when the job is not loaded) and waits, up to
  /// `start_wait_ms`, until its socket accepts a connection. Returns what was done.
  template <class Ctx>
  result<std::string> start_the_helper(Ctx& ctx) const {
    const char* op = "start privileged helper";
    std::string how;
    if (start_helper) {
      if (!start_helper()) return fail(errc::unavailable, op, socket_path, "the app's start_helper callback failed");
      how = "started the privileged helper at " + socket_path;
    } else if (!helper_label.empty()) {
      any_service_manager* sm = ctx.template find<any_service_manager>();
      if (!sm)
        return fail(errc::unavailable, op, socket_path, "no service manager is attached to the context",
                    "attach one: ctx.attach(any_service_manager)");
      const auto domain = launchd_domain::system();
      auto kicked = sm->kickstart(domain, helper_label);
      bool bootstrapped = false;
      if (!kicked && kicked.error().is_errno(ESRCH) && !helper_plist.empty()) {
        auto loaded = sm->bootstrap(domain, helper_label, helper_plist);
        if (!loaded) return tl::unexpected(loaded.error());
        if (loaded->skipped) return fail(errc::unavailable, op, socket_path, loaded->note);
        bootstrapped = true;
        kicked = sm->kickstart(domain, helper_label);
      }
      if (!kicked && kicked.error().is_errno(ESRCH) && helper_plist.empty())
        return fail(errc::helper_not_installed, op, socket_path,
                    "launchd job system/" + helper_label + " is not loaded, and helper_plist is empty",
                    "install the helper's job (a LaunchdPlist step), or set helper_plist to load it");
      if (!kicked) return tl::unexpected(kicked.error());
      if (kicked->skipped) return fail(errc::unavailable, op, socket_path, kicked->note);
      how = "started the privileged helper at " + socket_path + " (" + (bootstrapped ? "launchctl bootstrap, " : "") +
            "launchctl kickstart system/" + helper_label + ")";
    } else {
      return fail(errc::unavailable, op, socket_path, "the helper cannot be started here",
                  "set helper_label to the helper's launchd job");
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(start_wait_ms);
    for (;;) {
      auto connected = helper::detail::connect_helper(helper::client_options{socket_path, helper_timeout_ms});
      if (connected) return how;
      const bool down = connected.error().is(errc::helper_not_installed) || connected.error().is(errc::helper_not_running);
      if (!down) return tl::unexpected(connected.error());
      if (std::chrono::steady_clock::now() >= deadline)
        return fail(errc::helper_not_running, op, socket_path,
                    "started, but its socket did not accept a connection within " + std::to_string(start_wait_ms) +
                        " ms: " + connected.error().reason);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  /// Binds with `opts`, keeps the socket and records the decision; one event either way.
  void bind_and_record(const helper::bind_request& req, const port_bind::options& opts, const change& c,
                       const grant& g, ledgers& books, apply_report& report) const {
    auto bound = port_bind::bind(req, opts);
    if (!bound) {
      const bool skipped = c.needs_elevation && !g.elevated;
      report.events.push_back(event{c.item_id, skipped ? event_kind::skipped : event_kind::failed, c.path,
                                    bound.error().message(), bound.error(), g.elevated});
      return;
    }
    *socket = std::move(bound->fd);
    record_item item{id(), kind(), {}};
    item.fields = {{"proto", proto == helper::transport::udp ? "udp" : "tcp"},
                   {"address", address},
                   {"port", std::to_string(port)},
                   {"via", bound->via_helper ? "helper" : "direct"},
                   {"socket_path", socket_path}};
    books.scope(false).put(item);
    report.events.push_back(event{c.item_id, event_kind::changed, c.path,
                                  bound->via_helper ? "bound through the privileged helper at " + socket_path
                                                    : std::string("bound directly"),
                                  std::nullopt, false});
  }
};

HOSTCFG_END_NAMESPACE
