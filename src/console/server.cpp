// The console listener (egress/console/server.h): one small coroutine per
// connection on the console's own thread, the pages and API answered by
// route(), and the Live page's event stream: every kTick the stream takes
// what the hub queued for it and sends at most kRowsPerTick rows of it,
// evenly sampled, with the counts that let the page say it samples.
#include "egress/console/server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <thread>

#include "console/routes.h"
#include "egress/admin/http_exchange.h"
#include "egress/admin/listener.h"

namespace egress::console {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

constexpr auto kTick = std::chrono::milliseconds(250);
constexpr std::size_t kRowsPerTick = 25;  // 100 rows a second per page at most

/// One tick's SSE frames: the sampled rows (a JSON array of row objects)
/// and the running counts.
std::string frames(const Subscription::Batch& batch, std::uint64_t& sent) {
  std::string out;
  const std::size_t n = batch.lines.size();
  const std::size_t keep = std::min(n, kRowsPerTick);
  if (keep > 0) {
    out = "event: rows\ndata: [";
    for (std::size_t i = 0; i < keep; ++i) {
      // Evenly spaced over the tick's rows, always including the newest.
      const std::size_t at = n - 1 - (i * n) / keep;
      out += (i ? "," : "") + batch.lines[at];
    }
    out += "]\n\n";
    sent += keep;
  }
  out += "event: stats\ndata: {\"seen\":" + std::to_string(batch.seen) + ",\"sent\":" + std::to_string(sent) +
         ",\"dropped\":" + std::to_string(batch.dropped) + "}\n\n";
  return out;
}

asio::awaitable<void> stream_events(beast::tcp_stream& stream, State& state, const Request& req) {
  const auto cookie = std::string(cookie_value(req[http::field::cookie], kCookieName));
  http::response<http::empty_body> head{http::status::ok, req.version()};
  head.set(http::field::content_type, "text/event-stream");
  add_security_headers(head);
  head.keep_alive(false);
  auto subscription = state.hub.subscribe();
  stream.expires_after(std::chrono::seconds(10));
  auto [hec, hn] = co_await http::async_write(stream, head, use_nothrow);
  if (hec) co_return;
  asio::steady_timer timer(stream.get_executor());
  std::uint64_t sent = 0;
  for (;;) {
    timer.expires_after(kTick);
    co_await timer.async_wait(use_nothrow);
    // A session that ended (logout, expiry) ends its stream too.
    if (!cookie.empty() && !state.sessions.valid(cookie, Clock::now())) co_return;
    const std::string text = frames(subscription->take(), sent);
    stream.expires_after(std::chrono::seconds(10));
    auto [ec, n] = co_await asio::async_write(stream, asio::buffer(text), use_nothrow);
    if (ec) co_return;
  }
}

constexpr admin::RequestLimits kLimits{std::chrono::seconds(30), 16 * 1024, 4 * 1024};

asio::awaitable<void> serve_connection(tcp::socket socket, State& state) {
  beast::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  const std::string source = ec ? std::string("unknown") : peer.address().to_string();
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  while (auto request = co_await admin::read_request(stream, buffer, kLimits)) {
    if (request->target() == kEventStreamPath && request->method() == http::verb::get &&
        authenticated(state, *request, source)) {
      co_await stream_events(stream, state, *request);
      break;
    }
    Response response = route(state, *request, source);
    if (!co_await admin::write_response(stream, *request, response)) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
}

}  // namespace

struct ConsoleServer::Impl {
  Impl(ConsoleOptions options, EventHub& hub, const std::string& listen)
      : state(std::move(options), hub),
        listener("console", listen, [this](tcp::socket socket) { return serve_connection(std::move(socket), state); }) {}
  State state;  // outlives the listener's thread (declared first)
  admin::Listener listener;
};

ConsoleServer::ConsoleServer(ConsoleOptions options, EventHub& hub) {
  const std::string listen = options.listen;
  if (options.secret_hashes.empty()) {
    throw std::runtime_error("console listener " + listen +
                             ": no console.secret_hashes in the configuration; add the output of `egress policy "
                             "hash-token` (given a long random secret) so someone can log in");
  }
  if (!options.policy) throw std::runtime_error("console listener " + listen + ": no policy tracker");
  impl_ = std::make_unique<Impl>(std::move(options), hub, listen);
}

ConsoleServer::~ConsoleServer() = default;

const std::string& ConsoleServer::address() const { return impl_->listener.address(); }

}  // namespace egress::console
