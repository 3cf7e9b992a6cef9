//! `FlinkInfo::decode`; whatever decodes must encode back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmslot::FlinkInfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = FlinkInfo::decode(data) {
        let bytes = info.encode().expect("a decoded flink file encodes");
        assert_eq!(FlinkInfo::decode(&bytes).as_ref(), Ok(&info));
    }
});
