//! The PSMX instance and its topics: node id, what QoS the rings honour,
//! and which ring a topic's endpoints use.
//!
//! # QoS
//!
//! | QoS | over shmslot | otherwise |
//! |---|---|---|
//! | reliability RELIABLE | the writer waits for room, at most `max_blocking_time`, then `DDS_RETCODE_TIMEOUT`; never loses a sample to a slow reader | |
//! | reliability BEST_EFFORT | the writer never waits: a sample that finds the ring full is dropped (counted in the ring's flink file) | |
//! | history KEEP_LAST / KEEP_ALL | applied by Cyclone's reader cache | |
//! | durability VOLATILE | yes | TRANSIENT_LOCAL and above: refused, the endpoint uses UDP (a ring keeps no history for late joiners) |
//! | partition: none, or one name | yes (a ring per partition) | several, or wildcards: refused, UDP |
//! | ignore_local PARTICIPANT / PROCESS | yes: filtered on the writer GUID / pid the slot carries | |
//! | deadline, liveliness, lifespan, ownership | applied by Cyclone | |

use std::ffi::{c_char, CStr};

use shmslot::{GrowthStrategy, NamespaceId, PosixSlotAllocator};

use crate::config::Config;
use crate::ddsc;
use crate::ffi::{self, DdsReturn, DdsiType, Endpoint, EndpointType, Features, NodeId, Psmx, PsmxOps, Qos, Topic, TopicOps, TypeProps};
use crate::loan::HEADER;
use crate::{reader, writer};

/// The first 8 bytes of the node id: says the other 8 are a shmslot
/// namespace id (so no other plugin's locator can equal ours by chance).
pub const NODE_ID_TAG: [u8; 8] = *b"shmslot1";

/// `dds_psmx_t` and what the plugin keeps per instance.
#[repr(C)]
#[derive(Debug)]
pub struct Instance {
    pub c: Psmx,
    pub config: Config,
    pub node_id: NodeId,
}

const INSTANCE_OPS: PsmxOps = PsmxOps {
    type_qos_supported: Some(type_qos_supported),
    create_topic: None,
    delete_topic: Some(delete_topic),
    deinit: None,
    get_node_id: Some(get_node_id),
    supported_features: Some(supported_features),
    create_topic_with_type: Some(create_topic_with_type),
    delete_psmx: Some(delete_psmx),
};

/// The node id of this process: tag and namespace id (big-endian).
pub fn node_id(ns: NamespaceId) -> NodeId {
    let mut x = [0; 16];
    x[..8].copy_from_slice(&NODE_ID_TAG);
    x[8..].copy_from_slice(&ns.0.to_be_bytes());
    NodeId { x }
}

impl Instance {
    /// A new instance, as interface version 1 wants it: only `ops` set.
    ///
    /// # Errors
    /// When this process's namespace cannot be read.
    pub fn create(config: Config) -> Result<*mut Psmx, String> {
        let ns = NamespaceId::current().map_err(|e| format!("reading this host's namespace: {e}"))?;
        if let Ok(d) = ddsc::get() {
            d.log(ffi::LC_INFO, &format!("namespace {ns}, libddsc found in {}", d.found_in));
        }
        let inst = Box::new(Self {
            c: Psmx { ops: INSTANCE_OPS, instance_name: std::ptr::null(), priority: 0, locator: std::ptr::null(), instance_id: 0, psmx_topics: std::ptr::null_mut() },
            config,
            node_id: node_id(ns),
        });
        Ok(Box::into_raw(inst).cast())
    }
}

/// The QoS values the plugin looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QosView {
    pub reliable: bool,
    /// `max_blocking_time` in ns (`DDS_INFINITY` for none).
    pub max_blocking_ns: i64,
    pub volatile: bool,
    /// `None`: several partitions or a wildcard.
    pub partition: Option<String>,
    pub ignore_local: u32,
}

