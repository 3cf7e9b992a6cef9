//! The entry handles and the lock-free protocol behind them.
//!
//! Per entry (see `layout`): a `version` word, three value buffers and one
//! sequence word per buffer. Version `v`'s value lives in buffer `v % 3`.
//!
//! * **Writer** (one per entry, by its claim): to publish `v + 1` it stores
//!   `seq[b] = 2(v+1) + 1` (odd: being written), a Release fence, the value
//!   bytes in place, `seq[b] = 2(v+1)` (Release), then `version = v + 1`
//!   (Release), then wakes waiters if any. It never waits for readers.
//! * **Reader**: loads `version` (Acquire) = `v`, `s1 = seq[v % 3]`
//!   (Acquire); if `s1 == 2v` it copies the buffer with atomic word loads,
//!   an Acquire fence, and re-loads `seq`: equal means no byte it copied
//!   was written meanwhile (a seqlock per buffer), so the copy is version
//!   `v`'s value, whole. Anything else (the writer lapped it: it published
//!   two more versions and started on this buffer again; or a hostile
//!   state) is retried, a bounded number of times ([`READ_ATTEMPTS`]),
//!   then reported as [`BlackboardError::Contended`]. Buffer indices come
//!   from `version % 3` and offsets from validated data: no value read from
//!   the segment can send a reader out of bounds.
//!
//! The versions a reader returns never go back (it returns the `v` it
//! loaded, and loads of one word are coherent). With three buffers, a
//! reader is disturbed only if the writer publishes twice and starts a
//! third write during one copy.
//!
//! Soundness of in-place writes: a reader may load a buffer while the
//! writer stores into it (only when lapped, and it then discards what it
//! read). Readers load with atomics; the writer stores values with plain
//! typed writes — in place, through [`EntryLoan::value_mut`] or a copy —
//! between its odd and even `seq` stores, as `crossbeam`'s `SeqLock` and
//! the ring's loans do. The writer alone writes the buffer (its claim), and
//! its plain stores are ordered after the odd `seq` store by the Release
//! fence; a reader never uses a copy that overlapped them. (Rust has no
//! stable per-byte atomic memcpy a typed value could be stored with: a
//! value's padding may not be read as integers.)

use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::BlackboardError;
use super::layout::{EntryState, BUFFERS};
use super::segment::Segment;
use crate::sys::futex;
use crate::Pod;

/// How often a reader tries to copy a consistent value before it gives up
/// with [`BlackboardError::Contended`]: the first 16 back to back, the
/// rest after a `yield`. A writer running mad (or a hostile process) cannot
/// hang a reader.
pub const READ_ATTEMPTS: u32 = 1024;
/// Attempts made before a reader starts yielding between attempts.
const SPIN_ATTEMPTS: u32 = 16;

/// A stable entry id: the entry's index in its board (0 to entries - 1),
/// the same in every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub(crate) u32);

