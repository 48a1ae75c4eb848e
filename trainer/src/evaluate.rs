//! Int8 evaluation through the runtime — the same `tinyconv` code the MCU runs — on a whole
//! split, spread over the machine's cores.

use tinyconv::Model;

use crate::data::Split;

/// Per-image int8 outputs of the runtime.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeOutputs {
    /// `classes` int8 logits per image, in order.
    pub logits: Vec<i8>,
    pub classes: Vec<u8>,
}

/// Accuracy figures of a set of predictions.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Accuracy {
    pub correct: usize,
    pub total: usize,
    pub accuracy: f64,
    /// Accuracy of each true class (0 for a class with no samples).
    pub per_class: Vec<f64>,
    /// `confusion[true][predicted]`, `classes x classes`.
    pub confusion: Vec<Vec<u32>>,
}

impl Accuracy {
    /// Figures of `predicted` against `labels`, over `classes` classes (every label and
    /// prediction must be below it).
    pub fn new<P: Copy + Into<usize>, L: Copy + Into<usize>>(
        predicted: &[P],
        labels: &[L],
        classes: usize,
    ) -> Self {
        let mut confusion = vec![vec![0u32; classes]; classes];
        for (&p, &t) in predicted.iter().zip(labels) {
            confusion[t.into()][p.into()] += 1;
        }
        Self::from_confusion(confusion)
    }

    pub fn from_confusion(confusion: Vec<Vec<u32>>) -> Self {
        let correct = (0..confusion.len()).map(|c| confusion[c][c] as usize).sum();
        let per_class = (0..confusion.len())
            .map(|c| {
                let n: u32 = confusion[c].iter().sum();
                if n == 0 {
                    0.0
                } else {
                    confusion[c][c] as f64 / n as f64
                }
            })
            .collect();
        let total = confusion.iter().flatten().map(|&n| n as usize).sum();
        Accuracy {
            correct,
            total,
            accuracy: correct as f64 / total.max(1) as f64,
            per_class,
            confusion,
        }
    }
}

/// Index of the first largest value (numpy's argmax; 0 for an empty row).
pub fn argmax<T: PartialOrd + Copy>(row: &[T]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |b, (i, &v)| if v > row[b] { i } else { b })
}

/// Runs the runtime on every image of `split`.
pub fn run_runtime(model: &Model<'_>, split: &Split) -> RuntimeOutputs {
    let n = split.len();
    let classes = model.classes();
    let mut logits = vec![0i8; n * classes];
    let mut predicted = vec![0u8; n];
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(n.max(1));
    let per_thread = n.div_ceil(threads);
    std::thread::scope(|s| {
        for ((t, logits), predicted) in logits
            .chunks_mut(per_thread * classes)
            .enumerate()
            .zip(predicted.chunks_mut(per_thread))
        {
            s.spawn(move || {
                let mut arena = vec![0i8; model.arena_len()];
                for (j, (out, class)) in logits
                    .chunks_mut(classes)
                    .zip(predicted.iter_mut())
                    .enumerate()
                {
                    let p = model
                        .infer(split.image(t * per_thread + j), &mut arena)
                        .expect("a validated model and a 28x28 image");
                    out.copy_from_slice(p.logits);
                    *class = p.class as u8;
                }
            });
        }
    });
    RuntimeOutputs {
        logits,
        classes: predicted,
    }
}

/// FNV-1a (32-bit: offset basis 0x811c9dc5, prime 0x01000193) over all int8 logits in order,
/// taken as bytes: the digest the firmware also computes, so a QEMU run can be compared with the
/// host in one number.
pub fn logits_digest(logits: &[i8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in logits {
        h ^= b as u8 as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}
