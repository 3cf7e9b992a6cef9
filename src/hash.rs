//! FNV-1a, the crate's one non-cryptographic hash: namespace ids, GUID
//! prefixes, port incarnations and type hashes all use it, in the width
//! their field has. (Not for anything an attacker must not steer: those
//! values identify, they do not authenticate.)

const OFFSET_32: u32 = 0x811c_9dc5;
const PRIME_32: u32 = 0x0100_0193;
pub(crate) const OFFSET_64: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME_64: u64 = 0x0000_0100_0000_01b3;
const OFFSET_128: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const PRIME_128: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

/// 32-bit FNV-1a of `bytes`.
pub(crate) fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(OFFSET_32, |h, &b| (h ^ u32::from(b)).wrapping_mul(PRIME_32))
}

/// A 64-bit FNV-1a state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv1a64(pub(crate) u64);

impl Fnv1a64 {
    /// From the standard offset basis.
    pub(crate) fn new() -> Self {
        Self(OFFSET_64)
    }

    /// Hashes `b` into the state.
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        for &x in b {
            self.0 = (self.0 ^ u64::from(x)).wrapping_mul(PRIME_64);
        }
        self
    }

    /// One length-prefixed field (its length as u64 little-endian first), so
    /// no bytes can move from one field to the next.
    pub(crate) fn field(&mut self, b: &[u8]) -> &mut Self {
        self.bytes(&(b.len() as u64).to_le_bytes());
        self.bytes(b)
    }
}

/// 128-bit FNV-1a of `bytes` (a `const fn`, for type hashes in constants).
pub(crate) const fn fnv1a_128(bytes: &[u8]) -> u128 {
    fnv1a_128_from(OFFSET_128, bytes)
}

/// 128-bit FNV-1a of `bytes`, continuing from state `h`.
pub(crate) const fn fnv1a_128_from(mut h: u128, bytes: &[u8]) -> u128 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u128;
        h = h.wrapping_mul(PRIME_128);
        i += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published FNV-1a test vectors ("" and "a"), so a typo in a
    /// constant cannot hide.
    #[test]
    fn known_vectors() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(Fnv1a64::new().bytes(b"").0, 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv1a64::new().bytes(b"a").0, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_128(b""), 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228_cb69_6f1a_8caf_7891_2b70_4e4a_8964);
    }

    /// A type hash lives in segments and is compared across builds and
    /// processes: its value for a given type may never change.
    #[test]
    fn type_hash_values_are_pinned() {
        assert_eq!(crate::type_hash("shmslot::Tick", 48, 8), [196, 10, 219, 62, 22, 115, 119, 193, 164, 215, 0, 178, 12, 189, 117, 118]);
    }
}
