#pragma once
/// @file
/// The shell-profile codec behind ShellProfilePathEdit (issue 5): which startup files a user's
/// shell reads, the block that puts a directory on PATH in each file's dialect, and probe / apply
/// / revert over the file's bytes. Pure: bytes in, bytes out, no I/O.
///
/// Which files (`choose_profile_files`), from the login shell's base name:
///
/// | shell | files edited (dialect) |
/// |---|---|
/// | zsh | `$ZDOTDIR/.zshrc`, else `~/.zshrc` (zsh) — read by every interactive zsh, login or not |
/// | bash | the first that exists of `~/.bash_profile`, `~/.bash_login`, `~/.profile`; if none, `~/.profile` is created (never a `.bash_profile` that would shadow `.profile`); plus `~/.bashrc` if it exists (posix) |
/// | sh, dash, ksh, mksh, pdksh, ash, busybox | `~/.profile` (posix) |
/// | fish | `$XDG_CONFIG_HOME/fish/conf.d/<app-id>.fish`, default `~/.config/fish/conf.d/<app-id>.fish`; a relative XDG_CONFIG_HOME is ignored, as the XDG spec says (fish) |
/// | tcsh | `~/.tcshrc`; `~/.cshrc` if only that one exists (tcsh reads `.tcshrc` first) (csh) |
/// | csh | `~/.cshrc`; `~/.tcshrc` if only that one exists (macOS csh is tcsh) (csh) |
/// | anything else | `errc::unsupported`, naming the shell; the caller may pass a shell override or its own file list (`dialect_for_file`) |
///
/// The block (`render_path_block`), between the shared marker lines, for `~/.docker/bin`:
///
///     # >>> hostcfg com.docker.desktop v1 >>>
///     # Added by com.docker.desktop: puts a directory on PATH. Delete this block to opt out.
///     case ":${PATH}:" in
///       *:"${HOME}"'/.docker/bin':*) ;;
///       *) export PATH="${HOME}"'/.docker/bin'":${PATH}" ;;
///     esac
///     # <<< hostcfg com.docker.desktop <<<
///
/// fish: `if not contains -- "$HOME"'/.docker/bin' $PATH` / `set -gx PATH "$HOME"'/.docker/bin' $PATH`
/// / `end`. csh: `if ( ":${PATH}:" =~ *:"${HOME}"'/.docker/bin':* ) then` / `else` /
/// `setenv PATH "${HOME}"'/.docker/bin'\:"${PATH}"` / `endif` (`\:` because `$PATH:` + a letter is
/// a csh modifier; `=~` rather than `!~` because `!` is csh's history character). Each guard makes
/// a second `source` of the file a no-op. A directory under home is written `$HOME`-relative.
///
/// Placement: an existing block of ours (any format version) is rewritten in place; otherwise the
/// block is appended at the end, except that when the file has a comment saying "keep at the
/// bottom" (Fig's post block), the block goes just before the last such comment. Our block is
/// never put inside another tool's block (`find_foreign_blocks`: conda's `# >>> ... >>>` /
/// `# <<< ... <<<`, Rancher Desktop's `### MANAGED BY ... START` / `END`, Ansible's `# BEGIN` /
/// `# END`, Fig's pre/post blocks); if our old block sits inside one, apply refuses.

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hostcfg/error.hpp"
#include "hostcfg/format/lines.hpp"
#include "hostcfg/format/markers.hpp"
#include "hostcfg/format/shell_dialect.hpp"
#include "hostcfg/format/shell_path_model.hpp"
#include "hostcfg/path.hpp"
#include "hostcfg/privilege.hpp"

HOSTCFG_BEGIN_NAMESPACE

// ---------------------------------------------------------------------------------------------
// Which files

/// One startup file to edit.
struct profile_file {
  std::string path;       ///< absolute, normal
  shell_dialect dialect;  ///< syntax to write in it
  bool exists = false;    ///< per the caller's predicate; false means it will be created
};

