#pragma once
/// @file
/// PrivilegedPortBind: a listening socket on an exact address and a port below 1024, obtained the
/// least-privileged way (port_bind.hpp): directly when the OS allows this user, else from the
/// privileged helper over its UNIX socket, starting the helper after one prompt when it is not
/// running. The address is never widened.
///
///     PrivilegedPortBind web{helper::transport::tcp, "127.0.0.1", 80, "/var/run/com.example.helper.sock"};
///     web.start_helper = [&] { return launchd.kickstart("system/com.example.helper"); };
///     auto report = converge(ctx, web);
///     unique_fd listening = std::move(*web.socket);   // the bound socket
///
/// State is not a file: probe reports `matches` while `socket` holds a socket bound as asked,
/// `absent` when one can be obtained (needing elevation only when the helper must be started),
/// `conflict` when the port is in use, the address is not this machine's, or the helper is
/// unusable (version mismatch, refuses this user, not answering). The record keeps the decision
/// (direct or helper); revert closes the socket and forgets it.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

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
  int start_wait_ms = 5000;
  /// Starts the helper once elevation is granted (e.g. through the elevated runner: `launchctl
  /// kickstart system/<label>`); true when it was started. Empty: the helper cannot be started.
  std::function<bool()> start_helper;
  /// Receives the bound socket; shared so that copies of this value (converge takes steps by
  /// value or reference) all see it.
  std::shared_ptr<unique_fd> socket = std::make_shared<unique_fd>();

  static constexpr const char* kind_name = "privileged_port_bind";
  const char* kind() const { return kind_name; }
  /// "port:tcp:127.0.0.1:80", "port:udp:[::1]:53".
  std::string id() const {
    return std::string("port:") + (proto == helper::transport::udp ? "udp:" : "tcp:") +
           (address.find(':') != std::string::npos ? "[" + address + "]" : address) + ":" + std::to_string(port);
  }

  /// Read-only except for one test bind (closed at once) and one helper handshake.
  template <class Fs, class Priv>
  result<probe_report> probe(context<Fs, Priv>&, const ledgers&) const {
    auto req = helper::make_bind_request(proto, address, port);
    if (!req) return tl::unexpected(req.error());
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
    } else if (found->helper == port_bind::helper_state::not_installed ||
               found->helper == port_bind::helper_state::not_running) {
      item.state = item_state::absent;
      item.detail = "start the privileged helper at " + socket_path + ", then bind through it";
      item.needs_elevation = true;
      item.elevation_reason = "the privileged helper is " + std::string(port_bind::helper_state_name(found->helper)) +
                              "; starting it needs administrator rights";
    } else {
      item.state = item_state::conflict;
      item.detail = found->helper_detail;
    }
    report.items.push_back(item);
    return report;
  }

  /// Pure: an absent item becomes "create listening socket".
  plan make_plan(const probe_report& probed) const {
    plan p{kind(), id(), {}};
    for (const auto& item : probed.items) {
      if (item.state != item_state::absent) continue;
      change c;
      c.item_id = item.id;
      c.kind = change_kind::create;
      c.object = "listening socket";
      c.path = item.path;
      c.before = item.current;
      c.after = item.desired;
      c.reason = item.detail;
      c.needs_elevation = item.needs_elevation;
      c.elevation_reason = item.elevation_reason;
      p.changes.push_back(c);
    }
    return p;
  }

  /// Binds (directly or through the helper, starting it when granted), hands the socket to
  /// `socket`, records the decision. Without elevation the event carries the seed-shaped error
  /// of the answer (declined / cancelled / timed out / unavailable).
  template <class Fs, class Priv>
  apply_report apply(context<Fs, Priv>&, const plan& p, const grant& g, ledgers& books) const {
    apply_report report{kind(), id(), {}, {}};
    for (const auto& c : p.changes) {
      auto req = helper::make_bind_request(proto, address, port);
      if (!req) {
        report.events.push_back(event{c.item_id, event_kind::failed, c.path, req.error().message(), req.error(), false});
        continue;
      }
      port_bind::options opts = options();
      opts.start_helper = [&](const elevation_request&) {
        if (!g.elevated) return g.answer_.value_or(answer::unavailable);
        return start_helper && start_helper() ? answer::granted : answer::unavailable;
      };
      auto bound = port_bind::bind(*req, opts);
      if (!bound) {
        const bool skipped = c.needs_elevation && !g.elevated;
        report.events.push_back(event{c.item_id, skipped ? event_kind::skipped : event_kind::failed, c.path,
                                      bound.error().message(), bound.error(), g.elevated});
        continue;
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
                                    std::nullopt, c.needs_elevation && g.elevated});
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
  port_bind::options options() const {
    port_bind::options o;
    o.socket_path = socket_path;
    o.helper_timeout_ms = helper_timeout_ms;
    o.start_wait_ms = start_wait_ms;
    o.helper_only = helper_only;
    return o;
  }
};

HOSTCFG_END_NAMESPACE
