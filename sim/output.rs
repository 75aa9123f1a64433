//! Writing a run's output directory atomically, and never over a user's files.
//!
//! All files are written into a fresh temporary directory beside the target, which then
//! replaces the target by rename. A run that fails before that leaves no half report, and an
//! earlier report at the same path stays intact until the new one is complete.
//!
//! Only a directory cnisim wrote is ever replaced: every output directory holds a small
//! [`MARKER`] file naming the output format, and [`check_target`] refuses any other existing
//! path (a file, a symbolic link, a directory of someone else's files) before anything is
//! written. A directory written by a cnisim from before the marker is recognised by its file
//! names ([`LEGACY_NAMES`]).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The marker file every output directory holds.
pub const MARKER: &str = ".cnisim-output";

/// Version of the output layout, recorded in the marker.
pub const FORMAT_VERSION: u32 = 1;

/// The first line of [`MARKER`]: `cnisim-output <format version>`.
const MARKER_PREFIX: &str = "cnisim-output ";

/// Every name the output directory of a cnisim from before the marker could hold (a run's
/// report, or a sweep's; `pcap/` holds `.pcap` files). Frozen: newer directories carry the
/// marker, so this list never grows.
pub const LEGACY_NAMES: &[&str] = &[
    "report.html",
    "summary.json",
    "flows.csv",
    "latency_cdf.png",
    "latency_cdf.csv",
    "latency_percentiles.png",
    "latency_percentiles.csv",
    "cpu.png",
    "cpu.csv",
    "drops.png",
    "drops.csv",
    "overhead.png",
    "overhead.csv",
    "sweep.json",
    "rule_scaling.csv",
    "rules_installed.png",
    "rules_installed.csv",
    "match_steps.png",
    "match_steps.csv",
    "first_packet_latency.png",
    "first_packet_latency.csv",
    "cpu_per_1000_connections.png",
    "cpu_per_1000_connections.csv",
    "sync_time.png",
    "sync_time.csv",
    "rules_memory.png",
    "rules_memory.csv",
];

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

/// Where an output directory's path came from, for the words of a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Named {
    /// `--out DIR`.
    ByFlag,
    /// The default, `reports/<name>`.
    ByDefault,
}

/// The marker's text.
pub fn marker_text() -> String {
    format!(
        "{MARKER_PREFIX}{FORMAT_VERSION}\n\
         This directory was written by cnisim; cnisim replaces a directory only if it holds this file.\n"
    )
}

/// Checks that `out` may be replaced: it does not exist, or it is an empty directory, or a
/// directory cnisim wrote (it holds [`MARKER`], or only [`LEGACY_NAMES`] with `report.html`
/// and `summary.json` or `sweep.json` among them). Anything else is refused with a usage
/// error (exit 2) and left untouched.
pub fn check_target(out: &Path, named: Named) -> Result<(), Error> {
    let shown = match named {
        Named::ByFlag => format!("--out {}", out.display()),
        Named::ByDefault => format!("the output directory {}", out.display()),
    };
    let fix = match named {
        Named::ByFlag => "pick a new directory or remove it yourself",
        Named::ByDefault => "pick a new directory with --out DIR or remove it yourself",
    };
    if out.file_name().is_none() {
        return Err(Error::Usage(format!(
            "{shown} names no directory to write (it ends in '..' or is a root); give a path such as reports/run-1"
        )));
    }
    let meta = match fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(out, e)),
    };
    if meta.file_type().is_symlink() {
        return Err(Error::Usage(format!(
            "{shown} is a symbolic link, not a cnisim output; nothing was written: give the directory it points to, pick a new directory, or remove the link yourself"
        )));
    }
    if !meta.is_dir() {
        return Err(Error::Usage(format!(
            "{shown} exists and is a file, not a cnisim output directory; nothing was written: {fix}"
        )));
    }
    if is_cnisim_output(out).map_err(|e| Error::io(out, e))? {
        Ok(())
    } else {
        Err(Error::Usage(format!("{shown} exists and is not a cnisim output; {fix}")))
    }
}

/// Whether directory `dir` is empty or was written by cnisim.
fn is_cnisim_output(dir: &Path) -> std::io::Result<bool> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        names.push((e.file_name().to_string_lossy().into_owned(), e.file_type()?));
    }
    if names.is_empty() {
        return Ok(true);
    }
    if let Some((_, t)) = names.iter().find(|(n, _)| n == MARKER) {
        if t.is_file() {
            let text = fs::read(dir.join(MARKER))?;
            return Ok(text.starts_with(MARKER_PREFIX.as_bytes()));
        }
        return Ok(false);
    }
    // Written before the marker: only names cnisim writes, and a report among them.
    let has = |n: &str| names.iter().any(|(m, t)| m == n && t.is_file());
    if !has("report.html") || !(has("summary.json") || has("sweep.json")) {
        return Ok(false);
    }
    for (n, t) in &names {
        let known = if n == "pcap" {
            t.is_dir() && only_pcaps(&dir.join("pcap"))?
        } else {
            t.is_file() && LEGACY_NAMES.contains(&n.as_str())
        };
        if !known {
            return Ok(false);
        }
    }
    Ok(true)
}

