//! A document read in pieces has the value of the whole document, or is
//! refused (`None`) so the caller parses it whole.

use proptest::prelude::*;

use super::*;

/// Every block cut as small as it goes, runs of one item.
const FINEST: Cut = Cut {
    piece_bytes: 0,
    run_bytes: 1,
};

const CUTS: [Cut; 4] = [
    FINEST,
    Cut {
        piece_bytes: 16,
        run_bytes: 64,
    },
    Cut {
        piece_bytes: 64,
        run_bytes: 1,
    },
    Cut::DEFAULT,
];

fn whole(text: &str) -> Option<Value> {
    yaml::to_json(text, yaml::needs_yaml_value(text)).ok()
}

fn cut(text: &str, cut: Cut) -> Option<Value> {
    read_cut(text, &mut PieceMemory::default(), cut)
}

/// A bootstrap shaped like the reload benchmark's: one listener with a
/// route per cluster, clusters of `endpoints` endpoints from `port`.
fn bootstrap(clusters: usize, endpoints: usize, port: usize) -> String {
    let mut text = String::from(
        "# generated\nadmin:\n  address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }\n\
         static_resources:\n  listeners:\n  - name: main\n    address:\n      socket_address:\n\
         \x20       address: 127.0.0.1\n        port_value: 10000\n    filter_chains:\n    - filters:\n\
         \x20     - name: envoy.filters.network.http_connection_manager\n        typed_config:\n\
         \x20         \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n\
         \x20         stat_prefix: main\n          route_config:\n            virtual_hosts:\n\
         \x20           - name: all\n              domains: [\"*\"]\n              routes:\n",
    );
    for i in 0..clusters {
        text.push_str(&format!(
            "              - match: {{ prefix: \"/c{i}/\" }}\n                route: {{ cluster: c{i} }}\n"
        ));
    }
    text.push_str("  clusters:\n");
    for i in 0..clusters {
        text.push_str(&format!(
            "  - name: c{i}\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: c{i}\n      endpoints:\n      - lb_endpoints:\n"
        ));
        for j in 0..endpoints {
            text.push_str(&format!(
                "        - endpoint:\n            address:\n              socket_address:\n                address: 127.0.0.1\n                port_value: {}\n",
                port + i * endpoints + j
            ));
        }
    }
    text
}

/// Documents whose cuts are sound: each must read in pieces, to the value
/// of the whole.
fn cuttable() -> Vec<String> {
    vec![
        include_str!("../../../../config/quickstart.yaml").to_string(),
        bootstrap(40, 3, 20000),
        "---\nstatic_resources:\n  clusters:\n  - name: a\n    # a comment\n\n    type: STATIC\n# left\n  - name: b\n".into(),
        "a:\n- x\n- y: 1\n  z: 2\n-\n  w: 3\n- - n1\n  - n2\nb: 'one' # c\n\"c d\":\n  e: |\n    text\n    - not an item\n    f: not a key\n  g: >\n    folded\n".into(),
        "list:\n  - {k: v}\n  - [x, y]\n  - ok\nnum: 12\nfloat: 1.5\nnull_value: ~\nempty:\nlast: end".into(),
    ]
}

#[test]
fn cut_documents_have_the_value_of_the_whole() {
    for (k, text) in cuttable().into_iter().enumerate() {
        let expected = whole(&text).expect("the corpus is valid YAML");
        // Bootstraps (the first two) have no scalar item: even the finest
        // cut reads them in pieces.
        if k < 2 {
            assert_eq!(cut(&text, FINEST), Some(expected.clone()));
        }
        for c in CUTS {
            match cut(&text, c) {
                Some(value) => assert_eq!(value, expected, "cut {c:?} of:\n{text}"),
                // The finest cut reaches scalars under dashes and bare
                // keys, which are never cut (a piece must be a collection).
                None => assert_eq!(c.piece_bytes, 0, "cut {c:?} refused:\n{text}"),
            }
        }
    }
}

#[test]
fn the_bootstrap_is_cut_into_pieces() {
    let text = bootstrap(200, 10, 20000);
    let mut memory = PieceMemory::default();
    assert!(read(&text, &mut memory).is_some());
    // 200 clusters of about 1.2 kB and 200 routes: a few dozen runs.
    assert!(memory.len() > 20, "{} pieces", memory.len());
    assert_eq!(memory.parsed(), memory.len());
}

