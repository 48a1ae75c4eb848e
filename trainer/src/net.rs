//! What the training loop needs of a network and of its data, so that one loop (with its
//! checkpoints, resume and metrics) trains the seed [`Cnn`] on MNIST and a network built from
//! a model spec on any dataset.

use burn::module::Module;
use burn::prelude::*;

use crate::data::Split;
use crate::model::{Cnn, input_tensor, label_tensor};

/// A classifier the training loop can train: a burn module from a `[n, c, h, w]` batch of
/// images to `[n, classes]` logits.
pub trait Net: Module {
    fn forward(&self, x: Tensor<4>) -> Tensor<2>;
}

impl Net for Cnn {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        Cnn::forward(self, x)
    }
}

/// Labelled images the loop reads in batches.
pub trait Samples: Clone {
    /// Number of images.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of classes (labels are below it).
    fn classes(&self) -> usize;
    /// The label of image `i`.
    fn label(&self, i: usize) -> usize;
    /// Images `indices` as the network's input tensor and their labels as the loss takes
    /// them.
    fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>);
    /// A training batch of `epoch`: [`Samples::batch`] unless the samples augment their
    /// images, which then draw from (seed, epoch, image index) only, so a resumed run sees the
    /// same images as an uninterrupted one.
    fn train_batch(
        &self,
        indices: &[usize],
        _epoch: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        self.batch(indices, device)
    }
    /// The first `n` images (all of them if `n >= len()`).
    fn truncated(&self, n: usize) -> Self;
    /// What identifies the content (size and a hash): a checkpoint records it, so a resume on
    /// other data is refused.
    fn fingerprint(&self) -> String;
}

impl Samples for Split {
    fn len(&self) -> usize {
        Split::len(self)
    }
    fn classes(&self) -> usize {
        crate::data::NUM_CLASSES
    }
    fn label(&self, i: usize) -> usize {
        self.labels[i] as usize
    }
    fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let mut pixels = Vec::with_capacity(indices.len() * crate::data::IMAGE_PIXELS);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        (input_tensor(&pixels, device), label_tensor(&labels, device))
    }
    fn truncated(&self, n: usize) -> Self {
        Split::truncated(self, n)
    }
    fn fingerprint(&self) -> String {
        Split::fingerprint(self)
    }
}

/// A split of any dataset ([`tinyconv_datasets`]), with the training augmentation to apply.
#[derive(Clone, Debug)]
pub struct DataSplit {
    pub split: tinyconv_datasets::Split,
    pub augment: tinyconv_datasets::Augment,
    /// Seeds the augmentation's draws (with the epoch and the image index).
    pub seed: u64,
}

impl DataSplit {
    /// `split` without augmentation.
    pub fn plain(split: tinyconv_datasets::Split) -> Self {
        Self {
            split,
            augment: tinyconv_datasets::Augment::default(),
            seed: 0,
        }
    }

    fn tensors(
        &self,
        pixels: &[u8],
        labels: Vec<i32>,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        let s = &self.split;
        let n = labels.len();
        (
            hwc_batch_tensor(pixels, [n, s.height, s.width, s.channels], device),
            Tensor::from_data(TensorData::new(labels, [n]), device),
        )
    }
}

/// `n` HWC u8 images as the network's NCHW f32 input, pixel / 255.
pub fn hwc_batch_tensor(pixels: &[u8], [n, h, w, c]: [usize; 4], device: &Device) -> Tensor<4> {
    assert_eq!(pixels.len(), n * h * w * c, "pixel buffer size");
    let mut floats = vec![0f32; pixels.len()];
    for i in 0..n {
        let img = &pixels[i * h * w * c..][..h * w * c];
        let out = &mut floats[i * h * w * c..][..h * w * c];
        for (p, px) in img.chunks_exact(c).enumerate() {
            for (ch, &v) in px.iter().enumerate() {
                out[ch * h * w + p] = v as f32 / 255.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(floats, [n, c, h, w]), device)
}

impl Samples for DataSplit {
    fn len(&self) -> usize {
        self.split.len()
    }
    fn classes(&self) -> usize {
        self.split.num_classes
    }
    fn label(&self, i: usize) -> usize {
        self.split.labels[i] as usize
    }
    fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let mut pixels = Vec::with_capacity(indices.len() * self.split.image_len());
        for &i in indices {
            pixels.extend_from_slice(self.split.image(i));
        }
        let labels = indices
            .iter()
            .map(|&i| self.split.labels[i] as i32)
            .collect();
        self.tensors(&pixels, labels, device)
    }
    fn train_batch(
        &self,
        indices: &[usize],
        epoch: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<1, Int>) {
        if self.augment.is_off() {
            return self.batch(indices, device);
        }
        let s = &self.split;
        let len = s.image_len();
        let mut pixels = vec![0u8; indices.len() * len];
        for (&i, dst) in indices.iter().zip(pixels.chunks_exact_mut(len)) {
            let key = crate::rng::derive(self.seed, epoch, crate::rng::Stream::Augment) ^ i as u64;
            let mut rng = tinyconv_datasets::SplitMix64::new(crate::rng::splitmix64(key));
            self.augment
                .augment_into(s.image(i), s.height, s.width, s.channels, &mut rng, dst);
        }
        let labels = indices.iter().map(|&i| s.labels[i] as i32).collect();
        self.tensors(&pixels, labels, device)
    }
    fn truncated(&self, n: usize) -> Self {
        Self {
            split: self.split.truncated(n),
            ..self.clone()
        }
    }
    fn fingerprint(&self) -> String {
        self.split.fingerprint()
    }
}
