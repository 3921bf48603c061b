#pragma once
/// @file
/// Errors: one type for every fallible call, `hostcfg::result<T>` = `tl::expected<T, error>`.
/// The code stays machine-readable (`std::error_code`: an errno in the system category, or a
/// `hostcfg::errc` in hostcfg's own category); the text is for people, in the shape
/// "op path[ -> path2]: reason [what to do]" (Go's os.PathError).

#include <string>
#include <system_error>
#include <utility>

#include <tl/expected.hpp>

#include "hostcfg/version.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// hostcfg's own error conditions (the OS's errnos stay in the system category).
enum class errc {
  invalid_input = 1,    ///< a hostname, address, path, plist value or request is malformed
  conflict,             ///< something that is not ours stands where we would write
  changed_since_probe,  ///< the target changed between probe and apply (compare-and-swap failed)
  declined,             ///< the user said no to the elevation prompt
  cancelled,            ///< the prompt was dismissed (a real dialog only offers "cancel")
  timed_out,            ///< the prompt or the helper did not answer in time
  unavailable,          ///< elevation is impossible here (no admin rights, no helper binary...)
  corrupt_record,       ///< the record cannot be parsed; it is left as it is
  newer_record,         ///< the record was written by a newer hostcfg; it is left as it is
  unsupported,          ///< this operation does not exist on this OS or backend
  locked,               ///< the file is immutable/append-only or read-only: locked by its owner
  unsafe_path,          ///< a path component could be changed by someone other than root/the user
  not_durable,          ///< applied, but the directory sync failed: durability unknown
  too_large,            ///< a file or frame exceeds its size bound
  drifted,              ///< revert refused: the object no longer holds what we wrote
  broken_markers,       ///< our section's marker lines are missing, reversed or duplicated
  helper_not_installed, ///< the privileged helper is not installed
  helper_not_running,   ///< the privileged helper is installed but does not answer
  version_mismatch,     ///< the two ends of the helper protocol speak different versions
  refused_by_policy,    ///< the helper's allowlist refused the request
};

/// The `std::error_category` of `hostcfg::errc`.
inline const std::error_category& hostcfg_category() noexcept {
  struct category final : std::error_category {
    const char* name() const noexcept override { return "hostcfg"; }
    std::string message(int value) const override {
      switch (static_cast<errc>(value)) {
        case errc::invalid_input: return "invalid input";
        case errc::conflict: return "conflict";
        case errc::changed_since_probe: return "changed since probe";
        case errc::declined: return "elevation declined";
        case errc::cancelled: return "elevation prompt cancelled";
        case errc::timed_out: return "timed out";
        case errc::unavailable: return "elevation unavailable";
        case errc::corrupt_record: return "corrupt record";
        case errc::newer_record: return "record written by a newer hostcfg";
        case errc::unsupported: return "unsupported";
        case errc::locked: return "locked by its owner";
        case errc::unsafe_path: return "unsafe path";
        case errc::not_durable: return "applied, durability unknown";
        case errc::too_large: return "too large";
        case errc::drifted: return "changed since hostcfg wrote it";
        case errc::broken_markers: return "broken section markers";
        case errc::helper_not_installed: return "privileged helper not installed";
        case errc::helper_not_running: return "privileged helper not running";
        case errc::version_mismatch: return "version mismatch";
        case errc::refused_by_policy: return "refused by policy";
      }
      return "unknown hostcfg error";
    }
  };
  static const category instance;
  return instance;
}

/// Makes `errc` values usable wherever a `std::error_code` is expected.
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), hostcfg_category()};
}

HOSTCFG_END_NAMESPACE

namespace std {
template <>
struct is_error_code_enum<hostcfg::errc> : true_type {};
}  // namespace std

HOSTCFG_BEGIN_NAMESPACE

/// A failed operation: what was attempted, on which path(s), why, and what the user can do.
struct error {
  std::error_code code;  ///< errno (system category) or `errc` (hostcfg category)
  std::string op;        ///< the operation, e.g. "replace", "lstat", "parse hostname"
  std::string path;      ///< the path it was applied to (may be empty)
  std::string path2;     ///< second path (rename, symlink target), may be empty
  std::string reason;    ///< why it failed; defaults to the code's message
  std::string hint;      ///< what to do about it, may be empty

  /// "op path[ -> path2]: reason [hint]".
  std::string message() const {
    std::string text = op;
    if (!path.empty()) text += " " + path;
    if (!path2.empty()) text += " -> " + path2;
    text += ": ";
    text += reason.empty() ? code.message() : reason;
    if (!hint.empty()) text += " [" + hint + "]";
    return text;
  }

  /// True when this error carries `e` (an `errc`) or the errno `e` (an `int`).
  bool is(errc e) const noexcept { return code == make_error_code(e); }
  /// True when this error is the OS errno `e`.
  bool is_errno(int e) const noexcept { return code == std::error_code(e, std::system_category()); }
};

/// The return type of every fallible call. No exception crosses the public API.
template <class T>
using result = tl::expected<T, error>;

/// `return fail(errc::invalid_input, "parse hostname", name, "label longer than 63 bytes");`
inline tl::unexpected<error> fail(errc code, std::string op, std::string path, std::string reason = {},
                                  std::string hint = {}) {
  return tl::unexpected<error>(error{make_error_code(code), std::move(op), std::move(path), {},
                                     std::move(reason), std::move(hint)});
}

/// An OS error: `return fail_errno(errno, "openat", path);`. The reason is strerror's text.
inline tl::unexpected<error> fail_errno(int err, std::string op, std::string path, std::string path2 = {},
                                        std::string hint = {}) {
  std::error_code code(err, std::system_category());
  return tl::unexpected<error>(error{code, std::move(op), std::move(path), std::move(path2), code.message(),
                                     std::move(hint)});
}

HOSTCFG_END_NAMESPACE
