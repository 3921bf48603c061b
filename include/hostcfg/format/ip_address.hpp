#pragma once
/// @file
/// IP addresses for hosts entries (RELIABILITY H3). Input is accepted only in canonical form, the
/// text `inet_ntop` would print: IPv4 as a dotted quad without leading zeros, IPv6 as RFC 5952
/// (lower-case hex, no leading zeros in a group, the longest run of zero groups as `::`). So
/// `010.0.0.1` (octal to inet_aton), `127.1`, `0x7f.0.0.1`, `::FFFF:7f00:1` and `fe80::1%en0` are all
/// refused, each with the reason and, when there is one, the canonical spelling as the hint.
/// Formatting is written out here (no <arpa/inet.h>) so the codec stays pure and portable; the
/// tests compare it with the platform's inet_ntop.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "hostcfg/error.hpp"
#include "hostcfg/format/hostname.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// The address family, which the resolver uses to pick "first matching line wins" per family.
enum class address_family { ipv4, ipv6 };

/// "IPv4" / "IPv6".
inline const char* address_family_name(address_family f) { return f == address_family::ipv4 ? "IPv4" : "IPv6"; }

/// A parsed address: family and network-order bytes (4 used for IPv4, 16 for IPv6).
struct ip_address {
  address_family family = address_family::ipv4;
  std::array<std::uint8_t, 16> bytes{};

  /// Same family and same bytes.
  friend bool operator==(const ip_address& a, const ip_address& b) {
    return a.family == b.family && a.bytes == b.bytes;
  }
  friend bool operator!=(const ip_address& a, const ip_address& b) { return !(a == b); }
};

namespace detail {

inline int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// inet_pton(AF_INET) rules: exactly four decimal parts 0-255, no leading zeros.
inline bool parse_ipv4_bytes(std::string_view s, std::uint8_t* out) {
  std::size_t part = 0, i = 0;
  while (part < 4) {
    std::size_t start = i;
    unsigned value = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - start < 4) value = value * 10 + unsigned(s[i++] - '0');
    std::size_t len = i - start;
    if (len == 0 || len > 3 || value > 255 || (len > 1 && s[start] == '0')) return false;
    out[part++] = static_cast<std::uint8_t>(value);
    if (part < 4) {
      if (i >= s.size() || s[i] != '.') return false;
      ++i;
    }
  }
  return i == s.size();
}

/// inet_pton(AF_INET6) rules: hex groups of 1-4 digits, one `::`, an optional final dotted quad.
inline bool parse_ipv6_bytes(std::string_view s, std::uint8_t* out) {
  std::uint8_t tmp[16] = {};
  std::size_t n = 0;                   // bytes written
  std::optional<std::size_t> gap;      // where `::` stands
  std::size_t i = 0;
  if (s.size() >= 2 && s[0] == ':' && s[1] == ':') {
    gap = 0;
    i = 2;
    if (i == s.size()) {
      for (int k = 0; k < 16; ++k) out[k] = 0;
      return true;
    }
  } else if (!s.empty() && s[0] == ':') {
    return false;
  }
  while (i < s.size()) {
    std::size_t start = i;
    unsigned value = 0;
    while (i < s.size() && hex_digit(s[i]) >= 0 && i - start < 5) value = value * 16 + unsigned(hex_digit(s[i++]));
    std::size_t len = i - start;
    if (i < s.size() && s[i] == '.') {
      // Embedded IPv4 in the last 32 bits.
      if (n + 4 > 16 || !parse_ipv4_bytes(s.substr(start), tmp + n)) return false;
      n += 4;
      i = s.size();
      break;
    }
    if (len == 0 || len > 4 || n + 2 > 16) return false;
    tmp[n++] = static_cast<std::uint8_t>(value >> 8);
    tmp[n++] = static_cast<std::uint8_t>(value & 0xff);
    if (i == s.size()) break;
    if (s[i] != ':') return false;
    ++i;
    if (i < s.size() && s[i] == ':') {
      if (gap) return false;
      gap = n;
      ++i;
      if (i == s.size()) break;
    } else if (i == s.size()) {
      return false;  // a single trailing ':'
    }
  }
  if (gap) {
    if (n == 16) return false;  // `::` must stand for at least one group
    std::size_t tail = n - *gap;
    for (std::size_t k = 0; k < 16; ++k) out[k] = 0;
    for (std::size_t k = 0; k < *gap; ++k) out[k] = tmp[k];
    for (std::size_t k = 0; k < tail; ++k) out[16 - tail + k] = tmp[*gap + k];
    return true;
  }
  if (n != 16) return false;
  for (std::size_t k = 0; k < 16; ++k) out[k] = tmp[k];
  return true;
}

}  // namespace detail

/// Reads an address the way the resolver reads the first field of a hosts line (inet_pton rules,
/// not only canonical text; no zone id). nullopt when it is not an address.
inline std::optional<ip_address> read_ip_address(std::string_view text) {
  ip_address a;
  if (text.find(':') == std::string_view::npos) {
    if (!detail::parse_ipv4_bytes(text, a.bytes.data())) return std::nullopt;
    a.family = address_family::ipv4;
    return a;
  }
  if (!detail::parse_ipv6_bytes(text, a.bytes.data())) return std::nullopt;
  a.family = address_family::ipv6;
  return a;
}

