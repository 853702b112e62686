// The owner of a process from the text of /proc/PID/cgroup. These are text fixtures: lines of the
// shapes kubelet (cgroupfs and systemd drivers), containerd, CRI-O, Docker and Podman write, typed
// here because no cluster runs on this machine. test/netns-discover.test.ts moves real processes into
// real cgroups of both shapes and reads them back through discovery.
import { describe, expect, it } from 'vitest';
import { parseCgroupFile, parseCgroupPath } from '../lib/netns/cgroup';

const UID = '0b7a1c2d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
const UID_ = UID.replaceAll('-', '_');
const CID = '3f9c2a7be1d04c8f9a6b5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b';

describe('cgroup owner', () => {
  it('cgroup v2, systemd driver, containerd', () => {
    const text = `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${CID}.scope\n`;
    expect(parseCgroupFile(text)).toEqual({ podUid: UID, containerId: CID });
  });

  it('cgroup v2, systemd driver, Guaranteed and BestEffort QoS, CRI-O and Docker', () => {
    expect(parseCgroupPath(`/kubepods.slice/kubepods-pod${UID_}.slice/crio-${CID}.scope`)).toEqual({ podUid: UID, containerId: CID });
    expect(parseCgroupPath(`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/docker-${CID}.scope`)).toEqual({
      podUid: UID,
      containerId: CID,
    });
  });

  it('CRI-O conmon is not the container', () => {
    expect(
      parseCgroupPath(`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-conmon-${CID}.scope`),
    ).toEqual({
      podUid: UID,
    });
  });

  it('cgroup v1, cgroupfs driver: one line per hierarchy, the pod from any of them', () => {
    const text = [
      '12:hugetlb:/',
      `11:memory:/kubepods/burstable/pod${UID}/${CID}`,
      `10:cpu,cpuacct:/kubepods/burstable/pod${UID}/${CID}`,
      `1:name=systemd:/kubepods/burstable/pod${UID}/${CID}`,
      '0::/',
      '',
    ].join('\n');
    expect(parseCgroupFile(text)).toEqual({ podUid: UID, containerId: CID });
    expect(parseCgroupPath(`/kubepods/pod${UID}/${CID}`)).toEqual({ podUid: UID, containerId: CID }); // Guaranteed
  });

  it('seen from a reader in its own cgroup namespace', () => {
    expect(parseCgroupFile(`0::/../../kubepods-besteffort-pod${UID_}.slice/cri-containerd-${CID}.scope\n`)).toEqual({
      podUid: UID,
      containerId: CID,
    });
  });

  it('a static pod: its UID is a 32-hex config hash', () => {
    const hash = 'e3b0c44298fc1c149afbf4c8996fb924';
    expect(
      parseCgroupPath(`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${hash}.slice/cri-containerd-${CID}.scope`),
    ).toEqual({
      podUid: hash,
      containerId: CID,
    });
  });

  it('containers outside Kubernetes: Docker (both drivers) and Podman give a container id only', () => {
    expect(parseCgroupFile(`0::/system.slice/docker-${CID}.scope\n`)).toEqual({ containerId: CID });
    expect(parseCgroupFile(`4:memory:/docker/${CID}\n0::/\n`)).toEqual({ containerId: CID });
    expect(parseCgroupFile(`0::/machine.slice/libpod-${CID}.scope/container\n`)).toEqual({ containerId: CID });
  });

  it('nothing for host processes and near misses', () => {
    expect(parseCgroupFile('0::/system.slice/sshd.service\n')).toEqual({});
    expect(parseCgroupFile('0::/user.slice/user-1000.slice/session-2.scope\n')).toEqual({});
    expect(parseCgroupFile('')).toEqual({});
    expect(parseCgroupFile('garbage\n')).toEqual({});
    expect(parseCgroupPath('/podcast/pod123')).toEqual({}); // not a UID
    expect(parseCgroupPath(`/kubepods/burstable/pod${UID}/${CID.slice(1)}`)).toEqual({ podUid: UID }); // 63 hex
    expect(parseCgroupPath(`/other-pod${UID_}.slice`)).toEqual({}); // a slice outside kubepods
  });
});
