//! A YAML document read in pieces, each piece's value remembered, so that
//! reading an edited file again parses only the pieces whose text changed.
//!
//! A 1.5 MB bootstrap (1 000 clusters) takes about 130 ms to parse whole,
//! most of a reload; an operator's edit touches a few clusters or routes.
//! Block-style YAML says its structure by indentation, so the document is
//! cut at the entries of its large mappings and the items of its large
//! sequences, and each piece is given to the YAML parser alone.
//!
//! Owns: the cutting and the memory of piece text → value ([`PieceMemory`]).
//! Must not touch: what a value means (`validate`), and errors. Whenever a
//! cut is in doubt, or a piece does not parse alone (an alias whose anchor
//! is in another piece, a quoted string cut in two), [`read`] answers
//! `None` and the caller parses the whole document, which gives the value
//! or the error with the right line.
//!
//! Why a piece means alone what it meant in the document:
//! - every cut is at a line whose indentation ends the block before it, so
//!   the text before a cut holds whole nodes; a quoted string or flow
//!   collection still open at a cut leaves its piece unclosed, which the
//!   parser refuses;
//! - a piece keeps its lines' columns and is a block mapping or sequence
//!   (or runs of its entries or items), so the nodes inside it are indented
//!   against the same columns as in the document. A piece whose top node
//!   would be a scalar is not cut: at the top of a file, block scalar
//!   indicators, empty block scalars and plain scalar continuations follow
//!   looser rules than under a key or a dash;
//! - the cutter breaks lines where libyaml does: documents with CRs, NEL,
//!   LS or PS, tabs, merge keys (`<<`), directives, or more than one
//!   document marker are not cut at all.
//!
//! The property test in `tests.rs` checks all this against the whole
//! parse on random, partly broken documents.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::yaml;

/// Where to cut: blocks up to `piece_bytes` are parsed whole (cutting them
/// saves less than the cuts cost), and runs of small sequence items come
/// to about `run_bytes` (each parse has a fixed cost: the parser's buffers).
#[derive(Debug, Clone, Copy)]
struct Cut {
    piece_bytes: usize,
    run_bytes: usize,
}

impl Cut {
    const DEFAULT: Cut = Cut {
        piece_bytes: 2048,
        run_bytes: 8192,
    };

    /// Whether a run ends after this item: with a chance of its share of
    /// `run_bytes`, decided by a hash of its text, so the same item always
    /// decides the same way wherever it is.
    fn ends_run(self, item: &str) -> bool {
        let hash = item.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        hash % self.run_bytes.max(1) as u64 <= item.len() as u64
    }
}

/// Piece text → value. The values are a second copy of the parsed
/// document (about 20 MiB of RSS for a 1.5 MB file); keeping them as JSON
/// text instead took a fifth of that but made a reload 30 ms slower. The
/// text is the operator's own file, so a fast hash is enough.
type Pieces = HashMap<Box<str>, Value, foldhash::fast::RandomState>;

/// The value of every piece of the last document read, by its text.
#[derive(Debug, Default)]
pub struct PieceMemory {
    pieces: Pieces,
    /// How many pieces the last read had to parse.
    parsed: usize,
}

impl PieceMemory {
    /// How many pieces are remembered.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// How many pieces the last read parsed (the rest were remembered).
    pub fn parsed(&self) -> usize {
        self.parsed
    }
}

/// The document's value, parsing only pieces `memory` does not hold;
/// `None` when the document cannot be cut safely or a piece does not parse
/// alone. The memory then holds this document's pieces.
pub(crate) fn read(text: &str, memory: &mut PieceMemory) -> Option<Value> {
    read_cut(text, memory, Cut::DEFAULT)
}

fn read_cut(text: &str, memory: &mut PieceMemory, cut: Cut) -> Option<Value> {
    memory.parsed = 0;
    let lines = lines(text)?;
    let mut cutter = Cutter {
        text,
        lines,
        cut,
        memory,
        fresh: Pieces::default(),
    };
    let whole = Block {
        from: 0,
        to: cutter.lines.len(),
        dash_at: None,
    };
    let value = cutter.value(whole, 0);
    let fresh = std::mem::take(&mut cutter.fresh);
    let kept_bytes: usize = memory.pieces.keys().map(|k| k.len()).sum();
    if value.is_some() || kept_bytes > text.len() {
        // Pieces of the old document that are gone are forgotten; so is
        // all but this read's when failed reads pile up.
        memory.pieces = fresh;
    } else {
        // The old document's pieces this failed read did not reach may
        // serve the next one (the fixed file).
        memory.pieces.extend(fresh);
    }
    value
}

