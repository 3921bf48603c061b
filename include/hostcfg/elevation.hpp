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
/// Payload and answer use the record format (record.hpp): one parser, already hardened.

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

/// What an elevated runner did with a handed-off batch.
struct elevated_outcome {
  answer prompt_answer = answer::granted;           ///< how the prompt ended
  std::map<std::string, std::vector<event>> events;  ///< per step id (primitive `id()`)
  std::optional<error> failure;                       ///< the runner itself failed after the grant
};

/// Encodes an outcome as a record (the runner's reply).
inline record encode_outcome(const elevated_outcome& outcome, const std::string& app_id) {
  record r{app_id, {}};
  r.put(record_item{"answer", "outcome", {{"answer", answer_name(outcome.prompt_answer)}}});
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
