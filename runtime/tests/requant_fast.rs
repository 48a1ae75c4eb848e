//! The prepared requantization of the blocked kernels (`kernels::requant::Requant`) against
//! `quant::requantize`, bit for bit: random values over every valid scale, and every
//! accumulator around the rounding ties.

use proptest::prelude::*;
use tinyconv::kernels::requant::Requant;
use tinyconv::quant::{MAX_SCALE_EXPONENT, MIN_SCALE_EXPONENT, Multiplier, requantize};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn prepared_requantize_matches_requantize(
        acc in prop_oneof![
            any::<i32>(),
            -70_000_000i32..70_000_000,
            -5_000i32..5_000,
            (1i32 << 24) - 3..(1 << 24) + 3,
            (1i32 << 23) - 3..(1 << 23) + 3,
        ],
        mantissa in (1u32 << 23)..(1 << 24),
        shift in prop_oneof![(23 - MAX_SCALE_EXPONENT)..=(23 - MIN_SCALE_EXPONENT), 30i32..=45],
        zp in any::<i8>(), relu in any::<bool>(), lo in any::<i8>(),
    ) {
        let m = Multiplier { mantissa, shift };
        // The kernels' clamps (ReLU or none), and arbitrary ones.
        for lo in [if relu { zp as i32 } else { -128 }, lo as i32] {
            prop_assert_eq!(
                Requant::new(m, zp as i32, lo).apply(acc),
                requantize(acc, m, zp as i32, lo, 127),
                "acc {} m {:?} zp {} lo {}", acc, m, zp, lo
            );
        }
    }
}

/// Every accumulator around the points where `acc * S` crosses a half (where the double
/// rounding of `requantize` and the single rounding of the shortcut could differ), for the
/// scales of the shortcut's range and beyond.
#[test]
fn prepared_requantize_matches_requantize_at_ties() {
    for shift in 28..=58 {
        for mantissa in [
            1u32 << 23,
            (1 << 23) + 1,
            0xc0_0000,
            0xff_ffff,
            0xab_cdef,
            0x80_0001,
            0x9b_5a3f,
        ] {
            let m = Multiplier { mantissa, shift };
            let prepared = [-128, -5, 0, 17, 127].map(|zp| (zp, Requant::new(m, zp, zp)));
            let plain = [-128, -5, 0, 17, 127].map(|zp| (zp, Requant::new(m, zp, -128)));
            for y in 0i64..400 {
                // acc near (y + 1/2) / S
                let center = ((2 * y + 1) << (shift - 1)) / mantissa as i64;
                for acc in center - 3..=center + 3 {
                    for acc in [acc, -acc] {
                        let Ok(acc) = i32::try_from(acc) else {
                            continue;
                        };
                        for (zp, rq) in prepared {
                            assert_eq!(
                                rq.apply(acc),
                                requantize(acc, m, zp, zp, 127),
                                "acc {acc} m {m:?} zp {zp} relu"
                            );
                        }
                        for (zp, rq) in plain {
                            assert_eq!(
                                rq.apply(acc),
                                requantize(acc, m, zp, -128, 127),
                                "acc {acc} m {m:?} zp {zp}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Accumulators whose f32 product `acc * m` is rounded onto a tie of the final rounding by
/// its 24-bit rounding (`R24(acc * m)` an odd multiple of `2^(shift - 1)` while `acc * m` is
/// not), where rounding once would differ: the shortcut must leave them to the exact path.
#[test]
fn prepared_requantize_matches_requantize_where_double_rounding_differs() {
    let mut found = 0;
    for shift in 32..=50 {
        for mantissa in [(1u32 << 23) + 1, 0xab_cdef, 0xff_fffd, 0x80_1235, 0xc3_a001] {
            let m = Multiplier { mantissa, shift };
            let rq = [Requant::new(m, -128, -128), Requant::new(m, 3, -128)];
            for j in 0u64..512 {
                let tie = (2 * j + 1) << (shift - 1);
                let center = tie / mantissa as u64;
                for acc in center.saturating_sub(2)..=center + 2 {
                    let p = acc * mantissa as u64;
                    let d = (64 - p.leading_zeros()).saturating_sub(24);
                    let r24 = if d == 0 {
                        p
                    } else {
                        let q = p >> d;
                        let rem = p & ((1 << d) - 1);
                        let half = 1 << (d - 1);
                        (q + (rem > half || (rem == half && q & 1 == 1)) as u64) << d
                    };
                    if r24 == tie && p != tie {
                        found += 1;
                    }
                    let Ok(acc) = i32::try_from(acc) else {
                        continue;
                    };
                    assert_eq!(
                        rq[0].apply(acc),
                        requantize(acc, m, -128, -128, 127),
                        "acc {acc} m {m:?}"
                    );
                    assert_eq!(
                        rq[1].apply(acc),
                        requantize(acc, m, 3, -128, 127),
                        "acc {acc} m {m:?}"
                    );
                }
            }
        }
    }
    assert!(found > 100, "only {found} double-rounding cases");
}