/// One line of the document: where it is, its indentation and whether it
/// holds anything (not blank, not only a comment).
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    /// Just past the line's `\n` (or the end of the text).
    end: usize,
    indent: usize,
    content: bool,
}

/// The document's lines, or `None` for what is not cut at all.
fn lines(text: &str) -> Option<Vec<Line>> {
    // libyaml also breaks lines at NEL, LS and PS, and refuses control
    // characters anywhere, comments included, which pieces may not parse.
    // Anchors are resolved across the whole file (a name defined twice, the
    // alias repetition limit), and merge keys and tags take the
    // `yaml_serde::Value` route: such files are parsed whole.
    if text.contains([
        '\t', '\r', '\u{feff}', '\u{85}', '\u{2028}', '\u{2029}', '&',
    ]) || yaml::needs_yaml_value(text)
        || text.chars().any(|c| !allowed_by_libyaml(c))
    {
        return None;
    }
    let mut lines = Vec::with_capacity(text.len() / 32);
    let mut seen_content = false;
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let end = start + line.len();
        let body = line.trim_end_matches('\n');
        let indent = body.len() - body.trim_start_matches(' ').len();
        let rest = &body[indent..];
        let mut content = !rest.is_empty() && !rest.starts_with('#');
        if content && indent == 0 && is_document_marker(rest) {
            // One leading `---` starts the only document; anything else
            // (directives, a second document, `...`) is parsed whole.
            if seen_content || rest.trim_end() != "---" {
                return None;
            }
            content = false;
            seen_content = true;
        }
        seen_content |= content;
        lines.push(Line {
            start,
            end,
            indent,
            content,
        });
        start = end;
    }
    Some(lines)
}

