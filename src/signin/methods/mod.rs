//! The sign-in methods, as peers: the list of them and the one function that chooses
//! one for a request.
//!
//! To add a method: write its module here (a type implementing
//! [`Method`](crate::signin::Method)), add its line to the list in `methods!` below,
//! and, if the browser or the route should pick it, its line in [`choose`].

pub mod desktop;
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
