#pragma once
/// @file
/// The umbrella header: the whole library except the parts with extra dependencies or roles -
/// `report_json.hpp` (needs nlohmann/json), the privileged helper's server and one-shot runner
/// (`helper/server.hpp`, `helper/one_shot.hpp`, for the helper program), and `testing/` (for
/// tests). Include those explicitly where needed.
///
///     #include <hostcfg/hostcfg.hpp>
///     hostcfg::PosixFs fs;  hostcfg::RootFor priv(user);
///     hostcfg::context ctx(fs, priv, "com.example.app");
///     auto report = hostcfg::converge(ctx, hostcfg::HostsEntry{...}, ...);

#include "hostcfg/version.hpp"
#include "hostcfg/error.hpp"
#include "hostcfg/path.hpp"
#include "hostcfg/fs.hpp"
#include "hostcfg/file_lock.hpp"
#include "hostcfg/privilege.hpp"
#include "hostcfg/protocol.hpp"
#include "hostcfg/record.hpp"
#include "hostcfg/context.hpp"
#include "hostcfg/elevation.hpp"
#include "hostcfg/converge.hpp"
#include "hostcfg/runner.hpp"

#include "hostcfg/format/lines.hpp"
#include "hostcfg/format/markers.hpp"
#include "hostcfg/format/diff.hpp"
#include "hostcfg/format/hostname.hpp"
#include "hostcfg/format/ip_address.hpp"
#include "hostcfg/format/hosts.hpp"
#include "hostcfg/format/plist.hpp"
#include "hostcfg/format/plist_xml.hpp"
#include "hostcfg/format/plist_binary.hpp"
#include "hostcfg/format/shell_dialect.hpp"
#include "hostcfg/format/shell_profile.hpp"
#include "hostcfg/format/shell_path_model.hpp"

#include "hostcfg/backend/unique_fd.hpp"
#include "hostcfg/backend/syscalls.hpp"
#include "hostcfg/backend/posix_fs.hpp"
#include "hostcfg/backend/rooted_fs.hpp"
#include "hostcfg/backend/memory_fs.hpp"
#include "hostcfg/backend/overlay_fs.hpp"
#include "hostcfg/backend/service_manager.hpp"
#include "hostcfg/backend/resolver.hpp"
#include "hostcfg/backend/command_privilege.hpp"

#include "hostcfg/helper/protocol.hpp"
#include "hostcfg/helper/client.hpp"
#include "hostcfg/helper/port_bind.hpp"

#include "hostcfg/primitives/managed_file.hpp"
#include "hostcfg/primitives/group.hpp"
#include "hostcfg/primitives/symlink_set.hpp"
#include "hostcfg/primitives/hosts_entry.hpp"
#include "hostcfg/primitives/shell_profile_path_edit.hpp"
#include "hostcfg/primitives/launchd_plist.hpp"
#include "hostcfg/primitives/protected_file.hpp"
#include "hostcfg/primitives/privileged_port_bind.hpp"

#include "hostcfg/recipes/cli_links.hpp"
