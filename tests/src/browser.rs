//! A real browser for the tests of the HTML report and the dashboard: Debian's Chromium,
//! headless, driven over WebDriver by its ChromeDriver (`scripts/fetch-test-assets` installs
//! both from the package archive).
//!
//! The browser is started with a proxy that does not exist for everything but loopback, so a
//! page that reached for the network (a CDN, a font) would fail to load it; the tests also
//! check that a page requested no resource at all.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// Where ChromeDriver and Chromium are, as Debian's packages install them.
const DRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A ChromeDriver process and a session on it; both end when dropped (call `close` to end
/// the session cleanly).
pub struct Browser {
    driver: Driver,
    /// The WebDriver session.
    pub client: Client,
}

/// ChromeDriver in a process group of its own, with the browsers it starts: all killed when
/// dropped, also when a test fails half-way.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: signals the process group of a child this process started.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Runs `f` to completion on a runtime of its own (the tests are plain `#[test]`s).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

impl Browser {
    /// Starts ChromeDriver on a free port and opens a headless Chromium session with a
    /// `width` x `height` window.
    pub async fn start(width: u32, height: u32) -> Browser {
        for bin in [DRIVER, CHROMIUM] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: install Debian's chromium and chromium-driver \
                 (scripts/fetch-test-assets does)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver(driver);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", "--no-first-run", "--disable-extensions",
                    format!("--window-size={width},{height}"),
                    // Nothing but loopback is reachable: a page that needs the network breaks.
                    "--proxy-server=http://127.0.0.1:9",
                ]
            }
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session on Chromium");
        Browser { driver, client }
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Opens `url` and waits for `css` to be in the page.
    pub async fn open(&self, url: &str, css: &str) {
        self.client.goto(url).await.expect("navigates");
        self.wait_for(css).await;
    }

    /// Waits up to 20 s for `css` to be in the page.
    pub async fn wait_for(&self, css: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} did not appear: {e}"));
    }

    /// Clicks the element `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// Replaces the text of the input `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        e.clear().await.expect("clears");
        e.send_keys(text).await.expect("types");
    }

    /// Saves a screenshot of the window as `target/screenshots/<name>.png` (the README's
    /// pictures come from there); returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = crate::target_dir()
            .parent()
            .map(|t| t.join("screenshots"))
            .expect("target/");
        std::fs::create_dir_all(&dir).expect("mkdir screenshots");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("writes the screenshot");
        path
    }

    /// How many resources (scripts, styles, images, fonts, fetches) the page requested.
    pub async fn resources_requested(&self) -> u64 {
        self.js("return performance.getEntriesByType('resource').length;")
            .await
            .as_u64()
            .unwrap_or(u64::MAX)
    }

    /// Ends the session and the driver.
    pub async fn close(self) {
        let Browser { driver, client } = self;
        let _ = client.close().await;
        drop(driver);
    }
}
