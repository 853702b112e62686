// `sockwatch snat --fleet-*` end to end: real CLI processes (different COMPUTERNAME, one Azurite
// container), one real .NET app shared by every run (its connections over the threshold), real
// dumps and traces. Cost kept low: one app, a small threshold, Normal (mini) dumps, short polls.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createContainerSas, keyContainerClient, startAzurite, type Azurite } from './helpers/azurite';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, startCli, type CliProcess } from './helpers/cli';
import { dotnetSkipReason, hasDotnet, startDotnetApp, type DotnetApp } from './helpers/dotnet';
import { SNAT_ENV, readLogs } from './helpers/snat';
import { acceptingServer, cleanupSockets } from './helpers/sockets';
import { awayFromWindowBoundary } from './helpers/fleet';
import { tmpDir } from './helpers/tmp';

const skip = !hasDotnet();
if (skip) console.warn(`fleet-snat.test.ts: ${dotnetSkipReason()}`);

let tmp: string;

beforeAll(() => {
  tmp = tmpDir('fleet-snat');
});

afterAll(async () => {
  await killCliProcesses();
  await runCleanups();
});

const snat = (args: string[], env: NodeJS.ProcessEnv = {}): CliProcess =>
  startCli(args, { subcommand: 'snat', cwd: tmp, unsetEnv: SNAT_ENV, env });

describe('sockwatch snat --fleet-*: bad input', () => {
  it.each([
    [['--fleet-max', '0', 'enable-dump'], '--fleet-max must be an integer from 1 to 1000 (got 0)'],
    [['--fleet-concurrent', 'x', 'enable-dump'], '--fleet-concurrent: "x" is not a non-negative integer'],
    [
      ['--fleet-max', '1', '--fleet-window', 'nonsense', 'enable-dump'],
      '--fleet-window: "nonsense" is not a window from 1s to 31d (a whole number and a unit s, m, h or d: 90s, 30m, 1h, 1d)',
    ],
    [['--fleet-window', '1h', 'enable-dump'], '--fleet-window: needs --fleet-max (it is the window of that limit)'],
    [
      ['--fleet-concurrent', '2'],
      '--fleet-concurrent: needs enable-dump, enable-trace or enable-dump-trace (the limits apply to collections)',
    ],
  ])('%j exits 2 with one line', async (args, message) => {
    const r = await snat(args).exited;
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`sockwatch: ${message}\n`);
  });
});

