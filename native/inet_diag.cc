#include "inet_diag.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <vector>

namespace sw {

namespace {

size_t AddressLength(uint8_t family) { return family == AF_INET6 ? 16 : 4; }

void FillHeader(struct nlmsghdr* h, size_t len, uint16_t flags, uint32_t seq) {
  h->nlmsg_len = static_cast<uint32_t>(len);
  h->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  h->nlmsg_flags = flags;
  h->nlmsg_seq = seq;
  h->nlmsg_pid = 0;
}

}  // namespace

int PeekInetDiagMsg(const struct nlmsghdr* h, uint8_t protocol, SockRecord* out) {
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg))) return -EBADMSG;
  const struct inet_diag_msg* m = reinterpret_cast<const struct inet_diag_msg*>(NLMSG_DATA(h));
  if (m->idiag_family != AF_INET && m->idiag_family != AF_INET6) return -EBADMSG;
  out->family = m->idiag_family;
  out->protocol = protocol;
  out->rqueue = m->idiag_rqueue;
  out->wqueue = m->idiag_wqueue;
  if (!KnownState(m->idiag_state)) {
    out->state = 0;
    return kUnknownState;
  }
  out->state = m->idiag_state;
  return 0;
}

int ParseInetDiagMsg(const struct nlmsghdr* h, uint8_t protocol, bool want_skmem, SockRecord* out) {
  int r = PeekInetDiagMsg(h, protocol, out);
  if (r != 0) return r;
  const struct inet_diag_msg* m = reinterpret_cast<const struct inet_diag_msg*>(NLMSG_DATA(h));
  out->timer = m->idiag_timer;
  out->retrans = m->idiag_retrans;
  out->sport = ntohs(m->id.idiag_sport);
  out->dport = ntohs(m->id.idiag_dport);
  memset(out->src, 0, sizeof(out->src));
  memset(out->dst, 0, sizeof(out->dst));
  size_t alen = AddressLength(m->idiag_family);
  memcpy(out->src, m->id.idiag_src, alen);
  memcpy(out->dst, m->id.idiag_dst, alen);
  out->ifindex = m->id.idiag_if;
  out->cookie = static_cast<uint64_t>(m->id.idiag_cookie[0]) | (static_cast<uint64_t>(m->id.idiag_cookie[1]) << 32);
  out->expires = m->idiag_expires;
  out->uid = m->idiag_uid;
  out->inode = m->idiag_inode;
  out->skmem_count = 0;
  if (!want_skmem) return 0;

  // Attributes follow the fixed part, each 4-byte aligned; unknown ones are skipped.
  size_t off = NLMSG_LENGTH(sizeof(struct inet_diag_msg));
  const uint8_t* base = reinterpret_cast<const uint8_t*>(h);
  while (h->nlmsg_len >= off + sizeof(struct rtattr)) {
    const struct rtattr* a = reinterpret_cast<const struct rtattr*>(base + off);
    if (a->rta_len < sizeof(struct rtattr) || a->rta_len > h->nlmsg_len - off) return -EBADMSG;
    if (a->rta_type == INET_DIAG_SKMEMINFO) {
      size_t n = (a->rta_len - RTA_LENGTH(0)) / sizeof(uint32_t);
      if (n > static_cast<size_t>(kMaxSkmem)) n = kMaxSkmem;
      memcpy(out->skmem, RTA_DATA(a), n * sizeof(uint32_t));
      out->skmem_count = static_cast<uint8_t>(n);
    }
    off += RTA_ALIGN(a->rta_len);
  }
  return 0;
}

// Lays out a dump request: header, a zeroed body of body_size bytes, then the bytecode attribute.
// Returns the length (0 when it does not fit) and points *body at the body for the caller to fill.
static size_t LayOutDumpRequest(uint8_t* buf, size_t cap, uint32_t seq, uint16_t type, size_t body_size,
                                const uint8_t* bytecode, size_t bytecode_len, void** body) {
  size_t base = NLMSG_LENGTH(body_size);
  size_t attr = bytecode_len > 0 ? RTA_SPACE(bytecode_len) : 0;
  size_t len = NLMSG_ALIGN(base) + attr;
  if (len > cap || bytecode_len > 0xFFFF - RTA_LENGTH(0)) return 0;
  memset(buf, 0, len);
  struct nlmsghdr* h = reinterpret_cast<struct nlmsghdr*>(buf);
  FillHeader(h, len, NLM_F_REQUEST | NLM_F_DUMP, seq);
  h->nlmsg_type = type;
  if (bytecode_len > 0) {
    struct rtattr* a = reinterpret_cast<struct rtattr*>(buf + NLMSG_ALIGN(base));
    a->rta_type = INET_DIAG_REQ_BYTECODE;
    a->rta_len = static_cast<unsigned short>(RTA_LENGTH(bytecode_len));
    memcpy(RTA_DATA(a), bytecode, bytecode_len);
  }
  *body = NLMSG_DATA(h);
  return len;
}

