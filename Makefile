# smtpx: the build and test front door (GNU make).
#
#   make demo    a real server on a free local port, a message sent to it, the
#                delivered Maildir file shown (then the in-memory transcript)
#   make test    every test that needs only cargo, a C compiler, valgrind and Python
#                packages it installs itself (into .venv)
#   make interop the Debian-packaged peers (Postfix smtp-source/smtp-sink, swaks, curl,
#                HAProxy), installed with apt-get when missing, and Exim (downloaded
#                into target/interop-cache and run from there, not installed)
#   make wheel   the distributable Python packages: an abi3 manylinux wheel and an sdist
#                (in target/wheels/dist); make wheel-test installs the wheel into a fresh
#                virtualenv without cargo on PATH and runs the Python quick start
#   make bench   engine benchmarks (criterion)
#   make fuzz    how to run the fuzz targets (not run by make test or CI)
#   make clean   remove build outputs (make distclean also removes .venv)
#
# Variables you may override: CARGO, CC, CXX, PYTHON, VALGRIND, PIP_TIMEOUT, VENV.
# Cargo's CARGO_TARGET_DIR is honoured.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# The test steps share cargo's build directory and print long logs: run them in order.
.NOTPARALLEL:

CARGO ?= cargo
PYTHON ?= python3
VALGRIND ?= valgrind
# Seconds pip waits on the network before giving up (per connection attempt).
PIP_TIMEOUT ?= 60
VENV ?= .venv
# The sanitizer flags below are gcc's; make's built-in default would be "cc".
ifeq ($(origin CC),default)
CC := gcc
endif
ifeq ($(origin CXX),default)
CXX := g++
endif

TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),target)
LIB_DIR := $(TARGET_DIR)/release
C_OUT := $(TARGET_DIR)/c-tests
# Cargo.toml's workspace.package.version, for the versioned SONAME.
VERSION := $(shell sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)

# What a program linking libsmtpx.a also needs (rustc --print native-static-libs).
STATIC_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
C_WARNINGS := -Wall -Wextra -Wpedantic -Werror
C_FLAGS := -std=c99 $(C_WARNINGS) -g -Iinclude
SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

VENV_PY := $(VENV)/bin/python
PIP := $(VENV_PY) -m pip --timeout $(PIP_TIMEOUT) --disable-pip-version-check
PY_TEST_DEPS := 'maturin>=1.16,<2' 'pytest>=8,<10' 'pytest-timeout>=2.3,<3' \
	'aiosmtpd>=1.4,<2' 'aiosmtplib>=3,<6' 'trustme>=1.1,<2' 'mypy>=1.10,<2' \
	'hypothesis>=6,<7'
EXAMPLES_DIR := $(TARGET_DIR)/release/examples

.PHONY: wheel wheel-test help demo examples interop test-interop-python test test-rust test-c c-lib c-header c-symbols c-cert c-asan c-valgrind \
	c-shared c-examples c-smtplib c-install-test c-client-loop install test-python python-env python-install python-typecheck bench bench-pool fuzz clean distclean

help:
	@sed -n '3,15s/^# \{0,1\}//p' Makefile

# With the tokio feature, so that smtp-server's --async (the async driver) is available to
# the tests and bench/peers; without it the example still builds and refuses --async.
examples:
	$(CARGO) build --release -p smtp-core --examples --features tokio

demo: examples c-examples
	SMTPX_EXAMPLES=$(EXAMPLES_DIR) SMTPX_C_EXAMPLES=$(C_EXAMPLES_DIR) examples/demo.sh
	@echo
	@echo "== the engine alone: a client and a server session talking in memory"
	$(EXAMPLES_DIR)/transcript

test: test-rust test-c test-python wheel-test test-interop-python
	@echo "make test: all passed"

## Interop with Python peers: smtplib and aiosmtplib against smtp-server, smtp-send
## against aiosmtpd (the example programs, real sockets, real TLS).
test-interop-python: examples python-env
	SMTPX_EXAMPLES=$(abspath $(EXAMPLES_DIR)) $(VENV_PY) -m pytest tests/interop

