// The container SAS URL as one value. Rule: it is parsed once, at the edge where it enters (the
// environment, an uploadFile call), into a ContainerSasUrl; every layer after that passes the value,
// never the raw string. The value prints redacted everywhere (`${sas}`, JSON.stringify,
// util.inspect, console.log); the signed URL leaves it only through revealSignedUrl(), which the
// HTTP client alone calls. Messages show the URL only redacted: the signature never appears in an
// error.
import { inspect } from 'node:util';
import { isSecretParam, redactUrl } from '../base/redact';
import { SockwatchError } from '../base/errors';

/** The environment variable holding the container SAS URL (the App Service script's name). */
export const SAS_URL_VARIABLE = 'DIAGNOSTICS_AZUREBLOBCONTAINERSASURL';

export interface ParseContainerSasOptions {
  /** The current time for the expiry check (default: now). */
  now?: Date;
  /** Return an expired SAS instead of throwing SasExpiredError (default false). */
  allowExpired?: boolean;
}

/** The SAS in a container URL is past its `se=` expiry. */
export class SasExpiredError extends SockwatchError {
  constructor(
    readonly containerUrl: string,
    readonly expiresOn: Date,
  ) {
    super(
      'ERR_SOCKWATCH_SAS_EXPIRED',
      `the container SAS for ${containerUrl} expired at ${expiresOn.toISOString()}; ask for a new SAS URL`,
    );
    this.name = 'SasExpiredError';
  }
}

/** A parsed container SAS URL. Build it with parseContainerSasUrl. */
export class ContainerSasUrl {
  readonly #signedUrl: string;
  /** The container URL without the query string (safe to log). */
  readonly containerUrl: string;
  readonly accountName: string;
  readonly containerName: string;
  /** `se=`: when the SAS stops working, if the URL says. */
  readonly expiresOn: Date | undefined;
  /** `sp=`: the granted permissions (letters such as "racwdl"), if the URL says. */
  readonly permissions: string | undefined;
  /** The whole URL with the signature and other secrets replaced (safe to log). */
  readonly redactedUrl: string;

  /** @internal Use parseContainerSasUrl. */
  constructor(parts: {
    signedUrl: string;
    containerUrl: string;
    accountName: string;
    containerName: string;
    expiresOn: Date | undefined;
    permissions: string | undefined;
  }) {
    this.#signedUrl = parts.signedUrl;
    this.containerUrl = parts.containerUrl;
    this.accountName = parts.accountName;
    this.containerName = parts.containerName;
    this.expiresOn = parts.expiresOn;
    this.permissions = parts.permissions;
    this.redactedUrl = redactUrl(parts.signedUrl);
    Object.freeze(this);
  }

  /** The real, signed URL. For the HTTP client only: never print, log or store it. */
  revealSignedUrl(): string {
    return this.#signedUrl;
  }

  /** The secret values of the URL (as written and decoded), to scrub them from foreign text. */
  secretValues(): string[] {
    return urlSecrets(this.#signedUrl);
  }

  isExpired(now: Date = new Date()): boolean {
    return this.expiresOn !== undefined && this.expiresOn.getTime() <= now.getTime();
  }

  /** Throws SasExpiredError when the SAS is past its expiry. */
  checkNotExpired(now: Date = new Date()): void {
    if (this.isExpired(now)) throw new SasExpiredError(this.containerUrl, this.expiresOn!);
  }

  /**
   * Why this SAS cannot upload, or undefined when it can: uploads need w (write) and r (read, to
   * resume and to verify). A SAS without `sp=` is given the benefit of the doubt.
   */
  uploadProblem(): string | undefined {
    const p = this.permissions;
    if (p === undefined || (p.includes('r') && p.includes('w'))) return undefined;
    return `grants sp=${p}; uploads need r and w`;
  }

  toString(): string {
    return this.redactedUrl;
  }

  toJSON(): string {
    return this.redactedUrl;
  }

  [inspect.custom](): string {
    return `ContainerSasUrl <${this.redactedUrl}>`;
  }
}

// Hosts addressed path-style (/account/container), as Azurite and the storage emulator are.
function isPathStyleHost(hostname: string): boolean {
  if (hostname === 'localhost' || !hostname.includes('.')) return true;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(hostname)) return true;
  return hostname.startsWith('[');
}

