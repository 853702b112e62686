// Each committed prebuild (prebuilds/linux-x64, prebuilds/linux-arm64) carries a stamp next to it,
// sockwatch.stamp.json: a SHA-256 over the files it was built from (binding.gyp, native/*, the build
// script) and node-addon-api's version, the toolchain and target, and the SHA-256 of the .node file.
// scripts/build-prebuilds.mjs writes both stamps after building both prebuilds (`npm run native:prebuild`);
// `node scripts/stamp.mjs check` exits 1 when a prebuild is missing, stale, built with another
// toolchain than the pinned one, or replaced without a rebuild. No date in it: a rebuild of
// unchanged sources changes no file.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const toolchain = JSON.parse(readFileSync(join(root, 'scripts', 'prebuild-toolchain.json'), 'utf8'));
/** The prebuild directories under prebuilds/, one per target. */
export const prebuildKeys = Object.keys(toolchain.targets);

/** One line naming the compiler: the pinned package, version and integrity. */
export function toolchainName() {
  const z = toolchain.zig;
  return `zig ${z.version} (npm ${z.package}@${z.version}, ${z.integrity})`;
}

export function sourceHash() {
  const files = [
    'binding.gyp',
    ...readdirSync(join(root, 'native'))
      .sort()
      .map((f) => `native/${f}`),
    'scripts/build-prebuilds.mjs',
  ];
  const h = createHash('sha256');
  for (const f of files) {
    h.update(f + '\0');
    h.update(readFileSync(join(root, f)));
    h.update('\0');
  }
  const addonApi = JSON.parse(readFileSync(join(root, 'node_modules', 'node-addon-api', 'package.json'), 'utf8')).version;
  h.update(`node-addon-api@${addonApi}\0`);
  return { hash: h.digest('hex'), files, nodeAddonApi: addonApi };
}

const sha256 = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');
const stampPath = (key) => join(root, 'prebuilds', key, 'sockwatch.stamp.json');
/**
 * The prebuild's file name. The `glibc` tag is node-gyp-build's: on musl (Alpine) it matches no prebuild,
 * so `npm install` compiles the addon from source instead of installing one that cannot load there.
 */
export const ADDON_NAME = 'sockwatch.glibc.node';
/** prebuilds/<key>/ADDON_NAME. */
export const addonFile = (key) => join(root, 'prebuilds', key, ADDON_NAME);

/** Writes the stamp of prebuilds/<key> (called by build-prebuilds.mjs right after building it). */
export function writeStamp(key, extra) {
  const { hash, files, nodeAddonApi } = sourceHash();
  const stamp = {
    hash,
    files,
    nodeAddonApi,
    target: toolchain.targets[key],
    toolchain: toolchainName(),
    ...extra,
    sha256: sha256(addonFile(key)),
  };
  writeFileSync(stampPath(key), JSON.stringify(stamp, null, 2) + '\n');
  return stamp;
}

/** Problems with the committed prebuilds, one line each (empty: all fresh). */
export function checkStamps() {
  const problems = [];
  const { hash } = sourceHash();
  for (const key of prebuildKeys) {
    if (!existsSync(addonFile(key)) || !existsSync(stampPath(key))) {
      problems.push(`prebuilds/${key}: ${ADDON_NAME} or its stamp is missing`);
      continue;
    }
    const stamp = JSON.parse(readFileSync(stampPath(key), 'utf8'));
    if (stamp.hash !== hash) problems.push(`prebuilds/${key} is stale: stamp ${stamp.hash} != sources ${hash}`);
    if (stamp.toolchain !== toolchainName())
      problems.push(`prebuilds/${key} was built with ${stamp.toolchain}, not the pinned ${toolchainName()}`);
    if (stamp.target !== toolchain.targets[key])
      problems.push(`prebuilds/${key} was built for ${stamp.target}, not ${toolchain.targets[key]}`);
    const actual = sha256(addonFile(key));
    if (stamp.sha256 !== actual)
      problems.push(`prebuilds/${key}/${ADDON_NAME} (sha256 ${actual}) is not the file its stamp names (${stamp.sha256})`);
  }
  return problems;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const mode = process.argv[2];
  if (mode === 'check') {
    const problems = checkStamps();
    if (problems.length > 0) {
      for (const p of problems) console.error(p);
      console.error('rebuild both with: npm run native:prebuild');
      process.exit(1);
    }
    console.log(`prebuild stamps match the native sources: ${prebuildKeys.join(', ')}`);
  } else {
    console.error('usage: node scripts/stamp.mjs check   (stamps are written by npm run native:prebuild)');
    process.exit(2);
  }
}
