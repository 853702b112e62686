// One `sockwatch snat` run, wired from the pieces: target choice, instance and SAS settings, the
// pidfile, the hourly log, the watcher (polling) and the collector (dump, trace, upload) beside it.
// It ends when every enabled collection is uploaded (unless keepRunning), when the duration is
// over, or when `signal` fires; each way it stops cleanly and removes its pidfile and locks.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findDiagnosticSocket, type DotnetProcess, type DotnetTarget } from '../dotnet';
import { redactText, redactUrl } from '../redact';
import { Sampler, type PortSpec } from '../sampler';
import { parseContainerSasUrl } from '../upload';
import { DiagnosticsCollector, type CollectionStep } from './collector';
import { HourlyLog } from './hourly-log';
import { formatPollBlock, logTimestamp, pollRecord } from './log-format';
import { acquireOwnerFile, releaseOwnerFile } from './owner-file';
import { formatStep, stepRecord } from './step-format';
import { PIDFILE_NAME, removeStaleLocks } from './stop-instance';
import { chooseDotnetTarget, resolveSetting } from './target';
import {
  DEFAULT_EXCLUDED_PORTS,
  DEFAULT_INTERVAL_MS,
  DEFAULT_THRESHOLD,
  DEFAULT_WINDOW_MS,
  OutboundWatcher,
  type OutboundPoll,
  type ThresholdBasis,
} from './watcher';

export const INSTANCE_VARIABLE = 'COMPUTERNAME';
export const SAS_VARIABLE = 'DIAGNOSTICS_AZUREBLOBCONTAINERSASURL';
export const STATE_DIR_NAME = '.sockwatch-snat';

export interface SnatSessionOptions {
  threshold?: number;
  intervalMs?: number;
  /** Stop after this long (the script's -d, in ms). */
  durationMs?: number;
  dump?: boolean;
  trace?: boolean;
  dumpType?: string;
  traceDurationMs?: number;
  excludeLocalPorts?: readonly PortSpec[];
  /** The .NET process to watch and collect from; only its sockets are counted. */
  pid?: number;
  windowMs?: number;
  thresholdOn?: ThresholdBasis;
  keepRunning?: boolean;
  keepLocal?: boolean;
  /** Holds outconn-logs-{instance}/, the pidfile, the locks, dumps and traces (default: cwd). */
  logDir?: string;
  /** Pending uploads and upload records (default: {logDir}/.sockwatch-snat). */
  stateDir?: string;
  /** Where COMPUTERNAME and the SAS URL are looked up first (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Upload tuning (tests). */
  blockSize?: number;
  concurrency?: number;
  retryDelayMs?: number;
  /** Stops the run (SIGTERM/SIGINT). */
  signal?: AbortSignal;
  /** Terminal lines (info, exceeded, collection steps). */
  print?: (line: string) => void;
  /** Warnings for the terminal (stderr). */
  warn?: (line: string) => void;
}

export type SessionEnd = 'finished' | 'duration' | 'signal';

export interface SessionResult {
  end: SessionEnd;
  instance: string;
  logDir: string;
  /** The .NET process chosen, if any. */
  targetPid?: number;
}

/** A run that cannot start: one clear line, exit code 1. */
export class SnatStartError extends Error {
  readonly exitCode = 1;
  constructor(message: string) {
    super(message);
    this.name = 'SnatStartError';
  }
}

function hoursText(ms: number): string {
  const h = ms / 3_600_000;
  return `${Number(h.toPrecision(6))} hour(s)`;
}

interface Target {
  endpoint: DotnetProcess | undefined;
  reason: string;
}

export class SnatSession {
  private readonly o: SnatSessionOptions;
  private readonly print: (line: string) => void;
  private readonly warn: (line: string) => void;
  private log: HourlyLog | undefined;

  constructor(options: SnatSessionOptions) {
    this.o = options;
    this.print = options.print ?? (() => undefined);
    this.warn = options.warn ?? (() => undefined);
  }

  private get collecting(): boolean {
    return !!(this.o.dump || this.o.trace);
  }

