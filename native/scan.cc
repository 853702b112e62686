#include "scan.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <cmath>

#include "proc_udp.h"

namespace sw {

namespace {

constexpr uint8_t kExtSkmem = 1 << (INET_DIAG_SKMEMINFO - 1);

uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

bool Above(uint32_t value, int64_t threshold) { return threshold >= 0 && static_cast<int64_t>(value) > threshold; }

// Everything one socket record goes through, whichever source it came from.
class ScanSink : public MessageSink {
 public:
  // `followed`: with kScanTrack, the offenders followed so far (null when there are none yet, or
  // the scan starts over); read only.
  ScanSink(const ScanParams& p, ScanOutput* out, const TrackState* followed)
      : p_(p), out_(out), tracking_((p.flags & kScanTrack) != 0), followed_(followed) {
    followed_count_ = followed_ ? followed_->entries.size() : 0;
    if (p_.flags & kScanHistogram) {
      hist_ = true;
      bounds_ = p_.hist_bounds.data();
      nbounds_ = p_.hist_bounds.size();
      out_->hist_counts.assign(kHistSeries * (nbounds_ + 1), 0);
    }
  }

  void set_protocol(uint8_t proto) { protocol_ = proto; }

  // Most sockets are only counted: read the fixed fields the counts and thresholds need, and parse
  // the whole message (addresses, attributes) only for a socket that becomes a record or aggregate.
  int OnMessage(const struct nlmsghdr* h) override {
    if ((p_.flags & kScanTestAbortAfterFirst) && out_->sockets_seen > 0) return -ECANCELED;
    int r = PeekInetDiagMsg(h, protocol_, &rec_);
    if (r < 0) return r;
    if (r == kUnknownState) {
      out_->skipped_unknown_state++;
      return 0;
    }
    if (tracking_) {
      // The identity (TrackKey) decides whether a followed socket needs its record; Peek checked
      // that the fixed part is there.
      const struct inet_diag_msg* m = reinterpret_cast<const struct inet_diag_msg*>(NLMSG_DATA(h));
      rec_.cookie = static_cast<uint64_t>(m->id.idiag_cookie[0]) | (static_cast<uint64_t>(m->id.idiag_cookie[1]) << 32);
      rec_.inode = m->idiag_inode;
    }
    uint32_t reasons = 0;
    if (!Count(rec_, &reasons)) return 0;
    r = ParseInetDiagMsg(h, protocol_, (p_.flags & kScanSkmem) != 0, &rec_);
    if (r < 0) return r;
    Keep(rec_, reasons);
    return 0;
  }

  // A whole record from a source other than netlink (/proc/net/udp).
  void Visit(const SockRecord& rec) {
    if (!KnownState(rec.state)) {
      out_->skipped_unknown_state++;
      return;
    }
    uint32_t reasons = 0;
    if (Count(rec, &reasons)) Keep(rec, reasons);
  }

  // Sorts by total (descending), applies the min-total and top-N cuts, and renumbers the cookie
  // index so it refers to the returned list; a cookie of a cut aggregate keeps its place with the
  // index aggregates.size() ("other"), so a window of distinct connections can count the rest too.
  void FinishAggregates() {
    out_->aggregates_total = entries_.size();
    if (entries_.empty()) return;
    std::vector<uint32_t> order;
    order.reserve(entries_.size());
    for (uint32_t i = 0; i < entries_.size(); i++) {
      if (entries_[i].total >= p_.agg_min_total) order.push_back(i);
    }
    auto by_total = [this](uint32_t a, uint32_t b) { return entries_[a].total > entries_[b].total; };
    if (p_.agg_top > 0 && order.size() > p_.agg_top) {
      std::partial_sort(order.begin(), order.begin() + p_.agg_top, order.end(), by_total);
      order.resize(p_.agg_top);
    } else {
      std::sort(order.begin(), order.end(), by_total);
    }
    std::vector<uint32_t> remap(entries_.size(), UINT32_MAX);
    out_->aggregates.reserve(order.size());
    for (uint32_t i = 0; i < order.size(); i++) {
      remap[order[i]] = i;
      out_->aggregates.push_back(entries_[order[i]]);
    }
    const uint32_t other = static_cast<uint32_t>(order.size());
    for (uint32_t& idx : out_->agg_cookie_index) {
      uint32_t to = remap[idx];
      idx = to == UINT32_MAX ? other : to;
    }
  }

