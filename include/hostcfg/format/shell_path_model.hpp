#pragma once
/// @file
/// Answers "does this startup file already put DIR on PATH?" by reading the file, never by
/// spawning a shell (Rancher Desktop spawns `zsh -i -c` and misreports when an rc file does
/// `exec fish`, rancher-desktop#3729). The answer is `present`, `absent` or `unknown`: anything the
/// model cannot follow makes it `unknown`, never `absent`.
///
/// Constructs recognised (everything else that runs a command makes the answer `unknown`):
///
/// | dialect | construct | effect modelled |
/// |---|---|---|
/// | posix, zsh | `PATH=a:b:$PATH`, `export PATH=...`, `typeset/declare/local/readonly PATH=...` | colon list; no `$PATH` in it = PATH reset |
/// | posix, zsh | `PATH+=:a` (bash) | append |
/// | zsh | `path=(a b $path)`, `path+=(a b)`, `export path=(...)` | array elements |
/// | posix, zsh | `unset PATH` | reset |
/// | fish | `set [-g/-U/-x/-a/-p...] PATH a b $PATH`, `set -gx PATH a:b:$PATH` | list, colon strings split; `-e` = reset |
/// | fish | `set ... fish_user_paths a b`, `fish_add_path [flags] a b` | added |
/// | csh/tcsh | `setenv PATH a:b:${PATH}`, `set path = (a b $path)`, `unsetenv PATH` | colon list / word list / reset |
///
/// Words are expanded the way the shell would for `$HOME`, `${HOME}`, `~` (word start; also after
/// `=`/`:` in a POSIX assignment) and `$PATH` / `${PATH...}` / `$path`; any other variable,
/// command substitution (`$(...)`, backticks, fish `(...)`), `~user`, or brace expansion makes that
/// element unresolvable, hence `unknown`. Comments, quotes (per dialect), line continuations and
/// redirections are understood. Control structures (`if`/`case`/`for`/`while`/functions/`{...}`,
/// fish blocks, csh `if ... then`/`foreach`/`switch`) are tracked: an addition inside one, or
/// after `&&`/`||`, is conditional and answers `unknown`. Neutral commands that cannot change PATH
/// (`alias`, `setopt`, `zstyle`, `shopt`, `umask`, `bindkey`, `abbr`, `test`/`[`/`[[`, assignments
/// of other variables, ...) are skipped; any other command (`source`, `.`, `eval`, `exec`, a
/// function such as oh-my-zsh's loader) may change PATH, so the answer becomes `unknown` unless
/// the directory is already added unconditionally.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hostcfg/format/shell_dialect.hpp"
#include "hostcfg/path.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// Whether a file puts a directory on PATH.
enum class path_presence {
  absent,   ///< every line was understood and none adds the directory
  present,  ///< an unconditional line adds it (and nothing later resets PATH)
  unknown,  ///< something could not be modelled (a sourced file, a conditional, an unknown command)
};

/// "absent", "present", "unknown".
inline const char* path_presence_name(path_presence p) {
  switch (p) {
    case path_presence::absent: return "absent";
    case path_presence::present: return "present";
    case path_presence::unknown: return "unknown";
  }
  return "unknown";
}

/// The answer and the line that decided it.
struct path_finding {
  path_presence presence = path_presence::absent;
  std::size_t line = 0;  ///< 1-based line that adds the directory, or the first line not modelled
  std::string detail;    ///< for people: "line 12: `source` of another file cannot be modelled"
};

namespace detail {

inline constexpr char unknown_mark = '\x01';  // an expansion the model cannot resolve
inline constexpr char path_mark = '\x02';     // a reference to the current PATH

struct sh_token {
  bool is_op = false;
  std::string value;        // expanded word, or the operator text
  std::string assign_name;  // NAME when the word is `NAME=...` or `NAME+=...` (unquoted)
  bool assign_append = false;
  std::string assign_value;  // expanded text after `=`
  bool quoted = false;       // some part was quoted (so it cannot be a keyword)
  bool glued = false;        // no blank between this token and the previous one
  std::size_t line = 1;
};

inline bool is_shell_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/// A small lexer for the four dialects: words (with the expansions above) and operators
/// (newline ; & | && || ( ) and "redir"). Lossless only in what the model needs.
class sh_lexer {
 public:
  sh_lexer(std::string_view bytes, shell_dialect dialect, std::string_view home, std::size_t skip_begin,
           std::size_t skip_end)
      : s_(bytes), d_(dialect), home_(home), skip_begin_(skip_begin), skip_end_(skip_end) {}

