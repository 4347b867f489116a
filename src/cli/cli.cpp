// Subcommand wiring. Each subcommand lives in its own file (serve_command,
// check_command) and registers itself here.
#include "cli/cli.h"

#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/commands.h"

namespace egress::cli {

int run(int argc, char** argv) {
  CLI::App app{"egress: egress-control forward proxy and audit service for sandboxed workers"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "egress 0.1.0");

  int exit_code = 0;
  add_serve_command(app, exit_code);
  add_check_command(app, exit_code);
  add_policy_command(app, exit_code);
  add_audit_command(app, exit_code);
  add_sandbox_command(app, exit_code);
  add_ca_command(app, exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return 0;
  } catch (const CLI::CallForVersion&) {
    std::cout << "egress 0.1.0\n";
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << "egress: " << e.what() << "\nRun 'egress --help' for usage.\n";
    return kExitUsage;
  }
  return exit_code;
}

}  // namespace egress::cli
