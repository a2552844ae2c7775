# rqmail: make (build), make test, make run, make install, make bench.
# Programs land in bin/; test helpers in target/test-bin/.

TARGET ?= x86_64-unknown-linux-musl
PROGRAMS_BASE = tcpserver tcprules tcprulescheck qmail-queue qmail-mkqueue qmail-mkids qmail-inject sendmail qmail-qstat qmail-qread checkpassword checkpassword-users ucspi-tlsd ucspi-tlsc qmail-smtpd
# The delivery side: the scheduler and its helpers (crates/send), local delivery and
# the tools .qmail files use (crates/local).
PROGRAMS_SEND = qmail-start qmail-lspawn qmail-rspawn qmail-clean qmail-send
PROGRAMS_LOCAL = qmail-local qmail-newu qmail-pw2u preline forward condredirect bouncesaying except maildirmake maildir2mbox
PROGRAMS = $(PROGRAMS_BASE) $(PROGRAMS_SEND) $(PROGRAMS_LOCAL)
TESTPROGS = envprobe connbench queuebench maxrss tlsbenchapp
PREFIX ?= /usr/local
CARGO ?= cargo

.PHONY: all build test unit systest deps bench install run clean

all: build

# Static musl binaries when the target can be had; otherwise glibc with crt-static
# (bigger, but still static: they start under softlimit -m 2000000, with less room).
# ring (the TLS engines' crypto) compiles a few C files: with musl-gcc if installed,
# else with the system gcc, which works for ring's freestanding C (CC_MUSL overrides).
build:
	@if ! rustup target list --installed 2>/dev/null | grep -qx '$(TARGET)'; then \
	  rustup target add $(TARGET) || echo "make: cannot add $(TARGET); building glibc crt-static instead" >&2; \
	fi
	@if rustup target list --installed 2>/dev/null | grep -qx '$(TARGET)'; then \
	  CC_x86_64_unknown_linux_musl=$${CC_MUSL:-$$(command -v musl-gcc || echo gcc)} \
	  $(CARGO) build --release --locked --target $(TARGET) && dir=target/$(TARGET)/release; \
	else \
	  RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release --locked --target x86_64-unknown-linux-gnu \
	    && dir=target/x86_64-unknown-linux-gnu/release; \
	fi && mkdir -p bin target/test-bin \
	  && for p in $(PROGRAMS); do cp -f $$dir/$$p bin/$$p.new && mv -f bin/$$p.new bin/$$p; done \
	  && for p in $(TESTPROGS); do cp -f $$dir/$$p target/test-bin/$$p; done

deps:
	@sh tests/deps

unit:
	$(CARGO) test --workspace --locked

systest: build deps
	python3 -m pytest -q tests

test: deps unit systest

bench: build deps
	python3 tests/bench.py
	python3 tests/bench_queue.py
	python3 tests/bench_checkpassword.py
	python3 tests/bench_tls.py
	python3 tests/bench_smtpd.py
	python3 tests/bench_delivery.py

install: build
	sh etc/install

run: build
	sh etc/run-local

clean:
	$(CARGO) clean
	rm -rf bin
