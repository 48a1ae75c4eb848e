//! dense (fully connected): the input vector widened once into int16 cells (`[x0 x2] [x1 x3]`
//! per group of 4, less the zero point), then each output row of weights against it.
//!
//! On the Cortex-M4, when every channel's requantization has the fused form
//! ([`Node::fused`]: the tflite rule, positive multipliers, shifts `-23..=-2`) and the clamp
//! tops out at 127, [`asm::layer`] runs the whole layer in one assembly loop: two rows a turn
//! sharing 8 widened activations per LDM (19 instructions per 16 MACs), and the pair's two
//! sums requantized in registers with constants derived from the stored multiplier words
//! (about 12 instructions an output, where the Rust loop took about 60). Everything else
//! takes v1's dense rows (`crate::kernels::dsp::Mac::dense`) and [`Requant`] per output.
//! All paths are bit-exact with `ops::dense::reference`.

use super::conv::{ChannelParams, LANE, Requant, Words, halves};
use crate::graph::ops::Node;
use crate::kernels::dsp::{self as v1, Mac};

/// Scratch bytes of [`dense`]: the widened input plus 3 bytes of alignment slack.
pub const fn scratch_len(inputs: usize) -> usize {
    inputs.div_ceil(4) * 4 * 2 + 3
}

/// The widened input in the scratch: `4 * ceil(len / 4)` int16 values, the tail group padded
/// with the zero point (widened to 0).
fn widen<'s>(input: &[i8], z: i8, scratch: &'s mut [i8]) -> &'s mut [i16] {
    let len = input.len();
    let x = &mut halves(scratch)[..4 * len.div_ceil(4)];
    let (cells, last) = x.split_at_mut(4 * (len / 4));
    for (cell, v) in cells.chunks_exact_mut(4).zip(input.chunks_exact(4)) {
        v1::widen_group([v[0], v[1], v[2], v[3]], z as i16, cell);
    }
    if !last.is_empty() {
        let mut v = [z; 4];
        for (t, &x) in v.iter_mut().zip(&input[4 * (len / 4)..]) {
            *t = x;
        }
        v1::widen_group(v, z as i16, last);
    }
    x
}

/// dense of a validated node with `crate::kernels::dsp`'s blocks `m`; `scratch` of
/// [`scratch_len`] bytes.
pub fn dense<M: Mac>(m: &M, n: &Node<'_>, input: &[i8], output: &mut [i8], scratch: &mut [i8]) {
    let x = widen(input, n.input.quant.zero_point, scratch);
    rows(m, n, &n.channels, x, input.len(), output)
}

/// Every output row against the widened input `x` (`len` values), reading the bias and
/// multipliers through `ch`.
fn rows<M: Mac, C: ChannelParams>(
    m: &M,
    n: &Node<'_>,
    ch: &C,
    x: &[i16],
    len: usize,
    output: &mut [i8],
) {
    // (The MLPerf Tiny autoencoder's multipliers all have the fused form; in this Rust loop
    // the general `Requant` measured as fast as a per-channel choice of it.)
    let finish = |oc: usize, acc: i32| Requant::with_words(n, ch.words(oc)).apply(n.rule, acc);
    let outs = output.len();
    let mut oc = 0;
    if len.is_multiple_of(4) {
        while oc < outs {
            let rows = (outs - oc).min(4);
            let mut acc = [0i32; 4];
            for (r, a) in acc[..rows].iter_mut().enumerate() {
                *a = ch.bias(oc + r);
            }
            m.dense(&mut acc[..rows], x, &n.weights[oc * len..], len);
            for (r, &a) in acc[..rows].iter().enumerate() {
                output[oc + r] = finish(oc + r, a);
            }
            oc += rows;
        }
    } else {
        for (oc, y) in output.iter_mut().enumerate() {
            let row = &n.weights[oc * len..(oc + 1) * len];
            let mut acc = ch.bias(oc);
            for (j, &w) in row.iter().enumerate() {
                acc += w as i32 * x[4 * (j / 4) + LANE[j % 4]] as i32;
            }
            *y = finish(oc, acc);
        }
    }
}

