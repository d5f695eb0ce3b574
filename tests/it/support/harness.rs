//! The one way a test starts a wxgate: a builder, in process, on loopback ports of
//! its own.
//!
//! ```ignore
//! let gate = proxy().run().await;                        // every path public, echo upstream
//! let gate = proxy().wechat(&platform).run().await;      // sign-in against the mock WeChat
//! let gate = proxy()
//!     .wechat(&platform)
//!     .config(r#"
//!         [access]
//!         public_paths = ["/static/*"]
//!     "#)
//!     .tweak(|c| c.identity.plain_headers = true)
//!     .run()
//!     .await;
//! let site = proxy().desktop(DesktopMode::Qr).run_site().await; // with a mock of its own
//! ```
//!
//! The config is built in this order: the base text (see [`proxy`]), then every
//! `.config` fragment merged over it (tables merge, values replace), then the
//! `.desktop` settings and every `.tweak`, then validation as `wxgate check` does it,
//! then every `.test_only` change (for values validation refuses but a test needs).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use http::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wxgate::config::file::Config;
use wxgate::config::DesktopMode;
use wxgate::mock::{MockConfig, MockWechat};

use super::wechat::{desktop_sign_in, verify, Browser, Platform, PHONE_UA, SESSION_SECRET};
use super::{base_config, start_upstream, Upstream};

type Change<'a> = Box<dyn FnOnce(&mut Config) + 'a>;
/// A change to the checked configuration.
type CheckedChange<'a> = Box<dyn FnOnce(&mut wxgate::config::Config) + 'a>;

/// A wxgate to start. Without [`Builder::wechat`]: in front of an echo upstream of
/// its own, every path public (`access.public_paths = ["/*"]`), so no test needs to
/// sign in, and `public_url = "http://127.0.0.1"`. With it: signing in against that
/// platform's mock WeChat, in front of the platform's echo upstream, sign-in required
/// everywhere, `public_url` its own address.
pub fn proxy<'a>() -> Builder<'a> {
    Builder {
        wechat: None,
        public_url: None,
        fragments: Vec::new(),
        desktop: None,
        tweaks: Vec::new(),
        test_only: Vec::new(),
    }
}

pub struct Builder<'a> {
    wechat: Option<&'a Platform>,
    public_url: Option<String>,
    fragments: Vec<String>,
    desktop: Option<DesktopMode>,
    tweaks: Vec<Change<'a>>,
    test_only: Vec<CheckedChange<'a>>,
}

impl<'a> Builder<'a> {
    /// Signs in against `platform`'s mock WeChat, in front of its echo upstream.
    pub fn wechat(mut self, platform: &'a Platform) -> Self {
        self.wechat = Some(platform);
        self
    }

    /// The origin browsers use (default: the wxgate's own address), e.g. another
    /// replica's, or a reverse proxy's in front of it.
    pub fn public_url(mut self, origin: &str) -> Self {
        self.public_url = Some(origin.to_string());
        self
    }

    /// TOML merged over the base config: `[table]`s merge, keys replace.
    pub fn config(mut self, toml: &str) -> Self {
        self.fragments.push(toml.to_string());
        self
    }

    /// Desktop sign-in in `mode` against the mock's website app (see
    /// [`desktop_sign_in`]).
    pub fn desktop(mut self, mode: DesktopMode) -> Self {
        self.desktop = Some(mode);
        self
    }

    /// Changes the parsed config before it is validated.
    pub fn tweak(mut self, change: impl FnOnce(&mut Config) + 'a) -> Self {
        self.tweaks.push(Box::new(change));
        self
    }

    /// Changes the validated config: for a value `wxgate check` refuses but a test
    /// needs (a ticket lifetime short enough to watch it expire).
    pub fn test_only(mut self, change: impl FnOnce(&mut wxgate::config::Config) + 'a) -> Self {
        self.test_only.push(Box::new(change));
        self
    }

