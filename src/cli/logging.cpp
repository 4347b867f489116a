#include "cli/logging.h"

#include <memory>
#include <string>

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "egress/audit/event.h"

namespace egress::cli {
namespace {

// One JSON object per line. A message that starts with `"request_id":` is
// the request line's JSON fields (Attempt::log_line) and goes in as it is;
// anything else is a person's sentence and becomes "msg".
class JsonLineFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string_view text(msg.payload.data(), msg.payload.size());
    std::string line = "{\"ts\":\"";
    line += audit::format_timestamp(std::chrono::time_point_cast<std::chrono::system_clock::duration>(msg.time));
    line += "\",\"level\":\"";
    const auto level = spdlog::level::to_string_view(msg.level);
    line.append(level.data(), level.size());
    line += "\",";
    if (text.starts_with("\"request_id\":")) {
      line += text;
    } else {
      line += "\"msg\":";
      line += boost::json::serialize(boost::json::string(audit::valid_utf8(std::string(text))));
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonLineFormatter>(); }
};

}  // namespace

void setup_logging(const config::ServeConfig& config) {
  auto logger = spdlog::stderr_color_mt("egress");
  if (config.log_format == config::LogFormat::Json) logger->set_formatter(std::make_unique<JsonLineFormatter>());
  spdlog::set_default_logger(std::move(logger));
  spdlog::set_level(spdlog::level::from_str(config.log_level));
}

}  // namespace egress::cli
