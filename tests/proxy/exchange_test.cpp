// The exchange (exchange.h) with plain forwarding's route, phase by phase,
// without the binary: a real loopback worker connection and a real loopback
// upstream, with the fakes for what is not about the exchange (the resolver
// answers from a table, the audit log is kept in memory). Each case checks
// the worker's answer, what reached the upstream, and that the attempt got
// one decision and one close.
#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include "fakes.h"
#include "proxy/exchange.h"
#include "proxy/plain_route.h"

using namespace egress;
using namespace egress::proxy;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr std::string_view kPolicy = R"(version: 1
mode: self-hosted
allow:
  - host: allowed.test
    ports: any
  - host: gone.test
    ports: any
internal:
  - cidr: 127.0.0.1/32
    ports: any
)";

/// Accepts one connection, keeps the head it is sent and answers 200 "ok".
asio::awaitable<void> upstream_once(tcp::acceptor& acceptor, std::string& received) {
  auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
  if (ec) co_return;
  std::string head;
  auto [read_ec, n] = co_await asio::async_read_until(socket, asio::dynamic_buffer(head), "\r\n\r\n", use_nothrow);
  if (read_ec) co_return;
  received = head.substr(0, n);
  static constexpr std::string_view kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
  co_await asio::async_write(socket, asio::buffer(kOk), use_nothrow);
}

/// Sends `request` as the worker and reads the answer to its end.
asio::awaitable<void> worker_sends(tcp::endpoint proxy, std::string request, std::string& answer) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect(proxy, use_nothrow);
  co_await asio::async_write(socket, asio::buffer(request), use_nothrow);
  co_await asio::async_read(socket, asio::dynamic_buffer(answer), use_nothrow);  // until the proxy closes
}

/// One exchange on the accepted connection, then the connection closes.
asio::awaitable<void> serve_one(Worker& worker, tcp::acceptor& acceptor, ExchangeEnd& end) {
  auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
  if (ec) co_return;
  beast::tcp_stream client(std::move(socket));
  beast::flat_buffer buffer;
  IdleWait idle;
  const std::string address = "127.0.0.1:1";
  const policy::IpAddress source;
  PlainRoute route(worker, source);
  RequestParser parser;
  Exchange<beast::tcp_stream, PlainRoute> exchange(worker, ClientSide<beast::tcp_stream>{client, buffer, idle, address},
                                                   route, HeadOrdinal::First);
  end = co_await exchange.run(parser);
  beast::error_code ignored;
  client.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

struct Run {
  std::string answer;          // what the worker read
  std::string upstream_saw;    // the head that reached the upstream ("" if none)
  ExchangeEnd end = ExchangeEnd::Close;
  std::vector<audit::Event> events;
};

/// The worker's resolver: answers from the test's FakeResolver, which the
/// test keeps so it can set the answers.
class SharedResolver final : public dns::Resolver {
 public:
  explicit SharedResolver(std::shared_ptr<testing::FakeResolver> fake) : fake_(std::move(fake)) {}
  asio::awaitable<dns::Resolution> resolve(std::string host) override { return fake_->resolve(std::move(host)); }

 private:
  std::shared_ptr<testing::FakeResolver> fake_;
};

Run exchange(const std::string& request, const std::function<void(testing::FakeResolver&)>& setup,
             config::Limits limits = {}) {
  config::ServeConfig config;
  config.limits = limits;
  testing::RecordingStore audit;
  Shared shared(config, policy::load_policy_string(kPolicy, "exchange_test.yaml"), audit);
  auto resolver = std::make_shared<testing::FakeResolver>();
  setup(*resolver);
  Worker worker(shared, WorkerParts{[resolver](asio::any_io_executor) -> dns::ResolverPtr {
                  return std::make_unique<SharedResolver>(resolver);
                }});

  tcp::acceptor proxy(worker.ioc, {asio::ip::make_address("127.0.0.1"), 0});
  tcp::acceptor upstream(worker.ioc, {asio::ip::make_address("127.0.0.1"), 0});
  resolver->answer("allowed.test", {"127.0.0.1"});
  Run out;
  std::string text = request;
  for (const auto* port = "UPSTREAM"; text.find(port) != std::string::npos;) {
    text.replace(text.find(port), 8, std::to_string(upstream.local_endpoint().port()));
  }
  asio::co_spawn(worker.ioc, upstream_once(upstream, out.upstream_saw), asio::detached);
  asio::co_spawn(worker.ioc, serve_one(worker, proxy, out.end), asio::detached);
  asio::co_spawn(worker.ioc, worker_sends(proxy.local_endpoint(), text, out.answer),
                 [&](std::exception_ptr) { upstream.close(); });
  worker.ioc.run_for(std::chrono::seconds(10));  // bounded: every case ends in well under a second
  out.events = audit.events;
  return out;
}

}  // namespace

