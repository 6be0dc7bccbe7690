// Durations and sizes as an administrator writes them in a flag or config
// file: "500ms", "30s", "5m", "1h"; "64K", "25M", "1G". A bare number keeps
// the flag's old unit, so configurations written before units still mean
// what they meant. Pure: no I/O, never throws, never guesses.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mailhook::config {

// "250ms", "30s", "5m", "1h", "2d", or a bare number of `bare_unit`. The
// result in milliseconds; nullopt and `error` set for anything else or an
// overflow.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, std::chrono::milliseconds bare_unit,
                                                        std::string& error);

// "512", "64K", "25M", "1G", "1T" (binary multiples: K = 1024; a trailing
// "B" or "iB" is allowed: "25MB", "25MiB"), or a bare number of
// `bare_unit` bytes. nullopt and `error` set for anything else or an
// overflow.
std::optional<std::uint64_t> parse_size(std::string_view text, std::uint64_t bare_unit, std::string& error);

// The shortest exact spelling: 30000 ms -> "30s", 300000 -> "5m", 1500 -> "1500ms".
std::string format_duration(std::chrono::milliseconds d);

// The shortest exact spelling: 26214400 -> "25M", 1000 -> "1000".
std::string format_size(std::uint64_t bytes);

}  // namespace mailhook::config
