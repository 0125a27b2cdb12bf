//! OPC UA tag addresses: NodeIds in the string notation of OPC UA Part 6,
//! 5.3.1.10, which is what UaExpert, asyncua and most server manuals print.
//!
//! ```text
//! ns=2;s=Temperature      string identifier in namespace 2
//! ns=2;i=1001             numeric (u32) identifier
//! i=2258                  namespace 0 may be left out
//! ns=3;g=09087e75-8e5e-499b-954f-f2a9603db28a   GUID
//! ns=4;b=M/RbKBsRVkePCePcx24oRA==               opaque (base64)
//! nsu=urn:acme:plc;s=Line1.Speed                namespace given by its URI
//! ```
//!
//! Namespace *indexes* are positions in the server's namespace array and can
//! change when a server is reconfigured; namespace *URIs* cannot. The `nsu=`
//! form is therefore resolved again on every connection (see
//! [`NodeAddress::resolve`]). Everything after the identifier type (`s=`) is
//! the identifier, including `;` and `=`, as the standard says.

use std::str::FromStr;

use opcua::types::{ByteString, Guid, Identifier, NamespaceMap, NodeId, UAString};

/// Longest string identifier a server must accept (Part 3, 8.2.4).
const MAX_STRING_ID_LEN: usize = 4096;

const IDENTIFIER_FORMS: &str = "expected i=<number>, s=<string>, g=<guid> or b=<base64>";

/// A parsed tag address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum NodeAddress {
    /// Namespace given by index (or 0 when left out).
    Id(NodeId),
    /// `nsu=`: namespace given by URI, resolved per connection.
    ByUri { uri: String, identifier: Identifier },
}

impl NodeAddress {
    /// The NodeId on a server with namespace array `namespaces`.
    pub(crate) fn resolve(&self, namespaces: &NamespaceMap) -> Result<NodeId, String> {
        match self {
            NodeAddress::Id(id) => Ok(id.clone()),
            NodeAddress::ByUri { uri, identifier } => match namespaces.get_index(uri) {
                Some(ns) => Ok(NodeId::new(ns, identifier.clone())),
                None => Err(format!("the server has no namespace with URI {uri:?}")),
            },
        }
    }
}

/// Checks an OPC UA tag address (a NodeId string such as `ns=2;s=Temperature`)
/// and says what is wrong with it. Called by the server when a tag is created.
pub fn validate_address(address: &str) -> Result<(), String> {
    parse_address(address).map(|_| ())
}

pub(crate) fn parse_address(address: &str) -> Result<NodeAddress, String> {
    parse(address).map_err(|why| {
        format!(
            "invalid OPC UA address {address:?}: {why} \
             (NodeId examples: ns=2;s=Temperature, ns=2;i=1001, i=2258)"
        )
    })
}

fn parse(address: &str) -> Result<NodeAddress, String> {
    if address.is_empty() {
        return Err("it is empty".into());
    }
    if address.starts_with(char::is_whitespace) {
        return Err("it starts with whitespace".into());
    }
    let (namespace, rest) = if let Some(rest) = address.strip_prefix("nsu=") {
        let Some((uri, id)) = rest.split_once(';') else {
            return Err("nsu=<namespace URI> must be followed by ';' and an identifier".into());
        };
        if uri.is_empty() {
            return Err("the namespace URI after nsu= is empty".into());
        }
        (Namespace::Uri(uri.to_string()), id)
    } else if let Some(rest) = address.strip_prefix("ns=") {
        let Some((ns, id)) = rest.split_once(';') else {
            return Err("ns=<index> must be followed by ';' and an identifier".into());
        };
        let index = ns
            .parse::<u16>()
            .map_err(|_| format!("namespace index {ns:?} is not a whole number from 0 to 65535"))?;
        (Namespace::Index(index), id)
    } else {
        (Namespace::Index(0), address)
    };
    let identifier = parse_identifier(rest)?;
    match namespace {
        Namespace::Index(ns) => {
            let id = NodeId::new(ns, identifier);
            if id.is_null() {
                return Err("it is the null NodeId (ns=0;i=0), which names no node".into());
            }
            Ok(NodeAddress::Id(id))
        }
        Namespace::Uri(uri) => Ok(NodeAddress::ByUri { uri, identifier }),
    }
}

enum Namespace {
    Index(u16),
    Uri(String),
}

fn parse_identifier(s: &str) -> Result<Identifier, String> {
    let (kind, value) = match s.split_once('=') {
        Some((kind, value)) if kind.len() == 1 => (kind, value),
        _ => return Err(format!("{s:?} is not an identifier: {IDENTIFIER_FORMS}")),
    };
    match kind {
        "i" => value.parse::<u32>().map(Identifier::Numeric).map_err(|_| {
            format!("numeric identifier {value:?} is not a whole number from 0 to 4294967295")
        }),
        "s" => {
            if value.is_empty() {
                Err("the string identifier after s= is empty".into())
            } else if value.chars().count() > MAX_STRING_ID_LEN {
                Err(format!(
                    "the string identifier is longer than {MAX_STRING_ID_LEN} characters"
                ))
            } else {
                Ok(Identifier::String(UAString::from(value)))
            }
        }
        "g" => Guid::from_str(value).map(Identifier::Guid).map_err(|_| {
            format!(
                "GUID identifier {value:?} is malformed \
                 (expected 32 hex digits as 8-4-4-4-12, e.g. 09087e75-8e5e-499b-954f-f2a9603db28a)"
            )
        }),
        "b" => match ByteString::from_base64(value) {
            Some(b) if !b.is_null_or_empty() => Ok(Identifier::ByteString(b)),
            _ => Err(format!(
                "opaque identifier {value:?} is not non-empty base64 (e.g. b=M/RbKBsRVkePCePcx24oRA==)"
            )),
        },
        other => Err(format!(
            "unknown identifier type {other:?}: expected i=, s=, g= or b="
        )),
    }
}

