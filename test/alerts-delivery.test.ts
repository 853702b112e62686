// HTTP GET delivery against a real receiver on 127.0.0.1 with scripted replies, over a real outbox
// on disk. Backoff is shortened (tens of ms); no assertion depends on how long anything took.
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HttpDelivery, Outbox, DEAD_LETTER_FILE, alertUrl, backoffDelay, parseRetryAfter } from '../lib/alerts';
import type {
  DeadLetteredEvent,
  DeliveredEvent,
  HttpDeliveryOptions,
  OutboxDroppedEvent,
  OutboxOptions,
  RetryScheduledEvent,
} from '../lib';
import { onCleanup, runCleanups } from './helpers/cleanup';
import { freePort, receiver } from './helpers/http-receiver';
import { ownLoopbackAddress } from './helpers/own-address';
import { tmpDir } from './helpers/tmp';
import { waitFor } from './helpers/wait';

const FAST = { backoffBaseMs: 20, backoffCapMs: 200 };

afterEach(runCleanups);

interface Setup {
  dir: string;
  outbox: Outbox;
  delivery: HttpDelivery;
  events: {
    delivered: DeliveredEvent[];
    retry: RetryScheduledEvent[];
    dead: DeadLetteredEvent[];
    dropped: OutboxDroppedEvent[];
    errors: Error[];
  };
}

function setup(
  url: string,
  options: Partial<HttpDeliveryOptions> = {},
  outboxOptions: Partial<OutboxOptions> = {},
  dir = tmpDir('delivery'),
): Setup {
  const outbox = Outbox.open({ dir, ...outboxOptions });
  onCleanup(() => outbox.close());
  const delivery = new HttpDelivery({ url, outbox, ...FAST, ...options });
  onCleanup(() => delivery.stop({ graceMs: 0 }));
  const events: Setup['events'] = { delivered: [], retry: [], dead: [], dropped: [], errors: [] };
  delivery.on('delivered', (e) => events.delivered.push(e));
  delivery.on('retry', (e) => events.retry.push(e));
  delivery.on('dead-letter', (e) => events.dead.push(e));
  delivery.on('dropped', (e) => events.dropped.push(e));
  delivery.on('error', (e) => events.errors.push(e));
  return { dir, outbox, delivery, events };
}

