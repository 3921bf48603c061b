#pragma once
/// @file
/// The helper's own launchd job, reverted through the library when a client asks the helper to
/// uninstall itself (`uninstall_self`). The program that runs the helper configures it (the
/// client never names a path or a label):
///
///     RootedFs<PosixFs> fs(root);  RootFor priv(root_user);  FileOnlyServiceManager file_only;
///     any_service_manager sm(file_only);
///     context ctx(fs, priv, "com.docker.desktop");  ctx.attach(sm);
///     LaunchdPlist job{docker_vmnetd_job()};
///     config.uninstall = helper::revert_launchd_job(ctx, job);   // server_config, server.hpp
///
/// The hook runs `uninstall(ctx, job)`: bootout through the attached service manager, wait until
/// the label is gone, remove the plist the app's root-owned record says hostcfg created (or give
/// back the one it replaced), and update that record. It trusts only the root-owned record
/// (`ctx.read_user_record` is turned off), and refuses when that record names another plist than
/// the configured one. A job the record does not know is left alone ("nothing recorded").

#include <functional>
#include <string>
#include <utility>

#include "hostcfg/converge.hpp"
#include "hostcfg/error.hpp"
#include "hostcfg/primitives/launchd_plist.hpp"
#include "hostcfg/record.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace helper {

/// Builds the `server_config::uninstall` hook that reverts `job` through `ctx` (see the file
/// comment). `ctx` and its backends must outlive the server. The hook returns one line per
/// event ("system/com.docker.vmnetd: booted out; /Library/LaunchDaemons/com.docker.vmnetd.plist:
/// removed"), or the first failure (`errc::drifted` for a plist changed since it was written,
/// `errc::conflict` for a record naming another plist path, a backend's error otherwise).
template <class Fs, class Priv>
std::function<result<std::string>()> revert_launchd_job(context<Fs, Priv>& ctx, LaunchdPlist job) {
  return [&ctx, job = std::move(job)]() -> result<std::string> {
    const std::string op = "uninstall helper job";
    // A root helper acts only on what root wrote: never on the user's record.
    ctx.read_user_record = false;
    auto books = load_record(ctx.fs, ctx.system_record, ctx.app_id);
    if (!books) return tl::unexpected(books.error());
    const std::string configured = job.plist_path(ctx.priv.user());
    const record_item* mine = books->find(job.id());
    if (!mine) return "nothing recorded for " + job.id() + " in " + ctx.system_record.path + "; left alone";
    if (mine->get("path") != configured)
      return fail(errc::conflict, op, configured,
                  "the record names " + mine->get("path") + " for " + job.id() + ", not the configured plist",
                  "nothing was reverted; check the helper's --label and --plist-dir");
    auto report = uninstall(ctx, job);
    if (!report) return tl::unexpected(report.error());
    std::string text;
    for (const auto& step : report->steps) {
      if (step.failure) return tl::unexpected(*step.failure);
      for (const auto& e : step.applied.events) {
        // "No launchd here" (FileOnlyServiceManager) is the one skip that is not a failure.
        const bool harmless_skip = e.kind == event_kind::skipped && !e.failure &&
                                   e.message == FileOnlyServiceManager::skip_note;
        if (e.kind == event_kind::failed || (e.kind == event_kind::skipped && !harmless_skip))
          return tl::unexpected(e.failure ? *e.failure : fail(errc::unavailable, op, e.path, e.message).value());
        text += (text.empty() ? "" : "; ") + e.path + ": " + e.message;
      }
    }
    for (const auto& note : report->notes) text += "; " + note;
    return text;
  };
}

}  // namespace helper

HOSTCFG_END_NAMESPACE
