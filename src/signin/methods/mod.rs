//! The sign-in methods, as peers: the list of them and the one function that chooses
//! one for a request.
//!
//! To add a method: write its module here (a type implementing
//! [`crate::signin::Method`]), add its line to the list in `methods!` below,
//! and, if the browser or the route should pick it, its line in [`choose`].

pub mod desktop;
pub mod hub_client;
pub mod wechat_inapp;
pub mod wecom;

use http::Response;

use super::state::FlowState;
use super::{Begin, Callback, Core, Method, OwnRequest, RouteNeeds, SignInError, Verified};
use crate::body::Body;
use crate::config::Config;
use crate::signin::Browser;

/// The method that signs this browser in for this route.
pub fn choose(browser: &Browser<'_>, _route: &RouteNeeds, cfg: &Config) -> MethodId {
    // Through a hub, every browser goes there: the hub tells WeChat's from the others.
    if cfg.hub_client.is_some() {
        return MethodId::Hub;
    }
    // `[wecom]` stands instead of `[wechat]`: WeCom signs everyone in.
    if cfg.wecom.is_some() {
        return if browser.in_wecom {
            MethodId::WecomInApp
        } else {
            MethodId::WecomWebLogin
        };
    }
    if browser.in_wechat {
        MethodId::WechatInApp
    } else {
        MethodId::Desktop
    }
}

/// Declares the list once: each line is `Id => field: Type`. Generates [`MethodId`],
/// [`Methods`] (one value per method, per configuration) and the dispatch by id.
macro_rules! methods {
    ($($id:ident => $field:ident: $ty:ty),+ $(,)?) => {
        /// Names a sign-in method.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum MethodId {
            $($id),+
        }

        /// Every method's value for one configuration.
        pub struct Methods {
            $($field: $ty),+
        }

        impl Methods {
            pub fn new(core: &Core) -> Methods {
                Methods { $($field: <$ty as Method>::new(core)),+ }
            }

            /// What a reload carries over from the generation it replaces.
            pub fn keep_from(&mut self, previous: &Methods) {
                $(self.$field.keep_from(&previous.$field);)+
            }

            /// The method a flow cookie names.
            pub fn by_name(name: &str) -> Option<MethodId> {
                $(if name == <$ty as Method>::NAME {
                    return Some(MethodId::$id);
                })+
                None
            }

            pub async fn start(&self, id: MethodId, core: &Core, begin: &Begin<'_>) -> Response<Body> {
                match id {
                    $(MethodId::$id => self.$field.start(core, begin).await),+
                }
            }

            pub async fn finish(
                &self,
                id: MethodId,
                core: &Core,
                callback: &Callback<'_>,
            ) -> Result<Verified, SignInError> {
                match id {
                    $(MethodId::$id => self.$field.finish(core, callback).await),+
                }
            }

            /// The method whose own URL this `/_wxgate/...` path is, if any.
            pub fn owner_of(&self, path: &str) -> Option<MethodId> {
                $(if self.$field.serves(path) {
                    return Some(MethodId::$id);
                })+
                None
            }

            pub async fn serve(&self, id: MethodId, core: &Core, req: &OwnRequest<'_>) -> Response<Body> {
                match id {
                    $(MethodId::$id => self.$field.serve(core, req).await),+
                }
            }

            /// Whether a cookie is a method's own (never forwarded).
            pub fn is_method_cookie(base: &str, name: &str) -> bool {
                let Some(suffix) = name.strip_prefix(base) else {
                    return false;
                };
                false $(|| <$ty as Method>::COOKIES.contains(&suffix))+
            }
        }
    };
}

methods! {
    WechatInApp => wechat_inapp: wechat_inapp::WechatInApp,
    Desktop => desktop: desktop::Desktop,
    WecomInApp => wecom_inapp: wecom::WecomInApp,
    WecomWebLogin => wecom_web: wecom::WecomWebLogin,
    Hub => hub: hub_client::HubSignIn,
}

