// The splice pump (splice_relay.h). Each direction owns a pipe and moves
// its bytes in two steps, each a non-blocking splice(2): fill (the source
// socket into the pipe) and drain (the pipe into the other socket). On
// EAGAIN it waits for the socket's readiness through Asio (async_wait), so
// the worker's thread serves its other connections meanwhile.
//
// Invariants of one direction (Direction):
//   (1) `held` is what the pipe holds: read from `from`, not yet written to
//       `to`. A fill starts only when held == 0, so a fill never finds the
//       pipe full (that would be EAGAIN with a readable socket: a spin), and
//       an EOF is passed on (shutdown of `to`) with nothing left behind.
//       A direction holds a pipe only while held > 0 or during a fill; an
//       empty pipe goes back to the PipePool, a pipe that still holds bytes
//       is never given back (it is closed with the direction).
//   (2) `bytes` counts what was written to `to`, as the copy pump counts:
//       what a pipe held when the tunnel ended was not delivered and is not
//       counted.
//   (3) No readiness is missed. A wait starts only right after splice said
//       EAGAIN, in the same handler on the worker's one thread (Worker::ioc
//       runs on one thread); and Asio starts a readiness wait (async_wait)
//       with EPOLL_CTL_MOD, which reports readiness present at that moment
//       even though its epoll is edge-triggered. That costs one epoll_ctl
//       per wait, still far fewer calls than the copy relay's
//       (docs/performance.md, "Zero-copy tunnels").
//   (4) Nothing is consumed before the choice between splice and copy is
//       final: a probe that finds splice unsupported has read nothing, and
//       what an earlier probe of the other direction put in its pipe is
//       read back into the read-ahead buffer for the copy relay.
#include "proxy/splice_relay.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include <spdlog/spdlog.h>

#include "proxy/relay.h"

namespace egress::proxy {

namespace {

using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

/// Asked of each pipe with F_SETPIPE_SZ (the default is 64 KiB). Loopback
/// measurements are in docs/performance.md ("Zero-copy tunnels"). The
/// kernel refuses more than /proc/sys/fs/pipe-max-size (1 MiB by default),
/// and an unprivileged user past /proc/sys/fs/pipe-user-pages-soft keeps
/// the default size or less: the pipe still works, only with smaller steps.
constexpr int kPipeBytes = 256 * 1024;

/// SPLICE_F_MOVE is a hint the kernel may ignore; SPLICE_F_NONBLOCK keeps
/// the pipe side from blocking (the sockets are non-blocking already).
constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

/// What one step of a direction did: a splice(2) call, or (Copied) a read
/// and write through a buffer when no pipe could be had (NoPipe).
enum class Step { Moved, Copied, WouldBlock, End, Unsupported, NoPipe, Failed };

struct Spliced {
  Step step;
  std::size_t bytes = 0;
  int error = 0;  // errno, for Unsupported, NoPipe and Failed
};

Spliced splice_once(int in, int out, std::size_t len) {
  for (;;) {
    const auto n = ::splice(in, nullptr, out, nullptr, len, kSpliceFlags);
    if (n > 0) return {Step::Moved, static_cast<std::size_t>(n)};
    if (n == 0) return {Step::End};
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return {Step::WouldBlock};
    if (errno == EINVAL || errno == ENOSYS) return {Step::Unsupported, 0, errno};
    return {Step::Failed, 0, errno};
  }
}

/// One direction of the tunnel: `from` → pipe → `to`.
struct Direction {
  Direction(tcp::socket& from_socket, tcp::socket& to_socket, std::uint64_t& written, PipePool& pool)
      : from(from_socket), to(to_socket), bytes(written), pipes(pool) {}

  tcp::socket& from;
  tcp::socket& to;
  std::uint64_t& bytes;
  PipePool& pipes;
  Pipe pipe;
  std::size_t held = 0;  // invariant (1)

  Spliced fill() {
    if (!pipe.ok()) pipe = pipes.take();
    if (!pipe.ok()) return {Step::NoPipe, 0, pipe.error()};
    const auto result = splice_once(from.native_handle(), pipe.write_end(), kPipeBytes);
    if (result.step == Step::Moved) {
      held = result.bytes;
    } else {
      release();
    }
    return result;
  }

