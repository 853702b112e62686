#!/usr/bin/env node
// npm run build:image: an OCI image holding the single executable and exactly the shared libraries it
// loads, built offline from the files on this machine with umoci (Debian package `umoci`; no registry,
// no base image), saved as an OCI archive (a tar of an OCI image layout, tag = the package version).
//
//   node scripts/build-image.mjs [--exe dist-standalone/sockwatch-linux-x64]
//                                [--addon prebuilds/linux-x64/sockwatch.glibc.node]
//                                [--out dist-standalone/sockwatch-image.oci.tar]
//
// The image, one layer:
//   /sockwatch                      the executable (entry point; default command `list`)
//   /lib64/ld-linux-x86-64.so.2     the program interpreter named in its PT_INTERP
//   /lib/x86_64-linux-gnu/<soname>  every DT_NEEDED of the executable and of the addon it embeds (the
//                                   addon is written out and dlopen'ed at run time, so its needs count),
//                                   followed recursively; resolved like the loader (RUNPATH, then
//                                   ld.so.cache, then the default directories) and cross-checked with
//                                   ldd. No ld.so.cache in the image: the loader's built-in directories
//                                   include /lib/x86_64-linux-gnu.
//   /etc/passwd, /etc/group         root and nobody: getpwuid() answers for the uids a pod usually runs as
//   /etc/nsswitch.conf              files for users, files then dns for hosts (glibc >= 2.34 has both
//                                   built into libc.so.6: no libnss_* module is needed)
//   /tmp (1777)                     where the executable writes its embedded addon, and where a .NET
//                                   app's diagnostics sockets are found when /tmp is shared with it
// No CA certificates: Node carries Mozilla's root store compiled in, which is what HTTPS to Azure Blob
// Storage uses; a TLS-inspecting proxy's CA is added with NODE_EXTRA_CA_CERTS=<mounted file>. No
// /etc/hosts, /etc/resolv.conf or /etc/hostname: container runtimes mount their own.
//
// File times, the layer's history and the config's `created` come from SOURCE_DATE_EPOCH, else the
// last commit's time, so the same inputs give the same image digest.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addonFile } from './stamp.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const LIB_DIR = '/lib/x86_64-linux-gnu';
const DEFAULT_DIRS = ['/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/lib64', '/usr/lib64', '/lib', '/usr/lib'];

class BuildError extends Error {}

/** Stops the build with one line (the temporary directory is still removed). */
function fail(message) {
  throw new BuildError(message);
}

