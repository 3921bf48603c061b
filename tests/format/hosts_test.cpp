// The lossless hosts codec and its probe / apply / revert edits (issue 4; RELIABILITY H1-H7).
#include "hostcfg/format/hosts.hpp"

#include <dirent.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Every file of <corpus>/hosts, as (name, bytes); empty when the corpus is absent.
std::vector<std::pair<std::string, std::string>> corpus_files() {
  std::vector<std::pair<std::string, std::string>> out;
  std::string dir = hostcfg_test::corpus_dir() + "/hosts";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    out.emplace_back(name, read_file(dir + "/" + name));
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

const section_markers markers = default_markers("com.example.app");
const std::string prefix = disabled_line_prefix("com.example.app");

std::vector<hosts_mapping> want(std::initializer_list<std::pair<const char*, const char*>> pairs) {
  std::vector<hosts_mapping> out;
  for (const auto& p : pairs) out.push_back({p.first, p.second});
  return out;
}

hosts_apply_result apply_ok(std::string_view bytes, const std::vector<hosts_mapping>& w, bool override = false) {
  hosts_edit_options o;
  o.override_conflicts = override;
  o.disable_prefix = prefix;
  auto r = apply_hosts(bytes, markers, w, o);
  REQUIRE(r.has_value());
  return *r;
}

hosts_probe_result probe_ok(std::string_view bytes, const std::vector<hosts_mapping>& w) {
  auto r = probe_hosts(bytes, markers, w);
  REQUIRE(r.has_value());
  return *r;
}

const char* const begin_marker = "# >>> hostcfg com.example.app v1 >>>";
const char* const end_marker = "# <<< hostcfg com.example.app <<<";

}  // namespace

// ---------------------------------------------------------------------------------------------
// Parsing

TEST_CASE("round trip is byte-exact for every corpus file") {
  auto files = corpus_files();
  if (files.empty()) {
    HOSTCFG_SKIP("no hosts corpus at " + hostcfg_test::corpus_dir());
    return;
  }
  CHECK(files.size() >= 10);
  for (const auto& file : files) {
    const std::string& name = file.first;
    const std::string& bytes = file.second;
    CAPTURE(name);
    auto parsed = parse_hosts(bytes);
    CHECK(parsed.serialize() == bytes);
    CHECK(serialize_hosts(parsed) == bytes);
  }
}

TEST_CASE("corpus: go's testdata hosts reads as the resolver does (inline comment, bogus lines, zone)") {
  std::string path = hostcfg_test::corpus_dir() + "/hosts/go-net-testdata-hosts.hosts";
  std::string bytes = read_file(path);
  if (bytes.empty()) {
    HOSTCFG_SKIP("corpus file missing: " + path);
    return;
  }
  auto f = parse_hosts(bytes);
  REQUIRE(f.lines.size() == 11);
  // "127.0.0.3\todin  # inline comment " -> one name; the comment never becomes names.
  const auto& l3 = f.lines[2];
  CHECK(l3.kind == hosts_line_kind::entry);
  REQUIRE(f.names_of(l3).size() == 1);
  CHECK(f.names_of(l3)[0] == "odin");
  CHECK(l3.comment == "# inline comment ");
  // fe80::1%lo0 is an IPv6 entry whose zone is kept verbatim.
  CHECK(f.lines[7].kind == hosts_line_kind::entry);
  CHECK(f.lines[7].address == "fe80::1%lo0");
  CHECK(f.lines[7].zone == "lo0");
  CHECK(f.lines[7].ip.family == address_family::ipv6);
  // "123.123.123\tloki" and "321.321.321.321" are skipped by the resolver: unparsable here.
  auto bad = f.unparsable();
  REQUIRE(bad.size() == 2);
  CHECK(bad[0]->number == 10);
  CHECK(std::string(bad[0]->problem) == "first field is not an IP address");
  CHECK(bad[1]->number == 11);
  // Resolution: the first IPv4 line for odin is line 2.
  auto odin = resolve_hosts(f, "ODIN", address_family::ipv4);
  REQUIRE(odin.has_value());
  CHECK(odin->line->number == 2);
  CHECK(to_string(odin->address) == "127.0.0.2");
  auto odin6 = resolve_hosts(f, "odin", address_family::ipv6);
  REQUIRE(odin6.has_value());
  CHECK(to_string(odin6->address) == "::2");
  CHECK_FALSE(resolve_hosts(f, "loki", address_family::ipv4).has_value());
}

TEST_CASE("line kinds, fields and endings of awkward input are read and kept exactly") {
  std::string bytes = std::string("\xEF\xBB\xBF") + "127.0.0.1\tlocalhost  LOCAL.Host\r\n" + "   \t\n" +
                      "  # a comment\r" + "::1 ip6-localhost#glued comment\n" + "10.0.0.1\n" +
                      std::string("10.0.0.2 a\0b\n", 13) + "not-an-ip name\n" + "fe80::1% broken\n" +
                      "\xff\xfe bytes\n" + "192.168.0.1 last-no-eol";
  auto f = parse_hosts(bytes);
  CHECK(f.has_bom);
  CHECK(f.serialize() == bytes);
  REQUIRE(f.lines.size() == 10);
  std::vector<hosts_line_kind> kinds;
  for (const auto& l : f.lines) kinds.push_back(l.kind);
  using k = hosts_line_kind;
  CHECK(kinds == std::vector<k>{k::unparsable, k::blank, k::comment, k::entry, k::unparsable, k::unparsable,
                                k::unparsable, k::unparsable, k::unparsable, k::entry});
  CHECK(f.lines[0].ending == "\r\n");
  CHECK(f.lines[2].ending == "\r");
  CHECK(f.lines[9].ending == "");
  // An entry after a BOM does not resolve (glibc reads the mark as part of the address: checked
  // with getent on a bind-mounted file); the same line without it does.
  CHECK(f.names_of(f.lines[0]).size() == 0);
  CHECK(std::string(f.lines[0].problem).find("byte-order mark") != std::string::npos);
  CHECK_FALSE(resolve_hosts(f, "local.host", address_family::ipv4).has_value());
  const std::string plain = bytes.substr(3);
  auto g = parse_hosts(plain);
  auto n0 = g.names_of(g.lines[0]);
  REQUIRE(n0.size() == 2);
  CHECK(n0[1] == "LOCAL.Host");
  // A comment or blank line after a BOM stays one.
  CHECK(parse_hosts(std::string("\xEF\xBB\xBF") + "# banner\n").lines[0].kind == k::comment);
  CHECK(parse_hosts(std::string("\xEF\xBB\xBF") + "\n").lines[0].kind == k::blank);
  CHECK(f.names_of(f.lines[3]).size() == 1);
  CHECK(f.lines[3].comment == "#glued comment");
  CHECK(std::string(f.lines[4].problem) == "an address without names");
  CHECK(std::string(f.lines[5].problem) == "contains a NUL byte");
  CHECK(std::string(f.lines[7].problem) == "empty zone id after '%'");
  // Names compare case-insensitively.
  auto r = resolve_hosts(g, "local.host", address_family::ipv4);
  REQUIRE(r.has_value());
  CHECK(r->line->number == 1);
}

TEST_CASE("round trip is byte-exact for seeded random lines of hostile bytes") {
  std::mt19937 rng(20260401);
  const std::vector<std::string> pieces = {"127.0.0.1", "::1", "fe80::1%lo0", " ", "\t", "  ", "#", "# c", "\r\n",
                                           "\n", "\r", "localhost", "A.B", std::string("\0", 1), "\xEF\xBB\xBF",
                                           "\xff", "x", "0.0.0.0", "::ffff:1.2.3.4", "1.2.3"};
  for (int round = 0; round < 2000; ++round) {
    std::string bytes;
    int n = int(rng() % 40);
    for (int i = 0; i < n; ++i) bytes += pieces[rng() % pieces.size()];
    auto f = parse_hosts(bytes);
    REQUIRE(f.serialize() == bytes);
    std::size_t total = 0;
    for (const auto& l : f.lines) {
      CHECK(l.offset == total);
      total += l.text.size() + l.ending.size();
    }
    CHECK(total == bytes.size());
  }
}

// ---------------------------------------------------------------------------------------------
// Probe

