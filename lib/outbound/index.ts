// The `outbound` namespace of the public API: the outbound (SNAT) watcher, per-destination counts
// with a sliding window of distinct connections. Rule: exactly what README.md's Library section
// documents; the session, collector, hourly log and lock files are the CLI's orchestration and stay
// internal (import them by file inside lib/). test/exports.test.ts holds the list.
export {
  OutboundWatcher,
  type OutboundWatcherOptions,
  type OutboundWatcherEvents,
  type OutboundPoll,
  type DestinationCount,
  type ThresholdBasis,
} from './watcher';
