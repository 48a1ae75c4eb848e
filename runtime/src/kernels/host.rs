//! The host kernel (x86-64 with `std`): a convolution or dense layer as an int16 GEMM.
//!
//! `acc[p][co] = Σ_d A[p][d] · W[co][d]`, where `A` is the layer's im2col matrix widened to
//! int16 (`x - z`, padding taps 0, one row per conv output pixel) and `W` the OHWI weights.
//! Two GEMM shapes, each int16 pair product-sum one `vpdpwssd`/`vpmaddwd` lane (the x86 twin of
//! the Cortex-M4's SMLAD):
//!
//! * **depth-wise** (large weights: conv3, dense): the filters are read in place as int8; a
//!   micro-kernel keeps 4 pixels × 4 channels (1 × 8 for a dense layer) of accumulators and
//!   walks the depth 32 values at a time (rows zero-padded to a multiple of [`LANES`]), then
//!   sums each accumulator's lanes;
//! * **channel-wise** (weights ≤ [`REPACK_LIMIT`], 16k channels: conv1, conv2): the filters are
//!   repacked as int16 pairs `[pair][channel]` and each pixel's pair is broadcast against 16
//!   channels at once, so the accumulators are the outputs (no lane sums, which dominate when
//!   the depth is only a few vector steps).
//!
//! Pooling, bias and requantization then run on the int32 accumulators with the same
//! semantics as the portable kernel, so the result is bit-identical to it (integer sums do not
//! depend on order, and |acc| stays far below 2³¹ for int8 data).
//!
//! The micro-kernels are written with AVX-512 intrinsics, picked at run time when the CPU has
//! them: LLVM does not find `vpmaddwd` in the equivalent plain Rust (it widens to int32 and
//! multiplies with `vpmulld`, spilling accumulators: measured 3x slower). Other CPUs run a
//! plain-Rust GEMM (compiled for AVX2 when present). Buffers are thread-local and reused, so
//! after the first inference nothing is allocated.
//!
//! Measured (`cargo bench -p tinyconv-tests --bench engines`, docs/performance.md): this path
//! is what makes the host runtime faster than tract's float path.

use std::cell::RefCell;
use std::vec::Vec;

use super::Conv;

/// Depth values a micro-kernel step consumes: 32 int16 = one 512-bit register.
const LANES: usize = 32;

std::thread_local! {
    static BUFFERS: RefCell<Buffers> = const { RefCell::new(Buffers::new()) };
}

struct Buffers {
    /// The widened im2col matrix, `pixels × depth_padded`.
    patches: Vec<i16>,
    /// int32 accumulators, `pixels × out_channels`.
    acc: Vec<i32>,
    /// Per output channel: bias and requantization scale.
    params: Params,
    /// Weights repacked for the channel-wise GEMM ([`repack_pairs`]).
    packed: Vec<i32>,
}

impl Buffers {
    const fn new() -> Self {
        Buffers {
            patches: Vec::new(),
            acc: Vec::new(),
            params: Params {
                bias: Vec::new(),
                scale: Vec::new(),
            },
            packed: Vec::new(),
        }
    }
}

/// The GEMM variants, from the fastest; [`Isa::available`] says which this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512BW/VL with VNNI's `vpdpwssd`.
    Avx512Vnni,
    /// AVX-512BW/VL: `vpmaddwd` + `vpaddd`.
    Avx512,
    /// The portable GEMM compiled for AVX2.
    Avx2,
    /// The portable GEMM for the x86-64 baseline (SSE2).
    Baseline,
}

impl Isa {
    /// Every variant, fastest first, whether or not this CPU runs it.
    pub const ALL: [Isa; 4] = [Isa::Avx512Vnni, Isa::Avx512, Isa::Avx2, Isa::Baseline];

    /// The CPU features (`is_x86_feature_detected!` names) the variant needs.
    pub const fn features(self) -> &'static [&'static str] {
        match self {
            Isa::Avx512Vnni => &["avx512f", "avx512bw", "avx512vl", "avx512vnni"],
            Isa::Avx512 => &["avx512f", "avx512bw", "avx512vl"],
            Isa::Avx2 => &["avx2"],
            Isa::Baseline => &[],
        }
    }

    /// The features of [`Isa::features`] this CPU lacks (empty: the CPU runs the variant).
    pub fn missing_features(self) -> impl Iterator<Item = &'static str> {
        self.features().iter().copied().filter(|f| !detected(f))
    }

    /// Every variant this CPU can run, fastest first.
    pub fn available() -> impl Iterator<Item = Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.missing_features().next().is_none())
    }

    /// The fastest variant this CPU runs (detected once).
    pub fn best() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| Isa::available().next().unwrap_or(Isa::Baseline))
    }
}

