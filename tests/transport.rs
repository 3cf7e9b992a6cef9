//! `ShmTransport` in one process: ports, sends and their reports, loans,
//! multicast, counters, errors, and that nothing is left behind.

mod common;

use std::time::Duration;

use common::TestDir;
use shmslot::locator::{Locator, NamespaceId, ShmAddress};
use shmslot::transport::{Delivery, ShmTransport, TransportConfig, TransportError};
use shmslot::{GrowthStrategy, OverflowPolicy};

fn config(dir: &TestDir, domain: u32) -> TransportConfig {
    TransportConfig::new(domain).slot_count(16).slot_capacity(256).discovery_dir(dir.path())
}

fn recv(port: &mut shmslot::InputPort) -> Vec<u8> {
    port.recv_timeout(Duration::from_secs(5)).unwrap().expect("a message within 5 s").to_vec()
}

#[test]
fn unicast_round_trip_and_port_numbers() {
    let dir = TestDir::new("tr-unicast");
    let a = ShmTransport::new(config(&dir, 7)).unwrap();
    let b = ShmTransport::new(config(&dir, 7)).unwrap();
    let mut pa = a.open_input().unwrap();
    let mut pb = b.open_input().unwrap();
    assert_eq!((pa.locator().port & 0xFFFF, pb.locator().port & 0xFFFF), (1, 2), "ports are numbered from 1");
    assert!(pa.locator().is_shm());
    let addr = pa.locator().shm_address().unwrap();
    assert_eq!((addr.domain_id, addr.multicast, addr.namespace), (7, false, a.namespace_id()));

    let r = a.send(b"to b", &[pb.locator()]).unwrap();
    assert_eq!(r.outcomes(), &[Delivery::Served]);
    assert_eq!(recv(&mut pb), b"to b");
    // A participant may send to itself.
    a.send(b"to self", &[pa.locator()]).unwrap();
    assert_eq!(recv(&mut pa), b"to self");
    assert!(pa.try_recv().unwrap().is_none());

    let sa = a.stats();
    assert_eq!((sa.sent, sa.received, sa.dropped), (2, 1, 0));
    assert_eq!(b.stats().received, 1);
    let flinks = [pa.flink_path().to_owned(), pb.flink_path().to_owned()];
    drop((pa, pb, a, b));
    for f in flinks {
        assert!(!f.exists(), "{} left behind", f.display());
    }
}

#[test]
fn report_names_each_locator() {
    let dir = TestDir::new("tr-report");
    let a = ShmTransport::new(config(&dir, 1)).unwrap();
    let mut p = a.open_input().unwrap();
    let udp = Locator::udpv4([127, 0, 0, 1].into(), 7400);
    let foreign = Locator::shm(ShmAddress { namespace: NamespaceId(a.namespace_id().0 ^ 1), domain_id: 1, multicast: false }, p.locator().port);
    let missing = Locator::shm(ShmAddress { namespace: a.namespace_id(), domain_id: 1, multicast: false }, 999);
    let list = [udp, p.locator(), foreign, missing, p.locator()];
    let r = a.send(b"x", &list).unwrap();
    assert_eq!(r.outcomes(), &[Delivery::NotShm, Delivery::Served, Delivery::Unreachable, Delivery::Unreachable, Delivery::Served]);
    assert_eq!(r.not_shm(&list).collect::<Vec<_>>(), vec![&udp]);
    // The duplicate locator is served once.
    assert_eq!(recv(&mut p), b"x");
    assert!(p.try_recv().unwrap().is_none(), "a locator listed twice got the message twice");
    let s = a.stats();
    assert_eq!((s.sent, s.unreachable), (1, 2), "one message written (the duplicate is not counted twice)");
}

