//! iceoryx2 0.10.0 under test: two publish-subscribe services of `[u8]`
//! slices (`<tag>/ping`: parent → peers, `<tag>/pong`: peer → parent),
//! written in place through `loan_slice_uninit` + `write_from_slice` and read
//! in place through the `Sample` that `receive()` returns.
//!
//! Every queue is [`DEPTH`] deep (`subscriber_max_buffer_size`), history 0,
//! `enable_safe_overflow(false)` and the publishers' backpressure strategy is
//! `RetryUntilDelivered`: a full subscriber queue makes `send()` wait (inside
//! iceoryx2: 10 000 `sched_yield`s, then 100 µs sleeps, then 10 ms sleeps),
//! nothing is ever dropped. A backpressure handler runs the liveness check
//! ([`Idle::check`]) every [`SLICE`] while `send()` waits, so a dead reader
//! cannot hang the parent.
//!
//! * poll: spin on `Subscriber::receive` through [`Idle::spin`].
//! * blocking: one event service per direction (`<tag>/ping-ev`,
//!   `<tag>/pong-ev`); the sender calls `Notifier::notify` after every
//!   `send()` (it reaches every listener, one per reader), the receiver tries
//!   `receive()` first and, when empty, waits on its `Listener` with
//!   `timed_wait` (≤ [`SLICE`]), which also drains the notifications.
//!
//! The publisher waits inside iceoryx2 in both modes: there is no
//! non-blocking "queue full" result short of discarding the sample, and no
//! wake-up for "room again" in the event mechanism.
//!
//! Throughput reuses the ping service; the pong direction exists only with
//! one reader (fan-out peers only consume). Peers create their own ports
//! (pong publisher and its data segment, listener sockets, node files): in
//! iceoryx2 every port is owned by the process that created it.
//!
//! Isolation: every case has its own iceoryx2 [`Config`] (defaults, no config
//! file read) whose root path is `spec.dir/iox2` and whose prefix is
//! `iox2_<tag>_`: files under the root, POSIX shared memory
//! `/dev/shm/iox2_<tag>_*`. Even after a clean shutdown iceoryx2 keeps a
//! persistent `…_node.0_10_0.global_mgmt` shm object (the node counter of the
//! config) and the empty `services/`, `nodes/` directories; [`cleanup`]
//! removes those and whatever a killed peer left. The listeners' Unix sockets
//! live in the root, so `len(spec.dir) + len(tag)` must stay ≤ 50 bytes
//! (`sun_path`); [`Parent::create`] / [`Peer::attach`] say so otherwise.

use std::ffi::CString;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iceoryx2::config::Config;
use iceoryx2::node::{Node, NodeBuilder, NodeState};
use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::{BackpressureAction, BackpressureInfo};
use iceoryx2::prelude::{
    ipc, set_log_level, AllocationStrategy, BackpressureStrategy, CallbackProgression, FileName, LogLevel, NodeName, SemanticString, ServiceName,
    SignalHandlingMode,
};

use flink::bench::drive::{check_len, copy_out, head, put_head, take_sample, EchoSide, PingSide, PubSide, SubSide, STOP};
use flink::bench::error::{system_error, BenchError, Result};
use flink::bench::proc::{Idle, Watch, STALL};

use crate::spec::{Spec, DEPTH};

const SYSTEM: &str = "iceoryx2";
/// Longest single blocking wait; liveness is checked between two.
const SLICE: Duration = Duration::from_millis(100);
/// Longest path of a Unix socket (`sun_path` minus the terminating NUL).
const SUN_PATH_MAX: usize = 107;

type Svc = ipc::Service;
type Pub = Publisher<Svc, [u8], ()>;
type Sub = Subscriber<Svc, [u8], ()>;
type PubSubService = iceoryx2::service::port_factory::publish_subscribe::PortFactory<Svc, [u8], ()>;
type EventService = iceoryx2::service::port_factory::event::PortFactory<Svc>;

/// An error of ours about iceoryx2's setup (no iceoryx2 error value).
fn setup_error(op: &str, detail: String) -> BenchError {
    BenchError::System { system: SYSTEM, op: op.to_owned(), detail }
}

