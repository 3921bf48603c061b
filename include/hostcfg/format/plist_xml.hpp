#pragma once
/// @file
/// XML property lists: a writer that produces what Apple's tools (and Python's `plistlib`) write,
/// and a reader for what `plutil` writes and people hand-write.
///
/// Writer output, byte for byte:
///
///     <?xml version="1.0" encoding="UTF-8"?>
///     <!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
///     <plist version="1.0">
///     <dict>
///     	<key>Label</key>
///     	<string>com.docker.vmnetd</string>
///     </dict>
///     </plist>
///
/// TAB indentation, keys in the order given, `<true/>`, `<dict/>`/`<array/>` when empty, dates as
/// ISO-8601 with Z, data as base64 wrapped like `plistlib` (76 columns minus the indentation),
/// `& < >` escaped (a CR as `&#13;` so it survives XML's line-end normalization), a final newline.
/// Characters XML 1.0 cannot carry (C0 controls except TAB/LF/CR, U+FFFE/U+FFFF, invalid UTF-8) are
/// refused with the key path that holds them, never written.
///
/// Reader: BOM, XML declaration, both Apple DOCTYPE spellings, comments anywhere between elements
/// and inside text, CDATA, the five entities and numeric character references, `<dict/>`,
/// `<true />`, odd whitespace, no final newline. Refuses DOCTYPE internal subsets (entity
/// expansion), duplicate keys, nesting deeper than `max_depth`, inputs larger than `max_bytes`.
/// Errors carry the line number.

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "hostcfg/error.hpp"
#include "hostcfg/format/plist.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// Bounds and naming for the plist readers.
struct plist_read_options {
  std::size_t max_bytes = 16u << 20;  ///< larger inputs are `errc::too_large`
  std::size_t max_depth = 64;         ///< nesting of arrays/dicts deeper than this is refused
  /// Upper bound on values materialized (binary plists can share objects, so a small file can
  /// describe a huge tree); counts nodes plus string/data bytes.
  std::size_t max_nodes = 1u << 20;
  std::string source;  ///< file name shown in error messages (may be empty)
};

