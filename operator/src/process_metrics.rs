//! The process's own metrics, under the names every Prometheus client library uses
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`, ...), read from `/proc`
//! at each scrape. Linux only: elsewhere nothing is served. Beside them, what the allocator
//! (jemalloc, `src/main.rs`) says it holds: `shoal_heap_allocated_bytes` is what the
//! program uses, `shoal_heap_resident_bytes` what the allocator keeps in memory for it.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/self/stat` (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

/// What `/proc` says about this process.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size, bytes (`VmRSS`).
    pub resident_bytes: u64,
    /// Peak resident set size since start, bytes (`VmHWM`).
    pub resident_peak_bytes: u64,
    /// Virtual memory size, bytes (`VmSize`).
    pub virtual_bytes: u64,
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
}

impl ProcessStats {
    /// Reads them for this process; None where `/proc` is not Linux's.
    pub fn read() -> Option<ProcessStats> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let mut stats = parse(&status, &stat)?;
        stats.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        Some(stats)
    }
}

/// Parses `/proc/self/status` (the `Vm*` lines, in kB) and `/proc/self/stat` (utime and
/// stime, fields 14 and 15, counted after the parenthesised command name, which may hold
/// spaces).
pub fn parse(status: &str, stat: &str) -> Option<ProcessStats> {
    let kib = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v * 1024)
    };
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) and stime (15) are the 12th and 13th.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(ProcessStats {
        resident_bytes: kib("VmRSS:")?,
        resident_peak_bytes: kib("VmHWM:").unwrap_or(0),
        virtual_bytes: kib("VmSize:").unwrap_or(0),
        cpu_seconds: (ticks(11)? + ticks(12)?) as f64 / USER_HZ,
        open_fds: 0,
    })
}

/// Lets jemalloc return freed memory to the system from background threads: without them
/// it purges only when a thread allocates or frees again, so a burst's pages could stay
/// resident while the operator idles. Harmless where jemalloc is not the global allocator
/// (the library's tests): it configures an allocator nobody uses.
pub fn tune_allocator() {
    if let Err(err) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::debug!(error = %err, "jemalloc's background threads are not available");
    }
}

/// What jemalloc says: bytes allocated by the program and bytes resident for it (None if it
/// cannot tell).
pub fn heap() -> Option<(u64, u64)> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    let allocated = tikv_jemalloc_ctl::stats::allocated::read().ok()?;
    let resident = tikv_jemalloc_ctl::stats::resident::read().ok()?;
    Some((allocated as u64, resident as u64))
}

/// Serves [`ProcessStats`] at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some((allocated, resident)) = heap() {
            for (name, help, value) in [
                (
                    "shoal_heap_allocated_bytes",
                    "Bytes the operator holds allocated (jemalloc's stats.allocated)",
                    allocated,
                ),
                (
                    "shoal_heap_resident_bytes",
                    "Bytes of memory the allocator keeps resident (jemalloc's stats.resident)",
                    resident,
                ),
            ] {
                let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        let Some(stats) = ProcessStats::read() else {
            return Ok(());
        };
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stats.resident_bytes,
            ),
            (
                "process_resident_memory_peak_bytes",
                "Peak resident memory size in bytes since the process started (VmHWM)",
                stats.resident_peak_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stats.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                stats.open_fds,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        let cpu = ConstCounter::new(stats.cpu_seconds);
        let metric = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?;
        cpu.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status_and_stat() {
        let status = "Name:\tshoal\nVmPeak:\t  90000 kB\nVmSize:\t  81920 kB\nVmHWM:\t   30720 kB\nVmRSS:\t   20480 kB\n";
        // A command name with spaces and parentheses does not shift the fields.
        let stat = "4242 (shoal (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 8 0 100 83886080 5120";
        let stats = parse(status, stat).expect("parses");
        assert_eq!(
            stats,
            ProcessStats {
                resident_bytes: 20480 * 1024,
                resident_peak_bytes: 30720 * 1024,
                virtual_bytes: 81920 * 1024,
                cpu_seconds: 3.0,
                open_fds: 0,
            }
        );
        assert_eq!(parse("", stat), None);
    }

    #[test]
    fn this_process_has_stats() {
        let stats = ProcessStats::read().expect("Linux /proc");
        assert!(stats.resident_bytes > 0);
        assert!(stats.resident_peak_bytes >= stats.resident_bytes);
        assert!(stats.open_fds > 0);
    }
}
