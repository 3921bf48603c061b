#pragma once
/// @file
/// `converge(ctx, p1, p2, ...)`: probe, plan, apply and record each primitive, asking for
/// elevation at most once for every change that needs it, then probe again and report anything
/// still out of sync. `uninstall(ctx, p1, p2, ...)` reverts what the records say we did.
/// `fallback(primary, alternative)` applies the alternative when the primary's elevation ends
/// declined / cancelled / timed out / unavailable, and retires the alternative once the primary
/// is in sync again.
///
///     auto report = converge(ctx, fallback(system_links, user_links_and_path), hosts, plist);
///     if (!report) { print(report.error().message()); return 1; }
///     std::cout << report->render_text();

#include <cstddef>
#include <optional>
#include <string>
#include <iterator>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "hostcfg/context.hpp"
#include "hostcfg/elevation.hpp"
#include "hostcfg/protocol.hpp"
#include "hostcfg/record.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// A primary configuration and what to do instead when it cannot get elevation.
template <class Primary, class Alternative>
struct fallback_step {
  Primary primary;
  Alternative alternative;
};

/// `fallback(SymlinkSet{/usr/local/bin...}, SymlinkSet{~/.docker/bin...})`.
template <class Primary, class Alternative>
fallback_step<Primary, Alternative> fallback(Primary primary, Alternative alternative) {
  return {std::move(primary), std::move(alternative)};
}

/// What happened to one primitive in a run.
struct step_report {
  std::string primitive;
  std::string id;
  probe_report before;
  plan planned;
  apply_report applied;
  std::optional<probe_report> after;
  std::optional<error> failure;      ///< probe or record failure of this step
  bool is_fallback = false;          ///< this step is the alternative of `fallback_for`
  std::string fallback_for;          ///< id of the primary it stands in for
  bool reverted = false;             ///< this step was reverted (uninstall, or a retired fallback)
  std::optional<grant> elevation;    ///< how elevation was decided for this step

  bool ok() const { return !failure && applied.ok(); }
  /// In sync after the run. A step the elevated runner applied may be unreadable to the user
  /// (a root-only file): then the runner's own post-probe, which found no failure, stands.
  bool in_sync() const {
    if (!after) return planned.empty();
    bool handed_off = elevation && elevation->handed_off && elevation->elevated && applied.ok();
    for (const auto& item : after->items)
      if (item.state != item_state::matches && !(handed_off && item.state == item_state::unreadable)) return false;
    return true;
  }
};

/// The report of a whole converge or uninstall.
struct converge_report {
  static constexpr int schema_version = 1;
  std::string app_id;
  bool dry_run = false;
  bool uninstall = false;
  std::vector<step_report> steps;
  std::optional<elevation_request> prompt;  ///< the one prompt shown (or that would be, in a dry run)
  std::optional<answer> prompt_answer;
  std::size_t prompts_shown = 0;
  bool user_record_written = false;
  bool system_record_written = false;
  std::vector<std::string> out_of_sync;  ///< ids still not in sync after apply
  std::vector<std::string> notes;        ///< what the user should do next

  /// No step failed.
  bool ok() const {
    for (const auto& s : steps)
      if (!s.ok()) return false;
    return true;
  }
  /// True when a fallback is in use, something was left alone, or the user must act.
  bool needs_user_action() const {
    for (const auto& s : steps)
      if (s.is_fallback && !s.reverted) return true;
    return !out_of_sync.empty() || !notes.empty();
  }

  /// Plain-text report: the prompt, then per step its state, its changes and their outcomes.
  std::string render_text() const {
    std::string out;
    if (prompt) {
      out += std::string(dry_run ? "would ask for admin rights:\n  " : "asked for admin rights:\n  ");
      std::string text = prompt->text();
      for (char c : text) {
        out += c;
        if (c == '\n') out += "  ";
      }
      out += "\n  answer: " + std::string(prompt_answer ? answer_name(*prompt_answer) : "none") + "\n";
    }
    for (const auto& s : steps) {
      out += "[" + s.id + "]";
      if (s.is_fallback) out += " (fallback for " + s.fallback_for + ")";
      if (s.failure) {
        out += " failed: " + s.failure->message() + "\n";
        continue;
      }
      if (s.reverted) out += " reverted";
      else if (s.planned.empty()) out += " in sync";
      out += "\n";
      if (!s.planned.empty()) out += s.planned.render();
      for (const auto& e : s.applied.events) {
        out += "  " + std::string(event_kind_name(e.kind)) + ": " + e.path;
        if (!e.message.empty()) out += ": " + e.message;
        if (e.elevated) out += " (as admin)";
        out += "\n";
      }
      for (const auto& n : s.applied.notes) out += "  note: " + n + "\n";
    }
    for (const auto& id : out_of_sync) out += "still out of sync: " + id + "\n";
    for (const auto& n : notes) out += "next: " + n + "\n";
    return out;
  }
};

