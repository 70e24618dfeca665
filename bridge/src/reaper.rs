//! Every process a call's program starts ends with the call, even one that
//! left the program's process group (`setsid`, a double fork: the way a
//! daemon detaches).
//!
//! Killing the program's group misses such a process. Two things catch it:
//!
//! - **The server is a child subreaper** ([`become_subreaper`], Linux'
//!   `PR_SET_CHILD_SUBREAPER`), set when the exec bridge is configured: a
//!   process whose parent dies is handed to the server instead of to init,
//!   so the server can find it among its own children.
//! - **Every program carries a mark** in its environment,
//!   [`PROGRAM_ID_ENV`], a number unique in this process, which its
//!   descendants inherit. When a program has been reaped, [`sweep`] looks
//!   at the server's children: one whose mark names a program that is no
//!   longer running is killed (SIGKILL) and reaped, and so in turn are the
//!   processes handed over as it dies, until none is left.
//!
//! A handed-over process that dies by itself is a zombie of the server's,
//! and a zombie has no environment to read: one is reaped when it is in the
//! process group of a program the server started (the group outlives its
//! leader), or, where the binary owns every child of its process
//! ([`own_all_children`]: the `callstream` binary does), whatever it is.
//!
//! What is not marked is left alone, whoever's child it is: the program
//! registry ([`Live`]) is the whole process's, so a server never touches
//! another server's programs, nor children that other code in the process
//! started. A process that clears its environment before it escapes cannot
//! be told from those, and is left to run (where the host delegates cgroups,
//! a cgroup per call would catch it too; many container platforms do not).
//! Nor can one whose environment the kernel hides (a set-user-ID program).
//!
//! Whether or not a sweep catches everything, no thread or descriptor of
//! the server waits on an escaped process: the program's stream threads
//! stop when told to once the program is reaped ([`super::cancel`]).
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// The environment variable that marks a program and its descendants.
pub const PROGRAM_ID_ENV: &str = "CALLSTREAM_PROGRAM_ID";

/// Most rounds of a sweep (each kills what the last one's deaths handed
/// over); a chain of escapes deeper than this waits for the next sweep.
const ROUNDS: usize = 32;

/// How long a sweep waits for one killed process to die before leaving it
/// to the next sweep (a process in uninterruptible sleep dies late).
const DEATH_WAIT: Duration = Duration::from_millis(500);

/// Program groups remembered after their program ended (their members'
/// zombies are recognised by them).
const GROUPS_KEPT: usize = 4096;

/// The programs running in this process: pid → mark.
#[derive(Default)]
pub struct Live {
    programs: BTreeMap<i32, u64>,
    /// Marked processes killed but not yet reaped: pid → mark.
    dying: BTreeMap<i32, u64>,
    /// The process groups of programs this process started, newest last
    /// (a program leads its own group; its id is the program's pid).
    groups: std::collections::VecDeque<i32>,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    programs: BTreeMap::new(),
    dying: BTreeMap::new(),
    groups: std::collections::VecDeque::new(),
});

/// One sweep at a time: two would pick the same process, and the second
/// would signal a pid the first had reaped (and the system may have reused).
static SWEEPING: Mutex<()> = Mutex::new(());

/// Set by [`own_all_children`].
static OWN_ALL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Declares that every child of this process is the bridge's (the
/// `callstream` binary starts no other): a sweep then also reaps zombies it
/// cannot attribute. A library embedded in a process with children of its
/// own must not call it.
pub fn own_all_children() {
    OWN_ALL.store(true, Ordering::Relaxed);
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The registry, locked. Spawn a program while holding it and
/// [`Live::add`] it before letting go, so that no sweep ever sees the new
/// process unregistered.
pub fn live() -> MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh mark for a program about to start.
#[must_use]
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

impl Live {
    /// The program `pid`, marked `id`, is running.
    pub fn add(&mut self, pid: i32, id: u64) {
        self.programs.insert(pid, id);
        if self.groups.len() >= GROUPS_KEPT {
            self.groups.pop_front();
        }
        self.groups.push_back(pid);
    }

    /// The program `pid`, marked `id`, was reaped (a later program that
    /// got the same pid keeps its entry).
    pub fn remove(&mut self, pid: i32, id: u64) {
        if self.programs.get(&pid) == Some(&id) {
            self.programs.remove(&pid);
        }
    }

    fn is_live(&self, id: u64) -> bool {
        self.programs.values().any(|&p| p == id)
    }
}

/// Makes this process a child subreaper (once), so that processes whose
/// parents die are handed to it rather than to init. False (logged once)
/// where the system refuses or it is not Linux: escaped processes then go
/// to init and run on after their call.
pub fn become_subreaper() -> bool {
    static DONE: OnceLock<bool> = OnceLock::new();
    *DONE.get_or_init(|| {
        #[cfg(target_os = "linux")]
        let result = nix::sys::prctl::set_child_subreaper(true).map_err(|e| e.to_string());
        #[cfg(not(target_os = "linux"))]
        let result: Result<(), String> = Err("not Linux".to_owned());
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot become a child subreaper: a process a bridge program detaches (setsid) outlives its call");
                false
            }
        }
    })
}

