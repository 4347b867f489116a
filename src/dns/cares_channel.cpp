// CaresChannel: c-ares plumbing on Asio (see cares_channel.h).
#include "dns/cares_channel.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <stdexcept>

namespace egress::dns {
namespace {

void init_library() {
  static std::once_flag once;
  static int status = ARES_SUCCESS;
  std::call_once(once, [] { status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (status != ARES_SUCCESS) {
    throw std::runtime_error(std::string("dns: ares_library_init failed: ") + ares_strerror(status));
  }
}

std::optional<boost::asio::ip::address> to_address(const ares_addrinfo_node& node) {
  if (node.ai_family == AF_INET && node.ai_addr != nullptr) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(node.ai_addr);
    return boost::asio::ip::address_v4(ntohl(in->sin_addr.s_addr));
  }
  if (node.ai_family == AF_INET6 && node.ai_addr != nullptr) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(node.ai_addr);
    boost::asio::ip::address_v6::bytes_type bytes;
    std::copy_n(in6->sin6_addr.s6_addr, bytes.size(), bytes.begin());
    return boost::asio::ip::address_v6(bytes, in6->sin6_scope_id);
  }
  return std::nullopt;
}

Answer to_answer(int status, const ares_addrinfo* result) {
  Answer answer{status, {}, std::nullopt};
  if (status != ARES_SUCCESS || result == nullptr) return answer;
  for (const auto* node = result->nodes; node != nullptr; node = node->ai_next) {
    const auto address = to_address(*node);
    if (!address) continue;
    // AF_UNSPEC lookups repeat an address once per socket type; keep the first.
    if (std::find(answer.addresses.begin(), answer.addresses.end(), *address) ==
        answer.addresses.end()) {
      answer.addresses.push_back(*address);
    }
    const std::chrono::seconds ttl{std::max(node->ai_ttl, 0)};
    answer.min_ttl = answer.min_ttl ? std::min(*answer.min_ttl, ttl) : ttl;
  }
  if (answer.addresses.empty()) answer.status = ARES_ENODATA;
  return answer;
}

}  // namespace

// One fd c-ares asked us to watch. Queued handlers hold it by shared_ptr;
// `closed` tells them c-ares has let go of the fd (it may even be reused
// for a new socket with a new FdWatch), so they must not touch it.
struct CaresChannel::FdWatch {
  FdWatch(const boost::asio::any_io_executor& executor, ares_socket_t fd)
      : fd(fd), descriptor(executor, fd) {}
  ares_socket_t fd;
  boost::asio::posix::stream_descriptor descriptor;  // non-owning: released, never closed
  struct Interest {
    bool wanted = false;   // c-ares asked for this direction
    bool waiting = false;  // an async_wait for it is outstanding
  };
  Interest read, write;
  bool closed = false;
};

CaresChannel::CaresChannel(boost::asio::any_io_executor executor, const ChannelOptions& options)
    : executor_(std::move(executor)), timer_(executor_) {
  init_library();
  ares_options opts{};
  int mask = 0;
  opts.sock_state_cb = &CaresChannel::on_socket_state;
  opts.sock_state_cb_data = this;
  mask |= ARES_OPT_SOCK_STATE_CB;
  std::string lookups = options.use_hosts_file ? "fb" : "b";
  opts.lookups = lookups.data();
  mask |= ARES_OPT_LOOKUPS;
  opts.timeout = static_cast<int>(std::max<std::int64_t>(options.try_timeout.count(), 1));
  mask |= ARES_OPT_TIMEOUTMS;
  opts.tries = std::max(options.tries, 1);
  mask |= ARES_OPT_TRIES;
  // No search domains and ndots 0: the proxy resolves exactly the normalised
  // name it checked, never "name.<search domain>", and single-label names
  // (compose service names) go to DNS as they are.
  opts.domains = nullptr;
  opts.ndomains = 0;
  mask |= ARES_OPT_DOMAINS;
  opts.ndots = 0;
  mask |= ARES_OPT_NDOTS;
  if (const int rc = ares_init_options(&channel_, &opts, mask); rc != ARES_SUCCESS) {
    throw std::runtime_error(std::string("dns: cannot initialise c-ares: ") + ares_strerror(rc));
  }
  if (!options.servers_csv.empty()) {
    if (const int rc = ares_set_servers_ports_csv(channel_, options.servers_csv.c_str());
        rc != ARES_SUCCESS) {
      ares_destroy(channel_);
      throw std::runtime_error("dns: c-ares rejected the server list \"" + options.servers_csv +
                               "\": " + ares_strerror(rc));
    }
  }
}

CaresChannel::~CaresChannel() {
  lifetime_.reset();  // handlers already queued on the executor become no-ops
  ares_destroy(channel_);  // fires ARES_EDESTRUCTION callbacks and closes its sockets
  for (auto& [fd, watch] : watches_) {  // any fd c-ares did not report closed
    watch->closed = true;
    watch->descriptor.release();
  }
}

void CaresChannel::getaddrinfo(const std::string& host, Callback done) {
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  auto context = std::make_unique<Callback>(std::move(done));
  ares_getaddrinfo(channel_, host.c_str(), nullptr, &hints, &CaresChannel::on_addrinfo,
                   context.release());
  arm_timer();
}

void CaresChannel::on_addrinfo(void* arg, int status, int /*timeouts*/, ares_addrinfo* result) {
  const std::unique_ptr<Callback> done(static_cast<Callback*>(arg));
  const std::unique_ptr<ares_addrinfo, void (*)(ares_addrinfo*)> owned(
      result, [](ares_addrinfo* r) { if (r != nullptr) ares_freeaddrinfo(r); });
  if (status == ARES_EDESTRUCTION) return;  // the channel is going; nobody to call
  (*done)(to_answer(status, result));
}

void CaresChannel::on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<CaresChannel*>(data);
  if (!readable && !writable) {
    self->forget(fd);
    return;
  }
  auto& entry = self->watches_[fd];
  if (!entry) entry = std::make_shared<FdWatch>(self->executor_, fd);
  entry->read.wanted = readable != 0;
  entry->write.wanted = writable != 0;
  self->watch(entry);
}