impl EntryId {
    /// The index (0 to entries - 1).
    pub fn index(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Copies `size` bytes from shared memory with atomic word loads.
///
/// # Safety
/// `src` must be 8-aligned and valid for reads of `align8(size)` bytes of
/// shared memory accessed atomically; `dst` valid for writes of `size`
/// bytes.
unsafe fn copy_out(src: *const u8, dst: *mut u8, size: usize) {
    let words = size / 8;
    let src = src.cast::<AtomicU64>();
    for k in 0..words {
        // SAFETY: word `k < align8(size) / 8` of `src`, and `dst` has room
        // for it (caller); unaligned store: `dst` is only byte aligned.
        unsafe { dst.add(8 * k).cast::<u64>().write_unaligned((*src.add(k)).load(Ordering::Relaxed)) };
    }
    let rem = size % 8;
    if rem != 0 {
        // SAFETY: the last word lies within `align8(size)` bytes; `rem`
        // bytes of `dst` remain (caller).
        unsafe {
            let w = (*src.add(words)).load(Ordering::Relaxed).to_ne_bytes();
            std::ptr::copy_nonoverlapping(w.as_ptr(), dst.add(8 * words), rem);
        }
    }
}

/// One consistent `(value, version)` of entry `i`, or `Contended`.
fn read<V: Pod>(seg: &Segment, i: usize) -> Result<(V, u64), BlackboardError> {
    let st = seg.state(i);
    let mut out = MaybeUninit::<V>::uninit();
    for attempt in 0..READ_ATTEMPTS {
        // SYNC POINT (publication): pairs with the writer's Release store of
        // `version`, made after the value and its even `seq`.
        let v = st.version.load(Ordering::Acquire);
        let seq = &st.seq[(v % BUFFERS as u64) as usize];
        let s1 = seq.load(Ordering::Acquire);
        if s1 == v.wrapping_mul(2) {
            // SAFETY: buffer `v % 3` of a validated entry whose value type
            // is `V` (checked when the handle was made): 64-aligned,
            // `align64(size_of V)` bytes in the mapping; `out` has room
            // for a `V`.
            unsafe { copy_out(seg.buffer(i, v), out.as_mut_ptr().cast::<u8>(), size_of::<V>()) };
            // SYNC POINT (seqlock): the copy's loads happen before the
            // re-check; pairs with the writer's Release fence after its odd
            // `seq` store: if we loaded any byte of a later write, we see
            // its odd `seq` (or later) now.
            fence(Ordering::Acquire);
            if seq.load(Ordering::Relaxed) == s1 {
                // SAFETY: every byte was copied, and any bits are a valid
                // `V` (`Pod`).
                return Ok((unsafe { out.assume_init() }, v));
            }
        }
        if attempt < SPIN_ATTEMPTS {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    Err(BlackboardError::Contended { entry: EntryId(i as u32), attempts: READ_ATTEMPTS })
}

/// Waits until entry `st`'s version differs from `last`; returns it, or
/// `None` after `timeout`.
pub(crate) fn wait_for_change(st: &EntryState, last: u64, timeout: Duration) -> Option<u64> {
    let deadline = Instant::now().checked_add(timeout);
    loop {
        let v = st.version.load(Ordering::Acquire);
        if v != last {
            return Some(v);
        }
        let left = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        if left.is_zero() {
            return None;
        }
        // SYNC POINT (wake): register, fence, read the generation, re-check
        // the version, then sleep. The writer stores the version, bumps
        // the generation, fences, then reads `waiters`: of the two SeqCst
        // fences, if ours comes first the writer sees us and wakes us (its
        // bump after our load of the generation makes the futex return at
        // once); if its comes first, our re-check sees the new version.
        st.waiters.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let g = st.epoch.load(Ordering::Relaxed);
        if st.version.load(Ordering::Relaxed) == last {
            futex::wait(&st.epoch, g, left);
        }
        st.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads one entry's latest value: lock-free, never torn. Any number of
/// readers, in any number of processes. Keeps the board's mapping alive.
pub struct EntryReader<V: Pod> {
    seg: Arc<Segment>,
    index: usize,
    _v: PhantomData<fn() -> V>,
}

impl<V: Pod> EntryReader<V> {
    /// `index` is a validated entry holding `V`.
    pub(crate) fn new(seg: Arc<Segment>, index: usize) -> Self {
        Self { seg, index, _v: PhantomData }
    }

    /// The latest value.
    ///
    /// # Errors
    /// [`BlackboardError::Contended`] when no consistent copy was made in
    /// [`READ_ATTEMPTS`] attempts.
    pub fn get(&self) -> Result<V, BlackboardError> {
        read(&self.seg, self.index).map(|(v, _)| v)
    }

    /// The latest value and its version (0: the initial value; each update
    /// adds one). The value is exactly that version's.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn get_with_version(&self) -> Result<(V, u64), BlackboardError> {
        read(&self.seg, self.index)
    }

    /// The latest version (a change counter: updates since creation).
    pub fn version(&self) -> u64 {
        self.seg.state(self.index).version.load(Ordering::Acquire)
    }

    /// Waits on the entry's futex until its version differs from `last`;
    /// returns the new version, or `None` after `timeout`. Returns at once
    /// if it already differs.
    pub fn wait_for_change(&self, last: u64, timeout: Duration) -> Option<u64> {
        wait_for_change(self.seg.state(self.index), last, timeout)
    }

    /// The entry's id.
    pub fn id(&self) -> EntryId {
        EntryId(self.index as u32)
    }
}

impl<V: Pod> std::fmt::Debug for EntryReader<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryReader").field("entry", &self.index).field("type", &std::any::type_name::<V>()).finish()
    }
}

/// The one update handle of an entry (across all processes, while it
/// lives). Dropping it frees the entry for another writer; so does the
/// death of its process. Keeps the board's mapping alive.
pub struct EntryWriter<V: Pod> {
    seg: Arc<Segment>,
    index: usize,
    /// The last version published (by us, or by the writer before us).
    version: u64,
    _v: PhantomData<fn(V)>,
}

impl<V: Pod> EntryWriter<V> {
    /// `index` is a validated entry holding `V`, claimed by this handle's
    /// segment.
    pub(crate) fn new(seg: Arc<Segment>, index: usize) -> Self {
        // SYNC POINT (claim): the previous writer's last publication
        // happened before its release of the claim, which `claim` acquired.
        let version = seg.state(index).version.load(Ordering::Acquire);
        Self { seg, index, version, _v: PhantomData }
    }

    /// Starts writing version `self.version + 1`: marks its buffer as being
    /// written; returns the version and the buffer.
    fn begin(&mut self) -> (u64, *mut V) {
        let v = self.version.wrapping_add(1);
        let st = self.seg.state(self.index);
        st.seq[(v % BUFFERS as u64) as usize].store(v.wrapping_mul(2).wrapping_add(1), Ordering::Relaxed);
        // SYNC POINT (seqlock): the odd `seq` before any byte of the value;
        // pairs with the reader's Acquire fence before its re-check.
        fence(Ordering::Release);
        (v, self.seg.buffer(self.index, v).cast::<V>())
    }

    /// Publishes version `v`, whose buffer `begin` handed out and which is
    /// now written.
    fn finish(&mut self, v: u64) -> u64 {
        let st = self.seg.state(self.index);
        st.seq[(v % BUFFERS as u64) as usize].store(v.wrapping_mul(2), Ordering::Release);
        // SYNC POINT (publication): value and even `seq` before the version;
        // pairs with the reader's Acquire load of `version`.
        st.version.store(v, Ordering::Release);
        self.version = v;
        let g = st.epoch.load(Ordering::Relaxed);
        st.epoch.store(g.wrapping_add(1), Ordering::Relaxed);
        // SYNC POINT (wake): see `wait_for_change`. No syscall unless a
        // waiter is registered.
        fence(Ordering::SeqCst);
        if st.waiters.load(Ordering::Relaxed) != 0 {
            futex::wake_all(&st.epoch);
        }
        v
    }

    /// Copies `value` into the entry and publishes it; returns its version.
    pub fn update_with_copy(&mut self, value: &V) -> u64 {
        let (v, ptr) = self.begin();
        // SAFETY: the buffer is 64-aligned (align of `V` ≤ 64, validated),
        // holds a `V`, and only this writer writes it (see the module doc
        // for the readers that may load it meanwhile).
        unsafe { ptr.write(*value) };
        self.finish(v)
    }

    /// Loans the entry's next value buffer to build the value in place,
    /// then [`publish`](EntryValue::publish) it. A loan dropped unpublished
    /// publishes nothing (the version stays).
    pub fn loan_uninit(&mut self) -> EntryLoan<'_, V> {
        let (version, ptr) = self.begin();
        EntryLoan { writer: self, version, ptr }
    }

    /// The last version published.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The entry's id.
    pub fn id(&self) -> EntryId {
        EntryId(self.index as u32)
    }
}

impl<V: Pod> Drop for EntryWriter<V> {
    fn drop(&mut self) {
        self.seg.release(self.index);
    }
}

impl<V: Pod> std::fmt::Debug for EntryWriter<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryWriter").field("entry", &self.index).field("type", &std::any::type_name::<V>()).field("version", &self.version).finish()
    }
}

