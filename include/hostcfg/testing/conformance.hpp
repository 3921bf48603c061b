#pragma once
/// @file
/// The backend conformance suite (Go's `testing/fstest.TestFS` is the model): one matrix of cases,
/// every operation of the Fs contract (hostcfg/fs.hpp) times its failure modes (ENOENT, EACCES,
/// EPERM, EEXIST, ENOTDIR, EISDIR, ELOOP, EXDEV, EBUSY, ENOSPC, EROFS, plus the successes that
/// pin bytes, modes and owners), run against any backend. It reports **every** deviation at once,
/// one readable line each, instead of stopping at the first; so a fake (MemoryFs) cannot drift
/// from the real thing (PosixFs on a real kernel, the reference the expectations were taken from).
///
///     hostcfg::MemoryFs fs;
///     fs.set_posix_rules();                                  // fail like PosixFs (see below)
///     fs.add_dir("/conformance", 0755, 0, 0);                // root-owned, empty
///     hostcfg::testing::conformance_setup setup;
///     setup.base = "/conformance";
///     auto report = hostcfg::testing::run_conformance(fs, setup);
///     if (!report.ok()) std::fputs(report.text().c_str(), stderr);
///
/// How a case runs. Each case that may change the tree gets its own directory `<base>/cNNN`
/// (cases that only read share `<base>/shared`), holding the same small tree,
/// arranged with the backend's own operations as root (mkdir, replace_file, symlink, lchown; the
/// user's corner as the user): `file` ("hello\n", 0644), `dir/` with `dir/inner`, `empty/`,
/// `link -> file`, `dangling -> missing`, `loop -> loop`, `dirlink -> dir`, `private/` (0700) with
/// `private/secret` (0600), `userlink -> dir` (a link owned by the user), and `user/` (owned by
/// the user, 0755) with `user/own` (the user's file). Then the case acts once, as root or as the
/// user, and its result is compared with the expectation (success, an errno, or a hostcfg `errc`);
/// a successful case also checks what it did (bytes, mode, owner, link target, listing).
///
/// Using it on your own backend: make `setup.base` an empty directory owned by root, mode 0755,
/// that the backend's root actor can write in, and set `setup.user` to an unprivileged identity
/// the backend can act as (the default is `nobody`, 65534). Capabilities a backend may not be able
/// to simulate are opt-in: leave the path empty and the cases that need it are listed in
/// `report.skipped` with the reason, not counted as deviations:
/// - `other_device_dir`: a directory on another device, writable by root (EXDEV);
/// - `mount_point_file`: a regular file that is a mount point, e.g. a bind-mounted file (EBUSY);
/// - `full_dir`: a root-owned directory on a filesystem with less than 256 KiB free (ENOSPC);
/// - `no_inodes_dir`: a root-owned directory holding a regular file `f` ("old\n", 0644) on a
///   filesystem with no free inode left, so that every create fails with ENOSPC (tmpfs with
///   `nr_inodes` used up);
/// - `read_only_dir`: a directory on a read-only filesystem holding a regular file `f` and, for the
///   rmdir case, an empty directory `e` (EROFS);
/// - `immutable_file`: a regular file with the immutable flag set (EPERM / `errc::locked`).
/// Cases acting on those paths only ever fail, so the paths are shared between cases.
///
/// Running as an unprivileged process (a `nobody` process over PosixFs): arrange the tree first
/// as root with `arrange_conformance` (same setup), drop privileges, then call `run_conformance`
/// with `setup.arrange = false` and `setup.act_as_root = false`.
///
/// Three answers of PosixFs go beyond the bare kernel and are part of the contract checked here:
/// a symlink in an intermediate component that the acting identity does not control (owned by
/// another non-root user) is refused with ELOOP; root refuses to change entries in a directory a
/// non-root user can change (`errc::unsafe_path`); `replace_file` of an immutable file is
/// `errc::locked`. MemoryFs gives them after `set_posix_rules()` (OverlayFs too: it is a MemoryFs).
///
/// Cost: 16 backend operations per arranged tree, one tree per case that may change it (about
/// 80) plus the shared one: well under a second on a MemoryFs or a tmpfs, a few seconds on a busy
/// disk.

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "hostcfg/error.hpp"
#include "hostcfg/fs.hpp"
#include "hostcfg/path.hpp"

HOSTCFG_BEGIN_NAMESPACE
namespace testing {

/// Where and how the suite runs (see the file comment).
struct conformance_setup {
  /// An existing, empty, root-owned 0755 directory (in the backend's own paths).
  std::string base;
  /// The unprivileged identity of the "as the user" cases.
  actor user{65534, 65534, {}};
  /// Arrange the per-case trees first (false: `arrange_conformance` already did, as root).
  bool arrange = true;
  /// Run the cases that act as root / as `user`.
  bool act_as_root = true;
  bool act_as_user = true;
  /// Optional capabilities; empty: the cases needing them are skipped with the reason.
  std::string other_device_dir;
  std::string mount_point_file;
  std::string full_dir;
  std::string no_inodes_dir;
  std::string read_only_dir;
  std::string immutable_file;
  /// Whether a second `lock` of a held object waits for its release (PosixFs: flock). False for a
  /// backend that cannot wait and fails it at once with EWOULDBLOCK instead (MemoryFs and the
  /// backends built on it: one thread, nothing to wait for).
  bool lock_waits = true;
  /// A name printed with every line of the report ("PosixFs as nobody").
  std::string backend_name = "backend";
};

/// What one run found. `ok()` when no case deviated (skips are not deviations).
struct conformance_report {
  std::string backend_name;
  std::size_t run = 0;                  ///< cases executed
  std::size_t passed = 0;               ///< cases that behaved as expected
  std::vector<std::string> deviations;  ///< one line per deviating case, in matrix order
  std::vector<std::string> skipped;     ///< one line per skipped case, with the reason

