//! [`ShmTransport`]: the shared-memory transport a DDS/RTPS stack plugs in.
//!
//! The stack hands it bytes and locators; it delivers on this host through
//! shared memory and says which locators it could not serve, so those go
//! over UDP.
//!
//! * Every participant owns **input ports** ([`ShmTransport::open_input`]):
//!   a multi-writer ring it reads, named by a unicast SHM locator
//!   ([`InputPort::locator`]). Senders attach to a destination's port once
//!   (the attachment is cached) and write each message in place.
//! * One **multicast ring** per domain ([`ShmTransport::multicast_input`],
//!   [`ShmTransport::multicast_locator`]): every participant that opens it
//!   registers its own reader bit, so a message written once is read by
//!   all (RTPS discovery traffic). It belongs to no participant: the last
//!   one to leave removes it.
//! * [`ShmTransport::send`] never blocks: a full destination drops the
//!   message (counted, reported as [`Delivery::Full`]), and a locator that
//!   is not a shared-memory locator of this host is reported back
//!   ([`Delivery::NotShm`], [`Delivery::Unreachable`]) for another
//!   transport to serve.
//! * [`ShmTransport::select_locators`] decides, from what a remote
//!   participant announces, where to send: its SHM locators when shared
//!   memory reaches it, its other (UDP) locators otherwise — never both.
//!
//! Where the segments are: flink files `dds-d<domain>-p<port>` and
//! `dds-d<domain>-multicast` in the configured discovery directory (all
//! participants of a domain must use the same one; a peer that uses another
//! directory is simply not reachable, and the stack falls back to UDP).
//! Ports are numbered from 1 like RTPS participant ids; a port whose owner
//! died is reclaimed by the next participant that opens one (and removed as
//! soon as the last sender attached to it notices the death).
//!
//! ```no_run
//! use shmslot::transport::{ShmTransport, TransportConfig};
//! use std::time::Duration;
//!
//! let transport = ShmTransport::new(TransportConfig::new(0))?;
//! let mut input = transport.open_input()?;
//! println!("announce {}", input.locator());
//!
//! // Another participant, given that locator:
//! let report = transport.send(b"hello", &[input.locator()])?;
//! assert!(report.all_served());
//!
//! if let Some(msg) = input.recv_timeout(Duration::from_secs(1))? {
//!     assert_eq!(&msg[..], b"hello");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

mod send;

pub use send::{Delivery, SendLoan, SendReport, Sender};
use send::{SendState, StateRef};

use crate::locator::{Locator, NamespaceId, ShmAddress, ShmAnnouncement, SHM_MULTICAST_PORT};
use crate::segment::dir::default_discovery_dir;
use crate::sys::clock::coarse_ms;
use crate::GrowthStrategy;
use crate::{OpenError, OverflowPolicy, PosixSlotAllocator, Reader, Sample, SlotBackend, SlotError, SlotHandle};

/// Most locators one [`ShmTransport::send`] takes (a [`SendReport`] has one
/// outcome per locator).
pub const MAX_LOCATORS_PER_SEND: usize = 64;
/// Highest unicast port number [`ShmTransport::open_input`] tries.
pub const MAX_PORTS: u32 = 4096;

