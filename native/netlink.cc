#include "netlink.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace sw {

namespace {

constexpr size_t kRecvBufferSize = 64 * 1024;  // the kernel caps dump batches at 32 KiB
constexpr int kSocketRcvBuf = 1024 * 1024;

// A kernel-supplied error as -errno in the range errno names cover (EIO for anything else).
int ErrnoOf(int32_t error) {
  int64_t e = error < 0 ? -static_cast<int64_t>(error) : static_cast<int64_t>(error);
  if (e <= 0 || e > 4095) return -EIO;
  return -static_cast<int>(e);
}

int OpenDiagSocket(int* out_fd) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return -errno;
  *out_fd = fd;
  return 0;
}

}  // namespace

NetlinkSocket::~NetlinkSocket() { Close(); }

void NetlinkSocket::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  std::vector<char>().swap(buf_);  // the receive buffer goes with the socket
}

Status NetlinkSocket::Reopen() {
  std::string path = netns_path_;
  Status s = Open(path.empty() ? nullptr : path.c_str(), recv_timeout_ms_);
  if (s.ok()) reopens_++;
  return s;
}

Status NetlinkSocket::Open(const char* netns_path, uint32_t recv_timeout_ms) {
  Close();
  netns_path_ = netns_path != nullptr ? netns_path : "";
  recv_timeout_ms_ = recv_timeout_ms;
  dirty_ = false;
  int fd = -1;
  if (netns_path != nullptr && netns_path[0] != '\0') {
    // setns() moves only the calling thread; a socket keeps the namespace it was created in.
    int target = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (target < 0) return Status::Fail(-errno, "open");
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0) {
      int e = -errno;
      close(target);
      return Status::Fail(e, "open");
    }
    if (setns(target, CLONE_NEWNET) != 0) {
      int e = -errno;
      close(target);
      close(self);
      return Status::Fail(e, "setns");
    }
    int err = OpenDiagSocket(&fd);
    // Return to our own namespace whatever happened; failing that is not recoverable.
    int back = setns(self, CLONE_NEWNET);
    int back_err = back != 0 ? -errno : 0;
    close(target);
    close(self);
    if (back_err != 0) {
      if (fd >= 0) close(fd);
      return Status::Fail(back_err, "setns");
    }
    if (err != 0) return Status::Fail(err, "socket");
  } else {
    int err = OpenDiagSocket(&fd);
    if (err != 0) return Status::Fail(err, "socket");
  }

  // A larger socket buffer only matters for the first batch; failure here is harmless.
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketRcvBuf, sizeof(kSocketRcvBuf));
  if (recv_timeout_ms > 0) {
    struct timeval tv;
    tv.tv_sec = static_cast<time_t>(recv_timeout_ms / 1000);
    tv.tv_usec = static_cast<suseconds_t>((recv_timeout_ms % 1000) * 1000);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) {
      int e = -errno;
      close(fd);
      return Status::Fail(e, "setsockopt");
    }
  }

  struct sockaddr_nl local;
  memset(&local, 0, sizeof(local));
  local.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&local), sizeof(local)) != 0) {
    int e = -errno;
    close(fd);
    return Status::Fail(e, "bind");
  }
  fd_ = fd;
  buf_.resize(kRecvBufferSize);
  return Status::Ok();
}

Status NetlinkSocket::Send(const void* buf, size_t len) {
  if (fd_ < 0) return Status::Fail(-EBADF, "sendto");
  if (dirty_) {
    Status s = Reopen();
    if (!s.ok()) return s;
  }
  struct sockaddr_nl kernel;
  memset(&kernel, 0, sizeof(kernel));
  kernel.nl_family = AF_NETLINK;
  for (;;) {
    ssize_t n = sendto(fd_, buf, len, 0, reinterpret_cast<struct sockaddr*>(&kernel), sizeof(kernel));
    if (n >= 0) {
      if (static_cast<size_t>(n) != len) return Status::Fail(-EMSGSIZE, "sendto");
      return Status::Ok();
    }
    if (errno == EINTR) continue;
    return Status::Fail(-errno, "sendto");
  }
}

