//! `ShmAnnouncement::decode_parameter` and `decode_value` in both
//! endiannesses; whatever decodes must re-encode and decode equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmslot::{Endianness, ShmAnnouncement};

fuzz_target!(|data: &[u8]| {
    for e in [Endianness::Big, Endianness::Little] {
        if let Ok((a, used)) = ShmAnnouncement::decode_parameter(data, e) {
            assert!(used <= data.len() && used % 4 == 0);
            assert_eq!(ShmAnnouncement::decode_value(&data[4..used], e).as_ref(), Ok(&a));
            check_round_trip(&a, e);
        }
        if let Ok(a) = ShmAnnouncement::decode_value(data, e) {
            check_round_trip(&a, e);
        }
    }
});

fn check_round_trip(a: &ShmAnnouncement, e: Endianness) {
    let bytes = a.encode_parameter(e).expect("a decoded announcement encodes");
    assert_eq!(ShmAnnouncement::decode_parameter(&bytes, e), Ok((a.clone(), bytes.len())));
}
