#pragma once
/// @file
/// The one marker format for every text file hostcfg edits (hosts files, shell profiles): a begin
/// and an end comment line around the section an app owns. The default lines name the app id and
/// a format version:
///
///     # >>> hostcfg com.docker.desktop v1 >>>
///     ...
///     # <<< hostcfg com.docker.desktop <<<
///
/// An app may adopt the markers it already wrote in the past (Docker's `# Added by Docker Desktop`
/// ... `# End of section`) with `custom_markers`. Finding a section is pure and lossless: it
/// returns byte offsets into the input, and refuses broken layouts (a marker missing, reversed,
/// or a duplicated section) so callers leave such a file untouched.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hostcfg/error.hpp"
#include "hostcfg/format/lines.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// Current marker format version, written into default begin lines.
inline constexpr int marker_format_version = 1;

/// The begin/end lines of one app's section (without line endings).
struct section_markers {
  std::string begin_line;  ///< full text of the begin line as written
  std::string end_line;    ///< full text of the end line as written
  /// Begin lines of older formats this app wrote (matched as prefixes), so an older section is
  /// found and rewritten in place rather than duplicated.
  std::vector<std::string> begin_prefixes;
};

/// hostcfg's own markers for `app_id` (which must be non-empty printable ASCII without spaces;
/// validated by `validate_app_id`).
inline section_markers default_markers(std::string_view app_id) {
  std::string id(app_id);
  return {"# >>> hostcfg " + id + " v" + std::to_string(marker_format_version) + " >>>",
          "# <<< hostcfg " + id + " <<<",
          {"# >>> hostcfg " + id + " v"}};
}

/// Markers an app already uses, e.g. custom_markers("# Added by Docker Desktop", "# End of section").
inline section_markers custom_markers(std::string begin_line, std::string end_line) {
  return {begin_line, std::move(end_line), {begin_line}};
}

/// Checks an app id: 1-128 bytes of [A-Za-z0-9._-]. It lands in marker lines and file names.
inline result<void> validate_app_id(std::string_view app_id) {
  if (app_id.empty() || app_id.size() > 128)
    return fail(errc::invalid_input, "validate app id", std::string(app_id), "must be 1 to 128 bytes");
  for (char c : app_id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-';
    if (!ok)
      return fail(errc::invalid_input, "validate app id", std::string(app_id),
                  "only letters, digits, '.', '_' and '-' are allowed");
  }
  return {};
}

/// Where a section sits in a file: [begin, end) covers the begin line through the end line and
/// its line ending. `inner_begin`/`inner_end` cover the lines between the markers.
struct section_span {
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t inner_begin = 0;
  std::size_t inner_end = 0;
  std::size_t begin_line_number = 0;  ///< 1-based line number of the begin marker (hosts: 0 under hosts_numbering::problems_only)
  std::string begin_line;             ///< the begin line as found (may be an older version)
};

namespace detail {
/// The UTF-8 byte order mark some editors put at the start of a file.
inline constexpr std::string_view utf8_bom = "\xEF\xBB\xBF";

inline std::string_view trim_trailing_space(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
inline bool is_begin_marker(std::string_view text, const section_markers& m) {
  text = trim_trailing_space(text);
  if (text == m.begin_line) return true;
  for (const auto& prefix : m.begin_prefixes)
    if (text.substr(0, prefix.size()) == prefix) return true;
  return false;
}
}  // namespace detail

/// Whether a marker line may follow a UTF-8 BOM at the start of a file (line 1).
enum class marker_after_bom {
  /// Not a marker: the line is not the marker's text. For shell profiles, where a shell runs
  /// such a line as a command: a section there is then broken markers, and refused.
  refused,
  /// A marker (hosts files: an editor added a BOM to a file that began with our section, and the
  /// line is still a comment to the resolver): the section begins after the BOM, outside it.
  allowed,
};

/// Finds the app's section in `bytes`. Returns nullopt when there is none; `errc::broken_markers`
/// (naming the line) when an end has no begin, a begin has no end, or there are two sections.
inline result<std::optional<section_span>> find_section(std::string_view bytes, const section_markers& m,
                                                        marker_after_bom bom = marker_after_bom::refused) {
  std::optional<section_span> found;
  std::optional<section_span> open;
  std::optional<error> broken;
  std::size_t number = 0;
  auto broken_at = [&](std::size_t line, const std::string& why) {
    broken = fail(errc::broken_markers, "find section", {}, "line " + std::to_string(line) + ": " + why,
                  "remove the stray or duplicated marker lines by hand, then run again")
                 .value();
  };
  // Marker lines are comments: when they all start with '#', other lines are skipped with one
  // byte compare.
  auto starts_with_hash = [](const std::string& s) { return !s.empty() && s.front() == '#'; };
  bool hash_only = starts_with_hash(m.begin_line) && starts_with_hash(m.end_line);
  for (const auto& prefix : m.begin_prefixes) hash_only = hash_only && starts_with_hash(prefix);
  for_each_line(bytes, [&](const line_view& line) {
    ++number;
    if (broken) return;
    std::string_view text = line.text;
    std::size_t offset = line.offset;
    if (bom == marker_after_bom::allowed && number == 1 && text.substr(0, detail::utf8_bom.size()) == detail::utf8_bom) {
      text.remove_prefix(detail::utf8_bom.size());
      offset += detail::utf8_bom.size();
    }
    if (hash_only && (text.empty() || text.front() != '#')) return;
    text = detail::trim_trailing_space(text);
    if (detail::is_begin_marker(text, m)) {
      if (open || found) return broken_at(number, "a second begin marker '" + std::string(text) + "'");
      open = section_span{offset, 0, line.offset + line.text.size() + line.ending.size(), 0, number,
                          std::string(text)};
    } else if (text == m.end_line) {
      if (!open) return broken_at(number, "end marker without a begin marker");
      open->inner_end = offset;
      open->end = line.offset + line.text.size() + line.ending.size();
      found = open;
      open.reset();
    }
  });
  if (broken) return tl::unexpected(*broken);
  if (open) {
    broken_at(open->begin_line_number, "begin marker without an end marker");
    return tl::unexpected(*broken);
  }
  return found;
}

HOSTCFG_END_NAMESPACE
