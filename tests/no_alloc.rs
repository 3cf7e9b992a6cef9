//! The hot path allocates nothing: after warm-up, publish/receive cycles on
//! the POSIX backend — through the byte API (`Loan`, `Reader::try_recv` /
//! `recv_timeout`, `Sample` drop, a dropped `Loan` = discard) and through the
//! typed `Publisher` / `Subscriber` — make zero heap allocations.
//!
//! A counting global allocator counts only on threads that switched counting
//! on (a thread-local flag), so other tests of this binary running in
//! parallel do not interfere. Each test first checks that the counter does
//! count (an allocation inside the window is seen).
//!
//! Run: `cargo test --release --test no_alloc` (also passes in debug).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{assert_unlinked, TestDir};
use shmslot::{type_hash, Loan, Pod, PosixSlotAllocator, Publisher, Reader, Subscriber};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}

fn counting_here() -> bool {
    COUNT_HERE.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards every call to `System` unchanged; only bumps counters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting_here() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counting_here() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting_here() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting_here() {
            FREES.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and frees made by this thread while `f` runs. Tests of this
/// binary may run in parallel, but each counts only its own thread; the
/// global counters are read as differences, so serialise the windows.
fn count<R>(f: impl FnOnce() -> R) -> (R, u64, u64) {
    static WINDOW: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _w = WINDOW.lock().unwrap_or_else(|e| e.into_inner());
    let (a0, f0) = (ALLOCS.load(Ordering::SeqCst), FREES.load(Ordering::SeqCst));
    COUNT_HERE.with(|c| c.set(true));
    let r = f();
    COUNT_HERE.with(|c| c.set(false));
    (r, ALLOCS.load(Ordering::SeqCst) - a0, FREES.load(Ordering::SeqCst) - f0)
}

/// The counter works: an allocation inside the window is counted.
fn assert_counter_counts() {
    let (v, allocs, frees) = count(|| std::hint::black_box(Vec::<u64>::with_capacity(4)));
    drop(v);
    assert_eq!((allocs, frees), (1, 0), "the counting allocator does not count");
}

const CYCLES: u64 = 20_000;

#[test]
fn byte_api_publish_receive_does_not_allocate() {
    assert_counter_counts();
    let dir = TestDir::new("noalloc-bytes");
    let path = dir.flink("bytes");
    let ring = PosixSlotAllocator::builder(8, 256).create(&path).unwrap();
    let segment = ring.segment_path();
    let mut reader = Reader::new(PosixSlotAllocator::attach(&path).unwrap()).unwrap();

    let cycle = |i: u64, reader: &mut Reader<PosixSlotAllocator>| {
        let len = 8 + (i % 200) as usize;
        let mut loan = Loan::new(&ring).unwrap();
        let buf = loan.as_mut_slice();
        buf[..8].copy_from_slice(&i.to_le_bytes());
        buf[8..len].fill(i as u8);
        let seq = loan.commit(len).unwrap();
        if i % 7 == 3 {
            // A loan dropped unpublished is discarded; readers step over it.
            drop(Loan::new(&ring).unwrap());
        }
        let sample = if i % 2 == 0 { reader.try_recv().unwrap() } else { reader.recv_timeout(Duration::from_secs(5)).unwrap() };
        let sample = sample.expect("a committed sample");
        assert_eq!(sample.seq(), seq);
        assert_eq!(sample.len(), len);
        assert_eq!(u64::from_le_bytes(sample[..8].try_into().unwrap()), i);
        assert!(sample[8..].iter().all(|&b| b == i as u8));
        drop(sample);
        assert!(reader.try_recv().unwrap().is_none());
    };

    for i in 0..64 {
        cycle(i, &mut reader); // warm-up: writer entry, lazy statics
    }
    let ((), allocs, frees) = count(|| {
        for i in 64..64 + CYCLES {
            cycle(i, &mut reader);
        }
    });
    assert_eq!((allocs, frees), (0, 0), "{CYCLES} publish/receive cycles allocated {allocs} times and freed {frees} times");
    assert_eq!(reader.stats().unwrap().received, 64 + CYCLES);

    drop(reader);
    drop(ring);
    assert_unlinked(&segment);
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tick {
    seq: u64,
    price: f64,
    volume: [u32; 6],
}

// SAFETY: integers and floats only, no padding (8 + 8 + 24 bytes); every bit
// pattern is a valid `Tick`.
unsafe impl Pod for Tick {
    const TYPE_HASH: [u8; 16] = type_hash("no_alloc::Tick", std::mem::size_of::<Tick>(), std::mem::align_of::<Tick>());
}

#[test]
fn typed_publish_receive_does_not_allocate() {
    assert_counter_counts();
    let dir = TestDir::new("noalloc-typed");
    let path = dir.flink("ticks");
    let ring = PosixSlotAllocator::builder(4, 64).type_hash(Tick::TYPE_HASH).create(&path).unwrap();
    let segment = ring.segment_path();
    let publisher = Publisher::<Tick, _>::new(ring).unwrap();
    let mut subscriber = Subscriber::<Tick, _>::new(PosixSlotAllocator::attach(&path).unwrap()).unwrap();

    let cycle = |i: u64, subscriber: &mut Subscriber<Tick, PosixSlotAllocator>| {
        let tick = Tick { seq: i, price: i as f64 * 0.25, volume: [i as u32; 6] };
        let seq = if i % 3 == 0 {
            let mut loan = publisher.loan().unwrap();
            *loan.value_mut() = tick;
            loan.commit().unwrap()
        } else {
            publisher.publish(&tick).unwrap()
        };
        let got = if i % 2 == 0 { subscriber.try_recv().unwrap() } else { subscriber.recv_timeout(Duration::from_secs(5)).unwrap() };
        let got = got.expect("a published value");
        assert_eq!(got.seq(), seq);
        assert_eq!(*got, tick);
    };

    for i in 0..64 {
        cycle(i, &mut subscriber);
    }
    let ((), allocs, frees) = count(|| {
        for i in 64..64 + CYCLES {
            cycle(i, &mut subscriber);
        }
    });
    assert_eq!((allocs, frees), (0, 0), "{CYCLES} typed publish/receive cycles allocated {allocs} times and freed {frees} times");
    assert_eq!(subscriber.stats().unwrap().received, 64 + CYCLES);

    drop(subscriber);
    drop(publisher);
    assert_unlinked(&segment);
}

#[test]
fn transport_send_loan_receive_does_not_allocate() {
    use shmslot::transport::{Delivery, ShmTransport, TransportConfig};
    assert_counter_counts();
    let dir = TestDir::new("noalloc-transport");
    let t = ShmTransport::new(TransportConfig::new(0).slot_count(8).slot_capacity(256).discovery_dir(dir.path())).unwrap();
    let mut port = t.open_input().unwrap();
    let udp = shmslot::Locator::udpv4([127, 0, 0, 1].into(), 7400);
    let to = [port.locator(), udp];

    let mut cycle = |i: u64| {
        let len = 8 + (i % 200) as usize;
        let mut buf = [0u8; 256];
        buf[..8].copy_from_slice(&i.to_le_bytes());
        let report = if i % 2 == 0 {
            t.send(&buf[..len], &to).unwrap()
        } else {
            let mut loan = t.loan(&to).unwrap();
            loan.as_mut_slice()[..len].copy_from_slice(&buf[..len]);
            loan.commit(len).unwrap()
        };
        assert_eq!(report.outcomes(), &[Delivery::Served, Delivery::NotShm]);
        let msg = if i % 3 == 0 { port.try_recv().unwrap() } else { port.recv_timeout(Duration::from_secs(5)).unwrap() };
        let msg = msg.expect("a sent message");
        assert_eq!(msg.len(), len);
        assert_eq!(u64::from_le_bytes(msg[..8].try_into().unwrap()), i);
    };
    // Warm-up attaches to the port (that allocates, once).
    for i in 0..64 {
        cycle(i);
    }
    let ((), allocs, frees) = count(|| {
        for i in 64..64 + CYCLES {
            cycle(i);
        }
    });
    assert_eq!((allocs, frees), (0, 0), "{CYCLES} transport send/receive cycles allocated {allocs} times and freed {frees} times");
}
