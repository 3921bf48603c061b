#pragma once
/// @file
/// Real elevation: a privilege backend that asks through `sudo` (a terminal, or `-A` with an
/// askpass program when there is none), `pkexec` (polkit's dialog) or, on macOS, the
/// administrator dialog (`osascript ... with administrator privileges`), and runs the elevated
/// runner (the helper program's one-shot mode) with the privileged part of the plan on its
/// standard input. The runner's start IS the prompt: one prompt per converge, whose reason lists
/// every change (elevation.hpp).
///
/// The command lines and the AppleScript text are built by pure functions (`elevation_argv`),
/// tested on Linux, injection attempts included. How a prompt ended is read from the tool's exit
/// status and message: granted (the runner answered), declined (wrong password three times /
/// not authorized), cancelled (askpass or dialog dismissed), timed out (our deadline: the process
/// group is killed), unavailable (tool missing, user not allowed to elevate).

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hostcfg/backend/unique_fd.hpp"
#include "hostcfg/elevation.hpp"
#include "hostcfg/privilege.hpp"
#include "hostcfg/record.hpp"

extern char** environ;

HOSTCFG_BEGIN_NAMESPACE

/// The tool that asks for the password.
enum class elevation_tool { sudo, pkexec, osascript };

/// How to start the elevated runner.
struct elevation_command {
  elevation_tool tool = elevation_tool::sudo;
  std::string tool_path = "/usr/bin/sudo";    ///< absolute
  std::string runner_path;                   ///< absolute path of the runner binary (root-owned)
  std::vector<std::string> runner_args = {"--one-shot"};
  std::optional<std::string> askpass;        ///< sudo -A: the askpass program (absolute)
  int timeout_ms = 120000;                   ///< how long the user has to answer
  std::size_t max_reply_bytes = 4u << 20;
};

/// Quotes a word for a POSIX shell: 'it'\''s'.
inline std::string posix_single_quote(std::string_view word) {
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  out += "'";
  return out;
}

/// An AppleScript string literal: backslash and double quote escaped, newline/CR/tab as escapes.
inline std::string applescript_string(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: out += c;
    }
  }
  out += "\"";
  return out;
}

namespace detail {

/// write(2) to the runner's stdin without SIGPIPE ending this process when the runner is already
/// gone (sudo exits at once when its askpass gives up): EPIPE is returned instead. Linux: SIGPIPE
/// is blocked around the call and a SIGPIPE the call raised is consumed (never one that was already
/// pending); macOS: the pipe carries F_SETNOSIGPIPE.
inline ssize_t write_without_sigpipe(int fd, const void* buf, std::size_t size) {
#if defined(__APPLE__)
  (void)::fcntl(fd, F_SETNOSIGPIPE, 1);
  return ::write(fd, buf, size);
#else
  sigset_t pipe_only, saved, pending;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  sigemptyset(&pending);
  (void)sigpending(&pending);
  const bool already_pending = sigismember(&pending, SIGPIPE) == 1;
  (void)pthread_sigmask(SIG_BLOCK, &pipe_only, &saved);
  ssize_t w = ::write(fd, buf, size);
  const int err = errno;
  if (w < 0 && err == EPIPE && !already_pending) {
    const timespec now{0, 0};
    while (sigtimedwait(&pipe_only, nullptr, &now) < 0 && errno == EINTR) {
    }
  }
  (void)pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  errno = err;
  return w;
#endif
}

inline result<void> check_word(std::string_view what, std::string_view word, bool absolute) {
  if (absolute && (word.empty() || word.front() != '/'))
    return fail(errc::invalid_input, "build elevation command", std::string(word), std::string(what) + " must be an absolute path");
  for (unsigned char c : word)
    if (c < 0x20 || c == 0x7f)
      return fail(errc::invalid_input, "build elevation command", std::string(word),
                  std::string(what) + " contains a control character (newline, NUL...)");
  return {};
}
/// sudo expands %u %h %p %H %U in its prompt: keep them literal.
inline std::string sudo_prompt_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '%') out += "%%";
    else if (c == '\n' || c == '\r') out += ' ';
    else out += c;
  }
  return out;
}
}  // namespace detail