/// The address of a node as a tag would carry it: `ns=2;s=X`, `i=85`, or
/// `nsu=<uri>;s=X` for nodes the server names by namespace URI.
pub(crate) fn format_expanded(
    node_id: &NodeId,
    namespace_uri: &UAString,
    namespaces: &NamespaceMap,
) -> String {
    if namespace_uri.is_null() || namespace_uri.as_ref().is_empty() {
        return node_id.to_string();
    }
    match namespaces.get_index(namespace_uri.as_ref()) {
        Some(ns) => NodeId::new(ns, node_id.identifier.clone()).to_string(),
        None => format!("nsu={};{}", namespace_uri.as_ref(), node_id.identifier),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(address: &str) -> NodeId {
        match parse_address(address).unwrap() {
            NodeAddress::Id(id) => id,
            other => panic!("{address}: {other:?}"),
        }
    }

    fn err(address: &str) -> String {
        parse_address(address).unwrap_err()
    }

    #[test]
    fn common_forms_parse_and_print_back() {
        for address in [
            "ns=2;s=Temperature",
            "ns=2;i=1001",
            "i=2258",
            "ns=65535;i=4294967295",
            "ns=3;g=09087e75-8e5e-499b-954f-f2a9603db28a",
            "ns=4;b=M/RbKBsRVkePCePcx24oRA==",
        ] {
            assert_eq!(id(address).to_string(), address);
        }
        assert_eq!(id("ns=2;s=Temperature"), NodeId::new(2, "Temperature"));
        assert_eq!(id("i=85"), NodeId::new(0, 85u32));
        assert_eq!(id("ns=0;i=85"), NodeId::new(0, 85u32));
    }

    #[test]
    fn string_identifiers_keep_separators_and_spaces() {
        assert_eq!(id("ns=2;s=a;b=c"), NodeId::new(2, "a;b=c"));
        assert_eq!(id("ns=2;s=Line 1.Speed "), NodeId::new(2, "Line 1.Speed "));
        assert_eq!(id("s=NoNamespace"), NodeId::new(0, "NoNamespace"));
    }

    #[test]
    fn namespace_uri_form_resolves_per_server() {
        let a = parse_address("nsu=urn:acme:plc;s=Speed").unwrap();
        let mut ns = NamespaceMap::new();
        assert!(a.resolve(&ns).unwrap_err().contains("urn:acme:plc"));
        ns.add_namespace("urn:other");
        ns.add_namespace("urn:acme:plc");
        let index = ns.get_index("urn:acme:plc").unwrap();
        assert_eq!(a.resolve(&ns).unwrap(), NodeId::new(index, "Speed"));
    }

    #[test]
    fn malformed_addresses_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            (" ns=2;s=X", "whitespace"),
            ("ns=2", "followed by ';'"),
            ("ns=x;s=X", "namespace index \"x\""),
            ("ns=70000;i=1", "0 to 65535"),
            ("ns=2;i=abc", "numeric identifier \"abc\""),
            ("ns=2;i=-1", "numeric identifier"),
            ("i=4294967296", "numeric identifier"),
            ("ns=2;s=", "string identifier after s= is empty"),
            ("ns=2;g=not-a-guid", "GUID identifier"),
            ("ns=2;b=!!", "base64"),
            ("ns=2;x=1", "unknown identifier type \"x\""),
            ("Temperature", "not an identifier"),
            ("ns=2;Temperature", "not an identifier"),
            ("i=0", "null NodeId"),
            ("nsu=;s=X", "URI after nsu= is empty"),
            ("nsu=urn:x", "followed by ';'"),
        ];
        for (address, expected) in cases {
            let e = err(address);
            assert!(e.contains(expected), "{address:?}: {e}");
            assert!(e.contains("ns=2;s=Temperature"), "shows an example: {e}");
        }
        assert!(validate_address("ns=2;s=Temperature").is_ok());
        assert!(validate_address("ns=2;s=").is_err());
    }

    #[test]
    fn long_string_identifiers_are_refused() {
        let long = format!("ns=2;s={}", "x".repeat(MAX_STRING_ID_LEN + 1));
        assert!(err(&long).contains("longer than"));
        let ok = format!("ns=2;s={}", "x".repeat(MAX_STRING_ID_LEN));
        assert!(validate_address(&ok).is_ok());
    }

    #[test]
    fn expanded_ids_are_printed_with_an_index_when_the_server_knows_the_uri() {
        let mut ns = NamespaceMap::new();
        ns.add_namespace("urn:acme");
        let idx = ns.get_index("urn:acme").unwrap();
        let node = NodeId::new(0, "X");
        assert_eq!(format_expanded(&node, &UAString::null(), &ns), "s=X");
        assert_eq!(
            format_expanded(&node, &"urn:acme".into(), &ns),
            format!("ns={idx};s=X")
        );
        assert_eq!(
            format_expanded(&node, &"urn:zz".into(), &ns),
            "nsu=urn:zz;s=X"
        );
    }
}
