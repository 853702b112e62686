// Builds the committed prebuilds, prebuilds/linux-x64 and prebuilds/linux-arm64, with a pinned Zig
// (clang + a static libc++/libc++abi/libunwind, and glibc stubs of a chosen version), so each loads
// wherever the official Node binaries run: glibc 2.28 or newer, no libstdc++ at all. Then stamps both
// (scripts/stamp.mjs). `npm run native:prebuild` runs it; building the TypeScript never does.
//
//   node scripts/build-prebuilds.mjs                  build both prebuilds and their stamps
//   node scripts/build-prebuilds.mjs install <tool>   install a pinned tool (zig, nodeArm64), print its dir
//
// Rules: the same sources, defines and optimisation as binding.gyp (read from it, so they cannot
// drift); only napi_register_module_v1 and node_api_module_get_api_version_v1 are exported (the
// static C++ runtime stays private to the addon, so it never meets Node's libstdc++); tools come
// from the npm registry by `npm pack` into .cache/ (git-ignored), checked against the integrities in
// scripts/prebuild-toolchain.json. Paths given to the compiler are relative, so the output does not
// depend on where the repository is cloned: a rebuild of unchanged sources gives the same bytes.
//
// C++ exceptions: the addon throws none itself and catches none (NAPI_DISABLE_CPP_EXCEPTIONS); only
// the standard containers can throw, std::bad_alloc when an allocation fails (sizes are bounded by
// the kernel's replies and validated options, so length_error is out of reach). That exception
// unwinds through the private libunwind/libc++abi and ends in libc++abi's terminate handler, which
// names it and aborts, as the GCC build's libstdc++ does; test/prebuild-portable.test.ts and
// test/prebuild-arm64.test.ts force it with an address-space limit on both prebuilds.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { root, toolchain, prebuildKeys, writeStamp, addonFile, ADDON_NAME } from './stamp.mjs';

/** Installs a pinned registry package (toolchain.zig or toolchain.nodeArm64) into its .cache dir. */
export function installTool(name) {
  const t = toolchain[name];
  if (!t) throw new Error(`unknown tool ${name}: one of zig, nodeArm64`);
  const dir = join(root, t.dir);
  const marker = join(dir, '.sockwatch-integrity');
  if (existsSync(marker) && readFileSync(marker, 'utf8') === t.integrity) return dir;
  const tmp = mkdtempSync(join(tmpdir(), 'sockwatch-tool-'));
  try {
    const spec = `${t.package}@${t.version}`;
    // npm pack prints the tarball's file name as its last line (--json would list every file).
    const printed = execFileSync('npm', ['pack', spec, '--loglevel=error'], { cwd: tmp, encoding: 'utf8' }).trim().split('\n');
    const tarball = join(tmp, printed[printed.length - 1].trim());
    const actual = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
    if (actual !== t.integrity) throw new Error(`${spec} has integrity ${actual}, pinned ${t.integrity}`);
    const staging = `${dir}.partial`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true });
    execFileSync('tar', ['-xzf', tarball, '-C', staging, '--strip-components=1', '--no-same-owner']);
    writeFileSync(join(staging, '.sockwatch-integrity'), t.integrity);
    rmSync(dir, { recursive: true, force: true });
    renameSync(staging, dir);
    return dir;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Node's C headers (node_api.h): Node's own include dir where npm_config_nodedir or /usr has one. */
function nodeHeaders() {
  const candidates = [
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
    '/usr/include/node',
    join(process.execPath, '..', '..', 'include', 'node'),
  ].filter(Boolean);
  const dir = candidates.find((d) => existsSync(join(d, 'node_api.h')));
  if (!dir) throw new Error(`node_api.h not found in ${candidates.join(', ')}`);
  const v = readFileSync(join(dir, 'node_version.h'), 'utf8');
  const n = (k) => new RegExp(`#define ${k} (\\d+)`).exec(v)?.[1];
  return { dir, version: `v${n('NODE_MAJOR_VERSION')}.${n('NODE_MINOR_VERSION')}.${n('NODE_PATCH_VERSION')}` };
}

