//! The safe API: [`Loan`] (write in place, commit, dropped = discarded),
//! [`Sample`] (read in place, released on drop), and typed
//! [`Publisher`] / [`Subscriber`] for plain-old-data types.

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ops::Deref;
use std::time::Duration;

use crate::backend::{ReaderMask, ReaderStats, SlotBackend, SlotHandle, ALL_READERS};
use crate::error::{ReceiveError, SlotError, TypeError};

/// A loaned slot: write the sample in place, then [`commit`](Self::commit).
/// Dropping it without committing discards it (readers never see it).
pub struct Loan<'a, B: SlotBackend + ?Sized> {
    backend: &'a B,
    handle: SlotHandle,
    ptr: *mut u8,
    cap: usize,
    done: bool,
}

impl<'a, B: SlotBackend + ?Sized> Loan<'a, B> {
    /// Reserves a slot addressed to every registered reader.
    ///
    /// # Errors
    /// As [`SlotBackend::reserve_slot`].
    pub fn new(backend: &'a B) -> Result<Self, SlotError> {
        Self::with_mask(backend, ALL_READERS)
    }

    /// Reserves a slot addressed to the registered readers in `mask`.
    ///
    /// # Errors
    /// As [`SlotBackend::reserve_slot`].
    pub fn with_mask(backend: &'a B, mask: ReaderMask) -> Result<Self, SlotError> {
        let (handle, ptr, cap) = backend.reserve_loan(mask)?;
        Ok(Self { backend, handle, ptr, cap, done: false })
    }

    /// Loans a slot with room for `len` bytes: a ring created with a
    /// growth strategy moves to larger slots first if needed (see
    /// [`GrowthStrategy`](crate::GrowthStrategy)); any other backend
    /// checks that `len` fits.
    ///
    /// # Errors
    /// [`SlotError::SampleTooLarge`] when it does not fit and the ring
    /// cannot grow; as [`new`](Self::new) otherwise.
    pub fn sized(backend: &'a B, len: usize) -> Result<Self, SlotError> {
        backend.ensure_capacity(len)?;
        Self::new(backend)
    }

    /// Waits up to `timeout` for a slot.
    ///
    /// # Errors
    /// [`SlotError::TimedOut`], or as [`SlotBackend::reserve_slot`].
    pub fn new_timeout(backend: &'a B, timeout: Duration) -> Result<Self, SlotError> {
        let (handle, ptr, cap) = backend.reserve_loan_timeout(ALL_READERS, timeout)?;
        Ok(Self { backend, handle, ptr, cap, done: false })
    }

    /// The slot's bytes, to write in place (`slot_capacity` long; contents
    /// are whatever the slot held before).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the loan owns `cap` writable bytes at `ptr` until commit or
        // discard, which consume or drop `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.cap) }
    }

    /// Sequence number this sample will have.
    pub fn seq(&self) -> u64 {
        self.handle.seq
    }

    /// Publishes the first `len` bytes. Returns the sequence number.
    ///
    /// # Errors
    /// [`SlotError::SampleTooLarge`] (the loan is discarded).
    pub fn commit(mut self, len: usize) -> Result<u64, SlotError> {
        self.done = true;
        match self.backend.commit_in_place(self.handle, len) {
            Ok(seq) => Ok(seq),
            Err(e) => {
                let _ = self.backend.discard_slot(self.handle);
                Err(e)
            }
        }
    }
}

impl<B: SlotBackend + ?Sized> Drop for Loan<'_, B> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.backend.discard_slot(self.handle);
        }
    }
}

/// A received sample, read in place. Released (the slot handed back to the
/// writers) when dropped.
pub struct Sample<'a, B: SlotBackend + ?Sized> {
    backend: &'a B,
    handle: SlotHandle,
    reader: u8,
    ptr: *const u8,
    len: usize,
}

impl<'a, B: SlotBackend + ?Sized> Sample<'a, B> {
    /// A sample `next_unread_read` (or its `_timeout` form) returned:
    /// `(handle, ptr, len)` of reader `reader`, checked already.
    pub(crate) fn held(backend: &'a B, reader: u8, (handle, ptr, len): (SlotHandle, *const u8, usize)) -> Self {
        Self { backend, handle, reader, ptr, len }
    }

    /// Sequence number of the sample.
    pub fn seq(&self) -> u64 {
        self.handle.seq
    }
}

impl<B: SlotBackend + ?Sized> Deref for Sample<'_, B> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the reader holds the slot until this `Sample` is dropped,
        // so it is not reused; `len` was bounded by the capacity.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<B: SlotBackend + ?Sized> Drop for Sample<'_, B> {
    fn drop(&mut self) {
        let _ = self.backend.mark_read(self.handle, self.reader);
    }
}

/// A reader of byte samples: registers a reader bit on creation and
/// unregisters on drop.
pub struct Reader<B: SlotBackend> {
    backend: B,
    index: u8,
}