size_t BuildDumpRequest(uint8_t* buf, size_t cap, uint32_t seq, uint8_t family, uint8_t protocol, uint32_t states,
                        uint8_t ext, const uint8_t* bytecode, size_t bytecode_len) {
  void* body = nullptr;
  size_t len = LayOutDumpRequest(buf, cap, seq, SOCK_DIAG_BY_FAMILY, sizeof(struct inet_diag_req_v2), bytecode,
                                 bytecode_len, &body);
  if (len == 0) return 0;
  struct inet_diag_req_v2* r = static_cast<struct inet_diag_req_v2*>(body);
  r->sdiag_family = family;
  r->sdiag_protocol = protocol;
  r->idiag_ext = ext;
  r->idiag_states = states;
  return len;
}

size_t BuildTcpBothFamiliesDumpRequest(uint8_t* buf, size_t cap, uint32_t seq, uint32_t states, uint8_t ext,
                                       const uint8_t* bytecode, size_t bytecode_len) {
  void* body = nullptr;
  size_t len =
      LayOutDumpRequest(buf, cap, seq, TCPDIAG_GETSOCK, sizeof(struct inet_diag_req), bytecode, bytecode_len, &body);
  if (len == 0) return 0;
  struct inet_diag_req* r = static_cast<struct inet_diag_req*>(body);
  r->idiag_family = AF_INET;  // ignored: the kernel dumps every family for this request
  r->idiag_ext = ext;
  r->idiag_states = states;
  return len;
}

size_t BuildLookupRequest(uint8_t* buf, size_t cap, uint32_t seq, uint8_t family, uint8_t protocol, const uint8_t* src,
                          uint16_t sport, const uint8_t* dst, uint16_t dport, uint64_t cookie, uint8_t ext) {
  size_t len = NLMSG_LENGTH(sizeof(struct inet_diag_req_v2));
  if (len > cap) return 0;
  memset(buf, 0, len);
  struct nlmsghdr* h = reinterpret_cast<struct nlmsghdr*>(buf);
  FillHeader(h, len, NLM_F_REQUEST, seq);
  struct inet_diag_req_v2* r = reinterpret_cast<struct inet_diag_req_v2*>(NLMSG_DATA(h));
  r->sdiag_family = family;
  r->sdiag_protocol = protocol;
  r->idiag_ext = ext;
  r->idiag_states = ~0u;
  r->id.idiag_sport = htons(sport);
  r->id.idiag_dport = htons(dport);
  size_t alen = AddressLength(family);
  memcpy(r->id.idiag_src, src, alen);
  memcpy(r->id.idiag_dst, dst, alen);
  r->id.idiag_cookie[0] = static_cast<uint32_t>(cookie & 0xFFFFFFFFu);
  r->id.idiag_cookie[1] = static_cast<uint32_t>(cookie >> 32);
  return len;
}

namespace {

// Op codes of enum inet_diag_bc_op_code (linux/inet_diag.h), spelled out: older headers lack some.
enum : uint8_t {
  kBcNop = 0,
  kBcJmp = 1,
  kBcSGe = 2,
  kBcSLe = 3,
  kBcDGe = 4,
  kBcDLe = 5,
  kBcAuto = 6,
  kBcSCond = 7,
  kBcDCond = 8,
  kBcDevCond = 9,
  kBcMarkCond = 10,
  kBcSEq = 11,
  kBcDEq = 12,
  kBcCgroupCond = 13,
};

constexpr size_t kOpSize = 4;        // {u8 code; u8 yes; u16 no}
constexpr size_t kHostcondSize = 8;  // {u8 family; u8 prefix_len; (pad); int port}, then the address

struct Op {
  uint8_t code;
  uint8_t yes;
  uint16_t no;
};

Op ReadOp(const uint8_t* p) {
  Op op;
  op.code = p[0];
  op.yes = p[1];
  memcpy(&op.no, p + 2, sizeof(op.no));
  return op;
}

// Length of the op at `off` with its operands, or 0 when it is unknown or runs past `len`.
size_t OpLength(const uint8_t* bc, size_t len, size_t off, int* err) {
  if (len - off < kOpSize) return 0;
  switch (bc[off]) {
    case kBcNop:
    case kBcJmp: return kOpSize;
    case kBcSGe:
    case kBcSLe:
    case kBcDGe:
    case kBcDLe:
    case kBcSEq:
    case kBcDEq: return len - off >= 2 * kOpSize ? 2 * kOpSize : 0;
    case kBcSCond:
    case kBcDCond: {
      if (len - off < kOpSize + kHostcondSize) return 0;
      uint8_t family = bc[off + kOpSize];
      uint8_t prefix = bc[off + kOpSize + 1];
      size_t alen = family == AF_INET ? 4 : family == AF_INET6 ? 16 : family == AF_UNSPEC ? 0 : SIZE_MAX;
      if (alen == SIZE_MAX || prefix > alen * 8) return 0;
      size_t n = kOpSize + kHostcondSize + alen;
      return len - off >= n ? n : 0;
    }
    case kBcAuto:
    case kBcDevCond:
    case kBcMarkCond:
    case kBcCgroupCond: *err = -EOPNOTSUPP; return 0;
    default: return 0;
  }
}

// The first `bits` bits of a and b are equal.
bool PrefixMatch(const uint8_t* a, const uint8_t* b, unsigned bits) {
  unsigned bytes = bits / 8;
  if (memcmp(a, b, bytes) != 0) return false;
  unsigned rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xFF00u >> rest);
  return (a[bytes] & mask) == (b[bytes] & mask);
}

