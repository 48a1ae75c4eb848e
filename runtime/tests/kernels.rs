//! The optimized kernels against the scalar references, bit for bit, on random shapes and data.

use proptest::prelude::*;
use tinyconv::Shape;
use tinyconv::kernels::{ChannelParams, Conv, blocked, conv, dot, dsp, pool, reference};
use tinyconv::quant::Multiplier;

/// Owned storage for a random convolution.
#[derive(Debug, Clone)]
struct Case {
    input: Shape,
    kernel: usize,
    pad: usize,
    out_channels: usize,
    weights: Vec<i8>,
    bias: Vec<u8>,
    multipliers: Vec<u8>,
    zx: i8,
    zy: i8,
    relu: bool,
    pool: bool,
    data: Vec<i8>,
}

impl Case {
    fn conv(&self) -> Conv<'_> {
        Conv {
            input: self.input,
            kernel: self.kernel,
            pad: self.pad,
            out_channels: self.out_channels,
            weights: &self.weights,
            channels: ChannelParams::new(&self.bias, &self.multipliers),
            input_zero_point: self.zx,
            output_zero_point: self.zy,
            relu: self.relu,
            pool: self.pool,
        }
    }
}

fn case(max_hw: usize, max_c: usize) -> impl Strategy<Value = Case> {
    case_with(
        1..=max_hw,
        (1..=max_c).boxed(),
        prop_oneof![Just(1usize), Just(3), Just(5)].boxed(),
        max_c,
    )
}

/// Shapes the blocked kernels take: 3x3 with 1 or a multiple of 4 input channels.
fn blocked_case(max_hw: usize, max_groups: usize, max_out: usize) -> impl Strategy<Value = Case> {
    case_with(
        1..=max_hw,
        prop_oneof![Just(1usize), (1..=max_groups).prop_map(|g| 4 * g)].boxed(),
        Just(3usize).boxed(),
        max_out,
    )
}

fn case_with(
    hw: std::ops::RangeInclusive<usize>,
    channels: BoxedStrategy<usize>,
    kernel: BoxedStrategy<usize>,
    max_c: usize,
) -> impl Strategy<Value = Case> {
    (hw.clone(), hw, channels, kernel, any::<bool>())
        .prop_flat_map(move |(h, w, c, k, same)| {
            let pad = if same { k / 2 } else { 0 };
            let h = h.max(k - 2 * pad);
            let w = w.max(k - 2 * pad);
            (
                Just((h, w, c, k, pad)),
                1..=max_c,
                any::<bool>(),
                any::<bool>(),
            )
        })
        .prop_flat_map(|((h, w, c, k, pad), out_channels, relu, pool_wanted)| {
            let conv_h = h + 2 * pad + 1 - k;
            let conv_w = w + 2 * pad + 1 - k;
            let pool = pool_wanted && conv_h >= 2 && conv_w >= 2;
            (
                Just((Shape::new(h, w, c), k, pad, out_channels, relu, pool)),
                prop::collection::vec(-127i8..=127, k * k * c * out_channels),
                prop::collection::vec(-100_000i32..100_000, out_channels),
                prop::collection::vec((-24i32..2, 0u32..(1 << 23)), out_channels),
                any::<i8>(),
                any::<i8>(),
                prop::collection::vec(any::<i8>(), h * w * c),
            )
        })
        .prop_map(
            |(
                (input, kernel, pad, out_channels, relu, pool),
                weights,
                bias,
                scales,
                zx,
                zy,
                data,
            )| {
                let multipliers = scales
                    .iter()
                    .flat_map(|&(e, f)| {
                        let m =
                            Multiplier::from_scale(f32::from_bits((((e + 127) as u32) << 23) | f))
                                .unwrap();
                        m.mantissa
                            .to_le_bytes()
                            .into_iter()
                            .chain(m.shift.to_le_bytes())
                    })
                    .collect();
                Case {
                    input,
                    kernel,
                    pad,
                    out_channels,
                    weights,
                    bias: bias.iter().flat_map(|b| b.to_le_bytes()).collect(),
                    multipliers,
                    zx,
                    zy,
                    relu,
                    pool,
                    data,
                }
            },
        )
}

