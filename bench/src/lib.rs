//! Signpost's benchmarks, as a library the binaries of `src/bin` call: the controller benchmark
//! (`endpoints_bench`), the proxy's load generator (`proxy_bench`) and what they share. The
//! scripts in `bench/scripts` run them next to their peers and write `docs/benchmarks.md`.

pub mod args;
pub mod endpoints;
pub mod proxy;