describe('HttpDelivery', () => {
  it('sends exactly the alert params, after the query params the URL already has', async () => {
    const rx = await receiver();
    const { delivery, events, outbox } = setup(`${rx.url}/hook/alert?source=prod&sig=a%2Fb%2Bc&empty=#frag`);
    const params = {
      ts: '2024-05-01T10:00:00.123456Z',
      type: 'send',
      bytes: '70000',
      threshold: '65536',
      local: '10.0.0.1:443',
      remote: '[fe80::1%eth0]:51234',
      proto: 'tcp',
      state: 'ESTABLISHED',
      host: 'web-1',
      pid: '4242',
      comm: 'dotnet app&x=y+z',
      id: 'k1',
    };
    delivery.start();
    const record = delivery.enqueue(params);
    await delivery.whenIdle();
    expect(rx.requests).toHaveLength(1);
    const req = rx.requests[0]!;
    expect(req.method).toBe('GET');
    expect(req.path).toBe('/hook/alert');
    expect(req.rawQuery.startsWith('source=prod&sig=a%2Fb%2Bc&empty=&ts=')).toBe(true); // kept byte for byte
    expect(req.query).toEqual([['source', 'prod'], ['sig', 'a/b+c'], ['empty', ''], ...Object.entries(params)]);
    expect(events.delivered).toHaveLength(1);
    expect(events.delivered[0]).toMatchObject({ record: { id: 'k1', seq: record.seq }, status: 200, attempts: 1 });
    expect(events.delivered[0]!.url).not.toContain('a%2Fb%2Bc'); // sig is a secret: redacted in events
    expect(outbox.size).toBe(0);
  });

  it('retries a 500 and delivers once the receiver answers 200', async () => {
    const rx = await receiver({ replies: [500, 200] });
    const { delivery, events, outbox, dir } = setup(`${rx.url}/a`);
    delivery.start();
    delivery.enqueue({ type: 'recv', id: 'r1' });
    await delivery.whenIdle();
    expect(rx.requests.map((r) => r.reply)).toEqual([500, 200]);
    expect(rx.values('id')).toEqual(['r1', 'r1']);
    expect(events.retry).toHaveLength(1);
    expect(events.retry[0]).toMatchObject({ attempt: 1, status: 500, reason: 'HTTP 500' });
    expect(events.delivered).toHaveLength(1);
    expect(events.delivered[0]).toMatchObject({ status: 200, attempts: 2 });
    expect(events.dead).toHaveLength(0);
    await delivery.stop();
    outbox.close();
    const reopened = Outbox.open({ dir });
    expect(reopened.size).toBe(0); // the ack is durable
    reopened.close();
  });

  it('dead-letters a 404 with the status and a body snippet, without retrying', async () => {
    const rx = await receiver({ replies: [{ status: 404, body: 'no such hook\ntoken=abc123' }] });
    const { delivery, events, outbox, dir } = setup(`${rx.url}/missing`);
    delivery.start();
    delivery.enqueue({ type: 'send', id: 'd1' });
    await delivery.whenIdle();
    expect(rx.requests).toHaveLength(1);
    expect(events.retry).toHaveLength(0);
    expect(events.dead).toHaveLength(1);
    expect(events.dead[0]).toMatchObject({ status: 404, record: { id: 'd1' } });
    expect(events.dead[0]!.body).toContain('no such hook');
    expect(events.dead[0]!.body).not.toContain('abc123');
    expect(outbox.size).toBe(0);
    expect(outbox.stats().deadLetteredTotal).toBe(1);
    const lines = fs.readFileSync(path.join(dir, DEAD_LETTER_FILE), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(1);
    const dl = JSON.parse(lines[0]!);
    expect(dl).toMatchObject({ id: 'd1', params: { type: 'send', id: 'd1' }, reason: { status: 404 } });
    expect(dl.reason.body).toContain('no such hook');
    expect(dl.reason.url).toContain('/missing?');
  });

  it('does not follow a 3xx: dead-letters it with its Location (redacted), and the other host never sees the query', async () => {
    const elsewhere = await receiver();
    const location = `http://user:pw@127.0.0.1:${elsewhere.port}/moved?token=t0ps3cret&x=1`;
    const rx = await receiver({
      replies: [
        { status: 307, headers: { location } },
        { status: 301, headers: { location: '/relative?sig=s3' } },
      ],
    });
    const { delivery, events, dir } = setup(`${rx.url}/hook?token=mine`);
    delivery.start();
    delivery.enqueue({ type: 'recv', id: 'm1' });
    delivery.enqueue({ type: 'recv', id: 'm2' });
    await delivery.whenIdle();
    expect(elsewhere.requests).toHaveLength(0);
    expect(events.dead.map((d) => d.status)).toEqual([307, 301]);
    const lines = fs
      .readFileSync(path.join(dir, DEAD_LETTER_FILE), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[0].reason.location).toBe(`http://REDACTED:REDACTED@127.0.0.1:${elsewhere.port}/moved?token=REDACTED&x=1`);
    expect(lines[1].reason.location).toBe(`${rx.url}/relative?sig=REDACTED`);
    expect(events.dead[0]!.location).toBe(lines[0].reason.location);
    const text = fs.readFileSync(path.join(dir, DEAD_LETTER_FILE), 'utf8');
    for (const secret of ['t0ps3cret', 'pw@', 's3"', 'mine']) expect(text).not.toContain(secret);
  });

  it('keeps every alert while the receiver is down and delivers all once it listens on the port', async () => {
    // The receiver's port is freed until it listens: on an address of this test's own, so that no other
    // test's listener or client takes it meanwhile.
    const host = ownLoopbackAddress();
    const port = await freePort(host);
    const { delivery, events, outbox } = setup(`http://${host}:${port}/a`);
    delivery.start();
    const ids = Array.from({ length: 20 }, (_, i) => `down-${i}`);
    for (const id of ids) delivery.enqueue({ type: 'send', id });
    await waitFor('three failed attempts', () => events.retry.length >= 3);
    expect(events.retry.every((e) => e.code === 'ECONNREFUSED')).toBe(true);
    expect(delivery.stats().inFlight).toBeLessThanOrEqual(1); // one probe at a time while failing
    expect(outbox.size).toBe(20);

    const rx = await receiver({ host, port });
    await delivery.whenIdle();
    expect(new Set(rx.values('id'))).toEqual(new Set(ids));
    expect(events.delivered).toHaveLength(20);
    expect(delivery.stats()).toMatchObject({ failStreak: 0, ready: 0, waiting: 0, inFlight: 0 });
  });

  it('times out a receiver that never answers, then retries', async () => {
    const rx = await receiver({ replies: ['hang', 'destroy', 200] });
    const { delivery, events } = setup(`${rx.url}/slow`, { timeoutMs: 1000 });
    delivery.start();
    delivery.enqueue({ id: 't1' });
    await delivery.whenIdle();
    expect(events.retry.map((e) => e.code)).toEqual(['ETIMEDOUT', 'ECONNRESET']);
    expect(events.retry[0]!.reason).toContain('1000 ms');
    expect(events.delivered).toHaveLength(1);
    expect(events.delivered[0]!.attempts).toBe(3);
    expect(rx.values('id')).toEqual(['t1', 't1', 't1']);
  });

  it('honours Retry-After on 429 and 503, capped by retryAfterCapMs', async () => {
    const rx = await receiver({
      replies: [{ status: 429, headers: { 'retry-after': '1' } }, { status: 503, headers: { 'retry-after': '3600' } }, 200],
    });
    const { delivery, events } = setup(`${rx.url}/busy`, { backoffBaseMs: 10, backoffCapMs: 50, retryAfterCapMs: 1200 });
    delivery.start();
    delivery.enqueue({ id: 'ra' });
    await delivery.whenIdle();
    expect(events.retry.map((e) => [e.status, e.delayMs])).toEqual([
      [429, 1000], // the header, not the 50 ms backoff cap
      [503, 1200], // an hour, capped
    ]);
    expect(events.delivered).toHaveLength(1);
  });

  it('treats 408 as retryable and other 4xx as final', async () => {
    const rx = await receiver({ replies: [408, 200, 410, 400] });
    const { delivery, events } = setup(`${rx.url}/x`, { concurrency: 1 });
    delivery.start();
    delivery.enqueue({ id: 'a' });
    await delivery.whenIdle();
    delivery.enqueue({ id: 'b' });
    delivery.enqueue({ id: 'c' });
    await delivery.whenIdle();
    expect(events.retry.map((e) => e.status)).toEqual([408]);
    expect(events.delivered.map((e) => e.record.id)).toEqual(['a']);
    expect(events.dead.map((e) => [e.record.id, e.status])).toEqual([
      ['b', 410],
      ['c', 400],
    ]);
  });

  it('never has more requests in flight than the concurrency', async () => {
    const rx = await receiver({ defaultReply: 'hang' });
    const { delivery } = setup(`${rx.url}/x`, { concurrency: 2, timeoutMs: 30_000 });
    delivery.start();
    for (let i = 0; i < 5; i++) delivery.enqueue({ id: `c${i}` });
    await rx.waitForRequests(2);
    expect(delivery.stats()).toMatchObject({ inFlight: 2, ready: 3 });
  });

  it('stop() aborts in-flight requests and leaves the alerts for the next start', async () => {
    const rx = await receiver({ defaultReply: 'hang' });
    const dir = tmpDir('delivery');
    const first = setup(`${rx.url}/x`, { timeoutMs: 30_000 }, {}, dir);
    first.delivery.start();
    for (const id of ['s1', 's2', 's3']) first.delivery.enqueue({ id });
    await rx.waitForRequests(3);
    await first.delivery.stop({ graceMs: 50 });
    first.delivery.enqueue({ id: 's4' }); // still written after stop, for the next start
    expect(first.outbox.pending().map((r) => r.id)).toEqual(['s1', 's2', 's3', 's4']);
    expect(first.events.retry).toHaveLength(0);
    first.outbox.close();

    const rx2 = await receiver();
    const second = setup(`${rx2.url}/x`, {}, {}, dir);
    second.delivery.start();
    await second.delivery.whenIdle();
    expect(rx2.values('id').sort()).toEqual(['s1', 's2', 's3', 's4']);
    expect(second.outbox.size).toBe(0);
  });

  it('stays within the outbox bounds against a dead receiver, reporting every drop', async () => {
    const host = ownLoopbackAddress(); // nothing else listens there: every attempt is refused
    const port = await freePort(host);
    const { delivery, events, outbox } = setup(`http://${host}:${port}/a`, {}, { maxRecords: 10 });
    delivery.start();
    for (let i = 0; i < 100; i++) delivery.enqueue({ id: `m${i}` });
    expect(outbox.size).toBe(10);
    expect(events.dropped).toHaveLength(90);
    expect(events.dropped.map((e) => e.record.id)).toEqual(Array.from({ length: 90 }, (_, i) => `m${i}`));
    expect(delivery.stats().dropped).toBe(90);
    await waitFor('five failed attempts', () => events.retry.length >= 5);
    const s = delivery.stats();
    expect(s.ready + s.waiting + s.inFlight).toBeLessThanOrEqual(10);
    expect(events.retry.every((e) => Number(e.record.id.slice(1)) >= 90)).toBe(true);
  });

  it('keeps credentials and secret query values out of events, errors and the dead-letter file', async () => {
    const host = ownLoopbackAddress(); // the port stays free until the receiver listens
    const port = await freePort(host);
    const url = `http://alice:s3cretpw@${host}:${port}/hook?sig=SIGSECRET&token=TOKSECRET&x=1`;
    const { delivery, events, dir } = setup(url);
    expect(delivery.url).not.toMatch(/s3cretpw|SIGSECRET|TOKSECRET/);
    delivery.start();
    delivery.enqueue({ id: 'sec' });
    await waitFor('two failed attempts', () => events.retry.length >= 2);
    const rx = await receiver({ host, port, replies: [{ status: 401, body: `denied for ${url} Bearer abc.def` }] });
    await delivery.whenIdle();
    expect(events.dead).toHaveLength(1);
    // The receiver does get the secrets: they are only kept off logs.
    expect(rx.requests[0]!.headers.authorization).toBe(`Basic ${Buffer.from('alice:s3cretpw').toString('base64')}`);
    expect(rx.values('sig')).toEqual(['SIGSECRET']);
    const shown = JSON.stringify(events) + fs.readFileSync(path.join(dir, DEAD_LETTER_FILE), 'utf8');
    expect(shown).toContain('/hook?');
    for (const secret of ['s3cretpw', 'SIGSECRET', 'TOKSECRET', 'abc.def']) expect(shown).not.toContain(secret);
    expect(() => new HttpDelivery({ url: 'ftp://bob:hunter2@example.test/', outbox: setup(`${rx.url}/`).outbox })).toThrow(
      /must be http or https \(got ftp:\/\/REDACTED:REDACTED@example\.test\/\)/,
    );
  });

  it('rejects bad options with errors naming the option', () => {
    const { outbox } = setup('http://127.0.0.1:9/');
    const make = (o: Partial<HttpDeliveryOptions>) => () => new HttpDelivery({ url: 'http://127.0.0.1:9/', outbox, ...o });
    expect(make({ concurrency: 0 })).toThrow(/options.concurrency must be an integer from 1 to 1024 \(got 0\)/);
    expect(make({ timeoutMs: -1 })).toThrow(RangeError);
    expect(make({ timeoutMs: 2 ** 31 })).toThrow(RangeError); // setTimeout would fire at once
    expect(make({ timeoutMs: '5' as never })).toThrow(TypeError);
    expect(make({ backoffBaseMs: 100, backoffCapMs: 10 })).toThrow(/options.backoffCapMs/);
    expect(make({ url: 'not a url' })).toThrow(/options.url is not a valid URL/);
    expect(make({ ca: 'x' })).toThrow(/options.ca needs an https URL/);
    expect(make({ headers: { 'bad header': 'x' } })).toThrow(/options.headers/);
    expect(make({ timeOutMs: 5 } as never)).toThrow(/options: unknown option "timeOutMs" \(did you mean "timeoutMs"\?\)/);
  });
});

describe('delivery helpers', () => {
  it('builds the URL without re-encoding the existing query', () => {
    expect(alertUrl(new URL('http://h/p?a=%20b+c&d'), { 'k y': 'v&w=é' }).href).toBe('http://h/p?a=%20b+c&d&k%20y=v%26w%3D%C3%A9');
    expect(alertUrl(new URL('http://h/p'), { a: '1' }).href).toBe('http://h/p?a=1');
  });

  it('parses Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2024-01-01T00:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('Mon, 01 Jan 2024 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Sun, 31 Dec 2023 00:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('-5', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });

  // One backoff rule for the project (lib/base/backoff.ts): equal jitter, no longer full jitter.
  it('draws equal-jitter delays within [bound/2, bound], bound = min(cap, base * 2^(n-1))', () => {
    const opts = { baseMs: 500, capMs: 60_000 };
    expect(backoffDelay(1, opts, undefined, () => 0.999)).toBe(499);
    expect(backoffDelay(4, opts, undefined, () => 0.5)).toBe(3000);
    expect(backoffDelay(30, opts, undefined, () => 0.5)).toBe(45_000);
    expect(backoffDelay(3, opts, undefined, () => 0)).toBe(1000);
  });
});
