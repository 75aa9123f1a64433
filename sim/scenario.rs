//! Scenario files: RON text in, a validated [`Cluster`] out.
//!
//! Two steps, as in Shadow's config: [`Scenario`] is a serde mirror of the file (format only:
//! every struct denies unknown fields, units and CIDRs are parsed by their own types), then
//! `resolve` checks what the fields mean together (address plan, names, capacities, selectors,
//! sizes against MTUs) and assigns addresses. Every error is located at `file:line:col` and says
//! how to fix the file. `docs/scenario.md` is the user's reference for the format.
//!
//! Not handled here: building devices and routes (`world`), or anything that needs a CNI's
//! data path; a scenario is resolved the same way whichever CNI it names.

mod locate;
mod resolve;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::addr::Ipv4Net;
use crate::cluster::Cluster;
use crate::cost::CostProfile;
use crate::error::{Error, ScenarioError};
use crate::time::Duration;
use crate::units::{Bandwidth, ByteSize};

/// Reads and resolves a scenario file.
pub fn load(path: &Path) -> Result<Cluster, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(load_str(&text, &path.display().to_string())?)
}

/// Parses and resolves scenario text; `path_for_messages` is the file name errors start with.
pub fn load_str(text: &str, path_for_messages: &str) -> Result<Cluster, ScenarioError> {
    let scenario: Scenario =
        ron::Options::default().from_str(text).map_err(|e| ron_error(&e, text, path_for_messages))?;
    resolve::resolve(scenario, &resolve::Locator { text, path: path_for_messages })
}

/// The whole file: `Scenario( ... )`. See `docs/scenario.md` for every field.
#[derive(Debug, Deserialize)]
#[serde(rename = "Scenario", deny_unknown_fields)]
pub struct Scenario {
    /// Names the output directory: lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// Shown at the top of the report.
    #[serde(default)]
    pub description: String,
    /// Seed of the run's one random generator (default 1).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated time to run: more than zero, at most one hour.
    pub duration: Duration,
    /// A CNI identifier such as `"flannel-host-gw"`.
    pub cni: String,
    #[serde(default)]
    pub network: Network,
    pub nodes: Nodes,
    /// Pods generated on every node, named `<node>-pod-<i>` (i from 1), labelled `node: <node>`.
    #[serde(default)]
    pub pods_per_node: u32,
    /// Extra named pods, placed after the generated ones.
    #[serde(default)]
    pub pods: Vec<Pod>,
    #[serde(default)]
    pub underlay: Underlay,
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Overrides of the default cost profile; fields left out keep their defaults.
    #[serde(default)]
    pub costs: CostProfile,
}

/// The address plan: `network: (node_cidr: "192.168.0.0/24", ...)`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// Node (underlay) addresses: node i gets host address i+1.
    pub node_cidr: Ipv4Net,
    /// Cut into one subnet of `node_subnet_prefix` per node.
    pub pod_cidr: Ipv4Net,
    /// Reserved for Services; must not overlap the other two.
    pub service_cidr: Ipv4Net,
    pub node_subnet_prefix: u8,
}

impl Default for Network {
    fn default() -> Self {
        let net = |a, b, c, d, p| Ipv4Net::new(Ipv4Addr::new(a, b, c, d), p).expect("valid default CIDR");
        Network {
            node_cidr: net(192, 168, 0, 0, 24),
            pod_cidr: net(10, 244, 0, 0, 16),
            service_cidr: net(10, 96, 0, 0, 12),
            node_subnet_prefix: 24,
        }
    }
}

/// The nodes, either counted (`Count(count: 3)`) or listed (`List([(name: "a"), ...])`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Nodes {
    /// `count` identical nodes named `<name_prefix>1` .. `<name_prefix><count>`.
    Count {
        count: u32,
        #[serde(default = "default_name_prefix")]
        name_prefix: String,
        #[serde(default = "default_cores")]
        cores: u32,
        #[serde(default = "default_bandwidth")]
        nic: Bandwidth,
        #[serde(default = "default_mtu")]
        mtu: u32,
    },
    List(Vec<Node>),
}

/// One listed node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    /// CPU cores, 1..=1024 (default 4).
    #[serde(default = "default_cores")]
    pub cores: u32,
    /// NIC rate (default `"10Gbit"`).
    #[serde(default = "default_bandwidth")]
    pub nic: Bandwidth,
    /// MTU of the node's `eth0`, 68..=65535 (default 1500); pods on the node inherit it.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
}

