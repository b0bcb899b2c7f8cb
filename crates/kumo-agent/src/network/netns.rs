//! Named network namespaces (`ip netns`): the host data plane can live in one
//! (`kumod --host-netns NAME`), so tests and simulated hosts never touch the machine's own.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Opens `/run/netns/NAME`.
pub fn open(name: &str) -> std::io::Result<File> {
    File::open(format!("/run/netns/{name}"))
}

/// Whether the named namespace exists.
pub fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/run/netns/{name}")).exists()
}

/// Runs `f` on a fresh thread that has entered the namespace (`None`: the current one), and
/// returns its result. Sockets made there stay in that namespace wherever they are used later.
pub fn run_in<T: Send + 'static>(
    netns: Option<&str>,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let fd = match netns {
        Some(n) => Some(open(n)?),
        None => None,
    };
    std::thread::spawn(move || {
        if let Some(fd) = &fd {
            // SAFETY: setns(2) on this thread only, with a namespace fd we own.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        f()
    })
    .join()
    .map_err(|_| std::io::Error::other("namespace thread panicked"))?
}

/// Network namespaces made by a test, deleted on drop (also when the test fails).
#[cfg(test)]
pub(crate) struct TestNamespaces(pub Vec<String>);

#[cfg(test)]
impl Drop for TestNamespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = std::process::Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
