//! Files from ModelScope (the default, as in evalscope) or Hugging Face (`--data-source
//! huggingface`), downloaded once into perf's cache and read from there afterwards: tokenizers
//! named by model id, the hub copies of datasets (`openqa`, `longalpaca`, `flickr8k`, ...), and
//! the file listings of datasets kept as parquet shards (`mmmu_multi_image`, `swe_smith`).
//!
//! The hub's address comes from the same environment variables the official clients read, so a
//! mirror or a local test server can stand in for it: `MODELSCOPE_ENDPOINT` (a full URL) or
//! `MODELSCOPE_DOMAIN` (a host name, https) for ModelScope, `HF_ENDPOINT` for Hugging Face.
//! `HF_TOKEN` / `MODELSCOPE_API_TOKEN` are sent as a bearer token and never printed. The cache is
//! `PERF_CACHE_DIR`, else `$XDG_CACHE_HOME/perf`, else `~/.cache/perf`; a file is written under
//! a temporary name and renamed when complete, so an interrupted download is never mistaken for
//! a cached file.
//!
//! File URLs, as the hubs serve them:
//! - ModelScope: `{endpoint}/api/v1/{models|datasets}/{repo}/repo?Revision=master&FilePath={file}`
//! - Hugging Face: `{endpoint}/{repo}/resolve/main/{file}` (models),
//!   `{endpoint}/datasets/{repo}/resolve/main/{file}` (datasets)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// modelscope.cn.
    ModelScope,
    /// huggingface.co.
    HuggingFace,
}

impl Source {
    /// `--data-source`: `modelscope` or `huggingface`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "modelscope" => Ok(Source::ModelScope),
            "huggingface" => Ok(Source::HuggingFace),
            "local" => Err(
                "--data-source local reads local files only: give the file or directory as a path"
                    .into(),
            ),
            other => Err(format!(
                "--data-source {other} is not a hub perf knows: use modelscope or huggingface"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Source::ModelScope => "modelscope",
            Source::HuggingFace => "huggingface",
        }
    }
}

/// A model repository or a dataset repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Models (tokenizers live there).
    Model,
    /// Datasets.
    Dataset,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Model => "models",
            Kind::Dataset => "datasets",
        }
    }
}

/// Why a file could not be had. Every message names the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubError {
    /// The hub answered 404.
    NotFound {
        /// The file's URL.
        url: String,
    },
    /// The hub answered with another error status.
    Status {
        /// The file's URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// No answer (DNS, connection, TLS, timeout).
    Unreachable {
        /// The file's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The hub answered a file listing with something that is not one.
    BadListing {
        /// The listing's URL.
        url: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// The repository id cannot be a hub id.
    BadRepo(String),
    /// Writing the cache failed.
    Cache(String),
}

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HubError::NotFound { url } => write!(f, "{url}: not found on the hub (HTTP 404)"),
            HubError::Status { url, status } => write!(f, "{url}: the hub answered HTTP {status}"),
            HubError::Unreachable { url, reason } => write!(
                f,
                "{url}: the hub cannot be reached ({reason}); set MODELSCOPE_ENDPOINT or HF_ENDPOINT for a mirror"
            ),
            HubError::BadListing { url, reason } => {
                write!(f, "{url}: not a file listing ({reason})")
            }
            HubError::BadRepo(repo) => write!(
                f,
                "'{repo}' is not a hub id: expected owner/name with letters, digits, '-', '_' and '.'"
            ),
            HubError::Cache(why) => write!(f, "writing perf's download cache failed: {why}"),
        }
    }
}

impl std::error::Error for HubError {}

/// A hub and the cache its files go to.
pub struct Hub {
    source: Source,
    endpoint: String,
    cache: PathBuf,
    token: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("source", &self.source)
            .field("endpoint", &self.endpoint)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// perf's download cache.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = env("PERF_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = env("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("perf");
    }
    match env("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("perf"),
        None => std::env::temp_dir().join("perf-cache"),
    }
}

