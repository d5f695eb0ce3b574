//! The deployment kit agrees with the product: every YAML file parses, every embedded
//! or shipped wxgate config loads, and the ports, probe paths, forward-auth URL and
//! identity header each file names are the ones `proxy.example.toml` defines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wxgate::config::{from_toml, Config};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Secrets as a deployment supplies them: from the environment, never the file.
fn deploy_env() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("WXGATE_WECHAT_SECRET".into(), "test-app-secret".into()),
        (
            "WXGATE_SESSION_SECRET".into(),
            "0123456789abcdef0123456789abcdef".into(),
        ),
        (
            "WXGATE_SIGNING_KEY".into(),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----".into(),
        ),
    ])
}

fn load(text: &str, what: &str) -> Config {
    from_toml(text, Path::new("."), &deploy_env())
        .unwrap_or_else(|e| panic!("{what} does not load: {e}"))
}

fn example() -> Config {
    load(&read("proxy.example.toml"), "proxy.example.toml")
}

fn port(listen: &str) -> u16 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{listen:?} has no port"))
}

fn yaml_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root().join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("deploy/ exists") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(path).expect("readable yaml");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

fn all_documents(rel: &str) -> Vec<serde_yaml_ng::Value> {
    documents(&root().join(rel))
}

fn kind<'a>(docs: &'a [serde_yaml_ng::Value], kind: &str) -> &'a serde_yaml_ng::Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn every_yaml_file_in_the_kit_parses_including_multi_document_ones() {
    let files = yaml_files();
    assert!(files.len() >= 8, "found {files:?}");
    for file in &files {
        let docs = documents(file);
        assert!(!docs.is_empty(), "{} is empty", file.display());
        assert!(docs.iter().all(|d| d.is_mapping()), "{}", file.display());
    }
    assert!(all_documents("deploy/ingress-nginx.yaml").len() >= 2);
}

#[test]
fn the_example_config_defines_the_ports_and_header_the_kit_relies_on() {
    let c = example();
    assert_eq!(port(&c.server.listen), 8080);
    assert_eq!(port(&c.admin.listen), 9090);
    assert_eq!(c.identity.header, "X-Wxgate-Jwt-Assertion");
}

