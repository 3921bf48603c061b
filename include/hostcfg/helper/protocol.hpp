#pragma once
/// @file
/// The privileged helper's wire protocol: a pure codec (bytes in, bytes out, no I/O).
///
/// Every message is one frame: a fixed 12-byte header, then `length` payload bytes.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `"hcfg"` |
/// | 4 | 2 | protocol version, big-endian (`protocol_version`) |
/// | 6 | 1 | frame type (`frame_type`) |
/// | 7 | 1 | reserved, must be 0 |
/// | 8 | 4 | payload length, big-endian, at most `max_payload` (the header is checked before a single
/// payload byte is read, so a hostile length never makes anyone allocate or wait for it) |
///
/// A connection carries exactly: client `hello` -> helper `hello_reply` -> client request (`bind`,
/// `refresh_policy` or `uninstall_self`) -> helper `reply` (+ at most one fd via SCM_RIGHTS), then
/// the helper closes it. Payloads:
/// - `hello`, `uninstall_self`: empty.
/// - `bind`: 20 bytes: transport (1 tcp, 2 udp), family (4, 6), port (u16 BE, 1..65535), address
///   (16 bytes; an IPv4 address uses the first 4 and the rest must be zero).
/// - `refresh_policy`: the policy bytes (at most `max_policy_bytes`). No path: the helper writes
///   to the one path of its own configuration.
/// - `hello_reply`, `reply`: 4 bytes: status (`reply_status`), fd attached (0/1), the helper's
///   protocol version (u16 BE).
/// Requests carry no paths and no commands, by construction.
///
/// The header layout is frozen across versions so that both ends can always read the other's
/// version and fail closed with an upgrade message (`errc::version_mismatch`).

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "hostcfg/error.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace helper {

/// The protocol version this header speaks.
inline constexpr std::uint16_t protocol_version = 1;
/// Size of every frame header.
inline constexpr std::size_t header_size = 12;
/// Upper bound on the policy bytes a `refresh_policy` may carry.
inline constexpr std::size_t max_policy_bytes = 64 * 1024;
/// Upper bound on any payload (the biggest one is a full policy).
inline constexpr std::size_t max_payload = max_policy_bytes;
/// Size of a `bind` payload.
inline constexpr std::size_t bind_payload_size = 20;
/// Size of a `hello_reply` / `reply` payload.
inline constexpr std::size_t reply_payload_size = 4;
/// The 4 magic bytes that open every frame.
inline constexpr char frame_magic[4] = {'h', 'c', 'f', 'g'};

/// What a frame is.
enum class frame_type : std::uint8_t {
  hello = 1,           ///< client -> helper: first frame, announces the version (in the header)
  bind = 2,            ///< client -> helper: bind a privileged port and hand the socket back
  refresh_policy = 3,  ///< client -> helper: replace the policy cache with these bytes
  uninstall_self = 4,  ///< client -> helper: run the uninstall callback of the helper's owner
  hello_reply = 0x81,  ///< helper -> client: answer to hello
  reply = 0x82,        ///< helper -> client: answer to the request
};

/// The transport of a bind request.
enum class transport : std::uint8_t { tcp = 1, udp = 2 };

/// The address family of a bind request (values are the wire values).
enum class family : std::uint8_t { ipv4 = 4, ipv6 = 6 };

/// The helper's answer.
enum class reply_status : std::uint8_t {
  ok = 0,
  port_in_use = 1,            ///< EADDRINUSE
  cannot_assign_address = 2,  ///< EADDRNOTAVAIL
  refused_by_allowlist = 3,   ///< well-formed but not allowed by the helper's configuration
  bad_request = 4,            ///< malformed, truncated, oversized, extra fds, a second request...
  version_mismatch = 5,       ///< the client speaks another protocol version
  internal_error = 6,         ///< the helper failed (e.g. could not write the policy cache)
};

/// Readable name of a status ("ok", "port in use", ...).
inline const char* status_name(reply_status s) {
  switch (s) {
    case reply_status::ok: return "ok";
    case reply_status::port_in_use: return "port in use";
    case reply_status::cannot_assign_address: return "cannot assign address";
    case reply_status::refused_by_allowlist: return "refused by the helper's allowlist";
    case reply_status::bad_request: return "bad request";
    case reply_status::version_mismatch: return "version mismatch";
    case reply_status::internal_error: return "internal error in the helper";
  }
  return "unknown status";
}

