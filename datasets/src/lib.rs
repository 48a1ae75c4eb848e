//! Image datasets (work in progress).