impl QosView {
    /// Reads `qos` through libddsc (defaults where a policy is absent:
    /// best effort, volatile, no partition, nothing ignored).
    ///
    /// # Safety
    /// `qos` is null or a live `dds_qos_t`.
    pub unsafe fn read(d: &ddsc::Ddsc, qos: *const Qos) -> Self {
        let mut v = Self { max_blocking_ns: ffi::DDS_INFINITY, volatile: true, partition: Some(String::new()), ..Self::default() };
        if qos.is_null() {
            return v;
        }
        let (mut kind, mut blocking) = (0u32, 0i64);
        // SAFETY: a live qos and writable outputs (each getter below too).
        if unsafe { (d.qget_reliability)(qos, &mut kind, &mut blocking) } {
            v.reliable = kind == ffi::RELIABILITY_RELIABLE;
            v.max_blocking_ns = blocking;
        }
        let mut durability = ffi::DURABILITY_VOLATILE;
        // SAFETY: as above.
        if unsafe { (d.qget_durability)(qos, &mut durability) } {
            v.volatile = durability == ffi::DURABILITY_VOLATILE;
        }
        let mut ignore = ffi::IGNORELOCAL_NONE;
        // SAFETY: as above.
        if unsafe { (d.qget_ignorelocal)(qos, &mut ignore) } {
            v.ignore_local = ignore;
        }
        let (mut n, mut names): (u32, *mut *mut c_char) = (0, std::ptr::null_mut());
        // SAFETY: as above; the strings and the array are dds_alloc'ed
        // copies we free with dds_free.
        if unsafe { (d.qget_partition)(qos, &mut n, &mut names) } && !names.is_null() {
            let mut list = Vec::new();
            for i in 0..n as usize {
                // SAFETY: `n` strings, each NUL-terminated, then freed once.
                unsafe {
                    let p = *names.add(i);
                    list.push(CStr::from_ptr(p).to_string_lossy().into_owned());
                    (d.free)(p.cast());
                }
            }
            // SAFETY: the array itself, freed once.
            unsafe { (d.free)(names.cast()) };
            v.partition = match list.as_slice() {
                [] => Some(String::new()),
                [one] if !one.contains(['*', '?', '[', ']', '\\']) => Some(one.clone()),
                _ => None,
            };
        }
        v
    }

    /// Whether a ring can carry an endpoint with this QoS (see the table in
    /// the module doc).
    pub fn supported(&self) -> bool {
        self.volatile && self.partition.is_some()
    }
}

unsafe extern "C" fn type_qos_supported(_psmx: *mut Psmx, forwhat: EndpointType, _props: TypeProps, qos: *const Qos) -> bool {
    // Topic QoS does not decide: each endpoint is asked again with its own.
    if forwhat == ffi::ENDPOINT_TYPE_UNSET {
        return true;
    }
    let Ok(d) = ddsc::get() else { return false };
    // SAFETY: Cyclone passes a live qos (or null).
    unsafe { QosView::read(d, qos) }.supported()
}

unsafe extern "C" fn get_node_id(psmx: *const Psmx) -> NodeId {
    // SAFETY: Cyclone passes the instance `create` made.
    unsafe { (*psmx.cast::<Instance>()).node_id }
}

unsafe extern "C" fn supported_features(_psmx: *const Psmx) -> Features {
    ffi::FEATURE_SHARED_MEMORY | ffi::FEATURE_ZERO_COPY
}

unsafe extern "C" fn delete_psmx(psmx: *mut Psmx) {
    // SAFETY: the instance `create` boxed; Cyclone deletes it once, after
    // every topic (and so every endpoint) is gone.
    drop(unsafe { Box::from_raw(psmx.cast::<Instance>()) });
}

/// `dds_psmx_topic_t` and what the plugin keeps per topic.
#[repr(C)]
#[derive(Debug)]
pub struct TopicImpl {
    pub c: Topic,
    pub topic_name: String,
    pub type_name: String,
    /// In-memory size of the type, 0 if unknown.
    pub sizeof_type: u32,
    pub config: Config,
    /// The instance's numeric id (Cyclone derives it from the domain id and
    /// the instance name: equal in every process of the domain).
    pub instance_id: u32,
    /// This host namespace's id: a process of another namespace that shares
    /// the discovery directory (but not `/dev/shm`) names other rings.
    pub namespace: u64,
}

