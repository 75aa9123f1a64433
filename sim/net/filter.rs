//! An iptables `filter` table and its ipsets, as data, walked rule by rule as the kernel's
//! `ipt_do_table` walks it (net/ipv4/netfilter/ip_tables.c): rules in order, the first whose
//! matches all hold fires its target; `-j CHAIN` pushes a return point, `-g CHAIN` does not
//! (a RETURN from a chain entered by goto resumes after the rule that jumped into the chain
//! that made the goto), RETURN or the end of a user chain pops, the end of a built-in chain
//! applies its policy. `MARK --set-xmark value/mask` changes the packet's mark and goes on
//! (`xt_MARK`: `mark = (mark & ~mask) ^ value`).
//!
//! Policy engines (Calico's Felix, weave-npc) build a table per node; the datapath walks it
//! on the FORWARD and INPUT hooks. Each rule tested and each ipset membership test is counted,
//! so a connection's first-packet cost comes out of the walk.
//!
//! `save` prints the table as `iptables-save -t filter` does (argument order `-s -d -i -o -p`,
//! then the matches in the order they were given, then `-j`; `ipset list` for the sets).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::addr::Ipv4Net;

/// Index of a chain in its [`FilterTable`].
pub type ChainId = usize;
/// Index of an ipset in its [`FilterTable`].
pub type SetId = usize;

/// The built-in chains of the filter table, in iptables-save's order (NF_INET_LOCAL_IN,
/// NF_INET_FORWARD, NF_INET_LOCAL_OUT); they are chains 0, 1 and 2 of every table.
pub const BUILTINS: [&str; 3] = ["INPUT", "FORWARD", "OUTPUT"];
pub const INPUT: ChainId = 0;
pub const FORWARD: ChainId = 1;
pub const OUTPUT: ChainId = 2;

/// The conntrack state a packet has when the filter table sees it (`-m conntrack --ctstate`,
/// from the skb's `ctinfo`: NEW until a reply has been seen, ESTABLISHED after and for
/// replies, RELATED for ICMP errors about a tracked connection).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
    /// Not tracked (no conntrack in this namespace): matches no `--ctstate` but UNTRACKED.
    #[default]
    Untracked,
}

impl CtState {
    /// As `--ctstate` spells it.
    pub fn name(self) -> &'static str {
        match self {
            CtState::New => "NEW",
            CtState::Established => "ESTABLISHED",
            CtState::Related => "RELATED",
            CtState::Invalid => "INVALID",
            CtState::Untracked => "UNTRACKED",
        }
    }

    fn bit(self) -> u8 {
        match self {
            CtState::New => 1,
            CtState::Established => 2,
            CtState::Related => 4,
            CtState::Invalid => 8,
            CtState::Untracked => 16,
        }
    }
}

/// A set of conntrack states, as `--ctstate` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtStates(u8);

impl CtStates {
    pub const NEW: CtStates = CtStates(1);
    pub const RELATED_ESTABLISHED: CtStates = CtStates(2 | 4);
    pub const INVALID: CtStates = CtStates(8);

    fn contains(self, s: CtState) -> bool {
        self.0 & s.bit() != 0
    }

    fn names(self) -> String {
        // xt_conntrack's print order (conntrack_print_states): INVALID, NEW, RELATED,
        // ESTABLISHED, UNTRACKED.
        let order = [(8, "INVALID"), (1, "NEW"), (4, "RELATED"), (2, "ESTABLISHED"), (16, "UNTRACKED")];
        let names: Vec<&str> = order.iter().filter(|(b, _)| self.0 & b != 0).map(|&(_, n)| n).collect();
        names.join(",")
    }
}

/// An interface match: `cali1234abcd` or the prefix form `cali+`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Iface {
    Exact(String),
    Prefix(String),
}

impl Iface {
    /// Parses iptables' spelling: a trailing `+` makes it a prefix.
    pub fn parse(s: &str) -> Iface {
        match s.strip_suffix('+') {
            Some(p) => Iface::Prefix(p.to_string()),
            None => Iface::Exact(s.to_string()),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Iface::Exact(n) => n == name,
            Iface::Prefix(p) => name.starts_with(p.as_str()),
        }
    }

