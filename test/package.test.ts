// What a consumer gets from the npm package, checked on the Node line this suite runs on (.ci/run runs
// it on every supported one). `npm pack --json` (the dry run's list, plus the tarball) must hold exactly:
// dist/ (one .js and one .d.ts per lib/ module), every prebuild with a stamp covering it, the native
// sources binding.gyp compiles (install falls back to compiling where no prebuild loads), README,
// CHANGELOG, LICENSE, package.json; no tests, bench, fuzz, TypeScript sources, source maps or build
// leftovers. Then the tarball itself, unpacked as node_modules/sockwatch of a scratch project (its
// runtime dependencies linked from this checkout: no registry), passes node-gyp-build's install check
// without compiling, loads its own prebuild and lists a real listening socket, runs its CLI, and its
// types compile in a consumer's strict TypeScript. Finally npm with engine-strict accepts this Node for
// the package and every locked dependency (and refuses an engines range that excludes it).
// dist/ is the one the global setup built (`npm pack` runs with --ignore-scripts: prepare is that build).
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.join(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  main: string;
  types: string;
  bin: Record<string, string>;
  engines: { node: string };
  dependencies: Record<string, string>;
};
// A space in the path: nothing may depend on unquoted paths.
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sockwatch pack-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** npm (and anything it starts) runs on the Node that runs this test, whatever `node` PATH finds first. */
function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): { status: number | null; stdout: string; stderr: string } {
  const PATH = `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`;
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000, ...opts, env: { ...process.env, PATH, ...opts.env } });
  return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

function walk(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join('/'));
}

interface Packed {
  filename: string;
  files: { path: string; size: number; mode: number }[];
}
let packed: Packed;
let files: string[];

beforeAll(() => {
  const r = run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', scratch], { cwd: root });
  expect(r.status, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout) as Packed[];
  expect(out).toHaveLength(1);
  packed = out[0]!;
  files = packed.files.map((f) => f.path).sort();
}, 120_000);

