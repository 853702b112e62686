// DiagnosticsCollector: what happens when the threshold is exceeded, apart from the polling loop.
//
// For each enabled kind (memory dump, profiler trace), once per run, as the original script: take
// the per-instance lock (dump_taken_{instance}.lock / trace_taken_{instance}.lock, stale ones taken
// over), collect through the diagnostics socket, record the file as a pending upload, upload it to
// the container SAS URL (resumable, retried, confirmed), then drop the record. Without a SAS URL
// the file is kept locally. Everything is reported as `step` events; nothing here prints.
// An upload keeps retrying transient failures within the run (capped backoff, base/backoff.ts) until
// it succeeds or the run stops; a terminal failure (403, 404, expired SAS) ends it with the reason.
// Its pending record stays in every case but success.
import * as os from 'node:os';
import * as path from 'node:path';
import { TypedEmitter } from '../base/emitter';
import { safeInstanceName } from '../base/instance-name';
import type { DotnetTarget } from '../dotnet/discovery';
import { writeDump } from '../dotnet/dump';
import { dumpFileName, traceFileName } from '../dotnet/file-names';
import { collectTrace } from '../dotnet/trace';
import { parseDumpType, type DumpTypeName } from '../dotnet/dump-types';
import { redactText } from '../base/redact';
import { DEFAULT_BLOCK_SIZE } from '../upload/options';
import { SAS_URL_VARIABLE, type ContainerSasUrl } from '../upload/sas-url';
import { uploadFile } from '../upload/blob-upload';
import { UploadAbortedError } from '../upload/errors';
import type { UploadEvent } from '../upload/events';
import { acquireOwnerFile, releaseOwnerFile } from '../base/pid-lock';
import { listPending, PENDING_VERSION, removePending, writePending, type CollectionKind, type PendingUpload } from './pending';

export type { CollectionKind };

export interface CollectorOptions {
  /** Instance name (COMPUTERNAME): in file, lock and blob names. */
  instance: string;
  /** The .NET process, or a function giving it at collection time. Needed when dump or trace is on. */
  target?: DotnetTarget | (() => Promise<DotnetTarget>);
  dump?: boolean;
  trace?: boolean;
  /** Normal, WithHeap, Triage or Full (default Full). */
  dumpType?: string;
  /** Trace length in ms (default 60 000, as the script's dotnet-trace --duration 00:01:00). */
  traceDurationMs?: number;
  /** Where dumps and traces are written. */
  outputDir: string;
  /** Where the per-instance lock files live. */
  lockDir: string;
  /** Pending-upload and upload records. */
  stateDir: string;
  /** The container SAS, parsed once where it entered; without it files are kept locally. */
  containerSas?: ContainerSasUrl;
  /** Keep local files after a confirmed upload. */
  keepLocal?: boolean;
  /** Upload attempts (default 5, at least 5 as the script). */
  maxAttempts?: number;
  /** Upload tuning (tests): block size in bytes, blocks in flight, first retry delay, its cap. */
  blockSize?: number;
  concurrency?: number;
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** Extra blob metadata. */
  metadata?: Record<string, string>;
  /** Clock (file names). */
  now?: () => Date;
  /** Asked before each collection starts (fleet limits, lib/fleet/gate.ts); none: always allowed. */
  gate?: CollectionGate;
}

/**
 * A gate before each collection: a permit, released once the collection's kinds are done (collected
 * and uploaded, or failed), or undefined: not now (the trigger is asked again at a later poll).
 * Never rejects. Uploads resumed from an earlier run are not collections and do not ask.
 */
export interface CollectionGate {
  admit(request: {
    kinds: CollectionKind[];
    destination?: string;
    count?: number;
    threshold?: number;
  }): Promise<{ release(): Promise<void> } | undefined>;
}

/** What exceeded the threshold (blob metadata and log). */
export interface TriggerInfo {
  remote?: string;
  count?: number;
  threshold?: number;
}

interface StepBase {
  time: Date;
  kind: CollectionKind;
}

export type CollectionStep = StepBase &
  (
    | { step: 'lock-busy'; lockFile: string; ownerPid: number }
    | { step: 'lock-acquired'; lockFile: string; takenOverFrom?: number }
    | { step: 'collecting'; filePath: string; pid: number; dumpType?: DumpTypeName; durationMs?: number }
    | { step: 'collected'; filePath: string; bytes: number; endedCleanly?: boolean }
    | { step: 'collect-failed'; error: string; interrupted: boolean }
    | { step: 'kept-local'; filePath: string; reason: string }
    | { step: 'uploading'; filePath: string; blobName: string; container: string; resumed: boolean }
    | { step: 'upload-event'; filePath: string; event: UploadEvent }
    | { step: 'upload-progress'; filePath: string; doneBytes: number; totalBytes: number; doneBlocks: number; totalBlocks: number }
    | {
        step: 'uploaded';
        filePath: string;
        blobName: string;
        blobUrl: string;
        bytes: number;
        contentMD5: string;
        attempts: number;
        reusedBlocks: number;
        localDeleted: boolean;
      }
    | { step: 'upload-failed'; filePath: string; error: string; attempts?: number }
    | { step: 'upload-interrupted'; filePath: string }
    | { step: 'pending-dropped'; filePath: string; reason: string }
  );

