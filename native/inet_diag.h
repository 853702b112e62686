// inet_diag requests and replies as plain structs: no allocation, every length checked.
#pragma once

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <stddef.h>
#include <stdint.h>

namespace sw {

constexpr int kMaxSkmem = 16;
// The highest socket state the addon knows: TCP_BOUND_INACTIVE (13). A reply whose state is 0 or
// above this (a future kernel's, or a damaged message) is skipped and counted, never used as an
// index or shift count.
constexpr uint8_t kMaxKnownState = 13;
inline bool KnownState(unsigned state) { return state >= 1 && state <= kMaxKnownState; }
// Returned (positive) by the parsers for a well-formed message whose state the addon does not know.
constexpr int kUnknownState = 1;  // the kernel sends SK_MEMINFO_VARS (9 today); older ones send fewer

struct SockRecord {
  uint8_t family = 0;
  uint8_t protocol = 0;
  uint8_t state = 0;
  uint8_t timer = 0;
  uint8_t retrans = 0;
  uint8_t skmem_count = 0;
  uint16_t sport = 0;  // host order
  uint16_t dport = 0;
  uint8_t src[16] = {0};  // network order; IPv4 uses the first 4 bytes
  uint8_t dst[16] = {0};
  uint32_t ifindex = 0;
  uint32_t expires = 0;
  uint32_t rqueue = 0;
  uint32_t wqueue = 0;
  uint32_t uid = 0;
  uint32_t inode = 0;
  uint64_t cookie = 0;
  uint32_t skmem[kMaxSkmem] = {0};
};

// Parses one SOCK_DIAG_BY_FAMILY reply. `protocol` is the one the request asked for (the reply
// does not carry it). Unknown attributes are skipped; returns 0, kUnknownState, or -EBADMSG when
// truncated.
int ParseInetDiagMsg(const struct nlmsghdr* h, uint8_t protocol, bool want_skmem, SockRecord* out);

// Reads only what counting and thresholds need (family, state, queues) after checking the
// message length; the rest of *out is left as it was. Returns 0, kUnknownState (*out->state is
// then 0) or -EBADMSG.
int PeekInetDiagMsg(const struct nlmsghdr* h, uint8_t protocol, SockRecord* out);

// Builds a dump request into buf (cap bytes). Returns its length, or 0 when it does not fit.
size_t BuildDumpRequest(uint8_t* buf, size_t cap, uint32_t seq, uint8_t family, uint8_t protocol, uint32_t states,
                        uint8_t ext, const uint8_t* bytecode, size_t bytecode_len);

// Builds the legacy TCPDIAG_GETSOCK dump (struct inet_diag_req). The kernel maps it to family
// AF_UNSPEC, so one walk of the TCP hash returns IPv4 and IPv6 sockets (the v2 request needs a
// walk per family, and each walk covers the whole host-wide hash). TCP only.
size_t BuildTcpBothFamiliesDumpRequest(uint8_t* buf, size_t cap, uint32_t seq, uint32_t states, uint8_t ext,
                                       const uint8_t* bytecode, size_t bytecode_len);

// Builds an exact lookup (no NLM_F_DUMP) for one socket by 4-tuple and cookie.
// cookie == ~0ull means INET_DIAG_NOCOOKIE.
size_t BuildLookupRequest(uint8_t* buf, size_t cap, uint32_t seq, uint8_t family, uint8_t protocol, const uint8_t* src,
                          uint16_t sport, const uint8_t* dst, uint16_t dport, uint64_t cookie, uint8_t ext);

// inet_diag bytecode (INET_DIAG_REQ_BYTECODE) evaluated in user space, the kernel's way
// (inet_diag_bc_run), for records that did not come through the kernel's filter (/proc/net/udp).
// Ops: NOP, JMP, S_GE/S_LE/D_GE/D_LE, S_EQ/D_EQ, S_COND/D_COND (port and address prefix).
// CheckBytecode first: 0 when every op is known, in bounds, and every jump lands on an op or on
// the end / reject position; -EINVAL otherwise (-EOPNOTSUPP for ops that need the kernel's socket:
// AUTO, DEV, MARK, CGROUP).
int CheckBytecode(const uint8_t* bc, size_t len);
// Whether the record passes the (checked) bytecode. An empty program accepts everything.
bool RunBytecode(const uint8_t* bc, size_t len, const SockRecord& r);

}  // namespace sw
