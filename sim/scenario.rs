//! Scenario files: RON text in, a validated [`Cluster`] out.
//!
//! Two steps, as in Shadow's config: [`Scenario`] is a serde mirror of the file (format only:
//! every struct denies unknown fields, units and CIDRs are parsed by their own types), then
//! `resolve` checks what the fields mean together (address plan, names, capacities, selectors,
//! sizes against MTUs) and assigns addresses. Every error is located at `file:line:col` and says
//! how to fix the file. `docs/scenario.md` is the user's reference for the format.
//!
//! Not handled here: building devices and routes (`world`), or anything that needs a CNI's
//! data path. The CNI a scenario names (or `--cni`, through [`Overrides`]) matters here only
//! for the pod MTU it defaults to and the options it accepts.

mod compare;
mod kernel;
mod locate;
mod resolve;

pub use compare::pick;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::addr::Ipv4Net;
use crate::cluster::{Cluster, Cni};
use crate::cost::CostProfile;
use crate::error::{Error, ScenarioError};
use crate::time::Duration;
use crate::units::{Bandwidth, ByteSize};

/// Command-line choices that replace what the scenario file says, applied before resolution so
/// that everything derived from them (pod MTU defaults, size checks) follows the override.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--cni`: replaces the file's `cni`.
    pub cni: Option<Cni>,
    /// `--proxy`: replaces the file's `proxy`.
    pub proxy: Option<crate::cluster::ProxyMode>,
    /// Set by `cnisim sweep` for each point: replaces `generated_services.count` or
    /// `.endpoints`.
    pub generated_count: Option<u32>,
    pub generated_endpoints: Option<u32>,
}

/// Reads and resolves a scenario file.
pub fn load(path: &Path) -> Result<Cluster, Error> {
    load_with(path, &Overrides::default())
}

/// Reads and resolves a scenario file with command-line overrides.
pub fn load_with(path: &Path, overrides: &Overrides) -> Result<Cluster, Error> {
    let text = read_text(path)?;
    Ok(load_str_with(&text, &path.display().to_string(), overrides)?)
}

/// Reads a scenario file as text: UTF-8 (a byte-order mark is allowed), no NUL byte. Bytes
/// that are not UTF-8 text are a [`ScenarioError`] at their line, column and byte offset.
pub fn read_text(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(text_of(bytes, &path.display().to_string())?)
}

