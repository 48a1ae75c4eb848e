//! Float training of [`Cnn`] on MNIST with burn's Flex CPU backend and autodiff.
//!
//! The recipe follows the Keras tutorial the project started from: Adam (lr 1e-3, β 0.9/0.999,
//! ε 1e-7), batches of 1000, 10 epochs, softmax cross-entropy, a fresh shuffle every epoch.
//! All randomness is derived from (seed, epoch) — see [`crate::rng`] — and a checkpoint is
//! written after every epoch, so a run resumed from epoch k ends with the same weights as an
//! uninterrupted one.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::store::{ModuleRecord, RecordError};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::artifacts::{atomic_write, remove_stale_temps};
use crate::crash_hook;
use crate::data::Mnist;
use crate::digest::fnv1a64_hex;
use crate::model::Cnn;
use crate::net::{Net, Samples};
use crate::rng::{Stream, backend_rng_lock, derive, epoch_permutation};

/// Name of the checkpoint directory inside the output directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The checkpoint's index: the last finished epoch, the run's settings and its metrics. It is
/// written last, so it only ever names model and optimizer files that are complete.
pub const CHECKPOINT_STATE: &str = "state.json";
/// Per-epoch metrics, one CSV row per finished epoch.
pub const METRICS_CSV: &str = "metrics.csv";
/// The final float weights (a burnpack [`ModuleRecord`] of [`Cnn`]).
pub const FLOAT_MODEL: &str = "model_float.bpk";
/// Batch size used to evaluate (memory-bound only; it does not change the results).
pub const EVAL_BATCH: usize = 1000;

/// Keras' Adam epsilon. Burn adds ε to `sqrt(v̂)` (PyTorch's form) where Keras adds it to
/// `sqrt(v)` before bias correction; with ε = 1e-7 the two differ by far less than rounding.
pub const ADAM_EPSILON: f32 = 1e-7;

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Total epochs (a resumed run continues up to this many).
    pub epochs: usize,
    /// Images per optimizer step; the last batch of an epoch may be smaller.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed of every random choice: initial weights, shuffles, dropout masks.
    pub seed: u64,
    /// Train on the first `limit` training images only.
    pub limit: Option<usize>,
    /// Where the checkpoint, metrics and model files go.
    pub out_dir: PathBuf,
    /// Continue from the checkpoint in `out_dir/checkpoint` if there is one.
    pub resume: bool,
    /// Calibration images for post-training quantization (used after training, not here).
    pub calibration: usize,
    /// Draw progress bars (they are hidden anyway when stderr is not a terminal).
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 1000,
            lr: 1e-3,
            seed: 42,
            limit: None,
            out_dir: PathBuf::from("models"),
            resume: false,
            calibration: 2000,
            progress: true,
        }
    }
}

/// What one epoch achieved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training batches (with dropout, as Keras reports).
    pub train_loss: f64,
    /// Training accuracy in [0, 1], over the same batches.
    pub train_acc: f64,
    /// Mean cross-entropy on the validation (MNIST test) set, without dropout.
    pub val_loss: f64,
    /// Validation accuracy in [0, 1].
    pub val_acc: f64,
    /// Wall-clock seconds for the epoch: training and evaluation (not the checkpoint write,
    /// which takes a fraction of a second and happens after this is recorded).
    pub seconds: f64,
}

impl fmt::Display for EpochMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loss {:.4} acc {:.2}%  val_loss {:.4} val_acc {:.2}%  {:.1}s",
            self.train_loss,
            self.train_acc * 100.0,
            self.val_loss,
            self.val_acc * 100.0,
            self.seconds
        )
    }
}

/// Wall-clock seconds spent in each phase of an epoch.
///
/// Flex executes eagerly, so each phase's time is the time of its own work: `forward` includes
/// the loss and reading it back, `backward` the gradient computation and collecting the
/// gradients per parameter, `optimizer` the Adam update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseSeconds {
    /// Gathering shuffled batches, converting pixels to f32 and building input tensors.
    pub data: f64,
    /// Forward pass, loss and training accuracy.
    pub forward: f64,
    /// Backward pass.
    pub backward: f64,
    /// Optimizer step.
    pub optimizer: f64,
    /// Evaluating on the validation set.
    pub eval: f64,
    /// Writing the checkpoint and metrics.
    pub checkpoint: f64,
}

impl PhaseSeconds {
    /// Sum of all phases.
    pub fn total(&self) -> f64 {
        self.data + self.forward + self.backward + self.optimizer + self.eval + self.checkpoint
    }

    fn add(&mut self, other: &PhaseSeconds) {
        self.data += other.data;
        self.forward += other.forward;
        self.backward += other.backward;
        self.optimizer += other.optimizer;
        self.eval += other.eval;
        self.checkpoint += other.checkpoint;
    }
}

impl fmt::Display for PhaseSeconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.total().max(f64::EPSILON);
        let pct = |x: f64| 100.0 * x / t;
        write!(
            f,
            "data {:.2}s ({:.0}%)  forward {:.2}s ({:.0}%)  backward {:.2}s ({:.0}%)  \
             optimizer {:.2}s ({:.0}%)  eval {:.2}s ({:.0}%)  checkpoint {:.2}s ({:.0}%)",
            self.data,
            pct(self.data),
            self.forward,
            pct(self.forward),
            self.backward,
            pct(self.backward),
            self.optimizer,
            pct(self.optimizer),
            self.eval,
            pct(self.eval),
            self.checkpoint,
            pct(self.checkpoint)
        )
    }
}

