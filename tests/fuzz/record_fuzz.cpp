// libFuzzer target for the record (ledger) format (record.hpp), RELIABILITY "record readable" and
// promise 13. Invariants:
//  1. parse_record never crashes; a refusal is corrupt_record or newer_record, with a message.
//  2. Whatever parses re-serializes to text that parses back to the same record, and that text is
//     a fixed point of serialize(parse(.)).
//  3. Any record built from arbitrary bytes (ids, kinds, keys, values, app id) round-trips
//     exactly through serialize_record/parse_record: the percent encoding loses no byte.
// clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Itests tests/fuzz/record_fuzz.cpp
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "hostcfg/record.hpp"
#include "support/fuzz_check.hpp"

namespace {

// Aborts (a libFuzzer crash) naming the invariant's line (support/fuzz_check.hpp).
#define check(ok) HOSTCFG_FUZZ_CHECK(ok)

// Splits the input at 0xFF bytes into pieces (the separator itself can still appear escaped as a
// value byte via 0xFE 0xFF): the material for a synthetic record.
std::vector<std::string> pieces(std::string_view bytes) {
  std::vector<std::string> out(1);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c == 0xFE && i + 1 < bytes.size()) {
      out.back() += bytes[++i];
    } else if (c == 0xFF) {
      out.emplace_back();
    } else {
      out.back() += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostcfg;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);

  // 1 + 2: the reader on raw input.
  auto parsed = parse_record(bytes, "/fuzz.record");
  if (!parsed) {
    check(parsed.error().is(errc::corrupt_record) || parsed.error().is(errc::newer_record));
    check(!parsed.error().message().empty());
  } else {
    std::string text = serialize_record(*parsed);
    auto again = parse_record(text);
    check(again.has_value());
    check(*again == *parsed);
    check(serialize_record(*again) == text);
  }

  // 3: a record made of the input's bytes round-trips exactly.
  auto p = pieces(bytes);
  record r{p[0], {}};
  for (std::size_t i = 1; i + 2 < p.size(); i += 3) {
    if (p[i].empty()) continue;  // an item needs an id (the reader refuses an empty one)
    record_item item{p[i], p[i + 1], {}};
    if (!p[i + 2].empty()) item.fields[p[i + 2]] = p[0] + p[i + 1];
    item.fields["v"] = p[i + 2];
    r.put(std::move(item));
  }
  std::string text = serialize_record(r);
  // Every line of the text is printable ASCII: no byte of a value can end or forge a line.
  for (char c : text) check(c == '\n' || (c >= 0x20 && c < 0x7f));
  auto back = parse_record(text);
  check(back.has_value());
  check(*back == r);
  return 0;
}
