//! The fused tflite requantization (`graph::kernels::requant::Fused`, the form the Cortex-M4
//! blocks compute) against TFLM's two-step arithmetic (`tflite_rule`'s
//! `multiply_by_quantized_multiplier`, then the zero point with saturation and the clamp), on
//! random multipliers, shifts 2..=23, zero points and clamps, at random accumulators over the
//! whole int32 range and at the two roundings' ties: accumulators next to the doubling high
//! multiply's halves (`acc M = 2^30 mod 2^31`) and next to the rounding divide's halves
//! (`SRDHM(acc, M) = 2^(e-1) mod 2^e`), both signs, plus i32::MIN/MAX and the clamp edges.
//! Negative control: the form without the sign correction (`[acc < 0] 2^31`) is caught.
//! The same for `Wide` (every shift from -23 to 31), whose control drops the rounding term,
//! and for the late-zero-point form (`Layer::late_channel`: shifts 2..=31 and zero multipliers),
//! whose control adds the zero point inside the 64-bit sum where it no longer fits.

use tinyconv::graph::kernels::requant::{Fused, Layer, Wide};
use tinyconv::testing::SplitMix64;
use tinyconv::tflite_rule::{self, QuantizedMultiplier};

/// TFLM's output value: `clamp(sat(MBQM(acc, m) + z), lo, hi)`.
fn reference(acc: i32, m: QuantizedMultiplier, z: i32, lo: i32, hi: i32) -> i8 {
    tflite_rule::multiply_by_quantized_multiplier(acc, m)
        .saturating_add(z)
        .clamp(lo, hi) as i8
}

/// The fused form without the `[acc < 0]` correction: wrong at some negative ties.
fn without_sign_correction(q: &Fused, acc: i32) -> i8 {
    let k = ((q.khi as i64) << 32) | (1i64 << 30);
    let x = (acc as i64 * q.m as i64).wrapping_add(k);
    (((x >> 32) as i32) >> q.sh).clamp(q.lo, q.hi) as i8
}

/// Accumulators at and around both roundings' ties for multiplier `m` and shift `e`.
fn ties(rng: &mut SplitMix64, m: i32, e: u32, out: &mut Vec<i32>) {
    // The rounding divide: a high word h = q 2^e + 2^(e-1); acc ~ h 2^31 / M.
    for _ in 0..8 {
        let q = rng.range(-(1 << (24 - e.min(23))), 1 << (24 - e.min(23)));
        let h = q * (1i64 << e) + (1i64 << (e - 1));
        let acc = (h << 31) / m as i64;
        for d in -3..=3 {
            let a = acc + d;
            if a >= i32::MIN as i64 && a <= i32::MAX as i64 {
                out.push(a as i32);
            }
        }
    }
    // The doubling high multiply: acc M = 2^30 (mod 2^31), for odd M (acc = 2^30 M^-1).
    if m % 2 == 1 {
        let mut inv: u64 = 1; // Newton's iteration for M^-1 mod 2^64
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub((m as u64).wrapping_mul(inv)));
        }
        let base = ((1u64 << 30).wrapping_mul(inv) & ((1 << 31) - 1)) as i64;
        for k in [-2i64, -1, 0, 1] {
            let a = base + k * (1 << 31);
            for d in -1..=1 {
                let v = a + d;
                if v >= i32::MIN as i64 && v <= i32::MAX as i64 {
                    out.push(v as i32);
                }
            }
        }
    }
}

#[test]
fn fused_equals_tflm_two_step_requantization() {
    let mut rng = SplitMix64(16);
    let mut checked = 0u64;
    let mut missed_by_control = 0u64;
    let mut accs = Vec::new();
    for case in 0..6000 {
        let m = QuantizedMultiplier {
            multiplier: match case % 4 {
                0 => 1 << 30,
                1 => i32::MAX,
                _ => rng.range(1 << 30, i32::MAX as i64) as i32,
            },
            shift: -(rng.range(2, 23) as i32),
        };
        let e = (-m.shift) as u32;
        let z = rng.range(-128, 127) as i32;
        let (lo, hi) = match rng.range(0, 3) {
            0 => (-128, 127),
            1 => (z, 127),
            2 => (rng.range(-128, 0) as i32, rng.range(0, 126) as i32),
            _ => {
                let a = rng.range(-128, 127) as i32;
                let b = rng.range(-128, 127) as i32;
                (a.min(b), a.max(b))
            }
        };
        let q = Fused::new(m, z, lo, hi).expect("a fused form for shifts 2..=23");
        accs.clear();
        accs.extend([i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX - 1, i32::MAX]);
        for _ in 0..200 {
            // Whole range, and the small sums real layers make.
            accs.push(rng.next_u64() as i32);
            accs.push(rng.range(-(1 << (e + 9)), 1 << (e + 9)) as i32);
        }
        ties(&mut rng, m.multiplier, e, &mut accs);
        for &acc in &accs {
            let expected = reference(acc, m, z, lo, hi);
            assert_eq!(
                q.apply(acc),
                expected,
                "acc {acc}, M {}, shift {}, z {z}, clamp {lo}..={hi}",
                m.multiplier,
                m.shift
            );
            if without_sign_correction(&q, acc) != expected {
                missed_by_control += 1;
            }
            checked += 1;
        }
    }
    println!("{checked} accumulators; the uncorrected form is wrong on {missed_by_control}");
    assert!(checked > 2_000_000);
    // Negative control: the same harness catches the form without the sign correction.
    assert!(missed_by_control > 100, "{missed_by_control}");
}

