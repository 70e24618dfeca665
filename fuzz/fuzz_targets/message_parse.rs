//! Arbitrary bytes into the media-stream message parsers: nothing may panic,
//! a parsed `media` payload decodes (or fails cleanly) into a buffer of exactly
//! `decoded_len()`, and whatever parses, written back as Twilio writes it,
//! parses to the same value.
#![no_main]
use callstream_core::message::{self, Inbound};
use callstream_twilio::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The WebSocket layer only passes UTF-8 text frames; read other inputs
    // lossily so that every input still reaches the parser.
    let lossy;
    let text = match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(_) => {
            lossy = String::from_utf8_lossy(data);
            &lossy
        }
    };
    if let Ok(parsed) = message::parse(text) {
        // Written back as Twilio writes it (the model's writer).
        let again = Message::from(&parsed).to_text();
        // Writing can add the fields a message left implicit; past the size
        // limit the second parse is refused, rightly.
        if again.len() <= message::MAX_MESSAGE_LEN {
            assert_eq!(message::parse(&again).as_ref(), Ok(&parsed));
        }
        if let Inbound::Media(media) = parsed {
            let mut ulaw = vec![0u8; media.decoded_len()];
            if let Ok(n) = media.decode_payload(&mut ulaw) {
                assert!(n <= ulaw.len());
                let mut pcm = vec![0i16; media.decoded_len()];
                assert_eq!(media.decode_samples(&mut pcm), Ok(n));
            }
        }
    }
    // Base64 of any shape into a buffer of exactly `decoded_len`.
    let mut ulaw = vec![0u8; message::decoded_len(text)];
    let _ = message::decode_base64(text, &mut ulaw);
});
