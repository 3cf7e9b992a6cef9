//! RTPS locators for shared memory: the `Locator_t` wire form, the same-host
//! namespace id, the address of a shared-memory locator, and the vendor
//! parameter that announces a segment in discovery.
//!
//! # `Locator_t` (24 bytes)
//!
//! ```text
//!   0  kind i32           CDR endianness of the message (CDR_BE / CDR_LE)
//!   4  port u32           CDR endianness of the message
//!   8  address [u8; 16]   octets: no byte order
//! ```
//!
//! # Address of a shared-memory locator
//!
//! A locator of kind [`LOCATOR_KIND_SHM`] carries a [`ShmAddress`] in its 16
//! address octets. Multi-byte fields are **big-endian whatever the CDR
//! endianness** of the message: the address is an opaque octet array to every
//! RTPS stack, which copies it without swapping.
//!
//! | bytes    | field        | value                                              |
//! |----------|--------------|----------------------------------------------------|
//! | `0..2`   | magic        | `b"SL"` ([`SHM_ADDRESS_MAGIC`])                    |
//! | `2`      | version      | `1` ([`SHM_ADDRESS_VERSION`])                      |
//! | `3`      | flags        | bit 0: multicast; bits 1–7 reserved, must be 0     |
//! | `4..12`  | namespace id | [`NamespaceId`], u64 big-endian                    |
//! | `12..16` | domain id    | DDS domain id, u32 big-endian                      |
//!
//! The port of a unicast locator names one participant's segment: its low 16
//! bits are the port number (1 to 4096), its high 16 bits the incarnation of
//! the segment (a sender refuses a segment of another incarnation, so a dead
//! participant's stale locator never reaches the next owner of its port
//! number). The domain-wide multicast locator has the multicast flag set and
//! port [`SHM_MULTICAST_PORT`].
//!
//! # Same-host namespace id
//!
//! Two processes can use each other's shared memory only if they run on the
//! same kernel boot, in the same IPC namespace, see the same `/dev/shm`
//! filesystem, and (our own rule) have the same effective uid. A hostname is
//! not enough: two containers may share a hostname but have separate
//! `/dev/shm`. [`NamespaceFacts`] gathers these facts and [`NamespaceFacts::id`]
//! hashes them into a [`NamespaceId`]; a remote SHM locator is worth trying
//! only when its namespace id equals ours. The id is a 64-bit FNV-1a hash —
//! an identity hint, not an authenticator: attaching still goes through the
//! segment's own checks and file permissions.
//!
//! # Announcement parameter ([`PID_SHMSLOT_ANNOUNCEMENT`])
//!
//! The whole parameter is `pid u16, length u16, value`; `pid`, `length` and
//! every multi-byte value field are in the CDR endianness of the parameter
//! list. Offsets are from the start of the value:
//!
//! | bytes       | field         | value                                                   |
//! |-------------|---------------|---------------------------------------------------------|
//! | `0`         | version       | `1` ([`ANNOUNCEMENT_VERSION`])                          |
//! | `1`         | flags         | `0`                                                     |
//! | `2..4`      | reserved u16  | `0`                                                     |
//! | `4..28`     | locator       | `Locator_t`, kind [`LOCATOR_KIND_SHM`]                  |
//! | `28..32`    | slot_count    | u32                                                     |
//! | `32..36`    | slot_capacity | u32, bytes per slot                                     |
//! | `36..40`    | policy        | u32, `OverflowPolicy as u32` (1 KeepAll, 2 DropOldest)  |
//! | `40..44`    | name length   | u32, bytes of the name **including** its NUL, 1..=256   |
//! | `44..`      | segment name  | UTF-8, then NUL, then zero padding to a multiple of 4   |
//!
//! A version 1 reader ignores bytes after the padded name, so a later writer
//! may append fields without changing the version (RTPS parameters are
//! extensible that way); the version changes only for an incompatible layout.

use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::str::FromStr;

use byteorder::{BigEndian, ByteOrder, LittleEndian};

use crate::backend::OverflowPolicy;
use crate::hash::Fnv1a64;

