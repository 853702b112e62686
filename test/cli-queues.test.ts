// `sockwatch queues` end to end: the compiled CLI as a child process, real sockets with queues
// above the thresholds, a real HTTP receiver on 127.0.0.1. Short intervals and backoffs; no
// assertion depends on how long anything took.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, runCli, startCli, type CliOptions, type CliProcess } from './helpers/cli';
import { freePort, receiver } from './helpers/http-receiver';
import { ownLoopbackAddress } from './helpers/own-address';
import { cleanupSockets, connect, neverAcceptingListener, unreadConnection as offender, unreadConnections } from './helpers/sockets';
import { tmpDir } from './helpers/tmp';
import { sleep, waitFor } from './helpers/wait';

const selfComm = fs.readFileSync('/proc/self/comm', 'utf8').trim();
const FAST = ['--interval', '20', '--backoff-base', '20', '--backoff-cap', '200'];
/** The offenders' address: a port number alone can be another test's socket on another address (127.x, or a
 * client's shared ephemeral port), whose queue would alert here too. */
const SRC = ['--src', '127.0.0.1'];

afterEach(async () => {
  await killCliProcesses();
  await runCleanups();
});
afterAll(cleanupSockets);

const QUEUES: CliOptions = { subcommand: 'queues', cwd: os.tmpdir() };
const start = (args: string[]): CliProcess => startCli(args, QUEUES);
const run = (args: string[]) => runCli(args, QUEUES);

/** The id at the end of a human alert line. */
const idOf = (line: string): string => / id ([0-9a-f]{32})$/.exec(line)?.[1] ?? '';

async function stopWith(c: CliProcess, signal: NodeJS.Signals): Promise<number | null> {
  c.child.kill(signal);
  return (await c.exited).code;
}

describe('sockwatch queues without --url', () => {
  it('prints one JSON line per alert and exits 0 on SIGTERM', async () => {
    const o = await offender('127.0.0.1', 3000);
    const c = start([
      '--recv-threshold',
      '1000',
      '--send-threshold',
      'off',
      '--tcp',
      '--sport',
      String(o.port),
      ...SRC,
      ...FAST.slice(0, 2),
    ]);
    await c.waitFor('an alert line', (l) => l.length >= 1);
    const a = JSON.parse(c.lines[0]);
    expect(a).toMatchObject({
      event: 'alert',
      type: 'RECV',
      bytes: 3000,
      threshold: 1000,
      local: `127.0.0.1:${o.port}`,
      remote: `127.0.0.1:${o.clientPort}`,
      proto: 'tcp',
      state: 'established',
      host: os.hostname(),
      pid: process.pid,
      comm: selfComm,
      repeat: 0,
      family: 'ipv4',
    });
    expect(typeof a.ts).toBe('number');
    expect(a.id).toMatch(/^[0-9a-f]{32}$/);
    expect(await stopWith(c, 'SIGTERM')).toBe(0);
    expect(c.stderr()).toMatch(
      /^sockwatch: watching queues every 20 ms \(recv > 1000 B, accept queue at backlog limit\); alerts as JSON lines on stdout$/m,
    );
    expect(c.lines).toHaveLength(1);
  });

  it('reports resolved events with --notify-resolved and exits 0 on SIGINT', async () => {
    const o = await offender('127.0.0.1', 3000);
    const c = start([
      '--recv-threshold',
      '1k',
      '--notify-resolved',
      '--no-pid',
      '--tcp',
      '--sport',
      String(o.port),
      ...SRC,
      '--interval',
      '20',
    ]);
    await c.waitFor('the alert', (l) => l.length >= 1);
    o.drain();
    await c.waitFor('the resolved event', (l) => l.length >= 2);
    const [alert, resolved] = c.lines.map((l) => JSON.parse(l));
    expect(resolved).toMatchObject({ event: 'resolved', type: 'RECV', bytes: 0, threshold: 1024, since: alert.ts, cookie: alert.cookie });
    expect(alert.pid).toBeUndefined(); // --no-pid
    expect(alert.comm).toBeUndefined();
    expect(await stopWith(c, 'SIGINT')).toBe(0);
  });

  it('reports an offender storm on stderr with counts, within the caps', async () => {
    const holder = await unreadConnections(400, 1024);
    const c = start([
      '--recv-threshold',
      '0',
      '--tcp',
      '--sport',
      String(holder.port),
      ...SRC,
      '--state',
      'established',
      '--max-records',
      '100',
      '--max-alerts-per-tick',
      '30',
      '--interval',
      '20',
    ]);
    await c.waitFor('100 alerts', (l) => l.length >= 100);
    await sleep(200);
    expect(c.lines).toHaveLength(100); // one per tracked socket, none beyond --max-records
    expect(await stopWith(c, 'SIGTERM')).toBe(0);
    const storm =
      /offender storm: (\d+) offending sockets in the last sample; (\d+) offender observations not tracked \(over --max-records\), (\d+) alerts deferred/.exec(
        c.stderr(),
      );
    expect(storm, c.stderr()).not.toBeNull();
    expect(Number(storm![1])).toBeGreaterThanOrEqual(395); // a dump is not a snapshot: one may miss a socket
    expect(Number(storm![1])).toBeLessThanOrEqual(400);
    expect(Number(storm![2])).toBeGreaterThanOrEqual(300);
    expect(Number(storm![3])).toBeGreaterThan(0);
  });
});

