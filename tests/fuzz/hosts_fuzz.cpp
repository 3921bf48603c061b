// libFuzzer target for the hosts codec: parse/serialize and probe/apply/revert invariants.
// clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude tests/fuzz/hosts_fuzz.cpp
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "hostcfg/format/hosts.hpp"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostcfg;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);

  // Lossless reading, contiguous offsets, names only on entries.
  hosts_file f = parse_hosts(bytes);
  check(f.serialize() == bytes);
  std::size_t total = 0;
  for (const auto& line : f.lines) {
    check(line.offset == total);
    total += line.text.size() + line.ending.size();
    check(line.kind == hosts_line_kind::entry ? line.names_count > 0 : line.names_count == 0);
    for (std::string_view name : f.names_of(line))
      check(!name.empty() && name.find_first_of(" \t#\r\n") == std::string_view::npos);
  }
  check(total == bytes.size());

  static const section_markers markers = default_markers("fuzz.app");
  static const std::string prefix = disabled_line_prefix("fuzz.app");
  static const std::vector<hosts_mapping> want = {
      {"127.0.0.1", "localhost"}, {"127.0.0.1", "odin"}, {"::1", "localhost"}, {"10.0.0.1", "a.test"}};
  const bool had_section = [&] {
    auto s = find_section(bytes, markers);
    return !s || s->has_value();
  }();
  const bool has_prefix_lines = bytes.find(prefix) != std::string_view::npos;

  for (bool override : {false, true}) {
    hosts_edit_options options;
    options.override_conflicts = override;
    options.disable_prefix = prefix;
    auto probed = probe_hosts(bytes, markers, want);
    auto applied = apply_hosts(bytes, markers, want, options);
    check(probed.has_value() == applied.has_value());
    if (!applied) {
      check(applied.error().is(errc::broken_markers));
      continue;
    }
    // Lossless: a file probe calls in sync is never rewritten.
    if (probed->all_in_sync()) check(!applied->changed);
    check(applied->changed == (applied->bytes != bytes));
    // Idempotent.
    auto again = apply_hosts(applied->bytes, markers, want, options);
    check(again.has_value());
    check(!again->changed);
    // After apply every mapping resolves, except conflicts deliberately left alone.
    auto after = probe_hosts(applied->bytes, markers, want);
    check(after.has_value());
    for (const auto& m : after->mappings) {
      bool left_alone = false;
      for (const auto& c : applied->conflicts_left) left_alone = left_alone || c.mapping == m.mapping;
      check(m.state == hosts_mapping_state::in_sync || (left_alone && m.state == hosts_mapping_state::conflict));
    }
    // Outside our section nothing changed but tagged lines; revert restores the input exactly.
    if (!had_section && !has_prefix_lines) {
      if (applied->disabled.empty()) check(applied->bytes.compare(0, bytes.size(), bytes) == 0 || !applied->changed ||
                                           applied->record.added_newline_before_section);
      auto back = revert_hosts(applied->bytes, markers, prefix, &applied->record);
      check(back.has_value());
      check(back->bytes == bytes);
      auto blind = revert_hosts(applied->bytes, markers, prefix, nullptr);
      check(blind.has_value());
      if (!applied->record.added_newline_before_section) check(blind->bytes == bytes);
    }
  }
  return 0;
}
