//! Request keys: trusted-proxy client IPs, headers, subjects, closures, and the
//! problems they answer with.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ee_core::{
    ClientIp, ClientIpConfig, ForwardedHeader, HeaderKey, Key, KeyError, KeyExtractor, PeerIp,
    SubjectKey, key_fn,
};
use ee_core::{PeerAddr, Problem, Subject};
use http::{HeaderName, HeaderValue, Request, StatusCode};
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn req_from(peer: &str, headers: &[(&str, &[u8])]) -> Request<()> {
    let mut req = Request::get("/").body(()).unwrap();
    for (name, value) in headers {
        req.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    req.extensions_mut().insert(PeerAddr(
        format!("{peer}:4000")
            .parse::<SocketAddr>()
            .unwrap_or_else(|_| format!("[{peer}]:4000").parse().unwrap()),
    ));
    req
}

trait FirstOctet {
    fn octets_v4_first(&self) -> u8;
}

impl FirstOctet for IpAddr {
    fn octets_v4_first(&self) -> u8 {
        match self {
            IpAddr::V4(v4) => v4.octets()[0],
            IpAddr::V6(_) => 0,
        }
    }
}

fn proxies() -> ClientIp {
    ClientIp::trusting(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()])
}

#[test]
fn untrusted_peers_cannot_choose_their_key_with_x_forwarded_for() {
    let req = req_from("198.51.100.9", &[("x-forwarded-for", b"1.1.1.1")]);
    assert_eq!(
        proxies().extract_from(&req).unwrap(),
        Key::Ip(ip("198.51.100.9"))
    );
    // With no trusted proxy configured at all, headers are never read.
    let req = req_from("10.0.0.1", &[("x-forwarded-for", b"1.1.1.1")]);
    assert_eq!(
        ClientIp::default().extract_from(&req).unwrap(),
        Key::Ip(ip("10.0.0.1"))
    );
}

#[test]
fn trusted_proxies_are_walked_from_the_right() {
    // Spoofed entry on the left, the real client appended by our first proxy.
    let req = req_from(
        "10.0.0.2",
        &[("x-forwarded-for", b"6.6.6.6, 203.0.113.7, 10.9.9.9")],
    );
    assert_eq!(
        proxies().extract_from(&req).unwrap(),
        Key::Ip(ip("203.0.113.7"))
    );
    // Several header lines form one list, in order.
    let req = req_from(
        "10.0.0.2",
        &[
            ("x-forwarded-for", b"6.6.6.6"),
            ("x-forwarded-for", b"203.0.113.8 , 10.1.1.1"),
        ],
    );
    assert_eq!(
        proxies().extract_from(&req).unwrap(),
        Key::Ip(ip("203.0.113.8"))
    );
    // All hops trusted: the leftmost is the best we know.
    let req = req_from("10.0.0.2", &[("x-forwarded-for", b"10.3.3.3, 10.1.1.1")]);
    assert_eq!(
        proxies().extract_from(&req).unwrap(),
        Key::Ip(ip("10.3.3.3"))
    );
    // No header from a trusted peer: the peer itself.
    let req = req_from("10.0.0.2", &[]);
    assert_eq!(
        proxies().extract_from(&req).unwrap(),
        Key::Ip(ip("10.0.0.2"))
    );
    // Ports (Azure style) and IPv6 hops.
    let req = req_from(
        "fd00::1",
        &[("x-forwarded-for", b"[2001:db8::7]:5555, 10.0.0.3:80")],
    );
    assert_eq!(
        proxies().extract_from(&req).unwrap(),
        Key::Ip(ip("2001:db8::7"))
    );
}

#[test]
fn ipv4_mapped_peers_match_ipv4_networks() {
    let mut req = Request::get("/").body(()).unwrap();
    req.headers_mut()
        .insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
    req.extensions_mut()
        .insert(PeerAddr("[::ffff:10.0.0.5]:80".parse().unwrap()));
    assert_eq!(
        proxies().extract_from(&req).unwrap(),
        Key::Ip(ip("203.0.113.7"))
    );
    let mapped: IpAddr = ip("::ffff:192.0.2.1");
    assert_eq!(Key::from(mapped), Key::Ip(ip("192.0.2.1")));
}

