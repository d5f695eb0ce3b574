//! The Redis session store against a real redis-server: what a Redis dump reveals,
//! sliding expiry, revocation across replicas, and Redis going away and coming back.

use std::time::{Duration, Instant};

use crate::support::redis_server::{free_port, RedisServer};
use redis::Commands as _;
use wxgate::config::{Dur, SessionConfig, StoreKind};
use wxgate::session::{Session, Store, StoreError};

const TIMEOUT: Duration = Duration::from_millis(500);

fn config(url: &str) -> SessionConfig {
    let mut cfg = SessionConfig {
        store: StoreKind::Redis,
        redis_url: url.into(),
        redis_timeout: Dur(TIMEOUT),
        redis_connect_timeout: Dur(Duration::from_secs(1)),
        ..SessionConfig::default()
    };
    cfg.secret_bytes = b"a session secret of at least thirty-two bytes".to_vec();
    cfg
}

async fn store(server: &RedisServer) -> Store {
    Store::from_config(&config(&server.url()))
        .await
        .expect("redis store")
}

fn session(openid: &str) -> Session {
    crate::support::sessions::session(
        openid,
        Some("o6_bmUNIONIDsad6_2sgVt7hMZOPfL"),
        "小明SecretNick",
    )
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_redis_dump_does_not_reveal_who_is_signed_in() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let s = session("oLVPpjqs9OPENIDzwPj5A-vTYAX3GLc");
    store.save(&s).await.unwrap();
    store
        .put_ephemeral("scan:1", s.openid.as_bytes(), Duration::from_secs(60))
        .await
        .unwrap();

    let mut raw = server.client();
    let keys: Vec<String> = raw.keys("*").unwrap();
    assert!(keys.len() >= 3, "session, user index, ephemeral: {keys:?}");
    let mut dump: Vec<u8> = vec![];
    for key in &keys {
        dump.extend_from_slice(key.as_bytes());
        let kind: String = redis::cmd("TYPE").arg(key).query(&mut raw).unwrap();
        match kind.as_str() {
            "string" => dump.extend(raw.get::<_, Vec<u8>>(key).unwrap()),
            "set" => {
                for m in raw.smembers::<_, Vec<Vec<u8>>>(key).unwrap() {
                    dump.extend(m);
                }
            }
            other => panic!("unexpected {other} at {key}"),
        }
    }
    for secret in [
        "OPENID",
        "SecretNick",
        "小明",
        "UNIONID",
        "ACCESSACCESS",
        "REFRESH",
    ] {
        assert!(!contains(&dump, secret), "{secret} found in the dump");
    }
}

#[tokio::test]
async fn the_key_lives_as_long_as_the_session_and_touch_extends_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let s = session("o-ttl");
    let ticket = store.save(&s).await.unwrap();
    let id = ticket.split('.').next().unwrap();
    let mut raw = server.client();
    let ttl = |raw: &mut redis::Connection| -> i64 { raw.ttl(format!("wxgate:s:{id}")).unwrap() };
    assert!((3590..=3600).contains(&ttl(&mut raw)), "{}", ttl(&mut raw));

    let mut later = s.clone();
    later.expires_at += 3600;
    store.touch(&ticket, &later).await.unwrap();
    assert!((7190..=7200).contains(&ttl(&mut raw)), "{}", ttl(&mut raw));
    assert_eq!(store.load(&ticket).await.unwrap(), Some(later));
}

/// How many SET commands redis-server has run (`INFO commandstats`).
fn sets_run(raw: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(raw).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_set:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn a_busy_sessions_slide_is_written_once_off_the_request_path() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = std::sync::Arc::new(store(&server).await);
    let s = session("o-slide");
    let ticket = store.save(&s).await.unwrap();
    let id = ticket.split('.').next().unwrap().to_owned();
    let mut raw = server.client();
    let sets_before = sets_run(&mut raw);

    // Twenty requests of the same session ask to slide it at once: each gets its
    // answer without waiting for Redis, and the ticket never changes.
    let mut later = s.clone();
    later.expires_at += 3600;
    let slides = (0..20).map(|_| store.slide(&ticket, &later));
    for answer in futures_util::future::join_all(slides).await {
        assert_eq!(answer, Ok(None));
    }
    // Written in the background: polled (a deadline, not a measurement).
    let deadline = Instant::now() + Duration::from_secs(10);
    let ttl = |raw: &mut redis::Connection| -> i64 { raw.ttl(format!("wxgate:s:{id}")).unwrap() };
    while ttl(&mut raw) < 7000 {
        assert!(Instant::now() < deadline, "the slide was never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.load(&ticket).await.unwrap(), Some(later.clone()));
    assert_eq!(
        sets_run(&mut raw) - sets_before,
        1,
        "one write for twenty slides"
    );

    // Once it has landed, a later slide writes again (asked until one is not folded
    // into the one before, whose bookkeeping may end just after its write).
    let mut again = later.clone();
    again.expires_at += 3600;
    while ttl(&mut raw) < 10_000 {
        assert!(
            Instant::now() < deadline,
            "the second slide was never written"
        );
        store.slide(&ticket, &again).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sets_run(&mut raw) - sets_before, 2);
}

#[tokio::test]
async fn revoking_on_one_replica_ends_the_sessions_on_another() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = (store(&server).await, store(&server).await);
    let tickets = [
        a.save(&session("o-revoked")).await.unwrap(),
        a.save(&session("o-revoked")).await.unwrap(),
    ];
    let other = session("o-kept");
    let other_ticket = a.save(&other).await.unwrap();
    assert_eq!(b.count().await.unwrap(), 3);

    assert_eq!(b.revoke_openid("o-revoked").await.unwrap(), 2);

    for t in &tickets {
        assert_eq!(a.load(t).await.unwrap(), None);
    }
    assert_eq!(a.load(&other_ticket).await.unwrap(), Some(other));
    assert_eq!(a.count().await.unwrap(), 1);
}

fn is_outage(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_) | StoreError::Timeout)
}

