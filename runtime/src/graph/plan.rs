//! The arena plan of a v2 graph: where every activation tensor and every op's scratch lives.
//!
//! Each tensor is live from the op that writes it (the graph input: from the start) to the last
//! op that reads it (the graph output: to the end), so a residual branch's input stays alive
//! until its add. A reshape's output is a view: it shares its input's bytes and extends their
//! life. Two items may share bytes only when their lives do not overlap. Items are placed
//! largest first, each at the lowest offset where it clashes with no placed item it is live
//! with (the greedy-by-size placement TensorFlow Lite Micro also uses).
//!
//! It is a `const fn` over the raw bytes, so firmware can size a `static` arena at compile time
//! ([`crate::required_arena_len`]); [`super::Graph::parse`] validates the file before it plans.

use super::format::{MAX_OPS, MAX_TENSORS, NO_TENSOR, op};
use super::ops;
use super::record::{counts, raw_op, raw_tensor};

/// Offsets are multiples of this, so kernels may read words.
pub const ALIGN: usize = 4;
const MAX_ITEMS: usize = MAX_TENSORS + MAX_OPS;
const NONE: usize = usize::MAX;

/// Where each tensor and scratch area sits in the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphPlan {
    /// Bytes of arena the plan needs.
    pub len: usize,
    /// Byte offset of each tensor (a reshape's output: its input's offset).
    pub tensor_offset: [u32; MAX_TENSORS],
    /// Byte offset and length of each op's scratch (0 bytes for ops that need none).
    pub scratch_offset: [u32; MAX_OPS],
    pub scratch_len: [u32; MAX_OPS],
}

impl GraphPlan {
    /// The plan of nothing: a zero-byte arena.
    pub const EMPTY: GraphPlan = GraphPlan {
        len: 0,
        tensor_offset: [0; MAX_TENSORS],
        scratch_offset: [0; MAX_OPS],
        scratch_len: [0; MAX_OPS],
    };
}

const fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Plans a graph. The bytes must hold the header, tensor and op tables ([`super::Graph::parse`]
/// checks that and everything else first); in a `const` a malformed table is a compile error.
pub const fn plan(bytes: &[u8]) -> GraphPlan {
    let (tensors, ops_count, input, output) = counts(bytes);
    let mut result = GraphPlan::EMPTY;
    if tensors == 0 || tensors > MAX_TENSORS || ops_count > MAX_OPS || input >= tensors {
        return result;
    }

    // Lives, per root tensor (a reshape output's root is its input's root).
    let mut root = [0usize; MAX_TENSORS];
    let mut t = 0;
    while t < tensors {
        root[t] = t;
        t += 1;
    }
    let mut first = [NONE; MAX_ITEMS];
    let mut last = [0usize; MAX_ITEMS];
    let mut size = [0usize; MAX_ITEMS];
    first[input] = 0;
    let mut i = 0;
    while i < ops_count {
        let o = raw_op(bytes, tensors, i);
        let out = o.output as usize;
        let a = root[o.input0 as usize];
        last[a] = max(last[a], i);
        if o.input1 != NO_TENSOR {
            let b = root[o.input1 as usize];
            last[b] = max(last[b], i);
        }
        if o.code == op::RESHAPE {
            root[out] = a;
        } else {
            if first[out] == NONE {
                first[out] = i;
            }
            last[out] = max(last[out], i);
        }
        let scratch = ops::scratch_len(bytes, tensors, i);
        if scratch > 0 {
            first[tensors + i] = i;
            last[tensors + i] = i;
            size[tensors + i] = align(scratch);
            result.scratch_len[i] = scratch as u32;
        }
        i += 1;
    }
    if output < tensors {
        let r = root[output];
        last[r] = ops_count;
    }
    t = 0;
    while t < tensors {
        if root[t] == t && first[t] != NONE {
            size[t] = align(raw_tensor(bytes, t).len_u64() as usize);
        }
        t += 1;
    }

    // Greedy by size: the largest unplaced item goes lowest where it clashes with nothing.
    // Items 0..tensors are tensors, then one scratch item per op.
    let n = tensors + ops_count;
    let mut offset = [0usize; MAX_ITEMS];
    let mut placed = [false; MAX_ITEMS];
    let mut end = 0;
    loop {
        let mut pick = NONE;
        let mut k = 0;
        while k < n {
            if !placed[k] && size[k] > 0 && (pick == NONE || size[k] > size[pick]) {
                pick = k;
            }
            k += 1;
        }
        if pick == NONE {
            break;
        }
        // Candidates: 0 and the end of every placed item live at the same time.
        let mut best = NONE;
        let mut c = 0;
        while c <= n {
            let candidate = if c == n {
                0
            } else if placed[c] && lives_overlap(&first, &last, c, pick) {
                offset[c] + size[c]
            } else {
                c += 1;
                continue;
            };
            if (best == NONE || candidate < best)
                && fits(&first, &last, &offset, &size, &placed, n, pick, candidate)
            {
                best = candidate;
            }
            c += 1;
        }
        offset[pick] = best;
        placed[pick] = true;
        end = max(end, best + size[pick]);
    }

    result.len = end;
    t = 0;
    while t < tensors {
        result.tensor_offset[t] = offset[root[t]] as u32;
        t += 1;
    }
    i = 0;
    while i < ops_count {
        result.scratch_offset[i] = offset[tensors + i] as u32;
        i += 1;
    }
    result
}

const fn lives_overlap(first: &[usize], last: &[usize], a: usize, b: usize) -> bool {
    first[a] <= last[b] && first[b] <= last[a]
}

/// Whether `item` at `at` clashes with no placed item that is live with it.
const fn fits(
    first: &[usize],
    last: &[usize],
    offset: &[usize],
    size: &[usize],
    placed: &[bool],
    n: usize,
    item: usize,
    at: usize,
) -> bool {
    let mut k = 0;
    while k < n {
        if placed[k]
            && lives_overlap(first, last, k, item)
            && at < offset[k] + size[k]
            && offset[k] < at + size[item]
        {
            return false;
        }
        k += 1;
    }
    true
}
