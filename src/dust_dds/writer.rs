//! The send side: dust_dds's `WriteMessage` over shared memory first, its
//! own UDP writer for what shared memory does not reach.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ::dust_dds::transport::interface::WriteMessage;
use ::dust_dds::transport::types::{Locator as DdsLocator, LOCATOR_KIND_UDP_V4, LOCATOR_KIND_UDP_V6};

use super::receive::Shutdown;
use super::Counters;
use crate::locator::{Locator, LOCATOR_KIND_SHM};
use crate::transport::{Delivery, MAX_LOCATORS_PER_SEND};

/// A participant's shared memory: the locators of the rings it reads, and
/// the [`Shutdown`] holding its sender and receive threads (stopped when
/// this is dropped, that is when dust_dds drops the participant).
pub(super) struct ShmSide {
    shutdown: Arc<Shutdown>,
    locators: [Locator; 2],
}

impl ShmSide {
    pub(super) fn new(shutdown: Arc<Shutdown>, locators: [Locator; 2]) -> Self {
        Self { shutdown, locators }
    }

    pub(super) fn unicast_locator(&self) -> Locator {
        self.locators[0]
    }

    pub(super) fn multicast_locator(&self) -> Locator {
        self.locators[1]
    }
}

impl Drop for ShmSide {
    fn drop(&mut self) {
        // Not joined: a receive thread may be waiting for the stack's actor
        // loop, which is the thread dropping this.
        self.shutdown.stop(Duration::MAX);
    }
}

/// The composite writer of one participant. The stack serialises into the
/// UDP writer's buffer (65,507 bytes, larger than any fragment this
/// adapter announces); a message then costs one copy into each SHM
/// destination's slot, and none more for UDP.
pub(super) struct CompositeWriter {
    udp: Box<dyn WriteMessage + Send + Sync>,
    shm: Option<ShmSide>,
    counters: Arc<Counters>,
    shm_locators: Vec<Locator>,
    udp_locators: Vec<DdsLocator>,
}

impl CompositeWriter {
    pub(super) fn new(udp: Box<dyn WriteMessage + Send + Sync>, shm: Option<ShmSide>, counters: Arc<Counters>) -> Self {
        Self { udp, shm, counters, shm_locators: Vec::with_capacity(8), udp_locators: Vec::with_capacity(8) }
    }
}

impl WriteMessage for CompositeWriter {
    fn write_buffer_mut(&mut self) -> &mut [u8] {
        self.udp.write_buffer_mut()
    }