  /** A timestamped line to the text log (and the JSON log as a note), and to the terminal. */
  private note(text: string, level: 'info' | 'warning' = 'info', terminal = true): void {
    const now = new Date();
    this.log?.write([`${logTimestamp(now)}: ${text}`], { time: now.toISOString(), type: 'note', level, text });
    if (!terminal) return;
    if (level === 'warning') this.warn(redactText(text));
    else this.print(redactText(text));
  }

  private async findTarget(sampler: Sampler, excludeLocalPorts: readonly PortSpec[]): Promise<Target> {
    const pid = this.o.pid;
    if (pid !== undefined) {
      if (!fs.existsSync(`/proc/${pid}`)) throw new SnatStartError(`--pid ${pid}: no such process`);
      try {
        const endpoint = await findDiagnosticSocket(pid);
        return { endpoint, reason: `--pid ${pid}` };
      } catch (err) {
        if (this.collecting) throw new SnatStartError(`--pid ${pid}: ${(err as Error).message}`);
        return { endpoint: undefined, reason: `--pid ${pid} (not a .NET process with a diagnostics socket: monitoring only)` };
      }
    }
    const choice = await chooseDotnetTarget(sampler, { excludeLocalPorts });
    if (!choice.chosen && this.collecting) {
      throw new SnatStartError(
        "no .NET process found: no dotnet-diagnostic-*-socket in any process's temp directory. " +
          'Start the app (with diagnostics enabled), pass --pid, or run without enable-dump/enable-trace to monitor only',
      );
    }
    return { endpoint: choice.chosen, reason: choice.reason };
  }

  async run(): Promise<SessionResult> {
    const o = this.o;
    const logDir = path.resolve(o.logDir ?? '.');
    const excludeLocalPorts = o.excludeLocalPorts ?? DEFAULT_EXCLUDED_PORTS;
    const env = o.env ?? process.env;
    const sampler = new Sampler();
    try {
      if (o.signal?.aborted) throw new SnatStartError('stopped before it started');
      const target = await this.findTarget(sampler, excludeLocalPorts);
      const targetPid = target.endpoint?.pid ?? o.pid;

      const instanceSetting = resolveSetting(INSTANCE_VARIABLE, env, targetPid);
      const instance = instanceSetting.value ?? os.hostname();
      const sasSetting = resolveSetting(SAS_VARIABLE, env, targetPid);
      let containerSasUrl = sasSetting.value;
      let sasProblem: string | undefined;
      if (containerSasUrl !== undefined) {
        const from = sasSetting.source === 'target' ? `process ${targetPid}` : 'the environment';
        try {
          const sas = parseContainerSasUrl(containerSasUrl);
          if (sas.permissions !== undefined && !(sas.permissions.includes('r') && sas.permissions.includes('w'))) {
            throw new Error(`grants sp=${sas.permissions}; uploads need r and w`);
          }
        } catch (err) {
          const problem = `${SAS_VARIABLE} (from ${from}): ${(err as Error).message}`;
          if (this.collecting) throw new SnatStartError(problem);
          sasProblem = `${problem}; ignored (monitoring only)`;
          containerSasUrl = undefined;
        }
      }

      fs.mkdirSync(logDir, { recursive: true });
      const pidfile = path.join(logDir, PIDFILE_NAME);
      const claim = acquireOwnerFile(pidfile, { what: 'sockwatch snat', instance });
      if (!claim.acquired) {
        throw new SnatStartError(
          `another sockwatch snat (pid ${claim.owner.pid}) is running with log dir ${logDir}; stop it with "sockwatch snat -c --log-dir ${logDir}"`,
        );
      }
      try {
        this.log = new HourlyLog({ baseDir: logDir, instance });
        if (sasProblem) this.note(sasProblem, 'warning');
        return await this.monitor({
          sampler,
          target,
          instance,
          instanceSetting,
          containerSasUrl,
          sasSource: sasSetting.source,
          logDir,
          excludeLocalPorts,
          takenOverFrom: claim.takenOverFrom?.pid,
          targetPid,
        });
      } finally {
        releaseOwnerFile(pidfile);
      }
    } finally {
      await sampler.close();
    }
  }

