// The `dotnet` namespace of the public API: .NET diagnostics over the runtime's IPC socket, no
// dotnet-dump / dotnet-trace binaries (we speak the protocol ourselves, see wire.ts, ipc.ts).
// Rule: exactly what README.md's Library section documents (discovery, process info, dump, trace,
// and the errors they throw); the rest of lib/dotnet is internal (import it by file inside lib/).
// test/exports.test.ts holds the list.
export { listDotnetProcesses, type DotnetEndpoint, type DotnetProcess, type DotnetTarget } from './discovery';
export { DiagnosticsIpcError } from './hresult';
export { getProcessInfo, type DotnetProcessInfo } from './process-info';
export { writeDump, type WriteDumpOptions, type DumpResult } from './dump';
export type { DumpTypeName } from './dump-types';
export { InsufficientDiskSpaceError } from './dump-space';
export { collectTrace, DEFAULT_TRACE_PROVIDERS, type CollectTraceOptions, type EventPipeProvider, type TraceResult } from './trace';