/// One named pod: `(name: "client", node: "node-1", labels: {"app": "client"})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    pub name: String,
    pub node: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The physical network between the nodes (one L2 switch).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Underlay {
    /// Rate of each switch port.
    pub bandwidth: Bandwidth,
    /// Propagation delay of each cable.
    pub propagation: Duration,
    /// Largest L3 packet the switch forwards, 68..=65535.
    pub mtu: u32,
    /// Drop-tail queue per egress port; more than zero.
    pub queue: ByteSize,
    /// Loss probability per frame per cable, in [0, 1).
    pub loss: f64,
}

impl Default for Underlay {
    fn default() -> Self {
        Underlay {
            bandwidth: default_bandwidth(),
            propagation: Duration::from_micros(5),
            mtu: default_mtu(),
            queue: ByteSize(512 * 1024),
            loss: 0.0,
        }
    }
}

/// A traffic generator: one flow per (client in `from`, server in `to`) pair, client != server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    pub kind: WorkloadKind,
    pub from: Selector,
    pub to: Selector,
    /// Destination UDP port on the server (default 5201).
    #[serde(default = "default_port")]
    pub port: u16,
    /// When the generator starts (default `"0s"`).
    #[serde(default)]
    pub start: Duration,
    /// How long it runs (default: to the end of the scenario).
    #[serde(default, deserialize_with = "present")]
    pub duration: Option<Duration>,
}

/// What a workload sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum WorkloadKind {
    /// Constant bit rate UDP: `payload` bytes per datagram at `rate`.
    UdpCbr {
        rate: Bandwidth,
        #[serde(default = "default_payload")]
        payload: u32,
    },
    /// Closed-loop UDP request/response.
    UdpRr {
        request: u32,
        response: u32,
        #[serde(default)]
        think: Duration,
        #[serde(default = "default_timeout")]
        timeout: Duration,
    },
}

/// Which pods a workload's end is: one by name, all on a node, or all with some labels.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Selector {
    Pod(String),
    Node(String),
    Labels(BTreeMap<String, String>),
}

fn default_seed() -> u64 {
    1
}
fn default_name_prefix() -> String {
    "node-".to_string()
}
fn default_cores() -> u32 {
    4
}
fn default_bandwidth() -> Bandwidth {
    Bandwidth(10_000_000_000)
}
fn default_mtu() -> u32 {
    1500
}
fn default_port() -> u16 {
    5201
}
fn default_payload() -> u32 {
    1400
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

/// Lets an `Option` field be written without `Some(...)`: present means `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Duration::deserialize(d).map(Some)
}

