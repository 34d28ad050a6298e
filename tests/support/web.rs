//! The web tests' tools: a `punctual web` (or `promote --web-addr`) process on a free port,
//! and a headless Chromium driven over the WebDriver protocol (Debian's `chromium` and
//! `chromium-driver`: `.ci/run` installs them; a test without them fails loudly).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cli::{punctual, Owned};
use super::{free_port, RedisServer};

/// A `punctual` process serving the site, killed when dropped.
pub struct Site {
    pub child: Owned,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    log_path: PathBuf,
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log_path);
    }
}

impl Site {
    /// `punctual web --addr 127.0.0.1:PORT ARGS`, with `envs`, once `/healthz` answers.
    pub async fn web(redis: &RedisServer, args: &[&str], envs: &[(&str, &str)]) -> Site {
        Site::start(redis, &["web", "--addr"], args, envs).await
    }

    /// `punctual promote --web-addr 127.0.0.1:PORT ARGS`, once `/healthz` answers.
    pub async fn promoter(redis: &RedisServer, args: &[&str], envs: &[(&str, &str)]) -> Site {
        Site::start(
            redis,
            &["promote", "--heartbeat", "1s", "--web-addr"],
            args,
            envs,
        )
        .await
    }

    async fn start(
        redis: &RedisServer,
        head: &[&str],
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Site {
        let addr = format!("127.0.0.1:{}", free_port());
        // Logs go to a file, not a pipe nobody reads (a full pipe would stall the server).
        let log_path = std::env::temp_dir().join(format!(
            "punctual-web-{}-{}.log",
            std::process::id(),
            addr.replace([':', '.'], "-")
        ));
        let log = std::fs::File::create(&log_path).expect("a log file");
        let mut cmd = punctual(redis);
        cmd.args(head)
            .arg(&addr)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = Owned::from(cmd.spawn().expect("start punctual"));
        let url = format!("http://{addr}");
        let client = http();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("{url}/healthz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("punctual {head:?} exited with {status}: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "{url}/healthz did not answer in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Site {
            child,
            url,
            log_path,
        }
    }

    /// `URL/api/v1PATH`
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }
}

/// An HTTP client that never goes through a proxy.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client")
}

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// A headless Chromium under a chromedriver of its own, in a process group of its own that
/// is killed when the browser is dropped, with a profile directory of its own (so a test can
/// look in /proc for anything left behind).
pub struct Browser {
    client: reqwest::Client,
    session: String,
    driver: Owned,
    pub profile: PathBuf,
}

impl Browser {
    pub async fn start() -> Browser {
        let driver_bin = find_binary(&["chromedriver"]).unwrap_or_else(|| {
            panic!("chromedriver not found: install Debian's chromium and chromium-driver (.ci/run does)")
        });
        let chrome = find_binary(&["chromium", "chromium-browser", "google-chrome"])
            .unwrap_or_else(|| {
                panic!("chromium not found: install Debian's chromium (.ci/run does)")
            });
        let port = free_port();
        let mut cmd = Command::new(driver_bin);
        cmd.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = Owned::from(cmd.spawn().expect("start chromedriver"));
        let client = http();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get(format!("{base}/status")).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile =
            std::env::temp_dir().join(format!("punctual-chrome-{port}-{}", std::process::id()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1366,1000", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-default-apps",
                    "--lang=en-US", format!("--user-data-dir={}", profile.display()),
                ],
            },
            "timeouts": {"implicit": 20000, "script": 30000, "pageLoad": 30000},
        }}});
        let reply: Value = client
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session reply");
        let id = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {reply}"));
        Browser {
            client,
            session: format!("{base}/session/{id}"),
            driver,
            profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.session));
        request = request.json(&body.unwrap_or_else(|| json!({})));
        let reply: Value = request
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("json");
        if let Some(error) = reply["value"]["error"].as_str() {
            panic!("webdriver {path}: {error}: {}", reply["value"]["message"]);
        }
        reply["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The first element matching `css`, waiting for it up to the implicit wait (10 s).
    pub async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        element_id(&v)
    }

    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array().into_iter().flatten().map(element_id).collect()
    }

    pub async fn click(&self, element: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            None,
        )
        .await;
    }

    pub async fn type_into(&self, element: &str, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn text(&self, element: &str) -> String {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    pub async fn attribute(&self, element: &str, name: &str) -> Option<String> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{element}/attribute/{name}"),
                None,
            )
            .await;
        v.as_str().map(str::to_owned)
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs `script`, which calls `arguments[arguments.length - 1](result)` when done.
    pub async fn run_async(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    pub async fn accept_alert(&self) {
        self.call(reqwest::Method::POST, "/alert/accept", None)
            .await;
    }

    /// Waits until the text of the first element matching `css` contains `needle`.
    pub async fn wait_for_text(&self, css: &str, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let found = self
                .run(
                    "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                    json!([css]),
                )
                .await;
            let text = found.as_str().unwrap_or_default().to_owned();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} did not show {needle:?} within {limit:?}; it shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = decode_base64(v.as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Ends the session (Chromium exits), then the driver.
    pub async fn quit(self) {
        let _ = self.client.delete(&self.session).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver's whole process group: chromedriver and any Chromium still running.
        // `--` before the negative id: without it, `kill -KILL -PGID` of some `kill`s reads
        // the group as an option and signals every process (`kill(-1)`).
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status();
    }
}

fn element_id(v: &Value) -> String {
    v.as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("not an element: {v}"))
        .to_owned()
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | (u32::from(value(c)) << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// Processes whose command line mentions `needle` (leftovers of a browser or a server).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    found
}
