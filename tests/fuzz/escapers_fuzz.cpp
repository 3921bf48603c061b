// libFuzzer target for every escaper and validator that puts untrusted text into another
// language (RELIABILITY H2, H3, R1, L1; promise 10). Each asserts its round trip or its refusal:
//  - posix_single_quote / quote_literal(posix|zsh): a POSIX shell word reader gets the bytes back.
//  - quote_literal(fish): fish's single-quote rules (\' and \\ are escapes) give the bytes back.
//  - quote_literal(csh): csh reads the bytes back, no '!' inside single quotes (history
//    expansion happens there too), no newline; text with control bytes is refused by
//    check_shell_text, text without them is accepted.
//  - applescript_string: one string literal, no raw quote or line break inside, decodes back.
//  - plist XML: a string value and a dict key are written and read back identically, or refused
//    exactly when they are not UTF-8 or hold a character outside XML 1.0's Char production.
//  - validate_hostname accepts only RFC 1123 lower-case names; an accepted name is one field of a
//    hosts line. parse_ip_address accepts only text equal to inet_ntop's canonical form.
// clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Itests tests/fuzz/escapers_fuzz.cpp
#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "hostcfg/backend/command_privilege.hpp"
#include "hostcfg/format/hostname.hpp"
#include "hostcfg/format/hosts.hpp"
#include "hostcfg/format/ip_address.hpp"
#include "hostcfg/format/plist.hpp"
#include "hostcfg/format/plist_xml.hpp"
#include "hostcfg/format/shell_dialect.hpp"
#include "support/fuzz_check.hpp"

