// `sockwatch --version`: what is running, in the terms a bug report needs: the sockwatch release, the
// addon file actually loaded (a prebuild or a local build, and the prebuild's source stamp) and Node.js.
// In the single executable (scripts/build-standalone.mjs), what it was built from: its embedded JSON.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addonPath, packageRoot as PACKAGE_ROOT, releaseVersion, standaloneInfo } from '../native';

function readJson(file: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Which addon file the library loads (lib/native.ts addonPath), relative to the package, with the prebuild's stamp. */
function addonText(): string {
  let file: string;
  try {
    file = addonPath();
  } catch (e) {
    return `not found (${(e as Error).message.split('\n')[0]})`;
  }
  if (!fs.existsSync(file)) return `not found (${file})`;
  const rel = path.relative(PACKAGE_ROOT, file);
  const stamp = readJson(path.join(path.dirname(file), 'sockwatch.stamp.json'));
  const hash = typeof stamp?.hash === 'string' ? `, sources ${stamp.hash.slice(0, 12)}` : '';
  return `${rel}${hash ? ` (${hash.slice(2)})` : ''}`;
}

export function versionText(): string {
  const standalone = standaloneInfo();
  if (standalone) {
    const { addon } = standalone;
    const sources = addon.sources ? `sources ${addon.sources.slice(0, 12)}, ` : '';
    return [
      `sockwatch ${standalone.version} (single executable ${process.execPath})`,
      `addon embedded ${addon.file} (${sources}sha256 ${addon.sha256.slice(0, 12)})`,
      `node ${process.version} (N-API ${process.versions.napi}, ${process.platform}-${process.arch})`,
    ].join('\n');
  }
  return [
    `sockwatch ${releaseVersion()}`,
    `addon ${addonText()}`,
    `node ${process.version} (N-API ${process.versions.napi}, ${process.platform}-${process.arch})`,
  ].join('\n');
}
