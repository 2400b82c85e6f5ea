//! The proxy under test: the real binary, started by a builder on an ephemeral loopback port
//! with a config assembled from parsed TOML (never spliced text), files written beside it
//! and environment variables given to the child only.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::pki::Pki;

pub const BIN: &str = env!("CARGO_BIN_EXE_apm-auth-proxy");

/// `[auth.api_key]` with the keys file `keys.toml` beside the config.
pub const API_KEYS: &str = "[auth.api_key]\nenabled = true\nkeys_file = \"keys.toml\"\n";

/// A command that dies with the test: when the thread that started it ends (the test
/// binary killed, a test that panicked before its cleanup), the kernel kills the child too
/// (`setpriv --pdeathsig`, from util-linux, which `scripts/setup.sh test` installs).
pub fn command_tied_to_test(program: &str) -> Command {
    const SETPRIV: &str = "/usr/bin/setpriv";
    assert!(
        Path::new(SETPRIV).exists(),
        "{SETPRIV} (util-linux) is needed so no process outlives the tests: \
         run scripts/setup.sh test"
    );
    let mut c = Command::new(SETPRIV);
    c.args(["--pdeathsig", "KILL", "--", program]);
    c
}

/// A command bounded in time (coreutils `timeout`): killed after `limit`.
pub fn bounded(program: &str, limit: Duration) -> Command {
    let mut c = Command::new("timeout");
    c.args([
        "--kill-after=5",
        &format!("{}", limit.as_secs().max(1)),
        program,
    ]);
    c
}

/// Whether process `pid` holds the socket listening on `addr` (from /proc: the LISTEN entry's
/// inode among the process's open descriptors).
fn listens_on(pid: u32, addr: std::net::SocketAddr) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return true; // nothing to check against: trust the connect
    };
    // The kernel prints an IPv4 address as its 32 bits in host (little-endian) order.
    let local = match addr {
        std::net::SocketAddr::V4(a) => {
            format!(
                "{:08X}:{:04X}",
                u32::from_le_bytes(a.ip().octets()),
                a.port()
            )
        }
        std::net::SocketAddr::V6(a) => format!(":{:04X}", a.port()),
    };
    let inode = table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let listening = f.get(1).is_some_and(|a| a.ends_with(&local)) && f.get(3) == Some(&"0A");
        listening
            .then(|| f.get(9).map(|s| format!("socket:[{s}]")))
            .flatten()
    });
    let (Some(inode), Ok(fds)) = (inode, std::fs::read_dir(format!("/proc/{pid}/fd"))) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == inode.as_str())
    })
}

/// A free loopback port for a listener the test does not bind itself (the proxy's).
///
/// Taken from below the kernel's ephemeral range (`ip_local_port_range`), where no `bind(0)`
/// and no outgoing connection is ever given a port: between this probe and the proxy's bind
/// nothing else in the test run can take it. Each port is handed out once per run, from a
/// start that differs per process.
pub fn free_port() -> u16 {
    static NEXT: Mutex<Option<u16>> = Mutex::new(None);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOWEST: u16 = 10_000;
    let span = ephemeral_start.saturating_sub(LOWEST).max(1000);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let mut port = next.unwrap_or(LOWEST + (std::process::id() % u32::from(span)) as u16);
    for _ in 0..1000 {
        if port < LOWEST || port >= LOWEST + span {
            port = LOWEST;
        }
        let candidate = port;
        port += 1;
        if TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            *next = Some(port);
            return candidate;
        }
    }
    panic!("no free port below the ephemeral range in 1000 tries");
}

/// Every secret any test configured or created: no proxy's log may contain one.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A test secret to look for in every log. Shorter than 8 characters would match by chance.
pub fn register_secret(secret: &str) {
    assert!(
        secret.len() >= 8,
        "test secrets are at least 8 characters: {secret:?}"
    );
    let mut all = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|s| s == secret) {
        all.push(secret.to_string());
    }
}

/// A credential a test sends (`Authorization` value): accepted or refused, it must never
/// appear in a log. Parts shorter than 8 characters are left out (they would match by chance).
pub fn register_presented(authorization: &str) {
    let value = authorization.trim();
    let credential = value.split_once(' ').map_or(value, |(_, c)| c.trim());
    let decoded = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, credential)
        .ok()
        .and_then(|d| String::from_utf8(d).ok());
    let secret = decoded
        .as_deref()
        .and_then(|d| d.split_once(':'))
        .map(|(_, secret)| secret.to_string());
    for part in [Some(credential.to_string()), secret].into_iter().flatten() {
        if part.len() >= 8 {
            register_secret(&part);
        }
    }
}

