// Roles (by source, token or name), methods, path globs, the four host
// forms, report state, deny-over-allow and the three modes, as one table
// over testdata/decide_roles.yaml; each row names who asks, what, and the
// expected verdict, reason and deciding line. The fixture is loaded once
// per mode (its own self-hosted, and overridden to production/developer).
#include <catch2/catch.hpp>

#include <map>

#include "egress/policy/policy.h"
#include "testdata.h"

using namespace egress::policy;
using egress::policy::test::testdata;

namespace {

const char* const kFixture = "decide_roles.yaml";

const Policy& fixture(char mode) {
  static std::map<char, PolicySnapshot> cache;
  auto& slot = cache[mode];
  if (!slot) {
    std::optional<Mode> override_mode;
    if (mode == 'P') override_mode = Mode::Production;
    if (mode == 'D') override_mode = Mode::Developer;
    slot = load_policy_file(testdata(kFixture), override_mode);
  }
  return *slot;
}

struct Case {
  char mode;        // 'S' the file's self-hosted, 'P' production, 'D' developer
  const char* who;  // "" no role; "src:IP", "tok:SECRET" or "role:NAME"
  const char* authority;
  RequestKind kind;
  const char* method;
  const char* path;
  std::vector<const char*> addresses;  // empty: decide() alone
  Verdict verdict;
  Reason reason;
  const char* rule;  // ":N" for line N of the fixture, else the literal rule text
};

std::string role_of(const Policy& policy, std::string_view who) {
  if (who.starts_with("src:")) return policy.role_for_source(*IpAddress::parse(who.substr(4)));
  if (who.starts_with("tok:")) return policy.role_for_token(who.substr(4)).value_or("");
  if (who.starts_with("role:")) return std::string(who.substr(5));
  return "";
}

constexpr auto H = RequestKind::Http;
constexpr auto C = RequestKind::Connect;
constexpr auto I = RequestKind::Inspected;
constexpr auto Allow = Verdict::Allow;
constexpr auto Deny = Verdict::Deny;
constexpr auto Report = Verdict::Report;
constexpr auto AR = Reason::AllowRule;
constexpr auto IR = Reason::InternalRule;
constexpr auto DR = Reason::DenyRule;
constexpr auto NA = Reason::NotAllowed;
constexpr auto PNA = Reason::PortNotAllowed;
constexpr auto MNA = Reason::MethodNotAllowed;
constexpr auto PaNA = Reason::PathNotAllowed;

}  // namespace

