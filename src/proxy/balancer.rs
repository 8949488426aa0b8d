//! Host selection: weighted round robin, least request (power of two
//! choices over active requests) and weighted random, per priority level.
//!
//! Owns: the pick. The balancer yields candidates in its order and asks the
//! caller's predicate (built on `health::eligible()`) whether each may take
//! the request; it never reads health flags itself.
//! Must not touch: connections, stats, config parsing.
//!
//! No lock on the pick: round robin walks a precomputed smooth schedule with
//! one atomic cursor; random and least request draw from a thread-local RNG.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::model::LbPolicy;

/// The longest round-robin schedule built; larger weight sums are scaled.
const MAX_SCHEDULE: u64 = 8192;

/// What the balancer needs to know about a host.
pub trait Candidate {
    /// `load_balancing_weight` (≥ 1).
    fn weight(&self) -> u32;
    /// Requests in flight now (least request compares these).
    fn active_requests(&self) -> u64;
}

/// The hosts of one priority level and the state to pick among them.
#[derive(Debug)]
pub struct Level<H> {
    hosts: Vec<H>,
    // Smooth weighted round-robin order of host indices (nginx's algorithm):
    // weights 5,1,1 give a,a,b,a,c,a,a rather than a,a,a,a,a,b,c.
    schedule: Box<[u32]>,
    // One round-robin position per worker (Envoy's balancers are per
    // worker too): no cache line bounces between cores on every pick.
    cursors: Box<[Cursor]>,
    // Running weight sums, for weighted random draws.
    cumulative: Box<[u64]>,
}

/// A round-robin position on a cache line of its own.
#[derive(Debug)]
#[repr(align(64))]
struct Cursor(AtomicUsize);

impl<H: Candidate> Level<H> {
    /// A level over `hosts` (may be empty), for one data-path worker.
    pub fn new(hosts: Vec<H>) -> Self {
        Self::for_workers(hosts, 1)
    }

    /// A level over `hosts` with a round-robin position for each of
    /// `workers` data-path workers.
    pub fn for_workers(hosts: Vec<H>, workers: usize) -> Self {
        let weights: Vec<u32> = hosts.iter().map(|h| h.weight().max(1)).collect();
        let mut sum = 0u64;
        let cumulative = weights
            .iter()
            .map(|&w| {
                sum += u64::from(w);
                sum
            })
            .collect();
        // Start each position at a random point so that many proxies (and
        // workers) started together do not all hit the first host first.
        let cursors = (0..workers.max(1))
            .map(|_| {
                let start = if hosts.is_empty() {
                    0
                } else {
                    rand::random_range(0..hosts.len())
                };
                Cursor(AtomicUsize::new(start))
            })
            .collect();
        Self {
            schedule: smooth_schedule(&weights),
            hosts,
            cursors,
            cumulative,
        }
    }

    /// The hosts of this level.
    pub fn hosts(&self) -> &[H] {
        &self.hosts
    }

    /// A host of this level that `usable` accepts, chosen by `policy`.
    pub fn pick(&self, policy: LbPolicy, usable: impl Fn(&H) -> bool) -> Option<&H> {
        if self.hosts.is_empty() {
            return None;
        }
        match policy {
            LbPolicy::RoundRobin => self.round_robin(&usable),
            LbPolicy::Random => {
                let first = self.weighted_draw();
                self.scan_from(first, &usable)
            }
            LbPolicy::LeastRequest => self.least_request(&usable),
        }
    }

    fn round_robin(&self, usable: &impl Fn(&H) -> bool) -> Option<&H> {
        let len = self.schedule.len();
        let cursor = &self.cursors[super::worker::current() % self.cursors.len()];
        let start = cursor.0.fetch_add(1, Ordering::Relaxed);
        for step in 0..len {
            let index = self.schedule[(start.wrapping_add(step)) % len] as usize;
            if let Some(h) = self.hosts.get(index).filter(|h| usable(h)) {
                return Some(h);
            }
        }
        None
    }

