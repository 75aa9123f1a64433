//! The `compare:` section: the CNIs and proxy modes `cnisim compare` runs a scenario under.
//!
//! One parser, [`pick`], reads both the section's lists and the command line's `--cni a,b|all`
//! and `--proxy p,q|all`, so the two accept exactly the same words. A problem in the file is
//! reported at the list element that causes it.

use super::locate::{self, Seg};
use crate::cluster::{Cni, CompareSpec, ProxyMode};
use crate::error::ScenarioError;

/// Reads a list of identifiers: each one of `all`'s (by `id`), or the single word `all` for
/// every one of them, in `all`'s order. `what` names the kind in messages ("CNI", "proxy
/// mode"). On error: the index of the offending item and what to do about it.
pub fn pick<T: Copy + PartialEq>(
    items: &[&str],
    all: &[T],
    id: fn(T) -> &'static str,
    what: &str,
) -> Result<Vec<T>, (usize, String)> {
    if items.len() == 1 && items[0] == "all" {
        return Ok(all.to_vec());
    }
    let mut out: Vec<T> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if *item == "all" {
            return Err((i, format!("'all' stands for every {what}; give it alone, or list {what}s")));
        }
        let Some(t) = all.iter().copied().find(|&t| id(t) == *item) else {
            let known = all.iter().map(|&t| id(t)).collect::<Vec<_>>().join(", ");
            return Err((i, format!("unknown {what} '{item}', expected 'all' or one of: {known}")));
        };
        if out.contains(&t) {
            return Err((i, format!("{what} '{item}' is listed twice; keep one")));
        }
        out.push(t);
    }
    Ok(out)
}

/// Checks a `compare:` section. `text` and `path` locate errors.
pub(super) fn items(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Checks a `compare:` section. `text` and `path` locate errors.
pub(super) fn resolve(
    text: &str,
    path: &str,
    spec: &super::CompareSpec,
) -> Result<CompareSpec, ScenarioError> {
    let err = |at: &[Seg], message: String| {
        let (line, col) = locate::find(text, at);
        ScenarioError { path: path.to_string(), line, col, message }
    };
    if spec.cnis.is_empty() {
        return Err(err(
            &[Seg::Key("compare"), Seg::Key("cnis")],
            "cnis is empty; list the CNIs to compare, e.g. [\"flannel-vxlan\", \"calico-bgp\"], or [\"all\"]"
                .into(),
        ));
    }
    let cnis = pick(&items(&spec.cnis), &Cni::ALL, Cni::id, "CNI")
        .map_err(|(i, m)| err(&[Seg::Key("compare"), Seg::Key("cnis"), Seg::Idx(i)], m))?;
    let proxies = pick(&items(&spec.proxies), &ProxyMode::ALL, ProxyMode::id, "proxy mode")
        .map_err(|(i, m)| err(&[Seg::Key("compare"), Seg::Key("proxies"), Seg::Idx(i)], m))?;
    Ok(CompareSpec { cnis, proxies })
}

#[cfg(test)]
mod tests {
    use crate::cluster::{Cni, ProxyMode};
    use crate::scenario::load_str;

    const BASE: &str = r#"Scenario(
    name: "c",
    duration: "10ms",
    cni: "flannel-vxlan",
    nodes: Count(count: 2),
    pods_per_node: 1,
    compare: COMPARE,
)
"#;

    fn load(compare: &str) -> Result<crate::cluster::Cluster, String> {
        load_str(&BASE.replace("COMPARE", compare), "c.ron").map_err(|e| e.to_string())
    }

    #[test]
    fn lists_resolve_in_the_files_order() {
        let c = load(r#"(cnis: ["calico-bgp", "flannel-udp"], proxies: ["ipvs", "iptables"])"#).unwrap();
        let spec = c.compare.unwrap();
        assert_eq!(spec.cnis, [Cni::CalicoBgp, Cni::FlannelUdp]);
        assert_eq!(spec.proxies, [ProxyMode::Ipvs(crate::cluster::IpvsScheduler::Rr), ProxyMode::Iptables]);
        let all = load(r#"(cnis: ["all"], proxies: ["all"])"#).unwrap().compare.unwrap();
        assert_eq!(all.cnis, Cni::ALL);
        assert_eq!(all.proxies, ProxyMode::ALL);
        assert!(load(r#"(cnis: ["macvlan"])"#).unwrap().compare.unwrap().proxies.is_empty());
    }

    #[test]
    fn every_problem_is_located_at_its_element() {
        let cases = [
            (r#"(cnis: [])"#, "c.ron:7:21: cnis is empty"),
            (
                r#"(cnis: ["calico-bgp", "calico"])"#,
                "c.ron:7:36: unknown CNI 'calico', expected 'all' or one of",
            ),
            (r#"(cnis: ["macvlan", "macvlan"])"#, "c.ron:7:33: CNI 'macvlan' is listed twice; keep one"),
            (r#"(cnis: ["macvlan", "all"])"#, "c.ron:7:33: 'all' stands for every CNI; give it alone"),
            (r#"(cnis: ["all"], proxies: ["ipvs", "kube"])"#, "c.ron:7:48: unknown proxy mode 'kube'"),
            (r#"(cnis: ["all"], proxys: ["ipvs"])"#, "c.ron:7:30: unknown field 'proxys' in compare"),
            (r#"(cni: ["all"])"#, "unknown field 'cni'"),
        ];
        for (compare, want) in cases {
            let e = load(compare).err().unwrap_or_default();
            assert!(e.contains(want), "{compare}: {e:?} lacks {want:?}");
        }
    }
}
