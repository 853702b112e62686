// The container SAS URL as one value (lib/upload/sas-url.ts): parsed once, it knows its container,
// permissions and expiry, and prints redacted however it is printed; the signed URL comes out only
// through revealSignedUrl(). Pure units, no network (the Azurite tests in upload*.test.ts are the net
// for the real client).
import { format, inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ContainerSasUrl, SasExpiredError, parseContainerSasUrl, uploadSas } from '../lib/upload/sas-url';

const SIG = 'b/yHCI1ZRl1XlS3XC7F7cGahiEF1PADF31buzsAQt+Q=';
const SIG_ENC = encodeURIComponent(SIG);
const AZURE = `https://acct.blob.core.windows.net/dumps?sv=2026-04-06&se=2099-01-01T00%3A00%3A00Z&sr=c&sp=racwl&sig=${SIG_ENC}`;

function expectNoSecret(text: string): void {
  expect(text).not.toContain(SIG);
  expect(text).not.toContain(SIG_ENC);
  expect(text).not.toContain('yHCI1ZRl1Xl');
}

describe('ContainerSasUrl', () => {
  const sas = parseContainerSasUrl(AZURE);

  it('knows its account, container, container URL, permissions and expiry', () => {
    expect(sas).toBeInstanceOf(ContainerSasUrl);
    expect(sas.accountName).toBe('acct');
    expect(sas.containerName).toBe('dumps');
    expect(sas.containerUrl).toBe('https://acct.blob.core.windows.net/dumps');
    expect(sas.permissions).toBe('racwl');
    expect(sas.expiresOn?.toISOString()).toBe('2099-01-01T00:00:00.000Z');
    expect(sas.isExpired(new Date('2098-12-31T23:59:59Z'))).toBe(false);
    expect(sas.isExpired(new Date('2099-01-01T00:00:00Z'))).toBe(true);
  });

  it('is redacted in a template, String(), JSON.stringify (alone and nested) and util.inspect / format', () => {
    const printed = [
      `${sas}`,
      String(sas),
      sas.toString(),
      JSON.stringify(sas),
      JSON.stringify({ upload: { sas } }),
      inspect(sas),
      inspect({ nested: [sas] }, { depth: 10, showHidden: true }),
      format('%s %o %O %j', sas, sas, sas, sas),
    ];
    for (const text of printed) {
      expectNoSecret(text);
      expect(text).toContain('sig=REDACTED');
    }
    expect(JSON.parse(JSON.stringify(sas))).toBe(sas.redactedUrl);
  });

  it('has no enumerable or own property that holds the signature, and cannot be changed', () => {
    expectNoSecret(JSON.stringify(Object.entries(sas)));
    for (const key of Reflect.ownKeys(sas)) expectNoSecret(String((sas as unknown as Record<PropertyKey, unknown>)[key]));
    expect(Object.isFrozen(sas)).toBe(true);
    expect(() => {
      (sas as unknown as { containerUrl: string }).containerUrl = 'https://evil.example/x';
    }).toThrow(TypeError);
  });

  it('gives the signed URL only through revealSignedUrl, and its secret values for scrubbing', () => {
    expect(sas.revealSignedUrl()).toBe(AZURE);
    expect(sas.secretValues()).toContain(SIG);
    expect(sas.secretValues()).toContain(SIG_ENC);
  });

  it('says why it cannot upload: r and w are both needed; no sp= gets the benefit of the doubt', () => {
    expect(sas.uploadProblem()).toBeUndefined();
    expect(parseContainerSasUrl(AZURE.replace('sp=racwl', 'sp=rl')).uploadProblem()).toBe('grants sp=rl; uploads need r and w');
    expect(parseContainerSasUrl(AZURE.replace('sp=racwl', 'sp=cw')).uploadProblem()).toBe('grants sp=cw; uploads need r and w');
    expect(parseContainerSasUrl(AZURE.replace('&sp=racwl', '')).uploadProblem()).toBeUndefined();
  });
});

describe('uploadSas: the edge of uploadFile', () => {
  it('takes a string or a parsed value, the same value back for the latter', () => {
    const sas = parseContainerSasUrl(AZURE);
    expect(uploadSas(sas)).toBe(sas);
    expect(uploadSas(AZURE).containerUrl).toBe(sas.containerUrl);
  });

  it('refuses a value that has expired since it was parsed, with SasExpiredError', () => {
    const sas = parseContainerSasUrl(AZURE);
    let err: unknown;
    try {
      uploadSas(sas, new Date('2100-01-01T00:00:00Z'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SasExpiredError);
    expect((err as SasExpiredError).code).toMatch(/SAS_EXPIRED/);
    expectNoSecret((err as Error).message);
  });

  it('refuses a SAS without r or w with a TypeError that names the redacted URL', () => {
    const writeOnly = AZURE.replace('sp=racwl', 'sp=cw');
    let err: unknown;
    try {
      uploadSas(writeOnly);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TypeError);
    expect((err as Error).message).toMatch(
      /^containerSasUrl https:\/\/acct\.blob\.core\.windows\.net\/dumps\?.*sig=REDACTED grants sp=cw; uploads need r and w$/,
    );
    expectNoSecret((err as Error).message);
  });
});