/// `is_x86_feature_detected!` for the names [`Isa::features`] uses (the macro takes literals).
fn detected(feature: &str) -> bool {
    match feature {
        "avx512f" => std::is_x86_feature_detected!("avx512f"),
        "avx512bw" => std::is_x86_feature_detected!("avx512bw"),
        "avx512vl" => std::is_x86_feature_detected!("avx512vl"),
        "avx512vnni" => std::is_x86_feature_detected!("avx512vnni"),
        "avx2" => std::is_x86_feature_detected!("avx2"),
        _ => false,
    }
}

/// The two GEMM shapes (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gemm {
    /// Filters read in place, accumulators summed across lanes.
    DepthWise,
    /// Filters repacked as int16 pairs, 16 channels a vector (AVX-512 variants only).
    AcrossChannels,
}

std::thread_local! {
    static LAST_RUN: std::cell::Cell<Option<(Isa, Gemm)>> = const { std::cell::Cell::new(None) };
}

/// The variant and GEMM shape of the last host kernel call on this thread (for the tests, which
/// check that each variant the CPU has really ran, and name the ones that did).
pub fn last_run() -> Option<(Isa, Gemm)> {
    LAST_RUN.with(|r| r.get())
}

/// Runs `conv` on `input` into `output`, like [`super::conv::conv2d`].
pub fn conv2d(conv: &Conv<'_>, input: &[i8], output: &mut [i8]) {
    run(Isa::best(), conv, input, output)
}

/// [`conv2d`] on [`super::Tensors`]. The GEMM reads its whole input before it writes (the
/// im2col matrix is built first), but it takes both as slices; when the plan overlaps them the
/// input is copied to a reused thread-local buffer first (a few KB, far below the layer's cost).
pub fn conv2d_in(conv: &Conv<'_>, t: &mut dyn super::Tensors) {
    if let Some((input, output)) = t.split() {
        return conv2d(conv, input, output);
    }
    INPUT_COPY.with(|copy| {
        let mut copy = copy.borrow_mut();
        copy.clear();
        copy.extend_from_slice(t.input());
        conv2d(conv, &copy, t.output());
    })
}

std::thread_local! {
    static INPUT_COPY: RefCell<Vec<i8>> = const { RefCell::new(Vec::new()) };
}

/// [`conv2d`] with a given GEMM variant (the tests run each one the CPU has).
///
/// # Panics
/// If the CPU cannot run `isa` (not in [`Isa::available`]).
pub fn conv2d_with(isa: Isa, conv: &Conv<'_>, input: &[i8], output: &mut [i8]) {
    assert!(
        Isa::available().any(|a| a == isa),
        "this CPU cannot run {isa:?}"
    );
    run(isa, conv, input, output)
}

