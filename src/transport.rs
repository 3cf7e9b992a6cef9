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

use parking_lot::{Mutex, MutexGuard};

use crate::locator::{Locator, NamespaceId, ShmAddress, ShmAnnouncement, SHM_MULTICAST_PORT};
use crate::posix::{default_discovery_dir, flink};
use crate::{OpenError, OverflowPolicy, PosixSlotAllocator, Reader, Sample, SlotBackend, SlotError, SlotHandle, ALL_READERS};

/// Most locators one [`ShmTransport::send`] takes (a [`SendReport`] has one
/// outcome per locator).
pub const MAX_LOCATORS_PER_SEND: usize = 64;
/// Highest unicast port number [`ShmTransport::open_input`] tries.
pub const MAX_PORTS: u32 = 4096;
/// A cached attachment's owner is checked for liveness (one `fcntl`) at
/// most this often per destination by `send`.
const PEER_CHECK_MS: u64 = 100;
/// A destination that could not be attached is not tried again by `send`
/// for this long (it is reported unreachable meanwhile).
const RETRY_MS: u64 = 100;
/// Every cached attachment is checked this often (during sends), so the
/// ports of peers nobody sends to any more are let go too.
const SWEEP_MS: u64 = 1000;
/// At most this many "could not attach" entries are remembered (a hostile
/// announcement full of bogus ports cannot grow the cache without bound).
const MAX_NEGATIVE: usize = 256;

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
        }
    }

    /// Slots per input port (rounded up to a power of two).
    #[must_use]
    pub fn slot_count(mut self, n: usize) -> Self {
        self.slot_count = n;
        self
    }

    /// Bytes per slot: the largest message ([`max_message_size`](Self::max_message_size)).
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
    /// [`default_discovery_dir`](crate::default_discovery_dir)). Every
    /// participant of a domain must use the same one.
    #[must_use]
    pub fn discovery_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.discovery_dir = Some(dir.into());
        self
    }

    /// The domain id.
    pub fn domain_id(&self) -> u32 {
        self.domain_id
    }

    /// The largest message [`ShmTransport::send`] takes: the stack's
    /// fragment size.
    pub fn max_message_size(&self) -> usize {
        self.slot_capacity
    }

    fn check(&self) -> Result<(), TransportError> {
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
        if self.max_senders == 0 || self.max_senders > 64 {
            return bad("max_senders", self.max_senders as usize, "1 to 64");
        }
        Ok(())
    }
}

/// What became of a message for one locator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Delivery {
    /// Written into the destination's ring.
    Served,
    /// The destination's ring was full (or every sender entry of it taken):
    /// dropped and counted. The stack's reliability repairs it, or retry.
    Full,
    /// Larger than the destination's slots (a peer configured with a
    /// smaller slot capacity): dropped and counted.
    TooLarge,
    /// A shared-memory locator this transport cannot serve: another host,
    /// user or IPC namespace, or a port that does not exist (any more).
    Unreachable,
    /// Not a shared-memory locator: for another transport (UDP).
    NotShm,
}

/// One [`Delivery`] per locator given to a send, in the same order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    outcomes: [Delivery; MAX_LOCATORS_PER_SEND],
    len: u8,
}

impl SendReport {
    fn new(len: usize) -> Self {
        Self { outcomes: [Delivery::NotShm; MAX_LOCATORS_PER_SEND], len: len as u8 }
    }

    /// The outcome for each locator, in order.
    pub fn outcomes(&self) -> &[Delivery] {
        &self.outcomes[..usize::from(self.len)]
    }

    /// The outcome for locator `i`.
    pub fn outcome(&self, i: usize) -> Option<Delivery> {
        self.outcomes().get(i).copied()
    }

    fn count(&self, pred: impl Fn(Delivery) -> bool) -> usize {
        self.outcomes().iter().filter(|&&d| pred(d)).count()
    }

    /// Locators served.
    pub fn served(&self) -> usize {
        self.count(|d| d == Delivery::Served)
    }

    /// Locators whose destination dropped the message (full, or too small).
    pub fn dropped(&self) -> usize {
        self.count(|d| matches!(d, Delivery::Full | Delivery::TooLarge))
    }

    /// Whether every locator was served.
    pub fn all_served(&self) -> bool {
        self.served() == usize::from(self.len)
    }

