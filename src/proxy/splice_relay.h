// The relay of a plain (not inspected) CONNECT tunnel once its SNI check has
// passed: egress reads none of its bytes any more, so the kernel moves them
// with splice(2), socket → pipe → socket, one pipe per direction. The copy
// relay (relay.h's pump) pays two system calls and two copies through user
// space per 16 KiB; a splice moves what the socket holds (up to the pipe's
// size) by page reference, and Asio only waits for readiness. Where the
// kernel cannot splice (no pipe could be made, or splice fails with EINVAL
// or ENOSYS on its first try: a seccomp filter, an emulated kernel) the
// copy relay runs instead, with the same contract.
//
// The contract either way is relay_both_ways' (relay.h): what either side
// sent ahead goes first; bytes_up / bytes_down count the bytes written to
// the other side, exactly (they go into the close event); a FIN from one
// side shuts down sending to the other and the other direction keeps
// going; a hard error closes both; nothing moving for `idle` closes both;
// the tunnel counts in egress_proxy_active_tunnels while it relays.
//
// splice(2) into a socket raises SIGPIPE when the peer is gone (it has no
// MSG_NOSIGNAL), so the process must ignore SIGPIPE: serve does
// (server.cpp).
#pragma once

#include <chrono>
#include <cstdint>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "egress/admin/metrics.h"

namespace egress::proxy {

/// Relays the tunnel between the worker (`client`) and the upstream until
/// both directions end or nothing moves for `idle`; true when it was the
/// idle timeout. Counts the tunnel in proxy_tunnels_relayed_total by how
/// its bytes moved (splice or copy).
boost::asio::awaitable<bool> relay_tcp_tunnel(boost::beast::tcp_stream& client, boost::beast::flat_buffer& client_buffer,
                                              boost::beast::tcp_stream& upstream,
                                              boost::beast::flat_buffer& upstream_buffer, std::uint64_t& bytes_up,
                                              std::uint64_t& bytes_down, std::chrono::milliseconds idle,
                                              admin::Metrics& metrics);

}  // namespace egress::proxy
