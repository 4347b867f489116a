// The web console (docs/console.md): a read-only view of the audit log and
// the policy in force, for security teams and admins, served by egress on
// its own listener (serve --console-listen), thread and io_context like the
// admin listener, so neither a busy proxy nor a busy page delays the other.
//
// Everything it shows came from untrusted workers, so: every page but the
// login form needs a session (or a bearer secret); pages are static,
// embedded HTML/CSS/JS that fetch JSON and render it as text; every
// response carries a strict Content-Security-Policy (no inline script or
// style) and anti-framing headers; nothing it serves changes state except
// the login and logout POSTs, which check the request's origin.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "egress/console/hub.h"
#include "egress/policy/policy.h"

namespace egress::console {

/// The policy in force and how its loads went, for the Health page and the
/// rule suggestions. serve records every load through it.
struct PolicyStatus {
  policy::PolicySnapshot policy;  // the one in force; null before the first load
  std::string file;               // "" for the embedded default
  std::string text;               // the file's text as last loaded
  std::string hash;               // "sha256:<hex>" of that text
  std::string last_load;          // UTC time of the latest attempt
  std::string last_result;        // "loaded" or the first line of the error
  std::uint64_t loads = 0, failures = 0;
};

class PolicyTracker {
 public:
  explicit PolicyTracker(std::string file) { status_.file = std::move(file); }
  /// A load that succeeded: reads the file again for its text and hash.
  void loaded(policy::PolicySnapshot policy);
  void failed(const std::string& error);
  PolicyStatus status() const;

 private:
  mutable std::mutex mu_;
  PolicyStatus status_;
};

struct ConsoleOptions {
  std::string listen;                      // "HOST:PORT", HOST an IP address; port 0 picks one
  std::vector<std::string> secret_hashes;  // "sha256:<hex>"
  bool secure_cookie = false;
  std::chrono::milliseconds session_ttl{8 * 3600 * 1000};
  std::string audit_db;                    // read-only, for summaries and details
  const PolicyTracker* policy = nullptr;   // must outlive the server
  std::function<std::string()> metrics;    // Prometheus text (admin::Metrics::render)
};

class ConsoleServer {
 public:
  /// Binds and starts serving on a new thread. Throws std::runtime_error
  /// naming the address when it cannot listen, or when no secret hash is
  /// configured (a console nobody can log in to is a mistake).
  ConsoleServer(ConsoleOptions options, EventHub& hub);
  ~ConsoleServer();
  ConsoleServer(const ConsoleServer&) = delete;
  ConsoleServer& operator=(const ConsoleServer&) = delete;

  const std::string& address() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace egress::console