/// The files one user's shell reads, in the order the plan lists them.
struct profile_choice {
  std::string shell;                ///< base name the choice was made for ("zsh")
  std::vector<profile_file> files;  ///< never empty
  std::string reload_command;       ///< what an open shell runs to see the change ("exec zsh")
};

/// Answers "does this file exist?" (the caller asks its Fs backend; a dangling symlink exists).
using file_exists_fn = std::function<bool(const std::string&)>;

/// The dialect of a startup file from its name, for callers that pass their own file list:
/// `*.fish` -> fish, `.cshrc`/`.tcshrc`/`.login`/`*.csh` -> csh, `.zshrc`/`.zprofile`/`.zshenv`/
/// `.zlogin`/`*.zsh` -> zsh, anything else -> posix.
inline shell_dialect dialect_for_file(std::string_view path) {
  std::string name = base_name(path);
  auto ends_with = [&](std::string_view suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with(".fish")) return shell_dialect::fish;
  if (name == ".cshrc" || name == ".tcshrc" || name == ".login" || name == ".logout" || ends_with(".csh"))
    return shell_dialect::csh;
  if (name == ".zshrc" || name == ".zprofile" || name == ".zshenv" || name == ".zlogin" || ends_with(".zsh"))
    return shell_dialect::zsh;
  return shell_dialect::posix;
}