namespace detail {

template <class T>
struct is_fallback : std::false_type {};
template <class P, class A>
struct is_fallback<fallback_step<P, A>> : std::true_type {};

/// The record id of a standing elevation decision for one primitive.
inline std::string decision_id(const std::string& primitive_id) { return "decision:" + primitive_id; }

inline std::string groups_text(const std::vector<gid_type>& groups) {
  std::string text;
  for (auto g : groups) text += std::to_string(g) + ",";
  return text;
}

/// A standing decision recorded for `primitive_id`, if the policy lets it stand.
template <class Ctx>
std::optional<answer> standing_decision(const Ctx& ctx, const ledgers& books, const std::string& primitive_id) {
  if (ctx.policy.reprompt) return std::nullopt;
  const record_item* item = books.user.find(decision_id(primitive_id));
  if (!item) return std::nullopt;
  auto recorded = parse_answer(item->get("answer"));
  if (!recorded) return std::nullopt;
  // "unavailable" stands only while the user's groups are what they were.
  if (*recorded == answer::unavailable && item->get("groups") != groups_text(ctx.priv.user().groups))
    return std::nullopt;
  return recorded;
}

/// Records an answer per the decision table.
template <class Ctx>
void record_decision(const Ctx& ctx, ledgers& books, const std::string& primitive_id, answer a) {
  const auto& p = ctx.policy;
  bool keep = (a == answer::declined && p.record_declined) || (a == answer::cancelled && p.record_cancelled) ||
              (a == answer::unavailable && p.record_unavailable);
  if (a == answer::granted) books.user.erase(decision_id(primitive_id));
  if (!keep) return;
  books.user.put(record_item{decision_id(primitive_id),
                             "decision",
                             {{"answer", answer_name(a)},
                              {"at", std::to_string(ctx.clock())},
                              {"groups", groups_text(ctx.priv.user().groups)}}});
}

/// Probe + plan for one primitive.
template <class Ctx, class P>
step_report probe_and_plan(Ctx& ctx, const ledgers& books, const P& p) {
  step_report step;
  step.primitive = p.kind();
  step.id = p.id();
  step.applied.primitive = step.primitive;
  step.applied.id = step.id;
  auto probed = p.probe(ctx, books);
  if (!probed) {
    step.failure = probed.error();
    return step;
  }
  step.before = *probed;
  step.planned = p.make_plan(step.before);
  return step;
}

/// The changes of `p` the user makes alone (no elevation needed).
inline plan user_part(const plan& p) {
  plan local{p.primitive, p.id, {}};
  for (const auto& c : p.changes)
    if (!c.needs_elevation) local.changes.push_back(c);
  return local;
}

/// Completes a step's events the way the report promises them: in a dry run (a real apply
/// against an overlay: nothing reached the disk) each `changed` becomes `would_change`; a step
/// with nothing to do (empty plan, no event) gets a `kept` event per item probe found as wanted.
inline void name_dry_run_and_kept(bool dry_run, step_report& step) {
  if (dry_run)
    for (auto& e : step.applied.events)
      if (e.kind == event_kind::changed) e.kind = event_kind::would_change;
  if (step.failure || !step.planned.empty() || !step.applied.events.empty()) return;
  for (const auto& item : step.before.items)
    if (item.state == item_state::matches)
      step.applied.events.push_back(event{item.id, event_kind::kept, item.path, "already as wanted", std::nullopt, false});
}

/// Applies a step's plan with the grant converge got; after a hand-off to the elevated runner,
/// takes the runner's events and does the user's part here (see user_part).
template <class Ctx, class P>
void apply_step(Ctx& ctx, ledgers& books, const P& p, step_report& step, const grant& g) {
  step.elevation = g;
  if (step.failure) return;
  if (g.handed_off && g.elevated) {
    step.applied.events = g.runner_events;
    if constexpr (!has_desired_state<P>::value) {
      // The runner got nothing for this step (it has no desired state to hand over): say so for
      // each change it would have made, rather than leave the step silently out of sync.
      for (const auto& c : step.planned.changes)
        if (c.needs_elevation)
          step.applied.events.push_back(event{
              c.item_id, event_kind::skipped, c.path,
              std::string("needs admin rights, but ") + p.kind() +
                  " cannot be handed to the elevated runner (no desired state): run this step in a process that "
                  "can elevate itself (e.g. as root)",
              std::nullopt, false});
    }
    // The runner did the elevated changes; what needs no elevation (e.g. a note in the user's own
    // record) is done here, as the user: the runner refuses steps the user could do alone.
    const plan local = user_part(step.planned);
    if (!local.empty()) {
      // Not elevated, but the user's part may depend on what the runner did (PrivilegedPortBind
      // binds through the helper the runner started): it sees the runner's events.
      grant after_runner;
      after_runner.handed_off = true;
      after_runner.runner_events = g.runner_events;
      auto mine = p.apply(ctx, local, after_runner, books);
      for (auto& e : mine.events) step.applied.events.push_back(std::move(e));
      for (auto& n : mine.notes) step.applied.notes.push_back(std::move(n));
    }
  } else if (!step.planned.empty()) {
    step.applied = p.apply(ctx, step.planned, g, books);
  }
  name_dry_run_and_kept(ctx.policy.dry_run, step);
  for (const auto& e : step.applied.events) ctx.emit(step.id, e);
}

/// The probe after apply; skipped (the first probe stands) when apply changed nothing and nothing
/// failed: a no-op converge then reads each file and link once, not twice.
template <class Ctx, class P>
void probe_after(Ctx& ctx, const ledgers& books, const P& p, step_report& step) {
  if (step.failure) return;
  bool touched = false;
  for (const auto& e : step.applied.events)
    touched = touched || e.kind == event_kind::changed || e.kind == event_kind::would_change ||
              e.kind == event_kind::failed;
  if (!touched) {
    step.after = step.before;
    return;
  }
  auto again = p.probe(ctx, books);
  if (again) step.after = *again;
  else step.failure = again.error();
}

/// Adds a primitive's desired state to a runner payload (a primitive without `desired_state()`
/// cannot be handed off; the runner then reports it as not handed off).
template <class P>
void add_handoff(record& payload, const P& p) {
  if constexpr (has_desired_state<P>::value) {
    record_item item = p.desired_state();
    item.id = p.id();
    item.primitive = p.kind();
    payload.put(std::move(item));
  }
}

/// One step of a run: a plain primitive.
template <class P>
struct runner {
  const P& p;
  step_report step;
  std::optional<step_report> extra;  // unused for plain primitives

