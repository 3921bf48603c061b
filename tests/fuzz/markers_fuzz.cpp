// libFuzzer target for the section-marker splitter (format/markers.hpp, format/lines.hpp),
// RELIABILITY H5 (broken markers refused) and F13 (bytes outside the block kept). Invariants:
//  1. split_lines is lossless: the lines' text + ending concatenate back to the input, offsets
//     are contiguous, and a text never holds '\n'.
//  2. find_section either refuses with errc::broken_markers naming a line, or returns nothing, or
//     one span with begin <= inner_begin <= inner_end <= end <= size whose first line is a begin
//     marker and whose last line is the end marker; it begins at a line start, or (only with
//     marker_after_bom::allowed) after a UTF-8 BOM that starts the file.
//  3. Cutting the found section out leaves a file with no section and no broken markers; the bytes
//     before and after it are untouched.
//  4. A file without a section gets one appended on its own line (a newline added only when the
//     file does not end with one), and find_section then finds exactly that body.
// clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Itests tests/fuzz/markers_fuzz.cpp
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "hostcfg/format/lines.hpp"
#include "hostcfg/format/markers.hpp"
#include "support/fuzz_check.hpp"

namespace {

// Aborts (a libFuzzer crash) naming the invariant's line (support/fuzz_check.hpp).
#define check(ok) HOSTCFG_FUZZ_CHECK(ok)

void check_markers(std::string_view bytes, const hostcfg::section_markers& m, hostcfg::marker_after_bom bom) {
  using namespace hostcfg;
  auto found = find_section(bytes, m, bom);
  if (!found) {
    check(found.error().is(errc::broken_markers));
    check(found.error().message().find("line ") != std::string::npos);
    return;
  }
  if (!*found) {
    // 4: append a section and find exactly it.
    std::string with(bytes);
    if (!with.empty() && with.back() != '\n') with += '\n';
    const std::string body = "127.0.0.1\tfuzz.test\n";
    with += m.begin_line + "\n" + body + m.end_line + "\n";
    auto again = find_section(with, m, bom);
    check(again && again->has_value());
    const section_span& s = **again;
    check(with.substr(s.inner_begin, s.inner_end - s.inner_begin) == body);
    check(with.substr(0, bytes.size()) == bytes);
    check(s.end == with.size());
    return;
  }
  const section_span& s = **found;
  check(s.begin <= s.inner_begin && s.inner_begin <= s.inner_end && s.inner_end <= s.end && s.end <= bytes.size());
  // At a line start, or (marker_after_bom::allowed) on line 1 right after a UTF-8 BOM, which stays
  // outside the section.
  check(s.begin == 0 || bytes[s.begin - 1] == '\n' || bytes[s.begin - 1] == '\r' ||
        (bom == marker_after_bom::allowed && s.begin == detail::utf8_bom.size() &&
         bytes.substr(0, s.begin) == detail::utf8_bom));
  std::string_view first = bytes.substr(s.begin, s.inner_begin - s.begin);
  check(!first.empty() && (first.back() == '\n' || first.back() == '\r'));
  std::string_view last = bytes.substr(s.inner_end, s.end - s.inner_end);
  while (!last.empty() && (last.back() == '\n' || last.back() == '\r')) last.remove_suffix(1);
  while (!last.empty() && (last.back() == ' ' || last.back() == '\t')) last.remove_suffix(1);
  check(last == m.end_line);
  // 3: without the section there is none, and nothing broken.
  std::string cut = std::string(bytes.substr(0, s.begin)) + std::string(bytes.substr(s.end));
  auto none = find_section(cut, m, bom);
  check(none && !none->has_value());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostcfg;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);

  // 1: lossless lines.
  std::string joined;
  std::size_t offset = 0;
  for (const auto& line : split_lines(bytes)) {
    check(line.offset == offset);
    check(line.text.find('\n') == std::string_view::npos);
    joined.append(line.text.data(), line.text.size());
    joined.append(line.ending.data(), line.ending.size());
    offset += line.text.size() + line.ending.size();
  }
  check(joined == bytes);

  // 2-4 with hostcfg's own markers and with adopted markers that do not start with '#'.
  static const section_markers ours = default_markers("com.docker.desktop");
  static const section_markers docker = custom_markers("# Added by Docker Desktop", "# End of section");
  static const section_markers plain = custom_markers("BEGIN fuzz", "END fuzz");
  for (auto bom : {marker_after_bom::refused, marker_after_bom::allowed}) {
    check_markers(bytes, ours, bom);
    check_markers(bytes, docker, bom);
    check_markers(bytes, plain, bom);
  }
  return 0;
}
