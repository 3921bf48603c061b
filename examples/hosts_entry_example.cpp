// hosts_entry_example: HostsEntry makes kubernetes.docker.internal resolve to 127.0.0.1 through a
// hosts file, touching nothing outside its own marked section; uninstall gives back the exact
// original bytes. On an in-memory tree holding macOS's stock /etc/hosts, so the resolver attached
// is a FakeResolver: the real one (SystemResolver) reads the real /etc/hosts, never this tree.
#include <cstdio>

#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/backend/resolver.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/primitives/hosts_entry.hpp>

using namespace hostcfg;

int main() {
  const std::string stock =
      "##\n# Host Database\n#\n# localhost is used to configure the loopback interface\n"
      "# when the system is booting.  Do not change this entry.\n##\n127.0.0.1\tlocalhost\n"
      "255.255.255.255\tbroadcasthost\n::1             localhost\n";
  MemoryFs fs;
  fs.add_file("/etc/hosts", stock, 0644, 0, 0);
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);

  user_identity alice{501, 20, {20, 80}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
  ScriptedPrivilege priv(alice, answer::granted);
  context ctx(fs, priv, "com.example.app");
  // The resolver's answer is reported next to the file's, as a note: here DNS answers first.
  FakeResolver fake;
  fake.answer("localhost", {"127.0.0.1", "::1"}).answer("kubernetes.docker.internal", {"10.0.0.5"});
  any_resolver resolver(fake);
  ctx.attach(resolver);

  // localhost is already there: it matches and is left as it is.
  HostsEntry hosts{"127.0.0.1", {"localhost", "kubernetes.docker.internal"}};
  auto report = converge(ctx, hosts);
  if (!report || !report->ok()) return 1;
  std::printf("%s\n/etc/hosts now:\n%s", report->render_text().c_str(), fs.file_bytes("/etc/hosts")->c_str());
  const auto& after = report->steps[0].after;  // the re-probe after the write
  const item_probe* k8s = after ? after->find("hosts:/etc/hosts:127.0.0.1 kubernetes.docker.internal") : nullptr;
  if (!k8s) return 1;
  std::printf("kubernetes.docker.internal: %s\n", k8s->detail.c_str());

  auto removed = uninstall(ctx, hosts);
  if (!removed || !removed->ok()) return 1;
  std::printf("\nafter uninstall /etc/hosts is %s\n", fs.file_bytes("/etc/hosts") == stock ? "byte-identical to the original" : "DIFFERENT");
  return 0;
}
