//! The benchmark's options, from its command line.

use anyhow::{Context, bail};

use super::cache_fill::CacheFill;
use crate::args;

pub(crate) struct Options {
    pub controller: String,
    pub services: usize,
    pub pods: usize,
    pub flips: usize,
    pub batches: usize,
    pub rate: f64,
    pub rollout: usize,
    pub rollouts: usize,
    /// Flips per batch of the random flips (0: none).
    pub random_flips: usize,
    /// Restarts with nothing changed (`None`: [`restarts`]' default for the size).
    pub restarts: Option<usize>,
    /// Extra arguments of `signpost run` (e.g. a batching policy to compare).
    pub signpost_args: Vec<String>,
    pub signpost_bin: String,
    pub kcm_bin: String,
    pub admin_kubeconfig: String,
    /// Only fill the caches once this way (`paged`, `streaming`: JSON; `protobuf`: paged, the
    /// pods as protobuf, not decoded) and exit: the child process that measures what a
    /// restart of any process costs before its caches are filled.
    pub fill_once: Option<CacheFill>,
}

pub(crate) fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        controller: "signpost".into(),
        services: 100,
        pods: 10,
        flips: 300,
        batches: 9,
        rate: 50.0,
        rollout: 100,
        rollouts: 3,
        random_flips: 300,
        restarts: None,
        signpost_args: Vec::new(),
        signpost_bin: "target/release/signpost".into(),
        kcm_bin: String::new(),
        admin_kubeconfig: String::new(),
        fill_once: None,
    };
    for (flag, value) in args::pairs(std::env::args().skip(1))? {
        let parse = |what: &str| args::parse::<usize>(what, &value);
        match flag.as_str() {
            "--controller" => o.controller = value,
            "--services" => o.services = parse("--services")?,
            "--pods" => o.pods = parse("--pods")?,
            "--flips" => o.flips = parse("--flips")?,
            "--batches" => o.batches = parse("--batches")?,
            "--rate" => o.rate = args::parse("--rate", &value)?,
            "--rollout" => o.rollout = parse("--rollout")?,
            "--rollouts" => o.rollouts = parse("--rollouts")?,
            "--random-flips" => o.random_flips = parse("--random-flips")?,
            "--restarts" => o.restarts = Some(parse("--restarts")?),
            "--signpost-arg" => o.signpost_args.push(value),
            "--signpost-bin" => o.signpost_bin = value,
            "--kcm-bin" => o.kcm_bin = value,
            "--admin-kubeconfig" => o.admin_kubeconfig = value,
            "--fill-once" => {
                o.fill_once = Some(CacheFill::from_flag(&value).with_context(|| {
                    format!("--fill-once: {value:?} is not paged, streaming or protobuf")
                })?)
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if !matches!(o.controller.as_str(), "signpost" | "kcm" | "alternating") {
        bail!("--controller must be signpost, kcm or alternating");
    }
    if o.random_flips > o.services * o.pods - o.flips.min(o.services * o.pods) {
        bail!("--flips + --random-flips must not exceed services × pods (distinct pods)");
    }
    if o.flips > o.services * o.pods {
        bail!("--flips must not exceed services × pods (each flip changes a distinct pod)");
    }
    Ok(o)
}

/// The label selector of the slices each controller writes (by their `managed-by` label).
pub(crate) fn slices_of(controller: &str) -> String {
    let manager = match controller {
        "signpost" => "endpointslice-controller.signpost.dev",
        _ => "endpointslice-controller.k8s.io",
    };
    format!("endpointslice.kubernetes.io/managed-by={manager}")
}

/// Restarts with nothing changed per run (each one sample of start → ready): 21 up to 5,000
/// pods, where a sample is ~0.1 s and its spread is a third of it, so the median needs many;
/// 11 above, where each restart and its fills take tens of seconds.
pub(crate) fn restarts(o: &Options) -> usize {
    if let Some(n) = o.restarts {
        return n;
    }
    if o.services * o.pods <= 5000 { 21 } else { 11 }
}

pub(crate) fn controller_logs_ready(o: &Options) -> bool {
    o.controller == "signpost"
}
