#[test]
fn invisible_control_and_space_characters_are_refused_in_every_kind() {
    for bad in [
        "env:HOME\u{202e}",
        "env:\u{200b}HOME",
        "\u{feff}env:HOME",
        "log\n",
        "fs.read:/srv/a\u{7}",
        "fs.read:/srv/my data",
        "fs.read:/srv/donn\u{e9}es",
        "messaging.publish:a.\u{202d}b",
    ] {
        let e = bad.parse::<super::Capability>().unwrap_err().to_string();
        assert!(e.contains("is not allowed"), "{bad:?}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

use super::*;
use proptest::prelude::*;
use rust_decimal::Decimal;

fn cap(s: &str) -> Capability {
    match s.parse() {
        Ok(c) => c,
        Err(e) => panic!("{s:?} should parse: {e}"),
    }
}

fn grants(caps: &[&str]) -> GrantSet {
    caps.iter().map(|s| cap(s)).collect()
}

fn dec(s: &str) -> Decimal {
    match Decimal::from_str_exact(s) {
        Ok(d) => d,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

/// (input, canonical form)
const GOOD: &[(&str, &str)] = &[
    ("state", "state"),
    ("log", "log"),
    ("tools.register", "tools.register"),
    (
        "messaging.publish:orders.new",
        "messaging.publish:orders.new",
    ),
    (
        "messaging.subscribe:md.*.BTC",
        "messaging.subscribe:md.*.BTC",
    ),
    ("messaging.subscribe:>", "messaging.subscribe:>"),
    (
        "messaging.request:svc.price.>",
        "messaging.request:svc.price.>",
    ),
    (
        "messaging.publish:a-b_c:d;e!~",
        "messaging.publish:a-b_c:d;e!~",
    ),
    ("market.read:*", "market.read:*"),
    ("market.read:BTC-*", "market.read:BTC-*"),
    ("market.read:ETH/USD", "market.read:ETH/USD"),
    ("orders.place:BTC-USDT", "orders.place:BTC-USDT"),
    (
        "orders.place:BTC-*;max_qty=1.50;max_notional=1000",
        "orders.place:BTC-*;max_notional=1000;max_qty=1.5",
    ),
    (
        "orders.place:*;max_open_orders=5;max_orders_per_min=60;max_qty=0.001;max_notional=25000.00",
        "orders.place:*;max_notional=25000;max_qty=0.001;max_orders_per_min=60;max_open_orders=5",
    ),
    ("orders.place:X;max_qty=0001", "orders.place:X;max_qty=1"),
    ("orders.cancel:*-USDT", "orders.cancel:*-USDT"),
    ("tools.call:price-*", "tools.call:price-*"),
    ("tools.call:echo", "tools.call:echo"),
    (
        "http.outbound:https://api.example.com",
        "http.outbound:https://api.example.com",
    ),
    (
        "http.outbound:http://localhost:8080",
        "http.outbound:http://localhost:8080",
    ),
    (
        "http.outbound:https://*.okx.com:443",
        "http.outbound:https://*.okx.com:443",
    ),
    (
        "http.outbound:http://127.0.0.1:9000",
        "http.outbound:http://127.0.0.1:9000",
    ),
    (
        "http.outbound:https://[0:0:0:0:0:0:0:1]:8443",
        "http.outbound:https://[::1]:8443",
    ),
    (
        "http.outbound:https://[2001:db8::1]",
        "http.outbound:https://[2001:db8::1]",
    ),
    (
        "http.outbound:https://xn--bcher-kva.example",
        "http.outbound:https://xn--bcher-kva.example",
    ),
    ("fs.read:/", "fs.read:/"),
    ("fs.read:/data", "fs.read:/data"),
    (
        "fs.write:/var/lib/colony/scratch",
        "fs.write:/var/lib/colony/scratch",
    ),
    ("fs.read:/data/.hidden/x..y", "fs.read:/data/.hidden/x..y"),
    ("env:API_KEY", "env:API_KEY"),
    ("env:_X9", "env:_X9"),
];

/// (input, fragment of the error message)
const BAD: &[(&str, &str)] = &[
    ("", "unknown kind \"\""),
    (
        "foo",
        "unknown kind \"foo\" (expected one of messaging.publish",
    ),
    ("Messaging.publish:a", "unknown kind \"Messaging.publish\""),
    ("state:x", "state takes no argument"),
    ("tools.register:x", "tools.register takes no argument"),
    (
        "messaging.publish",
        "messaging.publish needs a subject pattern after ':'",
    ),
    ("orders.place", "orders.place needs a symbol pattern"),
    (
        "http.outbound",
        "http.outbound needs <scheme>://<host>[:<port>]",
    ),
    ("env", "env needs a variable name"),
    ("messaging.publish:", "subject pattern is empty"),
    (
        "messaging.publish:a..b",
        "subject pattern \"a..b\": token 2 is empty",
    ),
    ("messaging.publish:a.", "token 2 is empty"),
    ("messaging.publish:.a", "token 1 is empty"),
    (
        "messaging.subscribe:a.>.b",
        "'>' must be the last token (found at token 2)",
    ),
    ("messaging.publish:a.b*", "invalid character '*' at byte 3"),
    ("messaging.publish:a.>b", "invalid character '>' at byte 2"),
    ("messaging.publish:a b", "character \\u{20} is not allowed"),
    (
        "messaging.publish:a.\u{e9}",
        "character \\u{e9} is not allowed",
    ),
    ("messaging.publish:a\tb", "character \\u{9} is not allowed"),
    ("market.read:", "symbol pattern is empty"),
    (
        "market.read:btc",
        "symbol pattern \"btc\": invalid character 'b' at byte 0 (expected A-Z, 0-9, '-', '_', '/' or '*')",
    ),
    ("market.read:BTC-**", "repeated '*' at byte 4"),
    ("market.read:BTC USDT", "character \\u{20} is not allowed"),
    ("orders.place:BTC;max_qty=0", "max_qty must be positive"),
    ("orders.place:BTC;max_qty=0.000", "max_qty must be positive"),
    (
        "orders.place:BTC;max_qty=-1",
        "max_qty \"-1\" is not a decimal",
    ),
    (
        "orders.place:BTC;max_qty=+1",
        "max_qty \"+1\" is not a decimal",
    ),
    ("orders.place:BTC;max_qty=1e3", "is not a decimal"),
    ("orders.place:BTC;max_qty=1.", "is not a decimal"),
    ("orders.place:BTC;max_qty=.5", "is not a decimal"),
    ("orders.place:BTC;max_qty=1_000", "is not a decimal"),
    (
        "orders.place:BTC;max_notional=99999999999999999999999999999999",
        "max_notional \"99999999999999999999999999999999\" is out of range",
    ),
    (
        "orders.place:BTC;max_qty=1;max_qty=2",
        "order limit max_qty is given twice",
    ),
    ("orders.place:BTC;foo=1", "unknown order limit \"foo\""),
    ("orders.place:BTC;", "empty order limit (stray ';')"),
    (
        "orders.place:BTC;max_qty",
        "order limit \"max_qty\" is not key=value",
    ),
    (
        "orders.place:BTC;max_open_orders=0",
        "max_open_orders must be positive",
    ),
    (
        "orders.place:BTC;max_orders_per_min=1.5",
        "max_orders_per_min \"1.5\" is not a whole number",
    ),
    (
        "orders.place:BTC;max_orders_per_min=4294967296",
        "out of range",
    ),
    ("orders.place:;max_qty=1", "symbol pattern is empty"),
    (
        "orders.cancel:BTC;max_qty=1",
        "invalid character ';' at byte 3",
    ),
    (
        "tools.call:Price",
        "tool name pattern \"Price\": invalid character 'P' at byte 0",
    ),
    ("tools.call:a**", "repeated '*'"),
    (
        "http.outbound:ftp://x.com",
        "scheme \"ftp\" is not http or https",
    ),
    (
        "http.outbound:HTTPS://x.com",
        "scheme \"HTTPS\" is not http or https",
    ),
    (
        "http.outbound:x.com",
        "\"x.com\" is not <scheme>://<host>[:<port>]",
    ),
    ("http.outbound:https://x.com/path", "has a path at byte 13"),
    ("http.outbound:https://x.com?q", "has a path"),
    (
        "http.outbound:https://X.com",
        "host \"X.com\": must be lowercase (byte 0)",
    ),
    (
        "http.outbound:https://x.com:0",
        "port \"0\" is not a number from 1 to 65535",
    ),
    ("http.outbound:https://x.com:65536", "port \"65536\""),
    ("http.outbound:https://x.com:080", "port \"080\""),
    ("http.outbound:https://x.com:", "port \"\""),
    ("http.outbound:https://", "host \"\": is empty"),
    (
        "http.outbound:https://a*.x.com",
        "'*' at byte 1 (only a leading '*.' is allowed)",
    ),
    ("http.outbound:https://*", "only a leading '*.'"),
    (
        "http.outbound:https://*.*.x.com",
        "host pattern \"*.*.x.com\"",
    ),
    (
        "http.outbound:https://*.1.2.3.4",
        "'*.' needs a DNS name, not an address",
    ),
    (
        "http.outbound:https://-a.com",
        "label 1 starts or ends with '-'",
    ),
    ("http.outbound:https://a..com", "label 2 is empty"),
    (
        "http.outbound:https://1.2.3.256",
        "is not a valid IPv4 address or DNS name",
    ),
    ("http.outbound:https://[::1", "has no closing ']'"),
    ("http.outbound:https://[zz]", "is not an IPv6 address"),
    (
        "http.outbound:https://[::1]x",
        "unexpected \"x\" after the IPv6 address",
    ),
    (
        "http.outbound:https://user@x.com",
        "invalid character '@' at byte 4",
    ),
    ("fs.read:", "dir \"\" is not absolute"),
    ("fs.read:data", "dir \"data\" is not absolute"),
    ("fs.read:/data/", "must not end with '/'"),
    ("fs.read:/data/../etc", "component 2 is \"..\""),
    ("fs.write:/data/./x", "component 2 is \".\""),
    ("fs.read:/a//b", "component 2 is empty ('//')"),
    ("fs.read:/a b", "character \\u{20} is not allowed"),
    ("env:", "variable name is empty"),
    ("env:path", "invalid character 'p' at byte 0"),
    ("env:1A", "invalid character '1' at byte 0"),
    ("env:A-B", "invalid character '-' at byte 1"),
];

#[test]
fn caps_parse_good_strings_to_their_canonical_form() {
    for (input, canonical) in GOOD {
        let c = cap(input);
        assert_eq!(c.to_string(), *canonical, "display of {input:?}");
        assert_eq!(cap(canonical), c, "round trip of {input:?}");
    }
}

#[test]
fn caps_refuse_bad_strings_saying_what_and_where() {
    for (input, fragment) in BAD {
        match input.parse::<Capability>() {
            Ok(c) => panic!("{input:?} parsed as {c}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(fragment),
                    "{input:?}: {msg:?} lacks {fragment:?}"
                );
                assert!(msg.starts_with("capability \""), "{msg}");
                assert!(!msg.ends_with('.'), "{msg}");
            }
        }
    }
}

#[test]
fn caps_error_message_quotes_the_input_then_the_reason() {
    let e = "market.read:btc".parse::<Capability>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "capability \"market.read:btc\": symbol pattern \"btc\": invalid character 'b' at byte 0 \
         (expected A-Z, 0-9, '-', '_', '/' or '*')"
    );
    assert_eq!(e.input(), "market.read:btc");
    let long = format!("env:{}", "a".repeat(500));
    let e = long.parse::<Capability>().unwrap_err();
    assert_eq!(
        e.input().chars().count(),
        QUOTE_LEN + 1,
        "cut with an ellipsis"
    );
}

#[test]
fn caps_size_limits() {
    let tokens = vec!["a"; MAX_SUBJECT_TOKENS].join(".");
    cap(&format!("messaging.publish:{tokens}"));
    let e = format!("messaging.publish:{tokens}.a")
        .parse::<Capability>()
        .unwrap_err();
    assert!(e.reason().contains("more than 32 tokens"), "{e}");
    let long = "a".repeat(MAX_SUBJECT_LEN);
    cap(&format!("messaging.publish:{long}"));
    let e = format!("messaging.publish:{long}b")
        .parse::<Capability>()
        .unwrap_err();
    assert!(e.reason().contains("longer than 256 bytes"), "{e}");
    cap(&format!("market.read:{}", "A".repeat(MAX_SYMBOL_LEN)));
    let e = format!("market.read:{}", "A".repeat(MAX_SYMBOL_LEN + 1))
        .parse::<Capability>()
        .unwrap_err();
    assert!(e.reason().contains("longer than 64 bytes"), "{e}");
    let e = format!("tools.call:{}", "a".repeat(MAX_NAME_LEN + 1))
        .parse::<Capability>()
        .unwrap_err();
    assert!(e.reason().contains("longer than 64 bytes"), "{e}");
    let label = "a".repeat(63);
    cap(&format!("http.outbound:https://{label}.com"));
    let e = format!("http.outbound:https://{label}a.com")
        .parse::<Capability>()
        .unwrap_err();
    assert!(
        e.reason().contains("label 1 is longer than 63 bytes"),
        "{e}"
    );
    let e = "x"
        .repeat(MAX_CAPABILITY_LEN + 1)
        .parse::<Capability>()
        .unwrap_err();
    assert!(e.reason().contains("longer than 2048 bytes"), "{e}");
}

#[test]
fn caps_serde_uses_the_canonical_string() {
    let c = cap("orders.place:BTC-*;max_qty=2.0");
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(json, "\"orders.place:BTC-*;max_qty=2\"");
    assert_eq!(serde_json::from_str::<Capability>(&json).unwrap(), c);
    let err = serde_json::from_str::<Capability>("\"market.read:btc\"").unwrap_err();
    assert!(err.to_string().contains("invalid character 'b'"), "{err}");
}

#[test]
fn caps_kind_and_always_granted() {
    assert_eq!(cap("orders.place:X;max_qty=1").kind(), "orders.place");
    assert_eq!(cap("env:A").kind(), "env");
    assert!(cap("state").is_always_granted() && cap("log").is_always_granted());
    assert!(!cap("tools.register").is_always_granted());
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Pub,
    Sub,
    Req,
}

#[test]
fn caps_subject_matching() {
    use Op::*;
    // (grant, kind of request, requested subject, allowed)
    let cases: &[(&str, Op, &str, bool)] = &[
        ("orders.new", Pub, "orders.new", true),
        ("orders.new", Pub, "orders.new.x", false),
        ("orders.new", Pub, "orders", false),
        ("orders.new", Pub, "orders.newer", false),
        ("a.>", Pub, "a", false),
        ("a.>", Pub, "a.b", true),
        ("a.>", Pub, "a.b.c", true),
        ("a.>", Pub, "b.a", false),
        (">", Pub, "a", true),
        (">", Pub, "a.b.c", true),
        ("*", Pub, "a", true),
        ("*", Pub, "a.b", false),
        ("a.*", Pub, "a.b.c", false),
        ("a.*", Pub, "a", false),
        ("a.*.c", Pub, "a.b.c", true),
        ("a.*.c", Pub, "a.b.d", false),
        ("a.*.c", Pub, "a.b.c.d", false),
        ("a.*.c", Pub, "a.c", false),
        ("*.>", Pub, "a", false),
        ("*.>", Pub, "a.b", true),
        ("svc.price.>", Req, "svc.price.btc", true),
        ("svc.price.>", Req, "svc.volume.btc", false),
        // Subscribe requests may be patterns: the grant must cover everything they match.
        ("md.>", Sub, "md.*.BTC", true),
        ("md.>", Sub, "md.>", true),
        ("md.>", Sub, "md", false),
        ("md.>", Sub, ">", false),
        ("md.*", Sub, "md.>", false),
        ("md.*", Sub, "md.*", true),
        ("md.*", Sub, "md.BTC", true),
        ("md.BTC", Sub, "md.*", false),
        ("md.*.>", Sub, "md.>", false),
        ("md.*.>", Sub, "md.*.>", true),
        ("md.*.>", Sub, "md.a.*", true),
        ("a.*.c", Sub, "a.*.c", true),
        ("a.b.c", Sub, "a.*.c", false),
        (">", Sub, ">", true),
        (">", Sub, "*.*", true),
        ("*.>", Sub, ">", false),
        ("*", Sub, ">", false),
        ("*", Sub, "*", true),
        ("*.*", Sub, "*.>", false),
        // Another agent's private subjects need a grant that names the agent.
        ("agent.pong.inbox", Sub, "agent.pong.inbox", true),
        ("agent.pong.>", Sub, "agent.pong.inbox", true),
        ("agent.pong.>", Sub, "agent.pong.*", true),
        ("agent.*.inbox", Sub, "agent.pong.inbox", false),
        ("agent.>", Sub, "agent.pong.inbox", false),
        (">", Sub, "agent.pong.inbox", false),
        (">", Sub, "agent.pong.orders", false),
        ("agent.*.>", Sub, "agent.pong.>", false),
        // A wildcard where the name goes is grantable but never sees a private subject.
        ("agent.*.inbox", Sub, "agent.*.inbox", true),
        // Publishing to an inbox stays an ordinary grant.
        ("agent.*.inbox", Pub, "agent.pong.inbox", true),
        (">", Req, "agent.pong.inbox", true),
    ];
    for &(grant, kind, subject, want) in cases {
        let (g, req) = match kind {
            Pub => (
                format!("messaging.publish:{grant}"),
                Request::Publish { subject },
            ),
            Sub => (
                format!("messaging.subscribe:{grant}"),
                Request::Subscribe { subject },
            ),
            Req => (
                format!("messaging.request:{grant}"),
                Request::Request { subject },
            ),
        };
        let d = grants(&[&g]).check(&req);
        assert_eq!(d.is_allowed(), want, "{g} vs {req}: {d}");
        if !want {
            assert_eq!(
                d,
                Decision::Denied {
                    needs: req.to_string()
                },
                "{g} vs {req}"
            );
        }
    }
}

#[test]
fn caps_subject_kinds_are_separate_and_denials_name_the_grant() {
    let g = grants(&["messaging.publish:a.>"]);
    assert!(g.check(&Request::Publish { subject: "a.b" }).is_allowed());
    assert_eq!(
        g.check(&Request::Subscribe { subject: "a.b" }),
        Decision::Denied {
            needs: "messaging.subscribe:a.b".into()
        }
    );
    assert_eq!(
        GrantSet::default().check(&Request::Publish {
            subject: "orders.new"
        }),
        Decision::Denied {
            needs: "messaging.publish:orders.new".into()
        }
    );
    assert_eq!(
        g.check(&Request::Request { subject: "a.b" }),
        Decision::Denied {
            needs: "messaging.request:a.b".into()
        }
    );
}

#[test]
fn caps_malformed_subjects_are_invalid_not_denied() {
    let g = grants(&[
        "messaging.publish:>",
        "messaging.subscribe:>",
        "messaging.request:>",
    ]);
    let cases: &[(Request<'_>, &str)] = &[
        (
            Request::Publish { subject: "a.*" },
            "wildcard '*' (token 2) is not allowed here",
        ),
        (
            Request::Publish { subject: ">" },
            "wildcard '>' (token 1) is not allowed here",
        ),
        (Request::Request { subject: "a.>" }, "wildcard '>'"),
        (Request::Publish { subject: "a..b" }, "token 2 is empty"),
        (Request::Publish { subject: "" }, "subject is empty"),
        (Request::Publish { subject: "a b" }, "invalid character ' '"),
        (
            Request::Subscribe { subject: "a.>.b" },
            "'>' must be the last token",
        ),
        (
            Request::Subscribe { subject: "a*" },
            "invalid character '*'",
        ),
    ];
    for (req, fragment) in cases {
        match g.check(req) {
            Decision::Invalid { reason } => {
                assert!(reason.contains(fragment), "{req:?}: {reason}")
            }
            d => panic!("{req:?}: {d}"),
        }
    }
}

#[test]
fn caps_symbol_and_name_globs() {
    // (grant pattern, requested symbol, allowed)
    let symbols: &[(&str, &str, bool)] = &[
        ("BTC-USDT", "BTC-USDT", true),
        ("BTC-USDT", "BTC-USDT2", false),
        ("BTC-USDT", "BTC", false),
        ("BTC-*", "BTC-USDT", true),
        ("BTC-*", "BTC-", true),
        ("BTC-*", "BTC", false),
        ("BTC-*", "ETH-USDT", false),
        ("BTC-*", "XBTC-USDT", false),
        ("*", "ANY/THING_1", true),
        ("*-USDT", "BTC-USDT", true),
        ("*-USDT", "BTC-USDC", false),
        ("*USD*", "BTC/USDT", true),
        ("*USD*", "USD", true),
        ("*USD*", "BTC", false),
        ("A*A", "A", false),
        ("A*A", "AA", true),
        ("A*A", "ABA", true),
        ("B*C*D", "BXCYD", true),
        ("B*C*D", "BCD", true),
        ("B*C*D", "BDC", false),
        ("B*C*D", "BCCD", true),
        ("*/*", "ETH/USD", true),
        ("*/*", "ETH-USD", false),
    ];
    for &(grant, symbol, want) in symbols {
        for (kind, req) in [
            ("market.read", Request::MarketRead { symbol }),
            ("orders.cancel", Request::CancelOrder { symbol }),
            (
                "orders.place",
                Request::PlaceOrder {
                    symbol,
                    qty: Decimal::ONE,
                    notional: Decimal::ONE,
                },
            ),
        ] {
            let g = grants(&[&format!("{kind}:{grant}")]);
            let d = g.check(&req);
            assert_eq!(d.is_allowed(), want, "{kind}:{grant} vs {symbol}: {d}");
            if !want {
                assert_eq!(
                    d,
                    Decision::Denied {
                        needs: format!("{kind}:{symbol}")
                    }
                );
            }
        }
    }
    let names: &[(&str, &str, bool)] = &[
        ("price-*", "price-feed", true),
        ("price-*", "price", false),
        ("price-*", "oracle-price-x", false),
        ("*", "echo", true),
        ("echo", "echo", true),
        ("echo", "echo2", false),
        ("*-tool", "my-tool", true),
    ];
    for &(grant, name, want) in names {
        let d = grants(&[&format!("tools.call:{grant}")]).check(&Request::CallTool { name });
        assert_eq!(d.is_allowed(), want, "tools.call:{grant} vs {name}: {d}");
    }
    assert_eq!(
        GrantSet::default().check(&Request::CallTool { name: "echo" }),
        Decision::Denied {
            needs: "tools.call:echo".into()
        }
    );
}

#[test]
fn caps_malformed_symbols_and_names_are_invalid() {
    let g = grants(&["market.read:*", "tools.call:*", "orders.cancel:*"]);
    for req in [
        Request::MarketRead { symbol: "btc-usdt" },
        Request::MarketRead { symbol: "BTC-*" },
        Request::MarketRead { symbol: "" },
        Request::CancelOrder { symbol: "*" },
        Request::CallTool { name: "Echo" },
        Request::CallTool { name: "ec*" },
    ] {
        assert!(matches!(g.check(&req), Decision::Invalid { .. }), "{req:?}");
    }
}

#[test]
fn caps_order_limits() {
    let g = grants(&["orders.place:BTC-*;max_qty=0.5;max_notional=1000;max_orders_per_min=10"]);
    let place = |symbol, qty: &str, notional: &str| {
        g.check(&Request::PlaceOrder {
            symbol,
            qty: dec(qty),
            notional: dec(notional),
        })
    };
    let denied = |needs: &str| Decision::Denied {
        needs: needs.into(),
    };
    assert_eq!(place("BTC-USDT", "0.5", "1000"), Decision::Allowed);
    assert_eq!(place("BTC-USDT", "0.1", "0"), Decision::Allowed);
    assert_eq!(
        place("BTC-USDT", "2", "10"),
        denied("orders.place:BTC-USDT max_qty 0.5 < 2")
    );
    assert_eq!(
        place("BTC-USDT", "2.00", "10"),
        denied("orders.place:BTC-USDT max_qty 0.5 < 2")
    );
    assert_eq!(
        place("BTC-USDT", "0.5000001", "10"),
        denied("orders.place:BTC-USDT max_qty 0.5 < 0.5000001")
    );
    assert_eq!(
        place("BTC-USDT", "0.1", "1500.50"),
        denied("orders.place:BTC-USDT max_notional 1000 < 1500.5")
    );
    assert_eq!(
        place("ETH-USDT", "0.1", "10"),
        denied("orders.place:ETH-USDT")
    );
    for (qty, notional, fragment) in [
        ("0", "1", "order qty 0 is not positive"),
        ("-1", "1", "order qty -1 is not positive"),
        ("1", "-1", "order notional -1 is negative"),
    ] {
        match place("BTC-USDT", qty, notional) {
            Decision::Invalid { reason } => assert!(reason.contains(fragment), "{reason}"),
            d => panic!("{qty} {notional}: {d}"),
        }
    }
    let l = g.order_limits("BTC-USDT", dec("0.1"), dec("10")).unwrap();
    assert_eq!(l.max_orders_per_min(), Some(10));
    assert_eq!(l.max_open_orders(), None);
    assert_eq!(l.max_qty(), Some(dec("0.5")));
    assert_eq!(l.max_notional(), Some(dec("1000")));
    assert!(g.order_limits("BTC-USDT", dec("1"), dec("10")).is_none());

    // Any one grant that covers the symbol and allows the size is enough; its limits apply.
    let two = grants(&[
        "orders.place:BTC-*;max_qty=0.5",
        "orders.place:BTC-USDT;max_qty=10;max_open_orders=2",
    ]);
    let req = Request::PlaceOrder {
        symbol: "BTC-USDT",
        qty: dec("2"),
        notional: dec("1"),
    };
    assert_eq!(two.check(&req), Decision::Allowed);
    let l = two.order_limits("BTC-USDT", dec("2"), dec("1")).unwrap();
    assert_eq!(
        (l.max_qty(), l.max_open_orders()),
        (Some(dec("10")), Some(2))
    );
    let l = two.order_limits("BTC-USDT", dec("0.1"), dec("1")).unwrap();
    assert_eq!(l.max_qty(), Some(dec("0.5")), "first grant in order wins");
    let req = Request::PlaceOrder {
        symbol: "BTC-EUR",
        qty: dec("2"),
        notional: dec("1"),
    };
    assert_eq!(
        two.check(&req),
        denied("orders.place:BTC-EUR max_qty 0.5 < 2")
    );

    let unlimited = grants(&["orders.place:*"]);
    let req = Request::PlaceOrder {
        symbol: "X",
        qty: Decimal::MAX,
        notional: Decimal::MAX,
    };
    assert_eq!(unlimited.check(&req), Decision::Allowed);
    assert_eq!(
        unlimited.order_limits("X", Decimal::ONE, Decimal::ONE),
        Some(&OrderLimits::default())
    );
}

#[test]
fn caps_http_hosts() {
    // (grant, scheme, host, port, allowed)
    let cases: &[(&str, &str, &str, u16, bool)] = &[
        (
            "https://api.example.com",
            "https",
            "api.example.com",
            443,
            true,
        ),
        (
            "https://api.example.com",
            "https",
            "api.example.com",
            8443,
            false,
        ),
        (
            "http://api.example.com",
            "http",
            "api.example.com",
            80,
            true,
        ),
        (
            "http://api.example.com",
            "http",
            "api.example.com",
            443,
            false,
        ),
        ("http://127.0.0.1", "http", "127.0.0.1", 8080, false),
        (
            "https://api.example.com",
            "HTTPS",
            "API.Example.COM",
            443,
            true,
        ),
        (
            "https://api.example.com",
            "http",
            "api.example.com",
            443,
            false,
        ),
        (
            "https://api.example.com",
            "https",
            "example.com",
            443,
            false,
        ),
        (
            "https://api.example.com",
            "https",
            "x.api.example.com",
            443,
            false,
        ),
        (
            "https://api.example.com",
            "https",
            "api.example.com.evil.io",
            443,
            false,
        ),
        (
            "https://api.example.com:443",
            "https",
            "api.example.com",
            443,
            true,
        ),
        (
            "https://api.example.com:443",
            "https",
            "api.example.com",
            8443,
            false,
        ),
        ("https://*.example.com", "https", "a.example.com", 443, true),
        (
            "https://*.example.com",
            "https",
            "a.b.example.com",
            443,
            true,
        ),
        ("https://*.example.com", "https", "A.EXAMPLE.com", 443, true),
        ("https://*.example.com", "https", "example.com", 443, false),
        (
            "https://*.example.com",
            "https",
            "badexample.com",
            443,
            false,
        ),
        (
            "https://*.example.com",
            "https",
            "a.example.com.evil.io",
            443,
            false,
        ),
        ("https://*.example.com", "https", "xample.com", 443, false),
        ("http://127.0.0.1:8080", "http", "127.0.0.1", 8080, true),
        ("http://127.0.0.1:8080", "http", "127.0.0.2", 8080, false),
        ("http://127.0.0.1:8080", "http", "localhost", 8080, false),
        ("https://[::1]", "https", "[0:0::1]", 443, true),
        ("https://[::1]", "https", "[::2]", 443, false),
        ("https://localhost", "https", "[::1]", 443, false),
    ];
    for &(grant, scheme, host, port, want) in cases {
        let g = grants(&[&format!("http.outbound:{grant}")]);
        let req = Request::Http { scheme, host, port };
        let d = g.check(&req);
        assert_eq!(d.is_allowed(), want, "{grant} vs {req}: {d}");
    }
    assert_eq!(
        GrantSet::default().check(&Request::Http {
            scheme: "HTTPS",
            host: "API.Example.com",
            port: 443
        }),
        Decision::Denied {
            needs: "http.outbound:https://api.example.com:443".into()
        }
    );
    let any = grants(&["http.outbound:https://*.example.com"]);
    for (scheme, host) in [
        ("ftp", "a.example.com"),
        ("https", "a b.example.com"),
        ("https", ""),
        ("https", "::1"),
        ("https", "a..example.com"),
        ("https", "[::1"),
    ] {
        let d = any.check(&Request::Http {
            scheme,
            host,
            port: 443,
        });
        assert!(
            matches!(d, Decision::Invalid { .. }),
            "{scheme} {host}: {d}"
        );
    }
}

#[test]
fn caps_fs_dirs_cover_paths_component_wise() {
    // (grant, request is a write, path, allowed)
    let cases: &[(&str, bool, &str, bool)] = &[
        ("fs.read:/data", false, "/data", true),
        ("fs.read:/data", false, "/data/x", true),
        ("fs.read:/data", false, "/data/x/y.csv", true),
        ("fs.read:/data", false, "/data//x/", true),
        ("fs.read:/data", false, "/database", false),
        ("fs.read:/data", false, "/dat", false),
        ("fs.read:/data", false, "/", false),
        ("fs.read:/data", false, "/other/data", false),
        ("fs.read:/data", true, "/data/x", false),
        ("fs.write:/scratch", false, "/scratch/a", true),
        ("fs.write:/scratch", true, "/scratch/a", true),
        ("fs.write:/scratch", true, "/scratch", true),
        ("fs.write:/scratch", true, "/scratchpad", false),
        ("fs.read:/", false, "/etc/passwd", true),
        ("fs.read:/", true, "/etc/passwd", false),
        ("fs.write:/", true, "/anything/at/all", true),
        ("fs.read:/a/b", false, "/a", false),
        ("fs.read:/a/b", false, "/a/b/c", true),
    ];
    for &(grant, write, path, want) in cases {
        let req = if write {
            Request::FsWrite { path }
        } else {
            Request::FsRead { path }
        };
        let d = grants(&[grant]).check(&req);
        assert_eq!(d.is_allowed(), want, "{grant} vs {req:?}: {d}");
    }
    let g = grants(&["fs.read:/data"]);
    assert_eq!(
        g.check(&Request::FsRead { path: "/etc//x/" }),
        Decision::Denied {
            needs: "fs.read:/etc/x".into()
        }
    );
    assert_eq!(
        g.check(&Request::FsWrite { path: "/data" }),
        Decision::Denied {
            needs: "fs.write:/data".into()
        }
    );
    assert_eq!(
        GrantSet::default().check(&Request::FsRead { path: "//" }),
        Decision::Denied {
            needs: "fs.read:/".into()
        }
    );
    for path in ["/data/../etc", "/data/./x", "data/x", "", "/data/\0x"] {
        let d = g.check(&Request::FsRead { path });
        assert!(matches!(d, Decision::Invalid { .. }), "{path:?}: {d}");
    }
}

#[test]
fn caps_env_and_tools_register() {
    let g = grants(&["env:API_KEY", "tools.register"]);
    assert!(g.check(&Request::Env { name: "API_KEY" }).is_allowed());
    assert_eq!(
        g.check(&Request::Env { name: "API_KEYS" }),
        Decision::Denied {
            needs: "env:API_KEYS".into()
        }
    );
    assert!(matches!(
        g.check(&Request::Env { name: "api_key" }),
        Decision::Invalid { .. }
    ));
    assert!(g.check(&Request::RegisterTool).is_allowed());
    assert_eq!(
        GrantSet::default().check(&Request::RegisterTool),
        Decision::Denied {
            needs: "tools.register".into()
        }
    );
}

#[test]
fn caps_grant_set_dedups_revokes_and_lists() {
    let mut g = grants(&[
        "fs.read:/data",
        "env:B",
        "fs.write:/data",
        "fs.read:/data",
        "fs.read:/ref",
        "env:A",
        "market.read:*",
        "state",
    ]);
    let strings: Vec<String> = g.capabilities().iter().map(Capability::to_string).collect();
    assert_eq!(
        strings,
        [
            "fs.read:/data",
            "env:B",
            "fs.write:/data",
            "fs.read:/ref",
            "env:A",
            "market.read:*",
            "state"
        ]
    );
    let dirs: Vec<(&str, bool)> = g
        .fs_dirs()
        .iter()
        .map(|f| (f.dir.as_str(), f.writable))
        .collect();
    assert_eq!(dirs, [("/data", true), ("/ref", false)]);
    assert_eq!(g.env_names().collect::<Vec<_>>(), ["B", "A"]);

    assert!(g.revoke(&cap("fs.write:/data")));
    assert!(!g.revoke(&cap("fs.write:/data")));
    let dirs: Vec<(&str, bool)> = g
        .fs_dirs()
        .iter()
        .map(|f| (f.dir.as_str(), f.writable))
        .collect();
    assert_eq!(dirs, [("/data", false), ("/ref", false)]);
    assert!(!g.check(&Request::FsWrite { path: "/data/x" }).is_allowed());

    let btc = Request::MarketRead { symbol: "BTC" };
    assert!(g.check(&btc).is_allowed());
    assert!(
        !g.revoke(&cap("market.read:BTC")),
        "revoking a narrower grant is a no-op"
    );
    assert!(g.check(&btc).is_allowed());
    assert!(g.revoke(&cap("market.read:*")));
    assert_eq!(
        g.check(&btc),
        Decision::Denied {
            needs: "market.read:BTC".into()
        }
    );

    assert!(g.grant(cap("market.read:BTC")));
    assert!(!g.grant(cap("market.read:BTC")));
    assert!(g.check(&btc).is_allowed());
    assert_eq!(g.capabilities().last(), Some(&cap("market.read:BTC")));
}

#[test]
fn caps_decision_display() {
    assert_eq!(Decision::Allowed.to_string(), "allowed");
    assert_eq!(
        Decision::Denied {
            needs: "env:A".into()
        }
        .to_string(),
        "denied (needs env:A)"
    );
    assert_eq!(
        Decision::Invalid { reason: "x".into() }.to_string(),
        "invalid request: x"
    );
}

/// Counts heap allocations made by the current thread, so the check's no-allocation promise
/// can be tested while other tests run in parallel.
mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local!(static COUNT: Cell<usize> = const { Cell::new(0) });

    struct Counting;

    fn bump() {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }

    // SAFETY: every call is forwarded unchanged to the system allocator.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            bump();
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            bump();
            // SAFETY: same contract as ours.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            bump();
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    pub fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let before = COUNT.with(Cell::get);
        let r = f();
        (r, COUNT.with(Cell::get) - before)
    }
}

#[test]
fn caps_check_does_not_allocate_when_allowed() {
    let g = grants(&[
        "messaging.publish:orders.>",
        "messaging.subscribe:md.>",
        "messaging.request:svc.*.price",
        "market.read:BTC-*",
        "orders.place:*-USDT;max_qty=5;max_notional=100000",
        "orders.cancel:*",
        "tools.call:price-*",
        "tools.register",
        "http.outbound:https://*.okx.com:443",
        "http.outbound:http://[::1]",
        "http.outbound:http://10.0.0.1",
        "fs.write:/scratch",
        "env:API_KEY",
    ]);
    let requests = [
        Request::Publish {
            subject: "orders.new.btc",
        },
        Request::Subscribe {
            subject: "md.*.BTC",
        },
        Request::Request {
            subject: "svc.okx.price",
        },
        Request::MarketRead { symbol: "BTC-USDT" },
        Request::PlaceOrder {
            symbol: "ETH-USDT",
            qty: dec("1.5"),
            notional: dec("4500.25"),
        },
        Request::CancelOrder { symbol: "ETH-USDT" },
        Request::CallTool { name: "price-feed" },
        Request::RegisterTool,
        Request::Http {
            scheme: "https",
            host: "www.OKX.com",
            port: 443,
        },
        Request::Http {
            scheme: "http",
            host: "[::1]",
            port: 80,
        },
        Request::Http {
            scheme: "http",
            host: "10.0.0.1",
            port: 80,
        },
        Request::FsRead {
            path: "/scratch/a/b",
        },
        Request::FsWrite { path: "/scratch/c" },
        Request::Env { name: "API_KEY" },
    ];
    for req in &requests {
        let (d, n) = alloc_count::allocations(|| g.check(req));
        assert_eq!(d, Decision::Allowed, "{req:?}");
        assert_eq!(n, 0, "{req:?} allocated {n} times");
    }
    // The counter works: a denial builds its message.
    let (d, n) = alloc_count::allocations(|| g.check(&Request::Env { name: "OTHER" }));
    assert!(!d.is_allowed() && n > 0);
}

// ---- properties ----

fn literal_chars() -> Vec<char> {
    ('!'..='~')
        .filter(|c| !matches!(c, '.' | '*' | '>'))
        .collect()
}

fn literal_token() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(literal_chars()), 1..5).prop_map(String::from_iter)
}

