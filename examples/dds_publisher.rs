//! Publishes `SensorReading`s with an unmodified dust_dds stack over
//! shmslot. Run it in one terminal and `dds_subscriber` in another (start
//! either first; the QoS is reliable, keep-all, transient-local):
//!
//! ```text
//! cargo run --release --features dust-dds --example dds_publisher -- [COUNT] [INTERVAL_MS] [DOMAIN]
//! cargo run --release --features dust-dds --example dds_subscriber -- [COUNT] [DOMAIN]
//! ```
//! (defaults: 20 samples, 200 ms apart, domain 0). The one line that
//! differs from stock dust_dds is marked below; a stock dust_dds or other
//! DDS subscriber on this host or another still gets the samples, over UDP.

#[path = "common/dds.rs"]
mod dds;

use dds::{writer_qos, SensorReading, TOPIC};
use dust_dds::infrastructure::listener::NO_LISTENER;
use dust_dds::infrastructure::qos::QosKind;
use dust_dds::infrastructure::status::{StatusKind, NO_STATUS};
use dust_dds::infrastructure::time::Duration;
use dust_dds::wait_set::{Condition, WaitSet};
use shmslot::transport::TransportConfig;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args().nth(n).map_or(default, |a| a.parse().unwrap_or_else(|_| panic!("argument {n} must be a number, got {a:?}")))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (count, interval, domain) = (arg(1, 20), arg(2, 200), arg(3, 0) as i32);

    // Stock dust_dds: `DomainParticipantFactory::get_instance()`.
    let factory = shmslot::dust_dds::participant_factory(TransportConfig::new(domain as u32));

    let participant = factory.create_participant(domain, QosKind::Default, NO_LISTENER, NO_STATUS)?;
    let topic = participant.create_topic::<SensorReading>(TOPIC, "SensorReading", QosKind::Default, NO_LISTENER, NO_STATUS)?;
    let publisher = participant.create_publisher(QosKind::Default, NO_LISTENER, NO_STATUS)?;
    let writer = publisher.create_datawriter::<SensorReading>(&topic, QosKind::Specific(writer_qos()), NO_LISTENER, NO_STATUS)?;

    println!("waiting for a subscriber on domain {domain}…");
    let condition = writer.get_statuscondition();
    condition.set_enabled_statuses(&[StatusKind::PublicationMatched])?;
    let mut wait_set = WaitSet::new();
    wait_set.attach_condition(Condition::StatusCondition(condition))?;
    wait_set.wait(Duration::new(120, 0))?;

    for seq in 0..count {
        let reading = SensorReading { sensor: (seq % 4) as u32, seq, celsius: 20.0 + (seq as f64 / 10.0).sin(), label: format!("reading {seq}") };
        writer.write(reading, None)?;
        println!("wrote seq {seq}");
        std::thread::sleep(std::time::Duration::from_millis(interval));
    }
    writer.wait_for_acknowledgments(Duration::new(30, 0))?;

    let c = factory.get_mut_transport().counters();
    println!("acknowledged; user data: {} messages through shared memory, {} through UDP", c.shm.user_messages, c.udp.user_messages);
    println!("{c:#?}");

    // Deleting the participant removes its shared-memory port at once (a
    // process that just exits has it removed by an exit hook).
    participant.delete_contained_entities()?;
    factory.delete_participant(&participant)?;
    Ok(())
}
