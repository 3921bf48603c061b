// Input validation for hosts entries (RELIABILITY H2/H3): hostnames and addresses.
#include "hostcfg/format/hostname.hpp"
#include "hostcfg/format/hosts.hpp"
#include "hostcfg/format/ip_address.hpp"

#include <arpa/inet.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "support/test_support.hpp"

using namespace hostcfg;

TEST_CASE("valid hostnames are accepted") {
  for (const char* name : {"localhost", "kubernetes.docker.internal", "a", "a-b.c", "x1.y2", "0a.example",
                           "xn--bcher-kva.example", "123.example", "host.docker.internal"}) {
    CAPTURE(name);
    CHECK(validate_hostname(name).has_value());
  }
  CHECK(validate_hostname(std::string(63, 'a') + ".b").has_value());
  // 253 bytes: four labels of 63 + dots = 255, so 3*63 + 3 dots + 61 = 253.
  std::string longest = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
                        std::string(61, 'd');
  REQUIRE(longest.size() == 253);
  CHECK(validate_hostname(longest).has_value());
}

TEST_CASE("valid canonical addresses are accepted and keep their text") {
  for (const char* text : {"127.0.0.1", "0.0.0.0", "255.255.255.255", "10.0.12.30", "::1", "::", "fe80::1",
                           "2001:db8::1", "2001:db8:0:1:1:1:1:1", "1::", "2001:db8::1:0:0:1"}) {
    CAPTURE(text);
    auto a = parse_ip_address(text);
    REQUIRE(a.has_value());
    CHECK(to_string(*a) == text);
  }
  CHECK(parse_ip_address("127.0.0.1")->family == address_family::ipv4);
  CHECK(parse_ip_address("::1")->family == address_family::ipv6);
}

namespace {
struct bad_case {
  const char* label;
  std::string address;
  std::string name;
  const char* expected;  // a fragment the message must contain
};
}  // namespace

