// `sandbox verify --docker`: the Production Checklist against a running
// Docker deployment. What the engine says (`docker info`, `docker inspect`)
// is checked against what the probe (probe.cpp) sees from inside each worker
// through `docker exec`; a line passes only when both agree. Runs nothing of
// its own but the probe and a host marker file, which it removes.
#include <sys/random.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "egress/sandbox/verify.h"
#include "sandbox/checklist.h"
#include "sandbox/probe.h"
#include "sandbox/process.h"

namespace egress::sandbox {
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

json::value docker_json(const DockerVerifyOptions& o, std::vector<std::string> args) {
  args.insert(args.begin(), o.docker);
  const auto r = run_command(args, 30s);
  std::error_code ec;
  auto v = json::parse(r.output, ec);
  if (!r.ok() || ec) {
    std::string cmd;
    for (const auto& a : args) cmd += (cmd.empty() ? "" : " ") + a;
    throw SandboxError("`" + cmd + "` failed (exit " + std::to_string(r.exit_code) + "): " + r.output.substr(0, 400) +
                       "; is the Docker daemon running and DOCKER_HOST right?");
  }
  return v;
}

std::string str(const json::value& v) { return v.is_string() ? std::string(v.as_string()) : ""; }

const json::value& at(const json::value& v, std::initializer_list<const char*> path) {
  static const json::value null;
  const json::value* cur = &v;
  for (const char* key : path) {
    if (!cur->is_object() || !cur->as_object().contains(key)) return null;
    cur = &cur->as_object().at(key);
  }
  return *cur;
}

bool has_string(const json::value& arr, const std::string& want) {
  if (!arr.is_array()) return false;
  for (const auto& x : arr.as_array())
    if (str(x) == want) return true;
  return false;
}

// name -> IP address of a container on each of its networks.
std::map<std::string, std::string> addresses(const json::value& inspect) {
  std::map<std::string, std::string> out;
  const auto& nets = at(inspect, {"NetworkSettings", "Networks"});
  if (nets.is_object())
    for (const auto& kv : nets.as_object()) out[std::string(kv.key())] = str(at(kv.value(), {"IPAddress"}));
  return out;
}

struct Deployment {
  std::vector<std::string> workers;
  std::string egress;
};

Deployment find_deployment(const DockerVerifyOptions& o) {
  Deployment d{o.workers, o.egress_container};
  if (o.compose_project.empty()) return d;
  const auto r = run_command({o.docker, "ps", "--filter", "label=com.docker.compose.project=" + o.compose_project,
                              "--format", "{{.Names}}\t{{.Label \"com.docker.compose.service\"}}"},
                             30s);
  if (!r.ok()) throw SandboxError("docker ps for compose project " + o.compose_project + " failed: " + r.output);
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);) {
    const auto tab = line.find('\t');
    if (tab == std::string::npos) continue;
    const auto name = line.substr(0, tab), service = line.substr(tab + 1);
    if (service == o.proxy_service) {
      if (d.egress.empty()) d.egress = name;
    } else if (o.workers.empty()) {
      d.workers.push_back(name);
    }
  }
  return d;
}

std::string random_hex() {
  unsigned char b[8];
  if (getrandom(b, sizeof b, 0) != sizeof b) throw SandboxError("getrandom failed");
  std::string s;
  for (unsigned char c : b) s += "0123456789abcdef"[c >> 4], s += "0123456789abcdef"[c & 15];
  return s;
}

