// The helper's frame codec: golden bytes, round trips, and refusal of every malformed header or
// payload before a byte too many is trusted.
#include "hostcfg/helper/protocol.hpp"

#include <string>

#include "support/test_support.hpp"

using namespace hostcfg;
using namespace hostcfg::helper;

namespace {
std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}
bind_request tcp4(const char* addr, std::uint16_t port) { return *make_bind_request(transport::tcp, addr, port); }
}  // namespace

TEST_CASE("hello and uninstall frames have the documented golden bytes") {
  CHECK(encode_hello() == bytes({'h', 'c', 'f', 'g', 0, 1, 1, 0, 0, 0, 0, 0}));
  CHECK(encode_uninstall() == bytes({'h', 'c', 'f', 'g', 0, 1, 4, 0, 0, 0, 0, 0}));
  CHECK(encode_hello(7) == bytes({'h', 'c', 'f', 'g', 0, 7, 1, 0, 0, 0, 0, 0}));
}

TEST_CASE("a TCP bind of 127.0.0.1:80 encodes to 32 golden bytes") {
  const std::string want = bytes({'h', 'c', 'f', 'g', 0, 1, 2, 0, 0, 0, 0, 20, 1, 4, 0, 80, 127, 0, 0, 1,
                                  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  CHECK(encode_bind(tcp4("127.0.0.1", 80)) == want);
}

TEST_CASE("a reply with an fd encodes status, fd flag and helper version") {
  reply r;
  r.type = frame_type::reply;
  r.status = reply_status::port_in_use;
  r.fd_attached = true;
  CHECK(encode_reply(r) == bytes({'h', 'c', 'f', 'g', 0, 1, 0x82, 0, 0, 0, 0, 4, 1, 1, 0, 1}));
  const std::string frame = encode_reply(r);
  auto f = decode_frame(frame);
  REQUIRE(f);
  REQUIRE(*f);
  auto back = decode_reply(**f);
  REQUIRE(back);
  CHECK(back->status == reply_status::port_in_use);
  CHECK(back->fd_attached);
  CHECK(back->helper_version == protocol_version);
}

TEST_CASE("bind, refresh and uninstall requests round-trip byte for byte") {
  auto v6 = make_bind_request(transport::udp, "::1", 53);
  REQUIRE(v6);
  const std::string frames[] = {encode_bind(tcp4("0.0.0.0", 443)), encode_bind(*v6), *encode_refresh_policy("{\"a\":1}\n"),
                                *encode_refresh_policy(""), encode_uninstall(), encode_hello()};
  for (const auto& frame : frames) {
    auto f = decode_frame(frame);
    REQUIRE(f);
    REQUIRE(*f);
    CHECK((*f)->size == frame.size());
    auto req = decode_request(**f);
    REQUIRE(req);
    CHECK(encode_request(*req) == frame);
  }
  const std::string v6_frame = encode_bind(*v6);
  auto f = decode_frame(v6_frame);
  auto req = decode_request(**f);
  CHECK(req->bind.proto == transport::udp);
  CHECK(req->bind.fam == family::ipv6);
  CHECK(req->bind.port == 53);
  CHECK(address_text(req->bind) == "::1");
}

TEST_CASE("every proper prefix of a frame is incomplete, never an error or a frame") {
  const std::string frame = encode_bind(tcp4("127.0.0.1", 80));
  for (std::size_t n = 0; n < frame.size(); ++n) {
    auto f = decode_frame(std::string_view(frame).substr(0, n));
    REQUIRE_MESSAGE(f, "prefix " << n);
    CHECK_MESSAGE(!*f, "prefix " << n);
  }
}

TEST_CASE("a bad magic is refused from its first wrong byte") {
  auto f = decode_frame("x");
  REQUIRE(!f);
  CHECK(f.error().is(errc::invalid_input));
  CHECK(f.error().reason == "bad magic");
  CHECK(!decode_frame("hcfX"));
}

TEST_CASE("another protocol version is version_mismatch naming both versions") {
  auto f = decode_frame(encode_hello(9));
  REQUIRE(!f);
  CHECK(f.error().is(errc::version_mismatch));
  CHECK(f.error().reason == "peer speaks protocol version 9, this end speaks version 1");
}

TEST_CASE("an oversized length is refused from the header alone") {
  // Header only: the decoder must not wait for 4 GiB of payload.
  auto f = decode_frame(bytes({'h', 'c', 'f', 'g', 0, 1, 3, 0, 0xff, 0xff, 0xff, 0xff}));
  REQUIRE(!f);
  CHECK(f.error().is(errc::too_large));
  CHECK(f.error().reason == "payload length 4294967295 exceeds the cap of 65536 for this frame type");
  auto bind_long = decode_frame(bytes({'h', 'c', 'f', 'g', 0, 1, 2, 0, 0, 0, 0, 21}));
  REQUIRE(!bind_long);
  CHECK(bind_long.error().is(errc::too_large));
  auto hello_long = decode_frame(bytes({'h', 'c', 'f', 'g', 0, 1, 1, 0, 0, 0, 0, 1}));
  CHECK(!hello_long);
  CHECK(!encode_refresh_policy(std::string(max_policy_bytes + 1, 'x')));
  CHECK(encode_refresh_policy(std::string(max_policy_bytes, 'x')));
}

TEST_CASE("unknown frame types and a nonzero reserved byte are refused") {
  auto f = decode_frame(bytes({'h', 'c', 'f', 'g', 0, 1, 9, 0, 0, 0, 0, 0}));
  REQUIRE(!f);
  CHECK(f.error().reason == "unknown frame type 9");
  auto r = decode_frame(bytes({'h', 'c', 'f', 'g', 0, 1, 1, 1, 0, 0, 0, 0}));
  REQUIRE(!r);
  CHECK(r.error().reason == "reserved header byte is not zero");
}

TEST_CASE("bind payloads with bad transport, family, port 0 or a dirty IPv4 tail are refused") {
  auto decode = [](std::string frame) {
    auto f = decode_frame(frame);
    REQUIRE(f);
    REQUIRE(*f);
    return decode_request(**f);
  };
  std::string good = encode_bind(tcp4("127.0.0.1", 80));
  std::string bad_proto = good, bad_family = good, port0 = good, tail = good;
  bad_proto[12] = 3;
  bad_family[13] = 5;
  port0[14] = 0;
  port0[15] = 0;
  tail[31] = 1;
  CHECK(decode(good));
  CHECK(decode(bad_proto).error().reason == "unknown transport 3");
  CHECK(decode(bad_family).error().reason == "unknown address family 5");
  CHECK(decode(port0).error().reason == "port 0 is not a port");
  CHECK(decode(tail).error().reason == "IPv4 address with a nonzero tail");
  // A reply frame is not a request.
  reply r;
  CHECK(decode(encode_reply(r)).error().reason == "not a request frame type 130");
}

TEST_CASE("replies with an unknown status or fd flag are refused") {
  std::string frame = encode_reply(reply{});
  frame[12] = 7;
  auto f = decode_frame(frame);
  REQUIRE(f);
  CHECK(decode_reply(**f).error().reason == "unknown status 7");
  frame[12] = 0;
  frame[13] = 2;
  f = decode_frame(frame);
  CHECK(decode_reply(**f).error().reason == "fd flag must be 0 or 1");
}

TEST_CASE("only canonical addresses make a bind request") {
  for (const char* bad : {"010.0.0.1", "127.1", "0x7f.0.0.1", "fe80::1%en0", "::0001", "", "localhost", "1.2.3.4 ",
                          "0:0:0:0:0:0:0:1"}) {
    auto r = make_bind_request(transport::tcp, bad, 80);
    CHECK_MESSAGE(!r, bad);
    if (!r) CHECK(r.error().is(errc::invalid_input));
  }
  CHECK(make_bind_request(transport::tcp, "0:0:0:0:0:0:0:1", 80).error().reason == "not in canonical form; write ::1");
  CHECK(!make_bind_request(transport::tcp, "127.0.0.1", 0));
  auto v4 = make_bind_request(transport::tcp, "127.0.0.1", 80);
  REQUIRE(v4);
  CHECK(endpoint_text(*v4) == "127.0.0.1:80");
  auto v6 = make_bind_request(transport::tcp, "::1", 443);
  REQUIRE(v6);
  CHECK(endpoint_text(*v6) == "[::1]:443");
}

TEST_CASE("loopback and wildcard are classified per family") {
  CHECK(is_loopback(tcp4("127.0.0.1", 80)));
  CHECK(is_loopback(tcp4("127.9.8.7", 80)));
  CHECK(!is_loopback(tcp4("128.0.0.1", 80)));
  CHECK(is_wildcard(tcp4("0.0.0.0", 80)));
  CHECK(!is_wildcard(tcp4("0.0.0.1", 80)));
  CHECK(is_loopback(*make_bind_request(transport::tcp, "::1", 80)));
  CHECK(!is_loopback(*make_bind_request(transport::tcp, "::2", 80)));
  CHECK(is_wildcard(*make_bind_request(transport::tcp, "::", 80)));
  CHECK(!is_wildcard(*make_bind_request(transport::tcp, "::1", 80)));
}
