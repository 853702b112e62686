// One `sockwatch snat` run, wired from the pieces: target choice, instance and SAS settings, the
// pidfile, the hourly log, the watcher (polling) and the collector (dump, trace, upload) beside it.
// It ends when every enabled collection is uploaded (unless keepRunning), when the duration is
// over, or when `signal` fires; each way it stops cleanly and removes its pidfile and locks.
// Rule: the wiring reads top to bottom as named steps (run → monitor → noteStart, createCollector,
// createWatcher, followCollector, resumePendingUploads, followPolls, RunEnding, stop); the SAS URL is
// parsed once here (resolveSas) and passed on as a ContainerSasUrl.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findDiagnosticSocket, type DotnetProcess, type DotnetTarget } from '../dotnet/discovery';
import { ensureDir } from '../base/fs';
import { redactText } from '../base/redact';
import { Sampler, type PortSpec } from '../sampler';
import { parseContainerSasUrl, SAS_URL_VARIABLE, type ContainerSasUrl } from '../upload/sas-url';
import { DiagnosticsCollector, type CollectionStep } from './collector';
import { FleetCoordinator } from '../fleet/coordinator';
import { FleetGate, leaseTroubleText } from '../fleet/gate';
import type { FleetLimits } from '../fleet/limits';
import { HourlyLog } from './hourly-log';
import { formatPollBlock, logTimestamp, pollRecord } from './log-format';
import { acquireOwnerFile, releaseOwnerFile } from '../base/pid-lock';
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
  /** Count only connections from (to) these addresses or CIDR prefixes (OutboundWatcher's options). */
  localAddresses?: readonly string[];
  remoteAddresses?: readonly string[];
  /** The .NET process to watch and collect from; only its sockets are counted. */
  pid?: number;
  windowMs?: number;
  thresholdOn?: ThresholdBasis;
  keepRunning?: boolean;
  keepLocal?: boolean;
  /**
   * Fleet-wide limits kept in the SAS URL's container (lib/fleet/): at most `max` collections start
   * per `windowMs` (storage clock) and at most `concurrent` run at once, across every instance using
   * that container. Needs collection enabled and a SAS URL.
   */
  fleet?: FleetLimits;
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
  maxRetryDelayMs?: number;
  /** Stops the run (SIGTERM/SIGINT). */
  signal?: AbortSignal;
  /** Terminal lines (info, exceeded, collection steps). */
  print?: (line: string) => void;
  /** Warnings for the terminal (stderr). */
  warn?: (line: string) => void;
  /** Every poll and every collection step as it happens (snat --metrics-listen counts them). */
  onPoll?: (poll: OutboundPoll) => void;
  onStep?: (step: CollectionStep) => void;
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

