//! The two links WeCom signs members in through, built exactly as WeCom documents them.

use crate::config::WecomScope;
use crate::wechat::encode_component;

/// Inside the WeCom app (phone or desktop): the OAuth link with the CorpID as `appid`
/// and the app's `agentid` after `state` (WeCom requires it for snsapi_privateinfo and
/// wxgate always sends it), then `#wechat_redirect`.
pub fn authorize_url(
    base: &str,
    corp_id: &str,
    agent_id: &str,
    redirect_uri: &str,
    scope: WecomScope,
    state: &str,
) -> String {
    format!(
        "{base}?appid={}&redirect_uri={}&response_type=code&scope={}&state={}&agentid={}#wechat_redirect",
        encode_component(corp_id),
        encode_component(redirect_uri),
        scope.as_str(),
        encode_component(state),
        encode_component(agent_id),
    )
}

/// On a computer's browser: WeCom's web-login page with its QR code for the app
/// (`login_type=CorpApp`); the member scans it with the WeCom app.
pub fn sso_url(
    base: &str,
    corp_id: &str,
    agent_id: &str,
    redirect_uri: &str,
    state: &str,
) -> String {
    format!(
        "{base}?login_type=CorpApp&appid={}&agentid={}&redirect_uri={}&state={}",
        encode_component(corp_id),
        encode_component(agent_id),
        encode_component(redirect_uri),
        encode_component(state),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_app_link_is_wecoms_documented_one() {
        let got = authorize_url(
            "https://open.weixin.qq.com/connect/oauth2/authorize",
            "ww0000000000000000",
            "1000002",
            "https://app.example.com/_wxgate/callback",
            WecomScope::Base,
            "S1",
        );
        assert_eq!(
            got,
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=ww0000000000000000\
&redirect_uri=https%3A%2F%2Fapp.example.com%2F_wxgate%2Fcallback&response_type=code\
&scope=snsapi_base&state=S1&agentid=1000002#wechat_redirect"
        );
        let private = authorize_url(
            "https://a/b",
            "ww1",
            "7",
            "http://x/?a=1&b",
            WecomScope::PrivateInfo,
            "s",
        );
        assert_eq!(
            private,
            "https://a/b?appid=ww1&redirect_uri=http%3A%2F%2Fx%2F%3Fa%3D1%26b&response_type=code\
&scope=snsapi_privateinfo&state=s&agentid=7#wechat_redirect"
        );
    }

    #[test]
    fn the_web_login_link_asks_for_the_corp_app() {
        let got = sso_url(
            "https://login.work.weixin.qq.com/wwlogin/sso/login",
            "ww0000000000000000",
            "1000002",
            "https://app.example.com/_wxgate/callback",
            "S1",
        );
        assert_eq!(
            got,
            "https://login.work.weixin.qq.com/wwlogin/sso/login?login_type=CorpApp\
&appid=ww0000000000000000&agentid=1000002\
&redirect_uri=https%3A%2F%2Fapp.example.com%2F_wxgate%2Fcallback&state=S1"
        );
    }
}
