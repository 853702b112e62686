// deploy/kubernetes/*.yaml, validated offline (test/helpers/k8s-validate.ts: the Kubernetes OpenAPI
// schemas and the Prometheus Operator CRD schemas compiled for ajv by the kubernetes-models packages,
// unknown fields through the TypeScript declarations of the same packages, and the API server's rules
// these files touch), and checked for the shape the README promises. The validator is shown to refuse
// real mistakes (a wrong type, a misspelled field, a missing required field, a port name too long).
// Each container's args are run by the real CLI (dist/ rather than the image; listen addresses moved to
// loopback, paths to temporary ones): the exporter serves its readiness probe's path, the sidecar's
// snat its metrics where the scrape annotations point.
// Not exercised: a cluster (no API server, kubelet or container runtime here), so admission (Pod
// Security, AppArmor, seccomp), scheduling and the PodMonitor's discovery by a Prometheus Operator.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, startCli } from './helpers/cli';
import { apiRuleErrors, readManifests, schemaErrors, unknownFieldErrors, validateManifests, type Manifest } from './helpers/k8s-validate';
import { tmpDir } from './helpers/tmp';
import { waitFor } from './helpers/wait';

const root = path.join(__dirname, '..');
const k8sDir = path.join(root, 'deploy', 'kubernetes');
const files = fs
  .readdirSync(k8sDir)
  .filter((f) => f.endsWith('.yaml'))
  .sort();
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
const manifests = Object.fromEntries(files.map((f) => [f, readManifests(path.join(k8sDir, f))])) as Record<string, Manifest[]>;
const only = (file: string, kind: string): Manifest => {
  const found = manifests[file]!.filter((d) => d.kind === kind);
  expect(found, `${file}: one ${kind}`).toHaveLength(1);
  return found[0]!;
};
const podSpec = (workload: Manifest): Manifest => workload.spec.template.spec;
const container = (workload: Manifest, name: string): Manifest => podSpec(workload).containers.find((c: Manifest) => c.name === name);
/** The port of "--flag HOST:PORT" in a container's args. */
const listenPort = (c: Manifest, flag: string): number => {
  const i = (c.args as string[]).indexOf(flag);
  expect(i, `${flag} in args`).toBeGreaterThanOrEqual(0);
  return Number(/:(\d+)$/.exec(c.args[i + 1])?.[1]);
};
const clone = <T>(v: T): T => structuredClone(v);

afterAll(async () => {
  await killCliProcesses();
  await runCleanups();
});

/**
 * A container's args run by the real CLI (dist/, the image's entry point minus the image), as the
 * kubelet would pass them: its env (values, and the pod name "myapp-0" for a metadata.name fieldRef;
 * Secrets left out) set and expanded in $(VAR) references; then `swap` applied to each argument (its
 * listen address to loopback port 0, its paths to temporary ones). Waits until it serves HTTP, fetches
 * `path_`, then stops it.
 */
async function serveArgs(c: Manifest, swap: (arg: string) => string, path_: string): Promise<{ status: number; body: string }> {
  const env: Record<string, string> = {};
  for (const e of (c.env ?? []) as Manifest[]) {
    if (typeof e.value === 'string') env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = 'myapp-0';
  }
  const args = (c.args as string[]).map((a) => swap(a.replace(/\$\((\w+)\)/g, (m, name: string) => env[name] ?? m)));
  const cli = startCli(args, { env, unsetEnv: ['DIAGNOSTICS_AZUREBLOBCONTAINERSASURL', 'COMPUTERNAME'] });
  const at = /http:\/\/127\.0\.0\.1:\d+\/metrics/;
  await waitFor(`${c.name} to serve`, () => at.test(cli.output()), {
    giveUpIf: () => cli.child.exitCode !== null,
    detail: () => cli.output(),
  });
  const res = await fetch(at.exec(cli.output())![0].replace(/\/metrics$/, path_));
  const result = { status: res.status, body: await res.text() };
  cli.child.kill('SIGTERM');
  await cli.exited;
  return result;
}

