// The committed prebuilds load wherever the official Node binaries run: every glibc / libstdc++ symbol
// version they need (GLIBC_*, GLIBCXX_*, CXXABI_*) is one the Node binaries the suite runs on need too,
// measured here with readelf on those binaries (the Node running this test, the system `node`, the
// pinned Node lines in .ci/node, the pinned arm64 Node in .cache). Also: they need no shared library
// those Node binaries do not, and export only the two N-API entry points (the static C++ runtime
// inside stays private). And the C++ exception path of the build: std::bad_alloc from the addon's
// containers, forced with an address-space limit, reaches the C++ runtime's terminate handler with
// its type named (not a crash in the unwinder, not a foreign exception).
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.join(__dirname, '..');
const toolchain = JSON.parse(fs.readFileSync(path.join(root, 'scripts', 'prebuild-toolchain.json'), 'utf8')) as {
  targets: Record<string, string>;
  nodeArm64: { dir: string };
};
const NAMESPACES = ['GLIBC', 'GLIBCXX', 'CXXABI'] as const;
type Namespace = (typeof NAMESPACES)[number];

const hasReadelf = spawnSync('readelf', ['--version']).status === 0;

/** readelf's view of an ELF file: its ELF machine, the versions it needs per namespace, NEEDED, exports. */
function elf(
  file: string,
  withExports = false,
): { machine: string; needs: Map<Namespace, string[]>; needed: string[]; exported: string[] } {
  const readelf = (...args: string[]): string => execFileSync('readelf', ['-W', ...args, file], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const header = readelf('-h');
  const machine = /Machine:\s+(.+)/.exec(header)?.[1]?.trim() ?? '?';
  const versions = readelf('-V');
  const section = versions.split(/\n(?=Version \w+ section)/).find((s) => s.startsWith("Version needs section '.gnu.version_r'")) ?? '';
  const needs = new Map<Namespace, string[]>();
  for (const m of section.matchAll(/Name: (GLIBC|GLIBCXX|CXXABI)_([0-9.]+)/g)) {
    const ns = m[1] as Namespace;
    needs.set(ns, [...(needs.get(ns) ?? []), m[2]!]);
  }
  const dyn = readelf('-d');
  const needed = [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!);
  // (Node binaries export thousands of symbols: only the prebuilds' are read.)
  const syms = withExports ? readelf('--dyn-syms') : '';
  const exported: string[] = [];
  for (const line of syms.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && /^\d+:$/.test(f[0]!) && f[6] !== 'UND' && (f[4] === 'GLOBAL' || f[4] === 'WEAK')) exported.push(f[7]!);
  }
  return { machine, needs, needed, exported: exported.sort() };
}