/// Kind of an invalid locator.
pub const LOCATOR_KIND_INVALID: i32 = -1;
/// Reserved locator kind.
pub const LOCATOR_KIND_RESERVED: i32 = 0;
/// UDP over IPv4: the address is 12 zero octets and the 4 octets of the IPv4
/// address.
pub const LOCATOR_KIND_UDPV4: i32 = 1;
/// UDP over IPv6: the address is the 16 octets of the IPv6 address.
pub const LOCATOR_KIND_UDPV6: i32 = 2;
/// shmslot's shared-memory locator kind: the octets `"SHMS"` read big-endian.
///
/// RTPS defines only the kinds −1, 0, 1 and 2 and keeps no registry of
/// others, so each vendor picks its own. Kinds already in use by others
/// (for shared memory unless noted): 16 (Fast DDS 2.x, Cyclone DDS
/// iceoryx/PSMX), 19 (Fast DDS 3.x: `16 + FASTDDS_VERSION_MAJOR`),
/// `0x0100_0000` (RTI Connext), `0x0200_0000` (Cyclone DDS), `0x4fff_0000`
/// (Cyclone DDS: its internal UDPv4 multicast-generator kind); also 4 and 8
/// (TCPv4/TCPv6, Fast DDS and Cyclone), 8–11 and `0x0100_0001`,
/// `0x0100_1001` (RTI TCP/TLS/WAN), `0x8000` (Cyclone raw Ethernet).
/// `0x5348_4D53` is far from all of them, so a stack that does not know
/// shmslot sees an unknown kind and ignores the locator instead of
/// misreading it as its own shared memory, and it is recognisable in a hex
/// dump of a big-endian message. The kind alone is not trusted: the address
/// starts with its own magic and version ([`ShmAddress::from_bytes`]).
pub const LOCATOR_KIND_SHM: i32 = 0x5348_4D53;
/// Port of an invalid locator.
pub const LOCATOR_PORT_INVALID: u32 = 0;
/// Size of an encoded `Locator_t`.
pub const LOCATOR_SIZE: usize = 24;
/// Port of the domain-wide multicast SHM locator. A unicast port carries
/// its number, 1 to 4096 ([`MAX_PORTS`](crate::transport::MAX_PORTS)), in
/// its low 16 bits and its ring's incarnation in the high 16
/// ([`PORT_NUMBER_MASK`](crate::transport::PORT_NUMBER_MASK)); this one is neither
/// one of them nor [`LOCATOR_PORT_INVALID`] (stacks drop port-0 locators),
/// and it fits the 16 bits some stacks keep of a port.
pub const SHM_MULTICAST_PORT: u32 = 0xFFFF;
/// Magic of a [`ShmAddress`]: its first two octets.
pub const SHM_ADDRESS_MAGIC: [u8; 2] = *b"SL";
/// Version of the [`ShmAddress`] layout this build reads and writes.
pub const SHM_ADDRESS_VERSION: u8 = 1;
/// Vendor-specific parameter id of a [`ShmAnnouncement`].
///
/// Bit `0x8000` makes it vendor-specific: it is only meaningful when the
/// announcing participant's vendor id is understood (other vendors may use
/// the same id for something else). Bit `0x4000` (must-understand) is clear,
/// so a stack that does not know it skips it.
pub const PID_SHMSLOT_ANNOUNCEMENT: u16 = 0x8153;
/// Version of the announcement value layout this build reads and writes.
pub const ANNOUNCEMENT_VERSION: u8 = 1;
/// Longest segment name an announcement carries, in bytes (without the NUL).
pub const MAX_SEGMENT_NAME: usize = 255;

const SHM_FLAG_MULTICAST: u8 = 0x01;
/// Bytes of the announcement value before the segment name's characters.
const ANNOUNCEMENT_FIXED: usize = 44;
/// Offset of the locator in the announcement value.
const ANNOUNCEMENT_LOCATOR_AT: usize = 4;

// The longest announcement value must fit the u16 parameter length.
const _: () = assert!(pad4(ANNOUNCEMENT_FIXED + MAX_SEGMENT_NAME + 1) <= u16::MAX as usize);
const _: () = assert!(ANNOUNCEMENT_LOCATOR_AT + LOCATOR_SIZE + 16 == ANNOUNCEMENT_FIXED);

