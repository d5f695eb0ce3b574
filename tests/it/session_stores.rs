//! One behaviour suite for every session store: each store must pass the same stories.

use std::sync::Arc;
use std::time::Duration;

use wxgate::config::{SessionConfig, StoreKind};
use wxgate::session::{new_session_id, now_unix, CookieCodec, Session, Store, StoreError};

fn config(kind: StoreKind) -> SessionConfig {
    let mut cfg = SessionConfig {
        store: kind,
        ..SessionConfig::default()
    };
    cfg.secret_bytes = b"a session secret of at least thirty-two bytes".to_vec();
    cfg
}

async fn store(kind: StoreKind) -> Store {
    Store::from_config(&config(kind)).await.expect("store")
}

fn session(openid: &str) -> Session {
    crate::support::sessions::session(openid, None, "小明")
}

/// Every story, against one store.
async fn suite(store: Store) {
    let store = Arc::new(store);
    a_saved_session_loads_back(&store).await;
    unknown_and_tampered_tickets_find_nothing(&store).await;
    a_signed_out_session_is_gone(&store).await;
    an_expired_session_is_gone(&store).await;
    touch_extends_the_expiry(&store).await;
    revoking_a_user_ends_all_their_sessions_and_no_other(&store).await;
    an_ephemeral_value_can_be_taken_once(&store).await;
    a_lock_excludes_a_second_locker_until_unlock_or_ttl(&store).await;
    store.ping().await.expect("ping");
}

async fn a_saved_session_loads_back(store: &Store) {
    let s = session("o-roundtrip");
    let ticket = store.save(&s).await.unwrap();
    assert_eq!(store.load(&ticket).await.unwrap(), Some(s));
}

async fn unknown_and_tampered_tickets_find_nothing(store: &Store) {
    let ticket = store.save(&session("o-tamper")).await.unwrap();
    let mut tampered = ticket.clone();
    tampered.pop();
    tampered.push('#');
    for t in [
        new_session_id(),
        String::new(),
        tampered,
        format!("{ticket}x"),
    ] {
        assert_eq!(store.load(&t).await.unwrap(), None, "{t:?}");
    }
}

async fn a_signed_out_session_is_gone(store: &Store) {
    let s = session("o-signout");
    let ticket = store.save(&s).await.unwrap();
    store.delete(&ticket, &s).await.unwrap();
    assert_eq!(store.load(&ticket).await.unwrap(), None);
}

async fn an_expired_session_is_gone(store: &Store) {
    let mut s = session("o-expired");
    s.expires_at = now_unix() - 1;
    let ticket = store.save(&s).await.unwrap();
    assert_eq!(store.load(&ticket).await.unwrap(), None);
}

async fn touch_extends_the_expiry(store: &Store) {
    let s = session("o-touch");
    let ticket = store.save(&s).await.unwrap();

    let mut soon = s.clone();
    soon.expires_at += 30;
    assert_eq!(
        store.touch(&ticket, &soon).await.unwrap(),
        None,
        "under a minute: no write"
    );
    assert_eq!(
        store.load(&ticket).await.unwrap().unwrap().expires_at,
        s.expires_at
    );

    let mut later = s.clone();
    later.expires_at += 3600;
    let ticket = store
        .touch(&ticket, &later)
        .await
        .unwrap()
        .unwrap_or(ticket);
    assert_eq!(store.load(&ticket).await.unwrap(), Some(later));
}

async fn revoking_a_user_ends_all_their_sessions_and_no_other(store: &Store) {
    let mine = [session("o-revoked"), session("o-revoked")];
    let other = session("o-kept");
    let mut tickets = vec![];
    for s in &mine {
        tickets.push(store.save(s).await.unwrap());
    }
    let other_ticket = store.save(&other).await.unwrap();

    let ended = store.revoke_openid("o-revoked").await.unwrap();
    if store.count().await != Err(StoreError::Unsupported) {
        assert_eq!(ended, 2);
    }
    for t in &tickets {
        assert_eq!(store.load(t).await.unwrap(), None);
    }
    assert_eq!(store.load(&other_ticket).await.unwrap(), Some(other));
}

