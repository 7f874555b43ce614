#!/usr/bin/python3
"""Interoperability test of taskqd against proto/PROTOCOL.md.

A client and a worker are implemented here in Python from the protocol
document alone (ZeroMQ DEALER sockets, one msgpack array per frame), and
run against a real broker that this script starts on 127.0.0.1:

    interop.py --taskqd build/taskqd

Prints one line per scenario (`ok NAME` or `FAIL NAME: why`) and a final
`N passed, N failed`; the exit status is 0 only if every scenario passed.
Requires python3-zmq and python3-msgpack.
"""

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import zmq

PROTOCOL_VERSION = 1

# Message types (section 3).
HELLO = 1
WELCOME = 2
HEARTBEAT = 3
BYE = 4
ERROR = 5
SUBMIT = 6
ACCEPTED = 7
RESULT = 8
CANCEL = 9
WATCH = 10
STATS = 11
STATS_REPLY = 12
TASKS = 13
DONE = 14
ABANDON = 15
ACK = 16

ROLE_CLIENT = 1
ROLE_WORKER = 2

# RESULT status (section 3.3).
ST_DONE = 0
ST_FAILED = 1
ST_CANCELLED = 2
ST_LOST = 3
ST_TIMEDOUT = 4
ST_UNKNOWN = 5

# DONE outcome status (section 3.5).
OUT_OK = 0
OUT_ERROR = 1
OUT_RETURNED = 2

# ERROR codes (section 3.8).
E_TRUNCATED = 1
E_MALFORMED = 2
E_VERSION = 3
E_UNKNOWN_TYPE = 4
E_BAD_FIELD = 5
E_HELLO_REQUIRED = 10

DEFAULT_MAX_FRAME = 64 * 1024 * 1024
HEARTBEAT_MS = 200


class Failure(Exception):
    """A scenario's check did not hold."""


def check(condition, message):
    if not condition:
        raise Failure(message)