/// What was wrong with a locator, an SHM address, a locator string or an
/// announcement parameter. Byte offsets are from the start of the slice
/// passed to the function that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocatorError {
    /// The input ends before a field does.
    #[error("truncated: {what} at byte {offset} needs {needed} bytes, only {available} are there")]
    Truncated {
        /// The field that does not fit.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left from `offset`.
        available: usize,
    },
    /// The locator is not a shared-memory locator.
    #[error("locator kind {kind} ({kind:#x}) is not the shmslot shared-memory kind {LOCATOR_KIND_SHM} ({LOCATOR_KIND_SHM:#x})")]
    NotShm {
        /// The kind found.
        kind: i32,
    },
    /// The SHM address does not start with [`SHM_ADDRESS_MAGIC`].
    #[error("SHM locator address: magic \"{}\" at address bytes 0..2, expected \"SL\" (not a shmslot address)", found.escape_ascii())]
    BadMagic {
        /// The two octets found.
        found: [u8; 2],
    },
    /// The SHM address has another layout version.
    #[error("SHM locator address: version {found} at address byte 2, this build reads version {supported}")]
    UnsupportedVersion {
        /// Version found.
        found: u8,
        /// Version this build reads.
        supported: u8,
    },
    /// The SHM address sets flag bits this version does not define.
    #[error("SHM locator address: flags {flags:#04x} at address byte 3 set reserved bits (only bit 0, multicast, is defined)")]
    ReservedFlags {
        /// The flags octet found.
        flags: u8,
    },
    /// A string is not a locator as [`Locator`]'s `Display` prints it.
    #[error("cannot parse locator {input:?} at byte {at}: {reason}")]
    Parse {
        /// The whole string given.
        input: String,
        /// Byte offset in it where the problem is.
        at: usize,
        /// What is wrong there.
        reason: &'static str,
    },
    /// The parameter is not a shmslot announcement.
    #[error("parameter id {found:#06x} at byte 0 is not PID_SHMSLOT_ANNOUNCEMENT ({expected:#06x})")]
    WrongPid {
        /// Parameter id found.
        found: u16,
        /// [`PID_SHMSLOT_ANNOUNCEMENT`].
        expected: u16,
    },
    /// The parameter length is not a multiple of 4.
    #[error("parameter length {length} at byte 2 is not a multiple of 4")]
    UnalignedLength {
        /// The length found.
        length: usize,
    },
    /// The announcement has another layout version.
    #[error("announcement version {found} at byte {offset}, this build reads version {supported}")]
    AnnouncementVersion {
        /// Where the version byte is.
        offset: usize,
        /// Version found.
        found: u8,
        /// [`ANNOUNCEMENT_VERSION`].
        supported: u8,
    },
    /// A field that must be zero is not.
    #[error("{field} at byte {offset} is {found:#x}, must be 0")]
    ReservedNonZero {
        /// Which field.
        field: &'static str,
        /// Where it is.
        offset: usize,
        /// The value found.
        found: u32,
    },
    /// The announced locator is not a valid SHM locator.
    #[error("announced locator at byte {offset}: {error}")]
    BadAnnouncedLocator {
        /// Where the locator starts.
        offset: usize,
        /// What is wrong with it.
        error: Box<LocatorError>,
    },
    /// The announced overflow policy is unknown.
    #[error("announced policy at byte {offset} is {found}, expected 1 (KeepAll) or 2 (DropOldest)")]
    UnknownPolicy {
        /// Where the policy is.
        offset: usize,
        /// The value found.
        found: u32,
    },
    /// The segment name's CDR length is 0 or too large.
    #[error("segment name length {length} at byte {offset} is out of range 1..={max} (the length counts the NUL)")]
    SegmentNameLength {
        /// Where the length is.
        offset: usize,
        /// The length found.
        length: u32,
        /// `MAX_SEGMENT_NAME + 1`.
        max: u32,
    },
    /// The segment name does not end in a NUL.
    #[error("segment name: byte {offset} should be its terminating NUL but is {found:#04x}")]
    SegmentNameNotTerminated {
        /// Where the NUL should be.
        offset: usize,
        /// The byte found.
        found: u8,
    },
    /// The segment name has a NUL before its end.
    #[error("segment name: NUL at byte {offset} before its end")]
    SegmentNameInteriorNul {
        /// Where the NUL is.
        offset: usize,
    },
    /// The segment name is not UTF-8.
    #[error("segment name: invalid UTF-8 at byte {offset}")]
    SegmentNameUtf8 {
        /// Where the first invalid byte is.
        offset: usize,
    },
    /// A segment name too long to announce.
    #[error("segment name of {length} bytes is longer than {max} (MAX_SEGMENT_NAME)")]
    NameTooLong {
        /// Its length in bytes.
        length: usize,
        /// [`MAX_SEGMENT_NAME`].
        max: usize,
    },
    /// A segment name with a NUL cannot be announced (it ends a CDR string).
    #[error("segment name has a NUL at byte {at}; a CDR string cannot hold one")]
    NameContainsNul {
        /// Byte index of the NUL in the name.
        at: usize,
    },
}

/// CDR byte order (`CDR_BE` / `CDR_LE`, or `PL_CDR_BE` / `PL_CDR_LE` for
/// parameter lists) of the numbers in a locator or parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endianness {
    /// Big-endian (`CDR_BE`).
    Big,
    /// Little-endian (`CDR_LE`).
    Little,
}

impl Endianness {
    /// This machine's byte order.
    pub const fn native() -> Self {
        if cfg!(target_endian = "big") {
            Self::Big
        } else {
            Self::Little
        }
    }

    fn read_u16(self, b: &[u8]) -> u16 {
        match self {
            Self::Big => BigEndian::read_u16(b),
            Self::Little => LittleEndian::read_u16(b),
        }
    }

    fn read_u32(self, b: &[u8]) -> u32 {
        match self {
            Self::Big => BigEndian::read_u32(b),
            Self::Little => LittleEndian::read_u32(b),
        }
    }

    fn read_i32(self, b: &[u8]) -> i32 {
        match self {
            Self::Big => BigEndian::read_i32(b),
            Self::Little => LittleEndian::read_i32(b),
        }
    }

    fn write_u16(self, b: &mut [u8], v: u16) {
        match self {
            Self::Big => BigEndian::write_u16(b, v),
            Self::Little => LittleEndian::write_u16(b, v),
        }
    }

