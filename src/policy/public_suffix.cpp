// The built-in public suffix list of public_suffix.h. Multi-label suffixes
// only: every single label is already treated as a public suffix.
#include "public_suffix.h"

#include <algorithm>
#include <iterator>

namespace egress::policy {
namespace {

// Common ICANN second-level suffixes and a few well-known hosting suffixes
// where every subdomain belongs to a different owner. githubusercontent.com
// is left out on purpose: the sandboxing guide allows it whole.
constexpr std::string_view kMultiLabel[] = {
    "co.uk",   "org.uk",  "ac.uk",   "gov.uk",  "ltd.uk",  "plc.uk",   "me.uk",    "net.uk",
    "com.au",  "net.au",  "org.au",  "edu.au",  "gov.au",  "co.nz",    "org.nz",   "net.nz",
    "co.jp",   "ne.jp",   "or.jp",   "ac.jp",   "go.jp",   "com.cn",   "net.cn",   "org.cn",
    "gov.cn",  "edu.cn",  "com.br",  "net.br",  "org.br",  "co.in",    "net.in",   "org.in",
    "co.kr",   "or.kr",   "co.za",   "org.za",  "com.mx",  "com.tw",   "com.hk",   "com.sg",
    "com.tr",  "com.ar",  "co.il",   "com.pl",  "co.id",   "com.my",   "com.ua",   "com.vn",
    "github.io", "herokuapp.com", "appspot.com", "cloudfront.net", "azurewebsites.net", "blogspot.com", "netlify.app", "vercel.app",
};

}  // namespace

bool is_public_suffix(std::string_view domain) {
  if (domain.empty()) return true;
  if (domain.find('.') == std::string_view::npos) return true;
  return std::find(std::begin(kMultiLabel), std::end(kMultiLabel), domain) != std::end(kMultiLabel);
}

std::string registrable_domain(std::string_view host) {
  if (is_public_suffix(host)) return std::string(host);
  // Walk from the whole name down to shorter suffixes; the first suffix that
  // is public means the label before it starts the registrable domain.
  std::string_view candidate = host;
  for (;;) {
    auto dot = candidate.find('.');
    if (dot == std::string_view::npos) return std::string(candidate);
    std::string_view rest = candidate.substr(dot + 1);
    if (is_public_suffix(rest)) return std::string(candidate);
    candidate = rest;
  }
}

}  // namespace egress::policy
