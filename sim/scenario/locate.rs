//! Finds where a value sits in a scenario's text, so that errors found after parsing (overlapping
//! CIDRs, a selector that matches nothing) can still be reported as `file:line:col`.
//!
//! It re-reads the text with a small, forgiving RON reader that keeps only positions: struct
//! fields, tuple and list elements, map entries. Comments and string contents are skipped. It
//! is only used on text that `ron` already accepted, so it does not report syntax errors: on
//! anything it does not understand it stops and the lookup answers with the deepest position
//! found so far (at worst 1:1). It never panics.

/// One step of a key path: a struct field or map key, or an element index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Idx(usize),
}

impl<'a> From<&'a str> for Seg<'a> {
    fn from(k: &'a str) -> Self {
        Seg::Key(k)
    }
}
impl From<usize> for Seg<'_> {
    fn from(i: usize) -> Self {
        Seg::Idx(i)
    }
}

/// A 1-based (line, column) position; columns count characters, as `ron` does.
pub type Pos = (usize, usize);

/// Position of the value at `path` in `text`, or of its deepest ancestor that exists (a field
/// left out of the file points at the struct that would hold it).
pub fn find(text: &str, path: &[Seg]) -> Pos {
    let toks = tokenize(text);
    let mut i = 0;
    match parse_value(&toks, &mut i, 0) {
        Some(root) => lookup(&root, path),
        None => (1, 1),
    }
}

#[derive(Debug)]
enum Tok {
    Punct(char),
    Ident(String),
    Str(String),
    /// Numbers, chars and anything else that is one atom.
    Other,
}

fn tokenize(text: &str) -> Vec<(Tok, Pos)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    // Advances over `n` characters, keeping line and column.
    let advance = |i: &mut usize, line: &mut usize, col: &mut usize, n: usize| {
        for _ in 0..n {
            if let Some(&c) = chars.get(*i) {
                if c == '\n' {
                    *line += 1;
                    *col = 1;
                } else {
                    *col += 1;
                }
                *i += 1;
            }
        }
    };
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        let pos = (line, col);
        if c.is_whitespace() {
            advance(&mut i, &mut line, &mut col, 1);
        } else if c == '/' && next == Some('/') {
            while chars.get(i).is_some_and(|&c| c != '\n') {
                advance(&mut i, &mut line, &mut col, 1);
            }
        } else if c == '/' && next == Some('*') {
            // RON block comments nest.
            let mut depth = 0usize;
            loop {
                match (chars.get(i), chars.get(i + 1)) {
                    (Some('/'), Some('*')) => {
                        depth += 1;
                        advance(&mut i, &mut line, &mut col, 2);
                    }
                    (Some('*'), Some('/')) => {
                        depth = depth.saturating_sub(1);
                        advance(&mut i, &mut line, &mut col, 2);
                        if depth == 0 {
                            break;
                        }
                    }
                    (Some(_), _) => advance(&mut i, &mut line, &mut col, 1),
                    (None, _) => break,
                }
            }
        } else if c == '#' {
            // `#![enable(...)]` attribute: skip to its closing bracket.
            let mut depth = 0usize;
            while let Some(&c) = chars.get(i) {
                advance(&mut i, &mut line, &mut col, 1);
                match c {
                    '[' => depth += 1,
                    ']' if depth <= 1 => break,
                    ']' => depth -= 1,
                    _ => {}
                }
            }
        } else if c == '"' || ((c == 'b' || c == 'r') && matches!(next, Some('"') | Some('#'))) {
            let s = read_string(&chars, &mut i, &mut line, &mut col, &advance);
            out.push((Tok::Str(s), pos));
        } else if c == '\'' {
            advance(&mut i, &mut line, &mut col, 1);
            while let Some(&c) = chars.get(i) {
                advance(&mut i, &mut line, &mut col, if c == '\\' { 2 } else { 1 });
                if c == '\'' {
                    break;
                }
            }
            out.push((Tok::Other, pos));
        } else if c.is_alphabetic() || c == '_' {
            let mut s = String::new();
            while let Some(&c) = chars.get(i).filter(|c| c.is_alphanumeric() || **c == '_') {
                s.push(c);
                advance(&mut i, &mut line, &mut col, 1);
            }
            out.push((Tok::Ident(s), pos));
        } else if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') {
            let mut prev = ' ';
            let mut first = true;
            while let Some(&c) = chars.get(i) {
                let sign_ok = matches!(c, '-' | '+') && (first || matches!(prev, 'e' | 'E'));
                if !(c.is_alphanumeric() || c == '_' || c == '.' || sign_ok) {
                    break;
                }
                prev = c;
                first = false;
                advance(&mut i, &mut line, &mut col, 1);
            }
            out.push((Tok::Other, pos));
        } else {
            out.push((Tok::Punct(c), pos));
            advance(&mut i, &mut line, &mut col, 1);
        }
    }
    out
}

