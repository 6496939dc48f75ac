use super::*;

fn load_str(s: &str) -> Value {
    load(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e:?}"))
}

fn json(s: &str) -> String {
    crate::pyjson::dumps(&load_str(s)).unwrap()
}

/// `s` as the one item of a block sequence (in a flow sequence, PyYAML
/// refuses a plain `1:20`).
fn scalar_json(s: &str) -> String {
    json(&format!("- {s}\n"))
}

mod pyyaml_differences;

#[test]
fn bools_are_exactly_pyyaml_3_spellings() {
    for t in [
        "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON",
    ] {
        assert_eq!(scalar_json(t), "[true]", "{t}");
    }
    for f in [
        "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
    ] {
        assert_eq!(scalar_json(f), "[false]", "{f}");
    }
    for s in ["y", "Y", "n", "N", "yEs", "tRUE", "oN", "nO"] {
        assert_eq!(scalar_json(s), format!("[\"{s}\"]"), "{s} stays a string");
    }
}

#[test]
fn nulls() {
    assert_eq!(
        json("a: ~\nb: null\nc: Null\nd: NULL\ne:\nf: nULL\n"),
        r#"{"a": null, "b": null, "c": null, "d": null, "e": null, "f": "nULL"}"#
    );
    assert_eq!(json(""), "null");
    assert_eq!(json("# only a comment\n"), "null");
    assert_eq!(json("a: !!str\n"), r#"{"a": ""}"#);
}

#[test]
fn ints_octal_hex_binary_base60() {
    assert_eq!(scalar_json("0755"), "[493]");
    assert_eq!(scalar_json("-0755"), "[-493]");
    assert_eq!(scalar_json("0"), "[0]");
    assert_eq!(scalar_json("-0"), "[0]");
    assert_eq!(scalar_json("0x1F"), "[31]");
    assert_eq!(scalar_json("0b101"), "[5]");
    assert_eq!(scalar_json("1_000"), "[1000]");
    assert_eq!(scalar_json("+12"), "[12]");
    assert_eq!(scalar_json("1:20"), "[80]");
    assert_eq!(scalar_json("-1:20:30"), "[-4830]");
    assert_eq!(scalar_json("190:20:30"), "[685230]");
    assert_eq!(scalar_json("0_"), "[0]");
    // Not ints: 8 in an octal, minutes >= 60, leading zero in base 60.
    assert_eq!(scalar_json("0789"), r#"["0789"]"#);
    assert_eq!(scalar_json("1:60"), r#"["1:60"]"#);
    assert_eq!(scalar_json("01:20"), r#"["01:20"]"#);
    assert_eq!(scalar_json("0x"), r#"["0x"]"#);
    assert_eq!(scalar_json("1__"), "[1]");
}

#[test]
fn big_ints_stay_exact() {
    assert_eq!(
        scalar_json("123456789012345678901234567890"),
        "[123456789012345678901234567890]"
    );
    assert_eq!(
        scalar_json("-0x1_0000_0000_0000_0000_0000"),
        "[-1208925819614629174706176]"
    );
    assert_eq!(
        scalar_json("99999999999999999999:59"),
        "[5999999999999999999999]"
    );
}

#[test]
fn floats_need_a_dot_and_signed_exponent() {
    assert_eq!(scalar_json("1.0e+3"), "[1000.0]");
    assert_eq!(scalar_json("1e3"), r#"["1e3"]"#);
    assert_eq!(scalar_json("1.0e3"), r#"["1.0e3"]"#);
    assert_eq!(scalar_json("1.5"), "[1.5]");
    assert_eq!(scalar_json("1."), "[1.0]");
    assert_eq!(scalar_json(".5"), "[0.5]");
    assert_eq!(scalar_json("-.5"), r#"["-.5"]"#);
    assert_eq!(scalar_json("0.00001"), "[1e-05]");
    assert_eq!(scalar_json("10000000000000000.0"), "[1e+16]");
    assert_eq!(scalar_json("1_000.5"), "[1000.5]");
    assert_eq!(scalar_json("-0.0"), "[-0.0]");
    assert_eq!(scalar_json("1:20.5"), "[80.5]");
    assert_eq!(scalar_json("-1:0:30.25"), "[-3630.25]");
    assert_eq!(scalar_json(".inf"), "[Infinity]");
    assert_eq!(scalar_json("-.Inf"), "[-Infinity]");
    assert_eq!(scalar_json("+.INF"), "[Infinity]");
    assert_eq!(scalar_json(".NaN"), "[NaN]");
    assert_eq!(scalar_json("-.nan"), r#"["-.nan"]"#);
    assert_eq!(scalar_json(".Nan"), r#"[".Nan"]"#);
    assert_eq!(scalar_json("inf"), r#"["inf"]"#);
}

#[test]
fn quoted_and_block_scalars_are_never_resolved() {
    assert_eq!(
        json("- 'yes'\n- \"0755\"\n- '1.5'\n- \"~\"\n- ''\n- |\n  12\n- >\n  true\n"),
        r#"["yes", "0755", "1.5", "~", "", "12\n", "true\n"]"#
    );
}

#[test]
fn non_specific_tag_resolves_even_quoted() {
    // PyYAML's parser marks `!` scalars implicit, so "12" becomes an int.
    assert_eq!(json("- ! 12\n- ! '12'\n- ! yes\n"), "[12, 12, true]");
}

#[test]
fn explicit_tags() {
    assert_eq!(
        json("- !!str 12\n- !!int '12'\n- !!float '1e3'\n- !!float 2\n- !!bool 'on'\n- !!null 'x'\n- !!int 0o17\n"),
        r#"["12", 12, 1000.0, 2.0, true, null, 15]"#
    );
    assert!(load(b"- !!bool y\n").is_err(), "bool_values has no 'y'");
    assert!(load(b"- !!int abc\n").is_err());
    assert!(load(b"- !!float x\n").is_err());
    assert!(load(b"- !!str [a]\n").is_err());
    assert!(load(b"- !custom x\n").is_err());
    assert!(load(b"- !!python/object:os.system x\n").is_err());
}

#[test]
fn python_tags_of_the_full_loader() {
    assert_eq!(
        json("- !!python/tuple [1, a]\n- !!python/unicode x\n- !!python/long 5\n- !!python/none ''\n"),
        r#"[[1, "a"], "x", 5, null]"#
    );
}

#[test]
fn binary_is_bytes_decoded_by_json() {
    assert_eq!(json("- !!binary aGVsbG8=\n"), r#"["hello"]"#);
    assert_eq!(json("- !!binary |\n  w6k=\n"), r#"["\u00e9"]"#);
    assert!(load(b"- !!binary aGVsbG8\n").is_err(), "Incorrect padding");
    let v = load(b"- !!binary /w==\n").unwrap();
    assert!(crate::pyjson::dumps(&v).is_err(), "0xff is not UTF-8");
}

#[test]
fn omap_pairs_and_set() {
    assert_eq!(json("!!omap [b: 1, a: 2]\n"), r#"[["b", 1], ["a", 2]]"#);
    assert_eq!(json("!!pairs [a: 1, a: 2]\n"), r#"[["a", 1], ["a", 2]]"#);
    let v = load(b"!!set {a, b}\n").unwrap();
    assert!(crate::pyjson::dumps(&v).is_err());
}

#[test]
fn timestamps_load_but_cannot_be_encoded() {
    for t in [
        "2016-09-06",
        "2001-12-14t21:59:43.10-05:00",
        "2001-12-14 21:59:43.10 -5",
        "2001-12-15T02:59:43.1Z",
        "2002-12-14 21:59:43",
    ] {
        let v = load(format!("- {t}\n").as_bytes()).unwrap();
        let err = crate::pyjson::dumps(&v).unwrap_err();
        assert!(err.reason.contains("datetime"), "{t}: {err:?}");
    }
    assert_eq!(scalar_json("2016-9-6"), r#"["2016-9-6"]"#);
    assert_eq!(scalar_json("'2016-09-06'"), r#"["2016-09-06"]"#);
    // An impossible date fails in the constructor already.
    assert!(load(b"- 2016-02-30\n").is_err());
    assert!(load(b"- 2016-13-01\n").is_err());
    assert!(load(b"- 2015-02-29\n").is_err());
    assert!(load(b"- 2016-02-29\n").is_ok());
}

#[test]
fn explicit_timestamp_tag_on_a_short_value_is_an_error_not_a_panic() {
    // PyYAML: the regexp does not match, then `None.groupdict()` raises.
    for v in ["x", "0o17", "12", "+123-01-01", "2016"] {
        assert!(
            load(format!("- !!timestamp {v}\n").as_bytes()).is_err(),
            "{v}"
        );
    }
}

#[test]
fn merge_keys_single_and_list() {
    let doc = "base: &b {a: 1, b: 2}\nother: &o {b: 3, c: 4}\n\
               single: {<<: *b, b: 9}\n\
               list: {<<: [*b, *o], d: 5}\n\
               nested: {<<: {<<: *o, e: 6}}\n\
               quoted: {'<<': *b}\n";
    assert_eq!(
        json(doc),
        r#"{"base": {"a": 1, "b": 2}, "list": {"a": 1, "b": 2, "c": 4, "d": 5}, "nested": {"b": 3, "c": 4, "e": 6}, "other": {"b": 3, "c": 4}, "quoted": {"<<": {"a": 1, "b": 2}}, "single": {"a": 1, "b": 9}}"#
    );
    assert!(load(b"a: {<<: 1}\n").is_err());
    assert!(load(b"a: {<<: [1]}\n").is_err());
}

#[test]
fn anchors_and_aliases_copy_values() {
    assert_eq!(
        json("a: &x [1, {k: v}]\nb: *x\nc: &s text\nd: *s\n"),
        r#"{"a": [1, {"k": "v"}], "b": [1, {"k": "v"}], "c": "text", "d": "text"}"#
    );
    assert!(load(b"a: *nope\n").is_err());
}

#[test]
fn recursive_alias_loads_and_fails_only_when_dumped() {
    let dumps = |s: &str| crate::pyjson::dumps(&load_str(s));
    for doc in [
        "a: &x [*x]\n",
        "a: &x {k: *x}\n",
        "&r {a: [1, {b: *r}]}\n",
        "a: &x {b: &y [*x, *y]}\n",
        "a: &t !!python/tuple [[*t]]\n",
        "a: &x {m: {<<: *x}}\n",
    ] {
        let err = dumps(doc).unwrap_err();
        assert!(err.reason.contains("Circular reference"), "{doc}: {err:?}");
    }
    // Where the cycle is never dumped, the rest is hashed as usual.
    let v = load_str("keep: &k [1]\nloop: &x {self: *x, k: *k}\n");
    let Value::Dict(d) = &v else { panic!() };
    assert_eq!(
        crate::pyjson::dumps(d.get_str("keep").unwrap()).unwrap(),
        "[1]"
    );
    // A mapping merged into itself keeps its own pairs (PyYAML deletes the
    // merge key before following it).
    assert_eq!(json("a: &x {k: 1, <<: *x}\n"), r#"{"a": {"k": 1}}"#);
    // A tuple is built eagerly: a tuple directly inside itself fails at once.
    assert!(load(b"a: &t !!python/tuple [*t]\n").is_err());
    // A collection as its own key is unhashable.
    assert!(load(b"&m {*m: 1}\n").is_err());
}

#[test]
fn redefined_anchor_is_an_error_like_pyyaml_composer() {
    let e = load(b"a: &x 1\nb: &x 2\nc: *x\n").unwrap_err();
    assert!(e.message.contains("duplicate anchor \"x\""), "{e:?}");
    assert_eq!((e.line, e.col), (2, 4));
    assert!(load(b"a: !!str &x 1\nb: [&x 2]\n").is_err());
    assert!(load(b"a: &x [1]\nb: &x {k: v}\n").is_err());
    assert!(load("a: &\u{e9}t\u{e9} 1\nb: &y 2\n".as_bytes()).is_ok());
    assert!(load(b"a: &x1 1\nb: &x2 2\nc: [*x1, *x2]\n").is_ok());
}

#[test]
fn equal_keys_keep_first_key_last_value() {
    assert_eq!(json("1: a\n1.0: b\ntrue: c\n"), r#"{"1": "c"}"#);
    assert_eq!(json("a: 1\na: 2\n"), r#"{"a": 2}"#);
}

#[test]
fn value_key_is_a_string_but_value_scalar_fails() {
    assert_eq!(json("=: x\n"), r#"{"=": "x"}"#);
    assert!(load(b"a: =\n").is_err());
}

#[test]
fn unhashable_keys_fail() {
    assert!(load(b"? [a]\n: x\n").is_err());
    assert!(load(b"{[a]: x}\n").is_err());
}

#[test]
fn encodings_and_unprintable_characters() {
    assert_eq!(
        load(b"\xef\xbb\xbfa: 1\n").unwrap(),
        load(b"a: 1\n").unwrap()
    );
    let utf16le: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain("a: \u{e9}\n".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    assert_eq!(
        crate::pyjson::dumps(&load(&utf16le).unwrap()).unwrap(),
        r#"{"a": "\u00e9"}"#
    );
    let utf16be: Vec<u8> = [0xfe, 0xff]
        .into_iter()
        .chain("a: 1\n".encode_utf16().flat_map(u16::to_be_bytes))
        .collect();
    assert_eq!(load(&utf16be).unwrap(), load(b"a: 1\n").unwrap());
    let e = load(b"a: 1\nb: caf\xe9\n").unwrap_err();
    assert_eq!(e.line, 2);
    let e = load(b"a: x\x00y\n").unwrap_err();
    assert!(e.message.contains("#x0000"), "{e:?}");
    assert!(
        load("a: \u{1F600}\n".as_bytes()).is_err(),
        "PyYAML 3.x refuses astral characters"
    );
    assert_eq!(json("a: \"\\U0001F600\"\n"), r#"{"a": "\ud83d\ude00"}"#);
}

#[test]
fn surrogate_escapes_load_as_code_points_like_a_wide_python2() {
    assert_eq!(json(r#"a: "\ud83d""#), r#"{"a": "\ud83d"}"#);
    assert_eq!(
        json(r#"a: "x\uDC00\U0000d800y""#),
        r#"{"a": "x\udc00\ud800y"}"#
    );
    // A pair stays two code points: a different key from U+1F600, sorted
    // by code point (0xd83d < 0xe000 < 0x1f600) though printed alike.
    assert_eq!(
        json(r#"{"\U0001F600": 2, "\ue000": 3, "\ud83d\ude00": 1}"#),
        r#"{"\ud83d\ude00": 1, "\ue000": 3, "\ud83d\ude00": 2}"#
    );
    // Only a double-quoted scalar reads escapes; `\\` pairs come first.
    assert_eq!(
        json(r#"[a\ud83d, '\ud83d', "\\ud83d", "\\\ud83d"]"#),
        r#"["a\\ud83d", "\\ud83d", "\\ud83d", "\\\ud83d"]"#
    );
    assert_eq!(json("a: |-\n  \\ud83d\n"), r#"{"a": "\\ud83d"}"#);
    assert_eq!(json(r#"- !!python/str "\ud83d""#), r#"["\ud83d"]"#);
    assert!(load(br#"- !!int "\ud83d""#).is_err());
}

#[test]
fn crlf_and_single_document() {
    assert_eq!(json("a: 1\r\nb: x\r\n"), r#"{"a": 1, "b": "x"}"#);
    let e = load(b"a: 1\n---\nb: 2\n").unwrap_err();
    assert!(e.message.contains("single document"));
    assert_eq!(e.line, 2);
    assert!(load(b"a: [1\n").is_err());
}

#[test]
fn resolver_trailing_newline_like_python_dollar() {
    assert_eq!(resolve_plain("12\n"), "tag:yaml.org,2002:int");
    assert_eq!(resolve_plain("12\n\n"), "tag:yaml.org,2002:str");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "[".repeat(100_000);
    assert!(load(deep.as_bytes()).is_err());
}
