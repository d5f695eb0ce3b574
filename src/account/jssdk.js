/*
 * wxgate: configures WeChat's JS-SDK (`wx`) for this page.
 *
 *   <script src="https://res.wx.qq.com/open/js/jweixin-1.6.0.js"></script>
 *   <script src="/_wxgate/jssdk.js" data-js-api-list="updateAppMessageShareData,scanQRCode"></script>
 *   <script>wx.ready(function () { ... }); wx.error(function (e) { ... });</script>
 *
 * Optional attributes: data-open-tag-list="wx-open-launch-weapp", data-debug="true".
 * Single-page apps call wxgate.jssdk.configure() again after a route change.
 * iOS WeChat checks the signature against the URL the page was first loaded at,
 * whatever history.pushState did since; other platforms against the current URL.
 */
(function () {
  "use strict";
  var me = document.currentScript;
  var data = (me && me.dataset) || {};
  function list(s) {
    return (s || "").split(",").map(function (x) { return x.trim(); }).filter(Boolean);
  }
  var landing = location.href.split("#")[0];
  var ios = /iPhone|iPad|iPod/i.test(navigator.userAgent);
  function url() {
    return ios ? landing : location.href.split("#")[0];
  }
  function configure() {
    return fetch("/_wxgate/jssdk/config?url=" + encodeURIComponent(url()), {
      credentials: "same-origin",
      headers: { accept: "application/json" }
    })
      .then(function (r) {
        return r.json().then(function (body) {
          if (!r.ok) {
            throw new Error("wxgate jssdk: " + r.status + " " + (body.error || ""));
          }
          return body;
        });
      })
      .then(function (c) {
        window.wx.config({
          debug: data.debug === "true",
          appId: c.appId,
          timestamp: c.timestamp,
          nonceStr: c.nonceStr,
          signature: c.signature,
          jsApiList: list(data.jsApiList),
          openTagList: list(data.openTagList)
        });
        return c;
      });
  }
  var api = (window.wxgate = window.wxgate || {});
  api.jssdk = { configure: configure, url: url };
  api.jssdk.ready = typeof window.wx === "undefined"
    ? Promise.reject(new Error("wxgate jssdk: load jweixin before /_wxgate/jssdk.js"))
    : configure();
  api.jssdk.ready.catch(function (e) {
    if (window.console) { console.error(e); }
  });
})();