    fn spelled(&self) -> String {
        match self {
            Iface::Exact(n) => n.clone(),
            Iface::Prefix(p) => format!("{p}+"),
        }
    }
}

/// Source or destination address of the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Src,
    Dst,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Src => "src",
            Dir::Dst => "dst",
        }
    }
}

/// One match of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// `-m comment --comment TEXT`: always matches.
    Comment(String),
    /// `[!] -i IFACE`.
    In { iface: Iface, invert: bool },
    /// `[!] -o IFACE`.
    Out { iface: Iface, invert: bool },
    /// `[!] -s NET` or `[!] -d NET`.
    Net { dir: Dir, net: Ipv4Net, invert: bool },
    /// `-p PROTO` by number (6 tcp, 17 udp, 132 sctp, 4 ipencap).
    Proto(u8),
    /// `-m multiport --dports P,LO:HI` (needs `-p`): inclusive ranges.
    Dports(Vec<(u16, u16)>),
    /// `-m set [!] --match-set NAME src|dst`.
    Set { set: SetId, dir: Dir, invert: bool },
    /// `-m conntrack --ctstate STATES`.
    Ct(CtStates),
    /// `-m state --state STATES` (xt_state: the same conntrack states, the older match).
    State(CtStates),
    /// `-m tcp|udp|sctp --dport LO[:HI]` (needs `-p`): one inclusive range.
    Dport(u16, u16),
    /// `-m physdev [--physdev-in IFACE] [--physdev-out IFACE] [--physdev-is-bridged]`
    /// (xt_physdev): the bridge ports a bridged frame came in by and goes out of.
    Physdev { phys_in: Option<Iface>, phys_out: Option<Iface>, is_bridged: bool },
    /// `-m addrtype --dst-type LOCAL`: the destination is one of this host's addresses.
    DstLocal,
    /// `-m mark [!] --mark VALUE/MASK`: `(mark & mask) == value`.
    Mark { value: u32, mask: u32, invert: bool },
}

/// A rule's target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Accept,
    Drop,
    Return,
    Jump(ChainId),
    Goto(ChainId),
    /// `-j MARK --set-xmark VALUE/MASK`: non-terminating.
    SetMark {
        value: u32,
        mask: u32,
    },
    /// No target: the rule only counts packets (Felix writes one to carry a chain's comment).
    Nothing,
    /// `-j NFLOG --nflog-group N`: logs to userspace and goes on (non-terminating).
    Nflog(u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub target: Target,
}

impl Rule {
    pub fn new(matches: Vec<Match>, target: Target) -> Rule {
        Rule { matches, target }
    }
}

/// A built-in chain's policy, or the verdict of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub rules: Vec<Rule>,
    /// `Some` for a built-in chain.
    pub policy: Option<Verdict>,
}

/// The ipset types the policy engines create (`ipset create NAME TYPE`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SetType {
    /// Addresses and prefixes; a membership test is one hash lookup per prefix length present,
    /// as `ip_set_hash_net` probes each of the set's CIDR sizes.
    #[default]
    HashNet,
    /// Addresses only (weave-npc's pod sets).
    HashIp,
    /// A list of other sets (weave-npc's namespace-selector sets): a test asks each member
    /// set in turn until one holds the address (`ip_set_list_set.c` `list_set_ktest`).
    ListSet(Vec<SetId>),
}

impl SetType {
    fn name(&self) -> &'static str {
        match self {
            SetType::HashNet => "hash:net",
            SetType::HashIp => "hash:ip",
            SetType::ListSet(_) => "list:set",
        }
    }
}

/// An ipset: its name, type and members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpSet {
    pub name: String,
    pub kind: SetType,
    /// Sorted, without duplicates (empty for a `list:set`, whose members are sets).
    members: Vec<Ipv4Net>,
    hosts: FxHashSet<Ipv4Addr>,
    nets: Vec<Ipv4Net>,
}

