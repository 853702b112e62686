// FleetCoordinator: fleet-wide collection limits kept in the blob container the instances upload to,
// with no other service. Blob layout under `<prefix>/fleet/` (prefix default 'sockwatch'):
//
//   <prefix>/fleet/<window>/slot-<i>   i = 0..max-1; created once with If-None-Match: * (a second
//                                      create gets 409 BlobAlreadyExists), so at most `max`
//                                      collections start per window; <window> is the window's start
//                                      on the storage clock, ISO 8601 basic (20261202T010000Z).
//   <prefix>/fleet/locks/lock-<j>      j = 0..concurrent-1; a collection runs while it holds a lease
//                                      on one of them (renewed every third of its duration); a holder
//                                      killed mid-way loses it when the lease expires.
//
// Both hold a small JSON record (FleetRecord: instance, pid, host, times, destination, count; never
// a secret). Order: the lock first, then the slot (a refused slot gives the lock back), so a slot is
// spent only by a collection that starts; a killed holder's slot stays spent. The window comes from
// the service's Date header (a HEAD request just before), never from this machine's clock.
// Needs sp=r and w: r to read records, w to create slots and lock blobs, lease them and write
// records (Put Blob to a new name and Lease Blob are write operations). Every failure becomes a
// redacted UploadError (one line, the SAS signature never in it).
import * as os from 'node:os';
import { AnonymousCredential, ContainerClient, type BlobClient, type BlobLeaseClient } from '@azure/storage-blob';
import { UploadError, toUploadError } from '../upload/errors';
import type { ContainerSasUrl } from '../upload/sas-url';
import { isoSeconds, normalizeFleetLimits, windowAt, type FleetLimits, type FleetWindow, type NormalizedFleetLimits } from './limits';

/** What a slot or lock blob records about the collection that took it. No secrets. */
export interface FleetRecord {
  v: 1;
  instance: string;
  pid: number;
  host: string;
  /** When the collection was allowed, on the storage clock (ISO). */
  time: string;
  /** The same moment on the instance's own clock (ISO), for reference only. */
  localTime: string;
  kinds: string[];
  /** The destination over the threshold ("10.0.0.5:1433"), its count and the threshold. */
  destination?: string;
  count?: number;
  threshold?: number;
  /** The rate slot taken (`<window>/slot-<i>`), if any, and the running lock held, if any. */
  slot?: string;
  lock?: string;
  tool: 'sockwatch';
}

export interface AdmitRequest {
  kinds: string[];
  destination?: string;
  count?: number;
  threshold?: number;
}

export interface LeaseTrouble {
  lock: string;
  /** 'renew-failed': a renewal failed (retried at the next period); 'lost': the lease is gone. */
  what: 'renew-failed' | 'lost';
  error: UploadError;
}

export interface FleetPermit {
  /** `<window>/slot-<i>` when the rate limit is on. */
  slot?: string;
  /** `lock-<j>` when the concurrency limit is on. */
  lock?: string;
  window?: FleetWindow;
  serviceTime: Date;
  /** Stops renewing and releases the lease (best effort: an error is reported, never thrown). */
  release(): Promise<void>;
}

export type Admission =
  | { granted: true; permit: FleetPermit }
  | { granted: false; reason: 'window-full'; window: FleetWindow; serviceTime: Date; holders: FleetRecord[] }
  | { granted: false; reason: 'all-running'; serviceTime: Date; holders: FleetRecord[] };

export interface FleetCoordinatorOptions {
  containerSas: ContainerSasUrl;
  limits: FleetLimits;
  /** The instance name recorded in slot and lock blobs. */
  instance: string;
  /** Lease renewal troubles (the collection goes on either way). */
  onLeaseTrouble?: (t: LeaseTrouble) => void;
  /** Per-request time limit (default 10 s). */
  requestTimeoutMs?: number;
}

const RECORD_LIMIT = 64 * 1024;

function statusOf(err: unknown): { status?: number; code?: string } {
  const e = err as { statusCode?: unknown; code?: unknown; details?: { errorCode?: unknown } };
  const status = typeof e?.statusCode === 'number' ? e.statusCode : undefined;
  const code = typeof e?.details?.errorCode === 'string' ? e.details.errorCode : typeof e?.code === 'string' ? e.code : undefined;
  return { status, code };
}

export class FleetCoordinator {
  readonly limits: NormalizedFleetLimits;
  private readonly container: ContainerClient;
  private readonly secrets: string[];
  private readonly instance: string;
  private readonly onLeaseTrouble: (t: LeaseTrouble) => void;

