// The listener side of `egress serve`: one Worker (io_context + resolver +
// SO_REUSEPORT acceptor) per thread, the accept loops, and the control
// thread that handles signals: SIGHUP reloads the policy, SIGTERM/SIGINT
// drain and stop.
//
// The kernel spreads new connections over the acceptors by a hash of their
// addresses, so long-lived connections can land unevenly (33/17 of 50 was
// measured) and leave one thread the limit. Each accept loop hands a new
// connection to the thread serving the fewest (itself on a tie), as a file
// descriptor posted to that thread's io_context (docs/performance.md,
// "Threads").
//
// Stop sequence: (1) close every acceptor; (2) wait until no session is
// left or limits.shutdown_grace has passed; (3) abort the sessions still
// open (each writes its close event as it unwinds) and give them a moment;
// (4) stop the io_contexts and join. The audit store is flushed by its
// owner afterwards.
#include "egress/proxy/server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <filesystem>
#include <thread>

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "egress/proxy/evaluate.h"
#include "proxy/relay.h"
#include "proxy/session.h"
#include "proxy/worker.h"

namespace egress::proxy {
namespace {

using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

ClientKey client_key(const tcp::socket& socket) {
  beast::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) return ClientKey{};  // all zeros: peers already gone share one count
  const auto address = remote.address();
  return address.is_v4() ? asio::ip::make_address_v6(asio::ip::v4_mapped, address.to_v4()).to_bytes()
                         : address.to_v6().to_bytes();
}

asio::awaitable<void> run_session(tcp::socket socket, Worker& worker) {
  // Counted in worker.load from the hand-over on (accept_loop).
  struct Unload {
    std::atomic<int>& load;
    ~Unload() { load.fetch_sub(1, std::memory_order_relaxed); }
  } unload{worker.load};
  // Admitted here, on the serving thread; the ticket lives as long as the
  // session.
  auto admission = worker.shared.connections.admit(client_key(socket));
  Session session(worker, std::move(socket), std::move(admission));
  co_await session.run();
}

void spawn_session(tcp::socket socket, Worker& worker) {
  asio::co_spawn(worker.ioc, run_session(std::move(socket), worker), [](std::exception_ptr error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      spdlog::error("session ended by an unexpected error: {}", e.what());
    }
  });
}

// The worker serving the fewest connections; `local` on a tie.
Worker& least_loaded(Worker& local, const std::vector<std::unique_ptr<Worker>>& workers) {
  Worker* best = &local;
  for (const auto& worker : workers)
    if (worker->load.load(std::memory_order_relaxed) < best->load.load(std::memory_order_relaxed)) best = worker.get();
  return *best;
}