describe('Kubernetes manifests (deploy/kubernetes), validated offline', () => {
  it('every file is valid against the Kubernetes and Prometheus Operator schemas, with no unknown field', () => {
    expect(files).toEqual(expect.arrayContaining(['dotnet-snat-sidecar.yaml', 'exporter-daemonset.yaml', 'exporter-podmonitor.yaml']));
    const all = files.flatMap((f) => manifests[f]!);
    expect(validateManifests(all)).toEqual([]);
  });

  it('the validator refuses a wrong type, a misspelled field, a missing required field and a bad port name', () => {
    const ds = only('exporter-daemonset.yaml', 'DaemonSet');
    const wrongType = clone(ds);
    podSpec(wrongType).hostPID = 'true';
    expect(schemaErrors([wrongType]).join('\n')).toMatch(/hostPID must be boolean/);
    const stringPort = clone(ds);
    container(stringPort, 'exporter').ports[0].containerPort = '9630';
    expect(schemaErrors([stringPort]).join('\n')).toMatch(/containerPort must be integer/);
    const badEnum = clone(ds);
    container(badEnum, 'exporter').ports[0].protocol = 'tcp';
    expect(schemaErrors([badEnum]).join('\n')).toMatch(/protocol/);

    const misspelled = clone(ds);
    const sc = container(misspelled, 'exporter').securityContext;
    sc.readOnlyRootFileSystem = sc.readOnlyRootFilesystem;
    delete sc.readOnlyRootFilesystem;
    expect(schemaErrors([misspelled]), 'the OpenAPI schema itself allows unknown fields').toEqual([]);
    expect(unknownFieldErrors([misspelled]).join('\n')).toMatch(/readOnlyRootFileSystem.*does not exist/);

    const pm = only('exporter-podmonitor.yaml', 'PodMonitor');
    const noEndpoints = clone(pm);
    delete noEndpoints.spec.podMetricsEndpoints;
    expect(schemaErrors([noEndpoints]).join('\n')).toMatch(/podMetricsEndpoints/);
    const badAction = clone(pm);
    badAction.spec.podMetricsEndpoints[0].relabelings[0].action = 'rename';
    expect(schemaErrors([badAction]).join('\n')).toMatch(/action/);

    const longName = clone(ds);
    container(longName, 'exporter').ports[0].name = 'sockwatch-metrics';
    expect(apiRuleErrors([longName]).join('\n')).toMatch(/port name "sockwatch-metrics"/);
  });
});

describe('exporter DaemonSet and PodMonitor (deploy/kubernetes/exporter-*.yaml)', () => {
  const ds = only('exporter-daemonset.yaml', 'DaemonSet');
  const spec = podSpec(ds);
  const exporter = container(ds, 'exporter');

  it('runs the exporter from the image with --all-netns, seeing every process through hostPID, in its own network namespace', () => {
    expect(spec.containers).toHaveLength(1);
    expect(exporter.image).toMatch(new RegExp(`/sockwatch:${pkg.version.replace(/\./g, '\\.')}$`));
    expect(exporter.command, 'the image has no shell: the entry point stays /sockwatch').toBeUndefined();
    expect(exporter.args[0]).toBe('exporter');
    expect(exporter.args).toContain('--all-netns');
    expect(spec.hostPID).toBe(true);
    expect(spec.hostNetwork ?? false, 'scraped on the pod IP; namespaces are entered with setns').toBe(false);
    expect(spec.automountServiceAccountToken).toBe(false);
    expect(spec.tolerations).toContainEqual({ operator: 'Exists' });
  });

  it('drops every capability but the two --all-netns needs, as root (the only user Kubernetes gives added capabilities to)', () => {
    const sc = exporter.securityContext;
    expect(sc.capabilities.drop).toEqual(['ALL']);
    expect([...sc.capabilities.add].sort()).toEqual(['SYS_ADMIN', 'SYS_PTRACE']);
    expect(sc.privileged ?? false).toBe(false);
    expect(sc.runAsUser).toBe(0);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(spec.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    // The single executable writes its addon out to $TMPDIR (/tmp) before loading it.
    const tmp = exporter.volumeMounts.find((m: Manifest) => m.mountPath === '/tmp');
    expect(spec.volumes.find((v: Manifest) => v.name === tmp?.name)?.emptyDir).toBeDefined();
    expect(exporter.resources.limits.memory).toBeDefined();
    expect(exporter.resources.requests.cpu).toBeDefined();
    // Its namespace admits it: Pod Security "baseline" refuses hostPID and SYS_ADMIN.
    const ns = only('exporter-daemonset.yaml', 'Namespace');
    expect(ns.metadata.name).toBe(ds.metadata.namespace);
    expect(ns.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('privileged');
  });

  it('listens where it is scraped: --listen, the container port, the annotations and the PodMonitor agree', () => {
    const port = listenPort(exporter, '--listen');
    expect(exporter.args[exporter.args.indexOf('--listen') + 1]).toBe(`0.0.0.0:${port}`);
    const named = exporter.ports.find((p: Manifest) => p.containerPort === port);
    expect(named?.name).toBe('metrics');
    const annotations = ds.spec.template.metadata.annotations;
    expect(annotations).toEqual({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port), 'prometheus.io/path': '/metrics' });
    expect(exporter.readinessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });

    const pm = only('exporter-podmonitor.yaml', 'PodMonitor');
    expect(pm.metadata.namespace).toBe(ds.metadata.namespace);
    for (const [k, v] of Object.entries(pm.spec.selector.matchLabels)) expect(ds.spec.template.metadata.labels[k]).toBe(v);
    expect(pm.spec.podMetricsEndpoints).toHaveLength(1);
    expect(pm.spec.podMetricsEndpoints[0]).toMatchObject({ port: 'metrics', path: '/metrics' });
    // Alerts name the node (the node-wide SNAT rule sums per instance).
    expect(pm.spec.podMetricsEndpoints[0].relabelings).toContainEqual({
      sourceLabels: ['__meta_kubernetes_pod_node_name'],
      targetLabel: 'instance',
    });
  });

  it.skipIf(process.getuid?.() !== 0)(
    `its args are the real CLI's: it serves the readiness probe's path${process.getuid?.() === 0 ? '' : ' (skipped: --all-netns needs CAP_SYS_ADMIN)'}`,
    async () => {
      const r = await serveArgs(exporter, (a) => a.replace(/^0\.0\.0\.0:\d+$/, '127.0.0.1:0'), exporter.readinessProbe.httpGet.path);
      expect(r.status).toBe(200);
    },
  );

  it('the alert rules fit in a Prometheus Operator PrometheusRule as they are', () => {
    const rules = readManifests(path.join(root, 'deploy', 'prometheus', 'sockwatch-rules.yaml'))[0]!;
    const wrapped = {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PrometheusRule',
      metadata: { name: 'sockwatch', namespace: 'sockwatch' },
      spec: rules,
    };
    expect(validateManifests([wrapped])).toEqual([]);
  });
});