const TOPIC_OPS: TopicOps = TopicOps { create_endpoint: Some(create_endpoint), delete_endpoint: Some(delete_endpoint) };

unsafe extern "C" fn create_topic_with_type(psmx: *mut Psmx, topic_name: *const c_char, type_name: *const c_char, _props: TypeProps, _type: *const DdsiType, sizeof_type: u32) -> *mut Topic {
    if psmx.is_null() || topic_name.is_null() || type_name.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: Cyclone passes its instance and two NUL-terminated names.
    let (inst, topic, ty) = unsafe { (&*psmx.cast::<Instance>(), CStr::from_ptr(topic_name), CStr::from_ptr(type_name)) };
    let t = Box::new(TopicImpl {
        c: Topic { ops: TOPIC_OPS, psmx_instance: std::ptr::null_mut(), topic_name: std::ptr::null(), type_name: std::ptr::null(), data_type: 0, psmx_endpoints: std::ptr::null_mut(), data_type_props: 0 },
        topic_name: topic.to_string_lossy().into_owned(),
        type_name: ty.to_string_lossy().into_owned(),
        sizeof_type,
        config: inst.config.clone(),
        instance_id: inst.c.instance_id,
        namespace: u64::from_be_bytes(inst.node_id.x[8..].try_into().unwrap_or_default()),
    });
    Box::into_raw(t).cast()
}

unsafe extern "C" fn delete_topic(topic: *mut Topic) -> DdsReturn {
    // SAFETY: a topic `create_topic_with_type` boxed; Cyclone deletes it
    // once, after its endpoints.
    drop(unsafe { Box::from_raw(topic.cast::<TopicImpl>()) });
    ffi::DDS_RETCODE_OK
}

/// Keeps `[A-Za-z0-9._-]`, turns the rest into `_`, at most `max` bytes.
fn sanitize(s: &str, max: usize) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).take(max).collect()
}

impl TopicImpl {
    /// The flink name of the ring that carries this topic in `partition`:
    /// readable parts (domain's instance id, partition, topic, type; cut
    /// and with unusual characters replaced) and a hash of the exact ones and
    /// the namespace, so that two topics never share a ring.
    pub fn ring_name(&self, partition: &str) -> String {
        let exact = format!("{:016x}\0{:08x}\0{partition}\0{}\0{}", self.namespace, self.instance_id, self.topic_name, self.type_name);
        let h = shmslot::type_hash(&exact, 0, 0);
        let hash: String = h[..6].iter().map(|b| format!("{b:02x}")).collect();
        let part = if partition.is_empty() { String::new() } else { format!("{}.", sanitize(partition, 40)) };
        format!("cyclone.{:08x}.{part}{}.{}.{hash}", self.instance_id, sanitize(&self.topic_name, 80), sanitize(&self.type_name, 60))
    }

    /// Payload bytes of a new ring's first slots.
    pub fn first_slot_size(&self) -> usize {
        self.config.slot_size.max(self.sizeof_type as usize)
    }

    /// Attaches to this topic's ring for `partition`, creating it if this is
    /// the first endpoint anywhere.
    ///
    /// # Errors
    /// The ring's open error, as text for Cyclone's log.
    pub fn open_ring(&self, partition: &str) -> Result<PosixSlotAllocator, String> {
        let name = self.ring_name(partition);
        let mut b = PosixSlotAllocator::builder(self.config.slots, HEADER + self.first_slot_size())
            .growth(GrowthStrategy::PowerOfTwo)
            .max_readers(64)
            .max_writers(64)
            .remove_on_drop(false);
        if let Some(dir) = &self.config.dir {
            b = b.discovery_dir(dir);
        }
        b.attach_or_create(&name).map_err(|e| format!("topic {:?} ring {name}: {e}", self.topic_name))
    }
}