/// The inline secrets of a config (tokens, the upstream token).
fn register_config_secrets(config: &toml::Table) {
    let at = |path: &[&str]| -> Option<toml::Value> {
        let mut v = config.get(path[0])?;
        for key in &path[1..] {
            v = v.get(*key)?;
        }
        Some(v.clone())
    };
    for path in [&["auth", "secret_token"][..], &["upstream", "secret_token"]] {
        if let Some(toml::Value::String(s)) = at(path) {
            register_secret(&s);
        }
    }
    if let Some(toml::Value::Array(tokens)) = at(&["auth", "secret_tokens"]) {
        for t in tokens {
            if let Some(toml::Value::String(s)) = t.get("secret") {
                register_secret(s);
            }
        }
    }
}

/// Panics naming the secret and the line when `log` contains any registered secret.
pub fn assert_no_secret_in(log: &str, what: &str) {
    let all = SECRETS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for secret in &all {
        if let Some(line) = log.lines().find(|l| l.contains(secret.as_str())) {
            panic!("{what} contains the test secret {secret:?}: {line}");
        }
    }
}

/// Merge `from` into `into`: tables recursively, everything else replaced.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Work done in the config directory before the proxy starts.
type Prepare<'a> = Box<dyn FnOnce(&Path) + 'a>;

pub struct ProxyBuilder<'a> {
    pki: &'a Pki,
    config: toml::Table,
    env: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
    prepare: Vec<Prepare<'a>>,
    /// The agents' listener's address, when a test needs a given one.
    listen: Option<std::net::SocketAddr>,
}

impl<'a> ProxyBuilder<'a> {
    fn new(pki: &'a Pki, upstream: &str) -> Self {
        let base = format!(
            "[server]\nthreads = 1\nreject_drain_timeout = \"2s\"\nshutdown_grace_period = \"0s\"\n\
             [ssl]\ncertificate = {cert:?}\nkey = {key:?}\n\
             [upstream]\nurl = {upstream:?}\nconnect_timeout = \"1s\"\nread_timeout = \"5s\"\n\
             [upstream.health_check]\ninterval = \"200ms\"\n",
            cert = pki.cert,
            key = pki.key,
        );
        ProxyBuilder {
            pki,
            config: base.parse().unwrap(),
            env: Vec::new(),
            files: Vec::new(),
            prepare: Vec::new(),
            listen: None,
        }
    }

    /// Listen for agents on `addr` (a loopback address and a port another proxy may hold on
    /// another address) instead of a free port on 127.0.0.1.
    pub fn listen_on(mut self, addr: std::net::SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Merge a TOML fragment (whole sections) into the config.
    pub fn config(mut self, fragment: &str) -> Self {
        let table: toml::Table = fragment
            .parse()
            .unwrap_or_else(|e| panic!("test config fragment is not TOML: {e}\n{fragment}"));
        merge(&mut self.config, table);
        self
    }

    /// Remove a key (`upstream.url`, to give `urls` or `discovery` instead).
    pub fn unset(mut self, dotted: &str) -> Self {
        let mut parts: Vec<&str> = dotted.split('.').collect();
        let last = parts.pop().unwrap();
        let mut table = &mut self.config;
        for p in parts {
            table = table.get_mut(p).and_then(|v| v.as_table_mut()).unwrap();
        }
        table.remove(last);
        self
    }

    /// `auth.secret_token = token`.
    pub fn token(self, token: &str) -> Self {
        self.config(&format!("[auth]\nsecret_token = {token:?}\n"))
    }

    /// API keys on, from `keys.toml` beside the config.
    pub fn api_keys(self) -> Self {
        self.config(API_KEYS)
    }

    /// An environment variable for the proxy process (never the test process); its value is
    /// treated as a secret.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        register_secret(value);
        self.env.push((name.into(), value.into()));
        self
    }

