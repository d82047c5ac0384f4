#!/usr/bin/env python3
"""The C server (`smtpx_server_start` with a trivial callback table, bench/c_sink.c)
side by side with Postfix's smtp-sink, with bench/peers' own S1 and S4 methods (its
functions are loaded from it, not copied):

- S1: server CPU per message under `smtp-source -d -s 10 -m 30000 -l 1024` (utime+stime
  of the whole server process from /proc, smtp-source pinned to CPU 0, the server to
  CPU 1); the C sink's count must equal the messages sent.
- S4: 10,000 idle connections held (each has read its 220), the server's RSS growth per
  connection, and a new transaction among them.

    make c-lib && bench/c_server.py [--rounds 3] [--only S1,S4] [--baseline C_SINK]
    bench/c_server.py --instructions [--baseline C_SINK]

`--floor` adds bench/floor_sink.c, a sink that does nothing but the reads and writes
(no parsing, no checks, no timers): its CPU per message is the kernel's share that every
server pays here, so the gap between it and a contender is that contender's own code.

`--instructions`: user-space instructions per message instead of time, counted by
valgrind's callgrind (each server run under it for 2,000 and then 12,000 messages of
S1's kind, the difference divided by 10,000, so start-up cancels out). Unlike CPU time
this does not move with the machine's load, so a change to the server's own code can
be measured on a busy machine; the kernel's share (most of S1's cost) is not in it.

`--baseline` adds a c_sink binary built from another commit (for before/after figures in
one run; build it with the `cc` line in `build()` against that commit's libsmtpx.a).

Contenders run interleaved (C, sink, C, sink, ...); medians and the paired ratio to
smtp-sink are printed. Goals (issue 13): S4 <= 8 KiB per idle connection; S1 server
CPU per message <= 0.8x smtp-sink's.
"""

import argparse
import importlib.machinery
import importlib.util
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

_loader = importlib.machinery.SourceFileLoader("peers", os.path.join(HERE, "peers"))
_spec = importlib.util.spec_from_loader("peers", _loader)
peers = importlib.util.module_from_spec(_spec)
_loader.exec_module(peers)


class CSink:
    """bench/c_sink.c, built against target/release/libsmtpx.a."""

    binary = None

    inline = False

    def __init__(self, max_conn=None):
        argv = ["taskset", "-c", peers.SERVER_CPU, self.binary] + (["--inline"] if self.inline else [])
        if max_conn:
            argv += ["--max-connections", str(max_conn)]
        self.p = peers.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             nofile=peers.NOFILE)
        line = peers.readline_timeout(self.p.stdout, 10) or ""
        m = re.search(r"listening on \S+:(\d+)", line)
        if not m:
            raise RuntimeError(f"c_sink did not start: {line!r}")
        self.port = int(m.group(1))
        self.pid = self.p.pid

    def count(self, expect=None):
        self.p.send_signal(signal.SIGUSR1)
        line = peers.readline_timeout(self.p.stdout, 5) or ""
        m = re.match(r"count=(\d+)", line)
        return int(m.group(1)) if m else -1

    def close(self):
        peers.stop(self.p, grace=20)


class CSinkBaseline(CSink):
    """A c_sink built from another commit (--baseline)."""

    binary = None


class FloorSink(CSink):
    """bench/floor_sink.c (--floor): one epoll loop, fixed replies, nothing parsed: the
    least an SMTP sink can spend per message on this kernel."""

    binary = None


class CSinkInline(CSink):
    """The same, with smtpx_server_config_set_callbacks_block(config, false)."""

    inline = True


def build(out_dir):
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "smtp-ffi"], cwd=REPO, check=True,
                   timeout=1800)
    binary = os.path.join(out_dir, "c_sink")
    subprocess.run(["cc", "-std=c11", "-O2", "-I", os.path.join(REPO, "include"),
                    os.path.join(HERE, "c_sink.c"),
                    os.path.join(REPO, "target", "release", "libsmtpx.a"),
                    "-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc", "-o", binary],
                   check=True)
    return binary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="S1,S4")
    ap.add_argument("--baseline", help="a c_sink binary built from another commit")
    ap.add_argument("--floor", action="store_true",
                    help="add bench/floor_sink.c, the least a sink can spend per message")
    ap.add_argument("--instructions", action="store_true",
                    help="user-space instructions per message under callgrind, not time")
    args = ap.parse_args()
    if args.instructions:
        return instructions(args.baseline)
    only = set(args.only.upper().split(","))
    signal.signal(signal.SIGTERM, peers.on_signal)
    signal.signal(signal.SIGINT, peers.on_signal)
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    peers.TMP = tempfile.mkdtemp(prefix="smtpx-cbench-", dir=shm)
    os.chmod(peers.TMP, 0o755)
    try:
        CSink.binary = build(peers.TMP)
        msgfile = os.path.join(peers.TMP, "message.eml")
        with open(msgfile, "wb") as f:
            f.write(b"From: <a@x.test>\r\nTo: <b@x.test>\r\nSubject: bench\r\n\r\n"
                    + (b"X" * 78 + b"\r\n") * 13)
        contenders = [("C smtpx_server_start (trivial table)", CSink),
                      ("  the same, callbacks_block false", CSinkInline),
                      ("postfix smtp-sink", peers.Sink)]
        if args.baseline:
            CSinkBaseline.binary = os.path.abspath(args.baseline)
            contenders.insert(2, ("  baseline (--baseline)", CSinkBaseline))
        if args.floor:
            FloorSink.binary = os.path.join(peers.TMP, "floor_sink")
            subprocess.run(["cc", "-O2", os.path.join(HERE, "floor_sink.c"), "-o", FloorSink.binary],
                           check=True)
            contenders.insert(-1, ("floor (bench/floor_sink.c)", FloorSink))
        results = {(s, name): [] for s in ("S1", "S4") for name, _ in contenders}
        for r in range(args.rounds):
            for name, make in contenders:
                if "S1" in only:
                    res = peers.server_run(make, peers.S1_MSGS, keepalive=True)
                    results[("S1", name)].append(res)
                    print(f"round {r + 1} S1 {name}: {res}", file=sys.stderr)
                if "S4" in only:
                    res = peers.idle_run(lambda m=make: m(max_conn=peers.S4_CONNS + 100),
                                         peers.S4_CONNS, msgfile)
                    results[("S4", name)].append(res)
                    print(f"round {r + 1} S4 {name}: {res}", file=sys.stderr)
        report(results, contenders, only)
    finally:
        peers.cleanup()


