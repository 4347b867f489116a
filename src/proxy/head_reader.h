// Reading one request head, the same way on every client stream: the plain
// worker connection (beast::tcp_stream) and the worker-side TLS stream of an
// inspected tunnel. Written once as a template over the stream (the shape
// of Beast's run_session<Stream>), so every check of the plain path holds
// inside inspected tunnels too: the deadlines, the strict raw check
// (check_request_head: framing, obs-fold, target and header limits), the
// head size limit and the body limit.
//
// Deadlines: the first head of a connection must arrive whole within
// header_timeout from accept (or from the tunnel's handshake); a later one
// may take idle_timeout to start, then header_timeout from its first byte.
// One deadline for the whole head, not per read, so a byte a second cannot
// keep a connection alive.
#pragma once

#include <algorithm>
#include <atomic>
#include <optional>
#include <string_view>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>

#include "egress/audit/store.h"
#include "egress/config/config.h"
#include "proxy/connection_limits.h"
#include "proxy/relay.h"
#include "proxy/request_head.h"

namespace egress::proxy {

using RequestParser = http::request_parser<http::buffer_body>;

/// What reading a head came to. `problem` set: refuse with it and close
/// (status 0: the head timed out, the socket is gone, nothing to answer).
/// `ec` set without a problem: the connection ended quietly (closed or idle
/// between requests). Neither: `parser` holds a checked head.
struct HeadRead {
  beast::error_code ec;
  std::optional<HeadProblem> problem;
  bool ok() const { return !ec && !problem; }
};

/// The bytes buffered so far, as text.
inline std::string_view buffered(const beast::flat_buffer& buffer) {
  const auto data = buffer.cdata();
  return {static_cast<const char*>(data.data()), data.size()};
}

/// The method of the head in `buffer` as far as it can be read (at most 32
/// bytes up to the first space), for the audit row of a refused head.
inline std::string_view head_method(const beast::flat_buffer& buffer) {
  const auto bytes = buffered(buffer);
  return bytes.substr(0, std::min<std::size_t>(bytes.find(' '), 32));
}

/// The refusal for a head that could not be read: nullopt when the
/// connection simply ended (closed or idle before a request started);
/// status 0 for a timeout. `started`: some bytes of the head had arrived.
std::optional<HeadProblem> unreadable_head(beast::error_code ec, bool started, const config::Limits& limits);

/// Sets the parser's body limit from limits.max_body_bytes; the refusal
/// (413 body-too-large) when Content-Length announces more. Chunked bodies
/// are cut by the parser as they stream (relay_message fails with
/// body_limit).
std::optional<HeadProblem> announced_body_problem(RequestParser& parser, std::uint64_t max_body_bytes);

/// The refusal for a chunked body that went over the limit mid-stream.
HeadProblem streamed_body_problem(std::uint64_t max_body_bytes);

/// Which head of the connection is read: the deadline differs.
enum class HeadOrdinal { First, Later };

/// Reads until `buffer` holds a whole head, under the deadlines above.
/// `idle` is entered while nothing of a head has arrived (connection_limits.h).
template <class Stream>
asio::awaitable<beast::error_code> read_head_bytes(Stream& stream, beast::flat_buffer& buffer,
                                                   const config::Limits& limits, HeadOrdinal ordinal,
                                                   const std::atomic<bool>& draining, IdleWait& idle) {
  static constexpr std::size_t kHeadReadBytes = 4096;
  const bool first = ordinal == HeadOrdinal::First;
  beast::get_lowest_layer(stream).expires_after(first ? limits.header_timeout : limits.idle_timeout);
  if (buffer.size() == 0) {
    if (draining.load(std::memory_order_relaxed)) co_return asio::error::operation_aborted;
    idle.enter();
    auto [ec, n] = co_await stream.async_read_some(buffer.prepare(kHeadReadBytes), use_nothrow);
    const bool kept_place = idle.leave();
    if (ec) co_return ec;
    // The place went to a new connection while this one was idle: close as
    // a drain does, the request unanswered (the worker may resend it).
    if (!kept_place) co_return asio::error::operation_aborted;
    buffer.commit(n);
  }
  if (!first) beast::get_lowest_layer(stream).expires_after(limits.header_timeout);
  std::size_t searched = 0;
  for (;;) {
    const auto bytes = buffered(buffer);
    if (find_head_end(bytes, searched) != std::string_view::npos) co_return beast::error_code{};
    if (bytes.size() >= limits.header_bytes) co_return beast::error_code(http::error::header_limit);
    searched = bytes.size();
    auto [ec, n] = co_await stream.async_read_some(buffer.prepare(kHeadReadBytes), use_nothrow);
    if (ec) co_return ec;
    buffer.commit(n);
  }
}

/// Reads, checks and parses one request head into `parser`.
template <class Stream>
asio::awaitable<HeadRead> read_request_head(Stream& stream, beast::flat_buffer& buffer, RequestParser& parser,
                                            const config::Limits& limits, HeadOrdinal ordinal,
                                            const std::atomic<bool>& draining, IdleWait& idle) {
  HeadRead out;
  out.ec = co_await read_head_bytes(stream, buffer, limits, ordinal, draining, idle);
  if (out.ec) {
    out.problem = unreadable_head(out.ec, buffer.size() > 0, limits);
    co_return out;
  }
  const auto bytes = buffered(buffer);
  const auto head = bytes.substr(0, find_head_end(bytes));
  out.problem = check_request_head(head, {limits.max_target_length, limits.max_header_count});
  if (out.problem) co_return out;
  // The whole head is buffered, so this parses without reading.
  parser.header_limit(static_cast<std::uint32_t>(limits.header_bytes));
  parser.body_limit(boost::none);
  auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, use_nothrow);
  if (ec) {
    out.ec = ec;
    out.problem = unreadable_head(ec, true, limits);
  }
  co_return out;
}

/// Refusals are logged without waiting for their commit, so a flood of them
/// could outrun the audit writer and grow its queue (memory) without bound.
/// Past kBacklogHigh uncommitted events a connection waits, before reading
/// its next request, until the writer is down to kBacklogLow. Bounded, so a
/// wedged writer cannot park connections for good (their decisions fail
/// closed on the commit anyway).
inline asio::awaitable<void> keep_pace_with_audit_writer(const audit::AuditStore& audit) {
  static constexpr std::size_t kBacklogHigh = 2048, kBacklogLow = 1024;
  if (audit.backlog() < kBacklogHigh) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (int waited_ms = 0; waited_ms < 1000 && audit.backlog() >= kBacklogLow; ++waited_ms) {
    timer.expires_after(std::chrono::milliseconds(1));
    co_await timer.async_wait(use_nothrow);
  }
}

}  // namespace egress::proxy