    /// Sends to one destination's locators (dust_dds passes one reader's,
    /// or one SPDP locator, per call): through shared memory if it reaches
    /// any of the SHM locators, else to the UDP ones. Never blocks.
    fn write_message(&mut self, len: usize, locators: &[DdsLocator]) {
        self.shm_locators.clear();
        self.udp_locators.clear();
        for l in locators {
            match l.kind() {
                LOCATOR_KIND_SHM => self.shm_locators.push(Locator::new(l.kind(), l.port(), l.address())),
                LOCATOR_KIND_UDP_V4 | LOCATOR_KIND_UDP_V6 => self.udp_locators.push(*l),
                // Another vendor's kind: neither transport serves it.
                _ => {}
            }
        }
        let buffer = self.udp.write_buffer_mut();
        let len = len.min(buffer.len());
        let message = &buffer[..len];
        let user = super::carries_user_data(message);
        let c = &self.counters;

        let mut reached = false;
        if !self.shm_locators.is_empty() {
            if let Some(shm) = &self.shm {
                let mut sender = shm.shutdown.sender.lock();
                if let Some(sender) = sender.as_mut() {
                    for chunk in self.shm_locators.chunks(MAX_LOCATORS_PER_SEND) {
                        // An error (the message is larger than a slot)
                        // serves none of them: UDP takes it below.
                        let Ok(report) = sender.send(message, chunk) else { continue };
                        for outcome in report.outcomes() {
                            match outcome {
                                Delivery::Served => {
                                    reached = true;
                                    c.shm.add(1, len, user);
                                }
                                // Reachable but full: dropped, as a full
                                // socket buffer drops a datagram; RTPS
                                // reliability resends it.
                                Delivery::Full => {
                                    reached = true;
                                    c.shm_dropped.fetch_add(1, Ordering::Relaxed);
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            if !reached {
                c.shm_fallback.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !reached && !self.udp_locators.is_empty() {
            c.udp.add(self.udp_locators.len() as u64, len, user);
            self.udp.write_message(len, &self.udp_locators);
        }
    }
}

/// RTPS submessage ids of DATA and DATA_FRAG.
const DATA: u8 = 0x15;
const DATA_FRAG: u8 = 0x16;
/// Entity kinds with these two bits set are built-in (discovery) entities.
const BUILT_IN: u8 = 0xc0;

/// Whether an RTPS message carries user data: a DATA or DATA_FRAG
/// submessage whose writer is not a built-in (discovery) entity. Reads
/// within `message` only; anything malformed is "no".
pub fn carries_user_data(message: &[u8]) -> bool {
    const HEADER: usize = 20;
    if message.len() < HEADER || &message[..4] != b"RTPS" {
        return false;
    }
    let mut at = HEADER;
    while let Some(head) = message.get(at..at + 4) {
        let (id, flags) = (head[0], head[1]);
        let raw = [head[2], head[3]];
        let length = usize::from(if flags & 1 == 1 { u16::from_le_bytes(raw) } else { u16::from_be_bytes(raw) });
        let body = at + 4;
        if id == DATA || id == DATA_FRAG {
            // extraFlags (2), octetsToInlineQos (2), readerId (4), writerId
            // (4): the writer's entity kind is the body's 12th octet.
            if let Some(&kind) = message.get(body + 11) {
                if kind & BUILT_IN != BUILT_IN {
                    return true;
                }
            }
        }
        // A length of 0 means "to the end of the message".
        if length == 0 {
            break;
        }
        at = body + length;
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::locator::{NamespaceId, ShmAddress};
    use crate::transport::{InputPort, ShmTransport, TransportConfig};

    /// Records what the composite hands to UDP.
    struct MockUdp {
        buf: Vec<u8>,
        sent: Arc<Mutex<Vec<Vec<DdsLocator>>>>,
    }

    impl WriteMessage for MockUdp {
        fn write_buffer_mut(&mut self) -> &mut [u8] {
            &mut self.buf
        }
        fn write_message(&mut self, _len: usize, locators: &[DdsLocator]) {
            self.sent.lock().unwrap().push(locators.to_vec());
        }
    }

    struct Rig {
        dir: std::path::PathBuf,
        writer: CompositeWriter,
        port: InputPort,
        _peer: ShmTransport,
        udp: Arc<Mutex<Vec<Vec<DdsLocator>>>>,
        counters: Arc<Counters>,
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const UDP: DdsLocator = DdsLocator::new(LOCATOR_KIND_UDP_V4, 7411, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 127, 0, 0, 1]);

    /// A composite writer and a peer's 2-slot port of 64 bytes.
    fn rig(tag: &str) -> Rig {
        rig_with(tag, crate::GrowthStrategy::PowerOfTwo)
    }

    /// [`rig`] whose rings grow as `growth` says.
    fn rig_with(tag: &str, growth: crate::GrowthStrategy) -> Rig {
        let dir = std::env::temp_dir().join(format!("shmslot-unit-dds-{tag}-{}", std::process::id()));
        let config = TransportConfig::new(3).slot_count(2).slot_capacity(64).growth(growth).discovery_dir(&dir);
        let peer = ShmTransport::new(config.clone()).unwrap();
        let port = peer.open_input().unwrap();
        let mine = ShmTransport::new(config).unwrap();
        let shutdown = Shutdown::new(mine.sender());
        let locators = [Locator::INVALID; 2];
        let udp = Arc::new(Mutex::new(Vec::new()));
        let counters = Arc::new(Counters::default());
        let mock = MockUdp { buf: vec![0; 1024], sent: Arc::clone(&udp) };
        let writer = CompositeWriter::new(Box::new(mock), Some(ShmSide::new(shutdown, locators)), Arc::clone(&counters));
        Rig { dir, writer, port, _peer: peer, udp, counters }
    }

    fn dds(l: Locator) -> DdsLocator {
        DdsLocator::new(l.kind, l.port, l.address)
    }

    fn write(w: &mut CompositeWriter, bytes: &[u8], to: &[DdsLocator]) {
        w.write_buffer_mut()[..bytes.len()].copy_from_slice(bytes);
        w.write_message(bytes.len(), to);
    }

    #[test]
    fn a_reachable_shm_locator_takes_the_message_and_its_udp_locators_do_not() {
        let mut r = rig("reach");
        let shm = dds(r.port.locator());
        write(&mut r.writer, b"hello", &[shm, UDP]);
        assert_eq!(&r.port.try_recv().unwrap().unwrap()[..], b"hello");
        assert!(r.udp.lock().unwrap().is_empty(), "also sent over UDP");
        let c = r.counters.get();
        assert_eq!((c.shm.messages, c.shm.bytes, c.udp.messages, c.shm_fallback), (1, 5, 0, 0));
    }

    #[test]
    fn without_a_reachable_shm_locator_the_udp_ones_are_used() {
        let mut r = rig("fallback");
        let mut foreign = r.port.locator();
        let a = foreign.shm_address().unwrap();
        foreign.address = ShmAddress { namespace: NamespaceId(a.namespace.0 ^ 1), ..a }.to_bytes();
        write(&mut r.writer, b"x", &[dds(foreign), UDP]);
        write(&mut r.writer, b"y", &[UDP]);
        // Another vendor's kind: neither transport serves it.
        write(&mut r.writer, b"z", &[DdsLocator::new(16, 1, [0; 16])]);
        assert_eq!(*r.udp.lock().unwrap(), vec![vec![UDP], vec![UDP]]);
        assert!(r.port.try_recv().unwrap().is_none());
        let c = r.counters.get();
        assert_eq!((c.shm.messages, c.udp.messages, c.shm_fallback), (0, 2, 1));
    }

    #[test]
    fn a_full_ring_drops_without_udp_and_a_message_too_large_goes_over_udp() {
        let mut r = rig_with("full", crate::GrowthStrategy::Static);
        let shm = dds(r.port.locator());
        for _ in 0..3 {
            write(&mut r.writer, b"fill", &[shm, UDP]);
        }
        let c = r.counters.get();
        assert_eq!((c.shm.messages, c.shm_dropped, c.udp.messages), (2, 1, 0), "{c:?}");
        write(&mut r.writer, &[7; 100], &[shm, UDP]);
        assert_eq!(*r.udp.lock().unwrap(), vec![vec![UDP]], "a message larger than a slot must still go somewhere");
        assert_eq!(r.counters.get().shm_fallback, 1);
    }

    #[test]
    fn a_message_larger_than_a_slot_grows_the_port_instead_of_taking_udp() {
        let mut r = rig("grow");
        let shm = dds(r.port.locator());
        write(&mut r.writer, &[7; 100], &[shm, UDP]);
        assert!(r.udp.lock().unwrap().is_empty(), "the port should have grown");
        assert_eq!(&r.port.try_recv().unwrap().unwrap()[..], &[7; 100][..]);
        let c = r.counters.get();
        assert_eq!((c.shm.messages, c.shm.bytes, c.shm_fallback), (1, 100, 0), "{c:?}");
    }

    /// An RTPS message: header, then submessages `(id, flags, body)`.
    fn rtps(subs: &[(u8, u8, Vec<u8>)]) -> Vec<u8> {
        let mut m = b"RTPS\x02\x04\x01\x03".to_vec();
        m.extend_from_slice(&[0; 12]);
        for (id, flags, body) in subs {
            let len = body.len() as u16;
            m.extend_from_slice(&[*id, *flags]);
            m.extend_from_slice(&if flags & 1 == 1 { len.to_le_bytes() } else { len.to_be_bytes() });
            m.extend_from_slice(body);
        }
        m
    }

    /// A DATA body whose writer has entity kind `kind`.
    fn data(kind: u8) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        b[11] = kind;
        b
    }

    #[test]
    fn user_data_is_told_from_discovery() {
        let info_ts = (0x09, 1, vec![0; 8]);
        assert!(carries_user_data(&rtps(&[info_ts.clone(), (DATA, 1, data(0x02))])));
        assert!(carries_user_data(&rtps(&[(DATA_FRAG, 0, data(0x03))])), "big-endian lengths");
        assert!(!carries_user_data(&rtps(&[info_ts.clone(), (DATA, 1, data(0xc2))])), "SEDP writer");
        assert!(!carries_user_data(&rtps(&[(0x07, 1, data(0x02))])), "a HEARTBEAT is not data");
        // Malformed: cut short, a length past the end, not RTPS at all.
        let whole = rtps(&[info_ts, (DATA, 1, data(0x02))]);
        for cut in 0..whole.len() - 13 {
            let _ = carries_user_data(&whole[..cut]);
        }
        assert!(!carries_user_data(&rtps(&[(0x09, 1, vec![0xff; 4]), (DATA, 1, vec![0; 3])])));
        assert!(!carries_user_data(b"RTPX________________\x15\x01\x18\x00"));
    }
}
