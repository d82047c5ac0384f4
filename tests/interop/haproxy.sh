#!/usr/bin/env bash
# `make interop`: a real HAProxy (Debian's haproxy) in front of smtp-server
# --proxy-protocol, with send-proxy (v1) and send-proxy-v2, in clear, with STARTTLS and
# with implicit TLS. The client connects from 127.0.0.2, HAProxy connects onwards from
# 127.0.0.3 (the only address smtp-server trusts): the stored message's Received header
# and the server's log (what its handler was told) must name 127.0.0.2, never 127.0.0.3.
# HAProxy's health checks send a LOCAL header (v2), served with the real address.
# Every process is started here on loopback ports picked here, and stopped by its PID.
set -euo pipefail

examples=${SMTPX_EXAMPLES:-target/release/examples}
work=$(mktemp -d)
# shellcheck source=tests/interop/common.sh
source "$(dirname "$0")/common.sh"
cleanup() {
    stop_started
    rm -rf "$work"
}
trap cleanup EXIT

make_cert "$work"
start_smtp_server proxied --proxy-protocol --proxy-trusted 127.0.0.3/32 \
    --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --tls-listen 127.0.0.1:0
smtp_port=$server_port
tls_port=$(sed -n 's/^implicit TLS on .*://p' "$work/proxied.err")
[[ -n $tls_port ]] || { echo "no implicit-TLS port"; exit 1; }

v1_port=$(free_port)
v2_port=$(free_port)
tls_front=$(free_port)
cat >"$work/haproxy.cfg" <<EOF
global
    log stderr format short local0 info
defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind 127.0.0.1:$v1_port
    default_backend smtp_v1
backend smtp_v1
    server s 127.0.0.1:$smtp_port send-proxy source 127.0.0.3
frontend v2
    bind 127.0.0.1:$v2_port
    default_backend smtp_v2
backend smtp_v2
    server s 127.0.0.1:$smtp_port send-proxy-v2 source 127.0.0.3 check check-send-proxy inter 500ms
frontend implicit_tls
    bind 127.0.0.1:$tls_front
    default_backend smtps_v2
backend smtps_v2
    server s 127.0.0.1:$tls_port send-proxy-v2 source 127.0.0.3
EOF
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.out" 2>&1 &
pids+=($!)
wait_port "$v1_port" && wait_port "$v2_port" && wait_port "$tls_front" \
    || { echo "haproxy did not start"; cat "$work/haproxy.out"; exit 1; }
echo "haproxy in front of smtp-server on 127.0.0.1:$smtp_port (implicit TLS $tls_port)"

# send PORT MODE SUBJECT: one message from 127.0.0.2 through HAProxy (mode plain,
# starttls or tls).
send() {
    timeout 60 python3 - "$1" "$2" "$3" <<'EOF'
import smtplib, ssl, sys
port, mode, subject = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE  # a certificate made for this run only
source = ("127.0.0.2", 0)
if mode == "tls":
    client = smtplib.SMTP_SSL("127.0.0.1", port, source_address=source, context=context, timeout=30)
else:
    client = smtplib.SMTP("127.0.0.1", port, source_address=source, timeout=30)
client.ehlo("client.test")
if mode == "starttls":
    client.starttls(context=context)
    client.ehlo("client.test")
client.sendmail("alice@example.org", ["bob@example.net"], f"Subject: {subject}\r\n\r\nhello\r\n")
client.quit()
EOF
}

# client_named SUBJECT COUNT: once COUNT messages are stored, the file of the message with that subject names the client.
client_named() {
    local file
    wait_files "$work/proxied/maildir/new" "$2" || return 1
    file=$(grep -l "^Subject: $1" "$work"/proxied/maildir/new/*) || return 1
    grep -q "^Received: from client.test (127.0.0.2)" "$file" && ! grep -q "127.0.0.3" "$file"
}

check "send-proxy (v1): a message through HAProxy" send "$v1_port" plain via-v1
check "  its Received header names the client, not HAProxy" client_named via-v1 1
check "send-proxy-v2: a message through HAProxy" send "$v2_port" plain via-v2
check "  its Received header names the client, not HAProxy" client_named via-v2 2
check "send-proxy-v2 + STARTTLS: a message through HAProxy" send "$v2_port" starttls via-starttls
check "  its Received header names the client, not HAProxy" client_named via-starttls 3
check "send-proxy-v2 + implicit TLS: a message through HAProxy" send "$tls_front" tls via-tls
check "  its Received header names the client, not HAProxy" client_named via-tls 4

clients_seen() {
    # Four connections given to the handler as 127.0.0.2, each via HAProxy's 127.0.0.3.
    [[ $(grep -c "peer=127.0.0.2:[0-9]* connected.* via 127.0.0.3:" "$work/proxied.err") -eq 4 ]]
}
check "the handler was told the client's address (4 connections)" clients_seen

health_checks() {
    # LOCAL (v2 health checks): served with the real peer, HAProxy's own address.
    for _ in $(seq 50); do
        grep -q "peer=127.0.0.3:[0-9]* connected via 127.0.0.3:" "$work/proxied.err" && return 0
        sleep 0.1
    done
    return 1
}
check "HAProxy's health checks (LOCAL) are served with the real address" health_checks

direct() {
    # A client reaching smtp-server directly (not from 127.0.0.3) gets no greeting.
    timeout 10 python3 - "$smtp_port" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"PROXY TCP4 192.0.2.1 127.0.0.1 1 25\r\n")
sys.exit(0 if s.recv(100) == b"" else 1)
EOF
}
check "a client not from the trusted network is closed without a greeting" direct

report "interop haproxy"
