// The loopback floor of a round trip between two processes on this
// machine, for bench/scale.py roundtrip: SESSIONS TCP connections from a
// client process to a server process that echoes one byte; each session
// sends a ping RATE times a second (0: the next as soon as the echo
// arrives), COUNT pings each. No work on either side, two wake-ups per
// round trip: what mailhook's front -> policyd -> front (the same two
// wake-ups plus a thread hand-off on each side and the policy work) is
// measured against. Prints one JSON line with p50/p90/p99 in microseconds.
// Both processes stop by themselves (the server after its last connection
// closes or 120 s; the client after 120 s).
//
//   pingpong SESSIONS RATE COUNT
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kMaxSeconds = 120 };

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static void no_delay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void serve(int listener, int sessions) {
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  const double end = now_us() + kMaxSeconds * 1e6;
  int open = 0, accepted = 0;
  while (now_us() < end) {
    struct epoll_event evs[64];
    int k = epoll_wait(ep, evs, 64, 1000);
    for (int i = 0; i < k; ++i) {
      int fd = evs[i].data.fd;
      if (fd == listener) {
        int c = accept(listener, NULL, NULL);
        if (c < 0) continue;
        no_delay(c);
        struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
        ++open;
        ++accepted;
        continue;
      }
      char b[64];
      ssize_t r = read(fd, b, sizeof b);
      if (r <= 0 || write(fd, b, (size_t)r) != r) {
        close(fd);
        if (--open == 0 && accepted == sessions) return;
      }
    }
  }
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: pingpong SESSIONS RATE COUNT\n");
    return 2;
  }
  const int n = atoi(argv[1]), rate = atoi(argv[2]), count = atoi(argv[3]);
  if (n < 1 || n > 10000 || rate < 0 || count < 1) {
    fprintf(stderr, "pingpong: SESSIONS 1..10000, RATE >= 0, COUNT >= 1\n");
    return 2;
  }
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  if (bind(listener, (struct sockaddr*)&addr, sizeof addr) || listen(listener, 1024) ||
      getsockname(listener, (struct sockaddr*)&addr, &len)) {
    perror("pingpong: listen");
    return 1;
  }
  pid_t server = fork();
  if (server == 0) {
    serve(listener, n);
    _exit(0);
  }
  close(listener);
  int* fds = calloc(n, sizeof *fds);
  int* left = calloc(n, sizeof *left);
  double* due = calloc(n, sizeof *due);
  double* sent = calloc(n, sizeof *sent);
  double* lat = calloc((size_t)n * count, sizeof *lat);
  size_t got = 0;
  int ep = epoll_create1(0);
  const double start = now_us() + 100000, gap = rate ? 1e6 / rate : 0;
  for (int i = 0; i < n; ++i) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fds[i], (struct sockaddr*)&addr, sizeof addr)) {
      perror("pingpong: connect");
      return 1;
    }
    no_delay(fds[i]);
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = (unsigned)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
    due[i] = start + gap * i / n;  // paced sessions spread over one period
    left[i] = count;
  }
  const double end = now_us() + kMaxSeconds * 1e6;
  int busy = n;
  while (busy && now_us() < end) {
    double t = now_us(), next = t + 1e6;
    for (int i = 0; i < n; ++i) {
      if (!left[i] || sent[i] != 0) continue;
      if (due[i] <= t) {
        sent[i] = now_us();
        if (write(fds[i], "x", 1) != 1) left[i] = 0, --busy;
      } else if (due[i] < next) {
        next = due[i];
      }
    }
    int wait_ms = (int)((next - now_us()) / 1000);
    struct epoll_event evs[64];
    int k = epoll_wait(ep, evs, 64, wait_ms < 0 ? 0 : wait_ms);
    for (int j = 0; j < k; ++j) {
      int i = (int)evs[j].data.u32;
      char b[8];
      if (read(fds[i], b, sizeof b) <= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
        if (left[i]) left[i] = 0, --busy;
        continue;
      }
      lat[got++] = now_us() - sent[i];
      sent[i] = 0;
      due[i] = rate ? due[i] + gap : 0;
      if (--left[i] == 0) --busy;
    }
  }
  for (int i = 0; i < n; ++i) close(fds[i]);
  waitpid(server, NULL, 0);
  if (!got) {
    fprintf(stderr, "pingpong: no round trip completed\n");
    return 1;
  }
  qsort(lat, got, sizeof *lat, by_value);
  printf("{\"sessions\": %d, \"rate\": %d, \"pings\": %zu, \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f}\n", n, rate,
         got, lat[got / 2], lat[got * 9 / 10], lat[got * 99 / 100]);
  return 0;
}
