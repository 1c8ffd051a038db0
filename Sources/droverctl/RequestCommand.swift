// droverctl request: a FastCGI client for debugging, like cgi-fcgi but friendlier.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import FastCGI

struct RequestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "request",
        abstract: "Send one FastCGI request to an application or pool and print the response.",
        usage: """
            droverctl request [<options>] <address> <script>
            droverctl request --socket <address> [<options>] <script>
            """,
        discussion: """
            Talks FastCGI directly to a pool's socket or to any FastCGI application \
            (php-cgi, fcgiwrap, php-fpm, ...), with no web server in between: to check \
            that a pool answers, to see an application's raw CGI output and its STDERR, \
            and in tests.

            ADDRESS
              /run/drover/www.sock, ./app.sock, unix:PATH   a Unix socket
              @name                                         an abstract Unix socket
              127.0.0.1:9000, localhost:9000, [::1]:9000    TCP
              9000                                          TCP port on 127.0.0.1

            SCRIPT
            Sent as SCRIPT_FILENAME (a relative path is made absolute against the \
            current directory). SCRIPT_NAME is "/" plus its base name: \
            /var/www/html/index.php gives SCRIPT_NAME=/index.php, and /ping or /status \
            give /ping or /status, which is what php-fpm-style ping and status pages \
            match. With --uri, SCRIPT_NAME and DOCUMENT_URI are the URI's path instead, \
            REQUEST_URI is the URI, and its query is the QUERY_STRING unless --query is \
            given.

            PARAMETERS
            Sent by default: GATEWAY_INTERFACE=CGI/1.1, SERVER_SOFTWARE=droverctl, \
            SERVER_PROTOCOL=HTTP/1.1, SERVER_NAME=localhost, SERVER_ADDR=127.0.0.1, \
            SERVER_PORT=80, REQUEST_SCHEME=http, HTTP_HOST=localhost, \
            REMOTE_ADDR=127.0.0.1, REQUEST_METHOD, SCRIPT_FILENAME, SCRIPT_NAME, \
            DOCUMENT_ROOT, DOCUMENT_URI, REQUEST_URI, QUERY_STRING, REDIRECT_STATUS=200 \
            (php-cgi refuses to run without it) and, with a body, CONTENT_LENGTH and \
            CONTENT_TYPE=application/x-www-form-urlencoded (as curl -d sends). Each \
            --param NAME=VALUE replaces the default of that name or adds one.

            BODY
            --body-file FILE or --stdin sends a body as STDIN records, read and sent in \
            chunks; the method then defaults to POST. CONTENT_LENGTH goes out before the \
            body, so a body from a pipe is first copied to an unlinked temporary file in \
            $TMPDIR (never held in memory) to count it, unless you give \
            --param CONTENT_LENGTH=N yourself.

            OUTPUT
            STDOUT goes to standard output as the application sent it, CGI headers \
            included (--body-only strips the header block). STDERR records go to \
            standard error, each line prefixed with "stderr: " (--no-stderr drops \
            them). --verbose also shows the parameters sent and how the request ended.

            EXIT STATUS
              0   END_REQUEST with REQUEST_COMPLETE and application status 0
              1   END_REQUEST with REQUEST_COMPLETE but a nonzero application status
              2   connection or protocol error, or timeout (the message says which)
              3   the application refused the request: END_REQUEST with
                  CANT_MPX_CONN, OVERLOADED or UNKNOWN_ROLE
              64  usage error, including a --body-file that cannot be opened
            The HTTP status from a Status: header does not change the exit status \
            (--verbose prints it).

            EXAMPLES
              droverctl request /run/drover/www.sock /var/www/html/index.php
              droverctl request 127.0.0.1:9000 /srv/www/info.php --query 'a=1&b=2'
              droverctl request /run/drover/www.sock /ping
              droverctl request /run/drover/www.sock /status --query json --body-only
              droverctl request -s /run/php.sock /srv/app/index.php --uri '/post?id=7'
              droverctl request /run/php.sock /srv/upload.php --body-file photo.jpg \\
                  --param CONTENT_TYPE=image/jpeg
              printf 'a=1' | droverctl request /run/php.sock /srv/form.php --stdin
              droverctl request /run/fcgiwrap.socket /usr/lib/cgi-bin/env.cgi -v
            """)

    @Option(name: [.customShort("s"), .long],
            help: ArgumentHelp("Where the application listens; then the only argument is the script.",
                               valueName: "address"))
    var socket: String?

    @Argument(help: ArgumentHelp(
        "Where the application listens: a Unix socket path, host:port or [v6]:port (see ADDRESS). Leave it out with --socket."))
    var address: String

    @Argument(help: ArgumentHelp(
        "The script to run (SCRIPT_FILENAME), or a path like /ping or /status (see SCRIPT)."))
    var script: String?

    @Option(name: [.customShort("X"), .long],
            help: ArgumentHelp("REQUEST_METHOD (default: GET, or POST with a body).", valueName: "method"))
    var method: String?

    @Option(name: [.customShort("q"), .long],
            help: ArgumentHelp("QUERY_STRING, without the '?'.", valueName: "string"))
    var query: String?

    @Option(name: [.customShort("u"), .long],
            help: ArgumentHelp("REQUEST_URI; its path becomes SCRIPT_NAME and DOCUMENT_URI (see SCRIPT).",
                               valueName: "uri"))
    var uri: String?

    @Option(name: [.customShort("p"), .customLong("param")], parsing: .singleValue,
            help: ArgumentHelp("Set a FastCGI parameter; repeat for more. Replaces a default of the same name.",
                               valueName: "name=value"))
    var params: [String] = []

    @Option(name: .customLong("body-file"),
            help: ArgumentHelp("Send the contents of FILE as the request body ('-' for standard input).",
                               valueName: "file"))
    var bodyFile: String?

    @Flag(name: .customLong("stdin"), help: "Send standard input as the request body.")
    var bodyFromStdin = false

    @Flag(help: "Print STDOUT whole (the default), or only what follows the CGI header block.")
    var output: OutputMode = .includeHeaders

    @Flag(name: .customLong("stderr"), inversion: .prefixedNo,
          help: "Print the application's STDERR records on standard error, prefixed \"stderr: \".")
    var showStderr = true

    @Option(name: [.customShort("t"), .long],
            help: ArgumentHelp("Give up after this many seconds in all (0: wait forever).", valueName: "seconds"))
    var timeout: Double = 30

    @Flag(name: .customLong("keep-conn"),
          help: "Set FCGI_KEEP_CONN in BEGIN_REQUEST, as nginx does with fastcgi_keep_conn on.")
    var keepConnection = false

    @Flag(name: .shortAndLong, help: "Show the parameters sent and how the request ended, on standard error.")
    var verbose = false

    enum OutputMode: String, EnumerableFlag {
        case includeHeaders
        case bodyOnly

        static func help(for value: OutputMode) -> ArgumentHelp? {
            switch value {
            case .includeHeaders: return "Print the CGI header block and the body."
            case .bodyOnly: return "Print only the body, without the CGI header block."
            }
        }
    }

    // MARK: Validation

    /// The address and script, whichever way they were given.
    private var target: (address: String, script: String)? {
        if let socket { return script == nil ? (socket, address) : nil }
        guard let script else { return nil }
        return (address, script)
    }

    func validate() throws {
        if socket != nil && script != nil {
            throw ValidationError("With --socket, give only the script (got \"\(address)\" and \"\(script!)\").")
        }
        guard let target else {
            throw ValidationError("Missing <script>: give the address and then the script, e.g. 'droverctl request /run/php.sock /var/www/index.php'.")
        }
        do {
            _ = try FastCGIAddress.parse(target.address)
        } catch {
            throw ValidationError("Bad address: \(error.message).")
        }
        if target.script.isEmpty { throw ValidationError("The script must not be empty.") }
        if bodyFile != nil && bodyFromStdin {
            throw ValidationError("Give either --body-file or --stdin, not both.")
        }
        for param in params {
            guard let equals = param.firstIndex(of: "="), equals != param.startIndex else {
                throw ValidationError("--param wants NAME=VALUE, got \"\(param)\".")
            }
        }
        if let length = paramOverride("CONTENT_LENGTH"), Int(length).map({ $0 < 0 }) ?? true {
            throw ValidationError("--param CONTENT_LENGTH wants a number of bytes, got \"\(length)\".")
        }
        if let method, method.isEmpty || method.contains(where: { $0 == " " }) {
            throw ValidationError("Bad --method \"\(method)\".")
        }
        if !(timeout >= 0) { throw ValidationError("--timeout must be 0 or more seconds.") }
    }

    private func paramOverride(_ name: String) -> String? {
        var found: String? = nil
        for param in params {
            guard let equals = param.firstIndex(of: "=") else { continue }
            if param[..<equals] == name { found = String(param[param.index(after: equals)...]) }
        }
        return found
    }

    // MARK: Running

    func run() throws {
        do {
            let code = try execute()
            if code != 0 { throw ExitCode(code) }
        } catch let error as CLIError {
            Terminal.note("droverctl: error: \(error.message)")
            throw ExitCode(error.exitCode)
        }
    }

    private func execute() throws(CLIError) -> Int32 {
        guard let target else { throw CLIError("missing script", exitCode: 64) }
        let address = try FastCGIAddress.parse(target.address)
        let deadline = Deadline(seconds: timeout)

        let body = try openBody()
        defer { if let body, body.fd != 0 { close(body.fd) } }
        let params = buildParams(script: target.script, body: body)

        let client = try FastCGIClient(address: address, deadline: deadline)
        if verbose {
            client.trace = { Terminal.note("* " + $0) }
            Terminal.note("* connected to \(address)")
            for (name, value) in params { Terminal.note("> \(name)=\(value)") }
            if let body { Terminal.note("> (body: \(body.length) bytes)") }
        }

        let stdoutPrinter = StdoutPrinter(bodyOnly: output == .bodyOnly)
        let stderrPrinter = StderrPrinter(enabled: showStderr)
        let result: ExchangeResult
        do {
            result = try client.perform(
                keepConnection: keepConnection, params: params, body: body,
                onStdout: { bytes throws(CLIError) in try stdoutPrinter.write(bytes) },
                onStderr: { bytes throws(CLIError) in try stderrPrinter.write(bytes) })
        } catch {
            stderrPrinter.finish()
            try? stdoutPrinter.finish()
            throw error
        }
        stderrPrinter.finish()
        try stdoutPrinter.finish()

        let end = result.end
        if verbose {
            let status = stdoutPrinter.statusCode.map { "HTTP status \($0)" } ?? "no CGI header block"
            Terminal.note("< END_REQUEST: \(end.protocolStatus), application status \(end.appStatus); "
                + "\(status); \(result.stdoutBytes) bytes of STDOUT, \(result.stderrBytes) of STDERR"
                + (body != nil ? "; read \(result.bodyBytesSent) of \(body!.length) body bytes" : ""))
        }
        if end.protocolStatus != .requestComplete {
            Terminal.note("droverctl: the application refused the request: \(end.protocolStatus)")
            return 3
        }
        if end.appStatus != 0 {
            Terminal.note("droverctl: application status \(end.appStatus)")
            return 1
        }
        return 0
    }

    /// The CGI parameters for this request, defaults first, then --param.
    private func buildParams(script: String, body: BodySource?) -> [(String, String)] {
        var scriptFilename = script
        while scriptFilename.hasPrefix("./") { scriptFilename.removeFirst(2) }
        if !scriptFilename.hasPrefix("/") {
            scriptFilename = currentDirectory() + "/" + scriptFilename
        }

        let scriptName: String
        let queryString: String
        let requestURI: String
        if let uri {
            var path = uri
            var uriQuery: String? = nil
            if let mark = uri.firstIndex(of: "?") {
                path = String(uri[..<mark])
                uriQuery = String(uri[uri.index(after: mark)...])
            }
            if !path.hasPrefix("/") { path = "/" + path }
            scriptName = path
            queryString = query ?? uriQuery ?? ""
            requestURI = queryString.isEmpty ? path : path + "?" + queryString
        } else {
            let base = scriptFilename.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? ""
            scriptName = "/" + base
            queryString = query ?? ""
            requestURI = queryString.isEmpty ? scriptName : scriptName + "?" + queryString
        }
        let documentRoot: String
        if scriptName.count > 1 && scriptFilename.hasSuffix(scriptName) && scriptFilename.count > scriptName.count {
            documentRoot = String(scriptFilename.dropLast(scriptName.count))
        } else {
            let parent = scriptFilename.split(separator: "/").dropLast().joined(separator: "/")
            documentRoot = "/" + parent
        }

        var list: [(String, String)] = [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_SOFTWARE", "droverctl"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_NAME", "localhost"),
            ("SERVER_ADDR", "127.0.0.1"),
            ("SERVER_PORT", "80"),
            ("REQUEST_SCHEME", "http"),
            ("HTTP_HOST", "localhost"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REQUEST_METHOD", (method ?? (body != nil ? "POST" : "GET")).uppercased()),
            ("SCRIPT_FILENAME", scriptFilename),
            ("SCRIPT_NAME", scriptName),
            ("DOCUMENT_ROOT", documentRoot),
            ("DOCUMENT_URI", scriptName),
            ("REQUEST_URI", requestURI),
            ("QUERY_STRING", queryString),
            ("REDIRECT_STATUS", "200"),
        ]
        if let body {
            list.append(("CONTENT_LENGTH", String(body.length)))
            list.append(("CONTENT_TYPE", "application/x-www-form-urlencoded"))
        }
        for param in params {
            let equals = param.firstIndex(of: "=")!
            let name = String(param[..<equals])
            let value = String(param[param.index(after: equals)...])
            if let index = list.firstIndex(where: { $0.0 == name }) {
                list[index].1 = value
            } else {
                list.append((name, value))
            }
        }
        return list
    }

    private func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Opens the request body, if any, and finds its length.
    private func openBody() throws(CLIError) -> BodySource? {
        let fd: Int32
        let name: String
        if bodyFromStdin || bodyFile == "-" {
            fd = 0
            name = "standard input"
        } else if let bodyFile {
            fd = open(bodyFile, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw CLIError("cannot open body file \(bodyFile): \(String(cString: strerror(errno)))", exitCode: 64)
            }
            name = bodyFile
        } else {
            return nil
        }
        if let declared = paramOverride("CONTENT_LENGTH"), let length = Int(declared) {
            return BodySource(fd: fd, length: length)
        }
        var info = stat()
        if fstat(fd, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG {
            let position = lseek(fd, 0, SEEK_CUR)
            return BodySource(fd: fd, length: Int(info.st_size) - Int(max(position, 0)))
        }
        // A pipe or terminal: spool it to count it.
        let spooled = try spool(fd, name: name)
        if fd != 0 { close(fd) }
        return spooled
    }

    /// Copies `fd` to an unlinked temporary file and returns that, rewound.
    private func spool(_ fd: Int32, name: String) throws(CLIError) -> BodySource {
        var directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        if directory.isEmpty { directory = "/tmp" }
        var template = Array((directory + "/droverctl-body.XXXXXX").utf8CString)
        let tmp = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard tmp >= 0 else { throw CLIError.system("creating a temporary file in \(directory)") }
        _ = fcntl(tmp, F_SETFD, FD_CLOEXEC)
        unlink(template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        var buffer = [UInt8](repeating: 0, count: 1 << 18)
        var total = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                close(tmp)
                throw CLIError.system("reading the request body from \(name)")
            }
            do throws(CLIError) {
                try Terminal.writeAll(tmp, buffer[0 ..< n])
            } catch {
                close(tmp)
                throw CLIError("spooling the request body to \(directory): \(error.message)")
            }
            total += n
        }
        lseek(tmp, 0, SEEK_SET)
        return BodySource(fd: tmp, length: total)
    }
}
