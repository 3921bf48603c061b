#pragma once
// Shared test helpers: where the corpus is, how optional tests skip, scratch directories.
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <system_error>
#include <string_view>
#include <vector>

namespace hostcfg_test {

/// The shared corpus directory: $HOSTCFG_CORPUS_DIR, else the build option HOSTCFG_CORPUS_DIR.
inline std::string corpus_dir() {
  if (const char* env = std::getenv("HOSTCFG_CORPUS_DIR")) return env;
#ifdef HOSTCFG_CORPUS_DIR
  return HOSTCFG_CORPUS_DIR;
#else
  return {};
#endif
}

/// True when skips must fail (CI sets HOSTCFG_NO_SKIP=1 so a missing shell or corpus is noticed).
inline bool skips_are_failures() {
  const char* env = std::getenv("HOSTCFG_NO_SKIP");
  return env && std::string(env) == "1";
}

/// The errno of a failed `result<T>` (0 on success, -1 when the error is a hostcfg `errc`, not
/// an errno), so a test can compare a backend's failure with the kernel's directly.
template <class R>
int errno_of(const R& r) {
  if (r) return 0;
  return r.error().code.category() == std::system_category() ? r.error().code.value() : -1;
}

/// The lines of `text`, without their '\n' (a last line without one counts too; a trailing '\n'
/// adds no empty line): for tests that read a log or a trace line by line.
inline std::vector<std::string> lines_of(std::string_view text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    out.emplace_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

/// Rewrites one whole line of a record file in a MemoryFs tree (a hand edit, or a forgery), which
/// ends owned by uid:gid, mode 0600; the line must be there.
template <class Tree>
void rewrite_record_line(Tree& fs, const std::string& record_file, const std::string& line, const std::string& with,
                         unsigned uid, unsigned gid) {
  auto text = fs.file_bytes(record_file);
  REQUIRE(text);
  const std::string old_line = line + "\n";
  const auto at = text->find(old_line);
  REQUIRE(at != std::string::npos);
  text->replace(at, old_line.size(), with + "\n");
  fs.add_file(record_file, *text, 0600, uid, gid);
}

}  // namespace hostcfg_test

/// Skips the current test case with a printed reason (or fails it when HOSTCFG_NO_SKIP=1).
/// Use at the top of a TEST_CASE: `if (!have_zsh) { HOSTCFG_SKIP("zsh not installed"); return; }`
#define HOSTCFG_SKIP(reason)                                                   \
  do {                                                                         \
    if (hostcfg_test::skips_are_failures()) {                                  \
      FAIL("required but unavailable (HOSTCFG_NO_SKIP=1): " << (reason));      \
    } else {                                                                   \
      MESSAGE("SKIPPED: " << (reason));                                        \
    }                                                                          \
  } while (0)

/// CHECKs that `lines_expr`, a list of difference lines (MemoryFs::diff, a tree comparison), is
/// empty, printing each line with `label` first so a failure shows what differs. A macro so that
/// the failure is reported at the caller's line.
#define HOSTCFG_CHECK_NO_DIFF(lines_expr, label)                      \
  do {                                                                \
    const auto& hostcfg_diff_lines_ = (lines_expr);                   \
    for (const auto& hostcfg_diff_line_ : hostcfg_diff_lines_)        \
      MESSAGE(label << hostcfg_diff_line_);                           \
    CHECK(hostcfg_diff_lines_.empty());                               \
  } while (0)
