// Fuzzes the production scan path (sw::RunScan over a ReplayChannel: WalkDatagram, the scan sink's
// peek and full parse, thresholds, maxRecords, aggregation) with mutated real dumps, plus the
// /proc/net/udp line parser and the user-space bytecode evaluator. Rule: the same sources the addon
// is built from, compiled with ASan + UBSan (-fno-sanitize-recover=all): any report aborts the run;
// a broken invariant of the output aborts it too. Deterministic: a seed and a count.
// Usage: fuzz_scan CORPUS_DIR [COUNT=100000] [SEED=1]
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "inet_diag.h"
#include "netlink.h"
#include "proc_udp.h"
#include "scan.h"

namespace {

using Bytes = std::vector<uint8_t>;

struct Reply {
  std::string name;
  uint32_t seq = 0;
  std::vector<Bytes> datagrams;
};

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {  // splitmix64
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(Next() % n); }
  bool Chance(unsigned percent) { return Below(100) < percent; }

 private:
  uint64_t s_;
};

[[noreturn]] void Fail(const std::string& what) {
  fprintf(stderr, "fuzz_scan: FAILED: %s\n", what.c_str());
  abort();
}

Bytes FromHex(const std::string& hex) {
  Bytes out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<uint8_t>(stoul(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::vector<Reply> LoadCorpus(const std::string& dir) {
  std::vector<Reply> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) Fail("cannot open corpus directory " + dir);
  std::vector<std::string> names;
  while (struct dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".hex") == 0) names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    std::ifstream f(dir + "/" + n);
    Reply r;
    r.name = n;
    std::string line;
    if (!std::getline(f, line) || sscanf(line.c_str(), "seq %u", &r.seq) != 1) Fail(n + ": no seq line");
    while (std::getline(f, line)) {
      if (!line.empty()) r.datagrams.push_back(FromHex(line));
    }
    if (r.datagrams.empty()) Fail(n + ": no datagrams");
    out.push_back(std::move(r));
  }
  if (out.empty()) Fail("no *.hex replies in " + dir);
  return out;
}

// Offsets of the netlink headers of a datagram, walking lengths as long as they make sense.
std::vector<size_t> Headers(const Bytes& d) {
  std::vector<size_t> out;
  size_t off = 0;
  while (off + sizeof(struct nlmsghdr) <= d.size()) {
    uint32_t len;
    memcpy(&len, d.data() + off, 4);
    out.push_back(off);
    if (len < sizeof(struct nlmsghdr)) break;
    off += (static_cast<size_t>(len) + 3) & ~static_cast<size_t>(3);
  }
  return out;
}

void PutU32(Bytes* d, size_t off, uint32_t v) {
  if (off + 4 <= d->size()) memcpy(d->data() + off, &v, 4);
}

uint32_t Interesting(Rng* rng, uint32_t around) {
  const uint32_t picks[] = {0, 1, 3, 4, 15, 16, 17, 72, 87, 88, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000};
  switch (rng->Below(4)) {
    case 0: return picks[rng->Below(sizeof(picks) / sizeof(picks[0]))];
    case 1: return around + static_cast<uint32_t>(rng->Below(9)) - 4;
    case 2: return static_cast<uint32_t>(rng->Next());
    default: return around * 2;
  }
}

