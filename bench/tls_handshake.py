#!/usr/bin/env python3
"""TLS handshake cost of smtp-server against the crypto floor, measured in one run.

Each message is a fresh connection with STARTTLS (RSA-2048 end-entity certificate, made
here with openssl), sent by CLIENT_THREADS Python threads (standard library only). The
server's CPU time (user + system, from /proc) over the run, divided by the messages,
is compared with the floor: what the handshake's private-key and key-exchange
operations cost on this machine, from `openssl speed rsa2048 ecdhx25519` run in the same
invocation (RSA-2048 sign + one X25519 operation).

    bench/tls_handshake.py --server ring=target/release/examples/smtp-server \
        --server aws-lc-rs=OTHER_TARGET/release/examples/smtp-server --messages 2000 --rounds 3

A server may carry extra arguments: `--server "tokio=PATH --async"` runs the tokio driver.

With --resume, each client thread offers the session of its previous connection
(TLS 1.3 tickets): the case of returning clients, where no RSA signature is needed.
Prints one line per server and mode with the median over the rounds.
"""

import argparse
import os
import re
import shlex
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based) of the whole line.
    return (int(fields[11]) + int(fields[12])) / TICKS


def make_cert(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "basicConstraints=critical,CA:FALSE",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", key, "-out", cert],
        check=True, capture_output=True)
    return cert, key


def floor_us(seconds):
    out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "rsa2048", "ecdhx25519"],
                         check=True, capture_output=True, text=True).stdout
    # The rates (sign/s, op/s) have more digits than the times.
    sign = re.search(r"^rsa\s+2048 bits\s+\S+s\s+\S+s\s+([\d.]+)", out, re.M)
    x25519 = re.search(r"X25519\)\s+\S+s\s+([\d.]+)", out)
    if not sign or not x25519:
        sys.exit("cannot read `openssl speed` output:\n" + out)
    return 1e6 / float(sign.group(1)), 1e6 / float(x25519.group(1))


class Client:
    def __init__(self, port, cafile, mode):
        self.port, self.resume, self.tls = port, mode == "resume", mode != "plain"
        self.ctx = ssl.create_default_context(cafile=cafile)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.session = None
        self.resumed = 0

    def reply(self, f):
        while True:
            line = f.readline()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != b"-":
                return line

    def one(self):
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        f = raw.makefile("rb")
        self.reply(f)
        raw.sendall(b"EHLO bench\r\n"); self.reply(f)
        if not self.tls:
            return self.message(raw, f)
        raw.sendall(b"STARTTLS\r\n")
        if not self.reply(f).startswith(b"220"):
            raise RuntimeError("STARTTLS refused")
        s = self.ctx.wrap_socket(raw, server_hostname="localhost",
                                 session=self.session if self.resume else None)
        f = s.makefile("rb")
        s.sendall(b"EHLO bench\r\n"); self.reply(f)
        if s.session_reused:
            self.resumed += 1
        self.session = s.session
        self.message(s, f)

    def message(self, s, f):
        s.sendall(b"MAIL FROM:<a@bench.test>\r\nRCPT TO:<b@bench.test>\r\nDATA\r\n")
        for _ in range(3):
            self.reply(f)
        s.sendall(b"Subject: bench\r\n\r\nhello\r\n.\r\n")
        if not self.reply(f).startswith(b"250"):
            raise RuntimeError("message refused")
        s.sendall(b"QUIT\r\n"); self.reply(f)
        s.close()


def run(command, cert, key, messages, threads, mode):
    binary, *extra = shlex.split(command)
    proc = subprocess.Popen([binary, *extra, "--listen", "127.0.0.1:0", "--discard", "--hostname", "localhost",
                             "--tls-cert", cert, "--tls-key", key],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on \S+:(\d+)", line)
        if not m:
            raise RuntimeError(f"server said {line!r}")
        port = int(m.group(1))
        clients = [Client(port, cert, mode) for _ in range(threads)]
        for c in clients:  # warm-up: one message each (also gives resumption a session)
            c.one()
            c.resumed = 0
        per = messages // threads
        errors = []

        def work(c):
            try:
                for _ in range(per):
                    c.one()
            except Exception as e:  # report, do not hide
                errors.append(e)

        before, t0 = cpu_seconds(proc.pid), time.monotonic()
        ts = [threading.Thread(target=work, args=(c,)) for c in clients]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=600)
        after, wall = cpu_seconds(proc.pid), time.monotonic() - t0
        if errors or any(t.is_alive() for t in ts):
            raise RuntimeError(f"client errors: {errors[:3]}")
        sent = per * threads
        return (after - before) / sent * 1e6, sent / wall, sum(c.resumed for c in clients)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", action="append", required=True, metavar="LABEL=PATH [ARGS]",
                    help="a server binary and extra arguments, e.g. 'tokio=PATH --async'")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="plain,fresh,resume",
                    help="comma-separated: plain (no TLS), fresh (a full handshake per message), "
                         "resume (returning clients offer their session)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_cert(tmp)
        modes = args.modes.split(",")
        results = {}
        floors = []
        for r in range(args.rounds):
            floors.append(floor_us(2))
            for spec in args.server:
                label, path = spec.split("=", 1)
                for mode in modes:
                    us, rate, resumed = run(path, cert, key, args.messages, args.threads, mode)
                    results.setdefault((label, mode), []).append((us, rate, resumed))
                    print(f"round {r + 1} {label} {mode}: "
                          f"{us:.0f} us/msg server CPU, {rate:.0f} msg/s, resumed {resumed}", flush=True)
        sign = statistics.median(f[0] for f in floors)
        x = statistics.median(f[1] for f in floors)
        floor = sign + x
        print(f"\nfloor (openssl speed, median of {args.rounds}): RSA-2048 sign {sign:.0f} us + X25519 {x:.0f} us = {floor:.0f} us")
        plain = {label: statistics.median(r[0] for r in rs) for (label, mode), rs in results.items() if mode == "plain"}
        for (label, mode), rs in results.items():
            us = statistics.median(r[0] for r in rs)
            tls_only = f", TLS part {us - plain[label]:.0f} us = {(us - plain[label]) / floor:.2f}x floor" \
                if label in plain and mode != "plain" else ""
            print(f"{label:>10} {mode:>6}: {us:.0f} us/msg server CPU "
                  f"= {us / floor:.2f}x floor{tls_only}; {statistics.median(r[1] for r in rs):.0f} msg/s; "
                  f"resumed {min(r[2] for r in rs)}+ of {args.messages - args.messages % args.threads}")


if __name__ == "__main__":
    main()