    fn write_u32(self, b: &mut [u8], v: u32) {
        match self {
            Self::Big => BigEndian::write_u32(b, v),
            Self::Little => LittleEndian::write_u32(b, v),
        }
    }

    fn write_i32(self, b: &mut [u8], v: i32) {
        match self {
            Self::Big => BigEndian::write_i32(b, v),
            Self::Little => LittleEndian::write_i32(b, v),
        }
    }
}

/// An RTPS `Locator_t`: where a participant or endpoint can be reached.
///
/// Printed and parsed as `KIND:[ADDRESS]:PORT` (see the `Display` impl).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locator {
    /// Transport kind (`LOCATOR_KIND_*`).
    pub kind: i32,
    /// Port; its meaning depends on the kind.
    pub port: u32,
    /// Address octets; their meaning depends on the kind.
    pub address: [u8; 16],
}

impl Locator {
    /// The invalid locator: kind −1, port 0, address zeros.
    pub const INVALID: Locator = Locator::new(LOCATOR_KIND_INVALID, LOCATOR_PORT_INVALID, [0; 16]);

    /// A locator from its three fields.
    pub const fn new(kind: i32, port: u32, address: [u8; 16]) -> Self {
        Self { kind, port, address }
    }

    /// A UDPv4 locator: the address is 12 zero octets and the 4 of `ip`.
    pub fn udpv4(ip: Ipv4Addr, port: u32) -> Self {
        let mut address = [0; 16];
        address[12..].copy_from_slice(&ip.octets());
        Self::new(LOCATOR_KIND_UDPV4, port, address)
    }

    /// A UDPv6 locator.
    pub fn udpv6(ip: Ipv6Addr, port: u32) -> Self {
        Self::new(LOCATOR_KIND_UDPV6, port, ip.octets())
    }

    /// A shared-memory locator. Use port [`SHM_MULTICAST_PORT`] with a
    /// multicast address, a port ≥ 1 with a unicast one.
    pub fn shm(address: ShmAddress, port: u32) -> Self {
        Self::new(LOCATOR_KIND_SHM, port, address.to_bytes())
    }

    /// The 24 wire bytes: kind and port in CDR endianness `e`, then the
    /// address octets.
    pub fn encode(&self, e: Endianness) -> [u8; LOCATOR_SIZE] {
        let mut b = [0; LOCATOR_SIZE];
        e.write_i32(&mut b[0..4], self.kind);
        e.write_u32(&mut b[4..8], self.port);
        b[8..].copy_from_slice(&self.address);
        b
    }

    /// Decodes a locator from the first 24 bytes of `bytes` (more are
    /// ignored). Any kind, port and address is accepted.
    ///
    /// # Errors
    /// [`LocatorError::Truncated`] if `bytes` is shorter than 24.
    pub fn decode(bytes: &[u8], e: Endianness) -> Result<Self, LocatorError> {
        let b = bytes.get(..LOCATOR_SIZE).ok_or(LocatorError::Truncated {
            what: "locator",
            offset: 0,
            needed: LOCATOR_SIZE,
            available: bytes.len(),
        })?;
        let mut address = [0; 16];
        address.copy_from_slice(&b[8..]);
        Ok(Self::new(e.read_i32(&b[0..4]), e.read_u32(&b[4..8]), address))
    }

    /// Whether this is a shmslot shared-memory locator (by kind only).
    pub fn is_shm(&self) -> bool {
        self.kind == LOCATOR_KIND_SHM
    }

    /// The SHM address of a shared-memory locator.
    ///
    /// # Errors
    /// [`LocatorError::NotShm`] for another kind, else the errors of
    /// [`ShmAddress::from_bytes`].
    pub fn shm_address(&self) -> Result<ShmAddress, LocatorError> {
        if !self.is_shm() {
            return Err(LocatorError::NotShm { kind: self.kind });
        }
        ShmAddress::from_bytes(&self.address)
    }
}

/// Prints `KIND:[ADDRESS]:PORT`, as Fast DDS prints locators:
///
/// * `UDPv4:[127.0.0.1]:7400` (32 hex digits if the first 12 octets are not
///   zero);
/// * `UDPv6:[::1]:7400`;
/// * `SHM:[ns=0123456789abcdef,domain=0]:3`,
///   `SHM:[ns=0123456789abcdef,domain=0,multicast]:65535`, or 32 hex digits if
///   the address does not decode;
/// * `INVALID:[<32 hex>]:0`, `RESERVED:[<32 hex>]:0`, and
///   `KIND(12345):[<32 hex>]:7` for any other kind.
///
/// [`FromStr`] parses all of these back to the same locator.
impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, p) = (&self.address, self.port);
        match self.kind {
            LOCATOR_KIND_UDPV4 if a[..12] == [0; 12] => write!(f, "UDPv4:[{}]:{p}", Ipv4Addr::new(a[12], a[13], a[14], a[15])),
            LOCATOR_KIND_UDPV4 => write!(f, "UDPv4:[{}]:{p}", Hex(a)),
            LOCATOR_KIND_UDPV6 => write!(f, "UDPv6:[{}]:{p}", Ipv6Addr::from(*a)),
            LOCATOR_KIND_SHM => match ShmAddress::from_bytes(a) {
                Ok(s) => write!(f, "SHM:[{s}]:{p}"),
                Err(_) => write!(f, "SHM:[{}]:{p}", Hex(a)),
            },
            LOCATOR_KIND_INVALID => write!(f, "INVALID:[{}]:{p}", Hex(a)),
            LOCATOR_KIND_RESERVED => write!(f, "RESERVED:[{}]:{p}", Hex(a)),
            k => write!(f, "KIND({k}):[{}]:{p}", Hex(a)),
        }
    }
}

