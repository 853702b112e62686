// The OCI image (scripts/build-image.mjs, `npm run build:image`), without a container runtime: the
// archive is read by the OCI image-layout rules (index → manifest → config and layers, every digest
// checked), its layers are unpacked into a root file system, and the configured entry point runs there
// under `chroot` inside `unshare --mount --pid --fork` with /proc mounted, the environment the image's
// config gives and nothing else. No file of this machine is reachable from inside (no node, no
// libraries but the image's), so what runs is the image: `list`, `snat` (monitor only) and `queues`
// delivering over HTTPS, trusted only through NODE_EXTRA_CA_CERTS (no CA bundle in the image; Node's
// own root store cannot be tried against Azure offline). Not exercised here: a real runtime's mounts
// (/dev, /etc/hosts, resolv.conf), cgroups, seccomp, a registry push and pull.
//
// The archive: $SOCKWATCH_IMAGE, else dist-standalone/sockwatch-image.oci.tar when it is newer than
// the single executable, else one built here from dist-standalone/sockwatch-linux-x64 (`npm run
// build:standalone`). Without the executable (or without root, umoci, unshare) the tests skip and say why.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onCleanup, runCleanups } from './helpers/cleanup';
import { createContainerSas, keyContainerClient, startAzurite } from './helpers/azurite';
import { dotnetSkipReason, hasDotnet, startDotnetApp } from './helpers/dotnet';
import { HttpReceiver } from './helpers/http-receiver';
import { acceptingServer, cleanupSockets, connect, pausedServer, waitAccepted } from './helpers/sockets';
import { tmpDir } from './helpers/tmp';
import { waitFor } from './helpers/wait';

const root = path.join(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
const exe = path.join(root, 'dist-standalone', 'sockwatch-linux-x64');
const builtArchive = path.join(root, 'dist-standalone', 'sockwatch-image.oci.tar');
const addon = path.join(root, 'prebuilds', 'linux-x64', 'sockwatch.glibc.node');

function which(tool: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}
const tools = {
  unshare: which('unshare'),
  chroot: which('chroot'),
  umoci: which('umoci'),
  readelf: which('readelf'),
  openssl: which('openssl'),
};

function whyNot(): string | null {
  if (process.getuid?.() !== 0) return 'chroot and unshare --mount need root';
  for (const [name, p] of Object.entries(tools)) if (!p) return `${name} is not installed`;
  if (process.env.SOCKWATCH_IMAGE)
    return fs.existsSync(process.env.SOCKWATCH_IMAGE) ? null : `SOCKWATCH_IMAGE=${process.env.SOCKWATCH_IMAGE} does not exist`;
  if (!fs.existsSync(exe) && !fs.existsSync(builtArchive)) return 'no dist-standalone/sockwatch-linux-x64: run npm run build:standalone';
  return null;
}
const skipReason = whyNot();
const title = skipReason ? `OCI image (skipped: ${skipReason})` : 'OCI image: the single executable and its libraries, run under chroot';

const sha256File = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}
interface ImageConfig {
  architecture: string;
  os: string;
  config: { Entrypoint?: string[]; Cmd?: string[]; Env?: string[]; WorkingDir?: string; User?: string; Labels?: Record<string, string> };
  rootfs: { type: string; diff_ids: string[] };
}

let layoutDir = '';
let rootfs = '';
let config: ImageConfig;
let layers: Descriptor[] = [];

/** Path of a blob in the layout after checking its size and sha256 digest against its descriptor. */
function blob(d: Descriptor): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(d.digest);
  expect(m, `digest ${d.digest}`).not.toBeNull();
  const file = path.join(layoutDir, 'blobs', 'sha256', m![1]!);
  expect(fs.statSync(file).size, `size of ${d.digest}`).toBe(d.size);
  expect(`sha256:${sha256File(file)}`, `content of ${d.digest}`).toBe(d.digest);
  return file;
}

