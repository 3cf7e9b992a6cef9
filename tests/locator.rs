//! Locators, SHM addresses, namespace ids and the announcement parameter:
//! golden bytes in both CDR endiannesses, round trips (proptest), every
//! malformed input an error and never a panic.
//!
//! Run: `cargo test --release --test locator` (well under a second;
//! `PROPTEST_CASES=20000` for a deeper run).

use std::net::{Ipv4Addr, Ipv6Addr};

use byteorder::{BigEndian, ByteOrder, LittleEndian};
use proptest::prelude::*;
use shmslot::locator::{
    ANNOUNCEMENT_VERSION, LOCATOR_KIND_INVALID, LOCATOR_KIND_RESERVED, LOCATOR_KIND_SHM, LOCATOR_KIND_UDPV4, LOCATOR_KIND_UDPV6, LOCATOR_SIZE,
    MAX_SEGMENT_NAME, PID_SHMSLOT_ANNOUNCEMENT, SHM_MULTICAST_PORT,
};
use shmslot::{Endianness, Locator, LocatorError, NamespaceFacts, NamespaceId, OverflowPolicy, ShmAddress, ShmAnnouncement};

const BOTH: [Endianness; 2] = [Endianness::Big, Endianness::Little];
const NS: NamespaceId = NamespaceId(0x0123_4567_89ab_cdef);

fn unicast(domain_id: u32) -> ShmAddress {
    ShmAddress { namespace: NS, domain_id, multicast: false }
}

fn put_u16(e: Endianness, b: &mut [u8], v: u16) {
    match e {
        Endianness::Big => BigEndian::write_u16(b, v),
        Endianness::Little => LittleEndian::write_u16(b, v),
    }
}

fn put_u32(e: Endianness, b: &mut [u8], v: u32) {
    match e {
        Endianness::Big => BigEndian::write_u32(b, v),
        Endianness::Little => LittleEndian::write_u32(b, v),
    }
}

// ---------------------------------------------------------------- Locator_t

#[test]
fn udpv4_golden_bytes() {
    let l = Locator::udpv4(Ipv4Addr::new(127, 0, 0, 1), 7400);
    #[rustfmt::skip]
    let be = [0, 0, 0, 1,  0, 0, 0x1c, 0xe8,  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 127, 0, 0, 1];
    #[rustfmt::skip]
    let le = [1, 0, 0, 0,  0xe8, 0x1c, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 127, 0, 0, 1];
    assert_eq!(l.encode(Endianness::Big), be);
    assert_eq!(l.encode(Endianness::Little), le);
    assert_eq!(Locator::decode(&be, Endianness::Big), Ok(l));
    assert_eq!(Locator::decode(&le, Endianness::Little), Ok(l));
    // Read with the wrong byte order, it is another locator.
    assert_ne!(Locator::decode(&be, Endianness::Little), Ok(l));
}

#[test]
fn shm_golden_bytes() {
    let l = Locator::shm(ShmAddress { namespace: NS, domain_id: 7, multicast: true }, SHM_MULTICAST_PORT);
    #[rustfmt::skip]
    let addr = [b'S', b'L', 1, 1,  0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,  0, 0, 0, 7];
    let mut be = vec![b'S', b'H', b'M', b'S', 0, 0, 0xff, 0xff];
    be.extend_from_slice(&addr);
    let mut le = vec![b'S', b'M', b'H', b'S', 0xff, 0xff, 0, 0];
    le.extend_from_slice(&addr);
    assert_eq!(l.encode(Endianness::Big)[..], be[..]);
    assert_eq!(l.encode(Endianness::Little)[..], le[..]);
}

