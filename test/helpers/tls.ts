// Self-signed certificates made by openssl for tests of TLS on 127.0.0.1.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

/** A self-signed certificate for 127.0.0.1 (subject CN=`name`): `${name}.key` and `${name}.crt` in `dir`. */
export function selfSignedCert(dir: string, name: string): { keyFile: string; certFile: string } {
  const keyFile = path.join(dir, `${name}.key`);
  const certFile = path.join(dir, `${name}.crt`);
  const args = ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2'];
  const r = spawnSync('openssl', [...args, '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  return { keyFile, certFile };
}
