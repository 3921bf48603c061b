#pragma once
/// @file
/// The seed's "Installing symlinks" flow as a reusable recipe: link every command of the app's
/// `bin` directory into a system directory on PATH (`/usr/local/bin`), asking for admin rights
/// only when the user cannot write there; when the answer is no (declined, cancelled, timed out,
/// or no admin rights), link them under the user's home instead and put that directory on PATH.
///
///     auto step = cli_links("/Applications/Docker.app/Contents/Resources/bin", "/usr/local/bin",
///                           "/Users/alice/.docker/bin", ShellProfilePathEdit{...});
///     auto report = converge(ctx, step);
///
/// The decision is recorded as the foundation's decision table says, so the next run goes
/// straight to the fallback with zero prompts and zero writes (unless re-prompt is set). When a
/// later run can use the system directory (now writable, or re-prompt granted), the links are
/// made there first and only then are the fallback links removed, one command at a time; a
/// command left in conflict there keeps its fallback link and the PATH edit stays while any
/// fallback link remains (the step's runner in symlink_set.hpp). The report's notes say what to
/// do next: reload shells, or the exact directory to add to PATH when everything failed.

#include <string>
#include <utility>

#include "hostcfg/converge.hpp"
#include "hostcfg/primitives/group.hpp"
#include "hostcfg/primitives/symlink_set.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// Choices of the CLI-links recipe beyond its directories.
struct cli_links_options {
  bool take_over = false;          ///< replace foreign links / files in both directories (kept for revert)
  mode_type user_dir_mode = 0755;  ///< mode of the fallback directory and its missing parents
};

/// The step type `cli_links` builds.
template <class PathEdit>
using cli_links_step = fallback_step<SymlinkSet, Group<SymlinkSet, PathEdit>>;

/// `fallback(SymlinkSet{system_link_dir <- app_bin_dir}, all_of(SymlinkSet{user_link_dir <-
/// app_bin_dir}, path_edit))`. `path_edit` is any primitive that puts `user_link_dir` on the
/// user's PATH (ShellProfilePathEdit; any primitive works, e.g. a ManagedFile in tests).
template <class PathEdit>
cli_links_step<PathEdit> cli_links(std::string app_bin_dir, std::string system_link_dir, std::string user_link_dir,
                                   PathEdit path_edit, cli_links_options options = {}) {
  SymlinkSet system;
  system.link_dir = std::move(system_link_dir);
  system.source_dir = app_bin_dir;
  system.take_over = options.take_over;
  SymlinkSet user;
  user.link_dir = std::move(user_link_dir);
  user.source_dir = std::move(app_bin_dir);
  user.take_over = options.take_over;
  user.dir_mode = options.user_dir_mode;
  return fallback(std::move(system), all_of(std::move(user), std::move(path_edit)));
}

HOSTCFG_END_NAMESPACE
