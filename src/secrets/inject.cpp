// From a decision's `inject:` entries to the header edits of one request.
// Fails closed: a secret the store lacks makes the plan say so, and the
// caller refuses the request instead of sending a placeholder or nothing.
#include <openssl/evp.h>

#include <algorithm>

#include "egress/secrets/secrets.h"

namespace egress::secrets {
namespace {

std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// The header edit, or nullopt with `missing` set to the first absent secret.
std::optional<HeaderEdit> render(const policy::Injection& injection, const SecretStore& store,
                                 std::optional<std::string>& missing) {
  std::string value;
  for (const auto& part : injection.parts) {
    if (!part.secret) {
      value += part.text;
    } else if (const std::string* secret = store.find(part.text)) {
      value += *secret;
    } else {
      missing = part.text;
      return std::nullopt;
    }
  }
  HeaderEdit edit{injection.header, std::move(value), injection.secrets, {}};
  if (injection.basic_user) {
    edit.encoded = base64(*injection.basic_user + ":" + edit.value);
    edit.value = "Basic " + edit.encoded;
  }
  return edit;
}

// only_placeholder: the worker asked for this secret by sending
// "egress:NAME" in the header.
bool worker_asked(const policy::Injection& injection, const HeaderLookup& worker_header) {
  auto sent = worker_header(injection.header);
  if (!sent) return false;
  for (const auto& name : injection.secrets) {
    if (sent->find("egress:" + name) != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace

std::string InjectionPlan::injected_names() const {
  std::vector<std::string_view> seen;
  std::string names;
  for (const auto& edit : edits) {
    for (const auto& name : edit.secrets) {
      if (std::find(seen.begin(), seen.end(), name) != seen.end()) continue;
      seen.push_back(name);
      names += (names.empty() ? "" : ",") + name;
    }
  }
  return names;
}

std::span<const policy::Injection> injections_for(const policy::Decision& decision, policy::RequestKind kind) {
  if (decision.verdict != policy::Verdict::Allow) return {};
  if (kind == policy::RequestKind::Inspected) return decision.inject;
  if (kind == policy::RequestKind::Http && decision.inject_plaintext) return decision.inject;
  return {};
}

InjectionPlan plan_injections(std::span<const policy::Injection> injections, const SecretStore& store,
                              const HeaderLookup& worker_header) {
  InjectionPlan plan;
  for (const auto& injection : injections) {
    if (injection.only_placeholder && !worker_asked(injection, worker_header)) continue;
    auto edit = render(injection, store, plan.missing);
    if (!edit) {
      plan.edits.clear();
      return plan;
    }
    plan.edits.push_back(std::move(*edit));
  }
  return plan;
}

}  // namespace egress::secrets