impl Hub {
    /// `source` at the address and with the token the environment gives, caching in
    /// [`cache_dir`].
    pub fn from_env(source: Source) -> Self {
        let (endpoint, token) = match source {
            Source::ModelScope => (
                env("MODELSCOPE_ENDPOINT")
                    .or_else(|| env("MODELSCOPE_DOMAIN").map(|d| format!("https://{d}")))
                    .unwrap_or_else(|| "https://www.modelscope.cn".into()),
                env("MODELSCOPE_API_TOKEN"),
            ),
            Source::HuggingFace => (
                env("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into()),
                env("HF_TOKEN"),
            ),
        };
        Hub::new(source, &endpoint, cache_dir(), token)
    }

    /// `source` at `endpoint`, caching in `cache`.
    pub fn new(source: Source, endpoint: &str, cache: PathBuf, token: Option<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(600)))
            .proxy(ureq::Proxy::try_from_env())
            .http_status_as_error(false)
            .build();
        Hub {
            source,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            cache,
            token,
            agent: config.into(),
        }
    }

    /// The URL of `file` in `repo`.
    pub fn url(&self, kind: Kind, repo: &str, file: &str) -> String {
        match self.source {
            Source::ModelScope => format!(
                "{}/api/v1/{}/{repo}/repo?Revision=master&FilePath={}",
                self.endpoint,
                kind.name(),
                query_value(file)
            ),
            Source::HuggingFace => match kind {
                Kind::Model => format!("{}/{repo}/resolve/main/{file}", self.endpoint),
                Kind::Dataset => format!("{}/datasets/{repo}/resolve/main/{file}", self.endpoint),
            },
        }
    }

    /// Where `file` of `repo` is cached.
    pub fn cached_path(&self, kind: Kind, repo: &str, file: &str) -> PathBuf {
        let mut path = self
            .cache
            .join(self.source.name())
            .join(kind.name())
            .join(repo);
        path.extend(file.split('/'));
        path
    }

    /// `file` of `repo`, downloaded unless it is cached already.
    pub fn fetch(&self, kind: Kind, repo: &str, file: &str) -> Result<PathBuf, HubError> {
        check_repo(repo)?;
        check_file(file)?;
        let path = self.cached_path(kind, repo, file);
        if path.is_file() {
            return Ok(path);
        }
        let url = self.url(kind, repo, file);
        eprintln!("perf: downloading {url}");
        self.download(&url, &path)?;
        Ok(path)
    }

    /// Like [`Hub::fetch`], but a file the hub does not have is `None`. That answer is cached
    /// too (an empty `<file>.absent` marker), so later runs do not ask again.
    pub fn fetch_optional(
        &self,
        kind: Kind,
        repo: &str,
        file: &str,
    ) -> Result<Option<PathBuf>, HubError> {
        check_repo(repo)?;
        check_file(file)?;
        let mut marker = self.cached_path(kind, repo, file).into_os_string();
        marker.push(".absent");
        let marker = PathBuf::from(marker);
        if marker.is_file() {
            return Ok(None);
        }
        match self.fetch(kind, repo, file) {
            Ok(p) => Ok(Some(p)),
            Err(HubError::NotFound { .. }) => {
                let written = marker
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&marker, b""));
                written.map_err(|e| HubError::Cache(format!("{}: {e}", marker.display())))?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The files under `dir` of a dataset `repo` (recursively; `""` for the whole repository),
    /// as paths inside the repository, sorted. The listing is cached like a file, so a later
    /// run reads it offline; remove the cache directory to see new files.
    ///
    /// Listings, as the hubs serve them:
    /// - ModelScope: `{endpoint}/api/v1/datasets/{repo}/repo/tree?Revision=master&Recursive=True&PageNumber={n}&PageSize=200[&Root={dir}]`,
    ///   `{"Code": 200, "Data": {"Files": [{"Path": ..., "Type": "blob" | "tree"}, ...]}}`,
    ///   page by page until a page holds fewer than 200 entries;
    /// - Hugging Face: `{endpoint}/api/datasets/{repo}/tree/main[/{dir}]?recursive=true`, a JSON
    ///   array of `{"type": "file" | "directory", "path": ...}`, further pages named by the
    ///   `Link: <...>; rel="next"` header.
    pub fn list_dataset(&self, repo: &str, dir: &str) -> Result<Vec<String>, HubError> {
        check_repo(repo)?;
        let dir = dir.trim_matches('/');
        if !dir.is_empty() {
            check_file(dir)?;
        }
        let cached = self
            .cache
            .join(self.source.name())
            .join("listings")
            .join(repo)
            .join(format!("{}.json", if dir.is_empty() { "_" } else { dir }));
        if let Ok(text) = std::fs::read_to_string(&cached) {
            if let Ok(files) = serde_json::from_str::<Vec<String>>(&text) {
                return Ok(files);
            }
        }
        let mut files = match self.source {
            Source::ModelScope => self.list_modelscope(repo, dir)?,
            Source::HuggingFace => self.list_huggingface(repo, dir)?,
        };
        files.sort();
        files.dedup();
        let cache = |e: std::io::Error| HubError::Cache(format!("{}: {e}", cached.display()));
        let parent = cached.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(cache)?;
        let mut partial = tempfile_in(parent).map_err(cache)?;
        let text = serde_json::to_string(&files).unwrap_or_else(|_| "[]".into());
        partial.1.write_all(text.as_bytes()).map_err(cache)?;
        std::fs::rename(&partial.0, &cached).map_err(cache)?;
        Ok(files)
    }

    fn list_modelscope(&self, repo: &str, dir: &str) -> Result<Vec<String>, HubError> {
        const PAGE: usize = 200;
        let mut files = Vec::new();
        for page in 1.. {
            let mut url = format!(
                "{}/api/v1/datasets/{repo}/repo/tree?Revision=master&Recursive=True&PageNumber={page}&PageSize={PAGE}",
                self.endpoint
            );
            if !dir.is_empty() {
                url.push_str(&format!("&Root={}", query_value(dir)));
            }
            let (body, _) = self.get_json(&url)?;
            let bad = |reason: &str| HubError::BadListing {
                url: url.clone(),
                reason: reason.into(),
            };
            if body.get("Success") == Some(&serde_json::Value::Bool(false)) {
                return Err(bad("\"Success\": false"));
            }
            let entries = body
                .get("Data")
                .and_then(|d| d.get("Files"))
                .and_then(|f| f.as_array())
                .ok_or_else(|| bad("no Data.Files array"))?;
            for entry in entries {
                let path = entry.get("Path").and_then(|p| p.as_str());
                let kind = entry.get("Type").and_then(|t| t.as_str());
                match (path, kind) {
                    (Some(_), Some("tree")) => {}
                    (Some(path), _) => files.push(path.trim_start_matches('/').to_string()),
                    (None, _) => return Err(bad("an entry without a Path")),
                }
            }
            if entries.len() < PAGE {
                break;
            }
        }
        Ok(files)
    }

    fn list_huggingface(&self, repo: &str, dir: &str) -> Result<Vec<String>, HubError> {
        let mut files = Vec::new();
        let mut next = Some(if dir.is_empty() {
            format!(
                "{}/api/datasets/{repo}/tree/main?recursive=true",
                self.endpoint
            )
        } else {
            format!(
                "{}/api/datasets/{repo}/tree/main/{dir}?recursive=true",
                self.endpoint
            )
        });
        while let Some(url) = next.take() {
            let (body, link) = self.get_json(&url)?;
            let entries = body.as_array().ok_or_else(|| HubError::BadListing {
                url: url.clone(),
                reason: "not a JSON array".into(),
            })?;
            for entry in entries {
                let path = entry.get("path").and_then(|p| p.as_str());
                let kind = entry.get("type").and_then(|t| t.as_str());
                match (path, kind) {
                    (Some(_), Some("directory")) => {}
                    (Some(path), _) => files.push(path.to_string()),
                    (None, _) => {
                        return Err(HubError::BadListing {
                            url,
                            reason: "an entry without a path".into(),
                        })
                    }
                }
            }
            next = link.as_deref().and_then(next_link);
        }
        Ok(files)
    }

    /// The answer to a GET of `url` with the token, when its status is a success.
    fn get(&self, url: &str) -> Result<ureq::http::Response<ureq::Body>, HubError> {
        let mut request = self.agent.get(url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let response = request.call().map_err(|e| HubError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        match response.status().as_u16() {
            200..=299 => Ok(response),
            404 => Err(HubError::NotFound { url: url.into() }),
            status => Err(HubError::Status {
                url: url.into(),
                status,
            }),
        }
    }

    /// A JSON answer and its `Link` header.
    fn get_json(&self, url: &str) -> Result<(serde_json::Value, Option<String>), HubError> {
        eprintln!("perf: listing {url}");
        let response = self.get(url)?;
        let link = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response
            .into_body()
            .read_to_string()
            .map_err(|e| HubError::Unreachable {
                url: url.to_string(),
                reason: format!("the answer broke off: {e}"),
            })?;
        let body = serde_json::from_str(&text).map_err(|e| HubError::BadListing {
            url: url.to_string(),
            reason: format!("not JSON: {e}"),
        })?;
        Ok((body, link))
    }

    fn download(&self, url: &str, path: &Path) -> Result<(), HubError> {
        let response = self.get(url)?;
        let cache = |e: std::io::Error| HubError::Cache(format!("{}: {e}", path.display()));
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(cache)?;
        let mut partial = tempfile_in(dir).map_err(cache)?;
        let mut body = response.into_body();
        let mut reader = body.with_config().limit(u64::MAX).reader();
        std::io::copy(&mut reader, &mut partial.1).map_err(|e| HubError::Unreachable {
            url: url.to_string(),
            reason: format!("the download broke off: {e}"),
        })?;
        partial.1.flush().map_err(cache)?;
        std::fs::rename(&partial.0, path).map_err(cache)?;
        Ok(())
    }
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        is_next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// A new file in `dir` with a name no other download uses.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = dir.join(format!(".partial-{}-{stamp}", std::process::id()));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}

fn check_repo(repo: &str) -> Result<(), HubError> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if ok_part(owner) && ok_part(name) => Ok(()),
        _ => Err(HubError::BadRepo(repo.to_string())),
    }
}

fn check_file(file: &str) -> Result<(), HubError> {
    let bad = file.is_empty()
        || file.starts_with('/')
        || file
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        return Err(HubError::Cache(format!(
            "'{file}' is not a file path inside a repository"
        )));
    }
    Ok(())
}