TEST_CASE("probe reports every state with the deciding line") {
  std::string bytes =
      "127.0.0.1 localhost\n"                 // 1
      "10.0.0.9 taken.test other.test\n"      // 2
      "#127.0.0.1 sleeping.test\n"            // 3
      "# >>> hostcfg com.example.app v1 >>>\n"  // 4
      "127.0.0.2 stale.test\n"                // 5
      "# <<< hostcfg com.example.app <<<\n";  // 6
  auto p = probe_ok(bytes, want({{"127.0.0.1", "localhost"},
                                 {"127.0.0.1", "absent.test"},
                                 {"127.0.0.1", "taken.test"},
                                 {"127.0.0.1", "sleeping.test"},
                                 {"127.0.0.1", "stale.test"},
                                 {"::1", "localhost"}}));
  REQUIRE(p.mappings.size() == 6);
  CHECK(p.mappings[0].state == hosts_mapping_state::in_sync);
  CHECK(p.mappings[0].line_number == 1);
  CHECK(p.mappings[1].state == hosts_mapping_state::missing);
  CHECK(p.mappings[1].line_number == 0);
  CHECK(p.mappings[2].state == hosts_mapping_state::conflict);
  CHECK(p.mappings[2].line_number == 2);
  CHECK(p.mappings[2].found_address == "10.0.0.9");
  CHECK(p.mappings[2].line_text == "10.0.0.9 taken.test other.test");
  CHECK_FALSE(p.mappings[2].in_section);
  CHECK(p.mappings[3].state == hosts_mapping_state::commented_out);
  CHECK(p.mappings[3].line_number == 3);
  CHECK(p.mappings[3].found_address == "127.0.0.1");
  CHECK(p.mappings[4].state == hosts_mapping_state::stale_in_section);
  CHECK(p.mappings[4].line_number == 5);
  CHECK(p.mappings[4].found_address == "127.0.0.2");
  CHECK(p.mappings[4].in_section);
  // Per family: the IPv4 localhost line does not answer for IPv6.
  CHECK(p.mappings[5].state == hosts_mapping_state::missing);
  CHECK_FALSE(p.all_in_sync());
  REQUIRE(p.section.has_value());
  CHECK(p.section->begin_line_number == 4);
  CHECK(p.line_ending == "\n");
  CHECK(std::string(hosts_mapping_state_name(p.mappings[3].state)) == "commented out");
}

TEST_CASE("probe: the first line per family wins, names are case-insensitive, zones differ") {
  std::string bytes = "10.1.1.1 Mixed.Test\n127.0.0.1 mixed.test\nfe80::1%lo0 zoned.test\n";
  auto p = probe_ok(bytes, want({{"127.0.0.1", "mixed.test"}, {"fe80::1", "zoned.test"}}));
  CHECK(p.mappings[0].state == hosts_mapping_state::conflict);
  CHECK(p.mappings[0].line_number == 1);
  CHECK(p.mappings[1].state == hosts_mapping_state::conflict);
  CHECK(p.mappings[1].found_address == "fe80::1%lo0");
}

// ---------------------------------------------------------------------------------------------
// Apply

TEST_CASE("apply appends one short line per name in a new section, golden bytes") {
  std::string bytes = "127.0.0.1\tlocalhost\n::1 localhost\n";
  auto r = apply_ok(bytes, want({{"127.0.0.1", "kubernetes.docker.internal"}, {"127.0.0.1", "localhost"},
                                 {"127.0.0.1", "host.docker.internal"}}));
  CHECK(r.changed);
  CHECK(r.bytes == bytes + begin_marker + "\n127.0.0.1\tkubernetes.docker.internal\n127.0.0.1\thost.docker.internal\n" +
                       end_marker + "\n");
  REQUIRE(r.added.size() == 2);
  CHECK(r.added[0].name == "kubernetes.docker.internal");
  CHECK(r.section_line_number == 3);
  CHECK_FALSE(r.record.added_newline_before_section);
  // Idempotent: the second apply changes nothing and adds nothing.
  auto again = apply_ok(r.bytes, want({{"127.0.0.1", "kubernetes.docker.internal"}, {"127.0.0.1", "localhost"},
                                       {"127.0.0.1", "host.docker.internal"}}));
  CHECK_FALSE(again.changed);
  CHECK(again.bytes == r.bytes);
  CHECK(again.added.empty());
  CHECK(probe_ok(r.bytes, want({{"127.0.0.1", "kubernetes.docker.internal"}})).all_in_sync());
}

TEST_CASE("apply on a file without a final newline puts the section on its own line; revert removes it") {
  std::string bytes = "127.0.0.1 localhost";
  auto r = apply_ok(bytes, want({{"127.0.0.1", "a.test"}}));
  CHECK(r.bytes == std::string("127.0.0.1 localhost\n") + begin_marker + "\n127.0.0.1\ta.test\n" + end_marker + "\n");
  CHECK(r.record.added_newline_before_section);
  auto back = revert_hosts(r.bytes, markers, prefix, &r.record);
  REQUIRE(back.has_value());
  CHECK(back->bytes == bytes);
  CHECK(back->changed);
}

TEST_CASE("apply on a CRLF file writes CRLF lines and leaves the rest byte-identical") {
  std::string bytes = "# hosts\r\n127.0.0.1 localhost\r\n";
  auto r = apply_ok(bytes, want({{"127.0.0.1", "a.test"}}));
  CHECK(r.bytes == bytes + begin_marker + "\r\n127.0.0.1\ta.test\r\n" + end_marker + "\r\n");
  CHECK(r.bytes.find("\r\r") == std::string::npos);
  // Re-applying many times never grows the file (docker/for-win#8773).
  std::string cur = r.bytes;
  for (int i = 0; i < 5; ++i) cur = apply_ok(cur, want({{"127.0.0.1", "a.test"}})).bytes;
  CHECK(cur == r.bytes);
}

TEST_CASE("apply rewrites an existing section in place: stale line replaced, user lines and the rest kept") {
  std::string bytes = std::string("127.0.0.1 localhost\n") + begin_marker + "\n# my note\n127.0.0.2\tb.test\n" +
                      "127.0.0.1\ta.test\n" + end_marker + "\n10.0.0.1 after.test\n";
  auto r = apply_ok(bytes, want({{"127.0.0.1", "a.test"}, {"127.0.0.1", "b.test"}}));
  CHECK(r.bytes == std::string("127.0.0.1 localhost\n") + begin_marker + "\n# my note\n127.0.0.1\ta.test\n" +
                       "127.0.0.1\tb.test\n" + end_marker + "\n10.0.0.1 after.test\n");
  REQUIRE(r.dropped_section_lines.size() == 1);
  CHECK(r.dropped_section_lines[0] == "127.0.0.2\tb.test");
  REQUIRE(r.added.size() == 1);
  CHECK(r.added[0].name == "b.test");
  CHECK(r.section_line_number == 2);
}

TEST_CASE("apply upgrades an older-format begin marker in place") {
  std::string bytes = "# >>> hostcfg com.example.app v0 >>>\n127.0.0.1\ta.test\n# <<< hostcfg com.example.app <<<\n";
  auto r = apply_ok(bytes, want({{"127.0.0.1", "a.test"}}));
  CHECK(r.bytes == std::string(begin_marker) + "\n127.0.0.1\ta.test\n" + end_marker + "\n");
}

TEST_CASE("apply adopts Docker's own markers and keeps its comment line") {
  auto docker = custom_markers("# Added by Docker Desktop", "# End of section");
  std::string bytes =
      "127.0.0.1 localhost kubernetes.docker.internal\n::1 localhost\n# Added by Docker Desktop\n"
      "# To allow the same kube context to work on the host and the container:\n"
      "127.0.0.1 kubernetes.docker.internal\n# End of section\n";
  auto r = apply_hosts(bytes, docker, want({{"127.0.0.1", "kubernetes.docker.internal"}}), {});
  REQUIRE(r.has_value());
  CHECK_FALSE(r->changed);
  auto p = probe_hosts(bytes, docker, want({{"127.0.0.1", "kubernetes.docker.internal"}}));
  REQUIRE(p.has_value());
  CHECK(p->mappings[0].state == hosts_mapping_state::in_sync);
  CHECK(p->mappings[0].line_number == 1);
}

TEST_CASE("apply adds nothing when a user line already maps the name, and nothing when none is needed") {
  std::string bytes = "127.0.0.1 localhost\n";
  auto r = apply_ok(bytes, want({{"127.0.0.1", "LOCALHOST"}}).empty() ? want({}) : want({{"127.0.0.1", "localhost"}}));
  CHECK_FALSE(r.changed);
  CHECK(r.bytes == bytes);
  CHECK(r.section_line_number == 0);
  CHECK(r.record.section.empty());
}

TEST_CASE("a commented-out mapping is added in our section; the comment stays") {
  std::string bytes = "#127.0.0.1 a.test\n";
  auto r = apply_ok(bytes, want({{"127.0.0.1", "a.test"}}));
  CHECK(r.bytes == bytes + begin_marker + "\n127.0.0.1\ta.test\n" + end_marker + "\n");
}

TEST_CASE("a conflict is reported and left alone without override: no duplicate added") {
  std::string bytes = "10.0.0.9 taken.test other.test\n";
  auto r = apply_ok(bytes, want({{"127.0.0.1", "taken.test"}, {"127.0.0.1", "free.test"}}));
  REQUIRE(r.conflicts_left.size() == 1);
  CHECK(r.conflicts_left[0].mapping.name == "taken.test");
  CHECK(r.conflicts_left[0].line_number == 1);
  CHECK(r.conflicts_left[0].found_address == "10.0.0.9");
  CHECK(r.bytes == bytes + begin_marker + "\n127.0.0.1\tfree.test\n" + end_marker + "\n");
  CHECK(r.bytes.find("taken.test", 10) == std::string::npos);
}