/// Errors of the transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The message does not fit in a slot: the stack must fragment it
    /// ([`TransportConfig::max_message_size`]).
    #[error("message of {len} bytes exceeds the largest message this transport sends ({max} bytes): fragment it")]
    MessageTooLarge {
        /// Message length.
        len: usize,
        /// Largest message (the slot capacity).
        max: usize,
    },
    /// More locators than one send takes.
    #[error("{count} locators given to one send; at most {max}")]
    TooManyLocators {
        /// Locators given.
        count: usize,
        /// [`MAX_LOCATORS_PER_SEND`].
        max: usize,
    },
    /// Every unicast port number of the domain is taken by a live
    /// participant.
    #[error("domain {domain}: no free input port among 1..={max} in {dir}")]
    PortsExhausted {
        /// Domain id.
        domain: u32,
        /// [`MAX_PORTS`].
        max: u32,
        /// Discovery directory.
        dir: PathBuf,
    },
    /// An option is out of range.
    #[error("invalid transport configuration: {what} = {value} ({expected})")]
    Config {
        /// The option.
        what: &'static str,
        /// The value given.
        value: u64,
        /// What is accepted.
        expected: &'static str,
    },
    /// This process's same-host identity could not be read.
    #[error("reading the same-host namespace id: {0}")]
    Namespace(#[source] io::Error),
    /// A segment could not be created or attached.
    #[error("{what}: {source}")]
    Open {
        /// Which segment, for what.
        what: String,
        /// The cause.
        #[source]
        source: OpenError,
    },
    /// A domain id a ring name cannot carry (a stack's signed id below 0).
    #[error("domain id {0} is not one shared memory serves (0 or more)")]
    Domain(i64),
    /// A thread of the transport could not be started.
    #[error("starting {what}: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A ring operation failed (a corrupt segment, a full reader table).
    #[error("{what}: {source}")]
    Slot {
        /// Which port, doing what.
        what: String,
        /// The cause.
        #[source]
        source: SlotError,
    },
}

/// What a transport is set up with: the domain, the geometry of the rings
/// it creates, and where their flink files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    domain_id: u32,
    slot_count: usize,
    slot_capacity: usize,
    multicast_slot_count: usize,
    overflow: OverflowPolicy,
    max_senders: u32,
    discovery_dir: Option<PathBuf>,
    spin: Duration,
    growth: GrowthStrategy,
    max_message: usize,
}

impl TransportConfig {
    /// Defaults for `domain_id`: input ports of 256 slots of 8 KiB
    /// (2 MiB each), a multicast ring of 256 slots, `KeepAll` (a full port
    /// drops at the sender, which knows it), up to 64 senders per port, the
    /// default discovery directory.
    pub fn new(domain_id: u32) -> Self {
        Self {
            domain_id,
            slot_count: 256,
            slot_capacity: 8192,
            multicast_slot_count: 256,
            overflow: OverflowPolicy::KeepAll,
            max_senders: 64,
            discovery_dir: None,
            spin: crate::DEFAULT_SPIN,
            growth: GrowthStrategy::PowerOfTwo,
            max_message: 64 * 1024,
        }
    }

    /// How the rings this transport creates grow when a message does not
    /// fit their slots (default [`GrowthStrategy::PowerOfTwo`]: a port
    /// moves to larger slots when [`ShmTransport::send`] gets a message
    /// larger than [`slot_capacity`](Self::slot_capacity), up to
    /// [`max_message_size`](Self::max_message_size)).
    /// [`GrowthStrategy::Static`] makes the slot capacity the limit.
    #[must_use]
    pub fn growth(mut self, growth: GrowthStrategy) -> Self {
        self.growth = growth;
        self
    }

    /// The largest message [`ShmTransport::send`] takes when the rings grow
    /// (default 64 KiB, the largest RTPS message over UDP; at least the
    /// slot capacity).
    #[must_use]
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// Slots per input port (rounded up to a power of two).
    #[must_use]
    pub fn slot_count(mut self, n: usize) -> Self {
        self.slot_count = n;
        self
    }

    /// Bytes per slot of the rings it creates (default 8 KiB): the buffer of
    /// a [`SendLoan`] ([`loan_size`](Self::loan_size)); larger messages
    /// grow the rings (see [`growth`](Self::growth)).
    #[must_use]
    pub fn slot_capacity(mut self, bytes: usize) -> Self {
        self.slot_capacity = bytes;
        self
    }

    /// Slots of the domain's multicast ring, if this participant is the one
    /// that creates it (its geometry is set by whoever creates it first).
    #[must_use]
    pub fn multicast_slot_count(mut self, n: usize) -> Self {
        self.multicast_slot_count = n;
        self
    }

    /// What a full ring does: `KeepAll` (default: the sender drops and
    /// counts, [`Delivery::Full`]) or `DropOldest` (the oldest unread
    /// message is overwritten; the reader counts it lost).
    #[must_use]
    pub fn overflow_policy(mut self, policy: OverflowPolicy) -> Self {
        self.overflow = policy;
        self
    }

