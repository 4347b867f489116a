#include "proxy/audit_events.h"

#include <spdlog/spdlog.h>

#include "egress/admin/metrics.h"

namespace egress::proxy {

void record_close(Worker& worker, const Attempt& attempt, const Attempt::Outcome& outcome) {
  auto event = attempt.close_event(outcome);
  admin::metrics().count_request(event, attempt.refusal_reason());
  worker.shared.audit.record(std::move(event));
  // Built only when it will be written: at log_level warn the line is work for nothing.
  if (spdlog::should_log(spdlog::level::info)) {
    spdlog::info("{}", attempt.log_line(outcome, worker.shared.config.log_format));
  }
}

}  // namespace egress::proxy