## Interop with Debian-packaged peers (needs root for apt-get when they are missing), and
## the relay into a private Postfix smtpd and Dovecot LMTP (tests/interop-relay).
interop: examples python-env
	@missing=""; \
	command -v smtp-source >/dev/null || missing="$$missing postfix"; \
	command -v dovecot >/dev/null || missing="$$missing dovecot-core"; \
	test -x /usr/lib/dovecot/lmtp || missing="$$missing dovecot-lmtpd"; \
	command -v swaks >/dev/null || missing="$$missing swaks"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends $$missing; \
	fi
	SMTPX_EXAMPLES=$(EXAMPLES_DIR) tests/interop/postfix-tools.sh
	SMTPX_EXAMPLES=$(EXAMPLES_DIR) tests/interop/haproxy.sh
	SMTPX_EXAMPLES=$(EXAMPLES_DIR) SMTPX_INTEROP_CACHE=$(TARGET_DIR)/interop-cache tests/interop/exim.sh
	SMTPX_EXAMPLES=$(abspath $(EXAMPLES_DIR)) $(VENV_PY) -m pytest tests/interop-relay

## Rust: the core's tests with the async drivers (feature tokio; the README's quick
## starts run as doctests), a fresh crate depending on the core builds without warnings,
## the core without the feature, and smtp-ffi's tests
## (including the header check).
test-rust:
	$(CARGO) test -p smtp-core --features tokio
	tests/rust/fresh-dependent.sh default
	$(CARGO) check -p smtp-core --all-targets
	$(CARGO) test -p smtp-ffi

## C: the header compiles as C99 and C++; the C tests (the basics, client and server
## against each other with STARTTLS, the sans-I/O session and connection) run under ASan+UBSan and under
## valgrind, against libsmtpx.a; the shared library has its SONAME and only smtpx_*; the
## C examples build, and Python's smtplib drives them (built with ASan+UBSan).
test-c: c-header c-symbols c-asan c-valgrind c-shared c-examples c-smtplib c-install-test c-client-loop

c-lib:
	$(CARGO) build --release -p smtp-ffi
	@mkdir -p $(C_OUT)

c-header: c-lib
	$(CC) $(C_FLAGS) -c tests/c/header_compile.c -o $(C_OUT)/header_compile.o
	$(CXX) -x c++ $(C_WARNINGS) -Iinclude -c tests/c/header_compile.c -o $(C_OUT)/header_compile_cxx.o

c-symbols: c-lib
	@nm -D --defined-only $(LIB_DIR)/libsmtpx.so | awk '{print $$3}' > $(C_OUT)/libsmtpx.symbols
	@if grep -v '^smtpx_' $(C_OUT)/libsmtpx.symbols; then \
	  echo "libsmtpx.so exports the symbols above, which lack the smtpx_ prefix"; exit 1; fi
	@echo "libsmtpx.so exports only smtpx_* symbols"

# The certificate of the C round-trip tests: self-signed for "localhost", made afresh on
# each run (valid one day), never checked in.
C_TLS_DIR := $(C_OUT)/tls
C_CERT_ARGS := $(C_TLS_DIR)/cert.pem $(C_TLS_DIR)/key.pem
# The C tests make their scratch directories here, inside the build tree.
C_TMP := $(abspath $(C_OUT))/tmp
ASAN_RUN := TMPDIR=$(C_TMP) ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
VALGRIND_RUN := TMPDIR=$(C_TMP) $(VALGRIND) --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
  --suppressions=tests/c/valgrind.supp

c-cert: c-lib
	@command -v openssl >/dev/null || { echo "openssl not found (Debian: apt-get install openssl)"; exit 1; }
	@mkdir -p $(C_TLS_DIR) $(C_TMP)
	@openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 \
	  -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE \
	  -keyout $(C_TLS_DIR)/key.pem -out $(C_TLS_DIR)/cert.pem 2>/dev/null
	@echo "made a self-signed test certificate in $(C_TLS_DIR)"
	@cd $(C_TLS_DIR) && \
	openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=smtpx test CA" -days 1 \
	  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
	  -keyout ca-key.pem -out ca.pem 2>/dev/null && \
	for leaf in server:localhost:1 client:client.test:1 expired:localhost:-1; do \
	  IFS=: read -r name cn days <<< "$$leaf"; \
	  printf 'subjectAltName=DNS:%s\nbasicConstraints=critical,CA:FALSE\n' "$$cn" > $$name.ext; \
	  openssl req -newkey rsa:2048 -nodes -subj "/CN=$$cn" -keyout $$name-key.pem -out $$name.csr 2>/dev/null && \
	  openssl x509 -req -in $$name.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days $$days \
	    -extfile $$name.ext -out $$name.pem 2>/dev/null || exit 1; \
	done
	@echo "made a test CA with server, client and expired certificates in $(C_TLS_DIR)"