/// The kernel with `isa`, which the caller made sure the CPU runs.
fn run(isa: Isa, conv: &Conv<'_>, input: &[i8], output: &mut [i8]) {
    let out = conv.output();
    if out.is_empty() {
        return;
    }
    let full = conv.conv_output();
    let pixels = full.h * full.w;
    let depth = conv.kernel * conv.kernel * conv.input.c;
    let across_channels = matches!(isa, Isa::Avx512Vnni | Isa::Avx512)
        && conv.out_channels.is_multiple_of(CHANNEL_LANES)
        && conv.weights.len() <= REPACK_LIMIT
        && pixels > 1;
    // Row length of the im2col matrix: whole vector steps for the depth-wise GEMM, pairs for
    // the channel-wise one.
    let padded = if across_channels {
        depth.div_ceil(2) * 2
    } else {
        depth.div_ceil(LANES) * LANES
    };
    BUFFERS.with(|buffers| {
        let buffers = &mut *buffers.borrow_mut();
        buffers.patches.clear();
        buffers.patches.resize(pixels * padded, 0);
        buffers.acc.clear();
        buffers.acc.resize(pixels * conv.out_channels, 0);
        im2col(conv, input, &mut buffers.patches, padded);
        LAST_RUN.with(|r| {
            r.set(Some((
                isa,
                if across_channels {
                    Gemm::AcrossChannels
                } else {
                    Gemm::DepthWise
                },
            )))
        });
        if across_channels {
            repack_pairs(conv.weights, depth, conv.out_channels, &mut buffers.packed);
            // SAFETY: `across_channels` implies an AVX-512 `isa`, which the CPU runs (`run`'s
            // contract).
            #[allow(unsafe_code)]
            unsafe {
                avx512::gemm_across_channels(
                    isa == Isa::Avx512Vnni,
                    &buffers.patches,
                    &buffers.packed,
                    padded,
                    conv.out_channels,
                    &mut buffers.acc,
                )
            }
        } else {
            gemm(
                isa,
                &buffers.patches,
                conv.weights,
                depth,
                padded,
                conv.out_channels,
                &mut buffers.acc,
            );
        }
        if matches!(isa, Isa::Avx512Vnni | Isa::Avx512) {
            // SAFETY: the CPU runs `isa` (`run`'s contract), which has AVX-512F/BW/VL.
            #[allow(unsafe_code)]
            unsafe {
                finish_avx512(conv, &buffers.acc, &mut buffers.params, output)
            }
        } else {
            finish(conv, &buffers.acc, &mut buffers.params, output);
        }
    });
}

/// [`finish`] compiled for AVX-512 (16 channels a vector instead of 4).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn finish_avx512(conv: &Conv<'_>, acc: &[i32], params: &mut Params, output: &mut [i8]) {
    finish(conv, acc, params, output)
}

/// Output channels in one 512-bit vector of int32 accumulators.
const CHANNEL_LANES: usize = 16;
/// Largest weight blob repacked for the channel-wise GEMM on every call: conv2's 18 K weights
/// (repacking is ~15 % of conv2 in a profile); conv3's 295 K would cost more than they save.
const REPACK_LIMIT: usize = 64 * 1024;

/// OHWI weights as `packed[pair][channel]` = `(w[channel][2·pair], w[channel][2·pair + 1])`
/// in the low and high halves of an i32: one `vpdpwssd` operand per 16 channels.
fn repack_pairs(weights: &[i8], depth: usize, channels: usize, packed: &mut Vec<i32>) {
    let pairs = depth.div_ceil(2);
    let weights = &weights[..depth * channels];
    packed.clear();
    packed.resize(pairs * channels, 0);
    // Written in order; the reads are strided.
    for (pair, row) in packed.chunks_exact_mut(channels).enumerate() {
        let d = 2 * pair;
        for (co, out) in row.iter_mut().enumerate() {
            let filter = &weights[co * depth..][..depth];
            let low = filter[d] as i16 as u16 as u32;
            let high = if d + 1 < depth {
                filter[d + 1] as i16 as u16 as u32
            } else {
                0
            };
            *out = (low | high << 16) as i32;
        }
    }
}

/// Fills `patches` (zeroed, `padded` values a row) with `x - z` for every conv output pixel.
fn im2col(conv: &Conv<'_>, input: &[i8], patches: &mut [i16], padded: usize) {
    let (k, pad, c) = (conv.kernel, conv.pad, conv.input.c);
    let (h, w) = (conv.input.h, conv.input.w);
    let full = conv.conv_output();
    let z = conv.input_zero_point as i16;
    for (p, row) in patches.chunks_exact_mut(padded).enumerate() {
        let (cy, cx) = (p / full.w, p % full.w);
        // Taps in the padding stay 0 (the zero point, offset away); each kernel row's taps
        // inside the image are one contiguous NHWC run.
        let kx_start = pad.saturating_sub(cx);
        let kx_end = k.min(w + pad - cx);
        if kx_start >= kx_end {
            continue;
        }
        let run = (kx_end - kx_start) * c;
        let ix = cx + kx_start - pad;
        for ky in 0..k {
            let iy = cy + ky;
            if iy < pad || iy - pad >= h {
                continue;
            }
            let src = &input[((iy - pad) * w + ix) * c..][..run];
            let dst = &mut row[(ky * k + kx_start) * c..][..run];
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = x as i16 - z;
            }
        }
    }
}

