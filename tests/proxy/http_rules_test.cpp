// Header hygiene on the way up and down, and the refusal a worker reads.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "fakes.h"
#include "proxy/http_rules.h"

using namespace egress;
using namespace egress::proxy;
using policy::Reason;

namespace {

RequestTarget http_to(const std::string& url) {
  auto parsed = parse_absolute_target(url);
  REQUIRE(parsed.request);
  return *parsed.request;
}

std::vector<std::string> values_of(const http::fields& fields, std::string_view name) {
  std::vector<std::string> out;
  const auto [first, last] = fields.equal_range(name);
  for (auto it = first; it != last; ++it) out.emplace_back(it->value());
  return out;
}

/// A worker's request head with every hop-by-hop header egress must drop.
http::request_header<> worker_request(unsigned version = 11) {
  http::request_header<> head;
  head.method(http::verb::post);
  head.target("http://example.com/upload?x=1");
  head.version(version);
  head.set(http::field::host, "attacker-chosen.example");
  head.set(http::field::user_agent, "curl/7.88");
  head.set(http::field::content_length, "5");
  head.set(http::field::proxy_authorization, "Basic c2VjcmV0");
  head.set(http::field::proxy_connection, "keep-alive");
  head.set(http::field::keep_alive, "timeout=5");
  head.set(http::field::te, "trailers");
  head.set(http::field::trailer, "X-Checksum");
  head.set(http::field::upgrade, "websocket");
  head.set(http::field::expect, "100-continue");
  return head;
}

/// The one place tests construct an Attempt.
Attempt make_attempt(std::string client_addr, policy::Mode mode, std::string role) {
  static testing::RecordingStore audit;  // the refusal's events are not what these tests check
  Attempt attempt(AttemptSink{audit}, std::move(client_addr), mode);
  attempt.set_role(std::move(role));
  return attempt;
}

}  // namespace

TEST_CASE("Upstream requests lose hop-by-hop and proxy headers", "[proxy]") {
  auto head = worker_request();
  prepare_upstream_request(head, http_to("http://example.com/upload?x=1"));
  for (const auto field : {http::field::proxy_authorization, http::field::proxy_connection, http::field::keep_alive,
                           http::field::te, http::field::trailer, http::field::upgrade, http::field::expect,
                           http::field::connection, http::field::proxy_authenticate}) {
    INFO(http::to_string(field));
    CHECK(head.count(field) == 0);
  }
  CHECK(head[http::field::user_agent] == "curl/7.88");
  CHECK(head[http::field::content_length] == "5");
  CHECK(head.method() == http::verb::post);
}

TEST_CASE("Headers the Connection header names are removed, framing headers never", "[proxy]") {
  struct Case {
    std::vector<std::string> connection;  // one Connection header per entry
    std::vector<std::string> removed;
    std::vector<std::string> kept;
  };
  auto c = GENERATE(values<Case>({
      {{"X-Secret"}, {"X-Secret"}, {"X-Other", "Content-Length"}},
      {{"x-secret"}, {"X-Secret"}, {"X-Other"}},
      {{"close, X-Secret"}, {"X-Secret"}, {"X-Other"}},
      {{" X-Secret ,\tX-Other "}, {"X-Secret", "X-Other"}, {"User-Agent"}},
      {{"X-Secret", "X-Other"}, {"X-Secret", "X-Other"}, {"User-Agent"}},
      {{",,X-Secret,,"}, {"X-Secret"}, {"X-Other"}},
      {{"Content-Length, Transfer-Encoding, X-Secret"}, {"X-Secret"}, {"Content-Length", "Transfer-Encoding"}},
      {{"content-length"}, {}, {"Content-Length"}},
      {{"keep-alive"}, {"Keep-Alive"}, {"X-Secret", "Content-Length"}},
  }));
  http::request_header<> head;
  head.method(http::verb::get);
  head.target("http://example.com/");
  head.version(11);
  for (const auto& value : c.connection) head.insert(http::field::connection, value);
  head.set("X-Secret", "s");
  head.set("X-Other", "o");
  head.set(http::field::user_agent, "ua");
  head.set(http::field::content_length, "0");
  head.set(http::field::transfer_encoding, "chunked");
  head.set(http::field::keep_alive, "timeout=5");

  SECTION("upstream request") { prepare_upstream_request(head, http_to("http://example.com/")); }
  SECTION("client response") {
    http::response_header<> response;
    response.result(http::status::ok);
    response.version(11);
    for (const auto& field : head) response.insert(field.name_string(), field.value());
    prepare_client_response(response, 11, true);
    head = http::request_header<>();
    for (const auto& field : response) head.insert(field.name_string(), field.value());
  }
  for (const auto& name : c.removed) {
    INFO("removed: " << name);
    CHECK(head.count(name) == 0);
  }
  for (const auto& name : c.kept) {
    INFO("kept: " << name);
    CHECK(head.count(name) == 1);
  }
  CHECK(head.count(http::field::connection) == 0);
}

