//! The program bridge through the real server: a Twilio-shaped client over
//! TCP on one side, a program (`sh`, the shipped echo bot, a tiny WebSocket
//! service) on the other. Needs only the Rust toolchain and `sh` with
//! coreutils and sed; the end-to-end test with the Python bot is `#[ignore]`d
//! and run by `.ci/run`.
use base64::Engine as _;
use callstream_bridge::OnFailure;
use callstream_tests::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HOST: &str = "callstream.test";
/// Longest any wait in these tests lasts; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The first utterance of the committed VAD fixture ("Hello I would like to
/// check my balance", espeak-ng, 8 kHz μ-law) with the silence around it.
fn speech() -> Vec<u8> {
    let all = std::fs::read(repo().join("core/tests/fixtures/vad/clean.ulaw")).expect("fixture");
    all[..26_000.min(all.len())].to_vec()
}

/// Waits until `f` holds (or [`PATIENCE`] passes); returns whether it held.
fn wait_for(f: impl FnMut() -> bool) -> bool {
    wait_until(PATIENCE, f)
}

fn read_file(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Whether process `pid` is gone (or a zombie nobody will run again).
fn process_gone(pid: &str) -> bool {
    let pid = pid.trim();
    assert!(!pid.is_empty(), "no pid written");
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn assert_reaped(dir: &Path, file: &str) {
    let pid = read_file(&dir.join(file));
    assert!(
        wait_for(|| process_gone(&pid)),
        "process {file}={pid} still running"
    );
}

/// A server whose handler runs `script` (written to a file) with `sh`.
fn server_with(
    script: &str,
    tweak: impl FnOnce(&mut callstream_server::config::Settings),
) -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bot.sh");
    std::fs::write(
        &path,
        script.replace("$DIR", &dir.path().display().to_string()),
    )
    .expect("script");
    let handler = format!("exec:sh '{}'", path.display());
    let srv = RunningServer::start(|s| {
        s.handler = handler.parse().expect("handler");
        tweak(s);
    });
    (srv, dir)
}

fn call(srv: &RunningServer, n: u32) -> TwilioStream {
    let mut t = TwilioStream::connect(srv.addr, &StreamOpts::default(), n).expect("connect");
    t.start(&[("From", "+15551230000"), ("x-tenant", "acme")])
        .expect("start");
    t
}

fn read_until_closed(t: &mut TwilioStream, got: &mut Vec<ServerMessage>) -> bool {
    let end = Instant::now() + PATIENCE;
    while Instant::now() < end {
        if got.iter().any(|m| matches!(m, ServerMessage::Closed(_))) {
            return true;
        }
        let _ = t.read_until(Instant::now() + Duration::from_millis(100), got);
    }
    false
}

fn read_until_mark(t: &mut TwilioStream, name: &str, got: &mut Vec<ServerMessage>) -> bool {
    let end = Instant::now() + PATIENCE;
    while Instant::now() < end {
        if got
            .iter()
            .any(|m| *m == ServerMessage::Mark(name.to_owned()))
        {
            return true;
        }
        if got.iter().any(|m| matches!(m, ServerMessage::Closed(_))) {
            return false;
        }
        let _ = t.read_until(Instant::now() + Duration::from_millis(100), got);
    }
    false
}

/// Streams the caller's silence (`frames` at a time) until a `clear` comes
/// after `got[from..]`, or [`PATIENCE`] passes; where it stands in `got`.
fn stream_until_clear(
    t: &mut TwilioStream,
    got: &mut Vec<ServerMessage>,
    from: usize,
    frames: usize,
) -> Option<usize> {
    let end = Instant::now() + PATIENCE;
    while !got[from..].contains(&ServerMessage::Clear) && Instant::now() < end {
        got.extend(t.stream_audio(&silence(frames)).expect("stream"));
    }
    got[from..]
        .iter()
        .position(|m| *m == ServerMessage::Clear)
        .map(|i| from + i)
}

/// `frames` more of the caller's silence and a moment to read: the media
/// bytes Twilio got after `got[clear]`.
fn media_after(
    t: &mut TwilioStream,
    got: &mut Vec<ServerMessage>,
    clear: usize,
    frames: usize,
) -> usize {
    got.extend(t.stream_audio(&silence(frames)).expect("stream"));
    let _ = t.read_until(Instant::now() + Duration::from_millis(500), got);
    media_bytes(&got[clear..]).len()
}

fn stream_ended(srv: &RunningServer, call_sid: &str) -> HttpResponse {
    post_signed(
        srv.addr,
        HOST,
        "/webhook/stream_ended",
        &[
            ("CallSid", call_sid),
            ("AccountSid", ACCOUNT),
            ("CallStatus", "in-progress"),
        ],
    )
    .expect("answer")
}

/// A play line of `ms` of a 440 Hz tone at `rate`.
fn tone_play(ms: u32, rate: u32) -> String {
    let n = rate * ms / 1000;
    let bytes: Vec<u8> = (0..n)
        .flat_map(|i| {
            let s = (8000.0
                * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / f64::from(rate)).sin())
                as i16;
            s.to_le_bytes()
        })
        .collect();
    format!(
        r#"{{"type":"play","rate":{rate},"pcm":"{}"}}"#,
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The real path, as a bot author meets it: Twilio posts the incoming call,
/// the server answers TwiML, Twilio's `start` carries that TwiML's
/// `<Parameter>`s (taken from the answer here, not written by hand), and the
/// program reads them under the names the server wrote: `call_sid`, `from`,
/// `to`, then the operator's own (`--stream-parameter`).
#[test]
fn the_program_gets_the_call_facts_in_start_and_its_environment() {
    let (srv, dir) = server_with(
        "echo $$ > $DIR/pid; IFS= read -r line; printf '%s\\n' \"$line\" > $DIR/start; env > $DIR/env; cat > /dev/null",
        |s| s.stream_parameters = vec![("x-tenant".to_owned(), "acme".to_owned())],
    );
    let call_sid = callstream_twilio::Stream::numbered(1).call_sid;
    let answer = post_signed(
        srv.addr,
        HOST,
        "/webhook/incoming_call",
        &[
            ("CallSid", call_sid.as_str()),
            ("AccountSid", ACCOUNT),
            ("From", "+15551230000"),
            ("To", "+15559870000"),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
            ("CallerName", "Ada Lovelace"),
            ("ForwardedFrom", "+15550001111"),
        ],
    )
    .expect("answer");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let (url, params) = callstream_twilio::twiml::stream(&answer.body).expect("a <Stream>");
    assert_eq!(url, format!("wss://{HOST}/ws/twilio-media"));
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut t = TwilioStream::connect(srv.addr, &StreamOpts::default(), 1).expect("connect");
    assert_eq!(t.call_sid, call_sid);
    t.start(&params).expect("start");
    assert!(wait_for(
        || read_file(&dir.path().join("env")).contains("CALLSTREAM_PARAM_X_TENANT")
    ));
    let start: serde_json::Value =
        serde_json::from_str(&read_file(&dir.path().join("start"))).expect("start is JSON");
    assert_eq!(start["type"], "start");
    assert_eq!(start["version"], 2);
    assert_eq!(start["call_sid"], t.call_sid.as_str());
    assert_eq!(start["stream_sid"], t.stream_sid.as_str());
    assert_eq!(start["account_sid"], ACCOUNT);
    // Exactly the names docs/bridge.md gives, and no others.
    let names: Vec<&String> = start["parameters"]
        .as_object()
        .expect("parameters")
        .keys()
        .collect();
    assert_eq!(
        names,
        [
            "call_sid",
            "caller_name",
            "direction",
            "forwarded_from",
            "from",
            "to",
            "x-tenant"
        ],
        "{start}"
    );
    assert_eq!(start["parameters"]["call_sid"], call_sid.as_str());
    assert_eq!(start["parameters"]["from"], "+15551230000");
    assert_eq!(start["parameters"]["to"], "+15559870000");
    assert_eq!(start["parameters"]["direction"], "inbound");
    assert_eq!(start["parameters"]["caller_name"], "Ada Lovelace");
    assert_eq!(start["parameters"]["forwarded_from"], "+15550001111");
    assert_eq!(start["parameters"]["x-tenant"], "acme");
    let env = read_file(&dir.path().join("env"));
    for want in [
        format!("CALLSTREAM_CALL_SID={}", t.call_sid),
        format!("CALLSTREAM_STREAM_SID={}", t.stream_sid),
        format!("CALLSTREAM_ACCOUNT_SID={ACCOUNT}"),
        format!("CALLSTREAM_PARAM_CALL_SID={call_sid}"),
        "CALLSTREAM_PARAM_FROM=+15551230000".to_owned(),
        "CALLSTREAM_PARAM_TO=+15559870000".to_owned(),
        "CALLSTREAM_PARAM_CALLER_NAME=Ada Lovelace".to_owned(),
        "CALLSTREAM_PARAM_X_TENANT=acme".to_owned(),
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "{want} not in the environment:\n{env}"
        );
    }
    drop(t); // the caller hangs up: the program is reaped
    assert_reaped(dir.path(), "pid");
}

#[test]
fn the_echo_bot_hears_a_turn_and_plays_it_back_then_hangs_up_on_hash() {
    let echo = repo().join("examples/bots/echo/echo.sh");
    echo_bot_plays_a_turn_back_then_hangs_up(&format!("exec:sh '{}'", echo.display()));
}

#[test]
#[ignore = "needs node: .ci/run runs it"]
fn the_node_echo_bot_on_the_bot_package_does_the_same() {
    // examples/bots/echo/echo.js is a subclass of sdk/node's Bot: the
    // package's exec transport behind the real server.
    let echo = repo().join("examples/bots/echo/echo.js");
    echo_bot_plays_a_turn_back_then_hangs_up(&format!("exec:node '{}'", echo.display()));
}

fn echo_bot_plays_a_turn_back_then_hangs_up(handler: &str) {
    let srv = RunningServer::start(|s| {
        s.handler = handler.parse().expect("handler");
    });
    let mut t = call(&srv, 2);
    let mut got = t.stream_audio(&speech()).expect("stream");
    got.extend(t.stream_audio(&silence(50)).expect("stream"));
    assert!(
        read_until_mark(&mut t, "echo-1", &mut got),
        "no echo-1 mark: {got:?}"
    );
    let echoed = media_bytes(&got);
    // The turn as the detector cut it: the 1.9 s of speech with margins.
    assert!(
        echoed.len() >= 8000 * 18 / 10,
        "only {} bytes echoed",
        echoed.len()
    );
    let loud = echoed.iter().filter(|&&b| (b & 0x7f) < 0x50).count();
    assert!(
        loud > 800,
        "the echo is not the speech ({loud} loud samples)"
    );
    let mark_at = got
        .iter()
        .position(|m| *m == ServerMessage::Mark("echo-1".into()));
    let last_media = got
        .iter()
        .rposition(|m| matches!(m, ServerMessage::Media(_)));
    assert!(mark_at > last_media, "the mark follows the audio");
    t.mark_echo("echo-1").expect("echo");
    t.dtmf('#').expect("dtmf");
    assert!(read_until_closed(&mut t, &mut got), "no close after hangup");
    assert!(got.contains(&ServerMessage::Closed(Some(1000))), "{got:?}");
    let r = stream_ended(&srv, &t.call_sid);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.ends_with("<Response><Hangup/></Response>"),
        "{}",
        r.body
    );
}

