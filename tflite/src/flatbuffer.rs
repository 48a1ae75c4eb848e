//! The FlatBuffers wire format, read from untrusted bytes: tables through their vtables,
//! vectors, strings and scalars, each access checked against the buffer's bounds.
//!
//! Written by hand rather than generated from TensorFlow Lite's schema: a reader of a dozen
//! tables needs a few scalar and offset accessors, and this way no field is read without a
//! bounds check and no schema code is vendored (field ids are given where each table is read,
//! in [`crate::read`]). The layout: a buffer starts with a `u32` offset to the root table; a
//! table starts with an `i32` back-offset to its vtable; a vtable is `u16` vtable size, `u16`
//! table size, then one `u16` offset per field id (0 or past the end: the field is absent and
//! takes its default); offsets to tables, vectors and strings are `u32`, relative to where they
//! are stored; vectors and strings start with a `u32` length. Everything is little-endian.

use crate::Error;

/// A table inside a buffer.
#[derive(Clone, Copy, Debug)]
pub struct Table<'a> {
    buf: &'a [u8],
    /// Byte position of the table.
    at: usize,
    /// Byte position and length (in bytes) of its vtable.
    vtable: usize,
    vtable_len: usize,
    /// What the table is, for error messages.
    what: &'static str,
}

/// Reads `N` bytes at `at`, or fails naming `what`.
fn bytes<const N: usize>(buf: &[u8], at: usize, what: &'static str) -> Result<[u8; N], Error> {
    at.checked_add(N)
        .and_then(|end| buf.get(at..end))
        .map(|b| b.try_into().expect("slice of N bytes"))
        .ok_or(Error::OutOfBounds {
            what,
            at,
            len: buf.len(),
        })
}

pub(crate) fn u32_at(buf: &[u8], at: usize, what: &'static str) -> Result<u32, Error> {
    bytes::<4>(buf, at, what).map(u32::from_le_bytes)
}

/// Follows the `u32` offset stored at `at` (relative to `at`).
fn follow(buf: &[u8], at: usize, what: &'static str) -> Result<usize, Error> {
    let offset = u32_at(buf, at, what)? as usize;
    at.checked_add(offset)
        .filter(|&t| t < buf.len())
        .ok_or(Error::OutOfBounds {
            what,
            at,
            len: buf.len(),
        })
}

impl<'a> Table<'a> {
    /// The root table of `buf`.
    pub fn root(buf: &'a [u8], what: &'static str) -> Result<Self, Error> {
        let at = u32_at(buf, 0, what)? as usize;
        Self::at(buf, at, what)
    }

    fn at(buf: &'a [u8], at: usize, what: &'static str) -> Result<Self, Error> {
        let back = i32::from_le_bytes(bytes::<4>(buf, at, what)?) as i64;
        let vtable = usize::try_from(at as i64 - back).map_err(|_| Error::OutOfBounds {
            what,
            at,
            len: buf.len(),
        })?;
        let vtable_len = u16::from_le_bytes(bytes::<2>(buf, vtable, what)?) as usize;
        if vtable_len < 4 || !vtable_len.is_multiple_of(2) || vtable + vtable_len > buf.len() {
            return Err(Error::BadVtable { what, at: vtable });
        }
        let table_len = u16::from_le_bytes(bytes::<2>(buf, vtable + 2, what)?) as usize;
        if table_len < 4 || at + table_len > buf.len() {
            return Err(Error::BadVtable { what, at: vtable });
        }
        Ok(Table {
            buf,
            at,
            vtable,
            vtable_len,
            what,
        })
    }

    /// Byte position of field `id`, if present.
    fn field(&self, id: usize) -> Result<Option<usize>, Error> {
        let slot = 4 + 2 * id;
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        let offset = u16::from_le_bytes(bytes::<2>(self.buf, self.vtable + slot, self.what)?);
        Ok((offset != 0).then(|| self.at + offset as usize))
    }

    fn scalar<const N: usize>(&self, id: usize) -> Result<Option<[u8; N]>, Error> {
        match self.field(id)? {
            Some(at) => bytes::<N>(self.buf, at, self.what).map(Some),
            None => Ok(None),
        }
    }