    /// A file written beside the config before the proxy starts.
    pub fn file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.into(), contents.into()));
        self
    }

    /// Work in the config directory before the proxy starts (API keys made with the CLI…).
    pub fn prepare(mut self, f: impl FnOnce(&Path) + 'a) -> Self {
        self.prepare.push(Box::new(f));
        self
    }

    pub fn start(self) -> Proxy {
        register_config_secrets(&self.config);
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in &self.files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        for f in self.prepare {
            f(dir.path());
        }
        let mut dir = Some(dir);
        // Started once. Only a listener address found taken (by something outside this test
        // run) is tried again, on other ports; any other failure — a crash, a config error,
        // not ready in time — fails the test at once with the proxy's log.
        for _attempt in 0..3 {
            let listen = self
                .listen
                .unwrap_or_else(|| ([127, 0, 0, 1], free_port()).into());
            let (port, admin_port) = (listen.port(), free_port());
            let mut config = self.config.clone();
            merge(
                &mut config,
                format!(
                    "[server]\nlisten = \"{listen}\"\n\
                     [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n"
                )
                .parse()
                .unwrap(),
            );
            let d = dir.take().unwrap();
            let config_path = d.path().join("proxy.toml");
            std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
            let log = d.path().join("proxy.log");
            let child = command_tied_to_test(BIN)
                .args(["run", "--config"])
                .arg(&config_path)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdout(std::fs::File::create(d.path().join("proxy.stdout")).unwrap())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let mut proxy = Proxy {
                host: listen.ip(),
                port,
                admin_port,
                dir: d,
                log,
                child,
                ca_pem: self.pki.ca_pem.clone(),
            };
            match proxy.wait_ready(Duration::from_secs(20)) {
                Ready::Yes => return proxy,
                Ready::AddressTaken if self.listen.is_none() => {
                    let _ = proxy.child.wait();
                    dir = Some(std::mem::replace(
                        &mut proxy.dir,
                        tempfile::tempdir().unwrap(),
                    ));
                }
                failed => {
                    let _ = proxy.child.kill();
                    let _ = proxy.child.wait();
                    let why = match failed {
                        Ready::Exited(status) => format!("exited with {status}"),
                        Ready::AddressTaken => "its fixed listen address is taken".into(),
                        _ => "not listening after 20 s".into(),
                    };
                    // Panicking with `proxy` alive: its drop, during the unwind, skips the
                    // secret scan of a log shown here.
                    panic!("the proxy did not start: {why}\n{}", proxy.log_text());
                }
            }
        }
        panic!("the proxy's listener addresses were taken three times");
    }
}

/// How [`Proxy::wait_ready`] ended.
enum Ready {
    Yes,
    /// It exited because a listener address was in use.
    AddressTaken,
    /// It exited for another reason.
    Exited(std::process::ExitStatus),
    /// Still not listening when the time was up.
    TimedOut,
}

/// The real proxy binary, running with a config written for the test.
pub struct Proxy {
    /// The agents' listener's address and port.
    pub host: std::net::IpAddr,
    pub port: u16,
    /// The admin listener (health, readiness, metrics).
    pub admin_port: u16,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    child: Child,
    pub ca_pem: String,
}

impl Proxy {
    /// A proxy in front of `upstream` (a URL) with the harness's defaults.
    pub fn builder<'a>(pki: &'a Pki, upstream: &str) -> ProxyBuilder<'a> {
        ProxyBuilder::new(pki, upstream)
    }

    fn wait_ready(&mut self, limit: Duration) -> Ready {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return if self.log_text().contains("cannot listen on") {
                    Ready::AddressTaken
                } else {
                    Ready::Exited(status)
                };
            }
            // The port answers, and it is this proxy that holds it (not a process outside
            // the test run that listens there; this one then fails to bind and exits).
            if TcpStream::connect((self.host, self.port)).is_ok()
                && listens_on(self.child.id(), (self.host, self.port).into())
            {
                return Ready::Yes;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ready::TimedOut
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait (bounded) for the process to exit; its exit status, `None` if it did not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `http://127.0.0.1:<admin port>`
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// Send a signal (`HUP`, `TERM`…) to the proxy.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// The test CA as a file, for curl and Python.
    pub fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        if !path.exists() {
            std::fs::write(&path, &self.ca_pem).unwrap();
        }
        path
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Every test's logs are searched for every secret the suite knows.
        if !std::thread::panicking() {
            assert_no_secret_in(&self.log_text(), "the proxy's log");
            let stdout = std::fs::read_to_string(self.dir.path().join("proxy.stdout"));
            assert_no_secret_in(&stdout.unwrap_or_default(), "the proxy's stdout");
        }
    }
}

/// Run the binary with `args` (bounded to a minute); (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = bounded(BIN, Duration::from_secs(60))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Create an API key with the real CLI in `dir` (keys file `dir/keys.toml`); returns
/// (id, base64 credential). The CLI's config names the pool an `--upstream` asks for (the
/// CLI refuses a pool its config does not have).
pub fn create_key(dir: &Path, privileges: &str, extra: &[&str]) -> (String, String) {
    let cfg = dir.join("keys-cli.toml");
    let mut config = API_KEYS.to_string();
    if let Some(i) = extra.iter().position(|a| *a == "--upstream") {
        let pool = extra[i + 1];
        config.push_str(&format!(
            "[[upstreams]]\nname = {pool:?}\nurl = \"http://127.0.0.1:9\"\n"
        ));
    }
    std::fs::write(&cfg, config).unwrap();
    let mut args = vec![
        "apikey",
        "--config",
        cfg.to_str().unwrap(),
        "create",
        "--name",
        "test",
        "--json",
    ];
    args.extend(["--privileges", privileges]);
    args.extend_from_slice(extra);
    let (code, out, err) = run_cli(&args);
    assert_eq!(code, 0, "apikey create failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let credential = v["credentials"].as_str().unwrap().to_string();
    register_secret(&credential);
    register_secret(v["api_key"].as_str().unwrap());
    (v["id"].as_str().unwrap().to_string(), credential)
}