/** Fleet limits asked for without what they need (collection, a SAS URL): exit code 2. */
export class FleetSetupError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'FleetSetupError';
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
      const sas = this.resolveSas(env, targetPid);
      if (o.fleet !== undefined && !this.collecting)
        throw new FleetSetupError('fleet limits apply to collections: enable a dump or a trace');
      if (o.fleet !== undefined && !sas.value) {
        throw new FleetSetupError(
          `fleet limits need a container SAS URL: ${SAS_URL_VARIABLE} is not set here or in the target's environment (the instances coordinate through its container)`,
        );
      }

      ensureDir(logDir);
      const pidfile = path.join(logDir, PIDFILE_NAME);
      const claim = acquireOwnerFile(pidfile, { what: 'sockwatch snat', instance });
      if (!claim.acquired) {
        throw new SnatStartError(
          `another sockwatch snat (pid ${claim.owner.pid}) is running with log dir ${logDir}; stop it with "sockwatch snat -c --log-dir ${logDir}"`,
        );
      }
      try {
        this.log = new HourlyLog({ baseDir: logDir, instance });
        if (sas.problem) this.note(sas.problem, 'warning');
        return await this.monitor({
          sampler,
          target,
          instance,
          instanceSource: instanceSetting.source,
          sas: sas.value,
          sasSource: sas.source,
          logDir,
          stateDir: path.resolve(o.stateDir ?? path.join(logDir, STATE_DIR_NAME)),
          excludeLocalPorts,
          takenOverFrom: claim.takenOverFrom?.pid,
          targetPid,
          fleetGate: this.fleetGate(instance, sas.value),
        });
      } finally {
        releaseOwnerFile(pidfile);
      }
    } finally {
      await sampler.close();
    }
  }

  /** The fleet limits' gate (lines to the log and the terminal), when asked for. */
  private fleetGate(instance: string, sas: ContainerSasUrl | undefined): FleetGate | undefined {
    if (this.o.fleet === undefined || !sas) return undefined;
    const report = (text: string, level: 'info' | 'warning'): void => this.note(text, level);
    const coordinator = new FleetCoordinator({
      containerSas: sas,
      limits: this.o.fleet,
      instance,
      onLeaseTrouble: (t) => {
        const line = leaseTroubleText(t);
        report(line.text, line.level);
      },
    });
    return new FleetGate(coordinator, { report });
  }

  /**
   * The container SAS from SAS_URL_VARIABLE (ours, else the target's environment), parsed here once
   * for the whole run. A bad one stops a collecting run; a monitoring run warns and goes on without.
   */
  private resolveSas(env: NodeJS.ProcessEnv, targetPid: number | undefined): { value?: ContainerSasUrl; source: string; problem?: string } {
    const setting = resolveSetting(SAS_URL_VARIABLE, env, targetPid);
    if (setting.value === undefined) return { source: setting.source };
    try {
      const value = parseContainerSasUrl(setting.value);
      const problem = value.uploadProblem();
      if (problem !== undefined) throw new Error(problem);
      return { value, source: setting.source };
    } catch (err) {
      const from = setting.source === 'target' ? `process ${targetPid}` : 'the environment';
      const problem = `${SAS_URL_VARIABLE} (from ${from}): ${(err as Error).message}`;
      if (this.collecting) throw new SnatStartError(problem);
      return { source: setting.source, problem: `${problem}; ignored (monitoring only)` };
    }
  }

  /** The run once the pidfile is ours, step by step. */
  private async monitor(ctx: RunContext): Promise<SessionResult> {
    this.noteStart(ctx);
    const collector = this.createCollector(ctx);
    const watcher = this.createWatcher(ctx);
    const ending = new RunEnding();
    this.followCollector(collector, ctx, ending);
    this.resumePendingUploads(collector);
    this.followPolls(watcher, collector);
    ending.arm(this.o.durationMs, this.o.signal);

    watcher.start();
    const end = await ending.ended;
    ending.disarm();

    await this.stop(end, ctx, watcher, collector);
    return { end, instance: ctx.instance, logDir: ctx.logDir, ...(ctx.targetPid !== undefined ? { targetPid: ctx.targetPid } : {}) };
  }

  /** What this run does, where it logs, whom it watches, where files go: the opening notes. */
  private noteStart(ctx: RunContext): void {
    const o = this.o;
    const what =
      o.dump && o.trace
        ? 'memory dump and profiler trace'
        : o.dump
          ? 'memory dump'
          : o.trace
            ? 'profiler trace'
            : 'no collection (monitor only)';
    const counted =
      o.thresholdOn === 'window'
        ? `distinct connections per destination in ${(o.windowMs ?? DEFAULT_WINDOW_MS) / 1000} s`
        : 'connections per destination';
    this.note(
      `sockwatch snat started (pid ${process.pid}): threshold ${o.threshold ?? DEFAULT_THRESHOLD} ${counted}, every ${(o.intervalMs ?? DEFAULT_INTERVAL_MS) / 1000} s, excluded local ports ${ctx.excludeLocalPorts.join(',')}; on exceeding: ${what}`,
    );
    this.note(`log: ${this.log!.textPath()}`);
    if (ctx.takenOverFrom !== undefined)
      this.note(`took over the stale pidfile of process ${ctx.takenOverFrom}, which is no longer running`);
    if (ctx.target.endpoint) this.note(`target: ${ctx.target.reason}`);
    else if (o.pid !== undefined) this.note(`counting only the connections of process ${o.pid}; ${ctx.target.reason}`);
    else this.note(`${ctx.target.reason}; monitoring only`);
    const from = (source: string): string => (source === 'target' ? `process ${ctx.targetPid}` : 'the environment');
    if (ctx.instanceSource === 'none') {
      this.note(
        `${INSTANCE_VARIABLE} is not set (here or in the target's environment): using the host name "${ctx.instance}" as the instance name`,
        'warning',
      );
    } else {
      this.note(`instance: ${ctx.instance} (${INSTANCE_VARIABLE} from ${from(ctx.instanceSource)})`);
    }
    if (ctx.sas) {
      this.note(`uploads to ${ctx.sas.containerUrl} (${SAS_URL_VARIABLE} from ${from(ctx.sasSource)})`);
    } else if (this.collecting) {
      this.note(
        `${SAS_URL_VARIABLE} is not set (here or in the target's environment): dumps and traces are kept locally in ${ctx.logDir}`,
        'warning',
      );
    }
    if (ctx.fleetGate && ctx.sas) this.note(ctx.fleetGate.describe(ctx.sas.containerName));
    if (o.durationMs !== undefined) this.note(`Monitoring will run for ${hoursText(o.durationMs)} and then automatically clean up`);
  }

  /**
   * The .NET process at collection time: --pid's, else the one chosen at start while it lives, else
   * a new choice (the app may have restarted).
   */
  private targetResolver(ctx: RunContext): () => Promise<DotnetTarget> {
    const o = this.o;
    let endpoint: DotnetTarget | undefined = ctx.target.endpoint;
    return async () => {
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
  }

  /** The collector, its steps written to the log (and the terminal). */
  private createCollector(ctx: RunContext): DiagnosticsCollector {
    const o = this.o;
    const collector = new DiagnosticsCollector({
      instance: ctx.instance,
      target: this.collecting ? this.targetResolver(ctx) : undefined,
      dump: o.dump,
      trace: o.trace,
      dumpType: o.dumpType,
      traceDurationMs: o.traceDurationMs,
      outputDir: ctx.logDir,
      lockDir: ctx.logDir,
      stateDir: ctx.stateDir,
      containerSas: ctx.sas,
      keepLocal: o.keepLocal,
      blockSize: o.blockSize,
      concurrency: o.concurrency,
      retryDelayMs: o.retryDelayMs,
      maxRetryDelayMs: o.maxRetryDelayMs,
      ...(ctx.fleetGate ? { gate: ctx.fleetGate } : {}),
    });
    collector.on('step', (s: CollectionStep) => {
      o.onStep?.(s);
      const line = formatStep(s);
      this.log!.write(line ? [line] : undefined, stepRecord(s), s.time);
      if (line) (line.includes('ERROR:') || line.includes('WARNING:') ? this.warn : this.print)(redactText(line));
    });
    return collector;
  }

  private createWatcher(ctx: RunContext): OutboundWatcher {
    const o = this.o;
    return new OutboundWatcher({
      threshold: o.threshold,
      intervalMs: o.intervalMs,
      excludeLocalPorts: ctx.excludeLocalPorts,
      ...(o.localAddresses !== undefined ? { localAddresses: o.localAddresses } : {}),
      ...(o.remoteAddresses !== undefined ? { remoteAddresses: o.remoteAddresses } : {}),
      pid: o.pid,
      windowMs: o.windowMs,
      thresholdOn: o.thresholdOn,
      sampler: ctx.sampler,
    });
  }

  /** Every collection done → the run ends (unless keepRunning); some failed → a warning, it goes on. */
  private followCollector(collector: DiagnosticsCollector, ctx: RunContext, ending: RunEnding): void {
    let finishedNoted = false;
    collector.on('finished', () => {
      if (finishedNoted) return;
      finishedNoted = true;
      this.note(
        ctx.sas
          ? 'All enabled diagnostics have been collected and uploaded successfully.'
          : `All enabled diagnostics have been collected (kept locally in ${ctx.logDir}: no ${SAS_URL_VARIABLE}).`,
      );
      if (this.o.keepRunning) this.note('--keep-running: monitoring goes on');
      else ending.finish('finished');
    });
    collector.on('stalled', ({ failed }) => {
      this.note(
        `Not every enabled diagnostic could be collected and uploaded (failed: ${failed.join(', ')}); monitoring goes on. ` +
          'Uploads that failed for good (refused by the storage) resume at the next start; stop with -c, -d or a signal.',
        'warning',
      );
    });
  }

  /** Uploads an earlier run left unfinished: resumed now, or kept for a run with a SAS URL. */
  private resumePendingUploads(collector: DiagnosticsCollector): void {
    const pending = collector.resumePending();
    for (const p of pending.resumed)
      this.note(`found the pending upload of ${path.basename(p.filePath)} (${p.kind} of ${p.instance}, ${p.createdAt}); resuming it`);
    for (const p of pending.keptForLater)
      this.note(`pending upload of ${p.filePath} kept: no ${SAS_URL_VARIABLE} to upload it with`, 'warning');
    for (const f of pending.unreadable) this.note(`ignoring the unreadable pending-upload record ${f}`, 'warning');
    for (const e of pending.refused) this.note(e.message, 'warning');
  }

  /** Each poll to the log; threshold changes to the terminal; an exceeded poll triggers collection. */
  private followPolls(watcher: OutboundWatcher, collector: DiagnosticsCollector): void {
    let pidExitNoted = false;
    let wasExceeded = false;
    let attributionMode: string | undefined;
    watcher.on('poll', (poll: OutboundPoll) => {
      this.o.onPoll?.(poll);
      // How the pid's connections are counted: one line at the first poll and whenever it changes.
      if (poll.attribution && poll.attribution.mode !== attributionMode) {
        attributionMode = poll.attribution.mode;
        const mode = attributionMode === 'namespace' ? 'network namespace' : 'process sockets';
        this.note(`counting mode: ${mode}: ${poll.attribution.reason}`);
      }
      this.log!.write(formatPollBlock(poll), pollRecord(poll), poll.time);
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
  }

  /** Says why the run ends, stops polling and collecting, removes stale locks. */
  private async stop(end: SessionEnd, ctx: RunContext, watcher: OutboundWatcher, collector: DiagnosticsCollector): Promise<void> {
    if (end === 'duration') this.note(`Duration timer expired after ${hoursText(this.o.durationMs!)}. Initiating automatic cleanup...`);
    else if (end === 'signal') this.note('Stop requested (signal). Stopping; unfinished uploads resume at the next start...');
    else this.note('Initiating automatic cleanup...');
    await watcher.stop();
    await collector.stop();
    for (const file of removeStaleLocks(ctx.logDir))
      this.note(`removed the stale lock ${path.basename(file)} (its owner is no longer running)`);
    this.note('Completed');
  }
}

/** What run() learnt before monitoring starts. */
interface RunContext {
  sampler: Sampler;
  target: Target;
  instance: string;
  instanceSource: string;
  sas: ContainerSasUrl | undefined;
  sasSource: string;
  logDir: string;
  stateDir: string;
  excludeLocalPorts: readonly PortSpec[];
  takenOverFrom: number | undefined;
  targetPid: number | undefined;
  fleetGate: FleetGate | undefined;
}

/** The first of three endings settles the run: all collected, the duration over, the stop signal. */
class RunEnding {
  finish!: (end: SessionEnd) => void;
  readonly ended = new Promise<SessionEnd>((resolve) => (this.finish = resolve));
  private timer: NodeJS.Timeout | undefined;
  private signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.finish('signal');

  arm(durationMs: number | undefined, signal: AbortSignal | undefined): void {
    if (durationMs !== undefined) this.timer = setTimeout(() => this.finish('duration'), durationMs);
    this.signal = signal;
    if (signal?.aborted) this.finish('signal');
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  disarm(): void {
    clearTimeout(this.timer);
    this.signal?.removeEventListener('abort', this.onAbort);
  }
}