namespace detail {

// Decodes one UTF-8 sequence at `s[i]`; returns the code point and advances `i`, or -1 when the
// bytes are not well-formed UTF-8 (overlong, surrogate, truncated, > U+10FFFF).
inline long plist_utf8_next(std::string_view s, std::size_t& i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  if (c < 0x80) {
    ++i;
    return c;
  }
  std::size_t len;
  long cp;
  long min;
  if ((c & 0xE0) == 0xC0) {
    len = 2, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return -1;
  }
  if (i + len > s.size()) return -1;
  for (std::size_t k = 1; k < len; ++k) {
    unsigned char cc = byte(i + k);
    if ((cc & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  i += len;
  return cp;
}

// XML 1.0 `Char` production.
inline bool plist_xml_char(long cp) {
  return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
         (cp >= 0x10000 && cp <= 0x10FFFF);
}

inline void plist_append_utf8(std::string& out, long cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Escapes text for element content; refuses what XML 1.0 cannot carry, naming the key path.
inline result<void> plist_escape_into(std::string& out, std::string_view text, const std::string& where) {
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t start = i;
    long cp = plist_utf8_next(text, i);
    if (cp < 0)
      return fail(errc::invalid_input, "write plist", where.empty() ? std::string("(root)") : where,
                  "not valid UTF-8 at byte " + std::to_string(start), "pass UTF-8 text");
    if (!plist_xml_char(cp)) {
      char buf[24];
      std::snprintf(buf, sizeof buf, "U+%04lX", static_cast<unsigned long>(cp));
      return fail(errc::invalid_input, "write plist", where.empty() ? std::string("(root)") : where,
                  std::string("character ") + buf + " at byte " + std::to_string(start) +
                      " cannot be represented in XML 1.0",
                  "remove control characters from the value");
    }
    switch (cp) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\r': out += "&#13;"; break;  // a raw CR would read back as LF
      default: out.append(text.data() + start, i - start);
    }
  }
  return {};
}

inline constexpr char plist_b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

inline std::string plist_base64(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t n = (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16) |
                      (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8) |
                      static_cast<unsigned char>(bytes[i + 2]);
    out += plist_b64_alphabet[(n >> 18) & 63];
    out += plist_b64_alphabet[(n >> 12) & 63];
    out += plist_b64_alphabet[(n >> 6) & 63];
    out += plist_b64_alphabet[n & 63];
  }
  std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t n = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) n |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += plist_b64_alphabet[(n >> 18) & 63];
    out += plist_b64_alphabet[(n >> 12) & 63];
    out += rest == 2 ? plist_b64_alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Python's repr() of a float: shortest round-trip digits, exponent form below 1e-4 or from 1e16.
inline std::string plist_real_text(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // e.g. "-1.2345e+17"
  bool neg = !sci.empty() && sci[0] == '-';
  std::string body = neg ? sci.substr(1) : sci;
  std::size_t e = body.find('e');
  std::string mant = body.substr(0, e);
  int exp = std::atoi(body.c_str() + e + 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out;
  if (exp < -4 || exp >= 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    out += eb;
  } else if (exp < 0) {
    out = "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
  } else {
    auto int_len = static_cast<std::size_t>(exp) + 1;
    if (digits.size() <= int_len) {
      out = digits + std::string(int_len - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, int_len) + "." + digits.substr(int_len);
    }
  }
  return neg ? "-" + out : out;
}

inline result<void> plist_write_value(std::string& out, const plist_value& v, std::size_t level,
                                      const std::string& where) {
  std::string indent(level, '\t');
  switch (v.type()) {
    case plist_type::string:
      out += indent + "<string>";
      if (auto ok = plist_escape_into(out, *v.as_string(), where); !ok) return ok;
      out += "</string>\n";
      return {};
    case plist_type::integer: out += indent + "<integer>" + v.as_integer()->to_string() + "</integer>\n"; return {};
    case plist_type::real: out += indent + "<real>" + plist_real_text(*v.as_real()) + "</real>\n"; return {};
    case plist_type::boolean: out += indent + (*v.as_bool() ? "<true/>\n" : "<false/>\n"); return {};
    case plist_type::date: {
      auto text = plist_date_to_iso(*v.as_date());
      if (!text) {
        auto e = text.error();
        e.path = where.empty() ? std::string("(root)") : where;
        return tl::unexpected(e);
      }
      out += indent + "<date>" + *text + "</date>\n";
      return {};
    }
    case plist_type::data: {
      // Same wrapping as plistlib: 76 columns minus the indentation (a TAB counts 8).
      std::size_t width = 76 > 8 * level + 16 ? 76 - 8 * level : 16;
      std::size_t chunk = width / 4 * 3;
      const std::string& bytes = v.as_data()->bytes;
      out += indent + "<data>\n";
      for (std::size_t i = 0; i < bytes.size(); i += chunk)
        out += indent + plist_base64(std::string_view(bytes).substr(i, chunk)) + "\n";
      out += indent + "</data>\n";
      return {};
    }
    case plist_type::array: {
      const auto& items = v.as_array()->items;
      if (items.empty()) {
        out += indent + "<array/>\n";
        return {};
      }
      out += indent + "<array>\n";
      for (std::size_t i = 0; i < items.size(); ++i)
        if (auto ok = plist_write_value(out, items[i], level + 1, plist_path_index(where, i)); !ok) return ok;
      out += indent + "</array>\n";
      return {};
    }
    case plist_type::dict: {
      const auto& entries = v.as_dict()->entries;
      if (entries.empty()) {
        out += indent + "<dict/>\n";
        return {};
      }
      out += indent + "<dict>\n";
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto& e = entries[i];
        std::string path = plist_path_key(where, e.key);
        for (std::size_t j = 0; j < i; ++j)
          if (entries[j].key == e.key)
            return fail(errc::invalid_input, "write plist", path, "duplicate key", "a dict holds each key once");
        out += indent + "\t<key>";
        if (auto ok = plist_escape_into(out, e.key, path); !ok) return ok;
        out += "</key>\n";
        if (auto ok = plist_write_value(out, e.value, level + 1, path); !ok) return ok;
      }
      out += indent + "</dict>\n";
      return {};
    }
  }
  return {};
}

}  // namespace detail

/// The XML declaration and Apple's DOCTYPE, as every written plist starts.
inline constexpr std::string_view plist_xml_header =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"
    "<plist version=\"1.0\">\n";

/// Writes `value` as an XML plist, exactly as Apple's tools and `plistlib` do. Fails (writing
/// nothing) on text XML cannot carry, naming the key path: "write plist ProgramArguments[1]:
/// character U+0001 at byte 3 cannot be represented in XML 1.0".
inline result<std::string> write_plist_xml(const plist_value& value) {
  std::string out(plist_xml_header);
  if (auto ok = detail::plist_write_value(out, value, 0, {}); !ok) return tl::unexpected(ok.error());
  out += "</plist>\n";
  return out;
}

namespace detail {

// A recursive-descent reader over the bytes of an XML plist.
class plist_xml_reader {
 public:
  plist_xml_reader(std::string_view in, const plist_read_options& opt) : in_(in), opt_(opt) {}