    /// The locators (of the list given to the send) with outcome `d`.
    pub fn with<'l>(&self, locators: &'l [Locator], d: Delivery) -> impl Iterator<Item = &'l Locator> + 'l {
        let outcomes = self.outcomes;
        locators.iter().zip(outcomes).filter(move |(_, o)| *o == d).map(|(l, _)| l)
    }

    /// The locators another transport must serve: those that are not
    /// shared-memory locators.
    pub fn not_shm<'l>(&self, locators: &'l [Locator]) -> impl Iterator<Item = &'l Locator> + 'l {
        self.with(locators, Delivery::NotShm)
    }
}

impl std::fmt::Debug for SendReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.outcomes()).finish()
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

/// Which ring a local SHM locator names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerKey {
    domain: u32,
    port: u32,
    multicast: bool,
}

/// A cached destination: attached, or known not to attach (until `next_ms`).
struct Peer {
    key: PeerKey,
    ring: Option<PosixSlotAllocator>,
    /// Attached: when its owner's liveness is checked next. Not attached:
    /// when attaching is tried again.
    next_ms: u64,
}

/// What `send` does for each locator (8 bytes: a loan keeps 64 of them).
#[derive(Clone, Copy)]
enum Step {
    Done(Delivery),
    /// Same destination as locator `j`.
    Same(u8),
    /// Deliver to cached peer `p`.
    To(u32),
}

/// The sending side, behind one lock: the attachment cache, a scratch
/// buffer for loans nobody can take, and the send counters.
///
/// Invariant: an entry of `peers` is never removed or moved (only replaced
/// in place), because a plan holds indices into it while it attaches more.
struct SendState {
    peers: Vec<Peer>,
    scratch: Vec<u8>,
    next_sweep_ms: u64,
    sent: u64,
    dropped: u64,
    unreachable: u64,
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
/// are serialised by one lock (uncontended, it costs tens of nanoseconds).
pub struct ShmTransport {
    config: TransportConfig,
    namespace: NamespaceId,
    dir: PathBuf,
    state: Mutex<SendState>,
    ports: Arc<PortRegistry>,
}

impl std::fmt::Debug for ShmTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmTransport").field("config", &self.config).field("namespace", &self.namespace).field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Milliseconds of `CLOCK_MONOTONIC_COARSE`: a few nanoseconds through the
/// vDSO, good to a few milliseconds, which is all the rate limits need.
fn coarse_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // the kernel knows (Linux ≥ 2.6.32).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        return BASE.get_or_init(Instant::now).elapsed().as_millis() as u64;
    }
    (ts.tv_sec as u64).wrapping_mul(1000).wrapping_add(ts.tv_nsec as u64 / 1_000_000)
}

fn port_name(domain: u32, port: u32) -> String {
    format!("dds-d{domain}-p{port}")
}

fn multicast_name(domain: u32) -> String {
    format!("dds-d{domain}-multicast")
}

