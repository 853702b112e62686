// lib/base/fs.ts: directories created safely, files never written through a planted symbolic link.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { appendFileNoFollow, ensureDir, openNoFollow, openUnderRoot, OPEN_APPEND, readFileNoFollow, writeFileAtomic } from '../lib/base/fs';
import { onCleanup } from './helpers/cleanup';
import { runCleanups } from './helpers/cleanup';
import { tmpDir } from './helpers/tmp';

afterEach(runCleanups);

describe('ensureDir', () => {
  it('creates missing parents with mode 0700 and accepts an existing directory', () => {
    const root = tmpDir('fs');
    const dir = path.join(root, 'a', 'b', 'c');
    expect(ensureDir(dir)).toBe(dir);
    expect(fs.statSync(path.join(root, 'a')).mode & 0o777).toBe(0o700);
    expect(fs.statSync(dir).isDirectory()).toBe(true);
    expect(ensureDir(dir)).toBe(dir);
  });

  it.each(['/proc/sockwatch-forbidden/x', '/proc/sockwatch-forbidden', '/sys/sockwatch-state', '/proc'])(
    'refuses %s at once and creates nothing (Node recursive mkdir loops forever there)',
    (dir) => {
      expect(() => ensureDir(dir)).toThrow(/kernel pseudo file system/);
      expect(fs.existsSync(dir) && dir !== '/proc').toBe(false);
    },
  );

  it('refuses an empty path', () => {
    expect(() => ensureDir('')).toThrow(/empty/);
    expect(() => ensureDir('   ')).toThrow(/empty/);
  });

  it('names a file in the way', () => {
    const root = tmpDir('fs');
    fs.writeFileSync(path.join(root, 'f'), '');
    expect(() => ensureDir(path.join(root, 'f', 'd'))).toThrow(/f exists and is not a directory/);
  });

  it.skipIf(process.getuid?.() !== 0)('says EROFS for a missing directory on a read-only mount', () => {
    const root = tmpDir('fs');
    fs.mkdirSync(path.join(root, 'ro'));
    const modulePath = path.resolve(__dirname, '../dist/base/fs.js');
    const script = `try { require(${JSON.stringify(modulePath)}).ensureDir(process.argv[1] + '/ro/a/b'); console.log('created') } catch (e) { console.log(e.code + ' ' + e.message) }`;
    const r = spawnSync(
      'unshare',
      ['--mount', 'sh', '-c', 'mount -t tmpfs -o ro none "$1/ro" && exec "$2" -e "$3" "$1"', 'sh', root, process.execPath, script],
      { encoding: 'utf8', timeout: 20_000 },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(`EROFS cannot create ${root}/ro/a: read-only file system (EROFS)`);
  });
});

describe('writes never follow a planted symbolic link', () => {
  it('append, open and read refuse a link and leave its target untouched', () => {
    const root = tmpDir('fs');
    const target = path.join(root, 'precious');
    fs.writeFileSync(target, 'keep\n');
    const link = path.join(root, 'outbound_conns_stats.log');
    fs.symlinkSync(target, link);
    expect(() => appendFileNoFollow(link, 'injected\n')).toThrow(`refusing to open ${link}: it is a symbolic link`);
    expect(() => openNoFollow(link, OPEN_APPEND)).toThrow(/symbolic link/);
    expect(() => readFileNoFollow(link)).toThrow(/symbolic link/);
    expect(fs.readFileSync(target, 'utf8')).toBe('keep\n');
  });

  it('appends to a regular file, created 0600', () => {
    const file = path.join(tmpDir('fs'), 'log');
    appendFileNoFollow(file, 'one\n');
    appendFileNoFollow(file, 'two\n');
    expect(fs.readFileSync(file, 'utf8')).toBe('one\ntwo\n');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  it('an atomic replacement replaces the link itself, not what it points to', () => {
    const root = tmpDir('fs');
    const target = path.join(root, 'precious');
    fs.writeFileSync(target, 'keep\n');
    const file = path.join(root, 'record.json');
    fs.symlinkSync(target, file);
    writeFileAtomic(file, '{"v":1}\n', { fsync: true });
    expect(fs.readFileSync(target, 'utf8')).toBe('keep\n');
    expect(fs.lstatSync(file).isSymbolicLink()).toBe(false);
    expect(fs.readFileSync(file, 'utf8')).toBe('{"v":1}\n');
    expect(fs.readdirSync(root).sort()).toEqual(['precious', 'record.json']);
  });
});

// A process in its own mount namespace with a private /tmp, as a container is seen from the host: its
// files are reached through /proc/PID/root. The container plants absolute links that would resolve
// against the host's root if followed.
describe.skipIf(process.getuid?.() !== 0)('openUnderRoot: a hostile container', () => {
  async function container(): Promise<number> {
    const setup = [
      'mount -t tmpfs none /tmp',
      'echo dump-bytes > /tmp/real.dmp',
      'ln -s /etc/passwd /tmp/planted.dmp',
      'ln -s /etc /tmp/sub',
      'mkfifo /tmp/fifo.dmp',
      'echo ready',
      'exec sleep 600',
    ].join(' && ');
    const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', setup], { stdio: ['ignore', 'pipe', 'inherit'] });
    onCleanup(() => child.kill('SIGKILL'));
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`container setup exited ${code}`)));
    });
    return child.pid!;
  }

  it('reads a regular file inside, and refuses every link and special file without reading the host', async () => {
    const pid = await container();
    const root = `/proc/${pid}/root`;
    const ok = openUnderRoot(root, '/tmp/real.dmp');
    try {
      expect(fs.readFileSync(ok.fd, 'utf8')).toBe('dump-bytes\n');
    } finally {
      ok.close();
    }
    // Sanity: following the path naively does reach the host's file, which is what must not happen.
    expect(fs.readFileSync(`${root}/tmp/planted.dmp`, 'utf8')).toBe(fs.readFileSync('/etc/passwd', 'utf8'));
    expect(() => openUnderRoot(root, '/tmp/planted.dmp')).toThrow(
      `refusing to follow ${root}/tmp/planted.dmp: a symbolic link inside the target's root`,
    );
    expect(() => openUnderRoot(root, '/tmp/sub/passwd')).toThrow(/refusing to follow .*\/tmp\/sub/);
    expect(() => openUnderRoot(root, '/tmp/../etc/passwd')).toThrow(/not a plain absolute path/);
    expect(() => openUnderRoot(root, '/tmp/fifo.dmp')).toThrow(/not a regular file/);
  });
});
