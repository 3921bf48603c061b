#pragma once
/// @file
/// The privilege backend contract: **who** we act for, **whether** a change needs elevation for
/// that user, **how** to ask, and **where** elevated work runs. Every primitive is a template over
/// a type `Priv` providing:
///
/// | call | returns | meaning |
/// |---|---|---|
/// | `user()` | `const user_identity&` | the person we install for (given explicitly; never read from the environment when privileged) |
/// | `elevated_actor()` | `actor` | the identity elevated work runs as (root) |
/// | `elevates_in_process()` | `bool` | true when this process can act as root itself (euid 0, or a sandbox); otherwise elevated steps are handed to an elevated runner |
/// | `ask(elevation_request)` | `answer` | asks the user once, with a reason listing every change |
///
/// Implementations here: `ScriptedPrivilege` (scripted answers, counts prompts; for tests and
/// sandboxes), `Unprivileged` (never elevates), `RootFor` (a root process acting for a named user,
/// as an installer's `--user NAME` mode).
///
/// Decision table (what `converge` does with an answer; the caller can change it through
/// `decision_policy`):
/// | answer | recorded | asked again later | this run |
/// |---|---|---|---|
/// | granted | the changes made | - | applied elevated |
/// | declined / cancelled | yes, as which | no, unless re-prompt | fallback if any |
/// | timed out | no decision | yes | fallback if any |
/// | unavailable (no admin rights) | yes | when the user's rights change | fallback if any |

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "hostcfg/fs.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// The person hostcfg installs for. Passed explicitly: an installer running as root for
/// `--user NAME` fills it from its flags or the user database, never from `HOME` or `ZDOTDIR`.
struct user_identity {
  uid_type uid = 0;
  gid_type gid = 0;
  std::vector<gid_type> groups;  ///< supplementary groups (numeric: wheel = 0, admin = 80 on macOS)
  std::string name;
  std::string home;   ///< absolute
  std::string shell;  ///< login shell, absolute (e.g. /bin/zsh)
  std::optional<std::string> zdotdir;          ///< zsh's ZDOTDIR, when the user sets one
  std::optional<std::string> xdg_config_home;  ///< XDG_CONFIG_HOME, when the user sets one

  /// The actor that does this user's part of a run.
  actor as_actor() const { return actor{uid, gid, groups}; }
};

/// How an elevation prompt ended.
enum class answer { granted, declined, cancelled, timed_out, unavailable };

/// Readable name of an answer ("granted", "declined", ...), used in records and reports.
inline const char* answer_name(answer a) {
  switch (a) {
    case answer::granted: return "granted";
    case answer::declined: return "declined";
    case answer::cancelled: return "cancelled";
    case answer::timed_out: return "timed_out";
    case answer::unavailable: return "unavailable";
  }
  return "unknown";
}

/// Parses `answer_name` output back; nullopt for anything else.
inline std::optional<answer> parse_answer(std::string_view text) {
  for (answer a : {answer::granted, answer::declined, answer::cancelled, answer::timed_out, answer::unavailable})
    if (text == answer_name(a)) return a;
  return std::nullopt;
}

/// The error code that reports a non-granted answer (`errc::declined`, ...).
inline errc answer_error(answer a) {
  switch (a) {
    case answer::declined: return errc::declined;
    case answer::cancelled: return errc::cancelled;
    case answer::timed_out: return errc::timed_out;
    default: return errc::unavailable;
  }
}

/// What a prompt shows: why, and every change it will make (the rendered plan lines).
struct elevation_request {
  std::string app_id;
  std::string reason;                ///< one sentence: "Docker Desktop needs to ..."
  std::vector<std::string> changes;  ///< one line per change, e.g. "create link /usr/local/bin/docker -> ..."

  /// The full prompt text: the reason, then the changes, one per line.
  std::string text() const {
    std::string out = reason;
    for (const auto& c : changes) out += "\n  - " + c;
    return out;
  }
};