/// The argument vector that starts the runner through the configured tool (argv[0] = tool path).
/// The request's reason becomes the prompt text where the tool can show one (sudo's one-line
/// prompt, the macOS dialog); every word is validated (no control characters) and quoted for the
/// layer that will read it.
inline result<std::vector<std::string>> elevation_argv(const elevation_command& cmd, const elevation_request& request) {
  if (auto ok = detail::check_word("tool path", cmd.tool_path, true); !ok) return tl::unexpected(ok.error());
  if (auto ok = detail::check_word("runner path", cmd.runner_path, true); !ok) return tl::unexpected(ok.error());
  for (const auto& a : cmd.runner_args)
    if (auto ok = detail::check_word("runner argument", a, false); !ok) return tl::unexpected(ok.error());
  std::vector<std::string> argv{cmd.tool_path};
  switch (cmd.tool) {
    case elevation_tool::sudo: {
      if (cmd.askpass) {
        if (auto ok = detail::check_word("askpass path", *cmd.askpass, true); !ok) return tl::unexpected(ok.error());
        argv.push_back("-A");
      }
      argv.push_back("-p");
      argv.push_back(detail::sudo_prompt_escape("[" + request.app_id + "] " + request.reason) + ". Password for %p: ");
      argv.push_back("--");
      argv.push_back(cmd.runner_path);
      argv.insert(argv.end(), cmd.runner_args.begin(), cmd.runner_args.end());
      break;
    }
    case elevation_tool::pkexec:
      argv.push_back(cmd.runner_path);
      argv.insert(argv.end(), cmd.runner_args.begin(), cmd.runner_args.end());
      break;
    case elevation_tool::osascript: {
      std::string shell = posix_single_quote(cmd.runner_path);
      for (const auto& a : cmd.runner_args) shell += " " + posix_single_quote(a);
      std::string prompt = request.reason;
      for (const auto& c : request.changes) prompt += "\n- " + c;
      argv.push_back("-e");
      argv.push_back("do shell script " + applescript_string(shell) + " with prompt " + applescript_string(prompt) +
                     " with administrator privileges");
      break;
    }
  }
  return argv;
}

/// How the tool ended, when the runner did not answer: the prompt's answer it means.
inline answer classify_elevation_failure(elevation_tool tool, int exit_status, std::string_view stderr_text) {
  auto has = [&](std::string_view s) { return stderr_text.find(s) != std::string_view::npos; };
  switch (tool) {
    case elevation_tool::sudo:
      if (has("incorrect password attempt")) return answer::declined;
      if (has("no password was provided") || has("a password is required") || has("no askpass program"))
        return answer::cancelled;
      if (has("is not in the sudoers") || has("is not allowed to execute") || has("may not run sudo"))
        return answer::unavailable;
      return answer::unavailable;
    case elevation_tool::pkexec:
      if (exit_status == 126) return answer::cancelled;  // the dialog was dismissed
      if (exit_status == 127) return answer::declined;   // not authorized
      return answer::unavailable;
    case elevation_tool::osascript:
      if (has("-128") || has("User canceled")) return answer::cancelled;
      return answer::declined;
  }
  return answer::unavailable;
}

/// A privilege backend that elevates through a real tool. `ask` alone is not offered as a
/// separate prompt: converge hands the plan to `run_elevated`, whose start is the prompt.
///
///     elevation_command cmd;
///     cmd.runner_path = "/Library/PrivilegedHelperTools/com.example.helper";
///     CommandPrivilege priv(user, cmd);
///     auto report = converge(ctx, hosts, links);   // one prompt, through sudo
class CommandPrivilege {
 public:
  CommandPrivilege(user_identity user, elevation_command command)
      : user_(std::move(user)), command_(std::move(command)) {}

  const user_identity& user() const { return user_; }
  actor elevated_actor() const { return actor::root(); }
  /// Root already: elevated steps run in this process, no prompt.
  bool elevates_in_process() const { return ::geteuid() == 0; }
  /// Used only when already root (converge hands off otherwise).
  answer ask(const elevation_request&) { return ::geteuid() == 0 ? answer::granted : answer::unavailable; }
  /// How many times the tool was started (each start is one prompt at most).
  std::size_t prompts() const { return prompts_; }

