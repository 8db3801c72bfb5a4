//! `perf dashboard`: a local web app over an outputs directory.
//!
//! Pages: the list of benchmarks (`/`), a benchmark's report (`/report?dir=`), the comparison
//! of chosen benchmarks (`/compare?dir=A&dir=B`), a live view of a benchmark that is running
//! (`/live?dir=`, polling `/api/live?dir=` once a second), and a form that starts a run
//! (`/new`), and a benchmark's log (`/log?dir=`). Every page is made from the files (see `perf-report`), so a run started from the
//! command line shows up as one started here does. The pages are served from this binary:
//! no CDN, and the one script (the live view's polling) is inline.
//!
//! A run started from the form is the `perf` binary in a child process, with the form's flags
//! checked first by the host's own parser and planner (the same errors as on the command
//! line), and `--outputs-dir <outputs>/<time> --no-timestamp --enable-progress-tracker`
//! added, so its directory is known before it starts and its progress can be followed.
//! `dir` parameters are paths relative to the outputs directory; anything that would leave it
//! is refused.

mod form;
mod live;
mod pages;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::routing::{get, post};
use axum::Router;

/// Checks a run's flags (without the program name) as `perf` would: `Err` holds the
/// message to show.
pub type Validator = Arc<dyn Fn(&[String]) -> Result<(), String> + Send + Sync>;

/// The redaction rule of everything perf writes.
pub type Redactor = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// What the dashboard serves and how it starts runs.
#[derive(Clone)]
pub struct Config {
    /// The outputs directory.
    pub outputs: PathBuf,
    /// The `perf` binary that runs started from the page use.
    pub perf: PathBuf,
    /// Flags every run started from the page gets first (the dashboard's `--plugin`s).
    pub base_args: Vec<String>,
    /// Checks a run's flags before it starts.
    pub validate: Validator,
    /// Masks secrets in every page.
    pub redact: Redactor,
}

/// A run this dashboard started.
struct Started {
    child: tokio::process::Child,
    exit: Option<i32>,
}

struct App {
    config: Config,
    started: Mutex<HashMap<String, Started>>,
}

type State = axum::extract::State<Arc<App>>;

/// Serves the dashboard on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, config: Config) -> std::io::Result<()> {
    let app = Arc::new(App {
        config,
        started: Mutex::new(HashMap::new()),
    });
    let router = Router::new()
        .route("/", get(pages::index))
        .route("/report", get(pages::report))
        .route("/compare", get(pages::compare))
        .route("/live", get(live::page))
        .route("/log", get(pages::log))
        .route("/api/live", get(live::api))
        .route("/api/runs", get(pages::runs_json))
        .route("/new", get(form::page).post(form::submit))
        .route("/stop", post(live::stop))
        .with_state(app);
    axum::serve(listener, router).await
}

impl App {
    /// `rel` under the outputs directory, when it names a directory there.
    fn resolve(&self, rel: &str) -> Option<PathBuf> {
        let rel = Path::new(rel);
        if rel.as_os_str().is_empty()
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return None;
        }
        let path = self.config.outputs.join(rel);
        path.is_dir().then_some(path)
    }

    /// The benchmark directory `rel` names: itself, or the one benchmark inside it (a run
    /// started here is `<time>/`, perf makes `<time>/<name>/` in it).
    fn benchmark_dir(&self, rel: &str) -> Option<PathBuf> {
        let path = self.resolve(rel)?;
        let inside = perf_report::load::benchmarks_under(&path);
        if inside.first() == Some(&path) || inside.len() != 1 {
            return Some(path);
        }
        inside.into_iter().next()
    }

    /// `path` relative to the outputs directory, with `/` separators (for links).
    fn relative(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.config.outputs).unwrap_or(path);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The exit code of a run started here, once it ended (None while it runs, or for a run
    /// not started here).
    fn exit_of(&self, key: &str) -> Option<Option<i32>> {
        let mut started = self.started.lock().ok()?;
        let s = started.get_mut(key)?;
        if s.exit.is_none() {
            if let Ok(Some(status)) = s.child.try_wait() {
                s.exit = Some(status.code().unwrap_or(-1));
            }
        }
        Some(s.exit)
    }
}

/// The navigation bar every page carries.
fn nav() -> String {
    "<nav class=\"nav\"><a href=\"/\" id=\"nav-runs\">perf dashboard</a><a href=\"/\">Runs</a>\
     <a href=\"/new\" id=\"nav-new\">New run</a></nav>"
        .to_string()
}

/// A template environment with the dashboard's pages and the report's style sheet.
fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    for (name, text) in [
        ("layout.html", include_str!("../templates/layout.html")),
        ("index.html", include_str!("../templates/index.html")),
        ("live.html", include_str!("../templates/live.html")),
        ("new.html", include_str!("../templates/new.html")),
        ("message.html", include_str!("../templates/message.html")),
        ("log.html", include_str!("../templates/log.html")),
        ("style.css", perf_report::page::STYLE),
    ] {
        if let Err(e) = env.add_template(name, text) {
            panic!("the dashboard's template {name} does not parse: {e}");
        }
    }
    env
}

/// Renders `name` with `ctx`, redacted; a template error becomes the page's text.
fn render(app: &App, name: &str, ctx: minijinja::Value) -> axum::response::Html<String> {
    let html = match templates().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(h) => h,
        Err(e) => format!("<p>page not rendered: {e}</p>"),
    };
    axum::response::Html((app.config.redact)(&html))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(outputs: &Path) -> App {
        App {
            config: Config {
                outputs: outputs.to_path_buf(),
                perf: PathBuf::from("perf"),
                base_args: Vec::new(),
                validate: Arc::new(|_| Ok(())),
                redact: Arc::new(|s| s.to_string()),
            },
            started: Mutex::new(HashMap::new()),
        }
    }

    #[test]
    fn paths_outside_the_outputs_directory_are_refused() {
        let dir = std::env::temp_dir().join(format!("perf-dash-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).expect("mkdir");
        let a = app(&dir);
        assert_eq!(a.resolve("a/b"), Some(dir.join("a/b")));
        for bad in ["../etc", "/etc", "a/../..", "", "a/missing"] {
            assert_eq!(a.resolve(bad), None, "{bad}");
        }
        assert_eq!(a.relative(&dir.join("a/b")), "a/b");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_pages_render_with_links_encoded() {
        let env = templates();
        let entry = minijinja::context! { dir => "2026/a b", title => "a b", status => "running" };
        let html = env
            .get_template("index.html")
            .and_then(|t| t.render(minijinja::context! { nav => nav(), entries => vec![entry] }))
            .expect("renders");
        assert!(html.contains("/report?dir=2026&#x2f;a%20b"), "{html}");
        let html = env
            .get_template("live.html")
            .and_then(|t| t.render(minijinja::context! { nav => nav(), dir => "x\"</script>" }))
            .expect("renders");
        assert!(
            !html.contains("x\"</script>"),
            "the live page's script gets the dir as JSON"
        );
    }

    #[test]
    fn every_template_parses() {
        let env = templates();
        for name in [
            "index.html",
            "live.html",
            "new.html",
            "message.html",
            "log.html",
        ] {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
    }
}