    /// Writer entries per created ring: how many sending participants a
    /// port takes at once (1 to 64, default 64).
    #[must_use]
    pub fn max_senders(mut self, n: u32) -> Self {
        self.max_senders = n;
        self
    }

    /// Directory of the flink files (default
    /// [`default_discovery_dir`]). Every
    /// participant of a domain must use the same one.
    #[must_use]
    pub fn discovery_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.discovery_dir = Some(dir.into());
        self
    }

    /// How long a receive on an input port spins before it parks on a
    /// futex (default [`DEFAULT_SPIN`](crate::DEFAULT_SPIN)). Spinning
    /// shortens the wake-up when messages come back to back, but takes a
    /// CPU from whoever produces them; a receiver that hands each message to
    /// another thread (a DDS stack's event loop) on a machine with few CPUs
    /// does better with `Duration::ZERO`.
    pub fn spin_budget(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// The same configuration for another domain (a stack that creates
    /// participants of several domains from one configuration).
    pub fn domain(mut self, domain_id: u32) -> Self {
        self.domain_id = domain_id;
        self
    }

    /// The domain id.
    pub fn domain_id(&self) -> u32 {
        self.domain_id
    }

    /// The largest message [`ShmTransport::send`] takes: the slot capacity
    /// of a static ring, else [`max_message`](Self::max_message).
    pub fn max_message_size(&self) -> usize {
        if self.growth == GrowthStrategy::Static {
            self.slot_capacity
        } else {
            self.max_message.max(self.slot_capacity)
        }
    }

    /// The buffer of a [`SendLoan`]: the slot capacity (a stack that
    /// serialises in place sets its fragment size from this).
    pub fn loan_size(&self) -> usize {
        self.slot_capacity
    }

    /// Checks every option is in range (what [`ShmTransport::new`] checks
    /// first).
    ///
    /// # Errors
    /// [`TransportError::Config`] naming the option, its value and the
    /// range it must be in.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad = |what, value: usize, expected| Err(TransportError::Config { what, value: value as u64, expected });
        if self.slot_count == 0 || self.slot_count > 1 << 24 {
            return bad("slot_count", self.slot_count, "1 to 2^24");
        }
        if self.multicast_slot_count == 0 || self.multicast_slot_count > 1 << 24 {
            return bad("multicast_slot_count", self.multicast_slot_count, "1 to 2^24");
        }
        if self.slot_capacity == 0 || self.slot_capacity > 1 << 30 {
            return bad("slot_capacity", self.slot_capacity, "1 byte to 1 GiB");
        }
        if self.max_message > 1 << 30 {
            return bad("max_message", self.max_message, "at most 1 GiB");
        }
        if self.max_senders == 0 || self.max_senders > 64 {
            return bad("max_senders", self.max_senders as usize, "1 to 64");
        }
        Ok(())
    }
}

/// Counters of one transport: what its sends did, and what its input
/// ports received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages written into a destination's ring (one per destination).
    pub sent: u64,
    /// Messages a destination could not take ([`Delivery::Full`],
    /// [`Delivery::TooLarge`]).
    pub dropped: u64,
    /// Shared-memory locators that could not be served
    /// ([`Delivery::Unreachable`]).
    pub unreachable: u64,
    /// Messages received by this transport's input ports.
    pub received: u64,
    /// Messages its input ports lost to `DropOldest` overwrites.
    pub lost: u64,
}

/// What a transport and its senders share: who we are, where the flink
/// files are, and the counters of senders that were dropped.
pub(crate) struct Shared {
    config: TransportConfig,
    namespace: NamespaceId,
    dir: PathBuf,
    retired: Mutex<TransportStats>,
}

impl Shared {
    fn check_send(&self, len: usize, locators: &[Locator]) -> Result<(), TransportError> {
        if len > self.config.max_message_size() {
            return Err(TransportError::MessageTooLarge { len, max: self.config.max_message_size() });
        }
        if locators.len() > MAX_LOCATORS_PER_SEND {
            return Err(TransportError::TooManyLocators { count: locators.len(), max: MAX_LOCATORS_PER_SEND });
        }
        Ok(())
    }

