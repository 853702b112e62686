// What an upload reports while it runs. Every text in an event is redacted.

export type UploadEvent =
  | { type: 'attempt'; attempt: number; maxAttempts: number }
  | {
      type: 'retry';
      /** The attempt about to start after the delay (2 for the first retry). */
      attempt: number;
      maxAttempts: number;
      /** Past maxAttempts with retryUntilAborted: retried until it succeeds or is aborted. */
      untilAborted?: true;
      delayMs: number;
      /** Short and redacted: "ECONNREFUSED", "HTTP 503 ServerBusy", "timeout". */
      reason: string;
      statusCode?: number;
    }
  | { type: 'record-discarded'; reason: string }
  | {
      type: 'plan';
      uploadId: string;
      resumed: boolean;
      size: number;
      blockSize: number;
      totalBlocks: number;
      /** Blocks the service already holds with the right size. */
      stagedBlocks: number;
      missingBlocks: number;
    }
  | {
      type: 'block-staged';
      index: number;
      bytes: number;
      doneBlocks: number;
      totalBlocks: number;
      doneBytes: number;
      totalBytes: number;
    }
  | { type: 'committed'; blobName: string }
  | { type: 'confirmed'; blobName: string; size: number; contentMD5: string }
  | { type: 'local-deleted'; filePath: string };

export type UploadEventListener = (event: UploadEvent) => void;

function seconds(ms: number): string {
  const s = ms / 1000;
  return s >= 10 || Number.isInteger(s) ? `${Math.round(s)} s` : `${s.toFixed(1)} s`;
}

/** One log line for the events worth logging ("retry 2/5 in 4 s: ECONNREFUSED"), else undefined. */
export function formatUploadEvent(event: UploadEvent): string | undefined {
  switch (event.type) {
    case 'retry':
      return event.untilAborted
        ? `retry ${event.attempt} in ${seconds(event.delayMs)}: ${event.reason} (${event.attempt - 1} attempts failed; retrying until it succeeds or the run ends)`
        : `retry ${event.attempt}/${event.maxAttempts} in ${seconds(event.delayMs)}: ${event.reason}`;
    case 'record-discarded':
      return `upload record discarded (${event.reason}); starting over`;
    case 'plan':
      return event.resumed
        ? `resuming upload ${event.uploadId}: ${event.stagedBlocks}/${event.totalBlocks} blocks already staged`
        : `uploading ${event.size} bytes in ${event.totalBlocks} blocks`;
    case 'committed':
      return `committed ${event.blobName}`;
    case 'confirmed':
      return `confirmed ${event.blobName}: ${event.size} bytes, MD5 ${event.contentMD5}`;
    case 'local-deleted':
      return `deleted local ${event.filePath}`;
    default:
      return undefined;
  }
}