/// [`read_text`] on bytes already read.
pub fn text_of(bytes: Vec<u8>, path_for_messages: &str) -> Result<String, ScenarioError> {
    let at = |bytes: &[u8], offset: usize, message: String| {
        // The valid prefix gives the line and column (in characters) of the bad byte.
        let prefix = String::from_utf8_lossy(&bytes[..offset]);
        let line = prefix.matches('\n').count() + 1;
        let col =
            prefix.rsplit('\n').next().map_or(0, |l| l.trim_start_matches('\u{feff}').chars().count()) + 1;
        ScenarioError { path: path_for_messages.to_string(), line, col, message }
    };
    if let Some(i) = bytes.iter().position(|&b| b == 0) {
        return Err(at(
            &bytes,
            i,
            format!(
                "NUL byte at byte offset {i}: this is a binary file, not a scenario; scenario files are RON text (see docs/scenario.md)"
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let i = e.utf8_error().valid_up_to();
        let b = e.as_bytes()[i];
        at(
            e.as_bytes(),
            i,
            format!(
                "byte 0x{b:02x} at byte offset {i} is not UTF-8 text; scenario files are UTF-8 (save the file as UTF-8)"
            ),
        )
    })
}

/// Parses and resolves scenario text; `path_for_messages` is the file name errors start with.
pub fn load_str(text: &str, path_for_messages: &str) -> Result<Cluster, ScenarioError> {
    load_str_with(text, path_for_messages, &Overrides::default())
}

/// [`load_str`] with command-line overrides.
pub fn load_str_with(
    text: &str,
    path_for_messages: &str,
    overrides: &Overrides,
) -> Result<Cluster, ScenarioError> {
    // A byte-order mark some editors write is not part of the text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let scenario: Scenario =
        ron::Options::default().from_str(text).map_err(|e| ron_error(&e, text, path_for_messages))?;
    resolve::resolve(scenario, &resolve::Locator { text, path: path_for_messages }, overrides)
}

/// The MTU a pod's `eth0` gets: the scenario's `cni_options.mtu` if given, else the CNI's
/// default for the node's MTU ([`Cni::default_pod_mtu`]).
pub fn pod_mtu(cni: Cni, options: &crate::cluster::CniOptions, node_mtu: u32) -> u32 {
    options.mtu.unwrap_or_else(|| cni.default_pod_mtu(node_mtu))
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
    /// Options of the CNI plugin (pod MTU, flannel-vxlan direct routing).
    #[serde(default)]
    pub cni_options: CniOptions,
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
    /// How Services are implemented on every node (default `"iptables"`, kube-proxy's default).
    #[serde(default, deserialize_with = "present")]
    pub proxy: Option<String>,
    /// Services, by name, with selectors over pod labels.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Many similar ClusterIP Services, for rule-scaling studies.
    #[serde(default, deserialize_with = "present")]
    pub generated_services: Option<GeneratedServices>,
    /// Pods deleted during the run: endpoint changes every proxy must sync.
    #[serde(default)]
    pub changes: Vec<ChangeSpec>,
    /// `nf_conntrack_max` on every node (default: kube-proxy's max(32768 x cores, 131072)).
    #[serde(default, deserialize_with = "present")]
    pub conntrack_max: Option<u64>,
    /// A sweep `cnisim sweep` runs over this scenario.
    #[serde(default, deserialize_with = "present")]
    pub sweep: Option<SweepSpec>,
    /// The CNIs and proxy modes `cnisim compare` runs this scenario under.
    #[serde(default, deserialize_with = "present")]
    pub compare: Option<CompareSpec>,
    /// Hosts outside the cluster, on the node network, by name: `from: External("name")`.
    #[serde(default)]
    pub external_hosts: Vec<String>,
}

/// `(name: "web", selector: {"app": "web"}, ports: [(port: 80, target_port: 8080)])`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub kind: ServiceKind,
    /// Pods with all of these labels (and ready) are the endpoints.
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
    /// The virtual IP (default: the next free address of `service_cidr`).
    #[serde(default, deserialize_with = "present")]
    pub cluster_ip: Option<std::net::Ipv4Addr>,
    #[serde(default)]
    pub external_traffic_policy: TrafficPolicy,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
pub enum ServiceKind {
    #[default]
    ClusterIP,
    NodePort,
    Headless,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    /// Needed when a Service has more than one port.
    #[serde(default)]
    pub name: String,
    pub port: u16,
    /// The port the endpoint pods listen on (default: `port`).
    #[serde(default, deserialize_with = "present")]
    pub target_port: Option<u16>,
    /// NodePort Services: the port on every node (default: the next free one from 30000).
    #[serde(default, deserialize_with = "present")]
    pub node_port: Option<u16>,
}

/// `generated_services: (count: 1000, endpoints: 2)`: Services `svc-1` ... `svc-<count>`, each
/// with one port and `endpoints` pods taken round-robin from all pods.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratedServices {
    pub count: u32,
    #[serde(default = "default_endpoints")]
    pub endpoints: u32,
    #[serde(default = "default_service_port")]
    pub port: u16,
    /// Default: the workloads' default port, 5201.
    #[serde(default = "default_port")]
    pub target_port: u16,
    /// Endpoints are taken from the pods with all of these labels (default: every pod).
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
}

/// `(at: "500ms", delete_pod: "node-2-pod-1")`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSpec {
    pub at: Duration,
    pub delete_pod: String,
}

