// The admin listener: GET /healthz, /readyz and /metrics over plain HTTP on
// its own thread and io_context, so a busy proxy does not delay a scrape
// and a slow scraper cannot delay the proxy. Loopback by default
// (serve's admin_listen). Anything else is 404; methods other than GET and
// HEAD are 405.
#pragma once

#include <memory>
#include <string>

#include "egress/admin/metrics.h"

namespace egress::admin {

class AdminServer {
 public:
  /// Binds `listen` ("HOST:PORT", HOST an IP address; port 0 picks one) and
  /// starts serving `metrics` on a new thread. Throws std::runtime_error
  /// naming the address when it cannot listen.
  AdminServer(const std::string& listen, Metrics& metrics);
  ~AdminServer();  // stops the thread; open admin connections are closed
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  /// The bound address, e.g. "127.0.0.1:9128".
  const std::string& address() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace egress::admin
