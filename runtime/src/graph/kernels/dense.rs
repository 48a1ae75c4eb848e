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
use super::requant::Layer;
use crate::graph::ops::Node;
use crate::kernels::dsp::{self as v1, Mac};
use crate::tflite_rule::QuantizedMultiplier;

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

/// Rows of one group of the wide layout.
const ROWS: usize = crate::graph::ops::dense::WIDE_ROWS;

/// The multiply loop of the wide layout (`ops::dense::wide_index`): one group of 8 rows.
pub trait Wide {
    /// For `r < 8`: `acc[r] + sum_k w(r, k) (x[k] - z)` over `k < x.len()`, with `w` the
    /// group's weights as stored (`16 * x.len()` bytes of int16). Needs `x.len()` a multiple
    /// of 4, `w.len() >= 16 * x.len()`.
    fn group(&self, acc: [i32; ROWS], x: &[i8], z: i8, w: &[u8]) -> [i32; ROWS] {
        let mut acc = acc;
        let w = |i: usize| i16::from_le_bytes([w[2 * i], w[2 * i + 1]]) as i32;
        for (q, xs) in x.chunks_exact(4).enumerate() {
            let d = [0, 1, 2, 3].map(|i| xs[i] as i32 - z as i32);
            for (r, a) in acc.iter_mut().enumerate() {
                let at = (q * ROWS + r) * 4;
                // The lanes [w0, w2, w1, w3] against (x0, x2) and (x1, x3).
                *a = a
                    .wrapping_add(w(at) * d[0] + w(at + 1) * d[2])
                    .wrapping_add(w(at + 2) * d[1] + w(at + 3) * d[3]);
            }
        }
        acc
    }

    /// A group's 8 sums in the fused form of their channels (`layer`'s channel of each
    /// `mult[r]`), into `out[r]`. Needs every channel to have the fused form and `layer`'s
    /// upper clamp 127.
    fn finish(&self, acc: &[i32; ROWS], mult: &[[i32; 2]], layer: &Layer, out: &mut [i8]) {
        for ((y, &a), &[m, shift]) in out.iter_mut().zip(acc).zip(mult) {
            let q = layer.channel(QuantizedMultiplier {
                multiplier: m,
                shift,
            });
            *y = q.expect("every channel in the fused form").apply(a);
        }
    }
}

impl Wide for v1::Emulated {}

/// dense of a validated node whose weights are in the wide layout (`Node::wide`): the rows a
/// group of 8 at a time against the int8 input itself (widened in registers, no scratch),
/// each sum requantized in the fused form where the channel has it, else the node's rule.
/// On the Cortex-M4 the scalar reference when the weights are not word-aligned in memory.
pub fn wide(n: &Node<'_>, input: &[i8], output: &mut [i8]) {
    #[cfg(tinyconv_dsp)]
    {
        if (n.weights.as_ptr() as usize).is_multiple_of(4) {
            return wide_with(&v1::Asm, n, input, output);
        }
        // Model bytes not word-aligned in memory (never for a model in a `static` aligned
        // as the firmware's): the scalar reference, which keeps one copy of the loop in flash.
        crate::graph::ops::dense::reference(n, input, output)
    }
    #[cfg(not(tinyconv_dsp))]
    wide_with(&v1::Emulated, n, input, output)
}

/// [`wide`] with the multiply loop `m` (the host tests run it with wrong loops too).
pub fn wide_with<M: Wide>(m: &M, n: &Node<'_>, input: &[i8], output: &mut [i8]) {
    let (bias, multipliers) = n.channels.blobs();
    let Some(ch) = Words::new(bias, multipliers) else {
        // As for conv2d.
        return crate::graph::ops::dense::reference(n, input, output);
    };
    let len = input.len();
    let z = n.input.quant.zero_point;
    let layer = super::conv::fused_layer(n);
    // Every channel in the fused form with an upper clamp of 127: the group's sums take
    // `Wide::finish` (assembly on the Cortex-M4).
    let lean = match (layer, ch.slices()) {
        (Some(l), Some((_, mult))) if n.fused && l.parts().2 == i8::MAX as i32 => Some((l, mult)),
        _ => None,
    };
    for (g, out) in output.chunks_exact_mut(ROWS).enumerate() {
        let w = &n.weights[g * 2 * ROWS * len..(g + 1) * 2 * ROWS * len];
        let acc = core::array::from_fn(|r| ch.bias(ROWS * g + r));
        let acc = m.group(acc, input, z, bytemuck::cast_slice(w));
        if let Some((l, mult)) = lean {
            m.finish(&acc, &mult[ROWS * g..ROWS * (g + 1)], &l, out);
            continue;
        }
        for (r, (y, &a)) in out.iter_mut().zip(&acc).enumerate() {
            let words = ch.words(ROWS * g + r);
            *y = match super::conv::fused_channel(layer, words) {
                Some(q) => q.apply(a),
                None => Requant::with_words(n, words).apply(n.rule, a),
            };
        }
    }
}

#[cfg(tinyconv_dsp)]
#[allow(unsafe_code)]
mod wide_asm {
    use super::{Layer, ROWS, Wide};
    use crate::kernels::dsp::{Asm, Emulated};
    use core::arch::asm;

    // One row of a quad: its 4 weights (one `LDRD`) against the widened input pair.
    macro_rules! row {
        ($a:literal) => {
            concat!(
                "ldrd {t}, {u}, [{w}], #8\n",
                "smlad ",
                $a,
                ", {p}, {t}, ",
                $a,
                "\n",
                "smlad ",
                $a,
                ", {q}, {u}, ",
                $a,
                "\n",
            )
        };
    }

