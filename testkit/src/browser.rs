//! A real headless Chromium, driven over WebDriver: Debian's `chromium`
//! and its matching `chromedriver` (package `chromium-driver`), started on
//! a free loopback port for one test, with a throw-away profile. Missing
//! either program fails with a message saying what to install
//! (`scripts/test.sh` installs both).
//!
//! Element lookups and texts go through the page's own DOM
//! (`querySelector`, `textContent`), so they see what the page holds even
//! for rows the browser has not rendered yet; clicks and typing go through
//! WebDriver, as a user's would, and so do drags. Screenshots are written as
//! PNG files into a directory the test names; files the page downloads land
//! in the profile's own download directory ([`Browser::wait_download`]).
//! Traffic goes to loopback only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::Value as Json;

use crate::error::{io, Error, Result};
use crate::ports::free_port;
use crate::process::Proc;
use crate::wait::{Step, Wait};

/// The programs the browser tests need, and where Debian puts them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser window, closed (and chromedriver stopped) on [`Browser::close`]
/// or drop.
pub struct Browser {
    client: Client,
    _driver: Proc,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    downloads: PathBuf,
}

impl Browser {
    /// Starts chromedriver (its log in `dir`) and a headless Chromium of
    /// 1400x1000 that accepts the test cluster's own certificates;
    /// screenshots go to `shots`.
    pub async fn start(dir: &Path, shots: &Path) -> Result<Browser> {
        for program in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(program).exists() {
                return Err(Error::Setup(format!(
                    "{program} is missing: the web UI's browser tests need Debian's chromium and \
                     chromium-driver (apt-get install chromium chromium-driver; scripts/test.sh \
                     installs them)"
                )));
            }
        }
        std::fs::create_dir_all(shots).map_err(io(format!("creating {}", shots.display())))?;
        let port = free_port();
        let mut driver = Proc::new("chromedriver".into(), dir.join("chromedriver.log"));
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1");
        driver.spawn(cmd, true)?;
        let profile = tempfile::tempdir().map_err(io("making a browser profile"))?;
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads)
            .map_err(io(format!("creating {}", downloads.display())))?;
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--ignore-certificate-errors",
                    "--window-size=1400,1000", "--no-first-run",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            },
        });
        let caps = caps.as_object().cloned().unwrap_or_default();
        let url = format!("http://127.0.0.1:{port}");
        let client = Wait::new(
            "chromedriver to start a browser session",
            Duration::from_secs(30),
        )
        .every(Duration::from_millis(200))
        .until_async(|| {
            let (url, caps) = (url.clone(), caps.clone());
            async move {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                match ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(&url)
                    .await
                {
                    Ok(c) => Step::Done(c),
                    Err(e) => Step::Pending(Some(e.to_string())),
                }
            }
        })
        .await?;
        Ok(Browser {
            client,
            _driver: driver,
            _profile: profile,
            shots: shots.to_path_buf(),
            downloads,
        })
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .map_err(|e| webdriver(format!("going to {url}"), e))
    }

    /// Runs `js` (a function body: `return ...`) in the page with `args`.
    pub async fn script(&self, js: &str, args: Vec<Json>) -> Result<Json> {
        self.client
            .execute(js, args)
            .await
            .map_err(|e| webdriver(format!("running {js}"), e))
    }

    /// Calls `path` from the page, as its own scripts would (same origin,
    /// the session cookie attached): `method`, the raw `body` (sent as
    /// JSON), extra `headers`. The status and the body parsed as JSON
    /// (`null` when it is not JSON).
    pub async fn fetch(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: Json,
    ) -> Result<(u16, Json)> {
        let js = "const [method, path, body, headers, done] = arguments; \
                  fetch(path, {method, body: body === null ? undefined : body, \
                    credentials: 'same-origin', \
                    headers: Object.assign({'Content-Type': 'application/json'}, headers)}) \
                  .then(async r => done([r.status, await r.text()])) \
                  .catch(e => done([0, String(e)]));";
        let args = vec![method.into(), path.into(), body.into(), headers];
        let answer = self
            .client
            .execute_async(js, args)
            .await
            .map_err(|e| webdriver(format!("{method} {path} from the page"), e))?;
        let status = answer[0].as_u64().unwrap_or(0) as u16;
        let text = answer[1].as_str().unwrap_or_default();
        Ok((status, serde_json::from_str(text).unwrap_or(Json::Null)))
    }

    /// The `textContent` of the first element matching `css`, if any.
    pub async fn text(&self, css: &str) -> Result<Option<String>> {
        let v = self
            .script(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                vec![css.into()],
            )
            .await?;
        Ok(v.as_str().map(str::to_string))
    }

    /// An attribute of the first element matching `css`, if both exist.
    pub async fn attr(&self, css: &str, name: &str) -> Result<Option<String>> {
        let v = self
            .script(
                "const e = document.querySelector(arguments[0]); \
                 return e ? e.getAttribute(arguments[1]) : null;",
                vec![css.into(), name.into()],
            )
            .await?;
        Ok(v.as_str().map(str::to_string))
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> Result<usize> {
        let v = self
            .script(
                "return document.querySelectorAll(arguments[0]).length;",
                vec![css.into()],
            )
            .await?;
        Ok(v.as_u64().unwrap_or(0) as usize)
    }

    /// Waits until an element matches `css`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<()> {
        self.wait_text(css, timeout, |_| true).await.map(|_| ())
    }

    /// Waits until the text of the element matching `css` satisfies `ok`;
    /// the text then. A timeout says what the element last held.
    pub async fn wait_text(
        &self,
        css: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String> {
        Wait::new(format!("the page's {css}"), timeout)
            .every(Duration::from_millis(100))
            .until_async(|| async {
                match self.text(css).await {
                    Ok(Some(t)) if ok(&t) => Step::Done(t),
                    Ok(Some(t)) => Step::Pending(Some(format!("text {t:?}"))),
                    Ok(None) => Step::Pending(Some(format!(
                        "no such element; the page: {}",
                        self.page_summary().await
                    ))),
                    Err(e) => Step::Abort(e),
                }
            })
            .await
    }

    /// Where the page is and what it says (its URL, load state and the
    /// start of its text), for a timeout's message.
    pub async fn page_summary(&self) -> String {
        let js = "return `${location.href} (${document.readyState}): ` + \
                  (document.body ? document.body.innerText : '(no body)').slice(0, 400);";
        match self.script(js, vec![]).await {
            Ok(v) => v.as_str().unwrap_or_default().replace('\n', " | "),
            Err(e) => format!("(could not read the page: {e})"),
        }
    }

    /// The element matching `css`, as WebDriver finds it (for acting on it
    /// as a user would); an error naming `css` when there is none.
    async fn find(&self, css: &str) -> Result<fantoccini::elements::Element> {
        self.client
            .find(Locator::Css(css))
            .await
            .map_err(|e| webdriver(format!("finding {css}"), e))
    }

    /// Clicks the element matching `css` (as a user: WebDriver scrolls it
    /// into view first).
    pub async fn click(&self, css: &str) -> Result<()> {
        self.find(css)
            .await?
            .click()
            .await
            .map_err(|e| webdriver(format!("clicking {css}"), e))
    }

    /// Drags the mouse across the element matching `css`, horizontally
    /// through its middle, from `from` to `to` (fractions of its width,
    /// 0 the left edge), the left button held, in steps as a hand would.
    pub async fn drag(&self, css: &str, from: f64, to: f64) -> Result<()> {
        use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
        let element = self.find(css).await?;
        let width = self
            .script(
                "return document.querySelector(arguments[0]).clientWidth;",
                vec![css.into()],
            )
            .await?
            .as_f64()
            .unwrap_or(0.0);
        let step = Some(Duration::from_millis(50));
        let mut mouse = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element,
                duration: None,
                x: (from - 0.5) * width,
                y: 0.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            });
        for _ in 0..5 {
            let x = (to - from) * width / 5.0;
            mouse = mouse.then(PointerAction::MoveBy {
                duration: step,
                x,
                y: 0.0,
            });
        }
        let mouse = mouse.then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
        self.client
            .perform_actions(mouse)
            .await
            .map_err(|e| webdriver(format!("dragging across {css}"), e))
    }

    /// The browser's cookie `name` for the current page, as its attributes
    /// read: `HttpOnly`, `SameSite` (`Strict`, `Lax`, `None`) and `Secure`;
    /// `None` when there is none.
    pub async fn cookie(&self, name: &str) -> Result<Option<String>> {
        let all = self
            .client
            .get_all_cookies()
            .await
            .map_err(|e| webdriver("reading the cookies".into(), e))?;
        Ok(all.iter().find(|c| c.name() == name).map(|c| {
            let mut attrs = vec![];
            if c.http_only() == Some(true) {
                attrs.push("HttpOnly".to_string());
            }
            if let Some(same_site) = c.same_site() {
                attrs.push(format!("SameSite={same_site}"));
            }
            if c.secure() == Some(true) {
                attrs.push("Secure".to_string());
            }
            attrs.join("; ")
        }))
    }

    /// Waits for a finished download whose file name starts with `prefix`;
    /// its name and its text.
    pub async fn wait_download(&self, prefix: &str, timeout: Duration) -> Result<(String, String)> {
        Wait::new(format!("a download named {prefix}…"), timeout)
            .every(Duration::from_millis(100))
            .until_async(|| async {
                let names: Vec<String> = std::fs::read_dir(&self.downloads)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                let done = names
                    .iter()
                    .find(|n| n.starts_with(prefix) && !n.ends_with(".crdownload"));
                match done.map(|n| (n, std::fs::read_to_string(self.downloads.join(n)))) {
                    Some((n, Ok(text))) => Step::Done((n.clone(), text)),
                    _ => Step::Pending(Some(format!("files: {names:?}"))),
                }
            })
            .await
    }

    /// Replaces the text of the input matching `css` with `text`, typed.
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let e = self.find(css).await?;
        e.clear()
            .await
            .map_err(|e| webdriver(format!("clearing {css}"), e))?;
        e.send_keys(text)
            .await
            .map_err(|e| webdriver(format!("typing into {css}"), e))
    }

    /// Saves a screenshot of the window as `NAME.png`; its path.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self
            .client
            .screenshot()
            .await
            .map_err(|e| webdriver(format!("screenshot {name}"), e))?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).map_err(io(format!("writing {}", path.display())))?;
        Ok(path)
    }

    /// Ends the browser session.
    pub async fn close(self) -> Result<()> {
        self.client
            .close()
            .await
            .map_err(|e| webdriver("closing the browser".into(), e))
    }
}

fn webdriver(what: String, e: impl std::fmt::Display) -> Error {
    Error::Setup(format!("browser: {what}: {e}"))
}