    /// Adds a dropped sender's counters to the transport's.
    fn retire(&self, s: &TransportStats) {
        let mut r = self.retired.lock();
        r.sent += s.sent;
        r.dropped += s.dropped;
        r.unreachable += s.unreachable;
    }
}

/// Input ports this transport opened, for [`ShmTransport::stats`].
#[derive(Default)]
struct PortRegistry {
    live: Mutex<Vec<(Weak<PosixSlotAllocator>, u8)>>,
    retired_received: AtomicU64,
    retired_lost: AtomicU64,
}

/// The shared-memory transport of one participant in one domain.
///
/// `send` and the loan take `&self` and may be called from any thread; they
/// are serialised by one lock (two locked instructions per send). A thread
/// that sends a lot takes a [`Sender`] instead: its own cache, no lock.
pub struct ShmTransport {
    sh: Arc<Shared>,
    state: Mutex<SendState>,
    ports: Arc<PortRegistry>,
}

impl std::fmt::Debug for ShmTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmTransport").field("config", &self.sh.config).field("namespace", &self.sh.namespace).field("dir", &self.sh.dir).finish_non_exhaustive()
    }
}

/// The flink name of unicast port `port` (its number: the low 16 bits).
fn port_name(domain: u32, port: u32) -> String {
    format!("dds-d{domain}-p{}", port & PORT_NUMBER_MASK)
}

/// The bits of a unicast SHM locator's port that hold the port number
/// (1 to [`MAX_PORTS`], which names the ring); the 16 bits above hold the
/// ring's incarnation (a hash of its segment's name, new each time a ring
/// is created).
pub const PORT_NUMBER_MASK: u32 = 0xFFFF;

/// The incarnation of a unicast port's ring: 16 bits of a hash of its
/// segment name, which is new each time a ring is created. A locator
/// carries it above the port number, and a sender attaches only to a ring
/// of the same incarnation: a stale locator of a participant that died
/// does not reach whoever took its port number since (a stack that does
/// not check RTPS `INFO_DST`, as dust_dds 0.16, would otherwise hand that
/// participant the dead one's traffic). Two incarnations collide with
/// probability 2^-16.
fn incarnation(ring: &PosixSlotAllocator) -> u32 {
    let h = crate::hash::fnv1a_32(ring.segment_path().as_os_str().as_encoded_bytes());
    (h >> 16) ^ (h & 0xFFFF)
}

fn multicast_name(domain: u32) -> String {
    format!("dds-d{domain}-multicast")
}

impl ShmTransport {
    /// A transport for `config`'s domain. Reads this process's same-host
    /// identity and creates the discovery directory if missing.
    ///
    /// # Errors
    /// [`TransportError::Config`] for an option out of range,
    /// [`TransportError::Namespace`] if `/proc` cannot be read,
    /// [`TransportError::Open`] for an unsafe or unusable directory.
    pub fn new(config: TransportConfig) -> Result<Self, TransportError> {
        config.validate()?;
        let namespace = NamespaceId::current().map_err(TransportError::Namespace)?;
        let dir = config.discovery_dir.clone().unwrap_or_else(default_discovery_dir);
        let open_err = |source| TransportError::Open { what: "discovery directory".into(), source };
        let dir = crate::segment::dir::normalize_dir(&dir).map_err(open_err)?;
        crate::segment::dir::ensure_dir(&dir).map_err(open_err)?;
        let sh = Arc::new(Shared { config, namespace, dir, retired: Mutex::default() });
        Ok(Self { state: Mutex::new(SendState::new(&sh)), sh, ports: Arc::default() })
    }

