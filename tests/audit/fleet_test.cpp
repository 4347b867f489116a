// The pure parts of replication and the central store: DSN redaction, rows
// to PostgreSQL parameters and back, and the OCSF mapping.
#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "audit/chain.h"
#include "audit/ocsf.h"
#include "audit/pg_rows.h"
#include "egress/audit/replicator.h"
#include "fakes.h"

using namespace egress::audit;
using namespace egress::audit::testing;

TEST_CASE("redact_dsn masks every password form and keeps the rest", "[audit][fleet]") {
  struct Case {
    const char* dsn;
    const char* redacted;
    bool has_password;
  };
  const Case cases[] = {
      {"postgresql://egress@db.internal/audit", "postgresql://egress@db.internal/audit", false},
      {"postgresql://egress:s3cret@db.internal:5432/audit", "postgresql://egress:***@db.internal:5432/audit", true},
      {"postgres://u:p%40ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require", true},
      {"postgresql://u@h/db?password=hunter2&sslmode=verify-full",
       "postgresql://u@h/db?password=***&sslmode=verify-full", true},
      {"postgresql://u@/db?host=/tmp/pg&port=5433", "postgresql://u@/db?host=/tmp/pg&port=5433", false},
      {"postgresql:///db?host=/run/postgresql", "postgresql:///db?host=/run/postgresql", false},
      {"host=db user=egress password=hunter2 dbname=audit", "host=db user=egress password=*** dbname=audit", true},
      {"host=db password='a b\\' c' dbname=audit", "host=db password=*** dbname=audit", true},
      {"host=db mypassword=x", "host=db mypassword=x", false},
      {"postgresql://u:@h/db", "postgresql://u:@h/db", false},  // an empty password is no secret
  };
  for (const auto& c : cases) {
    INFO(c.dsn);
    CHECK(redact_dsn(c.dsn) == c.redacted);
    CHECK(dsn_has_password(c.dsn) == c.has_password);
  }
}

TEST_CASE("is_central_dsn tells a store from a file", "[audit][fleet]") {
  const std::pair<const char*, bool> cases[] = {
      {"postgresql://h/db", true}, {"POSTGRES://h/db", true}, {"egress-audit.db", false},
      {"/var/lib/egress/postgresql://x", false}, {"postgresq://h", false}};
  for (const auto& [text, central] : cases) {
    INFO(text);
    CHECK(is_central_dsn(text) == central);
  }
}

TEST_CASE("a row becomes its central parameters in column order, NULL as nullopt", "[audit][fleet]") {
  ShippedRow row;
  row.id = 42;
  row.content = row_values(close_event("r1"));
  row.prev_hash = std::string(kGenesisHash);
  row.hash = chain_hash(row.prev_hash, row.content);
  std::vector<PgParam> params;
  append_row_params(params, "egress-7d9f", row);
  REQUIRE(params.size() == kParamsPerRow);
  struct Expect {
    std::size_t index;
    PgParam value;
  };
  const Expect expect[] = {
      {0, "egress-7d9f"},     {1, "42"},   {2, "2026-11-28T19:54:59.000001Z"}, {3, "r1"}, {4, "close"},
      {5, "self-hosted"},     {6, std::nullopt},                               // role
      {12, "443"},            {19, "200"}, {20, "517"}, {21, "123456789012"}, {22, "877"},
      {23, std::nullopt},     // error
      {24, std::nullopt},     // alpn
      {25, std::nullopt},     // injected
      {26, std::nullopt},     // scrubbed
      {27, std::string(kGenesisHash)}, {28, row.hash}};
  for (const auto& e : expect) {
    INFO("parameter " << e.index);
    CHECK(params[e.index] == e.value);
  }
}

TEST_CASE("central_insert_sql numbers every row's parameters and never duplicates", "[audit][fleet]") {
  const auto one = central_insert_sql(1);
  CHECK(one.rfind("INSERT INTO events (replica, id, ts, request_id,", 0) == 0);
  CHECK(one.find("$29)") != std::string::npos);
  CHECK(one.find("$30") == std::string::npos);
  CHECK(one.find("ON CONFLICT (replica, id) DO NOTHING") != std::string::npos);
  const auto three = central_insert_sql(3);
  CHECK(three.find("($59, ") != std::string::npos);
  CHECK(three.find("$87)") != std::string::npos);
}

