// Open alert episodes on disk, so that a restart (SIGTERM or SIGKILL) continues them instead of
// alerting again with a new id. Rules:
// - One file per state directory (episodes.json), replaced atomically (lib/base/fs.ts writeFileAtomic)
//   and read without following links. It carries a format version (lib/base/state-version.ts): a newer
//   one is refused with one line, never misread.
// - An episode is keyed by boot id + network namespace inode + socket cookie (+ queue type), and its
//   4-tuple is kept: cookies are unique only within one boot (and, on older kernels, one network
//   namespace). The file records host, boot id and namespace: a file written on another host or in
//   another namespace is not continued; one of an earlier boot on this host is not continued either,
//   its episodes are handed back as `previousBoot` (their sockets are gone) to be resolved.
// - Bounded: at most maxEntries episodes. Resolved episodes leave the file at once, so the cap only
//   ever drops open ones, the oldest crossing first; drops are counted (in the file too) and reported.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensureDir, readFileNoFollow, writeFileAtomic } from '../base/fs';
import { bootId } from '../base/pid-lock';
import { assertKnownVersion } from '../base/state-version';
import type { SocketRecord } from '../sampler';
import { stateName } from '../states';
import type { QueueType } from './types';

export const EPISODES_FILE = 'episodes.json';
export const EPISODES_FORMAT_VERSION = 1;
export const EPISODES_DEFAULT_MAX = 10_000;

/** One open episode: a socket's queue above its threshold since `since`, alerted as `id`. */
export interface Episode {
  type: QueueType;
  cookie: bigint;
  /** Unix time (s) of the first crossing: the alert's timestamp. */
  since: number;
  /** The `alert` event's id. */
  id: string;
  /** The last repeat number sent (0: only the alert). */
  repeat: number;
  /** Unix time (s) of the last event sent for it (alert or repeat). */
  lastAt: number;
  /** The socket as last seen: 4-tuple, state, owner uid and inode, queue sizes. */
  record: SocketRecord;
}

/** Where episodes are valid: this host, this boot, this network namespace. */
export interface EpisodeScope {
  host: string;
  boot: string;
  /** Inode of the watched network namespace. */
  netns: string;
}

export interface EpisodesLoad {
  /** Episodes of this host, boot and namespace: continue them. */
  continued: Episode[];
  /** Episodes of an earlier boot of this host: their sockets are gone. */
  previousBoot: Episode[];
  /** Episodes not continued: written on another host or for another network namespace. */
  discarded: number;
  /** Why `discarded` is not 0. */
  discardedReason?: string;
  /** The file existed but could not be parsed; it is replaced by the next save. */
  unreadable: boolean;
  /** Episodes dropped over the cap, as counted by earlier runs. */
  droppedBefore: number;
}

interface EpisodeLine {
  type: QueueType;
  cookie: string;
  since: number;
  id: string;
  repeat: number;
  lastAt: number;
  /** The socket as last seen (a SocketRecord without its cookie, skmem and reasons; any state name). */
  r: Pick<
    SocketRecord,
    'protocol' | 'family' | 'state' | 'localAddress' | 'localPort' | 'remoteAddress' | 'remotePort' | 'recvQ' | 'sendQ' | 'uid' | 'inode'
  > & { stateName: string };
}

interface EpisodeFileContent {
  v: number;
  host: string;
  boot: string;
  netns: string;
  savedAt: string;
  dropped: number;
  episodes: EpisodeLine[];
}

/** The inode of a network namespace file (default: our own). */
export function netnsInode(nsFile = '/proc/self/ns/net'): string {
  try {
    return fs.statSync(nsFile, { bigint: true }).ino.toString();
  } catch {
    return 'unknown';
  }
}

/** This process's scope for `host` and the namespace file it samples. */
export function currentScope(host: string, nsFile?: string): EpisodeScope {
  return { host, boot: bootId() ?? 'unknown', netns: netnsInode(nsFile) };
}

export class EpisodeStore {
  readonly file: string;
  readonly maxEntries: number;
  /** Episodes dropped over the cap, this file's lifetime. */
  droppedTotal = 0;
  private dirReady = false;

  constructor(
    file: string,
    readonly scope: EpisodeScope,
    maxEntries = EPISODES_DEFAULT_MAX,
  ) {
    this.file = path.resolve(file);
    this.maxEntries = maxEntries;
  }

