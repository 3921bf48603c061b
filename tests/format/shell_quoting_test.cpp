// Real shells read the blocks hostcfg writes: for directories whose names hold every character
// that is special to some shell, each shell is started the way a terminal starts it (interactive,
// so `!` history expansion is live), must end up with exactly those PATH elements, must not run
// the `$(touch canary)` / backtick in a name, and must not grow PATH when the file is sourced again.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "hostcfg/format/shell_profile.hpp"
#include "support/real_fs.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

using hostcfg_test::read_whole_file_or_empty;
using hostcfg_test::write_whole_file;

std::string find_shell(const char* name) {
  for (const char* dir : {"/usr/bin/", "/bin/", "/usr/local/bin/"}) {
    std::string p = std::string(dir) + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return {};
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    auto at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) break;
    start = at + 1;
  }
  return out;
}

/// A scratch HOME (with a space in its name, so `"${HOME}"` quoting is exercised too).
struct temp_home {
  std::string path;
  temp_home() {
    char tmpl[] = "/tmp/hostcfg shell home.XXXXXX";
    char* made = mkdtemp(tmpl);
    REQUIRE(made != nullptr);
    path = made;
  }
  ~temp_home() {
    std::string cmd = "rm -rf '" + path + "'";
    if (std::system(cmd.c_str()) != 0) MESSAGE("could not remove " << path);
  }
};

// Names that break a naive `export PATH="<dir>:$PATH"` in at least one shell.
const std::vector<std::string> special_names = {
    "with space",  "it's",         "say \"hi\"",   "cost $HOME",       "back`touch canary`tick",
    "back\\slash", "bang!x",       "bang !! 1",    "$(touch canary)",  "tab\\t and \\n literal",
    "caf\xc3\xa9", "star * glob?", "brace {a,b}",  "semi;colon&amp|p", "tilde ~ and # hash",
    "dollar-brace ${PATH}", "percent % caret ^ (paren)", "double \\\\ backslash", "trailing backslash\\"};

struct shell_case {
  const char* shell;          // binary name
  shell_dialect dialect;      // block dialect
  const char* rc;             // file under HOME that the shell reads at startup
  const char* args;           // how a terminal starts it
  const char* env;            // extra environment
  const char* resource;       // command to source the rc again
  const char* print_path;     // command writing PATH, ':'-joined, to ~/out
  const char* print_flags;    // command writing "interactive" to ~/flags when interactive
  bool login;                 // system files may change PATH too: check a prefix only
};

const shell_case shell_cases[] = {
    {"bash", shell_dialect::posix, ".bashrc", "-i", "", ". ~/.bashrc", "printf '%s' \"$PATH\" > ~/out",
     "case $- in *i*) echo interactive > ~/flags;; esac", false},
    {"bash", shell_dialect::posix, ".profile", "-l -i", "", ". ~/.profile", "printf '%s' \"$PATH\" > ~/out",
     "case $- in *i*) echo interactive > ~/flags;; esac", true},
    {"dash", shell_dialect::posix, ".profile", "-l -i", "", ". ~/.profile", "printf '%s' \"$PATH\" > ~/out",
     "case $- in *i*) echo interactive > ~/flags;; esac", true},
    {"zsh", shell_dialect::zsh, ".zshrc", "-i", "ZDOTDIR=\"$H\"", ". ~/.zshrc", "printf '%s' \"$PATH\" > ~/out",
     "case $- in *i*) echo interactive > ~/flags;; esac", false},
    {"fish", shell_dialect::fish, ".config/fish/conf.d/hostcfg-test.fish", "-i", "XDG_CONFIG_HOME=\"$H/.config\"",
     "source ~/.config/fish/conf.d/hostcfg-test.fish", "string join : $PATH > ~/out",
     "status is-interactive; and echo interactive > ~/flags", false},
    {"tcsh", shell_dialect::csh, ".tcshrc", "-i", "", "source ~/.tcshrc", "printenv PATH > ~/out",
     "if ($?prompt) echo interactive > ~/flags", false},
    {"tcsh", shell_dialect::csh, ".cshrc", "-i", "", "source ~/.cshrc", "printenv PATH > ~/out",
     "if ($?prompt) echo interactive > ~/flags", false},
};

}  // namespace