  std::vector<sh_token> run() {
    bool gap = true;
    while (pos_ < s_.size()) {
      if (pos_ == skip_begin_ && skip_end_ > skip_begin_) {
        for (std::size_t i = skip_begin_; i < skip_end_ && i < s_.size(); ++i)
          if (s_[i] == '\n') ++line_;
        pos_ = skip_end_;
        op("\n", gap);
        gap = true;
        continue;
      }
      char c = s_[pos_];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
        ++pos_;
        gap = true;
      } else if (c == '\n') {
        op("\n", gap);
        ++line_;
        ++pos_;
        gap = true;
      } else if (c == '#' && gap) {
        while (pos_ < s_.size() && s_[pos_] != '\n' && !at_skip()) ++pos_;
      } else if (c == '\\' && pos_ + 1 < s_.size() && (s_[pos_ + 1] == '\n' || s_[pos_ + 1] == '\r')) {
        pos_ += (s_[pos_ + 1] == '\r' && pos_ + 2 < s_.size() && s_[pos_ + 2] == '\n') ? 3 : 2;
        ++line_;
        gap = true;
      } else if (c == ';' || c == '&' || c == '|') {
        std::string text(1, c);
        if (pos_ + 1 < s_.size() && s_[pos_ + 1] == c && c != ';') text += c;
        pos_ += text.size();
        op(text, gap);
        gap = true;
      } else if (c == '(' && d_ == shell_dialect::fish) {
        word(gap);
        gap = false;
      } else if (c == '(' || c == ')') {
        ++pos_;
        op(std::string(1, c), gap);
        gap = false;
      } else if (c == '<' || c == '>') {
        std::string text;
        while (pos_ < s_.size() && (s_[pos_] == '<' || s_[pos_] == '>' || s_[pos_] == '&' || s_[pos_] == '|' ||
                                    s_[pos_] == '!' || s_[pos_] == '-'))
          text += s_[pos_++];
        // A heredoc body would be read as commands: give up on the whole file.
        op(text.substr(0, 2) == "<<" && text.substr(0, 3) != "<<<" ? "heredoc" : "redir", gap);
        gap = true;
      } else {
        word(gap);
        gap = false;
      }
    }
    op("\n", true);
    return std::move(tokens_);
  }