#[test]
fn rfc7239_forwarded_is_read_when_configured() {
    let fwd = proxies().with_header(ForwardedHeader::Forwarded);
    let req = req_from(
        "10.0.0.2",
        &[(
            "forwarded",
            br#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.9;by=10.0.0.2"#,
        )],
    );
    assert_eq!(
        fwd.extract_from(&req).unwrap(),
        Key::Ip(ip("2001:db8:cafe::17"))
    );
    // X-Forwarded-For is ignored when Forwarded is the configured header.
    let req = req_from("10.0.0.2", &[("x-forwarded-for", b"1.1.1.1")]);
    assert_eq!(fwd.extract_from(&req).unwrap(), Key::Ip(ip("10.0.0.2")));
}

fn problem_of(err: KeyError) -> Problem {
    Problem::from(err)
}

#[test]
fn malformed_forwarding_headers_from_trusted_peers_are_400_problems() {
    let fwd = proxies().with_header(ForwardedHeader::Forwarded);
    let cases: [(&ClientIp, &str, &[u8]); 9] = [
        (&proxies(), "x-forwarded-for", b"not-an-ip"),
        (&proxies(), "x-forwarded-for", b"1.2.3.4,,10.0.0.1"),
        (&proxies(), "x-forwarded-for", b""),
        (&proxies(), "x-forwarded-for", b"unknown"),
        (&proxies(), "x-forwarded-for", b"\xff\xfe"),
        (&fwd, "forwarded", b"for=\"1.2.3.4"),
        (&fwd, "forwarded", b"proto=https"),
        (&fwd, "forwarded", b"for=_hidden"),
        (&fwd, "forwarded", b"for=[2001:db8::1"),
    ];
    for (extractor, name, value) in cases {
        let req = req_from("10.0.0.2", &[(name, value)]);
        let err = extractor.extract_from(&req).unwrap_err();
        assert!(
            matches!(err, KeyError::MalformedHeader { .. }),
            "{value:?}: {err:?}"
        );
        let problem = problem_of(err);
        assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            problem.type_uri(),
            "https://ee.rs/problems/core/malformed-header"
        );
        assert_eq!(problem.extension("header"), Some(&serde_json::json!(name)));
        assert!(
            problem.detail().unwrap().contains(name),
            "{:?}",
            problem.detail()
        );
    }
    // What a client wrote left of the hop that identifies it is never judged.
    let req = req_from(
        "10.0.0.2",
        &[("x-forwarded-for", b"\xff garbage, 203.0.113.9, 10.0.0.5")],
    );
    assert_eq!(
        proxies().extract_from(&req).unwrap(),
        Key::Ip(ip("203.0.113.9"))
    );
    // The same garbage from an untrusted peer is never read, so never rejected.
    let req = req_from("198.51.100.1", &[("x-forwarded-for", b"not-an-ip")]);
    assert_eq!(
        proxies().extract_from(&req).unwrap(),
        Key::Ip(ip("198.51.100.1"))
    );
}

#[test]
fn a_missing_peer_address_is_a_server_error_whose_detail_is_the_fix() {
    let req = Request::get("/").body(()).unwrap();
    let err = PeerIp.extract_from(&req).unwrap_err();
    assert_eq!(err, KeyError::NoPeerAddress);
    assert!(
        err.to_string()
            .contains("into_make_service_with_connect_info")
    );
    let problem = problem_of(err);
    assert_eq!(problem.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // The detail says how to fix the set-up (no client data in it).
    let detail = problem.detail().unwrap();
    assert!(
        detail.contains("into_make_service_with_connect_info"),
        "{detail}"
    );
    assert!(detail.contains("PeerAddr"), "{detail}");
    assert_eq!(
        proxies().extract_from(&req).unwrap_err(),
        KeyError::NoPeerAddress
    );
}

#[test]
fn peer_address_is_read_from_socketaddr_and_connect_info_extensions() {
    let mut req = Request::get("/").body(()).unwrap();
    req.extensions_mut()
        .insert("192.0.2.4:1".parse::<SocketAddr>().unwrap());
    assert_eq!(PeerIp.extract_from(&req).unwrap(), Key::Ip(ip("192.0.2.4")));
    let mut req = Request::get("/").body(()).unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        "192.0.2.5:1".parse::<SocketAddr>().unwrap(),
    ));
    assert_eq!(PeerIp.extract_from(&req).unwrap(), Key::Ip(ip("192.0.2.5")));
}

