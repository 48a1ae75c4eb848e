//! Kernel check (`--features kernel-check`): the runtime's optimized kernels — on this target
//! the Cortex-M4 DSP kernels (SMLAD/SXTB16 inline assembly, `tinyconv::kernels::blocked`) —
//! against the scalar reference kernels, on random shapes, zero points, weights, biases and
//! multipliers, computed here on the real instructions. The host tests check the same driver
//! code with a portable model of the instructions; this checks the instructions themselves.
//!
//! Outputs alone cannot show that the DSP kernels ran (the portable kernels compute the same
//! values), so every case also reads the runtime's dispatch counters
//! ([`tinyconv::kernels::dispatch_counts`]): a case whose shape has a blocked kernel must have
//! run it on the DSP instructions, not fallen back to the portable kernel.
//!
//! The self-test runs after it as in the default mode. Prints one line per mismatching case,
//! one per case that fell back, and `kernel-check: N cases (C conv, D dense; B on the blocked
//! DSP kernels, L lean, F fell back to portable code), M mismatches`; exit code 0 only if no
//! case mismatched or fell back (1 for a mismatch, 5 for a fallback).

use tinyconv::Shape;
use tinyconv::kernels::{
    ChannelParams, Conv, blocked, conv, dispatch_counts, reference, reset_dispatch_counts,
};
use tinyconv::quant::Multiplier;

use crate::console::code;

/// Random cases run (conv and dense).
const CASES: usize = 400;
const MAX_HW: usize = 10;
const MAX_GROUPS: usize = 10;
const MAX_OUT: usize = 12;
const MAX_DENSE_GROUPS: usize = 80;
/// "Wide" cases: the group counts with their own unrolled DSP blocks (16, 32, 64 groups) and
/// one without (20), on small inputs and few output channels. Every other wide case gets a
/// random scratch below the full one, so the lean tile runs: passes of 4, 8 and 16 groups
/// (their own blocks) and of 5 (the run-time-stride block).
const WIDE_GROUPS: [usize; 4] = [16, 20, 32, 64];
const WIDE_MAX_HW: usize = 5;
/// Cases that fell back to the portable kernel printed one by one, at most.
const SHOWN_FALLBACKS: usize = 5;
const WIDE_MAX_OUT: usize = 4;
const INPUT_LEN: usize = max(
    MAX_HW * MAX_HW * 4 * MAX_GROUPS,
    WIDE_MAX_HW * WIDE_MAX_HW * 4 * 64,
);
const WEIGHTS_LEN: usize = max(
    9 * 4 * MAX_GROUPS * MAX_OUT + 4 * MAX_DENSE_GROUPS * MAX_OUT,
    9 * 4 * 64 * WIDE_MAX_OUT,
);
const SCRATCH_LEN: usize = max(
    4 * MAX_GROUPS * 192 + 16 + 4 * MAX_DENSE_GROUPS * 2,
    64 * 192 + 16,
);

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

#[repr(C, align(16))]
struct Buffers {
    input: [i8; INPUT_LEN],
    weights: [i8; WEIGHTS_LEN],
    bias: [u8; 4 * MAX_OUT],
    multipliers: [u8; 8 * MAX_OUT],
    full: [i8; MAX_HW * MAX_HW * MAX_OUT],
    expected: [i8; MAX_HW * MAX_HW * MAX_OUT],
    got: [i8; MAX_HW * MAX_HW * MAX_OUT + 4],
    scratch: [i8; SCRATCH_LEN],
}

static mut BUFFERS: Buffers = Buffers {
    input: [0; INPUT_LEN],
    weights: [0; WEIGHTS_LEN],
    bias: [0; 4 * MAX_OUT],
    multipliers: [0; 8 * MAX_OUT],
    full: [0; MAX_HW * MAX_HW * MAX_OUT],
    expected: [0; MAX_HW * MAX_HW * MAX_OUT],
    got: [0; MAX_HW * MAX_HW * MAX_OUT + 4],
    scratch: [0; SCRATCH_LEN],
};

/// xorshift64*: deterministic test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

