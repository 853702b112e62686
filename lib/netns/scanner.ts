// One scan of every network namespace of the host. Rules:
// - One Sampler per namespace inode, kept from scan to scan, closed when discovery no longer finds
//   the namespace (and on close()). A scan is one kernel walk per namespace, so namespaces are
//   scanned one after another by default (`concurrency`: the walk, not JS, dominates).
// - A namespace other than ours is entered through a file descriptor we hold on its nsfs file
//   (opened from the entry's path, or from /proc/PID/ns/net of its other processes when that one is
//   gone), checked with fstat to be the inode discovery gave (a pid re-used by a process elsewhere is
//   caught there), and the Sampler is given /proc/self/fd/N. While the descriptor is open the namespace
//   cannot be freed, so its inode cannot be re-used by another namespace: a later discovery that
//   finds this inode finds this namespace, and the Sampler's own re-open after a failed dump enters
//   the same namespace, never whatever a dead pid's path would point at by then. The price: a
//   namespace whose last process exited stays alive until the next scan() (or close()) notices it.
// - A namespace that cannot be entered or scanned (EPERM, ENOENT because its processes exited, a
//   failed dump) is `{ netns, error }` in the result, never a rejected scan; its Sampler is dropped
//   and the next scan opens it afresh. Only bad options and a closed scanner reject.
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import { SockwatchError, systemError } from '../base/errors';
import * as v from '../base/validate';
import { CompiledSampleOptions, Sampler, type SampleOptions, type SampleResult } from '../sampler';
import { discoverNetworkNamespaces, type DiscoverOptions, type NetnsEntry } from './discover';

export interface NamespaceScan {
  netns: NetnsEntry;
  result?: SampleResult;
  error?: Error;
}

export interface NamespaceScannerOptions extends DiscoverOptions {
  /** Passed to each Sampler (default 5000 ms). */
  recvTimeoutMs?: number;
  /** Namespaces scanned at once (default 1: one after another). */
  concurrency?: number;
}

export interface ScanCallOptions {
  /** Scan these namespaces instead of discovering them (samplers of the others are closed). */
  entries?: readonly NetnsEntry[];
}

interface Held {
  sampler: Sampler;
  /** Our descriptor on the namespace's nsfs file (none for our own namespace). */
  fd?: number;
}

const SCANNER_KEYS = ['procRoot', 'runNetnsDir', 'recvTimeoutMs', 'concurrency'] as const;

function closeFd(fd: number | undefined): void {
  if (fd === undefined) return;
  try {
    fs.closeSync(fd);
  } catch {
    /* already closed */
  }
}

export class NamespaceScanner {
  private readonly discover: DiscoverOptions;
  private readonly recvTimeoutMs: number | undefined;
  private readonly concurrency: number;
  private readonly held = new Map<number, Held>();
  private queue: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;

  constructor(options: NamespaceScannerOptions = {}) {
    const o = v.optionsObject<NamespaceScannerOptions>(options, 'options', SCANNER_KEYS);
    this.discover = {};
    if (o.procRoot !== undefined) this.discover.procRoot = v.nonEmptyString(o.procRoot, 'options.procRoot');
    if (o.runNetnsDir !== undefined) this.discover.runNetnsDir = v.nonEmptyString(o.runNetnsDir, 'options.runNetnsDir');
    this.recvTimeoutMs = o.recvTimeoutMs;
    this.concurrency = v.optInteger(o.concurrency, 'options.concurrency', 1, { min: 1, max: 64 });
  }

  /** Inodes of the namespaces whose Sampler is open now. */
  get openNamespaces(): number[] {
    return [...this.held.keys()];
  }

