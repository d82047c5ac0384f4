# Helpers of the `make interop` scripts that start their own peers (haproxy.sh, exim.sh):
# sourced, not run. Each script sets `work` (its private directory) first.

passed=0
failed=0
pids=()

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

# Stops every process the script started, by the PIDs it recorded.
stop_started() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT: until something listens on 127.0.0.1:PORT (up to 10 s).
wait_port() {
    python3 - "$1" <<'EOF'
import socket, sys, time
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
}

# wait_files DIR COUNT: until DIR holds COUNT files (up to 30 s).
wait_files() {
    for _ in $(seq 300); do
        [[ $(find "$1" -type f 2>/dev/null | wc -l) -ge $2 ]] && return 0
        sleep 0.1
    done
    return 1
}

# start_smtp_server NAME FLAGS...: smtp-server on a free port with a Maildir under
# $work/NAME; sets server_port (and records the PID).
start_smtp_server() {
    local name=$1
    shift
    SMTPX_LOG=info "$examples/smtp-server" --listen 127.0.0.1:0 --maildir "$work/$name/maildir" \
        --hostname mx.test "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
    for _ in $(seq 100); do
        grep -q '^listening on ' "$work/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    local addr
    addr=$(sed -n 's/^listening on //p' "$work/$name.out")
    [[ -n $addr ]] || { echo "smtp-server did not start"; cat "$work/$name.err"; return 1; }
    server_port=${addr##*:}
}

# make_cert DIR: a self-signed certificate for localhost, made now, never kept.
make_cert() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
}

report() { # report NAME: the summary line; fails when anything failed
    echo "$1: $passed passed, $failed failed"
    [[ $failed -eq 0 ]]
}
