// Moving bytes: an HTTP message streamed from one side to the other through
// a fixed buffer (a 1 GiB body never sits in memory), and the two-way byte
// pump of a tunnel (CONNECT, or an upgraded connection) with an idle
// watchdog.
#pragma once

#include <array>
#include <string>
#include <type_traits>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include "egress/admin/metrics.h"

namespace egress::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

inline constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

/// Chosen so a relay keeps a few TCP segments in flight per system call
/// without making every live connection expensive.
inline constexpr std::size_t kRelayBufferBytes = 16 * 1024;

/// Beast reads a head max(512, free capacity) bytes at a time, so a 1 KiB
/// response would take three reads (and be relayed as three writes): room
/// for a whole TLS record is made before a response head is read, and given
/// back once the connection is idle, so idle kept-alive connections stay
/// small.
inline void make_room_to_read(beast::flat_buffer& buffer) { buffer.reserve(kRelayBufferBytes); }
inline void release_room(beast::flat_buffer& buffer) {
  if (buffer.size() == 0) buffer.shrink_to_fit();
}

struct RelayResult {
  enum class Failed { Nothing, Reading, Writing };
  Failed failed = Failed::Nothing;
  beast::error_code ec;
  std::uint64_t bytes_written = 0;
};

/// Streams the message whose head `parser` has read from `in` to `out`: the
/// head (as the caller rewrote it in parser.get()) and then the body, chunk
/// by chunk. `read_timeout` / `write_timeout` bound each operation. The
/// streams are TCP (beast::tcp_stream) or TLS over it (inspected tunnels);
/// the deadlines go to the TCP stream underneath either way.
/// Bodies of announced length (Content-Length) are copied as raw bytes
/// after the head: their framing was checked with the head, so the parser
/// has nothing left to do, and bigger reads than kRelayBufferBytes pay off
/// for downloads. Never reads past the body, so a kept-alive connection's
/// next message stays in `in_buffer` / the socket.
inline constexpr std::size_t kSizedBodyBufferBytes = 64 * 1024;

template <bool isRequest, class InStream, class OutStream>
asio::awaitable<RelayResult> relay_sized_message(InStream& in, beast::flat_buffer& in_buffer,
                                                 http::parser<isRequest, http::buffer_body>& parser,
                                                 OutStream& out, std::chrono::milliseconds read_timeout,
                                                 std::chrono::milliseconds write_timeout) {
  RelayResult result;
  const auto fail = [&result](RelayResult::Failed where, beast::error_code ec) {
    result.failed = where;
    result.ec = ec;
    return result;
  };
  std::uint64_t left = *parser.content_length();
  http::serializer<isRequest, http::buffer_body> serializer{parser.get()};
  beast::get_lowest_layer(out).expires_after(write_timeout);
  if (in_buffer.size() >= left) {
    // The whole body came with the head (a small response, usually): one
    // write for both, so one TLS record or one writev instead of two.
    auto& body = parser.get().body();
    body.data = const_cast<void*>(in_buffer.data().data());
    body.size = static_cast<std::size_t>(left);
    body.more = false;
    auto [ec, written] = co_await http::async_write(out, serializer, use_nothrow);
    result.bytes_written += written;
    if (ec) co_return fail(RelayResult::Failed::Writing, ec);
    in_buffer.consume(static_cast<std::size_t>(left));
    co_return result;
  }
  auto [head_ec, head_bytes] = co_await http::async_write_header(out, serializer, use_nothrow);
  result.bytes_written += head_bytes;
  if (head_ec) co_return fail(RelayResult::Failed::Writing, head_ec);

  std::vector<char> buffer(static_cast<std::size_t>(std::min<std::uint64_t>(left, kSizedBodyBufferBytes)));
  while (left > 0) {
    asio::const_buffer chunk;
    if (in_buffer.size() > 0) {  // read ahead with the head
      chunk = asio::buffer(in_buffer.data(), static_cast<std::size_t>(std::min<std::uint64_t>(left, in_buffer.size())));
    } else {
      beast::get_lowest_layer(in).expires_after(read_timeout);
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(left, buffer.size()));
      auto [read_ec, n] = co_await in.async_read_some(asio::buffer(buffer.data(), want), use_nothrow);
      if (read_ec) co_return fail(RelayResult::Failed::Reading, read_ec == asio::error::eof ? http::error::partial_message : read_ec);
      chunk = asio::buffer(buffer.data(), n);
    }
    beast::get_lowest_layer(out).expires_after(write_timeout);
    auto [write_ec, written] = co_await asio::async_write(out, chunk, use_nothrow);
    result.bytes_written += written;
    if (write_ec) co_return fail(RelayResult::Failed::Writing, write_ec);
    if (chunk.data() == in_buffer.data().data()) in_buffer.consume(written);
    left -= written;
  }
  co_return result;
}

