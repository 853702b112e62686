// The entry point itself: --version, and a reader that closes the pipe early (`sockwatch list | head -1`).
import * as net from 'node:net';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli';

const CLI_PATH = path.resolve(__dirname, '../dist/cli/main.js');
const pkg = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../package.json'), 'utf8')) as { version: string };

describe('sockwatch --version', () => {
  it.each([['--version'], ['-v']])('%s prints the sockwatch, addon and Node versions', async (flag) => {
    const r = await runCli([flag]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe(`sockwatch ${pkg.version}`);
    expect(lines[1]).toMatch(/^addon \S+sockwatch(\.glibc)?\.node/); // the prebuild, or build/Release
    expect(lines[2]).toContain(`node ${process.version}`);
  });
});

describe('a closed stdout pipe', () => {
  const servers: net.Server[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });

  it('ends `list` quietly when the reader goes away after one line', async () => {
    // Enough listeners that the JSON listing is far larger than a pipe's 64 KiB buffer: the CLI must
    // still be writing when the reader closes.
    for (let i = 0; i < 1500; i++) {
      const s = net.createServer();
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      servers.push(s);
    }
    const child = spawn(process.execPath, [CLI_PATH, 'list', '--format', 'json', '--tcp'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const first = await new Promise<string>((resolve) => {
      let buf = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        const nl = buf.indexOf('\n');
        if (nl >= 0) {
          child.stdout.destroy();
          resolve(buf.slice(0, nl));
        }
      });
    });
    expect(JSON.parse(first)).toHaveProperty('proto');
    const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });
});
