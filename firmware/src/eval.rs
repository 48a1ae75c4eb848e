//! Full evaluation: stream the MNIST test set from the host through semihosting file reads.
//!
//! build.rs writes raw (decompressed) copies of `t10k-images-idx3-ubyte` and
//! `t10k-labels-idx1-ubyte` into its OUT_DIR and passes their absolute paths; QEMU's
//! `-semihosting-config enable=on,target=native` opens host files for the guest. Images are read
//! `CHUNK` at a time into a static buffer.
//!
//! The digest is 32-bit FNV-1a (offset basis 0x811c9dc5, prime 0x01000193) over every image's
//! int8 logits as bytes, images in file order, logits in class order.

use tinyconv::Model;

use crate::clock::Calibration;
use crate::console::code;
use crate::firmware::{PIXELS, Stats, report};

const IMAGES_PATH: &str = concat!(env!("TINYCONV_EVAL_IMAGES"), "\0");
const LABELS_PATH: &str = concat!(env!("TINYCONV_EVAL_LABELS"), "\0");
/// Images to evaluate at most (`$TINYCONV_EVAL_LIMIT` at build time; default all).
const LIMIT: &str = env!("TINYCONV_EVAL_LIMIT");
/// Images per semihosting read.
const CHUNK: usize = 16;

/// FNV-1a, 32 bits.
pub struct Fnv1a(pub u32);

impl Fnv1a {
    pub const fn new() -> Self {
        Fnv1a(0x811c_9dc5)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u32).wrapping_mul(0x0100_0193);
        }
    }
}

/// A host file opened read-only through semihosting.
struct HostFile(usize);

impl HostFile {
    fn open(path_nul: &str) -> Option<HostFile> {
        let len = path_nul.len() - 1;
        // SAFETY: SYS_OPEN with a NUL-terminated path, mode 1 ("rb"), and its length.
        let fd = unsafe { cortex_m_semihosting::syscall!(OPEN, path_nul.as_ptr(), 1, len) };
        (fd as isize != -1).then_some(HostFile(fd))
    }

    /// Fills `buf` completely, or returns `None`.
    fn read_exact(&mut self, buf: &mut [u8]) -> Option<()> {
        let mut done = 0;
        while done < buf.len() {
            let want = buf.len() - done;
            // SAFETY: SYS_READ into the unfilled tail of a live buffer; returns bytes NOT read.
            let left = unsafe {
                cortex_m_semihosting::syscall!(READ, self.0, buf[done..].as_mut_ptr(), want)
            };
            if left >= want {
                return None; // EOF (left == want) or error
            }
            done += want - left;
        }
        Some(())
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        // SAFETY: SYS_CLOSE of a handle we own.
        unsafe { cortex_m_semihosting::syscall!(CLOSE, self.0) };
    }
}

fn be32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

fn open(path_nul: &str) -> Result<HostFile, i32> {
    HostFile::open(path_nul).ok_or_else(|| {
        println!(
            "error: cannot open {} on the host through semihosting",
            &path_nul[..path_nul.len() - 1]
        );
        code::IO
    })
}

fn read(file: &mut HostFile, buf: &mut [u8], what: &str) -> Result<(), i32> {
    file.read_exact(buf).ok_or_else(|| {
        println!("error: short read from the {what} file");
        code::IO
    })
}

/// Returns the exit code: 0 when every image was read and classified.
pub fn run(model: &Model<'_>, arena: &mut [i8], cal: &Calibration) -> i32 {
    match evaluate(model, arena, cal) {
        Ok(()) => code::OK,
        Err(code) => code,
    }
}

fn evaluate(model: &Model<'_>, arena: &mut [i8], cal: &Calibration) -> Result<(), i32> {
    // Static, not on the stack: 12.5 KB of pixels.
    static mut PIXEL_BUF: [u8; CHUNK * PIXELS] = [0; CHUNK * PIXELS];
    // SAFETY: `evaluate` runs once, from `main`; this is the only reference.
    let pixel_buf = unsafe { &mut *core::ptr::addr_of_mut!(PIXEL_BUF) };
    let mut label_buf = [0u8; CHUNK];

    let mut images = open(IMAGES_PATH)?;
    let mut labels = open(LABELS_PATH)?;
    let mut header = [0u8; 16];
    read(&mut images, &mut header, "images")?;
    if be32(&header) != 2051 || be32(&header[8..]) != 28 || be32(&header[12..]) != 28 {
        println!("error: the images file is not a 28x28 MNIST IDX file (magic 2051)");
        return Err(code::IO);
    }
    let image_count = be32(&header[4..]);
    read(&mut labels, &mut header[..8], "labels")?;
    if be32(&header) != 2049 {
        println!("error: the labels file is not an MNIST IDX label file (magic 2049)");
        return Err(code::IO);
    }
    let count = image_count
        .min(be32(&header[4..]))
        .min(LIMIT.parse().unwrap_or(usize::MAX));
    println!(
        "full-eval: {count} of {image_count} MNIST test images streamed from {}",
        &IMAGES_PATH[..IMAGES_PATH.len() - 1]
    );

    let mut stats = Stats::new();
    let mut digest = Fnv1a::new();
    let mut done = 0;
    while done < count {
        let n = CHUNK.min(count - done);
        read(&mut images, &mut pixel_buf[..n * PIXELS], "images")?;
        read(&mut labels, &mut label_buf[..n], "labels")?;
        for (pixels, &label) in pixel_buf[..n * PIXELS]
            .chunks_exact(PIXELS)
            .zip(&label_buf[..n])
        {
            let prediction = stats.infer(model, pixels, arena);
            digest.update(bytemuck_bytes(prediction.logits));
            if prediction.class == label as usize {
                stats.correct += 1;
            }
        }
        done += n;
        if done % 500 < n || done == count {
            println!(
                "full-eval: {done}/{count} images, {} correct, {} instructions/inference so far",
                stats.correct,
                cal.instructions(stats.infer_ticks) / stats.images
            );
        }
    }
    println!(
        "accuracy {}/{} = {}%",
        stats.correct,
        stats.images,
        crate::firmware::Ratio(stats.correct * 100, stats.images)
    );
    println!(
        "digest fnv1a32={:#010x} over {} images x {} logits",
        digest.0,
        stats.images,
        model.classes()
    );
    report(model, &stats, cal);
    Ok(())
}

fn bytemuck_bytes(logits: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size and alignment and every bit pattern is valid.
    unsafe { core::slice::from_raw_parts(logits.as_ptr().cast(), logits.len()) }
}