TEST_CASE("Upstream requests carry Host from the URI, origin-form, Via and HTTP/1.1", "[proxy]") {
  struct Case {
    std::string url;
    std::string host;
    std::string target;
  };
  auto c = GENERATE(values<Case>({
      {"http://example.com/upload?x=1", "example.com", "/upload?x=1"},
      {"http://EXAMPLE.com:80/", "example.com", "/"},
      {"http://example.com:8080", "example.com:8080", "/"},
      {"http://0x7f.1:81/a#f", "127.0.0.1:81", "/a"},
      {"http://[::1]/", "[::1]", "/"},
      {"http://[2001:db8::1]:8080/p?q", "[2001:db8::1]:8080", "/p?q"},
  }));
  INFO(c.url);
  const unsigned version = GENERATE(10u, 11u);
  auto head = worker_request(version);
  head.insert(http::field::via, "1.0 squid");
  prepare_upstream_request(head, http_to(c.url));
  CHECK(values_of(head, "Host") == std::vector<std::string>{c.host});
  CHECK(head.target() == c.target);
  CHECK(values_of(head, "Via") == std::vector<std::string>{"1.0 squid", "1.1 egress"});
  CHECK(head.version() == 11);
}

TEST_CASE("Authorities omit the default port and bracket IPv6", "[proxy]") {
  struct Case {
    std::string authority;  // CONNECT form, parsed into a Target
    std::uint16_t default_port;
    std::string expected;
  };
  auto c = GENERATE(values<Case>({
      {"example.com:80", 80, "example.com"},
      {"example.com:443", 80, "example.com:443"},
      {"example.com:443", 443, "example.com"},
      {"10.0.0.1:80", 80, "10.0.0.1"},
      {"10.0.0.1:8080", 80, "10.0.0.1:8080"},
      {"[::1]:80", 80, "[::1]"},
      {"[::1]:8080", 80, "[::1]:8080"},
      {"[2001:DB8::1]:443", 443, "[2001:db8::1]"},
  }));
  INFO(c.authority);
  const auto parsed = parse_connect_target(c.authority);
  REQUIRE(parsed.request);
  CHECK(authority_of(parsed.request->target, c.default_port) == c.expected);
}

TEST_CASE("Client responses keep the connection as the worker's version expects", "[proxy]") {
  struct Case {
    unsigned client_version;
    bool keep_alive;
    std::vector<std::string> connection;
  };
  auto c = GENERATE(values<Case>({
      {10, true, {"keep-alive"}},
      {10, false, {}},
      {11, true, {}},
      {11, false, {"close"}},
  }));
  INFO("HTTP/" << c.client_version / 10 << "." << c.client_version % 10 << " keep_alive=" << c.keep_alive);
  http::response_header<> head;
  head.result(http::status::ok);
  head.version(11);
  head.set(http::field::connection, "keep-alive, X-Hop");
  head.set(http::field::keep_alive, "timeout=5, max=100");
  head.set("X-Hop", "1");
  head.set(http::field::upgrade, "h2c");
  head.set(http::field::proxy_authenticate, "Basic");
  head.set(http::field::content_type, "text/html");
  head.set(http::field::content_length, "12");
  prepare_client_response(head, c.client_version, c.keep_alive);
  CHECK(head.version() == c.client_version);
  CHECK(values_of(head, "Connection") == c.connection);
  CHECK(head.count(http::field::keep_alive) == 0);
  CHECK(head.count("X-Hop") == 0);
  CHECK(head.count(http::field::upgrade) == 0);
  CHECK(head.count(http::field::proxy_authenticate) == 0);
  CHECK(head[http::field::content_type] == "text/html");
  CHECK(head[http::field::content_length] == "12");
  CHECK(values_of(head, "Via") == std::vector<std::string>{"1.1 egress"});
  // What a 1.0 worker will conclude from this head is what we meant.
  http::response<http::string_body> as_message(std::move(head));
  CHECK(as_message.keep_alive() == c.keep_alive);
}