namespace {

// Aborts (a libFuzzer crash) naming the invariant's line (support/fuzz_check.hpp).
#define check(ok) HOSTCFG_FUZZ_CHECK(ok)

// A POSIX shell word made of '...' segments and \x escapes (what the quoters emit); nullopt when
// the word holds anything a shell would treat specially outside quotes.
std::optional<std::string> read_posix_word(std::string_view w) {
  std::string out;
  std::size_t i = 0;
  while (i < w.size()) {
    if (w[i] == '\'') {
      std::size_t close = w.find('\'', i + 1);
      if (close == std::string_view::npos) return std::nullopt;
      out.append(w.substr(i + 1, close - i - 1));
      i = close + 1;
    } else if (w[i] == '\\' && i + 1 < w.size()) {
      out += w[i + 1];
      i += 2;
    } else {
      return std::nullopt;
    }
  }
  return out;
}

// fish: inside '...' only \' and \\ are escapes; nothing may stand outside the quotes.
std::optional<std::string> read_fish_word(std::string_view w) {
  if (w.size() < 2 || w.front() != '\'' || w.back() != '\'') return std::nullopt;
  std::string out;
  for (std::size_t i = 1; i + 1 < w.size(); ++i) {
    char c = w[i];
    if (c == '\\' && i + 2 < w.size() && (w[i + 1] == '\'' || w[i + 1] == '\\')) {
      out += w[++i];
    } else if (c == '\'') {
      return std::nullopt;  // an unescaped quote would end the string early
    } else {
      out += c;
    }
  }
  return out;
}

// csh/tcsh: '...' segments (no raw '!' and no newline inside), "..." segments holding only text
// without $ ` ! and newline, and \x outside quotes.
std::optional<std::string> read_csh_word(std::string_view w) {
  std::string out;
  std::size_t i = 0;
  while (i < w.size()) {
    char q = w[i];
    if (q == '\'' || q == '"') {
      std::size_t close = w.find(q, i + 1);
      if (close == std::string_view::npos) return std::nullopt;
      std::string_view inner = w.substr(i + 1, close - i - 1);
      if (q == '"') {
        if (inner.find_first_of(std::string_view("!\n$`", 4)) != std::string_view::npos) return std::nullopt;
        out.append(inner);
      } else {
        // Inside '...' csh still expands history: a raw '!' is unsafe, "\!" reads as '!' (checked
        // with tcsh: echo 'a\!b' prints a!b, echo '\\!x' prints \!x); other backslashes are literal.
        for (std::size_t k = 0; k < inner.size(); ++k) {
          if (inner[k] == '!' || inner[k] == '\n') return std::nullopt;
          if (inner[k] == '\\' && k + 1 < inner.size() && inner[k + 1] == '!') {
            out += '!';
            ++k;
          } else {
            out += inner[k];
          }
        }
      }
      i = close + 1;
    } else if (q == '\\' && i + 1 < w.size() && w[i + 1] != '\n') {
      out += w[i + 1];
      i += 2;
    } else {
      return std::nullopt;
    }
  }
  return out;
}

std::optional<std::string> read_applescript(std::string_view w) {
  if (w.size() < 2 || w.front() != '"' || w.back() != '"') return std::nullopt;
  std::string out;
  for (std::size_t i = 1; i + 1 < w.size(); ++i) {
    char c = w[i];
    if (c == '"' || c == '\n' || c == '\r') return std::nullopt;
    if (c != '\\') {
      out += c;
      continue;
    }
    if (i + 2 >= w.size()) return std::nullopt;  // a backslash escaping the closing quote
    char e = w[++i];
    switch (e) {
      case '\\': out += '\\'; break;
      case '"': out += '"'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      default: return std::nullopt;
    }
  }
  return out;
}

bool has_control(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

// Well-formed UTF-8 made only of XML 1.0 Chars (an independent check of the writer's refusal).
bool xml_representable(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    long cp = hostcfg::detail::plist_utf8_next(s, i);
    if (cp < 0) return false;
    bool ok = cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
              (cp >= 0x10000 && cp <= 0x10FFFF);
    if (!ok) return false;
  }
  return true;
}

bool rfc1123_lower(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = name.find('.', start);
    std::string_view label = name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostcfg;
  std::string_view text(reinterpret_cast<const char*>(data), size);

  // POSIX single quotes (elevation commands).
  check(read_posix_word(posix_single_quote(text)) == std::optional<std::string>(std::string(text)));

  // Shell profile quoting per dialect: accepted exactly when there is no control byte.
  bool accepted = check_shell_text(text, "directory").has_value();
  check(accepted == !has_control(text));
  if (accepted) {
    check(read_posix_word(quote_literal(shell_dialect::posix, text)) == std::optional<std::string>(std::string(text)));
    check(read_posix_word(quote_literal(shell_dialect::zsh, text)) == std::optional<std::string>(std::string(text)));
    check(read_fish_word(quote_literal(shell_dialect::fish, text)) == std::optional<std::string>(std::string(text)));
    check(read_csh_word(quote_literal(shell_dialect::csh, text)) == std::optional<std::string>(std::string(text)));
  }

  // AppleScript string literal (osascript elevation).
  check(read_applescript(applescript_string(text)) == std::optional<std::string>(std::string(text)));

  // Plist XML: a string value and a dict key.
  {
    bool representable = xml_representable(text);
    auto as_value = write_plist_xml(plist_value(std::string(text)));
    check(as_value.has_value() == representable);
    if (as_value) {
      auto back = read_plist_xml(*as_value);
      check(back.has_value() && back->as_string() && *back->as_string() == text);
    } else {
      check(as_value.error().is(errc::invalid_input));
    }
    plist_dict d;
    d.set(std::string(text), plist_value(std::string("v")));
    auto as_key = write_plist_xml(plist_value(d));
    check(as_key.has_value() == representable);
    if (as_key) {
      auto back = read_plist_xml(*as_key);
      check(back.has_value() && plist_equal(*back, plist_value(d)));
    }
  }

  // Hostnames: only RFC 1123 lower-case names, and an accepted one is exactly one hosts field.
  bool name_ok = validate_hostname(text).has_value();
  // Exactly the RFC 1123 lower-case names whose last label is not all digits (such a name reads
  // as an address: inet_aton accepts "127.1").
  std::string_view last_label = text.substr(text.rfind('.') == std::string_view::npos ? 0 : text.rfind('.') + 1);
  bool numeric_tail = !last_label.empty() && last_label.find_first_not_of("0123456789") == std::string_view::npos;
  check(name_ok == (rfc1123_lower(text) && !numeric_tail));
  if (name_ok) {
    check(rfc1123_lower(text));
    auto m = make_hosts_mapping("127.0.0.1", text);
    check(m.has_value());
    std::string line = "127.0.0.1\t" + std::string(text) + "\n";
    hosts_file f = parse_hosts(line);
    check(f.lines.size() == 1 && f.lines[0].kind == hosts_line_kind::entry);
    auto names = f.names_of(f.lines[0]);
    check(names.size() == 1 && names[0] == text);
  }

  // Addresses: only inet_ntop's canonical text is accepted.
  if (auto a = parse_ip_address(text)) {
    std::string s(text);
    char buf[INET6_ADDRSTRLEN] = {};
    unsigned char raw[16] = {};
    int af = a->family == address_family::ipv4 ? AF_INET : AF_INET6;
    check(::inet_pton(af, s.c_str(), raw) == 1);
    check(::inet_ntop(af, raw, buf, sizeof buf) != nullptr);
    check(s == buf);
    check(to_string(*a) == s);
  }
  return 0;
}
