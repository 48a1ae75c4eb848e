//! Structural fuzzing of the real model, in CI: a bounded number of multi-byte mutations of
//! `models/mnist-cnn.tcm` with the CRC recomputed (so that the structural checks behind the
//! checksum see the damage), parsed, and — when a mutation parses — run on random pixels with
//! an arena of the required size, of the speed plan's size, and one byte too short.
//!
//! Mutations are biased toward where the structure is: the header, the layer table and the
//! per-channel blobs (bias, weight scales, multipliers), with field-aware edits (boundary values,
//! off-by-small deltas, special floats, fields and records copied from another layer), plus
//! truncation and extension (with or without the header's length fixed). Every case runs under
//! `catch_unwind`; a panic is reported with the seed, the case index and the list of edits, and
//! `TINYCONV_FUZZ_CASE=<index>` replays that one case.
//!
//! `cargo test --release -p tinyconv --test fuzz_structural`; the counts go to stderr even
//! when the test harness captures output. `TINYCONV_FUZZ_CASES=<n>` changes the case count.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use tinyconv::format::{self, header, record};
use tinyconv::testing::SplitMix64;
use tinyconv::{Error, Mode, Model};

const SEED: u64 = 0x7c_0f12_2026;
const CASES: usize = 120_000;
/// Inference is skipped (and counted) for a mutated model above this many multiply-accumulates
/// (the real model does 8.0 M) or this much arena or input: a mutation can make a layer
/// enormous, and what is under test is that parse and infer never panic, not the kernels' speed
/// on a 4-G-pixel input.
const MAX_MACS: usize = 32_000_000;
const MAX_BYTES: usize = 16 << 20;
/// Every this many cases, when the mutation infers, its logits are also checked against the
/// reference pipeline (scalar kernels, separate buffers: ~0.1 s on the real model).
const REFERENCE_EVERY: usize = 1009;

fn real_model() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/mnist-cnn.tcm");
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e} (the committed real model)"))
}

/// Where the structure of the original file is: header, table, per-layer blobs.
struct Layout {
    len: usize,
    layers: usize,
    table_end: usize,
    /// Per layer with weights: the weights blob and the three per-channel blobs.
    weights: Vec<(usize, usize)>,
    channel_blobs: Vec<(usize, usize)>,
}

impl Layout {
    fn of(bytes: &[u8]) -> Layout {
        let model = Model::parse(bytes).expect("the real model parses");
        let layers = model.layer_count();
        let mut weights = Vec::new();
        let mut channel_blobs = Vec::new();
        for (i, layer) in model.layers().enumerate() {
            if !layer.has_weights() {
                continue;
            }
            let r = record_at(i);
            let at = |f| format::read_u32_le(bytes, r + f) as usize;
            let oc = layer.output.c;
            weights.push((at(record::WEIGHTS_OFFSET), layer.weights.len()));
            channel_blobs.push((at(record::BIAS_OFFSET), oc * format::BIAS_BYTES));
            channel_blobs.push((
                at(record::WEIGHT_SCALES_OFFSET),
                oc * format::WEIGHT_SCALE_BYTES,
            ));
            channel_blobs.push((
                at(record::MULTIPLIERS_OFFSET),
                oc * format::MULTIPLIER_BYTES,
            ));
        }
        Layout {
            len: bytes.len(),
            layers,
            table_end: record_at(layers),
            weights,
            channel_blobs,
        }
    }
}

fn record_at(layer: usize) -> usize {
    format::HEADER_LEN + layer * format::LAYER_RECORD_LEN
}

/// Header fields (offset, bytes, is f32).
const HEADER_FIELDS: &[(usize, usize, bool)] = &[
    (header::MAGIC, 4, false),
    (header::VERSION, 2, false),
    (header::LAYER_COUNT, 2, false),
    (header::FILE_LEN, 4, false),
    (header::INPUT_H, 2, false),
    (header::INPUT_W, 2, false),
    (header::INPUT_C, 2, false),
    (18, 2, false),
    (header::INPUT_SCALE, 4, true),
    (header::INPUT_ZERO_POINT, 4, false),
    (header::PIXEL_SCALE, 4, true),
    (header::PIXEL_MANTISSA, 4, false),
    (header::PIXEL_SHIFT, 4, false),
    (40, 4, false),
    (44, 4, false),
];