  constructor(options: FleetCoordinatorOptions) {
    this.limits = normalizeFleetLimits(options.limits);
    this.instance = options.instance;
    this.secrets = options.containerSas.secretValues();
    this.onLeaseTrouble = options.onLeaseTrouble ?? (() => undefined);
    this.container = new ContainerClient(options.containerSas.revealSignedUrl(), new AnonymousCredential(), {
      retryOptions: { maxTries: 2, tryTimeoutInMs: options.requestTimeoutMs ?? 10_000, retryDelayInMs: 500, maxRetryDelayInMs: 2000 },
      userAgentOptions: { userAgentPrefix: 'sockwatch-fleet' },
    });
  }

  /** `<prefix>/fleet/<window key>/slot-<i>`. */
  slotName(window: FleetWindow, i: number): string {
    return `${this.limits.prefix}/fleet/${window.key}/slot-${i}`;
  }

  /** `<prefix>/fleet/locks/lock-<j>`. */
  lockName(j: number): string {
    return `${this.limits.prefix}/fleet/locks/lock-${j}`;
  }

  private fail(err: unknown, operation: string): UploadError {
    return toUploadError(err, `fleet ${operation}`, this.secrets);
  }

  /**
   * The storage service's clock: the Date header of a HEAD request (a missing blob's 404 carries it
   * too). Any other failure (403, network) is thrown as an UploadError.
   */
  async serviceTime(): Promise<Date> {
    const name = `${this.limits.prefix}/fleet/clock`;
    let date: Date | undefined;
    try {
      date = (await this.container.getBlobClient(name).getProperties()).date;
    } catch (err) {
      if (statusOf(err).status !== 404) throw this.fail(err, `clock read (HEAD ${name})`);
      const header = (err as { response?: { headers?: { get?: (n: string) => string | undefined } } }).response?.headers?.get?.('date');
      date = header === undefined ? undefined : new Date(header);
    }
    if (date === undefined || Number.isNaN(date.getTime())) {
      throw new UploadError(`fleet clock read (HEAD ${name}): the storage service sent no Date header`, {
        operation: 'fleet clock read',
        code: 'ERR_SOCKWATCH_UPLOAD_FAILED',
        retryable: true,
      });
    }
    return date;
  }

  private record(at: Date, request: AdmitRequest, extra: Pick<FleetRecord, 'slot' | 'lock'>): FleetRecord {
    return {
      v: 1,
      instance: this.instance,
      pid: process.pid,
      host: os.hostname(),
      time: isoSeconds(at),
      localTime: new Date().toISOString(),
      kinds: request.kinds,
      ...(request.destination !== undefined ? { destination: request.destination } : {}),
      ...(request.count !== undefined ? { count: request.count } : {}),
      ...(request.threshold !== undefined ? { threshold: request.threshold } : {}),
      ...extra,
      tool: 'sockwatch',
    };
  }

  private async put(
    blob: BlobClient,
    record: FleetRecord,
    conditions: { ifNoneMatch?: string; leaseId?: string },
  ): Promise<Date | undefined> {
    const body = JSON.stringify(record) + '\n';
    const res = await blob
      .getBlockBlobClient()
      .upload(body, Buffer.byteLength(body), { conditions, blobHTTPHeaders: { blobContentType: 'application/json' } });
    return res.date;
  }

  /** The record a slot or lock blob holds, with its lease state; undefined when absent or unreadable. */
  async readRecord(name: string): Promise<{ record?: FleetRecord; leased: boolean } | undefined> {
    let res;
    try {
      res = await this.container.getBlobClient(name).download();
    } catch (err) {
      if (statusOf(err).status === 404) return undefined;
      throw this.fail(err, `read (${name})`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.readableStreamBody as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > RECORD_LIMIT) break;
      chunks.push(chunk);
    }
    const leased = res.leaseState === 'leased';
    try {
      const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as FleetRecord;
      return { record: parsed && typeof parsed === 'object' && typeof parsed.instance === 'string' ? parsed : undefined, leased };
    } catch {
      return { leased };
    }
  }

  /** A lease on the first free lock blob (created when missing), or undefined when all are leased. */
  private async leaseLock(): Promise<{ index: number; lease: BlobLeaseClient; leaseId: string } | undefined> {
    for (let j = 0; j < this.limits.concurrent!; j++) {
      const name = this.lockName(j);
      const blob = this.container.getBlobClient(name);
      for (let tries = 0; tries < 2; tries++) {
        const lease = blob.getBlobLeaseClient();
        try {
          const res = await lease.acquireLease(this.limits.leaseSeconds);
          return { index: j, lease, leaseId: res.leaseId ?? lease.leaseId };
        } catch (err) {
          const { status } = statusOf(err);
          if (status === 409) break; // LeaseAlreadyPresent: held by a running collection
          if (status !== 404 || tries > 0) throw this.fail(err, `lease (${name})`);
        }
        // A lock blob not created yet: create it once (someone else may do so at the same moment).
        try {
          await blob.getBlockBlobClient().upload('{}\n', 3, { conditions: { ifNoneMatch: '*' } });
        } catch (err) {
          if (statusOf(err).status !== 409) throw this.fail(err, `create (${name})`);
        }
      }
    }
    return undefined;
  }