#[test]
fn marks_dtmf_and_barge_in_reach_the_program_with_what_was_heard() {
    // Three seconds of tone and a mark, then everything it reads to a file.
    let script = format!(
        "echo $$ > $DIR/pid\nprintf '%s\\n' '{}' '{{\"type\":\"mark\",\"name\":\"long\"}}' '{{\"type\":\"mark\",\"name\":\"short\"}}'\ncat > $DIR/in\n",
        tone_play(3000, 16000)
    );
    let (srv, dir) = server_with(&script, |_| {});
    let mut t = call(&srv, 3);
    t.dtmf('5').expect("dtmf");
    let mut got = Vec::new();
    t.read_media(8000, PATIENCE, &mut got).expect("media");
    // The caller talks over the tone a second in.
    got.extend(t.stream_audio(&speech()[4000..16000]).expect("stream"));
    assert!(
        got.contains(&ServerMessage::Clear),
        "no clear: barge-in did not happen"
    );
    let input = dir.path().join("in");
    assert!(
        wait_for(|| read_file(&input).contains(r#""outcome":"cleared""#)),
        "{}",
        read_file(&input)
    );
    let lines: Vec<serde_json::Value> = read_file(&input)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let kinds: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(kinds[0], "start");
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "dtmf" && l["digit"] == "5"),
        "{kinds:?}"
    );
    let b = kinds
        .iter()
        .position(|k| *k == "barge_in")
        .expect("barge_in");
    assert_eq!(kinds[b - 1], "speech_started", "{kinds:?}");
    let barge = &lines[b];
    assert_eq!(barge["cleared"], serde_json::json!(["long", "short"]));
    let heard = barge["heard_ms"].as_u64().expect("heard_ms");
    // The tone started playing at once and the caller cut in after about a
    // second of it (by the schedule, plus the detector's decision time).
    assert!((500..3000).contains(&heard), "heard_ms {heard}");
    assert_eq!(
        lines[b + 1],
        serde_json::json!({"type":"mark","name":"long","outcome":"cleared"})
    );
    assert_eq!(
        lines[b + 2],
        serde_json::json!({"type":"mark","name":"short","outcome":"cleared"})
    );
    t.stop().expect("stop");
    assert!(wait_for(|| read_file(&input).contains(r#""type":"stop""#)));
    assert_reaped(dir.path(), "pid");
}

#[test]
fn a_mark_written_after_a_barge_in_cut_its_audio_comes_back_cleared() {
    // A bot writes a reply's play, and its mark only a moment later: a
    // barge-in in between cuts the audio before the mark arrives. The mark
    // marks audio the caller did not hear: it resolves `cleared`, not
    // `played`. A mark after new audio is the new audio's (`played`).
    let script = format!(
        "echo $$ > $DIR/pid\nread -r start\nprintf '%s\\n' '{}'\nwhile IFS= read -r l; do echo \"$l\" >> $DIR/in; case $l in *'\"barge_in\"'*) printf '%s\\n' '{{\"type\":\"mark\",\"name\":\"late\"}}' '{}' '{{\"type\":\"mark\",\"name\":\"after\"}}';; esac; done\n",
        tone_play(3000, 8000),
        tone_play(200, 8000)
    );
    let (srv, dir) = server_with(&script, |_| {});
    let mut t = call(&srv, 72);
    let mut got = Vec::new();
    t.read_media(8000, PATIENCE, &mut got).expect("media");
    got.extend(t.stream_audio(&speech()[4000..16000]).expect("stream"));
    assert!(got.contains(&ServerMessage::Clear), "no barge-in: {got:?}");
    assert!(
        read_until_mark(&mut t, "after", &mut got),
        "no mark after the new audio: {got:?}"
    );
    t.mark_echo("after").expect("echo");
    let input = dir.path().join("in");
    assert!(
        wait_for(|| read_file(&input).contains(r#""name":"after""#)),
        "{}",
        read_file(&input)
    );
    let text = read_file(&input);
    assert!(
        text.contains(r#"{"type":"mark","name":"late","outcome":"cleared"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"{"type":"mark","name":"after","outcome":"played"}"#),
        "{text}"
    );
    t.stop().expect("stop");
    assert_reaped(dir.path(), "pid");
}

#[test]
fn barge_in_off_by_the_server_setting_lets_the_reply_play_through() {
    // As above, the caller talks over three seconds of tone, on a server
    // started with barge-in off: no clear, the mark comes back played, and
    // the program still hears the turn.
    let script = format!(
        "echo $$ > $DIR/pid\nprintf '%s\\n' '{}' '{{\"type\":\"mark\",\"name\":\"long\"}}'\ncat > $DIR/in\n",
        tone_play(3000, 16000)
    );
    let (srv, dir) = server_with(&script, |s| s.barge_in = false);
    let mut t = call(&srv, 4);
    let mut got = Vec::new();
    t.read_media(8000, PATIENCE, &mut got).expect("media");
    got.extend(t.stream_audio(&speech()[4000..16000]).expect("stream"));
    assert!(
        read_until_mark(&mut t, "long", &mut got),
        "the mark never came: {got:?}"
    );
    assert!(!got.contains(&ServerMessage::Clear), "cleared: {got:?}");
    t.mark_echo("long").expect("echo");
    let input = dir.path().join("in");
    assert!(
        wait_for(|| read_file(&input).contains(r#""outcome":"played""#)),
        "{}",
        read_file(&input)
    );
    let text = read_file(&input);
    assert!(text.contains(r#""type":"speech_started""#), "{text}");
    assert!(!text.contains(r#""type":"barge_in""#), "{text}");
    t.stop().expect("stop");
    assert!(wait_for(|| read_file(&input).contains(r#""type":"stop""#)));
    assert_reaped(dir.path(), "pid");
}

#[test]
fn a_barge_in_drops_what_waits_of_the_reply_and_its_marks_resolve_cleared() {
    // 40 s of tone in one play (far more than the bridge queues in the call,
    // so most of it still waits in the bridge when the caller cuts in), then
    // a mark for the end of that reply.
    let script = format!(
        "echo $$ > $DIR/pid\nread -r line\nprintf '%s\\n' '{}' '{{\"type\":\"mark\",\"name\":\"after\"}}'\ncat > $DIR/in\n",
        tone_play(40_000, 8000)
    );
    let (srv, dir) = server_with(&script, |_| {});
    let mut t = call(&srv, 16);
    let mut got = Vec::new();
    t.read_media(8000, PATIENCE, &mut got).expect("media");
    got.extend(t.stream_audio(&speech()[4000..16000]).expect("stream"));
    let clear = got
        .iter()
        .position(|m| *m == ServerMessage::Clear)
        .expect("no clear: barge-in did not happen");
    // Two seconds more of the call: nothing of the cut reply plays.
    let replayed = media_after(&mut t, &mut got, clear, 100);
    assert_eq!(
        replayed, 0,
        "{replayed} bytes of the cut reply were played after the clear"
    );
    assert!(
        !got.contains(&ServerMessage::Mark("after".into())),
        "the mark of the cut reply reached Twilio"
    );
    let input = dir.path().join("in");
    assert!(
        wait_for(
            || read_file(&input).contains(r#"{"type":"mark","name":"after","outcome":"cleared"}"#)
        ),
        "{}",
        read_file(&input)
    );
    let text = read_file(&input);
    let barge = text
        .lines()
        .find(|l| l.contains("barge_in"))
        .expect("barge_in");
    assert!(barge.contains(r#""cleared":["after"]"#), "{barge}");
    t.stop().expect("stop");
    assert_reaped(dir.path(), "pid");
}

#[test]
fn transfer_closes_the_stream_and_stream_ended_dials() {
    let (srv, dir) = server_with(
        "echo $$ > $DIR/pid; read -r line; printf '%s\\n' '{\"type\":\"transfer\",\"to\":\"+14155550100\"}'; cat > $DIR/in",
        |_| {},
    );
    let mut t = call(&srv, 4);
    let mut got = Vec::new();
    assert!(
        read_until_closed(&mut t, &mut got),
        "the stream was not closed"
    );
    assert!(got.contains(&ServerMessage::Closed(Some(1000))), "{got:?}");
    let r = stream_ended(&srv, &t.call_sid);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    assert!(
        r.body
            .ends_with("<Response><Dial><Number>+14155550100</Number></Dial></Response>"),
        "{}",
        r.body
    );
    // Answered once: a repeat (or another call) gets the default 204.
    assert_eq!(stream_ended(&srv, &t.call_sid).status, 204);
    let input = dir.path().join("in");
    assert!(
        wait_for(|| read_file(&input)
            .contains(r#"{"type":"stop","reason":"the program ended the call"}"#)),
        "{}",
        read_file(&input)
    );
    assert_reaped(dir.path(), "pid");
}

/// The rows of the docs' table that starts after `heading`: the cells of
/// each row, backquotes removed.
fn doc_table(doc: &str, heading: &str) -> Vec<Vec<String>> {
    doc.split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("no {heading:?} in the docs"))
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn what_the_docs_say_stream_ended_answers_is_what_it_answers() {
    // docs/bridge.md "After the stream": each program line of the table,
    // written by a program behind the real server, and the TwiML (or the
    // status) the docs give for it. The session example's `stop` line is
    // what the program then reads.
    let doc = read_file(&repo().join("docs/bridge.md"));
    let rows = doc_table(&doc, "## After the stream");
    assert!(rows.len() >= 5, "{rows:?}");
    let stop_line = doc
        .lines()
        .find(|l| l.starts_with(r#"< {"type":"stop""#))
        .expect("the session example's stop")
        .trim_start_matches("< ")
        .to_owned();
    for (n, row) in rows.iter().enumerate() {
        let (line, answer) = (&row[0], &row[1]);
        let (srv, dir) = server_with(
            &format!("echo $$ > $DIR/pid; read -r start; printf '%s\\n' '{line}'; cat > $DIR/in"),
            |_| {},
        );
        let mut t = call(&srv, 60 + n as u32);
        let mut got = Vec::new();
        assert!(read_until_closed(&mut t, &mut got), "{line}: no close");
        let r = stream_ended(&srv, &t.call_sid);
        if let Ok(status) = answer.parse::<u16>() {
            assert_eq!(r.status, status, "{line}: {}", r.body);
        } else {
            assert_eq!(r.status, 200, "{line}: {}", r.body);
            assert!(
                r.body.ends_with(answer.as_str()),
                "{line}: the docs say {answer}, the server answered {}",
                r.body
            );
        }
        let input = dir.path().join("in");
        assert!(
            wait_for(|| read_file(&input).contains(&stop_line)),
            "{line}: the program read {} (the docs: {stop_line})",
            read_file(&input)
        );
        assert_reaped(dir.path(), "pid");
    }
}

#[test]
fn an_utterance_carries_the_documented_margin_before_and_after_the_speech() {
    // The fixture's phrase begins after 600 ms of digital silence: an
    // utterance at 8 kHz holds MARGIN_MS of that silence before the first
    // sample of speech, and as much after its end, as docs/bridge.md says.
    let doc = read_file(&repo().join("docs/bridge.md"));
    let said = format!(
        "with {} ms of audio before and after the speech",
        callstream_bridge::handler::MARGIN_MS
    );
    assert!(doc.contains(&said), "docs/bridge.md does not say {said:?}");
    let (srv, dir) = server_with(
        "echo $$ > $DIR/pid; printf '%s\\n' '{\"type\":\"config\",\"rate\":8000}'; cat > $DIR/in",
        |_| {},
    );
    let mut t = call(&srv, 70);
    t.stream_audio(&speech()).expect("stream");
    t.stream_audio(&silence(50)).expect("stream");
    t.stop().expect("stop");
    let input = dir.path().join("in");
    assert!(wait_for(|| read_file(&input).contains(r#""type":"stop""#)));
    let text = read_file(&input);
    let utterance: serde_json::Value = text
        .lines()
        .find(|l| l.contains(r#""type":"utterance""#))
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .expect("an utterance");
    let pcm: Vec<i16> = base64::engine::general_purpose::STANDARD
        .decode(utterance["pcm"].as_str().expect("pcm"))
        .expect("base64")
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    // Speech as the detector's gate sees it: 20 ms frames (the utterance
    // is made of whole frames) above -45 dBFS RMS.
    let frames: Vec<bool> = pcm
        .chunks(160)
        .map(|f| {
            let power = f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len() as f64;
            10.0 * (power / (32768.0f64 * 32768.0)).log10() > -45.0
        })
        .collect();
    let first = frames.iter().position(|&v| v).expect("speech");
    let last = frames.iter().rposition(|&v| v).expect("speech");
    let (before, after) = (first as u64 * 20, (frames.len() - 1 - last) as u64 * 20);
    let margin = callstream_bridge::handler::MARGIN_MS;
    // The detector dates speech to the frame; its start may take in a
    // frame or two of a word's quiet onset, its end the decay after.
    assert!(
        (margin..=margin + 60).contains(&before),
        "{before} ms before the speech"
    );
    assert!(
        (margin..=margin + 60).contains(&after),
        "{after} ms after the speech"
    );
    assert_reaped(dir.path(), "pid");
}

#[test]
fn the_bridges_latencies_are_in_metrics() {
    // A program that answers each turn with a short play: the turn's
    // utterance and the play are each counted in their histogram, its
    // buckets cumulative up to the count. (The counters are the process's:
    // other tests add to them, never take away.)
    let (srv, dir) = server_with(
        &format!(
            "echo $$ > $DIR/pid; while IFS= read -r l; do case $l in *'\"utterance\"'*) printf '%s\\n' '{}';; esac; done",
            tone_play(200, 8000)
        ),
        |_| {},
    );
    let utterances = metric(srv.addr, "callstream_bridge_utterance_seconds_count");
    let plays = metric(srv.addr, "callstream_bridge_play_seconds_count");
    let mut t = call(&srv, 71);
    let mut got = t.stream_audio(&speech()).expect("stream");
    got.extend(t.stream_audio(&silence(30)).expect("stream"));
    t.read_media(1600, PATIENCE, &mut got).expect("the answer");
    assert!(wait_for(|| metric(
        srv.addr,
        "callstream_bridge_utterance_seconds_count"
    ) > utterances));
    assert!(wait_for(|| metric(
        srv.addr,
        "callstream_bridge_play_seconds_count"
    ) > plays));
    let text = http_raw(
        srv.addr,
        b"GET /metrics HTTP/1.1\r\nHost: callstream.test\r\nConnection: close\r\n\r\n",
    )
    .expect("metrics")
    .body;
    for family in [
        "callstream_bridge_utterance_seconds",
        "callstream_bridge_play_seconds",
    ] {
        let buckets: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{family}_bucket{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        assert_eq!(buckets.len(), 13, "{family}: {text}");
        assert!(
            buckets.windows(2).all(|w| w[0] <= w[1]),
            "{family}: {buckets:?}"
        );
        assert!(text.contains(&format!("# TYPE {family} histogram")));
    }
    t.stop().expect("stop");
    assert_reaped(dir.path(), "pid");
}

#[test]
fn end_says_goodbye_and_a_bad_transfer_number_is_ignored() {
    let (srv, _dir) = server_with(
        "read -r line; printf '%s\\n' '{\"type\":\"transfer\",\"to\":\"555\"}' '{\"type\":\"end\",\"say\":\"Goodbye & thanks\"}'; cat > /dev/null",
        |_| {},
    );
    let mut t = call(&srv, 5);
    let mut got = Vec::new();
    assert!(read_until_closed(&mut t, &mut got));
    let r = stream_ended(&srv, &t.call_sid);
    assert!(
        r.body
            .ends_with("<Response><Say>Goodbye &amp; thanks</Say><Hangup/></Response>"),
        "{}",
        r.body
    );
}

/// One HTTP request, as a local stand-in for Twilio's REST API saw it.
struct Captured {
    head: String,
    body: String,
}

fn fake_twilio_api() -> (String, std::sync::mpsc::Receiver<Captured>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", l.local_addr().expect("addr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let answer = "{\"sid\":\"CA\"}";
            let _ = write!(
                r.get_mut(),
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = tx.send(Captured {
                head,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
    });
    (base, rx)
}

fn form_decode(body: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex"));
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).expect("utf-8")
    }
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (dec(k), dec(v)))
        .collect()
}

#[test]
fn with_an_account_sid_a_transfer_redirects_the_live_call_through_the_rest_api() {
    let (base, requests) = fake_twilio_api();
    let (srv, _dir) = server_with(
        "read -r line; printf '%s\\n' '{\"type\":\"transfer\",\"to\":\"+14155550100\"}'; cat > /dev/null",
        |s| {
            s.account_sid = Some(ACCOUNT.to_owned());
            s.twilio_api_base_url = base.clone();
        },
    );
    let mut t = call(&srv, 6);
    let req = requests
        .recv_timeout(PATIENCE)
        .expect("the REST API was called");
    let first = req.head.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "POST /2010-04-01/Accounts/{ACCOUNT}/Calls/{}.json HTTP/1.1",
            t.call_sid
        )
    );
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"));
    assert!(
        req.head
            .lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Basic {auth}"))),
        "{}",
        req.head
    );
    assert!(
        req.head
            .to_ascii_lowercase()
            .contains("content-type: application/x-www-form-urlencoded"),
        "{}",
        req.head
    );
    let fields = form_decode(&req.body);
    assert_eq!(fields.len(), 1, "{fields:?}");
    assert_eq!(fields[0].0, "Twiml");
    assert!(
        fields[0]
            .1
            .ends_with("<Response><Dial><Number>+14155550100</Number></Dial></Response>"),
        "{}",
        fields[0].1
    );
    let mut got = Vec::new();
    assert!(read_until_closed(&mut t, &mut got));
    // The live call was redirected: the action URL has nothing left to do.
    assert_eq!(stream_ended(&srv, &t.call_sid).status, 204);
}

fn failure_case(
    script: &str,
    policy: OnFailure,
    provoke: impl FnOnce(&mut TwilioStream),
) -> (RunningServer, tempfile::TempDir, TwilioStream, bool) {
    let (srv, dir) = server_with(script, |s| s.bridge_on_failure = policy);
    let mut t = call(&srv, 7);
    provoke(&mut t);
    let mut got = Vec::new();
    let closed = match policy {
        OnFailure::Hangup => read_until_closed(&mut t, &mut got),
        OnFailure::Continue => {
            // The program is dead; the call must not end by itself.
            assert!(wait_for(|| !read_file(&dir.path().join("pid")).is_empty()));
            assert!(wait_for(|| process_gone(&read_file(
                &dir.path().join("pid")
            ))));
            let _ = t.read_until(Instant::now() + Duration::from_millis(500), &mut got);
            got.iter().any(|m| matches!(m, ServerMessage::Closed(_)))
        }
    };
    (srv, dir, t, closed)
}

#[test]
fn a_crashed_program_ends_the_call_by_default() {
    let (_srv, dir, _t, closed) = failure_case(
        "echo $$ > $DIR/pid; read -r line; exit 3",
        OnFailure::Hangup,
        |_| {},
    );
    assert!(closed, "the call did not end");
    assert_reaped(dir.path(), "pid");
}

#[test]
fn a_crashed_program_leaves_the_call_in_silence_with_continue() {
    let (_srv, dir, mut t, closed) = failure_case(
        "echo $$ > $DIR/pid; read -r line; exit 3",
        OnFailure::Continue,
        |_| {},
    );
    assert!(!closed, "the call ended");
    // Still served: the caller's stop ends it normally.
    t.stop().expect("stop");
    let mut got = Vec::new();
    assert!(read_until_closed(&mut t, &mut got));
    assert_reaped(dir.path(), "pid");
}

#[test]
fn a_program_that_never_reads_fails_once_its_queue_is_full_and_its_whole_group_dies() {
    let (_srv, dir, _t, closed) = failure_case(
        "echo $$ > $DIR/pid; sleep 1000 & echo $! > $DIR/child; wait",
        OnFailure::Hangup,
        |t| {
            // Far more than the pipe and the queue hold.
            for _ in 0..5000 {
                t.dtmf('1').expect("dtmf");
            }
        },
    );
    assert!(closed, "the call did not end");
    assert_reaped(dir.path(), "pid");
    assert_reaped(dir.path(), "child");
}

#[test]
fn garbage_lines_are_dropped_and_the_call_goes_on() {
    let (srv, dir) = server_with(
        "echo $$ > $DIR/pid; read -r line; printf '%s\\n' 'not json' '[1]' '{\"x\":1}' '{\"type\":\"play\",\"rate\":1,\"pcm\":\"\"}' '{\"type\":\"play\",\"rate\":8000,\"pcm\":\"!!\"}' '{\"type\":\"config\",\"rate\":8000}' '{\"type\":\"from_the_future\"}' '' '{\"type\":\"mark\",\"name\":\"after-garbage\"}'; cat > /dev/null",
        |_| {},
    );
    let mut t = call(&srv, 8);
    let mut got = Vec::new();
    assert!(
        read_until_mark(&mut t, "after-garbage", &mut got),
        "{got:?}"
    );
    t.stop().expect("stop");
    assert_reaped(dir.path(), "pid");
}

#[test]
fn an_over_long_line_is_a_failure() {
    let (_srv, dir, _t, closed) = failure_case(
        "echo $$ > $DIR/pid; read -r line; head -c 17000000 /dev/zero | tr '\\000' a; echo; cat > /dev/null",
        OnFailure::Hangup,
        |_| {},
    );
    assert!(closed, "the call did not end");
    assert_reaped(dir.path(), "pid");
}

#[test]
fn an_endless_stderr_line_is_skipped_without_being_held() {
    // 256 MiB on stderr without a newline: once the program has written it
    // all, the server has read all but a pipe's worth, and must not hold it.
    let (srv, dir) = server_with(
        "echo $$ > $DIR/pid; read -r line; head -c 268435456 /dev/zero >&2; touch $DIR/done; cat > /dev/null",
        |_| {},
    );
    let rss0 = self_rss_kib();
    let mut t = call(&srv, 15);
    assert!(
        wait_for(|| dir.path().join("done").exists()),
        "the program's stderr was not read"
    );
    let grown = self_rss_kib().saturating_sub(rss0);
    assert!(
        grown < 96 * 1024,
        "the server grew by {grown} KiB reading one stderr line"
    );
    t.stop().expect("stop");
    assert_reaped(dir.path(), "pid");
}

#[test]
fn a_flood_is_bounded_and_a_clear_behind_it_acts_at_once() {
    // Three minutes of audio written as fast as sh can, then a clear: the
    // bridge queues two minutes, refuses the rest with an error, and the
    // clear behind all of it stops the audio within a few frames.
    let script = format!(
        "echo $$ > $DIR/pid; read -r line; i=0; while [ $i -lt 180 ]; do printf '%s\\n' '{}'; i=$((i+1)); done; touch $DIR/wrote-all; while read -r l; do case \"$l\" in *dtmf*) break;; esac; echo \"$l\" >> $DIR/seen; done; printf '%s\\n' '{{\"type\":\"clear\"}}'; cat > $DIR/in",
        tone_play(1000, 8000)
    );
    let (srv, dir) = server_with(&script, |_| {});
    let mut t = call(&srv, 9);
    let mut got = Vec::new();
    t.read_media(8000 * 2, PATIENCE, &mut got).expect("media");
    assert!(
        media_bytes(&got).len() >= 16000,
        "audio flows: {} bytes, {:?}",
        media_bytes(&got).len(),
        got.iter()
            .filter(|m| !matches!(m, ServerMessage::Media(_)))
            .collect::<Vec<_>>()
    );
    assert!(
        wait_for(|| dir.path().join("wrote-all").exists()),
        "the program was held: it must not wait on its audio"
    );
    // Any event gets the program's clear going (it waits for one line).
    t.dtmf('1').expect("dtmf");
    let before = got.len();
    let clear = stream_until_clear(&mut t, &mut got, before, 20)
        .expect("the clear behind the flood never came");
    assert_eq!(
        media_after(&mut t, &mut got, clear, 50),
        0,
        "audio after the clear"
    );
    t.stop().expect("stop");
    let input = dir.path().join("in");
    assert!(wait_for(|| read_file(&input).contains(r#""type":"stop""#)));
    let refused = read_file(&dir.path().join("seen"))
        .lines()
        .filter(|l| l.starts_with(r#"{"type":"error","of":"play","reason":"queue full"#))
        .count();
    // The plays past two minutes waiting (a second or two went on into the
    // call meanwhile, making room for as many more).
    assert!((55..=60).contains(&refused), "{refused} plays refused");
    assert_reaped(dir.path(), "pid");
    drop(srv);
}

#[test]
fn a_slow_program_is_waited_for() {
    let (srv, dir) = server_with(
        &format!(
            "echo $$ > $DIR/pid; read -r line; sleep 1; printf '%s\\n' '{}' '{{\"type\":\"mark\",\"name\":\"late\"}}'; cat > /dev/null",
            tone_play(200, 8000)
        ),
        |_| {},
    );
    let mut t = call(&srv, 10);
    let mut got = Vec::new();
    assert!(read_until_mark(&mut t, "late", &mut got), "{got:?}");
    assert!(media_bytes(&got).len() >= 1600);
    t.stop().expect("stop");
    assert_reaped(dir.path(), "pid");
}

#[test]
fn a_program_that_cannot_start_fails_the_call() {
    let srv = RunningServer::start(|s| {
        s.handler = "exec:exec /nonexistent/bot".parse().expect("handler");
    });
    let mut t = call(&srv, 11);
    let mut got = Vec::new();
    assert!(read_until_closed(&mut t, &mut got), "the call did not end");
}

#[test]
fn the_server_reaps_every_program_before_it_returns() {
    let (srv, dir) = server_with(
        // Ignores SIGTERM and never reads: only SIGKILL ends it.
        "trap '' TERM; echo $$ > $DIR/pid; while :; do sleep 1; done",
        |s| s.drain_seconds = 3,
    );
    let _t = call(&srv, 12);
    assert!(wait_for(|| !read_file(&dir.path().join("pid")).is_empty()));
    srv.stop().expect("stop");
    let pid = read_file(&dir.path().join("pid"));
    assert!(process_gone(&pid), "program {pid} outlived the server");
}

/// A bot as a WebSocket service: plays a tone with a mark at `start`,
/// transfers once the mark comes back played.
#[allow(clippy::result_large_err)] // tungstenite's callback signature
fn ws_bot() -> (String, std::sync::mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ws://{}/bot", l.local_addr().expect("addr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        let query = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let q = query.clone();
        let cb = move |req: &tungstenite::handshake::server::Request, resp| {
            *q.lock().expect("lock") = req.uri().query().unwrap_or_default().to_owned();
            Ok(resp)
        };
        let Ok(mut ws) = tungstenite::accept_hdr(s, cb) else {
            return;
        };
        let _ = tx.send(format!("query {}", query.lock().expect("lock")));
        let send = |ws: &mut tungstenite::WebSocket<std::net::TcpStream>, text: String| {
            let _ = ws.send(tungstenite::Message::text(text));
        };
        send(
            &mut ws,
            r#"{"type":"config","rate":8000,"audio":false}"#.to_owned(),
        );
        while let Ok(m) = ws.read() {
            let tungstenite::Message::Text(t) = m else {
                continue;
            };
            let text = t.as_str().to_owned();
            let _ = tx.send(text.clone());
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            match v["type"].as_str() {
                Some("start") => {
                    send(&mut ws, r#"{"type":"reply","text":"hello"}"#.to_owned());
                    send(&mut ws, tone_play(400, 24000));
                    send(&mut ws, r#"{"type":"mark","name":"hello"}"#.to_owned());
                }
                Some("mark") if v["outcome"] == "played" => {
                    send(
                        &mut ws,
                        r#"{"type":"transfer","to":"+14155550111"}"#.to_owned(),
                    );
                }
                Some("stop") => break,
                _ => {}
            }
        }
        let _ = ws.close(None);
        while ws.read().is_ok() {}
    });
    (url, rx)
}

#[test]
fn a_websocket_service_holds_the_same_conversation() {
    let (url, seen) = ws_bot();
    let srv = RunningServer::start(|s| {
        s.handler = url.parse().expect("handler");
    });
    let mut t = call(&srv, 13);
    let query = seen.recv_timeout(PATIENCE).expect("connected");
    assert_eq!(
        query,
        format!(
            "query call_sid={}&stream_sid={}&account_sid={ACCOUNT}",
            t.call_sid, t.stream_sid
        )
    );
    let start: serde_json::Value =
        serde_json::from_str(&seen.recv_timeout(PATIENCE).expect("start")).expect("json");
    assert_eq!(start["call_sid"], t.call_sid.as_str());
    assert_eq!(start["parameters"]["x-tenant"], "acme");
    let mut got = Vec::new();
    assert!(read_until_mark(&mut t, "hello", &mut got), "{got:?}");
    // 400 ms at 24 kHz, resampled to 8 kHz.
    assert_eq!(media_bytes(&got).len(), 3200);
    t.mark_echo("hello").expect("echo");
    assert!(
        read_until_closed(&mut t, &mut got),
        "no close after the transfer"
    );
    let r = stream_ended(&srv, &t.call_sid);
    assert!(
        r.body
            .ends_with("<Dial><Number>+14155550111</Number></Dial></Response>"),
        "{}",
        r.body
    );
    let rest: Vec<String> = std::iter::from_fn(|| seen.recv_timeout(PATIENCE).ok()).collect();
    assert!(
        rest.iter()
            .any(|m| m == r#"{"type":"mark","name":"hello","outcome":"played"}"#),
        "{rest:?}"
    );
    assert!(
        rest.iter().any(|m| m.starts_with(r#"{"type":"stop""#)),
        "{rest:?}"
    );
}

#[test]
fn a_websocket_service_that_is_down_fails_the_call() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ws://{}/", l.local_addr().expect("addr"));
    drop(l); // nothing listens there now
    let srv = RunningServer::start(|s| {
        s.handler = url.parse().expect("handler");
    });
    let mut t = call(&srv, 14);
    let mut got = Vec::new();
    assert!(read_until_closed(&mut t, &mut got), "the call did not end");
}

/// A one-second 16 kHz tone as a WAV file in `dir`.
fn tone_wav(dir: &Path) -> PathBuf {
    let path = dir.join("tone.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).expect("wav");
    for i in 0..16000 {
        let s =
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 16000.0).sin()) as i16;
        w.write_sample(s).expect("sample");
    }
    w.finalize().expect("wav");
    path
}

#[test]
fn a_program_plays_a_wav_file_but_not_a_fifo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = tone_wav(dir.path());
    let (srv, dir) = server_with(
        &format!(
            "echo $$ > $DIR/pid; read -r line; mkfifo $DIR/fifo; printf '%s\\n' '{{\"type\":\"play\",\"wav\":\"$DIR/fifo\"}}' '{{\"type\":\"mark\",\"name\":\"fifo\"}}' '{{\"type\":\"play\",\"wav\":\"{}\"}}' '{{\"type\":\"mark\",\"name\":\"wav\"}}'; cat > /dev/null",
            wav.display()
        ),
        |_| {},
    );
    let mut t = call(&srv, 17);
    let mut got = Vec::new();
    // A FIFO would block the program's reader for good: refused instead.
    assert!(read_until_mark(&mut t, "fifo", &mut got), "{got:?}");
    let fifo = got
        .iter()
        .position(|m| *m == ServerMessage::Mark("fifo".into()))
        .expect("mark");
    assert!(media_bytes(&got[..fifo]).is_empty());
    assert!(read_until_mark(&mut t, "wav", &mut got), "{got:?}");
    assert_eq!(media_bytes(&got).len(), 8000, "the file plays");
    t.stop().expect("stop");
    assert_reaped(dir.path(), "pid");
}

#[test]
fn a_websocket_service_cannot_play_the_servers_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = tone_wav(dir.path());
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ws://{}/bot", l.local_addr().expect("addr"));
    let play = format!(r#"{{"type":"play","wav":"{}"}}"#, wav.display());
    std::thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        let Ok(mut ws) = tungstenite::accept(s) else {
            return;
        };
        for m in [play, r#"{"type":"mark","name":"after"}"#.to_owned()] {
            let _ = ws.send(tungstenite::Message::text(m));
        }
        while ws.read().is_ok() {}
    });
    let srv = RunningServer::start(|s| {
        s.handler = url.parse().expect("handler");
    });
    let mut t = call(&srv, 18);
    let mut got = Vec::new();
    assert!(read_until_mark(&mut t, "after", &mut got), "{got:?}");
    assert!(
        media_bytes(&got).is_empty(),
        "a ws service played a file of the server's"
    );
}

/// What pocketsphinx hears in `ulaw` (8 kHz) with the example bot's test
/// grammar for spoken times (examples/bots/python/test_bot.py).
fn hear_time(ulaw: &[u8]) -> String {
    let pcm: Vec<u8> = ulaw
        .iter()
        .flat_map(|&b| callstream_core::codec::decode(b).to_le_bytes())
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("answer.raw");
    std::fs::write(&raw, pcm).expect("write");
    let code = format!(
        "import sys; sys.path.insert(0, {:?}); import test_bot; print(' '.join(test_bot.hear_time(8000, open({:?}, 'rb').read())))",
        repo().join("examples/bots/python").display().to_string(),
        raw.display().to_string()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &code])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the recogniser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The caller's voice: espeak-ng's female en-us variant at 150 words a
/// minute (the one pocketsphinx hears best, as in the bot's own test), made
/// 8 kHz μ-law by sox.
fn caller_speech(text: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("q.wav");
    let raw = dir.path().join("q.ulaw");
    let ok = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us+f3", "-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng")
        .success();
    assert!(ok, "espeak-ng failed");
    // Repeatable and undithered (as tests/fixtures/make_speech.sh): sox's
    // default dither is random, so every run would speak a slightly
    // different question, and the bot's recogniser misheard about one in four.
    let ok = std::process::Command::new("sox")
        .args(["-R", "-D"])
        .arg(&wav)
        .args(["-r", "8000", "-c", "1", "-e", "mu-law", "-t", "raw"])
        .arg(&raw)
        .status()
        .expect("sox")
        .success();
    assert!(ok, "sox failed");
    std::fs::read(raw).expect("speech")
}

/// Media received after the last mark echo we sent: the bot's next answer.
fn answer_after(got: &[ServerMessage], from: usize) -> Vec<u8> {
    media_bytes(got.get(from..).unwrap_or(&[]))
}

#[test]
#[ignore = "needs espeak-ng, sox, pocketsphinx and websockets: .ci/run installs them (examples/bots/python/setup.sh) and runs it"]
fn end_to_end_with_the_offline_python_bot() {
    let bot = repo().join("examples/bots/python/bot.py");
    let srv = RunningServer::start(|s| {
        s.handler = format!("exec:python3 '{}'", bot.display())
            .parse()
            .expect("handler");
    });
    let mut t = call(&srv, 20);
    let mut got = Vec::new();
    // The greeting.
    assert!(
        read_until_mark(&mut t, "reply-1", &mut got),
        "no greeting: {got:?}"
    );
    t.mark_echo("reply-1").expect("echo");
    // A question spoken by espeak-ng; the answer comes back and is heard.
    // Should the bot's offline recogniser mishear it (with sox's random
    // dither it once heard "okay hi you me"; another espeak-ng, sox or
    // pocketsphinx may do so again), the test asks again as a caller would,
    // at most three times. Its replies are numbered.
    let question = caller_speech("what time is it");
    let mut reply = 1;
    let mut words = String::new();
    for _ in 0..3 {
        reply += 1;
        let mark = format!("reply-{reply}");
        let from = got.len();
        got.extend(t.stream_audio(&silence(25)).expect("stream"));
        got.extend(t.stream_audio(&question).expect("stream"));
        got.extend(t.stream_audio(&silence(50)).expect("stream"));
        assert!(
            read_until_mark(&mut t, &mark, &mut got),
            "no answer: {got:?}"
        );
        words = hear_time(&answer_after(&got, from));
        t.mark_echo(&mark).expect("echo");
        if words.starts_with("the time is") {
            break;
        }
    }
    assert!(words.starts_with("the time is"), "heard {words:?}");
    // A long answer, spoken over: callstream clears it.
    let weather = caller_speech("what is the weather");
    got.extend(t.stream_audio(&weather).expect("stream"));
    got.extend(t.stream_audio(&silence(25)).expect("stream"));
    let before = media_bytes(&got).len();
    t.read_media(before + 8000, PATIENCE, &mut got)
        .expect("the weather answer plays");
    let clears = got.iter().filter(|m| **m == ServerMessage::Clear).count();
    let agent = caller_speech("i want to talk to an agent");
    got.extend(t.stream_audio(&agent).expect("stream"));
    got.extend(t.stream_audio(&silence(50)).expect("stream"));
    assert!(
        got.iter().filter(|m| **m == ServerMessage::Clear).count() > clears,
        "speaking over the answer did not clear it"
    );
    // An agent: the bot announces the transfer (after the weather's reply),
    // then transfers when its mark returns.
    let mark = format!("reply-{}", reply + 2);
    assert!(
        read_until_mark(&mut t, &mark, &mut got),
        "no transfer announcement: {got:?}"
    );
    t.mark_echo(&mark).expect("echo");
    assert!(
        read_until_closed(&mut t, &mut got),
        "no close after the transfer"
    );
    let r = stream_ended(&srv, &t.call_sid);
    assert!(
        r.body
            .ends_with("<Response><Dial><Number>+14155550100</Number></Dial></Response>"),
        "{}",
        r.body
    );
}

/// The next mark the server sent after the `seen` already taken (reading
/// until it comes, [`PATIENCE`] passes or the stream closes): its name.
fn next_mark(
    t: &mut TwilioStream,
    got: &mut Vec<ServerMessage>,
    seen: &mut usize,
) -> Option<String> {
    let end = Instant::now() + PATIENCE;
    while Instant::now() < end {
        let mark = got
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Mark(n) => Some(n.clone()),
                _ => None,
            })
            .nth(*seen);
        if let Some(name) = mark {
            *seen += 1;
            return Some(name);
        }
        if got.iter().any(|m| matches!(m, ServerMessage::Closed(_))) {
            return None;
        }
        let _ = t.read_until(Instant::now() + Duration::from_millis(100), got);
    }
    None
}

/// A child process killed when dropped (a failed assertion too).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs python3 and the openai package (examples/bots/openai/setup.sh): .ci/run runs it"]
fn end_to_end_with_the_openai_bot_against_a_local_fake_of_the_api() {
    // examples/bots/openai/bot.py behind the real server, its OpenAI
    // endpoints served by examples/bots/openai/fake_openai.py (no network,
    // no account): the fake hears the first turn as "what time is it" and
    // the second as "goodbye", whatever the audio; its chat answers the
    // first in two sentences and ends the call on the second.
    let dir = repo().join("examples/bots/openai");
    let mut fake = std::process::Command::new("python3")
        .arg(dir.join("fake_openai.py"))
        .args(["--port", "0", "--key", "sk-callstream-test"])
        .args(["--hear", "what time is it", "--hear", "goodbye"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut log = BufReader::new(fake.stderr.take().expect("stderr"));
    let fake = KillOnDrop(fake);
    let mut first = String::new();
    log.read_line(&mut first).expect("the fake's first line");
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_owned();
    let (tx, requests) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in log.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let srv = RunningServer::start(|s| {
        s.handler = format!(
            "exec:env OPENAI_API_KEY=sk-callstream-test OPENAI_BASE_URL={base} python3 '{}'",
            dir.join("bot.py").display()
        )
        .parse()
        .expect("handler");
    });
    let mut t = call(&srv, 80);
    let mut got = Vec::new();
    let mut marks = 0;
    // The greeting, spoken by the fake's voice, and its mark.
    let greeting = next_mark(&mut t, &mut got, &mut marks).expect("no greeting");
    assert!(media_bytes(&got).len() > 4000, "the greeting is not audio");
    t.mark_echo(&greeting).expect("echo");
    // The first turn: a two-sentence answer, a play and a mark each.
    let from = got.len();
    got.extend(t.stream_audio(&speech()).expect("stream"));
    got.extend(t.stream_audio(&silence(25)).expect("stream"));
    for _ in 0..2 {
        let mark = next_mark(&mut t, &mut got, &mut marks).expect("no answer");
        t.mark_echo(&mark).expect("echo");
    }
    assert!(
        media_bytes(&got[from..]).len() > 8000,
        "the answer is not audio"
    );
    // The second turn: goodbye, its mark, then the bot hangs up.
    got.extend(t.stream_audio(&speech()).expect("stream"));
    got.extend(t.stream_audio(&silence(25)).expect("stream"));
    let bye = next_mark(&mut t, &mut got, &mut marks).expect("no goodbye");
    t.mark_echo(&bye).expect("echo");
    assert!(
        read_until_closed(&mut t, &mut got),
        "the bot did not hang up"
    );
    let r = stream_ended(&srv, &t.call_sid);
    assert!(
        r.body.ends_with("<Response><Hangup/></Response>"),
        "{}",
        r.body
    );
    drop(fake);
    let seen: Vec<String> = requests.try_iter().collect();
    for (path, times) in [
        ("/v1/audio/transcriptions", 2),
        ("/v1/chat/completions", 2),
        ("/v1/audio/speech", 4),
    ] {
        let n = seen
            .iter()
            .filter(|l| l.starts_with(&format!("POST {path} 200")))
            .count();
        assert!(n >= times, "{n} × {path} (want {times}): {seen:#?}");
    }
}

fn self_cpu_ms() -> u64 {
    // utime + stime, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // Fields after the state: ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime.
    (f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)) * 10
}

fn self_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `calls` calls at once, each streaming 5 s of the speech fixture in real
/// time; returns (CPU ms of this process, peak RSS growth KiB).
fn load(handler: &str, calls: u32) -> (u64, u64) {
    let srv = RunningServer::start(|s| s.handler = handler.parse().expect("handler"));
    let rss0 = self_rss_kib();
    let cpu0 = self_cpu_ms();
    let audio: Vec<u8> = speech().into_iter().take(8000 * 5).collect();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = (0..calls)
        .map(|n| {
            let addr = srv.addr;
            let audio = audio.clone();
            let peak = peak.clone();
            std::thread::spawn(move || {
                let mut t =
                    TwilioStream::connect(addr, &StreamOpts::default(), 100 + n).expect("connect");
                t.start(&[]).expect("start");
                let _ = t.stream_audio(&audio);
                peak.fetch_max(self_rss_kib(), std::sync::atomic::Ordering::Relaxed);
                let _ = t.stop();
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let cpu = self_cpu_ms() - cpu0;
    let rss = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(rss0);
    drop(srv);
    (cpu, rss)
}

#[test]
#[ignore = "a measurement, not a test: the numbers in BENCHMARKS.md"]
fn bench_bridge_cost_and_latency() {
    use callstream_bridge::metrics;
    use std::sync::atomic::Ordering::Relaxed;
    let calls: u32 = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20);
    let echo = format!(
        "exec:sh '{}'",
        repo().join("examples/bots/echo/echo.sh").display()
    );
    let (cpu_silent, rss_silent) = load("silent", calls);
    let (u0, us0) = (
        metrics::UTTERANCES.load(Relaxed),
        metrics::UTTERANCE_US.load(Relaxed),
    );
    let (cpu_bridge, rss_bridge) = load(&echo, calls);
    let (u1, us1) = (
        metrics::UTTERANCES.load(Relaxed),
        metrics::UTTERANCE_US.load(Relaxed),
    );
    println!(
        "{calls} calls × 5 s: silent {cpu_silent} ms CPU, +{rss_silent} KiB RSS; bridge (echo.sh) {cpu_bridge} ms CPU, +{rss_bridge} KiB RSS"
    );
    println!(
        "bridge cost per call: {:.1} ms CPU per second of call, {} KiB RSS",
        (cpu_bridge as f64 - cpu_silent as f64) / f64::from(calls) / 5.0,
        rss_bridge.saturating_sub(rss_silent) / u64::from(calls)
    );
    println!(
        "utterances to echo.sh: {} written, mean {} µs from the end of the turn to written, max {} µs",
        u1 - u0,
        (us1 - us0) / (u1 - u0).max(1),
        metrics::UTTERANCE_US_MAX.load(Relaxed)
    );
    // The same turns to a program that reads as fast as the pipe allows:
    // echo.sh's `read` takes a byte at a time, so a turn's line (~100 kB)
    // is written only as fast as `sh` reads it, and with 20 calls the
    // programs' reading, not the bridge, is what queues for the cores.
    metrics::UTTERANCE_US_MAX.store(0, Relaxed);
    let _ = load("exec:cat > /dev/null", calls);
    let (u2, us2) = (
        metrics::UTTERANCES.load(Relaxed),
        metrics::UTTERANCE_US.load(Relaxed),
    );
    println!(
        "utterances to cat: {} written, mean {} µs from the end of the turn to written, max {} µs",
        u2 - u1,
        (us2 - us1) / (u2 - u1).max(1),
        metrics::UTTERANCE_US_MAX.load(Relaxed)
    );
    // A program that answers each DTMF with 20 ms of audio at once: the time
    // from the key to the first frame on the wire is the bridge's round trip
    // (dtmf written, play read, resampled, queued, paced out).
    let (srv, _dir) = server_with(
        &format!(
            "while IFS= read -r l; do case $l in *dtmf*) printf '%s\\n' '{}';; esac; done",
            tone_play(20, 8000)
        ),
        |_| {},
    );
    let mut t = call(&srv, 30);
    std::thread::sleep(Duration::from_millis(300));
    let mut rtt = Vec::new();
    for _ in 0..30 {
        let mut got = Vec::new();
        let sent = Instant::now();
        t.dtmf('1').expect("dtmf");
        while media_bytes(&got).is_empty() && sent.elapsed() < PATIENCE {
            t.read_until(Instant::now() + Duration::from_millis(1), &mut got)
                .expect("read");
        }
        rtt.push(sent.elapsed().as_micros() as u64);
        let _ = t.read_until(Instant::now() + Duration::from_millis(60), &mut got);
    }
    rtt.sort_unstable();
    println!(
        "DTMF → play → first frame on the wire: median {} µs, p90 {} µs, max {} µs (30 rounds)",
        rtt[rtt.len() / 2],
        rtt[rtt.len() * 9 / 10],
        rtt[rtt.len() - 1]
    );
}

/// Credentials in a `ws://user:password@…` handler URL reach the service
/// as HTTP Basic authentication (RFC 7617, the password percent-decoded),
/// and never in `Host` or the request line.
#[test]
#[allow(clippy::result_large_err)] // tungstenite's callback signature
fn credentials_in_the_service_url_are_sent_as_basic_authentication() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        let cb = move |req: &tungstenite::handshake::server::Request, resp| {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let _ = tx.send((
                header("authorization"),
                header("host"),
                req.uri().to_string(),
            ));
            Ok(resp)
        };
        if let Ok(mut ws) = tungstenite::accept_hdr(s, cb) {
            while ws.read().is_ok() {}
        }
    });
    let url = format!("ws://bot-user:p%40ss%3Aword@{addr}/bot");
    let srv = RunningServer::start(|s| s.handler = url.parse().expect("handler"));
    let _t = call(&srv, 77);
    let (auth, host, target) = rx.recv_timeout(PATIENCE).expect("the service was called");
    let expected = base64::engine::general_purpose::STANDARD.encode("bot-user:p@ss:word");
    assert_eq!(auth, format!("Basic {expected}"));
    assert_eq!(host, addr.to_string());
    assert!(target.starts_with("/bot?"), "{target}");
    assert!(!target.contains("bot-user") && !host.contains("bot-user"));
}

#[test]
#[allow(clippy::result_large_err)] // tungstenite's callback signature
fn a_configured_bearer_token_is_sent_to_the_service() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        let cb = move |req: &tungstenite::handshake::server::Request, resp| {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let _ = tx.send((auth, req.uri().to_string()));
            Ok(resp)
        };
        if let Ok(mut ws) = tungstenite::accept_hdr(s, cb) {
            while ws.read().is_ok() {}
        }
    });
    let url = format!("ws://{addr}/bot");
    let srv = RunningServer::start(|s| {
        s.handler = url.parse().expect("handler");
        s.bridge_ws_bearer = Some("tok-3f9a_~.=".to_owned());
    });
    let _t = call(&srv, 78);
    let (auth, target) = rx.recv_timeout(PATIENCE).expect("the service was called");
    assert_eq!(auth, "Bearer tok-3f9a_~.=");
    assert!(!target.contains("tok-"), "{target}");
}

#[test]
fn a_bearer_token_beside_url_credentials_or_for_a_program_stops_the_boot() {
    use clap::Parser as _;
    let refused = |handler: &str, token: &str| {
        let mut s = callstream_server::config::Cli::try_parse_from([
            "callstream",
            "--insecure-no-signatures",
            "--handler",
            handler,
        ])
        .expect("settings")
        .settings();
        s.bridge_ws_bearer = Some(token.to_owned());
        match callstream_server::configure_with(&s, &[&callstream_bridge::BridgeExtension]) {
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        }
    };
    let both = refused("ws://u:p@127.0.0.1:9/bot", "tok").expect("refused");
    assert!(both.contains("choose one"), "{both}");
    let exec = refused("exec:cat", "tok").expect("refused");
    assert!(exec.contains("exec:"), "{exec}");
    let spaced = refused("ws://127.0.0.1:9/bot", "two words").expect("refused");
    assert!(spaced.contains("visible ASCII"), "{spaced}");
    assert!(
        !spaced.contains("two words"),
        "the token is in the error: {spaced}"
    );
    assert_eq!(refused("ws://127.0.0.1:9/bot", "tok"), None);
}

/// The media of a program's `send_digits "159#"` and the mark after it.
fn digits_on_the_wire() -> Vec<u8> {
    let (srv, dir) = server_with(
        "echo $$ > $DIR/pid; read -r line; printf '%s\\n' '{\"type\":\"send_digits\",\"digits\":\"159#\"}' '{\"type\":\"mark\",\"name\":\"digits\"}'; cat > /dev/null",
        |_| {},
    );
    let mut t = call(&srv, 40);
    let mut got = Vec::new();
    assert!(read_until_mark(&mut t, "digits", &mut got), "{got:?}");
    t.stop().expect("stop");
    assert_reaped(dir.path(), "pid");
    media_bytes(&got)
}

#[test]
fn send_digits_plays_the_keys_tones_in_order_with_the_audio() {
    let wire = digits_on_the_wire();
    let tones = callstream_core::dtmf::tones("159#").expect("keys");
    let want: Vec<u8> = tones
        .iter()
        .map(|&s| callstream_core::codec::encode(s))
        .collect();
    assert_eq!(wire, want, "the tones, sample for sample, before the mark");
}

#[test]
#[ignore = "needs multimon-ng (a DTMF decoder): .ci/run installs it and runs this"]
fn send_digits_is_heard_by_a_dtmf_decoder_we_did_not_write() {
    let wire = digits_on_the_wire();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("digits.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).expect("wav");
    for &b in &wire {
        w.write_sample(callstream_core::codec::decode(b))
            .expect("sample");
    }
    w.finalize().expect("wav");
    let out = std::process::Command::new("multimon-ng")
        .args(["-q", "-a", "DTMF", "-t", "wav"])
        .arg(&path)
        .output()
        .expect("multimon-ng runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let heard: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("DTMF: "))
        .map(str::trim)
        .collect();
    assert_eq!(heard, "159#", "{text}");
}

#[test]
fn a_transfer_to_sip_carries_its_caller_id_and_ring_time_and_end_its_voice() {
    let (srv, dir) = server_with(
        "echo $$ > $DIR/pid; read -r line; printf '%s\\n' '{\"type\":\"transfer\",\"to\":\"sip:agent@pbx.example.com\",\"caller_id\":\"+14155550199\",\"timeout\":15}'; cat > /dev/null",
        |_| {},
    );
    let mut t = call(&srv, 41);
    let mut got = Vec::new();
    assert!(
        read_until_closed(&mut t, &mut got),
        "the stream was not closed"
    );
    let r = stream_ended(&srv, &t.call_sid);
    assert!(
        r.body.ends_with(r#"<Response><Dial callerId="+14155550199" timeout="15"><Sip>sip:agent@pbx.example.com</Sip></Dial></Response>"#),
        "{}",
        r.body
    );
    assert_reaped(dir.path(), "pid");

    // A bad ring time is refused with an error and the call goes on; the
    // end that follows says goodbye in its voice and language.
    let (srv, dir) = server_with(
        "echo $$ > $DIR/pid; read -r line; printf '%s\\n' '{\"type\":\"transfer\",\"to\":\"+14155550100\",\"timeout\":1}'; read -r error; echo \"$error\" > $DIR/error; printf '%s\\n' '{\"type\":\"end\",\"say\":\"Au revoir\",\"voice\":\"Polly.Celine\",\"language\":\"fr-FR\"}'; cat > /dev/null",
        |_| {},
    );
    let mut t = call(&srv, 42);
    let mut got = Vec::new();
    assert!(
        read_until_closed(&mut t, &mut got),
        "the stream was not closed"
    );
    let error = read_file(&dir.path().join("error"));
    assert!(
        error.starts_with(
            r#"{"type":"error","of":"transfer","reason":"bad transfer: <Dial timeout> 1"#
        ),
        "{error}"
    );
    let r = stream_ended(&srv, &t.call_sid);
    assert!(
        r.body.ends_with(r#"<Response><Say language="fr-FR" voice="Polly.Celine">Au revoir</Say><Hangup/></Response>"#),
        "{}",
        r.body
    );
    assert_reaped(dir.path(), "pid");
}

#[test]
fn per_call_turn_settings_raw_frames_numbered_and_no_utterances() {
    // Raw frames only, no whole turns, no barge-in: the caller talks over
    // a long tone and it plays on.
    let script = format!(
        "echo $$ > $DIR/pid; printf '%s\\n' '{{\"type\":\"config\",\"rate\":8000,\"audio\":true,\"utterances\":false,\"barge_in\":false}}'; read -r line; printf '%s\\n' '{}'; cat > $DIR/in",
        tone_play(8000, 8000)
    );
    let (srv, dir) = server_with(&script, |_| {});
    let mut t = call(&srv, 43);
    let mut got = Vec::new();
    t.read_media(4000, PATIENCE, &mut got).expect("media");
    got.extend(t.stream_audio(&speech()).expect("stream"));
    assert!(!got.contains(&ServerMessage::Clear), "barge-in is off");
    let input = dir.path().join("in");
    assert!(wait_for(|| read_file(&input).contains("speech_started")));
    t.stop().expect("stop");
    assert!(wait_for(|| read_file(&input).contains(r#""type":"stop""#)));
    let lines: Vec<serde_json::Value> = read_file(&input)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert!(
        !lines.iter().any(|l| l["type"] == "utterance"),
        "no utterance"
    );
    assert!(
        !lines.iter().any(|l| l["type"] == "barge_in"),
        "no barge-in"
    );
    let frames: Vec<(u64, u64)> = lines
        .iter()
        .filter(|l| l["type"] == "audio")
        .map(|l| {
            (
                l["seq"].as_u64().expect("seq"),
                l["dropped"].as_u64().expect("dropped"),
            )
        })
        .collect();
    assert!(frames.len() > 50, "{} frames", frames.len());
    for (i, (seq, dropped)) in frames.iter().enumerate() {
        assert_eq!(
            (*seq, *dropped),
            (i as u64, 0),
            "frames numbered from 0, none dropped"
        );
    }
    assert_reaped(dir.path(), "pid");
}

/// Streams `caller` to a program that writes `config` and records what it
/// is sent, on a server changed by `tweak`; returns how many turns the
/// program was told began (`speech_started`).
fn turns_heard(
    config: &str,
    tweak: impl FnOnce(&mut callstream_server::config::Settings),
    caller: &[u8],
) -> usize {
    let (srv, dir) = server_with(
        &format!("echo $$ > $DIR/pid; printf '%s\\n' '{config}'; cat > $DIR/in"),
        tweak,
    );
    let mut t = call(&srv, 44);
    t.stream_audio(caller).expect("stream");
    t.stop().expect("stop");
    let input = dir.path().join("in");
    assert!(wait_for(|| read_file(&input).contains(r#""type":"stop""#)));
    assert_reaped(dir.path(), "pid");
    read_file(&input)
        .lines()
        .filter(|l| l.contains(r#""type":"speech_started""#))
        .count()
}

#[test]
fn a_longer_end_of_turn_keeps_a_pause_inside_one_turn() {
    // Two phrases with about two seconds of silence between them (the
    // fixture's own around 700 ms more): two turns with the default
    // 300 ms end of turn, one with 4000 ms, whether the program asks for it
    // or the server's setting gives it; the program's own wins.
    let phrase = speech();
    let mut caller = phrase.clone();
    caller.extend(silence(35));
    caller.extend(&phrase);
    caller.extend(silence(20));
    let plain = r#"{"type":"config","rate":8000}"#;
    let long = r#"{"type":"config","rate":8000,"end_of_turn_ms":4000}"#;
    let short = r#"{"type":"config","rate":8000,"end_of_turn_ms":300}"#;
    let counts = [
        turns_heard(plain, |_| {}, &caller),
        turns_heard(long, |_| {}, &caller),
        turns_heard(plain, |s| s.end_of_turn_ms = 4000, &caller),
        turns_heard(short, |s| s.end_of_turn_ms = 4000, &caller),
    ];
    assert_eq!(
        counts,
        [2, 1, 1, 2],
        "turns: server default, program's 4000 ms, server's 4000 ms, program's 300 ms over the server's 4000 ms"
    );
}

#[test]
fn sensitivity_hears_a_faint_caller_per_call_or_by_default() {
    // The phrase 32 dB down (about -53 dBFS): under the detector's default
    // -45 dBFS gate, heard at full sensitivity, whether the program or the
    // server's setting asks for it.
    use callstream_core::codec;
    let faint: Vec<u8> = speech()
        .iter()
        .map(|&b| codec::encode((f32::from(codec::decode(b)) * 0.025) as i16))
        .collect();
    let mut caller = silence(10);
    caller.extend(faint);
    caller.extend(silence(25));
    let plain = r#"{"type":"config","rate":8000}"#;
    let keen = r#"{"type":"config","rate":8000,"sensitivity":1.0}"#;
    let counts = [
        turns_heard(plain, |_| {}, &caller),
        turns_heard(keen, |_| {}, &caller),
        turns_heard(plain, |s| s.vad_sensitivity = 1.0, &caller),
    ];
    assert_eq!(
        counts,
        [0, 1, 1],
        "turns: default, the program's sensitivity 1.0, the server's"
    );
}

#[test]
fn over_websocket_events_and_a_clear_pass_a_long_queued_reply() {
    // A service that queues a 30 s reply at start, and clears it when the
    // caller presses a key: the key must reach it, and its clear the call,
    // while the reply is still queued.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ws://{}/bot", l.local_addr().expect("addr"));
    let (tx, seen) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        let Ok(mut ws) = tungstenite::accept(s) else {
            return;
        };
        while let Ok(m) = ws.read() {
            let tungstenite::Message::Text(t) = m else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
            let _ = tx.send(t.as_str().to_owned());
            let reply = match v["type"].as_str() {
                Some("start") => tone_play(30_000, 8000),
                Some("dtmf") => r#"{"type":"clear"}"#.to_owned(),
                Some("stop") => break,
                _ => continue,
            };
            let _ = ws.send(tungstenite::Message::text(reply));
        }
    });
    let srv = RunningServer::start(|s| {
        s.handler = url.parse().expect("handler");
    });
    let mut t = call(&srv, 45);
    let mut got = Vec::new();
    t.read_media(8000, PATIENCE, &mut got).expect("media");
    t.dtmf('7').expect("dtmf");
    let clear = stream_until_clear(&mut t, &mut got, 0, 5)
        .expect("the service's clear never reached the call");
    // The key reached the service while 29 s of its reply were queued.
    assert!(
        seen.try_iter().any(|l| l.contains(r#""type":"dtmf""#)),
        "the key did not reach the service"
    );
    assert_eq!(
        media_after(&mut t, &mut got, clear, 25),
        0,
        "audio after the clear"
    );
    // The clear came within a few frames of the key, not after the reply.
    let frames_between = got[..clear]
        .iter()
        .filter(|m| matches!(m, ServerMessage::Media(_)))
        .count();
    assert!(
        frames_between < 8000 / 160 + 50,
        "{frames_between} frames before the clear"
    );
    t.stop().expect("stop");
}