  bool ok() const { return deviations.empty(); }
  /// Everything, one line each: a summary line, then the deviations, then the skips.
  std::string text() const {
    std::string out = backend_name + ": " + std::to_string(passed) + "/" + std::to_string(run) + " cases conform, " +
                      std::to_string(deviations.size()) + " deviations, " + std::to_string(skipped.size()) +
                      " skipped\n";
    for (const auto& d : deviations) out += "  DEVIATION " + d + "\n";
    for (const auto& s : skipped) out += "  skipped " + s + "\n";
    return out;
  }
};

/// The errno's symbolic name ("ENOENT"), or its number.
inline std::string errno_name(int e) {
  switch (e) {
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ELOOP: return "ELOOP";
    case EXDEV: return "EXDEV";
    case EBUSY: return "EBUSY";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case EINVAL: return "EINVAL";
    case ENOTEMPTY: return "ENOTEMPTY";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EMLINK: return "EMLINK";
    case EIO: return "EIO";
    case EWOULDBLOCK: return "EWOULDBLOCK";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    default: return "errno " + std::to_string(e);
  }
}

/// "ENOENT" for a system error code, "hostcfg:unsafe path" for a hostcfg one.
inline std::string code_name(const std::error_code& code) {
  if (code.category() == std::system_category()) return errno_name(code.value());
  return std::string(code.category().name()) + ":" + code.message();
}

/// Which identity a case acts as.
enum class conformance_actor { root, user };

/// What a case needs beyond the arranged tree.
enum class conformance_needs { nothing, other_device, mount_point, full_fs, no_inodes, read_only, immutable };

/// The paths a case acts on: its own directory and the shared capability paths.
struct conformance_paths {
  std::string dir;  ///< `<base>/cNNN`, arranged
  const conformance_setup* setup = nullptr;
  std::string operator/(std::string_view name) const { return join_path(dir, name); }
};

/// One case. `act` runs the operation and returns an error (compared with `expect`) or, on
/// success, "" or a description of what is wrong with the value; `verify` (optional) then checks
/// the tree as the same actor and returns "" or what is wrong.
template <class Fs>
struct conformance_case {
  std::string name;
  conformance_actor who = conformance_actor::root;
  conformance_needs needs = conformance_needs::nothing;
  std::vector<std::error_code> expect;  ///< empty: success; several: any of them
  /// Only reads (lstat, stat, readlink, read_file, get_flags, list_dir, lock): such cases share
  /// one arranged tree, `<base>/shared`, instead of each getting its own.
  bool reads_only = false;
  std::function<result<std::string>(Fs&, const actor&, const conformance_paths&)> act;
  std::function<std::string(Fs&, const actor&, const conformance_paths&)> verify;
};

namespace detail {

inline std::error_code sys(int e) { return std::error_code(e, std::system_category()); }

/// Collapses any result to "" (success) or its error.
template <class T>
result<std::string> done(const result<T>& r) {
  if (!r) return tl::unexpected(r.error());
  return std::string();
}

inline std::string octal(mode_type m) {
  std::string out;
  for (int shift = 9; shift >= 0; shift -= 3) out += static_cast<char>('0' + ((m >> shift) & 7));
  return out;
}

/// "" when `path` is (lstat) a `type` with `mode` (if given) and owner `uid` (if given).
template <class Fs>
std::string expect_object(Fs& fs, const actor& who, const std::string& path, file_type type,
                          std::optional<mode_type> mode = std::nullopt, std::optional<uid_type> uid = std::nullopt) {
  auto st = fs.lstat(who, path);
  if (!st) return "afterwards lstat " + path + " failed: " + st.error().message();
  if (st->type != type) return "afterwards " + path + " has the wrong type";
  if (mode && st->mode != *mode) return "afterwards " + path + " has mode " + octal(st->mode) + ", expected " + octal(*mode);
  if (uid && st->uid != *uid)
    return "afterwards " + path + " is owned by uid " + std::to_string(st->uid) + ", expected " + std::to_string(*uid);
  return {};
}

template <class Fs>
std::string expect_bytes(Fs& fs, const actor& who, const std::string& path, const std::string& bytes) {
  auto got = fs.read_file(who, path, 1 << 20);
  if (!got) return "afterwards read " + path + " failed: " + got.error().message();
  if (got->bytes != bytes) return "afterwards " + path + " holds \"" + got->bytes + "\", expected \"" + bytes + "\"";
  return {};
}

template <class Fs>
std::string expect_absent(Fs& fs, const actor& who, const std::string& path) {
  auto st = fs.lstat(who, path);
  if (st) return "afterwards " + path + " still exists";
  if (!st.error().is_errno(ENOENT)) return "afterwards lstat " + path + " gave " + st.error().message();
  return {};
}

/// Names in `dir` containing ".hostcfg-" (temp files a failed replace must not leave).
template <class Fs>
std::string expect_no_temps(Fs& fs, const actor& who, const std::string& dir) {
  auto names = fs.list_dir(who, dir);
  if (!names) return {};  // unreadable for this actor: nothing to say
  for (const auto& n : *names)
    if (n.find(".hostcfg-") != std::string::npos) return "a temp file was left behind: " + join_path(dir, n);
  return {};
}

/// Takes the lock at `path`, then asks for it again. A backend that waits (`lock_waits`): asked
/// on another thread, the second request must not be granted while the first is held, and must
/// be granted once it is released (a backend that never grants it hangs here, as its users
/// would). A backend that cannot wait: asked on this thread, it must fail at once with
/// EWOULDBLOCK. Either way the backend is never used by two threads at once, except for the
/// release of the first lock while the second request waits inside `lock`.
template <class Fs>
result<std::string> lock_contention(Fs& fs, const actor& who, const std::string& path, bool waits) {
  auto first = fs.lock(who, path);
  if (!first) return tl::unexpected(first.error());
  if (!waits) {
    auto second = fs.lock(who, path);
    if (second) return std::string("a second lock was granted while the first was held");
    if (second.error().is_errno(EWOULDBLOCK)) return std::string();
    return "a second lock failed with " + second.error().message() + " (expected EWOULDBLOCK)";
  }
  std::promise<void> started;
  auto asked = started.get_future();
  auto second = std::async(std::launch::async, [&fs, &who, &path, &started] {
    started.set_value();
    return fs.lock(who, path);
  });
  asked.wait();
  // Long enough for the second request to reach the lock on a busy machine; a slower one only
  // makes this check weaker (the request is then judged after the release), never wrong.
  if (second.wait_for(std::chrono::milliseconds(200)) == std::future_status::ready) {
    auto got = second.get();
    if (got) return std::string("a second lock was granted while the first was held");
    return "a second lock failed with " + got.error().message() + " (expected it to wait)";
  }
  first->reset();
  auto got = second.get();
  if (!got) return "after the first lock was released, the second failed: " + got.error().message();
  return std::string();
}

inline replace_options new_file(mode_type mode) {
  replace_options o;
  o.mode = mode;
  return o;
}

}  // namespace detail

/// The whole matrix for backend `Fs` (public so a user can add cases of their own or run a subset).
template <class Fs>
std::vector<conformance_case<Fs>> conformance_cases() {
  using detail::done;
  using detail::sys;
  using C = conformance_case<Fs>;
  using P = const conformance_paths&;
  using A = const actor&;
  const auto root = conformance_actor::root;
  const auto user = conformance_actor::user;
  auto hc = [](errc e) { return make_error_code(e); };
  std::vector<C> c;
  auto add = [&](const std::string& name, conformance_actor who, const std::vector<std::error_code>& expect,
                 std::function<result<std::string>(Fs&, A, P)> act,
                 std::function<std::string(Fs&, A, P)> verify = {},
                 conformance_needs needs = conformance_needs::nothing) {
    C one;
    one.name = name;
    one.who = who;
    one.needs = needs;
    one.expect = expect;
    one.act = std::move(act);
    one.verify = std::move(verify);
    for (const char* op : {"lstat:", "stat:", "readlink:", "read_file:", "get_flags:", "list_dir:", "lock:"})
      one.reads_only = one.reads_only || one.name.rfind(op, 0) == 0;
    c.push_back(std::move(one));
  };

  // ---- lstat
  add("lstat: a missing name gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.lstat(a, p / "missing")); });
  add("lstat: a file used as a directory gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.lstat(a, p / "file/x")); });
  add("lstat: a name in a 0700 root directory gives the user EACCES", user, {sys(EACCES)}, [](Fs& fs, A a, P p) { return done(fs.lstat(a, p / "private/secret")); });
  add("lstat: a self-referencing link as a directory gives ELOOP", root, {sys(ELOOP)}, [](Fs& fs, A a, P p) { return done(fs.lstat(a, p / "loop/x")); });
  add("lstat: a link is reported as a link", root, {}, [](Fs& fs, A a, P p) -> result<std::string> {
    auto st = fs.lstat(a, p / "link");
    if (!st) return tl::unexpected(st.error());
    return st->type == file_type::symlink ? std::string() : std::string("lstat of a link did not say symlink");
  });
  add("lstat: a root-owned intermediate link is followed", user, {}, [](Fs& fs, A a, P p) -> result<std::string> {
    auto st = fs.lstat(a, p / "dirlink/inner");
    if (!st) return tl::unexpected(st.error());
    return st->type == file_type::regular && st->size == 2 ? std::string() : std::string("dirlink/inner is not the 2-byte file");
  });
  add("lstat: root does not follow an intermediate link owned by the user (ELOOP)", root, {sys(ELOOP)},
      [](Fs& fs, A a, P p) { return done(fs.lstat(a, p / "userlink/inner")); });

  // ---- stat
  add("stat: a dangling link gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.stat(a, p / "dangling")); });
  add("stat: a link to itself gives ELOOP", root, {sys(ELOOP)}, [](Fs& fs, A a, P p) { return done(fs.stat(a, p / "loop")); });
  add("stat: a file used as a directory gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.stat(a, p / "file/x")); });
  add("stat: a name in a 0700 root directory gives the user EACCES", user, {sys(EACCES)}, [](Fs& fs, A a, P p) { return done(fs.stat(a, p / "private/secret")); });
  add("stat: follows a final link to the file", user, {}, [](Fs& fs, A a, P p) -> result<std::string> {
    auto st = fs.stat(a, p / "link");
    if (!st) return tl::unexpected(st.error());
    return st->type == file_type::regular && st->size == 6 && st->mode == 0644 ? std::string()
                                                                               : std::string("stat of link is not the 6-byte 0644 file");
  });

  // ---- readlink
  add("readlink: a missing name gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.readlink(a, p / "missing")); });
  add("readlink: a regular file gives EINVAL", root, {sys(EINVAL)}, [](Fs& fs, A a, P p) { return done(fs.readlink(a, p / "file")); });
  add("readlink: a name in a 0700 root directory gives the user EACCES", user, {sys(EACCES)}, [](Fs& fs, A a, P p) { return done(fs.readlink(a, p / "private/secret")); });
  add("readlink: a file used as a directory gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.readlink(a, p / "file/x")); });
  add("readlink: returns the target string as stored", user, {}, [](Fs& fs, A a, P p) -> result<std::string> {
    auto t = fs.readlink(a, p / "link");
    if (!t) return tl::unexpected(t.error());
    return *t == "file" ? std::string() : "readlink gave \"" + *t + "\", expected \"file\"";
  });

  // ---- read_file
  add("read_file: a missing file gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.read_file(a, p / "missing", 100)); });
  add("read_file: a directory gives EISDIR", root, {sys(EISDIR)}, [](Fs& fs, A a, P p) { return done(fs.read_file(a, p / "dir", 100)); });
  add("read_file: a final symlink is not followed (ELOOP)", root, {sys(ELOOP)}, [](Fs& fs, A a, P p) { return done(fs.read_file(a, p / "link", 100)); });
  add("read_file: a file in a 0700 root directory gives the user EACCES", user, {sys(EACCES)}, [](Fs& fs, A a, P p) { return done(fs.read_file(a, p / "private/secret", 100)); });
  add("read_file: a file used as a directory gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.read_file(a, p / "file/x", 100)); });
  add("read_file: a file past the bound gives errc::too_large", root, {hc(errc::too_large)}, [](Fs& fs, A a, P p) { return done(fs.read_file(a, p / "file", 3)); });
  add("read_file: returns the bytes, mode and owner", user, {}, [](Fs& fs, A a, P p) -> result<std::string> {
    auto f = fs.read_file(a, p / "file", 100);
    if (!f) return tl::unexpected(f.error());
    if (f->bytes != "hello\n") return "read gave \"" + f->bytes + "\"";
    if (f->status.mode != 0644 || f->status.uid != 0 || f->status.type != file_type::regular)
      return std::string("read status is not a root-owned 0644 regular file");
    return std::string();
  });

  // ---- replace_file
  add("replace_file: the user cannot create in a root 0755 directory (EACCES)", user, {sys(EACCES)},
      [](Fs& fs, A a, P p) { return done(fs.replace_file(a, p / "dir/new", "x", detail::new_file(0644))); },
      [](Fs& fs, A a, P p) { return detail::expect_absent(fs, a, p / "dir/new"); });
  add("replace_file: the user cannot replace a root file in a root directory (EACCES)", user, {sys(EACCES)},
      [](Fs& fs, A a, P p) { return done(fs.replace_file(a, p / "file", "x", replace_options{})); },
      [](Fs& fs, A a, P p) { return detail::expect_bytes(fs, a, p / "file", "hello\n"); });
  add("replace_file: a directory gives EISDIR", root, {sys(EISDIR)},
      [](Fs& fs, A a, P p) { return done(fs.replace_file(a, p / "dir", "x", replace_options{})); },
      [](Fs& fs, A a, P p) { return detail::expect_no_temps(fs, a, p.dir); });
  add("replace_file: a final symlink is not followed (ELOOP)", root, {sys(ELOOP)},
      [](Fs& fs, A a, P p) { return done(fs.replace_file(a, p / "link", "x", replace_options{})); },
      [](Fs& fs, A a, P p) {
        auto e = detail::expect_bytes(fs, a, p / "file", "hello\n");
        return e.empty() ? detail::expect_object(fs, a, p / "link", file_type::symlink) : e;
      });
  add("replace_file: a missing parent gives ENOENT", root, {sys(ENOENT)},
      [](Fs& fs, A a, P p) { return done(fs.replace_file(a, p / "missing/f", "x", detail::new_file(0644))); });
  add("replace_file: a file used as a directory gives ENOTDIR", root, {sys(ENOTDIR)},
      [](Fs& fs, A a, P p) { return done(fs.replace_file(a, p / "file/x", "x", detail::new_file(0644))); });
  add("replace_file: expect_absent over an existing file gives EEXIST", root, {sys(EEXIST)},
      [](Fs& fs, A a, P p) {
        replace_options o = detail::new_file(0644);
        o.expect_absent = true;
        return done(fs.replace_file(a, p / "file", "x", o));
      },
      [](Fs& fs, A a, P p) { return detail::expect_bytes(fs, a, p / "file", "hello\n"); });
  add("replace_file: a new file without a mode is errc::invalid_input", root, {hc(errc::invalid_input)},
      [](Fs& fs, A a, P p) { return done(fs.replace_file(a, p / "new", "x", replace_options{})); },
      [](Fs& fs, A a, P p) { return detail::expect_absent(fs, a, p / "new"); });
  add("replace_file: a stale compare-and-swap gives errc::changed_since_probe", root, {hc(errc::changed_since_probe)},
      [](Fs& fs, A a, P p) -> result<std::string> {
        auto st = fs.lstat(a, p / "file");
        if (!st) return tl::unexpected(st.error());
        replace_options o;
        o.expected = *st;
        o.expected->size += 1;  // a version that is not there any more
        return done(fs.replace_file(a, p / "file", "x", o));
      },
      [](Fs& fs, A a, P p) { return detail::expect_bytes(fs, a, p / "file", "hello\n"); });
  add("replace_file: creates a new file with the exact mode", root, {},
      [](Fs& fs, A a, P p) -> result<std::string> {
        auto r = fs.replace_file(a, p / "new", "fresh\n", detail::new_file(0640));
        if (!r) return tl::unexpected(r.error());
        return r->changed ? std::string() : std::string("outcome.changed is false for a new file");
      },
      [](Fs& fs, A a, P p) {
        auto e = detail::expect_bytes(fs, a, p / "new", "fresh\n");
        if (e.empty()) e = detail::expect_object(fs, a, p / "new", file_type::regular, 0640, 0);
        return e.empty() ? detail::expect_no_temps(fs, a, p.dir) : e;
      });
  add("replace_file: an existing file keeps its mode and owner", root, {},
      [](Fs& fs, A a, P p) { return done(fs.replace_file(a, p / "dir/inner", "changed", replace_options{})); },
      [](Fs& fs, A a, P p) {
        auto e = detail::expect_bytes(fs, a, p / "dir/inner", "changed");
        return e.empty() ? detail::expect_object(fs, a, p / "dir/inner", file_type::regular, 0600, 0) : e;
      });
  add("replace_file: the same bytes change nothing (changed == false)", root, {},
      [](Fs& fs, A a, P p) -> result<std::string> {
        auto before = fs.lstat(a, p / "file");
        auto r = fs.replace_file(a, p / "file", "hello\n", replace_options{});
        if (!r) return tl::unexpected(r.error());
        auto after = fs.lstat(a, p / "file");
        if (r->changed) return std::string("outcome.changed is true for identical bytes");
        if (!before || !after || !same_version(*before, *after)) return std::string("the file's inode or times changed");
        return std::string();
      });
  add("replace_file: the user's new file in their directory is theirs", user, {},
      [](Fs& fs, A a, P p) { return done(fs.replace_file(a, p / "user/new", "mine\n", detail::new_file(0600))); },
      [](Fs& fs, A a, P p) {
        auto e = detail::expect_bytes(fs, a, p / "user/new", "mine\n");
        return e.empty() ? detail::expect_object(fs, a, p / "user/new", file_type::regular, 0600, a.uid) : e;
      });
  add("replace_file: the user cannot create a file owned by root (EPERM)", user, {sys(EPERM)},
      [](Fs& fs, A a, P p) {
        replace_options o = detail::new_file(0644);
        o.uid = 0;
        o.gid = 0;
        return done(fs.replace_file(a, p / "user/new", "x", o));
      },
      [](Fs& fs, A a, P p) {
        auto e = detail::expect_absent(fs, a, p / "user/new");
        return e.empty() ? detail::expect_no_temps(fs, a, p / "user") : e;
      });
  add("replace_file: root refuses to write in a user-owned directory (errc::unsafe_path)", root, {hc(errc::unsafe_path)},
      [](Fs& fs, A a, P p) { return done(fs.replace_file(a, p / "user/own", "root was here", replace_options{})); },
      [](Fs& fs, A a, P p) { return detail::expect_bytes(fs, a, p / "user/own", "u\n"); });

  // ---- symlink
  add("symlink: an existing name gives EEXIST", root, {sys(EEXIST)},
      [](Fs& fs, A a, P p) { return done(fs.symlink(a, "elsewhere", p / "file")); },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, p / "file", file_type::regular); });
  add("symlink: a dangling link's name gives EEXIST", root, {sys(EEXIST)},
      [](Fs& fs, A a, P p) { return done(fs.symlink(a, "elsewhere", p / "dangling")); });
  add("symlink: the user cannot create in a root 0755 directory (EACCES)", user, {sys(EACCES)},
      [](Fs& fs, A a, P p) { return done(fs.symlink(a, "/x", p / "dir/l")); },
      [](Fs& fs, A a, P p) { return detail::expect_absent(fs, a, p / "dir/l"); });
  add("symlink: a missing parent gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.symlink(a, "/x", p / "missing/l")); });
  add("symlink: a file used as a directory gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.symlink(a, "/x", p / "file/l")); });
  add("symlink: stores the target as given", root, {},
      [](Fs& fs, A a, P p) { return done(fs.symlink(a, "../some/where", p / "l")); },
      [](Fs& fs, A a, P p) -> std::string {
        auto t = fs.readlink(a, p / "l");
        if (!t) return "afterwards readlink failed: " + t.error().message();
        return *t == "../some/where" ? std::string() : "afterwards the link holds \"" + *t + "\"";
      });
  add("symlink: the user's link in their directory is theirs", user, {},
      [](Fs& fs, A a, P p) { return done(fs.symlink(a, "own", p / "user/l")); },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, p / "user/l", file_type::symlink, std::nullopt, a.uid); });

  // ---- replace_symlink
  add("replace_symlink: a directory at the name gives EISDIR", root, {sys(EISDIR)},
      [](Fs& fs, A a, P p) { return done(fs.replace_symlink(a, "file", p / "empty", std::nullopt)); },
      [](Fs& fs, A a, P p) {
        auto e = detail::expect_object(fs, a, p / "empty", file_type::directory);
        return e.empty() ? detail::expect_no_temps(fs, a, p.dir) : e;
      });
  add("replace_symlink: the user cannot replace in a root 0755 directory (EACCES)", user, {sys(EACCES)},
      [](Fs& fs, A a, P p) { return done(fs.replace_symlink(a, "dir", p / "link", std::nullopt)); });
  add("replace_symlink: a missing parent gives ENOENT", root, {sys(ENOENT)},
      [](Fs& fs, A a, P p) { return done(fs.replace_symlink(a, "x", p / "missing/l", std::nullopt)); });
  add("replace_symlink: a stale expected status gives errc::changed_since_probe", root, {hc(errc::changed_since_probe)},
      [](Fs& fs, A a, P p) {
        file_status gone;  // "nothing was there" - but a link is
        return done(fs.replace_symlink(a, "dir", p / "link", gone));
      },
      [](Fs& fs, A a, P p) -> std::string {
        auto t = fs.readlink(a, p / "link");
        return t && *t == "file" ? std::string() : std::string("afterwards the link does not hold \"file\"");
      });
  add("replace_symlink: repoints an existing link atomically", root, {},
      [](Fs& fs, A a, P p) -> result<std::string> {
        auto st = fs.lstat(a, p / "link");
        if (!st) return tl::unexpected(st.error());
        return done(fs.replace_symlink(a, "dir", p / "link", *st));
      },
      [](Fs& fs, A a, P p) -> std::string {
        auto t = fs.readlink(a, p / "link");
        if (!t) return "afterwards readlink failed: " + t.error().message();
        if (*t != "dir") return "afterwards the link holds \"" + *t + "\"";
        return detail::expect_no_temps(fs, a, p.dir);
      });
  add("replace_symlink: replaces a regular file by a link", root, {},
      [](Fs& fs, A a, P p) { return done(fs.replace_symlink(a, "dir", p / "file", std::nullopt)); },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, p / "file", file_type::symlink); });

  // ---- exchange (optional in the contract; every built-in backend has it)
  if constexpr (hostcfg::detail::fs_has_exchange<Fs>::value) {
    add("exchange: swaps a file and a link atomically", root, {},
        [](Fs& fs, A a, P p) { return done(fs.exchange(a, p / "file", p / "link")); },
        [](Fs& fs, A a, P p) {
          auto e = detail::expect_object(fs, a, p / "file", file_type::symlink);
          return e.empty() ? detail::expect_bytes(fs, a, p / "link", "hello\n") : e;
        });
    add("exchange: a missing name gives ENOENT", root, {sys(ENOENT)},
        [](Fs& fs, A a, P p) { return done(fs.exchange(a, p / "file", p / "missing")); },
        [](Fs& fs, A a, P p) { return detail::expect_bytes(fs, a, p / "file", "hello\n"); });
    add("exchange: the user cannot swap names in a root 0755 directory (EACCES)", user, {sys(EACCES)},
        [](Fs& fs, A a, P p) { return done(fs.exchange(a, p / "file", p / "link")); },
        [](Fs& fs, A a, P p) { return detail::expect_bytes(fs, a, p / "file", "hello\n"); });
    add("exchange: across devices gives EXDEV", root, {sys(EXDEV)},
        [](Fs& fs, A a, P p) {
          return done(fs.exchange(a, p / "file", join_path(p.setup->other_device_dir, "conformance-xdev-exchange")));
        },
        [](Fs& fs, A a, P p) { return detail::expect_bytes(fs, a, p / "file", "hello\n"); },
        conformance_needs::other_device);
  }

  // ---- rename
  add("rename: a missing source gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "missing", p / "x")); });
  add("rename: a missing destination parent gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "file", p / "missing/x")); });
  add("rename: the user cannot rename in a root 0755 directory (EACCES)", user, {sys(EACCES)},
      [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "file", p / "moved")); },
      [](Fs& fs, A a, P p) { return detail::expect_bytes(fs, a, p / "file", "hello\n"); });
  add("rename: the user cannot move their file into a root directory (EACCES)", user, {sys(EACCES)},
      [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "user/own", p / "dir/own")); });
  add("rename: a file onto a directory gives EISDIR", root, {sys(EISDIR)}, [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "file", p / "empty")); });
  add("rename: a directory onto a file gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "empty", p / "file")); });
  add("rename: a file used as a directory gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "file/x", p / "y")); });
  add("rename: a directory onto a non-empty directory gives ENOTEMPTY", root, {sys(ENOTEMPTY), sys(EEXIST)},
      [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "empty", p / "dir")); });
  add("rename: a directory into itself gives EINVAL", root, {sys(EINVAL)}, [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "dir", p / "dir/sub")); });
  add("rename: moves a file, replacing the destination", root, {},
      [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "file", p / "dir/inner")); },
      [](Fs& fs, A a, P p) {
        auto e = detail::expect_bytes(fs, a, p / "dir/inner", "hello\n");
        return e.empty() ? detail::expect_absent(fs, a, p / "file") : e;
      });
  add("rename: moves a link, not its target", root, {},
      [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "link", p / "link2")); },
      [](Fs& fs, A a, P p) {
        auto e = detail::expect_object(fs, a, p / "link2", file_type::symlink);
        return e.empty() ? detail::expect_bytes(fs, a, p / "file", "hello\n") : e;
      });
  add("rename: across devices gives EXDEV", root, {sys(EXDEV)},
      [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "file", join_path(p.setup->other_device_dir, "conformance-xdev"))); },
      [](Fs& fs, A a, P p) { return detail::expect_bytes(fs, a, p / "file", "hello\n"); }, conformance_needs::other_device);
  // EXDEV too: the kernel checks "same mount" first, and a bind mount is its own mount unless
  // the source sits on the very filesystem the bind lives on.
  add("rename: onto a mount point gives EBUSY (or EXDEV)", root, {sys(EBUSY), sys(EXDEV)},
      [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "file", p.setup->mount_point_file)); },
      [](Fs& fs, A a, P p) { return detail::expect_bytes(fs, a, p / "file", "hello\n"); }, conformance_needs::mount_point);
  add("rename: root refuses to rename in a user-owned directory (errc::unsafe_path)", root, {hc(errc::unsafe_path)},
      [](Fs& fs, A a, P p) { return done(fs.rename(a, p / "user/own", p / "user/moved")); });

  // ---- unlink
  add("unlink: a missing name gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.unlink(a, p / "missing")); });
  add("unlink: a directory gives EISDIR", root, {sys(EISDIR)},
      [](Fs& fs, A a, P p) { return done(fs.unlink(a, p / "empty")); },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, p / "empty", file_type::directory); });
  add("unlink: the user cannot remove from a root 0755 directory (EACCES)", user, {sys(EACCES)},
      [](Fs& fs, A a, P p) { return done(fs.unlink(a, p / "file")); },
      [](Fs& fs, A a, P p) { return detail::expect_bytes(fs, a, p / "file", "hello\n"); });
  add("unlink: a file used as a directory gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.unlink(a, p / "file/x")); });
  add("unlink: removes the link, not its target", root, {},
      [](Fs& fs, A a, P p) { return done(fs.unlink(a, p / "link")); },
      [](Fs& fs, A a, P p) {
        auto e = detail::expect_absent(fs, a, p / "link");
        return e.empty() ? detail::expect_bytes(fs, a, p / "file", "hello\n") : e;
      });
  add("unlink: the user removes their own file", user, {},
      [](Fs& fs, A a, P p) { return done(fs.unlink(a, p / "user/own")); },
      [](Fs& fs, A a, P p) { return detail::expect_absent(fs, a, p / "user/own"); });
  add("unlink: a mount point gives EBUSY", root, {sys(EBUSY)},
      [](Fs& fs, A a, P p) { return done(fs.unlink(a, p.setup->mount_point_file)); }, {}, conformance_needs::mount_point);

  // ---- mkdir
  add("mkdir: an existing name gives EEXIST", root, {sys(EEXIST)}, [](Fs& fs, A a, P p) { return done(fs.mkdir(a, p / "file", 0755)); });
  add("mkdir: a dangling link's name gives EEXIST", root, {sys(EEXIST)}, [](Fs& fs, A a, P p) { return done(fs.mkdir(a, p / "dangling", 0755)); });
  add("mkdir: a missing parent gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.mkdir(a, p / "missing/d", 0755)); });
  add("mkdir: a file used as a directory gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.mkdir(a, p / "file/d", 0755)); });
  add("mkdir: the user cannot create in a root 0755 directory (EACCES)", user, {sys(EACCES)},
      [](Fs& fs, A a, P p) { return done(fs.mkdir(a, p / "dir/d", 0755)); },
      [](Fs& fs, A a, P p) { return detail::expect_absent(fs, a, p / "dir/d"); });
  add("mkdir: the mode is exact, whatever the umask", root, {},
      [](Fs& fs, A a, P p) { return done(fs.mkdir(a, p / "d", 0775)); },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, p / "d", file_type::directory, 0775, 0); });
  add("mkdir: the user's directory is theirs", user, {},
      [](Fs& fs, A a, P p) { return done(fs.mkdir(a, p / "user/d", 0700)); },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, p / "user/d", file_type::directory, 0700, a.uid); });

  // ---- rmdir
  add("rmdir: a missing name gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.rmdir(a, p / "missing")); });
  add("rmdir: a non-empty directory gives ENOTEMPTY", root, {sys(ENOTEMPTY), sys(EEXIST)},
      [](Fs& fs, A a, P p) { return done(fs.rmdir(a, p / "dir")); },
      [](Fs& fs, A a, P p) { return detail::expect_bytes(fs, a, p / "dir/inner", "in"); });
  add("rmdir: a regular file gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.rmdir(a, p / "file")); });
  add("rmdir: a symlink to a directory gives ENOTDIR", root, {sys(ENOTDIR)},
      [](Fs& fs, A a, P p) { return done(fs.rmdir(a, p / "dirlink")); },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, p / "dir", file_type::directory); });
  add("rmdir: the user cannot remove from a root 0755 directory (EACCES)", user, {sys(EACCES)},
      [](Fs& fs, A a, P p) { return done(fs.rmdir(a, p / "empty")); });
  add("rmdir: removes an empty directory", root, {},
      [](Fs& fs, A a, P p) { return done(fs.rmdir(a, p / "empty")); },
      [](Fs& fs, A a, P p) { return detail::expect_absent(fs, a, p / "empty"); });

  // ---- chmod
  add("chmod: a missing name gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.chmod(a, p / "missing", 0600)); });
  add("chmod: the user cannot chmod root's file (EPERM)", user, {sys(EPERM)},
      [](Fs& fs, A a, P p) { return done(fs.chmod(a, p / "file", 0666)); },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, p / "file", file_type::regular, 0644); });
  add("chmod: a symlink gives EOPNOTSUPP and the target keeps its mode", root, {sys(EOPNOTSUPP)},
      [](Fs& fs, A a, P p) { return done(fs.chmod(a, p / "link", 0600)); },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, p / "file", file_type::regular, 0644); });
  add("chmod: a file used as a directory gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.chmod(a, p / "file/x", 0600)); });
  add("chmod: sets the exact mode", root, {},
      [](Fs& fs, A a, P p) { return done(fs.chmod(a, p / "file", 0604)); },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, p / "file", file_type::regular, 0604); });
  add("chmod: the user sets the mode of their own file", user, {},
      [](Fs& fs, A a, P p) { return done(fs.chmod(a, p / "user/own", 0600)); },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, p / "user/own", file_type::regular, 0600, a.uid); });

  // ---- lchown
  add("lchown: a missing name gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.lchown(a, p / "missing", 0, 0)); });
  add("lchown: the user cannot give their file to root (EPERM)", user, {sys(EPERM)},
      [](Fs& fs, A a, P p) { return done(fs.lchown(a, p / "user/own", 0, 0)); },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, p / "user/own", file_type::regular, std::nullopt, a.uid); });
  add("lchown: the user cannot take root's file (EPERM)", user, {sys(EPERM)},
      [](Fs& fs, A a, P p) { return done(fs.lchown(a, p / "file", a.uid, a.gid)); });
  add("lchown: a file used as a directory gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.lchown(a, p / "file/x", 0, 0)); });
  add("lchown: root gives a file to the user", root, {},
      [](Fs& fs, A a, P p) -> result<std::string> {
        return done(fs.lchown(a, p / "file", p.setup->user.uid, p.setup->user.gid));
      },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, p / "file", file_type::regular, 0644, p.setup->user.uid); });
  add("lchown: changes the link itself, not its target", root, {},
      [](Fs& fs, A a, P p) { return done(fs.lchown(a, p / "link", p.setup->user.uid, p.setup->user.gid)); },
      [](Fs& fs, A a, P p) {
        auto e = detail::expect_object(fs, a, p / "link", file_type::symlink, std::nullopt, p.setup->user.uid);
        return e.empty() ? detail::expect_object(fs, a, p / "file", file_type::regular, 0644, 0) : e;
      });

  // ---- get_flags
  add("get_flags: a missing name gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.get_flags(a, p / "missing")); });
  add("get_flags: a name in a 0700 root directory gives the user EACCES", user, {sys(EACCES)}, [](Fs& fs, A a, P p) { return done(fs.get_flags(a, p / "private/secret")); });
  add("get_flags: a file used as a directory gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.get_flags(a, p / "file/x")); });
  add("get_flags: an ordinary file has no flags", user, {}, [](Fs& fs, A a, P p) -> result<std::string> {
    auto f = fs.get_flags(a, p / "file");
    if (!f) return tl::unexpected(f.error());
    return f->immutable || f->append_only ? std::string("an ordinary file reports flags") : std::string();
  });

  // ---- list_dir
  add("list_dir: a missing name gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.list_dir(a, p / "missing")); });
  add("list_dir: a regular file gives ENOTDIR", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.list_dir(a, p / "file")); });
  add("list_dir: a final link to a directory is not followed (ENOTDIR)", root, {sys(ENOTDIR)}, [](Fs& fs, A a, P p) { return done(fs.list_dir(a, p / "dirlink")); });
  add("list_dir: a 0700 root directory gives the user EACCES", user, {sys(EACCES)}, [](Fs& fs, A a, P p) { return done(fs.list_dir(a, p / "private")); });
  add("list_dir: names sorted, without . and ..", user, {}, [](Fs& fs, A a, P p) -> result<std::string> {
    auto names = fs.list_dir(a, p.dir);
    if (!names) return tl::unexpected(names.error());
    std::vector<std::string> want{"dangling", "dir", "dirlink", "empty", "file", "link", "loop", "private", "user", "userlink"};
    if (*names == want) return std::string();
    std::string got;
    for (const auto& n : *names) got += (got.empty() ? "" : ",") + n;
    return "list_dir gave " + got;
  });

  // ---- lock
  add("lock: a missing name gives ENOENT", root, {sys(ENOENT)}, [](Fs& fs, A a, P p) { return done(fs.lock(a, p / "missing")); });
  add("lock: a final symlink gives ELOOP", root, {sys(ELOOP)}, [](Fs& fs, A a, P p) { return done(fs.lock(a, p / "link")); });
  add("lock: a name in a 0700 root directory gives the user EACCES", user, {sys(EACCES)}, [](Fs& fs, A a, P p) { return done(fs.lock(a, p / "private/secret")); });
  add("lock: locks a directory and leaves no file behind", root, {},
      [](Fs& fs, A a, P p) -> result<std::string> {
        auto held = fs.lock(a, p / "empty");
        if (!held) return tl::unexpected(held.error());
        held->reset();
        auto names = fs.list_dir(a, p / "empty");
        if (!names) return tl::unexpected(names.error());
        return names->empty() ? std::string() : "lock left " + names->front();
      });
  add("lock: a second lock waits until the first is released (a backend that cannot wait: EWOULDBLOCK)", root, {},
      [](Fs& fs, A a, P p) { return detail::lock_contention(fs, a, p / "empty", p.setup->lock_waits); });

  // ---- ENOSPC, EROFS, immutable (capabilities)
  add("replace_file: a full filesystem gives ENOSPC and leaves no temp", root, {sys(ENOSPC)},
      [](Fs& fs, A a, P p) {
        return done(fs.replace_file(a, join_path(p.setup->full_dir, "conformance-big"), std::string(256 * 1024, 'x'),
                                    detail::new_file(0644)));
      },
      [](Fs& fs, A a, P p) {
        auto e = detail::expect_absent(fs, a, join_path(p.setup->full_dir, "conformance-big"));
        return e.empty() ? detail::expect_no_temps(fs, a, p.setup->full_dir) : e;
      },
      conformance_needs::full_fs);
  // A filesystem without a free inode: every create fails, and what was there stays.
  auto in_full = [](P p, const char* name) { return join_path(p.setup->no_inodes_dir, name); };
  auto old_f_kept = [in_full](Fs& fs, A a, P p) {
    auto e = detail::expect_bytes(fs, a, in_full(p, "f"), "old\n");
    return e.empty() ? detail::expect_no_temps(fs, a, p.setup->no_inodes_dir) : e;
  };
  add("mkdir: a filesystem without a free inode gives ENOSPC", root, {sys(ENOSPC)},
      [in_full](Fs& fs, A a, P p) { return done(fs.mkdir(a, in_full(p, "d"), 0755)); },
      [in_full](Fs& fs, A a, P p) { return detail::expect_absent(fs, a, in_full(p, "d")); }, conformance_needs::no_inodes);
  add("symlink: a filesystem without a free inode gives ENOSPC", root, {sys(ENOSPC)},
      [in_full](Fs& fs, A a, P p) { return done(fs.symlink(a, "f", in_full(p, "l"))); },
      [in_full](Fs& fs, A a, P p) { return detail::expect_absent(fs, a, in_full(p, "l")); }, conformance_needs::no_inodes);
  add("replace_file: a new file without a free inode gives ENOSPC and leaves no temp", root, {sys(ENOSPC)},
      [in_full](Fs& fs, A a, P p) { return done(fs.replace_file(a, in_full(p, "new"), "x", detail::new_file(0644))); },
      [in_full](Fs& fs, A a, P p) {
        auto e = detail::expect_absent(fs, a, in_full(p, "new"));
        return e.empty() ? detail::expect_no_temps(fs, a, p.setup->no_inodes_dir) : e;
      },
      conformance_needs::no_inodes);
  add("replace_file: replacing a file without a free inode gives ENOSPC and keeps its bytes", root, {sys(ENOSPC)},
      [in_full](Fs& fs, A a, P p) { return done(fs.replace_file(a, in_full(p, "f"), "new\n", replace_options{})); },
      old_f_kept, conformance_needs::no_inodes);
  add("replace_symlink: without a free inode gives ENOSPC and keeps what is at the name", root, {sys(ENOSPC)},
      [in_full](Fs& fs, A a, P p) { return done(fs.replace_symlink(a, "x", in_full(p, "f"), std::nullopt)); },
      old_f_kept, conformance_needs::no_inodes);
  add("replace_file: a read-only filesystem gives EROFS", root, {sys(EROFS)},
      [](Fs& fs, A a, P p) { return done(fs.replace_file(a, join_path(p.setup->read_only_dir, "f"), "x", replace_options{})); },
      {}, conformance_needs::read_only);
  add("mkdir: a read-only filesystem gives EROFS", root, {sys(EROFS)},
      [](Fs& fs, A a, P p) { return done(fs.mkdir(a, join_path(p.setup->read_only_dir, "d"), 0755)); }, {}, conformance_needs::read_only);
  add("symlink: a read-only filesystem gives EROFS", root, {sys(EROFS)},
      [](Fs& fs, A a, P p) { return done(fs.symlink(a, "x", join_path(p.setup->read_only_dir, "l"))); }, {}, conformance_needs::read_only);
  add("unlink: a read-only filesystem gives EROFS", root, {sys(EROFS)},
      [](Fs& fs, A a, P p) { return done(fs.unlink(a, join_path(p.setup->read_only_dir, "f"))); }, {}, conformance_needs::read_only);
  add("chmod: a read-only filesystem gives EROFS", root, {sys(EROFS)},
      [](Fs& fs, A a, P p) { return done(fs.chmod(a, join_path(p.setup->read_only_dir, "f"), 0600)); }, {}, conformance_needs::read_only);
  add("rename: a read-only filesystem gives EROFS", root, {sys(EROFS)},
      [](Fs& fs, A a, P p) {
        return done(fs.rename(a, join_path(p.setup->read_only_dir, "f"), join_path(p.setup->read_only_dir, "g")));
      },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, join_path(p.setup->read_only_dir, "f"), file_type::regular); },
      conformance_needs::read_only);
  add("replace_symlink: a read-only filesystem gives EROFS", root, {sys(EROFS)},
      [](Fs& fs, A a, P p) {
        return done(fs.replace_symlink(a, "x", join_path(p.setup->read_only_dir, "f"), std::nullopt));
      },
      [](Fs& fs, A a, P p) { return detail::expect_object(fs, a, join_path(p.setup->read_only_dir, "f"), file_type::regular); },
      conformance_needs::read_only);
  add("lchown: a read-only filesystem gives EROFS", root, {sys(EROFS)},
      [](Fs& fs, A a, P p) { return done(fs.lchown(a, join_path(p.setup->read_only_dir, "f"), 1, 1)); }, {},
      conformance_needs::read_only);
  add("rmdir: a read-only filesystem gives EROFS", root, {sys(EROFS), sys(ENOENT)},
      [](Fs& fs, A a, P p) { return done(fs.rmdir(a, join_path(p.setup->read_only_dir, "e"))); }, {},
      conformance_needs::read_only);
  add("replace_file: an immutable file is errc::locked, even for root", root, {hc(errc::locked)},
      [](Fs& fs, A a, P p) { return done(fs.replace_file(a, p.setup->immutable_file, "x", replace_options{})); },
      [](Fs& fs, A a, P p) -> std::string {
        auto f = fs.get_flags(a, p.setup->immutable_file);
        return f && f->immutable ? std::string() : std::string("afterwards the file is not immutable");
      },
      conformance_needs::immutable);
  add("unlink: an immutable file gives EPERM, even for root", root, {sys(EPERM)},
      [](Fs& fs, A a, P p) { return done(fs.unlink(a, p.setup->immutable_file)); }, {}, conformance_needs::immutable);
  add("chmod: an immutable file gives EPERM, even for root", root, {sys(EPERM)},
      [](Fs& fs, A a, P p) { return done(fs.chmod(a, p.setup->immutable_file, 0600)); }, {}, conformance_needs::immutable);
  add("get_flags: reports the immutable flag", root, {},
      [](Fs& fs, A a, P p) -> result<std::string> {
        auto f = fs.get_flags(a, p.setup->immutable_file);
        if (!f) return tl::unexpected(f.error());
        return f->immutable ? std::string() : std::string("immutable flag not reported");
      },
      {}, conformance_needs::immutable);
  return c;
}

