// shell_profile_path_edit_example: ShellProfilePathEdit puts ~/.example/bin on the user's PATH by
// adding a marked block to the startup file their login shell reads (zsh: ~/.zshrc), written as
// the user, and removes exactly that block on uninstall. On an in-memory tree.
#include <cstdio>

#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/primitives/shell_profile_path_edit.hpp>

using namespace hostcfg;

int main() {
  MemoryFs fs;
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  fs.add_file("/Users/alice/.zshrc", "export EDITOR=vim\n", 0644, 501, 20);

  user_identity alice{501, 20, {20}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
  Unprivileged priv(alice);  // nothing here needs admin rights
  context ctx(fs, priv, "com.example.app");

  ShellProfilePathEdit path{"/Users/alice/.example/bin"};
  auto report = converge(ctx, path);
  if (!report || !report->ok()) return 1;
  std::printf("%s\n~/.zshrc now:\n%s", report->render_text().c_str(), fs.file_bytes("/Users/alice/.zshrc")->c_str());

  auto removed = uninstall(ctx, path);
  if (!removed || !removed->ok()) return 1;
  std::printf("\nafter uninstall ~/.zshrc is:\n%s", fs.file_bytes("/Users/alice/.zshrc")->c_str());
  return 0;
}
