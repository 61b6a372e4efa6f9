//! Reference resolution: the examples of RFC 3986 section 5.4, one test each.

use super::*;

/// The base URI of RFC 3986 section 5.4.
const RFC_BASE: &str = "http://a/b/c/d;p?q";

macro_rules! rfc_examples {
    ($($name:ident: $reference:expr => $expected:expr;)*) => {
        $(
            #[test]
            fn $name() {
                assert_eq!(resolve(RFC_BASE, $reference).unwrap(), $expected);
            }
        )*
    };
}

// Section 5.4.1, normal examples (all 23).
rfc_examples! {
    normal_other_scheme: "g:h" => "g:h";
    normal_relative_segment: "g" => "http://a/b/c/g";
    normal_dot_slash_segment: "./g" => "http://a/b/c/g";
    normal_segment_with_trailing_slash: "g/" => "http://a/b/c/g/";
    normal_absolute_path: "/g" => "http://a/g";
    normal_scheme_relative: "//g" => "http://g";
    normal_query_only: "?y" => "http://a/b/c/d;p?y";
    normal_segment_with_query: "g?y" => "http://a/b/c/g?y";
    normal_fragment_only: "#s" => "http://a/b/c/d;p?q#s";
    normal_segment_with_fragment: "g#s" => "http://a/b/c/g#s";
    normal_segment_with_query_and_fragment: "g?y#s" => "http://a/b/c/g?y#s";
    normal_parameter_only: ";x" => "http://a/b/c/;x";
    normal_segment_with_parameter: "g;x" => "http://a/b/c/g;x";
    normal_parameter_query_fragment: "g;x?y#s" => "http://a/b/c/g;x?y#s";
    normal_empty_reference: "" => "http://a/b/c/d;p?q";
    normal_dot: "." => "http://a/b/c/";
    normal_dot_slash: "./" => "http://a/b/c/";
    normal_dot_dot: ".." => "http://a/b/";
    normal_dot_dot_slash: "../" => "http://a/b/";
    normal_dot_dot_segment: "../g" => "http://a/b/g";
    normal_two_dot_dots: "../.." => "http://a/";
    normal_two_dot_dots_slash: "../../" => "http://a/";
    normal_two_dot_dots_segment: "../../g" => "http://a/g";
}

// Section 5.4.2, abnormal examples.
rfc_examples! {
    abnormal_above_root: "../../../g" => "http://a/g";
    abnormal_far_above_root: "../../../../g" => "http://a/g";
    abnormal_absolute_dot: "/./g" => "http://a/g";
    abnormal_absolute_dot_dot: "/../g" => "http://a/g";
    abnormal_trailing_dot: "g." => "http://a/b/c/g.";
    abnormal_leading_dot: ".g" => "http://a/b/c/.g";
    abnormal_trailing_dot_dot: "g.." => "http://a/b/c/g..";
    abnormal_leading_dot_dot: "..g" => "http://a/b/c/..g";
    abnormal_dot_then_dot_dot: "./../g" => "http://a/b/g";
    abnormal_trailing_dot_segment: "./g/." => "http://a/b/c/g/";
    abnormal_inner_dot: "g/./h" => "http://a/b/c/g/h";
    abnormal_inner_dot_dot: "g/../h" => "http://a/b/c/h";
    abnormal_parameter_dot: "g;x=1/./y" => "http://a/b/c/g;x=1/y";
    abnormal_parameter_dot_dot: "g;x=1/../y" => "http://a/b/c/y";
    abnormal_dots_in_query: "g?y/./x" => "http://a/b/c/g?y/./x";
    abnormal_dot_dots_in_query: "g?y/../x" => "http://a/b/c/g?y/../x";
    abnormal_dots_in_fragment: "g#s/./x" => "http://a/b/c/g#s/./x";
    abnormal_dot_dots_in_fragment: "g#s/../x" => "http://a/b/c/g#s/../x";
    abnormal_same_scheme_is_absolute: "http:g" => "http:g";
}

#[test]
fn engine_segment_resolves_next_to_its_playlist() {
    let base = "http://gluetun:19000/ace/m/0123abcd/5f1e.m3u8";
    assert_eq!(
        resolve(base, "5f1e/1234.ts").unwrap(),
        "http://gluetun:19000/ace/m/0123abcd/5f1e/1234.ts"
    );
    assert_eq!(
        resolve(base, "/ace/c/5f1e/1234.ts").unwrap(),
        "http://gluetun:19000/ace/c/5f1e/1234.ts"
    );
}

#[test]
fn base_with_authority_and_empty_path_merges_under_root() {
    assert_eq!(resolve("http://a", "g").unwrap(), "http://a/g");
    assert_eq!(resolve("http://a?q", "?r").unwrap(), "http://a?r");
}

#[test]
fn base_fragment_is_dropped() {
    assert_eq!(resolve("http://a/b#frag", "").unwrap(), "http://a/b");
}

#[test]
fn relative_base_is_refused() {
    for base in ["", "/a/b", "a/b", "//host/x", "1http://a/"] {
        assert_eq!(
            resolve(base, "g"),
            Err(UriError::BaseNotAbsolute { base: base.into() }),
            "{base:?}"
        );
    }
}

#[test]
fn colon_after_slash_is_not_a_scheme() {
    assert_eq!(resolve(RFC_BASE, "a/b:c").unwrap(), "http://a/b/c/a/b:c");
}