/// dense with the fastest kernel of this target and the channel words from `words`; the
/// scalar reference when the node's blobs cannot be read as words (`None`).
pub fn fast(
    n: &Node<'_>,
    words: Option<Words<'_>>,
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
) {
    #[cfg(tinyconv_dsp)]
    let m = &v1::Asm;
    #[cfg(not(tinyconv_dsp))]
    let m = &v1::Emulated;
    let Some(w) = words else {
        // As for conv2d.
        return crate::graph::ops::dense::reference(n, input, output);
    };
    let x = widen(input, n.input.quant.zero_point, scratch);
    #[cfg(tinyconv_dsp)]
    if asm::layer(n, &w, x, input.len(), output) {
        return;
    }
    rows(m, n, &w, x, input.len(), output)
}

#[cfg(tinyconv_dsp)]
#[allow(unsafe_code)]
mod asm {
    use super::super::conv::{ChannelParams, Words, fused_channel, fused_layer};
    use super::super::requant::Fused;
    use crate::graph::ops::Node;
    use crate::kernels::dsp::{Mac, dense2_row, dense2_step, dense2_steps};
    use core::arch::asm;

    /// The state of the pair loop, read and written by the assembly at fixed offsets.
    #[repr(C)]
    struct Frame {
        x: *const i16,         // 0
        steps: usize,          // 4: len / 8
        w: *const i8,          // 8: row A of the next pair
        len: usize,            // 12
        bias: *const i32,      // 16
        mult: *const [i32; 2], // 20
        out: *mut i8,          // 24
        pairs: usize,          // 28
        c: i32,                // 32: 1 + 2 z
        lo: i32,               // 36
    }
    const _: () = assert!(core::mem::offset_of!(Frame, lo) == 36);

    // The last group of 4 when len % 8 == 4 ({wb} steps past it to the next pair's row A).
    macro_rules! tail {
        () => {
            concat!(
                "ldrd r0, r1, [{x}]\n",
                "ldr {p}, [{wa}]\n",
                "ldr {q}, [{wb}], #4\n",
                "sxtb16 r7, {p}\n",
                "sxtb16 {p}, {p}, ror #8\n",
                "smlad {a0}, r7, r0, {a0}\n",
                "smlad {a0}, {p}, r1, {a0}\n",
                "sxtb16 r7, {q}\n",
                "sxtb16 {q}, {q}, ror #8\n",
                "smlad {a1}, r7, r0, {a1}\n",
                "smlad {a1}, {q}, r1, {a1}\n",
            )
        };
    }

    // One output: `Fused::apply` of accumulator `$a` with the multiplier in `$m` and the
    // stored shift in `$s` (sh = e - 1 = !shift, khi = (1 + 2z) << (e - 2) with {q} = 1 + 2z),
    // SSAT (the upper clamp is 127), `$clamp`, the store.
    macro_rules! one_out {
        ($a:literal, $m:literal, $s:literal, $clamp:expr) => {
            concat!(
                "mvn ",
                $s,
                ", ",
                $s,
                "\n",
                "sub r7, ",
                $s,
                ", #1\n",
                "lsl r7, {q}, r7\n",
                "and {n}, {",
                $a,
                "}, #0x80000000\n",
                "orr {n}, {n}, #0x40000000\n",
                "add r7, r7, {",
                $a,
                "}, asr #31\n",
                "smlal {n}, r7, {",
                $a,
                "}, ",
                $m,
                "\n",
                "asr r7, r7, ",
                $s,
                "\n",
                "ssat r7, #8, r7\n",
                $clamp,
                "strb r7, [{wa}], #1\n",
            )
        };
    }

