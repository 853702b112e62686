// The watcher's pure state machine, fed with hand-made samples: exact control over which sample
// offends, which re-check finds what, and how many events a tick may emit. The kernel side of the
// same rules is covered with real sockets in queues-watcher.test.ts.
import { describe, expect, it } from 'vitest';
import type { SocketRecord } from '../lib/sampler';
import {
  AlertStream,
  QueueTracker,
  alertId,
  alertToJson,
  alertToLine,
  alertToParams,
  exceeds,
  isoMicros,
  type QueueAlert,
  type RecheckResults,
  type Thresholds,
  type TrackerOptions,
} from '../lib/queues';
import { socketRecord, THRESHOLDS } from './helpers/records';

const T: Thresholds = THRESHOLDS;
const rec = (o: Partial<SocketRecord> = {}): SocketRecord => socketRecord(o, T);

function tracker(o: Partial<TrackerOptions> = {}): QueueTracker {
  return new QueueTracker({
    thresholds: T,
    confirm: { n: 1, m: 1 },
    repeatMs: 0,
    notifyResolved: true,
    maxTracked: 100,
    maxEventsPerTick: 100,
    maxRechecksPerTick: 100,
    host: 'h1',
    ...o,
  });
}

/** One tick: the sample's records, and what an exact re-check would find for each cookie. */
function tick(
  t: QueueTracker,
  ts: number,
  records: SocketRecord[],
  world: Map<bigint, SocketRecord | null> = new Map(),
  offendersTotal = records.length,
) {
  const plan = t.plan({ timestamp: ts, records, offendersTotal });
  const checks: RecheckResults = new Map();
  for (const e of plan.recheck) if (world.has(e.cookie)) checks.set(e.cookie, world.get(e.cookie)!);
  return { plan, ...t.apply(plan, checks) };
}

const kinds = (events: QueueAlert[]) => events.map((e) => `${e.event}:${e.type}`);

describe('exceeds', () => {
  it('applies strict thresholds, never RECV/SEND to listeners, and the backlog limit to ACCEPT', () => {
    expect(exceeds('RECV', rec({ recvQ: 100 }), T)).toBe(false);
    expect(exceeds('RECV', rec({ recvQ: 101 }), T)).toBe(true);
    expect(exceeds('SEND', rec({ sendQ: 101 }), T)).toBe(true);
    const listener = { state: 10, stateName: 'listen' as const, recvQ: 5, sendQ: 5 };
    expect(exceeds('ACCEPT', rec(listener), T)).toBe(true);
    expect(exceeds('ACCEPT', rec({ ...listener, recvQ: 4 }), T)).toBe(false);
    expect(exceeds('RECV', rec({ ...listener, recvQ: 500 }), T)).toBe(false);
    expect(exceeds('ACCEPT', rec({ ...listener, recvQ: 3 }), { ...T, accept: 2 })).toBe(true);
    expect(exceeds('ACCEPT', rec({ ...listener, recvQ: 2 }), { ...T, accept: 2 })).toBe(false);
    expect(exceeds('RECV', rec({ recvQ: 1e9 }), { ...T, recv: 'off' })).toBe(false);
  });
});