/** Compares dotted versions numerically: 3.4.9 < 3.4.21. */
function cmpVersion(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
const newest = (vs: string[]): string => [...vs].sort(cmpVersion).at(-1)!;

/**
 * The versions a prebuild needs that not every one of these Node binaries needs too (so on a system
 * where that Node runs, the prebuild may not load): per namespace, a version newer than the oldest
 * "newest version needed" among the binaries, or a namespace some binary does not need at all.
 */
function tooNew(prebuild: Map<Namespace, string[]>, nodes: Map<Namespace, string[]>[]): string[] {
  const bad: string[] = [];
  for (const ns of NAMESPACES) {
    const want = prebuild.get(ns) ?? [];
    if (want.length === 0) continue;
    const ceilings = nodes.map((n) => n.get(ns) ?? []);
    if (ceilings.some((c) => c.length === 0)) {
      bad.push(`${ns}_${newest(want)} (a Node binary needs no ${ns}_* at all)`);
      continue;
    }
    const ceiling = ceilings.map(newest).sort(cmpVersion)[0]!;
    for (const v of want) if (cmpVersion(v, ceiling) > 0) bad.push(`${ns}_${v} > ${ns}_${ceiling}`);
  }
  return [...new Set(bad)];
}

/** The Node binaries of one architecture that the suite runs on, by path. */
function nodeBinaries(key: string): string[] {
  const found = new Set<string>();
  if (key === `linux-${process.arch}`) {
    found.add(fs.realpathSync(process.execPath));
    const system = spawnSync('sh', ['-c', 'command -v node'], { encoding: 'utf8' }).stdout.trim();
    if (system) found.add(fs.realpathSync(system));
    const pinned = path.join(root, '.ci', 'node');
    if (fs.existsSync(pinned)) {
      for (const v of fs.readdirSync(pinned)) {
        const bin = path.join(pinned, v, 'bin', 'node');
        if (fs.existsSync(bin)) found.add(bin);
      }
    }
  }
  if (key === 'linux-arm64') {
    const bin = path.join(root, toolchain.nodeArm64.dir, 'bin', 'node');
    if (fs.existsSync(bin)) found.add(bin);
  }
  return [...found];
}

const MACHINE: Record<string, string> = { 'linux-x64': 'Advanced Micro Devices X86-64', 'linux-arm64': 'AArch64' };

describe.skipIf(!hasReadelf)('prebuilds load where the official Node binaries run (readelf, from binutils)', () => {
  it('the check rejects what the 0.2.0 prebuild (GCC 12, shared libstdc++) needed: GLIBCXX_3.4.29 against Node 22', () => {
    const gcc = new Map<Namespace, string[]>([
      ['GLIBC', ['2.2.5', '2.14', '2.17']],
      ['GLIBCXX', ['3.4', '3.4.21', '3.4.29']],
      ['CXXABI', ['1.3', '1.3.9']],
    ]);
    const node22 = new Map<Namespace, string[]>([
      ['GLIBC', ['2.2.5', '2.28']],
      ['GLIBCXX', ['3.4', '3.4.21']],
      ['CXXABI', ['1.3', '1.3.9']],
    ]);
    expect(tooNew(gcc, [node22])).toEqual(['GLIBCXX_3.4.29 > GLIBCXX_3.4.21']);
    expect(tooNew(gcc, [new Map([['GLIBC', ['2.28']]])])).toEqual([
      'GLIBCXX_3.4.29 (a Node binary needs no GLIBCXX_* at all)',
      'CXXABI_1.3.9 (a Node binary needs no CXXABI_* at all)',
    ]);
  });

  for (const key of Object.keys(toolchain.targets)) {
    const file = path.join(root, 'prebuilds', key, 'sockwatch.glibc.node');
    const nodes = nodeBinaries(key);

    it(`${key}: built for its CPU, exports only the N-API entry points`, () => {
      const p = elf(file, true);
      expect(p.machine).toBe(MACHINE[key]);
      expect(p.exported).toEqual(['napi_register_module_v1', 'node_api_module_get_api_version_v1']);
      // No C++ runtime from the system: libc++ is linked in statically.
      expect(p.needed.filter((n) => /stdc\+\+|c\+\+|gcc_s/.test(n))).toEqual([]);
    });

    // The arm64 Node comes from `node scripts/build-prebuilds.mjs install nodeArm64` (.ci/run runs it).
    const none =
      nodes.length === 0 ? ` (skipped: no ${key} Node binary to measure; node scripts/build-prebuilds.mjs install nodeArm64)` : '';
    it.skipIf(nodes.length === 0)(
      `${key}: no GLIBC_/GLIBCXX_/CXXABI_ version newer than the Node binaries need, no library they do not load${none}`,
      () => {
        const p = elf(file);
        const measured = nodes.map((n) => ({ n, e: elf(n) }));
        for (const { n, e } of measured) expect(e.machine, n).toBe(MACHINE[key]);
        expect(
          tooNew(
            p.needs,
            measured.map((m) => m.e.needs),
          ),
        ).toEqual([]);
        for (const lib of p.needed) {
          const missing = measured.filter((m) => !m.e.needed.includes(lib)).map((m) => m.n);
          expect(missing, `${lib} is not loaded by every Node binary`).toEqual([]);
        }
        // What the official builds need, as measured when this was written: glibc 2.28.
        expect(newest(p.needs.get('GLIBC') ?? ['0'])).toSatisfy((v: string) => cmpVersion(v, '2.28') <= 0);
      },
    );
  }
});

describe('the C++ exception path of the x64 prebuild', () => {
  const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0;
  it.skipIf(!hasPrlimit)(
    'std::bad_alloc from a container (address space limited with prlimit) reaches the C++ runtime, which names it and aborts',
    () => {
      // The addon catches no C++ exception (NAPI_DISABLE_CPP_EXCEPTIONS, no try/catch in native/): an
      // allocation failure ends the process, as with the GCC build. A catch at the N-API boundary that
      // turns it into a JS error would also pass here (the second branch).
      const r = spawnSync(
        'prlimit',
        ['--core=0', '--', process.execPath, path.join(__dirname, 'helpers', 'prebuild-replay.cjs'), '--bad-alloc'],
        {
          cwd: root,
          encoding: 'utf8',
          env: { ...process.env, SOCKWATCH_NATIVE: 'prebuild' },
          timeout: 60_000,
        },
      );
      const lines = r.stdout.trim().split('\n').filter(Boolean);
      expect(lines.length, `no output; status ${r.status}, signal ${r.signal}, stderr: ${r.stderr}`).toBeGreaterThan(0);
      const info = JSON.parse(lines[0]!).info as { addon: string; mapped: boolean };
      expect(info.addon).toBe(path.join(root, 'prebuilds', `linux-${process.arch}`, 'sockwatch.glibc.node'));
      expect(info.mapped).toBe(true);
      expect(lines[1], `the limit was set and the call made; stderr: ${r.stderr}`).toBe('{"calling":"parseRecorded"}');
      if (r.signal === 'SIGABRT') {
        expect(r.stderr).toContain('terminating due to uncaught exception of type std::bad_alloc');
        expect(lines).toHaveLength(2);
      } else {
        expect(JSON.parse(lines[2]!)).toMatchObject({ thrown: { error: { code: 'ENOMEM' } } });
      }
    },
  );
});
