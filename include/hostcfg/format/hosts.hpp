#pragma once
/// @file
/// The hosts file, losslessly: a pure codec (bytes in, bytes out, no I/O) and the three edits the
/// HostsEntry primitive is a thin layer over: `probe_hosts`, `apply_hosts`, `revert_hosts`.
///
/// Reading: `parse_hosts(x)` keeps every line's exact bytes, so `serialize_hosts(parse_hosts(x)) == x`
/// for any input (LF, CRLF, mixed, lone CR, no final newline, BOM, NUL, non-UTF-8...). Fields are
/// read as the BSD/glibc resolvers read them: everything from the first `#` is a comment (so an
/// inline `# comment` never yields names, hostctl#72), fields are split on runs of spaces and tabs,
/// and a line whose first field is not an address is kept and reported as unparsable.
///
/// Resolution: names compare case-insensitively (ASCII) and, per address family, the first
/// matching line of the file wins.
///
/// Editing: hostcfg only ever writes inside one section between marker lines (format/markers.hpp),
/// one short `<address>\t<name>` line per name, in the file's own line ending. Outside the section
/// every byte stays as it was, except, with `override_conflicts`, a conflicting line is disabled by
/// prefixing it with a tag naming the app (`# [disabled by com.example] `), which revert strips
/// again to give back the exact original line. Override changes the answer for the wanted names
/// only: the disabled line's other names are re-added at the top of our section with their old
/// address, and a line below it that would then decide one of them differently is disabled too
/// (see detail::disable_by_override); the fuzz target checks every other name's answer.
///
///     auto m = default_markers("com.docker.desktop");
///     auto want = make_hosts_mappings("127.0.0.1", {"kubernetes.docker.internal"});
///     auto applied = apply_hosts(bytes, m, *want, {});       // new bytes + what changed
///     auto reverted = revert_hosts(applied->bytes, m, {}, &applied->record);
///     // reverted->bytes == bytes

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "hostcfg/error.hpp"
#include "hostcfg/format/hostname.hpp"
#include "hostcfg/format/ip_address.hpp"
#include "hostcfg/format/lines.hpp"
#include "hostcfg/format/markers.hpp"

HOSTCFG_BEGIN_NAMESPACE

// ---------------------------------------------------------------------------------------------
// Reading

/// What a line of a hosts file is, as the resolver sees it.
enum class hosts_line_kind {
  blank,       ///< nothing but spaces and tabs
  comment,     ///< nothing before a `#` but spaces and tabs
  entry,       ///< an address followed by at least one name
  unparsable,  ///< anything else (kept verbatim; the resolver skips it)
};

/// "blank", "comment", "entry", "unparsable".
inline const char* hosts_line_kind_name(hosts_line_kind k) {
  switch (k) {
    case hosts_line_kind::blank: return "blank";
    case hosts_line_kind::comment: return "comment";
    case hosts_line_kind::entry: return "entry";
    case hosts_line_kind::unparsable: return "unparsable";
  }
  return "?";
}

/// One line of a hosts file: its exact bytes plus what the resolver reads from it. The views
/// point into the parsed input, which must outlive the model.
struct hosts_line {
  std::string_view text;     ///< the line without its ending (a BOM on line 1 included)
  std::string_view ending;   ///< "\n", "\r\n", "\r" or "" (last line without a final newline)
  std::size_t offset = 0;    ///< byte offset of `text` in the input
  std::size_t number = 0;    ///< 1-based line number (`detail::for_each_line_at`: 1 for line 1, else 0)
  hosts_line_kind kind = hosts_line_kind::blank;
  std::string_view address;  ///< first field as written (entry; unparsable when it has fields)
  std::string_view zone;     ///< zone id after `%` (e.g. "lo0" of fe80::1%lo0), else empty
  std::string_view comment;  ///< from the first `#` to the end of the text, else empty
  ip_address ip;             ///< the parsed address (entry only)
  std::size_t names_begin = 0;  ///< index of the first name in `hosts_file::names`
  std::size_t names_count = 0;  ///< number of names (entry only)
  const char* problem = nullptr;  ///< why the line is unparsable (static text), else nullptr
};

/// A read-only window on a line's names.
struct hosts_names {
  const std::string_view* first = nullptr;
  std::size_t count = 0;
  const std::string_view* begin() const { return first; }
  const std::string_view* end() const { return first + count; }
  std::size_t size() const { return count; }
  std::string_view operator[](std::size_t i) const { return first[i]; }
};

/// A parsed hosts file. `serialize()` gives back the input byte for byte.
struct hosts_file {
  std::string_view bytes;               ///< the input
  std::vector<hosts_line> lines;        ///< every line, in order
  std::vector<std::string_view> names;  ///< every entry's names, flattened (see hosts_line::names_begin)
  /// The input starts with a UTF-8 BOM. An entry on line 1 after it is unparsable: glibc reads the
  /// mark as part of the address and skips the line (checked with `getent`); a comment or blank
  /// line after it stays one.
  bool has_bom = false;

  /// The names of `line` (empty unless it is an entry).
  hosts_names names_of(const hosts_line& line) const {
    return {names.data() + line.names_begin, line.names_count};
  }
  /// Concatenates every line's text and ending: the input, exactly.
  std::string serialize() const {
    std::string out;
    out.reserve(bytes.size());
    for (const auto& line : lines) {
      out.append(line.text);
      out.append(line.ending);
    }
    return out;
  }
  /// The unparsable lines, for a report.
  std::vector<const hosts_line*> unparsable() const {
    std::vector<const hosts_line*> out;
    for (const auto& line : lines)
      if (line.kind == hosts_line_kind::unparsable) out.push_back(&line);
    return out;
  }
};

namespace detail {

/// The next line at `pos` (same rules as split_lines, without building a vector), advancing pos.
inline line_view next_line(std::string_view bytes, std::size_t& pos) {
  // memchr for '\n', then for a lone '\r' inside the line: two vectorised scans instead of a
  // byte loop, which is most of the cost of reading a 150k-line file.
  const std::size_t start = pos;
  const char* base = bytes.data();
  const std::size_t size = bytes.size();
  const void* nl = std::memchr(base + start, '\n', size - start);
  std::size_t end = nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - base) : size;
  const void* cr = std::memchr(base + start, '\r', end - start);
  if (cr) {
    std::size_t at = static_cast<std::size_t>(static_cast<const char*>(cr) - base);
    if (at + 1 != end || !nl) {  // a lone CR ends the line here (or a CR closing the last line)
      pos = at + 1;
      return {bytes.substr(start, at - start), bytes.substr(at, 1), start};
    }
    pos = end + 1;
    return {bytes.substr(start, at - start), bytes.substr(at, 2), start};
  }
  if (!nl) {
    pos = size;
    return {bytes.substr(start), {}, start};
  }
  pos = end + 1;
  return {bytes.substr(start, end - start), bytes.substr(end, 1), start};
}

/// What separates fields: glibc splits a hosts line at any `isspace` byte but the newline that
/// ends it (checked with `getent` on "10.9.9.8\vname"); a lone '\r' is a line break here.
inline bool is_field_space(char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f'; }

/// Reads the fields of one line's content into `line` and appends its names
/// to `names`. Used for real lines and, in probe, for the content of comment lines.
inline void read_fields(std::string_view content, hosts_line& line, std::vector<std::string_view>& names) {
  // One pass: fields end at a space, a tab or the first '#' (glibc truncates the line there even
  // inside a field, "odin#x" reads as "odin"); NUL bytes are noted on the way.
  const char* p = content.data();
  const std::size_t n = content.size();
  std::size_t i = 0;
  bool nul = false;
  bool first = true;
  std::string_view address;
  line.names_begin = names.size();
  for (;;) {
    while (i < n && is_field_space(p[i])) ++i;
    if (i == n || p[i] == '#') break;
    std::size_t start = i;
    while (i < n && !is_field_space(p[i]) && p[i] != '#') {
      nul = nul || p[i] == '\0';
      ++i;
    }
    std::string_view field(p + start, i - start);
    if (first) {
      address = field;
      first = false;
    } else {
      names.push_back(field);
    }
  }
  if (i < n) line.comment = content.substr(i);
  if (first) {
    line.kind = i < n ? hosts_line_kind::comment : hosts_line_kind::blank;
    return;
  }
  line.address = address;
  line.kind = hosts_line_kind::unparsable;
  auto reject = [&](const char* why) {
    names.resize(line.names_begin);
    line.problem = why;
  };
  if (nul) return reject("contains a NUL byte");
  std::string_view addr = address;
  std::size_t percent = address.find('%');
  if (percent != std::string_view::npos && address.find(':') != std::string_view::npos) {
    addr = address.substr(0, percent);
    line.zone = address.substr(percent + 1);
    if (line.zone.empty()) return reject("empty zone id after '%'");
  }
  auto ip = read_ip_address(addr);
  if (!ip) return reject("first field is not an IP address");
  line.ip = *ip;
  line.names_count = names.size() - line.names_begin;
  if (line.names_count == 0) return reject("an address without names");
  line.kind = hosts_line_kind::entry;
}

/// Reads one physical line.
inline hosts_line read_line(const line_view& lv, std::size_t number, std::vector<std::string_view>& names) {
  hosts_line line;
  line.text = lv.text;
  line.ending = lv.ending;
  line.offset = lv.offset;
  line.number = number;
  std::string_view content = lv.text;
  const bool bom = number == 1 && content.substr(0, utf8_bom.size()) == utf8_bom;
  if (bom) content.remove_prefix(utf8_bom.size());
  read_fields(content, line, names);
  if (bom && line.kind != hosts_line_kind::comment && line.kind != hosts_line_kind::blank) {
    // The resolver does not skip the mark: to it the address is not one, and the line decides nothing.
    names.resize(line.names_begin);
    line.names_count = 0;
    line.kind = hosts_line_kind::unparsable;
    line.problem = "a UTF-8 byte-order mark before the address (the resolver reads it as part of the address)";
  }
  return line;
}

/// Calls `fn(const hosts_line&, names_view)` for every line, reusing one names buffer: one pass,
/// no allocation per line.
template <class Fn>
void for_each_hosts_line(std::string_view bytes, Fn&& fn) {
  std::vector<std::string_view> names;
  std::size_t pos = 0, number = 0;
  while (pos < bytes.size()) {
    line_view lv = next_line(bytes, pos);
    names.clear();
    hosts_line line = read_line(lv, ++number, names);
    fn(line, hosts_names{names.data(), names.size()});
  }
}

}  // namespace detail