#[test]
fn small_accumulators_exhaustively_for_some_channels() {
    // Every accumulator in -2^20..2^20 for a few channels of each shift (ties included by
    // construction).
    let mut rng = SplitMix64(7);
    for e in [2u32, 3, 7, 12, 23] {
        let m = QuantizedMultiplier {
            multiplier: rng.range(1 << 30, i32::MAX as i64) as i32,
            shift: -(e as i32),
        };
        let z = rng.range(-128, 127) as i32;
        let q = Fused::new(m, z, -128, 127).unwrap();
        // Scale the range so that shift 23 still sees many distinct outputs.
        for acc in -(1i32 << 20)..(1 << 20) {
            let a = acc.wrapping_mul(1 << (e.saturating_sub(12)));
            assert_eq!(q.apply(a), reference(a, m, z, -128, 127), "acc {a}, e {e}");
        }
    }
}

#[test]
fn no_fused_form_outside_its_domain() {
    let m = |multiplier, shift| QuantizedMultiplier { multiplier, shift };
    assert!(Fused::new(m(1 << 30, -1), 0, -128, 127).is_none());
    assert!(Fused::new(m(1 << 30, 0), 0, -128, 127).is_none());
    assert!(Fused::new(m(1 << 30, 3), 0, -128, 127).is_none());
    assert!(Fused::new(m(1 << 30, -24), 0, -128, 127).is_none());
    assert!(Fused::new(m(0, -5), 0, -128, 127).is_none());
    assert!(Fused::new(m(i32::MIN, -5), 0, -128, 127).is_none());
    assert!(Fused::new(m(1 << 30, -5), 0, 10, 5).is_none());
    assert!(Fused::new(m(1 << 30, -5), 0, -128, 127).is_some());
}

/// The wide form without the `e >= 1` rounding term `2^(30 + e)` (truncates instead of
/// rounding the divide): the negative control of the wide-form test.
fn wide_without_rounding(acc: i32, m: QuantizedMultiplier, z: i32, lo: i32, hi: i32) -> i8 {
    let e = (-m.shift).max(0) as u32;
    let x = acc.wrapping_shl(m.shift.max(0) as u32) as i64;
    let k = (1i64 << 30) + ((z as i64) << (31 + e));
    ((x * m.multiplier as i64 + k) >> (31 + e)).clamp(lo as i64, hi as i64) as i8
}

#[test]
fn wide_equals_tflm_two_step_requantization_for_every_shift() {
    let mut rng = SplitMix64(23);
    let mut checked = 0u64;
    let mut missed_by_control = 0u64;
    let mut accs = Vec::new();
    for case in 0..6000 {
        let shift = rng.range(-23, 31) as i32;
        let m = QuantizedMultiplier {
            multiplier: match case % 4 {
                0 => 1 << 30,
                1 => i32::MAX,
                _ => rng.range(1 << 30, i32::MAX as i64) as i32,
            },
            shift,
        };
        let z = rng.range(-128, 127) as i32;
        let (lo, hi) = match rng.range(0, 2) {
            0 => (-128, 127),
            1 => (z, 127),
            _ => {
                let a = rng.range(-128, 127) as i32;
                let b = rng.range(-128, 127) as i32;
                (a.min(b), a.max(b))
            }
        };
        let q = Wide::new(m, z, lo, hi).expect("a wide form for shifts -23..=31");
        accs.clear();
        accs.extend([i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX - 1, i32::MAX]);
        let e = (-shift).max(0) as u32;
        for _ in 0..200 {
            accs.push(rng.next_u64() as i32);
            let span = 1i64 << (e + 9);
            accs.push(rng.range(-span, span) as i32);
        }
        if e >= 1 {
            ties(&mut rng, m.multiplier, e, &mut accs);
        }
        for &acc in &accs {
            let expected = reference(acc, m, z, lo, hi);
            assert_eq!(
                q.apply(acc),
                expected,
                "acc {acc}, M {}, shift {shift}, z {z}, clamp {lo}..={hi}",
                m.multiplier
            );
            if wide_without_rounding(acc, m, z, lo, hi) != expected {
                missed_by_control += 1;
            }
            checked += 1;
        }
    }
    println!("{checked} accumulators; the form without rounding is wrong on {missed_by_control}");
    assert!(checked > 2_000_000);
    assert!(missed_by_control > 1000, "{missed_by_control}");
}

