import Glibc

/// A wait(2) status in php-fpm's wording, for log lines such as
/// "child 123 exited on signal 9 (SIGKILL) after 1.000000 seconds from start".
public struct ExitStatus: Sendable, Equatable, CustomStringConvertible {
    public let raw: Int32
    public init(_ raw: Int32) { self.raw = raw }

    public var signal: Int32? { raw & 0x7f == 0 ? nil : raw & 0x7f }
    public var code: Int32? { signal == nil ? (raw >> 8) & 0xff : nil }

    public var description: String {
        guard let sig = signal else { return "exited with code \(code ?? 0)" }
        let name = Self.signalNames[sig].map { " (\($0))" } ?? ""
        return "exited on signal \(sig)\(name)\(raw & 0x80 != 0 ? " - core dumped" : "")"
    }

    static let signalNames: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
        SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1",
        SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
        SIGCHLD: "SIGCHLD", SIGCONT: "SIGCONT", SIGSTOP: "SIGSTOP", SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ",
        SIGSYS: "SIGSYS",
    ]

    /// Seconds with php-fpm's six decimals, from microseconds.
    public static func seconds(_ micros: Int64) -> String {
        let fraction = String(micros % 1_000_000)
        return "\(micros / 1_000_000).\(String(repeating: "0", count: 6 - fraction.count))\(fraction)"
    }
}
