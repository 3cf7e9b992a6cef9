//! The children of one multi-process test: this test binary re-executed
//! (see [`super::child_command`]), their stdout collected line by line,
//! their stderr kept for diagnostics, and every one killed (and reaped) on
//! drop unless it exited, so a failing test leaves nothing running.
//!
//! Protocol: a child prints `SHMSLOT-READY <arg>` when it is ready and
//! `SHMSLOT-RESULT k=v …` just before it exits (found anywhere in a line:
//! libtest may prefix its own text); the parent may send it lines on stdin.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Child side: prints `line` to stdout and flushes it at once (the parent
/// reads it line by line). A parent that stopped reading is not an error.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Child side: an environment variable the parent must have set.
pub fn child_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child: {name} not set"))
}

/// The `k=v` fields of a child's result line.
pub type Fields = BTreeMap<String, String>;

/// One child.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

/// See the module doc.
pub struct Family {
    pub procs: Vec<Proc>,
    lines: mpsc::Receiver<(usize, String)>,
    lines_tx: mpsc::Sender<(usize, String)>,
    /// Everything each child printed to stdout.
    stdout: Vec<Vec<String>>,
}

impl Family {
    pub fn new() -> Self {
        let (lines_tx, lines) = mpsc::channel();
        Self { procs: Vec::new(), lines, lines_tx, stdout: Vec::new() }
    }