/// Streams the message through the parser chunk by chunk (chunked bodies,
/// bodies that end with the connection, and ones a `transform` may change),
/// writing what `transform(read, last)` returns for each read: the bytes as
/// they came (relay_message) or scrubbed of secrets (scrub_relay.h). The
/// view it returns must stay valid until the next call.
template <bool isRequest, class InStream, class OutStream, class Transform>
asio::awaitable<RelayResult> relay_parsed_message(InStream& in, beast::flat_buffer& in_buffer,
                                                  http::parser<isRequest, http::buffer_body>& parser, OutStream& out,
                                                  std::chrono::milliseconds read_timeout,
                                                  std::chrono::milliseconds write_timeout, Transform transform) {
  RelayResult result;
  std::array<char, kRelayBufferBytes> buffer;
  http::serializer<isRequest, http::buffer_body> serializer{parser.get()};
  do {
    auto& body = parser.get().body();
    std::string_view read;
    if (!parser.is_done()) {
      body.data = buffer.data();
      body.size = buffer.size();
      beast::get_lowest_layer(in).expires_after(read_timeout);
      auto [ec, n] = co_await http::async_read(in, in_buffer, parser, use_nothrow);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) {
        result.failed = RelayResult::Failed::Reading;
        result.ec = ec;
        co_return result;
      }
      read = std::string_view(buffer.data(), buffer.size() - body.size);
    }
    const std::string_view send = transform(read, parser.is_done());
    body.data = send.empty() ? nullptr : const_cast<char*>(send.data());
    body.size = send.size();
    body.more = !parser.is_done();
    beast::get_lowest_layer(out).expires_after(write_timeout);
    auto [ec, n] = co_await http::async_write(out, serializer, use_nothrow);
    result.bytes_written += n;
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      result.failed = RelayResult::Failed::Writing;
      result.ec = ec;
      co_return result;
    }
  } while (!serializer.is_done());
  co_return result;
}

template <bool isRequest, class InStream, class OutStream>
asio::awaitable<RelayResult> relay_message(InStream& in, beast::flat_buffer& in_buffer,
                                           http::parser<isRequest, http::buffer_body>& parser,
                                           OutStream& out, std::chrono::milliseconds read_timeout,
                                           std::chrono::milliseconds write_timeout) {
  if (parser.is_header_done() && !parser.is_done() && !parser.chunked() && parser.content_length()) {
    co_return co_await relay_sized_message(in, in_buffer, parser, out, read_timeout, write_timeout);
  }
  co_return co_await relay_parsed_message(in, in_buffer, parser, out, read_timeout, write_timeout,
                                          [](std::string_view read, bool) { return read; });
}

/// The object a tunnel moves bytes through: the socket itself for TCP (no
/// per-operation timer bookkeeping), the TLS stream for TLS.
template <class Stream>
auto& pumpable(Stream& stream) {
  if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
    return stream.socket();
  } else {
    return stream;
  }
}

/// The TCP socket under any stream of ours.
inline asio::ip::tcp::socket& socket_of(asio::ip::tcp::socket& socket) { return socket; }
template <class Stream>
asio::ip::tcp::socket& socket_of(Stream& stream) {
  return beast::get_lowest_layer(stream).socket();
}

/// One direction of a tunnel: copies until EOF, then half-closes `to` so the
/// peer sees the end while the other direction may still run. TLS has no
/// half-close, and a hard error ends both directions: both sockets close.
template <class From, class To>
asio::awaitable<void> pump(From& from, To& to, std::uint64_t& bytes,
                           std::chrono::steady_clock::time_point& last_activity) {
  const auto close_both = [&] {
    beast::error_code ignored;
    socket_of(from).close(ignored);
    socket_of(to).close(ignored);
  };
  std::array<char, kRelayBufferBytes> buffer;
  for (;;) {
    auto [read_ec, n] = co_await from.async_read_some(asio::buffer(buffer), use_nothrow);
    if (read_ec) {
      beast::error_code ignored;
      if (read_ec == asio::error::eof && std::is_same_v<To, asio::ip::tcp::socket>) {
        socket_of(to).shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
      } else {
        close_both();
      }
      co_return;
    }
    last_activity = std::chrono::steady_clock::now();
    auto [write_ec, written] = co_await asio::async_write(to, asio::buffer(buffer.data(), n), use_nothrow);
    bytes += written;
    if (write_ec) {
      close_both();
      co_return;
    }
  }
}