  /// Invariant (1): only an empty pipe goes back.
  void release() {
    if (held == 0 && pipe.ok()) pipes.give(std::move(pipe));
  }

  void close_both() {
    beast::error_code ignored;
    from.close(ignored);
    to.close(ignored);
  }

  /// Invariant (4): what the pipe holds goes back into `buffer`, to be sent
  /// first by the copy relay.
  void give_back(beast::flat_buffer& buffer) {
    while (held > 0) {
      const auto n = ::read(pipe.read_end(), buffer.prepare(held).data(), held);
      if (n <= 0) return;  // cannot happen: the pipe holds `held` bytes
      buffer.commit(static_cast<std::size_t>(n));
      held -= static_cast<std::size_t>(n);
    }
    release();
  }
};

/// Writes what the pipe holds to `to`; false on a write error.
asio::awaitable<bool> drain(Direction& d) {
  while (d.held > 0) {
    const auto result = splice_once(d.pipe.read_end(), d.to.native_handle(), d.held);
    if (result.step == Step::Moved) {
      d.held -= result.bytes;
      d.bytes += result.bytes;
      continue;
    }
    if (result.step != Step::WouldBlock) co_return false;
    auto [ec] = co_await d.to.async_wait(tcp::socket::wait_write, use_nothrow);
    if (ec) co_return false;
  }
  d.release();
  co_return true;
}

/// A step without a pipe (none could be made: descriptors ran out while
/// the tunnel was open): one read and one write through a buffer, as the
/// copy pump does. Copied, End (EOF) or Failed.
asio::awaitable<Spliced> copy_once(Direction& d, Clock::time_point& last_activity) {
  std::array<char, kRelayBufferBytes> buffer;
  auto [read_ec, n] = co_await d.from.async_read_some(asio::buffer(buffer), use_nothrow);
  if (read_ec) co_return Spliced{read_ec == asio::error::eof ? Step::End : Step::Failed};
  last_activity = Clock::now();
  auto [write_ec, written] = co_await asio::async_write(d.to, asio::buffer(buffer.data(), n), use_nothrow);
  d.bytes += written;
  co_return Spliced{write_ec ? Step::Failed : Step::Copied};
}

/// One direction until EOF (then `to` is shut down for sending and the
/// other direction goes on) or an error (both sockets close); `first` is
/// what the probe's fill did.
asio::awaitable<void> splice_pump(Direction& d, Spliced first, Clock::time_point& last_activity) {
  for (auto result = first;; result = d.fill()) {
    if (result.step == Step::NoPipe) result = co_await copy_once(d, last_activity);
    switch (result.step) {
      case Step::Moved:
        last_activity = Clock::now();
        if (!co_await drain(d)) {
          d.close_both();
          co_return;
        }
        break;
      case Step::Copied:
        break;
      case Step::WouldBlock: {
        auto [ec] = co_await d.from.async_wait(tcp::socket::wait_read, use_nothrow);
        if (ec) {
          d.close_both();
          co_return;
        }
        break;
      }
      case Step::End: {
        beast::error_code ignored;
        d.to.shutdown(tcp::socket::shutdown_send, ignored);
        co_return;
      }
      case Step::Unsupported:
      case Step::NoPipe:
      case Step::Failed:
        d.close_both();
        co_return;
    }
  }
}

/// Splice needs O_NONBLOCK on the sockets themselves (the kernel's socket
/// side ignores SPLICE_F_NONBLOCK). Asio sets it on a socket's first
/// asynchronous operation; asked again here at no cost when it is set.
beast::error_code make_non_blocking(tcp::socket& socket) {
  beast::error_code ec;
  if (!socket.native_non_blocking()) socket.native_non_blocking(true, ec);
  return ec;
}

/// Warned once per process: a host that cannot splice cannot splice any
/// tunnel, and the counter says how many went the copy way.
void warn_copy_relay(const char* why, int error) {
  static std::atomic_flag warned;
  if (!warned.test_and_set(std::memory_order_relaxed)) {
    spdlog::warn("tunnels relay by copy, not splice(2): {}: {}", why, std::strerror(error));
  }
}

}  // namespace

Pipe Pipe::open() {
  Pipe pipe;
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    pipe.error_ = errno;
    return pipe;
  }
  pipe.read_ = fds[0];
  pipe.write_ = fds[1];
  ::fcntl(pipe.write_, F_SETPIPE_SZ, kPipeBytes);  // best effort, see kPipeBytes
  return pipe;
}

