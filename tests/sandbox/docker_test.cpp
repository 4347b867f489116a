// docker/: that the example compose file parses and wires egress and the
// worker as the guide asks, and that the Dockerfile keeps its promises in
// text. tests/integration/test_docker.py runs both on a real engine.
#include <catch2/catch.hpp>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace {

fs::path repo_root() {
  const char* testdata = std::getenv("EGRESS_TESTDATA");  // tests/sandbox/testdata
  return testdata ? fs::path(testdata).parent_path().parent_path().parent_path() : fs::current_path();
}

bool has_item(const YAML::Node& seq, const std::string& value) {
  for (const auto& n : seq)
    if (n.as<std::string>() == value) return true;
  return false;
}

}  // namespace

TEST_CASE("docker-compose.yml: worker on runsc and the internal network only, egress on both", "[sandbox]") {
  const auto doc = YAML::LoadFile((repo_root() / "docker" / "docker-compose.yml").string());
  const auto worker = doc["services"]["worker"];
  CHECK(worker["runtime"].as<std::string>() == "runsc");
  CHECK(worker["read_only"].as<bool>());
  CHECK(worker["user"].as<std::string>() == "65534:65534");
  CHECK(has_item(worker["cap_drop"], "ALL"));
  CHECK(has_item(worker["security_opt"], "no-new-privileges:true"));
  CHECK(worker["networks"].size() == 1);
  CHECK(has_item(worker["networks"], "sandbox"));
  for (const char* var : {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"})
    CHECK(worker["environment"][var].as<std::string>() == "http://egress:3128");
  CHECK(has_item(worker["dns"], "127.0.0.1"));  // CVE-2024-29018 guard on engines before 26

  const auto egress = doc["services"]["egress"];
  CHECK(egress["read_only"].as<bool>());
  CHECK(egress["user"].as<std::string>() != "0");
  CHECK(has_item(egress["networks"], "sandbox"));
  CHECK(has_item(egress["networks"], "egress"));
  int read_only_mounts = 0;
  bool audit_volume = false;
  for (const auto& v : egress["volumes"]) {
    const auto text = v.as<std::string>();
    if (text.ends_with(":ro")) ++read_only_mounts;
    if (text.starts_with("egress-audit:/var/lib/egress")) audit_volume = true;
  }
  CHECK(read_only_mounts == 2);  // policies and CA
  CHECK(audit_volume);
  CHECK(doc["volumes"]["egress-audit"]);
  CHECK(doc["networks"]["sandbox"]["internal"].as<bool>());
}

TEST_CASE("the Dockerfile is multi-stage on Debian 12, uses the installer and runs as non-root", "[sandbox]") {
  std::ifstream in(repo_root() / "docker" / "Dockerfile");
  std::stringstream s;
  s << in.rdbuf();
  const auto text = s.str();
  CHECK(text.find("FROM debian:12-slim AS build") != std::string::npos);
  CHECK(text.find("COPY --from=build") != std::string::npos);
  CHECK(text.find("scripts/install-deps.sh\n") != std::string::npos);
  CHECK(text.find("install-deps.sh --runtime") != std::string::npos);
  CHECK(text.find("USER 10001:10001") != std::string::npos);
  CHECK(text.find("VOLUME /var/lib/egress") != std::string::npos);
}