    /// Spawns `cmd` (its role and environment set by the caller) with piped
    /// stdio; returns the child's id in this family.
    pub fn spawn(&mut self, name: &str, mut cmd: Command) -> usize {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn child process");
        let id = self.procs.len();
        let out = child.stdout.take().unwrap();
        let tx = self.lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send((id, line)).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut err, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = err.read_to_string(&mut buf);
            sink.lock().unwrap().push_str(&buf);
        });
        let stdin = child.stdin.take();
        self.procs.push(Proc { name: name.to_owned(), child, stdin, stderr, status: None });
        self.stdout.push(Vec::new());
        id
    }

    /// Collects the lines that arrived, waiting up to `wait` for the first.
    /// Child `id` exited: the lines it printed last may still be on their
    /// way from its pipe's reader thread. Reads what arrives within a short
    /// while, so an exit right after the line is never mistaken for an exit
    /// without it.
    fn drain_after_exit(&mut self) {
        let until = Instant::now() + Duration::from_millis(300);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            self.pump(left.min(Duration::from_millis(20)));
        }
    }

    fn pump(&mut self, wait: Duration) {
        if let Ok((i, line)) = self.lines.recv_timeout(wait) {
            self.stdout[i].push(line);
        }
        while let Ok((i, line)) = self.lines.try_recv() {
            self.stdout[i].push(line);
        }
    }

    /// Kernel-side state of a still running child: where each thread sleeps.
    fn proc_state(pid: u32) -> String {
        let mut s = String::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return s };
        for t in tasks.flatten() {
            let p = t.path();
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            let wchan = std::fs::read_to_string(p.join("wchan")).unwrap_or_default();
            let stack = std::fs::read_to_string(p.join("stack")).unwrap_or_default();
            s += &format!("\n   task {}: {} wchan={wchan}\n{stack}", t.file_name().to_string_lossy(), stat.trim());
        }
        s
    }

    fn diagnostics(&mut self) -> String {
        std::thread::sleep(Duration::from_millis(100)); // let the pipes drain
        self.pump(Duration::ZERO);
        let mut s = String::new();
        for (i, p) in self.procs.iter_mut().enumerate() {
            let status = p.status.or_else(|| p.child.try_wait().ok().flatten());
            s += &format!("\n── {} (pid {}, status {:?}) stdout:\n{}\n── stderr:\n{}", p.name, p.child.id(), status, self.stdout[i].join("\n"), p.stderr.lock().unwrap());
        }
        s
    }

    /// Fails the test with where the running children are stuck, what every
    /// child printed, and its exit status; kills them all first.
    pub fn fail(&mut self, what: &str) -> ! {
        let mut stuck = String::new();
        for p in &mut self.procs {
            if p.status.is_none() && matches!(p.child.try_wait(), Ok(None)) {
                stuck += &format!("\n── {} (pid {}) still running:{}", p.name, p.child.id(), Self::proc_state(p.child.id()));
            }
        }
        self.kill_all();
        let d = self.diagnostics();
        panic!("{what}{stuck}{d}");
    }

    /// Waits up to `timeout` for a `SHMSLOT-READY` line from child `id`;
    /// returns its argument.
    pub fn wait_ready(&mut self, id: usize, timeout: Duration) -> String {
        let limit = Instant::now() + timeout;
        loop {
            if let Some(r) = self.ready_of(id) {
                return r;
            }
            if let Ok(Some(st)) = self.procs[id].child.try_wait() {
                self.procs[id].status = Some(st);
                self.drain_after_exit();
                if let Some(r) = self.ready_of(id) {
                    return r;
                }
                let name = self.procs[id].name.clone();
                self.fail(&format!("{name} exited ({st}) before it was ready"));
            }
            if Instant::now() > limit {
                let name = self.procs[id].name.clone();
                self.fail(&format!("{name} not ready after {timeout:?}"));
            }
            self.pump(Duration::from_millis(20));
        }
    }

    /// Sends `line` to child `id`'s stdin.
    pub fn send(&mut self, id: usize, line: &str) {
        let stdin = self.procs[id].stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).and_then(|()| stdin.write_all(b"\n")).and_then(|()| stdin.flush()).expect("send to child");
    }

    /// Child `id`'s `SHMSLOT-READY` argument, if the line arrived.
    fn ready_of(&self, id: usize) -> Option<String> {
        self.stdout[id].iter().find_map(|l| l.find("SHMSLOT-READY ").map(|p| l[p + 14..].trim().to_owned()))
    }

    /// Child `id`'s `SHMSLOT-RESULT` fields, if the line arrived.
    fn result_of(&self, id: usize) -> Option<Fields> {
        let r = self.stdout[id].iter().find_map(|l| l.find("SHMSLOT-RESULT ").map(|p| &l[p + 15..]))?;
        Some(r.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
    }

    /// Waits up to `deadline` for child `id`'s `SHMSLOT-RESULT` line (it may
    /// go on running); returns its fields.
    pub fn wait_result(&mut self, id: usize, deadline: Instant) -> Fields {
        loop {
            if let Some(r) = self.result_of(id) {
                return r;
            }
            if let Ok(Some(st)) = self.procs[id].child.try_wait() {
                self.procs[id].status = Some(st);
                self.drain_after_exit();
                if let Some(r) = self.result_of(id) {
                    return r;
                }
                let name = self.procs[id].name.clone();
                self.fail(&format!("{name} exited ({st}) without a result"));
            }
            if Instant::now() > deadline {
                let name = self.procs[id].name.clone();
                self.fail(&format!("{name}: no result in time"));
            }
            self.pump(Duration::from_millis(20));
        }
    }

    /// Waits until every child exited with status 0 (failing with `late`
    /// if some still run at `deadline`); returns each one's result fields.
    pub fn wait_all(&mut self, deadline: Instant, late: &str) -> Vec<Fields> {
        loop {
            let mut running = false;
            for i in 0..self.procs.len() {
                if self.procs[i].status.is_some() {
                    continue;
                }
                match self.procs[i].child.try_wait() {
                    Ok(Some(st)) => {
                        self.procs[i].status = Some(st);
                        if !st.success() {
                            let name = self.procs[i].name.clone();
                            self.fail(&format!("{name} failed: {st}"));
                        }
                    }
                    Ok(None) => running = true,
                    Err(e) => self.fail(&format!("waiting for a child: {e}")),
                }
            }
            if !running {
                break;
            }
            if Instant::now() > deadline {
                self.fail(late);
            }
            self.pump(Duration::from_millis(20));
        }
        // The stdout threads end at EOF: wait until each result line is in.
        let limit = Instant::now() + Duration::from_secs(10);
        let mut results = Vec::new();
        for i in 0..self.procs.len() {
            loop {
                if let Some(r) = self.result_of(i) {
                    results.push(r);
                    break;
                }
                if Instant::now() > limit {
                    let name = self.procs[i].name.clone();
                    self.fail(&format!("{name} exited without a result line"));
                }
                self.pump(Duration::from_millis(20));
            }
        }
        results
    }

    /// Waits up to `deadline` for child `id` to exit with status 0.
    pub fn wait_exit(&mut self, id: usize, deadline: Instant) {
        loop {
            if let Ok(Some(st)) = self.procs[id].child.try_wait() {
                self.procs[id].status = Some(st);
                if !st.success() {
                    let name = self.procs[id].name.clone();
                    self.fail(&format!("{name} failed: {st}"));
                }
                return;
            }
            if Instant::now() > deadline {
                let name = self.procs[id].name.clone();
                self.fail(&format!("{name} did not exit in time"));
            }
            self.pump(Duration::from_millis(20));
        }
    }

    /// Kills child `id` (SIGKILL) and reaps it.
    pub fn kill(&mut self, id: usize) {
        let p = &mut self.procs[id];
        if p.status.is_none() {
            let _ = p.child.kill();
            p.status = p.child.wait().ok();
        }
    }

    /// Kills (by pid: only our own children) and reaps every running child.
    pub fn kill_all(&mut self) {
        for p in &mut self.procs {
            if p.status.is_none() {
                let _ = p.child.kill();
                p.status = p.child.wait().ok();
            }
        }
    }
}

impl Drop for Family {
    fn drop(&mut self) {
        self.kill_all();
    }
}
