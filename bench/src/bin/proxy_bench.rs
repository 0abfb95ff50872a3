//! `proxy_bench`: the proxy benchmark's load generator, run inside the benchmark's network
//! namespace; `signpost_bench::proxy` says what it measures and how.

fn main() -> anyhow::Result<()> {
    signpost_bench::proxy::main()
}
