#!/usr/bin/env bash
# `make interop`: smtpx against peers nobody here wrote, from Debian's packages: Postfix's
# smtp-source and smtp-sink, swaks and curl. Prints "interop: N passed, M failed".
set -euo pipefail

examples=${SMTPX_EXAMPLES:-target/release/examples}
work=$(mktemp -d)
server_pid=""
sink_pid=""
cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
    [[ -n $sink_pid ]] && kill "$sink_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
check() { # check NAME COMMAND...: run, count, report
    local name=$1
    shift
    if "$@"; then
        echo "ok   $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        failed=$((failed + 1))
    fi
}

delivered() { find "$work/maildir/new" -type f | wc -l; }

wait_for_files() { # wait_for_files COUNT: up to 30 s
    for _ in $(seq 300); do
        [[ $(delivered) -ge $1 ]] && break
        sleep 0.1
    done
    [[ $(delivered) -eq $1 ]]
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$examples/smtp-server" --listen 127.0.0.1:0 --maildir "$work/maildir" --hostname mx.test \
    >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 100); do
    grep -q '^listening on ' "$work/server.out" 2>/dev/null && break
    sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$work/server.out")
[[ -n $addr ]] || { echo "smtp-server did not start"; cat "$work/server.err"; exit 1; }
port=${addr##*:}
echo "smtp-server on $addr"

source_run() {
    timeout 300 smtp-source -d -s 5 -m 2500 -l 1024 -f alice@example.org -t bob@example.net "127.0.0.1:$port" \
        && wait_for_files 2500
}
check "smtp-source: 5 sessions x 500 messages, 2500 on disk" source_run

swaks_run() {
    timeout 60 swaks --silent 1 --server "127.0.0.1:$port" --from alice@example.org --to bob@example.net \
        --header "Subject: from swaks" --body "hello from swaks" \
        && wait_for_files 2501 \
        && grep -l "Subject: from swaks" "$work"/maildir/new/* >/dev/null
}
check "swaks delivers a message" swaks_run

curl_run() {
    printf 'From: alice@example.org\r\nTo: bob@example.net\r\nSubject: from curl\r\n\r\nhello from curl\r\n' >"$work/curl.eml"
    timeout 60 curl --silent --show-error --url "smtp://127.0.0.1:$port" --mail-from alice@example.org \
        --mail-rcpt bob@example.net --upload-file "$work/curl.eml" \
        && wait_for_files 2502 \
        && grep -l "Subject: from curl" "$work"/maildir/new/* >/dev/null
}
check "curl delivers a message" curl_run

sink_run() {
    local sink_port
    sink_port=$(free_port)
    # As root, smtp-sink must drop privileges to some user.
    smtp-sink -u nobody "127.0.0.1:$sink_port" 100 >"$work/sink.out" 2>&1 &
    sink_pid=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$sink_port") 2>/dev/null && break
        sleep 0.1
    done
    printf 'Subject: to smtp-sink\r\n\r\nhello\r\n' >"$work/sink.eml"
    timeout 60 "$examples/smtp-send" --server "127.0.0.1:$sink_port" --from alice@example.org \
        --to bob@example.net carol@example.net --count 10 "$work/sink.eml" >"$work/send.out" \
        && [[ $(grep -c 'final: 250' "$work/send.out") -eq 10 ]]
}
check "smtp-send delivers 10 messages to smtp-sink over one connection" sink_run

stop_run() {
    kill -TERM "$server_pid"
    local rc=0
    wait "$server_pid" || rc=$?
    server_pid=""
    [[ $rc -eq 0 ]] && [[ -z $(find "$work/maildir/tmp" -type f) ]]
}
check "smtp-server stops cleanly on SIGTERM with tmp/ empty" stop_run

echo "interop: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
