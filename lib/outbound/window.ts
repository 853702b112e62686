// Distinct connections per destination over a sliding window. Azure's load balancer keeps a SNAT
// port for 4 minutes after its connection closed, so the sockets open right now understate SNAT use;
// counting every connection (by socket cookie) seen in the last 4 minutes estimates it better.
// A connection opened and closed entirely between two polls is never seen: poll faster to catch more.

export interface WindowDestination {
  family: 4 | 6;
  remoteAddress: string;
  remotePort: number;
}

interface Seen {
  remote: string;
  lastSeenMs: number;
}

export class DistinctWindow {
  private readonly byCookie = new Map<bigint, Seen>();
  private readonly destinations = new Map<string, WindowDestination>();

  constructor(readonly windowMs: number) {
    if (!Number.isFinite(windowMs) || windowMs <= 0) throw new RangeError(`windowMs must be a positive number, got ${String(windowMs)}`);
  }

  /** Records the sockets of one poll: cookie i belongs to destination `remotes[index[i]]`. */
  observe(
    nowMs: number,
    cookies: ArrayLike<bigint>,
    index: ArrayLike<number>,
    remotes: readonly (WindowDestination & { remote: string })[],
  ): void {
    if (cookies.length !== index.length) throw new RangeError('cookies and index must have the same length');
    for (let i = 0; i < cookies.length; i++) {
      const dest = remotes[index[i]!];
      if (!dest) throw new RangeError(`index[${i}] = ${index[i]} is out of range of ${remotes.length} destinations`);
      const seen = this.byCookie.get(cookies[i]!);
      if (seen) {
        seen.lastSeenMs = nowMs;
        seen.remote = dest.remote;
      } else {
        this.byCookie.set(cookies[i]!, { remote: dest.remote, lastSeenMs: nowMs });
      }
      if (!this.destinations.has(dest.remote)) {
        this.destinations.set(dest.remote, { family: dest.family, remoteAddress: dest.remoteAddress, remotePort: dest.remotePort });
      }
    }
  }

  /** Drops what was last seen before the window; returns distinct connections per destination. */
  counts(nowMs: number): Map<string, number> {
    const since = nowMs - this.windowMs;
    const out = new Map<string, number>();
    for (const [cookie, seen] of this.byCookie) {
      if (seen.lastSeenMs < since) {
        this.byCookie.delete(cookie);
        continue;
      }
      out.set(seen.remote, (out.get(seen.remote) ?? 0) + 1);
    }
    for (const remote of this.destinations.keys()) if (!out.has(remote)) this.destinations.delete(remote);
    return out;
  }

  /** Family and address of a destination seen in the window. */
  destination(remote: string): WindowDestination | undefined {
    return this.destinations.get(remote);
  }

  /** Connections remembered (for memory accounting). */
  get size(): number {
    return this.byCookie.size;
  }
}
