//! A deduplicating work queue of object keys, like client-go's workqueue.
//!
//! Many watch events for one Service collapse into one pending entry, a key is never handed to
//! two workers at once, and a key added while it is being processed runs once more afterwards,
//! so the last change is never lost. Failed keys come back after a per-key exponential backoff.
//!
//! A queue made with [`WorkQueue::with_spacing`] also spaces the runs of one key: a key added
//! within its interval of its last run waits out the rest of that interval, collecting every
//! change made meanwhile into one run. The first change after a quiet period runs at once, so
//! isolated changes pay nothing, and a burst (a rollout replacing a Service's pods one after
//! another) costs one run per interval instead of one per event. With a [`Spacing`] whose
//! `longest` is above its `shortest`, the interval of a key that keeps being held doubles per
//! held run up to `longest`, and falls back to `shortest` once the key has been quiet for a
//! whole interval: a burst that lasts seconds costs a few runs, not ten a second.
//! [`Spacing::start`] says when holding begins: after a number of runs at once within the
//! interval ([`Start::Burst`]; 0 holds the second), or once the key was added while being
//! processed ([`Start::Refill`]), so a few close changes need not wait.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// First retry delay of a failing key; doubles per failure up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_millis(10);
/// Longest retry delay of a failing key.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

struct State<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    /// When each dirty key was first added since its last run (for the queue-wait metric).
    added: HashMap<K, Instant>,
    processing: HashSet<K>,
    failures: HashMap<K, u32>,
    /// When each key was last handed to a worker, and its current interval (only with a
    /// spacing).
    spaced: HashMap<K, Spaced>,
    shut_down: bool,
}

/// One key's spacing state.
#[derive(Clone, Copy, Debug)]
struct Spaced {
    started: Instant,
    interval: Duration,
    /// Runs within the interval still allowed at once before the key is held.
    free: u32,
    /// Whether the key was added again while it was being processed since it was last quiet
    /// ([`Start::Refill`] only).
    refilled: bool,
}

impl Spaced {
    /// Whether the key has been quiet for its whole interval, so its next change runs at once
    /// and the interval starts again from the shortest.
    fn is_quiet(&self) -> bool {
        self.started.elapsed() >= self.interval
    }
}

/// Above this many remembered keys, the quiet ones are dropped (forgetting a quiet key is the
/// same as keeping it: its next change runs at once at the shortest interval).
const SPACED_PRUNE_AT: usize = 4096;

/// How far apart two runs of one key must be (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spacing {
    /// The interval after a run that followed a quiet period; zero turns spacing off.
    pub shortest: Duration,
    /// The interval a key that is held run after run grows to; at or below `shortest` the
    /// interval never grows.
    pub longest: Duration,
    /// When a key that keeps changing starts to be held.
    pub start: Start,
}

/// When the spacing of a key starts, counted from the first run after a quiet period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// After this many more runs within the interval went at once (0: the second run within
    /// the interval is already held).
    Burst(u32),
    /// Once the key was added while it was being processed: the run of that change goes at
    /// once after the one in progress, later ones within the interval are held.
    Refill,
}

impl Spacing {
    /// No spacing: every add is queued at once.
    pub const NONE: Spacing = Spacing::fixed(Duration::ZERO);

    /// The same interval whatever the key did before.
    pub const fn fixed(interval: Duration) -> Self {
        Self {
            shortest: interval,
            longest: interval,
            start: Start::Burst(0),
        }
    }

    /// The state of a key after a quiet period.
    fn fresh(&self, started: Instant) -> Spaced {
        Spaced {
            started,
            interval: self.shortest,
            free: match self.start {
                Start::Burst(n) => n,
                Start::Refill => 0,
            },
            refilled: false,
        }
    }

    /// The interval after a held run: twice the last, within `shortest..=longest`.
    fn grown(&self, interval: Duration) -> Duration {
        interval
            .saturating_mul(2)
            .min(self.longest)
            .max(self.shortest)
    }
}