/// Layer record fields (offset in the record, bytes, is f32).
const RECORD_FIELDS: &[(usize, usize, bool)] = &[
    (record::OP, 1, false),
    (record::FLAGS, 1, false),
    (record::KERNEL, 1, false),
    (record::PADDING, 1, false),
    (record::IN_H, 2, false),
    (record::IN_W, 2, false),
    (record::IN_C, 2, false),
    (record::OUT_H, 2, false),
    (record::OUT_W, 2, false),
    (record::OUT_C, 2, false),
    (record::OUTPUT_SCALE, 4, true),
    (record::OUTPUT_ZERO_POINT, 4, false),
    (record::WEIGHTS_OFFSET, 4, false),
    (record::WEIGHTS_LEN, 4, false),
    (record::BIAS_OFFSET, 4, false),
    (record::WEIGHT_SCALES_OFFSET, 4, false),
    (record::MULTIPLIERS_OFFSET, 4, false),
    (44, 4, false),
    (60, 4, false),
];

/// One edit of a mutation; the list of them is what a failure reports.
#[derive(Clone, Debug)]
enum Edit {
    /// XOR one byte.
    Flip {
        at: usize,
        mask: u8,
    },
    /// Overwrite bytes at `at`.
    Set {
        at: usize,
        value: Vec<u8>,
    },
    /// Add `delta` to the little-endian integer of `size` bytes at `at` (wrapping).
    Add {
        at: usize,
        size: usize,
        delta: i64,
    },
    /// Copy `len` bytes from `from` to `to` (a record over another, a field of one layer into
    /// another's, or any chunk).
    Copy {
        from: usize,
        to: usize,
        len: usize,
    },
    Swap {
        a: usize,
        b: usize,
        len: usize,
    },
    /// Cut the file to `len` bytes; `fix_len` rewrites the header's file length to match.
    Truncate {
        len: usize,
        fix_len: bool,
    },
    /// Append `bytes` (before the CRC, which is recomputed at the new end).
    Extend {
        bytes: Vec<u8>,
        fix_len: bool,
    },
    /// Remove or insert bytes in the middle (everything after shifts).
    Remove {
        at: usize,
        len: usize,
        fix_len: bool,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
        fix_len: bool,
    },
}

impl Edit {
    fn apply(&self, b: &mut Vec<u8>) {
        let n = b.len();
        match *self {
            Edit::Flip { at, mask } => {
                if at < n {
                    b[at] ^= mask;
                }
            }
            Edit::Set { at, ref value } => {
                for (i, &v) in value.iter().enumerate() {
                    if at + i < n {
                        b[at + i] = v;
                    }
                }
            }
            Edit::Add { at, size, delta } => {
                if at + size <= n {
                    let mut word = [0u8; 8];
                    word[..size].copy_from_slice(&b[at..at + size]);
                    let v = u64::from_le_bytes(word).wrapping_add(delta as u64);
                    b[at..at + size].copy_from_slice(&v.to_le_bytes()[..size]);
                }
            }
            Edit::Copy { from, to, len } => {
                if from + len <= n && to + len <= n {
                    b.copy_within(from..from + len, to);
                }
            }
            Edit::Swap { a, b: c, len } => {
                if a + len <= n && c + len <= n && (a + len <= c || c + len <= a) {
                    for i in 0..len {
                        b.swap(a + i, c + i);
                    }
                }
            }
            Edit::Truncate { len, fix_len } => {
                b.truncate(len);
                set_file_len(b, fix_len);
            }
            Edit::Extend { ref bytes, fix_len } => {
                // Before the old checksum, which becomes data: the new end gets the new CRC.
                b.extend_from_slice(bytes);
                set_file_len(b, fix_len);
            }
            Edit::Remove { at, len, fix_len } => {
                if at + len <= n {
                    b.drain(at..at + len);
                    set_file_len(b, fix_len);
                }
            }
            Edit::Insert {
                at,
                ref bytes,
                fix_len,
            } => {
                if at <= n {
                    b.splice(at..at, bytes.iter().copied());
                    set_file_len(b, fix_len);
                }
            }
        }
    }
}

