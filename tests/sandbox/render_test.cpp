// The deployment renderers: every file parses (yaml-cpp / Boost.JSON) and has
// the keys the sandboxing guide requires; the daemon.json merge keeps other
// keys, writes atomically with a backup and refuses invalid JSON untouched.
#include <catch2/catch.hpp>
#include <yaml-cpp/yaml.h>

#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "egress/sandbox/render.h"

using namespace egress::sandbox;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "egress-render-XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path); }
};

bool has_item(const YAML::Node& seq, const std::string& value) {
  for (const auto& n : seq)
    if (n.as<std::string>() == value) return true;
  return false;
}

}  // namespace

TEST_CASE("the compose override puts workers on runsc, on the internal network only", "[sandbox]") {
  RenderOptions o;
  o.mode = egress::policy::Mode::Production;
  const auto doc = YAML::Load(render_compose_override(o));
  const auto worker = doc["services"]["worker"];
  CHECK(worker["runtime"].as<std::string>() == "runsc");
  CHECK(worker["user"].as<std::string>() == "65534:65534");
  CHECK(worker["read_only"].as<bool>());
  CHECK(has_item(worker["cap_drop"], "ALL"));
  CHECK(has_item(worker["security_opt"], "no-new-privileges:true"));
  CHECK(worker["networks"].size() == 1);
  CHECK(has_item(worker["networks"], "sandbox"));
  for (const char* var : {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"})
    CHECK(worker["environment"][var].as<std::string>() == "http://egress:3128");
  CHECK(!worker["environment"]["NO_PROXY"]);
  // CVE-2024-29018 guard: Docker's embedded DNS forwards from the worker's own namespace
  REQUIRE(worker["dns"].size() == 1);
  CHECK(worker["dns"][0].as<std::string>() == "127.0.0.1");
  const auto egress = doc["services"]["egress"];
  CHECK(has_item(egress["networks"], "sandbox"));
  CHECK(has_item(egress["networks"], "egress"));
  CHECK(has_item(egress["command"], "production"));
  CHECK(has_item(egress["command"], "/etc/egress/policies/production.yaml"));  // where docker-compose.yml mounts them
  CHECK(doc["networks"]["sandbox"]["internal"].as<bool>());
  CHECK(!doc["networks"]["egress"]["internal"]);
}

TEST_CASE("the compose override hardens every worker service it is given", "[sandbox]") {
  RenderOptions o;
  o.worker_services = {"coder", "reviewer"};
  const auto doc = YAML::Load(render_compose_override(o));
  CHECK(!doc["services"]["worker"]);
  for (const char* name : {"coder", "reviewer"}) {
    CHECK(doc["services"][name]["runtime"].as<std::string>() == "runsc");
    CHECK(doc["services"][name]["networks"].size() == 1);
  }
}

TEST_CASE("k8s: RuntimeClass gvisor, NetworkPolicies to egress only, and a Kata/Firecracker variant", "[sandbox]") {
  RenderOptions o;
  const auto files = render_k8s(o);
  REQUIRE(files.size() == 4);
  const auto rc = YAML::Load(files[0].text);
  CHECK(rc["kind"].as<std::string>() == "RuntimeClass");
  CHECK(rc["metadata"]["name"].as<std::string>() == "gvisor");
  CHECK(rc["handler"].as<std::string>() == "runsc");
  const auto kata = YAML::Load(files[2].text);
  CHECK(kata["metadata"]["name"].as<std::string>() == "kata-fc");
  CHECK(kata["handler"].as<std::string>() == "kata-fc");

  const auto docs = YAML::LoadAll(files[1].text);
  REQUIRE(docs.size() == 3);
  const auto worker = docs[1];
  CHECK(worker["spec"]["podSelector"]["matchLabels"]["app"].as<std::string>() == "worker");
  CHECK(worker["spec"]["ingress"].size() == 0);
  REQUIRE(worker["spec"]["egress"].size() == 1);
  const auto to = worker["spec"]["egress"][0];
  CHECK(to["to"][0]["podSelector"]["matchLabels"]["app"].as<std::string>() == "egress");
  CHECK(to["ports"][0]["port"].as<int>() == 3128);
  const auto proxy = docs[2];
  CHECK(proxy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app"].as<std::string>() == "worker");
  const auto internet = proxy["spec"]["egress"][1]["to"][0]["ipBlock"];
  CHECK(internet["cidr"].as<std::string>() == "0.0.0.0/0");
  CHECK(has_item(internet["except"], "169.254.169.254/32"));
  CHECK(has_item(internet["except"], "10.0.0.0/8"));

  o.mode = egress::policy::Mode::Production;
  const auto prod = YAML::LoadAll(render_k8s(o)[1].text);
  CHECK(!prod[2]["spec"]["egress"][1]["to"][0]["ipBlock"]);
  CHECK(prod[2]["spec"]["egress"][1]["to"][0]["namespaceSelector"]);
}

TEST_CASE("the seccomp profile denies by default, allows what python3 and curl need, not mount or ptrace", "[sandbox]") {
  const auto profile = json::parse(render_seccomp({})).as_object();
  CHECK(profile.at("defaultAction").as_string() == "SCMP_ACT_ERRNO");
  const auto& rules = profile.at("syscalls").as_array();
  REQUIRE(rules.size() == 2);
  std::vector<std::string> allowed;
  for (const auto& n : rules[0].at("names").as_array()) allowed.emplace_back(n.as_string());
  CHECK(rules[0].at("action").as_string() == "SCMP_ACT_ALLOW");
  for (const char* needed : {"openat", "newfstatat", "futex", "getrandom", "exit_group", "execve", "connect", "rseq"})
    CHECK(std::count(allowed.begin(), allowed.end(), needed) == 1);
  for (const char* forbidden : {"mount", "ptrace", "unshare", "setns", "bpf", "kexec_load", "init_module", "keyctl"})
    CHECK(std::count(allowed.begin(), allowed.end(), forbidden) == 0);
  CHECK(rules[1].at("names").as_array()[0].as_string() == "clone3");
  CHECK(rules[1].at("errnoRet").as_int64() == 38);  // ENOSYS: glibc falls back to clone
}

TEST_CASE("the AppArmor profile is one balanced profile that denies mounts and raw sockets", "[sandbox]") {
  const auto text = render_apparmor({});
  CHECK(std::count(text.begin(), text.end(), '{') == std::count(text.begin(), text.end(), '}'));
  CHECK(text.find("profile egress-worker flags=(attach_disconnected,mediate_deleted) {") != std::string::npos);
  for (const char* rule : {"deny mount,", "deny network raw,", "deny /etc/shadow r,", "deny ptrace,"})
    CHECK(text.find(rule) != std::string::npos);
}

TEST_CASE("daemon.json: runtimes.runsc is merged in, every other key kept in place", "[sandbox]") {
  RenderOptions o;
  o.runsc_args = {"--network=host"};
  const std::string existing = R"({"log-driver": "journald", "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}},
                                  "default-runtime": "runc", "features": {"buildkit": true}})";
  const auto merged = json::parse(merge_daemon_json(existing, o)).as_object();
  CHECK(merged.at("log-driver").as_string() == "journald");
  CHECK(merged.at("default-runtime").as_string() == "runc");
  CHECK(merged.at("features").at("buildkit").as_bool());
  CHECK(merged.at("runtimes").at("nvidia").at("path").as_string() == "nvidia-container-runtime");
  CHECK(merged.at("runtimes").at("runsc").at("path").as_string() == "/usr/bin/runsc");
  CHECK(merged.at("runtimes").at("runsc").at("runtimeArgs").as_array()[0].as_string() == "--network=host");
  std::vector<std::string> keys;
  for (const auto& kv : merged) keys.emplace_back(kv.key());
  CHECK(keys == std::vector<std::string>{"log-driver", "runtimes", "default-runtime", "features"});

  CHECK(json::parse(merge_daemon_json("", o)).as_object().at("runtimes").as_object().contains("runsc"));
  CHECK_THROWS_AS(merge_daemon_json("{\"a\": ", o), InvalidJson);
  CHECK_THROWS_AS(merge_daemon_json("[1, 2]", o), InvalidJson);
  CHECK_THROWS_AS(merge_daemon_json(R"({"runtimes": "runc"})", o), InvalidJson);
}

