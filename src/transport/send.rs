//! The sending side of the transport: the attachment cache, one send, the
//! loan, and the per-locator report. [`ShmTransport`](super::ShmTransport)
//! keeps one [`SendState`] behind a lock; a [`Sender`] owns its own (no
//! lock: for a stack's writer thread).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use parking_lot::MutexGuard;

use crate::sys::clock::coarse_ms;
use super::{incarnation, multicast_name, port_name, Shared, TransportError, TransportStats, MAX_LOCATORS_PER_SEND};
use crate::locator::{Locator, SHM_MULTICAST_PORT};
use crate::{PosixSlotAllocator, SlotBackend, SlotError, SlotHandle, ALL_READERS};

/// A cached attachment's owner is checked for liveness (one `fcntl`) at
/// most this often per destination by a send.
const PEER_CHECK_MS: u64 = 100;
/// A destination that could not be attached is not tried again by a send
/// for this long (it is reported unreachable meanwhile).
const RETRY_MS: u64 = 100;
/// Every cached attachment is checked this often (during sends), so the
/// ports of peers nobody sends to any more are let go too.
const SWEEP_MS: u64 = 1000;
/// The clock is read on every this many sends (8 ns a read on this
/// machine's vDSO, a tenth of a small message): a sender that keeps sending
/// sees time move at least this often, and an idle one's first sends after
/// a pause may act on a time up to this many sends old (checks come later,
/// never earlier).
const CLOCK_EVERY: u32 = 16;
/// At most this many "could not attach" entries are remembered (a hostile
/// announcement full of bogus ports cannot grow the cache without bound).
const MAX_NEGATIVE: usize = 256;

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

/// Which ring a local SHM locator names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerKey {
    domain: u32,
    port: u32,
    multicast: bool,
}

/// The ring a locator names, if it is a well-formed SHM locator of this
/// host (same namespace id).
fn local_key(sh: &Shared, loc: &Locator) -> Option<PeerKey> {
    let a = loc.shm_address().ok()?;
    if a.namespace != sh.namespace || (a.multicast != (loc.port == SHM_MULTICAST_PORT)) {
        return None;
    }
    Some(PeerKey { domain: a.domain_id, port: loc.port, multicast: a.multicast })
}

/// A cached destination: attached, or known not to attach (until `next_ms`).
struct Peer {
    key: PeerKey,
    ring: Option<PosixSlotAllocator>,
    /// Attached: when its owner's liveness is checked next. Not attached:
    /// when attaching is tried again.
    next_ms: u64,
}

/// What a send does for one locator (8 bytes).
#[derive(Clone, Copy)]
enum Step {
    Done(Delivery),
    /// Same destination as locator `j`.
    Same(u8),
    /// Deliver to cached peer `p`.
    To(u32),
}

/// One sender's state: the attachment cache, the plan of the loan in
/// progress, a scratch buffer for loans nobody can take, and the counters.
///
/// Invariant: an entry of `peers` is never removed or moved (only replaced
/// in place), because a plan holds indices into it while it attaches more.
pub(crate) struct SendState {
    peers: Vec<Peer>,
    steps: [Step; MAX_LOCATORS_PER_SEND],
    scratch: Vec<u8>,
    next_sweep_ms: u64,
    /// The last clock reading and the sends left before the next one.
    clock_ms: u64,
    clock_left: u32,
    sent: u64,
    dropped: u64,
    unreachable: u64,
}

impl SendState {
    pub(crate) fn new(sh: &Shared) -> Self {
        Self {
            peers: Vec::new(),
            steps: [Step::Done(Delivery::NotShm); MAX_LOCATORS_PER_SEND],
            scratch: vec![0; sh.config.slot_capacity],
            next_sweep_ms: 0,
            clock_ms: 0,
            clock_left: 0,
            sent: 0,
            dropped: 0,
            unreachable: 0,
        }
    }

    /// Its counters (ports' fields left 0).
    pub(crate) fn stats(&self) -> TransportStats {
        TransportStats { sent: self.sent, dropped: self.dropped, unreachable: self.unreachable, ..TransportStats::default() }
    }

    /// See [`ShmTransport::is_reachable`](super::ShmTransport::is_reachable).
    pub(crate) fn is_reachable(&mut self, sh: &Shared, locator: &Locator) -> bool {
        local_key(sh, locator).is_some_and(|key| self.resolve(sh, key, coarse_ms(), true).is_some())
    }

