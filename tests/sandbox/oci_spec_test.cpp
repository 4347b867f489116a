// The worker's OCI spec and the launcher's small parsers.
#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include "egress/sandbox/oci.h"
#include "egress/sandbox/render.h"
#include "egress/sandbox/sandbox.h"
#include "sandbox/network.h"

using namespace egress::sandbox;
namespace json = boost::json;

namespace {

WorkerSpec sample() {
  WorkerSpec s;
  s.args = {"python3", "job.py"};
  s.proxy_url = "http://10.213.255.1:3128";
  s.netns_path = "/proc/42/ns/net";
  s.cgroups_path = "/egress-sbx-0123abcd";
  s.memory_bytes = 512ull << 20;
  s.pids_limit = 128;
  s.read_only_binds = {{"/run/egress-sandbox/x/resolv.conf", "/etc/resolv.conf"}};
  return s;
}

bool has(const json::array& a, std::string_view v) {
  for (const auto& x : a)
    if (x.is_string() && x.as_string() == v) return true;
  return false;
}

}  // namespace

TEST_CASE("the worker spec: uid 65534, no capabilities, no new privileges, read-only root", "[sandbox]") {
  const auto spec = json::parse(render_oci_spec(sample())).as_object();
  const auto& process = spec.at("process").as_object();
  CHECK(process.at("user").at("uid").as_int64() == 65534);
  CHECK(process.at("user").at("gid").as_int64() == 65534);
  CHECK(process.at("noNewPrivileges").as_bool());
  for (const char* set : {"bounding", "effective", "inheritable", "permitted", "ambient"})
    CHECK(process.at("capabilities").at(set).as_array().empty());
  CHECK(spec.at("root").at("readonly").as_bool());
  CHECK(spec.at("root").at("path").as_string() == "/");
  const auto& env = process.at("env").as_array();
  for (const char* var : {"HTTP_PROXY=", "HTTPS_PROXY=", "http_proxy=", "https_proxy="})
    CHECK(has(env, std::string(var) + "http://10.213.255.1:3128"));
  for (const auto& e : env) CHECK(std::string_view(e.as_string()).find("NO_PROXY") == std::string_view::npos);
}

TEST_CASE("the worker spec: a hidden directory (egress's secrets) is covered by an empty read-only tmpfs", "[sandbox]") {
  auto s = sample();
  s.hidden_dirs = {"/etc/egress/secrets"};
  int covered = 0;
  const auto hidden = json::parse(render_oci_spec(s));
  for (const auto& m : hidden.at("mounts").as_array()) {
    const auto& o = m.as_object();
    if (o.at("destination").as_string() != "/etc/egress/secrets") continue;
    ++covered;
    CHECK(o.at("type").as_string() == "tmpfs");
    CHECK(has(o.at("options").as_array(), "ro"));
  }
  CHECK(covered == 1);
  const auto plain = json::parse(render_oci_spec(sample()));
  for (const auto& m : plain.at("mounts").as_array()) CHECK(m.at("destination").as_string() != "/etc/egress/secrets");
}

TEST_CASE("the worker spec: tmpfs /tmp, read-only binds, its network namespace, cgroup limits", "[sandbox]") {
  const auto spec = json::parse(render_oci_spec(sample())).as_object();
  bool tmp = false, resolv = false;
  for (const auto& m : spec.at("mounts").as_array()) {
    const auto& o = m.as_object();
    if (o.at("destination").as_string() == "/tmp") {
      tmp = o.at("type").as_string() == "tmpfs" && has(o.at("options").as_array(), "nosuid") &&
            has(o.at("options").as_array(), "nodev");
    }
    if (o.at("destination").as_string() == "/etc/resolv.conf") resolv = has(o.at("options").as_array(), "ro");
  }
  CHECK(tmp);
  CHECK(resolv);
  const auto& linux = spec.at("linux").as_object();
  bool netns = false;
  for (const auto& n : linux.at("namespaces").as_array())
    if (n.at("type").as_string() == "network") netns = n.at("path").as_string() == "/proc/42/ns/net";
  CHECK(netns);
  CHECK(linux.at("cgroupsPath").as_string() == "/egress-sbx-0123abcd");
  CHECK(linux.at("resources").at("memory").at("limit").as_int64() == 512ll << 20);
  CHECK(linux.at("resources").at("pids").at("limit").as_int64() == 128);
  CHECK(!linux.contains("seccomp"));
}

TEST_CASE("a seccomp profile goes into linux.seccomp; no command is refused", "[sandbox]") {
  auto s = sample();
  s.seccomp_profile_json = render_seccomp({});
  const auto spec = json::parse(render_oci_spec(s)).as_object();
  CHECK(spec.at("linux").at("seccomp").at("defaultAction").as_string() == "SCMP_ACT_ERRNO");
  s.args.clear();
  CHECK_THROWS(render_oci_spec(s));
}

TEST_CASE("proxy endpoints are IPV4:PORT", "[sandbox]") {
  const auto p = ProxyEndpoint::parse("10.213.255.1:3128");
  REQUIRE(p);
  CHECK(p->to_string() == "10.213.255.1:3128");
  CHECK(p->url() == "http://10.213.255.1:3128");
  for (const char* bad : {"10.213.255.1", "10.213.255.1:0", "10.213.255.1:70000", "host:3128", "[::1]:3128", ":3128"})
    CHECK(!ProxyEndpoint::parse(bad));
}

TEST_CASE("sizes take K, M and G", "[sandbox]") {
  CHECK(parse_size("512M") == 512ull << 20);
  CHECK(parse_size("1G") == 1ull << 30);
  CHECK(parse_size("64k") == 64ull << 10);
  CHECK(parse_size("4096") == 4096u);
  CHECK(!parse_size("12X"));
  CHECK(!parse_size("M"));
  CHECK(!parse_size(""));
}

TEST_CASE("a worker's /30 comes from its role's range", "[sandbox]") {
  // Blocks whose addresses are on a host interface are skipped, so only
  // the shape is fixed: X.1 and X.2 of an aligned /30 inside the range.
  const auto range = *egress::policy::Cidr::parse("198.51.100.0/24");
  const auto a = allocate_subnet(range);
  REQUIRE(a);
  CHECK(range.contains(a->host()));
  CHECK(range.contains(a->worker()));
  CHECK(a->host().bytes[3] % 4 == 1);
  CHECK(a->worker().bytes[3] == a->host().bytes[3] + 1);
  CHECK(!allocate_subnet(*egress::policy::Cidr::parse("198.51.100.0/31")));
  // Never inside a network the host is on: 127.0.0.0/8 is on lo everywhere.
  CHECK(!allocate_subnet(*egress::policy::Cidr::parse("127.1.0.0/28")));
  CHECK(!allocate_subnet(*egress::policy::Cidr::parse("2001:db8::/64")));
}
