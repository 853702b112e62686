/*
 * floor: the least work that answers "how many sockets, how much is queued" through
 * NETLINK_SOCK_DIAG. One netlink socket, reused; per (protocol, family) one dump request;
 * a 64 KiB recv() buffer; only the fixed inet_diag_msg fields are touched (no attributes).
 * The benchmark harness compiles it with cc -O2 and reads its one line of JSON output.
 *
 *   floor [-r runs] [-w warmups] [-p protomask] [-f familymask] [-t tcpstates] [-u udpstates]
 *         [-b bytecode-hex] [-R so_rcvbuf] [-1]
 *
 *   protomask: 1 = TCP, 2 = UDP; familymask: 1 = IPv4, 2 = IPv6 (same bits as the addon).
 *   -1 dumps TCP of both families in one walk (legacy TCPDIAG_GETSOCK), as the addon does.
 *   -R sets SO_RCVBUF (the harness leaves the default: it made no measurable difference).
 *   Output: {"ms":[wall ms per full pass...],"cpuMs":[process CPU ms per pass...],"sockets":N,
 *            "recvQ":N,"sendQ":N,"bytes":N,"recvCalls":N}  — the counters describe the last pass. Errors go to stderr with exit status 1.
 */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RECV_BUF_SIZE (64 * 1024)
#define MAX_BYTECODE 4096
#define MAX_RUNS 10000

struct pass_counts {
  uint64_t sockets;
  uint64_t recv_q;
  uint64_t send_q;
  uint64_t bytes;
  uint64_t recv_calls;
};

struct options {
  int runs;
  int warmups;
  unsigned protocols;
  unsigned families;
  int rcvbuf;
  uint32_t tcp_states;
  uint32_t udp_states;
  uint8_t bytecode[MAX_BYTECODE];
  size_t bytecode_len;
  int one_walk;
};

static double clock_ms(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int parse_hex(const char *hex, uint8_t *out, size_t cap, size_t *len) {
  size_t n = strlen(hex);
  if (n % 2 != 0 || n / 2 > cap) return -1;
  for (size_t i = 0; i < n / 2; i++) {
    int hi = hex_value(hex[2 * i]);
    int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  *len = n / 2;
  return 0;
}

/* Sends a dump request of `type` whose body (body_len bytes) is followed by the kernel filter. */
static int send_request(int fd, uint32_t seq, uint16_t type, const void *body, size_t body_len, const struct options *o) {
  uint8_t msg[NLMSG_LENGTH(sizeof(struct inet_diag_req_v2)) + RTA_LENGTH(MAX_BYTECODE) + 8];
  memset(msg, 0, sizeof(msg));
  struct nlmsghdr *nlh = (struct nlmsghdr *)msg;
  size_t len = NLMSG_LENGTH(body_len);
  memcpy(NLMSG_DATA(nlh), body, body_len);
  if (o->bytecode_len > 0) {
    struct rtattr *rta = (struct rtattr *)(msg + NLMSG_ALIGN(len));
    rta->rta_type = INET_DIAG_REQ_BYTECODE;
    rta->rta_len = (unsigned short)RTA_LENGTH(o->bytecode_len);
    memcpy(RTA_DATA(rta), o->bytecode, o->bytecode_len);
    len = NLMSG_ALIGN(len) + RTA_ALIGN(rta->rta_len);
  }
  nlh->nlmsg_len = (uint32_t)len;
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = seq;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t n = sendto(fd, msg, len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
  return n == (ssize_t)len ? 0 : -errno;
}

static int send_dump_request(int fd, uint32_t seq, uint8_t family, uint8_t protocol, uint32_t states,
                             const struct options *o) {
  struct inet_diag_req_v2 req = {.sdiag_family = family, .sdiag_protocol = protocol, .idiag_states = states};
  return send_request(fd, seq, SOCK_DIAG_BY_FAMILY, &req, sizeof(req), o);
}

/* -1: the legacy TCPDIAG_GETSOCK request, which the kernel maps to AF_UNSPEC, so one walk of the
 * TCP hash returns both families (what the addon sends when both families are asked for). */
static int send_one_walk_tcp_request(int fd, uint32_t seq, uint32_t states, const struct options *o) {
  struct inet_diag_req req = {.idiag_family = AF_INET, .idiag_states = states};
  return send_request(fd, seq, TCPDIAG_GETSOCK, &req, sizeof(req), o);
}

/* Reads one dump to NLMSG_DONE. Returns 0, or -errno (from the kernel or from recv). */
static int read_dump(int fd, uint32_t seq, uint8_t *buf, struct pass_counts *c) {
  for (;;) {
    ssize_t n = recv(fd, buf, RECV_BUF_SIZE, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    c->recv_calls++;
    c->bytes += (uint64_t)n;
    size_t left = (size_t)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_DONE) return 0;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        return e->error != 0 ? e->error : -EPROTO;
      }
      /* replies to the one-walk request carry its type, TCPDIAG_GETSOCK */
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY && h->nlmsg_type != TCPDIAG_GETSOCK) continue;
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) return -EBADMSG;
      const struct inet_diag_msg *m = NLMSG_DATA(h);
      c->sockets++;
      c->recv_q += m->idiag_rqueue;
      c->send_q += m->idiag_wqueue;
    }
  }
}

