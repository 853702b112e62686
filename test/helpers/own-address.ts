// A loopback address for one test's own sockets: 127.A.B.C with A in 200-249 (no other test or helper
// uses 127.200-249.x.x) and B, C random, so that a port taken on it can only be this test's. On
// 127.0.0.1 a port freed for "a receiver that is down" can be taken meanwhile by another test's
// listener (bind(0)) or client (connect()), and a port number alone names sockets of other addresses.

/** A fresh random 127.A.B.C (A 200-249, C 1-254). */
export function ownLoopbackAddress(): string {
  const r = (n: number): number => Math.floor(Math.random() * n);
  return `127.${200 + r(50)}.${r(256)}.${1 + r(254)}`;
}

/** A /29 of loopback addresses of this test's own: `cidr` for --src/--dst, `host(1)`..`host(6)` to bind. */
export interface OwnNet {
  cidr: string;
  host: (n: 1 | 2 | 3 | 4 | 5 | 6) => string;
}

let blocks = 0;

/**
 * 127.X.Y.8k/29: X (100-199) and Y from this process's pid, so distinct for every test file of a run
 * (vitest forks a process per file; pids less than 25,600 apart differ), and k counts up per call (32
 * per process), so a test never meets the TIME_WAIT sockets of an earlier one. (A random /24 per test
 * could be drawn twice: by two files at once, or by two tests of one file within TIME_WAIT's minute.)
 */
export function ownLoopbackNet(): OwnNet {
  if (blocks >= 32) throw new Error('ownLoopbackNet: 32 blocks per process, all used');
  const prefix = `127.${100 + (process.pid % 100)}.${Math.floor(process.pid / 100) % 256}`;
  const base = 8 * blocks++;
  return { cidr: `${prefix}.${base}/29`, host: (n) => `${prefix}.${base + n}` };
}
