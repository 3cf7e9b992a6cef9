//! The plugin's `#[repr(C)]` mirrors of Cyclone's PSMX types have the size,
//! alignment and field offsets of cyclors' bindgen types of the Cyclone DDS
//! 11.0.1 headers (`dds_psmx.h`, `dds_loaned_sample.h`).

use std::mem::{align_of, offset_of, size_of};

use cyclors as c;
use psmx_shmslot::ffi as m;

/// Size and alignment equal, then every named field at the same offset.
macro_rules! same_layout {
    ($mine:ty, $theirs:ty $(, $f:ident)* $(; $($mf:ident = $tf:ident),*)?) => {{
        assert_eq!(size_of::<$mine>(), size_of::<$theirs>(), "size of {}", stringify!($mine));
        assert_eq!(align_of::<$mine>(), align_of::<$theirs>(), "alignment of {}", stringify!($mine));
        $(assert_eq!(offset_of!($mine, $f), offset_of!($theirs, $f), "{}::{}", stringify!($mine), stringify!($f));)*
        $($(assert_eq!(offset_of!($mine, $mf), offset_of!($theirs, $tf), "{}::{}", stringify!($mine), stringify!($mf));)*)?
    }};
}

#[test]
fn instance_types_match_cyclone() {
    same_layout!(m::PsmxOps, c::dds_psmx_ops, type_qos_supported, create_topic, delete_topic, deinit, get_node_id, supported_features, create_topic_with_type, delete_psmx);
    same_layout!(m::Psmx, c::dds_psmx, ops, instance_name, priority, locator, instance_id, psmx_topics);
    same_layout!(m::NodeId, c::dds_psmx_node_identifier, x);
}

#[test]
fn topic_and_endpoint_types_match_cyclone() {
    same_layout!(m::TopicOps, c::dds_psmx_topic_ops, create_endpoint, delete_endpoint);
    same_layout!(m::Topic, c::dds_psmx_topic, ops, psmx_instance, topic_name, type_name, data_type, psmx_endpoints, data_type_props);
    same_layout!(m::EndpointOps, c::dds_psmx_endpoint_ops, request_loan, write, take, on_data_available, write_with_key);
    same_layout!(m::Endpoint, c::dds_psmx_endpoint, ops, psmx_topic, endpoint_type);
}

#[test]
fn loaned_sample_types_match_cyclone() {
    same_layout!(m::LoanedSampleOps, c::dds_loaned_sample_ops, free);
    same_layout!(m::LoanOrigin, c::dds_loaned_sample_origin, origin_kind, psmx_endpoint);
    same_layout!(m::LoanedSample, c::dds_loaned_sample, ops, loan_origin, metadata, sample_ptr, refc);
    same_layout!(m::Metadata, c::dds_psmx_metadata, sample_state, data_type, instance_id, sample_size, guid, timestamp, statusinfo, cdr_identifier, cdr_options);
    same_layout!(m::Guid, c::dds_guid_t, v);
}

#[test]
fn constants_match_cyclone() {
    assert_eq!(m::ENDPOINT_TYPE_READER, c::dds_psmx_endpoint_type_DDS_PSMX_ENDPOINT_TYPE_READER);
    assert_eq!(m::ENDPOINT_TYPE_WRITER, c::dds_psmx_endpoint_type_DDS_PSMX_ENDPOINT_TYPE_WRITER);
    assert_eq!(m::SAMPLE_STATE_LAST, c::dds_loaned_sample_state_DDS_LOANED_SAMPLE_STATE_SERIALIZED_DATA);
    assert_eq!(m::LOAN_ORIGIN_KIND_PSMX, c::dds_loaned_sample_origin_kind_DDS_LOAN_ORIGIN_KIND_PSMX);
    assert_eq!(m::RELIABILITY_RELIABLE, c::dds_reliability_kind_DDS_RELIABILITY_RELIABLE);
    assert_eq!(m::IGNORELOCAL_PROCESS, c::dds_ignorelocal_kind_DDS_IGNORELOCAL_PROCESS);
    assert_eq!(m::DURABILITY_VOLATILE, c::dds_durability_kind_DDS_DURABILITY_VOLATILE);
    assert_eq!(m::DDS_RETCODE_TIMEOUT, c::DDS_RETCODE_TIMEOUT);
}
