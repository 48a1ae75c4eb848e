//! The `.tcm` model file layout (version 1). `docs/model-format.md` is the prose version of
//! this module; the two must agree.
//!
//! All integers and floats are little-endian. A file is:
//! header (48 bytes) | layer table (64 bytes a layer) | data blobs (each 16-byte aligned) | CRC-32.

/// The first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"TCMF";
/// The only version this runtime reads and writes.
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 48;
pub const LAYER_RECORD_LEN: usize = 64;
pub const MAX_LAYERS: usize = 64;
/// Every data blob starts at a multiple of this, counted from the start of the file.
pub const DATA_ALIGN: usize = 16;
pub const CHECKSUM_LEN: usize = 4;

/// CRC-32/ISO-HDLC (the zlib/PNG CRC) of every byte before the checksum. On hosts crc32fast,
/// with PCLMULQDQ on x86-64 (the exhaustive corruption tests parse the file a million times);
/// on a microcontroller (`target_os = "none"`), where it runs once at boot, the `crc` crate
/// with one 1 KB table (crc32fast's are 16 KB of flash). `runtime/tests/checksum.rs` holds
/// the two equal; every model the firmware parses in QEMU checks the second.
#[cfg(not(target_os = "none"))]
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// See the host's `checksum`.
#[cfg(target_os = "none")]
pub fn checksum(bytes: &[u8]) -> u32 {
    const CRC: crc::Crc<u32, crc::Table<1>> =
        crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);
    CRC.checksum(bytes)
}

/// Byte offsets inside the header.
pub mod header {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const LAYER_COUNT: usize = 6;
    pub const FILE_LEN: usize = 8;
    pub const INPUT_H: usize = 12;
    pub const INPUT_W: usize = 14;
    pub const INPUT_C: usize = 16;
    pub const INPUT_SCALE: usize = 20;
    pub const INPUT_ZERO_POINT: usize = 24;
    pub const PIXEL_SCALE: usize = 28;
    pub const PIXEL_MANTISSA: usize = 32;
    pub const PIXEL_SHIFT: usize = 36;
    /// Bytes 18..20 and 40..48 are reserved and must be zero.
    pub const RESERVED: [(usize, usize); 2] = [(18, 20), (40, 48)];
}

/// Byte offsets inside one layer record.
pub mod record {
    pub const OP: usize = 0;
    pub const FLAGS: usize = 1;
    pub const KERNEL: usize = 2;
    pub const PADDING: usize = 3;
    pub const IN_H: usize = 4;
    pub const IN_W: usize = 6;
    pub const IN_C: usize = 8;
    pub const OUT_H: usize = 10;
    pub const OUT_W: usize = 12;
    pub const OUT_C: usize = 14;
    pub const OUTPUT_SCALE: usize = 16;
    pub const OUTPUT_ZERO_POINT: usize = 20;
    pub const WEIGHTS_OFFSET: usize = 24;
    pub const WEIGHTS_LEN: usize = 28;
    pub const BIAS_OFFSET: usize = 32;
    pub const WEIGHT_SCALES_OFFSET: usize = 36;
    pub const MULTIPLIERS_OFFSET: usize = 40;
    /// Bytes 44..64 are reserved and must be zero.
    pub const RESERVED: (usize, usize) = (44, 64);
}

/// Layer op codes.
pub mod op {
    pub const CONV2D: u8 = 1;
    pub const MAXPOOL2D: u8 = 2;
    pub const FLATTEN: u8 = 3;
    pub const DENSE: u8 = 4;
}

/// Layer flag bits.
pub mod flags {
    /// ReLU fused as the output clamp at the zero point.
    pub const RELU: u8 = 1;
    /// A 2x2 stride-2 max pool fused after the convolution (and its ReLU).
    pub const POOL: u8 = 2;
    pub const ALL: u8 = RELU | POOL;
}

/// Padding codes.
pub mod padding {
    pub const VALID: u8 = 0;
    pub const SAME: u8 = 1;
}

/// Bytes per output channel of the per-channel arrays.
pub const BIAS_BYTES: usize = 4;
pub const WEIGHT_SCALE_BYTES: usize = 4;
/// `u32` mantissa then `i32` shift.
pub const MULTIPLIER_BYTES: usize = 8;

pub(crate) const fn read_u8(bytes: &[u8], at: usize) -> u8 {
    bytes[at]
}

pub(crate) const fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) const fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads a little-endian u32 at `at` (panics when out of bounds; for tools and tests).
pub const fn read_u32_le(bytes: &[u8], at: usize) -> u32 {
    read_u32(bytes, at)
}

pub(crate) const fn read_i32(bytes: &[u8], at: usize) -> i32 {
    read_u32(bytes, at) as i32
}

pub(crate) const fn read_f32(bytes: &[u8], at: usize) -> f32 {
    f32::from_bits(read_u32(bytes, at))
}

/// The activation arena a model needs, computed from its header and layer table alone, in a
/// `const` context: `static mut ARENA: [i8; required_arena_len(MODEL)]`. This is the smallest
/// arena ([`crate::plan::Mode::Memory`]); [`required_arena_len_for`] gives the other plans.
///
/// It panics (a compile error in a `const`) when the bytes are too short to hold the table;
/// [`crate::Model::parse`] still validates the whole file at run time.
pub const fn required_arena_len(model: &[u8]) -> usize {
    if crate::graph::is_v2(model) {
        return crate::graph::plan::plan(model).len;
    }
    crate::plan::plan(model, crate::plan::Mode::Memory).len
}

/// The arena of the plan for `mode` (see [`crate::plan`]).
pub const fn required_arena_len_for(model: &[u8], mode: crate::plan::Mode) -> usize {
    crate::plan::plan(model, mode).len
}

/// Scratch bytes the blocked kernels need for layer `index` (`kernels::blocked::scratch_len`;
/// 0 for layers without weights). Counted in [`required_arena_len`] on every target, so that
/// the host and the MCU agree on the arena.
pub const fn layer_scratch_len(model: &[u8], index: usize) -> usize {
    layer_scratch(model, index, false)
}

/// [`layer_scratch_len`] of the kernels' lean modes (`kernels::blocked::lean_scratch_len`).
pub const fn layer_lean_scratch_len(model: &[u8], index: usize) -> usize {
    layer_scratch(model, index, true)
}

const fn layer_scratch(model: &[u8], index: usize, lean: bool) -> usize {
    let r = HEADER_LEN + index * LAYER_RECORD_LEN;
    let code = read_u8(model, r + record::OP);
    let kernel = read_u8(model, r + record::KERNEL) as usize;
    let (h, w, c) = (
        read_u16(model, r + record::IN_H) as usize,
        read_u16(model, r + record::IN_W) as usize,
        read_u16(model, r + record::IN_C) as usize,
    );
    let out_c = read_u16(model, r + record::OUT_C) as usize;
    let pad = if read_u8(model, r + record::PADDING) == padding::SAME {
        kernel / 2
    } else {
        0
    };
    let (kernel, h, w, c, pad) = match code {
        op::CONV2D => (kernel, h, w, c, pad),
        op::DENSE => (1, 1, 1, h * w * c, 0),
        _ => return 0,
    };
    if lean {
        crate::kernels::blocked::lean_scratch_len(kernel, h, w, c, pad, out_c)
    } else {
        crate::kernels::blocked::scratch_len(kernel, h, w, c, pad, out_c)
    }
}

/// Rounds `offset` up to the next multiple of [`DATA_ALIGN`].
pub const fn align_data(offset: usize) -> usize {
    offset.div_ceil(DATA_ALIGN) * DATA_ALIGN
}
