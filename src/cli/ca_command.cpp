// `egress ca init|show`: create the TLS inspection CA and print what an admin
// needs to trust it in a worker image. The work is in src/tls/ (ca.h); this
// file parses flags, prints, and maps errors to exit code 2.
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/guarded.h"
#include "egress/tls/ca.h"

namespace egress::cli {
namespace {

struct CaFlags {
  std::string out_dir = "certs";
  bool force = false;
  int days = 365;
  std::string key_type = "ecdsa";
  std::string common_name = "egress inspection CA";
  std::vector<std::string> permit;
  std::string cert = "certs/ca.crt";
};

void print_trust_instructions(const std::string& cert_path) {
  std::error_code ec;
  auto absolute = std::filesystem::absolute(cert_path, ec);
  const std::string path = ec ? cert_path : absolute.lexically_normal().string();
  std::cout << "\nTrust it in a worker image (only workers whose traffic egress inspects need it):\n"
            << "  Debian/Ubuntu (system store; curl, wget, apt, most runtimes):\n"
            << "    cp " << path << " /usr/local/share/ca-certificates/egress-inspection-ca.crt\n"
            << "    update-ca-certificates\n"
            << "  Python requests (its own bundle): point it at the system bundle that now includes the CA\n"
            << "    export REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt\n"
            << "  Python ssl / urllib / httpx / aiohttp:\n"
            << "    export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n"
            << "  Node.js (adds to its built-in roots):\n"
            << "    export NODE_EXTRA_CA_CERTS=" << path << "\n"
            << "  One-off with curl: curl --cacert " << path << " …\n"
            << "REQUESTS_CA_BUNDLE and SSL_CERT_FILE replace the default roots: give them the system bundle\n"
            << "(which holds the CA after update-ca-certificates), not this file alone, or hosts egress does\n"
            << "not inspect stop verifying.\n";
}

int run_show(const CaFlags& flags) {
  const auto info = tls::describe_certificate(flags.cert);
  std::cout << "certificate:  " << flags.cert << "\n"
            << "subject:      " << info.subject << "\n"
            << "issuer:       " << info.issuer << "\n"
            << "sha256:       " << info.sha256_fingerprint << "\n"
            << "valid from:   " << info.not_before << "\n"
            << "valid until:  " << info.not_after << (info.expired ? "  (EXPIRED)" : "") << "\n"
            << "key:          " << info.key << "\n"
            << "CA:           " << (info.is_ca ? "yes" : "no (cannot sign leaf certificates)") << "\n"
            << "constraints:  " << (info.name_constraints.empty() ? std::string("none") : "\n" + info.name_constraints)
            << "\n";
  print_trust_instructions(flags.cert);
  return info.is_ca && !info.expired ? kExitOk : kExitUsage;
}

int run_init(const CaFlags& flags) {
  tls::CaOptions options;
  if (flags.key_type == "ecdsa") {
    options.key_type = tls::KeyType::EcdsaP256;
  } else if (flags.key_type == "rsa") {
    options.key_type = tls::KeyType::Rsa3072;
  } else {
    std::cerr << "egress ca init: --key-type " << flags.key_type << ": use ecdsa (P-256) or rsa (3072 bits)\n";
    return kExitUsage;
  }
  options.days = flags.days;
  options.common_name = flags.common_name;
  options.permitted_domains = flags.permit;
  const auto files =
      tls::create_ca(flags.out_dir, options, flags.force ? tls::Overwrite::Replace : tls::Overwrite::Refuse);
  std::cout << "created " << files.cert << " (mode 0644) and " << files.key << " (mode 0600)\n"
            << "serve with: egress serve --ca-cert " << files.cert << " --ca-key " << files.key << " …\n"
            << "(or tls: {ca_cert: " << files.cert << ", ca_key: " << files.key << "} in the configuration file)\n\n";
  CaFlags show = flags;
  show.cert = files.cert;
  return run_show(show);
}

}  // namespace

void add_ca_command(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<CaFlags>();
  auto* ca = app.add_subcommand("ca", "The TLS inspection CA: init creates it, show describes it");
  ca->require_subcommand(1);

  auto* init = ca->add_subcommand("init", "Create DIR/ca.crt and DIR/ca.key (0600); refuses to overwrite");
  init->add_option("--out", flags->out_dir, "directory for ca.crt and ca.key (default certs)");
  init->add_flag("--force", flags->force, "replace an existing CA (workers trusting the old one stop working)");
  init->add_option("--days", flags->days, "validity in days, 1-3650 (default 365)");
  init->add_option("--key-type", flags->key_type, "ecdsa (P-256, default) or rsa (3072 bits)");
  init->add_option("--name", flags->common_name, "the CA's common name (default \"egress inspection CA\")");
  init->add_option("--permit", flags->permit,
                   "restrict the CA to this domain and its subdomains (X.509 name constraints; repeatable). "
                   "Only when the inspected domains are known and fixed: leaves for other hosts then fail");
  init->callback([flags, &exit_code] { exit_code = run_reporting_errors("egress ca init", [&] { return run_init(*flags); }); });

  auto* show = ca->add_subcommand("show", "Subject, fingerprint, validity, and how to trust the CA in a worker image");
  show->add_option("--cert", flags->cert, "CA certificate (default certs/ca.crt)");
  show->callback([flags, &exit_code] { exit_code = run_reporting_errors("egress ca show", [&] { return run_show(*flags); }); });
}

}  // namespace egress::cli