    /// Starts the wxgate; it serves until the returned [`Gate`] is dropped.
    pub async fn run(self) -> Gate {
        // The listeners first: the public port is part of public_url (and redirect_uri).
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = public.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();

        let (text, upstream, origin, wechat) = match self.wechat {
            Some(platform) => {
                let origin = self.public_url.unwrap_or_else(|| format!("http://{addr}"));
                let text = wechat_config(platform, &origin);
                let side = WechatSide {
                    mock_addr: platform.mock_addr,
                    mock: platform.mock.clone(),
                };
                (text, platform.upstream.clone(), origin, Some(side))
            }
            None => {
                let upstream = start_upstream().await;
                let mut text = base_config(upstream.addr);
                let origin = "http://127.0.0.1".to_string();
                if let Some(url) = &self.public_url {
                    text = merge_toml(&text, &format!("[server]\npublic_url = \"{url}\"\n"));
                }
                (text, upstream, self.public_url.unwrap_or(origin), None)
            }
        };
        let text = self
            .fragments
            .iter()
            .fold(text, |text, fragment| merge_toml(&text, fragment));
        let mut config: Config = toml::from_str(&text).expect("test config parses");
        if let Some(mode) = self.desktop {
            let side = wechat.as_ref().expect(".desktop needs .wechat");
            desktop_sign_in(&mut config, &side.mock, mode);
        }
        for tweak in self.tweaks {
            tweak(&mut config);
        }
        let mut config = config
            .check(Path::new("."), &BTreeMap::<String, String>::new())
            .unwrap_or_else(|e| panic!("test config: {e}"));
        for change in self.test_only {
            change(&mut config);
        }
        let scope = config.wechat.scope.as_str();
        // The app the authorize link names: the mock's (whatever a tweak made of it).
        let appid = match &wechat {
            Some(side) => side.mock.config().appid.clone(),
            None => config.wechat.appid.clone(),
        };

        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(wxgate::run(
            config,
            wxgate::Listeners { public, admin },
            async move {
                let _ = stopped.await;
            },
        ));
        Gate {
            origin,
            addr,
            admin: admin_addr,
            upstream,
            wechat,
            appid,
            scope,
            stop: Some(stop),
            done: Some(done),
        }
    }

    /// Starts a mock WeChat of its own (consenting silently for its first user, for
    /// [`super::wechat::WalkingBrowser`]) and the wxgate against it.
    pub async fn run_site(self) -> Site {
        let platform = Platform::start(MockConfig::default()).await;
        let gate = Builder {
            wechat: Some(&platform),
            ..self
        }
        .run()
        .await;
        Site {
            public_url: gate.origin.clone(),
            mock: platform.mock.clone(),
            mock_addr: platform.mock_addr,
            gate,
            platform,
        }
    }
}

/// The config against a platform: its mock WeChat, its echo upstream.
fn wechat_config(platform: &Platform, origin: &str) -> String {
    let mc = platform.mock.config();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "{origin}"
[admin]
# Only has to differ from server.listen: the listeners are bound already.
listen = "127.0.0.1:1"
[upstream]
url = "http://{upstream}"
[wechat]
appid = "{appid}"
secret = "{secret}"
authorize_url = "http://{mock_addr}/connect/oauth2/authorize"
api_base_url = "http://{mock_addr}"
[session]
secret = "{SESSION_SECRET}"
[access]
public_paths = []
"#,
        upstream = platform.upstream.addr,
        appid = mc.appid,
        secret = mc.secret,
        mock_addr = platform.mock_addr,
    )
}

/// `fragment` over `base`: tables merge key by key, anything else replaces.
fn merge_toml(base: &str, fragment: &str) -> String {
    fn merge(into: &mut toml::Table, from: toml::Table) {
        for (key, value) in from {
            match (into.get_mut(&key), value) {
                (Some(toml::Value::Table(inner)), toml::Value::Table(more)) => merge(inner, more),
                (_, value) => {
                    into.insert(key, value);
                }
            }
        }
    }
    let mut doc: toml::Table = toml::from_str(base).expect("base config parses");
    let more: toml::Table = toml::from_str(fragment).expect("config fragment parses");
    merge(&mut doc, more);
    toml::to_string(&doc).expect("config prints")
}

