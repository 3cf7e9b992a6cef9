//! `#[repr(C)]` mirrors of the Cyclone DDS 11.0.1 types the PSMX interface
//! passes (`dds/ddsc/dds_psmx.h`, `dds/ddsc/dds_loaned_sample.h`), and the
//! constants the plugin uses. The crate `psmx_cyclone`'s ABI test compares
//! each with cyclors' bindgen type: size, alignment and every field offset.
//!
//! Interface version 1: the plugin sets only the `ops` of the instance,
//! topic and endpoint structs; Cyclone fills in the rest after the
//! constructor returns (and owns what it fills in).

use std::ffi::{c_char, c_void};

/// `dds_return_t`.
pub type DdsReturn = i32;
/// `dds_entity_t`.
pub type DdsEntity = i32;
/// `dds_psmx_instance_id_t`.
pub type InstanceId = u32;
/// `dds_data_type_properties_t`.
pub type TypeProps = u64;
/// `dds_psmx_endpoint_type_t` (a C enum).
pub type EndpointType = u32;
/// `dds_loaned_sample_state_t` (a C enum).
pub type SampleState = u32;
/// `dds_psmx_features_t`.
pub type Features = u32;

pub const DDS_RETCODE_OK: DdsReturn = 0;
pub const DDS_RETCODE_ERROR: DdsReturn = -1;
pub const DDS_RETCODE_BAD_PARAMETER: DdsReturn = -3;
pub const DDS_RETCODE_OUT_OF_RESOURCES: DdsReturn = -5;
pub const DDS_RETCODE_TIMEOUT: DdsReturn = -10;
/// `DDS_RETCODE_NOT_FOUND` (`DDS_XRETCODE(10)`).
pub const DDS_RETCODE_NOT_FOUND: DdsReturn = -60;

pub const ENDPOINT_TYPE_UNSET: EndpointType = 0;
pub const ENDPOINT_TYPE_READER: EndpointType = 1;
pub const ENDPOINT_TYPE_WRITER: EndpointType = 2;

pub const SAMPLE_STATE_UNINITIALIZED: SampleState = 0;
/// `RAW_KEY` and `RAW_DATA`: the application's own representation (a
/// memcpy-safe type); 3 and 4 are serialized (CDR).
pub const SAMPLE_STATE_RAW_KEY: SampleState = 1;
pub const SAMPLE_STATE_RAW_DATA: SampleState = 2;
/// The last valid state (`SERIALIZED_DATA`); valid states are 1 to 4.
pub const SAMPLE_STATE_LAST: SampleState = 4;

pub const FEATURE_SHARED_MEMORY: Features = 1 << 0;
pub const FEATURE_ZERO_COPY: Features = 1 << 1;

/// `DDS_LOAN_ORIGIN_KIND_PSMX`.
pub const LOAN_ORIGIN_KIND_PSMX: u32 = 1;

/// `dds_reliability_kind_t`.
pub const RELIABILITY_RELIABLE: u32 = 1;
/// `dds_durability_kind_t`.
pub const DURABILITY_VOLATILE: u32 = 0;
/// `dds_ignorelocal_kind_t`.
pub const IGNORELOCAL_NONE: u32 = 0;
pub const IGNORELOCAL_PARTICIPANT: u32 = 1;
pub const IGNORELOCAL_PROCESS: u32 = 2;

/// `DDS_LC_ERROR`, `DDS_LC_WARNING`, `DDS_LC_INFO`: log categories.
pub const LC_ERROR: u32 = 2;
pub const LC_WARNING: u32 = 4;
pub const LC_INFO: u32 = 8;

/// `DDS_INFINITY`: a duration that never ends.
pub const DDS_INFINITY: i64 = i64::MAX;

/// `dds_guid_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Guid {
    pub v: [u8; 16],
}

/// `dds_psmx_node_identifier_t`: the 16-byte PSMX locator.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeId {
    pub x: [u8; 16],
}

/// `dds_psmx_metadata_t`: what travels beside the payload. Cyclone fills it
/// in on the writing side; the plugin hands it back on the reading side.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Metadata {
    pub sample_state: SampleState,
    pub data_type: u32,
    pub instance_id: InstanceId,
    pub sample_size: u32,
    pub guid: Guid,
    pub timestamp: i64,
    pub statusinfo: u32,
    pub cdr_identifier: u16,
    pub cdr_options: u16,
}

/// `dds_loaned_sample_ops_t`.
#[repr(C)]
#[derive(Debug)]
pub struct LoanedSampleOps {
    pub free: Option<unsafe extern "C" fn(*mut LoanedSample)>,
}

