// The shell-profile codec: file choice, rendering, PATH modelling, probe/apply/revert, and the
// real-world corpus round trip. Real shells are exercised in shell_quoting_test.cpp.
#include "hostcfg/format/shell_profile.hpp"

#include <dirent.h>

#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "support/real_fs.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

using hostcfg_test::read_whole_file_or_empty;

user_identity user_with(std::string shell) {
  user_identity u;
  u.uid = 501;
  u.gid = 20;
  u.name = "ann";
  u.home = "/Users/ann";
  u.shell = std::move(shell);
  return u;
}

file_exists_fn exists_in(std::set<std::string> files) {
  return [files](const std::string& p) { return files.count(p) > 0; };
}

path_block_spec spec_for(shell_dialect d, std::string dir = "/Users/ann/.docker/bin") {
  return {"com.docker.desktop", std::move(dir), "/Users/ann", d, std::nullopt};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// File choice

TEST_CASE("zsh edits .zshrc in ZDOTDIR when set, else in home") {
  auto u = user_with("/bin/zsh");
  auto c = choose_profile_files(u, "com.docker.desktop", exists_in({"/Users/ann/.zshrc"}));
  REQUIRE(c);
  REQUIRE(c->files.size() == 1);
  CHECK(c->files[0].path == "/Users/ann/.zshrc");
  CHECK(c->files[0].dialect == shell_dialect::zsh);
  CHECK(c->files[0].exists);
  CHECK(c->reload_command == "exec zsh");

  u.zdotdir = "/Users/ann/.config/zsh/";
  c = choose_profile_files(u, "com.docker.desktop", exists_in({"/Users/ann/.zshrc"}));
  REQUIRE(c);
  REQUIRE(c->files.size() == 1);
  CHECK(c->files[0].path == "/Users/ann/.config/zsh/.zshrc");
  CHECK_FALSE(c->files[0].exists);

  u.zdotdir = "relative/zsh";
  c = choose_profile_files(u, "com.docker.desktop", exists_in({}));
  REQUIRE_FALSE(c);
  CHECK(c.error().is(errc::invalid_input));
  CHECK(c.error().message().find("ZDOTDIR") != std::string::npos);
}

TEST_CASE("bash edits the first existing login file, creates .profile if none, plus an existing .bashrc") {
  const std::vector<std::string> login = {".bash_profile", ".bash_login", ".profile"};
  int cases = 0;
  for (int mask = 0; mask < 16; ++mask) {
    std::set<std::string> present;
    for (int i = 0; i < 3; ++i)
      if (mask & (1 << i)) present.insert("/Users/ann/" + login[i]);
    bool rc = (mask & 8) != 0;
    if (rc) present.insert("/Users/ann/.bashrc");
    auto c = choose_profile_files(user_with("/bin/bash"), "app", exists_in(present));
    REQUIRE(c);
    std::string expected_login = "/Users/ann/.profile";
    bool expected_exists = false;
    for (int i = 0; i < 3; ++i)
      if (mask & (1 << i)) {
        expected_login = "/Users/ann/" + login[i];
        expected_exists = true;
        break;
      }
    CAPTURE(mask);
    REQUIRE(c->files.size() == (rc ? 2u : 1u));
    CHECK(c->files[0].path == expected_login);
    CHECK(c->files[0].exists == expected_exists);
    CHECK(c->files[0].dialect == shell_dialect::posix);
    if (rc) {
      CHECK(c->files[1].path == "/Users/ann/.bashrc");
      CHECK(c->files[1].exists);
    }
    // Never a created .bash_profile/.bash_login: they would shadow .profile.
    for (const auto& f : c->files)
      if (!f.exists) CHECK(f.path == "/Users/ann/.profile");
    ++cases;
  }
  CHECK(cases == 16);
}

TEST_CASE("sh, dash and ksh edit .profile") {
  for (const char* shell : {"/bin/sh", "/bin/dash", "/bin/ksh", "/usr/bin/mksh"}) {
    CAPTURE(shell);
    auto c = choose_profile_files(user_with(shell), "app", exists_in({"/Users/ann/.bash_profile"}));
    REQUIRE(c);
    REQUIRE(c->files.size() == 1);
    CHECK(c->files[0].path == "/Users/ann/.profile");
    CHECK(c->files[0].dialect == shell_dialect::posix);
    CHECK_FALSE(c->files[0].exists);
  }
}

TEST_CASE("fish edits its own conf.d file under XDG_CONFIG_HOME, default ~/.config") {
  auto u = user_with("/opt/homebrew/bin/fish");
  auto c = choose_profile_files(u, "com.docker.desktop", exists_in({}));
  REQUIRE(c);
  REQUIRE(c->files.size() == 1);
  CHECK(c->files[0].path == "/Users/ann/.config/fish/conf.d/com.docker.desktop.fish");
  CHECK(c->files[0].dialect == shell_dialect::fish);
  CHECK(c->reload_command == "exec fish");

  u.xdg_config_home = "/Users/ann/xdg";
  c = choose_profile_files(u, "com.docker.desktop", exists_in({}));
  REQUIRE(c);
  CHECK(c->files[0].path == "/Users/ann/xdg/fish/conf.d/com.docker.desktop.fish");

  u.xdg_config_home = "not/absolute";  // ignored, as the XDG spec says
  c = choose_profile_files(u, "com.docker.desktop", exists_in({}));
  REQUIRE(c);
  CHECK(c->files[0].path == "/Users/ann/.config/fish/conf.d/com.docker.desktop.fish");
}

TEST_CASE("tcsh edits .tcshrc unless only .cshrc exists; csh the reverse") {
  struct row {
    const char* shell;
    bool tcshrc, cshrc;
    const char* expected;
    bool exists;
  };
  const row rows[] = {
      {"/bin/tcsh", false, false, "/Users/ann/.tcshrc", false}, {"/bin/tcsh", true, false, "/Users/ann/.tcshrc", true},
      {"/bin/tcsh", false, true, "/Users/ann/.cshrc", true},    {"/bin/tcsh", true, true, "/Users/ann/.tcshrc", true},
      {"/bin/csh", false, false, "/Users/ann/.cshrc", false},   {"/bin/csh", true, false, "/Users/ann/.tcshrc", true},
      {"/bin/csh", false, true, "/Users/ann/.cshrc", true},     {"/bin/csh", true, true, "/Users/ann/.cshrc", true},
  };
  for (const auto& r : rows) {
    std::set<std::string> present;
    if (r.tcshrc) present.insert("/Users/ann/.tcshrc");
    if (r.cshrc) present.insert("/Users/ann/.cshrc");
    auto c = choose_profile_files(user_with(r.shell), "app", exists_in(present));
    REQUIRE(c);
    CAPTURE(r.shell);
    CAPTURE(r.tcshrc);
    CAPTURE(r.cshrc);
    REQUIRE(c->files.size() == 1);
    CHECK(c->files[0].path == r.expected);
    CHECK(c->files[0].exists == r.exists);
    CHECK(c->files[0].dialect == shell_dialect::csh);
  }
}

TEST_CASE("an unknown shell is refused by name; the caller's override wins") {
  auto c = choose_profile_files(user_with("/usr/bin/nu"), "app", exists_in({}));
  REQUIRE_FALSE(c);
  CHECK(c.error().is(errc::unsupported));
  CHECK(c.error().message().find("'nu'") != std::string::npos);
  c = choose_profile_files(user_with("/usr/bin/nu"), "app", exists_in({}), "zsh");
  REQUIRE(c);
  CHECK(c->files[0].path == "/Users/ann/.zshrc");
  c = choose_profile_files(user_with("-zsh"), "app", exists_in({}));
  REQUIRE(c);
  CHECK(c->shell == "zsh");
  c = choose_profile_files(user_with(""), "app", exists_in({}));
  REQUIRE_FALSE(c);
  CHECK(c.error().is(errc::unsupported));
  c = choose_profile_files(user_with("/bin/zsh"), "bad id", exists_in({}));
  REQUIRE_FALSE(c);
  CHECK(c.error().is(errc::invalid_input));
}

TEST_CASE("dialect_for_file names the syntax of a caller-chosen file") {
  CHECK(dialect_for_file("/h/.config/fish/config.fish") == shell_dialect::fish);
  CHECK(dialect_for_file("/h/.tcshrc") == shell_dialect::csh);
  CHECK(dialect_for_file("/h/.cshrc") == shell_dialect::csh);
  CHECK(dialect_for_file("/h/.login") == shell_dialect::csh);
  CHECK(dialect_for_file("/h/.zprofile") == shell_dialect::zsh);
  CHECK(dialect_for_file("/h/.zshrc") == shell_dialect::zsh);
  CHECK(dialect_for_file("/h/.bashrc") == shell_dialect::posix);
  CHECK(dialect_for_file("/h/.profile") == shell_dialect::posix);
}

// ---------------------------------------------------------------------------------------------
// Rendering

TEST_CASE("the block is golden per dialect and $HOME-relative under home") {
  auto posix = render_path_block(spec_for(shell_dialect::posix));
  REQUIRE(posix);
  CHECK(*posix ==
        "# >>> hostcfg com.docker.desktop v1 >>>\n"
        "# Added by com.docker.desktop: puts a directory on PATH. Delete this block to opt out.\n"
        "case \":${PATH}:\" in\n"
        "  *:\"${HOME}\"'/.docker/bin':*) ;;\n"
        "  *) export PATH=\"${HOME}\"'/.docker/bin'\":${PATH}\" ;;\n"
        "esac\n"
        "# <<< hostcfg com.docker.desktop <<<\n");
  CHECK(posix->find("/Users/ann") == std::string::npos);
  auto zsh = render_path_block(spec_for(shell_dialect::zsh));
  REQUIRE(zsh);
  CHECK(*zsh == *posix);

  auto fish = render_path_block(spec_for(shell_dialect::fish));
  REQUIRE(fish);
  CHECK(*fish ==
        "# >>> hostcfg com.docker.desktop v1 >>>\n"
        "# Added by com.docker.desktop: puts a directory on PATH. Delete this block to opt out.\n"
        "if not contains -- \"$HOME\"'/.docker/bin' $PATH\n"
        "    set -gx PATH \"$HOME\"'/.docker/bin' $PATH\n"
        "end\n"
        "# <<< hostcfg com.docker.desktop <<<\n");

  auto csh = render_path_block(spec_for(shell_dialect::csh));
  REQUIRE(csh);
  CHECK(*csh ==
        "# >>> hostcfg com.docker.desktop v1 >>>\n"
        "# Added by com.docker.desktop: puts a directory on PATH. Delete this block to opt out.\n"
        "if ( \":${PATH}:\" =~ *:\"${HOME}\"'/.docker/bin':* ) then\n"
        "else\n"
        "    setenv PATH \"${HOME}\"'/.docker/bin'\\:\"${PATH}\"\n"
        "endif\n"
        "# <<< hostcfg com.docker.desktop <<<\n");
}

TEST_CASE("a directory outside home is written literally, and CRLF files get CRLF lines") {
  auto b = render_path_block(spec_for(shell_dialect::posix, "/opt/app/bin"), "\r\n");
  REQUIRE(b);
  CHECK(b->find("  *) export PATH='/opt/app/bin'\":${PATH}\" ;;\r\n") != std::string::npos);
  CHECK(b->find("${HOME}") == std::string::npos);
  std::size_t lf = 0, crlf = 0;
  for (std::size_t i = 0; i < b->size(); ++i)
    if ((*b)[i] == '\n') {
      ++lf;
      if (i > 0 && (*b)[i - 1] == '\r') ++crlf;
    }
  CHECK(lf == 7);
  CHECK(crlf == 7);
  // The home directory itself is just "$HOME"; a sibling with the home as prefix is not under it.
  auto h = render_path_block(spec_for(shell_dialect::fish, "/Users/ann"));
  REQUIRE(h);
  CHECK(h->find("contains -- \"$HOME\" $PATH") != std::string::npos);
  auto sib = render_path_block(spec_for(shell_dialect::posix, "/Users/anna/bin"));
  REQUIRE(sib);
  CHECK(sib->find("'/Users/anna/bin'") != std::string::npos);
}

TEST_CASE("quoting per dialect for every special character") {
  const std::string s = "a b'c\"d$e`f\\g!h";
  CHECK(quote_literal(shell_dialect::posix, s) == "'a b'\\''c\"d$e`f\\g!h'");
  CHECK(quote_literal(shell_dialect::zsh, s) == "'a b'\\''c\"d$e`f\\g!h'");
  CHECK(quote_literal(shell_dialect::fish, s) == "'a b\\'c\"d$e`f\\\\g!h'");
  CHECK(quote_literal(shell_dialect::csh, s) == "'a b'\"'\"'c\"d$e`f\\g\\!h'");
}

TEST_CASE("NUL, newline, CR, control bytes, ':' and relative directories are refused with a reason") {
  struct row {
    std::string dir;
    const char* words;
  };
  const row rows[] = {
      {std::string("/Users/ann/a\0b", 14), "NUL"},
      {"/Users/ann/a\nb", "newline"},
      {"/Users/ann/a\rb", "carriage return"},
      {"/Users/ann/a\x1b[31mb", "control byte 27"},
      {"/Users/ann/a\x7f", "control byte 127"},
      {"/Users/ann/a:b", "':'"},
      {"bin", "not an absolute path"},
  };
  for (const auto& r : rows) {
    for (auto d : {shell_dialect::posix, shell_dialect::zsh, shell_dialect::fish, shell_dialect::csh}) {
      auto b = render_path_block(spec_for(d, r.dir));
      REQUIRE_FALSE(b);
      CHECK(b.error().is(errc::invalid_input));
      CAPTURE(b.error().message());
      CHECK(b.error().message().find(r.words) != std::string::npos);
      auto a = apply_profile_block("x\n", spec_for(d, r.dir));
      CHECK_FALSE(a);
    }
  }
  // UTF-8 is fine.
  CHECK(render_path_block(spec_for(shell_dialect::posix, "/Users/ann/Programme/\xc3\xa9t\xc3\xa9")));
  // csh comments are read through history expansion: no '!' in marker lines for csh.
  auto bang = spec_for(shell_dialect::csh);
  bang.markers = custom_markers("# Added by Docker Desktop!", "# End of section");
  auto b = render_path_block(bang);
  REQUIRE_FALSE(b);
  CHECK(b.error().message().find("'!'") != std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Apply / revert on bytes

TEST_CASE("apply appends to a file, twice is once, revert gives the original bytes") {
  const std::string original = "export EDITOR=vi\n";
  auto spec = spec_for(shell_dialect::posix);
  auto first = apply_profile_block(original, spec);
  REQUIRE(first);
  CHECK(first->changed());
  CHECK(first->record.kind == profile_edit_record::kind_t::inserted);
  CHECK(first->record.lead.empty());
  CHECK(first->bytes == original + *render_path_block(spec));
  auto second = apply_profile_block(first->bytes, spec);
  REQUIRE(second);
  CHECK_FALSE(second->changed());
  CHECK(second->bytes == first->bytes);
  auto back = revert_profile_block(first->bytes, first->record, default_markers("com.docker.desktop"));
  REQUIRE(back);
  CHECK(back->removed);
  CHECK(back->bytes == original);
}

TEST_CASE("a file without a final newline gets one line ending before the block, removed on revert") {
  const std::string original = "export EDITOR=vi";
  auto spec = spec_for(shell_dialect::posix);
  auto edit = apply_profile_block(original, spec);
  REQUIRE(edit);
  CHECK(edit->record.lead == "\n");
  CHECK(edit->bytes.substr(0, original.size() + 1) == original + "\n");
  CHECK(edit->bytes.substr(original.size() + 1, 6) == "# >>> ");
  auto back = revert_profile_block(edit->bytes, edit->record, default_markers("com.docker.desktop"));
  REQUIRE(back);
  CHECK(back->bytes == original);
  // The user appended after our block: the separating newline stays, nothing is glued together.
  std::string appended = edit->bytes + "alias ll='ls -l'\n";
  back = revert_profile_block(appended, edit->record, default_markers("com.docker.desktop"));
  REQUIRE(back);
  CHECK(back->bytes == original + "\nalias ll='ls -l'\n");
}

TEST_CASE("an empty file gets only the block; CRLF files keep CRLF and odd bytes stay") {
  auto spec = spec_for(shell_dialect::zsh);
  auto empty = apply_profile_block("", spec);
  REQUIRE(empty);
  CHECK(empty->bytes == *render_path_block(spec));
  const std::string crlf = "setopt AUTO_CD\r\n# caf\xc3\xa9 \xff\xfe\r\nexport X=1";
  auto edit = apply_profile_block(crlf, spec);
  REQUIRE(edit);
  CHECK(edit->record.lead == "\r\n");
  CHECK(edit->bytes == crlf + "\r\n" + *render_path_block(spec, "\r\n"));
  auto back = revert_profile_block(edit->bytes, edit->record, default_markers("com.docker.desktop"));
  REQUIRE(back);
  CHECK(back->bytes == crlf);
}

TEST_CASE("an outdated block is rewritten in place and revert restores the older block") {
  auto old_spec = spec_for(shell_dialect::posix, "/Users/ann/.old/bin");
  auto old_block = *render_path_block(old_spec);
  // An older marker version: found through begin_prefixes.
  std::string old_v0 = old_block;
  old_v0.replace(old_v0.find(" v1 >>>"), 7, " v0 >>>");
  const std::string original = "A=1\n" + old_v0 + "B=2\n";
  auto spec = spec_for(shell_dialect::posix);
  auto probe = probe_profile(original, spec);
  REQUIRE(probe);
  CHECK(probe->state == profile_state::outdated);
  auto edit = apply_profile_block(original, spec);
  REQUIRE(edit);
  CHECK(edit->record.kind == profile_edit_record::kind_t::replaced);
  CHECK(edit->record.previous == old_v0);
  CHECK(edit->bytes == "A=1\n" + *render_path_block(spec) + "B=2\n");
  auto back = revert_profile_block(edit->bytes, edit->record, default_markers("com.docker.desktop"));
  REQUIRE(back);
  CHECK(back->bytes == original);
}

TEST_CASE("a block at the very end without a final newline keeps that shape when current") {
  auto spec = spec_for(shell_dialect::posix);
  std::string block = *render_path_block(spec);
  std::string bytes = "A=1\n" + block.substr(0, block.size() - 1);
  auto probe = probe_profile(bytes, spec);
  REQUIRE(probe);
  CHECK(probe->state == profile_state::current);
  auto edit = apply_profile_block(bytes, spec);
  REQUIRE(edit);
  CHECK_FALSE(edit->changed());
  CHECK(edit->bytes == bytes);
}

TEST_CASE("a block the user changed is reported, not removed; a deleted block is an opt-out") {
  auto spec = spec_for(shell_dialect::posix);
  auto edit = apply_profile_block("A=1\n", spec);
  REQUIRE(edit);
  std::string changed = edit->bytes;
  changed.replace(changed.find("export PATH"), 6, "EXPORT");
  auto r = revert_profile_block(changed, edit->record, default_markers("com.docker.desktop"));
  REQUIRE_FALSE(r);
  CHECK(r.error().is(errc::drifted));
  CHECK(r.error().message().find("line 2") != std::string::npos);

  auto gone = revert_profile_block("A=1\n", edit->record, default_markers("com.docker.desktop"));
  REQUIRE(gone);
  CHECK_FALSE(gone->removed);
  CHECK(gone->bytes == "A=1\n");
}

TEST_CASE("broken markers leave the file alone") {
  auto spec = spec_for(shell_dialect::posix);
  const std::string begin_only = "A=1\n# >>> hostcfg com.docker.desktop v1 >>>\nB=2\n";
  auto a = apply_profile_block(begin_only, spec);
  REQUIRE_FALSE(a);
  CHECK(a.error().is(errc::broken_markers));
  auto p = probe_profile(begin_only, spec);
  REQUIRE_FALSE(p);
  CHECK(p.error().is(errc::broken_markers));
  const std::string end_only = "# <<< hostcfg com.docker.desktop <<<\n";
  CHECK_FALSE(apply_profile_block(end_only, spec));
}

TEST_CASE("the block goes before Fig's keep-at-the-bottom block, never inside another tool's block") {
  const std::string fig =
      "# Fig pre block. Keep at the top of this file.\n"
      "[[ -f x ]] && builtin source x\n"
      "\n"
      "### MANAGED BY RANCHER DESKTOP START (DO NOT EDIT)\n"
      "export PATH=\"${HOME}/.rd/bin:${PATH+:${PATH}}\"\n"
      "### MANAGED BY RANCHER DESKTOP END (DO NOT EDIT)\n"
      "\n"
      "# Fig post block. Keep at the bottom of this file.\n"
      "[[ -f y ]] && builtin source y\n";
  auto spec = spec_for(shell_dialect::posix);
  auto foreign = find_foreign_blocks(fig, default_markers("com.docker.desktop"));
  REQUIRE(foreign.size() == 3);
  CHECK(foreign[0].first_line == 1);
  CHECK(foreign[0].last_line == 2);
  CHECK(foreign[1].owner == "managed by rancher desktop");
  CHECK(foreign[1].first_line == 4);
  CHECK(foreign[1].last_line == 6);
  CHECK(foreign[2].keep_at_bottom);
  CHECK(foreign[2].first_line == 8);
  auto edit = apply_profile_block(fig, spec);
  REQUIRE(edit);
  std::size_t at = fig.find("# Fig post block");
  CHECK(edit->bytes == fig.substr(0, at) + *render_path_block(spec) + fig.substr(at));

  const std::string conda_open = "A=1\n# >>> conda initialize >>>\neval x\n";
  auto refused = apply_profile_block(conda_open, spec);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().is(errc::conflict));
  CHECK(refused.error().message().find("conda initialize") != std::string::npos);

  const std::string ours_inside = "# >>> conda initialize >>>\n" + *render_path_block(spec_for(shell_dialect::posix, "/x")) +
                                  "# <<< conda initialize <<<\n";
  refused = apply_profile_block(ours_inside, spec);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().is(errc::conflict));
  // Nothing to change is not a conflict: a current block stays where it is.
  const std::string current_inside = "# >>> conda initialize >>>\n" + *render_path_block(spec) + "# <<< conda initialize <<<\n";
  auto kept = apply_profile_block(current_inside, spec);
  REQUIRE(kept);
  CHECK_FALSE(kept->changed());
  CHECK(kept->bytes == current_inside);
}

TEST_CASE("a block appended right after a keep-at-the-top block is not inside it (fuzz regression)") {
  // The fuzzer found: a Fig pre block as the last lines of a file, no blank line after it. The
  // appended block used to count as part of Fig's block, so the second apply refused.
  const std::string original = "A=1\n# Fig pre block. Keep at the top of this file.\nbuiltin source x\n";
  auto spec = spec_for(shell_dialect::csh);
  auto edit = apply_profile_block(original, spec);
  REQUIRE(edit);
  CHECK(edit->bytes == original + *render_path_block(spec));
  auto foreign = find_foreign_blocks(edit->bytes, default_markers("com.docker.desktop"));
  REQUIRE(foreign.size() == 1);
  CHECK(foreign[0].last_line == 3);
  auto again = apply_profile_block(edit->bytes, spec);
  REQUIRE(again);
  CHECK_FALSE(again->changed());
  auto back = revert_profile_block(edit->bytes, edit->record, default_markers("com.docker.desktop"));
  REQUIRE(back);
  CHECK(back->bytes == original);
}

TEST_CASE("another hostcfg app's block is a closed foreign block, and ours goes after it") {
  auto other = *render_path_block({"com.other.app", "/opt/other/bin", "/Users/ann", shell_dialect::posix, std::nullopt});
  auto foreign = find_foreign_blocks(other, default_markers("com.docker.desktop"));
  REQUIRE(foreign.size() == 1);
  CHECK(foreign[0].closed);
  CHECK(foreign[0].owner == "hostcfg com.other.app v1");
  auto edit = apply_profile_block(other, spec_for(shell_dialect::posix));
  REQUIRE(edit);
  CHECK(edit->bytes == other + *render_path_block(spec_for(shell_dialect::posix)));
}

// ---------------------------------------------------------------------------------------------
// Probe and the PATH model

TEST_CASE("probe reports current, absent, on_path_already and unknown") {
  auto spec = spec_for(shell_dialect::posix);
  auto block = *render_path_block(spec);
  auto p = probe_profile("A=1\n" + block, spec);
  REQUIRE(p);
  CHECK(p->state == profile_state::current);
  CHECK(p->user_lines.presence == path_presence::absent);  // our own block is not "the user's line"
  p = probe_profile("A=1\n", spec);
  REQUIRE(p);
  CHECK(p->state == profile_state::absent);
  p = probe_profile("export PATH=\"$HOME/.docker/bin:$PATH\"\n", spec);
  REQUIRE(p);
  CHECK(p->state == profile_state::on_path_already);
  CHECK(p->user_lines.line == 1);
  p = probe_profile("A=1\n. ~/.cargo/env\n", spec);
  REQUIRE(p);
  CHECK(p->state == profile_state::unknown);
  CHECK(p->user_lines.detail == "line 2: `.` runs another file, which cannot be modelled");
}

namespace {
path_presence model(std::string_view bytes, shell_dialect d, std::string dir = "/Users/ann/.docker/bin") {
  return model_path(bytes, d, dir, "/Users/ann").presence;
}
}  // namespace

TEST_CASE("PATH model: every recognised construct finds the directory") {
  using D = shell_dialect;
  const auto P = path_presence::present;
  CHECK(model("export PATH=\"$HOME/.docker/bin:$PATH\"\n", D::posix) == P);
  CHECK(model("PATH=${HOME}/.docker/bin:$PATH\n", D::posix) == P);
  CHECK(model("PATH=~/.docker/bin:$PATH\n", D::posix) == P);
  CHECK(model("PATH=\"$PATH:/Users/ann/.docker/bin/\"\n", D::posix) == P);
  CHECK(model("PATH+=:$HOME/.docker/bin\n", D::posix) == P);
  CHECK(model("typeset -x PATH=$HOME/.docker/bin:$PATH\n", D::zsh) == P);
  CHECK(model("path+=(~/.docker/bin)\n", D::zsh) == P);
  CHECK(model("path=($HOME/.docker/bin $path)\n", D::zsh) == P);
  CHECK(model("export PATH=\"${HOME}/.docker/bin:${PATH+:${PATH}}\"\n", D::zsh) == P);
  CHECK(model("fish_add_path \"$HOME/.docker/bin\"\n", D::fish) == P);
  CHECK(model("fish_add_path -g ~/.docker/bin\n", D::fish) == P);
  CHECK(model("set -gx PATH $HOME/.docker/bin $PATH\n", D::fish) == P);
  CHECK(model("set -gx PATH $HOME/.docker/bin:$PATH\n", D::fish) == P);
  CHECK(model("set -U fish_user_paths ~/.docker/bin $fish_user_paths\n", D::fish) == P);
  CHECK(model("setenv PATH \"${HOME}/.docker/bin\"\\:\"${PATH}\"\n", D::csh) == P);
  CHECK(model("set path = ($path $HOME/.docker/bin)\n", D::csh) == P);
  CHECK(model("set path=(~/.docker/bin $path)\n", D::csh) == P);
  // Neutral lines around it change nothing.
  CHECK(model("alias ll='ls -l'\nsetopt AUTO_CD\nexport EDITOR=vim\nZSH_THEME=\"x\"\nplugins=(git)\n"
              "export PATH=$HOME/.docker/bin:$PATH\n# source ~/.x\n",
              D::zsh) == P);
}

TEST_CASE("PATH model: absent only when every line is understood") {
  using D = shell_dialect;
  const auto A = path_presence::absent;
  CHECK(model("", D::posix) == A);
  CHECK(model("export EDITOR=vi\nalias l='ls'\nexport PATH=\"$HOME/bin:$PATH\"\n", D::posix) == A);
  CHECK(model("if [ -d \"$HOME/bin\" ]; then\n  PATH=\"$HOME/bin:$PATH\"\nfi\n", D::posix) == A);
  CHECK(model("set -gx EDITOR nvim\nfish_add_path /usr/local/go/bin\n", D::fish) == A);
  CHECK(model("set path = (/sbin /bin $HOME/bin)\nsetenv EDITOR vi\n", D::csh) == A);
  // A later reset of PATH without $PATH drops an earlier addition.
  CHECK(model("PATH=$HOME/.docker/bin:$PATH\nPATH=/usr/bin:/bin\n", D::posix) == A);
}

TEST_CASE("PATH model: sourcing, unknown commands, conditionals and unknown variables answer unknown") {
  using D = shell_dialect;
  const auto U = path_presence::unknown;
  CHECK(model(". \"$HOME/.cargo/env\"\n", D::posix) == U);
  CHECK(model("source $ZSH/oh-my-zsh.sh\n", D::zsh) == U);
  CHECK(model("eval \"$(brew shellenv)\"\n", D::zsh) == U);
  CHECK(model("load_file_if_exists x\n", D::zsh) == U);
  CHECK(model("[ -d ~/.docker/bin ] && PATH=~/.docker/bin:$PATH\n", D::posix) == U);
  CHECK(model("if true; then\n export PATH=$HOME/.docker/bin:$PATH\nfi\n", D::posix) == U);
  CHECK(model("export PATH=$DOCKER_HOME/bin:$PATH\n", D::posix) == U);
  CHECK(model("export PATH=\"$(brew --prefix)/bin:$PATH\"\n", D::posix) == U);
  CHECK(model("export PATH=~bob/bin:$PATH\n", D::posix) == U);
  CHECK(model("fenv source ~/.profile\n", D::fish) == U);
  CHECK(model("set -gx PATH (brew --prefix)/bin $PATH\n", D::fish) == U);
  CHECK(model("if test -d ~/.docker/bin\n  fish_add_path ~/.docker/bin\nend\n", D::fish) == U);
  CHECK(model("if ( -d ~/.docker/bin ) setenv PATH ~/.docker/bin:$PATH\n", D::csh) == U);
  CHECK(model("source ~/.aliases\n", D::csh) == U);
  CHECK(model("cat <<EOF\nexport PATH=x\nEOF\n", D::posix) == U);
  CHECK(model("fi\n", D::posix) == U);
  CHECK(model("if true; then\n", D::posix) == U);
  // Present wins over an unknown line: the unconditional addition stands.
  CHECK(model(". x\nexport PATH=$HOME/.docker/bin:$PATH\n", D::posix) == path_presence::present);
}

TEST_CASE("PATH model: comments, quotes, continuations and case arms are followed") {
  using D = shell_dialect;
  CHECK(model("# export PATH=$HOME/.docker/bin:$PATH\n", D::posix) == path_presence::absent);
  CHECK(model("echo '# not a comment' # comment; source x\nexport \\\n  PATH=$HOME/.docker/bin:$PATH\n", D::posix) ==
        path_presence::present);
  CHECK(model("case $- in\n  *i*) ;;\n    *) return;;\nesac\nPATH=~/.docker/bin:$PATH\n", D::posix) ==
        path_presence::present);
  CHECK(model("f() {\n  . x\n}\n", D::posix) == path_presence::unknown);
  CHECK(model("x='a\nb'\nPATH=~/.docker/bin:$PATH\n", D::posix) == path_presence::present);
  auto f = model_path("alias a=b\nsource ~/x\n", D::posix, "/Users/ann/.docker/bin", "/Users/ann");
  CHECK(f.presence == path_presence::unknown);
  CHECK(f.line == 2);
}

// ---------------------------------------------------------------------------------------------
// The real-world corpus

namespace {
struct corpus_file {
  std::string name;
  std::string bytes;
  shell_dialect dialect;
};

std::vector<corpus_file> corpus_profiles() {
  std::vector<corpus_file> out;
  std::string dir = hostcfg_test::corpus_dir() + "/profiles";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    auto ends = [&](const char* s) {
      std::string suffix(s);
      return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    shell_dialect dialect = ends(".fish")                       ? shell_dialect::fish
                            : (ends(".cshrc") || ends(".tcshrc")) ? shell_dialect::csh
                            : ends(".zshrc")                    ? shell_dialect::zsh
                                                                : shell_dialect::posix;
    out.push_back({name, read_whole_file_or_empty(dir + "/" + name), dialect});
  }
  closedir(d);
  return out;
}
}  // namespace

TEST_CASE("corpus: apply then revert gives identical bytes, apply twice is once, outside bytes untouched") {
  auto files = corpus_profiles();
  if (files.empty()) {
    HOSTCFG_SKIP("no profiles in " + hostcfg_test::corpus_dir() + "/profiles");
    return;
  }
  CHECK(files.size() >= 16);
  auto markers = default_markers("com.docker.desktop");
  for (const auto& f : files) {
    CAPTURE(f.name);
    auto spec = spec_for(f.dialect);
    auto edit = apply_profile_block(f.bytes, spec);
    REQUIRE(edit);
    REQUIRE(edit->record.kind == profile_edit_record::kind_t::inserted);
    // Bytes outside the block: a prefix and a suffix of the original, nothing else changed.
    std::size_t at = edit->bytes.find(markers.begin_line) - edit->record.lead.size();
    CHECK(edit->bytes.substr(0, at) == f.bytes.substr(0, at));
    CHECK(edit->bytes.substr(at + edit->record.lead.size() + edit->record.block.size()) == f.bytes.substr(at));
    // Never inside another tool's block.
    for (const auto& b : find_foreign_blocks(f.bytes, markers)) CHECK_FALSE((at > b.begin && at < b.end));
    auto again = apply_profile_block(edit->bytes, spec);
    REQUIRE(again);
    CHECK_FALSE(again->changed());
    CHECK(again->bytes == edit->bytes);
    auto probe = probe_profile(edit->bytes, spec);
    REQUIRE(probe);
    CHECK(probe->state == profile_state::current);
    auto back = revert_profile_block(edit->bytes, edit->record, markers);
    REQUIRE(back);
    CHECK(back->removed);
    CHECK(back->bytes == f.bytes);
  }
}

TEST_CASE("corpus: the PATH model's answers for the real files") {
  auto files = corpus_profiles();
  if (files.empty()) {
    HOSTCFG_SKIP("no profiles in " + hostcfg_test::corpus_dir() + "/profiles");
    return;
  }
  struct row {
    const char* file;
    const char* dir;
    path_presence expected;
  };
  const row rows[] = {
      {"freebsd-skel-set-path-list.cshrc", "/Users/ann/bin", path_presence::present},
      {"freebsd-skel-set-path-list.cshrc", "/Users/ann/.docker/bin", path_presence::absent},
      {"rancher-desktop-setenv.tcshrc", "/Users/ann/.rd/bin", path_presence::present},
      {"rancher-desktop-setenv.cshrc", "/Users/ann/.docker/bin", path_presence::absent},
      {"fish_add_path-env.fish", "/Users/ann/.cargo/bin", path_presence::present},
      {"fish_add_path-env.fish", "/usr/local/go/bin", path_presence::present},
      {"fish_add_path-env.fish", "/Users/ann/.docker/bin", path_presence::absent},
      {"set-gx-PATH-colon-string.config.fish", "/Users/ann/.docker/bin", path_presence::unknown},
      {"conf.d-cargo-set-gx-PATH.fish", "/Users/ann/.docker/bin", path_presence::unknown},
      {"debian-skel.profile", "/Users/ann/bin", path_presence::unknown},
      {"toolbox-then-rustup-cargo-env.profile", "/Users/ann/.local/share/JetBrains/Toolbox/scripts",
       path_presence::present},
      {"toolbox-then-rustup-cargo-env.profile", "/Users/ann/.docker/bin", path_presence::unknown},
      {"ohmyzsh-template-stock.zshrc", "/Users/ann/.docker/bin", path_presence::unknown},
      {"ohmyzsh-p10k-rancher-desktop.zshrc", "/Users/ann/.rd/bin", path_presence::present},
      {"ohmyzsh-conda-initialize.zshrc", "/Users/ann/.docker/bin", path_presence::unknown},
      {"fig-rancher.bashrc", "/Users/ann/.rd/bin", path_presence::present},
      {"arch-style-sources-bashrc.bash_profile", "/Users/ann/.docker/bin", path_presence::unknown},
  };
  for (const auto& r : rows) {
    CAPTURE(r.file);
    CAPTURE(r.dir);
    const corpus_file* f = nullptr;
    for (const auto& c : files)
      if (c.name == r.file) f = &c;
    REQUIRE(f);
    auto found = model_path(f->bytes, f->dialect, r.dir, "/Users/ann");
    CAPTURE(found.detail);
    CHECK(found.presence == r.expected);
  }
}
