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
        assert!(e.starts_with(&format!("error: --out {} exists and is ", target.display())), "{args:?}: {e}");
        assert!(e.contains(want), "{args:?}: {e}");
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
        assert!(stderr(&o).contains("not a cnisim output"), "{}", stderr(&o));
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
        // stderr is not a terminal: no progress bar.
        assert!(o.stderr.is_empty(), "{}", stderr(&o));
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

#[test]
fn trace_size_is_checked_like_a_scenario_payload() {
    let root = scratch("safety-trace-size");
    let qs = repo("scenarios/quickstart.ron");
    let cases = [
        ("0", "--size 0: a datagram carries at least 1 byte; give --size 1 or more"),
        ("65536", "--size 65536 is more than one UDP datagram holds over IPv4 (65,507 B); give at most --size 65507"),
        ("100000", "--size 100000 is more than one UDP datagram holds over IPv4 (65,507 B); give at most --size 65507"),
        (
            "1473",
            "--size 1473 B + 28 B of IPv4/UDP headers exceeds the MTU 1500 of client pod 'node-1-pod-1'; a pod sends \
             datagrams of at most its MTU; give at most --size 1472",
        ),
    ];
    for (size, want) in cases {
        let o = cnisim(&["trace", p(&qs), "--from", "node-1-pod-1", "--to", "node-1-pod-2", "--size", size]);
        assert_eq!(o.status.code(), Some(2), "--size {size}: {}", stderr(&o));
        assert_eq!(stderr(&o), format!("error: {want}\n"));
        assert!(o.stdout.is_empty());
    }
    // The largest that fits is traced.
    let o = cnisim(&["trace", p(&qs), "--from", "node-1-pod-1", "--to", "node-2-pod-1", "--size", "1472"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // An endpoint's MTU bounds a Service's answer.
    let svc = repo("scenarios/services.ron");
    let o = cnisim(&["trace", p(&svc), "--from", "client-1", "--to", "web", "--size", "9000"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("exceeds the MTU"), "{}", stderr(&o));
    // `--port` is a pod's or an outside host's; a Service has its own, and 0 is no port.
    let o = cnisim(&["trace", p(&svc), "--from", "client-1", "--to", "web", "--port", "80"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: --port is for a pod or an external host; 'web' is a Service"),
        "{}",
        stderr(&o)
    );
    let o = cnisim(&["trace", p(&qs), "--from", "node-1-pod-1", "--to", "node-2-pod-1", "--port", "0"]);
    assert_eq!(
        (o.status.code(), stderr(&o)),
        (Some(2), "error: --port 0 is not a port; give 1 to 65535\n".into())
    );
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
}

#[test]
fn trace_refuses_what_run_refuses() {
    let svc = repo("scenarios/services.ron");
    let o = cnisim(&["trace", p(&svc), "--from", "internet", "--to", "web"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: a host outside the cluster reaches it through a NodePort (pod and cluster IPs are not routed to it); \
         trace a NodePort with --to SERVICE@NODE\n"
    );
    // The same pair in a scenario: `run` says the same.
    let dir = scratch("safety-trace-ext");
    let text = std::fs::read_to_string(&svc).unwrap();
    let start = text.find("workloads: [").unwrap();
    let text = format!(
        "{}workloads: [(name: \"ext\", kind: UdpCbr(rate: \"1Mbit\", payload: 100), from: External(\"internet\"), to: Service(\"web\"))],\n{}",
        &text[..start],
        &text[text[start..].find("\n    ],").map(|i| start + i + 7).unwrap()..]
    );
    let file = dir.join("ext.ron");
    std::fs::write(&file, text).unwrap();
    let o = cnisim(&["validate", p(&file)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("a host outside the cluster reaches it through a NodePort"),
        "{}",
        stderr(&o)
    );
}

/// The result line and the last hop read one clock.
#[test]
fn trace_result_is_its_last_hop() {
    let qs = repo("scenarios/quickstart.ron");
    let svc = repo("scenarios/services.ron");
    for (file, from, to) in [
        (&qs, "node-1-pod-1", "node-1-pod-2"),
        (&qs, "node-1-pod-1", "node-2-pod-1"),
        (&svc, "client-1", "web"),
    ] {
        let o = cnisim(&["trace", p(file), "--from", from, "--to", to]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        let result = lines.last().unwrap();
        let last = lines[lines.len() - 2];
        let time = last.split_whitespace().next().unwrap();
        assert!(last.contains(" recvmsg "), "{out}");
        // One way: the same clock to the nanosecond. A round trip counts from the request's
        // send call, which the first hop records a few ns into the chain.
        let ns = |s: &str| -> f64 { s.trim_end_matches("us").parse::<f64>().unwrap() * 1e3 };
        let result_time = result.split_whitespace().nth(3).unwrap();
        if result.starts_with("result: delivered") {
            assert_eq!(result_time, time, "{from} -> {to}: {result:?} against the last hop {last:?}");
        } else {
            assert!(result.starts_with("result: answered after"), "{result}");
            assert!((ns(result_time) - ns(time)).abs() <= 50.0, "{result:?} against {last:?}");
        }
    }
}

#[test]
fn describe_refuses_a_time_past_the_end() {
    let qs = repo("scenarios/quickstart.ron");
    let o = cnisim(&["describe", p(&qs), "--node", "node-1", "--at", "5s"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o).contains(&format!(
            "error: --at 5s is past the end of {} at 1s; give a time from 0s to 1s",
            qs.display()
        )),
        "{}",
        stderr(&o)
    );
    let o = cnisim(&["describe", p(&qs), "--node", "node-1", "--at", "1s"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn an_empty_shard_says_so_and_still_merges() {
    let root = scratch("safety-shard");
    let sweep = tiny_sweep(&root);
    let (one, two) = (root.join("s1"), root.join("s2"));
    let o = cnisim(&["sweep", p(&sweep), "--quiet", "--shard", "2/2", "--out", p(&two)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "note: shard 2/2 ran no point: the sweep has 1 points, fewer than 2 shards; its directory is written anyway"
        ),
        "{}",
        stderr(&o)
    );
    assert!(two.join("sweep.json").is_file());
    let o = cnisim(&["sweep", p(&sweep), "--quiet", "--shard", "1/2", "--out", p(&one)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let o = cnisim(&["merge", "--out", p(&root.join("all")), p(&one), p(&two)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 points"));
}

/// Quickstart whose same-node sender sends 64-byte datagrams at `rate` (10 Gbit/s: far faster
/// than its core serves them), for `duration`, a veth hop costing `veth`.
fn overloaded(dir: &Path, rate: &str, duration: &str, veth: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo("scenarios/quickstart.ron"))
        .unwrap()
        .replacen(
            "kind: UdpCbr(rate: \"100Mbit\", payload: 1200)",
            &format!("kind: UdpCbr(rate: \"{rate}\", payload: 64)"),
            1,
        )
        .replace("duration: \"1s\"", &format!("duration: \"{duration}\""))
        .replace("start: \"100ms\"", "start: \"1ms\"")
        .replace("veth_xmit: \"300ns\",", &format!("veth_xmit: \"{veth}\","));
    let file = dir.join("overload.ron");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn cpu_per_datagram_counts_only_work_served() {
    let dir = scratch("safety-cpu");
    let file = overloaded(&dir, "10Gbit", "20ms", "300ns");
    let out = dir.join("out");
    let o = cnisim(&["run", p(&file), "--out", p(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let t = &s["totals"];
    let per = t["cpu_ns_per_datagram"].as_f64().unwrap();
    let delivered = t["delivered"].as_f64().unwrap();
    // The sender is overloaded: it blocks on its own core instead of queueing without bound.
    assert!(t["in_flight"].as_u64().unwrap() < 1_000, "{t}");
    assert!(s["flows"][0]["offered"].as_u64().unwrap() > 10 * s["flows"][0]["sent"].as_u64().unwrap(), "{t}");
    // Every core serves at most the run's 20 ms; the queued work (seconds of it) is not counted.
    let cores: f64 = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["cpu_busy_ns"].as_array().unwrap().len() as f64)
        .sum();
    assert!(per * delivered <= cores * 20e6, "{per} ns x {delivered}");
    assert!((1_000.0..20_000.0).contains(&per), "cpu_ns_per_datagram {per}");
}

#[test]
fn a_scenario_too_big_for_the_memory_limit_is_refused_before_it_is_built() {
    let dir = scratch("safety-estimate");
    let file = overloaded(&dir, "10Gbit", "1s", "300ns");
    let out = dir.join("out");
    let before = snapshot(&dir);
    let o = cnisim(&["run", p(&file), "--out", p(&out), "--max-memory", "2MiB", "--pcap", "*"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.starts_with(&format!("error: {} needs about ", file.display())), "{e}");
    assert!(e.contains("pcap captures of "), "{e}");
    assert!(e.contains("more than the memory limit of 2.0 MiB (--max-memory"), "{e}");
    assert!(e.contains("nothing was built or written"), "{e}");
    assert_eq!(snapshot(&dir), before);
    // validate says what it needs; describe and trace apply the same limit to the world.
    let o = cnisim(&["validate", p(&file)]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("memory: about "),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = cnisim(&["describe", p(&file), "--node", "node-1", "--max-memory", "1MiB"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = cnisim(&["run", p(&file), "--max-memory", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--max-memory 0 leaves no memory"), "{}", stderr(&o));
}

/// Queues the scenario makes deeper than any estimate assumes (a 4 GiB port queue, a 2 GB send
/// buffer and qdisc in front of a 10 Mbit/s NIC) fill during the run: the cap stops it with
/// exit 1, a message saying what grew and where, nothing written.
#[test]
fn a_run_outgrowing_the_memory_limit_stops_with_a_clear_error() {
    let dir = scratch("safety-cap");
    let file = dir.join("deep-queues.ron");
    std::fs::write(
        &file,
        r#"Scenario(name: "deep-queues", seed: 1, duration: "1s", cni: "flannel-host-gw",
    nodes: Count(count: 2, cores: 4, nic: "10Mbit", txqueuelen: 2000000000,
                 sysctls: {"net.core.wmem_default": 2000000000}),
    pods_per_node: 1,
    underlay: (queue: "4GiB"),
    workloads: [(name: "flood", kind: UdpStream(payload: 1200), from: Pod("node-1-pod-1"), to: Pod("node-2-pod-1"))],
)"#,
    )
    .unwrap();
    // The estimate sees nothing wrong with it.
    let o = cnisim(&["validate", p(&file)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.join("out");
    let before = snapshot(&dir);
    let start = std::time::Instant::now();
    let o = cnisim(&["run", p(&file), "--out", p(&out), "--max-memory", "100MiB"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.starts_with("error: out of memory: the simulator holds "), "{e}");
    assert!(e.contains("over the limit of 100 MiB (--max-memory"), "{e}");
    assert!(e.contains("datagrams sent still in flight"), "{e}");
    assert!(e.contains("queues as deep as the scenario sets them"), "{e}");
    assert!(e.contains("stopped, nothing was written"), "{e}");
    assert!(o.stdout.is_empty());
    assert_eq!(snapshot(&dir), before);
    assert!(start.elapsed().as_secs() < 120);
}
