// A loopback address for one test's own sockets: 127.A.B.C with A in 200-249 (no other test or helper
// uses 127.200-249.x.x) and B, C random, so that a port taken on it can only be this test's. On
// 127.0.0.1 a port freed for "a receiver that is down" can be taken meanwhile by another test's
// listener (bind(0)) or client (connect()), and a port number alone names sockets of other addresses.

/** A fresh random 127.A.B.C (A 200-249, C 1-254). */
export function ownLoopbackAddress(): string {
  const r = (n: number): number => Math.floor(Math.random() * n);
  return `127.${200 + r(50)}.${r(256)}.${1 + r(254)}`;
}
