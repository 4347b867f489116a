// One worker attempt (an HTTP request, a CONNECT tunnel, or a request inside
// an inspected tunnel) as the audit log and the canonical log line see it.
// The session fills it in as it learns things (who, what), and moves it one
// way through its states:
//
//   open ──decide(allow)──▶ decided ──commit()──▶ committed ──▶ finish()
//     │  ──decide(deny)/refuse()──▶ refused (decision recorded) ──▶ finish()
//     └─ fail() may follow any state but finish: the decision stays as made.
//
// The decision event is recorded at most once: a refusal at once (queued:
// nothing goes upstream), an allowing decision by commit(), durably, before
// anything goes upstream (invariant 2). finish() records the close event
// (with the metrics and the canonical log line) exactly once, and the
// decision too if the attempt ended before it was recorded, so every
// request id has one decision and one close. Debug builds assert both.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "egress/admin/metrics.h"
#include "egress/audit/event.h"
#include "egress/audit/store.h"
#include "egress/config/config.h"
#include "egress/policy/policy.h"

namespace egress::proxy {

struct RequestTarget;

inline constexpr std::size_t kRequestIdLength = 24;

/// A fresh, unique request id: 24 lower-case hex characters, the creation
/// time in milliseconds (11) and then 52 random bits (13), so ids sort by
/// time and ids from several replicas can share one log.
std::string new_request_id();

/// Where an attempt's events go.
struct AttemptSink {
  audit::AuditStore& audit;
  config::LogFormat log_format = config::LogFormat::Text;
  admin::Metrics& metrics = admin::metrics();
};

class Attempt {
 public:
  Attempt(AttemptSink sink, std::string client_addr, policy::Mode mode);
  // Moved, never copied: a copy could record the same attempt twice.
  Attempt(Attempt&&) = default;
  Attempt(const Attempt&) = delete;
  Attempt& operator=(const Attempt&) = delete;

  void set_role(std::string role) { event_.role = std::move(role); }
  void set_kind(policy::RequestKind kind) { event_.kind = std::string(policy::to_string(kind)); }
  void set_method(std::string method) { event_.method = std::move(method); }
  /// Records the raw host when the target could not be parsed.
  void set_raw_target(std::string host) { event_.host = std::move(host); }
  void set_target(const RequestTarget& target);

  /// The decision. A deny is recorded at once; an allow waits for commit().
  /// An allow not yet committed may still be replaced by a deny (a CONNECT
  /// whose ClientHello then fails the SNI check).
  void decide(const policy::Decision& decision);
  /// A refusal before any decision (bad request, header too large, unknown
  /// token): recorded at once as a deny with this reason.
  void refuse(policy::Reason reason, std::string detail);
  /// Records the allowing decision and waits until it is durable; false
  /// when the audit log cannot write it (the attempt then fails with
  /// audit-unavailable: nothing may go upstream).
  boost::asio::awaitable<bool> commit();
  /// A failure after the decision (upstream unreachable, audit unavailable):
  /// the decision stays as made; the refusal shows this reason and the
  /// close event's error starts with its code.
  void fail(policy::Reason reason, std::string detail);
  void set_upstream(std::string addr) { event_.upstream_addr = std::move(addr); }
  void set_sni(std::string sni) { event_.sni = std::move(sni); }
  /// The ALPN protocols the ClientHello offered, in order.
  void set_alpn(const std::vector<std::string>& protocols);
  /// The secrets egress adds to this request ("a,b": names only), recorded
  /// with the decision, before anything goes upstream.
  void set_injected(std::string names) { event_.injected = std::move(names); }
  /// The policy's deny_message for this worker, shown in a policy refusal.
  void set_deny_message(std::string text) { deny_message_ = std::move(text); }
  const std::string& deny_message() const { return deny_message_; }

  const std::string& request_id() const { return event_.request_id; }
  const std::string& host() const { return event_.host; }
  const std::string& role() const { return event_.role; }
  const std::string& mode() const { return event_.mode; }
  /// The reason a worker is shown: the decision's, or the later failure's.
  policy::Reason refusal_reason() const { return refusal_reason_; }
  const std::string& detail() const { return detail_; }
  /// For the close event: "code: detail" after a failure, else the detail.
  std::string error_text() const;

  struct Outcome {
    int status = 0;
    std::uint64_t bytes_up = 0;    // bytes written to the upstream
    std::uint64_t bytes_down = 0;  // bytes written to the worker
    std::string error;             // "" when nothing went wrong
    std::uint64_t scrubbed = 0;    // injected secrets replaced in what went to the worker
  };
  /// The attempt is over: records its close event, counts it in the
  /// metrics and writes the canonical log line. Exactly once.
  void finish(const Outcome& outcome);
  bool finished() const { return finished_; }

  /// The events as they are recorded (pure; for the tests).
  audit::Event decision_event() const;
  audit::Event close_event(const Outcome& outcome) const;

  /// The one canonical log line for this attempt (logged when it closes),
  /// with the audit table's field names: `key=value` pairs (text), or the
  /// fields of a JSON object without its braces (json; the logger adds
  /// ts and level around them).
  std::string log_line(const Outcome& outcome, config::LogFormat format) const;

 private:
  /// Queues the decision event; at most once.
  void record_decision();

  AttemptSink sink_;
  audit::Event event_;
  std::string detail_;
  std::string deny_message_;
  policy::Reason refusal_reason_ = policy::Reason::NotAllowed;
  bool failed_ = false;
  bool decision_recorded_ = false;
  bool finished_ = false;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace egress::proxy
