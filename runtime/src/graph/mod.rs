//! Model format version 2: a graph of int8 ops over activation tensors, under one of two
//! requantization rules ([`Rule`]).
//!
//! [`Graph::parse`] validates everything once — checksum, every record field, the graph's
//! order (every op reads tensors already written; every tensor written once), blob bounds,
//! multipliers against the rule, accumulator bounds — so that inference cannot fail or panic
//! except for caller errors (an arena or input of the wrong size). Weights stay in the caller's
//! bytes (flash on an MCU); activations live in one caller-provided arena laid out by
//! [`plan`].
//!
//! ```
//! # use tinyconv::graph::{Graph, GraphSpec, OpSpec, TensorSpec, Clamp, Rule};
//! # use tinyconv::{QuantParams, Shape};
//! let q = QuantParams { scale: 0.5, zero_point: 0 };
//! let spec = GraphSpec {
//!     rule: Rule::Tflite,
//!     tensors: vec![
//!         TensorSpec { shape: Shape::new(1, 1, 4), quant: q },
//!         TensorSpec { shape: Shape::new(1, 1, 4), quant: q },
//!     ],
//!     input: 0,
//!     output: 1,
//!     pixel_scale: None,
//!     ops: vec![OpSpec::Add { inputs: [0, 0], output: 1, clamp: Clamp::NONE }],
//! };
//! let bytes = spec.to_bytes()?;
//! let graph = Graph::parse(&bytes)?;
//! let mut arena = vec![0i8; graph.arena_len()];
//! // x + x at one scale: 0.5*(1+1) = 1.0 is code 2.
//! assert_eq!(graph.infer_int8(&[1, 2, -3, 60], &mut arena)?, &[2, 4, -6, 120]);
//! # Ok::<(), tinyconv::Error>(())
//! ```

pub mod format;
mod infer;
pub mod io;
pub mod kernels;
pub mod ops;
pub mod plan;
pub mod record;
#[cfg(feature = "std")]
pub mod spec;
#[cfg(feature = "std")]
mod writer;

pub use format::Rule;
pub use ops::{Node, OpKind, TensorInfo};
pub use plan::GraphPlan;
#[cfg(feature = "std")]
pub use spec::{GraphSpec, OpSpec, Pads, TensorSpec, WeightsSpec, Window};
#[cfg(feature = "std")]
pub use writer::WriteOptions;

use crate::error::{Error, Shape};
use crate::quant::{Multiplier, QuantParams};
use format::{NO_TENSOR, flags, header};
use record::{counts, raw_op, raw_tensor};

/// The clamp fused at an op's output (ReLU, ReLU6, or the whole int8 range), in output codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Clamp {
    pub min: i8,
    pub max: i8,
}

impl Clamp {
    /// No clamp beyond int8 saturation.
    pub const NONE: Clamp = Clamp {
        min: i8::MIN,
        max: i8::MAX,
    };
}

/// A parsed, validated v2 model borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Graph<'m> {
    bytes: &'m [u8],
    rule: Rule,
    tensor_count: usize,
    op_count: usize,
    input: usize,
    output: usize,
    /// `Some` when the model also takes raw u8 pixels.
    pixel: Option<(f32, Multiplier)>,
    plan: GraphPlan,
    /// Bit `i`: op `i`'s [`Node::fused`].
    fused: u128,
}

/// Whether `bytes` claim to be a version-2 file (magic and version only; nothing validated).
pub const fn is_v2(bytes: &[u8]) -> bool {
    bytes.len() >= 6
        && bytes[0] == crate::format::MAGIC[0]
        && bytes[1] == crate::format::MAGIC[1]
        && bytes[2] == crate::format::MAGIC[2]
        && bytes[3] == crate::format::MAGIC[3]
        && crate::format::read_u16(bytes, header::VERSION) == format::VERSION
}

