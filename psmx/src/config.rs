//! The plugin's configuration: the `config` attribute of
//! `<PubSubMessageExchange type="shmslot" library="…" config="…"/>`.
//!
//! Cyclone hands it over as `KEY=VALUE;` pairs in one or more NUL-terminated
//! strings, the whole ended by an empty one (a double NUL); a backslash
//! escapes the next character of a value. Keys:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `DIR` | discovery directory of the topic rings | `$SHMSLOT_DIR`, else shmslot's default |
//! | `SLOTS` | slots per topic ring, a power of two, 2 to 65536 | 64 |
//! | `SLOT_SIZE` | payload bytes of a ring's first slots (rings of variable-size types grow past it) | 4096, or the type's size if larger |
//! | `INSTANCE_NAME`, `SERVICE_NAME`, `LOCATOR` | Cyclone's own keys | |

use std::path::PathBuf;

/// Default slots per topic ring.
pub const DEFAULT_SLOTS: usize = 64;
/// Default payload bytes of a ring's first slots.
pub const DEFAULT_SLOT_SIZE: usize = 4096;
/// Largest slot count accepted.
const MAX_SLOTS: usize = 65536;
/// Largest first slot size accepted (rings grow past it on their own).
const MAX_SLOT_SIZE: usize = 256 << 20;

/// The parsed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Discovery directory (`None`: shmslot's default, which honours
    /// `SHMSLOT_DIR`).
    pub dir: Option<PathBuf>,
    /// Slots per topic ring.
    pub slots: usize,
    /// Payload bytes of a ring's first slots.
    pub slot_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { dir: None, slots: DEFAULT_SLOTS, slot_size: DEFAULT_SLOT_SIZE }
    }
}

/// A configuration the plugin refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A pair without `=`, or with an empty key.
    Malformed { pair: String },
    /// A key the plugin does not know.
    UnknownKey { key: String },
    /// A value out of range or not a number.
    BadValue { key: &'static str, value: String, expected: &'static str },
    /// A key given twice.
    Repeated { key: String },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed { pair } => write!(f, "config: malformed pair {pair:?} (expected KEY=VALUE;)"),
            Self::UnknownKey { key } => write!(f, "config: unknown key {key:?} (known: DIR, SLOTS, SLOT_SIZE)"),
            Self::BadValue { key, value, expected } => write!(f, "config: {key}={value:?} is invalid ({expected})"),
            Self::Repeated { key } => write!(f, "config: key {key:?} given twice"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Splits Cyclone's config strings (already cut at the double NUL) into
/// unescaped `(key, value)` pairs.
fn pairs(strings: &[&[u8]]) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for s in strings {
        let mut key = Vec::new();
        let mut value = Vec::new();
        let mut in_value = false;
        let mut escaped = false;
        let mut flush = |key: &mut Vec<u8>, value: &mut Vec<u8>, in_value: bool| -> Result<(), ConfigError> {
            if key.is_empty() && value.is_empty() && !in_value {
                return Ok(());
            }
            let k = String::from_utf8_lossy(key).into_owned();
            if !in_value || k.is_empty() {
                return Err(ConfigError::Malformed { pair: k });
            }
            out.push((k, String::from_utf8_lossy(value).into_owned()));
            key.clear();
            value.clear();
            Ok(())
        };
        for &c in *s {
            if escaped {
                value.push(c);
                escaped = false;
            } else if !in_value && c == b'=' {
                in_value = true;
            } else if !in_value && c == b';' {
                flush(&mut key, &mut value, in_value)?;
            } else if !in_value {
                key.push(c);
            } else if c == b'\\' {
                escaped = true;
            } else if c == b';' {
                flush(&mut key, &mut value, in_value)?;
                in_value = false;
            } else {
                value.push(c);
            }
        }
        flush(&mut key, &mut value, in_value)?;
    }
    Ok(out)
}