/// A confusion matrix: `m[true][predicted]` counts, one row and column per class.
pub type Confusion = Vec<Vec<u32>>;

/// The result of [`train`] (and of [`train_net`] for other networks).
pub struct TrainOutcome<N = Cnn> {
    /// The trained network, on the plain (non-autodiff) Flex device, in evaluation mode.
    pub model: N,
    /// Metrics of every finished epoch, including those of a run this one resumed.
    pub history: Vec<EpochMetrics>,
    /// Time per phase of each epoch run by this process (`(epoch, phases)`).
    pub phase_seconds: Vec<(usize, PhaseSeconds)>,
    /// Validation confusion matrix of the final model.
    pub confusion: Confusion,
    /// Epoch this process started from (0 for a fresh run).
    pub resumed_from: usize,
}

impl<N> TrainOutcome<N> {
    /// Phase times summed over the epochs this process ran.
    pub fn phase_total(&self) -> PhaseSeconds {
        let mut t = PhaseSeconds::default();
        for (_, p) in &self.phase_seconds {
            t.add(p);
        }
        t
    }
}

/// Everything that can stop training.
#[derive(Debug, Error)]
pub enum TrainError {
    /// A setting is out of range.
    #[error("invalid training setting: {0}")]
    InvalidConfig(String),
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A burn record could not be written or read.
    #[error("{}: {source}", .path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: RecordError,
    },
    /// The checkpoint index is unreadable (truncated, damaged, or from an older tinyconv).
    #[error(
        "{}: corrupt or truncated checkpoint state: {source}. \
         Start over without --resume (or with another --out)",
        .path.display()
    )]
    CorruptCheckpoint {
        /// The state file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The checkpoint holds records of finished epochs but its index is gone, so which of
    /// them is complete is unknown.
    #[error(
        "{}: missing, but the checkpoint directory holds records of epoch {epoch}: the \
         checkpoint's index was removed. Start over without --resume (or with another --out)",
        .path.display()
    )]
    MissingCheckpointState {
        /// The state file that should be there.
        path: PathBuf,
        /// The latest epoch of the records found.
        epoch: usize,
    },
    /// A record the checkpoint index names is not there.
    #[error(
        "{}: missing: the checkpoint of epoch {epoch} names it. \
         Start over without --resume (or with another --out)",
        .path.display()
    )]
    MissingCheckpointFile {
        /// The record file.
        path: PathBuf,
        /// The epoch the checkpoint is at.
        epoch: usize,
    },
    /// A record is not the one the checkpoint index describes (truncated or changed).
    #[error(
        "{}: damaged checkpoint record: {problem}. \
         Start over without --resume (or with another --out)",
        .path.display()
    )]
    DamagedCheckpointFile {
        /// The record file.
        path: PathBuf,
        /// How it differs.
        problem: String,
    },
    /// The checkpoint was made with settings that would not reproduce the same run.
    #[error(
        "cannot resume from {}: it was trained with {field} = {checkpoint}, this run asks for {requested}. \
         Use the same settings, or start over without --resume (or with another --out)",
        .dir.display()
    )]
    ResumeMismatch {
        /// The checkpoint directory.
        dir: PathBuf,
        /// The setting that differs.
        field: &'static str,
        /// Its value in the checkpoint.
        checkpoint: String,
        /// Its value in this run.
        requested: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn record_err(path: &Path) -> impl FnOnce(RecordError) -> TrainError + '_ {
    move |source| TrainError::Record {
        path: path.to_path_buf(),
        source,
    }
}

/// The settings a resumed run must share with the run that wrote the checkpoint.
///
/// The data is identified by content ([`Samples::fingerprint`]: size and hash of the images and
/// labels used), not by path: the same files copied elsewhere resume, other files with the
/// same names do not. Checkpoints written before the fingerprints existed have them empty
/// and are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RunSettings {
    seed: u64,
    batch_size: usize,
    lr: f64,
    /// Number of training images actually used.
    train_images: usize,
    /// Fingerprint of the training images actually used (after --limit).
    #[serde(default)]
    train_data: String,
    /// Fingerprint of the validation (test) set the history was measured on.
    #[serde(default)]
    test_data: String,
}

/// Size and hash of a record file, to tell a damaged one from the one that was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FileDigest {
    bytes: u64,
    fnv1a64: String,
}

impl FileDigest {
    fn of(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.len() as u64,
            fnv1a64: fnv1a64_hex(bytes),
        }
    }
}

/// `checkpoint/state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointState {
    /// Last finished epoch (1-based).
    epoch: usize,
    settings: RunSettings,
    /// File names (in the checkpoint directory) of the model and optimizer records.
    model_file: String,
    optimizer_file: String,
    /// What those files held when written.
    model_digest: FileDigest,
    optimizer_digest: FileDigest,
    history: Vec<EpochMetrics>,
}