#[test]
fn decode_needs_24_bytes_and_ignores_the_rest() {
    let bytes = Locator::udpv6(Ipv6Addr::LOCALHOST, 1).encode(Endianness::Big);
    for n in 0..LOCATOR_SIZE {
        assert_eq!(
            Locator::decode(&bytes[..n], Endianness::Big),
            Err(LocatorError::Truncated { what: "locator", offset: 0, needed: 24, available: n })
        );
    }
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(&[0xff; 9]);
    assert_eq!(Locator::decode(&longer, Endianness::Big), Ok(Locator::udpv6(Ipv6Addr::LOCALHOST, 1)));
}

#[test]
fn constructors_and_shm_address() {
    assert_eq!(Locator::INVALID, Locator::new(-1, 0, [0; 16]));
    assert_eq!(Locator::udpv6(Ipv6Addr::LOCALHOST, 9).address, Ipv6Addr::LOCALHOST.octets());
    let l = Locator::shm(unicast(3), 5);
    assert!(l.is_shm());
    assert_eq!(l.shm_address(), Ok(unicast(3)));
    let u = Locator::udpv4(Ipv4Addr::LOCALHOST, 5);
    assert!(!u.is_shm());
    assert_eq!(u.shm_address(), Err(LocatorError::NotShm { kind: LOCATOR_KIND_UDPV4 }));
    assert_eq!(Locator::new(LOCATOR_KIND_SHM, 1, [0; 16]).shm_address(), Err(LocatorError::BadMagic { found: [0, 0] }));
    let native = if cfg!(target_endian = "big") { Endianness::Big } else { Endianness::Little };
    assert_eq!(Endianness::native(), native);
}

// ------------------------------------------------------------- ShmAddress

#[test]
fn shm_address_bytes_and_errors() {
    let a = ShmAddress { namespace: NS, domain_id: 0x0102_0304, multicast: false };
    let b = a.to_bytes();
    assert_eq!(b, [b'S', b'L', 1, 0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 1, 2, 3, 4]);
    assert_eq!(ShmAddress::from_bytes(&b), Ok(a));

    let mut bad = b;
    bad[1] = b'X';
    let e = ShmAddress::from_bytes(&bad).unwrap_err();
    assert_eq!(e, LocatorError::BadMagic { found: *b"SX" });
    assert!(e.to_string().contains("\"SX\"") && e.to_string().contains("bytes 0..2"), "{e}");

    let mut bad = b;
    bad[2] = 2;
    let e = ShmAddress::from_bytes(&bad).unwrap_err();
    assert_eq!(e, LocatorError::UnsupportedVersion { found: 2, supported: 1 });
    assert!(e.to_string().contains("version 2"), "{e}");

    for flags in 2..=255u8 {
        let mut bad = b;
        bad[3] = flags;
        assert_eq!(ShmAddress::from_bytes(&bad), Err(LocatorError::ReservedFlags { flags }));
    }
}

// ---------------------------------------------------------- Display/FromStr

