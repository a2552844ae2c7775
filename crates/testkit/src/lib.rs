//! Helpers for rqmail's system tests and `make bench`; built by `make`, never
//! installed. `envprobe` is the child program tests run under tcpserver (static, so it
//! runs under `softlimit -m 2000000` too); `connbench` is the load generator.