async fn an_ephemeral_value_can_be_taken_once(store: &Arc<Store>) {
    let ttl = Duration::from_secs(60);
    store.put_ephemeral("qr:1", b"pending", ttl).await.unwrap();
    assert_eq!(
        store.get_ephemeral("qr:1").await.unwrap().as_deref(),
        Some(&b"pending"[..])
    );
    assert_eq!(
        store.get_ephemeral("qr:1").await.unwrap().as_deref(),
        Some(&b"pending"[..]),
        "get keeps it"
    );

    let takes: Vec<_> = (0..2)
        .map(|_| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.take_ephemeral("qr:1").await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for t in takes {
        if let Some(v) = t.await.unwrap() {
            assert_eq!(v, b"pending");
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one concurrent take wins");
    assert_eq!(store.get_ephemeral("qr:1").await.unwrap(), None);

    store
        .put_ephemeral("qr:2", b"x", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(store.take_ephemeral("qr:2").await.unwrap(), None, "expired");
}

async fn a_lock_excludes_a_second_locker_until_unlock_or_ttl(store: &Store) {
    let long = Duration::from_secs(60);
    assert!(store.try_lock("refresh:a", long).await.unwrap());
    assert!(!store.try_lock("refresh:a", long).await.unwrap(), "held");
    assert!(
        store.try_lock("refresh:b", long).await.unwrap(),
        "other keys are independent"
    );
    store.unlock("refresh:a").await.unwrap();
    assert!(
        store.try_lock("refresh:a", long).await.unwrap(),
        "free after unlock"
    );

    assert!(store
        .try_lock("refresh:c", Duration::from_millis(1))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        store.try_lock("refresh:c", long).await.unwrap(),
        "free after its ttl"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_suite() {
    suite(store(StoreKind::Memory).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_store_passes_the_suite() {
    suite(store(StoreKind::Cookie).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_suite() {
    let Some(server) = crate::support::redis_server::RedisServer::start() else {
        return;
    };
    let mut cfg = config(StoreKind::Redis);
    cfg.redis_url = server.url();
    suite(Store::from_config(&cfg).await.expect("redis store")).await;
}

#[tokio::test]
async fn the_memory_store_counts_live_sessions() {
    let store = store(StoreKind::Memory).await;
    store.save(&session("o-1")).await.unwrap();
    store.save(&session("o-2")).await.unwrap();
    let mut gone = session("o-3");
    gone.expires_at = now_unix() - 1;
    store.save(&gone).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 2);
}

#[tokio::test]
async fn the_cookie_store_cannot_count_sessions() {
    assert_eq!(
        store(StoreKind::Cookie).await.count().await,
        Err(StoreError::Unsupported)
    );
}

#[tokio::test]
async fn a_cookie_session_with_a_long_emoji_nickname_stays_under_4_kb() {
    let cfg = config(StoreKind::Cookie);
    let store = Store::from_config(&cfg).await.unwrap();
    let codec = CookieCodec::new(&cfg.secret_bytes, &[]);
    let mut s = session("o-emoji");
    s.nickname = Some("👨‍👩‍👧‍👦🌸".repeat(200));
    s.headimgurl = Some(format!(
        "https://thirdwx.qlogo.cn/mmopen/vi_32/{}/132",
        "Q".repeat(200)
    ));
    s.unionid = Some("o6_bmasdasdsad6_2sgVt7hMZOPfL".into());

    let ticket = store.save(&s).await.unwrap();
    let sealed = codec.seal(&cfg.cookie_name, &ticket);
    let set_cookie = wxgate::session::session_cookie(
        &cfg.cookie_name,
        &sealed,
        true,
        cfg.same_site,
        Some(cfg.ttl.get()),
    );
    assert!(set_cookie.len() < 4096, "{} bytes", set_cookie.len());

    let back = store
        .load(&codec.open(&cfg.cookie_name, &sealed).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (back.openid.as_str(), back.refresh_token.as_ref()),
        ("o-emoji", s.refresh_token.as_ref())
    );
}

#[test]
fn a_cookie_sealed_with_a_previous_secret_opens_only_while_that_secret_is_listed() {
    let (old, new) = (
        b"the old secret, thirty-two bytes long".to_vec(),
        b"the new secret, thirty-two bytes long".to_vec(),
    );
    let sealed = CookieCodec::new(&old, &[]).seal("_wxgate", "ticket");

    let rotating = CookieCodec::new(&new, std::slice::from_ref(&old));
    assert_eq!(rotating.open("_wxgate", &sealed).as_deref(), Some("ticket"));
    let resealed = rotating.seal("_wxgate", "ticket");
    assert_eq!(
        CookieCodec::new(&new, &[])
            .open("_wxgate", &resealed)
            .as_deref(),
        Some("ticket"),
        "new cookies use the new secret"
    );

    let rotated = CookieCodec::new(&new, &[]);
    assert_eq!(rotated.open("_wxgate", &sealed), None);
}
