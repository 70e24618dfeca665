//! Arbitrary bytes into the media-stream message parsers: nothing may panic,
//! a parsed `media` payload decodes (or fails cleanly) into a buffer of exactly
//! `decoded_len()`, and whatever parses writes back to text that parses to the
//! same value.
#![no_main]
use callstream_core::message::{self, Inbound, Outbound};
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
        let mut again = String::new();
        parsed.write(&mut again);
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
    if let Ok(Outbound::Media { payload, .. }) = message::parse_outbound(text) {
        let mut ulaw = vec![0u8; message::decoded_len(&payload)];
        let _ = message::decode_base64(&payload, &mut ulaw);
    }
});
