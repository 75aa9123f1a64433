//! `ron`'s parse errors in the file's words: each located at the offending value (`ron`
//! sometimes points just before it) and reworded where `ron`'s own message would puzzle a user
//! (Rust type names become the file's keys, "expected a quoted string" says why).

use crate::error::ScenarioError;

/// Turns a `ron` error into a located message, rewording the ones that would puzzle a user.
pub(super) fn ron_error(e: &ron::error::SpannedError, text: &str, path: &str) -> ScenarioError {
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
        "GeneratedPolicies" => "generated_policies",
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