fn subject_pattern() -> impl Strategy<Value = String> {
    let token = prop_oneof![3 => literal_token(), 1 => Just("*".to_owned())];
    (prop::collection::vec(token, 1..6), any::<bool>()).prop_map(|(mut tokens, tail)| {
        if tail {
            tokens.push(">".into());
        }
        tokens.join(".")
    })
}

fn positive_decimal() -> impl Strategy<Value = Decimal> {
    (1i64..=i64::from(u32::MAX), 0u32..=8).prop_map(|(m, scale)| Decimal::new(m, scale).normalize())
}

fn order_limits() -> impl Strategy<Value = OrderLimits> {
    (
        prop::option::of(positive_decimal()),
        prop::option::of(positive_decimal()),
        prop::option::of(1u32..),
        prop::option::of(1u32..),
    )
        .prop_map(
            |(max_notional, max_qty, max_orders_per_min, max_open_orders)| OrderLimits {
                max_notional,
                max_qty,
                max_orders_per_min,
                max_open_orders,
            },
        )
}

const DNS: &str = "([a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?\\.){0,3}[a-z]([a-z0-9-]{0,4}[a-z0-9])?";

fn http_target() -> impl Strategy<Value = HttpTarget> {
    let host = prop_oneof![
        DNS.prop_map(HostPattern::Name),
        DNS.prop_map(HostPattern::Subdomains),
        any::<[u8; 4]>().prop_map(|a| HostPattern::Ipv4(a.into())),
        any::<u128>().prop_map(|a| HostPattern::Ipv6(a.into())),
    ];
    let scheme = prop_oneof![Just(Scheme::Http), Just(Scheme::Https)];
    (scheme, host, prop::option::of(1u16..)).prop_map(|(scheme, host, port)| HttpTarget {
        scheme,
        host,
        port,
    })
}

