//! Where an op reads its input tensor and writes its output tensor: two separate slices
//! ([`Io::apart`]), or one window of the arena in which the planner let the output stream
//! over the input it has consumed ([`Io::overlapping`]; `plan::plan` and each op's
//! `stream_lead`).
//!
//! A streaming kernel only ever holds a borrow of the input *or* of the output, never both:
//! it reads what it needs of the input (into registers or its scratch), then writes outputs.
//! The planner's rule guarantees those writes never reach input bytes still to be read. One
//! concrete type for both layouts (not a trait), so each kernel is compiled once: a generic
//! conv driver compiled twice cost the Cortex-M4 20 KB of flash and, through LLVM's changed
//! inlining, 3 % more instructions in DS-CNN's pointwise convs.

use core::ops::Range;

/// An op's input and output tensors, addressed relative to each tensor's first byte.
pub struct Io<'a> {
    /// The output's bytes, and the input's too when `apart` is `None`.
    buf: &'a mut [i8],
    /// The input, when it is a separate slice.
    apart: Option<&'a [i8]>,
    input: usize,
    input_len: usize,
    output: usize,
    output_len: usize,
}

impl<'a> Io<'a> {
    /// Input and output in separate slices.
    pub fn apart(input: &'a [i8], output: &'a mut [i8]) -> Self {
        Io {
            input: 0,
            input_len: input.len(),
            output: 0,
            output_len: output.len(),
            buf: output,
            apart: Some(input),
        }
    }

    /// Input and output as two ranges of one buffer, possibly sharing bytes; `None` unless
    /// both lie in `buf`.
    pub fn overlapping(
        buf: &'a mut [i8],
        input: Range<usize>,
        output: Range<usize>,
    ) -> Option<Self> {
        if input.start > input.end
            || output.start > output.end
            || input.end > buf.len()
            || output.end > buf.len()
        {
            return None;
        }
        Some(Io {
            buf,
            apart: None,
            input: input.start,
            input_len: input.len(),
            output: output.start,
            output_len: output.len(),
        })
    }

    #[inline(always)]
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    #[inline(always)]
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// Bytes `r` of the input tensor.
    #[inline(always)]
    pub fn input(&self, r: Range<usize>) -> &[i8] {
        match self.apart {
            Some(input) => &input[r],
            None => {
                assert!(r.end <= self.input_len);
                &self.buf[self.input + r.start..self.input + r.end]
            }
        }
    }

    /// Bytes `r` of the output tensor.
    #[inline(always)]
    pub fn output(&mut self, r: Range<usize>) -> &mut [i8] {
        assert!(r.end <= self.output_len);
        &mut self.buf[self.output + r.start..self.output + r.end]
    }

    /// Input byte `i`.
    #[inline(always)]
    pub fn get(&self, i: usize) -> i8 {
        self.input(i..i + 1)[0]
    }

    /// The first input and output bytes, for assembly loops that read each input byte before
    /// they write the output byte at the same index (so in place and streaming are safe).
    pub fn pointers(&mut self) -> (*const i8, *mut i8) {
        let base = self.buf.as_mut_ptr();
        let input = match self.apart {
            Some(input) => input.as_ptr(),
            // `wrapping_add` stays in bounds: the offset was checked against `buf`.
            None => base.wrapping_add(self.input) as *const i8,
        };
        (input, base.wrapping_add(self.output))
    }
}
