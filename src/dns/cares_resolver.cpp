// CaresResolver: the Resolver the proxy uses. Order of answers for a host:
// static_hosts, then the cache, then one c-ares lookup shared by every
// concurrent caller of that host (coalescing), bounded by options.timeout.
//
// Invariants:
//   (1) At most one c-ares lookup per host is in flight; its waiters all get
//       the same Resolution.
//   (2) Every waiter is completed exactly once, always via post() (never
//       inline from a c-ares callback, so no coroutine re-enters c-ares).
//   (3) Destruction completes the waiters still pending with status Error
//       ("resolver shut down"); the posted completions run after the
//       destructor returns and resolve() touches nothing of *this after its
//       co_await, so that is safe. Late c-ares callbacks find no query.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <unordered_map>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "dns/cares_channel.h"
#include "dns/dns_cache.h"
#include "dns/server_list.h"
#include "egress/dns/resolver.h"

namespace egress::dns {

std::string_view to_string(ResolveStatus status) {
  switch (status) {
    case ResolveStatus::Ok: return "ok";
    case ResolveStatus::NxDomain: return "nxdomain";
    case ResolveStatus::NoData: return "nodata";
    case ResolveStatus::ServFail: return "servfail";
    case ResolveStatus::Timeout: return "timeout";
    case ResolveStatus::Error: return "error";
  }
  return "error";
}

namespace {

using Waiter = boost::asio::any_completion_handler<void(Resolution)>;

Resolution failure(ResolveStatus status, std::string error) {
  return Resolution{status, {}, std::move(error), false};
}

Resolution to_resolution(const Answer& answer, const std::string& host) {
  switch (answer.status) {
    case ARES_SUCCESS: return Resolution{ResolveStatus::Ok, answer.addresses, {}, false};
    case ARES_ENOTFOUND: return failure(ResolveStatus::NxDomain, host + ": no such domain");
    case ARES_ENODATA: return failure(ResolveStatus::NoData, host + ": no A or AAAA records");
    case ARES_ESERVFAIL:
    case ARES_EREFUSED:
      return failure(ResolveStatus::ServFail, host + ": DNS server failed or refused: " +
                                                  ares_strerror(answer.status));
    // c-ares 1.18 moves on to the next server after SERVFAIL or REFUSED and,
    // when none is left, reports ECONNREFUSED (its initial error), the same
    // code as for unreachable servers. Either way the servers failed us.
    case ARES_ECONNREFUSED:
      return failure(ResolveStatus::ServFail,
                     host + ": no DNS server answered usefully (SERVFAIL, REFUSED or "
                            "unreachable); check the resolver's servers");
    case ARES_ETIMEOUT:
      return failure(ResolveStatus::Timeout, host + ": DNS servers did not answer in time");
    default:
      return failure(ResolveStatus::Error, host + ": " + ares_strerror(answer.status));
  }
}

// c-ares 1.18 waits try_timeout, then 2x, 4x... per round over the servers;
// with two tries on one server the whole lookup takes 3 x try_timeout, so a
// third of our deadline lets c-ares finish (and report ETIMEOUT) by itself.
ChannelOptions channel_options(const ResolverOptions& options) {
  ChannelOptions out;
  out.servers_csv = servers_to_csv(options.servers);
  out.use_hosts_file = options.use_hosts_file;
  out.tries = 2;
  out.try_timeout = std::max(options.timeout / 3, std::chrono::milliseconds{1});
  return out;
}

class CaresResolver final : public Resolver {
 public:
  CaresResolver(boost::asio::any_io_executor executor, const ResolverOptions& options)
      : executor_(std::move(executor)),
        options_(options),
        channel_(executor_, channel_options(options)),
        cache_(options.max_cache_entries) {}

  ~CaresResolver() override {
    lifetime_.reset();  // a deadline handler already queued must not touch *this
    for (auto& [host, query] : in_flight_) {
      complete(query, failure(ResolveStatus::Error,
                              host + ": resolver shut down while the lookup was in flight"));
    }
    in_flight_.clear();
  }

