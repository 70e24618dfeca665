//! What Twilio takes from the TwiML a server answers: the `<Stream>` it
//! connects, and the `<Parameter>`s it puts in that stream's `start` as
//! `customParameters`, names and values as written, in order. Tests that
//! drive a bot through a real call take its `start` from here rather than
//! writing one by hand.

/// The `url` of the first `<Stream>` and its `<Parameter>`s, name and value
/// each, in document order.
///
/// # Errors
///
/// The document is not XML, has no `<Stream>`, or a `<Parameter>` lacks
/// its name.
pub fn stream(twiml: &str) -> Result<(String, Vec<(String, String)>), String> {
    let doc = roxmltree::Document::parse(twiml).map_err(|e| format!("not XML: {e}"))?;
    let stream = doc
        .descendants()
        .find(|n| n.has_tag_name("Stream"))
        .ok_or("no <Stream>")?;
    let url = stream.attribute("url").ok_or("<Stream> without url")?;
    let params = stream
        .children()
        .filter(|n| n.has_tag_name("Parameter"))
        .map(|p| {
            let name = p.attribute("name").ok_or("<Parameter> without name")?;
            Ok((
                name.to_owned(),
                p.attribute("value").unwrap_or("").to_owned(),
            ))
        })
        .collect::<Result<_, &str>>()?;
    Ok((url.to_owned(), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameters_come_in_order_with_entities_decoded() {
        let twiml = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hi</Say><Connect action="https://h/a"><Stream url="wss://h/ws"><Parameter name="call_sid" value="CA1"/><Parameter name="from" value="+1 &amp; &lt;2&gt;"/><Parameter name="empty"/></Stream></Connect></Response>"#;
        let (url, params) = stream(twiml).unwrap();
        assert_eq!(url, "wss://h/ws");
        let want = [("call_sid", "CA1"), ("from", "+1 & <2>"), ("empty", "")];
        assert_eq!(
            params,
            want.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
        );
        assert!(stream("<Response/>").is_err());
        assert!(stream("not xml").is_err());
    }
}