/** The entry point (with `args`, or the image's Cmd) as a container would run it, minus the runtime. */
function imageCommand(args: string[] | null, extraEnv: Record<string, string> = {}) {
  const argv = [...(config.config.Entrypoint ?? []), ...(args ?? config.config.Cmd ?? [])];
  const imageEnv = Object.fromEntries((config.config.Env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  // --kill-child: the entry point (pid 1 of the new pid namespace) dies with unshare.
  const unshareArgs = [
    '--mount',
    '--pid',
    '--fork',
    '--kill-child',
    `--mount-proc=${path.join(rootfs, 'proc')}`,
    tools.chroot!,
    rootfs,
    ...argv,
  ];
  return { unshareArgs, options: { env: { ...imageEnv, ...extraEnv }, cwd: path.join(rootfs, config.config.WorkingDir ?? '/') } };
}

function runImage(args: string[] | null, extraEnv: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const { unshareArgs, options } = imageCommand(args, extraEnv);
  const r = spawnSync(tools.unshare!, unshareArgs, { ...options, encoding: 'utf8', timeout: 30_000, maxBuffer: 256 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts the entry point in the background; killed (through unshare) at cleanup. */
function startImage(args: string[], extraEnv: Record<string, string> = {}): { stderr: () => string } {
  const { unshareArgs, options } = imageCommand(args, extraEnv);
  const child = spawn(tools.unshare!, unshareArgs, { ...options, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { stderr: () => stderr };
}

/** DT_NEEDED and PT_INTERP of an ELF file. */
function elf(file: string): { needed: string[]; interp: string | null } {
  const dyn = execFileSync(tools.readelf!, ['-dW', file], { encoding: 'utf8' });
  const headers = execFileSync(tools.readelf!, ['-lW', file], { encoding: 'utf8' });
  return {
    needed: [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]!),
    interp: /Requesting program interpreter: ([^\]]+)\]/.exec(headers)?.[1] ?? null,
  };
}

/** Every file and directory under dir, as absolute paths inside the image. */
function listTree(dir: string, prefix = '/'): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const inImage = path.posix.join(prefix, e.name);
    out.push(e.isDirectory() ? `${inImage}/` : inImage);
    if (e.isDirectory()) out.push(...listTree(path.join(dir, e.name), inImage));
  }
  return out;
}

describe.skipIf(skipReason !== null)(title, () => {
  beforeAll(() => {
    let archive = process.env.SOCKWATCH_IMAGE ?? builtArchive;
    const stale =
      !process.env.SOCKWATCH_IMAGE &&
      (!fs.existsSync(archive) || (fs.existsSync(exe) && fs.statSync(exe).mtimeMs > fs.statSync(archive).mtimeMs));
    if (stale) {
      archive = path.join(tmpDir('image-build'), 'sockwatch-image.oci.tar');
      execFileSync(process.execPath, [path.join(root, 'scripts', 'build-image.mjs'), '--out', archive], { stdio: 'pipe' });
    }
    const work = tmpDir('image run');
    layoutDir = path.join(work, 'layout');
    rootfs = path.join(work, 'root fs');
    fs.mkdirSync(layoutDir);
    fs.mkdirSync(rootfs);
    execFileSync('tar', ['-xf', archive, '-C', layoutDir]);

    expect(JSON.parse(fs.readFileSync(path.join(layoutDir, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(fs.readFileSync(path.join(layoutDir, 'index.json'), 'utf8')) as {
      schemaVersion: number;
      manifests: Descriptor[];
    };
    expect(index.schemaVersion).toBe(2);
    const ref = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === pkg.version);
    expect(ref, `a manifest tagged ${pkg.version} in index.json`).toBeDefined();
    expect(ref!.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    const manifest = JSON.parse(fs.readFileSync(blob(ref!), 'utf8')) as { schemaVersion: number; config: Descriptor; layers: Descriptor[] };
    expect(manifest.config.mediaType).toBe('application/vnd.oci.image.config.v1+json');
    config = JSON.parse(fs.readFileSync(blob(manifest.config), 'utf8')) as ImageConfig;
    layers = manifest.layers;
    expect(layers.length).toBeGreaterThan(0);
    expect(config.rootfs.diff_ids).toHaveLength(layers.length);
    // Layers in order, each one's uncompressed digest checked against the config's diff_ids.
    layers.forEach((layer, i) => {
      expect(layer.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
      const tar = zlib.gunzipSync(fs.readFileSync(blob(layer)));
      expect(`sha256:${createHash('sha256').update(tar).digest('hex')}`, `diff_id of layer ${i}`).toBe(config.rootfs.diff_ids[i]);
      const entries = execFileSync('tar', ['-t'], { input: tar, encoding: 'utf8', maxBuffer: 1 << 24 });
      expect(
        entries.split('\n').filter((e) => path.posix.basename(e).startsWith('.wh.')),
        'whiteouts',
      ).toEqual([]);
      execFileSync('tar', ['-x', '-p', '--numeric-owner', '-C', rootfs], { input: tar, maxBuffer: 1 << 24 });
    });
    fs.mkdirSync(path.join(rootfs, 'proc'));
  });

  afterAll(async () => {
    await runCleanups();
    await cleanupSockets();
  });

  it('is a linux/amd64 image whose entry point is the single executable', () => {
    expect(config.os).toBe('linux');
    expect(config.architecture).toBe('amd64');
    expect(config.config.Entrypoint).toEqual(['/sockwatch']);
    expect(config.config.Cmd).toEqual(['list']);
    expect(config.config.Labels?.['org.opencontainers.image.version']).toBe(pkg.version);
    const entry = path.join(rootfs, 'sockwatch');
    expect(fs.statSync(entry).mode & 0o111).not.toBe(0);
    if (fs.existsSync(exe) && !process.env.SOCKWATCH_IMAGE)
      expect(sha256File(entry), 'the image holds dist-standalone/sockwatch-linux-x64').toBe(sha256File(exe));
  });

  it('holds exactly the executable, the libraries it and its embedded addon need, and a few /etc files', () => {
    const main = elf(path.join(rootfs, 'sockwatch'));
    expect(main.interp, 'a dynamically linked executable').not.toBeNull();
    const interp = main.interp!;
    // The closure, resolved inside the image the way its loader does without ld.so.cache.
    const libs = new Set<string>();
    const queue = [path.join(rootfs, 'sockwatch'), addon];
    while (queue.length) {
      for (const name of elf(queue.shift()!).needed) {
        if (name === path.posix.basename(interp) || libs.has(name)) continue;
        const inImage = path.join(rootfs, 'lib', 'x86_64-linux-gnu', name);
        expect(fs.existsSync(inImage), `${name} in /lib/x86_64-linux-gnu`).toBe(true);
        libs.add(name);
        queue.push(inImage);
      }
    }
    expect([...libs]).toEqual(expect.arrayContaining(['libc.so.6', 'libstdc++.so.6', 'libgcc_s.so.1', 'libm.so.6']));
    const expected = [
      '/etc/',
      '/etc/group',
      '/etc/nsswitch.conf',
      '/etc/passwd',
      '/lib/',
      '/lib/x86_64-linux-gnu/',
      ...[...libs].map((l) => `/lib/x86_64-linux-gnu/${l}`),
      `${path.posix.dirname(interp)}/`,
      interp,
      '/proc/', // made by this test as the mount point
      '/sockwatch',
      '/tmp/',
    ];
    const tree = listTree(rootfs).filter((p) => !p.startsWith('/proc/') || p === '/proc/');
    expect(tree.filter((p) => !p.startsWith('/tmp/') || p === '/tmp/').sort()).toEqual([...new Set(expected)].sort());
    expect(fs.statSync(path.join(rootfs, 'tmp')).mode & 0o7777).toBe(0o1777);
    expect(fs.readFileSync(path.join(rootfs, 'etc', 'passwd'), 'utf8')).toMatch(/^root:x:0:0:/);
    expect(fs.readFileSync(path.join(rootfs, 'etc', 'nsswitch.conf'), 'utf8')).toMatch(/^hosts:\s+files dns$/m);
  });

  it('runs the entry point under chroot: --version names the embedded Node and addon', () => {
    const r = runImage(['--version']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^sockwatch ${pkg.version.replace(/\./g, '\\.')}\\b`));
    expect(r.stdout).toMatch(/^node v\d+\.\d+\.\d+/m);
  });

  it('the default command (list) shows a socket this test listens on; --format json finds it exactly', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const table = runImage(null);
      expect(table.stderr).toBe('');
      expect(table.status).toBe(0);
      expect(table.stdout).toMatch(/^Netid\s+State\s+Recv-Q/);
      expect(table.stdout).toMatch(new RegExp(`^tcp\\s+LISTEN\\s+0\\s+\\d+\\s+127\\.0\\.0\\.1:${port}\\s`, 'm'));
      const json = runImage(['list', '--format', 'json', '--tcp', '-4', '--sport', String(port)]);
      expect(json.status).toBe(0);
      const rows = json.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((r) => r.local === `127.0.0.1:${port}`); // the same port number may be another test's on another address
      expect(rows).toEqual([
        expect.objectContaining({ proto: 'tcp', family: 'ipv4', state: 'listen', local: `127.0.0.1:${port}`, uid: 0 }),
      ]);
    } finally {
      server.close();
    }
  });

  it('snat runs there: monitor only, its log under --log-dir counts the connections to a listener of this test', async () => {
    // -d 0.001 (3.6 s): room for the first poll after a slow start of the image on a loaded machine
    const { port, accepted } = await pausedServer('127.0.0.1');
    for (let i = 0; i < 3; i++) await connect('127.0.0.1', port);
    await waitAccepted(accepted, 3);
    const r = runImage(['snat', '-t', '2', '-f', '1', '-d', '0.001', '--log-dir', '/tmp/snat'], { COMPUTERNAME: 'image-test' });
    expect(r.status, r.stderr).toBe(0);
    const logDir = path.join(rootfs, 'tmp', 'snat', 'outconn-logs-image-test');
    const log = fs
      .readdirSync(logDir)
      .filter((f) => f.endsWith('.log'))
      .map((f) => fs.readFileSync(path.join(logDir, f), 'utf8'))
      .join('');
    const dest = `127\\.0\\.0\\.1:${port}`;
    expect(log).toMatch(new RegExp(`^${dest}\\s+3\\s+ESTABLISHED\\(3\\)`, 'm'));
    expect(log).toMatch(/: Connection threshold exceeded$/m); // (the line naming a destination names the largest)
  });

  it.skipIf(!tools.openssl)(
    'HTTPS without a CA bundle in the image: an alert reaches a receiver whose CA comes from NODE_EXTRA_CA_CERTS, and only then',
    async () => {
      const dir = tmpDir('image-tls');
      const key = path.join(dir, 'key.pem');
      const cert = path.join(dir, 'cert.pem');
      const subject = ['-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'];
      execFileSync(
        tools.openssl!,
        ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', ...subject],
        { stdio: 'ignore' },
      );
      fs.copyFileSync(cert, path.join(rootfs, 'tmp', 'receiver-ca.pem'));
      const rx = await HttpReceiver.start({ tls: { key: fs.readFileSync(key), cert: fs.readFileSync(cert) } });
      onCleanup(() => rx.close());
      const { port, accepted } = await pausedServer('127.0.0.1');
      const c = await connect('127.0.0.1', port);
      await waitAccepted(accepted, 1);
      c.write(Buffer.alloc(5000));
      const queues = (stateDir: string) => [
        'queues',
        '--recv-threshold',
        '100',
        '--tcp',
        '--sport',
        String(port),
        '--src',
        '127.0.0.1', // the port number alone can be another test's socket with a queue on another address
        '--url',
        `${rx.url}/hook`,
        '--state-dir',
        stateDir,
      ];

      const untrusted = startImage(queues('/tmp/q-untrusted'));
      await waitFor('the certificate error', () => /certificate/i.test(untrusted.stderr()), { ms: 30_000, detail: untrusted.stderr });
      expect(untrusted.stderr()).toMatch(/self[- ]signed certificate/i);
      expect(rx.requests).toHaveLength(0);

      startImage(queues('/tmp/q-trusted'), { NODE_EXTRA_CA_CERTS: '/tmp/receiver-ca.pem' });
      await rx.waitForRequests(1, 30_000);
      expect(rx.requests[0]!.query).toEqual(
        expect.arrayContaining([
          ['type', 'RECV'],
          ['local', `127.0.0.1:${port}`],
          ['event', 'alert'],
        ]),
      );
    },
  );

  it('needs every library it carries: without any one of them the entry point does not start', () => {
    const dir = path.join(rootfs, 'lib', 'x86_64-linux-gnu');
    for (const name of fs.readdirSync(dir)) {
      const file = path.join(dir, name);
      fs.renameSync(file, `${file}.away`);
      try {
        const r = runImage(['--version']);
        expect(r.status, `without ${name}`).not.toBe(0);
        expect(r.stderr).toContain(`error while loading shared libraries: ${name}`);
      } finally {
        fs.renameSync(`${file}.away`, file);
      }
    }
    expect(runImage(['--version']).status).toBe(0);
  });

  // The Kubernetes sidecar of deploy/kubernetes/, emulated: the image's entry point in a mount namespace
  // and root of its own (chroot) but sharing the pid namespace (shareProcessNamespace) and the network
  // namespace (a pod's) with a real .NET app running outside it, uploading to Azurite through a SAS URL.
  // It finds the app through /proc, has the runtime write a dump into the app's own /tmp (reached
  // through /proc/PID/root), copies it to its --log-dir and uploads it. Not a pod: no kubelet, no
  // emptyDir, no capability set (the test runs as root with every capability).
  const dotnetSkip = hasDotnet() ? null : dotnetSkipReason();
  describe.skipIf(dotnetSkip !== null)(
    dotnetSkip
      ? `OCI image as a sidecar (skipped: ${dotnetSkip})`
      : 'OCI image as a sidecar: snat dumps a .NET app outside its root and uploads it',
    () => {
      it('shared pid and network namespaces, own mount namespace and root: the dump reaches Azurite', async () => {
        const { port } = await acceptingServer('127.0.0.1');
        const azurite = await startAzurite();
        onCleanup(() => azurite.stop());
        const container = 'image-sidecar';
        const sas = await createContainerSas(azurite.url, container);
        const app = await startDotnetApp('127.0.0.1', port, 12);
        onCleanup(() => app.stop());
        const instance = `image-sidecar-${process.pid}`;
        const { options } = imageCommand(null, { COMPUTERNAME: instance, DIAGNOSTICS_AZUREBLOBCONTAINERSASURL: sas });
        const argv = [
          ...(config.config.Entrypoint ?? []),
          ...['snat', '-t', '10', '-f', '0.5', '--pid', String(app.pid), '--dump-type', 'normal'],
          ...['--exclude-ports', `80,443,2222,${port}`, '--log-dir', '/tmp/diag', 'enable-dump'],
        ];
        // No --pid: the pid namespace is shared, as with shareProcessNamespace; /proc is this host's.
        const child = spawn(
          tools.unshare!,
          ['--mount', '--fork', '--kill-child', `--mount-proc=${path.join(rootfs, 'proc')}`, tools.chroot!, rootfs, ...argv],
          {
            ...options,
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        onCleanup(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        const code = await new Promise<number | string | null>((resolve) => {
          child.once('exit', (c) => resolve(c));
          child.once('error', (e) => resolve(e.message));
        });
        expect(code, out).toBe(0);
        const blobs: string[] = [];
        for await (const b of keyContainerClient(azurite.url, container).listBlobsFlat()) blobs.push(b.name);
        const dump = blobs.find((n) => new RegExp(`^dump_${instance}_\\d{8}_\\d{6}\\.dmp$`).test(n));
        expect(dump, `${JSON.stringify(blobs)}\n${out}`).toBeDefined();
        const head = await keyContainerClient(azurite.url, container).getBlobClient(dump!).downloadToBuffer(0, 20);
        expect(head.subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46])); // ELF
        expect(head.readUInt16LE(16)).toBe(4); // ET_CORE
      });
    },
  );
});