#[test]
fn display_each_kind() {
    let hex = "000102030405060708090a0b0c0d0e0f";
    let seq: [u8; 16] = std::array::from_fn(|i| i as u8);
    let cases = [
        (Locator::udpv4(Ipv4Addr::new(127, 0, 0, 1), 7400), "UDPv4:[127.0.0.1]:7400".to_owned()),
        (Locator::new(LOCATOR_KIND_UDPV4, 1, seq), format!("UDPv4:[{hex}]:1")),
        (Locator::udpv6(Ipv6Addr::LOCALHOST, 7400), "UDPv6:[::1]:7400".to_owned()),
        (Locator::udpv6("fe80::1:2".parse().unwrap(), 0), "UDPv6:[fe80::1:2]:0".to_owned()),
        (Locator::shm(ShmAddress { namespace: NS, domain_id: 0, multicast: false }, 3), "SHM:[ns=0123456789abcdef,domain=0]:3".to_owned()),
        (
            Locator::shm(ShmAddress { namespace: NS, domain_id: 0, multicast: true }, SHM_MULTICAST_PORT),
            "SHM:[ns=0123456789abcdef,domain=0,multicast]:65535".to_owned(),
        ),
        (
            Locator::shm(ShmAddress { namespace: NamespaceId(1), domain_id: 4_294_967_295, multicast: false }, 4_294_967_295),
            "SHM:[ns=0000000000000001,domain=4294967295]:4294967295".to_owned(),
        ),
        (Locator::new(LOCATOR_KIND_SHM, 2, seq), format!("SHM:[{hex}]:2")),
        (Locator::INVALID, "INVALID:[00000000000000000000000000000000]:0".to_owned()),
        (Locator::new(LOCATOR_KIND_RESERVED, 1, seq), format!("RESERVED:[{hex}]:1")),
        (Locator::new(12345, 7400, seq), format!("KIND(12345):[{hex}]:7400")),
        (Locator::new(-7, 1, seq), format!("KIND(-7):[{hex}]:1")),
        (Locator::new(i32::MIN, 1, seq), format!("KIND(-2147483648):[{hex}]:1")),
    ];
    for (l, s) in cases {
        assert_eq!(l.to_string(), s);
        assert_eq!(s.parse::<Locator>(), Ok(l), "{s}");
    }
    assert_eq!(NamespaceId(0x1234).to_string(), "0000000000001234");
}

#[test]
fn from_str_accepts_raw_hex_and_kind_numbers() {
    let hex = "00000000000000000000000000000000";
    assert_eq!(format!("UDPv4:[{hex}]:1").parse(), Ok(Locator::udpv4(Ipv4Addr::UNSPECIFIED, 1)));
    assert_eq!(format!("UDPv6:[{hex}]:1").parse(), Ok(Locator::udpv6(Ipv6Addr::UNSPECIFIED, 1)));
    assert_eq!("KIND(1):[00000000000000000000000000000000]:1".parse(), Ok(Locator::udpv4(Ipv4Addr::UNSPECIFIED, 1)));
    let shm = Locator::shm(unicast(9), 4);
    let raw: String = shm.address.iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(format!("SHM:[{raw}]:4").parse(), Ok(shm));
}

#[test]
fn malformed_strings_are_errors() {
    let ns = "0123456789abcdef";
    let zeros = "00000000000000000000000000000000";
    let cases: Vec<(String, usize)> = vec![
        (String::new(), 0),
        ("UDPv4".into(), 0),
        ("udpv4:[127.0.0.1]:1".into(), 0),
        ("TCPv4:[127.0.0.1]:1".into(), 0),
        ("UDPv4:127.0.0.1:7400".into(), 6),
        ("UDPv4:[127.0.0.1:7400".into(), 7),
        ("UDPv4:[127.0.0.1]7400".into(), 17),
        ("UDPv4:[127.0.0.1]:".into(), 18),
        ("UDPv4:[127.0.0.1]:+7400".into(), 18),
        ("UDPv4:[127.0.0.1]: 7400".into(), 18),
        ("UDPv4:[127.0.0.1]:7400 ".into(), 18),
        ("UDPv4:[127.0.0.1]:4294967296".into(), 18),
        ("UDPv4:[127.0.0.256]:1".into(), 7),
        ("UDPv4:[::1]:1".into(), 7),
        ("UDPv4:[]:1".into(), 7),
        ("UDPv6:[1.2.3.4]:1".into(), 7),
        ("UDPv6:[::1]]:1".into(), 11),
        (format!("KIND(x):[{zeros}]:1"), 5),
        (format!("KIND():[{zeros}]:1"), 5),
        (format!("KIND(+1):[{zeros}]:1"), 5),
        (format!("KIND(2147483648):[{zeros}]:1"), 5),
        (format!("KIND(1:[{zeros}]:1"), 0),
        ("INVALID:[00]:0".into(), 9),
        (format!("INVALID:[{}g]:0", &zeros[1..]), 9),
        ("SHM:[]:1".into(), 5),
        ("SHM:[ns=0123,domain=0]:1".into(), 8),
        ("SHM:[ns=0123456789abcdeg,domain=0]:1".into(), 8),
        ("SHM:[ns=+123456789abcdef,domain=0]:1".into(), 8),
        (format!("SHM:[ns={ns}]:1"), 8),
        (format!("SHM:[ns={ns},dom=0]:1"), 25),
        (format!("SHM:[ns={ns},domain=]:1"), 32),
        (format!("SHM:[ns={ns},domain=-1]:1"), 32),
        (format!("SHM:[ns={ns},domain=0,broadcast]:1"), 34),
        (format!("SHM:[ns={ns},domain=0,multicast,x]:1"), 34),
    ];
    for (s, at) in cases {
        match s.parse::<Locator>() {
            Err(e @ LocatorError::Parse { .. }) => {
                let LocatorError::Parse { ref input, at: found, .. } = e else { unreachable!() };
                assert_eq!(input, &s);
                assert_eq!(found, at, "{s:?}: {e}");
                let msg = e.to_string();
                assert!(msg.contains(&format!("{s:?}")) && msg.contains(&format!("at byte {at}")), "{msg}");
            }
            other => panic!("{s:?} parsed as {other:?}"),
        }
    }
}