  // Keeps the listeners_top fullest listeners, fullest first.
  void FinishListeners() {
    std::vector<Listener>& l = out_->listeners;
    if (l.size() > p_.listeners_top) {
      std::partial_sort(l.begin(), l.begin() + p_.listeners_top, l.end(), Fuller);
      l.resize(p_.listeners_top);
    } else {
      std::sort(l.begin(), l.end(), Fuller);
    }
  }

 private:
  bool Owned(const SockRecord& rec) const {
    if (p_.owner_inodes.empty() && p_.owner_cookies.empty()) return true;
    if (rec.inode != 0 && std::binary_search(p_.owner_inodes.begin(), p_.owner_inodes.end(), rec.inode)) return true;
    return std::binary_search(p_.owner_cookies.begin(), p_.owner_cookies.end(), rec.cookie);
  }

  bool ExcludedLocalPort(uint16_t port) const {
    const std::vector<uint32_t>& x = p_.agg_exclude_ports;
    for (size_t i = 0; i + 1 < x.size(); i += 2) {
      if (port >= x[i] && port <= x[i + 1]) return true;
    }
    return false;
  }

  // ::ffff:a.b.c.d
  static bool V4Mapped(const uint8_t* a) {
    static const uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, kPrefix, sizeof(kPrefix)) == 0;
  }

  // Acceptance ratio of the accept queue to its limit; a queue with no limit is the fullest.
  static double Fill(const Listener& l) {
    if (l.queue == 0) return 0.0;
    return l.backlog == 0 ? INFINITY : static_cast<double>(l.queue) / l.backlog;
  }

  // Fuller first; equal ratios: the longer queue first; then a fixed order (family, port, address).
  static bool Fuller(const Listener& a, const Listener& b) {
    double fa = Fill(a), fb = Fill(b);
    if (fa != fb) return fa > fb;
    if (a.queue != b.queue) return a.queue > b.queue;
    if (a.family != b.family) return a.family < b.family;
    if (a.port != b.port) return a.port < b.port;
    return memcmp(a.addr, b.addr, sizeof(a.addr)) < 0;
  }

  void AddListener(const SockRecord& rec) {
    Listener l;
    l.family = rec.family;
    l.port = rec.sport;
    memcpy(l.addr, rec.src, sizeof(l.addr));
    l.queue = rec.rqueue;
    l.backlog = rec.wqueue;
    out_->listeners.push_back(l);
  }

  // Bucket of a value: the first bound it does not exceed (Prometheus `le`), else +Inf. Most
  // queues are empty, so this is usually one compare.
  size_t Bucket(uint32_t v) const {
    size_t i = 0;
    while (i < nbounds_ && v > bounds_[i]) i++;
    return i;
  }

  void Histogram(const SockRecord& r, bool tcp) {
    size_t series = tcp ? 0 : 2;
    size_t width = nbounds_ + 1;
    uint32_t* c = out_->hist_counts.data();
    c[series * width + Bucket(r.rqueue)]++;
    c[(series + 1) * width + Bucket(r.wqueue)]++;
    out_->hist_sums[series] += r.rqueue;
    out_->hist_sums[series + 1] += r.wqueue;
  }

  void Aggregate(const SockRecord& rec) {
    if (!Owned(rec)) return;
    if (!p_.agg_exclude_ports.empty() && ExcludedLocalPort(rec.sport)) return;
    out_->aggregated_sockets++;
    AggKey key;
    memset(&key, 0, sizeof(key));
    key.port = rec.dport;
    if ((p_.flags & kScanAggMergeMapped) && rec.family == AF_INET6 && V4Mapped(rec.dst)) {
      key.family = AF_INET;
      memcpy(key.addr, rec.dst + 12, 4);
    } else {
      key.family = rec.family;
      memcpy(key.addr, rec.dst, sizeof(key.addr));
    }
    uint32_t idx;
    // Consecutive sockets often share a destination: skip the hash lookup then.
    if (has_last_ && last_key_ == key) {
      idx = last_idx_;
    } else if (auto it = index_.find(key); it != index_.end()) {
      idx = it->second;
    } else {
      idx = static_cast<uint32_t>(entries_.size());
      index_.emplace(key, idx);
      entries_.emplace_back();
      entries_.back().key = key;
    }
    has_last_ = true;
    last_key_ = key;
    last_idx_ = idx;
    AggEntry& e = entries_[idx];
    e.total++;
    e.states[rec.state & 15]++;
    if (p_.flags & kScanAggCookies) {
      out_->agg_cookies.push_back(rec.cookie);
      out_->agg_cookie_index.push_back(idx);
    }
  }