/// Where the case keeps its iceoryx2 files.
fn root_dir(spec: &Spec) -> PathBuf {
    spec.dir.join("iox2")
}

/// Prefix of every file and shared-memory object of the case.
fn prefix(spec: &Spec) -> String {
    format!("iox2_{}_", spec.tag)
}

fn service_names(tag: &str) -> [String; 4] {
    [format!("{tag}/ping"), format!("{tag}/pong"), format!("{tag}/ping-ev"), format!("{tag}/pong-ev")]
}

/// The case's own configuration: root path inside `spec.dir`, prefix from
/// the tag, everything else iceoryx2's defaults (no config file is read).
fn config(spec: &Spec) -> Result<Config> {
    let root = root_dir(spec);
    let root_str = root.to_str().ok_or_else(|| setup_error("use the case directory", format!("{} is not UTF-8", root.display())))?;
    let mut cfg = Config::default();
    let path = iceoryx2::prelude::Path::new(root_str.as_bytes()).map_err(system_error(SYSTEM, format!("use {root_str} as root path")))?;
    cfg.global.set_root_path(&path);
    let pre = prefix(spec);
    cfg.global.prefix = FileName::new(pre.as_bytes()).map_err(system_error(SYSTEM, format!("use {pre} as prefix")))?;
    // The event listeners are Unix datagram sockets named
    // `<root>/<prefix><listener id: u128, up to 39 decimal digits>.event`:
    // refuse a root too long for one (iceoryx2 would fail on it later).
    let socket_len = root_str.len() + 1 + pre.len() + 39 + ".event".len();
    if socket_len > SUN_PATH_MAX {
        return Err(setup_error("place its sockets", format!("{root_str} is too long: socket paths would be {socket_len} bytes, at most {SUN_PATH_MAX} fit")));
    }
    Ok(cfg)
}

fn node(cfg: &Config, name: &str) -> Result<Node<Svc>> {
    // iceoryx2 must never write to stdout (the peer's protocol channel); with
    // `default-features = false` its logger is the null logger anyway.
    set_log_level(LogLevel::Error);
    let name = NodeName::new(name).map_err(system_error(SYSTEM, "name the node"))?;
    NodeBuilder::new()
        .config(cfg)
        .name(&name)
        // The harness installs its own SIGINT/SIGTERM handlers.
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<Svc>()
        .map_err(system_error(SYSTEM, "create node"))
}

fn service_name(name: &str) -> Result<ServiceName> {
    ServiceName::new(name).map_err(system_error(SYSTEM, format!("name service {name}")))
}

/// Creates (`create == true`) or opens a `[u8]` publish-subscribe service
/// with the bench's QoS (checked against the existing one when opening).
fn pubsub(node: &Node<Svc>, name: &str, subscribers: usize, create: bool) -> Result<PubSubService> {
    let builder = node
        .service_builder(&service_name(name)?)
        .publish_subscribe::<[u8]>()
        .subscriber_max_buffer_size(DEPTH)
        .history_size(0)
        .enable_safe_overflow(false)
        .subscriber_max_borrowed_samples(1)
        .max_publishers(1)
        .max_subscribers(subscribers)
        .max_nodes(subscribers + 1);
    if create {
        builder.create().map_err(system_error(SYSTEM, format!("create service {name}")))
    } else {
        builder.open().map_err(system_error(SYSTEM, format!("open service {name}")))
    }
}

/// Creates or opens an event service with one notifier and `listeners`
/// listeners.
fn event(node: &Node<Svc>, name: &str, listeners: usize, create: bool) -> Result<EventService> {
    let builder = node.service_builder(&service_name(name)?).event().max_notifiers(1).max_listeners(listeners).max_nodes(listeners + 1);
    if create {
        builder.create().map_err(system_error(SYSTEM, format!("create service {name}")))
    } else {
        builder.open().map_err(system_error(SYSTEM, format!("open service {name}")))
    }
}