    /// Power of two choices over two *distinct* hosts (Envoy draws with
    /// replacement, so with two hosts a quarter of picks compare a host with
    /// itself and land on it however loaded it is; distinct draws do not).
    fn least_request(&self, usable: &impl Fn(&H) -> bool) -> Option<&H> {
        let len = self.hosts.len();
        if len == 1 {
            return self.hosts.first().filter(|h| usable(h));
        }
        let first = self.weighted_draw();
        let mut second = self.weighted_draw();
        if second == first {
            // Weighted redraws could loop on a dominant host; step instead.
            second = (first + 1 + rand::random_range(0..len - 1)) % len;
        }
        let a = self.hosts.get(first).filter(|h| usable(h));
        let b = self.hosts.get(second).filter(|h| usable(h));
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.active_requests() < a.active_requests() {
                b
            } else {
                a
            }),
            (Some(h), None) | (None, Some(h)) => Some(h),
            (None, None) => self.scan_from(rand::random_range(0..len), usable),
        }
    }

    /// The first usable host at or after `start`, wrapping around.
    fn scan_from(&self, start: usize, usable: &impl Fn(&H) -> bool) -> Option<&H> {
        let len = self.hosts.len();
        (0..len)
            .map(|step| &self.hosts[(start + step) % len])
            .find(|h| usable(h))
    }

    fn weighted_draw(&self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        if total == 0 {
            return 0;
        }
        let r = rand::random_range(0..total);
        self.cumulative.partition_point(|&c| c <= r)
    }
}

/// Smooth weighted round robin over `weights`, as a fixed cycle of indices.
fn smooth_schedule(weights: &[u32]) -> Box<[u32]> {
    let n = weights.len();
    if n == 0 {
        return Box::new([]);
    }
    if weights.iter().all(|&w| w == weights[0]) {
        return (0..n as u32).collect();
    }
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let limit = MAX_SCHEDULE.max(n as u64);
    let scaled: Vec<i64> = weights
        .iter()
        .map(|&w| {
            let w = u64::from(w);
            let w = if total > limit {
                (w * limit / total).max(1)
            } else {
                w
            };
            i64::try_from(w).unwrap_or(i64::MAX)
        })
        .collect();
    let cycle: i64 = scaled.iter().sum();
    let mut current = vec![0i64; n];
    let mut out = Vec::with_capacity(usize::try_from(cycle).unwrap_or(0));
    for _ in 0..cycle {
        let mut best = 0;
        for i in 0..n {
            current[i] += scaled[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= cycle;
        out.push(best as u32);
    }
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[derive(Debug)]
    struct TestHost {
        id: usize,
        weight: u32,
        active: AtomicU64,
        up: bool,
    }

    impl Candidate for TestHost {
        fn weight(&self) -> u32 {
            self.weight
        }
        fn active_requests(&self) -> u64 {
            self.active.load(Ordering::Relaxed)
        }
    }

    fn hosts(weights: &[u32]) -> Vec<TestHost> {
        weights
            .iter()
            .enumerate()
            .map(|(id, &weight)| TestHost {
                id,
                weight,
                active: AtomicU64::new(0),
                up: true,
            })
            .collect()
    }

    #[test]
    fn smooth_schedule_interleaves() {
        assert_eq!(&*smooth_schedule(&[5, 1, 1]), &[0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(&*smooth_schedule(&[2, 2]), &[0, 1]);
    }

    #[test]
    fn weighted_round_robin_distribution_is_exact_over_a_cycle() {
        let level = Level::new(hosts(&[3, 1]));
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[level.pick(LbPolicy::RoundRobin, |_| true).unwrap().id] += 1;
        }
        assert_eq!(counts, [300, 100]);
    }

    #[test]
    fn unusable_hosts_are_skipped() {
        let mut hs = hosts(&[1, 1, 1]);
        hs[1].up = false;
        let level = Level::new(hs);
        for policy in [
            LbPolicy::RoundRobin,
            LbPolicy::Random,
            LbPolicy::LeastRequest,
        ] {
            for _ in 0..100 {
                let h = level.pick(policy, |h| h.up).unwrap();
                assert_ne!(h.id, 1, "{policy:?}");
            }
        }
        let none = Level::new(hosts(&[1, 1]));
        assert!(none.pick(LbPolicy::RoundRobin, |_| false).is_none());
        assert!(none.pick(LbPolicy::LeastRequest, |_| false).is_none());
    }

    #[test]
    fn least_request_prefers_the_idle_host() {
        let hs = hosts(&[1, 1]);
        hs[0].active.store(10, Ordering::Relaxed);
        let level = Level::new(hs);
        let mut to_idle = 0;
        for _ in 0..1000 {
            if level.pick(LbPolicy::LeastRequest, |_| true).unwrap().id == 1 {
                to_idle += 1;
            }
        }
        // Two hosts, distinct draws: every pick compares both.
        assert_eq!(to_idle, 1000);
    }

    #[test]
    fn huge_weights_are_scaled_not_exploded() {
        let s = smooth_schedule(&[1_000_000, 1]);
        assert!(s.len() as u64 <= MAX_SCHEDULE + 2);
        assert!(s.contains(&1));
    }
}
