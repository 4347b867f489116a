// A resolver decorator that counts every lookup into the metrics registry:
// the proxy's resolver is wrapped once per worker, so the DNS component
// stays free of metrics and the proxy needs no counting call per lookup.
#include <boost/asio/awaitable.hpp>

#include "egress/admin/metrics.h"

namespace egress::admin {
namespace {

class CountingResolver final : public dns::Resolver {
 public:
  CountingResolver(dns::ResolverPtr inner, Metrics& metrics) : inner_(std::move(inner)), metrics_(metrics) {}

  boost::asio::awaitable<dns::Resolution> resolve(std::string host) override {
    const auto started = std::chrono::steady_clock::now();
    auto resolution = co_await inner_->resolve(std::move(host));
    metrics_.count_lookup(resolution, std::chrono::steady_clock::now() - started);
    co_return resolution;
  }

 private:
  dns::ResolverPtr inner_;
  Metrics& metrics_;
};

}  // namespace

dns::ResolverPtr count_lookups(dns::ResolverPtr inner, Metrics& metrics) {
  return std::make_unique<CountingResolver>(std::move(inner), metrics);
}

}  // namespace egress::admin
