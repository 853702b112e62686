// The committed prebuild: its stamp matches the native sources, and it loads on its own.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

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
      const s = new b.Sampler();
      const r = s.scanSync({ protocols: 3, families: 3, tcpStates: 0xfff, udpStates: 0x82, recvThreshold: -1,
        sendThreshold: -1, acceptThreshold: -1, maxRecords: 0, flags: 0, aggStates: 0, aggTop: 0, aggMinTotal: 0 });
      s.close();
      console.log(JSON.stringify({ file, seen: r.socketsSeen }));`;
    const r = spawnSync(process.execPath, ['-e', code], { cwd: root, encoding: 'utf8', env: { ...process.env, PREBUILDS_ONLY: '1' } });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.file).toBe(path.join(root, 'prebuilds', 'linux-x64', 'sockwatch.node'));
    expect(out.seen).toBeGreaterThanOrEqual(0);
  });
});
