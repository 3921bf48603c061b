// desktop-installer: the seed's whole first run of a desktop app (Docker Desktop for Mac, see
// /work/shared/seed/mac-permission-requirements.md) as one `converge` over hostcfg primitives:
//
//   1. CLI links for every command of the app's bin directory in /usr/local/bin, or - when admin
//      rights are declined, cancelled, timed out or unavailable - in ~/.docker/bin plus a PATH
//      block in the user's shell profile (recipes/cli_links.hpp);
//   2. /var/run/docker.sock -> <home>/.docker/run/docker.sock (dangling while the engine is
//      stopped) and the launchd boot task that re-creates it after each restart;
//   3. hosts entries localhost and kubernetes.docker.internal -> 127.0.0.1;
//   4. the helper daemon plist com.docker.vmnetd (an older helper of the same label is replaced:
//      booted out and its plist kept for uninstall, as the seed's `--user` install does);
//   5. the registry policy cache, root-owned and read-only for the user.
//
// Run `desktop-installer --help` for the options. With no --root it runs in a sandbox (an
// in-memory macOS-like tree) and prints the plan, the prompt, the outcome and the tree's diff.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <hostcfg/backend/command_privilege.hpp>
#include <hostcfg/backend/memory_fs.hpp>
#include <hostcfg/backend/overlay_fs.hpp>
#include <hostcfg/backend/posix_fs.hpp>
#include <hostcfg/backend/rooted_fs.hpp>
#include <hostcfg/backend/service_manager.hpp>
#include <hostcfg/converge.hpp>
#include <hostcfg/format/shell_dialect.hpp>
#include <hostcfg/helper/one_shot.hpp>
#include <hostcfg/primitives/hosts_entry.hpp>
#include <hostcfg/primitives/launchd_plist.hpp>
#include <hostcfg/primitives/protected_file.hpp>
#include <hostcfg/primitives/shell_profile_path_edit.hpp>
#include <hostcfg/primitives/symlink_set.hpp>
#include <hostcfg/recipes/cli_links.hpp>

#if __has_include(<nlohmann/json.hpp>)
#include <hostcfg/report_json.hpp>
#define DESKTOP_INSTALLER_JSON 1
#endif

using namespace hostcfg;

namespace {

const char* const app_id = "com.docker.desktop";
const char* const default_bin_dir = "/Applications/Docker.app/Contents/Resources/bin";
const char* const policy_path = "/Library/Application Support/com.docker.docker/registry-access-management.json";
const char* const policy_content =
    "{\n  \"configurationFileVersion\": 1,\n  \"enforced\": false,\n  \"allowedRegistries\": [\"docker.io\"]\n}\n";

constexpr int exit_done = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;
constexpr int exit_user_must_act = 3;

const char* const usage_text =
    "usage: desktop-installer [--sandbox | --root DIR] [options]\n"
    "\n"
    "Makes the host changes Docker Desktop needs on its first run, idempotently: CLI links in\n"
    "/usr/local/bin (or ~/.docker/bin and a PATH edit), /var/run/docker.sock and its launchd boot\n"
    "task, hosts entries for localhost and kubernetes.docker.internal, the vmnetd helper daemon\n"
    "plist, and the registry policy cache.\n"
    "\n"
    "Where:\n"
    "  --sandbox            an in-memory macOS-like tree; prints the plan, the prompt it would\n"
    "                       show, the outcome and the tree's diff (the default)\n"
    "  --root DIR           everything under DIR on the real disk; missing directories are\n"
    "                       created; `--root /` is the real system. launchd jobs are written but\n"
    "                       not loaded unless DIR is / on macOS (\"skipped: no launchd here\")\n"
    "For whom (paths are inside the root; flags win over the user database):\n"
    "  --user NAME          the user to install for (default: alice 501:20 in the sandbox, else\n"
    "                       the user running this program)\n"
    "  --uid N, --gid N     their numeric ids\n"
    "  --home DIR           their home directory\n"
    "  --shell PATH         their login shell (decides which profile gets the PATH edit)\n"
    "What:\n"
    "  --bin-dir DIR        the app's CLI binaries (default " "/Applications/Docker.app/Contents/Resources/bin);\n"
    "                       link targets are written as given; missing or empty: exit 1\n"
    "  --privilege ANSWER   how the admin prompt is answered: grant, decline, cancel, timeout,\n"
    "                       or ask (the real backend: sudo, or in-process when root). Default:\n"
    "                       grant with --sandbox, ask otherwise\n"
    "  --reprompt           ask again although a decision is recorded\n"
    "  --dry-run            a real apply against an in-memory overlay: nothing on disk changes,\n"
    "                       not even the record; exits as the real run would\n"
    "  --json               the report on stdout as versioned JSON (schema hostcfg.report)\n"
    "  --uninstall          revert everything recorded, records included (as a user: the\n"
    "                       system part through one admin prompt; declined, the command an\n"
    "                       administrator runs to finish is printed)\n"
    "  --state FILE         the user's record (default <home>/.local/state/hostcfg/" "com.docker.desktop.record);\n"
    "                       privileged items always go to the root-owned record\n"
    "  --help               this text\n"
    "\n"
    "Exit codes: 0 done, nothing left for the user; 1 failed (the message names the step and the\n"
    "path); 2 bad usage; 3 done, but the user must act or the result is not the ideal one\n"
    "(fallback in use, shells to reload, a conflict left alone) - the same on every re-run.\n"
    "Progress is printed step by step on a terminal; otherwise the program is quiet.\n";

/// How the admin prompt is answered.
enum class privilege_mode { grant, decline, cancel, timeout, ask };

/// The parsed command line.
struct options {
  bool sandbox = false;
  std::optional<std::string> root;
  std::optional<std::string> user_name;
  std::optional<uid_type> uid;
  std::optional<gid_type> gid;
  std::optional<std::string> home;
  std::optional<std::string> shell;
  std::string bin_dir = default_bin_dir;
  std::optional<privilege_mode> privilege;
  bool reprompt = false;
  bool dry_run = false;
  bool json = false;
  bool uninstall = false;
  std::optional<std::string> state;
  std::vector<std::string> words;  ///< the command line as given (argv[0] first)
};

int usage_error(const std::string& option, const std::string& why) {
  std::fprintf(stderr, "desktop-installer: %s: %s\n(see desktop-installer --help)\n", option.c_str(), why.c_str());
  return exit_usage;
}

bool parse_id(const std::string& text, unsigned long& out) {
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos) return false;
  out = std::stoul(text);
  return out <= 0xFFFFFFFEul;
}

