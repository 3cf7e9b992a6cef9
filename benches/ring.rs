//! One-process micro-benchmarks: reserve/commit/read/release of one sample,
//! on both backends, at 8 B and 1 KiB; and the same through `ShmTransport`
//! (send to one locator through the transport's lock or a `Sender`, receive), so the transport layer's own cost shows
//! next to the bare ring's.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shmslot::transport::{ShmTransport, TransportConfig};
use shmslot::{InMemorySlotAllocator, PosixSlotAllocator, SlotBackend, ALL_READERS};

fn round_trip<B: SlotBackend>(b: &B, reader: u8, payload: &[u8]) {
    let h = b.reserve_slot(ALL_READERS).expect("reserve");
    b.commit_slot(h, payload).expect("commit");
    let h = b.next_unread_slot(reader).expect("next").expect("a sample");
    let (ptr, len) = b.slot_read_ptr(h).expect("read ptr");
    // SAFETY: the reader holds the slot until mark_read.
    let first = unsafe { std::slice::from_raw_parts(ptr, len) }[0];
    criterion::black_box(first);
    b.mark_read(h, reader).expect("release");
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("shmslot-bench-{}", std::process::id()));
    let mut g = c.benchmark_group("write+read one sample");
    for size in [8usize, 1024] {
        let payload = vec![7u8; size];
        g.throughput(Throughput::Elements(1));
        let mem = InMemorySlotAllocator::new(16, 1024);
        let r = mem.register_reader().expect("reader");
        g.bench_with_input(BenchmarkId::new("in-memory", size), &payload, |bn, p| bn.iter(|| round_trip(&mem, r, p)));
        let posix = PosixSlotAllocator::builder(16, 1024).discovery_dir(&dir).create(format!("bench-{size}")).expect("create");
        let r = posix.register_reader().expect("reader");
        g.bench_with_input(BenchmarkId::new("posix", size), &payload, |bn, p| bn.iter(|| round_trip(&posix, r, p)));
        let t = ShmTransport::new(TransportConfig::new(size as u32).slot_count(16).slot_capacity(1024).discovery_dir(&dir)).expect("transport");
        let mut port = t.open_input().expect("port");
        let to = [port.locator()];
        g.bench_with_input(BenchmarkId::new("transport", size), &payload, |bn, p| {
            bn.iter(|| {
                t.send(p, &to).expect("send");
                let m = port.try_recv().expect("recv").expect("a message");
                criterion::black_box(m[0]);
            })
        });
        let mut sender = t.sender();
        g.bench_with_input(BenchmarkId::new("transport-sender", size), &payload, |bn, p| {
            bn.iter(|| {
                sender.send(p, &to).expect("send");
                let m = port.try_recv().expect("recv").expect("a message");
                criterion::black_box(m[0]);
            })
        });
        g.bench_with_input(BenchmarkId::new("transport-sender-loan", size), &payload, |bn, p| {
            bn.iter(|| {
                let mut loan = sender.loan(&to).expect("loan");
                loan.as_mut_slice()[..p.len()].copy_from_slice(p);
                loan.commit(p.len()).expect("commit");
                let m = port.try_recv().expect("recv").expect("a message");
                criterion::black_box(m[0]);
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_dir(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
