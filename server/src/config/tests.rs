//! Settings: precedence, defaults, bounds and refusals, and the shipped config file.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    launch: LaunchArgs,
}

fn load(args: &[&str]) -> Result<Settings, ConfigError> {
    let cli = Cli::try_parse_from(std::iter::once("haplane").chain(args.iter().copied()))
        .map_err(|err| config_error("cli", err.to_string()))?;
    Settings::load(cli.launch)
}

#[test]
fn defaults_match_the_spec() {
    let s = load(&[]).unwrap();
    assert_eq!(s.ha_mode, HaMode::Auto);
    assert_eq!(s.persist, PersistMode::Auto);
    assert_eq!(
        s.store,
        StoreLocation::Directory(PathBuf::from("haplane-data"))
    );
    assert_eq!(s.bind, "127.0.0.1:8081".parse().unwrap());
    assert_eq!(s.poll_period, Duration::from_secs(1));
    assert_eq!(s.heartbeat_timeout, Duration::from_secs(10));
    assert_eq!(s.safety_margin, Duration::from_secs(2));
}

#[test]
fn flags_beat_the_file_which_beats_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("haplane.toml");
    std::fs::write(
        &file,
        "priority = 4\npoll_period = \"200ms\"\nha_mode = \"hot-standby\"\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let s = load(&["--config", path, "--priority", "-7"]).unwrap();
    assert_eq!(s.priority, -7);
    assert_eq!(s.poll_period, Duration::from_millis(200));
    assert_eq!(s.ha_mode, HaMode::HotStandby);
}

#[test]
fn unknown_file_keys_and_bad_values_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("haplane.toml");
    std::fs::write(&file, "pol_period = \"1s\"\n").unwrap();
    let err = load(&["--config", file.to_str().unwrap()]).unwrap_err();
    assert!(err.to_string().contains("pol_period"), "{err}");
    // A bad value is parsed as the flag's would be; the message shows the file's line.
    std::fs::write(&file, "poll_period = \"soon\"\n").unwrap();
    let err = load(&["--config", file.to_str().unwrap()]).unwrap_err();
    assert_eq!(err.flag, "config");
    let message = err.to_string();
    assert!(
        message.contains("poll_period") && message.contains("e.g. 500ms"),
        "{message}"
    );
    // Passwords and the file's own path are flags only.
    for key in ["auth_password = \"x\"", "config = \"other.toml\""] {
        std::fs::write(&file, format!("{key}\n")).unwrap();
        let err = load(&["--config", file.to_str().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{key}: {err}");
    }
}

#[test]
fn invalid_combinations_are_refused() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--heartbeat-timeout", "1s", "--poll-period", "800ms"],
            "heartbeat-timeout",
        ),
        (
            &["--persist", "disabled", "--ha-mode", "standby"],
            "ha-mode",
        ),
        (
            &["--persist", "clean", "--ha-mode", "hot_backup"],
            "persist",
        ),
        (&["--safety-margin", "6s"], "safety-margin"),
        (&["--advertise-uri", "ftp://x"], "advertise-uri"),
        (
            &["--persistence-location", "gs://b/p"],
            "persistence-location",
        ),
    ];
    for (args, flag) in cases {
        assert_eq!(load(args).unwrap_err().flag, *flag, "{args:?}");
    }
    assert!(load(&["--ha-mode", "primary"]).is_err());
    assert!(load(&["--node-id", "../x"]).is_err());
}

#[test]
fn auth_and_tls_settings_are_checked_and_secrets_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "# ops\nadmin:hunter2\n\nops:pa:ss\n").unwrap();
    let users = users.to_str().unwrap();
    let s = load(&["--auth-users-file", users, "--auth-health"]).unwrap();
    let auth = s.auth.clone().unwrap();
    assert_eq!(auth.users[1].0, "ops");
    assert_eq!(auth.users[1].1.expose(), "pa:ss");
    assert!(auth.protect_health);
    let printed = format!("{s:?}");
    assert!(
        !printed.contains("hunter2") && !printed.contains("pa:ss"),
        "{printed}"
    );

    let bad = dir.path().join("bad");
    std::fs::write(&bad, "admin:hunter2\njust-a-secret\n").unwrap();
    let err = load(&["--auth-users-file", bad.to_str().unwrap()]).unwrap_err();
    assert_eq!(err.flag, "auth-users-file");
    assert!(err.message.contains("line 2") && !err.message.contains("just-a-secret"));

    let cases: &[(&[&str], &str)] = &[
        (&["--auth-user", "admin"], "auth-password"),
        (&["--auth-password", "x"], "auth-user"),
        (&["--auth-user", "a:b", "--auth-password", "x"], "auth-user"),
        (&["--auth-health"], "auth-health"),
        (&["--tls-cert", users], "tls-key"),
        (&["--tls-key", users], "tls-cert"),
        (
            &["--tls-cert", "/nonexistent", "--tls-key", users],
            "tls-cert",
        ),
        (&["--tls-cert", users, "--tls-key", users], "tls-cert"),
    ];
    for (args, flag) in cases {
        assert_eq!(load(args).unwrap_err().flag, *flag, "{args:?}");
    }
    assert!(load(&[]).unwrap().auth.is_none());
}

