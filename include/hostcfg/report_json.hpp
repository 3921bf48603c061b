#pragma once
/// @file
/// The converge report as versioned JSON (optional: needs nlohmann/json, Debian
/// `nlohmann-json3-dev`; the rest of hostcfg builds without it). Schema "hostcfg.report" version
/// `converge_report::schema_version`:
///
///     {"schema": "hostcfg.report", "version": 1, "app_id": "...", "dry_run": false,
///      "uninstall": false, "prompts_shown": 1,
///      "prompt": {"reason": "...", "changes": ["..."], "answer": "granted"} | null,
///      "records_written": {"user": true, "system": false},
///      "steps": [{"primitive": "...", "id": "...", "is_fallback": false, "fallback_for": "",
///                 "reverted": false, "ok": true, "in_sync": true, "error": null | "...",
///                 "before": [{"id", "path", "state", "current", "desired", "detail",
///                             "needs_elevation", "elevation_reason"}],
///                 "changes": [{"item_id", "kind", "object", "path", "before", "after", "reason",
///                              "needs_elevation", "elevation_reason"}],
///                 "events": [{"item_id", "kind", "path", "message", "elevated", "error"}],
///                 "notes": ["..."], "after": [...same as before...] | null}],
///      "out_of_sync": ["..."], "notes": ["..."], "ok": true, "needs_user_action": false}
///
/// Strings that are not valid UTF-8 (bytes of a file in an odd encoding) are replaced with U+FFFD
/// in the JSON only; the report object itself keeps the bytes.

#include <string>

#include <nlohmann/json.hpp>

#include "hostcfg/converge.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace detail {
inline nlohmann::json probe_items_json(const probe_report& probe) {
  nlohmann::json items = nlohmann::json::array();
  for (const auto& i : probe.items)
    items.push_back({{"id", i.id},
                     {"path", i.path},
                     {"state", item_state_name(i.state)},
                     {"current", i.current},
                     {"desired", i.desired},
                     {"detail", i.detail},
                     {"needs_elevation", i.needs_elevation},
                     {"elevation_reason", i.elevation_reason}});
  return items;
}
}  // namespace detail

/// The report as a JSON value (see the schema above).
inline nlohmann::json report_to_json(const converge_report& report) {
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& s : report.steps) {
    nlohmann::json changes = nlohmann::json::array();
    for (const auto& c : s.planned.changes)
      changes.push_back({{"item_id", c.item_id},
                         {"kind", change_kind_name(c.kind)},
                         {"object", c.object},
                         {"path", c.path},
                         {"before", c.before},
                         {"after", c.after},
                         {"reason", c.reason},
                         {"needs_elevation", c.needs_elevation},
                         {"elevation_reason", c.elevation_reason}});
    nlohmann::json events = nlohmann::json::array();
    for (const auto& e : s.applied.events)
      events.push_back({{"item_id", e.item_id},
                        {"kind", event_kind_name(e.kind)},
                        {"path", e.path},
                        {"message", e.message},
                        {"elevated", e.elevated},
                        {"error", e.failure ? nlohmann::json(e.failure->message()) : nlohmann::json(nullptr)}});
    steps.push_back({{"primitive", s.primitive},
                     {"id", s.id},
                     {"is_fallback", s.is_fallback},
                     {"fallback_for", s.fallback_for},
                     {"reverted", s.reverted},
                     {"ok", s.ok()},
                     {"in_sync", s.in_sync()},
                     {"error", s.failure ? nlohmann::json(s.failure->message()) : nlohmann::json(nullptr)},
                     {"before", detail::probe_items_json(s.before)},
                     {"changes", changes},
                     {"events", events},
                     {"notes", s.applied.notes},
                     {"after", s.after ? detail::probe_items_json(*s.after) : nlohmann::json(nullptr)}});
  }
  nlohmann::json prompt = nullptr;
  if (report.prompt)
    prompt = {{"reason", report.prompt->reason},
              {"changes", report.prompt->changes},
              {"answer", report.prompt_answer ? answer_name(*report.prompt_answer) : "none"}};
  return {{"schema", "hostcfg.report"},
          {"version", converge_report::schema_version},
          {"app_id", report.app_id},
          {"dry_run", report.dry_run},
          {"uninstall", report.uninstall},
          {"prompts_shown", report.prompts_shown},
          {"prompt", prompt},
          {"records_written", {{"user", report.user_record_written}, {"system", report.system_record_written}}},
          {"steps", steps},
          {"out_of_sync", report.out_of_sync},
          {"notes", report.notes},
          {"ok", report.ok()},
          {"needs_user_action", report.needs_user_action()}};
}

/// The report as JSON text; bytes that are not UTF-8 become U+FFFD.
inline std::string report_to_json_text(const converge_report& report, int indent = 2) {
  return report_to_json(report).dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

HOSTCFG_END_NAMESPACE