bool CondMatches(const uint8_t* op, bool source, const SockRecord& r) {
  const uint8_t* cond = op + kOpSize;
  uint8_t family = cond[0];
  uint8_t prefix = cond[1];
  int32_t port;
  memcpy(&port, cond + 4, sizeof(port));
  if (port != -1 && port != (source ? r.sport : r.dport)) return false;
  const uint8_t* want = cond + kHostcondSize;
  const uint8_t* addr = source ? r.src : r.dst;
  // The family test comes before the prefix length, as in the kernel: an AF_INET condition with
  // prefix 0 (0.0.0.0/0) still rejects a plain IPv6 socket.
  if (family != AF_UNSPEC && family != r.family) {
    // An IPv4 condition matches an IPv4-mapped IPv6 address (::ffff:a.b.c.d), as in the kernel.
    if (family != AF_INET || r.family != AF_INET6) return false;
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (memcmp(addr, kMapped, sizeof(kMapped)) != 0) return false;
    return PrefixMatch(addr + 12, want, prefix);
  }
  if (prefix == 0) return true;
  if (family == AF_UNSPEC) return false;  // a prefix needs an address: CheckBytecode allows 0 only
  return PrefixMatch(addr, want, prefix);
}

}  // namespace

int CheckBytecode(const uint8_t* bc, size_t len) {
  if (len > 0xFFFF) return -EINVAL;
  // Op boundaries, so every jump can be checked to land on one.
  std::vector<bool> starts(len + 1, false);
  size_t off = 0;
  while (off < len) {
    int err = -EINVAL;
    size_t n = OpLength(bc, len, off, &err);
    if (n == 0) return err;
    starts[off] = true;
    off += n;
  }
  starts[len] = true;
  for (off = 0; off < len;) {
    int err = -EINVAL;
    size_t n = OpLength(bc, len, off, &err);
    Op op = ReadOp(bc + off);
    // Jumps go forward by whole ops, past this op's operands, to an op, the end, or end + 4 (reject).
    size_t targets[2] = {off + op.yes, off + op.no};
    bool no_used = op.code != kBcNop;   // NOP always takes yes
    bool yes_used = op.code != kBcJmp;  // JMP always takes no
    for (int i = 0; i < 2; i++) {
      if ((i == 0 && !yes_used) || (i == 1 && !no_used)) continue;
      size_t t = targets[i];
      size_t step = t - off;
      if (step < n || (step & 3) != 0) return -EINVAL;
      if (t != len + 4 && (t > len || !starts[t])) return -EINVAL;
    }
    off += n;
  }
  return 0;
}

bool RunBytecode(const uint8_t* bc, size_t len, const SockRecord& r) {
  size_t off = 0;
  while (off < len) {
    int err = 0;
    size_t n = OpLength(bc, len, off, &err);
    if (n == 0) return false;  // unchecked garbage: reject rather than read past the program
    Op op = ReadOp(bc + off);
    bool yes;
    uint16_t arg = 0;
    if (n == 2 * kOpSize) memcpy(&arg, bc + off + kOpSize + 2, sizeof(arg));  // the port rides in op[1].no
    switch (op.code) {
      case kBcNop: yes = true; break;
      case kBcJmp: yes = false; break;
      case kBcSGe: yes = r.sport >= arg; break;
      case kBcSLe: yes = r.sport <= arg; break;
      case kBcDGe: yes = r.dport >= arg; break;
      case kBcDLe: yes = r.dport <= arg; break;
      case kBcSEq: yes = r.sport == arg; break;
      case kBcDEq: yes = r.dport == arg; break;
      case kBcSCond:
      case kBcDCond: yes = CondMatches(bc + off, op.code == kBcSCond, r); break;
      default: return false;
    }
    size_t step = yes ? op.yes : op.no;
    if (step == 0) return false;
    off += step;
  }
  return off == len;
}

}  // namespace sw
