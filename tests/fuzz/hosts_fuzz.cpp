// libFuzzer target for the hosts codec: parse/serialize and probe/apply/revert invariants, and
// the fast paths (issue 4: probe reads only the lines naming a desired mapping, finds our section
// without splitting the file, describes an edit without building the bytes, shares one scan
// between probe and apply) checked against the plain line-by-line reading they replace, so a
// skipped line can never change an answer.
// clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude tests/fuzz/hosts_fuzz.cpp
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hostcfg/format/hosts.hpp"
#include "support/fuzz_check.hpp"

namespace {

using namespace hostcfg;

/// Line breaks in [0, end) counted byte by byte ('\n', "\r\n" once, a lone '\r'), as the
/// codec counted them before count_line_breaks.
std::size_t naive_breaks(std::string_view bytes, std::size_t from, std::size_t to) {
  std::size_t n = 0;
  for (std::size_t i = from; i < to; ++i) {
    if (bytes[i] == '\n') ++n;
    else if (bytes[i] == '\r' && !(i + 1 < bytes.size() && bytes[i + 1] == '\n')) ++n;
  }
  return n;
}

/// probe_hosts as it was before the fast path: every line read, no early stop.
std::vector<hosts_mapping_status> reference_probe(std::string_view bytes, const std::optional<section_span>& section,
                                                  const std::vector<detail::desired_mapping>& desired) {
  std::vector<hosts_mapping_status> out;
  for (const auto& d : desired) out.push_back({d.mapping, hosts_mapping_state::missing, 0, {}, {}, false});
  std::vector<bool> decided(desired.size(), false), seen_commented(desired.size(), false);
  std::vector<std::string_view> scratch;
  detail::for_each_hosts_line(bytes, [&](const hosts_line& line, hosts_names names) {
    if (line.kind == hosts_line_kind::entry) {
      for (std::size_t k = 0; k < desired.size(); ++k) {
        const auto& d = desired[k];
        if (decided[k] || line.ip.family != d.ip.family || !detail::names_contain(names, d.mapping.name)) continue;
        decided[k] = true;
        auto& st = out[k];
        st.line_number = line.number;
        st.line_text = std::string(line.text);
        st.in_section = detail::inside(section, line.offset);
        st.found_address = std::string(line.address);
        st.state = line.ip == d.ip && line.zone.empty()
                       ? hosts_mapping_state::in_sync
                       : (st.in_section ? hosts_mapping_state::stale_in_section : hosts_mapping_state::conflict);
      }
    } else if (line.kind == hosts_line_kind::comment) {
      hosts_line inner;
      scratch.clear();
      detail::read_fields(detail::uncommented(line.comment), inner, scratch);
      if (inner.kind != hosts_line_kind::entry) return;
      hosts_names inner_names{scratch.data(), scratch.size()};
      for (std::size_t k = 0; k < desired.size(); ++k) {
        const auto& d = desired[k];
        if (decided[k] || seen_commented[k] || inner.ip.family != d.ip.family ||
            !detail::names_contain(inner_names, d.mapping.name))
          continue;
        seen_commented[k] = true;
        auto& st = out[k];
        st.state = hosts_mapping_state::commented_out;
        st.line_number = line.number;
        st.line_text = std::string(line.text);
        st.found_address = std::string(inner.address);
        st.in_section = detail::inside(section, line.offset);
      }
    }
  });
  return out;
}

bool same_status(const hosts_mapping_status& a, const hosts_mapping_status& b) {
  return a.mapping == b.mapping && a.state == b.state && a.line_number == b.line_number &&
         a.line_text == b.line_text && a.found_address == b.found_address && a.in_section == b.in_section;
}

bool same_span(const section_span& a, const section_span& b) {
  return a.begin == b.begin && a.end == b.end && a.inner_begin == b.inner_begin && a.inner_end == b.inner_end &&
         a.begin_line_number == b.begin_line_number && a.begin_line == b.begin_line;
}

bool same_disabled(const std::vector<hosts_disabled_line>& a, const std::vector<hosts_disabled_line>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].line_number != b[i].line_number || a[i].original != b[i].original || a[i].written != b[i].written)
      return false;
  return true;
}

