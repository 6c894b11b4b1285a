//! Credentials, the peer secret's reach, throttling and what reaches the log.

use super::*;

fn authenticator(protect_health: bool) -> Authenticator {
    Authenticator::new(&AuthSettings {
        users: vec![
            ("admin".to_owned(), Secret::new("s3cret:x")),
            ("ops".to_owned(), Secret::new("other")),
        ],
        protect_health,
        peer_secret: None,
    })
}

fn headers(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value.parse().unwrap());
    headers
}

#[test]
fn every_configured_user_is_accepted_and_nothing_else() {
    let auth = authenticator(false);
    let basic = |user: &str, password: &str| Credentials::new(user, password).authorization();
    let admin = basic("admin", "s3cret:x").unwrap();
    let ops = basic("ops", "other").unwrap();
    assert_eq!(
        auth.verify("/v1/server/ha/state", &headers(admin.to_str().unwrap())),
        Ok(())
    );
    assert_eq!(
        auth.verify("/v1/server/ha/state", &headers(ops.to_str().unwrap())),
        Ok(())
    );
    let wrong = basic("ops", "s3cret:x").unwrap();
    assert_eq!(
        auth.verify("/v1/server/ha/state", &headers(wrong.to_str().unwrap())),
        Err(Refusal::Invalid)
    );
    assert_eq!(
        auth.verify("/v1/server/ha/state", &HeaderMap::new()),
        Err(Refusal::Missing)
    );
    for garbage in ["Bearer abc", "Basic !!!", "Basic ", "basic YWRtaW46"] {
        assert_eq!(
            auth.verify("/v1/server/ha/state", &headers(garbage)),
            Err(Refusal::Invalid),
            "{garbage}"
        );
    }
}

#[test]
fn the_basic_scheme_is_case_insensitive() {
    let auth = authenticator(false);
    let admin = Credentials::new("admin", "s3cret:x")
        .authorization()
        .unwrap();
    let encoded = admin.to_str().unwrap().strip_prefix("Basic ").unwrap();
    for scheme in ["basic", "BASIC", "bAsIc"] {
        let value = format!("{scheme} {encoded}");
        assert_eq!(
            auth.verify("/v1/server/ha/state", &headers(&value)),
            Ok(()),
            "{value}"
        );
    }
    assert_eq!(
        auth.verify(
            "/v1/server/ha/state",
            &headers(&format!("Basicx {encoded}"))
        ),
        Err(Refusal::Invalid)
    );
}

#[test]
fn the_logged_user_never_includes_the_password() {
    let value = Credentials::new("mallory", "hunter2:x")
        .authorization()
        .unwrap();
    assert_eq!(claimed_user(&headers(value.to_str().unwrap())), "mallory");
    assert_eq!(claimed_user(&headers("Bearer abc")), "(not Basic)");
    let long = Credentials::new("u".repeat(500), "pw")
        .authorization()
        .unwrap();
    assert_eq!(
        claimed_user(&headers(long.to_str().unwrap())).len(),
        MAX_LOGGED_USER
    );
}

#[test]
fn failures_back_off_per_address_and_a_success_resets() {
    let throttle = Throttle::default();
    let (attacker, other) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    let start = Instant::now();
    for n in 1..FREE_FAILURES {
        assert_eq!(throttle.failed(attacker, start), None, "failure {n}");
    }
    assert_eq!(throttle.blocked(attacker, start), None);
    assert_eq!(
        throttle.failed(attacker, start),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        throttle.blocked(attacker, start),
        Some(Duration::from_secs(1))
    );
    assert_eq!(throttle.blocked(other, start), None);
    let later = start + Duration::from_secs(1);
    assert_eq!(throttle.blocked(attacker, later), None);
    assert_eq!(
        throttle.failed(attacker, later),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        throttle.failed(attacker, later),
        Some(Duration::from_secs(4))
    );
    for _ in 0..20 {
        throttle.failed(attacker, later);
    }
    assert_eq!(throttle.blocked(attacker, later), Some(MAX_BACKOFF));
    throttle.succeeded(attacker);
    assert_eq!(throttle.blocked(attacker, later), None);
    assert_eq!(throttle.failed(attacker, later), None);
}

#[test]
fn failures_further_apart_than_the_window_are_forgotten() {
    let throttle = Throttle::default();
    let address = "2001:db8::1".parse().unwrap();
    let mut now = Instant::now();
    for _ in 0..3 * FREE_FAILURES {
        assert_eq!(throttle.failed(address, now), None);
        now += FAILURE_WINDOW;
    }
}

#[test]
fn health_is_open_unless_protected() {
    assert!(authenticator(false).is_open("/v1/server/ha/health"));
    assert!(authenticator(false).is_open("/grpc.health.v1.Health/Check"));
    assert!(!authenticator(false).is_open("/v1/server/ha/state"));
    assert!(!authenticator(true).is_open("/v1/server/ha/health"));
}

#[test]
fn the_peer_secret_opens_only_peer_calls_and_replaces_the_user_sent_to_peers() {
    let auth = Authenticator::new(&AuthSettings {
        users: vec![("admin".to_owned(), Secret::new("operator password"))],
        protect_health: false,
        peer_secret: Some(Secret::new("0123456789abcdef-peer")),
    });
    let peer = auth.peer_authorization().unwrap();
    assert_eq!(
        Some(peer.clone()),
        Credentials::new(PEER_USER, "0123456789abcdef-peer").authorization()
    );
    let presented = headers(peer.to_str().unwrap());
    for path in PEER_PATHS {
        assert_eq!(auth.verify(path, &presented), Ok(()), "{path}");
    }
    for path in [
        "/haplane.v1.HaService/SetState",
        "/haplane.v1.HaService/GetState",
        "/v1/server/ha/state",
        "/haplane.v1.HaService/Nudge/",
    ] {
        assert_eq!(
            auth.verify(path, &presented),
            Err(Refusal::Invalid),
            "{path}"
        );
    }
    let operator = Credentials::new("admin", "operator password")
        .authorization()
        .unwrap();
    let operator = headers(operator.to_str().unwrap());
    assert_eq!(
        auth.verify("/haplane.v1.HaService/StepDown", &operator),
        Ok(())
    );
    assert_eq!(auth.verify("/v1/server/ha/state", &operator), Ok(()));
}

#[test]
fn the_peer_header_is_sensitive() {
    let value = authenticator(false).peer_authorization().unwrap();
    assert!(value.is_sensitive());
    assert!(!format!("{value:?}").contains("YWRtaW4"));
}
