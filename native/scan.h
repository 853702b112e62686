// One pass over the kernel's dumps: thresholds, per-state counts and per-remote aggregation
// happen here, so only offenders and aggregates ever become JavaScript values.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <unordered_map>
#include <vector>

#include "inet_diag.h"
#include "netlink.h"

namespace sw {

enum : uint32_t {
  kProtoTcp = 1,
  kProtoUdp = 2,
  kFamilyV4 = 1,
  kFamilyV6 = 2,
  kScanAll = 1,
  kScanSkmem = 2,
  kScanAggregate = 4,
  kScanAggCookies = 8,
  kScanForceProcUdp = 16,
  kScanTestAbortAfterFirst = 32,  // tests: the sink gives up (ECANCELED) after the dump's first socket
  kScanTestNoSend = 64,           // tests: requests are not sent, so no reply ever comes (timeout)
  kScanHistogram = 128,           // queue histograms per protocol (hist_bounds)
  kScanAggMergeMapped = 256,      // aggregation: an IPv4-mapped IPv6 remote counts as the IPv4 endpoint
  kScanTrack = 512,               // change tracking: offenders followed between scans (TrackState)
  kScanTrackFull = 1024,          // with kScanTrack: return every followed offender, not only changes
  kReasonRecv = 1,
  kReasonSend = 2,
  kReasonAccept = 4,
};

constexpr int64_t kThresholdOff = -1;
constexpr int64_t kAcceptAtLimit = -2;
constexpr int kTcpListen = 10;
// Per-state counters: one slot per TCP state number (the kernel's 1..12 fit in 16).
constexpr size_t kStateSlots = 16;
// Counts per aggregate as they cross to JS: the total, then one per state.
constexpr size_t kAggCountFields = 1 + kStateSlots;
// Queue histograms: at most this many bounds (buckets: bounds + 1, the last is +Inf).
constexpr size_t kMaxHistBounds = 64;
// Histogram slots, in this order: TCP recv, TCP send, UDP recv, UDP send.
constexpr size_t kHistSeries = 4;

struct ScanParams {
  uint32_t protocols = kProtoTcp | kProtoUdp;
  uint32_t families = kFamilyV4 | kFamilyV6;
  uint32_t tcp_states = 0;
  uint32_t udp_states = 0;
  std::vector<uint8_t> bytecode;
  int64_t recv_threshold = kThresholdOff;
  int64_t send_threshold = kThresholdOff;
  int64_t accept_threshold = kThresholdOff;
  uint32_t max_records = 0;
  uint32_t flags = 0;
  uint32_t agg_states = 0;
  uint32_t agg_top = 0;                     // keep the N largest aggregates (0: all)
  uint32_t agg_min_total = 0;               // keep aggregates with at least this many sockets
  std::vector<uint32_t> owner_inodes;       // sorted
  std::vector<uint64_t> owner_cookies;      // sorted
  std::vector<uint32_t> agg_exclude_ports;  // [from, to] pairs: sockets on these local ports are not aggregated
  std::vector<uint64_t> hist_bounds;        // with kScanHistogram: strictly increasing, at most kMaxHistBounds
  uint32_t listeners_top = 0;               // return the N LISTEN sockets fullest by acceptQueue/backlog (0: none)
  uint64_t track_step = 0;                  // with kScanTrack: a queue moving more than this is `changed`
};

struct Offender {
  SockRecord rec;
  uint32_t reasons;
};

struct AggKey {
  uint8_t family;
  uint16_t port;
  uint8_t addr[16];
  bool operator==(const AggKey& o) const;
};

struct AggKeyHash {
  size_t operator()(const AggKey& k) const;
};

struct AggEntry {
  AggKey key;
  uint32_t total = 0;
  uint32_t states[kStateSlots] = {0};
};

struct Listener {
  uint8_t family;
  uint16_t port;
  uint8_t addr[16];
  uint32_t queue;    // accept queue
  uint32_t backlog;  // its limit
};

struct ScanOutput {
  std::vector<Offender> records;
  uint64_t offenders_total = 0;
  uint64_t sockets_seen = 0;
  uint64_t skipped_unknown_state = 0;  // sockets whose state the addon does not know (not counted)
  uint32_t tcp_states[kStateSlots] = {0};
  uint32_t udp_states[kStateSlots] = {0};
  // Per protocol and family: [(protocol TCP 0 / UDP 1) * 2 + (family v4 0 / v6 1)][state].
  uint32_t family_states[4][kStateSlots] = {{0}};
  // Sockets over each threshold (all of them, not capped by max_records).
  uint64_t over_recv = 0;
  uint64_t over_send = 0;
  uint64_t over_accept = 0;
  // With kScanHistogram: kHistSeries series of hist_bounds.size() + 1 buckets each (not cumulative),
  // and the sum of the values per series. TCP LISTEN sockets are not in them.
  std::vector<uint32_t> hist_counts;
  uint64_t hist_sums[kHistSeries] = {0};
  std::vector<Listener> listeners;   // the listeners_top fullest, fullest first
  std::vector<AggEntry> aggregates;  // sorted by total, descending, after the cuts
  uint64_t aggregates_total = 0;     // distinct remote endpoints before the cuts
  uint64_t aggregated_sockets = 0;   // sockets aggregated, before the cuts
  std::vector<uint64_t> agg_cookies;
  std::vector<uint32_t> agg_cookie_index;
  bool udp_from_proc = false;
  uint64_t bytes_received = 0;
  uint64_t recv_calls = 0;
  uint64_t elapsed_ns = 0;
  // With kScanTrack: records[i] is of kind track_kinds[i] (TrackKind); the sink collects in
  // track_cleared the followed sockets the dump showed under every threshold.
  std::vector<uint8_t> track_kinds;
  std::vector<Offender> track_cleared;
  uint64_t tracked = 0;      // offenders followed after this scan
  bool track_reset = false;  // the followed set was dropped first (first scan, or other options)
};

// Change tracking (kScanTrack): the offenders one Sampler follows between scans, by socket identity
// (the cookie, or the inode where a source has no cookie: /proc/net/udp), with the protocol and
// 4-tuple as a guard against reuse. Each entry holds the record last returned for it.
enum TrackKind : uint8_t { kTrackUnchanged = 0, kTrackAdded = 1, kTrackChanged = 2, kTrackCleared = 3, kTrackGone = 4 };

struct TrackedSock {
  SockRecord rec;  // as last returned (its queues are the ones changes are measured from)
  uint32_t reasons;
  uint32_t gen;  // the scan that last saw it offend
};

struct TrackState {
  std::unordered_map<uint64_t, TrackedSock> entries;
  bool valid = false;  // sig holds the options the entries were made under
  ScanParams sig;      // those fields of it that decide which sockets offend (SameRequest)
  uint32_t gen = 0;
  int64_t accounted = 0;  // bytes last reported to V8 (addon.cc)
  // Whether a scan with `p` continues this state (else it starts over).
  bool Matches(const ScanParams& p) const;
  // Approximate heap bytes held (entries, hash nodes and buckets).
  int64_t Bytes() const;
};

uint64_t TrackKey(const SockRecord& r);

// Runs the whole scan on `sock` (the kernel, or recorded replies: the same path either way).
// `allow_proc_udp` is false inside another network namespace, where /proc/net/udp would describe
// the wrong one, and for recorded replies.
// With kScanTrack in params.flags, `track` (not null) is read during the walk and updated only
// when the whole scan succeeded: a failed scan leaves it as it was.
Status RunScan(DiagChannel* sock, const ScanParams& params, bool allow_proc_udp, ScanOutput* out,
               TrackState* track = nullptr);

// Exact lookup of one socket. Returns Ok with *found=false when the kernel has no such socket.
Status LookupSocket(DiagChannel* sock, uint8_t family, uint8_t protocol, const uint8_t* src, uint16_t sport,
                    const uint8_t* dst, uint16_t dport, uint64_t cookie, bool want_skmem, SockRecord* out, bool* found);

// The offender test, shared by the dump and /proc paths.
uint32_t OffenderReasons(const SockRecord& r, const ScanParams& p);

}  // namespace sw