/// Two probe answers are the same: the same error, or the same statuses and file shape.
bool same_probe(const result<hosts_probe_result>& a, const result<hosts_probe_result>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return a.error().message() == b.error().message();
  if (a->mappings.size() != b->mappings.size() || a->section.has_value() != b->section.has_value() ||
      a->line_ending != b->line_ending || a->has_final_newline != b->has_final_newline)
    return false;
  if (a->section && !same_span(*a->section, *b->section)) return false;
  for (std::size_t k = 0; k < a->mappings.size(); ++k)
    if (!same_status(a->mappings[k], b->mappings[k])) return false;
  return true;
}

/// `lazy` is `every` with the numbers hosts_numbering::problems_only leaves out (an in-sync
/// mapping's line, the section's begin line) set to 0, and nothing else different.
bool same_probe_but_in_sync_numbers(const result<hosts_probe_result>& every, const result<hosts_probe_result>& lazy) {
  if (!every || !lazy) return same_probe(every, lazy);
  hosts_probe_result expected = *every;
  if (expected.section) expected.section->begin_line_number = 0;
  for (auto& st : expected.mappings)
    if (st.state == hosts_mapping_state::in_sync) st.line_number = 0;
  return same_probe(result<hosts_probe_result>(expected), lazy);
}

/// Two apply answers are the same: the same error, or the same bytes, lists and record.
bool same_apply(const result<hosts_apply_result>& a, const result<hosts_apply_result>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return a.error().message() == b.error().message();
  if (a->bytes != b->bytes || a->changed != b->changed || a->added != b->added || a->carried != b->carried ||
      a->dropped_section_lines != b->dropped_section_lines || a->section_line_number != b->section_line_number ||
      a->conflicts_left.size() != b->conflicts_left.size() || !same_disabled(a->disabled, b->disabled) ||
      a->record.section != b->record.section ||
      a->record.added_newline_before_section != b->record.added_newline_before_section ||
      !same_disabled(a->record.disabled, b->record.disabled))
    return false;
  for (std::size_t k = 0; k < a->conflicts_left.size(); ++k)
    if (!same_status(a->conflicts_left[k], b->conflicts_left[k])) return false;
  return true;
}

/// Every name's answer per family (family tag + lower-case name -> the address, canonical, and
/// its zone id): the first entry line naming it, as the resolver reads the file. Canonical, since
/// "::02" and "::2" are one answer (getaddrinfo gives the binary address).
std::map<std::string, std::string> answers(std::string_view bytes) {
  std::map<std::string, std::string> out;
  detail::for_each_hosts_line(bytes, [&](const hosts_line& line, hosts_names names) {
    if (line.kind != hosts_line_kind::entry) return;
    const std::string answer = to_string(line.ip) + "%" + std::string(line.zone);
    for (std::string_view n : names) out.emplace(detail::family_name_key(line.ip.family, n), answer);
  });
  return out;
}

