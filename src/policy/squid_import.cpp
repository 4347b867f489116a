// The squid.conf converter of squid_import.h. It reads just enough of
// squid's grammar to carry domain allowlists over: directives one per line
// (with '\' continuations), '#' comments, acl definitions that accumulate by
// name, and http_access lines evaluated in order. Anything it cannot express
// exactly becomes a report naming the line.
#include "squid_import.h"

#include <map>
#include <set>
#include <sstream>

#include "lint.h"
#include "loader_internal.h"

namespace egress::policy {
namespace {

struct Value {
  std::string text;   // as written, e.g. ".example.com" or "~regex"
  std::string where;  // "FILE:LINE" of the value
};

struct Acl {
  std::string type;  // dstdomain, dstdom_regex, src, port, ...
  std::vector<Value> values;
  int line = 0;
};

struct Entry {
  HostPattern pattern;
  std::string text, acl, where;
  int access_line = 0;
};

std::vector<std::string> split(std::string_view line) {
  std::vector<std::string> words;
  std::istringstream in{std::string(line)};
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

std::string quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

struct Importer {
  const std::string& name;
  const SquidFileReader& read_file;
  SquidImport result;
  std::map<std::string, Acl> acls;
  std::vector<Entry> allow, deny;
  bool closed = false;  // an `http_access ... all` line ends evaluation in squid

  void report(int line, const std::string& text) { result.reports.push_back(name + ":" + std::to_string(line) + ": " + text); }

  void read_acl(const std::vector<std::string>& words, int line) {
    if (words.size() < 3) {
      report(line, "acl line without name and type; not converted");
      return;
    }
    Acl& acl = acls[words[1]];
    if (acl.type.empty()) {
      acl.type = words[2];
      acl.line = line;
    }
    if (acl.type != words[2]) {
      report(line, "acl " + words[1] + " was defined as " + acl.type + ", here as " + words[2] + "; not converted");
      return;
    }
    if (acl.type != "dstdomain" && acl.type != "dstdom_regex") return;  // reported where http_access uses it
    bool ignore_case = false;
    for (std::size_t i = 3; i < words.size(); ++i) {
      const std::string& w = words[i];
      if (w == "-i") {
        ignore_case = true;
      } else if (w == "-n" || w == "+i") {
        continue;
      } else if (w.size() >= 2 && w.front() == '"' && w.back() == '"') {
        read_list_file(acl, w.substr(1, w.size() - 2), line, ignore_case);
      } else {
        add_value(acl, w, name + ":" + std::to_string(line), ignore_case);
      }
    }
  }

  void add_value(Acl& acl, const std::string& text, const std::string& where, bool ignore_case) {
    if (acl.type == "dstdomain") {
      acl.values.push_back({text, where});
    } else {
      // squid regexes are unanchored; egress anchors `~` entries at both ends.
      // Built by append: GCC 12 at -O3 reports a false -Wrestrict on `"~" + std::string(...)`.
      std::string pattern = ignore_case ? "~(?i).*(?:" : "~.*(?:";
      pattern.append(text).append(").*");
      acl.values.push_back({std::move(pattern), where});
    }
  }

  void read_list_file(Acl& acl, const std::string& path, int line, bool ignore_case) {
    auto text = read_file(path);
    if (!text) {
      report(line, "cannot read the list file \"" + path + "\"; its entries were not converted (check the path)");
      return;
    }
    std::istringstream in(*text);
    int number = 0;
    for (std::string row; std::getline(in, row);) {
      ++number;
      auto hash = row.find('#');
      for (const std::string& w : split(row.substr(0, hash))) add_value(acl, w, path + ":" + std::to_string(number), ignore_case);
    }
  }

  void read_access(const std::vector<std::string>& words, int line) {
    if (words.size() < 3 || (words[1] != "allow" && words[1] != "deny")) {
      report(line, "http_access needs allow or deny and at least one acl; not converted");
      return;
    }
    bool is_allow = words[1] == "allow";
    if (closed) {
      report(line, "http_access after an 'all' line never applies in squid; not converted");
      return;
    }
    if (words.size() == 3 && words[2] == "all") {
      closed = true;
      if (is_allow) report(line, "http_access allow all has no allowlist equivalent; use mode: developer if intended");
      return;  // deny all is egress's default deny
    }
    const Acl* domains = nullptr;
    std::string domains_name;
    std::vector<std::string> dropped;
    for (std::size_t i = 2; i < words.size(); ++i) {
      std::string acl_name = words[i];
      auto it = acls.find(acl_name.starts_with("!") ? acl_name.substr(1) : acl_name);
      bool is_domain = it != acls.end() && !acl_name.starts_with("!") &&
                       (it->second.type == "dstdomain" || it->second.type == "dstdom_regex");
      if (it == acls.end()) {
        report(line, "acl " + acl_name + " is not defined (before this line); line not converted");
        return;
      }
      if (is_domain && !domains) {
        domains = &it->second;
        domains_name = acl_name;
      } else {
        dropped.push_back(acl_name + " (" + it->second.type + ")");
      }
    }
    if (!domains) {
      report(line, "http_access " + words[1] + " without a dstdomain acl (" + join(dropped) +
                       ") has no policy equivalent; not converted (egress restricts workers by role sources and "
                       "rule ports instead)");
      return;
    }
    if (!dropped.empty()) {
      report(line, "converted " + words[1] + " " + domains_name + " but dropped its other conditions " +
                       join(dropped) + "; restrict by roles' sources or ports if they matter");
    }
    for (const Value& v : domains->values) add_entry(v, domains_name, line, is_allow);
  }

  static std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
    return out;
  }

  void add_entry(const Value& v, const std::string& acl, int line, bool is_allow) {
    std::string error;
    auto pattern = loader::parse_host_pattern(v.text, error);
    if (!pattern) {
      result.reports.push_back(v.where + ": '" + v.text + "' of acl " + acl + " not converted: " + error);
      return;
    }
    Entry entry{*pattern, pattern_text(*pattern), acl, v.where, line};
    auto& list = is_allow ? allow : deny;
    for (const Entry& e : list) {
      if (e.text == entry.text) return;
    }
    if (!is_allow) {
      // squid: an earlier allow wins for hosts both match; egress: deny wins.
      for (const Entry& a : allow) {
        if (host_pattern_covers(a.pattern, entry.pattern) || host_pattern_covers(entry.pattern, a.pattern)) {
          report(line, "deny '" + entry.text + "' overlaps allow '" + a.text + "' of line " +
                           std::to_string(a.access_line) +
                           "; squid lets the earlier allow win, egress lets deny win; check the converted lists");
          break;
        }
      }
    }
    list.push_back(std::move(entry));
  }

  void emit(std::ostringstream& out, const char* key, const std::vector<Entry>& list) {
    out << key << ":" << (list.empty() ? " []" : "") << "\n";
    std::string last_acl;
    for (const Entry& e : list) {
      if (e.acl != last_acl) out << "  # acl " << e.acl << " (http_access at " << name << ":" << e.access_line << ")\n";
      last_acl = e.acl;
      out << "  - " << quote(e.text) << "  # " << e.where << "\n";
    }
  }

  void run(std::string_view conf) {
    std::istringstream in{std::string(conf)};
    std::string pending;
    int number = 0, start = 0;
    for (std::string row; std::getline(in, row);) {
      ++number;
      if (!row.empty() && row.back() == '\r') row.pop_back();
      if (pending.empty()) start = number;
      if (!row.empty() && row.back() == '\\') {
        pending += row.substr(0, row.size() - 1) + " ";
        continue;
      }
      std::string line = pending + row;
      pending.clear();
      auto first = line.find_first_not_of(" \t");
      if (first == std::string::npos || line[first] == '#') continue;
      auto words = split(line);
      if (words[0] == "acl") {
        read_acl(words, start);
      } else if (words[0] == "http_access") {
        read_access(words, start);
      } else {
        report(start, "directive '" + words[0] + "' has no policy equivalent; ignored");
      }
    }
  }
};

}  // namespace

SquidImport import_squid(std::string_view conf, const std::string& name, const SquidFileReader& read_file) {
  Importer importer{name, read_file, {}, {}, {}, {}};
  importer.run(conf);
  std::ostringstream out;
  out << "# Imported by `egress policy import --from-squid " << name << "`.\n"
      << "# dstdomain meanings carry over: 'host' is that host, '.domain' the domain and its\n"
      << "# subdomains. Entries use the default ports [80, 443]; deny wins over allow.\n"
      << "version: 1\nmode: self-hosted\n";
  importer.emit(out, "allow", importer.allow);
  importer.emit(out, "deny", importer.deny);
  importer.result.policy_yaml = out.str();
  return std::move(importer.result);
}

}  // namespace egress::policy
