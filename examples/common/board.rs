//! The key and value types both blackboard example processes agree on.

/// An entry's key: which topic it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Topic(pub u32);

/// The robot's pose.
pub const POSE: Topic = Topic(1);
/// Its battery.
pub const BATTERY: Topic = Topic(2);
/// A plain counter.
pub const COUNTER: Topic = Topic(3);

/// A position and when it was measured.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Pose {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    /// ms since the writer started.
    pub stamp: u64,
}

/// Battery state.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Battery {
    pub voltage: f32,
    pub percent: f32,
}

/// A counter.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Counter(pub u64);

macro_rules! pod {
    ($t:ty, $name:literal) => {
        // SAFETY: repr(C), integer and float fields without padding: every
        // bit pattern is a valid value.
        unsafe impl shmslot::Pod for $t {
            const TYPE_HASH: [u8; 16] = shmslot::type_hash($name, std::mem::size_of::<$t>(), std::mem::align_of::<$t>());
        }
    };
}
pod!(Topic, "examples::Topic v1");
pod!(Pose, "examples::Pose v1");
pod!(Battery, "examples::Battery v1");
pod!(Counter, "examples::Counter v1");

/// The board's name unless one is given (a bare name: it lives in the
/// discovery directory, like a ring's).
pub const DEFAULT_BOARD: &str = "blackboard-demo";
