//! The slow-work pattern: a handler hands work to its own thread, which sends
//! audio back through a RemoteControl and wakes the driver.

mod call_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use call_support::*;
use callstream_core::call::{Call, CallConfig, CallEvent, CommandError, MarkOutcome, Warning};
use callstream_core::codec;
use callstream_core::handler::{
    Control, Handler, REMOTE_MAX_COMMANDS, RemoteControl, RemoteError, Session, Waker,
};
use callstream_core::pacer::PacerConfig;

/// Hands each finished utterance to a worker; plays nothing itself.
struct Assistant {
    jobs: mpsc::Sender<(Duration, RemoteControl)>,
}

impl Handler for Assistant {
    fn on_event(&mut self, event: &CallEvent, control: &mut Control<'_>) {
        if let CallEvent::SpeechEnded { duration, .. } = event {
            let _ = self.jobs.send((*duration, control.remote()));
        }
    }
}

fn tone(ms: u64) -> Vec<i16> {
    (0..ms * 8)
        .map(|i| if i % 20 < 10 { 4000 } else { -4000 })
        .collect()
}

#[test]
fn worker_thread_sends_audio_back_and_wakes_the_driver() {
    let t0 = Instant::now();
    let wakes = Arc::new(AtomicUsize::new(0));
    let (wake_tx, wake_rx) = mpsc::channel::<()>();
    let waker: Waker = {
        let wakes = Arc::clone(&wakes);
        let wake_tx = Mutex::new(wake_tx);
        Arc::new(move || {
            wakes.fetch_add(1, Ordering::SeqCst);
            let _ = wake_tx.lock().unwrap().send(());
        })
    };
    let (jobs, inbox) = mpsc::channel();
    // The worker: "synthesises" a reply as long as the utterance, streaming
    // it back in 100 ms pieces as a TTS engine would, then a mark.
    let worker = std::thread::spawn(move || {
        let (duration, remote): (Duration, RemoteControl) = inbox.recv().unwrap();
        let reply = tone(duration.as_millis() as u64);
        for piece in reply.chunks(800) {
            remote.play_pcm(piece).unwrap();
        }
        remote.mark("reply").unwrap();
        (reply.len(), reply.chunks(800).count() + 1)
    });
    let session = Session::new(
        Call::new(CallConfig::default(), t0),
        Box::new(Assistant { jobs }),
        Some(waker),
    );
    let mut sim = Sim::new(session, t0);
    sim.run(
        t0 + Duration::from_millis(2000),
        &mut Script::new(&[(500, 1000)]),
    );
    assert_eq!(sim.count(|e| matches!(e, CallEvent::SpeechEnded { .. })), 1);

    // The event loop: sleep until woken, then let the session apply the commands.
    let (samples, commands) = worker.join().unwrap();
    let mut applied = 0;
    while wake_rx.recv_timeout(Duration::from_secs(10)).is_ok() {
        applied += 1;
        sim.m.handle_timeout(sim.now);
        sim.drain();
        if applied == commands {
            break;
        }
    }
    assert_eq!(
        wakes.load(Ordering::SeqCst),
        commands,
        "one wake per command"
    );
    sim.run(t0 + Duration::from_secs(4), &mut Script::new(&[]));

    let expected: Vec<u8> = tone(samples as u64 / 8)
        .iter()
        .map(|&s| codec::encode(s))
        .collect();
    assert_eq!(sim.twilio.media_bytes(), expected);
    assert_eq!(
        sim.mark_dones(),
        [("reply".to_string(), MarkOutcome::Played)]
    );
}

#[test]
fn remote_control_is_thread_safe_and_sessions_can_move() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    fn assert_send<T: Send + 'static>() {}
    assert_send_sync::<RemoteControl>();
    assert_send::<Session>();
    assert_send::<Call>();
}

#[test]
fn commands_from_many_threads_keep_each_threads_order() {
    let t0 = Instant::now();
    let session = Session::new(
        Call::new(CallConfig::default(), t0),
        Box::new(callstream_core::handler::Silent),
        None,
    );
    let mut sim = Sim::new(session, t0);
    let remote = sim.m.remote();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let remote = remote.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    remote.play_ulaw(&[0xFF; 16]).unwrap();
                    remote.mark(&format!("{t}-{i}")).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    sim.m.handle_timeout(sim.now);
    sim.drain();
    sim.run(t0 + Duration::from_secs(3), &mut Script::new(&[]));
    let done = sim.mark_dones();
    assert_eq!(done.len(), 200);
    for t in 0..4 {
        let mine: Vec<u32> = done
            .iter()
            .filter_map(|(n, _)| n.strip_prefix(&format!("{t}-")).map(|i| i.parse().unwrap()))
            .collect();
        assert_eq!(mine, (0..50).collect::<Vec<_>>());
    }
    assert_eq!(sim.twilio.media_bytes().len(), 200 * 16);
}

