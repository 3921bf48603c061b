// A consumer of the *installed* hostcfg package (tests/package/README.md). It prints what it
// computed, and scripts/test-all compares those lines byte for byte, so a package that compiles
// but ships the wrong headers or the wrong version still fails.
#if __has_include(<hostcfg/hostcfg.hpp>)
#include <hostcfg/hostcfg.hpp>  // the umbrella header, once it exists, must be installed too
#endif
#include <hostcfg/error.hpp>
#include <hostcfg/path.hpp>
#include <hostcfg/version.hpp>

#include <cstdio>

int main() {
  auto good = hostcfg::normalize_path("/usr//local/./bin/");
  auto bad = hostcfg::normalize_path("relative/path");
  if (!good || bad) return 1;
  std::printf("version %d.%d.%d\n", HOSTCFG_VERSION_MAJOR, HOSTCFG_VERSION_MINOR, HOSTCFG_VERSION_PATCH);
  std::printf("normalized %s\n", good->c_str());
  std::printf("refused %s\n", bad.error().message().c_str());
  return 0;
}