static int one_pass(int fd, uint32_t *seq, uint8_t *buf, const struct options *o, struct pass_counts *c) {
  static const struct {
    unsigned bit;
    uint8_t protocol;
  } protos[] = {{1, IPPROTO_TCP}, {2, IPPROTO_UDP}};
  static const struct {
    unsigned bit;
    uint8_t family;
  } fams[] = {{1, AF_INET}, {2, AF_INET6}};
  memset(c, 0, sizeof(*c));
  for (int p = 0; p < 2; p++) {
    if (!(o->protocols & protos[p].bit)) continue;
    uint32_t states = protos[p].protocol == IPPROTO_TCP ? o->tcp_states : o->udp_states;
    if (o->one_walk && protos[p].protocol == IPPROTO_TCP && o->families == 3) {
      uint32_t s = ++*seq;
      int err = send_one_walk_tcp_request(fd, s, states, o);
      if (err == 0) err = read_dump(fd, s, buf, c);
      if (err != 0) {
        fprintf(stderr, "floor: one-walk TCP dump: %s\n", strerror(-err));
        return err;
      }
      continue;
    }
    for (int f = 0; f < 2; f++) {
      if (!(o->families & fams[f].bit)) continue;
      uint32_t s = ++*seq;
      int err = send_dump_request(fd, s, fams[f].family, protos[p].protocol, states, o);
      if (err == 0) err = read_dump(fd, s, buf, c);
      if (err != 0) {
        fprintf(stderr, "floor: dump protocol %u family %u: %s\n", protos[p].protocol, fams[f].family,
                strerror(-err));
        return err;
      }
    }
  }
  return 0;
}

static unsigned long parse_number(const char *s, const char *what) {
  char *end = NULL;
  errno = 0;
  unsigned long v = strtoul(s, &end, 0);
  if (errno != 0 || end == s || *end != '\0') {
    fprintf(stderr, "floor: %s: not a number: %s\n", what, s);
    exit(1);
  }
  return v;
}

static void parse_options(int argc, char **argv, struct options *o) {
  memset(o, 0, sizeof(*o));
  o->runs = 9;
  o->warmups = 2;
  o->protocols = 3;
  o->families = 3;
  o->tcp_states = 0x1ffe;
  o->udp_states = (1u << 1) | (1u << 7);
  int c;
  while ((c = getopt(argc, argv, "r:w:p:f:t:u:b:R:1")) != -1) {
    switch (c) {
      case 'r': o->runs = (int)parse_number(optarg, "-r"); break;
      case 'w': o->warmups = (int)parse_number(optarg, "-w"); break;
      case 'p': o->protocols = (unsigned)parse_number(optarg, "-p"); break;
      case 'f': o->families = (unsigned)parse_number(optarg, "-f"); break;
      case 't': o->tcp_states = (uint32_t)parse_number(optarg, "-t"); break;
      case 'u': o->udp_states = (uint32_t)parse_number(optarg, "-u"); break;
      case 'R': o->rcvbuf = (int)parse_number(optarg, "-R"); break;
      case '1': o->one_walk = 1; break;
      case 'b':
        if (parse_hex(optarg, o->bytecode, sizeof(o->bytecode), &o->bytecode_len) != 0) {
          fprintf(stderr, "floor: -b: not an even-length hex string of at most %d bytes\n", MAX_BYTECODE);
          exit(1);
        }
        break;
      default: exit(1);
    }
  }
  if (o->runs < 1 || o->runs > MAX_RUNS) {
    fprintf(stderr, "floor: -r must be 1..%d\n", MAX_RUNS);
    exit(1);
  }
}

int main(int argc, char **argv) {
  struct options o;
  parse_options(argc, argv, &o);

  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) {
    perror("floor: socket");
    return 1;
  }
  if (o.rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o.rcvbuf, sizeof(o.rcvbuf)) != 0) {
    perror("floor: SO_RCVBUF");
    return 1;
  }
  uint8_t *buf = malloc(RECV_BUF_SIZE);
  double *ms = calloc((size_t)o.runs, sizeof(double));
  double *cpu = calloc((size_t)o.runs, sizeof(double));
  if (buf == NULL || ms == NULL || cpu == NULL) {
    fprintf(stderr, "floor: out of memory\n");
    return 1;
  }

  uint32_t seq = 0;
  struct pass_counts c;
  for (int i = 0; i < o.warmups; i++) {
    if (one_pass(fd, &seq, buf, &o, &c) != 0) return 1;
  }
  for (int i = 0; i < o.runs; i++) {
    double c0 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
    double t0 = clock_ms(CLOCK_MONOTONIC);
    if (one_pass(fd, &seq, buf, &o, &c) != 0) return 1;
    ms[i] = clock_ms(CLOCK_MONOTONIC) - t0;
    cpu[i] = clock_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
  }

  printf("{\"ms\":[");
  for (int i = 0; i < o.runs; i++) printf("%s%.4f", i ? "," : "", ms[i]);
  printf("],\"cpuMs\":[");
  for (int i = 0; i < o.runs; i++) printf("%s%.4f", i ? "," : "", cpu[i]);
  printf("],\"sockets\":%llu,\"recvQ\":%llu,\"sendQ\":%llu,\"bytes\":%llu,\"recvCalls\":%llu}\n",
         (unsigned long long)c.sockets, (unsigned long long)c.recv_q, (unsigned long long)c.send_q,
         (unsigned long long)c.bytes, (unsigned long long)c.recv_calls);
  free(cpu);
  free(ms);
  free(buf);
  close(fd);
  return 0;
}
