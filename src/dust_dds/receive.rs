//! The receive side: one thread per ring a participant reads, handing each
//! message to dust_dds, and the shutdown that lets go of the rings when the
//! participant is deleted or the process exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, Weak};
use std::time::{Duration, Instant};

use ::dust_dds::std_runtime::executor::block_on;
use ::dust_dds::transport::interface::TransportDataReceiver;
use parking_lot::{Condvar, Mutex};

use super::{carries_user_data, Counters};
use crate::transport::{InputPort, Sender};

/// How long a receive thread waits for a message before it looks at its
/// stop flag again: the longest a deleted participant's ring outlives it.
pub const POLL: Duration = Duration::from_millis(25);

/// The longest the exit hook waits for the receive threads of the
/// participants still alive to let go of their rings.
pub const EXIT_WAIT: Duration = Duration::from_millis(500);

/// After a receive error (a corrupt segment), how long a thread waits
/// before it tries again, so a broken ring does not spin a CPU.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// What one participant holds in shared memory and how to let go of it:
/// its sender (attached to the rings it sends to) and its receive threads
/// (which hold the rings it reads). Both the participant's writer and the
/// exit hook can stop it.
pub(super) struct Shutdown {
    stop: AtomicBool,
    running: Mutex<usize>,
    done: Condvar,
    /// `None` once stopped. Behind a lock (uncontended but for the exit
    /// hook) because the hook must drop it while the stack's actor thread
    /// may still send: a sender's attachment to the multicast ring would
    /// otherwise keep that ring from being removed by the last one out.
    pub(super) sender: Mutex<Option<Sender>>,
}

impl Shutdown {
    /// A new shutdown for `sender`, registered with the exit hook.
    pub(super) fn new(sender: Sender) -> Arc<Self> {
        let s = Arc::new(Self { stop: AtomicBool::new(false), running: Mutex::new(0), done: Condvar::new(), sender: Mutex::new(Some(sender)) });
        register(&s);
        s
    }

    /// Tells the threads to stop (they do within [`POLL`]) and lets the
    /// sender go, waiting at most `wait` for a send in progress.
    pub(super) fn stop(&self, wait: Duration) {
        self.stop.store(true, Ordering::Release);
        if let Some(mut sender) = self.sender.try_lock_for(wait) {
            sender.take();
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Waits until every thread has stopped, at most until `deadline`;
    /// whether they all did.
    fn wait(&self, deadline: Instant) -> bool {
        let mut running = self.running.lock();
        while *running > 0 {
            if self.done.wait_until(&mut running, deadline).timed_out() {
                return *running == 0;
            }
        }
        true
    }
}

/// Counts a thread as running until it is dropped (a panic included).
struct Running(Arc<Shutdown>);

impl Running {
    fn new(s: &Arc<Shutdown>) -> Self {
        *s.running.lock() += 1;
        Self(Arc::clone(s))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.0.running.lock();
        *running -= 1;
        self.0.done.notify_all();
    }
}

/// Starts a thread that reads `port` until `shutdown` stops it and hands
/// each message to the stack; the port (and so the ring, for a unicast
/// port) is let go when the thread ends.
pub(super) fn spawn(port: InputPort, receiver: TransportDataReceiver, shutdown: &Arc<Shutdown>, counters: &Arc<Counters>) -> std::io::Result<()> {
    let name = if port.is_multicast() { "shmslot-dds-multicast" } else { "shmslot-dds-unicast" };
    let running = Running::new(shutdown);
    let counters = Arc::clone(counters);
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let mut port = port;
        let path = port.flink_path().to_path_buf();
        let mut warned = false;
        while !running.0.stopped() {
            let message = match port.recv_timeout(POLL) {
                Ok(Some(m)) => m.to_vec(),
                Ok(None) => continue,
                Err(e) => {
                    // Counted every time, said once: a broken ring keeps failing.
                    counters.receive_errors.fetch_add(1, Ordering::Relaxed);
                    if !std::mem::replace(&mut warned, true) {
                        tracing::warn!("shmslot: receiving on {}: {e} (further errors are only counted)", path.display());
                    }
                    std::thread::sleep(ERROR_BACKOFF);
                    continue;
                }
            };
            // The slot is released (`m` dropped) before the stack is waited
            // on: a stack slow to take messages holds no slot.
            counters.shm_received.add(1, message.len(), carries_user_data(&message));
            block_on(receiver.receive_message(message));
        }
        drop(port);
        drop(running);
    })?;
    Ok(())
}

/// The shutdowns of live participants, for the exit hook.
static LIVE: Mutex<Vec<Weak<Shutdown>>> = Mutex::new(Vec::new());

fn register(s: &Arc<Shutdown>) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // SAFETY: `on_exit` is an `extern "C" fn()` that does not unwind
        // (it catches panics) and only touches statics that live until the
        // process ends.
        let rc = unsafe { libc::atexit(on_exit) };
        if rc != 0 {
            tracing::warn!("shmslot: atexit failed; rings of participants alive at exit are left to be reclaimed");
        }
    });
    let mut live = LIVE.lock();
    live.retain(|w| w.strong_count() > 0);
    live.push(Arc::downgrade(s));
}

/// Runs at a normal process exit: stops the receive threads of the
/// participants still alive and waits (at most [`EXIT_WAIT`]) for them to
/// let go of their rings, so an application that never deletes its
/// participants (as dust_dds's examples do not) leaves no segment behind.
extern "C" fn on_exit() {
    let _ = std::panic::catch_unwind(|| {
        let live: Vec<Arc<Shutdown>> = LIVE.lock().iter().filter_map(Weak::upgrade).collect();
        for s in &live {
            s.stop(EXIT_WAIT);
        }
        let deadline = Instant::now() + EXIT_WAIT;
        for s in &live {
            s.wait(deadline);
        }
    });
}
