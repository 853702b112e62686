// `snat --pid` and auto-selection against the classic SNAT bug, with every part real: the .NET fixture
// app in a network namespace of this test's own (unshare --net, lo up), serving HTTP on its loopback
// and requesting it with a new HttpClient per request (--churn), so its connections open and close
// between two polls and pile up in TIME_WAIT. Rule: the namespace is counted whole (attribution.ts);
// no traffic leaves the namespace.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listDotnetProcesses } from '../lib/dotnet/discovery';
import { chooseDotnetTarget } from '../lib/outbound/target';
import { Sampler } from '../lib/sampler';
import { killCliProcesses, runCli } from './helpers/cli';
import { dotnetSkipReason, hasDotnet, startDotnetApp, type DotnetApp } from './helpers/dotnet';
import { SNAT_ENV, jsonRecords, readLogs } from './helpers/snat';
import { acceptingServer, cleanupSockets } from './helpers/sockets';
import { tmpDir } from './helpers/tmp';
import { waitFor } from './helpers/wait';

function canUnshareNet(): boolean {
  return spawnSync('unshare', ['--net', 'ip', 'link', 'set', 'lo', 'up'], { timeout: 10_000 }).status === 0;
}
const ok = hasDotnet() && canUnshareNet();
if (!hasDotnet()) console.warn(`outbound-netns-dotnet.test.ts: ${dotnetSkipReason()}`);
else if (!ok) console.warn('outbound-netns-dotnet.test.ts: skipped: unshare --net needs root (CAP_SYS_ADMIN)');

/** The app's port inside its own namespace (nothing else listens there). */
const INNER_PORT = 8080;
/** A fresh network namespace with lo up; the fixture runs in --churn mode (an argument after its three). */
const NETNS_WRAPPER = ['unshare', '--net', 'sh', '-c', 'ip link set lo up && exec "$@" --churn', 'sh'];

/** TIME_WAIT sockets of the namespace of `pid` towards 127.0.0.1:INNER_PORT, as ss sees them. */
function ssTimeWait(pid: number): number {
  const r = spawnSync('nsenter', ['-t', String(pid), '-n', 'ss', '-Htan', 'state', 'time-wait', 'dst', `127.0.0.1:${INNER_PORT}`], {
    encoding: 'utf8',
  });
  const r6 = spawnSync(
    'nsenter',
    ['-t', String(pid), '-n', 'ss', '-Htan', 'state', 'time-wait', 'dst', `[::ffff:127.0.0.1]:${INNER_PORT}`],
    {
      encoding: 'utf8',
    },
  );
  return (r.stdout + r6.stdout).split('\n').filter((l) => l.trim() !== '').length;
}

describe.skipIf(!ok)('a .NET app in its own network namespace opening a new connection per request', () => {
  let tmp: string;
  let churn: DotnetApp;
  let holder: DotnetApp;
  let server: { port: number };
  const THRESHOLD = 40;

  beforeAll(async () => {
    tmp = tmpDir('snat-netns-');
    churn = await startDotnetApp('127.0.0.1', INNER_PORT, 0, { wrapper: NETNS_WRAPPER });
    // A second .NET app in our namespace holding a few connections of its own: auto-selection must
    // not prefer it (it scored the churning app 0 before).
    server = await acceptingServer('127.0.0.1');
    holder = await startDotnetApp('127.0.0.1', server.port, 3);
    await waitFor('TIME_WAIT sockets in the app namespace', () => ssTimeWait(churn.pid) > THRESHOLD * 2, { ms: 30_000, everyMs: 250 });
  }, 240_000);

  afterAll(async () => {
    await killCliProcesses();
    await churn?.stop();
    await holder?.stop();
    await cleanupSockets();
  });

  it('snat --pid counts its namespace: the destination with its TIME_WAIT count over the threshold', async () => {
    const logDir = path.join(tmp, 'pid');
    const r = await runCli(['-t', String(THRESHOLD), '-f', '0.5', '-d', '0.0008', '--pid', String(churn.pid), '--log-dir', logDir], {
      subcommand: 'snat',
      cwd: tmp,
      unsetEnv: SNAT_ENV,
      env: { COMPUTERNAME: 'ns1' },
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const text = readLogs(logDir, 'ns1', 'log');
    // the mode, once (it does not change during the run)
    const modeLines = text.split('\n').filter((l) => l.includes(': counting mode: '));
    expect(modeLines).toHaveLength(1);
    expect(modeLines[0]).toContain(`counting mode: network namespace: process ${churn.pid} has a network namespace of its own`);
    // every table row for the app's server: TIME_WAIT over the threshold (IPv4-mapped folded to IPv4)
    const rows = [...text.matchAll(new RegExp(`^127\\.0\\.0\\.1:${INNER_PORT} +(\\d+) +(.*)$`, 'gm'))];
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const row of rows) {
      const tw = /TIME_WAIT\((\d+)\)/.exec(row[2]!);
      expect(tw, row[0]).not.toBeNull();
      expect(Number(tw![1])).toBeGreaterThan(THRESHOLD);
    }
    expect(text).toMatch(/: Connection threshold exceeded$/m);
    expect(text).toMatch(new RegExp(`: 127\\.0\\.0\\.1:${INNER_PORT} has \\d+ connections \\(threshold ${THRESHOLD}\\)`));
    const polls = jsonRecords(logDir, 'ns1').filter((o) => o.type === 'poll');
    expect(polls.length).toBeGreaterThanOrEqual(2);
    expect(polls.every((p) => p.exceeded === true && p.pid === churn.pid && p.pidAlive === true)).toBe(true);
  }, 60_000);

  it('auto-selection scores it by its namespace and picks it over an app holding a few connections', async () => {
    const sampler = new Sampler();
    try {
      const processes = (await listDotnetProcesses()).filter((p) => p.pid === churn.pid || p.pid === holder.pid);
      expect(processes.map((p) => p.pid).sort()).toEqual([churn.pid, holder.pid].sort());
      const choice = await chooseDotnetTarget(sampler, { excludeLocalPorts: [80, 443, 2222], processes });
      expect(choice.chosen?.pid).toBe(churn.pid);
      const churned = choice.candidates.find((c) => c.process.pid === churn.pid)!;
      const held = choice.candidates.find((c) => c.process.pid === holder.pid)!;
      expect(churned.basis).toBe('namespace');
      expect(churned.outbound).toBeGreaterThan(THRESHOLD);
      expect(held.basis).toBe('process');
      expect(held.outbound).toBe(3);
      expect(choice.reason).toContain(`pid ${churn.pid}: ${churned.outbound} (its namespace)`);
    } finally {
      await sampler.close();
    }
  }, 60_000);
});
