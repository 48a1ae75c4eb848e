//! A stable content hash for recognising data and files again: 64-bit FNV-1a. Not
//! cryptographic; it guards against accidents (other data, a damaged file), not against
//! forgery. The standard library's hasher is not used because its output may change between
//! Rust releases, and a checkpoint must be recognised by a later build.

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// An FNV-1a hash being computed.
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self(OFFSET)
    }
}

impl Fnv1a64 {
    /// Hash `bytes` after what was hashed so far.
    pub fn update(mut self, bytes: &[u8]) -> Self {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(PRIME);
        }
        self
    }

    /// The hash, as 16 hex digits.
    pub fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The FNV-1a hash of `bytes`, as 16 hex digits.
pub fn fnv1a64_hex(bytes: &[u8]) -> String {
    Fnv1a64::default().update(bytes).hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_test_vectors() {
        assert_eq!(fnv1a64_hex(b""), "cbf29ce484222325");
        assert_eq!(fnv1a64_hex(b"a"), "af63dc4c8601ec8c");
        assert_eq!(fnv1a64_hex(b"foobar"), "85944171f73967e8");
        // Hashing in pieces is hashing the whole.
        assert_eq!(
            Fnv1a64::default().update(b"foo").update(b"bar").hex(),
            fnv1a64_hex(b"foobar")
        );
    }
}
