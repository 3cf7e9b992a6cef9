//! The operating system, and nothing else: every system call shmslot makes
//! on shared memory lives below this folder, with its errors mapped for the
//! caller. No policy here (what a lock byte means, when to park, which
//! object to unlink is decided by the layers above).

pub(crate) mod clock;
pub(crate) mod futex;
pub(crate) mod membarrier;
pub(crate) mod ofd_lock;
pub(crate) mod shm;