/// Reads `"..."`, `b"..."` or `r#"..."#` starting at `i`; returns the (roughly unescaped) content.
fn read_string(
    chars: &[char],
    i: &mut usize,
    line: &mut usize,
    col: &mut usize,
    advance: &dyn Fn(&mut usize, &mut usize, &mut usize, usize),
) -> String {
    let mut s = String::new();
    if chars.get(*i) == Some(&'b') {
        advance(i, line, col, 1);
    }
    if chars.get(*i) == Some(&'r') {
        advance(i, line, col, 1);
        let mut hashes = 0;
        while chars.get(*i) == Some(&'#') {
            hashes += 1;
            advance(i, line, col, 1);
        }
        advance(i, line, col, 1); // opening quote
        while let Some(&c) = chars.get(*i) {
            advance(i, line, col, 1);
            if c == '"' && (0..hashes).all(|k| chars.get(*i + k) == Some(&'#')) {
                advance(i, line, col, hashes);
                break;
            }
            s.push(c);
        }
        return s;
    }
    advance(i, line, col, 1); // opening quote
    while let Some(&c) = chars.get(*i) {
        advance(i, line, col, 1);
        match c {
            '"' => break,
            '\\' => {
                if let Some(&e) = chars.get(*i) {
                    s.push(e);
                    advance(i, line, col, 1);
                }
            }
            _ => s.push(c),
        }
    }
    s
}

struct Val {
    pos: Pos,
    kind: Kind,
}

enum Kind {
    /// A string (its content), an identifier, or an opaque atom (`None`).
    Atom(Option<String>),
    /// `(a: .., b: ..)` or `Name(a: .., b: ..)`.
    Fields(Vec<(String, Val)>),
    /// `(x, y)` or `Name(x)`.
    Tuple(Vec<Val>),
    /// `[x, y]`.
    Seq(Vec<Val>),
    /// `{k: v}`.
    Map(Vec<(Val, Val)>),
}

const MAX_DEPTH: usize = 256;

fn punct(toks: &[(Tok, Pos)], i: usize, c: char) -> bool {
    matches!(toks.get(i), Some((Tok::Punct(p), _)) if *p == c)
}

fn parse_value(toks: &[(Tok, Pos)], i: &mut usize, depth: usize) -> Option<Val> {
    if depth > MAX_DEPTH {
        return None;
    }
    let (tok, pos) = toks.get(*i)?;
    let pos = *pos;
    *i += 1;
    match tok {
        Tok::Punct('(') => parse_group(toks, i, pos, depth),
        Tok::Punct('[') => {
            let items = parse_items(toks, i, ']', depth)?;
            Some(Val { pos, kind: Kind::Seq(items) })
        }
        Tok::Punct('{') => {
            let mut entries = Vec::new();
            while !punct(toks, *i, '}') {
                let k = parse_value(toks, i, depth + 1)?;
                if !punct(toks, *i, ':') {
                    return None;
                }
                *i += 1;
                let v = parse_value(toks, i, depth + 1)?;
                entries.push((k, v));
                if punct(toks, *i, ',') {
                    *i += 1;
                }
            }
            *i += 1;
            Some(Val { pos, kind: Kind::Map(entries) })
        }
        Tok::Ident(name) => {
            if punct(toks, *i, '(') {
                *i += 1;
                parse_group(toks, i, pos, depth)
            } else {
                Some(Val { pos, kind: Kind::Atom(Some(name.clone())) })
            }
        }
        Tok::Str(s) => Some(Val { pos, kind: Kind::Atom(Some(s.clone())) }),
        Tok::Other => Some(Val { pos, kind: Kind::Atom(None) }),
        Tok::Punct(_) => None,
    }
}