#[test]
fn remote_commands_fail_once_the_call_is_over() {
    let t0 = Instant::now();
    let mut session = Session::new(
        Call::new(CallConfig::default(), t0),
        Box::new(callstream_core::handler::Silent),
        None,
    );
    let remote = session.remote();
    assert!(!remote.is_ended());
    session.handle_text(t0, &start(&[]));
    session.handle_text(t0, &stop(2));
    while !matches!(
        session.poll_output(),
        callstream_core::call::CallOutput::Timeout(_)
    ) {}
    assert!(remote.is_ended());
    assert_eq!(remote.play_pcm(&[0; 160]), Err(RemoteError::Ended));
    // Dropping the session ends its handles too.
    let session = Session::new(
        Call::new(CallConfig::default(), t0),
        Box::new(callstream_core::handler::Silent),
        None,
    );
    let remote = session.remote();
    drop(session);
    assert_eq!(remote.clear(), Err(RemoteError::Ended));
}

#[test]
fn remote_queue_is_bounded() {
    let t0 = Instant::now();
    let session = Session::new(
        Call::new(CallConfig::default(), t0),
        Box::new(callstream_core::handler::Silent),
        None,
    );
    let remote = session.remote();
    for _ in 0..REMOTE_MAX_COMMANDS {
        remote.clear().unwrap();
    }
    assert_eq!(remote.clear(), Err(RemoteError::Full));
    assert_eq!(
        remote.mark(&"x".repeat(300)),
        Err(RemoteError::MarkNameTooLong)
    );
    let session2 = Session::new(
        Call::new(CallConfig::default(), t0),
        Box::new(callstream_core::handler::Silent),
        None,
    );
    let remote2 = session2.remote();
    remote2.play_pcm(&vec![0; 60 * 8000]).unwrap();
    assert_eq!(remote2.play_pcm(&[0]), Err(RemoteError::Full));
    drop(session);
}

#[test]
fn failures_applying_remote_commands_are_reported() {
    let t0 = Instant::now();
    let session = Session::new(
        Call::new(
            CallConfig {
                pacer: PacerConfig {
                    max_queued: Duration::from_millis(100),
                    ..PacerConfig::default()
                },
                ..CallConfig::default()
            },
            t0,
        ),
        Box::new(callstream_core::handler::Silent),
        None,
    );
    let mut sim = Sim::new(session, t0);
    let remote = sim.m.remote();
    remote.play_ulaw(&[0xFF; 8000]).unwrap();
    sim.m.handle_timeout(t0);
    sim.drain();
    let warnings: Vec<&CallEvent> = sim
        .notable()
        .into_iter()
        .filter(|e| matches!(e, CallEvent::Warning(_)))
        .collect();
    assert_eq!(
        warnings,
        [&CallEvent::Warning(Warning::Command(
            CommandError::QueueFull { dropped_ms: 900 }
        ))]
    );
}

/// Feeds the call from a queue of its own at each wake, and counts the
/// wakes it saw with how many marks the call held then.
struct Feeder {
    queue: Arc<Mutex<Vec<String>>>,
    woken: Arc<Mutex<Vec<usize>>>,
}

impl Handler for Feeder {
    fn on_event(&mut self, _: &CallEvent, _: &mut Control<'_>) {}

    fn on_wake(&mut self, control: &mut Control<'_>) {
        let names: Vec<String> = std::mem::take(&mut *self.queue.lock().unwrap());
        for name in &names {
            control.play_pcm(&tone(20)).unwrap();
            control.mark(name).unwrap();
        }
        self.woken.lock().unwrap().push(names.len());
    }
}

#[test]
fn a_wake_runs_the_handler_once_after_the_commands_before_it() {
    let t0 = Instant::now();
    let wakes = Arc::new(AtomicUsize::new(0));
    let waker: Waker = {
        let wakes = Arc::clone(&wakes);
        Arc::new(move || {
            wakes.fetch_add(1, Ordering::SeqCst);
        })
    };
    let queue = Arc::new(Mutex::new(Vec::new()));
    let woken = Arc::new(Mutex::new(Vec::new()));
    let handler = Feeder {
        queue: queue.clone(),
        woken: woken.clone(),
    };
    let mut session = Session::new(
        Call::new(CallConfig::default(), t0),
        Box::new(handler),
        Some(waker),
    );
    session.handle_text(t0, &connected());
    session.handle_text(t0, &start(&[]));
    let remote = session.remote();
    // A mark queued by the remote before the wake goes first.
    remote.mark("remote").unwrap();
    queue
        .lock()
        .unwrap()
        .extend(["a".to_owned(), "b".to_owned()]);
    remote.wake();
    remote.wake();
    assert_eq!(
        wakes.load(Ordering::SeqCst),
        2,
        "the mark's wake, then one for both wakes"
    );
    session.handle_timeout(t0);
    assert_eq!(*woken.lock().unwrap(), [2]);
    // Sent in order: the remote's mark, then the handler's audio and marks.
    let mut marks = Vec::new();
    loop {
        match session.poll_output() {
            callstream_core::call::CallOutput::Send(text) => {
                if let ServerMessage::Mark(name) = check_outbound(&text) {
                    marks.push(name);
                }
            }
            callstream_core::call::CallOutput::Timeout(_) => break,
            _ => {}
        }
    }
    assert_eq!(marks, ["remote", "a", "b"]);
    // No wake asked: a timeout does not run the handler.
    session.handle_timeout(t0 + Duration::from_millis(5));
    assert_eq!(woken.lock().unwrap().len(), 1);
}