/// Decides the files to edit for `user` (see the table in this header). `shell_override` (a path
/// or base name, e.g. "fish") replaces `user.shell` when the caller knows better. `app_id` names
/// the fish conf.d file.
///
///     auto choice = choose_profile_files(user, "com.docker.desktop",
///                                        [&](const std::string& p) { return fs.lstat(a, p).has_value(); });
inline result<profile_choice> choose_profile_files(const user_identity& user, std::string_view app_id,
                                                   const file_exists_fn& exists,
                                                   std::string_view shell_override = {}) {
  if (auto ok = validate_app_id(app_id); !ok) return tl::unexpected(ok.error());
  auto home = normalize_path(user.home);
  if (!home)
    return fail(errc::invalid_input, "choose shell profile", user.home, "the user's home is not an absolute path",
                "pass the home directory from the user database");
  std::string shell_path(shell_override.empty() ? std::string_view(user.shell) : shell_override);
  std::string shell = base_name(shell_path);
  if (!shell.empty() && shell[0] == '-') shell.erase(0, 1);  // login-shell argv[0] form "-zsh"
  if (shell.empty())
    return fail(errc::unsupported, "choose shell profile", user.home, "the user has no login shell",
                "pass the shell to use, or the files to edit");
  auto in_home = [&](std::string_view name) { return join_path(*home, name); };
  auto has = [&](const std::string& p) { return exists ? exists(p) : false; };
  profile_choice choice;
  choice.shell = shell;
  if (shell == "zsh") {
    std::string dir = *home;
    if (user.zdotdir && !user.zdotdir->empty()) {
      auto z = normalize_path(*user.zdotdir);
      if (!z)
        return fail(errc::invalid_input, "choose shell profile", *user.zdotdir, "ZDOTDIR is not an absolute path",
                    "set ZDOTDIR to an absolute directory, or leave it unset");
      dir = *z;
    }
    std::string p = join_path(dir, ".zshrc");
    choice.files.push_back({p, shell_dialect::zsh, has(p)});
    choice.reload_command = "exec zsh";
  } else if (shell == "bash") {
    std::optional<std::string> login;
    for (const char* name : {".bash_profile", ".bash_login", ".profile"}) {
      std::string p = in_home(name);
      if (has(p)) {
        login = p;
        break;
      }
    }
    if (login) choice.files.push_back({*login, shell_dialect::posix, true});
    else choice.files.push_back({in_home(".profile"), shell_dialect::posix, false});
    std::string rc = in_home(".bashrc");
    if (has(rc)) choice.files.push_back({rc, shell_dialect::posix, true});
    choice.reload_command = "exec bash -l";
  } else if (shell == "sh" || shell == "dash" || shell == "ksh" || shell == "mksh" || shell == "pdksh" ||
             shell == "ksh93" || shell == "ash" || shell == "busybox") {
    std::string p = in_home(".profile");
    choice.files.push_back({p, shell_dialect::posix, has(p)});
    choice.reload_command = "exec " + shell + " -l";
  } else if (shell == "fish") {
    std::string config = join_path(*home, ".config");
    if (user.xdg_config_home && !user.xdg_config_home->empty()) {
      // The XDG spec: a relative value is invalid and must be ignored.
      if (auto x = normalize_path(*user.xdg_config_home)) config = *x;
    }
    std::string p = join_path(config, "fish/conf.d/" + std::string(app_id) + ".fish");
    choice.files.push_back({p, shell_dialect::fish, has(p)});
    choice.reload_command = "exec fish";
  } else if (shell == "tcsh" || shell == "csh") {
    std::string tcshrc = in_home(".tcshrc");
    std::string cshrc = in_home(".cshrc");
    bool has_t = has(tcshrc), has_c = has(cshrc);
    std::string p;
    if (shell == "tcsh") p = (has_t || !has_c) ? tcshrc : cshrc;
    else p = (has_c || !has_t) ? cshrc : tcshrc;
    choice.files.push_back({p, shell_dialect::csh, p == tcshrc ? has_t : has_c});
    choice.reload_command = "exec " + shell;
  } else {
    return fail(errc::unsupported, "choose shell profile", shell_path,
                "hostcfg does not know which startup files the shell '" + shell + "' reads",
                "pass a shell override (zsh, bash, sh, fish, tcsh) or the files to edit");
  }
  return choice;
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// What to put on PATH, and how.
struct path_block_spec {
  std::string app_id;                      ///< names the block in its comment
  std::string dir;                         ///< absolute directory to put on PATH
  std::string home;                        ///< the user's home: a dir under it is written `$HOME`-relative
  shell_dialect dialect = shell_dialect::posix;
  std::optional<section_markers> markers;  ///< default: `default_markers(app_id)`
};

/// The marker lines a spec uses.
inline section_markers spec_markers(const path_block_spec& spec) {
  return spec.markers ? *spec.markers : default_markers(spec.app_id);
}

/// Checks a directory for PATH: absolute, normal, no control bytes, no `:` (PATH's separator).
inline result<std::string> validate_path_dir(std::string_view dir) {
  if (auto ok = check_shell_text(dir, dir); !ok) return tl::unexpected(ok.error());
  auto normal = normalize_path(dir);
  if (!normal)
    return fail(errc::invalid_input, "put directory on PATH", std::string(dir), "not an absolute path",
                "pass an absolute directory");
  if (normal->find(':') != std::string::npos)
    return fail(errc::invalid_input, "put directory on PATH", std::string(dir),
                "contains ':', which separates PATH entries", "use a directory without ':' in its name");
  return *normal;
}

namespace detail {
/// The directory as one shell word in `d`: `"${HOME}"'/rest'` under home, else quoted literally.
inline std::string dir_word(shell_dialect d, const std::string& dir, const std::string& home) {
  std::string home_ref = d == shell_dialect::fish ? "\"$HOME\"" : "\"${HOME}\"";
  if (home.size() > 1 && path_is_within(dir, home)) {
    std::string rest = dir.substr(home.size());
    return rest.empty() ? home_ref : home_ref + quote_literal(d, rest);
  }
  return quote_literal(d, dir);
}
}  // namespace detail

/// The whole block (markers included), each line ended by `line_ending`. Fails on a bad directory,
/// app id or marker line (control bytes; a `!` in a csh comment line; a marker not a comment).
///
///     render_path_block({"com.docker.desktop", "/Users/ann/.docker/bin", "/Users/ann", shell_dialect::zsh})
inline result<std::string> render_path_block(const path_block_spec& spec, std::string_view line_ending = "\n") {
  if (auto ok = validate_app_id(spec.app_id); !ok) return tl::unexpected(ok.error());
  auto dir = validate_path_dir(spec.dir);
  if (!dir) return tl::unexpected(dir.error());
  std::string home;
  if (!spec.home.empty()) {
    auto h = normalize_path(spec.home);
    if (!h || !check_shell_text(*h, "home"))
      return fail(errc::invalid_input, "render PATH block", spec.home, "the home directory is not a clean absolute path");
    home = *h;
  }
  section_markers m = spec_markers(spec);
  for (const std::string* line : {&m.begin_line, &m.end_line}) {
    if (auto ok = check_shell_text(*line, "marker line"); !ok) return tl::unexpected(ok.error());
    if (line->empty() || (*line)[0] != '#')
      return fail(errc::invalid_input, "render PATH block", *line, "a marker line must be a '#' comment");
    if (spec.dialect == shell_dialect::csh && line->find('!') != std::string::npos)
      return fail(errc::invalid_input, "render PATH block", *line,
                  "csh expands '!' even in comments of an interactive shell's startup file");
  }
  std::string w = detail::dir_word(spec.dialect, *dir, home);
  std::vector<std::string> body;
  body.push_back("# Added by " + spec.app_id + ": puts a directory on PATH. Delete this block to opt out.");
  switch (spec.dialect) {
    case shell_dialect::posix:
    case shell_dialect::zsh:
      body.push_back("case \":${PATH}:\" in");
      body.push_back("  *:" + w + ":*) ;;");
      body.push_back("  *) export PATH=" + w + "\":${PATH}\" ;;");
      body.push_back("esac");
      break;
    case shell_dialect::fish:
      body.push_back("if not contains -- " + w + " $PATH");
      body.push_back("    set -gx PATH " + w + " $PATH");
      body.push_back("end");
      break;
    case shell_dialect::csh:
      body.push_back("if ( \":${PATH}:\" =~ *:" + w + ":* ) then");
      body.push_back("else");
      body.push_back("    setenv PATH " + w + "\\:\"${PATH}\"");
      body.push_back("endif");
      break;
  }
  std::string out = m.begin_line;
  out += line_ending;
  for (const auto& line : body) {
    out += line;
    out += line_ending;
  }
  out += m.end_line;
  out += line_ending;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Other tools' blocks

/// A region another tool manages: never edited, never inserted into.
struct foreign_block {
  std::size_t begin = 0;       ///< byte offset of its first line
  std::size_t end = 0;         ///< byte offset just past its last line (with its ending)
  std::size_t first_line = 0;  ///< 1-based
  std::size_t last_line = 0;   ///< 1-based
  std::string owner;           ///< "conda initialize", "RANCHER DESKTOP", "Fig post", ...
  bool keep_at_bottom = false; ///< its comment asks to stay the last thing in the file
  bool closed = true;          ///< false: a begin marker without an end (runs to end of file)
};

namespace detail {
inline std::string_view profile_trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
inline std::string profile_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}
// Owner key of a begin line, or empty: `# >>> NAME >>>`, `### MANAGED BY X START ...`, `# BEGIN X`.
inline std::string foreign_begin(std::string_view t) {
  if (t.substr(0, 5) == "# >>>" && t.size() > 9 && t.substr(t.size() - 3) == ">>>")
    return ">>>" + std::string(profile_trim(t.substr(5, t.size() - 8)));
  std::string low = profile_lower(t);
  auto managed = low.find("managed by ");
  if (!low.empty() && low[0] == '#' && managed != std::string::npos && low.find(" start", managed) != std::string::npos)
    return "managed:" + std::string(profile_trim(std::string_view(low).substr(managed, low.find(" start", managed) - managed)));
  if (t.substr(0, 8) == "# BEGIN ") return "begin:" + std::string(profile_trim(t.substr(8)));
  return {};
}
inline bool foreign_end(std::string_view t, const std::string& key) {
  if (key.substr(0, 3) == ">>>") {
    if (!(t.substr(0, 5) == "# <<<" && t.size() > 9 && t.substr(t.size() - 3) == "<<<")) return false;
    // hostcfg's own markers carry a version on the begin line only: `NAME v1` ... `NAME`.
    std::string_view name = std::string_view(key).substr(3);
    std::string end = std::string(profile_trim(t.substr(5, t.size() - 8)));
    return name == end || name.substr(0, end.size() + 2) == end + " v";
  }
  if (key.substr(0, 8) == "managed:") {
    std::string low = profile_lower(t);
    auto managed = low.find("managed by ");
    return managed != std::string::npos && low.find(" end", managed) != std::string::npos &&
           profile_trim(std::string_view(low).substr(managed, low.find(" end", managed) - managed)) ==
               std::string_view(key).substr(8);
  }
  if (key.substr(0, 6) == "begin:") return t.substr(0, 6) == "# END " && profile_trim(t.substr(6)) == std::string_view(key).substr(6);
  return false;
}
}  // namespace detail

/// Finds other tools' blocks in `bytes`; lines that are `ours` (our markers) are not foreign.
/// Fig-style comments ("... Keep at the top/bottom of this file.") start a block that runs to the
/// next blank line.
inline std::vector<foreign_block> find_foreign_blocks(std::string_view bytes, const section_markers& ours) {
  std::vector<foreign_block> blocks;
  auto lines = split_lines(bytes);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string_view t = detail::profile_trim(lines[i].text);
    if (detail::is_begin_marker(t, ours) || t == ours.end_line) continue;
    std::string key = detail::foreign_begin(t);
    std::string low = detail::profile_lower(t);
    bool keep_note = !t.empty() && t[0] == '#' &&
                     (low.find("keep at the bottom") != std::string::npos || low.find("keep at the top") != std::string::npos);
    if (key.empty() && !keep_note) continue;
    foreign_block b;
    b.begin = lines[i].offset;
    b.first_line = i + 1;
    std::size_t j = i;
    if (!key.empty()) {
      b.owner = key.substr(key.find_first_of(">:") + (key[0] == '>' ? 3 : 1));
      b.closed = false;
      for (j = i + 1; j < lines.size(); ++j)
        if (detail::foreign_end(detail::profile_trim(lines[j].text), key)) {
          b.closed = true;
          break;
        }
      if (j == lines.size()) j = lines.size() - 1;
    } else {
      b.owner = std::string(t);
      b.keep_at_bottom = low.find("keep at the bottom") != std::string::npos;
      // Runs to the next blank line, but never over our own block (appended right after it).
      while (j + 1 < lines.size() && !detail::profile_trim(lines[j + 1].text).empty() &&
             !detail::is_begin_marker(detail::profile_trim(lines[j + 1].text), ours))
        ++j;
    }
    b.last_line = j + 1;
    b.end = lines[j].offset + lines[j].text.size() + lines[j].ending.size();
    blocks.push_back(b);
    i = j;
  }
  return blocks;
}