/// Turns a `ron` error into a located message, rewording the ones that would puzzle a user.
fn ron_error(e: &ron::error::SpannedError, text: &str, path: &str) -> ScenarioError {
    use ron::error::Error as R;
    let list = |xs: &[&str]| xs.join(", ");
    let in_outer =
        |o: &Option<String>| o.as_deref().map(|o| format!(" in {}", outer_name(o))).unwrap_or_default();
    let mut pos = snap(text, (e.span.start.line, e.span.start.col), &e.code);
    let message = match &e.code {
        R::NoSuchStructField { expected, found, outer } => {
            format!("unknown field '{found}'{}, expected one of: {}", in_outer(outer), list(expected))
        }
        R::MissingStructField { field, outer } => {
            format!("missing field '{field}'{}; add `{field}: ...` (see docs/scenario.md)", in_outer(outer))
        }
        R::DuplicateStructField { field, .. } => {
            format!("field '{field}' is given twice; keep one")
        }
        R::NoSuchEnumVariant { expected, found, outer } => format!(
            "unknown {} '{found}', expected one of: {}",
            outer.as_deref().map(variant_kind).unwrap_or("variant"),
            list(expected)
        ),
        R::ExpectedString | R::ExpectedStringEnd => {
            "expected a quoted string here (units and addresses are strings: \"5us\", \"10Gbit\", \
             \"1500B\", \"10.244.0.0/16\")"
                .to_string()
        }
        R::ExpectedInteger | R::ExpectedFloat | R::InvalidIntegerDigit { .. } => {
            "expected a number here, without quotes or units (e.g. 1400)".to_string()
        }
        R::IntegerOutOfBounds => "number out of range for this field (negative, or too large)".to_string(),
        R::ExpectedComma if char_at(text, pos) == Some('.') => {
            "expected a whole number here, without a fractional part".to_string()
        }
        R::ExpectedComma => "expected a comma (or a closing bracket) after the previous item".to_string(),
        R::ExpectedIdentifier => "expected a name here, such as Count(...) or List([...]) for nodes, \
                                  UdpCbr(...) or UdpRr(...) for a kind, Pod(\"x\") for a selector"
            .to_string(),
        R::ExpectedMapColon => "expected ':' between a key and its value".to_string(),
        R::ExpectedStructLike | R::ExpectedNamedStructLike(_) => {
            "expected '(' opening a group of fields".to_string()
        }
        R::ExpectedStructLikeEnd | R::ExpectedOptionEnd => {
            "expected ')' here: a missing comma or a stray value before it?".to_string()
        }
        R::ExpectedArray => "expected '[' opening a list".to_string(),
        R::ExpectedArrayEnd => "expected ']' closing the list (or a comma before the next item)".to_string(),
        R::ExpectedMap => "expected '{' opening a map such as {\"app\": \"web\"}".to_string(),
        R::ExpectedMapEnd => "expected '}' closing the map (or a comma before the next entry)".to_string(),
        R::ExpectedDifferentStructName { expected, found } => {
            format!("the file must start with `{expected}(`, not `{found}(`")
        }
        R::Eof => {
            pos = end_position(text);
            "unexpected end of file: a '(', '[' or '{' is not closed".to_string()
        }
        R::TrailingCharacters => "unexpected text after the closing ')' of Scenario(...)".to_string(),
        R::UnclosedBlockComment => "a /* comment is not closed with */".to_string(),
        R::InvalidValueForType { expected, found } => format!("expected {expected}, found {found}"),
        R::Message(m) => m.clone(),
        other => lower_first(&other.to_string()),
    };
    ScenarioError { path: path.to_string(), line: pos.0, col: pos.1, message }
}

/// The file's word for a struct `ron` names by its Rust type.
fn outer_name(outer: &str) -> &str {
    match outer {
        "Network" => "network",
        "Underlay" => "underlay",
        "CostProfile" => "costs",
        "Node" => "a node",
        "Pod" => "a pod",
        "Workload" => "a workload",
        other => other,
    }
}

/// Moves `ron`'s position onto the start of the offending value: `ron` sometimes points at the
/// blank before a value, just inside its opening quote, or just after a minus sign.
fn snap(text: &str, pos: (usize, usize), code: &ron::error::Error) -> (usize, usize) {
    use ron::error::Error as R;
    let Some(mut i) = char_index(text, pos) else {
        return pos;
    };
    let chars: Vec<char> = text.chars().collect();
    let before = |i: usize| i.checked_sub(1).and_then(|j| chars.get(j)).copied();
    match code {
        R::Message(_) if before(i) == Some('"') => i -= 1,
        R::IntegerOutOfBounds if before(i) == Some('-') => i -= 1,
        R::Eof => {}
        _ => {
            while chars.get(i).is_some_and(|c| c.is_whitespace()) {
                i += 1;
            }
        }
    }
    position_of(&chars, i)
}

/// Index in `text.chars()` of a 1-based (line, col) position.
fn char_index(text: &str, (line, col): (usize, usize)) -> Option<usize> {
    let mut l = 1;
    let mut c = 1;
    for (i, ch) in text.chars().enumerate() {
        if (l, c) == (line, col) {
            return Some(i);
        }
        if ch == '\n' {
            l += 1;
            c = 1;
        } else {
            c += 1;
        }
    }
    None
}

fn position_of(chars: &[char], i: usize) -> (usize, usize) {
    let upto = &chars[..i.min(chars.len())];
    let line = 1 + upto.iter().filter(|&&c| c == '\n').count();
    let col = 1 + upto.iter().rev().take_while(|&&c| c != '\n').count();
    (line, col)
}

fn char_at(text: &str, pos: (usize, usize)) -> Option<char> {
    char_index(text, pos).and_then(|i| text.chars().nth(i))
}