impl IpSet {
    /// A `hash:net` set.
    pub fn new(name: String, members: Vec<Ipv4Net>) -> IpSet {
        IpSet::typed(name, SetType::HashNet, members)
    }

    /// A set of `kind` holding `members` (addresses for `hash:ip`; none for `list:set`).
    pub fn typed(name: String, kind: SetType, mut members: Vec<Ipv4Net>) -> IpSet {
        members.sort_by_key(|n| (u32::from(n.network()), n.prefix()));
        members.dedup();
        let hosts = members.iter().filter(|n| n.prefix() == 32).map(|n| n.network()).collect();
        let nets = members.iter().copied().filter(|n| n.prefix() < 32).collect();
        IpSet { name, kind, members, hosts, nets }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.hosts.contains(&ip) || self.nets.iter().any(|n| n.contains(ip))
    }

    pub fn members(&self) -> &[Ipv4Net] {
        &self.members
    }
}

/// What the walk needs to know of a packet.
#[derive(Clone, Copy, Debug)]
pub struct PacketInfo<'a> {
    /// Incoming interface (empty on OUTPUT).
    pub in_dev: &'a str,
    /// Outgoing interface (empty on INPUT).
    pub out_dev: &'a str,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// Destination port, for TCP, UDP and SCTP.
    pub dport: Option<u16>,
    pub ct: CtState,
    /// For a bridged frame (br_netfilter), the bridge ports it came in by and goes out of
    /// (`in_dev` and `out_dev` are then the bridge itself); empty for a routed packet.
    pub phys_in: &'a str,
    pub phys_out: &'a str,
    /// Whether the frame is being bridged (`--physdev-is-bridged`).
    pub bridged: bool,
    /// Whether the destination is one of the host's own addresses (`--dst-type LOCAL`).
    pub dst_local: bool,
}

/// What [`FilterTable::diff`] found between two tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableDiff {
    pub rules_added: usize,
    pub rules_removed: usize,
    /// Existing chains whose rules changed.
    pub chains_touched: usize,
    pub chains_created: usize,
    pub chains_deleted: usize,
    pub sets_created: usize,
    pub sets_deleted: usize,
    /// Members added to or removed from sets (a new set's members count).
    pub set_entries_changed: usize,
}

impl TableDiff {
    pub fn is_empty(&self) -> bool {
        *self == TableDiff::default()
    }
}

/// The result of walking a hook's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    pub verdict: Verdict,
    /// Rules whose matches were tested.
    pub rules: u32,
    /// ipset membership tests.
    pub set_lookups: u32,
    /// The rule whose target decided (chain, index), or `None` for a built-in policy.
    pub decided_by: Option<(ChainId, usize)>,
    /// When traced: one line per rule that fired, `CHAIN #n: rule -> target`.
    pub lines: Vec<String>,
}

/// A filter table: the three built-in chains, user chains and the ipsets rules refer to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterTable {
    pub chains: Vec<Chain>,
    pub sets: Vec<IpSet>,
    /// Whether a rule appended by [`FilterTable::append`] matches `--dst-type LOCAL` (the
    /// datapath then looks the destination up in the local table before a walk).
    pub uses_addrtype: bool,
    chain_index: FxHashMap<String, ChainId>,
    set_index: FxHashMap<String, SetId>,
}

impl Default for FilterTable {
    fn default() -> Self {
        FilterTable::new()
    }
}

/// Chains may nest at most this deep (ip_tables.c keeps a jump stack per CPU sized by the
/// table's deepest chain nesting; the builders here never nest more than a few levels).
const MAX_DEPTH: usize = 32;

impl FilterTable {
    /// The built-in chains, empty, with policy ACCEPT (the kernel's default).
    pub fn new() -> FilterTable {
        let mut t = FilterTable {
            chains: Vec::new(),
            sets: Vec::new(),
            uses_addrtype: false,
            chain_index: FxHashMap::default(),
            set_index: FxHashMap::default(),
        };
        for name in BUILTINS {
            t.chains.push(Chain { name: name.to_string(), rules: Vec::new(), policy: Some(Verdict::Accept) });
            t.chain_index.insert(name.to_string(), t.chains.len() - 1);
        }
        t
    }

