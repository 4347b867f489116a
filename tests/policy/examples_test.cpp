// The example policies in policies/ load and decide representative targets
// the way the sandboxing guide's modes describe.
#include <catch2/catch.hpp>

#include "egress/policy/policy.h"
#include "testdata.h"

using namespace egress::policy;

namespace {

Decision decide_resolved(const Policy& policy, const char* authority, std::vector<const char*> addresses,
                         std::string_view role = "") {
  auto target = parse_authority(authority).target;
  REQUIRE(target);
  DecideArgs args{*target, RequestKind::Connect, "", "", role};
  Decision decision = policy.decide(args);
  if (!decision.needs_addresses) return decision;
  std::vector<IpAddress> parsed;
  for (const char* text : addresses) parsed.push_back(*IpAddress::parse(text));
  return policy.check_addresses(decision, args, parsed);
}

PolicySnapshot example(const char* name) {
  return load_policy_file(egress::policy::test::policies_dir() + "/" + name);
}

}  // namespace

TEST_CASE("The production example allows only internal services", "[policy]") {
  auto policy = example("production.yaml");
  CHECK(policy->mode() == Mode::Production);
  CHECK(decide_resolved(*policy, "artifacts.internal:443", {"10.20.0.10"}).reason == Reason::InternalRule);
  CHECK(decide_resolved(*policy, "rabbitmq.internal:5672", {"10.20.0.11"}).reason == Reason::InternalRule);
  CHECK(decide_resolved(*policy, "github.com:443", {"140.82.112.3"}).reason == Reason::NotInternal);
  CHECK(decide_resolved(*policy, "169.254.169.254:80", {}).reason == Reason::DenyRule);
}

TEST_CASE("The self-hosted example enforces the guide's allowlist", "[policy]") {
  auto policy = example("self-hosted.yaml");
  CHECK(policy->mode() == Mode::SelfHosted);
  CHECK(decide_resolved(*policy, "github.com:443", {"140.82.112.3"}).verdict == Verdict::Allow);
  CHECK(decide_resolved(*policy, "objects.githubusercontent.com:443", {"185.199.108.133"}).verdict ==
        Verdict::Allow);
  CHECK(decide_resolved(*policy, "huggingface.co:443", {"3.160.0.1"}).verdict == Verdict::Allow);
  CHECK(decide_resolved(*policy, "pypi.org:443", {"151.101.0.223"}).reason == Reason::NotAllowed);
  CHECK(decide_resolved(*policy, "github.com:443", {"127.0.0.1"}).reason == Reason::PrivateAddress);
  CHECK(decide_resolved(*policy, "cdn-lfs.hf.co:443", {"3.160.0.2"}, "comfyui").verdict == Verdict::Allow);
  CHECK(decide_resolved(*policy, "cdn-lfs.hf.co:443", {"3.160.0.2"}).reason == Reason::NotAllowed);
  CHECK(policy->role_for_source(*IpAddress::parse("172.20.1.5")) == "comfyui");
}

TEST_CASE("The developer example allows the internet but not metadata or private addresses", "[policy]") {
  auto policy = example("developer.yaml");
  CHECK(policy->mode() == Mode::Developer);
  CHECK(decide_resolved(*policy, "example.com:8443", {"93.184.216.34"}).reason == Reason::DeveloperMode);
  CHECK(decide_resolved(*policy, "0xa9fea9fe:80", {}).reason == Reason::DenyRule);
  CHECK(decide_resolved(*policy, "sneaky.example:80", {"169.254.169.254"}).reason == Reason::DenyRule);
  CHECK(decide_resolved(*policy, "router.example:80", {"192.168.1.1"}).reason == Reason::PrivateAddress);
  CHECK(decide_resolved(*policy, "[::1]:443", {}).reason == Reason::PrivateAddress);
  CHECK(decide_resolved(*policy, "artifacts.internal:443", {"10.20.0.10"}).reason == Reason::InternalRule);
}
