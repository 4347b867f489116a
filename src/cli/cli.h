// The `egress` command line (CLI11): parses arguments and hands over to the
// components. No business logic lives here.
#pragma once

namespace egress::cli {

/// Runs the command; returns the process exit code (0 ok, 1 a check that
/// denies, 2 bad usage or bad configuration).
int run(int argc, char** argv);

}  // namespace egress::cli
