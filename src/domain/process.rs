//! Names of the processes that hold leases and claim slots, and whether such a process
//! still lives: the scheduler and the delivery worker share one rule.
//!
//! A name is `host:pid:n`; the counter `n` makes two workers in one process two names.
//! Older stores may hold `host:pid`, which is read the same way.

use std::path::Path;

/// A fresh name for a worker of this process: host, process id and a counter.
pub fn process_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}:{}:{n}", this_host(), std::process::id())
}

/// True when `name` names a process on this host that no longer exists (it was killed
/// or crashed): what it held can be taken over without waiting. A name from another
/// host, from this process, or that does not parse is never gone.
pub fn process_is_gone(name: &str) -> bool {
    let parts: Vec<&str> = name.split(':').collect();
    let (their_host, pid) = match parts.as_slice() {
        [h, p, n] if n.parse::<u64>().is_ok() => (*h, p.parse::<u32>().ok()),
        [h, p] => (*h, p.parse::<u32>().ok()),
        _ => return false,
    };
    match pid {
        Some(pid) if their_host == this_host() => {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_this_process_is_alive() {
        let (a, b) = (process_name(), process_name());
        assert_ne!(a, b);
        assert!(!process_is_gone(&a));
        assert!(!process_is_gone(&format!(
            "{}:{}",
            this_host(),
            std::process::id()
        )));
    }

    #[test]
    fn a_dead_local_process_is_gone_in_both_formats() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(process_is_gone(&format!("{}:{pid}:1", this_host())));
        assert!(process_is_gone(&format!("{}:{pid}", this_host())));
    }

    #[test]
    fn other_hosts_and_garbage_are_never_gone() {
        assert!(!process_is_gone("elsewhere.example:999999999:1"));
        assert!(!process_is_gone("nonsense"));
        assert!(!process_is_gone(""));
    }
}