// One mutation of a reply (a list of datagrams).
void Mutate(Rng* rng, std::vector<Bytes>* dgrams, const std::vector<Reply>& corpus) {
  if (dgrams->empty()) return;
  Bytes& d = (*dgrams)[rng->Below(dgrams->size())];
  std::vector<size_t> hs = Headers(d);
  size_t h = hs.empty() ? 0 : hs[rng->Below(hs.size())];
  switch (rng->Below(10)) {
    case 0: {  // bit flips
      size_t n = 1 + rng->Below(8);
      for (size_t i = 0; i < n && !d.empty(); i++) d[rng->Below(d.size())] ^= static_cast<uint8_t>(1u << rng->Below(8));
      break;
    }
    case 1:  // truncation
      d.resize(rng->Below(d.size() + 1));
      break;
    case 2: {  // nlmsg_len corruption
      uint32_t len = 0;
      if (h + 4 <= d.size()) memcpy(&len, d.data() + h, 4);
      PutU32(&d, h, Interesting(rng, len));
      break;
    }
    case 3: {  // rta_len corruption in the attributes after the fixed part
      size_t a = h + NLMSG_LENGTH(sizeof(struct inet_diag_msg));
      if (a + 4 <= d.size()) {
        uint16_t v = static_cast<uint16_t>(Interesting(rng, d[a] | (d[a + 1] << 8)));
        memcpy(d.data() + a, &v, 2);
      }
      break;
    }
    case 4: {  // attribute splice: bytes from another reply's message inserted after a fixed part
      const Reply& other = corpus[rng->Below(corpus.size())];
      const Bytes& src = other.datagrams[rng->Below(other.datagrams.size())];
      std::vector<size_t> shs = Headers(src);
      if (shs.empty()) break;
      size_t sh = shs[rng->Below(shs.size())];
      size_t from = sh + NLMSG_LENGTH(sizeof(struct inet_diag_msg));
      if (from >= src.size()) break;
      size_t n = 4 * (1 + rng->Below(24));
      if (from + n > src.size()) n = src.size() - from;
      size_t at = h + NLMSG_LENGTH(sizeof(struct inet_diag_msg));
      if (at > d.size()) at = d.size();
      d.insert(d.begin() + static_cast<long>(at), src.begin() + static_cast<long>(from),
               src.begin() + static_cast<long>(from + n));
      if (rng->Chance(70) && h + 4 <= d.size()) {  // usually keep the header consistent
        uint32_t len;
        memcpy(&len, d.data() + h, 4);
        PutU32(&d, h, len + static_cast<uint32_t>(n));
      }
      break;
    }
    case 5: {  // the state byte (unknown, zero, huge)
      size_t at = h + sizeof(struct nlmsghdr) + 1;
      if (at < d.size()) d[at] = static_cast<uint8_t>(rng->Chance(50) ? rng->Next() : 13 + rng->Below(3));
      break;
    }
    case 6: {  // message type: DONE / ERROR / NOOP / OVERRUN / another, with a random error
      const uint16_t types[] = {NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, 20, 18, 0xFFFF};
      uint16_t t = types[rng->Below(sizeof(types) / sizeof(types[0]))];
      if (h + 6 <= d.size()) memcpy(d.data() + h + 4, &t, 2);
      PutU32(&d, h + sizeof(struct nlmsghdr), Interesting(rng, static_cast<uint32_t>(-ENOENT)));
      break;
    }
    case 7: {  // an aligned word set to an interesting value
      if (d.size() >= 4) PutU32(&d, 4 * rng->Below(d.size() / 4), Interesting(rng, 0));
      break;
    }
    case 8: {  // datagrams dropped or duplicated
      size_t i = rng->Below(dgrams->size());
      if (rng->Chance(50) && dgrams->size() > 1) {
        dgrams->erase(dgrams->begin() + static_cast<long>(i));
      } else {
        Bytes copy = (*dgrams)[i];
        dgrams->insert(dgrams->begin() + static_cast<long>(i), copy);
      }
      break;
    }
    default: {  // sequence number of one message
      uint32_t seq = 0;
      if (h + 12 <= d.size()) memcpy(&seq, d.data() + h + 8, 4);
      PutU32(&d, h + 8, rng->Chance(50) ? seq + 1 : seq);
      break;
    }
  }
}

sw::ScanParams Params(Rng* rng) {
  sw::ScanParams p;
  p.protocols = 1 + static_cast<uint32_t>(rng->Below(3));
  p.families = 1 + static_cast<uint32_t>(rng->Below(3));
  p.tcp_states = rng->Chance(90) ? 0xFFF : static_cast<uint32_t>(rng->Next());
  p.udp_states = rng->Chance(90) ? 0xFFF : static_cast<uint32_t>(rng->Next());
  const int64_t thresholds[] = {sw::kThresholdOff, 0, 10, 100, 1 << 20};
  p.recv_threshold = thresholds[rng->Below(5)];
  p.send_threshold = thresholds[rng->Below(5)];
  p.accept_threshold = rng->Chance(30) ? sw::kAcceptAtLimit : thresholds[rng->Below(5)];
  const uint32_t maxes[] = {0, 1, 5, 100, 100000};
  p.max_records = maxes[rng->Below(5)];
  p.flags = static_cast<uint32_t>(rng->Below(16));  // all, skmem, aggregate, cookies
  p.agg_states = rng->Chance(80) ? (0xFFF & ~(1u << sw::kTcpListen)) : static_cast<uint32_t>(rng->Next());
  p.agg_top = static_cast<uint32_t>(rng->Below(4));
  p.agg_min_total = static_cast<uint32_t>(rng->Below(3));
  if (rng->Chance(20)) {
    for (uint32_t i = 0; i < 5; i++) p.owner_inodes.push_back(static_cast<uint32_t>(rng->Below(100000)));
    std::sort(p.owner_inodes.begin(), p.owner_inodes.end());
    p.owner_cookies.push_back(rng->Next());
  }
  if (rng->Chance(50)) {
    p.flags |= sw::kScanHistogram;
    uint64_t b = rng->Below(2);
    for (size_t i = 0, n = rng->Below(6); i < n; i++) p.hist_bounds.push_back(b += 1 + rng->Below(5000));
  }
  if (rng->Chance(50)) p.flags |= sw::kScanAggMergeMapped;
  p.listeners_top = static_cast<uint32_t>(rng->Below(3));
  if (rng->Chance(30)) {
    uint32_t from = static_cast<uint32_t>(rng->Below(65536));
    p.agg_exclude_ports = {from, from + static_cast<uint32_t>(rng->Below(65536 - from))};
  }
  if (rng->Chance(30)) {  // change tracking, against a followed set carried from scan to scan
    p.flags = (p.flags & ~static_cast<uint32_t>(sw::kScanAll)) | sw::kScanTrack;
    if (rng->Chance(30)) p.flags |= sw::kScanTrackFull;
    const uint64_t steps[] = {0, 1, 100, 65536};
    p.track_step = steps[rng->Below(4)];
  }
  return p;
}