# The C tests (tests/c/NAME.c). Each gets the test certificate's files as arguments
# (those that need no certificate ignore them).
C_TESTS := test_basics test_client_server test_session test_connection test_contracts test_tls \
	test_envelope test_server_parity test_proxy test_blocking_callbacks test_relay_pool test_tls_session \
	test_client_session test_server_call test_batch_each
# test_tls, test_tls_session and test_server_call take the folder of the test CA (see c-cert) instead.
C_TEST_ARGS_test_tls := $(C_TLS_DIR)
C_TEST_ARGS_test_tls_session := $(C_TLS_DIR)
C_TEST_ARGS_test_server_call := $(C_TLS_DIR)
c_test_args = $(or $(C_TEST_ARGS_$(1)),$(C_CERT_ARGS))

c-asan: c-lib c-cert
	$(foreach t,$(C_TESTS),$(CC) $(C_FLAGS) -O1 $(SANITIZE) tests/c/$(t).c $(LIB_DIR)/libsmtpx.a $(STATIC_LIBS) -o $(C_OUT)/$(t)_asan &&) true
	@for t in $(C_TESTS); do \
	  nm $(C_OUT)/$${t}_asan | grep __asan_init >/dev/null || { echo "$${t}_asan was built without ASan"; exit 1; }; done
	$(foreach t,$(C_TESTS),$(ASAN_RUN) $(C_OUT)/$(t)_asan $(call c_test_args,$(t)) &&) true
	@# Once more on one CPU: the server's two workers then outnumber its CPUs, and one
	@# waits in reserve until a callback blocks (smtp-core's asynchronous/spare_worker.rs).
	$(ASAN_RUN) taskset -c 0 $(C_OUT)/test_blocking_callbacks_asan $(call c_test_args,test_blocking_callbacks)

c-valgrind: c-lib c-cert
	@command -v $(VALGRIND) >/dev/null || { echo "valgrind not found (Debian: apt-get install valgrind)"; exit 1; }
	$(foreach t,$(C_TESTS),$(CC) $(C_FLAGS) -O1 tests/c/$(t).c $(LIB_DIR)/libsmtpx.a $(STATIC_LIBS) -o $(C_OUT)/$(t) &&) true
	$(foreach t,$(C_TESTS),$(VALGRIND_RUN) $(C_OUT)/$(t) $(call c_test_args,$(t)) &&) true

## The C example programs (examples/c), for make demo and for reading.
C_EXAMPLES := send server eventloop pool clientloop handler
C_EXAMPLES_DIR := $(C_OUT)/examples

c-examples: c-lib
	@mkdir -p $(C_EXAMPLES_DIR)
	$(foreach e,$(C_EXAMPLES),$(CC) $(C_FLAGS) -O1 examples/c/$(e).c $(LIB_DIR)/libsmtpx.a $(STATIC_LIBS) -o $(C_EXAMPLES_DIR)/$(e) &&) true

