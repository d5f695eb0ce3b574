//! TLS termination: wxgate serves HTTPS with the configured certificate and speaks
//! HTTP/2 to clients that offer it through ALPN, HTTP/1.1 to the others.

use crate::support::skip;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::proxy;

/// A throwaway P-256 certificate for 127.0.0.1, made with the openssl command line.
fn self_signed(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let openssl = skip::program("openssl")?;
    let (cert, key, conf) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("req.cnf"),
    );
    // A leaf certificate (CA:FALSE): rustls refuses a CA certificate as a server's.
    std::fs::write(
        &conf,
        "[req]\ndistinguished_name = dn\nx509_extensions = leaf\nprompt = no\n\
         [dn]\nCN = wxgate-test\n\
         [leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1\n",
    )
    .unwrap();
    let status = Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1"])
        .arg("-config")
        .arg(&conf)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        status.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    Some((cert, key))
}

#[tokio::test]
async fn https_clients_get_h2_through_alpn_and_http1_when_they_ask_for_it() {
    let dir = crate::support::scratch_dir("tls");
    let Some((cert, key)) = self_signed(&dir) else {
        return;
    };
    let (c, k) = (cert.clone(), key.clone());
    let proxy = proxy()
        .tweak(move |cfg| {
            cfg.server.tls_cert_file = Some(c);
            cfg.server.tls_key_file = Some(k);
        })
        .run()
        .await;
    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let url = format!("https://{}/over/tls?x=1", proxy.addr);

    let h2 = reqwest::Client::builder()
        .tls_certs_only([root.clone()])
        .build()
        .unwrap();
    let resp = h2.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.version(),
        reqwest::Version::HTTP_2,
        "ALPN should pick h2"
    );
    let echo: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(echo["uri"], "/over/tls?x=1");
    // The upstream is told the client came over https.
    let proto: Vec<&str> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0] == "x-forwarded-proto")
        .map(|p| p[1].as_str().unwrap())
        .collect();
    assert_eq!(proto, ["https"]);

    let h1 = reqwest::Client::builder()
        .tls_certs_only([root])
        .http1_only()
        .build()
        .unwrap();
    let resp = h1.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);

    // A client that does not trust the certificate gets no answer at all.
    let untrusting = reqwest::Client::new();
    assert!(untrusting.get(&url).send().await.is_err());

    proxy.shutdown().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
