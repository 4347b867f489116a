// `egress serve`'s flags, and the configuration they make: the file's
// (serve --config) with the flags on top, checked as a whole. Pure but for
// reading the configuration file.
#pragma once

#include <cstdint>
#include <string>

#include "egress/config/config.h"

namespace egress::cli {

struct ServeFlags {
  std::string config_file, mode, policy_file, listen, admin_listen, console_listen, audit_db, audit_stream, secrets_dir,
      retention, log_level,
      log_format;
  std::string ca_cert, ca_key, upstream_ca;
  std::string stream_format, replicate_to, replica, password_file;
  std::int64_t max_backlog = -1;  // -1: not given
  unsigned threads = 0;
};

/// The configuration file (if any) with the flags on top. Throws
/// config::ConfigError saying which flag or key is wrong and what it expects.
config::ServeConfig effective_config(const ServeFlags& flags);

}  // namespace egress::cli