/// Parses `bytes` (never fails: what cannot be read is kept as an unparsable line).
inline hosts_file parse_hosts(std::string_view bytes) {
  hosts_file file;
  file.bytes = bytes;
  file.has_bom = bytes.substr(0, detail::utf8_bom.size()) == detail::utf8_bom;
  // One reservation from a cheap count keeps the 150k-line case free of regrowth copies.
  std::size_t estimate = static_cast<std::size_t>(std::count(bytes.begin(), bytes.end(), '\n')) + 1;
  file.lines.reserve(estimate);
  file.names.reserve(estimate);
  std::size_t pos = 0, number = 0;
  while (pos < bytes.size()) {
    line_view lv = detail::next_line(bytes, pos);
    file.lines.push_back(detail::read_line(lv, ++number, file.names));
  }
  return file;
}

/// `parse_hosts(x).serialize()`: `x`, byte for byte.
inline std::string serialize_hosts(const hosts_file& file) { return file.serialize(); }

/// Where a name resolves in one address family: the first entry line naming it, and the address
/// there. nullopt when no line names it.
struct hosts_resolution {
  const hosts_line* line = nullptr;  ///< the winning line
  ip_address address;                ///< its address
  std::string_view zone;             ///< its zone id, if any
};

/// Resolves `name` (case-insensitively) among `family` addresses the way the resolver reads the
/// file: the first matching line wins.
inline std::optional<hosts_resolution> resolve_hosts(const hosts_file& file, std::string_view name,
                                                      address_family family) {
  for (const auto& line : file.lines) {
    if (line.kind != hosts_line_kind::entry || line.ip.family != family) continue;
    for (std::string_view n : file.names_of(line))
      if (iequals_ascii(n, name)) return hosts_resolution{&line, line.ip, line.zone};
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Desired state

/// One (address, name) pair hostcfg should make resolve. Build it with `make_hosts_mapping`, which
/// validates both fields; apply/probe validate again so no unchecked text can reach the file.
struct hosts_mapping {
  std::string address;  ///< canonical text (inet_ntop form)
  std::string name;     ///< lower-case RFC 1123 name

  friend bool operator==(const hosts_mapping& a, const hosts_mapping& b) {
    return a.address == b.address && a.name == b.name;
  }
};

/// Validates and builds one mapping. Errors name the field ("address", "name").
inline result<hosts_mapping> make_hosts_mapping(std::string_view address, std::string_view name) {
  auto ip = parse_ip_address(address, "address");
  if (!ip) return tl::unexpected(ip.error());
  auto ok = validate_hostname(name, "name");
  if (!ok) return tl::unexpected(ok.error());
  return hosts_mapping{std::string(address), std::string(name)};
}

/// Validates and builds one mapping per name for the same address (a HostsEntry{address, names...}).
inline result<std::vector<hosts_mapping>> make_hosts_mappings(std::string_view address,
                                                              const std::vector<std::string>& names) {
  std::vector<hosts_mapping> out;
  if (names.empty())
    return fail(errc::invalid_input, "validate hostname", "names", "no name given", "give at least one name");
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto ip = parse_ip_address(address, "address");
    if (!ip) return tl::unexpected(ip.error());
    auto ok = validate_hostname(names[i], "names[" + std::to_string(i) + "]");
    if (!ok) return tl::unexpected(ok.error());
    out.push_back({std::string(address), names[i]});
  }
  return out;
}

/// The tag apply puts in front of a conflicting line it disables (override), naming the app so a
/// reader knows who did it and revert can find it without a record: "# [disabled by <app>] ".
inline std::string disabled_line_prefix(std::string_view app_id) {
  return "# [disabled by " + std::string(app_id) + "] ";
}

// ---------------------------------------------------------------------------------------------
// Probe

/// The state of one desired mapping in a file.
enum class hosts_mapping_state {
  in_sync,           ///< the name resolves to the address (the first line for its family has it)
  missing,           ///< no line names it in that family
  conflict,          ///< a line outside our section maps it to another address and wins
  commented_out,     ///< only a commented-out line names it
  stale_in_section,  ///< our section maps it to another address and wins
};

/// "in sync", "missing", "conflict", "commented out", "stale in section".
inline const char* hosts_mapping_state_name(hosts_mapping_state s) {
  switch (s) {
    case hosts_mapping_state::in_sync: return "in sync";
    case hosts_mapping_state::missing: return "missing";
    case hosts_mapping_state::conflict: return "conflict";
    case hosts_mapping_state::commented_out: return "commented out";
    case hosts_mapping_state::stale_in_section: return "stale in section";
  }
  return "?";
}

/// One desired mapping and what the file says about it.
struct hosts_mapping_status {
  hosts_mapping mapping;      ///< what was asked for
  hosts_mapping_state state = hosts_mapping_state::missing;
  std::size_t line_number = 0;  ///< the line that decided (0 when missing, or in sync under hosts_numbering::problems_only)
  std::string line_text;        ///< that line's text, for a report
  std::string found_address;    ///< conflict / stale / commented out: the address that line has
  bool in_section = false;      ///< that line is inside our section
};

/// What probe saw: one status per desired mapping, in the order asked, plus the file's shape.
/// (Lines the resolver cannot read are listed by `parse_hosts(x).unparsable()`: probe reads only
/// the lines that name a desired mapping, so a 150k-line file costs about one search per name.)
struct hosts_probe_result {
  std::vector<hosts_mapping_status> mappings;
  std::optional<section_span> section;          ///< our section, if present
  std::string line_ending;                      ///< what new lines will use ("\n" or "\r\n")
  bool has_final_newline = true;

  /// True when every mapping is in sync.
  bool all_in_sync() const {
    for (const auto& m : mappings)
      if (m.state != hosts_mapping_state::in_sync) return false;
    return true;
  }
};

/// Lines hostcfg writes into a hosts file stay shorter than this (RELIABILITY H7).
inline constexpr std::size_t max_hosts_line_bytes = 256;

namespace detail {

/// A desired mapping, validated and parsed.
struct desired_mapping {
  hosts_mapping mapping;
  ip_address ip;
};

inline result<std::vector<desired_mapping>> validate_mappings(const std::vector<hosts_mapping>& want) {
  std::vector<desired_mapping> out;
  for (std::size_t i = 0; i < want.size(); ++i) {
    std::string field = "mappings[" + std::to_string(i) + "]";
    auto ip = parse_ip_address(want[i].address, field + ".address");
    if (!ip) return tl::unexpected(ip.error());
    auto ok = validate_hostname(want[i].name, field + ".name");
    if (!ok) return tl::unexpected(ok.error());
    // RELIABILITY H7: BSD-derived resolvers read hosts lines into fixed buffers; keep every line
    // we write (address, tab, name) under 256 bytes.
    std::size_t line_size = want[i].address.size() + 1 + want[i].name.size();
    if (line_size >= max_hosts_line_bytes)
      return fail(errc::invalid_input, "validate hosts mappings", field,
                  "the line '" + want[i].address + "\t<name>' would be " + std::to_string(line_size) +
                      " bytes; hosts lines are kept under " + std::to_string(max_hosts_line_bytes),
                  "use a shorter name");
    bool duplicate = false;
    for (const auto& d : out) {
      if (d.mapping.name != want[i].name || d.ip.family != ip->family) continue;
      if (d.ip != *ip)
        return fail(errc::invalid_input, "validate hosts mappings", field,
                    "name '" + want[i].name + "' is asked for both " + d.mapping.address + " and " + want[i].address,
                    "a name resolves to one address per family; keep one");
      duplicate = true;
    }
    if (!duplicate) out.push_back({want[i], *ip});
  }
  return out;
}

inline bool names_contain(hosts_names names, std::string_view name) {
  for (std::string_view n : names)
    if (iequals_ascii(n, name)) return true;
  return false;
}

/// The content of a comment line after its leading `#`s and spaces, for "commented out" checks
/// ("#127.0.0.1 foo", "# 127.0.0.1 foo", "## ...").
inline std::string_view uncommented(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && is_field_space(text[i])) ++i;
  while (i < text.size() && (text[i] == '#' || is_field_space(text[i]))) ++i;
  return text.substr(i);
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
/// field_search and count_byte have AVX2 loops, chosen at run time (see below).
#define HOSTCFG_HOSTS_AVX2_SEARCH 1
#else
#define HOSTCFG_HOSTS_AVX2_SEARCH 0
#endif

/// The instruction set field_search searches (and count_byte counts) with: `best` is the widest this CPU runs (AVX2 on
/// x86 where present); `portable` is the baseline build (SSE2 on x86-64), kept for tests that
/// compare the two.
enum class search_isa { best, portable };

/// Whether this CPU runs the AVX2 clone of the search (asked once).
inline bool cpu_runs_avx2_search() {
#if HOSTCFG_HOSTS_AVX2_SEARCH
  static const bool has = __builtin_cpu_supports("avx2") != 0;
  return has;
#else
  return false;
#endif
}

/// Number of bytes equal to `c` in [first, last), eight at a time (SWAR: a zero byte of
/// `word ^ pattern` is a match), at -O2 and without intrinsics: the portable loop of count_byte.
inline std::size_t count_byte_portable(const char* first, const char* last, char c) {
  constexpr std::uint64_t ones = 0x0101010101010101ull;
  constexpr std::uint64_t low7 = 0x7f7f7f7f7f7f7f7full;
  const std::uint64_t pattern = ones * static_cast<unsigned char>(c);
  // 1 in the low bit of each byte of `word` equal to c (exact: no borrow crosses bytes).
  auto matches = [&](const char* at) {
    std::uint64_t word;
    std::memcpy(&word, at, 8);
    std::uint64_t x = word ^ pattern;
    return (~(((x & low7) + low7) | x) & ~low7) >> 7;
  };
  std::size_t n = 0;
  while (last - first >= 32) {
    // Per-byte tallies in four independent lanes, summed every 255 rounds before a byte overflows.
    std::uint64_t a = 0, b = 0, d = 0, e = 0;
    for (int round = 0; round < 255 && last - first >= 32; ++round, first += 32) {
      a += matches(first);
      b += matches(first + 8);
      d += matches(first + 16);
      e += matches(first + 24);
    }
    auto sum = [&](std::uint64_t lanes) { return static_cast<std::size_t>(((lanes & 0x00ff00ff00ff00ffull) +
                                                                          ((lanes >> 8) & 0x00ff00ff00ff00ffull)) *
                                                                         0x0001000100010001ull >> 48); };
    n += sum(a) + sum(b) + sum(d) + sum(e);
  }
  for (; first != last; ++first) n += *first == c ? 1 : 0;
  return n;
}

#if HOSTCFG_HOSTS_AVX2_SEARCH
/// What count_block_avx2 found in whole 32-byte blocks.
struct block_count {
  std::size_t matches = 0;  ///< bytes equal to the counted byte
  bool saw_other = false;   ///< some byte equal to the other byte looked for
};

/// The AVX2 loop of count_byte over `blocks` whole blocks of 32 bytes from `first`: per block
/// one compare subtracted into per-byte tallies (summed by psadbw every 255 blocks, before a
/// tally overflows), and one compare for `other` OR-ed into a mask, so count_line_breaks learns
/// in the same pass whether a '\r' needs its slower look. About three times the SWAR loop's
/// speed: numbering the last line of a 150k-line file (our section, in a file already in sync)
/// took 43% of a probe with the SWAR loop.
__attribute__((target("avx2"))) inline block_count count_block_avx2(const char* first, std::size_t blocks, char c,
                                                                    char other) {
  typedef signed char lanes32 __attribute__((vector_size(32)));
  typedef unsigned char tally_lanes32 __attribute__((vector_size(32)));  // wraps: no signed overflow
  typedef char byte_lanes32 __attribute__((vector_size(32)));             // the builtin's parameter type
  typedef long long quads __attribute__((vector_size(32)));
  const lanes32 want = lanes32{} + static_cast<signed char>(c);
  const lanes32 also = lanes32{} + static_cast<signed char>(other);
  block_count out;
  lanes32 seen{};
  while (blocks > 0) {
    const std::size_t round = std::min<std::size_t>(blocks, 255);
    tally_lanes32 tally{};
    for (std::size_t k = 0; k < round; ++k, first += 32) {
      lanes32 v;
      std::memcpy(&v, first, sizeof v);
      tally -= (tally_lanes32)(v == want);  // a match is an all-ones lane (255): minus it adds one
      seen |= v == also;
    }
    blocks -= round;
    const quads sums = (quads)__builtin_ia32_psadbw256((byte_lanes32)tally, byte_lanes32{});
    out.matches += static_cast<std::size_t>(sums[0] + sums[1] + sums[2] + sums[3]);
  }
  out.saw_other = __builtin_ia32_pmovmskb256((byte_lanes32)seen) != 0;
  return out;
}
#endif

/// Number of bytes equal to `c` in [first, last): the AVX2 loop where the CPU has it (see
/// `search_isa`), else the portable SWAR loop; a 4 MB file costs a fraction of reading it.
inline std::size_t count_byte(const char* first, const char* last, char c, search_isa isa = search_isa::best) {
#if HOSTCFG_HOSTS_AVX2_SEARCH
  if (isa == search_isa::best && cpu_runs_avx2_search() && last - first >= 32) {
    const std::size_t blocks = static_cast<std::size_t>(last - first) / 32;
    const std::size_t n = count_block_avx2(first, blocks, c, c).matches;
    return n + count_byte_portable(first + blocks * 32, last, c);
  }
#else
  (void)isa;
#endif
  return count_byte_portable(first, last, c);
}

/// Line breaks in [from, to): '\n', "\r\n" (one break) and a lone '\r', as `next_line` splits.
/// A file without any '\r' costs one pass (AVX2: the '\n' count also tells whether a '\r' is
/// there) or one `count_byte` and one memchr.
inline std::size_t count_line_breaks(std::string_view bytes, std::size_t from, std::size_t to,
                                     search_isa isa = search_isa::best) {
  const char* base = bytes.data();
  std::size_t n = 0;
  bool look_for_cr = true;
#if HOSTCFG_HOSTS_AVX2_SEARCH
  if (isa == search_isa::best && cpu_runs_avx2_search() && to - from >= 32) {
    const std::size_t blocks = (to - from) / 32;
    const block_count found = count_block_avx2(base + from, blocks, '\n', '\r');
    const std::size_t tail = from + blocks * 32;
    n = found.matches + count_byte_portable(base + tail, base + to, '\n');
    look_for_cr = found.saw_other || std::memchr(base + tail, '\r', to - tail) != nullptr;
  } else {
    n = count_byte(base + from, base + to, '\n', isa);
  }
#else
  n = count_byte(base + from, base + to, '\n', isa);
#endif
  for (std::size_t i = from; look_for_cr && i < to;) {
    const void* cr = std::memchr(base + i, '\r', to - i);
    if (!cr) break;
    std::size_t at = static_cast<std::size_t>(static_cast<const char*>(cr) - base);
    if (!(at + 1 < bytes.size() && base[at + 1] == '\n')) ++n;
    i = at + 1;
  }
  return n;
}

/// 1-based line numbers of line starts, asked in any order. Each answer counts from the nearest
/// line already numbered, above or below, and is kept, so numbering the lines a probe and an
/// apply report from one scan (a conflict, a disabled line, our begin marker when asked for)
/// costs at most about one pass over the file in all: probe and apply on a 150k-line file with
/// our section at its end used to count the whole file three times. Lines nobody reports are
/// never counted (see hosts_numbering).
class line_numberer {
 public:
  explicit line_numberer(std::string_view bytes = {}) : bytes_(bytes), known_{{0, 1}} {}

  /// The bytes it counts in.
  std::string_view bytes() const { return bytes_; }

  /// The largest offset numbered so far (0 before any question): what has been counted, for tests
  /// that check a probe did not count through the whole file.
  std::size_t highest_numbered() const { return known_.back().offset; }

  /// The number of the line that starts at `offset`.
  std::size_t at(std::size_t offset) {
    auto above = std::lower_bound(known_.begin(), known_.end(), offset,
                                  [](const numbered& k, std::size_t o) { return k.offset < o; });
    if (above != known_.end() && above->offset == offset) return above->number;
    auto below = std::prev(above);  // known_ starts with offset 0, and offset > 0 here
    std::size_t number = 0;
    if (above != known_.end() && above->offset - offset < offset - below->offset)
      number = above->number - count_line_breaks(bytes_, offset, above->offset);
    else
      number = below->number + count_line_breaks(bytes_, below->offset, offset);
    known_.insert(above, numbered{offset, number});  // callers ask mostly in increasing order: an append
    return number;
  }

 private:
  struct numbered {
    std::size_t offset;
    std::size_t number;
  };
  std::string_view bytes_;
  std::vector<numbered> known_;  // sorted by offset
};

/// Start of the line holding byte `p`: just after the previous '\n' or '\r'.
inline std::size_t line_start_at(std::string_view bytes, std::size_t p) {
  while (p > 0 && bytes[p - 1] != '\n' && bytes[p - 1] != '\r') --p;
  return p;
}

inline char fold_ascii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

/// Searches a hosts file, in one pass, for the places scan_hosts must look at: where one of a
/// few names starts a name field (right after a field space, see is_field_space; ASCII case-insensitive), and
/// which lines start with one of a few bytes (every marker line of ours starts with such a byte).
///
/// A window can only be a name if its first and last byte fold to the name's first and last
/// byte and the byte before it is a field space; that test is branch-free and the same at
/// every position ((c | 0x20) == letter for a letter, c == byte otherwise), so it runs on 64
/// positions at a time and the exact, byte-by-byte check runs only at the rare positions that
/// pass it. Upper case anywhere in the file therefore costs nothing extra. A line-start
/// candidate is a position whose byte is one of the given bytes and whose previous byte ends a
/// line. Every name and every line byte is tested in the same loop, so the file is read once.
/// The AVX2 loop first lets through only blocks holding a name's first byte after a byte that
/// may be a field space, or the line byte (a few percent of a blocklist's blocks), and only
/// there tests last bytes and line starts.
///
/// History, measured on the 150k-line benchmark file (issue 4, Performance; read floor about
/// 0.2 ms): a Wu-Manber skip table over folded triples took 3.3 ms (a blocklist is full of a
/// name's own triples, so each lookup moved the window a few bytes only); the portable
/// first/last-byte loop 1.1 ms; the same test in an explicit AVX2 loop, one pass per name, 0.43
/// ms for the whole probe. Against that, this search (best of 30 runs of scan_hosts): one name
/// 0.18 ms vs 0.19-0.22 (one search plus a memchr pass for the markers), two names 0.23 ms vs
/// 0.40. A loop over a run-time number of names, the portable loop compiled for AVX2 (the
/// compiler's mask reduction per block dominated it) and an AVX-512 loop all measured slower;
/// blocks of 32 or 128 positions slower than 64.
class field_search {
 public:
  /// `names`: non-empty names (empty ones are ignored); `line_firsts`: the bytes a wanted line
  /// may start with.
  field_search(const std::vector<std::string_view>& names, std::string_view line_firsts,
               search_isa isa = search_isa::best)
      : line_firsts_(line_firsts), avx2_(isa == search_isa::best && cpu_runs_avx2_search()) {
    for (std::string_view n : names) {
      if (n.empty()) continue;
      folded_name f;
      f.text.resize(n.size());
      for (std::size_t i = 0; i < n.size(); ++i) f.text[i] = fold_ascii(n[i]);
      f.first = static_cast<unsigned char>(f.text.front());
      f.last = static_cast<unsigned char>(f.text.back());
      f.first_or = is_lower(f.first) ? 0x20 : 0;
      f.last_or = is_lower(f.last) ? 0x20 : 0;
      reach_ = std::max(reach_, n.size());
      names_.push_back(std::move(f));
    }
  }

  /// Calls `on_name(k, p)` for each position p where the k-th non-empty name occurs right after
  /// a field space (is_field_space), and `on_line(p)` for each line start p (0, or just after '\n' or '\r')
  /// whose byte is one of `line_firsts`, in increasing p (at one p, names before the line).
  template <class OnName, class OnLine>
  void run(std::string_view hay, OnName&& on_name, OnLine&& on_line) const {
    auto at = [&](std::size_t p) { check_at(hay, p, on_name, on_line); };
    if (!hay.empty()) at(0);
    std::size_t next = 1;
#if HOSTCFG_HOSTS_AVX2_SEARCH
    if (avx2_) next = blocks_avx2(hay, at);
#endif
    if (next == 1) next = blocks_portable(hay, at);
    for (std::size_t p = next; p < hay.size(); ++p) at(p);
  }

 private:
  struct folded_name {
    std::string text;             // folded to lower case
    unsigned char first = 0;      // text's first byte
    unsigned char last = 0;       // text's last byte
    unsigned char first_or = 0;   // 0x20 when first is a letter: (c | 0x20) folds c
    unsigned char last_or = 0;    // likewise for last
  };

  static bool is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }
  static bool ends_line(unsigned char c) { return c == '\n' || c == '\r'; }

  /// The exact check at one position, calling the callbacks for what is there.
  template <class OnName, class OnLine>
  void check_at(std::string_view hay, std::size_t p, OnName& on_name, OnLine& on_line) const {
    const auto* h = reinterpret_cast<const unsigned char*>(hay.data());
    if (p > 0 && is_field_space(static_cast<char>(h[p - 1])))
      for (std::size_t k = 0; k < names_.size(); ++k)
        if (names_[k].text.size() <= hay.size() - p && matches_at(names_[k], h + p)) on_name(k, p);
    if ((p == 0 || ends_line(h[p - 1])) && line_firsts_.find(hay[p]) != std::string_view::npos) on_line(p);
  }

  static bool matches_at(const folded_name& n, const unsigned char* at) {
    for (std::size_t j = 0; j < n.text.size(); ++j)
      if (static_cast<unsigned char>(fold_ascii(static_cast<char>(at[j]))) != static_cast<unsigned char>(n.text[j]))
        return false;
    return true;
  }

  /// The positions [1, end) the block loops cover, 64 at a time, such that every byte a window
  /// there reads (the byte before it up to its longest name's last byte) is inside `hay`.
  std::size_t blocks_end(std::size_t size) const {
    const std::size_t reach = std::max<std::size_t>(reach_, 1);
    if (size < reach + 64) return 1;
    return 1 + (size - reach + 1 - 1) / 64 * 64;
  }

  /// The portable loop (auto-vectorized for the baseline instruction set: SSE2 on x86-64).
  /// Returns the first position it did not cover.
  template <class At>
  std::size_t blocks_portable(std::string_view hay, At& at) const {
    const auto* h = reinterpret_cast<const unsigned char*>(hay.data());
    const std::size_t end = blocks_end(hay.size());
    for (std::size_t i = 1; i < end; i += 64) {
      const unsigned char* b = h + i - 1;
      const unsigned char* a = h + i;
      unsigned char any = 0;
      for (const folded_name& n : names_) {
        const unsigned char* z = h + i + n.text.size() - 1;
        for (std::size_t j = 0; j < 64; ++j)
          any |= static_cast<unsigned char>(((a[j] | n.first_or) == n.first) & ((z[j] | n.last_or) == n.last) &
                                            ((b[j] == ' ') | (static_cast<unsigned char>(b[j] - '\t') < 4)));
      }
      for (char c : line_firsts_) {
        const auto u = static_cast<unsigned char>(c);
        for (std::size_t j = 0; j < 64; ++j)
          any |= static_cast<unsigned char>((a[j] == u) & ((b[j] == '\n') | (b[j] == '\r')));
      }
      if (any == 0) continue;
      for (std::size_t j = 0; j < 64; ++j) at(i + j);
    }
    return end;
  }

#if HOSTCFG_HOSTS_AVX2_SEARCH
  // GCC/clang vector extensions: no <immintrin.h> (about 0.6 s of parsing in every TU that
  // includes hostcfg). Comparisons give all-ones lanes; pmovmskb turns them into a bit mask.
  typedef signed char lanes32 __attribute__((vector_size(32)));
  typedef char mask_lanes32 __attribute__((vector_size(32)));  // the builtin's parameter type

  __attribute__((target("avx2"))) static lanes32 load32(const unsigned char* p) {
    lanes32 v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }

  /// One bit per lane of two masks: `low` in bits 0-31, `high` in bits 32-63.
  __attribute__((target("avx2"))) static std::uint64_t movemask64(lanes32 low, lanes32 high) {
    return static_cast<std::uint32_t>(__builtin_ia32_pmovmskb256((mask_lanes32)low)) |
           (static_cast<std::uint64_t>(static_cast<std::uint32_t>(__builtin_ia32_pmovmskb256((mask_lanes32)high)))
            << 32);
  }

  __attribute__((target("avx2"))) static lanes32 splat(unsigned char c) {
    return lanes32{} + static_cast<signed char>(c);
  }

  /// The AVX2 loop for this search, when it has at most four names and one line byte (HostsEntry
  /// with a few names and our markers, which all start with '#'): their constants then stay in
  /// registers (a loop over a run-time number of names measured slower than one search per
  /// name). Other searches take the portable loop; returns 1 when this one did not run.
  template <class At>
  std::size_t blocks_avx2(std::string_view hay, At& at) const {
    if (line_firsts_.size() > 1) return 1;
    return line_firsts_.empty() ? blocks_avx2_for<false>(hay, at) : blocks_avx2_for<true>(hay, at);
  }

  template <bool Line, class At>
  std::size_t blocks_avx2_for(std::string_view hay, At& at) const {
    switch (names_.size()) {
      case 0: return blocks_avx2_fixed<0, Line>(hay, at);
      case 1: return blocks_avx2_fixed<1, Line>(hay, at);
      case 2: return blocks_avx2_fixed<2, Line>(hay, at);
      case 3: return blocks_avx2_fixed<3, Line>(hay, at);
      case 4: return blocks_avx2_fixed<4, Line>(hay, at);
      default: return 1;
    }
  }

  /// The test of blocks_portable on 32 lanes at once (two halves per 64 positions, one branch),
  /// then the exact check at each set bit of the mask, for N names and (with Line) one line byte.
  template <std::size_t N, bool Line, class At>
  __attribute__((target("avx2"))) std::size_t blocks_avx2_fixed(std::string_view hay, At& at) const {
    const auto* h = reinterpret_cast<const unsigned char*>(hay.data());
    const std::size_t end = blocks_end(hay.size());
    const lanes32 space = splat(' '), tab = splat('\t'), lf = splat('\n'), cr = splat('\r');
    const lanes32 vt = splat('\v'), ff = splat('\f');  // field spaces too (is_field_space)
    lanes32 first[N > 0 ? N : 1], first_or[N > 0 ? N : 1], last[N > 0 ? N : 1], last_or[N > 0 ? N : 1];
    std::size_t last_at[N > 0 ? N : 1];
    for (std::size_t k = 0; k < N; ++k) {
      first[k] = splat(names_[k].first);
      first_or[k] = splat(names_[k].first_or);
      last[k] = splat(names_[k].last);
      last_or[k] = splat(names_[k].last_or);
      last_at[k] = names_[k].text.size() - 1;
    }
    const lanes32 line_byte = splat(Line ? static_cast<unsigned char>(line_firsts_[0]) : 0);
    const lanes32 past_space = splat(' ' + 1);
    for (std::size_t i = 1; i < end; i += 64) {
      const lanes32 b0 = load32(h + i - 1), b1 = load32(h + i + 31);
      const lanes32 a0 = load32(h + i), a1 = load32(h + i + 32);
      // First a cheap test that lets few blocks through: a name's first byte after a byte that
      // may be a field space (signed: every byte <= ' ' and every byte >= 0x80; the exact
      // check sorts them out), or the line byte anywhere. Only then the last bytes and line starts.
      lanes32 maybe0{}, maybe1{};
      if constexpr (N > 0) {
        const lanes32 blank0 = past_space > b0, blank1 = past_space > b1;
        lanes32 f0{}, f1{};
        for (std::size_t k = 0; k < N; ++k) {
          f0 |= (a0 | first_or[k]) == first[k];
          f1 |= (a1 | first_or[k]) == first[k];
        }
        maybe0 = f0 & blank0;
        maybe1 = f1 & blank1;
      }
      if constexpr (Line) {
        maybe0 |= a0 == line_byte;
        maybe1 |= a1 == line_byte;
      }
      if (movemask64(maybe0, maybe1) == 0) continue;
      lanes32 hit0{}, hit1{};
      if constexpr (N > 0) {
        const lanes32 field0 = (b0 == space) | (b0 == tab) | (b0 == vt) | (b0 == ff);
        const lanes32 field1 = (b1 == space) | (b1 == tab) | (b1 == vt) | (b1 == ff);
        for (std::size_t k = 0; k < N; ++k) {
          const unsigned char* z = h + i + last_at[k];
          hit0 |= ((a0 | first_or[k]) == first[k]) & ((load32(z) | last_or[k]) == last[k]) & field0;
          hit1 |= ((a1 | first_or[k]) == first[k]) & ((load32(z + 32) | last_or[k]) == last[k]) & field1;
        }
      }
      if constexpr (Line) {
        hit0 |= (a0 == line_byte) & ((b0 == lf) | (b0 == cr));
        hit1 |= (a1 == line_byte) & ((b1 == lf) | (b1 == cr));
      }
      for (std::uint64_t bits = movemask64(hit0, hit1); bits != 0; bits &= bits - 1)
        at(i + static_cast<std::size_t>(__builtin_ctzll(bits)));
    }
    return end;
  }
#endif

  std::vector<folded_name> names_;
  std::string line_firsts_;
  std::size_t reach_ = 0;  // the longest name's length
  bool avx2_ = false;      // search with the AVX2 loop
};

/// What one `find_candidates` pass found: the only lines probe and apply need to read.
struct hosts_candidates {
  /// Sorted starts of the lines in which a wanted name occurs the way a name field does (see
  /// `lines_naming`), each once.
  std::vector<std::size_t> naming;
  /// Sorted starts of the lines that start with one of the marker texts.
  std::vector<std::size_t> marker_lines;
};

/// The texts a marker line of ours starts with (begin line, end line, older begin prefixes), or
/// nothing when one is empty or holds a line break: such markers are only found by
/// `find_section`'s line-by-line reading.
inline std::optional<std::vector<std::string_view>> marker_texts(const section_markers& m) {
  std::vector<std::string_view> texts{m.begin_line, m.end_line};
  for (const auto& prefix : m.begin_prefixes) texts.emplace_back(prefix);
  for (std::string_view t : texts)
    if (t.empty() || t.find_first_of("\r\n") != std::string_view::npos) return std::nullopt;
  return texts;
}

/// One `field_search` pass over `bytes` for the lines naming one of `names` and the lines
/// starting with one of `texts` (non-empty; see `marker_texts`).
inline hosts_candidates find_candidates(std::string_view bytes, const std::vector<std::string_view>& names,
                                        const std::vector<std::string_view>& texts) {
  std::vector<std::string_view> distinct;  // the same lines either way: search each name once
  for (std::string_view n : names) {
    bool seen = n.empty();
    for (std::string_view d : distinct) seen = seen || iequals_ascii(d, n);
    if (!seen) distinct.push_back(n);
  }
  std::string firsts;
  for (std::string_view t : texts)
    if (firsts.find(t.front()) == std::string::npos) firsts.push_back(t.front());
  hosts_candidates found;
  auto on_name = [&](std::size_t k, std::size_t p) {
    const std::size_t after = p + distinct[k].size();
    if (after < bytes.size() && !is_field_space(bytes[after]) && bytes[after] != '#' && bytes[after] != '\n' &&
        bytes[after] != '\r')
      return;
    const std::size_t start = line_start_at(bytes, p);  // positions come in order: so do line starts
    if (found.naming.empty() || found.naming.back() != start) found.naming.push_back(start);
  };
  auto on_line = [&](std::size_t p) {
    for (std::string_view t : texts)
      if (bytes.compare(p, t.size(), t) == 0) {
        found.marker_lines.push_back(p);
        return;
      }
  };
  field_search(distinct, firsts).run(bytes, on_name, on_line);
  // Line 1 of a file that starts with a UTF-8 BOM is judged after the BOM, as find_section reads
  // hosts files (marker_after_bom::allowed); the search saw no line start there. Nothing lies
  // between offsets 0 and 3 (the BOM holds no line break), so the list stays sorted.
  if (!texts.empty() && bytes.substr(0, utf8_bom.size()) == utf8_bom) {
    if (!found.marker_lines.empty() && found.marker_lines.front() == 0)  // a marker text starting with a BOM
      found.marker_lines.erase(found.marker_lines.begin());
    std::vector<std::size_t> rest;
    rest.swap(found.marker_lines);
    on_line(utf8_bom.size());
    found.marker_lines.insert(found.marker_lines.end(), rest.begin(), rest.end());
  }
  return found;
}

/// Offsets of the lines in which one of `names` occurs the way a name field does (after a field space
/// (is_field_space); before a field space, '#', a line break or the end), sorted, each once. Every line
/// whose fields (or, for a comment line, whose commented-out fields) name one of them is in
/// it, since a name is never a line's first field: probe and apply read only these lines.
inline std::vector<std::size_t> lines_naming(std::string_view bytes, const std::vector<std::string_view>& names) {
  return find_candidates(bytes, names, {}).naming;
}

/// `find_section`'s judgement of the marker lines, given the sorted starts of every line that
/// starts with one of the marker texts (`hosts_candidates::marker_lines`), in file order.
/// `numbers`, when given, is shared with the caller's other line numbering (see hosts_scan).
/// With `number_begin` false, a sound section's `begin_line_number` stays 0 and no marker line
/// is numbered (numbering a section at the end of a large file is a pass over all of it); a
/// broken-markers error still names its line.
inline result<std::optional<section_span>> section_from_marker_lines(std::string_view bytes, const section_markers& m,
                                                                     const std::vector<std::size_t>& starts,
                                                                     line_numberer* numbers = nullptr,
                                                                     bool number_begin = true) {
  std::optional<section_span> found, open;
  std::optional<line_numberer> own;
  if (!numbers) numbers = &own.emplace(bytes);
  auto broken_at = [](std::size_t line, const std::string& why) -> result<std::optional<section_span>> {
    return fail(errc::broken_markers, "find section", {}, "line " + std::to_string(line) + ": " + why,
                "remove the stray or duplicated marker lines by hand, then run again");
  };
  for (std::size_t start : starts) {
    std::size_t pos = start;
    line_view line = next_line(bytes, pos);
    std::string_view text = trim_trailing_space(line.text);
    bool begin = is_begin_marker(text, m);
    if (!begin && text != m.end_line) continue;
    if (begin) {
      if (open || found)
        return broken_at(numbers->at(start), "a second begin marker '" + std::string(text) + "'");
      open = section_span{start, 0, start + line.text.size() + line.ending.size(), 0,
                          number_begin ? numbers->at(start) : 0, std::string(text)};
    } else {
      if (!open) return broken_at(numbers->at(start), "end marker without a begin marker");
      open->inner_end = start;
      open->end = start + line.text.size() + line.ending.size();
      found = open;
      open.reset();
    }
  }
  if (open) return broken_at(numbers->at(open->begin), "begin marker without an end marker");
  return found;
}

/// `find_section` without splitting the file into lines: the marker lines are found by one
/// `field_search` pass (a compare at each line that starts with a marker's first byte) and then
/// judged exactly as `find_section` judges them.
inline result<std::optional<section_span>> find_our_section(std::string_view bytes, const section_markers& m,
                                                            line_numberer* numbers = nullptr) {
  auto texts = marker_texts(m);
  if (!texts) return find_section(bytes, m, marker_after_bom::allowed);
  return section_from_marker_lines(bytes, m, find_candidates(bytes, {}, *texts).marker_lines, numbers);
}

inline bool inside(const std::optional<section_span>& s, std::size_t offset) {
  return s && offset >= s->begin && offset < s->end;
}

/// Calls `fn(const hosts_line&, hosts_names)` for each line starting at one of `starts` (sorted
/// line starts, as `lines_naming` gives), in file order; stops when `fn` returns false. Every
/// other line is never tokenised: no allocation per line. Lines are not numbered here (`number`
/// is 1 for the file's first line, for its BOM, and 0 for any other): callers number the lines
/// they report with `hosts_scan::line_number`, so that lines nobody reports are never counted.
template <class Fn>
void for_each_line_at(std::string_view bytes, const std::vector<std::size_t>& starts, Fn&& fn) {
  std::vector<std::string_view> names;
  for (std::size_t start : starts) {
    std::size_t pos = start;
    line_view lv = next_line(bytes, pos);
    names.clear();
    hosts_line line = read_line(lv, start == 0 ? 1 : 0, names);
    if (!fn(line, hosts_names{names.data(), names.size()})) break;
  }
}

/// Calls `fn(const line_view&, const hosts_line&, hosts_names)` for each line in [from, to) (both
/// line starts, e.g. our section's inner span), reusing one names buffer. Line numbers are not
/// counted (every line gets 2: not the first line, so no BOM is looked for: [from, to) is inside
/// our section, never at the file's start).
template <class Fn>
void for_each_line_between(std::string_view bytes, std::size_t from, std::size_t to, Fn&& fn) {
  std::vector<std::string_view> names;
  for (std::size_t pos = from; pos < to;) {
    line_view lv = next_line(bytes, pos);
    names.clear();
    hosts_line line = read_line(lv, 2, names);
    fn(lv, line, hosts_names{names.data(), names.size()});
  }
}

}  // namespace detail