/// Cloneable handle to one queue.
pub struct WorkQueue<K> {
    state: Arc<Mutex<State<K>>>,
    notify: Arc<Notify>,
    spacing: Spacing,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            notify: self.notify.clone(),
            spacing: self.spacing,
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::with_spacing(Spacing::NONE)
    }

    /// An empty queue that keeps the runs of one key apart by `spacing` (see the module docs);
    /// [`Spacing::NONE`] is [`WorkQueue::new`].
    pub fn with_spacing(spacing: Spacing) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                added: HashMap::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                spaced: HashMap::new(),
                shut_down: false,
            })),
            notify: Arc::new(Notify::new()),
            spacing,
        }
    }

    /// How long `key` must still wait before its next run (`refill`: it was added while being
    /// processed). A key held now has its interval grown for the run after; a quiet key starts
    /// again from the shortest interval and its full allowance of runs at once.
    fn hold(&self, state: &mut State<K>, key: &K, refill: bool) -> Duration {
        let Some(spaced) = state.spaced.get_mut(key) else {
            return Duration::ZERO;
        };
        if spaced.is_quiet() {
            *spaced = self.spacing.fresh(spaced.started);
            return Duration::ZERO;
        }
        match self.spacing.start {
            Start::Burst(_) if spaced.free > 0 => {
                spaced.free -= 1;
                return Duration::ZERO;
            }
            Start::Refill if !spaced.refilled => {
                spaced.refilled = refill;
                return Duration::ZERO;
            }
            _ => {}
        }
        let wait = spaced.interval.saturating_sub(spaced.started.elapsed());
        spaced.interval = self.spacing.grown(spaced.interval);
        wait
    }

    /// Queues a dirty key that is not being processed: now, or once its interval has passed
    /// (it stays dirty meanwhile, so further adds merge into it).
    fn enqueue(&self, mut state: std::sync::MutexGuard<'_, State<K>>, key: K, refill: bool) {
        let wait = self.hold(&mut state, &key, refill);
        if wait.is_zero() {
            state.queue.push_back(key);
            drop(state);
            self.notify.notify_one();
        } else {
            drop(state);
            let queue = self.clone();
            let due = Instant::now() + wait;
            tokio::spawn(async move {
                tokio::time::sleep_until(due).await;
                let mut state = queue.lock();
                if state.dirty.contains(&key) && !state.processing.contains(&key) {
                    state.queue.push_back(key);
                    drop(state);
                    queue.notify.notify_one();
                }
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        // A panic while holding the lock leaves plain collections behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks `key` as needing work. Cheap and idempotent: safe to call from watch handlers.
    pub fn add(&self, key: K) {
        let mut state = self.lock();
        if state.shut_down || !state.dirty.insert(key.clone()) {
            return;
        }
        state.added.insert(key.clone(), Instant::now());
        if !state.processing.contains(&key) {
            self.enqueue(state, key, false);
        }
    }

    /// Adds `key` after `delay` (for periodic resyncs and retries).
    pub fn add_after(&self, key: K, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Waits for the next key; `None` once the queue is shut down and drained.
    pub async fn next(&self) -> Option<K> {
        self.next_timed().await.map(|(key, _)| key)
    }

    /// [`Self::next`], with how long the key waited since it was added (spacing included:
    /// that is time a change waited to be written).
    pub async fn next_timed(&self) -> Option<(K, Duration)> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    let waited = state
                        .added
                        .remove(&key)
                        .map_or(Duration::ZERO, |added| added.elapsed());
                    state.processing.insert(key.clone());
                    if !self.spacing.shortest.is_zero() {
                        if state.spaced.len() >= SPACED_PRUNE_AT {
                            state.spaced.retain(|_, spaced| !spaced.is_quiet());
                        }
                        let started = Instant::now();
                        let fresh = self.spacing.fresh(started);
                        state
                            .spaced
                            .entry(key.clone())
                            .and_modify(|spaced| spaced.started = started)
                            .or_insert(fresh);
                    }
                    let more = !state.queue.is_empty();
                    drop(state);
                    if more {
                        // Wake another worker for the rest.
                        self.notify.notify_one();
                    }
                    return Some((key, waited));
                }
                if state.shut_down {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Ends processing of `key`; if it was added meanwhile, it is queued again.
    pub fn done(&self, key: &K) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            self.enqueue(state, key.clone(), true);
        }
    }

    /// Ends processing of `key` after a failure and schedules a retry with backoff.
    /// Returns the delay chosen.
    pub fn retry(&self, key: &K) -> Duration {
        let delay = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            *failures = failures.saturating_add(1);
            backoff(*failures)
        };
        self.done(key);
        self.add_after(key.clone(), delay);
        delay
    }

    /// Clears the failure count of `key` after it succeeded.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Number of keys waiting (not counting those in progress).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops accepting keys; workers drain what is queued, then `next` returns `None`.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.notify.notify_waiters();
    }
}