#[test]
fn connection_limits_have_defaults_and_bounds() {
    let s = load(&[]).unwrap();
    assert_eq!(s.limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(s.limits.body_read_timeout, Duration::from_secs(30));
    assert_eq!(s.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(s.limits.max_connections, None);
    assert_eq!(s.limits.max_streams_per_connection, 256);
    assert_eq!(s.limits.max_watchers, 16_384);
    let s = load(&["--idle-timeout", "500ms", "--max-connections", "100"]).unwrap();
    assert_eq!(s.limits.idle_timeout, Duration::from_millis(500));
    assert_eq!(s.limits.max_connections, Some(100));
    let cases: &[(&[&str], &str)] = &[
        (&["--handshake-timeout", "1ms"], "handshake-timeout"),
        (&["--header-read-timeout", "2h"], "header-read-timeout"),
        (&["--body-read-timeout", "1ms"], "body-read-timeout"),
        (&["--max-connections", "0"], "max-connections"),
        (
            &["--max-streams-per-connection", "0"],
            "max-streams-per-connection",
        ),
        (&["--max-watchers", "0"], "max-watchers"),
    ];
    for (args, flag) in cases {
        assert_eq!(load(args).unwrap_err().flag, *flag, "{args:?}");
    }
}

#[test]
fn a_peer_secret_needs_auth_and_one_long_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let good = write("peer", "0123456789abcdef-peer\n");
    let users = write("users", "admin:pw\n");
    let s = load(&["--auth-users-file", &users, "--peer-secret-file", &good]).unwrap();
    let auth = s.auth.unwrap();
    assert_eq!(
        auth.peer_secret.as_ref().map(Secret::expose),
        Some("0123456789abcdef-peer")
    );
    assert!(s.secret_files.contains(&PathBuf::from(&good)));
    let short = write("short", "tooshort\n");
    let two_lines = write("two", "0123456789abcdef\nsecond line\n");
    let spaces = write("spaces", "                    \n");
    let peer_user = write("peer-user", "haplane-peer:pw\n");
    let cases: &[&[&str]] = &[
        &["--peer-secret-file", &good],
        &["--auth-users-file", &users, "--peer-secret-file", &short],
        &[
            "--auth-users-file",
            &users,
            "--peer-secret-file",
            &two_lines,
        ],
        &["--auth-users-file", &users, "--peer-secret-file", &spaces],
        &["--auth-users-file", &peer_user, "--peer-secret-file", &good],
        &[
            "--auth-users-file",
            &users,
            "--peer-secret-file",
            "/nonexistent",
        ],
    ];
    for args in cases {
        assert_eq!(load(args).unwrap_err().flag, "peer-secret-file", "{args:?}");
    }
}

#[test]
fn the_shipped_config_file_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/haplane.toml");
    let s = load(&["--config", path]).unwrap();
    assert_eq!(
        s.store,
        StoreLocation::Directory(PathBuf::from("/var/lib/haplane"))
    );
    assert_eq!(s.log_format, LogFormat::Json);
    // Every commented-out example is a key the file may hold, with a value of its type.
    let text = std::fs::read_to_string(path).unwrap();
    let examples: String = text
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter(|line| {
            line.split_once(" = ")
                .is_some_and(|(key, _)| !key.contains(' '))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(examples.contains("body_read_timeout"), "{examples}");
    toml::from_str::<LaunchArgs>(&examples).unwrap_or_else(|err| panic!("{err}\n{examples}"));
}

#[test]
fn persist_disabled_downgrades_auto_and_small_timeouts_shrink_the_margin() {
    assert_eq!(
        load(&["--persist", "disabled"]).unwrap().ha_mode,
        HaMode::Disabled
    );
    let s = load(&["--heartbeat-timeout", "1s", "--poll-period", "100ms"]).unwrap();
    assert_eq!(s.safety_margin, Duration::from_millis(250));
}

#[test]
fn allowed_hosts_are_normalised_and_checked_and_secret_files_listed() {
    let s = load(&[
        "--allowed-host",
        "HA.example.com.,b.example",
        "--allowed-host",
        "*",
    ])
    .unwrap();
    assert_eq!(s.allowed_hosts, ["ha.example.com", "b.example", "*"]);
    assert!(s.secret_files.is_empty());
    let err = load(&["--allowed-host", "http://x.example/"]).unwrap_err();
    assert_eq!(err.flag, "allowed-host");
    assert!(load(&["--allowed-host", ""]).is_err());
}

#[test]
fn an_unspecified_address_is_never_advertised() {
    for args in [
        &["--bind", "0.0.0.0:8081"][..],
        &["--bind", "[::]:8081"],
        &["--advertise-uri", "http://0.0.0.0:8081"],
        &["--advertise-uri", "http://[::]:8081/"],
        &["--advertise-uri", "http://0.0.0.0"],
        &["--advertise-uri", "https://[::]"],
    ] {
        let err = load(args).unwrap_err();
        assert_eq!(err.flag, "advertise-uri", "{args:?}");
    }
    let s = load(&[
        "--bind",
        "0.0.0.0:8081",
        "--advertise-uri",
        "http://ha-1.example:8081",
    ])
    .unwrap();
    assert_eq!(s.bind.port(), 8081);
    assert!(load(&["--advertise-uri", "http://[::1]:8081"]).is_ok());
    for bad in [
        "http://",
        "http://:8081",
        "http://a:8081/path",
        "http://a:8081?x=1",
        "http://a b",
        "http://a:99999",
        "http://a:abc",
        "http://a:0",
        "http://[::1]:x",
        "http://a:",
    ] {
        let err = load(&["--advertise-uri", bad]).unwrap_err();
        assert_eq!(err.flag, "advertise-uri", "{bad}");
    }
    let trailing = load(&["--advertise-uri", "http://ha-1.example:8081//"]).unwrap();
    assert_eq!(
        trailing.advertise_uri.as_deref(),
        Some("http://ha-1.example:8081")
    );
    assert!(load(&["--advertise-uri", "https://10.0.0.5"]).is_ok());
}
