// Registration of each subcommand on the CLI11 app. A command's callback
// stores its result in `exit_code`.
#pragma once

#include <CLI/App.hpp>

namespace egress::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitDenied = 1;  // `check`: the target would be refused
inline constexpr int kExitUsage = 2;   // bad usage, configuration or policy

void add_serve_command(CLI::App& app, int& exit_code);
void add_check_command(CLI::App& app, int& exit_code);
void add_policy_command(CLI::App& app, int& exit_code);
void add_audit_command(CLI::App& app, int& exit_code);
void add_sandbox_command(CLI::App& app, int& exit_code);
void add_ca_command(CLI::App& app, int& exit_code);

}  // namespace egress::cli
