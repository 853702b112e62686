// Log lines of the collection steps, worded like the original script's where it had one
// ("Acquiring lock for dumping...", "Memory dump has been collected. Uploading it to Azure Blob
// Container 'NAME'"), each prefixed with the local timestamp.
import { formatBytes } from '../dotnet/dump-space';
import { formatUploadEvent } from '../upload/events';
import type { CollectionStep } from './collector';
import { logTimestamp } from './log-format';

const NOUN = { dump: 'Memory dump', trace: 'Profiler trace' } as const;
const LOWER = { dump: 'memory dump', trace: 'profiler trace' } as const;
const GERUND = { dump: 'dumping', trace: 'tracing' } as const;

function base(file: string): string {
  return file.slice(file.lastIndexOf('/') + 1);
}

/** The text of a step (without timestamp); undefined for steps that go to the JSON log only. */
export function describeStep(s: CollectionStep): string | undefined {
  switch (s.step) {
    case 'lock-busy':
      return `The ${LOWER[s.kind]} lock ${base(s.lockFile)} is held by running process ${s.ownerPid}; not collecting here`;
    case 'lock-acquired':
      return s.takenOverFrom !== undefined
        ? `Acquiring lock for ${GERUND[s.kind]}... (took over the stale lock of process ${s.takenOverFrom}, which is no longer running)`
        : `Acquiring lock for ${GERUND[s.kind]}...`;
    case 'collecting':
      return s.kind === 'dump'
        ? `Collecting memory dump... (${s.dumpType} dump of process ${s.pid} to ${base(s.filePath)})`
        : `Collecting profiler trace... (${(s.durationMs ?? 0) / 1000} s of process ${s.pid} to ${base(s.filePath)})`;
    case 'collected':
      return `${NOUN[s.kind]} has been collected (${base(s.filePath)}, ${formatBytes(s.bytes)}${s.endedCleanly === false ? ', the trace did not end cleanly' : ''}).`;
    case 'collect-failed':
      return s.interrupted
        ? `${NOUN[s.kind]} collection was interrupted: ${s.error}`
        : `ERROR: ${LOWER[s.kind]} collection failed: ${s.error}`;
    case 'kept-local':
      return `WARNING: ${s.reason}: the ${LOWER[s.kind]} is kept locally at ${s.filePath}`;
    case 'uploading':
      return s.resumed
        ? `Resuming the upload of ${base(s.filePath)} to Azure Blob Container '${s.container}'`
        : `Uploading it to Azure Blob Container '${s.container}' as ${s.blobName}`;
    case 'upload-event': {
      const text = formatUploadEvent(s.event);
      if (text === undefined || s.event.type === 'committed' || s.event.type === 'confirmed') return undefined;
      return `${NOUN[s.kind]} upload: ${text}`;
    }
    case 'upload-progress':
      return undefined;
    case 'uploaded':
      return (
        `${NOUN[s.kind]} has been successfully uploaded to Azure Blob Container (${s.blobName}, ${s.bytes} bytes, MD5 ${s.contentMD5}` +
        `${s.attempts > 1 ? `, ${s.attempts} attempts` : ''}${s.reusedBlocks > 0 ? `, ${s.reusedBlocks} blocks reused from an interrupted run` : ''}).`
      );
    case 'upload-failed':
      return (
        `ERROR: failed to upload the ${LOWER[s.kind]}${s.attempts !== undefined ? ` after ${s.attempts} attempt${s.attempts === 1 ? '' : 's'}` : ''}: ${s.error}. ` +
        `The file is kept (${s.filePath}); the upload resumes at the next start.`
      );
    case 'upload-interrupted':
      return `The upload of ${base(s.filePath)} was interrupted; it resumes at the next start.`;
    case 'pending-dropped':
      return `Dropped the pending upload of ${base(s.filePath)}: ${s.reason}`;
    default:
      return undefined;
  }
}

/** "2025-02-12 10:00:05: Acquiring lock for dumping..." or undefined. */
export function formatStep(s: CollectionStep): string | undefined {
  const text = describeStep(s);
  return text === undefined ? undefined : `${logTimestamp(s.time)}: ${text}`;
}

/** The JSON-lines record of a step. */
export function stepRecord(s: CollectionStep): Record<string, unknown> {
  const { time, ...rest } = s;
  return { time: time.toISOString(), type: 'collection', ...rest };
}
