// A small built-in list of common public suffixes ("com", "co.uk",
// "github.io", ...), for `egress policy lint` (an entry broader than a
// registrable domain) and `egress policy suggest` (grouping hosts to their
// registrable domain). Not the full Public Suffix List: a suffix missing
// here makes lint quieter and suggest group one label too high (e.g.
// "foo.example.museum" groups as "example.museum" either way, but
// "a.b.unlisted.jp" groups as "unlisted.jp"). Every single label counts as a
// public suffix. Private to src/policy/ and its tools.
#pragma once

#include <string>
#include <string_view>

namespace egress::policy {

/// Whether `domain` (normalised, no leading dot) is a public suffix: any
/// single label, or a multi-label suffix in the built-in list.
bool is_public_suffix(std::string_view domain);

/// The registrable domain of a normalised host name: its longest public
/// suffix plus one label ("a.b.example.co.uk" → "example.co.uk"). Returns
/// the host itself when it is a public suffix or has one label.
std::string registrable_domain(std::string_view host);

}  // namespace egress::policy