/// The characters libyaml's reader accepts.
fn allowed_by_libyaml(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

fn is_document_marker(rest: &str) -> bool {
    rest.starts_with('%') || rest.starts_with("---") || rest.starts_with("...")
}

/// A run of whole lines. When `dash_at` is set, the first line is a
/// sequence item's and the `-` at that column reads as a space, which
/// leaves the item's own node.
#[derive(Debug, Clone, Copy)]
struct Block {
    from: usize,
    to: usize,
    dash_at: Option<usize>,
}

impl Block {
    /// Lines `from..to` of this block; the first keeps the blanked dash.
    fn lines(self, from: usize, to: usize) -> Block {
        Block {
            from,
            to,
            dash_at: self.dash_at.filter(|_| from == self.from),
        }
    }
}

struct Cutter<'t, 'm> {
    text: &'t str,
    lines: Vec<Line>,
    cut: Cut,
    memory: &'m mut PieceMemory,
    /// This document's pieces so far.
    fresh: Pieces,
}

impl<'t> Cutter<'t, '_> {
    fn bytes(&self, block: Block) -> usize {
        if block.from >= block.to {
            return 0;
        }
        self.lines[block.to - 1].end - self.lines[block.from].start
    }

    fn text(&self, block: Block) -> Cow<'t, str> {
        if block.from >= block.to {
            return Cow::Borrowed("");
        }
        let start = self.lines[block.from].start;
        let text = &self.text[start..self.lines[block.to - 1].end];
        match block.dash_at {
            None => Cow::Borrowed(text),
            Some(column) => {
                let mut owned = text.to_string();
                owned.replace_range(column..=column, " ");
                Cow::Owned(owned)
            }
        }
    }

    /// Where line `i`'s content starts, and its text from there.
    fn content(&self, block: Block, i: usize) -> (usize, &'t str) {
        let line = self.lines[i];
        let body = self.text[line.start..line.end].trim_end_matches('\n');
        match block.dash_at.filter(|_| i == block.from) {
            Some(dash) => {
                let after = &body[dash + 1..];
                let rest = after.trim_start_matches(' ');
                (body.len() - rest.len(), rest)
            }
            None => (line.indent, &body[line.indent..]),
        }
    }

    fn is_content(&self, block: Block, i: usize) -> bool {
        if block.dash_at.is_some() && i == block.from {
            let (_, rest) = self.content(block, i);
            return !rest.is_empty() && !rest.starts_with('#');
        }
        self.lines[i].content
    }

    /// The content lines of `block`, with the column each starts at.
    fn content_lines(&self, block: Block) -> impl Iterator<Item = (usize, usize, &'t str)> + '_ {
        (block.from..block.to)
            .filter(move |&i| self.is_content(block, i))
            .map(move |i| {
                let (column, rest) = self.content(block, i);
                (i, column, rest)
            })
    }

    /// The value of a block holding one node (or none: null), inside
    /// `depth` collections of the document.
    fn value(&mut self, block: Block, depth: usize) -> Option<Value> {
        let Some((_, indent, first)) = self.content_lines(block).next() else {
            return Some(Value::Null);
        };
        // A piece is parsed as if it were a whole file, and a scalar at the
        // top of a file follows looser indentation rules than one under a
        // key or a dash (block scalar indicators, empty block scalars,
        // plain scalars continued by any line). Only collections keep their
        // meaning: a piece that is not one is parsed with the whole file.
        let opens = Opens::line(first);
        if self.bytes(block) <= self.cut.piece_bytes {
            let value = self.piece(block, depth)?;
            return match (opens, &value) {
                (Opens::Sequence, Value::Array(_)) | (Opens::Mapping, Value::Object(_)) => {
                    Some(value)
                }
                _ => None,
            };
        }
        match opens {
            Opens::Sequence => self.sequence(block, indent, depth),
            Opens::Mapping => self.mapping(block, indent, depth),
            Opens::Other => None,
        }
    }

    fn sequence(&mut self, block: Block, indent: usize, depth: usize) -> Option<Value> {
        let mut starts = Vec::new();
        for (i, column, rest) in self.content_lines(block) {
            if column < indent || (column == indent && !is_item(rest)) {
                return None;
            }
            if column == indent {
                starts.push(i);
            }
        }
        let mut items = Vec::with_capacity(starts.len());
        // Small items are parsed in runs, which costs less than one by
        // one; a run ends after an item picked by its own text, so an edit
        // changes the run it is in and leaves the others as they were.
        let mut run_from = None;
        for (k, &from) in starts.iter().enumerate() {
            let to = starts.get(k + 1).copied().unwrap_or(block.to);
            let item = block.lines(from, to);
            // An item whose own line is already an item (`- - a`) is
            // parsed whole: one blanked dash per line is all a block holds.
            if self.bytes(item) <= self.cut.piece_bytes || item.dash_at.is_some() {
                let run_start = *run_from.get_or_insert(from);
                let run = block.lines(run_start, to);
                if to == block.to
                    || self.bytes(run) >= 4 * self.cut.run_bytes
                    || self.cut.ends_run(&self.text(item))
                {
                    self.items_into(run, depth, &mut items)?;
                    run_from = None;
                }
                continue;
            }
            if let Some(run_start) = run_from.take() {
                self.items_into(block.lines(run_start, from), depth, &mut items)?;
            }
            let (_, rest) = self.content(item, from);
            let after_dash = rest[1..].trim_start_matches(' ');
            let inner = if after_dash.is_empty() || after_dash.starts_with('#') {
                block.lines(from + 1, to)
            } else {
                Block {
                    from,
                    to,
                    dash_at: Some(indent),
                }
            };
            items.push(self.value(inner, depth + 1)?);
        }
        Some(Value::Array(items))
    }

    /// Parses a run of whole items and appends them.
    fn items_into(&mut self, run: Block, depth: usize, items: &mut Vec<Value>) -> Option<()> {
        let Value::Array(parsed) = self.piece(run, depth)? else {
            return None;
        };
        items.extend(parsed);
        Some(())
    }

    fn mapping(&mut self, block: Block, indent: usize, depth: usize) -> Option<Value> {
        let mut starts = Vec::new();
        for (i, column, rest) in self.content_lines(block) {
            if column < indent {
                return None;
            }
            // An item at the mapping's own indentation belongs to the
            // entry before it (`key:` then `- a` under it).
            if column == indent && !is_item(rest) {
                starts.push(i);
            }
        }
        let mut map = Map::new();
        for (k, &from) in starts.iter().enumerate() {
            let to = starts.get(k + 1).copied().unwrap_or(block.to);
            let entry = block.lines(from, to);
            let (_, key_line) = self.content(entry, from);
            if self.bytes(entry) <= self.cut.piece_bytes || !is_bare_key(key_line) {
                let Value::Object(parsed) = self.piece(entry, depth)? else {
                    return None;
                };
                for (key, value) in parsed {
                    if map.insert(key, value).is_some() {
                        return None;
                    }
                }
                continue;
            }
            // The key as the parser reads it, from its line alone.
            let Value::Object(key_only) = self.piece(entry.lines(from, from + 1), depth)? else {
                return None;
            };
            let mut keys = key_only.into_iter();
            let (Some((key, Value::Null)), None) = (keys.next(), keys.next()) else {
                return None;
            };
            let value = self.value(block.lines(from + 1, to), depth + 1)?;
            if map.insert(key, value).is_some() {
                return None;
            }
        }
        Some(Value::Object(map))
    }

    /// A piece's value: remembered, or parsed now. `depth` collections
    /// enclose it in the document: the parser's nesting limit counts them
    /// in a whole parse, but not when the piece is parsed alone.
    fn piece(&mut self, block: Block, depth: usize) -> Option<Value> {
        let value = self.piece_value(block)?;
        (depth + nesting(&value, MAX_NESTING) <= MAX_NESTING).then_some(value)
    }

    fn piece_value(&mut self, block: Block) -> Option<Value> {
        let text = self.text(block);
        let value = match self.memory.pieces.remove(text.as_ref()) {
            Some(value) => value,
            // The same text twice in one document.
            None if self.fresh.contains_key(text.as_ref()) => {
                return self.fresh.get(text.as_ref()).cloned();
            }
            None => {
                self.memory.parsed += 1;
                yaml::to_json(&text, false).ok()?
            }
        };
        self.fresh.insert(text.into(), value.clone());
        Some(value)
    }
}