/// Op record `i` (reading tensors `inputs`) as its op module's `check` and `Check::weights` see
/// it: shapes, window, clamp and params decoded, blobs not yet read. Shared by the parser and
/// [`Graph::node`].
fn bare_check<'m>(
    bytes: &'m [u8],
    data_start: usize,
    rule: Rule,
    i: usize,
    raw: record::RawOp,
    kind: OpKind,
    [a, b]: [usize; 2],
) -> ops::Check<'m> {
    let node = Node {
        index: i,
        kind,
        rule,
        inputs: [a, b],
        output: raw.output as usize,
        input: tensor_info(bytes, a),
        input2: tensor_info(bytes, b),
        output_info: tensor_info(bytes, raw.output as usize),
        window: raw.window,
        clamp: Clamp {
            min: raw.clamp_min,
            max: raw.clamp_max,
        },
        weights: &[],
        channels: ops::Channels::default(),
        weight_scales: &[],
        params: raw.params,
        fused: false,
        wide: raw.flags & format::op_flags::WIDE != 0,
    };
    ops::Check {
        bytes,
        data_start,
        index: i,
        raw,
        node,
    }
}

fn tensor_info(bytes: &[u8], t: usize) -> TensorInfo {
    let raw = raw_tensor(bytes, t);
    TensorInfo {
        shape: Shape::new(raw.h, raw.w, raw.c),
        quant: QuantParams {
            scale: f32::from_bits(raw.scale_bits),
            zero_point: raw.zero_point,
        },
    }
}

impl<'m> Graph<'m> {
    /// Validates a version-2 model file. Never panics and never reads out of bounds, whatever
    /// the bytes.
    pub fn parse(bytes: &'m [u8]) -> Result<Self, Error> {
        Self::parse_with(bytes, None)
    }

    /// [`Graph::parse`] with a plan computed before, typically at compile time
    /// (`const PLAN: GraphPlan = plan::plan(MODEL)`), so that the MCU does not run the planner
    /// (its arrays took 1.9 KB more stack in the graph runner) at boot. The plan is not trusted: it must be sound for this
    /// graph — every tensor and scratch inside the arena, no two that are live at the same
    /// time sharing a byte — or the parse fails. It need not be the planner's.
    pub fn parse_planned(bytes: &'m [u8], plan: &GraphPlan) -> Result<Self, Error> {
        Self::parse_with(bytes, Some(plan))
    }

