// `egress policy suggest`: from what workers actually reached (the audit
// log's allowed decisions) to a self-hosted allowlist. Pure: the CLI reads
// the audit database and hands the targets here. Grouping: names are grouped
// by registrable domain (public_suffix.h); a domain of which two or more
// subdomains were used becomes one ".domain" entry with the union of their
// ports, anything else stays an exact host with its own ports. Targets that
// an internal rule allowed (or IP literals outside public space) go to
// `internal`, since allow rules never reach non-public addresses.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace egress::policy {

struct UsedTarget {
  std::string host;  // normalised host, as in the audit row
  std::uint16_t port = 0;
  std::uint64_t count = 0;  // decisions seen
  /// Allowed by an internal rule (audit reason internal-rule).
  enum class Via { Allow, Internal } via = Via::Allow;
};

struct SuggestHeader {
  std::string audit_source;  // e.g. the database file(s)
  std::string role;          // "" for every worker
  std::string since;         // "" for all time, else e.g. "7d"
};

/// A policy file (YAML text, version 1, mode self-hosted) that allows every
/// target in `used`, with the counts as comments. Hosts that do not
/// normalise are skipped and listed in a comment.
std::string suggest_policy(std::span<const UsedTarget> used, const SuggestHeader& header);

}  // namespace egress::policy