/// The epoch in a record name written by [`write_checkpoint`] (`model-epoch003.bpk`).
fn record_epoch(name: &str) -> Option<usize> {
    ["model-epoch", "optimizer-epoch"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?
        .strip_suffix(".bpk")?
        .parse()
        .ok()
}

/// Read a record the checkpoint names and check it is the one that was written.
fn read_record(
    dir: &Path,
    name: &str,
    digest: &FileDigest,
    epoch: usize,
) -> Result<burn::tensor::Bytes, TrainError> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TrainError::MissingCheckpointFile { path, epoch });
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let found = FileDigest::of(&bytes);
    if found != *digest {
        let problem = if found.bytes < digest.bytes {
            format!(
                "truncated: {} bytes, the checkpoint wrote {}",
                found.bytes, digest.bytes
            )
        } else if found.bytes > digest.bytes {
            format!(
                "{} bytes, the checkpoint wrote {}",
                found.bytes, digest.bytes
            )
        } else {
            format!(
                "its content changed (FNV-1a {}, the checkpoint wrote {})",
                found.fnv1a64, digest.fnv1a64
            )
        };
        return Err(TrainError::DamagedCheckpointFile { path, problem });
    }
    Ok(burn::tensor::Bytes::from_bytes_vec(bytes))
}

fn adam() -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(ADAM_EPSILON)
        .init()
}

fn validate<S: Samples>(config: &TrainConfig, train: &S, test: &S) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::InvalidConfig(m));
    if config.epochs == 0 {
        return bad("--epochs must be at least 1".into());
    }
    if config.batch_size == 0 {
        return bad("--batch-size must be at least 1".into());
    }
    if !(config.lr.is_finite() && config.lr > 0.0) {
        return bad(format!("--lr must be a positive number, got {}", config.lr));
    }
    if config.limit == Some(0) {
        return bad("--limit must be at least 1".into());
    }
    if train.is_empty() {
        return bad("the training set is empty".into());
    }
    if test.is_empty() {
        return bad("the validation (test) set is empty".into());
    }
    Ok(())
}

/// Where training checkpoints live for `out_dir`.
pub fn checkpoint_dir(out_dir: &Path) -> PathBuf {
    out_dir.join(CHECKPOINT_DIR)
}

/// The checkpoint's index, or `None` if there is no complete checkpoint.
///
/// `state.json` is written last and only ever replaced, never removed: if it is missing, a
/// crash hit the first epoch's checkpoint before it was complete (records of epoch 1 at
/// most) and there is nothing to resume. Records of a later epoch without it mean it was
/// lost, which is an error.
fn read_state(dir: &Path) -> Result<Option<CheckpointState>, TrainError> {
    let path = dir.join(CHECKPOINT_STATE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let latest = match fs::read_dir(dir) {
                Ok(entries) => entries
                    .filter_map(|e| record_epoch(&e.ok()?.file_name().to_string_lossy()))
                    .max(),
                Err(_) => None,
            };
            return match latest {
                Some(epoch) if epoch > 1 => Err(TrainError::MissingCheckpointState { path, epoch }),
                _ => Ok(None),
            };
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| TrainError::CorruptCheckpoint { path, source })
}

fn check_settings(dir: &Path, saved: &RunSettings, now: &RunSettings) -> Result<(), TrainError> {
    let mismatch = |field, a: String, b: String| {
        Err(TrainError::ResumeMismatch {
            dir: dir.to_path_buf(),
            field,
            checkpoint: a,
            requested: b,
        })
    };
    if saved.seed != now.seed {
        return mismatch("--seed", saved.seed.to_string(), now.seed.to_string());
    }
    if saved.batch_size != now.batch_size {
        return mismatch(
            "--batch-size",
            saved.batch_size.to_string(),
            now.batch_size.to_string(),
        );
    }
    if saved.lr != now.lr {
        return mismatch("--lr", saved.lr.to_string(), now.lr.to_string());
    }
    if saved.train_images != now.train_images {
        return mismatch(
            "training images (--limit)",
            saved.train_images.to_string(),
            now.train_images.to_string(),
        );
    }
    let unrecorded = |s: &str| {
        if s.is_empty() {
            "(not recorded: an older checkpoint)".to_string()
        } else {
            s.to_string()
        }
    };
    if saved.train_data != now.train_data {
        return mismatch(
            "the training set (--data)",
            unrecorded(&saved.train_data),
            now.train_data.clone(),
        );
    }
    if saved.test_data != now.test_data {
        return mismatch(
            "the test set (--data)",
            unrecorded(&saved.test_data),
            now.test_data.clone(),
        );
    }
    Ok(())
}

