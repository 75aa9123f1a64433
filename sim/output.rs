//! Writing a run's output directory atomically.
//!
//! All files are written into a fresh temporary directory beside the target, which then
//! replaces the target by rename. A run that fails before that leaves no half report, and an
//! earlier report at the same path stays intact until the new one is complete.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// One file of a run's output, by path relative to the output directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl OutputFile {
    pub fn new(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        OutputFile { name: name.into(), bytes: bytes.into() }
    }
}

/// Replaces directory `out` with exactly `files`.
pub fn write_dir_atomically(out: &Path, files: &[OutputFile]) -> Result<(), Error> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let base = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = parent.join(format!(".{base}.tmp-{}", std::process::id()));
    let old = parent.join(format!(".{base}.old-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let result = write_all(&tmp, files).and_then(|()| swap_in(&tmp, out, &old));
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn write_all(dir: &Path, files: &[OutputFile]) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for f in files {
        let path = dir.join(&f.name);
        if let Some(p) = path.parent() {
            fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
        }
        fs::write(&path, &f.bytes).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

fn swap_in(tmp: &Path, out: &Path, old: &Path) -> Result<(), Error> {
    if out.exists() {
        fs::rename(out, old).map_err(|e| Error::io(out, e))?;
        if let Err(e) = fs::rename(tmp, out) {
            let _ = fs::rename(old, out); // put the earlier report back
            return Err(Error::io(out, e));
        }
        fs::remove_dir_all(old).map_err(|e| Error::io(old, e))
    } else {
        fs::rename(tmp, out).map_err(|e| Error::io(out, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_directory_whole() {
        let root = std::env::temp_dir().join(format!("cnisim-output-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let out = root.join("report");
        write_dir_atomically(&out, &[OutputFile::new("a.txt", "one"), OutputFile::new("pcap/x.pcap", "p")])
            .unwrap();
        assert_eq!(fs::read_to_string(out.join("a.txt")).unwrap(), "one");
        write_dir_atomically(&out, &[OutputFile::new("b.txt", "two")]).unwrap();
        assert!(!out.join("a.txt").exists(), "old files do not linger");
        assert_eq!(fs::read_to_string(out.join("b.txt")).unwrap(), "two");
        let leftovers: Vec<_> = fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        fs::remove_dir_all(&root).unwrap();
    }
}
