// See guarded.h.
#include "cli/guarded.h"

#include <iostream>

#include "egress/policy/policy.h"

namespace egress::cli {

int run_reporting_errors(const std::string& command, const std::function<int()>& body, int failure_code) {
  try {
    return body();
  } catch (const policy::PolicyLoadError& e) {
    std::cerr << command << ": the policy has errors:\n" << e.what() << "\n";
  } catch (const std::exception& e) {
    std::cerr << command << ": " << e.what() << "\n";
  }
  return failure_code;
}

}  // namespace egress::cli
