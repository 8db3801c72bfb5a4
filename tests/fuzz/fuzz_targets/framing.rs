//! The response framing on arbitrary bytes cut into arbitrary reads, for each framing: never a
//! panic; no event longer than the limit; nothing after `[DONE]` or `TooLarge`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use perf_host::framing::{Event, Framer};
use perf_plugin_api::Framing;

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let framing = [Framing::Sse, Framing::NdJson, Framing::None][usize::from(control % 3)];
    let read = usize::from(control / 3).max(1);
    let mut framer = Framer::new(framing, LIMIT);
    let mut ended = false;
    let mut check = |e: Event<'_>| {
        assert!(!ended, "an event after the end");
        match e {
            Event::Data(d) => assert!(d.len() <= LIMIT, "an event past the limit"),
            Event::Done | Event::TooLarge => ended = true,
        }
    };
    for piece in body.chunks(read) {
        framer.push(piece, &mut check);
    }
    framer.finish(&mut check);
});