int WalkDatagram(const char* data, size_t len, uint32_t seq, MessageSink* sink, bool* saw_answer, bool* ended) {
  size_t off = 0;
  while (len - off >= sizeof(struct nlmsghdr)) {
    const struct nlmsghdr* h = reinterpret_cast<const struct nlmsghdr*>(data + off);
    if (h->nlmsg_len < sizeof(struct nlmsghdr) || h->nlmsg_len > len - off) return -EBADMSG;
    size_t step = NLMSG_ALIGN(h->nlmsg_len);
    if (h->nlmsg_seq != seq) {  // a stale answer to an earlier, abandoned request
      off += step > len - off ? len - off : step;
      continue;
    }
    if (h->nlmsg_type == NLMSG_DONE) {
      *ended = true;
      // The kernel puts the dump's own result (an int, 0 or -errno) in NLMSG_DONE.
      int32_t result = 0;
      if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(result))) memcpy(&result, NLMSG_DATA(h), sizeof(result));
      return result < 0 ? ErrnoOf(result) : 1;
    }
    if (h->nlmsg_type == NLMSG_ERROR) {
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) return -EBADMSG;
      *ended = true;
      int32_t error = 0;
      memcpy(&error, NLMSG_DATA(h), sizeof(error));
      if (error == 0) return 1;  // an ACK
      return ErrnoOf(error);
    }
    if (h->nlmsg_type != NLMSG_NOOP && h->nlmsg_type != NLMSG_OVERRUN) {
      int r = sink->OnMessage(h);
      if (r < 0) return r;
      *saw_answer = true;
    }
    off += step > len - off ? len - off : step;
  }
  if (off != len) return -EBADMSG;  // trailing bytes shorter than a header
  return 0;
}

Status NetlinkSocket::Receive(uint32_t seq, MessageSink* sink, bool done_on_first) {
  if (fd_ < 0) return Status::Fail(-EBADF, "recvmsg");
  // Until the reply has ended, any way out leaves the socket unusable for the next request.
  dirty_ = true;
  for (;;) {
    struct sockaddr_nl from;
    struct iovec iov = {buf_.data(), buf_.size()};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_name = &from;
    msg.msg_namelen = sizeof(from);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n = recvmsg(fd_, &msg, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // SO_RCVTIMEO expired: the kernel never answered (or stopped answering) this request.
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::Fail(-ETIMEDOUT, "recvmsg");
      return Status::Fail(-errno, "recvmsg");
    }
    recv_calls_++;
    bytes_received_ += static_cast<uint64_t>(n);
    if (msg.msg_flags & MSG_TRUNC) return Status::Fail(-EMSGSIZE, "recvmsg");
    if (n == 0) return Status::Fail(-ENODATA, "recvmsg");
    if (msg.msg_namelen != sizeof(from) || from.nl_pid != 0) continue;  // not from the kernel
    bool saw_answer = false;
    bool ended = false;
    int r = WalkDatagram(buf_.data(), static_cast<size_t>(n), seq, sink, &saw_answer, &ended);
    if (ended) dirty_ = false;
    if (r < 0) return Status::Fail(r, "recvmsg");
    if (r == 1) return Status::Ok();
    if (done_on_first && saw_answer) {
      dirty_ = false;  // a non-dump request: its one answer is the whole reply
      return Status::Ok();
    }
  }
}

Status ReplayChannel::Receive(uint32_t seq, MessageSink* sink, bool done_on_first) {
  while (next_ < dgrams_.size()) {
    const Datagram& d = dgrams_[next_++];
    recv_calls_++;
    bytes_received_ += d.len;
    bool saw_answer = false;
    bool ended = false;
    int r = WalkDatagram(d.data, d.len, seq, sink, &saw_answer, &ended);
    if (r < 0) return Status::Fail(r, "recvmsg");
    if (r == 1) {
      saw_done_ = true;
      return Status::Ok();
    }
    if (done_on_first && saw_answer) return Status::Ok();
  }
  return Status::Fail(-ENODATA, "recvmsg");
}

}  // namespace sw