## The event-loop client (examples/c/clientloop.c, built with ASan+UBSan) against the
## Rust example smtp-server: five connections at once from one poll() loop, in clear and
## with STARTTLS (smtpx_tls_session); every message must land in the Maildir.
c-client-loop: examples c-lib c-cert
	@mkdir -p $(C_OUT)/examples-asan
	$(CC) $(C_FLAGS) -O1 $(SANITIZE) examples/c/clientloop.c $(LIB_DIR)/libsmtpx.a $(STATIC_LIBS) -o $(C_OUT)/examples-asan/clientloop
	@work=$$(mktemp -d); \
	$(EXAMPLES_DIR)/smtp-server --listen 127.0.0.1:0 --maildir "$$work/maildir" \
	  --tls-cert $(C_TLS_DIR)/cert.pem --tls-key $(C_TLS_DIR)/key.pem > "$$work/server.out" 2>&1 & server=$$!; \
	trap 'kill $$server 2>/dev/null; wait $$server 2>/dev/null; rm -rf "$$work"' EXIT; \
	for i in $$(seq 100); do grep -q 'listening on' "$$work/server.out" && break; sleep 0.1; done; \
	port=$$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$$work/server.out" | head -n 1); \
	test -n "$$port" || { echo "smtp-server did not start"; cat "$$work/server.out"; exit 1; }; \
	$(ASAN_RUN) timeout 120 $(C_OUT)/examples-asan/clientloop --port $$port --count 5 && \
	$(ASAN_RUN) timeout 120 $(C_OUT)/examples-asan/clientloop --port $$port --count 5 --ca $(C_TLS_DIR)/cert.pem | tee "$$work/tls.out" && \
	test "$$(grep -c '(TLS)' "$$work/tls.out")" = 5 && \
	test "$$(ls "$$work/maildir/new" | wc -l)" = 10 && \
	echo "c-client-loop: 10 messages over 10 connections from one poll() loop, 5 of them with STARTTLS"
	$(CC) $(C_FLAGS) -O1 $(SANITIZE) examples/c/eventloop.c $(LIB_DIR)/libsmtpx.a $(STATIC_LIBS) -o $(C_OUT)/examples-asan/eventloop
	@work=$$(mktemp -d); \
	$(ASAN_RUN) $(C_OUT)/examples-asan/eventloop --port 0 \
	  --tls-cert $(C_TLS_DIR)/cert.pem --tls-key $(C_TLS_DIR)/key.pem > "$$work/server.out" 2>&1 & server=$$!; \
	trap 'kill $$server 2>/dev/null || true; wait $$server 2>/dev/null || true; rm -rf "$$work"' EXIT; \
	for i in $$(seq 100); do grep -q 'listening on' "$$work/server.out" && break; sleep 0.1; done; \
	port=$$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$$work/server.out" | head -n 1); \
	test -n "$$port" || { echo "eventloop did not start"; cat "$$work/server.out"; exit 1; }; \
	$(ASAN_RUN) timeout 120 $(C_OUT)/examples-asan/clientloop --port $$port --count 5 && \
	$(ASAN_RUN) timeout 120 $(C_OUT)/examples-asan/clientloop --port $$port --count 5 --ca $(C_TLS_DIR)/cert.pem | tee "$$work/tls.out" && \
	test "$$(grep -c '(TLS)' "$$work/tls.out")" = 5 && \
	kill -TERM $$server && wait $$server && \
	test "$$(grep -c ': message ' "$$work/server.out")" = 10 && \
	echo "c-client-loop: both sides sans-I/O: eventloop took 10 messages from clientloop, 5 over STARTTLS (smtpx_tls_session on both sides)"

## Python's smtplib against the C example servers, and send.c against server.c, all built
## with ASan+UBSan (standard library only; the repository's virtualenv's Python).
c-smtplib: c-lib c-cert $(VENV)/bin/pip
	@mkdir -p $(C_OUT)/examples-asan
	$(foreach e,$(C_EXAMPLES),$(CC) $(C_FLAGS) -O1 $(SANITIZE) examples/c/$(e).c $(LIB_DIR)/libsmtpx.a $(STATIC_LIBS) -o $(C_OUT)/examples-asan/$(e) &&) true
	$(ASAN_RUN) $(VENV_PY) tests/c/smtplib_drives_c.py $(C_OUT)/examples-asan $(C_CERT_ARGS)

