// managed_file_example: ManagedFile, the model primitive, embedded in a program. A config file in
// the user's home (made as the user, no prompt) and one in /etc (one prompt, written as root),
// applied twice (the second run changes nothing), then uninstalled, on an in-memory tree.
#include <cstdio>

#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/primitives/managed_file.hpp>

using namespace hostcfg;

int main() {
  MemoryFs fs;  // a small macOS-like tree
  fs.add_dir("/etc", 0755, 0, 0);
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  const auto start = fs.take_snapshot();

  user_identity alice{501, 20, {20, 80}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
  ScriptedPrivilege priv(alice, answer::granted);  // the admin prompt is answered "yes"
  context ctx(fs, priv, "com.example.app");

  ManagedFile user_conf{"/Users/alice/.config/example/app.conf", "theme = dark\n", 0600};
  ManagedFile system_conf{"/etc/example.conf", "listen = 127.0.0.1\n", 0644};

  auto first = converge(ctx, user_conf, system_conf);
  if (!first) return std::fprintf(stderr, "%s\n", first.error().message().c_str()), 1;
  std::printf("first run (%zu prompt):\n%s", priv.prompts(), first->render_text().c_str());

  auto second = converge(ctx, user_conf, system_conf);
  if (!second) return 1;
  std::printf("\nsecond run: %s, %zu prompt(s) in all\n", second->steps[0].planned.empty() && second->steps[1].planned.empty() ? "in sync, nothing changed" : "CHANGED", priv.prompts());

  std::printf("\nthe tree now:\n");
  for (const auto& line : MemoryFs::diff(start, fs.take_snapshot())) std::printf("  %s\n", line.c_str());

  auto removed = uninstall(ctx, user_conf, system_conf);
  if (!removed || !removed->ok()) return 1;
  std::printf("\nafter uninstall the tree is %s\n", MemoryFs::diff(start, fs.take_snapshot()).empty() ? "as before" : "DIFFERENT");
  return 0;
}
