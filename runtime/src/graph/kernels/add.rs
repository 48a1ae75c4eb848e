//! Fast add under the tflite rule: TFLM's per-element arithmetic with its two input rescales
//! looked up instead of computed.
//!
//! TFLM's int8 add (`tflite_rule::add`) rescales each input on its own,
//! `s_i = MBQM((x_i - z_i) << 20, M_i)`, then requantizes `s_1 + s_2`. `s_i` depends on the
//! int8 code `x_i` only, so the kernel computes both 256-entry tables once a call with the
//! reference's own function (2 KB of stack; 512 rescales against one per element each
//! before), and the output requantization takes the fused form of [`super::requant`] when the
//! output multiplier allows it (every add TFLite makes: its shift is `<= 0`), else the
//! reference's. Every value is the reference's by construction.

use super::requant::Fused;
use crate::graph::io::Io;
use crate::graph::ops::Node;
use crate::tflite_rule::{self, ADD_LEFT_SHIFT, AddParams, QuantizedMultiplier};

/// `s(x) = MBQM((x - z) << 20, m)` for every int8 code `x`, indexed by `x as u8`.
fn rescale_table(zero_point: i32, m: QuantizedMultiplier, t: &mut [i32]) {
    for (code, s) in t.iter_mut().enumerate() {
        let v = (code as u8 as i8 as i32)
            .wrapping_sub(zero_point)
            .wrapping_mul(1 << ADD_LEFT_SHIFT);
        *s = tflite_rule::multiply_by_quantized_multiplier(v, m);
    }
}

/// The tflite add of `a` and `b` into `output` (equal lengths), bit-exact with
/// `ops::add::tflite`.
pub fn tflite(n: &Node<'_>, p: &AddParams, a: &[i8], b: &[i8], output: &mut [i8]) {
    tflite_io(n, p, &mut Io::apart(a, output), 0, b)
}

/// [`tflite`] with input `slot` (0: the first, 1: the second) and the output in `io`, which
/// may overlap (`ops::add::stream_lead`: element `i` of both inputs is read before element
/// `i` is written); `other` is the other input.
pub fn tflite_io(n: &Node<'_>, p: &AddParams, io: &mut Io<'_>, slot: usize, other: &[i8]) {
    let zero_points = [
        n.input.quant.zero_point as i32,
        n.input2.quant.zero_point as i32,
    ];
    let multipliers = [p.input1, p.input2];
    // One array: the table of `io`'s input, then `other`'s (one base register for the
    // assembly). The sum of the two rescaled inputs does not depend on their order.
    let mut tables = [0i32; 512];
    {
        let (t1, t2) = tables.split_at_mut(256);
        rescale_table(zero_points[slot], multipliers[slot], t1);
        rescale_table(zero_points[1 - slot], multipliers[1 - slot], t2);
    }
    let z = n.output_info.quant.zero_point as i32;
    let (lo, hi) = (n.clamp.min as i32, n.clamp.max as i32);
    let len = io.output_len().min(io.input_len()).min(other.len());
    #[cfg(tinyconv_dsp)]
    if let Some(q) = Fused::new(p.output, z, lo, hi).filter(|q| q.hi == i8::MAX as i32)
        && len > 0
    {
        let (x, out) = io.pointers();
        // SAFETY: `len` bytes of `io`'s input and output and of `other`; the table reads are
        // at `tables[code]` and `tables[256 + code]` for byte codes: inside the array. Where
        // the output overlaps the input, it starts at or before it (the plan's lead 0) and
        // the loop reads input byte `i` before it writes output byte `i`.
        #[allow(unsafe_code)]
        unsafe {
            asm::relu(x, other.as_ptr(), out, len, tables.as_ptr(), &q)
        };
        return;
    }
    let (t1, t2) = tables.split_at(256);
    let fused = Fused::new(p.output, z, lo, hi);
    for (i, &x2) in other.iter().enumerate().take(len) {
        let raw = t1[io.get(i) as u8 as usize].wrapping_add(t2[x2 as u8 as usize]);
        io.output(i..i + 1)[0] = match &fused {
            Some(q) => q.apply(raw),
            None => {
                let out =
                    tflite_rule::multiply_by_quantized_multiplier(raw, p.output).wrapping_add(z);
                // The reference's clamp order: min(max, max(min, out)).
                let lower = if lo < out { out } else { lo };
                (if lower < hi { lower } else { hi }) as i8
            }
        };
    }
}

#[cfg(tinyconv_dsp)]
#[allow(unsafe_code)]
mod asm {
    use super::Fused;
    use core::arch::asm;

    /// The add loop with the fused output requantization, for an upper clamp of 127: two
    /// `LDRB`s, two table loads (one base register a table), the sum, the fused form
    /// (`kernels::requant`), `SSAT`, the lower clamp unless it is -128, the store: 14 or 17
    /// instructions an element.
    ///
    /// # Safety
    /// `a`, `b` and `out` must point to `len >= 1` readable (writable) bytes, `tables` to 512
    /// readable int32 values (`a`'s table, then `b`'s). `out` may overlap `a` or `b` when it
    /// starts at or before it: byte `i` of both is loaded before byte `i` of `out` is stored.
    #[inline(always)]
    pub unsafe fn relu(
        a: *const i8,
        b: *const i8,
        out: *mut i8,
        len: usize,
        tables: *const i32,
        q: &Fused,
    ) {
        let t2 = tables.wrapping_add(256);
        // With a lower clamp of -128, SSAT is the whole clamp.
        macro_rules! add_loop {
            ($clamp:expr, $($lower:tt)*) => {
                asm!(
                    "1:",
                    "ldrb {x1}, [{a}], #1",
                    "ldrb {x2}, [{b}], #1",
                    "ldr {x1}, [{t}, {x1}, lsl #2]",
                    "ldr {x2}, [{t2}, {x2}, lsl #2]",
                    "add {x1}, {x1}, {x2}",
                    "and {lo}, {x1}, #0x80000000",
                    "orr {lo}, {lo}, #0x40000000",
                    "add {x2}, {khi}, {x1}, asr #31",
                    "smlal {lo}, {x2}, {x1}, {m}",
                    "asr {x2}, {x2}, {sh}",
                    "ssat {x2}, #8, {x2}",
                    $clamp,
                    "strb {x2}, [{out}], #1",
                    "subs {n}, {n}, #1",
                    "bne 1b",
                    a = inout(reg) a => _,
                    b = inout(reg) b => _,
                    out = inout(reg) out => _,
                    n = inout(reg) len => _,
                    t = in(reg) tables,
                    t2 = in(reg) t2,
                    m = in(reg) q.m,
                    khi = in(reg) q.khi,
                    sh = in(reg) q.sh,
                    $($lower)*
                    x1 = out(reg) _,
                    x2 = out(reg) _,
                    lo = out(reg) _,
                    options(nostack),
                )
            };
        }
        // SAFETY: reads a[..len], b[..len] and tables[..512] (indices are bytes, the second
        // table 256 words on), writes out[..len]: the caller's ranges. No stack; the flags
        // are clobbered.
        unsafe {
            if q.lo == i8::MIN as i32 {
                add_loop!("",)
            } else {
                add_loop!("cmp {x2}, {qlo}\nit lt\nmovlt {x2}, {qlo}", qlo = in(reg) q.lo,)
            }
        }
    }
}
