// Where the policy tests find their fixtures: $EGRESS_TESTDATA (set by ctest)
// or, when the binary is run by hand, testdata/ next to this file.
#pragma once

#include <cstdlib>
#include <string>

namespace egress::policy::test {

inline std::string testdata(const std::string& name) {
  if (const char* dir = std::getenv("EGRESS_TESTDATA"); dir && *dir) return std::string(dir) + "/" + name;
  std::string here = __FILE__;
  return here.substr(0, here.rfind('/')) + "/testdata/" + name;
}

// The repository's policies/ directory, for the example policies.
inline std::string policies_dir() {
  std::string here = __FILE__;
  return here.substr(0, here.rfind('/')) + "/../../policies";
}

}  // namespace egress::policy::test
