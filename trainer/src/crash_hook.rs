//! A test hook that crashes the process at a named point, so tests can check what a crash
//! there leaves behind (a kill from outside cannot be aimed between two file writes).
//!
//! Setting `TINYCONV_TEST_ABORT_AFTER=<point>` makes `tinyconv` call [`std::process::abort`]
//! — no destructors, no flushing, like a crash — the first time it passes `<point>`. The points
//! are the steps of a checkpoint write, in order:
//!
//! - `checkpoint-weights`: the epoch's model record is written, its optimizer record is not;
//! - `checkpoint-optimizer`: both records are written, `state.json` still names the previous
//!   epoch;
//! - `checkpoint-state`: `state.json` names the new epoch; the previous epoch's records and
//!   the new `metrics.csv` row are not yet written or removed.
//!
//! Not for users: it exists for `trainer/tests/crash.rs`.

/// The environment variable naming the point to abort after.
pub const ABORT_AFTER_ENV: &str = "TINYCONV_TEST_ABORT_AFTER";

/// Abort the process if [`ABORT_AFTER_ENV`] names `point`.
pub fn reached(point: &str) {
    if std::env::var_os(ABORT_AFTER_ENV).is_some_and(|v| v == point) {
        eprintln!("{ABORT_AFTER_ENV}={point}: aborting");
        std::process::abort();
    }
}
