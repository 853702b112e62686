// Queue watch: per-socket send / receive / accept queue thresholds → alert events. Knows nothing of
// HTTP; lib/alerts delivers, lib/cli/queues.ts wires the two.
// Rule: this is the layer's barrel for lib/ and the tests; the public API picks its names from here
// one by one in lib/index.ts (QueueWatcher, SocketOwners, alertToParams and their types).
export { QueueWatcher, QUEUE_DEFAULTS } from './watcher';
export type { QueueWatcherOptions, QueueEpisodesRestored } from './watcher';
export { EpisodeStore, EPISODES_FILE, EPISODES_FORMAT_VERSION, currentScope, netnsInode } from './episodes';
export type { Episode, EpisodeScope, EpisodesLoad } from './episodes';
export { QueueTracker, exceeds, queueSize, thresholdFor } from './tracker';
export type { Thresholds, TrackerOptions, TrackedQueue, TickPlan, TickOutcome, RecheckResults } from './tracker';
export { alertId, alertToParams, alertToJson, alertToLine, isoMicros } from './alert-params';
export { AlertStream } from './alert-stream';
export type {
  AcceptThreshold,
  ByteThreshold,
  QueueAlert,
  QueueEpisodesDroppedEvent,
  QueueEventKind,
  QueueFilter,
  QueueSuppressedEvent,
  QueueTickStats,
  QueueWatcherEvents,
  QueueWatcherStats,
} from './types';
export { SocketOwners, SOCKET_OWNERS_DEFAULTS } from './owners';
export type { SocketOwner, SocketOwnersOptions, SocketOwnersStats, ResolveOptions } from './owners';
