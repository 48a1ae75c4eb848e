//! Model specs as data (work in progress).
