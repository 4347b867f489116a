// See verify_evidence.h.
#include "sandbox/verify_evidence.h"

#include <sqlite3.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "egress/sandbox/sandbox.h"
#include "sandbox/network.h"

namespace egress::sandbox {
namespace fs = std::filesystem;

std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Line audit_line(const std::string& db_path, const std::string& role) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return {"FAIL", "cannot open the audit database " + db_path};
  }
  sqlite3_stmt* st = nullptr;
  const char* sql = "SELECT coalesce(role,''), coalesce(host,''), coalesce(decision,'') FROM events WHERE event='decision'";
  int rows = 0, with_role = 0;
  bool allow_seen = false, deny_seen = false;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW) {
      const std::string r = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      const std::string host = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
      const std::string decision = reinterpret_cast<const char*>(sqlite3_column_text(st, 2));
      ++rows;
      with_role += r == role;
      allow_seen = allow_seen || (host.starts_with("allowed.") && decision == "allow");
      deny_seen = deny_seen || (host.starts_with("denied.") && decision == "deny");
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  const bool ok = rows >= 2 && with_role == rows && allow_seen && deny_seen;
  return {ok ? "PASS" : "FAIL", std::to_string(rows) + " decision events in the audit log, " + std::to_string(with_role) +
                                    " with role '" + role + "'; allow " + (allow_seen ? "seen" : "MISSING") + ", deny " +
                                    (deny_seen ? "seen" : "MISSING")};
}

Line docker_line() {
  const std::string path = "/etc/docker/daemon.json";
  if (!fs::exists(path)) return {"SKIP", "no Docker daemon config here (" + path + " absent); `egress sandbox render --target docker-daemon` writes one"};
  std::error_code ec;
  auto v = boost::json::parse(read_text_file(path), ec);
  if (ec || !v.is_object()) return {"FAIL", path + " is not a JSON object"};
  const auto* runtimes = v.as_object().if_contains("runtimes");
  const bool ok = runtimes && runtimes->is_object() && runtimes->as_object().contains("runsc");
  return {ok ? "PASS" : "FAIL", ok ? path + " has runtimes.runsc" : path + " lacks runtimes.runsc; run `egress sandbox render --target docker-daemon --out /etc/docker`"};
}

Line leftovers_line(const std::string& id) {
  std::vector<std::string> left;
  if (link_exists(kHostLinkPrefix + id)) left.push_back("veth " + std::string(kHostLinkPrefix) + id);
  if (fs::exists(std::string(kRunDir) + "/" + id)) left.push_back("instance dir");
  std::error_code ec;
  for (const auto& c : fs::directory_iterator("/sys/fs/cgroup", ec))
    if (fs::exists(c.path() / (kContainerPrefix + id))) left.push_back("cgroup " + c.path().string());
  Line line{"PASS", "instance " + id + ": no veth, runsc state, cgroup or directory left"};
  if (!left.empty()) {
    line.verdict = "FAIL";
    line.detail = "left behind:";
    for (const auto& x : left) line.detail += " " + x;
  }
  return line;
}

Line host_write_line() {
  Line line{"PASS", "nothing the probe wrote reached the host"};
  for (const char* p : {"/egress-verify-probe", "/usr/egress-verify-probe"})
    if (fs::exists(p)) {
      line = {"FAIL", std::string(p) + " appeared on the host"};
      unlink(p);
    }
  return line;
}

}  // namespace egress::sandbox