Pipe::Pipe(Pipe&& other) noexcept
    : read_(std::exchange(other.read_, -1)), write_(std::exchange(other.write_, -1)), error_(other.error_) {}

Pipe& Pipe::operator=(Pipe&& other) noexcept {
  if (this != &other) {
    close();
    read_ = std::exchange(other.read_, -1);
    write_ = std::exchange(other.write_, -1);
    error_ = other.error_;
  }
  return *this;
}

Pipe::~Pipe() { close(); }

void Pipe::close() {
  if (read_ >= 0) ::close(std::exchange(read_, -1));
  if (write_ >= 0) ::close(std::exchange(write_, -1));
}

Pipe Pipe::failed(int error) {
  Pipe pipe;
  pipe.error_ = error;
  return pipe;
}

Pipe PipePool::take() {
  if (free_.empty()) return open_ ? open_(context_) : Pipe::open();
  Pipe pipe = std::move(free_.back());
  free_.pop_back();
  return pipe;
}

void PipePool::give(Pipe pipe) {
  if (pipe.ok() && free_.size() < keep_) free_.push_back(std::move(pipe));
}

asio::awaitable<bool> relay_tcp_tunnel(beast::tcp_stream& client, beast::flat_buffer& client_buffer,
                                       beast::tcp_stream& upstream, beast::flat_buffer& upstream_buffer,
                                       std::uint64_t& bytes_up, std::uint64_t& bytes_down,
                                       std::chrono::milliseconds idle, PipePool& pipes, admin::Metrics& metrics) {
  client.expires_never();
  upstream.expires_never();
  if (!co_await send_read_ahead(client, client_buffer, upstream, upstream_buffer, bytes_up, bytes_down)) {
    co_return false;
  }
  const auto active = metrics.track_tunnel();
  auto& a = client.socket();
  auto& b = upstream.socket();
  const auto copy = [&](const char* why, int error) {
    warn_copy_relay(why, error);
    metrics.count_tunnel_relay(admin::Metrics::TunnelRelay::Copy);
    return pump_both_ways(a, b, bytes_up, bytes_down, idle);
  };
  for (auto* socket : {&a, &b}) {
    if (const auto ec = make_non_blocking(*socket)) co_return co_await copy("O_NONBLOCK", ec.value());
  }
  Direction up{a, b, bytes_up, pipes}, down{b, a, bytes_down, pipes};
  const auto first_up = up.fill();
  if (first_up.step == Step::Unsupported || first_up.step == Step::NoPipe) {
    co_return co_await copy(first_up.step == Step::NoPipe ? "pipe2" : "splice", first_up.error);
  }
  const auto first_down = down.fill();
  if (first_down.step == Step::Unsupported || first_down.step == Step::NoPipe) {
    up.give_back(client_buffer);
    if (!co_await send_read_ahead(client, client_buffer, upstream, upstream_buffer, bytes_up, bytes_down)) {
      co_return false;
    }
    co_return co_await copy(first_down.step == Step::NoPipe ? "pipe2" : "splice", first_down.error);
  }
  metrics.count_tunnel_relay(admin::Metrics::TunnelRelay::Splice);

  using namespace asio::experimental::awaitable_operators;
  auto last_activity = Clock::now();
  auto result = co_await ((splice_pump(up, first_up, last_activity) && splice_pump(down, first_down, last_activity)) ||
                          idle_watchdog(last_activity, idle, a, b));
  co_return result.index() == 1 && std::get<1>(result);
}

}  // namespace egress::proxy