/** Compiler arguments from binding.gyp's one target plus node-gyp's defaults that matter here. */
function compileArgs(headers) {
  const gyp = JSON.parse(readFileSync(join(root, 'binding.gyp'), 'utf8')).targets[0];
  // node-gyp's own defines for an addon (common.gypi / addon.gypi); the libstdc++- and OpenSSL-only ones
  // do not apply to this build.
  const defines = [
    `NODE_GYP_MODULE_NAME=${gyp.target_name}`,
    'USING_UV_SHARED=1',
    'USING_V8_SHARED=1',
    'V8_DEPRECATION_WARNINGS=1',
    '_FILE_OFFSET_BITS=64',
    '_LARGEFILE_SOURCE',
    '__STDC_FORMAT_MACROS',
    ...gyp.defines,
    'BUILDING_NODE_EXTENSION',
  ];
  // node-gyp's Release flags, then binding.gyp's cflags_cc (GCC's -flto=auto is clang's -flto).
  // Exceptions stay on, as binding.gyp asks (cflags_cc! -fno-exceptions).
  const flags = ['-fPIC', '-pthread', '-Wall', '-Wextra', '-Wno-unused-parameter', '-O3', '-fno-omit-frame-pointer', '-fno-rtti'];
  for (const f of gyp.cflags_cc) flags.push(f === '-flto=auto' ? '-flto' : f);
  const addonApi = relative(root, join(root, 'node_modules', 'node-addon-api'));
  return {
    sources: gyp.sources,
    args: [...flags, ...defines.map((d) => `-D${d}`), `-I${headers.dir}`, `-I${addonApi}`],
  };
}

/** The defined dynamic symbols of an ELF file (readelf works for any architecture). */
export function exportedSymbols(file) {
  const out = execFileSync('readelf', ['-W', '--dyn-syms', file], { encoding: 'utf8' });
  const names = [];
  for (const line of out.split('\n')) {
    const f = line.trim().split(/\s+/);
    // Num: Value Size Type Bind Vis Ndx Name
    if (f.length >= 8 && /^\d+:$/.test(f[0]) && f[6] !== 'UND' && (f[4] === 'GLOBAL' || f[4] === 'WEAK')) names.push(f[7]);
  }
  return names.sort();
}

function build() {
  const zigDir = installTool('zig');
  const zig = join(zigDir, 'zig');
  const cache = join(root, '.cache', 'zig-cache');
  const env = { ...process.env, ZIG_GLOBAL_CACHE_DIR: cache, ZIG_LOCAL_CACHE_DIR: cache };
  const headers = nodeHeaders();
  const { sources, args } = compileArgs(headers);
  const work = mkdtempSync(join(tmpdir(), 'sockwatch-prebuild-'));
  try {
    const exportsMap = join(work, 'exports.map');
    writeFileSync(exportsMap, '{\n  global: napi_register_module_v1; node_api_module_get_api_version_v1;\n  local: *;\n};\n');
    for (const key of prebuildKeys) {
      const target = toolchain.targets[key];
      const out = join(work, `${key}.node`);
      const started = Date.now();
      console.log(`== ${key}: zig c++ -target ${target} (${sources.length} sources, Node headers ${headers.version})`);
      execFileSync(zig, ['c++', '-target', target, '-shared', '-o', out, ...args, ...sources, `-Wl,--version-script=${exportsMap}`, '-s'], {
        cwd: root,
        env,
        stdio: 'inherit',
      });
      const exported = exportedSymbols(out);
      const expected = ['napi_register_module_v1', 'node_api_module_get_api_version_v1'];
      if (JSON.stringify(exported) !== JSON.stringify(expected))
        throw new Error(`${key}: exports ${exported.join(', ')}, expected ${expected.join(', ')}`);
      const dest = join(root, 'prebuilds', key);
      mkdirSync(dest, { recursive: true });
      for (const f of readdirSync(dest)) if (f.endsWith('.node')) rmSync(join(dest, f));
      renameSync(out, addonFile(key));
      const stamp = writeStamp(key, { nodeHeaders: headers.version });
      console.log(
        `   prebuilds/${key}/${ADDON_NAME}: sha256 ${stamp.sha256}, sources ${stamp.hash} (${((Date.now() - started) / 1000).toFixed(1)} s)`,
      );
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  // The host's prebuild must load in this Node (the other one is loaded under qemu by its test).
  const host = `linux-${process.arch}`;
  if (prebuildKeys.includes(host)) {
    const file = addonFile(host);
    const v = execFileSync(process.execPath, ['-p', `require(${JSON.stringify(file)}).version`], { encoding: 'utf8' }).trim();
    console.log(`   prebuilds/${host} loads in Node ${process.version}: addon interface ${v}`);
  }
}

const [cmd, arg] = process.argv.slice(2);
if (process.argv[1] !== fileURLToPath(import.meta.url)) {
  // imported (tests use exportedSymbols)
} else if (cmd === 'install') {
  console.log(installTool(arg));
} else if (cmd === undefined) {
  build();
} else {
  console.error('usage: node scripts/build-prebuilds.mjs [install zig|nodeArm64]');
  process.exit(2);
}