/// The reference pipeline: plain conv, then a separate pool.
fn reference_output(conv: &Conv<'_>, data: &[i8]) -> Vec<i8> {
    let full = conv.conv_output();
    let mut out = vec![0i8; full.len()];
    reference::conv2d(conv, data, &mut out);
    if conv.pool {
        let mut pooled = vec![0i8; conv.output().len()];
        reference::maxpool2x2(full, &out, &mut pooled);
        pooled
    } else {
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn conv_matches_reference(case in case(12, 24)) {
        let conv = case.conv();
        let expected = reference_output(&conv, &case.data);
        // Poison the output so untouched values show up.
        let mut got = vec![0x55i8; conv.output().len() + 3];
        conv::conv2d(&conv, &case.data, &mut got);
        prop_assert_eq!(&got[..expected.len()], &expected[..]);
        prop_assert_eq!(&got[expected.len()..], &[0x55i8; 3][..], "wrote past the output");
    }

    /// The host's int16 GEMM kernel (x86-64), every variant this CPU runs (AVX-512 with and
    /// without VNNI, AVX2, baseline), on every shape the portable conv takes.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn host_conv_matches_reference(case in case(12, 40)) {
        let conv = case.conv();
        let expected = reference_output(&conv, &case.data);
        for isa in tinyconv::kernels::host::Isa::available() {
            let mut got = vec![0x55i8; conv.output().len() + 3];
            tinyconv::kernels::host::conv2d_with(isa, &conv, &case.data, &mut got);
            prop_assert_eq!(&got[..expected.len()], &expected[..], "{:?}", isa);
            prop_assert_eq!(&got[expected.len()..], &[0x55i8; 3][..], "{:?} wrote past the output", isa);
        }
    }

    /// The blocked DSP kernels, driven through the portable model of the instructions
    /// (`dsp::Emulated`), against the reference: the same driver code runs on the Cortex-M4
    /// with the real instructions (checked there by the firmware's `kernel-check` mode).
    #[test]
    fn blocked_conv_matches_reference(case in blocked_case(13, 10, 12)) {
        let conv = case.conv();
        prop_assume!(blocked::plan_of(&conv).is_some());
        let expected = reference_output(&conv, &case.data);
        let need = blocked::scratch_len(conv.kernel, conv.input.h, conv.input.w, conv.input.c, conv.pad, conv.out_channels);
        // Poisoned output and scratch, the scratch deliberately misaligned.
        let mut got = vec![0x55i8; conv.output().len() + 3];
        let mut scratch = vec![0x33i8; need + 1];
        blocked::conv2d(&dsp::Emulated, &conv, &case.data, &mut got, &mut scratch[1..]);
        prop_assert_eq!(&got[..expected.len()], &expected[..]);
        prop_assert_eq!(&got[expected.len()..], &[0x55i8; 3][..], "wrote past the output");
    }

    /// The lean 3x3 tile (less scratch than a whole patch: input channels in passes, output
    /// channels in chunks of partial sums), for every scratch size from the least the kernel
    /// takes up to the full one.
    #[test]
    fn lean_blocked_conv_matches_reference(
        case in case_with(
            1..=7,
            prop_oneof![Just(64usize), Just(80), Just(128)].boxed(),
            Just(3usize).boxed(),
            40,
        ),
        extra in 0usize..2000,
    ) {
        let conv = case.conv();
        let plan = blocked::plan_of(&conv).unwrap();
        let (h, w, c, pad, out) = (conv.input.h, conv.input.w, conv.input.c, conv.pad, conv.out_channels);
        let least = blocked::min_scratch_len(plan, h, w, c, pad, out);
        let full = blocked::scratch_len(3, h, w, c, pad, out);
        prop_assert!(least < full && blocked::lean_scratch_len(3, h, w, c, pad, out) < full);
        let expected = reference_output(&conv, &case.data);
        let mut got = vec![0x55i8; conv.output().len() + 3];
        let mut scratch = vec![0x33i8; (least + extra).min(full - 1) + 1];
        blocked::conv2d(&dsp::Emulated, &conv, &case.data, &mut got, &mut scratch[1..]);
        prop_assert_eq!(&got[..expected.len()], &expected[..]);
        prop_assert_eq!(&got[expected.len()..], &[0x55i8; 3][..], "wrote past the output");
    }

    #[test]
    fn blocked_dense_matches_reference(
        groups in 1usize..80, out in 1usize..14, zx in any::<i8>(), zy in any::<i8>(), relu in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let n = 4 * groups;
        let mut rng = tinyconv::testing::SplitMix64(seed);
        let weights: Vec<i8> = (0..n * out).map(|_| rng.range(-127, 127) as i8).collect();
        let data: Vec<i8> = rng.bytes(n).into_iter().map(|b| b as i8).collect();
        let bias: Vec<u8> = (0..out).flat_map(|_| (rng.range(-30_000, 30_000) as i32).to_le_bytes()).collect();
        let mult = Multiplier::from_scale(0.0005 + rng.unit() * 0.01).unwrap();
        let mult_bytes: Vec<u8> = (0..out).flat_map(|_| mult.mantissa.to_le_bytes().into_iter().chain(mult.shift.to_le_bytes())).collect();
        let conv = Conv {
            input: Shape::new(1, 1, n), kernel: 1, pad: 0, out_channels: out, weights: &weights,
            channels: ChannelParams::new(&bias, &mult_bytes),
            input_zero_point: zx, output_zero_point: zy, relu, pool: false,
        };
        prop_assert_eq!(blocked::plan_of(&conv), Some(blocked::Plan::Dense));
        let expected = reference_output(&conv, &data);
        let mut got = vec![0i8; out];
        let mut scratch = vec![0i8; blocked::scratch_len(1, 1, 1, n, 0, out)];
        blocked::conv2d(&dsp::Emulated, &conv, &data, &mut got, &mut scratch);
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn dense_is_a_1x1_conv_on_the_flattened_input(
        n in 1usize..300, out in 1usize..40, zx in any::<i8>(), zy in any::<i8>(), relu in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut rng = tinyconv::testing::SplitMix64(seed);
        let weights: Vec<i8> = (0..n * out).map(|_| rng.range(-127, 127) as i8).collect();
        let data: Vec<i8> = rng.bytes(n).into_iter().map(|b| b as i8).collect();
        let bias: Vec<i32> = (0..out).map(|_| rng.range(-30_000, 30_000) as i32).collect();
        let mult = Multiplier::from_scale(0.001 + rng.unit() * 0.01).unwrap();
        let bias_bytes: Vec<u8> = bias.iter().flat_map(|b| b.to_le_bytes()).collect();
        let mult_bytes: Vec<u8> = (0..out).flat_map(|_| mult.mantissa.to_le_bytes().into_iter().chain(mult.shift.to_le_bytes())).collect();
        let conv = Conv {
            input: Shape::new(1, 1, n), kernel: 1, pad: 0, out_channels: out, weights: &weights,
            channels: ChannelParams::new(&bias_bytes, &mult_bytes),
            input_zero_point: zx, output_zero_point: zy, relu, pool: false,
        };
        let mut got = vec![0i8; out];
        conv::conv2d(&conv, &data, &mut got);
        // Written out as the textbook dense layer.
        for o in 0..out {
            let acc: i32 = bias[o] + (0..n).map(|i| (data[i] as i32 - zx as i32) * weights[o * n + i] as i32).sum::<i32>();
            let floor = if relu { zy as i32 } else { -128 };
            prop_assert_eq!(got[o], tinyconv::quant::requantize(acc, mult, zy as i32, floor, 127));
        }
    }

    #[test]
    fn fast_requantize_matches_requantize(
        acc in prop_oneof![any::<i32>(), -70_000_000i32..70_000_000, -5_000i32..5_000],
        mantissa in (1u32 << 23)..(1 << 24),
        shift in (23 - tinyconv::quant::MAX_SCALE_EXPONENT)..=(23 - tinyconv::quant::MIN_SCALE_EXPONENT),
        zp in any::<i8>(), relu in any::<bool>(),
    ) {
        let m = Multiplier { mantissa, shift };
        let lo = if relu { zp as i32 } else { -128 };
        prop_assert_eq!(
            tinyconv::kernels::requant::requantize_fast(acc, m, zp as i32, lo, 127),
            tinyconv::quant::requantize(acc, m, zp as i32, lo, 127)
        );
    }

    #[test]
    fn maxpool_matches_reference(h in 1usize..20, w in 1usize..20, c in 1usize..20, seed in any::<u64>()) {
        let mut rng = tinyconv::testing::SplitMix64(seed);
        let shape = Shape::new(h, w, c);
        let data: Vec<i8> = rng.bytes(shape.len()).into_iter().map(|b| b as i8).collect();
        let out_len = (h / 2) * (w / 2) * c;
        let mut expected = vec![0i8; out_len];
        let mut got = vec![0i8; out_len];
        reference::maxpool2x2(shape, &data, &mut expected);
        pool::maxpool2x2(shape, &data, &mut got);
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn dot_matches_reference(x in prop::collection::vec(any::<i8>(), 0..2000), zx in any::<i8>(), seed in any::<u64>()) {
        let mut rng = tinyconv::testing::SplitMix64(seed);
        let w: Vec<i8> = (0..x.len()).map(|_| rng.range(-127, 127) as i8).collect();
        prop_assert_eq!(dot::dot_offset(&x, &w, zx as i32), dot::dot_offset_reference(&x, &w, zx as i32));
    }
}

/// The host kernel's channel-wise GEMM (taken for 16·k output channels with small weights) on
/// the channel counts the random cases rarely draw: 16, 48, 64 and 128 (64 and 128 use blocks of
/// 64 channels), every variant the CPU runs.
#[cfg(target_arch = "x86_64")]
#[test]
fn host_conv_across_channels_matches_reference() {
    use tinyconv::kernels::host::{Isa, conv2d_with};
    let mut rng = tinyconv::testing::SplitMix64(11);
    let mut bytes = |n: usize| -> Vec<i8> { rng.bytes(n).into_iter().map(|b| b as i8).collect() };
    for out_channels in [16, 48, 64, 128] {
        for (c, k, pad, hw) in [(1, 3, 1, 9), (3, 3, 0, 7), (16, 3, 0, 6), (5, 1, 0, 4)] {
            for (relu, pool) in [(true, true), (false, false)] {
                let weights: Vec<i8> = bytes(k * k * c * out_channels)
                    .into_iter()
                    .map(|w| w.max(-127))
                    .collect();
                let m = Multiplier::from_scale(0.001_234).unwrap();
                let case = Case {
                    input: Shape::new(hw, hw, c),
                    kernel: k,
                    pad,
                    out_channels,
                    weights,
                    bias: (0..out_channels as i32)
                        .flat_map(|b| (b * 37 - 500).to_le_bytes())
                        .collect(),
                    multipliers: (0..out_channels)
                        .flat_map(|_| {
                            m.mantissa
                                .to_le_bytes()
                                .into_iter()
                                .chain(m.shift.to_le_bytes())
                        })
                        .collect(),
                    zx: -128,
                    zy: -7,
                    relu,
                    pool,
                    data: bytes(hw * hw * c),
                };
                let conv = case.conv();
                let expected = reference_output(&conv, &case.data);
                for isa in Isa::available() {
                    let mut got = vec![0x55i8; expected.len() + 3];
                    conv2d_with(isa, &conv, &case.data, &mut got);
                    assert_eq!(
                        &got[..expected.len()],
                        &expected[..],
                        "{isa:?}, {out_channels} channels, c {c}, k {k}"
                    );
                    assert_eq!(&got[expected.len()..], &[0x55i8; 3][..]);
                }
            }
        }
    }
}

#[test]
fn same_padding_treats_the_border_as_the_zero_point() {
    // A 3x3 all-ones filter on a 2x2 image whose every pixel is the zero point + 1:
    // interior sums count only real pixels, never the padding.
    let weights = [1i8; 9];
    let bias = 0i32.to_le_bytes();
    let m = Multiplier::from_scale(1.0).unwrap();
    let mult: Vec<u8> = m
        .mantissa
        .to_le_bytes()
        .into_iter()
        .chain(m.shift.to_le_bytes())
        .collect();
    let conv = Conv {
        input: Shape::new(2, 2, 1),
        kernel: 3,
        pad: 1,
        out_channels: 1,
        weights: &weights,
        channels: ChannelParams::new(&bias, &mult),
        input_zero_point: 10,
        output_zero_point: 0,
        relu: false,
        pool: false,
    };
    let data = [11i8; 4];
    let mut got = [0i8; 4];
    conv::conv2d(&conv, &data, &mut got);
    assert_eq!(got, [4, 4, 4, 4]);
    let mut expected = [0i8; 4];
    reference::conv2d(&conv, &data, &mut expected);
    assert_eq!(expected, [4, 4, 4, 4]);
}

/// Exact ties and rounding boundaries of the fast requantization: every accumulator around
/// the points where `|acc| * S` crosses a half, for scales of the form `k / 2^n`.
#[test]
fn fast_requantize_matches_requantize_at_ties() {
    use tinyconv::kernels::requant::requantize_fast;
    use tinyconv::quant::requantize;
    for shift in 20..=40 {
        for mantissa in [
            1u32 << 23,
            (1 << 23) + 1,
            0xc0_0000,
            0xff_ffff,
            0xab_cdef,
            0x80_0001,
        ] {
            let m = Multiplier { mantissa, shift };
            for y in 0i64..300 {
                // acc near (y + 1/2) / S
                let center = ((2 * y + 1) << (shift - 1)) / mantissa as i64;
                for acc in center - 3..=center + 3 {
                    for acc in [acc, -acc] {
                        let Ok(acc) = i32::try_from(acc) else {
                            continue;
                        };
                        for zp in [-128, -5, 0, 17, 127] {
                            assert_eq!(
                                requantize_fast(acc, m, zp, -128, 127),
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

/// What a run of the host ISA variants says, and whether it is acceptable: every variant whose
/// features `detected` reports must be in `ran` (a variant may be skipped only for a missing
/// feature), and none of the others. `Ok` and `Err` both carry the summary.
#[cfg(target_arch = "x86_64")]
fn isa_verdict(
    detected: &dyn Fn(&str) -> bool,
    ran: &[tinyconv::kernels::host::Isa],
) -> Result<String, String> {
    use tinyconv::kernels::host::Isa;
    let mut text = String::from("host ISA variants:\n");
    let mut wrong = Vec::new();
    for isa in Isa::ALL {
        let missing: Vec<_> = isa.features().iter().filter(|f| !detected(f)).collect();
        let did_run = ran.contains(&isa);
        text += &match (missing.is_empty(), did_run) {
            (true, true) => format!("  {isa:?}: ran\n"),
            (false, false) => format!("  {isa:?}: skipped, the CPU lacks {missing:?}\n"),
            (true, false) => {
                wrong.push(isa);
                format!(
                    "  {isa:?}: NOT RUN although the CPU has {:?}\n",
                    isa.features()
                )
            }
            (false, true) => {
                wrong.push(isa);
                format!("  {isa:?}: ran although the CPU lacks {missing:?}\n")
            }
        };
    }
    if wrong.is_empty() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Each host GEMM variant this CPU has, on a few fixed shapes that take every micro-kernel
/// (4x4 pixel x channel blocks with a depth tail, the 1x8 dense block, the channel-wise GEMM
/// with 16- and 64-channel blocks), against the reference; `host::last_run` confirms the variant
/// and GEMM shape that ran. The output names the variants that ran and why others were skipped
/// (written to stderr directly, so it shows in a captured `cargo test` run too), and the test
/// fails if a variant the CPU supports (by `is_x86_feature_detected!`, asked here, not through
/// `Isa::available`) did not run.
#[cfg(target_arch = "x86_64")]
#[test]
fn host_isa_variants_run_where_the_cpu_has_them() {
    use std::io::Write as _;
    use tinyconv::kernels::host::{Gemm, Isa, conv2d_with, last_run};
    let detected = |feature: &str| match feature {
        "avx512f" => is_x86_feature_detected!("avx512f"),
        "avx512bw" => is_x86_feature_detected!("avx512bw"),
        "avx512vl" => is_x86_feature_detected!("avx512vl"),
        "avx512vnni" => is_x86_feature_detected!("avx512vnni"),
        "avx2" => is_x86_feature_detected!("avx2"),
        other => panic!("unknown feature {other}"),
    };
    let mut rng = tinyconv::testing::SplitMix64(5);
    let m = Multiplier::from_scale(0.000_9).unwrap();
    let mut case = |input: Shape, kernel: usize, pad: usize, out_channels: usize, pool: bool| {
        let weights: Vec<i8> = (0..kernel * kernel * input.c * out_channels)
            .map(|_| rng.range(-127, 127) as i8)
            .collect();
        Case {
            input,
            kernel,
            pad,
            out_channels,
            weights,
            bias: (0..out_channels)
                .flat_map(|_| (rng.range(-5000, 5000) as i32).to_le_bytes())
                .collect(),
            multipliers: (0..out_channels)
                .flat_map(|_| {
                    m.mantissa
                        .to_le_bytes()
                        .into_iter()
                        .chain(m.shift.to_le_bytes())
                })
                .collect(),
            zx: -3,
            zy: 4,
            relu: false,
            pool,
            data: rng
                .bytes(input.len())
                .into_iter()
                .map(|b| b as i8)
                .collect(),
        }
    };
    let depth_wise = [
        case(Shape::new(9, 7, 5), 3, 1, 6, true), // depth 45: one step and a tail
        case(Shape::new(1, 1, 300), 1, 0, 11, false), // dense: the 1x8 block
    ];
    let across = [
        case(Shape::new(8, 8, 3), 3, 0, 16, true),
        case(Shape::new(6, 6, 8), 3, 1, 64, false),
    ];
    let mut ran = Vec::new();
    for isa in Isa::ALL {
        if isa.features().iter().any(|f| !detected(f)) {
            continue;
        }
        let avx512 = matches!(isa, Isa::Avx512Vnni | Isa::Avx512);
        let shapes = depth_wise
            .iter()
            .map(|c| (c, Gemm::DepthWise))
            .chain(across.iter().map(|c| {
                let gemm = if avx512 {
                    Gemm::AcrossChannels
                } else {
                    Gemm::DepthWise
                };
                (c, gemm)
            }));
        for (case, gemm) in shapes {
            let conv = case.conv();
            let expected = reference_output(&conv, &case.data);
            assert!(!expected.is_empty());
            let mut got = vec![0x55i8; expected.len()];
            conv2d_with(isa, &conv, &case.data, &mut got);
            assert_eq!(got, expected, "{isa:?} {gemm:?} on {}", conv.input);
            assert_eq!(last_run(), Some((isa, gemm)), "{isa:?} on {}", conv.input);
        }
        ran.push(isa);
    }
    let verdict = isa_verdict(&detected, &ran);
    let (Ok(text) | Err(text)) = &verdict;
    let _ = std::io::stderr().write_all(text.as_bytes());
    verdict.unwrap();
    assert_eq!(Isa::available().collect::<Vec<_>>(), ran);
    assert_eq!(ran.last(), Some(&Isa::Baseline));
}

/// Negative control of the check above: a CPU that has everything but ran only the baseline
/// fails it, naming each variant not run; a CPU without AVX-512 that ran an AVX-512 variant
/// fails too; a variant skipped for a missing feature passes.
#[cfg(target_arch = "x86_64")]
#[test]
fn isa_verdict_fails_a_variant_skipped_on_a_cpu_that_has_it() {
    use tinyconv::kernels::host::Isa;
    let everything = |_: &str| true;
    let text = isa_verdict(&everything, &[Isa::Baseline]).unwrap_err();
    for isa in ["Avx512Vnni", "Avx512", "Avx2"] {
        assert!(text.contains(&format!("{isa}: NOT RUN")), "{text}");
    }
    let no_vnni = |f: &str| f != "avx512vnni";
    let text = isa_verdict(&no_vnni, &[Isa::Avx512, Isa::Avx2, Isa::Baseline]).unwrap();
    assert!(
        text.contains("Avx512Vnni: skipped, the CPU lacks [\"avx512vnni\"]"),
        "{text}"
    );
    let avx2_only = |f: &str| f == "avx2";
    assert!(isa_verdict(&avx2_only, &[Isa::Avx512, Isa::Avx2, Isa::Baseline]).is_err());
    assert!(isa_verdict(&avx2_only, &[Isa::Avx2, Isa::Baseline]).is_ok());
}
