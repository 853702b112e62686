// One way to fail: the project's codes share one prefix and one table, the README shows that same
// table, and OS failures are named by Node's own errno tables.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, SockwatchError, errnoName, systemError } from '../lib/base/errors';

describe('project error codes', () => {
  it('all carry the ERR_SOCKWATCH_ prefix', () => {
    for (const code of Object.keys(ERROR_CODES)) expect(code).toMatch(/^ERR_SOCKWATCH_[A-Z_]+$/);
  });

  it('the README "Error codes" table is this table, row for row', () => {
    const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
    const section = readme.split('\n## Error codes\n')[1]?.split('\n## ')[0] ?? '';
    const rows = section
      .split('\n')
      .filter((l) => l.startsWith('| `ERR_'))
      .map((l) =>
        l
          .slice(1, -1)
          .split(' | ')
          .map((c) => c.trim()),
      );
    const expected = Object.entries(ERROR_CODES).map(([code, e]) => [
      `\`${code}\``,
      e.meaning,
      e.action,
      e.legacy === undefined ? '' : `\`${e.legacy}\``,
    ]);
    expect(rows).toEqual(expected);
  });

  it('SockwatchError carries the code, the 0.1.0 code and the cause', () => {
    const cause = new Error('underneath');
    const e = new SockwatchError('ERR_SOCKWATCH_SAS_EXPIRED', 'expired', { cause });
    expect(e).toBeInstanceOf(Error);
    expect(e).toMatchObject({ name: 'SockwatchError', code: 'ERR_SOCKWATCH_SAS_EXPIRED', legacyCode: 'SAS_EXPIRED', cause });
    expect(new SockwatchError('ERR_SOCKWATCH_DIAGNOSTICS', 'x').legacyCode).toBeUndefined();
  });
});

describe('system errors', () => {
  it('are shaped like Node fs errors: errno name, negative errno, syscall', () => {
    let nodeErr: NodeJS.ErrnoException | undefined;
    try {
      fs.openSync('/nonexistent/sockwatch', 'r');
    } catch (e) {
      nodeErr = e as NodeJS.ErrnoException;
    }
    const ours = systemError(os.constants.errno.ENOENT, 'open', "'/nonexistent/sockwatch'");
    expect(ours).toMatchObject({ code: nodeErr!.code, errno: nodeErr!.errno, syscall: nodeErr!.syscall });
    expect(ours.message).toBe("open ENOENT: '/nonexistent/sockwatch'");
    expect(systemError(-os.constants.errno.EACCES, 'connect').message).toBe('connect EACCES: permission denied');
  });

  it('name every errno the kernel can return, also those libuv does not know', () => {
    expect(errnoName(os.constants.errno.EBADMSG)).toBe('EBADMSG');
    expect(errnoName(-os.constants.errno.ENOBUFS)).toBe('ENOBUFS');
    expect(errnoName(os.constants.errno.EPROTONOSUPPORT)).toBe('EPROTONOSUPPORT');
    expect(errnoName(100000)).toBe('UNKNOWN');
    expect(systemError(os.constants.errno.EBADMSG, 'recvmsg', undefined, { description: 'Bad message' }).message).toBe(
      'recvmsg EBADMSG: Bad message',
    );
  });
});
