//! Seeds and permutations derived from (seed, epoch), so any epoch's randomness can be
//! reproduced on its own — what a resumed run needs.
//!
//! Deliberately self-contained (SplitMix64, Fisher-Yates) rather than `rand`, whose streams
//! may change between versions: a checkpoint written today must resume identically later.

use std::sync::{Mutex, MutexGuard};

/// Serializes use of burn's backend RNG.
///
/// Burn's Flex backend keeps a single RNG for the whole process: `Device::seed` replaces it and
/// every random op (initializers, dropout) draws from it. Two threads that seed it and draw
/// from it at once interleave their draws and neither gets a reproducible sequence. Whatever
/// relies on a seeded sequence holds this lock meanwhile; [`crate::train::train`] holds it for
/// the whole run.
pub fn backend_rng_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A panic while holding it leaves nothing inconsistent (the RNG is re-seeded by each user).
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a derived seed is for; each purpose gets an independent stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Initial weights.
    Init = 1,
    /// The order of the training images in an epoch.
    Shuffle = 2,
    /// The backend RNG (dropout masks) during an epoch.
    Dropout = 3,
    /// Training-image augmentation (crops, flips) during an epoch.
    Augment = 4,
}

/// One step of SplitMix64: a bijective, well-mixing function of `x`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed for `stream` in `epoch` (1-based; 0 for things before the first epoch).
pub fn derive(seed: u64, epoch: usize, stream: Stream) -> u64 {
    splitmix64(splitmix64(splitmix64(seed) ^ epoch as u64) ^ stream as u64)
}

/// A small deterministic generator (SplitMix64 sequence).
#[derive(Clone, Debug)]
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
        let n = n as u64;
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as usize;
            }
        }
    }
}

/// The order in which epoch `epoch` visits `n` training images.
pub fn epoch_permutation(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut rng = SplitMix64::new(derive(seed, epoch, Stream::Shuffle));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation_and_reproducible() {
        let p = epoch_permutation(42, 3, 1000);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_eq!(p, epoch_permutation(42, 3, 1000));
        assert_ne!(p, epoch_permutation(42, 4, 1000));
        assert_ne!(p, epoch_permutation(43, 3, 1000));
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn streams_differ() {
        assert_ne!(derive(1, 1, Stream::Shuffle), derive(1, 1, Stream::Dropout));
        assert_ne!(derive(1, 1, Stream::Init), derive(1, 2, Stream::Init));
    }

    #[test]
    fn pinned_values() {
        // Pinned so that a change to the derivation (which would silently break resuming
        // checkpoints written before it) fails here.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(epoch_permutation(42, 1, 5), PINNED);
    }
    const PINNED: [usize; 5] = [1, 4, 0, 3, 2];

    #[test]
    fn below_is_in_range() {
        let mut r = SplitMix64::new(9);
        for n in 1..50 {
            for _ in 0..20 {
                assert!(r.below(n) < n);
            }
        }
    }
}