/// "TCP" / "UDP", as the seed's messages spell them.
inline const char* transport_name(transport t) { return t == transport::udp ? "UDP" : "TCP"; }

/// A request to bind `address:port`. `address` holds 4 (IPv4) or 16 (IPv6) meaningful bytes in
/// network order; the unused tail is zero.
struct bind_request {
  transport proto = transport::tcp;
  family fam = family::ipv4;
  std::array<std::uint8_t, 16> address{};
  std::uint16_t port = 0;

  friend bool operator==(const bind_request& a, const bind_request& b) {
    return a.proto == b.proto && a.fam == b.fam && a.address == b.address && a.port == b.port;
  }
};

/// One decoded request frame.
struct request {
  frame_type type = frame_type::hello;
  std::uint16_t version = protocol_version;  ///< the version in the frame's header
  bind_request bind;                         ///< when type == bind
  std::string policy;                        ///< when type == refresh_policy
};

/// One decoded reply frame (`hello_reply` or `reply`).
struct reply {
  frame_type type = frame_type::reply;
  reply_status status = reply_status::ok;
  bool fd_attached = false;
  std::uint16_t helper_version = protocol_version;
};

/// A complete frame found at the front of a buffer; `payload` points into that buffer.
struct frame_view {
  std::uint16_t version = 0;
  std::uint8_t type = 0;
  std::string_view payload;
  std::size_t size = 0;  ///< header + payload: how many bytes of the buffer this frame used
};

namespace detail {
inline void put_u16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xff));
}
inline void put_u32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}
inline std::uint16_t get_u16(std::string_view in, std::size_t at) {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(in[at]) << 8) | static_cast<unsigned char>(in[at + 1]));
}
inline std::uint32_t get_u32(std::string_view in, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(in[at + i]);
  return v;
}
inline std::string header(frame_type type, std::size_t length, std::uint16_t version) {
  std::string out(frame_magic, sizeof frame_magic);
  put_u16(out, version);
  out.push_back(static_cast<char>(type));
  out.push_back('\0');
  put_u32(out, static_cast<std::uint32_t>(length));
  return out;
}
inline bool known_type(std::uint8_t t) {
  return t == 1 || t == 2 || t == 3 || t == 4 || t == 0x81 || t == 0x82;
}
inline tl::unexpected<error> bad_frame(std::string reason) {
  return fail(errc::invalid_input, "decode helper frame", "", std::move(reason));
}
}  // namespace detail

/// The largest payload a frame of this type may carry (0 for unknown types).
inline std::size_t payload_cap(std::uint8_t type) {
  switch (type) {
    case static_cast<std::uint8_t>(frame_type::hello):
    case static_cast<std::uint8_t>(frame_type::uninstall_self): return 0;
    case static_cast<std::uint8_t>(frame_type::bind): return bind_payload_size;
    case static_cast<std::uint8_t>(frame_type::refresh_policy): return max_policy_bytes;
    case static_cast<std::uint8_t>(frame_type::hello_reply):
    case static_cast<std::uint8_t>(frame_type::reply): return reply_payload_size;
    default: return 0;
  }
}

/// Finds one frame at the front of `bytes`. Returns `std::nullopt` while the frame is incomplete;
/// an error as soon as the header is known to be bad (wrong magic, nonzero reserved byte, unknown
/// type, a length over the type's cap): `errc::version_mismatch` for another protocol version
/// (the reason names both versions), `errc::too_large` for an oversized length,
/// `errc::invalid_input` otherwise. The length is checked before any payload byte is wanted.
inline result<std::optional<frame_view>> decode_frame(std::string_view bytes) {
  const std::size_t magic_have = bytes.size() < sizeof frame_magic ? bytes.size() : sizeof frame_magic;
  if (magic_have > 0 && std::memcmp(bytes.data(), frame_magic, magic_have) != 0) return detail::bad_frame("bad magic");
  if (bytes.size() < header_size) return std::optional<frame_view>{};
  frame_view frame;
  frame.version = detail::get_u16(bytes, 4);
  frame.type = static_cast<std::uint8_t>(bytes[6]);
  if (frame.version != protocol_version)
    return fail(errc::version_mismatch, "decode helper frame", "",
                "peer speaks protocol version " + std::to_string(frame.version) + ", this end speaks version " +
                    std::to_string(protocol_version));
  if (bytes[7] != '\0') return detail::bad_frame("reserved header byte is not zero");
  if (!detail::known_type(frame.type)) return detail::bad_frame("unknown frame type " + std::to_string(frame.type));
  const std::uint32_t length = detail::get_u32(bytes, 8);
  if (length > payload_cap(frame.type))
    return fail(errc::too_large, "decode helper frame", "",
                "payload length " + std::to_string(length) + " exceeds the cap of " +
                    std::to_string(payload_cap(frame.type)) + " for this frame type");
  if (bytes.size() - header_size < length) return std::optional<frame_view>{};
  frame.payload = bytes.substr(header_size, length);
  frame.size = header_size + length;
  return std::optional<frame_view>{frame};
}

