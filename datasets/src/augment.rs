//! The augmentations of CIFAR-style training: a random crop of the zero-padded image and a
//! random horizontal flip. Off by default; every draw comes from the caller's seeded
//! [`SplitMix64`], so a run is reproducible.

use crate::SplitMix64;

/// Which augmentations to apply; the default applies none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Augment {
    /// Pad the image with this many zero pixels on every side, then crop a random window of
    /// the original size (4 for CIFAR-10). 0 disables the crop.
    pub crop_padding: usize,
    /// Mirror the image left-right with probability 1/2.
    pub hflip: bool,
}

impl Augment {
    /// Whether this leaves every image unchanged.
    pub fn is_off(&self) -> bool {
        self.crop_padding == 0 && !self.hflip
    }

    /// Write an augmented copy of `src` (`height x width x channels`, HWC) to `dst` (same
    /// size). Draws, in order: the crop's row offset and column offset (each uniform in
    /// `0..=2 * crop_padding`, only if `crop_padding > 0`), then the flip (only if `hflip`).
    ///
    /// # Panics
    /// If `src` or `dst` is not `height * width * channels` bytes long.
    pub fn augment_into(
        &self,
        src: &[u8],
        height: usize,
        width: usize,
        channels: usize,
        rng: &mut SplitMix64,
        dst: &mut [u8],
    ) {
        let len = height * width * channels;
        assert_eq!(src.len(), len, "source image size");
        assert_eq!(dst.len(), len, "destination image size");
        let pad = self.crop_padding;
        // Offsets of the window in the padded image; `pad` means "no shift".
        let (dy, dx) = if pad > 0 {
            (rng.below(2 * pad + 1), rng.below(2 * pad + 1))
        } else {
            (0, 0)
        };
        let flip = self.hflip && rng.coin();
        for y in 0..height {
            // Row y of the window is row y + dy - pad of the source; outside it, padding.
            let sy = (y + dy).checked_sub(pad).filter(|&sy| sy < height);
            for x in 0..width {
                let out_x = if flip { width - 1 - x } else { x };
                let to = (y * width + out_x) * channels;
                let sx = (x + dx).checked_sub(pad).filter(|&sx| sx < width);
                match (sy, sx) {
                    (Some(sy), Some(sx)) => {
                        let from = (sy * width + sx) * channels;
                        dst[to..to + channels].copy_from_slice(&src[from..from + channels]);
                    }
                    _ => dst[to..to + channels].fill(0),
                }
            }
        }
    }
}
