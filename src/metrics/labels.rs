//! The label values of every labelled family, as types: a family takes only its own,
//! each with all of its labels, spelled here once. The texts are part of the operator
//! contract (dashboards and alerts match them).

use std::borrow::Cow;

use crate::config::{DesktopMode, StoreKind};

/// A family's labels: their names, and the values of one label set in that order.
pub trait Labels {
    const NAMES: &'static [&'static str];
    /// Calls `f` with the values, in the order of [`Labels::NAMES`].
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R;
}

/// A one-label family's enum: its variants and their texts.
macro_rules! label {
    ($(#[$m:meta])* $name:ident($label:literal) {
        $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vm])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl Labels for $name {
            const NAMES: &'static [&'static str] = &[$label];
            fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
                f(&[self.as_str()])
            }
        }
    };
}

label! {
    /// `wxgate_upstream_errors_total{kind}`.
    UpstreamError("kind") {
        Internal => "internal",
        BodyTooLarge => "body_too_large",
        ClientBody => "client_body",
        ClientBodyTimeout => "client_body_timeout",
        Timeout => "timeout",
        Connect => "connect",
        Reset => "reset",
    }
}

label! {
    /// `wxgate_signins_total{outcome}`: how a callback ended.
    Signin("outcome") {
        Success => "success",
        /// WeChat came back without a code: the user refused.
        Refused => "refused",
        RepeatCallback => "repeat_callback",
        FreshAuthorization => "fresh_authorization",
        StateMismatch => "state_mismatch",
        BadRequest => "bad_request",
        ConsentRefused => "consent_refused",
        /// A route asked for the profile on top of a session; the user declined it.
        ProfileRefused => "profile_refused",
        /// A route needs the profile, which only WeChat's own browser can grant.
        ScopeRequired => "scope_required",
        SnapshotUser => "snapshot_user",
        AccessDenied => "access_denied",
        CodeRejected => "code_rejected",
        WechatBusy => "wechat_busy",
        WechatQuota => "wechat_quota",
        WechatUnavailable => "wechat_unavailable",
        Misconfigured => "misconfigured",
        WechatError => "wechat_error",
        SessionStoreUnavailable => "session_store_unavailable",
        SigninsBusy => "signins_busy",
        InternalError => "internal_error",
        NotAMember => "not_a_member",
        DepartmentNotAllowed => "department_not_allowed",
        NotInVisibleRange => "not_in_visible_range",
        RedirectUriNotTrusted => "redirect_uri_not_trusted",
        IpNotTrusted => "ip_not_trusted",
        WecomBusy => "wecom_busy",
        WecomQuota => "wecom_quota",
        WecomUnavailable => "wecom_unavailable",
        WecomError => "wecom_error",
        OpenInWecom => "open_in_wecom",
        /// Signing in through a hub: it could not be reached, or its answer did not verify.
        HubUnavailable => "hub_unavailable",
        HubBadAnswer => "hub_bad_answer",
    }
}

label! {
    /// The hub's endpoint (with the outcome, `HubRequest`).
    HubEndpoint("endpoint") {
        Authorize => "authorize",
        Token => "token",
        Userinfo => "userinfo",
    }
}

/// `wxgate_hub_requests_total{endpoint, outcome}`: the outcome is what was issued
/// (`code_issued`, `sign_in`, `issued`, `ok`) or the OAuth error code of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubRequest(pub HubEndpoint, pub &'static str);

impl Labels for HubRequest {
    const NAMES: &'static [&'static str] = &["endpoint", "outcome"];
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        f(&[self.0.as_str(), self.1])
    }
}

label! {
    /// `wxgate_sessions_ended_total{reason}`.
    SessionEnded("reason") {
        SignOut => "sign_out",
        RefreshRevoked => "refresh_revoked",
    }
}

label! {
    /// `wxgate_identity_tokens_total{source}`.
    TokenSource("source") {
        Signed => "signed",
        Cached => "cached",
    }
}

label! {
    /// `wxgate_config_reloads_total{result}`.
    Reload("result") {
        Applied => "applied",
        Invalid => "invalid",
    }
}

label! {
    /// `wxgate_requests_denied_total{reason}`: refused before reaching the upstream.
    Denied("reason") {
        BadHost => "bad_host",
        BadPath => "bad_path",
        BadRequestBody => "bad_request_body",
        BodyTooLarge => "body_too_large",
        NotAllowed => "not_allowed",
        StoreUnavailable => "store_unavailable",
        UnauthenticatedApi => "unauthenticated_api",
        /// A route needs the profile: a WeChat browser goes to WeChat once more for it.
        ScopeEscalation => "scope_escalation",
        /// As `ScopeEscalation`, for an API request: 401 JSON naming the scope.
        ScopeRequired => "scope_required",
        UriTooLong => "uri_too_long",
        HeaderTooLarge => "header_too_large",
        TooManyHeaders => "too_many_headers",
    }
}

