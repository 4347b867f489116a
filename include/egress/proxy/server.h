// `egress serve`: the listener and its threads, signals, reload and the
// graceful stop. Everything per request lives in the session.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "egress/audit/store.h"
#include "egress/config/config.h"
#include "egress/policy/policy.h"
#include "egress/secrets/secrets.h"

namespace egress::tls {
class Inspection;
}

namespace egress::proxy {

/// Loads the policy for (re)loading: the file named in the config, or the
/// embedded default. Throws policy::PolicyLoadError.
using PolicyLoader = std::function<policy::PolicySnapshot()>;

/// Loads the secrets directory (config.secrets_dir) for (re)loading.
/// Throws secrets::SecretsError.
using SecretsLoader = std::function<secrets::SecretsSnapshot()>;

/// Listens on config.listen with one io_context per thread (SO_REUSEPORT),
/// serves until SIGTERM or SIGINT, then stops accepting, lets open requests
/// finish for limits.shutdown_grace, closes what remains and returns 0.
/// SIGHUP reloads the policy through `load_policy`; a bad policy leaves the
/// old one in force. `on_listening` is called with the bound address
/// ("127.0.0.1:3128") once the listeners are up.
/// `inspection` (the loaded CA and TLS contexts) is needed by policies with
/// `inspect: true` rules; the caller refuses such policies without it.
/// `load_secrets`, when set, is called at start and before the policy on
/// every reload: a rotated secret takes effect then; a directory that no
/// longer loads leaves the previous secrets in force and logs why.
/// Throws std::runtime_error naming the address when it cannot listen.
int serve(const config::ServeConfig& config, const PolicyLoader& load_policy, audit::AuditStore& audit,
          const std::function<void(const std::string& address)>& on_listening,
          std::shared_ptr<const tls::Inspection> inspection = nullptr, const SecretsLoader& load_secrets = {});

}  // namespace egress::proxy
