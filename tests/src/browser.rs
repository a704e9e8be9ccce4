//! A real browser for the tests: Debian's headless `chromium`, driven over the DevTools
//! protocol through `--remote-debugging-pipe` (JSON messages ended by a NUL byte, read by
//! the browser on its fd 3 and written on its fd 4).
//!
//! The pipe needs no port, no websocket and no driver program: `sh` moves our two pipes to
//! fds 3 and 4 and execs the browser, so this stays safe Rust with `std` and `serde_json`.
//! Every wait has a deadline ([`CALL_TIMEOUT`]), and dropping the [`Browser`] closes it.
//!
//! The page's Content-Security-Policy forbids inline script, so the tests read the page with
//! `Runtime.evaluate`, which DevTools runs outside the page's CSP. What the browser reports
//! while pages load (console messages, exceptions, `Log` entries such as CSP violations) is
//! kept in [`Browser::reports`].

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::tools;

/// How long one DevTools call, or one wait for a page, may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Installed in every document before its own content: records the page's
/// `securitypolicyviolation` events, which DevTools then reads back.
const CSP_WATCH: &str = "window.__cspViolations = [];\
    document.addEventListener('securitypolicyviolation', (e) => \
    window.__cspViolations.push(e.violatedDirective + ' blocked ' + e.blockedURI));";

/// A headless chromium with one page (tab) open, driven over the DevTools pipe.
pub struct Browser {
    child: Child,
    to_browser: ChildStdin,
    from_browser: Receiver<Value>,
    session: String,
    next_id: u64,
    reports: Vec<String>,
    stderr: PathBuf,
    // Held for its lifetime: the profile directory.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromium headless with a fresh profile and opens one blank page.
    ///
    /// Panics naming the Debian package when chromium is not installed.
    pub fn launch() -> Browser {
        let chromium = tools::require("chromium", "chromium");
        let profile = tempfile::tempdir().expect("a profile directory");
        let stderr = profile.path().join("chromium.stderr");
        let mut child = Command::new("sh")
            // fd 3 ← our stdin pipe, fd 4 → our stdout pipe; stdout itself goes to stderr.
            .args(["-c", r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#])
            .arg(&chromium)
            .args([
                "--headless=new",
                // Root in CI containers: chromium refuses to start sandboxed as root.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1000,1200",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("chromium's stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        let to_browser = child.stdin.take().expect("chromium's pipe in");
        let from = child.stdout.take().expect("chromium's pipe out");
        let (sender, from_browser) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from);
            let mut message = Vec::new();
            // Ends when the browser closes the pipe or the Browser is dropped.
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                if message.last() == Some(&0) {
                    message.pop();
                }
                let value = serde_json::from_slice(&message).unwrap_or_else(
                    |e| json!({"unparsed": format!("{e}: {}", String::from_utf8_lossy(&message))}),
                );
                if sender.send(value).is_err() {
                    break;
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            to_browser,
            from_browser,
            session: String::new(),
            next_id: 0,
            reports: Vec::new(),
            stderr,
            _profile: profile,
        };
        let target = browser.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({}));
        }
        browser.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": CSP_WATCH}),
        );
        browser
    }

