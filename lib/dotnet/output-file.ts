// Dump and trace output files. Rule (lib/base/fs.ts): a file sockwatch writes is never written
// through a symbolic link; an output file is always new (O_CREAT|O_EXCL|O_NOFOLLOW), so neither a
// link nor a file planted at its path is followed, truncated or appended to. Refusals are one line
// naming the path, with `code` ELOOP (a link) or EEXIST (anything else) and `path`.
import * as fs from 'node:fs';
import { OPEN_CREATE_NEW, openNoFollow } from '../base/fs';

function refusal(file: string, what: string, isLink: boolean): Error {
  const why = isLink ? 'it is a symbolic link' : 'a file already exists there';
  return Object.assign(new Error(`refusing to write the ${what} to ${file}: ${why}`), {
    code: isLink ? 'ELOOP' : 'EEXIST',
    path: file,
    syscall: 'open',
  });
}

function isLink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Throws when anything (a link above all) is at `file`; the path must be free for a new output. */
export function requireFreeOutputPath(file: string, what: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  throw refusal(file, what, st.isSymbolicLink());
}

/** Creates `file` new (mode 0600) and returns its descriptor; a link or a file at the path is refused. */
export function openNewOutput(file: string, what: string): number {
  try {
    return openNoFollow(file, OPEN_CREATE_NEW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ELOOP') throw refusal(file, what, code === 'ELOOP' || isLink(file));
    throw err;
  }
}

/** Turns an EEXIST from an O_EXCL create (copyFile with COPYFILE_EXCL...) into the refusal line. */
export function explainExisting(err: unknown, file: string, what: string): unknown {
  return (err as NodeJS.ErrnoException)?.code === 'EEXIST' ? refusal(file, what, isLink(file)) : err;
}
