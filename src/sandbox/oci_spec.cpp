// OCI config.json for a worker, built with Boost.JSON rather than by editing
// what `runsc spec` writes: every field is ours and unit-tested. The base
// mounts (/proc, a tmpfs /dev that runsc fills, read-only /sys) are those
// `runsc spec` produces.
#include <boost/json.hpp>

#include <stdexcept>

#include "egress/sandbox/oci.h"

namespace egress::sandbox {

std::string render_oci_spec(const WorkerSpec& spec) {
  namespace json = boost::json;
  if (spec.args.empty()) throw std::invalid_argument("no command given for the sandbox");

  json::array env{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp",
                  "EGRESS_SANDBOX=1"};
  if (!spec.proxy_url.empty()) {
    // Both cases: curl ignores upper-case HTTP_PROXY for http:// URLs and
    // would go direct (and fail) without the lower-case twin. No NO_PROXY.
    for (const char* name : {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"})
      env.emplace_back(std::string(name) + "=" + spec.proxy_url);
  }
  for (const auto& e : spec.env) env.emplace_back(e);

  json::array args;
  for (const auto& a : spec.args) args.emplace_back(a);
  const json::array no_caps;
  json::object process{
      {"terminal", false},
      {"user", {{"uid", spec.uid}, {"gid", spec.gid}}},
      {"args", std::move(args)},
      {"env", std::move(env)},
      {"cwd", "/tmp"},
      {"capabilities",
       {{"bounding", no_caps}, {"effective", no_caps}, {"inheritable", no_caps}, {"permitted", no_caps},
        {"ambient", no_caps}}},
      {"noNewPrivileges", true},
      {"rlimits", json::array{json::object{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}}},
  };

  json::array mounts{
      json::object{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
      json::object{{"destination", "/dev"}, {"type", "tmpfs"}, {"source", "tmpfs"}},
      json::object{{"destination", "/sys"},
                   {"type", "sysfs"},
                   {"source", "sysfs"},
                   {"options", json::array{"nosuid", "noexec", "nodev", "ro"}}},
      json::object{{"destination", "/tmp"},
                   {"type", "tmpfs"},
                   {"source", "tmpfs"},
                   {"options", json::array{"nosuid", "nodev", "mode=1777", "size=" + spec.tmp_size}}},
  };
  for (const auto& b : spec.read_only_binds)
    mounts.emplace_back(json::object{{"destination", b.destination},
                                     {"type", "bind"},
                                     {"source", b.source},
                                     {"options", json::array{"rbind", "ro", "nosuid", "nodev"}}});
  for (const auto& dir : spec.hidden_dirs)
    mounts.emplace_back(json::object{{"destination", dir},
                                     {"type", "tmpfs"},
                                     {"source", "tmpfs"},
                                     {"options", json::array{"ro", "nosuid", "nodev", "noexec", "size=4k", "mode=0555"}}});

  json::array namespaces{json::object{{"type", "pid"}}, json::object{{"type", "ipc"}}, json::object{{"type", "uts"}},
                         json::object{{"type", "mount"}}};
  // With --network=host, a network entry *with* a path makes runsc join
  // that namespace; one without a path would give an empty namespace.
  if (!spec.netns_path.empty()) namespaces.emplace_back(json::object{{"type", "network"}, {"path", spec.netns_path}});

  json::object linux{{"namespaces", std::move(namespaces)}};
  if (!spec.cgroups_path.empty()) {
    linux["cgroupsPath"] = spec.cgroups_path;
    json::object resources;
    if (spec.memory_bytes) resources["memory"] = {{"limit", *spec.memory_bytes}};
    if (spec.pids_limit) resources["pids"] = {{"limit", *spec.pids_limit}};
    linux["resources"] = std::move(resources);
  }
  if (!spec.seccomp_profile_json.empty()) {
    std::error_code ec;
    auto profile = json::parse(spec.seccomp_profile_json, ec);
    if (ec || !profile.is_object()) throw std::invalid_argument("seccomp profile is not a JSON object");
    linux["seccomp"] = std::move(profile);
  }

  json::object root{
      {"ociVersion", "1.0.0"},
      {"process", std::move(process)},
      {"root", {{"path", spec.rootfs}, {"readonly", true}}},
      {"hostname", spec.hostname},
      {"mounts", std::move(mounts)},
      {"linux", std::move(linux)},
  };
  return json::serialize(root);
}

}  // namespace egress::sandbox
