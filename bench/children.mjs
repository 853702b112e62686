// Child processes of the harness: the socket farm (long-lived, killed at the end or when the
// harness exits for any reason) and one-shot measuring processes.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const FARM_READY_TIMEOUT_MS = 180_000;
const FARM_EXIT_TIMEOUT_MS = 10_000;

/** Every live child, so exit handlers can kill them by pid. */
const live = new Set();

function track(child) {
  live.add(child);
  child.on('exit', () => live.delete(child));
  return child;
}

/** Kills every tracked child (SIGTERM); safe to call from a synchronous 'exit' handler. */
export function killAllChildren(signal = 'SIGTERM') {
  for (const child of live) {
    try {
      process.kill(child.pid, signal);
    } catch {
      // already gone
    }
  }
}

let handlersInstalled = false;
/** Kill children on normal exit, on signals and on a crash of the harness. */
export function installExitHandlers() {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => killAllChildren());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      killAllChildren();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: ${err.stack ?? err}\n`);
    killAllChildren();
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`bench: ${err?.stack ?? err}\n`);
    killAllChildren();
    process.exit(1);
  });
}

function waitReady(child, label) {
  return new Promise((resolve, reject) => {
    let buf = '';
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`${label}: no READY within ${FARM_READY_TIMEOUT_MS / 1000} s`)), FARM_READY_TIMEOUT_MS);
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /^READY (.*)$/m.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(JSON.parse(m[1]));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited (${signal ?? code}) before READY: ${stderr.trim().slice(0, 500)}`));
    });
  });
}

/**
 * Starts one farm child per spec and waits until all report READY. Returns
 * { children: [READY info...], stop() }. stdin stays a pipe: the farm exits when it closes.
 */
export async function startFarm(specs) {
  const procs = specs.map((spec) =>
    track(spawn(process.execPath, [path.join(here, 'farm.mjs'), JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'pipe'] })),
  );
  const stop = async () => {
    await Promise.all(
      procs.map(
        (p) =>
          new Promise((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            const timer = setTimeout(() => p.kill('SIGKILL'), FARM_EXIT_TIMEOUT_MS);
            p.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            p.kill('SIGTERM');
          }),
      ),
    );
  };
  try {
    const children = await Promise.all(procs.map((p, i) => waitReady(p, `farm child ${i}`)));
    return { children, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Spawns a long-lived child that is killed with the others when this process exits. `stdio` as for
 * spawn (default: stdin a pipe, so a child that watches it notices when this process dies).
 */
export function spawnTracked(file, args, { stdio = ['pipe', 'pipe', 'pipe'], env } = {}) {
  return track(spawn(file, args, { stdio, env: env ? { ...process.env, ...env } : process.env }));
}

/**
 * Resolves with the JSON after `prefix` on the child's first stdout line that starts with it
 * (e.g. READY, STATS); rejects when the child exits first or after `timeoutMs`.
 */
export function waitForLine(child, prefix, label, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    let buf = '';
    let stderr = '';
    const re = new RegExp(`^${prefix} (.*)$`, 'm');
    const onData = (d) => {
      buf += d;
      const m = re.exec(buf);
      if (m) {
        cleanup();
        resolve(JSON.parse(m[1]));
      }
    };
    const onErr = (d) => (stderr += d);
    const onExit = (code, signal) => {
      cleanup();
      reject(new Error(`${label} exited (${signal ?? code}) before ${prefix}: ${stderr.trim().slice(0, 500)}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${label}: no ${prefix} within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    function cleanup() {
      clearTimeout(timer);
      child.stdout.off('data', onData);
      child.stderr?.off('data', onErr);
      child.off('exit', onExit);
    }
    child.stdout.on('data', onData);
    child.stderr?.on('data', onErr);
    child.once('exit', onExit);
  });
}

/** Runs a command to completion, resolving { code, stdout, stderr }. */
export function runChild(file, args, { timeoutMs = 300_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal, stdout, stderr });
    });
  });
}