 private:
  bool at_skip() const { return pos_ == skip_begin_ && skip_end_ > skip_begin_; }
  void op(std::string text, bool gap) {
    sh_token t;
    t.is_op = true;
    t.value = std::move(text);
    t.glued = !gap;
    t.line = line_;
    tokens_.push_back(std::move(t));
  }
  bool word_end(char c) const {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ';' || c == '&' || c == '|' || c == '<' ||
        c == '>')
      return true;
    if (d_ != shell_dialect::fish && (c == '(' || c == ')')) return true;
    return false;
  }
  // Skips a balanced region starting at an opening `open` (already at pos_), quotes included.
  void skip_balanced(char open, char close) {
    int depth = 0;
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == '\\') {
        pos_ += 2;
        continue;
      }
      if (c == '\'' || (c == '"' && open != '"')) {
        char q = c;
        ++pos_;
        while (pos_ < s_.size() && s_[pos_] != q) {
          if (s_[pos_] == '\\' && q == '"') ++pos_;
          if (s_[pos_ < s_.size() ? pos_ : 0] == '\n') ++line_;
          ++pos_;
        }
        ++pos_;
        continue;
      }
      if (c == '\n') ++line_;
      if (c == open && open != close) ++depth;
      else if (c == close) {
        if (open == close) {
          if (depth == 0) {
            depth = 1;
            ++pos_;
            continue;
          }
          ++pos_;
          return;
        }
        if (--depth == 0) {
          ++pos_;
          return;
        }
      }
      ++pos_;
    }
  }
  // `$...` at pos_ (inside double quotes or not); appends the expansion to `out`.
  void dollar(std::string& out, bool& subst) {
    ++pos_;  // '$'
    if (pos_ >= s_.size()) {
      out += '$';
      return;
    }
    char c = s_[pos_];
    if (c == '(' && d_ != shell_dialect::csh) {
      skip_balanced('(', ')');
      out += unknown_mark;
      subst = true;
      return;
    }
    if (c == '{') {
      std::size_t start = pos_ + 1;
      skip_balanced('{', '}');
      std::string_view inner = s_.substr(start, pos_ > start ? pos_ - start - 1 : 0);
      if (inner == "HOME") {
        out += home_;
      } else if ((inner.substr(0, 4) == "PATH" && (inner.size() == 4 || !is_shell_name_char(inner[4]))) ||
                 (d_ != shell_dialect::posix && inner == "path")) {
        out += path_mark;
      } else {
        out += unknown_mark;
      }
      return;
    }
    if (c == '\'' && d_ != shell_dialect::csh && d_ != shell_dialect::fish) {  // $'...' ANSI-C quoting
      ++pos_;
      while (pos_ < s_.size() && s_[pos_] != '\'') pos_ += (s_[pos_] == '\\') ? 2 : 1;
      ++pos_;
      out += unknown_mark;
      return;
    }
    if (is_shell_name_char(c) && !(c >= '0' && c <= '9')) {
      std::size_t start = pos_;
      while (pos_ < s_.size() && is_shell_name_char(s_[pos_])) ++pos_;
      std::string_view name = s_.substr(start, pos_ - start);
      bool indexed = pos_ < s_.size() && (s_[pos_] == '[' || (d_ == shell_dialect::csh && s_[pos_] == ':' &&
                                                              pos_ + 1 < s_.size() && is_shell_name_char(s_[pos_ + 1])));
      if (indexed) {
        out += unknown_mark;
      } else if (name == "HOME") {
        out += home_;
      } else if (name == "PATH" || (name == "path" && (d_ == shell_dialect::zsh || d_ == shell_dialect::csh))) {
        out += path_mark;
      } else {
        out += unknown_mark;
      }
      return;
    }
    if (c == '?' || c == '#' || c == '-' || c == '$' || c == '!' || c == '@' || c == '*' || (c >= '0' && c <= '9')) {
      ++pos_;
      if (d_ == shell_dialect::csh && c == '?')  // $?name
        while (pos_ < s_.size() && is_shell_name_char(s_[pos_])) ++pos_;
      out += unknown_mark;
      return;
    }
    out += '$';
  }
  void word(bool gap) {
    sh_token t;
    t.glued = !gap;
    t.line = line_;
    std::string out;
    bool subst = false;
    bool quoted = false;
    bool name_prefix = true;  // everything so far is unquoted name characters
    std::size_t assign_at = std::string::npos;  // where an assignment's value starts in `out`
    auto tilde_ok = [&]() {
      // `~` expands at word start, and after `=` or `:` in a POSIX assignment.
      if (out.empty()) return true;
      if (d_ == shell_dialect::posix || d_ == shell_dialect::zsh)
        return assign_at != std::string::npos && (out.size() == assign_at || out.back() == ':');
      return false;
    };
    while (pos_ < s_.size() && !at_skip()) {
      char c = s_[pos_];
      if (word_end(c)) break;
      if (c == '\'') {
        quoted = true;
        name_prefix = false;
        ++pos_;
        while (pos_ < s_.size() && s_[pos_] != '\'') {
          char q = s_[pos_];
          if (q == '\n') ++line_;
          if (d_ == shell_dialect::fish && q == '\\' && pos_ + 1 < s_.size() &&
              (s_[pos_ + 1] == '\\' || s_[pos_ + 1] == '\'')) {
            out += s_[pos_ + 1];
            pos_ += 2;
            continue;
          }
          if (d_ == shell_dialect::csh && q == '\\' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '!') {
            out += '!';
            pos_ += 2;
            continue;
          }
          out += q;
          ++pos_;
        }
        if (pos_ >= s_.size()) out += unknown_mark;  // unterminated quote
        ++pos_;
      } else if (c == '"') {
        quoted = true;
        name_prefix = false;
        ++pos_;
        while (pos_ < s_.size() && s_[pos_] != '"') {
          char q = s_[pos_];
          if (q == '\n') ++line_;
          if (q == '\\' && pos_ + 1 < s_.size() && d_ != shell_dialect::csh) {
            char n = s_[pos_ + 1];
            if (n == '\n') {
              ++line_;
              pos_ += 2;
              continue;
            }
            if (n == '$' || n == '`' || n == '"' || n == '\\') {
              out += n;
              pos_ += 2;
              continue;
            }
            out += q;
            ++pos_;
          } else if (q == '$') {
            if (d_ == shell_dialect::fish && pos_ + 1 < s_.size() && s_[pos_ + 1] == '(') {
              ++pos_;
              skip_balanced('(', ')');
              out += unknown_mark;
              subst = true;
            } else {
              dollar(out, subst);
            }
          } else if (q == '`' && d_ != shell_dialect::fish) {
            skip_balanced('`', '`');
            out += unknown_mark;
            subst = true;
          } else {
            out += q;
            ++pos_;
          }
        }
        if (pos_ >= s_.size()) out += unknown_mark;
        ++pos_;
      } else if (c == '\\') {
        name_prefix = false;
        if (pos_ + 1 < s_.size()) out += s_[pos_ + 1];
        pos_ += 2;
      } else if (c == '$') {
        name_prefix = false;
        dollar(out, subst);
      } else if (c == '`' && d_ != shell_dialect::fish) {
        name_prefix = false;
        skip_balanced('`', '`');
        out += unknown_mark;
        subst = true;
      } else if (c == '(' && d_ == shell_dialect::fish) {
        name_prefix = false;
        skip_balanced('(', ')');
        out += unknown_mark;
        subst = true;
      } else if ((c == '{' || c == '}') && d_ == shell_dialect::fish && !(out.empty() && c == '{')) {
        name_prefix = false;
        out += unknown_mark;
        ++pos_;
      } else if (c == '~' && tilde_ok()) {
        std::size_t n = pos_ + 1;
        if (n >= s_.size() || s_[n] == '/' || s_[n] == ':' || word_end(s_[n])) {
          out += home_;
        } else {
          out += unknown_mark;  // ~user
          while (n < s_.size() && is_shell_name_char(s_[n])) ++n;
          pos_ = n - 1;
        }
        name_prefix = false;
        ++pos_;
      } else if (c == '=' && name_prefix && !out.empty() && assign_at == std::string::npos &&
                 !(out[0] >= '0' && out[0] <= '9')) {
        out += c;
        assign_at = out.size();
        name_prefix = false;
        ++pos_;
      } else if (c == '+' && name_prefix && !out.empty() && pos_ + 1 < s_.size() && s_[pos_ + 1] == '=' &&
                 d_ != shell_dialect::fish && d_ != shell_dialect::csh) {
        t.assign_append = true;
        out += "+=";
        assign_at = out.size();
        pos_ += 2;
        name_prefix = false;
      } else {
        if (!is_shell_name_char(c)) name_prefix = false;
        out += c;
        ++pos_;
      }
    }
    (void)subst;
    if (assign_at != std::string::npos && d_ != shell_dialect::fish) {
      std::size_t name_end = assign_at - (t.assign_append ? 2 : 1);
      t.assign_name = out.substr(0, name_end);
      t.assign_value = out.substr(assign_at);
    } else {
      t.assign_append = false;
    }
    t.quoted = quoted;
    t.value = std::move(out);
    tokens_.push_back(std::move(t));
  }

  std::string_view s_;
  shell_dialect d_;
  std::string home_;
  std::size_t skip_begin_;
  std::size_t skip_end_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
  std::vector<sh_token> tokens_;
};