// ---------------------------------------------------------------------------------------------
// Probe / apply / revert

/// What probe found in one file.
enum class profile_state {
  current,         ///< our block is there, exactly as we would write it: nothing to do
  outdated,        ///< our block is there but different (old directory, older format): rewrite in place
  absent,          ///< no block, and the user's own lines do not put the directory on PATH
  on_path_already, ///< no block, but the user's own line puts the directory on PATH
  unknown,         ///< no block, and whether the user's lines put it on PATH cannot be modelled
};

/// "current", "outdated", "absent", "on_path_already", "unknown".
inline const char* profile_state_name(profile_state s) {
  switch (s) {
    case profile_state::current: return "current";
    case profile_state::outdated: return "outdated";
    case profile_state::absent: return "absent";
    case profile_state::on_path_already: return "on_path_already";
    case profile_state::unknown: return "unknown";
  }
  return "unknown";
}

/// Probe result for one file's bytes.
struct profile_probe {
  profile_state state = profile_state::absent;
  std::optional<section_span> block;  ///< our block, when present
  path_finding user_lines;            ///< the model's answer for everything outside our block
  std::vector<foreign_block> foreign; ///< other tools' blocks
};

/// Reads `bytes` (one startup file) for `spec`. Fails with `errc::broken_markers` when our markers
/// are broken (the file must then be left alone), or `errc::invalid_input` for a bad spec.
inline result<profile_probe> probe_profile(std::string_view bytes, const path_block_spec& spec) {
  auto dir = validate_path_dir(spec.dir);
  if (!dir) return tl::unexpected(dir.error());
  section_markers m = spec_markers(spec);
  auto span = find_section(bytes, m);
  if (!span) return tl::unexpected(span.error());
  profile_probe p;
  p.block = *span;
  p.foreign = find_foreign_blocks(bytes, m);
  std::string home = spec.home.empty() ? std::string() : normalize_path(spec.home).value_or(spec.home);
  p.user_lines = p.block ? model_path(bytes, spec.dialect, *dir, home, p.block->begin, p.block->end)
                         : model_path(bytes, spec.dialect, *dir, home);
  if (p.block) {
    auto want = render_path_block(spec, preferred_line_ending(bytes));
    if (!want) return tl::unexpected(want.error());
    std::string_view have = bytes.substr(p.block->begin, p.block->end - p.block->begin);
    // A block that is the last thing in a file without a final newline keeps that shape.
    std::string_view want_view = *want;
    if (!ends_with_newline(have)) {
      while (!want_view.empty() && (want_view.back() == '\n' || want_view.back() == '\r')) want_view.remove_suffix(1);
    }
    p.state = have == want_view ? profile_state::current : profile_state::outdated;
  } else if (p.user_lines.presence == path_presence::present) {
    p.state = profile_state::on_path_already;
  } else if (p.user_lines.presence == path_presence::unknown) {
    p.state = profile_state::unknown;
  } else {
    p.state = profile_state::absent;
  }
  return p;
}