  /** Who holds the running locks now (leased lock blobs with a record). */
  async runningHolders(): Promise<FleetRecord[]> {
    const out: FleetRecord[] = [];
    for (let j = 0; j < (this.limits.concurrent ?? 0); j++) {
      const r = await this.readRecord(this.lockName(j));
      if (r?.leased && r.record) out.push(r.record);
    }
    return out;
  }

  /** Who took the slots of a window. */
  async slotHolders(window: FleetWindow): Promise<FleetRecord[]> {
    const out: FleetRecord[] = [];
    for (let i = 0; i < (this.limits.max ?? 0); i++) {
      const r = await this.readRecord(this.slotName(window, i));
      if (r?.record) out.push(r.record);
    }
    return out;
  }

  /**
   * Asks to start a collection: a running lock (when `concurrent` is set), then a slot of the
   * current window (when `max` is set). Throws an UploadError when the container cannot be used.
   */
  async admit(request: AdmitRequest): Promise<Admission> {
    const serviceTime = await this.serviceTime();
    let held: { index: number; lease: BlobLeaseClient; leaseId: string } | undefined;
    if (this.limits.concurrent !== undefined) {
      held = await this.leaseLock();
      if (!held) return { granted: false, reason: 'all-running', serviceTime, holders: await this.runningHolders() };
    }
    const lockLabel = held ? `lock-${held.index}` : undefined;
    try {
      let slot: string | undefined;
      let window: FleetWindow | undefined;
      let allowedAt = serviceTime;
      if (this.limits.max !== undefined) {
        window = windowAt(serviceTime, this.limits.windowMs);
        for (let i = 0; i < this.limits.max && slot === undefined; i++) {
          const name = this.slotName(window, i);
          const label = `${window.key}/slot-${i}`;
          try {
            allowedAt =
              (await this.put(this.container.getBlobClient(name), this.record(serviceTime, request, { slot: label, lock: lockLabel }), {
                ifNoneMatch: '*',
              })) ?? serviceTime;
            slot = label;
          } catch (err) {
            if (statusOf(err).status !== 409) throw this.fail(err, `slot create (${name})`);
          }
        }
        if (slot === undefined) {
          const holders = await this.slotHolders(window);
          await this.releaseLease(held);
          held = undefined;
          return { granted: false, reason: 'window-full', window, serviceTime, holders };
        }
      }
      if (held) {
        const name = this.lockName(held.index);
        try {
          await this.put(this.container.getBlobClient(name), this.record(allowedAt, request, { slot, lock: lockLabel }), {
            leaseId: held.leaseId,
          });
        } catch (err) {
          throw this.fail(err, `lock record (${name})`);
        }
      }
      const permit = this.permit(held, { slot, window, serviceTime });
      held = undefined;
      return { granted: true, permit };
    } finally {
      if (held) await this.releaseLease(held);
    }
  }

  private async releaseLease(held: { lease: BlobLeaseClient } | undefined): Promise<void> {
    if (!held) return;
    try {
      await held.lease.releaseLease();
    } catch {
      // it expires by itself
    }
  }

  /** A permit; with a lease, renewed every third of its duration until released. */
  private permit(
    held: { index: number; lease: BlobLeaseClient; leaseId: string } | undefined,
    info: { slot?: string; window?: FleetWindow; serviceTime: Date },
  ): FleetPermit {
    let timer: NodeJS.Timeout | undefined;
    let renewing: Promise<void> | undefined;
    let lost = false;
    let released = false;
    if (held) {
      const lock = `lock-${held.index}`;
      const renew = async (): Promise<void> => {
        try {
          await held.lease.renewLease();
        } catch (err) {
          if (released) return;
          const { status } = statusOf(err);
          // 409 (LeaseIdMismatchWithLeaseOperation, LeaseNotPresent…) or 404: another holder has it now.
          const gone = status === 409 || status === 404;
          if (gone) {
            lost = true;
            clearInterval(timer);
          }
          this.onLeaseTrouble({
            lock,
            what: gone ? 'lost' : 'renew-failed',
            error: this.fail(err, `lease renewal (${this.lockName(held.index)})`),
          });
        }
      };
      timer = setInterval(
        () => {
          renewing ??= renew().finally(() => (renewing = undefined));
        },
        (this.limits.leaseSeconds * 1000) / 3,
      );
      timer.unref();
    }
    return {
      ...(info.slot !== undefined ? { slot: info.slot } : {}),
      ...(held ? { lock: `lock-${held.index}` } : {}),
      ...(info.window !== undefined ? { window: info.window } : {}),
      serviceTime: info.serviceTime,
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(timer);
        await renewing;
        if (held && !lost) await this.releaseLease(held);
      },
    };
  }
}