/// Write the checkpoint of `epoch`: the model and optimizer records under per-epoch names,
/// then the index that names them (each file written atomically), then remove every other
/// record and temporary file. `state.json` is the commit point: a crash before it is renamed
/// into place leaves the previous epoch's checkpoint complete and in charge, a crash after it
/// leaves this one.
fn write_checkpoint(
    dir: &Path,
    epoch: usize,
    settings: &RunSettings,
    model: &impl Module,
    optim: &ModuleOptimizer,
    history: &[EpochMetrics],
) -> Result<(), TrainError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;

    let model_file = format!("model-epoch{epoch:03}.bpk");
    let optimizer_file = format!("optimizer-epoch{epoch:03}.bpk");
    let model_path = dir.join(&model_file);
    let optim_path = dir.join(&optimizer_file);

    let model_bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(record_err(&model_path))?;
    atomic_write(&model_path, &model_bytes).map_err(io_err(&model_path))?;
    crash_hook::reached("checkpoint-weights");
    let optim_bytes = optim.into_bytes().map_err(record_err(&optim_path))?;
    atomic_write(&optim_path, &optim_bytes).map_err(io_err(&optim_path))?;
    crash_hook::reached("checkpoint-optimizer");

    let state = CheckpointState {
        epoch,
        settings: settings.clone(),
        model_file: model_file.clone(),
        optimizer_file: optimizer_file.clone(),
        model_digest: FileDigest::of(&model_bytes),
        optimizer_digest: FileDigest::of(&optim_bytes),
        history: history.to_vec(),
    };
    let state_path = dir.join(CHECKPOINT_STATE);
    let json = serde_json::to_vec_pretty(&state).expect("checkpoint state serializes");
    atomic_write(&state_path, &json).map_err(io_err(&state_path))?;
    crash_hook::reached("checkpoint-state");

    // Records of other epochs: the previous checkpoint, or a newer epoch's left by a crash
    // before its state.json (this run has just rewritten that epoch, or will).
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let name = entry.map_err(io_err(dir))?.file_name();
        let name = name.to_string_lossy();
        if record_epoch(&name).is_some() && name != model_file && name != optimizer_file {
            let path = dir.join(&*name);
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    remove_stale_temps(dir).map_err(io_err(dir))?;
    Ok(())
}

/// The metrics CSV for `history` (header included).
pub fn metrics_csv(history: &[EpochMetrics]) -> String {
    let mut s = String::from("epoch,train_loss,train_acc,val_loss,val_acc,seconds\n");
    for m in history {
        s.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:.3}\n",
            m.epoch, m.train_loss, m.train_acc, m.val_loss, m.val_acc, m.seconds
        ));
    }
    s
}

/// Loss, accuracy and confusion matrix of `model` on `split`, without autodiff or dropout.
pub fn evaluate<N: Net, S: Samples>(
    model: &N,
    split: &S,
    device: &Device,
) -> (f64, f64, Confusion) {
    let model = model.valid();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let classes = split.classes();
    let mut confusion = vec![vec![0u32; classes]; classes];
    let (mut loss_sum, mut correct) = (0f64, 0usize);
    let n = split.len();
    let all: Vec<usize> = (0..n).collect();
    for indices in all.chunks(EVAL_BATCH) {
        let (x, y) = split.batch(indices, device);
        let logits = model.forward(x);
        let loss: f32 = loss_fn.forward(logits.clone(), y).into_scalar();
        loss_sum += loss as f64 * indices.len() as f64;
        let preds: Vec<i64> = logits
            .argmax(1)
            .try_into_vec_as()
            .expect("predictions read back");
        for (&i, &p) in indices.iter().zip(&preds) {
            let t = split.label(i);
            confusion[t][p as usize] += 1;
            correct += (t as i64 == p) as usize;
        }
    }
    (loss_sum / n as f64, correct as f64 / n as f64, confusion)
}

fn progress_bar(config: &TrainConfig, epoch: usize, batches: usize) -> ProgressBar {
    if !config.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(batches as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} [{bar:30.cyan/blue}] {pos}/{len} batches  {msg}  {elapsed} elapsed, ETA {eta}",
        )
        .expect("valid progress template")
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{}", config.epochs));
    bar
}

/// How many rows of `logits` have their largest value at the row's label.
pub fn correct_predictions(logits: Tensor<2>, labels: Tensor<1, Int>) -> i64 {
    logits
        .argmax(1)
        .squeeze_dim::<1>(1)
        .equal(labels)
        .int()
        .sum()
        .into_scalar()
}

/// One epoch of training; returns (model, mean loss, accuracy, phase times).
#[allow(clippy::too_many_arguments)]
fn train_epoch<N: Net, S: Samples>(
    mut model: N,
    optim: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    train: &S,
    config: &TrainConfig,
    epoch: usize,
    device: &Device,
    phases: &mut PhaseSeconds,
) -> (N, f64, f64) {
    let n = train.len();
    let order = epoch_permutation(config.seed, epoch, n);
    // Dropout draws from the backend RNG: re-seed it so the epoch's masks depend only on
    // (seed, epoch), not on what ran before in this process.
    device.seed(derive(config.seed, epoch, Stream::Dropout));

    let batches = n.div_ceil(config.batch_size);
    let bar = progress_bar(config, epoch, batches);
    let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
    let secs = |d: Duration| d.as_secs_f64();

    for indices in order.chunks(config.batch_size) {
        let t = Instant::now();
        let (x, y) = train.train_batch(indices, epoch, device);
        phases.data += secs(t.elapsed());

        let t = Instant::now();
        let logits = model.forward(x);
        let loss = loss_fn.forward(logits.clone(), y.clone());
        // Reading values back also makes sure the (eager) forward work is done.
        let loss_value: f32 = loss.clone().inner().into_scalar();
        let hits = correct_predictions(logits.inner(), y.inner());
        phases.forward += secs(t.elapsed());

        let t = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        phases.backward += secs(t.elapsed());

        let t = Instant::now();
        model = optim.step(config.lr, model, grads);
        phases.optimizer += secs(t.elapsed());

        let b = indices.len();
        loss_sum += loss_value as f64 * b as f64;
        correct += hits as usize;
        seen += b;
        bar.set_message(format!(
            "loss {:.4} acc {:.2}%",
            loss_sum / seen as f64,
            100.0 * correct as f64 / seen as f64
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    (model, loss_sum / seen as f64, correct as f64 / seen as f64)
}

/// Keep freed tensor buffers in the process heap instead of handing them back to the OS.
///
/// Flex allocates a fresh buffer for every op's output. The big ones (a conv2 activation of a
/// 1000-image batch is 74 MB) are above glibc's mmap threshold (32 MiB at most), so each is
/// mmap-ed, page-faulted in and zeroed by the kernel, then unmapped again: about a sixth of an
/// epoch went to that system time. Served from the heap, freed buffers are reused. Measured on
/// 5000 images: system time 3.1 s → 0.5-0.8 s, forward+backward 14.0 s → 11.5 s. The process
/// keeps its peak heap (~0.7 GB for batches of 1000) until it exits.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::ffi::c_int;
        unsafe extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        const M_TRIM_THRESHOLD: c_int = -1;
        const M_MMAP_MAX: c_int = -4;
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes glibc's allocation policy, under its own lock.
        ONCE.call_once(|| unsafe {
            mallopt(M_MMAP_MAX, 0);
            mallopt(M_TRIM_THRESHOLD, c_int::MAX);
        });
    }
}

/// Number the parameters 1, 2, ... in module order in place of burn's random ids.
///
/// The ids are written into every record (checkpoints, `model_float.bpk`) and key the
/// optimizer's state. Random, they made two identical runs write different files; numbered,
/// the same run writes the same bytes, and a resumed run's files equal an uninterrupted one's.
fn stable_param_ids<N: Module>(model: N) -> N {
    use burn::module::{ModuleMapper, Param, ParamId};
    struct Numbered(u64);
    impl ModuleMapper for Numbered {
        fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.0 += 1;
            param.id = ParamId::from(self.0);
            param
        }
    }
    model.map(&mut Numbered(0))
}

