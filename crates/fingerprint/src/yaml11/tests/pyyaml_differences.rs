//! Where PyYAML 3.x and saphyr-parser read a document differently (most
//! found by the generated corpus): outcomes are PyYAML's under Python 2.7.

use super::*;
use crate::yaml11::compose::compose;
use crate::yaml11::scanner::UNDER_INDENTED_QUOTED;

/// Generated cases g0020, g0068, g0091, g0138, g0160, g0165, g0381, g0400:
/// a raw NEL folded as a line break in PyYAML, kept as a character by
/// saphyr. Expected values are PyYAML 3.10's under Python 2.7.
#[test]
fn nel_is_a_line_break_as_in_pyyaml() {
    assert_eq!(json("a: x\u{85}  y\n"), r#"{"a": "x y"}"#);
    assert_eq!(json("a: \"q\u{85}  r\"\n"), r#"{"a": "q r"}"#);
    assert_eq!(json("a: x\r\u{85}  y\n"), r#"{"a": "x\ny"}"#);
    assert_eq!(json("a: |\n  x\u{85}  y\n"), r#"{"a": "x\ny\n"}"#);
    assert_eq!(json("a: x # c\u{85}b: 1\n"), r#"{"a": "x", "b": 1}"#);
    // The escape \N is a NEL character, not a line break.
    assert_eq!(json("a: \"q\\Nr\"\n"), r#"{"a": "q\u0085r"}"#);
    // PyYAML: "could not find expected ':'" at line 3, column 1.
    let e = load("a: x\u{85}y\n".as_bytes()).unwrap_err();
    assert_eq!((e.line, e.col), (3, 1), "{e:?}");
}

/// PyYAML does not check a quoted scalar's continuation indentation;
/// saphyr refused these (generated cases with a NEL in a quoted scalar,
/// e.g. g0002). Expected values are PyYAML 3.10's under Python 2.7.
#[test]
fn quoted_continuation_lines_need_no_indentation() {
    assert_eq!(json("a: \"q\nr\"\n"), r#"{"a": "q r"}"#);
    assert_eq!(json("a: 'q\nr'\n"), r#"{"a": "q r"}"#);
    assert_eq!(
        json("x:\n  a: \"q\\\n\n\\\"r\"\n  b: 'it''s\n\n one'\n"),
        r#"{"x": {"a": "q\n\"r", "b": "it's\none"}}"#
    );
    assert_eq!(json("- \"a\n\"\n- 'b\nc'\n"), r#"["a ", "b c"]"#);
    // A document separator inside is an error in both.
    assert!(load(b"a: \"q\n--- r\"\n").is_err());
    // The check is done on saphyr's message: it must still be this one.
    let e = compose("a: \"q\nr\"\n").unwrap_err();
    assert_eq!(e.message, UNDER_INDENTED_QUOTED);
}

/// Generated cases g0001, g0010, g0303, g0305, g0400, g0498: a block
/// scalar ending the file without a line break. Expected values are
/// PyYAML 3.10's under Python 2.7.
#[test]
fn block_scalar_at_end_of_file_without_line_break_has_none() {
    assert_eq!(json("a: |\n  x\n  y"), r#"{"a": "x\ny"}"#);
    assert_eq!(json("a: >+\n  x\n\n  y  "), r#"{"a": "x\ny  "}"#);
    assert_eq!(json("- >\n  a\n  b"), r#"["a b"]"#);
    assert_eq!(json("a: |2\n    x"), r#"{"a": "  x"}"#);
    assert_eq!(json("a: |-\n  x"), r#"{"a": "x"}"#);
    // The last line is no content: the break after x stays.
    assert_eq!(json("a: |\n  x\n# c"), r#"{"a": "x\n"}"#);
    assert_eq!(json("a: |\n  x\nb: y"), r#"{"a": "x\n", "b": "y"}"#);
    assert_eq!(json("a: |\n  x\n"), r#"{"a": "x\n"}"#);
}

/// A block scalar followed by a last line of blanks only, without a line
/// break: saphyr read it as one more line. Expected values are PyYAML
/// 3.10's under Python 2.7.
#[test]
fn block_scalar_then_blanks_at_end_of_file_without_line_break() {
    for (yaml, want) in [
        ("a: |\n  x\n  ", r#"{"a": "x\n"}"#),
        ("a: |\n  x\n   ", r#"{"a": "x\n "}"#),
        ("a: |\n  x\n ", r#"{"a": "x\n"}"#),
        ("a: >\n  x\n  y\n  ", r#"{"a": "x y\n"}"#),
        ("a: |+\n  x\n\n  ", r#"{"a": "x\n\n"}"#),
        ("a: |+\n  x\n\n ", r#"{"a": "x\n\n"}"#),
        ("a: |-\n  x\n   ", r#"{"a": "x\n "}"#),
        ("a: |\n  \n  x\n  ", r#"{"a": "\nx\n"}"#),
        ("a: |1\n  x\n ", r#"{"a": " x\n"}"#),
        ("m:\n  a: |2\n      x\n     ", r#"{"m": {"a": "  x\n "}}"#),
        ("m:\n  a: |2\n      x\n   ", r#"{"m": {"a": "  x\n"}}"#),
        ("- - |\n    x\n    ", r#"[["x\n"]]"#),
        ("a: |\n  x\n  \t", r#"{"a": "x\n\t"}"#),
        ("a: |+ # c\n   ", r#"{"a": ""}"#),
        ("a: |+\n\n  ", r#"{"a": "\n"}"#),
        ("|+\n  \n  ", r#""\n""#),
    ] {
        assert_eq!(json(yaml), want, "{yaml:?}");
    }
}

/// Generated case g0498: PyYAML's `.nan` is one object, so two `.nan`
/// keys are one key; `!!float nan` is a new NaN each time. Expected values
/// are PyYAML 3.10's under Python 2.7.
#[test]
fn nan_keys_are_one_key_as_pyyaml_nan_value_is_one_object() {
    assert_eq!(json("{.nan: a, .NaN: b, c: 1}"), r#"{"NaN": "b", "c": 1}"#);
    assert_eq!(json("{.nan: a, !!float -.nan: b}"), r#"{"NaN": "b"}"#);
    assert_eq!(
        json("{.nan: a, !!float nan: b}"),
        r#"{"NaN": "a", "NaN": "b"}"#
    );
    assert_eq!(
        json("{!!float nan: a, !!float nan: b}"),
        r#"{"NaN": "a", "NaN": "b"}"#
    );
    assert_eq!(json("[.nan, .nan]"), "[NaN, NaN]");
}

/// Generated cases g0017, g0058, g0062 and 18 more: PyYAML reads LS and
/// PS as line breaks, so a key holding one spans lines and is refused
/// (saphyr read them as characters). Outcomes are PyYAML 3.10's under
/// Python 2.7.
#[test]
fn a_key_holding_ls_or_ps_is_refused_as_pyyaml_refuses_it() {
    for refused in [
        "\"a\u{2028}x\": 1\n",
        "m:\n  &a !!str 'a\u{2029}x': 1\n",
        "{\"a\u{2028}x\": 1}\n",
        "- k: 1\n  a\u{2028}x: 2\n",
    ] {
        let e = load(refused.as_bytes()).unwrap_err();
        assert!(e.message.contains("simple key"), "{refused:?}: {e:?}");
    }
    // Values may hold them; an explicit key may span lines.
    assert_eq!(json("a: \"x\u{2028}y\"\n"), r#"{"a": "x\u2028y"}"#);
    assert_eq!(json("? \"a\u{2028}x\"\n: 1\n"), r#"{"a\u2028x": 1}"#);
}

/// PyYAML skips only spaces between tokens, so a line whose first
/// character after its spaces is a tab is refused unless the tab is text
/// (a quoted scalar's continuation line, a block scalar's content line
/// indented to its content indentation); saphyr allowed tabs there, and
/// refused a quoted scalar's continuation line starting with a tab,
/// which PyYAML loads. Outcomes are PyYAML 3.10's and 5.4.1's (the
/// same) under Python 2.7.
#[test]
fn a_line_starting_with_a_tab_outside_scalar_text_is_refused_as_pyyaml_refuses_it() {
    for (refused, line, col) in [
        ("a: |\n  x\n\t", 3, 1),
        ("a: |\n  x\n\t\n", 3, 1),
        ("a: |\n  x\n\t\nb: 1\n", 3, 1),
        ("a: |\n  x\n \t", 3, 2),
        ("a: |\n  x\n\n\t", 4, 1),
        ("a: |\n  x\n   \n\t", 4, 1),
        ("a: |\n  x\n\t# c\n", 3, 1),
        ("a: |+\n  x\n\t", 3, 1),
        ("a: >\n  x\n\t", 3, 1),
        ("- |\n  x\n\t", 3, 1),
        ("a:\n  b: |\n  \t\n", 3, 3),
        ("a: |2\n   x\n \t\n", 3, 2),
        ("a: x\n\t", 2, 1),
        ("a: 1\n\t\nb: 2\n", 2, 1),
        ("a: 'x'\n\t", 2, 1),
        ("a: b\n  \tc\n", 2, 3),
        ("a: 1\n  \t# c\n", 2, 3),
        ("[1,\n\t2]\n", 2, 1),
        ("---\n\t\n", 2, 1),
        ("\t", 1, 1),
    ] {
        let e = load(refused.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("{refused:?} loaded"));
        assert!(e.message.contains("'\\t'"), "{refused:?}: {e:?}");
        assert_eq!((e.line, e.col), (line, col), "{refused:?}");
    }
    // saphyr refuses these by itself (elsewhere, with another message).
    assert!(load(b"a: |\n  x\n \t\n  y\n").is_err());
    assert!(load(b"a: b\n\tc\n").is_err());
    for (accepted, expected) in [
        ("a: |\n  x\n  \t", r#"{"a": "x\n\t"}"#),
        ("a: |\n  x\n  \ty\nb: 1\n", r#"{"a": "x\n\ty\n", "b": 1}"#),
        ("a: |\n  \t\n", r#"{"a": "\t\n"}"#),
        ("a: |2\n   x\n  \t\n", r#"{"a": " x\n\t\n"}"#),
        ("a: 1\n# \tc\n", r#"{"a": 1}"#),
        ("a: |\n  \tx\n", r#"{"a": "\tx\n"}"#),
        ("a: \"x\n\ty\"\n", r#"{"a": "x y"}"#),
        ("a: 'x\n\ty'\n", r#"{"a": "x y"}"#),
        ("- \"x\n\t\ty\n\t z\"\n", r#"["x y z"]"#),
        ("a:\n  b: \"x\n\ty\n   \tz\"\n", r#"{"a": {"b": "x y z"}}"#),
        ("a:\n  b: \"x\n\t\n\ty\"\n", r#"{"a": {"b": "x\ny"}}"#),
        ("a: >-\n\n  \tx\n  y\n", r#"{"a": "\n\tx\ny"}"#),
        ("- |1\n  \tx\n", r#"[" \tx\n"]"#),
        ("a: \"x\n  \ty\"\n", r#"{"a": "x y"}"#),
        ("a: 'x\n  \ty'\n", r#"{"a": "x y"}"#),
        ("[\"x\n\ty\"]\n", r#"["x y"]"#),
        ("- 'x\n \t y'\n", r#"["x y"]"#),
    ] {
        assert_eq!(json(accepted), expected, "{accepted:?}");
    }
}

/// PyYAML reads a comment right after a quoted scalar or a flow
/// collection, saphyr wants a blank before it; after a block scalar's
/// header both refuse it. Outcomes are PyYAML 3.10's and 5.4.1's (the
/// same) under Python 2.7.
#[test]
fn a_comment_right_after_a_quoted_scalar_or_flow_collection_loads_as_in_pyyaml() {
    for (accepted, expected) in [
        ("a: 'x'#c\n", r#"{"a": "x"}"#),
        ("a: \"x\"#c\nb: 1\n", r#"{"a": "x", "b": 1}"#),
        ("[a, 'b'#c\n]\n", r#"["a", "b"]"#),
        ("{a: 1}#c\n", r#"{"a": 1}"#),
        ("- [1]#c\n- 2\n", r#"[[1], 2]"#),
        ("a: &x 'y'#c\nb: *x\n", r#"{"a": "y", "b": "y"}"#),
        ("'k'#c: v\n", r#""k""#),
    ] {
        assert_eq!(json(accepted), expected, "{accepted:?}");
    }
    assert!(load(b"a: |#c\n  x\n").is_err());
}

/// The same for a tab after other text on its line: PyYAML refuses it
/// outside quoted scalars, block scalar content and comments. Outcomes
/// are PyYAML 3.10's and 5.4.1's (the same) under Python 2.7.
#[test]
fn a_tab_between_tokens_is_refused_as_pyyaml_refuses_it() {
    for (refused, col) in [
        ("- 'a'\t\n", 6),
        ("a: b\tc\n", 5),
        ("a: 1\t\n", 5),
        ("[1,\t2]\n", 4),
        ("a: 1 \t# c\n", 6),
        ("{a: 1}\t\n", 7),
        ("a: |\t\n  x\n", 5),
        ("- &x\tb\n", 5),
        ("a: !!str\t\"x\"\n", 9),
    ] {
        let e = load(refused.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("{refused:?} loaded"));
        assert_eq!((e.line, e.col), (1, col), "{refused:?}: {e:?}");
    }
    for (accepted, expected) in [
        ("a: \"x\ty\"\n", r#"{"a": "x\ty"}"#),
        ("a: 1 #\tc\n", r#"{"a": 1}"#),
        ("a: |\n  x\ty\n", r#"{"a": "x\ty\n"}"#),
        ("a: | #\tc\n  x\n", r#"{"a": "x\n"}"#),
    ] {
        assert_eq!(json(accepted), expected, "{accepted:?}");
    }
}

/// PyYAML forgets a simple key whose `:` is more than 1024 characters
/// after its start (properties included), then refuses the `:`; saphyr
/// has the same limit in block context (YAML 1.2's), none in flow
/// context, where the cases in braces and brackets failed before the fix.
/// Outcomes are PyYAML 3.10's and 5.4.1's (the same) under Python 2.7.
#[test]
fn a_simple_key_longer_than_pyyaml_1024_characters_is_refused() {
    let k = |n: usize| "k".repeat(n);
    for refused in [
        format!("{}: v\n", k(1025)),
        format!("{} : v\n", k(1024)),
        format!("a: 1\n{}: v\n", k(1025)),
        format!("a:\n  {}: v\n", k(1025)),
        format!("- {}: v\n", k(1025)),
        format!("\"{}\": v\n", k(1023)),
        format!("&a {}: v\n", k(1022)),
        format!("{{{}: v}}\n", k(1025)),
        format!("[{}: v]\n", k(1025)),
        format!("x: {{a: [1], {}: v}}\n", k(1025)),
        format!("!!python/tuple [{}]: v\n", k(1010)),
        format!("{{\"{}\" : v}}\n", k(1022)),
        format!("[&a {}: v]\n", k(1022)),
        format!("{{a: 1, {}: v}}\n", k(1025)),
        format!("{{{} : v}}\n", k(1024)),
        format!("{{!!python/tuple [{}]: v}}\n", k(1008)),
        format!("{{&t !!python/tuple [{}]: v}}\n", k(1005)),
        format!("{{&t !!python/tuple [{}] : v}}\n", k(1004)),
        format!("a: &{0} x\nb: {{*{0} : v}}\n", k(1030)),
    ] {
        assert!(load(refused.as_bytes()).is_err(), "{refused:?}");
    }
    let one = |key: &str| format!("{{\"{key}\": \"v\"}}");
    for (accepted, key) in [
        (format!("{}: v\n", k(1024)), k(1024)),
        (format!("{} : v\n", k(1023)), k(1023)),
        (format!("\"{}\": v\n", k(1022)), k(1022)),
        (format!("&a {}: v\n", k(1021)), k(1021)),
        (format!("{{{}: v}}\n", k(1024)), k(1024)),
        (format!("? {}\n: v\n", k(1025)), k(1025)),
        (format!("{{? {}: v}}\n", k(1025)), k(1025)),
        (format!("{{\"{}\": v}}\n", k(1022)), k(1022)),
        (format!("{{{} : v}}\n", k(1023)), k(1023)),
    ] {
        assert_eq!(json(&accepted), one(&key), "{accepted:?}");
    }
    assert_eq!(
        json(&format!("[&a {}: v]\n", k(1021))),
        format!("[{}]", one(&k(1021)))
    );
    assert_eq!(
        json(&format!("a: &{0} x\nb: {{*{0} : v}}\n", k(1022))),
        r#"{"a": "x", "b": {"x": "v"}}"#
    );
    for tuple_key in [
        format!("!!python/tuple [{}]: v\n", k(1006)),
        format!("{{!!python/tuple [{}]: v}}\n", k(1007)),
        format!("{{&t !!python/tuple [{}]: v}}\n", k(1004)),
    ] {
        assert!(load(tuple_key.as_bytes()).is_ok(), "{tuple_key:?}");
    }
}

/// Generated cases g0226, g0379, g0396, g0493, g0547: PyYAML ends a
/// plain scalar in a flow collection at `:` and `?`, and refuses what
/// follows; saphyr kept `1:20` and `a?b` as scalars. Outcomes and error
/// positions are PyYAML 3.10's under Python 2.7 (5.x accepts the `:`).
#[test]
fn colon_or_question_mark_in_a_flow_plain_scalar_is_refused_as_pyyaml_refuses_it() {
    for (refused, line, col) in [
        ("[1:20, x]", 1, 3),
        ("{0x1F: [1:20]}", 1, 10),
        ("a: [x::]", 1, 6),
        ("[http://x]", 1, 6),
        ("[-:x]", 1, 3),
        ("[a, b\n  c:d]", 2, 4),
        ("[&a x:y]", 1, 6),
        ("[!!str x:y]", 1, 9),
        ("{a: [b, {c: d}], e: f:g}", 1, 22),
    ] {
        let e = load(refused.as_bytes()).unwrap_err();
        assert!(
            e.message.contains("found unexpected ':'"),
            "{refused:?}: {e:?}"
        );
        assert_eq!((e.line, e.col), (line, col), "{refused:?}: {e:?}");
    }
    for (refused, line, col) in [
        ("[a?b]", 1, 3),
        ("{a?b: c}", 1, 3),
        ("{k: a ?b}", 1, 7),
        ("[a ? b]", 1, 4),
        ("[a\n?b]", 2, 1),
    ] {
        let e = load(refused.as_bytes()).unwrap_err();
        assert!(e.message.contains("got '?'"), "{refused:?}: {e:?}");
        assert_eq!((e.line, e.col), (line, col), "{refused:?}: {e:?}");
    }
    // A ':' before a space, flow indicator or the end is an indicator in
    // both; tags may hold ':'; block context keeps both characters.
    assert_eq!(json("[a:, b]"), r#"[{"a": null}, "b"]"#);
    assert_eq!(json("[a: b]"), r#"[{"a": "b"}]"#);
    assert_eq!(json("{? a: b}"), r#"{"a": "b"}"#);
    assert_eq!(json("[!<tag:yaml.org,2002:str> x]"), r#"["x"]"#);
    assert_eq!(json("[a#b]"), r#"["a#b"]"#);
    assert_eq!(json("k: a:b?\n"), r#"{"k": "a:b?"}"#);
    assert_eq!(
        json("a:\n  - x:y\n  - [p, q]\n  - r:s?\n"),
        r#"{"a": ["x:y", ["p", "q"], "r:s?"]}"#
    );
}