/// `sweep: (parameter: "services", values: [10, 100, 1000], proxies: ["iptables", "ipvs"])`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// What varies: `"services"` (generated_services.count) or `"endpoints"`
    /// (generated_services.endpoints).
    pub parameter: String,
    pub values: Vec<u32>,
    /// Proxy modes to run at every value (default: every mode).
    #[serde(default)]
    pub proxies: Vec<String>,
}

/// `compare: (cnis: ["flannel-vxlan", "calico-bgp"], proxies: ["iptables", "ipvs"])`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSpec {
    /// CNI identifiers, or `["all"]` for every one.
    pub cnis: Vec<String>,
    /// Proxy modes, or `["all"]` for every one (default: the scenario's `proxy`).
    #[serde(default)]
    pub proxies: Vec<String>,
}

/// `cni_options: (mtu: 1450, direct_routing: true)`; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CniOptions {
    /// Pod MTU, 68..=65535; left out, the CNI's default for each node's MTU.
    #[serde(deserialize_with = "present")]
    pub mtu: Option<u32>,
    /// flannel-vxlan `DirectRouting` (default false); an error with any other CNI.
    pub direct_routing: bool,
}

/// The address plan: `network: (node_cidr: "192.168.0.0/24", ...)`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// Node (underlay) addresses: node i gets host address i+1 on one L2 switch; a leaf-spine
    /// fabric cuts it into one subnet per rack.
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
        /// Kernel sysctls of every node (`net.core.rmem_default`, `net.core.wmem_default`,
        /// `net.core.netdev_max_backlog`); left out, Linux's defaults.
        #[serde(default)]
        sysctls: BTreeMap<String, u64>,
        /// Packets the NIC's qdisc holds (`ip link set eth0 txqueuelen N`; default 1000).
        #[serde(default, deserialize_with = "present")]
        txqueuelen: Option<u64>,
        /// NIC receive ring descriptors per queue (`ethtool -G eth0 rx N`; default 1024).
        #[serde(default, deserialize_with = "present")]
        rx_ring: Option<u64>,
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
    /// MTU of the node's `eth0`, 68..=65535 (default 1500); the pod MTU derives from it.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Rack of a leaf-spine fabric, from 1; left out, the node's block by position.
    #[serde(default, deserialize_with = "present")]
    pub rack: Option<u32>,
    /// Kernel sysctls of this node (see [`Nodes::Count`]).
    #[serde(default)]
    pub sysctls: BTreeMap<String, u64>,
    /// Packets the NIC's qdisc holds (default 1000).
    #[serde(default, deserialize_with = "present")]
    pub txqueuelen: Option<u64>,
    /// NIC receive ring descriptors per queue (default 1024).
    #[serde(default, deserialize_with = "present")]
    pub rx_ring: Option<u64>,
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

/// The physical network between the nodes: its shape, and what every cable shares.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Underlay {
    /// One L2 switch (the default) or a leaf-spine fabric.
    pub fabric: Fabric,
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
            fabric: Fabric::L2Switch,
            bandwidth: default_bandwidth(),
            propagation: Duration::from_micros(5),
            mtu: default_mtu(),
            queue: ByteSize(512 * 1024),
            loss: 0.0,
        }
    }
}

