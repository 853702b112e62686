// Outbound (SNAT) watch: per-destination connection counts with a sliding window of distinct
// connections, the script-compatible hourly log, and .NET dump/trace collection with upload.
// The watcher works alone; the collector and the session are the orchestration around it.
export {
  OutboundWatcher,
  OUTBOUND_STATES,
  DEFAULT_EXCLUDED_PORTS,
  DEFAULT_THRESHOLD,
  DEFAULT_INTERVAL_MS,
  DEFAULT_WINDOW_MS,
  countedValue,
  foldMappedAggregates,
  sortDestinations,
  type OutboundWatcherOptions,
  type OutboundWatcherEvents,
  type OutboundPoll,
  type DestinationCount,
  type ThresholdBasis,
} from './watcher';
export { DistinctWindow, type WindowDestination } from './window';
export { ProcessSockets, socketInodes } from './process-sockets';
export {
  formatPollBlock,
  formatPollTable,
  formatVerdict,
  formatStates,
  netstatStateName,
  logTimestamp,
  hourKey,
  statsFileName,
  logDirName,
  pollRecord,
} from './log-format';
export { HourlyLog, type HourlyLogOptions } from './hourly-log';
export {
  DiagnosticsCollector,
  lockFileName,
  type CollectorOptions,
  type CollectorEvents,
  type CollectionStep,
  type CollectionKind,
  type KindState,
  type TriggerInfo,
} from './collector';
export { formatStep, describeStep, stepRecord } from './step-format';
export { listPending, pendingPath, type PendingUpload } from './pending';
export { acquireOwnerFile, releaseOwnerFile, readOwnerFile, ownerAlive, type FileOwner, type AcquireResult } from './owner-file';
export { stopRunningInstance, removeStaleLocks, PIDFILE_NAME, type StopInstanceOptions, type StopInstanceResult } from './stop-instance';
export {
  chooseDotnetTarget,
  countOwnedConnections,
  resolveSetting,
  type TargetChoice,
  type CandidateCount,
  type SettingValue,
} from './target';
export {
  SnatSession,
  SnatStartError,
  INSTANCE_VARIABLE,
  SAS_VARIABLE,
  STATE_DIR_NAME,
  type SnatSessionOptions,
  type SessionResult,
  type SessionEnd,
} from './session';
