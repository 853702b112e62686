// Delivers outbox records as HTTP GET requests: the alert's params appended to the URL's query.
//
// - 2xx: delivered (acked in the outbox).
// - Network error, timeout, 408, 429, 5xx: retried with exponential backoff and equal jitter, per
//   record. Retry-After (seconds or date) is honoured, capped by retryAfterCapMs.
// - Any other status: dead-lettered with the status and a body snippet. Redirects (3xx) are not
//   followed: a redirect must not carry the query (the alert, a token in the URL) to another host;
//   the Location it names is kept, redacted, with the dead letter.
//
// While the receiver is failing, the whole channel backs off too (one probe at a time, the pause
// growing with consecutive failures), so a dead receiver costs one request per backoff interval, not
// one per alert. The first success restores full concurrency. Memory is bounded by the outbox: the
// delivery keeps only sequence numbers of records the outbox still holds.
//
// enqueue() appends to the outbox and schedules delivery for a later tick; it never waits for the
// network. stop() stops scheduling, lets in-flight requests finish for a short grace, aborts the rest
// and leaves every undelivered record in the outbox for the next start. A crash can duplicate at most
// the in-flight alerts (delivered but not yet acked); it never loses one.
import * as http from 'node:http';
import * as https from 'node:https';
import { redactText, redactUrl } from '../base/redact';
import { alertUrl } from './alert-url';
import { backoffDelay, parseRetryAfter } from '../base/backoff';
import { DueQueue } from './due-queue';
import { TypedEmitter } from '../base/emitter';
import * as validate from '../base/validate';
import type { AppendOptions, Outbox, OutboxDroppedEvent, OutboxRecord } from './outbox';

export interface HttpDeliveryOptions {
  /** Receiver URL (http or https). Its query params are kept; the alert's are appended. */
  url: string | URL;
  outbox: Outbox;
  /** Most requests in flight (default 4). */
  concurrency?: number;
  /** Limit for one request, connect to end of body, in ms (default 5000). */
  timeoutMs?: number;
  /** Backoff base in ms (default 500). */
  backoffBaseMs?: number;
  /** Backoff cap in ms (default 60000). */
  backoffCapMs?: number;
  /** Cap on a Retry-After delay in ms (default backoffCapMs). */
  retryAfterCapMs?: number;
  /** Trusted CA certificates (PEM) for https; like tls.connect, they replace the default list. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** Random source in [0, 1) for jitter (default Math.random). */
  random?: () => number;
}

export const DELIVERY_DEFAULTS = {
  concurrency: 4,
  timeoutMs: 5000,
  backoffBaseMs: 500,
  backoffCapMs: 60_000,
  stopGraceMs: 2000,
  bodySnippetBytes: 512,
};

export interface DeliveredEvent {
  record: OutboxRecord;
  status: number;
  /** Attempts this process made, including the successful one. */
  attempts: number;
  /** The request URL, redacted. */
  url: string;
}

export interface RetryScheduledEvent {
  record: OutboxRecord;
  /** The attempt that failed (1 = first). */
  attempt: number;
  delayMs: number;
  /** HTTP status, when the receiver answered. */
  status?: number;
  /** Error code (ECONNREFUSED, ETIMEDOUT...), when it did not. */
  code?: string;
  /** One-line reason, redacted. */
  reason: string;
  url: string;
}

export interface DeadLetteredEvent {
  record: OutboxRecord;
  status: number;
  /** Start of the response body, redacted. */
  body: string;
  attempts: number;
  url: string;
  /** A redirect's (3xx) Location, redacted: redirects are never followed. */
  location?: string;
}

export interface HttpDeliveryEvents {
  delivered: DeliveredEvent;
  retry: RetryScheduledEvent;
  'dead-letter': DeadLetteredEvent;
  /** The outbox was full and dropped its oldest alert. */
  dropped: OutboxDroppedEvent;
  /** Writing an ack or a dead letter failed. With no listener this throws. */
  error: Error;
}