  boost::asio::awaitable<Resolution> resolve(std::string host) override {
    // Callers pass normalised names; folding case again keeps one cache
    // entry and one query per name even if one slips through.
    std::transform(host.begin(), host.end(), host.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (auto local = answer_locally(host)) co_return std::move(*local);
    co_return co_await boost::asio::async_initiate<
        decltype(boost::asio::use_awaitable), void(Resolution)>(
        [this](auto handler, const std::string& name) { join(name, Waiter(std::move(handler))); },
        boost::asio::use_awaitable, host);
    // Nothing of *this may be touched here: the resolver may be gone (invariant 3).
  }

 private:
  struct Query {
    std::uint64_t id;
    std::vector<Waiter> waiters;
    std::unique_ptr<boost::asio::steady_timer> deadline;
  };

  std::optional<Resolution> answer_locally(const std::string& host) {
    if (const auto it = options_.static_hosts.find(host); it != options_.static_hosts.end()) {
      if (it->second.empty()) return failure(ResolveStatus::NoData, host + ": static entry is empty");
      return Resolution{ResolveStatus::Ok, it->second, {}, false};
    }
    return cache_.find(host, DnsCache::Clock::now());
  }

  void join(const std::string& host, Waiter waiter) {
    if (const auto it = in_flight_.find(host); it != in_flight_.end()) {
      it->second.waiters.push_back(std::move(waiter));
      return;
    }
    const std::uint64_t id = ++last_id_;
    auto& query = in_flight_[host];
    query.id = id;
    query.waiters.push_back(std::move(waiter));
    query.deadline = std::make_unique<boost::asio::steady_timer>(executor_, options_.timeout);
    query.deadline->async_wait([this, host, id, alive = std::weak_ptr<int>(lifetime_)](
                                   const boost::system::error_code& ec) {
      if (ec || alive.expired()) return;  // the query finished first or *this is gone
      finish(host, id, failure(ResolveStatus::Timeout, host + ": no DNS answer within " +
                                   std::to_string(options_.timeout.count()) + " ms"), {});
    });
    // May call back before returning (hosts file); finish() copes.
    channel_.getaddrinfo(host, [this, host, id](Answer answer) {
      finish(host, id, to_resolution(answer, host), answer.min_ttl);
    });
  }

  // Ends query `id` for `host` unless it already ended (deadline vs. answer,
  // whichever comes second is ignored). c-ares keeps working on a timed-out
  // query; its late answer lands here and is dropped.
  void finish(const std::string& host, std::uint64_t id, Resolution resolution,
              std::optional<std::chrono::seconds> answer_ttl) {
    const auto it = in_flight_.find(host);
    if (it == in_flight_.end() || it->second.id != id) return;
    Query query = std::move(it->second);
    in_flight_.erase(it);
    query.deadline->cancel();
    const auto lifetime = cache_lifetime(resolution, answer_ttl, options_);
    if (lifetime.count() > 0) cache_.insert(host, resolution, DnsCache::Clock::now() + lifetime);
    complete(query, resolution);
  }

  void complete(Query& query, const Resolution& resolution) {
    // post() runs each waiter through its own (associated) executor.
    for (auto& waiter : query.waiters) {
      boost::asio::post(executor_, boost::asio::append(std::move(waiter), resolution));
    }
    query.waiters.clear();
  }

  boost::asio::any_io_executor executor_;
  ResolverOptions options_;
  CaresChannel channel_;
  DnsCache cache_;
  std::unordered_map<std::string, Query> in_flight_;
  std::uint64_t last_id_ = 0;
  std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);  // expires with *this
};

}  // namespace

ResolverPtr make_cares_resolver(boost::asio::any_io_executor executor,
                                const ResolverOptions& options) {
  return std::make_unique<CaresResolver>(std::move(executor), options);
}

}  // namespace egress::dns
