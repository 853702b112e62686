#include "inet_diag.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <string.h>
#include <sys/socket.h>

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
  out->state = m->idiag_state;
  out->rqueue = m->idiag_rqueue;
  out->wqueue = m->idiag_wqueue;
  return 0;
}

int ParseInetDiagMsg(const struct nlmsghdr* h, uint8_t protocol, bool want_skmem, SockRecord* out) {
  int r = PeekInetDiagMsg(h, protocol, out);
  if (r < 0) return r;
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

}  // namespace sw