function parseArgs(argv) {
  const opts = {
    exe: path.join(root, 'dist-standalone', 'sockwatch-linux-x64'),
    addon: addonFile('linux-x64'),
    out: path.join(root, 'dist-standalone', 'sockwatch-image.oci.tar'),
  };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in opts) || i + 1 >= argv.length) fail(`usage: build-image.mjs [--exe FILE] [--addon FILE] [--out FILE] (got ${argv[i]})`);
    opts[key] = path.resolve(argv[++i]);
  }
  return opts;
}

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...options });
  if (r.error) fail(`${cmd}: ${r.error.code === 'ENOENT' ? 'not found' : r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} exited ${r.status}: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

/** DT_NEEDED, RUNPATH/RPATH and the program interpreter of one ELF file, from readelf. */
function elfDeps(file) {
  const dyn = run('readelf', ['-dW', file]);
  const needed = [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  const runpath = [...dyn.matchAll(/\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[([^\]]+)\]/g)].flatMap((m) =>
    m[1].split(':').map((d) => d.replace(/\$ORIGIN|\$\{ORIGIN\}/g, path.dirname(file))),
  );
  const interp = /Requesting program interpreter: ([^\]]+)\]/.exec(run('readelf', ['-lW', file]))?.[1] ?? null;
  return { needed, runpath, interp };
}

function ldCache() {
  const map = new Map();
  for (const line of run('ldconfig', ['-p']).split('\n')) {
    const m = /^\s+(\S+) \(([^)]*)\) => (\S+)$/.exec(line);
    if (m && m[2].includes('x86-64') && !map.has(m[1])) map.set(m[1], m[3]);
  }
  return map;
}

/** The whole closure: soname → host file, plus the interpreter, starting from the given ELF files. */
function resolveClosure(starts) {
  const cache = ldCache();
  const libs = new Map();
  let interp = null;
  const queue = starts.map((f) => ({ file: f, from: f }));
  while (queue.length > 0) {
    const { file } = queue.shift();
    const deps = elfDeps(file);
    if (deps.interp) {
      if (interp && interp !== deps.interp) fail(`two program interpreters: ${interp} and ${deps.interp}`);
      interp = deps.interp;
    }
    for (const name of deps.needed) {
      // libc.so.6 names the interpreter too: the loader matches it by soname to the one already mapped.
      if (libs.has(name) || (interp && name === path.basename(interp))) continue;
      const candidates = [...deps.runpath.map((d) => path.join(d, name)), cache.get(name), ...DEFAULT_DIRS.map((d) => path.join(d, name))];
      const found = candidates.find((c) => c && fs.existsSync(c));
      if (!found) fail(`${path.basename(file)} needs ${name}, which is not on this machine`);
      libs.set(name, found);
      queue.push({ file: found });
    }
  }
  return { libs, interp };
}

/** ldd's view (the loader itself resolving), to cross-check the readelf walk. */
function lddNames(file) {
  const r = spawnSync('ldd', [file], { encoding: 'utf8' });
  if (r.status !== 0) return null; // a static executable: "not a dynamic executable"
  const names = new Set();
  for (const line of r.stdout.split('\n')) {
    const m = /^\s+(\S+)(?: => (\S+))? \(0x/.exec(line);
    if (!m || m[1].startsWith('linux-vdso')) continue;
    if (m[2] === 'not') fail(`ldd ${file}: ${m[1]} not found`);
    names.add(m[2] ? m[1] : path.basename(m[1]));
  }
  return names;
}

function sourceDateEpoch() {
  if (process.env.SOURCE_DATE_EPOCH) return Number(process.env.SOURCE_DATE_EPOCH);
  const r = spawnSync('git', ['-C', root, 'log', '-1', '--format=%ct'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? Number(r.stdout.trim()) : 0;
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (process.arch !== 'x64') fail(`this script builds a linux/amd64 image from this machine's libraries (running on ${process.arch})`);
  if (!fs.existsSync(opts.exe))
    fail(`${path.relative(process.cwd(), opts.exe)} does not exist: run npm run build:standalone first (or pass --exe FILE)`);
  if (!fs.existsSync(opts.addon)) fail(`${opts.addon} does not exist (pass --addon FILE)`);
  if (spawnSync('umoci', ['--version']).error) fail('umoci not found: apt-get install umoci (Debian), or see .ci/run');
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  const tag = pkg.version;
  const epoch = sourceDateEpoch();
  const created = new Date(epoch * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

  const exeDeps = elfDeps(opts.exe);
  const dynamic = exeDeps.interp !== null;
  const { libs, interp } = dynamic ? resolveClosure([opts.exe, opts.addon]) : { libs: new Map(), interp: null };
  if (dynamic) {
    const seen = new Set(libs.keys());
    seen.add(path.basename(interp));
    for (const f of [opts.exe, opts.addon]) {
      const fromLdd = lddNames(f);
      for (const n of fromLdd ?? []) if (!seen.has(n)) fail(`ldd ${path.basename(f)} loads ${n}, which the readelf walk missed`);
    }
  }

  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sockwatch-image-'));
  try {
    const layout = path.join(work, 'layout');
    const bundle = path.join(work, 'bundle');
    const rootless = process.getuid?.() === 0 ? [] : ['--rootless'];
    run('umoci', ['init', '--layout', layout]);
    run('umoci', ['new', '--image', `${layout}:${tag}`]);
    run('umoci', ['unpack', ...rootless, '--image', `${layout}:${tag}`, bundle]);
    const rootfs = path.join(bundle, 'rootfs');

    const put = (dest, src, mode) => {
      const to = path.join(rootfs, dest);
      fs.mkdirSync(path.dirname(to), { recursive: true, mode: 0o755 });
      if (typeof src === 'string' && src.startsWith('/')) fs.copyFileSync(src, to);
      else fs.writeFileSync(to, src.content);
      fs.chmodSync(to, mode);
    };
    put('/sockwatch', opts.exe, 0o755);
    if (interp) put(interp, interp, 0o755);
    for (const [name, file] of libs) put(path.join(LIB_DIR, name), file, 0o644);
    put('/etc/passwd', { content: 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' }, 0o644);
    put('/etc/group', { content: 'root:x:0:\nnogroup:x:65534:\n' }, 0o644);
    put('/etc/nsswitch.conf', { content: 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' }, 0o644);
    fs.mkdirSync(path.join(rootfs, 'tmp'));
    fs.chmodSync(path.join(rootfs, 'tmp'), 0o1777);
    // Fixed times everywhere (directories last, deepest first) so the layer's bytes do not depend on when it was built.
    const all = [];
    const walk = (d) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        all.push(p);
      }
    };
    walk(rootfs);
    all.push(rootfs);
    for (const p of all) fs.utimesSync(p, epoch, epoch);

    const history = ['--history.created', created, '--history.author', 'sockwatch build-image.mjs'];
    run('umoci', ['repack', ...history, '--history.created_by', 'scripts/build-image.mjs', '--image', `${layout}:${tag}`, bundle]);
    const labels = {
      'org.opencontainers.image.title': 'sockwatch',
      'org.opencontainers.image.description': pkg.description,
      'org.opencontainers.image.version': pkg.version,
      'org.opencontainers.image.licenses': pkg.license,
      'org.opencontainers.image.created': created,
    };
    run('umoci', [
      'config',
      '--image',
      `${layout}:${tag}`,
      '--created',
      created,
      '--author',
      'sockwatch',
      '--os',
      'linux',
      '--architecture',
      'amd64',
      '--config.entrypoint',
      '/sockwatch',
      '--config.cmd',
      'list',
      '--config.workingdir',
      '/',
      ...Object.entries(labels).flatMap(([k, v]) => ['--config.label', `${k}=${v}`]),
      ...Object.entries(labels).flatMap(([k, v]) => ['--manifest.annotation', `${k}=${v}`]),
      ...history,
      '--history.created_by',
      'umoci config (entrypoint /sockwatch, cmd list)',
    ]);
    run('umoci', ['gc', '--layout', layout]);

    // An OCI archive is the image layout in a tar (what `skopeo copy oci-archive:FILE:TAG` and
    // `podman load -i FILE` read). Sorted names, fixed owner and times: the same layout gives the same tar.
    fs.mkdirSync(path.dirname(opts.out), { recursive: true });
    const tmpOut = `${opts.out}.${process.pid}.tmp`;
    execFileSync(
      'tar',
      [
        '--sort=name',
        '--owner=0',
        '--group=0',
        '--numeric-owner',
        `--mtime=@${epoch}`,
        '--format=posix',
        '--pax-option=delete=atime,delete=ctime',
        '-C',
        layout,
        '-cf',
        tmpOut,
        'oci-layout',
        'index.json',
        'blobs',
      ],
      { stdio: 'inherit' },
    );
    fs.renameSync(tmpOut, opts.out);

    const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8'));
    const manifestDigest = index.manifests[0].digest;
    const size = fs.statSync(opts.out).size;
    console.log(
      `build-image: ${path.relative(process.cwd(), opts.out)} (${(size / 1048576).toFixed(1)} MiB), tag ${tag}, manifest ${manifestDigest}`,
    );
    console.log(
      `build-image: entry point /sockwatch (${path.relative(process.cwd(), opts.exe)}), ${dynamic ? `interpreter ${interp}` : 'static executable'}`,
    );
    for (const [name, file] of libs) console.log(`build-image:   ${LIB_DIR}/${name} <- ${fs.realpathSync(file)}`);
    const sha = createHash('sha256').update(fs.readFileSync(opts.out)).digest('hex');
    console.log(`build-image: archive sha256 ${sha}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

try {
  main();
} catch (err) {
  if (!(err instanceof BuildError)) throw err;
  console.error(`build-image: ${err.message}`);
  process.exitCode = 1;
}
