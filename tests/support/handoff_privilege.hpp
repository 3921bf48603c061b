#pragma once
// A privilege backend for MemoryFs tests of the hand-off path (privilege.hpp's run_elevated):
// it cannot elevate in-process, so converge hands the privileged part of the plan to a "runner",
// which here runs in-process as RootFor(user) on the same MemoryFs, through the record-format
// payload and reply, as the real one-shot runner does over a pipe (helper/one_shot.hpp: the
// runner takes the user from SUDO_UID, i.e. the invoking user).
//
// Shared because the ManagedFile and SymlinkSet tests need the same runner; only the primitive
// the runner accepts differs.
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/context.hpp>
#include <hostcfg/elevation.hpp>
#include <hostcfg/privilege.hpp>
#include <hostcfg/record.hpp>
#include <hostcfg/runner.hpp>

#include <vector>

namespace hostcfg_test {

/// Hands elevated work to an in-process runner that accepts `Primitives...` (as
/// `execute_handoff<Primitives...>`), answering `script`; counts the hand-offs and keeps each
/// request, so tests can assert one prompt and what it listed.
///
///     handoff_privilege<hostcfg::ManagedFile> priv{user, &fs, hostcfg::answer::granted, 0, {}};
template <class... Primitives>
struct handoff_privilege {
  hostcfg::user_identity who;                     ///< the invoking user (the runner acts for them)
  hostcfg::MemoryFs* fs;                          ///< the tree both sides act on
  hostcfg::answer script = hostcfg::answer::granted;  ///< anything else: the runner never starts
  int calls = 0;                                  ///< how many hand-offs were asked for
  std::vector<hostcfg::elevation_request> requests;  ///< each hand-off's request, in order

  /// The invoking user.
  const hostcfg::user_identity& user() const { return who; }
  /// Root, the runner's identity.
  hostcfg::actor elevated_actor() const { return hostcfg::actor::root(); }
  /// Never: elevated work always goes through `run_elevated`.
  bool elevates_in_process() const { return false; }
  /// Not asked: a hand-off backend's prompt is the runner's start.
  hostcfg::answer ask(const hostcfg::elevation_request&) { return hostcfg::answer::unavailable; }

  /// Runs the payload as root for `who` after a round trip through the wire format, and returns
  /// the runner's reply the same way.
  hostcfg::result<hostcfg::elevated_outcome> run_elevated(const hostcfg::elevation_request& request,
                                                          const hostcfg::record& payload) {
    ++calls;
    requests.push_back(request);
    if (script != hostcfg::answer::granted) return hostcfg::elevated_outcome{script, {}, std::nullopt};
    auto wire = hostcfg::parse_record(hostcfg::serialize_record(payload));  // what crosses the pipe
    if (!wire) return tl::unexpected(wire.error());
    hostcfg::RootFor root(who);
    hostcfg::context ctx(*fs, root, wire->app_id);
    auto outcome = hostcfg::execute_handoff<Primitives...>(ctx, *wire);
    auto reply = hostcfg::parse_record(hostcfg::serialize_record(hostcfg::encode_outcome(outcome, wire->app_id)));
    if (!reply) return tl::unexpected(reply.error());
    return hostcfg::decode_outcome(*reply);
  }
};

}  // namespace hostcfg_test
