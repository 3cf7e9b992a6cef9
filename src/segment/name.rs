//! Names of segment objects: `/shmslot.<uid>.<16 hex>`, the hex part a
//! random id (a growing ring's generations name each other by it).

use crate::sys::shm;

/// `/shmslot.<decimal uid>.<16 lowercase hex>`.
pub(crate) fn valid_segment_name(n: &str) -> bool {
    let Some(rest) = n.strip_prefix("/shmslot.") else { return false };
    let Some((uid, hex)) = rest.split_once('.') else { return false };
    !uid.is_empty()
        && uid.len() <= 10
        && uid.bytes().all(|c| c.is_ascii_digit())
        && hex.len() == 16
        && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// A fresh object name for this user.
pub(crate) fn new_segment_name() -> String {
    format!("/shmslot.{}.{:016x}", shm::euid(), shm::random_u64())
}


/// The name of this user's object with id `id`.
pub(crate) fn name_of(id: u64) -> String {
    format!("/shmslot.{}.{id:016x}", shm::euid())
}

/// The id (random part) of one of our object names.
pub(crate) fn id_of(name: &str) -> u64 {
    name.rsplit('.').next().and_then(|h| u64::from_str_radix(h, 16).ok()).unwrap_or(0)
}

/// Where the system shows object `name`: `/dev/shm<name>`.
pub(crate) fn shm_path(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/dev/shm{name}"))
}