    /// The configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.sh.config
    }

    /// This process's same-host identity (carried in its SHM locators).
    pub fn namespace_id(&self) -> NamespaceId {
        self.sh.namespace
    }

    /// The discovery directory in use.
    pub fn discovery_dir(&self) -> &Path {
        &self.sh.dir
    }

    fn address(&self, multicast: bool) -> ShmAddress {
        ShmAddress { namespace: self.sh.namespace, domain_id: self.sh.config.domain_id, multicast }
    }

    /// Opens a new input port: a ring this participant reads and any
    /// participant of this host writes to, named by
    /// [`InputPort::locator`]. Takes the lowest free port number (a port
    /// whose owner died is reclaimed). Dropping it removes the ring.
    ///
    /// # Errors
    /// [`TransportError::PortsExhausted`], or [`TransportError::Open`] for a
    /// failure to create a segment.
    pub fn open_input(&self) -> Result<InputPort, TransportError> {
        let c = &self.sh.config;
        for port in 1..=MAX_PORTS {
            let name = port_name(c.domain_id, port);
            let made = PosixSlotAllocator::builder(c.slot_count, c.slot_capacity)
                .growth(c.growth)
                .overflow_policy(c.overflow)
                .max_readers(1)
                .max_writers(c.max_senders)
                .discovery_dir(&self.sh.dir)
                .create(&name);
            match made {
                Ok(ring) => {
                    let locator = Locator::shm(self.address(false), port | incarnation(&ring) << 16);
                    return self.port(ring, locator);
                }
                // Live, foreign, or being reclaimed right now: the next one.
                Err(OpenError::InUse { .. } | OpenError::Exists(_)) => {}
                Err(OpenError::Busy { .. }) => {}
                Err(source) => return Err(TransportError::Open { what: format!("input port {}", self.sh.dir.join(name).display()), source }),
            }
        }
        Err(TransportError::PortsExhausted { domain: c.domain_id, max: MAX_PORTS, dir: self.sh.dir.clone() })
    }

    /// The domain's multicast locator: a message sent to it is read by every
    /// participant that opened [`multicast_input`](Self::multicast_input).
    pub fn multicast_locator(&self) -> Locator {
        Locator::shm(self.address(true), SHM_MULTICAST_PORT)
    }

    /// Joins the domain's multicast ring as a reader (creating the ring if
    /// this is the first participant). Messages sent to
    /// [`multicast_locator`](Self::multicast_locator) after this call are
    /// read here, this participant's own included (as with UDP multicast
    /// loopback).
    ///
    /// # Errors
    /// [`TransportError::Open`]; [`TransportError::Slot`] with
    /// `ReadersFull` when 64 participants of the domain have joined.
    pub fn multicast_input(&self) -> Result<InputPort, TransportError> {
        let c = &self.sh.config;
        let name = multicast_name(c.domain_id);
        let what = || format!("multicast ring {}", self.sh.dir.join(&name).display());
        PosixSlotAllocator::builder(c.multicast_slot_count, c.slot_capacity)
            .growth(c.growth)
            .overflow_policy(c.overflow)
            .max_readers(64)
            .max_writers(c.max_senders)
            .remove_on_drop(false)
            .discovery_dir(&self.sh.dir)
            .attach_or_create(&name)
            .map_err(|source| TransportError::Open { what: what(), source })
            .and_then(|ring| self.port(ring, self.multicast_locator()))
    }

    fn port(&self, mut ring: PosixSlotAllocator, locator: Locator) -> Result<InputPort, TransportError> {
        ring.set_spin_budget(self.sh.config.spin);
        let ring = Arc::new(ring);
        let reader = Reader::new(Arc::clone(&ring)).map_err(|source| TransportError::Slot { what: format!("registering a reader on {}", ring.flink_path().display()), source })?;
        self.ports.live.lock().push((Arc::downgrade(&ring), reader.index()));
        Ok(InputPort { reader, locator, registry: Arc::clone(&self.ports) })
    }

    /// Whether shared memory reaches `locator`: it is an SHM locator with
    /// this host's namespace id (same boot, IPC namespace, `/dev/shm` and
    /// user), and the segment it names opens, validates and (for a unicast
    /// port) has a live owner. Attaches on success (the attachment is kept
    /// for sends).
    pub fn is_reachable(&self, locator: &Locator) -> bool {
        self.state.lock().is_reachable(&self.sh, locator)
    }

    /// From the locators a remote participant announced, those to send to:
    /// its reachable SHM locators if it has any (instead of its UDP
    /// locators, which are on this host then), else its non-SHM locators.
    /// Never both, so a participant does not receive a message twice.
    pub fn select_locators(&self, announced: &[Locator]) -> Vec<Locator> {
        let shm: Vec<Locator> = announced.iter().filter(|l| l.is_shm() && self.is_reachable(l)).copied().collect();
        if !shm.is_empty() {
            return shm;
        }
        announced.iter().filter(|l| !l.is_shm()).copied().collect()
    }

    /// The announcement of `port` as a vendor parameter value, for stacks
    /// that announce segments (see [`ShmAnnouncement`]).
    pub fn announcement(&self, port: &InputPort) -> ShmAnnouncement {
        port.announcement()
    }

    /// Sends `bytes` to every locator it can serve, without blocking: one
    /// copy into each destination's ring. Returns what became of each
    /// locator; the stack sends the [`Delivery::NotShm`] ones another way.
    ///
    /// # Errors
    /// [`TransportError::MessageTooLarge`] (nothing is sent),
    /// [`TransportError::TooManyLocators`].
    pub fn send(&self, bytes: &[u8], locators: &[Locator]) -> Result<SendReport, TransportError> {
        self.state.lock().send(&self.sh, bytes, locators)
    }

    /// A loan for serialising a message straight into a destination's slot:
    /// the first destination that has room lends its slot; on
    /// [`SendLoan::commit`] the message is copied into the others and
    /// published. Outcomes other than `Served` are decided here already
    /// ([`SendLoan::destinations`] is 0 when nobody can take it; the loan
    /// then lends a scratch buffer, so the caller's code stays the same).
    ///
    /// Other sends of this transport wait until the loan is committed or
    /// dropped (dropping it sends nothing).
    ///
    /// # Errors
    /// [`TransportError::TooManyLocators`].
    pub fn loan(&self, locators: &[Locator]) -> Result<SendLoan<'_>, TransportError> {
        SendLoan::new(StateRef::Locked(self.state.lock()), &self.sh, locators)
    }

    /// A [`Sender`] for one thread: the same sends, through its own cache
    /// (and writer entries), without this transport's lock.
    pub fn sender(&self) -> Sender {
        Sender::new(Arc::clone(&self.sh))
    }

    /// Drops cached attachments whose owner died (letting their segments
    /// go); `send` does this on its own about once a second. Returns how
    /// many were dropped.
    pub fn prune(&self) -> usize {
        self.state.lock().sweep(coarse_ms())
    }

    /// The counters of this transport's sends (its [`Sender`]s' once they
    /// are dropped) and of its input ports.
    pub fn stats(&self) -> TransportStats {
        let mut out = self.state.lock().stats();
        let retired = *self.sh.retired.lock();
        out.sent += retired.sent;
        out.dropped += retired.dropped;
        out.unreachable += retired.unreachable;
        let live = self.ports.live.lock();
        for (ring, index) in live.iter() {
            if let Some(s) = ring.upgrade().and_then(|r| r.reader_stats(*index).ok()) {
                out.received += s.received;
                out.lost += s.lost;
            }
        }
        out.received += self.ports.retired_received.load(Ordering::Relaxed);
        out.lost += self.ports.retired_lost.load(Ordering::Relaxed);
        out
    }
}