label! {
    /// `wxgate_body_timeouts_total{side}`.
    BodySide("side") {
        Client => "client",
        Upstream => "upstream",
    }
}

label! {
    /// What a session store operation was (with the store, `StoreOp`).
    Op("op") {
        Save => "save",
        Load => "load",
        Touch => "touch",
        Delete => "delete",
        RevokeOpenid => "revoke_openid",
        Count => "count",
        Ping => "ping",
        PutEphemeral => "put_ephemeral",
        GetEphemeral => "get_ephemeral",
        TakeEphemeral => "take_ephemeral",
        TryLock => "try_lock",
        Unlock => "unlock",
    }
}

label! {
    /// What happened in a sign-in outside WeChat (with the mode, `DesktopSignin`).
    DesktopOutcome("outcome") {
        Started => "started",
        Shown => "shown",
        Busy => "busy",
        Cancelled => "cancelled",
        Expired => "expired",
        Reused => "reused",
        Success => "success",
        WrongBrowser => "wrong_browser",
    }
}

/// `wxgate_connections_limited_total{listener}`: the listener's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener(pub &'static str);

impl Labels for Listener {
    const NAMES: &'static [&'static str] = &["listener"];
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        f(&[self.0])
    }
}

/// `wxgate_sessions_created_total{store}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStore(pub StoreKind);

impl Labels for SessionStore {
    const NAMES: &'static [&'static str] = &["store"];
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        f(&[self.0.as_str()])
    }
}

/// `wxgate_session_store_{operations,errors}_total` and `..._duration_seconds`
/// `{store, op}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOp(pub StoreKind, pub Op);

impl Labels for StoreOp {
    const NAMES: &'static [&'static str] = &["store", "op"];
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        f(&[self.0.as_str(), self.1.as_str()])
    }
}

/// `wxgate_desktop_signins_total{mode, outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DesktopSignin(pub DesktopMode, pub DesktopOutcome);

impl Labels for DesktopSignin {
    const NAMES: &'static [&'static str] = &["mode", "outcome"];
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        f(&[self.0.as_str(), self.1.as_str()])
    }
}

/// A WeChat API endpoint, by the name wxgate calls it (`access_token`, `userinfo`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WechatEndpoint(pub &'static str);

impl Labels for WechatEndpoint {
    const NAMES: &'static [&'static str] = &["endpoint"];
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        f(&[self.0])
    }
}

/// How a WeChat API call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errcode {
    /// errcode 0 (or none): success.
    Ok,
    /// WeChat's errcode.
    Code(i64),
    /// No answer (timeout, unreachable).
    Transport,
    /// An answer that is not WeChat's JSON.
    BadResponse,
}

impl Errcode {
    pub fn text(self) -> Cow<'static, str> {
        match self {
            Errcode::Ok => "0".into(),
            Errcode::Code(c) => c.to_string().into(),
            Errcode::Transport => "transport".into(),
            Errcode::BadResponse => "bad_response".into(),
        }
    }
}

/// `wxgate_wechat_api_calls_total{endpoint, errcode}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WechatCall(pub WechatEndpoint, pub Errcode);

impl Labels for WechatCall {
    const NAMES: &'static [&'static str] = &["endpoint", "errcode"];
    fn with_values<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        let code = self.1.text();
        f(&[self.0 .0, &code])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<L: Labels>(l: L) -> Vec<String> {
        l.with_values(|v| {
            assert_eq!(v.len(), L::NAMES.len(), "{:?}", L::NAMES);
            v.iter().map(|s| s.to_string()).collect()
        })
    }

    #[test]
    fn every_label_set_has_one_value_per_name_and_distinct_texts() {
        fn distinct<L: Labels + Copy>(all: &[L]) {
            let mut texts: Vec<Vec<String>> = all.iter().map(|l| values(*l)).collect();
            let n = texts.len();
            texts.sort();
            texts.dedup();
            assert_eq!(texts.len(), n, "{:?}", L::NAMES);
        }
        distinct(UpstreamError::ALL);
        distinct(Signin::ALL);
        distinct(SessionEnded::ALL);
        distinct(TokenSource::ALL);
        distinct(Reload::ALL);
        distinct(Denied::ALL);
        distinct(BodySide::ALL);
        distinct(Op::ALL);
        distinct(DesktopOutcome::ALL);
        assert_eq!(
            values(StoreOp(StoreKind::Redis, Op::TryLock)),
            ["redis", "try_lock"]
        );
        assert_eq!(
            values(DesktopSignin(DesktopMode::Qr, DesktopOutcome::WrongBrowser)),
            ["qr", "wrong_browser"]
        );
        assert_eq!(
            values(WechatCall(WechatEndpoint("userinfo"), Errcode::Code(40029))),
            ["userinfo", "40029"]
        );
        assert_eq!(
            values(WechatCall(WechatEndpoint("userinfo"), Errcode::Ok)),
            ["userinfo", "0"]
        );
    }
}
