// The relay of a plain (not inspected) CONNECT tunnel once its SNI check has
// passed: egress reads none of its bytes any more, so the kernel moves them
// with splice(2), socket → pipe → socket, one pipe per direction. The copy
// relay (relay.h's pump) pays two system calls and two copies through user
// space per 16 KiB; a splice moves what the socket holds (up to the pipe's
// size) by page reference, and Asio only waits for readiness. Where the
// kernel cannot splice (no pipe could be made, or splice fails with EINVAL
// or ENOSYS on its first try: a seccomp filter, an emulated kernel) the
// copy relay runs instead, with the same contract; a direction that finds
// no pipe later (descriptors ran out) copies that step through a buffer.
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
#include <cstddef>
#include <cstdint>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "egress/admin/metrics.h"

namespace egress::proxy {

/// A non-blocking pipe of kPipeBytes (splice_relay.cpp), closed with it.
/// Empty (ok() false) when default-made or when pipe2 failed.
class Pipe {
 public:
  Pipe() = default;
  static Pipe open();
  /// An empty pipe that failed with `error` (what pipe2 would say).
  static Pipe failed(int error);
  Pipe(Pipe&& other) noexcept;
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  Pipe& operator=(Pipe&& other) noexcept;
  ~Pipe();

  bool ok() const { return read_ >= 0; }
  int error() const { return error_; }  // errno of a failed pipe2
  int read_end() const { return read_; }
  int write_end() const { return write_; }

 private:
  void close();

  int read_ = -1, write_ = -1;
  int error_ = 0;
};

/// One thread's empty pipes (a Worker's). A direction takes a pipe when it
/// has bytes to move and gives it back once the pipe is drained, so an idle
/// tunnel holds no pipe and the pipes open are about the directions with
/// bytes in flight, not the tunnels. That matters twice: a pipe costs two
/// descriptors, and the kernel charges each pipe's pages to its user
/// (/proc/sys/fs/pipe-user-pages-soft, 64 MiB by default); past that an
/// unprivileged user, as egress's service user is, gets 2-page pipes and
/// no F_SETPIPE_SZ. Keeps at most `keep` pipes; not thread-safe.
class PipePool {
 public:
  /// `open` makes a new pipe when the pool has none: Pipe::open, or in
  /// tests one that fails as pipe2 does without descriptors (starving the
  /// real process of them would also starve the sanitizers' runtime,
  /// which checks memory through a pipe of its own).
  using Opener = Pipe (*)(void* context);
  explicit PipePool(std::size_t keep = 16, Opener open = nullptr, void* context = nullptr)
      : keep_(keep), open_(open), context_(context) {}
  /// An empty pipe from the pool, or a new one (check ok()).
  Pipe take();
  /// Back into the pool if it has room, else closed. Only empty pipes.
  void give(Pipe pipe);

 private:
  std::size_t keep_;
  Opener open_;
  void* context_;
  std::vector<Pipe> free_;
};

/// Relays the tunnel between the worker (`client`) and the upstream until
/// both directions end or nothing moves for `idle`; true when it was the
/// idle timeout. Counts the tunnel in proxy_tunnels_relayed_total by how
/// its bytes moved (splice or copy).
boost::asio::awaitable<bool> relay_tcp_tunnel(boost::beast::tcp_stream& client, boost::beast::flat_buffer& client_buffer,
                                              boost::beast::tcp_stream& upstream,
                                              boost::beast::flat_buffer& upstream_buffer, std::uint64_t& bytes_up,
                                              std::uint64_t& bytes_down, std::chrono::milliseconds idle,
                                              PipePool& pipes, admin::Metrics& metrics);

}  // namespace egress::proxy
