//! Arena planning: where each layer's input, output and scratch sit in the one activation
//! arena, computed from the layer table alone (a `const fn`, so a firmware can size a `static`
//! arena at compile time).
//!
//! Two ideas make the arena small:
//!
//! * **Streaming overlap.** Every kernel writes its output rows in order, and writes output row
//!   `p` only after its last read of the input rows before [`first_live_row`]`(p)`. So the
//!   output may start *below* the input and grow over the input rows already consumed, as long
//!   as each output row ends before the first input row still live: the output starts
//!   [`stream_distance`] bytes below the input instead of a whole tensor away.
//! * **Lean kernels** ([`Mode::Memory`]): a layer whose blocked kernel has a lean mode gets the
//!   lean scratch (`kernels::blocked::lean_scratch_len`), a fraction of the full one, at some
//!   cost in speed.
//!
//! Each layer places its output either below its input (overlapping as above) or right after
//! it, and its scratch right below or right above the span of both; a small search keeps, layer
//! by layer, the placements not beaten on both "room used below the current tensor" and "room
//! used above it" (a Pareto frontier, at most [`FRONTIER`] of them), and picks the smallest
//! arena at the end. For the seed network this finds 7,688 bytes where ping-pong halves need
//! 11,784.

use crate::format::{
    HEADER_LEN, LAYER_RECORD_LEN, MAX_LAYERS, flags, header, op, padding, read_u8, read_u16, record,
};
use crate::kernels::InArena;
use core::ops::Range;

/// How a plan trades kernel speed for arena bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Every layer gets the scratch of its fastest kernel.
    Speed,
    /// Layers with a lean kernel mode get its smaller scratch: the smallest arena.
    Memory,
}

/// A planned arena: its length and the placement choices, replayed by [`Placements`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Arena bytes.
    pub len: usize,
    /// The mode the plan was made for (it decides the scratch sizes).
    pub mode: Mode,
    /// Where the model's input tensor starts.
    input_at: usize,
    /// Two bits a layer: output above its input (bit 0), scratch above the span (bit 1).
    choices: u128,
}

const OUTPUT_ABOVE: u128 = 1;
const SCRATCH_ABOVE: u128 = 2;

/// Placements kept per layer by the search.
pub const FRONTIER: usize = 16;

/// One layer's geometry, as the planner sees it.
#[derive(Clone, Copy, Debug)]
struct Step {
    /// A flatten: the output is the input, nothing runs.
    alias: bool,
    in_len: usize,
    out_len: usize,
    scratch: usize,
    /// [`stream_distance`].
    distance: usize,
}

const fn tensor_len(model: &[u8], at: usize) -> usize {
    read_u16(model, at) as usize
        * read_u16(model, at + 2) as usize
        * read_u16(model, at + 4) as usize
}

/// The first input row a kernel may still read after it has written (any part of) output row
/// `p`: for a convolution with a fused pool `2p - pad`; without, `p` rounded down to even
/// (the DSP tiles write two rows at once) `- pad`; for a max pool `2p`; at least 0.
pub const fn first_live_row(code: u8, pooled: bool, pad: usize, p: usize) -> usize {
    let row = if pooled || code == op::MAXPOOL2D {
        2 * p
    } else {
        p & !1
    };
    row.saturating_sub(pad)
}

/// The least number of bytes an output may start below its input so that no output row is
/// ever written over an input row still to be read: `max_p ((p + 1) * out_row - first_live_row(p) * in_row)`.
pub const fn stream_distance(model: &[u8], index: usize) -> usize {
    let r = HEADER_LEN + index * LAYER_RECORD_LEN;
    let code = read_u8(model, r + record::OP);
    let in_row =
        read_u16(model, r + record::IN_W) as usize * read_u16(model, r + record::IN_C) as usize;
    let (out_h, out_row) = (
        read_u16(model, r + record::OUT_H) as usize,
        read_u16(model, r + record::OUT_W) as usize * read_u16(model, r + record::OUT_C) as usize,
    );
    let (pooled, pad) = if code == op::CONV2D {
        let kernel = read_u8(model, r + record::KERNEL) as usize;
        let same = read_u8(model, r + record::PADDING) == padding::SAME;
        (
            read_u8(model, r + record::FLAGS) & flags::POOL != 0,
            if same { kernel / 2 } else { 0 },
        )
    } else {
        (false, 0)
    };
    if code == op::DENSE {
        // Every output reads the whole input: no overlap at all.
        return out_h * out_row;
    }
    let mut worst = 0;
    let mut p = 0;
    while p < out_h {
        let written = (p + 1) * out_row;
        let live = first_live_row(code, pooled, pad, p) * in_row;
        if written > live && written - live > worst {
            worst = written - live;
        }
        p += 1;
    }
    worst
}