/// The shape of the underlay: `L2Switch` or `LeafSpine(racks: 3, ...)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Fabric {
    /// One learning switch; every node on `node_cidr`.
    L2Switch,
    /// Racks of nodes, each rack a switch behind a ToR router with one uplink to every spine.
    LeafSpine {
        /// Number of racks, 1..=1000.
        racks: u32,
        /// Number of spine routers, 1..=64 (default 2).
        #[serde(default = "default_spines")]
        spines: u32,
        /// Rate of each ToR-spine cable (default `"40Gbit"`).
        #[serde(default = "default_uplink")]
        uplink: Bandwidth,
        /// Prefix length of each rack's subnet of `node_cidr`, at most 30 (default 24).
        #[serde(default = "default_rack_prefix")]
        rack_prefix: u8,
        /// Addresses of the ToR-spine /31 links (default `"172.31.0.0/16"`).
        #[serde(default = "default_fabric_cidr")]
        fabric_cidr: Ipv4Net,
    },
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
    /// The sockets set IP_PMTUDISC_DO: DF always, and a datagram above a learned path MTU
    /// fails with EMSGSIZE instead of being fragmented (default false: Linux's
    /// IP_PMTUDISC_WANT, which fragments locally).
    #[serde(default)]
    pub dont_fragment: bool,
    /// Request/response only: open a new connection (socket, source port) for every request
    /// instead of reusing one (default false).
    #[serde(default)]
    pub new_connection_per_request: bool,
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
    /// UDP as fast as the socket allows (iperf3 `-u -b 0`).
    UdpStream {
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
    /// `to` only: a Service's cluster IP (`"web"` for its first port, `"web:http"` for a
    /// named one).
    Service(String),
    /// `to` only: a NodePort Service at one node's address.
    NodePort {
        service: String,
        node: String,
    },
    /// `to` only: each new connection goes to one of the generated Services, uniformly.
    AnyGeneratedService,
    /// `from` only: a host of `external_hosts`.
    External(String),
}

