// Building the suggested policy of suggest.h. Output order is stable
// (sorted by domain, then host), so running suggest twice over the same log
// gives the same file, and a diff between two runs shows what changed.
#include "suggest.h"

#include <map>
#include <set>
#include <sstream>

#include "egress/policy/target.h"
#include "public_suffix.h"

namespace egress::policy {
namespace {

std::string quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string ports_list(const std::set<std::uint16_t>& ports) {
  std::string out = "[";
  for (auto p : ports) out += (out.size() > 1 ? ", " : "") + std::to_string(p);
  return out + "]";
}

struct HostUse {
  std::set<std::uint16_t> ports;
  std::map<std::uint16_t, std::uint64_t> counts;
};

// "a.example.com (443×12, 80×1)"
std::string usage_text(const std::string& host, const HostUse& use) {
  std::string out = host + " (";
  bool first = true;
  for (const auto& [port, count] : use.counts) {
    out += (first ? "" : ", ") + std::to_string(port) + ": " + std::to_string(count);
    first = false;
  }
  return out + ")";
}

void emit_entry(std::ostringstream& out, const std::string& host, const std::set<std::uint16_t>& ports,
                const std::vector<std::string>& comments) {
  for (const auto& c : comments) out << "  # " << c << "\n";
  out << "  - host: " << quote(host) << "\n    ports: " << ports_list(ports) << "\n";
}

}  // namespace

std::string suggest_policy(std::span<const UsedTarget> used, const SuggestHeader& header) {
  std::map<std::string, std::map<std::string, HostUse>> by_domain;  // allow: domain -> host -> use
  std::map<std::string, HostUse> internal;                           // internal: host -> use
  std::set<std::string> skipped;
  std::uint64_t total = 0;
  for (const UsedTarget& t : used) {
    auto normalized = normalize_host(t.host);
    if (!normalized.host || t.port == 0) {
      skipped.insert(t.host);
      continue;
    }
    const NormalizedHost& host = *normalized.host;
    total += t.count;
    bool non_public = host.address && classify(*host.address) != IpClass::Public;
    HostUse* use = nullptr;
    if (t.via == UsedTarget::Via::Internal || non_public) {
      use = &internal[host.host];
    } else {
      std::string domain = host.type == HostType::Name ? registrable_domain(host.host) : host.host;
      use = &by_domain[domain][host.host];
    }
    use->ports.insert(t.port);
    use->counts[t.port] += t.count;
  }

  std::ostringstream out;
  out << "# Suggested by `egress policy suggest` from " << header.audit_source << " ("
      << (header.role.empty() ? std::string("every worker") : "role " + header.role)
      << (header.since.empty() ? std::string(", all time") : ", last " + header.since) << "): " << total
      << " allowed decisions.\n"
      << "# Comments give each host's use as port: decisions. A domain with two or more used\n"
      << "# subdomains is allowed as '.domain' (the domain and all its subdomains) on the union\n"
      << "# of their ports; review those before deploying.\n";
  if (!header.role.empty()) {
    out << "# To grant these to role " << header.role << " only, move allow/internal under roles: "
        << header.role << ":.\n";
  }
  out << "version: 1\nmode: self-hosted\n";
  out << "allow:" << (by_domain.empty() ? " []" : "") << "\n";
  for (const auto& [domain, hosts] : by_domain) {
    std::size_t subdomains = 0;
    for (const auto& [host, use] : hosts) subdomains += host != domain;
    if (subdomains >= 2) {
      std::set<std::uint16_t> ports;
      std::vector<std::string> comments;
      for (const auto& [host, use] : hosts) {
        ports.insert(use.ports.begin(), use.ports.end());
        comments.push_back(usage_text(host, use));
      }
      emit_entry(out, "." + domain, ports, comments);
    } else {
      for (const auto& [host, use] : hosts) emit_entry(out, host, use.ports, {usage_text(host, use)});
    }
  }
  if (!internal.empty()) {
    out << "internal:\n";
    for (const auto& [host, use] : internal) emit_entry(out, host, use.ports, {usage_text(host, use)});
  }
  for (const auto& host : skipped) out << "# skipped (not a valid host or port): " << host << "\n";
  return out.str();
}

}  // namespace egress::policy
