// Open alert episodes across restarts: the tracker's restore() / episodes() with hand-made samples,
// and the episode file (lib/queues/episodes.ts) on a real directory: scope (host, boot, network
// namespace), format version, the cap. The CLI end to end is in cli-queues-restart.test.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { SocketRecord } from '../lib/sampler';
import {
  EpisodeStore,
  QueueTracker,
  QueueWatcher,
  alertId,
  type Episode,
  type EpisodeScope,
  type QueueAlert,
  type Thresholds,
} from '../lib/queues';
import { cleanupSockets, unreadConnection } from './helpers/sockets';
import { tmpDir } from './helpers/tmp';
import { waitFor } from './helpers/wait';
import { socketRecord, THRESHOLDS } from './helpers/records';

afterAll(cleanupSockets);

const T: Thresholds = THRESHOLDS;
const rec = (o: Partial<SocketRecord> = {}): SocketRecord => socketRecord(o, T);

function tracker(repeatMs = 10_000): QueueTracker {
  return new QueueTracker({
    thresholds: T,
    confirm: { n: 1, m: 1 },
    repeatMs,
    notifyResolved: true,
    maxTracked: 100,
    maxEventsPerTick: 100,
    maxRechecksPerTick: 100,
    host: 'h1',
  });
}

function tick(t: QueueTracker, ts: number, records: SocketRecord[], world: Map<bigint, SocketRecord | null> = new Map()) {
  const plan = t.plan({ timestamp: ts, records, offendersTotal: records.length });
  const checks = new Map<bigint, SocketRecord | null>();
  for (const e of plan.recheck) if (world.has(e.cookie)) checks.set(e.cookie, world.get(e.cookie)!);
  return t.apply(plan, checks).events;
}

describe('QueueTracker across a restart', () => {
  it('continues a restored episode: no new alert, repeats numbered from the crossing, same ids', () => {
    const a = tracker();
    const [alert] = tick(a, 1000, [rec({ recvQ: 500 })]);
    expect(alert!.event).toBe('alert');
    tick(a, 1010, [rec({ recvQ: 500 })]); // repeat #1
    const saved = a.episodes();
    expect(saved).toHaveLength(1);
    expect(saved[0]).toMatchObject({ type: 'RECV', cookie: 42n, since: 1000, id: alert!.id, repeat: 1, lastAt: 1010 });

    // The next run starts at 1015 (slot 2 not yet due); the socket still offends 25 s after the crossing.
    const b = tracker();
    expect(b.restore(saved, 1015)).toBe(1);
    expect(b.active).toBe(1);
    const events = tick(b, 1025, [rec({ recvQ: 600 })]);
    expect(events.map((e) => `${e.event}#${e.repeat}`)).toEqual(['repeat#2']);
    expect(events[0]!.id).toBe(alertId('h1', 42n, 'RECV', 1000, 'repeat', 2));
    expect(events[0]!.since).toBe(1000);
  });

  it('never sends a repeat slot again that may have gone out before the crash: the next slot follows', () => {
    const a = tracker();
    tick(a, 1000, [rec({ recvQ: 500 })]);
    tick(a, 1010, [rec({ recvQ: 500 })]); // repeat #1, saved
    tick(a, 1020, [rec({ recvQ: 500 })]); // repeat #2 sent, then killed before its number was saved
    const saved = a.episodes().map((e) => ({ ...e, repeat: 1, lastAt: 1010 }));
    const b = tracker();
    b.restore(saved, 1021);
    // Slot 2 was due at the restart: not sent again (it would carry repeat #2's id with another ts).
    expect(tick(b, 1025, [rec({ recvQ: 500 })])).toEqual([]);
    const events = tick(b, 1030, [rec({ recvQ: 500 })]);
    expect(events.map((e) => `${e.event}#${e.repeat}`)).toEqual(['repeat#3']);
    expect(events[0]!.id).toBe(alertId('h1', 42n, 'RECV', 1000, 'repeat', 3));
  });

  it('resolves a restored episode whose socket closed while nothing ran (two exact re-checks miss it)', () => {
    const a = tracker();
    tick(a, 1000, [rec({ recvQ: 500 })]);
    const b = tracker();
    b.restore(a.episodes(), 1000.5);
    const gone = new Map<bigint, SocketRecord | null>([[42n, null]]);
    expect(tick(b, 1001, [], gone)).toEqual([]);
    const [resolved] = tick(b, 1002, [], gone);
    expect(resolved).toMatchObject({ event: 'resolved', closed: true, since: 1000, local: '127.0.0.1:8080' });
    expect(resolved!.id).toBe(alertId('h1', 42n, 'RECV', 1000, 'resolved', 0));
    expect(b.episodes()).toEqual([]);
  });

  it('checks the 4-tuple: the same cookie on another socket ends the old episode and alerts the new one', () => {
    const a = tracker();
    tick(a, 1000, [rec({ recvQ: 500 })]);
    const b = tracker();
    b.restore(a.episodes(), 1000.5);
    const events = tick(b, 1001, [rec({ recvQ: 500, remotePort: 40000 })]);
    expect(events.map((e) => e.event)).toEqual(['resolved', 'alert']);
    expect(events[0]).toMatchObject({ closed: true, remote: '127.0.0.1:50000', since: 1000 });
    expect(events[1]).toMatchObject({ remote: '127.0.0.1:40000', since: 1001 });
  });

  it("gives closed resolutions for an earlier boot's episodes", () => {
    const a = tracker();
    tick(a, 1000, [rec({ recvQ: 500 })]);
    const [e] = tracker().closedEvents(a.episodes(), 2000);
    expect(e).toMatchObject({ event: 'resolved', closed: true, timestamp: 2000, since: 1000, bytes: 0 });
  });
});