namespace detail {

inline std::string case_dir(const conformance_setup& setup, std::size_t index, bool reads_only) {
  if (reads_only) return join_path(setup.base, "shared");
  std::string n = std::to_string(index);
  while (n.size() < 3) n = "0" + n;
  return join_path(setup.base, "c" + n);
}

/// Why a case cannot run with this setup ("" when it can).
inline std::string missing_capability(conformance_needs needs, const conformance_setup& s) {
  switch (needs) {
    case conformance_needs::nothing: return {};
    case conformance_needs::other_device: return s.other_device_dir.empty() ? "no other_device_dir (EXDEV)" : "";
    case conformance_needs::mount_point: return s.mount_point_file.empty() ? "no mount_point_file (EBUSY)" : "";
    case conformance_needs::full_fs: return s.full_dir.empty() ? "no full_dir (ENOSPC)" : "";
    case conformance_needs::no_inodes: return s.no_inodes_dir.empty() ? "no no_inodes_dir (ENOSPC)" : "";
    case conformance_needs::read_only: return s.read_only_dir.empty() ? "no read_only_dir (EROFS)" : "";
    case conformance_needs::immutable: return s.immutable_file.empty() ? "no immutable_file" : "";
  }
  return {};
}

/// Builds the standard tree in `dir` with the backend's own operations; "" or what failed.
template <class Fs>
std::string arrange_tree(Fs& fs, const conformance_setup& setup, const std::string& dir) {
  const actor root = actor::root();
  const actor& user = setup.user;
  std::string failed;
  auto check = [&](const char* what, const auto& r) {
    if (!r && failed.empty()) failed = std::string("arrange: ") + what + ": " + r.error().message();
  };
  auto file = [&](const actor& who, const std::string& path, const char* bytes, mode_type mode) {
    check("replace_file", fs.replace_file(who, path, bytes, new_file(mode)));
  };
  check("mkdir", fs.mkdir(root, dir, 0755));
  file(root, join_path(dir, "file"), "hello\n", 0644);
  check("mkdir", fs.mkdir(root, join_path(dir, "dir"), 0755));
  file(root, join_path(dir, "dir/inner"), "in", 0600);
  check("mkdir", fs.mkdir(root, join_path(dir, "empty"), 0755));
  check("symlink", fs.symlink(root, "file", join_path(dir, "link")));
  check("symlink", fs.symlink(root, "missing", join_path(dir, "dangling")));
  check("symlink", fs.symlink(root, "loop", join_path(dir, "loop")));
  check("symlink", fs.symlink(root, "dir", join_path(dir, "dirlink")));
  check("mkdir", fs.mkdir(root, join_path(dir, "private"), 0700));
  file(root, join_path(dir, "private/secret"), "s", 0600);
  check("symlink", fs.symlink(root, "dir", join_path(dir, "userlink")));
  check("lchown", fs.lchown(root, join_path(dir, "userlink"), user.uid, user.gid));
  check("mkdir", fs.mkdir(root, join_path(dir, "user"), 0755));
  check("lchown", fs.lchown(root, join_path(dir, "user"), user.uid, user.gid));
  file(user, join_path(dir, "user/own"), "u\n", 0644);
  return failed;
}

}  // namespace detail