  /** Reads the file. Throws StateFormatError for a newer format; a missing file is an empty load. */
  load(): EpisodesLoad {
    const empty: EpisodesLoad = { continued: [], previousBoot: [], discarded: 0, unreadable: false, droppedBefore: 0 };
    let text: string;
    try {
      text = readFileNoFollow(this.file).toString('utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return empty;
      throw e;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return { ...empty, unreadable: true };
    }
    assertKnownVersion(parsed, EPISODES_FORMAT_VERSION, this.file, 'episodes file');
    const c = parsed as Partial<EpisodeFileContent>;
    if (typeof c !== 'object' || c === null || !Array.isArray(c.episodes)) return { ...empty, unreadable: true };
    const episodes = c.episodes.map(fromLine).filter((e): e is Episode => e !== undefined);
    const droppedBefore = Number.isSafeInteger(c.dropped) ? (c.dropped as number) : 0;
    this.droppedTotal = droppedBefore;
    if (c.host !== this.scope.host) {
      return { ...empty, droppedBefore, discarded: episodes.length, discardedReason: `written on host ${String(c.host)}` };
    }
    if (c.boot !== this.scope.boot) return { ...empty, droppedBefore, previousBoot: episodes };
    if (c.netns !== this.scope.netns) {
      return { ...empty, droppedBefore, discarded: episodes.length, discardedReason: 'written for another network namespace' };
    }
    return { ...empty, droppedBefore, continued: episodes };
  }

  /** Replaces the file with `episodes` (at most maxEntries, the newest crossings kept); returns how many were dropped. */
  save(episodes: Episode[]): number {
    let kept = episodes;
    let dropped = 0;
    if (kept.length > this.maxEntries) {
      kept = [...episodes].sort((a, b) => b.since - a.since).slice(0, this.maxEntries);
      dropped = episodes.length - kept.length;
      this.droppedTotal += dropped;
    }
    const content: EpisodeFileContent = {
      v: EPISODES_FORMAT_VERSION,
      host: this.scope.host,
      boot: this.scope.boot,
      netns: this.scope.netns,
      savedAt: new Date().toISOString(),
      dropped: this.droppedTotal,
      episodes: kept.map(toLine),
    };
    if (!this.dirReady) {
      ensureDir(path.dirname(this.file));
      this.dirReady = true;
    }
    writeFileAtomic(this.file, `${JSON.stringify(content)}\n`);
    return dropped;
  }
}

function toLine(e: Episode): EpisodeLine {
  const r = e.record;
  return {
    type: e.type,
    cookie: e.cookie.toString(),
    since: e.since,
    id: e.id,
    repeat: e.repeat,
    lastAt: e.lastAt,
    r: {
      protocol: r.protocol,
      family: r.family,
      state: r.state,
      stateName: r.stateName,
      localAddress: r.localAddress,
      localPort: r.localPort,
      remoteAddress: r.remoteAddress,
      remotePort: r.remotePort,
      recvQ: r.recvQ,
      sendQ: r.sendQ,
      uid: r.uid,
      inode: r.inode,
    },
  };
}

const TYPES: readonly string[] = ['RECV', 'SEND', 'ACCEPT'];

function fromLine(v: unknown): Episode | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const l = v as Partial<EpisodeLine>;
  const r = l.r;
  if (!TYPES.includes(l.type as string) || typeof l.cookie !== 'string' || !/^\d{1,20}$/.test(l.cookie)) return undefined;
  if (!isTime(l.since) || !isTime(l.lastAt) || typeof l.id !== 'string' || !Number.isSafeInteger(l.repeat)) return undefined;
  if (typeof r !== 'object' || r === null) return undefined;
  if ((r.protocol !== 'tcp' && r.protocol !== 'udp') || (r.family !== 4 && r.family !== 6)) return undefined;
  if (typeof r.localAddress !== 'string' || typeof r.remoteAddress !== 'string' || typeof r.stateName !== 'string') return undefined;
  const ints = [r.state, r.localPort, r.remotePort, r.recvQ, r.sendQ, r.uid, r.inode];
  if (!ints.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) return undefined;
  const cookie = BigInt(l.cookie);
  return {
    type: l.type as QueueType,
    cookie,
    since: l.since,
    id: l.id,
    repeat: l.repeat as number,
    lastAt: l.lastAt,
    record: {
      ...r,
      stateName: stateName(r.state, r.protocol), // recomputed: one list of names (lib/states.ts)
      cookie,
      ifindex: 0,
      timer: 0,
      retrans: 0,
      expires: 0,
      exceeded: [],
    },
  };
}

function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0;
}