/// What `ron` calls `outer` for an unknown variant, in the file's words.
fn variant_kind(outer: &str) -> &'static str {
    match outer {
        "Nodes" => "nodes form (Count or List)",
        "WorkloadKind" => "workload kind",
        "Selector" => "selector",
        _ => "variant",
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn end_position(text: &str) -> (usize, usize) {
    position_of(&text.chars().collect::<Vec<_>>(), usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quickstart_resolves() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.ron");
        let c = match load(&path) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.name, "quickstart");
        assert_eq!(c.cni, crate::cluster::Cni::FlannelHostGw);
        let nodes: Vec<_> = c.nodes.iter().map(|n| (n.name.as_str(), n.ip.to_string())).collect();
        assert_eq!(
            nodes,
            [
                ("node-1", "192.168.0.1".into()),
                ("node-2", "192.168.0.2".into()),
                ("node-3", "192.168.0.3".into())
            ]
        );
        let subnets: Vec<_> = c.nodes.iter().map(|n| n.pod_subnet.to_string()).collect();
        assert_eq!(subnets, ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]);
        assert_eq!(c.pod_gateway(1).to_string(), "10.244.1.1");
        let pods: Vec<_> =
            c.pods.iter().map(|p| (p.name.as_str(), p.node, p.ip.to_string(), p.mtu)).collect();
        assert_eq!(
            pods,
            [
                ("node-1-pod-1", 0, "10.244.0.2".into(), 1500),
                ("node-1-pod-2", 0, "10.244.0.3".into(), 1500),
                ("node-2-pod-1", 1, "10.244.1.2".into(), 1500),
                ("node-2-pod-2", 1, "10.244.1.3".into(), 1500),
                ("node-3-pod-1", 2, "10.244.2.2".into(), 1500),
                ("node-3-pod-2", 2, "10.244.2.3".into(), 1500),
                ("server", 1, "10.244.1.4".into(), 1500),
            ]
        );
        assert_eq!(c.pods[6].labels.get("app").map(String::as_str), Some("server"));
        assert_eq!(c.pods[0].labels.get("node").map(String::as_str), Some("node-1"));
        let w: Vec<_> = c.workloads.iter().map(|w| (w.name.as_str(), w.flows.clone())).collect();
        assert_eq!(
            w,
            [("same-node", vec![(0, 1)]), ("cross-node", vec![(0, 2)]), ("rr", vec![(4, 6), (5, 6)])]
        );
        assert_eq!(c.workloads[0].port, 5201);
        assert_eq!(c.workloads[2].start.as_nanos(), 100_000_000);
        assert_eq!(c.workloads[2].duration, Duration::from_millis(900));
        assert_eq!(c.duration, Duration::from_secs(1));
        assert_eq!(c.costs, CostProfile::default());
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let e = load(Path::new("/nonexistent/x.ron")).err();
        assert!(matches!(e, Some(Error::Io { .. })), "{e:?}");
    }

    #[test]
    fn listed_nodes_defaults_and_cost_overrides() {
        let text = r#"Scenario(name: "l", duration: "10ms", cni: "flannel-host-gw",
            nodes: List([(name: "a"), (name: "b", cores: 8, nic: "25Gbit", mtu: 9000)]),
            pods: [(name: "p", node: "b"), (name: "q", node: "a")],
            workloads: [(name: "w", kind: UdpRr(request: 100, response: 8000), from: Pod("q"), to: Pod("p"),
                         start: "1ms", duration: "9ms")],
            costs: (veth_xmit: "400ns"))"#;
        let c = match load_str(text, "l.ron") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            (c.nodes[0].cores, c.nodes[0].mtu, c.nodes[0].nic_bandwidth),
            (4, 1500, Bandwidth(10_000_000_000))
        );
        assert_eq!((c.nodes[1].cores, c.nodes[1].mtu), (8, 9000));
        assert_eq!((c.pods[0].ip.to_string(), c.pods[0].mtu), ("10.244.1.2".to_string(), 9000));
        assert_eq!(c.pods[1].ip.to_string(), "10.244.0.2");
        assert_eq!(c.workloads[0].flows, [(1, 0)]);
        assert_eq!(c.seed, 1);
        assert_eq!(c.costs.veth_xmit, Duration::from_nanos(400));
        assert_eq!(c.costs.bridge_forward, CostProfile::default().bridge_forward);
        assert_eq!(c.underlay.queue, ByteSize(512 * 1024));
    }

    /// Truncated or mangled files give errors, never panics.
    #[test]
    fn never_panics_on_damaged_input() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.ron");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        for (k, &i) in bounds.iter().enumerate() {
            assert!(i >= text.trim_end().len() || load_str(&text[..i], "q.ron").is_err());
            let next = bounds.get(k + 1).copied().unwrap_or(text.len());
            let _ = load_str(&format!("{}{}", &text[..i], &text[next..]), "q.ron");
        }
    }
}