#[test]
fn an_edit_parses_only_the_pieces_it_touches() {
    let before = bootstrap(200, 10, 20000);
    let mut memory = PieceMemory::default();
    read(&before, &mut memory).expect("cut");
    let remembered = memory.len();

    // One port of one cluster and one route's prefix.
    let after = before
        .replacen("port_value: 20555", "port_value: 31555", 1)
        .replacen("prefix: \"/c7/\"", "prefix: \"/c7b/\"", 1);
    assert_ne!(after, before);
    let value = read(&after, &mut memory).expect("cut");
    assert_eq!(Some(value), whole(&after));
    assert!(memory.parsed() <= 2, "{} pieces parsed", memory.parsed());
    assert_eq!(memory.len(), remembered);

    // A cluster added at the front shifts nothing else.
    let added = after.replacen(
        "  clusters:\n",
        "  clusters:\n  - name: first\n    connect_timeout: 2s\n",
        1,
    );
    let value = read(&added, &mut memory).expect("cut");
    assert_eq!(Some(value), whole(&added));
    assert!(memory.parsed() <= 3, "{} pieces parsed", memory.parsed());
}

#[test]
fn a_broken_file_leaves_the_memory_for_the_fixed_one() {
    let good = bootstrap(200, 10, 20000);
    let mut memory = PieceMemory::default();
    read(&good, &mut memory).expect("cut");

    let broken = good.replacen("port_value: 21000", "port_value: \"21000", 1);
    assert_eq!(read(&broken, &mut memory), None);
    assert_eq!(whole(&broken), None);

    let fixed = good.replacen("port_value: 21000", "port_value: 21001", 1);
    assert_eq!(read(&fixed, &mut memory), whole(&fixed));
    assert!(memory.parsed() <= 1, "{} pieces parsed", memory.parsed());

    // Failed reads one after another do not pile up pieces.
    for k in 0..20 {
        let broken = good.replacen(
            &format!("port_value: {}", 20100 + k * 10),
            "port_value: [",
            1,
        );
        assert_eq!(read(&broken, &mut memory), None);
    }
    let bytes: usize = memory.pieces.keys().map(|k| k.len()).sum();
    assert!(
        bytes <= 2 * good.len() + 2 * Cut::DEFAULT.run_bytes * 4,
        "{bytes} bytes remembered"
    );
}

#[test]
fn what_cannot_be_cut_soundly_is_left_whole() {
    let refused = [
        // A quoted string whose second line looks like the next entry.
        "a:\n  b: \"one\nc: two\"\n  d: 1\n",
        // An alias whose anchor is in another piece.
        "a:\n  b: &x 1\n  c: *x\n",
        // A key given twice, in two pieces.
        "a:\n  b: 1\n  b: 2\n",
        // A flow sequence over lines, its last line where an entry could be.
        "a:\n  b: [1,\n  2]\n  c: 3\n",
        // Merge keys, tabs, CRs, a second document, a directive.
        "a: &x {b: 1}\nc:\n  <<: *x\n",
        "a:\n\tb: 1\n",
        "a:\r\n  b: 1\r\n",
        "a: 1\n---\nb: 2\n",
        "%YAML 1.2\n---\na: 1\n",
    ];
    for text in refused {
        assert_eq!(cut(text, FINEST), None, "cut:\n{text}");
    }
    // Refused means read whole: the valid ones still have their value.
    assert!(whole("a:\n  b: &x 1\n  c: *x\n").is_some());
}