/// Parses argv into `out`; returns an exit code when the program must stop (usage, help).
std::optional<int> parse_options(int argc, char** argv, options& out) {
  for (int i = 0; i < argc; ++i) out.words.emplace_back(argv[i]);
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](std::string& v) {
      if (i + 1 >= argc) return false;
      v = argv[++i];
      return true;
    };
    std::string v;
    auto path_value = [&](std::optional<std::string>& into) -> std::optional<int> {
      if (!value(v)) return usage_error(arg, "needs a value");
      auto normal = normalize_path(v);
      if (v.empty() || v[0] != '/' || !normal) return usage_error(arg, "needs an absolute path, got \"" + v + "\"");
      into = *normal;
      return std::nullopt;
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage_text, stdout);
      return exit_done;
    } else if (arg == "--sandbox") {
      out.sandbox = true;
    } else if (arg == "--root") {
      if (auto stop = path_value(out.root)) return stop;
    } else if (arg == "--user") {
      if (!value(v) || v.empty()) return usage_error(arg, "needs a user name");
      out.user_name = v;
    } else if (arg == "--uid" || arg == "--gid") {
      unsigned long n = 0;
      if (!value(v) || !parse_id(v, n)) return usage_error(arg, "needs a number, got \"" + v + "\"");
      if (arg == "--uid") out.uid = static_cast<uid_type>(n);
      else out.gid = static_cast<gid_type>(n);
    } else if (arg == "--home") {
      if (auto stop = path_value(out.home)) return stop;
    } else if (arg == "--shell") {
      if (auto stop = path_value(out.shell)) return stop;
    } else if (arg == "--bin-dir") {
      std::optional<std::string> dir;
      if (auto stop = path_value(dir)) return stop;
      out.bin_dir = *dir;
    } else if (arg == "--state") {
      if (auto stop = path_value(out.state)) return stop;
    } else if (arg == "--privilege") {
      if (!value(v)) return usage_error(arg, "needs grant, decline, cancel, timeout or ask");
      if (v == "grant") out.privilege = privilege_mode::grant;
      else if (v == "decline") out.privilege = privilege_mode::decline;
      else if (v == "cancel") out.privilege = privilege_mode::cancel;
      else if (v == "timeout") out.privilege = privilege_mode::timeout;
      else if (v == "ask") out.privilege = privilege_mode::ask;
      else return usage_error(arg, "needs grant, decline, cancel, timeout or ask, got \"" + v + "\"");
    } else if (arg == "--reprompt") {
      out.reprompt = true;
    } else if (arg == "--dry-run") {
      out.dry_run = true;
    } else if (arg == "--json") {
      out.json = true;
    } else if (arg == "--uninstall") {
      out.uninstall = true;
    } else {
      return usage_error(arg, "unknown option");
    }
  }
  if (out.sandbox && out.root) return usage_error("--root", "cannot be combined with --sandbox");
  if (!out.root) out.sandbox = true;
