//! `perf plugins`: every available plugin, one row each; with `--verbose`, what each one
//! declares (aliases, endpoints, prompt form, options) and the interface version of its
//! library.

use comfy_table::{presets::ASCII_BORDERS_ONLY_CONDENSED, Table};
use perf_plugin_api::{PluginInfo, PluginKind, RString};

use crate::plugin_host::{PluginEntry, PluginRegistry};

/// The listing as text.
pub fn render(registry: &PluginRegistry, verbose: bool) -> String {
    let mut table = Table::new();
    table.load_preset(ASCII_BORDERS_ONLY_CONDENSED);
    table.set_header(vec!["KIND", "ID", "VERSION", "ORIGIN", "DESCRIPTION"]);
    for entry in registry.entries() {
        table.add_row(vec![
            entry.info.kind.to_string(),
            entry.info.id.to_string(),
            entry.info.version.to_string(),
            entry.origin.to_string(),
            entry.info.description.to_string(),
        ]);
    }
    let mut text = table.to_string();
    if verbose {
        for entry in registry.entries() {
            text.push_str("\n\n");
            text.push_str(&details(entry));
        }
    }
    text
}

fn list(items: &[RString]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One plugin's declarations, one `key: value` line each; empty ones are left out.
fn details(entry: &PluginEntry) -> String {
    let info: &PluginInfo = &entry.info;
    let mut lines = vec![format!(
        "{} {} ({}, interface {})",
        info.kind, info.id, entry.origin, entry.library.interface
    )];
    let mut field = |key: &str, value: String| {
        if !value.is_empty() {
            lines.push(format!("  {key}: {value}"));
        }
    };
    field("aliases", list(&info.aliases));
    if info.kind == PluginKind::ApiAdapter {
        field("endpoints", list(&info.endpoints));
        field("replaces endpoints", list(&info.replaces_endpoints));
        field("prompts", info.prompt_form.to_string());
        field("results", info.results.to_string());
    }
    field("keys taken from --extra-args", list(&info.extra_args_keys));
    let options = match info.option_keys.as_ref().into_option() {
        None => "not declared (passed on as given)".to_string(),
        Some(keys) if keys.is_empty() => "none".to_string(),
        Some(keys) => list(keys),
    };
    field("options", options);
    field("example options", info.options_example.to_string());
    lines.join("\n")
}
