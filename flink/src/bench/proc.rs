//! Processes: CPU pinning, the interrupt flag, the peer process (spawned,
//! read line by line with timeouts, killed if anything goes wrong), and the
//! idle/liveness checks of the busy-wait loops.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::error::{BenchError, Result};

/// A wait that sees nothing for this long gives up.
pub const STALL: Duration = Duration::from_secs(20);
/// Busy-wait rounds between two liveness checks (a power of two).
const SPINS_PER_CHECK: u32 = 1 << 12;

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(BenchError::Affinity { cpu, source: std::io::Error::from_raw_os_error(libc::EINVAL) });
    }
    // SAFETY: `cpu_set_t` is a plain bit array for which all-zero is valid.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE` (checked above), so the bit is inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid, initialised `cpu_set_t` of the size passed;
    // pid 0 means the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set) };
    if rc != 0 {
        return Err(BenchError::Affinity { cpu, source: std::io::Error::last_os_error() });
    }
    Ok(())
}

/// Involuntary context switches so far: of this process, and of its
/// reaped children. Non-zero growth during a run means something else ran on
/// the bench's CPUs.
pub fn involuntary_switches() -> (u64, u64) {
    let get = |who| {
        // SAFETY: all-zero is a valid `rusage`.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable `rusage`; `who` is a valid selector.
        if unsafe { libc::getrusage(who, &raw mut ru) } == 0 {
            ru.ru_nivcsw as u64
        } else {
            0
        }
    };
    (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static YIELD_WHEN_IDLE: AtomicBool = AtomicBool::new(false);

/// Makes every empty poll of this process ([`Idle::spin`]) yield the CPU
/// instead of spinning: for runs with more busy processes than CPUs (the
/// fan-out of the peer comparison), where a spinning reader would hold its
/// CPU for a whole time slice while the others wait.
pub fn yield_when_idle(on: bool) {
    YIELD_WHEN_IDLE.store(on, Ordering::Relaxed);
}

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Turns SIGINT and SIGTERM into a flag the wait loops check, so the bench
/// unwinds and removes what it created instead of dying in place.
pub fn install_interrupt_handler() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: all-zero is a valid `sigaction` (empty mask, no flags).
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: `sa` is a valid sigaction whose handler only stores to an
        // atomic (async-signal-safe); the old action is not wanted (null).
        unsafe { libc::sigaction(sig, &raw const sa, std::ptr::null_mut()) };
    }
}

/// Whether SIGINT or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Makes the kernel kill this process when its parent dies, so a peer never
/// outlives a crashed bench.
pub fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and has no memory
    // effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
}

/// The liveness check a wait loop runs now and then: is the peer still
/// there, were we interrupted?
pub type Watch<'a> = dyn FnMut() -> Result<()> + 'a;

/// What a peer process does first: die with its parent, pin itself to
/// `cpu`. Returns the liveness check its loops run (an error once the
/// process that started it is gone).
pub fn start_child(cpu: usize) -> Result<impl FnMut() -> Result<()>> {
    die_with_parent();
    // SAFETY: getppid cannot fail and has no preconditions.
    let ppid = unsafe { libc::getppid() };
    pin_to_cpu(cpu)?;
    Ok(move || {
        // SAFETY: as above.
        if unsafe { libc::getppid() } != ppid {
            return Err(BenchError::Child { what: "the bench process is gone".into(), stderr: String::new() });
        }
        Ok(())
    })
}

/// Bookkeeping of one busy wait: cheap spins, a liveness check every few
/// thousand rounds, and a stall limit.
#[derive(Debug)]
pub struct Idle {
    spins: u32,
    since: Option<Instant>,
    what: &'static str,
}

impl Idle {
    /// A new wait for `what` (named in the stall error).
    #[inline]
    pub fn new(what: &'static str) -> Self {
        Self { spins: 0, since: None, what }
    }

