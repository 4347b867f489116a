// The policy engine: a pure function from (policy snapshot, request) to a
// Decision. No I/O happens here; the proxy resolves names and hands the
// addresses back for the second step, so the whole engine is tested
// exhaustively without sockets.
//
// Evaluation order (docs/policy.md "How a request is decided" repeats it, and
// tests/policy/policy_test.cpp follows it step by step):
//
//   0. The target was normalised (target.h); a target that could not be is
//      refused by the caller with `invalid-host` before reaching here.
//   1. deny rules (global, then the role's) that match host and port:
//      enforced → Deny `deny-rule`. Deny rules match every port unless they
//      list `ports`.
//   2. internal rules (global + role) that match host, port (and method and
//      path where visible) → Allow `internal-rule`; non-public addresses are
//      accepted for this target (a rule names them).
//   3. production mode: nothing else may leave → Deny `not-internal`.
//   4. allow rules (global + role) that match host, port, method and path:
//      → Allow `allow-rule`. Otherwise the closest miss decides: a rule
//      matched host, port and method but not the path → Deny
//      `path-not-allowed`; host and port but not the method → Deny
//      `method-not-allowed`; the host but not the port → Deny
//      `port-not-allowed`.
//   5. developer mode → Allow `developer-mode` (any port; public addresses only).
//   6. otherwise → Deny `not-allowed` (default deny).
//
//   Methods and paths are enforced where they are visible: plain HTTP and
//   inspected tunnels. A CONNECT tunnel (kind Connect) shows neither: it is
//   decided on host and port alone, and a rule's `methods`/`paths` restrict
//   the requests inside it only once it is inspected. "CONNECT" is never
//   matched against `methods`; an empty method or path counts as not visible.
//   `methods` lists upper-case tokens (GET, HEAD, POST, ...). `paths` lists
//   prefixes ("/api/") and globs: an entry containing '*' must match the
//   whole path (query excluded), where '*' matches within one segment (no
//   '/') and '**' matches anything, '/' included ("/api/*/models",
//   "/v1/**/raw"). A path with "." or ".." segments or an encoded '.', '/'
//   or '\\' never satisfies a `paths` rule.
//
//   Report state: a rule with `state: report` is not enforced. The decision
//   is made as if it were absent; then, if that enforced decision allows and
//   a report-state deny rule matches, or it denies and a report-state
//   allow/internal rule matches, the verdict is Report: the attempt goes
//   through, and `reason` says what enforcement would have done.
//
//   Addresses (check_addresses, for names after resolution; folded into
//   decide() for IP literals): every address must pass, or the whole target
//   is refused (a name that resolves partly private is refused whole):
//     a. an address inside a deny `cidr` → Deny `deny-rule`;
//     b. if the host decision is a default deny (not-allowed / not-internal)
//        and every address lies in an internal `cidr` whose ports include
//        the port → Allow `internal-rule`;
//     c. an allowed target whose rule is not internal: any non-public
//        address (ip.h IpClass other than Public) that no internal cidr
//        names → Deny `private-address`.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "egress/policy/ip.h"
#include "egress/policy/reason.h"
#include "egress/policy/target.h"

