//! A throwaway redis-server for tests: on a free loopback port, with its own data
//! directory, killed (that pid only) when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::skip;

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    cluster: bool,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn redis_server_on_path() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl RedisServer {
    /// None (after saying so loudly) when redis-server is not installed, unless `CI` is
    /// set: there a missing server is a failure, not a skip.
    pub fn start() -> Option<RedisServer> {
        Self::launch(false)
    }

    /// A one-node Redis Cluster owning every slot: enough to drive the cluster client
    /// (slot routing, per-slot pipelines, multi-slot DEL).
    pub fn start_cluster() -> Option<RedisServer> {
        let server = Self::launch(true)?;
        let mut c = server.client();
        let _: () = redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(16383)
            .query(&mut c)
            .expect("assign every slot");
        // The node announces the new state asynchronously; nothing to await but itself.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).unwrap();
            if info.contains("cluster_state:ok") {
                return Some(server);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "cluster not ok: {info}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn launch(cluster: bool) -> Option<RedisServer> {
        if !redis_server_on_path() {
            skip::skip("redis-server not found on PATH (Debian: apt-get install redis-server)");
            return None;
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("wxgate-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("data dir");
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            cluster,
        };
        server.restart();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A plain client, to look at what the store wrote.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("plain redis connection")
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts (again) on the same port and data directory, returning once it accepts
    /// connections: a dump written before a kill is loaded back.
    pub fn restart(&mut self) {
        self.kill();
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--dbfilename", "dump.rdb"])
            .args(if self.cluster {
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ][..]
            } else {
                &[]
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);

        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keeps draining the log after readiness so the server never blocks on it.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    let _ = ready_tx.send(());
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("redis-server ready within 10s");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