// The audit rows of `client`'s requests, read in the egress container by
// egress itself (the image has no sqlite3); each must name a role.
Line audit_line(const DockerVerifyOptions& o, const std::string& egress, const json::value& egress_inspect,
                const std::string& client) {
  if (egress.empty()) return {"SKIP", "no egress container named (--egress-container or --compose-project)"};
  std::string db = "egress-audit.db";
  const auto& args = at(egress_inspect, {"Args"});
  if (args.is_array())
    for (std::size_t i = 0; i + 1 < args.as_array().size(); ++i)
      if (str(args.as_array()[i]) == "--audit-db") db = str(args.as_array()[i + 1]);
  int rows = 0, with_role = 0;
  std::string roles, output;
  for (int attempt = 0; attempt < 10 && rows < 2; ++attempt) {  // the store commits in batches
    if (attempt > 0) sleep(1);
    const auto r = run_command(
        {o.docker, "exec", egress, "egress", "audit", "query", "--db", db, "--client", client, "--format", "csv"}, 30s);
    output = r.output;
    rows = with_role = 0;
    roles.clear();
    std::istringstream in(r.output);
    std::string header;
    std::getline(in, header);
    std::size_t role_col = 0;
    for (std::size_t pos = 0, col = 0; pos <= header.size(); ++col) {
      const auto comma = header.find(',', pos);
      if (header.substr(pos, comma - pos) == "role") role_col = col;
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    for (std::string row; std::getline(in, row);) {
      std::vector<std::string> cells;
      std::stringstream cs(row);
      for (std::string c; std::getline(cs, c, ',');) cells.push_back(c);
      if (cells.size() <= role_col) continue;
      ++rows;
      const auto& role = cells[role_col];
      if (!role.empty() && (o.role.empty() || role == o.role)) ++with_role;
      if (roles.find(role) == std::string::npos) roles += (roles.empty() ? "" : ",") + role;
    }
  }
  const bool ok = rows >= 1 && with_role == rows;
  return {ok ? "PASS" : "FAIL", std::to_string(rows) + " request(s) from " + client + " in " + egress + ":" + db + ", " +
                                    std::to_string(with_role) + " with role " + (o.role.empty() ? "set" : "'" + o.role + "'") +
                                    " (roles: " + (roles.empty() ? "none" : roles) + ")" +
                                    (rows == 0 ? "; audit query said: " + output.substr(0, 300) : "")};
}

// One worker's checklist lines (the daemon-wide ones are added by the caller).
Checklist worker_checklist(const DockerVerifyOptions& o, const std::string& worker, const Deployment& d,
                           const json::value& egress_inspect, const SecretSearch& secrets) {
  const auto inspect = docker_json(o, {"inspect", "--type", "container", worker}).as_array().at(0);
  const auto& host = at(inspect, {"HostConfig"});
  const auto nets = addresses(inspect);
  const auto egress_nets = addresses(egress_inspect);

  Line networks{"PASS", ""};
  std::string proxy_ip, upstream = o.upstream;
  for (const auto& [net, ip] : nets) {
    const auto n = docker_json(o, {"network", "inspect", net}).as_array().at(0);
    const bool internal = at(n, {"Internal"}).is_bool() && at(n, {"Internal"}).as_bool();
    add_finding(networks, internal, "network " + net + (internal ? " is internal" : " is NOT internal"));
    if (egress_nets.contains(net)) proxy_ip = egress_nets.at(net);
  }
  for (const auto& [net, ip] : egress_nets)
    if (upstream.empty() && !nets.contains(net) && !ip.empty()) upstream = ip + ":3128";
  if (upstream.empty())
    throw SandboxError("no address to test direct connections against: egress has no network the worker lacks; give --upstream IP:PORT");
  const auto colon = upstream.rfind(':');

  std::string pid1 = str(at(inspect, {"Path"}));
  if (at(inspect, {"Args"}).is_array())
    for (const auto& a : at(inspect, {"Args"}).as_array()) pid1.append(" ").append(str(a));
  utsname u{};
  uname(&u);
  const std::string marker = "/run/egress-verify-docker-" + random_hex();
  std::ofstream(marker) << "a file on the Docker host; a worker must not see it\n";
  struct Unlink {
    std::string path;
    ~Unlink() { unlink(path.c_str()); }
  } unlink_marker{marker};

  // KEY=VALUE by append: GCC 12 at -O3 reports a false -Wrestrict on `"KEY=" + std::string&&`.
  const std::vector<std::pair<std::string, std::string>> env = {
      {"V_DOCKER", "1"}, {"V_UP", upstream.substr(0, colon)}, {"V_UP_PORT", upstream.substr(colon + 1)},
      {"V_TOKEN", ""}, {"V_PROXY_IP", proxy_ip}, {"V_HOSTSVC_PORT", "0"}, {"V_LOOP_PORT", "0"},
      {"V_HOST_KERNEL", u.release}, {"V_ALLOWED_URL", o.allowed_url}, {"V_DENIED_URL", o.denied_url},
      {"V_PID1_CMD", pid1}, {"V_HOST_MARKER", marker}, {"V_DNS_NAME", "outside-name.example"}};
  std::vector<std::string> exec{o.docker, "exec"};
  for (const auto& [key, value] : env) exec.insert(exec.end(), {"-e", std::string(key).append("=").append(value)});
  for (const auto& entry : secrets.probe_env) exec.insert(exec.end(), {"-e", entry});
  exec.insert(exec.end(), {worker, "python3", "-c", kProbeScript});
  const auto r = run_command(exec, 120s);
  const ProbeResults probe = parse_probe_output(r.output);
  auto combine = [&](std::initializer_list<const char*> ids) { return sandbox::combine(probe, ids, r.exit_code); };

  const std::string runtime = str(at(host, {"Runtime"}));
  Line gvisor = combine({"kernel"});
  add_finding(gvisor, runtime == "runsc", std::string("runtime ").append(runtime.empty() ? "(default)" : runtime));
  Line net = combine({"direct", "ifaces"});
  add_finding(net, networks.verdict == "PASS", networks.detail);
  Line dns = combine({"dns"});
  std::string dns_servers;
  if (at(host, {"Dns"}).is_array())
    for (const auto& x : at(host, {"Dns"}).as_array()) dns_servers.append(dns_servers.empty() ? "" : ",").append(str(x));
  add_finding(dns, true, std::string("forwarders ").append(dns_servers.empty() ? "the daemon's" : dns_servers));
  Line rootro = combine({"rootro", "tmp"});
  add_finding(rootro, at(host, {"ReadonlyRootfs"}) == json::value(true), "ReadonlyRootfs in the container config");
  Line caps = combine({"caps"});
  add_finding(caps, has_string(at(host, {"CapDrop"}), "ALL"), "CapDrop ALL in the container config");
  Line priv = combine({"setuid"});
  add_finding(priv, at(host, {"Privileged"}) != json::value(true), "Privileged false in the container config");
  Line proxy_path{"SKIP", "give --allowed-url and --denied-url to test the proxy path"};
  if (!o.allowed_url.empty() && !o.denied_url.empty()) proxy_path = combine({"allowed", "denied"});
  std::string client;
  for (const auto& [n, ip] : nets)
    if (egress_nets.contains(n)) client = ip;

  Line secrets_line = secrets.skipped.value_or(combine({"secrets"}));
  if (at(inspect, {"Mounts"}).is_array())
    for (const auto& m : at(inspect, {"Mounts"}).as_array())
      if (str(at(m, {"Destination"})).starts_with("/run/secrets"))
        add_finding(secrets_line, false, "a Docker secret is mounted at " + str(at(m, {"Destination"})) +
                                             "; give `secrets:` to the egress service only");
  return {{"AI workers using gVisor runtime", gvisor},
          {"Network isolation enabled (internal network)", net},
          {"DNS resolution disabled for workers", dns},
          {"Read-only root filesystem", rootro},
          {"Dropped capabilities (CAP_DROP: ALL)", caps},
          {"No privileged mode", priv},
          {"Logging and monitoring configured", audit_line(o, d.egress, egress_inspect, client)},
          {"Tested sandbox escape prevention", combine({"hostfiles", "pid1"})},
          {"Egress proxy path (allowed 200, denied 403)", proxy_path},
          {kSecretsLine, secrets_line}};
}

// The daemon's runsc: registered, and the binary it names runs.
std::pair<Line, Line> daemon_lines(const DockerVerifyOptions& o) {
  const auto runtimes = docker_json(o, {"info", "--format", "{{json .Runtimes}}"});
  const auto& runsc = at(runtimes, {"runsc"});
  if (runsc.is_null())
    return {{"FAIL", "the daemon has no runsc runtime"},
            {"FAIL", "`docker info` lists no runsc runtime; `egress sandbox render --target docker-daemon --out /etc/docker`, then reload dockerd"}};
  const std::string path = str(at(runsc, {"path"}));
  std::string args;
  if (at(runsc, {"runtimeArgs"}).is_array())
    for (const auto& a : at(runsc, {"runtimeArgs"}).as_array()) args.append(" ").append(str(a));
  const auto version = run_command({path.empty() ? "runsc" : path, "--version"}, 20s);
  const std::string first = version.output.substr(0, version.output.find('\n'));
  return {{version.ok() ? "PASS" : "FAIL", path + " --version: " + first},
          {"PASS", "`docker info`: runtime runsc -> " + path + (args.empty() ? "" : " (args" + args + ")")}};
}

}  // namespace