/// What `/proc/<pid>/stat` says of a process: its state, parent and group.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    zombie: bool,
    parent: i32,
    group: i32,
}

fn stat_of(stat: &str) -> Option<Stat> {
    // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut f = rest.split_ascii_whitespace();
    let state = f.next()?;
    Some(Stat {
        zombie: state == "Z",
        parent: f.next()?.parse().ok()?,
        group: f.next()?.parse().ok()?,
    })
}

/// The mark in a process's environment, if it has one (a zombie has no
/// environment left to read).
fn mark_of(pid: i32) -> Option<u64> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{PROGRAM_ID_ENV}=");
    environ
        .split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(prefix.as_bytes()))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
}

/// A child of this process, as a sweep sees it.
struct Child {
    pid: i32,
    stat: Stat,
    mark: Option<u64>,
}

/// This process's children, from `/proc`, with their marks: read without
/// the registry's lock (a read of a process stuck in the kernel may take
/// long; no program's start waits for it).
fn children() -> Vec<Child> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = stat_of(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
            (stat.parent == me).then(|| Child {
                pid,
                mark: if stat.zombie { None } else { mark_of(pid) },
                stat,
            })
        })
        .collect()
}

/// Kills and reaps every child of this process whose mark names a program
/// that is no longer running, then what their deaths hand over, until none
/// is left (at most [`ROUNDS`] rounds). Returns how many were killed. Run
/// it after a program is reaped, and at shutdown.
pub fn sweep() -> usize {
    let _one = SWEEPING.lock().unwrap_or_else(PoisonError::into_inner);
    let own_all = OWN_ALL.load(Ordering::Relaxed);
    let mut killed = 0;
    for _ in 0..ROUNDS {
        let found = children();
        let (doomed, dead): (Vec<(i32, u64)>, Vec<i32>) = {
            let mut live = live();
            let mut doomed = Vec::new();
            let mut dead = Vec::new();
            for c in found {
                // A program (registered before the lock was let go by the
                // code that started it), or a pid that became one since the
                // scan: its supervisor reaps it.
                if live.programs.contains_key(&c.pid) {
                    continue;
                }
                if c.stat.zombie {
                    // Its group, or the binary's word, says it is ours.
                    if own_all
                        || live.groups.contains(&c.stat.group)
                        || live.dying.contains_key(&c.pid)
                    {
                        dead.push(c.pid);
                    }
                    continue;
                }
                let mark = c.mark.or_else(|| live.dying.get(&c.pid).copied());
                if let Some(id) = mark.filter(|&id| !live.is_live(id)) {
                    live.dying.insert(c.pid, id);
                    doomed.push((c.pid, id));
                }
            }
            (doomed, dead)
        };
        for pid in dead {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
            live().dying.remove(&pid);
        }
        if doomed.is_empty() {
            break;
        }
        for &(pid, id) in &doomed {
            // Its own group too: it may lead one (setsid) with members that
            // have not been handed over yet.
            let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            if reap(pid) {
                live().dying.remove(&pid);
                killed += 1;
                tracing::warn!(
                    pid,
                    program = id,
                    "a process a bridge program left behind (it left the program's group) was killed with its call"
                );
            }
        }
    }
    killed
}

/// Waits (at most [`DEATH_WAIT`]) for the killed child `pid` to die, and
/// reaps it; false when it has not died yet (or is gone already).
fn reap(pid: i32) -> bool {
    let until = Instant::now() + DEATH_WAIT;
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(WaitStatus::StillAlive) => return false,
            Ok(_) => return true,
            // Not our child (any more): someone reaped it.
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_parent_and_group_are_read_past_any_command_name() {
        assert_eq!(
            stat_of("42 (a) b) Z 9 77 1"),
            Some(Stat {
                zombie: true,
                parent: 9,
                group: 77
            })
        );
        assert_eq!(stat_of("42 (sh) S 7"), None);
    }

    #[test]
    fn the_parent_is_read_past_any_command_name() {
        let parent = |s: &str| stat_of(s).map(|s| s.parent);
        assert_eq!(parent("42 (sh) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parent("42 (a) b (c) R 9 1 1"), Some(9));
        assert_eq!(parent("42 (x y) Z 1 1"), Some(1));
        assert_eq!(parent("garbage"), None);
    }

    #[test]
    fn this_processs_mark_is_read_from_its_environment() {
        // The test process has no mark; its own environ is readable.
        assert_eq!(mark_of(std::process::id() as i32), None);
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .env(PROGRAM_ID_ENV, "77")
            .spawn()
            .unwrap();
        // Until it has exec'd, the child shows this process's environment.
        let until = Instant::now() + Duration::from_secs(10);
        let mut mark = None;
        while mark.is_none() && Instant::now() < until {
            mark = mark_of(child.id() as i32);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(mark, Some(77));
        let _ = child.kill();
        let _ = child.wait();
    }
}
