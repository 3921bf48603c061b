#pragma once
/// @file
/// A readable, linear-time line diff for plans: the common leading and trailing lines are cut
/// and shown as a little context, the rest as removed (`-`) and added (`+`) lines. Every edit
/// hostcfg makes is one contiguous region (our section, one link, one file), so this is exact
/// for our changes and stays O(n) on a 150,000-line hosts file.

#include <cstddef>
#include <string>
#include <string_view>

#include "hostcfg/format/lines.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// Renders `before` -> `after` as `  context`, `- removed`, `+ added` lines (each ending "\n").
/// Line endings are shown only when they alone changed (as `\r`). Empty when equal.
inline std::string render_line_diff(std::string_view before, std::string_view after, std::size_t context = 2) {
  if (before == after) return {};
  auto a = split_lines(before);
  auto b = split_lines(after);
  auto same = [](const line_view& x, const line_view& y) { return x.text == y.text && x.ending == y.ending; };
  std::size_t prefix = 0;
  while (prefix < a.size() && prefix < b.size() && same(a[prefix], b[prefix])) ++prefix;
  std::size_t suffix = 0;
  while (suffix < a.size() - prefix && suffix < b.size() - prefix &&
         same(a[a.size() - 1 - suffix], b[b.size() - 1 - suffix]))
    ++suffix;
  auto show = [](const line_view& l) {
    std::string text(l.text);
    if (l.ending == "\r\n" || l.ending == "\r") text += "\\r";
    if (l.ending.empty()) text += "  (no newline at end)";
    return text;
  };
  std::string out;
  std::size_t first = prefix > context ? prefix - context : 0;
  if (first > 0) out += "  ... " + std::to_string(first) + " unchanged line(s)\n";
  for (std::size_t i = first; i < prefix; ++i) out += "  " + show(a[i]) + "\n";
  for (std::size_t i = prefix; i < a.size() - suffix; ++i) out += "- " + show(a[i]) + "\n";
  for (std::size_t i = prefix; i < b.size() - suffix; ++i) out += "+ " + show(b[i]) + "\n";
  std::size_t tail = a.size() - suffix;
  std::size_t last = suffix > context ? tail + context : a.size();
  for (std::size_t i = tail; i < last; ++i) out += "  " + show(a[i]) + "\n";
  if (last < a.size()) out += "  ... " + std::to_string(a.size() - last) + " unchanged line(s)\n";
  return out;
}

HOSTCFG_END_NAMESPACE
