//! One split of a dataset: images of one shape and their labels.

use crate::convert::convert_pixels;

/// One split (train or test): `len()` images of one shape, HWC row-major `u8`, and a label
/// per image. Invariant: `images.len() == len() * height * width * channels` and every label
/// is below `num_classes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// All images, one after another, each `height x width x channels`, HWC row-major.
    pub images: Vec<u8>,
    /// One label per image, below `num_classes`.
    pub labels: Vec<u16>,
    /// Rows of every image.
    pub height: usize,
    /// Columns of every image.
    pub width: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// Classes of the dataset (some may have no image in this split).
    pub num_classes: usize,
}

impl Split {
    /// An empty split of the given shape.
    pub fn empty(shape: (usize, usize, usize), num_classes: usize) -> Split {
        let (height, width, channels) = shape;
        Split {
            images: Vec::new(),
            labels: Vec::new(),
            height,
            width,
            channels,
            num_classes,
        }
    }

    /// Bytes in one image.
    pub fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i` (HWC).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Append one image (`image_len()` bytes) with its label.
    pub fn push(&mut self, image: &[u8], label: u16) {
        assert_eq!(image.len(), self.image_len(), "image size");
        assert!(
            (label as usize) < self.num_classes,
            "label {label} >= {}",
            self.num_classes
        );
        self.images.extend_from_slice(image);
        self.labels.push(label);
    }

    /// The first `n` images (all of them if `n >= len()`).
    pub fn truncated(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            images: self.images[..n * self.image_len()].to_vec(),
            labels: self.labels[..n].to_vec(),
            ..self.shape_only()
        }
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Split {
        let mut out = self.shape_only();
        out.images.reserve(indices.len() * self.image_len());
        for &i in indices {
            out.push(self.image(i), self.labels[i]);
        }
        out
    }

    /// How many images of each class the split holds (`num_classes` entries).
    pub fn histogram(&self) -> Vec<usize> {
        let mut h = vec![0; self.num_classes];
        for &l in &self.labels {
            h[l as usize] += 1;
        }
        h
    }

    /// What identifies the split's content: its size and a 64-bit FNV-1a hash of its pixels
    /// and labels (one byte per label when there are at most 256 classes, else two, little
    /// endian). For MNIST this is the trainer's fingerprint of today, so checkpoints that
    /// record it still resume.
    pub fn fingerprint(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut update = |bytes: &[u8]| {
            for &b in bytes {
                hash = (hash ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        update(&self.images);
        if self.num_classes <= 256 {
            update(&self.labels.iter().map(|&l| l as u8).collect::<Vec<_>>());
        } else {
            update(
                &self
                    .labels
                    .iter()
                    .flat_map(|l| l.to_le_bytes())
                    .collect::<Vec<_>>(),
            );
        }
        format!("{} images, fnv1a64 {hash:016x}", self.len())
    }

    /// Every image resized and converted to `shape` (see [`crate::convert_image`]), on all
    /// cores.
    pub fn converted(&self, shape: (usize, usize, usize)) -> Split {
        let from = (self.height, self.width, self.channels);
        if from == shape {
            return self.clone();
        }
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_worker = self.len().div_ceil(workers).max(1);
        let parts: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..self.len())
                .step_by(per_worker)
                .map(|start| {
                    s.spawn(move || {
                        let end = (start + per_worker).min(self.len());
                        (start..end)
                            .flat_map(|i| convert_pixels(self.image(i), from, shape))
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("conversion thread panicked"))
                .collect()
        });
        Split {
            images: parts.concat(),
            labels: self.labels.clone(),
            ..Split::empty(shape, self.num_classes)
        }
    }

    /// A split of the same shape and classes with no images.
    fn shape_only(&self) -> Split {
        Split::empty((self.height, self.width, self.channels), self.num_classes)
    }
}