/// `dds_loaned_sample_origin_t`.
#[repr(C)]
#[derive(Debug)]
pub struct LoanOrigin {
    pub origin_kind: u32,
    pub psmx_endpoint: *mut Endpoint,
}

/// `dds_loaned_sample_t`. Reference counted by Cyclone: `ops.free` runs
/// when `refc` drops to 0.
#[repr(C)]
#[derive(Debug)]
pub struct LoanedSample {
    pub ops: LoanedSampleOps,
    pub loan_origin: LoanOrigin,
    pub metadata: *mut Metadata,
    pub sample_ptr: *mut c_void,
    /// `ddsrt_atomic_uint32_t`.
    pub refc: std::sync::atomic::AtomicU32,
}

/// Opaque `dds_qos_t`.
#[repr(C)]
#[derive(Debug)]
pub struct Qos {
    _private: [u8; 0],
}

/// Opaque `struct ddsi_type`.
#[repr(C)]
#[derive(Debug)]
pub struct DdsiType {
    _private: [u8; 0],
}

/// Opaque `struct ddsi_locator`.
#[repr(C)]
#[derive(Debug)]
pub struct DdsiLocator {
    _private: [u8; 0],
}

/// `dds_psmx_ops_t` (version 1: `create_topic` and `deinit` null).
#[repr(C)]
#[derive(Debug)]
pub struct PsmxOps {
    pub type_qos_supported: Option<unsafe extern "C" fn(*mut Psmx, EndpointType, TypeProps, *const Qos) -> bool>,
    pub create_topic: Option<unsafe extern "C" fn(*mut Psmx, *const c_char, *const c_char, TypeProps) -> *mut Topic>,
    pub delete_topic: Option<unsafe extern "C" fn(*mut Topic) -> DdsReturn>,
    pub deinit: Option<unsafe extern "C" fn(*mut Psmx) -> DdsReturn>,
    pub get_node_id: Option<unsafe extern "C" fn(*const Psmx) -> NodeId>,
    pub supported_features: Option<unsafe extern "C" fn(*const Psmx) -> Features>,
    pub create_topic_with_type: Option<unsafe extern "C" fn(*mut Psmx, *const c_char, *const c_char, TypeProps, *const DdsiType, u32) -> *mut Topic>,
    pub delete_psmx: Option<unsafe extern "C" fn(*mut Psmx)>,
}

/// `dds_psmx_t`: the instance. The plugin sets `ops`; Cyclone the rest.
#[repr(C)]
#[derive(Debug)]
pub struct Psmx {
    pub ops: PsmxOps,
    pub instance_name: *const c_char,
    pub priority: i32,
    pub locator: *const DdsiLocator,
    pub instance_id: InstanceId,
    pub psmx_topics: *mut c_void,
}

/// `dds_psmx_topic_ops_t`.
#[repr(C)]
#[derive(Debug)]
pub struct TopicOps {
    pub create_endpoint: Option<unsafe extern "C" fn(*mut Topic, *const Qos, EndpointType) -> *mut Endpoint>,
    pub delete_endpoint: Option<unsafe extern "C" fn(*mut Endpoint) -> DdsReturn>,
}

/// `dds_psmx_topic_t`. The plugin sets `ops`; Cyclone the rest.
#[repr(C)]
#[derive(Debug)]
pub struct Topic {
    pub ops: TopicOps,
    pub psmx_instance: *mut Psmx,
    pub topic_name: *const c_char,
    pub type_name: *const c_char,
    pub data_type: u32,
    pub psmx_endpoints: *mut c_void,
    pub data_type_props: TypeProps,
}

/// `dds_psmx_endpoint_ops_t`.
#[repr(C)]
#[derive(Debug)]
pub struct EndpointOps {
    pub request_loan: Option<unsafe extern "C" fn(*mut Endpoint, u32) -> *mut LoanedSample>,
    pub write: Option<unsafe extern "C" fn(*mut Endpoint, *mut LoanedSample) -> DdsReturn>,
    pub take: Option<unsafe extern "C" fn(*mut Endpoint) -> *mut LoanedSample>,
    pub on_data_available: Option<unsafe extern "C" fn(*mut Endpoint, DdsEntity) -> DdsReturn>,
    pub write_with_key: Option<unsafe extern "C" fn(*mut Endpoint, *mut LoanedSample, usize, *const c_void) -> DdsReturn>,
}

/// `dds_psmx_endpoint_t`. The plugin sets `ops`; Cyclone the rest.
#[repr(C)]
#[derive(Debug)]
pub struct Endpoint {
    pub ops: EndpointOps,
    pub psmx_topic: *mut Topic,
    pub endpoint_type: EndpointType,
}