/// What apply did, as revert needs it: record these bytes exactly.
struct profile_edit_record {
  enum class kind_t {
    unchanged,  ///< the block was already right; nothing written
    inserted,   ///< `lead` + `block` were inserted at one place
    replaced,   ///< `block` replaced our older block `previous`
  };
  kind_t kind = kind_t::unchanged;
  std::string lead;      ///< a line ending added so the block starts on its own line
  std::string block;     ///< the block exactly as written
  std::string previous;  ///< the older block it replaced (kind replaced)
};

/// New file bytes and the record of what changed.
struct profile_edit {
  std::string bytes;
  profile_edit_record record;
  bool changed() const { return record.kind != profile_edit_record::kind_t::unchanged; }
};

/// Where a new block goes: end of file, or before the last "keep at the bottom" block. Refuses
/// when the end of the file is inside another tool's unterminated block.
inline result<std::size_t> insertion_point(std::string_view bytes, const std::vector<foreign_block>& foreign) {
  const foreign_block* bottom = nullptr;
  for (const auto& b : foreign)
    if (b.keep_at_bottom) bottom = &b;
  if (bottom) {
    for (const auto& b : foreign)
      if (&b != bottom && b.begin < bottom->begin && bottom->begin < b.end) return b.begin;
    return bottom->begin;
  }
  for (const auto& b : foreign)
    if (!b.closed)
      return fail(errc::conflict, "insert PATH block", {},
                  "line " + std::to_string(b.first_line) + ": " + b.owner + "'s block has no end marker",
                  "fix that block, or add the PATH line by hand");
  return bytes.size();
}

