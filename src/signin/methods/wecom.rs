//! WeCom (企业微信), two methods finishing alike on `/_wxgate/callback`:
//!
//! - [`WecomInApp`]: inside the WeCom app (phone, or the desktop app's own browser), a
//!   302 to WeCom's OAuth link with the app's `agentid`;
//! - [`WecomWebLogin`]: any other browser, a 302 to WeCom's web-login QR
//!   (`login_type=CorpApp`), which the member scans with the WeCom app. With
//!   `desktop.mode = "off"` a page asking to open the link in WeCom instead.
//!
//! Either code is redeemed by [`Wecom::identify`]; what it found becomes the session's
//! subject (the userid) and the identity's WeCom claims.

use http::Response;

use crate::body::Body;
use crate::config::{DesktopMode, Scope};
use crate::session::{ExtraClaims, Idp};
use crate::signin::{Begin, Callback, Core, Method, SignInError, Verified};
use crate::wecom::{Failure, Wecom, WecomIdentity, WecomRefusal};

/// The WeCom sign-in of a configuration with `[wecom]`.
fn service(core: &Core) -> Option<Wecom> {
    match Wecom::from_config(core.cfg(), core.store.clone()) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "the WeCom client could not be built: WeCom sign-ins fail");
            None
        }
    }
}

/// The same service after a reload, keeping the running corp token holder.
fn keep(new: &mut Option<Wecom>, old: &Option<Wecom>) {
    if let (Some(new), Some(old)) = (new.as_mut(), old.as_ref()) {
        new.keep_from(old);
    }
}

/// Inside the WeCom app.
pub struct WecomInApp {
    wecom: Option<Wecom>,
}

impl Method for WecomInApp {
    const NAME: &'static str = "wecom";

    fn new(core: &Core) -> Self {
        WecomInApp {
            wecom: service(core),
        }
    }

    fn keep_from(&mut self, previous: &Self) {
        keep(&mut self.wecom, &previous.wecom);
    }

    async fn start(&self, core: &Core, begin: &Begin<'_>) -> Response<Body> {
        let Some(wecom) = &self.wecom else {
            return WecomRefusal::Misconfigured.response(begin.browser.reply, None);
        };
        core.redirect_with_flow(
            begin.browser.headers,
            begin.rd,
            begin.tries,
            Self::NAME,
            |state| wecom.authorize_location(&core.redirect_uri, state),
        )
    }

    async fn finish(&self, _core: &Core, callback: &Callback<'_>) -> Result<Verified, SignInError> {
        finish(self.wecom.as_ref(), callback).await
    }
}

/// A computer's browser (or any other outside the WeCom app).
pub struct WecomWebLogin {
    wecom: Option<Wecom>,
}

impl Method for WecomWebLogin {
    const NAME: &'static str = "wecom_web";

    fn new(core: &Core) -> Self {
        WecomWebLogin {
            wecom: service(core),
        }
    }

    fn keep_from(&mut self, previous: &Self) {
        keep(&mut self.wecom, &previous.wecom);
    }

    async fn start(&self, core: &Core, begin: &Begin<'_>) -> Response<Body> {
        let Some(wecom) = &self.wecom else {
            return WecomRefusal::Misconfigured.response(begin.browser.reply, None);
        };
        if core.cfg().desktop.mode == DesktopMode::Off {
            return WecomRefusal::OpenInWecom.response(begin.browser.reply, None);
        }
        core.redirect_with_flow(
            begin.browser.headers,
            begin.rd,
            begin.tries,
            Self::NAME,
            |state| wecom.sso_location(&core.redirect_uri, state),
        )
    }

    async fn finish(&self, _core: &Core, callback: &Callback<'_>) -> Result<Verified, SignInError> {
        finish(self.wecom.as_ref(), callback).await
    }
}

async fn finish(wecom: Option<&Wecom>, callback: &Callback<'_>) -> Result<Verified, SignInError> {
    let wecom = wecom.ok_or(SignInError::Wecom(WecomRefusal::Misconfigured))?;
    match wecom.identify(callback.code).await {
        Ok(identity) => Ok(verified(identity)),
        // One fresh start may help (the core starts it); after it, WeCom's own page.
        Err(Failure::Code(_)) if callback.flow.r > 0 => {
            Err(SignInError::Wecom(WecomRefusal::CodeRejected))
        }
        Err(Failure::Code(_)) => Err(SignInError::CodeStale),
        Err(Failure::Store(e)) => {
            tracing::warn!(error = %e, "the session store could not hold the WeCom corp token");
            Err(SignInError::StoreUnavailable)
        }
        Err(Failure::Refused(r)) => Err(SignInError::Wecom(r)),
    }
}

/// What a WeCom sign-in vouches for: the userid (a visitor's openid) as the subject,
/// the organisation as the app, WeCom's claims beside the common ones.
pub fn verified(identity: WecomIdentity) -> Verified {
    let claims: ExtraClaims = identity
        .claims()
        .into_iter()
        // The common claims say these already, from the session.
        .filter(|(k, _)| k != "sub" && k != "idp")
        .collect();
    let mut v = Verified::wechat(identity.corp_id.clone(), identity.subject(), Scope::Base);
    v.idp = Idp::Wecom;
    v.claims = claims;
    v
}