#[tokio::test]
async fn while_redis_is_down_operations_fail_promptly_and_sessions_return_with_it() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let s = session("o-outage");
    let ticket = store.save(&s).await.unwrap();
    let _: () = redis::cmd("SAVE").query(&mut server.client()).unwrap();

    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let err = store.load(&ticket).await.unwrap_err();
        assert!(is_outage(&err), "{err:?}");
        assert!(
            started.elapsed() < TIMEOUT + Duration::from_millis(500),
            "answered in {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    assert!(is_outage(&store.ping().await.unwrap_err()));
    assert!(started.elapsed() < TIMEOUT + Duration::from_millis(500));

    server.restart();
    // The manager reconnects on its own; no event to await, so ask until it answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let loaded = loop {
        match store.load(&ticket).await {
            Ok(found) => break found,
            Err(e) if Instant::now() < deadline => {
                assert!(is_outage(&e), "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("still failing after restart: {e:?}"),
        }
    };
    assert_eq!(loaded, Some(s));
}

#[tokio::test]
async fn an_unreachable_redis_refuses_start_naming_the_address_but_not_the_password() {
    let port = free_port();
    let cfg = config(&format!("redis://:hunter2@127.0.0.1:{port}/0"));
    let started = Instant::now();
    let Err(err) = Store::from_config(&cfg).await else {
        panic!("connected to a dead address");
    };
    assert!(started.elapsed() < Duration::from_secs(3));
    let message = err.to_string();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn when_redis_is_optional_at_start_the_store_connects_once_it_appears() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    server.kill();
    let mut cfg = config(&server.url());
    cfg.redis_required_at_start = false;
    let store = Store::from_config(&cfg)
        .await
        .expect("starts without redis");
    assert!(is_outage(&store.ping().await.unwrap_err()));

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = store.ping().await {
        assert!(Instant::now() < deadline, "still failing: {e:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ticket = store.save(&session("o-late")).await.unwrap();
    assert!(store.load(&ticket).await.unwrap().is_some());
}

#[tokio::test]
async fn with_a_cache_sessions_load_without_redis_until_the_cache_ttl() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let mut cfg = config(&server.url());
    cfg.cache_ttl = Dur(Duration::from_secs(60));
    let store = Store::from_config(&cfg).await.unwrap();
    let s = session("o-cached");
    let ticket = store.save(&s).await.unwrap();
    let mut wrong_key = ticket.clone();
    wrong_key.replace_range(ticket.len() - 2.., "AA");

    server.kill();
    assert_eq!(store.load(&ticket).await.unwrap(), Some(s.clone()));
    assert!(
        store.load(&wrong_key).await.is_err(),
        "a ticket with another key is not served from the cache"
    );
    store.delete(&ticket, &s).await.unwrap_err();
    assert!(
        store.load(&ticket).await.is_err(),
        "a signed-out ticket leaves the cache even when redis is down"
    );
}

#[tokio::test]
async fn a_redis_cluster_keeps_sessions_and_revokes_them() {
    let Some(server) = RedisServer::start_cluster() else {
        return;
    };
    let mut cfg = config("redis://127.0.0.1:1/0");
    cfg.redis_cluster_urls = vec![format!("redis://127.0.0.1:{}", server.port)];
    let store = Store::from_config(&cfg).await.expect("cluster store");

    let s = session("o-cluster");
    let ticket = store.save(&s).await.unwrap();
    let second = store.save(&session("o-cluster")).await.unwrap();
    assert_eq!(store.load(&ticket).await.unwrap(), Some(s.clone()));

    let mut later = s.clone();
    later.expires_at += 3600;
    store.touch(&ticket, &later).await.unwrap();
    assert_eq!(store.load(&ticket).await.unwrap(), Some(later));

    assert_eq!(store.revoke_openid("o-cluster").await.unwrap(), 2);
    assert_eq!(store.load(&ticket).await.unwrap(), None);
    assert_eq!(store.load(&second).await.unwrap(), None);

    store
        .put_ephemeral("qr:c", b"v", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        store.take_ephemeral("qr:c").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(store.take_ephemeral("qr:c").await.unwrap(), None);
    assert!(store.try_lock("l", Duration::from_secs(60)).await.unwrap());
    assert!(!store.try_lock("l", Duration::from_secs(60)).await.unwrap());
    assert_eq!(store.count().await, Err(StoreError::Unsupported));
    store.ping().await.unwrap();
}

#[tokio::test]
async fn a_users_index_forgets_sessions_that_expired() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server).await;
    let mut raw = server.client();
    for _ in 0..70 {
        let ticket = store.save(&session("o-daily")).await.unwrap();
        // As if the key had expired: Redis removes it, the index keeps the id.
        let id = ticket.split('.').next().unwrap();
        let _: () = raw.del(format!("wxgate:s:{id}")).unwrap();
    }
    let live = store.save(&session("o-daily")).await.unwrap();

    let index: Vec<String> = raw.keys("wxgate:u:*").unwrap();
    assert_eq!(index.len(), 1);
    let size: usize = raw.scard(&index[0]).unwrap();
    assert!(size <= 65, "index still holds {size} ids");
    assert_eq!(store.revoke_openid("o-daily").await.unwrap(), 1);
    assert_eq!(store.load(&live).await.unwrap(), None);
}