export interface HttpDeliveryStats {
  inFlight: number;
  /** Records ready to send now. */
  ready: number;
  /** Records waiting for their retry time. */
  waiting: number;
  /** Consecutive retryable failures across records (0 when the receiver is healthy). */
  failStreak: number;
  delivered: number;
  retries: number;
  deadLettered: number;
  dropped: number;
}

export interface StopOptions {
  /** How long in-flight requests may still finish before they are aborted (default 2000 ms). */
  graceMs?: number;
}

type Outcome = { status: number; body: string; retryAfterMs?: number; location?: string } | { error: Error & { code?: string } };

interface Flight {
  abort(err: Error): void;
  done: Promise<void>;
}

const DELIVERY_OPTION_KEYS = [
  'url',
  'outbox',
  'concurrency',
  'timeoutMs',
  'backoffBaseMs',
  'backoffCapMs',
  'retryAfterCapMs',
  'ca',
  'headers',
  'random',
];

export class HttpDelivery extends TypedEmitter<HttpDeliveryEvents> {
  /** The receiver URL, redacted: safe to print. */
  readonly url: string;
  readonly outbox: Outbox;

  private readonly base: URL;
  private readonly concurrency: number;
  private readonly timeoutMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffCapMs: number;
  private readonly retryAfterCapMs: number;
  private readonly headers: Record<string, string>;
  private readonly random: () => number;
  private readonly agent: http.Agent;
  private readonly ready = new Set<number>();
  private readonly due = new DueQueue();
  private readonly attempts = new Map<number, number>();
  private readonly inFlight = new Map<number, Flight>();
  private readonly idleWaiters: Array<() => void> = [];
  private started = false;
  private stopped = false;
  private stopping: Promise<void> | undefined;
  private failStreak = 0;
  private channelNotBefore = 0;
  private pumpQueued = false;
  private wakeTimer: NodeJS.Timeout | undefined;
  private counters = { delivered: 0, retries: 0, dead: 0, dropped: 0 };
  private readonly onDropped = (event: OutboxDroppedEvent): void => {
    const seq = event.record.seq;
    this.ready.delete(seq);
    this.due.delete(seq);
    this.attempts.delete(seq);
    this.counters.dropped++;
    this.emit('dropped', event);
    this.checkIdle();
  };

  constructor(options: HttpDeliveryOptions) {
    super();
    if (options === undefined) throw new TypeError('options must be an object (got undefined)');
    validate.optionsObject<HttpDeliveryOptions>(options, 'options', DELIVERY_OPTION_KEYS);
    this.base = parseReceiverUrl(options.url);
    this.url = redactUrl(this.base);
    if (typeof options.outbox !== 'object' || options.outbox === null || typeof options.outbox.append !== 'function') {
      throw new TypeError(`options.outbox must be an Outbox (got ${validate.describe(options.outbox)})`);
    }
    this.outbox = options.outbox;
    this.concurrency = positiveInt('concurrency', options.concurrency, DELIVERY_DEFAULTS.concurrency, 1024);
    // Delays go to setTimeout: bounded to what it honours.
    this.timeoutMs = positiveInt('timeoutMs', options.timeoutMs, DELIVERY_DEFAULTS.timeoutMs, validate.TIMER_MAX_MS);
    this.backoffBaseMs = positiveInt('backoffBaseMs', options.backoffBaseMs, DELIVERY_DEFAULTS.backoffBaseMs, validate.TIMER_MAX_MS);
    this.backoffCapMs = positiveInt('backoffCapMs', options.backoffCapMs, DELIVERY_DEFAULTS.backoffCapMs, validate.TIMER_MAX_MS);
    if (this.backoffCapMs < this.backoffBaseMs) {
      throw new RangeError(
        `options.backoffCapMs (${this.backoffCapMs}) must not be less than options.backoffBaseMs (${this.backoffBaseMs})`,
      );
    }
    this.retryAfterCapMs = positiveInt('retryAfterCapMs', options.retryAfterCapMs, this.backoffCapMs, validate.TIMER_MAX_MS);
    this.headers = { 'user-agent': 'sockwatch', ...validHeaders(options.headers) };
    this.random = options.random === undefined ? Math.random : validate.func<() => number>(options.random, 'options.random');
    if (options.ca !== undefined && this.base.protocol !== 'https:') {
      throw new TypeError('options.ca needs an https URL');
    }
    const agentOptions = { keepAlive: true, maxSockets: this.concurrency };
    this.agent = this.base.protocol === 'https:' ? new https.Agent({ ...agentOptions, ca: options.ca }) : new http.Agent(agentOptions);
    this.outbox.on('dropped', this.onDropped);
  }