fn set_file_len(b: &mut [u8], fix: bool) {
    if fix && b.len() >= header::FILE_LEN + 4 {
        let len = b.len() as u32;
        b[header::FILE_LEN..header::FILE_LEN + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// Rewrites the checksum of whatever the edits left (files too short to hold one excepted).
fn fix_checksum(b: &mut [u8]) {
    if b.len() >= format::CHECKSUM_LEN {
        let body = b.len() - format::CHECKSUM_LEN;
        let crc = format::checksum(&b[..body]);
        b[body..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Uniform in `0..n` (0 when `n` is 0: a file already cut short).
fn pick(rng: &mut SplitMix64, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

fn chance(rng: &mut SplitMix64, percent: u64) -> bool {
    rng.next_u64() % 100 < percent
}

/// A field of the header or of some layer record: (absolute offset, bytes, is f32).
fn pick_field(rng: &mut SplitMix64, layout: &Layout) -> (usize, usize, bool) {
    if chance(rng, 25) {
        HEADER_FIELDS[pick(rng, HEADER_FIELDS.len())]
    } else {
        // Now and then a record just past the table (the data area's first bytes).
        let layer = pick(rng, layout.layers + 1);
        let (at, size, float) = RECORD_FIELDS[pick(rng, RECORD_FIELDS.len())];
        (record_at(layer) + at, size, float)
    }
}

/// A byte position, biased toward the structure.
fn pick_position(rng: &mut SplitMix64, layout: &Layout) -> usize {
    match pick(rng, 100) {
        0..40 => pick(rng, layout.table_end),
        40..60 => {
            let (at, len) = layout.channel_blobs[pick(rng, layout.channel_blobs.len())];
            at + pick(rng, len)
        }
        60..90 => {
            let (at, len) = layout.weights[pick(rng, layout.weights.len())];
            if chance(rng, 30) {
                // The blob's first or last bytes.
                let edge = pick(rng, 8.min(len));
                if chance(rng, 50) {
                    at + edge
                } else {
                    at + len - 1 - edge
                }
            } else {
                at + pick(rng, len)
            }
        }
        _ => pick(rng, layout.len),
    }
}

/// A value for an integer field of `size` bytes: a boundary, a small number, or random.
fn boundary(rng: &mut SplitMix64, size: usize, layout: &Layout) -> u64 {
    const VALUES: &[u64] = &[
        0,
        1,
        2,
        3,
        4,
        0x7f,
        0x80,
        0xff,
        0x100,
        0x7fff,
        0x8000,
        0xffff,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        16,
        28,
        64,
    ];
    let v = match pick(rng, 10) {
        0..6 => VALUES[pick(rng, VALUES.len())],
        6 => layout.len as u64 - pick(rng, 8) as u64,
        7 => layout.table_end as u64 + 16 * pick(rng, 3) as u64,
        8 => pick(rng, 300) as u64,
        _ => rng.next_u64(),
    };
    if size == 8 {
        v
    } else {
        v & ((1u64 << (8 * size)) - 1)
    }
}

fn special_float(rng: &mut SplitMix64, old: f32) -> f32 {
    let values = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::MAX,
        1.0,
        -old,
        old * 2.0,
        old * 0.5,
        f32::from_bits(old.to_bits().wrapping_add(1)),
        f32::from_bits(old.to_bits().wrapping_sub(1)),
        old * 1e20,
        old * 1e-20,
    ];
    values[pick(rng, values.len())]
}

/// One edit at a random place, of a random kind, given the current bytes.
fn random_edit(rng: &mut SplitMix64, layout: &Layout, b: &[u8]) -> Edit {
    let n = b.len();
    let fix_len = chance(rng, 75);
    match pick(rng, 100) {
        0..18 => Edit::Flip {
            at: pick_position(rng, layout),
            mask: 1 << pick(rng, 8),
        },
        18..30 => {
            let at = pick_position(rng, layout);
            let len = 1 + pick(rng, 4);
            Edit::Set {
                at,
                value: rng.bytes(len),
            }
        }
        30..33 => {
            // A boundary byte anywhere structural.
            const BYTES: [u8; 6] = [0, 1, 0xff, 0x7f, 0x80, 0xfe];
            Edit::Set {
                at: pick_position(rng, layout),
                value: vec![BYTES[pick(rng, BYTES.len())]],
            }
        }
        33..48 => {
            let (at, size, float) = pick_field(rng, layout);
            let value = if float && chance(rng, 70) && at + 4 <= n {
                let old = f32::from_le_bytes(b[at..at + 4].try_into().unwrap());
                special_float(rng, old).to_le_bytes().to_vec()
            } else {
                boundary(rng, size, layout).to_le_bytes()[..size].to_vec()
            };
            Edit::Set { at, value }
        }
        48..58 => {
            let (at, size, _) = pick_field(rng, layout);
            let deltas = [1, -1, 2, -2, 16, -16, 4, -4, 64, -64];
            Edit::Add {
                at,
                size,
                delta: deltas[pick(rng, deltas.len())],
            }
        }
        58..64 => {
            // A whole record over another (or over the header's tail / the data's head).
            let from = record_at(pick(rng, layout.layers));
            let to = record_at(pick(rng, layout.layers + 1));
            Edit::Copy {
                from,
                to,
                len: format::LAYER_RECORD_LEN,
            }
        }
        64..70 => {
            // One field from one layer into another's.
            let (at, size, _) = RECORD_FIELDS[pick(rng, RECORD_FIELDS.len())];
            let (x, y) = (pick(rng, layout.layers), pick(rng, layout.layers));
            Edit::Copy {
                from: record_at(x) + at,
                to: record_at(y) + at,
                len: size,
            }
        }
        70..73 => {
            let (x, y) = (pick(rng, layout.layers), pick(rng, layout.layers));
            Edit::Swap {
                a: record_at(x),
                b: record_at(y),
                len: format::LAYER_RECORD_LEN,
            }
        }
        73..77 => {
            // Per-channel parameters of one channel into another's (same or other layer).
            let (a, alen) = layout.channel_blobs[pick(rng, layout.channel_blobs.len())];
            let (c, clen) = layout.channel_blobs[pick(rng, layout.channel_blobs.len())];
            let len = [4, 8, 16][pick(rng, 3)].min(alen).min(clen);
            Edit::Copy {
                from: a + pick(rng, alen - len + 1) / 4 * 4,
                to: c + pick(rng, clen - len + 1) / 4 * 4,
                len,
            }
        }
        77..80 => {
            let len = 1 + pick(rng, 64);
            let from = pick_position(rng, layout);
            Edit::Copy {
                from,
                to: pick_position(rng, layout),
                len,
            }
        }
        80..86 => {
            let len = match pick(rng, 4) {
                0 => pick(rng, layout.table_end + 8),
                1 => n.saturating_sub(1 + pick(rng, 64)),
                2 => {
                    let (at, len) = layout.weights[pick(rng, layout.weights.len())];
                    at + pick(rng, len + 1)
                }
                _ => pick(rng, n),
            };
            Edit::Truncate { len, fix_len }
        }
        86..92 => {
            let len = 1 + pick(rng, 64);
            let bytes = if chance(rng, 50) {
                vec![0; len]
            } else {
                rng.bytes(len)
            };
            Edit::Extend { bytes, fix_len }
        }
        92..96 => {
            let len = [1, 4, 16, 64][pick(rng, 4)];
            Edit::Remove {
                at: pick_position(rng, layout),
                len,
                fix_len,
            }
        }
        _ => {
            let len = [1, 4, 16, 64][pick(rng, 4)];
            Edit::Insert {
                at: pick_position(rng, layout),
                bytes: vec![0; len],
                fix_len,
            }
        }
    }
}

/// An edit of the weights only: a flip, a random byte or a boundary value (-128 and ±127
/// included, so the weight-range and accumulator checks fire now and then).
fn weight_edit(rng: &mut SplitMix64, layout: &Layout) -> Edit {
    let (at, len) = layout.weights[pick(rng, layout.weights.len())];
    let at = at + pick(rng, len);
    match pick(rng, 3) {
        0 => Edit::Flip {
            at,
            mask: 1 << pick(rng, 8),
        },
        1 => Edit::Set {
            at,
            value: rng.bytes(1),
        },
        _ => {
            const BYTES: [u8; 5] = [0, 0x7f, 0x81, 0x80, 1];
            Edit::Set {
                at,
                value: vec![BYTES[pick(rng, BYTES.len())]],
            }
        }
    }
}

/// The RNG of case `index`: every case is reproducible on its own.
fn case_rng(seed: u64, index: usize) -> SplitMix64 {
    let mut rng = SplitMix64(seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    rng.next_u64();
    rng
}

/// The mutated file of case `index` (CRC recomputed) and the edits that made it.
fn mutate(original: &[u8], layout: &Layout, seed: u64, index: usize) -> (Vec<u8>, Vec<Edit>) {
    let mut rng = case_rng(seed, index);
    // Several edits: 2 to 8, most often 2 to 4.
    let count = 2
        + pick(&mut rng, 3)
        + if chance(&mut rng, 25) {
            pick(&mut rng, 5)
        } else {
            0
        };
    // A quarter of the cases damage only weights (free data, so most of them parse and run);
    // the rest hit anywhere, biased toward the structure.
    let weights_only = chance(&mut rng, 25);
    let mut bytes = original.to_vec();
    let mut edits = Vec::with_capacity(count);
    for _ in 0..count {
        let edit = if weights_only {
            weight_edit(&mut rng, layout)
        } else {
            random_edit(&mut rng, layout, &bytes)
        };
        edit.apply(&mut bytes);
        edits.push(edit);
    }
    fix_checksum(&mut bytes);
    (bytes, edits)
}

/// What one case came to.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Rejected(&'static str),
    /// Parsed; inferred with both plans and refused a short arena.
    Inferred,
    /// Parsed, too large to infer here (see [`MAX_MACS`]).
    TooLarge,
}

fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Truncated { .. } => "Truncated",
        Error::BadMagic { .. } => "BadMagic",
        Error::UnsupportedVersion { .. } => "UnsupportedVersion",
        Error::LengthMismatch { .. } => "LengthMismatch",
        Error::ChecksumMismatch { .. } => "ChecksumMismatch",
        Error::LayerCount { .. } => "LayerCount",
        Error::UnsupportedOp { .. } => "UnsupportedOp",
        Error::InvalidField { .. } => "InvalidField",
        Error::ShapeMismatch { .. } => "ShapeMismatch",
        Error::BadQuantization { .. } => "BadQuantization",
        Error::BadBlob { .. } => "BadBlob",
        Error::WeightOutOfRange { .. } => "WeightOutOfRange",
        Error::AccumulatorOverflow { .. } => "AccumulatorOverflow",
        _ => "other",
    }
}

/// The check of one mutated file: parse; when it parses, infer on random pixels in an arena of
/// the smallest plan, of the speed plan (same logits), and refuse one a byte too short.
/// Panics on any property violated (and on any panic inside the runtime).
fn check(bytes: &[u8], rng: &mut SplitMix64, reference: bool) -> Outcome {
    let model = match Model::parse(bytes) {
        Ok(model) => model,
        Err(e) => return Outcome::Rejected(error_kind(&e)),
    };
    let macs: usize = model.layers().map(|l| l.macs()).sum();
    let pixels_len = model.input_shape().len();
    let (memory, speed) = (model.arena_len(), model.arena_len_for(Mode::Speed));
    assert!(memory <= speed, "memory plan {memory} > speed plan {speed}");
    if macs > MAX_MACS || speed > MAX_BYTES || pixels_len > MAX_BYTES {
        return Outcome::TooLarge;
    }
    let pixels = rng.bytes(pixels_len);
    let mut arena = vec![0i8; memory];
    let prediction = model
        .infer(&pixels, &mut arena)
        .expect("a parsed model infers");
    assert_eq!(prediction.logits.len(), model.classes());
    assert!(prediction.class < model.classes());
    let logits = prediction.logits.to_vec();
    let mut fast = vec![0i8; speed];
    let fast = model.infer(&pixels, &mut fast).unwrap();
    assert_eq!(fast.logits, &logits[..], "the speed plan's logits differ");
    let mut short = vec![0i8; memory - 1];
    assert_eq!(
        model.infer(&pixels, &mut short).unwrap_err(),
        Error::ArenaTooSmall {
            needed: memory,
            actual: memory - 1
        }
    );
    if reference {
        let mut x = vec![0i8; pixels_len];
        tinyconv::quantize_pixels(&model, &pixels, &mut x);
        assert_eq!(
            common::reference_logits(&model, x),
            logits,
            "the reference pipeline's logits differ"
        );
    }
    Outcome::Inferred
}

/// A case that panicked: enough to reproduce it.
#[derive(Debug)]
struct Failure {
    index: usize,
    edits: Vec<Edit>,
    message: String,
}

#[derive(Default, Debug)]
struct Report {
    cases: usize,
    rejected: BTreeMap<&'static str, usize>,
    inferred: usize,
    too_large: usize,
    referenced: usize,
    /// Parsed although the header, the layer table or the length differ from the original's.
    parsed_restructured: usize,
    failures: Vec<Failure>,
}

impl Report {
    fn parsed(&self) -> usize {
        self.inferred + self.too_large
    }

    fn rejected_total(&self) -> usize {
        self.rejected.values().sum()
    }

    fn merge(&mut self, other: Report) {
        self.cases += other.cases;
        for (k, v) in other.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
        self.inferred += other.inferred;
        self.too_large += other.too_large;
        self.referenced += other.referenced;
        self.parsed_restructured += other.parsed_restructured;
        self.failures.extend(other.failures);
    }

    /// Panics with every failure, each with what reproduces it.
    fn assert_no_failures(&self, seed: u64) {
        if self.failures.is_empty() {
            return;
        }
        let mut text = format!(
            "{} of {} cases panicked (seed {seed:#x}); replay one with TINYCONV_FUZZ_CASE=<index>:\n",
            self.failures.len(),
            self.cases
        );
        for f in self.failures.iter().take(10) {
            text += &format!(
                "  case {}: {}\n    edits: {:?}\n",
                f.index, f.message, f.edits
            );
        }
        panic!("{text}");
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

/// Runs cases `0..cases` of `seed` on `threads` threads, each under `catch_unwind`, through
/// `check` (the real one, or a faulty one for the negative control).
fn campaign<F>(original: &[u8], seed: u64, cases: usize, threads: usize, check: F) -> Report
where
    F: Fn(&[u8], &mut SplitMix64, bool) -> Outcome + Sync,
{
    let layout = Layout::of(original);
    let (layout, check) = (&layout, &check);
    let mut report = Report::default();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut report = Report::default();
                    for index in (t..cases).step_by(threads) {
                        let (bytes, edits) = mutate(original, layout, seed, index);
                        // The pixels' RNG continues from a per-case stream of its own.
                        let mut rng = case_rng(seed ^ 0x5eed, index);
                        let reference = index % REFERENCE_EVERY == 0;
                        report.cases += 1;
                        let outcome =
                            catch_unwind(AssertUnwindSafe(|| check(&bytes, &mut rng, reference)));
                        let restructured = bytes.len() != original.len()
                            || bytes[..layout.table_end] != original[..layout.table_end];
                        if restructured
                            && matches!(outcome, Ok(Outcome::Inferred | Outcome::TooLarge))
                        {
                            report.parsed_restructured += 1;
                        }
                        match outcome {
                            Ok(Outcome::Rejected(kind)) => {
                                *report.rejected.entry(kind).or_default() += 1
                            }
                            Ok(Outcome::Inferred) => {
                                report.inferred += 1;
                                report.referenced += reference as usize;
                            }
                            Ok(Outcome::TooLarge) => report.too_large += 1,
                            Err(payload) => report.failures.push(Failure {
                                index,
                                edits,
                                message: panic_message(&*payload),
                            }),
                        }
                    }
                    report
                })
            })
            .collect();
        for w in workers {
            report.merge(w.join().expect("workers catch their panics"));
        }
    });
    report.failures.sort_by_key(|f| f.index);
    report
}

