/*
 * The mock WeChat's stand-in for jweixin (res.wx.qq.com/open/js/jweixin-1.6.0.js):
 * wx.config({appId, timestamp, nonceStr, signature, jsApiList}) has the signature
 * checked by the mock platform this script came from, for the URL WeChat's client
 * would check (on iOS the URL the page was first loaded at, elsewhere the current one,
 * both without the fragment), then runs the wx.ready or wx.error callbacks.
 * wx.checkJsApi answers after a good config, as WeChat's does.
 */
(function () {
  "use strict";
  var me = document.currentScript;
  var platform = me ? me.src.replace(/\/mock\/jweixin\.js.*$/, "") : "";
  var landing = location.href.split("#")[0];
  var ios = /iPhone|iPad|iPod/i.test(navigator.userAgent);
  var state = "none";
  var failure = null;
  var readyFns = [];
  var errorFns = [];
  var allowed = [];
  function enc(v) {
    return encodeURIComponent(String(v));
  }
  window.wx = {
    config: function (c) {
      state = "pending";
      failure = null;
      allowed = c.jsApiList || [];
      var url = ios ? landing : location.href.split("#")[0];
      var body = "appId=" + enc(c.appId) + "&timestamp=" + enc(c.timestamp) +
        "&nonceStr=" + enc(c.nonceStr) + "&signature=" + enc(c.signature) + "&url=" + enc(url);
      fetch(platform + "/mock/jssdk/verify", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: body
      })
        .then(function (r) { return r.json(); })
        .then(function (v) {
          if (v.ok) {
            state = "ready";
            readyFns.forEach(function (f) { f(); });
          } else {
            state = "error";
            failure = { errMsg: v.errMsg };
            errorFns.forEach(function (f) { f(failure); });
          }
        })
        .catch(function (e) {
          state = "error";
          failure = { errMsg: "config:fail " + e };
          errorFns.forEach(function (f) { f(failure); });
        });
    },
    ready: function (f) {
      if (state === "ready") { f(); } else { readyFns.push(f); }
    },
    error: function (f) {
      if (state === "error") { f(failure); } else { errorFns.push(f); }
    },
    checkJsApi: function (o) {
      var result = {};
      (o.jsApiList || []).forEach(function (name) {
        result[name] = state === "ready" && allowed.indexOf(name) >= 0;
      });
      if (o.success) { o.success({ checkResult: result, errMsg: "checkJsApi:ok" }); }
    }
  };
})();