/// The inside of `( ... )`, the opening parenthesis already consumed.
fn parse_group(toks: &[(Tok, Pos)], i: &mut usize, pos: Pos, depth: usize) -> Option<Val> {
    let is_struct = matches!(toks.get(*i), Some((Tok::Ident(_), _))) && punct(toks, *i + 1, ':');
    if !is_struct {
        let items = parse_items(toks, i, ')', depth)?;
        return Some(Val { pos, kind: Kind::Tuple(items) });
    }
    let mut fields = Vec::new();
    while !punct(toks, *i, ')') {
        let Some((Tok::Ident(name), _)) = toks.get(*i) else {
            return None;
        };
        if !punct(toks, *i + 1, ':') {
            return None;
        }
        *i += 2;
        let v = parse_value(toks, i, depth + 1)?;
        fields.push((name.clone(), v));
        if punct(toks, *i, ',') {
            *i += 1;
        }
    }
    *i += 1;
    Some(Val { pos, kind: Kind::Fields(fields) })
}

fn parse_items(toks: &[(Tok, Pos)], i: &mut usize, close: char, depth: usize) -> Option<Vec<Val>> {
    let mut items = Vec::new();
    while !punct(toks, *i, close) {
        items.push(parse_value(toks, i, depth + 1)?);
        if punct(toks, *i, ',') {
            *i += 1;
        }
    }
    *i += 1;
    Some(items)
}

fn lookup(root: &Val, path: &[Seg]) -> Pos {
    let mut v = root;
    for seg in path {
        // A one-element tuple such as `List([...])` or `Pod("x")` is see-through.
        while let Kind::Tuple(xs) = &v.kind {
            match xs.as_slice() {
                [only] => v = only,
                _ => break,
            }
        }
        let next = match (&v.kind, *seg) {
            (Kind::Fields(fs), Seg::Key(k)) => fs.iter().find(|(n, _)| n == k).map(|(_, x)| x),
            (Kind::Map(es), Seg::Key(k)) => {
                es.iter().find(|(key, _)| matches!(&key.kind, Kind::Atom(Some(s)) if s == k)).map(|(_, x)| x)
            }
            (Kind::Seq(xs) | Kind::Tuple(xs), Seg::Idx(n)) => xs.get(n),
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => break,
        }
    }
    v.pos
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"// a comment with "quotes" and ( parens
Scenario(
    name: "x", /* block /* nested */ comment */
    network: (pod_cidr: "10.244.0.0/16"),
    nodes: List([(name: "a"), (name: "b", mtu: 9000)]),
    workloads: [
        (name: "w", from: Pod("a"), to: Labels({"app": "srv"}), x: -1.5e-3),
    ],
)
"#;

    #[test]
    fn finds_paths() {
        assert_eq!(find(TEXT, &["network".into(), "pod_cidr".into()]), (4, 25));
        assert_eq!(find(TEXT, &["nodes".into(), 1.into(), "mtu".into()]), (5, 48));
        assert_eq!(find(TEXT, &["workloads".into(), 0.into(), "to".into()]), (7, 41));
        assert_eq!(find(TEXT, &["workloads".into(), 0.into(), "to".into(), "app".into()]), (7, 56));
        // Missing leaf: the deepest existing ancestor.
        assert_eq!(find(TEXT, &["nodes".into(), 0.into(), "cores".into()]), (5, 18));
        assert_eq!(find(TEXT, &[]), (2, 1));
    }

    #[test]
    fn never_panics_on_garbage() {
        for t in ["", "(", "[(]", "\"unterminated", "/* open", "r#\"x", "Scenario(a: ", "'"] {
            let _ = find(t, &["a".into(), 3.into()]);
        }
    }
}
