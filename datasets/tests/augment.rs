//! Crop-with-padding and horizontal-flip augmentation.

use tinyconv_datasets::{Augment, SplitMix64};

/// A 3x3 RGB image whose pixel (y, x) is [10y + x + 1, 100 + 10y + x, 200].
fn image3() -> Vec<u8> {
    (0..3)
        .flat_map(|y| (0..3).flat_map(move |x| [10 * y + x + 1, 100 + 10 * y + x, 200]))
        .collect()
}

fn run(aug: Augment, src: &[u8], seed: u64) -> Vec<u8> {
    let mut dst = vec![0xAA; src.len()];
    aug.augment_into(src, 3, 3, 3, &mut SplitMix64::new(seed), &mut dst);
    dst
}

#[test]
fn off_is_the_identity() {
    let src = image3();
    for seed in 0..20 {
        assert_eq!(run(Augment::default(), &src, seed), src);
    }
    assert!(Augment::default().is_off());
}

#[test]
fn flip_is_a_mirror_and_twice_is_the_identity() {
    let src = image3();
    let flip = Augment {
        crop_padding: 0,
        hflip: true,
    };
    // By hand: row y of the mirror is pixels (y, 2), (y, 1), (y, 0).
    let mirror: Vec<u8> = (0..3)
        .flat_map(|y| {
            (0..3)
                .rev()
                .flat_map(move |x| [10 * y + x + 1, 100 + 10 * y + x, 200])
        })
        .collect();
    let outs: Vec<_> = (0..64).map(|s| run(flip, &src, s)).collect();
    assert!(outs.iter().all(|o| *o == src || *o == mirror));
    let flipped = outs.iter().filter(|o| **o == mirror).count();
    assert!((16..=48).contains(&flipped), "{flipped} of 64 flipped");
    // A seed that flips, flips its own output back.
    let seed = (0..64).find(|&s| outs[s as usize] == mirror).unwrap();
    assert_eq!(run(flip, &mirror, seed), src);
}

#[test]
fn crop_shifts_by_hand() {
    let src = image3();
    let crop = Augment {
        crop_padding: 1,
        hflip: false,
    };
    // The window's top-left in the padded 5x5 image is (dy, dx) in 0..=2; (1, 1) is no shift.
    // Written out by hand, pixel values as in image3 (R channel 10y + x + 1; 0 = padding).
    let p = |r: u8| -> [u8; 3] { if r == 0 { [0, 0, 0] } else { [r, 99 + r, 200] } };
    let by_hand: [[u8; 9]; 9] = [
        [0, 0, 0, 0, 1, 2, 0, 11, 12],   // (0, 0): down-right
        [0, 0, 0, 1, 2, 3, 11, 12, 13],  // (0, 1): down
        [0, 0, 0, 2, 3, 0, 12, 13, 0],   // (0, 2): down-left
        [0, 1, 2, 0, 11, 12, 0, 21, 22], // (1, 0): right
        [1, 2, 3, 11, 12, 13, 21, 22, 23],
        [2, 3, 0, 12, 13, 0, 22, 23, 0],
        [0, 11, 12, 0, 21, 22, 0, 0, 0],
        [11, 12, 13, 21, 22, 23, 0, 0, 0],
        [12, 13, 0, 22, 23, 0, 0, 0, 0],
    ];
    let expected: Vec<Vec<u8>> = by_hand
        .iter()
        .map(|rs| rs.iter().flat_map(|&r| p(r)).collect())
        .collect();
    let mut seen = [false; 9];
    for seed in 0..200 {
        let out = run(crop, &src, seed);
        let which = expected
            .iter()
            .position(|e| *e == out)
            .unwrap_or_else(|| panic!("seed {seed}: {out:?}"));
        seen[which] = true;
        // The documented draw order: row offset, then column offset.
        let mut rng = SplitMix64::new(seed);
        assert_eq!(which, rng.below(3) * 3 + rng.below(3), "seed {seed}");
    }
    assert_eq!(seen, [true; 9], "every shift occurs");
    // Negative control: the centre window is the identity, so not everything is.
    assert_eq!(expected[4], src);
}

#[test]
fn seeded_and_reproducible() {
    let aug = Augment {
        crop_padding: 4,
        hflip: true,
    };
    let src: Vec<u8> = (0..32 * 32 * 3).map(|i| (i % 251) as u8).collect();
    let batch = |seed: u64| -> Vec<Vec<u8>> {
        let mut rng = SplitMix64::new(seed);
        (0..50)
            .map(|_| {
                let mut dst = vec![0; src.len()];
                aug.augment_into(&src, 32, 32, 3, &mut rng, &mut dst);
                dst
            })
            .collect()
    };
    assert_eq!(batch(1), batch(1));
    assert_ne!(batch(1), batch(2));
    assert!(batch(1).iter().any(|o| *o != src));
}
