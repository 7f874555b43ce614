#!/usr/bin/env python3
"""Make the seed corpora of the fuzz targets from the protocol test vectors.

usage: seeds.py VECTORS OUTDIR

Writes OUTDIR/<target>/<name> for the targets decode, iter, object and
broker (their input formats are described at the top of tests/fuzz/fuzz_*.c):
every vector as a frame (with its limits), the lists and payloads inside the
valid ones, and broker sessions made of vectors and of frames built here
(a worker and clients going through submit, dispatch, outcomes, failures,
retries, cancellation, deaths and limits).
"""
import os
import shutil
import struct
import sys

LIMITS = ["max_frame", "max_name", "max_text", "max_batch", "max_list", "max_depth"]


def read_vectors(path):
    """name -> (frame bytes, {limit: value}, payload objects, decodes)"""
    vectors, block = {}, []
    with open(path) as f:
        lines = [line.strip() for line in f] + [""]
    for line in lines:
        if line.startswith("#"):
            continue
        if line:
            block.append(line)
            continue
        if not block:
            continue
        name, frame, limits, payloads, valid = None, b"", {}, [], False
        for entry in block:
            key, _, rest = entry.partition(" ")
            if key == "name":
                name = rest
            elif key == "hex":
                frame += bytes.fromhex(rest)
            elif key == "limit":
                k, _, v = rest.partition("=")
                limits[k] = int(v)
            elif key == "ok":
                valid = True
            elif "=hex:" in entry:
                payloads.append(bytes.fromhex(entry.partition("=hex:")[2]))
        if name:
            vectors[name] = (frame, limits, payloads, valid)
        block = []
    return vectors


# ---- msgpack: just what the seeds need -------------------------------------

def mp(o):
    if o is None:
        return b"\xc0"
    if isinstance(o, bytes):  # already encoded
        return o
    if isinstance(o, int):
        if 0 <= o < 128:
            return bytes([o])
        if -32 <= o < 0:
            return bytes([o & 0xFF])
        for lo, hi, fmt, mark in ((0, 1 << 8, ">B", 0xCC), (0, 1 << 16, ">H", 0xCD),
                                  (0, 1 << 32, ">I", 0xCE), (0, 1 << 64, ">Q", 0xCF),
                                  (-(1 << 7), 0, ">b", 0xD0), (-(1 << 15), 0, ">h", 0xD1),
                                  (-(1 << 31), 0, ">i", 0xD2), (-(1 << 63), 0, ">q", 0xD3)):
            if lo <= o < hi:
                return bytes([mark]) + struct.pack(fmt, o)
    if isinstance(o, str):
        b = o.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        if len(b) < 256:
            return bytes([0xD9, len(b)]) + b
        return b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(o, list):
        head = bytes([0x90 | len(o)]) if len(o) < 16 else b"\xdc" + struct.pack(">H", len(o))
        return head + b"".join(mp(x) for x in o)
    raise TypeError(o)


def skip(buf, pos):
    """Position after the msgpack object at pos."""
    b = buf[pos]
    pos += 1
    if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
        return pos
    if b <= 0x9F:  # fixmap, fixarray
        n = (b & 0x0F) * (2 if b <= 0x8F else 1)
        for _ in range(n):
            pos = skip(buf, pos)
        return pos
    if b <= 0xBF:
        return pos + (b & 0x1F)
    width = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xC7: 1, 0xC8: 2, 0xC9: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4,
             0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4}
    fixed = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4,
             0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
    if b in fixed:
        return pos + fixed[b]
    n = int.from_bytes(buf[pos:pos + width[b]], "big")
    pos += width[b]
    if b >= 0xDC:
        for _ in range(n * (2 if b >= 0xDE else 1)):
            pos = skip(buf, pos)
        return pos
    return pos + n + (1 if b in (0xC7, 0xC8, 0xC9) else 0)


def elements(buf, pos):
    """(count, start of each element) of the array at pos."""
    b = buf[pos]
    if 0x90 <= b <= 0x9F:
        n, pos = b & 0x0F, pos + 1
    elif b == 0xDC:
        n, pos = int.from_bytes(buf[pos + 1:pos + 3], "big"), pos + 3
    else:
        n, pos = int.from_bytes(buf[pos + 1:pos + 5], "big"), pos + 5
    starts = []
    for _ in range(n):
        starts.append(pos)
        pos = skip(buf, pos)
    return n, starts + [pos]


# ---- the targets' inputs -----------------------------------------------------

def decode_input(frame, limits):
    flags, values = 0, b""
    for bit, name in enumerate(LIMITS):
        if name in limits:
            flags |= 1 << bit
            values += struct.pack(">I", limits[name])
    return bytes([flags]) + values + frame


