#!/usr/bin/env bash
# Builds tls-crypto, makes a throwaway RSA-2048 key, and runs it and `openssl speed`
# alternately (ROUNDS times, default 3), so that the providers' costs and the floor of
# bench/tls_handshake.py come from the same minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
rounds=${1:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$here" && CARGO_TARGET_DIR="$target" cargo build --release --quiet)
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/key.pem" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$work/key.pem" -outform DER -out "$work/key.der"
for _ in $(seq "$rounds"); do
    "$target/release/tls-crypto" "$work/key.der" 1000
    openssl speed -seconds 1 rsa2048 ecdhx25519 2>/dev/null | grep -E '^rsa 2048|X25519' \
        | sed 's/^/openssl: /'
done