/// Written straight to stderr: libtest captures `print!`/`eprint!`, not this, so the counts
/// show in CI's log of a passing run.
fn say(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
    })
}

#[test]
fn structural_mutations_of_the_real_model_never_panic() {
    let original = real_model();
    if let Some(index) = env_usize("TINYCONV_FUZZ_CASE") {
        // Replays one case, without catch_unwind: the panic and its backtrace are the output.
        let layout = Layout::of(&original);
        let (bytes, edits) = mutate(&original, &layout, SEED, index);
        say(&format!(
            "case {index}: {} bytes, edits {edits:?}\n",
            bytes.len()
        ));
        let outcome = check(&bytes, &mut case_rng(SEED ^ 0x5eed, index), true);
        say(&format!("case {index}: {outcome:?}\n"));
        return;
    }
    let cases = env_usize("TINYCONV_FUZZ_CASES").unwrap_or(CASES);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let start = Instant::now();
    let report = campaign(&original, SEED, cases, threads, check);
    let elapsed = start.elapsed();
    say(&format!(
        "fuzz_structural: {} cases of {} ({} bytes), seed {SEED:#x}, {threads} threads, {:.1} s\n  \
         parsed {} ({:.1} %): inferred {} (both plans, short arena refused; {} also against \
         the reference pipeline), too large to infer {}; {} of them with a changed header, layer \
         table or length\n  rejected {} ({:.1} %): {:?}\n  \
         panicked {}\n",
        report.cases,
        "models/mnist-cnn.tcm",
        original.len(),
        elapsed.as_secs_f64(),
        report.parsed(),
        100.0 * report.parsed() as f64 / report.cases as f64,
        report.inferred,
        report.referenced,
        report.too_large,
        report.parsed_restructured,
        report.rejected_total(),
        100.0 * report.rejected_total() as f64 / report.cases as f64,
        report.rejected,
        report.failures.len(),
    ));
    report.assert_no_failures(SEED);
    assert_eq!(report.cases, cases);
    if cases < CASES {
        return; // a shorter run by request: no claims about shares
    }
    // The mutations are neither trivially rejected nor trivially accepted: a real share of
    // each, the CRC fix always works (no checksum error), and they reach every structural
    // check behind the checksum.
    let share = |n: usize| n as f64 / report.cases as f64;
    assert!(
        share(report.parsed()) >= 0.10,
        "only {} parse",
        report.parsed()
    );
    assert!(
        share(report.inferred) >= 0.08,
        "only {} infer",
        report.inferred
    );
    assert!(
        share(report.rejected_total()) >= 0.30,
        "only {} rejected",
        report.rejected_total()
    );
    assert!(
        share(report.parsed_restructured) >= 0.01,
        "only {} structural changes parse",
        report.parsed_restructured
    );
    assert!(
        report.referenced >= 15,
        "{} reference checks",
        report.referenced
    );
    assert_eq!(report.rejected.get("ChecksumMismatch"), None);
    for kind in [
        "Truncated",
        "BadMagic",
        "UnsupportedVersion",
        "LengthMismatch",
        "LayerCount",
        "UnsupportedOp",
        "InvalidField",
        "ShapeMismatch",
        "BadQuantization",
        "BadBlob",
        "WeightOutOfRange",
        "AccumulatorOverflow",
    ] {
        assert!(
            report.rejected.get(kind).copied().unwrap_or(0) >= 10,
            "the mutations rarely reach the {kind} check: {:?}",
            report.rejected
        );
    }
}