    // One quad of inputs for the group's 8 rows: the input word widened in registers less the
    // zero point (from the stack), then each row: 30 instructions per 32 MACs.
    macro_rules! quad {
        () => {
            concat!(
                "ldr {t}, [{x}], #4\n",
                "sxtb16 {p}, {t}\n",
                "sxtb16 {q}, {t}, ror #8\n",
                "ldr {t}, [sp]\n",
                "ssub16 {p}, {p}, {t}\n",
                "ssub16 {q}, {q}, {t}\n",
                row!("{a0}"),
                row!("{a1}"),
                row!("{a2}"),
                row!("{a3}"),
                row!("{a4}"),
                row!("{a5}"),
                row!("{a6}"),
                row!("r7"),
            )
        };
    }

    impl Wide for Asm {
        #[inline]
        fn group(&self, acc: [i32; ROWS], x: &[i8], z: i8, w: &[u8]) -> [i32; ROWS] {
            assert!(x.len().is_multiple_of(4) && w.len() >= 2 * ROWS * x.len());
            assert!((w.as_ptr() as usize).is_multiple_of(4));
            // Two quads a turn; an odd last one in Rust.
            let pairs = x.len() / 8;
            let mut acc = acc;
            if pairs > 0 {
                let z2 = (z as u16 as u32) * 0x0001_0001;
                let end = x[8 * pairs..].as_ptr();
                // SAFETY: reads the first `8 * pairs` input bytes (LDR, unaligned allowed) and
                // their `16 * ROWS * pairs` weight bytes (LDRD, word-aligned: asserted), inside
                // the slices the asserts bound; reads and writes the 8 accumulators through
                // their pointer; 16 bytes of stack hold r7, the pointer, the end and z2; the
                // flags are clobbered.
                unsafe {
                    asm!(
                        "push {{r7}}",
                        "push {{{p}}}",
                        "push {{{u}}}",
                        "push {{{q}}}",
                        "ldrd {a0}, {a1}, [{p}]",
                        "ldrd {a2}, {a3}, [{p}, #8]",
                        "ldrd {a4}, {a5}, [{p}, #16]",
                        "ldr {a6}, [{p}, #24]",
                        "ldr r7, [{p}, #28]",
                        "1:",
                        quad!(),
                        quad!(),
                        "ldr {t}, [sp, #4]",
                        "cmp {x}, {t}",
                        "bne 1b",
                        "ldr {p}, [sp, #8]",
                        "strd {a0}, {a1}, [{p}]",
                        "strd {a2}, {a3}, [{p}, #8]",
                        "strd {a4}, {a5}, [{p}, #16]",
                        "str {a6}, [{p}, #24]",
                        "str r7, [{p}, #28]",
                        "add sp, sp, #12",
                        "pop {{r7}}",
                        x = inout(reg) x.as_ptr() => _,
                        w = inout(reg) w.as_ptr() => _,
                        p = inout(reg) acc.as_mut_ptr() => _,
                        q = inout(reg) z2 => _,
                        u = inout(reg) end => _,
                        t = out(reg) _,
                        a0 = out(reg) _,
                        a1 = out(reg) _,
                        a2 = out(reg) _,
                        a3 = out(reg) _,
                        a4 = out(reg) _,
                        a5 = out(reg) _,
                        a6 = out(reg) _,
                    );
                }
            }
            if !x.len().is_multiple_of(8) {
                let at = 8 * pairs;
                acc = Emulated.group(acc, &x[at..], z, &w[2 * ROWS * at..]);
            }
            acc
        }

        #[inline]
        fn finish(&self, acc: &[i32; ROWS], mult: &[[i32; 2]], layer: &Layer, out: &mut [i8]) {
            let (z, lo, hi) = layer.parts();
            assert!(mult.len() >= ROWS && out.len() >= ROWS && hi == i8::MAX as i32);
            assert!(
                mult[..ROWS]
                    .iter()
                    .all(|&[m, s]| m > 0 && (-23..=-2).contains(&s))
            );
            let kz = 1 + 2 * z;
            // SAFETY: reads the 8 sums and 8 multiplier pairs and writes the 8 output bytes
            // the asserts bound; every shift in the fused form's range (asserted); the flags
            // are clobbered.
            macro_rules! finish {
                ($clamp:expr) => {
                    unsafe {
                        asm!(
                            "1:",
                            "ldrd {m}, {s}, [{mp}], #8",
                            "ldr {a}, [{ap}], #4",
                            // sh = e - 1 = !shift, khi = (1 + 2z) 2^sh / 2.
                            "mvn {s}, {s}",
                            "lsl {k}, {kz}, {s}",
                            "asr {k}, {k}, #1",
                            "and {l}, {a}, #0x80000000",
                            "orr {l}, {l}, #0x40000000",
                            "add {k}, {k}, {a}, asr #31",
                            "smlal {l}, {k}, {a}, {m}",
                            "asr {k}, {k}, {s}",
                            "ssat {k}, #8, {k}",
                            $clamp,
                            "strb {k}, [{op}], #1",
                            "subs {n}, {n}, #1",
                            "bne 1b",
                            mp = inout(reg) mult.as_ptr() => _,
                            ap = inout(reg) acc.as_ptr() => _,
                            op = inout(reg) out.as_mut_ptr() => _,
                            n = inout(reg) ROWS => _,
                            kz = in(reg) kz,
                            lo = in(reg) lo,
                            m = out(reg) _,
                            s = out(reg) _,
                            k = out(reg) _,
                            l = out(reg) _,
                            a = out(reg) _,
                            options(nostack),
                        )
                    }
                };
            }
            if lo == i8::MIN as i32 {
                finish!("/* no lower clamp: {lo} */")
            } else {
                finish!("cmp {k}, {lo}\nit lt\nmovlt {k}, {lo}")
            }
        }
    }
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
