#include "proc_udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

namespace sw {

namespace {

// Each address word is printed as the raw 32-bit value (%08X), so parsing it back into a
// uint32_t and copying its bytes restores network order on any host.
bool ParseHexAddress(const char* s, size_t words, uint8_t* out, const char** end) {
  for (size_t i = 0; i < words; i++) {
    char word[9];
    for (int j = 0; j < 8; j++) {
      char c = s[i * 8 + j];
      bool hex = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
      if (!hex) return false;
      word[j] = c;
    }
    word[8] = '\0';
    uint32_t v = static_cast<uint32_t>(strtoul(word, nullptr, 16));
    memcpy(out + i * 4, &v, 4);
  }
  *end = s + words * 8;
  return true;
}

}  // namespace

bool ParseProcUdpLine(const char* line, uint8_t family, SockRecord* out) {
  // "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ..."
  const char* p = strchr(line, ':');
  if (p == nullptr) return false;
  p++;
  while (*p == ' ') p++;
  size_t words = family == AF_INET6 ? 4 : 1;
  *out = SockRecord();
  out->family = family;
  out->protocol = IPPROTO_UDP;
  const char* end = nullptr;
  if (!ParseHexAddress(p, words, out->src, &end) || *end != ':') return false;
  char* next = nullptr;
  out->sport = static_cast<uint16_t>(strtoul(end + 1, &next, 16));
  p = next;
  while (*p == ' ') p++;
  if (!ParseHexAddress(p, words, out->dst, &end) || *end != ':') return false;
  out->dport = static_cast<uint16_t>(strtoul(end + 1, &next, 16));
  unsigned st = 0, tx = 0, rx = 0, tr = 0, uid = 0;
  unsigned long when = 0, retr = 0, timeout = 0, inode = 0;
  int n = sscanf(next, " %x %x:%x %x:%lx %lx %u %lu %lu", &st, &tx, &rx, &tr, &when, &retr, &uid, &timeout, &inode);
  if (n != 9) return false;
  out->state = KnownState(st) ? static_cast<uint8_t>(st) : 0;  // 0: unknown, skipped and counted
  out->wqueue = tx;
  out->rqueue = rx;
  out->uid = uid;
  out->inode = static_cast<uint32_t>(inode);
  return true;
}

Status ReadProcUdp(const char* path, uint8_t family, const std::function<void(const SockRecord&)>& visit) {
  FILE* f = fopen(path, "re");
  if (f == nullptr) {
    if (errno == ENOENT) return Status::Ok();  // no IPv6 on this host
    return Status::Fail(-errno, "open");
  }
  char line[512];
  bool header = true;
  SockRecord rec;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (header) {
      header = false;
      continue;
    }
    if (ParseProcUdpLine(line, family, &rec)) visit(rec);
  }
  bool failed = ferror(f) != 0;
  fclose(f);
  if (failed) return Status::Fail(-EIO, "read");
  return Status::Ok();
}

}  // namespace sw
