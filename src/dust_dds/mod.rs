//! An unmodified [dust_dds](https://crates.io/crates/dust_dds) 0.16 stack
//! over shared memory (feature `dust-dds`).
//!
//! An application changes one line:
//!
//! ```no_run
//! # use dust_dds::infrastructure::{listener::NO_LISTENER, qos::QosKind, status::NO_STATUS};
//! use shmslot::transport::TransportConfig;
//!
//! // let factory = DomainParticipantFactory::get_instance();
//! let factory = shmslot::dust_dds::participant_factory(TransportConfig::new(0));
//! let participant = factory.create_participant(0, QosKind::Default, NO_LISTENER, NO_STATUS)?;
//! // … topics, writers and readers exactly as with stock dust_dds …
//! # Ok::<(), dust_dds::infrastructure::error::DdsError>(())
//! ```
//!
//! # What the composite does
//!
//! [`ShmUdpTransportFactory`] wraps dust_dds's own UDP transport. Each
//! participant it creates
//!
//! * opens an input port ([`ShmTransport::open_input`]) and joins the
//!   domain's multicast ring ([`ShmTransport::multicast_input`]), and puts
//!   their SHM locators after its UDP locators (the port in both unicast
//!   lists, the ring in the metatraffic multicast list): rustdds 0.15 at
//!   times sends its acknowledgements to a locator kind it does not know,
//!   where they are lost — with an SHM locator first it always did, and
//!   reliable samples from shmslot stalled; with it last, sometimes;
//! * sends every message the stack hands it once per destination:
//!   dust_dds passes one reader's (so one participant's) locators per call,
//!   so when shared memory reaches any of the SHM locators in the call, the
//!   message goes there and **not** to the same call's UDP locators; a call
//!   without a reachable SHM locator (a stock UDP participant, another
//!   host, another container) goes to its UDP locators. SPDP goes to each
//!   multicast locator in its own call, so it reaches the multicast ring
//!   *and* UDP multicast (stock participants on this host and others hear
//!   it; shmslot participants hear it twice, which SPDP tolerates);
//! * never blocks the stack's actor loop: a full destination drops the
//!   message ([`DdsCounters::shm_dropped`]) and RTPS reliability repairs it,
//!   as it repairs a UDP datagram lost to a full socket buffer. (A backlog
//!   that kept such messages for later was tried and made things worse:
//!   dust_dds 0.16 answers every ACKNACK at once, so messages that wait
//!   are asked for again and resent — 4.6 million messages instead of
//!   840,000 to bring a late-joining reader 3,000 samples of history. The
//!   same scene over stock UDP took 727,000 messages.);
//! * reads its port and the multicast ring on two threads of its own and
//!   hands each message to dust_dds's `TransportDataReceiver`.
//!
//! # Fragment size
//!
//! The stack fragments samples into RTPS messages of at most the
//! participant's fragment size plus headers. The default follows the slot
//! capacity: [`TransportConfig::loan_size`] (capped at the largest
//! UDP datagram, since UDP peers get the same messages) minus
//! [`RTPS_OVERHEAD`] bytes of RTPS headers. Bigger slots mean fewer, larger
//! fragments (`TransportConfig::new(0).slot_capacity(64 * 1024)` carries a
//! 64 KiB sample in two messages instead of 49 of stock dust_dds's 1344-byte
//! fragments). A message that still does not fit a slot goes over UDP
//! ([`DdsCounters::shm_fallback`]): nothing is lost.
//!
//! # Ports and cleanup
//!
//! A participant's port is removed when the participant is deleted (its
//! receive threads notice within [`POLL`] and let go of the rings), and when
//! the process exits normally with participants still alive (an `atexit`
//! hook stops them, waiting at most [`EXIT_WAIT`]). A participant whose
//! process was killed leaves its port to be reclaimed as any crashed
//! owner's segment: the next participant that opens a port takes it over,
//! senders stop using it within 100 ms, and `flink clean` removes it.
//! dust_dds's own UDP threads live until the process ends, as in stock
//! dust_dds.
//!
//! # Counters
//!
//! [`ShmUdpTransportFactory::counters`], read through the factory:
//! `factory.get_mut_transport().counters()`, say which path carried what,
//! user data apart from discovery and protocol traffic.