impl Methods {
    /// The method that finishes a flow. Flows started before methods were named say
    /// only whether they were for the website app (the desktop's qrconnect).
    pub fn of_flow(flow: &FlowState) -> Option<MethodId> {
        match flow.m.as_str() {
            "" if flow.w => Some(MethodId::Desktop),
            "" => Some(MethodId::WechatInApp),
            name => Methods::by_name(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn browser_of(headers: &http::HeaderMap) -> Browser<'_> {
        Browser::of(headers, IpAddr::from([127, 0, 0, 1]))
    }

    fn with_ua(ua: &'static str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::USER_AGENT, http::HeaderValue::from_static(ua));
        h
    }

    #[test]
    fn wechat_signs_in_its_own_browser_and_the_desktop_method_every_other() {
        let cfg = Config::default();
        let route = RouteNeeds::of(&cfg);
        let wechat = with_ua("Mozilla/5.0 (iPhone) MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI");
        let wecom = with_ua("Mozilla/5.0 (Windows) MicroMessenger/7.0 wxwork/4.1.0");
        let chrome = with_ua("Mozilla/5.0 (Windows NT 10.0) Chrome/120.0.0.0 Safari/537.36");
        assert_eq!(
            choose(&browser_of(&wechat), &route, &cfg),
            MethodId::WechatInApp
        );
        assert_eq!(choose(&browser_of(&wecom), &route, &cfg), MethodId::Desktop);
        assert_eq!(
            choose(&browser_of(&chrome), &route, &cfg),
            MethodId::Desktop
        );
    }

    #[test]
    fn with_wecom_configured_wecoms_browser_gets_the_in_app_method_and_every_other_web_login() {
        let cfg = Config {
            wecom: Some(crate::config::WecomConfig::default()),
            ..Config::default()
        };
        let route = RouteNeeds::of(&cfg);
        let wecom_phone = with_ua("Mozilla/5.0 (iPhone) wxwork/4.1.0 MicroMessenger/7.0.1");
        let wecom_desktop = with_ua("Mozilla/5.0 (Windows) MicroMessenger/7.0 wxwork/4.1.0");
        let wechat = with_ua("Mozilla/5.0 (iPhone) MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI");
        let chrome = with_ua("Mozilla/5.0 (Windows NT 10.0) Chrome/120.0.0.0 Safari/537.36");
        for (headers, want) in [
            (&wecom_phone, MethodId::WecomInApp),
            (&wecom_desktop, MethodId::WecomInApp),
            (&wechat, MethodId::WecomWebLogin),
            (&chrome, MethodId::WecomWebLogin),
        ] {
            assert_eq!(
                choose(&browser_of(headers), &route, &cfg),
                want,
                "{headers:?}"
            );
        }
        assert_eq!(Methods::by_name("wecom_web"), Some(MethodId::WecomWebLogin));
    }

    #[test]
    fn a_flow_names_the_method_that_finishes_it_even_from_before_methods_had_names() {
        let flow = |m: &str, w: bool| FlowState {
            rd: "/".into(),
            t: 0,
            r: 0,
            d: false,
            m: m.into(),
            w,
            s: None,
        };
        assert_eq!(
            Methods::of_flow(&flow("wechat", false)),
            Some(MethodId::WechatInApp)
        );
        assert_eq!(
            Methods::of_flow(&flow("desktop", false)),
            Some(MethodId::Desktop)
        );
        assert_eq!(
            Methods::of_flow(&flow("", false)),
            Some(MethodId::WechatInApp)
        );
        assert_eq!(Methods::of_flow(&flow("", true)), Some(MethodId::Desktop));
        assert_eq!(Methods::of_flow(&flow("nobody", false)), None);
        // An old cookie's JSON (`w` for the website app) still reads.
        let old: FlowState =
            serde_json::from_str(r#"{"rd":"/a","t":5,"r":1,"d":false,"w":true}"#).unwrap();
        assert_eq!(Methods::of_flow(&old), Some(MethodId::Desktop));
        // And `w` is never written again.
        assert!(!serde_json::to_string(&flow("desktop", true))
            .unwrap()
            .contains("\"w\""));
    }

    #[test]
    fn a_methods_own_cookies_are_known_by_name() {
        assert!(Methods::is_method_cookie("_wxgate", "_wxgate_qr"));
        assert!(!Methods::is_method_cookie("_wxgate", "_wxgate"));
        assert!(!Methods::is_method_cookie("_wxgate", "other_qr"));
        assert!(!Methods::is_method_cookie("_wxgate", "_wxgate_app"));
    }
}
