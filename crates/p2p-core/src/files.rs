//! Reading files that a user or another process controls: only regular
//! files, and only up to a size bound.
//!
//! A FIFO given as the cache file or a topology file would block the read
//! forever, and `/dev/zero` would fill memory; both are refused before they
//! are opened for reading.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// The text of the regular file at `path`, if it is at most `limit` bytes.
///
/// Errors are [`Error::Io`] with `action` naming what was being read: the
/// file's own error (`NotFound` included, for callers that treat a missing
/// file as empty), or `InvalidInput` for a file that is not regular or is
/// larger than `limit`, or `InvalidData` for text that is not UTF-8.
pub fn read_regular_file(path: &Path, limit: u64, action: &'static str) -> Result<String> {
    let io = |source: std::io::Error| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let refuse = |message: String| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            message,
        ))
    };
    // `metadata` follows symbolic links, so a link to a regular file is fine
    // and a link to a FIFO is refused, before `open` could block on it.
    let before = std::fs::metadata(path).map_err(io)?;
    if !before.is_file() {
        return Err(refuse(not_regular(&before)));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    // The path may have been replaced between the two calls: check what was opened.
    let opened = file.metadata().map_err(io)?;
    if !opened.is_file() {
        return Err(refuse(not_regular(&opened)));
    }
    if opened.len() > limit {
        return Err(refuse(format!(
            "{} bytes is more than the {limit} bytes accepted",
            opened.len()
        )));
    }
    let mut bytes = Vec::new();
    // `take` bounds a file that grows while it is read.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(refuse(format!(
            "grew past the {limit} bytes accepted while being read"
        )));
    }
    String::from_utf8(bytes).map_err(|err| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text ({err})"),
        ))
    })
}

fn not_regular(metadata: &std::fs::Metadata) -> String {
    let kind = if metadata.is_dir() {
        "a folder"
    } else {
        "a FIFO, socket or device"
    };
    format!("not a regular file ({kind})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_folders_and_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_regular_file(dir.path(), 100, "reading").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        #[cfg(unix)]
        {
            let err = read_regular_file(Path::new("/dev/zero"), 100, "reading").unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 101]).unwrap();
        let err = read_regular_file(&big, 100, "reading").unwrap_err();
        assert!(err.to_string().contains("more than the 100 bytes"), "{err}");
        std::fs::write(&big, b"fine").unwrap();
        assert_eq!(read_regular_file(&big, 100, "reading").unwrap(), "fine");
        let missing = read_regular_file(&dir.path().join("none"), 100, "reading").unwrap_err();
        assert!(
            matches!(&missing, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
    }
}
