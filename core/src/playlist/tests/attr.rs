//! Attribute lists.

use super::*;

#[test]
fn quoted_values_may_contain_commas() {
    let list = AttributeList::parse("CODECS=\"avc1,mp4a\",BANDWIDTH=1").unwrap();
    assert_eq!(
        list.iter().collect::<Vec<_>>(),
        [("CODECS", "\"avc1,mp4a\""), ("BANDWIDTH", "1")]
    );
    assert_eq!(list.get_str("CODECS"), Some("avc1,mp4a"));
}

#[test]
fn text_is_kept_byte_for_byte() {
    let text = "METHOD=AES-128, URI=\"k.bin\"  ,IV=0x1,EMPTY=,Q=\"\"";
    let list = AttributeList::parse(text).unwrap();
    assert_eq!(list.len(), 5);
    assert_eq!(list.to_string(), text);
    assert_eq!(list.get("EMPTY"), Some(""));
    assert_eq!(list.get_str("Q"), Some(""));
}

#[test]
fn empty_text_is_the_empty_list() {
    let list = AttributeList::parse("").unwrap();
    assert!(list.is_empty());
    assert_eq!(list.to_string(), "");
}

#[test]
fn first_of_repeated_names_is_found() {
    let list = AttributeList::parse("A=1,A=2").unwrap();
    assert_eq!(list.get("A"), Some("1"));
}

#[test]
fn malformed_lists_are_refused() {
    let cases = [
        (" ", AttributeError::MissingName),
        ("A=1,", AttributeError::MissingName),
        ("=1", AttributeError::MissingName),
        ("A", AttributeError::MissingEquals),
        ("A B=1", AttributeError::MissingEquals),
        ("A=\"x", AttributeError::UnterminatedQuote),
        ("A=\"x\"y", AttributeError::TextAfterQuote),
    ];
    for (text, expected) in cases {
        assert_eq!(AttributeList::parse(text), Err(expected), "{text:?}");
    }
}

#[test]
fn set_replaces_in_place_or_appends() {
    let mut list = AttributeList::parse("A=1, B=\"x\",C=3").unwrap();
    list.set_quoted("B", "y").unwrap();
    list.set_unquoted("D", "4").unwrap();
    assert_eq!(list.to_string(), "A=1, B=\"y\",C=3,D=4");
}

#[test]
fn set_encodes_what_would_break_the_list() {
    let mut list = AttributeList::new();
    list.set_quoted("Q", "a\"b\nc").unwrap();
    list.set_unquoted("U", "\"x,y").unwrap();
    assert_eq!(list.to_string(), "Q=\"a%22b%0Ac\",U=%22x%2Cy");
    assert_eq!(AttributeList::parse(&list.to_string()).unwrap(), list);
}

#[test]
fn set_refuses_invalid_names() {
    let mut list = AttributeList::new();
    assert_eq!(list.set_quoted("", "x"), Err(AttributeError::MissingName));
    assert_eq!(
        list.set_unquoted("A=B", "x"),
        Err(AttributeError::MissingEquals)
    );
    assert!(list.is_empty());
}

#[test]
fn remove_drops_every_attribute_of_that_name() {
    let mut list = AttributeList::parse("A=1,B=2,A=3").unwrap();
    assert!(list.remove("A"));
    assert!(!list.remove("Z"));
    assert_eq!(list.to_string(), "B=2");
}