TEST_CASE("daemon.json in place: atomic, with a backup; invalid JSON leaves the file untouched", "[sandbox]") {
  TempDir dir;
  const auto path = dir.path / "daemon.json";
  const std::string old = "{\"debug\": true}\n";
  std::ofstream(path) << old;
  const auto written = render_to_directory(Target::DockerDaemon, {}, dir.path.string());
  REQUIRE(written == std::vector<std::string>{path.string()});
  CHECK(slurp(dir.path / "daemon.json.bak") == old);
  const auto merged = json::parse(slurp(path)).as_object();
  CHECK(merged.at("debug").as_bool());
  CHECK(merged.at("runtimes").as_object().contains("runsc"));
  CHECK((fs::status(path).permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read));

  const std::string broken = "{ \"debug\": tru";
  std::ofstream(path, std::ios::trunc) << broken;
  fs::remove(dir.path / "daemon.json.bak");
  CHECK_THROWS_AS(render_to_directory(Target::DockerDaemon, {}, dir.path.string()), InvalidJson);
  CHECK(slurp(path) == broken);
  CHECK(!fs::exists(dir.path / "daemon.json.bak"));
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path)) ++entries;
  CHECK(entries == 1);  // no temp file left
}

TEST_CASE("every target renders into --out", "[sandbox]") {
  TempDir dir;
  CHECK(render_to_directory(Target::Compose, {}, dir.path.string()).size() == 1);
  CHECK(render_to_directory(Target::K8s, {}, dir.path.string()).size() == 4);
  CHECK(render_to_directory(Target::Seccomp, {}, dir.path.string()).size() == 1);
  CHECK(render_to_directory(Target::AppArmor, {}, dir.path.string()).size() == 1);
  CHECK(fs::exists(dir.path / "docker-compose.sandbox.yml"));
  CHECK(fs::exists(dir.path / "networkpolicies.yaml"));
  CHECK(fs::exists(dir.path / "egress-deployment.yaml"));
  CHECK(fs::exists(dir.path / "seccomp-worker.json"));
  CHECK(fs::exists(dir.path / "egress-worker"));
}

