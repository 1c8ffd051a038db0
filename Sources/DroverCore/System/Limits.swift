import CDroverSys
import DroverConfig
import Glibc

/// rlimit_files / rlimit_core / process.priority, shared by the master
/// (global directives) and the workers (pool directives).
public enum ProcessLimits {
    /// `core` < 0 means unlimited.
    public static func apply(files: Int?, core: Int64?, priority: Int?) throws {
        if let files {
            var limit = rlimit(rlim_cur: rlim_t(files), rlim_max: rlim_t(files))
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) != 0 {
                throw SystemError("setrlimit(RLIMIT_NOFILE, \(files))")
            }
        }
        if let core {
            let value = core < 0 ? rlim_t.max : rlim_t(core)   // rlim_t.max is RLIM_INFINITY
            var limit = rlimit(rlim_cur: value, rlim_max: value)
            if setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &limit) != 0 {
                throw SystemError("setrlimit(RLIMIT_CORE, \(core))")
            }
        }
        if let priority, setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, Int32(priority)) != 0 {
            throw SystemError("setpriority(\(priority))")
        }
    }

    /// process.sched_policy, for the calling process and what it starts
    /// later (fork and execve keep the policy).
    public static func apply(schedulingPolicy policy: SchedulingPolicy) throws {
        let code: Int32 = switch policy {
        case .other: Int32(DROVER_SCHED_OTHER)
        case .batch: Int32(DROVER_SCHED_BATCH)
        case .idle: Int32(DROVER_SCHED_IDLE)
        }
        var param = sched_param(sched_priority: 0)
        if sched_setscheduler(0, code, &param) != 0 {
            throw SystemError("sched_setscheduler(SCHED_\(policy.rawValue.uppercased()))")
        }
    }
}