TEST_CASE("real shells read every special directory name back exactly, run nothing, and do not grow PATH") {
  for (const auto& sc : shell_cases) {
    std::string binary = find_shell(sc.shell);
    CAPTURE(std::string(sc.shell));
    CAPTURE(std::string(sc.rc));
    if (binary.empty()) {
      HOSTCFG_SKIP(std::string(sc.shell) + " is not installed");
      continue;
    }
    temp_home home;
    // One block per name (distinct app ids), plus one directory outside home.
    std::vector<std::string> dirs;
    for (const auto& name : special_names) dirs.push_back(home.path + "/.app/" + name);
    dirs.push_back("/opt/hostcfg test/it's $(touch canary) `touch canary` !!");
    std::string rc_bytes = "# user's own line\n";
    for (std::size_t i = 0; i < dirs.size(); ++i) {
      path_block_spec spec{"test.app" + std::to_string(i), dirs[i], home.path, sc.dialect, std::nullopt};
      auto edit = apply_profile_block(rc_bytes, spec);
      if (!edit) FAIL(edit.error().message());
      rc_bytes = edit->bytes;
    }
    std::string rc_path = home.path + "/" + sc.rc;
    if (sc.dialect == shell_dialect::fish) {
      REQUIRE(mkdir((home.path + "/.config").c_str(), 0700) == 0);
      REQUIRE(mkdir((home.path + "/.config/fish").c_str(), 0700) == 0);
      REQUIRE(mkdir((home.path + "/.config/fish/conf.d").c_str(), 0700) == 0);
    }
    write_whole_file(rc_path, rc_bytes);
    write_whole_file(home.path + "/commands",
                     std::string(sc.print_flags) + "\n" + sc.resource + "\n" + sc.print_path + "\nexit\n");
    std::string cmd = "cd \"$H\" && env -i HOME=\"$H\" PATH=/usr/bin:/bin TERM=dumb " + std::string(sc.env) +
                      " timeout 20 " + binary + " " + sc.args + " < \"$H/commands\" > \"$H/log\" 2>&1";
    std::string full = "H='" + home.path + "'; export H; " + cmd;
    int rc = std::system(full.c_str());
    std::string log = read_whole_file_or_empty(home.path + "/log");
    CAPTURE(log);
    CHECK(rc == 0);
    CHECK(read_whole_file_or_empty(home.path + "/flags") == "interactive\n");
    CHECK_FALSE(exists(home.path + "/canary"));
    std::string path_value = read_whole_file_or_empty(home.path + "/out");
    while (!path_value.empty() && path_value.back() == '\n') path_value.pop_back();
    CAPTURE(path_value);
    auto elements = split(path_value, ':');
    // Blocks prepend: the last block's directory comes first. Each exactly once, even though the
    // file was sourced twice.
    if (elements.size() < dirs.size()) {
      FAIL_CHECK("PATH has fewer elements than blocks");
      continue;
    }
    for (std::size_t i = 0; i < dirs.size(); ++i) CHECK(elements[i] == dirs[dirs.size() - 1 - i]);
    for (const auto& d : dirs) {
      std::size_t count = 0;
      for (const auto& e : elements) count += e == d;
      CHECK(count == 1);
    }
    if (!sc.login) {
      std::vector<std::string> rest(elements.begin() + static_cast<std::ptrdiff_t>(dirs.size()), elements.end());
      CHECK(rest == std::vector<std::string>{"/usr/bin", "/bin"});
    }
    // No block wrote the home directory literally.
    CHECK(rc_bytes.find(home.path) == std::string::npos);
  }
}

TEST_CASE("a shell started twice over the same rc keeps a single PATH element (nested shells)") {
  // A terminal running `bash` inside `bash`: the child inherits PATH and reads the rc again.
  std::string bash = find_shell("bash");
  if (bash.empty()) {
    HOSTCFG_SKIP("bash is not installed");
    return;
  }
  temp_home home;
  path_block_spec spec{"com.docker.desktop", home.path + "/.docker/bin", home.path, shell_dialect::posix,
                       std::nullopt};
  auto edit = apply_profile_block("", spec);
  REQUIRE(edit);
  write_whole_file(home.path + "/.bashrc", edit->bytes);
  write_whole_file(home.path + "/inner", "printf '%s' \"$PATH\" > ~/out\nexit\n");
  write_whole_file(home.path + "/commands", bash + " -i < ~/inner\nexit\n");
  std::string full = "H='" + home.path + "'; cd \"$H\" && env -i HOME=\"$H\" PATH=/usr/bin:/bin TERM=dumb timeout 20 " +
                     bash + " -i < \"$H/commands\" > \"$H/log\" 2>&1";
  CHECK(std::system(full.c_str()) == 0);
  CHECK(read_whole_file_or_empty(home.path + "/out") == home.path + "/.docker/bin:/usr/bin:/bin");
}