impl<B: SlotBackend> Reader<B> {
    /// Registers a reader on `backend`.
    ///
    /// # Errors
    /// [`SlotError::ReadersFull`].
    pub fn new(backend: B) -> Result<Self, SlotError> {
        let index = backend.register_reader()?;
        Ok(Self { backend, index })
    }

    /// The next sample, if one is committed.
    ///
    /// # Errors
    /// As [`SlotBackend::next_unread_slot`].
    pub fn try_recv(&mut self) -> Result<Option<Sample<'_, B>>, SlotError> {
        Ok(self.backend.next_unread_read(self.index)?.map(|held| Sample::held(&self.backend, self.index, held)))
    }

    /// The next sample, waiting up to `timeout` (spin, then park).
    ///
    /// # Errors
    /// As [`SlotBackend::next_unread_slot`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Sample<'_, B>>, SlotError> {
        Ok(self.backend.next_unread_read_timeout(self.index, timeout)?.map(|held| Sample::held(&self.backend, self.index, held)))
    }

    /// This reader's index (its bit in reader masks).
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Received and lost counts.
    ///
    /// # Errors
    /// [`SlotError::ReaderNotRegistered`] if it was disconnected.
    pub fn stats(&self) -> Result<ReaderStats, SlotError> {
        self.backend.reader_stats(self.index)
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

impl<B: SlotBackend> Drop for Reader<B> {
    fn drop(&mut self) {
        let _ = self.backend.unregister_reader(self.index);
    }
}

/// Plain old data: a `Copy` type with no padding-dependent invariants, for
/// which **every bit pattern is a valid value** (integers, floats, arrays and
/// `#[repr(C)]` structs of them; not `bool`, `char`, enums or references).
///
/// # Safety
/// The implementer guarantees the above, and that `TYPE_HASH` changes
/// whenever the layout does (see [`type_hash`]).
pub unsafe trait Pod: Copy + Send + Sync + 'static {
    /// Identifies the layout; checked against the segment at attach.
    const TYPE_HASH: [u8; 16];
}

/// A 128-bit FNV-1a hash of a type's name, size and alignment, usable in a
/// `const` for [`Pod::TYPE_HASH`].
pub const fn type_hash(name: &str, size: usize, align: usize) -> [u8; 16] {
    let s = (size as u64).to_le_bytes();
    let a = (align as u64).to_le_bytes();
    let mut extra = [0u8; 16];
    let mut j = 0;
    while j < 8 {
        extra[j] = s[j];
        extra[8 + j] = a[j];
        j += 1;
    }
    crate::hash::fnv1a_128_from(crate::hash::fnv1a_128(name.as_bytes()), &extra).to_le_bytes()
}

fn check_type<T: Pod, B: SlotBackend>(backend: &B) -> Result<(), TypeError> {
    let found = backend.type_hash();
    if found != Some(T::TYPE_HASH) {
        return Err(TypeError::Mismatch { expected: T::TYPE_HASH, found });
    }
    // Payloads start 32-byte aligned in every backend's slots.
    if size_of::<T>() > backend.slot_capacity() || align_of::<T>() > 32 {
        return Err(TypeError::TooLarge { size: size_of::<T>(), align: align_of::<T>(), capacity: backend.slot_capacity() });
    }
    Ok(())
}

/// Publishes values of `T` on a ring created for `T`.
pub struct Publisher<T: Pod, B: SlotBackend> {
    backend: B,
    _t: PhantomData<fn(T)>,
}

impl<T: Pod, B: SlotBackend> Publisher<T, B> {
    /// Wraps a backend whose type hash is `T::TYPE_HASH`.
    ///
    /// # Errors
    /// [`TypeError::Mismatch`], [`TypeError::TooLarge`].
    pub fn new(backend: B) -> Result<Self, TypeError> {
        check_type::<T, B>(&backend)?;
        Ok(Self { backend, _t: PhantomData })
    }

    /// Copies `value` into a slot and publishes it.
    ///
    /// # Errors
    /// [`SlotError::NoFreeSlot`] when the ring is full.
    pub fn publish(&self, value: &T) -> Result<u64, SlotError> {
        let mut loan = self.loan()?;
        loan.write(*value);
        loan.commit()
    }

    /// As [`publish`](Self::publish), waiting up to `timeout` for a slot.
    ///
    /// # Errors
    /// [`SlotError::TimedOut`].
    pub fn publish_timeout(&self, value: &T, timeout: Duration) -> Result<u64, SlotError> {
        let mut loan = TypedLoan { loan: Loan::new_timeout(&self.backend, timeout)?, _t: PhantomData };
        loan.write(*value);
        loan.commit()
    }

    /// Loans a slot to build a `T` in place.
    ///
    /// # Errors
    /// [`SlotError::NoFreeSlot`].
    pub fn loan(&self) -> Result<TypedLoan<'_, T, B>, SlotError> {
        Ok(TypedLoan { loan: Loan::new(&self.backend)?, _t: PhantomData })
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

/// A slot loaned for one `T`.
pub struct TypedLoan<'a, T: Pod, B: SlotBackend> {
    loan: Loan<'a, B>,
    _t: PhantomData<fn(T)>,
}