/// Which line numbers `probe_hosts` fills in (see `scan_hosts`). Every other number (a conflict,
/// a commented-out or stale line, a disabled line, broken markers) is always there.
enum class hosts_numbering {
  /// Also the line of an in-sync mapping and our section's `begin_line_number`.
  all,
  /// Only where the file is not as wanted: an in-sync mapping's `line_number` and the section's
  /// `begin_line_number` stay 0. Numbering our section at the end of a 150k-line file is a pass
  /// over all of it (a fifth of the probe of a file in sync); HostsEntry shows neither number.
  problems_only,
};

/// The two searches probe_hosts and apply_hosts both start with, done once: our section (or the
/// broken-markers error) and the starts of the lines that may name a wanted name. HostsEntry's
/// probe runs both functions on the same bytes; sharing one scan halves its search work (the
/// name search alone was about 57% of probe time on the 150k-line benchmark file).
/// Build it with `scan_hosts`. It points into the scanned bytes, which must outlive it and stay
/// unchanged (the bytes are matched by address and size, not re-read). An overload given a scan
/// of another buffer, other markers or names that do not cover the wanted ones ignores it and
/// scans afresh: such a mix-up costs time, not a wrong answer.
struct hosts_scan {
  std::string_view bytes;          ///< the scanned input (matched by address and size)
  hosts_numbering numbering = hosts_numbering::all;  ///< which line numbers a probe fills in
  section_markers markers;         ///< the markers the section was searched with
  std::vector<std::string> names;  ///< the names the lines were searched for
  /// `find_our_section`'s answer: the section, none, or why the markers are broken.
  result<std::optional<section_span>> section = std::optional<section_span>{};
  /// Sorted starts of the lines naming one of `names` (`lines_naming`); empty when the markers
  /// are broken, since probe and apply then read no line.
  std::vector<std::size_t> line_starts;
  /// Line numbers, counted when first asked and kept (one counter for the marker lines and the
  /// reported lines): a probe of a file in sync with `hosts_numbering::problems_only` counts none.
  /// Asking changes this cache, so one scan is not for two threads at once.
  mutable detail::line_numberer numbers;