/// Pooling (max of int32 accumulators), bias and requantization, as the portable kernel.
/// Channel-innermost loops over separate bias and scale arrays, so LLVM vectorizes them.
#[inline(always)]
fn finish(conv: &Conv<'_>, acc: &[i32], params: &mut Params, output: &mut [i8]) {
    let full = conv.conv_output();
    let out = conv.output();
    let channels = conv.out_channels;
    let zy = conv.output_zero_point as i32;
    let floor = conv.output_floor();
    params.bias.clear();
    params
        .bias
        .extend((0..channels).map(|co| conv.channels.bias(co)));
    params.scale.clear();
    params
        .scale
        .extend((0..channels).map(|co| conv.channels.multiplier(co).to_scale()));
    let (bias, scale) = (&params.bias[..], &params.scale[..]);
    let row = |cy: usize, cx: usize| &acc[(cy * full.w + cx) * channels..][..channels];
    for (position, pixel) in output[..out.len()].chunks_exact_mut(channels).enumerate() {
        let (oy, ox) = (position / out.w, position % out.w);
        if conv.pool {
            let (cy, cx) = (2 * oy, 2 * ox);
            let (a, b, c, d) = (
                row(cy, cx),
                row(cy, cx + 1),
                row(cy + 1, cx),
                row(cy + 1, cx + 1),
            );
            for co in 0..channels {
                let best = a[co].max(b[co]).max(c[co]).max(d[co]);
                pixel[co] = requantize_f32(best + bias[co], scale[co], zy, floor);
            }
        } else {
            let v = row(oy, ox);
            for co in 0..channels {
                pixel[co] = requantize_f32(v[co] + bias[co], scale[co], zy, floor);
            }
        }
    }
}

/// Per output channel: bias and requantization scale.
struct Params {
    bias: Vec<i32>,
    scale: Vec<f32>,
}

/// [`crate::quant::requantize`] with the host's FPU: that function is defined as (and tested
/// equal to) `clamp(sign(acc) * rne(f32(f32(|acc|) * S)) + z, lo, 127)`, which this computes
/// directly, without branches, so LLVM vectorizes it across channels. (The integer version
/// exists for cores without an FPU and took ~40% of a host inference.)
#[inline(always)]
fn requantize_f32(acc: i32, scale: f32, zero_point: i32, lo: i32) -> i8 {
    // Clamping the magnitude to 1024 before rounding changes nothing (|z| <= 128, so any
    // magnitude >= 1024 saturates anyway) and keeps it where the 2^23 trick rounds exactly.
    let magnitude = (acc.unsigned_abs() as f32 * scale).min(1024.0);
    // Adding 2^23 rounds a value in [0, 2^23) to an integer, half to even, which then sits in
    // the low mantissa bits of the sum (read them directly: no float-to-int conversion).
    const ROUNDER: f32 = 8_388_608.0;
    let rounded = ((magnitude + ROUNDER).to_bits() - ROUNDER.to_bits()) as i32;
    let y = if acc < 0 { -rounded } else { rounded } + zero_point;
    y.clamp(lo, i8::MAX as i32) as i8
}

/// `acc[p][co] = Σ_d patches[p][d] · weights[co][d]` with `isa`, which the caller checked
/// the CPU runs.
#[allow(unsafe_code)]
fn gemm(
    isa: Isa,
    patches: &[i16],
    weights: &[i8],
    depth: usize,
    padded: usize,
    channels: usize,
    acc: &mut [i32],
) {
    match isa {
        // SAFETY (all three): the CPU has the features `isa` names (`run`'s contract), which
        // is all these functions require beyond their arguments' (checked) lengths.
        Isa::Avx512Vnni => unsafe {
            avx512::gemm_vnni(patches, weights, depth, padded, channels, acc)
        },
        Isa::Avx512 => unsafe { avx512::gemm(patches, weights, depth, padded, channels, acc) },
        Isa::Avx2 => unsafe { gemm_avx2(patches, weights, depth, padded, channels, acc) },
        Isa::Baseline => portable::gemm(patches, weights, depth, padded, channels, acc),
    }
}

#[target_feature(enable = "avx2")]
fn gemm_avx2(
    patches: &[i16],
    weights: &[i8],
    depth: usize,
    padded: usize,
    channels: usize,
    acc: &mut [i32],
) {
    portable::gemm(patches, weights, depth, padded, channels, acc)
}

