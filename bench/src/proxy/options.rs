//! The load generator's options, from its command line.

use anyhow::{Context, bail};

use crate::args;

pub(crate) struct Options {
    pub namespace: String,
    pub rounds: usize,
    pub connections: usize,
    pub warmup: usize,
    pub block: usize,
    pub clients: usize,
    pub seconds: f64,
    /// Processes whose CPU time is reported per round (`name=pid`).
    pub pids: Vec<(String, u32)>,
}

pub(crate) fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        namespace: String::new(),
        rounds: 2,
        connections: 10000,
        warmup: 500,
        block: 100,
        clients: 16,
        seconds: 5.0,
        pids: Vec::new(),
    };
    for (flag, value) in args::pairs(std::env::args().skip(1))? {
        match flag.as_str() {
            "--namespace" => o.namespace = value,
            "--rounds" => o.rounds = args::parse(&flag, &value)?,
            "--connections" => o.connections = args::parse(&flag, &value)?,
            "--warmup" => o.warmup = args::parse(&flag, &value)?,
            "--block" => o.block = args::parse(&flag, &value)?,
            "--clients" => o.clients = args::parse(&flag, &value)?,
            "--seconds" => o.seconds = args::parse(&flag, &value)?,
            "--cpu-of" => {
                let (name, pid) = value.split_once('=').context("--cpu-of takes name=pid")?;
                o.pids
                    .push((name.to_string(), args::parse("--cpu-of pid", pid)?));
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if o.namespace.is_empty() {
        bail!("--namespace is required (the namespace signpost run and signpost proxy watch)");
    }
    if o.rounds == 0 || o.connections == 0 || o.block == 0 || o.clients == 0 || o.seconds <= 0.0 {
        bail!("--rounds, --connections, --block, --clients and --seconds must be positive");
    }
    Ok(o)
}