TEST_CASE("fields split at vertical tabs and form feeds too, as glibc splits them") {
  // getent on a bind-mounted file resolves "10.9.9.8<VT>vtab.example": a name there decides.
  const std::string bytes = "10.9.9.8\vodin\n10.9.9.7\f\fthor  \v# note\n";
  auto f = parse_hosts(bytes);
  CHECK(f.serialize() == bytes);
  REQUIRE(f.lines.size() == 2);
  CHECK(f.lines[0].kind == hosts_line_kind::entry);
  CHECK(f.lines[1].kind == hosts_line_kind::entry);
  CHECK(f.names_of(f.lines[1]).size() == 1);
  CHECK(f.lines[1].comment == "# note");
  for (auto isa : {detail::search_isa::best, detail::search_isa::portable}) {
    CAPTURE(isa == detail::search_isa::best);
    std::string big(200, ' ');
    big += "\n10.0.0.1\vodin\n" + std::string(300, 'x') + "\n";
    std::vector<std::size_t> hits;
    detail::field_search({"odin"}, "", isa).run(big, [&](std::size_t, std::size_t p) { hits.push_back(p); },
                                                [](std::size_t) {});
    CHECK(hits == std::vector<std::size_t>{big.find("odin")});
  }
  auto w = want({{"127.0.0.1", "odin"}, {"127.0.0.1", "thor"}});
  auto probed = probe_hosts(bytes, markers, w);
  REQUIRE(probed.has_value());
  CHECK(probed->mappings[0].state == hosts_mapping_state::conflict);
  CHECK(probed->mappings[0].line_number == 1);
  CHECK(probed->mappings[1].state == hosts_mapping_state::conflict);
  CHECK(probed->mappings[1].found_address == "10.9.9.7");
  auto left = apply_ok(bytes, w);
  CHECK_FALSE(left.changed);
  CHECK(left.conflicts_left.size() == 2);
}

TEST_CASE("a conflict below our section is left alone without override too; with it our line comes first") {
  // Lines below our section (appended by hand or by another app) decide a name our section does
  // not name: adding ours would take the name over, which only override may do.
  const std::string bytes = std::string(begin_marker) + "\n127.0.0.1\tmine.test\n" + end_marker +
                            "\n10.0.0.9 below.test other.test\n";
  auto w = want({{"127.0.0.1", "mine.test"}, {"127.0.0.1", "below.test"}});
  auto probed = probe_hosts(bytes, markers, w);
  REQUIRE(probed.has_value());
  CHECK(probed->mappings[1].state == hosts_mapping_state::conflict);
  CHECK(probed->mappings[1].line_number == 4);
  auto left = apply_ok(bytes, w);
  CHECK_FALSE(left.changed);
  CHECK(left.bytes == bytes);
  REQUIRE(left.conflicts_left.size() == 1);
  CHECK(left.conflicts_left[0].mapping.name == "below.test");
  CHECK(left.conflicts_left[0].line_number == 4);
  CHECK(left.conflicts_left[0].found_address == "10.0.0.9");
  // With override: our line first; the line below keeps deciding its other name, untouched.
  auto taken = apply_ok(bytes, w, true);
  CHECK(taken.changed);
  CHECK(taken.disabled.empty());
  CHECK(taken.bytes == std::string(begin_marker) + "\n127.0.0.1\tmine.test\n127.0.0.1\tbelow.test\n" + end_marker +
                           "\n10.0.0.9 below.test other.test\n");
  auto after = parse_hosts(taken.bytes);
  CHECK(to_string(resolve_hosts(after, "below.test", address_family::ipv4)->address) == "127.0.0.1");
  CHECK(to_string(resolve_hosts(after, "other.test", address_family::ipv4)->address) == "10.0.0.9");
  // A correct line below needs nothing of ours.
  const std::string fine = std::string(begin_marker) + "\n127.0.0.1\tmine.test\n" + end_marker +
                           "\n127.0.0.1 below.test\n";
  auto nothing = apply_ok(fine, w);
  CHECK_FALSE(nothing.changed);
  CHECK(nothing.conflicts_left.empty());
}

TEST_CASE("override disables the conflicting line, re-adds its other names, and revert restores it exactly") {
  std::string bytes = "127.0.0.1 localhost\n10.0.0.9\ttaken.test  Other.Test # lab box\r\n::1 localhost\n";
  auto w = want({{"127.0.0.1", "taken.test"}});
  auto r = apply_ok(bytes, w, true);
  REQUIRE(r.disabled.size() == 1);
  CHECK(r.disabled[0].line_number == 2);
  CHECK(r.disabled[0].original == "10.0.0.9\ttaken.test  Other.Test # lab box");
  CHECK(r.disabled[0].written == prefix + "10.0.0.9\ttaken.test  Other.Test # lab box");
  REQUIRE(r.carried.size() == 1);
  CHECK(r.carried[0].address == "10.0.0.9");
  CHECK(r.carried[0].name == "Other.Test");
  CHECK(r.bytes == "127.0.0.1 localhost\n# [disabled by com.example.app] 10.0.0.9\ttaken.test  Other.Test # lab box\r\n"
                   "::1 localhost\n" +
                       std::string(begin_marker) + "\n10.0.0.9\tOther.Test\n127.0.0.1\ttaken.test\n" + end_marker + "\n");
  // Everything else still resolves as before; the name now resolves to us.
  auto after = parse_hosts(r.bytes);
  CHECK(to_string(resolve_hosts(after, "other.test", address_family::ipv4)->address) == "10.0.0.9");
  CHECK(to_string(resolve_hosts(after, "taken.test", address_family::ipv4)->address) == "127.0.0.1");
  // Idempotent.
  auto again = apply_ok(r.bytes, w, true);
  CHECK_FALSE(again.changed);
  // Revert with the record, and without one: the original bytes.
  auto back = revert_hosts(r.bytes, markers, prefix, &r.record);
  REQUIRE(back.has_value());
  CHECK(back->bytes == bytes);
  REQUIRE(back->restored.size() == 1);
  CHECK(back->restored[0].line_number == 2);
  CHECK(back->not_found.empty());
  auto blind = revert_hosts(r.bytes, markers, prefix, nullptr);
  REQUIRE(blind.has_value());
  CHECK(blind->bytes == bytes);
}

TEST_CASE("override keeps disabling until the first remaining line is right") {
  std::string bytes = "10.0.0.1 a.test\n10.0.0.2 a.test b.test\n127.0.0.1 a.test\n";
  auto r = apply_ok(bytes, want({{"127.0.0.1", "a.test"}}), true);
  REQUIRE(r.disabled.size() == 2);
  CHECK(r.added.empty());  // line 3 now answers
  CHECK(r.bytes == prefix + "10.0.0.1 a.test\n" + prefix + "10.0.0.2 a.test b.test\n127.0.0.1 a.test\n" +
                       begin_marker + "\n10.0.0.2\tb.test\n" + end_marker + "\n");
  auto back = revert_hosts(r.bytes, markers, prefix, &r.record);
  REQUIRE(back.has_value());
  CHECK(back->bytes == bytes);
}

/// The answer for `name` in `bytes` (IPv4), as written; "" when no line names it.
std::string ipv4_answer(std::string_view bytes, std::string_view name) {
  auto file = parse_hosts(bytes);
  auto r = resolve_hosts(file, name, address_family::ipv4);
  return r ? to_string(r->address) : std::string();
}

/// An override apply `r` of `bytes` is final (a second apply changes nothing) and revert gives
/// back `bytes` exactly.
void check_override_settles(const std::string& bytes, const std::vector<hosts_mapping>& w,
                            const hosts_apply_result& r) {
  CHECK_FALSE(apply_ok(r.bytes, w, true).changed);
  auto back = revert_hosts(r.bytes, markers, prefix, &r.record);
  REQUIRE(back.has_value());
  CHECK(back->bytes == bytes);
}

TEST_CASE("override: a wanted name whose correct line was disabled for another name is decided again") {
  // Found by hosts_fuzz (tests/fuzz/corpus/hosts/override-disables-correct-line.hosts): line 1
  // was odin's correct line, disabled for ab; line 2 then decided odin, and a second apply
  // disabled it (not idempotent). Now one apply disables both and adds odin to our section.
  const std::string bytes = "127.0.0.1\tab\todin\n2.0.0.9 odin";
  auto w = want({{"127.0.0.1", "odin"}, {"10.0.0.2", "ab"}});
  auto r = apply_ok(bytes, w, true);
  REQUIRE(r.disabled.size() == 2);
  CHECK(r.disabled[1].original == "2.0.0.9 odin");
  CHECK(r.bytes == prefix + "127.0.0.1\tab\todin\n" + prefix + "2.0.0.9 odin\n" + begin_marker +
                       "\n127.0.0.1\todin\n10.0.0.2\tab\n" + end_marker + "\n");
  CHECK(ipv4_answer(r.bytes, "odin") == "127.0.0.1");
  CHECK(ipv4_answer(r.bytes, "ab") == "10.0.0.2");
  check_override_settles(bytes, w, r);
}

TEST_CASE("override: every other name resolves as before, however the disables cascade") {
  // foo was decided by line 1 (disabled for a.test); line 2 would now decide it with another
  // address, so it goes too, and with it bar's deciding line, and so line 3. baz was decided by a
  // live line above, so line 5 stays.
  const std::string bytes =
      "1.1.1.1 a.test foo\n2.2.2.2 foo bar\n3.3.3.3 bar\n5.5.5.5 baz\n1.1.1.1 a.test baz\n6.6.6.6 baz\n"
      "1.1.1.1 foo\n";
  auto w = want({{"127.0.0.1", "a.test"}});
  auto r = apply_ok(bytes, w, true);
  REQUIRE(r.disabled.size() == 4);
  CHECK(r.disabled[0].line_number == 1);
  CHECK(r.disabled[1].line_number == 2);
  CHECK(r.disabled[2].line_number == 3);
  CHECK(r.disabled[3].line_number == 5);
  for (const char* name : {"foo", "bar", "baz"}) {
    CAPTURE(name);
    CHECK(ipv4_answer(r.bytes, name) == ipv4_answer(bytes, name));
  }
  CHECK(ipv4_answer(r.bytes, "a.test") == "127.0.0.1");
  check_override_settles(bytes, w, r);
}