describe('sockwatch queues --url', () => {
  it('sends a GET with the exact query parameters, keeps the URL query, never prints its secrets', async () => {
    const rx = await receiver();
    const o = await offender('::1', 4000);
    const l = await neverAcceptingListener('127.0.0.1', 1);
    await connect('127.0.0.1', l.port);
    const dir = tmpDir('cli-queues');
    const url = `http://user:hunter2@127.0.0.1:${rx.port}/hook?team=a&token=s3cret`;
    const c = start([
      '--url',
      url,
      '--state-dir',
      dir,
      '--recv-threshold',
      '1000',
      '--sport',
      `${o.port},${l.port}`,
      '--src',
      '::1,127.0.0.1',
      ...FAST,
    ]);
    await rx.waitFor((r) => r.length >= 2, 20_000, 'the RECV and ACCEPT alerts');
    await c.waitFor('two human lines', (ls) => ls.length >= 2);
    expect(await stopWith(c, 'SIGTERM')).toBe(0);

    const recv = rx.requests.find((r) => r.query.some(([k, v]) => k === 'type' && v === 'RECV'))!;
    expect(recv.method).toBe('GET');
    expect(recv.path).toBe('/hook');
    expect(recv.headers.authorization).toBe(`Basic ${Buffer.from('user:hunter2').toString('base64')}`);
    const q = recv.query;
    expect(q.map(([k]) => k)).toEqual([
      'team',
      'token',
      'ts',
      'type',
      'bytes',
      'threshold',
      'local',
      'remote',
      'proto',
      'state',
      'host',
      'pid',
      'comm',
      'id',
      'event',
    ]);
    const p = Object.fromEntries(q);
    expect(p).toMatchObject({
      team: 'a',
      token: 's3cret',
      type: 'RECV',
      bytes: '4000',
      threshold: '1000',
      local: `[::1]:${o.port}`,
      remote: `[::1]:${o.clientPort}`,
      proto: 'tcp',
      state: 'established',
      host: os.hostname(),
      pid: String(process.pid),
      comm: selfComm,
      event: 'alert',
    });
    expect(p.ts).toMatch(/^\d{10}\.\d{6}$/);
    expect(p.id).toMatch(/^[0-9a-f]{32}$/);

    const accept = Object.fromEntries(rx.requests.find((r) => r.query.some(([k, v]) => k === 'type' && v === 'ACCEPT'))!.query);
    expect(accept).toMatchObject({
      bytes: '1',
      threshold: '1',
      local: `127.0.0.1:${l.port}`,
      remote: '0.0.0.0:0',
      state: 'listen',
      pid: String(l.pid),
      comm: 'python3',
    });

    // One human line per alert on stdout, carrying the id; secrets nowhere in the output.
    expect(c.lines.map(idOf).sort()).toEqual([p.id, accept.id].sort());
    expect(c.lines.find((x) => idOf(x) === p.id)).toMatch(
      / ALERT RECV recv 4000 B > 1000 tcp established \[::1\]:\d+ \[::1\]:\d+ pid \d+ \(.+\) id /,
    );
    const output = c.lines.join('\n') + c.stderr();
    expect(output).not.toContain('s3cret');
    expect(output).not.toContain('hunter2');
    expect(c.stderr()).toContain(`alerts to http://REDACTED:REDACTED@127.0.0.1:${rx.port}/hook?team=a&token=REDACTED`);
  });

  it('retries 500 with backoff until a 200, same id and ts every time; --quiet prints nothing', async () => {
    const rx = await receiver({ replies: [500, 503] });
    const o = await offender('127.0.0.1', 3000);
    const c = start([
      '--url',
      `${rx.url}/a`,
      '--state-dir',
      tmpDir('cli-queues'),
      '--recv-threshold',
      '1000',
      '--repeat',
      '0',
      '--sport',
      String(o.port),
      ...SRC,
      '--quiet',
      ...FAST,
    ]);
    await rx.waitFor((r) => r.some((x) => x.reply === 200), 20_000, 'a 200');
    expect(await stopWith(c, 'SIGTERM')).toBe(0);
    expect(rx.requests.map((r) => r.reply)).toEqual([500, 503, 200]);
    expect(new Set(rx.requests.map((r) => r.rawQuery)).size).toBe(1);
    expect(c.lines).toEqual([]);
    expect(c.stderr()).toMatch(/delivery to http:\/\/127\.0\.0\.1:\d+\/a failing \(HTTP 500\); retrying with backoff/);
    expect(c.stderr()).toMatch(/delivery to .* recovered/);
  });

  it('times out a receiver that never answers, then delivers', async () => {
    const rx = await receiver({ replies: ['hang'] });
    const o = await offender('127.0.0.1', 3000);
    const c = start([
      '--url',
      rx.url,
      '--state-dir',
      tmpDir('cli-queues'),
      '--recv-threshold',
      '1000',
      '--timeout',
      '200',
      '--sport',
      String(o.port),
      ...SRC,
      ...FAST,
    ]);
    await rx.waitFor((r) => r.some((x) => x.reply === 200), 20_000, 'a 200 after the hang');
    expect(await stopWith(c, 'SIGTERM')).toBe(0);
    expect(rx.requests.map((r) => r.reply)).toEqual(['hang', 200]);
    expect(rx.requests[0].rawQuery).toBe(rx.requests[1].rawQuery);
    expect(c.stderr()).toMatch(/failing \(no complete response within 200 ms\)/);
  });

  it('dead-letters a 4xx answer with the reason and does not retry it', async () => {
    const rx = await receiver({ replies: [{ status: 404, body: 'no such hook' }] });
    const o = await offender('127.0.0.1', 3000);
    const dir = tmpDir('cli-queues');
    const c = start(['--url', rx.url, '--state-dir', dir, '--recv-threshold', '1000', '--sport', String(o.port), ...SRC, ...FAST]);
    await rx.waitForRequests(1);
    await c.waitFor('the alert line', (l) => l.length >= 1);
    const deadFile = path.join(dir, 'dead-letter.jsonl');
    await waitFor('the dead letter', () => fs.existsSync(deadFile) && fs.readFileSync(deadFile, 'utf8').endsWith('\n'), {
      detail: () => c.stderr(),
    });
    await sleep(200); // room for a wrong retry to show
    expect(await stopWith(c, 'SIGTERM')).toBe(0);
    expect(rx.requests).toHaveLength(1);
    const dead = fs
      .readFileSync(deadFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ id: idOf(c.lines[0]), reason: { status: 404, body: 'no such hook' } });
    expect(c.stderr()).toMatch(/receiver refused alert [0-9a-f]{32} with HTTP 404; written to .*dead-letter\.jsonl/);
  });

  it('receiver down, then up: every alert arrives', async () => {
    const host = ownLoopbackAddress(); // the receiver's port, free until it listens, on an address of this test's own
    const port = await freePort(host);
    const o = await offender('127.0.0.1', 3000);
    const c = start([
      '--url',
      `http://${host}:${port}/`,
      '--state-dir',
      tmpDir('cli-queues'),
      '--recv-threshold',
      '1000',
      '--repeat',
      '0.1',
      '--sport',
      String(o.port),
      ...SRC,
      ...FAST,
    ]);
    await c.waitFor('four alerts while the receiver is down', (l) => l.length >= 4);
    const printed = () => c.lines.map(idOf);
    const whileDown = printed();
    const rx = await receiver({ host, port });
    await rx.waitFor(() => printed().every((id) => rx.values('id').includes(id)), 20_000, 'every printed alert');
    expect(await stopWith(c, 'SIGTERM')).toBe(0);
    // Those printed while the receiver was down arrived. (A repeat printed between the wait above and
    // SIGTERM may stay in the outbox for the next start: that is the SIGTERM test's case, not this one.)
    const received = new Set(rx.values('id'));
    for (const id of whileDown) expect(received.has(id)).toBe(true);
    expect(c.stderr()).toMatch(/failing \(connect ECONNREFUSED/);
  });

  it('a dead receiver: sampling goes on, the outbox stays bounded and reports what it drops', async () => {
    const host = ownLoopbackAddress(); // the receiver's port, free until it listens, on an address of this test's own
    const port = await freePort(host);
    const o = await offender('127.0.0.1', 3000);
    const c = start([
      '--url',
      `http://${host}:${port}/`,
      '--state-dir',
      tmpDir('cli-queues'),
      '--recv-threshold',
      '1000',
      '--repeat',
      '0.05',
      '--outbox-max-records',
      '3',
      '--sport',
      String(o.port),
      ...SRC,
      ...FAST,
    ]);
    await c.waitFor('ten alerts while the receiver is down', (l) => l.length >= 10);
    expect(await stopWith(c, 'SIGTERM')).toBe(0);
    const dropped = /outbox full \(maxRecords\): dropped (\d+) oldest undelivered alert\(s\), (\d+) in total/.exec(c.stderr());
    expect(dropped, c.stderr()).not.toBeNull();
    expect(c.stderr()).toMatch(/stopped \(SIGTERM\); 3 undelivered alert\(s\) kept in /);
  });

  it('SIGTERM keeps undelivered alerts; the next start delivers them with the original ts', async () => {
    const host = ownLoopbackAddress(); // the receiver's port, free until it listens, on an address of this test's own
    const port = await freePort(host);
    const o = await offender('127.0.0.1', 3000);
    const dir = tmpDir('cli-queues');
    const args = [
      '--url',
      `http://${host}:${port}/`,
      '--state-dir',
      dir,
      '--recv-threshold',
      '1000',
      '--repeat',
      '0',
      '--sport',
      String(o.port),
      ...SRC,
      ...FAST,
    ];
    const first = start(args);
    await first.waitFor('the alert', (l) => l.length >= 1);
    expect(await stopWith(first, 'SIGTERM')).toBe(0);
    expect(first.stderr()).toMatch(/stopped \(SIGTERM\); 1 undelivered alert\(s\) kept in /);
    const id = idOf(first.lines[0]);
    const isoTs = first.lines[0].split(' ')[0];

    o.close(); // no new alerts: only the kept one can arrive
    const rx = await receiver({ host, port });
    const second = start(args);
    await rx.waitFor((r) => r.length >= 1, 20_000, 'the kept alert');
    expect(await stopWith(second, 'SIGTERM')).toBe(0);
    expect(second.stderr()).toMatch(/1 undelivered alert\(s\) from an earlier run: delivering them first/);
    const p = Object.fromEntries(rx.requests[0].query);
    expect(p.id).toBe(id);
    const secs = Number(p.ts);
    const whole = Math.floor(secs);
    expect(`${new Date(whole * 1000).toISOString().slice(0, 19)}.${p.ts.split('.')[1]}Z`).toBe(isoTs);
    expect(second.lines).toEqual([]);
  });
});

