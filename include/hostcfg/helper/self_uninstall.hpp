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
/// The hook runs the job's self-revert (`LaunchdPlist::revert` with `launchd_revert_options::self`),
/// because the helper runs inside the very job it removes: on a real Mac `launchctl bootout` of
/// that job sends the helper SIGTERM, so the ordinary order (bootout, wait, remove the plist)
/// would die before the removal, and its wait could never see the job gone. Instead: remove the
/// plist the app's root-owned record says hostcfg created (or give back the one it replaced), store
/// that record with the item marked "bootout pending", then boot out as the very last act. If the
/// helper dies before the bootout, the installer's next uninstall or converge (or a later
/// uninstall_self, if launchd starts the helper again) sees "plist gone, job still loaded" and
/// finishes the bootout. When the bootout returns (no launchd here), the item is erased and the
/// record stored again (removed when nothing else is in it).
///
/// It trusts only the root-owned record (`ctx.read_user_record` is turned off), and refuses when
/// that record names another plist than the configured one. A job the record does not know is
/// left alone ("nothing recorded").

#include <functional>
#include <string>
#include <utility>

#include "hostcfg/converge.hpp"
#include "hostcfg/error.hpp"
#include "hostcfg/primitives/launchd_plist.hpp"
#include "hostcfg/privilege.hpp"
#include "hostcfg/record.hpp"

HOSTCFG_BEGIN_NAMESPACE

namespace helper {

/// Builds the `server_config::uninstall` hook that reverts `job` through `ctx` (see the file
/// comment). `ctx` and its backends must outlive the server. The hook returns one line per
/// event, in the order done ("/Library/LaunchDaemons/com.docker.vmnetd.plist: removed;
/// system/com.docker.vmnetd: booted out"), or the first failure (`errc::drifted` for a plist
/// changed since it was written, `errc::conflict` for a record naming another plist path, a
/// backend's error otherwise). On a real launchd it does not return after a successful bootout.
template <class Fs, class Priv>
std::function<result<std::string>()> revert_launchd_job(context<Fs, Priv>& ctx, LaunchdPlist job) {
  return [&ctx, job = std::move(job)]() -> result<std::string> {
    const std::string op = "uninstall helper job";
    // A root helper acts only on what root wrote: never on the user's record.
    ctx.read_user_record = false;
    auto loaded = load_record(ctx.fs, ctx.system_record, ctx.app_id);
    if (!loaded) return tl::unexpected(loaded.error());
    const std::string configured = job.plist_path(ctx.priv.user());
    const record_item* mine = loaded->find(job.id());
    if (!mine) return "nothing recorded for " + job.id() + " in " + ctx.system_record.path + "; left alone";
    if (mine->get("path") != configured)
      return fail(errc::conflict, op, configured,
                  "the record names " + mine->get("path") + " for " + job.id() + ", not the configured plist",
                  "nothing was reverted; check the helper's --label and --plist-dir");
    ledgers books{record{ctx.app_id, {}}, *loaded};
    // Asked as `uninstall` would ask: the helper's privilege backend (RootFor) grants without a prompt.
    grant g;
    elevation_request request{ctx.app_id, ctx.app_id + " needs administrator rights to remove its helper's job", {}};
    for (const auto& c : job.revert_plan(books).changes)
      if (c.needs_elevation) request.changes.push_back(c.summary());
    if (!request.changes.empty()) {
      g.answer_ = ctx.priv.ask(request);
      g.elevated = *g.answer_ == answer::granted;
    }
    launchd_revert_options own;
    own.self = true;
    const apply_report applied = job.revert(ctx, g, books, own);
    for (const auto& e : applied.events) ctx.emit(job.id(), e);
    // Reached only when the bootout did not end this process. The item is erased when the bootout
    // went through; the record is then removed if nothing else is in it.
    auto stored = store_record_merged(ctx.fs, ctx.system_record, books.system, *loaded);
    std::string text;
    for (const auto& e : applied.events) {
      // "No launchd here" (FileOnlyServiceManager) is the one skip that is not a failure.
      const bool harmless_skip =
          e.kind == event_kind::skipped && !e.failure && e.message == FileOnlyServiceManager::skip_note;
      if (e.kind == event_kind::failed || (e.kind == event_kind::skipped && !harmless_skip))
        return tl::unexpected(e.failure ? *e.failure : fail(errc::unavailable, op, e.path, e.message).value());
      text += (text.empty() ? "" : "; ") + e.path + ": " + e.message;
    }
    if (!stored) return tl::unexpected(stored.error());
    for (const auto& note : applied.notes) text += "; " + note;
    return text;
  };
}

}  // namespace helper

HOSTCFG_END_NAMESPACE