/// What a wxgate started with [`Builder::wechat`] knows of its platform.
struct WechatSide {
    mock_addr: SocketAddr,
    mock: MockWechat,
}

/// A running wxgate, stopped when dropped.
pub struct Gate {
    /// public_url: the origin in redirect_uri, the issuer, the browser's origin.
    pub origin: String,
    /// Where it actually listens (differs from `origin` for a replica behind a shared name).
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The echo upstream it forwards to (unless a tweak pointed it elsewhere).
    pub upstream: Upstream,
    /// The official account's appid.
    pub appid: String,
    /// `wechat.scope` as WeChat spells it.
    pub scope: &'static str,
    wechat: Option<WechatSide>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<Result<(), wxgate::app::AppError>>>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

impl Gate {
    /// `path` on this wxgate's listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Starts shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits until `run` returned.
    pub async fn shutdown(mut self) -> Result<(), wxgate::app::AppError> {
        self.begin_shutdown();
        let done = self.done.take().expect("not shut down yet");
        done.await.expect("run task")
    }

    fn wechat(&self) -> &WechatSide {
        self.wechat
            .as_ref()
            .expect("a wxgate started with .wechat(&platform)")
    }

    pub fn issuer(&self) -> String {
        format!("{}/_wxgate", self.origin)
    }

    pub fn audience(&self) -> String {
        format!("http://{}", self.upstream.addr)
    }

    /// `path` on the mock WeChat.
    pub fn mock_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.wechat().mock_addr)
    }

    /// A browser with this User-Agent on this wxgate's public origin, connecting to
    /// this wxgate's listener.
    pub fn browser(&self, ua: &'static str) -> Browser {
        Browser::new(&self.origin, ua).via(&format!("http://{}", self.addr))
    }

    /// A phone inside WeChat (see [`Gate::browser`]).
    pub fn phone(&self) -> Browser {
        self.browser(PHONE_UA)
    }

    /// Checks a Location is WeChat's authorize link exactly as WeChat matches it, and
    /// returns its state.
    pub fn assert_authorize_link(&self, location: &str) -> String {
        // encodeURIComponent of public_url + "/_wxgate/callback", written out by hand.
        let redirect_uri = format!("{}/_wxgate/callback", self.origin)
            .replace(':', "%3A")
            .replace('/', "%2F");
        let wechat = self.wechat();
        let prefix = format!(
            "http://{}/connect/oauth2/authorize?appid={}&redirect_uri={redirect_uri}&response_type=code&scope={}&state=",
            wechat.mock_addr, self.appid, self.scope
        );
        let rest = location.strip_prefix(&prefix).unwrap_or_else(|| {
            panic!("not the authorize link:\n  {location}\nexpected prefix\n  {prefix}")
        });
        let state = rest
            .strip_suffix("#wechat_redirect")
            .unwrap_or_else(|| panic!("no #wechat_redirect: {location}"));
        assert!(
            (1..=128).contains(&state.len()) && state.bytes().all(|b| b.is_ascii_alphanumeric()),
            "state {state:?}"
        );
        state.to_string()
    }

    /// Verifies a token as an upstream would, knowing only this wxgate's JWKS URL;
    /// returns its claims.
    pub async fn verify(&self, token: &str) -> Value {
        let jwks = super::get(&self.url("/_wxgate/jwks.json")).await;
        assert_eq!(jwks.status, StatusCode::OK);
        verify(token, &jwks.text(), &self.issuer(), &self.audience())
            .unwrap_or_else(|e| panic!("the identity header does not verify: {e}"))
    }
}

/// A wxgate with a mock WeChat of its own ([`Builder::run_site`]). Derefs to the
/// wxgate.
pub struct Site {
    pub gate: Gate,
    pub platform: Platform,
    /// The origin browsers use.
    pub public_url: String,
    pub mock: MockWechat,
    pub mock_addr: SocketAddr,
}

impl std::ops::Deref for Site {
    type Target = Gate;
    fn deref(&self) -> &Gate {
        &self.gate
    }
}
