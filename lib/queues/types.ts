import type { QueueType, SampleOptions, SocketStateName } from '../sampler';

export type { QueueType };
/** Thresholds: one representation, defined once in lib/base/validate.ts (a number, 'off'; accept also 'limit'). */
export type { AcceptThreshold, ByteThreshold } from '../base/validate';

export type QueueEventKind = 'alert' | 'repeat' | 'resolved';

/** Which sockets are watched: the same selection as `sockwatch list`, filtered in the kernel. */
export type QueueFilter = Pick<
  SampleOptions,
  | 'tcp'
  | 'udp'
  | 'ipv4'
  | 'ipv6'
  | 'states'
  | 'localPorts'
  | 'excludeLocalPorts'
  | 'remotePorts'
  | 'excludeRemotePorts'
  | 'localAddresses'
  | 'remoteAddresses'
>;

/**
 * One queue event of one socket (by cookie) and one queue type. Alerts the watcher emits have a
 * (non-enumerable) toJSON: `JSON.stringify(alert)` works, the bigint cookie written as a decimal
 * string (see QueueAlertJson).
 */
export interface QueueAlert {
  /** Stable id: the same alert always has the same id (hash of host, cookie, type, crossing time, event, repeat). */
  id: string;
  /** 'alert' when the queue crossed its threshold, 'repeat' while it stays above, 'resolved' when it went back. */
  event: QueueEventKind;
  type: QueueType;
  /** Unix time in seconds (microsecond fraction) of the sample that saw this. */
  timestamp: number;
  /** Unix time of the sample that saw the crossing (the 'alert' event's timestamp). */
  since: number;
  /** 0 for the alert, n for the n-th repeat; resolved events carry the last repeat number. */
  repeat: number;
  /** Queue size: bytes (UDP: kernel memory), or connections for ACCEPT. Resolved: the size then (0 once closed). */
  bytes: number;
  /** The threshold crossed; for ACCEPT with 'limit', the listener's backlog limit (then bytes ≥ threshold). */
  threshold: number;
  protocol: 'tcp' | 'udp';
  family: 4 | 6;
  /** ss-style state name (established, listen, unconn…). */
  state: SocketStateName;
  /** `ip:port`, IPv6 as `[addr]:port`. */
  local: string;
  remote: string;
  /** The socket's cookie. JSON.stringify(alert) writes it as a decimal string (the alert's toJSON). */
  cookie: bigint;
  /** 0 for orphaned sockets. */
  inode: number;
  uid: number;
  host: string;
  /** Owning process, when it could be found. */
  pid?: number;
  comm?: string;
  /** Resolved because the socket is gone (not found in two consecutive samples). */
  closed?: boolean;
}

export interface QueueTickStats {
  /** 1 for the first tick. */
  tick: number;
  /** Unix time of the sample. */
  timestamp: number;
  /** Sockets the sample counted: without TIME_WAIT and SYN_RECV unless the filter names its states (QUEUE_WATCH_STATES). */
  socketsSeen: number;
  /** Offending sockets the kernel pass found (including those beyond maxRecords). */
  offendersTotal: number;
  /** Offender records returned (at most maxRecords). */
  records: number;
  /** Socket/queue pairs tracked now (at most maxTracked). */
  tracked: number;
  /** Of those, alerted and not resolved. */
  active: number;
  /** Events produced by this tick (alert, repeat, resolved). */
  events: number;
  /** Events over maxAlertsPerTick, left for a later tick. */
  deferred: number;
  /** Offending sockets not tracked: beyond maxRecords or maxTracked. */
  untracked: number;
  /** Exact re-checks of sockets missing from this sample's offenders. */
  rechecks: number;
  /** Ticks skipped since start because a tick ran past the next one's start (lag). */
  missedTicks: number;
  /** Kernel pass duration (ms). */
  scanMs: number;
  /** Whole tick duration, sample to events (ms). */
  tickMs: number;
}

/** Emitted for a tick where offenders were left untracked or events deferred by the caps. */
export interface QueueSuppressedEvent {
  timestamp: number;
  offendersTotal: number;
  untracked: number;
  deferred: number;
}

/** Open episodes beyond maxEpisodes were not saved (a restart would alert them again). */
export interface QueueEpisodesDroppedEvent {
  dropped: number;
  droppedTotal: number;
  maxEpisodes: number;
  file: string;
}

export interface QueueWatcherEvents {
  alert: QueueAlert;
  episodesDropped: QueueEpisodesDroppedEvent;
  tick: QueueTickStats;
  suppressed: QueueSuppressedEvent;
  /** A sample failed (the watcher keeps going). With no listener the watcher stops and this throws. */
  error: Error;
}

export interface QueueWatcherStats {
  /** The latest tick's stats (undefined before the first). */
  last: QueueTickStats | undefined;
  ticks: number;
  missedTicks: number;
  tracked: number;
  active: number;
  /** Totals since start. */
  alerts: number;
  repeats: number;
  resolved: number;
  deferred: number;
  untracked: number;
  errors: number;
}
