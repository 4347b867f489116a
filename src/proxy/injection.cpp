#include "proxy/injection.h"

namespace egress::proxy {

RequestInjection plan_injection(const policy::Decision& decision, policy::RequestKind kind,
                                const boost::beast::http::fields& request, secrets::SecretsSnapshot secrets) {
  RequestInjection out;
  const auto injections = secrets::injections_for(decision, kind);
  if (injections.empty()) return out;
  out.secrets = std::move(secrets);
  out.plan = secrets::plan_injections(injections, *out.secrets, [&request](std::string_view name) {
    const auto it = request.find(name);
    return it == request.end() ? std::nullopt : std::optional<std::string_view>(it->value());
  });
  if (!out.plan.missing) out.scrubber = secrets::Scrubber(out.plan, *out.secrets);
  return out;
}

void apply_injection(const secrets::InjectionPlan& plan, boost::beast::http::fields& request) {
  for (const auto& edit : plan.edits) request.set(edit.header, edit.value);
}

std::string secret_missing_detail(const std::string& name) {
  return "the rule injects secret '" + name +
         "', which is not in egress's secrets directory (or could not be read); add the file " + name +
         " (mode 0600) to secrets_dir and reload egress (SIGHUP)";
}

}  // namespace egress::proxy
