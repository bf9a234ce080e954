//! Redis topologies on loopback for the tests: one master, one replica and
//! three sentinels (Debian's `redis-server` and `redis-sentinel`), or a
//! Redis Cluster of masters made with `redis-cli --cluster create`. Every
//! process is killed on drop; every wait polls with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::free_port;

/// One server process (redis-server or redis-sentinel), killed on drop.
pub struct Server {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl Server {
    /// Starts `program conf` in `dir` and waits for the log line `ready`.
    fn start(program: &str, dir: &Path, port: u16, conf: &str, ready: &str) -> Server {
        let conf_path = dir.join(format!("{port}.conf"));
        let log = dir.join(format!("{port}.log"));
        std::fs::write(
            &conf_path,
            format!(
                "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\nlogfile {}\n{conf}",
                dir.display(),
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new(program)
            .arg(&conf_path)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} not found ({e}): scripts/test.sh installs it"));
        let mut s = Server {
            port,
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        wait_for(
            Duration::from_secs(20),
            &format!("{program} on {port}"),
            || {
                let exited = s.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                assert!(exited.is_none(), "{program} on {port} exited: {}", s.log());
                s.log().contains(ready)
            },
        );
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.port))).unwrap_or_default()
    }

    /// Kills the process outright (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `ok` until it holds, or panics naming `what` after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command on a fresh connection, `None` if the server cannot be reached or refuses it.
pub fn try_command<T: redis::FromRedisValue>(url: &str, args: &[&str]) -> Option<T> {
    let client = redis::Client::open(url).ok()?;
    let mut c = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut c).ok()
}

/// One master, one replica, three sentinels monitoring them as `name`
/// (quorum 2, `down-after-milliseconds` 1000, so a killed master fails
/// over in a few seconds).
pub struct SentinelSet {
    pub name: String,
    pub servers: Vec<Server>,
    pub sentinels: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    /// `data_conf` goes into both data nodes' configuration (e.g.
    /// `requirepass`), `sentinel_conf` into the sentinels' (before the
    /// `sentinel monitor` line: e.g. `requirepass` for the sentinels themselves).
    pub fn start(data_conf: &str, sentinel_conf: &str, auth_pass: Option<&str>) -> SentinelSet {
        let dir = tempfile::tempdir().unwrap();
        let name = "mymaster".to_string();
        let master = Server::start(
            "redis-server",
            dir.path(),
            free_port(),
            data_conf,
            "Ready to accept connections",
        );
        let replica_conf = format!(
            "{data_conf}\nreplicaof 127.0.0.1 {}\n{}",
            master.port,
            auth_pass
                .map(|p| format!("masterauth {p}"))
                .unwrap_or_default()
        );
        let replica = Server::start(
            "redis-server",
            dir.path(),
            free_port(),
            &replica_conf,
            "MASTER <-> REPLICA sync: Finished",
        );
        let monitor = format!(
            "{sentinel_conf}\nsentinel monitor {name} 127.0.0.1 {} 2\nsentinel down-after-milliseconds {name} 1000\nsentinel failover-timeout {name} 5000\nsentinel parallel-syncs {name} 1\n{}",
            master.port,
            auth_pass.map(|p| format!("sentinel auth-pass {name} {p}")).unwrap_or_default()
        );
        let sentinels: Vec<Server> = (0..3)
            .map(|_| {
                Server::start(
                    "redis-sentinel",
                    dir.path(),
                    free_port(),
                    &monitor,
                    "+monitor master",
                )
            })
            .collect();
        SentinelSet {
            name,
            servers: vec![master, replica],
            sentinels,
            _dir: dir,
        }
    }

    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels.iter().map(Server::address).collect()
    }

    /// The master's port as the sentinel at `i` names it, if it answers.
    pub fn master_port(&self, sentinel_url: &str) -> Option<u16> {
        let (_, port): (String, u16) = try_command(
            sentinel_url,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.name],
        )?;
        Some(port)
    }

    /// Waits until every sentinel knows the replica and every other sentinel
    /// (a failover needs both), as `SENTINEL REPLICAS` and `SENTINEL SENTINELS` say.
    pub fn wait_until_settled(&self, sentinel_url: impl Fn(&Server) -> String) {
        wait_for(
            Duration::from_secs(60),
            "sentinels to discover each other",
            || {
                self.sentinels.iter().all(|s| {
                    let url = sentinel_url(s);
                    let replicas: Option<Vec<redis::Value>> =
                        try_command(&url, &["SENTINEL", "REPLICAS", &self.name]);
                    let peers: Option<Vec<redis::Value>> =
                        try_command(&url, &["SENTINEL", "SENTINELS", &self.name]);
                    replicas.is_some_and(|r| r.len() == 1) && peers.is_some_and(|p| p.len() == 2)
                })
            },
        );
    }
}

