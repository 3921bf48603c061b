#pragma once
/// @file
/// Handing the privileged part of a plan to an elevated runner. When the privilege backend cannot
/// act as root inside this process (`elevates_in_process()` is false) but offers
///
///     result<elevated_outcome> run_elevated(const elevation_request&, const record& payload);
///
/// `converge` sends every step that needs elevation as typed desired state (a primitive's
/// `desired_state()`: its kind and validated parameters - never raw paths to write or commands to
/// run) in ONE call, whose prompt reason lists every change. The runner (started through sudo,
/// pkexec or the macOS admin dialog) re-validates and re-probes everything itself, applies it as
/// root, keeps the privileged undo data in the root-owned record, and answers with the events.
/// `uninstall` hands off the same way, with a revert batch (`handoff_mode::revert`): the runner
/// rebuilds each step from its desired state and reverts, as root, what the root-owned record
/// alone says was done. Payload and answer use the record format (record.hpp): one parser,
/// already hardened.

#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "hostcfg/privilege.hpp"
#include "hostcfg/protocol.hpp"
#include "hostcfg/record.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// What a runner payload asks for: bring the steps into their desired state (`converge`), or
/// revert what the root-owned record says was done for them (`uninstall`).
enum class handoff_mode { apply, revert };

/// The name of a hand-off mode, as it is written in payloads and replies.
inline const char* handoff_mode_name(handoff_mode m) { return m == handoff_mode::revert ? "revert" : "apply"; }

/// The payload version this hostcfg writes and reads. Version 1 (no header item) is an apply
/// batch, which `converge` still sends as is, so a runner of any version can take it. Version 2
/// adds the header item `handoff` (fields `version` and `mode`); a revert batch always has it.
inline constexpr int handoff_payload_version = 2;

/// The id (and kind) of a payload's header item; no primitive id looks like it (they have a ':').
inline constexpr const char* handoff_header_id = "handoff";

/// Marks `payload` as a version 2 batch of the given mode.
inline void set_handoff_mode(record& payload, handoff_mode m) {
  payload.put(record_item{handoff_header_id,
                          handoff_header_id,
                          {{"version", std::to_string(handoff_payload_version)}, {"mode", handoff_mode_name(m)}}});
}

/// The mode a payload asks for. No header is a version 1 apply batch; a newer version or an
/// unknown mode is an error (the runner then does nothing: guessing could install instead of
/// uninstall).
inline result<handoff_mode> handoff_mode_of(const record& payload) {
  const record_item* header = payload.find(handoff_header_id);
  if (!header) return handoff_mode::apply;
  if (header->primitive != handoff_header_id)
    return fail(errc::invalid_input, "read hand-off", handoff_header_id, "the header item has the wrong kind");
  std::string version = header->get("version");
  if (version != "1" && version != std::to_string(handoff_payload_version))
    return fail(errc::newer_record, "read hand-off", handoff_header_id,
                "payload version '" + version + "' is not one this runner knows (newest: " +
                    std::to_string(handoff_payload_version) + ")",
                "install the helper of the same hostcfg version as the app");
  std::string mode = header->get("mode");
  if (mode == handoff_mode_name(handoff_mode::apply)) return handoff_mode::apply;
  if (mode == handoff_mode_name(handoff_mode::revert)) return handoff_mode::revert;
  return fail(errc::invalid_input, "read hand-off", handoff_header_id, "unknown mode '" + mode + "'");
}

/// What an elevated runner did with a handed-off batch.
struct elevated_outcome {
  answer prompt_answer = answer::granted;           ///< how the prompt ended
  std::map<std::string, std::vector<event>> events;  ///< per step id (primitive `id()`)
  std::optional<error> failure;                       ///< the runner itself failed after the grant
  /// The mode the runner carried out, echoed in its reply: a client that asked for a revert can
  /// tell a runner that did one from an older runner that read the batch as an apply batch.
  handoff_mode mode = handoff_mode::apply;
};

/// Encodes an outcome as a record (the runner's reply).
inline record encode_outcome(const elevated_outcome& outcome, const std::string& app_id) {
  record r{app_id, {}};
  record_item answered{"answer", "outcome", {{"answer", answer_name(outcome.prompt_answer)}}};
  // Written only for a revert: an apply reply stays byte for byte what version 1 runners wrote.
  if (outcome.mode == handoff_mode::revert) answered.fields["mode"] = handoff_mode_name(outcome.mode);
  r.put(std::move(answered));
  if (outcome.failure) r.put(record_item{"failure", "outcome", {{"message", outcome.failure->message()}}});
  std::size_t n = 0;
  for (const auto& [step, events] : outcome.events) {
    for (const auto& e : events) {
      std::string number = std::to_string(n++);
      record_item item{"event:" + std::string(8 - std::min<std::size_t>(8, number.size()), '0') + number, "event", {}};
      item.fields = {{"step", step},
                     {"item_id", e.item_id},
                     {"kind", event_kind_name(e.kind)},
                     {"path", e.path},
                     {"message", e.message},
                     {"elevated", e.elevated ? "1" : "0"},
                     {"error", e.failure ? e.failure->message() : std::string()}};
      r.put(item);
    }
  }
  return r;
}

/// Decodes a runner's reply; anything malformed is `errc::corrupt_record`.
inline result<elevated_outcome> decode_outcome(const record& r) {
  elevated_outcome outcome;
  const record_item* a = r.find("answer");
  auto parsed = a ? parse_answer(a->get("answer")) : std::nullopt;
  if (!parsed) return fail(errc::corrupt_record, "read runner reply", {}, "no valid answer");
  outcome.prompt_answer = *parsed;
  std::string mode = a->get("mode");
  if (mode == handoff_mode_name(handoff_mode::revert)) outcome.mode = handoff_mode::revert;
  else if (!mode.empty() && mode != handoff_mode_name(handoff_mode::apply))
    return fail(errc::corrupt_record, "read runner reply", {}, "unknown mode '" + mode + "'");
  if (const record_item* f = r.find("failure"))
    outcome.failure = error{make_error_code(errc::unavailable), "elevated runner", {}, {}, f->get("message"), {}};
  for (const auto& [id, item] : r.items) {
    if (item.primitive != "event") continue;
    event e;
    e.item_id = item.get("item_id");
    e.path = item.get("path");
    e.message = item.get("message");
    e.elevated = item.get("elevated") == "1";
    std::string kind = item.get("kind");
    bool known = false;
    for (auto k : {event_kind::kept, event_kind::changed, event_kind::would_change, event_kind::failed,
                   event_kind::skipped})
      if (kind == event_kind_name(k)) {
        e.kind = k;
        known = true;
      }
    if (!known) return fail(errc::corrupt_record, "read runner reply", {}, "unknown event kind '" + kind + "'");
    if (!item.get("error").empty())
      e.failure = error{make_error_code(errc::unavailable), "elevated runner", e.path, {}, item.get("error"), {}};
    outcome.events[item.get("step")].push_back(std::move(e));
  }
  return outcome;
}

namespace detail {
template <class P, class = void>
struct has_run_elevated : std::false_type {};
template <class P>
struct has_run_elevated<P, std::void_t<decltype(std::declval<P&>().run_elevated(
                               std::declval<const elevation_request&>(), std::declval<const record&>()))>>
    : std::true_type {};
template <class P, class = void>
struct has_desired_state : std::false_type {};
template <class P>
struct has_desired_state<P, std::void_t<decltype(std::declval<const P&>().desired_state())>> : std::true_type {};
}  // namespace detail

HOSTCFG_END_NAMESPACE
