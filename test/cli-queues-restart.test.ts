// `sockwatch queues --url` stopped (SIGTERM) and killed (SIGKILL) and started again on the same state
// directory, with real stuck sockets and a real HTTP receiver: one `alert` id per socket across
// every restart, repeats of the same episode (their ids derive from the first crossing), and a
// `resolved` for a socket that closed while no watcher ran.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { alertId } from '../lib/queues';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, startCli, type CliProcess } from './helpers/cli';
import { receiver, type HttpReceiver } from './helpers/http-receiver';
import { cleanupSockets, unreadConnection } from './helpers/sockets';
import { tmpDir } from './helpers/tmp';
import { waitFor } from './helpers/wait';

afterEach(async () => {
  await killCliProcesses();
  await runCleanups();
});
afterAll(cleanupSockets);

const start = (args: string[]): CliProcess => startCli(args, { subcommand: 'queues', cwd: os.tmpdir() });

interface SavedEpisode {
  type: string;
  cookie: string;
  since: number;
  id: string;
  repeat: number;
  r: { localPort: number };
}

function episodes(dir: string): SavedEpisode[] {
  try {
    return (JSON.parse(fs.readFileSync(path.join(dir, 'episodes.json'), 'utf8')) as { episodes: SavedEpisode[] }).episodes;
  } catch {
    return [];
  }
}

/** Requests for one local port and event kind. */
const requests = (rx: HttpReceiver, port: number, event: string) =>
  rx.requests.map((r) => Object.fromEntries(r.query)).filter((q) => q.local === `127.0.0.1:${port}` && q.event === event);

describe('sockwatch queues across restarts', () => {
  it('continues open episodes after SIGTERM and SIGKILL: one alert id per socket, resolved for a socket closed meanwhile', async () => {
    const rx = await receiver();
    const dir = tmpDir('restart');
    const stays = await unreadConnection('127.0.0.1', 3000);
    const closes = await unreadConnection('127.0.0.1', 3000);
    const args = [
      '--url',
      `${rx.url}/alerts`,
      '--state-dir',
      dir,
      '--recv-threshold',
      '1000',
      '--send-threshold',
      'off',
      '--repeat',
      '0.5',
      '--notify-resolved',
      '--interval',
      '20',
      '--tcp',
      '--sport',
      `${stays.port},${closes.port}`,
      // and the address: another test's socket on the same port number of another address would be a third episode
      '--src',
      '127.0.0.1',
    ];

    // Run 1: both sockets alert; their episodes are saved; SIGTERM.
    let c = start(args);
    await rx.waitFor(() => requests(rx, stays.port, 'alert').length > 0 && requests(rx, closes.port, 'alert').length > 0);
    await waitFor('both episodes saved', () => episodes(dir).length === 2, { detail: () => c.stderr() });
    const first = new Map(episodes(dir).map((e) => [e.r.localPort, e]));
    c.child.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);

    // Run 2: no new alert; a repeat of the same episode arrives; then SIGKILL.
    let seen = requests(rx, stays.port, 'repeat').length;
    const repeatsSoFar = () => seen;
    c = start(args);
    await rx.waitFor(() => requests(rx, stays.port, 'repeat').length > repeatsSoFar(), 20_000, 'a repeat in run 2');
    expect(c.stderr()).toMatch(/continuing 2 open alert episode\(s\)/);
    c.child.kill('SIGKILL');
    expect((await c.exited).signal).toBe('SIGKILL');

    // While nothing runs, one socket closes. Run 3: resolved (closed) for it, repeats for the other.
    closes.close();
    seen = requests(rx, stays.port, 'repeat').length;
    c = start(args);
    await rx.waitFor(() => requests(rx, closes.port, 'resolved').length > 0, 20_000, 'resolved for the closed socket');
    await rx.waitFor(() => requests(rx, stays.port, 'repeat').length > repeatsSoFar(), 20_000, 'a repeat in run 3');
    c.child.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);

    // Exactly one alert id per socket across all three runs, the one of the first run's episode.
    for (const port of [stays.port, closes.port]) {
      const ids = new Set(requests(rx, port, 'alert').map((q) => q.id));
      expect([...ids]).toEqual([first.get(port)!.id]);
    }
    // Every repeat belongs to the first episode: its id is derived from that episode's crossing.
    const ep = first.get(stays.port)!;
    const host = os.hostname();
    const episodeRepeatIds = new Set(
      Array.from({ length: 500 }, (_, n) => alertId(host, BigInt(ep.cookie), 'RECV', ep.since, 'repeat', n + 1)),
    );
    const repeats = requests(rx, stays.port, 'repeat');
    expect(repeats.length).toBeGreaterThan(1);
    for (const q of repeats) expect(episodeRepeatIds.has(q.id)).toBe(true);
    // The closed socket's resolution names the first episode too, and the socket is no longer saved.
    const closedEp = first.get(closes.port)!;
    const resolvedIds = new Set(requests(rx, closes.port, 'resolved').map((q) => q.id));
    const episodeResolvedIds = new Set(
      Array.from({ length: 500 }, (_, n) => alertId(host, BigInt(closedEp.cookie), 'RECV', closedEp.since, 'resolved', n)),
    );
    for (const id of resolvedIds) expect(episodeResolvedIds.has(id)).toBe(true);
    expect(resolvedIds.size).toBe(1);
    expect(episodes(dir).map((e) => e.r.localPort)).toEqual([stays.port]);
    stays.close();
  });
});
