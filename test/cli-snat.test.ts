// `sockwatch snat` end to end as a child process (the compiled CLI), without .NET: monitoring and
// the log, -d, -c, the pidfile (running, stale), SIGTERM, bad input, and the clear error when
// collection is asked for and there is no .NET process. Connections are real, on 127.0.0.1, held
// by a helper child process whose pid is given with --pid so other tests' sockets do not count.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hourKey } from '../lib/outbound/log-format';
import { onCleanup, runCleanups } from './helpers/cleanup';
import { killCliProcesses, startCli, type CliOptions } from './helpers/cli';
import { SNAT_ENV, deadPid, readLogs } from './helpers/snat';
import { acceptingServer, cleanupSockets } from './helpers/sockets';
import { tmpDir } from './helpers/tmp';
import { waitFor } from './helpers/wait';

const SECRET_SIG = 'c2VjcmV0LXNpZ25hdHVyZS1kby1ub3QtbGVhaw%3D%3D';
const FAKE_SAS = `https://acct.blob.core.windows.net/diag?sv=2022-11-02&sr=c&sp=rcw&se=2099-01-01T00%3A00%3A00Z&sig=${SECRET_SIG}`;

/** unshare --net needs root (CAP_SYS_ADMIN). */
const canUnshareNet = spawnSync('unshare', ['--net', 'true']).status === 0;

let tmp: string;
let port: number;
let holder: ChildProcess;