// ------------------------------------------------------------ namespace id

#[test]
fn namespace_facts_of_this_process() {
    let facts = NamespaceFacts::current().expect("NamespaceFacts::current");
    assert!(!facts.boot_id.is_empty() && facts.boot_id.trim() == facts.boot_id, "{facts:?}");
    assert!(facts.ipc_namespace.starts_with("ipc:["), "{facts:?}");
    assert_eq!(NamespaceFacts::current().unwrap(), facts);
    assert_eq!(NamespaceId::current().unwrap(), facts.id());
}

fn sample_facts() -> NamespaceFacts {
    NamespaceFacts {
        boot_id: "0f2c3d4e-5a6b-4c7d-8e9f-a0b1c2d3e4f5".into(),
        ipc_namespace: "ipc:[4026531839]".into(),
        shm_device: 24,
        shm_inode: 1,
        euid: 1000,
    }
}

#[test]
fn namespace_id_is_stable_and_sees_every_field() {
    let f = sample_facts();
    // Computed independently (FNV-1a 64 over the length-prefixed fields): a
    // change of the hash is a change of every namespace id on the wire.
    assert_eq!(f.id(), NamespaceId(0x41a2_5072_731a_1391));
    assert_eq!(f.id(), f.clone().id());
    let changed = [
        NamespaceFacts { boot_id: "0f2c3d4e-5a6b-4c7d-8e9f-a0b1c2d3e4f6".into(), ..f.clone() },
        NamespaceFacts { ipc_namespace: "ipc:[4026532000]".into(), ..f.clone() },
        NamespaceFacts { shm_device: 25, ..f.clone() },
        NamespaceFacts { shm_inode: 2, ..f.clone() },
        NamespaceFacts { euid: 1001, ..f.clone() },
        NamespaceFacts { shm_device: 1, shm_inode: 24, ..f.clone() },
    ];
    for c in &changed {
        assert_ne!(c.id(), f.id(), "{c:?}");
    }
    // Bytes cannot move across a field boundary.
    let a = NamespaceFacts { boot_id: "ab".into(), ipc_namespace: "c".into(), ..f.clone() };
    let b = NamespaceFacts { boot_id: "a".into(), ipc_namespace: "bc".into(), ..f };
    assert_ne!(a.id(), b.id());
}

// ------------------------------------------------------------ announcement

fn sample_announcement() -> ShmAnnouncement {
    ShmAnnouncement {
        locator: Locator::shm(unicast(7), 3),
        slot_count: 16,
        slot_capacity: 1024,
        policy: OverflowPolicy::DropOldest,
        segment: "abc".into(),
    }
}