describe('sockwatch queues: bad input exits 2 with one line naming it', () => {
  const file = path.join(os.tmpdir(), `sockwatch-not-a-dir-${process.pid}`);
  fs.writeFileSync(file, 'x');
  afterAll(() => fs.rmSync(file, { force: true }));
  const URL_OK = 'http://127.0.0.1:9/';

  it.each([
    [['--bogus'], /Unknown option '--bogus'/],
    [['extra'], /Unexpected argument 'extra'/],
    [['--recv-threshold', '-5'], /^sockwatch: --recv-threshold: "-5" must not be negative$/],
    [['--recv-threshold=-5'], /^sockwatch: --recv-threshold: "-5" must not be negative$/],
    [['--repeat', '-1'], /^sockwatch: --repeat: "-1" must not be negative$/],
    [['--accept-threshold', '-1'], /^sockwatch: --accept-threshold: "-1" must not be negative$/],
    [['--max-records', '4294967296'], /--max-records must be an integer from 1 to 4294967295 \(got 4294967296\)/],
    [['--recv-threshold', '1x'], /--recv-threshold: "1x" is not a non-negative integer with an optional unit k, m or g/],
    [['--send-threshold', 'lots'], /--send-threshold: "lots" is not a non-negative integer/],
    [['--send-threshold', '1.5m'], /--send-threshold: "1.5m" is not a non-negative integer/],
    [['--accept-threshold', 'many'], /--accept-threshold: "many" is not a number of connections, "limit" or "off"/],
    [['--recv-threshold', 'off', '--send-threshold', 'off', '--accept-threshold', 'off'], /all off: nothing to watch/],
    [['--url', 'ftp://user:pw@example.com/x'], /--url: must be http or https, got ftp:\/\/REDACTED:REDACTED@example\.com\/x/],
    [['--url', 'not a url'], /--url: "not a url" is not a valid URL/],
    // FILE stands for a regular file made by this test (its path differs per run; test names must not).
    [['--url', URL_OK, '--state-dir', 'FILE/state'], /--state-dir: .*sockwatch-not-a-dir-\d+ exists and is not a directory$/],
    [
      ['--url', URL_OK, '--state-dir', '/sys/sockwatch-state'],
      /--state-dir: \/sys\/sockwatch-state is under \/sys, a kernel pseudo file system/,
    ],
    [['--state-dir', '/tmp/x'], /--state-dir needs --url/],
    [['--url', URL_OK, '--state-dir', ''], /--state-dir: expected a directory, got ""/],
    [['--quiet'], /--quiet needs --url/],
    [['--confirm', '3/2'], /--confirm: N must be from 1 to M \(2\), got 3/],
    [['--confirm', '0/1'], /--confirm: N must be from 1 to M \(1\), got 0/],
    [['--confirm', '1/33'], /--confirm: M must be from 1 to 32, got 33/],
    [['--confirm', 'often'], /--confirm: "often" is not N\/M/],
    [['--interval', '5'], /--interval must be an integer of at least 10 \(got 5\)/],
    [['--interval', 'fast'], /--interval: "fast" is not a non-negative integer/],
    [['--repeat', 'soon'], /--repeat: "soon" is not a non-negative number of seconds/],
    [['--max-alerts-per-tick', '0'], /--max-alerts-per-tick must be an integer of at least 1 \(got 0\)/],
    [['--max-records', 'x'], /--max-records: "x" is not a non-negative integer/],
    [['--url', URL_OK, '--backoff-base', '500', '--backoff-cap', '100'], /--backoff-cap: 100 is below the backoff base 500/],
    [['--state', 'sleepy'], /--state: unknown socket state "sleepy"/],
    [['--sport', '99999'], /--sport: port 99999 is out of range/],
  ])('%j', async (args, msg) => {
    const r = await run(args.map((a) => a.replace(/^FILE\//, `${file}/`)));
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^sockwatch: /);
    expect(lines[0]).toMatch(msg);
  });

  it('a state directory in use by another instance', async () => {
    const dir = tmpDir('cli-queues');
    const rx = await receiver();
    const first = start(['--url', rx.url, '--state-dir', dir, '--interval', '20']);
    await waitFor('the first instance to start watching', () => /watching queues/.test(first.stderr()));
    const second = await run(['--url', rx.url, '--state-dir', dir]);
    expect(second.code).toBe(2);
    expect(second.stderr.trim().split('\n')).toHaveLength(1);
    expect(second.stderr).toMatch(new RegExp(`--state-dir: state directory .* is in use by process ${first.child.pid}`));
    expect(await stopWith(first, 'SIGTERM')).toBe(0);
  });

  it('--help exits 0', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: sockwatch queues/);
    expect(r.stdout).toMatch(/--recv-threshold BYTES/);
  });
});
