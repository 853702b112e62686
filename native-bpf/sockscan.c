// sockwatch BPF spike (issue 13): loads native-bpf/sockscan.bpf.c (embedded as a libbpf skeleton),
// attaches its TCP and UDP socket iterators, and scans like bench/floor.c does, so the two compare
// call for call. libbpf, libelf and zlib are linked statically (no shared library beyond libc).
//
//   sockscan [-r runs] [-w warmups] [-p protomask] [-f familymask] [-t tcpstates] [-u udpstates]
//            [-R recv] [-S send] [-A accept] [-x lo-hi,...] [-o]
//
//   protomask 1 TCP, 2 UDP; familymask 1 IPv4, 2 IPv6; thresholds: -1 off, accept -2 = at the
//   backlog limit. -x: local port ranges left out (at most 8). -o prints every offender of the last
//   scan as a JSON line before the summary.
//   Output: {"ms":[wall ms per scan...],"cpuMs":[...],"sockets":N (in masks and filters),
//            "walked":N (visited),"offenders":N,"bytes":N,"tcpWalked":[per state],"udpWalked":[...]}
//   A load or attach failure (no BTF, no iterators, not privileged, verifier) prints one line on
//   stderr starting with "sockscan: " and exits 3; bad arguments exit 2.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sockscan.skel.h"

#define MAX_RUNS 100000
#define BUF_SIZE (256 * 1024)

struct sw_rec {
  uint8_t proto, family, state, reasons;
  uint16_t sport, dport;
  uint32_t rqueue, wqueue, uid, pad;
  uint64_t cookie;
  uint8_t src[16], dst[16];
};

static char last_libbpf_line[512];
static int on_libbpf(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  vsnprintf(last_libbpf_line, sizeof last_libbpf_line, fmt, ap);
  if (getenv("SOCKSCAN_VERBOSE")) fputs(last_libbpf_line, stderr);
  return 0;
}

