// What sessions and the inspected request loop tell the audit log: a
// decision committed before anything goes upstream (invariant 2), and an
// attempt's close (event, metrics, the canonical log line).
#pragma once

#include <memory>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "egress/audit/store.h"
#include "proxy/attempt.h"
#include "proxy/worker.h"

namespace egress::proxy {

/// Resumes on the calling coroutine's executor with true once `event` is
/// durable, false when the store cannot write it.
inline boost::asio::awaitable<bool> commit_event(audit::AuditStore& store, audit::Event event) {
  namespace asio = boost::asio;
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(bool)>(
      [&store](auto handler, audit::Event event) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        store.record(std::move(event), [shared](bool committed) {
          auto executor = asio::get_associated_executor(*shared);
          asio::post(executor, [shared, committed]() mutable { std::move (*shared)(committed); });
        });
      },
      asio::use_awaitable, std::move(event));
}

/// Queues the attempt's close event, counts it in the metrics and writes the
/// canonical log line.
void record_close(Worker& worker, const Attempt& attempt, const Attempt::Outcome& outcome);

}  // namespace egress::proxy