#[rustfmt::skip]
const GOLDEN_LE: [u8; 52] = [
    0x53, 0x81, 48, 0,                                   // pid 0x8153, length 48
    1, 0, 0, 0,                                          // version, flags, reserved
    b'S', b'M', b'H', b'S', 3, 0, 0, 0,                  // kind, port
    b'S', b'L', 1, 0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 0, 0, 7,
    16, 0, 0, 0,  0, 4, 0, 0,  2, 0, 0, 0,               // slots, capacity, policy
    4, 0, 0, 0,  b'a', b'b', b'c', 0,                    // name
];

#[rustfmt::skip]
const GOLDEN_BE: [u8; 52] = [
    0x81, 0x53, 0, 48,
    1, 0, 0, 0,
    b'S', b'H', b'M', b'S', 0, 0, 0, 3,
    b'S', b'L', 1, 0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 0, 0, 7,
    0, 0, 0, 16,  0, 0, 4, 0,  0, 0, 0, 2,
    0, 0, 0, 4,  b'a', b'b', b'c', 0,
];

fn golden(e: Endianness) -> Vec<u8> {
    match e {
        Endianness::Big => GOLDEN_BE.to_vec(),
        Endianness::Little => GOLDEN_LE.to_vec(),
    }
}

#[test]
fn announcement_golden_bytes() {
    let a = sample_announcement();
    for e in BOTH {
        assert_eq!(a.encode_parameter(e).unwrap(), golden(e), "{e:?}");
        assert_eq!(ShmAnnouncement::decode_parameter(&golden(e), e), Ok((a.clone(), 52)));
        assert_eq!(ShmAnnouncement::decode_value(&golden(e)[4..], e), Ok(a.clone()));
    }
    // Bytes after the parameter are not part of it.
    let mut more = GOLDEN_LE.to_vec();
    more.extend_from_slice(&[1, 0, 0, 0]);
    assert_eq!(ShmAnnouncement::decode_parameter(&more, Endianness::Little), Ok((a.clone(), 52)));
    // A longer value (fields appended by a later writer) is accepted.
    let mut ext = GOLDEN_LE.to_vec();
    ext[2] = 52;
    ext.extend_from_slice(&[9, 9, 9, 9]);
    assert_eq!(ShmAnnouncement::decode_parameter(&ext, Endianness::Little), Ok((a, 56)));
}

#[test]
fn announcement_name_lengths_and_padding() {
    for len in [0, 1, 2, 3, 4, 5, 254, 255] {
        let a = ShmAnnouncement { segment: "n".repeat(len), ..sample_announcement() };
        for e in BOTH {
            let bytes = a.encode_parameter(e).unwrap();
            assert_eq!(bytes.len() % 4, 0);
            assert_eq!(bytes.len(), 4 + (44 + len + 1).div_ceil(4) * 4);
            assert_eq!(ShmAnnouncement::decode_parameter(&bytes, e), Ok((a.clone(), bytes.len())));
        }
    }
}

#[test]
fn announcement_encode_refusals() {
    let e = Endianness::Little;
    let long = ShmAnnouncement { segment: "x".repeat(MAX_SEGMENT_NAME + 1), ..sample_announcement() };
    assert_eq!(long.encode_parameter(e), Err(LocatorError::NameTooLong { length: 256, max: 255 }));
    let nul = ShmAnnouncement { segment: "ab\0c".into(), ..sample_announcement() };
    assert_eq!(nul.encode_parameter(e), Err(LocatorError::NameContainsNul { at: 2 }));
    let udp = ShmAnnouncement { locator: Locator::udpv4(Ipv4Addr::LOCALHOST, 1), ..sample_announcement() };
    assert_eq!(udp.encode_parameter(e), Err(LocatorError::NotShm { kind: LOCATOR_KIND_UDPV4 }));
    let raw = ShmAnnouncement { locator: Locator::new(LOCATOR_KIND_SHM, 1, [0; 16]), ..sample_announcement() };
    assert_eq!(raw.encode_parameter(e), Err(LocatorError::BadMagic { found: [0, 0] }));
}