  template <class Ctx>
  void prepare(Ctx& ctx, const ledgers& books) { step = probe_and_plan(ctx, books, p); }
  const step_report& elevation_step() const { return step; }
  void add_desired_state(record& payload) const { add_handoff(payload, p); }
  template <class Ctx>
  void run(Ctx& ctx, ledgers& books, const grant& g) { apply_step(ctx, books, p, step, g); }
  template <class Ctx>
  void finish(Ctx& ctx, const ledgers& books, converge_report& report) {
    probe_after(ctx, books, p, step);
    report.steps.push_back(std::move(step));
  }
};

/// One step of a run: a fallback pair.
template <class P, class A>
struct runner<fallback_step<P, A>> {
  const fallback_step<P, A>& f;
  step_report step;
  std::optional<step_report> extra;
  bool use_alternative = false;

  template <class Ctx>
  void prepare(Ctx& ctx, const ledgers& books) { step = probe_and_plan(ctx, books, f.primary); }
  const step_report& elevation_step() const { return step; }
  void add_desired_state(record& payload) const { add_handoff(payload, f.primary); }
  template <class Ctx>
  void run(Ctx& ctx, ledgers& books, const grant& g) {
    use_alternative = !step.failure && step.planned.needs_elevation() && !g.elevated;
    if (use_alternative) {
      // The primary keeps its plan in the report, each elevated change marked skipped.
      step.elevation = g;
      for (const auto& c : step.planned.changes)
        step.applied.events.push_back(event{c.item_id, event_kind::skipped, c.path, g.refusal(), std::nullopt, false});
      for (const auto& e : step.applied.events) ctx.emit(step.id, e);
      extra = probe_and_plan(ctx, books, f.alternative);
      extra->is_fallback = true;
      extra->fallback_for = step.id;
      apply_step(ctx, books, f.alternative, *extra, grant{});
      return;
    }
    apply_step(ctx, books, f.primary, step, g);
  }
  template <class Ctx>
  void finish(Ctx& ctx, ledgers& books, converge_report& report) {
    probe_after(ctx, books, f.primary, step);
    if (!use_alternative && step.ok() && step.in_sync()) {
      // The primary works now: retire the alternative's changes (only those recorded as ours).
      step_report retired;
      retired.primitive = f.alternative.kind();
      retired.id = f.alternative.id();
      retired.is_fallback = true;
      retired.fallback_for = step.id;
      retired.reverted = true;
      retired.applied = f.alternative.revert(ctx, grant{}, books);
      for (const auto& e : retired.applied.events) ctx.emit(retired.id, e);
      report.steps.push_back(std::move(step));
      if (!retired.applied.events.empty()) report.steps.push_back(std::move(retired));
      return;
    }
    if (extra) probe_after(ctx, books, f.alternative, *extra);
    report.steps.push_back(std::move(step));
    if (extra) report.steps.push_back(std::move(*extra));
  }
};

template <class P>
runner<P> make_runner(const P& p) {
  return runner<P>{p, {}, {}};
}
template <class P, class A>
runner<fallback_step<P, A>> make_runner(const fallback_step<P, A>& f) {
  return runner<fallback_step<P, A>>{f, {}, {}, false};
}

template <class Ctx>
result<ledgers> load_ledgers(Ctx& ctx) {
  auto user = ctx.read_user_record ? load_record(ctx.fs, ctx.user_record, ctx.app_id)
                                   : result<record>(record{ctx.app_id, {}});
  if (!user) return tl::unexpected(user.error());
  auto system = load_record(ctx.fs, ctx.system_record, ctx.app_id);
  if (!system) {
    // An unreadable privileged record (EACCES for the user) is treated as empty only when the
    // file does not exist; anything else must stop the run.
    return tl::unexpected(system.error());
  }
  return ledgers{std::move(*user), std::move(*system)};
}

/// After a hand-off to the elevated runner: the runner stored the privileged record as root and
/// `books.system` holds it again, so it becomes the base `loaded` is compared with (this
/// process, the user, writes nothing of its own there); and the runner renamed and removed
/// directories this process may hold fds of, so the walk cache starts afresh.
template <class Fs, class WalkScope>
void rebase_after_handoff(Fs& fs, ledgers& loaded, const ledgers& books, std::optional<WalkScope>& walk_scope) {
  loaded.system = books.system;
  walk_scope.reset();
  walk_scope.emplace(open_walk_cache(fs));
}

/// The note store_ledgers leaves when the privileged record cannot be written.
inline constexpr const char* system_record_unwritten = "the privileged record could not be written: ";

// Load-merge-store under the record directory's lock (store_record_merged): two runs of one app
// at once each keep their own items, and a run with nothing to record takes no lock.
// Items written ahead (context::record_ahead) count as part of the file: one the run put or erased
// afterwards is stored as the run left it; one the run left as it was at the start stays as written
// ahead (its change failed part-way), unless withdrawn (the change failed and changed nothing):
// then the item from the start comes back (see context::recorded_ahead).
template <class Ctx>
void store_ledgers(Ctx& ctx, const ledgers& loaded_at_start, const ledgers& books_at_end, converge_report& report) {
  ledgers loaded = loaded_at_start;
  ledgers books = books_at_end;
  bool written_ahead[2] = {false, false};  // user, system
  for (const auto& ahead : ctx.recorded_ahead) {
    written_ahead[ahead.privileged ? 1 : 0] = true;
    const record_item* now = books.scope(ahead.privileged).find(ahead.item.id);
    const record_item* then = loaded_at_start.scope(ahead.privileged).find(ahead.item.id);
    const bool untouched = now ? then && *now == *then : !then;
    // Untouched by the run (its change failed part-way, after the write-ahead): the item written
    // ahead is what describes the disk now, so it stays; a withdrawn one gives way.
    if (untouched && !ahead.withdrawn) books.scope(ahead.privileged).put(ahead.item);
    loaded.scope(ahead.privileged).put(ahead.item);
  }
  ctx.recorded_ahead.clear();
  auto user = ctx.read_user_record ? store_record_merged(ctx.fs, ctx.user_record, books.user, loaded.user)
                                   : result<bool>(false);
  if (user) report.user_record_written = *user || written_ahead[0];
  else report.notes.push_back("the user's record could not be written: " + user.error().message());
  auto system = store_record_merged(ctx.fs, ctx.system_record, books.system, loaded.system);
  if (system) report.system_record_written = *system || written_ahead[1];
  else report.notes.push_back(system_record_unwritten + system.error().message());
}

/// Moves the run's changes whose directory sync failed (context::not_durable) into the report.
template <class Ctx>
void report_not_durable(Ctx& ctx, converge_report& report) {
  for (const auto& path : ctx.not_durable)
    report.notes.push_back(path + ": changed, but its directory could not be synced: the change may be lost on a "
                                  "power failure; run again to make sure");
  ctx.not_durable.clear();
}

/// Decides elevation for every runner: standing decisions first, then one prompt for the rest.
template <class Ctx, class... Runners>
std::vector<grant> decide_elevation(Ctx& ctx, ledgers& books, converge_report& report, Runners&... runners) {
  std::vector<grant> grants;
  std::vector<std::size_t> to_ask;
  elevation_request request;
  request.app_id = ctx.app_id;
  [[maybe_unused]] auto consider = [&](auto& r) {
    const step_report& s = r.elevation_step();
    grant g;
    if (!s.failure && s.planned.needs_elevation()) {
      if (auto standing = standing_decision(ctx, books, s.id)) {
        g.answer_ = *standing;
        g.from_record = true;
        g.elevated = *standing == answer::granted;
      } else {
        to_ask.push_back(grants.size());
        for (const auto& c : s.planned.changes)
          if (c.needs_elevation) request.changes.push_back(c.summary());
      }
    }
    grants.push_back(g);
  };
  (consider(runners), ...);
  if (to_ask.empty()) return grants;
  request.reason = ctx.app_id + " needs administrator rights to make " + std::to_string(request.changes.size()) +
                   " change(s) outside your home directory";
  answer a = answer::granted;
  std::optional<elevated_outcome> handed;
  if (ctx.policy.dry_run) {
    a = ctx.policy.dry_run_answer;
  } else if constexpr (has_run_elevated<std::decay_t<decltype(ctx.priv)>>::value) {
    if (!ctx.priv.elevates_in_process()) {
      // One call: the runner's start is the prompt; it applies every handed-off step as root.
      record payload{ctx.app_id, {}};
      std::size_t index = 0;
      auto add = [&](auto& r) {
        bool asked = false;
        for (auto i : to_ask) asked = asked || i == index;
        if (asked) r.add_desired_state(payload);
        ++index;
      };
      (add(runners), ...);
      auto outcome = ctx.priv.run_elevated(request, payload);
      if (outcome) {
        handed = *outcome;
        a = outcome->prompt_answer;
      } else {
        a = answer::unavailable;
        report.notes.push_back("the elevated runner could not be started: " + outcome.error().message());
      }
    } else {
      a = ctx.priv.ask(request);
    }
  } else {
    a = ctx.priv.ask(request);
  }
  if (!ctx.policy.dry_run) report.prompts_shown = 1;
  report.prompt = request;
  report.prompt_answer = a;
  std::size_t index = 0;
  [[maybe_unused]] auto settle = [&](auto& r) {
    bool asked = false;
    for (auto i : to_ask) asked = asked || i == index;
    if (asked) {
      grant& g = grants[index];
      g.answer_ = a;
      g.elevated = a == answer::granted;
      if (handed) {
        g.handed_off = true;
        auto found = handed->events.find(r.elevation_step().id);
        if (found != handed->events.end()) g.runner_events = found->second;
        if (handed->failure && g.runner_events.empty())
          g.runner_events.push_back(event{r.elevation_step().id, event_kind::failed, {}, handed->failure->message(),
                                          handed->failure, true});
      }
      record_decision(ctx, books, r.elevation_step().id, a);
    }
    ++index;
  };
  (settle(runners), ...);
  if (handed) {
    // The runner wrote the privileged record as root: read what it holds now.
    if (auto fresh = load_record(ctx.fs, ctx.system_record, ctx.app_id)) books.system = *fresh;
  }
  return grants;
}

}  // namespace detail