// The followed set of the fuzzed scans: one for the whole run, like a long-lived Sampler's.
sw::TrackState g_track;

void CheckOutput(const sw::ScanParams& p, const sw::ScanOutput& out) {
  if (p.flags & sw::kScanTrack) {
    // Current offenders (at most max_records) plus the cleared and gone of the previous set.
    if (out.records.size() > 2 * static_cast<uint64_t>(p.max_records)) Fail("more tracked records than 2 × maxRecords");
    if (out.track_kinds.size() != out.records.size()) Fail("a tracked record without its kind");
    if (out.tracked > p.max_records || out.tracked != g_track.entries.size()) Fail("followed set past maxRecords");
    if (!out.track_cleared.empty()) Fail("cleared candidates left over");
    for (uint8_t k : out.track_kinds)
      if (k > sw::kTrackGone) Fail("an unknown change kind");
  } else if (out.records.size() > p.max_records) {
    Fail("more records than maxRecords");
  }
  if (out.offenders_total > out.sockets_seen) Fail("more offenders than sockets");
  uint64_t counted = 0;
  for (size_t i = 0; i < sw::kStateSlots; i++) counted += out.tcp_states[i] + out.udp_states[i];
  if (counted != out.sockets_seen) Fail("state counts do not add up to socketsSeen");
  uint64_t by_family = 0;
  for (const auto& row : out.family_states)
    for (uint32_t n : row) by_family += n;
  if (by_family != out.sockets_seen) Fail("per-family state counts do not add up to socketsSeen");
  if (out.over_recv > out.offenders_total || out.over_send > out.offenders_total ||
      out.over_accept > out.offenders_total)
    Fail("more sockets over a threshold than offenders");
  if (p.flags & sw::kScanHistogram) {
    size_t width = p.hist_bounds.size() + 1;
    if (out.hist_counts.size() != sw::kHistSeries * width) Fail("histogram of the wrong size");
    uint64_t series[sw::kHistSeries] = {0};
    for (size_t i = 0; i < out.hist_counts.size(); i++) series[i / width] += out.hist_counts[i];
    if (series[0] != series[1] || series[2] != series[3]) Fail("recv and send histograms count differently");
    if (series[0] + series[2] > out.sockets_seen) Fail("more sockets histogrammed than seen");
  } else if (!out.hist_counts.empty()) {
    Fail("a histogram nobody asked for");
  }
  if (out.listeners.size() > p.listeners_top) Fail("more listeners than asked for");
  uint64_t aggregated = 0;
  for (const sw::AggEntry& e : out.aggregates) aggregated += e.total;
  if (aggregated > out.aggregated_sockets) Fail("aggregates hold more sockets than were aggregated");
  if (p.agg_top == 0 && p.agg_min_total == 0 && aggregated != out.aggregated_sockets)
    Fail("uncut aggregates do not add up to the sockets aggregated");
  for (const sw::Offender& o : out.records) {
    if (!sw::KnownState(o.rec.state)) Fail("a record with an unknown state");
    if (o.rec.skmem_count > sw::kMaxSkmem) Fail("skmem count past its slots");
  }
  if (out.aggregates.size() > out.aggregates_total) Fail("more aggregates than distinct endpoints");
  for (const sw::AggEntry& e : out.aggregates) {
    uint32_t sum = 0;
    for (uint32_t s : e.states) sum += s;
    if (sum != e.total) Fail("aggregate states do not add up to its total");
  }
  if (out.agg_cookies.size() != out.agg_cookie_index.size()) Fail("cookie and index lists differ");
  for (uint32_t idx : out.agg_cookie_index) {
    if (idx > out.aggregates.size()) Fail("cookie index past the aggregates and \"other\"");
  }
}

