// `sockwatch exporter` end to end: the compiled CLI on a free loopback port, real sockets with known
// destinations and queues (each test on a 127.X.Y.Z/29 of its own, selected with --src/--dst,
// so that other files' sockets, scanned concurrently, and TIME_WAIT sockets of earlier tests and runs
// cannot change the counts), matched by address and port; OpenMetrics negotiation; scans coalesced (counted by the scan-duration histogram's
// _count, one per kernel scan); promtool check metrics; bad input.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { registerMetrics } from '../lib/metrics/register';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, runCli } from './helpers/cli';
import { fetchUrl, parseSamples, scrape, startServing, valueOf, samplesOf, type Sample } from './helpers/metrics';
import { ownLoopbackNet } from './helpers/own-address';
import { acceptingServer, cleanupSockets, connect, pausedServer, waitAccepted } from './helpers/sockets';

let NET: string[] = [];
let SERVER = '';
let CLIENT = '';
/** Fresh loopback addresses for each test (a /29 of its own). */
function freshNet(): void {
  const own = ownLoopbackNet();
  NET = ['--src', own.cidr, '--dst', own.cidr];
  SERVER = own.host(1);
  CLIENT = own.host(2);
}
beforeEach(freshNet);

afterEach(async () => {
  await killCliProcesses();
  await runCleanups();
  await cleanupSockets();
});
afterAll(cleanupSockets);

