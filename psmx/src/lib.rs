//! # psmx_shmslot — Cyclone DDS 11 over shmslot
//!
//! `libpsmx_shmslot.so` is a PSMX ("publish-subscribe message exchange")
//! plugin, interface version 1: one element in a Cyclone DDS 11
//! configuration moves an unmodified application's same-host traffic onto
//! shmslot rings, while Cyclone keeps discovery, QoS, and UDP for every peer
//! the plugin does not reach:
//!
//! ```xml
//! <Domain><General><Interfaces>
//!   <PubSubMessageExchange type="shmslot" library="/abs/path/libpsmx_shmslot.so" config="SLOTS=64;"/>
//! </Interfaces></General></Domain>
//! ```
//!
//! * **Node id** ([`instance`]): shmslot's namespace id (boot id, IPC
//!   namespace, `/dev/shm`, euid). Two instances that share shared memory
//!   match; any other pair is left to UDP.
//! * **Topics** map to multi-writer, growing (`PowerOfTwo`) `KeepAll` rings in
//!   the discovery directory, one per domain, partition, topic and type,
//!   named so that `flink list` shows which Cyclone topic a ring carries.
//! * **Writers** ([`writer`]) hand Cyclone a slot as the loan (metadata and
//!   payload in place) and commit it on `write`.
//! * **Readers** ([`reader`]): one thread per reader endpoint parks on its
//!   ring's futex and stores what arrives in Cyclone's reader cache.
//! * **libddsc** ([`ddsc`]) is found at load time in the process that loaded
//!   the plugin; the plugin carries no copy of Cyclone.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod config;
pub mod ddsc;
pub mod ffi;
pub mod instance;
pub mod loan;
pub mod reader;
pub mod writer;

use std::ffi::c_char;

use ffi::{DdsReturn, InstanceId, Psmx, DDS_RETCODE_BAD_PARAMETER, DDS_RETCODE_ERROR, DDS_RETCODE_OK, LC_ERROR};

/// The constructor Cyclone looks up for `type="shmslot"`: makes a PSMX
/// instance from the `config` attribute. A configuration it cannot parse, a
/// host without libddsc or a machine whose namespace cannot be read is an
/// error in Cyclone's log and a failed load (Cyclone then refuses the
/// domain), never a crash.
///
/// # Safety
/// Called by Cyclone DDS 11: `out` is writable, `config` is null or a
/// double-NUL terminated sequence of strings.
#[no_mangle]
pub unsafe extern "C" fn shmslot_create_psmx(out: *mut *mut Psmx, _id: InstanceId, config: *const c_char) -> DdsReturn {
    if out.is_null() {
        return DDS_RETCODE_BAD_PARAMETER;
    }
    let made = std::panic::catch_unwind(|| {
        if let Err(e) = ddsc::get() {
            return Err((DDS_RETCODE_ERROR, e.to_owned()));
        }
        // SAFETY: Cyclone's contract for `config`, passed on.
        let cfg = unsafe { config::Config::from_raw(config) }.map_err(|e| (DDS_RETCODE_BAD_PARAMETER, e.to_string()))?;
        instance::Instance::create(cfg).map_err(|e| (DDS_RETCODE_ERROR, e))
    });
    match made {
        Ok(Ok(psmx)) => {
            // SAFETY: `out` is writable (checked non-null; Cyclone's contract).
            unsafe { *out = psmx };
            DDS_RETCODE_OK
        }
        Ok(Err((rc, msg))) => {
            ddsc::log(LC_ERROR, &format!("cannot create the shmslot PSMX instance: {msg}"));
            rc
        }
        Err(_) => {
            ddsc::log(LC_ERROR, "cannot create the shmslot PSMX instance: internal error (panic)");
            DDS_RETCODE_ERROR
        }
    }
}