## Installing: the header, both libraries (the shared one under its SONAME), smtpx.pc,
## smtpx-static.pc (links libsmtpx.a by name) and the CMake package (lib/cmake/smtpx:
## find_package(smtpx) gives smtpx::smtpx, smtpx::smtpx_shared and smtpx::smtpx_static).
PREFIX ?= /usr/local
DESTDIR ?=
INSTALL_LIB := $(DESTDIR)$(PREFIX)/lib
empty :=
space := $(empty) $(empty)
# STATIC_LIBS as a CMake list: gcc_s;util;...
STATIC_LIBS_CMAKE := $(subst $(space),;,$(patsubst -l%,%,$(STATIC_LIBS)))
VERSION_MAJOR_MINOR := $(basename $(VERSION))
SUBST := sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@STATIC_LIBS@|$(STATIC_LIBS)|' \
  -e 's|@STATIC_LIBS_CMAKE@|$(STATIC_LIBS_CMAKE)|' -e 's|@VERSION_MAJOR_MINOR@|$(VERSION_MAJOR_MINOR)|'

install: c-lib
	install -d $(INSTALL_LIB)/pkgconfig $(INSTALL_LIB)/cmake/smtpx $(DESTDIR)$(PREFIX)/include
	install -m 644 include/smtpx.h $(DESTDIR)$(PREFIX)/include/smtpx.h
	install -m 644 $(LIB_DIR)/libsmtpx.a $(INSTALL_LIB)/libsmtpx.a
	install -m 755 $(LIB_DIR)/libsmtpx.so $(INSTALL_LIB)/libsmtpx.so.$(VERSION)
	ln -sf libsmtpx.so.$(VERSION) $(INSTALL_LIB)/libsmtpx.so
	$(SUBST) smtp-ffi/smtpx.pc.in > $(INSTALL_LIB)/pkgconfig/smtpx.pc
	$(SUBST) smtp-ffi/smtpx-static.pc.in > $(INSTALL_LIB)/pkgconfig/smtpx-static.pc
	$(SUBST) smtp-ffi/cmake/smtpxConfig.cmake > $(INSTALL_LIB)/cmake/smtpx/smtpxConfig.cmake
	$(SUBST) smtp-ffi/cmake/smtpxConfigVersion.cmake > $(INSTALL_LIB)/cmake/smtpx/smtpxConfigVersion.cmake

## make install into a scratch prefix, then the README's C quick start, built outside the
## repository as users build it (pkg-config shared and static, an rpath, a CMake project
## with find_package(smtpx), shared and static), must run; readelf checks each binary's
## dependency on libsmtpx.so (tests/c/install-test.sh).
c-install-test: c-lib
	@command -v pkg-config >/dev/null || { echo "pkg-config not found (Debian: apt-get install pkg-config)"; exit 1; }
	@command -v cmake >/dev/null || { echo "cmake not found (Debian: apt-get install cmake)"; exit 1; }
	rm -rf $(C_OUT)/prefix
	$(MAKE) --no-print-directory install PREFIX=$(abspath $(C_OUT))/prefix
	CC=$(CC) tests/c/install-test.sh $(abspath $(C_OUT))/prefix $(VERSION)

## The shared library, as a program linked with -lsmtpx loads it: by its SONAME.
c-shared: c-lib
	@readelf -d $(LIB_DIR)/libsmtpx.so | grep "SONAME.*\[libsmtpx\.so\.$(VERSION)\]" >/dev/null \
	  || { echo "libsmtpx.so lacks the SONAME libsmtpx.so.$(VERSION)"; exit 1; }
	@! readelf -S $(LIB_DIR)/libsmtpx.so | grep -q '\.debug_' \
	  || { echo "libsmtpx.so carries debug information (build.rs strips it unless SMTPX_SO_DEBUG=1)"; exit 1; }
	@echo "libsmtpx.so: $$(du -k $(LIB_DIR)/libsmtpx.so | cut -f1) KiB, SONAME libsmtpx.so.$(VERSION), no debug information"
	@mkdir -p $(C_OUT)/lib
	cp $(LIB_DIR)/libsmtpx.so $(C_OUT)/lib/libsmtpx.so.$(VERSION)
	ln -sf libsmtpx.so.$(VERSION) $(C_OUT)/lib/libsmtpx.so
	$(CC) $(C_FLAGS) tests/c/test_basics.c -L$(C_OUT)/lib -lsmtpx -o $(C_OUT)/test_basics_shared
	@readelf -d $(C_OUT)/test_basics_shared | grep "NEEDED.*\[libsmtpx\.so\.$(VERSION)\]" >/dev/null \
	  || { echo "test_basics_shared does not depend on libsmtpx.so.$(VERSION)"; exit 1; }
	LD_LIBRARY_PATH=$(C_OUT)/lib $(C_OUT)/test_basics_shared