void CaresChannel::forget(ares_socket_t fd) {
  const auto it = watches_.find(fd);
  if (it == watches_.end()) return;
  it->second->closed = true;
  it->second->descriptor.release();  // c-ares owns the fd and closes it right after
  watches_.erase(it);
}

void CaresChannel::watch(const std::shared_ptr<FdWatch>& w) {
  arm(w, false);
  arm(w, true);
}

// One wait per direction at a time; on readiness c-ares is told which
// direction fired, then the wait is armed again if it is still wanted.
void CaresChannel::arm(const std::shared_ptr<FdWatch>& w, bool for_write) {
  using boost::asio::posix::descriptor_base;
  FdWatch::Interest& interest = for_write ? w->write : w->read;
  if (!interest.wanted || interest.waiting) return;
  interest.waiting = true;
  const std::weak_ptr<int> alive = lifetime_;
  w->descriptor.async_wait(for_write ? descriptor_base::wait_write : descriptor_base::wait_read,
                           [this, w, for_write, alive](const boost::system::error_code& ec) {
                             FdWatch::Interest& interest = for_write ? w->write : w->read;
                             interest.waiting = false;
                             if (ec || w->closed || alive.expired() || !interest.wanted) return;
                             process(for_write ? ARES_SOCKET_BAD : w->fd, for_write ? w->fd : ARES_SOCKET_BAD);
                             if (!w->closed) watch(w);
                           });
}

void CaresChannel::process(ares_socket_t read_fd, ares_socket_t write_fd) {
  ares_process_fd(channel_, read_fd, write_fd);
  arm_timer();
}

// One timer for the whole channel, re-armed after every interaction with
// c-ares to the earliest deadline it reports (retries, per-try timeouts).
void CaresChannel::arm_timer() {
  timeval tv{};
  if (ares_timeout(channel_, nullptr, &tv) == nullptr) {
    timer_.cancel();
    return;
  }
  const auto wait = std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
  timer_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(wait));
  timer_.async_wait([this, alive = std::weak_ptr<int>(lifetime_)](const boost::system::error_code& ec) {
    if (ec || alive.expired()) return;
    process(ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  });
}

}  // namespace egress::dns
