#!/usr/bin/env bash
# A new crate that depends on smtp-core, with a lockfile resolved fresh (the newest
# versions of everything, as `cargo add` gives a new user), builds without one warning
# from smtp-core, with each crypto provider feature a user can pick.
#
# Usage: tests/rust/fresh-dependent.sh [FEATURE-SET...]
#   each FEATURE-SET is "default" or a comma-separated list used with
#   default-features = false (default: "default").
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
# The dependent's own build directory under the shared one: its dependencies that match
# the workspace's versions are already built there.
export CARGO_TARGET_DIR=$target/fresh-dependent
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(default)
status=0
for set in "${sets[@]}"; do
    if [ "$set" = default ]; then
        dep="smtp-core = { path = \"$repo/smtp-core\" }"
    else
        feats=$(printf '"%s",' ${set//,/ })
        dep="smtp-core = { path = \"$repo/smtp-core\", default-features = false, features = [${feats%,}] }"
    fi
    rm -rf "$scratch/app"
    mkdir -p "$scratch/app/src"
    cat > "$scratch/app/Cargo.toml" <<TOML
[package]
name = "smtpx-fresh-dependent"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$dep

[workspace]
TOML
    cat > "$scratch/app/src/main.rs" <<'RS'
fn main() {
    let config = smtp_core::tls::client_config(&smtp_core::tls::TlsClientOptions::default())
        .expect("a client TLS configuration");
    println!("{} {}", smtp_core::tls::PROVIDER_NAME, config.enable_sni);
}
RS
    (cd "$scratch/app" && cargo generate-lockfile -q)
    log="$scratch/build-$set.log"
    if ! (cd "$scratch/app" && cargo build --color never >"$log" 2>&1); then
        cat "$log"
        echo "fresh-dependent [$set]: the build failed"
        exit 1
    fi
    out=$(cd "$scratch/app" && cargo run -q --color never 2>/dev/null)
    if grep -E '^warning' "$log"; then
        echo "fresh-dependent [$set]: the build printed warnings (above)"
        status=1
    else
        echo "fresh-dependent [$set]: no warning; provider and SNI: $out"
    fi
done
exit $status
