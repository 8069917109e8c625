//! The workerd processes serving the benchmark's stack (the process group `scripts/bench`
//! passes as `EP_BENCH_PID`), read from `/proc`: their memory, and the CPU they spent, so a
//! benchmark can say what a request costs the server and not only how long the client waited.

/// One `/proc/{pid}` entry of a workerd process in the process group.
struct Process {
    pid: String,
    /// The fields of `/proc/{pid}/stat` after the command name.
    stat: Vec<String>,
}

fn workerd_processes(pgid: &str) -> Vec<Process> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let stat: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
        // stat[2] is the process group.
        if stat.get(2).map(String::as_str) == Some(pgid) && head.ends_with("(workerd") {
            out.push(Process { pid, stat });
        }
    }
    out
}

/// Resident set and its high-water mark (MB), summed over the stack's workerd processes.
pub fn memory(pgid: &str) -> (f64, f64) {
    let mut rss = 0.0;
    let mut hwm = 0.0;
    for p in workerd_processes(pgid) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid)).unwrap_or_default();
        let kb = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        rss += kb("VmRSS:") / 1024.0;
        hwm += kb("VmHWM:") / 1024.0;
    }
    (rss, hwm)
}

/// CPU seconds (user + system) the stack's workerd processes have spent so far. The kernel
/// counts in clock ticks; Linux reports them at 100 per second to user space.
pub fn cpu_seconds(pgid: &str) -> f64 {
    const TICKS_PER_SECOND: f64 = 100.0;
    workerd_processes(pgid)
        .iter()
        .map(|p| {
            // utime and stime are fields 14 and 15 of the stat line, 11 and 12 after the name.
            let field = |i: usize| p.stat.get(i).and_then(|v| v.parse::<f64>().ok());
            field(11).unwrap_or(0.0) + field(12).unwrap_or(0.0)
        })
        .sum::<f64>()
        / TICKS_PER_SECOND
}