  /** Starts delivering: every undelivered record in the outbox (recovered ones first), then new ones. */
  start(): this {
    if (this.stopped) throw new Error('HttpDelivery was stopped; create a new one');
    if (this.started) return this;
    this.started = true;
    for (const record of this.outbox.pending()) this.ready.add(record.seq);
    this.schedulePump();
    return this;
  }

  /**
   * Writes the alert to the outbox (durable before this returns) and schedules its delivery.
   * Synchronous; throws only if the outbox cannot write. After stop() the alert is still written,
   * for the next start.
   */
  enqueue(params: Record<string, string>, options?: AppendOptions): OutboxRecord {
    const record = this.outbox.append(params, options);
    if (this.started && !this.stopped && this.outbox.get(record.seq)) {
      this.ready.add(record.seq);
      this.schedulePump();
    }
    return record;
  }

  /** Resolves when nothing is left to deliver (the outbox is empty and nothing is in flight) or on stop. */
  whenIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  stats(): HttpDeliveryStats {
    return {
      inFlight: this.inFlight.size,
      ready: this.ready.size,
      waiting: this.due.size,
      failStreak: this.failStreak,
      delivered: this.counters.delivered,
      retries: this.counters.retries,
      deadLettered: this.counters.dead,
      dropped: this.counters.dropped,
    };
  }

  /**
   * Stops scheduling, gives in-flight requests `graceMs` to finish, aborts the rest. Undelivered
   * records stay in the outbox (which the caller closes afterwards). Idempotent.
   */
  stop(options: StopOptions = {}): Promise<void> {
    if (!this.stopping) {
      const graceMs = options.graceMs ?? DELIVERY_DEFAULTS.stopGraceMs;
      validate.duration(graceMs, 'options.graceMs', 0, 0, validate.TIMER_MAX_MS);
      this.stopped = true;
      this.stopping = this.shutDown(graceMs);
    }
    return this.stopping;
  }

