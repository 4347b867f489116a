#include "proxy/audit_events.h"

#include <spdlog/spdlog.h>

#include "egress/admin/metrics.h"

namespace egress::proxy {

void record_close(Worker& worker, const Attempt& attempt, const Attempt::Outcome& outcome) {
  auto event = attempt.close_event(outcome);
  admin::metrics().count_request(event, attempt.refusal_reason());
  worker.shared.audit.record(std::move(event));
  spdlog::info("{}", attempt.log_line(outcome, worker.shared.config.log_format));
}

}  // namespace egress::proxy
