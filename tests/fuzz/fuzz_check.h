// What the fuzz targets share: FUZZ_CHECK, an invariant check that always
// runs (not assert: the fuzz build keeps NDEBUG as it is) and turns a broken
// invariant into a crash libFuzzer records as a finding, with the reason.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(condition, what)                                                          \
  do {                                                                                      \
    if (!(condition)) {                                                                     \
      std::fprintf(stderr, "%s:%d: invariant broken: %s (%s)\n", __FILE__, __LINE__, what, \
                   #condition);                                                             \
      std::abort();                                                                         \
    }                                                                                       \
  } while (false)
