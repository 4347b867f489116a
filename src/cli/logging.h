// serve's logger: spdlog on stderr, as text lines or as one JSON object per
// line (config::LogFormat). The request line (proxy/attempt.h) is already
// key=value pairs or JSON fields; the other messages are plain text.
#pragma once

#include "egress/config/config.h"

namespace egress::cli {

/// Installs the default logger for serve. In JSON, each line is
/// {"ts":"…","level":"…", then the request's fields, or "msg":"…"}.
void setup_logging(const config::ServeConfig& config);

}  // namespace egress::cli
