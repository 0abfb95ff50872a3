//! `endpoints_bench`: the controller benchmark's workload generator, one controller (or both,
//! alternating) at a time; `signpost_bench::endpoints` says what it measures and how.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    signpost_bench::endpoints::main().await
}