fn fs_dir() -> impl Strategy<Value = FsDir> {
    let comp = "[A-Za-z0-9_.-]{1,6}".prop_filter("not . or ..", |c| c != "." && c != "..");
    prop::collection::vec(comp, 0..4).prop_map(|comps| FsDir(format!("/{}", comps.join("/"))))
}

fn capability() -> impl Strategy<Value = Capability> {
    let symbols = "[A-Z0-9_/-]{0,3}(\\*[A-Z0-9_/-]{1,3}){0,2}\\*?"
        .prop_filter("non-empty", |s| !s.is_empty())
        .prop_map(SymbolPattern);
    let names = "[a-z0-9-]{0,3}(\\*[a-z0-9-]{1,3}){0,2}\\*?"
        .prop_filter("non-empty", |s| !s.is_empty())
        .prop_map(NamePattern);
    prop_oneof![
        subject_pattern().prop_map(|s| Capability::MessagingPublish(SubjectPattern(s))),
        subject_pattern().prop_map(|s| Capability::MessagingSubscribe(SubjectPattern(s))),
        subject_pattern().prop_map(|s| Capability::MessagingRequest(SubjectPattern(s))),
        symbols.clone().prop_map(Capability::MarketRead),
        (symbols.clone(), order_limits())
            .prop_map(|(symbols, limits)| Capability::OrdersPlace { symbols, limits }),
        symbols.prop_map(Capability::OrdersCancel),
        names.prop_map(Capability::ToolsCall),
        Just(Capability::ToolsRegister),
        http_target().prop_map(Capability::HttpOutbound),
        fs_dir().prop_map(Capability::FsRead),
        fs_dir().prop_map(Capability::FsWrite),
        "[A-Z_][A-Z0-9_]{0,8}".prop_map(|n| Capability::Env(EnvName(n))),
        Just(Capability::State),
        Just(Capability::Log),
    ]
}