    fn parse_with(bytes: &'m [u8], planned: Option<&GraphPlan>) -> Result<Self, Error> {
        use crate::format::{CHECKSUM_LEN, MAGIC, read_f32, read_u16, read_u32};
        let min = format::HEADER_LEN + CHECKSUM_LEN;
        if bytes.len() >= 4 && bytes[..4] != MAGIC {
            return Err(Error::BadMagic {
                found: [bytes[0], bytes[1], bytes[2], bytes[3]],
            });
        }
        if bytes.len() < min {
            return Err(Error::Truncated {
                needed: min,
                actual: bytes.len(),
            });
        }
        let version = read_u16(bytes, header::VERSION);
        if version != format::VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                supported: format::VERSION,
            });
        }
        let file_len = read_u32(bytes, header::FILE_LEN) as usize;
        if file_len != bytes.len() {
            return Err(if file_len > bytes.len() {
                Error::Truncated {
                    needed: file_len,
                    actual: bytes.len(),
                }
            } else {
                Error::LengthMismatch {
                    header: file_len,
                    actual: bytes.len(),
                }
            });
        }
        let body = &bytes[..bytes.len() - CHECKSUM_LEN];
        let stored = read_u32(bytes, bytes.len() - CHECKSUM_LEN);
        let computed = crate::format::checksum(body);
        if stored != computed {
            return Err(Error::ChecksumMismatch { stored, computed });
        }
        let invalid = |field| Error::InvalidField { layer: None, field };
        let rule = Rule::from_code(bytes[header::RULE]).ok_or(invalid("rule code"))?;
        let header_flags = bytes[header::FLAGS];
        if header_flags & !flags::ALL != 0 {
            return Err(invalid("header flags (unknown bits set)"));
        }
        if bytes[header::RESERVED.0..header::RESERVED.1]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(invalid("reserved header bytes (must be zero)"));
        }
        let (tensor_count, op_count, input, output) = counts(bytes);
        if tensor_count == 0 || tensor_count > format::MAX_TENSORS {
            return Err(Error::GraphSize {
                what: "tensors",
                count: tensor_count,
                max: format::MAX_TENSORS,
            });
        }
        if op_count == 0 || op_count > format::MAX_OPS {
            return Err(Error::GraphSize {
                what: "ops",
                count: op_count,
                max: format::MAX_OPS,
            });
        }
        let data_start = format::op_at(tensor_count, op_count);
        if data_start > body.len() {
            return Err(Error::Truncated {
                needed: data_start + CHECKSUM_LEN,
                actual: bytes.len(),
            });
        }

        // Tensors.
        for t in 0..tensor_count {
            let at = format::tensor_at(t);
            let rec = &bytes[at..at + format::TENSOR_RECORD_LEN];
            let reserved = rec[format::tensor::RESERVED_BYTE] != 0
                || rec[format::tensor::RESERVED.0..format::tensor::RESERVED.1]
                    .iter()
                    .any(|&b| b != 0);
            if reserved {
                return Err(invalid("reserved tensor bytes (must be zero)"));
            }
            let raw = raw_tensor(bytes, t);
            if raw.len_u64() == 0 {
                return Err(Error::GraphOrder {
                    op: None,
                    what: "has a zero dimension",
                    tensor: t,
                });
            }
            if raw.len_u64() > format::MAX_TENSOR_BYTES as u64 {
                return Err(Error::TensorTooLarge {
                    tensor: t,
                    bytes: raw.len_u64(),
                });
            }
            let scale = f32::from_bits(raw.scale_bits);
            if !(scale.is_normal() && scale > 0.0) {
                return Err(Error::BadQuantization {
                    layer: None,
                    what: "a tensor scale (must be positive and normal)",
                });
            }
        }
        let out_of_range = |what, tensor| Error::GraphOrder {
            op: None,
            what,
            tensor,
        };
        if input >= tensor_count {
            return Err(out_of_range("(the input) does not exist", input));
        }
        if output >= tensor_count {
            return Err(out_of_range("(the output) does not exist", output));
        }
        let input_info = tensor_info(bytes, input);

        // Pixels.
        let pixel = if header_flags & flags::PIXELS != 0 {
            let pixel_scale = read_f32(bytes, header::PIXEL_SCALE);
            let stored = Multiplier {
                mantissa: read_u32(bytes, header::PIXEL_MANTISSA),
                shift: read_u32(bytes, header::PIXEL_SHIFT) as i32,
            };
            let expected = Multiplier::from_scale(pixel_scale / input_info.quant.scale);
            if !(pixel_scale.is_normal() && pixel_scale > 0.0) || expected != Some(stored) {
                return Err(Error::BadQuantization {
                    layer: None,
                    what: "pixel multiplier is not pixel scale / input scale",
                });
            }
            Some((pixel_scale, stored))
        } else {
            if bytes[header::PIXEL_SCALE..header::PIXEL_SHIFT + 4]
                .iter()
                .any(|&b| b != 0)
            {
                return Err(invalid("pixel fields of a model without pixel input"));
            }
            None
        };

        // Ops, in order: each reads written tensors and writes a new one.
        let mut written = [false; format::MAX_TENSORS];
        written[input] = true;
        let mut fused = 0u128;
        const _: () = assert!(format::MAX_OPS <= 128);
        for i in 0..op_count {
            let raw = raw_op(bytes, tensor_count, i);
            let kind = ops::OpKind::from_code(raw.code).ok_or(Error::UnknownOp {
                op: i,
                code: raw.code,
            })?;
            let at = format::op_at(tensor_count, i);
            let rec = &bytes[at..at + format::OP_RECORD_LEN];
            let allowed = match kind {
                ops::OpKind::Dense => format::op_flags::WIDE,
                _ => 0,
            };
            if raw.flags & !allowed != 0
                || rec[format::record::RESERVED_A.0..format::record::RESERVED_A.1]
                    .iter()
                    .any(|&b| b != 0)
            {
                return Err(Error::InvalidField {
                    layer: Some(i),
                    field: "flags (a bit this op does not allow) or reserved bytes (must be zero)",
                });
            }
            let order = |what, tensor| Error::GraphOrder {
                op: Some(i),
                what,
                tensor,
            };
            let read = |t: u16| -> Result<usize, Error> {
                let t = t as usize;
                if t >= tensor_count {
                    return Err(order("(an input) does not exist", t));
                }
                if !written[t] {
                    return Err(order("is read before any op writes it", t));
                }
                Ok(t)
            };
            let a = read(raw.input0)?;
            let b = match (kind, raw.input1) {
                (ops::OpKind::Add, t) => read(t)?,
                (_, NO_TENSOR) => a,
                (_, t) => return Err(order("is a second input of a one-input op", t as usize)),
            };
            let out = raw.output as usize;
            if out >= tensor_count {
                return Err(order("(the output) does not exist", out));
            }
            if written[out] {
                return Err(order("is written twice (or is the graph input)", out));
            }
            written[out] = true;
            if raw.clamp_min > raw.clamp_max {
                return Err(Error::InvalidField {
                    layer: Some(i),
                    field: "clamp (min above max)",
                });
            }
            let mut check = bare_check(bytes, data_start, rule, i, raw, kind, [a, b]);
            ops::check(&mut check)?;
            if kernels::conv::every_channel_fused(&check.node) {
                fused |= 1 << i;
            }
        }
        for (t, &w) in written.iter().enumerate().take(tensor_count) {
            if !w {
                return Err(out_of_range("is never written", t));
            }
        }
        if output == input {
            return Err(out_of_range("(the output) is the input", output));
        }

        let plan = match planned {
            Some(p) => *p,
            None => plan::plan(bytes),
        };
        let graph = Graph {
            bytes,
            rule,
            tensor_count,
            op_count,
            input,
            output,
            pixel,
            plan,
            fused,
        };
        graph.check_plan()?;
        Ok(graph)
    }

    /// The plan's promise, checked once so that inference can index without fear and no op
    /// overwrites a tensor still to be read: every tensor and scratch lies in the arena; a
    /// reshape's output has its input's bytes; and any two items (root tensors, op scratches)
    /// live at the same time are disjoint. Lives are computed here again, independently of the
    /// planner, in a few hundred bytes.
    fn check_plan(&self) -> Result<(), Error> {
        let bad = |tensor| {
            Err(Error::GraphOrder {
                op: None,
                what: "is placed over another live tensor or outside the arena by the plan",
                tensor,
            })
        };
        let (n, ops) = (self.tensor_count, self.op_count);
        let mut root = [0u16; format::MAX_TENSORS];
        let mut first = [u16::MAX; format::MAX_TENSORS];
        let mut last = [0u16; format::MAX_TENSORS];
        let mut producer = [u16::MAX; format::MAX_TENSORS];
        for (t, r) in root.iter_mut().enumerate().take(n) {
            *r = t as u16;
        }
        first[self.input] = 0;
        for node in self.nodes() {
            let i = node.index as u16;
            producer[node.output] = i;
            for t in node.inputs {
                let r = root[t] as usize;
                last[r] = last[r].max(i);
            }
            if node.kind == OpKind::Reshape {
                root[node.output] = root[node.inputs[0]];
                if self.plan.tensor_offset[node.output] != self.plan.tensor_offset[node.inputs[0]] {
                    return bad(node.output);
                }
            } else {
                first[node.output] = first[node.output].min(i);
                last[node.output] = last[node.output].max(i);
            }
        }
        let out_root = root[self.output] as usize;
        last[out_root] = ops as u16;
        for a in 0..n {
            let ra = self.tensor_range(a);
            if ra.end > self.plan.len {
                return bad(a);
            }
            if root[a] as usize != a || first[a] == u16::MAX {
                continue;
            }
            for b in a + 1..n {
                if root[b] as usize != b || first[b] == u16::MAX {
                    continue;
                }
                let live_together = first[a] <= last[b] && first[b] <= last[a];
                if live_together
                    && infer::overlap(&ra, &self.tensor_range(b))
                    && !self.streams(a, b, &root, &first, &last, &producer)
                    && !self.streams(b, a, &root, &first, &last, &producer)
                {
                    return bad(b);
                }
            }
        }
        for i in 0..ops {
            let scratch = self.scratch_range(i);
            let needed = ops::scratch_len(self.bytes, n, i);
            if scratch.end > self.plan.len || scratch.len() != needed {
                return Err(Error::GraphOrder {
                    op: Some(i),
                    what: "(the op's scratch) has the wrong size or lies outside the arena in the plan",
                    tensor: 0,
                });
            }
            for t in 0..n {
                let live = root[t] as usize == t
                    && first[t] != u16::MAX
                    && first[t] as usize <= i
                    && i <= last[t] as usize;
                if live && infer::overlap(&scratch, &self.tensor_range(t)) {
                    return bad(t);
                }
            }
        }
        Ok(())
    }

    /// Whether the plan lets tensor `y` stream over tensor `x`: `y` is written by an op that
    /// reads `x` last, through an input slot whose [`ops::stream_lead`] the placement keeps.
    fn streams(
        &self,
        x: usize,
        y: usize,
        root: &[u16],
        first: &[u16],
        last: &[u16],
        producer: &[u16],
    ) -> bool {
        let i = producer[y];
        if i == u16::MAX || first[y] != i || last[x] != i {
            return false;
        }
        let node = self.node(i as usize);
        let slots = if node.kind == OpKind::Add { 2 } else { 1 };
        // An add of a tensor to itself reads it twice: it never streams.
        if node.kind == OpKind::Add && root[node.inputs[0]] == root[node.inputs[1]] {
            return false;
        }
        (0..slots).any(|slot| {
            root[node.inputs[slot]] as usize == x
                && ops::stream_lead(self.bytes, self.tensor_count, i as usize, slot).is_some_and(
                    |lead| {
                        let d =
                            self.plan.tensor_offset[y] as i64 - self.plan.tensor_offset[x] as i64;
                        // A depthwise op runs in place exactly, or apart.
                        d <= lead && (node.kind != OpKind::DepthwiseConv2d || d == lead)
                    },
                )
        })
    }

    /// The requantization rule of the whole model.
    pub fn rule(&self) -> Rule {
        self.rule
    }

    pub fn op_count(&self) -> usize {
        self.op_count
    }

    pub fn tensor_count(&self) -> usize {
        self.tensor_count
    }

    /// Index of the input tensor.
    pub fn input_index(&self) -> usize {
        self.input
    }

    /// Index of the output tensor.
    pub fn output_index(&self) -> usize {
        self.output
    }

    /// Shape and quantization of tensor `t` (`t < tensor_count()`).
    pub fn tensor(&self, t: usize) -> TensorInfo {
        tensor_info(self.bytes, t)
    }

    pub fn input(&self) -> TensorInfo {
        self.tensor(self.input)
    }

    pub fn output(&self) -> TensorInfo {
        self.tensor(self.output)
    }

    /// The real value of one unit of a raw pixel, when the model takes raw pixels.
    pub fn pixel_scale(&self) -> Option<f32> {
        self.pixel.map(|p| p.0)
    }

    /// Bytes of activation arena inference needs (= [`crate::required_arena_len`]).
    pub fn arena_len(&self) -> usize {
        self.plan.len
    }

    pub fn plan(&self) -> &GraphPlan {
        &self.plan
    }

    /// Where tensor `t` lives in the arena.
    pub fn tensor_range(&self, t: usize) -> core::ops::Range<usize> {
        let start = self.plan.tensor_offset[t] as usize;
        start..start + self.tensor(t).shape.len()
    }

    /// Where op `op`'s scratch lives in the arena (empty when it needs none).
    pub fn scratch_range(&self, op: usize) -> core::ops::Range<usize> {
        let start = self.plan.scratch_offset[op] as usize;
        start..start + self.plan.scratch_len[op] as usize
    }

    /// The model file's bytes.
    pub fn bytes(&self) -> &'m [u8] {
        self.bytes
    }

    /// Op `i` (`i < op_count()`), decoded.
    pub fn node(&self, i: usize) -> Node<'m> {
        // Validated at parse time, so this cannot fail; decoding again keeps `Graph` small.
        let raw = raw_op(self.bytes, self.tensor_count, i);
        let kind = ops::OpKind::from_code(raw.code).unwrap_or(ops::OpKind::Reshape);
        let a = raw.input0 as usize;
        let b = if raw.input1 == NO_TENSOR {
            a
        } else {
            raw.input1 as usize
        };
        let data_start = format::op_at(self.tensor_count, self.op_count);
        let mut check = bare_check(self.bytes, data_start, self.rule, i, raw, kind, [a, b]);
        let node = check.node;
        if kind.has_weights() {
            let out_c = node.output_info.shape.c;
            let per = (raw.weights_len as usize).checked_div(out_c).unwrap_or(0);
            // Cannot fail on a validated model.
            let _ = check.weights(out_c, per);
        }
        check.node.fused = (self.fused >> i) & 1 != 0;
        check.node
    }

    /// The ops in order.
    pub fn nodes(&self) -> impl Iterator<Item = Node<'m>> + '_ {
        (0..self.op_count).map(|i| self.node(i))
    }

    /// Multiply-accumulates of one inference.
    pub fn macs(&self) -> usize {
        self.nodes().map(|n| n.macs()).sum()
    }

    /// Weights and biases.
    pub fn params_count(&self) -> usize {
        self.nodes().map(|n| n.params_count()).sum()
    }
}