inline std::vector<std::string> split_colons(std::string_view value) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    std::size_t colon = value.find(':', start);
    parts.emplace_back(value.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  return parts;
}

/// Follows the token stream of one file and decides `path_presence` for one directory.
class path_modeller {
 public:
  path_modeller(shell_dialect dialect, std::string dir) : d_(dialect), dir_(std::move(dir)) {}

  path_finding run(const std::vector<sh_token>& tokens) {
    std::vector<const sh_token*> command;
    bool conditional_next = false;
    bool conditional = false;
    for (const auto& t : tokens) {
      if (t.is_op && (t.value == "\n" || t.value == ";" || t.value == "&" || t.value == "&&" || t.value == "||" ||
                      t.value == "|" || t.value == "heredoc")) {
        if (t.value == "heredoc") unknown(t.line, "a here-document cannot be modelled");
        // In a POSIX `case` arm, `;;` ends the arm: two `;` tokens, both plain separators here.
        finish(command, conditional);
        command.clear();
        if (t.value == "&&" || t.value == "||") {
          conditional_next = true;
        } else if (t.value == "|" || t.value == "&") {
          conditional_next = true;  // a pipeline or background job runs in a subshell
        } else {
          conditional_next = false;
        }
        conditional = conditional_next;
        continue;
      }
      command.push_back(&t);
    }
    finish(command, conditional);
    if (!stack_.empty()) unknown(last_line_, "a block is not closed; the file's structure cannot be followed");
    path_finding f;
    if (found_line_) {
      f.presence = path_presence::present;
      f.line = found_line_;
      f.detail = "line " + std::to_string(found_line_) + " puts " + dir_ + " on PATH";
    } else if (unknown_line_) {
      f.presence = path_presence::unknown;
      f.line = unknown_line_;
      f.detail = "line " + std::to_string(unknown_line_) + ": " + unknown_reason_;
    } else {
      f.detail = "no line puts " + dir_ + " on PATH";
    }
    return f;
  }

 private:
  enum class frame { block, case_block, function };

  void unknown(std::size_t line, std::string reason) {
    if (!unknown_line_) {
      unknown_line_ = line ? line : 1;
      unknown_reason_ = std::move(reason);
    }
  }
  bool depth0() const { return stack_.empty(); }
  void push(frame f) { stack_.push_back(f); }
  void pop(std::size_t line) {
    if (stack_.empty()) unknown(line, "a block ends that never began; the file's structure cannot be followed");
    else stack_.pop_back();
  }