TEST_CASE("bad-input table: each hazard is refused with a message naming the problem and the field") {
  const std::string ok_addr = "127.0.0.1";
  const std::string ok_name = "example.test";
  std::vector<bad_case> cases = {
      {"newline in name", ok_addr, "a\nb", "name 'a\\nb': contains a newline (\\n) at byte 1"},
      {"CR in name", ok_addr, "a\rb", "contains a carriage return"},
      {"CRLF injection", ok_addr, "evil\r\n127.0.0.1 bank.com", "contains a carriage return (\\r) at byte 4"},
      {"NUL in name", ok_addr, std::string("a\0b", 3), "contains a NUL byte at byte 1"},
      {"hash in name", ok_addr, "a#b", "'#' (starts a comment"},
      {"space in name", ok_addr, "a b", "contains a space"},
      {"tab in name", ok_addr, "a\tb", "contains a tab"},
      {"vertical tab", ok_addr, "a\vb", "vertical tab"},
      {"form feed", ok_addr, "a\fb", "form feed"},
      {"control char", ok_addr, "a\x01" "b", "control character"},
      {"non-ASCII UTF-8", ok_addr, "b\xc3\xbc" "cher.example", "non-ASCII byte"},
      {"non-UTF-8 byte", ok_addr, "a\xff", "non-ASCII byte"},
      {"leading hyphen", ok_addr, "-a", "starts with a hyphen"},
      {"trailing hyphen in label", ok_addr, "a-.example", "label 1 'a-' ends with a hyphen"},
      {"64-char label", ok_addr, std::string(64, 'a') + ".example", "is 64 bytes long; at most 63"},
      {"254-char name", ok_addr,
       std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." + std::string(62, 'd'),
       "is 254 bytes long; at most 253"},
      {"empty name", ok_addr, "", "is empty"},
      {"empty label", ok_addr, "a..b", "empty label"},
      {"leading dot", ok_addr, ".a", "starts with a dot"},
      {"trailing dot", ok_addr, "a.example.", "ends with a dot"},
      {"underscore", ok_addr, "a_b.example", "contains '_'"},
      {"upper case refused with lower-case hint", ok_addr, "Docker.Internal",
       "upper case at byte 0 [write it in lower case: 'docker.internal']"},
      {"numeric last label", ok_addr, "127.0.0.1", "last label is all digits"},
      {"bare xn--", ok_addr, "xn--.example", "label 1 'xn--' ends with a hyphen"},
      {"leading-zero octet", "010.0.0.1", ok_name, "part '010' has a leading zero"},
      {"short IPv4", "127.1", ok_name, "has 2 parts; an IPv4 address has four"},
      {"hex IPv4", "0x7f.0.0.1", ok_name, "hexadecimal"},
      {"octet > 255", "256.0.0.1", ok_name, "part '256' is larger than 255"},
      {"five parts", "1.2.3.4.5", ok_name, "has 5 parts"},
      {"empty octet", "1..2.3", ok_name, "has an empty part"},
      {"zone id", "fe80::1%en0", ok_name, "has a zone id"},
      {"brackets", "[::1]", ok_name, "is in brackets"},
      {"IPv4-mapped", "::ffff:127.0.0.1", ok_name, "IPv4-mapped IPv6 address; hosts files list IPv4 addresses as IPv4 [write '127.0.0.1']"},
      {"IPv4-mapped hex", "::ffff:7f00:1", ok_name, "IPv4-mapped IPv6 address; hosts files list IPv4 addresses as IPv4 [write '127.0.0.1']"},
      {"IPv4-compatible", "::127.0.0.1", ok_name, "deprecated IPv4-compatible"},
      {"upper-case IPv6", "FE80::1", ok_name, "not in canonical form [write it as 'fe80::1']"},
      {"uncompressed IPv6", "0:0:0:0:0:0:0:1", ok_name, "not in canonical form [write it as '::1']"},
      {"leading zeros in group", "2001:0db8::1", ok_name, "write it as '2001:db8::1'"},
      {"single zero group compressed", "2001:db8::1:1:1:1:1", ok_name, "write it as '2001:db8:0:1:1:1:1:1'"},
      {"two gaps", "1::2::3", ok_name, "is not an IPv6 address"},
      {"newline in address", "127.0.0.1\n", ok_name, "address '127.0.0.1\\n': contains a newline"},
      {"space in address", "127.0.0.1 evil", ok_name, "contains a space"},
      {"hash in address", "127.0.0.1#", ok_name, "'#'"},
      {"empty address", "", ok_name, "address '': is empty"},
      {"name as address", "localhost", ok_name, "contains 'l'"},
  };
  REQUIRE(cases.size() >= 30);
  for (const auto& c : cases) {
    std::string label = c.label;
    CAPTURE(label);
    auto m = make_hosts_mapping(c.address, c.name);
    REQUIRE_FALSE(m.has_value());
    CHECK(m.error().is(errc::invalid_input));
    std::string msg = m.error().message();
    CAPTURE(msg);
    CHECK(msg.find(c.expected) != std::string::npos);
    // The message never carries a raw control byte into a log.
    for (char ch : msg) CHECK((static_cast<unsigned char>(ch) >= 0x20 && static_cast<unsigned char>(ch) < 0x7f));
    // Bad input produces no bytes: apply refuses before looking at the file.
    auto applied = apply_hosts("127.0.0.1 localhost\n", default_markers("app"), {{c.address, c.name}}, {});
    REQUIRE_FALSE(applied.has_value());
    CHECK(applied.error().is(errc::invalid_input));
    CHECK(applied.error().message().find("mappings[0]") != std::string::npos);
  }
}