/// Runs `f(p, np, co, nc)` over blocks of `P` pixels × `C` channels; `np`/`nc` are the block's
/// real sizes at the ragged edges.
#[inline(always)]
fn for_each_block<const P: usize, const C: usize>(
    pixels: usize,
    channels: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    let mut p = 0;
    while p < pixels {
        let np = P.min(pixels - p);
        let mut co = 0;
        while co < channels {
            let nc = C.min(channels - co);
            f(p, np, co, nc);
            co += nc;
        }
        p += np;
    }
}

/// The GEMM with AVX-512BW intrinsics: per 32-deep step, `P` patch loads, `C` weight loads
/// sign-extended to int16, and `P·C` `vpmaddwd` + `vpaddd` into 512-bit accumulators.
#[allow(unsafe_code)]
mod avx512 {
    use core::arch::x86_64::*;

    use super::{LANES, for_each_block};

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) fn gemm(
        patches: &[i16],
        weights: &[i8],
        depth: usize,
        padded: usize,
        channels: usize,
        acc: &mut [i32],
    ) {
        if patches.len() == padded {
            blocked::<1, 8, false>(patches, weights, depth, padded, channels, acc)
        } else {
            blocked::<4, 4, false>(patches, weights, depth, padded, channels, acc)
        }
    }

    /// [`gemm`] with VNNI's fused multiply-add-accumulate (`vpdpwssd`).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) fn gemm_vnni(
        patches: &[i16],
        weights: &[i8],
        depth: usize,
        padded: usize,
        channels: usize,
        acc: &mut [i32],
    ) {
        if patches.len() == padded {
            blocked::<1, 8, true>(patches, weights, depth, padded, channels, acc)
        } else {
            blocked::<4, 4, true>(patches, weights, depth, padded, channels, acc)
        }
    }

    /// `sums + pmaddwd(a, w)`: one instruction with VNNI, two without.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn mac<const VNNI: bool>(sums: __m512i, a: __m512i, w: __m512i) -> __m512i {
        if VNNI {
            // SAFETY: `VNNI` is true only in `blocked::<_, _, true>` and `across::<_, true>`,
            // which only `gemm_vnni` and `across_vnni` instantiate: compiled with avx512vnni
            // and called only when the CPU has it.
            unsafe { vnni(sums, a, w) }
        } else {
            _mm512_add_epi32(sums, _mm512_madd_epi16(a, w))
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512vnni")]
    fn vnni(sums: __m512i, a: __m512i, w: __m512i) -> __m512i {
        _mm512_dpwssd_epi32(sums, a, w)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn blocked<const P: usize, const C: usize, const VNNI: bool>(
        patches: &[i16],
        weights: &[i8],
        depth: usize,
        padded: usize,
        channels: usize,
        acc: &mut [i32],
    ) {
        let pixels = patches.len() / padded;
        assert!(weights.len() >= channels * depth && acc.len() >= pixels * channels);
        let steps = depth / LANES;
        let tail = depth % LANES;
        for_each_block::<P, C>(pixels, channels, |p, np, co, nc| {
            // Ragged edges repeat the last row/filter: computed, then dropped.
            let rows: [&[i16]; P] =
                core::array::from_fn(|i| &patches[(p + i.min(np - 1)) * padded..][..padded]);
            let filters: [&[i8]; C] =
                core::array::from_fn(|j| &weights[(co + j.min(nc - 1)) * depth..][..depth]);
            let mut sums = [[_mm512_setzero_si512(); C]; P];
            for s in 0..steps {
                let at = s * LANES;
                let w: [__m512i; C] = core::array::from_fn(|j| widen(&filters[j][at..at + LANES]));
                for i in 0..P {
                    let a = load(&rows[i][at..at + LANES]);
                    for j in 0..C {
                        sums[i][j] = mac::<VNNI>(sums[i][j], a, w[j]);
                    }
                }
            }
            if tail > 0 {
                // The patch rows are zero-padded to `padded`; the filters are not: a masked
                // load reads only their last `tail` bytes.
                let at = steps * LANES;
                let w: [__m512i; C] = core::array::from_fn(|j| widen_tail(&filters[j][at..]));
                for i in 0..P {
                    let a = load(&rows[i][at..at + LANES]);
                    for j in 0..C {
                        sums[i][j] = mac::<VNNI>(sums[i][j], a, w[j]);
                    }
                }
            }
            for i in 0..np {
                for j in 0..nc {
                    acc[(p + i) * channels + co + j] = _mm512_reduce_add_epi32(sums[i][j]);
                }
            }
        });
    }

    /// The GEMM vectorized across output channels, for layers whose weights are small enough
    /// to repack on every call (conv1, conv2): for each pair of depth values, every pixel's
    /// pair is broadcast and multiplied with 16 channels' weight pairs at once, so the
    /// accumulators are the outputs themselves — no horizontal sums (which dominate the
    /// depth-wise GEMM when the depth is only a few vector steps). Blocks of 4 pixels × 64
    /// channels, or × 16 when the channels are not a multiple of 64.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) fn gemm_across_channels(
        vnni: bool,
        patches: &[i16],
        packed: &[i32],
        padded: usize,
        channels: usize,
        acc: &mut [i32],
    ) {
        // SAFETY (all four): the caller runs this only on CPUs with AVX-512F/BW/VL, and with
        // `vnni` only when the CPU also has AVX-512 VNNI.
        match (vnni, channels.is_multiple_of(64)) {
            (true, true) => unsafe { across_vnni::<4>(patches, packed, padded, channels, acc) },
            (true, false) => unsafe { across_vnni::<1>(patches, packed, padded, channels, acc) },
            (false, true) => across::<4, false>(patches, packed, padded, channels, acc),
            (false, false) => across::<1, false>(patches, packed, padded, channels, acc),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    fn across_vnni<const CB: usize>(
        patches: &[i16],
        packed: &[i32],
        padded: usize,
        channels: usize,
        acc: &mut [i32],
    ) {
        across::<CB, true>(patches, packed, padded, channels, acc)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn across<const CB: usize, const VNNI: bool>(
        patches: &[i16],
        packed: &[i32],
        padded: usize,
        channels: usize,
        acc: &mut [i32],
    ) {
        const P: usize = 4;
        const LANES32: usize = 16;
        let pixels = patches.len() / padded;
        let pairs = padded / 2;
        assert!(packed.len() >= pairs * channels && acc.len() >= pixels * channels);
        for_each_block::<P, 1>(pixels, channels / (LANES32 * CB), |p, np, chunk, _| {
            let co = chunk * LANES32 * CB;
            let rows: [&[i16]; P] =
                core::array::from_fn(|i| &patches[(p + i.min(np - 1)) * padded..][..padded]);
            let mut sums = [[_mm512_setzero_si512(); CB]; P];
            for pair in 0..pairs {
                let w: [__m512i; CB] = core::array::from_fn(|b| {
                    load32(&packed[pair * channels + co + b * LANES32..][..LANES32])
                });
                for i in 0..P {
                    let a = _mm512_set1_epi32(
                        (rows[i][2 * pair] as u16 as u32
                            | (rows[i][2 * pair + 1] as u16 as u32) << 16)
                            as i32,
                    );
                    for b in 0..CB {
                        sums[i][b] = mac::<VNNI>(sums[i][b], a, w[b]);
                    }
                }
            }
            for (i, sums) in sums.iter().enumerate().take(np) {
                for (b, v) in sums.iter().enumerate() {
                    store32(
                        &mut acc[(p + i) * channels + co + b * LANES32..][..LANES32],
                        *v,
                    );
                }
            }
        });
    }

    /// 16 int32 from a slice of exactly 16.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load32(values: &[i32]) -> __m512i {
        assert_eq!(values.len(), 16);
        // SAFETY: `values` holds 16 i32 = 64 readable bytes; the load is unaligned.
        unsafe { _mm512_loadu_si512(values.as_ptr().cast()) }
    }

    /// 16 int32 into a slice of exactly 16.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn store32(out: &mut [i32], v: __m512i) {
        assert_eq!(out.len(), 16);
        // SAFETY: `out` holds 16 i32 = 64 writable bytes; the store is unaligned.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), v) }
    }

    /// 32 int16 from a slice of exactly 32.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load(values: &[i16]) -> __m512i {
        assert_eq!(values.len(), LANES);
        // SAFETY: `values` holds 32 i16 = 64 readable bytes; the load is unaligned.
        unsafe { _mm512_loadu_si512(values.as_ptr().cast()) }
    }

    /// Up to 32 int8 (a filter's last, partial step), zero beyond the slice, sign-extended to
    /// int16.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn widen_tail(values: &[i8]) -> __m512i {
        assert!(values.len() < LANES);
        let mask = (1u32 << values.len()) - 1;
        // SAFETY: the mask enables exactly the `values.len()` bytes of the slice; masked-out
        // bytes are neither read nor able to fault.
        let bytes = unsafe { _mm256_maskz_loadu_epi8(mask, values.as_ptr().cast()) };
        _mm512_cvtepi8_epi16(bytes)
    }

    /// 32 int8 from a slice of exactly 32, sign-extended to int16.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn widen(values: &[i8]) -> __m512i {
        assert_eq!(values.len(), LANES);
        // SAFETY: `values` holds 32 readable bytes; the load is unaligned.
        let bytes = unsafe { _mm256_loadu_si256(values.as_ptr().cast()) };
        _mm512_cvtepi8_epi16(bytes)
    }
}

