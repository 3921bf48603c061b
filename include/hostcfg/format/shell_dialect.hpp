#pragma once
/// @file
/// The four shell-profile dialects hostcfg writes, and quoting of a literal string for each. Pure,
/// no I/O. Quoting rules (RELIABILITY.md "Shell profiles", checked against the real shells by
/// tests/format/shell_quoting_test.cpp):
///
/// | dialect | literal text is written as | why |
/// |---|---|---|
/// | posix (bash, sh, dash, ksh) and zsh | `'...'`, a `'` as `\'` between quoted runs | single quotes protect everything but `'`; `!` is not expanded inside them, even in an interactive shell |
/// | fish | `'...'` with `\` as `\\` and `'` as `\'` | fish treats backslash as an escape inside single quotes |
/// | csh/tcsh | `'...'` with `!` as `\!`, a `'` as `"'"` | csh expands `!` history events even inside single quotes (an interactive tcsh fails with "Event not found") |
///
/// NUL, newline, CR and every other control byte are refused before quoting: csh ends a quote at
/// a newline, and no shell can carry NUL in a variable.

#include <string>
#include <string_view>

#include "hostcfg/error.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// The syntax family of a startup file. zsh reads POSIX syntax but has its own `path` array.
enum class shell_dialect { posix, zsh, fish, csh };

/// "posix", "zsh", "fish", "csh".
inline const char* dialect_name(shell_dialect d) {
  switch (d) {
    case shell_dialect::posix: return "posix";
    case shell_dialect::zsh: return "zsh";
    case shell_dialect::fish: return "fish";
    case shell_dialect::csh: return "csh";
  }
  return "unknown";
}

/// Refuses text no profile line can carry: NUL, newline, CR, other C0 controls and DEL. `what`
/// names the value in the error ("directory", "marker line").
inline result<void> check_shell_text(std::string_view text, std::string_view what) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      std::string name = c == 0 ? "a NUL byte" : c == '\n' ? "a newline" : c == '\r' ? "a carriage return"
                                                                                     : "control byte " + std::to_string(c);
      return fail(errc::invalid_input, "quote for shell profile", std::string(what),
                  "contains " + name + " at byte " + std::to_string(i),
                  "use a directory whose name has no control characters");
    }
  }
  return {};
}

/// Quotes `text` so that `dialect` reads it back as exactly these bytes, with no expansion of any
/// kind. `text` must have passed `check_shell_text`.
/// `quote_literal(shell_dialect::posix, "it's")` == `'it'\''s'`.
inline std::string quote_literal(shell_dialect dialect, std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    switch (dialect) {
      case shell_dialect::posix:
      case shell_dialect::zsh:
        if (c == '\'') out += "'\\''";
        else out += c;
        break;
      case shell_dialect::fish:
        if (c == '\'' || c == '\\') out += '\\';
        out += c;
        break;
      case shell_dialect::csh:
        if (c == '\'') out += "'\"'\"'";
        else if (c == '!') out += "\\!";
        else out += c;
        break;
    }
  }
  out += "'";
  return out;
}

HOSTCFG_END_NAMESPACE
