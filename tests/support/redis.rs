//! Test-owned `redis-server` processes on free loopback ports. Never touches a Redis the test
//! did not start; kills what it started on drop.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` this test started. Killed on drop.
pub(crate) struct RedisServer {
    pub(crate) port: u16,
    child: Option<Child>,
}

/// Starts a Redis for a test, or `None` (after a loud message) when
/// `SEALED_SESSIONS_SKIP_REDIS=1` and `redis-server` is missing. Without the variable a
/// missing `redis-server` fails the test with install instructions.
pub(crate) fn start() -> Option<RedisServer> {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var("SEALED_SESSIONS_SKIP_REDIS").as_deref() == Ok("1") {
            eprintln!(
                "\n!!!!!!!! SKIPPED: redis-server not found and SEALED_SESSIONS_SKIP_REDIS=1 — \
                 Redis tests did NOT run !!!!!!!!\n"
            );
            return None;
        }
        panic!(
            "redis-server is not installed; these tests start their own. Install it with \
             `apt-get install -y redis-server` (or set SEALED_SESSIONS_SKIP_REDIS=1 to skip)."
        );
    }
    let port = free_port();
    let mut r = RedisServer { port, child: None };
    r.spawn();
    Some(r)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    pub(crate) fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// Kills the process (its data is gone: no persistence).
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a new, empty server on the same port.
    pub(crate) fn restart_empty(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A synchronous connection for assertions.
    pub(crate) fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Topologies: a TLS server, a Cluster, a primary + replica + Sentinel. Every process is a
// `Proc`, killed (by its own pid) on drop.

/// A child process this test started; killed on drop.
pub(crate) struct Proc(Option<Child>);

impl Proc {
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(args: &[String]) -> Proc {
    let child = Command::new("redis-server")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    Proc(Some(child))
}

/// Waits until something listens on the loopback port.
fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port}");
}

/// Polls `f` every 50 ms until it holds, for at most `limit`.
pub(crate) fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for: {what}");
}

fn base_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A plain synchronous connection to a loopback port.
pub(crate) fn conn_to(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap()
}

fn query_str(port: u16, cmd: &mut redis::Cmd) -> Option<String> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .ok()?
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    cmd.query::<String>(&mut c).ok()
}

/// `ROLE`'s first element ("master", "slave", "sentinel").
pub(crate) fn role(port: u16) -> Option<String> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .ok()?
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    let v: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).ok()?;
    redis::from_redis_value_ref::<String>(v.first()?).ok()
}

/// Test certificates made with the `openssl` CLI: a CA, a server certificate for 127.0.0.1,
/// a client certificate, and an unrelated CA that signed nothing here.
pub(crate) struct Certs {
    pub(crate) dir: tempfile::TempDir,
}

impl Certs {
    pub(crate) fn make() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let c = Certs { dir };
        c.ca("ca");
        c.ca("other-ca");
        c.leaf(
            "server",
            "serverAuth",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        );
        c.leaf("client", "clientAuth", "subjectAltName=DNS:client");
        c
    }

    pub(crate) fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn pem(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ca(&self, name: &str) {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &format!("/CN=test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    fn leaf(&self, name: &str, eku: &str, san: &str) {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(
            self.path(&ext),
            format!("{san}\nextendedKeyUsage={eku}\nbasicConstraints=CA:FALSE\n"),
        )
        .unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
}

/// A `redis-server` that speaks only TLS, with the certificates of `certs`.
pub(crate) struct TlsRedis {
    pub(crate) port: u16,
    _proc: Proc,
}

impl TlsRedis {
    /// `auth_clients`: `yes` (mutual TLS required) or `optional`.
    pub(crate) fn start(certs: &Certs, auth_clients: &str) -> TlsRedis {
        let port = free_port();
        let p = |n: &str| certs.path(n).display().to_string();
        let mut args = base_args(0);
        args.extend([
            "--tls-port".to_string(),
            port.to_string(),
            "--tls-cert-file".into(),
            p("server.pem"),
            "--tls-key-file".into(),
            p("server.key"),
            "--tls-ca-cert-file".into(),
            p("ca.pem"),
            "--tls-auth-clients".into(),
            auth_clients.into(),
        ]);
        let proc = spawn(&args);
        wait_listening(port);
        TlsRedis { port, _proc: proc }
    }

    pub(crate) fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }
}

