// Coalesces calls to an expensive producer (a kernel scan): while one run is in flight every caller
// shares it, and a result whose run started less than `minIntervalMs` ago is handed out again. So runs
// never overlap and never start closer together than minIntervalMs, however many callers there are.
// A failed run is not kept: the next call runs again.
import { performance } from 'node:perf_hooks';

export class Coalescer<T> {
  private inFlight: Promise<T> | undefined;
  private last: { startedAt: number; value: T } | undefined;

  constructor(
    private readonly run: () => Promise<T>,
    readonly minIntervalMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get(): Promise<T> {
    if (this.inFlight) return this.inFlight;
    if (this.last && this.now() - this.last.startedAt < this.minIntervalMs) return Promise.resolve(this.last.value);
    const startedAt = this.now();
    const run = this.run().then((value) => {
      this.last = { startedAt, value };
      return value;
    });
    this.inFlight = run;
    const clear = (): void => {
      if (this.inFlight === run) this.inFlight = undefined;
    };
    run.then(clear, clear);
    return run;
  }
}
