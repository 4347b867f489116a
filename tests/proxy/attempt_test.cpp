// Attempt: request ids, the decision and close events for the audit log, and
// the canonical log line.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <boost/json/parse.hpp>

#include "egress/proxy/evaluate.h"
#include "fakes.h"
#include "proxy/attempt.h"

using namespace egress;
using namespace egress::proxy;
using policy::Reason;

namespace {

bool is_request_id(const std::string& id) {
  return id.size() == kRequestIdLength && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

RequestTarget http_to(const std::string& url) {
  auto parsed = parse_absolute_target(url);
  REQUIRE(parsed.request);
  return *parsed.request;
}

policy::Decision decision(policy::Verdict verdict, Reason reason, std::string rule, std::string detail = "") {
  policy::Decision d;
  d.verdict = verdict;
  d.reason = reason;
  d.rule = std::move(rule);
  d.detail = std::move(detail);
  return d;
}

/// The value of `name=` in a log line, as written (quotes and escapes kept).
std::string field_of(const std::string& line, const std::string& name) {
  const auto key = " " + name + "=";
  auto at = line.find(key);
  if (line.rfind(name + "=", 0) == 0) at = 0;
  else if (at == std::string::npos) return "<absent>";
  else at += 1;
  at += name.size() + 1;
  if (line[at] != '"') return line.substr(at, line.find(' ', at) - at);
  auto end = at + 1;
  while (end < line.size() && line[end] != '"') end += line[end] == '\\' ? 2 : 1;
  return line.substr(at, end + 1 - at);
}

/// Where the tests' attempts record their events.
testing::RecordingStore& store() {
  static testing::RecordingStore recorded;
  return recorded;
}

/// The one place tests construct an Attempt.
Attempt make_attempt(std::string client_addr, policy::Mode mode, std::string role,
                     audit::AuditStore& audit = store()) {
  Attempt attempt(AttemptSink{audit}, std::move(client_addr), mode);
  attempt.set_role(std::move(role));
  return attempt;
}

}  // namespace

TEST_CASE("Request ids are 24 lower-case hex digits, time first, and do not repeat", "[proxy]") {
  const auto ms_now = [] {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
  };
  const auto before = ms_now();
  std::vector<std::string> made;
  for (int i = 0; i < 10'000; ++i) {
    made.push_back(new_request_id());
    INFO(made.back());
    REQUIRE(is_request_id(made.back()));
  }
  const auto after = ms_now();
  CHECK(std::set<std::string>(made.begin(), made.end()).size() == made.size());
  // The first 11 digits are the creation time in Unix milliseconds, so ids
  // made later never sort before ids made earlier.
  for (std::size_t i = 0; i < made.size(); ++i) {
    const auto ms = std::stoull(made[i].substr(0, 11), nullptr, 16);
    INFO(made[i]);
    REQUIRE(ms >= before);
    REQUIRE(ms <= after);
    if (i > 0) REQUIRE(made[i - 1].substr(0, 11) <= made[i].substr(0, 11));
  }
  // Every hex digit turns up in every random position over that many draws.
  for (std::size_t pos = 11; pos < kRequestIdLength; ++pos) {
    std::set<char> digits;
    for (const auto& id : made) digits.insert(id[pos]);
    INFO("position " << pos);
    CHECK(digits.size() == 16);
  }
}

TEST_CASE("Each attempt gets its own request id", "[proxy]") {
  auto a = make_attempt("10.0.0.1:1", policy::Mode::Developer, "");
  auto b = make_attempt("10.0.0.1:1", policy::Mode::Developer, "");
  CHECK(is_request_id(a.request_id()));
  CHECK(is_request_id(b.request_id()));
  CHECK(a.request_id() != b.request_id());
}

TEST_CASE("The decision event carries who, what and the decision", "[proxy]") {
  auto attempt = make_attempt("172.20.1.9:40000", policy::Mode::SelfHosted, "comfyui");
  attempt.set_method("GET");
  attempt.set_target(http_to("http://Models.HuggingFace.co:8080/api/x?q=1"));
  attempt.decide(decision(policy::Verdict::Deny, Reason::PathNotAllowed, "policy.yaml:12", "path /api/x"));
  attempt.set_upstream("1.2.3.4:8080");  // not part of the decision

  const auto e = attempt.decision_event();
  CHECK(e.event == audit::EventType::Decision);
  CHECK(e.request_id == attempt.request_id());
  CHECK(e.mode == "self-hosted");
  CHECK(e.role == "comfyui");
  CHECK(e.client_addr == "172.20.1.9:40000");
  CHECK(e.kind == "http");
  CHECK(e.method == "GET");
  CHECK(e.scheme == "http");
  CHECK(e.host == "models.huggingface.co");
  CHECK(e.port == 8080);
  CHECK(e.path == "/api/x");
  CHECK(e.decision == "deny");
  CHECK(e.reason == "path-not-allowed");
  CHECK(e.rule == "policy.yaml:12");
  CHECK(e.error == "path /api/x");
  CHECK(e.upstream_addr.empty());
  CHECK_FALSE(e.status);
  CHECK_FALSE(e.bytes_up);
  CHECK_FALSE(e.bytes_down);
  CHECK_FALSE(e.duration_ms);
  CHECK(attempt.refusal_reason() == Reason::PathNotAllowed);
}

TEST_CASE("A refusal before any decision is recorded as a deny with its reason", "[proxy]") {
  auto attempt = make_attempt("127.0.0.1:5", policy::Mode::Production, "");
  attempt.set_kind(policy::RequestKind::Connect);
  attempt.set_method("CONNECT");
  attempt.set_raw_target("::1:443");
  attempt.refuse(Reason::InvalidHost, "put IPv6 in brackets");
  const auto e = attempt.decision_event();
  CHECK(e.kind == "connect");
  CHECK(e.host == "::1:443");
  CHECK_FALSE(e.port);
  CHECK(e.decision == "deny");
  CHECK(e.reason == "invalid-host");
  CHECK(e.rule.empty());
  CHECK(e.error == "put IPv6 in brackets");
  CHECK(attempt.error_text() == "put IPv6 in brackets");
}

TEST_CASE("The close event carries status, bytes, duration and error", "[proxy]") {
  struct Case {
    const char* name;
    bool fail;
    Reason reason;
    std::string detail;
    std::string error_text;
  };
  auto c = GENERATE(values<Case>({
      {"no failure", false, Reason::DeveloperMode, "", ""},
      {"upstream unreachable", true, Reason::UpstreamUnreachable, "connect: Connection refused",
       "upstream-unreachable: connect: Connection refused"},
      {"upstream timeout", true, Reason::UpstreamTimeout, "no answer in 10000 ms",
       "upstream-timeout: no answer in 10000 ms"},
      {"failure without detail", true, Reason::AuditUnavailable, "", "audit-unavailable"},
  }));
  INFO(c.name);
  auto attempt = make_attempt("172.20.1.9:40000", policy::Mode::Developer, "");
  attempt.set_method("GET");
  attempt.set_target(http_to("http://example.com/"));
  attempt.decide(decision(policy::Verdict::Allow, Reason::DeveloperMode, "mode:developer"));
  attempt.set_upstream("93.184.216.34:80");
  if (c.fail) attempt.fail(c.reason, c.detail);
  CHECK(attempt.error_text() == c.error_text);
  CHECK(attempt.refusal_reason() == c.reason);

  const Attempt::Outcome outcome{c.fail ? 502 : 200, 123, 4567, attempt.error_text()};
  const auto e = attempt.close_event(outcome);
  CHECK(e.event == audit::EventType::Close);
  CHECK(e.request_id == attempt.request_id());
  CHECK(e.status == outcome.status);
  CHECK(e.bytes_up == 123);
  CHECK(e.bytes_down == 4567);
  REQUIRE(e.duration_ms);
  CHECK(*e.duration_ms >= 0);
  CHECK(e.error == c.error_text);
  CHECK(e.upstream_addr == "93.184.216.34:80");
  // The decision stays as it was made; the failure shows in the close event.
  CHECK(e.decision == "allow");
  CHECK(e.reason == "developer-mode");
  CHECK(attempt.decision_event().decision == "allow");
  CHECK(e.ts >= attempt.decision_event().ts);
}

TEST_CASE("The log line quotes values with spaces and escapes quotes", "[proxy]") {
  struct Case {
    std::string error;
    std::string written;  // as it appears after "error="
  };
  auto c = GENERATE(values<Case>({
      {"timeout", "timeout"},
      {"connect: Connection refused", R"("connect: Connection refused")"},
      {R"(bad "quote")", R"("bad \"quote\"")"},
      {R"(a"b)", R"("a\"b")"},
      {"k=v", R"("k=v")"},
      {R"(back\slash)", R"(back\\slash)"},
      {"two\nlines", R"("two\nlines")"},
      {"tab\there", R"("tab\there")"},
      {"cr\rlf", R"("cr\rlf")"},
      {std::string("nul\0byte", 8), R"("nul\x00byte")"},
      {"esc\x1b[31m", R"("esc\x1b[31m")"},
      {"caf\xc3\xa9", R"("caf\xc3\xa9")"},  // non-ASCII bytes too: the line stays ASCII
      {"raw\xff", R"("raw\xff")"},
      {"del\x7f", R"("del\x7f")"},
  }));
  INFO(c.error);
  auto attempt = make_attempt("172.20.1.9:40000", policy::Mode::SelfHosted, "comfy ui");
  attempt.set_method("GET");
  attempt.set_target(http_to("http://example.com:8080/a%20b"));
  attempt.decide(decision(policy::Verdict::Deny, Reason::NotAllowed, "default"));
  const auto line = attempt.log_line({403, 0, 512, c.error}, egress::config::LogFormat::Text);
  INFO(line);
  CHECK(line.find('\n') == std::string::npos);
  CHECK(line.find('\r') == std::string::npos);
  CHECK(line.rfind("request_id=" + attempt.request_id() + " ", 0) == 0);
  CHECK(field_of(line, "error") == c.written);
  CHECK(field_of(line, "kind") == "http");
  CHECK(field_of(line, "client_addr") == "172.20.1.9:40000");
  CHECK(field_of(line, "role") == R"("comfy ui")");
  CHECK(field_of(line, "mode") == "self-hosted");
  CHECK(field_of(line, "method") == "GET");
  CHECK(field_of(line, "host") == "example.com");
  CHECK(field_of(line, "port") == "8080");
  CHECK(field_of(line, "path") == "/a%20b");
  CHECK(field_of(line, "decision") == "deny");
  CHECK(field_of(line, "reason") == "not-allowed");
  CHECK(field_of(line, "rule") == "default");
  CHECK(field_of(line, "status") == "403");
  CHECK(field_of(line, "bytes_up") == "0");
  CHECK(field_of(line, "bytes_down") == "512");
  CHECK(field_of(line, "duration_ms") != "<absent>");
  CHECK(field_of(line, "upstream_addr") == "<absent>");  // empty values are left out
}

TEST_CASE("The JSON log line is the body of one valid JSON object", "[proxy]") {
  struct Case {
    std::string error;
    std::string written;  // the "error" member as serialised
  };
  auto c = GENERATE(values<Case>({
      {"timeout", R"("error":"timeout")"},
      {R"(bad "quote")", R"("error":"bad \"quote\"")"},
      {"two\nlines", R"("error":"two\nlines")"},
      {std::string("nul\0byte", 8), R"("error":"nul\u0000byte")"},
      {"caf\xc3\xa9", "\"error\":\"caf\xc3\xa9\""},       // valid UTF-8 is kept
      {"raw\xff", "\"error\":\"raw\xef\xbf\xbd\""},         // invalid UTF-8 becomes U+FFFD
  }));
  INFO(c.error);
  auto attempt = make_attempt("172.20.1.9:40000", policy::Mode::SelfHosted, "comfy ui");
  attempt.set_method("GET");
  attempt.set_target(http_to("http://example.com:8080/a%20b"));
  attempt.decide(decision(policy::Verdict::Deny, Reason::NotAllowed, "default"));
  const auto line = attempt.log_line({403, 0, 512, c.error}, egress::config::LogFormat::Json);
  INFO(line);
  const auto parsed = boost::json::parse("{" + line + "}").as_object();
  CHECK(line.rfind("\"request_id\":\"" + attempt.request_id() + "\"", 0) == 0);
  CHECK(line.find(c.written) != std::string::npos);
  CHECK(parsed.at("role").as_string() == "comfy ui");
  CHECK(parsed.at("host").as_string() == "example.com");
  CHECK(parsed.at("port").as_int64() == 8080);  // numbers stay numbers
  CHECK(parsed.at("status").as_int64() == 403);
  CHECK(parsed.at("bytes_down").as_int64() == 512);
  CHECK(parsed.at("reason").as_string() == "not-allowed");
  CHECK_FALSE(parsed.contains("upstream_addr"));  // empty values are left out
}

TEST_CASE("An attempt records one decision and one close, whatever way it goes", "[proxy]") {
  // Each step is what a session does; the rows are what the audit log gets.
  enum class Step { Allow, Deny, Refuse, Commit, Fail, Finish };
  // Works; Refuses: audit_sync normal, the journal refuses the event (it is
  // recorded nowhere); CommitFails: audit_sync full, the fsynced commit fails.
  enum class Audit { Works, Refuses, CommitFails };
  struct Case {
    const char* name;
    std::vector<Step> steps;
    Audit audit;
    std::vector<std::string> decisions;  // decision column of the decision rows, in order
    std::string close_reason;           // the reason a worker is shown at the close
    bool committed;                     // what commit() returned, when it ran
  };
  auto c = GENERATE(values<Case>({
      {"allowed and forwarded", {Step::Allow, Step::Commit, Step::Finish}, Audit::Works, {"allow"}, "allow-rule", true},
      {"denied by policy", {Step::Deny, Step::Finish}, Audit::Works, {"deny"}, "not-allowed", false},
      {"refused before deciding", {Step::Refuse, Step::Finish}, Audit::Works, {"deny"}, "bad-request", false},
      {"allowed, then a missing secret", {Step::Allow, Step::Refuse, Step::Finish}, Audit::Works, {"deny"}, "bad-request",
       false},
      {"allowed, upstream fails", {Step::Allow, Step::Commit, Step::Fail, Step::Finish}, Audit::Works, {"allow"},
       "upstream-unreachable", true},
      {"allowed, the journal refuses the decision", {Step::Allow, Step::Commit, Step::Finish}, Audit::Refuses, {},
       "audit-unavailable", false},
      {"allowed, the audit log cannot commit", {Step::Allow, Step::Commit, Step::Finish}, Audit::CommitFails,
       {"allow"}, "audit-unavailable", false},
      {"allowed, the worker left before the commit", {Step::Allow, Step::Finish}, Audit::Works, {"allow"}, "allow-rule",
       false},
      {"allowed, then the SNI check denies", {Step::Allow, Step::Deny, Step::Finish}, Audit::Works, {"deny"},
       "not-allowed", false},
  }));
  INFO(c.name);
  testing::RecordingStore audit;
  audit.fail_commits = c.audit != Audit::Works;
  audit.full_sync = c.audit == Audit::CommitFails;
  auto attempt = make_attempt("10.0.0.1:1", policy::Mode::SelfHosted, "", audit);
  bool committed = false;
  for (const auto step : c.steps) {
    switch (step) {
      case Step::Allow: attempt.decide(decision(policy::Verdict::Allow, Reason::AllowRule, "policy.yaml:3")); break;
      case Step::Deny: attempt.decide(decision(policy::Verdict::Deny, Reason::NotAllowed, "default")); break;
      case Step::Refuse: attempt.refuse(Reason::BadRequest, "no"); break;
      case Step::Commit: committed = testing::run(attempt.commit()); break;
      case Step::Fail: attempt.fail(Reason::UpstreamUnreachable, "refused"); break;
      case Step::Finish: attempt.finish({502, 0, 0, attempt.error_text()}); break;
    }
  }
  std::vector<std::string> decisions;
  for (const auto& e : audit.events) {
    if (e.event == audit::EventType::Decision) decisions.push_back(e.decision);
  }
  CHECK(decisions == c.decisions);
  CHECK(audit.count(audit::EventType::Close) == 1);
  REQUIRE(audit.events.size() == c.decisions.size() + 1);
  CHECK(audit.events.back().event == audit::EventType::Close);  // the decision always comes first
  CHECK(audit.events.front().request_id == audit.events.back().request_id);
  CHECK(policy::to_string(attempt.refusal_reason()) == c.close_reason);
  CHECK(committed == c.committed);
  CHECK(attempt.finished());
}
