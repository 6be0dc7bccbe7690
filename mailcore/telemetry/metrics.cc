// Rendering of the metrics registry in Prometheus text format.
#include "mailcore/telemetry/metrics.h"

#include <fmt/format.h>

namespace mailhook::telemetry {

void Histogram::observe(double seconds) {
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

std::string Histogram::render(const std::string& name, const std::string& labels) const {
  std::string out;
  const std::string sep = labels.empty() ? "" : labels + ",";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    out += fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", name, sep, kBounds[i], cumulative);
  }
  cumulative += buckets_[kBounds.size()].load(std::memory_order_relaxed);
  out += fmt::format("{}_bucket{{{}le=\"+Inf\"}} {}\n", name, sep, cumulative);
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n", name, braces, sum_micros_.load(std::memory_order_relaxed) / 1e6);
  out += fmt::format("{}_count{} {}\n", name, braces, count_.load(std::memory_order_relaxed));
  return out;
}

std::string label(std::string_view key, std::string_view value) {
  std::string out(key);
  out += "=\"";
  for (const char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c; break;
    }
  }
  out += '"';
  return out;
}

const Registry::Entry* Registry::find(Kind kind, const std::string& name, const std::string& labels) const {
  for (const Entry& e : entries_) {
    if (e.kind == kind && e.name == name && e.labels == labels) return &e;
  }
  return nullptr;
}

std::size_t Registry::size() const {
  std::lock_guard l(mu_);
  return entries_.size();
}

Counter& Registry::counter(const std::string& name, const std::string& help, const std::string& labels) {
  std::lock_guard l(mu_);
  if (const Entry* e = find(Kind::Counter, name, labels)) return counters_[e->index];
  entries_.push_back({Kind::Counter, name, help, labels, counters_.size()});
  return counters_.emplace_back();
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const std::string& labels) {
  std::lock_guard l(mu_);
  if (const Entry* e = find(Kind::Gauge, name, labels)) return gauges_[e->index];
  entries_.push_back({Kind::Gauge, name, help, labels, gauges_.size()});
  return gauges_.emplace_back();
}

Histogram& Registry::histogram(const std::string& name, const std::string& help, const std::string& labels) {
  std::lock_guard l(mu_);
  if (const Entry* e = find(Kind::Histogram, name, labels)) return histograms_[e->index];
  entries_.push_back({Kind::Histogram, name, help, labels, histograms_.size()});
  return histograms_.emplace_back();
}

std::string Registry::render() const {
  std::lock_guard l(mu_);
  // Families in the order first registered, each family's samples together
  // (the format wants one HELP/TYPE and then all of its samples).
  std::vector<const Entry*> order;
  order.reserve(entries_.size());
  std::vector<bool> taken(entries_.size(), false);
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    if (taken[i]) continue;
    for (std::size_t j = i; j < entries_.size(); ++j) {
      if (!taken[j] && entries_[j].name == entries_[i].name) {
        taken[j] = true;
        order.push_back(&entries_[j]);
      }
    }
  }
  std::string out;
  std::string last_name;
  for (const Entry* e : order) {
    if (e->name != last_name) {
      const char* type = e->kind == Kind::Counter ? "counter" : e->kind == Kind::Gauge ? "gauge" : "histogram";
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", e->name, e->help, e->name, type);
      last_name = e->name;
    }
    const std::string braces = e->labels.empty() ? "" : "{" + e->labels + "}";
    switch (e->kind) {
      case Kind::Counter: out += fmt::format("{}{} {}\n", e->name, braces, counters_[e->index].value()); break;
      case Kind::Gauge: out += fmt::format("{}{} {}\n", e->name, braces, gauges_[e->index].value()); break;
      case Kind::Histogram: out += histograms_[e->index].render(e->name, e->labels); break;
    }
  }
  return out;
}

}  // namespace mailhook::telemetry