/// Puts the block for `spec` into `bytes`: unchanged if already right, rewritten in place if
/// outdated, inserted otherwise (whatever the user's own lines say: the caller decides from
/// `probe_profile` whether to insert). Bytes outside the block are untouched; new lines use the
/// file's own line ending.
inline result<profile_edit> apply_profile_block(std::string_view bytes, const path_block_spec& spec) {
  section_markers m = spec_markers(spec);
  auto span = find_section(bytes, m);
  if (!span) return tl::unexpected(span.error());
  auto block = render_path_block(spec, preferred_line_ending(bytes));
  if (!block) return tl::unexpected(block.error());
  auto foreign = find_foreign_blocks(bytes, m);
  profile_edit edit;
  if (*span) {
    const section_span& s = **span;
    std::string_view have = bytes.substr(s.begin, s.end - s.begin);
    std::string want = *block;
    if (!ends_with_newline(have))
      while (!want.empty() && (want.back() == '\n' || want.back() == '\r')) want.pop_back();
    edit.record.block = want;
    if (have == want) {
      edit.bytes = std::string(bytes);
      return edit;
    }
    for (const auto& f : foreign)
      if (f.begin <= s.begin && s.end <= f.end && !f.keep_at_bottom)
        return fail(errc::conflict, "rewrite PATH block", {},
                    "our block at line " + std::to_string(s.begin_line_number) + " is inside " + f.owner + "'s block",
                    "move our block out of it by hand");
    edit.record.kind = profile_edit_record::kind_t::replaced;
    edit.record.previous = std::string(have);
    edit.bytes = std::string(bytes.substr(0, s.begin)) + want + std::string(bytes.substr(s.end));
    return edit;
  }
  auto at = insertion_point(bytes, foreign);
  if (!at) return tl::unexpected(at.error());
  edit.record.kind = profile_edit_record::kind_t::inserted;
  edit.record.block = *block;
  if (*at == bytes.size() && !ends_with_newline(bytes)) edit.record.lead = std::string(preferred_line_ending(bytes));
  edit.bytes = std::string(bytes.substr(0, *at)) + edit.record.lead + *block + std::string(bytes.substr(*at));
  return edit;
}