  /**
   * Scans every namespace discovery finds (or `call.entries`), in discovery order (ours first). Calls
   * queue one behind another. Rejects only for bad options or a closed scanner.
   */
  scan(options: SampleOptions | CompiledSampleOptions = {}, call: ScanCallOptions = {}): Promise<NamespaceScan[]> {
    let compiled: CompiledSampleOptions;
    try {
      if (this.closing) throw closedError();
      compiled = options instanceof CompiledSampleOptions ? options : new CompiledSampleOptions(options);
      v.optionsObject<ScanCallOptions>(call, 'call', ['entries']);
    } catch (e) {
      return Promise.reject(e);
    }
    const run = this.queue.then(() => {
      if (this.closing) throw closedError();
      return this.scanNow(compiled, call.entries ?? discoverNetworkNamespaces(this.discover));
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Closes every Sampler (after the scans queued before it). Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.queue.then(async () => {
      const all = [...this.held.keys()];
      await Promise.all(all.map((inode) => this.drop(inode)));
    });
    return this.closing;
  }

  private async scanNow(options: CompiledSampleOptions, entries: readonly NetnsEntry[]): Promise<NamespaceScan[]> {
    const live = new Set(entries.map((e) => e.inode));
    await Promise.all([...this.held.keys()].filter((inode) => !live.has(inode)).map((inode) => this.drop(inode)));
    const out: NamespaceScan[] = new Array(entries.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < entries.length) {
        const i = next++;
        out[i] = await this.scanOne(entries[i]!, options);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, entries.length) }, worker));
    return out;
  }

  private async scanOne(netns: NetnsEntry, options: CompiledSampleOptions): Promise<NamespaceScan> {
    let held = this.held.get(netns.inode);
    try {
      if (!held) {
        held = this.open(netns);
        this.held.set(netns.inode, held);
      }
      return { netns, result: await held.sampler.sample(options) };
    } catch (e) {
      if (held) await this.drop(netns.inode);
      return { netns, error: e instanceof Error ? e : new Error(String(e)) };
    }
  }

  private async drop(inode: number): Promise<void> {
    const h = this.held.get(inode);
    if (!h) return;
    this.held.delete(inode);
    try {
      await h.sampler.close();
    } finally {
      closeFd(h.fd);
    }
  }

  /** A Sampler inside `netns` (see the rules at the top); throws the most telling failure. */
  private open(netns: NetnsEntry): Held {
    if (netns.self) return { sampler: new Sampler({ recvTimeoutMs: this.recvTimeoutMs }) };
    const procRoot = this.discover.procRoot ?? '/proc';
    const candidates = [...new Set([netns.path, ...netns.pids.map((p) => `${procRoot}/${p}/ns/net`)])];
    let failure: Error | undefined;
    for (const file of candidates) {
      let fd: number;
      try {
        fd = fs.openSync(file, fs.constants.O_RDONLY); // libuv adds O_CLOEXEC
      } catch (e) {
        // ENOENT / ESRCH: that process is gone, try the next one. Keep the first other reason.
        const err = e as NodeJS.ErrnoException;
        if (!failure || (failure as NodeJS.ErrnoException).code === 'ENOENT') failure = err;
        continue;
      }
      try {
        if (fs.fstatSync(fd).ino !== netns.inode) {
          closeFd(fd); // a re-used pid, now in another namespace
          continue;
        }
        const fdPath = `/proc/self/fd/${fd}`;
        try {
          return { sampler: new Sampler({ netns: fdPath, recvTimeoutMs: this.recvTimeoutMs }), fd };
        } catch (e) {
          if (e instanceof Error) e.message = e.message.replace(fdPath, file);
          throw e;
        }
      } catch (e) {
        closeFd(fd);
        throw e; // entering failed (EPERM…): the same for every path of this namespace
      }
    }
    if (failure && (failure as NodeJS.ErrnoException).code !== 'ENOENT') throw failure;
    throw systemError(
      osConstants.errno.ENOENT,
      'open',
      `netns ${netns.inode}: no process holds it any more and it has no name (${netns.path} is gone)`,
      { cause: failure },
    );
  }
}

function closedError(): SockwatchError {
  return new SockwatchError('ERR_SOCKWATCH_SAMPLER_CLOSED', 'NamespaceScanner is closed');
}