/// What the backpressure handler needs while `send()` waits for room in a
/// full subscriber queue: the caller's liveness check and its bookkeeping.
struct Pending {
    /// The caller's [`Watch`], set only for the duration of one `send()`.
    watch: Option<NonNull<Watch<'static>>>,
    idle: Idle,
    /// Elapsed wait time at which the next liveness check is due.
    next_check: Duration,
    /// Why the wait was given up.
    failure: Option<BenchError>,
}

// SAFETY: the only non-`Send` field is the `Watch` pointer (`Idle` and
// `BenchError` are `Send`, checked at compile time below), which is set and
// cleared by the thread that calls `send()` around that call, and only
// dereferenced by the backpressure handler, which iceoryx2 calls
// synchronously from inside that `send()` on the same thread.
unsafe impl Send for Pending {}

const _: fn() = || {
    fn send<T: Send>() {}
    send::<Idle>();
    send::<BenchError>();
};

/// A publisher plus its backpressure context and optional notifier.
struct Sender {
    publisher: Pub,
    pending: Arc<Mutex<Pending>>,
    notifier: Option<Notifier<Svc>>,
    /// Subscribers every sample must reach.
    readers: usize,
}

impl Sender {
    fn new(service: &PubSubService, size: usize, notifier: Option<Notifier<Svc>>, readers: usize) -> Result<Self> {
        let pending =
            Arc::new(Mutex::new(Pending { watch: None, idle: Idle::new("waiting for room in a subscriber queue"), next_check: SLICE, failure: None }));
        let ctx = Arc::clone(&pending);
        let publisher = service
            .publisher_builder()
            .initial_max_slice_len(size)
            .allocation_strategy(AllocationStrategy::Static)
            .max_loaned_samples(1)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .set_backpressure_handler(move |info: &BackpressureInfo| on_backpressure(&ctx, info))
            .create()
            .map_err(system_error(SYSTEM, "create publisher"))?;
        Ok(Self { publisher, pending, notifier, readers })
    }

    /// Loans a sample, copies `src` into it, sends it (waiting while a
    /// subscriber queue is full) and notifies the listeners.
    #[inline]
    fn send(&mut self, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        let sample = self.publisher.loan_slice_uninit(src.len()).map_err(system_error(SYSTEM, "loan a sample"))?;
        let sample = sample.write_from_slice(src);
        self.arm(watch);
        let sent = sample.send();
        let failure = self.disarm();
        if let Some(e) = failure {
            return Err(e);
        }
        let n = sent.map_err(system_error(SYSTEM, "send a sample"))?;
        if n != self.readers {
            return Err(BenchError::Data(format!("iceoryx2 delivered a sample to {n} of {} subscribers", self.readers)));
        }
        if let Some(notifier) = &self.notifier {
            // The count may fall short of the listeners: a listener whose
            // socket still holds an undrained notification makes the send
            // fail (iceoryx2 logs it and does not count it), yet that
            // listener wakes all the same. Seen in the fan-out, whose readers
            // share one CPU. A listener that really missed a wake would only
            // cost time (its wait is bounded), never data.
            notifier.notify().map_err(system_error(SYSTEM, "notify"))?;
        }
        Ok(())
    }

    fn arm(&self, watch: &mut Watch<'_>) {
        let ptr: NonNull<Watch<'_>> = NonNull::from(watch);
        // SAFETY: only the lifetime bound of the trait object changes (same
        // layout); the pointer is removed again by `disarm` right after the
        // `send()` call it is meant for, while `watch` is still borrowed.
        let ptr: NonNull<Watch<'static>> = unsafe { std::mem::transmute::<NonNull<Watch<'_>>, NonNull<Watch<'static>>>(ptr) };
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.watch = Some(ptr);
        p.idle = Idle::new("waiting for room in a subscriber queue");
        p.next_check = SLICE;
        p.failure = None;
    }

    fn disarm(&self) -> Option<BenchError> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.watch = None;
        p.failure.take()
    }
}