#[test]
fn announcement_truncated_at_every_length() {
    let a = ShmAnnouncement { segment: "/shmslot.1000.0123456789abcdef".into(), ..sample_announcement() };
    for e in BOTH {
        let bytes = a.encode_parameter(e).unwrap();
        for n in 0..bytes.len() {
            let r = ShmAnnouncement::decode_parameter(&bytes[..n], e);
            assert!(matches!(r, Err(LocatorError::Truncated { .. })), "{n}: {r:?}");
        }
        let value = &bytes[4..];
        let needed = 44 + a.segment.len() + 1; // padding is not required in decode_value
        for n in 0..needed {
            let r = ShmAnnouncement::decode_value(&value[..n], e);
            assert!(matches!(r, Err(LocatorError::Truncated { .. })), "{n}: {r:?}");
        }
        assert_eq!(ShmAnnouncement::decode_value(&value[..needed], e), Ok(a.clone()));
    }
}

/// Decodes `golden(e)` after `patch`, expecting `want` and a message that
/// mentions `words`.
fn expect_error(patch: impl Fn(Endianness, &mut Vec<u8>), want: LocatorError, words: &[&str]) {
    for e in BOTH {
        let mut b = golden(e);
        patch(e, &mut b);
        let err = ShmAnnouncement::decode_parameter(&b, e).unwrap_err();
        assert_eq!(err, want, "{e:?}");
        let msg = err.to_string();
        for w in words {
            assert!(msg.contains(w), "{msg:?} should mention {w:?}");
        }
    }
}

#[test]
fn announcement_malformed() {
    expect_error(|e, b| put_u16(e, &mut b[0..2], 0x8001), LocatorError::WrongPid { found: 0x8001, expected: PID_SHMSLOT_ANNOUNCEMENT }, &["0x8001", "0x8153"]);
    expect_error(|e, b| put_u16(e, &mut b[2..4], 46), LocatorError::UnalignedLength { length: 46 }, &["46", "multiple of 4"]);
    expect_error(
        |e, b| put_u16(e, &mut b[2..4], 52),
        LocatorError::Truncated { what: "parameter value", offset: 4, needed: 52, available: 48 },
        &["byte 4", "52", "48"],
    );
    expect_error(
        |e, b| put_u16(e, &mut b[2..4], 0xfffc),
        LocatorError::Truncated { what: "parameter value", offset: 4, needed: 0xfffc, available: 48 },
        &["65532"],
    );
    expect_error(|_, b| b[4] = 2, LocatorError::AnnouncementVersion { offset: 4, found: 2, supported: ANNOUNCEMENT_VERSION }, &["version 2", "byte 4"]);
    expect_error(|_, b| b[5] = 0x80, LocatorError::ReservedNonZero { field: "announcement flags", offset: 5, found: 0x80 }, &["flags", "byte 5"]);
    expect_error(|e, b| put_u16(e, &mut b[6..8], 1), LocatorError::ReservedNonZero { field: "announcement reserved u16", offset: 6, found: 1 }, &["reserved", "byte 6"]);
    expect_error(
        |e, b| put_u32(e, &mut b[8..12], LOCATOR_KIND_UDPV6 as u32),
        LocatorError::BadAnnouncedLocator { offset: 8, error: Box::new(LocatorError::NotShm { kind: LOCATOR_KIND_UDPV6 }) },
        &["byte 8", "kind 2"],
    );
    expect_error(
        |_, b| b[16] = b'X',
        LocatorError::BadAnnouncedLocator { offset: 8, error: Box::new(LocatorError::BadMagic { found: *b"XL" }) },
        &["byte 8", "magic"],
    );
    expect_error(
        |_, b| b[18] = 9,
        LocatorError::BadAnnouncedLocator { offset: 8, error: Box::new(LocatorError::UnsupportedVersion { found: 9, supported: 1 }) },
        &["version 9"],
    );
    expect_error(
        |_, b| b[19] = 2,
        LocatorError::BadAnnouncedLocator { offset: 8, error: Box::new(LocatorError::ReservedFlags { flags: 2 }) },
        &["flags 0x02"],
    );
    for p in [0, 3, u32::MAX] {
        expect_error(|e, b| put_u32(e, &mut b[40..44], p), LocatorError::UnknownPolicy { offset: 40, found: p }, &["policy", "byte 40"]);
    }
    for len in [0, 257, u32::MAX] {
        expect_error(
            |e, b| put_u32(e, &mut b[44..48], len),
            LocatorError::SegmentNameLength { offset: 44, length: len, max: 256 },
            &["byte 44", &len.to_string()],
        );
    }
    expect_error(
        |e, b| put_u32(e, &mut b[44..48], 5),
        LocatorError::Truncated { what: "segment name", offset: 48, needed: 5, available: 4 },
        &["segment name", "byte 48"],
    );
    expect_error(|_, b| b[51] = b'd', LocatorError::SegmentNameNotTerminated { offset: 51, found: b'd' }, &["byte 51", "NUL"]);
    expect_error(|_, b| b[49] = 0, LocatorError::SegmentNameInteriorNul { offset: 49 }, &["byte 49"]);
    expect_error(|_, b| b[50] = 0xff, LocatorError::SegmentNameUtf8 { offset: 50 }, &["UTF-8", "byte 50"]);
    // decode_value reports offsets from the start of the value.
    let mut v = GOLDEN_LE[4..].to_vec();
    v[46] = 0xc3; // a lone lead byte
    assert_eq!(ShmAnnouncement::decode_value(&v, Endianness::Little), Err(LocatorError::SegmentNameUtf8 { offset: 46 }));
}

