//! Lease-based leader election, so several replicas can run and exactly one writes.
//!
//! The rules follow client-go's: a lease is expired when its record has not changed for
//! `lease_duration` as observed by *this* process's clock (never trusting another machine's
//! clock); the leader renews every `retry_period` and gives up leadership when it could not
//! renew for `renew_deadline`, which is shorter than `lease_duration`, so it has stopped
//! writing before anyone else may take the lease. On shutdown the leader releases the lease
//! so a standby takes over at once.
//!
//! The renew deadline is counted from the moment the last successful round *began* (before
//! its request was sent, so before any standby can have seen the renewal), and every round is
//! cut off at that deadline: a request that hangs (an API server that stopped answering, a
//! half-open connection) cannot stretch leadership past it.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};

/// Timing of the election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby looks at the lease.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseTiming {
    /// Checks the invariant that makes the election safe: retry period < renew deadline <
    /// lease duration, all above zero.
    pub fn validate(&self) -> Result<(), String> {
        if self.retry_period.is_zero() {
            return Err("the retry period must be longer than zero".into());
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period >= self.renew_deadline {
            return Err(format!(
                "retry period ({:?}) must be shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// What a candidate may do with a lease it just read.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// We hold it: renew.
    Ours,
    /// Nobody holds it, or the holder let it expire: take it.
    Free,
    /// Someone else holds it and it is fresh: wait.
    Held(String),
}

/// Tracks when this process last saw the lease record change, which is what expiry is
/// measured against.
#[derive(Debug, Default)]
pub struct Observer {
    last: Option<(String, Instant)>,
}

impl Observer {
    /// Judges `lease` as read at `now` by candidate `identity`.
    pub fn judge(
        &mut self,
        lease: &Lease,
        identity: &str,
        lease_duration: Duration,
        now: Instant,
    ) -> Verdict {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        if holder == identity {
            return Verdict::Ours;
        }
        if holder.is_empty() {
            return Verdict::Free;
        }
        let record = format!(
            "{holder}|{}|{}",
            spec.renew_time.map(|t| t.0.to_string()).unwrap_or_default(),
            spec.lease_transitions.unwrap_or(0)
        );
        let seen_at = match &self.last {
            Some((previous, at)) if *previous == record => *at,
            _ => {
                self.last = Some((record, now));
                now
            }
        };
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
            .unwrap_or(lease_duration);
        if now.duration_since(seen_at) >= duration {
            Verdict::Free
        } else {
            Verdict::Held(holder)
        }
    }
}

/// A candidate for one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
    observer: Observer,
    /// When the last successful acquire or renew round began.
    renewed_at: Option<Instant>,
}

impl Elector {
    /// A candidate named `identity` for Lease `namespace/name`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: LeaseTiming,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            observer: Observer::default(),
            renewed_at: None,
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this candidate holds the lease.
    pub async fn acquire(&mut self) {
        let poll = self.timing.retry_period.min(Duration::from_millis(500));
        let mut last_holder = String::new();
        loop {
            let round = Instant::now();
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    self.renewed_at = Some(round);
                    tracing::info!(identity = %self.identity, lease = %self.name, "became leader");
                    return;
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "leader election: could not read or write the lease")
                }
            }
            if let Some(holder) = self.current_holder()
                && holder != last_holder
            {
                tracing::info!(%holder, "standing by: another replica leads");
                last_holder = holder;
            }
            tokio::time::sleep(poll).await;
        }
    }

    fn current_holder(&self) -> Option<String> {
        self.observer
            .last
            .as_ref()
            .and_then(|(record, _)| record.split('|').next().map(str::to_string))
    }

    /// Renews every retry period; returns when leadership is lost: someone else holds the
    /// lease, or no round succeeded within the renew deadline of the last successful one. A
    /// round still waiting for the API server at that deadline is abandoned. Can be called
    /// again after it was cancelled (e.g. to keep renewing while the controllers drain).
    pub async fn hold(&mut self) {
        loop {
            let renewed_at = *self.renewed_at.get_or_insert_with(Instant::now);
            let deadline = renewed_at + self.timing.renew_deadline;
            let next = (Instant::now() + self.timing.retry_period).min(deadline);
            tokio::time::sleep_until(next.into()).await;
            let round = Instant::now();
            match tokio::time::timeout_at(deadline.into(), self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => self.renewed_at = Some(round),
                Ok(Ok(false)) => {
                    tracing::error!(identity = %self.identity, "lost the lease to another replica");
                    return;
                }
                Ok(Err(error)) => tracing::warn!(%error, "could not renew the lease"),
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                tracing::error!(
                    identity = %self.identity,
                    deadline = ?self.timing.renew_deadline,
                    since_last_renewal = ?renewed_at.elapsed(),
                    "could not renew the lease in time"
                );
                return;
            }
        }
    }

    /// Gives the lease up so a standby can take over at once; gives up itself after one retry
    /// period (the lease then expires as usual), so a hung API server cannot hold up an exit.
    pub async fn release(&mut self) {
        let bound = self.timing.retry_period;
        if tokio::time::timeout(bound, self.release_now())
            .await
            .is_err()
        {
            tracing::warn!(
                ?bound,
                "could not release the lease in time; it will expire"
            );
        }
    }

    async fn release_now(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(identity = %self.identity, "released the lease"),
            Err(error) => tracing::warn!(%error, "could not release the lease"),
        }
    }

    /// One round: `Ok(true)` when we hold the lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let verdict = self.observer.judge(
            &lease,
            &self.identity,
            self.timing.lease_duration,
            Instant::now(),
        );
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        match verdict {
            Verdict::Held(_) => return Ok(false),
            Verdict::Ours => {}
            Verdict::Free => {
                spec.holder_identity = Some(self.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        // The resourceVersion in `lease` makes this a compare-and-swap: two candidates that
        // both saw the lease free cannot both win.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: &str, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                lease_duration_seconds: Some(duration),
                ..Default::default()
            }),
        }
    }

    const D: Duration = Duration::from_secs(15);

    /// What a fresh observer judges for "me", lease after lease, each at its seconds after
    /// the observer started watching.
    fn verdicts(judged: &[(&Lease, u64)]) -> Vec<Verdict> {
        let mut observer = Observer::default();
        let t0 = Instant::now();
        judged
            .iter()
            .map(|(lease, after)| observer.judge(lease, "me", D, t0 + Duration::from_secs(*after)))
            .collect()
    }

    fn held_by_other() -> Verdict {
        Verdict::Held("other".into())
    }

    #[test]
    fn our_own_lease_is_ours_and_a_released_one_is_free() {
        let mut observer = Observer::default();
        let now = Instant::now();
        assert_eq!(
            observer.judge(&lease(Some("me"), "2026-01-01T00:00:00Z", 15), "me", D, now),
            Verdict::Ours
        );
        assert_eq!(
            observer.judge(&lease(None, "2026-01-01T00:00:00Z", 1), "me", D, now),
            Verdict::Free
        );
    }

    #[test]
    fn a_lease_expires_by_our_clock_only_after_it_stops_changing() {
        let held = lease(Some("other"), "2020-01-01T00:00:00Z", 15);
        // Renewed long ago by the other's clock, but we just started watching: still held.
        assert_eq!(
            verdicts(&[(&held, 0), (&held, 14), (&held, 15)]),
            [held_by_other(), held_by_other(), Verdict::Free],
            "judged at 0, 14 and 15 s"
        );
    }

    #[test]
    fn a_renewal_restarts_the_expiry_clock() {
        let first = lease(Some("other"), "2026-01-01T00:00:00Z", 15);
        let renewed = lease(Some("other"), "2026-01-01T00:00:02Z", 15);
        let judged = verdicts(&[(&first, 0), (&renewed, 10), (&renewed, 24), (&renewed, 25)]);
        assert_eq!(
            judged[1..],
            [held_by_other(), held_by_other(), Verdict::Free],
            "the renewal judged at 10, 24 and 25 s"
        );
    }

    #[test]
    fn timing_must_keep_renew_deadline_below_lease_duration() {
        assert!(LeaseTiming::default().validate().is_ok());
        let bad = LeaseTiming {
            renew_deadline: Duration::from_secs(20),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let equal = LeaseTiming {
            retry_period: Duration::from_secs(10),
            ..Default::default()
        };
        assert!(equal.validate().is_err(), "retry period = renew deadline");
        let zero = LeaseTiming {
            retry_period: Duration::ZERO,
            ..Default::default()
        };
        assert!(zero.validate().is_err(), "a zero retry period");
    }
}
