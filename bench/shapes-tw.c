// TIME_WAIT maker for bench/shapes.mjs: real short loopback connections, closed by the client
// first, so each leaves one client-side TIME_WAIT socket (60 s, the kernel's fixed TCP_TIMEWAIT_LEN)
// whose remote is the listener, as on a host that opens many short outbound connections.
//
//   shapes-tw TARGET [SOURCES] [RAMP_SECONDS]
//
// Listens on 127.0.0.250:7000; clients bind source addresses 127.1.0.0 + k (k < SOURCES, default
// 256) with IP_BIND_ADDRESS_NO_PORT, so the kernel picks the port per 4-tuple from
// ip_local_port_range and each source uses under 1% of it. Makes TARGET connections spread evenly
// over RAMP_SECONDS (default 60, the TIME_WAIT lifetime: so they also expire evenly, the steady
// churn of a busy host, about TARGET/60 connections a second; 0 makes them at once, and then they
// all expire together a minute later), then tops the TIME_WAIT count (/proc/net/sockstat "tw", this
// network namespace) back up to TARGET every 100 ms. Prints "READY {json}" once the ramp is over and
// the count has reached 98% of TARGET, and
// "STATS {json}" on SIGUSR1; exits on SIGTERM or when stdin closes. Needs tcp_tw_reuse = 0 (a
// reused TIME_WAIT would vanish) and tcp_max_tw_buckets above TARGET: bench/shapes.mjs sets both
// inside the network namespace it creates for the farm.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static volatile sig_atomic_t stop_flag = 0;
static volatile sig_atomic_t stats_flag = 0;
static void on_term(int sig) { (void)sig; stop_flag = 1; }
static void on_usr1(int sig) { (void)sig; stats_flag = 1; }

static long tw_count(void) {
  FILE* f = fopen("/proc/net/sockstat", "r");
  if (!f) return -1;
  char line[512];
  long tw = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "TCP:", 4) != 0) continue;
    char* p = strstr(line, " tw ");
    if (p) tw = strtol(p + 4, NULL, 10);
  }
  fclose(f);
  return tw;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int listener;
static struct sockaddr_in dst;
static unsigned sources = 256;
static unsigned long next_source = 0;
static unsigned long made = 0, failed = 0;

// One connection: connect, accept, client closes first (it gets the TIME_WAIT), server closes.
static int one(void) {
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0) return -errno;
  int one = 1;
  setsockopt(c, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  struct sockaddr_in src = {.sin_family = AF_INET};
  unsigned k = (unsigned)(next_source++ % sources);
  src.sin_addr.s_addr = htonl((127u << 24) | (1u << 16) | k);
  int err = 0;
  if (bind(c, (struct sockaddr*)&src, sizeof src) < 0 || connect(c, (struct sockaddr*)&dst, sizeof dst) < 0) {
    err = -errno;
    close(c);
    return err;
  }
  int s = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  close(c);
  if (s >= 0) {
    // Wait for the client's FIN before closing, so the server side ends in LAST_ACK, not TIME_WAIT.
    struct pollfd p = {.fd = s, .events = POLLIN};
    poll(&p, 1, 100);
    close(s);
  }
  return 0;
}

static void make(long n) {
  for (long i = 0; i < n && !stop_flag; i++) {
    if (one() == 0)
      made++;
    else
      failed++;
  }
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: shapes-tw TARGET [SOURCES]\n");
    return 2;
  }
  long target = strtol(argv[1], NULL, 10);
  if (argc > 2) sources = (unsigned)strtoul(argv[2], NULL, 10);
  double ramp_ms = (argc > 3 ? strtod(argv[3], NULL) : 60) * 1e3;
  if (target <= 0 || sources == 0 || sources > 65536) {
    fprintf(stderr, "shapes-tw: bad arguments\n");
    return 2;
  }
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  signal(SIGUSR1, on_usr1);
  signal(SIGPIPE, SIG_IGN);

  listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int yes = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  dst.sin_family = AF_INET;
  dst.sin_port = htons(7000);
  dst.sin_addr.s_addr = htonl((127u << 24) | 250u);
  if (bind(listener, (struct sockaddr*)&dst, sizeof dst) < 0 || listen(listener, 4096) < 0) {
    fprintf(stderr, "shapes-tw: listen 127.0.0.250:7000: %s\n", strerror(errno));
    return 1;
  }
  double t0 = now_ms();
  int ready = 0;
  double ready_ms = 0;
  struct pollfd in = {.fd = 0, .events = POLLIN};
  while (!stop_flag) {
    long tw = tw_count();
    if (tw < 0) {
      fprintf(stderr, "shapes-tw: cannot read /proc/net/sockstat\n");
      return 1;
    }
    double elapsed = now_ms() - t0;
    // During the ramp, the share of TARGET due by now; afterwards, TARGET.
    long due = elapsed < ramp_ms ? (long)((double)target * elapsed / ramp_ms) : target;
    if (tw < due) make(due - tw);
    if (!ready && elapsed >= ramp_ms && tw_count() >= target * 49 / 50) {
      ready = 1;
      ready_ms = now_ms() - t0;
      printf("READY {\"tw\":%ld,\"made\":%lu,\"failed\":%lu,\"setupMs\":%.0f,\"pid\":%d}\n", tw_count(), made, failed,
             ready_ms, getpid());
      fflush(stdout);
    }
    if (stats_flag) {
      stats_flag = 0;
      printf("STATS {\"tw\":%ld,\"made\":%lu,\"failed\":%lu}\n", tw_count(), made, failed);
      fflush(stdout);
    }
    // stdin closed (the harness died): stop.
    if (poll(&in, 1, 100) > 0 && (in.revents & (POLLHUP | POLLIN))) {
      char b[64];
      if (read(0, b, sizeof b) <= 0) break;
    }
  }
  close(listener);
  return 0;
}
