// The secrets directory (what is refused, and that no refusal quotes a
// value), the injection plan of a decided request (fail closed on a missing
// secret; only_placeholder), and the streaming scrubber at every split.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "egress/secrets/secrets.h"

using namespace egress;
using namespace egress::secrets;

namespace {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/egress-secrets-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void write(const std::string& name, const std::string& value, mode_t mode = 0600) const {
    std::ofstream(path / name) << value;
    ::chmod((path / name).c_str(), mode);
  }
};

policy::Injection injection(const std::string& header, std::vector<policy::Injection::Part> parts,
                            bool only_placeholder = false) {
  policy::Injection i;
  i.header = header;
  i.parts = std::move(parts);
  for (const auto& part : i.parts) {
    if (part.secret) i.secrets.push_back(part.text);
  }
  i.only_placeholder = only_placeholder;
  return i;
}

SecretStore store_with(const std::map<std::string, std::string>& secrets, TempDir& dir) {
  for (const auto& [name, value] : secrets) dir.write(name, value + "\n");
  return SecretStore::load(dir.path.string());
}

HeaderLookup headers(std::map<std::string, std::string> sent) {
  return [sent = std::move(sent)](std::string_view name) -> std::optional<std::string_view> {
    auto it = sent.find(std::string(name));
    if (it == sent.end()) return std::nullopt;
    return std::string_view(it->second);
  };
}

}  // namespace

TEST_CASE("The secrets directory loads one secret per file, a trailing newline dropped", "[secrets]") {
  TempDir dir;
  dir.write("hf_token", "hf_abcdefghijklmnop\n");
  dir.write("crlf", "0123456789\r\n", 0640);
  dir.write(".hidden", "x", 0644);  // dot files are not secrets (Kubernetes' ..data)
  auto store = SecretStore::load(dir.path.string());
  CHECK(store.names() == std::vector<std::string>{"crlf", "hf_token"});
  CHECK(*store.find("hf_token") == "hf_abcdefghijklmnop");
  CHECK(*store.find("crlf") == "0123456789");
  CHECK(store.find("absent") == nullptr);
}

TEST_CASE("Files egress must not trust are refused by name, never by value", "[secrets]") {
  struct Case {
    const char* name;
    std::string value;
    mode_t mode;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"world-readable", "s3cr3t-value-0644", 0644, "more open than 0640"},
      {"group-writable", "s3cr3t-value-0660", 0660, "more open than 0640"},
      {"executable", "s3cr3t-value-0700", 0700, "more open than 0640"},
      {"short", "short", 0600, "at least 8"},
      {"two lines", "s3cr3t-line-one\nline-two", 0600, "CR, LF or NUL"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    TempDir dir;
    dir.write("token", c.value, c.mode);
    try {
      SecretStore::load(dir.path.string());
      FAIL("loaded");
    } catch (const SecretsError& error) {
      const std::string text = error.what();
      CHECK(text.find(c.expected) != std::string::npos);
      CHECK(text.find((dir.path / "token").string()) != std::string::npos);
      CHECK(text.find(c.value) == std::string::npos);
    }
  }
  CHECK_THROWS_WITH(SecretStore::load("/nonexistent/egress-secrets"),
                    Catch::Contains("cannot read the secrets directory /nonexistent/egress-secrets"));
}

TEST_CASE("A file owned by another user is refused", "[secrets]") {
  if (::geteuid() != 0) return;  // only root can give a file away
  TempDir dir;
  dir.write("token", "0123456789abcdef");
  REQUIRE(::chown((dir.path / "token").c_str(), 65534, 65534) == 0);
  CHECK_THROWS_WITH(SecretStore::load(dir.path.string()), Catch::Contains("is owned by uid 65534"));
}