def is_uint(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def encode(*elements):
    return msgpack.packb(list(elements), use_bin_type=True)


def decode(frame):
    """Decode one frame into [version, type, field...]; raise on anything else."""
    message = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    if not isinstance(message, list) or len(message) < 2:
        raise Failure("broker sent a frame that is not [version, type, ...]: %r" % (frame[:64],))
    if message[0] != PROTOCOL_VERSION:
        raise Failure("broker sent protocol version %r" % (message[0],))
    return message


def wait_until(predicate, timeout, poll=0.01):
    """Wait up to `timeout` seconds for predicate() to be true; return it."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def task(function, queue, arg, priority=0, timeout_ms=0, max_attempts=3):
    return [function, queue, priority, timeout_ms, max_attempts, arg]


# ---------------------------------------------------------------------------
# Broker process


class Broker:
    """A taskqd process on 127.0.0.1 with a port of its own choosing."""

    def __init__(self, path, workdir):
        self.path = path
        self.workdir = workdir
        self.process = None
        self.endpoint = None
        self.returncode = None
        self.log = None

    def start(self, timeout=10.0):
        ready = os.path.join(self.workdir, "ready")
        self.log = open(os.path.join(self.workdir, "taskqd.log"), "wb")
        self.process = subprocess.Popen(
            [self.path, "--bind", "tcp://127.0.0.1:*", "--ready-file", ready,
             "--db", os.path.join(self.workdir, "taskq.db"),
             "--heartbeat-ms", str(HEARTBEAT_MS)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not os.path.exists(ready):
            if self.process.poll() is not None:
                raise Failure("taskqd exited with status %d before it was ready"
                              % self.process.returncode)
            if time.monotonic() >= deadline:
                raise Failure("taskqd wrote no ready file within %.0f s" % timeout)
            time.sleep(0.02)
        with open(ready) as f:
            self.endpoint = f.readline().strip()
        check(self.endpoint.startswith("tcp://127.0.0.1:"),
              "unexpected endpoint in the ready file: %r" % self.endpoint)

    def running(self):
        return self.process is not None and self.process.poll() is None

    def terminate(self):
        if self.running():
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout=10.0):
        """Wait for the process to exit; kill it if it does not. Returns its status."""
        if self.process is None:
            return None
        try:
            self.returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self.returncode = None
        return self.returncode

    def stop(self):
        """SIGTERM (if still running) and wait. Returns the exit status, None if killed."""
        self.terminate()
        status = self.wait()
        if self.log is not None:
            self.log.close()
        return status


# ---------------------------------------------------------------------------
# Peers


class Connection:
    """One DEALER socket to the broker, exchanging single-frame messages."""

    def __init__(self, context, endpoint):
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.last_send = time.monotonic()

    def send(self, message_type, *fields):
        self.send_raw(encode(PROTOCOL_VERSION, message_type, *fields))

    def send_raw(self, frame):
        self.socket.send(frame)
        self.last_send = time.monotonic()

    def recv(self, timeout):
        """The next message, decoded, or None after `timeout` seconds."""
        if not self.socket.poll(max(0, int(timeout * 1000))):
            return None
        return decode(self.socket.recv())

    def recv_type(self, wanted, timeout, skip=(HEARTBEAT,)):
        """The next message of type `wanted`, skipping types in `skip`."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(deadline - time.monotonic())
            if message is None:
                raise Failure("no message of type %d within %.1f s" % (wanted, timeout))
            if message[1] == wanted:
                return message
            if message[1] not in skip:
                raise Failure("expected message type %d, got %r" % (wanted, message))

    def close(self):
        self.socket.close(0)


def hello_fields(role, client_id, name, credit=0, queues=(), functions=()):
    return [role, client_id, name, socket.gethostname() or "localhost", os.getpid(),
            credit, list(queues), list(functions)]


def check_welcome(message, expect_heartbeat_ms=HEARTBEAT_MS):
    check(len(message) == 7, "WELCOME has %d elements, not 7" % len(message))
    broker_version, store_id, heartbeat_ms, liveness, max_frame = message[2:]
    check(isinstance(broker_version, str) and broker_version,
          "WELCOME broker_version %r is not a non-empty str" % (broker_version,))
    check(is_uint(store_id) and store_id < 2 ** 64, "WELCOME store_id %r is not a u64" % (store_id,))
    check(heartbeat_ms == expect_heartbeat_ms,
          "WELCOME heartbeat_ms %r, broker started with %d" % (heartbeat_ms, expect_heartbeat_ms))
    check(is_uint(liveness) and liveness >= 1, "WELCOME liveness %r" % (liveness,))
    check(max_frame == DEFAULT_MAX_FRAME,
          "WELCOME max_frame %r, not the default %d" % (max_frame, DEFAULT_MAX_FRAME))
    return {"broker_version": broker_version, "store_id": store_id,
            "heartbeat_ms": heartbeat_ms, "liveness": liveness, "max_frame": max_frame}


class Client:
    """A client: submits batches, maps job ids, collects and acknowledges outcomes.

    Used from a single thread. Incoming messages are processed by pump(),
    which every wait loop calls; it also sends HEARTBEAT after heartbeat_ms
    without traffic, as section 4 asks of a client waiting for outcomes.
    """

    def __init__(self, context, endpoint, name="interop-client"):
        self.conn = Connection(context, endpoint)
        self.client_id = random.getrandbits(64) or 1
        self.name = name
        self.welcome = None
        self.next_req_id = 1
        self.accepted = {}          # req_id -> [job ids]
        self.known_jobs = set()     # jobs from ACCEPTED or sent in WATCH
        self.results = {}           # job id -> (status, attempts, payload)
        self.result_items = 0
        self.acked = set()
        self.errors = []            # ERROR messages, as [code, ref, text]
        self.stats_replies = {}     # req_id -> map
        self.heartbeats = 0
        self.bye = None
        self.violations = []        # protocol rules the broker broke
        self.auto_ack = True

    def hello(self, timeout=5.0):
        self.conn.send(HELLO, *hello_fields(ROLE_CLIENT, self.client_id, self.name))
        self.welcome = check_welcome(self.conn.recv_type(WELCOME, timeout))
        return self.welcome

    @property
    def heartbeat_s(self):
        return (self.welcome["heartbeat_ms"] if self.welcome else HEARTBEAT_MS) / 1000.0

    def pump(self, timeout):
        """Process messages for up to `timeout` seconds (at least one poll)."""
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() - self.conn.last_send >= self.heartbeat_s:
                self.conn.send(HEARTBEAT)
            wait = min(deadline - time.monotonic(), self.heartbeat_s)
            message = self.conn.recv(max(wait, 0))
            if message is not None:
                self.dispatch(message)
            if time.monotonic() >= deadline:
                return

    def dispatch(self, message):
        kind, fields = message[1], message[2:]
        if kind == ACCEPTED:
            req_id, first_job, count = fields
            jobs = list(range(first_job, first_job + count))
            self.accepted[req_id] = jobs
            self.known_jobs.update(jobs)
        elif kind == RESULT:
            (items,) = fields
            jobs = []
            for job, status, attempts, payload in items:
                if job not in self.known_jobs:
                    self.violations.append("RESULT for job %d before its ACCEPTED" % job)
                if job in self.results and self.results[job][0] != ST_UNKNOWN:
                    self.violations.append("second RESULT for job %d" % job)
                self.results[job] = (status, attempts, payload)
                self.result_items += 1
                jobs.append(job)
            if self.auto_ack:
                self.ack(jobs)
        elif kind == ERROR:
            self.errors.append(fields)
        elif kind == STATS_REPLY:
            req_id, stats = fields
            self.stats_replies[req_id] = stats
        elif kind == HEARTBEAT:
            self.heartbeats += 1
        elif kind == BYE:
            self.bye = fields[0]
        else:
            self.violations.append("unexpected message for a client: %r" % (message,))

    def wait_for(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Failure("timed out after %.1f s waiting for %s" % (timeout, what))
            self.pump(min(remaining, 0.05))

    def submit(self, tasks):
        req_id = self.next_req_id
        self.next_req_id += 1
        self.conn.send(SUBMIT, req_id, tasks)
        return req_id

    def submit_and_wait(self, tasks, timeout=5.0):
        req_id = self.submit(tasks)
        self.wait_for(lambda: req_id in self.accepted or self.error_for(req_id),
                      timeout, "ACCEPTED of SUBMIT %d" % req_id)
        error = self.error_for(req_id)
        check(error is None, "SUBMIT %d refused: %r" % (req_id, error))
        jobs = self.accepted[req_id]
        check(len(jobs) == len(tasks),
              "ACCEPTED count %d for a batch of %d" % (len(jobs), len(tasks)))
        check(jobs[0] > 0, "first_job %d is not positive" % jobs[0])
        return jobs

    def error_for(self, ref):
        for error in self.errors:
            if error[1] == ref:
                return error
        return None

    def wait_results(self, jobs, timeout):
        jobs = list(jobs)
        self.wait_for(lambda: all(job in self.results for job in jobs), timeout,
                      "outcomes of %d jobs (%d arrived)"
                      % (len(jobs), sum(job in self.results for job in jobs)))
        return [self.results[job] for job in jobs]

    def ack(self, jobs):
        if jobs:
            self.conn.send(ACK, list(jobs))
            self.acked.update(jobs)

    def cancel(self, jobs):
        self.conn.send(CANCEL, list(jobs))

    def watch(self, jobs):
        self.known_jobs.update(jobs)
        self.conn.send(WATCH, list(jobs))

    def stats(self, timeout=5.0):
        req_id = self.next_req_id
        self.next_req_id += 1
        self.conn.send(STATS, req_id)
        self.wait_for(lambda: req_id in self.stats_replies or self.error_for(req_id),
                      timeout, "STATS_REPLY %d" % req_id)
        check(req_id in self.stats_replies, "STATS refused: %r" % (self.error_for(req_id),))
        return self.stats_replies[req_id]

    def say_bye(self):
        self.conn.send(BYE, "done")

    def close(self):
        self.conn.close()


class HandlerError(Exception):
    """Raised by a handler: the attempt ends with a DONE status ERROR."""


def square(arg):
    return arg * arg


def boom(arg):
    raise HandlerError("boom")


HANDLERS = {"square": square, "boom": boom}


class Worker(threading.Thread):
    """A worker on its own thread and socket.

    mode "serve" runs every attempt through HANDLERS; "hold" never answers
    (attempts are kept until stop()); "return" hands every attempt back
    with status RETURNED. Outcomes of one receive round go out in one DONE
    batch. HEARTBEAT is sent every heartbeat_ms unless silence() was called.
    """

    def __init__(self, endpoint, queues, credit, mode="serve", name="interop-worker",
                 functions=tuple(HANDLERS)):
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.queues = list(queues)
        self.functions = list(functions)
        self.credit = credit
        self.mode = mode
        self.worker_name = name
        self.welcome = None
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.events = []            # (time, kind, data), in arrival order
        self.errors = []
        self.broker_heartbeats = 0
        self.bye = None
        self.done_batches = []      # item counts of the DONE batches sent
        self.violations = []
        self.held = []              # attempts received and not answered
        self.outstanding = set()    # (job, attempt) not yet in a DONE
        self.credit_limit = credit
        self.max_outstanding = 0
        self.last_send = None
        self._silent = threading.Event()
        self._stopping = threading.Event()
        self._graceful = True
        self._failure = None

    # Control, from the main thread.

    def start_and_wait(self, timeout=5.0):
        self.start()
        check(self.ready.wait(timeout), "worker %s got no WELCOME" % self.worker_name)
        check(self._failure is None, "worker %s: %s" % (self.worker_name, self._failure))
        return self.welcome

    def silence(self):
        """Stop sending anything (heartbeats, DONE) while still reading."""
        self._silent.set()

    def wake(self):
        self._silent.clear()

    def stop(self, graceful=True, timeout=5.0):
        """graceful: send DONE for every held attempt, then BYE; else just close."""
        self._graceful = graceful
        self._stopping.set()
        self.join(timeout)
        check(not self.is_alive(), "worker %s did not stop" % self.worker_name)

    def tasks_received(self):
        with self.lock:
            return [data for _, kind, data in self.events if kind == TASKS]

    def abandons_received(self):
        with self.lock:
            return [data for _, kind, data in self.events if kind == ABANDON]

    # The worker's thread.

    def run(self):
        context = zmq.Context.instance()
        conn = Connection(context, self.endpoint)
        try:
            conn.send(HELLO, *hello_fields(ROLE_WORKER, 0, self.worker_name, self.credit,
                                           self.queues, self.functions))
            self.last_send = time.monotonic()
            try:
                self.welcome = check_welcome(conn.recv_type(WELCOME, 5.0))
            except Failure as e:
                self._failure = str(e)
                return
            finally:
                self.ready.set()
            self.serve(conn)
        except Exception as e:  # reported through violations
            self.violations.append("worker thread crashed: %r" % (e,))
        finally:
            conn.close()

    def serve(self, conn):
        heartbeat_s = self.welcome["heartbeat_ms"] / 1000.0
        next_heartbeat = time.monotonic() + heartbeat_s
        while not self._stopping.is_set():
            timeout = max(0.0, min(next_heartbeat - time.monotonic(), 0.05))
            outcomes = []
            message = conn.recv(timeout)
            while message is not None:
                outcomes.extend(self.handle(message))
                message = conn.recv(0)
            silent = self._silent.is_set()
            if outcomes and not silent:
                self.send_done(conn, outcomes)
            if time.monotonic() >= next_heartbeat:
                if not silent:
                    conn.send(HEARTBEAT)
                    self.last_send = time.monotonic()
                next_heartbeat = time.monotonic() + heartbeat_s
        if self._graceful:
            if self.held:
                # Status and payload of abandoned attempts are ignored.
                self.send_done(conn, [[job, attempt, OUT_ERROR, "stopped"]
                                      for job, attempt in self.held])
                self.held = []
            conn.send(BYE, "stopping")

    def handle(self, message):
        kind, fields = message[1], message[2:]
        with self.lock:
            self.events.append((time.monotonic(), kind, fields))
        if kind == TASKS:
            return self.run_tasks(fields[0])
        if kind == HEARTBEAT:
            self.broker_heartbeats += 1
        elif kind == ERROR:
            self.errors.append(fields)
        elif kind == BYE:
            self.bye = fields[0]
            self._graceful = False
            self._stopping.set()
        elif kind != ABANDON:
            self.violations.append("unexpected message for a worker: %r" % (message,))
        return []

    def run_tasks(self, attempts):
        outcomes = []
        for job, attempt, function, seed, timeout_ms, arg in attempts:
            if (job, attempt) in self.outstanding:
                self.violations.append("attempt %d of job %d delivered twice" % (attempt, job))
            self.outstanding.add((job, attempt))
            self.max_outstanding = max(self.max_outstanding, len(self.outstanding))
            if len(self.outstanding) > self.credit_limit:
                self.violations.append("holding %d attempts with credit %d"
                                       % (len(self.outstanding), self.credit_limit))
            if self.mode == "hold":
                self.held.append((job, attempt))
            elif self.mode == "return":
                outcomes.append([job, attempt, OUT_RETURNED, None])
            else:
                try:
                    outcomes.append([job, attempt, OUT_OK, HANDLERS[function](arg)])
                except HandlerError as e:
                    outcomes.append([job, attempt, OUT_ERROR, str(e)])
        return outcomes

    def send_done(self, conn, outcomes):
        conn.send(DONE, outcomes)
        self.last_send = time.monotonic()
        self.done_batches.append(len(outcomes))
        for job, attempt, status, _ in outcomes:
            self.outstanding.discard((job, attempt))
            if status == OUT_RETURNED:
                self.credit_limit = 0  # draining: the broker sends nothing more


# ---------------------------------------------------------------------------
# Scenarios


class Scenarios:
    def __init__(self, broker):
        self.broker = broker
        self.endpoint = broker.endpoint
        self.context = zmq.Context.instance()
        self.peers = []

    def client(self, hello=True):
        client = Client(self.context, self.endpoint)
        self.peers.append(client)
        if hello:
            client.hello()
        return client

    def worker(self, queues, credit, mode="serve", name="interop-worker"):
        worker = Worker(self.endpoint, queues, credit, mode, name)
        self.peers.append(worker)
        worker.start_and_wait()
        return worker

    def cleanup(self):
        """Close every peer a scenario left open."""
        for peer in self.peers:
            if isinstance(peer, Worker):
                if peer.is_alive():
                    peer.stop(graceful=False)
            else:
                peer.close()
        self.peers = []

    @staticmethod
    def check_clean(*peers):
        for peer in peers:
            check(not peer.violations, "; ".join(peer.violations[:5]))

    def raw(self, frame, timeout=2.0):
        """Send one frame from a fresh connection, return the first reply."""
        conn = Connection(self.context, self.endpoint)
        try:
            conn.send_raw(frame)
            return conn.recv_type(ERROR, timeout)
        finally:
            conn.close()

    # -- handshake ----------------------------------------------------------

    def handshake(self):
        client = self.client(hello=False)
        client_welcome = client.hello()
        worker = self.worker(["q.handshake"], credit=2)
        check(worker.welcome["store_id"] == client_welcome["store_id"],
              "the two roles were given different store_ids")
        # A client's HEARTBEAT is answered with HEARTBEAT.
        client.conn.send(HEARTBEAT)
        client.wait_for(lambda: client.heartbeats > 0, 2.0, "HEARTBEAT answering the client's")
        # The broker heartbeats workers every heartbeat_ms.
        check(wait_until(lambda: worker.broker_heartbeats >= 2, 1.0),
              "worker heard %d HEARTBEATs from the broker in 1 s" % worker.broker_heartbeats)
        worker.stop()
        client.say_bye()
        self.check_clean(client, worker)

    # -- throughput and results --------------------------------------------

    def square_2000(self):
        worker = self.worker(["q.square"], credit=8)
        client = self.client()
        rng = random.Random(2000)
        args = [rng.randint(-(2 ** 31), 2 ** 31) for _ in range(2000)]
        args[:4] = [0, 1, -1, 2 ** 31]
        jobs = []
        pending = []
        for start in range(0, len(args), 250):
            batch = [task("square", "q.square", arg) for arg in args[start:start + 250]]
            pending.append(client.submit(batch))
        for req_id in pending:
            client.wait_for(lambda: req_id in client.accepted or client.error_for(req_id),
                            5.0, "ACCEPTED of SUBMIT %d" % req_id)
            check(req_id in client.accepted, "SUBMIT refused: %r" % (client.error_for(req_id),))
            jobs.extend(client.accepted[req_id])
        check(len(set(jobs)) == 2000 and min(jobs) > 0,
              "job ids are not 2000 distinct positive integers")
        outcomes = client.wait_results(jobs, 30.0)
        for job, arg, (status, attempts, payload) in zip(jobs, args, outcomes):
            check(status == ST_DONE, "job %d: status %d (%r)" % (job, status, payload))
            check(attempts == 1, "job %d: attempts %d" % (job, attempts))
            check(payload == arg * arg, "job %d: square(%d) came back as %r" % (job, arg, payload))
        check(client.result_items == 2000, "%d RESULT items for 2000 jobs" % client.result_items)
        check(client.acked >= set(jobs), "not every outcome was acknowledged")
        check(worker.max_outstanding <= 8, "worker held %d attempts" % worker.max_outstanding)
        check(sum(worker.done_batches) == 2000,
              "worker sent %d DONE items for 2000 attempts" % sum(worker.done_batches))
        seeds = {a[0]: a[3] for batch in worker.tasks_received() for a in batch[0]}
        check(len(set(seeds.values())) == 2000, "seeds are not different between jobs")
        worker.stop()
        client.say_bye()
        self.check_clean(client, worker)

    def handler_error(self):
        worker = self.worker(["q.boom"], credit=2)
        client = self.client()
        (job,) = client.submit_and_wait([task("boom", "q.boom", 1)])
        ((status, attempts, payload),) = client.wait_results([job], 5.0)
        check(status == ST_FAILED, "status %d, not FAILED" % status)
        check(payload == "boom", "error text %r, not 'boom'" % (payload,))
        check(attempts == 1, "a handler error was retried: attempts %d" % attempts)
        worker.stop()
        client.say_bye()
        self.check_clean(client, worker)

    def cancel_queued(self):
        client = self.client()
        (job,) = client.submit_and_wait([task("square", "q.nobody", 3)])
        client.cancel([job])
        ((status, attempts, payload),) = client.wait_results([job], 5.0)
        check(status == ST_CANCELLED, "status %d, not CANCELLED" % status)
        check(isinstance(payload, str), "CANCELLED payload %r is not a str" % (payload,))
        check(attempts == 0, "a job never delivered has attempts %d" % attempts)
        # A job with an outcome, and an unknown id: both ignored, no reply.
        client.cancel([job, 2 ** 63 + 17])
        client.pump(0.3)
        check(not client.errors, "CANCEL answered with ERROR %r" % (client.errors,))
        check(client.result_items == 1, "a second CANCEL produced another RESULT")
        client.say_bye()
        self.check_clean(client)

    def watch_unknown(self):
        client = self.client()
        unknown = 2 ** 63 + 4242
        client.watch([unknown])
        ((status, attempts, payload),) = client.wait_results([unknown], 5.0)
        check(status == ST_UNKNOWN, "status %d, not UNKNOWN" % status)
        check(isinstance(payload, str), "UNKNOWN payload %r is not a str" % (payload,))
        check(is_uint(attempts), "UNKNOWN attempts %r" % (attempts,))
        # An outcome not yet acknowledged is sent again at once.
        (job,) = client.submit_and_wait([task("square", "q.nobody", 3)])
        client.cancel([job])
        client.auto_ack = False
        client.wait_results([job], 5.0)
        del client.results[job]
        client.watch([job])
        ((status, _, _),) = client.wait_results([job], 2.0)
        check(status == ST_CANCELLED, "WATCH of a cancelled job gave status %d" % status)
        client.ack([job])
        client.say_bye()
        self.check_clean(client)

    def stats(self):
        worker = self.worker(["q.stats"], credit=3)
        client = self.client()
        (job,) = client.submit_and_wait([task("square", "q.stats", 12)])
        client.wait_results([job], 5.0)
        stats = client.stats()
        check(isinstance(stats, dict), "stats is %r, not a map" % type(stats))
        check(all(isinstance(key, str) for key in stats), "stats has non-str keys")
        expected = {"version": str, "uptime_ms": int, "store_id": int, "queues": list,
                    "worker_list": list}
        for key in ("queued", "running", "done", "failed", "retried", "cancelled", "lost",
                    "timedout", "malformed", "stale", "unroutable", "clients", "workers"):
            expected[key] = int
        for key, kind in expected.items():
            check(key in stats, "stats lacks %r" % key)
            value = stats[key]
            if kind is int:
                check(is_uint(value), "stats[%r] = %r is not a uint" % (key, value))
            else:
                check(isinstance(value, kind), "stats[%r] = %r is not a %s"
                      % (key, value, kind.__name__))
        check(stats["store_id"] == client.welcome["store_id"], "stats store_id differs from WELCOME")
        check(stats["workers"] >= 1 and stats["clients"] >= 1,
              "workers %d, clients %d" % (stats["workers"], stats["clients"]))
        check(stats["done"] >= 1, "done is %d after a job completed" % stats["done"])

        queues = {q.get("name"): q for q in stats["queues"] if isinstance(q, dict)}
        check(len(queues) == len(stats["queues"]), "queues holds a non-map")
        check("q.stats" in queues, "queues lacks q.stats: %r" % sorted(map(str, queues)))
        for entry in queues.values():
            check(isinstance(entry["name"], str), "queue name %r" % (entry["name"],))
            for key in ("queued", "running", "done", "failed", "retried"):
                check(is_uint(entry.get(key)), "queue %s: %r = %r" % (entry["name"], key,
                                                                      entry.get(key)))
        check(queues["q.stats"]["done"] == 1, "q.stats done %r" % (queues["q.stats"]["done"],))

        workers = [w for w in stats["worker_list"] if isinstance(w, dict)]
        check(len(workers) == len(stats["worker_list"]), "worker_list holds a non-map")
        ours = [w for w in workers if w.get("name") == worker.worker_name
                and w.get("queues") == ["q.stats"]]
        check(len(ours) == 1, "worker_list does not show the worker once: %r" % (workers,))
        check(stats["version"] == client.welcome["broker_version"],
              "stats version %r, WELCOME broker_version %r"
              % (stats["version"], client.welcome["broker_version"]))
        for entry in workers:
            for key in ("name", "host"):
                check(isinstance(entry.get(key), str), "worker %r: %r" % (key, entry.get(key)))
            for key in ("pid", "credit", "running", "done", "last_seen_ms"):
                check(is_uint(entry.get(key)), "worker %r = %r" % (key, entry.get(key)))
            for key in ("functions", "queues"):
                value = entry.get(key)
                check(isinstance(value, list) and all(isinstance(v, str) for v in value),
                      "worker %r = %r" % (key, value))
        mine = ours[0]
        check(mine["pid"] == os.getpid() and mine["credit"] == 3 and mine["done"] == 1
              and sorted(mine["functions"]) == sorted(HANDLERS),
              "worker entry does not match its HELLO: %r" % (mine,))
        worker.stop()
        client.say_bye()
        self.check_clean(client, worker)

    # -- refused messages ---------------------------------------------------

    def errors(self):
        # Before HELLO.
        code, _, _ = self.raw(encode(1, STATS, 1))[2:]
        check(code == E_HELLO_REQUIRED, "STATS before HELLO: code %d, not HELLO_REQUIRED" % code)
        # A worker HELLO with credit 0.
        code, _, _ = self.raw(encode(1, HELLO, *hello_fields(
            ROLE_WORKER, 0, "w0", 0, ["q.errors"], ["square"])))[2:]
        check(code == E_BAD_FIELD, "worker HELLO with credit 0: code %d, not BAD_FIELD" % code)

        client = self.client()
        malformed_before = client.stats()["malformed"]
        valid_submit = encode(1, SUBMIT, 77, [task("square", "q.errors", 7)])
        cases = [
            ("version 2", encode(2, HEARTBEAT), E_VERSION),
            ("type 99", encode(1, 99), E_UNKNOWN_TYPE),
            ("STATS without req_id", encode(1, STATS), E_MALFORMED),
            ("HEARTBEAT with a field", encode(1, HEARTBEAT, 0), E_MALFORMED),
            ("truncated SUBMIT", valid_submit[:-1], E_TRUNCATED),
            ("empty SUBMIT batch", encode(1, SUBMIT, 78, []), E_BAD_FIELD),
            ("priority 5000", encode(1, SUBMIT, 79, [task("square", "q.errors", 7,
                                                           priority=5000)]), E_BAD_FIELD),
        ]
        for what, frame, expected in cases:
            before = len(client.errors)
            client.conn.send_raw(frame)
            client.wait_for(lambda: len(client.errors) > before, 2.0, "ERROR for " + what)
            code, ref, text = client.errors[before]
            check(code == expected, "%s: ERROR code %d (%r), expected %d"
                  % (what, code, text, expected))
            check(isinstance(text, str), "%s: ERROR text %r" % (what, text))
            if expected == E_VERSION:
                check(ref == 0 and "supported: 1" in text,
                      "ERROR VERSION ref %r text %r" % (ref, text))
        check(not client.accepted, "a refused SUBMIT was accepted")
        # The connection still works, and every refusal was counted.
        malformed_after = client.stats()["malformed"]
        check(malformed_after - malformed_before == len(cases),
              "malformed grew by %d for %d refused messages"
              % (malformed_after - malformed_before, len(cases)))
        client.say_bye()
        self.check_clean(client)

    # -- failures of workers ------------------------------------------------

    def worker_death(self):
        client = self.client()
        first = self.worker(["q.death"], credit=1, mode="hold", name="interop-dying")
        (job,) = client.submit_and_wait([task("square", "q.death", 9)])
        check(wait_until(lambda: first.tasks_received(), 2.0), "first worker got no TASKS")
        first.silence()
        silent_since = first.last_send
        second = self.worker(["q.death"], credit=1, name="interop-heir")
        timeout = first.welcome["liveness"] * first.welcome["heartbeat_ms"] / 1000.0
        ((status, attempts, payload),) = client.wait_results([job], timeout + 3.0)
        check(status == ST_DONE and payload == 81, "outcome %d %r" % (status, payload))
        check(attempts == 2, "attempts %d, expected 2" % attempts)
        redelivered = [a for batch in second.tasks_received() for a in batch[0]]
        check([a[:2] for a in redelivered] == [[job, 2]],
              "second worker received %r, expected attempt 2 of job %d"
              % ([a[:2] for a in redelivered], job))
        first_seed = first.tasks_received()[0][0][0][3]
        check(redelivered[0][3] == first_seed, "the seed changed between attempts")
        with second.lock:
            delivered_at = [t for t, kind, _ in second.events if kind == TASKS][0]
        check(delivered_at - silent_since >= timeout * 0.9,
              "redelivered %.0f ms after the worker's last message, liveness %.0f ms"
              % ((delivered_at - silent_since) * 1000, timeout * 1000))
        # The broker forgot the silent worker: its next message needs HELLO.
        first.wake()
        check(wait_until(lambda: first.errors, 2.0), "the dead worker got no ERROR")
        check(first.errors[0][0] == E_HELLO_REQUIRED,
              "the dead worker got ERROR %r, not HELLO_REQUIRED" % (first.errors[0],))
        first.stop(graceful=False)
        second.stop()
        client.say_bye()
        self.check_clean(client, first, second)

    def run_limit(self):
        client = self.client()
        worker = self.worker(["q.hang"], credit=4, mode="hold", name="interop-hang")
        (job,) = client.submit_and_wait([task("square", "q.hang", 5, timeout_ms=300,
                                              max_attempts=2)])
        ((status, attempts, payload),) = client.wait_results([job], 5.0)
        check(status == ST_TIMEDOUT, "status %d (%r), not TIMEDOUT" % (status, payload))
        check(attempts == 2, "attempts %d, expected 2" % attempts)
        check(isinstance(payload, str), "TIMEDOUT payload %r is not a str" % (payload,))
        check(wait_until(lambda: len(worker.abandons_received()) >= 2, 1.0),
              "worker got %d ABANDONs" % len(worker.abandons_received()))
        with worker.lock:
            sequence = [(kind, [item[:2] for item in fields[0]]) for _, kind, fields
                        in worker.events if kind in (TASKS, ABANDON)]
        expected = [(TASKS, [[job, 1]]), (ABANDON, [[job, 1]]),
                    (TASKS, [[job, 2]]), (ABANDON, [[job, 2]])]
        check(sequence == expected, "worker saw %r, expected %r" % (sequence, expected))
        attempts_seen = [a for batch in worker.tasks_received() for a in batch[0]]
        check(len({a[3] for a in attempts_seen}) == 1, "the seed changed between attempts")
        check(all(a[4] == 300 for a in attempts_seen),
              "TASKS timeout_ms %r, submitted 300" % ([a[4] for a in attempts_seen],))
        with worker.lock:
            times = [t for t, kind, _ in worker.events if kind in (TASKS, ABANDON)]
        for start, end in ((times[0], times[1]), (times[2], times[3])):
            check(0.25 <= end - start <= 1.5, "ABANDON came %.0f ms after TASKS (limit 300 ms)"
                  % ((end - start) * 1000))
        stale_before = client.stats()["stale"]
        worker.stop()   # DONE for both abandoned attempts, then BYE
        client.pump(0.3)
        stale = client.stats()["stale"] - stale_before
        check(stale == 2, "stale grew by %d for the DONE of 2 superseded attempts" % stale)
        client.say_bye()
        self.check_clean(client, worker)

    def returned(self):
        client = self.client()
        leaving = self.worker(["q.return"], credit=1, mode="return", name="interop-leaving")
        (job,) = client.submit_and_wait([task("square", "q.return", 6, max_attempts=1)])
        check(wait_until(lambda: leaving.done_batches, 2.0), "the worker got no TASKS")
        staying = self.worker(["q.return"], credit=1, name="interop-staying")
        ((status, attempts, payload),) = client.wait_results([job], 5.0)
        check(status == ST_DONE and payload == 36,
              "outcome %d %r: the RETURNED attempt used up the only one" % (status, payload))
        delivered = [a[:2] for batch in staying.tasks_received() for a in batch[0]]
        check(delivered == [[job, 1]], "redelivered as %r, expected attempt 1 of job %d"
              % (delivered, job))
        returned = [a[:2] for batch in leaving.tasks_received() for a in batch[0]]
        check(returned == [[job, 1]], "the returning worker received %r" % (returned,))
        check(attempts in (1, 2), "attempts %d" % attempts)
        leaving.stop()
        staying.stop()
        client.say_bye()
        self.check_clean(client, leaving, staying)

    # -- shutdown -------------------------------------------------------------

    def shutdown_bye(self):
        worker = self.worker(["q.bye"], credit=1)
        client = self.client()
        self.broker.terminate()
        client.wait_for(lambda: client.bye is not None, 5.0, "BYE to the client")
        check(client.bye == "shutdown", "client BYE reason %r" % (client.bye,))
        check(wait_until(lambda: worker.bye is not None, 5.0), "no BYE to the worker")
        check(worker.bye == "shutdown", "worker BYE reason %r" % (worker.bye,))
        status = self.broker.wait()
        check(status == 0, "taskqd exited with status %r after SIGTERM" % (status,))
        worker.stop()
        self.check_clean(client, worker)


SCENARIOS = [
    "handshake",
    "square_2000",
    "handler_error",
    "cancel_queued",
    "watch_unknown",
    "stats",
    "errors",
    "worker_death",
    "run_limit",
    "returned",
    "shutdown_bye",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taskqd", required=True, help="path of the taskqd binary")
    args = parser.parse_args()

    passed, failed = 0, 0
    with tempfile.TemporaryDirectory(prefix="taskq-interop-") as workdir:
        broker = Broker(os.path.abspath(args.taskqd), workdir)
        try:
            broker.start()
            scenarios = Scenarios(broker)
            for name in SCENARIOS:
                try:
                    check(broker.running(), "taskqd is not running")
                    getattr(scenarios, name)()
                    print("ok", name, flush=True)
                    passed += 1
                except Exception as e:
                    print("FAIL %s: %s" % (name, e), flush=True)
                    failed += 1
                finally:
                    scenarios.cleanup()
        except (Failure, OSError) as e:
            print("FAIL start: %s" % e, flush=True)
            failed += 1
        finally:
            status = broker.stop()
            if broker.endpoint is not None and status != 0:
                print("FAIL stop: taskqd exited with status %r" % (status,), flush=True)
                failed += 1
                with open(os.path.join(workdir, "taskqd.log"), errors="replace") as log:
                    sys.stdout.write(log.read()[-4000:])
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed == len(SCENARIOS) else 1


if __name__ == "__main__":
    sys.exit(main())