describe('.NET sidecar (deploy/kubernetes/dotnet-snat-sidecar.yaml)', () => {
  const deployment = only('dotnet-snat-sidecar.yaml', 'Deployment');
  const sidecar = container(deployment, 'sockwatch');

  it('shares the pid namespace, has SYS_PTRACE and serves snat metrics where the annotations point', () => {
    expect(podSpec(deployment).shareProcessNamespace).toBe(true);
    expect(sidecar.securityContext.capabilities.add).toContain('SYS_PTRACE');
    expect(sidecar.args[0]).toBe('snat');
    const port = listenPort(sidecar, '--metrics-listen');
    expect(sidecar.args[sidecar.args.indexOf('--metrics-listen') + 1]).toBe(`0.0.0.0:${port}`);
    expect(sidecar.ports).toContainEqual(expect.objectContaining({ containerPort: port, protocol: 'TCP' }));
    const annotations = deployment.spec.template.metadata.annotations;
    expect(annotations).toEqual({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port), 'prometheus.io/path': '/metrics' });
    // The app's own port differs: one pod, one network namespace.
    const app = container(deployment, 'app');
    for (const p of app.ports ?? []) expect(p.containerPort).not.toBe(port);
  });

  it('runs snat from the image with /tmp shared with the app, its env from the pod name and a Secret', () => {
    const app = container(deployment, 'app');
    expect(sidecar.image).toMatch(new RegExp(`/sockwatch:${pkg.version.replace(/\./g, '\\.')}$`));
    expect(sidecar.command, 'the image has no shell: the entry point stays /sockwatch').toBeUndefined();
    expect(sidecar.args).toContain('--log-dir');
    const tmpOf = (c: Manifest) => c.volumeMounts.find((m: Manifest) => m.mountPath === '/tmp')?.name;
    expect(tmpOf(app)).toBeDefined();
    expect(tmpOf(sidecar)).toBe(tmpOf(app));
    expect(podSpec(deployment).volumes.find((v: Manifest) => v.name === tmpOf(app)).emptyDir).toBeDefined();
    const env = Object.fromEntries((sidecar.env as Manifest[]).map((e) => [e.name, e]));
    expect(env.COMPUTERNAME).toMatchObject({ valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } });
    expect(env.DIAGNOSTICS_AZUREBLOBCONTAINERSASURL.valueFrom.secretKeyRef).toBeDefined();
  });

  it("its args are the real CLI's: snat starts and serves its metrics where the annotations point", async () => {
    const diag = tmpDir('sidecar diag');
    const r = await serveArgs(
      sidecar,
      (a) => a.replace(/^0\.0\.0\.0:\d+$/, '127.0.0.1:0').replace(/^\/diag\//, `${diag}/`),
      deployment.spec.template.metadata.annotations['prometheus.io/path'],
    );
    expect(r.status).toBe(200);
    expect(r.body).toMatch(/^# TYPE sockwatch_outbound_connections gauge$/m);
  });
});
