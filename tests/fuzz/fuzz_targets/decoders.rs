//! Every built-in adapter's decoder (the decision services' included) on arbitrary events (the first byte picks the decoder):
//! never a panic, whatever the server sends, also on a decoder that already saw garbage.

#![no_main]

use libfuzzer_sys::fuzz_target;
use perf_api_dashscope::{DashScopeAdapter, DashScopeDecoder};
use perf_api_openai::{
    AutoTrustAdapter, InputOnlyDecoder, OpenAiDecoder, ResponsesDecoder, SystemOneAdapter,
};
use perf_plugin_api::sdk::{ApiAdapterPlugin, ApiConfig, ResponseDecoderPlugin};
use perf_plugin_api::ResponseEvent;

fn run(decoder: &mut dyn ResponseDecoderPlugin, events: &[u8]) {
    let mut out: Vec<ResponseEvent> = Vec::new();
    // Events are separated by 0xff (which no JSON text holds).
    for event in events.split(|b| *b == 0xff) {
        let _ = decoder.decode(event, &mut out);
    }
    let _ = decoder.finish(&mut out);
}

fn dashscope(cumulative: bool) -> DashScopeDecoder {
    let mut config = ApiConfig {
        model: "m".into(),
        stream: true,
        ..ApiConfig::default()
    };
    if cumulative {
        config
            .extra_args
            .insert("incremental_output".into(), serde_json::Value::Bool(false));
    }
    DashScopeAdapter::new(&config)
        .map(|a| a.new_decoder())
        .unwrap_or_default()
}

fn decision<A: ApiAdapterPlugin>() -> Option<A::Decoder> {
    let config = ApiConfig {
        model: "m".into(),
        ..ApiConfig::default()
    };
    A::new(&config).ok().map(|a| a.new_decoder())
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, events)) = data.split_first() else {
        return;
    };
    match which % 7 {
        0 => run(&mut OpenAiDecoder::default(), events),
        1 => run(&mut ResponsesDecoder, events),
        2 => run(&mut InputOnlyDecoder, events),
        3 => run(&mut dashscope(false), events),
        4 => run(&mut dashscope(true), events),
        5 => {
            if let Some(mut d) = decision::<SystemOneAdapter>() {
                run(&mut d, events)
            }
        }
        _ => {
            if let Some(mut d) = decision::<AutoTrustAdapter>() {
                run(&mut d, events)
            }
        }
    }
});