// ---------------------------------------------------------------- proptest

fn endianness() -> impl Strategy<Value = Endianness> {
    prop_oneof![Just(Endianness::Big), Just(Endianness::Little)]
}

fn shm_address() -> impl Strategy<Value = ShmAddress> {
    (any::<u64>(), any::<u32>(), any::<bool>()).prop_map(|(ns, domain_id, multicast)| ShmAddress { namespace: NamespaceId(ns), domain_id, multicast })
}

fn locator() -> impl Strategy<Value = Locator> {
    let named = prop_oneof![
        Just(LOCATOR_KIND_INVALID),
        Just(LOCATOR_KIND_RESERVED),
        Just(LOCATOR_KIND_UDPV4),
        Just(LOCATOR_KIND_UDPV6),
        Just(LOCATOR_KIND_SHM)
    ];
    prop_oneof![
        (any::<i32>(), any::<u32>(), any::<[u8; 16]>()).prop_map(|(k, p, a)| Locator::new(k, p, a)),
        (named, any::<u32>(), any::<[u8; 16]>()).prop_map(|(k, p, a)| Locator::new(k, p, a)),
        (any::<[u8; 4]>(), any::<u32>()).prop_map(|(ip, p)| Locator::udpv4(ip.into(), p)),
        (shm_address(), any::<u32>()).prop_map(|(a, p)| Locator::shm(a, p)),
    ]
}

/// Names of 0..=255 bytes without NUL: ASCII, or any chars cut to fit.
fn segment_name() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(1u8..=0x7f, 0..=MAX_SEGMENT_NAME).prop_map(|b| String::from_utf8(b).unwrap()),
        proptest::collection::vec(any::<char>(), 0..=MAX_SEGMENT_NAME).prop_map(|cs| {
            let mut s = String::new();
            for c in cs.into_iter().filter(|&c| c != '\0') {
                if s.len() + c.len_utf8() > MAX_SEGMENT_NAME {
                    break;
                }
                s.push(c);
            }
            s
        }),
    ]
}