/// A ring this participant reads: its unicast input port, or its reader
/// of the domain's multicast ring. Dropping it unregisters (and, for a
/// unicast port, removes the ring).
pub struct InputPort {
    reader: Reader<Arc<PosixSlotAllocator>>,
    locator: Locator,
    registry: Arc<PortRegistry>,
}

/// A received message, read in place; the slot is released when it is
/// dropped.
pub struct Received<'a>(Sample<'a, Arc<PosixSlotAllocator>>);

impl Deref for Received<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Received<'_> {
    /// The message's sequence number in its ring.
    pub fn seq(&self) -> u64 {
        self.0.seq()
    }
}

impl std::fmt::Debug for Received<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received").field("seq", &self.seq()).field("len", &self.len()).finish()
    }
}

/// Counters of one input port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Messages this port received.
    pub received: u64,
    /// Messages it lost to `DropOldest` overwrites.
    pub lost: u64,
    /// Messages the senders attached now wrote into it.
    pub sent: u64,
    /// Messages the senders attached now dropped because it was full.
    pub dropped: u64,
}

impl InputPort {
    /// The locator that names this port (announce it).
    pub fn locator(&self) -> Locator {
        self.locator
    }

    /// Whether this is the domain's multicast ring.
    pub fn is_multicast(&self) -> bool {
        self.locator.port == SHM_MULTICAST_PORT
    }

