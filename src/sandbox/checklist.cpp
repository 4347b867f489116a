#include "sandbox/checklist.h"

#include <sstream>

namespace egress::sandbox {

ProbeResults parse_probe_output(const std::string& text) {
  ProbeResults probe;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("CHECK|")) {
      if (!line.empty()) probe[kProbeLastOutput] = {"", line.substr(0, 300)};
      continue;
    }
    std::vector<std::string> f;
    std::size_t start = 0;
    for (int i = 0; i < 3; ++i) {
      const auto bar = line.find('|', start);
      f.push_back(line.substr(start, bar - start));
      start = bar == std::string::npos ? line.size() : bar + 1;
    }
    probe[f[1]] = {f[2], line.substr(start)};
  }
  return probe;
}

Line combine(const ProbeResults& probe, std::initializer_list<const char*> ids, int probe_exit) {
  Line l{"PASS", ""};
  for (const char* cid : ids) {
    auto it = probe.find(cid);
    if (it == probe.end()) {
      l.verdict = "FAIL";
      const auto last = probe.find(kProbeLastOutput);
      l.detail += std::string(l.detail.empty() ? "" : "; ") + cid + ": no result (probe exit " +
                  std::to_string(probe_exit) + (last == probe.end() ? "" : ", its last words: " + last->second.detail) + ")";
      continue;
    }
    if (it->second.verdict != "PASS") l.verdict = "FAIL";
    l.detail += (l.detail.empty() ? "" : "; ") + it->second.detail;
  }
  return l;
}

void add_finding(Line& line, bool ok, const std::string& detail) {
  if (!ok) line.verdict = "FAIL";
  line.detail += (line.detail.empty() ? "" : "; ") + detail;
}

int print_checklist(std::ostream& out, const std::string& heading, const Checklist& checklist,
                    const std::string& failure_note) {
  int passed = 0, failed = 0, skipped = 0;
  out << heading << "\n";
  for (const auto& [title, line] : checklist) {
    out << "  [" << line.verdict << "] " << title << "\n         " << line.detail << "\n";
    (line.verdict == "PASS" ? passed : line.verdict == "FAIL" ? failed : skipped)++;
  }
  if (failed > 0 && !failure_note.empty()) out << failure_note << "\n";
  out << passed << " passed, " << failed << " failed, " << skipped << " skipped\n";
  return failed;
}

}  // namespace egress::sandbox