describe('sockwatch exporter', () => {
  it('counts known outbound connections per destination, with the snat rule, top N and other', async () => {
    const a = await acceptingServer(SERVER);
    const b = await acceptingServer(SERVER);
    for (let i = 0; i < 3; i++) await connect(SERVER, a.port, CLIENT);
    // Two of them over IPv6 sockets to the IPv4-mapped address: merged into the IPv4 destination.
    const dual = net.createServer((s) => s.on('error', () => undefined));
    dual.listen(0, '::');
    await new Promise((r) => dual.once('listening', r));
    const dualPort = (dual.address() as net.AddressInfo).port;
    for (let i = 0; i < 2; i++) await connect(`::ffff:${SERVER}`, dualPort, `::ffff:${CLIENT}`);
    await connect(SERVER, b.port, CLIENT);
    await waitAccepted(a.accepted, 3);

    const { url } = await startServing([
      'exporter',
      '--listen',
      '127.0.0.1:0',
      ...NET,
      '--top',
      '2',
      '--exclude-ports',
      `${a.port},${b.port},${dualPort}`,
    ]);
    const s = await scrape(url);
    expect(valueOf(s, 'sockwatch_outbound_connections', { destination: `${SERVER}:${a.port}` })).toBe(3);
    expect(
      valueOf(s, 'sockwatch_outbound_connections', { destination: `${SERVER}:${dualPort}` }),
      JSON.stringify(samplesOf(s, 'sockwatch_outbound_connections')),
    ).toBe(2);
    // --top 2: the third destination is in "other"; the accepted sides are on excluded local ports.
    expect(valueOf(s, 'sockwatch_outbound_connections', { destination: `${SERVER}:${b.port}` })).toBeUndefined();
    expect(valueOf(s, 'sockwatch_outbound_connections', { destination: 'other' })).toBe(1);
    expect(samplesOf(s, 'sockwatch_outbound_connections')).toHaveLength(3);
    expect(valueOf(s, 'sockwatch_outbound_connections_distinct_240s', { destination: `${SERVER}:${a.port}` })).toBe(3);
    expect(valueOf(s, 'sockwatch_outbound_connections_distinct_240s', { destination: 'other' })).toBe(1);
    // Without --exclude-ports the accepted sides count as well (their remote is the client's port).
    const all = await startServing(['exporter', '--listen', '127.0.0.1:0', ...NET, '--top', '50']);
    const s2 = await scrape(all.url);
    const clientPorts = samplesOf(s2, 'sockwatch_outbound_connections').filter((x) => x.labels.destination?.startsWith(`${CLIENT}:`));
    expect(clientPorts.reduce((n, x) => n + x.value, 0)).toBe(6);
    dual.close();
  });

  it('states per protocol and family, queue histograms and sockets over the thresholds', async () => {
    const { port, accepted } = await pausedServer(SERVER);
    const c = await connect(SERVER, port, CLIENT);
    await waitAccepted(accepted, 1);
    c.write(Buffer.alloc(10_000, 1));
    const { url } = await startServing([
      'exporter',
      '--listen',
      '127.0.0.1:0',
      ...NET,
      '--recv-threshold',
      '5000',
      '--send-threshold',
      '1m',
    ]);
    let s = await scrape(url);
    for (let i = 0; i < 100 && valueOf(s, 'sockwatch_queue_bytes_sum', { protocol: 'tcp', queue: 'recv' }) !== 10_000; i++) {
      await new Promise((r) => setTimeout(r, 1100)); // the kernel settles; scans are reused for 1 s
      s = await scrape(url);
    }
    expect(valueOf(s, 'sockwatch_sockets', { protocol: 'tcp', family: 'ipv4', state: 'established' })).toBe(2);
    const bucket = (le: string): number | undefined => valueOf(s, 'sockwatch_queue_bytes_bucket', { protocol: 'tcp', queue: 'recv', le });
    expect(valueOf(s, 'sockwatch_queue_bytes_count', { protocol: 'tcp', queue: 'recv' })).toBe(2);
    expect(valueOf(s, 'sockwatch_queue_bytes_sum', { protocol: 'tcp', queue: 'recv' })).toBe(10_000);
    expect([bucket('0'), bucket('4096'), bucket('16384'), bucket('+Inf')]).toEqual([1, 1, 2, 2]);
    const over = samplesOf(s, 'sockwatch_queue_over_threshold_sockets', { queue: 'recv' });
    expect(over.reduce((n, x) => n + x.value, 0)).toBe(1);
    expect(samplesOf(s, 'sockwatch_queue_over_threshold_sockets', { queue: 'send' }).every((x) => x.value === 0)).toBe(true);
  });

  it('reports the fullest listeners with their accept queue and backlog', async () => {
    const py = spawnSync('python3', ['-c', 'print(1)']);
    expect(py.status).toBe(0);
    const { python } = await import('./helpers/sockets');
    const l = await python(`
import socket, time
s = socket.socket(); s.bind(('${SERVER}', 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
time.sleep(3600)
`);
    await connect(SERVER, l.port);
    await connect(SERVER, l.port);
    // --src only (a listener's remote is 0.0.0.0, outside --dst): the top listeners of the whole host
    // could leave this one out when other tests hold fuller ones.
    const { url } = await startServing(['exporter', '--listen', '127.0.0.1:0', '--src', `${SERVER}/32`]);
    const s = await scrape(url);
    expect(valueOf(s, 'sockwatch_listen_accept_queue', { local: `${SERVER}:${l.port}` })).toBe(2);
    expect(valueOf(s, 'sockwatch_listen_backlog', { local: `${SERVER}:${l.port}` })).toBe(1);
  });

  it('distinct_240s{destination="other"} remembers a connection of a destination outside the top after it is gone', async () => {
    const a = await acceptingServer(SERVER);
    const b = await acceptingServer(SERVER);
    const c = await acceptingServer(SERVER);
    for (let i = 0; i < 2; i++) await connect(SERVER, a.port, CLIENT);
    for (let i = 0; i < 2; i++) await connect(SERVER, b.port, CLIENT);
    const third = await connect(SERVER, c.port, CLIENT);
    await waitAccepted(c.accepted, 1);
    const { url } = await startServing([
      'exporter',
      '--listen',
      '127.0.0.1:0',
      ...NET,
      '--top',
      '2',
      '--min-interval',
      '0',
      '--exclude-ports',
      `${a.port},${b.port},${c.port}`,
    ]);
    const before = await scrape(url);
    expect(valueOf(before, 'sockwatch_outbound_connections', { destination: 'other' })).toBe(1);
    expect(valueOf(before, 'sockwatch_outbound_connections_distinct_240s', { destination: 'other' })).toBe(1);
    // A reset, not a close: no TIME_WAIT socket (which would keep the cookie and still count).
    third.resetAndDestroy();
    // Until a scan that saw the other connections (a's two) and no longer the reset one.
    const gone = (x: Sample[]): boolean =>
      valueOf(x, 'sockwatch_outbound_connections', { destination: `${SERVER}:${a.port}` }) === 2 &&
      valueOf(x, 'sockwatch_outbound_connections', { destination: 'other' }) === 0;
    let after = await scrape(url);
    for (let i = 0; i < 100 && !gone(after); i++) {
      await new Promise((r) => setTimeout(r, 50));
      after = await scrape(url);
    }
    const shown = JSON.stringify(after.filter((x) => /^sockwatch_(outbound|scan_errors|sockets)/.test(x.name)));
    expect(gone(after), shown).toBe(true);
    // Its cookie came back with the index "other" (aggregates.length) and stays in the 240 s window.
    expect(valueOf(after, 'sockwatch_outbound_connections_distinct_240s', { destination: 'other' }), shown).toBe(1);
    expect(valueOf(after, 'sockwatch_outbound_connections_distinct_240s', { destination: `${SERVER}:${a.port}` })).toBe(2);
  });

  it('serves OpenMetrics when the scraper asks for it, Prometheus text otherwise; /healthz, 404, 405', async () => {
    const { url } = await startServing(['exporter', '--listen', '[::1]:0', ...NET]);
    expect(url).toMatch(/^http:\/\/\[::1\]:\d+\/metrics$/);
    const text = await fetchUrl(url);
    expect(text.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(text.body).toContain('# TYPE sockwatch_scan_errors_total counter');
    expect(text.body).not.toContain('# EOF');
    // Prometheus' own Accept header.
    const accept =
      'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
    const om = await fetchUrl(url, { headers: { accept } });
    expect(om.headers['content-type']).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8');
    expect(om.body).toContain('# TYPE sockwatch_scan_errors counter');
    expect(om.body.endsWith('# EOF\n')).toBe(true);
    expect(parseSamples(om.body.replace('# EOF\n', '')).length).toBeGreaterThan(0);
    // After an OpenMetrics scrape, the text format still names the counter with _total.
    expect((await fetchUrl(url)).body).toContain('# TYPE sockwatch_scan_errors_total counter');
    const base = url.replace(/\/metrics$/, '');
    expect((await fetchUrl(`${base}/healthz`)).body).toBe('ok\n');
    expect((await fetchUrl(`${base}/nope`)).status).toBe(404);
    expect((await fetchUrl(url, { method: 'POST' })).status).toBe(405);
  });

  it('coalesces scans: concurrent scrapes share one, a result younger than --min-interval is reused', async () => {
    const { url } = await startServing(['exporter', '--listen', '127.0.0.1:0', ...NET, '--min-interval', '1h']);
    const scans = async (): Promise<number | undefined> => valueOf(await scrape(url), 'sockwatch_scan_duration_seconds_count');
    const results = await Promise.all(Array.from({ length: 20 }, () => fetchUrl(url)));
    expect(results.map((r) => valueOf(parseSamples(r.body), 'sockwatch_scan_duration_seconds_count'))).toEqual(Array(20).fill(1));
    expect(await scans()).toBe(1);
    const every = await startServing(['exporter', '--listen', '127.0.0.1:0', ...NET, '--min-interval', '0']);
    await scrape(every.url);
    await scrape(every.url);
    expect(valueOf(await scrape(every.url), 'sockwatch_scan_duration_seconds_count')).toBe(3);
  });

  it('registerMetrics: the same metrics on a caller’s prom-client registry, one scan per scrape round', async () => {
    const registry = new Registry();
    const handle = registerMetrics(registry, { minIntervalMs: 60_000, localAddresses: [`${SERVER}/32`] });
    const [a, b] = await Promise.all([registry.metrics(), registry.metrics()]);
    expect(handle.scans).toBe(1);
    expect(a).toBe(b);
    expect(a).toContain('# TYPE sockwatch_queue_bytes histogram');
    expect(handle.names).toContain('sockwatch_outbound_connections');
    await handle.close();
    expect(await registry.metrics()).not.toContain('sockwatch_');
  });

  it('passes promtool check metrics', async () => {
    if (spawnSync('promtool', ['--version']).status !== 0) return expect.fail('promtool is missing (Debian package prometheus)');
    await connect(SERVER, (await acceptingServer(SERVER)).port, CLIENT);
    const { url } = await startServing(['exporter', '--listen', '127.0.0.1:0', '--recv-threshold', '1k']);
    const body = (await fetchUrl(url)).body;
    const r = spawnSync('promtool', ['check', 'metrics'], { input: body });
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
  });

  it("serves the process's own metrics: RSS, CPU, open descriptors and start time of the exporter itself", async () => {
    const before = Date.now() / 1000;
    const { cli, url } = await startServing(['exporter', '--listen', '127.0.0.1:0', ...NET]);
    const s = await scrape(url);
    const pid = cli.child.pid!;
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) * 1024;
    // the exporter's own figures, not this test process's: compared with what /proc says of its pid
    expect(valueOf(s, 'process_resident_memory_bytes')).toBeGreaterThan(rss * 0.5);
    expect(valueOf(s, 'process_resident_memory_bytes')).toBeLessThan(rss * 2);
    // counted while it answered (the scrape's own connection open): within a few of /proc's count now
    expect(Math.abs(valueOf(s, 'process_open_fds')! - fs.readdirSync(`/proc/${pid}/fd`).length)).toBeLessThanOrEqual(3);
    expect(valueOf(s, 'process_start_time_seconds')).toBeGreaterThanOrEqual(Math.floor(before) - 1);
    expect(valueOf(s, 'process_start_time_seconds')).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000)); // whole seconds, rounded
    expect(valueOf(s, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(valueOf(s, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    // prom-client's gauges named …_total fail promtool's lint: left out
    expect(s.filter((x) => x.name === 'nodejs_active_handles_total')).toEqual([]);
  });

  it('stops cleanly on SIGTERM', async () => {
    const { cli } = await startServing(['exporter', '--listen', '127.0.0.1:0', ...NET]);
    cli.child.kill('SIGTERM');
    const r = await cli.exited;
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('stopped (SIGTERM)');
  });

  it.each([
    ['an unparsable --listen', ['--listen', 'localhost'], '--listen: "localhost" is not HOST:PORT'],
    ['a port above 65535', ['--listen', '127.0.0.1:70000'], 'port above 65535'],
    ['--top 0', ['--top', '0'], '--top must be an integer from 1'],
    ['a bad --min-interval', ['--min-interval', '5x'], '--min-interval: "5x" is not a duration'],
    ['a bad --exclude-ports', ['--exclude-ports', '99999'], '--exclude-ports'],
    ['a bad --dst', ['--dst', '10.0.0.0/33'], '--dst'],
  ])('exits 2 with one line on %s', async (_what, args, text) => {
    const r = await runCli(['exporter', ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(text);
  });

  it('exits 2 with one line when the port is taken', async () => {
    const taken = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => taken.once('listening', r));
    const port = (taken.address() as net.AddressInfo).port;
    const r = await runCli(['exporter', '--listen', `127.0.0.1:${port}`]);
    taken.close();
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`sockwatch: --listen 127.0.0.1:${port}: cannot listen: the address is already in use (EADDRINUSE)`);
  });
});