namespace {

// One COPY text-format line split into its fields, escapes undone, \N as
// nullopt: what PostgreSQL reads from append_copy_row's output.
std::vector<PgParam> read_copy_line(std::string_view line) {
  REQUIRE(!line.empty());
  REQUIRE(line.back() == '\n');
  line.remove_suffix(1);
  std::vector<PgParam> fields;
  std::string field;
  bool null = false;
  for (std::size_t i = 0; i <= line.size(); ++i) {
    if (i == line.size() || line[i] == '\t') {
      fields.push_back(null ? PgParam{} : PgParam{field});
      field.clear();
      null = false;
      continue;
    }
    if (line[i] != '\\') {
      field += line[i];
      continue;
    }
    REQUIRE(i + 1 < line.size());
    switch (line[++i]) {
      case 'N': null = true; break;
      case 't': field += '\t'; break;
      case 'n': field += '\n'; break;
      case 'r': field += '\r'; break;
      case '\\': field += '\\'; break;
      default: FAIL("unknown escape");
    }
  }
  return fields;
}

}  // namespace

TEST_CASE("a row becomes one COPY line whose fields are its central parameters", "[audit][fleet]") {
  struct Case {
    const char* name;
    std::string path;
  };
  const Case cases[] = {
      {"plain", "/models/a.bin"},
      {"tab and newline", "/a\tb\nc\rd"},
      {"backslashes and a literal \\N", "/x\\N\\\\y\\"},
      {"a NUL ends the value, as a parameter's C string does", std::string("/before\0after", 13)},
      {"empty", ""},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    auto event = decision_event("r1");
    event.path = c.path;
    ShippedRow row{7, row_values(event), std::string(kGenesisHash), "h"};
    std::string line;
    append_copy_row(line, "egress-7d9f", row);
    CHECK(std::count(line.begin(), line.end(), '\n') == 1);
    std::vector<PgParam> params;
    append_row_params(params, "egress-7d9f", row);
    // the parameter path sends C strings: what libpq would send of each
    for (auto& p : params) {
      if (p) p = std::string(p->c_str());
    }
    CHECK(read_copy_line(line) == params);
  }
}

TEST_CASE("central_copy_sql names the INSERT's columns in the same order", "[audit][fleet]") {
  const auto copy = central_copy_sql();
  const auto insert = central_insert_sql(1);
  const auto columns = [](const std::string& sql) { return sql.substr(sql.find('('), sql.find(')') - sql.find('(')); };
  CHECK(copy.rfind("COPY events (replica, id, ts, request_id,", 0) == 0);
  CHECK(copy.substr(copy.size() - 11) == " FROM STDIN");
  CHECK(columns(copy) == columns(insert));
}

TEST_CASE("from_pg reads integers back as integers and text as text", "[audit][fleet]") {
  struct Case {
    const char* column;
    PgParam cell;
    Value value;
  };
  const Case cases[] = {
      {"port", "443", std::int64_t{443}},          {"bytes_down", "123456789012", std::int64_t{123456789012}},
      {"id", "7", std::int64_t{7}},                {"host", "443", std::string("443")},
      {"status", std::nullopt, std::monostate{}},  {"ts", "2026-11-28T00:00:00.000000Z", std::string("2026-11-28T00:00:00.000000Z")},
      {"port", "x1", std::string("x1")},  // kept as it is, so verify sees the change
  };
  for (const auto& c : cases) {
    INFO(c.column);
    CHECK(from_pg(c.column, c.cell) == c.value);
  }
}

TEST_CASE("a row survives the central round trip with its hash intact", "[audit][fleet]") {
  const auto content = row_values(decision_event("r9"));
  const std::string hash = chain_hash(kGenesisHash, content);
  ShippedRow row{3, content, std::string(kGenesisHash), hash};
  std::vector<PgParam> params;
  append_row_params(params, "a", row);
  std::vector<Value> back;
  for (std::size_t i = 0; i < kContentColumns.size(); ++i) back.push_back(from_pg(kContentColumns[i], params[i + 2]));
  CHECK(back == content);
  CHECK(chain_hash(kGenesisHash, back) == hash);
}

namespace {

boost::json::object ocsf(const Event& e, std::int64_t id = 5) {
  const auto content = row_values(e);
  const std::string prev(kGenesisHash), hash = chain_hash(prev, content);
  return boost::json::parse(to_ocsf_line(content, {id, prev, hash})).as_object();
}

}  // namespace

