//! The convolution used at inference: NHWC input, OHWI weights, ReLU and 2x2 max pooling fused.
//!
//! Pooling is fused by taking the maximum of the four int32 accumulators of a pooling window
//! and requantizing once: requantization is monotonic, so `max(rq(a)) == rq(max(a))` and the
//! full-resolution feature map is never stored.

use core::sync::atomic::{AtomicU32, Ordering};

use super::dot::dot_offset;
use super::{Conv, Separate, Tensors};
use crate::quant::requantize;

const POOL_WINDOW: [(usize, usize); 4] = [(0, 0), (0, 1), (1, 0), (1, 1)];
const SINGLE: [(usize, usize); 1] = [(0, 0)];

/// How many calls of [`conv2d_scratch`] / [`conv2d_scratch_in`] ran which kind of kernel, since
/// start-up or the last [`reset_dispatch_counts`] ([`dispatch_counts`] reads them). The
/// firmware's self-test and kernel check use them to prove that the Cortex-M4 DSP kernels
/// really ran: the portable kernels compute the same values, so the outputs cannot tell.
///
/// One counter update a layer call (not a pixel): a relaxed atomic add where the target has
/// one, else a relaxed load and store (Armv6-M: single-core, so only an interrupt handler that
/// runs a layer itself could lose a count). The counters are global: calls from several threads
/// (the host's parallel tests) all land in them. They wrap at `u32::MAX`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatchCounts {
    /// Calls that ran a blocked kernel on the DSP instructions (`dsp::Asm`, inline assembly;
    /// only with `cfg(tinyconv_dsp)`, i.e. on Armv7E-M).
    pub dsp: u32,
    /// Calls whose shape has a blocked kernel ([`super::blocked::plan_of`]) that ran the
    /// portable kernel (or the host's) instead: the DSP kernels are not compiled in (another
    /// target, or `TINYCONV_PORTABLE=1`), the scratch was below
    /// [`super::blocked::min_scratch_len`], or the weights were not 4-byte aligned.
    pub fallback: u32,
    /// Calls whose shape has no blocked kernel: portable by design.
    pub portable: u32,
}

static DSP_CALLS: AtomicU32 = AtomicU32::new(0);
static FALLBACK_CALLS: AtomicU32 = AtomicU32::new(0);
static PORTABLE_CALLS: AtomicU32 = AtomicU32::new(0);

/// The kernel dispatch counters (see [`DispatchCounts`]).
pub fn dispatch_counts() -> DispatchCounts {
    DispatchCounts {
        dsp: DSP_CALLS.load(Ordering::Relaxed),
        fallback: FALLBACK_CALLS.load(Ordering::Relaxed),
        portable: PORTABLE_CALLS.load(Ordering::Relaxed),
    }
}

/// Sets the kernel dispatch counters to zero.
pub fn reset_dispatch_counts() {
    for counter in [&DSP_CALLS, &FALLBACK_CALLS, &PORTABLE_CALLS] {
        counter.store(0, Ordering::Relaxed);
    }
}

