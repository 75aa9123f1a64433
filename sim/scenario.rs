//! Scenario files: RON text in, a validated [`Cluster`] out.
//!
//! Two steps, as in Shadow's config: [`Scenario`] is a serde mirror of the file (format only:
//! every struct denies unknown fields, units and CIDRs are parsed by their own types), then
//! `resolve` checks what the fields mean together (address plan, names, capacities, selectors,
//! sizes against MTUs) and assigns addresses. Every error is located at `file:line:col` and says
//! how to fix the file (`ron_error` rewords the parser's, `locate` finds a key's position for
//! `resolve`'s). `docs/scenario.md` is the user's reference for the format.
//!
//! Not handled here: building devices and routes (`world`), or anything that needs a CNI's
//! data path. The CNI a scenario names (or `--cni`, through [`Overrides`]) matters here only
//! for the pod MTU it defaults to and the options it accepts.

mod compare;
mod kernel;
mod locate;
mod resolve;
mod ron_error;

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
use ron_error::ron_error;

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
    /// Set by `cnisim sweep` for a payload sweep: replaces every workload's payload
    /// (`UdpCbr`/`UdpStream` `payload`, `UdpRr` `request`).
    pub payload: Option<u32>,
    /// Set by `cnisim sweep`: replaces `nodes: Count(count)` (ignored for listed nodes, which
    /// a nodes sweep refuses).
    pub node_count: Option<u32>,
    /// Set by `cnisim sweep`: replaces `pods_per_node`.
    pub pods_per_node: Option<u32>,
    /// Set by `cnisim sweep`: replaces `generated_policies.count`.
    pub generated_policies: Option<u32>,
    /// Set by `cnisim sweep` for a BGP topology: replaces `bgp.route_reflectors`.
    pub bgp: Option<crate::cluster::BgpTopology>,
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
    /// Changes during the run: pods deleted, nodes powered off, BIRD stopped.
    #[serde(default)]
    pub changes: Vec<ChangeSpec>,
    /// Calico's BGP control plane, simulated (see [`BgpSpec`]).
    #[serde(default, deserialize_with = "present")]
    pub bgp: Option<BgpSpec>,
    /// `nf_conntrack_max` on every node (default: kube-proxy's max(32768 x cores, 131072)).
    #[serde(default, deserialize_with = "present")]
    pub conntrack_max: Option<u64>,
    /// Whether every MASQUERADE rule (kube-proxy's KUBE-POSTROUTING, the CNI's for traffic
    /// leaving the cluster) has `--random-fully`: `false` is a node whose iptables is older
    /// than 1.6.2. Default: as each component writes it on a current node (kube-proxy,
    /// flannel and Calico with it; Weave and Cilium's iptables masquerading without).
    #[serde(default, deserialize_with = "present")]
    pub masquerade_random_fully: Option<bool>,
    /// The nodes' kernels choose NAT ports as before the February 2022 fix ("netfilter: nat:
    /// remove l4 protocol port rovers"): from a rover shared by every core, through the whole
    /// range (default false: a current kernel).
    #[serde(default)]
    pub nat_port_rovers: bool,
    /// A sweep `cnisim sweep` runs over this scenario.
    #[serde(default, deserialize_with = "present")]
    pub sweep: Option<SweepSpec>,
    /// The CNIs and proxy modes `cnisim compare` runs this scenario under.
    #[serde(default, deserialize_with = "present")]
    pub compare: Option<CompareSpec>,
    /// Hosts outside the cluster, on the node network, by name: `from: External("name")`.
    #[serde(default)]
    pub external_hosts: Vec<String>,
    /// Namespaces and their labels, for NetworkPolicy's `namespace_selector`; `default`
    /// exists without being listed.
    #[serde(default)]
    pub namespaces: Vec<NamespaceSpec>,
    /// NetworkPolicy objects (`networking.k8s.io/v1`), see [`NetworkPolicySpec`].
    #[serde(default)]
    pub network_policies: Vec<NetworkPolicySpec>,
    /// Many similar NetworkPolicies, for policy-scaling studies (see [`GeneratedPolicies`]).
    #[serde(default, deserialize_with = "present")]
    pub generated_policies: Option<GeneratedPolicies>,
}

