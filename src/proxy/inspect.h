// TLS inspection of a CONNECT tunnel whose decision says `inspect`: egress
// terminates the worker's TLS with a leaf certificate minted for the tunnel's
// host (signed by the inspection CA), opens its own verified TLS connection
// to the upstream, and runs the HTTP/1.1 request loop in between, deciding
// and logging every request on its own.
//
// Phases (the session has already: decided the CONNECT, taken a pooled
// upstream TLS connection or connected TCP to a checked address, answered
// 200, checked the ClientHello's SNI against the CONNECT host and committed
// the tunnel's decision):
//   1. leaf for the host from the per-thread cache (or minted);
//   2. the worker-side handshake (the ClientHello already read is fed in),
//      and at the same time, for a new connection, the upstream handshake
//      (SNI, full verification);
//   3. request loop: the exchange (exchange.h), as on a plain connection,
//      with the tunnel's route: read head (the same deadlines, strict check
//      and limits) → Host must name the tunnel's host (invariant 4; else 421
//      host-mismatch) → decide (kind inspected: method and path rules
//      apply) → commit the request's decision event (invariant 2) → forward
//      → relay the response (or, after 101, both ways) → close event. Until
//      the worker closes, a response ends the connection, or the idle
//      timeout passes. When the upstream closes a connection, the next
//      request opens a new one to the tunnel's checked addresses.
//   4. an upstream connection whose last response was relayed completely
//      goes back to the thread's pool (upstream_pool.h) for the next tunnel.
// A request that fails on a kept-alive upstream connection before any
// response byte (the upstream closed it just then) is sent once more on a
// new connection if that is safe: no body, and GET, HEAD, OPTIONS, TRACE or
// an Idempotency-Key header.
// A worker handshake failure ends the tunnel (client-rejected-certificate or
// client-handshake-failed on the tunnel's row). An upstream handshake
// failure does not end it at once: the worker's first request is answered
// 502 with the verification error (upstream-cert-invalid), so the worker
// sees why instead of a bare reset.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "egress/proxy/evaluate.h"
#include "proxy/attempt.h"
#include "proxy/upstream_pool.h"
#include "proxy/worker.h"

namespace egress::proxy {

/// What the session hands over to inspection. References: the session owns
/// the worker's socket and outlives the inspection.
struct InspectedTunnel {
  Worker& worker;
  boost::beast::tcp_stream& client;
  boost::beast::flat_buffer& client_hello;  // the worker's ClientHello, read and checked, not yet consumed
  /// The upstream: a pooled TLS connection (handshake done) taken for this
  /// tunnel, or else `fresh`, TCP connected to a checked address with
  /// nothing sent yet, handed over to inspection.
  UpstreamTlsPtr pooled;
  UpstreamTcpPtr fresh;
  /// The CONNECT's checked addresses: a new connection, should the pooled
  /// one turn out closed, goes to one of these (invariant 3).
  std::span<const boost::asio::ip::tcp::endpoint> endpoints;
  Attempt& tunnel;              // the CONNECT's attempt, its decision committed
  const RequestTarget& target;  // the CONNECT target, which the SNI named
  std::string client_addr;
};

/// Runs the inspected tunnel to its end. Each request inside gets its own
/// decision and close events (kind inspected); failures of the tunnel as a
/// whole are set on `args.tunnel` and in `outcome.error`, which the session
/// records as the tunnel's close event.
boost::asio::awaitable<void> inspect_tunnel(InspectedTunnel& args, Attempt::Outcome& outcome);

}  // namespace egress::proxy
