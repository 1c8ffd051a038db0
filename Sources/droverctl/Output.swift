// Writing the response to the terminal or a pipe.
#if canImport(Glibc)
import Glibc
#endif
import FastCGI

enum Terminal {
    /// Writes all of `bytes` to `fd`, waiting if the descriptor is non-blocking.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(CLIError) {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n >= 0 { offset += n; continue }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&pfd, 1, -1)
                continue
            }
            throw CLIError.system(fd == 1 ? "writing to standard output" : "writing to standard error", errno: code)
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(CLIError) {
        try writeAll(fd, bytes[...])
    }

    static func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) throws(CLIError) {
        // withUnsafeBytes only rethrows untyped errors, so carry the error out.
        let failure: CLIError? = bytes.withUnsafeBytes { raw in
            do throws(CLIError) { try writeAll(fd, raw) } catch { return error }
            return nil
        }
        if let failure { throw failure }
    }

    /// A line for the user on standard error; errors writing it are ignored.
    static func note(_ line: String) {
        _ = try? writeAll(2, Array((line + "\n").utf8))
    }
}

/// Prints the STDOUT stream, with or without its CGI header block, and notes
/// the HTTP status the header block declares.
final class StdoutPrinter {
    /// Past this many bytes without the empty line that ends the header block,
    /// the response is taken to have none.
    static let headLimit = 1 << 20

    let bodyOnly: Bool
    private var head: [UInt8] = []
    private var headDone = false
    private(set) var statusCode: Int?
    private(set) var headerBlockFound = false

    init(bodyOnly: Bool) { self.bodyOnly = bodyOnly }

    func write(_ bytes: [UInt8]) throws(CLIError) {
        if headDone {
            try Terminal.writeAll(1, bytes)
            return
        }
        head += bytes
        // With headers included, print at once; the copy in `head` is for the status.
        if !bodyOnly { try Terminal.writeAll(1, bytes) }
        if let parsed = head.withUnsafeBytes({ CGIResponseHead.parse($0) }) {
            headDone = true
            headerBlockFound = true
            statusCode = parsed.statusCode
            if bodyOnly {
                try Terminal.writeAll(1, head[parsed.headerEnd...])
            }
            head = []
        } else if head.count > StdoutPrinter.headLimit {
            try giveUpOnHead()
        }
    }

    /// Called at END_REQUEST: prints what is still held back.
    func finish() throws(CLIError) {
        if !headDone && !head.isEmpty { try giveUpOnHead() }
    }

    private func giveUpOnHead() throws(CLIError) {
        headDone = true
        if bodyOnly {
            Terminal.note("droverctl: warning: the response has no complete CGI header block; printing it whole")
            try Terminal.writeAll(1, head)
        }
        head = []
    }
}

/// Prints STDERR records to standard error, each line prefixed.
final class StderrPrinter {
    let prefix: [UInt8]
    let enabled: Bool
    private var atLineStart = true

    init(enabled: Bool, prefix: String = "stderr: ") {
        self.enabled = enabled
        self.prefix = Array(prefix.utf8)
    }

    func write(_ bytes: [UInt8]) throws(CLIError) {
        guard enabled else { return }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + prefix.count * 4)
        for byte in bytes {
            if atLineStart { out += prefix }
            out.append(byte)
            atLineStart = byte == UInt8(ascii: "\n")
        }
        try Terminal.writeAll(2, out)
    }

    /// Ends an unterminated last line, so the shell prompt starts on its own line.
    func finish() {
        if enabled && !atLineStart {
            _ = try? Terminal.writeAll(2, [UInt8(ascii: "\n")])
            atLineStart = true
        }
    }
}
