#!/usr/bin/env bash
# `make c-install-test`: the README's C quick start, built outside the repository
# against a scratch `make install` (PREFIX given as $1, the SONAME version as $2), the
# way users build it: pkg-config shared, pkg-config static (smtpx-static.pc), and a
# CMake project with find_package(smtpx) (shared and static targets). Each binary's
# dynamic section is checked with readelf, and each must deliver into a Maildir.
set -euo pipefail

prefix=$1
version=$2
cc=${CC:-gcc}
warnings=(-std=c99 -Wall -Wextra -Wpedantic -Werror)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sed -n '/<!-- c-quick-start: begin -->/,/<!-- c-quick-start: end -->/p' "$repo/README.md" |
    sed '1,2d;$d' | sed '$d' > "$work/quickstart.c"
grep -q smtpx_client_send "$work/quickstart.c" || { echo "README.md lacks the C quick start"; exit 1; }

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
cd "$work"

# Links libsmtpx.so.VERSION (and so needs it at run time), or not at all.
needs_so() { readelf -d "$1" | grep -q "NEEDED.*\[libsmtpx\.so\.$version\]"; }
no_smtpx() { ! readelf -d "$1" | grep -q libsmtpx; }
# Runs a quick start in a fresh folder; it must print the 250 and deliver one message.
run() {
    local dir
    dir=$(mktemp -d "$work/run.XXXX")
    (cd "$dir" && "$@" | grep '^250 ' && test "$(ls maildir/new | wc -l)" = 1)
}

echo "pkg-config --cflags --libs smtpx: $(pkg-config --cflags --libs smtpx)"
"$cc" "${warnings[@]}" quickstart.c $(pkg-config --cflags --libs smtpx) -o quickstart
needs_so quickstart
LD_LIBRARY_PATH=$(pkg-config --variable=libdir smtpx) run "$work/quickstart"

echo "pkg-config --cflags --libs smtpx-static: $(pkg-config --cflags --libs smtpx-static)"
"$cc" "${warnings[@]}" quickstart.c $(pkg-config --cflags --libs smtpx-static) -o quickstart-static
no_smtpx quickstart-static
run "$work/quickstart-static"

# The run-time note of the README: an rpath instead of LD_LIBRARY_PATH.
"$cc" "${warnings[@]}" quickstart.c $(pkg-config --cflags --libs smtpx) \
    -Wl,-rpath,"$(pkg-config --variable=libdir smtpx)" -o quickstart-rpath
needs_so quickstart-rpath
run "$work/quickstart-rpath"

if ! command -v cmake >/dev/null; then
    echo "cmake not found (Debian: apt-get install cmake)"
    exit 1
fi
cp "$repo/tests/c/cmake-consumer/CMakeLists.txt" .
cmake -S . -B build -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" >/dev/null
cmake --build build >/dev/null
needs_so build/quickstart
no_smtpx build/quickstart_static
run "$work/build/quickstart"
run "$work/build/quickstart_static"
# SMTPX_STATIC=ON makes smtpx::smtpx itself static.
cmake -S . -B build-static -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DSMTPX_STATIC=ON >/dev/null
cmake --build build-static >/dev/null
no_smtpx build-static/quickstart
run "$work/build-static/quickstart"
echo "c-install-test: the README's C quick start built (pkg-config and CMake, shared and static) and ran against the installed library"