impl<T: Pod, B: SlotBackend> TypedLoan<'_, T, B> {
    /// Writes the whole value into the slot.
    pub fn write(&mut self, value: T) {
        // SAFETY: `check_type` ensured size and alignment fit the slot
        // payload, which the loan owns exclusively.
        unsafe { self.loan.ptr.cast::<T>().write(value) }
    }

    /// The value in the slot, to change fields in place. Starts as whatever
    /// the slot held (any bit pattern is a valid `T`: [`Pod`]).
    pub fn value_mut(&mut self) -> &mut T {
        // SAFETY: as in `write`; `T: Pod` makes any bytes a valid `T`.
        unsafe { &mut *self.loan.ptr.cast::<T>() }
    }

    /// Publishes the value.
    ///
    /// # Errors
    /// As [`Loan::commit`].
    pub fn commit(self) -> Result<u64, SlotError> {
        self.loan.commit(size_of::<T>())
    }
}

/// Receives values of `T` from a ring created for `T`.
pub struct Subscriber<T: Pod, B: SlotBackend> {
    reader: Reader<B>,
    _t: PhantomData<fn() -> T>,
}

/// A received `T`, read in place; released on drop.
pub struct TypedSample<'a, T: Pod, B: SlotBackend> {
    sample: Sample<'a, B>,
    _t: PhantomData<&'a T>,
}

impl<T: Pod, B: SlotBackend> Deref for TypedSample<'_, T, B> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the length was checked to be `size_of::<T>()`, the payload
        // is 32-byte aligned (`check_type` bounded `align_of::<T>()`), any
        // bit pattern is a valid `T` (`Pod`), and the slot is held.
        unsafe { &*self.sample.ptr.cast::<T>() }
    }
}

impl<T: Pod, B: SlotBackend> TypedSample<'_, T, B> {
    /// Sequence number of the sample.
    pub fn seq(&self) -> u64 {
        self.sample.seq()
    }
}

impl<T: Pod, B: SlotBackend> Subscriber<T, B> {
    /// Registers a reader on a backend whose type hash is `T::TYPE_HASH`.
    ///
    /// # Errors
    /// [`TypeError`].
    pub fn new(backend: B) -> Result<Self, TypeError> {
        check_type::<T, B>(&backend)?;
        Ok(Self { reader: Reader::new(backend)?, _t: PhantomData })
    }

    fn typed(sample: Option<Sample<'_, B>>) -> Result<Option<TypedSample<'_, T, B>>, ReceiveError> {
        match sample {
            None => Ok(None),
            Some(s) if s.len == size_of::<T>() => Ok(Some(TypedSample { sample: s, _t: PhantomData })),
            Some(s) => Err(ReceiveError::WrongSize { seq: s.seq(), len: s.len, expected: size_of::<T>() }),
        }
    }

    /// The next value, if any.
    ///
    /// # Errors
    /// [`ReceiveError::WrongSize`] for a sample of the wrong length (it is
    /// released and skipped).
    pub fn try_recv(&mut self) -> Result<Option<TypedSample<'_, T, B>>, ReceiveError> {
        Self::typed(self.reader.try_recv()?)
    }

    /// The next value, waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<TypedSample<'_, T, B>>, ReceiveError> {
        Self::typed(self.reader.recv_timeout(timeout)?)
    }

    /// Received and lost counts.
    ///
    /// # Errors
    /// [`SlotError::ReaderNotRegistered`].
    pub fn stats(&self) -> Result<ReaderStats, SlotError> {
        self.reader.stats()
    }

    /// The underlying byte reader.
    pub fn reader(&self) -> &Reader<B> {
        &self.reader
    }
}

// Debug without bounds on the backend: a handle prints what it holds, not
// the ring behind it.

impl<B: SlotBackend + ?Sized> std::fmt::Debug for Loan<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan").field("seq", &self.handle.seq).field("capacity", &self.cap).finish_non_exhaustive()
    }
}

impl<B: SlotBackend + ?Sized> std::fmt::Debug for Sample<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sample").field("seq", &self.handle.seq).field("reader", &self.reader).field("len", &self.len).finish_non_exhaustive()
    }
}

impl<B: SlotBackend> std::fmt::Debug for Reader<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("index", &self.index).finish_non_exhaustive()
    }
}

impl<T: Pod, B: SlotBackend> std::fmt::Debug for Publisher<T, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("type", &std::any::type_name::<T>()).finish_non_exhaustive()
    }
}

impl<T: Pod, B: SlotBackend> std::fmt::Debug for TypedLoan<'_, T, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedLoan").field("type", &std::any::type_name::<T>()).field("loan", &self.loan).finish()
    }
}

impl<T: Pod, B: SlotBackend> std::fmt::Debug for Subscriber<T, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber").field("type", &std::any::type_name::<T>()).field("reader", &self.reader).finish()
    }
}

impl<T: Pod, B: SlotBackend> std::fmt::Debug for TypedSample<'_, T, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedSample").field("type", &std::any::type_name::<T>()).field("sample", &self.sample).finish()
    }
}