# Iterator of each list a valid frame holds (fuzz_iter.c numbering): message
# type -> (element index, iterator).
ITERATORS = {1: [(8, 0), (9, 0)], 6: [(3, 2)], 8: [(2, 3)], 9: [(2, 1)], 10: [(2, 1)],
             13: [(2, 4)], 14: [(2, 5)], 15: [(2, 6)], 16: [(2, 1)], 18: [(3, 7)]}


def iter_inputs(frame):
    """Inputs of fuzz_iter: the lists inside a valid frame, and the
    histories of a FAILED_REPLY."""
    out = []
    n, starts = elements(frame, 0)
    for index, kind in ITERATORS.get(frame[2] if n > 1 else 0, []):
        count, items = elements(frame, starts[index])
        body = frame[items[0]:items[-1]] if count else b""
        out.append(bytes([kind]) + struct.pack(">I", count) + body)
        if kind == 7:
            for k in range(count):
                _, fields = elements(frame, items[k])
                hcount, entries = elements(frame, fields[7])
                out.append(bytes([8]) + struct.pack(">I", hcount) + frame[entries[0]:entries[-1]])
    return out


# Broker sessions: ops of fuzz_broker.c.  Peers 0-3 have a DEALER, 4-7 not.
CLIENT, WORKER, CLIENT2, WORKER2, NOBODY = 0, 1, 2, 3, 4


def frame(peer, data, multipart=False):
    return bytes([peer << 3 | (1 if multipart else 0)]) + struct.pack(">H", len(data)) + data


def turn(t=0):
    return bytes([2, t])


def done(peer, status, n=1, size=0):
    return bytes([peer << 3 | 3, (n - 1) << 2 | status, size])


def hello_client(client_id=0x1122334455667788):
    return mp([1, 1, 1, client_id, "client", "node1", 4243, 0, [], []])


def hello_worker(credit=4, queues=("default",), functions=("square",)):
    return mp([1, 1, 2, 0, "w1", "node1", 4242, credit, list(queues), list(functions)])


def submit(req, n=1, attempts=3, timeout=0, function="square", queue="default", prio=0):
    return mp([1, 6, req, [[function, queue, prio, timeout, attempts, k + 7] for k in range(n)]])


def jobs(msg_type, ids):
    return mp([1, msg_type, list(ids)])


CANCEL, WATCH, ACK = 9, 10, 16
STATS = mp([1, 11, 9])
HEARTBEAT = mp([1, 3])
BYE = mp([1, 4, "bye"])


def failed(req, after=0, limit=100):
    return mp([1, 17, req, after, limit])


def retry(req, job):
    return mp([1, 19, req, job])


def start(cfg=0, n=1, attempts=3, timeout=0):
    """A worker and a client, n tasks submitted and handed to the worker."""
    return (bytes([cfg]) + frame(WORKER, hello_worker()) + frame(CLIENT, hello_client())
            + frame(CLIENT, submit(1, n, attempts, timeout)) + turn() + turn())