  result<plist_value> run() {
    if (in_.size() > opt_.max_bytes)
      return fail(errc::too_large, "parse plist", opt_.source,
                  "larger than " + std::to_string(opt_.max_bytes) + " bytes");
    if (in_.size() >= 2 && ((in_[0] == '\xFE' && in_[1] == '\xFF') || (in_[0] == '\xFF' && in_[1] == '\xFE')))
      return err("UTF-16 XML plists are not supported", "convert it with `plutil -convert xml1`");
    if (in_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3;
    // Validate the whole input once: every later step can then assume well-formed UTF-8.
    for (std::size_t i = pos_; i < in_.size();) {
      std::size_t at = i;
      long cp = plist_utf8_next(in_, i);
      if (cp < 0 || !plist_xml_char(cp)) {
        pos_ = at;
        return err(cp < 0 ? "not valid UTF-8" : "character not allowed in XML 1.0");
      }
    }
    // Prolog: declaration, comments, processing instructions, DOCTYPE.
    for (;;) {
      skip_space();
      if (starts("<?")) {
        if (auto ok = skip_past("?>", "processing instruction"); !ok) return tl::unexpected(ok.error());
      } else if (starts("<!--")) {
        if (auto ok = skip_comment(); !ok) return tl::unexpected(ok.error());
      } else if (starts("<!DOCTYPE")) {
        std::size_t end = in_.find('>', pos_);
        std::size_t bracket = in_.find('[', pos_);
        if (end == std::string_view::npos) return err("unterminated DOCTYPE");
        if (bracket != std::string_view::npos && bracket < end)
          return err("DOCTYPE with an internal subset is refused (entity definitions)");
        pos_ = end + 1;
      } else {
        break;
      }
    }
    tag t;
    if (auto ok = read_tag(t); !ok) return tl::unexpected(ok.error());
    plist_value root;
    if (t.name == "plist" && !t.closing) {
      if (t.empty) return err("empty <plist/>: no value");
      auto v = read_value_after_skip(1);
      if (!v) return v;
      root = std::move(*v);
      tag close;
      if (auto ok = read_tag(close); !ok) return tl::unexpected(ok.error());
      if (!close.closing || close.name != "plist") return err("expected </plist>, found <" + close.describe() + ">");
    } else {
      // plistlib and CF also accept a bare value as the root element.
      auto v = read_value(t, 1);
      if (!v) return v;
      root = std::move(*v);
    }
    for (;;) {
      skip_space();
      if (pos_ >= in_.size()) break;
      if (starts("<!--")) {
        if (auto ok = skip_comment(); !ok) return tl::unexpected(ok.error());
      } else if (starts("<?")) {
        if (auto ok = skip_past("?>", "processing instruction"); !ok) return tl::unexpected(ok.error());
      } else {
        return err("content after the end of the plist");
      }
    }
    return root;
  }

 private:
  struct tag {
    std::string name;
    bool closing = false;
    bool empty = false;  // <name/>
    std::string describe() const { return (closing ? "/" : "") + name + (empty ? "/" : ""); }
  };

  std::size_t line_at(std::size_t p) const {
    std::size_t line = 1;
    for (std::size_t i = 0; i < p && i < in_.size(); ++i)
      if (in_[i] == '\n') ++line;
    return line;
  }
  tl::unexpected<error> err(const std::string& what, std::string hint = {}) const {
    return fail(errc::invalid_input, "parse plist", opt_.source, "line " + std::to_string(line_at(pos_)) + ": " + what,
                std::move(hint));
  }
  bool starts(std::string_view s) const { return in_.substr(pos_, s.size()) == s; }
  static bool space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
  void skip_space() {
    while (pos_ < in_.size() && space(in_[pos_])) ++pos_;
  }
  result<void> skip_past(std::string_view end, const char* what) {
    std::size_t at = in_.find(end, pos_);
    if (at == std::string_view::npos) return err(std::string("unterminated ") + what);
    pos_ = at + end.size();
    return {};
  }
  result<void> skip_comment() {
    pos_ += 4;
    return skip_past("-->", "comment");
  }
  // Skips whitespace, comments and processing instructions between elements.
  result<void> skip_misc() {
    for (;;) {
      skip_space();
      if (starts("<!--")) {
        if (auto ok = skip_comment(); !ok) return ok;
      } else if (starts("<?")) {
        if (auto ok = skip_past("?>", "processing instruction"); !ok) return ok;
      } else {
        return {};
      }
    }
  }

  static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.' || c == ':';
  }

