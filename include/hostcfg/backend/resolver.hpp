#pragma once
/// @file
/// Resolver backends: how the system answers a name. HostsEntry decides "in sync" from the hosts
/// file alone; when a resolver is attached to the context it also asks it, per name, and reports
/// what it said (issue 4: the seed checks resolution, and a name answered by DNS or another
/// source before `/etc/hosts` is worth telling the user). The answer is a note, never a failure
/// and never a reason to write.
///
/// | backend | use |
/// |---|---|
/// | `SystemResolver` | this machine's resolver (`getaddrinfo`, both families, `AI_ADDRCONFIG` off). Its answers come from the real `/etc/hosts`, DNS, mDNS...: meaningful only when the hosts file probed is the real root's, never for a sandbox or a `--root DIR` tree, and every answer says so (`system_wide`) |
/// | `FakeResolver` | for tests: scripted answers per name, a count of calls, names that answer "unavailable" (`EAI_AGAIN`) |
///
/// A primitive finds the backend through the context, like the service manager:
///
///     FakeResolver fake;
///     fake.answer("kubernetes.docker.internal", {"10.0.0.5"});
///     any_resolver resolver(fake);
///     ctx.attach(resolver);                  // HostsEntry: ctx.find<any_resolver>()

#include <netdb.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "hostcfg/format/hostname.hpp"
#include "hostcfg/format/ip_address.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// How a resolver answered.
enum class resolve_status {
  answered,     ///< at least one address
  no_answer,    ///< the name does not resolve (EAI_NONAME / EAI_NODATA)
  unavailable,  ///< the resolver could not answer now (EAI_AGAIN: DNS down, offline)
  failed,       ///< any other resolver error
};

/// "answered", "no answer", "unavailable", "failed".
inline const char* resolve_status_name(resolve_status s) {
  switch (s) {
    case resolve_status::answered: return "answered";
    case resolve_status::no_answer: return "no answer";
    case resolve_status::unavailable: return "unavailable";
    case resolve_status::failed: return "failed";
  }
  return "?";
}

/// One address a resolver gave, as `inet_ntop` writes it.
struct resolved_address {
  address_family family = address_family::ipv4;
  std::string text;  ///< canonical text, e.g. "127.0.0.1", "::1"

  friend bool operator==(const resolved_address& a, const resolved_address& b) {
    return a.family == b.family && a.text == b.text;
  }
};

/// What a resolver said about one name. Not a `result<>`: "unavailable" is something to report
/// next to the hosts file's own answer, not an error that stops a probe.
struct resolver_answer {
  resolve_status status = resolve_status::no_answer;
  std::vector<resolved_address> addresses;  ///< in the resolver's order, both families, each once
  std::string detail;                       ///< why there is no answer, e.g. "Temporary failure in name resolution"
  /// Answered by this machine's own resolver: it reads the real `/etc/hosts` (and DNS...), so the
  /// answer says nothing about a hosts file under a sandbox root.
  bool system_wide = false;

  /// The first address of `family`, or nullptr.
  const resolved_address* first_of(address_family family) const {
    for (const auto& a : addresses)
      if (a.family == family) return &a;
    return nullptr;
  }
};

namespace detail {
template <class R, class = void>
struct resolver_has_resolve : std::false_type {};
template <class R>
struct resolver_has_resolve<
    R, std::enable_if_t<std::is_same<decltype(std::declval<R&>().resolve(std::string_view{})), resolver_answer>::value>>
    : std::true_type {};
}  // namespace detail

/// Compile-time contract check for a resolver backend.
template <class R>
constexpr bool check_resolver() {
  static_assert(detail::resolver_has_resolve<R>::value,
                "Resolver needs: resolver_answer resolve(std::string_view name) (see backend/resolver.hpp)");
  return true;
}

