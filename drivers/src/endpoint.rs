//! `HOST[:PORT]` endpoints of the TCP protocols (Modbus TCP, EtherNet/IP,
//! S7): one parser, so every driver accepts and refuses the same spellings
//! with the same messages. Pure; resolves nothing.

/// Splits `HOST`, `HOST:PORT` or `[IPv6]:PORT` (`[IPv6]` alone too), with
/// `default_port` when none is given. Errors name the endpoint and say
/// what is wrong.
pub fn parse_host_port(endpoint: &str, default_port: u16) -> Result<(String, u16), String> {
    let ep = endpoint.trim();
    let err = |m: String| format!("endpoint '{endpoint}': {m}");
    if ep.is_empty() {
        return Err(err("empty endpoint".into()));
    }
    let (host, port) = if let Some(rest) = ep.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| err("missing ']' after an IPv6 address".into()))?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(err(format!("unexpected '{after}' after ']'"))),
        }
    } else {
        match ep.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (ep, None),
        }
    };
    if host.is_empty() {
        return Err(err("host is missing (HOST[:PORT])".into()));
    }
    if host.contains(':') && !ep.starts_with('[') {
        return Err(err(format!(
            "write an IPv6 address in brackets: [::1]:{default_port}"
        )));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| err(format!("port '{p}' must be 1-65535")))?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_ports_and_ipv6_in_brackets() {
        assert_eq!(parse_host_port("plc1", 102).unwrap(), ("plc1".into(), 102));
        assert_eq!(
            parse_host_port(" 10.0.0.5:2222 ", 1).unwrap(),
            ("10.0.0.5".into(), 2222)
        );
        assert_eq!(
            parse_host_port("[::1]:44818", 1).unwrap(),
            ("::1".into(), 44818)
        );
        assert_eq!(
            parse_host_port("[fe80::1]", 502).unwrap(),
            ("fe80::1".into(), 502)
        );
    }

    #[test]
    fn bad_endpoints_say_what_is_wrong() {
        let e = |s: &str| parse_host_port(s, 502).unwrap_err();
        assert!(e("").contains("empty endpoint"));
        assert!(e(":502").contains("host is missing"));
        assert!(e("::1:502").contains("[::1]:502"));
        assert!(e("[::1").contains("missing ']'"));
        assert!(e("[::1]x").contains("unexpected 'x'"));
        let zero = e("h:0");
        assert!(
            zero.starts_with("endpoint 'h:0'") && zero.contains("1-65535"),
            "{zero}"
        );
    }
}