  // Reads the next tag (after skipping whitespace and comments); attributes are parsed and ignored.
  result<void> read_tag(tag& t) {
    if (auto ok = skip_misc(); !ok) return ok;
    if (pos_ >= in_.size()) return err("unexpected end of input");
    if (in_[pos_] != '<') return err("unexpected text outside a value");
    ++pos_;
    t = tag{};
    if (pos_ < in_.size() && in_[pos_] == '/') {
      t.closing = true;
      ++pos_;
    }
    std::size_t start = pos_;
    while (pos_ < in_.size() && name_char(in_[pos_])) ++pos_;
    t.name = std::string(in_.substr(start, pos_ - start));
    if (t.name.empty()) return err("malformed tag");
    for (;;) {
      skip_space();
      if (pos_ >= in_.size()) return err("unterminated tag <" + t.name);
      char c = in_[pos_];
      if (c == '>') {
        ++pos_;
        return {};
      }
      if (c == '/' && !t.closing && pos_ + 1 < in_.size() && in_[pos_ + 1] == '>') {
        t.empty = true;
        pos_ += 2;
        return {};
      }
      if (t.closing || !name_char(c)) return err("malformed tag <" + t.describe() + ">");
      while (pos_ < in_.size() && name_char(in_[pos_])) ++pos_;
      skip_space();
      if (pos_ >= in_.size() || in_[pos_] != '=') return err("malformed attribute in <" + t.name + ">");
      ++pos_;
      skip_space();
      if (pos_ >= in_.size() || (in_[pos_] != '"' && in_[pos_] != '\'')) return err("unquoted attribute in <" + t.name + ">");
      char quote = in_[pos_++];
      std::size_t end = in_.find(quote, pos_);
      if (end == std::string_view::npos) return err("unterminated attribute in <" + t.name + ">");
      pos_ = end + 1;
    }
  }

  // Reads character data up to the closing tag `</name>`: entities, CDATA, comments; XML's
  // line-end normalization (CR LF and lone CR become LF).
  result<std::string> read_text(const std::string& name) {
    std::string out;
    for (;;) {
      if (pos_ >= in_.size()) return err("unterminated <" + name + ">");
      char c = in_[pos_];
      if (c == '<') {
        if (starts("<!--")) {
          if (auto ok = skip_comment(); !ok) return tl::unexpected(ok.error());
          continue;
        }
        if (starts("<![CDATA[")) {
          pos_ += 9;
          std::size_t end = in_.find("]]>", pos_);
          if (end == std::string_view::npos) return err("unterminated CDATA section");
          append_normalized(out, in_.substr(pos_, end - pos_));
          pos_ = end + 3;
          continue;
        }
        if (starts("</")) {
          tag close;
          if (auto ok = read_tag(close); !ok) return tl::unexpected(ok.error());
          if (close.name != name) return err("expected </" + name + ">, found </" + close.name + ">");
          return out;
        }
        return err("unexpected element inside <" + name + ">");
      }
      if (c == '&') {
        auto ok = read_reference(out);
        if (!ok) return tl::unexpected(ok.error());
        continue;
      }
      std::size_t end = in_.find_first_of("<&", pos_);
      if (end == std::string_view::npos) end = in_.size();
      append_normalized(out, in_.substr(pos_, end - pos_));
      pos_ = end;
    }
  }

  static void append_normalized(std::string& out, std::string_view s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\r') {
        out += '\n';
        if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
      } else {
        out += s[i];
      }
    }
  }

