//! Names of POSIX shared-memory objects.

use std::fmt;

/// Longest name body: Linux keeps objects as files in `/dev/shm`, whose
/// names may be at most `NAME_MAX` (255) bytes.
pub const MAX_NAME_LEN: usize = 255;

/// A validated segment name, stored in its canonical form with one leading
/// `/` (`"/orders"`). `"orders"` and `"/orders"` name the same segment.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SegmentName(String);

/// Why a string is not a valid segment name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidName {
    /// Nothing after the optional leading `/`.
    Empty,
    /// Longer than [`MAX_NAME_LEN`] bytes after the leading `/`.
    TooLong {
        /// The length found.
        len: usize,
    },
    /// A `/` after the leading one: objects cannot live in subdirectories.
    InteriorSlash,
    /// A NUL byte, which cannot be passed to the OS.
    Nul,
    /// `"."` or `".."`, which name directories.
    DotName,
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidName::Empty => f.write_str("segment name is empty; use e.g. \"/my-data\""),
            InvalidName::TooLong { len } => write!(
                f,
                "segment name is {len} bytes; at most {MAX_NAME_LEN} are allowed after the leading '/'"
            ),
            InvalidName::InteriorSlash => {
                f.write_str("segment name may contain '/' only as its first character")
            }
            InvalidName::Nul => f.write_str("segment name contains a NUL byte"),
            InvalidName::DotName => f.write_str("segment name may not be \".\" or \"..\""),
        }
    }
}

impl std::error::Error for InvalidName {}

impl SegmentName {
    /// Validates `name` and puts it in canonical form.
    ///
    /// ```
    /// use shmkit_posix::SegmentName;
    /// assert_eq!(SegmentName::new("prices").unwrap().as_str(), "/prices");
    /// assert_eq!(SegmentName::new("/prices").unwrap().as_str(), "/prices");
    /// assert!(SegmentName::new("/a/b").is_err());
    /// ```
    ///
    /// # Errors
    /// [`InvalidName`] says which rule the name breaks.
    pub fn new(name: &str) -> Result<SegmentName, InvalidName> {
        let body = name.strip_prefix('/').unwrap_or(name);
        if body.is_empty() {
            return Err(InvalidName::Empty);
        }
        if body.len() > MAX_NAME_LEN {
            return Err(InvalidName::TooLong { len: body.len() });
        }
        if body.contains('\0') {
            return Err(InvalidName::Nul);
        }
        if body.contains('/') {
            return Err(InvalidName::InteriorSlash);
        }
        if body == "." || body == ".." {
            return Err(InvalidName::DotName);
        }
        Ok(SegmentName(format!("/{body}")))
    }

    /// The canonical name, with its leading `/`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without its leading `/` (the file name under `/dev/shm`).
    #[must_use]
    pub fn body(&self) -> &str {
        &self.0[1..]
    }

    pub(crate) fn c_string(&self) -> std::ffi::CString {
        // Cannot fail: NUL bytes were rejected in `new`.
        std::ffi::CString::new(self.0.as_bytes()).unwrap_or_default()
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for SegmentName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert_eq!(SegmentName::new(""), Err(InvalidName::Empty));
        assert_eq!(SegmentName::new("/"), Err(InvalidName::Empty));
        assert_eq!(SegmentName::new("/a/b"), Err(InvalidName::InteriorSlash));
        assert_eq!(SegmentName::new("//a"), Err(InvalidName::InteriorSlash));
        assert_eq!(SegmentName::new("a\0b"), Err(InvalidName::Nul));
        assert_eq!(SegmentName::new(".."), Err(InvalidName::DotName));
        assert_eq!(
            SegmentName::new(&"x".repeat(256)),
            Err(InvalidName::TooLong { len: 256 })
        );
        assert!(SegmentName::new(&"x".repeat(255)).is_ok());
        assert_eq!(SegmentName::new("a").unwrap().body(), "a");
    }
}