pub fn run() -> i32 {
    // SAFETY: the only reference to BUFFERS, taken once in this single-threaded program.
    let b = unsafe { &mut *core::ptr::addr_of_mut!(BUFFERS) };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut convs, mut denses, mut mismatches, mut blocked_cases) = (0, 0, 0, 0);
    let (mut lean_cases, mut dsp_cases, mut fell_back) = (0, 0, 0);
    for case in 0..CASES {
        let dense = case % 4 == 3;
        let wide = case % 8 == 1;
        let (max_hw, max_out) = if wide {
            (WIDE_MAX_HW, WIDE_MAX_OUT)
        } else {
            (MAX_HW, MAX_OUT)
        };
        let (input, kernel, pad, pool) = if dense {
            let n = 4 * rng.range(1, MAX_DENSE_GROUPS as i64) as usize;
            (Shape::new(1, 1, n), 1, 0, false)
        } else {
            let c = if wide {
                4 * WIDE_GROUPS[rng.range(0, 3) as usize]
            } else if rng.range(0, 3) == 0 {
                1
            } else {
                4 * rng.range(1, MAX_GROUPS as i64) as usize
            };
            let pad = rng.range(0, 1) as usize;
            let min = 3 - 2 * pad;
            let h = rng.range(min as i64, max_hw as i64) as usize;
            let w = rng.range(min as i64, max_hw as i64) as usize;
            let conv_h = h + 2 * pad - 2;
            let conv_w = w + 2 * pad - 2;
            let pool = rng.range(0, 1) == 1 && conv_h >= 2 && conv_w >= 2;
            (Shape::new(h, w, c), 3, pad, pool)
        };
        let out_c = rng.range(1, max_out as i64) as usize;
        let filter = kernel * kernel * input.c;
        for v in &mut b.input[..input.len()] {
            *v = rng.next() as i8;
        }
        for v in &mut b.weights[..filter * out_c] {
            *v = rng.range(-127, 127) as i8;
        }
        for ch in 0..out_c {
            let bias = rng.range(-100_000, 100_000) as i32;
            b.bias[4 * ch..4 * ch + 4].copy_from_slice(&bias.to_le_bytes());
            let m = Multiplier {
                mantissa: rng.range(1 << 23, (1 << 24) - 1) as u32,
                shift: rng.range(28, 42) as i32,
            };
            b.multipliers[8 * ch..8 * ch + 4].copy_from_slice(&m.mantissa.to_le_bytes());
            b.multipliers[8 * ch + 4..8 * ch + 8].copy_from_slice(&m.shift.to_le_bytes());
        }
        let conv = Conv {
            input,
            kernel,
            pad,
            out_channels: out_c,
            weights: &b.weights[..filter * out_c],
            channels: ChannelParams::new(&b.bias[..4 * out_c], &b.multipliers[..8 * out_c]),
            input_zero_point: rng.next() as i8,
            output_zero_point: rng.next() as i8,
            relu: rng.range(0, 1) == 1,
            pool,
        };
        let data = &b.input[..input.len()];
        // The reference: plain conv, then a separate pool.
        let full = conv.conv_output();
        let out_len = conv.output().len();
        reference::conv2d(&conv, data, &mut b.full[..full.len()]);
        if pool {
            reference::maxpool2x2(full, &b.full[..full.len()], &mut b.expected[..out_len]);
        } else {
            b.expected[..out_len].copy_from_slice(&b.full[..out_len]);
        }
        b.got.fill(0x55);
        let offset = case % 5; // the kernels align the scratch themselves
        let mut scratch = &mut b.scratch[offset..];
        if let Some(plan) = blocked::plan_of(&conv).filter(|_| wide && case % 16 == 1) {
            let (h, w, c) = (input.h, input.w, input.c);
            let least = blocked::min_scratch_len(plan, h, w, c, pad, out_c);
            let full = blocked::scratch_len(kernel, h, w, c, pad, out_c);
            if least < full {
                let len = rng.range(least as i64, full as i64 - 1) as usize;
                scratch = &mut scratch[..len];
                lean_cases += 1;
            }
        }
        reset_dispatch_counts();
        conv::conv2d_scratch(&conv, data, &mut b.got[..out_len], scratch);
        let ran = dispatch_counts();
        if blocked::plan_of(&conv).is_some() {
            blocked_cases += 1;
            if ran.dsp == 1 && ran.fallback == 0 && ran.portable == 0 {
                dsp_cases += 1;
            } else {
                fell_back += 1;
                if fell_back <= SHOWN_FALLBACKS {
                    println!(
                        "FELL BACK case {case}: input {} k={kernel} pad={pad} out_c={out_c} scratch={} has a blocked kernel but ran the portable one ({ran:?}){}",
                        input,
                        scratch.len(),
                        if fell_back == SHOWN_FALLBACKS {
                            "; further cases not shown"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        let bad = b.got[..out_len] != b.expected[..out_len]
            || b.got[out_len..].iter().any(|&v| v != 0x55);
        if bad {
            mismatches += 1;
            let first = (0..out_len).find(|&i| b.got[i] != b.expected[i]);
            println!(
                "MISMATCH case {case}: input {} k={kernel} pad={pad} out_c={out_c} pool={} relu={} zx={} zy={}: first differing output {:?}",
                input,
                pool as u8,
                conv.relu as u8,
                conv.input_zero_point,
                conv.output_zero_point,
                first.map(|i| (i, b.got[i], b.expected[i]))
            );
        }
        if dense {
            denses += 1;
        } else {
            convs += 1;
        }
    }
    println!(
        "kernel-check: {CASES} cases ({convs} conv, {denses} dense; {dsp_cases} on the blocked DSP kernels, {lean_cases} lean, {fell_back} fell back to portable code), {mismatches} mismatches"
    );
    if mismatches != 0 || blocked_cases == 0 || lean_cases == 0 {
        code::MISMATCH
    } else if fell_back != 0 || dsp_cases != blocked_cases {
        println!(
            "error: {fell_back} of {blocked_cases} cases with a blocked kernel did not run the DSP kernels{}",
            crate::firmware::PORTABLE_HINT
        );
        code::PERFORMANCE
    } else {
        code::OK
    }
}
