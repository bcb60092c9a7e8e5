use std::time::Duration;

/// Redis loading its data after a restart, or failing over, is "retry later" (503), not a
/// broken store (500); a script error stays a backend error.
#[test]
fn not_now_replies_are_unavailable() {
    let error = |reply: &str| {
        redis::parse_redis_value(reply.as_bytes())
            .and_then(redis::Value::extract_error)
            .expect_err("an error reply")
    };
    for reply in [
        "-LOADING Redis is loading the dataset in memory\r\n",
        "-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
        "-CLUSTERDOWN The cluster is down\r\n",
        "-MASTERDOWN Link with MASTER is down\r\n",
        "-READONLY You can't write against a read only replica.\r\n",
    ] {
        assert!(super::temporarily_unable(&error(reply)), "{reply}");
    }
    assert!(!super::temporarily_unable(&error(
        "-ERR Error running script\r\n"
    )));
}

#[test]
fn read_bounds_grow_with_the_keys_read() {
    let t = Duration::from_millis(100);
    assert_eq!(super::read_bound(t, 1), t);
    assert_eq!(super::read_bound(t, 1000), t);
    assert_eq!(super::read_bound(t, 1001), t * 2);
    assert_eq!(super::read_bound(t, 20_000), Duration::from_secs(2));
}

/// A URL the Redis client cannot parse is reported without its password, even when it is
/// too malformed to have a scheme (`redis:/user:password@host`).
#[tokio::test]
async fn invalid_urls_are_reported_without_their_password() {
    for url in ["redis:/default:S3cret@host", "redis://default:S3cret@"] {
        let config = quiver_registry::OnlineStoreConfig::Redis {
            url: url.into(),
            cluster: false,
            cluster_nodes: Vec::new(),
            timeout_ms: 100,
            write_timeout_ms: 100,
            key_ttl: false,
            allow_eviction: false,
            tls_ca_file: None,
        };
        let err = super::RedisStore::connect(&config, std::path::Path::new("."))
            .await
            .expect_err("the URL is refused")
            .to_string();
        assert!(err.contains("Redis URL"), "{url}: {err}");
        assert!(!err.contains("S3cret"), "{url}: {err}");
    }
}

/// A password with `#`, `/` or `?` written as is used to give "InvalidClientConfig" or
/// "Invalid database number", or to connect to the user name as a host (`u:12#x@h` is host
/// `u`, port 12). It is now refused with the encoding to use, never showing the password;
/// the encoded URL is accepted.
#[tokio::test]
async fn reserved_characters_in_a_password_get_an_encoding_hint() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = |url: String, cluster: bool| quiver_registry::OnlineStoreConfig::Redis {
        url,
        cluster,
        cluster_nodes: Vec::new(),
        timeout_ms: 100,
        write_timeout_ms: 100,
        key_ttl: false,
        allow_eviction: false,
        tls_ca_file: None,
    };
    for secret in [
        "Pa#ss",
        "12#Sx",
        "Pa/ss",
        "12/34",
        "Pa?ss",
        "12?Sx",
        "P@ss#w/rd?",
    ] {
        for cluster in [false, true] {
            let url = format!("redis://default:{secret}@127.0.0.1:{port}/0");
            let err = super::RedisStore::connect(&config(url, cluster), std::path::Path::new("."))
                .await
                .expect_err("the URL is refused")
                .to_string();
            assert!(
                err.contains("percent-encode") && err.contains("`#` → `%23`"),
                "{secret}: {err}"
            );
            assert!(!err.contains(secret), "{secret}: {err}");
        }
    }
    // Encoded, the URL parses and names the right server (nothing listens there).
    let url = format!("redis://default:Pa%23s%2Fs%3F%40@127.0.0.1:{port}/0");
    let err = super::RedisStore::connect(&config(url, false), std::path::Path::new("."))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, crate::Error::Unavailable(_)), "{err}");
}

#[test]
fn slots_follow_the_cluster_spec() {
    // Reference values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
    assert_eq!(super::slot("foo"), 12182);
    assert_eq!(
        super::slot("{user1000}.following"),
        super::slot("{user1000}.followers")
    );
    assert_eq!(
        super::slot("quiver:p:a:1:{i1}"),
        super::slot("quiver:p:b:7:{i1}")
    );
}
