// Crash and outage recovery of uploadFile on a real Azurite that keeps its data on disk
// (--location), so it can stop and come back on the same port with containers and staged blocks.
//
// The SIGKILL test runs the first upload in a child process. The child loads lib/upload/*.ts
// through a require hook that strips types with TypeScript's transpileModule (no type check, no
// build step, no temp output): tsx is not installed and Node 20 cannot strip types itself.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uploadFile, type UploadEvent } from '../lib/upload';
import { readUploadRecord, uploadRecordPath } from '../lib/upload/upload-record';
import { createContainerSas, keyContainerClient, startAzurite, type Azurite } from './helpers/azurite';

const BLOCK = 256 * 1024;
const ROOT = path.resolve(__dirname, '..');
let azurite: Azurite;
let sasUrl: string;
let tmp: string;

// The child: uploads with concurrency 1 and freezes (Atomics.wait) inside the event listener
// after FREEZE_AFTER staged blocks, so no request is in flight when the parent kills it.
const CHILD = `
'use strict';
const fs = require('node:fs');
const ts = require(${JSON.stringify(path.join(ROOT, 'node_modules', 'typescript'))});
require.extensions['.ts'] = (module, filename) => {
  const { outputText } = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  });
  module._compile(outputText, filename);
};
const { uploadFile } = require(${JSON.stringify(path.join(ROOT, 'lib', 'upload', 'index.ts'))});
const freezeAfter = Number(process.env.FREEZE_AFTER);
let staged = 0;
const line = (obj) => fs.writeSync(1, JSON.stringify(obj) + '\\n');
uploadFile({
  containerSasUrl: process.env.SAS_URL,
  filePath: process.env.FILE,
  blockSize: Number(process.env.BLOCK_SIZE),
  concurrency: 1,
  onEvent: (e) => {
    line(e);
    if (e.type === 'block-staged' && ++staged === freezeAfter) {
      line({ type: 'frozen' });
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120000);
    }
  },
}).then(() => line({ type: 'done' }), (err) => { line({ type: 'error', message: err.message }); process.exitCode = 1; });
`;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sockwatch-resume-'));
  const location = path.join(tmp, 'azurite');
  fs.mkdirSync(location);
  azurite = await startAzurite({ location });
  sasUrl = await createContainerSas(azurite.url, 'dumps');
  fs.writeFileSync(path.join(tmp, 'child.cjs'), CHILD);
});

afterAll(async () => {
  await azurite?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('uploadFile recovery', () => {
  it('after SIGKILL mid-upload, a rerun stages only the missing blocks and the blob is intact', async () => {
    const data = randomBytes(12 * BLOCK + 777);
    const file = path.join(tmp, 'core.1111');
    fs.writeFileSync(file, data);

    const child = spawn(process.execPath, [path.join(tmp, 'child.cjs')], {
      env: { ...process.env, SAS_URL: sasUrl, FILE: file, BLOCK_SIZE: String(BLOCK), FREEZE_AFTER: '5' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, sig) => resolve(sig ?? code)));
    const childEvents: { type: string }[] = [];
    try {
      for await (const text of readline.createInterface({ input: child.stdout })) {
        const event = JSON.parse(text) as { type: string };
        childEvents.push(event);
        if (event.type === 'frozen' || event.type === 'done' || event.type === 'error') break;
      }
    } finally {
      child.kill('SIGKILL');
    }
    expect(await exited, stderr).toBe('SIGKILL');
    expect(childEvents.at(-1)).toEqual({ type: 'frozen' });
    expect(childEvents.filter((e) => e.type === 'block-staged')).toHaveLength(5);

    const { record } = await readUploadRecord(uploadRecordPath(file));
    expect(record).toMatchObject({ committed: false, size: data.length, blockSize: BLOCK });
    const blob = keyContainerClient(azurite.url, 'dumps').getBlockBlobClient('core.1111');
    const before = (await blob.getBlockList('uncommitted')).uncommittedBlocks!.map((b) => b.name);
    expect(before).toHaveLength(5);

    const events: UploadEvent[] = [];
    const result = await uploadFile({ containerSasUrl: sasUrl, filePath: file, blockSize: BLOCK, onEvent: (e) => events.push(e) });
    expect(events.find((e) => e.type === 'plan')).toMatchObject({
      resumed: true,
      uploadId: record!.uploadId,
      totalBlocks: 13,
      stagedBlocks: 5,
      missingBlocks: 8,
    });
    const stagedNow = events.flatMap((e) => (e.type === 'block-staged' ? [e.index] : []));
    expect(stagedNow.sort((a, b) => a - b)).toEqual([5, 6, 7, 8, 9, 10, 11, 12]);
    expect(result).toMatchObject({ stagedBlocks: 8, reusedBlocks: 5, attempts: 1, size: data.length });
    const committed = (await blob.getBlockList('committed')).committedBlocks!.map((b) => b.name);
    expect(committed.slice(0, 5)).toEqual(before);
    expect((await blob.downloadToBuffer()).equals(data)).toBe(true);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.existsSync(uploadRecordPath(file))).toBe(false);
  });

  it('with Azurite down at the start and back on the same port later, the retry loop completes the upload', async () => {
    const data = randomBytes(3 * BLOCK + 1);
    const file = path.join(tmp, 'core.2222');
    fs.writeFileSync(file, data);
    await azurite.stop();

    const events: UploadEvent[] = [];
    let restarted: Promise<void> | undefined;
    const result = await uploadFile({
      containerSasUrl: sasUrl,
      filePath: file,
      blockSize: BLOCK,
      // Enough attempts for a slow restart on a loaded machine; no timing is asserted.
      maxAttempts: 40,
      retryDelayMs: 200,
      maxRetryDelayMs: 1500,
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'retry') restarted ??= azurite.restart();
      },
    });
    await restarted;
    const retries = events.filter((e) => e.type === 'retry');
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expect(retries[0]).toMatchObject({ attempt: 2, maxAttempts: 40, reason: 'ECONNREFUSED' });
    expect(result).toMatchObject({ attempts: retries.length + 1, size: data.length, localDeleted: true });
    const blob = keyContainerClient(azurite.url, 'dumps').getBlockBlobClient('core.2222');
    expect((await blob.downloadToBuffer()).equals(data)).toBe(true);
  });
});
