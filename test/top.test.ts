// `sockwatch top` in a real terminal: the compiled CLI runs inside tmux (its own server, TERM fixed),
// keys go in with send-keys, the screen comes back with capture-pane, the terminal's modes with
// display-message. The sockets are real (test/helpers/top-fixture.ts); rows are matched by
// address:port since other test files open sockets at the same time.
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { listSockets } from '../lib/sampler';
import { DestinationSource, QueueSource, ScanScope } from '../lib/top/sources';
import { runCli } from './helpers/cli';
import { canNetns, cleanupNetns, inNewNetns, netnsInode } from './helpers/netns';
import { cleanupSockets } from './helpers/sockets';
import { hasTmux, Tmux, type Pane } from './helpers/tmux';
import { CLIENT, FIXTURE_FILTER, literal, topFixture, type TopFixture } from './helpers/top-fixture';

const CLI = path.resolve(__dirname, '../dist/cli/main.js');
const noTmux = !hasTmux();
if (noTmux) console.warn('top.test.ts: tmux is not installed (Debian package tmux)');

/** The first frame: Node's start and the first scan of a CLI started on a loaded machine (tmux's default is 10 s). */
const FIRST_FRAME_MS = 30_000;

/** An SGR sequence that sets a color (foreground, background, bright, 256 or RGB). */
const COLOR_SGR = /\x1b\[(?:[0-9]*;)*(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9]*)*m/;

let fx: TopFixture;
let tmux: Tmux;
const panes: Pane[] = [];

function top(args: string[], env: Record<string, string | undefined> = { NO_COLOR: undefined }, size = { columns: 80, rows: 24 }): Pane {
  const pane = tmux.start([process.execPath, CLI, 'top', '--interval', '0.3', '--filter', FIXTURE_FILTER, ...args], { ...size, env });
  panes.push(pane);
  return pane;
}

/** The screen row of a destination: mark, address:port, total, 240s, then anything. */
function destinationRow(dest: string, total: number): RegExp {
  return new RegExp(`^(.) +${literal(dest)} +${total} +${total} .*`, 'm');
}

beforeAll(async () => {
  if (noTmux) return;
  tmux = new Tmux('top');
  fx = await topFixture();
});

afterEach(() => {
  for (const p of panes.splice(0)) p.kill();
});

afterAll(async () => {
  tmux?.kill();
  await cleanupSockets();
  await cleanupNetns();
});