describe('QueueTracker', () => {
  it('alerts once on the crossing, repeats on schedule, and resolves with the same type', () => {
    const t = tracker({ repeatMs: 1000 });
    const hot = rec({ recvQ: 500 });
    const a = tick(t, 100.0, [hot]);
    expect(kinds(a.events)).toEqual(['alert:RECV']);
    expect(a.events[0]).toMatchObject({
      timestamp: 100,
      since: 100,
      repeat: 0,
      bytes: 500,
      threshold: 100,
      local: '127.0.0.1:8080',
      remote: '127.0.0.1:50000',
      host: 'h1',
    });
    expect(kinds(tick(t, 100.5, [hot]).events)).toEqual([]);
    const r1 = tick(t, 101.0, [hot]).events;
    expect(r1).toMatchObject([{ event: 'repeat', repeat: 1, since: 100, timestamp: 101 }]);
    // Ticks missed: the next repeat is numbered by elapsed time, not by count.
    expect(tick(t, 103.2, [hot]).events).toMatchObject([{ event: 'repeat', repeat: 3 }]);
    const calm = rec({ recvQ: 7 });
    const res = tick(t, 104, [], new Map([[42n, calm]]));
    expect(res.events).toMatchObject([{ event: 'resolved', type: 'RECV', bytes: 7, repeat: 3, since: 100 }]);
    expect(res.events[0].closed).toBeUndefined();
    expect(t.tracked).toBe(0);
    // A new crossing of the same socket is a new alert with a new id.
    const again = tick(t, 110, [hot]).events;
    expect(again).toMatchObject([{ event: 'alert', since: 110 }]);
    expect(again[0].id).not.toBe(a.events[0].id);
  });

  it('gives every event a stable id from host, cookie, type, crossing time, kind and repeat', () => {
    const run = () => {
      const t = tracker({ repeatMs: 1000 });
      return [...tick(t, 5, [rec({ recvQ: 500 })]).events, ...tick(t, 6, [rec({ recvQ: 500 })]).events];
    };
    const [a1, r1] = run();
    const [a2, r2] = run();
    expect(a1.id).toBe(a2.id);
    expect(r1.id).toBe(r2.id);
    expect(a1.id).toMatch(/^[0-9a-f]{32}$/);
    expect(a1.id).toBe(alertId('h1', 42n, 'RECV', 5, 'alert', 0));
    expect(
      new Set([
        a1.id,
        r1.id,
        alertId('h2', 42n, 'RECV', 5, 'alert', 0),
        alertId('h1', 43n, 'RECV', 5, 'alert', 0),
        alertId('h1', 42n, 'SEND', 5, 'alert', 0),
      ]).size,
    ).toBe(5);
  });

  it('tracks RECV and SEND of one socket separately', () => {
    const t = tracker();
    const both = rec({ protocol: 'udp', state: 7, stateName: 'unconn', recvQ: 900, sendQ: 900 });
    expect(kinds(tick(t, 1, [both]).events)).toEqual(['alert:RECV', 'alert:SEND']);
    // The socket is still in the sample (RECV offends), SEND went down: no lookup needed.
    const recvOnly = rec({ protocol: 'udp', state: 7, stateName: 'unconn', recvQ: 900, sendQ: 0 });
    const r = tick(t, 2, [recvOnly]);
    expect(r.plan.recheck).toHaveLength(0);
    expect(r.events).toMatchObject([{ event: 'resolved', type: 'SEND', bytes: 0 }]);
  });

  it('N-of-M: alerts only after N offending samples within M, resolves after M calm ones', () => {
    const t = tracker({ confirm: { n: 2, m: 3 } });
    const hot = rec({ recvQ: 500 });
    const calm = rec({ recvQ: 0 });
    const w = new Map([[42n, calm]]);
    expect(tick(t, 1, [hot]).events).toEqual([]); // 1 of 1
    expect(tick(t, 2, [], w).events).toEqual([]); // 10
    expect(tick(t, 3, [], w).events).toEqual([]); // 100: 1 of 3
    expect(tick(t, 4, [], w).events).toEqual([]); // 000: forgotten
    expect(t.tracked).toBe(0);
    expect(tick(t, 5, [hot]).events).toEqual([]);
    expect(tick(t, 6, [], w).events).toEqual([]);
    expect(kinds(tick(t, 7, [hot]).events)).toEqual(['alert:RECV']); // 101: 2 of 3
    // Flapping keeps it active: resolved only after 3 calm samples in a row.
    expect(tick(t, 8, [], w).events).toEqual([]);
    expect(tick(t, 9, [hot]).events).toEqual([]);
    expect(tick(t, 10, [], w).events).toEqual([]);
    expect(tick(t, 11, [], w).events).toEqual([]);
    expect(tick(t, 12, [], w).events).toMatchObject([{ event: 'resolved', since: 7 }]);
  });

  it('treats a socket as closed only after two consecutive misses', () => {
    const t = tracker();
    tick(t, 1, [rec({ recvQ: 500 })]);
    const gone = new Map<bigint, SocketRecord | null>([[42n, null]]);
    expect(tick(t, 2, [], gone).events).toEqual([]);
    // Found again: the miss counter restarts.
    expect(tick(t, 3, [], new Map([[42n, rec({ recvQ: 500 })]])).events).toEqual([]);
    expect(tick(t, 4, [], gone).events).toEqual([]);
    const closed = tick(t, 5, [], gone).events;
    expect(closed).toMatchObject([{ event: 'resolved', type: 'RECV', bytes: 0, closed: true, timestamp: 5 }]);
    expect(t.tracked).toBe(0);
  });

  it('an unknown re-check (not performed) changes nothing', () => {
    const t = tracker();
    tick(t, 1, [rec({ recvQ: 500 })]);
    for (let i = 2; i < 10; i++) expect(tick(t, i, []).events).toEqual([]);
    expect(t.active).toBe(1);
  });

  it('without notifyResolved, a resolved socket is forgotten silently', () => {
    const t = tracker({ notifyResolved: false });
    tick(t, 1, [rec({ recvQ: 500 })]);
    expect(tick(t, 2, [], new Map([[42n, rec()]])).events).toEqual([]);
    expect(t.tracked).toBe(0);
  });

  it('caps events per tick, defers the rest, and catches up on later ticks', () => {
    const t = tracker({ maxEventsPerTick: 3 });
    const many = Array.from({ length: 8 }, (_, i) => rec({ cookie: BigInt(i + 1), remotePort: 1000 + i, recvQ: 500 }));
    const a = tick(t, 1, many);
    expect(a.events).toHaveLength(3);
    expect(a.deferred).toBe(5);
    const b = tick(t, 2, many);
    expect(b.events).toHaveLength(3);
    expect(b.deferred).toBe(2);
    const c = tick(t, 3, many);
    expect(c.events).toHaveLength(2);
    expect(c.deferred).toBe(0);
    const all = [...a.events, ...b.events, ...c.events];
    expect(new Set(all.map((e) => e.cookie)).size).toBe(8);
    // A deferred alert carries the time of the sample that emitted it.
    expect(c.events.every((e) => e.timestamp === 3 && e.since === 3)).toBe(true);
  });

  it('bounds its state: offenders beyond maxTracked or beyond the record cap are counted, not stored', () => {
    const t = tracker({ maxTracked: 4 });
    const many = Array.from({ length: 10 }, (_, i) => rec({ cookie: BigInt(i + 1), recvQ: 500 }));
    const r = tick(t, 1, many, new Map(), 25);
    expect(t.tracked).toBe(4);
    expect(r.events).toHaveLength(4);
    expect(r.untracked).toBe(6 + 15);
  });

  it('caps re-checks per tick and rotates through every tracked pair', () => {
    const t = tracker({ maxRechecksPerTick: 2 });
    const many = Array.from({ length: 5 }, (_, i) => rec({ cookie: BigInt(i + 1), recvQ: 500 }));
    tick(t, 1, many);
    const checked = new Set<bigint>();
    for (let i = 0; i < 3; i++) {
      const { plan } = tick(t, 2 + i, []);
      expect(plan.recheck.length).toBeLessThanOrEqual(2);
      plan.recheck.forEach((e) => checked.add(e.cookie));
    }
    expect(checked.size).toBe(5);
  });

  it('reports ACCEPT with the backlog limit as threshold', () => {
    const t = tracker();
    const l = rec({ state: 10, stateName: 'listen', remoteAddress: '0.0.0.0', remotePort: 0, recvQ: 3, sendQ: 3 });
    expect(tick(t, 1, [l]).events).toMatchObject([{ type: 'ACCEPT', bytes: 3, threshold: 3, state: 'listen', remote: '0.0.0.0:0' }]);
  });
});