unsafe extern "C" fn create_endpoint(topic: *mut Topic, qos: *const Qos, kind: EndpointType) -> *mut Endpoint {
    let Ok(d) = ddsc::get() else { return std::ptr::null_mut() };
    // SAFETY: Cyclone passes a topic `create_topic_with_type` made and a
    // live qos.
    let (t, q) = unsafe { (&*topic.cast::<TopicImpl>(), QosView::read(d, qos)) };
    let Some(partition) = q.partition.clone().filter(|_| q.supported()) else {
        d.log(ffi::LC_ERROR, &format!("topic {:?}: endpoint QoS not supported (type_qos_supported said no)", t.topic_name));
        return std::ptr::null_mut();
    };
    let ring = match t.open_ring(&partition) {
        Ok(r) => r,
        Err(e) => {
            d.log(ffi::LC_ERROR, &e);
            return std::ptr::null_mut();
        }
    };
    let made = match kind {
        ffi::ENDPOINT_TYPE_WRITER => writer::create(ring, &q),
        ffi::ENDPOINT_TYPE_READER => reader::create(ring, &q),
        _ => Err("endpoint type neither reader nor writer".to_owned()),
    };
    match made {
        Ok(ep) => ep,
        Err(e) => {
            d.log(ffi::LC_ERROR, &format!("topic {:?}: {e}", t.topic_name));
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn delete_endpoint(ep: *mut Endpoint) -> DdsReturn {
    // SAFETY: Cyclone passes an endpoint `create_endpoint` made, once, after
    // its last operation; Cyclone set `endpoint_type` from what we made.
    match unsafe { (*ep).endpoint_type } {
        // SAFETY: as above: a writer endpoint.
        ffi::ENDPOINT_TYPE_WRITER => unsafe { writer::delete(ep) },
        // SAFETY: as above: a reader endpoint.
        _ => unsafe { reader::delete(ep) },
    }
    ffi::DDS_RETCODE_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, ty: &str) -> TopicImpl {
        TopicImpl {
            c: Topic { ops: TOPIC_OPS, psmx_instance: std::ptr::null_mut(), topic_name: std::ptr::null(), type_name: std::ptr::null(), data_type: 0, psmx_endpoints: std::ptr::null_mut(), data_type_props: 0 },
            topic_name: name.into(),
            type_name: ty.into(),
            sizeof_type: 0,
            config: Config::default(),
            instance_id: 0x1234_abcd,
            namespace: 7,
        }
    }

    #[test]
    fn ring_names_are_readable_safe_and_distinct() {
        let a = topic("rt/chatter", "std_msgs::msg::dds_::String_");
        let n = a.ring_name("");
        assert!(n.starts_with("cyclone.1234abcd.rt_chatter.std_msgs__msg__dds___String_."), "{n}");
        assert!(!n.contains('/') && n.len() < 255);
        // Sanitising maps both to the same text; the hash keeps them apart.
        assert_ne!(topic("a/b", "T").ring_name(""), topic("a_b", "T").ring_name(""));
        assert_ne!(a.ring_name("p1"), a.ring_name(""));
        assert_ne!(a.ring_name(""), TopicImpl { namespace: 8, ..topic("rt/chatter", "std_msgs::msg::dds_::String_") }.ring_name(""));
        assert!(a.ring_name("p1").starts_with("cyclone.1234abcd.p1.rt_chatter."));
        let long = topic(&"x".repeat(1000), &"y".repeat(1000)).ring_name(&"z".repeat(1000));
        assert!(long.len() < 255, "{}", long.len());
    }

    #[test]
    fn node_ids_say_shmslot_and_the_namespace() {
        let n = node_id(NamespaceId(0x0102_0304_0506_0708));
        assert_eq!(&n.x[..8], b"shmslot1");
        assert_eq!(n.x[8..], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_ne!(node_id(NamespaceId(1)), node_id(NamespaceId(2)));
    }

    #[test]
    fn only_volatile_single_partition_endpoints_are_supported() {
        let ok = QosView { volatile: true, partition: Some(String::new()), ..QosView::default() };
        assert!(ok.supported());
        assert!(!QosView { volatile: false, ..ok.clone() }.supported());
        assert!(!QosView { partition: None, ..ok }.supported());
    }
}