/// Three primaries and three replicas, `redis-cli --cluster create`d.
pub(crate) struct Cluster {
    pub(crate) ports: Vec<u16>,
    _dir: tempfile::TempDir,
    procs: Vec<Proc>,
}

impl Cluster {
    pub(crate) fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut ports = Vec::new();
        let mut procs = Vec::new();
        for _ in 0..6 {
            let port = free_port();
            // An explicit bus port: port + 10000 may not exist above 55535.
            let bus = free_port();
            let mut args = base_args(port);
            args.extend([
                "--cluster-enabled".to_string(),
                "yes".into(),
                "--cluster-port".into(),
                bus.to_string(),
                "--cluster-config-file".into(),
                dir.path()
                    .join(format!("nodes-{port}.conf"))
                    .display()
                    .to_string(),
                "--cluster-node-timeout".into(),
                "2000".into(),
                "--dir".into(),
                dir.path().display().to_string(),
            ]);
            procs.push(spawn(&args));
            ports.push(port);
        }
        for p in &ports {
            wait_listening(*p);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for p in &ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster {
            ports,
            _dir: dir,
            procs,
        };
        wait_until(
            "cluster_state:ok everywhere",
            Duration::from_secs(30),
            || {
                cluster.ports.iter().all(|p| {
                    query_str(*p, redis::cmd("CLUSTER").arg("INFO"))
                        .is_some_and(|i| i.contains("cluster_state:ok"))
                })
            },
        );
        cluster
    }

    /// `CLUSTER NODES` as (port, id, is_primary, primary id, owns `slot`).
    fn nodes(&self, slot: u16) -> Vec<(u16, String, bool, String, bool)> {
        let text = self
            .ports
            .iter()
            .find_map(|p| query_str(*p, redis::cmd("CLUSTER").arg("NODES")))
            .unwrap();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let port: u16 = f.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
                let owns = f.iter().skip(8).any(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
                });
                Some((port, f[0].to_owned(), f[2].contains("master"), f[3].to_owned(), owns))
            })
            .collect()
    }

    /// The slot of hash tag `tag`.
    pub(crate) fn slot(&self, tag: &str) -> u16 {
        let mut c = conn_to(self.ports[0]);
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(tag)
            .query(&mut c)
            .unwrap()
    }

    /// The primary that owns `slot`, and its replica.
    pub(crate) fn owner_and_replica(&self, slot: u16) -> (u16, u16) {
        // Right after `--cluster create`, a node's view may not list every replica yet.
        let mut found = None;
        wait_until(
            "the slot's owner and its replica in CLUSTER NODES",
            Duration::from_secs(20),
            || {
                let nodes = self.nodes(slot);
                found = nodes
                    .iter()
                    .find(|n| n.2 && n.4)
                    .and_then(|(port, id, ..)| {
                        let replica = nodes.iter().find(|n| !n.2 && n.3 == *id)?.0;
                        Some((*port, replica))
                    });
                found.is_some()
            },
        );
        found.unwrap()
    }

    /// A primary that does not own `slot` (a client seeded with it gets `MOVED`).
    pub(crate) fn other_primary(&self, slot: u16) -> u16 {
        self.nodes(slot).iter().find(|n| n.2 && !n.4).unwrap().0
    }

    pub(crate) fn url(port: u16) -> String {
        format!("redis://127.0.0.1:{port}/")
    }

    /// `CLUSTER FAILOVER` on the replica of the owner of `slot`; waits until it is primary.
    pub(crate) fn failover(&self, slot: u16) -> u16 {
        let (owner, replica) = self.owner_and_replica(slot);
        wait_until("the replica is in sync", Duration::from_secs(20), || {
            query_str(replica, redis::cmd("INFO").arg("replication"))
                .is_some_and(|i| i.contains("master_link_status:up"))
        });
        let mut c = conn_to(replica);
        let _: String = redis::cmd("CLUSTER").arg("FAILOVER").query(&mut c).unwrap();
        wait_until("the replica took over", Duration::from_secs(20), || {
            role(replica).as_deref() == Some("master") && role(owner).as_deref() == Some("slave")
        });
        replica
    }

    /// Moves `slot` from its primary to another primary the way `redis-cli --cluster reshard`
    /// does (IMPORTING/MIGRATING, `MIGRATE` of its keys, `SETSLOT … NODE` on every primary),
    /// one key at a time with `pause` between keys, so clients see the slot half moved. Returns
    /// the new owner's port.
    pub(crate) fn migrate_slot(&self, slot: u16, pause: Duration) -> u16 {
        // A cluster just created or just failed over can still list a node by its old role:
        // wait until the owner and the target each say themselves that they are primaries.
        let (mut owner, mut target) = (0, 0);
        wait_until(
            "the slot's owner and a second primary",
            Duration::from_secs(20),
            || {
                owner = self.owner_and_replica(slot).0;
                target = self.other_primary(slot);
                role(owner).as_deref() == Some("master")
                    && role(target).as_deref() == Some("master")
            },
        );
        let nodes = self.nodes(slot);
        let id = |port: u16| nodes.iter().find(|n| n.0 == port).unwrap().1.clone();
        let (owner_id, target_id) = (id(owner), id(target));
        let setslot = |port: u16, args: &[&str]| {
            let mut c = conn_to(port);
            let _: String = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(args)
                .query(&mut c)
                .unwrap();
        };
        setslot(target, &["IMPORTING", &owner_id]);
        setslot(owner, &["MIGRATING", &target_id]);
        let mut c = conn_to(owner);
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(1)
                .query(&mut c)
                .unwrap();
            let Some(key) = keys.first() else { break };
            let _: String = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(target)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(key)
                .query(&mut c)
                .unwrap();
            std::thread::sleep(pause);
        }
        setslot(target, &["NODE", &target_id]);
        setslot(owner, &["NODE", &target_id]);
        // The other primaries learn it too; a node this (earlier) view called a primary but
        // that is a replica by now refuses SETSLOT and learns the owner through gossip, which
        // the wait below checks.
        for n in nodes
            .iter()
            .filter(|n| n.2 && n.0 != owner && n.0 != target)
        {
            let mut c = conn_to(n.0);
            let r: redis::RedisResult<String> = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(&["NODE", &target_id])
                .query(&mut c);
            if let Err(e) = r {
                assert!(e.to_string().contains("only with masters"), "{e}");
            }
        }
        wait_until(
            "every node sees the new owner",
            Duration::from_secs(20),
            || {
                self.ports.iter().all(|p| {
                    let mut c = conn_to(*p);
                    let shards: redis::Value =
                        redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
                    slot_owner(&shards, slot) == Some(target)
                })
            },
        );
        target
    }

    /// Stops every node now.
    pub(crate) fn kill(&mut self) {
        for p in &mut self.procs {
            p.kill();
        }
    }
}

