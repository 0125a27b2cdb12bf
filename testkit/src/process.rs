//! One child process with its log file: start, kill, pause, resume, and an
//! error naming it when it died.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};

use crate::error::{io, Error, Result};

/// A child process (`node 2`, `simulator`) writing stdout and stderr to
/// `log` (appended to, so a restarted node's log continues).
pub(crate) struct Proc {
    pub label: String,
    pub log: PathBuf,
    /// In a mutex so that a liveness check can run inside a wait that
    /// borrows the cluster shared.
    child: Mutex<Option<Child>>,
}

impl Proc {
    pub fn new(label: String, log: PathBuf) -> Proc {
        Proc {
            label,
            log,
            child: Mutex::new(None),
        }
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_running(&self) -> bool {
        self.child().is_some()
    }

    /// Starts `cmd`. With `die_with_parent`, the kernel kills the child
    /// when the thread that started it ends (see [`set_die_with_parent`]).
    pub fn spawn(&mut self, mut cmd: Command, die_with_parent: bool) -> Result<u32> {
        if self.is_running() {
            return Err(Error::Setup(format!("{} is already running", self.label)));
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io(format!("opening {}", self.log.display())))?;
        let err = log
            .try_clone()
            .map_err(io(format!("opening {}", self.log.display())))?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(err);
        if die_with_parent {
            set_die_with_parent(&mut cmd);
        }
        let child = cmd.spawn().map_err(io(format!(
            "starting {} ({:?})",
            self.label,
            cmd.get_program()
        )))?;
        let pid = child.id();
        *self.child() = Some(child);
        Ok(pid)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    /// `kill -9` and reap; nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The exit status once the process has exited by itself (it is then
    /// reaped: no longer running, ready to be started again); `None`
    /// while it runs. An error if it was not started.
    pub fn reap(&self) -> Result<Option<ExitStatus>> {
        let mut guard = self.child();
        let child = guard
            .as_mut()
            .ok_or_else(|| Error::Setup(format!("{} is not running", self.label)))?;
        let status = child
            .try_wait()
            .map_err(io(format!("checking {}", self.label)))?;
        if status.is_some() {
            *guard = None;
        }
        Ok(status)
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to the running process.
    pub fn signal(&self, signal: i32) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| Error::Setup(format!("{} is not running", self.label)))?;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        if unsafe { libc::kill(pid as i32, signal) } != 0 {
            return Err(io(format!("kill({pid}, {signal}) of {}", self.label))(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// An error naming this process and its log's tail if it has exited.
    pub fn check_alive(&self) -> Result<()> {
        let mut guard = self.child();
        let Some(child) = guard.as_mut() else {
            return Ok(());
        };
        if let Some(status) = child
            .try_wait()
            .map_err(io(format!("checking {}", self.label)))?
        {
            return Err(Error::Exited {
                label: self.label.clone(),
                status,
                log: self.log.clone(),
                tail: tail(&self.log, 15),
            });
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Asks the kernel to SIGKILL the child when the thread that spawned it
/// ends, so that a killed parent does not leave servers behind. Only for
/// parents that spawn from a thread living as long as the process (the
/// benchmark's main thread): a child spawned from a short-lived thread
/// would die with it.
#[cfg(target_os = "linux")]
pub fn set_die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn set_die_with_parent(_cmd: &mut Command) {}

/// The last `n` lines of a file, for error messages ("(no log)" if it
/// cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(f) = File::open(path) else {
        return "(no log)".into();
    };
    let lines: Vec<String> = BufReader::new(f)
        .lines()
        .map_while(std::io::Result::ok)
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_process_that_dies_by_itself_is_reaped_with_its_signal_and_can_start_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut proc = Proc::new("victim".into(), dir.path().join("victim.log"));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo \"dying at $TESTKIT_POINT\"; kill -ABRT $$"])
            .env("TESTKIT_POINT", "here");
        proc.spawn(cmd, false).unwrap();
        let status = crate::wait_until(
            "the victim to exit",
            std::time::Duration::from_secs(10),
            || proc.reap().unwrap(),
        );
        assert_eq!(status.signal(), Some(libc::SIGABRT), "{status}");
        assert!(!proc.is_running());
        let log = std::fs::read_to_string(&proc.log).unwrap();
        assert_eq!(log, "dying at here\n");
        let e = proc.reap().unwrap_err().to_string();
        assert!(e.contains("victim is not running"), "{e}");
        let mut again = Command::new("sh");
        again.args(["-c", "exit 3"]);
        proc.spawn(again, false).unwrap();
        let status = crate::wait_until(
            "the second run to exit",
            std::time::Duration::from_secs(10),
            || proc.reap().unwrap(),
        );
        assert_eq!(status.code(), Some(3));
    }
}
