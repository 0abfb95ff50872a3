//! Bad flags stop the built binary at start-up, before it talks to any cluster: exit status 2
//! and one line naming the flag. Needs no cluster (the kubeconfig named does not exist, so a
//! binary that got past its checks would fail differently).

use std::process::Command;

use signpost_e2e::process::signpost_bin;

/// Runs `signpost <args>` and returns (exit code, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let bin = signpost_bin();
    assert!(
        bin.exists(),
        "{} is missing: run `just build` first",
        bin.display()
    );
    let output = Command::new(&bin)
        .args(args)
        .args(["--kubeconfig", "/nonexistent/kubeconfig"])
        .env_remove("KUBECONFIG")
        .output()
        .expect("the binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_one_line_naming(args: &[&str], flag: &str) {
    let (code, stderr) = run(args);
    println!(
        "signpost {}: exit {code:?}: {}",
        args.join(" "),
        stderr.trim_end()
    );
    assert_eq!(
        code,
        Some(2),
        "exit status 2 for {args:?}; stderr: {stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(flag), "the line names {flag}: {stderr}");
}

#[test]
fn lease_timing_that_cannot_be_safe_stops_the_binary_with_one_line() {
    assert_one_line_naming(
        &[
            "run",
            "--service-cidr",
            "10.1.0.0/24",
            "--leader-election-retry-period",
            "20s",
        ],
        "--leader-election",
    );
    assert_one_line_naming(
        &[
            "run",
            "--service-cidr",
            "10.1.0.0/24",
            "--leader-election-renew-deadline",
            "15s",
        ],
        "--leader-election",
    );
}

#[test]
fn a_bad_cluster_domain_stops_the_binary_before_leader_election() {
    assert_one_line_naming(
        &[
            "run",
            "--service-cidr",
            "10.1.0.0/24",
            "--cluster-domain",
            "bad..domain",
        ],
        "--cluster-domain",
    );
}

#[test]
fn a_duration_that_would_overflow_stops_the_binary() {
    assert_one_line_naming(
        &[
            "run",
            "--service-cidr",
            "10.1.0.0/24",
            "--repair-interval",
            "18446744073709551615h",
        ],
        "--repair-interval",
    );
}