namespace egress::policy {

enum class Mode { Production, SelfHosted, Developer };
std::string_view to_string(Mode mode);  // "production", "self-hosted", "developer"
std::optional<Mode> mode_from_string(std::string_view text);

enum class Verdict { Allow, Deny, Report };
std::string_view to_string(Verdict verdict);  // "allow", "deny", "report"

enum class RequestKind { Http, Connect, Inspected };
std::string_view to_string(RequestKind kind);  // "http", "connect", "inspected"

/// `inject:` on a rule: a header egress sets on every request the rule
/// allows, after the decision, with a secret from egress's secrets
/// directory (secrets/store.h). The worker never holds the secret.
struct Injection {
  /// One piece of a value template: literal text, or the name of a secret.
  struct Part {
    std::string text;
    bool secret = false;
  };
  std::string header;  // e.g. "Authorization"
  /// The value as written, e.g. "Bearer {secret:hf_token}" (names only: safe
  /// to print), and the same split into parts.
  std::string value;
  std::vector<Part> parts;
  /// `basic: {user: U, password: "{secret:N}"}`: the header is sent as
  /// "Basic base64(U:password)" (git over HTTPS); `value` is the password.
  std::optional<std::string> basic_user;
  /// Rewrite only a header the worker sent whose value contains
  /// "egress:NAME" for a secret NAME of `value` (the worker opts in).
  bool only_placeholder = false;
  std::vector<std::string> secrets;  // the NAMEs `value` refers to, in order
  int line = 0;
};

/// What the engine concluded. An immutable value: later steps build a new
/// Decision rather than editing reason strings.
struct Decision {
  Verdict verdict = Verdict::Deny;
  Reason reason = Reason::NotAllowed;
  /// Where the deciding rule lives: "FILE:LINE" for a rule in a policy file,
  /// "mode:developer" / "mode:production" for a mode default, "default" for
  /// the default deny, "" when no rule was involved.
  std::string rule;
  /// Extra words for a person, e.g. "127.0.0.1 is loopback". May be empty.
  std::string detail;
  /// The matched rule asks for TLS inspection (used once inspection exists).
  bool inspect = false;
  /// The matched rule is internal: non-public addresses are acceptable.
  bool internal = false;
  /// The matched rule's tunnel options (see Rule): a CONNECT tunnel may
  /// open without SNI, or carry a protocol that is not TLS.
  bool allow_no_sni = false;
  bool raw_tcp = false;
  /// Credentials the matched rule adds to the request once it is allowed
  /// (see Injection). Points into the policy snapshot that decided: valid
  /// while the caller holds that snapshot. Empty for report-state verdicts:
  /// a rule that is not enforced never hands out a secret.
  std::span<const Injection> inject;
  /// The matched rule lets `inject` go over plain HTTP (allow_plaintext).
  bool inject_plaintext = false;
  /// The final verdict depends on the addresses the name resolves to: the
  /// caller must resolve and call Policy::check_addresses(). False for IP
  /// literals (decide() checked the literal) and for final denials.
  bool needs_addresses = false;

  bool allows() const { return verdict != Verdict::Deny; }
};

/// "allow role-allow (FILE:LINE)": verdict, reason and rule, as
/// `egress policy diff` and the console print a decision.
std::string describe(const Decision& decision);

struct DecideArgs {
  const Target& target;
  RequestKind kind = RequestKind::Http;
  std::string_view method;  // "" for CONNECT
  std::string_view path;    // "" when not visible (CONNECT without inspection)
  std::string_view role;    // "" when the worker has no role
};

// ---- The policy model, as loaded from YAML (see policies/ and docs/policy.md) ----

struct HostPattern {
  enum class Kind {
    Exact,       // "github.com": that host only
    Domain,      // ".github.com": the domain and every subdomain (squid dstdomain)
    Subdomains,  // "*.github.com": subdomains only, not the apex
    Regex,       // "~^pypi-[0-9]+\.corp$": anchored re2 on the normalised host
  };
  Kind kind = Kind::Exact;
  std::string value;  // normalised host / domain without the leading "." or "*.", or the regex
};

enum class RuleState { Enforce, Report };

struct Rule {
  std::optional<HostPattern> host;  // exactly one of host / cidr is set
  std::optional<Cidr> cidr;
  std::vector<std::uint16_t> ports;  // empty = any port
  std::vector<std::string> paths;    // prefixes and globs (see above); empty = any path
  std::vector<std::string> methods;  // upper-case HTTP methods; empty = any method
  RuleState state = RuleState::Enforce;
  bool inspect = false;
  /// CONNECT tunnels to this rule's targets may send a TLS ClientHello
  /// without SNI (otherwise refused: sni-missing). A hello with SNI must
  /// still name the CONNECT host.
  bool allow_no_sni = false;
  /// CONNECT tunnels to this rule's targets may carry a protocol that is
  /// not TLS, e.g. SSH to a git host on port 22 (otherwise refused:
  /// not-tls). A TLS hello is still checked.
  bool raw_tcp = false;
  std::vector<Injection> inject;
  /// `inject` may also go on plain HTTP requests (otherwise only inside
  /// inspected tunnels, where the upstream's certificate was verified).
  bool allow_plaintext = false;
  std::string where;  // "FILE:LINE"
  int line = 0;       // the LINE of `where`
};

struct RoleRules {
  std::string name;
  std::vector<Cidr> sources;
  std::vector<std::string> token_hashes;  // "sha256:<64 hex>"
  std::vector<Rule> allow, deny, internal;
  std::string deny_message;  // replaces the policy's deny_message for this role
  int line = 0;              // line of the role's name
};

struct PolicyModel {
  int version = 1;
  Mode mode = Mode::Developer;
  std::vector<Rule> allow, deny, internal;
  std::vector<RoleRules> roles;
  std::string deny_message;  // text for 403 bodies; "" for none
  std::string source;  // file name, or "<embedded default>"
};

// ---- Loading ----

struct PolicyProblem {
  std::string file;
  int line = 0;  // 1-based; 0 when it concerns the whole file
  std::string message;  // what is wrong and how to fix it
  std::string to_string() const;  // "FILE:LINE: message"
};

/// Thrown when a policy cannot be loaded. what() lists every problem, one
/// "FILE:LINE: message" per line.
class PolicyLoadError : public std::runtime_error {
 public:
  explicit PolicyLoadError(std::vector<PolicyProblem> problems);
  const std::vector<PolicyProblem>& problems() const { return problems_; }

