//! The IRC line parser on arbitrary text: never panics, and what it parses it can be asked
//! about without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(msg) = parla_room::Message::parse(text)
    {
        let _ = (msg.verb, msg.source, msg.params.len(), msg.tags.len());
    }
});
