//! Call recordings: one WAV file per media stream, caller on the left channel
//! and our audio on the right, 8 kHz 16-bit, aligned on the stream's clock.
//!
//! Caller frames come from the jitter buffer with their stream timestamps;
//! our frames come with the stream time at which Twilio plays them. Both are
//! placed by sample position, so a gap in either channel is silence, not a
//! shift. The header is rewritten every second, so the file is a valid WAV up to
//! the last second even if the process dies; [`Recorder::finish`] completes it
//! however the call ended.
//!
//! Files are written on one thread of their own ([`Recordings`]), never on
//! the threads that pump sockets: a slow disk delays recordings, not calls.
//! Frames reach it through a bounded queue; past its bound frames are
//! dropped and counted (the call's `recording complete` line says how many).
//! Nothing a pump thread does here ever waits for that thread (under smol a
//! pump thread runs many calls): a call's end that finds the queue full is
//! set aside for the recording thread to apply once it has written the
//! frames queued before it, and [`Recordings::flush`] gives up at its limit.
//! An existing file is never overwritten: a reused SID pair gets `-2`,
//! `-3`… appended.
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const SAMPLES_PER_MS: u64 = 8;
/// Our audio may be scheduled ahead of the caller's; past this many samples
/// (60 s) ahead, it is written out with a silent caller channel rather than held.
const MAX_AHEAD: usize = 8000 * 60;
const FLUSH_EVERY: u64 = 8000;
/// The largest forward jump of caller audio written as silence (2 s).
const MAX_CALLER_JUMP: u64 = 8000 * 2;
/// Most recordings with the same SID pair before creating one fails.
const MAX_SAME_NAME: u32 = 1000;
/// Frames (and opens and finishes) waiting for the recording thread: about
/// 40 s of one call's audio both ways, or a second of 2,000 calls'.
const QUEUE: usize = 4096;
/// How often an idle recording thread looks for ends set aside (one that
/// was set aside just as the queue emptied would otherwise wait for the
/// next call's frames).
const IDLE_LOOK: Duration = Duration::from_millis(250);

enum Job {
    Open {
        id: u64,
        call_sid: String,
        stream_sid: String,
    },
    Caller {
        id: u64,
        timestamp_ms: u64,
        samples: Vec<i16>,
    },
    Ours {
        id: u64,
        play_at_ms: u64,
        samples: Vec<i16>,
    },
    Finish(Finish),
    Flush(SyncSender<()>),
}

/// A recording's end: complete the file once the `queued` jobs sent for it
/// before (its open and frames) are written.
struct Finish {
    id: u64,
    dropped: u64,
    queued: u64,
}

/// Ends that did not fit in the queue, for the recording thread to pick up.
/// At most one per call, so it stays as small as the number of calls.
#[derive(Default)]
struct SetAside {
    any: AtomicBool,
    finishes: Mutex<Vec<Finish>>,
}

impl SetAside {
    fn push(&self, f: Finish) {
        self.finishes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(f);
        self.any.store(true, Ordering::Release);
    }