// The replies one scan consumes: requests are answered in order from the concatenation.
std::vector<Bytes> PickReplies(Rng* rng, const std::vector<Reply>& corpus, uint32_t* seq) {
  std::vector<Bytes> out;
  size_t n = 1 + rng->Below(3);
  for (size_t i = 0; i < n; i++) {
    const Reply& r = corpus[rng->Below(corpus.size())];
    *seq = r.seq;
    out.insert(out.end(), r.datagrams.begin(), r.datagrams.end());
  }
  return out;
}

// Returns whether the scan succeeded (the rest failed with an errno, as they should for damage).
bool RunOne(const std::vector<Bytes>& dgrams, uint32_t seq, const sw::ScanParams& p, bool single_walk) {
  // Each datagram in its own exactly-sized, 4-byte aligned heap block, as recvmsg's buffer is
  // aligned: ASan sees any read past a datagram's end.
  std::vector<std::unique_ptr<uint32_t[]>> blocks;
  std::vector<sw::ReplayChannel::Datagram> views;
  for (const Bytes& d : dgrams) {
    size_t words = (d.size() + 3) / 4;
    blocks.emplace_back(new uint32_t[words == 0 ? 1 : words]);
    if (!d.empty()) memcpy(blocks.back().get(), d.data(), d.size());
    views.push_back({reinterpret_cast<const char*>(blocks.back().get()), d.size()});
  }
  sw::ReplayChannel channel(std::move(views), seq);
  channel.set_single_walk_ok(single_walk);
  sw::ScanOutput out;
  sw::Status s = sw::RunScan(&channel, p, false, &out, &g_track);
  if (s.ok()) CheckOutput(p, out);
  if (!s.ok() && (s.err >= 0 || s.err < -4095)) Fail("an error outside the errno range");
  return s.ok();
}

// Replays each unmutated seed once: real dumps must parse cleanly.
void CheckSeeds(const std::vector<Reply>& corpus) {
  for (const Reply& r : corpus) {
    sw::ScanParams p;
    p.protocols = r.name.rfind("udp", 0) == 0 ? sw::kProtoUdp : sw::kProtoTcp;
    p.families = r.name.find('4') != std::string::npos ? sw::kFamilyV4 : sw::kFamilyV6;
    if (r.name.find("both") != std::string::npos) p.families = sw::kFamilyV4 | sw::kFamilyV6;
    p.tcp_states = p.udp_states = 0xFFF;
    p.max_records = 1000000;
    p.flags = sw::kScanAll | (r.name.find("skmem") != std::string::npos ? uint32_t{sw::kScanSkmem} : 0u);
    std::vector<sw::ReplayChannel::Datagram> views;
    std::vector<std::unique_ptr<uint32_t[]>> blocks;
    for (const Bytes& d : r.datagrams) {
      blocks.emplace_back(new uint32_t[(d.size() + 3) / 4 + 1]);
      memcpy(blocks.back().get(), d.data(), d.size());
      views.push_back({reinterpret_cast<const char*>(blocks.back().get()), d.size()});
    }
    sw::ReplayChannel channel(std::move(views), r.seq);
    sw::ScanOutput out;
    sw::Status s = sw::RunScan(&channel, p, false, &out);
    if (!s.ok() || !channel.saw_done() || out.records.empty()) Fail(r.name + ": the unmutated seed does not parse");
    CheckOutput(p, out);
  }
}

// /proc/net/udp lines, mutated.
void FuzzProcLine(Rng* rng) {
  static const char* const kLines[] = {
      "  123: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12345 2 "
      "0000000000000000 0\n",
      "   7: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 07 00000000:00000010 "
      "00:00000000 00000000  1000        0 999 2 0000000000000000 0\n",
  };
  std::string line = kLines[rng->Below(2)];
  size_t n = 1 + rng->Below(6);
  for (size_t i = 0; i < n; i++) {
    switch (rng->Below(3)) {
      case 0: line[rng->Below(line.size())] = static_cast<char>(rng->Next()); break;
      case 1: line.resize(rng->Below(line.size() + 1)); break;
      default: line[rng->Below(line.size())] = "0123456789ABCDEFfx: \n"[rng->Below(21)]; break;
    }
  }
  std::vector<char> buf(line.begin(), line.end());
  buf.push_back('\0');
  sw::SockRecord rec;
  uint8_t family = rng->Chance(50) ? AF_INET : AF_INET6;
  if (sw::ParseProcUdpLine(buf.data(), family, &rec) && rec.state != 0 && !sw::KnownState(rec.state)) {
    Fail("a /proc line parsed to an unknown state");
  }
}