#ifndef DESKTOP_INSTALLER_JSON
  if (out.json) return usage_error("--json", "this build has no JSON support (nlohmann_json was not found)");
#endif
  return std::nullopt;
}

/// Fills the user's supplementary groups from the user database (just the primary group when
/// the name is unknown there).
std::vector<gid_type> groups_of(const std::string& name, gid_type gid) {
  std::vector<gid_type> out;
  int count = 64;
#ifdef __APPLE__
  std::vector<int> raw(static_cast<std::size_t>(count));
  if (::getgrouplist(name.c_str(), static_cast<int>(gid), raw.data(), &count) >= 0)
    for (int i = 0; i < count; ++i) out.push_back(static_cast<gid_type>(raw[static_cast<std::size_t>(i)]));
#else
  std::vector<gid_t> raw(static_cast<std::size_t>(count));
  if (!name.empty() && ::getgrouplist(name.c_str(), gid, raw.data(), &count) >= 0)
    for (int i = 0; i < count; ++i) out.push_back(raw[static_cast<std::size_t>(i)]);
#endif
  if (out.empty()) out.push_back(gid);
  return out;
}

/// Whom we install for: flags first, then the user database (the running user by default), or
/// the sandbox's alice. ZDOTDIR / XDG_CONFIG_HOME come from the environment only when this
/// process is not root (a root process must not trust its caller's environment).
result<user_identity> resolve_user(const options& o) {
  user_identity user;
  if (o.sandbox) {
    user = user_identity{501, 20, {20, 12, 61, 79, 80, 81, 98, 701}, "alice", "/Users/alice", "/bin/zsh",
                         std::nullopt, std::nullopt};
  } else {
    struct passwd pw;
    struct passwd* found = nullptr;
    std::vector<char> buffer(16384);
    if (o.user_name)
      ::getpwnam_r(o.user_name->c_str(), &pw, buffer.data(), buffer.size(), &found);
    else
      ::getpwuid_r(o.uid ? *o.uid : ::getuid(), &pw, buffer.data(), buffer.size(), &found);
    if (found) {
      user.uid = pw.pw_uid;
      user.gid = pw.pw_gid;
      user.name = pw.pw_name;
      user.home = pw.pw_dir;
      user.shell = pw.pw_shell;
    } else if (o.user_name && (!o.uid || !o.home)) {
      return fail(errc::invalid_input, "look up user", *o.user_name, "not in the user database",
                  "give --uid, --gid and --home for a user this machine does not know");
    } else {
      user.uid = o.uid ? *o.uid : ::getuid();
      user.gid = o.gid ? *o.gid : ::getgid();
      user.name = "uid" + std::to_string(user.uid);
      user.shell = "/bin/sh";
    }
  }
  if (o.user_name) user.name = *o.user_name;
  if (o.uid) user.uid = *o.uid;
  if (o.gid) user.gid = *o.gid;
  if (o.home) user.home = *o.home;
  if (o.shell) user.shell = *o.shell;
  if (!o.sandbox) user.groups = groups_of(user.name, user.gid);
  else if (o.gid) user.groups = {user.gid};
  if (user.home.empty() || !is_normal_path(user.home))
    return fail(errc::invalid_input, "resolve user", user.name, "no usable home directory", "give --home DIR");
  if (!o.sandbox && ::geteuid() != 0) {
    if (const char* z = std::getenv("ZDOTDIR"); z && *z == '/') user.zdotdir = std::string(z);
    if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x == '/') user.xdg_config_home = std::string(x);
  }
  return user;
}

/// The program's privilege backend: a scripted answer (sandbox, tests, and "grant" meaning
/// "act as root in this process", which fails honestly with EACCES when the process is not
/// root), root acting for a user (ask, as root), the real elevation tool (ask, not root), or a
/// question on the terminal (ask, in the sandbox).
class InstallerPrivilege {
 public:
  enum class kind { scripted, root_for, command, terminal };