TEST_CASE("The exchange's phases, through plain forwarding's route", "[proxy]") {
  struct Case {
    const char* name;
    std::string request;  // UPSTREAM is replaced by the upstream's port
    std::string status_line;
    std::string reason;     // the attempt's reason in its rows
    bool reaches_upstream;
    std::uint64_t max_body_bytes = 0;
  };
  auto c = GENERATE(values<Case>({
      {"allowed: forwarded, answered, one decision and one close",
       "GET http://allowed.test:UPSTREAM/x HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
       "HTTP/1.1 200 OK", "allow-rule", true},
      {"denied by policy: 403, nothing upstream",
       "GET http://denied.test:UPSTREAM/x HTTP/1.1\r\nHost: denied.test\r\n\r\n", "HTTP/1.1 403", "not-allowed",
       false},
      {"two Content-Lengths: refused before anything is decided",
       "POST http://allowed.test:UPSTREAM/x HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\n"
       "Content-Length: 5\r\n\r\nhello",
       "HTTP/1.1 400", "ambiguous-framing", false},
      {"a body over the limit: 413 before anything goes upstream",
       "POST http://allowed.test:UPSTREAM/x HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 50\r\n\r\n",
       "HTTP/1.1 413", "body-too-large", false, 10},
      {"an origin-form target is not a proxy request",
       "GET /x HTTP/1.1\r\nHost: allowed.test\r\n\r\n", "HTTP/1.1 400", "origin-form", false},
      {"a name that does not resolve: 502",
       "GET http://gone.test:UPSTREAM/x HTTP/1.1\r\nHost: gone.test\r\n\r\n", "HTTP/1.1 502",
       "dns-nxdomain", false},
  }));
  INFO(c.name);
  config::Limits limits;
  limits.max_body_bytes = c.max_body_bytes;
  limits.header_timeout = std::chrono::milliseconds(2000);
  const auto run = exchange(
      c.request,
      [](testing::FakeResolver& r) {
        r.fail("gone.test", dns::ResolveStatus::NxDomain, "no such name");
        r.answer("denied.test", {"127.0.0.2"});  // outside the internal cidr
      },
      limits);
  INFO(run.answer);
  CHECK(run.answer.rfind(c.status_line, 0) == 0);
  CHECK(run.answer.find("X-Egress-Request-Id: ") != std::string::npos);
  CHECK(!run.upstream_saw.empty() == c.reaches_upstream);
  if (c.reaches_upstream) {
    CHECK(run.upstream_saw.rfind("GET /x HTTP/1.1\r\n", 0) == 0);  // origin-form upstream
    CHECK(run.upstream_saw.find("Via: 1.1 egress") != std::string::npos);
  }
  REQUIRE(run.events.size() == 2);
  CHECK(run.events[0].event == audit::EventType::Decision);
  CHECK(run.events[1].event == audit::EventType::Close);
  CHECK(run.events[0].request_id == run.events[1].request_id);
  CHECK(run.events[0].reason == c.reason);
  CHECK(run.events[0].decision == (c.reaches_upstream ? "allow" : "deny"));
}
