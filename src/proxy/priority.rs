//! Envoy's priority arithmetic: how much of a cluster's traffic each
//! priority level takes, healthy before degraded, and when a level is in
//! panic (`load_balancer_impl.cc`, envoy-health.md §3.3-3.4).
//!
//! Owns: the load plan, a pure function of per-level host counts, rebuilt
//! whenever host health changes (never per request), and the draw that
//! picks a level for one request.
//! Must not touch: host flags (the caller counts) or the balancers.

/// How many hosts of one priority level are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelCounts {
    /// All hosts.
    pub total: u32,
    /// Coarse-healthy hosts.
    pub healthy: u32,
    /// Coarse-degraded hosts.
    pub degraded: u32,
    /// Excluded hosts (left out of every denominator).
    pub excluded: u32,
}

/// Which hosts of the drawn level may take the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Healthy hosts only.
    Healthy,
    /// Degraded hosts only (healthy ones could not absorb the load).
    Degraded,
    /// The level is in panic: every host, whatever its health.
    Panic,
}

/// A level and which of its hosts to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Index into the cluster's levels.
    pub level: usize,
    /// Which hosts.
    pub pool: Pool,
}

/// Per-level loads in percent; they sum to 100 unless nothing is usable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadPlan {
    healthy: Vec<u32>,
    degraded: Vec<u32>,
    panic: Vec<bool>,
    /// Set when all traffic goes to level 0's healthy hosts and no level
    /// panics: the common case, decided without a random draw.
    all_to_first: bool,
}

impl LoadPlan {
    /// Envoy's arithmetic over `levels` (in priority order) with the
    /// overprovisioning factor (percent, 140 = 1.4) and panic threshold
    /// (percent, rounded to a whole percent as Envoy does; 0 disables panic).
    pub fn compute(levels: &[LevelCounts], overprovisioning: u32, panic_threshold: f64) -> Self {
        let n = levels.len();
        // Envoy: PROTOBUF_PERCENT_TO_ROUNDED_INTEGER_OR_DEFAULT.
        let panic_threshold = panic_threshold.round().clamp(0.0, 100.0) as u32;
        let usable_total = |l: &LevelCounts| l.total.saturating_sub(l.excluded);
        let share = |count: u32, l: &LevelCounts| -> u32 {
            let denom = usable_total(l);
            if denom == 0 {
                0
            } else {
                let v = u64::from(overprovisioning) * u64::from(count) / u64::from(denom);
                u32::try_from(v.min(100)).unwrap_or(100)
            }
        };
        let health: Vec<u32> = levels.iter().map(|l| share(l.healthy, l)).collect();
        let degraded: Vec<u32> = levels.iter().map(|l| share(l.degraded, l)).collect();
        let nta = (health.iter().sum::<u32>() + degraded.iter().sum::<u32>()).min(100);

        // Envoy compares whole percents: (healthy + degraded) × 100 / usable.
        let in_panic = |l: &LevelCounts| -> bool {
            let pct = std::num::NonZeroU32::new(usable_total(l))
                .map_or(0, |denom| (l.healthy + l.degraded) * 100 / denom);
            pct < panic_threshold
        };
        let panic: Vec<bool> = levels.iter().map(|l| nta != 100 && in_panic(l)).collect();

        if nta == 0 {
            if panic_threshold > 0 && n > 0 && panic.iter().all(|p| *p) {
                return Self::total_panic(levels);
            }
            // Envoy: no availability and no panic puts all load on the first
            // level; its healthy hosts (if rounding hid them) may still take it.
            let mut healthy = vec![0; n];
            if let Some(first) = healthy.first_mut() {
                *first = 100;
            }
            return Self {
                healthy,
                degraded: vec![0; n],
                panic: vec![false; n],
                all_to_first: false,
            };
        }
        if n > 0 && panic.iter().all(|p| *p) {
            return Self::total_panic(levels);
        }

        let mut remaining = 100u32;
        let mut healthy_load = vec![0u32; n];
        for (i, h) in health.iter().enumerate() {
            let load = remaining.min(h * 100 / nta);
            healthy_load[i] = load;
            remaining -= load;
        }
        let mut degraded_load = vec![0u32; n];
        for (i, d) in degraded.iter().enumerate() {
            let load = remaining.min(d * 100 / nta);
            degraded_load[i] = load;
            remaining -= load;
        }
        // Rounding leftovers go to the first level with healthy load (else
        // the first with degraded load), as Envoy does.
        if remaining > 0 {
            if let Some(i) = healthy_load.iter().position(|l| *l > 0) {
                healthy_load[i] += remaining;
            } else if let Some(i) = degraded_load.iter().position(|l| *l > 0) {
                degraded_load[i] += remaining;
            }
        }
        let all_to_first = healthy_load.first() == Some(&100) && !panic.iter().any(|p| *p);
        Self {
            healthy: healthy_load,
            degraded: degraded_load,
            panic,
            all_to_first,
        }
    }

