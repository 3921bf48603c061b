#pragma once
// Shared test helpers: where the corpus is, how optional tests skip, scratch directories.
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

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
