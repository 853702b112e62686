// Compiles lib/ to dist/ and makes the CLI executable (npx runs the package's own bin directly).
// No source maps: the package does not ship lib/*.ts, so maps would point nowhere (stale ones are removed).
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
chmodSync(join(root, 'dist', 'cli', 'main.js'), 0o755);
// Stale outputs go too: a .js/.d.ts whose lib/ module was removed or renamed would otherwise be packed.
for (const entry of readdirSync(join(root, 'dist'), { recursive: true, withFileTypes: true })) {
  if (!entry.isFile()) continue;
  const file = join(entry.parentPath ?? entry.path, entry.name);
  const module = relative(join(root, 'dist'), file).replace(/(\.d\.ts|\.js)$/, '');
  const stale = module === relative(join(root, 'dist'), file) || !existsSync(join(root, 'lib', `${module}.ts`));
  if (entry.name.endsWith('.map') || stale) rmSync(file, { force: true });
}
