//! `cnisim compare` and the compare half of `cnisim merge`: run (or join), render, write the
//! output directory atomically.

use std::path::{Path, PathBuf};

use crate::compare::{self, CompareResult};
use crate::error::Error;
use crate::output::{check_target, write_dir_atomically, Named, OutputFile};
use crate::{report, trace};

use super::{load, out_path, Choice};

/// `cnisim compare`: every combination of the scenario (or one shard of them). The default
/// output directory is `reports/<scenario>-compare` (`...-compare-shard-I-of-N` for a shard).
pub fn compare(
    path: &Path,
    out: Option<PathBuf>,
    opts: &compare::Options,
) -> Result<(PathBuf, CompareResult), Error> {
    // The scenario's name gives the default directory, checked before any combination runs.
    let scenario_name = load(path, None, Choice::default())?.name;
    let name = match opts.shard {
        None => format!("{scenario_name}-compare"),
        Some(s) => format!("{scenario_name}-compare-shard-{}-of-{}", s.index, s.count),
    };
    let (out_dir, named) = out_path(out, &name);
    check_target(&out_dir, named)?;
    let result = compare::run(path, opts, trace::overhead_probe)?;
    write(&out_dir, named, &result)?;
    Ok((out_dir, result))
}

/// Whether `dir` holds a shard of a comparison (its `compare.json`) rather than of a sweep.
pub fn is_compare_dir(dir: &Path) -> bool {
    dir.join("compare.json").is_file()
}

/// `cnisim merge` of compare shards: the whole comparison's outputs, by default in
/// `reports/<scenario>-compare`.
pub fn merge_compare(out: Option<PathBuf>, shards: &[PathBuf]) -> Result<(PathBuf, CompareResult), Error> {
    let result = compare::merge(shards)?;
    let (out_dir, named) = out_path(out, &format!("{}-compare", result.scenario.name));
    check_target(&out_dir, named)?;
    write(&out_dir, named, &result)?;
    Ok((out_dir, result))
}

fn write(out_dir: &Path, named: Named, result: &CompareResult) -> Result<(), Error> {
    let mut files = report::render_compare(result)
        .map_err(|e| Error::Invariant(format!("rendering the compare report: {e}")))?;
    files.push(OutputFile::new("compare.json", result.to_json()));
    write_dir_atomically(out_dir, named, &files)
}