/// Negative control: a check that panics on some cases (those whose edits change the file's
/// length) is caught case by case, every such case and only those is reported with its index
/// and edits, the report's assertion fails, and the reported index replays to the same file.
#[test]
fn the_harness_catches_and_reports_a_panic() {
    let original = real_model();
    let cases = 400;
    let faulty = |bytes: &[u8], rng: &mut SplitMix64, _: bool| {
        if bytes.len() != 845_508 {
            panic!("deliberate panic on a {}-byte file", bytes.len());
        }
        check(bytes, rng, false)
    };
    assert_eq!(original.len(), 845_508);
    let report = campaign(&original, SEED, cases, 2, faulty);
    let layout = Layout::of(&original);
    let expected: Vec<usize> = (0..cases)
        .filter(|&i| mutate(&original, &layout, SEED, i).0.len() != original.len())
        .collect();
    assert!(!expected.is_empty() && expected.len() < cases / 2);
    let reported: Vec<usize> = report.failures.iter().map(|f| f.index).collect();
    assert_eq!(reported, expected);
    assert_eq!(report.cases, cases, "the harness ran on past the panics");
    for f in &report.failures {
        assert!(f.message.starts_with("deliberate panic"), "{}", f.message);
        assert!(!f.edits.is_empty());
        let mut replay = original.clone();
        for e in &f.edits {
            e.apply(&mut replay);
        }
        fix_checksum(&mut replay);
        assert_eq!(replay, mutate(&original, &layout, SEED, f.index).0);
    }
    let verdict = catch_unwind(AssertUnwindSafe(|| report.assert_no_failures(SEED)));
    let message = panic_message(&*verdict.expect_err("a report with failures must fail"));
    assert!(
        message.contains(&format!("case {}:", expected[0])) && message.contains("edits"),
        "{message}"
    );
}