#[test]
fn no_wide_form_outside_its_domain() {
    let m = |multiplier, shift| QuantizedMultiplier { multiplier, shift };
    assert!(Wide::new(m(1 << 30, -24), 0, -128, 127).is_none());
    assert!(Wide::new(m(1 << 30, 32), 0, -128, 127).is_none());
    assert!(Wide::new(m(0, -1), 0, -128, 127).is_none());
    assert!(Wide::new(m(1 << 30, 0), 0, 10, 5).is_none());
    assert!(Wide::new(m(1 << 30, 0), 0, -128, 127).is_some());
    assert!(Wide::new(m(1 << 30, 3), 0, -128, 127).is_some());
}

/// The late form with the zero point inside `K` (the fused form's way): overflows i64 for the
/// large shifts, so it is wrong there.
fn late_with_z_inside(q: &Fused, acc: i32, z: i32) -> i8 {
    let k = ((q.khi as i64) << 32 | (1i64 << 30))
        .wrapping_add((z as i64).wrapping_shl(31 + q.sh + 1))
        .wrapping_sub(if acc < 0 { 1i64 << 31 } else { 0 });
    let x = (acc as i64 * q.m as i64).wrapping_add(k);
    (((x >> 32) as i32) >> q.sh).clamp(q.lo, q.hi) as i8
}

#[test]
fn late_zero_point_form_equals_tflm_for_shifts_2_to_31_and_zero_multipliers() {
    let mut rng = SplitMix64(31);
    let (mut checked, mut missed_by_control) = (0u64, 0u64);
    let mut accs = Vec::new();
    for case in 0..6000 {
        let shift = -(rng.range(2, 31) as i32);
        let m = QuantizedMultiplier {
            multiplier: match case % 8 {
                0 => 1 << 30,
                1 => i32::MAX,
                2 => 0,
                _ => rng.range(1 << 30, i32::MAX as i64) as i32,
            },
            shift: if case % 8 == 2 {
                rng.range(-31, 31) as i32
            } else {
                shift
            },
        };
        let e = (-shift) as u32;
        let z = rng.range(-128, 127) as i32;
        let (lo, hi) = match rng.range(0, 2) {
            0 => (-128, 127),
            1 => (z, 127),
            _ => {
                let a = rng.range(-128, 127) as i32;
                let b = rng.range(-128, 127) as i32;
                (a.min(b), a.max(b))
            }
        };
        let layer = Layer::new(z, lo, hi).unwrap();
        let q = layer
            .late_channel(m)
            .expect("a late form for shifts 2..=31 and zero multipliers");
        accs.clear();
        accs.extend([i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX - 1, i32::MAX]);
        for _ in 0..200 {
            accs.push(rng.next_u64() as i32);
            accs.push(rng.range(-(1 << (e.min(22) + 9)), 1 << (e.min(22) + 9)) as i32);
        }
        if m.multiplier > 0 {
            ties(&mut rng, m.multiplier, e, &mut accs);
        }
        for &acc in &accs {
            let expected = reference(acc, m, z, lo, hi);
            assert_eq!(
                q.apply_late(acc, z),
                expected,
                "acc {acc}, M {}, shift {}, z {z}, clamp {lo}..={hi}",
                m.multiplier,
                m.shift
            );
            if late_with_z_inside(&q, acc, z) != expected {
                missed_by_control += 1;
            }
            checked += 1;
        }
    }
    println!("{checked} accumulators; z inside K is wrong on {missed_by_control}");
    assert!(checked > 2_000_000);
    assert!(missed_by_control > 100, "{missed_by_control}");
}

#[test]
fn no_late_form_outside_its_domain() {
    let layer = Layer::new(0, -128, 127).unwrap();
    for (multiplier, shift) in [
        (1 << 30, -1),
        (1 << 30, 0),
        (1 << 30, 3),
        (1 << 30, -32),
        (-5, -8),
    ] {
        let m = QuantizedMultiplier { multiplier, shift };
        assert!(layer.late_channel(m).is_none(), "{multiplier} {shift}");
    }
}