/// Brings every primitive into the desired state. Returns an error only when the run cannot
/// start (a record is corrupt, newer, or unsafe); per-item failures are in the report.
template <class Fs, class Priv, class... Steps>
result<converge_report> converge(context<Fs, Priv>& ctx, const Steps&... steps) {
  converge_report report;
  report.app_id = ctx.app_id;
  report.dry_run = ctx.policy.dry_run;
  ctx.not_durable.clear();  // this run's own, reported at its end
  ctx.recorded_ahead.clear();
  // Verified directory fds are reused for the whole run (PosixFs: no walk from / per operation).
  std::optional<decltype(open_walk_cache(ctx.fs))> walk_scope;
  walk_scope.emplace(open_walk_cache(ctx.fs));
  auto loaded = detail::load_ledgers(ctx);
  if (!loaded) return tl::unexpected(loaded.error());
  ledgers books = *loaded;
  auto runners = std::make_tuple(detail::make_runner(steps)...);
  std::apply([&](auto&... r) { (r.prepare(ctx, books), ...); }, runners);
  auto grants = std::apply([&](auto&... r) { return detail::decide_elevation(ctx, books, report, r...); }, runners);
  for (const auto& g : grants) {
    if (!g.handed_off) continue;
    // decide_elevation reloaded the privileged record the runner stored.
    detail::rebase_after_handoff(ctx.fs, *loaded, books, walk_scope);
    break;
  }
  std::size_t index = 0;
  std::apply([&](auto&... r) { (r.run(ctx, books, grants[index++]), ...); }, runners);
  // finish() re-probes and may retire a fallback (which changes the ledgers): store after it.
  std::apply([&](auto&... r) { (r.finish(ctx, books, report), ...); }, runners);
  detail::store_ledgers(ctx, *loaded, books, report);
  for (const auto& s : report.steps) {
    if (!s.reverted && !s.in_sync() && !(s.elevation && !s.elevation->elevated && !s.is_fallback &&
                                         s.planned.needs_elevation()))
      report.out_of_sync.push_back(s.id);
    for (const auto& n : s.applied.notes) report.notes.push_back(n);
    // What was left alone, and why, is something the user may need to act on.
    const probe_report& seen = s.after ? *s.after : s.before;
    for (const auto& item : seen.items)
      if (item.state == item_state::conflict || item.state == item_state::locked ||
          item.state == item_state::unreadable)
        report.notes.push_back(item.path + ": " + item_state_name(item.state) + ", left alone" +
                               (item.detail.empty() ? std::string() : ": " + item.detail));
  }
  detail::report_not_durable(ctx, report);
  return report;
}

