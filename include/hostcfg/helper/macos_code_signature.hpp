#pragma once
/// \file
/// macOS only: a `server_config::verify_peer` that accepts a client only when its code signature
/// satisfies a code requirement (e.g. `anchor apple generic and identifier "com.docker.docker"
/// and certificate leaf[subject.OU] = "9BNSXJN65R"`), so that another program running as the same
/// user cannot use the privileged helper.
///
/// The client is identified by the audit token of the connection (`LOCAL_PEERTOKEN`), never by
/// its pid: a pid can be reused by another process between the check and the request (the
/// "pid reuse" attack on XPC services), an audit token names one process instance.
///
/// Usage, in the program that runs the helper (link with `-framework Security -framework
/// CoreFoundation`):
///
///     auto check = hostcfg::helper::code_signature_check(requirement_text);
///     if (!check) { /* a requirement that does not parse: refuse to start, say why */ }
///     config.verify_peer = *check;
///
/// Not compiled on Linux (where this header is empty): this code has not been built or run by
/// hostcfg's CI, which has no macOS SDK. The server calls `verify_peer` the same way on every
/// OS, and that call path is tested on Linux with a test hook (server_test.cpp).

#if defined(__APPLE__)

#include <CoreFoundation/CoreFoundation.h>
#include <Security/Security.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <functional>
#include <memory>
#include <string>
#include <type_traits>

#include "hostcfg/error.hpp"
#include "hostcfg/privilege.hpp"
#include "hostcfg/version.hpp"

HOSTCFG_BEGIN_NAMESPACE
namespace helper {

namespace detail {
/// Releases a CoreFoundation object (CFRelease rejects null).
struct cf_release {
  void operator()(CFTypeRef ref) const {
    if (ref) CFRelease(ref);
  }
};
template <class T>
using cf_owned = std::unique_ptr<std::remove_pointer_t<T>, cf_release>;
}  // namespace detail

/// A `verify_peer` callback accepting only clients whose code satisfies `requirement` (code
/// requirement language, `man csreq`). The requirement is parsed here, once: a text that does not
/// parse is an `errc::invalid_input` error naming it, so the helper refuses to start instead of
/// refusing every client.
inline result<std::function<bool(int fd, long pid, uid_type uid)>> code_signature_check(const std::string& requirement) {
  detail::cf_owned<CFStringRef> text(CFStringCreateWithBytes(kCFAllocatorDefault,
                                                             reinterpret_cast<const UInt8*>(requirement.data()),
                                                             static_cast<CFIndex>(requirement.size()),
                                                             kCFStringEncodingUTF8, false));
  SecRequirementRef parsed = nullptr;
  if (!text || SecRequirementCreateWithString(text.get(), kSecCSDefaultFlags, &parsed) != errSecSuccess || !parsed)
    return fail(errc::invalid_input, "code requirement", requirement, "not a valid code requirement",
                "check it with `csreq -r '=<requirement>' -t`");
  std::shared_ptr<std::remove_pointer_t<SecRequirementRef>> shared(parsed, detail::cf_release{});
  return [shared](int fd, long /*pid*/, uid_type /*uid*/) -> bool {
    audit_token_t token{};
    socklen_t len = sizeof token;
    if (::getsockopt(fd, SOL_LOCAL, LOCAL_PEERTOKEN, &token, &len) != 0 || len != sizeof token) return false;
    detail::cf_owned<CFDataRef> data(
        CFDataCreate(kCFAllocatorDefault, reinterpret_cast<const UInt8*>(&token), sizeof token));
    if (!data) return false;
    const void* keys[] = {kSecGuestAttributeAudit};
    const void* values[] = {data.get()};
    detail::cf_owned<CFDictionaryRef> attributes(CFDictionaryCreate(
        kCFAllocatorDefault, keys, values, 1, &kCFTypeDictionaryKeyCallBacks, &kCFTypeDictionaryValueCallBacks));
    if (!attributes) return false;
    SecCodeRef guest = nullptr;
    if (SecCodeCopyGuestWithAttributes(nullptr, attributes.get(), kSecCSDefaultFlags, &guest) != errSecSuccess || !guest)
      return false;
    detail::cf_owned<SecCodeRef> code(guest);
    // Validity of the running code (not just the file on disk) against the requirement.
    return SecCodeCheckValidity(code.get(), kSecCSDefaultFlags, shared.get()) == errSecSuccess;
  };
}

}  // namespace helper
HOSTCFG_END_NAMESPACE

#endif  // __APPLE__