/// Parses what `Display` prints. Every kind also accepts its address as 32
/// hex digits; `KIND(n)` accepts any `i32`, including the named kinds.
impl FromStr for Locator {
    type Err = LocatorError;

    fn from_str(s: &str) -> Result<Self, LocatorError> {
        let err = |at: usize, reason: &'static str| LocatorError::Parse { input: s.to_owned(), at, reason };
        let (kind_text, rest) = s.split_once(':').ok_or_else(|| err(0, "expected KIND:[ADDRESS]:PORT (no ':' after the kind)"))?;
        let kind = match kind_text {
            "UDPv4" => LOCATOR_KIND_UDPV4,
            "UDPv6" => LOCATOR_KIND_UDPV6,
            "SHM" => LOCATOR_KIND_SHM,
            "INVALID" => LOCATOR_KIND_INVALID,
            "RESERVED" => LOCATOR_KIND_RESERVED,
            _ => {
                let n = kind_text
                    .strip_prefix("KIND(")
                    .and_then(|t| t.strip_suffix(')'))
                    .ok_or_else(|| err(0, "unknown kind (expected UDPv4, UDPv6, SHM, INVALID, RESERVED or KIND(<i32>))"))?;
                parse_i32(n).ok_or_else(|| err(5, "the number in KIND(...) is not a decimal i32"))?
            }
        };
        let addr_at = kind_text.len() + 2;
        let rest = rest.strip_prefix('[').ok_or_else(|| err(addr_at - 1, "expected '[' before the address"))?;
        let (addr_text, rest) = rest.split_once(']').ok_or_else(|| err(addr_at, "no ']' closes the address"))?;
        let port_at = addr_at + addr_text.len() + 2;
        let port_text = rest.strip_prefix(':').ok_or_else(|| err(port_at - 1, "expected ':' and the port after ']'"))?;
        let port = parse_u32(port_text).ok_or_else(|| err(port_at, "the port is not a decimal number 0..=4294967295"))?;
        let address = match parse_hex16(addr_text) {
            Some(raw) => raw,
            None => match kind {
                LOCATOR_KIND_UDPV4 => Locator::udpv4(
                    addr_text.parse().map_err(|_| err(addr_at, "not an IPv4 address (a.b.c.d) or 32 hex digits"))?,
                    0,
                )
                .address,
                LOCATOR_KIND_UDPV6 => addr_text
                    .parse::<Ipv6Addr>()
                    .map_err(|_| err(addr_at, "not an IPv6 address or 32 hex digits"))?
                    .octets(),
                LOCATOR_KIND_SHM => parse_shm_address(addr_text).map_err(|(at, reason)| err(addr_at + at, reason))?.to_bytes(),
                _ => return Err(err(addr_at, "the address is not 32 hex digits")),
            },
        };
        Ok(Locator::new(kind, port, address))
    }
}

/// `ns=<16 hex>,domain=<u32>[,multicast]`; errors are (offset, reason).
fn parse_shm_address(t: &str) -> Result<ShmAddress, (usize, &'static str)> {
    let rest = t.strip_prefix("ns=").ok_or((0, "expected ns=<16 hex digits>,domain=<decimal>[,multicast] or 32 hex digits"))?;
    let (ns_text, rest) = rest.split_once(',').ok_or((3, "expected ',domain=' after the namespace id"))?;
    if ns_text.len() != 16 || !ns_text.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err((3, "the namespace id is not 16 hex digits"));
    }
    let namespace = NamespaceId(u64::from_str_radix(ns_text, 16).map_err(|_| (3, "the namespace id is not 16 hex digits"))?);
    let rest = rest.strip_prefix("domain=").ok_or((20, "expected domain=<decimal> after the namespace id"))?;
    let (domain_text, multicast) = match rest.split_once(',') {
        None => (rest, false),
        Some((d, "multicast")) => (d, true),
        Some((d, _)) => return Err((27 + d.len() + 1, "expected 'multicast' or nothing after the domain id")),
    };
    let domain_id = parse_u32(domain_text).ok_or((27, "the domain id is not a decimal number 0..=4294967295"))?;
    Ok(ShmAddress { namespace, domain_id, multicast })
}

