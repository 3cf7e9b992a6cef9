//! What the two dust_dds examples share: the keyed sample type, the topic
//! and the reliable, keep-all QoS.

#![allow(dead_code)] // each example uses one side

use dust_dds::infrastructure::qos::{DataReaderQos, DataWriterQos};
use dust_dds::infrastructure::qos_policy::{DurabilityQosPolicy, DurabilityQosPolicyKind, HistoryQosPolicy, HistoryQosPolicyKind, ReliabilityQosPolicy, ReliabilityQosPolicyKind};
use dust_dds::infrastructure::time::{Duration, DurationKind};
use dust_dds::infrastructure::type_support::DdsType;

/// The topic both examples use.
pub const TOPIC: &str = "shmslot/SensorReading";

/// One reading of one sensor: `sensor` is the key, so each sensor is an
/// instance of its own.
#[derive(DdsType, Debug, Clone, PartialEq)]
pub struct SensorReading {
    #[dust_dds(key)]
    pub sensor: u32,
    pub seq: u64,
    pub celsius: f64,
    pub label: String,
}

fn reliability() -> ReliabilityQosPolicy {
    ReliabilityQosPolicy { kind: ReliabilityQosPolicyKind::Reliable, max_blocking_time: DurationKind::Finite(Duration::new(10, 0)) }
}

/// Reliable, keep-all, transient-local: a subscriber that joins late still
/// gets what was written before it came.
pub fn writer_qos() -> DataWriterQos {
    DataWriterQos {
        reliability: reliability(),
        history: HistoryQosPolicy { kind: HistoryQosPolicyKind::KeepAll },
        durability: DurabilityQosPolicy { kind: DurabilityQosPolicyKind::TransientLocal },
        ..Default::default()
    }
}

/// The reader side of [`writer_qos`].
pub fn reader_qos() -> DataReaderQos {
    DataReaderQos {
        reliability: reliability(),
        history: HistoryQosPolicy { kind: HistoryQosPolicyKind::KeepAll },
        durability: DurabilityQosPolicy { kind: DurabilityQosPolicyKind::TransientLocal },
        ..Default::default()
    }
}
