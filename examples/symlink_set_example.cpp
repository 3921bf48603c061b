// symlink_set_example: SymlinkSet links every command of an app's bin directory into
// /usr/local/bin. A correct link is a no-op, a dangling one is replaced, and someone else's file
// is left alone, reported and noted in the user's record (Homebrew's model). The links are checked
// by resolving them, not just by readlink: each must end at an executable, and the companion that
// `example` runs through PATH must be found as ours first (LESSONS 20); on an in-memory tree.
#include <cstdio>

#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/primitives/symlink_set.hpp>

using namespace hostcfg;

int main() {
  const std::string app_bin = "/Applications/Example.app/Contents/Resources/bin";
  MemoryFs fs;
  fs.add_dir("/usr/local/bin", 0755, 0, 0);
  fs.add_dir("/var/lib", 0755, 0, 0);
  fs.add_dir("/Users/alice", 0750, 501, 20);
  for (const char* cmd : {"example", "example-compose", "examplectl"})
    fs.add_file(app_bin + "/" + cmd, "#!/bin/sh\n", 0755, 0, 80);
  fs.add_symlink("/usr/local/bin/example", "/Applications/Old.app/bin/example");  // dangling: replaced
  fs.add_file("/usr/local/bin/examplectl", "#!/bin/sh\n# the user's own\n", 0755, 501, 20);  // left alone
  const auto start = fs.take_snapshot();

  user_identity alice{501, 20, {20, 80}, "alice", "/Users/alice", "/bin/zsh", std::nullopt, std::nullopt};
  ScriptedPrivilege priv(alice, answer::granted);
  context ctx(fs, priv, "com.example.app");

  SymlinkSet cli;
  cli.link_dir = "/usr/local/bin";
  cli.source_dir = app_bin;
  cli.executables = true;                        // each link must end at something that runs
  cli.companions = {"example-compose"};          // `example` finds it through PATH
  cli.search_path = {"/usr/local/bin", "/usr/bin"};  // the user's PATH, given explicitly

  auto report = converge(ctx, cli);
  if (!report) return std::fprintf(stderr, "%s\n", report.error().message().c_str()), 1;
  std::printf("%s", report->render_text().c_str());
  std::printf("\nthe tree now:\n");
  for (const auto& line : MemoryFs::diff(start, fs.take_snapshot())) std::printf("  %s\n", line.c_str());
  for (const auto& step : report->steps) {
    if (!step.after) continue;
    for (const auto& item : step.after->items) {
      if (item.state == item_state::conflict)
        std::printf("\nleft alone: %s: %s\n", item.path.c_str(), item.detail.c_str());
      else if (item.id.rfind("companion:", 0) == 0)
        std::printf("\ncompanion: %s\n", item.detail.c_str());
    }
  }
  std::printf("/usr/local/bin/examplectl is still the user's: %s\n",
              fs.file_bytes("/usr/local/bin/examplectl") == std::optional<std::string>("#!/bin/sh\n# the user's own\n") ? "yes" : "NO");
  return report->ok() ? 0 : 1;
}