mod receive;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ::dust_dds::configuration::DustDdsConfiguration;
use ::dust_dds::dds_async::domain_participant_factory::DomainParticipantFactoryAsync;
use ::dust_dds::domain::domain_participant_factory::DomainParticipantFactory;
use ::dust_dds::rtps_udp_transport::udp_transport::RtpsUdpTransportParticipantFactory;
use ::dust_dds::std_runtime::StdRuntime;
use ::dust_dds::transport::interface::{RtpsTransportParticipant, TransportDataReceiver, TransportParticipantFactory};
use ::dust_dds::transport::types::Locator as DdsLocator;
use parking_lot::Mutex;

use crate::locator::{Locator, NamespaceId};
use crate::transport::{ShmTransport, TransportConfig, TransportError};

pub use receive::{EXIT_WAIT, POLL};
pub use writer::carries_user_data;

/// Bytes of RTPS headers the default fragment size leaves room for in a
/// slot: the message header (20), INFO_DST (16), INFO_TS (12), a DATA or
/// DATA_FRAG submessage header (≤ 40), inline QoS (key hash and status
/// info, ≤ 32) and padding, with room to spare.
pub const RTPS_OVERHEAD: usize = 256;

/// The largest UDP datagram over IPv4, and so the largest message the UDP
/// side of the composite can carry.
pub const MAX_UDP_DATAGRAM: usize = 65_507;

/// The smallest fragment size dust_dds accepts.
pub const MIN_FRAGMENT_SIZE: usize = 8;

/// Messages and bytes one path carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathCounters {
    /// Messages, one per destination (a message to two SHM ports or two UDP
    /// locators counts twice).
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of those, messages that carried user data (a DATA or DATA_FRAG
    /// submessage of a user-defined writer; see [`carries_user_data`]).
    pub user_messages: u64,
    /// Their bytes.
    pub user_bytes: u64,
}

/// What the participants of one [`ShmUdpTransportFactory`] sent and
/// received, by path, since the factory was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DdsCounters {
    /// Written into a destination's ring.
    pub shm: PathCounters,
    /// Handed to dust_dds's UDP transport (one per UDP locator).
    pub udp: PathCounters,
    /// Read from this factory's participants' rings and handed to the stack.
    pub shm_received: PathCounters,
    /// Messages dropped because a reachable destination's ring was full,
    /// as a full socket buffer drops a datagram (RTPS reliability resends
    /// what a live reader misses).
    pub shm_dropped: u64,
    /// Messages whose SHM locators shared memory did not reach (another
    /// host or container, a dead peer, a message larger than a slot): they
    /// went to the same call's UDP locators instead.
    pub shm_fallback: u64,
    /// Participants created without shared memory because setting it up
    /// failed (see the logged warning); they use UDP only.
    pub shm_unavailable: u64,
    /// Receive errors on this factory's rings (a corrupt segment); the
    /// receive thread goes on.
    pub receive_errors: u64,
}

#[derive(Default)]
struct AtomicPath {
    messages: AtomicU64,
    bytes: AtomicU64,
    user_messages: AtomicU64,
    user_bytes: AtomicU64,
}

impl AtomicPath {
    fn add(&self, messages: u64, len: usize, user: bool) {
        let bytes = messages * len as u64;
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if user {
            self.user_messages.fetch_add(messages, Ordering::Relaxed);
            self.user_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn get(&self) -> PathCounters {
        PathCounters {
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            user_messages: self.user_messages.load(Ordering::Relaxed),
            user_bytes: self.user_bytes.load(Ordering::Relaxed),
        }
    }
}

/// The live counters, shared by a factory and its participants' writers
/// and receive threads.
#[derive(Default)]
struct Counters {
    shm: AtomicPath,
    udp: AtomicPath,
    shm_received: AtomicPath,
    shm_dropped: AtomicU64,
    shm_fallback: AtomicU64,
    shm_unavailable: AtomicU64,
    receive_errors: AtomicU64,
}

impl Counters {
    fn get(&self) -> DdsCounters {
        DdsCounters {
            shm: self.shm.get(),
            udp: self.udp.get(),
            shm_received: self.shm_received.get(),
            shm_dropped: self.shm_dropped.load(Ordering::Relaxed),
            shm_fallback: self.shm_fallback.load(Ordering::Relaxed),
            shm_unavailable: self.shm_unavailable.load(Ordering::Relaxed),
            receive_errors: self.receive_errors.load(Ordering::Relaxed),
        }
    }
}

/// dust_dds's `TransportParticipantFactory` for shared memory on this host
/// and dust_dds's own UDP for everything else (see the [module
/// docs](self)).
pub struct ShmUdpTransportFactory {
    config: TransportConfig,
    udp: RtpsUdpTransportParticipantFactory,
    fragment_size: Option<usize>,
    counters: Arc<Counters>,
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for ShmUdpTransportFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmUdpTransportFactory").field("config", &self.config).field("fragment_size", &self.fragment_size()).field("counters", &self.counters()).finish_non_exhaustive()
    }
}

impl ShmUdpTransportFactory {
    /// A factory whose participants use rings of `config`'s geometry (the
    /// domain of each participant is the one it is created in; `config`'s
    /// own domain id is not used) and dust_dds's UDP transport with its
    /// defaults ([`udp_mut`](Self::udp_mut) changes them).
    ///
    /// # Errors
    /// [`TransportError::Config`] for an option out of range, or a slot
    /// capacity too small to carry an RTPS message with a fragment of
    /// [`MIN_FRAGMENT_SIZE`] bytes.
    pub fn new(config: TransportConfig) -> Result<Self, TransportError> {
        config.validate()?;
        let least = RTPS_OVERHEAD + MIN_FRAGMENT_SIZE;
        if config.loan_size() < least {
            return Err(TransportError::Config { what: "slot_capacity", value: config.loan_size() as u64, expected: "at least 264 bytes for dust_dds (RTPS headers and a fragment)" });
        }
        Ok(Self { config, udp: RtpsUdpTransportParticipantFactory::default(), fragment_size: None, counters: Arc::default(), last_error: Mutex::new(None) })
    }

