//! Unix domain sockets (libc only): one connection per peer, one message per
//! sample.
//!
//! * Socket type: `SOCK_SEQPACKET` (message boundaries kept by the kernel),
//!   unless the kernel refuses a single message of `spec.size` bytes (see
//!   [`kind`]); then `SOCK_STREAM` with fixed-size framing (every sample is
//!   exactly `size` bytes, written and read whole).
//! * Topology: [`Parent::create`] binds and listens on `spec.dir/<tag>.sock`
//!   before any peer exists; each peer connects in [`Peer::attach`]; the
//!   parent accepts `spec.readers` connections on its first send / publish.
//!   The peer learns the socket type from the listener itself: it connects
//!   with `SOCK_SEQPACKET` and, if the kernel answers `EPROTOTYPE` (the
//!   listener is of another type), with `SOCK_STREAM`.
//! * Measured (kernel 6.18, x86_64, root): the largest seqpacket message is
//!   4 MiB + 69 312 B (the linear part of the skb is one kmalloc, at most
//!   4 MiB; 17 page frags hold the rest); above that `send` fails with
//!   `ENOBUFS` even with a big enough forced buffer, so 8 and 16 MiB use
//!   stream. Unprivileged, `SO_SNDBUF` is capped at `2 * wmem_max` (8 MiB
//!   here), which still lets one 4 MiB message through.
//! * Depth: the sender's `SO_SNDBUF` (forced if privileged) is set to
//!   [`DEPTH`] times the kernel's charge for one message (measured once per
//!   size with `SIOCOUTQ` after a real send on a socket pair), so
//!   at most DEPTH messages are in flight per connection, as in a ring of
//!   DEPTH slots. (For `AF_UNIX` the sender's buffer is what limits: a queued
//!   message stays charged to the sender until the receiver reads it.)
//! * Poll mode: `send`/`recv` with `MSG_DONTWAIT`, `Idle::spin` on `EAGAIN`.
//!   Blocking mode: plain blocking calls with `SO_RCVTIMEO`/`SO_SNDTIMEO` of
//!   100 ms, `Idle::check` on each time-out.
//! * Fan-out: `publish` sends each sample on every connection in turn (one
//!   `send` per reader), waiting for a full one.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flink::bench::drive::{copy_out, head, put_head, take_sample, EchoSide, PingSide, PubSide, SubSide, STOP};
use flink::bench::error::{system_error, BenchError, Result};
use flink::bench::proc::{Idle, Watch};

use crate::spec::{Spec, DEPTH};

/// The system's name in errors.
const SYSTEM: &str = "unix-socket";
/// Longest single blocking call (ms); liveness is checked between two.
const SLICE_MS: libc::c_int = 100;
/// What `AF_UNIX` datagram/seqpacket sends need beyond the message in the
/// send buffer (`len > sk_sndbuf - 32` is `EMSGSIZE`).
const SEQPACKET_SLACK: usize = 32;

/// The socket type a case uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SeqPacket,
    Stream,
}

impl Kind {
    fn sock_type(self) -> libc::c_int {
        match self {
            Self::SeqPacket => libc::SOCK_SEQPACKET,
            Self::Stream => libc::SOCK_STREAM,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::SeqPacket => "seqpacket",
            Self::Stream => "stream",
        }
    }
}

/// Which socket type a case of `spec.size` uses: `"seqpacket"`, or
/// `"stream"` when the kernel refuses one seqpacket message that large
/// (checked once per size and process with a real send on a socket pair;
/// [`Parent::create`] uses the same answer). `"unavailable"` if even the
/// check failed (then `create` fails too, saying why).
pub fn kind(spec: &Spec) -> &'static str {
    decide(spec.size).map_or("unavailable", Kind::name)
}

/// Removes the socket file of `spec` if it is still there.
pub fn cleanup(spec: &Spec) {
    let _ = std::fs::remove_file(sock_path(spec));
}

fn sock_path(spec: &Spec) -> PathBuf {
    spec.dir.join(format!("{}.sock", spec.tag))
}

