// The plain tunnel relay (splice_relay.h) between two real loopback TCP
// connections: bytes both ways arrive whole and in order and are counted
// exactly, what was read ahead goes first, a FIN half-closes, an idle
// tunnel is closed, and without pipes (new ones failing as pipe2 does
// with no descriptors left, through the pool's opener) the copy relay
// does the same job, for the whole tunnel or for the steps of a direction
// that can get no pipe mid-tunnel. The relay's counter says which path ran.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <optional>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "proxy/relay.h"
#include "proxy/splice_relay.h"

using namespace egress;
using namespace egress::proxy;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

/// `n` bytes that are not all alike, so a reordered or lost chunk shows.
std::string pattern(std::size_t n, unsigned seed) {
  std::string out(n, '\0');
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<char>((i * 131 + seed + (i >> 12)) & 0xff);
  return out;
}

/// The worker, the proxy's two sockets and the upstream.
struct Tunnel {
  asio::io_context ioc{1};
  admin::Metrics metrics;
  tcp::socket worker{ioc}, upstream{ioc};  // the ends the test drives
  beast::tcp_stream client{ioc}, server{ioc};  // the relay's ends
  beast::flat_buffer client_buffer, upstream_buffer;
  std::uint64_t bytes_up = 0, bytes_down = 0;
  std::optional<bool> idled;
  bool no_pipes = false;  // new pipes fail with EMFILE, as without descriptors
  PipePool pipes;

  static Pipe open_pipe(void* tunnel) {
    return static_cast<Tunnel*>(tunnel)->no_pipes ? Pipe::failed(EMFILE) : Pipe::open();
  }

  explicit Tunnel(std::size_t keep_pipes = 16) : pipes(keep_pipes, &Tunnel::open_pipe, this) {
    std::signal(SIGPIPE, SIG_IGN);  // as serve does: splice_relay.h
    tcp::acceptor acceptor(ioc, {asio::ip::make_address("127.0.0.1"), 0});
    worker.connect(acceptor.local_endpoint());
    client.socket() = acceptor.accept();
    upstream.connect(acceptor.local_endpoint());
    server.socket() = acceptor.accept();
  }

  std::string counter(const char* relay) const {
    const std::string prefix = std::string("egress_proxy_tunnels_relayed_total{relay=\"") + relay + "\"} ";
    const auto text = metrics.render();
    const auto at = text.find(prefix);
    return at == std::string::npos ? "" : text.substr(at + prefix.size(), text.find('\n', at) - at - prefix.size());
  }
};

asio::awaitable<void> relay(Tunnel& t, std::chrono::milliseconds idle) {
  t.idled = co_await relay_tcp_tunnel(t.client, t.client_buffer, t.server, t.upstream_buffer, t.bytes_up,
                                      t.bytes_down, idle, t.pipes, t.metrics);
}

asio::awaitable<void> send(tcp::socket& socket, std::string data) {
  co_await asio::async_write(socket, asio::buffer(data), use_nothrow);
}

/// Writes `data`, then half-closes.
asio::awaitable<void> send_then_fin(tcp::socket& socket, std::string data) {
  co_await send(socket, std::move(data));
  beast::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
}

/// Reads until EOF (or an error).
asio::awaitable<void> read_to_end(tcp::socket& socket, std::string& into) {
  co_await asio::async_read(socket, asio::dynamic_buffer(into), use_nothrow);
}

/// Reads to EOF, then answers `reply` and half-closes: the other direction
/// must still run after the first one ended.
asio::awaitable<void> read_then_answer(tcp::socket& socket, std::string& into, std::string reply) {
  co_await read_to_end(socket, into);
  co_await send_then_fin(socket, reply);
}

/// "first" goes through a pipe; then no pipe can be made (the pool keeps
/// none, and new ones fail as without descriptors), and the rest of the
/// tunnel, both ways, is copied step by step.
asio::awaitable<void> starve_mid_tunnel(Tunnel& t, std::string& up, std::string& down) {
  co_await send(t.worker, "first");
  up.assign(5, '\0');
  co_await asio::async_read(t.upstream, asio::buffer(up), use_nothrow);
  t.no_pipes = true;
  co_await send_then_fin(t.worker, "second");
  co_await read_to_end(t.upstream, up);  // appends
  co_await send_then_fin(t.upstream, "answer");
  co_await read_to_end(t.worker, down);
}

void bulk_both_ways(Tunnel& t) {
  const auto up = pattern(24 << 20, 1), down = pattern(16 << 20, 2);
  std::string got_up, got_down;
  t.client_buffer.commit(asio::buffer_copy(t.client_buffer.prepare(5), asio::buffer("ahead", 5)));
  asio::co_spawn(t.ioc, relay(t, 10s), asio::detached);
  asio::co_spawn(t.ioc, send_then_fin(t.worker, up), asio::detached);
  asio::co_spawn(t.ioc, send_then_fin(t.upstream, down), asio::detached);
  asio::co_spawn(t.ioc, read_to_end(t.upstream, got_up), asio::detached);
  asio::co_spawn(t.ioc, read_to_end(t.worker, got_down), asio::detached);
  t.ioc.run();
  REQUIRE(t.idled == false);
  CHECK(got_up.size() == up.size() + 5);
  CHECK((got_up.substr(0, 5) == "ahead" && got_up.substr(5) == up));
  CHECK(got_down == down);
  CHECK(t.bytes_up == up.size() + 5);
  CHECK(t.bytes_down == down.size());
}

}  // namespace

