// An async iterator over a watcher's alerts with a bounded buffer: a consumer that stops reading
// costs at most maxBuffered alerts of memory; beyond that the oldest are dropped and counted.
export class AlertStream<T> implements AsyncIterableIterator<T> {
  /** Alerts dropped because the buffer was full. */
  dropped = 0;
  private buffer: T[] = [];
  private head = 0;
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: Error) => void } | undefined;
  private finished = false;
  private failure: Error | undefined;

  constructor(
    private readonly maxBuffered: number,
    private readonly detach: (stream: AlertStream<T>) => void,
  ) {}

  /** Called by the producer. */
  push(value: T): void {
    if (this.finished) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value, done: false });
      return;
    }
    this.buffer.push(value);
    if (this.buffer.length - this.head > this.maxBuffered) {
      this.head++;
      this.dropped++;
    }
    if (this.head > 1024 && this.head * 2 > this.buffer.length) {
      this.buffer = this.buffer.slice(this.head);
      this.head = 0;
    }
  }

  /** Called by the producer: the stream ends after the buffered values (with an error, if given). */
  end(error?: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.failure = error;
    if (this.waiter && this.head >= this.buffer.length) {
      const w = this.waiter;
      this.waiter = undefined;
      if (error) w.reject(error);
      else w.resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.head < this.buffer.length) {
      const value = this.buffer[this.head]!;
      this.buffer[this.head++] = undefined as T;
      return Promise.resolve({ value, done: false });
    }
    if (this.finished) {
      if (this.failure) {
        const e = this.failure;
        this.failure = undefined;
        return Promise.reject(e);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    if (this.waiter) return Promise.reject(new Error('AlertStream: next() called again before the previous call settled'));
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** Stops listening (a `break` out of for await ends up here). */
  return(): Promise<IteratorResult<T>> {
    this.detach(this);
    this.buffer = [];
    this.head = 0;
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