TEST_CASE("a section line probe calls in sync is kept as it is, other names and repeats included") {
  // Found by an independent review running the fuzz invariant "in sync -> apply changes
  // nothing": these lines were dropped and re-added, a rewrite of a file probe called in sync.
  auto w = want({{"127.0.0.1", "odin"}});
  for (const char* body : {"127.0.0.1 odin x\n", "127.0.0.1 odin odin\n", "127.0.0.1 odin\n10.0.0.1 odin\n",
                           "127.0.0.1 odin\n127.0.0.1 odin\n"}) {
    CAPTURE(body);
    const std::string bytes = std::string(begin_marker) + "\n" + body + end_marker + "\n";
    auto probed = probe_hosts(bytes, markers, w);
    REQUIRE(probed.has_value());
    CHECK(probed->all_in_sync());
    for (bool override : {false, true}) {
      auto r = apply_ok(bytes, w, override);
      CHECK_FALSE(r.changed);
      CHECK(r.bytes == bytes);
    }
  }
  // A wanted name decided above the section: its lines in the section change nothing, and stay.
  const std::string above = "127.0.0.1 odin\n" + std::string(begin_marker) + "\n10.0.0.1 odin y\n" + end_marker + "\n";
  CHECK_FALSE(apply_ok(above, w).changed);
  // The line that decides it with another address is stale: dropped, y kept in its place.
  const std::string stale = std::string(begin_marker) + "\n10.0.0.1 odin y\n127.0.0.1 odin\n" + end_marker + "\n";
  auto r = apply_ok(stale, w);
  CHECK(r.bytes == std::string(begin_marker) + "\n10.0.0.1\ty\n127.0.0.1 odin\n" + end_marker + "\n");
  CHECK_FALSE(apply_ok(r.bytes, w).changed);
}

TEST_CASE("override: a later line spelling the same address otherwise is left alone") {
  // "::02" is "::2": x keeps its answer, so the line is not disabled.
  const std::string bytes = "::2 a x\n::02 x\n";
  auto w = want({{"::1", "a"}});
  auto r = apply_ok(bytes, w, true);
  REQUIRE(r.disabled.size() == 1);
  CHECK(r.disabled[0].line_number == 1);
  auto file = parse_hosts(r.bytes);
  CHECK(to_string(resolve_hosts(file, "x", address_family::ipv6)->address) == "::2");
  check_override_settles(bytes, w, r);
}

TEST_CASE("override carries no name our section already answers the same way") {
  // foo is carried from the disabled line 1, but the section (from an earlier run) already
  // answers 1.1.1.1 for it first: no second line. bar is answered otherwise there: carried on top.
  const std::string bytes = "1.1.1.1 a.test foo bar\n" + std::string(begin_marker) + "\n1.1.1.1\tfoo\n2.2.2.2\tbar\n" +
                            end_marker + "\n";
  auto w = want({{"127.0.0.1", "a.test"}});
  auto r = apply_ok(bytes, w, true);
  REQUIRE(r.carried.size() == 1);
  CHECK(r.carried[0].name == "bar");
  CHECK(r.bytes == prefix + "1.1.1.1 a.test foo bar\n" + begin_marker +
                       "\n1.1.1.1\tbar\n1.1.1.1\tfoo\n2.2.2.2\tbar\n127.0.0.1\ta.test\n" + end_marker + "\n");
  for (const char* name : {"foo", "bar"}) {
    CAPTURE(name);
    CHECK(ipv4_answer(r.bytes, name) == ipv4_answer(bytes, name));
  }
  CHECK_FALSE(apply_ok(r.bytes, w, true).changed);
}

TEST_CASE("a stale line of our section keeps its other names in its place") {
  // Found by the resolution check of hosts_fuzz: the other names used to move to the end of the
  // section, below a line that then decided them.
  const std::string bytes = std::string(begin_marker) + "\n1.1.1.1 x a.test\n2.2.2.2 x\n" + end_marker + "\n";
  auto r = apply_ok(bytes, want({{"127.0.0.1", "a.test"}}));
  CHECK(r.dropped_section_lines == std::vector<std::string>{"1.1.1.1 x a.test"});
  CHECK(r.bytes == std::string(begin_marker) + "\n1.1.1.1\tx\n2.2.2.2 x\n127.0.0.1\ta.test\n" + end_marker + "\n");
  CHECK(ipv4_answer(r.bytes, "x") == "1.1.1.1");
}

TEST_CASE("override without a valid disable prefix is refused") {
  hosts_edit_options o;
  o.override_conflicts = true;
  auto r = apply_hosts("10.0.0.1 a.test\n", markers, want({{"127.0.0.1", "a.test"}}), o);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().is(errc::invalid_input));
  CHECK(r.error().message().find("must start with '#'") != std::string::npos);
  o.disable_prefix = "# x\n";
  r = apply_hosts("10.0.0.1 a.test\n", markers, want({{"127.0.0.1", "a.test"}}), o);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message().find("line break") != std::string::npos);
}

TEST_CASE("a name asked for two addresses of one family is refused") {
  auto r = apply_hosts("", markers, want({{"127.0.0.1", "a.test"}, {"127.0.0.2", "a.test"}}), {});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message().find("asked for both 127.0.0.1 and 127.0.0.2") != std::string::npos);
}

TEST_CASE("an empty file gets just the section, and revert gives back the empty file") {
  auto r = apply_ok("", want({{"127.0.0.1", "a.test"}}));
  CHECK(r.bytes == std::string(begin_marker) + "\n127.0.0.1\ta.test\n" + end_marker + "\n");
  auto back = revert_hosts(r.bytes, markers, prefix, &r.record);
  REQUIRE(back.has_value());
  CHECK(back->bytes.empty());
}

// ---------------------------------------------------------------------------------------------
// Markers

TEST_CASE("broken markers are refused by probe, apply and revert: nothing produced") {
  const std::string b = std::string(begin_marker) + "\n";
  const std::string e = std::string(end_marker) + "\n";
  const std::string line = "127.0.0.1 localhost\n";
  std::vector<std::pair<std::string, std::string>> cases = {
      {"begin only", line + b + line},
      {"end only", line + e},
      {"reversed", e + line + b},
      {"duplicated section", b + e + line + b + e},
      {"nested begin", b + b + e + e},
  };
  for (const auto& c : cases) {
    const std::string& label = c.first;
    const std::string& bytes = c.second;
    CAPTURE(label);
    auto a = apply_hosts(bytes, markers, want({{"127.0.0.1", "a.test"}}), {});
    REQUIRE_FALSE(a.has_value());
    CHECK(a.error().is(errc::broken_markers));
    CHECK(a.error().message().find("line ") != std::string::npos);
    auto p = probe_hosts(bytes, markers, want({{"127.0.0.1", "a.test"}}));
    REQUIRE_FALSE(p.has_value());
    CHECK(p.error().is(errc::broken_markers));
    auto r = revert_hosts(bytes, markers, prefix, nullptr);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().is(errc::broken_markers));
  }
}