fn announcement() -> impl Strategy<Value = ShmAnnouncement> {
    (shm_address(), any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>(), segment_name()).prop_map(|(a, port, slot_count, slot_capacity, keep, segment)| {
        ShmAnnouncement {
            locator: Locator::shm(a, port),
            slot_count,
            slot_capacity,
            policy: if keep { OverflowPolicy::KeepAll } else { OverflowPolicy::DropOldest },
            segment,
        }
    })
}

proptest! {
    #[test]
    fn locator_encode_decode_round_trip(l in locator(), e in endianness()) {
        prop_assert_eq!(Locator::decode(&l.encode(e), e), Ok(l));
    }

    #[test]
    fn locator_display_from_str_round_trip(l in locator()) {
        let s = l.to_string();
        prop_assert_eq!(s.parse::<Locator>(), Ok(l), "{}", s);
    }

    #[test]
    fn shm_address_round_trip(a in shm_address()) {
        prop_assert_eq!(ShmAddress::from_bytes(&a.to_bytes()), Ok(a));
        prop_assert_eq!(Locator::shm(a, 1).shm_address(), Ok(a));
    }

    #[test]
    fn announcement_round_trip(a in announcement(), e in endianness()) {
        let bytes = a.encode_parameter(e).unwrap();
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(ShmAnnouncement::decode_parameter(&bytes, e), Ok((a.clone(), bytes.len())));
        prop_assert_eq!(ShmAnnouncement::decode_value(&bytes[4..], e), Ok(a));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), e in endianness()) {
        if let Ok(l) = Locator::decode(&bytes, e) {
            let _ = l.shm_address();
            prop_assert_eq!(l.to_string().parse::<Locator>(), Ok(l));
        }
        if let Ok((a, used)) = ShmAnnouncement::decode_parameter(&bytes, e) {
            prop_assert!(used <= bytes.len());
            prop_assert_eq!(ShmAnnouncement::decode_value(&bytes[4..used], e), Ok(a));
        }
        let _ = ShmAnnouncement::decode_value(&bytes, e);
    }

    /// Random values written over a valid announcement: nearer misses than
    /// random bytes.
    #[test]
    fn mutated_announcements_never_panic(
        a in announcement(),
        e in endianness(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = a.encode_parameter(e).unwrap();
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        let n = cut.index(bytes.len() + 1);
        for b in [&bytes[..], &bytes[..n]] {
            if let Ok((d, _)) = ShmAnnouncement::decode_parameter(b, e) {
                let again = d.encode_parameter(e).unwrap();
                prop_assert_eq!(ShmAnnouncement::decode_parameter(&again, e), Ok((d, again.len())));
            }
            let _ = ShmAnnouncement::decode_value(b, e);
        }
    }

    #[test]
    fn random_strings_never_panic(cs in proptest::collection::vec(any::<char>(), 0..60)) {
        let s: String = cs.into_iter().collect();
        if let Ok(l) = s.parse::<Locator>() {
            prop_assert_eq!(l.to_string().parse::<Locator>(), Ok(l));
        }
    }

    /// One character of a valid string replaced, inserted or removed.
    #[test]
    fn edited_strings_never_panic(l in locator(), at in any::<prop::sample::Index>(), c in any::<char>(), op in 0..3u8) {
        let mut chars: Vec<char> = l.to_string().chars().collect();
        let i = at.index(chars.len());
        match op {
            0 => chars[i] = c,
            1 => chars.insert(i, c),
            _ => { chars.remove(i); }
        }
        let s: String = chars.into_iter().collect();
        match s.parse::<Locator>() {
            Ok(p) => prop_assert_eq!(p.to_string().parse::<Locator>(), Ok(p)),
            Err(e) => prop_assert!(matches!(e, LocatorError::Parse { .. }), "{:?}", e),
        }
    }
}