    /// Every level panics: load by host counts, to all hosts.
    fn total_panic(levels: &[LevelCounts]) -> Self {
        let n = levels.len();
        let all: u32 = levels.iter().map(|l| l.total).sum();
        let mut load = vec![0u32; n];
        if let Some(all) = std::num::NonZeroU32::new(all) {
            for (i, l) in levels.iter().enumerate() {
                load[i] = 100 * l.total / all;
            }
            let given: u32 = load.iter().sum();
            if let Some(i) = levels.iter().position(|l| l.total > 0) {
                load[i] += 100 - given;
            }
        }
        Self {
            healthy: load,
            degraded: vec![0; n],
            panic: vec![true; n],
            all_to_first: false,
        }
    }

    /// Whether level `i` is in panic.
    pub fn is_panic(&self, i: usize) -> bool {
        self.panic.get(i).copied().unwrap_or(false)
    }

    /// The level and pool for one request; `roll` is uniform in 1..=100.
    pub fn choose(&self, roll: impl FnOnce() -> u32) -> Option<Choice> {
        if self.all_to_first {
            return Some(Choice {
                level: 0,
                pool: Pool::Healthy,
            });
        }
        let r = roll();
        let mut acc = 0;
        for (i, load) in self.healthy.iter().enumerate() {
            acc += load;
            if *load > 0 && r <= acc {
                let pool = if self.is_panic(i) {
                    Pool::Panic
                } else {
                    Pool::Healthy
                };
                return Some(Choice { level: i, pool });
            }
        }
        for (i, load) in self.degraded.iter().enumerate() {
            acc += load;
            if *load > 0 && r <= acc {
                let pool = if self.is_panic(i) {
                    Pool::Panic
                } else {
                    Pool::Degraded
                };
                return Some(Choice { level: i, pool });
            }
        }
        None
    }

    /// Healthy-host load per level (for `/clusters` and tests).
    pub fn healthy_load(&self) -> &[u32] {
        &self.healthy
    }

    /// Degraded-host load per level.
    pub fn degraded_load(&self) -> &[u32] {
        &self.degraded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(total: u32, healthy: u32, degraded: u32) -> LevelCounts {
        LevelCounts {
            total,
            healthy,
            degraded,
            excluded: 0,
        }
    }

    #[test]
    fn a_level_keeps_everything_until_under_about_72_percent_healthy() {
        let p = LoadPlan::compute(&[level(10, 8, 0), level(10, 10, 0)], 140, 50.0);
        assert_eq!(p.healthy_load(), &[100, 0]);
        assert!(p.all_to_first);
        // 5/10 healthy: 70% health, the rest spills to priority 1.
        let p = LoadPlan::compute(&[level(10, 5, 0), level(10, 10, 0)], 140, 50.0);
        assert_eq!(p.healthy_load(), &[70, 30]);
        assert!(!p.is_panic(0), "NTA is 100, so no level panics");
    }

    #[test]
    fn degraded_hosts_take_only_what_healthy_ones_cannot() {
        // Envoy's docs: P0 with 25% healthy and 65% degraded hosts sends
        // 35% to healthy and 65% to degraded.
        let p = LoadPlan::compute(&[level(100, 25, 65)], 140, 50.0);
        assert_eq!(p.healthy_load(), &[35]);
        assert_eq!(p.degraded_load(), &[65]);
    }

    #[test]
    fn panic_below_the_threshold_sends_to_every_host() {
        let p = LoadPlan::compute(&[level(4, 1, 0)], 140, 50.0);
        assert!(p.is_panic(0));
        assert_eq!(
            p.choose(|| 1),
            Some(Choice {
                level: 0,
                pool: Pool::Panic
            })
        );
        // Panic disabled: only the healthy host.
        let p = LoadPlan::compute(&[level(4, 1, 0)], 140, 0.0);
        assert_eq!(p.choose(|| 1).map(|c| c.pool), Some(Pool::Healthy));
    }

    #[test]
    fn total_panic_splits_by_host_counts() {
        let p = LoadPlan::compute(&[level(3, 0, 0), level(1, 0, 0)], 140, 50.0);
        assert_eq!(p.healthy_load(), &[75, 25]);
        assert!(p.is_panic(0) && p.is_panic(1));
    }

    #[test]
    fn nothing_usable_and_panic_disabled_sends_to_the_first_levels_healthy_hosts() {
        let p = LoadPlan::compute(&[level(3, 0, 0)], 140, 0.0);
        assert_eq!(
            p.choose(|| 50),
            Some(Choice {
                level: 0,
                pool: Pool::Healthy
            })
        );
    }

    #[test]
    fn the_panic_threshold_is_a_whole_percent() {
        // 2 of 3 healthy is 66%: below a 66.6% threshold rounded to 67.
        let p = LoadPlan::compute(&[level(3, 2, 0)], 100, 66.6);
        assert!(p.is_panic(0));
    }

    #[test]
    fn excluded_hosts_leave_the_denominator() {
        let mut l = level(4, 2, 0);
        l.excluded = 2;
        let p = LoadPlan::compute(&[l], 140, 50.0);
        assert_eq!(p.healthy_load(), &[100]);
        assert!(!p.is_panic(0));
    }

    #[test]
    fn the_roll_walks_healthy_then_degraded_loads() {
        let p = LoadPlan::compute(&[level(10, 5, 0), level(10, 10, 0)], 140, 50.0);
        assert_eq!(p.choose(|| 70).map(|c| c.level), Some(0));
        assert_eq!(p.choose(|| 71).map(|c| c.level), Some(1));
        assert_eq!(p.choose(|| 100).map(|c| c.level), Some(1));
    }
}
