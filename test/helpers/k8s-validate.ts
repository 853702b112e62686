// Offline validation of Kubernetes manifests, as close to `kubectl apply --dry-run=server` as can be
// had without an API server (none is reachable here):
// 1. The official OpenAPI schemas, compiled for ajv by the `kubernetes-models` package (Kubernetes'
//    built-in kinds) and `@kubernetes-models/prometheus-operator` (the PodMonitor and PrometheusRule
//    CRDs): types, required fields, enums, formats (int32, ...).
// 2. Unknown fields (kubectl's default strict field validation refuses them; the OpenAPI schemas
//    allow them): each document is type-checked by the TypeScript compiler against the same package's
//    declarations (`I<Kind>`), where a misspelled key is an excess property.
// 3. A few rules the API server applies that no schema carries (named below), for the fields these
//    manifests use.
// YAML is read as YAML 1.1, as the API machinery reads it (`yes`, `on` are booleans there).
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';

const root = path.join(__dirname, '..', '..');
const requireHere = createRequire(__filename);

export type Manifest = Record<string, any>;

/** Every document of a YAML file (empty ones left out); a YAML error throws, naming the file. */
export function readManifests(file: string): Manifest[] {
  const docs = parseAllDocuments(fs.readFileSync(file, 'utf8'), { version: '1.1' });
  if (!Array.isArray(docs)) throw new Error(`${file}: not a YAML stream`);
  for (const d of docs) if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`);
  return docs.map((d) => d.toJS() as Manifest).filter((d) => d !== null && d !== undefined);
}

/** The module of a kind's model: kubernetes-models for built-in kinds, the operator's for its CRDs. */
function modelModule(apiVersion: string, kind: string): string {
  if (apiVersion === 'monitoring.coreos.com/v1') return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/${kind}`;
  return `kubernetes-models/${apiVersion}/${kind}`;
}

function label(doc: Manifest, i: number): string {
  return `document ${i + 1} (${String(doc.kind)} ${String(doc.metadata?.name ?? '')})`;
}

/** 1. Schema errors, one line each ("document 2 (DaemonSet x): data/spec/... must be boolean"). */
export function schemaErrors(docs: Manifest[]): string[] {
  const errors: string[] = [];
  docs.forEach((doc, i) => {
    if (typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string') {
      errors.push(`${label(doc, i)}: apiVersion and kind are required`);
      return;
    }
    let Model: new (data: unknown) => { validate(): void };
    try {
      Model = requireHere(modelModule(doc.apiVersion, doc.kind))[doc.kind];
    } catch {
      errors.push(`${label(doc, i)}: no schema for ${doc.apiVersion} ${doc.kind}`);
      return;
    }
    try {
      new Model(doc).validate();
    } catch (e) {
      for (const line of (e as Error).message.split(/\n|, (?=data)/)) errors.push(`${label(doc, i)}: ${line}`);
    }
  });
  return errors;
}

/** Parsed declaration files (lib, kubernetes-models), shared by every call: they never change. */
const declarationCache = new Map<string, ts.SourceFile | undefined>();

/** 2. Fields the kind does not have, from the TypeScript compiler's excess-property check. */
export function unknownFieldErrors(docs: Manifest[]): string[] {
  const file = path.join(root, '__k8s_manifests__.ts');
  const lines: string[] = [];
  docs.forEach((doc, i) => {
    if (typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string') return;
    lines.push(`import type { I${doc.kind} as T${i} } from ${JSON.stringify(modelModule(doc.apiVersion, doc.kind))};`);
    lines.push(`export const doc${i}: T${i} = ${JSON.stringify(doc, null, 1)};`);
  });
  const text = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    lib: ['lib.es2020.d.ts'],
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    target: ts.ScriptTarget.ES2020,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  host.getSourceFile = (name, lang, ...rest) => {
    if (path.resolve(name) === file) return ts.createSourceFile(name, text, lang);
    let parsed = declarationCache.get(name);
    if (!parsed) declarationCache.set(name, (parsed = getSourceFile(name, lang, ...rest)));
    return parsed;
  };
  host.fileExists = (name) => path.resolve(name) === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  const source = program.getSourceFile(file)!;
  const textLines = text.split('\n');
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (d.file !== source || d.start === undefined) return message;
    const { line } = source.getLineAndCharacterOfPosition(d.start);
    return `${textLines[line]!.trim()}: ${message.slice(message.lastIndexOf('Object literal') >= 0 ? message.lastIndexOf('Object literal') : 0)}`;
  });
}

/** Containers of a workload (Deployment, DaemonSet, ...) or a Pod. */
function podSpecOf(doc: Manifest): Manifest | undefined {
  return doc.kind === 'Pod' ? doc.spec : doc.spec?.template?.spec;
}

/**
 * 3. API-server rules beyond the schemas (k8s.io/kubernetes pkg/apis/core/validation and apps
 * validation), for what these manifests use: a workload's selector matches its pod labels; container
 * port names are IANA service names (at most 15 characters, lowercase letters, digits and '-', one
 * letter at least, no '--' and no '-' at either end) and unique in the pod; probes name ports that exist;
 * allowPrivilegeEscalation false is refused beside CAP_SYS_ADMIN; $(VAR) in args names an env entry
 * (else Kubernetes passes the text as it is).
 */
export function apiRuleErrors(docs: Manifest[]): string[] {
  const errors: string[] = [];
  docs.forEach((doc, i) => {
    const where = label(doc, i);
    const spec = podSpecOf(doc);
    if (!spec) return;
    const selector: Record<string, string> = doc.spec?.selector?.matchLabels ?? {};
    const labels: Record<string, string> = doc.spec?.template?.metadata?.labels ?? {};
    for (const [k, v] of Object.entries(selector))
      if (labels[k] !== v) errors.push(`${where}: spec.template.metadata.labels: does not match the selector (${k}=${v})`);
    const portNames = new Set<string>();
    for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])] as Manifest[]) {
      for (const p of (c.ports ?? []) as Manifest[]) {
        if (p.name === undefined) continue;
        const n = String(p.name);
        if (n.length > 15 || !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(n) || !/[a-z]/.test(n) || n.includes('--'))
          errors.push(`${where}: container ${c.name} port name "${n}": must be an IANA service name (at most 15 characters)`);
        if (portNames.has(n)) errors.push(`${where}: port name "${n}" is used twice`);
        portNames.add(n);
      }
      const sc = c.securityContext ?? {};
      if (sc.allowPrivilegeEscalation === false && (sc.capabilities?.add ?? []).includes('CAP_SYS_ADMIN'))
        errors.push(`${where}: container ${c.name}: cannot set allowPrivilegeEscalation to false and capabilities.add CAP_SYS_ADMIN`);
      const env = new Set(((c.env ?? []) as Manifest[]).map((e) => e.name));
      for (const a of [...(c.command ?? []), ...(c.args ?? [])] as string[])
        for (const m of String(a).matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g))
          if (!env.has(m[1])) errors.push(`${where}: container ${c.name}: $(${m[1]}) is not in its env`);
    }
    for (const c of spec.containers as Manifest[])
      for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
        const port = c[probe]?.httpGet?.port ?? c[probe]?.tcpSocket?.port;
        if (typeof port === 'string' && !portNames.has(port))
          errors.push(`${where}: container ${c.name} ${probe}: no port named "${port}"`);
      }
  });
  return errors;
}

/** Every error of the three checks above. */
export function validateManifests(docs: Manifest[]): string[] {
  return [...schemaErrors(docs), ...unknownFieldErrors(docs), ...apiRuleErrors(docs)];
}