function bad(input: string, why: string): TypeError {
  return new TypeError(`containerSasUrl ${JSON.stringify(redactUrl(input))} ${why}`);
}

/** The account name and the container name of a container URL, by host style. */
function accountAndContainer(url: URL, input: string): { accountName: string; containerName: string } {
  const segments = url.pathname.split('/').filter((s) => s !== '');
  let accountName: string;
  let rest: string[];
  if (isPathStyleHost(url.hostname)) {
    if (segments.length === 0) throw bad(input, 'names no account (expected /ACCOUNT/CONTAINER)');
    accountName = decodeURIComponent(segments[0]!);
    rest = segments.slice(1);
  } else {
    accountName = url.hostname.split('.')[0]!;
    rest = segments;
  }
  if (rest.length === 0) throw bad(input, 'names no container');
  if (rest.length > 1) throw bad(input, 'points below a container (expected a container URL, not a blob URL)');
  return { accountName, containerName: decodeURIComponent(rest[0]!) };
}

/**
 * Parses a container SAS URL (https://ACCOUNT.blob.core.windows.net/CONTAINER?sv=…&sig=…, or the
 * path-style http://127.0.0.1:10000/ACCOUNT/CONTAINER?… of Azurite). A malformed URL → TypeError;
 * an expired SAS → SasExpiredError (unless allowExpired). Makes no request.
 */
export function parseContainerSasUrl(input: string, options: ParseContainerSasOptions = {}): ContainerSasUrl {
  if (typeof input !== 'string') {
    throw new TypeError(`containerSasUrl must be a string (got ${input === null ? 'null' : typeof input})`);
  }
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw bad(input, 'is not a valid URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw bad(input, 'must use https: or http:');
  if (url.username || url.password) throw bad(input, 'must not carry a user name or password');
  if (!url.searchParams.get('sig')) throw bad(input, 'has no SAS signature (sig=)');
  const resource = url.searchParams.get('sr');
  if (resource !== null && resource !== 'c') throw bad(input, `is not a container SAS (sr=${resource}, expected sr=c)`);
  const { accountName, containerName } = accountAndContainer(url, input);

  let expiresOn: Date | undefined;
  const se = url.searchParams.get('se');
  if (se !== null) {
    expiresOn = new Date(se);
    if (Number.isNaN(expiresOn.getTime())) throw bad(input, `has an unreadable expiry se=${JSON.stringify(se)}`);
  }
  const sas = new ContainerSasUrl({
    signedUrl: input,
    containerUrl: `${url.origin}${url.pathname.replace(/\/+$/, '')}`,
    accountName,
    containerName,
    expiresOn,
    permissions: url.searchParams.get('sp') ?? undefined,
  });
  if (!options.allowExpired) sas.checkNotExpired(options.now);
  return sas;
}

/** The secret values of a URL (as written and decoded), to scrub them from any foreign text. */
export function urlSecrets(input: string): string[] {
  const out = new Set<string>();
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return [];
  }
  const raw = url.search.slice(1).split('&');
  for (const pair of raw) {
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    const name = decodeURIComponentSafe(pair.slice(0, eq));
    if (!isSecretParam(name)) continue;
    const value = pair.slice(eq + 1);
    const decoded = decodeURIComponentSafe(value.replace(/\+/g, ' '));
    for (const v of [value, decoded, encodeURIComponent(decoded)]) if (v.length >= 4) out.add(v);
  }
  return [...out].sort((a, b) => b.length - a.length);
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * The SAS an upload goes to, from uploadFile's `containerSasUrl` (a URL string, parsed here, or a
 * ContainerSasUrl): not expired (SasExpiredError) and granting r and w (TypeError).
 */
export function uploadSas(value: string | ContainerSasUrl, now: Date = new Date()): ContainerSasUrl {
  const sas = value instanceof ContainerSasUrl ? value : parseContainerSasUrl(value, { now, allowExpired: true });
  sas.checkNotExpired(now);
  const problem = sas.uploadProblem();
  if (problem !== undefined) throw new TypeError(`containerSasUrl ${sas.redactedUrl} ${problem}`);
  return sas;
}
