// A real Azurite blob service for tests: spawned from node_modules, on 127.0.0.1, port chosen by
// the OS (or a given one, to come back on the same port after a stop).
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  BlobServiceClient,
  ContainerSASPermissions,
  SASProtocol,
  StorageSharedKeyCredential,
  generateBlobSASQueryParameters,
  type ContainerClient,
} from '@azure/storage-blob';

/** The well-known development account of Azurite and the storage emulator (public, not a secret). */
export const DEV_ACCOUNT = 'devstoreaccount1';
export const DEV_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

const ROOT = path.resolve(__dirname, '..', '..');
const AZURITE_BLOB = path.join(ROOT, 'node_modules', '.bin', 'azurite-blob');
const LISTENING = /successfully listens on (https?:\/\/[^\s:]+):(\d+)/;

// Azurite runs under a small watchdog: vitest ends its workers with SIGTERM, which runs no exit
// handler, so an Azurite that a failed hook never stopped would outlive the run. The watchdog kills
// Azurite when its stdin (a pipe from this process) closes, forwards SIGTERM for a clean stop, and
// exits with Azurite. Its stdout (the "listens on" line) passes through.
const WATCHDOG = `
const child = require('node:child_process').spawn(process.execPath, process.argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit'] });
process.on('SIGTERM', () => child.kill('SIGTERM'));
process.on('SIGINT', () => child.kill('SIGTERM'));
process.stdin.on('end', () => child.kill('SIGKILL'));
process.stdin.on('error', () => child.kill('SIGKILL'));
process.stdin.resume();
child.on('exit', (code, signal) => process.exit(code ?? (signal === 'SIGTERM' ? 0 : 1)));
`;

export interface StartAzuriteOptions {
  /** Port to listen on (default 0: any free port). */
  port?: number;
  /** Keep data on disk in this folder instead of in memory, so a restart keeps containers and blobs. */
  location?: string;
  /** Ignore unsupported headers and parameters. */
  loose?: boolean;
  /** How long to wait for the listening line (default 60 s: a loaded 2-core machine is slow). */
  startTimeoutMs?: number;
  /** Added to Azurite's environment (e.g. LD_PRELOAD of libfaketime, to give it a clock of its own). */
  env?: NodeJS.ProcessEnv;
}

export interface Azurite {
  /** http://127.0.0.1:PORT (no account). */
  baseUrl: string;
  /** http://127.0.0.1:PORT/devstoreaccount1 (the account URL). */
  url: string;
  port: number;
  readonly running: boolean;
  /** SIGTERM (Azurite saves and closes), SIGKILL after 10 s; resolves when Azurite is gone. */
  stop(): Promise<void>;
  /** Starts again on the same port (and location, if any); stops first if still running. */
  restart(): Promise<void>;
}

function spawnAzurite(options: StartAzuriteOptions): Promise<{ child: ChildProcess; host: string; port: number }> {
  const args = [
    '--blobHost',
    '127.0.0.1',
    '--blobPort',
    String(options.port ?? 0),
    '--silent',
    '--disableTelemetry',
    '--skipApiVersionCheck',
  ];
  if (options.location !== undefined) args.push('--location', options.location);
  else args.push('--inMemoryPersistence', '--extentMemoryLimit', '256');
  if (options.loose) args.push('--loose');
  const child = spawn(process.execPath, ['-e', WATCHDOG, fs.realpathSync(AZURITE_BLOB), ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    cwd: options.location ?? ROOT,
    ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
  });
  child.stdin!.on('error', () => undefined); // EPIPE once the watchdog is gone
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => {
      child.stdin!.end();
      fail(new Error(`azurite-blob did not start within ${options.startTimeoutMs ?? 60_000} ms: ${output.trim()}`));
    }, options.startTimeoutMs ?? 60_000);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const m = LISTENING.exec(output);
      if (m) {
        clearTimeout(timer);
        child.off('exit', onExit);
        resolve({ child, host: m[1]!, port: Number(m[2]) });
      }
    };
    const onExit = (code: number | null, signal: string | null): void =>
      fail(new Error(`azurite-blob exited (${signal ?? code}) before listening: ${output.trim()}`));
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', onExit);
  });
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts azurite-blob; in memory unless `location` is given (the two cannot be combined). */
export async function startAzurite(options: StartAzuriteOptions = {}): Promise<Azurite> {
  let { child, host, port } = await spawnAzurite(options);
  const stop = async (): Promise<void> => {
    const current = child;
    if (current.exitCode !== null || current.signalCode !== null) return;
    const killer = setTimeout(() => current.stdin!.end(), 10_000); // the watchdog then SIGKILLs Azurite
    current.kill('SIGTERM');
    await waitExit(current);
    clearTimeout(killer);
  };
  const baseUrl = `${host}:${port}`;
  return {
    baseUrl,
    url: `${baseUrl}/${DEV_ACCOUNT}`,
    port,
    get running() {
      return child.exitCode === null && child.signalCode === null;
    },
    stop,
    async restart() {
      await stop();
      ({ child } = await spawnAzurite({ ...options, port }));
    },
  };
}

function accountUrl(baseUrl: string): string {
  const trimmed = baseUrl.replace(/\/+$/, '');
  return trimmed.endsWith(`/${DEV_ACCOUNT}`) ? trimmed : `${trimmed}/${DEV_ACCOUNT}`;
}

/** A container client authorised with the dev account key (for setup and for checking results). */
export function keyContainerClient(baseUrl: string, container: string): ContainerClient {
  const credential = new StorageSharedKeyCredential(DEV_ACCOUNT, DEV_KEY);
  return new BlobServiceClient(accountUrl(baseUrl), credential).getContainerClient(container);
}

export interface ContainerSasOptions {
  /** Default "racwdlt". */
  permissions?: string;
  /** Default one hour from now. */
  expiresOn?: Date;
  startsOn?: Date;
  /** Create the container first (default true). */
  create?: boolean;
}

/** Creates `container` (with the dev key) and returns a container SAS URL for it, valid over http. */
export async function createContainerSas(baseUrl: string, container: string, options: ContainerSasOptions = {}): Promise<string> {
  const client = keyContainerClient(baseUrl, container);
  if (options.create ?? true) await client.createIfNotExists();
  const sas = generateBlobSASQueryParameters(
    {
      containerName: container,
      permissions: ContainerSASPermissions.parse(options.permissions ?? 'racwdlt'),
      startsOn: options.startsOn,
      expiresOn: options.expiresOn ?? new Date(Date.now() + 3_600_000),
      protocol: SASProtocol.HttpsAndHttp,
    },
    new StorageSharedKeyCredential(DEV_ACCOUNT, DEV_KEY),
  ).toString();
  return `${client.url}?${sas}`;
}