describe.skipIf(noTmux)('sockwatch top in a terminal', () => {
  it('Destinations: counts per destination with states, the one over -t marked and in color', async () => {
    const pane = top(['-t', '6']);
    const text = await pane.waitFor(
      'the four destinations',
      (t) => [destinationRow(fx.dest[0], 3), destinationRow(fx.dest[1], 5), destinationRow(fx.dest[2], 7)].every((re) => re.test(t)),
      FIRST_FRAME_MS,
    );
    expect(text.split('\n')[0]).toMatch(/^sockwatch top \[1 Destinations\] +2 Queues +3 Processes +every 0\.3s \d\d:\d\d:\d\d$/);
    expect(destinationRow(fx.dest[0], 3).exec(text)![0]).toMatch(/^  .* ESTAB 3$/);
    expect(destinationRow(fx.dest[2], 7).exec(text)![0]).toMatch(/^! .* ESTAB 7$/);
    // the client end in TIME_WAIT still counts toward its destination (the snat rule)
    await pane.waitFor('the TIME_WAIT destination', (t) => new RegExp(`${literal(fx.dest[3])} +1 +1 .*TIME-W 1$`, 'm').test(t));
    const colored = pane.screen(true);
    const over = colored.find((l) => l.includes(fx.dest[2]))!;
    const under = colored.find((l) => l.includes(fx.dest[0]))!;
    expect(over).toMatch(COLOR_SGR);
    expect(under).not.toMatch(COLOR_SGR);
    expect(colored.length).toBe(24);
  });

  it('keys: Queues with owners, Processes with TIME_WAIT apart, filter, sort, pause, help', async () => {
    const pane = top(['--recv-threshold', '4k']);
    await pane.waitFor('Destinations', (t) => t.includes(fx.dest[2]), FIRST_FRAME_MS);
    pane.keys('2');
    const pyPid = fx.holder.pid;
    const queue = new RegExp(`^! ESTAB +4\\.9k +0 +${literal(fx.dest[2])} +[\\d.]+:\\d+ +${pyPid} python3$`);
    const listener = (i: number) => new RegExp(`^  ${literal(fx.dest[i]!)} +0 +64 +0% +${pyPid} python3$`, 'm');
    // owners come from the first walk of /proc/*/fd, which may take seconds on a loaded machine
    const queues = await pane.waitFor(
      'the 7 queues and 4 listeners, with their owner',
      (t) => t.split('\n').filter((l) => queue.test(l)).length === 7 && [0, 1, 2, 3].every((i) => listener(i).test(t)),
      30_000,
    );
    expect(queues.split('\n')[0]).toContain('[2 Queues]');

    pane.keys('3');
    await pane.waitFor('the Processes view', (t) => t.includes('[3 Processes]'));
    pane.keys('/');
    pane.type(String(pyPid));
    pane.keys('Enter');
    // the first walk of /proc/*/fd may take seconds on a loaded machine
    await pane.waitFor('the holder process', (t) => new RegExp(`^ +${pyPid} python3 +34 +30 +4 +0 +0 +0 +0$`, 'm').test(t), 30_000);
    // TIME_WAIT sockets belong to no process: a row of their own
    pane.keys('/');
    pane.type('no process');
    pane.keys('Enter');
    await pane.waitFor('the no-process row', (t) => /^ +- \(no process\) +\d+ +\d+ +0 +[1-9]\d* /m.test(t), 30_000);

    pane.keys('1');
    await pane.waitFor('Destinations, nothing matching "no process"', (t) => t.includes('[1 Destinations]') && !t.includes(fx.dest[2]));
    pane.keys('/');
    pane.type(String(fx.ports[1]));
    await pane.waitFor('the filter being typed', (t) => t.includes(`filter: ${fx.ports[1]}_`));
    pane.keys('Enter');
    const filtered = await pane.waitFor('only the filtered destination', (t) => destinationRow(fx.dest[1], 5).test(t));
    expect(filtered).not.toContain(fx.dest[0]);
    expect(filtered).not.toContain(fx.dest[2]);
    expect(filtered.split('\n')[1]).toMatch(new RegExp(`^filter: ${fx.ports[1]} · `));
    pane.keys('/');
    pane.type(FIXTURE_FILTER);
    pane.keys('Enter');
    await pane.waitFor('the fixture filter again', (t) => t.includes(fx.dest[0]) && t.includes(fx.dest[2]));
    pane.keys('s');
    await pane.waitFor('the next sort column', (t) => t.split('\n')[1]!.includes('sort: 240s'));
    pane.keys('p');
    await pane.waitFor('paused', (t) => t.split('\n')[1]!.startsWith('PAUSED · '));
    pane.keys('?');
    await pane.waitFor('the help', (t) => t.split('\n')[2] === 'Keys' && t.includes('q, Ctrl-C     quit'));
    pane.keys('x');
    await pane.waitFor('the help closed', (t) => t.includes(fx.dest[2]));
  });

  it('fits 80x24, uses a larger terminal, redraws on resize', async () => {
    const pane = top([]);
    const small = await pane.waitFor('the first frame', (t) => t.includes(fx.dest[2]), FIRST_FRAME_MS);
    const lines = small.split('\n');
    expect(lines).toHaveLength(24);
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(80);
    expect(lines[23]).toMatch(/^q quit {2}\? help/);
    pane.resize(132, 40);
    const big = await pane.waitFor('the frame at 132x40', (t) => t.split('\n').length === 40 && t.split('\n')[0]!.length === 132);
    expect(big.split('\n')[39]).toMatch(/^q quit/);
    // the wider sparkline column: "LAST MINUTE" followed by its 30 cells
    expect(big.split('\n')[2]).toMatch(/240s LAST MINUTE {20}STATES/);
    pane.resize(80, 24);
    await pane.waitFor('the frame at 80x24 again', (t) => t.split('\n').length === 24 && t.split('\n')[0]!.length === 80);
  });

  it.each([
    ['q', (p: Pane) => p.keys('q')],
    ['SIGTERM', (p: Pane) => process.kill(p.programPid(), 'SIGTERM')],
    ['SIGINT (Ctrl-C)', (p: Pane) => p.keys('C-c')],
  ])('%s: exit 0, alternate screen left, cursor shown, the screen before it back', async (_how, end) => {
    const pane = top([]);
    await pane.waitFor('the first frame', (t) => t.includes(fx.dest[2]), FIRST_FRAME_MS);
    expect(pane.display('#{alternate_on} #{cursor_flag}')).toBe('1 0');
    end(pane);
    const after = await pane.waitFor('the exit', (t) => t.includes('program exited'));
    expect(after.trim()).toBe('program exited 0');
    expect(pane.display('#{alternate_on} #{cursor_flag}')).toBe('0 1');
  });

  it('NO_COLOR: no color at all, the over-threshold row keeps its mark', async () => {
    const pane = top(['-t', '6'], { NO_COLOR: '1' });
    const text = await pane.waitFor('the destinations', (t) => destinationRow(fx.dest[2], 7).test(t), FIRST_FRAME_MS);
    expect(destinationRow(fx.dest[2], 7).exec(text)![1]).toBe('!');
    for (const line of pane.screen(true)) expect(line).not.toMatch(COLOR_SGR);
  });
});

