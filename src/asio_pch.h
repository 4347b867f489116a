// Precompiled header for the translation units that use Asio and Beast:
// they are heavy (~25 s per TU without this), and only proxy/ and dns/
// include them.
#pragma once
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
