//! Which adapter `--api` names, the URL a run sends to, and whether prompts go out as chat
//! messages. Everything API-specific comes from the adapter's metadata (`PluginInfo`): its
//! aliases, its endpoints, the endpoints it replaces and its prompt form; built-in adapters
//! declare theirs as outside ones do.

use perf_plugin_api::{PluginInfo, PluginKind, PromptForm};

use crate::cli::RunArgs;
use crate::error::usage;
use crate::modes::ServerMode;
use crate::plugin_host::{InstantiateError, PluginRegistry};

/// The adapter of a run and where its requests go.
pub(crate) struct Endpoint {
    /// The adapter's metadata (its id is the canonical one, whatever alias `--api` used).
    pub adapter: PluginInfo,
    /// The server perf starts, if `--api` names a mode.
    pub mode: Option<ServerMode>,
    /// The URL requests go to.
    pub url: String,
    /// Whether prompts become chat messages.
    pub chat: bool,
    /// What planning changed that the user should hear about (the URL `--tokenize-prompt`
    /// moved to the completions endpoint).
    pub note: Option<String>,
}

/// The path of a URL that starts with `http://` or `https://`, without its query: what
/// follows the authority up to a `?` or `#`, empty when the authority is followed by a query
/// or fragment straight away (`http://host?a=/b` has no path).
fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let Some(end) = after_scheme.find(['/', '?', '#']) else {
        return "";
    };
    let rest = &after_scheme[end..];
    if !rest.starts_with('/') {
        return "";
    }
    rest.split(['?', '#']).next().unwrap_or("")
}

fn ends_in(path: &str, endpoint: &str) -> bool {
    let path = path.trim_end_matches('/');
    path.ends_with(&format!("/{}", endpoint.trim_matches('/')))
}

/// `url` with its path replaced by `path` (the query and fragment kept).
fn with_path(url: &str, path: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let host_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let rest = &url[host_end + url_path(url).len()..];
    format!("{}{path}{rest}", &url[..host_end])
}

/// As evalscope does for the OpenAI family: a URL whose path ends in no known endpoint
/// (`http://host:8000/v1`) gets the adapter's first endpoint appended, and one that ends in an
/// endpoint the adapter replaces (the Responses API given `.../chat/completions`) gets it
/// swapped. Known endpoints are those of every adapter in the registry.
fn resolve_url(url: &str, adapter: &PluginInfo, registry: &PluginRegistry) -> String {
    let Some(first) = adapter.endpoints.first() else {
        return url.to_string();
    };
    let path = url_path(url).trim_end_matches('/');
    for replaced in adapter.replaces_endpoints.iter() {
        if ends_in(path, replaced) {
            let kept = &path[..path.len() - replaced.trim_matches('/').len()];
            return with_path(url, &format!("{kept}{first}"));
        }
    }
    let mut known = registry
        .of_kind(PluginKind::ApiAdapter)
        .flat_map(|e| e.info.endpoints.iter());
    if known.any(|k| ends_in(path, k)) {
        url.to_string()
    } else {
        with_path(url, &format!("{path}/{first}"))
    }
}

/// Whether prompts go out as chat messages: the flags, else the adapter's prompt form.
fn chat_by_default(a: &RunArgs, adapter: &PluginInfo, url: &str) -> bool {
    if a.apply_chat_template {
        return true;
    }
    if a.no_apply_chat_template {
        return false;
    }
    match adapter.prompt_form {
        PromptForm::Chat => true,
        PromptForm::Text => false,
        // The default form, and forms of a newer interface.
        _ => adapter
            .endpoints
            .first()
            .is_some_and(|first| ends_in(url_path(url), first)),
    }
}

/// The adapter `--api` names (an id, an alias, or a mode's adapter).
fn adapter(a: &RunArgs, registry: &PluginRegistry) -> anyhow::Result<PluginInfo> {
    let name = ServerMode::from_api(&a.api).map_or(a.api.as_str(), |_| ServerMode::ADAPTER);
    match registry.find(PluginKind::ApiAdapter, name) {
        Some(entry) => Ok(entry.info.clone()),
        None => {
            let mut available = registry.ids(PluginKind::ApiAdapter);
            available.extend(["mock", "local", "local_vllm"].map(String::from));
            Err(InstantiateError::Unknown {
                kind: PluginKind::ApiAdapter,
                id: a.api.clone(),
                available: available.join(", "),
            }
            .into())
        }
    }
}

