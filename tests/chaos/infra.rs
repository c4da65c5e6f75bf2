//! The infrastructure's processes, as `dev/infra.sh` started them: found through the
//! launcher's pid files in `$INFRA_DIR/pids` (default `.infra` at the repository root) and
//! restarted with the same launcher and port variables, so the harness kills and restarts the
//! broker, namenode or registry of exactly the infrastructure it runs against.

use anyhow::{bail, ensure, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

pub fn infra_dir() -> PathBuf {
    std::env::var_os("INFRA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".infra"))
}

/// A component of the local infrastructure: `kafka`, `registry` or `hdfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Kafka,
    Registry,
    Hdfs,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Component::Kafka => "kafka",
            Component::Registry => "registry",
            Component::Hdfs => "hdfs",
        }
    }

    fn pid_file(self) -> PathBuf {
        infra_dir().join("pids").join(format!("{}.pid", self.name()))
    }

    /// The pid the launcher recorded, if that process runs and is a JVM (all three are).
    /// A stale pid file's number can name a process or a thread started since: a `kill -9`
    /// of a thread's id kills its whole process. In a broker-kill9 run at 1 M the harness
    /// itself vanished without a word, most likely so, just after a failed broker start had
    /// left such a pid behind. So the number must be a process (its own thread-group
    /// leader) running `java`, and not this one.
    pub fn pid(self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()?;
        let leader = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .and_then(|t| t.trim().parse::<u32>().ok())
            == Some(pid);
        let java = std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()?
            .split(|b| *b == 0)
            .next()
            .is_some_and(|exe| exe.ends_with(b"java"));
        (leader && java && pid != std::process::id() && alive(pid)).then_some(pid)
    }

    /// Refuses to touch a component that is not the one the clients talk to: the port the
    /// launcher would use (`KAFKA_PORT` 9092, `REGISTRY_PORT` 8081, `HDFS_PORT` 9000 by
    /// default) must be the one in the client's address.
    fn guard(self) -> Result<()> {
        let (var, port) = self.port()?;
        let port = port.to_string();
        let address = match self {
            Component::Kafka => crate::kafka(),
            Component::Registry => crate::registry(),
            Component::Hdfs => crate::hdfs(),
        };
        let host_port = address
            .split("://")
            .last()
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default();
        ensure!(
            host_port.rsplit(':').next() == Some(port.as_str()),
            "{address} is not the {} of INFRA_DIR {} ({var} {port}): set both \
             (`set -a; . $INFRA_DIR/env; set +a` and the port variables infra-up was given)",
            self.name(),
            infra_dir().display()
        );
        Ok(())
    }

    /// The port variable the launcher reads and its value.
    fn port(self) -> Result<(&'static str, u16)> {
        let (var, default) = match self {
            Component::Kafka => ("KAFKA_PORT", 9092),
            Component::Registry => ("REGISTRY_PORT", 8081),
            Component::Hdfs => ("HDFS_PORT", 9000),
        };
        match std::env::var(var) {
            Ok(v) => Ok((var, v.parse().with_context(|| format!("{var}={v} is no port"))?)),
            Err(_) => Ok((var, default)),
        }
    }

    /// `kill -9` of the component's process; waits until it is gone.
    pub fn kill9(self) -> Result<()> {
        self.guard()?;
        let pid = self
            .pid()
            .with_context(|| format!("{}: no running process in {}", self.name(), self.pid_file().display()))?;
        signal(pid, "KILL")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(pid) {
            ensure!(
                Instant::now() < deadline,
                "{} (pid {pid}) still alive after kill -9",
                self.name()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Its sockets close a moment after the process is gone; the launcher refuses to start
        // while the port is taken.
        let (_, port) = self.port()?;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Freezes the component's process (SIGSTOP): it keeps its sockets and answers nothing
    /// until [`Paused`] is dropped (SIGCONT), as a machine that stops scheduling it would.
    pub fn pause(self) -> Result<Paused> {
        self.guard()?;
        let pid = self
            .pid()
            .with_context(|| format!("{}: no running process in {}", self.name(), self.pid_file().display()))?;
        signal(pid, "STOP")?;
        Ok(Paused { pid })
    }

    /// A clean stop through the launcher.
    pub fn stop(self) -> Result<()> {
        self.guard()?;
        self.launcher("stop")
    }

    /// Starts it through the launcher (which waits until it answers).
    pub fn start(self) -> Result<()> {
        self.guard()?;
        // After a kill -9 of Kafka the controller refuses the new incarnation until the old
        // broker session expires (30 s): retry the launcher for a while.
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            match self.launcher("start") {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("chaos: {} start failed, retrying: {e:#}", self.name());
                    std::thread::sleep(Duration::from_secs(3));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts it if it is not running (what every scenario ends with, pass or fail).
    pub fn ensure_running(self) -> Result<()> {
        if self.pid().is_none() {
            self.start()?;
        }
        Ok(())
    }

    fn launcher(self, what: &str) -> Result<()> {
        let script = repo_root().join("dev").join(self.name()).join("run.sh");
        // With a deadline (coreutils' `timeout`): a launcher that hangs fails the run instead
        // of holding it for good. Kafka's start after a kill -9 under load, its log recovery
        // included, took up to 2 minutes.
        let out = Command::new("timeout")
            .args(["--kill-after=10", &LAUNCHER_DEADLINE.as_secs().to_string(), "bash"])
            .arg(&script)
            .arg(what)
            .env("INFRA_DIR", infra_dir())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} {what}: {}\n{}{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

/// How long one call of a component's launcher (`dev/<name>/run.sh start|stop`) may take.
const LAUNCHER_DEADLINE: Duration = Duration::from_secs(420);

/// A component frozen by [`Component::pause`]; dropping it (also on a failed assertion)
/// lets it run again.
#[must_use = "the component runs again when this is dropped"]
pub struct Paused {
    pid: u32,
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Err(e) = signal(self.pid, "CONT") {
            eprintln!("cannot resume pid {}: {e:#}", self.pid);
        }
    }
}

pub fn alive(pid: u32) -> bool {
    // A zombie (exited, not reaped) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// `kill -<sig> pid`.
pub fn signal(pid: u32, sig: &str) -> Result<()> {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()?;
    ensure!(st.success(), "kill -{sig} {pid}: {st}");
    Ok(())
}
