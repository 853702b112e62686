// Fallback for kernels without udp_diag: /proc/net/udp and /proc/net/udp6, parsed into the same
// records a dump yields (no cookie: /proc does not show it).
#pragma once

#include <functional>

#include "inet_diag.h"
#include "netlink.h"

namespace sw {

// Calls visit for each socket of the file; returns 0 or -errno.
Status ReadProcUdp(const char* path, uint8_t family, const std::function<void(const SockRecord&)>& visit);

// Parses one line of /proc/net/udp{,6} into a record. Returns true on success; a state the addon
// does not know reads as 0 (the scan skips and counts it).
bool ParseProcUdpLine(const char* line, uint8_t family, SockRecord* out);

}  // namespace sw
