// Reading the CGI response header block at the start of a STDOUT stream.

/// The CGI header block that starts a responder's STDOUT stream: header lines
/// ending at the first empty line (`\r\n\r\n`, `\n\n`, or a mix of the two).
public enum CGIResponseHead {
    /// The HTTP status and the header block's end, found in one pass.
    ///
    /// The status comes from the first `Status: NNN ...` header (name matched
    /// case-insensitively; a value that does not start with three digits
    /// 100...999 is ignored); failing that 302 if there is a `Location:` header;
    /// otherwise 200. `headerEnd` is the offset just past the empty line.
    /// Returns nil when `bytes` does not yet hold the whole header block.
    @inlinable
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> (statusCode: Int, headerEnd: Int)? {
        var status: Int? = nil
        var sawLocation = false
        var lineStart = 0
        var index = 0
        let count = bytes.count
        while index < count {
            if bytes[index] == UInt8(ascii: "\n") {
                var lineEnd = index
                if lineEnd > lineStart && bytes[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
                if lineEnd == lineStart {
                    let code = status ?? (sawLocation ? 302 : 200)
                    return (code, index + 1)
                }
                let line = UnsafeRawBufferPointer(rebasing: bytes[lineStart ..< lineEnd])
                if status == nil, let value = headerValue(line, name: "status") {
                    status = leadingStatusCode(value)
                } else if !sawLocation, headerValue(line, name: "location") != nil {
                    sawLocation = true
                }
                lineStart = index + 1
            }
            index += 1
        }
        return nil
    }

    /// The HTTP status code of the response whose STDOUT starts with `bytes`
    /// (see `parse`), or nil if the header block is not complete yet.
    @inlinable
    public static func statusCode(_ bytes: UnsafeRawBufferPointer) -> Int? {
        parse(bytes)?.statusCode
    }

    /// The byte offset just past the empty line that ends the header block,
    /// or nil if it is not complete yet within `bytes`.
    @inlinable
    public static func headerEnd(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var lineStart = 0
        var index = 0
        let count = bytes.count
        while index < count {
            if bytes[index] == UInt8(ascii: "\n") {
                let length = index - lineStart
                if length == 0 || (length == 1 && bytes[lineStart] == UInt8(ascii: "\r")) {
                    return index + 1
                }
                lineStart = index + 1
            }
            index += 1
        }
        return nil
    }

    /// If `line` is a header named `name` (lowercase ASCII, compared
    /// case-insensitively), the value after the colon with leading blanks
    /// skipped.
    @inlinable
    static func headerValue(_ line: UnsafeRawBufferPointer, name: StaticString) -> UnsafeRawBufferPointer? {
        let nameLength = name.utf8CodeUnitCount
        guard line.count > nameLength else { return nil }
        let nameBytes = name.utf8Start
        for i in 0 ..< nameLength {
            var c = line[i]
            if c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") { c |= 0x20 }
            if c != nameBytes[i] { return nil }
        }
        var i = nameLength
        // CGI allows no blank before the colon, but be lenient as nginx is not.
        while i < line.count && (line[i] == UInt8(ascii: " ") || line[i] == UInt8(ascii: "\t")) { i += 1 }
        guard i < line.count, line[i] == UInt8(ascii: ":") else { return nil }
        i += 1
        while i < line.count && (line[i] == UInt8(ascii: " ") || line[i] == UInt8(ascii: "\t")) { i += 1 }
        return UnsafeRawBufferPointer(rebasing: line[i...])
    }

    @inlinable
    static func leadingStatusCode(_ value: UnsafeRawBufferPointer) -> Int? {
        guard value.count >= 3 else { return nil }
        var code = 0
        for i in 0 ..< 3 {
            let c = value[i]
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            code = code * 10 + Int(c - UInt8(ascii: "0"))
        }
        if value.count > 3 {
            let c = value[3]
            if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") { return nil }
        }
        return code >= 100 ? code : nil
    }
}