    /// The ring configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// The largest fragment size the slots (and UDP) carry:
    /// `min(slot capacity, MAX_UDP_DATAGRAM) - RTPS_OVERHEAD`.
    pub fn max_fragment_size(&self) -> usize {
        self.config.loan_size().min(MAX_UDP_DATAGRAM) - RTPS_OVERHEAD
    }

    /// The fragment size participants created from now on announce to
    /// their stack: [`max_fragment_size`](Self::max_fragment_size) unless
    /// set lower.
    pub fn fragment_size(&self) -> usize {
        self.fragment_size.unwrap_or_else(|| self.max_fragment_size())
    }

    /// Sets a smaller fragment size (for UDP peers on a network that drops
    /// IP fragments, say: 1344 keeps a datagram within a 1500-byte MTU).
    /// dust_dds's own UDP fragment size setting is not used.
    ///
    /// # Errors
    /// [`TransportError::Config`] outside `MIN_FRAGMENT_SIZE..=max_fragment_size()`.
    pub fn set_fragment_size(&mut self, bytes: usize) -> Result<&mut Self, TransportError> {
        if !(MIN_FRAGMENT_SIZE..=self.max_fragment_size()).contains(&bytes) {
            return Err(TransportError::Config { what: "fragment_size", value: bytes as u64, expected: "8 to the slot capacity (at most 65507) minus RTPS_OVERHEAD" });
        }
        self.fragment_size = Some(bytes);
        Ok(self)
    }

    /// dust_dds's UDP transport factory underneath, for its settings
    /// (interface, receive buffer size).
    pub fn udp_mut(&mut self) -> &mut RtpsUdpTransportParticipantFactory {
        &mut self.udp
    }

    /// What this factory's participants sent and received, by path.
    pub fn counters(&self) -> DdsCounters {
        self.counters.get()
    }

