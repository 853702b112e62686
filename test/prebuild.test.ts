// The committed prebuild: its stamp matches the native sources, it loads on its own, and it is what
// the library loads unless SOCKWATCH_NATIVE=build asks for the addon compiled from source.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addonPath, loadBinding } from '../lib/native';

const root = path.join(__dirname, '..');

describe('committed prebuild', () => {
  it('is stamped with the hash of native/ and binding.gyp (rebuild with npm run native:prebuild when this fails)', () => {
    const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'stamp.mjs'), 'check'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('loads alone (PREBUILDS_ONLY=1) in a child process and scans', () => {
    const code = `
      const gyp = require('node-gyp-build');
      const file = gyp.path(${JSON.stringify(root)});
      const b = require(file);
      const srv = require('node:net').createServer().listen(0, '127.0.0.1', () => {
        const port = srv.address().port;
        const s = new b.Sampler();
        // LISTEN sockets only, every one as a record: ours must be among them
        const r = s.scanSync({ protocols: 1, families: 1, tcpStates: 1 << 10, udpStates: 0, recvThreshold: -1,
          sendThreshold: -1, acceptThreshold: -1, maxRecords: 1e6, flags: 1, aggStates: 0, aggTop: 0, aggMinTotal: 0 });
        s.close();
        srv.close();
        const ports = [];
        for (let i = 0; i < r.records.count; i++) ports.push(r.records.fields[i * 16 + 3]);
        console.log(JSON.stringify({ file, seen: r.socketsSeen, found: ports.includes(port) }));
      });`;
    const r = spawnSync(process.execPath, ['-e', code], { cwd: root, encoding: 'utf8', env: { ...process.env, PREBUILDS_ONLY: '1' } });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.file).toBe(path.join(root, 'prebuilds', 'linux-x64', 'sockwatch.glibc.node'));
    expect(out.found).toBe(true);
    expect(out.seen).toBeGreaterThanOrEqual(1);
  });

  it('is what loadBinding() loads by default, even with a local build/Release; SOCKWATCH_NATIVE=build loads build/Release', () => {
    const saved = process.env.SOCKWATCH_NATIVE;
    try {
      delete process.env.SOCKWATCH_NATIVE;
      expect(addonPath()).toBe(path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'sockwatch.glibc.node'));
      process.env.LIBC = 'musl'; // node-gyp-build's switch: a musl install compiled build/Release
      expect(addonPath()).toBe(path.join(root, 'build', 'Release', 'sockwatch.node'));
      delete process.env.LIBC;
      process.env.SOCKWATCH_NATIVE = 'build';
      expect(addonPath()).toBe(path.join(root, 'build', 'Release', 'sockwatch.node'));
      process.env.SOCKWATCH_NATIVE = 'newest';
      expect(() => addonPath()).toThrow('SOCKWATCH_NATIVE must be "build" or "prebuild", not "newest"');
    } finally {
      delete process.env.LIBC;
      if (saved === undefined) delete process.env.SOCKWATCH_NATIVE;
      else process.env.SOCKWATCH_NATIVE = saved;
    }
    // The addon this test process uses (CI's second run sets SOCKWATCH_NATIVE=build after compiling).
    const loaded = loadBinding();
    expect(typeof loaded.Sampler).toBe('function');
    const expected = addonPath();
    const opened = fs.readFileSync('/proc/self/maps', 'utf8');
    expect(opened).toContain(expected);
  });
});