// Bytecode: valid programs (port conditions, ranges, not, or), mutated, checked, then run.
void FuzzBytecode(Rng* rng) {
  static const uint8_t kPrograms[][40] = {
      // S_COND port 53 (AF_UNSPEC, prefix 0)
      {7, 12, 16, 0, 0, 0, 0, 0, 53, 0, 0, 0},
      // S_GE 1000, S_LE 2000 (the port in op[1].no)
      {2, 8, 20, 0, 0, 0, 0xE8, 0x03, 3, 8, 12, 0, 0, 0, 0xD0, 0x07},
      // not D_COND 80, then JMP
      {8, 12, 16, 0, 0, 0, 0, 0, 80, 0, 0, 0, 1, 4, 8, 0},
      // S_COND AF_INET 127.0.0.0/8 any port
      {7, 16, 20, 0, 2, 8, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 127, 0, 0, 1},
  };
  static const size_t kLens[] = {12, 16, 16, 16};
  size_t which = rng->Below(4);
  Bytes bc(kPrograms[which], kPrograms[which] + kLens[which]);
  size_t n = rng->Below(4);
  for (size_t i = 0; i < n && !bc.empty(); i++) {
    switch (rng->Below(3)) {
      case 0: bc[rng->Below(bc.size())] ^= static_cast<uint8_t>(1u << rng->Below(8)); break;
      case 1: bc.resize(rng->Below(bc.size() + 1)); break;
      default: bc[rng->Below(bc.size())] = static_cast<uint8_t>(rng->Next()); break;
    }
  }
  std::unique_ptr<uint8_t[]> exact(new uint8_t[bc.size()]);  // exact: ASan sees an overread
  if (!bc.empty()) memcpy(exact.get(), bc.data(), bc.size());
  sw::SockRecord rec;
  rec.family = rng->Chance(50) ? AF_INET : AF_INET6;
  rec.sport = static_cast<uint16_t>(rng->Next());
  rec.dport = static_cast<uint16_t>(rng->Next());
  for (uint8_t& b : rec.src) b = static_cast<uint8_t>(rng->Next());
  // Checked or not, evaluation stays within the program.
  (void)sw::CheckBytecode(exact.get(), bc.size());
  (void)sw::RunBytecode(exact.get(), bc.size(), rec);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: fuzz_scan CORPUS_DIR [COUNT] [SEED]\n");
    return 2;
  }
  std::vector<Reply> corpus = LoadCorpus(argv[1]);
  uint64_t count = argc > 2 ? strtoull(argv[2], nullptr, 10) : 100000;
  uint64_t seed = argc > 3 ? strtoull(argv[3], nullptr, 10) : 1;
  CheckSeeds(corpus);
  Rng rng(seed);
  uint64_t ok = 0;
  sw::ScanParams last_tracked;
  last_tracked.flags = 0;
  for (uint64_t i = 0; i < count; i++) {
    uint32_t seq = 0;
    std::vector<Bytes> dgrams = PickReplies(&rng, corpus, &seq);
    size_t mutations = 1 + rng.Below(4);
    for (size_t m = 0; m < mutations; m++) Mutate(&rng, &dgrams, corpus);
    sw::ScanParams p = Params(&rng);
    // Tracked scans mostly repeat the previous tracked scan's options, so the followed set is
    // carried on (added, changed, cleared, gone) rather than started over each time.
    if ((p.flags & sw::kScanTrack) && last_tracked.flags != 0 && rng.Chance(70)) p = last_tracked;
    if (p.flags & sw::kScanTrack) last_tracked = p;
    if (RunOne(dgrams, seq, p, rng.Chance(50))) ok++;
    if (i % 8 == 0) FuzzProcLine(&rng);
    if (i % 8 == 4) FuzzBytecode(&rng);
  }
  printf(
      "fuzz_scan: %llu mutated replies through RunScan (seed %llu, %zu seeds; %llu scans ended well, the rest "
      "with an errno): no sanitizer report\n",
      static_cast<unsigned long long>(count), static_cast<unsigned long long>(seed), corpus.size(),
      static_cast<unsigned long long>(ok));
  return 0;
}
