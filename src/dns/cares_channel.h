// One c-ares channel driven by an Asio executor: the only place that knows
// about c-ares sockets, timers and callbacks. c-ares tells us which fds it
// wants watched (socket-state callback); each gets a non-owning
// posix::stream_descriptor whose async_wait feeds ares_process_fd, and one
// steady_timer follows ares_timeout so retries and timeouts happen. No
// threads, no blocking calls; everything runs on the executor.
//
// Lifetime: handlers queued on the executor hold a weak token and do nothing
// once the channel is gone. The destructor calls ares_destroy, whose
// ARES_EDESTRUCTION callbacks are swallowed: a pending lookup's `done` is
// destroyed without being called (the owner answers its waiters itself).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <ares.h>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

namespace egress::dns {

struct ChannelOptions {
  std::string servers_csv;  // empty: /etc/resolv.conf's servers
  bool use_hosts_file = true;
  std::chrono::milliseconds try_timeout{1000};  // first try; c-ares doubles it per round
  int tries = 2;
};

/// What ares_getaddrinfo found, in plain types.
struct Answer {
  int status = ARES_SUCCESS;  // ARES_SUCCESS or an ARES_E* code
  std::vector<boost::asio::ip::address> addresses;  // c-ares order, duplicates removed
  std::optional<std::chrono::seconds> min_ttl;      // smallest record TTL, if any
};

class CaresChannel {
 public:
  using Callback = std::function<void(Answer)>;

  /// Throws std::runtime_error if c-ares cannot be initialised or rejects
  /// the server list.
  CaresChannel(boost::asio::any_io_executor executor, const ChannelOptions& options);
  ~CaresChannel();
  CaresChannel(const CaresChannel&) = delete;
  CaresChannel& operator=(const CaresChannel&) = delete;

  /// Starts an A+AAAA lookup. `done` runs on the executor, possibly before
  /// this returns (hosts-file hits), never after the channel is destroyed.
  void getaddrinfo(const std::string& host, Callback done);

 private:
  struct FdWatch;

  static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_addrinfo(void* arg, int status, int timeouts, ares_addrinfo* result);
  void watch(const std::shared_ptr<FdWatch>& watch);
  void arm(const std::shared_ptr<FdWatch>& watch, bool for_write);
  void forget(ares_socket_t fd);
  void process(ares_socket_t read_fd, ares_socket_t write_fd);
  void arm_timer();

  boost::asio::any_io_executor executor_;
  ares_channel channel_ = nullptr;
  boost::asio::steady_timer timer_;
  std::unordered_map<ares_socket_t, std::shared_ptr<FdWatch>> watches_;
  std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);  // expires with *this
};

}  // namespace egress::dns