  InstallerPrivilege(user_identity user, kind k, answer scripted, std::optional<elevation_command> cmd)
      : user_(std::move(user)), kind_(k), scripted_(scripted) {
    if (cmd) command_.emplace(user_, *cmd);
  }

  const user_identity& user() const { return user_; }
  actor elevated_actor() const { return actor::root(); }
  bool elevates_in_process() const { return kind_ != kind::command || ::geteuid() == 0; }
  answer ask(const elevation_request& request) {
    ++prompts_;
    switch (kind_) {
      case kind::scripted: return scripted_;
      case kind::root_for: return answer::granted;
      case kind::command: return command_->ask(request);
      case kind::terminal: return ask_terminal(request);
    }
    return answer::unavailable;
  }
  /// How many prompts were shown (or scripted).
  std::size_t prompts() const { return prompts_; }

 protected:
  /// Hands the privileged part to the elevated runner (this program's --one-shot mode).
  result<elevated_outcome> hand_off(const elevation_request& request, const record& payload) {
    ++prompts_;
    if (!command_) return fail(errc::unavailable, "elevate", {}, "no elevation tool configured");
    return command_->run_elevated(request, payload);
  }

 private:
  static answer ask_terminal(const elevation_request& request) {
    int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0) return answer::unavailable;
    std::string text = request.text() + "\nAllow? [y/N] ";
    if (::write(fd, text.data(), text.size()) < 0) {
      ::close(fd);
      return answer::unavailable;
    }
    char reply[16] = {};
    ssize_t n = ::read(fd, reply, sizeof reply - 1);
    ::close(fd);
    if (n <= 0) return answer::cancelled;
    return (reply[0] == 'y' || reply[0] == 'Y') ? answer::granted : answer::declined;
  }

  user_identity user_;
  kind kind_;
  answer scripted_;
  std::optional<CommandPrivilege> command_;
  std::size_t prompts_ = 0;
};

/// InstallerPrivilege plus the hand-off to an elevated runner, which makes `converge` send the
/// privileged part of the plan to `desktop-installer --one-shot` through sudo (or the macOS
/// dialog). A template so that it is only instantiated when every step can be handed off.
template <bool Enabled>
class HandoffPrivilege : public InstallerPrivilege {
 public:
  explicit HandoffPrivilege(InstallerPrivilege base) : InstallerPrivilege(std::move(base)) {}
  /// See elevation.hpp.
  result<elevated_outcome> run_elevated(const elevation_request& request, const record& payload) {
    return hand_off(request, payload);
  }
};

// Whether a step's runner can add its desired state to a hand-off payload. When a hostcfg build's
// CLI-links runner (symlink_set.hpp) cannot, a non-root "ask" answers through
// CommandPrivilege::ask instead (unavailable when not root), so the user gets the fallback.
template <class R, class = void>
struct can_hand_off : std::false_type {};
template <class R>
struct can_hand_off<R, std::void_t<decltype(std::declval<const R&>().add_desired_state(std::declval<record&>()))>>
    : std::true_type {};
constexpr bool cli_links_can_hand_off = can_hand_off<detail::runner<cli_links_step<ShellProfilePathEdit>>>::value;