  // Counts the socket (state, offender) and says whether it needs a full record.
  bool Count(const SockRecord& r, uint32_t* reasons) {
    out_->sockets_seen++;
    bool tcp = r.protocol == IPPROTO_TCP;
    out_->family_states[(tcp ? 0 : 2) + (r.family == AF_INET6 ? 1 : 0)][r.state & 15]++;
    *reasons = OffenderReasons(r, p_);
    if (*reasons != 0) {
      out_->offenders_total++;
      if (*reasons & kReasonRecv) out_->over_recv++;
      if (*reasons & kReasonSend) out_->over_send++;
      if (*reasons & kReasonAccept) out_->over_accept++;
    }
    bool listen = tcp && r.state == kTcpListen;
    if (hist_ && !listen) Histogram(r, tcp);
    keep_record_ = WantsRecord(r, *reasons);
    keep_cleared_ = tracking_ && *reasons == 0 && Followed(r);
    return keep_record_ || keep_cleared_ || WantsAggregate(r) || (listen && p_.listeners_top > 0);
  }

  void Keep(const SockRecord& rec, uint32_t reasons) {
    if (keep_record_) out_->records.push_back(Offender{rec, reasons});
    if (keep_cleared_) out_->track_cleared.push_back(Offender{rec, 0});
    if (WantsAggregate(rec)) Aggregate(rec);
    if (p_.listeners_top > 0 && rec.protocol == IPPROTO_TCP && rec.state == kTcpListen) AddListener(rec);
  }

  bool Followed(const SockRecord& r) const { return followed_count_ > 0 && followed_->entries.count(TrackKey(r)) != 0; }

  // Tracking: every offender already followed, and new ones while the followed set (at most
  // max_records) has room; the rest are only counted.
  bool WantsRecord(const SockRecord& r, uint32_t reasons) {
    if (tracking_) {
      if (reasons == 0) return false;
      if (Followed(r)) return true;
      if (followed_count_ + new_kept_ >= p_.max_records) return false;
      new_kept_++;
      return true;
    }
    return (reasons != 0 || (p_.flags & kScanAll)) && out_->records.size() < p_.max_records;
  }

  bool WantsAggregate(const SockRecord& r) const {
    return (p_.flags & kScanAggregate) && r.protocol == IPPROTO_TCP && (p_.agg_states & (1u << r.state));
  }