    /// The chain called `name`, created empty if it does not exist (`iptables -N`).
    pub fn chain(&mut self, name: &str) -> ChainId {
        if let Some(&id) = self.chain_index.get(name) {
            return id;
        }
        self.chains.push(Chain { name: name.to_string(), rules: Vec::new(), policy: None });
        self.chain_index.insert(name.to_string(), self.chains.len() - 1);
        self.chains.len() - 1
    }

    pub fn find(&self, name: &str) -> Option<ChainId> {
        self.chain_index.get(name).copied()
    }

    /// Appends a rule (`iptables -A`).
    pub fn append(&mut self, chain: ChainId, rule: Rule) {
        self.uses_addrtype |= rule.matches.contains(&Match::DstLocal);
        self.chains[chain].rules.push(rule);
    }

    /// The ipset called `name` with `members`, or the existing one of that name (whose members
    /// are then the same by construction: set names are hashes of what selects the members).
    pub fn set(&mut self, name: &str, members: impl FnOnce() -> Vec<Ipv4Net>) -> SetId {
        if let Some(&id) = self.set_index.get(name) {
            return id;
        }
        self.sets.push(IpSet::new(name.to_string(), members()));
        self.set_index.insert(name.to_string(), self.sets.len() - 1);
        self.sets.len() - 1
    }

    /// Like [`FilterTable::set`], for a set of any type.
    pub fn typed_set(&mut self, name: &str, kind: SetType, members: impl FnOnce() -> Vec<Ipv4Net>) -> SetId {
        if let Some(&id) = self.set_index.get(name) {
            return id;
        }
        self.sets.push(IpSet::typed(name.to_string(), kind, members()));
        self.set_index.insert(name.to_string(), self.sets.len() - 1);
        self.sets.len() - 1
    }

    pub fn find_set(&self, name: &str) -> Option<SetId> {
        self.set_index.get(name).copied()
    }

    /// Whether set `set` holds `ip`, counting each set tested (a `list:set` tests its members
    /// in order until one holds it).
    fn set_contains(&self, set: SetId, ip: Ipv4Addr, lookups: &mut u32) -> bool {
        match &self.sets[set].kind {
            SetType::ListSet(members) => members.iter().any(|&m| self.set_contains(m, ip, lookups)),
            _ => {
                *lookups += 1;
                self.sets[set].contains(ip)
            }
        }
    }