TEST_CASE("a plain tunnel moves bytes both ways with splice, whole, in order and counted exactly", "[proxy]") {
  Tunnel t;
  bulk_both_ways(t);
  CHECK(t.counter("splice") == "1");
  CHECK(t.counter("copy") == "0");
}

TEST_CASE("a FIN from one side half-closes and the other side's bytes still arrive", "[proxy]") {
  struct Case {
    const char* name;
    bool worker_sends_fin;  // else the upstream does
    std::string first, answer;
  };
  auto c = GENERATE(values<Case>({
      {"the worker's FIN, then the upstream's answer", true, "request", "answer after the FIN"},
      {"the upstream's FIN, then the worker's bytes", false, "banner", "sent after the banner's FIN"},
  }));
  INFO(c.name);
  Tunnel t;
  auto& finisher = c.worker_sends_fin ? t.worker : t.upstream;
  auto& answerer = c.worker_sends_fin ? t.upstream : t.worker;
  std::string got_first, got_answer;
  asio::co_spawn(t.ioc, relay(t, 10s), asio::detached);
  asio::co_spawn(t.ioc, send_then_fin(finisher, c.first), asio::detached);
  asio::co_spawn(t.ioc, read_then_answer(answerer, got_first, c.answer), asio::detached);
  asio::co_spawn(t.ioc, read_to_end(finisher, got_answer), asio::detached);
  t.ioc.run();
  CHECK(t.idled == false);
  CHECK(got_first == c.first);
  CHECK(got_answer == c.answer);
  CHECK((c.worker_sends_fin ? t.bytes_up : t.bytes_down) == c.first.size());
  CHECK((c.worker_sends_fin ? t.bytes_down : t.bytes_up) == c.answer.size());
  CHECK(t.counter("splice") == "1");
}

TEST_CASE("a tunnel where nothing moves is closed after the idle timeout", "[proxy]") {
  Tunnel t;
  std::string got_up, got_down;
  const auto started = std::chrono::steady_clock::now();
  asio::co_spawn(t.ioc, relay(t, 200ms), asio::detached);
  asio::co_spawn(t.ioc, read_to_end(t.upstream, got_up), asio::detached);
  asio::co_spawn(t.ioc, read_to_end(t.worker, got_down), asio::detached);
  t.ioc.run();
  const auto took = std::chrono::steady_clock::now() - started;
  CHECK(t.idled == true);
  CHECK(took >= 200ms);
  CHECK(took < 5s);
  CHECK((got_up.empty() && got_down.empty()));
  CHECK(t.counter("splice") == "1");
}

TEST_CASE("a tunnel that moved bytes then went silent is closed after the idle timeout", "[proxy]") {
  Tunnel t;
  std::string got_up;
  asio::co_spawn(t.ioc, relay(t, 200ms), asio::detached);
  asio::co_spawn(t.ioc, send(t.worker, "hello"), asio::detached);
  asio::co_spawn(t.ioc, read_to_end(t.upstream, got_up), asio::detached);
  t.ioc.run();
  CHECK(t.idled == true);
  CHECK(got_up == "hello");
  CHECK(t.bytes_up == 5);
}

TEST_CASE("without descriptors for the pipes the copy relay runs, with the same bytes and counts", "[proxy]") {
  Tunnel t;
  t.no_pipes = true;
  bulk_both_ways(t);
  CHECK(t.counter("splice") == "0");
  CHECK(t.counter("copy") == "1");
}

TEST_CASE("a direction that can get no pipe mid-tunnel copies its steps, every byte counted", "[proxy]") {
  Tunnel t(0);  // the pool keeps no pipe
  std::string got_up, got_down;
  asio::co_spawn(t.ioc, relay(t, 10s), asio::detached);
  asio::co_spawn(t.ioc, starve_mid_tunnel(t, got_up, got_down), asio::detached);
  t.ioc.run();
  CHECK(t.idled == false);
  CHECK(got_up == "firstsecond");
  CHECK(got_down == "answer");
  CHECK(t.bytes_up == 11);
  CHECK(t.bytes_down == 6);
  CHECK(t.counter("splice") == "1");
  CHECK(t.counter("copy") == "0");
}

TEST_CASE("a tunnel gives its empty pipes back to the pool", "[proxy]") {
  Tunnel t;
  std::string got_up;
  asio::co_spawn(t.ioc, relay(t, 200ms), asio::detached);
  asio::co_spawn(t.ioc, send(t.worker, "hello"), asio::detached);
  asio::co_spawn(t.ioc, read_to_end(t.upstream, got_up), asio::detached);
  t.ioc.run();
  REQUIRE(got_up == "hello");
  // With new pipes failing, a take can only be served from the pool.
  t.no_pipes = true;
  CHECK(t.pipes.take().ok());
}
