// `sockwatch snat`: the outbound (SNAT) watch, a drop-in for the shell script that polled
// `netstat -natp | awk` and ran dotnet-dump, dotnet-trace and azcopy. Flags as the script's, plus
// the options listed in the help. Wiring only: the work is in lib/outbound/.
import * as path from 'node:path';
import { parseDumpType } from '../dotnet/dump-types';
import { SnatSession, type SnatSessionOptions } from '../outbound/session';
import { stopRunningInstance } from '../outbound/stop-instance';
import { DEFAULT_EXCLUDED_PORTS } from '../outbound/watcher';
import { redactText } from '../base/redact';
import { SAS_URL_VARIABLE } from '../upload/sas-url';
import { parsePortSpec } from '../sampler';
import { decimalFlag, intFlag, listFlag, parse, usage } from './args';
import { UsageError } from './errors';
import { prefixFlag } from './filters';
import { METRICS_LISTEN_HELP, METRICS_LISTEN_OPTIONS, metricsListenFlags, serveCommandMetrics, type MetricsListen } from './exporter';
import { snatMetrics, type SnatMetricsHooks } from '../metrics/process-metrics';
import { ensureDir } from '../base/fs';
import { MAX_FLEET_LOCKS, MAX_FLEET_SLOTS, parseWindow, type FleetLimits } from '../fleet/limits';
import { FleetSetupError } from '../outbound/session';

export const SNAT_HELP = `Usage: sockwatch snat [-t THRESHOLD] [-f SECONDS] [-d HOURS] [-c] [options] [enable-dump|enable-trace|enable-dump-trace]

Watch outbound TCP connections per remote address:port (ESTABLISHED, TIME_WAIT, CLOSE_WAIT,
FIN_WAIT1/2; IPv4 and IPv6; local ports 80, 443 and 2222 left out) and, when one destination has
more than THRESHOLD, take a memory dump and/or a profiler trace of the .NET app through its
diagnostics socket and upload them to the Azure Blob container of
${SAS_URL_VARIABLE}. Once every enabled collection is uploaded, the run cleans up
and exits. Without enable-*, it monitors and logs only.

  -t THRESHOLD             connections per destination that trigger collection, strictly more (100)
  -f SECONDS               poll interval (10)
  -d HOURS                 stop and clean up after this long (fractions allowed: -d 0.5)
  -c                       stop the running instance of this log dir (pidfile) and remove its locks
  enable-dump              collect a memory dump once when the threshold is exceeded
  enable-trace             collect a profiler trace once
  enable-dump-trace        both
Options:
  --exclude-ports LIST     local ports or ranges not counted (default 80,443,2222)
  --src PREFIX             count only connections from these local addresses or CIDR prefixes
                           (10.0.0.0/8, fd00::/8; repeat or comma-separate: any of them)
  --dst PREFIX             count only connections to these remote addresses or prefixes; an IPv4
                           prefix also matches ::ffff:a.b.c.d of dual-stack sockets (filtered in
                           the kernel, like ss src/dst)
  --pid PID                the .NET process; count only its sockets (default: the .NET process
                           owning the most outbound connections)
  --dump-type TYPE         full, withheap, normal or triage (default full)
  --trace-duration SECONDS length of the trace (default 60)
  --window                 apply the threshold to the distinct connections seen in the last
                           240 s (Azure holds a SNAT port 4 minutes after close) instead of now
  --window-seconds N       length of that window (default 240)
  --keep-running           keep monitoring after the collections are uploaded
  --keep-local             keep dumps and traces after a confirmed upload
  --log-dir DIR            where outconn-logs-{instance}/, dumps, traces, the pidfile and the
                           lock files go (default: the current directory)
  --state-dir DIR          pending-upload records (default: {log dir}/.sockwatch-snat)
  --fleet-max N            at most N collections start per window across every instance uploading
                           to the same container (coordinated through blobs in it, storage clock)
  --fleet-window DURATION  that window: 90s, 30m, 1h, 1d (default 1h; windows start on the hour UTC)
  --fleet-concurrent M     at most M collections run at once across those instances (leased blobs)
${METRICS_LISTEN_HELP}
  -h, --help               this help

Environment (read here first, else from the target's /proc/PID/environ):
  COMPUTERNAME                           instance name (default: the host name, with a warning)
  ${SAS_URL_VARIABLE}   container SAS URL (sp=rw at least); without it files are
                                         kept locally. Its signature never appears in any output.
Log: {log dir}/outconn-logs-{instance}/outbound_conns_stats_{YYYY-MM-DD_HH}.log, a new file each
hour (local time), and a .jsonl twin with one JSON object per poll and per collection step.
Exit status: 0 when done, stopped (-d, -c, SIGTERM, SIGINT), 1 when it cannot start, 2 on bad input.`;

const POSITIONALS: Record<string, { dump: boolean; trace: boolean }> = {
  'enable-dump': { dump: true, trace: false },
  'enable-trace': { dump: false, trace: true },
  'enable-dump-trace': { dump: true, trace: true },
};