/// Delay before retry number `failures` (1-based).
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    BASE_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn repeated_adds_collapse_into_one_entry() {
        let q = WorkQueue::new();
        for _ in 0..5 {
            q.add("svc");
        }
        q.add("other");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, Some("svc"));
        assert_eq!(q.next().await, Some("other"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_added_while_processing_runs_again_after_done() {
        let q = WorkQueue::new();
        q.add("svc");
        let key = q.next().await.unwrap();
        q.add("svc");
        assert!(q.is_empty(), "must not be handed out twice at once");
        q.done(&key);
        assert_eq!(q.next().await, Some("svc"));
    }

    #[tokio::test]
    async fn shut_down_drains_then_ends() {
        let q = WorkQueue::new();
        q.add(1);
        q.shut_down();
        q.add(2);
        assert_eq!(q.next().await, Some(1));
        assert_eq!(q.next().await, None);
    }

    #[tokio::test]
    async fn waiting_worker_wakes_on_add() {
        let q = WorkQueue::new();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.add(7);
        assert_eq!(waiter.await.unwrap(), Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_spaced_key_runs_at_once_after_a_quiet_period_and_merges_a_burst() {
        let q = WorkQueue::with_spacing(Spacing::fixed(Duration::from_millis(100)));
        let start = tokio::time::Instant::now();
        q.add("svc");
        assert_eq!(q.next().await, Some("svc"), "the first change runs at once");
        assert_eq!(start.elapsed(), Duration::ZERO);
        q.done(&"svc");

        // A burst within the interval: held, merged, run once when the interval is over.
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(5)).await;
            q.add("svc");
        }
        q.add("other");
        assert_eq!(q.next().await, Some("other"), "other keys are not held");
        assert_eq!(q.next().await, Some("svc"));
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        q.done(&"svc");
        assert!(q.is_empty());

        // Added while running: runs again one interval after the run began.
        let key = {
            tokio::time::advance(Duration::from_millis(500)).await;
            q.add("svc");
            q.next().await.unwrap()
        };
        let began = tokio::time::Instant::now();
        q.add("svc");
        tokio::time::advance(Duration::from_millis(30)).await;
        q.done(&key);
        assert!(q.is_empty(), "held until the interval has passed");
        assert_eq!(q.next().await, Some("svc"));
        assert_eq!(began.elapsed(), Duration::from_millis(100));
    }

    /// A spacing from `shortest_ms` that grows up to `longest_ms`.
    fn spacing(shortest_ms: u64, longest_ms: u64, start: Start) -> Spacing {
        Spacing {
            shortest: Duration::from_millis(shortest_ms),
            longest: Duration::from_millis(longest_ms),
            start,
        }
    }

    /// Runs `n` changes of "svc", each 10 ms after the last run ended (a Service in a
    /// rollout), and returns when each run began, in ms from `start`.
    async fn run_10ms_apart(
        q: &WorkQueue<&'static str>,
        start: tokio::time::Instant,
        n: usize,
    ) -> Vec<u128> {
        let mut began = Vec::new();
        for _ in 0..n {
            began.push(run_once(q, start).await.as_millis());
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        began
    }

    /// Runs one change of "svc" after each wait in `waits_ms` (counted from the end of the
    /// last run) and returns when each run began, in ms from `start`.
    async fn run_after(
        q: &WorkQueue<&'static str>,
        start: tokio::time::Instant,
        waits_ms: &[u64],
    ) -> Vec<u128> {
        let mut began = Vec::new();
        for wait in waits_ms {
            tokio::time::advance(Duration::from_millis(*wait)).await;
            began.push(run_once(q, start).await.as_millis());
        }
        began
    }

    /// Runs one change of "svc" to completion and returns when its run began, from `start`.
    async fn run_once(q: &WorkQueue<&'static str>, start: tokio::time::Instant) -> Duration {
        q.add("svc");
        assert_eq!(q.next().await, Some("svc"));
        let began = start.elapsed();
        q.done(&"svc");
        began
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_held_run_after_run_waits_longer_each_time_up_to_the_longest() {
        let q = WorkQueue::with_spacing(spacing(100, 400, Start::Burst(0)));
        let start = tokio::time::Instant::now();
        let began = run_10ms_apart(&q, start, 6).await;
        assert_eq!(
            began,
            [0, 100, 300, 700, 1100, 1500],
            "run start times (ms)"
        );

        // Quiet for the whole (longest) interval: the next change runs at once and the
        // interval starts again from the shortest.
        tokio::time::advance(Duration::from_millis(400)).await;
        let quiet_end = start.elapsed().as_millis();
        assert_eq!(
            run_10ms_apart(&q, start, 2).await,
            [quiet_end, quiet_end + 100],
            "run start times (ms) after the quiet period"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_changed_every_25ms_for_3s_while_runs_take_15ms_runs_a_few_times() {
        let q = WorkQueue::with_spacing(spacing(100, 500, Start::Burst(0)));
        let start = tokio::time::Instant::now();
        let worker = tokio::spawn({
            let q = q.clone();
            async move {
                let mut began = Vec::new();
                while let Some(key) = q.next().await {
                    began.push(start.elapsed().as_millis());
                    tokio::time::sleep(Duration::from_millis(15)).await;
                    q.done(&key);
                }
                began
            }
        });
        for _ in 0..120 {
            q.add("svc");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        q.shut_down();
        let began = worker.await.unwrap();
        assert_eq!(
            began,
            [0, 100, 300, 700, 1200, 1700, 2200, 2700, 3200],
            "run start times (ms)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_allowance_runs_close_changes_at_once_then_spaces_the_rest() {
        let q = WorkQueue::with_spacing(spacing(100, 400, Start::Burst(2)));
        let start = tokio::time::Instant::now();
        let began = run_10ms_apart(&q, start, 6).await;
        // Three runs at once (the first and two more), then held and growing as before.
        assert_eq!(began, [0, 10, 20, 120, 320, 720], "run start times (ms)");

        // Quiet for the whole interval: the allowance is whole again.
        tokio::time::advance(Duration::from_millis(400)).await;
        let quiet_end = start.elapsed().as_millis();
        assert_eq!(
            run_10ms_apart(&q, start, 4).await,
            [quiet_end, quiet_end + 10, quiet_end + 20, quiet_end + 120],
            "run start times (ms) after the quiet period"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn two_changes_of_one_key_a_run_apart_both_go_at_once_with_a_burst_of_one() {
        let q = WorkQueue::with_spacing(spacing(100, 500, Start::Burst(1)));
        let start = tokio::time::Instant::now();
        assert_eq!(run_after(&q, start, &[0, 30]).await, [0, 30]);
        // The quiet period is counted from the last run: 100 ms after it, fresh again; of the
        // next three changes 30 ms apart, the third is held.
        assert_eq!(
            run_after(&q, start, &[100, 30, 30]).await,
            [130, 160, 260],
            "run start times (ms) after the quiet period; the third is held"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_refill_a_key_is_held_only_after_it_changed_during_its_own_run() {
        let q = WorkQueue::with_spacing(spacing(100, 400, Start::Refill));
        let start = tokio::time::Instant::now();
        // Changes that each come after the last run ended go at once, however close.
        assert_eq!(
            run_after(&q, start, &[0, 20, 20, 20]).await,
            [0, 20, 40, 60]
        );
        tokio::time::advance(Duration::from_millis(20)).await;
        // A change while running: its run follows at once when the first is done...
        q.add("svc");
        let key = q.next().await.unwrap();
        q.add("svc");
        tokio::time::advance(Duration::from_millis(15)).await;
        q.done(&key);
        assert_eq!(q.next().await, Some("svc"));
        assert_eq!(start.elapsed().as_millis(), 95);
        q.done(&"svc");
        // ...and from then on the key is held as before, until it is quiet again.
        assert_eq!(
            run_after(&q, start, &[10, 10, 400, 10]).await,
            [195, 395, 795, 805],
            "run start times (ms) after a change during a run"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_spacing_never_grows() {
        let q = WorkQueue::with_spacing(Spacing::fixed(Duration::from_millis(100)));
        let start = tokio::time::Instant::now();
        let began = run_10ms_apart(&q, start, 4).await;
        assert_eq!(began, [0, 100, 200, 300], "run start times (ms)");
    }

    #[test]
    fn a_grown_interval_stays_within_its_bounds() {
        let growing = spacing(100, 500, Start::Burst(0));
        assert_eq!(
            growing.grown(Duration::from_millis(100)),
            Duration::from_millis(200)
        );
        assert_eq!(
            growing.grown(Duration::from_millis(400)),
            Duration::from_millis(500)
        );
        assert_eq!(growing.grown(Duration::ZERO), Duration::from_millis(100));
        // A longest below the shortest means a fixed interval.
        let fixed = spacing(100, 50, Start::Burst(0));
        assert_eq!(
            fixed.grown(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
    }

    #[tokio::test]
    async fn a_queue_without_spacing_never_holds_a_key() {
        let q = WorkQueue::new();
        q.add("svc");
        let key = q.next().await.unwrap();
        q.done(&key);
        q.add("svc");
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), BASE_BACKOFF);
        assert_eq!(backoff(2), BASE_BACKOFF * 2);
        assert_eq!(backoff(4), BASE_BACKOFF * 8);
        assert_eq!(backoff(100), MAX_BACKOFF);
    }
}