/// The fast paths against byte-by-byte reading: line counts, the case-insensitive finder, the
/// section finder and the line selection probe and apply rely on.
void check_fast_paths(std::string_view bytes, const section_markers& markers,
                      const std::vector<detail::desired_mapping>& desired) {
  // count_line_breaks over the whole input and over a range cut at an arbitrary byte (between a
  // '\r' and its '\n' too).
  HOSTCFG_FUZZ_CHECK(detail::count_line_breaks(bytes, 0, bytes.size()) == naive_breaks(bytes, 0, bytes.size()));
  const std::size_t cut = bytes.size() / 3, cut2 = bytes.size() - bytes.size() / 5;
  HOSTCFG_FUZZ_CHECK(detail::count_line_breaks(bytes, cut, cut2) == naive_breaks(bytes, cut, cut2));
  HOSTCFG_FUZZ_CHECK(detail::count_byte(bytes.data() + cut, bytes.data() + cut2, '#') ==
        static_cast<std::size_t>(std::count(bytes.begin() + static_cast<std::ptrdiff_t>(cut),
                                            bytes.begin() + static_cast<std::ptrdiff_t>(cut2), '#')));

  // field_search finds, in one pass, every occurrence of a name right after a space or a tab and
  // every line start holding one of the chosen bytes, in order, as a byte-by-byte reading does;
  // the AVX2 and the portable loops agree. Names: the desired ones and one cut from the input
  // (any bytes, lengths 1 to 24, so non-letter first/last bytes and the tail are exercised too).
  std::vector<std::string_view> needles;
  for (const auto& d : desired) needles.emplace_back(d.mapping.name);
  if (!bytes.empty()) needles.push_back(bytes.substr(bytes.size() / 2, 1 + bytes.size() % 24));
  std::string firsts = "#";
  if (!bytes.empty()) firsts.push_back(bytes[bytes.size() / 3]);
  std::vector<std::string_view> searched;  // field_search numbers the non-empty names only
  for (std::string_view n : needles)
    if (!n.empty()) searched.push_back(n);
  using hit = std::pair<std::size_t, std::size_t>;  // (position, name index or SIZE_MAX for a line)
  std::vector<hit> naive;
  for (std::size_t p = 0; p < bytes.size(); ++p) {
    if (p > 0 && detail::is_field_space(bytes[p - 1]))
      for (std::size_t k = 0; k < searched.size(); ++k)
        if (searched[k].size() <= bytes.size() - p && iequals_ascii(bytes.substr(p, searched[k].size()), searched[k]))
          naive.emplace_back(p, k);
    if ((p == 0 || bytes[p - 1] == '\n' || bytes[p - 1] == '\r') && firsts.find(bytes[p]) != std::string::npos)
      naive.emplace_back(p, SIZE_MAX);
  }
  for (auto isa : {detail::search_isa::best, detail::search_isa::portable}) {
    std::vector<hit> fast;
    detail::field_search(needles, firsts, isa)
        .run(bytes, [&](std::size_t k, std::size_t p) { fast.emplace_back(p, k); },
             [&](std::size_t p) { fast.emplace_back(p, SIZE_MAX); });
    HOSTCFG_FUZZ_CHECK(fast == naive);
  }

  // find_our_section == find_section: the same span, or the same error naming the same line.
  auto fast = detail::find_our_section(bytes, markers);
  auto slow = find_section(bytes, markers, marker_after_bom::allowed);
  HOSTCFG_FUZZ_CHECK(fast.has_value() == slow.has_value());
  if (!fast) {
    HOSTCFG_FUZZ_CHECK(fast.error().message() == slow.error().message());
  } else {
    HOSTCFG_FUZZ_CHECK(fast->has_value() == slow->has_value());
    if (*fast) HOSTCFG_FUZZ_CHECK(same_span(**fast, **slow));
  }

  // Every line that names a desired name (as an entry, or commented out) is among the lines
  // probe and apply read, and each of those is a real line start.
  std::vector<std::string_view> wanted;
  for (const auto& d : desired) wanted.emplace_back(d.mapping.name);
  const std::vector<std::size_t> chosen = detail::lines_naming(bytes, wanted);
  std::vector<std::size_t> starts;
  std::vector<std::string_view> scratch;
  detail::for_each_hosts_line(bytes, [&](const hosts_line& line, hosts_names names) {
    starts.push_back(line.offset);
    bool names_one = false;
    for (std::string_view w : wanted) names_one = names_one || detail::names_contain(names, w);
    if (line.kind == hosts_line_kind::comment) {
      hosts_line inner;
      scratch.clear();
      detail::read_fields(detail::uncommented(line.comment), inner, scratch);
      hosts_names inner_names{scratch.data(), scratch.size()};
      for (std::string_view w : wanted) names_one = names_one || detail::names_contain(inner_names, w);
    }
    if (names_one) HOSTCFG_FUZZ_CHECK(std::binary_search(chosen.begin(), chosen.end(), line.offset));
  });
  for (std::size_t c : chosen) HOSTCFG_FUZZ_CHECK(std::binary_search(starts.begin(), starts.end(), c));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);

  // Lossless reading, contiguous offsets, names only on entries.
  hosts_file f = parse_hosts(bytes);
  HOSTCFG_FUZZ_CHECK(f.serialize() == bytes);
  std::size_t total = 0;
  for (const auto& line : f.lines) {
    HOSTCFG_FUZZ_CHECK(line.offset == total);
    total += line.text.size() + line.ending.size();
    HOSTCFG_FUZZ_CHECK(line.kind == hosts_line_kind::entry ? line.names_count > 0 : line.names_count == 0);
    for (std::string_view name : f.names_of(line))
      HOSTCFG_FUZZ_CHECK(!name.empty() && name.find_first_of(" \t#\r\n") == std::string_view::npos);
  }
  HOSTCFG_FUZZ_CHECK(total == bytes.size());

  static const section_markers markers = default_markers("fuzz.app");
  static const std::string prefix = disabled_line_prefix("fuzz.app");
  static const std::vector<hosts_mapping> want = {
      {"127.0.0.1", "localhost"}, {"127.0.0.1", "odin"}, {"::1", "localhost"}, {"10.0.0.1", "a.test"},
      {"10.0.0.2", "ab"}, {"127.0.0.1", "kubernetes.docker.internal"}};
  static const std::vector<detail::desired_mapping> desired = detail::validate_mappings(want).value();
  check_fast_paths(bytes, markers, desired);
  const bool had_section = [&] {
    auto s = find_section(bytes, markers, marker_after_bom::allowed);
    return !s || s->has_value();
  }();
  const bool has_prefix_lines = bytes.find(prefix) != std::string_view::npos;

  for (bool override : {false, true}) {
    hosts_edit_options options;
    options.override_conflicts = override;
    options.disable_prefix = prefix;
    auto probed = probe_hosts(bytes, markers, want);
    auto applied = apply_hosts(bytes, markers, want, options);
    HOSTCFG_FUZZ_CHECK(probed.has_value() == applied.has_value());
    // One scan shared by probe and apply (HostsEntry's probe) gives exactly what each gives with
    // its own, with and without the bytes; a scan that does not fit (another buffer with the same
    // content, names not covering the wanted ones, other markers) is ignored, not trusted.
    {
      const hosts_scan scan = scan_hosts(bytes, markers, want);
      HOSTCFG_FUZZ_CHECK(scan.bytes.data() == bytes.data() && scan.section.has_value() == probed.has_value());
      HOSTCFG_FUZZ_CHECK(same_probe(probe_hosts(bytes, markers, want, scan), probed));
      HOSTCFG_FUZZ_CHECK(same_apply(apply_hosts(bytes, markers, want, options, scan), applied));
      hosts_edit_options describe = options;
      describe.compute_bytes = false;
      HOSTCFG_FUZZ_CHECK(same_apply(apply_hosts(bytes, markers, want, describe, scan), apply_hosts(bytes, markers, want, describe)));
      const std::string copy(bytes);
      const hosts_scan of_copy = scan_hosts(copy, markers, want);
      HOSTCFG_FUZZ_CHECK(same_probe(probe_hosts(bytes, markers, want, of_copy), probed));
      HOSTCFG_FUZZ_CHECK(same_apply(apply_hosts(bytes, markers, want, options, of_copy), applied));
      const std::vector<hosts_mapping> fewer(want.begin(), want.end() - 1);
      const hosts_scan narrow = scan_hosts(bytes, markers, fewer);
      HOSTCFG_FUZZ_CHECK(same_probe(probe_hosts(bytes, markers, want, narrow), probed));
      HOSTCFG_FUZZ_CHECK(same_apply(apply_hosts(bytes, markers, want, options, narrow), applied));
      // HostsEntry's scan: no number for what is in sync, every other answer the same.
      const hosts_scan lazy = scan_hosts(bytes, markers, want, hosts_numbering::problems_only);
      HOSTCFG_FUZZ_CHECK(same_probe_but_in_sync_numbers(probed, probe_hosts(bytes, markers, want, lazy)));
      HOSTCFG_FUZZ_CHECK(same_apply(apply_hosts(bytes, markers, want, options, lazy), applied));
      static const section_markers other = default_markers("other.app");
      const hosts_scan foreign = scan_hosts(bytes, other, want);
      HOSTCFG_FUZZ_CHECK(same_probe(probe_hosts(bytes, markers, want, foreign), probed));
      HOSTCFG_FUZZ_CHECK(same_apply(apply_hosts(bytes, markers, want, options, foreign), applied));
    }
    if (!applied) {
      HOSTCFG_FUZZ_CHECK(applied.error().is(errc::broken_markers));
      continue;
    }
    // Probe reads only the lines naming a desired name and stops once all are decided: the same
    // answer, line for line, as reading every line.
    {
      auto reference = reference_probe(bytes, probed->section, desired);
      HOSTCFG_FUZZ_CHECK(reference.size() == probed->mappings.size());
      for (std::size_t k = 0; k < reference.size(); ++k) HOSTCFG_FUZZ_CHECK(same_status(reference[k], probed->mappings[k]));
    }
    // A description without the bytes (what HostsEntry's probe asks for) is the same edit.
    {
      hosts_edit_options describe = options;
      describe.compute_bytes = false;
      auto described = apply_hosts(bytes, markers, want, describe);
      HOSTCFG_FUZZ_CHECK(described.has_value());
      HOSTCFG_FUZZ_CHECK(described->bytes.empty() && described->section_line_number == 0);
      HOSTCFG_FUZZ_CHECK(described->changed == applied->changed);
      HOSTCFG_FUZZ_CHECK(described->added == applied->added);
      HOSTCFG_FUZZ_CHECK(described->carried == applied->carried);
      HOSTCFG_FUZZ_CHECK(described->dropped_section_lines == applied->dropped_section_lines);
      HOSTCFG_FUZZ_CHECK(described->conflicts_left.size() == applied->conflicts_left.size());
      for (std::size_t k = 0; k < described->conflicts_left.size(); ++k)
        HOSTCFG_FUZZ_CHECK(same_status(described->conflicts_left[k], applied->conflicts_left[k]));
      HOSTCFG_FUZZ_CHECK(same_disabled(described->disabled, applied->disabled));
      HOSTCFG_FUZZ_CHECK(described->record.section == applied->record.section);
      HOSTCFG_FUZZ_CHECK(described->record.added_newline_before_section == applied->record.added_newline_before_section);
      HOSTCFG_FUZZ_CHECK(same_disabled(described->record.disabled, applied->record.disabled));
    }
    // The begin marker's line number, computed from the input, is where the new bytes have it.
    {
      auto written = find_section(applied->bytes, markers, marker_after_bom::allowed);
      HOSTCFG_FUZZ_CHECK(written.has_value());
      if (*written) HOSTCFG_FUZZ_CHECK(applied->section_line_number == (*written)->begin_line_number);
      else HOSTCFG_FUZZ_CHECK(applied->section_line_number == 0);
    }
    // Lossless: a file probe calls in sync is never rewritten.
    if (probed->all_in_sync()) HOSTCFG_FUZZ_CHECK(!applied->changed);
    HOSTCFG_FUZZ_CHECK(applied->changed == (applied->bytes != bytes));
    // Override changes the answer for the wanted names only: every other name resolves as it did
    // (a disabled line's other names are carried into our section; a line below it that would
    // now decide one of them with another address is disabled too).
    {
      auto before_answers = answers(bytes), after_answers = answers(applied->bytes);
      for (const auto& d : desired) {
        before_answers.erase(detail::family_name_key(d.ip.family, d.mapping.name));
        after_answers.erase(detail::family_name_key(d.ip.family, d.mapping.name));
      }
      HOSTCFG_FUZZ_CHECK(before_answers == after_answers);
    }
    // Idempotent.
    auto again = apply_hosts(applied->bytes, markers, want, options);
    HOSTCFG_FUZZ_CHECK(again.has_value());
    HOSTCFG_FUZZ_CHECK(!again->changed);
    // The section as written is in the new bytes; with no previous record every line of it is
    // recorded as ours. A run given the record it left changes nothing and records the same
    // lines (nothing someone else added), and revert with that record still gives the input back.
    HOSTCFG_FUZZ_CHECK(applied->record.section == applied->section);
    HOSTCFG_FUZZ_CHECK(applied->section.empty() || applied->bytes.find(applied->section) != std::string::npos);
    {
      hosts_edit_options with_record = options;
      with_record.previous = &applied->record;
      auto next = apply_hosts(applied->bytes, markers, want, with_record);
      HOSTCFG_FUZZ_CHECK(next.has_value() && !next->changed);
      HOSTCFG_FUZZ_CHECK(next->record.section == applied->record.section);
    }
    // After apply every mapping resolves, except conflicts deliberately left alone.
    auto after = probe_hosts(applied->bytes, markers, want);
    HOSTCFG_FUZZ_CHECK(after.has_value());
    for (const auto& m : after->mappings) {
      bool left_alone = false;
      for (const auto& c : applied->conflicts_left) left_alone = left_alone || c.mapping == m.mapping;
      HOSTCFG_FUZZ_CHECK(m.state == hosts_mapping_state::in_sync || (left_alone && m.state == hosts_mapping_state::conflict));
    }
    // Outside our section nothing changed but tagged lines; revert restores the input exactly.
    if (!had_section && !has_prefix_lines) {
      if (applied->disabled.empty()) HOSTCFG_FUZZ_CHECK(applied->bytes.compare(0, bytes.size(), bytes) == 0 || !applied->changed ||
                                           applied->record.added_newline_before_section);
      auto back = revert_hosts(applied->bytes, markers, prefix, &applied->record);
      HOSTCFG_FUZZ_CHECK(back.has_value());
      HOSTCFG_FUZZ_CHECK(back->bytes == bytes);
      auto blind = revert_hosts(applied->bytes, markers, prefix, nullptr);
      HOSTCFG_FUZZ_CHECK(blind.has_value());
      if (!applied->record.added_newline_before_section) HOSTCFG_FUZZ_CHECK(blind->bytes == bytes);
      // A crash between a second apply's record (written ahead, merged with this one's) and its
      // write leaves this file with that record: revert still gives the input back, since the
      // record names the section before the write as ours too.
      // The second apply adds a name, or moves one (its line in our section goes stale: the
      // record's section no longer names it, only section_before_write does).
      std::vector<hosts_mapping> wider = want, moved = want;
      wider.push_back({"127.0.0.1", "crash-window.test"});
      for (auto& m : moved)
        if (m.name == "odin") m.address = "127.0.0.3";
      for (const auto* second_want : {&wider, &moved}) {
        hosts_edit_options second = options;
        second.previous = &applied->record;
        auto next = apply_hosts(applied->bytes, markers, *second_want, second);
        if (!next) continue;
        HOSTCFG_FUZZ_CHECK(next->record.section_before_write.empty() ||
                           next->record.section_before_write == applied->record.section);
        hosts_revert_record merged = next->record;
        merged.added_newline_before_section = applied->record.added_newline_before_section;
        auto undone = revert_hosts(applied->bytes, markers, prefix, &merged);
        HOSTCFG_FUZZ_CHECK(undone.has_value());
        HOSTCFG_FUZZ_CHECK(undone->bytes == bytes);
        HOSTCFG_FUZZ_CHECK(undone->kept_user_lines.empty());
      }
    }
  }
  return 0;
}
