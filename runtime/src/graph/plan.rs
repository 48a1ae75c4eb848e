//! The arena plan of a v2 graph: where every activation tensor and every op's scratch lives.
//!
//! Each tensor is live from the op that writes it (the graph input: from the start) to the last
//! op that reads it (the graph output: to the end), so a residual branch's input stays alive
//! until its add. A reshape's output is a view: it shares its input's bytes and extends their
//! life. Two items may share bytes only when their lives do not overlap, or when one is the
//! output of an op that *streams* over the other, its input read by no later op: the op's
//! kernels write their output in an order that never reaches input bytes still to be read as
//! long as the output starts at most the op's lead bytes after the input
//! ([`super::ops::stream_lead`]: a conv writing pixels in raster order, an add element by
//! element), so the output may sit over the consumed part of its input. Such pairs link into
//! *chains* (a conv streaming over the conv before it, an add over that), whose members keep
//! fixed offsets from each other, each as far over its input as the lead allows. Chains (most
//! are one item) are placed longest first, each at the lowest offset where no member clashes
//! with a placed item it is live with (the greedy-by-size placement TensorFlow Lite Micro
//! uses, for items; it does not stream).
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
///
/// Greedy placement is not optimal: fixed streaming offsets can push a ping-pong of equal
/// tensors around a non-streaming op (a depthwise conv between pointwise ones) into a third
/// slot. So both placements are made, with and without streaming, and the smaller kept.
pub const fn plan(bytes: &[u8]) -> GraphPlan {
    let apart = plan_with(bytes, false);
    let streamed = plan_with(bytes, true);
    if streamed.len < apart.len {
        streamed
    } else {
        apart
    }
}

/// [`plan`] with (`stream`) or without streaming chains.
pub const fn plan_with(bytes: &[u8], stream: bool) -> GraphPlan {
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

    // Streaming chains: op i's output may stream over an input whose life ends at i (the
    // first such slot; each tensor streams over at most one and is streamed over by at most
    // one, its last reader's output). A chain's members sit at fixed offsets from each other,
    // each output as far after its input as the op's lead allows; members two apart are
    // never live together.
    let n = tensors + ops_count;
    let mut prev = [NONE; MAX_ITEMS];
    let mut next = [NONE; MAX_ITEMS];
    let mut lead = [0i64; MAX_ITEMS];
    i = 0;
    while stream && i < ops_count {
        let o = raw_op(bytes, tensors, i);
        let out = o.output as usize;
        let mut slot = 0;
        while slot < 2 && o.code != op::RESHAPE && first[out] == i {
            let t = if slot == 0 { o.input0 } else { o.input1 };
            let other = if slot == 0 { o.input1 } else { o.input0 };
            if t != NO_TENSOR && prev[out] == NONE {
                let r = root[t as usize];
                // An add of a tensor to itself reads it twice: it stays apart.
                let twice = other != NO_TENSOR && root[other as usize] == r;
                if r != out
                    && !twice
                    && last[r] == i
                    && next[r] == NONE
                    && size[r] > 0
                    && let Some(l) = ops::stream_lead(bytes, tensors, i, slot)
                {
                    prev[out] = r;
                    next[r] = out;
                    lead[out] = l;
                }
            }
            slot += 1;
        }
        i += 1;
    }
    // Each item's chain (its head) and offset within it (`rel`, from the chain's lowest byte).
    let mut chain = [NONE; MAX_ITEMS];
    let mut rel = [0usize; MAX_ITEMS];
    let mut chain_len = [0usize; MAX_ITEMS];
    let mut at = [0i64; MAX_ITEMS];
    let mut k = 0;
    while k < n {
        if size[k] > 0 && prev[k] == NONE {
            // Offsets relative to the head, rounded down to words (a smaller lead is safe).
            at[k] = 0;
            let (mut lowest, mut m) = (0i64, k);
            while next[m] != NONE {
                let o = next[m];
                let x = at[m] + lead[o];
                at[o] = x - x.rem_euclid(ALIGN as i64);
                if at[o] < lowest {
                    lowest = at[o];
                }
                m = o;
            }
            let mut m = k;
            let mut len = 0;
            loop {
                chain[m] = k;
                rel[m] = (at[m] - lowest) as usize;
                len = max(len, rel[m] + size[m]);
                if next[m] == NONE {
                    break;
                }
                m = next[m];
            }
            chain_len[k] = len;
        }
        k += 1;
    }

    // Greedy by size: the longest unplaced chain (most items are chains of one) goes lowest
    // where none of its members clashes with a placed item it is live with.
    let mut offset = [0usize; MAX_ITEMS];
    let mut placed = [false; MAX_ITEMS];
    let mut end = 0;
    loop {
        let mut pick = NONE;
        k = 0;
        while k < n {
            if chain[k] == k && !placed[k] && (pick == NONE || chain_len[k] > chain_len[pick]) {
                pick = k;
            }
            k += 1;
        }
        if pick == NONE {
            break;
        }
        // Candidates: 0, and every base that puts a member right after a placed item live
        // with it.
        let mut best = NONE;
        let mut c = 0;
        while c <= n * n {
            let (m, k) = (c / n, c % n);
            let candidate = if c == n * n {
                0
            } else if chain[m] == pick
                && placed[k]
                && lives_overlap(&first, &last, k, m)
                && offset[k] + size[k] >= rel[m]
            {
                offset[k] + size[k] - rel[m]
            } else {
                NONE
            };
            if candidate != NONE
                && (best == NONE || candidate < best)
                && fits(
                    &first, &last, &offset, &size, &placed, &chain, &rel, n, pick, candidate,
                )
            {
                best = candidate;
            }
            c += 1;
        }
        let mut m = pick;
        loop {
            if chain[m] == pick {
                offset[m] = best + rel[m];
                placed[m] = true;
                end = max(end, offset[m] + size[m]);
            }
            if next[m] == NONE {
                break;
            }
            m = next[m];
        }
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

/// Whether chain `pick`'s members, the chain based at `at`, clash with no placed item live
/// with them.
#[allow(clippy::too_many_arguments)]
const fn fits(
    first: &[usize],
    last: &[usize],
    offset: &[usize],
    size: &[usize],
    placed: &[bool],
    chain: &[usize],
    rel: &[usize],
    n: usize,
    pick: usize,
    at: usize,
) -> bool {
    let mut m = 0;
    while m < n {
        if chain[m] == pick {
            let start = at + rel[m];
            let mut k = 0;
            while k < n {
                if placed[k]
                    && lives_overlap(first, last, k, m)
                    && start < offset[k] + size[k]
                    && offset[k] < start + size[m]
                {
                    return false;
                }
                k += 1;
            }
        }
        m += 1;
    }
    true
}
