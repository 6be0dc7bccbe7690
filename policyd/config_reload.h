// SIGHUP in mailhook-policyd: read the command line and the --config file
// anew and load the scripts they name (script list, shadow flags, grants),
// or keep everything as it was and say why. Counted in
// mailhook_policyd_reloads_total{result} and timestamped in
// mailhook_policyd_last_reload_success_timestamp_seconds. Settings that
// need a restart (sockets, workers) are logged, never half-applied.
#pragma once

#include <string>

#include "mailcore/telemetry/metrics.h"
#include "policyd/config.h"
#include "policyd/lua_runtime/runtime.h"

namespace mailhook::policyd {

class ConfigReload {
 public:
  // `argv` must outlive this (main's); `started` is the config in force.
  ConfigReload(int argc, char** argv, const PolicyConfig& started, telemetry::Registry& registry);

  // One SIGHUP, on the signal thread. Returns "" or the error logged.
  std::string operator()(Runtime& runtime);

 private:
  int argc_;
  char** argv_;
  PolicyConfig current_;
  telemetry::Counter& ok_;
  telemetry::Counter& failed_;
  telemetry::Gauge& last_success_;
};

// The RuntimeConfig of a PolicyConfig (scripts, sandbox, timeouts).
RuntimeConfig runtime_config_of(const PolicyConfig& c);

}  // namespace mailhook::policyd
