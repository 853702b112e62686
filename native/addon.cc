// The only file that includes napi.h: argument unpacking, JS conversion, async work + Promise,
// errors as an errno number and a syscall (named in lib/native.ts). Options arrive validated and
// normalised from lib/sampler.ts; here types are re-checked only.
// Teardown rule: an environment (a worker thread) may stop at any moment, even in the middle of a
// call. Nothing here assumes a N-API call succeeds: a value that could not be made is checked before
// its memory is touched, an exception that cannot be thrown is dropped
// (NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS), and an async completion makes no JS value at all once
// the environment cannot run JavaScript. A scan in flight owns its socket and buffers; the Sampler
// only lends them, so a finalized Sampler or a stopped environment never frees memory under it.
#define NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS
#include <arpa/inet.h>
#include <errno.h>
#include <napi.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <unordered_set>
#include <utility>

#include "inet_diag.h"
#include "netlink.h"
#include "scan.h"

namespace {

using sw::ScanOutput;
using sw::ScanParams;
using sw::SockRecord;
using sw::Status;

// Failures cross as a number: errno (negative, as Node's SystemError carries it), syscall, and
// strerror as the message. lib/native.ts names the errno with Node's own table and shapes the error.
// Called on the JS thread only (strerror is not thread-safe).
Napi::Error SystemError(Napi::Env env, const Status& s) {
  int e = s.err < 0 ? -s.err : s.err;
  Napi::Error err = Napi::Error::New(env, strerror(e));
  err.Set("errno", Napi::Number::New(env, -e));
  err.Set("syscall", Napi::String::New(env, s.syscall));
  return err;
}

std::string FormatAddress(uint8_t family, const uint8_t* addr) {
  char buf[INET6_ADDRSTRLEN];
  if (inet_ntop(family, addr, buf, sizeof(buf)) == nullptr) return std::string();
  return std::string(buf);
}

// Records travel packed, like aggregates: kRecordFields u32 per record, kMaxSkmem u32 of SKMEMINFO
// per record when asked for, and the addresses as one string "local,remote,local,remote,…".
// lib/native.ts unpacks them into objects, which costs far less in JS than property by property
// through N-API.
constexpr uint32_t kRecordFields = 16;

Napi::Object PackRecords(Napi::Env env, const std::vector<sw::Offender>& recs, bool skmem) {
  size_t n = recs.size();
  Napi::Uint32Array fields = Napi::Uint32Array::New(env, n * kRecordFields);
  if (fields.IsEmpty() || (n > 0 && fields.Data() == nullptr)) return Napi::Object();
  std::string addresses;
  addresses.reserve(n * 32);
  for (size_t i = 0; i < n; i++) {
    const SockRecord& r = recs[i].rec;
    uint32_t* f = fields.Data() + i * kRecordFields;
    f[0] = r.family;
    f[1] = r.protocol;
    f[2] = r.state;
    f[3] = r.sport;
    f[4] = r.dport;
    f[5] = r.rqueue;
    f[6] = r.wqueue;
    f[7] = r.uid;
    f[8] = r.inode;
    f[9] = static_cast<uint32_t>(r.cookie & 0xFFFFFFFFu);
    f[10] = static_cast<uint32_t>(r.cookie >> 32);
    f[11] = r.ifindex;
    f[12] = r.timer | (static_cast<uint32_t>(r.retrans) << 8);
    f[13] = r.expires;
    f[14] = recs[i].reasons;
    f[15] = r.skmem_count;
    if (i) addresses.push_back(',');
    addresses += FormatAddress(r.family, r.src);
    addresses.push_back(',');
    addresses += FormatAddress(r.family, r.dst);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("count", Napi::Number::New(env, static_cast<double>(n)));
  o.Set("fields", fields);
  o.Set("addresses", Napi::String::New(env, addresses));
  if (skmem) {
    Napi::Uint32Array mem = Napi::Uint32Array::New(env, n * sw::kMaxSkmem);
    if (mem.IsEmpty() || (n > 0 && mem.Data() == nullptr)) return Napi::Object();
    for (size_t i = 0; i < n; i++) {
      memcpy(mem.Data() + i * sw::kMaxSkmem, recs[i].rec.skmem, sizeof(recs[i].rec.skmem));
    }
    o.Set("skmem", mem);
  }
  return o;
}

Napi::Object AggregatesToJs(Napi::Env env, const ScanOutput& out);

// Listeners travel packed like aggregates: families, ports, [queue, backlog] pairs, addresses.
Napi::Object ListenersToJs(Napi::Env env, const ScanOutput& out) {
  size_t n = out.listeners.size();
  Napi::Object l = Napi::Object::New(env);
  Napi::Uint8Array fam = Napi::Uint8Array::New(env, n);
  Napi::Uint16Array ports = Napi::Uint16Array::New(env, n);
  Napi::Uint32Array queues = Napi::Uint32Array::New(env, 2 * n);
  if (fam.IsEmpty() || ports.IsEmpty() || queues.IsEmpty() ||
      (n > 0 && (fam.Data() == nullptr || ports.Data() == nullptr || queues.Data() == nullptr))) {
    return Napi::Object();
  }
  std::string addresses;
  for (size_t i = 0; i < n; i++) {
    const sw::Listener& e = out.listeners[i];
    fam[i] = e.family;
    ports[i] = e.port;
    queues[2 * i] = e.queue;
    queues[2 * i + 1] = e.backlog;
    if (i) addresses.push_back(',');
    addresses += FormatAddress(e.family, e.addr);
  }
  l.Set("count", Napi::Number::New(env, static_cast<double>(n)));
  l.Set("families", fam);
  l.Set("ports", ports);
  l.Set("queues", queues);
  l.Set("addresses", Napi::String::New(env, addresses));
  return l;
}

// Every scan result costs a handful of N-API calls, whatever the number of sockets.
Napi::Object OutputToJs(Napi::Env env, const ScanOutput& out, uint32_t flags, bool listeners) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("records", PackRecords(env, out.records, (flags & sw::kScanSkmem) != 0));
  o.Set("offendersTotal", Napi::Number::New(env, static_cast<double>(out.offenders_total)));
  o.Set("socketsSeen", Napi::Number::New(env, static_cast<double>(out.sockets_seen)));
  o.Set("skippedUnknownState", Napi::Number::New(env, static_cast<double>(out.skipped_unknown_state)));
  // TCP states at [state], UDP at [kStateSlots + state].
  Napi::Uint32Array counts = Napi::Uint32Array::New(env, 2 * sw::kStateSlots);
  if (counts.IsEmpty() || counts.Data() == nullptr) return Napi::Object();
  memcpy(counts.Data(), out.tcp_states, sizeof(out.tcp_states));
  memcpy(counts.Data() + sw::kStateSlots, out.udp_states, sizeof(out.udp_states));
  o.Set("stateCounts", counts);
  // Per protocol and family: [(TCP 0 / UDP 1) * 2 + (v4 0 / v6 1)] * kStateSlots + state.
  Napi::Uint32Array fam_counts = Napi::Uint32Array::New(env, 4 * sw::kStateSlots);
  if (fam_counts.IsEmpty() || fam_counts.Data() == nullptr) return Napi::Object();
  memcpy(fam_counts.Data(), out.family_states, sizeof(out.family_states));
  o.Set("familyStateCounts", fam_counts);
  o.Set("overRecv", Napi::Number::New(env, static_cast<double>(out.over_recv)));
  o.Set("overSend", Napi::Number::New(env, static_cast<double>(out.over_send)));
  o.Set("overAccept", Napi::Number::New(env, static_cast<double>(out.over_accept)));
  if (flags & sw::kScanAggregate) o.Set("aggregates", AggregatesToJs(env, out));
  if (flags & sw::kScanHistogram) {
    Napi::Uint32Array hc = Napi::Uint32Array::New(env, out.hist_counts.size());
    Napi::Float64Array hs = Napi::Float64Array::New(env, sw::kHistSeries);
    if (hc.IsEmpty() || hs.IsEmpty() || hc.Data() == nullptr || hs.Data() == nullptr) return Napi::Object();
    memcpy(hc.Data(), out.hist_counts.data(), out.hist_counts.size() * sizeof(uint32_t));
    for (size_t i = 0; i < sw::kHistSeries; i++) hs[i] = static_cast<double>(out.hist_sums[i]);
    o.Set("histCounts", hc);
    o.Set("histSums", hs);
  }
  if (listeners) o.Set("listeners", ListenersToJs(env, out));
  if (flags & sw::kScanTrack) {
    // Record i is of kind kinds[i] (sw::TrackKind).
    size_t n = out.track_kinds.size();
    Napi::Object t = Napi::Object::New(env);
    Napi::Uint8Array kinds = Napi::Uint8Array::New(env, n);
    if (t.IsEmpty() || kinds.IsEmpty() || (n > 0 && kinds.Data() == nullptr)) return Napi::Object();
    if (n) memcpy(kinds.Data(), out.track_kinds.data(), n);
    t.Set("kinds", kinds);
    t.Set("tracked", Napi::Number::New(env, static_cast<double>(out.tracked)));
    t.Set("reset", Napi::Boolean::New(env, out.track_reset));
    o.Set("track", t);
  }
  o.Set("udpFromProc", out.udp_from_proc);
  o.Set("bytesReceived", Napi::Number::New(env, static_cast<double>(out.bytes_received)));
  o.Set("recvCalls", Napi::Number::New(env, static_cast<double>(out.recv_calls)));
  o.Set("elapsedNs", Napi::Number::New(env, static_cast<double>(out.elapsed_ns)));
  return o;
}

Napi::Object AggregatesToJs(Napi::Env env, const ScanOutput& out) {
  // Aggregates travel packed: one typed array per field and the addresses as one string, so
  // thousands of destinations cost a few N-API calls instead of thousands of objects.
  size_t na = out.aggregates.size();
  Napi::Object aggs = Napi::Object::New(env);
  Napi::Uint8Array fam = Napi::Uint8Array::New(env, na);
  Napi::Uint16Array ports = Napi::Uint16Array::New(env, na);
  Napi::Uint32Array counts = Napi::Uint32Array::New(env, na * sw::kAggCountFields);
  if (fam.IsEmpty() || ports.IsEmpty() || counts.IsEmpty() ||
      (na > 0 && (fam.Data() == nullptr || ports.Data() == nullptr || counts.Data() == nullptr))) {
    return Napi::Object();
  }
  std::string addresses;
  addresses.reserve(na * 16);
  for (size_t i = 0; i < na; i++) {
    const sw::AggEntry& e = out.aggregates[i];
    fam[i] = e.key.family;
    ports[i] = e.key.port;
    uint32_t* c = counts.Data() + i * sw::kAggCountFields;
    c[0] = e.total;
    memcpy(c + 1, e.states, sizeof(e.states));
    if (i) addresses.push_back(',');
    addresses += FormatAddress(e.key.family, e.key.addr);
  }
  aggs.Set("count", Napi::Number::New(env, static_cast<double>(na)));
  aggs.Set("total", Napi::Number::New(env, static_cast<double>(out.aggregates_total)));
  aggs.Set("sockets", Napi::Number::New(env, static_cast<double>(out.aggregated_sockets)));
  aggs.Set("families", fam);
  aggs.Set("ports", ports);
  aggs.Set("counts", counts);
  aggs.Set("addresses", Napi::String::New(env, addresses));
  if (!out.agg_cookies.empty() || !out.agg_cookie_index.empty()) {
    size_t n = out.agg_cookies.size();
    Napi::ArrayBuffer cb = Napi::ArrayBuffer::New(env, n * sizeof(uint64_t));
    Napi::ArrayBuffer ib = Napi::ArrayBuffer::New(env, n * sizeof(uint32_t));
    if (cb.IsEmpty() || ib.IsEmpty() || (n > 0 && (cb.Data() == nullptr || ib.Data() == nullptr)))
      return Napi::Object();
    if (n) memcpy(cb.Data(), out.agg_cookies.data(), n * sizeof(uint64_t));
    if (n) memcpy(ib.Data(), out.agg_cookie_index.data(), n * sizeof(uint32_t));
    aggs.Set("cookies", Napi::TypedArrayOf<uint64_t>::New(env, n, cb, 0, napi_biguint64_array));
    aggs.Set("cookieIndex", Napi::TypedArrayOf<uint32_t>::New(env, n, ib, 0, napi_uint32_array));
  }
  return aggs;
}

bool GetUint32(Napi::Object o, const char* key, uint32_t* out) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) {
    Napi::TypeError::New(o.Env(), std::string("native: ") + key + " must be a number").ThrowAsJavaScriptException();
    return false;
  }
  *out = v.As<Napi::Number>().Uint32Value();
  return true;
}