/// What revert did.
struct profile_revert {
  std::string bytes;     ///< the file's new bytes
  bool removed = false;  ///< false: our block was not there (the user removed it: an opt-out)
};

/// Undoes `record` in `bytes`: removes exactly our block (and the line ending we added before it,
/// when the block is still the end of the file), or puts back the older block it replaced. A
/// block the user changed is not touched: `errc::drifted`. Broken markers: `errc::broken_markers`.
inline result<profile_revert> revert_profile_block(std::string_view bytes, const profile_edit_record& record,
                                                   const section_markers& markers) {
  auto span = find_section(bytes, markers);
  if (!span) return tl::unexpected(span.error());
  profile_revert out;
  if (!*span) {
    out.bytes = std::string(bytes);
    return out;
  }
  const section_span& s = **span;
  std::string_view have = bytes.substr(s.begin, s.end - s.begin);
  if (have != record.block)
    return fail(errc::drifted, "remove PATH block", {},
                "the block at line " + std::to_string(s.begin_line_number) + " was changed after hostcfg wrote it",
                "remove or keep the block by hand");
  std::size_t begin = s.begin;
  std::string middle;
  if (record.kind == profile_edit_record::kind_t::replaced) {
    middle = record.previous;
  } else if (record.kind == profile_edit_record::kind_t::inserted && !record.lead.empty() && s.end == bytes.size() &&
             begin >= record.lead.size() &&
             bytes.substr(begin - record.lead.size(), record.lead.size()) == record.lead) {
    begin -= record.lead.size();
  }
  out.bytes = std::string(bytes.substr(0, begin)) + middle + std::string(bytes.substr(s.end));
  out.removed = true;
  return out;
}

HOSTCFG_END_NAMESPACE