  result<void> read_reference(std::string& out) {
    std::size_t end = in_.find(';', pos_);
    if (end == std::string_view::npos || end - pos_ > 12) return err("unterminated entity reference");
    std::string_view ref = in_.substr(pos_ + 1, end - pos_ - 1);
    if (ref == "amp") out += '&';
    else if (ref == "lt") out += '<';
    else if (ref == "gt") out += '>';
    else if (ref == "quot") out += '"';
    else if (ref == "apos") out += '\'';
    else if (ref.size() >= 2 && ref[0] == '#') {
      bool hex = ref[1] == 'x';
      std::string_view digits = ref.substr(hex ? 2 : 1);
      unsigned long cp = 0;
      auto res = std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
      if (digits.empty() || res.ec != std::errc() || res.ptr != digits.data() + digits.size() ||
          !plist_xml_char(static_cast<long>(cp > 0x10FFFF ? 0 : cp)))
        return err("character reference &" + std::string(ref) + "; is not an XML 1.0 character");
      plist_append_utf8(out, static_cast<long>(cp));
    } else {
      return err("unknown entity &" + std::string(ref) + ";", "only &amp; &lt; &gt; &quot; &apos; and &#N; exist in plists");
    }
    pos_ = end + 1;
    return {};
  }

  result<plist_value> read_value_after_skip(std::size_t depth) {
    tag t;
    if (auto ok = read_tag(t); !ok) return tl::unexpected(ok.error());
    return read_value(t, depth);
  }

  static std::string_view trim(std::string_view s) {
    while (!s.empty() && space(s.front())) s.remove_prefix(1);
    while (!s.empty() && space(s.back())) s.remove_suffix(1);
    return s;
  }

