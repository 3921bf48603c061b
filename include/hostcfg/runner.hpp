#pragma once
/// @file
/// The elevated side of a hand-off (elevation.hpp): executes a payload of typed desired states
/// with the given context (as root, acting for the user), re-validating every parameter through
/// each primitive type's `from_desired_state` and re-probing everything itself. Only the types
/// listed in the template arguments can be run: anything else in the payload is refused.
///
///     auto outcome = execute_handoff<ManagedFile, HostsEntry, SymlinkSet>(ctx, payload);  // apply or revert
///     std::string reply = serialize_record(encode_outcome(outcome, ctx.app_id));

#include <string>

#include "hostcfg/converge.hpp"
#include "hostcfg/elevation.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace detail {
template <class Ctx, class P>
bool try_execute(Ctx& ctx, const record_item& item, elevated_outcome& outcome) {
  if (item.primitive != P::kind_name) return false;
  auto rebuilt = P::from_desired_state(item);
  if (!rebuilt) {
    outcome.events[item.id].push_back(
        event{item.id, event_kind::failed, {}, rebuilt.error().message(), rebuilt.error(), true});
    return true;
  }
  if (rebuilt->id() != item.id) {
    auto e = fail(errc::invalid_input, "elevated runner", item.id, "the step id does not match its parameters").value();
    outcome.events[item.id].push_back(event{item.id, event_kind::failed, {}, e.message(), e, true});
    return true;
  }
  // Re-probe here, as root: a step whose changes the user could make alone is refused (those
  // are done unprivileged, never with root rights in a directory the user controls).
  ledgers books;
  if (auto system = load_record(ctx.fs, ctx.system_record, ctx.app_id)) books.system = *system;
  auto probed = rebuilt->probe(ctx, books);
  if (probed) {
    for (const auto& c : rebuilt->make_plan(*probed).changes)
      if (!c.needs_elevation) {
        auto e = fail(errc::unsafe_path, "elevated runner", c.path,
                      "the user can make this change without admin rights; refused as root")
                     .value();
        outcome.events[item.id].push_back(event{item.id, event_kind::failed, c.path, e.message(), e, true});
        return true;
      }
  }
  auto report = converge(ctx, *rebuilt);
  if (!report) {
    outcome.events[item.id].push_back(event{item.id, event_kind::failed, {}, report.error().message(), report.error(), true});
    return true;
  }
  for (const auto& step : report->steps)
    for (const auto& e : step.applied.events) outcome.events[item.id].push_back(e);
  for (const auto& step : report->steps)
    if (step.failure)
      outcome.events[item.id].push_back(event{item.id, event_kind::failed, {}, step.failure->message(), step.failure, true});
  return true;
}

/// The revert side of a hand-off (uninstall): rebuilds the step from its desired state and reverts
/// it as root, from the root-owned record alone (the context reads no user record). A step the
/// root-owned record holds nothing of is refused: reverting it is the user's own business, and a
/// revert without a record would act on whatever it finds (a hosts section between our markers,
/// say) with root rights.
template <class Ctx, class P>
bool try_revert(Ctx& ctx, const record_item& item, elevated_outcome& outcome) {
  if (item.primitive != P::kind_name) return false;
  auto refuse = [&](const std::string& path, const error& e) {
    outcome.events[item.id].push_back(event{item.id, event_kind::failed, path, e.message(), e, true});
    return true;
  };
  auto rebuilt = P::from_desired_state(item);
  if (!rebuilt) return refuse({}, rebuilt.error());
  if (rebuilt->id() != item.id)
    return refuse({}, fail(errc::invalid_input, "elevated runner", item.id, "the step id does not match its parameters")
                          .value());
  ledgers books;
  auto system = load_record(ctx.fs, ctx.system_record, ctx.app_id);
  if (!system) return refuse(ctx.system_record.path, system.error());
  books.system = std::move(*system);
  plan undo = rebuilt->revert_plan(books);
  if (undo.empty())
    return refuse({}, fail(errc::unsafe_path, "elevated runner", item.id,
                           "the root-owned record holds nothing of this step; refused as root (what only the "
                           "user's record holds, the user reverts without admin rights)")
                          .value());
  for (const auto& c : undo.changes)
    if (!c.needs_elevation)
      return refuse(c.path, fail(errc::unsafe_path, "elevated runner", c.path,
                                 "the user can revert this without admin rights; refused as root")
                                .value());
  // uninstall() as root in process: one grant, the revert, and the root-owned record stored
  // (removed when it is empty), exactly as a root user's own uninstall does it.
  auto report = uninstall(ctx, *rebuilt);
  if (!report) return refuse({}, report.error());
  for (const auto& step : report->steps)
    for (const auto& e : step.applied.events) outcome.events[item.id].push_back(e);
  for (const auto& n : report->notes)
    if (n.rfind(system_record_unwritten, 0) == 0)
      refuse(ctx.system_record.path, fail(errc::unavailable, "elevated runner", ctx.system_record.path, n).value());
  return true;
}
}  // namespace detail

/// Runs every step of `payload` whose kind is one of `Primitives...`; other kinds are refused, and
/// so is a step whose changes need no elevation. A revert batch (`handoff_mode::revert`, from
/// `uninstall`) reverts each step instead; a payload of an unknown version or mode is refused
/// whole. Turns off `ctx.read_user_record`: the runner acts only on the root-owned record.
template <class... Primitives, class Fs, class Priv>
elevated_outcome execute_handoff(context<Fs, Priv>& ctx, const record& payload) {
  ctx.read_user_record = false;
  elevated_outcome outcome;
  outcome.prompt_answer = answer::granted;
  auto mode = handoff_mode_of(payload);
  if (!mode) {
    outcome.failure = mode.error();
    return outcome;
  }
  outcome.mode = *mode;
  for (const auto& [id, item] : payload.items) {
    if (id == handoff_header_id) continue;
    bool known = *mode == handoff_mode::revert
                     ? (detail::try_revert<context<Fs, Priv>, Primitives>(ctx, item, outcome) || ...)
                     : (detail::try_execute<context<Fs, Priv>, Primitives>(ctx, item, outcome) || ...);
    if (!known) {
      auto e = fail(errc::invalid_input, "elevated runner", id,
                    "unknown primitive kind '" + item.primitive + "': refused").value();
      outcome.events[id].push_back(event{id, event_kind::failed, {}, e.message(), e, true});
    }
  }
  return outcome;
}

HOSTCFG_END_NAMESPACE
