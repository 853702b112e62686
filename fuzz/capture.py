#!/usr/bin/env python3
# Records real NETLINK_SOCK_DIAG dump replies from this kernel as fuzz seeds (fuzz/corpus/*.hex):
# one reply per file, a "seq N" line, then one hex line per datagram. Rule: seeds are real dumps
# (several datagrams each), so the fuzzer mutates what the kernel actually sends.
# Usage: python3 fuzz/capture.py fuzz/corpus
import os
import socket
import struct
import sys

SEQ = 77
SOCK_DIAG_BY_FAMILY = 20
TCPDIAG_GETSOCK = 18
EXT_SKMEM = 1 << (7 - 1)  # INET_DIAG_SKMEMINFO


def make_sockets():
    keep = []
    for fam, host in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):
        for i in range(60):
            ls = socket.socket(fam, socket.SOCK_STREAM)
            ls.bind((host, 0))
            ls.listen(8)
            keep.append(ls)
            if i % 3 == 0:
                c = socket.socket(fam, socket.SOCK_STREAM)
                c.connect(ls.getsockname()[:2])
                c.send(b'x' * (i * 13))  # a receive queue on the accepted side
                keep.append(c)
                a, _ = ls.accept()
                keep.append(a)
        for i in range(40):
            u = socket.socket(fam, socket.SOCK_DGRAM)
            u.bind((host, 0))
            keep.append(u)
            if i % 2 == 0:
                u.connect((host, 53 + i))
    return keep


def dump(req_type, body):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
    s.send(struct.pack('=IHHII', 16 + len(body), req_type, 0x301, SEQ, 0) + body)
    out = []
    done = False
    while not done:
        d = s.recv(65536)
        out.append(d)
        off = 0
        while off + 16 <= len(d):
            length, kind = struct.unpack_from('=IH', d, off)
            if kind in (2, 3) or length < 16:
                done = True
                break
            off += (length + 3) & ~3
    s.close()
    return out


def v2(family, proto, ext, states):
    # inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed inet_diag_sockid (48 bytes)
    return struct.pack('=BBBBI', family, proto, ext, 0, states) + bytes(48)


def legacy(ext, states):
    # inet_diag_req: family, src_len, dst_len, ext, sockid (48), states, dbs
    return struct.pack('=BBBB', socket.AF_INET, 0, 0, ext) + bytes(48) + struct.pack('=II', states, 0)


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    keep = make_sockets()
    replies = {
        'tcp4-skmem': dump(SOCK_DIAG_BY_FAMILY, v2(socket.AF_INET, 6, EXT_SKMEM, 0xFFF)),
        'tcp6': dump(SOCK_DIAG_BY_FAMILY, v2(socket.AF_INET6, 6, 0, 0xFFF)),
        'tcp-both-skmem': dump(TCPDIAG_GETSOCK, legacy(EXT_SKMEM, 0xFFF)),
        'udp4': dump(SOCK_DIAG_BY_FAMILY, v2(socket.AF_INET, 17, 0, 0xFFF)),
        'udp6-skmem': dump(SOCK_DIAG_BY_FAMILY, v2(socket.AF_INET6, 17, EXT_SKMEM, 0xFFF)),
    }
    for name, dgrams in replies.items():
        with open(os.path.join(outdir, name + '.hex'), 'w') as f:
            f.write('seq %d\n' % SEQ)
            for d in dgrams:
                f.write(d.hex() + '\n')
        print('%s: %d datagrams, %d bytes' % (name, len(dgrams), sum(len(d) for d in dgrams)))
    for s in keep:
        s.close()


main()
