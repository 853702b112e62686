// The hourly log files: outconn-logs-{instance}/outbound_conns_stats_{YYYY-MM-DD_HH}.log and its
// JSON-lines twin (.jsonl). Every write is a synchronous append, so a SIGKILL loses nothing already
// logged; the file in use follows the clock (a new one each local hour). Every text is redacted, and a
// symbolic link planted where a log file belongs is refused (base/fs), never appended through.
import * as path from 'node:path';
import { appendFileNoFollow, ensureDir } from '../base/fs';
import { redactText } from '../base/redact';
import { logDirName, statsFileName } from './log-format';

export interface HourlyLogOptions {
  /** The directory that holds outconn-logs-{instance}/ (default: the current directory). */
  baseDir?: string;
  instance: string;
  /** Clock (tests). */
  now?: () => Date;
}

export class HourlyLog {
  /** outconn-logs-{instance}, absolute. */
  readonly dir: string;
  private readonly now: () => Date;

  constructor(options: HourlyLogOptions) {
    if (options === null || typeof options !== 'object') throw new TypeError('HourlyLog options must be an object');
    if (typeof options.instance !== 'string' || options.instance === '') throw new TypeError('instance must be a non-empty string');
    if (options.now !== undefined && typeof options.now !== 'function') throw new TypeError('now must be a function');
    this.dir = path.resolve(options.baseDir ?? '.', logDirName(options.instance));
    this.now = options.now ?? (() => new Date());
    ensureDir(this.dir);
  }

  /** The text log of the hour of `date` (default now). */
  textPath(date: Date = this.now()): string {
    return path.join(this.dir, statsFileName(date, 'log'));
  }

  jsonPath(date: Date = this.now()): string {
    return path.join(this.dir, statsFileName(date, 'jsonl'));
  }

  /**
   * Appends lines to the text log and a record to the JSON-lines log of the hour of `at` (default
   * now). Either may be omitted.
   */
  write(lines: readonly string[] | undefined, record?: Record<string, unknown>, at: Date = this.now()): void {
    if (lines && lines.length > 0) appendFileNoFollow(this.textPath(at), redactText(lines.join('\n')) + '\n');
    if (record) appendFileNoFollow(this.jsonPath(at), redactText(JSON.stringify(record, bigintReplacer)) + '\n');
  }
}

function bigintReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