impl Config {
    /// Parses the strings of Cyclone's config argument.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key and value at fault.
    pub fn parse(strings: &[&[u8]]) -> Result<Self, ConfigError> {
        let mut c = Self::default();
        let mut seen: Vec<String> = Vec::new();
        for (k, v) in pairs(strings)? {
            if seen.contains(&k) && !matches!(k.as_str(), "INSTANCE_NAME" | "SERVICE_NAME") {
                return Err(ConfigError::Repeated { key: k });
            }
            seen.push(k.clone());
            match k.as_str() {
                "DIR" => {
                    if v.is_empty() {
                        return Err(ConfigError::BadValue { key: "DIR", value: v, expected: "a directory path" });
                    }
                    c.dir = Some(PathBuf::from(v));
                }
                "SLOTS" => {
                    c.slots = match v.trim().parse::<usize>() {
                        Ok(n) if (2..=MAX_SLOTS).contains(&n) && n.is_power_of_two() => n,
                        _ => return Err(ConfigError::BadValue { key: "SLOTS", value: v, expected: "a power of two from 2 to 65536" }),
                    }
                }
                "SLOT_SIZE" => {
                    c.slot_size = match v.trim().parse::<usize>() {
                        Ok(n) if (1..=MAX_SLOT_SIZE).contains(&n) => n,
                        _ => return Err(ConfigError::BadValue { key: "SLOT_SIZE", value: v, expected: "bytes, 1 to 268435456" }),
                    }
                }
                "INSTANCE_NAME" | "SERVICE_NAME" | "LOCATOR" => {}
                _ => return Err(ConfigError::UnknownKey { key: k }),
            }
        }
        Ok(c)
    }

    /// Parses Cyclone's config argument: NUL-terminated strings up to the
    /// first empty one.
    ///
    /// # Safety
    /// `config` is null or points to such a double-NUL terminated sequence.
    ///
    /// # Errors
    /// As [`parse`](Self::parse).
    pub unsafe fn from_raw(config: *const std::ffi::c_char) -> Result<Self, ConfigError> {
        if config.is_null() {
            return Ok(Self::default());
        }
        let mut strings = Vec::new();
        let mut p = config;
        loop {
            // SAFETY: the caller's contract: `p` starts one of the strings,
            // and the sequence ends with an empty one.
            let s = unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes();
            if s.is_empty() {
                break;
            }
            strings.push(s);
            // SAFETY: past this string's NUL, still inside the sequence.
            p = unsafe { p.add(s.len() + 1) };
        }
        Self::parse(&strings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyclones_form_with_its_instance_name_parses() {
        let c = Config::parse(&[b"DIR=/run/x\\;y;SLOTS=128;", b"INSTANCE_NAME=shmslot;"]).unwrap();
        assert_eq!(c, Config { dir: Some("/run/x;y".into()), slots: 128, slot_size: DEFAULT_SLOT_SIZE });
        assert_eq!(Config::parse(&[b"SLOT_SIZE=64"]).unwrap().slot_size, 64);
        assert_eq!(Config::parse(&[]).unwrap(), Config::default());
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(Config::parse(&[b"SLOTS=100;"]), Err(ConfigError::BadValue { key: "SLOTS", value: "100".into(), expected: "a power of two from 2 to 65536" }));
        assert_eq!(Config::parse(&[b"SLOTS=x"]).unwrap_err().to_string(), "config: SLOTS=\"x\" is invalid (a power of two from 2 to 65536)");
        assert_eq!(Config::parse(&[b"SIZE=1;"]), Err(ConfigError::UnknownKey { key: "SIZE".into() }));
        assert_eq!(Config::parse(&[b"SLOTS;"]), Err(ConfigError::Malformed { pair: "SLOTS".into() }));
        assert_eq!(Config::parse(&[b"=3;"]), Err(ConfigError::Malformed { pair: String::new() }));
        assert_eq!(Config::parse(&[b"SLOTS=4;SLOTS=8"]), Err(ConfigError::Repeated { key: "SLOTS".into() }));
        assert!(Config::parse(&[b"SLOT_SIZE=0"]).is_err());
        assert!(Config::parse(&[b"DIR="]).is_err());
    }

    #[test]
    fn raw_strings_end_at_the_double_nul() {
        let raw = b"SLOTS=8;\0INSTANCE_NAME=a;\0\0SLOTS=bad\0\0";
        // SAFETY: a double-NUL terminated sequence.
        let c = unsafe { Config::from_raw(raw.as_ptr().cast()) }.unwrap();
        assert_eq!(c.slots, 8);
    }
}