def sessions(vectors):
    v = {name: vec[0] for name, vec in vectors.items()}
    s = {
        "done": start(n=2) + done(WORKER, 0, 2) + turn() + frame(CLIENT, jobs(ACK, [1, 2]))
        + frame(CLIENT, STATS) + turn(),
        "error_failed_retry": start(attempts=1) + done(WORKER, 1) + turn()
        + frame(CLIENT, failed(2)) + frame(CLIENT, retry(3, 1)) + turn() + turn()
        + done(WORKER, 0) + turn() + frame(CLIENT, failed(4)),
        "retry_status": start(attempts=2) + done(WORKER, 3) + turn() + turn() + done(WORKER, 3)
        + turn() + frame(CLIENT, failed(2)) + frame(CLIENT, retry(3, 1)) + turn(),
        "returned": start(n=3) + done(WORKER, 2, 3) + frame(WORKER2, hello_worker()) + turn()
        + turn() + done(WORKER2, 0, 3) + turn(),
        "cancel_running": start(n=2) + frame(CLIENT, jobs(CANCEL, [1, 2, 3])) + turn()
        + done(WORKER, 0, 2) + turn() + frame(CLIENT, jobs(WATCH, [1, 2])) + turn(),
        "worker_dies": start(attempts=2) + turn(60) + frame(WORKER, hello_worker()) + turn()
        + turn() + turn(60) + turn() + frame(CLIENT, failed(2)) + turn(),
        "worker_hello_again": start(n=2) + frame(WORKER, hello_worker(credit=1)) + turn() + turn()
        + done(WORKER, 0, 2) + turn(),
        "run_limit": start(attempts=1, timeout=1000) + turn(40) + turn() + done(WORKER, 0)
        + frame(CLIENT, failed(2)) + turn(),
        "run_limit_again": start(attempts=2, timeout=100) + turn(11) + turn() + turn(11) + turn()
        + done(WORKER, 0, 2) + turn(),
        "watch_other": bytes([0]) + frame(CLIENT, hello_client()) + frame(CLIENT2, hello_client(7))
        + frame(WORKER, hello_worker()) + frame(CLIENT, submit(1, 2))
        + frame(CLIENT2, jobs(WATCH, [1, 2, 99])) + turn() + turn() + done(WORKER, 0, 2) + turn()
        + frame(CLIENT2, jobs(ACK, [1])) + turn(),
        "bye": start(n=2) + frame(WORKER, BYE) + frame(CLIENT, BYE) + turn()
        + frame(CLIENT2, hello_client()) + frame(CLIENT2, jobs(WATCH, [1, 2]))
        + frame(WORKER2, hello_worker()) + turn() + turn() + done(WORKER2, 0, 2) + turn(),
        "client_gone": start() + frame(CLIENT, BYE) + done(WORKER, 0) + turn() + turn(60),
        "unconnected_worker": bytes([0]) + frame(NOBODY, hello_worker())
        + frame(CLIENT, hello_client())
        + frame(CLIENT, submit(1, 2, attempts=1)) + turn() + turn() + turn()
        + frame(CLIENT, failed(2)) + turn(),
        "resubmit": bytes([0]) + frame(CLIENT, hello_client()) + frame(CLIENT, submit(1, 2))
        + turn() + frame(CLIENT, submit(1, 2)) + frame(CLIENT, submit(1, 3)) + turn(),
        "small_limits": bytes([0x1F]) + frame(WORKER, hello_worker(credit=2))
        + frame(CLIENT, hello_client()) + frame(CLIENT, submit(1, 6)) + frame(CLIENT, submit(2, 6))
        + turn() + turn() + done(WORKER, 0, 2) + turn(1) + turn(3) + done(WORKER, 1, 2) + turn(5)
        + frame(CLIENT, STATS) + frame(CLIENT, failed(3)) + turn(255) + turn(),
        "big_payloads": start(n=3) + done(WORKER, 0, 1, 80) + done(WORKER, 1, 1, 255) + turn()
        + done(WORKER, 3, 1, 64) + turn() + turn() + done(WORKER, 1, 1, 200) + turn()
        + frame(CLIENT, failed(2)) + turn(),
        "big_payloads_small_frame": start(cfg=1, n=2) + done(WORKER, 0, 1, 20)
        + done(WORKER, 1, 1, 8) + turn() + frame(CLIENT, failed(2)) + turn(),
        "many_run_limits": bytes([0]) + frame(WORKER, hello_worker(credit=200))
        + frame(CLIENT, hello_client()) + frame(CLIENT, submit(1, 100, timeout=60000)) + turn()
        + turn() + done(WORKER, 0, 64) + done(WORKER, 0, 36) + turn() + turn(),
        "heartbeats": bytes([0x10]) + frame(WORKER, hello_worker()) + frame(CLIENT, hello_client())
        + frame(CLIENT, HEARTBEAT) + frame(WORKER, HEARTBEAT) + turn(3) + turn(5)
        + frame(CLIENT, HEARTBEAT) + turn(),
        "vectors_from_worker": bytes([0]) + frame(WORKER, v["hello_worker"])
        + b"".join(frame(WORKER, v[n]) for n in ("heartbeat", "done", "submit", "stats")) + turn(),
        "multipart": bytes([0]) + frame(CLIENT, v["hello_client"])
        + frame(CLIENT, v["submit"], True)
        + turn(),
    }
    for name, vec in v.items():
        s["vector_" + name] = bytes([0]) + frame(NOBODY, vec) + turn()
        s["client_" + name] = (bytes([0]) + frame(CLIENT, v["hello_client"]) + frame(CLIENT, vec)
                               + turn())
    return s


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    vectors = read_vectors(sys.argv[1])
    seeds = {"decode": {}, "iter": {}, "object": {}, "broker": sessions(vectors)}
    for name, (frame_bytes, limits, payloads, valid) in vectors.items():
        seeds["decode"][name] = decode_input(frame_bytes, limits)
        seeds["object"][name] = bytes([64]) + frame_bytes
        for k, payload in enumerate(payloads):
            seeds["object"][f"{name}_{k}"] = bytes([64]) + payload
        if valid:
            for k, data in enumerate(iter_inputs(frame_bytes)):
                seeds["iter"][f"{name}_{k}"] = data
    for target, inputs in seeds.items():
        path = os.path.join(sys.argv[2], target)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        for name, data in inputs.items():
            with open(os.path.join(path, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
