//! `Locator::decode` in both endiannesses, `shm_address`, and `FromStr` on
//! the input as UTF-8; every decoded locator must print and parse back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmslot::{Endianness, Locator};

fuzz_target!(|data: &[u8]| {
    for e in [Endianness::Big, Endianness::Little] {
        if let Ok(l) = Locator::decode(data, e) {
            assert_eq!(Locator::decode(&l.encode(e), e), Ok(l));
            if let Ok(a) = l.shm_address() {
                assert_eq!(Locator::shm(a, l.port), l);
            }
            let s = l.to_string();
            assert_eq!(s.parse::<Locator>(), Ok(l), "{s}");
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(l) = s.parse::<Locator>() {
            let again = l.to_string();
            assert_eq!(again.parse::<Locator>(), Ok(l), "{s:?} -> {again}");
        }
    }
});
