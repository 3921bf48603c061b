#pragma once
/// @file
/// `OverlayFs<Fs>`: copy-on-write in memory over another backend, for dry runs. A dry run is a
/// real apply against an overlay: later steps see earlier steps' effects, and nothing reaches
/// the lower backend, which is only ever asked `lstat`, `readlink`, `get_flags`, `list_dir` and
/// `read_file`.
///
///     hostcfg::PosixFs disk;                  // or any backend
///     hostcfg::OverlayFs<hostcfg::PosixFs> dry(disk);
///     apply(dry, ...);                         // the same code path as a real run
///     for (const auto& line : dry.changes()) print(line);   // "changed /etc/hosts: 120 -> 160 bytes"
///
/// How it works: the overlay is a `MemoryFs` that pulls each object from the lower layer the
/// first time a walk looks at it (status, flags and link target; a file's bytes on first read).
/// From then on the overlay's copy is authoritative: writes and removals happen only there (a
/// removed name is a whiteout; a directory re-created in the overlay hides the lower's
/// entries). Permission checks are `MemoryFs`'s, applied to the lower layer's owners, modes
/// and flags, so the overlay refuses what the lower would. Statuses of untouched objects are
/// the lower's (inode, times), so a compare-and-swap probe taken through the overlay holds.
/// Every `MemoryFs` instrument works here too: the op log, `mutating_ops()`, fault injection.
///
/// Limits: the lower's mount points are not known (a bind-mounted file gives EBUSY only on the
/// real run); `file_bytes`/`status_of` see only objects already pulled, and do not follow
/// symlinks.

#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hostcfg/backend/memory_fs.hpp"
#include "hostcfg/fs.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace detail {

// The read-only questions the overlay asks its lower backend.
template <class Fs>
class overlay_source final : public lower_source {
 public:
  explicit overlay_source(Fs& lower) : lower_(lower) {}

  result<std::optional<pulled_object>> lookup(const actor& who, const std::string& path) override {
    auto st = lower_.lstat(who, path);
    if (!st) {
      if (st.error().is_errno(ENOENT)) return std::optional<pulled_object>{};
      return tl::unexpected(st.error());
    }
    pulled_object out;
    out.status = *st;
    if (st->type == file_type::symlink) {
      auto target = lower_.readlink(who, path);
      if (!target) return tl::unexpected(target.error());
      out.link_target = std::move(*target);
    }
    // Flags matter for what the overlay refuses; a backend that cannot read them has none.
    if (auto flags = lower_.get_flags(who, path)) out.flags = *flags;
    return std::optional<pulled_object>(std::move(out));
  }

  result<std::vector<std::string>> list(const actor& who, const std::string& path) override {
    return lower_.list_dir(who, path);
  }

  result<std::string> read(const actor& who, const std::string& path, std::size_t max_bytes) override {
    auto contents = lower_.read_file(who, path, max_bytes);
    if (!contents) return tl::unexpected(contents.error());
    return std::move(contents->bytes);
  }

 private:
  Fs& lower_;
};

}  // namespace detail

/// Copy-on-write in memory over `Fs` (see the file comment). The lower backend must outlive the
/// overlay. Satisfies the Fs contract (`check_fs<OverlayFs<Fs>>()`).
template <class Fs>
class OverlayFs : public MemoryFs {
 public:
  /// An overlay over `lower`; nothing is read until the first operation (except "/" itself).
  explicit OverlayFs(Fs& lower) : MemoryFs(std::make_shared<detail::overlay_source<Fs>>(lower)) {
    static_assert(check_fs<Fs>(), "OverlayFs needs a lower backend satisfying the Fs contract");
  }

  /// What applying the overlay to the lower layer would change, one readable line each, in
  /// `MemoryFs::diff`'s format ("added link /usr/local/bin/docker -> /App/bin/docker").
  /// Empty when the overlay only read.
  std::vector<std::string> changes() const { return diff(baseline(), take_snapshot()); }

  /// Mutating operations attempted through the overlay (what the real run would do).
  std::size_t mutating_count() const { return mutating_ops(); }
};

HOSTCFG_END_NAMESPACE