/// The backpressure handler: keep retrying (iceoryx2 yields / sleeps
/// between two calls), run the liveness check every [`SLICE`], give up
/// (`DiscardDataAndFail`, the run is over anyway) when it fails.
fn on_backpressure(ctx: &Mutex<Pending>, info: &BackpressureInfo) -> BackpressureAction {
    let mut p = ctx.lock().unwrap_or_else(|e| e.into_inner());
    if p.failure.is_some() {
        return BackpressureAction::DiscardDataAndFail;
    }
    if info.elapsed_time < p.next_check {
        return BackpressureAction::Retry;
    }
    p.next_check = info.elapsed_time + SLICE;
    let Some(watch) = p.watch else {
        // Not inside one of our `send()` calls (cannot happen): no liveness
        // check to run, but never wait longer than the stall limit.
        return if info.elapsed_time > STALL { BackpressureAction::DiscardDataAndFail } else { BackpressureAction::Retry };
    };
    // SAFETY: `watch` was set by `Sender::arm` from a live `&mut Watch` just
    // before the `send()` that is calling this handler on this thread, and is
    // cleared by `Sender::disarm` right after it returns; nothing else uses
    // that `&mut` meanwhile.
    let watch = unsafe { &mut *watch.as_ptr() };
    match p.idle.check(watch) {
        Ok(()) => BackpressureAction::Retry,
        Err(e) => {
            p.failure = Some(e);
            BackpressureAction::DiscardDataAndFail
        }
    }
}

/// A subscriber plus the listener it blocks on (blocking mode).
struct Receiver {
    subscriber: Sub,
    listener: Option<Listener<Svc>>,
}

impl Receiver {
    fn new(service: &PubSubService, listener: Option<Listener<Svc>>) -> Result<Self> {
        let subscriber = service.subscriber_builder().buffer_size(DEPTH).create().map_err(system_error(SYSTEM, "create subscriber"))?;
        Ok(Self { subscriber, listener })
    }

    /// Waits for the next sample and runs `f` on its payload, read in place
    /// in the publisher's data segment (released when `f` returns).
    #[inline]
    fn recv_with<R>(&mut self, watch: &mut Watch<'_>, f: impl FnOnce(&[u8], &mut Watch<'_>) -> R) -> Result<R> {
        let mut idle = Idle::new("waiting for a sample");
        loop {
            if let Some(sample) = self.subscriber.receive().map_err(system_error(SYSTEM, "receive a sample"))? {
                return Ok(f(sample.payload(), watch));
            }
            match &self.listener {
                None => idle.spin(watch)?,
                Some(listener) => {
                    let n = listener.timed_wait(|_| {}, SLICE).map_err(system_error(SYSTEM, "wait on the listener"))?;
                    if n == 0 {
                        idle.check(watch)?;
                    }
                }
            }
        }
    }
}

/// The parent: publisher of ping (+ notifier), subscriber of pong (+ listener).
pub struct Parent {
    ping: Sender,
    pong: Option<Receiver>,
    _node: Node<Svc>,
}

impl Parent {
    /// Creates the node, the services and the parent's ports. The peers
    /// open the services and create their own ports.
    pub fn create(spec: &Spec) -> Result<Self> {
        let cfg = config(spec)?;
        let node = node(&cfg, "parent")?;
        let [ping_name, pong_name, ping_ev, pong_ev] = service_names(&spec.tag);
        let ping_service = pubsub(&node, &ping_name, spec.readers, true)?;
        let notifier = if spec.blocking {
            let ev = event(&node, &ping_ev, spec.readers, true)?;
            Some(ev.notifier_builder().create().map_err(system_error(SYSTEM, "create notifier"))?)
        } else {
            None
        };
        let ping = Sender::new(&ping_service, spec.size, notifier, spec.readers)?;
        // The pong direction exists only for the ping-pong (one reader).
        let pong = if spec.readers == 1 {
            let pong_service = pubsub(&node, &pong_name, 1, true)?;
            let listener = if spec.blocking {
                let ev = event(&node, &pong_ev, 1, true)?;
                Some(ev.listener_builder().create().map_err(system_error(SYSTEM, "create listener"))?)
            } else {
                None
            };
            Some(Receiver::new(&pong_service, listener)?)
        } else {
            None
        };
        Ok(Self { ping, pong, _node: node })
    }
}