    /// One empty poll: spin, and check liveness now and then.
    #[inline]
    pub fn spin(&mut self, watch: &mut Watch<'_>) -> Result<()> {
        self.spins = self.spins.wrapping_add(1);
        if self.spins & (SPINS_PER_CHECK - 1) != 0 {
            if YIELD_WHEN_IDLE.load(Ordering::Relaxed) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
            return Ok(());
        }
        self.check(watch)
    }

    /// A blocking call timed out (or a spin round ended): check liveness.
    #[cold]
    pub fn check(&mut self, watch: &mut Watch<'_>) -> Result<()> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > STALL {
            return Err(BenchError::Stalled { what: self.what, after: STALL });
        }
        watch()
    }
}

/// The peer process: same binary, hidden subcommand.
#[derive(Debug)]
pub struct Peer {
    child: Child,
    stdout: ChildStdout,
    stderr: Option<ChildStderr>,
    buf: Vec<u8>,
    finished: bool,
}

impl Peer {
    /// Starts `current_exe() args…` with piped stdout and stderr.
    pub fn spawn(args: &[OsString]) -> Result<Self> {
        let exe = std::env::current_exe().map_err(|source| BenchError::Io { op: "find own executable", path: PathBuf::from("/proc/self/exe"), source })?;
        let mut child = Command::new(&exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BenchError::Io { op: "start peer process", path: exe.clone(), source })?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take();
        Ok(Self { child, stdout, stderr, buf: Vec::new(), finished: false })
    }

    /// Reads one line the peer printed, waiting at most `timeout`.
    pub fn read_line(&mut self, what: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            if interrupted() {
                return Err(BenchError::Interrupted);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.failure(format!("no {what} within {timeout:?}")));
            }
            let slice = (deadline - now).min(Duration::from_millis(100));
            let mut pfd = libc::pollfd { fd: self.stdout.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: `pfd` is one valid pollfd; the fd stays open while
            // `self.stdout` lives.
            let n = unsafe { libc::poll(&raw mut pfd, 1, slice.as_millis().max(1) as libc::c_int) };
            if n <= 0 {
                continue; // timeout or EINTR: look again
            }
            let mut chunk = [0u8; 512];
            match self.stdout.read(&mut chunk) {
                Ok(0) => return Err(self.failure(format!("exited before printing {what}"))),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.failure(format!("reading its output failed: {e}"))),
            }
        }
    }

    /// Waits for the peer's `ready` line (30 s at most); returns what it
    /// said after `ready` (its hello, often empty).
    pub fn wait_ready(&mut self) -> Result<String> {
        let ready = self.read_line("ready line", Duration::from_secs(30))?;
        match ready.strip_prefix("ready").filter(|h| h.is_empty() || h.starts_with(' ')) {
            Some(hello) => Ok(hello.trim_start().to_owned()),
            None => Err(BenchError::Child { what: format!("printed '{ready}' instead of 'ready'"), stderr: String::new() }),
        }
    }

    /// Liveness check for wait loops: an error if the peer exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if interrupted() {
            return Err(BenchError::Interrupted);
        }
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.finished = true;
                Err(self.failure(format!("exited unexpectedly ({status})")))
            }
            Err(e) => Err(self.failure(format!("cannot check on it: {e}"))),
        }
    }

    /// Waits for the peer to exit successfully, at most `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.finished = true;
                    if status.success() {
                        return Ok(());
                    }
                    return Err(self.failure(format!("failed ({status})")));
                }
                Ok(None) if Instant::now() < deadline && !interrupted() => std::thread::sleep(Duration::from_millis(1)),
                Ok(None) if interrupted() => return Err(BenchError::Interrupted),
                Ok(None) => return Err(self.failure(format!("did not exit within {timeout:?}"))),
                Err(e) => return Err(self.failure(format!("cannot wait for it: {e}"))),
            }
        }
    }

    /// Kills the peer if it still runs, reaps it, and builds an error with
    /// what it printed on stderr.
    fn failure(&mut self, what: String) -> BenchError {
        self.reap();
        let mut stderr = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        BenchError::Child { what, stderr }
    }

    fn reap(&mut self) {
        if !self.finished {
            // Only this child, by its own handle; it may already be gone.
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.finished = true;
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.reap();
    }
}