fn default_namespace() -> String {
    "default".to_string()
}
fn default_endpoints() -> u32 {
    1
}
fn default_service_port() -> u16 {
    80
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
fn default_spines() -> u32 {
    2
}
fn default_uplink() -> Bandwidth {
    Bandwidth(40_000_000_000)
}
fn default_rack_prefix() -> u8 {
    24
}
fn default_fabric_cidr() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(172, 31, 0, 0), 16).expect("valid default CIDR")
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
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
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
                                  UdpCbr(...), UdpStream(...) or UdpRr(...) for a kind, Pod(\"x\") for a selector, \
                                  L2Switch or LeafSpine(...) for a fabric"
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
        "CniOptions" => "cni_options",
        "LeafSpine" => "LeafSpine(...)",
        "CostProfile" => "costs",
        "Node" => "a node",
        "Pod" => "a pod",
        "Workload" => "a workload",
        "Service" => "a service",
        "ServicePort" => "a service port",
        "GeneratedServices" => "generated_services",
        "ChangeSpec" => "a change",
        "SweepSpec" => "sweep",
        "CompareSpec" => "compare",
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
        "Fabric" => "fabric (L2Switch or LeafSpine)",
        "ServiceKind" => "service kind (ClusterIP, NodePort or Headless)",
        "TrafficPolicy" => "external_traffic_policy (Cluster or Local)",
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
    use crate::cluster::{Client, CniOptions, Fabric, PodId, Target};

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
            [
                ("same-node", vec![(Client::Pod(0), Target::Pod(1))]),
                ("cross-node", vec![(Client::Pod(0), Target::Pod(2))]),
                ("rr", vec![(Client::Pod(4), Target::Pod(6)), (Client::Pod(5), Target::Pod(6))])
            ]
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
        assert_eq!(c.workloads[0].flows, [(Client::Pod(1), Target::Pod(0))]);
        assert_eq!(c.seed, 1);
        assert_eq!(c.costs.veth_xmit, Duration::from_nanos(400));
        assert_eq!(c.costs.bridge_forward, CostProfile::default().bridge_forward);
        assert_eq!(c.underlay.queue, ByteSize(512 * 1024));
    }

    /// Resolves like [`load_str`] but lets unimplemented CNIs through, to check what
    /// resolution does for them.
    fn resolve_text(text: &str, overrides: &Overrides) -> Result<Cluster, ScenarioError> {
        let scenario: Scenario =
            ron::Options::default().from_str(text).map_err(|e| ron_error(&e, text, "t.ron"))?;
        resolve::resolve(scenario, &resolve::Locator { text, path: "t.ron" }, overrides)
    }

    fn ok(r: Result<Cluster, ScenarioError>) -> Cluster {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    /// A scenario with `cni`, `extra` top-level fields, and a workload sending `payload` bytes.
    fn with_cni(cni: &str, extra: &str, payload: u32) -> String {
        format!(
            r#"Scenario(name: "m", duration: "10ms", cni: "{cni}", {extra}
                nodes: List([(name: "a"), (name: "b", mtu: 9000)]), pods_per_node: 1,
                workloads: [(name: "w", kind: UdpCbr(rate: "1Mbit", payload: {payload}),
                             from: Pod("a-pod-1"), to: Pod("b-pod-1"))])"#
        )
    }

    #[test]
    fn leaf_spine_racks_addresses_and_blocks() {
        let text = r#"Scenario(name: "ls", duration: "10ms", cni: "flannel-host-gw",
            network: (node_cidr: "10.0.0.0/16"),
            nodes: Count(count: 7),
            underlay: (fabric: LeafSpine(racks: 3, spines: 4, uplink: "100Gbit", fabric_cidr: "172.16.0.0/24")))"#;
        let c = ok(load_str(text, "ls.ron"));
        let Fabric::LeafSpine { racks, spines, uplink, fabric_cidr } = &c.underlay.fabric else {
            panic!("expected a leaf-spine fabric, got {:?}", c.underlay.fabric);
        };
        let racks: Vec<_> =
            racks.iter().map(|r| (r.name.as_str(), r.subnet.to_string(), r.gateway.to_string())).collect();
        assert_eq!(
            racks,
            [
                ("rack-1", "10.0.0.0/24".into(), "10.0.0.1".into()),
                ("rack-2", "10.0.1.0/24".into(), "10.0.1.1".into()),
                ("rack-3", "10.0.2.0/24".into(), "10.0.2.1".into()),
            ]
        );
        assert_eq!(
            (*spines, *uplink, fabric_cidr.to_string()),
            (4, Bandwidth(100_000_000_000), "172.16.0.0/24".into())
        );
        // 7 nodes in 3 racks: i * 3 / 7 gives blocks of 3, 2, 2.
        let nodes: Vec<_> = c
            .nodes
            .iter()
            .map(|n| (n.rack, n.ip.to_string(), n.prefix, n.gateway.map(|g| g.to_string())))
            .collect();
        let gw = |r: u8| Some(format!("10.0.{r}.1"));
        assert_eq!(
            nodes,
            [
                (0, "10.0.0.2".into(), 24, gw(0)),
                (0, "10.0.0.3".into(), 24, gw(0)),
                (0, "10.0.0.4".into(), 24, gw(0)),
                (1, "10.0.1.2".into(), 24, gw(1)),
                (1, "10.0.1.3".into(), 24, gw(1)),
                (2, "10.0.2.2".into(), 24, gw(2)),
                (2, "10.0.2.3".into(), 24, gw(2)),
            ]
        );
        // Pod subnets do not depend on the fabric.
        assert_eq!(c.nodes[6].pod_subnet.to_string(), "10.244.6.0/24");
    }

    #[test]
    fn leaf_spine_defaults_and_listed_racks() {
        let text = r#"Scenario(name: "ls", duration: "10ms", cni: "flannel-host-gw",
            network: (node_cidr: "192.168.0.0/22"),
            nodes: List([(name: "a", rack: 2), (name: "b"), (name: "c"), (name: "d", rack: 2)]),
            underlay: (fabric: LeafSpine(racks: 2)))"#;
        let c = ok(load_str(text, "ls.ron"));
        let Fabric::LeafSpine { racks, spines, uplink, fabric_cidr } = &c.underlay.fabric else {
            panic!("expected a leaf-spine fabric");
        };
        assert_eq!(racks.len(), 2);
        assert_eq!(
            (*spines, *uplink, fabric_cidr.to_string()),
            (2, Bandwidth(40_000_000_000), "172.31.0.0/16".into())
        );
        // a and d by `rack:`; b and c by position (1 * 2 / 4 = 0, 2 * 2 / 4 = 1).
        let nodes: Vec<_> = c.nodes.iter().map(|n| (n.name.as_str(), n.rack, n.ip.to_string())).collect();
        assert_eq!(
            nodes,
            [
                ("a", 1, "192.168.1.2".into()),
                ("b", 0, "192.168.0.2".into()),
                ("c", 1, "192.168.1.3".into()),
                ("d", 1, "192.168.1.4".into()),
            ]
        );
    }

    #[test]
    fn l2_switch_is_the_default_fabric() {
        let c = ok(load_str(&with_cni("flannel-host-gw", "", 100), "m.ron"));
        assert!(matches!(c.underlay.fabric, Fabric::L2Switch));
        let nodes: Vec<_> = c.nodes.iter().map(|n| (n.ip.to_string(), n.prefix, n.rack, n.gateway)).collect();
        assert_eq!(nodes, [("192.168.0.1".into(), 24, 0, None), ("192.168.0.2".into(), 24, 0, None)]);
        assert_eq!((c.cni_options.mtu, c.cni_options.direct_routing), (None, false));
    }

    #[test]
    fn pod_mtu_defaults_follow_the_cni() {
        let none = CniOptions::default();
        let cases = [
            (Cni::FlannelHostGw, 1500, 1500),
            (Cni::FlannelVxlan, 1500, 1450),
            (Cni::FlannelUdp, 1500, 1472),
            (Cni::CalicoIpip, 9000, 8980),
            (Cni::CiliumVxlan, 1500, 1500),
            (Cni::WeaveFastdp, 9000, 1376),
        ];
        for (cni, node, pod) in cases {
            assert_eq!(pod_mtu(cni, &none, node), pod, "{cni} on a {node} B node");
        }
        let set = CniOptions { mtu: Some(1400), direct_routing: false };
        assert_eq!(pod_mtu(Cni::FlannelVxlan, &set, 9000), 1400);

        // Through resolution, per node: a is 1500, b is 9000.
        let mtus = |cni: &str, extra: &str| -> Vec<u32> {
            ok(resolve_text(&with_cni(cni, extra, 100), &Overrides::default()))
                .pods
                .iter()
                .map(|p| p.mtu)
                .collect()
        };
        assert_eq!(mtus("flannel-vxlan", ""), [1450, 8950]);
        assert_eq!(mtus("calico-ipip", ""), [1480, 8980]);
        assert_eq!(mtus("weave-sleeve", ""), [1376, 1376]);
        assert_eq!(mtus("flannel-vxlan", "cni_options: (mtu: 1600),"), [1600, 1600]);
        let c = ok(resolve_text(
            &with_cni("flannel-vxlan", "cni_options: (direct_routing: true),", 100),
            &Overrides::default(),
        ));
        assert!(c.cni_options.direct_routing);
    }

    #[test]
    fn payload_checked_against_the_final_pod_mtu() {
        let e = resolve_text(&with_cni("flannel-vxlan", "", 1440), &Overrides::default()).err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains(
                "payload 1440 B + 28 B of IPv4/UDP headers exceeds the MTU 1450 of client pod 'a-pod-1' (the \
                 default pod MTU of flannel-vxlan on a node with MTU 1500; cni_options.mtu sets another); \
                 a pod sends datagrams of at most its MTU; lower payload to ≤ MTU-28 = 1422"
            ),
            "{msg}"
        );
        assert!(msg.starts_with("t.ron:3:78: "), "{msg}");
        // The same payload fits host-gw's 1500.
        ok(resolve_text(&with_cni("flannel-host-gw", "", 1440), &Overrides::default()));
    }

    #[test]
    fn cni_override_replaces_the_file() {
        let vxlan = Overrides { cni: Some(Cni::FlannelVxlan), ..Default::default() };
        let hostgw = Overrides { cni: Some(Cni::FlannelHostGw), ..Default::default() };
        // A file naming an unimplemented CNI loads under an implemented override ...
        let c = ok(load_str_with(&with_cni("calico-ipip", "", 1440), "m.ron", &hostgw));
        assert_eq!((c.cni, c.pods[0].mtu), (Cni::FlannelHostGw, 1500));
        // ... and the MTU default and size checks follow the override.
        let e = resolve_text(&with_cni("flannel-host-gw", "", 1440), &vxlan).err();
        let msg = e.map(|e| e.message).unwrap_or_default();
        assert!(
            msg.contains("exceeds the MTU 1450") && msg.contains("flannel-vxlan (--cni flannel-vxlan)"),
            "{msg}"
        );
        let c = ok(resolve_text(&with_cni("flannel-host-gw", "", 100), &vxlan));
        assert_eq!((c.cni, c.pods[0].mtu), (Cni::FlannelVxlan, 1450));
        // direct_routing follows the override too.
        let e = load_str_with(
            &with_cni("flannel-vxlan", "cni_options: (direct_routing: true),", 100),
            "m.ron",
            &hostgw,
        );
        let msg = e.err().map(|e| e.message).unwrap_or_default();
        assert!(msg.contains("but the CNI is flannel-host-gw (--cni flannel-host-gw)"), "{msg}");
    }

    #[test]
    fn pod_mtu_below_ipv4_minimum_is_an_error() {
        let text = with_cni("flannel-vxlan", "", 10).replace("(name: \"a\")", "(name: \"a\", mtu: 100)");
        let e = resolve_text(&text, &Overrides::default()).err().map(|e| e.message).unwrap_or_default();
        assert!(e.contains("node mtu 100 leaves flannel-vxlan pods an MTU of 50, below the IPv4 minimum of 68; raise the node mtu to at least 118"), "{e}");
        // A pod MTU above the node's is allowed: that is the misconfiguration to simulate.
        ok(resolve_text(&with_cni("flannel-vxlan", "cni_options: (mtu: 9000),", 100), &Overrides::default()));
    }

    #[test]
    fn leaf_spine_example_resolves() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/leaf-spine.ron");
        let c = match load(&path) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let Fabric::LeafSpine { racks, spines, .. } = &c.underlay.fabric else {
            panic!("expected a leaf-spine fabric");
        };
        assert_eq!((racks.len(), *spines, c.nodes.len()), (3, 2, 6));
        let rack_of = |pod: PodId| c.nodes[c.pods[pod].node].rack;
        let flows: Vec<_> = c
            .workloads
            .iter()
            .map(|w| {
                (
                    rack_of(match w.flows[0].0 {
                        Client::Pod(p) => p,
                        Client::External(_) => unreachable!(),
                    }),
                    rack_of(match w.flows[0].1 {
                        Target::Pod(p) => p,
                        _ => unreachable!(),
                    }),
                )
            })
            .collect();
        assert_eq!(flows, [(0, 0), (0, 2)]);
    }

    /// Truncated or mangled files give errors, never panics.
    #[test]
    fn never_panics_on_damaged_input() {
        for file in ["scenarios/quickstart.ron", "scenarios/leaf-spine.ron"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let text = std::fs::read_to_string(path).unwrap_or_default();
            assert!(!text.is_empty(), "{file} missing");
            let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            for (k, &i) in bounds.iter().enumerate() {
                assert!(i >= text.trim_end().len() || load_str(&text[..i], "q.ron").is_err());
                let next = bounds.get(k + 1).copied().unwrap_or(text.len());
                let _ = load_str(&format!("{}{}", &text[..i], &text[next..]), "q.ron");
            }
        }
    }
}
