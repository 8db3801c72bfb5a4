//! Proxies from the environment, read as curl and Python (evalscope's aiohttp with
//! `trust_env`) read them: `https_proxy` for https endpoints and `http_proxy` for http ones
//! (lower case first, then upper case), `all_proxy` / `ALL_PROXY` for either, and
//! `no_proxy` / `NO_PROXY` for the hosts that bypass the proxy. `--no-proxy` ignores them all.
//!
//! The proxy itself is spoken to in plain http: an https endpoint through a `CONNECT` tunnel
//! (TLS end to end, so timing stays exact), an http endpoint with absolute-form requests. Proxy
//! credentials in the URL go as `Proxy-Authorization: Basic` and are secrets of the run.

use base64::Engine;
use reqwest::Url;

/// The proxy a request goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `host:port` of the proxy.
    pub authority: String,
    /// `Proxy-Authorization` value, from the proxy URL's user info.
    pub authorization: Option<String>,
    /// The variable it came from, for messages.
    pub variable: &'static str,
}

/// Every variable perf reads: the proxies (lower case first), then the exemptions.
pub const VARIABLES: [&str; 8] = [
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The proxy `target` goes through, if any. An error names the variable and what to do.
pub fn for_target(target: &Url) -> Result<Option<Proxy>, String> {
    let candidates: &[&'static str] = match target.scheme() {
        "https" => &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"],
        "http" => &["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"],
        _ => return Ok(None),
    };
    let Some((variable, value)) = candidates
        .iter()
        .find_map(|name| env(name).map(|v| (*name, v)))
    else {
        return Ok(None);
    };
    let no_proxy = env("no_proxy")
        .or_else(|| env("NO_PROXY"))
        .unwrap_or_default();
    let host = target.host_str().unwrap_or_default();
    let port = target.port_or_known_default().unwrap_or(0);
    if bypasses(&no_proxy, host, port) {
        return Ok(None);
    }
    parse(variable, &value).map(Some)
}

/// The credentials of every proxy URL in the environment (user, password, and the
/// `Proxy-Authorization` value made of them), secrets of the run whether or not a request goes
/// through that proxy.
pub fn environment_credentials() -> Vec<String> {
    let mut out = Vec::new();
    for name in &VARIABLES[..6] {
        let Some(value) = env(name) else { continue };
        if let Ok(proxy) = parse(name, &value) {
            out.extend(proxy.authorization);
        }
        let text = if value.contains("://") {
            value
        } else {
            format!("http://{value}")
        };
        if let Ok(url) = Url::parse(&text) {
            out.push(percent_decode(url.username()));
            out.push(percent_decode(url.password().unwrap_or("")));
            out.push(url.username().to_string());
            out.push(url.password().unwrap_or("").to_string());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// A proxy variable's value (`variable` names it in errors).
pub fn parse(variable: &'static str, value: &str) -> Result<Proxy, String> {
    // curl takes a proxy without a scheme as http.
    let text = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let url = Url::parse(&text).map_err(|e| {
        format!(
            "{variable} is not a proxy URL ({e}): set it to http://HOST:PORT, or pass --no-proxy"
        )
    })?;
    if url.scheme() != "http" {
        return Err(format!(
            "{variable} names a {}:// proxy; perf speaks to proxies in plain http (https endpoints through CONNECT, still TLS end to end): use an http:// proxy URL, or pass --no-proxy",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("{variable} has no host: set it to http://HOST:PORT"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let authorization = (!url.username().is_empty()).then(|| {
        let user = percent_decode(url.username());
        let password = percent_decode(url.password().unwrap_or(""));
        let pair = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    });
    Ok(Proxy {
        authority,
        authorization,
        variable,
    })
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether `no_proxy` exempts `host:port`: `*` exempts everything; an entry is a host name
/// (matching it and its subdomains; a leading dot changes nothing), an IP address, or a CIDR
/// block, each optionally with `:port`. Entries are separated by commas or spaces.
pub fn bypasses(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    no_proxy
        .split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = split_port(entry);
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim_start_matches('.')
                .to_ascii_lowercase();
            if let Some((net, bits)) = name.split_once('/') {
                return match (ip, net.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
                    (Some(ip), Ok(net), Ok(bits)) => in_block(ip, net, bits),
                    _ => false,
                };
            }
            host == name || host.ends_with(&format!(".{name}"))
        })
}

/// `entry` without a trailing `:port` (IPv6 addresses keep their colons).
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((addr, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (addr, port);
        }
    }
    match entry.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => match port.parse() {
            Ok(p) => (name, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_block(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u8) -> bool {
    use std::net::IpAddr::{V4, V6};
    match (ip, net) {
        (V4(ip), V4(net)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (V6(ip), V6(net)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_entries() {
        assert!(bypasses("*", "api.example.com", 443));
        assert!(bypasses("localhost,127.0.0.1", "127.0.0.1", 8000));
        assert!(bypasses("example.com", "api.example.com", 443));
        assert!(bypasses(".example.com", "api.example.com", 443));
        assert!(bypasses("example.com", "example.com", 443));
        assert!(!bypasses("example.com", "notexample.com", 443));
        assert!(bypasses("10.0.0.0/8", "10.1.2.3", 80));
        assert!(!bypasses("10.0.0.0/8", "11.1.2.3", 80));
        assert!(bypasses("::1", "[::1]", 80));
        assert!(bypasses("fd00::/8", "fd12::1", 80));
        assert!(bypasses("gw.local:8443", "gw.local", 8443));
        assert!(!bypasses("gw.local:8443", "gw.local", 443));
        assert!(bypasses("a.com b.com", "b.com", 1));
        assert!(!bypasses("", "b.com", 1));
    }

    #[test]
    fn proxy_urls() {
        let p = parse("HTTPS_PROXY", "http://user:p%40ss@proxy.corp:3128").expect("parses");
        assert_eq!(p.authority, "proxy.corp:3128");
        let expected = base64::engine::general_purpose::STANDARD.encode("user:p@ss");
        assert_eq!(p.authorization, Some(format!("Basic {expected}")));
        let bare = parse("http_proxy", "proxy.corp:8080").expect("no scheme is http");
        assert_eq!(bare.authority, "proxy.corp:8080");
        assert_eq!(bare.authorization, None);
        let e = parse("ALL_PROXY", "socks5://proxy:1080").expect_err("refused");
        assert!(e.contains("ALL_PROXY") && e.contains("--no-proxy"), "{e}");
        assert_eq!(
            parse("http_proxy", "http://[::1]:3128")
                .expect("v6")
                .authority,
            "[::1]:3128"
        );
    }
}
