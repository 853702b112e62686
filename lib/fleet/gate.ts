// FleetGate: the collector's gate (lib/outbound/collector.ts CollectionGate) over a FleetCoordinator.
// It decides when to ask the container again and says what happened in one line each time:
//   allowed        → the collection starts; its lease (if any) is released when it ends
//   window full    → one line per window naming who collected and when (storage clock); not asked
//                    again before the window ends (by the storage clock's distance to it)
//   all running    → a line whenever the set of running holders changes; asked again at a later
//                    trigger, at most every RUNNING_RETRY_MS
//   container error→ one redacted line; no collection (the limits fail closed: the fleet keeps its
//                    promise when storage misbehaves, and without r and w no upload could succeed);
//                    asked again after ERROR_RETRY_MS
import { performance } from 'node:perf_hooks';
import { redactText } from '../base/redact';
import { UploadError } from '../upload/errors';
import type { AdmitRequest, FleetCoordinator, FleetRecord, LeaseTrouble } from './coordinator';
import { isoSeconds, windowText } from './limits';

export const RUNNING_RETRY_MS = 2_000;
export const ERROR_RETRY_MS = 30_000;

export type GateLevel = 'info' | 'warning';

export interface FleetGateOptions {
  /** One line for the log and the terminal. */
  report: (text: string, level: GateLevel) => void;
  /** A monotonic clock in ms (default performance.now); only schedules the next question. */
  monotonicNow?: () => number;
}

/** A field of another instance's record (foreign text) made safe for one log line. */
function field(v: unknown): string {
  return String(v)
    .replace(/[^\x20-\x7e]/g, '?')
    .slice(0, 200);
}

function holderText(r: FleetRecord, verb: string): string {
  const what = r.destination !== undefined ? ` (${field(r.destination)}: ${field(r.count ?? '?')} connections)` : '';
  return `${field(r.instance)} (pid ${field(r.pid)}) ${verb} ${field(r.time)}${what}`;
}

function holdersText(holders: FleetRecord[], verb: string): string {
  return holders.length === 0 ? 'the holders left no readable record' : holders.map((h) => holderText(h, verb)).join('; ');
}

/** A lease trouble as one line (for FleetCoordinatorOptions.onLeaseTrouble). */
export function leaseTroubleText(t: LeaseTrouble): { text: string; level: GateLevel } {
  return t.what === 'lost'
    ? {
        text: `WARNING: fleet: the lease of ${t.lock} is lost (${t.error.message}); this collection goes on, the fleet may briefly run one more than its limit`,
        level: 'warning',
      }
    : { text: `WARNING: fleet: renewing the lease of ${t.lock} failed (${t.error.message}); trying again`, level: 'warning' };
}

export class FleetGate {
  private readonly coordinator: FleetCoordinator;
  private readonly report: (text: string, level: GateLevel) => void;
  private readonly now: () => number;
  private notBefore = -Infinity;
  private lastRunning = '';

  constructor(coordinator: FleetCoordinator, options: FleetGateOptions) {
    this.coordinator = coordinator;
    this.report = options.report;
    this.now = options.monotonicNow ?? (() => performance.now());
  }

  /** The limits as one line, for the start of a run. */
  describe(containerName: string): string {
    const l = this.coordinator.limits;
    const parts: string[] = [];
    if (l.max !== undefined) parts.push(`at most ${l.max} collection(s) start per ${windowText(l.windowMs)} window (storage clock)`);
    if (l.concurrent !== undefined) parts.push(`at most ${l.concurrent} run at once (lease ${l.leaseSeconds} s)`);
    return `fleet limits: ${parts.join(', ')}, across the instances uploading to container '${containerName}' (${l.prefix}/fleet/)`;
  }

  /** A permit to release when the collection ends, or undefined: not now (the reason is reported). */
  async admit(request: AdmitRequest): Promise<{ release(): Promise<void> } | undefined> {
    if (this.now() < this.notBefore) return undefined;
    try {
      const a = await this.coordinator.admit(request);
      if (a.granted) {
        const p = a.permit;
        const parts: string[] = [];
        if (p.slot !== undefined) parts.push(`slot ${p.slot} of the window from ${isoSeconds(p.window!.start)} (storage clock)`);
        if (p.lock !== undefined)
          parts.push(`running lock ${p.lock}, leased for ${this.coordinator.limits.leaseSeconds} s and renewed while it runs`);
        this.report(`fleet: collection allowed at ${isoSeconds(p.serviceTime)} (storage clock): ${parts.join('; ')}`, 'info');
        this.lastRunning = '';
        return p;
      }
      const l = this.coordinator.limits;
      if (a.reason === 'window-full') {
        // Asked again once the storage clock reaches the next window (measured here on a monotonic clock).
        this.notBefore = this.now() + Math.max(0, a.window.end.getTime() - a.serviceTime.getTime());
        this.report(
          `fleet limit reached: ${l.max} collection(s) per ${windowText(l.windowMs)} already started in the window ` +
            `${isoSeconds(a.window.start)} to ${isoSeconds(a.window.end)} (storage clock): ${holdersText(a.holders, 'collected at')}; ` +
            `not collecting, monitoring goes on (next try from ${isoSeconds(a.window.end)})`,
          'info',
        );
        return undefined;
      }
      this.notBefore = this.now() + RUNNING_RETRY_MS;
      const key = a.holders.map((h) => `${h.instance}/${h.pid}/${h.time}`).join(',');
      if (key !== this.lastRunning) {
        this.lastRunning = key;
        this.report(
          `fleet limit reached: ${l.concurrent} collection(s) running at once: ${holdersText(a.holders, 'since')}; ` +
            'not collecting now, trying again while the threshold stays exceeded',
          'info',
        );
      }
      return undefined;
    } catch (err) {
      this.notBefore = this.now() + ERROR_RETRY_MS;
      const text = err instanceof UploadError ? err.message : redactText(String((err as Error)?.message ?? err));
      this.report(
        `ERROR: fleet coordination failed: ${text.split('\n')[0]}; not collecting (the fleet limits fail closed), trying again in ${ERROR_RETRY_MS / 1000} s`,
        'warning',
      );
      return undefined;
    }
  }
}