TEST_CASE("A refusal tells the worker what was refused, why, and what to do", "[proxy]") {
  struct Case {
    int status;
    std::string role;
    Reason reason;
    std::string detail;
    bool failure;  // set_failure after an allowing decision
  };
  auto c = GENERATE(values<Case>({
      {403, "", Reason::NotAllowed, "", false},
      {403, "comfyui", Reason::PrivateAddress, "10.0.0.5 is private", false},
      {403, "", Reason::DenyRule, "", false},
      {502, "ai_worker", Reason::DnsNxdomain, "blocked.example: no such name", false},
      {504, "", Reason::DnsTimeout, "blocked.example: timed out", false},
      {502, "", Reason::UpstreamUnreachable, "connection refused", true},
      {503, "", Reason::AuditUnavailable, "the audit log cannot be written", true},
  }));
  const unsigned version = GENERATE(10u, 11u);
  const bool keep_alive = GENERATE(true, false);
  INFO(policy::to_string(c.reason) << " HTTP/1." << version % 10 << " keep_alive=" << keep_alive);

  auto attempt = make_attempt("172.20.1.9:40000", policy::Mode::SelfHosted, c.role);
  attempt.set_target(http_to("http://Blocked.Example/x"));
  policy::Decision decision;
  decision.verdict = c.failure ? policy::Verdict::Allow : policy::Verdict::Deny;
  decision.reason = c.failure ? Reason::AllowRule : c.reason;
  decision.rule = "test.yaml:3";
  decision.detail = c.failure ? "" : c.detail;
  attempt.decide(decision);
  if (c.failure) attempt.fail(c.reason, c.detail);

  const auto res = refusal_response(c.status, attempt, version, keep_alive);
  CHECK(res.result_int() == static_cast<unsigned>(c.status));
  CHECK(res.version() == version);
  CHECK(res.keep_alive() == keep_alive);
  const std::string code(policy::to_string(c.reason));
  const std::string& body = res.body();
  INFO(body);
  CHECK(body.find("host:       blocked.example\n") != std::string::npos);
  CHECK(body.find("role:       " + (c.role.empty() ? std::string("(none)") : c.role) + "\n") != std::string::npos);
  CHECK(body.find("mode:       self-hosted\n") != std::string::npos);
  CHECK(body.find("reason:     " + code + "\n") != std::string::npos);
  CHECK(body.find("what to do: " + std::string(policy::explain(c.reason)) + "\n") != std::string::npos);
  CHECK(body.find("request id: " + attempt.request_id() + "\n") != std::string::npos);
  CHECK((body.find("detail:     " + c.detail + "\n") != std::string::npos) == !c.detail.empty());
  if (c.detail.empty()) CHECK(body.find("detail:") == std::string::npos);
  CHECK(res["X-Egress-Request-Id"] == attempt.request_id());
  CHECK(res["X-Egress-Reason"] == code);
  CHECK(res[http::field::content_length] == std::to_string(body.size()));
  CHECK(res[http::field::content_type] == "text/plain; charset=utf-8");
  CHECK(res[http::field::cache_control] == "no-store");
  CHECK(res.count(http::field::transfer_encoding) == 0);
}

TEST_CASE("A refusal before the target parsed shows the raw host", "[proxy]") {
  auto attempt = make_attempt("127.0.0.1:1", policy::Mode::Production, "");
  attempt.set_raw_target("ftp://files.example/x");
  attempt.refuse(Reason::UnsupportedScheme, "scheme 'ftp' is not proxied");
  const auto res = refusal_response(400, attempt, 11, false);
  CHECK(res.result() == http::status::bad_request);
  CHECK(res.body().find("host:       ftp://files.example/x\n") != std::string::npos);
  CHECK(res.body().find("mode:       production\n") != std::string::npos);
  CHECK(res["X-Egress-Reason"] == "unsupported-scheme");
  CHECK(res[http::field::connection] == "close");
}