namespace detail {

/// Calls `f(primitive, is_alternative, primary_id)` for each primitive of an uninstall step, in
/// revert order: a fallback's alternative before its primary.
template <class Step, class F>
void for_each_revertible(const Step& s, F&& f) {
  if constexpr (is_fallback<Step>::value) {
    f(s.alternative, true, s.primary.id());
    f(s.primary, false, std::string());
  } else {
    f(s, false, std::string());
  }
}

/// True when reverting `p` needs elevation according to `books`.
template <class P>
bool revert_needs_elevation(const P& p, const ledgers& books) {
  for (const auto& c : p.revert_plan(books).changes)
    if (c.needs_elevation) return true;
  return false;
}

/// A primitive whose revert is handed to the elevated runner: it needs elevation and the runner
/// can rebuild it (`desired_state()`).
template <class P>
bool hands_off_revert(const P& p, const ledgers& books) {
  if constexpr (has_desired_state<P>::value) return revert_needs_elevation(p, books);
  else return false;
}

/// The revert batch for the elevated runner: a version 2 header saying "revert", then the desired
/// state of every primitive whose revert needs elevation (its parameters only: the runner finds
/// what to undo in the root-owned record itself).
template <class... Steps>
record revert_payload(const std::string& app_id, const ledgers& books, const Steps&... steps) {
  record payload{app_id, {}};
  set_handoff_mode(payload, handoff_mode::revert);
  auto add = [&](const auto& p, bool, const std::string&) {
    if (hands_off_revert(p, books)) add_handoff(payload, p);
  };
  (for_each_revertible(steps, add), ...);
  return payload;
}

}  // namespace detail