    fn take(&self) -> Vec<Finish> {
        if !self.any.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.finishes.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Called by the recording thread before each job: lets a test stall it as
/// a slow disk would.
type Gate = Arc<dyn Fn() + Send + Sync>;

/// The recording thread and the queue to it. Cheap to share (`&self`).
pub struct Recordings {
    dir: PathBuf,
    tx: SyncSender<Job>,
    set_aside: Arc<SetAside>,
    next_id: AtomicU64,
}

impl Recordings {
    /// Checks that `dir` is a directory this process can write (so a wrong
    /// `RECORDINGS_DIR` is found at boot, not call by call) and starts the
    /// recording thread.
    pub fn start(dir: PathBuf) -> io::Result<Recordings> {
        Self::start_gated(dir, None)
    }

    fn start_gated(dir: PathBuf, gate: Option<Gate>) -> io::Result<Recordings> {
        let meta = std::fs::metadata(&dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("recordings directory {}: {e}", dir.display()),
            )
        })?;
        if !meta.is_dir() {
            return Err(io::Error::other(format!(
                "recordings directory {} is not a directory",
                dir.display()
            )));
        }
        let probe = dir.join(format!(".callstream-probe-{}", std::process::id()));
        File::create(&probe).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "recordings directory {} is not writable: {e}",
                    dir.display()
                ),
            )
        })?;
        let _ = std::fs::remove_file(&probe);
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let thread_dir = dir.clone();
        let set_aside = Arc::new(SetAside::default());
        let aside = set_aside.clone();
        std::thread::Builder::new()
            .name("callstream-recorder".into())
            .spawn(move || write_loop(&thread_dir, &rx, &aside, gate.as_deref()))?;
        Ok(Recordings {
            dir,
            tx,
            set_aside,
            next_id: AtomicU64::new(1),
        })
    }

    /// Where recordings go.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the recording of one stream.
    #[must_use]
    pub fn open(&self, call_sid: &str, stream_sid: &str) -> CallRecording {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut rec = CallRecording {
            id,
            tx: self.tx.clone(),
            set_aside: self.set_aside.clone(),
            dropped: 0,
            queued: 0,
        };
        rec.send(Job::Open {
            id,
            call_sid: call_sid.to_owned(),
            stream_sid: stream_sid.to_owned(),
        });
        rec
    }

    /// Waits (at most `limit`, however full the queue) until everything
    /// queued so far is written: the last thing a server does before it
    /// exits. False when the limit passed first.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let mut job = Job::Flush(done_tx);
        loop {
            match self.tx.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(j)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    job = j;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// One stream's recording, as a connection holds it: frames are queued for
/// the recording thread; dropping it completes the file.
pub struct CallRecording {
    id: u64,
    tx: SyncSender<Job>,
    set_aside: Arc<SetAside>,
    dropped: u64,
    /// Jobs of this recording in the queue so far.
    queued: u64,
}

impl CallRecording {
    fn send(&mut self, job: Job) {
        match self.tx.try_send(job) {
            Ok(()) => self.queued += 1,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped += 1,
        }
    }

    /// A caller frame at `timestamp_ms` of stream time.
    pub fn caller(&mut self, timestamp_ms: u64, samples: &[i16]) {
        let id = self.id;
        self.send(Job::Caller {
            id,
            timestamp_ms,
            samples: samples.to_vec(),
        });
    }

    /// Our audio that Twilio plays at `play_at_ms` of stream time.
    pub fn ours(&mut self, play_at_ms: u64, samples: &[i16]) {
        let id = self.id;
        self.send(Job::Ours {
            id,
            play_at_ms,
            samples: samples.to_vec(),
        });
    }

    /// Frames that did not fit in the queue so far.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl Drop for CallRecording {
    fn drop(&mut self) {
        // The finish must arrive even when the queue is full, without
        // waiting for room (this runs on a pump thread): set aside, it is
        // applied once the jobs queued before it are written.
        let finish = Finish {
            id: self.id,
            dropped: self.dropped,
            queued: self.queued,
        };
        match self.tx.try_send(Job::Finish(finish)) {
            Ok(()) => {}
            Err(TrySendError::Full(Job::Finish(f))) => self.set_aside.push(f),
            Err(_) => {}
        }
    }
}

/// The recording thread's state: the files open, and how many jobs of each
/// recording it has taken (to know when a set-aside end may be applied).
struct Writer<'a> {
    dir: &'a Path,
    open: HashMap<u64, (String, Recorder)>,
    taken: HashMap<u64, u64>,
    /// Set-aside ends whose recordings still have jobs in the queue.
    waiting: HashMap<u64, Finish>,
}

impl Writer<'_> {
    fn failed(&mut self, id: u64, e: &io::Error) {
        if let Some((call_sid, _)) = self.open.remove(&id) {
            tracing::error!(%call_sid, error = %e, "recording failed; the call goes on unrecorded");
        }
    }

    /// One more job of recording `id` was taken from the queue.
    fn took(&mut self, id: u64) {
        *self.taken.entry(id).or_default() += 1;
    }

    fn job(&mut self, job: Job) {
        match job {
            Job::Open {
                id,
                call_sid,
                stream_sid,
            } => {
                self.took(id);
                match Recorder::create(self.dir, &call_sid, &stream_sid) {
                    Ok(r) => {
                        tracing::info!(%call_sid, path = %r.path().display(), "recording");
                        self.open.insert(id, (call_sid, r));
                    }
                    Err(e) => {
                        tracing::error!(%call_sid, dir = %self.dir.display(), error = %e, "cannot create recording");
                    }
                }
                self.ready(id);
            }
            Job::Caller {
                id,
                timestamp_ms,
                samples,
            } => {
                self.took(id);
                if let Some((_, r)) = self.open.get_mut(&id)
                    && let Err(e) = r.caller(timestamp_ms, &samples)
                {
                    self.failed(id, &e);
                }
                self.ready(id);
            }
            Job::Ours {
                id,
                play_at_ms,
                samples,
            } => {
                self.took(id);
                if let Some((_, r)) = self.open.get_mut(&id)
                    && let Err(e) = r.ours(play_at_ms, &samples)
                {
                    self.failed(id, &e);
                }
                self.ready(id);
            }
            Job::Finish(f) => self.finish(f),
            Job::Flush(done) => {
                let _ = done.try_send(());
            }
        }
    }

    /// A set-aside end: applied now if its jobs are all written, else when
    /// the last of them is.
    fn set_aside(&mut self, f: Finish) {
        if self.taken.get(&f.id).copied().unwrap_or(0) >= f.queued {
            self.finish(f);
        } else {
            self.waiting.insert(f.id, f);
        }
    }

    fn ready(&mut self, id: u64) {
        let done = self
            .waiting
            .get(&id)
            .is_some_and(|f| self.taken.get(&id).copied().unwrap_or(0) >= f.queued);
        if done && let Some(f) = self.waiting.remove(&id) {
            self.finish(f);
        }
    }

    fn finish(&mut self, Finish { id, dropped, .. }: Finish) {
        self.taken.remove(&id);
        if let Some((call_sid, r)) = self.open.remove(&id) {
            match r.finish() {
                Ok(path) => {
                    tracing::info!(%call_sid, path = %path.display(), frames_dropped = dropped, "recording complete");
                }
                Err(e) => {
                    tracing::error!(%call_sid, error = %e, "recording could not be completed");
                }
            }
        }
    }
}