TEST_CASE("a section after a UTF-8 BOM on line 1 is ours: found by both searches, edited in place, reverted with the BOM kept") {
  // An editor added a BOM to a file that began with our section.
  const std::string bom = "\xEF\xBB\xBF";
  const std::string body = std::string(begin_marker) + "\n127.0.0.1\ta.test\n" + end_marker + "\n";
  const std::string bytes = bom + body + "10.0.0.1 nas\n";
  auto slow = find_section(bytes, markers, marker_after_bom::allowed);
  auto fast = detail::find_our_section(bytes, markers);
  // Shell profiles keep refusing it: a shell would run the line as a command.
  auto profile = find_section(bytes, markers);
  REQUIRE_FALSE(profile);
  CHECK(profile.error().is(errc::broken_markers));
  REQUIRE(slow);
  REQUIRE(fast);
  REQUIRE(slow->has_value());
  REQUIRE(fast->has_value());
  for (const section_span& s : {**slow, **fast}) {
    CHECK(s.begin == bom.size());
    CHECK(s.end == bom.size() + body.size());
    CHECK(s.begin_line_number == 1);
    CHECK(s.begin_line == begin_marker);
  }
  // In sync: no write.
  CHECK(probe_ok(bytes, want({{"127.0.0.1", "a.test"}})).mappings[0].state == hosts_mapping_state::in_sync);
  CHECK_FALSE(apply_ok(bytes, want({{"127.0.0.1", "a.test"}})).changed);
  // A new address: the section is rewritten where it is, after the BOM.
  auto moved = apply_ok(bytes, want({{"127.0.0.2", "a.test"}}));
  CHECK(moved.bytes == bom + begin_marker + "\n127.0.0.2\ta.test\n" + end_marker + "\n10.0.0.1 nas\n");
  CHECK(moved.section_line_number == 1);
  // Revert removes the section. The BOM goes with it when an entry would follow it (that entry
  // would then decide nothing), with or without a record.
  auto back = revert_hosts(moved.bytes, markers, prefix, &moved.record);
  REQUIRE(back);
  CHECK(back->bytes == "10.0.0.1 nas\n");
  CHECK(back->kept_user_lines.empty());
  auto blind = revert_hosts(bytes, markers, prefix, nullptr);
  REQUIRE(blind);
  CHECK(blind->bytes == "10.0.0.1 nas\n");
  // Nothing after the section: the BOM goes too (a file hostcfg created is then empty, and removed).
  auto alone = revert_hosts(bom + body, markers, prefix, nullptr);
  REQUIRE(alone);
  CHECK(alone->bytes.empty());
  // A comment or blank line after it: the BOM stays, as every byte outside our section does.
  for (const std::string& next : {std::string("# my hosts\n10.0.0.1 nas\n"), std::string("\n10.0.0.1 nas\n")}) {
    auto kept = revert_hosts(bom + body + next, markers, prefix, nullptr);
    REQUIRE(kept);
    CHECK(kept->bytes == bom + next);
  }
  // A user's entry kept from inside our section would follow it: the BOM goes.
  const hosts_apply_result in_sync = apply_ok(bytes, want({{"127.0.0.1", "a.test"}}));
  auto user_line = revert_hosts(bom + begin_marker + "\n127.0.0.1\ta.test\n10.0.0.7 mine\n" + end_marker + "\n",
                                markers, prefix, &in_sync.record);
  REQUIRE(user_line);
  CHECK(user_line->bytes == "10.0.0.7 mine\n");
  CHECK(user_line->kept_user_lines == std::vector<std::string>{"10.0.0.7 mine"});
  // An end marker alone after the BOM is still broken markers, on line 1.
  auto stray = find_section(bom + end_marker + "\n", markers, marker_after_bom::allowed);
  REQUIRE_FALSE(stray);
  CHECK(stray.error().message().find("line 1:") != std::string::npos);
  auto stray_fast = detail::find_our_section(bom + end_marker + "\n", markers);
  REQUIRE_FALSE(stray_fast);
  CHECK(stray_fast.error().message() == stray.error().message());
}

TEST_CASE("the record's section_before_write names the section's lines before the write as ours until it lands") {
  const std::string original = "127.0.0.1 localhost\n";
  auto r1 = apply_ok(original, want({{"127.0.0.1", "a.test"}}));
  CHECK(r1.record.section_before_write.empty());  // no section before the first apply
  hosts_edit_options o;
  o.previous = &r1.record;
  auto r2 = apply_hosts(r1.bytes, markers, want({{"127.0.0.2", "a.test"}}), o);
  REQUIRE(r2);
  CHECK(r2->record.section_before_write == r1.record.section);
  // A crash after the record of r2 was written, before its write: the file is r1's.
  auto back = revert_hosts(r1.bytes, markers, prefix, &r2->record);
  REQUIRE(back);
  CHECK(back->bytes == original);
  CHECK(back->kept_user_lines.empty());
  // Without section_before_write, the old line would be taken for a user's.
  hosts_revert_record landed = r2->record;
  landed.section_before_write.clear();
  auto wrong = revert_hosts(r1.bytes, markers, prefix, &landed);
  REQUIRE(wrong);
  CHECK(wrong->kept_user_lines == std::vector<std::string>{"127.0.0.1\ta.test"});
  // A retry given r2's record (the file still r1's) records nothing of r1 as someone else's.
  hosts_edit_options retry_options;
  retry_options.previous = &r2->record;
  auto retry = apply_hosts(r1.bytes, markers, want({{"127.0.0.2", "a.test"}}), retry_options);
  REQUIRE(retry);
  CHECK(retry->bytes == r2->bytes);
  CHECK(retry->record.section == r2->record.section);
  // A user's line in the section stays out of section_before_write, as it stays out of section.
  std::string edited = r1.bytes;
  const std::string ours = "127.0.0.1\ta.test\n";
  edited.replace(edited.find(ours), ours.size(), ours + "192.168.1.5 nas\n");
  o.previous = &r1.record;
  auto r3 = apply_hosts(edited, markers, want({{"127.0.0.2", "a.test"}}), o);
  REQUIRE(r3);
  CHECK(r3->record.section_before_write == r1.record.section);
  auto after_crash = revert_hosts(edited, markers, prefix, &r3->record);
  REQUIRE(after_crash);
  CHECK(after_crash->bytes == original + "192.168.1.5 nas\n");
  CHECK(after_crash->kept_user_lines == std::vector<std::string>{"192.168.1.5 nas"});
}

// ---------------------------------------------------------------------------------------------
// Revert

TEST_CASE("revert keeps lines the user added to our section and says so") {
  auto r = apply_ok("127.0.0.1 localhost\n", want({{"127.0.0.1", "a.test"}}));
  std::string edited = r.bytes;
  std::string ours = "127.0.0.1\ta.test\n";
  edited.replace(edited.find(ours), ours.size(), ours + "192.168.1.5 nas\n");
  auto back = revert_hosts(edited, markers, prefix, &r.record);
  REQUIRE(back.has_value());
  CHECK(back->bytes == "127.0.0.1 localhost\n192.168.1.5 nas\n");
  REQUIRE(back->kept_user_lines.size() == 1);
  CHECK(back->kept_user_lines[0] == "192.168.1.5 nas");
  // Without a record, the whole section goes.
  auto blind = revert_hosts(edited, markers, prefix, nullptr);
  REQUIRE(blind.has_value());
  CHECK(blind->bytes == "127.0.0.1 localhost\n");
  CHECK(blind->kept_user_lines.empty());
}

TEST_CASE("a user's lines in our section are not recorded as ours by a later apply given the previous record") {
  const std::string original = "127.0.0.1 localhost\n";
  auto r1 = apply_ok(original, want({{"127.0.0.1", "a.test"}}));
  std::string edited = r1.bytes;
  const std::string ours = "127.0.0.1\ta.test\n";
  // The user adds a line, and a second copy of one of ours (the same text: counted, not lost).
  edited.replace(edited.find(ours), ours.size(), ours + "192.168.1.5 nas\n" + ours);
  hosts_edit_options o;
  o.previous = &r1.record;
  auto w2 = want({{"127.0.0.1", "a.test"}, {"127.0.0.1", "b.test"}});
  auto r2 = apply_hosts(edited, markers, w2, o);
  REQUIRE(r2.has_value());
  REQUIRE(r2->changed);
  const std::string body = ours + "192.168.1.5 nas\n" + ours + "127.0.0.1\tb.test\n";
  CHECK(r2->section == begin_marker + std::string("\n") + body + end_marker + "\n");
  CHECK(r2->record.section == begin_marker + std::string("\n") + ours + "127.0.0.1\tb.test\n" + end_marker + "\n");
  CHECK(r2->bytes == original + r2->section);
  auto back = revert_hosts(r2->bytes, markers, prefix, &r2->record);
  REQUIRE(back.has_value());
  CHECK(back->bytes == original + "192.168.1.5 nas\n" + ours);
  CHECK(back->kept_user_lines == std::vector<std::string>{"192.168.1.5 nas", "127.0.0.1\ta.test"});
  // r1's lines are all in r2's section: nothing to name as the section before the write.
  CHECK(r2->record.section_before_write.empty());
  // Were it named (a record from a crash after the write, before the record's final store), r2's
  // section explains the file better, and is taken.
  hosts_revert_record pending_record = r2->record;
  pending_record.section_before_write = r1.record.section;
  auto pending = revert_hosts(r2->bytes, markers, prefix, &pending_record);
  REQUIRE(pending.has_value());
  CHECK(pending->bytes == back->bytes);
  // Without the previous record every line of the section counts as ours (a lost record).
  auto blind = apply_hosts(edited, markers, w2, {});
  REQUIRE(blind.has_value());
  CHECK(blind->record.section == blind->section);
  // A first apply (no section yet) records what it writes either way.
  hosts_edit_options first;
  first.previous = &r1.record;
  auto fresh = apply_hosts(original, markers, w2, first);
  REQUIRE(fresh.has_value());
  CHECK(fresh->record.section == fresh->section);
}

TEST_CASE("a user's line in our section that apply drops as stale: the lines made from its other names stay theirs") {
  const std::string original = "127.0.0.1 localhost\n";
  auto r1 = apply_ok(original, want({{"127.0.0.1", "foo.test"}}));
  std::string edited = r1.bytes;
  const std::string ours = "127.0.0.1\tfoo.test\n";
  edited.replace(edited.find(ours), ours.size(), "10.0.0.5 foo.test nas\n" + ours);
  hosts_edit_options o;
  o.previous = &r1.record;
  auto r2 = apply_hosts(edited, markers, want({{"127.0.0.1", "foo.test"}}), o);
  REQUIRE(r2.has_value());
  CHECK(r2->dropped_section_lines == std::vector<std::string>{"10.0.0.5 foo.test nas"});
  CHECK(r2->section == begin_marker + std::string("\n10.0.0.5\tnas\n") + ours + end_marker + "\n");
  CHECK(r2->record.section == begin_marker + std::string("\n") + ours + end_marker + "\n");
  auto back = revert_hosts(r2->bytes, markers, prefix, &r2->record);
  REQUIRE(back.has_value());
  CHECK(back->bytes == original + "10.0.0.5\tnas\n");
  CHECK(back->kept_user_lines == std::vector<std::string>{"10.0.0.5\tnas"});
  // One of ours dropped as stale (no previous record lists it as someone else's): its other
  // names' lines are ours, removed by revert.
  auto r3 = apply_hosts(edited, markers, want({{"127.0.0.1", "foo.test"}}), {});
  REQUIRE(r3.has_value());
  CHECK(r3->record.section == r3->section);
}