impl PingSide for Parent {
    #[inline]
    fn send(&mut self, _seq: u64, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        self.ping.send(src, watch)
    }

    #[inline]
    fn recv(&mut self, _seq: u64, dst: &mut [u8], watch: &mut Watch<'_>) -> Result<()> {
        let pong = self.pong.as_mut().ok_or_else(|| BenchError::Data("iceoryx2: ping-pong needs exactly one reader".into()))?;
        pong.recv_with(watch, |s, _| copy_out(s, dst))?
    }

    fn stop(&mut self, src: &mut [u8], watch: &mut Watch<'_>) -> Result<()> {
        put_head(src, STOP);
        self.ping.send(src, watch)
    }
}

impl PubSide for Parent {
    #[inline]
    fn publish(&mut self, _tag: u64, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        self.ping.send(src, watch)
    }
}

/// A peer: subscriber of ping (+ listener), publisher of pong (+ notifier).
pub struct Peer {
    ping: Receiver,
    pong: Option<Sender>,
    size: usize,
    _node: Node<Svc>,
}

impl Peer {
    /// Opens the parent's services and creates this reader's ports. The
    /// subscriber connects to the parent's publisher right here, so nothing
    /// the parent sends after `attach` returned can miss it.
    pub fn attach(spec: &Spec, index: usize) -> Result<Self> {
        let cfg = config(spec)?;
        let node = node(&cfg, &format!("peer{index}"))?;
        let [ping_name, pong_name, ping_ev, pong_ev] = service_names(&spec.tag);
        let ping_service = pubsub(&node, &ping_name, spec.readers, false)?;
        let listener = if spec.blocking {
            let ev = event(&node, &ping_ev, spec.readers, false)?;
            Some(ev.listener_builder().create().map_err(system_error(SYSTEM, "create listener"))?)
        } else {
            None
        };
        let ping = Receiver::new(&ping_service, listener)?;
        let pong = if spec.readers == 1 {
            let pong_service = pubsub(&node, &pong_name, 1, false)?;
            let notifier = if spec.blocking {
                let ev = event(&node, &pong_ev, 1, false)?;
                Some(ev.notifier_builder().create().map_err(system_error(SYSTEM, "create notifier"))?)
            } else {
                None
            };
            Some(Sender::new(&pong_service, spec.size, notifier, 1)?)
        } else {
            None
        };
        Ok(Self { ping, pong, size: spec.size, _node: node })
    }
}

impl EchoSide for Peer {
    #[inline]
    fn echo(&mut self, watch: &mut Watch<'_>) -> Result<bool> {
        let size = self.size;
        let pong = self.pong.as_mut().ok_or_else(|| BenchError::Data("iceoryx2: ping-pong needs exactly one reader".into()))?;
        self.ping.recv_with(watch, |s, w| {
            if head(s) == STOP {
                return Ok(false);
            }
            check_len(s, size)?;
            // The reply is sent before the ping sample is released.
            pong.send(s, w)?;
            Ok(true)
        })?
    }
}

impl SubSide for Peer {
    #[inline]
    fn take(&mut self, watch: &mut Watch<'_>) -> Result<(u64, u64)> {
        let size = self.size;
        self.ping.recv_with(watch, |s, _| take_sample(s, size))?
    }
}

/// Removes whatever this system may have left for `spec`: first lets
/// iceoryx2 clean up after dead nodes of the case (a killed peer), then
/// unlinks every `/dev/shm/iox2_<tag>_*` object, removes every file under
/// `spec.dir/iox2` whose name starts with `iox2_<tag>_`, and then the
/// directories left empty (a node's directory, `services`, `nodes`, the root),
/// so other cases' files in the same root are spared. Never fails.
pub fn cleanup(spec: &Spec) {
    let root = root_dir(spec);
    if root.exists() {
        if let Ok(cfg) = config(spec) {
            set_log_level(LogLevel::Error);
            // Lists only the nodes with this case's prefix.
            let _ = Node::<Svc>::list(&cfg, |state| {
                if let NodeState::Dead(view) = state {
                    let _ = view.try_remove_stale_resources();
                }
                CallbackProgression::Continue
            });
        }
    }
    let pre = prefix(spec);
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(&pre) {
                if let Ok(c) = CString::new(format!("/{name}")) {
                    // SAFETY: `c` is a valid NUL-terminated string.
                    unsafe { libc::shm_unlink(c.as_ptr()) };
                }
            }
        }
    }
    remove_case_files(&root, &pre);
}