/** A positive decimal number ("10", "0.5"), parsed by the CLI's one number parser. */
function positiveNumber(name: string, v: unknown): number | undefined {
  return decimalFlag(name, v, { positive: true });
}

/**
 * Test hooks, for tests only: SOCKWATCH_UPLOAD_BLOCK_SIZE (bytes) and SOCKWATCH_UPLOAD_CONCURRENCY
 * (blocks in flight) make an upload long enough to be interrupted; SOCKWATCH_FLEET_LEASE_SECONDS
 * (15-60) shortens the fleet lock's lease from its 30 s.
 */
function testHook(name: string, env: NodeJS.ProcessEnv): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`${name}: "${v}" is not a non-negative integer`);
  return Number(v);
}

export function parseSnatArgs(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): { help: true } | { help: false; clean: boolean; logDir: string; session: SnatSessionOptions; metrics?: MetricsListen } {
  const { values, positionals } = parse(
    argv,
    {
      threshold: { type: 'string', short: 't' },
      frequency: { type: 'string', short: 'f' },
      duration: { type: 'string', short: 'd' },
      clean: { type: 'boolean', short: 'c' },
      'exclude-ports': { type: 'string', multiple: true },
      src: { type: 'string', multiple: true },
      dst: { type: 'string', multiple: true },
      pid: { type: 'string' },
      'dump-type': { type: 'string' },
      'trace-duration': { type: 'string' },
      window: { type: 'boolean' },
      'window-seconds': { type: 'string' },
      'keep-running': { type: 'boolean' },
      'keep-local': { type: 'boolean' },
      'log-dir': { type: 'string' },
      'state-dir': { type: 'string' },
      'fleet-max': { type: 'string' },
      'fleet-window': { type: 'string' },
      'fleet-concurrent': { type: 'string' },
      ...METRICS_LISTEN_OPTIONS,
      help: { type: 'boolean', short: 'h' },
    },
    true,
  );
  if (values.help) return { help: true };
  if (positionals.length > 1) throw new UsageError(`one collection argument at most, got ${positionals.map((p) => `"${p}"`).join(' ')}`);
  const mode = positionals[0];
  if (mode !== undefined && !(mode in POSITIONALS)) {
    throw new UsageError(`unknown argument "${mode}" (expected enable-dump, enable-trace or enable-dump-trace)`);
  }
  const { dump, trace } = mode ? POSITIONALS[mode]! : { dump: false, trace: false };

  const threshold = intFlag('-t', values.threshold);
  const frequency = positiveNumber('-f', values.frequency);
  const duration = positiveNumber('-d', values.duration);
  const pid = intFlag('--pid', values.pid, { min: 1 });
  const traceSeconds = positiveNumber('--trace-duration', values['trace-duration']);
  const windowSeconds = intFlag('--window-seconds', values['window-seconds'], { min: 1 });
  let dumpType: string | undefined;
  if (values['dump-type'] !== undefined) {
    try {
      dumpType = parseDumpType(values['dump-type'], '--dump-type');
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  let excludeLocalPorts: string[] | undefined;
  if (values['exclude-ports'] !== undefined) {
    excludeLocalPorts = listFlag(values['exclude-ports']) ?? [];
    for (const p of excludeLocalPorts) {
      try {
        parsePortSpec(p, '--exclude-ports');
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    }
  }
  const localAddresses = prefixFlag('src', values.src);
  const remoteAddresses = prefixFlag('dst', values.dst);
  for (const name of ['log-dir', 'state-dir'] as const) {
    if (values[name] === '') throw new UsageError(`--${name}: expected a directory`);
  }
  const logDir = path.resolve((values['log-dir'] as string | undefined) ?? '.');
  const fleet = fleetFlags(values, dump || trace);
  const leaseSeconds = testHook('SOCKWATCH_FLEET_LEASE_SECONDS', env);
  if (fleet && leaseSeconds !== undefined) fleet.leaseSeconds = leaseSeconds;
  const session: SnatSessionOptions = {
    dump,
    trace,
    logDir,
    ...(threshold !== undefined ? { threshold } : {}),
    ...(frequency !== undefined ? { intervalMs: frequency * 1000 } : {}),
    ...(duration !== undefined ? { durationMs: duration * 3_600_000 } : {}),
    ...(pid !== undefined ? { pid } : {}),
    ...(dumpType !== undefined ? { dumpType } : {}),
    ...(traceSeconds !== undefined ? { traceDurationMs: traceSeconds * 1000 } : {}),
    ...(windowSeconds !== undefined ? { windowMs: windowSeconds * 1000 } : {}),
    thresholdOn: values.window ? 'window' : 'current',
    excludeLocalPorts: excludeLocalPorts ?? [...DEFAULT_EXCLUDED_PORTS],
    ...(localAddresses !== undefined ? { localAddresses } : {}),
    ...(remoteAddresses !== undefined ? { remoteAddresses } : {}),
    keepRunning: values['keep-running'] === true,
    keepLocal: values['keep-local'] === true,
    ...(values['state-dir'] !== undefined ? { stateDir: path.resolve(values['state-dir'] as string) } : {}),
    ...(fleet !== undefined ? { fleet } : {}),
    blockSize: testHook('SOCKWATCH_UPLOAD_BLOCK_SIZE', env),
    concurrency: testHook('SOCKWATCH_UPLOAD_CONCURRENCY', env),
  };
  const metrics = metricsListenFlags(values);
  return { help: false, clean: values.clean === true, logDir, session, ...(metrics ? { metrics } : {}) };
}

/** --fleet-max, --fleet-window, --fleet-concurrent: the session's fleet limits, or undefined. */
function fleetFlags(values: Record<string, unknown>, collecting: boolean): FleetLimits | undefined {
  const max = intFlag('--fleet-max', values['fleet-max'], { min: 1, max: MAX_FLEET_SLOTS });
  const concurrent = intFlag('--fleet-concurrent', values['fleet-concurrent'], { min: 1, max: MAX_FLEET_LOCKS });
  const window = values['fleet-window'] as string | undefined;
  if (window !== undefined && max === undefined) throw new UsageError('--fleet-window: needs --fleet-max (it is the window of that limit)');
  const windowMs = window === undefined ? undefined : usage(() => parseWindow(window, '--fleet-window'));
  if (max === undefined && concurrent === undefined) return undefined;
  const flag = max !== undefined ? '--fleet-max' : '--fleet-concurrent';
  if (!collecting) throw new UsageError(`${flag}: needs enable-dump, enable-trace or enable-dump-trace (the limits apply to collections)`);
  return {
    ...(max !== undefined ? { max } : {}),
    ...(windowMs !== undefined ? { windowMs } : {}),
    ...(concurrent !== undefined ? { concurrent } : {}),
  };
}

/** The fleet flags given, for a message: "--fleet-max", "--fleet-max/--fleet-concurrent". */
function fleetFlagNames(fleet: FleetLimits): string {
  return [fleet.max !== undefined ? '--fleet-max' : '', fleet.concurrent !== undefined ? '--fleet-concurrent' : '']
    .filter(Boolean)
    .join('/');
}

async function clean(logDir: string, out: NodeJS.WritableStream): Promise<number> {
  const r = await stopRunningInstance(logDir);
  if (!r.owner) out.write(`sockwatch snat: no pidfile in ${logDir}: no running instance\n`);
  else if (r.wasRunning) {
    out.write(`sockwatch snat: stopped process ${r.owner.pid} (${r.signals.join(', then ')})\n`);
    if (!r.stopped) throw Object.assign(new Error(`process ${r.owner.pid} did not exit after SIGKILL`), { exitCode: 1 });
  } else out.write(`sockwatch snat: process ${r.owner.pid} of the pidfile is not running\n`);
  for (const f of r.removed) out.write(`sockwatch snat: removed ${f}\n`);
  out.write('sockwatch snat: Completed\n');
  return 0;
}

/**
 * The log and state directories are created before anything runs, so a directory that cannot exist
 * (under /proc or /sys, on a read-only mount, a file in the way) is bad input: one line, exit 2,
 * not a failure found at the first log line or the first upload.
 */
function prepareDirectories(session: SnatSessionOptions): void {
  const dirs: Array<[string, string | undefined]> = [
    ['--log-dir', session.logDir],
    ['--state-dir', session.stateDir],
  ];
  for (const [flag, dir] of dirs) {
    if (dir === undefined) continue;
    try {
      ensureDir(dir);
    } catch (e) {
      throw new UsageError(`${flag}: ${(e as Error).message}`);
    }
  }
}

/** Grace for a clean stop after SIGTERM/SIGINT before the process exits anyway. */
const HARD_EXIT_MS = 25_000;

export async function runSnat(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  const parsed = parseSnatArgs(argv);
  if (parsed.help) {
    out.write(SNAT_HELP + '\n');
    return 0;
  }
  if (parsed.clean) return clean(parsed.logDir, out);
  prepareDirectories(parsed.session);
  let hooks: SnatMetricsHooks | undefined;
  const metricsServer = parsed.metrics && (await serveCommandMetrics('snat', parsed.metrics, (r) => (hooks = snatMetrics(r))));

  const stop = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`sockwatch snat: second ${sig}: exiting now\n`);
      process.exit(1);
    }
    setTimeout(() => {
      process.stderr.write('sockwatch snat: did not stop in time after the signal; exiting\n');
      process.exit(1);
    }, HARD_EXIT_MS).unref();
    stop.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    const session = new SnatSession({
      ...parsed.session,
      signal: stop.signal,
      print: (line) => out.write(`${redactText(line)}\n`),
      warn: (line) => process.stderr.write(`sockwatch snat: ${redactText(line)}\n`),
      ...(hooks ? { onPoll: hooks.poll, onStep: hooks.step } : {}),
    });
    await session.run();
    return 0;
  } catch (err) {
    if (err instanceof FleetSetupError && parsed.session.fleet)
      throw new UsageError(`${fleetFlagNames(parsed.session.fleet)}: ${err.message}`);
    throw err;
  } finally {
    await metricsServer?.close();
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