  static bool is_word(const sh_token* t) { return !t->is_op; }
  static bool is_kw(const sh_token* t, std::string_view kw) { return !t->is_op && !t->quoted && t->value == kw; }

  /// Elements added to PATH at `line`; `references_path` false means PATH is replaced.
  void consider(const std::vector<std::string>& elements, bool references_path, std::size_t line, bool conditional) {
    bool hit = false;
    bool unresolved = false;
    for (const auto& e : elements) {
      if (e.find(unknown_mark) != std::string::npos) {
        unresolved = true;
        continue;
      }
      if (e.find(path_mark) != std::string::npos || e.empty() || e[0] != '/') continue;
      auto normal = normalize_path(e);
      if (normal && *normal == dir_) hit = true;
    }
    bool cond = conditional || !depth0();
    if (cond) {
      if (hit) unknown(line, "puts " + dir_ + " on PATH only under a condition");
      else if (unresolved) unknown(line, "a PATH element cannot be resolved without running the shell");
      else if (!references_path) unknown(line, "PATH is replaced under a condition");
      return;
    }
    if (hit) {
      found_line_ = line;
    } else if (!references_path) {
      found_line_ = 0;
      if (unresolved) unknown(line, "a PATH element cannot be resolved without running the shell");
    } else if (unresolved) {
      unknown(line, "a PATH element cannot be resolved without running the shell");
    }
  }

  static bool neutral_command(std::string_view w) {
    static const char* const names[] = {
        "alias", "unalias", "umask", "echo", "printf", "true", "false", ":", "test", "[", "[[", "bindkey",
        "shopt", "setopt", "unsetopt", "zstyle", "autoload", "compinit", "ulimit", "stty", "abbr", "complete",
        "uncomplete", "limit", "unlimit", "bind", "return", "shift", "history", "trap", "zmodload", "compdef",
        "set_color", "functions", "status", "string", "contains", "type", "cd", "rehash", "unhash", "onintr",
        "mesg", "export", "typeset", "declare", "local", "readonly", "integer", "unset", "set", "setenv",
        "unsetenv", "break", "continue", "breaksw", "fish_vi_key_bindings", "fish_default_key_bindings"};
    for (const char* n : names)
      if (w == n) return true;
    return false;
  }

  void finish(std::vector<const sh_token*> words, bool conditional) {
    // Drop redirections and their targets.
    std::vector<const sh_token*> cmd;
    for (std::size_t i = 0; i < words.size(); ++i) {
      if (words[i]->is_op && words[i]->value == "redir") {
        if (i + 1 < words.size() && is_word(words[i + 1])) ++i;
        if (!cmd.empty() && !cmd.back()->is_op && words[i]->glued && cmd.back()->value.size() <= 2 &&
            cmd.back()->value.find_first_not_of("0123456789") == std::string::npos)
          cmd.pop_back();  // `2>/dev/null`
        continue;
      }
      cmd.push_back(words[i]);
    }
    if (cmd.empty()) return;
    last_line_ = cmd.front()->line;
    switch (d_) {
      case shell_dialect::posix:
      case shell_dialect::zsh: posix_command(cmd, 0, conditional); break;
      case shell_dialect::fish: fish_command(cmd, 0, conditional); break;
      case shell_dialect::csh: csh_command(cmd, 0, conditional); break;
    }
  }

  // ---- POSIX sh / bash / zsh ----
  void posix_assignment(const std::vector<const sh_token*>& cmd, std::size_t& i, bool conditional) {
    const sh_token* t = cmd[i];
    std::string name = t->assign_name;
    bool is_path = name == "PATH";
    bool is_array = name == "path" && d_ == shell_dialect::zsh;
    // zsh arrays: `name=(a b c)` (the `(` is glued to the word).
    if (i + 1 < cmd.size() && cmd[i + 1]->is_op && cmd[i + 1]->value == "(" && cmd[i + 1]->glued &&
        t->assign_value.empty()) {
      std::vector<std::string> elements;
      std::size_t j = i + 2;
      bool references = t->assign_append;
      for (; j < cmd.size() && !(cmd[j]->is_op && cmd[j]->value == ")"); ++j)
        if (is_word(cmd[j])) {
          if (cmd[j]->value.find(path_mark) != std::string::npos) references = true;
          elements.push_back(cmd[j]->value);
        }
      i = j;
      if (is_array || is_path) consider(elements, references, t->line, conditional);
      return;
    }
    if (is_path) {
      auto elements = split_colons(t->assign_value);
      bool references = t->assign_append || t->assign_value.find(path_mark) != std::string::npos;
      consider(elements, references, t->line, conditional);
    } else if (is_array) {
      consider({t->assign_value}, t->assign_append, t->line, conditional);
    }
  }

