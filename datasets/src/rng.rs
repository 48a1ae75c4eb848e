//! A small self-contained seeded generator, so splits and augmentations are reproducible
//! across versions of everything else.
//!
//! The same SplitMix64 as the trainer's `rng.rs` (same constants, same stepping and the same
//! Lemire draw), copied rather than shared because the trainer depends on this crate, not the
//! other way round.

/// One step of SplitMix64: a bijective, well-mixing function of `x`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic generator: the SplitMix64 sequence from a seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let out = splitmix64(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }

    /// A uniform integer in `0..n` (`n > 0`), by Lemire's multiply-shift with rejection.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "below(0)");
        let n = n as u64;
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as usize;
            }
        }
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// Shuffle `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_stream_as_the_trainer() {
        // The trainer's pinned values (trainer/src/rng.rs): the same algorithm gives them.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        let mut r = SplitMix64::new(splitmix64(splitmix64(splitmix64(42) ^ 1) ^ 2));
        let mut order: Vec<usize> = (0..5).collect();
        r.shuffle(&mut order);
        assert_eq!(order, [1, 4, 0, 3, 2]);
    }

    #[test]
    fn below_is_in_range_and_coin_is_roughly_fair() {
        let mut r = SplitMix64::new(9);
        for n in 1..50 {
            for _ in 0..20 {
                assert!(r.below(n) < n);
            }
        }
        let heads = (0..10_000).filter(|_| r.coin()).count();
        assert!((4_700..5_300).contains(&heads), "{heads}");
    }
}
