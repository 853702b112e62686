// RAII NETLINK_SOCK_DIAG socket: open (optionally inside another network namespace), send one
// request, walk the reply stream. Every function returns 0 or -errno and names the failing
// syscall through Status; nothing here prints or throws.
#pragma once

#include <linux/netlink.h>
#include <stddef.h>
#include <stdint.h>

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

class NetlinkSocket {
 public:
  NetlinkSocket() = default;
  ~NetlinkSocket();
  NetlinkSocket(const NetlinkSocket&) = delete;
  NetlinkSocket& operator=(const NetlinkSocket&) = delete;

  // netns_path: nullptr for the caller's namespace, else /proc/PID/ns/net or /var/run/netns/NAME.
  Status Open(const char* netns_path);
  void Close();
  bool is_open() const { return fd_ >= 0; }

  // Sends `len` bytes (a complete request whose nlmsg_seq the caller set from NextSeq()).
  Status Send(const void* buf, size_t len);
  // Reads replies for `seq` until NLMSG_DONE (dump) or the first answer (non-dump, done_on_first).
  // NLMSG_ERROR becomes its errno with syscall "recvmsg" (kernel-side error of the request).
  Status Receive(uint32_t seq, MessageSink* sink, bool done_on_first);

  uint32_t NextSeq() { return ++seq_; }
  // Whether the kernel answers the legacy one-walk TCP dump (learned on first use).
  bool single_walk_ok() const { return single_walk_ok_; }
  void set_single_walk_ok(bool ok) { single_walk_ok_ = ok; }
  uint64_t bytes_received() const { return bytes_received_; }
  uint64_t recv_calls() const { return recv_calls_; }
  void ResetCounters() { bytes_received_ = recv_calls_ = 0; }

 private:
  int fd_ = -1;
  uint32_t seq_ = 0;
  bool single_walk_ok_ = true;
  std::vector<char> buf_;
  uint64_t bytes_received_ = 0;
  uint64_t recv_calls_ = 0;
};

// Walks one datagram of netlink messages; exposed for the recorded-reply parser tests.
// Returns 1 when NLMSG_DONE was seen, 0 to read more, or -errno.
int WalkDatagram(const char* data, size_t len, uint32_t seq, MessageSink* sink, bool* saw_answer);

}  // namespace sw