/** A child process holding `n` connections to our server. */
async function holdConnections(n: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const net=require('net');let k=0;const s=[];for(let i=0;i<${n};i++)s.push(net.connect(${port},'127.0.0.1',()=>{if(++k===${n})console.log('READY')}));setInterval(()=>{},1000)`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  onCleanup(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve) => child.stdout!.on('data', (d) => String(d).includes('READY') && resolve()));
  return child;
}

beforeAll(async () => {
  tmp = tmpDir('cli-snat');
  ({ port } = await acceptingServer('127.0.0.1'));
  holder = await holdConnections(7);
});

afterAll(async () => {
  await killCliProcesses();
  await runCleanups();
  await cleanupSockets();
});

/** `sockwatch snat` in the test's directory, with only the environment a test gives it. */
const start = (args: string[], options: CliOptions = {}) =>
  startCli(args, { subcommand: 'snat', cwd: tmp, unsetEnv: SNAT_ENV, ...options });
const run = (args: string[], options: CliOptions = {}) => start(args, options).exited;

describe('sockwatch snat (no .NET needed)', () => {
  it('prints its help', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: sockwatch snat \[-t THRESHOLD\] \[-f SECONDS\] \[-d HOURS\] \[-c\]/);
    expect(r.stdout).toContain('enable-dump-trace');
  });

  it.each([
    [['-t', 'x'], '-t: "x" is not a non-negative integer'],
    [['-f', '0'], '-f: "0" must be greater than 0'],
    [['-d', '-1'], '-d: "-1" must not be negative'],
    [['-t', '-1'], '-t: "-1" must not be negative'],
    [['enable-nothing'], 'unknown argument "enable-nothing" (expected enable-dump, enable-trace or enable-dump-trace)'],
    [['--dump-type', 'big'], '--dump-type must be one of Normal, WithHeap, Triage, Full; got "big"'],
    [['--exclude-ports', '70000'], '--exclude-ports: port 70000 is out of range 0-65535'],
  ])('bad input %j exits 2 with one line', async (args, message) => {
    const r = await run(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`sockwatch: ${message}\n`);
  });

  it('monitors, writes the script-format hourly log and its JSON twin, and stops after -d', async () => {
    const logDir = path.join(tmp, 'monitor');
    const r = await run(
      // 7.2 s: room for several polls even when the first ones are slow on a loaded machine (3.6 s
      // gave one poll while six other test runs shared the two cores).
      ['-t', '5', '-f', '0.3', '-d', '0.002', '--pid', String(holder.pid), '--exclude-ports', `80,443,2222,${port}`, '--log-dir', logDir],
      {
        env: { COMPUTERNAME: 'cli-inst', DIAGNOSTICS_AZUREBLOBCONTAINERSASURL: FAKE_SAS },
      },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const text = readLogs(logDir, 'cli-inst', 'log');
    const files = fs.readdirSync(path.join(logDir, 'outconn-logs-cli-inst'));
    expect(files).toContain(`outbound_conns_stats_${hourKey(new Date())}.log`);
    expect(files.every((f) => /^outbound_conns_stats_\d{4}-\d{2}-\d{2}_\d{2}\.(log|jsonl)$/.test(f))).toBe(true);
    expect(text).toContain('Remote Address:Port                           Total    States (Count)');
    const row = new RegExp(`^127\\.0\\.0\\.1:${port} +7 +ESTABLISHED\\(7\\)  \\| 240s: 7 distinct$`, 'm');
    expect(text).toMatch(row);
    expect(text).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}: Connection threshold exceeded$/m);
    expect(text).toMatch(/^Current timestamp: \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/m);
    expect(text).toContain('Duration timer expired after 0.002 hour(s). Initiating automatic cleanup...');
    expect(text).toContain(`counting only the connections of process ${holder.pid}`);
    expect(text).toMatch(/: counting mode: (network namespace|process sockets): /);
    // the SAS URL is named without its signature, nowhere in full
    expect(text).toContain('uploads to https://acct.blob.core.windows.net/diag');
    for (const out of [text, r.stdout, r.stderr, readLogs(logDir, 'cli-inst', 'jsonl')]) expect(out).not.toContain(SECRET_SIG);
    const polls = readLogs(logDir, 'cli-inst', 'jsonl')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((o) => o.type === 'poll');
    expect(polls.length).toBeGreaterThanOrEqual(2);
    expect(polls[0]).toMatchObject({ exceeded: true, threshold: 5, pid: holder.pid, busiest: { remote: `127.0.0.1:${port}`, count: 7 } });
    expect(fs.existsSync(path.join(logDir, 'sockwatch-snat.pid'))).toBe(false);
    expect(r.stdout).toContain('Connection threshold exceeded: 127.0.0.1:');
  });

  it.skipIf(!canUnshareNet)(
    "run inside the app's own network namespace (an SSH session, a sidecar), counts that namespace: connections closed before any poll, in TIME_WAIT",
    async () => {
      const logDir = path.join(tmp, 'own-netns');
      const ready = path.join(tmp, 'own-netns.ready');
      // The "app": opens and closes 60 connections to a server of its own (it closes first, so they
      // stay in TIME_WAIT with no owner), then idles. sockwatch runs in the same fresh namespace.
      const app = [
        'import os, socket, sys, time',
        "srv = socket.socket(); srv.bind(('127.0.0.1', 9000)); srv.listen(8)",
        'for i in range(60):',
        "    c = socket.create_connection(('127.0.0.1', 9000)); a, _ = srv.accept(); c.close(); a.close()",
        "open(sys.argv[1], 'w').write(str(os.getpid()))",
        'time.sleep(600)',
      ].join('\n');
      const script = [
        'ip link set lo up || exit 126',
        'python3 -c "$APP_PY" "$READY_FILE" </dev/null >/dev/null 2>&1 &',
        'app=$!',
        'i=0; while [ ! -s "$READY_FILE" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done',
        'exec "$@" --pid "$app"',
      ].join('\n');
      // -d 0.001 (3.6 s): the row and the counting mode come from the first poll, which also decides
      // the attribution over /proc; 1.08 s could end the run before it on a loaded machine.
      const r = await run(['-t', '50', '-f', '0.3', '-d', '0.001', '--log-dir', logDir], {
        wrapper: ['unshare', '--net', 'sh', '-c', script, 'sh'],
        env: { COMPUTERNAME: 'own-ns', APP_PY: app, READY_FILE: ready },
      });
      const appPid = Number(fs.readFileSync(ready, 'utf8'));
      onCleanup(() => {
        try {
          process.kill(appPid, 'SIGKILL');
        } catch {
          // already gone
        }
      });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const text = readLogs(logDir, 'own-ns', 'log');
      expect(text).toContain(
        `counting mode: network namespace: no other process in the network namespace of process ${appPid} holds a TCP socket on a port not excluded`,
      );
      expect(text).toMatch(/^127\.0\.0\.1:9000 +60 +TIME_WAIT\(60\)  \| 240s: 60 distinct$/m);
      expect(text).toMatch(/: 127\.0\.0\.1:9000 has 60 connections \(threshold 50\)$/m);
    },
  );

  it.skipIf(!canUnshareNet)(
    "a namespace shared with a process it cannot see (another pid namespace) is not taken for the app's own",
    async () => {
      const logDir = path.join(tmp, 'hidden-owner');
      const ready = path.join(tmp, 'hidden-owner.ready');
      const otherFile = path.join(tmp, 'hidden-owner.other');
      // In a fresh network namespace: a listener on a port not excluded, held by a process outside
      // the pid namespace that sockwatch and the app then run in (so /proc does not show its owner).
      const listener =
        "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 9100)); s.listen(); print('up', flush=True); time.sleep(600)";
      const app = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)";
      const inner = [
        'python3 -c "$APP_PY" "$READY_FILE" </dev/null >/dev/null 2>&1 &',
        'app=$!',
        'i=0; while [ ! -s "$READY_FILE" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done',
        'exec "$@" --pid "$app"',
      ].join('\n');
      const script = [
        'ip link set lo up || exit 126',
        'python3 -c "$LISTENER_PY" </dev/null >"$OTHER_FILE.up" 2>&1 &',
        'echo $! >"$OTHER_FILE"',
        'i=0; while [ ! -s "$OTHER_FILE.up" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done',
        'exec unshare --pid --fork --mount-proc sh -c "$INNER_SH" sh "$@"',
      ].join('\n');
      // -d 0.001 (3.6 s): the row and the counting mode come from the first poll, which also decides
      // the attribution over /proc; 1.08 s could end the run before it on a loaded machine.
      const r = await run(['-t', '50', '-f', '0.3', '-d', '0.001', '--log-dir', logDir], {
        wrapper: ['unshare', '--net', 'sh', '-c', script, 'sh'],
        env: {
          COMPUTERNAME: 'hidden-owner',
          APP_PY: app,
          LISTENER_PY: listener,
          INNER_SH: inner,
          READY_FILE: ready,
          OTHER_FILE: otherFile,
        },
      });
      const other = Number(fs.readFileSync(otherFile, 'utf8'));
      onCleanup(() => {
        try {
          process.kill(other, 'SIGKILL');
        } catch {
          // already gone
        }
      });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const text = readLogs(logDir, 'hidden-owner', 'log');
      expect(text).toMatch(
        /counting mode: process sockets: the network namespace of process \d+ is shared with other processes holding 1 TCP socket\(s\) on ports not excluded \(owners not visible from here\)/,
      );
    },
  );

  it("refuses to append its log through a symbolic link planted at the hour's log file (run as root)", async () => {
    const logDir = path.join(tmp, 'planted');
    const victim = path.join(tmp, 'victim.txt');
    fs.writeFileSync(victim, 'untouched\n');
    const dir = path.join(logDir, 'outconn-logs-p1');
    fs.mkdirSync(dir, { recursive: true });
    const link = path.join(dir, `outbound_conns_stats_${hourKey(new Date())}.log`);
    fs.symlinkSync(victim, link);
    const r = await run(['-f', '0.3', '-d', '0.0004', '--pid', String(holder.pid), '--log-dir', logDir], { env: { COMPUTERNAME: 'p1' } });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toBe(`sockwatch: refusing to open ${link}: it is a symbolic link\n`);
    expect(fs.readFileSync(victim, 'utf8')).toBe('untouched\n');
  });

  it('warns and uses the host name when COMPUTERNAME is not set', async () => {
    const logDir = path.join(tmp, 'hostname');
    const r = await run(['-f', '0.3', '-d', '0.0002', '--pid', String(holder.pid), '--log-dir', logDir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(
      `sockwatch snat: COMPUTERNAME is not set (here or in the target's environment): using the host name "${os.hostname()}"`,
    );
    expect(fs.existsSync(path.join(logDir, `outconn-logs-${os.hostname()}`))).toBe(true);
  });

  it('monitoring only, a SAS URL that cannot be used is ignored with a warning (its signature not shown)', async () => {
    const expired = FAKE_SAS.replace('se=2099-01-01', 'se=2001-01-01');
    const r = await run(['-f', '0.3', '-d', '0.0001', '--pid', String(holder.pid), '--log-dir', path.join(tmp, 'expired')], {
      env: { COMPUTERNAME: 'x1', DIAGNOSTICS_AZUREBLOBCONTAINERSASURL: expired },
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /DIAGNOSTICS_AZUREBLOBCONTAINERSASURL \(from the environment\): the container SAS for https:\/\/acct\.blob\.core\.windows\.net\/diag expired at 2001-01-01T00:00:00\.000Z.*; ignored \(monitoring only\)/,
    );
    expect(r.stderr + r.stdout).not.toContain(SECRET_SIG);
  });

  it('with collection enabled and no .NET process, fails with one clear line', async () => {
    // A fresh pid namespace hides the .NET apps other tests may be running.
    const r = await run(['enable-dump', '--log-dir', path.join(tmp, 'nodotnet')], {
      wrapper: ['unshare', '--pid', '--fork', '--mount-proc'],
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^sockwatch: no \.NET process found: no dotnet-diagnostic-\*-socket in any process's temp directory\..*pass --pid.*\n$/,
    );
    expect(r.stderr.split('\n')).toHaveLength(2);
  });

  it('--pid of a process that does not exist is a clear error', async () => {
    const r = await run(['--pid', String(deadPid()), '--log-dir', path.join(tmp, 'nopid')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^sockwatch: --pid \d+: no such process\n$/);
  });

  it('refuses to start beside a running instance; -c stops it (SIGTERM) and removes its pidfile and stale locks', async () => {
    const logDir = path.join(tmp, 'clean');
    fs.mkdirSync(logDir);
    const first = start(['-f', '0.5', '--pid', String(holder.pid), '--log-dir', logDir], { env: { COMPUTERNAME: 'c1' } });
    const pidfile = path.join(logDir, 'sockwatch-snat.pid');
    await waitFor('pidfile', () => fs.existsSync(pidfile) && fs.readFileSync(pidfile, 'utf8').startsWith(String(first.child.pid)));
    // a lock left by a run killed long ago
    const dead = deadPid();
    fs.writeFileSync(path.join(logDir, 'dump_taken_c1.lock'), `${dead}\n${JSON.stringify({ pid: dead, start: '1' })}\n`);

    const second = await run(['--pid', String(holder.pid), '--log-dir', logDir], { env: { COMPUTERNAME: 'c1' } });
    expect(second.code).toBe(1);
    expect(second.stderr).toBe(
      `sockwatch: another sockwatch snat (pid ${first.child.pid}) is running with log dir ${logDir}; stop it with "sockwatch snat -c --log-dir ${logDir}"\n`,
    );

    const c = await run(['-c', '--log-dir', logDir]);
    expect(c.code).toBe(0);
    expect(c.stdout).toContain(`stopped process ${first.child.pid} (SIGTERM)`);
    const firstRun = await first.exited;
    expect(firstRun.code).toBe(0);
    expect(fs.existsSync(pidfile)).toBe(false);
    // the stopped run cleaned up after itself, the stale lock of the dead run included
    expect(fs.existsSync(path.join(logDir, 'dump_taken_c1.lock'))).toBe(false);
    const log = readLogs(logDir, 'c1', 'log');
    expect(log).toContain('Stop requested (signal)');
    expect(log).toContain('removed the stale lock dump_taken_c1.lock (its owner is no longer running)');
    // nothing left to stop
    const again = await run(['-c', '--log-dir', logDir]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('no running instance');
  });

  it('takes over the pidfile of a run killed with SIGKILL', async () => {
    const logDir = path.join(tmp, 'stale');
    fs.mkdirSync(logDir);
    const killed = start(['-f', '0.5', '--pid', String(holder.pid), '--log-dir', logDir], { env: { COMPUTERNAME: 's1' } });
    const pidfile = path.join(logDir, 'sockwatch-snat.pid');
    await waitFor('pidfile', () => fs.existsSync(pidfile) && fs.readFileSync(pidfile, 'utf8').startsWith(String(killed.child.pid)));
    killed.child.kill('SIGKILL');
    await killed.exited;
    expect(fs.existsSync(pidfile)).toBe(true);
    const next = await run(['-f', '0.3', '-d', '0.0002', '--pid', String(holder.pid), '--log-dir', logDir], {
      env: { COMPUTERNAME: 's1' },
    });
    expect(next.code).toBe(0);
    expect(next.stdout).toContain(`took over the stale pidfile of process ${killed.child.pid}, which is no longer running`);
    expect(fs.existsSync(pidfile)).toBe(false);
  });

  it('stops cleanly on SIGINT with exit code 0', async () => {
    const logDir = path.join(tmp, 'sigint');
    const r = start(['-f', '0.3', '--pid', String(holder.pid), '--log-dir', logDir], { env: { COMPUTERNAME: 'g1' } });
    await waitFor('first poll', () => readLogs(logDir, 'g1', 'log').includes('Current timestamp'));
    r.child.kill('SIGINT');
    const done = await r.exited;
    expect(done.code).toBe(0);
    expect(done.stdout).toContain('Completed');
    expect(fs.existsSync(path.join(logDir, 'sockwatch-snat.pid'))).toBe(false);
  });
});
