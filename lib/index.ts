// The public API. Rule: exactly what README.md's Library section documents, name by name, and
// nothing else; test/exports.test.ts holds the sorted list of runtime names, so a change to it is a
// decision (with a CHANGELOG line). Each layer is usable alone: the sampler knows nothing of alerts,
// the watchers nothing of HTTP. `dotnet`, `upload` and `outbound` are namespaces whose contents
// their own index.ts lists.
export { Sampler, listSockets } from './sampler';
export type {
  SamplerOptions,
  SampleOptions,
  SampleResult,
  SocketRecord,
  Aggregate,
  AggregateOptions,
  LookupOptions,
  QueueType,
  SkMemInfo,
  PortSpec,
  SocketStateName,
  StateListName,
  QueueHistogram,
  QueueHistograms,
  QueueHistogramOptions,
  ListenerInfo,
  ListenersOptions,
  StateCountsByFamily,
  TrackOptions,
  SampleChanges,
} from './sampler';
export type { QueueAlertJson } from './queues/alert-json';
export { QueueWatcher, SocketOwners, alertToParams } from './queues';
export type {
  QueueWatcherOptions,
  QueueAlert,
  QueueEventKind,
  QueueFilter,
  QueueTickStats,
  QueueSuppressedEvent,
  QueueWatcherEvents,
  QueueWatcherStats,
  ByteThreshold,
  AcceptThreshold,
  SocketOwner,
  SocketOwnersOptions,
  QueueEpisodesRestored,
} from './queues';
export { Outbox, HttpDelivery, StateDirLockedError } from './alerts';
export type {
  OutboxOptions,
  OutboxRecord,
  OutboxRecovery,
  OutboxStats,
  OutboxEvents,
  OutboxDroppedEvent,
  OutboxDamagedEvent,
  AppendOptions,
  DeadLetterReason,
  DropReason,
  FsyncMode,
} from './alerts/outbox';
export type {
  HttpDeliveryOptions,
  HttpDeliveryEvents,
  HttpDeliveryStats,
  DeliveredEvent,
  RetryScheduledEvent,
  DeadLetteredEvent,
  StopOptions,
} from './alerts/delivery';
export { SockwatchError, ERROR_CODES, type SockwatchErrorCode } from './base/errors';
export { registerMetrics } from './metrics/register';
export type { RegisterMetricsOptions, MetricsHandle, MetricsRegistry } from './metrics/register';
export * as dotnet from './dotnet';
export * as upload from './upload';
export * as outbound from './outbound';