/// Decodes a client frame (hello, bind, refresh_policy, uninstall_self). Any other type, a payload
/// of the wrong size, an unknown transport/family, port 0 or a nonzero IPv4 tail is
/// `errc::invalid_input`. Policy (which ports, which addresses) is the server's business.
inline result<request> decode_request(const frame_view& frame) {
  request req;
  req.version = frame.version;
  const std::size_t n = frame.payload.size();
  switch (frame.type) {
    case static_cast<std::uint8_t>(frame_type::hello):
    case static_cast<std::uint8_t>(frame_type::uninstall_self):
      if (n != 0) return detail::bad_frame("payload must be empty");
      req.type = static_cast<frame_type>(frame.type);
      return req;
    case static_cast<std::uint8_t>(frame_type::refresh_policy):
      if (n > max_policy_bytes) return detail::bad_frame("policy larger than the cap");
      req.type = frame_type::refresh_policy;
      req.policy.assign(frame.payload.data(), n);
      return req;
    case static_cast<std::uint8_t>(frame_type::bind): {
      if (n != bind_payload_size) return detail::bad_frame("bind payload must be 20 bytes");
      const auto p = frame.payload;
      const auto proto = static_cast<std::uint8_t>(p[0]);
      const auto fam = static_cast<std::uint8_t>(p[1]);
      if (proto != 1 && proto != 2) return detail::bad_frame("unknown transport " + std::to_string(proto));
      if (fam != 4 && fam != 6) return detail::bad_frame("unknown address family " + std::to_string(fam));
      req.type = frame_type::bind;
      req.bind.proto = static_cast<transport>(proto);
      req.bind.fam = static_cast<family>(fam);
      req.bind.port = detail::get_u16(p, 2);
      if (req.bind.port == 0) return detail::bad_frame("port 0 is not a port");
      for (std::size_t i = 0; i < 16; ++i) req.bind.address[i] = static_cast<std::uint8_t>(p[4 + i]);
      if (req.bind.fam == family::ipv4)
        for (std::size_t i = 4; i < 16; ++i)
          if (req.bind.address[i] != 0) return detail::bad_frame("IPv4 address with a nonzero tail");
      return req;
    }
    default: return detail::bad_frame("not a request frame type " + std::to_string(frame.type));
  }
}

/// Decodes a helper frame (hello_reply or reply).
inline result<reply> decode_reply(const frame_view& frame) {
  if (frame.type != static_cast<std::uint8_t>(frame_type::hello_reply) &&
      frame.type != static_cast<std::uint8_t>(frame_type::reply))
    return detail::bad_frame("not a reply frame type " + std::to_string(frame.type));
  if (frame.payload.size() != reply_payload_size) return detail::bad_frame("reply payload must be 4 bytes");
  const auto status = static_cast<std::uint8_t>(frame.payload[0]);
  const auto fd_flag = static_cast<std::uint8_t>(frame.payload[1]);
  if (status > static_cast<std::uint8_t>(reply_status::internal_error))
    return detail::bad_frame("unknown status " + std::to_string(status));
  if (fd_flag > 1) return detail::bad_frame("fd flag must be 0 or 1");
  reply r;
  r.type = static_cast<frame_type>(frame.type);
  r.status = static_cast<reply_status>(status);
  r.fd_attached = fd_flag == 1;
  r.helper_version = detail::get_u16(frame.payload, 2);
  return r;
}

/// The client's first frame. `version` is only overridden by tests of version skew.
inline std::string encode_hello(std::uint16_t version = protocol_version) {
  return detail::header(frame_type::hello, 0, version);
}

/// A bind request frame.
inline std::string encode_bind(const bind_request& req) {
  std::string out = detail::header(frame_type::bind, bind_payload_size, protocol_version);
  out.push_back(static_cast<char>(req.proto));
  out.push_back(static_cast<char>(req.fam));
  detail::put_u16(out, req.port);
  for (auto b : req.address) out.push_back(static_cast<char>(b));
  return out;
}

