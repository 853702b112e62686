// Temporary directories removed by runCleanups().
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onCleanup } from './cleanup';

/** A new directory named sockwatch-NAME-XXXXXX in the OS temp dir. */
export function tmpDir(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sockwatch-${name}-`));
  onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}
