// `sockwatch list` end to end, as a child process of the compiled CLI.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { killCliProcesses, runCli as run } from './helpers/cli';
import { cleanupSockets, connect, eventually, pausedServer, waitAccepted } from './helpers/sockets';

afterAll(async () => {
  await killCliProcesses();
  await cleanupSockets();
});

describe('sockwatch list', () => {
  it('prints JSON lines with the required fields and exact queue values', async () => {
    const { port, accepted } = await pausedServer('::1');
    const c = await connect('::1', port);
    await waitAccepted(accepted, 1);
    c.write(Buffer.alloc(4321));
    const r = await eventually(
      () => run(['list', '--format', 'json', '--tcp', '-6', '--sport', String(port)]),
      (x) => x.stdout.includes('"recvQ":4321'),
    );
    expect(r.code).toBe(0);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    // by address and port on both ends: a port number alone can be another socket's on another address
    const conn = rows.find((x) => x.local === `[::1]:${port}` && x.remote === `[::1]:${c.localPort}`);
    expect(conn).toMatchObject({ proto: 'tcp', family: 'ipv6', state: 'established', local: `[::1]:${port}`, recvQ: 4321, sendQ: 0 });
    expect(conn.uid).toBe(process.getuid!());
    expect(conn.inode).toBeGreaterThan(0);
    expect(rows.filter((x) => x.state === 'listen' && x.local === `[::1]:${port}`)).toEqual([
      expect.objectContaining({ local: `[::1]:${port}`, remote: '[::]:0' }),
    ]);
  });

  it('prints a table by default and filters by state and queue size', async () => {
    const { port, accepted } = await pausedServer('127.0.0.1');
    const c = await connect('127.0.0.1', port);
    await waitAccepted(accepted, 1);
    c.write('x'.repeat(50));
    // A port number is per address: on a busy host other sockets (127.0.0.x, other tests or a
    // benchmark farm) may hold the same number, so only rows of 127.0.0.1:PORT are ours.
    const local = `127.0.0.1:${port}`;
    const table = await eventually(
      () => run(['list', '--state', 'established', '--tcp', '-4', '--sport', String(port)]),
      (x) => x.stdout.split('\n').some((l) => l.split(/\s+/)[4] === local && / 50 /.test(l)),
    );
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^Netid\s+State\s+Recv-Q\s+Send-Q\s+Local Address:Port\s+Peer Address:Port/);
    const ours = lines.slice(1).filter((l) => l.split(/\s+/)[4] === local);
    expect(ours, table.stdout).toHaveLength(1);
    expect(ours[0]).toMatch(new RegExp(`^tcp\\s+ESTABLISHED\\s+50\\s+0\\s+127\\.0\\.0\\.1:${port}\\s`));
    const jsonRows = (out: string) =>
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { local: string })
        .filter((r) => r.local === local);
    const big = await run(['list', '--format', 'json', '--sport', String(port), '--min-recv', '51']);
    expect(jsonRows(big.stdout)).toEqual([]);
    const small = await run(['list', '--format', 'json', '--sport', String(port), '--min-recv', '50']);
    expect(jsonRows(small.stdout)).toHaveLength(1);
  });

  it('the README main job works as written: npx sockwatch list', async () => {
    const root = path.join(__dirname, '..');
    const r = spawnSync('npx', ['--no-install', 'sockwatch', 'list', '--tcp', '--state', 'listen'], { cwd: root, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Netid\s+State\s+Recv-Q/);
  });

  it('prints help and exits 0', async () => {
    const r = await run(['list', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: sockwatch list/);
    const top = await run(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/list\s+list TCP and UDP sockets/);
  });

  it('the help lists exactly the state names an unknown state error lists', async () => {
    const bad = await run(['list', '--state', 'nonsense']);
    expect(bad.code).toBe(2);
    const known = /\(known: ([^)]*)\)/.exec(bad.stderr)![1]!.split(', ');
    expect(known).toContain('synchronized');
    const help = (await run(['list', '--help'])).stdout;
    const section = /--state LIST[^:]*:([\s\S]*?)\n  --sport/.exec(help)![1]!;
    expect(section.split(/[\s,]+/).filter(Boolean)).toEqual(known);
  });

  it.each([
    [['list', '--bogus'], /Unknown option '--bogus'/],
    [['list', '--state', 'sleepy'], /--state: unknown socket state "sleepy"/],
    [['list', '--sport', '99999'], /--sport: port 99999 is out of range/],
    [['list', '--min-recv', '-5'], /^sockwatch: --min-recv: "-5" must not be negative$/],
    [['list', '--min-recv', '-1'], /^sockwatch: --min-recv: "-1" must not be negative$/],
    [
      ['list', '--min-recv', '1x'],
      /--min-recv: "1x" is not a non-negative integer with an optional unit k, m or g \(like 512, 64k, 1m, 2g\)/,
    ],
    [['list', '--min-send', 'lots'], /--min-send: "lots" is not a non-negative integer/],
    [['list', '--format', 'xml'], /--format: expected table or json, got "xml"/],
    [['list', '--netns', 'nope-not-here'], /--netns: \/var\/run\/netns\/nope-not-here does not exist/],
    [['frobnicate'], /unknown command "frobnicate"/],
  ])('%j exits 2 with one line naming the input', async (args, msg) => {
    const r = await run(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(msg);
  });
});