describe('sockwatch top, stdout not a terminal', () => {
  beforeAll(async () => {
    fx ??= await topFixture();
  });

  it('prints one plain snapshot of the three views and exits 0', async () => {
    const r = await runCli(['-t', '6', '--recv-threshold', '4k', '--filter', FIXTURE_FILTER, '--limit', '100'], { subcommand: 'top' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/\x1b/);
    const out = r.stdout;
    expect(out).toMatch(new RegExp(`^== Destinations: filter: ${literal(FIXTURE_FILTER)} · sort: total · \\d+ destinations · `));
    expect(out).toMatch(destinationRow(fx.dest[0], 3));
    expect(destinationRow(fx.dest[2], 7).exec(out)![1]).toBe('!');
    expect(out).toMatch(/^== Queues: filter: /m);
    expect(out).toMatch(new RegExp(`^! ESTAB +4\\.9k +0 +${literal(fx.dest[2])} `, 'm'));
    // the filter selects processes by pid or command: the fixture's addresses select none
    expect(out).toMatch(new RegExp(`^== Processes: filter: ${literal(FIXTURE_FILTER)} · sort: tcp · \\d+ owners · `, 'm'));
  });

  it('--view and --limit: one view, cut with a count of the rest', async () => {
    const r = await runCli(['--view', 'queues', '--limit', '2', '--once'], { subcommand: 'top' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toContain('== Destinations');
    expect(r.stdout).toMatch(/^… \d+ more$/m);
    const p = await runCli(['--view', 'processes', '--filter', String(fx.holder.pid)], { subcommand: 'top' });
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout.split('\n').filter((l) => /^ +\d+ /.test(l))).toEqual([
      expect.stringMatching(new RegExp(`^ +${fx.holder.pid} python3 +34 +30 +4 +0 +0 +0 +0$`)),
    ]);
  });

  it('bad input: one line, exit 2', async () => {
    for (const [args, line] of [
      [['--interval', '0.01'], 'sockwatch: --interval: "0.01" is below the least interval, 0.1 s'],
      [['--view', 'nope'], 'sockwatch: --view: expected destinations, queues, processes, got "nope"'],
      [
        ['--pid', '1', '--all-netns'],
        'sockwatch: --pid and --all-netns: give one of them (--pid already counts the namespace of the process)',
      ],
    ] as const) {
      const r = await runCli([...args], { subcommand: 'top' });
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`${line}\n`);
    }
  });
});

describe('top: the Queues view shares its kernel walk with Destinations', () => {
  beforeAll(async () => {
    fx ??= await topFixture();
  });

  it('the shared scan (aggregation filtered in C++) counts what the kernel-filtered scan counts', async () => {
    const scope = new ScanScope(false);
    const o = { intervalMs: 1000, threshold: 6, recvThreshold: 4096, sendThreshold: 4096, allNetns: false };
    // the fixture's first listener port excluded: its accepted ends are inbound, not counted
    const excludeLocalPorts = [80, 443, 2222, fx.ports[0]];
    const own = new DestinationSource(scope, { ...o, excludeLocalPorts });
    const shared = new DestinationSource(scope, { ...o, excludeLocalPorts });
    const queues = new QueueSource(scope, { ...o, excludeLocalPorts });
    try {
      const ours = (rows: { remote: string; total: number; states: Record<string, number> }[], pid: RegExp) =>
        rows
          .filter((r) => pid.test(r.remote))
          .map((r) => `${r.remote} ${r.total} ${JSON.stringify(r.states)}`)
          .sort();
      const a = (await own.poll()).rows;
      const b = shared.fromScans(await scope.scan(shared.sharedOptions(queues.options))).rows;
      const fixture = new RegExp(`^${literal(FIXTURE_FILTER)}`);
      expect(ours(b, fixture)).toEqual(ours(a, fixture));
      expect(ours(a, fixture)).toEqual([
        `${fx.dest[0]} 3 {"established":3}`,
        `${fx.dest[1]} 5 {"established":5}`,
        `${fx.dest[2]} 7 {"established":7}`,
        `${fx.dest[3]} 1 {"time-wait":1}`,
      ]);
      // the accepted ends (remote: the client's address and port) of the excluded port are in neither, the others' in both
      const clients = async (port: number) =>
        (await listSockets({ tcp: true, remotePorts: [port], states: ['established'] }))
          .filter((r) => r.localAddress === CLIENT)
          .map((r) => `${r.localAddress}:${r.localPort}`);
      const excluded = await clients(fx.ports[0]);
      const counted = await clients(fx.ports[1]);
      expect([excluded.length, counted.length]).toEqual([3, 5]);
      for (const rows of [a, b]) {
        const remotes = new Set(rows.map((r) => r.remote));
        expect(excluded.filter((c) => remotes.has(c))).toEqual([]);
        expect(counted.filter((c) => remotes.has(c))).toEqual(counted);
      }
    } finally {
      queues.close();
      await own.close();
      await shared.close();
      await scope.close();
    }
  });
});

describe('top --pid and --all-netns (snapshots)', () => {
  beforeAll(async () => {
    fx ??= await topFixture();
  });

  it('--pid: the destinations of that process, and how they were counted', async () => {
    const r = await runCli(['--once', '--view', 'destinations', '--pid', String(fx.holder.pid), '--filter', FIXTURE_FILTER], {
      subcommand: 'top',
    });
    expect(r.code, r.stderr).toBe(0);
    for (const [i, n] of [
      [0, 3],
      [1, 5],
      [2, 7],
    ] as const)
      expect(r.stdout).toMatch(destinationRow(fx.dest[i], n));
    // its namespace is shared with other processes holding sockets: counted by its own sockets
    expect(r.stdout).toMatch(new RegExp(`^pid ${fx.holder.pid}: process$`, 'm'));
  });

  it.skipIf(!canNetns)('--all-netns: rows of another namespace, labelled with its inode and command', async () => {
    const h = await inNewNetns(`import socket, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)
keep = []
for i in range(4):
    c = socket.create_connection(s.getsockname()); a, _ = s.accept(); c.send(b'y' * 3000); keep += [c, a]
print(s.getsockname()[1], flush=True)
time.sleep(3600)
`);
    const port = Number(h.firstLine);
    const ns = `${netnsInode(`/proc/${h.pid}/ns/net`)} python3`;
    const r = await runCli(['--once', '--all-netns', '--filter', String(port)], { subcommand: 'top' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^  ${literal(ns)} +127\\.0\\.0\\.1:${port} +4 +4 .*ESTAB 4$`, 'm'));
    const queued = r.stdout.split('\n').filter((l) => new RegExp(`^  ${literal(ns)} +ESTAB +2\\.9k +0 +127\\.0\\.0\\.1:${port} `).test(l));
    expect(queued).toHaveLength(4);
    expect(r.stdout).toMatch(new RegExp(`^  ${literal(ns)} +127\\.0\\.0\\.1:${port} +0 +8 +0% +${h.pid} python3`, 'm'));
    const p = await runCli(['--once', '--all-netns', '--view', 'processes', '--filter', String(h.pid)], { subcommand: 'top' });
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toMatch(new RegExp(`^${literal(ns)} +${h.pid} python3 +9 +8 +1 +0 +0 +0 +0$`, 'm'));
  });
});