/// Arranges every case's tree as root (for a later `run_conformance` with `arrange = false`, e.g.
/// from a process that dropped root). Returns what failed, one line each (empty: all arranged).
template <class Fs>
std::vector<std::string> arrange_conformance(Fs& fs, const conformance_setup& setup) {
  static_assert(check_fs<Fs>(), "run_conformance needs a backend satisfying the Fs contract");
  std::vector<std::string> problems;
  auto cases = conformance_cases<Fs>();
  bool shared_done = false;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    if (cases[i].reads_only && std::exchange(shared_done, true)) continue;
    std::string dir = detail::case_dir(setup, i, cases[i].reads_only);
    auto failed = detail::arrange_tree(fs, setup, dir);
    if (!failed.empty()) problems.push_back(dir + ": " + failed);
  }
  return problems;
}

/// Runs the matrix over `fs` (see the file comment) and returns every deviation.
template <class Fs>
conformance_report run_conformance(Fs& fs, const conformance_setup& setup) {
  static_assert(check_fs<Fs>(), "run_conformance needs a backend satisfying the Fs contract");
  conformance_report report;
  report.backend_name = setup.backend_name;
  auto cases = conformance_cases<Fs>();
  std::optional<std::string> shared_failed;  // arranged on first use
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& k = cases[i];
    const bool as_root = k.who == conformance_actor::root;
    const std::string label = k.name + (as_root ? " [root]" : " [uid " + std::to_string(setup.user.uid) + "]");
    if ((as_root && !setup.act_as_root) || (!as_root && !setup.act_as_user)) continue;
    if (auto why = detail::missing_capability(k.needs, setup); !why.empty()) {
      report.skipped.push_back(label + ": " + why);
      continue;
    }
    conformance_paths paths{detail::case_dir(setup, i, k.reads_only), &setup};
    if (setup.arrange) {
      std::string failed;
      if (!k.reads_only)
        failed = detail::arrange_tree(fs, setup, paths.dir);
      else if (shared_failed)
        failed = *shared_failed;
      else
        failed = *(shared_failed = detail::arrange_tree(fs, setup, paths.dir));
      if (!failed.empty()) {
        ++report.run;
        report.deviations.push_back(label + ": " + failed);
        continue;
      }
    }
    const actor who = as_root ? actor::root() : setup.user;
    ++report.run;
    auto got = k.act(fs, who, paths);
    std::string problem;
    if (!got) {
      bool matched = false;
      for (const auto& e : k.expect) matched = matched || got.error().code == e;
      if (!matched) {
        problem = "expected " + (k.expect.empty() ? std::string("success") : code_name(k.expect.front()));
        for (std::size_t j = 1; j < k.expect.size(); ++j) problem += " or " + code_name(k.expect[j]);
        problem += ", got " + code_name(got.error().code) + " (" + got.error().message() + ")";
      }
    } else if (!k.expect.empty()) {
      problem = "expected " + code_name(k.expect.front()) + ", got success";
    } else if (!got->empty()) {
      problem = *got;
    }
    if (problem.empty() && k.verify) problem = k.verify(fs, who, paths);
    if (problem.empty())
      ++report.passed;
    else
      report.deviations.push_back(label + ": " + problem);
  }
  return report;
}

}  // namespace testing
HOSTCFG_END_NAMESPACE