/// Deeper than this, the whole file is parsed (yaml_serde refuses more
/// than 128 levels; the margin covers how pieces wrap their nodes).
const MAX_NESTING: usize = 100;

/// How many collections deep `value` goes, counting up to `limit + 1`.
fn nesting(value: &Value, limit: usize) -> usize {
    fn deepest<'a>(children: impl Iterator<Item = &'a Value>, limit: usize) -> usize {
        if limit == 0 {
            return 1;
        }
        1 + children.map(|v| nesting(v, limit - 1)).max().unwrap_or(0)
    }
    match value {
        Value::Array(items) => deepest(items.iter(), limit),
        Value::Object(map) => deepest(map.values(), limit),
        _ => 0,
    }
}

/// `- ...` or a lone `-`: a sequence item.
fn is_item(rest: &str) -> bool {
    rest == "-" || rest.starts_with("- ")
}

/// The kind of node a block's first line opens, as far as the cutter can
/// tell for sure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opens {
    /// `- ...`: a block sequence.
    Sequence,
    /// `key: ...`: a block mapping.
    Mapping,
    /// A scalar, a flow collection, a node with an anchor or a tag, an
    /// explicit key (`? `), or a key the cutter does not read.
    Other,
}

impl Opens {
    fn line(first: &str) -> Opens {
        if is_item(first) {
            Opens::Sequence
        } else if after_key(first).is_some() {
            Opens::Mapping
        } else {
            Opens::Other
        }
    }
}

/// What follows `key:` on a line that starts with a key the cutter reads:
/// a plain word, or a quoted one without escapes, then `:` and a space or
/// the end of the line.
fn after_key(line: &str) -> Option<&str> {
    let after_key = if let Some(quoted) = line.strip_prefix('"') {
        let end = quoted.find(['"', '\\'])?;
        if quoted.as_bytes()[end] != b'"' {
            return None;
        }
        &quoted[end + 1..]
    } else if let Some(quoted) = line.strip_prefix('\'') {
        &quoted[quoted.find('\'')? + 1..]
    } else {
        let end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
            .unwrap_or(line.len());
        if end == 0 || line.starts_with(['-', '.']) {
            return None;
        }
        &line[end..]
    };
    let value = after_key.trim_start_matches(' ').strip_prefix(':')?;
    // `key:#x` and `key:x` are one plain word, not a key.
    (value.is_empty() || value.starts_with(' ')).then_some(value)
}

/// `key:` with nothing after it but a comment: its value is the block
/// below.
fn is_bare_key(line: &str) -> bool {
    after_key(line).is_some_and(|value| {
        let rest = value.trim_start_matches(' ');
        rest.is_empty() || rest.starts_with('#')
    })
}

#[cfg(test)]
mod tests;