/// Texts a review found where cutting once changed the value (or took a
/// text the whole parse refuses): a piece whose top node is a scalar
/// (indentation indicators, empty block scalars, plain continuations), a
/// second `---`, line breaks other than `\n`, keys that are not strings.
#[test]
fn reviewed_texts_read_as_the_whole_parse_reads_them() {
    let long = |head: &str, line: &str, tail: &str| format!("{head}{}{tail}", line.repeat(60));
    let texts = [
        "a:\n  - |1\n     x\n".to_string(),
        "r:\n  a:\n    |1\n      x\n".to_string(),
        "r:\n  a:\n    >2\n      x\n".to_string(),
        long(
            "static_resources:\n  pems:\n  - |2\n",
            "      indented line of text\n",
            "",
        ),
        "r:\n  - |\n  # comment\n  - b\n".to_string(),
        "r:\n  - >\n\n  # c\n".to_string(),
        long("r:\n  - |\n", "  # old line of a comment\n", "  - b\n"),
        "r:\n  a:\n    |\n  - x\n".to_string(),
        "a:\n  x\n- y\n".to_string(),
        "r:\n  a:\n    x\n  - y\n".to_string(),
        long("description:\n", "  plain words go on\n", "- oops\n"),
        "---\n---\na: 1\nb: 2\n".to_string(),
        "---\n# c\n---\nk: v\n".to_string()
            + &(0..200).map(|i| format!("e{i}: {i}\n")).collect::<String>(),
        "a:\n  x\u{85}- y\n".to_string(),
        "a:\n  x\u{2028}- y\n".to_string(),
        "a:\n  1: x\n".to_string() + &(0..200).map(|i| format!("e{i}: {i}\n")).collect::<String>(),
    ];
    for text in &texts {
        let expected = whole(text);
        for c in CUTS {
            if let Some(value) = cut(text, c) {
                assert_eq!(Some(value), expected, "cut {c:?} of:\n{text}");
            }
        }
    }
    // Values read back from the memory (kept as JSON text) are the very
    // values parsed: floats to the last bit, -0, the largest integers.
    let numbers = [
        "0.1",
        "1e-23",
        "9.999999e-24",
        "1.7976931348623157e308",
        "5e-324",
        "-0.0",
        "-0",
        "18446744073709551615",
        "-9223372036854775808",
        "3.141592653589793",
        "2.2250738585072014e-308",
    ];
    let text: String = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| format!("n{i}:\n  v: {n}\n"))
        .collect();
    let mut memory = PieceMemory::default();
    let first = read_cut(&text, &mut memory, FINEST);
    assert_eq!(first, whole(&text));
    let again = read_cut(&text, &mut memory, FINEST);
    assert_eq!(memory.parsed(), 0, "all from the memory");
    assert_eq!(again, whole(&text));

    // Tags and anchors (whole-file matters: the route, names defined
    // twice, the alias repetition limit) are never cut.
    let plain = "a:\n  '1': x\n".to_string()
        + &(0..200).map(|i| format!("e{i}: {i}\n")).collect::<String>();
    let tagged = plain.replace("e7: 7", "e7: 7 # fixed!");
    let mut memory = PieceMemory::default();
    assert_eq!(read_cut(&plain, &mut memory, FINEST), whole(&plain));
    assert_eq!(read_cut(&tagged, &mut memory, FINEST), None);
}

/// A second review's texts: what the whole parse checks across the file.
#[test]
fn whole_file_checks_are_not_lost_in_pieces() {
    let entries: String = (0..300).map(|i| format!("e{i}: {i}\n")).collect();
    let indented: String = (0..300).map(|i| format!("  e{i}: {i}\n")).collect();
    // A character libyaml refuses, in a comment no piece would parse.
    let control = [
        format!("# caf\u{83}\n{entries}"),
        "# \u{1}\n".to_string(),
        format!("k:\n  # \u{7f}\n{indented}"),
        "r:\n- # \u{0}\n  a: 1\n- c: d\n".to_string(),
    ];
    // Nesting past the parser's limit, counted from the top of the file.
    let mut deep = String::new();
    for i in 0..129 {
        deep.push_str(&format!(
            "{}key_number_{i:03}_padding_padding:\n",
            " ".repeat(i)
        ));
    }
    deep.push_str(&format!("{}x: 1\n", " ".repeat(129)));
    // One anchor name defined twice; the alias repetition limit.
    let twice: String = (0..60)
        .map(|i| {
            format!("- name: c{i}\n  connect_timeout: &t 1s\n  limit: &b 1024\n  refresh: *t\n")
        })
        .collect();
    let repeated: String = (0..2)
        .map(|n| {
            format!(
                "k{n}:\n- &a{n} x\n- &b{n} [{}]\n- &c{n} [{}]\n{}{}",
                vec![format!("*a{n}"); 10].join(", "),
                vec![format!("*b{n}"); 20].join(", "),
                format!("- *c{n}\n").repeat(100),
                format!("- *a{n}\n").repeat(85)
            )
        })
        .collect();
    let texts = control
        .into_iter()
        .chain([deep, format!("clusters:\n{twice}"), repeated]);
    for text in texts {
        for c in CUTS {
            if let Some(value) = cut(&text, c) {
                assert_eq!(Some(value), whole(&text), "cut {c:?} of:\n{text}");
            }
        }
    }
}

#[test]
fn bare_keys_are_told_from_values() {
    for key in [
        "name:",
        "name:   ",
        "name: # note",
        "\"@type\":",
        "'a b':",
        "lb_endpoints :",
        "x.y-z_0:",
    ] {
        assert!(is_bare_key(key), "{key}");
    }
    for line in [
        "name: a",
        "name:#x",
        "-x:",
        "\"a\\\"b\":",
        "\"open:",
        "a b:",
        ": x",
        "k: &a",
        "k: |",
    ] {
        assert!(!is_bare_key(line), "{line}");
    }
}