  /// The 1-based number of the line that starts at `offset` in `bytes`. Always counted in
  /// `bytes`: a scan built or changed by hand gets a counter of its own bytes first.
  std::size_t line_number(std::size_t offset) const {
    if (numbers.bytes().data() != bytes.data() || numbers.bytes().size() != bytes.size())
      numbers = detail::line_numberer(bytes);
    return numbers.at(offset);
  }
};

/// Scans `bytes` once for `probe_hosts`/`apply_hosts` with these markers and mappings. Never
/// fails: broken markers are kept in `section` and reported by the function given the scan.
inline hosts_scan scan_hosts(std::string_view bytes, const section_markers& markers,
                             const std::vector<hosts_mapping>& want, hosts_numbering numbering = hosts_numbering::all) {
  hosts_scan scan;
  scan.bytes = bytes;
  scan.numbering = numbering;
  scan.numbers = detail::line_numberer(bytes);
  scan.markers = markers;
  scan.names.reserve(want.size());
  for (const auto& m : want) scan.names.push_back(m.name);
  const bool number_begin = numbering == hosts_numbering::all;
  std::vector<std::string_view> wanted(scan.names.begin(), scan.names.end());
  if (auto texts = detail::marker_texts(markers)) {
    detail::hosts_candidates found = detail::find_candidates(bytes, wanted, *texts);  // one pass for both
    scan.section = detail::section_from_marker_lines(bytes, markers, found.marker_lines, &scan.numbers, number_begin);
    if (!scan.section) return scan;
    scan.line_starts = std::move(found.naming);
  } else {
    // Markers holding a line break: find_section reads every line and numbers them itself (a
    // rare, slow case); the mode still decides what the section reports.
    scan.section = detail::find_our_section(bytes, markers, &scan.numbers);
    if (!scan.section) return scan;
    if (!number_begin && *scan.section) (*scan.section)->begin_line_number = 0;
    scan.line_starts = detail::lines_naming(bytes, wanted);
  }
  return scan;
}