namespace detail {
template <class P, class = void>
struct priv_has_user : std::false_type {};
template <class P>
struct priv_has_user<P, std::void_t<decltype(std::declval<const P&>().user())>> : std::true_type {};
template <class P, class = void>
struct priv_has_elevated_actor : std::false_type {};
template <class P>
struct priv_has_elevated_actor<P, std::void_t<decltype(std::declval<const P&>().elevated_actor())>>
    : std::true_type {};
template <class P, class = void>
struct priv_has_in_process : std::false_type {};
template <class P>
struct priv_has_in_process<P, std::void_t<decltype(std::declval<const P&>().elevates_in_process())>>
    : std::true_type {};
template <class P, class = void>
struct priv_has_ask : std::false_type {};
template <class P>
struct priv_has_ask<P, std::void_t<decltype(std::declval<P&>().ask(std::declval<const elevation_request&>()))>>
    : std::true_type {};
}  // namespace detail

/// Compile-time contract check for a privilege backend; one message per missing operation.
template <class Priv>
constexpr bool check_priv() {
  static_assert(detail::priv_has_user<Priv>::value, "Priv backend needs: const user_identity& user() const");
  static_assert(detail::priv_has_elevated_actor<Priv>::value, "Priv backend needs: actor elevated_actor() const");
  static_assert(detail::priv_has_in_process<Priv>::value, "Priv backend needs: bool elevates_in_process() const");
  static_assert(detail::priv_has_ask<Priv>::value, "Priv backend needs: answer ask(const elevation_request&)");
  return true;
}

/// Answers prompts from a script (the last answer repeats), counting them and keeping every
/// request, for tests and sandboxes. `elevates_in_process` is true by default: in a sandbox the
/// "elevated" actor is simulated by the fake filesystem.
///
///     ScriptedPrivilege priv(user, {answer::declined});
///     ... converge(...);
///     CHECK(priv.prompts() == 1);
class ScriptedPrivilege {
 public:
  ScriptedPrivilege(user_identity user, std::vector<answer> script, bool in_process = true)
      : user_(std::move(user)), script_(std::move(script)), in_process_(in_process) {}
  ScriptedPrivilege(user_identity user, answer always, bool in_process = true)
      : ScriptedPrivilege(std::move(user), std::vector<answer>{always}, in_process) {}

  const user_identity& user() const { return user_; }
  actor elevated_actor() const { return actor::root(); }
  bool elevates_in_process() const { return in_process_; }
  answer ask(const elevation_request& request) {
    requests_.push_back(request);
    if (script_.empty()) return answer::unavailable;
    std::size_t index = requests_.size() - 1;
    return script_[index < script_.size() ? index : script_.size() - 1];
  }

  /// How many times `ask` was called.
  std::size_t prompts() const { return requests_.size(); }
  /// Every request shown, in order.
  const std::vector<elevation_request>& requests() const { return requests_; }

 private:
  user_identity user_;
  std::vector<answer> script_;
  bool in_process_;
  std::vector<elevation_request> requests_;
};

/// Never elevates: every prompt ends `unavailable`, nothing is shown. For users without admin
/// rights and for programs that must not ask.
class Unprivileged {
 public:
  explicit Unprivileged(user_identity user) : user_(std::move(user)) {}
  const user_identity& user() const { return user_; }
  actor elevated_actor() const { return actor::root(); }
  bool elevates_in_process() const { return false; }
  answer ask(const elevation_request&) { return answer::unavailable; }

 private:
  user_identity user_;
};

/// A root process acting for a named user (an installer's `--user NAME`): elevation is granted
/// without a prompt, the user's part runs as the user (files made in their home are theirs).
class RootFor {
 public:
  explicit RootFor(user_identity user) : user_(std::move(user)) {}
  const user_identity& user() const { return user_; }
  actor elevated_actor() const { return actor::root(); }
  bool elevates_in_process() const { return true; }
  answer ask(const elevation_request&) { return answer::granted; }

 private:
  user_identity user_;
};

HOSTCFG_END_NAMESPACE