// Serves `socket` on `target`'s thread: a socket belongs to one io_context,
// so it moves as its file descriptor.
void hand_over(tcp::socket socket, Worker& target) {
  beast::error_code ec;
  const auto protocol = socket.local_endpoint(ec).protocol();
  if (ec) {  // the peer is already gone; the socket closes here
    target.load.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  asio::post(target.ioc, [fd = socket.release(), protocol, &target] {
    tcp::socket moved(target.ioc);
    beast::error_code assign_ec;
    moved.assign(protocol, fd, assign_ec);
    if (assign_ec) {
      ::close(fd);
      target.load.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
    spawn_session(std::move(moved), target);
  });
}

asio::awaitable<void> accept_loop(Worker& worker, const std::vector<std::unique_ptr<Worker>>& workers) {
  for (;;) {
    auto [ec, socket] = co_await worker.acceptor->async_accept(use_nothrow);
    if (ec == asio::error::operation_aborted || !worker.acceptor->is_open()) co_return;
    if (ec) {
      // Out of file descriptors and the like: back off instead of spinning.
      spdlog::warn("accept failed: {}; retrying in 100 ms", ec.message());
      asio::steady_timer pause(worker.ioc, 100ms);
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    Worker& target = least_loaded(worker, workers);
    target.load.fetch_add(1, std::memory_order_relaxed);
    if (&target == &worker) {
      spawn_session(std::move(socket), worker);
    } else {
      hand_over(std::move(socket), target);
    }
  }
}

/// Closes pooled upstream connections that timed out or that their
/// upstream closed, so an idle proxy does not hold them (and their file
/// descriptors) until the next request to that upstream comes along.
asio::awaitable<void> sweep_upstream_pools(Worker& worker) {
  asio::steady_timer timer(worker.ioc);
  for (;;) {
    timer.expires_after(1s);
    auto [ec] = co_await timer.async_wait(use_nothrow);
    if (ec) co_return;
    worker.upstream_tcp.sweep(worker.now());
    worker.upstream_tls.sweep(worker.now());
  }
}

tcp::endpoint listen_endpoint(const std::string& listen) {
  const auto host_port = config::parse_host_port(listen);
  if (!host_port) throw std::runtime_error("cannot listen on '" + listen + "': expected HOST:PORT");
  beast::error_code ec;
  const auto address = asio::ip::make_address(host_port->host, ec);
  if (ec) throw std::runtime_error("cannot listen on '" + listen + "': '" + host_port->host + "' is not an IP address");
  return {address, host_port->port};
}

void open_acceptor(Worker& worker, const tcp::endpoint& endpoint) {
  auto& acceptor = worker.acceptor.emplace(worker.ioc);
  beast::error_code ec;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) {
    // One acceptor per thread on the same port; the kernel spreads
    // connections across them.
    const int on = 1;
    if (::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) {
      ec.assign(errno, boost::system::system_category());
    }
  }
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("cannot listen on " + endpoint.address().to_string() + ":" +
                                   std::to_string(endpoint.port()) + ": " + ec.message());
}

class Control {
 public:
  // The signal handlers are installed here, before any thread starts, so a
  // SIGTERM that arrives early is not fatal.
  Control(Shared& shared, std::vector<std::unique_ptr<Worker>>& workers, const PolicyLoader& load_policy,
          const SecretsLoader& load_secrets)
      : shared_(shared), workers_(workers), load_policy_(load_policy), load_secrets_(load_secrets) {}

  void run() {
    asio::co_spawn(ioc_, handle_signals(), asio::detached);
    asio::co_spawn(ioc_, watch_policy_file(), asio::detached);
    ioc_.run();
  }

 private:
  asio::awaitable<void> handle_signals() {
    for (;;) {
      const int signal = co_await signals_.async_wait(asio::use_awaitable);
      if (signal == SIGHUP) {
        reload();
        continue;
      }
      spdlog::info("received {}; no longer accepting, draining for up to {} ms", signal == SIGTERM ? "SIGTERM" : "SIGINT",
                   shared_.config.limits.shutdown_grace.count());
      co_await drain();
      co_return;
    }
  }

  void reload() {
    if (load_secrets_) {
      try {
        shared_.secrets.store(load_secrets_());
        spdlog::info("secrets reloaded from {}", shared_.config.secrets_dir);
      } catch (const std::exception& e) {
        spdlog::error("secrets reload failed; the previous secrets stay in force:\n{}", e.what());
      }
    }
    try {
      auto next = load_policy_();
      shared_.policy.store(next);
      ++shared_.policy_reloads;
      spdlog::info("policy reloaded from {} (mode {})", next->source(), policy::to_string(next->mode()));
    } catch (const std::exception& e) {
      ++shared_.policy_reload_failures;
      spdlog::error("policy reload failed; the previous policy stays in force:\n{}", e.what());
    }
  }

  /// Identifies the file's content as it is now: the symlink chain is
  /// resolved first, so a ConfigMap-style swap of the `..data` link counts
  /// as a change even when the new file's timestamps are older.
  static std::string fingerprint(const std::string& path) {
    std::error_code ec;
    const auto real = std::filesystem::canonical(path, ec);
    struct stat st {};
    if (ec || ::stat(real.c_str(), &st) != 0) return "missing";
    return real.string() + "|" + std::to_string(st.st_ino) + "|" + std::to_string(st.st_size) + "|" +
           std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
  }

  /// Polls the policy file (cheap: one stat per interval) and reloads it
  /// when it changes. Polling rather than inotify: it sees symlink swaps,
  /// replaced directories and editors' rename-over-write alike.
  asio::awaitable<void> watch_policy_file() {
    const auto& path = shared_.config.policy_file;
    const auto interval = shared_.config.policy_poll_interval;
    if (path.empty() || interval.count() == 0) co_return;
    auto last = fingerprint(path);
    asio::steady_timer timer(ioc_);
    for (;;) {
      timer.expires_after(interval);
      auto [ec] = co_await timer.async_wait(use_nothrow);
      if (ec) co_return;
      auto now = fingerprint(path);
      if (now == last) continue;
      last = std::move(now);
      spdlog::info("policy file {} changed; reloading", path);
      reload();
    }
  }

  asio::awaitable<void> wait_for_sessions(std::chrono::milliseconds budget) {
    asio::steady_timer timer(ioc_);
    const auto deadline = std::chrono::steady_clock::now() + budget;
    while (shared_.active_sessions.load() > 0 && std::chrono::steady_clock::now() < deadline) {
      timer.expires_after(20ms);
      co_await timer.async_wait(use_nothrow);
    }
  }

  asio::awaitable<void> drain() {
    shared_.draining.store(true);
    for (auto& worker : workers_) {
      asio::post(worker->ioc, [&worker] {
        beast::error_code ignored;
        worker->acceptor->close(ignored);
        worker->upstream_tcp.clear();
        worker->upstream_tls.clear();
        for (auto* session : worker->sessions) session->close_if_idle();
      });
    }
    co_await wait_for_sessions(shared_.config.limits.shutdown_grace);
    if (const int left = shared_.active_sessions.load(); left > 0) {
      spdlog::warn("grace period over; closing {} open connection(s)", left);
      for (auto& worker : workers_) {
        asio::post(worker->ioc, [&worker] {
          for (auto* session : worker->sessions) session->abort();
        });
      }
      co_await wait_for_sessions(2s);
    }
    for (auto& worker : workers_) worker->ioc.stop();
    ioc_.stop();  // ends the policy watcher too
  }

  asio::io_context ioc_{1};
  asio::signal_set signals_{ioc_, SIGTERM, SIGINT, SIGHUP};
  Shared& shared_;
  std::vector<std::unique_ptr<Worker>>& workers_;
  const PolicyLoader& load_policy_;
  const SecretsLoader& load_secrets_;
};

}  // namespace

int serve(const config::ServeConfig& config, const PolicyLoader& load_policy, audit::AuditStore& audit,
          const std::function<void(const std::string& address)>& on_listening,
          std::shared_ptr<const tls::Inspection> inspection, const SecretsLoader& load_secrets) {
  Shared shared(config, load_policy(), audit);
  shared.inspection = std::move(inspection);
  if (load_secrets) shared.secrets.store(load_secrets());
  const unsigned threads = config.threads ? config.threads : std::max(1u, std::thread::hardware_concurrency());
  const auto dns_options = resolver_options(config.dns);

  std::vector<std::unique_ptr<Worker>> workers;
  auto endpoint = listen_endpoint(config.listen);
  for (unsigned i = 0; i < threads; ++i) {
    auto& worker = *workers.emplace_back(std::make_unique<Worker>(shared, serving_parts(dns_options)));
    open_acceptor(worker, endpoint);
    endpoint = worker.acceptor->local_endpoint();  // port 0: the others share the port the first one got
  }
  // After the workers: it reads their counters (Shared holds them, so they
  // outlive this guard).
  const auto serve_probe = admin::metrics().watch_serve([&shared] {
    admin::ServeState state{shared.policy.load() != nullptr, shared.policy_reloads.load(),
                            shared.policy_reload_failures.load(), shared.active_sessions.load(), {}};
    for (const auto& load : shared.thread_connections) state.thread_connections.push_back(load.load());
    return state;
  });
  // A write to a socket whose peer is gone must fail with EPIPE, not kill
  // the process: Asio's sends pass MSG_NOSIGNAL, but splice(2) into a
  // socket (plain tunnels, splice_relay.h) cannot.
  std::signal(SIGPIPE, SIG_IGN);
  Control control(shared, workers, load_policy, load_secrets);  // signal handlers first
  for (auto& worker : workers) {
    asio::co_spawn(worker->ioc, accept_loop(*worker, workers), asio::detached);
    if (config.tls.upstream_pool_size > 0) {
      asio::co_spawn(worker->ioc, sweep_upstream_pools(*worker), asio::detached);
    }
  }

  on_listening(endpoint_text(endpoint));

  std::vector<std::thread> running;
  for (std::size_t i = 0; i < workers.size(); ++i) {
    running.emplace_back([&worker = workers[i], i] {
      const auto name = "egress-w" + std::to_string(i);  // per-thread CPU in top -H and the benches
      pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
      try {
        worker->ioc.run();
      } catch (const std::exception& e) {
        spdlog::critical("worker thread stopped: {}", e.what());
      }
    });
  }
  control.run();
  for (auto& thread : running) thread.join();
  workers.clear();  // sessions and resolvers go before the audit store is flushed
  return 0;
}

}  // namespace egress::proxy