fn only_pcaps(dir: &Path) -> std::io::Result<bool> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if !e.file_type()?.is_file() || !e.file_name().to_string_lossy().ends_with(".pcap") {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Replaces directory `out` with exactly `files` and the [`MARKER`], after [`check_target`].
pub fn write_dir_atomically(out: &Path, named: Named, files: &[OutputFile]) -> Result<(), Error> {
    check_target(out, named)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let base = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = parent.join(format!(".{base}.tmp-{}", std::process::id()));
    let old = parent.join(format!(".{base}.old-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let marker = OutputFile::new(MARKER, marker_text());
    let result = write_all(&tmp, files)
        .and_then(|()| write_all(&tmp, std::slice::from_ref(&marker)))
        .and_then(|()| swap_in(&tmp, out, &old));
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

    fn scratch(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("cnisim-output-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        root
    }

    #[test]
    fn replaces_directory_whole() {
        let root = scratch("whole");
        let out = root.join("report");
        let files = [OutputFile::new("a.txt", "one"), OutputFile::new("pcap/x.pcap", "p")];
        write_dir_atomically(&out, Named::ByFlag, &files).unwrap();
        assert_eq!(fs::read_to_string(out.join("a.txt")).unwrap(), "one");
        assert_eq!(fs::read_to_string(out.join(MARKER)).unwrap(), marker_text());
        write_dir_atomically(&out, Named::ByFlag, &[OutputFile::new("b.txt", "two")]).unwrap();
        assert!(!out.join("a.txt").exists(), "old files do not linger");
        assert_eq!(fs::read_to_string(out.join("b.txt")).unwrap(), "two");
        let leftovers: Vec<_> = fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn refuses_what_cnisim_did_not_write() {
        let root = scratch("refuse");
        let files = [OutputFile::new("report.html", "new")];
        // A user's directory, a file, a link: refused, untouched.
        let user = root.join("mine");
        fs::create_dir_all(&user).unwrap();
        fs::write(user.join("notes.txt"), "keep").unwrap();
        let file = root.join("f");
        fs::write(&file, "keep").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&user, root.join("link")).unwrap();
        for (p, want) in [
            (&user, "exists and is not a cnisim output; pick a new directory or remove it yourself"),
            (&file, "exists and is a file, not a cnisim output directory"),
        ] {
            let e = write_dir_atomically(p, Named::ByFlag, &files).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().starts_with(&format!("--out {}", p.display())), "{e}");
            assert!(e.to_string().contains(want), "{e}");
        }
        #[cfg(unix)]
        {
            let e = write_dir_atomically(&root.join("link"), Named::ByFlag, &files).unwrap_err();
            assert!(e.to_string().contains("is a symbolic link"), "{e}");
        }
        let e = write_dir_atomically(&user, Named::ByDefault, &files).unwrap_err();
        assert!(e.to_string().contains("pick a new directory with --out DIR"), "{e}");
        assert_eq!(fs::read_to_string(user.join("notes.txt")).unwrap(), "keep");
        assert_eq!(fs::read_to_string(&file).unwrap(), "keep");
        // A marker with other text is not cnisim's.
        fs::write(user.join(MARKER), "hello").unwrap();
        assert!(check_target(&user, Named::ByFlag).is_err());
        let mut names: Vec<_> = fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names.len(), if cfg!(unix) { 3 } else { 2 }, "{names:?}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn accepts_empty_marked_and_legacy_directories() {
        let root = scratch("accept");
        let empty = root.join("empty");
        fs::create_dir_all(&empty).unwrap();
        check_target(&empty, Named::ByFlag).unwrap();
        check_target(&root.join("new"), Named::ByFlag).unwrap();
        // An earlier cnisim's report: only its file names, report.html and summary.json.
        let legacy = root.join("legacy");
        fs::create_dir_all(legacy.join("pcap")).unwrap();
        for n in ["report.html", "summary.json", "cpu.png", "flows.csv"] {
            fs::write(legacy.join(n), "x").unwrap();
        }
        fs::write(legacy.join("pcap/node-1-eth0.pcap"), "x").unwrap();
        check_target(&legacy, Named::ByDefault).unwrap();
        fs::write(legacy.join("pcap/notes.txt"), "x").unwrap();
        assert!(check_target(&legacy, Named::ByDefault).is_err(), "a foreign file in pcap/");
        fs::remove_file(legacy.join("pcap/notes.txt")).unwrap();
        fs::write(legacy.join("data.csv"), "x").unwrap();
        assert!(check_target(&legacy, Named::ByDefault).is_err(), "a foreign name");
        fs::remove_file(legacy.join("data.csv")).unwrap();
        fs::remove_file(legacy.join("summary.json")).unwrap();
        assert!(check_target(&legacy, Named::ByDefault).is_err(), "no summary.json or sweep.json");
        fs::remove_dir_all(&root).unwrap();
    }
}