namespace detail {

/// `scan` was made from these bytes and markers for names covering every desired one. Extra
/// names only add lines that the callers' name checks skip, so the answer stays the same.
inline bool scan_fits(const hosts_scan& scan, std::string_view bytes, const section_markers& markers,
                      const std::vector<desired_mapping>& desired) {
  if (scan.bytes.data() != bytes.data() || scan.bytes.size() != bytes.size()) return false;
  if (scan.markers.begin_line != markers.begin_line || scan.markers.end_line != markers.end_line ||
      scan.markers.begin_prefixes != markers.begin_prefixes)
    return false;
  for (const auto& d : desired) {
    bool covered = false;
    for (const auto& n : scan.names) covered = covered || iequals_ascii(n, d.mapping.name);
    if (!covered) return false;
  }
  return true;
}

}  // namespace detail

/// Reports, per desired mapping, whether the file makes it resolve (see hosts_mapping_state).
/// One search per name over the file, tokenising only the lines that name one; broken markers ->
/// errc::broken_markers; invalid mappings -> invalid_input.
/// `given` should be `scan_hosts(bytes, markers, want)` (see hosts_scan; any other scan is ignored,
/// but for its `numbering`, which the scan made afresh keeps).
inline result<hosts_probe_result> probe_hosts(std::string_view bytes, const section_markers& markers,
                                              const std::vector<hosts_mapping>& want, const hosts_scan& given) {
  auto desired = detail::validate_mappings(want);
  if (!desired) return tl::unexpected(desired.error());
  hosts_scan fresh;
  const bool fits = detail::scan_fits(given, bytes, markers, *desired);
  if (!fits) fresh = scan_hosts(bytes, markers, want, given.numbering);
  const hosts_scan& scan = fits ? given : fresh;
  const auto& section = scan.section;
  if (!section) return tl::unexpected(section.error());

  hosts_probe_result out;
  out.section = *section;
  out.line_ending = std::string(preferred_line_ending(bytes));
  out.has_final_newline = ends_with_newline(bytes);
  std::vector<bool> decided(desired->size(), false);
  std::vector<bool> seen_commented(desired->size(), false);
  for (const auto& d : *desired) out.mappings.push_back({d.mapping, hosts_mapping_state::missing, 0, {}, {}, false});

  std::vector<std::string_view> scratch;
  std::size_t undecided = desired->size();
  const bool number_in_sync = scan.numbering == hosts_numbering::all;
  detail::for_each_line_at(bytes, scan.line_starts, [&](const hosts_line& line, hosts_names names) {
    if (line.kind == hosts_line_kind::entry) {
      for (std::size_t k = 0; k < desired->size(); ++k) {
        const auto& d = (*desired)[k];
        if (decided[k] || line.ip.family != d.ip.family || !detail::names_contain(names, d.mapping.name)) continue;
        decided[k] = true;
        --undecided;
        auto& st = out.mappings[k];
        st.line_text = std::string(line.text);
        st.in_section = detail::inside(*section, line.offset);
        bool same = line.ip == d.ip && line.zone.empty();
        st.found_address = std::string(line.address);
        st.state = same ? hosts_mapping_state::in_sync
                        : (st.in_section ? hosts_mapping_state::stale_in_section : hosts_mapping_state::conflict);
        // (0, not a commented-out line's number seen before: this line decides.)
        st.line_number = (!same || number_in_sync) ? scan.line_number(line.offset) : 0;
      }
    } else if (line.kind == hosts_line_kind::comment) {
      // Only the first commented-out mention is reported; a later real line still decides.
      hosts_line inner;
      scratch.clear();
      detail::read_fields(detail::uncommented(line.comment), inner, scratch);
      if (inner.kind != hosts_line_kind::entry) return true;
      hosts_names inner_names{scratch.data(), scratch.size()};
      for (std::size_t k = 0; k < desired->size(); ++k) {
        const auto& d = (*desired)[k];
        if (decided[k] || seen_commented[k] || inner.ip.family != d.ip.family ||
            !detail::names_contain(inner_names, d.mapping.name))
          continue;
        seen_commented[k] = true;
        auto& st = out.mappings[k];
        st.state = hosts_mapping_state::commented_out;
        st.line_number = scan.line_number(line.offset);
        st.line_text = std::string(line.text);
        st.found_address = std::string(inner.address);
        st.in_section = detail::inside(*section, line.offset);
      }
    }
    return undecided != 0;  // every name decided: the rest of the file cannot change the answer
  });
  return out;
}