    /// The cached destination for `key`, attaching if needed. `fresh`:
    /// check the owner's liveness now and retry a failed attach now
    /// (`is_reachable`); otherwise both are rate-limited.
    fn resolve(&mut self, sh: &Shared, key: PeerKey, now: u64, fresh: bool) -> Option<usize> {
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
        // A unicast ring must be the incarnation the locator names (not a
        // later owner's of the same port number) and have a live owner.
        let ring = PosixSlotAllocator::attach_in(&name, Some(&sh.dir)).ok().filter(|r| key.multicast || (incarnation(r) == key.port >> 16 && r.creator_alive()));
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
    pub(crate) fn sweep(&mut self, now: u64) -> usize {
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

    /// Decides where each locator goes, in order, attaching to new
    /// destinations as needed, and tells `f(state, index, step)`. A locator
    /// listed twice is served once (equal SHM locators name one ring: the
    /// address encodes namespace, domain and kind without slack).
    fn plan(&mut self, sh: &Shared, locators: &[Locator], mut f: impl FnMut(&mut Self, usize, Step)) {
        if self.clock_left == 0 {
            self.clock_ms = coarse_ms();
            self.clock_left = CLOCK_EVERY;
        }
        self.clock_left -= 1;
        let now = self.clock_ms;
        if now >= self.next_sweep_ms {
            self.next_sweep_ms = now + SWEEP_MS;
            self.sweep(now);
        }
        for (i, loc) in locators.iter().enumerate() {
            let step = if let Some(j) = locators[..i].iter().position(|l| l == loc) {
                Step::Same(j as u8)
            } else {
                match local_key(sh, loc) {
                    None if loc.is_shm() => self.unreachable(),
                    None => Step::Done(Delivery::NotShm),
                    Some(key) => match self.resolve(sh, key, now, false) {
                        Some(p) => Step::To(p as u32),
                        None => self.unreachable(),
                    },
                }
            };
            f(self, i, step);
        }
    }

    fn unreachable(&mut self) -> Step {
        self.unreachable += 1;
        Step::Done(Delivery::Unreachable)
    }

    /// One message to every locator it can serve (see
    /// [`ShmTransport::send`](super::ShmTransport::send)).
    pub(crate) fn send(&mut self, sh: &Shared, bytes: &[u8], locators: &[Locator]) -> Result<SendReport, TransportError> {
        sh.check_send(bytes.len(), locators)?;
        let mut report = SendReport::new(locators.len());
        self.plan(sh, locators, |st, i, step| report.outcomes[i] = st.outcome(step, &report, |st, p| st.deliver(p, bytes)));
        Ok(report)
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

    fn ring(&self, p: usize) -> &PosixSlotAllocator {
        self.peers[p].ring.as_ref().expect("planned peers are attached")
    }

    /// Copies `bytes` into peer `p`'s ring and publishes it: reserve a loan
    /// with room for them, copy, commit in place.
    fn deliver(&mut self, p: usize, bytes: &[u8]) -> Delivery {
        let ring = self.ring(p);
        // A growing port moves to larger slots first (a static one, made by
        // a peer configured so, refuses).
        match ring.reserve_for(bytes.len(), ALL_READERS) {
            Ok((h, ptr, _)) => {
                // SAFETY: `ptr` is the writable payload of loan `h`, ours
                // until it is committed or discarded below, with room for
                // `bytes.len()` (`reserve_for`); a `&[u8]` cannot overlap a
                // loaned slot.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
                if ring.commit_in_place(h, bytes.len()).is_ok() {
                    self.sent += 1;
                    Delivery::Served
                } else {
                    let _ = ring.discard_slot(h);
                    self.fail(p)
                }
            }
            Err(SlotError::SampleTooLarge { .. } | SlotError::GenerationsExhausted { .. } | SlotError::Generation { .. }) => {
                ring.record_dropped();
                self.dropped += 1;
                Delivery::TooLarge
            }
            Err(e) => self.refused(p, e),
        }
    }

    /// Delivers the first `len` scratch bytes to peer `p` (a loan nobody
    /// could lend a slot to, whose destinations freed up meanwhile).
    fn deliver_scratch(&mut self, p: usize, len: usize) -> Delivery {
        let bytes = std::mem::take(&mut self.scratch);
        let d = self.deliver(p, &bytes[..len]);
        self.scratch = bytes;
        d
    }

    /// A reservation on peer `p` failed with `e`.
    fn refused(&mut self, p: usize, e: SlotError) -> Delivery {
        match e {
            SlotError::NoFreeSlot | SlotError::WritersFull { .. } => {
                self.ring(p).record_dropped();
                self.dropped += 1;
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
        self.unreachable += 1;
        Delivery::Unreachable
    }
}

/// The state a loan works on: the transport's, locked, or a [`Sender`]'s.
pub(crate) enum StateRef<'a> {
    Locked(MutexGuard<'a, SendState>),
    Owned(&'a mut SendState),
}

impl Deref for StateRef<'_> {
    type Target = SendState;
    fn deref(&self) -> &SendState {
        match self {
            Self::Locked(g) => g,
            Self::Owned(s) => s,
        }
    }
}

impl DerefMut for StateRef<'_> {
    fn deref_mut(&mut self) -> &mut SendState {
        match self {
            Self::Locked(g) => g,
            Self::Owned(s) => s,
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

/// A message being serialised in place; see
/// [`ShmTransport::loan`](super::ShmTransport::loan).
pub struct SendLoan<'a> {
    st: StateRef<'a>,
    len: usize,
    primary: Option<Primary>,
    cap: usize,
}

impl<'a> SendLoan<'a> {
    /// Plans the send and reserves the first destination's slot that fits.
    pub(crate) fn new(mut st: StateRef<'a>, sh: &Shared, locators: &[Locator]) -> Result<Self, TransportError> {
        sh.check_send(0, locators)?;
        st.plan(sh, locators, |st, i, step| st.steps[i] = step);
        let cap = sh.config.slot_capacity;
        let mut primary = None;
        for i in 0..locators.len() {
            let Step::To(p) = st.steps[i] else { continue };
            let p = p as usize;
            let ring = st.ring(p);
            if ring.slot_capacity() < cap {
                continue; // takes a copy at commit, if the message fits
            }
            let outcome = match ring.reserve_loan(ALL_READERS) {
                Ok((handle, ptr, _)) => {
                    primary = Some(Primary { locator: i, peer: p, handle, ptr });
                    break;
                }
                Err(e) => st.refused(p, e),
            };
            st.steps[i] = Step::Done(outcome);
        }
        Ok(Self { st, len: locators.len(), primary, cap })
    }

    /// The buffer to serialise into: a destination's slot (or the scratch
    /// buffer when no destination can take the message), of
    /// [`TransportConfig::max_message_size`](super::TransportConfig::max_message_size)
    /// bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match &self.primary {
            // SAFETY: the slot is loaned to us until commit or discard (the
            // loan holds its sender's state, so nobody else uses this
            // attachment), its payload is at least `cap` bytes (checked when
            // it was chosen), and `&mut self` makes this the only borrow.
            Some(pr) => unsafe { std::slice::from_raw_parts_mut(pr.ptr, self.cap) },
            None => &mut self.st.scratch[..self.cap],
        }
    }

    /// How many destinations will get the message (0: none can; the
    /// caller may skip serialising).
    pub fn destinations(&self) -> usize {
        self.st.steps[..self.len].iter().filter(|s| matches!(s, Step::To(_))).count()
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
        for i in 0..self.len {
            let step = st.steps[i];
            report.outcomes[i] = st.outcome(step, &report, |st, p| match &primary {
                Some(pr) if pr.locator == i => Delivery::Served,
                // SAFETY: the primary slot stays loaned to us (and
                // unchanged) until it is committed below; `len <= cap` of
                // its payload. (It cannot be published first: a reader
                // could release it and a writer reuse it while we copy.)
                Some(pr) => st.deliver(p, unsafe { std::slice::from_raw_parts(pr.ptr, len) }),
                None => st.deliver_scratch(p, len),
            });
        }
        if let Some(pr) = primary {
            let ring = st.ring(pr.peer);
            let d = if ring.commit_in_place(pr.handle, len).is_ok() {
                st.sent += 1;
                Delivery::Served
            } else {
                let _ = ring.discard_slot(pr.handle);
                st.fail(pr.peer)
            };
            for i in pr.locator..self.len {
                if i == pr.locator || matches!(st.steps[i], Step::Same(j) if usize::from(j) == pr.locator) {
                    report.outcomes[i] = d;
                }
            }
        }
        Ok(report)
    }
}

impl std::fmt::Debug for SendLoan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendLoan").field("locators", &self.len).field("destinations", &self.destinations()).field("in_place", &self.primary.is_some()).field("capacity", &self.cap).finish_non_exhaustive()
    }
}

impl Drop for SendLoan<'_> {
    fn drop(&mut self) {
        if let Some(pr) = self.primary.take() {
            let _ = self.st.ring(pr.peer).discard_slot(pr.handle);
        }
    }
}

/// A sender for one thread: its own attachment cache (and its own writer
/// entry in every destination), so its sends take no lock. For a stack's
/// writer thread; made by [`ShmTransport::sender`](super::ShmTransport::sender).
/// Its counters join the transport's [`stats`](super::ShmTransport::stats)
/// when it is dropped.
pub struct Sender {
    sh: Arc<Shared>,
    st: SendState,
}

impl Sender {
    pub(crate) fn new(sh: Arc<Shared>) -> Self {
        let st = SendState::new(&sh);
        Self { sh, st }
    }

    /// As [`ShmTransport::send`](super::ShmTransport::send).
    ///
    /// # Errors
    /// As [`ShmTransport::send`](super::ShmTransport::send).
    pub fn send(&mut self, bytes: &[u8], locators: &[Locator]) -> Result<SendReport, TransportError> {
        self.st.send(&self.sh, bytes, locators)
    }

    /// As [`ShmTransport::loan`](super::ShmTransport::loan).
    ///
    /// # Errors
    /// As [`ShmTransport::loan`](super::ShmTransport::loan).
    pub fn loan(&mut self, locators: &[Locator]) -> Result<SendLoan<'_>, TransportError> {
        SendLoan::new(StateRef::Owned(&mut self.st), &self.sh, locators)
    }

    /// As [`ShmTransport::is_reachable`](super::ShmTransport::is_reachable),
    /// through this sender's cache.
    pub fn is_reachable(&mut self, locator: &Locator) -> bool {
        self.st.is_reachable(&self.sh, locator)
    }

    /// This sender's counters (sent, dropped, unreachable).
    pub fn stats(&self) -> TransportStats {
        self.st.stats()
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.sh.retire(&self.st.stats());
    }
}
