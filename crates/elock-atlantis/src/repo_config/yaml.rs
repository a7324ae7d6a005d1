//! A YAML document as a small tree that remembers the line of every node, so that every
//! message about atlantis.yaml can name its line.

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