/// `generated_policies: (count: 1000)`: policies `gen-1` ... `gen-<count>` in `namespace`,
/// each selecting the pods of `pod_selector` and allowing ingress from the pods of its
/// namespace labelled `policy-gen: "<k>"`, on `port` over TCP and UDP. A pod labelled
/// `policy-gen: "<count>"` is allowed by the last one; one without the label by none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratedPolicies {
    pub count: u32,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub pod_selector: LabelSelectorSpec,
    #[serde(default = "default_port")]
    pub port: u16,
}

/// `(name: "prod", labels: {"team": "a"})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A NetworkPolicy, with the API's field names in snake case:
/// `(name: "db", namespace: "prod", pod_selector: (match_labels: {"app": "db"}),
/// ingress: [(from: [(pod_selector: (match_labels: {"app": "web"}))], ports: [(port: 5432)])])`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicySpec {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The pods of `namespace` the policy applies to (default: all of them).
    #[serde(default)]
    pub pod_selector: LabelSelectorSpec,
    /// `["Ingress"]`, `["Egress"]` or both; left out, Ingress plus Egress if `egress` has rules.
    #[serde(default, deserialize_with = "present")]
    pub policy_types: Option<Vec<String>>,
    #[serde(default)]
    pub ingress: Vec<IngressRuleSpec>,
    #[serde(default)]
    pub egress: Vec<EgressRuleSpec>,
}

/// `(match_labels: {"app": "web"}, match_expressions: [(key: "tier", operator: "In", values: ["a"])])`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelSelectorSpec {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<RequirementSpec>,
}

/// `(key: "tier", operator: "NotIn", values: ["test"])`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequirementSpec {
    pub key: String,
    /// `"In"`, `"NotIn"`, `"Exists"` or `"DoesNotExist"`.
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// `(from: [...], ports: [...])`: empty `from` is every source, empty `ports` every port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressRuleSpec {
    #[serde(default)]
    pub from: Vec<PeerSpec>,
    #[serde(default)]
    pub ports: Vec<PolicyPortSpec>,
}

/// `(to: [...], ports: [...])`: empty `to` is every destination, empty `ports` every port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRuleSpec {
    #[serde(default)]
    pub to: Vec<PeerSpec>,
    #[serde(default)]
    pub ports: Vec<PolicyPortSpec>,
}

/// A peer: `pod_selector` and/or `namespace_selector` (both: AND), or `ip_block` alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    #[serde(default, deserialize_with = "present")]
    pub pod_selector: Option<LabelSelectorSpec>,
    #[serde(default, deserialize_with = "present")]
    pub namespace_selector: Option<LabelSelectorSpec>,
    #[serde(default, deserialize_with = "present")]
    pub ip_block: Option<IpBlockSpec>,
}

/// `(cidr: "10.0.0.0/8", except: ["10.1.0.0/16"])`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpBlockSpec {
    pub cidr: String,
    #[serde(default)]
    pub except: Vec<String>,
}

/// `(protocol: "TCP", port: 8000, end_port: 8080)`; every field optional (protocol TCP).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyPortSpec {
    #[serde(deserialize_with = "present")]
    pub protocol: Option<String>,
    #[serde(deserialize_with = "present")]
    pub port: Option<PortSpec>,
    #[serde(deserialize_with = "present")]
    pub end_port: Option<i64>,
}

