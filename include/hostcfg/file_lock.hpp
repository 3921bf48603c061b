#pragma once
/// @file
/// Serializes hostcfg writers of one file (RELIABILITY.md F6): two processes editing the same
/// file (two apps each adding their own block to `~/.profile`) take turns, so neither loses its
/// compare-and-swap nor the other's change.

#include <string_view>

#include "hostcfg/error.hpp"
#include "hostcfg/fs.hpp"
#include "hostcfg/path.hpp"

HOSTCFG_BEGIN_NAMESPACE

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
template <class Fs>
result<fs_lock> lock_for_edit(Fs& fs, const actor& who, std::string_view path) {
  return fs.lock(who, parent_path(path));
}

HOSTCFG_END_NAMESPACE
