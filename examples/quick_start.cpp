// The README's quick start, built by the tests so it cannot rot: the seed's CLI links (with the
// ~/.docker/bin + PATH fallback) and the hosts entries, converged once on an in-memory macOS-like
// tree where the admin prompt is declined, then converged again (nothing left to do).
#include <hostcfg/hostcfg.hpp>

#include <cstdio>

int main() {
  using namespace hostcfg;
  user_identity alice{501, 20, {20}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};

  MemoryFs fs;  // PosixFs for the real disk, RootedFs<PosixFs> for a sandbox directory
  fs.add_dir("/usr/local/bin", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  fs.add_file("/etc/hosts", "127.0.0.1\tlocalhost\n", 0644, 0, 0);
  for (const char* tool : {"docker", "kubectl"})
    fs.add_file(std::string("/Applications/Docker.app/Contents/Resources/bin/") + tool, "#!/bin/sh\n", 0755, 0, 0);

  ScriptedPrivilege priv(alice, answer::declined);  // CommandPrivilege asks through sudo / the admin dialog
  context ctx(fs, priv, "com.docker.desktop");

  auto links = cli_links("/Applications/Docker.app/Contents/Resources/bin", "/usr/local/bin", "/Users/alice/.docker/bin",
                         ShellProfilePathEdit{"/Users/alice/.docker/bin"});
  HostsEntry hosts{"127.0.0.1", {"localhost", "kubernetes.docker.internal"}};

  auto report = converge(ctx, links, hosts);  // probe, plan, one prompt, apply, record, re-probe
  if (!report) {
    std::fprintf(stderr, "%s\n", report.error().message().c_str());
    return 1;
  }
  std::fputs(report->render_text().c_str(), stdout);

  auto again = converge(ctx, links, hosts);  // the decline is recorded: no prompt, no write
  if (!again) return 1;
  std::printf("second run: %zu prompt(s), ok=%d\n", again->prompts_shown, again->ok() ? 1 : 0);
  return again->prompts_shown == 0 ? 0 : 1;
}