TEST_CASE("An injection plan renders headers, asks only when told, and fails closed", "[secrets]") {
  TempDir dir;
  auto store = store_with({{"hf_token", "hf_0123456789"}, {"gh", "ghp_abcdefghij"}}, dir);
  const auto bearer = injection("Authorization", {{"Bearer ", false}, {"hf_token", true}});
  const auto placeholder = injection("Authorization", {{"token ", false}, {"gh", true}}, true);
  const auto missing = injection("X-Key", {{"nope", true}});
  auto basic = injection("Authorization", {{"gh", true}});
  basic.basic_user = "git";

  struct Case {
    const char* name;
    std::vector<policy::Injection> rule;
    std::map<std::string, std::string> sent;
    std::vector<std::pair<std::string, std::string>> expected;  // header, value
    std::optional<std::string> missing;
  };
  const std::vector<Case> cases = {
      {"bearer, nothing sent", {bearer}, {}, {{"Authorization", "Bearer hf_0123456789"}}, {}},
      {"bearer replaces the worker's value", {bearer}, {{"Authorization", "Bearer fake"}},
       {{"Authorization", "Bearer hf_0123456789"}}, {}},
      {"placeholder sent", {placeholder}, {{"Authorization", "token egress:gh"}},
       {{"Authorization", "token ghp_abcdefghij"}}, {}},
      {"placeholder not sent", {placeholder}, {{"Authorization", "token mine"}}, {}, {}},
      {"placeholder of another secret", {placeholder}, {{"Authorization", "token egress:hf_token"}}, {}, {}},
      {"basic", {basic}, {}, {{"Authorization", "Basic Z2l0OmdocF9hYmNkZWZnaGlq"}}, {}},
      {"missing secret", {bearer, missing}, {}, {}, std::string("nope")},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    auto plan = plan_injections(c.rule, store, headers(c.sent));
    std::vector<std::pair<std::string, std::string>> got;
    for (const auto& edit : plan.edits) got.emplace_back(edit.header, edit.value);
    CHECK(got == c.expected);
    CHECK(plan.missing == c.missing);
  }
  auto plan = plan_injections(std::vector{bearer, basic}, store, headers({}));
  CHECK(plan.injected_names() == "hf_token,gh");
}

TEST_CASE("The scrubber replaces a secret wherever a read boundary falls", "[secrets]") {
  TempDir dir;
  auto store = store_with({{"tok", "SECRET-0123456789"}}, dir);
  const auto bearer = injection("Authorization", {{"Bearer ", false}, {"tok", true}});
  auto basic = injection("Authorization", {{"tok", true}});
  basic.basic_user = "u";
  const auto plan = plan_injections(std::vector{bearer, basic}, store, headers({}));
  const std::string encoded = plan.edits[1].encoded;
  const std::string body = "echo: Bearer SECRET-0123456789; SECRET-012345678 (almost); Basic " + encoded +
                           "; SECRET-0123456789SECRET-0123456789 end SECRET-";
  const std::string expected = "echo: Bearer [egress:tok]; SECRET-012345678 (almost); Basic [egress:tok]; "
                               "[egress:tok][egress:tok] end SECRET-";
  for (std::size_t split = 0; split <= body.size(); ++split) {
    for (std::size_t second = split; second <= body.size(); second += 7) {
      Scrubber scrubber(plan, store);
      std::string out;
      scrubber.feed(std::string_view(body).substr(0, split), out);
      scrubber.feed(std::string_view(body).substr(split, second - split), out);
      scrubber.feed(std::string_view(body).substr(second), out);
      scrubber.finish(out);
      INFO("split at " << split << " and " << second);
      REQUIRE(out == expected);
      REQUIRE(scrubber.replacements() == 4);
    }
  }
}

TEST_CASE("The scrubber holds back only what could begin a secret", "[secrets]") {
  TempDir dir;
  auto store = store_with({{"tok", "abcdefgh-secret"}}, dir);
  const auto plan = plan_injections(std::vector{injection("X", {{"tok", true}})}, store, headers({}));
  Scrubber scrubber(plan, store);
  std::string out;
  scrubber.feed("plain text with no secret", out);
  CHECK(out == "plain text with no secret");
  out.clear();
  scrubber.feed("ends with abcd", out);
  CHECK(out == "ends with ");
  out.clear();
  scrubber.feed("x", out);
  CHECK(out == "abcdx");
  CHECK(scrubber.scrub("h: abcdefgh-secret") == "h: [egress:tok]");
  CHECK_FALSE(Scrubber().active());
  std::string passthrough;
  Scrubber().feed("abcdefgh-secret", passthrough);
  CHECK(passthrough == "abcdefgh-secret");
}