/// The macOS-like tree the sandbox starts from.
MemoryFs sandbox_tree(const user_identity& user, const std::string& bin_dir, bool seed_bin_dir) {
  MemoryFs fs;
  const gid_type wheel = 0, admin = 80;
  for (const char* d : {"/bin", "/etc", "/usr", "/usr/local", "/usr/local/bin", "/var", "/Library",
                        "/Library/LaunchDaemons", "/Library/PrivilegedHelperTools", "/Library/Application Support",
                        "/Users"})
    fs.add_dir(d, 0755, 0, wheel);
  // macOS has /var/run root:daemon 0775; hostcfg refuses to write as root in a directory a group
  // other than wheel/admin can change, so the sandbox shows the tree as the link needs it.
  fs.add_dir("/var/run", 0755, 0, wheel);
  fs.add_dir("/Applications", 0775, 0, admin);
  fs.add_file("/bin/ln", "\x7f" "ELF (stand-in for /bin/ln)\n", 0755, 0, wheel);
  fs.add_file("/etc/hosts",
              "##\n# Host Database\n#\n# localhost is used to configure the loopback interface\n"
              "# when the system is booting.  Do not change this entry.\n##\n127.0.0.1\tlocalhost\n"
              "255.255.255.255\tbroadcasthost\n::1             localhost\n",
              0644, 0, wheel);
  if (seed_bin_dir)
    for (const char* cmd : {"com.docker.cli", "docker", "docker-compose", "docker-credential-desktop",
                            "docker-credential-osxkeychain", "hub-tool", "kubectl"})
      fs.add_file(join_path(bin_dir, cmd), std::string("#!/bin/sh\n# ") + cmd + "\n", 0755, 0, admin);
  fs.add_file("/Library/PrivilegedHelperTools/com.docker.vmnetd", "\x7f" "ELF vmnetd\n", 0544, 0, wheel);
  // An older helper of the same label, from a previous Docker Desktop: replaced, kept for uninstall.
  fs.add_file("/Library/LaunchDaemons/com.docker.vmnetd.plist",
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"
              "<plist version=\"1.0\">\n<dict>\n\t<key>Label</key>\n\t<string>com.docker.vmnetd</string>\n"
              "\t<key>Program</key>\n\t<string>/Library/PrivilegedHelperTools/com.docker.vmnetd</string>\n"
              "\t<key>KeepAlive</key>\n\t<true/>\n</dict>\n</plist>\n",
              0644, 0, wheel);
  fs.add_dir(user.home, 0750, user.uid, user.gid);
  fs.add_file(join_path(user.home, ".zshrc"), "export EDITOR=vim\n", 0644, user.uid, user.gid);
  return fs;
}

/// Prints progress lines as events happen (on a terminal only).
template <class Ctx>
void attach_progress(Ctx& ctx, bool on) {
  if (!on) return;
  ctx.on_event = [](const std::string& step, const event& e) {
    std::fprintf(stdout, "  %-12s %s: %s%s%s\n", event_kind_name(e.kind), step.c_str(), e.path.c_str(),
                 e.message.empty() ? "" : ": ", e.message.c_str());
    std::fflush(stdout);
  };
}

/// True when the result is not the ideal one or the user must act: a fallback in use, something
/// left alone (conflict, still out of sync), a privileged change not made, shells to reload.
/// Not `report.needs_user_action()` alone: that also counts informational notes ("links in
/// place") of an ideal first run, which would make the first run and its re-run exit differently.
bool user_must_act(const converge_report& report) {
  if (!report.out_of_sync.empty()) return true;
  for (const auto& s : report.steps) {
    if (s.reverted) continue;
    if (s.is_fallback) return true;
    if (s.elevation && !s.elevation->elevated && s.planned.needs_elevation()) return true;
  }
  return false;
}

/// The exit code for a finished run (see --help).
int exit_code_of(const converge_report& report) {
  if (!report.ok()) return exit_failed;
  if (report.uninstall) return report.needs_user_action() ? exit_user_must_act : exit_done;
  return user_must_act(report) ? exit_user_must_act : exit_done;
}

/// Failures on stderr, each naming its step and path; what the user must do next as well.
void print_problems(const converge_report& report, bool with_notes = true) {
  for (const auto& s : report.steps) {
    if (s.failure) std::fprintf(stderr, "desktop-installer: step %s failed: %s\n", s.id.c_str(), s.failure->message().c_str());
    for (const auto& e : s.applied.events)
      if (e.kind == event_kind::failed)
        std::fprintf(stderr, "desktop-installer: step %s failed: %s: %s\n", s.id.c_str(), e.path.c_str(),
                     e.message.c_str());
  }
  if (!with_notes) return;
  for (const auto& s : report.steps)
    if (!s.reverted && !s.is_fallback && s.elevation && !s.elevation->elevated && s.planned.needs_elevation())
      std::fprintf(stderr, "desktop-installer: not done: %s: %s\n", s.id.c_str(), s.elevation->refusal().c_str());
  for (const auto& s : report.steps)
    if (s.is_fallback && !s.reverted)
      std::fprintf(stderr, "desktop-installer: fallback in use for %s: %s\n", s.fallback_for.c_str(), s.id.c_str());
  for (const auto& id : report.out_of_sync)
    for (const auto& s : report.steps) {
      if (s.id != id) continue;
      const probe_report& seen = s.after ? *s.after : s.before;
      for (const auto& item : seen.items)
        if (item.state != item_state::matches)
          std::fprintf(stderr, "desktop-installer: step %s left alone: %s: %s%s%s\n", id.c_str(), item.path.c_str(),
                       item_state_name(item.state), item.detail.empty() ? "" : ": ", item.detail.c_str());
    }
  if (exit_code_of(report) != exit_done)
    for (const auto& n : report.notes) std::fprintf(stderr, "desktop-installer: next: %s\n", n.c_str());
}

