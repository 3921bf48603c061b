// launchd_plist_example: LaunchdPlist writes a launchd daemon (root:wheel 0644 in
// /Library/LaunchDaemons), compares it semantically on the next run (no rewrite, no reload), and
// loads it through a service-manager backend. Here FileOnlyServiceManager: there is no launchd in
// an in-memory tree, so loading is "skipped: no launchd here", which is not a failure.
#include <cstdio>

#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/backend/service_manager.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/primitives/launchd_plist.hpp>

using namespace hostcfg;

int main() {
  MemoryFs fs;
  fs.add_dir("/Library/LaunchDaemons", 0755, 0, 0);
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_file("/Library/PrivilegedHelperTools/com.example.helper", "\x7f" "ELF\n", 0544, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);

  user_identity alice{501, 20, {20, 80}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
  ScriptedPrivilege priv(alice, answer::granted);
  context ctx(fs, priv, "com.example.app");
  FileOnlyServiceManager no_launchd;
  any_service_manager sm(no_launchd);
  ctx.attach(sm);

  launchd_job job;
  job.label = "com.example.helper";
  job.program_arguments = {"/Library/PrivilegedHelperTools/com.example.helper", "--socket", "/var/run/com.example.sock"};
  job.run_at_load = true;
  LaunchdPlist daemon{job};

  auto report = converge(ctx, daemon);
  if (!report || !report->ok()) return 1;
  std::printf("%s", report->render_text().c_str());
  auto again = converge(ctx, daemon);
  if (!again) return 1;
  std::printf("\nsecond run: %s\n", again->steps[0].planned.empty() ? "in sync, nothing written or reloaded" : "CHANGED");
  auto st = fs.status_of("/Library/LaunchDaemons/com.example.helper.plist");
  if (!st) return 1;
  std::printf("plist owner %u:%u mode %o\n", static_cast<unsigned>(st->uid), static_cast<unsigned>(st->gid),
              static_cast<unsigned>(st->mode));
  return 0;
}