  void posix_command(const std::vector<const sh_token*>& cmd, std::size_t i, bool conditional) {
    if (i >= cmd.size()) return;
    // A `case` arm starts with its pattern: `*i*) ...`.
    if (!stack_.empty() && stack_.back() == frame::case_block && !is_kw(cmd[i], "esac")) {
      for (std::size_t j = i; j < cmd.size(); ++j)
        if (cmd[j]->is_op && cmd[j]->value == ")") return posix_command(cmd, j + 1, conditional);
    }
    const sh_token* t = cmd[i];
    std::size_t line = t->line;
    if (t->is_op) {
      if (t->value == "(") {
        push(frame::block);  // subshell
        return posix_command(cmd, i + 1, conditional);
      }
      if (t->value == ")") {
        pop(line);
        return posix_command(cmd, i + 1, conditional);
      }
      return posix_command(cmd, i + 1, conditional);
    }
    if (is_kw(t, "if") || is_kw(t, "while") || is_kw(t, "until")) {
      push(frame::block);
      return;  // the condition runs a test; it does not change PATH
    }
    if (is_kw(t, "for") || is_kw(t, "select")) {
      push(frame::block);
      return;
    }
    if (is_kw(t, "case")) {
      push(frame::case_block);
      return;
    }
    if (is_kw(t, "then") || is_kw(t, "do") || is_kw(t, "else") || is_kw(t, "!") || is_kw(t, "time"))
      return posix_command(cmd, i + 1, conditional);
    if (is_kw(t, "elif")) return;
    if (is_kw(t, "{")) {
      push(frame::block);
      return posix_command(cmd, i + 1, conditional);
    }
    if (is_kw(t, "fi") || is_kw(t, "done") || is_kw(t, "esac") || is_kw(t, "}")) {
      pop(line);
      return posix_command(cmd, i + 1, conditional);
    }
    if (is_kw(t, "function")) {
      // `function name [()] [{]`: the body is defined, not run.
      std::size_t j = i + 2;
      while (j < cmd.size() && cmd[j]->is_op) ++j;
      if (j < cmd.size() && is_kw(cmd[j], "{")) push(frame::function);
      else pending_function_ = true;
      return;
    }
    // `name() {` / `name ()`.
    if (i + 2 < cmd.size() && cmd[i + 1]->is_op && cmd[i + 1]->value == "(" && cmd[i + 2]->is_op &&
        cmd[i + 2]->value == ")") {
      if (i + 3 < cmd.size() && is_kw(cmd[i + 3], "{")) push(frame::function);
      else if (i + 3 < cmd.size() && cmd[i + 3]->is_op && cmd[i + 3]->value == "(") push(frame::function);
      else pending_function_ = true;
      return;
    }
    if (pending_function_) {
      pending_function_ = false;
      if (is_kw(t, "{")) {
        push(frame::function);
        return;
      }
    }
    // Leading assignments: alone they set shell variables; before a command, only its environment.
    std::size_t j = i;
    while (j < cmd.size() && is_word(cmd[j]) && !cmd[j]->assign_name.empty()) {
      std::size_t k = j;
      if (k + 1 < cmd.size() && cmd[k + 1]->is_op && cmd[k + 1]->value == "(" && cmd[k + 1]->glued) {
        while (k < cmd.size() && !(cmd[k]->is_op && cmd[k]->value == ")")) ++k;
      }
      j = k + 1;
    }
    if (j > i) {
      if (j >= cmd.size()) {
        for (std::size_t k = i; k < cmd.size(); ++k)
          if (is_word(cmd[k]) && !cmd[k]->assign_name.empty()) posix_assignment(cmd, k, conditional);
        return;
      }
      return posix_command(cmd, j, conditional);
    }
    const std::string& w = t->value;
    if (!t->quoted && (w == "export" || w == "typeset" || w == "declare" || w == "local" || w == "readonly" ||
                       w == "integer")) {
      for (std::size_t k = i + 1; k < cmd.size(); ++k)
        if (is_word(cmd[k]) && !cmd[k]->assign_name.empty()) posix_assignment(cmd, k, conditional);
      return;
    }
    if (!t->quoted && w == "unset") {
      for (std::size_t k = i + 1; k < cmd.size(); ++k)
        if (is_word(cmd[k]) && (cmd[k]->value == "PATH" || (d_ == shell_dialect::zsh && cmd[k]->value == "path")))
          consider({}, false, line, conditional);
      return;
    }
    if (!t->quoted && w == "command" && i + 1 < cmd.size() &&
        (cmd[i + 1]->value == "-v" || cmd[i + 1]->value == "-V"))
      return;
    if (!t->quoted && neutral_command(w)) return;
    if (!t->quoted && (w == "." || w == "source"))
      return unknown(line, "`" + w + "` runs another file, which cannot be modelled");
    unknown(line, "`" + printable(w) + "` may change PATH and cannot be modelled");
  }

