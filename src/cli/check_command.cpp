// `egress check`: the what-if. Decides a URL or HOST:PORT under a policy
// through proxy::evaluate(), the code path `serve` uses, resolving names
// the way serve would (same resolver settings from --config); for an
// https:// URL whose tunnel is inspected, also the request inside it
// (proxy::decide_inspected(), as the inspected request loop does).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "cli/commands.h"
#include "egress/config/config.h"
#include "egress/dns/resolver.h"
#include "egress/policy/policy.h"
#include "egress/proxy/evaluate.h"
#include "egress/secrets/secrets.h"

namespace egress::cli {
namespace {

namespace asio = boost::asio;

struct CheckFlags {
  std::string policy_file, mode, config_file, secrets_dir, method = "GET", role, source, target;
  bool json = false;
};

/// What the worker would send for a target: "http://…" is a forwarded
/// request; "https://host[:port]/path" is a CONNECT to host:port, and the
/// request (origin-form path) it carries if the tunnel is inspected;
/// anything else is HOST:PORT as in a CONNECT line.
struct CheckTarget {
  proxy::ParsedTarget parsed;
  std::optional<std::string> https_authority;  // set for https:// URLs
  std::string https_origin_form;               // "/path?q" of an https:// URL
};

CheckTarget parse_check_target(const std::string& text) {
  constexpr std::string_view kHttps = "https://";
  CheckTarget out;
  if (text.size() > kHttps.size() && std::equal(kHttps.begin(), kHttps.end(), text.begin(),
                                                [](char a, char b) { return a == std::tolower(b); })) {
    const auto rest = text.substr(kHttps.size());
    const auto end = rest.find_first_of("/?#");
    const auto authority = rest.substr(0, end);
    out.https_authority = authority;
    out.https_origin_form = end == std::string::npos ? "" : rest.substr(end, rest.find('#') - end);
    if (!out.https_origin_form.starts_with('/')) out.https_origin_form.insert(0, "/");  // "", "?q"
    const bool has_port = authority.find(':', authority.rfind(']') == std::string::npos ? 0 : authority.rfind(']')) !=
                          std::string::npos;
    out.parsed = proxy::parse_connect_target(has_port ? authority : authority + ":443");
  } else if (text.find("://") != std::string::npos) {
    out.parsed = proxy::parse_absolute_target(text);
  } else {
    out.parsed = proxy::parse_connect_target(text);
  }
  return out;
}

/// The request inside an inspected tunnel, decided as serve would decide it.
struct InspectedCheck {
  std::string method, path;
  policy::Decision decision;
};

/// For a CONNECT that is allowed and inspected, and an https:// URL: the
/// decision for the request the URL names, against the first address the
/// tunnel would connect to.
std::optional<InspectedCheck> check_inspected(const policy::Policy& policy, const CheckTarget& target,
                                              const proxy::Evaluation& connect, const std::string& method,
                                              const std::string& role) {
  if (!connect.decision.allows() || !connect.decision.inspect || !target.https_authority) return std::nullopt;
  InspectedCheck out;
  out.method = method;
  const auto inner = proxy::parse_inspected_target(target.https_origin_form, *target.https_authority, 11,
                                                   target.parsed.request->target);
  if (!inner.request) {
    out.path = target.https_origin_form;
    out.decision.verdict = policy::Verdict::Deny;
    out.decision.reason = inner.reason;
    out.decision.detail = inner.error;
    return out;
  }
  out.path = inner.request->path;
  out.decision = proxy::decide_inspected(policy, *inner.request, method, role, connect.endpoints.front().address());
  return out;
}

/// decision, reason, rule and detail: for the CONNECT or plain request, and
/// again for the request inside an inspected tunnel.
void add_decision(boost::json::object& out, const policy::Decision& d) {
  out["decision"] = std::string(policy::to_string(d.verdict));
  out["reason"] = std::string(policy::to_string(d.reason));
  out["rule"] = d.rule;
  out["detail"] = d.detail;
}

void print_decision(const policy::Decision& d) {
  std::cout << "decision:  " << policy::to_string(d.verdict) << "\n"
            << "reason:    " << policy::to_string(d.reason) << " - " << policy::explain(d.reason) << "\n"
            << "rule:      " << (d.rule.empty() ? "(none)" : d.rule) << "\n";
  if (!d.detail.empty()) std::cout << "detail:    " << d.detail << "\n";
}

/// What serve would add to the request: each header and the secret it
/// comes from, by name only (the value is never printed).
struct InjectionCheck {
  std::string header, secret;
  bool only_placeholder = false;
  bool available = false;
};

std::vector<InjectionCheck> check_injections(std::span<const policy::Injection> injections,
                                             const secrets::SecretStore& store) {
  std::vector<InjectionCheck> out;
  for (const auto& injection : injections) {
    for (const auto& name : injection.secrets) {
      out.push_back({injection.header, name, injection.only_placeholder, store.find(name) != nullptr});
    }
  }
  return out;
}

boost::json::array injections_json(const std::vector<InjectionCheck>& injections) {
  boost::json::array out;
  for (const auto& i : injections) {
    out.push_back(boost::json::object{{"header", i.header}, {"secret", i.secret},
                                      {"only_placeholder", i.only_placeholder}, {"available", i.available}});
  }
  return out;
}

void print_injections(const std::vector<InjectionCheck>& injections) {
  for (const auto& i : injections) {
    std::cout << "inject:    " << i.header << " from secret " << i.secret
              << (i.only_placeholder ? " (only where the worker sends egress:" + i.secret + ")" : "")
              << (i.available ? "" : "; the secret is missing: these requests get 503 secret-unavailable") << "\n";
  }
}

void print(const CheckFlags& flags, const std::string& role, const proxy::RequestTarget& request,
           const proxy::Evaluation& evaluation, const std::optional<InspectedCheck>& inspected,
           const std::vector<InjectionCheck>& injections) {
  const auto& d = evaluation.decision;
  const bool tunnel_allowed = request.kind == policy::RequestKind::Connect && d.allows();
  if (flags.json) {
    boost::json::object out;
    out["target"] = flags.target;
    out["kind"] = std::string(policy::to_string(request.kind));
    out["host"] = request.target.host.host;
    out["port"] = request.target.port;
    add_decision(out, d);
    out["role"] = role;
    out["status"] = d.allows() ? 200 : policy::status_for(d.reason);
    boost::json::array addresses;
    for (const auto& e : evaluation.endpoints) addresses.emplace_back(e.address().to_string());
    out["addresses"] = std::move(addresses);
    if (tunnel_allowed) out["inspect"] = d.inspect;
    if (inspected) {
      boost::json::object inner{{"method", inspected->method}, {"path", inspected->path}};
      add_decision(inner, inspected->decision);
      inner["status"] = inspected->decision.allows() ? 200 : policy::status_for(inspected->decision.reason);
      out["request"] = std::move(inner);
    }
    out["inject"] = injections_json(injections);
    std::cout << boost::json::serialize(out) << "\n";
    return;
  }
  std::cout << "target:    " << flags.target << " (" << policy::to_string(request.kind) << " to "
            << request.target.host.host << ":" << request.target.port << ")\n"
            << "role:      " << (role.empty() ? "(none)" : role) << "\n";
  print_decision(d);
  if (!evaluation.endpoints.empty()) {
    std::cout << "addresses:";
    for (const auto& e : evaluation.endpoints) std::cout << " " << e.address().to_string();
    std::cout << "\n";
  }
  if (!tunnel_allowed) {
    print_injections(injections);
    return;
  }
  if (!d.inspect) {
    std::cout << "inspect:   no (end-to-end TLS: egress sees the host and port, never the path)\n";
    return;
  }
  if (!inspected) {
    std::cout << "inspect:   yes (each request inside is decided on its method and path; give an https:// URL "
                 "to check one)\n";
    return;
  }
  std::cout << "inspect:   yes; the request inside:\n"
            << "request:   " << inspected->method << " " << inspected->path << "\n";
  print_decision(inspected->decision);
  print_injections(injections);
}

int run_check(const CheckFlags& flags) {
  config::ServeConfig config;
  std::optional<policy::Mode> mode;
  try {
    if (!flags.config_file.empty()) config = config::load_config_file(flags.config_file);
    if (!flags.mode.empty()) {
      mode = policy::mode_from_string(flags.mode);
      if (!mode) throw config::ConfigError("--mode " + flags.mode + ": use production, self-hosted or developer");
    }
  } catch (const config::ConfigError& e) {
    std::cerr << "egress check: " << e.what() << "\n";
    return kExitUsage;
  }
  if (!mode) mode = config.mode;
  secrets::SecretStore secrets;
  try {
    const auto& dir = flags.secrets_dir.empty() ? config.secrets_dir : flags.secrets_dir;
    if (!dir.empty()) secrets = secrets::SecretStore::load(dir);
  } catch (const secrets::SecretsError& e) {
    std::cerr << "egress check: " << e.what() << "\n";
    return kExitUsage;
  }
  const auto policy_file = flags.policy_file.empty() ? config.policy_file : flags.policy_file;

  policy::PolicySnapshot policy;
  try {
    policy = policy_file.empty() ? policy::default_policy(mode) : policy::load_policy_file(policy_file, mode);
  } catch (const policy::PolicyLoadError& e) {
    std::cerr << "egress check: the policy has errors:\n" << e.what() << "\n";
    return kExitUsage;
  }

  const auto target = parse_check_target(flags.target);
  const auto& parsed = target.parsed;
  if (!parsed.request) {
    std::cerr << "egress check: " << flags.target << ": " << policy::to_string(parsed.reason) << ": " << parsed.error
              << "\n";
    return kExitUsage;
  }

  asio::io_context ioc;
  dns::ResolverPtr resolver;
  try {
    resolver = dns::make_cares_resolver(ioc.get_executor(), proxy::resolver_options(config.dns));
  } catch (const std::exception& e) {
    std::cerr << "egress check: " << e.what() << "\n";
    return kExitUsage;
  }
  std::string role = flags.role;
  if (!flags.source.empty()) {
    const auto source = policy::IpAddress::parse(flags.source);
    if (!source) {
      std::cerr << "egress check: --source " << flags.source << ": not an IP address\n";
      return kExitUsage;
    }
    role = policy->role_for_source(*source);
  } else if (!role.empty()) {
    const auto& roles = policy->model().roles;
    if (std::none_of(roles.begin(), roles.end(), [&](const auto& r) { return r.name == role; })) {
      std::cerr << "egress check: --role " << role << ": the policy has no such role\n";
      return kExitUsage;
    }
  }
  const auto method = parsed.request->kind == policy::RequestKind::Connect ? std::string("CONNECT") : flags.method;
  auto future =
      asio::co_spawn(ioc, proxy::evaluate(*policy, *resolver, *parsed.request, method, role), asio::use_future);
  ioc.run();
  const auto evaluation = future.get();
  const auto inspected = check_inspected(*policy, target, evaluation, flags.method, role);
  const auto injections = check_injections(
      inspected ? secrets::injections_for(inspected->decision, policy::RequestKind::Inspected)
                : secrets::injections_for(evaluation.decision, parsed.request->kind),
      secrets);
  print(flags, role, *parsed.request, evaluation, inspected, injections);
  const bool allowed = inspected ? inspected->decision.allows() : evaluation.decision.allows();
  return allowed ? kExitOk : kExitDenied;
}

}  // namespace

void add_check_command(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<CheckFlags>();
  auto* check = app.add_subcommand("check", "What-if: how would serve decide this URL or HOST:PORT? (exit 0 allow, 1 deny)");
  check->add_option("--policy", flags->policy_file, "policy file (default: the config's, else the embedded default)");
  check->add_option("--mode", flags->mode, "override the policy's mode");
  check->add_option("--config", flags->config_file, "serve's configuration file (for its policy and DNS settings)")
      ->check(CLI::ExistingFile);
  check->add_option("--secrets-dir", flags->secrets_dir,
                    "serve's secrets directory: say whether each injected secret exists (names only)");
  check->add_option("--method", flags->method,
                    "HTTP method for http:// URLs, and for https:// URLs whose tunnel is inspected (default GET)");
  auto* role = check->add_option("--role", flags->role, "decide as this role");
  check->add_option("--source", flags->source, "decide as a worker connecting from this address (its role)")
      ->excludes(role);
  check->add_flag("--json", flags->json, "print one JSON object");
  check->add_option("target", flags->target,
                    "http://host/path, https://host/path (the CONNECT, and the request if inspected) or HOST:PORT")
      ->required();
  check->callback([flags, &exit_code] { exit_code = run_check(*flags); });
}

}  // namespace egress::cli
