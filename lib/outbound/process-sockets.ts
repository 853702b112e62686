// The sockets of one process, for counting only its connections (--pid). Open sockets are found by
// the inodes behind /proc/PID/fd/*; a socket in TIME_WAIT has no inode any more (the kernel keeps a
// small timewait record) but keeps its cookie, so the cookies seen in the previous poll are
// remembered and still match.
import * as fs from 'node:fs';

const SOCKET_LINK = /^socket:\[(\d+)\]$/;

/** Inodes of the sockets a process holds open; undefined when the process is gone. */
export function socketInodes(pid: number): number[] | undefined {
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new TypeError(`pid must be a positive integer, got ${String(pid)}`);
  const dir = `/proc/${pid}/fd`;
  let fds: string[];
  try {
    fds = fs.readdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return undefined;
    if (code === 'EACCES' || code === 'EPERM') {
      throw Object.assign(new Error(`cannot read ${dir}: permission denied (run as the process's user, as root, or with CAP_SYS_PTRACE)`), {
        code,
      });
    }
    throw err;
  }
  const inodes: number[] = [];
  for (const fd of fds) {
    let link: string;
    try {
      link = fs.readlinkSync(`${dir}/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const m = SOCKET_LINK.exec(link);
    if (m) inodes.push(Number(m[1]));
  }
  return inodes;
}

/** Owner filter of one process across polls: its open socket inodes plus the cookies last seen. */
export class ProcessSockets {
  private cookies: bigint[] = [];
  private gone = false;

  constructor(readonly pid: number) {
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new TypeError(`pid must be a positive integer, got ${String(pid)}`);
  }

  /** The filter for the next scan; `alive` is false once the process has exited. */
  filter(): { ownerInodes: number[]; ownerCookies: bigint[]; alive: boolean } {
    const inodes = this.gone ? undefined : socketInodes(this.pid);
    if (inodes === undefined) this.gone = true;
    return { ownerInodes: inodes ?? [], ownerCookies: this.cookies, alive: !this.gone };
  }

  /** Remembers the cookies a scan aggregated (the process's sockets now, TIME_WAIT included). */
  remember(cookies: ArrayLike<bigint> | undefined): void {
    this.cookies = cookies ? Array.from(cookies) : [];
  }
}
