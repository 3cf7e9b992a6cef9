//! Subscribes to the `SensorReading`s of `dds_publisher` with an
//! unmodified dust_dds stack over shmslot (see `dds_publisher.rs`):
//!
//! ```text
//! cargo run --release --features dust-dds --example dds_subscriber -- [COUNT] [DOMAIN]
//! ```
//! Stops after COUNT samples (default 20) or 60 s without one.

#[path = "common/dds.rs"]
mod dds;

use dds::{reader_qos, SensorReading, TOPIC};
use dust_dds::infrastructure::error::DdsError;
use dust_dds::infrastructure::listener::NO_LISTENER;
use dust_dds::infrastructure::qos::QosKind;
use dust_dds::infrastructure::sample_info::{ANY_INSTANCE_STATE, ANY_SAMPLE_STATE, ANY_VIEW_STATE};
use dust_dds::infrastructure::status::{StatusKind, NO_STATUS};
use dust_dds::infrastructure::time::Duration;
use dust_dds::wait_set::{Condition, WaitSet};
use shmslot::transport::TransportConfig;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args().nth(n).map_or(default, |a| a.parse().unwrap_or_else(|_| panic!("argument {n} must be a number, got {a:?}")))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (count, domain) = (arg(1, 20), arg(2, 0) as i32);

    // Stock dust_dds: `DomainParticipantFactory::get_instance()`.
    let factory = shmslot::dust_dds::participant_factory(TransportConfig::new(domain as u32));

    let participant = factory.create_participant(domain, QosKind::Default, NO_LISTENER, NO_STATUS)?;
    let topic = participant.create_topic::<SensorReading>(TOPIC, "SensorReading", QosKind::Default, NO_LISTENER, NO_STATUS)?;
    let subscriber = participant.create_subscriber(QosKind::Default, NO_LISTENER, NO_STATUS)?;
    let reader = subscriber.create_datareader::<SensorReading>(&topic, QosKind::Specific(reader_qos()), NO_LISTENER, NO_STATUS)?;

    let condition = reader.get_statuscondition();
    condition.set_enabled_statuses(&[StatusKind::DataAvailable])?;
    let mut wait_set = WaitSet::new();
    wait_set.attach_condition(Condition::StatusCondition(condition))?;

    println!("waiting for {count} readings on domain {domain}…");
    let mut received = 0;
    while received < count {
        match wait_set.wait(Duration::new(60, 0)) {
            Ok(_) => {}
            Err(DdsError::Timeout) => break,
            Err(e) => return Err(e.into()),
        }
        let samples = match reader.take(64, ANY_SAMPLE_STATE, ANY_VIEW_STATE, ANY_INSTANCE_STATE) {
            Ok(s) => s,
            Err(DdsError::NoData) => continue,
            Err(e) => return Err(e.into()),
        };
        for sample in samples {
            if let Some(r) = sample.data {
                println!("sensor {} seq {}: {:.2} °C ({})", r.sensor, r.seq, r.celsius, r.label);
                received += 1;
            }
        }
    }

    let c = factory.get_mut_transport().counters();
    println!("received {received}; user data: {} messages through shared memory, {} through UDP", c.shm_received.user_messages, c.udp.user_messages);
    participant.delete_contained_entities()?;
    factory.delete_participant(&participant)?;
    Ok(())
}