int run_verify_docker(const DockerVerifyOptions& o, std::ostream& out) {
  const Deployment d = find_deployment(o);
  if (d.workers.empty())
    throw SandboxError("no worker container to verify; give --docker CONTAINER or --compose-project NAME with running workers");
  const auto [gvisor_installed, daemon] = daemon_lines(o);
  const json::value egress_inspect =
      d.egress.empty() ? json::value(json::object()) : docker_json(o, {"inspect", "--type", "container", d.egress}).as_array().at(0);

  const SecretSearch secrets = secret_search(o.secrets_dir, o.breakage);  // the directory is read once
  // Each line over every worker: FAIL if it failed for one, details by worker.
  Checklist merged;
  for (const auto& worker : d.workers) {
    const auto lines = worker_checklist(o, worker, d, egress_inspect, secrets);
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (merged.size() <= i) merged.push_back({lines[i].first, {lines[i].second.verdict, ""}});
      auto& line = merged[i].second;
      if (lines[i].second.verdict == "FAIL" || (line.verdict == "SKIP" && lines[i].second.verdict == "PASS"))
        line.verdict = lines[i].second.verdict;
      line.detail += (line.detail.empty() ? "" : " | ") + worker + ": " + lines[i].second.detail;
    }
  }
  Checklist checklist = {{"gVisor installed and tested", gvisor_installed},
                         {"Docker daemon configured with runsc runtime", daemon}};
  checklist.insert(checklist.end(), merged.begin(), merged.begin() + 6);
  checklist.push_back({"AppArmor/SELinux profiles applied",
                       {"SKIP", "gVisor does not apply AppArmor inside its sandbox; `egress sandbox render --target apparmor` "
                                "writes the profile for runc workers"}});
  checklist.insert(checklist.end(), merged.begin() + 6, merged.begin() + 8);
  checklist.push_back({"Documented incident response procedures", {"SKIP", "a document, not a property of this host"}});
  checklist.push_back(merged[8]);
  checklist.push_back(merged[9]);
  std::string names;
  for (const auto& w : d.workers) names += (names.empty() ? "" : ", ") + w;
  const int failed = print_checklist(
      out, "Production Checklist (egress sandbox verify --docker, workers " + names + ", egress " +
               (d.egress.empty() ? "(not named)" : d.egress) + ")",
      checklist);
  return failed == 0 ? 0 : 1;
}

}  // namespace egress::sandbox
