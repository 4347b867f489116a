// EventHub (egress/console/hub.h): decision rows only, bounded queues that
// count what they drop, nothing kept without a subscriber.
#include <catch2/catch.hpp>

#include "egress/console/hub.h"

using egress::console::EventHub;

TEST_CASE("the hub queues decision rows per subscriber up to its limit and counts the rest", "[console]") {
  EventHub hub(2);
  const std::string decision = R"({"id":1,"event":"decision","host":"a"})";
  const std::string close = R"({"id":2,"event":"close","host":"a"})";
  const std::string fake = R"({"id":3,"event":"close","host":"\"event\":\"decision\""})";
  hub.publish(decision);  // nobody listens: nothing kept
  auto sub = hub.subscribe();
  for (const auto* line : {&decision, &close, &fake, &decision, &decision}) hub.publish(*line);
  auto batch = sub->take();
  CHECK(batch.lines.size() == 2);
  CHECK(batch.seen == 3);
  CHECK(batch.dropped == 1);
  CHECK(sub->take().lines.empty());
  CHECK(hub.stats().subscribers == 1);
  sub.reset();
  CHECK(hub.stats().subscribers == 0);
}