fn not_found(e: &OpenError) -> bool {
    matches!(e, OpenError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
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
        config.check()?;
        let namespace = NamespaceId::current().map_err(TransportError::Namespace)?;
        let dir = config.discovery_dir.clone().unwrap_or_else(default_discovery_dir);
        let open_err = |source| TransportError::Open { what: "discovery directory".into(), source };
        let dir = flink::normalize_dir(&dir).map_err(open_err)?;
        flink::ensure_dir(&dir).map_err(open_err)?;
        Ok(Self {
            state: Mutex::new(SendState { peers: Vec::new(), scratch: vec![0; config.slot_capacity], next_sweep_ms: 0, sent: 0, dropped: 0, unreachable: 0 }),
            config,
            namespace,
            dir,
            ports: Arc::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// This process's same-host identity (carried in its SHM locators).
    pub fn namespace_id(&self) -> NamespaceId {
        self.namespace
    }

    /// The discovery directory in use.
    pub fn discovery_dir(&self) -> &Path {
        &self.dir
    }

    fn address(&self, multicast: bool) -> ShmAddress {
        ShmAddress { namespace: self.namespace, domain_id: self.config.domain_id, multicast }
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
        let c = &self.config;
        for port in 1..=MAX_PORTS {
            let name = port_name(c.domain_id, port);
            let made = PosixSlotAllocator::builder(c.slot_count, c.slot_capacity)
                .overflow_policy(c.overflow)
                .max_readers(1)
                .max_writers(c.max_senders)
                .discovery_dir(&self.dir)
                .create(&name);
            match made {
                Ok(ring) => return self.port(ring, Locator::shm(self.address(false), port)),
                // Live, foreign, or being reclaimed right now: the next one.
                Err(OpenError::InUse { .. } | OpenError::Exists(_)) => {}
                Err(OpenError::Io { source, .. }) if source.kind() == io::ErrorKind::WouldBlock => {}
                Err(source) => return Err(TransportError::Open { what: format!("input port {}", self.dir.join(name).display()), source }),
            }
        }
        Err(TransportError::PortsExhausted { domain: c.domain_id, max: MAX_PORTS, dir: self.dir.clone() })
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
        let c = &self.config;
        let name = multicast_name(c.domain_id);
        let what = || format!("multicast ring {}", self.dir.join(&name).display());
        let mut last = None;
        // Attach, or create if there is none; a creator racing us, or the
        // last participant removing it right now, makes us go round again.
        for _ in 0..64 {
            match PosixSlotAllocator::attach_in(&name, Some(&self.dir)) {
                Ok(ring) => return self.port(ring, self.multicast_locator()),
                Err(e) if not_found(&e) => {}
                Err(source) => return Err(TransportError::Open { what: what(), source }),
            }
            let made = PosixSlotAllocator::builder(c.multicast_slot_count, c.slot_capacity)
                .overflow_policy(c.overflow)
                .max_readers(64)
                .max_writers(c.max_senders)
                .remove_on_drop(false)
                .discovery_dir(&self.dir)
                .create(&name);
            match made {
                Ok(ring) => return self.port(ring, self.multicast_locator()),
                Err(e @ (OpenError::InUse { .. } | OpenError::Exists(_))) => last = Some(e),
                Err(OpenError::Io { source, .. }) if source.kind() == io::ErrorKind::WouldBlock => {}
                Err(source) => return Err(TransportError::Open { what: what(), source }),
            }
            std::thread::yield_now();
        }
        let source = last.unwrap_or(OpenError::Io { op: "attach or create", path: self.dir.join(&name), source: io::ErrorKind::WouldBlock.into() });
        Err(TransportError::Open { what: what(), source })
    }

    fn port(&self, ring: PosixSlotAllocator, locator: Locator) -> Result<InputPort, TransportError> {
        let ring = Arc::new(ring);
        let reader = Reader::new(Arc::clone(&ring)).map_err(|source| TransportError::Slot { what: format!("registering a reader on {}", ring.flink_path().display()), source })?;
        self.ports.live.lock().push((Arc::downgrade(&ring), reader.index()));
        Ok(InputPort { reader, locator, registry: Arc::clone(&self.ports) })
    }

    /// The ring a locator names, if it is a well-formed SHM locator of this
    /// host (same namespace id).
    fn local_key(&self, loc: &Locator) -> Option<PeerKey> {
        let a = loc.shm_address().ok()?;
        if a.namespace != self.namespace || (a.multicast != (loc.port == SHM_MULTICAST_PORT)) {
            return None;
        }
        Some(PeerKey { domain: a.domain_id, port: loc.port, multicast: a.multicast })
    }

    /// Whether shared memory reaches `locator`: it is an SHM locator with
    /// this host's namespace id (same boot, IPC namespace, `/dev/shm` and
    /// user), and the segment it names opens, validates and (for a unicast
    /// port) has a live owner. Attaches on success (the attachment is kept
    /// for sends).
    pub fn is_reachable(&self, locator: &Locator) -> bool {
        let Some(key) = self.local_key(locator) else { return false };
        let mut st = self.state.lock();
        st.resolve(key, coarse_ms(), true, self).is_some()
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

    fn check_send(&self, len: usize, locators: &[Locator]) -> Result<(), TransportError> {
        if len > self.config.slot_capacity {
            return Err(TransportError::MessageTooLarge { len, max: self.config.slot_capacity });
        }
        if locators.len() > MAX_LOCATORS_PER_SEND {
            return Err(TransportError::TooManyLocators { count: locators.len(), max: MAX_LOCATORS_PER_SEND });
        }
        Ok(())
    }

    /// Decides where each locator goes, in order, attaching to new
    /// destinations as needed, and tells `f(state, index, step)`. A locator
    /// listed twice is served once (equal SHM locators name one ring: the
    /// address encodes namespace, domain and kind without slack).
    fn plan(&self, st: &mut SendState, locators: &[Locator], mut f: impl FnMut(&mut SendState, usize, Step)) {
        let now = coarse_ms();
        if now >= st.next_sweep_ms {
            st.next_sweep_ms = now + SWEEP_MS;
            st.sweep(now);
        }
        for (i, loc) in locators.iter().enumerate() {
            let step = if let Some(j) = locators[..i].iter().position(|l| l == loc) {
                Step::Same(j as u8)
            } else {
                match self.local_key(loc) {
                    None if loc.is_shm() => Step::Done(Delivery::Unreachable),
                    None => Step::Done(Delivery::NotShm),
                    Some(key) => st.resolve(key, now, false, self).map_or(Step::Done(Delivery::Unreachable), |p| Step::To(p as u32)),
                }
            };
            f(st, i, step);
        }
    }

    /// Sends `bytes` to every locator it can serve, without blocking: one
    /// copy into each destination's ring. Returns what became of each
    /// locator; the stack sends the [`Delivery::NotShm`] ones another way.
    ///
    /// # Errors
    /// [`TransportError::MessageTooLarge`] (nothing is sent),
    /// [`TransportError::TooManyLocators`].
    pub fn send(&self, bytes: &[u8], locators: &[Locator]) -> Result<SendReport, TransportError> {
        self.check_send(bytes.len(), locators)?;
        let mut st = self.state.lock();
        let mut report = SendReport::new(locators.len());
        self.plan(&mut st, locators, |st, i, step| report.outcomes[i] = st.outcome(step, &report, |st, p| st.deliver(p, bytes)));
        st.count(&report);
        Ok(report)
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
        self.check_send(0, locators)?;
        let mut st = self.state.lock();
        let mut steps = [Step::Done(Delivery::NotShm); MAX_LOCATORS_PER_SEND];
        self.plan(&mut st, locators, |_, i, step| steps[i] = step);
        let cap = self.config.slot_capacity;
        let mut primary = None;
        for (i, step) in steps.iter_mut().enumerate().take(locators.len()) {
            let Step::To(p) = *step else { continue };
            let p = p as usize;
            let ring = st.peers[p].ring.as_ref().expect("planned peers are attached");
            if ring.slot_capacity() < cap {
                continue; // takes a copy at commit, if the message fits
            }
            match ring.reserve_slot(ALL_READERS) {
                Ok(handle) => match ring.slot_data_ptr(handle) {
                    Ok((ptr, _)) => {
                        primary = Some(Primary { locator: i, peer: p, handle, ptr });
                        break;
                    }
                    Err(_) => {
                        let _ = ring.discard_slot(handle);
                        *step = Step::Done(st.fail(p));
                    }
                },
                Err(e) => *step = Step::Done(st.refused(p, e)),
            }
        }
        Ok(SendLoan { st, steps, len: locators.len(), primary, cap })
    }

    /// Drops cached attachments whose owner died (letting their segments
    /// go); `send` does this on its own about once a second. Returns how
    /// many were dropped.
    pub fn prune(&self) -> usize {
        self.state.lock().sweep(coarse_ms())
    }

    /// The counters of this transport's sends and input ports.
    pub fn stats(&self) -> TransportStats {
        let (sent, dropped, unreachable) = {
            let st = self.state.lock();
            (st.sent, st.dropped, st.unreachable)
        };
        let mut out = TransportStats { sent, dropped, unreachable, ..TransportStats::default() };
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

impl SendState {
    /// The cached destination for `key`, attaching if needed. `fresh`:
    /// check the owner's liveness now and retry a failed attach now
    /// (`is_reachable`); otherwise both are rate-limited.
    fn resolve(&mut self, key: PeerKey, now: u64, fresh: bool, t: &ShmTransport) -> Option<usize> {
        let found = self.peers.iter().position(|p| p.key == key);
        if let Some(i) = found {
            let p = &mut self.peers[i];
            match &p.ring {
                Some(ring) => {
                    if !fresh && now < p.next_ms {
                        return Some(i);
                    }
                    p.next_ms = now + PEER_CHECK_MS;
                    if key.multicast || ring.creator_alive() {
                        return Some(i);
                    }
                    // The owner died: let the segment go (the last one out
                    // removes it) and look again below — a new owner may
                    // have reclaimed the port.
                    p.ring = None;
                }
                None if !fresh && now < p.next_ms => return None,
                None => {}
            }
        }
        let name = if key.multicast { multicast_name(key.domain) } else { port_name(key.domain, key.port) };
        let ring = PosixSlotAllocator::attach_in(&name, Some(&t.dir)).ok().filter(|r| key.multicast || r.creator_alive());
        let attached = ring.is_some();
        let entry = Peer { key, ring, next_ms: now + if attached { PEER_CHECK_MS } else { RETRY_MS } };
        let i = match found {
            Some(i) => {
                self.peers[i] = entry;
                i
            }
            // Too many failures remembered: this one takes the place of the
            // first (in place: indices a plan holds must not move).
            None if !attached && self.peers.iter().filter(|p| p.ring.is_none()).count() >= MAX_NEGATIVE => {
                let old = self.peers.iter().position(|p| p.ring.is_none()).expect("counted above");
                self.peers[old] = entry;
                old
            }
            None => {
                self.peers.push(entry);
                self.peers.len() - 1
            }
        };
        attached.then_some(i)
    }

    /// Checks every attached destination's owner; drops the dead.
    fn sweep(&mut self, now: u64) -> usize {
        let mut dropped = 0;
        for p in &mut self.peers {
            if let Some(ring) = &p.ring {
                if !p.key.multicast && !ring.creator_alive() {
                    p.ring = None;
                    p.next_ms = now + RETRY_MS;
                    dropped += 1;
                }
            }
        }
        dropped
    }

    /// Copies `bytes` into peer `p`'s ring and publishes it.
    fn deliver(&mut self, p: usize, bytes: &[u8]) -> Delivery {
        let ring = self.peers[p].ring.as_ref().expect("planned peers are attached");
        if bytes.len() > ring.slot_capacity() {
            ring.record_dropped();
            return Delivery::TooLarge;
        }
        match ring.reserve_slot(ALL_READERS) {
            Ok(h) => match ring.commit_slot(h, bytes) {
                Ok(_) => Delivery::Served,
                Err(_) => {
                    let _ = ring.discard_slot(h);
                    self.fail(p)
                }
            },
            Err(e) => self.refused(p, e),
        }
    }

    /// A reservation on peer `p` failed with `e`.
    fn refused(&mut self, p: usize, e: SlotError) -> Delivery {
        match e {
            SlotError::NoFreeSlot | SlotError::WritersFull { .. } => {
                if let Some(ring) = &self.peers[p].ring {
                    ring.record_dropped();
                }
                Delivery::Full
            }
            _ => self.fail(p),
        }
    }

    /// Peer `p`'s segment misbehaved (corrupt): let it go, try again later.
    fn fail(&mut self, p: usize) -> Delivery {
        let peer = &mut self.peers[p];
        peer.ring = None;
        peer.next_ms = coarse_ms() + RETRY_MS;
        Delivery::Unreachable
    }

    /// The outcome of one step: `deliver(self, peer)` for a destination; a
    /// duplicate gets its first's outcome from `report`.
    fn outcome(&mut self, step: Step, report: &SendReport, deliver: impl FnOnce(&mut Self, usize) -> Delivery) -> Delivery {
        match step {
            Step::Done(d) => d,
            Step::Same(j) => report.outcomes[usize::from(j)],
            Step::To(p) => deliver(self, p as usize),
        }
    }

    fn count(&mut self, report: &SendReport) {
        for d in report.outcomes() {
            match d {
                Delivery::Served => self.sent += 1,
                Delivery::Full | Delivery::TooLarge => self.dropped += 1,
                Delivery::Unreachable => self.unreachable += 1,
                Delivery::NotShm => {}
            }
        }
    }
}

/// The destination slot a [`SendLoan`] lends.
struct Primary {
    locator: usize,
    peer: usize,
    handle: SlotHandle,
    ptr: *mut u8,
}

/// A message being serialised in place; see [`ShmTransport::loan`].
pub struct SendLoan<'a> {
    st: MutexGuard<'a, SendState>,
    steps: [Step; MAX_LOCATORS_PER_SEND],
    len: usize,
    primary: Option<Primary>,
    cap: usize,
}

impl SendLoan<'_> {
    /// The buffer to serialise into: a destination's slot (or the scratch
    /// buffer when no destination can take the message), of
    /// [`TransportConfig::max_message_size`] bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match &self.primary {
            // SAFETY: the slot is loaned to us until commit or discard (the
            // loan holds the transport's send lock, so nobody else uses this
            // attachment), its payload is at least `cap` bytes (checked when
            // it was chosen), and `&mut self` makes this the only borrow.
            Some(pr) => unsafe { std::slice::from_raw_parts_mut(pr.ptr, self.cap) },
            None => &mut self.st.scratch[..self.cap],
        }
    }

    /// How many destinations will get the message (0: none can; the
    /// caller may skip serialising).
    pub fn destinations(&self) -> usize {
        let primary = usize::from(self.primary.is_some());
        primary + self.steps[..self.len].iter().enumerate().filter(|(i, s)| matches!(s, Step::To(_)) && self.primary.as_ref().is_none_or(|p| p.locator != *i)).count()
    }

    /// Publishes the first `len` bytes to every destination (a copy into
    /// each but the one lending its slot) and reports what became of each
    /// locator.
    ///
    /// # Errors
    /// [`TransportError::MessageTooLarge`] if `len` exceeds the buffer
    /// (nothing is sent).
    pub fn commit(mut self, len: usize) -> Result<SendReport, TransportError> {
        if len > self.cap {
            return Err(TransportError::MessageTooLarge { len, max: self.cap });
        }
        let primary = self.primary.take();
        let st = &mut *self.st;
        let mut report = SendReport::new(self.len);
        for (i, &step) in self.steps[..self.len].iter().enumerate() {
            report.outcomes[i] = st.outcome(step, &report, |st, p| match &primary {
                Some(pr) if pr.locator == i => Delivery::Served,
                // SAFETY: the primary slot stays loaned to us (and
                // unchanged) until it is committed below; `len <= cap` of
                // its payload.
                Some(pr) => st.deliver(p, unsafe { std::slice::from_raw_parts(pr.ptr, len) }),
                None => st.deliver_scratch(p, len),
            });
        }
        if let Some(pr) = primary {
            let ring = st.peers[pr.peer].ring.as_ref().expect("the primary stays attached");
            if ring.commit_in_place(pr.handle, len).is_err() {
                let _ = ring.discard_slot(pr.handle);
                report.outcomes[pr.locator] = st.fail(pr.peer);
                for i in 0..self.len {
                    if matches!(self.steps[i], Step::Same(j) if usize::from(j) == pr.locator) {
                        report.outcomes[i] = report.outcomes[pr.locator];
                    }
                }
            }
        }
        st.count(&report);
        Ok(report)
    }
}

impl SendState {
    /// Delivers the first `len` scratch bytes to peer `p` (a loan nobody
    /// could lend a slot to, whose destinations freed up meanwhile).
    fn deliver_scratch(&mut self, p: usize, len: usize) -> Delivery {
        let bytes = std::mem::take(&mut self.scratch);
        let d = self.deliver(p, &bytes[..len]);
        self.scratch = bytes;
        d
    }
}

impl Drop for SendLoan<'_> {
    fn drop(&mut self) {
        if let Some(pr) = self.primary.take() {
            if let Some(ring) = &self.st.peers[pr.peer].ring {
                let _ = ring.discard_slot(pr.handle);
            }
        }
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
        match ring.next_unread_slot(index) {
            Ok(Some(h)) => Sample::take(ring, index, h).map(|s| Some(Received(s))).map_err(|e| self.slot_error(e)),
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
        let deadline = Instant::now() + timeout;
        let handle = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ring.next_unread_slot_timeout(index, left) {
                Ok(h) => break h,
                // See `try_recv`; liveness checks are rate-limited, so this
                // goes round at most every few milliseconds.
                Err(SlotError::WritersGone) if !left.is_zero() => ring.wait_for_change(ring.notify_generation(), left.min(Duration::from_millis(10))),
                Err(SlotError::WritersGone) => break None,
                Err(e) => return Err(self.slot_error(e)),
            }
        };
        match handle {
            Some(h) => Sample::take(ring, index, h).map(|s| Some(Received(s))).map_err(|e| self.slot_error(e)),
            None => Ok(None),
        }
    }

    /// This port's counters (reads the segment: a few `fcntl`s).
    pub fn stats(&self) -> PortStats {
        let own = self.reader.stats().unwrap_or_default();
        let st = self.ring().status();
        PortStats { received: own.received, lost: own.lost, sent: st.sent(), dropped: st.dropped() }
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
