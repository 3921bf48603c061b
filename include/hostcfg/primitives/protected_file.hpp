#pragma once
/// @file
/// ProtectedFile: a file owned by root, readable by the user, not writable by them, with exact
/// content (the seed's cached "Registry Access Management policy"). It is a ManagedFile with the
/// owner pinned to root:0 and a mode that gives group and others no write bit, so probe compares
/// content, owner and mode, and apply needs elevation exactly when the file is not yet as
/// desired. Later refreshes go through the privileged helper without a prompt (`refresh`), which
/// writes the one path fixed in the helper's own configuration.
///
///     ProtectedFile policy{"/Library/Application Support/com.example/policy.json", bytes};
///     auto report = converge(ctx, policy);               // one prompt the first time
///     policy.content = new_bytes;
///     policy.refresh(helper::client_options{socket});    // later: no prompt
///     uninstall(ctx, policy);                            // removes it: the refreshed bytes are ours
///
/// Items and records are ManagedFile's (`file:<path>`, kind "managed_file"), so an elevated runner
/// that knows ManagedFile rebuilds it from `desired_state()` with the same root owner.

#include <string>
#include <utility>

#include "hostcfg/helper/client.hpp"
#include "hostcfg/primitives/managed_file.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// A root-owned, user-readable, user-unwritable file with exact content. See the file comment.
struct ProtectedFile {
  /// `ProtectedFile{"/etc/app/policy.json", "{...}"}`; mode defaults to 0644.
  ProtectedFile(std::string file_path, std::string file_content, mode_type file_mode = 0644)
      : path(std::move(file_path)), content(std::move(file_content)), mode(file_mode) {}

  std::string path;         ///< absolute, normal; the helper's configured policy path
  std::string content;      ///< exact bytes
  mode_type mode = 0644;    ///< must grant others read and no group/other write (checked by probe)
  bool take_over = false;   ///< replace a file hostcfg did not create (its bytes kept for revert)
  mode_type dir_mode = 0755;

  static constexpr const char* kind_name = "protected_file";
  std::string id() const { return "protected:" + path; }
  const char* kind() const { return kind_name; }

  /// The ManagedFile this is: owner root:0, the mode given.
  ManagedFile as_managed_file() const {
    ManagedFile f{path, content, mode};
    f.uid = 0;
    f.gid = 0;
    f.take_over = take_over;
    f.dir_mode = dir_mode;
    f.refreshable = true;  // the helper's refresh rewrites it: uninstall with the refreshed content removes it
    return f;
  }

  /// The desired state for an elevated runner (ManagedFile's, with the root owner).
  record_item desired_state() const { return as_managed_file().desired_state(); }

  /// Rebuilds a ProtectedFile from `desired_state()` (validated as ManagedFile's, owner root).
  static result<ProtectedFile> from_desired_state(const record_item& item) {
    auto file = ManagedFile::from_desired_state(item);
    if (!file) return tl::unexpected(file.error());
    if (file->uid != std::optional<uid_type>(0) || file->gid != std::optional<gid_type>(0))
      return fail(errc::invalid_input, "read desired state", file->path, "a protected file is owned by root");
    ProtectedFile p{file->path, file->content, file->mode};
    p.take_over = file->take_over;
    p.dir_mode = file->dir_mode;
    return p;
  }

  /// Probes content, owner and mode (ManagedFile's probe with the owner pinned to root).
  template <class Fs, class Priv>
  result<probe_report> probe(context<Fs, Priv>& ctx, const ledgers& books) const {
    if ((mode & 022) != 0)
      return fail(errc::invalid_input, "probe", path,
                  "mode " + detail::mode_text(mode) + " would let others write a protected file", "use 0644");
    // root:0 owns it, so the user reads it through the "other" bits (0640 would lock the user out).
    if ((mode & 0004) == 0)
      return fail(errc::invalid_input, "probe", path,
                  "mode " + detail::mode_text(mode) + " would not let the user read a file owned by root:0",
                  "use 0644");
    auto report = as_managed_file().probe(ctx, books);
    if (report) relabel(*report);
    return report;
  }

  /// Pure: ManagedFile's plan, labelled as this primitive.
  plan make_plan(const probe_report& probed) const {
    plan p = as_managed_file().make_plan(probed);
    p.primitive = kind();
    p.id = id();
    for (auto& c : p.changes) c.object = "protected file";
    return p;
  }

  /// Writes the file (root-owned, atomically) when granted, and records it.
  template <class Fs, class Priv>
  apply_report apply(context<Fs, Priv>& ctx, const plan& p, const grant& g, ledgers& books) const {
    apply_report r = as_managed_file().apply(ctx, p, g, books);
    r.primitive = kind();
    r.id = id();
    // ManagedFile leaves the owner alone when the bytes were already right (its replace is
    // only-if-different), but here the owner is the point: settle it explicitly.
    for (auto& e : r.events) {
      if (e.kind != event_kind::changed) continue;
      const actor who = ctx.actor_for(e.elevated);
      auto st = ctx.fs.lstat(who, path);
      result<void> fixed;
      if (!st) fixed = tl::unexpected(st.error());
      else if (st->uid != 0 || st->gid != 0) fixed = ctx.fs.lchown(who, path, 0, 0);
      if (fixed && st && st->mode != mode) fixed = ctx.fs.chmod(who, path, mode);
      if (!fixed) {
        e.kind = event_kind::failed;
        e.message = fixed.error().message();
        e.failure = fixed.error();
      }
    }
    return r;
  }

  /// What revert would do, from the records alone.
  plan revert_plan(const ledgers& books) const {
    plan p = as_managed_file().revert_plan(books);
    p.primitive = kind();
    p.id = id();
    for (auto& c : p.changes) c.object = "protected file";
    return p;
  }

  /// Removes the file we created, or restores the one we took over; refuses drift.
  template <class Fs, class Priv>
  apply_report revert(context<Fs, Priv>& ctx, const grant& g, ledgers& books) const {
    apply_report r = as_managed_file().revert(ctx, g, books);
    r.primitive = kind();
    r.id = id();
    return r;
  }

  /// Replaces the content through the privileged helper, without a prompt. The helper writes the
  /// one path of its own configuration (which should be `path`); the request carries no path.
  result<void> refresh(const helper::client_options& helper_options) const {
    return helper::refresh_policy(helper_options, content);
  }

 private:
  void relabel(probe_report& report) const {
    report.primitive = kind();
    report.id = id();
  }
};

HOSTCFG_END_NAMESPACE