/// The primary's port for `slot` in a `CLUSTER SLOTS` reply.
fn slot_owner(slots: &redis::Value, slot: u16) -> Option<u16> {
    let redis::Value::Array(ranges) = slots else {
        return None;
    };
    ranges.iter().find_map(|r| {
        let redis::Value::Array(r) = r else {
            return None;
        };
        let start: u16 = redis::from_redis_value_ref(r.first()?).ok()?;
        let end: u16 = redis::from_redis_value_ref(r.get(1)?).ok()?;
        if !(start..=end).contains(&slot) {
            return None;
        }
        let redis::Value::Array(primary) = r.get(2)? else {
            return None;
        };
        redis::from_redis_value_ref(primary.get(1)?).ok()
    })
}

/// A primary, two replicas, and one Sentinel monitoring them as `mymaster`. Two replicas, as in
/// production: after a failover the new primary has a replica at once (the other one, which
/// Sentinel re-points as part of the failover), so writes that wait for one replica
/// (`RedisConfig::replica_acks`) go on; the demoted primary rejoins only later.
pub(crate) struct Sentinel {
    pub(crate) primary: u16,
    pub(crate) replica: u16,
    pub(crate) second_replica: u16,
    pub(crate) sentinel: u16,
    _dir: tempfile::TempDir,
    _procs: Vec<Proc>,
}

pub(crate) const SENTINEL_MASTER: &str = "mymaster";

