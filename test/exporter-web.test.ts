// --web.config.file: TLS (a certificate made here with openssl), client certificates and basic auth
// (a bcrypt hash made here) against the compiled exporter on loopback; bad configs exit 2 with one line
// naming the file and never showing a hash.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import bcrypt from 'bcryptjs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, runCli } from './helpers/cli';
import { fetchUrl, startServing } from './helpers/metrics';
import { tmpDir } from './helpers/tmp';
import { selfSignedCert } from './helpers/tls';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

afterEach(async () => {
  await killCliProcesses();
});

/** A self-signed certificate for 127.0.0.1: key and cert file names. */
function selfSigned(dir: string, name: string): { key: string; cert: string } {
  const { keyFile, certFile } = selfSignedCert(dir, name);
  return { key: keyFile, cert: certFile };
}

describe.skipIf(!hasOpenssl)('exporter --web.config.file', () => {
  let dir = '';
  let server: { key: string; cert: string };
  let client: { key: string; cert: string };
  const hash = bcrypt.hashSync('s3cret pass', 4);
  beforeAll(() => {
    dir = tmpDir('web config');
    server = selfSigned(dir, 'server');
    client = selfSigned(dir, 'client');
    return runCleanups;
  });

  function config(name: string, text: string): string {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  }

  it('serves https with basic auth: right password 200, wrong or none 401, plain http refused', async () => {
    const file = config(
      'tls-auth.yml',
      `tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\nbasic_auth_users:\n  prom: ${hash}\n`,
    );
    const { url, port } = await startServing(['exporter', '--listen', '127.0.0.1:0', '--web.config.file', file]);
    expect(url).toBe(`https://127.0.0.1:${port}/metrics`);
    const ca = fs.readFileSync(server.cert);
    const ok = await fetchUrl(url, { ca, auth: 'prom:s3cret pass' });
    expect(ok.status).toBe(200);
    expect(ok.body).toContain('sockwatch_build_info');
    expect(ok.headers['x-content-type-options']).toBe('nosniff');
    // A second scrape with the same credentials (answered from the cache of good checks).
    expect((await fetchUrl(url, { ca, auth: 'prom:s3cret pass' })).status).toBe(200);
    const wrong = await fetchUrl(url, { ca, auth: 'prom:nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers['www-authenticate']).toMatch(/^Basic/);
    expect((await fetchUrl(url, { ca })).status).toBe(401);
    expect((await fetchUrl(url.replace('/metrics', '/healthz'), { ca, auth: 'other:s3cret pass' })).status).toBe(401);
    await expect(fetchUrl(url.replace('https:', 'http:'))).rejects.toThrow();
  });

  it('requires and verifies client certificates against client_ca_file', async () => {
    const file = config(
      'mtls.yml',
      `tls_server_config:\n  cert_file: ${server.cert}\n  key_file: ${server.key}\n  client_ca_file: client.crt\n  client_auth_type: RequireAndVerifyClientCert\n`,
    );
    const { url } = await startServing(['exporter', '--listen', '127.0.0.1:0', '--web.config.file', file]);
    const ca = fs.readFileSync(server.cert);
    const withCert = await fetchUrl(url, { ca, cert: fs.readFileSync(client.cert), key: fs.readFileSync(client.key) });
    expect(withCert.status).toBe(200);
    await expect(fetchUrl(url, { ca })).rejects.toThrow();
    // A certificate the CA file does not hold.
    await expect(fetchUrl(url, { ca, cert: fs.readFileSync(server.cert), key: fs.readFileSync(server.key) })).rejects.toThrow();
  });

  it.each([
    [
      'an unknown key',
      'tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suitez: [x]\n',
      'tls_server_config.cipher_suitez: not a key',
    ],
    [
      'a missing certificate file',
      'tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n',
      'tls_server_config.cert_file: cannot read',
    ],
    ['a bad hash', `basic_auth_users:\n  prom: ${hash.slice(0, 20)}\n`, 'basic_auth_users.prom: not a bcrypt hash'],
    ['bad YAML', `basic_auth_users:\n  prom: "${hash}\n  x: [\n`, 'not valid YAML'],
    [
      'a bad client_auth_type',
      'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Sometimes\n',
      'client_auth_type: "Sometimes"',
    ],
  ])('exits 2 with one line naming the file on %s, never the hash', async (what, text, message) => {
    const file = config(`bad ${what}.yml`, text);
    const r = await runCli(['exporter', '--listen', '127.0.0.1:0', '--web.config.file', file]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`--web.config.file ${file}: `);
    expect(r.stderr).toContain(message);
    expect(r.stdout + r.stderr).not.toContain(hash.slice(7, 20));
  });

  it('exits 2 naming the file when it cannot be read', async () => {
    const r = await runCli(['exporter', '--web.config.file', path.join(dir, 'absent.yml')]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`sockwatch: --web.config.file ${path.join(dir, 'absent.yml')}: cannot read it (ENOENT)`);
  });
});