/// The canonical text of `a`, exactly as glibc's inet_ntop prints it (RFC 5952; IPv4-mapped and
/// IPv4-compatible addresses keep a dotted-quad tail).
inline std::string to_string(const ip_address& a) {
  std::string out;
  auto append_v4 = [&out](const std::uint8_t* b) {
    for (int k = 0; k < 4; ++k) {
      if (k) out += '.';
      out += std::to_string(b[k]);
    }
  };
  if (a.family == address_family::ipv4) {
    append_v4(a.bytes.data());
    return out;
  }
  unsigned words[8];
  for (int k = 0; k < 8; ++k) words[k] = unsigned(a.bytes[2 * k]) << 8 | a.bytes[2 * k + 1];
  int best_base = -1, best_len = 0, cur_base = -1, cur_len = 0;
  for (int k = 0; k < 8; ++k) {
    if (words[k] == 0) {
      if (cur_base < 0) cur_base = k, cur_len = 1;
      else ++cur_len;
    } else if (cur_base >= 0) {
      if (best_base < 0 || cur_len > best_len) best_base = cur_base, best_len = cur_len;
      cur_base = -1;
    }
  }
  if (cur_base >= 0 && (best_base < 0 || cur_len > best_len)) best_base = cur_base, best_len = cur_len;
  if (best_base >= 0 && best_len < 2) best_base = -1;
  static const char digits[] = "0123456789abcdef";
  for (int k = 0; k < 8; ++k) {
    if (best_base >= 0 && k >= best_base && k < best_base + best_len) {
      if (k == best_base) out += ':';
      continue;
    }
    if (k) out += ':';
    if (k == 6 && best_base == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xffff))) {
      append_v4(a.bytes.data() + 12);
      break;
    }
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
      unsigned d = (words[k] >> shift) & 15;
      if (d || started || shift == 0) {
        out += digits[d];
        started = true;
      }
    }
  }
  if (best_base >= 0 && best_base + best_len == 8) out += ':';
  return out;
}

/// Parses an address given as input (a HostsEntry's address): canonical text only, no zone id,
/// no IPv4-mapped or IPv4-compatible IPv6 forms (write the IPv4 address instead). `field` names
/// the input in the error. Example: `parse_ip_address("127.0.0.1")` is ok; `parse_ip_address("127.1")`
/// fails with "validate address 'address' '127.1': has 2 parts; an IPv4 address has four".
inline result<ip_address> parse_ip_address(std::string_view text, std::string_view field = "address") {
  const std::string op = "validate address";
  auto bad = [&](std::string reason, std::string hint = {}) {
    return fail(errc::invalid_input, op, detail::field_subject(field, text), std::move(reason), std::move(hint));
  };
  if (text.empty()) return bad("is empty");
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (const char* hazard = detail::hazard_name(c))
      return bad(std::string("contains ") + hazard + " at byte " + std::to_string(i));
  }
  if (text.find('%') != std::string_view::npos)
    return bad("has a zone id ('%...'); a hosts entry cannot carry an interface scope portably",
               "use an address without a zone, e.g. ::1");
  if (text.front() == '[') return bad("is in brackets", "write the address without [ ]");
  bool v6 = text.find(':') != std::string_view::npos;
  if (!v6) {
    if (text.size() > 1 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X'))
      return bad("is written in hexadecimal", "write it as a dotted quad such as 127.0.0.1");
    std::size_t parts = 1;
    for (char c : text) parts += c == '.';
    for (char c : text)
      if (!(c >= '0' && c <= '9') && c != '.')
        return bad("contains '" + detail::printable(std::string_view(&c, 1)) +
                   "'; an IPv4 address is four decimal numbers joined by dots");
    if (parts != 4)
      return bad("has " + std::to_string(parts) + " part" + (parts == 1 ? "" : "s") + "; an IPv4 address has four",
                 "write all four parts, e.g. 127.0.0.1");
    std::size_t start = 0;
    for (std::size_t p = 0; p < 4; ++p) {
      std::size_t dot = text.find('.', start);
      if (dot == std::string_view::npos) dot = text.size();
      std::string_view octet = text.substr(start, dot - start);
      if (octet.empty()) return bad("has an empty part");
      if (octet.size() > 1 && octet[0] == '0')
        return bad("part '" + std::string(octet) + "' has a leading zero (read as octal by inet_aton)",
                   "write it without leading zeros");
      unsigned value = 0;
      for (char c : octet.substr(0, 4)) value = value * 10 + unsigned(c - '0');
      if (octet.size() > 3 || value > 255)
        return bad("part '" + std::string(octet) + "' is larger than 255");
      start = dot + 1;
    }
  }
  auto parsed = read_ip_address(text);
  if (!parsed) return bad(v6 ? "is not an IPv6 address" : "is not an IPv4 address");
  if (parsed->family == address_family::ipv6) {
    const auto& b = parsed->bytes;
    bool first80_zero = true;
    for (int k = 0; k < 10; ++k) first80_zero = first80_zero && b[k] == 0;
    if (first80_zero && b[10] == 0xff && b[11] == 0xff) {
      ip_address v4;
      for (int k = 0; k < 4; ++k) v4.bytes[k] = b[12 + k];
      return bad("is an IPv4-mapped IPv6 address; hosts files list IPv4 addresses as IPv4",
                 "write '" + to_string(v4) + "'");
    }
    bool first96_zero = first80_zero && b[10] == 0 && b[11] == 0;
    bool low_nonzero = b[12] || b[13];  // ::1 and :: are fine; ::a.b.c.d (deprecated) is not
    if (first96_zero && low_nonzero)
      return bad("is a deprecated IPv4-compatible IPv6 address (RFC 4291)", "write an IPv4 or a real IPv6 address");
  }
  std::string canonical = to_string(*parsed);
  if (canonical != text) return bad("is not in canonical form", "write it as '" + canonical + "'");
  return *parsed;
}

HOSTCFG_END_NAMESPACE
