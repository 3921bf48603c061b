#pragma once
/// @file
/// Serializes hostcfg writers of one file (RELIABILITY.md F6): two processes editing the same
/// file (two apps each adding their own block to `~/.profile`) take turns, so neither loses its
/// compare-and-swap nor the other's change.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hostcfg/error.hpp"
#include "hostcfg/fs.hpp"
#include "hostcfg/path.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace detail {

/// A directory lock this thread took through `lock_for_edit`, shared by its nested requests.
struct held_dir_lock {
  /// What the holders share: released when the last of them lets go, on whichever thread (a
  /// holder moved to another thread and released there is counted like any other; the mutex
  /// keeps that release and a nested request on the taking thread from racing).
  struct shared {
    std::mutex mutex;
    std::size_t depth = 0;
    fs_lock lock;
  };
  const void* fs;
  std::pair<std::uint64_t, std::uint64_t> identity;  ///< dev, ino of the directory when it was locked
  std::shared_ptr<shared> state;
};

/// This thread's held directory locks (entries whose depth fell to 0 are dropped lazily).
inline std::vector<held_dir_lock>& held_dir_locks() {
  thread_local std::vector<held_dir_lock> held;
  return held;
}

/// One holder lets go; the last one releases the lock.
inline void release_held(held_dir_lock::shared& state) {
  std::lock_guard<std::mutex> guard(state.mutex);
  if (state.depth > 0 && --state.depth == 0) state.lock.reset();
}

/// Joins a held lock unless its last holder has let go meanwhile; true when joined.
inline bool join_held(held_dir_lock::shared& state) {
  std::lock_guard<std::mutex> guard(state.mutex);
  if (state.depth == 0) return false;
  ++state.depth;
  return true;
}

}  // namespace detail

/// Takes the exclusive advisory lock that every hostcfg read-modify-write of `path` holds, as
/// `who`. Blocks until granted; the edit is safe while the returned `fs_lock` lives.
///
/// The lock is on the parent DIRECTORY, not on the file: `replace_file` puts a new inode at the
/// name, so a lock on the file's inode would be released by the very write it protects, and a
/// waiter would then hold a lock on an inode nobody reads any more. The directory stays the same
/// object and nothing is created (no lock file left behind, no extra mutating syscall). The price
/// is that writers of different files in one directory also take turns, which is cheap.
///
/// Callers re-read `path` after this returns and compute the new bytes from that read, never from
/// an earlier probe: the probe may predate another writer's change.
///
///     auto held = lock_for_edit(fs, who, "/home/u/.profile");  // locks /home/u
///     if (!held) return tl::unexpected(held.error());
///     auto now = fs.read_file(who, "/home/u/.profile", max_bytes);  // then edit `now`
///
/// Nested requests of one thread for a directory it already holds share the lock instead of
/// waiting for themselves (a flock on a second open of the directory would block forever): an
/// edit of `~/.profile` that writes its record item ahead (context::record_ahead) into a record
/// kept in the same directory. The directory is recognised by device and inode, never by name
/// alone (one `lstat` when the lock is taken, one per nested request): a directory renamed while
/// held and replaced by a new one of the same name is another directory, locked for real. A
/// returned lock may be released on another thread; a nested request made there does not know
/// the lock (held locks are per thread, since two threads' edits must take turns) and waits for it.
template <class Fs>
result<fs_lock> lock_for_edit(Fs& fs, const actor& who, std::string_view path) {
  const std::string dir = parent_path(path);
  auto& held = detail::held_dir_locks();
  held.erase(std::remove_if(held.begin(), held.end(),
                            [](const detail::held_dir_lock& e) {
                              std::lock_guard<std::mutex> guard(e.state->mutex);
                              return e.state->depth == 0;
                            }),
             held.end());
  using identity = std::pair<std::uint64_t, std::uint64_t>;
  auto identity_of = [&]() -> result<identity> {
    auto st = fs.lstat(who, dir);
    if (!st) return tl::unexpected(st.error());
    return identity{st->dev, st->ino};
  };
  std::optional<identity> mine;
  for (auto& e : held) {
    if (e.fs != static_cast<const void*>(&fs)) continue;
    if (!mine) {
      // Not knowing could mean waiting for ourselves: an error instead.
      auto id = identity_of();
      if (!id) return tl::unexpected(id.error());
      mine = *id;
    }
    if (e.identity == *mine && detail::join_held(*e.state))
      return fs_lock([state = e.state] { detail::release_held(*state); });
  }
  auto lock = fs.lock(who, dir);
  if (!lock) return tl::unexpected(lock.error());
  // Looked up right after the flock. Only a rename of the directory in between these two calls
  // (by someone else, within microseconds) would give a nested request the wrong identity.
  auto locked = identity_of();
  if (!locked) return tl::unexpected(locked.error());
  auto state = std::make_shared<detail::held_dir_lock::shared>();
  state->depth = 1;
  state->lock = std::move(*lock);
  held.push_back(detail::held_dir_lock{static_cast<const void*>(&fs), *locked, state});
  return fs_lock([state] { detail::release_held(*state); });
}

HOSTCFG_END_NAMESPACE
