#!/usr/bin/env bash
# `make interop`: Exim (Debian's exim4-daemon-light) both ways, without installing it
# (Debian's Exim and Postfix packages conflict, and Postfix's tools must stay): the
# packages are downloaded with `apt-get download` into a cache under the build tree,
# unpacked with `dpkg -x` into a private directory, and the binary runs with its own
# configuration (-C), spool, log and PID file, as the system user it expects
# (Debian-exim, created when missing). Its library dependencies are installed when
# missing (they are plain libraries, no conflict).
#
# - Exim delivers into smtp-server over STARTTLS (a manualroute router and an smtp
#   transport with port, allow_localhost and hosts_require_tls): the message must be in
#   smtp-server's Maildir, received with TLS.
# - smtp-send delivers into the Exim daemon, in clear and with STARTTLS: the message must
#   be in the Maildir Exim delivers local.test to.
# Every process is started here on loopback ports picked here, and stopped by its PID.
set -euo pipefail

examples=${SMTPX_EXAMPLES:-target/release/examples}
cache=${SMTPX_INTEROP_CACHE:-target/interop-cache}/exim
work=$(mktemp -d)
# shellcheck source=tests/interop/common.sh
source "$(dirname "$0")/common.sh"
exim_pid=""
cleanup() {
    [[ -n $exim_pid ]] && pids+=("$exim_pid")
    stop_started
    if [[ -n ${SMTPX_INTEROP_KEEP:-} ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The packages, once.
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
if ! ls "$cache"/exim4-daemon-light_*.deb >/dev/null 2>&1; then
    (cd "$cache" && apt-get download exim4-base exim4-daemon-light)
fi
missing=$(apt-cache depends exim4-daemon-light | awk '/Depends: lib/ {print $2}' \
    | while read -r lib; do dpkg -s "$lib" >/dev/null 2>&1 || echo "$lib"; done)
if [[ -n $missing ]]; then
    echo "installing the libraries Exim needs: $missing"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends $missing
fi
getent passwd Debian-exim >/dev/null \
    || useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin Debian-exim

# Exim runs as Debian-exim: its directories must be reachable by it.
chmod 755 "$work"
root="$work/exim-root"
for deb in "$cache"/exim4-base_*.deb "$cache"/exim4-daemon-light_*.deb; do
    dpkg -x "$deb" "$root"
done
exim="$root/usr/sbin/exim4"
mkdir -p "$work/exim/spool" "$work/exim/log" "$work/exim/maildir"
make_cert "$work/exim"
chown -R Debian-exim:Debian-exim "$work/exim"

start_smtp_server smtpx --tls-cert "$work/exim/cert.pem" --tls-key "$work/exim/key.pem"
smtp_port=$server_port
exim_port=$(free_port)

cat >"$work/exim/exim.conf" <<EOF
exim_path = $exim
spool_directory = $work/exim/spool
log_file_path = $work/exim/log/%slog
pid_file_path = $work/exim/exim.pid
daemon_smtp_ports = $exim_port
local_interfaces = 127.0.0.1
primary_hostname = exim.test
exim_user = Debian-exim
exim_group = Debian-exim
never_users = root
keep_environment =
host_lookup =
rfc1413_hosts =
domainlist local_domains = local.test
tls_advertise_hosts = *
tls_certificate = $work/exim/cert.pem
tls_privatekey = $work/exim/key.pem
acl_smtp_rcpt = check_rcpt

begin acl
check_rcpt:
  accept hosts = 127.0.0.1
  deny

begin routers
to_smtpx:
  driver = manualroute
  domains = relay.test
  route_list = * 127.0.0.1
  self = send
  transport = to_smtpx
local_maildir:
  driver = accept
  domains = +local_domains
  transport = local_maildir

begin transports
to_smtpx:
  driver = smtp
  port = $smtp_port
  allow_localhost
  hosts_require_tls = *
local_maildir:
  driver = appendfile
  directory = $work/exim/maildir
  maildir_format
  create_directory
  user = Debian-exim
  group = Debian-exim
  return_path_add
  envelope_to_add

begin retry
* * F,1m,5s
EOF

"$exim" -C "$work/exim/exim.conf" -bd -oP "$work/exim/exim.pid"
for _ in $(seq 100); do
    [[ -s $work/exim/exim.pid ]] && break
    sleep 0.1
done
exim_pid=$(cat "$work/exim/exim.pid" 2>/dev/null || true)
[[ -n $exim_pid ]] && wait_port "$exim_port" \
    || { echo "exim did not start"; cat "$work"/exim/log/* 2>/dev/null; exit 1; }
echo "exim $("$exim" -C "$work/exim/exim.conf" -bV 2>/dev/null | sed -n '1s/ #.*//p') on 127.0.0.1:$exim_port (pid $exim_pid), smtp-server on 127.0.0.1:$smtp_port"

message() { printf 'From: alice@example.org\r\nSubject: %s\r\n\r\nhello through exim\r\n' "$1" >"$work/$1.eml"; }

exim_into_smtpx() {
    message exim-to-smtpx
    timeout 60 "$examples/smtp-send" --server "127.0.0.1:$exim_port" --from alice@example.org \
        --to bob@relay.test "$work/exim-to-smtpx.eml" >/dev/null \
        && wait_files "$work/smtpx/maildir/new" 1 \
        && grep -q "^Subject: exim-to-smtpx" "$work"/smtpx/maildir/new/* \
        && grep -q "^Received: from exim.test (127.0.0.1)" "$work"/smtpx/maildir/new/* \
        && grep -q "by mx.test (smtpx) with ESMTPS id" "$work"/smtpx/maildir/new/*
}
check "Exim delivers into smtp-server over STARTTLS" exim_into_smtpx

exim_used_tls() {
    # Exim's own log: the delivery to smtp-server, encrypted (X=TLS...).
    # K: with CHUNKING (BDAT), which smtp-server offers.
    grep -q "=> bob@relay.test R=to_smtpx T=to_smtpx .*X=TLS.* K C=\"250 " "$work"/exim/log/mainlog
}
check "  Exim's log shows the delivery encrypted, with CHUNKING" exim_used_tls

smtp_send_into_exim() { # smtp-send FLAGS into Exim, for a local.test recipient
    local subject=$1 count=$2
    shift 2
    message "$subject"
    timeout 60 "$examples/smtp-send" --server "127.0.0.1:$exim_port" --from alice@example.org \
        --to carol@local.test "$@" "$work/$subject.eml" >/dev/null \
        && wait_files "$work/exim/maildir/new" "$count" \
        && grep -l "^Subject: $subject" "$work"/exim/maildir/new/* >/dev/null \
        && grep -q "^Envelope-to: carol@local.test" "$(grep -l "^Subject: $subject" "$work"/exim/maildir/new/*)"
}
check "smtp-send delivers into Exim" smtp_send_into_exim send-to-exim 1
check "smtp-send delivers into Exim over STARTTLS" smtp_send_into_exim send-to-exim-tls 2 --starttls --insecure
exim_saw_tls() { grep -q "<= alice@example.org .*P=esmtps X=TLS" "$work"/exim/log/mainlog; }
check "  Exim's log shows that one received encrypted" exim_saw_tls

report "interop exim"