/// An entry's next value buffer, loaned to be written in place. Not yet
/// initialised as far as the type system knows: [`write`](Self::write) a
/// value, or write through [`value_mut`](Self::value_mut) and
/// [`assume_init`](Self::assume_init); then publish the [`EntryValue`].
/// Dropped, it publishes nothing.
pub struct EntryLoan<'w, V: Pod> {
    writer: &'w mut EntryWriter<V>,
    version: u64,
    ptr: *mut V,
}

impl<'w, V: Pod> EntryLoan<'w, V> {
    /// The buffer in shared memory, to write in place.
    pub fn value_mut(&mut self) -> &mut MaybeUninit<V> {
        // SAFETY: 64-aligned, `size_of V` bytes in the mapping, written by
        // this writer only while the loan lives (module doc); MaybeUninit
        // makes no claim about the bytes.
        unsafe { &mut *self.ptr.cast::<MaybeUninit<V>>() }
    }

    /// Writes the whole value in place.
    pub fn write(mut self, value: V) -> EntryValue<'w, V> {
        self.value_mut().write(value);
        EntryValue { writer: self.writer, version: self.version, ptr: self.ptr }
    }

    /// Declares the value written through [`value_mut`](Self::value_mut).
    ///
    /// # Safety
    /// Every byte of the `V` must have been initialised through
    /// `value_mut` (the buffer starts with bytes of an older value, but a
    /// write of `MaybeUninit::uninit()` may have un-initialised them).
    pub unsafe fn assume_init(self) -> EntryValue<'w, V> {
        EntryValue { writer: self.writer, version: self.version, ptr: self.ptr }
    }

    /// The version this value will have once published.
    pub fn version(&self) -> u64 {
        self.version
    }
}

impl<V: Pod> std::fmt::Debug for EntryLoan<'_, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryLoan").field("entry", &self.writer.index).field("version", &self.version).finish()
    }
}

/// A value written in place, not yet published: change it through
/// `DerefMut`, then [`publish`](Self::publish). Dropped, it publishes
/// nothing.
pub struct EntryValue<'w, V: Pod> {
    writer: &'w mut EntryWriter<V>,
    version: u64,
    ptr: *mut V,
}

impl<V: Pod> EntryValue<'_, V> {
    /// Publishes the value; returns its version.
    pub fn publish(self) -> u64 {
        self.writer.finish(self.version)
    }

    /// The version this value will have once published.
    pub fn version(&self) -> u64 {
        self.version
    }
}

impl<V: Pod> Deref for EntryValue<'_, V> {
    type Target = V;
    fn deref(&self) -> &V {
        // SAFETY: initialised (`write` or the `assume_init` contract),
        // aligned, in the mapping, written only by us while we hold it.
        unsafe { &*self.ptr }
    }
}

impl<V: Pod> DerefMut for EntryValue<'_, V> {
    fn deref_mut(&mut self) -> &mut V {
        // SAFETY: as in `deref`; exclusive through `&mut self`.
        unsafe { &mut *self.ptr }
    }
}

impl<V: Pod> std::fmt::Debug for EntryValue<'_, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryValue").field("entry", &self.writer.index).field("version", &self.version).finish()
    }
}