/// Reports, per desired mapping, whether the file makes it resolve (see hosts_mapping_state):
/// `probe_hosts` with a scan of its own.
inline result<hosts_probe_result> probe_hosts(std::string_view bytes, const section_markers& markers,
                                              const std::vector<hosts_mapping>& want) {
  return probe_hosts(bytes, markers, want, scan_hosts(bytes, markers, want));
}

// ---------------------------------------------------------------------------------------------
// Apply

namespace detail {

/// The inner lines (between the first and the last line, our markers) of a recorded section.
inline std::unordered_multiset<std::string_view> recorded_inner_lines(std::string_view recorded) {
  std::vector<std::string_view> all;
  for (std::size_t pos = 0; pos < recorded.size();) all.push_back(next_line(recorded, pos).text);
  std::unordered_multiset<std::string_view> out;
  if (all.size() >= 2) out.insert(all.begin() + 1, all.end() - 1);
  return out;
}

/// The lines of `found_inner` (the body of our section as found in the file) not in `ours`
/// (matched by text as revert matches them, each taken once): lines someone else added.
inline std::unordered_multiset<std::string_view> foreign_section_lines(std::string_view found_inner,
                                                                        std::unordered_multiset<std::string_view> ours) {
  std::unordered_multiset<std::string_view> foreign;
  for (std::size_t pos = 0; pos < found_inner.size();) {
    std::string_view text = next_line(found_inner, pos).text;
    auto it = ours.find(text);
    if (it != ours.end()) ours.erase(it);
    else foreign.insert(text);
  }
  return foreign;
}

/// True when recorded section `recorded` has an inner line that recorded section `other` lacks
/// (lines matched by text, each taken once).
inline bool has_line_beyond(std::string_view recorded, std::string_view other) {
  std::unordered_multiset<std::string_view> theirs = recorded_inner_lines(other);
  for (std::string_view line : recorded_inner_lines(recorded)) {
    auto it = theirs.find(line);
    if (it == theirs.end()) return true;
    theirs.erase(it);
  }
  return false;
}

/// Our lines in `found_inner`, by a record: those of its `section`, or, when the file still holds
/// the section as it was before the record's write (`before_write`, kept while that write may not
/// have happened), those. The one that leaves fewer of the found lines unexplained is the file's
/// state (a user's edits since aside); a tie goes to `section`, the newer.
inline std::unordered_multiset<std::string_view> owned_lines(std::string_view found_inner, std::string_view section,
                                                             std::string_view before_write) {
  std::unordered_multiset<std::string_view> listed = recorded_inner_lines(section);
  if (before_write.empty()) return listed;
  std::unordered_multiset<std::string_view> before = recorded_inner_lines(before_write);
  if (foreign_section_lines(found_inner, before).size() < foreign_section_lines(found_inner, listed).size())
    return before;
  return listed;
}

/// `written` (our section as apply writes it, markers first and last) without the inner lines
/// `foreign` lists (each taken once): what the record says is ours.
inline std::string owned_section(std::string_view written, std::unordered_multiset<std::string_view> foreign) {
  std::string out;
  out.reserve(written.size());
  std::size_t pos = 0;
  bool first = true;
  while (pos < written.size()) {
    line_view lv = next_line(written, pos);
    const bool last = pos >= written.size();
    auto it = first || last ? foreign.end() : foreign.find(lv.text);
    first = false;
    if (it != foreign.end()) {
      foreign.erase(it);
      continue;
    }
    out.append(lv.text).append(lv.ending);
  }
  return out;
}

}  // namespace detail

struct hosts_revert_record;

/// How apply treats conflicts.
struct hosts_edit_options {
  /// Disable (comment out, tagged) a line outside our section that maps a desired name to another
  /// address, and re-add that line's other names in our section with their old address, so only
  /// the desired names change their answer (lines that would take over one of those names are
  /// disabled as well).
  bool override_conflicts = false;
  /// The tag for disabled lines; `disabled_line_prefix(app_id)`. Required with override_conflicts.
  std::string disable_prefix;
  /// False: describe the edit only (`bytes` stays empty and `section_line_number` 0; `changed`,
  /// the lists and the record are exact). A probe needs the description, not a second copy of a
  /// large file.
  bool compute_bytes = true;
  /// The record of the apply before this one, when there is one (HostsEntry passes its record
  /// item's). A line in our section that it does not list was added there by someone else (the
  /// user): it stays in the file, and the new record does not list it either, so revert leaves
  /// it and says so. Without it every line of a section found in the file counts as ours (a
  /// section whose record was lost, or one Docker Desktop wrote under its own markers).
  const hosts_revert_record* previous = nullptr;
};

/// A line apply disabled: where it was and its exact original text (without the line ending,
/// which is kept as it was).
struct hosts_disabled_line {
  std::size_t line_number = 0;
  std::string original;  ///< the line before
  std::string written;   ///< the line after (disable_prefix + original)
};

/// What revert needs to undo an apply exactly. Keep it in the record. When merging the records of
/// several applies, keep `added_newline_before_section` true once set and the union of `disabled`.
struct hosts_revert_record {
  /// Our section as written, markers and endings included, less the lines someone else added to
  /// it (see hosts_edit_options::previous): the lines revert removes.
  std::string section;
  /// Our lines of the section as the file held it before this apply (markers first and last;
  /// empty: no section, or every line of it is in `section`). A record written ahead of the file's
  /// replace keeps it until the write is done: after a crash between the two the file still holds
  /// those lines, and revert (or the next apply) must know them as ours, not as lines someone else
  /// added. Of the two, the one that explains more of the section found is taken
  /// (detail::owned_lines). Clear it once the file is written (HostsEntry: its final record; after a
  /// crash past the write but before that record, it stays until the next run that writes the file).
  std::string section_before_write;
  bool added_newline_before_section = false;  ///< apply terminated the file's last line to append
  std::vector<hosts_disabled_line> disabled;  ///< lines apply disabled
};

/// The outcome of apply: the new bytes, and each change, so a primitive can report and record it.
struct hosts_apply_result {
  std::string bytes;   ///< the whole new file (empty when `compute_bytes` was false)
  std::string section;  ///< our section as it will be in the file (empty: none), a user's lines in it included
  bool changed = false;  ///< bytes differ from the input (false: make no write)
  std::vector<hosts_mapping> added;    ///< mappings now written in our section that were not there
  std::vector<hosts_mapping_status> conflicts_left;  ///< conflicts not overridden (nothing added for them)
  std::vector<hosts_disabled_line> disabled;          ///< lines disabled by override
  std::vector<hosts_mapping> carried;                 ///< other names of disabled lines, re-added in the section
  std::vector<std::string> dropped_section_lines;     ///< stale lines of our section that were removed
  std::size_t section_line_number = 0;  ///< line number of the begin marker in the new bytes (0: no section, or
                                        ///< `compute_bytes` was false)
  hosts_revert_record record;           ///< what revert needs
};