/// Reverts everything the records say these primitives did (uninstall), asking for elevation once
/// when privileged items must be undone. The records are removed when nothing is left in them.
///
/// A privilege backend that elevates in process (root, `RootFor`, `ScriptedPrivilege`) reverts
/// everything here. One that starts an elevated runner instead (`CommandPrivilege` as a user:
/// `elevates_in_process()` false, `run_elevated` present) hands every privileged revert to it in
/// one call, whose start is the one prompt: the runner reverts them as root from the root-owned
/// record alone, this process then reverts the user's own items and stores only the user's record.
/// When elevation is declined, cancelled, timed out or unavailable, the privileged items stay and
/// a note names each of them.
template <class Fs, class Priv, class... Steps>
result<converge_report> uninstall(context<Fs, Priv>& ctx, const Steps&... steps) {
  converge_report report;
  report.app_id = ctx.app_id;
  report.uninstall = true;
  report.dry_run = ctx.policy.dry_run;
  ctx.not_durable.clear();
  ctx.recorded_ahead.clear();
  std::optional<decltype(open_walk_cache(ctx.fs))> walk_scope;
  walk_scope.emplace(open_walk_cache(ctx.fs));
  auto loaded = detail::load_ledgers(ctx);
  if (!loaded) return tl::unexpected(loaded.error());
  ledgers books = *loaded;
  // The plans are shown as they were before anything ran (a runner changes the privileged record).
  const ledgers planned_from = books;
  // Through a runner only what it can rebuild can be reverted with admin rights: the prompt lists
  // exactly that, and anything else privileged stays (and is named below).
  bool via_runner = false;
  if constexpr (detail::has_run_elevated<std::decay_t<decltype(ctx.priv)>>::value)
    via_runner = !ctx.policy.dry_run && !ctx.priv.elevates_in_process();
  std::vector<std::string> elevated_changes;
  auto collect = [&](const auto& p, bool, const std::string&) {
    if (via_runner && !detail::hands_off_revert(p, books)) return;
    for (const auto& c : p.revert_plan(books).changes)
      if (c.needs_elevation) elevated_changes.push_back(c.summary());
  };
  (detail::for_each_revertible(steps, collect), ...);
  grant g;
  std::optional<elevated_outcome> handed;
  if (!elevated_changes.empty()) {
    elevation_request request{ctx.app_id, ctx.app_id + " needs administrator rights to remove " +
                                              std::to_string(elevated_changes.size()) + " change(s) it made",
                              elevated_changes};
    answer a = answer::granted;
    if (ctx.policy.dry_run) {
      a = ctx.policy.dry_run_answer;
    } else if constexpr (detail::has_run_elevated<std::decay_t<decltype(ctx.priv)>>::value) {
      if (via_runner) {
        auto outcome = ctx.priv.run_elevated(request, detail::revert_payload(ctx.app_id, books, steps...));
        if (!outcome) {
          a = answer::unavailable;
          report.notes.push_back("the elevated runner could not be started: " + outcome.error().message());
        } else if (outcome->prompt_answer == answer::granted && outcome->mode != handoff_mode::revert) {
          // A runner from before revert batches read this one as an apply batch: it reverted nothing.
          a = answer::unavailable;
          report.notes.push_back("the elevated runner does not know revert batches (is the helper older than the "
                                 "app?): nothing was reverted with admin rights");
        } else {
          a = outcome->prompt_answer;
          if (a == answer::granted) handed = std::move(*outcome);
          else if (outcome->failure) report.notes.push_back("the elevated runner failed: " + outcome->failure->message());
        }
      } else {
        a = ctx.priv.ask(request);
      }
    } else {
      a = ctx.priv.ask(request);
    }
    if (!ctx.policy.dry_run) report.prompts_shown = 1;
    report.prompt = request;
    report.prompt_answer = a;
    g.answer_ = a;
    g.elevated = a == answer::granted && !handed;
  }
  if (handed) {
    // The runner reverted the privileged items and stored the root-owned record as root: what it
    // holds now is the base, so this process (the user) writes nothing there.
    if (auto fresh = load_record(ctx.fs, ctx.system_record, ctx.app_id)) books.system = *fresh;
    else report.notes.push_back("the privileged record could not be read again: " + fresh.error().message());
    detail::rebase_after_handoff(ctx.fs, *loaded, books, walk_scope);
  }
  auto revert_one = [&](const auto& p, bool is_alt, const std::string& primary_id) {
    step_report step;
    step.primitive = p.kind();
    step.id = p.id();
    step.reverted = true;
    step.is_fallback = is_alt;
    step.fallback_for = primary_id;
    step.planned = p.revert_plan(planned_from);
    step.applied.primitive = step.primitive;
    step.applied.id = step.id;
    step.elevation = g;
    if (handed && detail::hands_off_revert(p, planned_from)) {
      step.elevation->elevated = true;
      step.elevation->handed_off = true;
      auto found = handed->events.find(step.id);
      if (found != handed->events.end()) step.elevation->runner_events = found->second;
      if (step.elevation->runner_events.empty()) {
        auto e = handed->failure ? *handed->failure
                                 : fail(errc::unavailable, "elevated runner", step.id,
                                        "the runner reported nothing for this step")
                                       .value();
        step.elevation->runner_events.push_back(event{step.id, event_kind::failed, {}, e.message(), e, true});
      }
      step.applied.events = step.elevation->runner_events;
      // The user's own items of this step (if any) are reverted here, as the user. Privileged
      // items the runner could not revert are still in the record; their skip would only repeat
      // the runner's event for the same item.
      plan rest = p.revert_plan(books);
      bool user_side = false;
      for (const auto& c : rest.changes) user_side = user_side || !c.needs_elevation;
      if (user_side) {
        auto mine = p.revert(ctx, grant{}, books);
        for (auto& e : mine.events) {
          bool repeated = false;
          if (e.kind == event_kind::skipped)
            for (const auto& r : step.elevation->runner_events) repeated = repeated || r.item_id == e.item_id;
          if (!repeated) step.applied.events.push_back(std::move(e));
        }
        for (auto& n : mine.notes) step.applied.notes.push_back(std::move(n));
      }
    } else if (handed) {
      // Nothing of it was handed off: its privileged items (if any) cannot be reverted here.
      grant local;
      step.elevation = local;
      step.applied = p.revert(ctx, local, books);
    } else {
      step.applied = p.revert(ctx, g, books);
    }
    for (const auto& e : step.applied.events) ctx.emit(step.id, e);
    report.steps.push_back(std::move(step));
  };
  (detail::for_each_revertible(steps, revert_one), ...);
  // What stays because elevation was not had: the user must know which items, and what to do.
  std::string paths;
  std::size_t left = 0;
  for (const auto& s : report.steps)
    for (const auto& e : s.applied.events)
      if (e.kind == event_kind::skipped && s.elevation && e.message == s.elevation->refusal()) {
        paths += (paths.empty() ? "" : ", ") + e.path;
        ++left;
      }
  if (left > 0) {
    std::string why = g.answer_ && !handed ? std::string("prompt ") + answer_name(*g.answer_)
                      : via_runner         ? std::string("the elevated runner cannot revert them")
                                           : std::string("admin rights were not requested");
    report.notes.push_back(std::to_string(left) + " item(s) that need admin rights to remove are still in place (" +
                           why + "): " + paths +
                           "; run the uninstall again as an administrator (e.g. with sudo) to remove them");
  }
  // Decisions belong to the install: uninstall forgets them too.
  for (auto it = books.user.items.begin(); it != books.user.items.end();)
    it = it->second.primitive == "decision" ? books.user.items.erase(it) : std::next(it);
  detail::store_ledgers(ctx, *loaded, books, report);
  detail::report_not_durable(ctx, report);
  return report;
}

HOSTCFG_END_NAMESPACE
