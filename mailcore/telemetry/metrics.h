// Prometheus text metrics (exposition format 0.0.4): counters, gauges and
// histograms with fixed label values, registered once at start-up and
// updated lock-free from any thread. Pure: rendering makes a string, the
// daemons serve it over HTTP (--metrics). Never allocates on update.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace mailhook::telemetry {

class Counter {
 public:
  void add(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void add(std::int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

// Latency in seconds; buckets from 50 µs to 10 s.
class Histogram {
 public:
  static constexpr std::array<double, 12> kBounds{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                  0.005,   0.01,   0.05,    0.25,   1.0,   10.0};
  void observe(double seconds);
  std::string render(const std::string& name, const std::string& labels) const;

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_micros_{0};
};

// One `key="value"` label pair, the value escaped as the text format
// wants (backslash, double quote, line feed), so a script's path can never
// break a sample line.
std::string label(std::string_view key, std::string_view value);

// Owns every metric of a daemon; references stay valid for its lifetime.
// Registering the same name and labels again returns the metric already
// there (each Lua worker loads the same scripts), so a family's series are
// bounded by the label values the daemon knows (hooks, scripts, limits),
// never by what a client sends.
class Registry {
 public:
  Counter& counter(const std::string& name, const std::string& help, const std::string& labels = "");
  Gauge& gauge(const std::string& name, const std::string& help, const std::string& labels = "");
  Histogram& histogram(const std::string& name, const std::string& help, const std::string& labels = "");
  std::string render() const;
  // Series registered (for tests and for the bound above).
  std::size_t size() const;

 private:
  enum class Kind : std::uint8_t { Counter, Gauge, Histogram };
  struct Entry {
    Kind kind;
    std::string name, help, labels;
    std::size_t index;
  };
  const Entry* find(Kind kind, const std::string& name, const std::string& labels) const;
  mutable std::mutex mu_;  // registration and rendering only
  std::vector<Entry> entries_;
  std::deque<Counter> counters_;
  std::deque<Gauge> gauges_;
  std::deque<Histogram> histograms_;
};

}  // namespace mailhook::telemetry