/// Small alphabet so that grants and requests often overlap.
fn small_pattern() -> impl Strategy<Value = String> {
    let token = prop_oneof![Just("a"), Just("b"), Just("*")];
    (prop::collection::vec(token, 1..4), any::<bool>()).prop_map(|(tokens, tail)| {
        let mut s = tokens.join(".");
        if tail {
            s.push_str(".>");
        }
        s
    })
}

fn covers(grant: &str, request: &str) -> bool {
    Subject::compile(&SubjectPattern(grant.to_owned())).covers(request)
}

/// Replaces each wildcard of `pattern` by concrete tokens chosen by `picks`.
fn instance(pattern: &str, picks: &[usize]) -> String {
    const TOKENS: [&str; 3] = ["a", "b", "z"];
    let mut picks = picks.iter().cycle();
    let mut pick = || picks.next().copied().unwrap_or(0);
    let mut out: Vec<&str> = Vec::new();
    for t in pattern.split('.') {
        match t {
            "*" => out.push(TOKENS[pick() % 3]),
            ">" => (0..=pick() % 3).for_each(|_| out.push(TOKENS[pick() % 3])),
            _ => out.push(t),
        }
    }
    out.join(".")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn caps_prop_display_then_parse_round_trips(c in capability()) {
        let s = c.to_string();
        let back: Capability = s.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(&back, &c);
        prop_assert_eq!(back.to_string(), s);
    }

    #[test]
    fn caps_prop_parser_never_panics(s in any::<String>()) {
        if let Ok(c) = s.parse::<Capability>() {
            prop_assert_eq!(c.to_string().parse::<Capability>().ok(), Some(c));
        }
    }

    #[test]
    fn caps_prop_parser_never_panics_on_near_misses(
        kind in prop::sample::select(KINDS.split(", ").collect::<Vec<_>>()),
        rest in "[ -~\u{e9}]{0,40}",
    ) {
        let s = format!("{kind}:{rest}");
        if let Ok(c) = s.parse::<Capability>() {
            prop_assert_eq!(c.to_string().parse::<Capability>().ok(), Some(c));
        }
        let g = GrantSet::new(s.parse::<Capability>().ok());
        // Checks on arbitrary request text do not panic either.
        for req in [
            Request::Publish { subject: &rest },
            Request::Subscribe { subject: &rest },
            Request::MarketRead { symbol: &rest },
            Request::CallTool { name: &rest },
            Request::Http { scheme: "https", host: &rest, port: 1 },
            Request::FsRead { path: &rest },
            Request::Env { name: &rest },
        ] {
            let _ = g.check(&req);
        }
    }

    #[test]
    fn caps_prop_tail_grant_matches_subjects_below_it(
        tokens in prop::collection::vec(prop::sample::select(vec!["x", "y", "xy"]), 1..5),
    ) {
        let subject = tokens.join(".");
        let g = grants(&["messaging.publish:x.>"]);
        let allowed = g.check(&Request::Publish { subject: &subject }).is_allowed();
        prop_assert_eq!(allowed, subject.starts_with("x.") && tokens.len() >= 2, "{}", subject);
    }

    #[test]
    fn caps_prop_pattern_cover_implies_every_instance_is_covered(
        grant in small_pattern(),
        request in small_pattern(),
        picks in prop::collection::vec(0usize..6, 8),
    ) {
        if covers(&grant, &request) {
            let concrete = instance(&request, &picks);
            prop_assert!(check_subject(&concrete, false).is_ok(), "{}", concrete);
            prop_assert!(covers(&grant, &concrete), "{} covers {} but not {}", grant, request, concrete);
        }
    }

    #[test]
    fn caps_prop_no_cover_has_a_witness(grant in small_pattern(), request in small_pattern()) {
        // With a token ("z") the grant never names and every length of a `>` expansion, an
        // uncovered subject exists whenever the cover check says no.
        if !covers(&grant, &request) {
            let max = grant.split('.').count() + 1;
            let witness = (1..=max).any(|n| {
                let tail = vec!["z"; n].join(".");
                let concrete: Vec<&str> = request
                    .split('.')
                    .map(|t| match t { "*" => "z", ">" => tail.as_str(), t => t })
                    .collect();
                !covers(&grant, &concrete.join("."))
            });
            prop_assert!(witness, "{} does not cover {} but covers all its instances", grant, request);
        }
    }
}
