// The request side of `inject:`: after a request is allowed, which headers
// egress sets from its secrets (secrets/secrets.h), and the scrubber its
// response goes through. Shared by plain forwarding and inspected tunnels,
// so a credential follows one rule whichever way the request came.
#pragma once

#include <string>

#include <boost/beast/http/fields.hpp>

#include "egress/policy/policy.h"
#include "egress/secrets/secrets.h"

namespace egress::proxy {

struct RequestInjection {
  secrets::InjectionPlan plan;
  secrets::Scrubber scrubber;  // inactive when nothing is injected
  secrets::SecretsSnapshot secrets;  // keeps the scrubber's values alive
};

/// The injections for an allowed request of `kind` under `decision`
/// (secrets::injections_for), planned against the worker's own headers.
/// plan.missing set: refuse the request with secret-unavailable.
RequestInjection plan_injection(const policy::Decision& decision, policy::RequestKind kind,
                                const boost::beast::http::fields& request, secrets::SecretsSnapshot secrets);

/// Sets the planned headers on the request going upstream (replacing the
/// worker's own values of them).
void apply_injection(const secrets::InjectionPlan& plan, boost::beast::http::fields& request);

/// The refusal's detail for a missing secret: its name and what to do.
std::string secret_missing_detail(const std::string& name);

}  // namespace egress::proxy