/** A step without its time (distributes over the union). */
type StepInput = CollectionStep extends infer S ? (S extends unknown ? Omit<S, 'time'> : never) : never;

export interface CollectorEvents {
  step: CollectionStep;
  /** Every enabled kind is done (uploaded and confirmed, or kept locally without a SAS URL). Once. */
  finished: { time: Date };
  /** Nothing is left to do but some kinds failed (not retried in this run). Once. */
  stalled: { time: Date; failed: CollectionKind[] };
}

export type KindState = 'off' | 'idle' | 'running' | 'done' | 'failed';

const KIND_WORDS: Record<CollectionKind, string> = { dump: 'memory dump', trace: 'profiler trace' };

/** `dump_taken_{instance}.lock` / `trace_taken_{instance}.lock`, the script's names. */
export function lockFileName(kind: CollectionKind, instance: string): string {
  return `${kind}_taken_${safeInstanceName(instance)}.lock`;
}

function ascii(v: string): string {
  return v.replace(/[^\x20-\x7e]/g, '?');
}

function message(err: unknown): string {
  return redactText(err instanceof Error ? err.message : String(err));
}

export class DiagnosticsCollector extends TypedEmitter<CollectorEvents> {
  readonly instance: string;
  private readonly opts: CollectorOptions;
  private readonly dumpType: DumpTypeName;
  private readonly traceDurationMs: number;
  private readonly states: Record<CollectionKind, KindState>;
  private readonly locks = new Set<string>();
  private readonly busyReported = new Map<CollectionKind, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private readonly now: () => Date;
  private finishedEmitted = false;
  private admitting = false;

  constructor(options: CollectorOptions) {
    super();
    if (options === null || typeof options !== 'object') throw new TypeError('DiagnosticsCollector options must be an object');
    if (typeof options.instance !== 'string' || options.instance === '') throw new TypeError('instance must be a non-empty string');
    for (const name of ['outputDir', 'lockDir', 'stateDir'] as const) {
      if (typeof options[name] !== 'string' || options[name] === '') throw new TypeError(`${name} must be a non-empty string`);
    }
    if ((options.dump || options.trace) && options.target === undefined)
      throw new TypeError('target is required when dump or trace is enabled');
    this.dumpType = parseDumpType(options.dumpType ?? 'full', 'dumpType');
    this.traceDurationMs = options.traceDurationMs ?? 60_000;
    if (!Number.isFinite(this.traceDurationMs) || this.traceDurationMs <= 0) {
      throw new RangeError(`traceDurationMs must be a positive number, got ${String(options.traceDurationMs)}`);
    }
    if (options.maxAttempts !== undefined && (!Number.isInteger(options.maxAttempts) || options.maxAttempts < 5)) {
      throw new RangeError(`maxAttempts must be an integer of at least 5, got ${String(options.maxAttempts)}`);
    }
    this.opts = options;
    this.instance = options.instance;
    this.now = options.now ?? (() => new Date());
    this.states = { dump: options.dump ? 'idle' : 'off', trace: options.trace ? 'idle' : 'off' };
  }

  /** The state of one kind: off (not enabled), idle, running, done (uploaded or kept locally), failed. */
  state(kind: CollectionKind): KindState {
    return this.states[kind];
  }

  get enabled(): boolean {
    return this.states.dump !== 'off' || this.states.trace !== 'off';
  }

  /** Every enabled kind is done and nothing is in flight. */
  get allDone(): boolean {
    const finished = (s: KindState): boolean => s === 'off' || s === 'done';
    return this.enabled && finished(this.states.dump) && finished(this.states.trace) && this.inFlight.size === 0;
  }

  /** Work in flight (collections and uploads). */
  get busy(): boolean {
    return this.inFlight.size > 0;
  }