namespace detail {

/// A line's address is the desired one: same bytes and no zone id (fe80::1%lo0 is not fe80::1).
inline bool same_address(const desired_mapping& d, const hosts_line& line) {
  return line.ip == d.ip && line.zone.empty();
}

/// A name's lookup key in one address family: family tag + lower-case name.
inline std::string family_name_key(address_family f, std::string_view name) {
  return std::string(1, f == address_family::ipv4 ? '4' : '6') + ascii_lower(name);
}

/// The override's choice of lines to disable in `before` (the bytes before our section), in one
/// forward pass, calling `disable(line)` for each. Whether a line is disabled depends only on the
/// lines above it, so one pass in file order decides all of them. A line is disabled when
/// - it is the first live line naming a desired name (in that family) with another address, or
/// - it names, with another address, a name whose deciding line above was disabled: once that
///   line is a comment this one would decide the name, so it goes too (the name is re-added in
///   our section with its old address, and so are this line's own names).
/// Names already decided by a live line above are left alone: the lines below never decided them.
/// The result: every desired name is decided by a correct line or by our section, and every other
/// name resolves as it did. Only called when some desired name's first line conflicts.
template <class Disable>
void disable_by_override(std::string_view before, const std::vector<desired_mapping>& desired, Disable&& disable) {
  struct old_answer {
    ip_address ip;
    std::string zone;
  };
  std::vector<bool> decided(desired.size(), false);
  std::unordered_set<std::string> decided_live;                 // other names decided by a live line
  std::unordered_map<std::string, old_answer> decided_disabled;  // other names decided by a disabled line
  auto desired_index = [&](std::string_view n, address_family f) -> std::size_t {
    for (std::size_t k = 0; k < desired.size(); ++k)
      if (desired[k].ip.family == f && iequals_ascii(desired[k].mapping.name, n)) return k;
    return desired.size();
  };
  for_each_hosts_line(before, [&](const hosts_line& line, hosts_names names) {
    if (line.kind != hosts_line_kind::entry) return;
    bool off = false;
    for (std::string_view n : names) {
      const std::size_t k = desired_index(n, line.ip.family);
      if (k < desired.size()) {
        off = off || (!decided[k] && !same_address(desired[k], line));
        continue;
      }
      auto it = decided_disabled.find(family_name_key(line.ip.family, n));
      off = off || (it != decided_disabled.end() && !(it->second.ip == line.ip && it->second.zone == line.zone));
    }
    for (std::string_view n : names) {
      const std::size_t k = desired_index(n, line.ip.family);
      if (k < desired.size()) {
        decided[k] = decided[k] || !off;
        continue;
      }
      std::string key = family_name_key(line.ip.family, n);
      if (decided_live.count(key) != 0) continue;
      auto it = decided_disabled.find(key);
      if (it != decided_disabled.end()) {
        // A live line here has the old address (else it would be off): it decides the name now.
        if (!off) {
          decided_disabled.erase(it);
          decided_live.insert(std::move(key));
        }
        continue;
      }
      if (off) decided_disabled.emplace(std::move(key), old_answer{line.ip, std::string(line.zone)});
      else decided_live.insert(std::move(key));
    }
    if (off) disable(line);
  });
}

}  // namespace detail

/// Computes the new file that makes every desired mapping resolve, touching only our section (and,
/// with override, tagging conflicting lines). Pure: returns bytes and a description of the edit.
/// Broken markers -> errc::broken_markers and nothing produced; invalid mappings or prefix ->
/// errc::invalid_input. Idempotent: applying to its own output returns `changed == false`.
/// `given` should be `scan_hosts(bytes, markers, want)` (see hosts_scan; any other scan is ignored,
/// but for its `numbering`, which the scan made afresh keeps).
inline result<hosts_apply_result> apply_hosts(std::string_view bytes, const section_markers& markers,
                                              const std::vector<hosts_mapping>& want,
                                              const hosts_edit_options& options, const hosts_scan& given) {
  auto desired_r = detail::validate_mappings(want);
  if (!desired_r) return tl::unexpected(desired_r.error());
  const auto& desired = *desired_r;
  if (options.override_conflicts || !options.disable_prefix.empty()) {
    const auto& p = options.disable_prefix;
    if (p.empty() || p[0] != '#')
      return fail(errc::invalid_input, "validate disable prefix", "'" + detail::printable(p) + "'",
                  "must start with '#' so the disabled line is a comment", "use disabled_line_prefix(app_id)");
    for (char c : p)
      if (c == '\n' || c == '\r' || c == '\0')
        return fail(errc::invalid_input, "validate disable prefix", "'" + detail::printable(p) + "'",
                    "contains a line break or NUL");
  }
  hosts_scan fresh;
  const bool fits = detail::scan_fits(given, bytes, markers, desired);
  if (!fits) fresh = scan_hosts(bytes, markers, want, given.numbering);
  const hosts_scan& scan = fits ? given : fresh;
  const auto& section_r = scan.section;
  if (!section_r) return tl::unexpected(section_r.error());
  const std::optional<section_span>& section = *section_r;
  const std::size_t section_begin = section ? section->begin : bytes.size();
  const std::size_t section_end = section ? section->end : bytes.size();

  // One pass: for each desired mapping, the lines that name it (in its family) before our
  // section, the first such line after it, and whether our section names it at all.
  struct match {
    std::size_t offset;
    std::string_view text;
    std::string_view address;
    bool same;
  };
  const std::size_t k_count = desired.size();
  std::vector<std::vector<match>> before(k_count);
  std::vector<std::optional<match>> after(k_count);
  std::vector<bool> named_in_section(k_count, false);
  // Without override, collecting stops at a correct line: later ones cannot matter. With it, that
  // line may be disabled for another name, and the next one naming this name then decides.
  std::vector<bool> before_done(k_count, false);
  detail::for_each_line_at(bytes, scan.line_starts, [&](const hosts_line& line, hosts_names names) {
    bool in_sec = section && line.offset >= section_begin && line.offset < section_end;
    if (line.kind != hosts_line_kind::entry) return true;
    for (std::size_t k = 0; k < k_count; ++k) {
      const auto& d = desired[k];
      if (line.ip.family != d.ip.family || !detail::names_contain(names, d.mapping.name)) continue;
      bool same = detail::same_address(d, line);
      match m{line.offset, line.text, line.address, same};
      if (in_sec) {
        named_in_section[k] = true;
      } else if (line.offset < section_begin) {
        if (!before_done[k]) before[k].push_back(m);
        if (same && !options.override_conflicts) before_done[k] = true;
      } else if (!after[k]) {
        after[k] = m;
      }
    }
    return true;
  });

  // Override: which lines before our section to disable (see disabled_by_override).
  std::vector<std::size_t> disabled_offsets;
  std::unordered_set<std::size_t> disabled_set;
  auto is_disabled = [&](std::size_t off) { return disabled_set.count(off) != 0; };
  hosts_apply_result out;
  bool any_conflict = false;
  for (std::size_t k = 0; k < k_count; ++k) any_conflict = any_conflict || (!before[k].empty() && !before[k][0].same);
  if (options.override_conflicts && any_conflict) {
    detail::disable_by_override(bytes.substr(0, section_begin), desired, [&](const hosts_line& line) {
      disabled_offsets.push_back(line.offset);
      disabled_set.insert(line.offset);
      out.disabled.push_back({line.number, std::string(line.text), options.disable_prefix + std::string(line.text)});
    });
  }

  // Which mappings need a line in our section.
  std::vector<bool> needed(k_count, false);
  std::vector<bool> decided_before(k_count, false);  // by a live line above our section
  auto leave_conflict = [&](std::size_t k, const match& m) {
    hosts_mapping_status st;
    st.mapping = desired[k].mapping;
    st.state = hosts_mapping_state::conflict;
    st.line_number = scan.line_number(m.offset);
    st.line_text = std::string(m.text);
    st.found_address = std::string(m.address);
    out.conflicts_left.push_back(std::move(st));
  };
  for (std::size_t k = 0; k < k_count; ++k) {
    const match* first = nullptr;
    for (const auto& m : before[k])
      if (!is_disabled(m.offset)) {
        first = &m;
        break;
      }
    if (first) {
      decided_before[k] = true;
      if (!first->same) leave_conflict(k, *first);
      continue;  // decided before our section: correct (nothing to add) or a conflict left alone
    }
    // Nothing before us: our section decides if it names the name. Otherwise the first line
    // after it decides: a correct one already does the job, and one with another address is a
    // conflict like one above. Without override it is left alone (a line of ours would come
    // first and take the name over); with it, our line does come first, so that line no longer
    // decides the name and its other names still resolve through it: nothing to disable.
    if (!named_in_section[k] && after[k] && !after[k]->same && !options.override_conflicts) {
      leave_conflict(k, *after[k]);
      continue;
    }
    needed[k] = named_in_section[k] || !(after[k] && after[k]->same);
  }

  // Other names of disabled lines, re-added with their old address (first disabled line wins),
  // at the top of our section: they decided those names above every line of the section, so
  // they still do.
  const std::string eol(preferred_line_ending(bytes));
  std::string inner;
  auto is_desired_name = [&](std::string_view name, address_family f) {
    for (const auto& d : desired)
      if (d.ip.family == f && iequals_ascii(d.mapping.name, name)) return true;
    return false;
  };
  auto carry = [&](std::string_view address, std::string_view name) {
    inner.append(address).append("\t").append(name).append(eol);
    out.carried.push_back({std::string(address), std::string(name)});
  };
  if (!disabled_offsets.empty()) {
    std::vector<std::size_t> sorted = disabled_offsets;
    std::sort(sorted.begin(), sorted.end());
    // Keyed (family + lower-case name): an override of a blocklist can carry 10,000s of names.
    // A name whose first line in our section already gives the same answer needs no line of its
    // own (a run after an earlier override would otherwise write it twice).
    struct answer {
      ip_address ip;
      std::string_view zone;
    };
    std::unordered_map<std::string, answer> first_in_section;
    if (section)
      detail::for_each_line_between(bytes, section->inner_begin, section->inner_end,
                                    [&](const line_view&, const hosts_line& line, hosts_names names) {
                                      if (line.kind != hosts_line_kind::entry) return;
                                      for (std::string_view n : names)
                                        first_in_section.emplace(detail::family_name_key(line.ip.family, n),
                                                                 answer{line.ip, line.zone});
                                    });
    std::vector<std::string_view> names;
    std::unordered_set<std::string> carried_names;
    for (std::size_t off : sorted) {
      std::size_t pos = off;
      line_view lv = detail::next_line(bytes, pos);
      names.clear();
      hosts_line line = detail::read_line(lv, off == 0 ? 1 : 2, names);
      for (std::string_view n : names) {
        if (is_desired_name(n, line.ip.family)) continue;
        std::string key = detail::family_name_key(line.ip.family, n);
        auto there = first_in_section.find(key);
        const bool answered = there != first_in_section.end() && there->second.ip == line.ip &&
                              there->second.zone == line.zone;
        if (carried_names.insert(std::move(key)).second && !answered) carry(line.address, n);
      }
    }
  }

  // The rest of the section body: our section's lines kept unless one decides a wanted name
  // with another address (stale: dropped, its other names kept in its place, one line each, so
  // they resolve as before); then the missing lines. What probe reads is what apply judges: an
  // occurrence of a wanted name that an earlier line already decides changes nothing and is kept,
  // whatever its address, so a file probe calls in sync is never rewritten. Lines we did not
  // write (comments, other entries, other names on our lines) stay as they are.
  std::vector<bool> emitted(k_count, false);  // decided correctly by a kept line of the section
  // With the previous record: the lines of our section someone else added, and the lines made
  // from the other names of such a line when it is dropped (theirs too, so revert keeps them).
  std::unordered_multiset<std::string_view> foreign;
  std::vector<std::string> carried_for_them;
  if (options.previous && section) {
    std::string_view found_inner = bytes.substr(section->inner_begin, section->inner_end - section->inner_begin);
    foreign = detail::foreign_section_lines(
        found_inner,
        detail::owned_lines(found_inner, options.previous->section, options.previous->section_before_write));
  }
  if (section) {
    detail::for_each_line_between(bytes, section->inner_begin, section->inner_end, [&](const line_view& lv,
                                                                                        const hosts_line& line,
                                                                                        hosts_names names) {
      std::string_view whole = bytes.substr(lv.offset, lv.text.size() + lv.ending.size());
      if (line.kind != hosts_line_kind::entry) {
        inner.append(whole);
        return;
      }
      bool stale = false;
      std::vector<std::size_t> decides;  // wanted names this line decides, correctly
      for (std::string_view n : names) {
        for (std::size_t k = 0; k < k_count; ++k) {
          if (desired[k].ip.family != line.ip.family || !iequals_ascii(desired[k].mapping.name, n)) continue;
          if (decided_before[k] || emitted[k] || std::find(decides.begin(), decides.end(), k) != decides.end())
            continue;  // decided above (or earlier on this line): this occurrence changes nothing
          if (line.ip == desired[k].ip && line.zone.empty()) decides.push_back(k);
          else stale = true;
        }
      }
      if (!stale) {
        inner.append(whole);
        for (std::size_t k : decides) emitted[k] = true;
        return;
      }
      out.dropped_section_lines.push_back(std::string(lv.text));
      const bool theirs = foreign.count(lv.text) != 0;
      for (std::string_view n : names)
        if (!is_desired_name(n, line.ip.family)) {
          carry(line.address, n);
          if (theirs) carried_for_them.push_back(std::string(line.address) + "\t" + std::string(n));
        }
    });
  }
  for (std::size_t k = 0; k < k_count; ++k) {
    if (!needed[k] || emitted[k]) continue;
    inner += desired[k].mapping.address + "\t" + desired[k].mapping.name + eol;
    out.added.push_back(desired[k].mapping);
  }

  // The section as it will be written.
  std::sort(disabled_offsets.begin(), disabled_offsets.end());
  std::sort(out.disabled.begin(), out.disabled.end(),
            [](const hosts_disabled_line& a, const hosts_disabled_line& b) { return a.line_number < b.line_number; });
  std::string section_text;
  if (section) {
    // Keep our marker lines as they are unless the begin line is from an older format.
    std::size_t pos = section->begin;
    line_view begin_lv = detail::next_line(bytes, pos);
    if (detail::trim_trailing_space(begin_lv.text) == markers.begin_line)
      section_text.append(bytes.substr(section->begin, section->inner_begin - section->begin));
    else
      section_text.append(markers.begin_line).append(begin_lv.ending);
    section_text.append(inner);
    section_text.append(bytes.substr(section->inner_end, section->end - section->inner_end));
  } else if (!inner.empty()) {
    // Disabling tags go at line starts, never at the end: the part before the section ends as
    // the input does, so whether it needs a line ending is read from the input.
    out.record.added_newline_before_section = !ends_with_newline(bytes.substr(0, section_begin));
    section_text = markers.begin_line + eol + inner + markers.end_line + eol;
  }
  // Tags hold no line break, so the begin marker's line number is read from the input too.
  if (options.compute_bytes && (section || !inner.empty()))
    out.section_line_number = 1 + detail::count_line_breaks(bytes, 0, section_begin) +
                              (out.record.added_newline_before_section ? 1 : 0);
  out.changed = !out.disabled.empty() ||
                (section ? section_text != bytes.substr(section->begin, section->end - section->begin) : !inner.empty());

  // Assemble: the part before our section (with disabled lines tagged), the section, the rest,
  // into one buffer sized once.
  if (options.compute_bytes) {
    std::string& result_bytes = out.bytes;
    result_bytes.reserve(bytes.size() + section_text.size() + eol.size() +
                         disabled_offsets.size() * options.disable_prefix.size());
    std::size_t copied = 0;
    for (std::size_t off : disabled_offsets) {
      result_bytes.append(bytes.substr(copied, off - copied));
      result_bytes.append(options.disable_prefix);
      copied = off;
    }
    result_bytes.append(bytes.substr(copied, section_begin - copied));
    if (out.record.added_newline_before_section) result_bytes.append(eol);
    result_bytes.append(section_text);
    result_bytes.append(bytes.substr(section_end));
  }
  std::string before_write;
  if (section) {
    std::string_view found = bytes.substr(section->begin, section->end - section->begin);
    before_write = foreign.empty() ? std::string(found) : detail::owned_section(found, foreign);
  }
  for (const std::string& t : carried_for_them) foreign.insert(t);
  out.record.section = foreign.empty() ? section_text : detail::owned_section(section_text, foreign);
  // Only when it names a line the new section does not: else it could never be taken.
  if (detail::has_line_beyond(before_write, out.record.section)) out.record.section_before_write = std::move(before_write);
  out.section = std::move(section_text);
  out.record.disabled = out.disabled;
  return out;
}

