// The Production Checklist both `sandbox verify` modes print: the probe's
// CHECK lines parsed, several of them combined into one checklist line, and
// the checklist printed with its closing count. Pure but for the printing.
#pragma once

#include <initializer_list>
#include <map>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace egress::sandbox {

struct Line {
  std::string verdict;  // PASS | FAIL | SKIP
  std::string detail;
};

using ProbeResults = std::map<std::string, Line>;  // check id -> its result
using Checklist = std::vector<std::pair<std::string, Line>>;

/// The id under which parse_probe_output() keeps the probe's last line that
/// is not a CHECK line (a Python traceback ends with what went wrong).
inline constexpr const char* kProbeLastOutput = "(last output)";

/// The probe's `CHECK|id|PASS/FAIL|detail` lines, and its last other line
/// under kProbeLastOutput.
ProbeResults parse_probe_output(const std::string& text);

/// One checklist line from probe checks: FAIL if any failed or is missing
/// (a missing one is reported with the probe's exit code and last output).
Line combine(const ProbeResults& probe, std::initializer_list<const char*> ids, int probe_exit);

/// Adds a host-side finding to `line`: FAILs it unless `ok`, appends `detail`.
void add_finding(Line& line, bool ok, const std::string& detail);

/// Prints `heading`, every line, `failure_note` when a line failed, and
/// "N passed, N failed, N skipped"; returns the number of FAIL lines.
int print_checklist(std::ostream& out, const std::string& heading, const Checklist& checklist,
                    const std::string& failure_note = {});

}  // namespace egress::sandbox
