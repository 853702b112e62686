// Format versions of state files (outbox meta, episodes, and any record a later run reads). Rule: a
// file carries `v` (or `version`), the format the writing sockwatch knew; a file without one is the
// 0.1.0 form and is read as version 1; a file of a newer format is refused with one line naming it
// (ERR_SOCKWATCH_STATE_VERSION) and left as is: never misread, never rewritten, never deleted.
import { SockwatchError } from './errors';

/** The version a parsed state object declares (`v`, else `version`); undefined when it declares none. */
export function declaredVersion(parsed: unknown): number | undefined {
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const o = parsed as { v?: unknown; version?: unknown };
  const v = o.v ?? o.version;
  return typeof v === 'number' && Number.isSafeInteger(v) ? v : undefined;
}

/** A state file written by a newer sockwatch. */
export class StateFormatError extends SockwatchError {
  constructor(
    readonly file: string,
    readonly version: number,
    readonly known: number,
    what: string,
  ) {
    super(
      'ERR_SOCKWATCH_STATE_VERSION',
      `${what} ${file} has format v${version}, written by a newer sockwatch (this one knows v${known}); ` +
        'left as is: run the newer version, or move the file away to start over',
    );
    this.name = 'StateFormatError';
  }
}

/** The version `parsed` declares when it is a format newer than `known`, else undefined. */
export function newerVersion(parsed: unknown, known: number): number | undefined {
  const v = declaredVersion(parsed);
  return v !== undefined && v > known ? v : undefined;
}

/** Throws StateFormatError when `parsed` declares a version above `known`. */
export function assertKnownVersion(parsed: unknown, known: number, file: string, what: string): void {
  const v = newerVersion(parsed, known);
  if (v !== undefined) throw new StateFormatError(file, v, known, what);
}