describe.skipIf(skip)('sockwatch snat --fleet-* with a real .NET app and Azurite', () => {
  let azurite: Azurite;
  let app: DotnetApp;
  let common: string[];

  beforeAll(async () => {
    const { port } = await acceptingServer('127.0.0.1');
    [azurite, app] = await Promise.all([startAzurite(), startDotnetApp('127.0.0.1', port, 8)]);
    common = ['-t', '5', '-f', '0.5', '--pid', String(app.pid), '--exclude-ports', `80,443,2222,${port}`, '--dump-type', 'normal'];
  });

  afterAll(async () => {
    await killCliProcesses();
    await app?.stop();
    await azurite?.stop();
    await cleanupSockets();
  });

  async function blobs(container: string): Promise<string[]> {
    const out: string[] = [];
    for await (const b of keyContainerClient(azurite.url, container).listBlobsFlat()) out.push(b.name);
    return out.sort();
  }

  async function record(container: string, name: string): Promise<Record<string, unknown>> {
    return JSON.parse((await keyContainerClient(azurite.url, container).getBlobClient(name).downloadToBuffer()).toString()) as Record<
      string,
      unknown
    >;
  }

  const logDir = (name: string): string => path.join(tmp, name);

  it('without a SAS URL, --fleet-concurrent exits 2 with one line', async () => {
    const r = await snat([...common, '--fleet-concurrent', '1', '--log-dir', logDir('nosas'), 'enable-dump'], { COMPUTERNAME: 'nosas' })
      .exited;
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "sockwatch: --fleet-concurrent: fleet limits need a container SAS URL: DIAGNOSTICS_AZUREBLOBCONTAINERSASURL is not set here or in the target's environment (the instances coordinate through its container)\n",
    );
  });

  it('three instances over the threshold with --fleet-max 1: exactly one dump uploaded, the two others log who collected and when', async () => {
    const container = 'fleet-three';
    const sas = await createContainerSas(azurite.url, container);
    const names = ['fleet-a', 'fleet-b', 'fleet-c'];
    await awayFromWindowBoundary(3_600_000, 30_000); // all three in one window
    const started = Date.now();
    const runs = names.map((name) =>
      snat([...common, '--fleet-max', '1', '--fleet-window', '1h', '--log-dir', logDir(name), 'enable-dump'], {
        COMPUTERNAME: name,
        DIAGNOSTICS_AZUREBLOBCONTAINERSASURL: sas,
      }),
    );
    // The winner uploads its dump and exits; the others go on watching.
    const winnerIndex = await Promise.race(runs.map((r, i) => r.exited.then(() => i)));
    const winner = names[winnerIndex]!;
    const done = await runs[winnerIndex]!.exited;
    expect(done.code, done.stdout + done.stderr).toBe(0);
    expect(done.stdout).toMatch(/^fleet: collection allowed at \S+ \(storage clock\): slot \d{8}T\d{6}Z\/slot-0 of the window from /m);
    expect(done.stdout).toContain('Memory dump has been successfully uploaded');

    const listed = await blobs(container);
    const dumps = listed.filter((n) => n.endsWith('.dmp'));
    expect(dumps).toHaveLength(1);
    expect(dumps[0]).toMatch(new RegExp(`^dump_${winner}_\\d{8}_\\d{6}\\.dmp$`));
    const slots = listed.filter((n) => n.startsWith('sockwatch/fleet/'));
    expect(slots).toHaveLength(1);
    expect(slots[0]).toMatch(/^sockwatch\/fleet\/\d{8}T\d{6}Z\/slot-0$/);
    const slot = await record(container, slots[0]!);
    expect(slot).toMatchObject({ instance: winner, pid: runs[winnerIndex]!.child.pid, kinds: ['dump'], count: 8, threshold: 5 });
    expect(slot.destination).toMatch(/^127\.0\.0\.1:\d+$/);

    const line = new RegExp(
      `(?:^|: )fleet limit reached: 1 collection\\(s\\) per 1 h already started in the window \\S+ to \\S+ \\(storage clock\\): ` +
        `${winner} \\(pid ${runs[winnerIndex]!.child.pid}\\) collected at ${String(slot.time)} \\(127\\.0\\.0\\.1:\\d+: 8 connections\\); ` +
        'not collecting, monitoring goes on \\(next try from \\S+\\)$',
      'm',
    );
    const losers = names.map((n, i) => ({ name: n, run: runs[i]! })).filter((l) => l.name !== winner);
    for (const l of losers) await l.run.waitFor(`${l.name}'s fleet line`, (lines) => lines.some((x) => line.test(x)), 30_000);
    for (const l of losers) l.run.child.kill('SIGTERM');
    for (const l of losers) {
      const r = await l.run.exited;
      expect(r.code, r.stderr).toBe(0);
      // Once in the terminal and once in the hourly log; no collection started.
      expect(r.stdout.split('\n').filter((x) => line.test(x))).toHaveLength(1);
      const log = readLogs(logDir(l.name), l.name, 'log');
      expect(log.split('\n').filter((x) => line.test(x))).toHaveLength(1);
      expect(log).not.toContain('Collecting memory dump');
    }
    expect(await blobs(container)).toEqual(listed);
    console.log(`fleet-snat: three runs took ${Date.now() - started} ms`);
  }, 90_000);

  it('a holder killed (SIGKILL) with its lease held blocks the fleet no longer than the lease; its slot still counts', async () => {
    const container = 'fleet-killed';
    const sas = await createContainerSas(azurite.url, container);
    const env = (name: string) => ({ COMPUTERNAME: name, DIAGNOSTICS_AZUREBLOBCONTAINERSASURL: sas, SOCKWATCH_FLEET_LEASE_SECONDS: '15' });
    // One-day windows (from 00:00 UTC): the whole test, about 40 s, falls in one of them.
    const limits = ['--fleet-max', '2', '--fleet-window', '1d', '--fleet-concurrent', '1'];
    await awayFromWindowBoundary(86_400_000, 120_000);
    const allowed = (lines: string[]) => lines.some((l) => l.includes('fleet: collection allowed'));

    // The holder: a 60 s trace, so it holds the running lock while it is killed.
    const holder = snat(
      [...common, ...limits, '--trace-duration', '60', '--log-dir', logDir('holder'), 'enable-trace'],
      env('fleet-holder'),
    );
    await holder.waitFor('the holder allowed', allowed, 30_000);
    const grantedAt = Date.now();
    await holder.waitFor('the trace running', (lines) => lines.some((l) => l.includes('Collecting profiler trace')), 30_000);

    const waiter = snat([...common, ...limits, '--log-dir', logDir('waiter'), 'enable-dump'], env('fleet-waiter'));
    const running = new RegExp(
      `(?:^|: )fleet limit reached: 1 collection\\(s\\) running at once: fleet-holder \\(pid ${holder.child.pid}\\) since \\S+`,
    );
    await waiter.waitFor("the waiter's refusal", (lines) => lines.some((l) => running.test(l)), 30_000);
    // Past the 15 s lease the holder still holds it (renewed), and the waiter keeps waiting.
    while (Date.now() - grantedAt < 17_000) await new Promise((r) => setTimeout(r, 200));
    expect(allowed(waiter.lines)).toBe(false);

    holder.child.kill('SIGKILL');
    const killedAt = Date.now();
    await holder.exited;
    await waiter.waitFor('the waiter allowed once the lease expired', allowed, 30_000);
    const waited = Date.now() - killedAt;
    console.log(`fleet-snat: the waiter was allowed ${waited} ms after the holder's SIGKILL (lease 15 s)`);
    // The lease is renewed every 5 s, so it expires 10 to 15 s after the kill; a renewal made late on a
    // loaded machine (the holder is tracing) can bring that nearer, so the bound is 5 s: a lease that did
    // not outlive its holder would let the waiter in at its next question, within about 2 s.
    expect(waited).toBeGreaterThan(5_000);
    // Upper bound: the 15 s lease, the 2 s between questions, and slack for a loaded 2-core machine.
    expect(waited).toBeLessThan(15_000 + 2_000 + 7_000);
    expect(waiter.lines.find((l) => l.includes('fleet: collection allowed'))).toMatch(/slot \d{8}T\d{6}Z\/slot-1 .*running lock lock-0/);
    const r = await waiter.exited;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('Memory dump has been successfully uploaded');

    // The killed holder's slot counts: with --fleet-max 2 a third instance is refused.
    const third = snat([...common, ...limits, '--log-dir', logDir('third'), 'enable-dump'], env('fleet-third'));
    const full =
      /(?:^|: )fleet limit reached: 2 collection\(s\) per 1 d already started .*: fleet-holder \(pid \d+\) collected at \S+ \(.*\); fleet-waiter \(pid \d+\) collected at /;
    await third.waitFor("the third's refusal", (lines) => lines.some((l) => full.test(l)), 30_000);
    third.child.kill('SIGTERM');
    expect((await third.exited).code).toBe(0);
    const listed = await blobs(container);
    expect(listed.filter((n) => n.endsWith('.dmp'))).toEqual([expect.stringMatching(/^dump_fleet-waiter_/)]);
    expect(listed.filter((n) => n.startsWith('sockwatch/fleet/'))).toEqual([
      expect.stringMatching(/^sockwatch\/fleet\/\d{8}T\d{6}Z\/slot-0$/),
      expect.stringMatching(/^sockwatch\/fleet\/\d{8}T\d{6}Z\/slot-1$/),
      'sockwatch/fleet/locks/lock-0',
    ]);
    expect(fs.existsSync(logDir('holder'))).toBe(true);
  }, 240_000);
});