/// Removes the files named `prefix*` under `dir` (recursively), then every
/// directory that is left empty, `dir` included.
fn remove_case_files(dir: &std::path::Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            remove_case_files(&path, prefix);
        } else if entry.file_name().to_str().is_some_and(|n| n.starts_with(prefix)) {
            let _ = std::fs::remove_file(&path);
        }
    }
    // Fails (and keeps it) unless empty.
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use flink::bench::drive::{consume, echo, latency, publish, Budget, MARK};
    use std::sync::mpsc;
    use std::sync::Mutex as StdMutex;
    use std::time::Instant;

    /// The machine has 2 CPUs: run one case at a time.
    static SERIAL: StdMutex<()> = StdMutex::new(());

    const BUDGET: Budget = Budget { warmup: Duration::from_millis(5), measure: Duration::from_millis(20), min_samples: 200, max_samples: 10_000 };

    struct Case {
        spec: Spec,
    }

    impl Case {
        fn new(name: &str, size: usize, readers: usize, blocking: bool) -> Self {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let tag = format!("t{name}{}{nanos:x}", std::process::id());
            let tag: String = tag.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).take(24).collect();
            let dir = PathBuf::from(format!("/tmp/ioxs{}", &tag[tag.len() - 6..]));
            std::fs::create_dir_all(&dir).unwrap();
            Self { spec: Spec { dir, tag, size, readers, blocking } }
        }
    }

    impl Drop for Case {
        fn drop(&mut self) {
            cleanup(&self.spec);
            let left = shm_of(&self.spec);
            let files = std::fs::read_dir(&self.spec.dir).map(|d| d.count()).unwrap_or(0);
            let _ = std::fs::remove_dir_all(&self.spec.dir);
            if !std::thread::panicking() {
                assert!(left.is_empty(), "left in /dev/shm: {left:?}");
                assert_eq!(files, 0, "left in {}", self.spec.dir.display());
            }
        }
    }

    fn shm_of(spec: &Spec) -> Vec<String> {
        let pre = prefix(spec);
        std::fs::read_dir("/dev/shm").unwrap().flatten().filter_map(|e| e.file_name().to_str().map(str::to_owned)).filter(|n| n.starts_with(&pre)).collect()
    }

    /// This case's shared-memory objects and every path under `spec.dir`.
    fn leftovers(spec: &Spec) -> (Vec<String>, Vec<String>) {
        fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap().display().to_string());
                if p.is_dir() {
                    walk(&p, base, out);
                }
            }
        }
        let mut files = Vec::new();
        walk(&spec.dir, &spec.dir, &mut files);
        (shm_of(spec), files)
    }

    fn ok() -> impl FnMut() -> Result<()> {
        || Ok(())
    }

    fn ping_pong(size: usize, blocking: bool) {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let case = Case::new(&format!("pp{size}"), size, 1, blocking);
        let spec = case.spec.clone();
        let mut parent = Parent::create(&spec).unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let peer_spec = spec.clone();
        let peer = std::thread::spawn(move || -> Result<(u64, u64)> {
            let mut peer = Peer::attach(&peer_spec, 0)?;
            ready_tx.send(()).unwrap();
            let mut w = ok();
            echo(&mut peer, &mut w)?;
            let c = consume(&mut peer, &mut w)?;
            Ok((c.count, c.sum))
        });
        ready_rx.recv().unwrap();
        let mut w = ok();
        let rtts = latency(&mut parent, size, &BUDGET, &mut w).unwrap();
        // `latency` stops after `measure * 4` even short of `min_samples`
        // (this machine is shared: fewer under load).
        assert!(!rtts.is_empty());
        publish(&mut parent, size, &BUDGET, &mut w).unwrap();
        let (count, _) = peer.join().unwrap().unwrap();
        assert!(count > 0);
        let mut sorted = rtts.clone();
        sorted.sort_unstable();
        eprintln!(
            "size {size} blocking {blocking}: {} round trips, median rtt {} ns; {count} samples in {:?}",
            rtts.len(),
            sorted[sorted.len() / 2],
            BUDGET.measure
        );
        drop(parent);
        let (shm, files) = leftovers(&spec);
        eprintln!("left after a clean shutdown, before cleanup: shm {shm:?}, files {files:?}");
    }

    #[test]
    fn poll_8() {
        ping_pong(8, false);
    }
    #[test]
    fn poll_1k() {
        ping_pong(1024, false);
    }
    #[test]
    fn poll_1m() {
        ping_pong(1 << 20, false);
    }
    #[test]
    fn blocking_8() {
        ping_pong(8, true);
    }
    #[test]
    fn blocking_1k() {
        ping_pong(1024, true);
    }
    #[test]
    fn blocking_1m() {
        ping_pong(1 << 20, true);
    }

    fn fan_out(size: usize, blocking: bool) {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let readers = 4;
        let case = Case::new(&format!("fo{size}"), size, readers, blocking);
        let spec = case.spec.clone();
        let mut parent = Parent::create(&spec).unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let peers: Vec<_> = (0..readers)
            .map(|i| {
                let s = spec.clone();
                let tx = ready_tx.clone();
                std::thread::spawn(move || -> Result<u64> {
                    let mut peer = Peer::attach(&s, i)?;
                    tx.send(()).unwrap();
                    let mut w = ok();
                    Ok(consume(&mut peer, &mut w)?.count)
                })
            })
            .collect();
        for _ in 0..readers {
            ready_rx.recv().unwrap();
        }
        let mut w = ok();
        publish(&mut parent, size, &BUDGET, &mut w).unwrap();
        let counts: Vec<u64> = peers.into_iter().map(|p| p.join().unwrap().unwrap()).collect();
        eprintln!("fan-out size {size} blocking {blocking}: counts {counts:?}");
        assert!(counts.iter().all(|&c| c > 0));
        assert!(counts.windows(2).all(|w| w[0] == w[1]), "every reader gets every sample: {counts:?}");
        drop(parent);
    }

    #[test]
    fn fan_out_poll_1k() {
        fan_out(1024, false);
    }
    #[test]
    fn fan_out_blocking_1k() {
        fan_out(1024, true);
    }
    #[test]
    fn fan_out_poll_1m() {
        fan_out(1 << 20, false);
    }

    /// A full queue makes the publisher wait (never drop), and the wait runs
    /// the liveness check: a reader that stops reading fails the watch.
    #[test]
    fn full_queue_waits_and_checks_liveness() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        for blocking in [false, true] {
            let case = Case::new(&format!("full{blocking}"), 64, 1, blocking);
            let spec = case.spec.clone();
            let mut parent = Parent::create(&spec).unwrap();
            let peer = Peer::attach(&spec, 0).unwrap();
            let src = flink::bench::drive::pattern(64);
            let mut w = ok();
            for _ in 0..DEPTH {
                parent.publish(0, &src, &mut w).unwrap();
            }
            // The 17th waits; the watch fails after a few checks.
            let mut checks = 0;
            let mut dead = || {
                checks += 1;
                if checks >= 3 {
                    Err(BenchError::Data("peer gone".into()))
                } else {
                    Ok(())
                }
            };
            let t = Instant::now();
            let e = parent.publish(0, &src, &mut dead).unwrap_err();
            let waited = t.elapsed();
            assert!(matches!(e, BenchError::Data(ref m) if m == "peer gone"), "{e}");
            assert!(waited >= SLICE * 2 && waited < SLICE * 10, "waited {waited:?}");
            drop(peer);
            drop(parent);
        }
    }

    /// A peer that is SIGKILLed leaves shared memory and files behind;
    /// `cleanup` removes them.
    #[test]
    fn cleanup_after_killed_peer() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let case = Case::new("kill", 4096, 1, true);
        let spec = case.spec.clone();
        let parent = Parent::create(&spec).unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new(exe)
            .args(["--exact", "iceoryx2_side::tests::child_peer", "--nocapture", "--test-threads=1"])
            .env("IOX_CHILD_DIR", &spec.dir)
            .env("IOX_CHILD_TAG", &spec.tag)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the child's "ready" line.
        let mut out = child.stdout.take().unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        use std::io::Read;
        while !buf.ends_with(b"ready\n") {
            assert_eq!(out.read(&mut byte).unwrap(), 1, "child exited: {}", String::from_utf8_lossy(&buf));
            buf.push(byte[0]);
        }
        let before = shm_of(&spec);
        let (_, files) = leftovers(&spec);
        eprintln!("{} files while the peer is alive", files.len());
        // SAFETY: kill with the pid of our own child, which we have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        child.wait().unwrap();
        drop(parent);
        let after_parent = shm_of(&spec);
        eprintln!("shm while peer alive: {before:?}\nshm after peer killed, parent dropped: {after_parent:?}");
        assert!(!after_parent.is_empty(), "expected the killed peer's leftovers");
        cleanup(&spec);
        assert!(shm_of(&spec).is_empty());
        assert!(!root_dir(&spec).exists());
        // `case` drops: checks again, removes the directory.
    }

    /// Runs in a child process (see `cleanup_after_killed_peer`).
    #[test]
    fn child_peer() {
        let (Ok(dir), Ok(tag)) = (std::env::var("IOX_CHILD_DIR"), std::env::var("IOX_CHILD_TAG")) else {
            return;
        };
        let spec = Spec { dir: PathBuf::from(dir), tag, size: 4096, readers: 1, blocking: true };
        let _peer = Peer::attach(&spec, 0).unwrap();
        println!("ready");
        std::thread::sleep(Duration::from_secs(60));
    }

    /// Cases share `spec.dir`: cleaning one up leaves another's objects alone.
    #[test]
    fn cleanup_spares_other_cases() {
        let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let a = Case::new("spa", 64, 1, true);
        // Another tag: A's with its last character changed.
        let other = if a.spec.tag.ends_with('b') { 'c' } else { 'b' };
        let b_spec = Spec { tag: format!("{}{other}", &a.spec.tag[..a.spec.tag.len() - 1]), ..a.spec.clone() };
        let pa = Parent::create(&a.spec).unwrap();
        let pb = Parent::create(&b_spec).unwrap();
        let b_before = (shm_of(&b_spec).len(), leftovers(&b_spec).1.iter().filter(|f| f.contains(&prefix(&b_spec))).count());
        drop(pa);
        cleanup(&a.spec);
        assert!(shm_of(&a.spec).is_empty());
        assert!(leftovers(&a.spec).1.iter().all(|f| !f.contains(&prefix(&a.spec))));
        let b_after = (shm_of(&b_spec).len(), leftovers(&b_spec).1.iter().filter(|f| f.contains(&prefix(&b_spec))).count());
        assert_eq!(b_before, b_after);
        assert!(b_after.0 > 0 && b_after.1 > 0);
        // B still works.
        let mut peer = Peer::attach(&b_spec, 0).unwrap();
        let mut pb = pb;
        let src = flink::bench::drive::pattern(64);
        let mut w = ok();
        pb.publish(7, &src, &mut w).unwrap();
        let (h, _) = peer.take(&mut w).unwrap();
        assert_eq!(h, flink::bench::drive::head(&src));
        drop(peer);
        drop(pb);
        cleanup(&b_spec);
        // `a` drops: cleanup again, then checks that nothing is left at all.
    }

    #[test]
    fn cleanup_of_nothing_is_fine() {
        let spec = Spec { dir: PathBuf::from("/nonexistent/ioxs"), tag: "nothing".into(), size: 8, readers: 1, blocking: false };
        cleanup(&spec);
        let _ = MARK;
    }
}