impl Sentinel {
    pub(crate) fn start() -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        let (primary, replica, second_replica, sentinel) =
            (free_port(), free_port(), free_port(), free_port());
        // Replication writes an RDB file: into the test's directory, not the working tree.
        let in_dir = |port: u16| {
            let mut args = base_args(port);
            args.extend(["--dir".to_string(), dir.path().display().to_string()]);
            args
        };
        let mut procs = vec![spawn(&in_dir(primary))];
        wait_listening(primary);
        for port in [replica, second_replica] {
            // Each replica its own directory: two RDB files of one name would collide.
            let sub = dir.path().join(port.to_string());
            std::fs::create_dir(&sub).unwrap();
            let mut args = base_args(port);
            args.extend([
                "--dir".to_string(),
                sub.display().to_string(),
                "--replicaof".to_string(),
                "127.0.0.1".into(),
                primary.to_string(),
            ]);
            // The failover promotes `replica`; the other one is never preferred.
            if port == second_replica {
                args.extend(["--replica-priority".to_string(), "200".into()]);
            }
            procs.push(spawn(&args));
        }
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 5000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        procs.push(spawn(&[conf.display().to_string(), "--sentinel".into()]));
        wait_listening(replica);
        wait_listening(second_replica);
        wait_listening(sentinel);
        let s = Sentinel {
            primary,
            replica,
            second_replica,
            sentinel,
            _dir: dir,
            _procs: procs,
        };
        for port in [replica, second_replica] {
            wait_until("the replicas are in sync", Duration::from_secs(20), || {
                query_str(port, redis::cmd("INFO").arg("replication"))
                    .is_some_and(|i| i.contains("master_link_status:up"))
            });
        }
        wait_until(
            "the sentinel knows both replicas",
            Duration::from_secs(20),
            || {
                let mut c = conn_to(sentinel);
                redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(SENTINEL_MASTER)
                    .query::<Vec<redis::Value>>(&mut c)
                    .is_ok_and(|v| v.len() >= 2)
            },
        );
        s
    }

    pub(crate) fn sentinel_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.sentinel)
    }

    /// `SENTINEL FAILOVER`; waits until the replica is primary and the sentinel names it.
    pub(crate) fn failover(&self) {
        let mut c = conn_to(self.sentinel);
        let _: String = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(SENTINEL_MASTER)
            .query(&mut c)
            .unwrap();
        wait_until(
            "the sentinel names the replica",
            Duration::from_secs(20),
            || {
                let mut c = conn_to(self.sentinel);
                let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(SENTINEL_MASTER)
                    .query(&mut c)
                    .ok()
                    .flatten();
                addr.is_some_and(|(_, p)| p == self.replica)
                    && role(self.replica).as_deref() == Some("master")
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Library-level nodes for the topology tests.

use sealed_sessions::SessionId;
use sealed_sessions::clock::{Clock as _, SystemClock, UnixMillis};
use sealed_sessions::revocation::{RedisConfig, RedisRevocations, RevocationBackend};

/// Short timings so failures and failovers are noticed within the tests' 5 s.
pub(crate) fn quick(mut c: RedisConfig) -> RedisConfig {
    c.prefix = "topo".into();
    c.block = Duration::from_millis(200);
    c.op_timeout = Duration::from_millis(500);
    c.max_backoff = Duration::from_millis(200);
    c.startup_wait = Duration::from_secs(10);
    c
}

pub(crate) fn new_sid() -> SessionId {
    SessionId::parse_hex(&format!("{:032x}", rand::random::<u128>())).unwrap()
}

pub(crate) fn now() -> UnixMillis {
    SystemClock.now()
}

/// Revokes a fresh session id on `node` (a logout) and returns it. Redis refusing the write
/// (`Unavailable`) is not a failure here: the node enforces it and retries; tests check that
/// it arrives elsewhere.
pub(crate) async fn logout(node: &RedisRevocations) -> SessionId {
    let sid = new_sid();
    let now = now();
    let _ = node
        .revoke_session(sid, now.saturating_add(Duration::from_secs(3600)), now)
        .await;
    sid
}

/// Logs out on `node` every 20 ms until `done`, and returns the session ids.
pub(crate) async fn logouts_until(
    node: &RedisRevocations,
    done: impl Fn() -> bool,
) -> Vec<SessionId> {
    let mut sids = Vec::new();
    while !done() {
        sids.push(logout(node).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sids.push(logout(node).await);
    sids
}

pub(crate) fn is_revoked(node: &RedisRevocations, sid: &SessionId) -> bool {
    node.check(sid, "someone", u64::MAX, now()).is_err()
}

/// Polls (async) until `f` holds, for at most `limit`.
pub(crate) async fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Revocations made on `from` reach `to` within 5 s.
pub(crate) async fn propagates(from: &RedisRevocations, to: &RedisRevocations) -> SessionId {
    let sid = logout(from).await;
    assert!(is_revoked(from, &sid), "a node reads its own writes");
    eventually(
        "the other node rejects the session",
        Duration::from_secs(5),
        || is_revoked(to, &sid),
    )
    .await;
    sid
}