    /// Why the last participant that fell back to UDP only could not use
    /// shared memory, if one did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// The shared-memory side of a new participant: its transport, port,
    /// multicast reader and their receive threads.
    fn open_shm(&self, domain_id: i32, receiver: &TransportDataReceiver) -> Result<writer::ShmSide, TransportError> {
        let domain = u32::try_from(domain_id).map_err(|_| TransportError::Domain(domain_id.into()))?;
        let transport = ShmTransport::new(self.config.clone().domain(domain))?;
        let port = transport.open_input()?;
        let multicast = transport.multicast_input()?;
        let locators = [port.locator(), transport.multicast_locator()];
        let shutdown = receive::Shutdown::new(transport.sender());
        // The side's drop stops whatever was started, should a spawn fail.
        let side = writer::ShmSide::new(Arc::clone(&shutdown), locators);
        let thread_err = |source| TransportError::Thread { what: "a receive thread", source };
        receive::spawn(port, receiver.clone(), &shutdown, &self.counters).map_err(thread_err)?;
        receive::spawn(multicast, receiver.clone(), &shutdown, &self.counters).map_err(thread_err)?;
        Ok(side)
    }
}

fn dds_locator(l: Locator) -> DdsLocator {
    DdsLocator::new(l.kind, l.port, l.address)
}

impl TransportParticipantFactory for ShmUdpTransportFactory {
    fn create_participant(&self, domain_id: i32, data_receiver: TransportDataReceiver) -> RtpsTransportParticipant {
        let udp = self.udp.create_participant(domain_id, data_receiver.clone());
        let fragment_size = self.fragment_size();
        let shm = match self.open_shm(domain_id, &data_receiver) {
            Ok(shm) => Some(shm),
            Err(e) => {
                tracing::warn!("shmslot: participant of domain {domain_id} uses UDP only: {e}");
                self.counters.shm_unavailable.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock() = Some(e.to_string());
                None
            }
        };
        // SHM locators last: rustdds 0.15 keeps a kind it does not know and
        // at times sends its ACKNACKs to it, where they are lost. With the
        // SHM locator first that happened in every run here, with it last
        // in some (README: rustdds).
        let append = |shm_locator: Option<Locator>, udp: Vec<DdsLocator>| udp.into_iter().chain(shm_locator.map(dds_locator)).collect::<Vec<_>>();
        let unicast = shm.as_ref().map(|s| s.unicast_locator());
        let multicast = shm.as_ref().map(|s| s.multicast_locator());
        RtpsTransportParticipant {
            default_unicast_locator_list: append(unicast, udp.default_unicast_locator_list),
            metatraffic_unicast_locator_list: append(unicast, udp.metatraffic_unicast_locator_list),
            metatraffic_multicast_locator_list: append(multicast, udp.metatraffic_multicast_locator_list),
            default_multicast_locator_list: udp.default_multicast_locator_list,
            message_writer: Box::new(writer::CompositeWriter::new(udp.message_writer, shm, Arc::clone(&self.counters))),
            fragment_size,
        }
    }
}

/// The process-wide factory for `config`: a dust_dds
/// `DomainParticipantFactory` whose participants use
/// [`ShmUdpTransportFactory`] — the one line that moves an application from
/// stock dust_dds (`DomainParticipantFactory::get_instance()`) to shmslot.
/// The same configuration gives the same factory; another gives another
/// one (with its own GUID prefixes).
///
/// Its counters: `participant_factory(c).get_mut_transport().counters()`.
///
/// # Panics
/// On a configuration [`ShmUdpTransportFactory::new`] refuses, with its
/// error; [`try_participant_factory`] returns it instead.
pub fn participant_factory(config: TransportConfig) -> &'static DomainParticipantFactory<ShmUdpTransportFactory> {
    try_participant_factory(config).unwrap_or_else(|e| panic!("shmslot::dust_dds::participant_factory: {e}"))
}

type Factory = DomainParticipantFactory<ShmUdpTransportFactory>;

/// As [`participant_factory`], returning a refused configuration as an
/// error.
///
/// # Errors
/// As [`ShmUdpTransportFactory::new`].
pub fn try_participant_factory(config: TransportConfig) -> Result<&'static Factory, TransportError> {
    static MADE: Mutex<Vec<(TransportConfig, &'static Factory)>> = Mutex::new(Vec::new());
    let mut made = MADE.lock();
    if let Some((_, f)) = made.iter().find(|(c, _)| *c == config) {
        return Ok(f);
    }
    let transport = ShmUdpTransportFactory::new(config.clone())?;
    let (host_id, app_id) = guid_ids(made.len() as u32);
    let inner: &'static DomainParticipantFactoryAsync<ShmUdpTransportFactory> = Box::leak(Box::new(DomainParticipantFactoryAsync::new(StdRuntime::default(), app_id, host_id, transport, DustDdsConfiguration::default())));
    let factory: &'static Factory = Box::leak(Box::new(DomainParticipantFactory::new(inner)));
    made.push((config, factory));
    Ok(factory)
}

/// The host and application parts of the GUID prefixes of the `n`th
/// factory of this process. The host part is a hash of this host's
/// namespace id (boot, IPC namespace, `/dev/shm`, user) and PID namespace,
/// so two containers with one IP address still differ; the application
/// part is the process id, with `n` in its top byte (process ids stay below
/// 2^22) so two factories of one process differ.
fn guid_ids(n: u32) -> ([u8; 4], [u8; 4]) {
    let ns = NamespaceId::current().map(|id| id.0).unwrap_or(0);
    let pid_ns = std::fs::read_link("/proc/self/ns/pid").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let h = crate::hash::Fnv1a64(ns ^ crate::hash::OFFSET_64).bytes(pid_ns.as_bytes()).0;
    let host = ((h >> 32) as u32 ^ h as u32).to_be_bytes();
    let app = (std::process::id() & 0x00ff_ffff | (n & 0xff) << 24).to_be_bytes();
    (host, app)
}