#[test]
fn header_keys_reject_absent_empty_long_repeated_and_non_ascii_values() {
    let api_key = HeaderKey::new(HeaderName::from_static("x-api-key")).max_len(16);
    let ok = req_from("192.0.2.1", &[("x-api-key", b"k-123")]);
    assert_eq!(api_key.extract_from(&ok).unwrap(), Key::text("k-123"));

    let missing = req_from("192.0.2.1", &[]);
    let err = api_key.extract_from(&missing).unwrap_err();
    assert_eq!(
        err,
        KeyError::MissingHeader(HeaderName::from_static("x-api-key"))
    );
    let problem = problem_of(err);
    assert_eq!(problem.status(), 400);
    assert_eq!(
        problem.type_uri(),
        "https://ee.rs/problems/core/missing-header"
    );

    for (value, reason) in [
        (&b""[..], "empty"),
        (b"0123456789abcdefX", "longer than 16 bytes"),
        (b"caf\xc3\xa9", "not visible ASCII"),
        (b"with space", "not visible ASCII"),
    ] {
        let req = req_from("192.0.2.1", &[("x-api-key", value)]);
        match api_key.extract_from(&req).unwrap_err() {
            KeyError::MalformedHeader { reason: r, .. } => assert_eq!(r, reason),
            other => panic!("{other:?}"),
        }
    }
    let twice = req_from("192.0.2.1", &[("x-api-key", b"a"), ("x-api-key", b"b")]);
    assert!(matches!(
        api_key.extract_from(&twice).unwrap_err(),
        KeyError::MalformedHeader { .. }
    ));
}

#[test]
fn subject_keys_need_an_authenticated_subject() {
    let mut req = Request::get("/").body(()).unwrap();
    let err = SubjectKey.extract_from(&req).unwrap_err();
    assert_eq!(problem_of(err).status(), StatusCode::UNAUTHORIZED);
    req.extensions_mut().insert(Subject::new("user-42"));
    assert_eq!(SubjectKey.extract_from(&req).unwrap(), Key::text("user-42"));
}

#[test]
fn closures_and_trait_objects_are_extractors() {
    let by_method = key_fn(|req| Ok(Key::text(req.method.as_str())));
    let dynamic: Arc<dyn KeyExtractor> = Arc::new(by_method);
    let req = Request::post("/x").body(()).unwrap();
    assert_eq!(dynamic.extract_from(&req).unwrap(), Key::text("POST"));

    let refusing = key_fn(|_| Err(KeyError::Rejected("no tenant".into())));
    let problem = problem_of(refusing.extract_from(&req).unwrap_err());
    assert_eq!(problem.status(), 400);
    assert_eq!(problem.detail(), Some("no tenant"));

    // Parts (what axum extractors see) work as well as whole requests.
    let (parts, ()) = req.into_parts();
    assert_eq!(
        dynamic
            .extract(&ee_core::RequestHead::from(&parts))
            .unwrap(),
        Key::text("POST")
    );
}

