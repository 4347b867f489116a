// `egress policy import --from-squid`: squid's domain allowlists carried
// over. Converts `acl NAME dstdomain ...` (inline values and "/path" file
// lists), `acl NAME dstdom_regex ...` and the `http_access allow|deny NAME`
// lines that use them into allow/deny lists; everything else is reported
// with its line, never silently dropped. Pure: the CLI supplies a function
// that reads the files acl lines name.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace egress::policy {

struct SquidImport {
  std::string policy_yaml;           // version 1, mode self-hosted
  std::vector<std::string> reports;  // "FILE:LINE: what was not converted; what to do"
};

/// Reads a file named by an acl line; nullopt when it cannot be read.
using SquidFileReader = std::function<std::optional<std::string>(const std::string& path)>;

/// Converts squid.conf text (`name` stands for its file in reports).
/// Semantics carried over: dstdomain "example.com" is that host,
/// ".example.com" the domain and its subdomains (the policy's meaning too);
/// dstdom_regex becomes an unanchored `~` regex. Squid decides by the first
/// matching http_access line, egress lets deny win: a deny that follows an
/// allow for overlapping hosts is reported. Converted entries use the
/// policy's default ports [80, 443].
SquidImport import_squid(std::string_view conf, const std::string& name, const SquidFileReader& read_file);

}  // namespace egress::policy
