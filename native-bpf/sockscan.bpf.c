// SPDX-License-Identifier: GPL-2.0
// sockwatch BPF spike (issue 13): socket iterator programs that apply the queue thresholds, the
// state mask, the family mask and local-port exclusions in the kernel, count sockets per state, and
// emit only offenders (struct sw_rec, 64 bytes each) to the reader of the iterator. One program per
// protocol (iter/tcp walks the listening and established hashes of the reader's network namespace,
// iter/udp the UDP table). Configuration and counters live in .bss, which the loader maps: it sets
// the configuration and zeroes the counters before each scan (one scanner per loaded object).
//
// Queue values follow the kernel's own inet_diag (tcp_diag_get_info, udp_diag_get_info):
//   TCP LISTEN: recv = accept queue (sk_ack_backlog), send = backlog limit (sk_max_ack_backlog)
//   other TCP:  recv = rcv_nxt - copied_seq (≥ 0), send = write_seq - snd_una
//   TIME_WAIT, NEW_SYN_RECV (request sockets): 0 and 0; TIME_WAIT counts under its substate
//   UDP:        recv = sk_rmem_alloc - forward_deficit, send = sk_wmem_alloc - 1
// Built with clang -O2 -g -target bpf against vmlinux.h dumped from the running kernel's BTF
// (CO-RE: field offsets are relocated by libbpf at load time); see native-bpf/README.md.
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define SW_AF_INET 2
#define SW_AF_INET6 10
#define SW_TCP_ESTABLISHED 1
#define SW_TCP_SYN_RECV 3
#define SW_TCP_TIME_WAIT 6
#define SW_TCP_LISTEN 10
#define SW_TCP_NEW_SYN_RECV 12
#define SW_MAX_EXCLUDE 8
#define SW_OFF (-1)
#define SW_AT_LIMIT (-2)

struct sw_rec {
  __u8 proto;  // 6 or 17
  __u8 family;
  __u8 state;
  __u8 reasons;  // 1 recv, 2 send, 4 accept
  __u16 sport;   // host order
  __u16 dport;
  __u32 rqueue;
  __u32 wqueue;
  __u32 uid;
  __u32 pad;
  __u64 cookie;
  __u8 src[16];
  __u8 dst[16];
};

// --- configuration (set by the loader before a scan) ---
__u32 cfg_tcp_states = 0;
__u32 cfg_udp_states = 0;
__u32 cfg_families = 3;  // 1 IPv4, 2 IPv6
__s64 cfg_recv = SW_OFF;
__s64 cfg_send = SW_OFF;
__s64 cfg_accept = SW_OFF;
__u32 cfg_nexclude = 0;
__u16 cfg_exclude_lo[SW_MAX_EXCLUDE] = {};
__u16 cfg_exclude_hi[SW_MAX_EXCLUDE] = {};

// --- counters (zeroed by the loader before a scan) ---
__u32 tcp_walked[16] = {};  // every socket the iterator visited, by state (TIME_WAIT by substate)
__u32 udp_walked[16] = {};
__u64 matched = 0;  // sockets in the masks and filters (netlink's "sockets seen")
__u64 offenders = 0;

static __always_inline int family_ok(__u16 family) {
  if (family == SW_AF_INET) return cfg_families & 1;
  if (family == SW_AF_INET6) return cfg_families & 2;
  return 0;
}

static __always_inline int port_excluded(__u16 port) {
  for (int i = 0; i < SW_MAX_EXCLUDE; i++) {
    if (i >= cfg_nexclude) break;
    if (port >= cfg_exclude_lo[i] && port <= cfg_exclude_hi[i]) return 1;
  }
  return 0;
}

static __always_inline __u8 reasons_of(__u8 state, __u32 rq, __u32 wq, int tcp) {
  __u8 r = 0;
  if (tcp && state == SW_TCP_LISTEN) {
    if (cfg_accept == SW_AT_LIMIT ? (wq > 0 && rq >= wq) : (cfg_accept >= 0 && (__s64)rq > cfg_accept)) r |= 4;
    return r;
  }
  if (cfg_recv >= 0 && (__s64)rq > cfg_recv) r |= 1;
  if (cfg_send >= 0 && (__s64)wq > cfg_send) r |= 2;
  return r;
}