/// A port written as a number (`80`) or, as the API allows and cnisim does not model, a name
/// (`"http"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    Number(i64),
    Name(String),
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PortSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a port number or a port name")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortSpec, E> {
                Ok(PortSpec::Number(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortSpec, E> {
                Ok(PortSpec::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PortSpec, E> {
                Ok(PortSpec::Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
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
    /// `"TCP"` or `"UDP"`. Default: `"UDP"`, unlike Kubernetes, whose default is TCP: cnisim's
    /// workloads were UDP-only, and every scenario written before TCP existed means UDP.
    #[serde(default, deserialize_with = "present")]
    pub protocol: Option<String>,
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
    /// `"TCP"` or `"UDP"` for every generated Service's port. Default: `"UDP"` (Kubernetes'
    /// default is TCP; see `ServicePort::protocol`).
    #[serde(default, deserialize_with = "present")]
    pub protocol: Option<String>,
    /// Default: the workloads' default port, 5201.
    #[serde(default = "default_port")]
    pub target_port: u16,
    /// Endpoints are taken from the pods with all of these labels (default: every pod).
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
}

/// `(at: "500ms", delete_pod: "node-2-pod-1")`, `(at: "10s", power_off: "node-3")`,
/// `(at: "10s", stop_bird: "node-3")`, `(at: "10s", restart_bird: "node-3")`,
/// `(at: "10s", join_node: "node-9")`, `(at: "20ms", apply_policy: "prod/db-from-web")` or
/// `(at: "40ms", delete_policy: "prod/default-deny")` or
/// `(at: "50ms", label_pod: (pod: "dev-client", labels: {"app": "web"}))`: exactly one of the eight.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSpec {
    pub at: Duration,
    /// The pod's process exits; the endpoint controller removes it from every Service.
    #[serde(default, deserialize_with = "present")]
    pub delete_pod: Option<String>,
    /// The node loses power: it stops at once, sends nothing more (no FIN, no NOTIFICATION),
    /// and every frame reaching it is lost.
    #[serde(default, deserialize_with = "present")]
    pub power_off: Option<String>,
    /// BIRD on the node shuts down gracefully (calico-node stopping): a Cease NOTIFICATION to
    /// every peer, which withdraw its routes at once. Needs `bgp:`.
    #[serde(default, deserialize_with = "present")]
    pub stop_bird: Option<String>,
    /// BIRD's process on the node dies and is started again at once with `-R`: its
    /// connections close without a NOTIFICATION, its peers keep its routes as stale (graceful
    /// restart), the kernel keeps its routes. Needs `bgp:`.
    #[serde(default, deserialize_with = "present")]
    pub restart_bird: Option<String>,
    /// The node joins the cluster at `at`: until then it is off (frames to it are lost, its
    /// pods unreachable, none of its workloads may start); then calico-node starts BIRD on it
    /// and every peer's confd adds it to bird.cfg. Needs `bgp:`.
    #[serde(default, deserialize_with = "present")]
    pub join_node: Option<String>,
    /// A NetworkPolicy of `network_policies` (`"namespace/name"`, or its name alone when no
    /// other namespace has one of that name) is created at `at`: it is not in force before.
    #[serde(default, deserialize_with = "present")]
    pub apply_policy: Option<String>,
    /// A NetworkPolicy is deleted at `at`.
    #[serde(default, deserialize_with = "present")]
    pub delete_policy: Option<String>,
    /// A pod's labels are replaced at `at` (what policies select it by).
    #[serde(default, deserialize_with = "present")]
    pub label_pod: Option<LabelPodSpec>,
}

/// `(pod: "dev-client", labels: {"app": "web"})`: the pod's labels become these.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelPodSpec {
    pub pod: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Calico's BGP control plane, simulated: a BIRD speaker on every node of a BGP mode
/// (`calico-bgp`, `calico-ipip`, `calico-ipip-crosssubnet`) whose sessions run over the
/// simulated TCP and whose routes are the only ones the nodes have to other nodes' blocks.
/// Without this section those routes are installed at start, as if converged.
///
/// `bgp: ()` is the node-to-node mesh; `bgp: (route_reflectors: ["node-1", "node-2"])` turns
/// the mesh off and peers every other node with each reflector (Calico's
/// `routeReflectorClusterID` on the reflectors' Node resources and a BGPPeer selecting them).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpSpec {
    /// Nodes that are route reflectors (default: none, the full mesh).
    #[serde(default)]
    pub route_reflectors: Vec<String>,
    /// The reflectors' cluster ID (default "244.0.0.1", the value Calico's route-reflector
    /// documentation uses).
    #[serde(default, deserialize_with = "present")]
    pub cluster_id: Option<String>,
    /// The cluster's AS (default 64512, Calico's BGPConfiguration `asNumber` default).
    #[serde(default, deserialize_with = "present")]
    pub as_number: Option<u32>,
    /// BIRD `hold time` (default "240s"): 0 or 3 s to 65,535 s.
    #[serde(default, deserialize_with = "present")]
    pub hold_time: Option<Duration>,
    /// BIRD `keepalive time` (default a third of the negotiated hold time).
    #[serde(default, deserialize_with = "present")]
    pub keepalive_time: Option<Duration>,
    /// BIRD `connect delay time` (Calico: "2s").
    #[serde(default, deserialize_with = "present")]
    pub connect_delay: Option<Duration>,
    /// BIRD `connect retry time` (Calico: "5s").
    #[serde(default, deserialize_with = "present")]
    pub connect_retry: Option<Duration>,
    /// BIRD `error wait time` min and max (Calico: ("5s", "30s")).
    #[serde(default, deserialize_with = "present")]
    pub error_wait: Option<(Duration, Duration)>,
    /// Graceful restart time advertised (BIRD default "120s").
    #[serde(default, deserialize_with = "present")]
    pub graceful_restart: Option<Duration>,
    /// How long a restarted BIRD waits for its peers' End-of-RIB before it exports and syncs
    /// the kernel anyway (BIRD `graceful restart wait`, default "240s").
    #[serde(default, deserialize_with = "present")]
    pub graceful_restart_wait: Option<Duration>,
    /// Each node's BIRD starts at a time drawn uniformly from 0 to this (calico-node pods
    /// rolled out over a window); default "0s": every BIRD at t = 0.
    #[serde(default, deserialize_with = "present")]
    pub start_spread: Option<Duration>,
}

/// `sweep: (parameter: "services", values: [10, 100, 1000], proxies: ["iptables", "ipvs"])`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// What varies: `"services"` (generated_services.count), `"endpoints"`
    /// (generated_services.endpoints), `"payload"` (every workload's payload), `"nodes"`
    /// (`nodes: Count(count)`) or `"pods_per_node"`.
    pub parameter: String,
    pub values: Vec<u32>,
    /// Proxy modes to run at every value (default: every mode).
    #[serde(default)]
    pub proxies: Vec<String>,
    /// CNIs to run at every value, or `["all"]` (default: the scenario's `cni`).
    #[serde(default)]
    pub cnis: Vec<String>,
    /// BGP topologies to run at every value: `"mesh"`, or `"rr:N"` (the first N nodes are
    /// route reflectors); needs a `bgp:` section (default: the file's own).
    #[serde(default)]
    pub bgp: Vec<String>,
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
        /// Device offloads of every node (`ethtool -K`); left out, Linux's defaults.
        #[serde(default)]
        offloads: OffloadsSpec,
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
    /// Device offloads of this node (see [`OffloadsSpec`]).
    #[serde(default)]
    pub offloads: OffloadsSpec,
}

/// A node's device offloads, as `ethtool -K` sets them on every device of the node and of its
/// pods: `offloads: (tso: false, tx_udp_tnl_segmentation: true)`. What is left out keeps
/// Linux's default (`cluster::Offloads`): GSO, TSO and GRO on, tunnel segmentation off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffloadsSpec {
    #[serde(default, deserialize_with = "present")]
    pub gso: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub tso: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub gro: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub tx_udp_tnl_segmentation: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub tx_ipxip4_segmentation: Option<bool>,
}

/// One named pod: `(name: "client", node: "node-1", labels: {"app": "client"})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    pub name: String,
    pub node: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// A namespace of `namespaces` (default `"default"`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
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
    /// The fabric's routers (ToRs, spines) filter ICMP: they send no "fragmentation needed"
    /// (default false).
    pub filter_icmp: bool,
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
            filter_icmp: false,
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
        /// MTU of each ToR-spine link, 68..=65535 (default: the underlay's `mtu`).
        #[serde(default, deserialize_with = "present")]
        uplink_mtu: Option<u32>,
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
    /// Destination port on the server, UDP or TCP as the kind is (default 5201, iperf3's).
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
    /// TCP bulk transfer like iperf3: `streams` parallel connections (`-P`, default 1), each
    /// writing `write` bytes per call (`-l`, default 128 KiB).
    TcpStream {
        #[serde(default = "default_streams")]
        streams: u32,
        #[serde(default = "default_tcp_write")]
        write: u32,
    },
    /// netperf TCP_RR: request/response on one connection (netperf's defaults: 1 B each).
    TcpRr {
        #[serde(default = "default_rr_size")]
        request: u32,
        #[serde(default = "default_rr_size")]
        response: u32,
    },
    /// netperf TCP_CRR: a new connection per request/response transaction.
    TcpCrr {
        #[serde(default = "default_rr_size")]
        request: u32,
        #[serde(default = "default_rr_size")]
        response: u32,
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
fn default_streams() -> u32 {
    1
}
fn default_tcp_write() -> u32 {
    crate::cluster::IPERF3_TCP_WRITE
}
fn default_rr_size() -> u32 {
    1
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

/// Lets an `Option` field be written without `Some(...)`: present means `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests;