describe('alert wire forms', () => {
  const alert: QueueAlert = {
    id: 'abc',
    event: 'alert',
    type: 'SEND',
    timestamp: 1714567890.1,
    since: 1714567890.1,
    repeat: 0,
    bytes: 2097152,
    threshold: 1048576,
    protocol: 'tcp',
    family: 6,
    state: 'established',
    local: '[::1]:443',
    remote: '[::1]:50123',
    cookie: 99n,
    inode: 7,
    uid: 0,
    host: 'web-1',
    pid: 321,
    comm: 'nginx',
  };

  it('query params: exact names, order and formats', () => {
    expect(Object.entries(alertToParams(alert))).toEqual([
      ['ts', '1714567890.100000'],
      ['type', 'SEND'],
      ['bytes', '2097152'],
      ['threshold', '1048576'],
      ['local', '[::1]:443'],
      ['remote', '[::1]:50123'],
      ['proto', 'tcp'],
      ['state', 'established'],
      ['host', 'web-1'],
      ['pid', '321'],
      ['comm', 'nginx'],
      ['id', 'abc'],
      ['event', 'alert'],
    ]);
    const { pid: _p, comm: _c, ...anon } = alert;
    expect(Object.keys(alertToParams(anon))).not.toContain('pid');
    expect(Object.keys(alertToParams(anon))).not.toContain('comm');
  });

  it('JSON line and human line', () => {
    const j = alertToJson({ ...alert, event: 'resolved', closed: true });
    expect(j).toMatchObject({ ts: 1714567890.1, type: 'SEND', cookie: '99', family: 'ipv6', closed: true, pid: 321 });
    expect(JSON.parse(JSON.stringify(j)).cookie).toBe('99');
    expect(alertToLine(alert)).toBe(
      '2024-05-01T12:51:30.100000Z ALERT SEND send 2097152 B > 1048576 tcp established [::1]:443 [::1]:50123 pid 321 (nginx) id abc',
    );
    expect(isoMicros(1714567890.9999996)).toBe('2024-05-01T12:51:31.000000Z');
    expect(isoMicros(0.000001)).toBe('1970-01-01T00:00:00.000001Z');
  });
});

describe('AlertStream', () => {
  it('buffers up to its bound, drops the oldest beyond, ends after the buffer', async () => {
    let detached = 0;
    const s = new AlertStream<number>(3, () => detached++);
    for (let i = 1; i <= 5; i++) s.push(i);
    expect(s.dropped).toBe(2);
    s.end();
    const got: number[] = [];
    for await (const v of s) got.push(v);
    expect(got).toEqual([3, 4, 5]);
    const t = new AlertStream<number>(3, () => detached++);
    const pending = t.next();
    t.push(9);
    expect(await pending).toEqual({ value: 9, done: false });
    t.push(10);
    for await (const v of t) {
      expect(v).toBe(10);
      break;
    }
    expect(detached).toBe(1);
    t.push(11); // after return(): ignored
    expect(await t.next()).toEqual({ value: undefined, done: true });
    const failing = new AlertStream<number>(3, () => undefined);
    const n = failing.next();
    failing.end(new Error('boom'));
    await expect(n).rejects.toThrow('boom');
  });
});
