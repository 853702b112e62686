// A real Prometheus server (Debian's `prometheus`) started here on loopback with a generated config
// (scrape every second, storage in a temp dir, a free port) scrapes the exporter (--all-netns, so
// root and iproute2) and the test asks its HTTP API for the known sockets' destinations: connections on
// loopback addresses of the test's own (helpers/own-address.ts), and connections inside a namespace the test made.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses } from './helpers/cli';
import { fetchUrl, makeNetnsWithConnections, startServing, type TestNetns } from './helpers/metrics';
import { acceptingServer, cleanupSockets, connect } from './helpers/sockets';
import { ownLoopbackNet } from './helpers/own-address';
import { tmpDir } from './helpers/tmp';
import { sleep } from './helpers/wait';

const hasPrometheus = spawnSync('prometheus', ['--version']).status === 0;
const canNetns = process.getuid?.() === 0 && spawnSync('ip', ['-V']).status === 0;

/** A port free on `host` now (Prometheus binds it a moment later: on an address of this test's own, nothing else takes it meanwhile). */
async function freePort(host: string): Promise<number> {
  const s = net.createServer().listen(0, host);
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

interface QueryResult {
  metric: Record<string, string>;
  value: [number, string];
}

describe.skipIf(!hasPrometheus || !canNetns)('a real Prometheus server scraping the exporter', () => {
  let prometheus: ChildProcess | undefined;
  let api = '';
  let ns: TestNetns | undefined;
  let log = '';
  const own = ownLoopbackNet();
  let hostPort = 0;

  beforeAll(async () => {
    const a = await acceptingServer(own.host(1));
    hostPort = a.port;
    for (let i = 0; i < 4; i++) await connect(own.host(1), hostPort, own.host(2));
    ns = await makeNetnsWithConnections(`sw-prom-${process.pid}`, 3, 2);
    const exporter = await startServing(['exporter', '--listen', '127.0.0.1:0', '--all-netns', '--top', '1000']);
    const dir = tmpDir('prometheus data');
    const config = path.join(dir, 'prometheus.yml');
    fs.writeFileSync(
      config,
      `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sockwatch\n    static_configs:\n      - targets: ['127.0.0.1:${exporter.port}']\n`,
    );
    const port = await freePort(own.host(3));
    api = `http://${own.host(3)}:${port}/api/v1`;
    prometheus = spawn(
      'prometheus',
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${path.join(dir, 'tsdb')}`,
        `--web.listen-address=${own.host(3)}:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    prometheus.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  });

  afterAll(async () => {
    prometheus?.kill('SIGKILL');
    await killCliProcesses();
    await ns?.remove();
    await cleanupSockets();
    await runCleanups();
  });

  /** Runs an instant query until it returns something that passes `ok` (Prometheus scrapes every second). */
  async function query(q: string, ok: (r: QueryResult[]) => boolean): Promise<QueryResult[]> {
    let last: QueryResult[] = [];
    // Patient: on a loaded machine Prometheus starts slowly and a scrape of every namespace can miss
    // its 1 s timeout now and then (the next one, a second later, counts).
    const deadline = Date.now() + 40_000;
    while (Date.now() < deadline) {
      try {
        const r = await fetchUrl(`${api}/query?query=${encodeURIComponent(q)}`);
        if (r.status === 200) {
          last = (JSON.parse(r.body) as { data: { result: QueryResult[] } }).data.result;
          if (ok(last)) return last;
        }
      } catch {
        /* not up yet */
      }
      await sleep(100);
    }
    throw new Error(`query ${q}: got ${JSON.stringify(last)}; prometheus log: ${log.slice(-2000)}`);
  }

  it('finds the host’s and the namespace’s known destinations with the right counts', async () => {
    const up = await query('up{job="sockwatch"}', (r) => r.length === 1 && r[0]!.value[1] === '1');
    expect(up).toHaveLength(1);
    const host = await query(`sockwatch_outbound_connections{destination="${own.host(1)}:${hostPort}"}`, (r) => r.length === 1);
    expect(host[0]!.value[1]).toBe('4');
    const netns = String(ns!.inode);
    const v4 = await query(`sockwatch_outbound_connections{netns="${netns}",destination="127.0.0.1:${ns!.port4}"}`, (r) => r.length === 1);
    expect(v4[0]!.value[1]).toBe('3');
    const v6 = await query(`sockwatch_outbound_connections{netns="${netns}",destination="[::1]:${ns!.port6}"}`, (r) => r.length === 1);
    expect(v6[0]!.value[1]).toBe('2');
    const info = await query(`sockwatch_netns_info{netns="${netns}"}`, (r) => r.length === 1);
    expect(info[0]!.metric.comm).toBe('python3');
    // The queue histogram arrives as a histogram (buckets with le), scraped as OpenMetrics.
    const buckets = await query(
      `sockwatch_queue_bytes_bucket{netns="${netns}",protocol="tcp",queue="recv",le="+Inf"}`,
      (r) => r.length === 1,
    );
    expect(Number(buckets[0]!.value[1])).toBe(10);
  });
});
