//! The peak resident memory of a process (Linux), for the tests and the benchmark.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

/// The peak resident memory of a running process, sampled until it exits (Linux).
pub struct PeakRss {
    thread: std::thread::JoinHandle<u64>,
}

impl PeakRss {
    pub fn watch(pid: u32) -> PeakRss {
        PeakRss {
            thread: std::thread::spawn(move || {
                let mut peak = 0;
                // VmHWM is the process's own high-water mark: the last reading before it
                // exits is its peak.
                while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(kib) = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    {
                        peak = peak.max(kib * 1024);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                peak
            }),
        }
    }

    pub fn bytes(self) -> u64 {
        self.thread.join().unwrap()
    }
}
