//! The words' encodings: a slot's stamp (`seq:54 | state:2 | pins:8`),
//! pin names, and a participant entry's state (`epoch << 2 | ENTRY_*`).

pub(crate) const SEQ_SHIFT: u32 = 10;
pub(crate) const STATE_SHIFT: u32 = 8;
pub(crate) const PINS_MASK: u64 = 0xff;
pub(crate) const SEQ54: u64 = (1 << 54) - 1;

/// Slot states (2 bits of the stamp).
pub(crate) const LOANED: u64 = 0;
pub(crate) const COMMITTED: u64 = 1;
pub(crate) const SKIPPED: u64 = 2;

/// `ReaderEntry::pinned`: the slot is named (a pin may or may not exist).
pub(crate) const PIN_NAMED: u64 = 1;
/// `ReaderEntry::pinned`: the pin exists.
pub(crate) const PIN_HELD: u64 = 3;

/// Participant (reader and writer) entry states: the low 2 bits of `state`;
/// the bits above count tenancies (an epoch), so a stale observation of an
/// entry never matches its next tenant.
pub(crate) const ENTRY_FREE: u32 = 0;
pub(crate) const ENTRY_ACTIVE: u32 = 1;
/// Being freed by a reaper (its owner died).
pub(crate) const ENTRY_RECLAIMING: u32 = 2;
/// A reader of the previous generation of a growing ring, copied into this
/// one when it was made (registered, so samples are addressed to it) and
/// not yet arrived: it holds no lock here. Its owner turns it `ACTIVE`
/// ([`RingView::adopt`]) when it follows; reapers judge its liveness by the
/// previous generation (see `PosixSlotAllocator::upstream_alive`).
pub(crate) const ENTRY_ADOPTING: u32 = 3;
pub(crate) const ENTRY_KIND: u32 = 3;

/// The kind (`ENTRY_FREE`, `ENTRY_ACTIVE`, `ENTRY_RECLAIMING`) of a state.
#[inline]
pub(crate) fn entry_kind(state: u32) -> u32 {
    state & ENTRY_KIND
}

/// The state of the next tenant after `state`.
#[inline]
pub(crate) fn entry_next(state: u32) -> u32 {
    (state & !ENTRY_KIND).wrapping_add(4) | ENTRY_ACTIVE
}

/// Encodes a stamp.
#[inline]
pub(crate) fn stamp(seq: u64, state: u64) -> u64 {
    (seq << SEQ_SHIFT) | (state << STATE_SHIFT)
}
/// `LOANED(seq)` by writer entry `owner`: a loan never has pins, so the pin
/// bits name the writer (a reaper finds a dead writer's loans by them).
#[inline]
pub(crate) fn stamp_loaned(seq: u64, owner: u8) -> u64 {
    stamp(seq, LOANED) | u64::from(owner)
}
/// The same stamp in state `state`, pins/owner cleared.
#[inline]
pub(crate) fn restamp(st: u64, state: u64) -> u64 {
    (st & !((1 << SEQ_SHIFT) - 1)) | (state << STATE_SHIFT)
}
#[inline]
pub(crate) fn stamp_state(st: u64) -> u64 {
    (st >> STATE_SHIFT) & 3
}
#[inline]
pub(crate) fn stamp_pins(st: u64) -> u64 {
    st & PINS_MASK
}
/// `stamp.seq - seq`, sign-extended from 54 bits.
#[inline]
pub(crate) fn seq_diff(st: u64, seq: u64) -> i64 {
    let d = ((st >> SEQ_SHIFT).wrapping_sub(seq)) & SEQ54;
    ((d << 10) as i64) >> 10
}
/// `a - b` as a signed distance between full sequence numbers.
#[inline]
pub(crate) fn dist(a: u64, b: u64) -> i64 {
    a.wrapping_sub(b) as i64
}