    /// The largest message this port takes.
    pub fn max_message_size(&self) -> usize {
        self.ring().slot_capacity()
    }

    /// The flink file of the ring.
    pub fn flink_path(&self) -> &Path {
        self.ring().flink_path()
    }

    fn ring(&self) -> &PosixSlotAllocator {
        self.reader.backend()
    }

    /// This port as a vendor-parameter announcement.
    pub fn announcement(&self) -> ShmAnnouncement {
        let ring = self.ring();
        let segment = ring.flink_path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        ShmAnnouncement { locator: self.locator, slot_count: ring.info().slot_count, slot_capacity: ring.info().capacity, policy: ring.info().policy, segment }
    }

    fn slot_error(&self, source: SlotError) -> TransportError {
        TransportError::Slot { what: format!("receiving on {}", self.ring().flink_path().display()), source }
    }

    /// The next message, if one is there (no wait).
    ///
    /// # Errors
    /// [`TransportError::Slot`] for a corrupt segment.
    pub fn try_recv(&mut self) -> Result<Option<Received<'_>>, TransportError> {
        let (ring, index) = (self.reader.backend(), self.reader.index());
        match ring.next_unread_read(index) {
            Ok(Some(held)) => Ok(Some(Received(Sample::held(ring, index, held)))),
            // The multicast ring outlives its creator: "no writer attached
            // right now" just means nothing to read yet.
            Ok(None) | Err(SlotError::WritersGone) => Ok(None),
            Err(e) => Err(self.slot_error(e)),
        }
    }

    /// The next message, waiting up to `timeout` for one (spinning
    /// briefly, then parking on a futex).
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Received<'_>>, TransportError> {
        let (ring, index) = (self.reader.backend(), self.reader.index());
        // No clock read here: the ring's own wait keeps the deadline.
        let held = match ring.next_unread_read_timeout(index, timeout) {
            Ok(held) => held,
            Err(SlotError::WritersGone) => wait_without_writers(ring, index, timeout).map_err(|e| self.slot_error(e))?,
            Err(e) => return Err(self.slot_error(e)),
        };
        Ok(held.map(|held| Received(Sample::held(ring, index, held))))
    }

    /// This port's counters (reads the segment: a few `fcntl`s).
    pub fn stats(&self) -> PortStats {
        let own = self.reader.stats().unwrap_or_default();
        let st = self.ring().status();
        PortStats { received: own.received, lost: own.lost, sent: st.sent(), dropped: st.dropped() }
    }
}

/// The rest of a receive on a ring no writer vouches for right now (see
/// [`InputPort::try_recv`]): waits for a message up to `timeout`, counted
/// from here (the ring's own wait stopped at a liveness check, usually
/// within 10 ms of its start), looking again at least every 10 ms.
#[cold]
fn wait_without_writers(ring: &PosixSlotAllocator, index: u8, timeout: Duration) -> Result<Option<(SlotHandle, *const u8, usize)>, SlotError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ring.next_unread_read_timeout(index, left) {
            Err(SlotError::WritersGone) if !left.is_zero() => ring.wait_for_change(ring.notify_generation(), left.min(Duration::from_millis(10))),
            Err(SlotError::WritersGone) => return Ok(None),
            other => return other,
        }
    }
}

impl std::fmt::Debug for InputPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputPort").field("locator", &self.locator).field("flink_path", &self.flink_path()).finish_non_exhaustive()
    }
}

impl Drop for InputPort {
    fn drop(&mut self) {
        let ring = Arc::as_ptr(self.reader.backend());
        let mut live = self.registry.live.lock();
        live.retain(|(w, _)| w.as_ptr() != ring);
        if let Ok(s) = self.reader.stats() {
            self.registry.retired_received.fetch_add(s.received, Ordering::Relaxed);
            self.registry.retired_lost.fetch_add(s.lost, Ordering::Relaxed);
        }
    }
}