// One offender record to the reader of the iterator.
static __always_inline void emit(struct seq_file *seq, struct sock_common *skc, __u8 proto, __u8 state, __u8 reasons,
                                 __u32 rq, __u32 wq, __u32 uid, __u64 cookie) {
  struct sw_rec rec = {};
  __u16 family = skc->skc_family;
  offenders++;
  rec.proto = proto;
  rec.family = family;
  rec.state = state;
  rec.reasons = reasons;
  rec.sport = skc->skc_num;
  rec.dport = __builtin_bswap16(skc->skc_dport);
  rec.rqueue = rq;
  rec.wqueue = wq;
  rec.uid = uid;
  rec.cookie = cookie;
  if (family == SW_AF_INET) {
    __builtin_memcpy(rec.src, &skc->skc_rcv_saddr, 4);
    __builtin_memcpy(rec.dst, &skc->skc_daddr, 4);
  } else {
    BPF_CORE_READ_INTO(&rec.src, skc, skc_v6_rcv_saddr.in6_u.u6_addr8);
    BPF_CORE_READ_INTO(&rec.dst, skc, skc_v6_daddr.in6_u.u6_addr8);
  }
  bpf_seq_write(seq, &rec, sizeof(rec));
}

SEC("iter/tcp")
int sw_scan_tcp(struct bpf_iter__tcp *ctx) {
  struct sock_common *skc = ctx->sk_common;
  if (!skc) return 0;
  __u8 state = skc->skc_state;
  if (state == SW_TCP_TIME_WAIT) {
    struct tcp_timewait_sock *tw = bpf_skc_to_tcp_timewait_sock(skc);
    if (tw) state = tw->tw_sk.tw_substate;
  }
  tcp_walked[state & 15]++;
  if (!(cfg_tcp_states & (1u << (state & 31)))) return 0;
  __u16 family = skc->skc_family;
  if (!family_ok(family)) return 0;
  __u16 sport = skc->skc_num;
  if (port_excluded(sport)) return 0;
  matched++;
  // TIME_WAIT and request sockets hold no queues (zero in inet_diag too).
  if (skc->skc_state == SW_TCP_TIME_WAIT || state == SW_TCP_NEW_SYN_RECV) return 0;
  struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
  if (!tp) return 0;
  __u32 rq, wq;
  if (state == SW_TCP_LISTEN) {
    rq = tp->inet_conn.icsk_inet.sk.sk_ack_backlog;
    wq = tp->inet_conn.icsk_inet.sk.sk_max_ack_backlog;
  } else {
    __s32 d = (__s32)(tp->rcv_nxt - tp->copied_seq);
    rq = d > 0 ? (__u32)d : 0;
    wq = tp->write_seq - tp->snd_una;
  }
  __u8 reasons = reasons_of(state, rq, wq, 1);
  if (reasons) emit(ctx->meta->seq, skc, 6, state, reasons, rq, wq, ctx->uid, bpf_get_socket_cookie(skc));
  return 0;
}

SEC("iter/udp")
int sw_scan_udp(struct bpf_iter__udp *ctx) {
  struct udp_sock *udp = ctx->udp_sk;
  if (!udp) return 0;
  struct sock *sk = &udp->inet.sk;
  struct sock_common *skc = &sk->__sk_common;
  __u8 state = skc->skc_state;
  udp_walked[state & 15]++;
  if (!(cfg_udp_states & (1u << (state & 31)))) return 0;
  __u16 family = skc->skc_family;
  if (!family_ok(family)) return 0;
  __u16 sport = skc->skc_num;
  if (port_excluded(sport)) return 0;
  matched++;
  __s32 r = sk->sk_backlog.rmem_alloc.counter - udp->forward_deficit;
  __u32 rq = r > 0 ? (__u32)r : 0;
  __u32 wq = sk->sk_wmem_alloc.refs.counter - 1;
  __u8 reasons = reasons_of(state, rq, wq, 0);
  if (reasons) emit(ctx->meta->seq, skc, 17, state, reasons, rq, wq, ctx->uid, bpf_get_socket_cookie(sk));
  return 0;
}