/// The outcome, compactly: per step, what happened to each item, and the notes.
std::string outcome_text(const converge_report& report) {
  std::string out;
  for (const auto& s : report.steps) {
    out += "[" + s.id + "]";
    if (s.is_fallback) out += " (fallback for " + s.fallback_for + ")";
    if (s.failure) {
      out += " failed: " + s.failure->message() + "\n";
      continue;
    }
    if (s.reverted && !report.uninstall) out += " retired";
    else if (s.applied.events.empty()) out += " in sync";
    out += "\n";
    for (const auto& e : s.applied.events)
      out += "  " + std::string(event_kind_name(e.kind)) + ": " + e.path + (e.message.empty() ? "" : ": " + e.message) +
             (e.elevated ? " (as admin)" : "") + "\n";
  }
  for (const auto& id : report.out_of_sync) out += "still out of sync: " + id + "\n";
  for (const auto& n : report.notes) out += "next: " + n + "\n";
  return out;
}

/// The sandbox's text: plan, prompt, outcome, diff.
std::string sandbox_text(const converge_report& report, const std::vector<std::string>& diff) {
  std::string out = report.uninstall ? "== plan (uninstall) ==\n" : "== plan ==\n";
  for (const auto& s : report.steps) {
    if (s.reverted && !report.uninstall) continue;
    out += "[" + s.id + "]" + (s.is_fallback ? " (fallback for " + s.fallback_for + ")" : std::string()) +
           (s.planned.empty() ? " nothing to do\n" : "\n" + s.planned.render());
  }
  out += "\n== prompt ==\n";
  if (report.prompt) {
    out += report.prompt->text() + "\n  answer: " +
           (report.prompt_answer ? answer_name(*report.prompt_answer) : "none") + "\n";
  } else {
    out += "(none: nothing needs admin rights, or a recorded decision stands)\n";
  }
  out += "\n== outcome ==\n" + outcome_text(report);
  out += "\n== changes to the tree ==\n";
  for (const auto& line : diff) out += line + "\n";
  if (diff.empty()) out += "(none)\n";
  return out;
}

/// The command an administrator runs to finish an uninstall this user's run could not: this
/// program with the same options, through sudo, for this user (`--uid`: as root it would
/// otherwise uninstall for root), answering the prompt by being root.
std::string admin_uninstall_command(const options& o, const user_identity& user) {
  std::string out = "sudo";
  bool has_uid = false;
  for (std::size_t i = 0; i < o.words.size(); ++i) {
    const std::string& w = o.words[i];
    if (w == "--privilege" && i + 1 < o.words.size()) {
      ++i;  // as root, "ask" is the answer: the default
      continue;
    }
    has_uid = has_uid || w == "--uid";
    auto self = i == 0 ? helper::own_binary_path() : result<std::string>(w);
    const std::string& word = self ? *self : w;
    // Quoted only when the shell would read it otherwise: the usual command stays plain to read.
    bool plain = !word.empty() && word.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                         "0123456789_-./=:,+@%") == std::string::npos;
    out += " " + (plain ? word : quote_literal(shell_dialect::posix, word));
  }
  if (!has_uid) out += " --uid " + std::to_string(user.uid);
  return out;
}

/// True when an uninstall skipped a privileged item for want of admin rights.
bool left_for_admin(const converge_report& report) {
  if (!report.uninstall) return false;
  for (const auto& s : report.steps)
    for (const auto& e : s.applied.events)
      if (e.kind == event_kind::skipped && s.elevation && e.message == s.elevation->refusal()) return true;
  return false;
}