TEST_CASE("OCSF: class, activity and disposition by kind, event and decision", "[audit][fleet]") {
  struct Case {
    const char* name;
    Event event;
    std::int64_t class_uid, activity_id, status_id;
    const char* action;  // "" = no action (close events)
  };
  Event http_get = decision_event("h1");
  http_get.kind = "http";
  http_get.method = "GET";
  http_get.scheme = "http";
  http_get.path = "/x";
  Event http_denied = http_get;
  http_denied.decision = "deny";
  http_denied.method = "POST";
  Event inspected_patch = http_get;
  inspected_patch.kind = "inspected";
  inspected_patch.method = "PATCH";
  Event tunnel_denied = decision_event("t2");
  tunnel_denied.decision = "deny";
  Event tunnel_close = close_event("t1");
  Event close_error = close_event("t3");
  close_error.error = "upstream reset";
  const Case cases[] = {
      {"http GET allowed", http_get, 4002, 3, 1, "Allowed"},
      {"http POST denied", http_denied, 4002, 6, 2, "Denied"},
      {"inspected PATCH", inspected_patch, 4002, 99, 1, "Allowed"},
      {"tunnel opened", decision_event("t0"), 4001, 1, 1, "Allowed"},
      {"tunnel refused", tunnel_denied, 4001, 5, 2, "Denied"},
      {"tunnel closed", tunnel_close, 4001, 2, 1, ""},
      {"tunnel closed with an error", close_error, 4001, 2, 2, ""},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const auto e = ocsf(c.event);
    CHECK(e.at("class_uid").as_int64() == c.class_uid);
    CHECK(e.at("category_uid").as_int64() == 4);
    CHECK(e.at("activity_id").as_int64() == c.activity_id);
    CHECK(e.at("type_uid").as_int64() == c.class_uid * 100 + c.activity_id);
    CHECK(e.at("status_id").as_int64() == c.status_id);
    if (*c.action) {
      CHECK(e.at("action").as_string() == c.action);
    } else {
      CHECK(!e.contains("action"));
    }
    CHECK(e.at("metadata").at("version").as_string() == kOcsfVersion);
    CHECK(e.at("metadata").at("sequence").as_int64() == 5);
  }
}

TEST_CASE("OCSF: endpoints, time, HTTP, traffic and the unmapped egress fields", "[audit][fleet]") {
  Event d = decision_event("r1");
  d.kind = "http";
  d.method = "GET";
  d.scheme = "https";
  d.path = "/models";
  d.client_addr = "[fd00::5]:40000";
  const auto e = ocsf(d);
  CHECK(e.at("time").as_int64() == 1795895698123);
  CHECK(e.at("src_endpoint").at("ip").as_string() == "fd00::5");
  CHECK(e.at("src_endpoint").at("port").as_int64() == 40000);
  CHECK(e.at("dst_endpoint").at("hostname").as_string() == "github.com");
  CHECK(e.at("dst_endpoint").at("ip").as_string() == "140.82.112.3");
  CHECK(e.at("http_request").at("http_method").as_string() == "GET");
  CHECK(e.at("http_request").at("url").at("path").as_string() == "/models");
  CHECK(e.at("tls").at("sni").as_string() == "github.com");
  CHECK(e.at("unmapped").at("role").as_string() == "comfyui");
  CHECK(e.at("unmapped").at("rule").as_string() == "policy.yaml:3");
  CHECK(e.at("metadata").at("correlation_uid").as_string() == "r1");

  const auto c = ocsf(close_event("r1"));
  CHECK(c.at("traffic").at("bytes_out").as_int64() == 517);
  CHECK(c.at("traffic").at("bytes_in").as_int64() == 123456789012);
  CHECK(c.at("duration").as_int64() == 877);
  CHECK(!c.contains("http_request"));
}

TEST_CASE("OCSF: a worker's invalid UTF-8 still makes valid JSON", "[audit][fleet]") {
  Event d = decision_event("r1");
  d.kind = "http";
  d.host = "bad\xff\xfehost";
  const auto e = ocsf(d);
  CHECK(e.at("dst_endpoint").at("hostname").as_string() == "bad\xEF\xBF\xBD\xEF\xBF\xBDhost");
}
