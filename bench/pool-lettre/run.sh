#!/usr/bin/env bash
# The pool benchmark: starts Postfix's smtp-sink on a free loopback port, runs
# pool-lettre against it (smtpx's SmtpPool and lettre's pooled SmtpTransport, alternating,
# in one run), stops the sink by PID. Arguments go to pool-lettre, e.g.
#   bench/pool-lettre/run.sh --messages 100000 --senders 8 --pool 8 --rounds 3
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
sink_pid=""
cleanup() {
    [[ -n $sink_pid ]] && kill "$sink_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

command -v smtp-sink >/dev/null || { echo "smtp-sink is missing (Debian: apt-get install postfix)"; exit 1; }
(cd "$here" && CARGO_TARGET_DIR="$root/target" cargo build --release --quiet)
gcc -shared -fPIC -O2 -o "$work/nodelay.so" "$here/nodelay.c" -ldl

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=()
[[ $(id -u) -eq 0 ]] && user=(-u nobody)
smtp-sink "${user[@]}" 127.0.0.1:"$port" 1024 &
sink_pid=$!
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), timeout=1)" 2>/dev/null && break
    sleep 0.1
done
LD_PRELOAD="$work/nodelay.so" "$root/target/release/pool-lettre" "127.0.0.1:$port" "$@"