/// One run over any filesystem backend: compose the steps, converge or uninstall, report.
template <class Fs, class Priv>
int run(Fs& fs, Priv& priv, const options& o, bool progress, std::string& text_out,
        std::optional<converge_report>& report_out) {
  const user_identity& user = priv.user();
  context ctx(fs, priv, app_id);
  ctx.policy.reprompt = o.reprompt;
  if (o.sandbox) ctx.system_record.path = "/Library/Application Support/hostcfg/" + std::string(app_id) + ".record";
  if (o.state) ctx.user_record.path = *o.state;
  if (o.dry_run) {
    ctx.policy.dry_run = true;
    ctx.policy.dry_run_answer = o.privilege == privilege_mode::decline   ? answer::declined
                                : o.privilege == privilege_mode::cancel  ? answer::cancelled
                                : o.privilege == privilege_mode::timeout ? answer::timed_out
                                                                         : answer::granted;
  }
  // launchd is real only for the real system on macOS; everything else writes the jobs only.
  FileOnlyServiceManager file_only;
  any_service_manager file_only_sm(file_only);
#ifdef __APPLE__
  LaunchctlServiceManager launchctl;
  any_service_manager launchctl_sm(launchctl);
  if (!o.sandbox && o.root && *o.root == "/" && !o.dry_run) ctx.attach(launchctl_sm);
  else ctx.attach(file_only_sm);
#else
  ctx.attach(file_only_sm);
#endif
  attach_progress(ctx, progress);

  const std::string user_bin = join_path(user.home, ".docker/bin");
  auto cli = cli_links(o.bin_dir, "/usr/local/bin", user_bin, ShellProfilePathEdit{user_bin});
  SymlinkSet socket_link;
  socket_link.links = {link_spec{"/var/run/docker.sock", join_path(user.home, ".docker/run/docker.sock")}};
  socket_link.allow_dangling = true;  // the engine makes the socket when it starts
  LaunchdPlist socket_task{docker_socket_link_job(user.home)};
  HostsEntry hosts{"127.0.0.1", {"localhost", "kubernetes.docker.internal"}};
  LaunchdPlist helper{docker_vmnetd_job()};
  helper.take_over = true;  // an older com.docker.vmnetd is replaced (and restored by uninstall)
  ProtectedFile policy{policy_path, policy_content};

  if (!o.uninstall) {
    // Checked here too so the message is about the option, not a link.
    auto names = fs.list_dir(ctx.user_actor(), o.bin_dir);
    if (!names && names.error().is_errno(EACCES)) names = fs.list_dir(actor::root(), o.bin_dir);
    bool any = false;
    if (names)
      for (const auto& n : *names) any = any || (!n.empty() && n[0] != '.');
    if (!names || !any) {
      std::fprintf(stderr, "desktop-installer: --bin-dir %s: %s\n", o.bin_dir.c_str(),
                   !names ? names.error().message().c_str() : "no commands to link");
      return exit_failed;
    }
  }
  auto report = o.uninstall ? uninstall(ctx, cli, socket_link, socket_task, hosts, helper, policy)
                            : converge(ctx, cli, socket_link, socket_task, hosts, helper, policy);
  if (!report) {
    std::fprintf(stderr, "desktop-installer: %s\n", report.error().message().c_str());
    return exit_failed;
  }
  // The library's note names what stays; the exact command to finish is this program's to give.
  if (o.uninstall && !o.sandbox && !o.dry_run && left_for_admin(*report))
    report->notes.push_back("to remove what stays, run as an administrator: " + admin_uninstall_command(o, user));
  text_out = outcome_text(*report);
  report_out = *report;
  return exit_code_of(*report);
}

/// The path of this program, for the elevated runner (`--one-shot`).
std::optional<std::string> self_path() {
  auto own = helper::own_binary_path();
  if (!own) return std::nullopt;
  return *own;
}

void emit_result(const options& o, const converge_report& report, const std::string& text, bool print_text) {
#ifdef DESKTOP_INSTALLER_JSON
  if (o.json) {
    std::string json = report_to_json_text(report);
    std::fwrite(json.data(), 1, json.size(), stdout);
    std::fputc('\n', stdout);
    return;
  }
#else
  (void)o;
  (void)report;
#endif
  if (print_text) std::fwrite(text.data(), 1, text.size(), stdout);
}

template <class Priv>
int run_all(Priv& priv, const options& o);
template <bool Enabled>
int run_with_handoff(InstallerPrivilege& base, const options& o);

}  // namespace

namespace {
int installer_main(int argc, char** argv);
}  // namespace

int main(int argc, char** argv) {
  // hostcfg reports errors as values; what can still throw is the standard library running out
  // of memory (std::bad_alloc) - say so instead of terminating without a word.
  try {
    return installer_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "desktop-installer: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "desktop-installer: unexpected failure\n");
  }
  return exit_failed;
}