    /// What rewriting this table into `new` takes: rules and set entries added and removed,
    /// chains and sets created or deleted (chains and sets matched by name, rules by their
    /// iptables-save text, in order: a rule that moves is removed and added).
    pub fn diff(&self, new: &FilterTable) -> TableDiff {
        let mut d = TableDiff::default();
        let texts =
            |t: &FilterTable, c: &Chain| -> Vec<String> { c.rules.iter().map(|r| t.rule_text(r)).collect() };
        for c in &new.chains {
            let after = texts(new, c);
            let before = self.find(&c.name).map(|id| texts(self, &self.chains[id])).unwrap_or_else(|| {
                d.chains_created += 1;
                Vec::new()
            });
            // The common prefix and suffix stay; the rest is replaced.
            let head = before.iter().zip(&after).take_while(|(a, b)| a == b).count();
            let tail = before[head..]
                .iter()
                .rev()
                .zip(after[head..].iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            let (removed, added) = (before.len() - head - tail, after.len() - head - tail);
            d.rules_removed += removed;
            d.rules_added += added;
            if removed + added > 0 {
                d.chains_touched += 1;
            }
        }
        for c in &self.chains {
            if new.find(&c.name).is_none() {
                d.chains_deleted += 1;
                d.rules_removed += c.rules.len();
            }
        }
        let members = |t: &FilterTable, s: &IpSet| -> Vec<String> {
            match &s.kind {
                SetType::ListSet(m) => m.iter().map(|&i| t.sets[i].name.clone()).collect(),
                _ => s.members.iter().map(|n| format!("{}/{}", n.network(), n.prefix())).collect(),
            }
        };
        for set in &new.sets {
            let after: FxHashSet<String> = members(new, set).into_iter().collect();
            let before: FxHashSet<String> = match self.find_set(&set.name) {
                Some(id) => members(self, &self.sets[id]).into_iter().collect(),
                None => {
                    d.sets_created += 1;
                    FxHashSet::default()
                }
            };
            d.set_entries_changed += after.symmetric_difference(&before).count();
        }
        for set in &self.sets {
            if new.find_set(&set.name).is_none() {
                d.sets_deleted += 1;
            }
        }
        d
    }

    /// Rules in all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    /// Walks the built-in chain `hook` for `p`. The jump stack lives on the stack: a walk
    /// allocates nothing unless traced.
    pub fn walk(&self, hook: ChainId, p: &PacketInfo, trace: bool) -> Walk {
        let mut out =
            Walk { verdict: Verdict::Accept, rules: 0, set_lookups: 0, decided_by: None, lines: Vec::new() };
        let mut mark = 0u32;
        // Return points: (chain, next rule); the walk starts in a built-in chain, so an empty
        // stack with nothing to return to means that chain's policy.
        let mut stack = [(0usize, 0usize); MAX_DEPTH];
        let mut depth = 0;
        let (mut chain, mut i) = (hook, 0usize);
        loop {
            let returned = match self.chains[chain].rules.get(i) {
                // The end of a chain returns, as RETURN does.
                None => true,
                Some(rule) => {
                    out.rules += 1;
                    if !self.matches(rule, p, mark, &mut out.set_lookups) {
                        i += 1;
                        continue;
                    }
                    if trace {
                        out.lines.push(format!(
                            "{} #{}: {}",
                            self.chains[chain].name,
                            i + 1,
                            self.rule_text(rule)
                        ));
                    }
                    match rule.target {
                        Target::Accept | Target::Drop => {
                            out.verdict =
                                if rule.target == Target::Accept { Verdict::Accept } else { Verdict::Drop };
                            out.decided_by = Some((chain, i));
                            return out;
                        }
                        Target::Return => true,
                        Target::Jump(to) => {
                            if depth == MAX_DEPTH {
                                // The kernel refuses such a ruleset at load; never built here.
                                out.verdict = Verdict::Drop;
                                out.decided_by = Some((chain, i));
                                return out;
                            }
                            stack[depth] = (chain, i + 1);
                            depth += 1;
                            (chain, i) = (to, 0);
                            false
                        }
                        Target::Goto(to) => {
                            (chain, i) = (to, 0);
                            false
                        }
                        Target::SetMark { value, mask } => {
                            mark = (mark & !mask) ^ value;
                            i += 1;
                            false
                        }
                        Target::Nothing | Target::Nflog(_) => {
                            i += 1;
                            false
                        }
                    }
                }
            };
            if !returned {
                continue;
            }
            // A built-in chain's end or RETURN applies its policy; a user chain's goes back.
            if let Some(policy) = self.chains[chain].policy {
                out.verdict = policy;
                if trace {
                    out.lines.push(format!(
                        "{}: end of chain, policy {}",
                        self.chains[chain].name,
                        verdict_name(policy)
                    ));
                }
                return out;
            }
            if depth == 0 {
                // A goto chain returning with nothing below: the hook's policy.
                out.verdict = self.chains[hook].policy.unwrap_or(Verdict::Accept);
                return out;
            }
            depth -= 1;
            (chain, i) = stack[depth];
        }
    }

    fn matches(&self, rule: &Rule, p: &PacketInfo, mark: u32, set_lookups: &mut u32) -> bool {
        rule.matches.iter().all(|m| match m {
            Match::Comment(_) => true,
            Match::In { iface, invert } => iface.matches(p.in_dev) != *invert,
            Match::Out { iface, invert } => iface.matches(p.out_dev) != *invert,
            Match::Net { dir, net, invert } => net.contains(addr(p, *dir)) != *invert,
            Match::Proto(n) => p.proto == *n,
            Match::Dports(ranges) => {
                p.dport.is_some_and(|d| ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&d)))
            }
            Match::Set { set, dir, invert } => self.set_contains(*set, addr(p, *dir), set_lookups) != *invert,
            Match::Ct(states) | Match::State(states) => states.contains(p.ct),
            Match::Mark { value, mask, invert } => ((mark & mask) == *value) != *invert,
            Match::Dport(lo, hi) => p.dport.is_some_and(|d| (*lo..=*hi).contains(&d)),
            Match::Physdev { phys_in, phys_out, is_bridged } => {
                phys_in.as_ref().is_none_or(|i| !p.phys_in.is_empty() && i.matches(p.phys_in))
                    && phys_out.as_ref().is_none_or(|o| !p.phys_out.is_empty() && o.matches(p.phys_out))
                    && (!is_bridged || p.bridged)
            }
            Match::DstLocal => p.dst_local,
        })
    }

    /// One rule as iptables-save prints it after `-A CHAIN`.
    pub fn rule_text(&self, rule: &Rule) -> String {
        let mut s = String::new();
        let net = |dir: Dir, flag: &str, s: &mut String| {
            for m in &rule.matches {
                if let Match::Net { dir: d, net, invert } = m {
                    if *d == dir {
                        let _ = write!(
                            s,
                            " {}{flag} {}/{}",
                            if *invert { "! " } else { "" },
                            net.network(),
                            net.prefix()
                        );
                    }
                }
            }
        };
        net(Dir::Src, "-s", &mut s);
        net(Dir::Dst, "-d", &mut s);
        for m in &rule.matches {
            match m {
                Match::In { iface, invert } => {
                    let _ = write!(s, " {}-i {}", if *invert { "! " } else { "" }, iface.spelled());
                }
                Match::Out { iface, invert } => {
                    let _ = write!(s, " {}-o {}", if *invert { "! " } else { "" }, iface.spelled());
                }
                _ => {}
            }
        }
        for m in &rule.matches {
            if let Match::Proto(n) = m {
                let _ = write!(s, " -p {}", proto_name(*n));
            }
        }
        for m in &rule.matches {
            match m {
                Match::Comment(c) => {
                    let _ = write!(s, " -m comment --comment \"{c}\"");
                }
                Match::Dports(r) => {
                    let list: Vec<String> = r
                        .iter()
                        .map(|&(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}:{hi}") })
                        .collect();
                    let _ = write!(s, " -m multiport --dports {}", list.join(","));
                }
                Match::Set { set, dir, invert } => {
                    let _ = write!(
                        s,
                        " -m set {}--match-set {} {}",
                        if *invert { "! " } else { "" },
                        self.sets[*set].name,
                        dir.name()
                    );
                }
                Match::Ct(states) => {
                    let _ = write!(s, " -m conntrack --ctstate {}", states.names());
                }
                Match::State(states) => {
                    let _ = write!(s, " -m state --state {}", states.names());
                }
                Match::Dport(lo, hi) => {
                    let proto = rule.matches.iter().find_map(|m| match m {
                        Match::Proto(n) => Some(proto_name(*n)),
                        _ => None,
                    });
                    let range = if lo == hi { lo.to_string() } else { format!("{lo}:{hi}") };
                    let _ = write!(s, " -m {} --dport {range}", proto.unwrap_or_default());
                }
                Match::Physdev { phys_in, phys_out, is_bridged } => {
                    // xt_physdev's save order: --physdev-in, --physdev-out, --physdev-is-bridged.
                    s.push_str(" -m physdev");
                    if let Some(i) = phys_in {
                        let _ = write!(s, " --physdev-in {}", i.spelled());
                    }
                    if let Some(o) = phys_out {
                        let _ = write!(s, " --physdev-out {}", o.spelled());
                    }
                    if *is_bridged {
                        s.push_str(" --physdev-is-bridged");
                    }
                }
                Match::DstLocal => s.push_str(" -m addrtype --dst-type LOCAL"),
                Match::Mark { value, mask, invert } => {
                    let _ =
                        write!(s, " -m mark {}--mark {value:#x}/{mask:#x}", if *invert { "! " } else { "" });
                }
                Match::In { .. } | Match::Out { .. } | Match::Net { .. } | Match::Proto(_) => {}
            }
        }
        match &rule.target {
            Target::Accept => s.push_str(" -j ACCEPT"),
            Target::Drop => s.push_str(" -j DROP"),
            Target::Return => s.push_str(" -j RETURN"),
            Target::Jump(c) => {
                let _ = write!(s, " -j {}", self.chains[*c].name);
            }
            Target::Goto(c) => {
                let _ = write!(s, " -g {}", self.chains[*c].name);
            }
            Target::SetMark { value, mask } => {
                let _ = write!(s, " -j MARK --set-xmark {value:#x}/{mask:#x}");
            }
            Target::Nothing => {}
            Target::Nflog(group) => {
                let _ = write!(s, " -j NFLOG --nflog-group {group}");
            }
        }
        s.trim_start().to_string()
    }

    /// The table as `iptables-save -t filter` prints it (no packet counters, no header).
    pub fn save(&self) -> String {
        let mut s = String::from("*filter\n");
        for c in &self.chains {
            let policy = c.policy.map_or("-", verdict_name);
            let _ = writeln!(s, ":{} {policy} [0:0]", c.name);
        }
        for c in &self.chains {
            for r in &c.rules {
                let _ = writeln!(s, "-A {} {}", c.name, self.rule_text(r));
            }
        }
        s.push_str("COMMIT\n");
        s
    }

    /// The ipsets as `ipset list -terse`-like lines: name, type, member count and members.
    pub fn save_sets(&self) -> String {
        let mut s = String::new();
        for set in &self.sets {
            let entries = match &set.kind {
                SetType::ListSet(m) => m.len(),
                _ => set.members.len(),
            };
            let _ = writeln!(
                s,
                "Name: {}\nType: {}\nNumber of entries: {entries}\nMembers:",
                set.name,
                set.kind.name()
            );
            if let SetType::ListSet(members) = &set.kind {
                for &m in members {
                    let _ = writeln!(s, "{}", self.sets[m].name);
                }
            }
            for m in &set.members {
                if m.prefix() == 32 {
                    let _ = writeln!(s, "{}", m.network());
                } else {
                    let _ = writeln!(s, "{}/{}", m.network(), m.prefix());
                }
            }
            s.push('\n');
        }
        s
    }
}

