// The path a request is decided on and the origin-form sent upstream, from a
// parsed URL: one rule for plain HTTP (evaluate.cpp) and inspected HTTPS
// (inspect.cpp), so both log, match and forward the same thing.
#pragma once

#include <string>

#include <boost/url/url_view.hpp>

#include "egress/proxy/evaluate.h"

namespace egress::proxy {

/// Sets target.path ("/" when the URL has none) and target.origin_form
/// (path plus "?query"; the fragment never leaves the worker).
inline void set_path_and_origin_form(RequestTarget& target, boost::urls::url_view url) {
  target.path = url.encoded_path().empty() ? "/" : std::string(url.encoded_path());
  target.origin_form = target.path;
  if (url.has_query()) target.origin_form += "?" + std::string(url.encoded_query());
}

}  // namespace egress::proxy
