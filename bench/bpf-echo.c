// Latency a busy application sees on its own sockets (bench/bpf-spike.mjs): CONNS loopback TCP
// connections, a server thread echoing every message, a client thread sending 64 bytes on one
// connection after another and timing each round trip. Runs for SECONDS, then prints
//   {"roundTrips":N,"p50Us":…,"p90Us":…,"p99Us":…,"p999Us":…,"maxUs":…}
//
//   bpf-echo SECONDS [CONNS]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define MAX_CONNS 256
#define MAX_SAMPLES (20 * 1000 * 1000)

static int server_fds[MAX_CONNS], client_fds[MAX_CONNS], nconns = 16;
static volatile int done = 0;

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void* server(void* arg) {
  (void)arg;
  int ep = epoll_create1(0);
  for (int i = 0; i < nconns; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = server_fds[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, server_fds[i], &ev);
  }
  struct epoll_event evs[MAX_CONNS];
  char buf[MSG];
  while (!done) {
    int n = epoll_wait(ep, evs, MAX_CONNS, 100);
    for (int i = 0; i < n; i++) {
      ssize_t r = read(evs[i].data.fd, buf, sizeof buf);
      if (r > 0 && write(evs[i].data.fd, buf, (size_t)r) != r) return NULL;
    }
  }
  return NULL;
}

static int cmp(const void* a, const void* b) {
  float x = *(const float*)a, y = *(const float*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bpf-echo SECONDS [CONNS]\n");
    return 2;
  }
  double seconds = atof(argv[1]);
  if (argc > 2) nconns = atoi(argv[2]);
  if (nconns < 1 || nconns > MAX_CONNS) return 2;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (bind(l, (struct sockaddr*)&a, sizeof a) || listen(l, MAX_CONNS) || getsockname(l, (struct sockaddr*)&a, &alen)) {
    perror("bpf-echo: listen");
    return 1;
  }
  int one = 1;
  for (int i = 0; i < nconns; i++) {
    client_fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(client_fds[i], (struct sockaddr*)&a, sizeof a)) {
      perror("bpf-echo: connect");
      return 1;
    }
    server_fds[i] = accept(l, NULL, NULL);
    setsockopt(client_fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(server_fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  pthread_t th;
  pthread_create(&th, NULL, server, NULL);
  float* rtt = malloc(sizeof(float) * MAX_SAMPLES);
  size_t n = 0;
  char msg[MSG] = {0}, back[MSG];
  double end = now_us() + seconds * 1e6;
  for (int i = 0; now_us() < end && n < MAX_SAMPLES; i = (i + 1) % nconns) {
    double t0 = now_us();
    if (write(client_fds[i], msg, MSG) != MSG) break;
    size_t got = 0;
    while (got < MSG) {
      ssize_t r = read(client_fds[i], back + got, MSG - got);
      if (r <= 0) goto out;
      got += (size_t)r;
    }
    rtt[n++] = (float)(now_us() - t0);
  }
out:
  done = 1;
  pthread_join(th, NULL);
  qsort(rtt, n, sizeof *rtt, cmp);
#define PCT(p) (n ? rtt[(size_t)((double)(n - 1) * (p))] : 0)
  printf("{\"roundTrips\":%zu,\"p50Us\":%.1f,\"p90Us\":%.1f,\"p99Us\":%.1f,\"p999Us\":%.1f,\"maxUs\":%.1f}\n", n, PCT(0.5), PCT(0.9),
         PCT(0.99), PCT(0.999), n ? rtt[n - 1] : 0);
  return 0;
}