namespace {

int installer_main(int argc, char** argv) {
  // The elevated runner: started by sudo / pkexec / the macOS dialog with the privileged part of
  // the plan on stdin. It runs only the kinds listed here.
  if (helper::is_one_shot(argc, argv))
    return helper::run_one_shot<ManagedFile, HostsEntry, SymlinkSet, LaunchdPlist, ProtectedFile>(
        0, 1, 2, helper::parse_one_shot_options(argc, argv));

  options o;
  if (auto stop = parse_options(argc, argv, o)) return *stop;
  auto user = resolve_user(o);
  if (!user) {
    std::fprintf(stderr, "desktop-installer: %s\n", user.error().message().c_str());
    return exit_failed;
  }
  privilege_mode mode = o.privilege ? *o.privilege : (o.sandbox ? privilege_mode::grant : privilege_mode::ask);
  InstallerPrivilege::kind kind = InstallerPrivilege::kind::scripted;
  answer scripted = answer::granted;
  std::optional<elevation_command> cmd;
  switch (mode) {
    case privilege_mode::grant: scripted = answer::granted; break;
    case privilege_mode::decline: scripted = answer::declined; break;
    case privilege_mode::cancel: scripted = answer::cancelled; break;
    case privilege_mode::timeout: scripted = answer::timed_out; break;
    case privilege_mode::ask:
      if (o.sandbox) {
        kind = InstallerPrivilege::kind::terminal;
      } else if (::geteuid() == 0) {
        kind = InstallerPrivilege::kind::root_for;
      } else {
        kind = InstallerPrivilege::kind::command;
        elevation_command c;
#ifdef __APPLE__
        c.tool = elevation_tool::osascript;
        c.tool_path = "/usr/bin/osascript";
#endif
        auto self = self_path();
        c.runner_path = self ? *self : std::string(argv[0]);
        c.runner_args = {"--one-shot", "--uid", std::to_string(user->uid)};
        if (o.root && *o.root != "/") {
          c.runner_args.push_back("--root");
          c.runner_args.push_back(*o.root);
        }
        if (const char* askpass = std::getenv("SUDO_ASKPASS"); askpass && *askpass == '/') c.askpass = askpass;
        cmd = c;
      }
      break;
  }
  InstallerPrivilege priv(*user, kind, scripted, cmd);
  if (kind == InstallerPrivilege::kind::command) return run_with_handoff<cli_links_can_hand_off>(priv, o);
  return run_all(priv, o);
}

template <class Priv>
int run_all(Priv& priv, const options& o) {
  const bool terminal = ::isatty(1) == 1 && !o.json;
  std::string text;
  std::optional<converge_report> report;
  int code = exit_failed;

  if (o.sandbox) {
    MemoryFs fs = sandbox_tree(priv.user(), o.bin_dir, o.bin_dir == default_bin_dir);
    auto before = fs.take_snapshot();
    std::vector<std::string> diff;
    if (o.dry_run) {
      OverlayFs<MemoryFs> overlay(fs);
      code = run(overlay, priv, o, false, text, report);
      diff = overlay.changes();
    } else {
      code = run(fs, priv, o, false, text, report);
      diff = MemoryFs::diff(before, fs.take_snapshot());
    }
    if (report) {
      if (o.json) emit_result(o, *report, text, false);
      else std::fputs(sandbox_text(*report, diff).c_str(), stdout);
      print_problems(*report, o.json);  // the sandbox's text already lists the rest
    }
    return code;
  }

  const std::string root = *o.root;
  struct stat root_st;
  if (!o.dry_run && root != "/" && ::stat(root.c_str(), &root_st) != 0) {
    // The root itself is made when missing (root-owned 0755 when we are root).
    std::string partial;
    for (const auto& part : detail::split_components(root)) {
      partial += "/" + part;
      if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
        std::fprintf(stderr, "desktop-installer: --root %s: mkdir %s: %s\n", root.c_str(), partial.c_str(),
                     std::strerror(errno));
        return exit_failed;
      }
    }
  }
  PosixFs posix;
  RootedFs<PosixFs> rooted(posix, root);
  if (o.dry_run) {
    OverlayFs<RootedFs<PosixFs>> overlay(rooted);
    code = run(overlay, priv, o, terminal, text, report);
    if (report && !o.json && terminal) {
      text += "\n== would change ==\n";
      for (const auto& line : overlay.changes()) text += line + "\n";
    }
  } else {
    code = run(rooted, priv, o, terminal, text, report);
  }
  if (report) {
    emit_result(o, *report, text, terminal);
    print_problems(*report);
  }
  return code;
}

template <bool Enabled>
int run_with_handoff(InstallerPrivilege& base, const options& o) {
  if constexpr (Enabled) {
    HandoffPrivilege<Enabled> priv(base);
    return run_all(priv, o);
  } else {
    return run_all(base, o);
  }
}

}  // namespace