#[test]
fn reachability_and_selection() {
    let dir = TestDir::new("tr-select");
    let a = ShmTransport::new(config(&dir, 3)).unwrap();
    let b = ShmTransport::new(config(&dir, 3)).unwrap();
    let pb = b.open_input().unwrap();
    let udp = Locator::udpv4([192, 168, 1, 5].into(), 7410);
    assert!(a.is_reachable(&pb.locator()));
    assert!(!a.is_reachable(&udp));
    // The same port, announced with another namespace id (another boot,
    // user or IPC namespace): not reachable although the segment opens.
    let mut other = pb.locator();
    other.address[11] ^= 0x5a;
    assert!(!a.is_reachable(&other));
    assert_eq!(a.select_locators(&[udp, pb.locator()]), vec![pb.locator()]);
    assert_eq!(a.select_locators(&[udp, other]), vec![udp]);
    let gone = pb.locator();
    drop(pb);
    assert!(!a.is_reachable(&gone), "a closed port is not reachable");
    assert_eq!(a.select_locators(&[gone, udp]), vec![udp]);
}

#[test]
fn too_large_and_too_many_are_errors() {
    let dir = TestDir::new("tr-errors");
    let a = ShmTransport::new(config(&dir, 0)).unwrap();
    let p = a.open_input().unwrap();
    // Growing ports (the default): up to 64 KiB; static ones: the slot.
    assert_eq!(a.config().max_message_size(), 64 * 1024);
    let e = a.send(&vec![0; 64 * 1024 + 1], &[p.locator()]).unwrap_err();
    assert!(matches!(e, TransportError::MessageTooLarge { len: 65537, max: 65536 }), "{e}");
    let fixed = ShmTransport::new(config(&dir, 1).growth(GrowthStrategy::Static)).unwrap();
    assert_eq!(fixed.config().max_message_size(), 256);
    let e = fixed.send(&[0; 257], &[p.locator()]).unwrap_err();
    assert!(matches!(e, TransportError::MessageTooLarge { len: 257, max: 256 }), "{e}");
    let many = vec![p.locator(); 65];
    assert!(matches!(a.send(b"x", &many), Err(TransportError::TooManyLocators { count: 65, max: 64 })));
    let e = ShmTransport::new(TransportConfig::new(0).slot_capacity(0).discovery_dir(dir.path())).unwrap_err();
    assert!(e.to_string().contains("slot_capacity"), "{e}");
}

#[test]
fn a_message_larger_than_the_slots_grows_the_port() {
    let dir = TestDir::new("tr-grow");
    let a = ShmTransport::new(config(&dir, 0)).unwrap();
    let b = ShmTransport::new(config(&dir, 0)).unwrap();
    let mut port = b.open_input().unwrap();
    let big: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
    let r = a.send(b"small", &[port.locator()]).unwrap();
    assert_eq!(r.served(), 1);
    let r = a.send(&big, &[port.locator()]).unwrap();
    assert_eq!(r.served(), 1, "{r:?}");
    let r = a.send(b"after", &[port.locator()]).unwrap();
    assert_eq!(r.served(), 1);
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = port.recv_timeout(Duration::from_secs(5)).unwrap().expect("message");
        got.push(m.to_vec());
    }
    assert_eq!(got, vec![b"small".to_vec(), big, b"after".to_vec()]);
    // A static port (a peer configured so) refuses instead.
    let c = ShmTransport::new(config(&dir, 0).growth(GrowthStrategy::Static)).unwrap();
    let fixed = c.open_input().unwrap();
    let r = a.send(&[1; 300], &[fixed.locator()]).unwrap();
    assert_eq!(r.outcome(0), Some(Delivery::TooLarge));
}