  /// Starts the runner through the tool, sends the payload, returns the runner's outcome or how
  /// the prompt ended.
  result<elevated_outcome> run_elevated(const elevation_request& request, const record& payload) {
    auto argv = elevation_argv(command_, request);
    if (!argv) return tl::unexpected(argv.error());
    ++prompts_;
    auto ran = detail_run(*argv, serialize_record(payload));
    if (!ran) return tl::unexpected(ran.error());
    if (ran->timed_out) return elevated_outcome{answer::timed_out, {}, std::nullopt};
    if (!ran->out.empty()) {
      auto reply = parse_record(ran->out, "elevated runner reply");
      if (!reply) return tl::unexpected(reply.error());
      return decode_outcome(*reply);
    }
    answer a = classify_elevation_failure(command_.tool, ran->exit_status, ran->err);
    elevated_outcome outcome{a, {}, std::nullopt};
    if (a == answer::unavailable)
      outcome.failure = error{make_error_code(errc::unavailable), "elevate", command_.runner_path, {},
                              "exit " + std::to_string(ran->exit_status) + ": " + ran->err, {}};
    return outcome;
  }

 private:
  struct run_result {
    std::string out;
    std::string err;
    int exit_status = -1;
    bool timed_out = false;
  };

  result<run_result> detail_run(const std::vector<std::string>& argv, const std::string& input) {
    int in_pipe[2], out_pipe[2], err_pipe[2];
    if (::pipe2(in_pipe, O_CLOEXEC) != 0) return fail_errno(errno, "pipe", {});
    unique_fd in_r(in_pipe[0]), in_w(in_pipe[1]);
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) return fail_errno(errno, "pipe", {});
    unique_fd out_r(out_pipe[0]), out_w(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) return fail_errno(errno, "pipe", {});
    unique_fd err_r(err_pipe[0]), err_w(err_pipe[1]);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in_r.get(), 0);
    posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, err_w.get(), 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);

    // A minimal environment: the runner ignores the caller's anyway; sudo needs SUDO_ASKPASS.
    std::vector<std::string> env_strings{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL=C"};
    if (command_.askpass) env_strings.push_back("SUDO_ASKPASS=" + *command_.askpass);
    if (const char* display = std::getenv("DISPLAY")) env_strings.push_back(std::string("DISPLAY=") + display);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = argv;
    std::vector<char*> cargv;
    for (auto& a : args) cargv.push_back(a.data());
    cargv.push_back(nullptr);

    pid_t pid = -1;
    int spawned = ::posix_spawn(&pid, args[0].c_str(), &actions, &attr, cargv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (spawned != 0) return fail_errno(spawned, "start", args[0], {}, "is the elevation tool installed?");
    in_r.reset();
    out_w.reset();
    err_w.reset();

    run_result res;
    std::size_t written = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(command_.timeout_ms);
    ::fcntl(in_w.get(), F_SETFL, O_NONBLOCK);
    if (input.empty()) in_w.reset();
    while (out_r || err_r) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        res.timed_out = true;
        ::kill(-pid, SIGKILL);
        break;
      }
      pollfd fds[3];
      int n = 0;
      if (out_r) fds[n++] = {out_r.get(), POLLIN, 0};
      if (err_r) fds[n++] = {err_r.get(), POLLIN, 0};
      if (in_w) fds[n++] = {in_w.get(), POLLOUT, 0};
      int ready = ::poll(fds, static_cast<nfds_t>(n), static_cast<int>(left.count()));
      if (ready < 0 && errno != EINTR) break;
      for (int i = 0; i < n; ++i) {
        if (!fds[i].revents) continue;
        if (in_w && fds[i].fd == in_w.get()) {
          ssize_t w = detail::write_without_sigpipe(in_w.get(), input.data() + written, input.size() - written);
          if (w > 0) written += static_cast<std::size_t>(w);
          if (w < 0 && errno != EAGAIN && errno != EINTR) in_w.reset();
          if (written == input.size()) in_w.reset();
          continue;
        }
        char buffer[4096];
        ssize_t r = ::read(fds[i].fd, buffer, sizeof buffer);
        bool is_out = out_r && fds[i].fd == out_r.get();
        if (r <= 0) {
          if (r < 0 && errno == EINTR) continue;
          (is_out ? out_r : err_r).reset();
          continue;
        }
        std::string& sink = is_out ? res.out : res.err;
        if (sink.size() + static_cast<std::size_t>(r) > command_.max_reply_bytes) {
          ::kill(-pid, SIGKILL);
          out_r.reset();
          err_r.reset();
          return fail(errc::too_large, "read runner reply", args[0], "the reply exceeds its size bound");
        }
        sink.append(buffer, static_cast<std::size_t>(r));
      }
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    res.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return res;
  }

  user_identity user_;
  elevation_command command_;
  std::size_t prompts_ = 0;
};

HOSTCFG_END_NAMESPACE
