/**
 * Records waiting for a retry time: a min-heap on the due time with lazy deletion. Memory follows the
 * number of waiting records (stale heap entries are compacted away).
 */
export class DueQueue {
  private readonly dueAt = new Map<number, number>();
  private heap: Array<[at: number, seq: number]> = [];

  get size(): number {
    return this.dueAt.size;
  }

  has(seq: number): boolean {
    return this.dueAt.has(seq);
  }

  set(seq: number, at: number): void {
    this.dueAt.set(seq, at);
    this.push([at, seq]);
    if (this.heap.length > 2 * this.dueAt.size + 64) this.rebuild();
  }

  delete(seq: number): void {
    this.dueAt.delete(seq);
  }

  clear(): void {
    this.dueAt.clear();
    this.heap = [];
  }

  /** The earliest due time, or undefined when empty. */
  nextAt(): number | undefined {
    this.dropStale();
    return this.heap[0]?.[0];
  }

  /** Removes and returns, earliest first, every record due at or before `now`. */
  takeDue(now: number): number[] {
    const out: number[] = [];
    for (;;) {
      this.dropStale();
      const top = this.heap[0];
      if (!top || top[0] > now) return out;
      this.pop();
      this.dueAt.delete(top[1]);
      out.push(top[1]);
    }
  }

  private dropStale(): void {
    while (this.heap.length > 0) {
      const [at, seq] = this.heap[0]!;
      if (this.dueAt.get(seq) === at) return;
      this.pop();
    }
  }

  private rebuild(): void {
    const entries = [...this.dueAt].map(([seq, at]) => [at, seq] as [number, number]);
    this.heap = [];
    for (const e of entries) this.push(e);
  }

  private push(e: [number, number]): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]![0] <= h[i]![0]) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l]![0] < h[m]![0]) m = l;
      if (r < h.length && h[r]![0] < h[m]![0]) m = r;
      if (m === i) return;
      [h[m], h[i]] = [h[i]!, h[m]!];
      i = m;
    }
  }
}
