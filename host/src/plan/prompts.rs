//! Where prompts come from (`--prompt` or a dataset plugin), the dataset's configuration, and
//! the checks of plugin options against what each plugin declares it takes.

use perf_plugin_api::sdk::{ApiConfig, DatasetConfig};
use perf_plugin_api::{PluginInfo, PluginKind};
use serde_json::{Map, Value};

use super::{at_file, optional_object, PromptPlan};
use crate::cli::RunArgs;
use crate::error::usage;
use crate::plugin_host::{InstantiateError, PluginRegistry};

/// The dataset `--dataset` names (by id or alias).
fn dataset<'r>(a: &RunArgs, registry: &'r PluginRegistry) -> anyhow::Result<&'r PluginInfo> {
    match registry.find(PluginKind::DatasetSource, &a.dataset) {
        Some(entry) => Ok(&entry.info),
        None => Err(InstantiateError::Unknown {
            kind: PluginKind::DatasetSource,
            id: a.dataset.clone(),
            available: registry.ids(PluginKind::DatasetSource).join(", "),
        }
        .into()),
    }
}

/// `--prompt` (one fixed prompt) or the dataset, configured from the flags.
pub(crate) fn prompt_plan(
    a: &RunArgs,
    chat: bool,
    dataset_seed: u64,
    registry: &PluginRegistry,
) -> anyhow::Result<PromptPlan> {
    if a.min_prompt_length > a.max_prompt_length {
        return Err(usage(
            "--min-prompt-length is larger than --max-prompt-length",
        ));
    }
    if a.image_patch_size == 0 {
        return Err(usage(
            "--image-patch-size must be at least 1 (pixels per side of one image token; 28 for Qwen2-VL)",
        ));
    }
    if let Some(p) = &a.prompt {
        return Ok(PromptPlan::Fixed(at_file(p, "--prompt")?));
    }
    let info = dataset(a, registry)?;
    let mut options = optional_object(&a.dataset_args, "--dataset-args")?;
    // The deprecated --multi-turn-args are dataset options (--dataset-args wins).
    if let Value::Object(old) = optional_object(&a.multi_turn_args, "--multi-turn-args")? {
        if !options.is_object() {
            options = Value::Object(Map::new());
        }
        if let Some(o) = options.as_object_mut() {
            for (k, v) in old {
                o.entry(k).or_insert(v);
            }
        }
    }
    check_options(info, &options, "--dataset-args")?;
    Ok(PromptPlan::Dataset {
        id: info.id.to_string(),
        config: Box::new(DatasetConfig {
            dataset_path: a.dataset_path.clone(),
            data_source: super::data_source(a),
            min_prompt_length: a.min_prompt_length,
            max_prompt_length: a.max_prompt_length,
            prefix_length: a.prefix_length,
            prefix_count: a.prefix_count,
            apply_chat_template: chat,
            tokenize_prompt: a.tokenize_prompt,
            dataset_offset: a.dataset_offset,
            seed: Some(dataset_seed),
            image_width: a.image_width,
            image_height: a.image_height,
            image_format: a.image_format.clone(),
            image_num: a.image_num,
            image_patch_size: a.image_patch_size,
            options,
            multi_turn: a.multi_turn,
            min_turns: a.min_turns,
            max_turns: a.max_turns,
        }),
    })
}

/// The keys a dataset declares it reads from `--extra-args` (evalscope's embedding and rerank
/// datasets do, where they also end up in every request body): perf moves them to the
/// dataset's options, out of the body. `--dataset-args` wins when both set one.
pub(crate) fn move_dataset_knobs(
    api: &mut ApiConfig,
    prompts: &mut PromptPlan,
    registry: &PluginRegistry,
) {
    let PromptPlan::Dataset { id, config } = prompts else {
        return;
    };
    let Some(entry) = registry.find(PluginKind::DatasetSource, id) else {
        return;
    };
    for knob in entry.info.extra_args_keys.iter() {
        if let Some(v) = api.extra_args.remove(knob.as_str()) {
            if !config.options.is_object() {
                config.options = Value::Object(Map::new());
            }
            if let Some(o) = config.options.as_object_mut() {
                o.entry(knob.to_string()).or_insert(v);
            }
        }
    }
}

/// Refuses options a plugin declares it does not take (`option_keys`); a plugin that declares
/// nothing gets everything.
pub(crate) fn check_options(info: &PluginInfo, options: &Value, flag: &str) -> anyhow::Result<()> {
    let (Some(keys), Some(given)) = (info.option_keys.as_ref().into_option(), options.as_object())
    else {
        return Ok(());
    };
    let unknown: Vec<&str> = given
        .keys()
        .map(String::as_str)
        .filter(|k| !keys.iter().any(|known| known.as_str() == *k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let kind = info.kind;
    let id = &info.id;
    let takes = if keys.is_empty() {
        "takes no options".to_string()
    } else {
        let names: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
        format!("takes {}", names.join(", "))
    };
    Err(usage(format!(
        "{flag}: the {kind} plugin '{id}' {takes}; unknown: {} (see `perf plugins --verbose`)",
        unknown.join(", ")
    )))
}