TEST_CASE("targets and modes parse; anything else names the valid values", "[sandbox]") {
  CHECK(parse_target("k8s") == Target::K8s);
  CHECK(parse_target("docker-daemon") == Target::DockerDaemon);
  CHECK_THROWS_WITH(parse_target("helm"), Catch::Contains("compose, docker-daemon, k8s, seccomp or apparmor"));
  CHECK(parse_mode("developer") == egress::policy::Mode::Developer);
  CHECK_THROWS_WITH(parse_mode("prod"), Catch::Contains("production, self-hosted or developer"));
}

TEST_CASE("k8s: the egress Deployment replicates to PostgreSQL, DSN from a Secret, pod name as replica", "[sandbox]") {
  RenderOptions o;
  o.replicas = 3;
  const auto file = render_k8s_deployment(o);
  CHECK(file.name == "egress-deployment.yaml");
  const auto docs = YAML::LoadAll(file.text);
  REQUIRE(docs.size() == 3);
  const auto deploy = docs[0];
  CHECK(deploy["kind"].as<std::string>() == "Deployment");
  CHECK(deploy["spec"]["replicas"].as<int>() == 3);
  const auto pod = deploy["spec"]["template"];
  CHECK(pod["metadata"]["labels"]["app"].as<std::string>() == "egress");
  const auto c = pod["spec"]["containers"][0];
  CHECK(has_item(c["args"], "--audit-replicate-to"));
  CHECK(has_item(c["args"], "$(EGRESS_AUDIT_DSN)"));
  CHECK(has_item(c["args"], "$(POD_NAME)"));
  bool dsn_from_secret = false, pod_name = false;
  for (const auto& env : c["env"]) {
    const auto name = env["name"].as<std::string>();
    if (name == "EGRESS_AUDIT_DSN") {
      dsn_from_secret = env["valueFrom"]["secretKeyRef"]["name"].as<std::string>() == "egress-audit-db";
    }
    if (name == "POD_NAME") pod_name = env["valueFrom"]["fieldRef"]["fieldPath"].as<std::string>() == "metadata.name";
  }
  CHECK(dsn_from_secret);
  CHECK(pod_name);
  CHECK(docs[1]["kind"].as<std::string>() == "Service");
  CHECK(docs[2]["kind"].as<std::string>() == "NetworkPolicy");
  CHECK(docs[2]["spec"]["egress"][0]["ports"][0]["port"].as<int>() == 5432);
}

TEST_CASE("k8s: the credentials Secret is mounted into egress's pods, read-only, and egress reads it", "[sandbox]") {
  const auto deploy = YAML::LoadAll(render_k8s_deployment({}).text)[0];
  const auto pod = deploy["spec"]["template"]["spec"];
  const auto c = pod["containers"][0];
  CHECK(has_item(c["args"], "--secrets-dir"));
  CHECK(has_item(c["args"], "/etc/egress/secrets"));
  bool mounted = false;
  for (const auto& m : c["volumeMounts"])
    if (m["name"].as<std::string>() == "credentials")
      mounted = m["mountPath"].as<std::string>() == "/etc/egress/secrets" && m["readOnly"].as<bool>();
  CHECK(mounted);
  bool volume = false;
  for (const auto& v : pod["volumes"])
    if (v["name"].as<std::string>() == "credentials")
      volume = v["secret"]["secretName"].as<std::string>() == "egress-secrets" && v["secret"]["defaultMode"].as<std::string>() == "0440";
  CHECK(volume);
}

TEST_CASE("compose: the secrets go to egress only; no worker gets them or a volume of them", "[sandbox]") {
  for (auto mode : {egress::policy::Mode::Production, egress::policy::Mode::SelfHosted, egress::policy::Mode::Developer}) {
    RenderOptions o;
    o.mode = mode;
    o.worker_services = {"worker", "comfyui"};
    const auto doc = YAML::Load(render_compose_override(o));
    for (const auto& service : doc["services"]) {
      const auto name = service.first.as<std::string>();
      CAPTURE(name);
      if (name == "egress") {
        CHECK(has_item(service.second["secrets"], "egress-secrets"));
        CHECK(has_item(service.second["command"], "/run/secrets/egress-secrets"));
        continue;
      }
      CHECK(!service.second["secrets"]);
      for (const auto& volume : service.second["volumes"]) CHECK(volume.as<std::string>().find("secrets") == std::string::npos);
    }
    CHECK(doc["secrets"]["egress-secrets"]["file"].as<std::string>() == "./secrets");
  }
}