const fn step(model: &[u8], index: usize, mode: Mode) -> Step {
    let r = HEADER_LEN + index * LAYER_RECORD_LEN;
    let code = read_u8(model, r + record::OP);
    let in_len = tensor_len(model, r + record::IN_H);
    let out_len = tensor_len(model, r + record::OUT_H);
    let scratch = match mode {
        Mode::Speed => crate::format::layer_scratch_len(model, index),
        Mode::Memory => crate::format::layer_lean_scratch_len(model, index),
    };
    Step {
        alias: code == op::FLATTEN,
        in_len,
        out_len,
        scratch,
        distance: stream_distance(model, index),
    }
}

/// Placement of one layer, relative to its input at `pos`: (output, phase low, phase high,
/// scratch start).
const fn layout(s: &Step, pos: i64, choice: u128) -> (i64, i64, i64, i64) {
    let (in_len, out_len, scratch) = (s.in_len as i64, s.out_len as i64, s.scratch as i64);
    let (out, lo, hi) = if choice & OUTPUT_ABOVE != 0 {
        (pos + in_len, pos, pos + in_len + out_len)
    } else {
        let out = pos - s.distance as i64;
        let top = if out + out_len > pos + in_len {
            out + out_len
        } else {
            pos + in_len
        };
        (out, out, top)
    };
    if choice & SCRATCH_ABOVE != 0 {
        (out, lo, hi + scratch, hi)
    } else {
        (out, lo - scratch, hi, lo - scratch)
    }
}

#[derive(Clone, Copy)]
struct State {
    pos: i64,
    lo: i64,
    hi: i64,
    choices: u128,
}

impl State {
    const fn below(&self) -> i64 {
        self.pos - self.lo
    }
    const fn above(&self) -> i64 {
        self.hi - self.pos
    }
    const fn beats(&self, other: &State) -> bool {
        self.below() <= other.below() && self.above() <= other.above()
    }
}

/// Plans the arena of `model` (a model file's bytes; the layer table is read, not validated:
/// [`crate::Model::parse`] validates). Panics (a compile error in a `const`) when the bytes
/// are too short to hold the layer table or it has more than [`MAX_LAYERS`] layers.
pub const fn plan(model: &[u8], mode: Mode) -> Plan {
    assert!(
        model.len() >= HEADER_LEN,
        "model file shorter than its header"
    );
    let layers = read_u16(model, header::LAYER_COUNT) as usize;
    assert!(layers <= MAX_LAYERS, "too many layers");
    assert!(
        model.len() >= HEADER_LEN + layers * LAYER_RECORD_LEN,
        "model file shorter than its layer table"
    );
    let input = tensor_len(model, header::INPUT_H) as i64;
    let empty = State {
        pos: 0,
        lo: 0,
        hi: 0,
        choices: 0,
    };
    let mut frontier = [empty; FRONTIER];
    frontier[0].hi = input;
    let mut count = 1;
    let mut i = 0;
    while i < layers {
        let s = step(model, i, mode);
        if !s.alias {
            let mut next = [empty; FRONTIER];
            let mut n = 0;
            let mut k = 0;
            while k < count {
                let from = frontier[k];
                let mut choice = 0;
                while choice < 4 {
                    let (out, lo, hi, _) = layout(&s, from.pos, choice);
                    let cand = State {
                        pos: out,
                        lo: if lo < from.lo { lo } else { from.lo },
                        hi: if hi > from.hi { hi } else { from.hi },
                        choices: from.choices | choice << (2 * i),
                    };
                    n = insert(&mut next, n, cand);
                    choice += 1;
                }
                k += 1;
            }
            frontier = next;
            count = n;
        }
        i += 1;
    }
    let mut best = 0;
    let mut k = 1;
    while k < count {
        let (a, b) = (&frontier[k], &frontier[best]);
        if a.hi - a.lo < b.hi - b.lo {
            best = k;
        }
        k += 1;
    }
    let b = frontier[best];
    Plan {
        len: (b.hi - b.lo) as usize,
        mode,
        input_at: (-b.lo) as usize,
        choices: b.choices,
    }
}