bool GetInt64(Napi::Object o, const char* key, int64_t* out) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) {
    Napi::TypeError::New(o.Env(), std::string("native: ") + key + " must be a number").ThrowAsJavaScriptException();
    return false;
  }
  *out = v.As<Napi::Number>().Int64Value();
  return true;
}

bool ParseScanRequest(Napi::Value arg, ScanParams* p) {
  Napi::Env env = arg.Env();
  if (!arg.IsObject()) {
    Napi::TypeError::New(env, "native: scan request must be an object").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Object o = arg.As<Napi::Object>();
  if (!GetUint32(o, "protocols", &p->protocols) || !GetUint32(o, "families", &p->families) ||
      !GetUint32(o, "tcpStates", &p->tcp_states) || !GetUint32(o, "udpStates", &p->udp_states) ||
      !GetInt64(o, "recvThreshold", &p->recv_threshold) || !GetInt64(o, "sendThreshold", &p->send_threshold) ||
      !GetInt64(o, "acceptThreshold", &p->accept_threshold) || !GetUint32(o, "maxRecords", &p->max_records) ||
      !GetUint32(o, "flags", &p->flags) || !GetUint32(o, "aggStates", &p->agg_states) ||
      !GetUint32(o, "aggTop", &p->agg_top) || !GetUint32(o, "aggMinTotal", &p->agg_min_total)) {
    return false;
  }
  Napi::Value bc = o.Get("bytecode");
  if (bc.IsBuffer()) {
    Napi::Buffer<uint8_t> b = bc.As<Napi::Buffer<uint8_t>>();
    p->bytecode.assign(b.Data(), b.Data() + b.Length());
  } else if (!bc.IsUndefined()) {
    Napi::TypeError::New(env, "native: bytecode must be a Buffer").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Value inodes = o.Get("ownerInodes");
  if (inodes.IsTypedArray() && inodes.As<Napi::TypedArray>().TypedArrayType() == napi_uint32_array) {
    Napi::Uint32Array a = inodes.As<Napi::Uint32Array>();
    p->owner_inodes.assign(a.Data(), a.Data() + a.ElementLength());
  } else if (!inodes.IsUndefined()) {
    Napi::TypeError::New(env, "native: ownerInodes must be a Uint32Array").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Value cookies = o.Get("ownerCookies");
  if (cookies.IsTypedArray() && cookies.As<Napi::TypedArray>().TypedArrayType() == napi_biguint64_array) {
    Napi::TypedArrayOf<uint64_t> a = cookies.As<Napi::TypedArrayOf<uint64_t>>();
    p->owner_cookies.assign(a.Data(), a.Data() + a.ElementLength());
  } else if (!cookies.IsUndefined()) {
    Napi::TypeError::New(env, "native: ownerCookies must be a BigUint64Array").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Value excl = o.Get("aggExcludePorts");
  if (excl.IsTypedArray() && excl.As<Napi::TypedArray>().TypedArrayType() == napi_uint32_array &&
      excl.As<Napi::TypedArray>().ElementLength() % 2 == 0) {
    Napi::Uint32Array a = excl.As<Napi::Uint32Array>();
    p->agg_exclude_ports.assign(a.Data(), a.Data() + a.ElementLength());
  } else if (!excl.IsUndefined()) {
    Napi::TypeError::New(env, "native: aggExcludePorts must be a Uint32Array of [from, to] pairs")
        .ThrowAsJavaScriptException();
    return false;
  }
  Napi::Value bounds = o.Get("histBounds");
  if (bounds.IsTypedArray() && bounds.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array) {
    Napi::Float64Array a = bounds.As<Napi::Float64Array>();
    // Re-checked here: the sink trusts them (strictly increasing, whole, non-negative, few).
    bool ok = a.ElementLength() <= sw::kMaxHistBounds;
    for (size_t i = 0; ok && i < a.ElementLength(); i++) {
      double b = a[i];
      ok = b >= 0 && b <= 9007199254740991.0 && b == static_cast<double>(static_cast<uint64_t>(b)) &&
           (i == 0 || b > a[i - 1]);
      if (ok) p->hist_bounds.push_back(static_cast<uint64_t>(b));
    }
    if (!ok) {
      Napi::RangeError::New(env, "native: histBounds must be at most 64 increasing whole numbers")
          .ThrowAsJavaScriptException();
      return false;
    }
  } else if (!bounds.IsUndefined()) {
    Napi::TypeError::New(env, "native: histBounds must be a Float64Array").ThrowAsJavaScriptException();
    return false;
  }
  if ((p->flags & sw::kScanHistogram) && bounds.IsUndefined()) {
    Napi::TypeError::New(env, "native: the histogram flag needs histBounds").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Value step = o.Get("trackStep");
  if (step.IsNumber() && step.As<Napi::Number>().DoubleValue() >= 0 &&
      step.As<Napi::Number>().DoubleValue() <= 9007199254740991.0) {
    p->track_step = static_cast<uint64_t>(step.As<Napi::Number>().Int64Value());
  } else if (!step.IsUndefined()) {
    Napi::TypeError::New(env, "native: trackStep must be a non-negative number").ThrowAsJavaScriptException();
    return false;
  }
  if ((p->flags & sw::kScanTrackFull) && !(p->flags & sw::kScanTrack)) {
    Napi::TypeError::New(env, "native: the full-track flag needs the track flag").ThrowAsJavaScriptException();
    return false;
  }
  if ((p->flags & sw::kScanTrack) && (p->flags & sw::kScanAll)) {
    Napi::TypeError::New(env, "native: tracking follows offenders; it cannot return every socket")
        .ThrowAsJavaScriptException();
    return false;
  }
  Napi::Value top = o.Get("listenersTop");
  if (top.IsNumber()) {
    p->listeners_top = top.As<Napi::Number>().Uint32Value();
  } else if (!top.IsUndefined()) {
    Napi::TypeError::New(env, "native: listenersTop must be a number").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

class Sampler;

// One per environment (the main thread, each worker thread), owned by the addon instance.
struct EnvState {
  napi_env env = nullptr;
  bool stopping = false;  // the environment's cleanup hook ran: sockets are closed, no new work
  std::unordered_set<Sampler*> samplers;
};

// What V8 is told a sampler holds outside its heap: the socket object and its receive buffer
// (netlink.cc's kRecvBufferSize). The kernel's socket buffer is not process memory.
constexpr int64_t kSocketBytes = 64 * 1024 + sizeof(sw::NetlinkSocket);
using SocketPtr = std::unique_ptr<sw::NetlinkSocket>;

void AccountSocket(napi_env env, int64_t delta) {
  int64_t total = 0;
  napi_adjust_external_memory(env, delta, &total);  // no JS runs; a failure only skips the hint
}

// Closes the fd and frees the receive buffer, and tells V8.
void ReleaseSocket(napi_env env, SocketPtr* sock) {
  if (!*sock) return;
  sock->reset();
  AccountSocket(env, -kSocketBytes);
}

// The offenders a sampler follows (change tracking): what V8 is told follows its size.
using TrackPtr = std::unique_ptr<sw::TrackState>;

void AccountTrack(napi_env env, sw::TrackState* t) {
  int64_t now = t->Bytes();
  if (now == t->accounted) return;
  AccountSocket(env, now - t->accounted);
  t->accounted = now;
}

void ReleaseTrack(napi_env env, TrackPtr* t) {
  if (!*t) return;
  AccountSocket(env, -(*t)->accounted);
  t->reset();
}

// Whether the environment can still run JavaScript. A stopping environment (worker.terminate(),
// process.exit() in a worker) refuses every call that may run JS with napi_pending_exception although
// no exception is pending; node-addon-api reads the same signal.
bool CanRunJs(napi_env env) {
  napi_value global;
  bool has = false;
  if (napi_get_global(env, &global) != napi_ok) return false;
  return napi_has_named_property(env, global, "undefined", &has) == napi_ok;
}

// One async scan. Execute runs on a libuv pool thread and touches only this object: the socket is
// moved here from the Sampler for the duration of the scan and given back (or freed) on completion.
struct ScanJob {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  Sampler* sampler = nullptr;  // nulled when the Sampler is finalized first
  SocketPtr sock;
  TrackPtr track;  // lent like the socket, with kScanTrack
  bool in_netns = false;
  ScanParams params;
  ScanOutput out;
  Status status;
};

void ExecuteScan(napi_env, void* data);
void CompleteScan(napi_env env, napi_status status, void* data);

class Sampler : public Napi::ObjectWrap<Sampler> {
 public:
  static Napi::Function Define(Napi::Env env, EnvState* state) {
    return DefineClass(env, "Sampler",
                       {InstanceMethod<&Sampler::ScanSync>("scanSync"), InstanceMethod<&Sampler::Scan>("scan"),
                        InstanceMethod<&Sampler::Lookup>("lookup"), InstanceMethod<&Sampler::Close>("close")},
                       state);
  }

  explicit Sampler(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<Sampler>(info), state_(static_cast<EnvState*>(info.Data())) {
    Napi::Env env = info.Env();
    if (state_ != nullptr) state_->samplers.insert(this);
    std::string netns;
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      if (!info[0].IsString()) {
        Napi::TypeError::New(env, "native: netns path must be a string").ThrowAsJavaScriptException();
        return;
      }
      netns = info[0].As<Napi::String>().Utf8Value();
      in_netns_ = !netns.empty();
    }
    uint32_t recv_timeout_ms = sw::kDefaultRecvTimeoutMs;
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsNumber()) {
        Napi::TypeError::New(env, "native: recvTimeoutMs must be a number").ThrowAsJavaScriptException();
        return;
      }
      recv_timeout_ms = info[1].As<Napi::Number>().Uint32Value();
    }
    if (state_ == nullptr || state_->stopping) return;
    SocketPtr sock(new sw::NetlinkSocket());
    Status s = sock->Open(netns.empty() ? nullptr : netns.c_str(), recv_timeout_ms);
    if (!s.ok()) {
      SystemError(env, s).ThrowAsJavaScriptException();
      return;
    }
    sock_ = std::move(sock);
    AccountSocket(env, kSocketBytes);
  }

  // A Sampler the user never closed: its fd and buffer go with it. A scan still in flight keeps
  // its own socket and frees it when it completes.
  ~Sampler() override {
    if (job_ != nullptr) job_->sampler = nullptr;
    if (state_ != nullptr) {
      ReleaseSocket(state_->env, &sock_);
      ReleaseTrack(state_->env, &track_);
      state_->samplers.erase(this);
    }
  }

  // The environment's cleanup hook: close now, forget the state (it goes before this object may).
  void Teardown(napi_env env) {
    closing_ = true;
    ReleaseSocket(env, &sock_);
    ReleaseTrack(env, &track_);
    state_ = nullptr;
  }

  // Completion of the scan in flight: the socket (and the followed set) come back unless close()
  // came meanwhile.
  void FinishScan(SocketPtr* sock, TrackPtr* track) {
    job_ = nullptr;
    if (!closing_ && state_ != nullptr) {
      sock_ = std::move(*sock);
      if (*track) track_ = std::move(*track);
    }
  }

  bool in_netns() const { return in_netns_; }

 private:
  bool Usable(Napi::Env env, const char* syscall) {
    if (job_ != nullptr && !closing_) {
      SystemError(env, Status::Fail(-EBUSY, syscall)).ThrowAsJavaScriptException();
      return false;
    }
    if (closing_ || !sock_) {
      SystemError(env, Status::Fail(-EBADF, syscall)).ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  Napi::Value ScanSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ScanParams p;
    if (!Usable(env, "scan") || !ParseScanRequest(info[0], &p)) return env.Undefined();
    ScanOutput out;
    if ((p.flags & sw::kScanTrack) && !track_) track_.reset(new sw::TrackState());
    Status s = sw::RunScan(sock_.get(), p, !in_netns_, &out, (p.flags & sw::kScanTrack) ? track_.get() : nullptr);
    if (track_) AccountTrack(env, track_.get());
    if (!s.ok()) {
      SystemError(env, s).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return OutputToJs(env, out, p.flags, p.listeners_top > 0);
  }

  Napi::Value Scan(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::unique_ptr<ScanJob> job(new ScanJob());
    if (!Usable(env, "scan") || !ParseScanRequest(info[0], &job->params)) return env.Undefined();
    napi_value promise;
    napi_value name;
    if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
        napi_create_string_utf8(env, "sockwatch:scan", NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_create_async_work(env, nullptr, name, ExecuteScan, CompleteScan, job.get(), &job->work) != napi_ok) {
      Napi::Error::New(env, "native: cannot queue the scan").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    job->sampler = this;
    job->in_netns = in_netns_;
    job->sock = std::move(sock_);
    if (job->params.flags & sw::kScanTrack) {
      if (!track_) track_.reset(new sw::TrackState());
      job->track = std::move(track_);
    }
    if (napi_queue_async_work(env, job->work) != napi_ok) {
      sock_ = std::move(job->sock);
      if (job->track) track_ = std::move(job->track);
      napi_delete_async_work(env, job->work);
      Napi::Error::New(env, "native: cannot queue the scan").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    job_ = job.release();
    return Napi::Value(env, promise);
  }

  Napi::Value Lookup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Usable(env, "lookup")) return env.Undefined();
    if (!info[0].IsObject()) {
      Napi::TypeError::New(env, "native: lookup request must be an object").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object o = info[0].As<Napi::Object>();
    uint32_t family, protocol, sport, dport, flags;
    if (!GetUint32(o, "family", &family) || !GetUint32(o, "protocol", &protocol) ||
        !GetUint32(o, "localPort", &sport) || !GetUint32(o, "remotePort", &dport) || !GetUint32(o, "flags", &flags)) {
      return env.Undefined();
    }
    Napi::Value src = o.Get("localAddress");
    Napi::Value dst = o.Get("remoteAddress");
    size_t alen = family == AF_INET6 ? 16 : 4;
    if (!src.IsBuffer() || !dst.IsBuffer() || src.As<Napi::Buffer<uint8_t>>().Length() != alen ||
        dst.As<Napi::Buffer<uint8_t>>().Length() != alen) {
      Napi::TypeError::New(env, "native: lookup addresses must be Buffers of 4 or 16 bytes")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    uint64_t cookie = ~0ull;  // INET_DIAG_NOCOOKIE
    Napi::Value c = o.Get("cookie");
    if (c.IsBigInt()) {
      bool lossless = true;
      cookie = c.As<Napi::BigInt>().Uint64Value(&lossless);
    }
    SockRecord rec;
    bool found = false;
    Status s = sw::LookupSocket(sock_.get(), static_cast<uint8_t>(family), static_cast<uint8_t>(protocol),
                                src.As<Napi::Buffer<uint8_t>>().Data(), static_cast<uint16_t>(sport),
                                dst.As<Napi::Buffer<uint8_t>>().Data(), static_cast<uint16_t>(dport), cookie,
                                (flags & sw::kScanSkmem) != 0, &rec, &found);
    if (!s.ok()) {
      SystemError(env, s).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!found) return env.Null();
    return PackRecords(env, std::vector<sw::Offender>{sw::Offender{rec, 0}}, (flags & sw::kScanSkmem) != 0);
  }

  // Frees the socket (fd and receive buffer) and the followed set now; with a scan in flight,
  // when it completes.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    closing_ = true;
    ReleaseSocket(info.Env(), &sock_);
    ReleaseTrack(info.Env(), &track_);
    return info.Env().Undefined();
  }

  EnvState* state_;
  SocketPtr sock_;  // null when closed, or lent to the scan in flight
  TrackPtr track_;  // the followed offenders (change tracking): null until a tracked scan, or lent
  ScanJob* job_ = nullptr;
  bool in_netns_ = false;
  bool closing_ = false;
};

void ExecuteScan(napi_env, void* data) {
  // A libuv pool thread: no env, no JS values, nothing but the job itself.
  ScanJob* job = static_cast<ScanJob*>(data);
  job->status = sw::RunScan(job->sock.get(), job->params, !job->in_netns, &job->out, job->track.get());
}

void CompleteScan(napi_env env, napi_status status, void* data) {
  std::unique_ptr<ScanJob> job(static_cast<ScanJob*>(data));
  napi_delete_async_work(env, job->work);
  if (job->track) AccountTrack(env, job->track.get());
  if (job->sampler != nullptr) job->sampler->FinishScan(&job->sock, &job->track);
  ReleaseSocket(env, &job->sock);  // closed or finalized meanwhile
  ReleaseTrack(env, &job->track);
  // A stopping environment gets no value and no settled promise: nothing can observe them, and
  // any JS work would fail (node-addon-api would turn that failure into a fatal error).
  if (status == napi_cancelled || !CanRunJs(env)) return;
  Napi::HandleScope scope(env);
  napi_value value = nullptr;
  bool ok = job->status.ok();
  if (ok) {
    Napi::Object r = OutputToJs(env, job->out, job->params.flags, job->params.listeners_top > 0);
    if (!r.IsEmpty()) value = r;
  } else {
    Napi::Error e = SystemError(env, job->status);
    if (!e.IsEmpty()) value = e.Value();
  }
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    // Making the value failed with an exception (out of memory): reject with it.
    napi_get_and_clear_last_exception(env, &value);
    ok = false;
  }
  if (value == nullptr) return;
  if (ok) {
    napi_resolve_deferred(env, job->deferred, value);
  } else {
    napi_reject_deferred(env, job->deferred, value);
  }
}

// Test hook: runs recorded reply datagrams through the production scan (sw::RunScan over a
// ReplayChannel: the same walk, sink, thresholds, maxRecords, peek path and aggregation as a live
// dump). Every request of the scan is answered from the datagrams in order, with sequence `seq`.
Napi::Value ParseRecorded(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsObject()) {
    Napi::TypeError::New(env, "native: parseRecorded(datagrams, seq, request)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ScanParams p;
  if (!ParseScanRequest(info[2], &p)) return env.Undefined();
  Napi::Array dgrams = info[0].As<Napi::Array>();
  uint32_t seq = info[1].As<Napi::Number>().Uint32Value();
  // Copies into 4-byte aligned storage, as recvmsg's buffer is: a Buffer may start anywhere.
  std::vector<std::vector<uint32_t>> storage;
  std::vector<sw::ReplayChannel::Datagram> views;
  for (uint32_t i = 0; i < dgrams.Length(); i++) {
    Napi::Value v = dgrams.Get(i);
    if (!v.IsBuffer()) {
      Napi::TypeError::New(env, "native: datagrams must be Buffers").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Buffer<char> b = v.As<Napi::Buffer<char>>();
    storage.emplace_back((b.Length() + 3) / 4);
    if (b.Length() > 0) memcpy(storage.back().data(), b.Data(), b.Length());
  }
  for (size_t i = 0; i < storage.size(); i++) {
    Napi::Buffer<char> b = dgrams.Get(static_cast<uint32_t>(i)).As<Napi::Buffer<char>>();
    views.push_back({reinterpret_cast<const char*>(storage[i].data()), b.Length()});
  }
  sw::ReplayChannel channel(std::move(views), seq);
  ScanOutput out;
  Status s = sw::RunScan(&channel, p, false, &out);
  if (!s.ok()) {
    SystemError(env, s).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = OutputToJs(env, out, p.flags, p.listeners_top > 0);
  o.Set("done", channel.saw_done());
  return o;
}

class SockwatchAddon : public Napi::Addon<SockwatchAddon> {
 public:
  SockwatchAddon(Napi::Env env, Napi::Object exports) {
    state_.env = env;
    hooked_ = napi_add_env_cleanup_hook(env, &SockwatchAddon::OnEnvCleanup, &state_) == napi_ok;
    DefineAddon(exports, {InstanceValue("Sampler", Sampler::Define(env, &state_), napi_enumerable),
                          InstanceValue("version", Napi::String::New(env, "1"), napi_enumerable),
                          InstanceMethod<&SockwatchAddon::ParseRecordedMethod>("parseRecorded", napi_enumerable),
                          InstanceMethod<&SockwatchAddon::ExternalMemory>("externalMemory", napi_enumerable)});
  }

  ~SockwatchAddon() {
    if (hooked_ && !state_.stopping) napi_remove_env_cleanup_hook(state_.env, &SockwatchAddon::OnEnvCleanup, &state_);
    for (Sampler* s : state_.samplers) s->Teardown(state_.env);
  }

 private:
  // Runs when the environment stops (worker.terminate(), process.exit(), the end of the process):
  // every socket not lent to a scan in flight is closed here, the rest when their scan completes.
  static void OnEnvCleanup(void* arg) {
    EnvState* state = static_cast<EnvState*>(arg);
    state->stopping = true;
    std::unordered_set<Sampler*> samplers;
    samplers.swap(state->samplers);
    for (Sampler* s : samplers) s->Teardown(state->env);
  }

  Napi::Value ParseRecordedMethod(const Napi::CallbackInfo& info) { return ParseRecorded(info); }

  // Tests: the external memory V8 counts for this isolate (what AdjustExternalMemory reported; Node
  // 20's process.memoryUsage().external does not include it).
  Napi::Value ExternalMemory(const Napi::CallbackInfo& info) {
    int64_t total = 0;
    napi_adjust_external_memory(info.Env(), 0, &total);
    return Napi::Number::New(info.Env(), static_cast<double>(total));
  }

  EnvState state_;
  bool hooked_ = false;
};

}  // namespace

NODE_API_ADDON(SockwatchAddon)