/// Train the float model. See the module documentation for the recipe.
///
/// Validation uses `data.test` (the MNIST test set, as the Keras tutorial did); it only
/// reports, nothing is selected with it. Prints one line per epoch to stdout.
pub fn train(config: &TrainConfig, data: &Mnist) -> Result<TrainOutcome, TrainError> {
    train_net(config, &data.train, &data.test, Cnn::new, Cnn::lazy)
}

/// Train any [`Net`] on any [`Samples`] with [`train`]'s recipe, checkpoints and resume.
/// `fresh` builds the network with its initial weights drawn (from the seeded backend RNG);
/// `lazy` builds it with nothing drawn, to load a checkpoint into.
pub fn train_net<N: Net, S: Samples>(
    config: &TrainConfig,
    train: &S,
    test: &S,
    fresh: impl Fn(&Device) -> N,
    lazy: impl Fn(&Device) -> N,
) -> Result<TrainOutcome<N>, TrainError> {
    validate(config, train, test)?;
    // The backend RNG is process-wide; keep other users off it for the whole run.
    let _rng = backend_rng_lock();
    keep_freed_memory();
    let train_split = match config.limit {
        Some(n) if n < train.len() => train.truncated(n),
        _ => train.clone(),
    };
    let settings = RunSettings {
        seed: config.seed,
        batch_size: config.batch_size,
        lr: config.lr,
        train_images: train_split.len(),
        train_data: train_split.fingerprint(),
        test_data: test.fingerprint(),
    };

    let plain = Device::flex();
    let device = plain.clone().autodiff();
    let ckpt_dir = checkpoint_dir(&config.out_dir);
    fs::create_dir_all(&config.out_dir).map_err(io_err(&config.out_dir))?;
    // Half-written files of a killed run (never renamed into place, so never read).
    for dir in [&config.out_dir, &ckpt_dir] {
        remove_stale_temps(dir).map_err(io_err(dir))?;
    }

    device.seed(derive(config.seed, 0, Stream::Init));
    let mut model = stable_param_ids(fresh(&device));
    let mut optim = adam();
    let mut history = Vec::new();
    let mut start_epoch = 0;

    if config.resume {
        match read_state(&ckpt_dir)? {
            Some(state) => {
                check_settings(&ckpt_dir, &state.settings, &settings)?;
                if state.epoch > config.epochs {
                    return Err(TrainError::InvalidConfig(format!(
                        "the checkpoint in {} is at epoch {}, past --epochs {}: ask for at \
                         least {} epochs to resume it",
                        ckpt_dir.display(),
                        state.epoch,
                        config.epochs,
                        state.epoch
                    )));
                }
                let model_path = ckpt_dir.join(&state.model_file);
                let bytes = read_record(
                    &ckpt_dir,
                    &state.model_file,
                    &state.model_digest,
                    state.epoch,
                )?;
                let record = ModuleRecord::from_bytes(bytes).map_err(record_err(&model_path))?;
                model = stable_param_ids(
                    lazy(&device)
                        .try_load_record(record)
                        .map_err(record_err(&model_path))?,
                );
                let optim_path = ckpt_dir.join(&state.optimizer_file);
                let bytes = read_record(
                    &ckpt_dir,
                    &state.optimizer_file,
                    &state.optimizer_digest,
                    state.epoch,
                )?;
                optim = optim.from_bytes(bytes).map_err(record_err(&optim_path))?;
                start_epoch = state.epoch;
                history = state.history;
                history.truncate(start_epoch);
                println!(
                    "resuming from {} after epoch {start_epoch}",
                    ckpt_dir.display()
                );
            }
            None => println!(
                "no complete checkpoint in {} (no {CHECKPOINT_STATE}); starting from epoch 1",
                ckpt_dir.display()
            ),
        }
    }

    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let metrics_path = config.out_dir.join(METRICS_CSV);
    atomic_write(&metrics_path, metrics_csv(&history).as_bytes()).map_err(io_err(&metrics_path))?;

    let mut phase_seconds = Vec::new();
    let mut confusion = None;
    for epoch in start_epoch + 1..=config.epochs {
        let started = Instant::now();
        let mut phases = PhaseSeconds::default();
        let (m, train_loss, train_acc) = train_epoch(
            model,
            &mut optim,
            &loss_fn,
            &train_split,
            config,
            epoch,
            &device,
            &mut phases,
        );
        model = m;

        let t = Instant::now();
        let (val_loss, val_acc, cm) = evaluate(&model, test, &plain);
        phases.eval = t.elapsed().as_secs_f64();
        confusion = Some(cm);

        // The epoch's time is fixed before the checkpoint is written, so the checkpoint holds
        // the same figure as the CSV (a resumed run rewrites the CSV from the checkpoint).
        let metrics = EpochMetrics {
            epoch,
            train_loss,
            train_acc,
            val_loss,
            val_acc,
            seconds: started.elapsed().as_secs_f64(),
        };
        history.push(metrics.clone());
        let t = Instant::now();
        write_checkpoint(&ckpt_dir, epoch, &settings, &model, &optim, &history)?;
        atomic_write(&metrics_path, metrics_csv(&history).as_bytes())
            .map_err(io_err(&metrics_path))?;
        phases.checkpoint = t.elapsed().as_secs_f64();

        println!("epoch {epoch}/{}  {metrics}", config.epochs);
        phase_seconds.push((epoch, phases));
    }

    let model = model.valid();
    let confusion = match confusion {
        Some(c) => c,
        // Nothing left to train (resumed at the last epoch): evaluate what was loaded.
        None => evaluate(&model, test, &plain).2,
    };
    let float_path = config.out_dir.join(FLOAT_MODEL);
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(record_err(&float_path))?;
    atomic_write(&float_path, &bytes).map_err(io_err(&float_path))?;

    Ok(TrainOutcome {
        model,
        history,
        phase_seconds,
        confusion,
        resumed_from: start_epoch,
    })
}

