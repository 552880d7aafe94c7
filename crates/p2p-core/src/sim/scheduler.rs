//! The seeded scheduler: a small deterministic random source and the choices it makes about background work.
//!
//! Decisions are values: [`Scheduler::background_steps`] says how many
//! runnable operations to carry out at a driver call, and
//! [`Scheduler::pick`] which of the runnable streams goes next. The machine
//! carries them out; the same seed gives the same choices for the same calls.

/// SplitMix64 (Steele, Lea and Flood): tiny, fast, and stable across Rust releases.
#[derive(Clone, Debug)]
pub(super) struct SplitMix64(u64);

impl SplitMix64 {
    pub(super) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Chance, in thousandths, that a driver call also carries out some
/// runnable work, by `seed % 5`: from "only what the host observes" to "almost always".
pub(super) const EAGERNESS_PER_MILLE: [u64; 5] = [0, 50, 200, 500, 900];

/// The most operations carried out in the background at one driver call.
pub(super) const MAX_BACKGROUND_STEPS: u64 = 4;

#[derive(Clone, Debug)]
pub(super) struct Scheduler {
    rng: SplitMix64,
    eagerness_per_mille: u64,
}

impl Scheduler {
    pub(super) fn new(seed: u64) -> Scheduler {
        Scheduler {
            rng: SplitMix64::new(seed ^ 0xa076_1d64_78bd_642f),
            eagerness_per_mille: EAGERNESS_PER_MILLE[(seed % 5) as usize],
        }
    }

    /// How many runnable operations to carry out now, before a driver call.
    pub(super) fn background_steps(&mut self) -> usize {
        if self.eagerness_per_mille == 0 || self.rng.below(1000) >= self.eagerness_per_mille {
            return 0;
        }
        1 + self.rng.below(MAX_BACKGROUND_STEPS) as usize
    }

    /// Which of `count` runnable streams advances next.
    pub(super) fn pick(&mut self, count: usize) -> usize {
        self.rng.below(count as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_choices() {
        let run = |seed| {
            let mut s = Scheduler::new(seed);
            (0..200)
                .map(|_| (s.background_steps(), s.pick(7)))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(8));
    }

    #[test]
    fn eagerness_follows_the_seed() {
        let busy = |seed| {
            let mut s = Scheduler::new(seed);
            (0..1000).filter(|_| s.background_steps() > 0).count()
        };
        assert_eq!(busy(0), 0, "seed 0 runs only what the host observes");
        assert!(busy(4) > 800, "seed 4 runs work at most calls");
        assert!(busy(1) < busy(2) && busy(2) < busy(3) && busy(3) < busy(4));
        let mut s = Scheduler::new(4);
        assert!((0..1000).all(|_| s.background_steps() <= MAX_BACKGROUND_STEPS as usize));
        assert!((0..1000).all(|_| s.pick(3) < 3));
    }
}
