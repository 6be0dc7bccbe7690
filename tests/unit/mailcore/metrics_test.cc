#include "mailcore/telemetry/metrics.h"

#include <gtest/gtest.h>

#include <string>

namespace mailhook::telemetry {
namespace {

TEST(Registry, RegisteringTheSameSeriesAgainGivesTheSameCounter) {
  Registry r;
  Counter& a = r.counter("mailhook_x_total", "x", label("script", "a.lua"));
  Counter& again = r.counter("mailhook_x_total", "x", label("script", "a.lua"));
  Counter& b = r.counter("mailhook_x_total", "x", label("script", "b.lua"));
  EXPECT_EQ(&a, &again);
  EXPECT_NE(&a, &b);
  EXPECT_EQ(r.size(), 2u);
  a.add();
  again.add();
  const std::string text = r.render();
  EXPECT_NE(text.find("mailhook_x_total{script=\"a.lua\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("mailhook_x_total{script=\"b.lua\"} 0\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("# TYPE mailhook_x_total counter"), text.rfind("# TYPE mailhook_x_total counter"));
}

TEST(Registry, AGaugeAndACounterOfOneNameStaySeparate) {
  Registry r;
  Gauge& g = r.gauge("mailhook_open", "open", "");
  Gauge& g2 = r.gauge("mailhook_open", "open", "");
  EXPECT_EQ(&g, &g2);
  EXPECT_EQ(r.size(), 1u);
}

TEST(Label, EscapesBackslashQuoteAndLineFeedAsTheTextFormatWants) {
  EXPECT_EQ(label("script", "/etc/mailhook/policy.lua"), "script=\"/etc/mailhook/policy.lua\"");
  EXPECT_EQ(label("script", "a\"b\\c\nd"), "script=\"a\\\"b\\\\c\\nd\"");
}

}  // namespace
}  // namespace mailhook::telemetry