TEST_CASE("Roles, methods, paths and modes decide as policy.h documents", "[policy]") {
  auto c = GENERATE(values<Case>({
      // the four host forms
      {'S', "", "exact.example:443", C, "", "", {}, Allow, AR, ":5"},
      {'S', "", "EXACT.example.:80", H, "GET", "/", {}, Allow, AR, ":5"},
      {'S', "", "EXACT.EXAMPLE:443", C, "", "", {}, Allow, AR, ":5"},
      {'S', "", "www.exact.example:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "", "domain.example:443", C, "", "", {}, Allow, AR, ":6"},
      {'S', "", "a.domain.example:443", C, "", "", {}, Allow, AR, ":6"},
      {'S', "", "a.b.domain.example:80", H, "GET", "/x", {}, Allow, AR, ":6"},
      {'S', "", "xdomain.example:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "", "sub.example:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "", "a.sub.example:443", C, "", "", {}, Allow, AR, ":7"},
      {'S', "", "a.b.sub.example:443", C, "", "", {}, Allow, AR, ":7"},
      {'S', "", "api-1.regex.example:443", C, "", "", {}, Allow, AR, ":8"},
      {'S', "", "api-42.regex.example:80", H, "GET", "/", {}, Allow, AR, ":8"},
      {'S', "", "API-7.REGEX.EXAMPLE:443", C, "", "", {}, Allow, AR, ":8"},
      {'S', "", "api-x.regex.example:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "", "xapi-1.regex.example:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "", "api-1.regex.example.evil:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "", "a.domain.example:443", C, "", "", {"93.184.216.34"}, Allow, AR, ":6"},
      {'S', "", "a.domain.example:443", C, "", "", {"127.0.0.1"}, Deny, Reason::PrivateAddress, ""},
      // deny wins over allow
      {'S', "", "bad.domain.example:443", C, "", "", {}, Deny, DR, ":21"},
      {'S', "", "bad.domain.example:80", H, "GET", "/", {}, Deny, DR, ":21"},
      {'S', "", "x.bad.domain.example:443", C, "", "", {}, Allow, AR, ":6"},
      {'S', "", "a.sub.example:22", C, "", "", {}, Deny, DR, ":22"},
      {'S', "", "sub.example:22", C, "", "", {}, Deny, DR, ":22"},
      // ports
      {'S', "", "exact.example:8443", C, "", "", {}, Deny, PNA, ":5"},
      {'S', "", "a.domain.example:22", C, "", "", {}, Deny, PNA, ":6"},
      {'S', "", "a.sub.example:8080", C, "", "", {}, Deny, PNA, ":7"},
      {'S', "", "api-1.regex.example:8080", C, "", "", {}, Deny, PNA, ":8"},
      {'S', "", "upload.example:80", H, "POST", "/x", {}, Deny, PNA, ":13"},
      {'S', "", "shared.example:443", C, "", "", {}, Allow, AR, ":18"},
      {'S', "", "other.shared.example:443", C, "", "", {}, Allow, AR, ":18"},
      {'S', "", "other.shared.example:80", H, "GET", "/", {}, Deny, PNA, ":18"},
      // methods: enforced on plain HTTP and inspected requests, not CONNECT
      {'S', "", "upload.example:8080", H, "POST", "/x", {}, Allow, AR, ":13"},
      {'S', "", "upload.example:8080", H, "PUT", "/", {}, Allow, AR, ":13"},
      {'S', "", "upload.example:8080", H, "GET", "/", {}, Deny, MNA, ":13"},
      {'S', "", "upload.example:8080", H, "DELETE", "/", {}, Deny, MNA, ":13"},
      {'S', "", "upload.example:8080", H, "post", "/", {}, Deny, MNA, ":13"},
      {'S', "", "upload.example:8080", H, "", "/", {}, Allow, AR, ":13"},
      {'S', "", "upload.example:8080", I, "POST", "/", {}, Allow, AR, ":13"},
      {'S', "", "upload.example:8080", I, "GET", "/", {}, Deny, MNA, ":13"},
      {'S', "", "upload.example:8080", C, "CONNECT", "", {}, Allow, AR, ":13"},
      {'S', "", "upload.example:8080", C, "", "", {}, Allow, AR, ":13"},
      {'S', "", "files.example:443", C, "", "", {}, Allow, AR, ":9"},
      {'S', "", "files.example:443", I, "GET", "/pub/a", {}, Allow, AR, ":9"},
      {'S', "", "files.example:443", I, "HEAD", "/pub/a", {}, Allow, AR, ":9"},
      {'S', "", "files.example:443", I, "POST", "/pub/a", {}, Deny, MNA, ":9"},
      {'S', "", "files.example:80", H, "POST", "/pub/x", {}, Deny, MNA, ":9"},
      {'S', "", "files.example:80", H, "DELETE", "/private", {}, Deny, MNA, ":9"},
      // paths: prefixes and globs ('*' one segment, '**' any depth)
      {'S', "", "files.example:80", H, "GET", "/pub/", {}, Allow, AR, ":9"},
      {'S', "", "files.example:80", H, "GET", "/pub/x", {}, Allow, AR, ":9"},
      {'S', "", "files.example:80", H, "HEAD", "/pub/x", {}, Allow, AR, ":9"},
      {'S', "", "files.example:80", H, "GET", "/pub", {}, Deny, PaNA, ":9"},
      {'S', "", "files.example:80", H, "GET", "/private", {}, Deny, PaNA, ":9"},
      {'S', "", "files.example:80", H, "GET", "/api/v1/models", {}, Allow, AR, ":9"},
      {'S', "", "files.example:80", H, "GET", "/api/v1/models?x=1", {}, Allow, AR, ":9"},
      {'S', "", "files.example:80", H, "GET", "/api/v1/v2/models", {}, Deny, PaNA, ":9"},
      {'S', "", "files.example:80", H, "GET", "/api/v1/models/extra", {}, Deny, PaNA, ":9"},
      {'S', "", "files.example:80", H, "GET", "/API/v1/models", {}, Deny, PaNA, ":9"},
      {'S', "", "files.example:80", H, "GET", "/raw/a/b/file.bin", {}, Allow, AR, ":9"},
      {'S', "", "files.example:80", H, "GET", "/raw/x/file.bin", {}, Allow, AR, ":9"},
      {'S', "", "files.example:80", H, "GET", "/raw/file.bin", {}, Deny, PaNA, ":9"},
      {'S', "", "files.example:80", H, "GET", "/raw/x/file.bin.sig", {}, Deny, PaNA, ":9"},
      {'S', "", "files.example:80", H, "GET", "/pub/../admin", {}, Deny, PaNA, ":9"},
      {'S', "", "files.example:80", H, "GET", "/api/%2e%2e/models", {}, Deny, PaNA, ":9"},
      {'S', "", "files.example:443", I, "GET", "/raw/a/file.bin", {}, Allow, AR, ":9"},
      {'S', "", "files.example:443", I, "GET", "/etc/passwd", {}, Deny, PaNA, ":9"},
      // report state
      {'S', "", "trial.example:443", C, "", "", {}, Report, NA, ":16"},
      {'S', "", "trial.example:80", H, "GET", "/", {}, Report, NA, ":16"},
      {'S', "", "trial.example:22", C, "", "", {}, Deny, NA, "default"},
      {'S', "", "watch.shared.example:443", C, "", "", {}, Report, DR, ":24"},
      {'S', "", "watch.shared.example:80", H, "GET", "/", {}, Deny, PNA, ":18"},
      // internal rules, with methods
      {'S', "", "store.internal:443", C, "", "", {}, Allow, IR, ":27"},
      {'S', "", "store.internal:443", I, "GET", "/", {}, Allow, IR, ":27"},
      {'S', "", "store.internal:443", I, "POST", "/", {}, Deny, NA, "default"},
      {'S', "", "store.internal:80", C, "", "", {}, Deny, NA, "default"},
      {'S', "", "10.40.1.2:5672", C, "", "", {}, Allow, IR, ":30"},
      {'S', "", "10.40.1.2:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "", "queue.example:5672", C, "", "", {"10.40.0.9"}, Allow, IR, ":30"},
      // roles by source (longest prefix), token and name; roles add to global rules
      {'S', "src:172.30.1.9", "pypi.org:443", C, "", "", {}, Allow, AR, ":38"},
      {'S', "tok:builder-secret", "files.pypi.org:443", C, "", "", {}, Allow, AR, ":38"},
      {'S', "role:builder", "pypi.org:80", H, "GET", "/simple/", {}, Allow, AR, ":38"},
      {'S', "", "pypi.org:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "src:172.30.2.9", "pypi.org:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "tok:comfy-secret", "pypi.org:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "tok:wrong-secret", "pypi.org:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "tok:", "pypi.org:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "src:172.30.1.9", "exact.example:443", C, "", "", {}, Deny, DR, ":43"},
      {'S', "tok:builder-secret", "exact.example:443", C, "", "", {}, Deny, DR, ":43"},
      {'S', "src:172.30.2.9", "exact.example:443", C, "", "", {}, Allow, AR, ":5"},
      {'S', "role:builder", "git.corp.example:443", C, "", "", {}, Allow, AR, ":39"},
      {'S', "role:builder", "git.corp.example:80", H, "GET", "/repos/egress/info/refs", {}, Allow, AR, ":39"},
      {'S', "role:builder", "git.corp.example:80", H, "GET", "/repos/egress/info/refs?service=git-upload-pack", {},
       Allow, AR, ":39"},
      {'S', "role:builder", "git.corp.example:80", H, "GET", "/repos/a/b/info/refs", {}, Deny, PaNA, ":39"},
      {'S', "role:builder", "git.corp.example:80", H, "POST", "/repos/egress/info/refs", {}, Deny, MNA, ":39"},
      {'S', "", "git.corp.example:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "role:builder", "a.domain.example:443", C, "", "", {}, Allow, AR, ":6"},
      {'S', "src:172.30.1.1", "x.sub.example:443", C, "", "", {}, Allow, AR, ":7"},
      {'S', "src:172.30.2.9", "hf.huggingface.co:443", C, "", "", {}, Allow, AR, ":48"},
      {'S', "src:172.30.9.9", "huggingface.co:443", C, "", "", {}, Allow, AR, ":48"},
      {'S', "src:::ffff:172.30.2.9", "huggingface.co:443", C, "", "", {}, Allow, AR, ":48"},
      {'S', "src:172.30.2.9", "huggingface.co:80", H, "GET", "/", {}, Deny, PNA, ":48"},
      {'S', "src:172.30.1.9", "huggingface.co:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "src:172.31.0.1", "huggingface.co:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "tok:comfy-secret", "models.example:443", C, "", "", {}, Report, NA, ":50"},
      {'S', "role:comfy", "models.example:80", H, "GET", "/", {}, Report, NA, ":50"},
      {'S', "tok:comfy-secret", "a.sub.example:22", C, "", "", {}, Deny, DR, ":22"},
      {'S', "role:comfy", "cache.internal:443", C, "", "", {"10.9.9.9"}, Allow, IR, ":53"},
      {'S', "role:comfy", "cache.internal:8080", C, "", "", {}, Deny, NA, "default"},
      {'S', "", "cache.internal:443", C, "", "", {}, Deny, NA, "default"},
      {'S', "role:nobody", "exact.example:443", C, "", "", {}, Allow, AR, ":5"},
      // production: internal destinations only; deny still first
      {'P', "", "exact.example:443", C, "", "", {}, Deny, Reason::NotInternal, "mode:production"},
      {'P', "", "store.internal:443", C, "", "", {}, Allow, IR, ":27"},
      {'P', "", "store.internal:443", I, "POST", "/", {}, Deny, Reason::NotInternal, "mode:production"},
      {'P', "", "10.40.0.1:5672", C, "", "", {}, Allow, IR, ":30"},
      {'P', "role:comfy", "cache.internal:443", C, "", "", {"10.9.9.9"}, Allow, IR, ":53"},
      {'P', "", "bad.domain.example:443", C, "", "", {}, Deny, DR, ":21"},
      {'P', "role:builder", "pypi.org:443", C, "", "", {}, Deny, Reason::NotInternal, "mode:production"},
      {'P', "", "trial.example:443", C, "", "", {}, Deny, Reason::NotInternal, "mode:production"},
      // developer: public destinations, but matched rules still bind
      {'D', "", "unknown.example:443", C, "", "", {}, Allow, Reason::DeveloperMode, "mode:developer"},
      {'D', "", "unknown.example:443", C, "", "", {"10.0.0.1"}, Deny, Reason::PrivateAddress, ""},
      {'D', "", "127.0.0.1:80", H, "GET", "/", {}, Deny, Reason::PrivateAddress, ""},
      {'D', "", "bad.domain.example:443", C, "", "", {}, Deny, DR, ":21"},
      {'D', "", "exact.example:8443", C, "", "", {}, Deny, PNA, ":5"},
      {'D', "", "upload.example:8080", H, "GET", "/", {}, Deny, MNA, ":13"},
      {'D', "", "files.example:80", H, "GET", "/private", {}, Deny, PaNA, ":9"},
      {'D', "role:builder", "exact.example:443", C, "", "", {}, Deny, DR, ":43"},
      {'D', "", "watch.shared.example:443", C, "", "", {}, Report, DR, ":24"},
      {'D', "role:comfy", "models.example:443", C, "", "", {}, Allow, Reason::DeveloperMode, "mode:developer"},
  }));
  const Policy& policy = fixture(c.mode);
  std::string role = role_of(policy, c.who);
  CAPTURE(c.mode, c.who, role, c.authority, c.method, c.path);
  auto target = parse_authority(c.authority);
  REQUIRE(target.target);
  DecideArgs args{*target.target, c.kind, c.method, c.path, role};
  Decision decision = policy.decide(args);
  if (!c.addresses.empty()) {
    REQUIRE(decision.needs_addresses);
    std::vector<IpAddress> addresses;
    for (const char* text : c.addresses) addresses.push_back(*IpAddress::parse(text));
    decision = policy.check_addresses(decision, args, addresses);
  }
  INFO("detail: " << decision.detail);
  CHECK(to_string(decision.verdict) == to_string(c.verdict));
  CHECK(to_string(decision.reason) == to_string(c.reason));
  std::string rule = c.rule[0] == ':' ? testdata(kFixture) + c.rule : c.rule;
  CHECK(decision.rule == rule);
}
