// One worker connection, from accept to close. A session reads request
// heads in a loop; each plain-HTTP request is decided and forwarded on its
// own (invariant 4), and a CONNECT turns the connection into a tunnel.
//
// Phases of one request (each a short coroutine):
//   HTTP:    the exchange (exchange.h), with plain forwarding's route
//            (plain_route.h): read head → parse target → identify → decide
//            (resolve, check) → commit the decision event (invariant 2) →
//            connect upstream (to the checked endpoints only: invariant 3)
//            → relay → close event.
//   CONNECT: read head → parse target → identify → decide → connect upstream
//            (TCP only, no payload; an inspected tunnel may take an idle TLS
//            connection from the thread's pool instead) → 200 → read the
//            ClientHello, check its SNI (invariant 4) → commit the decision
//            event → relay (or inspect: inspect.h) → close.
//
// Admission: a connection over limits.max_connections (or the client's
// max_connections_per_client) gets 503 and is closed before anything is
// read.
//
// Reading a head: between requests the connection may sit idle for
// limits.idle_timeout; from a head's first byte (or from accept, for the
// first request) the whole head must arrive within limits.header_timeout,
// on every request of a kept-alive connection (slowloris). The raw head is
// checked strictly (request_head.h) before Beast parses it; a head that
// fails is refused and the connection closed, never resynchronised, since
// the bytes after it may be a smuggled request.
//
// States: Idle (waiting for a head; idle/header timeout) → Deciding →
// Forwarding | Tunnelling → Idle or Closed. A refusal answers and returns
// to Idle only when the request had no unread body; otherwise Closed.
#pragma once

#include <list>
#include <memory>
#include <optional>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "egress/proxy/evaluate.h"
#include "proxy/attempt.h"
#include "proxy/connection_limits.h"
#include "proxy/head_reader.h"
#include "proxy/plain_route.h"
#include "proxy/worker.h"

namespace egress::proxy {

namespace beast = boost::beast;
namespace http = beast::http;

class Session {
 public:
  /// `admission` holds the connection's place under the connection limits,
  /// or why it has none (run() then answers 503 and closes).
  Session(Worker& worker, boost::asio::ip::tcp::socket socket, ConnectionLimiter::Admission admission);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  boost::asio::awaitable<void> run();

  /// Closes both sides now (shutdown after the grace period): pending
  /// operations fail and the session unwinds, writing its close event.
  void abort();

  /// Closes the connection if it is waiting for a request to start (drain:
  /// a kept-alive connection must not hold shutdown for its idle timeout;
  /// a connection limit gave its place to a new connection). A request
  /// already arriving or in hand is left to finish.
  void close_if_idle();

 private:
  /// Refuses a connection over a limit (503) before reading anything.
  boost::asio::awaitable<void> refuse_connection();
  /// After a final answer: stop sending, then read (and drop) what the
  /// worker still sends for a moment, so closing does not reset the
  /// connection before the worker has read the answer.
  boost::asio::awaitable<void> linger_close();
  boost::asio::awaitable<void> serve_connect(RequestParser& parser);
  /// Answers the attempt's refusal on the connection and closes it.
  boost::asio::awaitable<void> refuse(Attempt& attempt, unsigned version);
  /// Reads the worker's TLS ClientHello into client_buffer_ (it is relayed
  /// later) and checks its SNI against the CONNECT target; on a refusal
  /// decides the attempt's deny and returns false.
  /// The decision's rule options apply: allow_no_sni admits a hello
  /// without SNI, raw_tcp first bytes that are not TLS at all.
  boost::asio::awaitable<bool> check_client_hello(Attempt& attempt, const RequestTarget& target,
                                                  const policy::Decision& decision);
  /// Relays the CONNECT tunnel, or inspects it (inspect.h).
  boost::asio::awaitable<void> serve_tunnel(Attempt& attempt, const RequestTarget& target,
                                            const Evaluation& evaluation, UpstreamTlsPtr pooled,
                                            Attempt::Outcome& outcome);
  AttemptSink sink() const { return worker_.sink(); }

  Worker& worker_;
  std::optional<ConnectionLimiter::Ticket> ticket_;  // empty: over a connection limit
  IdleWait idle_;  // waiting for the first byte of a request head
  std::shared_ptr<Session*> self_ = std::make_shared<Session*>(this);  // for the ticket's yield, posted
  policy::Reason limit_refusal_;
  beast::tcp_stream client_;
  beast::flat_buffer client_buffer_;
  std::string client_addr_;
  policy::IpAddress client_ip_;
  PlainRoute route_;  // owns the upstream connection
  std::list<Session*>::iterator registration_;
};

}  // namespace egress::proxy