## Python: a virtualenv, the wheel built from smtp-py, pytest against it.
test-python: examples python-install python-typecheck
	SMTPX_EXAMPLES=$(abspath $(EXAMPLES_DIR)) $(VENV_PY) -m pytest tests/python

## Types: the installed package and the Python examples pass mypy --strict, and the
## hand-written _native.pyi matches the compiled module (stubtest). Run from the venv's
## directory so that the installed smtpx is checked, not a folder of this checkout.
python-typecheck: python-install
	$(VENV_PY) -m mypy --strict --cache-dir=/dev/null examples/python
	cd $(VENV) && bin/python -m mypy --strict --cache-dir=/dev/null -p smtpx
	cd $(VENV) && bin/python -m mypy.stubtest smtpx._native

python-env: $(VENV)/bin/pip
	$(PIP) install --quiet $(PY_TEST_DEPS)

$(VENV)/bin/pip:
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: '$(PYTHON) -m venv $(VENV)' failed: this Python lacks the venv/ensurepip modules."; \
	  echo "       Install them (Debian/Ubuntu: apt-get install python3-venv) and run make again."; \
	  exit 1; }
	@test -x $@ || { rm -rf $(VENV); echo "error: $(VENV) has no pip (ensurepip is missing; Debian: apt-get install python3-venv)"; exit 1; }

# --force-reinstall: the version does not change between builds, so pip would otherwise
# keep a stale wheel. --no-build-isolation: use the maturin just installed in the venv
# (its build hook runs the maturin program, hence the venv first on PATH).
python-install: python-env
	@echo "building and installing the smtpx wheel from smtp-py (cargo, release profile)"
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PIP) install --quiet --force-reinstall --no-deps --no-build-isolation ./smtp-py

## The distributable Python packages. maturin's manylinux check (--auditwheel check) fails
## the build unless the wheel is manylinux-compliant; it is tagged with the oldest
## manylinux the symbols it uses allow (the building machine's glibc sets that: build in a
## manylinux container for an older one). --strip: no debug info in the wheel.
WHEEL_DIR := $(TARGET_DIR)/wheels/dist

wheel: python-env
	rm -rf $(WHEEL_DIR)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/maturin build --release --strip --auditwheel check \
	  --manifest-path smtp-py/Cargo.toml --out $(WHEEL_DIR)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/maturin sdist --manifest-path smtp-py/Cargo.toml --out $(WHEEL_DIR)

## The wheel in a fresh virtualenv, on a PATH without cargo: the README's quick start runs.
wheel-test: wheel
	SMTPX_DIST=$(abspath $(WHEEL_DIR)) $(VENV_PY) -m pytest tests/packaging

bench:
	$(CARGO) bench -p smtp-core --bench engine

## The connection-pool benchmark: smtpx's SmtpPool against lettre's pooled SmtpTransport
## into Postfix's smtp-sink, side by side (a crate outside the workspace: `make test`
## never builds lettre). BENCH_POOL_ARGS overrides the run's size.
BENCH_POOL_ARGS ?= --messages 100000 --senders 8 --pool 8 --rounds 3
bench-pool:
	bench/pool-lettre/run.sh $(BENCH_POOL_ARGS)

fuzz:
	@echo "Fuzz targets (libFuzzer, via cargo-fuzz; not run by make test or CI):"
	@echo "  server_session  connection  sasl  client_session  reply_parser  stuffing  proxy_header"
	@echo "Install cargo-fuzz once:"
	@echo "  cargo install cargo-fuzz --locked"
	@echo "Then run one target (until stopped; add -- -max_total_time=60 for a minute):"
	@echo "  cd smtp-core && RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET"

clean:
	$(CARGO) clean
	rm -rf $(C_OUT)
	find . \( -name __pycache__ -o -name .pytest_cache \) -type d -not -path './$(VENV)/*' -prune \
	  -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