/// Percent-encodes a query value (everything but unreserved characters), as the ModelScope
/// client does for `FilePath`.
fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_the_hubs_own() {
        let cache = PathBuf::from("/c");
        let ms = Hub::new(
            Source::ModelScope,
            "https://www.modelscope.cn/",
            cache.clone(),
            None,
        );
        assert_eq!(
            ms.url(Kind::Dataset, "clip-benchmark/wds_flickr8k", "test/0.tar"),
            "https://www.modelscope.cn/api/v1/datasets/clip-benchmark/wds_flickr8k/repo?Revision=master&FilePath=test%2F0.tar"
        );
        assert_eq!(
            ms.url(Kind::Model, "Qwen/Qwen3-0.6B", "tokenizer.json"),
            "https://www.modelscope.cn/api/v1/models/Qwen/Qwen3-0.6B/repo?Revision=master&FilePath=tokenizer.json"
        );
        let hf = Hub::new(Source::HuggingFace, "https://huggingface.co", cache, None);
        assert_eq!(
            hf.url(Kind::Dataset, "Hello-SimpleAI/HC3-Chinese", "open_qa.jsonl"),
            "https://huggingface.co/datasets/Hello-SimpleAI/HC3-Chinese/resolve/main/open_qa.jsonl"
        );
        assert_eq!(
            hf.url(Kind::Model, "Qwen/Qwen3-0.6B", "tokenizer.json"),
            "https://huggingface.co/Qwen/Qwen3-0.6B/resolve/main/tokenizer.json"
        );
        assert_eq!(
            hf.cached_path(Kind::Dataset, "a/b", "test/0.tar"),
            PathBuf::from("/c/huggingface/datasets/a/b/test/0.tar")
        );
    }

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        assert_eq!(
            next_link(r#"<https://h/api/datasets/a/b/tree/main?cursor=x>; rel="next""#).as_deref(),
            Some("https://h/api/datasets/a/b/tree/main?cursor=x")
        );
        assert_eq!(
            next_link(r#"<https://h/p1>; rel="prev", <https://h/p3>; rel="next""#).as_deref(),
            Some("https://h/p3")
        );
        assert_eq!(next_link(r#"<https://h/p1>; rel="prev""#), None);
    }

    #[test]
    fn ids_and_paths_that_would_escape_the_cache_are_refused() {
        for repo in ["../x", "a", "a/b/c", "a/..", "a b/c", "/a"] {
            assert!(check_repo(repo).is_err(), "{repo}");
        }
        assert!(check_repo("Qwen/Qwen2.5-0.5B-Instruct").is_ok());
        for file in ["../x", "/etc/passwd", "a//b", ""] {
            assert!(check_file(file).is_err(), "{file}");
        }
    }

    #[test]
    fn an_unreachable_hub_names_the_url() {
        let dir = tempfile::tempdir().expect("tmp");
        // Port 9 (discard) on loopback: nothing listens there.
        let hub = Hub::new(
            Source::HuggingFace,
            "http://127.0.0.1:9",
            dir.path().to_path_buf(),
            None,
        );
        let err = hub
            .fetch(Kind::Dataset, "a/b", "f.jsonl")
            .expect_err("nothing listens");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "http://127.0.0.1:9/datasets/a/b/resolve/main/f.jsonl: the hub cannot be reached"
            ),
            "{text}"
        );
        assert!(!hub.cached_path(Kind::Dataset, "a/b", "f.jsonl").exists());
    }
}
