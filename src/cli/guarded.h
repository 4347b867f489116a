// How every subcommand turns a failure into a message and an exit code, so
// that each command's errors read the same: "egress <command>: <what>".
#pragma once

#include <functional>
#include <string>

#include "cli/commands.h"

namespace egress::cli {

/// Runs `body` and returns its exit code. An exception it throws is printed
/// on stderr as "<command>: <what>" (a policy::PolicyLoadError as
/// "<command>: the policy has errors:\n<what>") and gives `failure_code`.
/// `command` is how the user typed it, e.g. "egress ca init".
int run_reporting_errors(const std::string& command, const std::function<int()>& body, int failure_code = kExitUsage);

}  // namespace egress::cli
