#pragma once
/// @file
/// Lossless line splitting shared by the text codecs: every line keeps its own ending ("\n",
/// "\r\n", a lone "\r", or none for a last line without a final newline), so joining the lines
/// gives back the input byte for byte.

#include <cstddef>
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

/// Splits `bytes` into lines; `join` of the result is `bytes`. A trailing ending does not make an
/// extra empty line: "a\n" is one line, "a\nb" two, "" none.
inline std::vector<line_view> split_lines(std::string_view bytes) {
  std::vector<line_view> lines;
  std::size_t start = 0;
  while (start < bytes.size()) {
    std::size_t end = bytes.find_first_of("\r\n", start);
    if (end == std::string_view::npos) {
      lines.push_back({bytes.substr(start), {}, start});
      break;
    }
    std::size_t ending_size = (bytes[end] == '\r' && end + 1 < bytes.size() && bytes[end + 1] == '\n') ? 2 : 1;
    lines.push_back({bytes.substr(start, end - start), bytes.substr(end, ending_size), start});
    start = end + ending_size;
  }
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
