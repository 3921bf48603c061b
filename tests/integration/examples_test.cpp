// Every small example program runs, exits 0 and prints what it did (the README shows them).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "support/test_support.hpp"

namespace {

struct ran {
  int code = -1;
  std::string out;
};

// Runs an example program from the build tree, capturing stdout; nullopt-like code -2 when the
// program was not built.
ran run_example(const std::string& name, const std::string& args = {}) {
  std::string path = std::string(HOSTCFG_BINARY_DIR) + "/examples/" + name;
  if (::access(path.c_str(), X_OK) != 0) return {-2, {}};
  ran r;
  FILE* pipe = ::popen((path + " " + args + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.out.append(buf, n);
  int status = ::pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return r;
}

bool has(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

#define RUN_OR_SKIP(var, name, args)                    \
  ran var = run_example(name, args);                    \
  if (var.code == -2) {                                 \
    HOSTCFG_SKIP(std::string(name) + " not built");     \
    return;                                             \
  }                                                     \
  INFO(var.out)

}  // namespace

TEST_CASE("managed-file-example: one prompt, a no-op second run, and an uninstall back to the start") {
  RUN_OR_SKIP(r, "managed-file-example", "");
  CHECK(r.code == 0);
  CHECK(has(r.out, "first run (1 prompt):"));
  CHECK(has(r.out, "changed: /etc/example.conf: created (mode 0644, 19 bytes) (as admin)"));
  CHECK(has(r.out, "changed: /Users/alice/.config/example/app.conf: created (mode 0600, 13 bytes)\n"));
  CHECK(has(r.out, "second run: in sync, nothing changed, 1 prompt(s) in all"));
  CHECK(has(r.out, "added file /Users/alice/.config/example/app.conf (13 bytes, 0600 501:20)"));
  CHECK(has(r.out, "after uninstall the tree is as before"));
}

TEST_CASE("symlink-set-example: a dangling link is replaced, a new one made, the user's file left alone") {
  RUN_OR_SKIP(r, "symlink-set-example", "");
  CHECK(r.code == 0);
  CHECK(has(r.out, "link /usr/local/bin/example: /Applications/Old.app/bin/example -> /Applications/Example.app/Contents/Resources/bin/example"));
  CHECK(has(r.out, "added link /usr/local/bin/example-compose -> /Applications/Example.app/Contents/Resources/bin/example-compose"));
  CHECK(has(r.out, "left alone: /usr/local/bin/examplectl: "));
  CHECK(has(r.out, "/usr/local/bin/examplectl is still the user's: yes"));
}

TEST_CASE("hosts-entry-example: only the missing name is added in the app's section; uninstall restores the bytes") {
  RUN_OR_SKIP(r, "hosts-entry-example", "");
  CHECK(r.code == 0);
  CHECK(has(r.out, "::1             localhost\n# >>> hostcfg com.example.app v1 >>>\n127.0.0.1\tkubernetes.docker.internal\n"
                   "# <<< hostcfg com.example.app <<<\n"));
  CHECK(has(r.out, "modify hosts section /etc/hosts (add 127.0.0.1 kubernetes.docker.internal)"));
  CHECK(has(r.out, "kubernetes.docker.internal: resolver: the system resolver answers 10.0.0.5 first (DNS or another "
                   "source answers before /etc/hosts)"));
  CHECK(has(r.out, "after uninstall /etc/hosts is byte-identical to the original"));
}

TEST_CASE("shell-profile-path-edit-example: the PATH block goes into ~/.zshrc after the user's lines and comes out") {
  RUN_OR_SKIP(r, "shell-profile-path-edit-example", "");
  CHECK(r.code == 0);
  CHECK(has(r.out, "~/.zshrc now:\nexport EDITOR=vim\n# >>> hostcfg com.example.app v1 >>>\n"));
  CHECK(has(r.out, "*) export PATH=\"${HOME}\"'/.example/bin'\":${PATH}\" ;;"));
  CHECK(has(r.out, "run `exec zsh` in each"));
  CHECK(has(r.out, "after uninstall ~/.zshrc is:\nexport EDITOR=vim\n"));
}

TEST_CASE("launchd-plist-example: the daemon is written root:wheel 0644, loading is skipped without launchd, a re-run is in sync") {
  RUN_OR_SKIP(r, "launchd-plist-example", "");
  CHECK(r.code == 0);
  CHECK(has(r.out, "changed: /Library/LaunchDaemons/com.example.helper.plist: created (root:wheel 0644) (as admin)"));
  CHECK(has(r.out, "skipped: system/com.example.helper: skipped: no launchd here"));
  CHECK(has(r.out, "<string>/var/run/com.example.sock</string>"));
  CHECK(has(r.out, "second run: in sync, nothing written or reloaded"));
  CHECK(has(r.out, "plist owner 0:0 mode 644"));
}

TEST_CASE("privileged-port-bind-example: binds 127.0.0.1 below 1024 directly as root, or says why not") {
  RUN_OR_SKIP(r, "privileged-port-bind-example", "947");
  CHECK(r.code == 0);
  CHECK(has(r.out, "[port:tcp:127.0.0.1:947]"));
  if (::geteuid() == 0 && has(r.out, "bound directly")) {
    CHECK(has(r.out, "holding a socket listening on 127.0.0.1:947"));
  } else {
    CHECK(has(r.out, "no socket: the report above says why"));
  }
  ran bad = run_example("privileged-port-bind-example", "8080");
  CHECK(bad.code == 2);
}

TEST_CASE("quick-start (the README's): declined -> fallback links and PATH block; the second run asks nothing") {
  RUN_OR_SKIP(r, "quick-start", "");
  CHECK(r.code == 0);
  CHECK(has(r.out, "answer: declined"));
  CHECK(has(r.out, "changed: /Users/alice/.docker/bin/docker: created -> /Applications/Docker.app/Contents/Resources/bin/docker"));
  CHECK(has(r.out, "changed: /Users/alice/.zshrc: created with the PATH block"));
  CHECK(has(r.out, "skipped: /etc/hosts: needs elevation: prompt declined"));
  CHECK(has(r.out, "second run: 0 prompt(s), ok=1"));
}