/// A refresh_policy frame; `errc::too_large` past `max_policy_bytes`.
inline result<std::string> encode_refresh_policy(std::string_view policy) {
  if (policy.size() > max_policy_bytes)
    return fail(errc::too_large, "encode policy refresh", "",
                std::to_string(policy.size()) + " bytes exceed the cap of " + std::to_string(max_policy_bytes));
  std::string out = detail::header(frame_type::refresh_policy, policy.size(), protocol_version);
  out.append(policy.data(), policy.size());
  return out;
}

/// An uninstall_self frame.
inline std::string encode_uninstall() { return detail::header(frame_type::uninstall_self, 0, protocol_version); }

/// Re-encodes a decoded request (round trip: `encode_request(decode_request(f)) == f`'s bytes).
inline std::string encode_request(const request& req) {
  switch (req.type) {
    case frame_type::bind: return encode_bind(req.bind);
    case frame_type::refresh_policy: {
      std::string out = detail::header(frame_type::refresh_policy, req.policy.size(), protocol_version);
      return out + req.policy;
    }
    case frame_type::uninstall_self: return encode_uninstall();
    default: return encode_hello(req.version);
  }
}

/// A hello_reply or reply frame.
inline std::string encode_reply(const reply& r) {
  std::string out = detail::header(r.type, reply_payload_size, protocol_version);
  out.push_back(static_cast<char>(r.status));
  out.push_back(r.fd_attached ? '\1' : '\0');
  detail::put_u16(out, r.helper_version);
  return out;
}

/// Builds a bind request from text. Only canonical forms are accepted (dotted quad without
/// leading zeros, RFC 5952 IPv6 as `inet_ntop` prints it, no zone id), so what the user typed is
/// exactly what gets bound: `make_bind_request(transport::tcp, "127.0.0.1", 80)`.
inline result<bind_request> make_bind_request(transport proto, std::string_view address, std::uint16_t port) {
  bind_request req;
  req.proto = proto;
  req.port = port;
  if (port == 0) return fail(errc::invalid_input, "parse port", std::string(address), "port 0 is not a port");
  const std::string text(address);
  if (text.find('\0') != std::string::npos || text.size() > 45)
    return fail(errc::invalid_input, "parse address", text, "not an IP address");
  char canonical[INET6_ADDRSTRLEN] = {};
  if (text.find(':') == std::string::npos) {
    in_addr a{};
    if (::inet_pton(AF_INET, text.c_str(), &a) != 1)
      return fail(errc::invalid_input, "parse address", text, "not a canonical IPv4 address");
    req.fam = family::ipv4;
    std::memcpy(req.address.data(), &a, 4);
    ::inet_ntop(AF_INET, &a, canonical, sizeof canonical);
  } else {
    in6_addr a{};
    if (::inet_pton(AF_INET6, text.c_str(), &a) != 1)
      return fail(errc::invalid_input, "parse address", text, "not an IPv6 address (zone ids are refused)");
    req.fam = family::ipv6;
    std::memcpy(req.address.data(), &a, 16);
    ::inet_ntop(AF_INET6, &a, canonical, sizeof canonical);
  }
  if (text != canonical)
    return fail(errc::invalid_input, "parse address", text, std::string("not in canonical form; write ") + canonical);
  return req;
}

/// The address as `inet_ntop` prints it: "127.0.0.1", "::1".
inline std::string address_text(const bind_request& req) {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(req.fam == family::ipv6 ? AF_INET6 : AF_INET, req.address.data(), buf, sizeof buf);
  return buf;
}

/// "127.0.0.1:80" or "[::1]:80".
inline std::string endpoint_text(const bind_request& req) {
  const std::string addr = address_text(req);
  return (req.fam == family::ipv6 ? "[" + addr + "]" : addr) + ":" + std::to_string(req.port);
}

/// True for 127.0.0.0/8 and ::1.
inline bool is_loopback(const bind_request& req) {
  if (req.fam == family::ipv4) return req.address[0] == 127;
  for (std::size_t i = 0; i < 15; ++i)
    if (req.address[i] != 0) return false;
  return req.address[15] == 1;
}

/// True for 0.0.0.0 and ::.
inline bool is_wildcard(const bind_request& req) {
  const std::size_t n = req.fam == family::ipv4 ? 4 : 16;
  for (std::size_t i = 0; i < n; ++i)
    if (req.address[i] != 0) return false;
  return true;
}

}  // namespace helper

HOSTCFG_END_NAMESPACE
