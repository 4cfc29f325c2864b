//! Starting the real `tributary` binary on free ports, and small HTTP helpers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Login, Packet};
use serde_json::{json, Value};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct-horse-battery";

/// A running server process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `127.0.0.1:PORT` of the MQTT listener.
    pub mqtt: String,
    /// Everything the server wrote to stdout.
    pub stdout: Arc<Mutex<String>>,
    /// Every log line (JSON) so far.
    pub logs: Arc<Mutex<Vec<String>>>,
}

/// How to start a server.
pub struct Options<'a> {
    pub data_dir: &'a Path,
    pub env: Vec<(&'a str, String)>,
    pub args: Vec<String>,
    pub admin_password: Option<&'a str>,
    /// The process's file limit (`ulimit -n`), when the test sets one.
    pub file_limit: Option<u64>,
}

impl<'a> Options<'a> {
    pub fn new(data_dir: &'a Path) -> Self {
        Self {
            data_dir,
            env: Vec::new(),
            args: Vec::new(),
            admin_password: Some(ADMIN_PASSWORD),
            file_limit: None,
        }
    }
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tributary"))
}

impl Server {
    /// Starts a server on a free port with default test options.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(Options::new(data_dir))
    }

    /// Starts a server and waits until it logs its bound address.
    pub fn start_with(opts: Options<'_>) -> Server {
        let mut cmd = match opts.file_limit {
            None => Command::new(binary()),
            Some(n) => {
                // The shell lowers the limit and becomes the server (same PID).
                let mut c = Command::new("bash");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                    .arg(binary());
                c
            }
        };
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(opts.data_dir)
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--mqtt-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(&opts.args)
            .env_remove("TRIBUTARY_ADMIN_PASSWORD")
            .env("TRIBUTARY_ADMIN_EMAIL", ADMIN_EMAIL)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !opts.args.iter().any(|a| a == "--log") {
            cmd.args(["--log", "info"]);
        }
        if let Some(pw) = opts.admin_password {
            cmd.env("TRIBUTARY_ADMIN_PASSWORD", pw);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tributary");
        let stdout = Arc::new(Mutex::new(String::new()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let out = child.stdout.take().unwrap();
            let stdout = stdout.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let mut s = stdout.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        {
            let err = child.stderr.take().unwrap();
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        let msg = v["fields"]["message"].as_str().unwrap_or_default();
                        if msg == "http listening" || msg == "mqtt listening" {
                            let addr = v["fields"]["addr"].as_str().unwrap_or_default().to_string();
                            let _ = tx.send((msg == "mqtt listening", addr));
                        }
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let (mut http, mut mqtt) = (None, None);
        while http.is_none() || mqtt.is_none() {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((true, addr)) => mqtt = Some(addr),
                Ok((false, addr)) => http = Some(addr),
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "server did not start; logs:\n{}",
                        logs.lock().unwrap().join("\n")
                    );
                }
            }
        }
        let addr = http.unwrap_or_default();
        Server {
            child,
            mqtt: mqtt.unwrap_or_default(),
            base: format!("http://{addr}"),
            stdout,
            logs,
        }
    }

    /// The `host:port` the server listens on.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Logs in as the admin and returns the access token.
pub async fn login(base: &str) -> String {
    let res = client()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

/// Creates a device; returns (id, access token).
pub async fn create_device(base: &str, token: &str, name: &str) -> (String, String) {
    let res = client()
        .post(format!("{base}/api/v1/devices"))
        .bearer_auth(token)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "create device");
    let body: Value = res.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_string(),
        body["access_token"].as_str().unwrap().to_string(),
    )
}

/// The server's `/metrics` text.
pub async fn metrics_text(base: &str) -> String {
    client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Posts a telemetry body with a device token; returns the status and body.
pub async fn post_telemetry(
    base: &str,
    device_token: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let res = client()
        .post(format!("{base}/api/v1/{device_token}/telemetry"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// GETs a path with a bearer token and returns (status, JSON body).
pub async fn get_json(base: &str, token: &str, path: &str) -> (u16, Value) {
    let res = client()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A client acting with one bearer credential.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.to_string(),
            token: token.to_string(),
            http: client(),
        }
    }

    /// Sends a request with an optional JSON body; returns status and JSON (or text) body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("PATCH", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None).await
    }

    /// POSTs and insists on `status`, returning the body.
    pub async fn must(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
        let (st, v) = self.call(method, path, body).await;
        assert_eq!(st, status, "{method} {path}: {v}");
        v
    }
}

/// Creates an API key of `scope` named `name`; returns its secret.
pub async fn api_key(api: &Api, name: &str, scope: &str) -> String {
    api.must(
        "POST",
        "/api/v1/api-keys",
        Some(json!({"name": name, "scope": scope})),
        201,
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Posts an InfluxDB v2 line-protocol body with an API key.
pub async fn write_lines(
    base: &str,
    key: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client()
        .post(format!("{base}/api/v2/write"))
        .header("authorization", format!("Token {key}"))
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Logs in with email and password; returns the session body.
pub async fn login_as(base: &str, email: &str, password: &str) -> Value {
    let res = client()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "login {email}");
    res.json().await.unwrap()
}

/// Invites `email` with `role` as `inviter` and accepts; returns the new user's access token.
pub async fn invite_and_accept(inviter: &Api, email: &str, role: &str) -> String {
    let inv = inviter
        .must(
            "POST",
            "/api/v1/invites",
            Some(json!({"email": email, "role": role})),
            201,
        )
        .await;
    let anon = Api::new(&inviter.base, "");
    let session = anon
        .must(
            "POST",
            "/api/v1/auth/accept-invite",
            Some(json!({"token": inv["token"], "password": "a-long-enough-password"})),
            200,
        )
        .await;
    session["access_token"].as_str().unwrap().to_string()
}

/// Creates another tenant as `api`'s user and returns a session switched to it.
pub async fn second_tenant(api: &Api, name: &str) -> Api {
    let t = api
        .must("POST", "/api/v1/tenants", Some(json!({"name": name})), 201)
        .await;
    let switched = api
        .must(
            "POST",
            "/api/v1/auth/switch",
            Some(json!({"tenant_id": t["id"]})),
            200,
        )
        .await;
    Api::new(&api.base, switched["access_token"].as_str().unwrap())
}

/// Raw MQTT 3.1.1 over a blocking socket.
pub struct Raw {
    pub sock: TcpStream,
    buf: BytesMut,
}

impl Raw {
    pub fn connect(addr: &str, client_id: &str, user: &str, clean: bool) -> (Raw, Packet) {
        Self::connect_with(addr, client_id, user, clean, 30, "")
    }

    pub fn connect_with(
        addr: &str,
        client_id: &str,
        user: &str,
        clean: bool,
        keep_alive: u16,
        password: &str,
    ) -> (Raw, Packet) {
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut raw = Raw {
            sock,
            buf: BytesMut::new(),
        };
        let mut c = Connect::new(client_id);
        c.clean_session = clean;
        c.keep_alive = keep_alive;
        c.login = Some(Login::new(user, password));
        raw.send(Packet::Connect(c));
        let ack = raw.read().expect("CONNACK");
        (raw, ack)
    }

    pub fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        p.write(&mut out, 1 << 20).unwrap();
        self.sock.write_all(&out).unwrap();
    }

    /// The next packet, or None when the server closed the connection.
    pub fn read(&mut self) -> Option<Packet> {
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Some(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("bad packet from server: {e}"),
            }
            let mut chunk = [0u8; 4096];
            match self.sock.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}