  private step(s: StepInput): void {
    this.emit('step', { time: this.now(), ...s } as CollectionStep);
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => {
      this.inFlight.delete(p);
      if (this.finishedEmitted || this.inFlight.size > 0) return;
      if (this.allDone) {
        this.finishedEmitted = true;
        this.emit('finished', { time: this.now() });
        return;
      }
      const kinds = (['dump', 'trace'] as const).filter((k) => this.states[k] !== 'off');
      const failed = kinds.filter((k) => this.states[k] === 'failed');
      if (failed.length > 0 && kinds.every((k) => this.states[k] === 'failed' || this.states[k] === 'done')) {
        this.finishedEmitted = true;
        this.emit('stalled', { time: this.now(), failed });
      }
    });
  }

  /**
   * The threshold was exceeded: starts each enabled kind not started yet in this run (with a gate:
   * once it allows; one question at a time).
   */
  trigger(info: TriggerInfo = {}): void {
    if (this.abort.signal.aborted || this.admitting) return;
    const gate = this.opts.gate;
    if (!gate) {
      this.start(info);
      return;
    }
    const kinds = (['dump', 'trace'] as const).filter((k) => this.states[k] === 'idle');
    if (kinds.length === 0) return;
    this.admitting = true;
    const { remote: destination, count, threshold } = info;
    this.track(
      (async () => {
        let permit: { release(): Promise<void> } | undefined;
        try {
          permit = await gate.admit({ kinds, destination, count, threshold });
        } finally {
          this.admitting = false;
        }
        if (!permit) return;
        const started = this.abort.signal.aborted ? [] : this.start(info);
        await Promise.allSettled(started);
        await permit.release();
      })(),
    );
  }

  /** Starts each idle kind whose per-instance lock is free; returns their promises. */
  private start(info: TriggerInfo): Promise<void>[] {
    const started: Promise<void>[] = [];
    for (const kind of ['dump', 'trace'] as const) {
      if (this.states[kind] !== 'idle') continue;
      const lockFile = path.join(this.opts.lockDir, lockFileName(kind, this.instance));
      const got = acquireOwnerFile(lockFile, { what: KIND_WORDS[kind], instance: this.instance });
      if (!got.acquired) {
        if (this.busyReported.get(kind) !== got.owner.pid) {
          this.busyReported.set(kind, got.owner.pid);
          this.step({ kind, step: 'lock-busy', lockFile, ownerPid: got.owner.pid });
        }
        continue;
      }
      this.locks.add(lockFile);
      this.states[kind] = 'running';
      this.step({ kind, step: 'lock-acquired', lockFile, ...(got.takenOverFrom ? { takenOverFrom: got.takenOverFrom.pid } : {}) });
      const p = this.collect(kind, info);
      this.track(p);
      started.push(p);
    }
    return started;
  }

  private async target(): Promise<DotnetTarget> {
    const t = this.opts.target!;
    return typeof t === 'function' ? t() : t;
  }

  private async collect(kind: CollectionKind, info: TriggerInfo): Promise<void> {
    const signal = this.abort.signal;
    const at = this.now();
    const filePath = path.resolve(
      this.opts.outputDir,
      kind === 'dump' ? dumpFileName(this.instance, at) : traceFileName(this.instance, at),
    );
    let pid = 0;
    let bytes: number;
    try {
      const target = await this.target();
      pid = typeof target === 'number' ? target : target.pid;
      if (kind === 'dump') {
        this.step({ kind, step: 'collecting', filePath, pid, dumpType: this.dumpType });
        bytes = (await writeDump(target, filePath, { type: this.dumpType, signal })).bytes;
        this.step({ kind, step: 'collected', filePath, bytes });
      } else {
        this.step({ kind, step: 'collecting', filePath, pid, durationMs: this.traceDurationMs });
        const r = await collectTrace(target, filePath, { durationMs: this.traceDurationMs, signal });
        bytes = r.bytes;
        this.step({ kind, step: 'collected', filePath, bytes, endedCleanly: r.endedCleanly });
      }
    } catch (err) {
      this.states[kind] = 'failed';
      this.step({ kind, step: 'collect-failed', error: message(err), interrupted: signal.aborted });
      return;
    }
    if (!this.opts.containerSas) {
      this.states[kind] = 'done';
      this.step({ kind, step: 'kept-local', filePath, reason: `no ${SAS_URL_VARIABLE}` });
      return;
    }
    const metadata: Record<string, string> = {
      ...(this.opts.metadata ?? {}),
      instance: ascii(this.instance),
      kind,
      pid: String(pid),
      host: ascii(os.hostname()),
      collectedAt: at.toISOString(),
      tool: 'sockwatch',
      ...(kind === 'dump' ? { dumpType: this.dumpType } : { traceSeconds: String(this.traceDurationMs / 1000) }),
      ...(info.remote !== undefined ? { remote: ascii(info.remote) } : {}),
      ...(info.count !== undefined ? { connections: String(info.count) } : {}),
      ...(info.threshold !== undefined ? { threshold: String(info.threshold) } : {}),
    };
    const pending: PendingUpload = {
      version: PENDING_VERSION,
      kind,
      instance: this.instance,
      filePath,
      blobName: path.basename(filePath),
      blockSize: this.opts.blockSize ?? DEFAULT_BLOCK_SIZE,
      metadata,
      keepLocal: this.opts.keepLocal ?? false,
      createdAt: at.toISOString(),
    };
    writePending(this.opts.stateDir, pending);
    if (signal.aborted) {
      this.step({ kind, step: 'upload-interrupted', filePath });
      return;
    }
    await this.upload(pending, kind, false);
  }

  /** Uploads a pending file; `owns` = the kind whose state follows the outcome. */
  private async upload(pending: PendingUpload, owns: CollectionKind | undefined, resumed: boolean): Promise<void> {
    const kind = pending.kind;
    const { filePath } = pending;
    this.step({
      kind,
      step: 'uploading',
      filePath,
      blobName: pending.blobName,
      container: this.opts.containerSas?.containerName ?? '',
      resumed,
    });
    let decile = -1;
    try {
      const r = await uploadFile({
        containerSasUrl: this.opts.containerSas!,
        filePath,
        blobName: pending.blobName,
        metadata: pending.metadata,
        keepLocal: pending.keepLocal,
        stateDir: this.opts.stateDir,
        blockSize: pending.blockSize,
        ...(this.opts.concurrency !== undefined ? { concurrency: this.opts.concurrency } : {}),
        ...(this.opts.retryDelayMs !== undefined ? { retryDelayMs: this.opts.retryDelayMs } : {}),
        ...(this.opts.maxRetryDelayMs !== undefined ? { maxRetryDelayMs: this.opts.maxRetryDelayMs } : {}),
        maxAttempts: this.opts.maxAttempts ?? 5,
        retryUntilAborted: true,
        signal: this.abort.signal,
        onEvent: (event) => {
          if (event.type === 'block-staged') {
            const d = Math.floor((event.doneBytes / Math.max(event.totalBytes, 1)) * 10);
            if (d === decile) return;
            decile = d;
            const { doneBytes, totalBytes, doneBlocks, totalBlocks } = event;
            this.step({ kind, step: 'upload-progress', filePath, doneBytes, totalBytes, doneBlocks, totalBlocks });
            return;
          }
          this.step({ kind, step: 'upload-event', filePath, event });
        },
      });
      removePending(this.opts.stateDir, filePath);
      if (owns) this.states[owns] = 'done';
      this.step({
        kind,
        step: 'uploaded',
        filePath,
        blobName: r.blobName,
        blobUrl: r.blobUrl,
        bytes: r.size,
        contentMD5: r.contentMD5,
        attempts: r.attempts,
        reusedBlocks: r.reusedBlocks,
        localDeleted: r.localDeleted,
      });
    } catch (err) {
      if (err instanceof UploadAbortedError || this.abort.signal.aborted) {
        this.step({ kind, step: 'upload-interrupted', filePath });
        return;
      }
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        removePending(this.opts.stateDir, filePath);
        if (owns) this.states[owns] = 'failed';
        this.step({ kind, step: 'pending-dropped', filePath, reason: 'the file no longer exists' });
        return;
      }
      if (owns) this.states[owns] = 'failed';
      const attempts = (err as { attempts?: number }).attempts;
      this.step({ kind, step: 'upload-failed', filePath, error: message(err), ...(attempts !== undefined ? { attempts } : {}) });
    }
  }

  /**
   * Resumes the uploads a stopped or killed run left pending. A resumed dump or trace of this
   * instance counts as this run's collection of that kind (it is not collected again). Without a
   * SAS URL, pending records are kept and reported (keptForLater).
   */
  resumePending(): { resumed: PendingUpload[]; keptForLater: PendingUpload[]; unreadable: string[]; refused: Error[] } {
    const { records, unreadable, refused } = listPending(this.opts.stateDir);
    const resumed: PendingUpload[] = [];
    const keptForLater: PendingUpload[] = [];
    for (const p of records) {
      if (!this.opts.containerSas) {
        keptForLater.push(p);
        continue;
      }
      let owns: CollectionKind | undefined;
      if (p.instance === this.instance && this.states[p.kind] === 'idle') {
        owns = p.kind;
        this.states[p.kind] = 'running';
      }
      resumed.push(p);
      this.track(this.upload(p, owns, true));
    }
    return { resumed, keptForLater, unreadable, refused };
  }

  /** Waits for every collection and upload in flight. */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /**
   * Stops: aborts collections and uploads (a trace is stopped cleanly and kept pending; staged
   * blocks and records stay for the next run), waits for them, releases this run's locks.
   */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.settled();
    this.releaseLocks();
  }

  /** Removes the lock files this run holds. */
  releaseLocks(): void {
    for (const file of this.locks) releaseOwnerFile(file);
    this.locks.clear();
  }
}