#[test]
fn full_port_drops_and_counts_without_blocking() {
    let dir = TestDir::new("tr-full");
    let a = ShmTransport::new(config(&dir, 0)).unwrap();
    let b = ShmTransport::new(config(&dir, 0)).unwrap();
    let mut p = b.open_input().unwrap();
    let mut served = 0;
    let mut full = 0;
    for i in 0..40u32 {
        let t = std::time::Instant::now();
        match a.send(&i.to_le_bytes(), &[p.locator()]).unwrap().outcomes()[0] {
            Delivery::Served => served += 1,
            Delivery::Full => full += 1,
            d => panic!("unexpected {d:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(1), "send blocked for {:?}", t.elapsed());
    }
    assert_eq!((served, full), (16, 24), "a 16-slot port takes 16 messages");
    assert_eq!(a.stats().dropped, 24);
    let ps = p.stats();
    assert_eq!((ps.sent, ps.dropped), (16, 24), "the port's segment counts what its senders did");
    for i in 0..16u32 {
        assert_eq!(recv(&mut p), i.to_le_bytes());
    }
}

#[test]
fn loan_serialises_in_place_and_copies_to_the_rest() {
    let dir = TestDir::new("tr-loan");
    let a = ShmTransport::new(config(&dir, 0)).unwrap();
    let mut p1 = a.open_input().unwrap();
    let mut p2 = a.open_input().unwrap();
    let udp = Locator::udpv4([10, 0, 0, 1].into(), 1);
    let list = [p1.locator(), udp, p2.locator()];
    let mut loan = a.loan(&list).unwrap();
    assert_eq!(loan.destinations(), 2);
    assert_eq!(loan.as_mut_slice().len(), 256);
    loan.as_mut_slice()[..11].copy_from_slice(b"in place!!!");
    let r = loan.commit(11).unwrap();
    assert_eq!(r.outcomes(), &[Delivery::Served, Delivery::NotShm, Delivery::Served]);
    assert_eq!(recv(&mut p1), b"in place!!!");
    assert_eq!(recv(&mut p2), b"in place!!!");
    // A dropped loan sends nothing, and a later send still works.
    let mut loan = a.loan(&list).unwrap();
    loan.as_mut_slice()[0] = 1;
    drop(loan);
    assert!(p1.try_recv().unwrap().is_none());
    a.send(b"after", &list).unwrap();
    assert_eq!(recv(&mut p1), b"after");
    // Too long a commit is an error and sends nothing.
    let loan = a.loan(&list).unwrap();
    assert!(matches!(loan.commit(257), Err(TransportError::MessageTooLarge { .. })));
    assert!(p2.try_recv().unwrap().as_deref() == Some(&b"after"[..]));
    assert!(p2.try_recv().unwrap().is_none());
    // Nobody reachable: the loan lends a scratch buffer.
    let mut loan = a.loan(&[udp]).unwrap();
    assert_eq!(loan.destinations(), 0);
    loan.as_mut_slice()[..3].copy_from_slice(b"abc");
    assert_eq!(loan.commit(3).unwrap().outcomes(), &[Delivery::NotShm]);
}

#[test]
fn multicast_is_written_once_read_by_all_and_outlives_its_creator() {
    let dir = TestDir::new("tr-multicast");
    let a = ShmTransport::new(config(&dir, 9)).unwrap();
    let b = ShmTransport::new(config(&dir, 9)).unwrap();
    let c = ShmTransport::new(config(&dir, 9)).unwrap();
    let mut ma = a.multicast_input().unwrap();
    let mut mb = b.multicast_input().unwrap();
    assert_eq!(ma.locator(), a.multicast_locator());
    assert_eq!(a.multicast_locator(), b.multicast_locator());
    assert!(ma.is_multicast());
    let r = c.send(b"hello all", &[c.multicast_locator()]).unwrap();
    assert_eq!(r.outcomes(), &[Delivery::Served]);
    assert_eq!(recv(&mut ma), b"hello all");
    assert_eq!(recv(&mut mb), b"hello all");
    // The creator leaves: the ring stays for the others and newcomers.
    let flink = ma.flink_path().to_owned();
    drop(ma);
    drop(a);
    assert!(flink.exists(), "the multicast ring went with its creator");
    let mut mc = c.multicast_input().unwrap();
    c.send(b"second", &[c.multicast_locator()]).unwrap();
    assert_eq!(recv(&mut mb), b"second");
    assert_eq!(recv(&mut mc), b"second");
    // Nothing to read: waits for the timeout, no error, though no writer
    // may be attached at this moment.
    let t = std::time::Instant::now();
    assert!(mb.recv_timeout(Duration::from_millis(50)).unwrap().is_none());
    assert!(t.elapsed() >= Duration::from_millis(45));
    // The last one out removes it.
    drop((mb, mc, b, c));
    assert!(!flink.exists(), "the last participant did not remove the multicast ring");
}

#[test]
fn drop_oldest_ports_overwrite_and_count_lost() {
    let dir = TestDir::new("tr-dropoldest");
    let a = ShmTransport::new(config(&dir, 0).overflow_policy(OverflowPolicy::DropOldest)).unwrap();
    let mut p = a.open_input().unwrap();
    for i in 0..40u32 {
        assert_eq!(a.send(&i.to_le_bytes(), &[p.locator()]).unwrap().outcomes(), &[Delivery::Served]);
    }
    let first = recv(&mut p);
    assert_eq!(first, 24u32.to_le_bytes(), "the 16 newest remain");
    assert_eq!(a.stats().lost, 24);
}

#[test]
fn many_bogus_locators_neither_grow_the_cache_nor_confuse_it() {
    let dir = TestDir::new("tr-bogus");
    let a = ShmTransport::new(config(&dir, 4)).unwrap();
    let bogus = |n: u32| Locator::shm(ShmAddress { namespace: a.namespace_id(), domain_id: 4, multicast: false }, 10_000 + n);
    // More failures than the cache remembers (256)...
    for round in 0..5 {
        let list: Vec<Locator> = (0..64).map(|i| bogus(round * 64 + i)).collect();
        let r = a.send(b"x", &list).unwrap();
        assert!(r.outcomes().iter().all(|&d| d == Delivery::Unreachable));
    }
    // ...then a real port planned first, while new failures replace old ones.
    let mut p = a.open_input().unwrap();
    for round in 5..8 {
        let mut list = vec![p.locator()];
        list.extend((0..63).map(|i| bogus(round * 64 + i)));
        let r = a.send(&[round as u8], &list).unwrap();
        assert_eq!(r.outcome(0), Some(Delivery::Served));
        assert_eq!(r.served(), 1);
        assert_eq!(recv(&mut p), [round as u8]);
    }
}

#[test]
fn a_sender_sends_without_the_lock_and_its_counts_join_the_transport() {
    let dir = TestDir::new("tr-sender");
    let a = ShmTransport::new(config(&dir, 5)).unwrap();
    let mut p = a.open_input().unwrap();
    let to = [p.locator()];
    let mut s1 = a.sender();
    let mut s2 = a.sender();
    assert!(s1.is_reachable(&p.locator()));
    s1.send(b"one", &to).unwrap();
    let mut loan = s2.loan(&to).unwrap();
    loan.as_mut_slice()[..3].copy_from_slice(b"two");
    assert!(loan.commit(3).unwrap().all_served());
    a.send(b"three", &to).unwrap();
    assert_eq!(recv(&mut p), b"one");
    assert_eq!(recv(&mut p), b"two");
    assert_eq!(recv(&mut p), b"three");
    // Each sender has its own writer entry in the port.
    assert_eq!(p.stats().sent, 3);
    assert_eq!((s1.stats().sent, s2.stats().sent), (1, 1));
    assert_eq!(a.stats().sent, 1, "a live sender's counts are its own");
    drop(s1);
    drop(s2);
    assert_eq!(a.stats().sent, 3, "dropped senders' counts join the transport's");
    // A sender outlives nothing it needs: it may move to another thread.
    let mut s3 = a.sender();
    std::thread::spawn(move || s3.send(b"four", &to).unwrap()).join().unwrap();
    assert_eq!(recv(&mut p), b"four");
}

#[test]
fn a_dropped_loan_counts_what_it_decided() {
    let dir = TestDir::new("tr-loan-count");
    let a = ShmTransport::new(config(&dir, 6)).unwrap();
    let b = ShmTransport::new(config(&dir, 6)).unwrap();
    let p = b.open_input().unwrap();
    for _ in 0..16 {
        a.send(b"fill", &[p.locator()]).unwrap();
    }
    let loan = a.loan(&[p.locator()]).unwrap();
    assert_eq!(loan.destinations(), 0, "a full port cannot lend a slot");
    drop(loan);
    assert_eq!(a.stats().dropped, 1);
    assert_eq!(p.stats().dropped, 1, "the port's segment and the transport agree");
}
