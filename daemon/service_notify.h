// systemd's readiness protocol (sd_notify(3)) without libsystemd: one
// datagram per state change to the AF_UNIX socket named by $NOTIFY_SOCKET.
// Both daemons tell systemd READY=1 once every listener is up, RELOADING=1
// / READY=1 around a SIGHUP reload and STOPPING=1 when the drain starts.
// It must never block or fail the daemon: without NOTIFY_SOCKET, or when
// the socket is gone, it does nothing (a line in the log at most).
#pragma once

#include <string_view>

namespace mailhook::daemon {

// The listeners are up: systemd starts the units that wait for this one.
void notify_ready(std::string_view status);
// A SIGHUP reload begins (Type=notify-reload asks for MONOTONIC_USEC).
void notify_reloading();
// SIGTERM: the drain begins; systemd shows the unit as "deactivating".
void notify_stopping();

// Sends `state` (newline-separated VAR=value lines) as one datagram to
// $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace).
// Returns false when there is no socket to tell or the send failed.
bool notify_service_manager(std::string_view state);

}  // namespace mailhook::daemon
