// route() (routes.h): the login form and its POST, logout, the page
// shells, the assets and the JSON API. Pages are static; what they show
// comes from /api/… as JSON and is rendered as text by their scripts.
#include "console/routes.h"

#include <spdlog/spdlog.h>

#include <cctype>

#include "console/api.h"
#include "console/assets.h"

namespace egress::console {
namespace {

constexpr std::string_view kCsp =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

template <class Body>
void security_headers(http::response<Body>& r) {
  r.set("Content-Security-Policy", kCsp);
  r.set("X-Content-Type-Options", "nosniff");
  r.set("X-Frame-Options", "DENY");
  r.set("Referrer-Policy", "same-origin");  // no-referrer would make browsers send Origin: null on the login POST
  r.set("Cross-Origin-Opener-Policy", "same-origin");
  r.set("Cross-Origin-Resource-Policy", "same-origin");
  r.set(http::field::cache_control, "no-store");
}

Response make(const Request& req, http::status status, std::string_view type, std::string body) {
  Response r{status, req.version()};
  r.keep_alive(req.keep_alive());
  r.set(http::field::content_type, type);
  add_security_headers(r);
  r.body() = std::move(body);
  r.prepare_payload();
  return r;
}

Response redirect(const Request& req, std::string_view to) {
  auto r = make(req, http::status::see_other, "text/plain; charset=utf-8", "see " + std::string(to) + "\n");
  r.set(http::field::location, to);
  return r;
}

/// The login form with one of a few fixed messages (never request data).
Response login_page(const Request& req, http::status status, std::string_view message) {
  std::string page(find_asset("login.html")->body);
  const std::string_view marker = "<!--message-->";
  if (const auto at = page.find(marker); at != std::string::npos && !message.empty()) {
    page.replace(at, marker.size(), "<p class=\"error\">" + std::string(message) + "</p>");
  }
  auto r = make(req, status, "text/html; charset=utf-8", std::move(page));
  if (status == http::status::unauthorized) r.set(http::field::www_authenticate, "Bearer realm=\"egress console\"");
  return r;
}

/// application/x-www-form-urlencoded: '+' is a space, %XX a byte; a bad
/// escape is kept as written. (Boost.URL 1.81's decoding of a
/// params_encoded_view returned wrong values here now and then, and its
/// params_view(view, opts) constructor is not exported by the library.)
std::string form_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  const auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) &&
               hex(text[i + 2])) {
      out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

Params parse_params(std::string_view query) {
  Params out;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    const auto eq = pair.find('=');
    if (!pair.empty()) {
      out.emplace(form_decode(pair.substr(0, eq)),
                  eq == std::string_view::npos ? std::string() : form_decode(pair.substr(eq + 1)));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

bool secure_request(const State& state, const Request& req) {
  return state.options.secure_cookie || req["X-Forwarded-Proto"] == "https";
}

Response login(State& state, const Request& req, const std::string& source) {
  const auto now = Clock::now();
  if (const auto wait = state.limiter.wait(source, now); wait > Clock::duration::zero()) {
    auto r = login_page(req, http::status::too_many_requests, "Too many failed logins from your address; wait a minute.");
    r.set(http::field::retry_after, std::to_string(std::chrono::duration_cast<std::chrono::seconds>(wait).count() + 1));
    return r;
  }
  const auto form = parse_params(req.body());
  const auto secret = form.find("secret");
  if (secret == form.end() || !secret_matches(secret->second, state.options.secret_hashes)) {
    state.limiter.failed(source, now);
    spdlog::warn("console: failed login from {}", source);
    return login_page(req, http::status::unauthorized, "Wrong password or token.");
  }
  auto r = redirect(req, "/live");
  r.set(http::field::set_cookie, session_cookie(state.sessions.open(now), state.options.session_ttl,
                                                secure_request(state, req)));
  spdlog::info("console: login from {}", source);
  return r;
}

Response api(State& state, const Request& req, std::string_view path, const Params& params) {
  ApiResult result;
  try {
    if (path == "/api/summary") result = api_summary(state.options, params);
    else if (path == "/api/refused") result = api_refused(state.options, params);
    else if (path == "/api/rule") result = api_rule(state.options, params);
    else if (path == "/api/event") result = api_event(state.options, params);
    else if (path == "/api/health") result = api_health(state.options, state.hub, state.sessions.size());
    else result = {404, R"({"error":"no such endpoint"})"};
  } catch (const std::exception& e) {
    spdlog::warn("console: {}: {}", path, e.what());
    result = {500, R"({"error":"the audit log could not be read; see egress's log"})"};
  }
  return make(req, static_cast<http::status>(result.status), "application/json", std::move(result.json));
}

constexpr std::string_view kPages[] = {"/live", "/summary", "/rule", "/health", "/event"};

}  // namespace

void add_security_headers(Response& response) { security_headers(response); }
void add_security_headers(http::response<http::empty_body>& response) { security_headers(response); }

bool authenticated(State& state, const Request& req, const std::string& source) {
  const auto cookie = cookie_value(req[http::field::cookie], kCookieName);
  if (!cookie.empty() && state.sessions.valid(cookie, Clock::now())) return true;
  const auto auth = req[http::field::authorization];
  if (auth.rfind("Bearer ", 0) != 0) return false;
  const auto now = Clock::now();
  if (state.limiter.wait(source, now) > Clock::duration::zero()) return false;
  if (secret_matches(auth.substr(7), state.options.secret_hashes)) return true;
  state.limiter.failed(source, now);
  return false;
}

Response route(State& state, const Request& req, const std::string& source) {
  const std::string_view target = req.target();
  const auto question = target.find('?');
  const auto path = target.substr(0, question);
  const auto query = question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
  const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
  const bool post = req.method() == http::verb::post;
  if (post && (path == "/login" || path == "/logout")) {
    if (!same_origin({req[http::field::host], req[http::field::origin], req["Sec-Fetch-Site"]})) {
      return make(req, http::status::forbidden, "text/plain; charset=utf-8", "cross-site request refused\n");
    }
    if (path == "/login") return login(state, req, source);
    state.sessions.close(cookie_value(req[http::field::cookie], kCookieName));
    auto r = redirect(req, "/login");
    r.set(http::field::set_cookie, session_cookie("", {}, secure_request(state, req)));
    return r;
  }
  if (!get || path == "/logout") {
    auto r = make(req, http::status::method_not_allowed, "text/plain; charset=utf-8", "method not allowed\n");
    r.set(http::field::allow, path == "/logout" ? "POST" : "GET, HEAD");
    return r;
  }
  // The stylesheet is the one thing the login form needs; it holds no data.
  if (path == "/assets/console.css" || path == "/login") {
    if (path == "/login") return login_page(req, http::status::ok, "");
    const auto* css = find_asset("console.css");
    return make(req, http::status::ok, css->content_type, std::string(css->body));
  }
  const bool is_api = path.rfind("/api/", 0) == 0;
  if (!authenticated(state, req, source)) {
    if (is_api) return make(req, http::status::unauthorized, "application/json", R"({"error":"log in first"})");
    return login_page(req, http::status::unauthorized, "");
  }
  if (path == "/") return redirect(req, "/live");
  if (is_api) return api(state, req, path, parse_params(query));
  for (const auto page : kPages) {
    if (path != page) continue;
    const auto* asset = find_asset(std::string(page.substr(1)) + ".html");
    return make(req, http::status::ok, asset->content_type, std::string(asset->body));
  }
  if (path.rfind("/assets/", 0) == 0) {
    if (const auto* asset = find_asset(path.substr(8))) {
      return make(req, http::status::ok, asset->content_type, std::string(asset->body));
    }
  }
  return make(req, http::status::not_found, "text/plain; charset=utf-8", "not found\n");
}

}  // namespace egress::console