  const ScanParams& p_;
  ScanOutput* out_;
  bool tracking_;
  const TrackState* followed_;
  size_t followed_count_ = 0;
  uint64_t new_kept_ = 0;
  bool keep_record_ = false;
  bool keep_cleared_ = false;
  uint8_t protocol_ = 0;
  SockRecord rec_;
  std::unordered_map<AggKey, uint32_t, AggKeyHash> index_;
  std::vector<AggEntry> entries_;
  bool has_last_ = false;
  AggKey last_key_;
  uint32_t last_idx_ = 0;
  bool hist_ = false;
  const uint64_t* bounds_ = nullptr;
  size_t nbounds_ = 0;
};

// Sends a built dump request and feeds its replies to the sink.
Status RunDump(DiagChannel* sock, ScanSink* sink, uint8_t protocol, const uint8_t* req, size_t len, uint32_t seq,
               const ScanParams& p) {
  if (len == 0) return Status::Fail(-E2BIG, "sendto");
  sink->set_protocol(protocol);
  Status s = (p.flags & kScanTestNoSend) ? Status::Ok() : sock->Send(req, len);
  if (!s.ok()) return s;
  return sock->Receive(seq, sink, false);
}

Status DumpOne(DiagChannel* sock, ScanSink* sink, uint8_t family, uint8_t protocol, uint32_t states,
               const ScanParams& p) {
  uint8_t req[4096];
  uint8_t ext = (p.flags & kScanSkmem) ? kExtSkmem : 0;
  uint32_t seq = sock->NextSeq();
  size_t len =
      BuildDumpRequest(req, sizeof(req), seq, family, protocol, states, ext, p.bytecode.data(), p.bytecode.size());
  return RunDump(sock, sink, protocol, req, len, seq, p);
}

// Both TCP families in one walk (see BuildTcpBothFamiliesDumpRequest).
Status DumpTcpBothFamilies(DiagChannel* sock, ScanSink* sink, const ScanParams& p) {
  uint8_t req[4096];
  uint8_t ext = (p.flags & kScanSkmem) ? kExtSkmem : 0;
  uint32_t seq = sock->NextSeq();
  size_t len =
      BuildTcpBothFamiliesDumpRequest(req, sizeof(req), seq, p.tcp_states, ext, p.bytecode.data(), p.bytecode.size());
  return RunDump(sock, sink, IPPROTO_TCP, req, len, seq, p);
}

// /proc/net/udp has no kernel filter: the fallback applies the state mask and the same bytecode
// here (RunBytecode, the kernel's semantics), so a port filter means the same on both paths.
Status ProcUdp(ScanSink* sink, const ScanParams& p) {
  const uint8_t* bc = p.bytecode.data();
  size_t bc_len = p.bytecode.size();
  int check = CheckBytecode(bc, bc_len);
  if (check != 0) return Status::Fail(check, "udp_filter");
  struct Src {
    uint32_t bit;
    const char* path;
    uint8_t family;
  };
  const Src srcs[] = {{kFamilyV4, "/proc/net/udp", AF_INET}, {kFamilyV6, "/proc/net/udp6", AF_INET6}};
  for (const Src& src : srcs) {
    if (!(p.families & src.bit)) continue;
    Status s = ReadProcUdp(src.path, src.family, [&](const SockRecord& rec) {
      if (!KnownState(rec.state)) {
        sink->Visit(rec);  // counted as skipped
        return;
      }
      if ((p.udp_states & (1u << rec.state)) && RunBytecode(bc, bc_len, rec)) sink->Visit(rec);
    });
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

bool SameSocket(const SockRecord& a, const SockRecord& b) {
  return a.protocol == b.protocol && a.family == b.family && a.sport == b.sport && a.dport == b.dport &&
         memcmp(a.src, b.src, sizeof(a.src)) == 0 && memcmp(a.dst, b.dst, sizeof(a.dst)) == 0;
}

uint64_t Distance(uint32_t a, uint32_t b) { return a > b ? a - b : b - a; }

// Settles the scan's offenders against the followed set: out->records becomes the changes (and,
// on a full scan, every followed offender), each with its kind in out->track_kinds.
void TrackCommit(TrackState* t, const ScanParams& p, ScanOutput* out) {
  bool reset = !t->Matches(p);
  if (reset) {
    t->entries.clear();
    t->sig = ScanParams();  // only what Matches compares
    t->sig.protocols = p.protocols;
    t->sig.families = p.families;
    t->sig.tcp_states = p.tcp_states;
    t->sig.udp_states = p.udp_states;
    t->sig.bytecode = p.bytecode;
    t->sig.recv_threshold = p.recv_threshold;
    t->sig.send_threshold = p.send_threshold;
    t->sig.accept_threshold = p.accept_threshold;
    t->sig.max_records = p.max_records;
    t->sig.flags = p.flags;
    t->sig.track_step = p.track_step;
    t->valid = true;
  }
  out->track_reset = reset;
  bool full = reset || (p.flags & kScanTrackFull) != 0;
  uint32_t gen = ++t->gen;
  std::vector<Offender> seen;
  seen.swap(out->records);
  std::vector<Offender>& recs = out->records;
  std::vector<uint8_t>& kinds = out->track_kinds;
  auto emit = [&recs, &kinds](const SockRecord& r, uint32_t reasons, uint8_t kind) {
    recs.push_back(Offender{r, reasons});
    kinds.push_back(kind);
  };
  for (const Offender& o : seen) {
    uint64_t key = TrackKey(o.rec);
    auto it = t->entries.find(key);
    if (it != t->entries.end() && !SameSocket(it->second.rec, o.rec)) {
      if (it->second.gen == gen) continue;  // two sockets of one identity in one dump: the first stays
      // The identity was reused: the socket followed is gone, this one is new.
      emit(it->second.rec, it->second.reasons, kTrackGone);
      t->entries.erase(it);
      it = t->entries.end();
    }
    if (it == t->entries.end()) {
      t->entries.emplace(key, TrackedSock{o.rec, o.reasons, gen});
      emit(o.rec, o.reasons, kTrackAdded);
      continue;
    }
    TrackedSock& e = it->second;
    if (e.gen == gen) continue;  // the same socket twice in one dump
    e.gen = gen;
    bool moved = e.reasons != o.reasons || e.rec.state != o.rec.state ||
                 Distance(e.rec.rqueue, o.rec.rqueue) > p.track_step ||
                 Distance(e.rec.wqueue, o.rec.wqueue) > p.track_step;
    if (!moved && !full) continue;
    e.rec = o.rec;
    e.reasons = o.reasons;
    emit(o.rec, o.reasons, moved ? kTrackChanged : kTrackUnchanged);
  }
  for (const Offender& c : out->track_cleared) {
    auto it = t->entries.find(TrackKey(c.rec));
    if (it == t->entries.end() || it->second.gen == gen || !SameSocket(it->second.rec, c.rec)) continue;
    emit(c.rec, 0, kTrackCleared);
    t->entries.erase(it);
  }
  out->track_cleared.clear();
  for (auto it = t->entries.begin(); it != t->entries.end();) {
    if (it->second.gen == gen) {
      ++it;
      continue;
    }
    emit(it->second.rec, it->second.reasons, kTrackGone);
    it = t->entries.erase(it);
  }
  out->tracked = t->entries.size();
}

}  // namespace

uint64_t TrackKey(const SockRecord& r) {
  // /proc/net/udp gives no cookie: the inode stands in, in a range cookies do not reach.
  return r.cookie != 0 ? r.cookie : (1ull << 63) | r.inode;
}

bool TrackState::Matches(const ScanParams& p) const {
  const uint32_t kSigFlags = kScanSkmem | kScanForceProcUdp;
  return valid && sig.protocols == p.protocols && sig.families == p.families && sig.tcp_states == p.tcp_states &&
         sig.udp_states == p.udp_states && sig.bytecode == p.bytecode && sig.recv_threshold == p.recv_threshold &&
         sig.send_threshold == p.send_threshold && sig.accept_threshold == p.accept_threshold &&
         sig.max_records == p.max_records && (sig.flags & kSigFlags) == (p.flags & kSigFlags) &&
         sig.track_step == p.track_step;
}

int64_t TrackState::Bytes() const {
  size_t node = sizeof(std::pair<const uint64_t, TrackedSock>) + 2 * sizeof(void*);
  return static_cast<int64_t>(sizeof(TrackState) + entries.size() * node + entries.bucket_count() * sizeof(void*) +
                              sig.bytecode.capacity());
}

bool AggKey::operator==(const AggKey& o) const {
  return family == o.family && port == o.port && memcmp(addr, o.addr, sizeof(addr)) == 0;
}

size_t AggKeyHash::operator()(const AggKey& k) const {
  // FNV-1a over the key bytes.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint8_t b) {
    h ^= b;
    h *= 1099511628211ull;
  };
  mix(k.family);
  mix(static_cast<uint8_t>(k.port >> 8));
  mix(static_cast<uint8_t>(k.port));
  for (uint8_t b : k.addr) mix(b);
  return static_cast<size_t>(h);
}

uint32_t OffenderReasons(const SockRecord& r, const ScanParams& p) {
  if (r.protocol == IPPROTO_TCP && r.state == kTcpListen) {
    if (p.accept_threshold == kAcceptAtLimit)
      return (r.wqueue > 0 && r.rqueue >= r.wqueue) ? static_cast<uint32_t>(kReasonAccept) : 0u;
    return Above(r.rqueue, p.accept_threshold) ? static_cast<uint32_t>(kReasonAccept) : 0u;
  }
  uint32_t reasons = 0;
  if (Above(r.rqueue, p.recv_threshold)) reasons |= kReasonRecv;
  if (Above(r.wqueue, p.send_threshold)) reasons |= kReasonSend;
  return reasons;
}

Status RunScan(DiagChannel* sock, const ScanParams& p, bool allow_proc_udp, ScanOutput* out, TrackState* track) {
  uint64_t start = NowNs();
  if ((p.flags & kScanHistogram) && p.hist_bounds.size() > kMaxHistBounds) return Status::Fail(-EINVAL, "histogram");
  bool tracking = (p.flags & kScanTrack) != 0;
  if (tracking && (track == nullptr || (p.flags & kScanAll))) return Status::Fail(-EINVAL, "track");
  sock->ResetCounters();
  ScanSink sink(p, out, tracking && track->Matches(p) ? track : nullptr);
  const uint8_t families[2] = {AF_INET, AF_INET6};
  const uint32_t family_bits[2] = {kFamilyV4, kFamilyV6};

  bool both_families = (p.families & (kFamilyV4 | kFamilyV6)) == (kFamilyV4 | kFamilyV6);
  bool tcp_done = false;
  if ((p.protocols & kProtoTcp) && p.tcp_states != 0 && both_families && sock->single_walk_ok()) {
    uint64_t seen_before = out->sockets_seen;
    Status s = DumpTcpBothFamilies(sock, &sink, p);
    if (s.ok()) {
      tcp_done = true;
    } else if (out->sockets_seen == seen_before && (s.err == -EINVAL || s.err == -EOPNOTSUPP || s.err == -ENOENT)) {
      sock->set_single_walk_ok(false);  // a kernel without the legacy request: one v2 dump per family
    } else {
      return s;
    }
  }
  if ((p.protocols & kProtoTcp) && p.tcp_states != 0 && !tcp_done) {
    for (int i = 0; i < 2; i++) {
      if (!(p.families & family_bits[i])) continue;
      Status s = DumpOne(sock, &sink, families[i], IPPROTO_TCP, p.tcp_states, p);
      if (!s.ok()) return s;
    }
  }
  if ((p.protocols & kProtoUdp) && p.udp_states != 0) {
    bool use_proc = (p.flags & kScanForceProcUdp) != 0;
    for (int i = 0; i < 2 && !use_proc; i++) {
      if (!(p.families & family_bits[i])) continue;
      Status s = DumpOne(sock, &sink, families[i], IPPROTO_UDP, p.udp_states, p);
      if (s.err == -ENOENT) {  // no udp_diag in this kernel
        use_proc = true;
        break;
      }
      if (!s.ok()) return s;
    }
    if (use_proc) {
      if (!allow_proc_udp) return Status::Fail(-ENOENT, "udp_diag");
      // udp_diag is absent for both families or neither, so the netlink pass counted no UDP
      // socket: read /proc once for the families asked for.
      out->udp_from_proc = true;
      Status s = ProcUdp(&sink, p);
      if (!s.ok()) return s;
    }
  }
  sink.FinishAggregates();
  sink.FinishListeners();
  for (size_t st = 0; st < kStateSlots; st++) {
    out->tcp_states[st] = out->family_states[0][st] + out->family_states[1][st];
    out->udp_states[st] = out->family_states[2][st] + out->family_states[3][st];
  }
  if (tracking) TrackCommit(track, p, out);
  out->bytes_received = sock->bytes_received();
  out->recv_calls = sock->recv_calls();
  out->elapsed_ns = NowNs() - start;
  return Status::Ok();
}

namespace {

class LookupSink : public MessageSink {
 public:
  LookupSink(uint8_t protocol, bool want_skmem, SockRecord* out) : protocol_(protocol), skmem_(want_skmem), out_(out) {}
  int OnMessage(const struct nlmsghdr* h) override {
    int r = ParseInetDiagMsg(h, protocol_, skmem_, out_);
    if (r < 0) return r;
    if (r == kUnknownState) return 0;  // a state the addon does not know: not a usable answer
    found = true;
    return 0;
  }
  bool found = false;

