// RAII NETLINK_SOCK_DIAG socket: open (optionally inside another network namespace), send one
// request, walk the reply stream. Every function returns 0 or -errno and names the failing
// syscall through Status; nothing here prints or throws. Rule: a scan talks to a DiagChannel, so
// the live socket and recorded replies (tests, fuzzing) go through the same walk and the same sink.
#pragma once

#include <linux/netlink.h>
#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

namespace sw {

struct Status {
  int err = 0;               // 0 or -errno
  const char* syscall = "";  // the call that failed
  static Status Ok() { return Status(); }
  static Status Fail(int e, const char* sc) {
    Status s;
    s.err = e;
    s.syscall = sc;
    return s;
  }
  bool ok() const { return err == 0; }
};

// Called for each message of a reply that is not NLMSG_DONE / NLMSG_ERROR.
// Returns 0 to continue, or -errno to stop the walk with that error.
class MessageSink {
 public:
  virtual ~MessageSink() = default;
  virtual int OnMessage(const struct nlmsghdr* h) = 0;
};

// Where requests go and replies come from: the kernel (NetlinkSocket) or recorded datagrams
// (ReplayChannel). Replies are always walked by WalkDatagram into the caller's sink.
class DiagChannel {
 public:
  virtual ~DiagChannel() = default;
  // Sends `len` bytes (a complete request whose nlmsg_seq the caller set from NextSeq()).
  virtual Status Send(const void* buf, size_t len) = 0;
  // Reads replies for `seq` until NLMSG_DONE (dump) or the first answer (non-dump, done_on_first).
  // NLMSG_ERROR becomes its errno with syscall "recvmsg" (kernel-side error of the request).
  virtual Status Receive(uint32_t seq, MessageSink* sink, bool done_on_first) = 0;
  virtual uint32_t NextSeq() = 0;

  // Whether the kernel answers the legacy one-walk TCP dump (learned on first use).
  bool single_walk_ok() const { return single_walk_ok_; }
  void set_single_walk_ok(bool ok) { single_walk_ok_ = ok; }
  uint64_t bytes_received() const { return bytes_received_; }
  uint64_t recv_calls() const { return recv_calls_; }
  void ResetCounters() { bytes_received_ = recv_calls_ = 0; }

 protected:
  bool single_walk_ok_ = true;
  uint64_t bytes_received_ = 0;
  uint64_t recv_calls_ = 0;
};

constexpr uint32_t kDefaultRecvTimeoutMs = 5000;

class NetlinkSocket : public DiagChannel {
 public:
  NetlinkSocket() = default;
  ~NetlinkSocket() override;
  NetlinkSocket(const NetlinkSocket&) = delete;
  NetlinkSocket& operator=(const NetlinkSocket&) = delete;

  // netns_path: nullptr for the caller's namespace, else /proc/PID/ns/net or /var/run/netns/NAME.
  // recv_timeout_ms: a reply that does not come within this time fails the call with ETIMEDOUT
  // (0: wait forever).
  Status Open(const char* netns_path, uint32_t recv_timeout_ms = kDefaultRecvTimeoutMs);
  void Close();
  bool is_open() const { return fd_ >= 0; }

  // A Receive that stops before the end of its reply (an error, a timeout, a sink that gave up)
  // leaves the rest of a dump queued and the kernel's dump still running on this socket; the next
  // Send then opens a fresh socket in the same namespace instead of reusing this one.
  Status Send(const void* buf, size_t len) override;
  Status Receive(uint32_t seq, MessageSink* sink, bool done_on_first) override;
  uint32_t NextSeq() override { return ++seq_; }

  // Times this socket was reopened after an interrupted reply (tests).
  uint64_t reopens() const { return reopens_; }
  // Bytes of native memory this socket holds (its receive buffer; 0 once closed).
  size_t buffer_bytes() const { return buf_.capacity(); }

 private:
  Status Reopen();

  int fd_ = -1;
  uint32_t seq_ = 0;
  std::vector<char> buf_;
  std::string netns_path_;
  uint32_t recv_timeout_ms_ = kDefaultRecvTimeoutMs;
  bool dirty_ = false;  // a reply was left unfinished
  uint64_t reopens_ = 0;
};

// Replays recorded reply datagrams as if the kernel had sent them: every request gets `seq` (the
// sequence number the recording answered) and consumes datagrams from where the last one stopped.
// Running out of datagrams before a reply ends fails with ENODATA.
class ReplayChannel : public DiagChannel {
 public:
  struct Datagram {
    const char* data;
    size_t len;
  };
  ReplayChannel(std::vector<Datagram> datagrams, uint32_t seq) : dgrams_(std::move(datagrams)), seq_(seq) {}
  Status Send(const void*, size_t) override { return Status::Ok(); }
  Status Receive(uint32_t seq, MessageSink* sink, bool done_on_first) override;
  uint32_t NextSeq() override { return seq_; }
  // Whether a reply ended with NLMSG_DONE (or an ACK).
  bool saw_done() const { return saw_done_; }

 private:
  std::vector<Datagram> dgrams_;
  size_t next_ = 0;
  uint32_t seq_;
  bool saw_done_ = false;
};

// Walks one datagram of netlink messages (the one parser of replies, live or recorded).
// Returns 1 when the reply ended well (NLMSG_DONE, an ACK), 0 to read more, or -errno (a kernel
// error, an error carried by NLMSG_DONE, a malformed message, or the sink's). *ended is set when
// the reply ended (NLMSG_DONE or NLMSG_ERROR, with or without an error).
int WalkDatagram(const char* data, size_t len, uint32_t seq, MessageSink* sink, bool* saw_answer, bool* ended);

}  // namespace sw