describe('npm pack: what a consumer gets', () => {
  it('holds dist/: exactly one .js and one .d.ts per lib/ module, nothing else', () => {
    const modules = walk(path.join(root, 'lib'))
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
      .map((f) => f.slice(0, -'.ts'.length));
    expect(modules.length).toBeGreaterThan(10);
    const expected = modules.flatMap((m) => [`dist/${m}.js`, `dist/${m}.d.ts`]).sort();
    const inDist = files.filter((f) => f.startsWith('dist/'));
    // An extra file here is not compiled from lib/ (a stale dist/ after a module was removed or renamed:
    // rm -rf dist && npm run build); publishing from this tree would ship it.
    expect(inDist.filter((f) => !expected.includes(f))).toEqual([]);
    expect(expected.filter((f) => !inDist.includes(f))).toEqual([]);
    expect(files).toContain(pkg.main);
    expect(files).toContain(pkg.types);
    for (const [name, bin] of Object.entries(pkg.bin)) {
      const entry = packed.files.find((f) => f.path === bin.replace(/^\.\//, ''));
      expect(entry, `bin ${name}`).toBeDefined();
      expect(entry!.mode & 0o111, `bin ${name} is executable`).not.toBe(0);
      expect(fs.readFileSync(path.join(root, bin), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    }
  });

  it('holds every prebuild in prebuilds/ (linux-x64 at least), each covered by a packed stamp', () => {
    const platforms = fs
      .readdirSync(path.join(root, 'prebuilds'), { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
    expect(platforms).toContain('linux-x64');
    const stamps = files.filter((f) => f.startsWith('prebuilds/') && f.endsWith('.json'));
    expect(stamps.length).toBeGreaterThan(0);
    // ELF e_machine of each architecture a prebuild directory may be named for (linux-<process.arch>).
    const machines: Record<string, number> = { x64: 62, arm64: 183, ia32: 3, arm: 40 };
    for (const p of platforms) {
      expect(files).toContain(`prebuilds/${p}/sockwatch.glibc.node`);
      // The file is a 64-bit (or 32-bit for ia32/arm) ELF shared object for the directory's architecture.
      const elf = fs.readFileSync(path.join(root, 'prebuilds', p, 'sockwatch.glibc.node'));
      const arch = p.slice(p.indexOf('-') + 1);
      expect(p.startsWith('linux-'), `prebuilds/${p} is for Linux`).toBe(true);
      expect(elf.subarray(0, 4).toString('latin1'), `prebuilds/${p}/sockwatch.glibc.node is ELF`).toBe('\x7fELF');
      expect(elf.readUInt16LE(16), `prebuilds/${p}/sockwatch.glibc.node is a shared object (ET_DYN)`).toBe(3);
      expect(elf.readUInt16LE(18), `prebuilds/${p}/sockwatch.glibc.node is built for ${arch}`).toBe(machines[arch]);
      // A stamp in the prebuild's own directory, or one elsewhere under prebuilds/ that names it.
      const covering = stamps.filter((s) => s.startsWith(`prebuilds/${p}/`) || fs.readFileSync(path.join(root, s), 'utf8').includes(p));
      expect(covering, `a stamp covering prebuilds/${p}`).not.toEqual([]);
    }
    for (const s of stamps) {
      const stamp = JSON.parse(fs.readFileSync(path.join(root, s), 'utf8')) as { hash?: unknown };
      expect(typeof stamp.hash === 'string' || JSON.stringify(stamp).match(/"[0-9a-f]{64}"/) !== null, `${s} holds a hash`).toBe(true);
    }
    // Every file on disk under prebuilds/ is what the package carries there.
    expect(files.filter((f) => f.startsWith('prebuilds/'))).toEqual(
      walk(path.join(root, 'prebuilds'))
        .map((f) => `prebuilds/${f}`)
        .sort(),
    );
  });

  it('holds the native sources binding.gyp compiles (the install falls back to them), and no build leftovers', () => {
    const gyp = JSON.parse(fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8')) as { targets: { sources: string[] }[] };
    const sources = gyp.targets.flatMap((t) => t.sources);
    expect(sources.length).toBeGreaterThan(0);
    expect(files).toContain('binding.gyp');
    for (const s of sources) expect(files).toContain(s);
    for (const f of walk(path.join(root, 'native'))) expect(files).toContain(`native/${f}`);
    const leftovers = files.filter(
      (f) =>
        f.startsWith('build/') ||
        /\.(o|obj|a|so|mk|gypi|tgz|log)$/.test(f) ||
        /(^|\/)Makefile$/.test(f) ||
        (f.endsWith('.node') && !f.startsWith('prebuilds/')),
    );
    expect(leftovers).toEqual([]);
  });

  it('holds README, CHANGELOG and LICENSE, and nothing beyond the allowed list (no tests, bench, fuzz, sources, maps)', () => {
    for (const f of ['README.md', 'CHANGELOG.md', 'LICENSE', 'package.json']) expect(files).toContain(f);
    const allowed = (f: string): boolean =>
      ['README.md', 'CHANGELOG.md', 'LICENSE', 'package.json', 'binding.gyp'].includes(f) ||
      /^dist\/.+\.(js|d\.ts)$/.test(f) ||
      /^native\/[^/]+\.(cc|h)$/.test(f) ||
      /^prebuilds\/[^/]+\/[^/]+\.(node|json)$/.test(f);
    expect(files.filter((f) => !allowed(f))).toEqual([]);
    expect(files.filter((f) => /^(test|bench|fuzz|lib|scripts|\.ci)\//.test(f) || f.endsWith('.map'))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
  });

  it('no packed file refers to a source map (there are none to point to)', () => {
    const referring = files
      .filter((f) => f.endsWith('.js') || f.endsWith('.d.ts'))
      .filter((f) => /^\/[/*]# sourceMappingURL=/m.test(fs.readFileSync(path.join(root, f), 'utf8')));
    expect(referring).toEqual([]);
  });
});

describe('the packed tarball in a consumer project', () => {
  const project = path.join(scratch, 'consumer app');
  const installed = path.join(project, 'node_modules', pkg.name);

  beforeAll(() => {
    fs.mkdirSync(installed, { recursive: true });
    const r = run('tar', ['-xzf', path.join(scratch, packed.filename), '-C', installed, '--strip-components=1']);
    expect(r.status, r.stderr).toBe(0);
    // Runtime dependencies from this checkout (what `npm install sockwatch` would fetch); each one
    // resolves its own dependencies from its real path. @types/node for the TypeScript consumer.
    for (const dep of [...Object.keys(pkg.dependencies), '@types/node']) {
      const link = path.join(project, 'node_modules', dep);
      fs.mkdirSync(path.dirname(link), { recursive: true });
      fs.symlinkSync(path.join(root, 'node_modules', dep), link, 'dir');
    }
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  });

  it('passes the install script without compiling: node-gyp-build finds a prebuild that loads on this Node', () => {
    // `npm install` runs "install": "node-gyp-build", which runs this check and compiles only when it fails.
    const check = require.resolve('node-gyp-build/build-test.js', { paths: [installed] });
    const r = run(process.execPath, [check], { cwd: installed });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const chosen = run(process.execPath, ['-p', `require('node-gyp-build').path(${JSON.stringify(installed)})`], {
      cwd: project,
      env: { PREBUILDS_ONLY: '1' },
    });
    expect(chosen.stderr).toBe('');
    expect(chosen.stdout.trim()).toBe(path.join(installed, 'prebuilds', `${process.platform}-${process.arch}`, 'sockwatch.glibc.node'));
    expect(fs.existsSync(path.join(installed, 'build'))).toBe(false);
  });

  it('on musl no prebuild matches, so the install script compiles; without a compiled addon require("sockwatch") says how to get one', () => {
    // LIBC=musl is node-gyp-build's own switch (on Alpine it sees /etc/alpine-release): this is what it
    // decides there. No musl Node runs here, so nothing is loaded under musl itself.
    const env = { LIBC: 'musl', SOCKWATCH_NATIVE: '' };
    const check = require.resolve('node-gyp-build/build-test.js', { paths: [installed] });
    const r = run(process.execPath, [check], { cwd: installed, env });
    expect(r.status).not.toBe(0); // npm's install script compiles when this check fails
    const chosen = run(process.execPath, ['-p', `require('node-gyp-build').path(${JSON.stringify(installed)})`], {
      cwd: project,
      env: { ...env, PREBUILDS_ONLY: '1' },
    });
    expect(chosen.stderr).toMatch(/No native build was found for platform=linux arch=\w+ runtime=node .*libc=musl/);
    const load = run(
      process.execPath,
      ['-e', `require('sockwatch').listSockets({ tcp: true }).catch((e) => { console.log(e.message); })`],
      {
        cwd: project,
        env,
      },
    );
    expect(load.stdout).toContain(`build/Release/sockwatch.node: Cannot find module`);
    expect(load.stdout).toContain(
      '(the prebuilds need glibc and this is musl: reinstall sockwatch with python3, make and a C++ compiler present',
    );
  });

  it('require("sockwatch") loads the package\'s own prebuild and lists a real listening socket', () => {
    const code = `
      const { listSockets } = require('sockwatch');
      const srv = require('node:net').createServer().listen(0, '127.0.0.1', async () => {
        const port = srv.address().port;
        const list = await listSockets({ tcp: true, states: ['listen'] });
        srv.close();
        const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8');
        const addon = maps.split('\\n').map((l) => l.slice(l.indexOf('/'))).filter((l) => l.endsWith('.node'));
        console.log(JSON.stringify({ found: list.some((s) => s.localPort === port), addon: [...new Set(addon)] }));
      });`;
    const r = run(process.execPath, ['-e', code], { cwd: project, env: { SOCKWATCH_NATIVE: '' } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { found: boolean; addon: string[] };
    expect(out.addon).toEqual([path.join(installed, 'prebuilds', `${process.platform}-${process.arch}`, 'sockwatch.glibc.node')]);
    expect(out.found).toBe(true);
  });

  it("its CLI runs from node_modules/.bin's target: --version names the package, this Node and its prebuild", () => {
    const r = run(process.execPath, [path.join(installed, pkg.bin.sockwatch!), '--version'], {
      cwd: project,
      env: { SOCKWATCH_NATIVE: '' },
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`sockwatch ${pkg.version}`);
    expect(r.stdout).toContain(process.version);
    expect(r.stdout).toContain(`prebuilds/${process.platform}-${process.arch}/sockwatch.glibc.node`);
  });

  it.each([
    ['CommonJS (moduleResolution node10)', { module: 'commonjs', moduleResolution: 'node10' }],
    ['Node16 ESM/CJS resolution (nodenext)', { module: 'nodenext', moduleResolution: 'nodenext' }],
  ])('its types compile in a strict TypeScript consumer: %s', (_name, resolution) => {
    const dir = path.join(project, `ts-${resolution.module}`);
    fs.mkdirSync(dir, { recursive: true });
    // The documented calls, typed through the package's own "types"; the last line must be refused.
    fs.writeFileSync(
      path.join(dir, 'index.ts'),
      [
        "import { Sampler, listSockets, QueueWatcher, SockwatchError, dotnet, type SocketRecord, type SampleResult } from 'sockwatch';",
        'export async function main(): Promise<number> {',
        '  const sampler = new Sampler();',
        "  const r: SampleResult = await sampler.sample({ recvThreshold: 65536, sendThreshold: 65536, acceptThreshold: 'limit' });",
        '  const first: SocketRecord | undefined = r.records[0];',
        '  await sampler.close();',
        "  const listening = await listSockets({ tcp: true, states: ['listen'] });",
        '  void QueueWatcher; void dotnet; void first;',
        '  const e: unknown = undefined; if (e instanceof SockwatchError) return e.code.length;',
        '  return listening.length;',
        '}',
        '// @ts-expect-error a misspelled option is a type error',
        'void listSockets({ recvTreshold: 1 });',
        '',
      ].join('\n'),
    );
    const tsconfig = {
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: 'ES2022',
        lib: ['ES2022'],
        types: ['node'],
        skipLibCheck: false,
        ...resolution,
      },
      files: ['index.ts'],
    };
    fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
    const tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
    const r = run(process.execPath, [tsc, '-p', dir], { cwd: dir });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('engines: npm with engine-strict on this Node', () => {
  function npmCi(dir: string, engines: string): { status: number | null; out: string } {
    fs.mkdirSync(dir, { recursive: true });
    const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
    manifest.engines.node = engines;
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(manifest, null, 2));
    fs.copyFileSync(path.join(root, 'package-lock.json'), path.join(dir, 'package-lock.json'));
    // Resolves the locked tree and checks every package's engines against this Node; fetches nothing.
    const r = run('npm', ['ci', '--dry-run', '--ignore-scripts', '--offline', '--engine-strict', '--no-audit', '--no-fund'], {
      cwd: dir,
    });
    return { status: r.status, out: r.stdout + r.stderr };
  }

  // The title stays the same on every Node line (.ci/run compares the tests each line ran).
  it("accepts the running Node for sockwatch's engines and for every package in the lockfile", () => {
    const r = npmCi(path.join(scratch, 'engines-ok'), pkg.engines.node);
    expect(r.out, `${process.version} against "${pkg.engines.node}" and the lockfile`).not.toContain('notsup');
    expect(r.status).toBe(0);
  });

  it('refuses an engines range that excludes this Node (the check above can fail)', () => {
    const major = Number(process.versions.node.split('.')[0]);
    const r = npmCi(path.join(scratch, 'engines-refused'), `>=${major + 1}`);
    expect(r.out).toContain('notsup');
    expect(r.out).toContain(`Actual:   {"node":"${process.version}"`);
    expect(r.status).not.toBe(0);
  });
});