const SCOPE: EpisodeScope = { host: 'h1', boot: 'boot-a', netns: '4026531840' };

function episode(cookie: bigint, since: number): Episode {
  return { type: 'RECV', cookie, since, id: `id-${cookie}`, repeat: 0, lastAt: since, record: rec({ cookie, recvQ: 500 }) };
}

describe('EpisodeStore', () => {
  it('round-trips episodes of this host, boot and namespace', () => {
    const file = path.join(tmpDir('episodes'), 'episodes.json');
    new EpisodeStore(file, SCOPE).save([episode(7n, 1000)]);
    const load = new EpisodeStore(file, SCOPE).load();
    expect(load.continued).toHaveLength(1);
    expect(load.continued[0]).toMatchObject({ cookie: 7n, since: 1000, id: 'id-7', record: { localPort: 8080, stateName: 'established' } });
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toMatchObject({ v: 1, host: 'h1', boot: 'boot-a' });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  it("continues nothing from another host or namespace; hands back an earlier boot's episodes to resolve", () => {
    const file = path.join(tmpDir('episodes'), 'episodes.json');
    new EpisodeStore(file, SCOPE).save([episode(7n, 1000)]);
    expect(new EpisodeStore(file, { ...SCOPE, host: 'h2' }).load()).toMatchObject({ continued: [], discarded: 1, previousBoot: [] });
    expect(new EpisodeStore(file, { ...SCOPE, netns: '1' }).load()).toMatchObject({ continued: [], discarded: 1 });
    const rebooted = new EpisodeStore(file, { ...SCOPE, boot: 'boot-b' }).load();
    expect(rebooted.continued).toEqual([]);
    expect(rebooted.previousBoot.map((e) => e.cookie)).toEqual([7n]);
  });

  it('refuses a newer format with one line naming the file, and leaves it as is', () => {
    const file = path.join(tmpDir('episodes'), 'episodes.json');
    const content = JSON.stringify({ v: 2, host: 'h1', boot: 'boot-a', netns: SCOPE.netns, episodes: [] });
    fs.writeFileSync(file, content);
    expect(() => new EpisodeStore(file, SCOPE).load()).toThrow(
      expect.objectContaining({ code: 'ERR_SOCKWATCH_STATE_VERSION', message: expect.stringContaining(file) }),
    );
    expect(fs.readFileSync(file, 'utf8')).toBe(content);
  });

  it('keeps at most maxEntries, drops the oldest crossings first and counts them', () => {
    const file = path.join(tmpDir('episodes'), 'episodes.json');
    const store = new EpisodeStore(file, SCOPE, 2);
    expect(store.save([episode(1n, 1003), episode(2n, 1001), episode(3n, 1002)])).toBe(1);
    const load = new EpisodeStore(file, SCOPE).load();
    expect(load.continued.map((e) => e.cookie).sort()).toEqual([1n, 3n]);
    expect(load.droppedBefore).toBe(1);
  });

  it('reports a garbled file as unreadable and never follows a link planted at its path', () => {
    const dir = tmpDir('episodes');
    const file = path.join(dir, 'episodes.json');
    fs.writeFileSync(file, '{"v":1,');
    expect(new EpisodeStore(file, SCOPE).load()).toMatchObject({ unreadable: true, continued: [] });
    fs.rmSync(file);
    fs.writeFileSync(path.join(dir, 'elsewhere'), JSON.stringify({ v: 1, ...SCOPE, episodes: [] }));
    fs.symlinkSync(path.join(dir, 'elsewhere'), file);
    expect(() => new EpisodeStore(file, SCOPE).load()).toThrow(/symbolic link/);
  });
});

describe('QueueWatcher with an episode file (real socket)', () => {
  it('saves the repeat number at stop, and a new watcher on the same file continues with a repeat, not an alert', async () => {
    const o = await unreadConnection('127.0.0.1', 3000);
    const file = path.join(tmpDir('episodes'), 'episodes.json');
    const options = {
      intervalMs: 20,
      repeatMs: 100,
      recvThreshold: 1000,
      sendThreshold: 'off' as const,
      acceptThreshold: 'off' as const,
      // By address and port: another test's socket may have this port number on another address.
      filter: { tcp: true, udp: false, localAddresses: ['127.0.0.1'], localPorts: [o.port] },
      episodeFile: file,
      owners: false,
    };
    const first = new QueueWatcher(options);
    expect(first.episodesRestored).toMatchObject({ restored: 0, continued: [] });
    const seen: QueueAlert[] = [];
    first.on('alert', (a) => seen.push(a));
    first.start();
    await waitFor('an alert and a repeat', () => seen.some((a) => a.event === 'repeat'));
    await first.stop();
    const last = seen.at(-1)!;
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as { episodes: Array<{ id: string; repeat: number }> };
    expect(saved.episodes).toEqual([expect.objectContaining({ id: seen[0]!.id, repeat: last.repeat })]);

    const second = new QueueWatcher(options);
    expect(second.episodesRestored?.restored).toBe(1);
    const next: QueueAlert[] = [];
    second.on('alert', (a) => next.push(a));
    second.start();
    try {
      await waitFor('a repeat after the restart', () => next.length > 0);
      expect(next[0]).toMatchObject({ event: 'repeat', since: seen[0]!.since });
      expect(next[0]!.repeat).toBeGreaterThan(last.repeat);
      expect(next.some((a) => a.event === 'alert')).toBe(false);
    } finally {
      await second.stop();
      o.close();
    }
  });
});