  // ---- fish ----
  void fish_command(const std::vector<const sh_token*>& cmd, std::size_t i, bool conditional) {
    while (i < cmd.size() && cmd[i]->is_op) ++i;
    if (i >= cmd.size()) return;
    const sh_token* t = cmd[i];
    std::size_t line = t->line;
    const std::string& w = t->value;
    if (t->quoted) return unknown(line, "a quoted command name cannot be modelled");
    if (w == "if" || w == "while") {
      push(frame::block);
      return;
    }
    if (w == "for" || w == "switch" || w == "function" || w == "begin") {
      push(w == "function" ? frame::function : frame::block);
      return;
    }
    if (w == "end") {
      pop(line);
      return fish_command(cmd, i + 1, conditional);
    }
    if (w == "else" || w == "case") return;
    if (w == "and" || w == "or") return fish_command(cmd, i + 1, true);
    if (w == "not" || w == "builtin" || w == "command" || w == "time") {
      if (w == "command" && i + 1 < cmd.size() && (cmd[i + 1]->value == "-v" || cmd[i + 1]->value == "-q" ||
                                                   cmd[i + 1]->value == "-s" || cmd[i + 1]->value == "--search"))
        return;
      return fish_command(cmd, i + 1, conditional);
    }
    if (w == "set") {
      bool erase = false, append = false, query = false;
      std::size_t k = i + 1;
      for (; k < cmd.size() && is_word(cmd[k]) && !cmd[k]->value.empty() && cmd[k]->value[0] == '-'; ++k) {
        const std::string& f = cmd[k]->value;
        if (f == "--erase" || (f[1] != '-' && f.find('e') != std::string::npos)) erase = true;
        if (f == "--append" || f == "--prepend" || (f[1] != '-' && (f.find('a') != std::string::npos ||
                                                                     f.find('p') != std::string::npos)))
          append = true;
        if (f == "--query" || f == "--names" || f == "--show" ||
            (f[1] != '-' && (f.find('q') != std::string::npos || f.find('n') != std::string::npos ||
                             f.find('S') != std::string::npos)))
          query = true;
      }
      if (k >= cmd.size() || query) return;
      const std::string& name = cmd[k]->value;
      if (name != "PATH" && name != "fish_user_paths") {
        if (name.find(unknown_mark) != std::string::npos || name.rfind("PATH[", 0) == 0)
          unknown(line, "a variable name cannot be resolved");
        return;
      }
      std::vector<std::string> elements;
      bool references = append || name == "fish_user_paths";
      for (std::size_t v = k + 1; v < cmd.size(); ++v) {
        if (!is_word(cmd[v])) continue;
        if (cmd[v]->value.find(path_mark) != std::string::npos) references = true;
        for (auto& part : split_colons(cmd[v]->value)) elements.push_back(part);
      }
      if (erase) elements.clear(), references = name == "fish_user_paths";
      consider(elements, references, line, conditional);
      return;
    }
    if (w == "fish_add_path") {
      std::vector<std::string> elements;
      for (std::size_t v = i + 1; v < cmd.size(); ++v)
        if (is_word(cmd[v]) && !(cmd[v]->value.size() > 1 && cmd[v]->value[0] == '-'))
          elements.push_back(cmd[v]->value);
      consider(elements, true, line, conditional);
      return;
    }
    if (neutral_command(w)) return;
    if (w == "." || w == "source") return unknown(line, "`" + w + "` runs another file, which cannot be modelled");
    unknown(line, "`" + printable(w) + "` may change PATH and cannot be modelled");
  }