/// Computes the new file that makes every desired mapping resolve (see above): `apply_hosts`
/// with a scan of its own.
inline result<hosts_apply_result> apply_hosts(std::string_view bytes, const section_markers& markers,
                                              const std::vector<hosts_mapping>& want,
                                              const hosts_edit_options& options) {
  return apply_hosts(bytes, markers, want, options, scan_hosts(bytes, markers, want));
}

// ---------------------------------------------------------------------------------------------
// Revert

/// The outcome of revert.
struct hosts_revert_result {
  std::string bytes;     ///< the whole new file
  bool changed = false;  ///< bytes differ from the input
  bool section_found = false;
  std::vector<std::string> kept_user_lines;       ///< lines in our section we did not write, left in place
  std::vector<hosts_disabled_line> restored;      ///< disabled lines given back (line numbers as found)
  std::vector<hosts_disabled_line> not_found;     ///< recorded disabled lines no longer present as written
};

/// Removes our section and re-enables every line carrying `disable_prefix` (the lines apply
/// disabled), giving back the original bytes. With `record` (from apply), lines in the section
/// that apply did not write are kept in place and listed in `kept_user_lines`, and a final newline
/// apply added is removed again. Without a record the whole section is removed.
/// Broken markers -> errc::broken_markers, nothing produced.
inline result<hosts_revert_result> revert_hosts(std::string_view bytes, const section_markers& markers,
                                                std::string_view disable_prefix,
                                                const hosts_revert_record* record = nullptr) {
  auto section_r = detail::find_our_section(bytes, markers);
  if (!section_r) return tl::unexpected(section_r.error());
  const std::optional<section_span>& section = *section_r;
  hosts_revert_result out;
  out.section_found = section.has_value();
  const std::size_t section_begin = section ? section->begin : bytes.size();
  const std::size_t section_end = section ? section->end : bytes.size();

  // What we wrote between the markers (or had there before a write that may not have happened).
  std::unordered_multiset<std::string_view> ours;
  if (record && section)
    ours = detail::owned_lines(bytes.substr(section->inner_begin, section->inner_end - section->inner_begin),
                               record->section, record->section_before_write);

  std::string& o = out.bytes;
  o.reserve(bytes.size());
  std::size_t pos = 0, number = 0;
  // A section begins mid-line only right after a BOM that starts the file (find_section): the BOM
  // is copied first, and may go with the section below.
  const bool section_after_bom = section && section->begin == detail::utf8_bom.size() &&
                                 bytes.compare(0, section->begin, detail::utf8_bom) == 0;
  if (section_after_bom) {
    o.append(detail::utf8_bom);
    pos = section->begin;
  }
  while (pos < bytes.size()) {
    line_view lv = detail::next_line(bytes, pos);
    ++number;
    bool in_sec = section && lv.offset >= section_begin && lv.offset < section_end;
    if (in_sec) {
      if (lv.offset < section->inner_begin || lv.offset >= section->inner_end) continue;  // a marker
      if (record) {
        auto it = ours.find(lv.text);
        if (it != ours.end()) {
          ours.erase(it);
          continue;
        }
        out.kept_user_lines.push_back(std::string(lv.text));
        o.append(lv.text).append(lv.ending);
      }
      continue;
    }
    if (!disable_prefix.empty() && lv.text.substr(0, disable_prefix.size()) == disable_prefix) {
      std::string_view original = lv.text.substr(disable_prefix.size());
      out.restored.push_back({number, std::string(original), std::string(lv.text)});
      o.append(original).append(lv.ending);
      continue;
    }
    o.append(lv.text).append(lv.ending);
  }
  // Undo the final newline apply added, when the section was the last thing in the file.
  if (record && record->added_newline_before_section && section && section_end == bytes.size() &&
      out.kept_user_lines.empty()) {
    if (o.size() >= 2 && o.compare(o.size() - 2, 2, "\r\n") == 0) o.resize(o.size() - 2);
    else if (!o.empty() && (o.back() == '\n' || o.back() == '\r')) o.pop_back();
  }
  // A section that began the file after a BOM (an editor added the mark): with the section gone,
  // the mark would stand before the next line, and an entry there would decide nothing (the
  // resolver reads the mark as part of the address). Then the mark goes with the section, as it
  // does when nothing follows it (a file hostcfg created is then empty again, and removed).
  if (section_after_bom) {
    std::size_t first_pos = section->begin;
    std::vector<std::string_view> names;
    const bool nothing_follows = o.size() == section->begin;
    if (nothing_follows ||
        detail::read_line(detail::next_line(o, first_pos), 2, names).kind == hosts_line_kind::entry)  // 2: as if unmarked
      o.erase(0, section->begin);
  }
  if (record && !record->disabled.empty()) {
    std::unordered_multiset<std::string_view> restored;
    for (const auto& r : out.restored) restored.insert(r.original);
    for (const auto& d : record->disabled) {
      auto it = restored.find(d.original);
      if (it == restored.end()) out.not_found.push_back(d);
      else restored.erase(it);
    }
  }
  out.changed = o != bytes;
  return out;
}

HOSTCFG_END_NAMESPACE