    /// Calls `method` on the page; its result. Panics on a protocol error or after
    /// [`CALL_TIMEOUT`].
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|error| panic!("{method} failed: {error}"))
    }

    /// Calls `method` on the page; its result, or the error chromium answered with.
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let session = self.session.clone();
        self.send(Some(&session), method, params)
    }

    /// Calls `method` on the browser itself (the `Target` domain).
    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(None, method, params)
            .unwrap_or_else(|error| panic!("{method} failed: {error}"))
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        if let Err(e) = self.to_browser.write_all(&bytes) {
            panic!("sending {method} to chromium: {e}\n{}", self.stderr_text());
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = match self.from_browser.recv_timeout(left) {
                Ok(reply) => reply,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("chromium did not answer {method} within {CALL_TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "chromium closed its DevTools pipe during {method}\n{}",
                    self.stderr_text()
                ),
            };
            if reply["id"] == json!(id) {
                if let Some(error) = reply.get("error") {
                    return Err(error.clone());
                }
                return Ok(reply["result"].clone());
            }
            self.note_event(&reply);
        }
    }

    /// Keeps what an event says went wrong: a console error or warning, an uncaught
    /// exception, a `Log` entry of level warning or error (CSP violations are these).
    fn note_event(&mut self, event: &Value) {
        let params = &event["params"];
        let report = match event["method"].as_str() {
            Some("Runtime.consoleAPICalled")
                if matches!(
                    params["type"].as_str(),
                    Some("error" | "warning" | "assert")
                ) =>
            {
                Some(format!("console.{}: {}", params["type"], params["args"]))
            }
            Some("Runtime.exceptionThrown") => {
                Some(format!("exception: {}", params["exceptionDetails"]))
            }
            Some("Log.entryAdded")
                if matches!(params["entry"]["level"].as_str(), Some("error" | "warning")) =>
            {
                let entry = &params["entry"];
                Some(format!(
                    "log {} {} ({}): {}",
                    entry["level"], entry["source"], entry["url"], entry["text"]
                ))
            }
            _ if event.get("unparsed").is_some() => Some(event["unparsed"].to_string()),
            _ => None,
        };
        self.reports.extend(report);
    }

    /// The problems the browser reported so far (see [`Browser::launch`]), after a round trip
    /// so that events sent before now have arrived.
    pub fn reports(&mut self) -> Vec<String> {
        self.evaluate("0");
        self.reports.clone()
    }

    /// The CSP violations the page's `securitypolicyviolation` listener recorded.
    pub fn csp_violations(&mut self) -> Vec<String> {
        let value = self.evaluate("window.__cspViolations || ['the CSP watcher is missing']");
        value
            .as_array()
            .map(|all| all.iter().map(ToString::to_string).collect())
            .unwrap_or_else(|| vec![format!("not a list: {value}")])
    }

    /// Evaluates `expression` in the page (outside its CSP); its value, as JSON.
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("evaluating {expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Clicks the first element `selector` matches as a user would: scrolled into view, a
    /// left mouse press and release at its centre. Panics if nothing matches.
    pub fn click(&mut self, selector: &str) {
        let selector_json = json!(selector);
        let centre = self.evaluate(&format!(
            "(() => {{ const e = document.querySelector({selector_json}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (Some(x), Some(y)) = (centre[0].as_f64(), centre[1].as_f64()) else {
            panic!("nothing to click: no element matches {selector}");
        };
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Navigates to `url` and waits until that document has loaded.
    pub fn open(&mut self, url: &str) {
        let navigated = self.call("Page.navigate", json!({"url": url}));
        if let Some(error) = navigated.get("errorText") {
            panic!("navigating to {url}: {error}");
        }
        self.wait_for_page(url);
    }

    /// Waits until the page's address is `url` and its document has loaded.
    pub fn wait_for_page(&mut self, url: &str) {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let probe =
            json!({"expression": "[location.href, document.readyState]", "returnByValue": true});
        loop {
            // A probe that meets the navigation itself is answered "Inspected target
            // navigated or closed": not loaded yet, like any other answer but the one awaited.
            let state = match self.try_call("Runtime.evaluate", probe.clone()) {
                Ok(result) => result["result"]["value"].clone(),
                Err(error) => error,
            };
            if state == json!([url, "complete"]) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page did not load {url} within {CALL_TIMEOUT:?}: {state}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Saves a PNG of the whole page (not only the window) at `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let metrics = self.call("Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let (width, height) = (
            size["width"].as_f64().unwrap_or(1000.0),
            // Bounded, whatever the page's length.
            size["height"].as_f64().unwrap_or(1200.0).min(8000.0),
        );
        let shot = self.call(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot in base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    fn stderr_text(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("--- chromium's stderr ---\n{text}")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing asks nicely; the pipe closing and then the kill make sure.
        let _ = self
            .to_browser
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\"}\0");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the tests keep what they produce for people to look at (screenshots):
/// `target/test-artifacts/`, next to the profile directories (`target/debug`).
pub fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "deps"))
        .and_then(|deps| deps.parent()?.parent())
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
        .join("test-artifacts")
}
