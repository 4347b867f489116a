// The console's pages, styles and scripts, compiled in from
// src/console/assets/ (CMakeLists.txt writes assets.cpp from them), so the
// binary serves them without a file tree and nothing is fetched at build.
#pragma once

#include <string_view>

namespace egress::console {

struct Asset {
  std::string_view name;          // file name, e.g. "live.js"
  std::string_view content_type;  // from the extension
  std::string_view body;
};

/// The asset named `name`, or nullptr.
const Asset* find_asset(std::string_view name);

}  // namespace egress::console