/// Returns once nothing has moved for `idle` (true), having closed both
/// sockets so the pumps end too, or when cancelled (false).
inline asio::awaitable<bool> idle_watchdog(const std::chrono::steady_clock::time_point& last_activity,
                                           std::chrono::milliseconds idle, asio::ip::tcp::socket& a,
                                           asio::ip::tcp::socket& b) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    const auto deadline = last_activity + idle;
    if (deadline <= std::chrono::steady_clock::now()) break;
    timer.expires_at(deadline);
    auto [ec] = co_await timer.async_wait(use_nothrow);
    if (ec) co_return false;  // cancelled: the tunnel ended first
  }
  beast::error_code ignored;
  a.close(ignored);
  b.close(ignored);
  co_return true;
}

/// "tunnel idle for N ms", the close event's error of a tunnel that timed out.
inline std::string idle_text(std::chrono::milliseconds idle) {
  return "tunnel idle for " + std::to_string(idle.count()) + " ms";
}

/// Sends what either side sent ahead (still in its buffer) to the other:
/// the first bytes of a tunnel, read with the CONNECT head or the
/// ClientHello. False when a write failed (the tunnel is over).
template <class Client, class Upstream>
asio::awaitable<bool> send_read_ahead(Client& client, beast::flat_buffer& client_buffer, Upstream& upstream,
                                      beast::flat_buffer& upstream_buffer, std::uint64_t& bytes_up,
                                      std::uint64_t& bytes_down) {
  if (client_buffer.size() > 0) {
    auto [ec, n] = co_await asio::async_write(upstream, client_buffer.data(), use_nothrow);
    bytes_up += n;
    client_buffer.consume(client_buffer.size());
    if (ec) co_return false;
  }
  if (upstream_buffer.size() > 0) {
    auto [ec, n] = co_await asio::async_write(client, upstream_buffer.data(), use_nothrow);
    bytes_down += n;
    upstream_buffer.consume(upstream_buffer.size());
    if (ec) co_return false;
  }
  co_return true;
}

/// The two pumps and the idle watchdog between `a` (the worker's side) and
/// `b`; true when it was the idle timeout.
template <class A, class B>
asio::awaitable<bool> pump_both_ways(A& a, B& b, std::uint64_t& bytes_up, std::uint64_t& bytes_down,
                                     std::chrono::milliseconds idle) {
  using namespace asio::experimental::awaitable_operators;
  auto last_activity = std::chrono::steady_clock::now();
  auto result = co_await ((pump(a, b, bytes_up, last_activity) && pump(b, a, bytes_down, last_activity)) ||
                          idle_watchdog(last_activity, idle, socket_of(a), socket_of(b)));
  co_return result.index() == 1 && std::get<1>(result);
}

/// Relays both ways between the worker and the upstream (a CONNECT tunnel,
/// or a connection after 101 Switching Protocols) until both directions
/// end or nothing moves for `idle`; true when it was the idle timeout.
/// What either side sent ahead (still in its buffer) goes first.
/// A plain TCP CONNECT tunnel goes through relay_tcp_tunnel
/// (splice_relay.h) instead, which falls back to this.
template <class Client, class Upstream>
asio::awaitable<bool> relay_both_ways(Client& client, beast::flat_buffer& client_buffer, Upstream& upstream,
                                      beast::flat_buffer& upstream_buffer, std::uint64_t& bytes_up,
                                      std::uint64_t& bytes_down, std::chrono::milliseconds idle,
                                      admin::Metrics& metrics) {
  beast::get_lowest_layer(client).expires_never();
  beast::get_lowest_layer(upstream).expires_never();
  if (!co_await send_read_ahead(client, client_buffer, upstream, upstream_buffer, bytes_up, bytes_down)) {
    co_return false;
  }
  const auto active = metrics.track_tunnel();
  co_return co_await pump_both_ways(pumpable(client), pumpable(upstream), bytes_up, bytes_down, idle);
}

}  // namespace egress::proxy