/// This machine's resolver through `getaddrinfo`: both families (`AF_UNSPEC`) and `AI_ADDRCONFIG`
/// off, so `::1` is reported on a host without IPv6 addresses configured, as the hosts file says.
/// Only meaningful for the real root's hosts file; every answer has `system_wide` set.
class SystemResolver {
 public:
  /// Asks getaddrinfo for `name`. Blocks for as long as the system resolver does.
  resolver_answer resolve(std::string_view name) const {
    resolver_answer out;
    out.system_wide = true;
    if (name.empty() || name.find('\0') != std::string_view::npos) {
      out.status = resolve_status::failed;
      out.detail = "not a name that can be looked up";
      return out;
    }
    const std::string host(name);
    ::addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;  // one entry per address instead of one per socket type
    hints.ai_flags = 0;               // no AI_ADDRCONFIG: answer what the sources say
    ::addrinfo* list = nullptr;
    int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &list);
    if (rc != 0) {
      out.status = status_of(rc);
      out.detail = rc == EAI_SYSTEM ? std::string(std::strerror(errno)) : std::string(::gai_strerror(rc));
      return out;
    }
    for (const ::addrinfo* a = list; a; a = a->ai_next) {
      char text[INET6_ADDRSTRLEN] = {};
      resolved_address r;
      if (a->ai_family == AF_INET) {
        const auto* in = reinterpret_cast<const ::sockaddr_in*>(a->ai_addr);
        if (!::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text)) continue;
        r.family = address_family::ipv4;
      } else if (a->ai_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const ::sockaddr_in6*>(a->ai_addr);
        if (!::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text)) continue;
        r.family = address_family::ipv6;
      } else {
        continue;
      }
      r.text = text;
      bool seen = false;
      for (const auto& e : out.addresses) seen = seen || e == r;
      if (!seen) out.addresses.push_back(std::move(r));
    }
    ::freeaddrinfo(list);
    out.status = out.addresses.empty() ? resolve_status::no_answer : resolve_status::answered;
    return out;
  }

  /// The status for a getaddrinfo error code.
  static resolve_status status_of(int gai_error) {
    if (gai_error == EAI_NONAME) return resolve_status::no_answer;
#ifdef EAI_NODATA
    if (gai_error == EAI_NODATA) return resolve_status::no_answer;
#endif
    if (gai_error == EAI_AGAIN) return resolve_status::unavailable;
    return resolve_status::failed;
  }
};

/// A scripted resolver for tests. Names are matched case-insensitively, as resolvers do; a name
/// without a script has no answer. Every call is counted.
///
///     FakeResolver fake;
///     fake.answer("localhost", {"127.0.0.1", "::1"});
///     fake.unavailable("kubernetes.docker.internal");   // as getaddrinfo's EAI_AGAIN
class FakeResolver {
 public:
  /// Scripts `name` to answer `addresses` (canonical text, in this order). An address that is not
  /// canonical IPv4/IPv6 text is a bug in the test: it is kept out and makes the answer `failed`.
  FakeResolver& answer(std::string_view name, const std::vector<std::string>& addresses) {
    resolver_answer a;
    a.status = addresses.empty() ? resolve_status::no_answer : resolve_status::answered;
    if (addresses.empty()) a.detail = "Name or service not known";
    for (const auto& text : addresses) {
      auto ip = read_ip_address(text);
      if (!ip || to_string(*ip) != text) {
        a.status = resolve_status::failed;
        a.detail = "scripted address '" + text + "' is not canonical";
        continue;
      }
      a.addresses.push_back({ip->family, text});
    }
    scripts_[ascii_lower(name)] = std::move(a);
    return *this;
  }
  /// Scripts `name` to fail as getaddrinfo does when no DNS server answers (EAI_AGAIN).
  FakeResolver& unavailable(std::string_view name) {
    resolver_answer a;
    a.status = resolve_status::unavailable;
    a.detail = "Temporary failure in name resolution";
    scripts_[ascii_lower(name)] = std::move(a);
    return *this;
  }

  /// The scripted answer for `name`.
  resolver_answer resolve(std::string_view name) {
    asked_.emplace_back(name);
    auto it = scripts_.find(ascii_lower(name));
    if (it != scripts_.end()) return it->second;
    resolver_answer none;
    none.detail = "Name or service not known";
    return none;
  }

  /// Number of calls so far.
  std::size_t calls() const { return asked_.size(); }
  /// Number of calls for `name` (exact spelling).
  std::size_t calls_for(std::string_view name) const {
    std::size_t n = 0;
    for (const auto& a : asked_) n += a == name ? 1 : 0;
    return n;
  }
  /// Every name asked, in order.
  const std::vector<std::string>& asked() const { return asked_; }

 private:
  std::map<std::string, resolver_answer> scripts_;
  std::vector<std::string> asked_;
};

/// Any resolver backend behind one type, so a primitive can find it in a `context`
/// (`ctx.attach(ref)`, `ctx.find<any_resolver>()`) without being a template over it. Holds a
/// reference: the backend must outlive it.
class any_resolver {
 public:
  /// Wraps `backend` (SystemResolver, FakeResolver or anything with the same `resolve`).
  template <class R, std::enable_if_t<!std::is_same<std::decay_t<R>, any_resolver>::value, int> = 0>
  explicit any_resolver(R& backend) {
    static_assert(check_resolver<R>(), "");
    resolve_ = [&backend](std::string_view name) { return backend.resolve(name); };
  }
  /// Asks the wrapped backend.
  resolver_answer resolve(std::string_view name) const { return resolve_(name); }

 private:
  std::function<resolver_answer(std::string_view)> resolve_;
};

HOSTCFG_END_NAMESPACE
