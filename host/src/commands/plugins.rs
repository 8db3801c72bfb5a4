//! `perf plugins`: every available plugin, one row each.

use comfy_table::{presets::ASCII_BORDERS_ONLY_CONDENSED, Table};

use crate::plugin_host::PluginRegistry;

/// The listing as text.
pub fn render(registry: &PluginRegistry) -> String {
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
    table.to_string()
}
