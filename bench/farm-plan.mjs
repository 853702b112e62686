// How a farm of N loopback sockets is split over child processes. Pure functions, no I/O.
//
// Shape "mixed" (the only one so far): every child listens on 127.0.0.(11+i) ports 80, 443 and
// 2222 and opens connections to itself, holding both ends. Half of the client ends bind their own
// source address 127.100.x.y with a local port of 80 or 443; the other half take an ephemeral port
// from 127.0.0.(101+i). So:
//   - 50% of the sockets are server sides (local port 80/443/2222: "inbound on excluded ports"),
//   - 25% are client ends bound to port 80/443 (also excluded by excludeLocalPorts [80,443,2222]),
//   - 25% are outbound client ends with ephemeral ports to 3 destinations per child.
// That is the SNAT shape (75% of the sockets on excluded ports) and serves the plain rows as well:
// they only need N sockets with a few offenders. Offenders are server-side sockets holding
// `offenderBytes` unread bytes.

/** A process may hold at most 20,000 fds: 2 × 9,000 connection ends + listeners + Node's own. */
export const MAX_CONNECTIONS_PER_CHILD = 9000;
export const LISTEN_PORTS = [80, 443, 2222];
export const BOUND_CLIENT_PORTS = [80, 443];
export const EXCLUDED_PORTS = [80, 443, 2222];

/** 127.100.0.0 + index as a dotted address (127.100.0.0/16 holds 65,536 source addresses). */
export function boundSourceAddress(index) {
  if (!Number.isInteger(index) || index < 0 || index > 0xffff) throw new RangeError(`bound source index ${index} is out of 0-65535`);
  return `127.100.${index >> 8}.${index & 0xff}`;
}

/**
 * Child specs for a farm of about `sockets` sockets with `offenders` server-side offenders in
 * total. Each spec is what bench/farm.mjs takes as its JSON argument.
 */
export function planFarm({ sockets, offenders = 10, offenderBytes = 2000, boundFraction = 0.5 }) {
  if (!Number.isInteger(sockets) || sockets < 8) throw new RangeError(`sockets must be an integer ≥ 8, got ${sockets}`);
  let children = 1;
  for (;;) {
    const connections = Math.floor((sockets - children * LISTEN_PORTS.length) / 2);
    if (Math.ceil(connections / children) <= MAX_CONNECTIONS_PER_CHILD) break;
    children++;
  }
  if (children > 80) throw new RangeError(`sockets ${sockets} needs more than 80 farm children`);
  const connections = Math.floor((sockets - children * LISTEN_PORTS.length) / 2);
  if (offenders > connections) throw new RangeError(`offenders ${offenders} exceeds the ${connections} connections`);
  const specs = [];
  let boundStart = 0;
  for (let i = 0; i < children; i++) {
    const mine = Math.floor(connections / children) + (i < connections % children ? 1 : 0);
    const myOffenders = Math.floor(offenders / children) + (i < offenders % children ? 1 : 0);
    const bound = countBound(mine, boundFraction);
    specs.push({
      index: i,
      listenHost: `127.0.0.${11 + i}`,
      listenPorts: LISTEN_PORTS,
      ephemeralSource: `127.0.0.${101 + i}`,
      boundPorts: BOUND_CLIENT_PORTS,
      boundStart,
      boundFraction,
      connections: mine,
      offenders: myOffenders,
      offenderBytes,
    });
    boundStart += bound;
  }
  if (boundStart > 0x10000) throw new RangeError(`${boundStart} bound client ends exceed 127.100.0.0/16`);
  return specs;
}

/** Whether connection i of a child binds a fixed source port (evenly spread at `fraction`). */
export function isBound(i, fraction) {
  return Math.floor((i + 1) * fraction) > Math.floor(i * fraction);
}

export function countBound(connections, fraction) {
  return Math.floor(connections * fraction);
}
