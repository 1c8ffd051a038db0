import DroverCore
import FastCGI

/// Responses the worker writes itself, without the app: ping, status, and
/// the clean errors a client gets when the app cannot answer.
enum LocalResponse {
    /// php-fpm's headers on ping and status pages.
    static let noCacheHeaders = "Expires: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
        + "Cache-Control: no-cache, no-store, must-revalidate, max-age=0\r\n"

    static func ping(_ body: String) -> (head: String, body: String) {
        ("Content-Type: text/plain\r\n" + noCacheHeaders + "\r\n", body + "\n")
    }

    static func status(_ rendered: RenderedStatus) -> (head: String, body: String) {
        ("Content-Type: \(rendered.contentType)\r\n" + noCacheHeaders + "\r\n", rendered.body)
    }

    static func error(_ code: Int, _ reason: String) -> (head: String, body: String) {
        ("Status: \(code) \(reason)\r\nContent-Type: text/plain\r\n\r\n", "\(reason)\n")
    }

    /// php-fpm's answer to a script security.limit_extensions refuses.
    static let accessDenied = ("Status: 403 Forbidden\r\nContent-type: text/html; charset=UTF-8\r\n\r\n", "Access denied.\n")

    /// Appends a whole response (STDOUT, end of STDOUT, END_REQUEST) to `out`.
    static func append(_ response: (head: String, body: String), requestID: UInt16, to out: inout [UInt8]) {
        let bytes = Array((response.head + response.body).utf8)
        RecordEncoder.append(.stdout, requestID: requestID, content: bytes, to: &out)
        RecordEncoder.appendEmpty(.stdout, requestID: requestID, to: &out)
        RecordEncoder.appendEndRequest(requestID: requestID, appStatus: 0, protocolStatus: .requestComplete, to: &out)
    }
}