/// A free port whose cluster bus port (port + 10000, as Redis derives it)
/// is free too and in range: a free data port alone once collided with a
/// bus port some other socket held ("bind: Address already in use").
fn free_cluster_port() -> u16 {
    for _ in 0..200 {
        let port = free_port();
        let Some(bus) = port.checked_add(10_000).filter(|b| *b < u16::MAX) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return port;
        }
    }
    panic!("no free port with a free cluster bus port after 200 tries");
}

/// A Redis Cluster of `n` masters (no replicas) on loopback.
pub struct ClusterSet {
    pub nodes: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl ClusterSet {
    pub fn start(n: usize) -> ClusterSet {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Server> = (0..n)
            .map(|_| {
                let port = free_cluster_port();
                let conf = format!(
                    "cluster-enabled yes\ncluster-config-file nodes-{port}.conf\ncluster-node-timeout 2000\n"
                );
                Server::start("redis-server", dir.path(), port, &conf, "Ready to accept connections")
            })
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(nodes.iter().map(Server::address))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli not found: scripts/test.sh installs redis-server (redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let set = ClusterSet { nodes, _dir: dir };
        wait_for(
            Duration::from_secs(60),
            "cluster state ok on every node",
            || {
                set.nodes.iter().all(|s| {
                    try_command::<String>(&s.url(), &["CLUSTER", "INFO"])
                        .is_some_and(|i| i.contains("cluster_state:ok"))
                })
            },
        );
        set
    }

    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(Server::address).collect()
    }

    /// The node (index) that serves `key`'s slot, from the cluster's own answer.
    pub fn owner_of(&self, key: &str) -> usize {
        let slot: u16 = try_command(&self.nodes[0].url(), &["CLUSTER", "KEYSLOT", key]).unwrap();
        self.owner_of_slot(slot)
    }

    /// The node (index) that `CLUSTER SLOTS` (asked of a live node) says serves `slot`.
    pub fn owner_of_slot(&self, slot: u16) -> usize {
        let live = self.nodes.iter().find(|n| n.child.is_some()).unwrap();
        let ranges: Vec<(u16, u16, (String, u16))> = {
            let v: Vec<redis::Value> = try_command(&live.url(), &["CLUSTER", "SLOTS"]).unwrap();
            v.into_iter()
                .map(|r| {
                    let (a, b, node): (u16, u16, Vec<redis::Value>) =
                        redis::from_redis_value(r).unwrap();
                    let (host, port): (String, u16) =
                        redis::from_redis_value(redis::Value::Array(node[..2].to_vec())).unwrap();
                    (a, b, (host, port))
                })
                .collect()
        };
        let (_, _, (_, port)) = ranges
            .iter()
            .find(|(a, b, _)| *a <= slot && slot <= *b)
            .unwrap();
        self.nodes.iter().position(|n| n.port == *port).unwrap()
    }

    /// Node `i`'s cluster id.
    pub fn id(&self, i: usize) -> String {
        try_command(&self.nodes[i].url(), &["CLUSTER", "MYID"]).unwrap()
    }
}