fn write_loop(
    dir: &Path,
    rx: &Receiver<Job>,
    set_aside: &SetAside,
    gate: Option<&(dyn Fn() + Send + Sync)>,
) {
    let mut w = Writer {
        dir,
        open: HashMap::new(),
        taken: HashMap::new(),
        waiting: HashMap::new(),
    };
    loop {
        let job = match rx.recv_timeout(IDLE_LOOK) {
            Ok(job) => Some(job),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if job.is_some()
            && let Some(g) = gate
        {
            g();
        }
        // Ends set aside before this job was taken had every job of theirs
        // queued before it: a flush marker finds them applied.
        for f in set_aside.take() {
            w.set_aside(f);
        }
        if let Some(job) = job {
            w.job(job);
        }
    }
    // The last recording's end may have been set aside just before it let
    // go of the queue.
    for f in set_aside.take() {
        w.set_aside(f);
    }
}

/// Writes one stream's recording.
pub struct Recorder {
    path: PathBuf,
    wav: hound::WavWriter<BufWriter<File>>,
    /// Samples written so far (per channel).
    written: u64,
    /// Our audio from sample position `written` on.
    ours: VecDeque<i16>,
    since_flush: u64,
    /// Subtracted from caller positions after a discontinuity.
    caller_offset: u64,
}

fn wav_error(e: hound::Error) -> io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other),
    }
}

/// Keeps a SID-derived name to letters, digits, `-` and `_`: SIDs are validated
/// by the core already; this is a second fence before a path is built.
fn safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect()
}

