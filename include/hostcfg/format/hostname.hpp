#pragma once
/// @file
/// Hostname validation for names hostcfg writes into a hosts file (RFC 1123, RELIABILITY H2).
/// Names are refused, never repaired: stripping a newline or a `#` out of a name is how CRLF
/// injection reached root-written hosts blocks in other tools (txeh PR #90, portless PR #308).
///
/// Accepted: labels of 1-63 bytes of `[a-z0-9-]`, not starting or ending with `-`, joined by
/// single dots, at most 253 bytes in total; internationalised names only as `xn--` A-labels.
/// Upper case is refused (with the lower-case spelling as the hint) rather than folded, so what
/// the caller asked for is exactly what lands in the file and in the record.

#include <cstddef>
#include <string>
#include <string_view>

#include "hostcfg/error.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// Longest hostname accepted (RFC 1123 / RFC 1035 presentation form without the final dot).
inline constexpr std::size_t max_hostname_length = 253;
/// Longest label accepted.
inline constexpr std::size_t max_label_length = 63;

namespace detail {

/// Renders untrusted bytes for an error message: printable ASCII as is, everything else escaped
/// (`\n`, `\r`, `\t`, `\0`, `\xNN`), and cut after `limit` bytes, so a message never carries a
/// raw newline or NUL into a log or a terminal.
inline std::string printable(std::string_view value, std::size_t limit = 80) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(value.size() < limit ? value.size() + 2 : limit + 5);
  std::size_t n = 0;
  for (char ch : value) {
    if (n++ == limit) {
      out += "...";
      break;
    }
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\0': out += "\\0"; break;
      case '\\': out += "\\\\"; break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out += static_cast<char>(c);
        } else {
          out += "\\x";
          out += digits[c >> 4];
          out += digits[c & 15];
        }
    }
  }
  return out;
}

/// Names the hazard of a byte that must never appear in a hosts field, or nullptr when the byte
/// is merely not allowed in this field. Shared by the hostname and the address checks so both
/// name the same hazards the same way.
inline const char* hazard_name(unsigned char c) {
  switch (c) {
    case '\n': return "a newline (\\n)";
    case '\r': return "a carriage return (\\r)";
    case '\0': return "a NUL byte";
    case '#': return "'#' (starts a comment in a hosts file)";
    case ' ': return "a space";
    case '\t': return "a tab";
    case '\v': return "a vertical tab";
    case '\f': return "a form feed";
    default: break;
  }
  if (c >= 0x80) return "a non-ASCII byte (internationalised names must be written as xn-- A-labels)";
  if (c < 0x20 || c == 0x7f) return "a control character";
  return nullptr;
}

/// "'<field>' <value>": the error's path part names the field and shows the value escaped.
inline std::string field_subject(std::string_view field, std::string_view value) {
  return std::string(field) + " '" + printable(value) + "'";
}

inline bool is_ascii_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

}  // namespace detail

/// ASCII lower-casing (hosts files compare names case-insensitively, in ASCII only).
inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

/// True when `a` and `b` are equal ignoring ASCII case (the resolver's name comparison).
inline bool iequals_ascii(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

/// Checks that `name` is a hostname hostcfg may write. `field` names the input in the error
/// ("name", "names[2]", ...). Example: `validate_hostname("kubernetes.docker.internal")` is ok;
/// `validate_hostname("a\nb")` fails with "validate name 'a\nb': contains a newline (\n) at byte 1".
inline result<void> validate_hostname(std::string_view name, std::string_view field = "name") {
  const std::string op = "validate hostname";
  auto bad = [&](std::string reason, std::string hint = {}) {
    return fail(errc::invalid_input, op, detail::field_subject(field, name), std::move(reason), std::move(hint));
  };
  if (name.empty()) return bad("is empty");
  // Hazards first, so "contains a newline" wins over a less useful "label too long".
  for (std::size_t i = 0; i < name.size(); ++i) {
    auto c = static_cast<unsigned char>(name[i]);
    if (const char* hazard = detail::hazard_name(c))
      return bad(std::string("contains ") + hazard + " at byte " + std::to_string(i));
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c >= 'A' && c <= 'Z')
      return bad("contains upper case at byte " + std::to_string(i),
                 "write it in lower case: '" + ascii_lower(name) + "'");
  }
  if (name.size() > max_hostname_length)
    return bad("is " + std::to_string(name.size()) + " bytes long; at most " + std::to_string(max_hostname_length) +
               " are allowed");
  if (name.back() == '.') return bad("ends with a dot", "write the name without the final dot");
  std::size_t start = 0;
  std::size_t label_index = 0;
  std::string_view last_label;
  while (start <= name.size()) {
    std::size_t dot = name.find('.', start);
    if (dot == std::string_view::npos) dot = name.size();
    std::string_view label = name.substr(start, dot - start);
    std::string where = "label " + std::to_string(label_index + 1) + " '" + detail::printable(label) + "'";
    if (label.empty()) return bad(start == 0 ? "starts with a dot" : "has an empty label (two dots in a row)");
    if (label.size() > max_label_length)
      return bad(where + " is " + std::to_string(label.size()) + " bytes long; at most " +
                 std::to_string(max_label_length) + " are allowed");
    if (label.front() == '-') return bad(where + " starts with a hyphen");
    if (label.back() == '-') return bad(where + " ends with a hyphen");
    for (char c : label)
      if (!detail::is_ascii_lower_alnum(c) && c != '-')
        return bad(where + " contains '" + detail::printable(std::string_view(&c, 1)) +
                   "'; only letters, digits and '-' are allowed");
    last_label = label;
    ++label_index;
    start = dot + 1;
  }
  // A name whose last label is all digits reads as an address to people and to some resolvers
  // (inet_aton accepts "127.1"); refusing it keeps "address" and "name" fields distinct.
  bool all_digits = true;
  for (char c : last_label) all_digits = all_digits && c >= '0' && c <= '9';
  if (all_digits) return bad("its last label is all digits, so it reads as an address");
  return {};
}

HOSTCFG_END_NAMESPACE