#[inline(always)]
fn count(counter: &AtomicU32) {
    #[cfg(target_has_atomic = "32")]
    counter.fetch_add(1, Ordering::Relaxed);
    #[cfg(not(target_has_atomic = "32"))]
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// Runs `conv` with the fastest kernel for this target: on Armv7E-M (`cfg(tinyconv_dsp)`) the
/// blocked DSP kernels ([`super::blocked`]) when the shape has one, `scratch` holds at least
/// [`super::blocked::min_scratch_len`] bytes and the weights are 4-byte aligned; otherwise
/// [`conv2d`]. Counts which ran in [`dispatch_counts`].
pub fn conv2d_scratch(conv: &Conv<'_>, input: &[i8], output: &mut [i8], scratch: &mut [i8]) {
    conv2d_scratch_in(conv, &mut Separate { input, output }, scratch)
}

/// [`conv2d_scratch`] on [`Tensors`] (e.g. two overlapping ranges of an arena). Not generic, so
/// that the large DSP blocks are compiled once, in this crate, whoever calls.
// `#[inline]` (the dispatch only; the blocks stay out of line): with the counters it no longer
// inlined into `run_layer` on its own, and the call cost ~30 instructions a layer on the
// Cortex-M4.
#[inline]
pub fn conv2d_scratch_in(conv: &Conv<'_>, t: &mut dyn Tensors, scratch: &mut [i8]) {
    let plan = super::blocked::plan_of(conv);
    #[cfg(tinyconv_dsp)]
    if let Some(plan) = plan {
        let need = super::blocked::min_scratch_len(
            plan,
            conv.input.h,
            conv.input.w,
            conv.input.c,
            conv.pad,
            conv.out_channels,
        );
        // The DSP blocks load weights as words (model blobs are 16-byte aligned).
        if scratch.len() >= need && (conv.weights.as_ptr() as usize).is_multiple_of(4) {
            count(&DSP_CALLS);
            super::blocked::conv2d_in(&super::dsp::Asm, conv, t, scratch);
            return;
        }
    }
    let _ = scratch;
    count(if plan.is_some() {
        &FALLBACK_CALLS
    } else {
        &PORTABLE_CALLS
    });
    // On an x86-64 host with std: the vectorized int16 GEMM (bit-identical, ~10x faster).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    return super::host::conv2d_in(conv, t);
    #[allow(unreachable_code)]
    conv2d_in(conv, t)
}

/// The portable kernel: runs `conv` on `input` (`conv.input.len()` values) into `output`
/// (`conv.output().len()`).
pub fn conv2d(conv: &Conv<'_>, input: &[i8], output: &mut [i8]) {
    conv2d_in(conv, &mut Separate { input, output })
}

/// [`conv2d`] on [`Tensors`]. Output pixels go in row-major order and each reads only its own
/// receptive field, so output row `p` is written after the last read of every input row
/// before its window (the row order [`crate::plan`] relies on).
pub fn conv2d_in(conv: &Conv<'_>, t: &mut dyn Tensors) {
    let out = conv.output();
    if out.is_empty() {
        return;
    }
    let (stride, window) = if conv.pool {
        (2, &POOL_WINDOW[..])
    } else {
        (1, &SINGLE[..])
    };
    let zx = conv.input_zero_point as i32;
    let zy = conv.output_zero_point as i32;
    let floor = conv.output_floor();
    for position in 0..out.h * out.w {
        let (oy, ox) = (position / out.w, position % out.w);
        for co in 0..out.c {
            let filter = conv.filter(co);
            let mut best = i32::MIN;
            for &(dy, dx) in window {
                best = best.max(patch_dot(
                    conv,
                    t.input(),
                    filter,
                    oy * stride + dy,
                    ox * stride + dx,
                    zx,
                ));
            }
            let acc = best + conv.channels.bias(co);
            t.output()[position * out.c + co] =
                requantize(acc, conv.channels.multiplier(co), zy, floor, i8::MAX as i32);
        }
    }
}

/// `sum((x - zx) * w)` over the receptive field of conv output pixel (`cy`, `cx`). Taps in the
/// padding hold the zero point, so they contribute nothing and are skipped; each kernel row is
/// one contiguous run of `kernel * channels` values in NHWC.
#[inline]
fn patch_dot(conv: &Conv<'_>, input: &[i8], filter: &[i8], cy: usize, cx: usize, zx: i32) -> i32 {
    let (k, pad, c) = (conv.kernel, conv.pad, conv.input.c);
    let (h, w) = (conv.input.h, conv.input.w);
    let kx_start = pad.saturating_sub(cx);
    let kx_end = k.min(w + pad - cx);
    let run = (kx_end - kx_start) * c;
    let ix_start = cx + kx_start - pad;
    let mut acc = 0;
    for ky in 0..k {
        let iy = cy + ky;
        if iy < pad || iy - pad >= h {
            continue;
        }
        let xs = &input[((iy - pad) * w + ix_start) * c..][..run];
        let ws = &filter[(ky * k + kx_start) * c..][..run];
        acc += dot_offset(xs, ws, zx);
    }
    acc
}