TEST_CASE("a mapping whose hosts line would reach 256 bytes is refused (H7)") {
  auto name_of = [](std::size_t size) {  // labels of 63 joined by dots, `size` bytes in all
    std::string n;
    while (n.size() + 64 <= size) n += std::string(63, 'a') + ".";
    n += std::string(size - n.size(), 'b');
    return n;
  };
  std::string longest_ok = name_of(245);  // "127.0.0.1" + tab + 245 = 255 bytes
  std::string too_long = name_of(246);    // 256 bytes
  REQUIRE(validate_hostname(too_long).has_value());
  auto ok = apply_hosts("", default_markers("app"), {{"127.0.0.1", longest_ok}}, {});
  REQUIRE(ok.has_value());
  CHECK(ok->bytes.find("127.0.0.1\t" + longest_ok + "\n") != std::string::npos);
  auto refused = apply_hosts("", default_markers("app"), {{"127.0.0.1", too_long}}, {});
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().is(errc::invalid_input));
  CHECK(refused.error().message().find("would be 256 bytes; hosts lines are kept under 256") != std::string::npos);
}

TEST_CASE("errors name the field that is wrong") {
  auto e = make_hosts_mappings("127.0.0.1", {"ok.example", "bad name"});
  REQUIRE_FALSE(e.has_value());
  CHECK(e.error().message() == "validate hostname names[1] 'bad name': contains a space at byte 3");
  auto a = parse_ip_address("127.1", "entry.address");
  REQUIRE_FALSE(a.has_value());
  CHECK(a.error().message() ==
        "validate address entry.address '127.1': has 2 parts; an IPv4 address has four [write all four parts, e.g. "
        "127.0.0.1]");
  auto none = make_hosts_mappings("127.0.0.1", {});
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error().message().find("no name given") != std::string::npos);
}

TEST_CASE("canonical IPv6 text equals the platform inet_ntop for random and edge addresses") {
  std::mt19937 rng(4242);
  std::vector<std::array<std::uint8_t, 16>> samples;
  for (int i = 0; i < 3000; ++i) {
    std::array<std::uint8_t, 16> b{};
    for (int w = 0; w < 8; ++w) {
      // Favour zero groups so runs and ties of `::` are exercised.
      unsigned v = (rng() % 3 == 0) ? unsigned(rng() & 0xffff) : (rng() % 4 == 0 ? 1u : 0u);
      b[2 * w] = static_cast<std::uint8_t>(v >> 8);
      b[2 * w + 1] = static_cast<std::uint8_t>(v & 0xff);
    }
    samples.push_back(b);
  }
  std::array<std::uint8_t, 16> mapped{};
  mapped[10] = mapped[11] = 0xff;
  mapped[12] = 127;
  mapped[15] = 1;
  samples.push_back(mapped);
  std::array<std::uint8_t, 16> compat{};
  compat[12] = 10;
  compat[15] = 1;
  samples.push_back(compat);
  for (const auto& b : samples) {
    ip_address a;
    a.family = address_family::ipv6;
    a.bytes = b;
    char buf[INET6_ADDRSTRLEN];
    REQUIRE(inet_ntop(AF_INET6, b.data(), buf, sizeof buf) != nullptr);
    CAPTURE(buf);
    CHECK(to_string(a) == std::string(buf));
    // What we print, we read back to the same bytes.
    auto back = read_ip_address(buf);
    REQUIRE(back.has_value());
    CHECK(back->bytes == b);
  }
}

TEST_CASE("read_ip_address agrees with inet_pton on tricky text") {
  for (const char* text : {"1.2.3.4", "01.2.3.4", "1.2.3", "1.2.3.4.", "256.1.1.1", "::", "::1", "1::", ":1::",
                           "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::", "::1.2.3.4",
                           "::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "12345::", "::g",
                           ":::", "1:::2", "1:2", "", "1.2.3.04", "::FFFF:1.2.3.4", "1::2:3:4:5:6:7"}) {
    CAPTURE(text);
    bool ours = read_ip_address(text).has_value();
    unsigned char buf[16];
    bool theirs = std::string_view(text).find(':') != std::string_view::npos
                      ? inet_pton(AF_INET6, text, buf) == 1
                      : inet_pton(AF_INET, text, buf) == 1;
    CHECK(ours == theirs);
  }
}
