#pragma once
/// @file
/// `all_of(p1, p2, ...)`: several primitives as one step of a run. Probe, plan, apply and
/// revert-plan concatenate the members' (in order); revert undoes the members in reverse order.
/// One elevation decision and one record of it cover the whole group, which is what a fallback
/// needs: "links under the home *and* that directory on PATH".
///
///     auto alternative = all_of(SymlinkSet{...~/.docker/bin...}, ShellProfilePathEdit{...});
///     converge(ctx, fallback(system_links, alternative));
///
/// Item and change ids are prefixed with the member's index ("0|link:/x", "1|file:/y") so the
/// group can hand each member back exactly its own items; members see their own ids unchanged.

#include <cstddef>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "hostcfg/context.hpp"
#include "hostcfg/protocol.hpp"
#include "hostcfg/record.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace detail {
inline std::string member_prefix(std::size_t index) { return std::to_string(index) + "|"; }

/// True when `id` belongs to member `index`; `rest` receives the member's own id.
inline bool member_owns(const std::string& id, std::size_t index, std::string& rest) {
  std::string prefix = member_prefix(index);
  if (id.compare(0, prefix.size(), prefix) != 0) return false;
  rest = id.substr(prefix.size());
  return true;
}
}  // namespace detail

/// Several primitives as one (see the file comment). Build it with `all_of`.
template <class... Members>
struct Group {
  static_assert(sizeof...(Members) > 0, "all_of() needs at least one primitive");
  std::tuple<Members...> members;

  /// "all_of(links:/Users/alice/.docker/bin,profile:...)".
  std::string id() const {
    std::string text;
    std::apply([&](const auto&... m) { ((text += (text.empty() ? "" : ",") + m.id()), ...); }, members);
    return "all_of(" + text + ")";
  }
  const char* kind() const { return "all_of"; }

  /// Every member's probe, in order; the first member that cannot be probed fails the group.
  template <class Fs, class Priv>
  result<probe_report> probe(context<Fs, Priv>& ctx, const ledgers& books) const {
    probe_report report{kind(), id(), {}};
    std::optional<error> failed;
    for_each([&](const auto& m, std::size_t index) {
      if (failed) return;
      auto probed = m.probe(ctx, books);
      if (!probed) {
        failed = probed.error();
        return;
      }
      for (auto item : probed->items) {
        item.id = detail::member_prefix(index) + item.id;
        report.items.push_back(std::move(item));
      }
    });
    if (failed) return tl::unexpected(*failed);
    return report;
  }

  /// Pure: each member plans from its own items.
  plan make_plan(const probe_report& probed) const {
    plan p{kind(), id(), {}};
    for_each([&](const auto& m, std::size_t index) {
      probe_report own{m.kind(), m.id(), {}};
      std::string rest;
      for (const auto& item : probed.items)
        if (detail::member_owns(item.id, index, rest)) {
          own.items.push_back(item);
          own.items.back().id = rest;
        }
      for (auto c : m.make_plan(own).changes) {
        c.item_id = detail::member_prefix(index) + c.item_id;
        p.changes.push_back(std::move(c));
      }
    });
    return p;
  }

  /// Each member applies its own changes, in order; a failed member does not stop the next.
  template <class Fs, class Priv>
  apply_report apply(context<Fs, Priv>& ctx, const plan& p, const grant& g, ledgers& books) const {
    apply_report report{kind(), id(), {}, {}};
    for_each([&](const auto& m, std::size_t index) {
      plan own{m.kind(), m.id(), {}};
      std::string rest;
      for (const auto& c : p.changes)
        if (detail::member_owns(c.item_id, index, rest)) {
          own.changes.push_back(c);
          own.changes.back().item_id = rest;
        }
      if (own.empty()) return;
      merge(report, m.apply(ctx, own, g, books), index);
    });
    return report;
  }

  /// Every member's revert plan, in revert order (last member first).
  plan revert_plan(const ledgers& books) const {
    plan p{kind(), id(), {}};
    for_each_reverse([&](const auto& m, std::size_t index) {
      for (auto c : m.revert_plan(books).changes) {
        c.item_id = detail::member_prefix(index) + c.item_id;
        p.changes.push_back(std::move(c));
      }
    });
    return p;
  }

  /// Reverts the members, last first (the PATH entry goes before the links it points at).
  template <class Fs, class Priv>
  apply_report revert(context<Fs, Priv>& ctx, const grant& g, ledgers& books) const {
    apply_report report{kind(), id(), {}, {}};
    for_each_reverse([&](const auto& m, std::size_t index) { merge(report, m.revert(ctx, g, books), index); });
    return report;
  }

  /// Member `I`.
  template <std::size_t I>
  const auto& member() const {
    return std::get<I>(members);
  }

 private:
  static void merge(apply_report& into, apply_report from, std::size_t index) {
    for (auto& e : from.events) {
      e.item_id = detail::member_prefix(index) + e.item_id;
      into.events.push_back(std::move(e));
    }
    for (auto& n : from.notes) into.notes.push_back(std::move(n));
  }
  template <class F>
  void for_each(F&& f) const {
    for_each_impl(f, std::index_sequence_for<Members...>{});
  }
  template <class F, std::size_t... I>
  void for_each_impl(F& f, std::index_sequence<I...>) const {
    (f(std::get<I>(members), I), ...);
  }
  template <class F>
  void for_each_reverse(F&& f) const {
    for_each_reverse_impl(f, std::index_sequence_for<Members...>{});
  }
  template <class F, std::size_t... I>
  void for_each_reverse_impl(F& f, std::index_sequence<I...>) const {
    constexpr std::size_t n = sizeof...(Members);
    (f(std::get<n - 1 - I>(members), n - 1 - I), ...);
  }
};

/// Makes several primitives one step: `all_of(user_links, path_edit)`.
template <class... Members>
Group<Members...> all_of(Members... members) {
  return Group<Members...>{std::tuple<Members...>(std::move(members)...)};
}

HOSTCFG_END_NAMESPACE