 private:
  std::vector<PolicyProblem> problems_;
};

class CompiledPolicy;  // indexes: exact-host hash maps, domain suffix maps, re2 sets

/// An immutable, compiled policy. Build one with load_policy_file(); share it
/// as a PolicySnapshot; reloads swap the pointer.
class Policy {
 public:
  explicit Policy(PolicyModel model);  // compiles; throws PolicyLoadError on bad regexes
  ~Policy();
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;

  Mode mode() const { return model_.mode; }
  const PolicyModel& model() const { return model_; }
  const std::string& source() const { return model_.source; }

  /// Steps 1–6 of the evaluation order (and a–c for IP literals).
  Decision decide(const DecideArgs& args) const;

  /// Steps a–c: the final decision for a name, given every address it
  /// resolved to. An empty address list is a Deny.
  Decision check_addresses(const Decision& host_decision, const DecideArgs& args,
                           std::span<const IpAddress> addresses) const;

  /// The role of a worker connecting from `source` (longest matching prefix
  /// over all roles' `sources`), or "" for none.
  std::string role_for_source(const IpAddress& source) const;

  /// The role whose `tokens` hold sha256(secret), or nullopt when none does.
  /// Every stored hash is compared, in constant time, whatever matches, so
  /// the time taken says nothing about which role (if any) is close.
  std::optional<std::string> role_for_token(std::string_view secret) const;

  /// The text a 403 body carries for a worker of `role`: the role's
  /// `deny_message`, else the policy's, else "". Unknown roles get the
  /// policy's.
  std::string_view deny_message(std::string_view role) const;

 private:
  PolicyModel model_;
  std::unique_ptr<const CompiledPolicy> compiled_;
};

using PolicySnapshot = std::shared_ptr<const Policy>;

/// "sha256:<64 lower-case hex>" of a worker's proxy secret: the form a role's
/// `tokens` store (`egress policy hash-token` prints it).
std::string hash_token(std::string_view secret);

/// Reads, validates and compiles a policy file. Reports every problem found
/// (unknown keys, bad hosts, CIDRs, regexes, ports, modes, a missing or
/// unsupported `version`), each with file and line. `mode_override`, when
/// set, replaces the file's mode (serve --mode).
PolicySnapshot load_policy_file(const std::string& path,
                                std::optional<Mode> mode_override = std::nullopt);

/// The same from text; `name` stands in for the file name in messages.
PolicySnapshot load_policy_string(std::string_view yaml, const std::string& name,
                                  std::optional<Mode> mode_override = std::nullopt);

/// The embedded default: developer mode, no rules.
PolicySnapshot default_policy(std::optional<Mode> mode_override = std::nullopt);

}  // namespace egress::policy