  private async monitor(ctx: {
    sampler: Sampler;
    target: Target;
    instance: string;
    instanceSetting: { source: string };
    containerSasUrl: string | undefined;
    sasSource: string;
    logDir: string;
    excludeLocalPorts: readonly PortSpec[];
    takenOverFrom: number | undefined;
    targetPid: number | undefined;
  }): Promise<SessionResult> {
    const o = this.o;
    const { instance, logDir } = ctx;
    const stateDir = path.resolve(o.stateDir ?? path.join(logDir, STATE_DIR_NAME));
    const log = this.log!;

    const what =
      o.dump && o.trace
        ? 'memory dump and profiler trace'
        : o.dump
          ? 'memory dump'
          : o.trace
            ? 'profiler trace'
            : 'no collection (monitor only)';
    this.note(
      `sockwatch snat started (pid ${process.pid}): threshold ${o.threshold ?? DEFAULT_THRESHOLD} ${o.thresholdOn === 'window' ? `distinct connections per destination in ${(o.windowMs ?? DEFAULT_WINDOW_MS) / 1000} s` : 'connections per destination'}, every ${(o.intervalMs ?? DEFAULT_INTERVAL_MS) / 1000} s, excluded local ports ${ctx.excludeLocalPorts.join(',')}; on exceeding: ${what}`,
    );
    this.note(`log: ${log.textPath()}`);
    if (ctx.takenOverFrom !== undefined)
      this.note(`took over the stale pidfile of process ${ctx.takenOverFrom}, which is no longer running`);
    if (ctx.target.endpoint) this.note(`target: ${ctx.target.reason}`);
    else if (o.pid !== undefined) this.note(`counting only the sockets of process ${o.pid}; ${ctx.target.reason}`);
    else this.note(`${ctx.target.reason}; monitoring only`);
    if (ctx.instanceSetting.source === 'none') {
      this.note(
        `${INSTANCE_VARIABLE} is not set (here or in the target's environment): using the host name "${instance}" as the instance name`,
        'warning',
      );
    } else {
      this.note(
        `instance: ${instance} (${INSTANCE_VARIABLE} from ${ctx.instanceSetting.source === 'target' ? `process ${ctx.targetPid}` : 'the environment'})`,
      );
    }
    if (ctx.containerSasUrl) {
      this.note(
        `uploads to ${redactUrl(parseContainerSasUrl(ctx.containerSasUrl).containerUrl)} (${SAS_VARIABLE} from ${ctx.sasSource === 'target' ? `process ${ctx.targetPid}` : 'the environment'})`,
      );
    } else if (this.collecting) {
      this.note(
        `${SAS_VARIABLE} is not set (here or in the target's environment): dumps and traces are kept locally in ${logDir}`,
        'warning',
      );
    }
    if (o.durationMs !== undefined) this.note(`Monitoring will run for ${hoursText(o.durationMs)} and then automatically clean up`);

    let endpoint: DotnetTarget | undefined = ctx.target.endpoint;
    const resolveTarget = async (): Promise<DotnetTarget> => {
      if (o.pid !== undefined) return findDiagnosticSocket(o.pid);
      const current = endpoint as DotnetProcess | undefined;
      if (current) {
        try {
          return await findDiagnosticSocket(current.pid);
        } catch {
          this.note(`the .NET process ${current.pid} is gone; looking for another`);
        }
      }
      const choice = await chooseDotnetTarget(ctx.sampler, { excludeLocalPorts: ctx.excludeLocalPorts });
      if (!choice.chosen) throw new Error('no .NET process found any more');
      this.note(`target: ${choice.reason}`);
      endpoint = choice.chosen;
      return choice.chosen;
    };

    const collector = new DiagnosticsCollector({
      instance,
      target: this.collecting ? resolveTarget : undefined,
      dump: o.dump,
      trace: o.trace,
      dumpType: o.dumpType,
      traceDurationMs: o.traceDurationMs,
      outputDir: logDir,
      lockDir: logDir,
      stateDir,
      containerSasUrl: ctx.containerSasUrl,
      keepLocal: o.keepLocal,
      blockSize: o.blockSize,
      concurrency: o.concurrency,
      retryDelayMs: o.retryDelayMs,
    });
    collector.on('step', (s: CollectionStep) => {
      const line = formatStep(s);
      log.write(line ? [line] : undefined, stepRecord(s), s.time);
      if (line) (line.includes('ERROR:') || line.includes('WARNING:') ? this.warn : this.print)(redactText(line));
    });

    const watcher = new OutboundWatcher({
      threshold: o.threshold,
      intervalMs: o.intervalMs,
      excludeLocalPorts: ctx.excludeLocalPorts,
      pid: o.pid,
      windowMs: o.windowMs,
      thresholdOn: o.thresholdOn,
      sampler: ctx.sampler,
    });

    let finish!: (end: SessionEnd) => void;
    const ended = new Promise<SessionEnd>((resolve) => (finish = resolve));
    let finishedNoted = false;
    collector.on('finished', () => {
      if (finishedNoted) return;
      finishedNoted = true;
      this.note(
        ctx.containerSasUrl
          ? 'All enabled diagnostics have been collected and uploaded successfully.'
          : `All enabled diagnostics have been collected (kept locally in ${logDir}: no ${SAS_VARIABLE}).`,
      );
      if (o.keepRunning) this.note('--keep-running: monitoring goes on');
      else finish('finished');
    });

    collector.on('stalled', ({ failed }) => {
      this.note(
        `Not every enabled diagnostic could be collected and uploaded (failed: ${failed.join(', ')}); monitoring goes on. ` +
          'Failed uploads resume at the next start; stop with -c, -d or a signal.',
        'warning',
      );
    });

    const pending = collector.resumePending();
    for (const p of pending.resumed)
      this.note(`found the pending upload of ${path.basename(p.filePath)} (${p.kind} of ${p.instance}, ${p.createdAt}); resuming it`);
    for (const p of pending.keptForLater)
      this.note(`pending upload of ${p.filePath} kept: no ${SAS_VARIABLE} to upload it with`, 'warning');
    for (const f of pending.unreadable) this.note(`ignoring the unreadable pending-upload record ${f}`, 'warning');

    let pidExitNoted = false;
    let wasExceeded = false;
    watcher.on('poll', (poll: OutboundPoll) => {
      log.write(formatPollBlock(poll), pollRecord(poll), poll.time);
      // The terminal hears of changes only; the log has every poll.
      if (poll.exceeded !== wasExceeded) {
        wasExceeded = poll.exceeded;
        this.print(
          poll.exceeded
            ? `${logTimestamp(poll.time)}: Connection threshold exceeded: ${poll.busiest?.remote} has ${poll.busiestCount} (threshold ${poll.threshold})`
            : `${logTimestamp(poll.time)}: Connection count back within threshold`,
        );
      }
      if (poll.exceeded && collector.enabled)
        collector.trigger({ remote: poll.busiest?.remote, count: poll.busiestCount, threshold: poll.threshold });
      if (poll.pidAlive === false && !pidExitNoted) {
        pidExitNoted = true;
        this.note(`process ${poll.pid} has exited`, 'warning');
      }
    });
    watcher.on('error', (err: Error) => this.note(`ERROR: poll failed: ${err.message}`, 'warning'));

    let durationTimer: NodeJS.Timeout | undefined;
    if (o.durationMs !== undefined) durationTimer = setTimeout(() => finish('duration'), o.durationMs);
    const onAbort = (): void => finish('signal');
    if (o.signal?.aborted) finish('signal');
    o.signal?.addEventListener('abort', onAbort, { once: true });

    watcher.start();
    const end = await ended;
    clearTimeout(durationTimer);
    o.signal?.removeEventListener('abort', onAbort);

    if (end === 'duration') this.note(`Duration timer expired after ${hoursText(o.durationMs!)}. Initiating automatic cleanup...`);
    else if (end === 'signal') this.note('Stop requested (signal). Stopping; unfinished uploads resume at the next start...');
    else this.note('Initiating automatic cleanup...');
    await watcher.stop();
    await collector.stop();
    for (const file of removeStaleLocks(logDir))
      this.note(`removed the stale lock ${path.basename(file)} (its owner is no longer running)`);
    this.note('Completed');
    return { end, instance, logDir, ...(ctx.targetPid !== undefined ? { targetPid: ctx.targetPid } : {}) };
  }
}