static double clock_ms(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void fail(const char* what, int err) {
  size_t n = strlen(last_libbpf_line);
  while (n && last_libbpf_line[n - 1] == '\n') last_libbpf_line[--n] = 0;
  fprintf(stderr, "sockscan: %s: %s%s%s\n", what, strerror(err < 0 ? -err : err), n ? " — " : "", last_libbpf_line);
  exit(3);
}

static long num(const char* s, const char* flag) {
  char* end;
  long v = strtol(s, &end, 0);
  if (*s == 0 || *end != 0) {
    fprintf(stderr, "sockscan: %s: not a number: %s\n", flag, s);
    exit(2);
  }
  return v;
}

static void print_addr(const uint8_t* a, int family) {
  if (family == 2) {
    printf("\"%u.%u.%u.%u\"", a[0], a[1], a[2], a[3]);
  } else {
    printf("\"");
    for (int i = 0; i < 16; i += 2) printf("%s%x", i ? ":" : "", (a[i] << 8) | a[i + 1]);
    printf("\"");
  }
}

int main(int argc, char** argv) {
  int runs = 11, warmups = 3, print_offenders = 0;
  unsigned protocols = 3;
  struct sockscan* skel;
  libbpf_set_print(on_libbpf);
  skel = sockscan__open();
  if (!skel) fail("open", errno);
  int c;
  while ((c = getopt(argc, argv, "r:w:p:f:t:u:R:S:A:x:o")) != -1) {
    switch (c) {
      case 'r': runs = (int)num(optarg, "-r"); break;
      case 'w': warmups = (int)num(optarg, "-w"); break;
      case 'p': protocols = (unsigned)num(optarg, "-p"); break;
      case 'f': skel->data->cfg_families = (uint32_t)num(optarg, "-f"); break;
      case 't': skel->bss->cfg_tcp_states = (uint32_t)num(optarg, "-t"); break;
      case 'u': skel->bss->cfg_udp_states = (uint32_t)num(optarg, "-u"); break;
      case 'R': skel->data->cfg_recv = num(optarg, "-R"); break;
      case 'S': skel->data->cfg_send = num(optarg, "-S"); break;
      case 'A': skel->data->cfg_accept = num(optarg, "-A"); break;
      case 'o': print_offenders = 1; break;
      case 'x': {
        char* save = NULL;
        for (char* tok = strtok_r(optarg, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
          unsigned i = skel->bss->cfg_nexclude;
          if (i >= 8) {
            fprintf(stderr, "sockscan: -x: at most 8 ranges\n");
            return 2;
          }
          char* dash = strchr(tok, '-');
          if (dash) *dash = 0;
          skel->bss->cfg_exclude_lo[i] = (uint16_t)num(tok, "-x");
          skel->bss->cfg_exclude_hi[i] = (uint16_t)num(dash ? dash + 1 : tok, "-x");
          skel->bss->cfg_nexclude = i + 1;
        }
        break;
      }
      default: return 2;
    }
  }
  if (runs < 1 || runs > MAX_RUNS || warmups < 0) {
    fprintf(stderr, "sockscan: -r must be 1..%d\n", MAX_RUNS);
    return 2;
  }
  if (!(protocols & 1)) bpf_program__set_autoload(skel->progs.sw_scan_tcp, false);
  if (!(protocols & 2)) bpf_program__set_autoload(skel->progs.sw_scan_udp, false);
  int err = sockscan__load(skel);
  if (err) fail("load (verifier, BTF or privileges)", err);
  struct bpf_link* links[2] = {0};
  struct bpf_program* progs[2] = {skel->progs.sw_scan_tcp, skel->progs.sw_scan_udp};
  for (int p = 0; p < 2; p++) {
    if (!(protocols & (1u << p))) continue;
    links[p] = bpf_program__attach_iter(progs[p], NULL);
    if (!links[p]) fail(p == 0 ? "attach iter/tcp" : "attach iter/udp", errno);
  }

  static char buf[BUF_SIZE];
  double* ms = calloc((size_t)runs, sizeof(double));
  double* cpu = calloc((size_t)runs, sizeof(double));
  uint64_t bytes = 0;
  for (int i = -warmups; i < runs; i++) {
    memset(skel->bss->tcp_walked, 0, sizeof skel->bss->tcp_walked);
    memset(skel->bss->udp_walked, 0, sizeof skel->bss->udp_walked);
    skel->bss->matched = 0;
    skel->bss->offenders = 0;
    bytes = 0;
    double t0 = clock_ms(CLOCK_MONOTONIC), c0 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
    int last = i == runs - 1;
    for (int p = 0; p < 2; p++) {
      if (!links[p]) continue;
      int fd = bpf_iter_create(bpf_link__fd(links[p]));
      if (fd < 0) fail("bpf_iter_create", errno);
      ssize_t n;
      while ((n = read(fd, buf, sizeof buf)) > 0) {
        bytes += (uint64_t)n;
        if (last && print_offenders) {
          for (ssize_t off = 0; off + (ssize_t)sizeof(struct sw_rec) <= n; off += sizeof(struct sw_rec)) {
            const struct sw_rec* r = (const struct sw_rec*)(buf + off);
            printf("{\"proto\":%u,\"family\":%u,\"state\":%u,\"reasons\":%u,\"local\":", r->proto, r->family, r->state, r->reasons);
            print_addr(r->src, r->family);
            printf(",\"sport\":%u,\"remote\":", r->sport);
            print_addr(r->dst, r->family);
            printf(",\"dport\":%u,\"recvQ\":%u,\"sendQ\":%u,\"uid\":%u,\"cookie\":\"%llu\"}\n", r->dport, r->rqueue, r->wqueue,
                   r->uid, (unsigned long long)r->cookie);
          }
        }
      }
      if (n < 0) fail("read iterator", errno);
      close(fd);
    }
    if (i >= 0) {
      ms[i] = clock_ms(CLOCK_MONOTONIC) - t0;
      cpu[i] = clock_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
    }
  }
  uint64_t walked = 0;
  for (int s = 0; s < 16; s++) walked += skel->bss->tcp_walked[s] + skel->bss->udp_walked[s];
  printf("{\"ms\":[");
  for (int i = 0; i < runs; i++) printf("%s%.4f", i ? "," : "", ms[i]);
  printf("],\"cpuMs\":[");
  for (int i = 0; i < runs; i++) printf("%s%.4f", i ? "," : "", cpu[i]);
  printf("],\"sockets\":%llu,\"walked\":%llu,\"offenders\":%llu,\"bytes\":%llu,\"tcpWalked\":[",
         (unsigned long long)skel->bss->matched, (unsigned long long)walked, (unsigned long long)skel->bss->offenders,
         (unsigned long long)bytes);
  for (int s = 0; s < 16; s++) printf("%s%u", s ? "," : "", skel->bss->tcp_walked[s]);
  printf("],\"udpWalked\":[");
  for (int s = 0; s < 16; s++) printf("%s%u", s ? "," : "", skel->bss->udp_walked[s]);
  printf("]}\n");
  for (int p = 0; p < 2; p++) bpf_link__destroy(links[p]);
  sockscan__destroy(skel);
  return 0;
}