TEST_CASE("revert reports a disabled line the user changed since") {
  std::string bytes = "10.0.0.9 a.test\n";
  auto r = apply_ok(bytes, want({{"127.0.0.1", "a.test"}}), true);
  std::string edited = r.bytes;
  edited.replace(0, prefix.size() + 8, "10.0.0.7");  // the user rewrote the disabled line
  auto back = revert_hosts(edited, markers, prefix, &r.record);
  REQUIRE(back.has_value());
  CHECK(back->restored.empty());
  REQUIRE(back->not_found.size() == 1);
  CHECK(back->not_found[0].original == "10.0.0.9 a.test");
}

TEST_CASE("revert of a file without our section changes nothing") {
  std::string bytes = "127.0.0.1 localhost";
  auto back = revert_hosts(bytes, markers, prefix, nullptr);
  REQUIRE(back.has_value());
  CHECK_FALSE(back->changed);
  CHECK_FALSE(back->section_found);
  CHECK(back->bytes == bytes);
}

TEST_CASE("install then revert gives the original bytes for every corpus file (plain and override)") {
  auto files = corpus_files();
  if (files.empty()) {
    HOSTCFG_SKIP("no hosts corpus at " + hostcfg_test::corpus_dir());
    return;
  }
  auto w = want({{"127.0.0.1", "kubernetes.docker.internal"}, {"127.0.0.1", "localhost"}, {"::1", "localhost"},
                 {"127.0.0.1", "odin"}, {"127.0.0.1", "test2"}});
  for (const auto& file : files) {
    const std::string& name = file.first;
    const std::string& bytes = file.second;
    for (bool override : {false, true}) {
      CAPTURE(name);
      CAPTURE(override);
      auto r = apply_ok(bytes, w, override);
      // Everything before our section is the original, except tagged disabled lines.
      if (r.disabled.empty() && r.changed) CHECK(r.bytes.compare(0, bytes.size(), bytes) == 0);
      auto again = apply_ok(r.bytes, w, override);
      CHECK_FALSE(again.changed);
      auto back = revert_hosts(r.bytes, markers, prefix, &r.record);
      REQUIRE(back.has_value());
      CHECK(back->bytes == bytes);
      CHECK(back->kept_user_lines.empty());
      if (override) {
        auto p = probe_ok(r.bytes, w);
        for (const auto& m : p.mappings) CHECK(m.state == hosts_mapping_state::in_sync);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Performance (printed, never asserted)

TEST_CASE("parse, probe and apply on the 108k-line corpus file are one linear pass (timings printed)") {
  std::string bytes = read_file(hostcfg_test::corpus_dir() + "/hosts/large-blocklistproject-redirect-108k.hosts");
  if (bytes.empty()) {
    HOSTCFG_SKIP("large corpus file missing");
    return;
  }
  using clock = std::chrono::steady_clock;
  auto ms = [](clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  auto t0 = clock::now();
  auto f = parse_hosts(bytes);
  auto t1 = clock::now();
  auto p = probe_ok(bytes, want({{"127.0.0.1", "kubernetes.docker.internal"}}));
  auto t2 = clock::now();
  auto r = apply_ok(bytes, want({{"127.0.0.1", "kubernetes.docker.internal"}}));
  auto t3 = clock::now();
  CHECK(f.lines.size() > 100000);
  CHECK(p.mappings[0].state == hosts_mapping_state::missing);
  CHECK(r.bytes.size() > bytes.size());
  MESSAGE("108k-line hosts: parse " << ms(t1 - t0) << " ms, probe " << ms(t2 - t1) << " ms, apply " << ms(t3 - t2)
                                    << " ms (" << bytes.size() << " bytes)");
}

TEST_CASE("override over 20,000 conflicting lines stays linear and reverts exactly") {
  std::string bytes;
  for (int i = 0; i < 20000; ++i) bytes += "0.0.0.0 a.test n" + std::to_string(i) + ".test\n";
  auto r = apply_ok(bytes, want({{"127.0.0.1", "a.test"}}), true);
  CHECK(r.disabled.size() == 20000);
  CHECK(r.added.size() == 1);
  CHECK(r.carried.size() == 20000);
  CHECK_FALSE(apply_ok(r.bytes, want({{"127.0.0.1", "a.test"}}), true).changed);
  auto back = revert_hosts(r.bytes, markers, prefix, &r.record);
  REQUIRE(back.has_value());
  CHECK(back->bytes == bytes);
  CHECK(back->restored.size() == 20000);
}

// ---------------------------------------------------------------------------------------------
// The search helpers probe and apply are built on (issue 4, Performance)

TEST_CASE("count_byte and count_line_breaks agree with a byte loop at every length and alignment") {
  std::string text;
  for (int i = 0; i < 3000; ++i) text += "ab\ncd\r\ne\rf\n\n"[i % 12];
  // The same without any '\r' but one, placed in a whole 32-byte block, in the tail after the
  // last whole block, or just before `to` with its '\n' after `to`: the AVX2 count learns from its
  // blocks whether a '\r' is there and must not miss one outside them.
  std::string lf_only;
  for (int i = 0; i < 3000; ++i) lf_only += "ab\ncd\ne\nf\n\n"[i % 11];
  auto naive = [](const std::string& t, std::size_t from, std::size_t to) {
    std::size_t lf = 0, breaks = 0;
    for (std::size_t i = from; i < to; ++i) {
      lf += t[i] == '\n' ? 1 : 0;
      breaks += (t[i] == '\n' || (t[i] == '\r' && !(i + 1 < t.size() && t[i + 1] == '\n'))) ? 1 : 0;
    }
    return std::make_pair(lf, breaks);
  };
  // Says which loop `best` is here: on a CPU without AVX2 both passes test the portable loop.
  MESSAGE("count_byte's best loop on this CPU: " << std::string(detail::cpu_runs_avx2_search() ? "AVX2" : "portable"));
  for (auto isa : {detail::search_isa::best, detail::search_isa::portable}) {
    CAPTURE(isa == detail::search_isa::best);
    for (std::size_t from : {std::size_t{0}, std::size_t{1}, std::size_t{7}})
      for (std::size_t to = from; to <= text.size(); to += 97) {
        auto [lf, breaks] = naive(text, from, to);
        CAPTURE(from);
        CAPTURE(to);
        CHECK(detail::count_byte(text.data() + from, text.data() + to, '\n', isa) == lf);
        CHECK(detail::count_line_breaks(text, from, to, isa) == breaks);
      }
    for (std::size_t to : {std::size_t{31}, std::size_t{32}, std::size_t{95}, std::size_t{2048}, std::size_t{2061},
                           lf_only.size()})
      for (std::size_t cr_at : {std::size_t{0}, std::size_t{5}, to > 3 ? to - 3 : 0, to > 1 ? to - 1 : 0}) {
        std::string t = lf_only;
        t[cr_at] = '\r';
        auto [lf, breaks] = naive(t, 0, to);
        CAPTURE(to);
        CAPTURE(cr_at);
        CHECK(detail::count_byte(t.data(), t.data() + to, '\n', isa) == lf);
        CHECK(detail::count_line_breaks(t, 0, to, isa) == breaks);
      }
    // A '\r' only after the first 255 blocks (8160 bytes): the mask that saw it outlives a flush
    // of the tallies.
    std::string long_lf;
    while (long_lf.size() < 32 * 600) long_lf += lf_only;
    long_lf[32 * 400 + 3] = '\r';
    long_lf[32 * 400 + 4] = 'x';  // a lone '\r': one break more than the '\n's
    auto [long_count, long_breaks] = naive(long_lf, 0, long_lf.size());
    CHECK(detail::count_line_breaks(long_lf, 0, long_lf.size(), isa) == long_breaks);
    CHECK(long_breaks == long_count + 1);
    // More than 255 rounds of 32 bytes, all matches: the per-byte tallies must not overflow.
    std::string all(32 * 600 + 5, '\n');
    CHECK(detail::count_byte(all.data(), all.data() + all.size(), '\n', isa) == all.size());
    CHECK(detail::count_line_breaks(all, 0, all.size(), isa) == all.size());
  }
}

TEST_CASE("line_numberer numbers line starts asked in any order") {
  std::string text;
  for (int i = 0; i < 3000; ++i) text += "ab\ncd\r\ne\rf\n\n"[i % 12];
  std::vector<std::size_t> starts{0}, numbers{1};
  std::size_t pos = 0;
  while (pos < text.size()) {
    detail::next_line(text, pos);
    if (pos < text.size()) {
      starts.push_back(pos);
      numbers.push_back(numbers.back() + 1);
    }
  }
  REQUIRE(starts.size() > 1000);
  // Increasing, decreasing, and jumping between both ends: every answer right, each repeated.
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < starts.size(); i += 37) order.push_back(i);
  for (std::size_t i = starts.size(); i-- > 0;) if (i % 41 == 0) order.push_back(i);
  for (std::size_t i = 0; i < starts.size() / 2; i += 53) {
    order.push_back(starts.size() - 1 - i);
    order.push_back(i);
  }
  detail::line_numberer numberer(text);
  for (std::size_t i : order) {
    CAPTURE(i);
    CHECK(numberer.at(starts[i]) == numbers[i]);
    CHECK(numberer.at(starts[i]) == numbers[i]);
  }
}

namespace {

/// field_search's hits as (position, name index), a line hit with index SIZE_MAX.
std::vector<std::pair<std::size_t, std::size_t>> field_hits(std::string_view hay,
                                                            const std::vector<std::string_view>& names,
                                                            std::string_view firsts,
                                                            detail::search_isa isa = detail::search_isa::best) {
  std::vector<std::pair<std::size_t, std::size_t>> hits;
  detail::field_search(names, firsts, isa)
      .run(hay, [&](std::size_t k, std::size_t p) { hits.emplace_back(p, k); },
           [&](std::size_t p) { hits.emplace_back(p, SIZE_MAX); });
  return hits;
}

}  // namespace

TEST_CASE("field_search finds names only right after a space or tab, any case, and chosen bytes only at line starts") {
  const std::string hay = "# c\n0.0.0.0 Kubernetes.Docker.Internal\n127.0.0.1\tkubernetes.docker.internalx\n"
                          "a kubernetes.docker.internal\nxKUBERNETES.DOCKER.INTERNAL\n\r#x #y";
  const std::vector<std::string_view> names{"kubernetes.docker.internal", "", "a"};  // the empty name is ignored
  const auto hits = field_hits(hay, names, "#");
  using hit = std::pair<std::size_t, std::size_t>;
  const std::vector<hit> expected{{0, SIZE_MAX},                        // "# c" at the file start
                                  {12, 0},                              // Kubernetes.Docker.Internal
                                  {49, 0},                              // after the tab (the caller checks the end)
                                  {79, 0},                              // "a kubernetes..."
                                  {hay.size() - 5, SIZE_MAX}};          // "#x" after "\n\r"; "#y" is not a line start
  CHECK(hits == expected);
  CHECK(hay.compare(12, 10, "Kubernetes") == 0);
  CHECK(hay.compare(49, 10, "kubernetes") == 0);
  CHECK(hay.compare(79, 10, "kubernetes") == 0);
  // The name "a" (index 1 of the non-empty names) has no field start here: "a kube..." starts a line.
  CHECK(field_hits("x a\na a", {"a"}, "") == std::vector<hit>{{2, 0}, {6, 0}});
}

TEST_CASE("field_search's vector loops: every case, every block offset, both instruction sets, one pass for all") {
  // Long enough that the blocks run (64 positions), with the name at every offset around a block
  // edge, in both builds; upper case elsewhere in the file (comments, other names) must not hide
  // a match, and a name that differs only in case is the same name. A marker-like line right
  // after it is found in the same pass.
  const std::string name = "kubernetes.docker.internal";
  const std::string filler = "# Title: UPPER Case Comment\n0.0.0.0 Ads.Tracker.NET kubernetes.docker.interna\n";
  CAPTURE(detail::cpu_runs_avx2_search());
  for (auto isa : {detail::search_isa::best, detail::search_isa::portable})
  for (std::size_t pad = 0; pad < 300; ++pad) {
    for (std::string spelled : {"kubernetes.docker.internal", "KUBERNETES.Docker.Internal"}) {
      std::string hay = filler + std::string(pad, 'k') + " \t" + spelled + "\n@ marker\n" + filler + "x" + spelled;
      const std::size_t at = filler.size() + pad + 2;
      const std::size_t marker = at + name.size() + 1;
      CAPTURE(pad);
      CAPTURE(spelled);
      CAPTURE(isa == detail::search_isa::best);
      const auto hits = field_hits(hay, {name, "localhost"}, "@", isa);
      REQUIRE(hits.size() == 2);
      CHECK(hits[0] == std::make_pair(at, std::size_t{0}));
      CHECK(hits[1] == std::make_pair(marker, std::size_t{SIZE_MAX}));
      std::vector<std::string_view> names{name};
      std::vector<std::size_t> starts = detail::lines_naming(hay, names);
      REQUIRE(starts.size() == 1);
      CHECK(starts[0] == filler.size());
    }
  }
  // A byte whose low bits equal a letter's but is not that letter: (c | 0x20) folds letters
  // only, so '\x0e' (0x0e | 0x20 == '.') never stands in for a '.' that starts or ends a name.
  std::string tricky = std::string(80, ' ') + "\x0e" + "local" + std::string(80, ' ') + ".local";
  for (auto isa : {detail::search_isa::best, detail::search_isa::portable})
    CHECK(field_hits(tricky, {".local"}, "", isa) ==
          std::vector<std::pair<std::size_t, std::size_t>>{{tricky.size() - 6, 0}});
  // Upper-case in the needle is folded too.
  CHECK(field_hits(" kubernetes.Docker.internal", {"KUBERNETES.docker.INTERNAL"}, "").size() == 1);
}

TEST_CASE("hosts_numbering::problems_only numbers only what is not in sync, and counts no line for a file in sync") {
  std::string filler;
  for (int i = 0; i < 5000; ++i) filler += "0.0.0.0 host-" + std::to_string(i) + ".example\n";
  const std::string bytes = "127.0.0.1 localhost\n10.9.9.9 odin\n" + filler + "#127.0.0.1 comm.test\n" +
                            markers.begin_line + "\n127.0.0.1\tkube.test\n10.1.1.1\tstale.test\n" + markers.end_line +
                            "\n";
  auto w = want({{"127.0.0.1", "localhost"},
                 {"127.0.0.1", "odin"},
                 {"127.0.0.1", "comm.test"},
                 {"127.0.0.1", "kube.test"},
                 {"127.0.0.1", "stale.test"}});
  auto every = probe_hosts(bytes, markers, w, scan_hosts(bytes, markers, w, hosts_numbering::all));
  const hosts_scan lazy_scan = scan_hosts(bytes, markers, w, hosts_numbering::problems_only);
  auto lazy = probe_hosts(bytes, markers, w, lazy_scan);
  REQUIRE(every.has_value());
  REQUIRE(lazy.has_value());
  CHECK(every->section->begin_line_number == 5004);
  CHECK(lazy->section->begin_line_number == 0);
  const std::vector<std::size_t> all_numbers{1, 2, 5003, 5005, 5006};
  const std::vector<hosts_mapping_state> states{hosts_mapping_state::in_sync, hosts_mapping_state::conflict,
                                                hosts_mapping_state::commented_out, hosts_mapping_state::in_sync,
                                                hosts_mapping_state::stale_in_section};
  for (std::size_t k = 0; k < w.size(); ++k) {
    CAPTURE(k);
    CHECK(every->mappings[k].state == states[k]);
    CHECK(lazy->mappings[k].state == states[k]);
    CHECK(every->mappings[k].line_number == all_numbers[k]);
    CHECK(lazy->mappings[k].line_number == (states[k] == hosts_mapping_state::in_sync ? 0 : all_numbers[k]));
    CHECK(lazy->mappings[k].line_text == every->mappings[k].line_text);
  }
  // Apply's answers (conflicts left, lines disabled by override) carry their numbers either way.
  hosts_edit_options o;
  auto applied = apply_hosts(bytes, markers, w, o, lazy_scan);
  REQUIRE(applied.has_value());
  REQUIRE(applied->conflicts_left.size() == 1);
  CHECK(applied->conflicts_left[0].line_number == 2);
  CHECK(applied->bytes == apply_hosts(bytes, markers, w, o)->bytes);
  o.override_conflicts = true;
  o.disable_prefix = prefix;
  auto overridden = apply_hosts(bytes, markers, w, o, lazy_scan);
  REQUIRE(overridden.has_value());
  REQUIRE(overridden->disabled.size() == 1);
  CHECK(overridden->disabled[0].line_number == 2);
  CHECK(overridden->bytes == apply_hosts(bytes, markers, w, o)->bytes);

  // A file in sync: probe and the edit's description count no line at all; with `all` they
  // number our section, at the end of the file.
  auto in_sync = want({{"127.0.0.1", "localhost"}, {"127.0.0.1", "kube.test"}});
  const hosts_scan quiet = scan_hosts(bytes, markers, in_sync, hosts_numbering::problems_only);
  hosts_edit_options describe;
  describe.compute_bytes = false;
  auto quiet_probe = probe_hosts(bytes, markers, in_sync, quiet);
  auto quiet_apply = apply_hosts(bytes, markers, in_sync, describe, quiet);
  REQUIRE(quiet_probe.has_value());
  REQUIRE(quiet_apply.has_value());
  CHECK_FALSE(quiet_apply->changed);
  CHECK(quiet.numbers.highest_numbered() == 0);
  const hosts_scan counted = scan_hosts(bytes, markers, in_sync);
  REQUIRE(probe_hosts(bytes, markers, in_sync, counted).has_value());
  CHECK(counted.numbers.highest_numbered() >= bytes.find(markers.begin_line));

  // Broken markers name their line in both modes; a scan that does not fit keeps the mode.
  const std::string broken = filler + markers.begin_line + "\n127.0.0.1 odin\n";
  auto lazy_broken = probe_hosts(broken, markers, w, scan_hosts(broken, markers, w, hosts_numbering::problems_only));
  REQUIRE_FALSE(lazy_broken.has_value());
  CHECK(lazy_broken.error().message() == probe_hosts(broken, markers, w).error().message());
  CHECK(lazy_broken.error().message().find("line 5001") != std::string::npos);
  const std::string copy(bytes);
  auto refitted = probe_hosts(bytes, markers, w, scan_hosts(copy, markers, w, hosts_numbering::problems_only));
  REQUIRE(refitted.has_value());
  CHECK(refitted->mappings[0].line_number == 0);
  CHECK(refitted->mappings[1].line_number == 2);

  // A commented-out mention, then the line that decides (in sync): no number left over from the
  // comment (the fuzzer found that one).
  const std::string both = "#127.0.0.1 odin\n127.0.0.1 odin\n";
  auto w_odin = want({{"127.0.0.1", "odin"}});
  auto decided = probe_hosts(both, markers, w_odin, scan_hosts(both, markers, w_odin, hosts_numbering::problems_only));
  REQUIRE(decided.has_value());
  CHECK(decided->mappings[0].state == hosts_mapping_state::in_sync);
  CHECK(decided->mappings[0].line_number == 0);
  CHECK(probe_hosts(both, markers, w_odin)->mappings[0].line_number == 2);
  CHECK(refitted->section->begin_line_number == 0);

  // Line 1 after a UTF-8 BOM is read as the resolver reads it in both modes: an entry there
  // decides nothing (so it is no conflict), a commented-out mention there is one.
  const std::string bom = std::string("\xEF\xBB\xBF") + "10.0.0.9 odin\n" + markers.begin_line + "\n" + markers.end_line + "\n";
  const std::string bom_comment = std::string("\xEF\xBB\xBF") + "#127.0.0.1 odin\n";
  for (hosts_numbering mode : {hosts_numbering::all, hosts_numbering::problems_only}) {
    auto p = probe_hosts(bom, markers, w_odin, scan_hosts(bom, markers, w_odin, mode));
    REQUIRE(p.has_value());
    CHECK(p->mappings[0].state == hosts_mapping_state::missing);
    CHECK(p->section->begin_line_number == (mode == hosts_numbering::all ? 2u : 0u));
    auto c = probe_hosts(bom_comment, markers, w_odin, scan_hosts(bom_comment, markers, w_odin, mode));
    REQUIRE(c.has_value());
    CHECK(c->mappings[0].state == hosts_mapping_state::commented_out);
    CHECK(c->mappings[0].line_number == 1);
  }
  auto fixed = apply_hosts(bom, markers, w_odin, {});
  REQUIRE(fixed.has_value());
  CHECK(fixed->conflicts_left.empty());
  CHECK(fixed->bytes == std::string("\xEF\xBB\xBF") + "10.0.0.9 odin\n" + markers.begin_line + "\n127.0.0.1\todin\n" +
                            markers.end_line + "\n");

  // Markers that cannot be searched for (an older begin text holding a line break) take the
  // line-by-line path: the mode still decides the section's number.
  section_markers odd = markers;
  odd.begin_prefixes.push_back("# older\nmarker");
  auto odd_lazy = probe_hosts(bytes, odd, w, scan_hosts(bytes, odd, w, hosts_numbering::problems_only));
  auto odd_all = probe_hosts(bytes, odd, w, scan_hosts(bytes, odd, w));
  REQUIRE(odd_lazy.has_value());
  REQUIRE(odd_all.has_value());
  CHECK(odd_lazy->section->begin_line_number == 0);
  CHECK(odd_all->section->begin_line_number == 5004);
  CHECK(odd_lazy->mappings[1].line_number == 2);

  // A scan whose bytes were re-pointed by hand counts in its own bytes, never in a stale view.
  hosts_scan moved = scan_hosts(bytes, markers, w, hosts_numbering::problems_only);
  const std::string twin(bytes);
  moved.bytes = twin;
  CHECK(moved.line_number(bytes.find("10.9.9.9")) == 2);
  CHECK(moved.numbers.bytes().data() == twin.data());
}

TEST_CASE("a shared hosts_scan gives probe and apply exactly their own answers; a scan that does not fit is ignored") {
  // Our section with a stale line, a conflict before it, a commented-out mention, CRLF endings.
  const std::string bytes =
      "127.0.0.1\tlocalhost\r\n"
      "10.9.9.9 ODIN other\r\n"
      "#127.0.0.1 kube.test\r\n" +
      markers.begin_line + "\r\n"
      "10.1.1.1\tkube.test\r\n" +
      markers.end_line + "\r\n";
  auto w = want({{"127.0.0.1", "localhost"}, {"127.0.0.1", "odin"}, {"127.0.0.1", "kube.test"}});
  const hosts_scan scan = scan_hosts(bytes, markers, w);
  CHECK(scan.bytes.data() == bytes.data());
  REQUIRE(scan.section.has_value());
  REQUIRE(scan.section->has_value());
  CHECK((*scan.section)->begin_line_number == 4);
  // Line starts of lines 1, 2, 3 and 5 (the four lines naming a wanted name), in order.
  CHECK(scan.line_starts == std::vector<std::size_t>{0, 21, 42, 64 + markers.begin_line.size() + 2});
  std::vector<std::size_t> numbers;
  for (std::size_t start : scan.line_starts) numbers.push_back(scan.line_number(start));
  CHECK(numbers == std::vector<std::size_t>{1, 2, 3, 5});

  auto plain = probe_hosts(bytes, markers, w);
  auto shared = probe_hosts(bytes, markers, w, scan);
  REQUIRE(plain.has_value());
  REQUIRE(shared.has_value());
  REQUIRE(shared->mappings.size() == 3);
  for (std::size_t k = 0; k < 3; ++k) {
    CAPTURE(k);
    CHECK(shared->mappings[k].state == plain->mappings[k].state);
    CHECK(shared->mappings[k].line_number == plain->mappings[k].line_number);
    CHECK(shared->mappings[k].line_text == plain->mappings[k].line_text);
  }
  CHECK(shared->mappings[0].state == hosts_mapping_state::in_sync);
  CHECK(shared->mappings[1].state == hosts_mapping_state::conflict);
  CHECK(shared->mappings[1].line_number == 2);
  CHECK(shared->mappings[2].state == hosts_mapping_state::stale_in_section);
  CHECK(shared->mappings[2].line_number == 5);

  hosts_edit_options o;
  o.override_conflicts = true;
  o.disable_prefix = prefix;
  auto applied_plain = apply_hosts(bytes, markers, w, o);
  auto applied_shared = apply_hosts(bytes, markers, w, o, scan);
  REQUIRE(applied_plain.has_value());
  REQUIRE(applied_shared.has_value());
  CHECK(applied_shared->bytes == applied_plain->bytes);
  CHECK(applied_shared->bytes == "127.0.0.1\tlocalhost\r\n" + prefix + "10.9.9.9 ODIN other\r\n"
                                 "#127.0.0.1 kube.test\r\n" + markers.begin_line + "\r\n"
                                 "10.9.9.9\tother\r\n127.0.0.1\todin\r\n127.0.0.1\tkube.test\r\n" +
                                     markers.end_line + "\r\n");
  CHECK(applied_shared->record.section == applied_plain->record.section);
  CHECK(applied_shared->dropped_section_lines == std::vector<std::string>{"10.1.1.1\tkube.test"});
  CHECK(applied_shared->section_line_number == 4);

  // A scan of another file is not trusted: the answer is the one for `bytes`.
  const std::string other = "127.0.0.1 odin\n";
  const hosts_scan wrong = scan_hosts(other, markers, w);
  auto guarded = probe_hosts(bytes, markers, w, wrong);
  REQUIRE(guarded.has_value());
  CHECK(guarded->mappings[1].state == hosts_mapping_state::conflict);
  CHECK(guarded->section.has_value());
  auto guarded_apply = apply_hosts(bytes, markers, w, o, wrong);
  REQUIRE(guarded_apply.has_value());
  CHECK(guarded_apply->bytes == applied_plain->bytes);
  // Nor is one searched for fewer names (odin's conflict would be missed) or other markers.
  const hosts_scan narrow = scan_hosts(bytes, markers, want({{"127.0.0.1", "localhost"}}));
  CHECK(probe_hosts(bytes, markers, w, narrow)->mappings[1].line_number == 2);
  const hosts_scan foreign = scan_hosts(bytes, default_markers("org.other"), w);
  CHECK_FALSE(foreign.section->has_value());
  CHECK(probe_hosts(bytes, markers, w, foreign)->mappings[2].state == hosts_mapping_state::stale_in_section);

  // Broken markers are kept in the scan and reported by each overload, as without one.
  const std::string broken = markers.begin_line + "\n127.0.0.1 odin\n";
  const hosts_scan broken_scan = scan_hosts(broken, markers, w);
  CHECK_FALSE(broken_scan.section.has_value());
  CHECK(broken_scan.line_starts.empty());
  auto bp = probe_hosts(broken, markers, w, broken_scan);
  auto ba = apply_hosts(broken, markers, w, o, broken_scan);
  REQUIRE_FALSE(bp.has_value());
  REQUIRE_FALSE(ba.has_value());
  CHECK(bp.error().is(errc::broken_markers));
  CHECK(bp.error().message() == probe_hosts(broken, markers, w).error().message());
  CHECK(ba.error().message() == apply_hosts(broken, markers, w, o).error().message());
}