/// Adds `cand` to the first `n` states unless one beats it, dropping those it beats; when full,
/// the state with the largest span goes. Returns the new count.
const fn insert(states: &mut [State; FRONTIER], n: usize, cand: State) -> usize {
    let mut k = 0;
    while k < n {
        if states[k].beats(&cand) {
            return n;
        }
        k += 1;
    }
    let mut kept = 0;
    let mut k = 0;
    while k < n {
        if !cand.beats(&states[k]) {
            states[kept] = states[k];
            kept += 1;
        }
        k += 1;
    }
    if kept < FRONTIER {
        states[kept] = cand;
        return kept + 1;
    }
    let mut worst = 0;
    let mut k = 1;
    while k < kept {
        if states[k].hi - states[k].lo > states[worst].hi - states[worst].lo {
            worst = k;
        }
        k += 1;
    }
    if cand.hi - cand.lo < states[worst].hi - states[worst].lo {
        states[worst] = cand;
    }
    kept
}

/// Where one layer's tensors and scratch sit in the planned arena.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub input: Range<usize>,
    /// The input range itself for a flatten.
    pub output: Range<usize>,
    /// Empty when the layer needs none; never overlaps the span of input and output.
    pub scratch: Range<usize>,
}

impl Placement {
    /// The lowest and highest byte of input and output.
    pub fn span(&self) -> Range<usize> {
        self.input.start.min(self.output.start)..self.input.end.max(self.output.end)
    }

    /// Splits `arena` into the layer's scratch and its (possibly overlapping) input and output.
    ///
    /// # Panics
    /// If a range lies outside `arena` or the scratch overlaps the span (not a planned placement).
    pub fn split<'a>(&self, arena: &'a mut [i8]) -> (&'a mut [i8], InArena<'a>) {
        let span = self.span();
        let shift = |r: &Range<usize>, by: usize| r.start - by..r.end - by;
        if self.scratch.end <= span.start {
            let (low, high) = arena.split_at_mut(span.start);
            let tensors = InArena::new(
                high,
                shift(&self.input, span.start),
                shift(&self.output, span.start),
            );
            (&mut low[self.scratch.clone()], tensors)
        } else {
            assert!(
                self.scratch.start >= span.end,
                "scratch overlaps the tensors"
            );
            let (low, high) = arena.split_at_mut(span.end);
            let tensors = InArena::new(low, self.input.clone(), self.output.clone());
            (&mut high[shift(&self.scratch, span.end)], tensors)
        }
    }
}

/// Replays a [`Plan`] layer by layer.
#[derive(Clone, Debug)]
pub struct Placements<'m> {
    model: &'m [u8],
    plan: Plan,
    index: usize,
    layers: usize,
    pos: usize,
}

impl<'m> Placements<'m> {
    /// `plan` must have been made for `model`.
    pub fn new(model: &'m [u8], plan: Plan) -> Self {
        Placements {
            model,
            plan,
            index: 0,
            layers: read_u16(model, header::LAYER_COUNT) as usize,
            pos: plan.input_at,
        }
    }

    /// Where the model's input tensor goes.
    pub fn input(&self) -> Range<usize> {
        self.plan.input_at..self.plan.input_at + tensor_len(self.model, header::INPUT_H)
    }
}

impl Iterator for Placements<'_> {
    type Item = Placement;

    fn next(&mut self) -> Option<Placement> {
        if self.index >= self.layers {
            return None;
        }
        let s = step(self.model, self.index, self.plan.mode);
        let input = self.pos..self.pos + s.in_len;
        let place = if s.alias {
            Placement {
                output: input.clone(),
                input,
                scratch: 0..0,
            }
        } else {
            let choice = (self.plan.choices >> (2 * self.index)) & 3;
            let (out, _, _, scratch) = layout(&s, self.pos as i64, choice);
            let (out, scratch) = (out as usize, scratch as usize);
            self.pos = out;
            Placement {
                input,
                output: out..out + s.out_len,
                scratch: scratch..scratch + s.scratch,
            }
        };
        self.index += 1;
        Some(place)
    }
}