#[tokio::test]
async fn route_keys_are_templates_and_pairs_combine() {
    use axum::routing::get;
    use ee_core::RouteKey;
    let app = axum::Router::new().route(
        "/orders/{id}",
        get(|req: axum::extract::Request| async move {
            let key = (RouteKey, SubjectKey).extract_from(&req);
            format!("{key:?}")
        }),
    );
    let mut req = Request::get("/orders/42")
        .body(axum::body::Body::empty())
        .unwrap();
    req.extensions_mut().insert(Subject::new("u1"));
    let res = ee_testing::send(app, req).await;
    assert_eq!(res.text(), r#"Ok(Text("GET /orders/{id} u1"))"#);

    let unmatched = Request::get("/x").body(()).unwrap();
    assert!(matches!(
        RouteKey.extract_from(&unmatched),
        Err(KeyError::Rejected(_))
    ));
}

#[test]
fn config_deserialises_and_rejects_bad_networks() {
    let config: ClientIpConfig = serde_json::from_str(
        r#"{"trusted_proxies": ["10.0.0.0/8", "::1/128"], "header": "x-forwarded-for"}"#,
    )
    .unwrap();
    let client_ip = ClientIp::new(config);
    let req = req_from("10.0.0.1", &[("x-forwarded-for", b"192.0.2.77")]);
    assert_eq!(
        client_ip.extract_from(&req).unwrap(),
        Key::Ip(ip("192.0.2.77"))
    );
    assert!(
        serde_json::from_str::<ClientIpConfig>(r#"{"trusted_proxies": ["10.0.0.0/33"]}"#).is_err()
    );
    assert!(serde_json::from_str::<ClientIpConfig>(r#"{"trusted": []}"#).is_err());
}

proptest! {
    /// Whatever a client sends, an untrusted peer's key is its own address, and a
    /// trusted peer's request yields a key or a 400, never a panic.
    #[test]
    fn arbitrary_forwarding_headers_never_panic(
        value in proptest::collection::vec(any::<u8>(), 0..200),
        forwarded in any::<bool>(),
    ) {
        let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()); };
        let (name, extractor) = if forwarded {
            ("forwarded", proxies().with_header(ForwardedHeader::Forwarded))
        } else {
            ("x-forwarded-for", proxies())
        };
        let req = req_from("198.51.100.3", &[(name, value.as_bytes())]);
        prop_assert_eq!(extractor.extract_from(&req).unwrap(), Key::Ip(ip("198.51.100.3")));
        let req = req_from("10.0.0.2", &[(name, value.as_bytes())]);
        match extractor.extract_from(&req) {
            Ok(Key::Ip(_)) => {}
            Ok(other) => prop_assert!(false, "unexpected key {:?}", other),
            Err(err) => prop_assert_eq!(problem_of(err).status(), StatusCode::BAD_REQUEST),
        }
    }

    /// Against a reference walk: hops spread over several header lines, some of
    /// them ours, with or without ports, in X-Forwarded-For or Forwarded.
    #[test]
    fn the_walk_matches_a_reference(
        hops in proptest::collection::vec((any::<bool>(), any::<[u8; 4]>(), any::<bool>()), 0..8),
        lines in 1usize..4,
        forwarded in any::<bool>(),
        peer_trusted in any::<bool>(),
    ) {
        let ips: Vec<IpAddr> = hops
            .iter()
            .map(|(ours, o, _)| if *ours { IpAddr::from([10, o[1], o[2], o[3]]) } else { IpAddr::from([203, o[1], o[2], o[3]]) })
            .collect();
        let peer = if peer_trusted { "10.0.0.2" } else { "198.51.100.3" };
        // Reference: from the peer leftwards while trusted.
        let mut expected = ip(peer);
        if peer_trusted {
            for hop in ips.iter().rev() {
                expected = *hop;
                if hop.octets_v4_first() != 10 { break; }
            }
        }
        let render = |(i, hop): (usize, &IpAddr)| {
            let with_port = hops[i].2;
            match (forwarded, with_port) {
                (true, true) => format!("for=\"{hop}:{}\";proto=https", 1000 + i),
                (true, false) => format!("for={hop}"),
                (false, true) => format!("{hop}:{}", 1000 + i),
                (false, false) => hop.to_string(),
            }
        };
        let rendered: Vec<String> = ips.iter().enumerate().map(render).collect();
        let per_line = rendered.len().div_ceil(lines).max(1);
        let name = if forwarded { "forwarded" } else { "x-forwarded-for" };
        let header_lines: Vec<String> = rendered.chunks(per_line).map(|c| c.join(", ")).collect();
        let headers: Vec<(&str, &[u8])> = header_lines.iter().map(|l| (name, l.as_bytes())).collect();
        let req = req_from(peer, &headers);
        let extractor = if forwarded { proxies().with_header(ForwardedHeader::Forwarded) } else { proxies() };
        prop_assert_eq!(extractor.extract_from(&req).unwrap(), Key::Ip(expected));
    }

    /// A client can never get past our proxies by prepending entries.
    #[test]
    fn prepended_entries_never_win(spoofed in proptest::collection::vec(any::<[u8; 4]>(), 0..5)) {
        let mut list: Vec<String> = spoofed.iter().map(|o| IpAddr::from(*o).to_string()).collect();
        list.push("203.0.113.50".into());
        list.push("10.0.0.7".into());
        let header = list.join(", ");
        let req = req_from("10.0.0.2", &[("x-forwarded-for", header.as_bytes())]);
        prop_assert_eq!(proxies().extract_from(&req).unwrap(), Key::Ip(ip("203.0.113.50")));
    }
}