/// A YAML-like tree; its scalars include what makes cutting hard:
/// quoted and flow scalars over lines, block scalars, comments, anchors.
#[derive(Debug, Clone)]
enum Node {
    Scalar(String),
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,6}",
        "'[a-z :#-]{0,6}'",
        "\"[a-z :#'-]{0,6}\"",
        "[a-z]{1,3}: [a-z]{1,3}",
        Just("\"two\nk: v\"".to_string()),
        Just("'two\n- x'".to_string()),
        Just("[a,\nb: c]".to_string()),
        Just("{k: v,\n- z}".to_string()),
        Just("|\n  block\n  - text".to_string()),
        Just("|1\n  x\n   y".to_string()),
        Just(">2\n   folded".to_string()),
        Just("|".to_string()),
        Just("|+\n\n".to_string()),
        Just("word\n- more".to_string()),
        Just("word\nmore: x".to_string()),
        Just("x\u{85}- y".to_string()),
        Just("!!str 1".to_string()),
        Just("1".to_string()),
        Just("? k".to_string()),
        Just("&a1 anchored".to_string()),
        Just("*a1".to_string()),
        Just("# comment".to_string()),
        Just(String::new()),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    scalar()
        .prop_map(Node::Scalar)
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(("[a-d]{1,2}|\"q [a-b]\"|1|~", inner.clone()), 1..6)
                    .prop_map(Node::Map),
                prop::collection::vec(inner, 1..6).prop_map(Node::Seq),
            ]
        })
}

/// Renders `node` at `indent`; `style` picks among the forms YAML allows
/// (indented or compact sequences, an item's mapping on its dash line or
/// below it), and continuation lines of scalars go left or right of the
/// indentation.
fn render(node: &Node, indent: usize, style: u32, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Node::Scalar(s) => {
            let shift = if style.is_multiple_of(3) {
                0
            } else {
                indent + 2
            };
            out.push_str(&s.replace('\n', &format!("\n{}", " ".repeat(shift))));
            out.push('\n');
        }
        Node::Map(entries) => {
            for (k, (key, value)) in entries.iter().enumerate() {
                let style = style.rotate_left(k as u32 + 1);
                out.push_str(&pad);
                out.push_str(key);
                out.push(':');
                match value {
                    Node::Scalar(_) => {
                        out.push(' ');
                        render(value, indent, style, out);
                    }
                    Node::Map(_) => {
                        out.push('\n');
                        render(value, indent + 1 + (style % 3) as usize, style, out);
                    }
                    Node::Seq(_) => {
                        out.push('\n');
                        let compact = style.is_multiple_of(2);
                        render(value, if compact { indent } else { indent + 2 }, style, out);
                    }
                }
            }
        }
        Node::Seq(items) => {
            for (k, item) in items.iter().enumerate() {
                let style = style.rotate_left(k as u32 + 3);
                match item {
                    Node::Scalar(_) => {
                        out.push_str(&pad);
                        out.push_str("- ");
                        render(item, indent, style, out);
                    }
                    _ if style.is_multiple_of(2) => {
                        out.push_str(&pad);
                        out.push_str("-\n");
                        render(item, indent + 2, style, out);
                    }
                    _ => {
                        // The item's first line on the dash line.
                        let mut inner = String::new();
                        render(item, indent + 2, style, &mut inner);
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&inner[indent + 2..]);
                    }
                }
            }
        }
    }
}

/// Line edits that break structure: a line removed, moved left or right.
fn mutate(text: &str, edits: &[(usize, u8)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for &(at, edit) in edits {
        if lines.is_empty() {
            break;
        }
        let at = at % lines.len();
        match edit % 4 {
            0 => {
                lines.remove(at);
            }
            1 => lines[at].insert(0, ' '),
            2 => {
                if lines[at].starts_with(' ') {
                    lines[at].remove(0);
                }
            }
            _ => {
                let line = lines[at].clone();
                lines.insert(at, line);
            }
        }
    }
    lines.join("\n") + "\n"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The one property: whatever the text, a value read in pieces is the
    /// value of the whole text, and remembering pieces changes nothing.
    #[test]
    fn pieces_never_change_the_value(
        tree in node(),
        style in any::<u32>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        which in 0..CUTS.len(),
    ) {
        let mut text = ["", "---\n", "---\n---\n", "# c\n---\n"][(style % 4) as usize].to_string();
        render(&tree, 0, style, &mut text);
        let edited = mutate(&text, &edits);
        let c = CUTS[which];
        let mut memory = PieceMemory::default();
        for text in [&text, &edited, &text] {
            if let Some(value) = read_cut(text, &mut memory, c) {
                prop_assert_eq!(Some(value), whole(text), "cut {:?} of:\n{}", c, text);
            }
        }
    }
}