 private:
  uint8_t protocol_;
  bool skmem_;
  SockRecord* out_;
};

}  // namespace

Status LookupSocket(DiagChannel* sock, uint8_t family, uint8_t protocol, const uint8_t* src, uint16_t sport,
                    const uint8_t* dst, uint16_t dport, uint64_t cookie, bool want_skmem, SockRecord* out,
                    bool* found) {
  uint8_t req[256];
  uint32_t seq = sock->NextSeq();
  // udp_dump_one() reads the request's source and destination swapped ("for historical reasons"
  // in net/ipv4/udp_diag.c): the local end goes in the dst fields for UDP.
  bool swap = protocol == IPPROTO_UDP;
  size_t len = BuildLookupRequest(req, sizeof(req), seq, family, protocol, swap ? dst : src, swap ? dport : sport,
                                  swap ? src : dst, swap ? sport : dport, cookie, want_skmem ? kExtSkmem : 0);
  if (len == 0) return Status::Fail(-E2BIG, "sendto");
  Status s = sock->Send(req, len);
  if (!s.ok()) return s;
  LookupSink sink(protocol, want_skmem, out);
  s = sock->Receive(seq, &sink, true);
  *found = false;
  if (s.err == -ENOENT) return Status::Ok();
  if (!s.ok()) return s;
  *found = sink.found;
  return Status::Ok();
}

}  // namespace sw
