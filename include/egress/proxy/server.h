// `egress serve`: the listener and its threads, signals, reload and the
// graceful stop. Everything per request lives in the session.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "egress/audit/store.h"
#include "egress/config/config.h"
#include "egress/policy/policy.h"

namespace egress::tls {
class Inspection;
}

namespace egress::proxy {

/// Loads the policy for (re)loading: the file named in the config, or the
/// embedded default. Throws policy::PolicyLoadError.
using PolicyLoader = std::function<policy::PolicySnapshot()>;

/// Listens on config.listen with one io_context per thread (SO_REUSEPORT),
/// serves until SIGTERM or SIGINT, then stops accepting, lets open requests
/// finish for limits.shutdown_grace, closes what remains and returns 0.
/// SIGHUP reloads the policy through `load_policy`; a bad policy leaves the
/// old one in force. `on_listening` is called with the bound address
/// ("127.0.0.1:3128") once the listeners are up.
/// `inspection` (the loaded CA and TLS contexts) is needed by policies with
/// `inspect: true` rules; the caller refuses such policies without it.
/// Throws std::runtime_error naming the address when it cannot listen.
int serve(const config::ServeConfig& config, const PolicyLoader& load_policy, audit::AuditStore& audit,
          const std::function<void(const std::string& address)>& on_listening,
          std::shared_ptr<const tls::Inspection> inspection = nullptr);

}  // namespace egress::proxy
