// The committed prebuild carries a stamp: a SHA-256 over native/* and binding.gyp.
// `node scripts/stamp.mjs write` after `prebuildify`; `check` exits 1 when the prebuild is stale.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stampPath = join(root, 'prebuilds', 'linux-x64', 'sockwatch.stamp.json');

export function sourceHash() {
  const files = ['binding.gyp', ...readdirSync(join(root, 'native')).sort().map((f) => `native/${f}`)];
  const h = createHash('sha256');
  for (const f of files) {
    h.update(f + '\0');
    h.update(readFileSync(join(root, f)));
    h.update('\0');
  }
  return { hash: h.digest('hex'), files };
}

const mode = process.argv[2];
if (mode === 'write') {
  const { hash, files } = sourceHash();
  writeFileSync(stampPath, JSON.stringify({ hash, files, node: process.version, date: new Date().toISOString() }, null, 2) + '\n');
  console.log(`stamped ${stampPath}: ${hash}`);
} else if (mode === 'check') {
  const stamp = JSON.parse(readFileSync(stampPath, 'utf8'));
  const { hash } = sourceHash();
  if (stamp.hash !== hash) {
    console.error(`prebuild is stale: stamp ${stamp.hash} != sources ${hash}; run npm run native:prebuild`);
    process.exit(1);
  }
  console.log('prebuild stamp matches native sources');
}