/// A decimal `u32`: digits only (no sign, no spaces).
fn parse_u32(t: &str) -> Option<u32> {
    (!t.is_empty() && t.bytes().all(|c| c.is_ascii_digit())).then(|| t.parse().ok()).flatten()
}

/// A decimal `i32`: an optional `-`, then digits.
fn parse_i32(t: &str) -> Option<i32> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    (!digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())).then(|| t.parse().ok()).flatten()
}

/// 32 hex digits (either case) as 16 octets.
fn parse_hex16(t: &str) -> Option<[u8; 16]> {
    let t = t.as_bytes();
    if t.len() != 32 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0; 16];
    for (o, pair) in out.iter_mut().zip(t.chunks_exact(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// Lowercase hex of the octets.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Identifies a set of processes that can share memory: the hash of their
/// [`NamespaceFacts`]. Printed as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespaceId(pub u64);

impl NamespaceId {
    /// This process's namespace id: `NamespaceFacts::current()?.id()`.
    ///
    /// # Errors
    /// As [`NamespaceFacts::current`].
    pub fn current() -> io::Result<Self> {
        Ok(NamespaceFacts::current()?.id())
    }
}

impl fmt::Display for NamespaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What two processes must have in common to use each other's shared
/// memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceFacts {
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`): differs
    /// between machines and between boots of one machine.
    pub boot_id: String,
    /// The IPC namespace (`readlink /proc/self/ns/ipc`, e.g.
    /// `ipc:[4026531839]`).
    pub ipc_namespace: String,
    /// Device number of `/dev/shm` (`st_dev`): separates containers with a
    /// `/dev/shm` of their own.
    pub shm_device: u64,
    /// Inode number of `/dev/shm` (`st_ino`).
    pub shm_inode: u64,
    /// Effective uid: shmslot segments are owner-only, so only processes of
    /// one user share them.
    pub euid: u32,
}

const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
const IPC_NS_PATH: &str = "/proc/self/ns/ipc";
const SHM_DIR: &str = "/dev/shm";

impl NamespaceFacts {
    /// Reads this process's facts: `/proc/sys/kernel/random/boot_id`
    /// (trimmed), `readlink /proc/self/ns/ipc`, `stat("/dev/shm")` (following
    /// a symbolic link) and `geteuid()`.
    ///
    /// # Errors
    /// The `io::Error` of the file that could not be read, with its path in
    /// the message (`InvalidData` for an empty boot id or a non-UTF-8 link).
    pub fn current() -> io::Result<Self> {
        let at = |path: &str, e: io::Error| io::Error::new(e.kind(), format!("{path}: {e}"));
        let invalid = |path: &str, what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {what}"));
        let boot_id = fs::read_to_string(BOOT_ID_PATH).map_err(|e| at(BOOT_ID_PATH, e))?.trim().to_owned();
        if boot_id.is_empty() {
            return Err(invalid(BOOT_ID_PATH, "empty boot id"));
        }
        let ipc_namespace = fs::read_link(IPC_NS_PATH)
            .map_err(|e| at(IPC_NS_PATH, e))?
            .into_os_string()
            .into_string()
            .map_err(|_| invalid(IPC_NS_PATH, "the link target is not UTF-8"))?;
        let shm = fs::metadata(SHM_DIR).map_err(|e| at(SHM_DIR, e))?;
        // SAFETY: geteuid cannot fail and has no preconditions.
        let euid = unsafe { libc::geteuid() };
        Ok(Self { boot_id, ipc_namespace, shm_device: shm.dev(), shm_inode: shm.ino(), euid })
    }

    /// The namespace id of these facts: FNV-1a 64 over the tag
    /// `"shmslot-namespace-v1"`, `boot_id`, `ipc_namespace` (UTF-8 bytes),
    /// `shm_device`, `shm_inode` (u64 little-endian) and `euid` (u32
    /// little-endian), each preceded by its length as u64 little-endian so no
    /// bytes can move from one field to the next. The same facts give the
    /// same id on every build and platform.
    pub fn id(&self) -> NamespaceId {
        let mut h = Fnv1a64::new();
        h.field(b"shmslot-namespace-v1")
            .field(self.boot_id.as_bytes())
            .field(self.ipc_namespace.as_bytes())
            .field(&self.shm_device.to_le_bytes())
            .field(&self.shm_inode.to_le_bytes())
            .field(&self.euid.to_le_bytes());
        NamespaceId(h.0)
    }
}

/// The address of a shared-memory locator: which host namespace, which DDS
/// domain, unicast or multicast. Layout in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShmAddress {
    /// Namespace of the processes that can reach it.
    pub namespace: NamespaceId,
    /// DDS domain id.
    pub domain_id: u32,
    /// The domain-wide multicast locator (port [`SHM_MULTICAST_PORT`]).
    pub multicast: bool,
}

impl ShmAddress {
    /// The 16 address octets.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0; 16];
        b[0..2].copy_from_slice(&SHM_ADDRESS_MAGIC);
        b[2] = SHM_ADDRESS_VERSION;
        b[3] = if self.multicast { SHM_FLAG_MULTICAST } else { 0 };
        BigEndian::write_u64(&mut b[4..12], self.namespace.0);
        BigEndian::write_u32(&mut b[12..16], self.domain_id);
        b
    }

    /// Decodes the 16 address octets.
    ///
    /// # Errors
    /// [`LocatorError::BadMagic`], [`LocatorError::UnsupportedVersion`] or
    /// [`LocatorError::ReservedFlags`].
    pub fn from_bytes(b: &[u8; 16]) -> Result<Self, LocatorError> {
        if b[0..2] != SHM_ADDRESS_MAGIC {
            return Err(LocatorError::BadMagic { found: [b[0], b[1]] });
        }
        if b[2] != SHM_ADDRESS_VERSION {
            return Err(LocatorError::UnsupportedVersion { found: b[2], supported: SHM_ADDRESS_VERSION });
        }
        if b[3] & !SHM_FLAG_MULTICAST != 0 {
            return Err(LocatorError::ReservedFlags { flags: b[3] });
        }
        Ok(Self {
            namespace: NamespaceId(BigEndian::read_u64(&b[4..12])),
            domain_id: BigEndian::read_u32(&b[12..16]),
            multicast: b[3] & SHM_FLAG_MULTICAST != 0,
        })
    }
}

/// `ns=<16 hex>,domain=<decimal>`, then `,multicast` if set.
impl fmt::Display for ShmAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ns={},domain={}", self.namespace, self.domain_id)?;
        if self.multicast {
            f.write_str(",multicast")?;
        }
        Ok(())
    }
}

/// A participant's announcement of one of its segments, carried in discovery
/// as the vendor parameter [`PID_SHMSLOT_ANNOUNCEMENT`]. Layout in the module
/// docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShmAnnouncement {
    /// The segment's SHM locator.
    pub locator: Locator,
    /// Slots in the ring.
    pub slot_count: u32,
    /// Bytes per slot.
    pub slot_capacity: u32,
    /// The ring's overflow policy.
    pub policy: OverflowPolicy,
    /// Name of the OS shared-memory object (at most [`MAX_SEGMENT_NAME`]
    /// bytes, no NUL).
    pub segment: String,
}

impl ShmAnnouncement {
    /// The whole parameter: pid u16, length u16, value (padded to a multiple
    /// of 4), in CDR endianness `e`.
    ///
    /// # Errors
    /// What decoding would refuse: a locator that is not a valid SHM locator
    /// ([`LocatorError::NotShm`], …), a name longer than [`MAX_SEGMENT_NAME`]
    /// ([`LocatorError::NameTooLong`]) or holding a NUL
    /// ([`LocatorError::NameContainsNul`]).
    pub fn encode_parameter(&self, e: Endianness) -> Result<Vec<u8>, LocatorError> {
        self.locator.shm_address()?;
        let name = self.segment.as_bytes();
        if name.len() > MAX_SEGMENT_NAME {
            return Err(LocatorError::NameTooLong { length: name.len(), max: MAX_SEGMENT_NAME });
        }
        if let Some(at) = name.iter().position(|&c| c == 0) {
            return Err(LocatorError::NameContainsNul { at });
        }
        let value_len = pad4(ANNOUNCEMENT_FIXED + name.len() + 1);
        let mut out = vec![0; 4 + value_len];
        e.write_u16(&mut out[0..2], PID_SHMSLOT_ANNOUNCEMENT);
        e.write_u16(&mut out[2..4], value_len as u16);
        let v = &mut out[4..];
        v[0] = ANNOUNCEMENT_VERSION;
        // v[1] flags and v[2..4] reserved stay zero.
        v[4..28].copy_from_slice(&self.locator.encode(e));
        e.write_u32(&mut v[28..32], self.slot_count);
        e.write_u32(&mut v[32..36], self.slot_capacity);
        e.write_u32(&mut v[36..40], self.policy as u32);
        e.write_u32(&mut v[40..44], name.len() as u32 + 1);
        v[44..44 + name.len()].copy_from_slice(name);
        // The NUL and the padding stay zero.
        Ok(out)
    }

    /// Decodes one parameter from the start of `bytes`; returns it and the
    /// bytes it took (4 + its length). Bytes after it are not looked at.
    ///
    /// # Errors
    /// [`LocatorError::WrongPid`] if the pid is not
    /// [`PID_SHMSLOT_ANNOUNCEMENT`], [`LocatorError::UnalignedLength`],
    /// [`LocatorError::Truncated`] if the length runs past `bytes`, else the
    /// errors of [`decode_value`](Self::decode_value) with offsets from the
    /// start of `bytes`.
    pub fn decode_parameter(bytes: &[u8], e: Endianness) -> Result<(Self, usize), LocatorError> {
        let header = bytes.get(..4).ok_or(LocatorError::Truncated {
            what: "parameter header",
            offset: 0,
            needed: 4,
            available: bytes.len(),
        })?;
        let pid = e.read_u16(&header[0..2]);
        if pid != PID_SHMSLOT_ANNOUNCEMENT {
            return Err(LocatorError::WrongPid { found: pid, expected: PID_SHMSLOT_ANNOUNCEMENT });
        }
        let length = usize::from(e.read_u16(&header[2..4]));
        if length % 4 != 0 {
            return Err(LocatorError::UnalignedLength { length });
        }
        let value = bytes.get(4..4 + length).ok_or(LocatorError::Truncated {
            what: "parameter value",
            offset: 4,
            needed: length,
            available: bytes.len() - 4,
        })?;
        Ok((Self::decode_value_at(value, e, 4)?, 4 + length))
    }

    /// Decodes just the value (for a stack whose parameter-list parser has
    /// already split it off). Padding after the name is not required; bytes
    /// after it are ignored.
    ///
    /// # Errors
    /// [`LocatorError::Truncated`], [`LocatorError::AnnouncementVersion`],
    /// [`LocatorError::ReservedNonZero`], [`LocatorError::BadAnnouncedLocator`],
    /// [`LocatorError::UnknownPolicy`] or one of the `SegmentName*` errors,
    /// with offsets from the start of `value`.
    pub fn decode_value(value: &[u8], e: Endianness) -> Result<Self, LocatorError> {
        Self::decode_value_at(value, e, 0)
    }

    /// [`decode_value`](Self::decode_value) with error offsets shifted by
    /// `base` (where `v` starts in the caller's input).
    fn decode_value_at(v: &[u8], e: Endianness, base: usize) -> Result<Self, LocatorError> {
        // The version first: another version may have another length.
        let version = *v.first().ok_or(LocatorError::Truncated { what: "announcement version", offset: base, needed: 1, available: 0 })?;
        if version != ANNOUNCEMENT_VERSION {
            return Err(LocatorError::AnnouncementVersion { offset: base, found: version, supported: ANNOUNCEMENT_VERSION });
        }
        let fixed = v.get(..ANNOUNCEMENT_FIXED).ok_or(LocatorError::Truncated {
            what: "announcement fields before the segment name",
            offset: base,
            needed: ANNOUNCEMENT_FIXED,
            available: v.len(),
        })?;
        if fixed[1] != 0 {
            return Err(LocatorError::ReservedNonZero { field: "announcement flags", offset: base + 1, found: fixed[1].into() });
        }
        let reserved = e.read_u16(&fixed[2..4]);
        if reserved != 0 {
            return Err(LocatorError::ReservedNonZero { field: "announcement reserved u16", offset: base + 2, found: reserved.into() });
        }
        let locator = Locator::decode(&fixed[ANNOUNCEMENT_LOCATOR_AT..], e)?;
        locator.shm_address().map_err(|error| LocatorError::BadAnnouncedLocator {
            offset: base + ANNOUNCEMENT_LOCATOR_AT,
            error: Box::new(error),
        })?;
        let policy_raw = e.read_u32(&fixed[36..40]);
        let policy = OverflowPolicy::from_u32(policy_raw).ok_or(LocatorError::UnknownPolicy { offset: base + 36, found: policy_raw })?;
        let length = e.read_u32(&fixed[40..44]);
        const MAX_LENGTH: u32 = MAX_SEGMENT_NAME as u32 + 1;
        if length == 0 || length > MAX_LENGTH {
            return Err(LocatorError::SegmentNameLength { offset: base + 40, length, max: MAX_LENGTH });
        }
        let length = length as usize; // ≤ 256
        let s = v.get(ANNOUNCEMENT_FIXED..ANNOUNCEMENT_FIXED + length).ok_or(LocatorError::Truncated {
            what: "segment name",
            offset: base + ANNOUNCEMENT_FIXED,
            needed: length,
            available: v.len() - ANNOUNCEMENT_FIXED,
        })?;
        let (name, nul) = s.split_at(length - 1);
        if nul[0] != 0 {
            return Err(LocatorError::SegmentNameNotTerminated { offset: base + ANNOUNCEMENT_FIXED + length - 1, found: nul[0] });
        }
        if let Some(i) = name.iter().position(|&c| c == 0) {
            return Err(LocatorError::SegmentNameInteriorNul { offset: base + ANNOUNCEMENT_FIXED + i });
        }
        let name = std::str::from_utf8(name).map_err(|u| LocatorError::SegmentNameUtf8 { offset: base + ANNOUNCEMENT_FIXED + u.valid_up_to() })?;
        Ok(Self {
            locator,
            slot_count: e.read_u32(&fixed[28..32]),
            slot_capacity: e.read_u32(&fixed[32..36]),
            policy,
            segment: name.to_owned(),
        })
    }
}

/// `n` rounded up to a multiple of 4.
const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}
