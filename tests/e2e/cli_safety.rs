//! The binary on hostile input: it never replaces or moves a user's files, never runs away,
//! and refuses bad input with exit 2, a position and a fix, writing nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{repo, scratch};

fn cnisim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cnisim")).args(args).output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file and directory under `dir` (hidden ones included) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut all = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                all.insert(p.clone(), None);
                stack.push(p);
            } else {
                all.insert(p.clone(), Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    all
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A one-point sweep (10 Services, iptables), quick to run.
fn tiny_sweep(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo("scenarios/rule-scaling.ron")).unwrap();
    let start = text.find("sweep: (").unwrap();
    let text = format!(
        "{}sweep: (parameter: \"services\", values: [10], proxies: [\"iptables\"]),\n)\n",
        &text[..start]
    )
    .replace("duration: \"300ms\"", "duration: \"150ms\"");
    let path = dir.join("sweep.ron");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn out_never_replaces_a_users_directory_or_file() {
    let root = scratch("safety-out");
    let qs = repo("scenarios/quickstart.ron");
    let sweep = tiny_sweep(&root);
    // A user's directory with their files, and a user's file.
    let mine = root.join("mine");
    std::fs::create_dir_all(mine.join("sub")).unwrap();
    std::fs::write(mine.join("thesis.tex"), "years of work").unwrap();
    std::fs::write(mine.join("sub/data.csv"), "1,2,3").unwrap();
    std::fs::write(mine.join(".hidden"), "x").unwrap();
    let file = root.join("f");
    std::fs::write(&file, "a user's file").unwrap();
    let before = snapshot(&root);
    let refusals: [(Vec<&str>, &Path, &str); 6] = [
        (
            vec!["run", p(&qs), "--out", p(&mine)],
            &mine,
            "exists and is not a cnisim output; pick a new directory or remove it yourself",
        ),
        (
            vec!["run", p(&qs), "--out", p(&file)],
            &file,
            "exists and is a file, not a cnisim output directory; nothing was written",
        ),
        (vec!["sweep", p(&sweep), "--quiet", "--out", p(&mine)], &mine, "exists and is not a cnisim output"),
        (vec!["sweep", p(&sweep), "--quiet", "--out", p(&file)], &file, "exists and is a file"),
        (
            vec!["run", p(&qs), "--pcap", "*", "--out", p(&mine)],
            &mine,
            "pick a new directory or remove it yourself",
        ),
        (vec!["run", p(&qs), "--out", p(&file)], &file, "pick a new directory or remove it yourself"),
    ];
    for (args, target, want) in refusals {
        let o = cnisim(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(&format!("error: --out {} {want}", target.display())), "{args:?}: {e}");
        assert!(o.stdout.is_empty(), "{args:?} printed a result");
        assert_eq!(snapshot(&root), before, "{args:?} touched the files");
    }
    // merge: first a real shard, then merge into the user's directory and file.
    let shard = root.join("shard");
    let o = cnisim(&["sweep", p(&sweep), "--quiet", "--shard", "1/1", "--out", p(&shard)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = snapshot(&root);
    for target in [&mine, &file] {
        let o = cnisim(&["merge", "--out", p(target), p(&shard)]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("is not a cnisim output"), "{}", stderr(&o));
        assert_eq!(snapshot(&root), before);
    }
}

#[test]
fn out_replaces_what_cnisim_wrote() {
    let root = scratch("safety-own");
    let qs = repo("scenarios/quickstart.ron");
    let out = root.join("out");
    for _ in 0..2 {
        let o = cnisim(&["run", p(&qs), "--out", p(&out)]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let marker = std::fs::read_to_string(out.join(".cnisim-output")).unwrap();
    assert!(marker.starts_with("cnisim-output 1\n"), "{marker}");
    // An empty directory holds nothing to lose.
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(cnisim(&["run", p(&qs), "--out", p(&empty)]).status.success());
    assert!(empty.join("report.html").is_file());
    // A report from a cnisim before the marker (the committed example has none) is replaced.
    let legacy = root.join("legacy");
    std::fs::create_dir_all(&legacy).unwrap();
    for e in std::fs::read_dir(repo("reports/example")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), legacy.join(e.file_name())).unwrap();
    }
    std::fs::remove_file(legacy.join(".cnisim-output")).ok();
    let o = cnisim(&["run", p(&qs), "--out", p(&legacy)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(legacy.join(".cnisim-output").is_file());
    // Nothing else left beside them.
    let mut names: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["empty", "legacy", "out"]);
}

#[test]
fn merge_of_a_missing_shard_is_a_usage_error() {
    let root = scratch("safety-merge");
    let out = root.join("x");
    let o = cnisim(&["merge", "--out", p(&out), "/nonexistent"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("error: /nonexistent: no such directory; give the output directories of `cnisim sweep --shard I/N`"),
        "{}",
        stderr(&o)
    );
    let o = cnisim(&["merge", "--out", p(&out), p(&root)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("holds no sweep.json"), "{}", stderr(&o));
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
}
