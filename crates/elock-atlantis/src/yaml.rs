//! A YAML document as a small tree that remembers the line of every node, so that every
//! message about a YAML file (atlantis.yaml, elock's own configuration) can name its line.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Map(Vec<(String, usize, Node)>),
    Seq(Vec<Node>),
    Scalar(String),
    /// An alias or anything this reader does not follow.
    Other,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub line: usize,
    pub kind: Kind,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, n)| n),
            _ => None,
        }
    }

    /// The node at a dotted path with list indices, as configuration errors name settings:
    /// `enhanced-locking.policies[2].ttl`.
    pub fn find(&self, path: &str) -> Option<&Node> {
        let mut node = self;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let (key, indices) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                node = node.get(key)?;
            }
            for index in indices.split('[').filter(|s| !s.is_empty()) {
                let i: usize = index.trim_end_matches(']').parse().ok()?;
                match &node.kind {
                    Kind::Seq(items) => node = items.get(i)?,
                    _ => return None,
                }
            }
        }
        Some(node)
    }

    /// The line of the deepest node of `path` that exists (a missing key's section).
    pub fn line_of(&self, path: &str) -> usize {
        let mut best = self.line;
        let mut prefix = String::new();
        for part in path.split('.') {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(part);
            match self.find(&prefix) {
                Some(n) => best = n.line,
                None => break,
            }
        }
        best
    }

    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }
}

enum Frame {
    Map(usize, Vec<(String, usize, Node)>, Option<(String, usize)>),
    Seq(usize, Vec<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
}

impl Builder {
    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                None => {
                    let key = node.scalar().unwrap_or_default().to_string();
                    *pending = Some((key, node.line));
                }
                Some((key, line)) => entries.push((key, line, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(s, ..) => self.push(Node {
                line,
                kind: Kind::Scalar(s),
            }),
            Event::Alias(_) => self.push(Node {
                line,
                kind: Kind::Other,
            }),
            Event::SequenceStart(..) => self.stack.push(Frame::Seq(line, Vec::new())),
            Event::MappingStart(..) => self.stack.push(Frame::Map(line, Vec::new(), None)),
            Event::SequenceEnd => {
                if let Some(Frame::Seq(l, items)) = self.stack.pop() {
                    self.push(Node {
                        line: l,
                        kind: Kind::Seq(items),
                    });
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(l, entries, _)) = self.stack.pop() {
                    self.push(Node {
                        line: l,
                        kind: Kind::Map(entries),
                    });
                }
            }
            _ => {}
        }
    }
}

/// The first document of `text`; the error names the line.
pub fn parse(text: &str) -> Result<Node, (usize, String)> {
    let mut b = Builder::default();
    Parser::new_from_str(text)
        .load(&mut b, false)
        .map_err(|e| (e.marker().line(), format!("not valid YAML: {}", e.info())))?;
    Ok(b.root.unwrap_or(Node {
        line: 1,
        kind: Kind::Map(Vec::new()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_the_line_of_a_setting() {
        let root = parse("a:\n  b: 1\n  list:\n    - x: 1\n    - x: 2\n      y: 3\n").unwrap();
        assert_eq!(root.find("a.b").map(|n| n.line), Some(2));
        assert_eq!(root.line_of("a.list[1].y"), 6);
        assert_eq!(root.line_of("a.list[1].missing"), 5);
        assert_eq!(root.find("a.list[7]"), None);
    }
}
