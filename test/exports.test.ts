// The public API is a decision: this file holds the exact, sorted list of runtime names the package
// exports, at the top level and inside each namespace. Changing an export means changing this list
// (and README.md's Library section, and a CHANGELOG line when a name goes away).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as api from '../lib';

const TOP_LEVEL = [
  'ERROR_CODES',
  'HttpDelivery',
  'Outbox',
  'QueueWatcher',
  'Sampler',
  'SocketOwners',
  'SockwatchError',
  'StateDirLockedError',
  'alertToParams',
  'dotnet',
  'listSockets',
  'outbound',
  'registerMetrics',
  'upload',
];

const NAMESPACES: Record<string, string[]> = {
  dotnet: [
    'DEFAULT_TRACE_PROVIDERS',
    'DiagnosticsIpcError',
    'InsufficientDiskSpaceError',
    'collectTrace',
    'getProcessInfo',
    'listDotnetProcesses',
    'writeDump',
  ],
  outbound: ['OutboundWatcher'],
  upload: [
    'ContainerSasUrl',
    'SAS_URL_VARIABLE',
    'SasExpiredError',
    'UploadAbortedError',
    'UploadError',
    'parseContainerSasUrl',
    'uploadFile',
  ],
};

function names(ns: object): string[] {
  return Object.keys(ns).sort();
}

describe('public exports', () => {
  it('loading the package does not load prom-client; registerMetrics does', () => {
    const script = [
      "const loaded = () => Object.keys(require.cache).some((k) => k.includes('/node_modules/prom-client/'));",
      "const api = require('./dist');",
      'const before = loaded();',
      // A registry of our own shape, so that only registerMetrics can load prom-client.
      'const h = api.registerMetrics({ registerMetric() {}, removeSingleMetric() {} });',
      'console.log(JSON.stringify([before, loaded()]));',
      'h.close();',
    ].join('\n');
    const r = spawnSync(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..'), encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([false, true]);
  });

  it('top level: exactly the documented names', () => {
    expect(names(api)).toEqual(TOP_LEVEL);
  });

  it.each(Object.keys(NAMESPACES))('namespace %s: exactly the documented names', (ns) => {
    expect(names((api as unknown as Record<string, object>)[ns]!)).toEqual(NAMESPACES[ns]);
  });

  it('every exported name is defined', () => {
    for (const name of TOP_LEVEL) expect((api as Record<string, unknown>)[name], name).toBeDefined();
    for (const [ns, list] of Object.entries(NAMESPACES)) {
      const space = (api as unknown as Record<string, Record<string, unknown>>)[ns]!;
      for (const name of list) expect(space[name], `${ns}.${name}`).toBeDefined();
    }
  });
});