fn os_err(op: &str) -> BenchError {
    system_error(SYSTEM, op)(io::Error::last_os_error())
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Socket helpers

fn socket(kind: Kind) -> Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_UNIX, kind.sock_type() | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_err(&format!("create {} socket", kind.name())));
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn socketpair(kind: Kind) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: `fds` is a writable array of two ints, as socketpair requires.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, kind.sock_type() | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    if rc != 0 {
        return Err(os_err(&format!("create {} socket pair", kind.name())));
    }
    // SAFETY: both fds were just returned by socketpair() and are owned by
    // nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn sockaddr(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: all-zero is a valid `sockaddr_un`.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(BenchError::Io {
            op: "use as a socket address (too long for sun_path)",
            path: path.to_owned(),
            source: io::Error::from_raw_os_error(libc::ENAMETOOLONG),
        });
    }
    for (d, &s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = s as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

fn setsockopt_int(fd: RawFd, opt: libc::c_int, val: libc::c_int) -> io::Result<()> {
    // SAFETY: `val` is a live c_int and its size is passed.
    let rc = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&raw const val).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt_int(fd: RawFd, opt: libc::c_int) -> Result<usize> {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val` and `len` are live and writable; `len` holds val's size.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&raw mut val).cast(), &raw mut len) };
    if rc != 0 {
        return Err(os_err("read socket buffer size (getsockopt)"));
    }
    Ok(val.max(0) as usize)
}

/// Asks for send and receive buffers of `bytes` (the kernel's own count,
/// which is twice the value passed): `SO_*BUFFORCE` first (needs
/// CAP_NET_ADMIN, ignores `net.core.[wr]mem_max`), the plain options if that
/// is refused (capped at `[wr]mem_max`). Returns the send buffer the kernel
/// granted (`getsockopt(SO_SNDBUF)`).
fn set_bufs(fd: RawFd, bytes: usize, force: bool) -> Result<usize> {
    let val = bytes.div_ceil(2).min(i32::MAX as usize / 2) as libc::c_int;
    for (forced, plain, what) in [(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, "SO_SNDBUF"), (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, "SO_RCVBUF")] {
        let r = if force { setsockopt_int(fd, forced, val) } else { Err(io::Error::from_raw_os_error(libc::EPERM)) };
        match r {
            Ok(()) => {}
            Err(e) if errno(&e) == libc::EPERM => setsockopt_int(fd, plain, val).map_err(system_error(SYSTEM, format!("set {what}")))?,
            Err(e) => return Err(system_error(SYSTEM, format!("set {what} (forced)"))(e)),
        }
    }
    getsockopt_int(fd, libc::SO_SNDBUF)
}

/// Bytes the kernel charges to this socket for messages not yet read.
fn outq(fd: RawFd) -> Result<usize> {
    let mut n: libc::c_int = 0;
    // SIOCOUTQ is TIOCOUTQ on Linux.
    // SAFETY: SIOCOUTQ writes one c_int to the pointer given, which is live.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &raw mut n) };
    if rc != 0 {
        return Err(os_err("read queued bytes (SIOCOUTQ)"));
    }
    Ok(n.max(0) as usize)
}

fn set_timeouts(fd: RawFd) -> Result<()> {
    let tv = libc::timeval { tv_sec: 0, tv_usec: libc::suseconds_t::from(SLICE_MS) * 1000 };
    for (opt, what) in [(libc::SO_RCVTIMEO, "set SO_RCVTIMEO"), (libc::SO_SNDTIMEO, "set SO_SNDTIMEO")] {
        // SAFETY: `tv` is a live timeval and its size is passed.
        let rc = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&raw const tv).cast(), std::mem::size_of::<libc::timeval>() as libc::socklen_t) };
        if rc != 0 {
            return Err(os_err(what));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The probe: can one message of `size` be sent as seqpacket, and what does
// the kernel charge for one message?

/// Per process: (kind, size) → kernel charge of one message, `None` if the
/// kind cannot carry it.
static CHARGES: Mutex<Vec<(Kind, usize, Option<usize>)>> = Mutex::new(Vec::new());

/// The kernel's charge (bytes of send buffer) for one message of `size`, or
/// `None` if a seqpacket message that large is refused. Cached per process.
fn charge(kind: Kind, size: usize) -> Result<Option<usize>> {
    if let Ok(cache) = CHARGES.lock() {
        if let Some(&(_, _, c)) = cache.iter().find(|(k, s, _)| *k == kind && *s == size) {
            return Ok(c);
        }
    }
    let c = measure_charge(kind, size, true)?;
    if let Ok(mut cache) = CHARGES.lock() {
        cache.push((kind, size, c));
    }
    Ok(c)
}

/// The socket type for samples of `size` bytes.
fn decide(size: usize) -> Result<Kind> {
    if charge(Kind::SeqPacket, size)?.is_some() {
        Ok(Kind::SeqPacket)
    } else {
        Ok(Kind::Stream)
    }
}

/// [`probe_charge`], tried again a few times if the kernel could not
/// allocate the message (`ENOBUFS` can be a passing lack of contiguous
/// memory; above the kernel's largest allocation it is final).
fn measure_charge(kind: Kind, size: usize, force: bool) -> Result<Option<usize>> {
    for _ in 0..3 {
        if let Some(c) = probe_charge(kind, size, force)? {
            return Ok(Some(c));
        }
        if kind == Kind::SeqPacket && set_bufs_would_refuse(size, force)? {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(None)
}

/// Whether the send buffer granted is too small for one seqpacket message
/// of `size` (EMSGSIZE: final, no point in trying again).
fn set_bufs_would_refuse(size: usize, force: bool) -> Result<bool> {
    let (a, _b) = socketpair(Kind::SeqPacket)?;
    Ok(set_bufs(a.as_raw_fd(), 2 * size + (256 << 10), force)? < size + SEQPACKET_SLACK)
}

/// Sends one message of `size` on a fresh socket pair with a send buffer
/// big enough for it (if the kernel grants one) and reads the charge back;
/// `None` if the kernel refuses a seqpacket message that large.
fn probe_charge(kind: Kind, size: usize, force: bool) -> Result<Option<usize>> {
    let (a, _b) = socketpair(kind)?;
    let granted = set_bufs(a.as_raw_fd(), 2 * size + (256 << 10), force)?;
    if kind == Kind::SeqPacket && granted < size + SEQPACKET_SLACK {
        return Ok(None); // the send would fail with EMSGSIZE
    }
    let buf = vec![0u8; size];
    let mut sent = 0;
    while sent < size {
        // SAFETY: the pointer and length describe the live `buf[sent..]`.
        let n = unsafe { libc::send(a.as_raw_fd(), buf[sent..].as_ptr().cast(), size - sent, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n >= 0 {
            sent += n as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        match errno(&e) {
            libc::EINTR => {}
            libc::EMSGSIZE | libc::ENOBUFS | libc::ENOMEM if kind == Kind::SeqPacket => return Ok(None),
            // A stream pair whose buffer could not hold the whole message
            // (unprivileged, capped): scale what went in.
            libc::EAGAIN if kind == Kind::Stream && sent > 0 => break,
            _ => return Err(system_error(SYSTEM, format!("send a {size}-byte {} message (probe)", kind.name()))(e)),
        }
    }
    let q = outq(a.as_raw_fd())?;
    Ok(Some((q as u128 * size as u128).div_ceil(sent.max(1) as u128) as usize))
}

// ---------------------------------------------------------------------------
// One connection

struct Conn {
    fd: OwnedFd,
    kind: Kind,
    blocking: bool,
}

impl Conn {
    /// Sizes the buffers for DEPTH messages and sets the time-outs.
    fn new(fd: OwnedFd, kind: Kind, spec: &Spec) -> Result<Self> {
        let one = charge(kind, spec.size)?.ok_or_else(|| BenchError::System {
            system: SYSTEM,
            op: format!("carry {}-byte {} messages", spec.size, kind.name()),
            detail: "the kernel refuses one message that large".into(),
        })?;
        let granted = set_bufs(fd.as_raw_fd(), DEPTH * one, true)?;
        if kind == Kind::SeqPacket && granted < spec.size + SEQPACKET_SLACK {
            return Err(BenchError::System {
                system: SYSTEM,
                op: "size the send buffer".into(),
                detail: format!("granted {granted} bytes, one {}-byte message needs {}", spec.size, spec.size + SEQPACKET_SLACK),
            });
        }
        if spec.blocking {
            set_timeouts(fd.as_raw_fd())?;
        }
        Ok(Self { fd, kind, blocking: spec.blocking })
    }

    fn flags(&self) -> libc::c_int {
        if self.blocking {
            0
        } else {
            libc::MSG_DONTWAIT
        }
    }

    /// Sends `src` as one message (seqpacket) or whole (stream).
    #[inline]
    fn send(&self, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        let flags = self.flags() | libc::MSG_NOSIGNAL;
        let mut idle = Idle::new("waiting for room in the socket");
        let mut off = 0;
        loop {
            let rest = &src[off..];
            // SAFETY: the pointer and length describe the live slice `rest`.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), rest.as_ptr().cast(), rest.len(), flags) };
            if n >= 0 {
                off += n as usize;
                if off == src.len() {
                    return Ok(());
                }
                if self.kind == Kind::SeqPacket {
                    return Err(BenchError::Data(format!("seqpacket send took {n} of {} bytes", rest.len())));
                }
                continue;
            }
            let e = io::Error::last_os_error();
            match errno(&e) {
                libc::EINTR => {}
                // ENOBUFS: the kernel could not allocate the message (one
                // contiguous kmalloc of up to 4 MiB for a seqpacket message);
                // memory may come free, so wait as for room, within the
                // stall limit.
                libc::EAGAIN | libc::ENOBUFS if self.blocking => idle.check(watch)?,
                libc::EAGAIN | libc::ENOBUFS => idle.spin(watch)?,
                libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN => return Err(peer_closed("send")),
                _ => return Err(system_error(SYSTEM, "send")(e)),
            }
        }
    }

    /// Receives one message into `buf` (which is `size` bytes); returns its
    /// length. Seqpacket: the message's real length (`MSG_TRUNC`), an error
    /// if longer than `buf`. Stream: exactly `buf.len()` bytes.
    #[inline]
    fn recv(&self, buf: &mut [u8], watch: &mut Watch<'_>) -> Result<usize> {
        let mut flags = self.flags();
        if self.kind == Kind::SeqPacket {
            flags |= libc::MSG_TRUNC;
        }
        let mut idle = Idle::new("waiting for a message");
        let mut off = 0;
        loop {
            let rest = &mut buf[off..];
            // SAFETY: the pointer and length describe the live, writable
            // slice `rest`.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len(), flags) };
            if n > 0 {
                let n = n as usize;
                if self.kind == Kind::SeqPacket {
                    if n > buf.len() {
                        return Err(BenchError::Data(format!("received {n} bytes, sent {}", buf.len())));
                    }
                    return Ok(n);
                }
                off += n;
                if off == buf.len() {
                    return Ok(off);
                }
                continue;
            }
            if n == 0 {
                return Err(peer_closed("recv"));
            }
            let e = io::Error::last_os_error();
            match errno(&e) {
                libc::EINTR => {}
                libc::EAGAIN if self.blocking => idle.check(watch)?,
                libc::EAGAIN => idle.spin(watch)?,
                libc::ECONNRESET | libc::ENOTCONN => return Err(peer_closed("recv")),
                _ => return Err(system_error(SYSTEM, "recv")(e)),
            }
        }
    }
}

fn peer_closed(op: &str) -> BenchError {
    BenchError::System { system: SYSTEM, op: op.into(), detail: "peer closed".into() }
}

// ---------------------------------------------------------------------------
// Parent

/// The parent: listens, then writes pings / samples and reads pongs.
pub struct Parent {
    listener: OwnedFd,
    path: PathBuf,
    conns: Vec<Conn>,
    kind: Kind,
    spec: Spec,
    buf: Vec<u8>,
}

impl Parent {
    /// Binds and listens on `spec.dir/<tag>.sock` (the socket type as
    /// [`kind`] says).
    pub fn create(spec: &Spec) -> Result<Self> {
        Self::create_kind(spec, decide(spec.size)?)
    }

    fn create_kind(spec: &Spec, kind: Kind) -> Result<Self> {
        let path = sock_path(spec);
        let (addr, len) = sockaddr(&path)?;
        let listener = socket(kind)?;
        // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
        if unsafe { libc::bind(listener.as_raw_fd(), (&raw const addr).cast(), len) } != 0 {
            return Err(BenchError::Io { op: "bind socket", path, source: io::Error::last_os_error() });
        }
        // From here on, dropping `this` removes the file.
        let this = Self { listener, path, conns: Vec::with_capacity(spec.readers), kind, spec: spec.clone(), buf: vec![0u8; spec.size] };
        let backlog = (spec.readers + 4).min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: plain syscall on a socket we own.
        if unsafe { libc::listen(this.listener.as_raw_fd(), backlog) } != 0 {
            return Err(BenchError::Io { op: "listen on socket", path: this.path.clone(), source: io::Error::last_os_error() });
        }
        Ok(this)
    }

    /// Accepts the peers' connections (once): waits on the listener in
    /// 100 ms slices.
    fn accept_all(&mut self, watch: &mut Watch<'_>) -> Result<()> {
        let mut idle = Idle::new("waiting for a peer to connect");
        while self.conns.len() < self.spec.readers {
            let mut pfd = libc::pollfd { fd: self.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: `pfd` is one valid pollfd for the live listener.
            let n = unsafe { libc::poll(&raw mut pfd, 1, SLICE_MS) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if errno(&e) != libc::EINTR {
                    return Err(system_error(SYSTEM, "poll the listening socket")(e));
                }
                continue;
            }
            if n == 0 {
                idle.check(watch)?;
                continue;
            }
            // SAFETY: null address pointers are allowed (peer address not
            // wanted); the listener is a live socket.
            let fd = unsafe { libc::accept4(self.listener.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
            if fd < 0 {
                let e = io::Error::last_os_error();
                match errno(&e) {
                    libc::EINTR | libc::EAGAIN | libc::ECONNABORTED => continue,
                    _ => return Err(system_error(SYSTEM, "accept a connection")(e)),
                }
            }
            // SAFETY: `fd` was just returned by accept4 and is owned by
            // nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            self.conns.push(Conn::new(fd, self.kind, &self.spec)?);
        }
        Ok(())
    }

    /// The one connection of the ping-pong.
    #[inline]
    fn single(&mut self, watch: &mut Watch<'_>) -> Result<&Conn> {
        if self.conns.len() < self.spec.readers {
            self.accept_all(watch)?;
        }
        match self.conns.as_slice() {
            [c] => Ok(c),
            _ => Err(BenchError::Data(format!("ping-pong needs one reader, this case has {}", self.spec.readers))),
        }
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl PingSide for Parent {
    #[inline]
    fn send(&mut self, _seq: u64, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        self.single(watch)?.send(src, watch)
    }

    #[inline]
    fn recv(&mut self, _seq: u64, dst: &mut [u8], watch: &mut Watch<'_>) -> Result<()> {
        self.single(watch)?;
        let n = self.conns[0].recv(&mut self.buf, watch)?;
        copy_out(&self.buf[..n], dst)
    }

    fn stop(&mut self, src: &mut [u8], watch: &mut Watch<'_>) -> Result<()> {
        put_head(src, STOP);
        self.single(watch)?.send(src, watch)
    }
}

impl PubSide for Parent {
    #[inline]
    fn publish(&mut self, _tag: u64, src: &[u8], watch: &mut Watch<'_>) -> Result<()> {
        if self.conns.len() < self.spec.readers {
            self.accept_all(watch)?;
        }
        for c in &self.conns {
            c.send(src, watch)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Peer

/// A peer: one connection to the parent, both directions.
pub struct Peer {
    conn: Conn,
    buf: Vec<u8>,
    size: usize,
}

impl Peer {
    /// Connects to the parent's socket (seqpacket, or stream if the listener
    /// is a stream socket).
    pub fn attach(spec: &Spec, index: usize) -> Result<Self> {
        let path = sock_path(spec);
        let (addr, len) = sockaddr(&path)?;
        for kind in [Kind::SeqPacket, Kind::Stream] {
            let fd = socket(kind)?;
            let rc = loop {
                // SAFETY: `addr` is a valid sockaddr_un of `len` bytes; `fd`
                // is a live socket.
                let rc = unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), len) };
                match (rc, io::Error::last_os_error().raw_os_error()) {
                    (0, _) => break 0,
                    (_, Some(libc::EINTR)) => {}
                    // An interrupted connect went on in the background.
                    (_, Some(libc::EISCONN)) => break 0,
                    _ => break rc,
                }
            };
            if rc == 0 {
                let conn = Conn::new(fd, kind, spec)?;
                return Ok(Self { conn, buf: vec![0u8; spec.size], size: spec.size });
            }
            let e = io::Error::last_os_error();
            if errno(&e) != libc::EPROTOTYPE {
                return Err(system_error(SYSTEM, format!("connect reader {index} to {}", path.display()))(e));
            }
        }
        Err(BenchError::System { system: SYSTEM, op: format!("connect reader {index} to {}", path.display()), detail: "neither seqpacket nor stream".into() })
    }
}

impl EchoSide for Peer {
    #[inline]
    fn echo(&mut self, watch: &mut Watch<'_>) -> Result<bool> {
        let n = self.conn.recv(&mut self.buf, watch)?;
        let got = &self.buf[..n];
        if n >= 8 && head(got) == STOP {
            return Ok(false);
        }
        flink::bench::drive::check_len(got, self.size)?;
        self.conn.send(got, watch)?;
        Ok(true)
    }
}

impl SubSide for Peer {
    #[inline]
    fn take(&mut self, watch: &mut Watch<'_>) -> Result<(u64, u64)> {
        let n = self.conn.recv(&mut self.buf, watch)?;
        take_sample(&self.buf[..n], self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flink::bench::drive::{self, Budget, Consumed};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    const BUDGET: Budget = Budget { warmup: Duration::from_millis(5), measure: Duration::from_millis(20), min_samples: 200, max_samples: 10_000 };

    /// A private directory per test, removed at the end (after checking it
    /// is empty).
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let d = std::env::temp_dir().join(format!("uds-side-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir(&d).unwrap();
            Self(d)
        }

        fn spec(&self, tag: &str, size: usize, readers: usize, blocking: bool) -> Spec {
            Spec { dir: self.0.clone(), tag: tag.into(), size, readers, blocking }
        }

        fn assert_empty(&self) {
            let left: Vec<_> = std::fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert!(left.is_empty(), "left in {}: {left:?}", self.0.display());
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn no_shm_left(tag: &str) {
        for e in std::fs::read_dir("/dev/shm").unwrap() {
            let name = e.unwrap().file_name();
            assert!(!name.to_string_lossy().contains(tag), "/dev/shm/{name:?} left");
        }
    }

    /// Runs `f` on an attached peer in a thread; returns once it attached.
    fn spawn_peer<T: Send + 'static>(spec: &Spec, index: usize, f: impl FnOnce(&mut Peer) -> Result<T> + Send + 'static) -> std::thread::JoinHandle<Result<T>> {
        let (tx, rx) = mpsc::channel();
        let spec = spec.clone();
        let h = std::thread::spawn(move || {
            let mut p = Peer::attach(&spec, index)?;
            let _ = tx.send(());
            f(&mut p)
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            panic!("peer {index} did not attach: {:?}", h.join().unwrap().err());
        }
        h
    }

    fn ping_then_publish(spec: &Spec, parent: &mut Parent) -> (usize, Consumed) {
        let peer = spawn_peer(spec, 0, |p| {
            drive::echo(p, &mut || Ok(()))?;
            drive::consume(p, &mut || Ok(()))
        });
        let rtts = drive::latency(parent, spec.size, &BUDGET, &mut || Ok(())).unwrap();
        drive::publish(parent, spec.size, &BUDGET, &mut || Ok(())).unwrap();
        let c = peer.join().unwrap().unwrap();
        (rtts.len(), c)
    }

    fn run_pair(size: usize, blocking: bool, force_stream: bool) {
        let name = format!("p{size}{}{}", if blocking { "b" } else { "p" }, if force_stream { "s" } else { "" });
        let dir = Dir::new(&name);
        let spec = dir.spec(&name, size, 1, blocking);
        let mut parent = if force_stream { Parent::create_kind(&spec, Kind::Stream).unwrap() } else { Parent::create(&spec).unwrap() };
        let t0 = Instant::now();
        let (rtts, c) = ping_then_publish(&spec, &mut parent);
        eprintln!(
            "{name}: {} {size} B {}: {rtts} round trips, {} samples in {:?} ({:.0}/s), total {:?}",
            parent.kind.name(),
            if blocking { "blocking" } else { "poll" },
            c.count,
            c.elapsed,
            c.count as f64 / c.elapsed.as_secs_f64(),
            t0.elapsed()
        );
        assert!(rtts > 0, "latency completed no round trip"); // 200 unless the 4x hard limit hit first
        assert!(c.count > 0);
        drop(parent);
        cleanup(&spec);
        dir.assert_empty();
        no_shm_left(&name);
    }

    #[test]
    fn pair_8b_poll() {
        run_pair(8, false, false);
    }
    #[test]
    fn pair_8b_blocking() {
        run_pair(8, true, false);
    }
    #[test]
    fn pair_1k_poll() {
        run_pair(1024, false, false);
    }
    #[test]
    fn pair_1k_blocking() {
        run_pair(1024, true, false);
    }
    #[test]
    fn pair_1m_poll() {
        run_pair(1 << 20, false, false);
    }
    #[test]
    fn pair_1m_blocking() {
        run_pair(1 << 20, true, false);
    }
    #[test]
    fn pair_4m_blocking() {
        run_pair(4 << 20, true, false);
    }
    #[test]
    fn pair_16m_poll() {
        run_pair(16 << 20, false, false);
    }
    #[test]
    fn stream_8b_poll() {
        run_pair(8, false, true);
    }
    #[test]
    fn stream_8b_blocking() {
        run_pair(8, true, true);
    }
    #[test]
    fn stream_1m_poll() {
        run_pair(1 << 20, false, true);
    }
    #[test]
    fn stream_1m_blocking() {
        run_pair(1 << 20, true, true);
    }

    fn run_fanout(size: usize, blocking: bool) {
        flink::bench::proc::yield_when_idle(true);
        let name = format!("f{size}{}", if blocking { "b" } else { "p" });
        let dir = Dir::new(&name);
        let spec = dir.spec(&name, size, 4, blocking);
        let mut parent = Parent::create(&spec).unwrap();
        let peers: Vec<_> = (0..4).map(|i| spawn_peer(&spec, i, |p| drive::consume(p, &mut || Ok(())))).collect();
        drive::publish(&mut parent, size, &BUDGET, &mut || Ok(())).unwrap();
        let counts: Vec<u64> = peers.into_iter().map(|h| h.join().unwrap().unwrap().count).collect();
        eprintln!("{name}: fan-out x4 {} {size} B: counts {counts:?}", parent.kind.name());
        assert!(counts[0] > 0);
        assert!(counts.iter().all(|&c| c == counts[0]), "every reader gets every sample: {counts:?}");
        drop(parent);
        dir.assert_empty();
        no_shm_left(&name);
    }

    #[test]
    fn fanout_1k_poll() {
        run_fanout(1024, false);
    }
    #[test]
    fn fanout_1k_blocking() {
        run_fanout(1024, true);
    }
    #[test]
    fn fanout_1m_blocking() {
        run_fanout(1 << 20, true);
    }

    /// A peer that goes away mid-run makes the parent fail, not hang.
    fn run_disconnect(blocking: bool, readers: usize) {
        let name = format!("d{}{readers}", if blocking { "b" } else { "p" });
        let dir = Dir::new(&name);
        let spec = dir.spec(&name, 1024, readers, blocking);
        let mut parent = Parent::create(&spec).unwrap();
        let mut peers = Vec::new();
        for i in 0..readers {
            peers.push(spawn_peer(&spec, i, move |p| {
                if readers == 1 {
                    for _ in 0..10 {
                        p.echo(&mut || Ok(()))?;
                    }
                } else if i == 0 {
                    for _ in 0..10 {
                        p.take(&mut || Ok(()))?;
                    }
                } else {
                    drive::consume(p, &mut || Ok(()))?;
                }
                Ok(())
            }));
        }
        let t0 = Instant::now();
        let r = if readers == 1 {
            drive::latency(&mut parent, spec.size, &Budget { measure: Duration::from_secs(5), ..BUDGET }, &mut || Ok(())).map(|_| ())
        } else {
            drive::publish(&mut parent, spec.size, &Budget { measure: Duration::from_secs(5), ..BUDGET }, &mut || Ok(()))
        };
        let e = r.expect_err("the parent must notice the closed peer");
        eprintln!("{name}: after {:?}: {e}", t0.elapsed());
        assert!(t0.elapsed() < Duration::from_secs(3));
        assert!(e.to_string().contains("peer closed"), "{e}");
        drop(parent); // closes the other readers' connections: they fail too
        for p in peers {
            let _ = p.join().unwrap();
        }
        dir.assert_empty();
    }

    #[test]
    fn disconnect_poll() {
        run_disconnect(false, 1);
    }
    #[test]
    fn disconnect_blocking() {
        run_disconnect(true, 1);
    }
    #[test]
    fn disconnect_fanout_blocking() {
        run_disconnect(true, 3);
    }

    /// The parent fails (not hangs) when its peer vanishes.
    #[test]
    fn peer_sees_parent_gone() {
        let dir = Dir::new("g");
        let spec = dir.spec("g", 64, 1, true);
        let mut parent = Parent::create(&spec).unwrap();
        let peer = spawn_peer(&spec, 0, |p| drive::echo(p, &mut || Ok(())));
        let mut src = drive::pattern(64);
        put_head(&mut src, 0);
        parent.send(0, &src, &mut || Ok(())).unwrap();
        drop(parent);
        let e = peer.join().unwrap().expect_err("the peer must notice");
        assert!(e.to_string().contains("peer closed"), "{e}");
        dir.assert_empty();
    }

    /// A killed run (parent never dropped) leaves the socket file; cleanup
    /// removes it, and cleanup on nothing is fine.
    #[test]
    fn cleanup_removes_leftovers() {
        let dir = Dir::new("c");
        let spec = dir.spec("c", 8, 1, false);
        cleanup(&spec); // nothing there yet
        let parent = Parent::create(&spec).unwrap();
        let peer = Peer::attach(&spec, 0).unwrap();
        std::mem::forget(parent); // as if killed: Drop never runs
        drop(peer);
        assert!(sock_path(&spec).exists());
        cleanup(&spec);
        dir.assert_empty();
        cleanup(&spec);
        // A fresh parent can use the tag again.
        drop(Parent::create(&spec).unwrap());
        dir.assert_empty();
        no_shm_left("c");
    }

    /// Sockets of `kind` configured as the sides do; how many messages of
    /// `size` fit before the sender would wait.
    fn messages_in_flight(kind: Kind, size: usize, force: bool) -> (usize, usize) {
        let (a, b) = socketpair(kind).unwrap();
        let spec = Spec { dir: PathBuf::new(), tag: String::new(), size, readers: 1, blocking: false };
        let a = Conn::new(a, kind, &spec).unwrap();
        if !force {
            set_bufs(a.fd.as_raw_fd(), DEPTH * charge(kind, size).unwrap().unwrap(), false).unwrap();
        }
        let granted = getsockopt_int(a.fd.as_raw_fd(), libc::SO_SNDBUF).unwrap();
        let buf = vec![0u8; size];
        let mut n = 0;
        loop {
            // SAFETY: `buf` is live for `size` bytes.
            let r = unsafe { libc::send(a.fd.as_raw_fd(), buf.as_ptr().cast(), size, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if r < 0 {
                assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN));
                break;
            }
            if r as usize != size {
                break; // a stream took part of one: count whole ones only
            }
            n += 1;
            assert!(n < 10_000);
        }
        drop(b);
        (granted, n)
    }

    /// The survey of sizes (run by hand: `cargo test --release -- --ignored
    /// --nocapture survey`).
    #[test]
    #[ignore]
    fn survey() {
        for shift in [3, 6, 10, 12, 14, 16, 17, 18, 20, 21, 22, 23, 24] {
            let size = 1usize << shift;
            let forced = measure_charge(Kind::SeqPacket, size, true).unwrap();
            let plain = measure_charge(Kind::SeqPacket, size, false).unwrap();
            let kind = decide(size).unwrap();
            let (granted, fits) = messages_in_flight(kind, size, true);
            let (granted_plain, fits_plain) = messages_in_flight(kind, size, false);
            eprintln!(
                "{size:>9} B: seqpacket charge forced {forced:?} / unprivileged {plain:?}; uses {}: sndbuf {granted}, {fits} messages in flight (unprivileged: sndbuf {granted_plain}, {fits_plain})",
                kind.name()
            );
        }
    }
}