    pub fn u8(&self, id: usize, default: u8) -> Result<u8, Error> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0]))
    }

    pub fn i8(&self, id: usize, default: i8) -> Result<i8, Error> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0] as i8))
    }

    pub fn bool(&self, id: usize, default: bool) -> Result<bool, Error> {
        Ok(self.scalar::<1>(id)?.map_or(default, |b| b[0] != 0))
    }

    pub fn i32(&self, id: usize, default: i32) -> Result<i32, Error> {
        Ok(self.scalar::<4>(id)?.map_or(default, i32::from_le_bytes))
    }

    pub fn u32(&self, id: usize, default: u32) -> Result<u32, Error> {
        Ok(self.scalar::<4>(id)?.map_or(default, u32::from_le_bytes))
    }

    /// A `u64` (default 0).
    pub fn u64(&self, id: usize) -> Result<u64, Error> {
        Ok(self.scalar::<8>(id)?.map_or(0, u64::from_le_bytes))
    }

    pub fn f32(&self, id: usize, default: f32) -> Result<f32, Error> {
        Ok(self.scalar::<4>(id)?.map_or(default, f32::from_le_bytes))
    }

    /// The sub-table in field `id`.
    pub fn table(&self, id: usize, what: &'static str) -> Result<Option<Table<'a>>, Error> {
        match self.field(id)? {
            Some(at) => Table::at(self.buf, follow(self.buf, at, what)?, what).map(Some),
            None => Ok(None),
        }
    }

    /// The vector in field `id`: its first element's position and its length.
    fn vector(
        &self,
        id: usize,
        elem: usize,
        what: &'static str,
    ) -> Result<Option<(usize, usize)>, Error> {
        let Some(at) = self.field(id)? else {
            return Ok(None);
        };
        let start = follow(self.buf, at, what)?;
        let len = u32_at(self.buf, start, what)? as usize;
        let data = start + 4;
        len.checked_mul(elem)
            .and_then(|n| data.checked_add(n))
            .filter(|&end| end <= self.buf.len())
            .ok_or(Error::OutOfBounds {
                what,
                at: start,
                len: self.buf.len(),
            })?;
        Ok(Some((data, len)))
    }

    /// A vector of bytes (absent: empty).
    pub fn bytes(&self, id: usize, what: &'static str) -> Result<&'a [u8], Error> {
        Ok(match self.vector(id, 1, what)? {
            Some((at, len)) => &self.buf[at..at + len],
            None => &[],
        })
    }

    /// A string (absent: empty). Invalid UTF-8 is replaced, as names are only for people.
    pub fn string(&self, id: usize, what: &'static str) -> Result<String, Error> {
        Ok(String::from_utf8_lossy(self.bytes(id, what)?).into_owned())
    }

    fn fixed<const N: usize, T>(
        &self,
        id: usize,
        what: &'static str,
        f: fn([u8; N]) -> T,
    ) -> Result<Vec<T>, Error> {
        let Some((at, len)) = self.vector(id, N, what)? else {
            return Ok(Vec::new());
        };
        (0..len)
            .map(|i| bytes::<N>(self.buf, at + i * N, what).map(f))
            .collect()
    }

    pub fn i32s(&self, id: usize, what: &'static str) -> Result<Vec<i32>, Error> {
        self.fixed(id, what, i32::from_le_bytes)
    }

    pub fn i64s(&self, id: usize, what: &'static str) -> Result<Vec<i64>, Error> {
        self.fixed(id, what, i64::from_le_bytes)
    }

    pub fn f32s(&self, id: usize, what: &'static str) -> Result<Vec<f32>, Error> {
        self.fixed(id, what, f32::from_le_bytes)
    }

    /// A vector of tables (absent: empty).
    pub fn tables(&self, id: usize, what: &'static str) -> Result<Vec<Table<'a>>, Error> {
        let Some((at, len)) = self.vector(id, 4, what)? else {
            return Ok(Vec::new());
        };
        (0..len)
            .map(|i| Table::at(self.buf, follow(self.buf, at + 4 * i, what)?, what))
            .collect()
    }
}