def instructions(baseline):
    """--instructions: see the module's docstring."""
    if shutil.which("valgrind") is None:
        sys.exit("--instructions needs valgrind (Debian: apt-get install valgrind)")
    tmp = tempfile.mkdtemp(prefix="smtpx-cbench-")
    try:
        binary = build(tmp)
        contenders = [("C smtpx_server_start (trivial table)", [binary]),
                      ("  the same, callbacks_block false", [binary, "--inline"])]
        if baseline:
            contenders.append(("  baseline (--baseline)", [os.path.abspath(baseline)]))
            contenders.append(("  baseline, callbacks_block false", [os.path.abspath(baseline), "--inline"]))
        print("S1's kind (smtp-source -d -s 10 -l 1024), user-space instructions per message "
              "(callgrind, 12,000 messages minus 2,000)")
        for name, argv in contenders:
            counts = [callgrind_total(argv, msgs, tmp) for msgs in (2000, 12000)]
            print(f"  {name:40} {(counts[1] - counts[0]) / 10000:,.0f}")
    finally:
        subprocess.run(["rm", "-rf", tmp], check=False)


def callgrind_total(argv, msgs, tmp):
    """Instructions of a c_sink run under callgrind while smtp-source sends `msgs`."""
    out = os.path.join(tmp, "callgrind.out")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + argv,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = peers.readline_timeout(p.stdout, 60) or ""
        m = re.search(r"listening on \S+:(\d+)", line)
        if not m:
            raise RuntimeError(f"c_sink did not start under valgrind: {line!r}")
        subprocess.run([peers.SMTP_SOURCE, "-d", "-s", "10", "-m", str(msgs), "-l", "1024",
                        "-f", peers.FROM, "-t", peers.TO, f"{peers.HOST}:{m.group(1)}"],
                       check=True, timeout=600)
    finally:
        peers.stop(p, grace=60)
    with open(out) as f:
        found = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
    if not found:
        raise RuntimeError("callgrind wrote no total")
    return int(found.group(1))


def report(results, contenders, only):
    sink = contenders[-1][0]
    if "S1" in only:
        print("S1: smtp-source -d -s 10 -m 30000 -l 1024, server CPU us/msg (median; per round)")
        for name, _ in contenders:
            runs = results[("S1", name)]
            fails = [r["fail"] for r in runs if "fail" in r]
            per = "/".join(f"{r['srv_us']:.1f}" if "fail" not in r else "FAIL" for r in runs)
            print(f"  {name:40} {fmt(peers.median_of(runs, 'srv_us'))}  ({per}) "
                  f"{'FAILED: ' + fails[0] if fails else ''}")
        for ours, _ in contenders[:-1]:
            ratios = [a["srv_us"] / b["srv_us"] for a, b in zip(results[("S1", ours)], results[("S1", sink)])
                      if "fail" not in a and "fail" not in b]
            if not ratios:
                continue
            ratio = statistics.median(ratios)
            if ours.startswith("floor"):
                print(f"  the floor (no server code of its own) against smtp-sink: {ratio:.2f}x "
                      f"(paired median)")
            else:
                print(f"  S1 goal (<= 0.8x smtp-sink's CPU/msg), {ours.strip()}: {ratio:.2f}x "
                      f"(paired median) -> {'MET' if ratio <= 0.8 else 'NOT MET'}")
    if "S4" in only:
        print("S4: 10,000 idle connections, RSS growth per connection (median; per round)")
        for name, _ in contenders:
            runs = results[("S4", name)]
            per = "/".join(f"{r['kib']:.1f}" if "fail" not in r else "FAIL" for r in runs)
            held = [r.get("held") for r in runs]
            print(f"  {name:40} {fmt(peers.median_of(runs, 'kib'))} KiB  ({per}), held {held}, "
                  f"new txn {fmt(peers.median_of(runs, 'txn_ms'))} ms")
        kib = peers.median_of(results[("S4", contenders[0][0])], "kib")
        if kib is not None:
            print(f"  S4 goal (<= 8 KiB per idle connection): {kib:.1f} KiB -> "
                  f"{'MET' if kib <= 8 else 'NOT MET'}")


def fmt(v):
    return "-" if v is None else f"{v:.1f}"


if __name__ == "__main__":
    sys.exit(main())