fn addr(p: &PacketInfo, dir: Dir) -> Ipv4Addr {
    match dir {
        Dir::Src => p.src,
        Dir::Dst => p.dst,
    }
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Accept => "ACCEPT",
        Verdict::Drop => "DROP",
    }
}

/// `-p` as iptables-save prints it (`/etc/protocols` names).
pub fn proto_name(n: u8) -> String {
    match n {
        1 => "icmp".into(),
        4 => "ipencap".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        let (a, p) = s.split_once('/').unwrap();
        Ipv4Net::new(a.parse().unwrap(), p.parse().unwrap()).unwrap()
    }

    fn pkt<'a>(in_dev: &'a str, out_dev: &'a str, src: &str, dport: u16, ct: CtState) -> PacketInfo<'a> {
        PacketInfo {
            in_dev,
            out_dev,
            src: src.parse().unwrap(),
            dst: "10.0.0.9".parse().unwrap(),
            proto: 6,
            dport: Some(dport),
            ct,
            phys_in: "",
            phys_out: "",
            bridged: false,
            dst_local: false,
        }
    }

    /// FORWARD -> (jump) A -> (goto) B: B's RETURN resumes in FORWARD after the jump, not in A.
    #[test]
    fn goto_returns_to_the_jumping_chains_caller() {
        let mut t = FilterTable::new();
        let (a, b) = (t.chain("A"), t.chain("B"));
        t.append(FORWARD, Rule::new(vec![], Target::Jump(a)));
        t.append(
            FORWARD,
            Rule::new(vec![Match::Mark { value: 0x1, mask: 0x1, invert: false }], Target::Drop),
        );
        t.append(a, Rule::new(vec![], Target::Goto(b)));
        t.append(a, Rule::new(vec![], Target::Accept));
        t.append(b, Rule::new(vec![], Target::SetMark { value: 1, mask: 1 }));
        t.append(b, Rule::new(vec![], Target::Return));
        let w = t.walk(FORWARD, &pkt("x", "y", "10.0.0.1", 80, CtState::New), true);
        assert_eq!(w.verdict, Verdict::Drop, "{:?}", w.lines);
        assert_eq!(w.decided_by, Some((FORWARD, 1)));
        assert_eq!(w.rules, 5);
    }

    #[test]
    fn matches_ifaces_sets_ports_ct_and_marks() {
        let mut t = FilterTable::new();
        let s = t.set("cali40s:x", || vec![net("10.1.0.5/32"), net("10.2.0.0/16")]);
        let c = t.chain("c");
        t.append(FORWARD, Rule::new(vec![Match::Ct(CtStates::RELATED_ESTABLISHED)], Target::Accept));
        t.append(
            FORWARD,
            Rule::new(vec![Match::In { iface: Iface::parse("cali+"), invert: false }], Target::Jump(c)),
        );
        t.append(FORWARD, Rule::new(vec![], Target::Drop));
        t.append(
            c,
            Rule::new(
                vec![
                    Match::Proto(6),
                    Match::Set { set: s, dir: Dir::Src, invert: false },
                    Match::Dports(vec![(80, 80), (8000, 8080)]),
                ],
                Target::Accept,
            ),
        );
        let run = |p: PacketInfo| t.walk(FORWARD, &p, false).verdict;
        assert_eq!(run(pkt("cali1", "eth0", "10.1.0.5", 8080, CtState::New)), Verdict::Accept);
        assert_eq!(run(pkt("cali1", "eth0", "10.2.3.4", 80, CtState::New)), Verdict::Accept);
        assert_eq!(run(pkt("cali1", "eth0", "10.1.0.6", 80, CtState::New)), Verdict::Drop);
        assert_eq!(run(pkt("cali1", "eth0", "10.1.0.5", 81, CtState::New)), Verdict::Drop);
        assert_eq!(run(pkt("eth0", "cali1", "10.1.0.5", 80, CtState::New)), Verdict::Drop);
        assert_eq!(run(pkt("eth0", "cali1", "1.1.1.1", 1, CtState::Established)), Verdict::Accept);
        let w = t.walk(FORWARD, &pkt("cali1", "eth0", "10.1.0.5", 80, CtState::New), false);
        assert_eq!((w.rules, w.set_lookups), (3, 1));
    }

    #[test]
    fn saves_as_iptables_save() {
        let mut t = FilterTable::new();
        let s = t.set("cali40s:abc", || vec![net("10.1.0.5/32")]);
        let c = t.chain("cali-fw-cali1");
        t.append(
            FORWARD,
            Rule::new(vec![Match::In { iface: Iface::parse("cali+"), invert: false }], Target::Goto(c)),
        );
        t.append(
            c,
            Rule::new(
                vec![
                    Match::Comment("x".into()),
                    Match::Proto(6),
                    Match::Net { dir: Dir::Dst, net: net("10.0.0.0/8"), invert: true },
                    Match::Set { set: s, dir: Dir::Dst, invert: false },
                    Match::Dports(vec![(80, 80), (90, 99)]),
                ],
                Target::SetMark { value: 0x10000, mask: 0x10000 },
            ),
        );
        t.append(c, Rule::new(vec![Match::Mark { value: 0, mask: 0x20000, invert: false }], Target::Drop));
        assert_eq!(
            t.save(),
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:cali-fw-cali1 - [0:0]\n\
             -A FORWARD -i cali+ -g cali-fw-cali1\n\
             -A cali-fw-cali1 ! -d 10.0.0.0/8 -p tcp -m comment --comment \"x\" -m set --match-set cali40s:abc dst \
             -m multiport --dports 80,90:99 -j MARK --set-xmark 0x10000/0x10000\n\
             -A cali-fw-cali1 -m mark --mark 0x0/0x20000 -j DROP\nCOMMIT\n"
        );
    }
}