  private async shutDown(graceMs: number): Promise<void> {
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    this.ready.clear();
    this.due.clear();
    this.outbox.off('dropped', this.onDropped);
    if (this.inFlight.size > 0) {
      let graceTimer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => (graceTimer = setTimeout(resolve, graceMs)));
      await Promise.race([Promise.all([...this.inFlight.values()].map((f) => f.done)), grace]);
      clearTimeout(graceTimer);
      const left = [...this.inFlight.values()];
      for (const f of left) f.abort(Object.assign(codedError('ABORT_ERR', 'delivery stopped'), { name: 'AbortError' }));
      await Promise.all(left.map((f) => f.done));
    }
    this.agent.destroy();
    this.resolveIdle();
  }

  // ---- scheduling ----

  private schedulePump(): void {
    if (this.pumpQueued || this.stopped || !this.started) return;
    this.pumpQueued = true;
    setImmediate(() => {
      this.pumpQueued = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.stopped) return;
    const now = Date.now();
    for (const seq of this.due.takeDue(now)) this.ready.add(seq);
    if (now >= this.channelNotBefore) {
      const limit = this.failStreak > 0 ? 1 : this.concurrency;
      while (this.inFlight.size < limit && this.ready.size > 0) {
        const seq = this.ready.values().next().value as number;
        this.ready.delete(seq);
        const record = this.outbox.isClosed ? undefined : this.outbox.get(seq);
        if (!record) this.attempts.delete(seq);
        else if (!this.inFlight.has(seq)) this.send(record);
      }
    }
    this.armWake(now);
    this.checkIdle();
  }

  /** One timer for the next moment something can move: the channel pause ending or a retry falling due. */
  private armWake(now: number): void {
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    let at = this.due.nextAt();
    if (this.ready.size > 0 && now < this.channelNotBefore) at = Math.min(at ?? Infinity, this.channelNotBefore);
    if (at === undefined) return;
    if (at < this.channelNotBefore) at = this.channelNotBefore;
    this.wakeTimer = setTimeout(
      () => {
        this.wakeTimer = undefined;
        this.pump();
      },
      Math.max(0, at - now),
    );
    this.wakeTimer.unref();
  }

  // ---- one request ----

  private send(record: OutboxRecord): void {
    const seq = record.seq;
    const attempt = (this.attempts.get(seq) ?? 0) + 1;
    this.attempts.set(seq, attempt);
    const target = alertUrl(this.base, record.params);
    const shownUrl = redactUrl(target);
    let settled = false;
    let resolveDone!: () => void;
    const done = new Promise<void>((resolve) => (resolveDone = resolve));
    let status: number | undefined;
    let retryAfterMs: number | undefined;
    let location: string | undefined;
    const chunks: Buffer[] = [];
    let bodyBytes = 0;
    const answered = (): Outcome => ({
      status: status!,
      body: Buffer.concat(chunks).toString('utf8'),
      retryAfterMs,
      ...(location !== undefined ? { location } : {}),
    });
    const finish = (outcome: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.inFlight.delete(seq);
      resolveDone();
      this.onOutcome(record, attempt, shownUrl, outcome);
    };

    const transport = target.protocol === 'https:' ? https : http;
    const req = transport.request(target, { method: 'GET', agent: this.agent, headers: this.headers });
    const timer = setTimeout(
      () => req.destroy(codedError('ETIMEDOUT', `no complete response within ${this.timeoutMs} ms`)),
      this.timeoutMs,
    );
    req.on('response', (res) => {
      status = res.statusCode ?? 0;
      retryAfterMs = parseRetryAfter(res.headers['retry-after']);
      if (status >= 300 && status < 400 && typeof res.headers.location === 'string')
        location = redactedLocation(res.headers.location, target);
      res.on('data', (chunk: Buffer) => {
        if (bodyBytes < DELIVERY_DEFAULTS.bodySnippetBytes) {
          const part = chunk.subarray(0, DELIVERY_DEFAULTS.bodySnippetBytes - bodyBytes);
          chunks.push(part);
          bodyBytes += part.length;
        }
      });
      res.on('end', () => finish(answered()));
      res.on('error', () => finish(answered()));
      res.on('close', () => finish(answered()));
    });
    req.on('error', (err: Error & { code?: string }) => finish(status !== undefined ? answered() : { error: err }));
    req.on('close', () => {
      if (status === undefined) finish({ error: codedError('ECONNRESET', 'connection closed without a response') });
    });
    this.inFlight.set(seq, { abort: (err) => req.destroy(err), done });
    req.end();
  }

  private onOutcome(record: OutboxRecord, attempt: number, url: string, outcome: Outcome): void {
    const seq = record.seq;
    if ('status' in outcome && outcome.status >= 200 && outcome.status < 300) {
      this.failStreak = 0;
      this.channelNotBefore = 0;
      this.attempts.delete(seq);
      this.withOutbox(() => this.outbox.ack(seq));
      this.counters.delivered++;
      this.emit('delivered', { record, status: outcome.status, attempts: attempt, url });
    } else if (isRetryable(outcome)) {
      if (!this.stopped && !this.outbox.isClosed && this.outbox.get(seq)) this.scheduleRetry(record, attempt, url, outcome);
      else if (!this.stopped) this.attempts.delete(seq);
    } else {
      const { status, body, location } = outcome as { status: number; body: string; location?: string };
      this.failStreak = 0;
      this.channelNotBefore = 0;
      this.attempts.delete(seq);
      const snippet = redactText(body.replace(/\s+/g, ' ').trim());
      const loc = location !== undefined ? { location } : {};
      this.withOutbox(() => this.outbox.deadLetter(seq, { status, body: snippet, url, ...loc }));
      this.counters.dead++;
      this.emit('dead-letter', { record, status, body: snippet, attempts: attempt, url, ...loc });
    }
    this.schedulePump();
    this.checkIdle();
  }

  private scheduleRetry(record: OutboxRecord, attempt: number, url: string, outcome: Outcome): void {
    const now = Date.now();
    // Retry-After is a lower bound (capped); the jittered backoff still applies, so "Retry-After: 0"
    // cannot turn into a tight loop.
    const backoff = { baseMs: this.backoffBaseMs, capMs: this.backoffCapMs, retryAfterCapMs: this.retryAfterCapMs };
    const hinted = 'status' in outcome ? outcome.retryAfterMs : undefined;
    const delayMs = backoffDelay(attempt, backoff, hinted, this.random);
    this.failStreak++;
    const channelDelay = backoffDelay(this.failStreak, backoff, hinted, this.random);
    this.channelNotBefore = Math.max(this.channelNotBefore, now + channelDelay);
    this.due.set(record.seq, now + delayMs);
    this.counters.retries++;
    const event: RetryScheduledEvent =
      'status' in outcome
        ? { record, attempt, delayMs, status: outcome.status, reason: `HTTP ${outcome.status}`, url }
        : {
            record,
            attempt,
            delayMs,
            code: outcome.error.code,
            reason: redactText(outcome.error.message || String(outcome.error.code ?? 'request failed')),
            url,
          };
    this.emit('retry', event);
  }

  private withOutbox(write: () => unknown): void {
    if (this.outbox.isClosed) return; // stays undelivered on disk: sent again next start
    try {
      write();
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      e.message = redactText(e.message);
      this.emit('error', e);
    }
  }

  private isIdle(): boolean {
    return this.stopped || (this.inFlight.size === 0 && (this.outbox.isClosed || this.outbox.size === 0));
  }

  private checkIdle(): void {
    if (this.idleWaiters.length > 0 && this.isIdle()) this.resolveIdle();
  }

  private resolveIdle(): void {
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}

/** A redirect's Location resolved against the request URL, redacted; at most 2 KiB of it. */
function redactedLocation(value: string, base: URL): string {
  let shown: string;
  try {
    shown = redactUrl(new URL(value, base));
  } catch {
    shown = redactText(value);
  }
  return shown.slice(0, 2048);
}

function isRetryable(outcome: Outcome): boolean {
  if (!('status' in outcome)) return true;
  const s = outcome.status;
  return s === 408 || s === 429 || s >= 500;
}

function parseReceiverUrl(input: unknown): URL {
  if (typeof input !== 'string' && !(input instanceof URL)) {
    throw new TypeError(`options.url must be a string or URL (got ${typeof input})`);
  }
  let u: URL;
  try {
    u = new URL(String(input));
  } catch {
    throw new TypeError(`options.url is not a valid URL: ${redactUrl(String(input))}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new TypeError(`options.url must be http or https (got ${redactUrl(u)})`);
  }
  return u;
}

function validHeaders(headers: unknown): Record<string, string> {
  if (headers === undefined) return {};
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) {
    throw new TypeError(`options.headers must be an object of string values (got ${validate.describe(headers)})`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (typeof v !== 'string') throw new TypeError(`options.headers["${k}"] must be a string`);
    try {
      http.validateHeaderName(k);
      http.validateHeaderValue(k, v);
    } catch {
      throw new TypeError(`options.headers["${k}"] is not a valid header`);
    }
    out[k.toLowerCase()] = v;
  }
  return out;
}

function positiveInt(name: string, value: unknown, fallback: number, max: number): number {
  return validate.optInteger(value, `options.${name}`, fallback, { min: 1, max });
}

function codedError(code: string, message: string): Error & { code: string } {
  const e = new Error(message) as Error & { code: string };
  e.code = code;
  return e;
}