  // ---- csh / tcsh ----
  void csh_command(const std::vector<const sh_token*>& cmd, std::size_t i, bool conditional) {
    if (i >= cmd.size()) return;
    const sh_token* t = cmd[i];
    std::size_t line = t->line;
    if (t->is_op) return csh_command(cmd, i + 1, conditional);
    const std::string& w = t->value;
    if (t->quoted) return unknown(line, "a quoted command name cannot be modelled");
    if (w == "if") {
      // `if ( expr ) then` opens a block; `if ( expr ) command` runs one command conditionally.
      std::size_t k = i + 1;
      int depth = 0;
      for (; k < cmd.size(); ++k) {
        if (cmd[k]->is_op && cmd[k]->value == "(") ++depth;
        if (cmd[k]->is_op && cmd[k]->value == ")" && --depth == 0) break;
      }
      if (k + 1 < cmd.size() && is_kw(cmd[k + 1], "then")) {
        push(frame::block);
        return;
      }
      return csh_command(cmd, k + 1, true);
    }
    if (w == "else") {
      // `else if ( expr ) then` continues the same block.
      return;
    }
    if (w == "endif" || w == "end" || w == "endsw") {
      pop(line);
      return;
    }
    if (w == "foreach" || w == "while" || w == "switch") {
      push(frame::block);
      return;
    }
    if (w == "case" || w == "default" || w == "default:") return;
    if (w == "setenv" || w == "unsetenv") {
      if (i + 1 >= cmd.size() || cmd[i + 1]->value != "PATH") return;
      if (w == "unsetenv") return consider({}, false, line, conditional);
      std::string value;
      for (std::size_t k = i + 2; k < cmd.size(); ++k)
        if (is_word(cmd[k])) value += cmd[k]->value;
      consider(split_colons(value), value.find(path_mark) != std::string::npos, line, conditional);
      return;
    }
    if (w == "set" || w == "unset") {
      std::size_t k = i + 1;
      while (k < cmd.size() && is_word(cmd[k]) && !cmd[k]->value.empty() && cmd[k]->value[0] == '-') ++k;
      if (k >= cmd.size()) return;
      bool path_var = cmd[k]->value == "path" || cmd[k]->value.rfind("path=", 0) == 0;
      if (!path_var) return;
      if (w == "unset") return consider({}, false, line, conditional);
      std::vector<std::string> elements;
      bool references = false;
      std::string first_value = cmd[k]->value.size() > 5 ? cmd[k]->value.substr(5) : std::string();
      if (!first_value.empty()) elements.push_back(first_value);
      for (std::size_t v = k + 1; v < cmd.size(); ++v) {
        if (!is_word(cmd[v]) || cmd[v]->value == "=") continue;
        std::string value = cmd[v]->value;
        if (!value.empty() && value[0] == '=') value.erase(0, 1);
        if (value.empty()) continue;
        elements.push_back(value);
      }
      for (const auto& e : elements)
        if (e.find(path_mark) != std::string::npos) references = true;
      consider(elements, references, line, conditional);
      return;
    }
    if (neutral_command(w)) return;
    if (w == "source") return unknown(line, "`source` runs another file, which cannot be modelled");
    unknown(line, "`" + printable(w) + "` may change PATH and cannot be modelled");
  }

  static std::string printable(std::string_view w) {
    std::string out;
    for (char c : w) out += (c == unknown_mark || c == path_mark) ? '$' : c;
    return out.size() > 40 ? out.substr(0, 40) + "..." : out;
  }

  shell_dialect d_;
  std::string dir_;
  std::vector<frame> stack_;
  bool pending_function_ = false;
  std::size_t found_line_ = 0;
  std::size_t unknown_line_ = 0;
  std::size_t last_line_ = 1;
  std::string unknown_reason_;
};

}  // namespace detail

/// Models whether `bytes` (one startup file in `dialect`) puts `dir` on PATH, for a user whose
/// home is `home` (`$HOME`, `~`). Bytes in [skip_begin, skip_end) are ignored: pass our own block's
/// span so the answer is about the user's own lines.
/// `model_path(".profile bytes", shell_dialect::posix, "/home/ann/bin", "/home/ann")`.
inline path_finding model_path(std::string_view bytes, shell_dialect dialect, std::string_view dir,
                               std::string_view home, std::size_t skip_begin = 0, std::size_t skip_end = 0) {
  auto normal_dir = normalize_path(dir);
  if (!normal_dir) return {path_presence::unknown, 0, normal_dir.error().message()};
  detail::sh_lexer lexer(bytes, dialect, home, skip_begin, skip_end);
  detail::path_modeller modeller(dialect, *normal_dir);
  return modeller.run(lexer.run());
}

/// Combines the answers for the files one shell reads: present if any is, else unknown if any
/// is, else absent.
inline path_finding combine_findings(const std::vector<path_finding>& findings) {
  path_finding out;
  for (const auto& f : findings)
    if (f.presence == path_presence::present) return f;
  for (const auto& f : findings)
    if (f.presence == path_presence::unknown) return f;
  if (!findings.empty()) out = findings.front();
  return out;
}

HOSTCFG_END_NAMESPACE