    macro_rules! pair_loop {
        ($frame:expr, $tail:expr, $lo:expr, $clamp:expr) => {
            asm!(
                "push {{r7}}",
                "push {{{x}}}",
                "0:",
                // The pair's biases, rows and step count.
                "ldr {x}, [sp]",
                "ldr {p}, [{x}, #16]",
                "ldrd {a0}, {a1}, [{p}], #8",
                "str {p}, [{x}, #16]",
                "ldr {wa}, [{x}, #8]",
                "ldr {q}, [{x}, #12]",
                "add {wb}, {wa}, {q}",
                "ldr {n}, [{x}, #4]",
                "ldr {x}, [{x}]",
                // Eight steps a turn, then one at a time, then the tail group.
                dense2_steps!(),
                $tail,
                // The next pair's row A ({wb} is past row B), then the two outputs.
                "ldr {x}, [sp]",
                "str {wb}, [{x}, #8]",
                "ldr {p}, [{x}, #20]",
                "ldrd r0, r1, [{p}], #8",
                "ldrd r2, r3, [{p}], #8",
                "str {p}, [{x}, #20]",
                "ldr {q}, [{x}, #32]",
                "ldr {wa}, [{x}, #24]",
                $lo,
                one_out!("a0", "r0", "r1", $clamp),
                one_out!("a1", "r2", "r3", $clamp),
                "str {wa}, [{x}, #24]",
                "ldr {p}, [{x}, #28]",
                "subs {p}, {p}, #1",
                "str {p}, [{x}, #28]",
                "bne 0b",
                "add sp, sp, #4",
                "pop {{r7}}",
                x = inout(reg) $frame => _,
                wa = out(reg) _,
                wb = out(reg) _,
                n = out(reg) _,
                a0 = out(reg) _,
                a1 = out(reg) _,
                p = out(reg) _,
                q = out(reg) _,
                out("r0") _,
                out("r1") _,
                out("r2") _,
                out("r3") _,
            )
        };
    }

    /// # Safety
    /// `frame.pairs >= 1`; for each pair `k`: rows `2k, 2k + 1` of `frame.len` bytes at
    /// `frame.w + 2k len` readable (4-byte aligned, `len % 4 == 0`, `len >= 4`); `frame.x` to
    /// `len` readable int16 values (4-byte aligned); two biases, two multiplier pairs and two
    /// output bytes per pair; every channel's multiplier positive with a shift in `-23..=-2`;
    /// `frame.steps == len / 8`.
    unsafe fn pair_rows(frame: &mut Frame, tail: bool, lower: bool) {
        let f: *mut Frame = frame;
        macro_rules! lo {
            () => {
                "ldr {wb}, [{x}, #36]\n"
            };
        }
        macro_rules! clamp {
            () => {
                "cmp r7, {wb}\nit lt\nmovlt r7, {wb}\n"
            };
        }
        // SAFETY: reads and writes only the caller's ranges and the frame; 8 bytes of stack
        // are pushed and released; r7 is saved and restored; the flags are clobbered.
        unsafe {
            match (tail, lower) {
                (false, false) => pair_loop!(f, "", "", ""),
                (true, false) => pair_loop!(f, tail!(), "", ""),
                (false, true) => pair_loop!(f, "", lo!(), clamp!()),
                (true, true) => pair_loop!(f, tail!(), lo!(), clamp!()),
            }
        }
    }

    /// The whole layer in the pair loop, when it applies (see the module docs); `false`, with
    /// nothing written, when it does not.
    pub fn layer(n: &Node<'_>, w: &Words<'_>, x: &[i16], len: usize, output: &mut [i8]) -> bool {
        let Some(layer) = fused_layer(n) else {
            return false;
        };
        let Some((bias, mult)) = w.slices() else {
            return false;
        };
        let (z, lo, hi) = layer.parts();
        let outs = output.len();
        let weights = n.weights;
        let aligned = (weights.as_ptr() as usize).is_multiple_of(4);
        if !n.fused || hi != i8::MAX as i32 || len < 4 || !len.is_multiple_of(4) || !aligned {
            return false;
        }
        assert!(x.len() >= len && (x.as_ptr() as usize).is_multiple_of(4));
        assert!(weights.len() >= outs * len && bias.len() >= outs && mult.len() >= outs);
        let pairs = outs / 2;
        if pairs > 0 {
            let mut frame = Frame {
                x: x.as_ptr(),
                steps: len / 8,
                w: weights.as_ptr(),
                len,
                bias: bias.as_ptr(),
                mult: mult.as_ptr(),
                out: output.as_mut_ptr(),
                pairs,
                c: 1 + 2 * z,
                lo,
            };
            // SAFETY: the checks and asserts above; `n.fused` (checked at parse time) is
            // every channel's multiplier in the fused form.
            unsafe { pair_rows(&mut frame, !len.is_multiple_of(8), lo != i8::MIN as i32) }
        }
        if outs % 2 == 1 {
            let oc = outs - 1;
            let mut acc = [bias[oc]];
            crate::kernels::dsp::Asm.dense(&mut acc, x, &weights[oc * len..], len);
            let [m, s] = mult[oc];
            let q: Fused = fused_channel(Some(layer), (m, s)).expect("n.fused");
            output[oc] = q.apply(acc[0]);
        }
        true
    }
}
