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
use crate::transport::{Delivery, ShmTransport, MAX_LOCATORS_PER_SEND};

/// A participant's shared memory: its transport, the locators of the rings
/// it reads, and the [`Shutdown`] holding its sender and receive threads
/// (stopped when this is dropped, that is when dust_dds drops the
/// participant).
pub(super) struct ShmSide {
    shutdown: Arc<Shutdown>,
    locators: [Locator; 2],
    _transport: ShmTransport,
}

impl ShmSide {
    pub(super) fn new(transport: ShmTransport, shutdown: Arc<Shutdown>, locators: [Locator; 2]) -> Self {
        Self { shutdown, locators, _transport: transport }
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