impl Recorder {
    /// Creates `<dir>/<call_sid>_<stream_sid>.wav`, or `…-2.wav`, `…-3.wav`
    /// when that exists: a file is never overwritten.
    pub fn create(dir: &Path, call_sid: &str, stream_sid: &str) -> io::Result<Recorder> {
        let stem = format!("{}_{}", safe(call_sid), safe(stream_sid));
        let mut n = 1;
        let (path, file) = loop {
            let name = if n == 1 {
                format!("{stem}.wav")
            } else {
                format!("{stem}-{n}.wav")
            };
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < MAX_SAME_NAME => n += 1,
                Err(e) => return Err(e),
            }
        };
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let wav = hound::WavWriter::new(BufWriter::new(file), spec).map_err(wav_error)?;
        Ok(Recorder {
            path,
            wav,
            written: 0,
            ours: VecDeque::new(),
            since_flush: 0,
            caller_offset: 0,
        })
    }

    /// Where the recording is written.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A caller frame at `timestamp_ms` of stream time.
    pub fn caller(&mut self, timestamp_ms: u64, samples: &[i16]) -> io::Result<()> {
        let mut start = timestamp_ms
            .saturating_mul(SAMPLES_PER_MS)
            .saturating_sub(self.caller_offset);
        // Timestamps come from the peer. The jitter buffer fills gaps up to a
        // second; a larger jump (or a first timestamp far from zero) is a
        // discontinuity, not hours of silence to write: re-base onto the
        // recording's own clock.
        if start > self.written + MAX_CALLER_JUMP {
            self.caller_offset += start - self.written;
            start = self.written;
        }
        // Caller audio arrives in order from the jitter buffer; anything already written is skipped.
        let skip = self.written.saturating_sub(start).min(samples.len() as u64) as usize;
        let gap = start.saturating_sub(self.written);
        for _ in 0..gap {
            self.write_pair(0)?;
        }
        for &s in &samples[skip..] {
            self.write_pair(s)?;
        }
        Ok(())
    }

    /// Our audio that Twilio plays at `play_at_ms` of stream time.
    pub fn ours(&mut self, play_at_ms: u64, samples: &[i16]) -> io::Result<()> {
        let start = play_at_ms.saturating_mul(SAMPLES_PER_MS);
        for (i, &s) in samples.iter().enumerate() {
            let pos = start + i as u64;
            if pos < self.written {
                continue;
            }
            if pos - self.written >= MAX_AHEAD as u64 {
                // Write out what is held, caller silent, to stay bounded.
                let target = pos + 1 - MAX_AHEAD as u64;
                while self.written < target {
                    self.write_pair(0)?;
                }
            }
            let idx = (pos - self.written) as usize;
            if self.ours.len() <= idx {
                self.ours.resize(idx + 1, 0);
            }
            self.ours[idx] = s;
        }
        Ok(())
    }

    fn write_pair(&mut self, caller: i16) -> io::Result<()> {
        let ours = self.ours.pop_front().unwrap_or(0);
        self.wav.write_sample(caller).map_err(wav_error)?;
        self.wav.write_sample(ours).map_err(wav_error)?;
        self.written += 1;
        self.since_flush += 1;
        if self.since_flush >= FLUSH_EVERY {
            self.since_flush = 0;
            self.wav.flush().map_err(wav_error)?;
        }
        Ok(())
    }

    /// Writes what is left of our audio and completes the file.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        while !self.ours.is_empty() {
            self.write_pair(0)?;
        }
        self.wav.finalize().map_err(wav_error)?;
        Ok(self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> (Vec<i16>, Vec<i16>) {
        let mut r = hound::WavReader::open(path).unwrap();
        assert_eq!(r.spec().channels, 2);
        assert_eq!(r.spec().sample_rate, 8000);
        let s: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
        (
            s.iter().step_by(2).copied().collect(),
            s.iter().skip(1).step_by(2).copied().collect(),
        )
    }

    #[test]
    fn channels_align_on_stream_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(dir.path(), "CA1", "MZ2").unwrap();
        r.ours(20, &[7; 160]).unwrap(); // ahead of the caller
        r.caller(0, &[1; 160]).unwrap();
        r.caller(20, &[2; 160]).unwrap();
        r.caller(60, &[3; 160]).unwrap(); // a gap of one frame
        r.ours(100, &[9; 160]).unwrap(); // after the caller hung up
        let path = r.finish().unwrap();
        assert!(path.ends_with("CA1_MZ2.wav"));
        let (caller, ours) = read(&path);
        assert_eq!(caller.len(), 6 * 160);
        assert_eq!(&caller[..160], &[1; 160]);
        assert_eq!(&caller[160..320], &[2; 160]);
        assert_eq!(&caller[320..480], &[0; 160]);
        assert_eq!(&caller[480..640], &[3; 160]);
        assert_eq!(&ours[..160], &[0; 160]);
        assert_eq!(&ours[160..320], &[7; 160]);
        assert_eq!(&ours[800..960], &[9; 160]);
    }

    #[test]
    fn hostile_timestamps_do_not_write_hours_of_silence() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(dir.path(), "CA1", "MZ4").unwrap();
        r.caller(u64::MAX / 16, &[1; 160]).unwrap();
        r.caller(u64::MAX / 16 + 20, &[2; 160]).unwrap();
        r.caller(u64::MAX / 16 + 10_000_000, &[3; 160]).unwrap();
        let (caller, _) = read(&r.finish().unwrap());
        assert_eq!(caller.len(), 3 * 160);
        assert_eq!(&caller[160..320], &[2; 160]);
        assert_eq!(&caller[320..], &[3; 160]);
    }

    #[test]
    fn an_existing_recording_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Recorder::create(dir.path(), "CA1", "MZ1").unwrap();
        first.caller(0, &[1; 1600]).unwrap();
        let first = first.finish().unwrap();
        let second = Recorder::create(dir.path(), "CA1", "MZ1").unwrap();
        let third = Recorder::create(dir.path(), "CA1", "MZ1").unwrap();
        assert!(second.path().ends_with("CA1_MZ1-2.wav"));
        assert!(third.path().ends_with("CA1_MZ1-3.wav"));
        second.finish().unwrap();
        third.finish().unwrap();
        let (caller, _) = read(&first);
        assert_eq!(caller.len(), 1600, "the first recording is intact");
    }

    #[test]
    fn the_recording_thread_writes_what_connections_queue() {
        let dir = tempfile::tempdir().unwrap();
        let recordings = Recordings::start(dir.path().to_owned()).unwrap();
        let mut a = recordings.open("CA1", "MZ1");
        let mut b = recordings.open("CA1", "MZ1"); // the same SIDs, concurrently
        a.ours(0, &[5; 160]); // ahead of the caller, as the pacer sends it
        for k in 0..50 {
            a.caller(k * 20, &[3; 160]);
            b.caller(k * 20, &[4; 160]);
        }
        assert_eq!(a.dropped() + b.dropped(), 0);
        drop((a, b));
        assert!(recordings.flush(Duration::from_secs(10)));
        let (c1, o1) = read(&dir.path().join("CA1_MZ1.wav"));
        let (c2, _) = read(&dir.path().join("CA1_MZ1-2.wav"));
        assert_eq!(c1.len(), 50 * 160);
        assert_eq!(c2.len(), 50 * 160);
        assert!(c1.iter().all(|&s| s == 3));
        assert!(c2.iter().all(|&s| s == 4));
        assert_eq!(&o1[..160], &[5; 160]);
    }

    /// A recording thread stalled (as on a slow disk) until the guard of
    /// the returned lock is dropped.
    fn stalled(dir: &Path) -> (Arc<Recordings>, Arc<Mutex<()>>) {
        let stall = Arc::new(Mutex::new(()));
        let s = stall.clone();
        let gate: Gate = Arc::new(move || drop(s.lock()));
        let r = Recordings::start_gated(dir.to_owned(), Some(gate)).unwrap();
        (Arc::new(r), stall)
    }

    #[test]
    fn a_stalled_recording_thread_never_holds_up_a_pump() {
        let dir = tempfile::tempdir().unwrap();
        let (recordings, stall) = stalled(dir.path());
        let held = stall.lock().unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let r = recordings.clone();
        // What pump threads do when calls end while the disk is stuck: the
        // queue fills, then calls end (many), then the server flushes.
        std::thread::spawn(move || {
            let mut first = r.open("CA1", "MZ1");
            for k in 0..(QUEUE as u64 + 100) {
                first.caller(k * 20, &[3; 160]);
            }
            let written = QUEUE as u64 + 100 - first.dropped();
            let more: Vec<CallRecording> = (0..200).map(|_| r.open("CA2", "MZ2")).collect();
            drop(first);
            drop(more);
            let flushed = r.flush(Duration::from_millis(50));
            let _ = done_tx.send((written, flushed));
        });
        // Far longer than it takes when nothing waits; forever when ending a
        // call waits for room in the queue.
        let ended = done_rx.recv_timeout(Duration::from_secs(20));
        let set_aside = recordings.set_aside.any.load(Ordering::Acquire);
        drop(held);
        let (written, flushed) = ended.expect("ending calls and flushing waited for the disk");
        assert!(!flushed, "the flush gave up at its limit");
        assert!(set_aside, "ends that found the queue full were set aside");
        assert!(written < QUEUE as u64 + 100, "the queue was full");
        // The disk recovers: the set-aside end is applied after the frames
        // queued before it, so the file has every one of them.
        assert!(recordings.flush(Duration::from_secs(20)));
        let (caller, _) = read(&dir.path().join("CA1_MZ1.wav"));
        assert_eq!(caller.len() as u64, written * 160);
        assert!(caller.iter().all(|&s| s == 3));
    }

    #[test]
    fn a_missing_or_unwritable_directory_is_found_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = Recordings::start(missing.clone()).err().unwrap();
        assert!(err.to_string().contains("nope"), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = Recordings::start(file).err().unwrap();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn hostile_names_stay_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recorder::create(dir.path(), "../../etc/x", "MZ/..").unwrap();
        assert_eq!(r.path().parent().unwrap(), dir.path());
        r.finish().unwrap();
    }

    #[test]
    fn far_future_audio_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(dir.path(), "CA1", "MZ3").unwrap();
        r.ours(2 * 60 * 1000, &[5; 160]).unwrap();
        assert!(r.ours.len() <= MAX_AHEAD);
        let (_, ours) = read(&r.finish().unwrap());
        assert_eq!(ours.iter().filter(|&&s| s == 5).count(), 160);
    }
}
