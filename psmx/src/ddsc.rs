//! The libddsc functions the plugin calls, found at load time in the
//! process that loaded it.
//!
//! The plugin links no Cyclone: a host may have libddsc as a shared library
//! in the global scope (a C or C++ program), linked into the executable with
//! its symbols exported (Rust over cyclors), or loaded `RTLD_LOCAL` (the
//! Python binding), where `dlsym(RTLD_DEFAULT)` does not see it. So: the
//! global scope first, then every loaded object (`dl_iterate_phdr`) until one
//! defines `dds_reader_store_loaned_sample`; every function is taken from
//! that one object.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

use crate::ffi::{DdsEntity, DdsReturn, Guid, LoanedSample, Qos};

/// The libddsc functions, resolved once per process.
#[derive(Debug)]
pub struct Ddsc {
    pub reader_store_loaned_sample: unsafe extern "C" fn(DdsEntity, *mut LoanedSample) -> DdsReturn,
    /// The same, with the writer's QoS given: accepts samples of writers
    /// Cyclone does not know (not discovered yet, or already gone).
    pub reader_store_loaned_sample_wr_metadata: unsafe extern "C" fn(DdsEntity, *mut LoanedSample, i32, bool, i64) -> DdsReturn,
    pub qget_reliability: unsafe extern "C" fn(*const Qos, *mut u32, *mut i64) -> bool,
    pub qget_durability: unsafe extern "C" fn(*const Qos, *mut u32) -> bool,
    pub qget_partition: unsafe extern "C" fn(*const Qos, *mut u32, *mut *mut *mut c_char) -> bool,
    pub qget_ignorelocal: unsafe extern "C" fn(*const Qos, *mut u32) -> bool,
    pub get_guid: unsafe extern "C" fn(DdsEntity, *mut Guid) -> DdsReturn,
    pub free: unsafe extern "C" fn(*mut c_void),
    log: unsafe extern "C" fn(u32, *const c_char, u32, *const c_char, *const c_char, ...),
    /// Where the functions were found (for the log).
    pub found_in: String,
}

/// The symbol that identifies libddsc among the loaded objects.
const ANCHOR: &CStr = c"dds_reader_store_loaned_sample";

static DDSC: OnceLock<Result<Ddsc, String>> = OnceLock::new();

/// libddsc's functions, or why they could not be found.
pub fn get() -> Result<&'static Ddsc, &'static str> {
    DDSC.get_or_init(resolve).as_ref().map_err(String::as_str)
}

impl Ddsc {
    /// Writes `msg` to Cyclone's log (which goes to its configured sinks;
    /// errors reach stderr by default).
    pub fn log(&self, category: u32, msg: &str) {
        let text = CString::new(format!("psmx_shmslot: {msg}\n").replace('\0', " ")).unwrap_or_default();
        // SAFETY: `dds_log(prio, file, line, func, fmt, ...)` with a "%s"
        // format and one NUL-terminated string argument; all pointers live
        // for the call.
        unsafe { (self.log)(category, c"psmx_shmslot".as_ptr(), 0, c"psmx_shmslot".as_ptr(), c"%s".as_ptr(), text.as_ptr()) };
    }
}

/// Logs through Cyclone when it was found, else to stderr.
pub fn log(category: u32, msg: &str) {
    match get() {
        Ok(d) => d.log(category, msg),
        Err(_) => eprintln!("psmx_shmslot: {msg}"),
    }
}

fn resolve() -> Result<Ddsc, String> {
    // SAFETY: dlsym on the global scope with a NUL-terminated name.
    if !unsafe { libc::dlsym(libc::RTLD_DEFAULT, ANCHOR.as_ptr()) }.is_null() {
        return from_handle(libc::RTLD_DEFAULT, "the global scope".to_owned());
    }
    for path in loaded_objects() {
        let Ok(c) = CString::new(path.clone()) else { continue };
        // SAFETY: RTLD_NOLOAD only returns a handle to an object already
        // loaded (taking a reference we give back below); it loads nothing.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
        if h.is_null() {
            continue;
        }
        // SAFETY: a valid handle and a NUL-terminated name.
        if unsafe { libc::dlsym(h, ANCHOR.as_ptr()) }.is_null() {
            // SAFETY: gives back the reference dlopen took.
            unsafe { libc::dlclose(h) };
            continue;
        }
        // The reference is kept: libddsc loaded us, so it outlives us anyway.
        return from_handle(h, path);
    }
    Err("libddsc not found in this process (no loaded object defines dds_reader_store_loaned_sample): the plugin must be loaded by Cyclone DDS 11".to_owned())
}

/// Paths of every loaded object that has one.
fn loaded_objects() -> Vec<String> {
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for the duration of the
        // call, and `data` is the `Vec` passed below.
        let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<String>>()) };
        if !info.dlpi_name.is_null() {
            // SAFETY: a NUL-terminated string owned by the dynamic linker.
            let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy().into_owned();
            if !name.is_empty() {
                out.push(name);
            }
        }
        0
    }
    let mut out: Vec<String> = Vec::new();
    // SAFETY: the callback only reads what it is given and pushes to `out`,
    // which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), std::ptr::from_mut(&mut out).cast()) };
    // libddsc first when its name says so (fewer dlopen calls).
    out.sort_by_key(|p| !p.contains("ddsc"));
    out
}

fn from_handle(h: *mut c_void, found_in: String) -> Result<Ddsc, String> {
    let sym = |name: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: a valid handle (or RTLD_DEFAULT) and a NUL-terminated name.
        let p = unsafe { libc::dlsym(h, name.as_ptr()) };
        if p.is_null() {
            Err(format!("{} not found in {found_in} (is this Cyclone DDS 11?)", name.to_string_lossy()))
        } else {
            Ok(p)
        }
    };
    // Each symbol is the libddsc 11 function of that name, whose C signature
    // the field's type spells (dds/ddsc headers).
    macro_rules! func {
        ($name:expr, $ty:ty) => {{
            let p = sym($name)?;
            // SAFETY: see above: a function of exactly this signature.
            unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
        }};
    }
    Ok(Ddsc {
        reader_store_loaned_sample: func!(ANCHOR, unsafe extern "C" fn(DdsEntity, *mut LoanedSample) -> DdsReturn),
        reader_store_loaned_sample_wr_metadata: func!(c"dds_reader_store_loaned_sample_wr_metadata", unsafe extern "C" fn(DdsEntity, *mut LoanedSample, i32, bool, i64) -> DdsReturn),
        qget_reliability: func!(c"dds_qget_reliability", unsafe extern "C" fn(*const Qos, *mut u32, *mut i64) -> bool),
        qget_durability: func!(c"dds_qget_durability", unsafe extern "C" fn(*const Qos, *mut u32) -> bool),
        qget_partition: func!(c"dds_qget_partition", unsafe extern "C" fn(*const Qos, *mut u32, *mut *mut *mut c_char) -> bool),
        qget_ignorelocal: func!(c"dds_qget_ignorelocal", unsafe extern "C" fn(*const Qos, *mut u32) -> bool),
        get_guid: func!(c"dds_get_guid", unsafe extern "C" fn(DdsEntity, *mut Guid) -> DdsReturn),
        free: func!(c"dds_free", unsafe extern "C" fn(*mut c_void)),
        log: func!(c"dds_log", unsafe extern "C" fn(u32, *const c_char, u32, *const c_char, *const c_char, ...)),
        found_in,
    })
}