  result<plist_value> parse_integer(std::string_view text) {
    std::string_view t = trim(text);
    bool neg = false;
    if (!t.empty() && (t[0] == '-' || t[0] == '+')) {
      neg = t[0] == '-';
      t.remove_prefix(1);
    }
    int base = 10;
    if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
      base = 16;
      t.remove_prefix(2);
    }
    std::uint64_t mag = 0;
    auto res = std::from_chars(t.data(), t.data() + t.size(), mag, base);
    if (t.empty() || res.ptr != t.data() + t.size()) return err("<integer> is not a number: \"" + std::string(text) + "\"");
    if (res.ec != std::errc()) return err("<integer> out of range: " + std::string(text));
    if (neg) {
      if (mag > static_cast<std::uint64_t>(INT64_MAX) + 1) return err("<integer> out of range: " + std::string(text));
      return plist_value(plist_integer::from_signed(static_cast<std::int64_t>(0 - mag)));
    }
    return plist_value(plist_integer::from_unsigned(mag));
  }

  result<plist_value> parse_real(std::string_view text) {
    std::string_view t = trim(text);
    std::string_view body = t;
    if (!body.empty() && body[0] == '+') body.remove_prefix(1);
    double d = 0;
    auto res = std::from_chars(body.data(), body.data() + body.size(), d);
    // CF writes infinities as "+infinity"/"-infinity"; from_chars knows "inf"/"infinity" too.
    if (body.empty() || res.ec != std::errc() || res.ptr != body.data() + body.size())
      return err("<real> is not a number: \"" + std::string(text) + "\"");
    return plist_value(d);
  }

  result<plist_value> parse_date(std::string_view text) {
    std::string_view t = trim(text);
    // plistlib's grammar: YYYY[-MM[-DD[THH[:MM[:SS]]]]]Z
    unsigned f[6] = {0, 1, 1, 0, 0, 0};
    const char seps[] = {'-', '-', 'T', ':', ':'};
    std::size_t p = 0;
    auto digits = [&](std::size_t n, unsigned& v) {
      if (p + n > t.size()) return false;
      v = 0;
      for (std::size_t k = 0; k < n; ++k) {
        char c = t[p + k];
        if (c < '0' || c > '9') return false;
        v = v * 10 + static_cast<unsigned>(c - '0');
      }
      p += n;
      return true;
    };
    bool ok = digits(4, f[0]);
    for (int i = 1; ok && i < 6 && p < t.size() && t[p] == seps[i - 1]; ++i) {
      ++p;
      ok = digits(2, f[i]);
    }
    if (!ok || p + 1 != t.size() || t[p] != 'Z' || f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 ||
        f[4] > 59 || f[5] > 60)
      return err("<date> is not YYYY-MM-DDTHH:MM:SSZ: \"" + std::string(text) + "\"");
    return plist_value(plist_date_from_utc(f[0], f[1], f[2], f[3], f[4], f[5]));
  }

  result<plist_value> parse_data(std::string_view text) {
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    std::size_t pad = 0;
    for (char c : text) {
      if (space(c)) continue;
      int v;
      if (c >= 'A' && c <= 'Z') v = c - 'A';
      else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
      else if (c >= '0' && c <= '9') v = c - '0' + 52;
      else if (c == '+') v = 62;
      else if (c == '/') v = 63;
      else if (c == '=') {
        ++pad;
        continue;
      } else {
        return err("<data> is not base64");
      }
      if (pad) return err("<data> has base64 text after '=' padding");
      acc = (acc << 6) | static_cast<std::uint32_t>(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += static_cast<char>((acc >> bits) & 0xFF);
      }
    }
    if (pad > 2) return err("<data> has too much base64 padding");
    return plist_value(plist_data{std::move(out)});
  }

  bool charge(std::size_t n) {
    nodes_ += n;
    return nodes_ <= opt_.max_nodes;
  }

  result<plist_value> read_value(const tag& t, std::size_t depth) {
    if (t.closing) return err("unexpected </" + t.name + ">");
    if (!charge(1)) return fail(errc::too_large, "parse plist", opt_.source, "more values than the bound allows");
    const std::string& n = t.name;
    if (n == "true" || n == "false") {
      if (!t.empty) {
        auto text = read_text(n);
        if (!text) return tl::unexpected(text.error());
        if (!trim(*text).empty()) return err("<" + n + "> must be empty");
      }
      return plist_value(n == "true");
    }
    if (n == "dict" || n == "array") {
      if (depth > opt_.max_depth)
        return err("nested deeper than " + std::to_string(opt_.max_depth) + " levels");
      if (n == "array") {
        plist_array arr;
        if (t.empty) return plist_value(std::move(arr));
        for (;;) {
          tag next;
          if (auto ok = read_tag(next); !ok) return tl::unexpected(ok.error());
          if (next.closing) {
            if (next.name != "array") return err("expected </array>, found </" + next.name + ">");
            return plist_value(std::move(arr));
          }
          auto v = read_value(next, depth + 1);
          if (!v) return v;
          arr.items.push_back(std::move(*v));
        }
      }
      plist_dict dict;
      if (t.empty) return plist_value(std::move(dict));
      for (;;) {
        tag next;
        if (auto ok = read_tag(next); !ok) return tl::unexpected(ok.error());
        if (next.closing) {
          if (next.name != "dict") return err("expected </dict>, found </" + next.name + ">");
          return plist_value(std::move(dict));
        }
        if (next.name != "key") return err("expected <key> in <dict>, found <" + next.describe() + ">");
        std::string key;
        if (!next.empty) {
          auto text = read_text("key");
          if (!text) return tl::unexpected(text.error());
          key = std::move(*text);
        }
        if (dict.find(key)) return err("duplicate key \"" + key + "\"");
        tag vt;
        if (auto ok = read_tag(vt); !ok) return tl::unexpected(ok.error());
        if (vt.closing) return err("key \"" + key + "\" has no value");
        auto v = read_value(vt, depth + 1);
        if (!v) return v;
        dict.entries.push_back(plist_entry{std::move(key), std::move(*v)});
      }
    }
    if (n == "string" || n == "integer" || n == "real" || n == "date" || n == "data") {
      std::string text;
      if (!t.empty) {
        auto r = read_text(n);
        if (!r) return tl::unexpected(r.error());
        text = std::move(*r);
      }
      if (!charge(text.size())) return fail(errc::too_large, "parse plist", opt_.source, "more values than the bound allows");
      if (n == "string") return plist_value(std::move(text));
      if (n == "integer") return parse_integer(text);
      if (n == "real") return parse_real(text);
      if (n == "date") return parse_date(text);
      return parse_data(text);
    }
    if (n == "key") return err("<key> outside a <dict>");
    return err("unknown element <" + n + ">");
  }

  std::string_view in_;
  const plist_read_options& opt_;
  std::size_t pos_ = 0;
  std::size_t nodes_ = 0;
};

}  // namespace detail

/// Reads an XML plist. Errors are `errc::invalid_input` ("parse plist <source>: line 12: expected
/// </dict>, found </array>") or `errc::too_large`.
inline result<plist_value> read_plist_xml(std::string_view bytes, const plist_read_options& options = {}) {
  return detail::plist_xml_reader(bytes, options).run();
}

HOSTCFG_END_NAMESPACE