/// The adapter, the URL and the prompt form of a run.
pub(crate) fn endpoint(a: &RunArgs, registry: &PluginRegistry) -> anyhow::Result<Endpoint> {
    let adapter = adapter(a, registry)?;
    let mode = ServerMode::from_api(&a.api);
    let url = match mode {
        // perf's own servers: chat or completions on the port, as the flags and `--url` say.
        Some(_) => {
            let path = if chat_by_default(a, &adapter, &a.url) {
                "/v1/chat/completions"
            } else {
                "/v1/completions"
            };
            format!("http://127.0.0.1:{}{path}", a.port)
        }
        None => a.url.clone(),
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(usage(format!(
            "--url must start with http:// or https://, got '{url}'"
        )));
    }
    let url = resolve_url(&url, &adapter, registry);
    // As in evalscope, whether prompts are chat messages follows the URL as given, before
    // --tokenize-prompt moves it: messages are then tokenized through the chat template.
    let chat = chat_by_default(a, &adapter, &url);
    let (url, note) = if a.tokenize_prompt {
        tokenized_url(a, &adapter, url)?
    } else {
        (url, None)
    };
    Ok(Endpoint {
        adapter,
        mode,
        url,
        chat,
        note,
    })
}

/// `--tokenize-prompt` sends token ids, which a chat endpoint does not take: a URL at the
/// adapter's chat endpoint moves to its next one (`.../chat/completions` to
/// `.../completions`), as evalscope moves it.
fn tokenized_url(
    a: &RunArgs,
    adapter: &PluginInfo,
    url: String,
) -> anyhow::Result<(String, Option<String>)> {
    if a.tokenizer_path.is_none() {
        return Err(usage(
            "--tokenize-prompt needs --tokenizer-path: perf turns the prompts into token ids with it",
        ));
    }
    let path = url_path(&url).trim_end_matches('/').to_string();
    let chat_endpoint = adapter.endpoints.first().filter(|first| {
        adapter.prompt_form == PromptForm::ChatAtFirstEndpoint && ends_in(&path, first)
    });
    let Some(first) = chat_endpoint else {
        return Ok((url, None));
    };
    let Some(next) = adapter.endpoints.get(1) else {
        return Err(usage(format!(
            "--tokenize-prompt sends token ids, which the '{}' adapter's {first} endpoint does not take: drop --tokenize-prompt",
            adapter.id
        )));
    };
    let kept = &path[..path.len() - first.trim_matches('/').len()];
    let moved = with_path(&url, &format!("{kept}{}", next.trim_matches('/')));
    let note = format!(
        "--tokenize-prompt sends token ids, which the {first} endpoint does not take: requests go to {} instead",
        url_path(&moved)
    );
    Ok((moved, Some(note)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_replaced_with_the_query_kept() {
        assert_eq!(url_path("http://h:1/v1?x=1"), "/v1");
        assert_eq!(url_path("http://h:1"), "");
        assert_eq!(
            with_path("http://h:1/v1?key=a/b", "/v1/chat/completions"),
            "http://h:1/v1/chat/completions?key=a/b"
        );
        assert_eq!(with_path("http://h:1", "/x"), "http://h:1/x");
        assert!(ends_in("/v1/chat/completions/", "chat/completions"));
        assert!(!ends_in("/v1/xchat/completions", "chat/completions"));
    }

    /// Found by the planning fuzz target: a query straight after the host, with a `/` and
    /// non-ASCII text in it, was taken for the path and sliced inside a character.
    #[test]
    fn a_query_right_after_the_host_is_no_path() {
        assert_eq!(url_path("http://h?a=/b"), "");
        assert_eq!(url_path("http://h#/frag"), "");
        assert_eq!(
            with_path("http://h?x=/n\u{692}'", "/v1/chat/completions"),
            "http://h/v1/chat/completions?x=/n\u{692}'"
        );
    }
}