/// The portable GEMM: plain Rust in the `pmaddwd` shape, for CPUs without AVX-512BW.
mod portable {
    use super::{LANES, for_each_block};

    pub(super) fn gemm(
        patches: &[i16],
        weights: &[i8],
        depth: usize,
        padded: usize,
        channels: usize,
        acc: &mut [i32],
    ) {
        let pixels = patches.len() / padded;
        for_each_block::<4, 4>(pixels, channels, |p, np, co, nc| {
            for i in 0..np {
                let row = &patches[(p + i) * padded..][..depth];
                for j in 0..nc {
                    let filter = &weights[(co + j) * depth..][..depth];
                    let mut lanes = [0i32; LANES / 2];
                    let mut rows = row.chunks_exact(2);
                    let mut ws = filter.chunks_exact(2);
                    for (l, (a, w)) in (&mut rows).zip(&mut ws).enumerate() {
                        lanes[l % (LANES / 2)] +=
                            a[0] as i32 * w[0] as i32 + a[1] as i32 * w[1] as i32;
                    }
                    let rest: i32 = rows
                        .remainder()
                        .iter()
                        .zip(ws.remainder())
                        .map(|(&a, &w)| a as i32 * w as i32)
                        .sum();
                    acc[(p + i) * channels + co + j] = lanes.iter().sum::<i32>() + rest;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::requantize_f32;
    use crate::quant::{Multiplier, requantize};
    use crate::testing::SplitMix64;

    fn check(acc: i32, m: Multiplier, zero_point: i32, lo: i32) {
        assert_eq!(
            requantize_f32(acc, m.to_scale(), zero_point, lo),
            requantize(acc, m, zero_point, lo, i8::MAX as i32),
            "acc {acc}, {m:?}, zero point {zero_point}, floor {lo}"
        );
    }

    #[test]
    fn fpu_requantization_is_the_integer_one() {
        let mut rng = SplitMix64(7);
        for _ in 0..1_000_000 {
            let r = rng.next_u64();
            // Accumulators of every magnitude, scales across the supported range.
            let acc = (r as i32) >> (r >> 59);
            let exponent = -40 + (rng.next_u64() % 56) as i32;
            let bits = (((exponent + 127) as u32) << 23) | (rng.next_u64() as u32 & 0x7f_ffff);
            let m = Multiplier::from_scale(f32::from_bits(bits)).unwrap();
            let zero_point = (rng.next_u64() % 256) as i32 - 128;
            let lo = if rng.next_u64() & 1 == 0 {
                -128
            } else {
                zero_point
            };
            check(acc, m, zero_point, lo);
        }
    }

    #[test]
    fn fpu_requantization_rounds_ties_to_even() {
        // S = 2^-e and acc = (2k+1)·2^(e-1): the product is exactly k + 1/2.
        for e in 1..=20 {
            let m = Multiplier::from_scale(f32::from_bits(((127 - e) as u32) << 23)).unwrap();
            for k in -300i32..300 {
                let acc = (2 * k + 1) << (e - 1);
                for zero_point in [-128, -1, 0, 5, 127] {
                    check(acc, m, zero_point, -128);
                    check(acc, m, zero_point, zero_point);
                }
            }
        }
        check(i32::MIN, Multiplier::from_scale(1.0).unwrap(), 0, -128);
        check(i32::MAX, Multiplier::from_scale(1.0).unwrap(), 0, -128);
    }
}