/// Load float weights written by [`train`] (`model_float.bpk`, or a checkpoint's model file)
/// onto `device`.
pub fn load_float_model(path: &Path, device: &Device) -> Result<Cnn, TrainError> {
    let record = ModuleRecord::load(path).map_err(record_err(path))?;
    Cnn::lazy(device)
        .try_load_record(record)
        .map_err(record_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{IMAGE_PIXELS, Split};
    use burn::module::{ModuleVisitor, Param};

    /// The real MNIST, cut down: 1000 training and 200 test images.
    fn tiny_mnist() -> Mnist {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mnist");
        let m = crate::data::load(&dir).unwrap_or_else(|e| panic!("{e}"));
        Mnist {
            train: m.train.truncated(1000),
            test: m.test.truncated(200),
        }
    }

    fn tiny_config(out: &Path, epochs: usize) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: 100,
            lr: 1e-3,
            seed: 7,
            limit: Some(1000),
            out_dir: out.to_path_buf(),
            resume: false,
            calibration: 0,
            progress: false,
        }
    }

    /// Every float parameter's values, with its path, in module order.
    #[derive(Default)]
    struct Weights {
        path: Vec<String>,
        out: Vec<(String, Vec<f32>)>,
    }

    impl ModuleVisitor for Weights {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }

        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }

        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = param.val().try_into_vec_as().unwrap();
            self.out.push((self.path.join("."), values));
        }
    }

    fn weights(model: &Cnn) -> Vec<(String, Vec<f32>)> {
        let mut w = Weights::default();
        model.visit(&mut w);
        assert_eq!(w.out.len(), 10, "5 layers x (weight, bias)");
        w.out
    }

    fn without_seconds(h: &[EpochMetrics]) -> Vec<EpochMetrics> {
        h.iter()
            .map(|m| EpochMetrics {
                seconds: 0.0,
                ..m.clone()
            })
            .collect()
    }

    /// Two epochs straight, versus one epoch then a resume to two: identical weights (to the
    /// bit) and identical metrics.
    #[test]
    fn resume_reproduces_an_uninterrupted_run() {
        let data = tiny_mnist();
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));

        let straight = train(&tiny_config(&a, 2), &data).unwrap();
        assert_eq!(straight.history.len(), 2);
        assert_eq!(straight.resumed_from, 0);

        let first = train(&tiny_config(&b, 1), &data).unwrap();
        assert_eq!(first.history.len(), 1);
        let resumed = train(
            &TrainConfig {
                resume: true,
                ..tiny_config(&b, 2)
            },
            &data,
        )
        .unwrap();
        assert_eq!(resumed.resumed_from, 1);
        assert_eq!(resumed.phase_seconds.len(), 1);

        assert_eq!(
            without_seconds(&straight.history),
            without_seconds(&resumed.history)
        );
        // Every epoch's time survives the checkpoint, including the last one before resuming.
        assert!(
            resumed.history.iter().all(|m| m.seconds > 0.0),
            "{:?}",
            resumed.history
        );
        let (wa, wb) = (weights(&straight.model), weights(&resumed.model));
        for ((name, x), (_, y)) in wa.iter().zip(&wb) {
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert!(bits(x) == bits(y), "{name} differs after resume");
        }
        assert_eq!(straight.confusion, resumed.confusion);

        // It learned something: 2 epochs on 1000 images beat chance by far.
        assert!(straight.history[1].val_acc > 0.5, "{:?}", straight.history);

        // Files: metrics with a header and one row per epoch, one checkpoint's records only,
        // the float model, and no temporary file anywhere.
        let csv = fs::read_to_string(b.join(METRICS_CSV)).unwrap();
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(csv.starts_with("epoch,train_loss,train_acc,val_loss,val_acc,seconds\n"));
        let mut ckpt: Vec<String> = fs::read_dir(checkpoint_dir(&b))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        ckpt.sort();
        assert_eq!(
            ckpt,
            ["model-epoch002.bpk", "optimizer-epoch002.bpk", "state.json"]
        );
        for dir in [&a, &b] {
            for e in fs::read_dir(dir).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                assert!(!name.ends_with(".tmp"), "left behind {name}");
            }
        }
        let loaded = load_float_model(&b.join(FLOAT_MODEL), &Device::flex()).unwrap();
        assert_eq!(weights(&loaded), wb);

        // Resuming a finished run trains nothing and returns the same model.
        let again = train(
            &TrainConfig {
                resume: true,
                ..tiny_config(&b, 2)
            },
            &data,
        )
        .unwrap();
        assert!(again.phase_seconds.is_empty());
        assert_eq!(weights(&again.model), wb);

        // Resuming with fewer epochs than the checkpoint holds is refused, not silently done.
        let fewer = train(
            &TrainConfig {
                resume: true,
                ..tiny_config(&b, 1)
            },
            &data,
        );
        assert!(
            matches!(&fewer, Err(TrainError::InvalidConfig(m)) if m.contains("past --epochs 1")),
            "{:?}",
            fewer.err()
        );
    }

    /// 50 training and 20 test images of the real MNIST, and a config training on all of them.
    fn small_run(out: &Path) -> (Mnist, TrainConfig) {
        let m = tiny_mnist();
        let data = Mnist {
            train: m.train.truncated(50),
            test: m.test.truncated(20),
        };
        let config = TrainConfig {
            batch_size: 50,
            limit: None,
            ..tiny_config(out, 1)
        };
        (data, config)
    }

    #[test]
    fn resume_refuses_every_other_setting() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, config) = small_run(tmp.path());
        train(&config, &data).unwrap();
        let state_path = checkpoint_dir(tmp.path()).join(CHECKPOINT_STATE);
        let state = fs::read(&state_path).unwrap();
        let resume = TrainConfig {
            resume: true,
            epochs: 2,
            ..config.clone()
        };
        let m = tiny_mnist();
        // Same sizes, other images: only the content tells them apart.
        let other_train = Mnist {
            train: Split {
                images: m.train.images[50 * IMAGE_PIXELS..100 * IMAGE_PIXELS].to_vec(),
                labels: m.train.labels[50..100].to_vec(),
            },
            test: data.test.clone(),
        };
        let mut other_test = data.clone();
        other_test.test.labels[0] = (other_test.test.labels[0] + 1) % 10;
        let cases: [(TrainConfig, &Mnist, &str, &str); 6] = [
            (
                TrainConfig {
                    seed: 8,
                    ..resume.clone()
                },
                &data,
                "--seed",
                "--seed = 7, this run asks for 8",
            ),
            (
                TrainConfig {
                    batch_size: 25,
                    ..resume.clone()
                },
                &data,
                "--batch-size",
                "--batch-size = 50, this run asks for 25",
            ),
            (
                TrainConfig {
                    lr: 2e-3,
                    ..resume.clone()
                },
                &data,
                "--lr",
                "--lr = 0.001, this run asks for 0.002",
            ),
            (
                TrainConfig {
                    limit: Some(40),
                    ..resume.clone()
                },
                &data,
                "training images (--limit)",
                "training images (--limit) = 50, this run asks for 40",
            ),
            (
                resume.clone(),
                &other_train,
                "the training set (--data)",
                "the training set (--data) = 50 images, fnv1a64 ",
            ),
            (
                resume.clone(),
                &other_test,
                "the test set (--data)",
                "the test set (--data) = 20 images, fnv1a64 ",
            ),
        ];
        for (c, d, field, says) in cases {
            let e = train(&c, d).err().unwrap();
            assert!(
                matches!(&e, TrainError::ResumeMismatch { field: f, .. } if *f == field),
                "{field}: {e}"
            );
            assert!(e.to_string().contains(says), "{field}: {e}");
            // Refused before touching anything.
            assert_eq!(fs::read(&state_path).unwrap(), state, "{field}");
        }
        // The same settings resume (--limit at or above the set's size is no limit).
        let ok = train(
            &TrainConfig {
                limit: Some(50),
                ..resume
            },
            &data,
        )
        .unwrap();
        assert_eq!(ok.resumed_from, 1);
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn resume_names_a_missing_or_damaged_checkpoint_file() {
        let tmp = tempfile::tempdir().unwrap();
        let done = tmp.path().join("done");
        let (data, config) = small_run(&done);
        train(
            &TrainConfig {
                epochs: 2,
                ..config.clone()
            },
            &data,
        )
        .unwrap();
        let truncate = |p: &Path| {
            let b = fs::read(p).unwrap();
            fs::write(p, &b[..b.len() / 2]).unwrap();
        };
        let flip = |p: &Path| {
            let mut b = fs::read(p).unwrap();
            let i = b.len() - 100;
            b[i] ^= 1;
            fs::write(p, b).unwrap();
        };
        let remove = |p: &Path| fs::remove_file(p).unwrap();
        let empty = |p: &Path| fs::write(p, b"").unwrap();
        type Damage<'a> = &'a dyn Fn(&Path);
        let cases: [(&str, Damage, &str); 9] = [
            (
                CHECKPOINT_STATE,
                &truncate,
                "corrupt or truncated checkpoint state",
            ),
            (
                CHECKPOINT_STATE,
                &empty,
                "corrupt or truncated checkpoint state",
            ),
            (
                CHECKPOINT_STATE,
                &remove,
                "missing, but the checkpoint directory holds records of epoch 2",
            ),
            (
                "model-epoch002.bpk",
                &remove,
                "missing: the checkpoint of epoch 2 names it",
            ),
            (
                "model-epoch002.bpk",
                &truncate,
                "damaged checkpoint record: truncated",
            ),
            (
                "model-epoch002.bpk",
                &flip,
                "damaged checkpoint record: its content changed",
            ),
            (
                "optimizer-epoch002.bpk",
                &remove,
                "missing: the checkpoint of epoch 2 names it",
            ),
            (
                "optimizer-epoch002.bpk",
                &truncate,
                "damaged checkpoint record: truncated",
            ),
            (
                "optimizer-epoch002.bpk",
                &empty,
                "damaged checkpoint record: truncated: 0 bytes",
            ),
        ];
        for (i, (file, damage, says)) in cases.into_iter().enumerate() {
            let out = tmp.path().join(format!("case{i}"));
            copy_dir(&done, &out);
            let path = checkpoint_dir(&out).join(file);
            damage(&path);
            let e = train(
                &TrainConfig {
                    resume: true,
                    epochs: 3,
                    out_dir: out.clone(),
                    ..config.clone()
                },
                &data,
            )
            .err()
            .unwrap_or_else(|| panic!("{file}: {says}: resumed"));
            let kind_ok = match &e {
                TrainError::CorruptCheckpoint { path: p, .. }
                | TrainError::MissingCheckpointState { path: p, .. }
                | TrainError::MissingCheckpointFile { path: p, .. }
                | TrainError::DamagedCheckpointFile { path: p, .. } => *p == path,
                _ => false,
            };
            assert!(kind_ok, "{file}: {e:?}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{}: {says}", path.display())),
                "{file}: {msg}"
            );
            assert!(msg.contains("without --resume"), "{msg}");
        }

        // No state.json and records of epoch 1 at most: a crash during the first checkpoint,
        // nothing to resume; training starts over and cleans up.
        let out = tmp.path().join("first");
        copy_dir(&done, &out);
        let ckpt = checkpoint_dir(&out);
        for f in [
            CHECKPOINT_STATE,
            "model-epoch002.bpk",
            "optimizer-epoch002.bpk",
        ] {
            fs::remove_file(ckpt.join(f)).unwrap();
        }
        fs::write(ckpt.join("model-epoch001.bpk"), b"half").unwrap();
        let stale = ckpt.join(".optimizer-epoch001.bpk.4194305.0.tmp");
        fs::write(&stale, b"half").unwrap();
        let fresh = train(
            &TrainConfig {
                resume: true,
                out_dir: out.clone(),
                ..config
            },
            &data,
        )
        .unwrap();
        assert_eq!(fresh.resumed_from, 0);
        let mut names: Vec<String> = fs::read_dir(&ckpt)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["model-epoch001.bpk", "optimizer-epoch001.bpk", "state.json"]
        );
    }

    #[test]
    fn rejects_invalid_settings() {
        let data = Mnist {
            train: tiny_mnist().train.truncated(10),
            test: tiny_mnist().test.truncated(10),
        };
        let tmp = tempfile::tempdir().unwrap();
        for c in [
            TrainConfig {
                epochs: 0,
                ..tiny_config(tmp.path(), 1)
            },
            TrainConfig {
                batch_size: 0,
                ..tiny_config(tmp.path(), 1)
            },
            TrainConfig {
                lr: f64::NAN,
                ..tiny_config(tmp.path(), 1)
            },
        ] {
            assert!(matches!(
                train(&c, &data),
                Err(TrainError::InvalidConfig(_))
            ));
        }
    }

    #[test]
    fn csv_format() {
        let h = [EpochMetrics {
            epoch: 3,
            train_loss: 0.0412,
            train_acc: 0.9871,
            val_loss: 0.0321,
            val_acc: 0.9895,
            seconds: 12.3,
        }];
        assert_eq!(
            metrics_csv(&h),
            "epoch,train_loss,train_acc,val_loss,val_acc,seconds\n\
             3,0.041200,0.987100,0.032100,0.989500,12.300\n"
        );
        assert_eq!(
            format!("epoch 3/10  {}", h[0]),
            "epoch 3/10  loss 0.0412 acc 98.71%  val_loss 0.0321 val_acc 98.95%  12.3s"
        );
    }
}
