//! CPU time read from `/proc` (Linux), for the cost of pure computation (planning) and of whole
//! processes (the benchmark). Elsewhere, wall time stands in for a thread's CPU time.

use std::time::Instant;

/// Linux reports CPU times in clock ticks of `USER_HZ`, 100 on every architecture it runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds from a `/proc/.../stat` line (fields 14 and 15, counted after the
/// command name, which may hold spaces and parentheses).
pub fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

fn thread_cpu_seconds() -> Option<f64> {
    stat_cpu_seconds(&std::fs::read_to_string("/proc/thread-self/stat").ok()?)
}

/// The CPU time the current thread spends from [`ThreadCpu::start`] on (10 ms resolution).
#[derive(Debug, Clone, Copy)]
pub struct ThreadCpu {
    cpu: Option<f64>,
    wall: Instant,
}

impl ThreadCpu {
    pub fn start() -> Self {
        ThreadCpu {
            cpu: thread_cpu_seconds(),
            wall: Instant::now(),
        }
    }

    /// Seconds of CPU since the start; wall seconds where `/proc` cannot tell.
    pub fn seconds(&self) -> f64 {
        match (self.cpu, thread_cpu_seconds()) {
            (Some(before), Some(now)) => (now - before).max(0.0),
            _ => self.wall.elapsed().as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_in_the_name_gives_user_plus_system_time() {
        let line = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1 2 3";
        assert_eq!(stat_cpu_seconds(line), Some(3.0));
        assert_eq!(stat_cpu_seconds("garbage"), None);
    }
}
