//! Test peers written by others and run by Python (pymodbus, asyncua,
//! cpppo, python-snap7): a script started with the interpreter of
//! [`crate::python`], ready when it prints a line starting with `READY`
//! (optionally followed by what it bound, `READY 40123`), its stdout and
//! stderr kept in a log file, killed when dropped.
//!
//! A peer that cannot run fails the test with a message naming what is
//! missing ([`require_python_modules`]); it never skips.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{io, Error, Result};
use crate::process::{set_die_with_parent, tail};
use crate::python;

/// Fails unless the test interpreter can import every module in `modules`
/// (`["cpppo"]`), with a message saying how to get them.
pub fn require_python_modules(modules: &[&str]) -> Result<()> {
    let py = python();
    let imports = format!("import {}", modules.join(", "));
    let out = Command::new(&py).args(["-c", &imports]).output();
    let why = match out {
        Ok(o) if o.status.success() => return Ok(()),
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => format!("cannot run it: {e}"),
    };
    Err(Error::Setup(format!(
        "{} not importable by '{py}' ({why}). Run scripts/test.sh, which creates the test venv \
         from drivers/tests/requirements.txt, or set BIFROST_PYTHON to a Python with those \
         packages installed",
        modules.join(", ")
    )))
}

/// A running Python peer.
pub struct PythonPeer {
    label: String,
    child: Child,
    log: PathBuf,
    /// What followed `READY` on its ready line (a port, an address), trimmed.
    ready: String,
}

impl PythonPeer {
    /// Runs `script args...` and waits up to `within` for its `READY` line.
    /// `label` names it in errors (`cpppo enip server`).
    pub fn start(label: &str, script: &Path, args: &[String], within: Duration) -> Result<Self> {
        let log = std::env::temp_dir().join(format!(
            "bifrost-peer-{}-{}.log",
            label.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
            std::process::id() as u64 * 1000 + next_serial()
        ));
        let err = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let mut cmd = Command::new(python());
        cmd.arg(script)
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err);
        set_die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(io(format!("starting {label} ({})", script.display())))?;
        let lines = forward_lines(&mut child, &log)?;
        let mut peer = PythonPeer {
            label: label.to_string(),
            child,
            log,
            ready: String::new(),
        };
        peer.ready = peer.wait_ready(&lines, within)?;
        Ok(peer)
    }

    fn wait_ready(&mut self, lines: &mpsc::Receiver<String>, within: Duration) -> Result<String> {
        let deadline = Instant::now() + within;
        loop {
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.starts_with("READY") => {
                    return Ok(line["READY".len()..].trim().to_string())
                }
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Exited {
                    label: self.label.clone(),
                    status,
                    log: self.log.clone(),
                    tail: tail(&self.log, 30),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("{} to print READY (log {})", self.label, self.log.display()),
                    timeout: within,
                    last: Some(tail(&self.log, 10)),
                });
            }
        }
    }

    /// What the ready line said after `READY` (empty when nothing).
    pub fn ready(&self) -> &str {
        &self.ready
    }

    /// The port the ready line names (`READY 40123`).
    pub fn port(&self) -> Result<u16> {
        self.ready
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| {
                Error::Setup(format!(
                    "{} printed READY '{}', not READY <port>",
                    self.label, self.ready
                ))
            })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The peer's output so far (stdout lines and stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Kills the peer and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PythonPeer {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Copies the child's stdout lines into its log and onto a channel.
fn forward_lines(child: &mut Child, log: &Path) -> Result<mpsc::Receiver<String>> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut copy = std::fs::OpenOptions::new()
        .append(true)
        .open(log)
        .map_err(io(format!("opening {}", log.display())))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Write;
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::io::Result::ok)
        {
            let _ = writeln!(copy, "{line}");
            let _ = tx.send(line);
        }
    });
    Ok(rx)
}

fn next_serial() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}
