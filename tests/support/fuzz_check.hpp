#pragma once
// The invariant check of the libFuzzer targets (tests/fuzz/*_fuzz.cpp): a failed invariant must
// be a crash libFuzzer records with its input, so it aborts; it names the file, line and the
// condition first, because an abort alone says nothing about which of a target's many
// invariants broke. It is a macro so the message carries the caller's line and text.
#include <cstdio>
#include <cstdlib>

/// Aborts (a libFuzzer crash) when `ok` is false, printing "invariant failed at FILE:LINE: ok".
#define HOSTCFG_FUZZ_CHECK(ok)                                                              \
  do {                                                                                      \
    if (!(ok)) {                                                                            \
      std::fprintf(stderr, "invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #ok);     \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)
