//! Server bytes to `response_messages`: arbitrary chunk payloads (newline-separated) through
//! perf's JSON-to-pickle transcoding: never a panic, always a pickle Python can load, holding
//! one element per payload, a dict or list wherever the payload is a JSON object or array.

#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use perf_host::output::messages::pickled;
use perf_host::worker::Messages;

fuzz_target!(|data: &[u8]| {
    let payloads: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let mut messages = Messages::default();
    for p in &payloads {
        messages.push(p);
    }
    let text = pickled(&messages, &mut Vec::new());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64");
    let value = serde_pickle::value_from_slice(&bytes, serde_pickle::DeOptions::new())
        .expect("a loadable pickle");
    let serde_pickle::Value::List(items) = value else {
        panic!("not a list");
    };
    assert_eq!(items.len(), payloads.len());
    for (item, payload) in items.iter().zip(&payloads) {
        match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(serde_json::Value::Object(_)) => {
                assert!(matches!(item, serde_pickle::Value::Dict(_)), "{item:?}")
            }
            Ok(serde_json::Value::Array(_)) => {
                assert!(matches!(item, serde_pickle::Value::List(_)), "{item:?}")
            }
            _ => {}
        }
    }
});
