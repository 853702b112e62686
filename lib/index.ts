// Public exports. Each layer is usable alone: the sampler knows nothing of alerts, the watchers
// nothing of HTTP.
export { Sampler, listSockets, compileSampleOptions, endpoints, unixNow, parsePortSpec } from './sampler';
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
} from './sampler';
export { formatEndpoint, parseEndpoint } from './address';
export { TCP_STATES, stateName, stateMask } from './states';
export { compileFilter, portRulesFilter, runBytecode } from './bytecode';
export { redactUrl, redactText } from './redact';
export * from './alerts';
export { QueueWatcher, QUEUE_DEFAULTS, alertId, alertToParams, alertToJson, alertToLine, SocketOwners } from './queues';
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
} from './queues';
export * as dotnet from './dotnet';
export * as upload from './upload';
export * as outbound from './outbound';