#[test]
fn the_image_exposes_both_ports_and_checks_health_on_the_admin_port() {
    let c = example();
    let dockerfile = read("deploy/Dockerfile");
    let (public, admin) = (port(&c.server.listen), port(&c.admin.listen));
    assert!(dockerfile.contains(&format!("EXPOSE {public} {admin}")));
    let health = dockerfile
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .take(2)
        .collect::<String>();
    assert!(
        health.contains(&format!("127.0.0.1:{admin}/healthz")),
        "HEALTHCHECK: {health}"
    );
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["wxgate"]"#));
    assert!(dockerfile.contains(r#"CMD ["serve", "-c", "/etc/wxgate/wxgate.toml"]"#));
    assert!(dockerfile
        .lines()
        .any(|l| l.starts_with("USER ") && !l.contains("root")));
}

#[test]
fn the_compose_files_keep_the_app_private_and_mount_a_loading_config() {
    let c = example();
    let docker_config = load(&read("deploy/wxgate.docker.toml"), "wxgate.docker.toml");
    assert_eq!(port(&docker_config.server.listen), port(&c.server.listen));
    assert_eq!(port(&docker_config.admin.listen), port(&c.admin.listen));
    assert_eq!(docker_config.session.store.as_str(), "redis");

    let compose = &all_documents("deploy/docker-compose.yml")[0];
    let services = &compose["services"];
    assert!(
        services["app"]["ports"].is_null(),
        "the app must not be published"
    );
    assert_eq!(services["wxgate"]["ports"][0].as_str(), Some("8080:8080"));
    let mounts = format!("{:?}", services["wxgate"]["volumes"]);
    assert!(mounts.contains("/etc/wxgate/wxgate.toml"));
    for secret in ["WXGATE_WECHAT_SECRET", "WXGATE_SESSION_SECRET"] {
        assert!(
            services["wxgate"]["environment"][secret].is_string(),
            "{secret}"
        );
    }
    assert!(services["redis"].is_mapping());

    let replicas = &all_documents("deploy/docker-compose.replicas.yml")[0];
    let services = &replicas["services"];
    for name in ["wxgate-1", "wxgate-2", "lb", "redis"] {
        assert!(services[name].is_mapping(), "{name}");
    }
    assert!(services["app"]["ports"].is_null() && services["wxgate-1"]["ports"].is_null());
    let lb = read("deploy/replicas-lb.conf");
    assert!(lb.contains("wxgate-1:8080") && lb.contains("wxgate-2:8080"));
}

#[test]
fn the_kubernetes_sidecar_probes_the_admin_port_and_its_configmap_loads() {
    let c = example();
    let admin = i64::from(port(&c.admin.listen));
    let public = i64::from(port(&c.server.listen));

    let configmap = &all_documents("deploy/kubernetes/configmap.yaml")[0];
    let toml = configmap["data"]["wxgate.toml"]
        .as_str()
        .expect("wxgate.toml key");
    let k8s_config = load(toml, "the ConfigMap's wxgate.toml");
    assert_eq!(i64::from(port(&k8s_config.admin.listen)), admin);
    assert!(
        k8s_config.upstream.url.starts_with("http://127.0.0.1:"),
        "the app is reached on loopback only"
    );

    let deployment = &all_documents("deploy/kubernetes/deployment.yaml")[0];
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    let wxgate = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("wxgate"))
        .expect("a wxgate sidecar");
    assert_eq!(containers.len(), 2, "the app and its wxgate sidecar");
    let ports: Vec<i64> = wxgate["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .filter_map(|p| p["containerPort"].as_i64())
        .collect();
    assert_eq!(ports, vec![public, admin]);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(wxgate[probe]["httpGet"]["path"].as_str(), Some(path));
        assert_eq!(wxgate[probe]["httpGet"]["port"].as_i64(), Some(admin));
    }

    let secret = &all_documents("deploy/kubernetes/secret.yaml")[0];
    for key in [
        "WXGATE_WECHAT_SECRET",
        "WXGATE_SESSION_SECRET",
        "signing.pem",
    ] {
        assert!(secret["stringData"][key].is_string(), "secret key {key}");
    }
    // The config is the ConfigMap mounted as a folder (a subPath file never sees an
    // edit, so SIGHUP would reload the old text), and `-c` names the file inside it.
    let mounts = wxgate["volumeMounts"].as_sequence().expect("volumeMounts");
    let config_mount = mounts
        .iter()
        .find(|m| m["name"].as_str() == Some("config"))
        .expect("the config volume is mounted");
    assert!(
        config_mount["subPath"].is_null(),
        "no subPath: {config_mount:?}"
    );
    let folder = config_mount["mountPath"].as_str().expect("mountPath");
    let args: Vec<&str> = wxgate["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(
        args,
        ["serve", "-c", &format!("{folder}/wxgate.toml")],
        "-c names the ConfigMap's key inside the mounted folder"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some("config"))
        .expect("config volume");
    assert_eq!(
        volume["configMap"]["name"].as_str(),
        configmap["metadata"]["name"].as_str()
    );
    // wxgate runs as non-root; the app is not forced to (the pod does not say so).
    assert_eq!(
        wxgate["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    assert!(
        pod["securityContext"]["runAsNonRoot"].is_null(),
        "runAsNonRoot on the pod would stop an app image that runs as root"
    );

    let mounted = format!("{:?}", wxgate["volumeMounts"]);
    // Where the file says the key is (the checked config holds the key itself).
    let k8s_file: wxgate::config::file::Config = toml::from_str(toml).expect("wxgate.toml parses");
    let key_dir = Path::new(&k8s_file.identity.signing_key_file)
        .parent()
        .and_then(Path::to_str)
        .expect("signing_key_file has a directory")
        .to_string();
    assert!(
        mounted.contains(&key_dir),
        "the key is mounted at {key_dir}"
    );

    let service = &all_documents("deploy/kubernetes/service.yaml")[0];
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"].as_i64(),
        Some(public)
    );
    assert_eq!(
        service["spec"]["ports"].as_sequence().map(Vec::len),
        Some(1)
    );
}

#[test]
fn every_forward_auth_config_calls_the_auth_url_and_copies_the_identity_header() {
    let header = example().identity.header;
    let nginx_var = format!(
        "$upstream_http_{}",
        header.to_ascii_lowercase().replace('-', "_")
    );

    let nginx = read("deploy/nginx/wxgate-auth.conf");
    assert!(nginx.contains("auth_request /_wxgate/auth;"));
    assert!(nginx.contains(&nginx_var), "nginx reads {nginx_var}");
    assert!(nginx.contains("$upstream_http_x_auth_request_openid"));
    assert!(nginx.contains(&format!("proxy_set_header {header} ")));
    assert!(nginx.contains("error_page 401 = @wxgate_signin;"));
    assert!(nginx.contains("return 302 /_wxgate/start?rd=$request_uri;"));
    assert!(nginx.contains("location /_wxgate/ {"));

    let ingress = all_documents("deploy/ingress-nginx.yaml");
    let annotations = &kind(&ingress, "Ingress")["metadata"]["annotations"];
    let auth_url = annotations["nginx.ingress.kubernetes.io/auth-url"]
        .as_str()
        .unwrap_or("");
    assert!(auth_url.ends_with(":8080/_wxgate/auth"), "{auth_url}");
    let signin = annotations["nginx.ingress.kubernetes.io/auth-signin"]
        .as_str()
        .unwrap_or("");
    assert!(signin.contains("/_wxgate/start?rd="), "{signin}");
    let copied = annotations["nginx.ingress.kubernetes.io/auth-response-headers"]
        .as_str()
        .unwrap_or("");
    assert!(copied.split(',').any(|h| h.trim() == header), "{copied}");

    let traefik = &all_documents("deploy/traefik.yml")[0];
    let forward = &traefik["http"]["middlewares"]["wxgate"]["forwardAuth"];
    assert!(forward["address"]
        .as_str()
        .unwrap_or("")
        .ends_with(":8080/_wxgate/auth"));
    let copied = format!("{:?}", forward["authResponseHeaders"]);
    assert!(copied.contains(&header), "{copied}");

    let caddy = read("deploy/Caddyfile");
    assert!(caddy.contains("uri /_wxgate/auth"));
    let copy = caddy
        .lines()
        .find(|l| l.trim_start().starts_with("copy_headers"))
        .expect("copy_headers");
    assert!(copy.split_whitespace().any(|h| h == header), "{copy}");
}

#[test]
fn the_systemd_unit_runs_hardened_with_the_documented_command() {
    let unit = read("deploy/wxgate.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/wxgate serve -c /etc/wxgate/wxgate.toml"));
    for line in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
}
