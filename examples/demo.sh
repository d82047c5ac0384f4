#!/usr/bin/env bash
# `make demo`: a real smtpx server on a free local port with its Maildir under ./demo/,
# a message sent to it with smtpx's client, the delivered file shown, the server stopped.
set -euo pipefail

examples=${SMTPX_EXAMPLES:-target/release/examples}
demo_dir=demo
rm -rf "$demo_dir"
mkdir -p "$demo_dir"

"$examples/smtp-server" --listen 127.0.0.1:0 --maildir "$demo_dir/maildir" --hostname mx.demo.test \
    >"$demo_dir/server.out" 2>"$demo_dir/server.log" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    grep -q '^listening on ' "$demo_dir/server.out" && break
    sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$demo_dir/server.out")
[[ -n $addr ]] || { echo "the server did not start:"; cat "$demo_dir/server.log"; exit 1; }
echo "== smtp-server: listening on $addr, Maildir in $demo_dir/maildir"

cat >"$demo_dir/message.eml" <<'MSG'
From: Alice <alice@example.org>
To: Bob <bob@example.net>
Subject: Hello from smtpx

Hi Bob,

this message went through a real socket into a real Maildir.
.A line that starts with a dot survives the trip.
MSG

echo "== smtp-send --server $addr --from alice@example.org --to bob@example.net carol@example.net $demo_dir/message.eml"
"$examples/smtp-send" --server "$addr" --from alice@example.org --to bob@example.net carol@example.net \
    "$demo_dir/message.eml"

# The same through the Python binding, when the repository's virtualenv has it
# (make test-python or make python-install builds it).
python=${SMTPX_PYTHON:-.venv/bin/python}
if [[ -x $python ]] && "$python" -c 'import smtpx' 2>/dev/null; then
    echo "== python examples/python/send.py $demo_dir/message.eml --server $addr --from alice@example.org --to bob@example.net"
    "$python" examples/python/send.py "$demo_dir/message.eml" --server "$addr" --from alice@example.org \
        --to bob@example.net
else
    echo "== skipping examples/python/send.py: $python with smtpx installed not found (run make python-install)"
fi

# The same through the C API (examples/c/send.c, built by make c-examples), from stdin.
c_examples=${SMTPX_C_EXAMPLES:-target/c-tests/examples}
if [[ -x $c_examples/send ]]; then
    echo "== examples/c/send $addr alice@example.org bob@example.net < $demo_dir/message.eml"
    "$c_examples/send" "$addr" alice@example.org bob@example.net <"$demo_dir/message.eml"
else
    echo "== skipping examples/c/send: $c_examples/send not found (run make c-examples)"
fi

file=$(find "$demo_dir/maildir/new" -type f | head -n 1)
echo "== delivered: $file"
cat "$file"

kill -TERM "$server_pid"
wait "$server_pid"
trap - EXIT
echo "== smtp-server stopped cleanly"
